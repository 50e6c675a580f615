//! Uploaded media: the blob store's rows, customers' media tracks and services' video files,
//! and the byte counts the media quota is checked against.

use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, IntoActiveModel, QueryOrder, QuerySelect};

use super::Result;
use super::dispatch::sql;
use super::entities::{blob, blob_chunk, media_track, video_file};

async fn total(db: &impl ConnectionTrait, text: &str, values: Vec<Value>) -> Result<u64> {
    let backend = db.get_database_backend();
    let row = db.query_one_raw(sql(backend, text, values)).await?;
    let total: i64 = match row {
        Some(row) => row.try_get("", "total")?,
        None => 0,
    };
    Ok(u64::try_from(total).unwrap_or_default())
}

// ---- blobs ------------------------------------------------------------------------------

/// The blob's row, locked for the rest of the transaction (PostgreSQL; SQLite has one
/// writer): an upload that finds the blob and a delete that removes it cannot interleave.
pub async fn lock_blob(db: &impl ConnectionTrait, sha256: &str) -> Result<Option<blob::Model>> {
    let mut query = blob::Entity::find_by_id(sha256.to_owned());
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        query = query.lock_exclusive();
    }
    Ok(query.one(db).await?)
}

pub async fn get_blob(db: &impl ConnectionTrait, sha256: &str) -> Result<Option<blob::Model>> {
    Ok(blob::Entity::find_by_id(sha256.to_owned()).one(db).await?)
}

