//! `castplane-control --log-format json`: every line a JSON object with the level, the
//! message and the structured fields, from start to a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn json_logs_are_one_object_per_line_through_a_graceful_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_castplane-control"))
        .args(["--log-format", "json", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--agent-listen", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start castplane-control");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let wait_for = |message: &str, seen: &mut Vec<serde_json::Value>| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line {message:?}; saw {seen:#?}"));
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(event["timestamp"].is_string(), "{event}");
        assert!(event["level"].is_string(), "{event}");
        assert!(event["target"].is_string(), "{event}");
        let done = event["fields"]["message"] == message;
        seen.push(event);
        if done {
            return seen.last().cloned().expect("just pushed");
        }
    };
    let serving = wait_for("castplane control plane serving", &mut seen);
    assert_eq!(serving["level"], "INFO");
    // Structured values stay fields, not text.
    assert!(serving["fields"]["public_addr"].is_string(), "{serving}");
    // The generated admin token is announced by its path, never its value.
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).expect("token");
    assert!(
        seen.iter()
            .all(|event| !event.to_string().contains(token.trim())),
        "a token was logged"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    wait_for("health is NOT_SERVING; draining after the delay", &mut seen);
    wait_for("castplane control plane stopped", &mut seen);
    assert!(child.wait().expect("exit").success());
}
