//! Uploaded media: the blob store's tables (content-addressed, chunked so that any file size
//! fits in rows both databases handle well), customers' media tracks and services' video files.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_500001_media"
    }
}

fn up(bytes_type: &str) -> Vec<String> {
    vec![
        // A blob exists once its row does. Its chunks are written first, under a key of
        // their own, each in a short transaction of its own (so that a large upload never
        // holds SQLite's one write lock for long); the row that makes them the blob is
        // written in the transaction that records the file. `blob_uploads` lists chunk sets
        // not yet adopted, so that what a crashed upload wrote can be swept.
        r#"CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            storage_key TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            chunk_count BIGINT NOT NULL,
            create_time BIGINT NOT NULL
        )"#
        .to_owned(),
        format!(
            r#"CREATE TABLE blob_chunks (
                storage_key TEXT NOT NULL,
                chunk_index BIGINT NOT NULL,
                data {bytes_type} NOT NULL,
                PRIMARY KEY (storage_key, chunk_index)
            )"#
        ),
        r#"CREATE TABLE blob_uploads (
            storage_key TEXT PRIMARY KEY,
            start_time BIGINT NOT NULL
        )"#
        .to_owned(),
        r#"CREATE TABLE media_tracks (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            reseller_id TEXT NOT NULL,
            display_name TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            format TEXT NOT NULL,
            codec TEXT NOT NULL,
            extension TEXT NOT NULL,
            duration_ms BIGINT NOT NULL,
            bit_rate BIGINT NOT NULL,
            create_time BIGINT NOT NULL
        )"#
        .to_owned(),
        "CREATE INDEX media_tracks_by_customer ON media_tracks (customer_id, id)".to_owned(),
        "CREATE INDEX media_tracks_by_reseller ON media_tracks (reseller_id)".to_owned(),
        "CREATE INDEX media_tracks_by_blob ON media_tracks (sha256)".to_owned(),
        r#"CREATE TABLE video_files (
            id TEXT PRIMARY KEY,
            media_service_id TEXT NOT NULL,
            display_name TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            format TEXT NOT NULL,
            codec TEXT NOT NULL,
            extension TEXT NOT NULL,
            duration_ms BIGINT NOT NULL,
            bit_rate BIGINT NOT NULL,
            create_time BIGINT NOT NULL
        )"#
        .to_owned(),
        "CREATE INDEX video_files_by_service ON video_files (media_service_id, id)".to_owned(),
        "CREATE INDEX video_files_by_blob ON video_files (sha256)".to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let bytes_type = match manager.get_database_backend() {
            DbBackend::Postgres => "BYTEA",
            _ => "BLOB",
        };
        for statement in up(bytes_type) {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in [
            "video_files",
            "media_tracks",
            "blob_uploads",
            "blob_chunks",
            "blobs",
        ] {
            db.execute_unprepared(&format!("DROP TABLE {table}"))
                .await?;
        }
        Ok(())
    }
}
