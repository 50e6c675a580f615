//! Uploads through the public API, and the media files tests upload: made by the real ffmpeg.

use std::path::{Path, PathBuf};

use castplane_proto::v1 as pb;
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Database, Statement};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::{Client, ControlPlaneHandle};

pub const CHUNK: usize = 1 << 20;

/// Runs ffmpeg with `args` (after `-v error -y`), writing `out`.
pub fn ffmpeg(args: &[&str], out: &Path) -> PathBuf {
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg {args:?} failed");
    out.to_owned()
}

/// An MP3 of a sine tone, `seconds` long.
pub fn mp3(dir: &Path, name: &str, frequency: u32, seconds: u32) -> PathBuf {
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency={frequency}:duration={seconds}"),
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
        ],
        &dir.join(name),
    )
}

/// A small H.264 MP4 (test pattern), `seconds` long.
pub fn mp4(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=size=160x120:rate=10:duration={seconds}"),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ],
        &dir.join(name),
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The header for `bytes` named `name`.
pub fn header(name: &str, bytes: &[u8]) -> pb::UploadHeader {
    pb::UploadHeader {
        file_name: name.to_owned(),
        size_bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    }
}

pub fn track_messages(
    customer_id: &str,
    header: pb::UploadHeader,
    chunks: Vec<Vec<u8>>,
) -> Vec<pb::UploadMediaTrackRequest> {
    use pb::upload_media_track_request::Body;
    let mut messages = vec![pb::UploadMediaTrackRequest {
        body: Some(Body::Header(pb::UploadMediaTrackHeader {
            customer_id: customer_id.to_owned(),
            file: Some(header),
        })),
    }];
    messages.extend(chunks.into_iter().map(|c| pb::UploadMediaTrackRequest {
        body: Some(Body::Chunk(c)),
    }));
    messages
}

fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect()
}

/// Uploads `bytes` as `name` into the customer's library.
pub async fn upload_track(
    client: &Client,
    customer_id: &str,
    name: &str,
    bytes: &[u8],
) -> Result<pb::MediaTrack, tonic::Status> {
    let messages = track_messages(customer_id, header(name, bytes), split(bytes));
    client
        .library()
        .upload_media_track(futures::stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

/// Uploads `bytes` as `name` to a video service.
pub async fn upload_video(
    client: &Client,
    service_id: &str,
    name: &str,
    bytes: &[u8],
) -> Result<pb::VideoFile, tonic::Status> {
    use pb::upload_video_file_request::Body;
    let mut messages = vec![pb::UploadVideoFileRequest {
        body: Some(Body::Header(pb::UploadVideoFileHeader {
            media_service_id: service_id.to_owned(),
            file: Some(header(name, bytes)),
        })),
    }];
    messages.extend(
        split(bytes)
            .into_iter()
            .map(|c| pb::UploadVideoFileRequest {
                body: Some(Body::Chunk(c)),
            }),
    );
    client
        .library()
        .upload_video_file(futures::stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

/// Uploads the file at `path` chunk by chunk, read as the stream is polled: memory stays at a
/// chunk whatever the size (for measuring the server's).
pub async fn upload_track_file(
    client: &Client,
    customer_id: &str,
    path: &Path,
) -> Result<pb::MediaTrack, tonic::Status> {
    use pb::upload_media_track_request::Body;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut file = tokio::fs::File::open(path).await.expect("open");
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let header = pb::UploadHeader {
        file_name: path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned(),
        size_bytes: size,
        sha256: hex::encode(hasher.finalize()),
    };
    let first = pb::UploadMediaTrackRequest {
        body: Some(Body::Header(pb::UploadMediaTrackHeader {
            customer_id: customer_id.to_owned(),
            file: Some(header),
        })),
    };
    let file = tokio::fs::File::open(path).await.expect("open");
    let chunks = futures::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match file.read(&mut buf[filled..]).await.expect("read") {
                0 => break,
                n => filled += n,
            }
        }
        (filled > 0).then(|| {
            buf.truncate(filled);
            (
                pb::UploadMediaTrackRequest {
                    body: Some(Body::Chunk(buf)),
                },
                file,
            )
        })
    });
    client
        .library()
        .upload_media_track(futures::stream::iter([first]).chain(chunks))
        .await
        .map(|r| r.into_inner())
}

/// Rows in the blob store's tables: (blobs, chunks). Read straight from the database, since
/// "no bytes kept" is about the store, not about what the API lists.
pub async fn stored_blobs(cp: &ControlPlaneHandle) -> (i64, i64) {
    let db = Database::connect(cp.effective_database_url())
        .await
        .expect("connect to the control plane's database");
    let count = |table: &str| {
        let db = &db;
        let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table}");
        async move {
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .expect("count")
                .expect("a row");
            row.try_get::<i64>("", "n").expect("n")
        }
    };
    let counts = (count("blobs").await, count("blob_chunks").await);
    db.close().await.ok();
    counts
}

/// Files left in the control plane's upload spool directory.
pub fn spooled_files(cp: &ControlPlaneHandle) -> Vec<String> {
    std::fs::read_dir(cp.spool_dir())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A customer with one icecast service of `disk_quota_mb`, its library's quota (placed on a
/// real agent's node, since only agents report what a node can run).
pub async fn customer_with_quota(
    backend: crate::Backend,
    disk_quota_mb: u64,
) -> (crate::fleet::Setup, crate::AgentHandle, pb::Customer) {
    let (s, token) =
        crate::fleet::setup(backend, castplane_control::ServiceConfig::default(), 10).await;
    let agent = crate::AgentHandle::join_and_start(&s.cp, &token).await;
    crate::fleet::wait_online(&s.admin, &s.node.id).await;
    let reseller_id = s.admin.customer(&s.owner).await.reseller_id;
    let customer = s.admin.create_customer(&reseller_id, "Library Owner").await;
    let mut request = crate::client::icecast_request(&customer.id, "library-fm", 10);
    request
        .media_service
        .as_mut()
        .expect("service")
        .disk_quota_mb = disk_quota_mb;
    s.admin
        .media()
        .create_media_service(request)
        .await
        .expect("create");
    (s, agent, customer)
}

/// Creates a video service named `name` for `owner` with a disk quota of `disk_quota_mb`.
pub async fn create_video_service(
    admin: &Client,
    owner: &str,
    name: &str,
    disk_quota_mb: u64,
) -> pb::MediaService {
    let mut request = crate::client::icecast_request(owner, name, 10);
    let wanted = request.media_service.as_mut().expect("service");
    wanted.r#type = pb::ServiceType::Video as i32;
    wanted.disk_quota_mb = disk_quota_mb;
    admin
        .media()
        .create_media_service(request)
        .await
        .expect("create a video service")
        .into_inner()
}
