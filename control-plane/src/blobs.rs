//! The blob store: uploaded files (media tracks, video files) by the SHA-256 of their bytes.
//!
//! One trait, so the bytes can live where an operator wants them; castplane ships the
//! database backend ([`DatabaseBlobStore`]): chunks of [`BLOB_CHUNK_BYTES`] in `blob_chunks`,
//! a row in `blobs` once the last chunk is in. It needs no server beyond the database the
//! control plane already has, and every replica sharing that database shares the store.
//! Chunks are written one short transaction each (a long one would hold SQLite's only write
//! lock — and with it every other write, lease renewals included — for the whole upload);
//! the `blobs` row that adopts them is written in the caller's transaction, so a blob and the
//! track that names it are committed together or not at all. Chunks an upload wrote but
//! never got adopted are removed by it, or — if its process died — swept later
//! (`blob_uploads`).
//! The cost: bytes are served through the database (fine for audio libraries and modest video
//! catalogues; an S3-compatible backend behind this trait is the way for bigger fleets).
//!
//! Which files hold a blob is not the store's business: callers count references
//! (`persistence::media::blob_referenced`) and delete a blob once nothing names it.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;
use sea_orm::DatabaseConnection;

use crate::persistence::Tx;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::clock::now_millis;
use crate::error::ServiceError;
use crate::persistence::entities::blob;
use crate::persistence::media as db;

/// Bytes per chunk row: small enough that one row is cheap to hold in memory and to move
/// (PostgreSQL TOASTs it, SQLite pages it), large enough that a 200 MB file is 200 rows.
pub const BLOB_CHUNK_BYTES: usize = 1 << 20;

pub type BlobResult<T> = Result<T, ServiceError>;
pub type ByteStream = Pin<Box<dyn Stream<Item = BlobResult<Bytes>> + Send>>;

/// Bytes written to the store but not yet a blob: [`BlobStore::adopt`] makes them one inside
/// the transaction that records the file, [`BlobStore::discard`] removes them otherwise.
#[derive(Clone, Debug)]
pub struct Staged {
    pub sha256: String,
    /// `None`: the blob was already stored, nothing was written.
    storage_key: Option<String>,
}

/// Where blobs are kept. Writing is split in two so that the bytes, which may take minutes,
/// are written outside any transaction, and only their adoption joins the caller's.
pub trait BlobStore: Send + Sync {
    /// Writes `size` bytes read from `reader`, refusing them (and removing what was written)
    /// unless they hash to `sha256` (lowercase hex) and number exactly `size`. Bytes already
    /// stored under `sha256` are not written again.
    fn stage<'a>(
        &'a self,
        sha256: &'a str,
        size: u64,
        reader: &'a mut (dyn AsyncRead + Unpin + Send),
    ) -> BoxFuture<'a, BlobResult<Staged>>;

    /// Makes `staged` the blob `staged.sha256` inside `txn`. Answers whether its bytes were
    /// adopted; if not (the blob existed), the caller discards them once `txn` is over.
    fn adopt<'a>(
        &'a self,
        txn: &'a Tx,
        staged: &'a Staged,
        size: u64,
    ) -> BoxFuture<'a, BlobResult<bool>>;

    /// Removes staged bytes that did not become a blob; best effort (the sweep finds the rest).
    fn discard<'a>(&'a self, staged: &'a Staged) -> BoxFuture<'a, ()>;

    /// The bytes from `offset` on, `length` of them at most (`None`: to the end), as a stream
    /// of chunks: memory stays bounded whatever the blob's size.
    fn get(
        &self,
        sha256: &str,
        offset: u64,
        length: Option<u64>,
    ) -> BoxFuture<'_, BlobResult<ByteStream>>;

    /// Removes the blob inside `txn`; removing one that is absent is a no-op.
    fn delete<'a>(&'a self, txn: &'a Tx, sha256: &'a str) -> BoxFuture<'a, BlobResult<()>>;

    /// The blob's size, if it is stored.
    fn exists<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, BlobResult<Option<u64>>>;
}

