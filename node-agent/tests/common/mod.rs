//! Helpers shared by the supervisor tests: polling with a deadline and reading observed state.
// Each test binary uses its own subset of these.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use castplane_agent::supervisor::Supervisor;
use castplane_proto::agent::v1::ObservedService;
use castplane_proto::v1::ObservedState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

/// Generous: liquidsoap alone needs seconds of CPU to start on a loaded 2-core machine, and
/// the deadline only matters when a test is failing anyway.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub const POLL: Duration = Duration::from_millis(50);

pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

pub async fn observed(sup: &Supervisor, id: &str) -> Option<ObservedService> {
    sup.observed()
        .await
        .into_iter()
        .find(|o| o.media_service_id == id)
}

pub fn state_of(o: &ObservedService) -> (ObservedState, String) {
    let status = o.status.clone().unwrap_or_default();
    (
        ObservedState::try_from(status.state).unwrap_or(ObservedState::Unspecified),
        status.message,
    )
}

/// Waits for `state` and returns its message.
pub async fn wait_state(sup: &Supervisor, id: &str, state: ObservedState) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = observed(sup, id).await.map(|o| state_of(&o));
        if let Some((s, message)) = &now
            && *s == state
        {
            return message.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {id} to be {state:?}; it is {now:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub async fn port_accepts(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

pub fn free_port() -> u16 {
    use rand::Rng;
    // Below the kernel's ephemeral range (32768–60999 here): a port found free cannot be handed
    // to some process's outgoing connection before the server binds it, as one from `bind(0)`
    // can when tests run in parallel processes.
    loop {
        let port = rand::rng().random_range(20_000..32_000);
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// The longest run of back-to-back MP3 frames in `data`.
pub fn mp3_frame_run(data: &[u8]) -> usize {
    let mut best = 0;
    for start in 0..data.len().min(4096) {
        let (mut at, mut run) = (start, 0);
        while let Some(len) = data.get(at..).and_then(mp3_frame_len) {
            run += 1;
            at += len;
        }
        best = best.max(run);
    }
    best
}

/// Length of the MPEG-1 Layer III frame whose header starts `b`, if it is one.
pub fn mp3_frame_len(b: &[u8]) -> Option<usize> {
    const KBPS: [usize; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const RATES: [usize; 3] = [44100, 48000, 32000];
    if b.len() < 4 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return None;
    }
    let (version, layer) = ((b[1] >> 3) & 3, (b[1] >> 1) & 3);
    let (bitrate, rate, padding) = (
        (b[2] >> 4) as usize,
        ((b[2] >> 2) & 3) as usize,
        ((b[2] >> 1) & 1) as usize,
    );
    if version != 3 || layer != 1 || bitrate == 0 || bitrate == 15 || rate == 3 {
        return None;
    }
    Some(144 * KBPS[bitrate] * 1000 / RATES[rate] + padding)
}

/// A listener on `mount`: the open connection, the response head and at least `min` body bytes.
pub async fn listen(port: u16, mount: &str, min: usize) -> (TcpStream, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect listener");
    stream
        .write_all(
            format!(
                "GET {mount} HTTP/1.0\r\nHost: radio.test\r\nUser-Agent: test-listener\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + DEADLINE;
    loop {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("listener timed out")
            .expect("listener read");
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n")
            && raw.len() - end - 4 >= min
        {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            return (stream, head, raw[end + 4..].to_vec());
        }
    }
}

/// The message of the next update that puts `id` in `state`.
pub async fn next_event_in(
    events: &mut broadcast::Receiver<ObservedService>,
    id: &str,
    state: ObservedState,
) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let e = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("in time")
            .expect("event");
        let (now, message) = state_of(&e);
        if e.media_service_id == id && now == state {
            return message;
        }
    }
}
