//! AutoDJ (liquidsoap beside icecast2) against the real `icecast2`, `liquidsoap` and `ffmpeg` on
//! this machine.
//!
//! Every test gets its own services and media directories and free ports, so they run in
//! parallel. Media libraries are short sine tracks made by ffmpeg. Waits poll an observable
//! condition up to a deadline; nothing sleeps to synchronise. A guard kills whatever a failed
//! test leaves running: every process whose command line names the test's services directory
//! (icecast2's config, liquidsoap's script).

mod common;
use common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use castplane_agent::plugins::{autodj, http, icecast};
use castplane_agent::supervisor::{Supervisor, SupervisorConfig};
use castplane_proto::agent::v1::ServiceSpec;
use castplane_proto::v1::{ObservedState, PortAssignment, ServiceType};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIN_AUDIO: usize = 16 * 1024;

fn spec(id: &str, port: u16, owner: &str) -> ServiceSpec {
    ServiceSpec {
        id: id.to_owned(),
        name: id.to_owned(),
        display_name: format!("AutoDJ radio {id}"),
        r#type: ServiceType::Icecast as i32,
        ports: vec![PortAssignment {
            purpose: "http".to_owned(),
            port: u32::from(port),
        }],
        max_listeners: 10,
        max_bitrate_kbps: 128,
        autodj: true,
        owner_customer_id: owner.to_owned(),
        source_password: format!("src-{id}-secret"),
        admin_password: format!("adm-{id}-secret"),
        relay_password: format!("rel-{id}-secret"),
        public_host: "radio.test".to_owned(),
        // The test hosts do not resolve; their servers listen on loopback.
        bind_address: "127.0.0.1".to_owned(),
        desired_running: true,
        generation: 1,
        media_tracks: Vec::new(),
        video_files: Vec::new(),
    }
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// `(state, process group)` from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(2)?.parse().ok()?,
    ))
}

/// Alive and not a zombie awaiting its reaper.
fn process_exists(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Live processes whose command line names `services_dir`: this test's servers and AutoDJs.
fn processes_of(services_dir: &Path) -> Vec<u32> {
    let needle = services_dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_exists(*pid) && cmdline(*pid).iter().any(|a| a.contains(&needle)))
        .collect()
}

/// Kills (SIGKILL, whole group) every process of `services_dir` when a test ends, including by
/// panic.
struct KillGuard(PathBuf);

impl Drop for KillGuard {
    fn drop(&mut self) {
        for pid in processes_of(&self.0) {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

struct Fixture {
    sup: Supervisor,
    services_dir: PathBuf,
    media_dir: PathBuf,
    _guard: KillGuard,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut SupervisorConfig)) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "castplane_agent=info".into()),
            )
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let services_dir = dir.path().join("agent").join("services");
        let media_dir = dir.path().join("agent").join("media");
        let mut config = config(&services_dir, &media_dir);
        tweak(&mut config);
        Fixture {
            sup: Supervisor::new(config),
            services_dir: services_dir.clone(),
            media_dir,
            _guard: KillGuard(services_dir),
            _dir: dir,
        }
    }

    fn config(&self) -> SupervisorConfig {
        config(&self.services_dir, &self.media_dir)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.services_dir.join(id)
    }

    fn library(&self, owner: &str) -> PathBuf {
        self.media_dir.join(owner)
    }

    /// A media library for `owner`: one 5 s MP3 per frequency.
    async fn make_library(&self, owner: &str, frequencies: &[u32]) -> Vec<PathBuf> {
        let library = self.library(owner);
        std::fs::create_dir_all(&library).expect("library dir");
        let mut tracks = Vec::new();
        for hz in frequencies {
            let track = library.join(format!("sine-{hz}.mp3"));
            let status = tokio::process::Command::new("ffmpeg")
                .args(["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
                .arg(format!("sine=frequency={hz}:duration=5"))
                .args(["-c:a", "libmp3lame", "-b:a", "128k"])
                .arg(&track)
                .stdin(Stdio::null())
                .status()
                .await
                .expect("run ffmpeg");
            assert!(
                status.success(),
                "ffmpeg could not make {}",
                track.display()
            );
            tracks.push(track);
        }
        tracks
    }

    /// Stops everything and checks nothing of this test is left running.
    async fn finish(self) {
        self.sup.stop_all().await;
        let left = processes_of(&self.services_dir);
        assert!(left.is_empty(), "processes left running: {left:?}");
    }
}

fn config(services_dir: &Path, media_dir: &Path) -> SupervisorConfig {
    SupervisorConfig {
        services_dir: services_dir.to_owned(),
        media_dir: media_dir.to_owned(),
        stats_interval: Duration::from_millis(500),
        ..Default::default()
    }
}

async fn status(sup: &Supervisor, id: &str) -> Option<(ObservedState, String)> {
    observed(sup, id).await.map(|o| state_of(&o))
}

/// Waits until `check` accepts the service's state and message; returns the message.
async fn wait_status(
    sup: &Supervisor,
    id: &str,
    what: &str,
    check: impl Fn(ObservedState, &str) -> bool,
) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = status(sup, id).await;
        if let Some((state, message)) = &now
            && check(*state, message)
        {
            return message.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {id} to be {what}; it is {now:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// RUNNING with nothing to report: server and AutoDJ both up.
async fn wait_all_running(sup: &Supervisor, id: &str) {
    wait_status(sup, id, "RUNNING with AutoDJ up", |s, m| {
        s == ObservedState::Running && m.is_empty()
    })
    .await;
}

async fn admin_stats(spec: &ServiceSpec) -> Option<String> {
    let port = icecast::http_port(spec).ok()?;
    let r = http::get(
        port,
        "/admin/stats",
        Some((icecast::ADMIN_USER, spec.admin_password.as_str())),
        Duration::from_secs(2),
    )
    .await
    .ok()?;
    (r.status == 200).then(|| String::from_utf8_lossy(&r.body).into_owned())
}

/// The `<source mount="…">` element of `mount` in admin stats.
fn source_element<'a>(xml: &'a str, mount: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<source mount=\"{mount}\">"))?;
    let rest = &xml[start..];
    Some(&rest[..rest.find("</source>")?])
}