/// Staged chunk sets older than this belong to an upload that died with its process.
pub const STALE_UPLOAD_MS: i64 = 6 * 3600 * 1000;

/// Chunks in the control plane's database (see the module docs).
pub struct DatabaseBlobStore {
    /// Writes chunks, each in a transaction of its own.
    writer: DatabaseConnection,
    /// For reads outside a transaction.
    reader: DatabaseConnection,
}

impl DatabaseBlobStore {
    pub fn new(writer: DatabaseConnection, reader: DatabaseConnection) -> Self {
        DatabaseBlobStore { writer, reader }
    }

    /// Removes chunk sets that uploads began long ago and never finished (their process died
    /// between writing chunks and adopting them).
    async fn sweep(&self) -> BlobResult<()> {
        for key in db::stale_uploads(&self.writer, now_millis() - STALE_UPLOAD_MS).await? {
            db::delete_chunks(&self.writer, &key).await?;
            db::end_upload(&self.writer, &key).await?;
            tracing::info!(storage_key = %key, "swept the chunks of an unfinished upload");
        }
        Ok(())
    }
}

/// A SHA-256 as this server writes them: 64 lowercase hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl BlobStore for DatabaseBlobStore {
    fn stage<'a>(
        &'a self,
        sha256: &'a str,
        size: u64,
        reader: &'a mut (dyn AsyncRead + Unpin + Send),
    ) -> BoxFuture<'a, BlobResult<Staged>> {
        Box::pin(async move {
            if db::get_blob(&self.writer, sha256).await?.is_some() {
                return Ok(Staged {
                    sha256: sha256.to_owned(),
                    storage_key: None,
                });
            }
            self.sweep().await?;
            let key = crate::ids::new_id("upl");
            db::begin_upload(&self.writer, &key, now_millis()).await?;
            let staged = Staged {
                sha256: sha256.to_owned(),
                storage_key: Some(key.clone()),
            };
            match write_chunks(&self.writer, &key, sha256, size, reader).await {
                Ok(()) => Ok(staged),
                Err(err) => {
                    self.discard(&staged).await;
                    Err(err)
                }
            }
        })
    }

    fn adopt<'a>(
        &'a self,
        txn: &'a Tx,
        staged: &'a Staged,
        size: u64,
    ) -> BoxFuture<'a, BlobResult<bool>> {
        Box::pin(async move {
            if db::lock_blob(txn, &staged.sha256).await?.is_some() {
                return Ok(false);
            }
            let Some(key) = &staged.storage_key else {
                return Err(ServiceError::Aborted(format!(
                    "the stored copy of blob {} was deleted while this upload was checked; send it again",
                    staged.sha256
                )));
            };
            let chunk_count = size.div_ceil(BLOB_CHUNK_BYTES as u64);
            db::insert_blob(
                txn,
                blob::Model {
                    sha256: staged.sha256.clone(),
                    storage_key: key.clone(),
                    size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
                    chunk_count: i64::try_from(chunk_count).unwrap_or(i64::MAX),
                    create_time: now_millis(),
                },
            )
            .await?;
            db::end_upload(txn, key).await?;
            Ok(true)
        })
    }

    fn discard<'a>(&'a self, staged: &'a Staged) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(key) = &staged.storage_key else {
                return;
            };
            let result = async {
                db::delete_chunks(&self.writer, key).await?;
                db::end_upload(&self.writer, key).await
            }
            .await;
            if let Err(err) = result {
                tracing::warn!(storage_key = %key, error = %err, "cannot remove an upload's chunks; the sweep will");
            }
        })
    }

    fn get(
        &self,
        sha256: &str,
        offset: u64,
        length: Option<u64>,
    ) -> BoxFuture<'_, BlobResult<ByteStream>> {
        let sha256 = sha256.to_owned();
        Box::pin(async move {
            let Some(blob) = db::get_blob(&self.reader, &sha256).await? else {
                return Err(ServiceError::NotFound(format!("blob {sha256} not found")));
            };
            let size = u64::try_from(blob.size_bytes).unwrap_or_default();
            let end = match length {
                Some(length) => offset.saturating_add(length).min(size),
                None => size,
            };
            let reader = self.reader.clone();
            let chunk = BLOB_CHUNK_BYTES as u64;
            let storage_key = blob.storage_key;
            // One chunk row in memory at a time, read when the consumer asks for it.
            let stream = futures::stream::try_unfold(offset, move |position| {
                let reader = reader.clone();
                let sha256 = sha256.clone();
                let storage_key = storage_key.clone();
                async move {
                    if position >= end {
                        return Ok(None);
                    }
                    let index = position / chunk;
                    let data = db::get_chunk(
                        &reader,
                        &storage_key,
                        i64::try_from(index).unwrap_or(i64::MAX),
                    )
                    .await?
                    .ok_or_else(|| {
                        ServiceError::Internal(format!("blob {sha256} lacks chunk {index}"))
                    })?;
                    let from = usize::try_from(position - index * chunk).unwrap_or(usize::MAX);
                    let to = usize::try_from((end - index * chunk).min(data.len() as u64))
                        .unwrap_or(usize::MAX);
                    if from >= to {
                        return Err(ServiceError::Internal(format!(
                            "blob {sha256} chunk {index} is shorter than its size says"
                        )));
                    }
                    let next = position + (to - from) as u64;
                    let bytes = Bytes::from(data).slice(from..to);
                    Ok(Some((bytes, next)))
                }
            });
            Ok(Box::pin(stream) as ByteStream)
        })
    }

    fn delete<'a>(&'a self, txn: &'a Tx, sha256: &'a str) -> BoxFuture<'a, BlobResult<()>> {
        Box::pin(async move {
            db::delete_blob(txn, sha256).await?;
            Ok(())
        })
    }

    fn exists<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, BlobResult<Option<u64>>> {
        Box::pin(async move {
            Ok(db::get_blob(&self.reader, sha256)
                .await?
                .map(|b| u64::try_from(b.size_bytes).unwrap_or_default()))
        })
    }
}

