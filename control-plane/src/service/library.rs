//! Uploaded media: customers' libraries of audio tracks and video services' files.
//!
//! An upload is spooled to a private temporary file (0600) while it is hashed, so that ffprobe
//! can judge the whole file and the database sees only bytes that are already known to be
//! complete, correct and playable; then the bytes are written to the blob store (staged, in
//! short transactions), and one transaction re-checks the quota under the reseller's row
//! lock, adopts the blob, records the file and bumps the nodes that must fetch it. Memory
//! stays at one chunk whatever the size; an upload cut off anywhere before that commit
//! leaves nothing behind (the spool file is removed when dropped, staged chunks are discarded
//! or swept), so a retry starts clean.
//!
//! The media quota (README: "Media quota"): with 1 MB = 1,048,576 bytes,
//! - a customer's stored bytes (its library plus the video files of its live services) stay
//!   within the sum of its live services' `disk_quota_mb`;
//! - a video service's files stay within its own `disk_quota_mb`;
//! - all the stored bytes of a reseller's customers stay within the reseller's disk limit.
//!
//! Each is checked before the first byte is read and again, authoritatively, in the storing
//! transaction; a refusal is RESOURCE_EXHAUSTED naming bytes asked and available.

use std::collections::{BTreeMap, BTreeSet};

use crate::persistence::{Executor, Tx};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::probe::{self, Expect, Probed};
use super::{Changes, ControlPlane, Result, can_see_customer, can_see_service, page_size};
use crate::blobs::{BLOB_CHUNK_BYTES, ByteStream, Staged, is_sha256};
use crate::clock::now_millis;
use crate::domain::{Principal, Resource, ServiceKind};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::dispatch as dispatch_db;
use crate::persistence::entities::{media_service, media_track, video_file};
use crate::persistence::{
    accounts as account_db, media as db, nodes as node_db, services as service_db,
};

/// 1 MB of disk quota, in bytes.
pub const MB: u64 = 1 << 20;
/// The longest display name kept, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// No single upload is larger (64 GiB); quotas usually refuse far smaller ones first.
pub const MAX_UPLOAD_BYTES: u64 = 64 << 30;
/// An upload whose next message takes longer ends (nothing kept): a stalled client must not
/// hold its stream slot and spool file forever.
pub const UPLOAD_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What the first message of an upload announces.
#[derive(Clone, Debug)]
pub struct Upload {
    pub file_name: String,
    pub size_bytes: u64,
    pub sha256: String,
}

/// A stored file (track or video) with the fields both kinds share.
#[derive(Clone, Debug)]
pub struct VideoFileView {
    pub video: video_file::Model,
    /// `http://HOST:PORT/videos/<id>.<ext>`.
    pub url: String,
}

/// The name people see: the part after the last path separator, trimmed; never a path.
/// Control characters never get here (the boundary refuses them) but are refused again.
pub fn sanitize_file_name(name: &str) -> Result<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    let field = "file.file_name";
    if base.is_empty() || base == "." || base == ".." {
        return Err(ServiceError::invalid_field(
            field,
            "must name a file (the part after the last '/' or '\\' is empty)",
        ));
    }
    if base.chars().any(char::is_control) {
        return Err(ServiceError::invalid_field(
            field,
            "must not contain control characters",
        ));
    }
    if base.len() > MAX_FILE_NAME_BYTES {
        return Err(ServiceError::invalid_field(
            field,
            format!("must be at most {MAX_FILE_NAME_BYTES} bytes"),
        ));
    }
    Ok(base.to_owned())
}

fn check_upload(upload: &Upload) -> Result<String> {
    let name = sanitize_file_name(&upload.file_name)?;
    if upload.size_bytes == 0 || upload.size_bytes > MAX_UPLOAD_BYTES {
        return Err(ServiceError::invalid_field(
            "file.size_bytes",
            format!("must be between 1 and {MAX_UPLOAD_BYTES}"),
        ));
    }
    if !is_sha256(&upload.sha256) {
        return Err(ServiceError::invalid_field(
            "file.sha256",
            "must be 64 lowercase hexadecimal digits",
        ));
    }
    Ok(name)
}

fn quota_error(
    subject: String,
    what: &str,
    asked: u64,
    available: u64,
    detail: String,
) -> ServiceError {
    ServiceError::QuotaExceeded {
        message: format!(
            "quota exceeded for {what}: asked for {asked} bytes, {available} bytes available ({detail})"
        ),
        resource: Resource::DiskMb,
        subject,
        asked,
        available,
    }
}