fn element_text<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + len])
}

async fn mounts(spec: &ServiceSpec) -> Vec<String> {
    admin_stats(spec)
        .await
        .and_then(|xml| icecast::parse_admin_stats(&xml).ok())
        .map(|s| s.mounts)
        .unwrap_or_default()
}

async fn has_mount(spec: &ServiceSpec, mount: &str) -> bool {
    mounts(spec).await.iter().any(|m| m == mount)
}

async fn mount_listeners(spec: &ServiceSpec, mount: &str) -> u64 {
    admin_stats(spec)
        .await
        .and_then(|xml| {
            element_text(source_element(&xml, mount)?, "listeners")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// `min` more bytes from a listener that is already connected.
async fn keep_listening(stream: &mut TcpStream, min: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + DEADLINE;
    while got.len() < min {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("listener timed out")
            .expect("listener read");
        assert!(n > 0, "the listener was disconnected");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// An ffmpeg broadcaster feeding a 1 kHz sine as 128 kbps MP3 to `mount`.
fn start_source(port: u16, password: &str, mount: &str, log: &Path) -> tokio::process::Child {
    let log = std::fs::File::create(log).expect("ffmpeg log");
    tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi"])
        .args(["-i", "sine=frequency=1000"])
        .args(["-c:a", "libmp3lame", "-b:a", "128k"])
        .args(["-content_type", "audio/mpeg", "-f", "mp3"])
        .arg(format!(
            "icecast://source:{password}@127.0.0.1:{port}{mount}"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

/// The HTTP status icecast2 answers a source login (`PUT mount`) with.
async fn source_login_status(port: u16, mount: &str, password: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect source");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("source:{password}"));
    stream
        .write_all(
            format!(
                "PUT {mount} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {token}\r\nContent-Type: audio/mpeg\r\nIce-Public: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("source request");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + DEADLINE;
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("source login timed out")
            .expect("read answer");
        assert!(n > 0, "no answer to the source login");
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
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

fn script_of(fx: &Fixture, id: &str) -> String {
    std::fs::read_to_string(fx.dir(id).join(autodj::SCRIPT_FILE)).expect("autodj.liq")
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9");
}

#[tokio::test]
async fn autodj_plays_to_live_listeners_until_a_live_source_takes_over() {
    let fx = Fixture::new();
    let port = free_port();
    let s = spec("dj", port, "cus_alice");
    fx.make_library("cus_alice", &[330, 440, 550]).await;
    fx.sup.start(&s).await.expect("start");
    wait_all_running(&fx.sup, "dj").await;
    let ice = fx.sup.pid("dj").await.expect("icecast2 pid");
    let liq = fx.sup.sibling_pid("dj").await.expect("liquidsoap pid");
    assert_ne!(ice, liq);

    // liquidsoap: its own process group, the service's script, its own log.
    assert_eq!(proc_stat(liq).map(|(_, pgrp)| pgrp), Some(liq as i32));
    let dir = fx.dir("dj");
    let script_path = dir.join(autodj::SCRIPT_FILE);
    let cmd = cmdline(liq);
    assert_eq!(cmd.len(), 2, "{cmd:?}");
    assert!(cmd[0].ends_with("liquidsoap"), "{cmd:?}");
    assert_eq!(Path::new(&cmd[1]), script_path);
    assert!(dir.join(autodj::LOG_FILE).exists());
    assert!(dir.join(autodj::RECORD_FILE).exists());
    let script = std::fs::metadata(&script_path).expect("script");
    assert_eq!(script.permissions().mode() & 0o777, 0o640);
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("liquidsoap")
            .expect("lookup")
            .expect("user liquidsoap");
        assert_eq!(uid_of(liq), Some(user.uid.as_raw()));
        let group = nix::unistd::Group::from_name("liquidsoap")
            .expect("lookup")
            .expect("group liquidsoap");
        assert_eq!((script.uid(), script.gid()), (0, group.gid.as_raw()));
    }
    let text = script_of(&fx, "dj");
    assert!(
        text.contains(&format!("\"{}\"", fx.library("cus_alice").display())),
        "{text}"
    );
    assert!(!text.contains(&s.source_password), "{text}");

    // No live source: listeners of /live hear AutoDJ.
    assert!(has_mount(&s, "/autodj").await);
    assert!(!has_mount(&s, "/live").await);
    let (mut listener, head, body) = listen(port, "/live", MIN_AUDIO).await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: audio/mpeg"),
        "{head}"
    );
    assert!(
        mp3_frame_run(&body) >= 10,
        "fewer than 10 consecutive MP3 frames in {} bytes",
        body.len()
    );
    wait_until("the listener counted on /autodj", || async {
        mount_listeners(&s, "/autodj").await >= 1
    })
    .await;
    wait_until("/autodj in the reported stats", || async {
        observed(&fx.sup, "dj")
            .await
            .and_then(|o| o.status?.stats)
            .is_some_and(|st| st.mounts.iter().any(|m| m == "/autodj") && st.listeners >= 1)
    })
    .await;

    // Each password opens its own mount only.
    assert_eq!(
        source_login_status(port, "/autodj", &s.source_password).await,
        401
    );
    assert_eq!(
        source_login_status(port, "/live", &s.relay_password).await,
        401
    );

    // A broadcaster with the customer's password takes the listener back to /live…
    let mut source = start_source(
        port,
        &s.source_password,
        "/live",
        &fx.services_dir.join("../ffmpeg.log"),
    );
    wait_until("the listener moved to /live", || async {
        mount_listeners(&s, "/live").await >= 1
    })
    .await;
    assert_eq!(mount_listeners(&s, "/autodj").await, 0);
    assert!(mp3_frame_run(&keep_listening(&mut listener, MIN_AUDIO).await) >= 10);
    assert_eq!(fx.sup.sibling_pid("dj").await, Some(liq));

    // …and when the broadcaster leaves, AutoDJ has it again.
    source.kill().await.expect("stop the broadcaster");
    wait_until("the listener back on /autodj", || async {
        mount_listeners(&s, "/autodj").await >= 1
    })
    .await;
    assert!(mp3_frame_run(&keep_listening(&mut listener, MIN_AUDIO).await) >= 10);
    drop(listener);

    // liquidsoap's status 1 on SIGTERM is a clean stop, not a failure.
    fx.sup.stop("dj").await.expect("stop");
    assert_eq!(
        wait_status(&fx.sup, "dj", "STOPPED", |s, _| s == ObservedState::Stopped).await,
        "stopped"
    );
    assert!(!process_exists(liq) && !process_exists(ice));
    assert_eq!(fx.sup.sibling_pid("dj").await, None);
    assert!(!dir.join(autodj::RECORD_FILE).exists());
    fx.finish().await;
}

#[tokio::test]
async fn a_new_owner_restarts_only_autodj_on_their_library() {
    let fx = Fixture::new();
    let port = free_port();
    let mut s = spec("moved", port, "cus_alice");
    let alice_tracks = fx.make_library("cus_alice", &[330, 440]).await;
    let bob_tracks = fx.make_library("cus_bob", &[660, 770, 880]).await;
    fx.sup.start(&s).await.expect("start");
    wait_all_running(&fx.sup, "moved").await;
    let ice = fx.sup.pid("moved").await.expect("icecast2 pid");
    let liq = fx.sup.sibling_pid("moved").await.expect("liquidsoap pid");
    let alice = format!("\"{}\"", fx.library("cus_alice").display());
    let bob = format!("\"{}\"", fx.library("cus_bob").display());
    assert!(script_of(&fx, "moved").contains(&alice));

    s.generation = 2;
    s.owner_customer_id = "cus_bob".to_owned();
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_until("a new liquidsoap", || async {
        fx.sup.sibling_pid("moved").await.is_some_and(|p| p != liq)
    })
    .await;
    wait_all_running(&fx.sup, "moved").await;
    wait_until("/autodj back", || async { has_mount(&s, "/autodj").await }).await;

    assert_eq!(
        fx.sup.pid("moved").await,
        Some(ice),
        "icecast2 was restarted"
    );
    assert!(!process_exists(liq), "the old liquidsoap still runs");
    let new_liq = fx.sup.sibling_pid("moved").await.expect("liquidsoap pid");
    let cmd = cmdline(new_liq);
    assert_eq!(
        cmd.get(1).map(PathBuf::from),
        Some(fx.dir("moved").join(autodj::SCRIPT_FILE))
    );
    let script = script_of(&fx, "moved");
    assert!(script.contains(&bob), "{script}");
    assert!(!script.contains(&alice), "{script}");
    // The tracks are the customers', not the service's: both libraries are intact.
    for track in alice_tracks.iter().chain(&bob_tracks) {
        assert!(track.is_file(), "{} is gone", track.display());
    }
    let (_listener, _, body) = listen(port, "/live", MIN_AUDIO).await;
    assert!(mp3_frame_run(&body) >= 10);
    fx.finish().await;
}

#[tokio::test]
async fn killed_autodj_is_restarted_while_icecast_keeps_running() {
    let fx = Fixture::new();
    let port = free_port();
    let s = spec("phoenix", port, "cus_carol");
    fx.make_library("cus_carol", &[440]).await;
    fx.sup.start(&s).await.expect("start");
    wait_all_running(&fx.sup, "phoenix").await;
    let ice = fx.sup.pid("phoenix").await.expect("icecast2 pid");
    let liq = fx.sup.sibling_pid("phoenix").await.expect("liquidsoap pid");

    let mut events = fx.sup.subscribe();
    sigkill(liq);
    // The service stays RUNNING; the message says AutoDJ is down and why.
    let deadline = Instant::now() + DEADLINE;
    let message = loop {
        let e = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("in time")
            .expect("event");
        let (state, message) = state_of(&e);
        if e.media_service_id == "phoenix" && message.starts_with("AutoDJ is down") {
            assert_eq!(state, ObservedState::Running);
            break message;
        }
    };
    assert!(
        message.contains("liquidsoap exited unexpectedly with signal 9 (SIGKILL)"),
        "{message}"
    );
    assert!(message.contains("restarting in 1 s"), "{message}");

    wait_until("a new liquidsoap", || async {
        fx.sup
            .sibling_pid("phoenix")
            .await
            .is_some_and(|p| p != liq)
    })
    .await;
    wait_all_running(&fx.sup, "phoenix").await;
    wait_until("/autodj back", || async { has_mount(&s, "/autodj").await }).await;
    assert_eq!(fx.sup.pid("phoenix").await, Some(ice));
    fx.finish().await;
}

#[tokio::test]
async fn a_crash_looping_autodj_gives_up_while_icecast_stays_up() {
    let fx = Fixture::with(|c| {
        c.crash_loop_exits = 2;
        c.crash_loop_window = Duration::from_secs(300);
    });
    let port = free_port();
    let s = spec("loop", port, "cus_ivan");
    fx.make_library("cus_ivan", &[440]).await;
    fx.sup.start(&s).await.expect("start");
    wait_all_running(&fx.sup, "loop").await;
    let ice = fx.sup.pid("loop").await.expect("icecast2 pid");
    let first = fx.sup.sibling_pid("loop").await.expect("liquidsoap pid");
    sigkill(first);
    wait_until("a restarted liquidsoap", || async {
        fx.sup.sibling_pid("loop").await.is_some_and(|p| p != first)
    })
    .await;
    wait_all_running(&fx.sup, "loop").await;
    let second = fx.sup.sibling_pid("loop").await.expect("liquidsoap pid");
    sigkill(second);

    let message = wait_status(&fx.sup, "loop", "RUNNING without AutoDJ", |s, m| {
        s == ObservedState::Running && m.starts_with("AutoDJ failed: crash loop")
    })
    .await;
    assert!(message.contains("failed 2 times within 300 s"), "{message}");
    assert!(
        message.contains("liquidsoap exited unexpectedly with signal 9 (SIGKILL)"),
        "{message}"
    );
    assert_eq!(fx.sup.sibling_pid("loop").await, None);
    assert_eq!(fx.sup.pid("loop").await, Some(ice));
    wait_until("/autodj gone", || async {
        admin_stats(&s).await.is_some() && !has_mount(&s, "/autodj").await
    })
    .await;

    // An explicit start clears the crash loop; icecast2 is left alone.
    fx.sup.start(&s).await.expect("start after the crash loop");
    wait_all_running(&fx.sup, "loop").await;
    assert!(fx.sup.sibling_pid("loop").await.is_some());
    assert_eq!(fx.sup.pid("loop").await, Some(ice));
    fx.finish().await;
}

#[tokio::test]
async fn autodj_is_turned_off_and_on_without_restarting_icecast() {
    let fx = Fixture::new();
    let port = free_port();
    let mut s = spec("toggle", port, "cus_dave");
    fx.make_library("cus_dave", &[440, 880]).await;
    fx.sup.start(&s).await.expect("start");
    wait_all_running(&fx.sup, "toggle").await;
    let ice = fx.sup.pid("toggle").await.expect("icecast2 pid");
    let liq = fx.sup.sibling_pid("toggle").await.expect("liquidsoap pid");

    s.generation = 2;
    s.autodj = false;
    fx.sup.start(&s).await.expect("apply autodj off");
    assert_eq!(fx.sup.sibling_pid("toggle").await, None);
    assert!(!process_exists(liq), "liquidsoap still runs");
    assert_eq!(fx.sup.pid("toggle").await, Some(ice));
    let config =
        std::fs::read_to_string(fx.dir("toggle").join("icecast.xml")).expect("icecast.xml");
    assert!(!config.contains("autodj"), "{config}");
    wait_until("/autodj gone", || async {
        admin_stats(&s).await.is_some() && !has_mount(&s, "/autodj").await
    })
    .await;
    assert_eq!(
        status(&fx.sup, "toggle").await.map(|(st, _)| st),
        Some(ObservedState::Running)
    );

    s.generation = 3;
    s.autodj = true;
    fx.sup.start(&s).await.expect("apply autodj on");
    wait_all_running(&fx.sup, "toggle").await;
    let again = fx.sup.sibling_pid("toggle").await.expect("liquidsoap pid");
    assert_ne!(again, liq);
    assert_eq!(fx.sup.pid("toggle").await, Some(ice));
    assert!(has_mount(&s, "/autodj").await);
    let (_listener, _, body) = listen(port, "/live", MIN_AUDIO).await;
    assert!(mp3_frame_run(&body) >= 10);
    fx.finish().await;
}

#[tokio::test]
async fn restarted_agent_adopts_icecast_and_autodj() {
    let fx = Fixture::new();
    let port = free_port();
    let s = spec("adopt", port, "cus_erin");
    fx.make_library("cus_erin", &[440]).await;
    fx.sup.start(&s).await.expect("start");
    wait_all_running(&fx.sup, "adopt").await;
    let ice = fx.sup.pid("adopt").await.expect("icecast2 pid");
    let liq = fx.sup.sibling_pid("adopt").await.expect("liquidsoap pid");
    fx.sup.detach().await;
    assert!(process_exists(ice) && process_exists(liq));

    let second = Supervisor::new(fx.config());
    second.adopt_existing().await.expect("adopt");
    assert_eq!(second.pid("adopt").await, Some(ice));
    assert_eq!(second.sibling_pid("adopt").await, Some(liq));
    let message = wait_status(&second, "adopt", "RUNNING", |s, _| {
        s == ObservedState::Running
    })
    .await;
    assert!(message.contains("adopted"), "{message}");

    // The adopted liquidsoap is supervised too: killed → restarted.
    sigkill(liq);
    wait_until("a restart of the adopted liquidsoap", || async {
        second.sibling_pid("adopt").await.is_some_and(|p| p != liq)
    })
    .await;
    wait_all_running(&second, "adopt").await;
    assert_eq!(second.pid("adopt").await, Some(ice));
    second.stop("adopt").await.expect("stop");
    wait_until("both processes to exit", || async {
        !process_exists(ice) && processes_of(&fx.services_dir).is_empty()
    })
    .await;
    fx.finish().await;
}

#[tokio::test]
async fn delete_keeps_the_customers_media_library() {
    let fx = Fixture::new();
    let port = free_port();
    let s = spec("gone", port, "cus_frank");
    let tracks = fx.make_library("cus_frank", &[440, 550]).await;
    fx.sup.start(&s).await.expect("start");
    wait_all_running(&fx.sup, "gone").await;
    let ice = fx.sup.pid("gone").await.expect("icecast2 pid");
    let liq = fx.sup.sibling_pid("gone").await.expect("liquidsoap pid");

    fx.sup.delete("gone").await.expect("delete");
    assert!(!fx.dir("gone").exists(), "service directory still exists");
    assert!(!process_exists(ice) && !process_exists(liq));
    assert!(observed(&fx.sup, "gone").await.is_none());
    assert!(fx.library("cus_frank").is_dir());
    for track in &tracks {
        assert!(track.is_file(), "{} was deleted", track.display());
    }
    fx.finish().await;
}

#[tokio::test]
async fn an_empty_library_plays_silence_without_crashing() {
    let fx = Fixture::new();
    let port = free_port();
    // No library at all yet: the agent creates it.
    let s = spec("quiet", port, "cus_grace");
    fx.sup.start(&s).await.expect("start");
    wait_all_running(&fx.sup, "quiet").await;
    let liq = fx.sup.sibling_pid("quiet").await.expect("liquidsoap pid");
    let library = std::fs::metadata(fx.library("cus_grace")).expect("library created");
    assert!(library.is_dir());
    assert_eq!(library.permissions().mode() & 0o777, 0o750);
    if nix::unistd::geteuid().is_root() {
        let group = nix::unistd::Group::from_name("liquidsoap")
            .expect("lookup")
            .expect("group liquidsoap");
        assert_eq!(library.gid(), group.gid.as_raw());
    }

    let (_listener, head, body) = listen(port, "/live", MIN_AUDIO).await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(mp3_frame_run(&body) >= 10, "no MP3 frames of silence");
    assert_eq!(fx.sup.sibling_pid("quiet").await, Some(liq));
    assert_eq!(
        status(&fx.sup, "quiet").await,
        Some((ObservedState::Running, String::new()))
    );
    fx.finish().await;
}

#[tokio::test]
async fn hostile_display_name_cannot_inject_liquidsoap_code() {
    let fx = Fixture::new();
    let port = free_port();
    // Somewhere the liquidsoap account could write, were the name ever run as code.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let marker = std::env::temp_dir().join(format!(
        "castplane-autodj-pwned-{}-{nanos}",
        std::process::id()
    ));
    let mut s = spec("hostile", port, "cus_heidi");
    s.display_name = format!(
        "Evil \"DJ\" \\ #{{file.write(data=\"x\", \"{m}\")}} \"; file.write(data=\"y\", \"{m}\") # ' %mp3 \r\nsettings.init.allow_root.set(true) <b>&amp;",
        m = marker.display()
    );
    fx.make_library("cus_heidi", &[440]).await;
    fx.sup
        .start(&s)
        .await
        .expect("liquidsoap starts with a hostile display name");
    wait_all_running(&fx.sup, "hostile").await;

    // liquidsoap announced exactly the name (control characters as spaces), so every quote,
    // backslash and `#{` stayed inside one string…
    let xml = admin_stats(&s).await.expect("admin stats");
    let name = source_element(&xml, "/autodj")
        .and_then(|e| element_text(e, "server_name"))
        .expect("server_name of /autodj");
    let name = name
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    assert_eq!(name, autodj::sanitized(&s.display_name));
    // …and nothing of it ran.
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    assert!(!ran, "the display name ran code");
    let script = script_of(&fx, "hostile");
    assert!(!script.contains("\nsettings.init.allow_root"), "{script}");
    assert!(script.contains("#\" ^ \"{file.write"), "{script}");
    fx.finish().await;
}
