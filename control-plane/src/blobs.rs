//! The blob store: uploaded files (media tracks, video files) by the SHA-256 of their bytes.
//!
//! One trait, so the bytes can live where an operator wants them; castplane ships the
//! database backend ([`DatabaseBlobStore`]): chunks of [`BLOB_CHUNK_BYTES`] in `blob_chunks`,
//! a row in `blobs` once the last chunk is in. It needs no server beyond the database the
//! control plane already has, every replica sharing that database shares the store, and a
//! blob is written in the caller's transaction — so a blob and the track that names it are
//! committed together or not at all, and an upload cut off half-way leaves no row behind.
//! The cost: bytes are served through the database (fine for audio libraries and modest video
//! catalogues; an S3-compatible backend behind this trait is the way for bigger fleets).
//!
//! Which files hold a blob is not the store's business: callers count references
//! (`persistence::media::blob_referenced`) and delete a blob once nothing names it.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
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

/// Where blobs are kept. Every method is idempotent on the same content.
pub trait BlobStore: Send + Sync {
    /// Stores `size` bytes read from `reader` under `sha256` (lowercase hex) inside `txn`,
    /// refusing them (and writing nothing that outlives the transaction) unless they hash to
    /// `sha256` and number exactly `size`. Storing a blob that exists is a no-op.
    fn put<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        sha256: &'a str,
        size: u64,
        reader: &'a mut (dyn AsyncRead + Unpin + Send),
    ) -> BoxFuture<'a, BlobResult<()>>;

    /// The bytes from `offset` on, `length` of them at most (`None`: to the end), as a stream
    /// of chunks: memory stays bounded whatever the blob's size.
    fn get(
        &self,
        sha256: &str,
        offset: u64,
        length: Option<u64>,
    ) -> BoxFuture<'_, BlobResult<ByteStream>>;

    /// Removes the blob inside `txn`; removing one that is absent is a no-op.
    fn delete<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        sha256: &'a str,
    ) -> BoxFuture<'a, BlobResult<()>>;

    /// The blob's size, if it is stored.
    fn exists<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, BlobResult<Option<u64>>>;
}

/// Chunks in the control plane's database (see the module docs).
pub struct DatabaseBlobStore {
    /// For reads outside a transaction.
    reader: DatabaseConnection,
}

impl DatabaseBlobStore {
    pub fn new(reader: DatabaseConnection) -> Self {
        DatabaseBlobStore { reader }
    }
}

/// A SHA-256 as this server writes them: 64 lowercase hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl BlobStore for DatabaseBlobStore {
    fn put<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        sha256: &'a str,
        size: u64,
        reader: &'a mut (dyn AsyncRead + Unpin + Send),
    ) -> BoxFuture<'a, BlobResult<()>> {
        Box::pin(async move {
            if db::lock_blob(txn, sha256).await?.is_some() {
                return Ok(());
            }
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
                db::insert_chunk(txn, sha256, index, chunk).await?;
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
            db::insert_blob(
                txn,
                blob::Model {
                    sha256: sha256.to_owned(),
                    size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
                    chunk_count: index,
                    create_time: now_millis(),
                },
            )
            .await?;
            Ok(())
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
            // One chunk row in memory at a time, read when the consumer asks for it.
            let stream = futures::stream::try_unfold(offset, move |position| {
                let reader = reader.clone();
                let sha256 = sha256.clone();
                async move {
                    if position >= end {
                        return Ok(None);
                    }
                    let index = position / chunk;
                    let data =
                        db::get_chunk(&reader, &sha256, i64::try_from(index).unwrap_or(i64::MAX))
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

    fn delete<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        sha256: &'a str,
    ) -> BoxFuture<'a, BlobResult<()>> {
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
