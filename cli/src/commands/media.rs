//! `media upload|list|get|delete` and `video upload|list|delete`.
//!
//! An upload reads each file twice: once to compute the SHA-256 the header promises (the
//! server refuses bytes that do not match it), then to stream it in 1 MiB chunks behind a
//! progress bar (bytes, bytes/s, ETA on stderr when it is a terminal). Memory stays at a
//! couple of chunks whatever the file's size.

use std::path::Path;

use castplane_proto::v1 as pb;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::Ctx;
use crate::cli::{MediaCommand, VideoCommand};
use crate::error::{CliError, Result};
use crate::json::{self, ToJson};
use crate::lookup;
use crate::output::{fields, render, table, time_text};

/// What the server accepts per message.
const CHUNK_BYTES: usize = 1 << 20;

pub async fn run_media(ctx: &Ctx, command: MediaCommand) -> Result<()> {
    let mut client = ctx.api.library.clone();
    match command {
        MediaCommand::Upload { files, customer } => {
            let mut uploaded = Vec::new();
            for path in &files {
                let (header, size) = header_of(path).await?;
                let header = pb::UploadMediaTrackHeader {
                    customer_id: customer.clone(),
                    file: Some(header),
                };
                let first = pb::UploadMediaTrackRequest {
                    body: Some(pb::upload_media_track_request::Body::Header(header)),
                };
                let bar = progress(path, size);
                let chunks =
                    chunks(path, bar.clone())
                        .await?
                        .map(|data| pb::UploadMediaTrackRequest {
                            body: Some(pb::upload_media_track_request::Body::Chunk(data)),
                        });
                let stream = futures::stream::iter([first]).chain(chunks);
                let result = client.upload_media_track(stream).await;
                bar.finish_and_clear();
                let track = result?.into_inner();
                if !ctx.out.is_json() {
                    eprintln!("uploaded {} as {}", path.display(), track.id);
                }
                uploaded.push(track);
            }
            ctx.out.emit(
                || json::list("media_tracks", &uploaded),
                || tracks_table(&uploaded),
            )
        }
        MediaCommand::List { customer } => {
            let tracks = lookup::all_pages(|page_token| {
                let mut client = client.clone();
                let customer_id = customer.clone();
                async move {
                    let r = client
                        .list_media_tracks(pb::ListMediaTracksRequest {
                            customer_id,
                            page_size: 1000,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok((r.media_tracks, r.next_page_token))
                }
            })
            .await?;
            ctx.out.emit(
                || json::list("media_tracks", &tracks),
                || tracks_table(&tracks),
            )
        }
        MediaCommand::Get { id } => {
            let track = client
                .get_media_track(pb::GetMediaTrackRequest { id })
                .await?
                .into_inner();
            ctx.out.emit(|| track.to_json(), || track_detail(&track))
        }
        MediaCommand::Delete { id } => {
            let response = client
                .delete_media_track(pb::DeleteMediaTrackRequest { id: id.clone() })
                .await?
                .into_inner();
            ctx.out.emit(
                || response.to_json(),
                || format!("deleted media track {id}"),
            )
        }
    }
}

pub async fn run_video(ctx: &Ctx, command: VideoCommand) -> Result<()> {
    let mut client = ctx.api.library.clone();
    match command {
        VideoCommand::Upload { files, service } => {
            let media_service_id = lookup::service_id(&ctx.api, &service).await?;
            let mut uploaded = Vec::new();
            for path in &files {
                let (header, size) = header_of(path).await?;
                let header = pb::UploadVideoFileHeader {
                    media_service_id: media_service_id.clone(),
                    file: Some(header),
                };
                let first = pb::UploadVideoFileRequest {
                    body: Some(pb::upload_video_file_request::Body::Header(header)),
                };
                let bar = progress(path, size);
                let chunks =
                    chunks(path, bar.clone())
                        .await?
                        .map(|data| pb::UploadVideoFileRequest {
                            body: Some(pb::upload_video_file_request::Body::Chunk(data)),
                        });
                let stream = futures::stream::iter([first]).chain(chunks);
                let result = client.upload_video_file(stream).await;
                bar.finish_and_clear();
                let video = result?.into_inner();
                if !ctx.out.is_json() {
                    eprintln!("uploaded {} as {}", path.display(), video.id);
                }
                uploaded.push(video);
            }
            ctx.out.emit(
                || json::list("video_files", &uploaded),
                || videos_table(&uploaded),
            )
        }
        VideoCommand::List { service } => {
            let media_service_id = lookup::service_id(&ctx.api, &service).await?;
            let videos = lookup::all_pages(|page_token| {
                let mut client = client.clone();
                let media_service_id = media_service_id.clone();
                async move {
                    let r = client
                        .list_video_files(pb::ListVideoFilesRequest {
                            media_service_id,
                            page_size: 1000,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok((r.video_files, r.next_page_token))
                }
            })
            .await?;
            ctx.out.emit(
                || json::list("video_files", &videos),
                || videos_table(&videos),
            )
        }
        VideoCommand::Delete { id } => {
            let response = client
                .delete_video_file(pb::DeleteVideoFileRequest { id: id.clone() })
                .await?
                .into_inner();
            ctx.out
                .emit(|| response.to_json(), || format!("deleted video file {id}"))
        }
    }
}

/// The header for `path`: its name, size and SHA-256 (one read of the whole file).
async fn header_of(path: &Path) -> Result<(pb::UploadHeader, u64)> {
    let cannot =
        |e: std::io::Error| CliError::usage(format!("cannot read {}: {e}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(cannot)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut size: u64 = 0;
    loop {
        let n = file.read(&mut buf).await.map_err(cannot)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        pb::UploadHeader {
            file_name,
            size_bytes: size,
            sha256: hex::encode(hasher.finalize()),
        },
        size,
    ))
}

fn progress(path: &Path, size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
}

/// The file's bytes in chunks, read as the upload asks for them.
async fn chunks(
    path: &Path,
    bar: ProgressBar,
) -> Result<impl futures::Stream<Item = Vec<u8>> + Send + 'static> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(futures::stream::unfold(
        Some((file, bar)),
        |state| async move {
            let (mut file, bar) = state?;
            let mut buf = vec![0u8; CHUNK_BYTES];
            let mut filled = 0;
            while filled < CHUNK_BYTES {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    // The server sees the stream end short and keeps nothing; it says so.
                    Err(_) => break,
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            bar.inc(filled as u64);
            Some((buf, Some((file, bar))))
        },
    ))
}

fn duration_text(seconds: f64) -> String {
    let total = seconds.round() as u64;
    format!("{}:{:02}", total / 60, total % 60)
}

fn tracks_table(tracks: &[pb::MediaTrack]) -> String {
    let mut t = table(["ID", "NAME", "FORMAT", "DURATION", "KBPS", "BYTES"]);
    for track in tracks {
        t.add_row(vec![
            track.id.clone(),
            track.display_name.clone(),
            format!("{}/{}", track.format, track.codec),
            duration_text(track.duration_seconds),
            (track.bit_rate / 1000).to_string(),
            track.size_bytes.to_string(),
        ]);
    }
    render(&t)
}

fn track_detail(track: &pb::MediaTrack) -> String {
    render(&fields(vec![
        ("Id", track.id.clone()),
        ("Name", track.display_name.clone()),
        ("Customer", track.customer_id.clone()),
        ("Format", track.format.clone()),
        ("Codec", track.codec.clone()),
        ("Duration", duration_text(track.duration_seconds)),
        ("Bit rate", format!("{} kbps", track.bit_rate / 1000)),
        ("Bytes", track.size_bytes.to_string()),
        ("SHA-256", track.sha256.clone()),
        ("Uploaded", time_text(track.create_time.as_ref())),
    ]))
}

fn videos_table(videos: &[pb::VideoFile]) -> String {
    let mut t = table(["ID", "NAME", "FORMAT", "DURATION", "BYTES", "URL"]);
    for video in videos {
        t.add_row(vec![
            video.id.clone(),
            video.display_name.clone(),
            format!("{}/{}", video.format, video.codec),
            duration_text(video.duration_seconds),
            video.size_bytes.to_string(),
            video.url.clone(),
        ]);
    }
    render(&t)
}