/// The media quota (module docs) for `asked` more bytes of `customer_id`'s, and of
/// `service` for a video file.
async fn check_media_quota(
    db: &impl Executor,
    customer_id: &str,
    reseller_id: &str,
    service: Option<&media_service::Model>,
    asked: u64,
) -> Result<()> {
    if let Some(service) = service {
        let quota = u64::try_from(service.disk_quota_mb)
            .unwrap_or_default()
            .saturating_mul(MB);
        let used = db::service_video_bytes(db, &service.id).await?;
        let available = quota.saturating_sub(used);
        if asked > available {
            return Err(quota_error(
                format!("media_service:{}", service.id),
                "the service's disk",
                asked,
                available,
                format!(
                    "its disk quota is {} MB, {used} bytes of video files stored",
                    service.disk_quota_mb
                ),
            ));
        }
    }
    let quota_mb = db::customer_disk_quota_mb(db, customer_id).await?;
    let quota = quota_mb.saturating_mul(MB);
    let used = db::customer_stored_bytes(db, customer_id).await?;
    let available = quota.saturating_sub(used);
    if asked > available {
        return Err(quota_error(
            format!("customer:{customer_id}"),
            "the customer's disk",
            asked,
            available,
            format!("its services' disk quotas sum to {quota_mb} MB, {used} bytes of media stored"),
        ));
    }
    let reseller = account_db::get_reseller(db, reseller_id, false)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("reseller {reseller_id} not found")))?;
    if let Some(limit_mb) = super::limits_of(&reseller).disk_mb {
        let used = db::reseller_stored_bytes(db, reseller_id).await?;
        let available = limit_mb.saturating_mul(MB).saturating_sub(used);
        if asked > available {
            return Err(quota_error(
                format!("reseller:{reseller_id}"),
                "the reseller's disk",
                asked,
                available,
                format!(
                    "its disk limit is {limit_mb} MB, {used} bytes of media stored by its customers"
                ),
            ));
        }
    }
    Ok(())
}

/// The upload's bytes in a private temporary file, hashed on the way.
struct Spooled {
    file: tempfile::NamedTempFile,
}

impl ControlPlane {
    /// Receives `chunks` into the spool directory, refusing at once what breaks the header's
    /// promises (too long, a chunk too big), and at the end what does not match it.
    async fn spool<S>(&self, upload: &Upload, mut chunks: S) -> Result<Spooled>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        let dir = self.config().upload_spool_dir.clone();
        let file = tokio::task::spawn_blocking(move || {
            // 0600 by construction (tempfile's default), removed when dropped.
            tempfile::Builder::new()
                .prefix(".upload-")
                .tempfile_in(&dir)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("spooling task: {e}")))?
        .map_err(|e| {
            ServiceError::Unavailable(format!(
                "cannot create an upload spool file in {}: {e}",
                self.config().upload_spool_dir.display()
            ))
        })?;
        let mut writer = tokio::fs::File::from_std(
            file.as_file()
                .try_clone()
                .map_err(|e| ServiceError::Internal(format!("spool file: {e}")))?,
        );
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        loop {
            let next = tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, chunks.next())
                .await
                .map_err(|_| {
                    ServiceError::Aborted(format!(
                        "no chunk of the upload arrived for {} s; nothing was kept, send it again",
                        UPLOAD_IDLE_TIMEOUT.as_secs()
                    ))
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk?;
            if chunk.len() > BLOB_CHUNK_BYTES {
                return Err(ServiceError::invalid_field(
                    "chunk",
                    format!("a chunk may hold at most {BLOB_CHUNK_BYTES} bytes"),
                ));
            }
            received = received.saturating_add(chunk.len() as u64);
            if received > upload.size_bytes {
                return Err(ServiceError::invalid_field(
                    "file.size_bytes",
                    format!(
                        "the file is longer than the {} bytes announced",
                        upload.size_bytes
                    ),
                ));
            }
            hasher.update(&chunk);
            writer.write_all(&chunk).await.map_err(|e| {
                ServiceError::Unavailable(format!("cannot write the upload spool file: {e}"))
            })?;
        }
        if received != upload.size_bytes {
            return Err(ServiceError::invalid_field(
                "file.size_bytes",
                format!(
                    "the upload ended after {received} of the {} bytes announced; nothing was kept",
                    upload.size_bytes
                ),
            ));
        }
        writer.flush().await.map_err(|e| {
            ServiceError::Unavailable(format!("cannot write the upload spool file: {e}"))
        })?;
        let actual = hex::encode(hasher.finalize());
        if actual != upload.sha256 {
            return Err(ServiceError::invalid_field(
                "file.sha256",
                format!(
                    "the bytes received hash to {actual}, not {}; nothing was kept",
                    upload.sha256
                ),
            ));
        }
        Ok(Spooled { file })
    }