pub async fn insert_chunk(
    db: &impl ConnectionTrait,
    storage_key: &str,
    chunk_index: i64,
    data: Vec<u8>,
) -> Result<()> {
    blob_chunk::Entity::insert(
        blob_chunk::Model {
            storage_key: storage_key.to_owned(),
            chunk_index,
            data,
        }
        .into_active_model(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn insert_blob(db: &impl ConnectionTrait, model: blob::Model) -> Result<()> {
    blob::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn get_chunk(
    db: &impl ConnectionTrait,
    storage_key: &str,
    chunk_index: i64,
) -> Result<Option<Vec<u8>>> {
    Ok(
        blob_chunk::Entity::find_by_id((storage_key.to_owned(), chunk_index))
            .one(db)
            .await?
            .map(|c| c.data),
    )
}

/// Removes the blob and its chunks.
pub async fn delete_blob(db: &impl ConnectionTrait, sha256: &str) -> Result<()> {
    if let Some(blob) = blob::Entity::find_by_id(sha256.to_owned()).one(db).await? {
        delete_chunks(db, &blob.storage_key).await?;
        blob::Entity::delete_by_id(sha256.to_owned())
            .exec(db)
            .await?;
    }
    Ok(())
}

pub async fn delete_chunks(db: &impl ConnectionTrait, storage_key: &str) -> Result<()> {
    blob_chunk::Entity::delete_many()
        .filter(blob_chunk::Column::StorageKey.eq(storage_key))
        .exec(db)
        .await?;
    Ok(())
}

/// Records that an upload is writing chunks under `storage_key`.
pub async fn begin_upload(db: &impl ConnectionTrait, storage_key: &str, now: i64) -> Result<()> {
    db.execute_raw(sql(
        db.get_database_backend(),
        "INSERT INTO blob_uploads (storage_key, start_time) VALUES ($1, $2)",
        vec![storage_key.into(), now.into()],
    ))
    .await?;
    Ok(())
}

/// The upload's chunks are a blob's now (or gone): nothing to sweep.
pub async fn end_upload(db: &impl ConnectionTrait, storage_key: &str) -> Result<()> {
    db.execute_raw(sql(
        db.get_database_backend(),
        "DELETE FROM blob_uploads WHERE storage_key = $1",
        vec![storage_key.into()],
    ))
    .await?;
    Ok(())
}

/// Chunk sets of uploads that started before `before` and never became a blob (the process
/// writing them died): their keys.
pub async fn stale_uploads(db: &impl ConnectionTrait, before: i64) -> Result<Vec<String>> {
    let rows = db
        .query_all_raw(sql(
            db.get_database_backend(),
            "SELECT storage_key FROM blob_uploads WHERE start_time < $1",
            vec![before.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<String>("", "storage_key")?))
        .collect()
}

/// Whether any track or video file still holds these bytes.
pub async fn blob_referenced(db: &impl ConnectionTrait, sha256: &str) -> Result<bool> {
    let refs = total(
        db,
        "SELECT CAST((SELECT COUNT(*) FROM media_tracks WHERE sha256 = $1) + \
         (SELECT COUNT(*) FROM video_files WHERE sha256 = $1) AS BIGINT) AS total",
        vec![sha256.into()],
    )
    .await?;
    Ok(refs > 0)
}

/// Whether a service placed on `node_id` needs the blob: a track of the owner of one of its
/// live AutoDJ services, or a video file of one of its live services.
pub async fn node_needs_blob(
    db: &impl ConnectionTrait,
    node_id: &str,
    sha256: &str,
) -> Result<bool> {
    let needed = total(
        db,
        "SELECT CAST((SELECT COUNT(*) FROM media_tracks t WHERE t.sha256 = $2 AND EXISTS \
           (SELECT 1 FROM media_services s WHERE s.node_id = $1 AND s.delete_time IS NULL \
            AND s.autodj AND s.customer_id = t.customer_id)) + \
         (SELECT COUNT(*) FROM video_files v JOIN media_services s ON s.id = v.media_service_id \
           WHERE v.sha256 = $2 AND s.node_id = $1 AND s.delete_time IS NULL) AS BIGINT) AS total",
        vec![node_id.into(), sha256.into()],
    )
    .await?;
    Ok(needed > 0)
}

// ---- media tracks -----------------------------------------------------------------------

pub async fn insert_track(db: &impl ConnectionTrait, model: media_track::Model) -> Result<()> {
    media_track::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn get_track(db: &impl ConnectionTrait, id: &str) -> Result<Option<media_track::Model>> {
    Ok(media_track::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?)
}

pub async fn delete_track(db: &impl ConnectionTrait, id: &str) -> Result<()> {
    media_track::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

/// One page of a customer's library, in id order (ids sort by creation).
pub async fn list_tracks(
    db: &impl ConnectionTrait,
    customer_id: &str,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<media_track::Model>> {
    let mut query = media_track::Entity::find()
        .filter(media_track::Column::CustomerId.eq(customer_id))
        .order_by_asc(media_track::Column::Id)
        .limit(limit);
    if let Some(after) = after_id {
        query = query.filter(media_track::Column::Id.gt(after));
    }
    Ok(query.all(db).await?)
}

/// Every track of these customers, for the specs of their AutoDJ services.
pub async fn tracks_of_customers(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<Vec<media_track::Model>> {
    if customer_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(media_track::Entity::find()
        .filter(media_track::Column::CustomerId.is_in(customer_ids.iter().cloned()))
        .order_by_asc(media_track::Column::Id)
        .all(db)
        .await?)
}

// ---- video files ------------------------------------------------------------------------

pub async fn insert_video(db: &impl ConnectionTrait, model: video_file::Model) -> Result<()> {
    video_file::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn get_video(db: &impl ConnectionTrait, id: &str) -> Result<Option<video_file::Model>> {
    Ok(video_file::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?)
}

pub async fn delete_video(db: &impl ConnectionTrait, id: &str) -> Result<()> {
    video_file::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

pub async fn list_videos(
    db: &impl ConnectionTrait,
    service_id: &str,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<video_file::Model>> {
    let mut query = video_file::Entity::find()
        .filter(video_file::Column::MediaServiceId.eq(service_id))
        .order_by_asc(video_file::Column::Id)
        .limit(limit);
    if let Some(after) = after_id {
        query = query.filter(video_file::Column::Id.gt(after));
    }
    Ok(query.all(db).await?)
}

pub async fn videos_of_services(
    db: &impl ConnectionTrait,
    service_ids: &[String],
) -> Result<Vec<video_file::Model>> {
    if service_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(video_file::Entity::find()
        .filter(video_file::Column::MediaServiceId.is_in(service_ids.iter().cloned()))
        .order_by_asc(video_file::Column::Id)
        .all(db)
        .await?)
}

// ---- what the media quota counts --------------------------------------------------------

/// Bytes a customer stores: its library plus the video files of its live services.
pub async fn customer_stored_bytes(db: &impl ConnectionTrait, customer_id: &str) -> Result<u64> {
    total(
        db,
        "SELECT CAST((SELECT COALESCE(SUM(size_bytes), 0) FROM media_tracks WHERE customer_id = $1) + \
         (SELECT COALESCE(SUM(v.size_bytes), 0) FROM video_files v JOIN media_services s \
           ON s.id = v.media_service_id WHERE s.customer_id = $1 AND s.delete_time IS NULL) \
         AS BIGINT) AS total",
        vec![customer_id.into()],
    )
    .await
}

/// Bytes all of a reseller's customers store (libraries and video files).
pub async fn reseller_stored_bytes(db: &impl ConnectionTrait, reseller_id: &str) -> Result<u64> {
    total(
        db,
        "SELECT CAST((SELECT COALESCE(SUM(size_bytes), 0) FROM media_tracks WHERE reseller_id = $1) + \
         (SELECT COALESCE(SUM(v.size_bytes), 0) FROM video_files v JOIN media_services s \
           ON s.id = v.media_service_id WHERE s.reseller_id = $1 AND s.delete_time IS NULL) \
         AS BIGINT) AS total",
        vec![reseller_id.into()],
    )
    .await
}

/// The sum of the customer's live services' disk quotas, in MB.
pub async fn customer_disk_quota_mb(db: &impl ConnectionTrait, customer_id: &str) -> Result<u64> {
    total(
        db,
        "SELECT CAST(COALESCE(SUM(disk_quota_mb), 0) AS BIGINT) AS total FROM media_services \
         WHERE customer_id = $1 AND delete_time IS NULL",
        vec![customer_id.into()],
    )
    .await
}

pub async fn service_video_bytes(db: &impl ConnectionTrait, service_id: &str) -> Result<u64> {
    total(
        db,
        "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) AS total FROM video_files \
         WHERE media_service_id = $1",
        vec![service_id.into()],
    )
    .await
}

/// The customer's live AutoDJ services, by node: whose specs list the customer's library.
pub async fn autodj_services_of_customer(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Vec<(String, String)>> {
    use super::entities::media_service;
    Ok(media_service::Entity::find()
        .filter(media_service::Column::CustomerId.eq(customer_id))
        .filter(media_service::Column::DeleteTime.is_null())
        .filter(media_service::Column::Autodj.eq(true))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.node_id, s.id))
        .collect())
}

/// Removes every track of the customer; answers the blobs they named.
pub async fn delete_tracks_of_customer(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Vec<String>> {
    let tracks = media_track::Entity::find()
        .filter(media_track::Column::CustomerId.eq(customer_id))
        .all(db)
        .await?;
    media_track::Entity::delete_many()
        .filter(media_track::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    let mut blobs: Vec<String> = tracks.into_iter().map(|t| t.sha256).collect();
    blobs.sort();
    blobs.dedup();
    Ok(blobs)
}

/// Removes every video file of the service; answers the blobs they named.
pub async fn delete_videos_of_service(
    db: &impl ConnectionTrait,
    service_id: &str,
) -> Result<Vec<String>> {
    let videos = video_file::Entity::find()
        .filter(video_file::Column::MediaServiceId.eq(service_id))
        .all(db)
        .await?;
    video_file::Entity::delete_many()
        .filter(video_file::Column::MediaServiceId.eq(service_id))
        .exec(db)
        .await?;
    let mut blobs: Vec<String> = videos.into_iter().map(|v| v.sha256).collect();
    blobs.sort();
    blobs.dedup();
    Ok(blobs)
}
