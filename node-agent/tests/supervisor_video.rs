//! The supervisor's video plugin against the real nginx (with the RTMP module) and `ffmpeg` on
//! this machine.
//!
//! Every test gets its own services directory and free ports, so they run in parallel. Waits
//! poll an observable condition up to a deadline; nothing sleeps to synchronise. A guard kills
//! whatever a failed test leaves running, nginx's workers included.

mod common;
use common::*;

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use castplane_agent::plugins::video;
use castplane_agent::supervisor::{Supervisor, SupervisorConfig};
use castplane_proto::agent::v1::ServiceSpec;
use castplane_proto::v1::{ObservedState, PortAssignment, ServiceStats, ServiceType};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Two distinct free ports.
fn free_ports() -> (u16, u16) {
    let a = common::free_port();
    loop {
        let b = common::free_port();
        if b != a {
            return (a, b);
        }
    }
}

/// A password from the control plane's alphabet, with upper case so a lower-cased copy differs.
fn password(id: &str) -> String {
    format!("Src_{}-K3yZ9pQ7wX2m", id.replace('-', "_"))
}

fn spec(id: &str, (rtmp, http): (u16, u16)) -> ServiceSpec {
    ServiceSpec {
        id: id.to_owned(),
        name: id.to_owned(),
        display_name: format!("Test TV {id}"),
        r#type: ServiceType::Video as i32,
        ports: vec![
            PortAssignment {
                purpose: "rtmp".to_owned(),
                port: u32::from(rtmp),
            },
            PortAssignment {
                purpose: "http".to_owned(),
                port: u32::from(http),
            },
        ],
        max_listeners: 10,
        max_bitrate_kbps: 2500,
        source_password: password(id),
        admin_password: format!("adm-{id}-secret"),
        public_host: "tv.test".to_owned(),
        // The test hosts do not resolve; their servers listen on loopback.
        bind_address: "127.0.0.1".to_owned(),
        desired_running: true,
        generation: 1,
        ..Default::default()
    }
}

fn proc_stat(pid: u32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(2)?.parse().ok()?,
    ))
}

fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Live (not zombie) members of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            proc_stat(*pid)
                .is_some_and(|(state, pgrp)| pgrp == pgid as i32 && state != 'Z' && state != 'X')
        })
        .collect()
}

fn workers(master: u32) -> Vec<u32> {
    let mut w: Vec<u32> = group_members(master)
        .into_iter()
        .filter(|pid| cmdline(*pid).starts_with("nginx: worker process"))
        .collect();
    w.sort_unstable();
    w
}

/// Kills (SIGKILL, whole group) every nginx of `services_dir` when a test ends, including by
/// panic: recorded masters, and anything working in a service directory — which also finds
/// workers whose master is gone.
struct KillGuard(PathBuf);