    /// Writes the spooled file's bytes to the store (outside any transaction).
    async fn stage_spooled(&self, upload: &Upload, spooled: &Spooled) -> Result<Staged> {
        let std_file = spooled
            .file
            .reopen()
            .map_err(|e| ServiceError::Internal(format!("reopening the spool file: {e}")))?;
        let mut reader = tokio::io::BufReader::with_capacity(
            BLOB_CHUNK_BYTES,
            tokio::fs::File::from_std(std_file),
        );
        self.blobs()
            .stage(&upload.sha256, upload.size_bytes, &mut reader)
            .await
    }

    /// Staged bytes that did not become a blob (refused, failed, or already stored) go.
    async fn settle(&self, staged: &Staged, adopted: Option<bool>) {
        if adopted != Some(true) {
            self.blobs().discard(staged).await;
        }
    }

    /// Receives a track into `customer_id`'s library (module docs).
    pub async fn upload_media_track<S>(
        &self,
        principal: &Principal,
        customer_id: &str,
        upload: Upload,
        chunks: S,
    ) -> Result<media_track::Model>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        let display_name = check_upload(&upload)?;
        let customer = account_db::get_customer(self.reader(), customer_id, false)
            .await?
            .filter(|c| can_see_customer(principal, c))
            .ok_or_else(|| ServiceError::NotFound(format!("customer {customer_id:?} not found")))?;
        check_media_quota(
            self.reader(),
            &customer.id,
            &customer.reseller_id,
            None,
            upload.size_bytes,
        )
        .await?;
        let spooled = self.spool(&upload, chunks).await?;
        let probed = probe::probe(spooled.file.path(), Expect::Audio).await?;
        let staged = self.stage_spooled(&upload, &spooled).await?;
        drop(spooled);
        let recorded = self
            .record_track(&customer, &upload, display_name, probed, &staged)
            .await;
        self.settle(&staged, recorded.as_ref().ok().map(|(_, adopted)| *adopted))
            .await;
        let (track, _) = recorded?;
        tracing::info!(media_track_id = %track.id, customer_id = %track.customer_id, size_bytes = upload.size_bytes, "stored media track");
        Ok(track)
    }

    /// The storing transaction of a track: the quota again, under the reseller's lock, the
    /// blob adopted, the track recorded, the library's nodes bumped.
    async fn record_track(
        &self,
        customer: &crate::persistence::entities::customer::Model,
        upload: &Upload,
        display_name: String,
        probed: Probed,
        staged: &Staged,
    ) -> Result<(media_track::Model, bool)> {
        let customer_id = customer.id.as_str();
        let txn = self.begin().await?;
        // The reseller's row lock orders every quota decision about its customers.
        account_db::get_reseller(&txn, &customer.reseller_id, true).await?;
        let customer = account_db::get_customer(&txn, &customer.id, false)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("customer {customer_id:?} not found")))?;
        check_media_quota(
            &txn,
            &customer.id,
            &customer.reseller_id,
            None,
            upload.size_bytes,
        )
        .await?;
        let adopted = self.blobs().adopt(&txn, staged, upload.size_bytes).await?;
        let track = media_track::Model {
            id: ids::new_id("trk"),
            customer_id: customer.id.clone(),
            reseller_id: customer.reseller_id.clone(),
            display_name,
            size_bytes: i64::try_from(upload.size_bytes).unwrap_or(i64::MAX),
            sha256: upload.sha256.clone(),
            format: probed.format.clone(),
            codec: probed.codec.clone(),
            extension: probed.extension.to_owned(),
            duration_ms: probed.duration_ms,
            bit_rate: probed.bit_rate,
            create_time: now_millis(),
        };
        db::insert_track(&txn, track.clone()).await?;
        let mut changes = Changes::default();
        touch_library_nodes(&txn, &customer.id, &mut changes).await?;
        self.commit(txn, changes).await?;
        Ok((track, adopted))
    }

    async fn visible_track(&self, principal: &Principal, id: &str) -> Result<media_track::Model> {
        match db::get_track(self.reader(), id).await? {
            Some(t) if super::can_see_owner(principal, &t.reseller_id, &t.customer_id) => Ok(t),
            _ => Err(ServiceError::NotFound(format!(
                "media track {id:?} not found"
            ))),
        }
    }

    pub async fn get_media_track(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<media_track::Model> {
        self.visible_track(principal, id).await
    }

    pub async fn list_media_tracks(
        &self,
        principal: &Principal,
        customer_id: &str,
        page_token: &str,
        requested_size: i32,
    ) -> Result<(Vec<media_track::Model>, String)> {
        let size = page_size(requested_size)?;
        account_db::get_customer(self.reader(), customer_id, false)
            .await?
            .filter(|c| can_see_customer(principal, c))
            .ok_or_else(|| ServiceError::NotFound(format!("customer {customer_id:?} not found")))?;
        let listing = format!("media_tracks|{}|{customer_id}", principal.audit_name());
        let after = self.page_after(&listing, page_token)?;
        let rows = db::list_tracks(self.reader(), customer_id, after.as_deref(), size + 1).await?;
        Ok(self.paginate(&listing, rows, size, |t| &t.id))
    }

    /// Removes a track from the library, its bytes from the store once nothing else holds
    /// them, and (through the bumped specs) from every node.
    pub async fn delete_media_track(&self, principal: &Principal, id: &str) -> Result<()> {
        let track = self.visible_track(principal, id).await?;
        let txn = self.begin().await?;
        if db::get_track(&txn, &track.id).await?.is_none() {
            return Err(ServiceError::NotFound(format!(
                "media track {id:?} not found"
            )));
        }
        db::delete_track(&txn, &track.id).await?;
        self.release_blobs(&txn, std::slice::from_ref(&track.sha256))
            .await?;
        let mut changes = Changes::default();
        touch_library_nodes(&txn, &track.customer_id, &mut changes).await?;
        self.commit(txn, changes).await?;
        tracing::info!(media_track_id = %track.id, customer_id = %track.customer_id, "deleted media track");
        Ok(())
    }

    /// Deletes every blob in `hashes` that no track or video file names any more.
    async fn release_blobs(&self, txn: &Tx, hashes: &[String]) -> Result<()> {
        release_blobs(self, txn, hashes).await
    }

    /// Permanently deletes a customer's whole media library inside `txn`: its tracks, their
    /// bytes in the store (unless another customer's file holds the same bytes), and — by
    /// bumping the nodes of its AutoDJ services, recorded in `changes` — every node's copy.
    /// For DeleteCustomer (service/deletion.rs); the caller commits `txn` with `changes`.
    pub(crate) async fn delete_customer_media(
        &self,
        txn: &Tx,
        customer_id: &str,
        changes: &mut Changes,
    ) -> Result<()> {
        let hashes = db::delete_tracks_of_customer(txn, customer_id).await?;
        self.release_blobs(txn, &hashes).await?;
        touch_library_nodes(txn, customer_id, changes).await?;
        Ok(())
    }

    // ---- video files --------------------------------------------------------------------

    async fn visible_video_service(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<media_service::Model> {
        let service = self.visible_service(principal, id).await?;
        let service_type = service.service_type;
        if service_type.kind() != ServiceKind::Video {
            return Err(ServiceError::precondition(
                "NOT_A_VIDEO_SERVICE",
                format!("media_service:{}", service.id),
                format!(
                    "media service {} is not a video service; audio goes to the customer's media library",
                    service.id
                ),
            ));
        }
        Ok(service)
    }

    pub async fn upload_video_file<S>(
        &self,
        principal: &Principal,
        service_id: &str,
        upload: Upload,
        chunks: S,
    ) -> Result<VideoFileView>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        let display_name = check_upload(&upload)?;
        let service = self.visible_video_service(principal, service_id).await?;
        if service.deleting {
            return Err(super::media::being_deleted(&service));
        }
        check_media_quota(
            self.reader(),
            &service.customer_id,
            &service.reseller_id,
            Some(&service),
            upload.size_bytes,
        )
        .await?;
        let spooled = self.spool(&upload, chunks).await?;
        let probed: Probed = probe::probe(spooled.file.path(), Expect::Video).await?;
        let staged = self.stage_spooled(&upload, &spooled).await?;
        drop(spooled);
        let recorded = self
            .record_video(&service, &upload, display_name, probed, &staged)
            .await;
        self.settle(
            &staged,
            recorded.as_ref().ok().map(|(_, _, adopted)| *adopted),
        )
        .await;
        let (video, service, _) = recorded?;
        tracing::info!(video_file_id = %video.id, media_service_id = %service.id, size_bytes = upload.size_bytes, "stored video file");
        let base = self.video_base_url(&service).await?;
        Ok(VideoFileView {
            url: video_url(&base, &video),
            video,
        })
    }

    /// The storing transaction of a video file (see [`Self::record_track`]).
    async fn record_video(
        &self,
        service: &media_service::Model,
        upload: &Upload,
        display_name: String,
        probed: Probed,
        staged: &Staged,
    ) -> Result<(video_file::Model, media_service::Model, bool)> {
        let service_id = service.id.as_str();
        let txn = self.begin().await?;
        account_db::get_reseller(&txn, &service.reseller_id, true).await?;
        let service = service_db::get_live_service(&txn, &service.id, true)
            .await?
            .filter(|s| !s.deleting)
            .ok_or_else(|| {
                ServiceError::NotFound(format!("media service {service_id:?} not found"))
            })?;
        check_media_quota(
            &txn,
            &service.customer_id,
            &service.reseller_id,
            Some(&service),
            upload.size_bytes,
        )
        .await?;
        let adopted = self.blobs().adopt(&txn, staged, upload.size_bytes).await?;
        let video = video_file::Model {
            id: ids::new_id("vid"),
            media_service_id: service.id.clone(),
            display_name,
            size_bytes: i64::try_from(upload.size_bytes).unwrap_or(i64::MAX),
            sha256: upload.sha256.clone(),
            format: probed.format,
            codec: probed.codec,
            extension: probed.extension.to_owned(),
            duration_ms: probed.duration_ms,
            bit_rate: probed.bit_rate,
            create_time: now_millis(),
        };
        db::insert_video(&txn, video.clone()).await?;
        dispatch_db::touch_services(&txn, &service.node_id, std::slice::from_ref(&service.id))
            .await?;
        let mut changes = Changes::default();
        changes.nodes.insert(service.node_id.clone());
        self.commit(txn, changes).await?;
        Ok((video, service, adopted))
    }

    pub async fn list_video_files(
        &self,
        principal: &Principal,
        service_id: &str,
        page_token: &str,
        requested_size: i32,
    ) -> Result<(Vec<VideoFileView>, String)> {
        let size = page_size(requested_size)?;
        let service = self.visible_video_service(principal, service_id).await?;
        let listing = format!("video_files|{}|{service_id}", principal.audit_name());
        let after = self.page_after(&listing, page_token)?;
        let rows = db::list_videos(self.reader(), service_id, after.as_deref(), size + 1).await?;
        let (rows, token) = self.paginate(&listing, rows, size, |v| &v.id);
        let base = self.video_base_url(&service).await?;
        let views = rows
            .into_iter()
            .map(|video| VideoFileView {
                url: video_url(&base, &video),
                video,
            })
            .collect();
        Ok((views, token))
    }

    pub async fn delete_video_file(&self, principal: &Principal, id: &str) -> Result<()> {
        let not_found = || ServiceError::NotFound(format!("video file {id:?} not found"));
        let video = db::get_video(self.reader(), id)
            .await?
            .ok_or_else(not_found)?;
        let service = service_db::get_live_service(self.reader(), &video.media_service_id, false)
            .await?
            .filter(|s| can_see_service(principal, s))
            .ok_or_else(not_found)?;
        let txn = self.begin().await?;
        if db::get_video(&txn, &video.id).await?.is_none() {
            return Err(not_found());
        }
        db::delete_video(&txn, &video.id).await?;
        self.release_blobs(&txn, std::slice::from_ref(&video.sha256))
            .await?;
        dispatch_db::touch_services(&txn, &service.node_id, std::slice::from_ref(&service.id))
            .await?;
        let mut changes = Changes::default();
        changes.nodes.insert(service.node_id.clone());
        self.commit(txn, changes).await?;
        tracing::info!(video_file_id = %video.id, media_service_id = %service.id, "deleted video file");
        Ok(())
    }

    /// The names of the service's video files, for its deletion plan.
    pub(crate) async fn video_file_names(&self, service_id: &str) -> Result<Vec<String>> {
        Ok(
            db::videos_of_services(self.reader(), &[service_id.to_owned()])
                .await?
                .into_iter()
                .map(|v| v.display_name)
                .collect(),
        )
    }

    /// `http://HOST:PORT` of the service's HTTP port.
    async fn video_base_url(&self, service: &media_service::Model) -> Result<String> {
        let node = node_db::get_node(self.reader(), &service.node_id, false)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("service {} has no node", service.id)))?;
        let ports =
            service_db::ports_of_services(self.reader(), std::slice::from_ref(&service.id)).await?;
        let port = ports
            .iter()
            .find(|p| p.purpose == "http")
            .map(|p| p.port)
            .unwrap_or_default();
        Ok(format!("http://{}:{port}", node.public_host))
    }
}

