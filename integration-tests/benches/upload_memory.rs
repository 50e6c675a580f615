//! Memory during a 200 MB upload: the control plane (in this process, on SQLite, with a real
//! agent for the service that gives the customer its disk quota) receives a WAV of ~210 MB
//! through `UploadMediaTrack`; the process's resident set is sampled every 20 ms. Prints the
//! baseline, the peak and the growth. The client reads the file a chunk at a time, so the
//! growth is the server's (spooling, ffprobe's child aside, storing 1 MiB chunk rows).

use std::time::{Duration, Instant};

use castplane_control::ServiceConfig;
use castplane_integration_tests::client::icecast_request;
use castplane_integration_tests::fleet::{setup, wait_online};
use castplane_integration_tests::media::{ffmpeg, upload_track_file};
use castplane_integration_tests::{AgentHandle, Backend};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1190",
            "-ac",
            "2",
            "-c:a",
            "pcm_s16le",
        ],
        &dir.path().join("long.wav"),
    );
    let size = std::fs::metadata(&wav).expect("wav").len();
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 4).await;
    let agent = AgentHandle::join_and_start(&s.cp, &token).await;
    wait_online(&s.admin, &s.node.id).await;
    let mut request = icecast_request(&s.owner, "big-library", 10);
    request
        .media_service
        .as_mut()
        .expect("service")
        .disk_quota_mb = 400;
    s.admin
        .media()
        .create_media_service(request)
        .await
        .expect("create");

    let baseline = rss_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let track = upload_track_file(&s.admin, &s.owner, &wav)
        .await
        .expect("upload");
    let elapsed = started.elapsed();
    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "upload of {:.1} MB ({}): {:.1} s, {:.1} MB/s; RSS baseline {} MiB, peak {} MiB, growth {} MiB",
        size as f64 / 1e6,
        track.format,
        elapsed.as_secs_f64(),
        size as f64 / 1e6 / elapsed.as_secs_f64(),
        baseline / 1024,
        peak / 1024,
        peak.saturating_sub(baseline) / 1024
    );
    agent.shutdown().await;
}