impl Drop for KillGuard {
    fn drop(&mut self) {
        let own_group = nix::unistd::getpgrp().as_raw();
        for pid in recorded_groups(&self.0) {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        for pid in processes_under(&self.0) {
            if let Some((_, pgrp)) = proc_stat(pid)
                && pgrp > 1
                && pgrp != own_group
            {
                let _ = killpg(Pid::from_raw(pgrp), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Live processes whose working directory is in `services_dir`: the supervisor starts every
/// server in its service directory, and nginx's workers inherit it (even once it is deleted).
fn processes_under(services_dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            proc_stat(*pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
                && std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(services_dir))
        })
        .collect()
}

fn recorded_pids(services_dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(services_dir) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let from_record = std::fs::read_to_string(dir.join("process.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("pid").and_then(|p| p.as_u64()))
            .map(|p| p as u32);
        let from_pid_file = std::fs::read_to_string(dir.join("nginx.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        pids.extend([from_record, from_pid_file].into_iter().flatten());
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Recorded masters that still have a live nginx of this directory in their group.
fn recorded_groups(services_dir: &Path) -> Vec<u32> {
    let needle = services_dir.to_string_lossy().into_owned();
    recorded_pids(services_dir)
        .into_iter()
        .filter(|pid| {
            group_members(*pid).iter().any(|member| {
                let cmd = cmdline(*member);
                cmd.contains(&needle) || cmd.starts_with("nginx: ")
            })
        })
        .collect()
}

fn config(services_dir: &Path) -> SupervisorConfig {
    SupervisorConfig {
        services_dir: services_dir.to_owned(),
        stats_interval: Duration::from_millis(500),
        ..Default::default()
    }
}

struct Fixture {
    sup: Supervisor,
    services_dir: PathBuf,
    _guard: KillGuard,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "castplane_agent=info".into()),
            )
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let services_dir = dir.path().join("agent").join("services");
        Fixture {
            sup: Supervisor::new(config(&services_dir)),
            services_dir: services_dir.clone(),
            _guard: KillGuard(services_dir),
            _dir: dir,
        }
    }

    fn config(&self) -> SupervisorConfig {
        config(&self.services_dir)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.services_dir.join(id)
    }

    /// Stops everything and checks nothing of this test is left running.
    async fn finish(self) {
        self.sup.stop_all().await;
        let left = recorded_groups(&self.services_dir);
        assert!(left.is_empty(), "nginx left running: {left:?}");
        let under = processes_under(&self.services_dir);
        assert!(under.is_empty(), "nginx processes left: {under:?}");
    }
}

async fn stats_of(sup: &Supervisor, id: &str) -> Option<ServiceStats> {
    observed(sup, id).await?.status?.stats
}

fn process_exists(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9 the master");
}

fn recorded_generation(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("process.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()?
        .get("generation")?
        .as_u64()
}

/// `GET path` from `ip:port` over HTTP/1.0: the response head (lower-cased) and body.
async fn fetch(ip: IpAddr, port: u16, path: &str) -> Option<(String, Vec<u8>)> {
    request(tokio::net::TcpStream::connect((ip, port)).await.ok()?, path).await
}

async fn request(mut stream: tokio::net::TcpStream, path: &str) -> Option<(String, Vec<u8>)> {
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: tv.test\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase(),
        raw[end + 4..].to_vec(),
    ))
}

async fn get(port: u16, path: &str) -> Option<(String, Vec<u8>)> {
    fetch(IpAddr::V4(Ipv4Addr::LOCALHOST), port, path).await
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The "public" address of the node in these tests. All of 127.0.0.0/8 is this host's on
/// Linux, so a client whose socket is bound to 127.0.0.2 is, for nginx, not the local one
/// (127.0.0.1), and no test traffic leaves loopback.
const REMOTE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// `GET path` from [`REMOTE`] to `REMOTE:port`, as a client on another host would see it.
async fn fetch_from_remote(port: u16, path: &str) -> Option<(String, Vec<u8>)> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind((REMOTE, 0).into()).ok()?;
    let stream = socket.connect((REMOTE, port).into()).await.ok()?;
    request(stream, path).await
}

/// A relay on 127.0.0.1 whose connections reach `REMOTE:port` from [`REMOTE`]: lets a program
/// that cannot choose its source address (ffmpeg) connect as a remote client.
async fn remote_relay(port: u16) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("relay listener");
    let relay_port = listener.local_addr().expect("relay addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                    return;
                };
                if socket.bind((REMOTE, 0).into()).is_err() {
                    return;
                }
                if let Ok(mut upstream) = socket.connect((REMOTE, port).into()).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (relay_port, task)
}

/// An ffmpeg broadcaster: test picture and tone, H.264 + AAC over RTMP to `app`/live.
fn push(host: &str, port: u16, app: &str, log: &Path) -> tokio::process::Child {
    let log = std::fs::File::create(log).expect("ffmpeg log");
    tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", "50", "-c:a", "aac", "-f", "flv"])
        .arg(format!("rtmp://{host}:{port}/{app}/live"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

/// An ffmpeg RTMP player of `app`/live that discards what it receives.
fn play(host: &str, port: u16, app: &str, log: &Path) -> tokio::process::Child {
    let log = std::fs::File::create(log).expect("ffmpeg log");
    tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(format!("rtmp://{host}:{port}/{app}/live"))
        .args(["-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

/// Waits for `child` to exit and returns whether it succeeded.
async fn exits(child: &mut tokio::process::Child, what: &str) -> bool {
    tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} did not exit"))
        .expect("wait for ffmpeg")
        .success()
}

fn uid_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
async fn live_push_is_served_as_hls_and_counted() {
    let fx = Fixture::new();
    let ports @ (rtmp, http_port) = free_ports();
    let s = spec("live", ports);
    fx.sup.start(&s).await.expect("start");
    let pid = fx.sup.pid("live").await.expect("pid");
    assert_eq!(
        wait_state(&fx.sup, "live", ObservedState::Running).await,
        ""
    );
    assert!(!workers(pid).is_empty(), "nginx has no worker");

    // The config holds the source password: root:www-data 0640; the spec: 0600.
    let dir = fx.dir("live");
    let config = std::fs::metadata(dir.join("nginx.conf")).expect("config");
    assert_eq!(config.permissions().mode() & 0o777, 0o640);
    let spec_file = std::fs::metadata(dir.join("spec.pb")).expect("spec");
    assert_eq!(spec_file.permissions().mode() & 0o777, 0o600);
    for sub in ["hls", "videos", "temp"] {
        assert!(dir.join(sub).is_dir(), "{sub}/ was not created");
    }
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("www-data")
            .expect("lookup")
            .expect("user www-data");
        let group = nix::unistd::Group::from_name("www-data")
            .expect("lookup")
            .expect("group www-data");
        assert_eq!((config.uid(), config.gid()), (0, group.gid.as_raw()));
        for member in group_members(pid) {
            assert_eq!(uid_of(member), Some(user.uid.as_raw()), "pid {member}");
        }
        for sub in ["hls", "videos", "temp"] {
            let meta = std::fs::metadata(dir.join(sub)).expect("meta");
            assert_eq!(
                (meta.uid(), meta.gid()),
                (user.uid.as_raw(), group.gid.as_raw())
            );
        }
    }

    let (head, body) = get(http_port, "/healthz").await.expect("healthz");
    assert_eq!((status_of(&head), body.as_slice()), (200, &b"ok\n"[..]));
    for hidden in [
        "/nginx.conf",
        "/spec.pb",
        "/stderr.log",
        "/hls/../nginx.conf",
    ] {
        let (head, _) = get(http_port, hidden).await.expect("answer");
        assert_eq!(status_of(&head), 404, "{hidden}: {head}");
    }
    let (head, _) = get(http_port, "/hls/live.m3u8").await.expect("answer");
    assert_eq!(status_of(&head), 404, "no playlist before a broadcast");

    // Uploaded files are served from /videos/.
    std::fs::write(dir.join("videos/clip.mp4"), b"not really an mp4").expect("upload");
    let (head, body) = get(http_port, "/videos/clip.mp4").await.expect("video");
    assert_eq!(status_of(&head), 200, "{head}");
    assert!(head.contains("content-type: video/mp4"), "{head}");
    assert_eq!(body, b"not really an mp4");

    let mut source = push(
        "127.0.0.1",
        rtmp,
        &s.source_password,
        &dir.join("../push.log"),
    );
    let deadline = Instant::now() + DEADLINE;
    let (head, playlist) = loop {
        if let Some((head, body)) = get(http_port, "/hls/live.m3u8").await
            && status_of(&head) == 200
            && String::from_utf8_lossy(&body).contains(".ts")
        {
            break (head, String::from_utf8_lossy(&body).into_owned());
        }
        assert!(
            source.try_wait().expect("ffmpeg status").is_none(),
            "the broadcaster exited: {}",
            std::fs::read_to_string(dir.join("../push.log")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "no HLS playlist in time");
        tokio::time::sleep(POLL).await;
    };
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    assert!(
        head.contains("content-type: application/vnd.apple.mpegurl"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache"), "{head}");
    let segment = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .expect("a segment in the playlist");
    let (head, ts) = get(http_port, &format!("/hls/{segment}"))
        .await
        .expect("segment");
    assert_eq!(status_of(&head), 200, "{head}");
    assert!(head.contains("content-type: video/mp2t"), "{head}");
    assert!(
        ts.len() >= 188 * 10 && ts.len() % 188 == 0 && ts[0] == 0x47 && ts[188] == 0x47,
        "not an MPEG-TS segment ({} bytes)",
        ts.len()
    );

    // A local RTMP player counts as a listener; the broadcaster as the one source.
    let mut player = play(
        "127.0.0.1",
        rtmp,
        &s.source_password,
        &dir.join("../play.log"),
    );
    wait_until("stats with the source and the player", || async {
        stats_of(&fx.sup, "live").await.is_some_and(|st| {
            st.sources == 1
                && st.listeners == 1
                && st.mounts == vec!["/live".to_owned()]
                && st.bytes_read > 0
                && st.bytes_sent > 0
        })
    })
    .await;
    assert!(player.try_wait().expect("player status").is_none());

    // The source password never reaches the agent's logs through nginx's output.
    let log = std::fs::read_to_string(dir.join("stderr.log")).expect("server log");
    assert!(!log.contains(&s.source_password), "password logged:\n{log}");

    // Stop while someone broadcasts: nginx's graceful stop would wait for the session. A stop
    // that ran into the kill fallback would say so ("stopped: nginx ignored …").
    fx.sup.stop("live").await.expect("stop");
    assert_eq!(
        wait_state(&fx.sup, "live", ObservedState::Stopped).await,
        "stopped"
    );
    assert!(group_members(pid).is_empty(), "nginx processes left");
    assert!(!port_accepts(rtmp).await, "rtmp port still open");
    assert!(!port_accepts(http_port).await, "http port still open");
    assert!(!exits(&mut source, "the broadcaster").await);
    let _ = player.kill().await;
    fx.finish().await;
}

#[tokio::test]
async fn wrong_application_names_are_refused_without_hls() {
    let fx = Fixture::new();
    let ports @ (rtmp, http_port) = free_ports();
    let s = ServiceSpec {
        bind_address: REMOTE.to_string(),
        ..spec("refuse", ports)
    };
    fx.sup.start(&s).await.expect("start");
    let dir = fx.dir("refuse");

    // Application names are compared case-sensitively; the usual nginx-rtmp layout
    // (`/live/KEY`) is no way in either.
    let lower = s.source_password.to_lowercase();
    assert_ne!(lower, s.source_password);
    for (n, app) in [lower.as_str(), "live", "wrong"].into_iter().enumerate() {
        let mut source = push(
            "127.0.0.1",
            rtmp,
            app,
            &dir.join(format!("../push-{n}.log")),
        );
        assert!(
            !exits(&mut source, "the refused broadcaster").await,
            "a push to {app:?} succeeded"
        );
    }
    let hls: Vec<_> = std::fs::read_dir(dir.join("hls"))
        .expect("hls dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(hls.is_empty(), "HLS output from refused pushes: {hls:?}");
    let (head, _) = get(http_port, "/hls/live.m3u8").await.expect("answer");
    assert_eq!(status_of(&head), 404);
    wait_until("stats of the idle service", || async {
        stats_of(&fx.sup, "refuse").await.is_some()
    })
    .await;
    assert_eq!(
        stats_of(&fx.sup, "refuse").await.map(|st| st.sources),
        Some(0)
    );

    // From anywhere but the host itself, RTMP playback and /stat are refused (the node's bind
    // address is REMOTE); the other locations are for everyone.
    let (relay, relay_task) = remote_relay(rtmp).await;
    let mut player = play(
        "127.0.0.1",
        relay,
        &s.source_password,
        &dir.join("../play.log"),
    );
    assert!(!exits(&mut player, "the remote player").await);
    relay_task.abort();
    let (head, _) = fetch_from_remote(http_port, "/stat").await.expect("answer");
    assert_eq!(status_of(&head), 403, "{head}");
    let log = std::fs::read_to_string(dir.join("stderr.log")).expect("log");
    assert!(log.contains("access forbidden by rule"), "{log}");
    let (head, _) = fetch_from_remote(http_port, "/healthz")
        .await
        .expect("answer");
    assert_eq!(status_of(&head), 200, "{head}");
    fx.finish().await;
}

#[tokio::test]
async fn stop_restart_and_a_killed_master_leave_no_workers() {
    let fx = Fixture::new();
    let ports @ (rtmp, http_port) = free_ports();
    let mut s = spec("phoenix", ports);
    s.display_name =
        "Evil\"; } } http { server { listen 1; location / { alias /etc/; } } } # $x \\ \r\n 🎵"
            .to_owned();
    fx.sup
        .start(&s)
        .await
        .expect("nginx starts with a hostile display name");
    let config = std::fs::read_to_string(fx.dir("phoenix/nginx.conf")).expect("config");
    assert!(
        !config.contains("Evil") && !config.contains("/etc/"),
        "{config}"
    );

    let first = fx.sup.pid("phoenix").await.expect("pid");
    let first_workers = workers(first);
    assert!(!first_workers.is_empty());
    fx.sup.start(&s).await.expect("second start");
    assert_eq!(
        fx.sup.pid("phoenix").await,
        Some(first),
        "start of a running service must not restart it"
    );

    fx.sup.restart(&s).await.expect("restart");
    let second = fx.sup.pid("phoenix").await.expect("pid after restart");
    assert_ne!(first, second);
    assert!(group_members(first).is_empty(), "old nginx processes left");
    assert!(first_workers.iter().all(|w| !process_exists(*w)));
    wait_state(&fx.sup, "phoenix", ObservedState::Running).await;

    // kill -9 of the master alone: its workers would keep both ports, so the restart only
    // succeeds because the supervisor kills the rest of the group.
    let second_workers = workers(second);
    assert!(!second_workers.is_empty());
    let mut events = fx.sup.subscribe();
    sigkill(second);
    let backoff_message = next_event_in(&mut events, "phoenix", ObservedState::BackingOff).await;
    assert!(
        backoff_message.contains("nginx exited unexpectedly with signal 9 (SIGKILL)"),
        "{backoff_message}"
    );
    wait_until("a new master", || async {
        fx.sup.pid("phoenix").await.is_some_and(|p| p != second)
    })
    .await;
    wait_state(&fx.sup, "phoenix", ObservedState::Running).await;
    assert!(second_workers.iter().all(|w| !process_exists(*w)));
    assert!(group_members(second).is_empty());
    let third = fx.sup.pid("phoenix").await.expect("pid");
    let (head, _) = get(http_port, "/healthz")
        .await
        .expect("restarted nginx answers");
    assert_eq!(status_of(&head), 200);

    fx.sup.stop("phoenix").await.expect("stop");
    assert!(group_members(third).is_empty(), "nginx processes left");
    assert!(!port_accepts(rtmp).await && !port_accepts(http_port).await);
    assert_eq!(fx.sup.pid("phoenix").await, None);
    fx.finish().await;
}

#[tokio::test]
async fn delete_destroys_hls_output_and_uploaded_videos() {
    let fx = Fixture::new();
    let ports @ (rtmp, http_port) = free_ports();
    fx.sup.start(&spec("gone", ports)).await.expect("start");
    let pid = fx.sup.pid("gone").await.expect("pid");
    let dir = fx.dir("gone");
    // What a broadcast and an upload leave behind (a real broadcast is in the first test).
    std::fs::write(dir.join("hls/live.m3u8"), "#EXTM3U\nlive-0.ts\n").expect("playlist");
    std::fs::write(dir.join("hls/live-0.ts"), [0x47u8; 188]).expect("segment");
    std::fs::write(dir.join("videos/upload.mp4"), b"video").expect("upload");
    let (head, _) = get(http_port, "/hls/live.m3u8").await.expect("answer");
    assert_eq!(status_of(&head), 200);

    fx.sup.delete("gone").await.expect("delete");
    assert!(!dir.exists(), "service directory still exists");
    assert!(group_members(pid).is_empty(), "nginx processes left");
    assert!(!port_accepts(rtmp).await && !port_accepts(http_port).await);
    assert!(observed(&fx.sup, "gone").await.is_none());
    fx.sup.delete("gone").await.expect("delete again");
    fx.finish().await;
}

#[tokio::test]
async fn a_second_supervisor_adopts_the_running_master() {
    let fx = Fixture::new();
    let ports @ (rtmp, http_port) = free_ports();
    fx.sup.start(&spec("adopt", ports)).await.expect("start");
    let pid = fx.sup.pid("adopt").await.expect("pid");
    let before = workers(pid);
    fx.sup.detach().await;
    assert!(process_exists(pid), "detach must leave nginx running");

    let second = Supervisor::new(fx.config());
    second.adopt_existing().await.expect("adopt");
    assert_eq!(second.pid("adopt").await, Some(pid));
    assert_eq!(workers(pid), before, "adoption must not reload or restart");
    let message = wait_state(&second, "adopt", ObservedState::Running).await;
    assert!(message.contains("adopted"), "{message}");
    wait_until("stats of the adopted server", || async {
        stats_of(&second, "adopt").await.is_some()
    })
    .await;

    second.stop("adopt").await.expect("stop adopted");
    wait_until("the adopted group to exit", || async {
        group_members(pid).is_empty()
    })
    .await;
    assert!(!port_accepts(rtmp).await && !port_accepts(http_port).await);
    fx.finish().await;
}

#[tokio::test]
async fn new_specs_are_rewritten_reloaded_or_restarted_as_needed() {
    let fx = Fixture::new();
    let ports = free_ports();
    let dir = fx.dir("upd");
    let mut s = spec("upd", ports);
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_state(&fx.sup, "upd", ObservedState::Running).await;
    let master = fx.sup.pid("upd").await.expect("pid");
    let first_workers = workers(master);

    // Nothing nginx reads changed: no signal, the same worker keeps serving.
    s.generation = 2;
    s.display_name = "Renamed TV".to_owned();
    s.max_bitrate_kbps = 800;
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_until("generation 2 applied", || async {
        recorded_generation(&dir) == Some(2)
    })
    .await;
    assert_eq!(fx.sup.pid("upd").await, Some(master));
    assert_eq!(workers(master), first_workers);

    // A new listener limit: reloaded (SIGHUP): same master, a new worker.
    s.generation = 3;
    s.max_listeners = 40;
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_until("a reloaded worker", || async {
        let now = workers(master);
        !now.is_empty() && now.iter().all(|w| !first_workers.contains(w))
    })
    .await;
    assert_eq!(fx.sup.pid("upd").await, Some(master));
    assert_eq!(recorded_generation(&dir), Some(3));
    let config = std::fs::read_to_string(dir.join("nginx.conf")).expect("config");
    assert!(config.contains("max_connections 48;"), "{config}");

    // A new password: restarted, and /stat names only the new application.
    let old_password = s.source_password.clone();
    s.generation = 4;
    s.source_password = "NewPassw0rd_-0123456789".to_owned();
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_until("a restart for the new password", || async {
        fx.sup.pid("upd").await.is_some_and(|p| p != master)
            && get(ports.1, "/stat").await.is_some_and(|(_, body)| {
                String::from_utf8_lossy(&body)
                    .contains(&format!("<name>{}</name>", s.source_password))
            })
    })
    .await;
    let (_, body) = get(ports.1, "/stat").await.expect("stat");
    assert!(!String::from_utf8_lossy(&body).contains(&old_password));
    assert!(group_members(master).is_empty());
    let restarted = fx.sup.pid("upd").await.expect("pid");

    // New ports: restarted on them, the old ones closed.
    let new_ports = free_ports();
    s.generation = 5;
    s.ports[0].port = u32::from(new_ports.0);
    s.ports[1].port = u32::from(new_ports.1);
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_until("a restart on the new ports", || async {
        fx.sup.pid("upd").await.is_some_and(|p| p != restarted)
            && get(new_ports.1, "/healthz")
                .await
                .is_some_and(|(head, _)| status_of(&head) == 200)
            && port_accepts(new_ports.0).await
    })
    .await;
    assert!(!port_accepts(ports.0).await && !port_accepts(ports.1).await);

    fx.sup.reconcile(Vec::new()).await;
    wait_until("removal of the unassigned service", || async {
        !dir.exists()
    })
    .await;
    fx.finish().await;
}

#[tokio::test]
async fn invalid_specs_start_nothing() {
    let fx = Fixture::new();
    let mut s = spec("bad", free_ports());
    s.source_password = "pass; } } events { } rtmp { #".to_owned();
    let err = fx
        .sup
        .start(&s)
        .await
        .expect_err("hostile password")
        .to_string();
    assert!(err.contains("source password"), "{err}");
    assert!(
        !err.contains(&s.source_password),
        "the error quotes the password"
    );
    assert_eq!(wait_state(&fx.sup, "bad", ObservedState::Failed).await, err);
    assert!(!fx.dir("bad").join("nginx.conf").exists());
    assert_eq!(fx.sup.pid("bad").await, None);

    let mut s = spec("noport", free_ports());
    s.ports.retain(|p| p.purpose == "http");
    assert_eq!(
        fx.sup.start(&s).await.map_err(|e| e.to_string()),
        Err("the service has no \"rtmp\" port assigned".to_owned())
    );
    assert!(!fx.dir("noport").join("nginx.conf").exists());
    fx.finish().await;
}

#[tokio::test]
async fn capabilities_report_video_available() {
    let fx = Fixture::new();
    let caps = fx.sup.capabilities().await;
    let video = caps
        .iter()
        .find(|c| c.r#type == ServiceType::Video as i32)
        .cloned()
        .expect("a video entry");
    assert!(video.available, "{video:?}");
    assert!(
        video.version.starts_with("nginx 1.") && video.version.ends_with(" (rtmp)"),
        "{video:?}"
    );
    let module = video::find_rtmp_module().expect("the RTMP module is installed");
    assert!(
        video.detail.contains(&module.display().to_string()),
        "{video:?}"
    );
    assert!(!video.autodj_available);
}