impl ControlPlane {
    /// The blob's bytes for a node, if one of the services placed on it needs them (an AutoDJ
    /// service's owner's track, a video service's file); anything else answers NOT_FOUND,
    /// whether or not the blob exists.
    pub async fn fetch_blob_for_node(&self, node_id: &str, sha256: &str) -> Result<ByteStream> {
        let not_found =
            || ServiceError::NotFound(format!("blob {sha256:?} not found for this node"));
        if !is_sha256(sha256) || !db::node_needs_blob(self.reader(), node_id, sha256).await? {
            return Err(not_found());
        }
        self.blobs().get(sha256, 0, None).await
    }
}

/// The name a node gives a stored file: its id and the extension of its format.
pub fn node_file_name(id: &str, extension: &str) -> String {
    format!("{id}.{extension}")
}

fn video_url(base: &str, video: &video_file::Model) -> String {
    format!(
        "{base}/videos/{}",
        node_file_name(&video.id, &video.extension)
    )
}

/// Deletes every blob in `hashes` that no track or video file names any more, inside `txn`
/// (the blob's row lock keeps a concurrent upload of the same bytes from losing them).
pub(crate) async fn release_blobs(
    control_plane: &ControlPlane,
    txn: &Tx,
    hashes: &[String],
) -> Result<()> {
    for sha256 in hashes {
        if db::lock_blob(txn, sha256).await?.is_some() && !db::blob_referenced(txn, sha256).await? {
            control_plane.blobs().delete(txn, sha256).await?;
        }
    }
    Ok(())
}

