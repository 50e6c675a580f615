//! Talking to the streaming servers the way broadcasters and listeners do.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An ffmpeg sine-tone source pushing MP3 into an Icecast mount; killed on drop.
pub struct Source(Child);

impl Source {
    pub fn icecast(port: u16, password: &str, mount: &str) -> std::io::Result<Self> {
        let child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440",
            ])
            .args([
                "-c:a",
                "libmp3lame",
                "-b:a",
                "128k",
                "-content_type",
                "audio/mpeg",
                "-f",
                "mp3",
            ])
            .arg(format!(
                "icecast://source:{password}@127.0.0.1:{port}{mount}"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Source(child))
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Source {
    /// A test-pattern video with a tone, pushed over RTMP to `url`.
    pub fn rtmp(url: &str) -> std::io::Result<Self> {
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine",
            ])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-g",
                "50",
            ])
            .args(["-c:a", "aac", "-f", "flv"])
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Source(child))
    }
}

/// GETs `path` and reads up to `want` body bytes; None unless the server answered 200.
pub fn read_stream(port: u16, path: &str, want: usize, timeout: Duration) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: castplane-test\r\n\r\n"
    )
    .ok()?;
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut body_start = None;
    while Instant::now() < deadline {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if body_start.is_none()
            && let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&buf[..end]);
            if !head.lines().next().is_some_and(|l| l.contains(" 200")) {
                return None;
            }
            body_start = Some(end + 4);
        }
        if let Some(start) = body_start
            && buf.len() - start >= want
        {
            return Some(buf[start..].to_vec());
        }
    }
    None
}

/// Retries [`read_stream`] until the server answers with at least `want` bytes or `timeout`
/// passes (a stream appears only once its source has connected). Runs off the async runtime.
pub async fn wait_for_stream(
    port: u16,
    path: &str,
    want: usize,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(body) = read_stream(port, &path, want, Duration::from_secs(20)) {
                return Some(body);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// True if `bytes` hold MP3: an ID3 tag or a run of valid MPEG audio frame headers.
pub fn looks_like_mp3(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"ID3") {
        return true;
    }
    bytes
        .windows(2)
        .filter(|w| w[0] == 0xFF && (w[1] & 0xE0) == 0xE0)
        .count()
        >= 10
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

/// The pid of the liquidsoap running `service_id`'s AutoDJ under `data_dir`, from /proc.
pub fn liquidsoap_pid(data_dir: &Path, service_id: &str) -> Option<u32> {
    let script = format!("{}/services/{service_id}/autodj.liq", data_dir.display());
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline);
            (text.contains("liquidsoap") && text.contains(&script)).then_some(pid)
        })
}

/// The pid of the icecast2 running the service `service_id` under `data_dir`, from /proc.
pub fn icecast_pid(data_dir: &Path, service_id: &str) -> Option<u32> {
    let needle = format!("{}/services/{service_id}/", data_dir.display());
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline);
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            (text.contains("icecast2") && text.contains(&needle) && !zombie).then_some(pid)
        })
}