/// Writes the upload's chunks under `key`, one short transaction each, checking size and hash.
async fn write_chunks(
    writer: &DatabaseConnection,
    key: &str,
    sha256: &str,
    size: u64,
    reader: &mut (dyn AsyncRead + Unpin + Send),
) -> BlobResult<()> {
    let mut hasher = Sha256::new();
    let mut written: u64 = 0;
    let mut index: i64 = 0;
    loop {
        let mut chunk = Vec::with_capacity(BLOB_CHUNK_BYTES);
        let mut limited = (&mut *reader).take(BLOB_CHUNK_BYTES as u64);
        limited
            .read_to_end(&mut chunk)
            .await
            .map_err(|e| ServiceError::Internal(format!("reading the upload: {e}")))?;
        if chunk.is_empty() {
            break;
        }
        written = written.saturating_add(chunk.len() as u64);
        if written > size {
            return Err(ServiceError::invalid_field(
                "file.size_bytes",
                format!("the file is longer than the {size} bytes announced"),
            ));
        }
        hasher.update(&chunk);
        db::insert_chunk(writer, key, index, chunk).await?;
        index += 1;
    }
    if written != size {
        return Err(ServiceError::invalid_field(
            "file.size_bytes",
            format!("the file has {written} bytes, not the {size} announced"),
        ));
    }
    let actual = hex::encode(hasher.finalize());
    if actual != sha256 {
        return Err(ServiceError::invalid_field(
            "file.sha256",
            format!("the bytes hash to {actual}, not {sha256}"),
        ));
    }
    Ok(())
}