/// Bumps the nodes of the customer's AutoDJ services so their next desired state lists its
/// library as it now is.
async fn touch_library_nodes(txn: &Tx, customer_id: &str, changes: &mut Changes) -> Result<()> {
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (node, service) in db::autodj_services_of_customer(txn, customer_id).await? {
        by_node.entry(node).or_default().push(service);
    }
    for (node, services) in by_node {
        dispatch_db::touch_services(txn, &node, &services).await?;
        changes.nodes.insert(node);
    }
    Ok(())
}

/// For the dispatcher: what the node must hold for these services — the libraries of the
/// AutoDJ services' owners and the video services' files — keyed by service id.
pub(crate) async fn media_of_services(
    db: &impl Executor,
    services: &[&media_service::Model],
) -> Result<BTreeMap<String, (Vec<media_track::Model>, Vec<video_file::Model>)>> {
    let owners: Vec<String> = services
        .iter()
        .filter(|s| s.autodj)
        .map(|s| s.customer_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let video_services: Vec<String> = services
        .iter()
        .filter(|s| s.service_type.kind() == ServiceKind::Video)
        .map(|s| s.id.clone())
        .collect();
    let tracks = super::group_by_parent(db::tracks_of_customers(db, &owners).await?, |t| {
        &t.customer_id
    });
    let mut videos =
        super::group_by_parent(db::videos_of_services(db, &video_services).await?, |v| {
            &v.media_service_id
        });
    let mut out = BTreeMap::new();
    for s in services {
        let library = if s.autodj {
            tracks.get(&s.customer_id).cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        out.insert(
            s.id.clone(),
            (library, videos.remove(&s.id).unwrap_or_default()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_directories_and_are_bounded() {
        assert_eq!(sanitize_file_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(
            sanitize_file_name("C:\\Music\\a b.mp3 ").unwrap(),
            "a b.mp3"
        );
        assert!(sanitize_file_name("dir/").is_err());
        assert!(sanitize_file_name("..").is_err());
        assert!(sanitize_file_name("a\u{7}b.mp3").is_err());
        assert!(sanitize_file_name(&"é".repeat(128)).is_err());
        assert_eq!(sanitize_file_name(&"é".repeat(127)).unwrap().len(), 254);
    }
}
