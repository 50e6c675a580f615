//! The supervisor against the real `icecast2` and `ffmpeg` on this machine.
//!
//! Every test gets its own services directory and free ports, so they run in parallel. Waits
//! poll an observable condition up to a deadline; nothing sleeps to synchronise. A guard kills
//! whatever a failed test leaves running.

mod common;
use common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use castplane_agent::plugins::{http, icecast};
use castplane_agent::supervisor::{Supervisor, SupervisorConfig};
use castplane_proto::agent::v1::ServiceSpec;
use castplane_proto::v1::{ObservedState, PortAssignment, ServiceStats, ServiceType};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

fn spec(id: &str, port: u16) -> ServiceSpec {
    ServiceSpec {
        id: id.to_owned(),
        name: id.to_owned(),
        display_name: format!("Test radio {id}"),
        r#type: ServiceType::Icecast as i32,
        ports: vec![PortAssignment {
            purpose: "http".to_owned(),
            port: u32::from(port),
        }],
        max_listeners: 10,
        max_bitrate_kbps: 128,
        source_password: format!("src-{id}-secret"),
        admin_password: format!("adm-{id}-secret"),
        relay_password: format!("rel-{id}-secret"),
        public_host: "radio.test".to_owned(),
        // The test hosts do not resolve; their servers listen on loopback.
        bind_address: "127.0.0.1".to_owned(),
        desired_running: true,
        generation: 1,
        ..Default::default()
    }
}

/// Kills (SIGKILL, whole group) any server still recorded under `services_dir` when a test
/// ends, including by panic. Only processes whose command line names that directory.
struct KillGuard(PathBuf);

impl Drop for KillGuard {
    fn drop(&mut self) {
        for pid in recorded_pids(&self.0) {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Pids from every service's `process.json` and `icecast.pid` that still run a server of this
/// services directory.
fn recorded_pids(services_dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(services_dir) else {
        return Vec::new();
    };
    let needle = services_dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let from_record = std::fs::read_to_string(dir.join("process.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("pid").and_then(|p| p.as_u64()))
            .map(|p| p as u32);
        let from_pid_file = std::fs::read_to_string(dir.join("icecast.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        for pid in [from_record, from_pid_file].into_iter().flatten() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

struct Fixture {
    sup: Supervisor,
    services_dir: PathBuf,
    _guard: KillGuard,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut SupervisorConfig)) -> Self {
        // The supervisor's logs (state changes, icecast2's own lines) show up with a failure.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "castplane_agent=info".into()),
            )
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let services_dir = dir.path().join("agent").join("services");
        let mut config = SupervisorConfig {
            services_dir: services_dir.clone(),
            stats_interval: Duration::from_millis(500),
            ..Default::default()
        };
        tweak(&mut config);
        Fixture {
            sup: Supervisor::new(config.clone()),
            services_dir: services_dir.clone(),
            _guard: KillGuard(services_dir),
            _dir: dir,
        }
    }

    fn config(&self) -> SupervisorConfig {
        SupervisorConfig {
            services_dir: self.services_dir.clone(),
            stats_interval: Duration::from_millis(500),
            ..Default::default()
        }
    }

    /// Stops everything and checks nothing of this test is left running.
    async fn finish(self) {
        self.sup.stop_all().await;
        let left = recorded_pids(&self.services_dir);
        assert!(left.is_empty(), "servers left running: {left:?}");
    }
}

async fn status_json(port: u16) -> Option<serde_json::Value> {
    let r = http::get(port, "/status-json.xsl", None, Duration::from_secs(2))
        .await
        .ok()?;
    if r.status != 200 {
        return None;
    }
    serde_json::from_slice(&r.body).ok()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9 the server");
}

/// An ffmpeg broadcaster feeding a 440 Hz sine as 128 kbps MP3 to `/live`.
fn start_source(port: u16, password: &str, log: &Path) -> tokio::process::Child {
    let log = std::fs::File::create(log).expect("ffmpeg log");
    tokio::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
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
        .arg(format!("icecast://source:{password}@127.0.0.1:{port}/live"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

#[tokio::test]
async fn streams_mp3_to_a_listener_and_reports_stats() {
    let fx = Fixture::new();
    let port = free_port();
    let s = spec("stream", port);
    let mut events = fx.sup.subscribe();
    fx.sup.start(&s).await.expect("start");
    let pid = fx.sup.pid("stream").await.expect("pid");
    assert_eq!(
        wait_state(&fx.sup, "stream", ObservedState::Running).await,
        ""
    );

    // The config holds passwords: root:icecast 0640; the spec too: 0600.
    let dir = fx.services_dir.join("stream");
    let config = std::fs::metadata(dir.join("icecast.xml")).expect("config");
    assert_eq!(config.permissions().mode() & 0o777, 0o640);
    let spec_file = std::fs::metadata(dir.join("spec.pb")).expect("spec");
    assert_eq!(spec_file.permissions().mode() & 0o777, 0o600);
    if nix::unistd::geteuid().is_root() {
        let group = nix::unistd::Group::from_name("icecast")
            .expect("lookup")
            .expect("group icecast");
        assert_eq!((config.uid(), config.gid()), (0, group.gid.as_raw()));
        let user = nix::unistd::User::from_name("icecast2")
            .expect("lookup")
            .expect("user icecast2");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        assert!(
            uid_line.split_whitespace().nth(1) == Some(&user.uid.as_raw().to_string()),
            "{uid_line}"
        );
    }

    // Servers get a minimal environment, none of the agent's.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    for var in environ.split(|b| *b == 0).filter(|v| !v.is_empty()) {
        let name = String::from_utf8_lossy(var.split(|b| *b == b'=').next().unwrap_or_default())
            .into_owned();
        assert!(
            ["PATH", "TZ", "LANG", "LC_ALL"].contains(&name.as_str()),
            "server inherited {name}"
        );
    }

    let _source = start_source(
        port,
        &s.source_password,
        &fx.services_dir.join("../ffmpeg.log"),
    );
    wait_until("the /live mount", || async {
        status_json(port)
            .await
            .is_some_and(|v| v.to_string().contains(&format!(":{port}/live")))
    })
    .await;

    let (_listener, head, body) = listen(port, "/live", 16 * 1024).await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: audio/mpeg"),
        "{head}"
    );
    assert!(
        body.starts_with(b"ID3") || mp3_frame_run(&body) >= 10,
        "no MP3 frames in {} bytes",
        body.len()
    );
    assert!(
        mp3_frame_run(&body) >= 10,
        "fewer than 10 consecutive MP3 frames"
    );

    // The listener stays connected while stats come in through the subscription.
    let deadline = Instant::now() + DEADLINE;
    let stats: ServiceStats = loop {
        let update = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("stats in time")
            .expect("event");
        if update.media_service_id != "stream" {
            continue;
        }
        let Some(stats) = update.status.and_then(|s| s.stats) else {
            continue;
        };
        if stats.listeners >= 1
            && stats.sources >= 1
            && stats.mounts.iter().any(|m| m == "/live")
            && stats.bytes_read > 0
        {
            break stats;
        }
    };
    assert!(stats.listeners >= 1);
    let now = observed(&fx.sup, "stream").await.expect("observed");
    assert!(
        now.status
            .and_then(|s| s.stats)
            .is_some_and(|st| st.mounts.contains(&"/live".to_owned()))
    );

    fx.sup.stop("stream").await.expect("stop");
    assert_eq!(
        wait_state(&fx.sup, "stream", ObservedState::Stopped).await,
        "stopped"
    );
    assert!(!process_exists(pid), "pid {pid} still exists (not reaped?)");
    assert!(
        !port_accepts(port).await,
        "port {port} still open after stop"
    );
    assert_eq!(fx.sup.pid("stream").await, None);
    fx.finish().await;
}

#[tokio::test]
async fn start_is_idempotent_and_restart_gives_a_new_pid() {
    let fx = Fixture::new();
    let port = free_port();
    let s = spec("idem", port);
    fx.sup.start(&s).await.expect("start");
    let first = fx.sup.pid("idem").await.expect("pid");
    fx.sup.start(&s).await.expect("second start");
    assert_eq!(
        fx.sup.pid("idem").await,
        Some(first),
        "start of a running service must not restart it"
    );

    fx.sup.restart(&s).await.expect("restart");
    let second = fx.sup.pid("idem").await.expect("pid after restart");
    assert_ne!(first, second);
    assert!(!process_exists(first), "old pid {first} still exists");
    assert_eq!(
        wait_state(&fx.sup, "idem", ObservedState::Running).await,
        ""
    );
    let status = status_json(port).await.expect("ready after restart");
    assert!(status.pointer("/icestats/server_id").is_some());
    fx.finish().await;
}

#[tokio::test]
async fn delete_removes_the_directory_and_frees_the_port() {
    let fx = Fixture::new();
    let port = free_port();
    fx.sup.start(&spec("gone", port)).await.expect("start");
    let pid = fx.sup.pid("gone").await.expect("pid");
    let dir = fx.services_dir.join("gone");
    assert!(dir.join("icecast.xml").exists());

    fx.sup.delete("gone").await.expect("delete");
    assert!(!dir.exists(), "service directory still exists");
    assert!(!process_exists(pid));
    assert!(!port_accepts(port).await);
    assert!(observed(&fx.sup, "gone").await.is_none());
    // Unknown services: both are no-ops.
    fx.sup.delete("gone").await.expect("delete again");
    fx.sup.stop("never-existed").await.expect("stop unknown");
    fx.finish().await;
}

#[tokio::test]
async fn delete_reaches_a_server_the_supervisor_never_loaded() {
    let fx = Fixture::new();
    let port = free_port();
    fx.sup.start(&spec("orphan", port)).await.expect("start");
    let pid = fx.sup.pid("orphan").await.expect("pid");
    fx.sup.detach().await;

    // A new agent deletes before adopt_existing ran: the server must still be stopped.
    let second = Supervisor::new(fx.config());
    second.delete("orphan").await.expect("delete");
    assert!(!fx.services_dir.join("orphan").exists());
    wait_until("the server to exit", || async {
        !process_exists(pid) || zombie(pid)
    })
    .await;
    assert!(!port_accepts(port).await);
    fx.finish().await;
}

#[tokio::test]
async fn killed_server_is_restarted_by_supervision() {
    let fx = Fixture::new();
    let port = free_port();
    fx.sup.start(&spec("phoenix", port)).await.expect("start");
    let first = fx.sup.pid("phoenix").await.expect("pid");
    let mut events = fx.sup.subscribe();
    sigkill(first);

    // BACKING_OFF names the signal, then the supervisor brings it back.
    let backoff_message = next_event_in(&mut events, "phoenix", ObservedState::BackingOff).await;
    assert!(backoff_message.contains("signal 9"), "{backoff_message}");
    wait_until("a new pid", || async {
        fx.sup.pid("phoenix").await.is_some_and(|p| p != first)
    })
    .await;
    wait_state(&fx.sup, "phoenix", ObservedState::Running).await;
    assert!(
        status_json(port).await.is_some(),
        "restarted server does not answer"
    );
    fx.finish().await;
}

#[tokio::test]
async fn crash_loop_ends_in_failed_with_the_reason() {
    let fx = Fixture::with(|c| {
        c.crash_loop_exits = 3;
        c.crash_loop_window = Duration::from_secs(120);
    });
    let port = free_port();
    let s = spec("loop", port);
    fx.sup.start(&s).await.expect("start");
    let mut pid = fx.sup.pid("loop").await.expect("pid");
    for round in 1..=3 {
        sigkill(pid);
        if round == 3 {
            break;
        }
        let old = pid;
        wait_until("a restart", || async {
            fx.sup.pid("loop").await.is_some_and(|p| p != old)
        })
        .await;
        wait_state(&fx.sup, "loop", ObservedState::Running).await;
        pid = fx.sup.pid("loop").await.expect("pid");
    }
    let message = wait_state(&fx.sup, "loop", ObservedState::Failed).await;
    assert!(message.contains("crash loop"), "{message}");
    assert!(
        message.contains("icecast2 exited unexpectedly with signal 9 (SIGKILL)"),
        "{message}"
    );
    assert_eq!(fx.sup.pid("loop").await, None);

    // It stays down, even through reconcile of the same generation…
    fx.sup.reconcile(vec![s.clone()]).await;
    assert_eq!(
        wait_state(&fx.sup, "loop", ObservedState::Failed).await,
        message
    );
    assert_eq!(fx.sup.pid("loop").await, None);
    // …until an explicit start clears the crash loop.
    fx.sup.start(&s).await.expect("start after crash loop");
    wait_state(&fx.sup, "loop", ObservedState::Running).await;
    fx.finish().await;
}

#[tokio::test]
async fn restarted_agent_adopts_the_running_server() {
    let fx = Fixture::new();
    let port = free_port();
    fx.sup.start(&spec("adopt", port)).await.expect("start");
    let pid = fx.sup.pid("adopt").await.expect("pid");
    fx.sup.detach().await;
    assert!(
        fx.sup.start(&spec("other", free_port())).await.is_err(),
        "a detached supervisor takes no commands"
    );
    assert!(process_exists(pid), "detach must leave the server running");

    // The next agent adopts it without a restart…
    let second = Supervisor::new(fx.config());
    second.adopt_existing().await.expect("adopt");
    assert_eq!(second.pid("adopt").await, Some(pid));
    let message = wait_state(&second, "adopt", ObservedState::Running).await;
    assert!(message.contains("adopted"), "{message}");
    wait_until("stats of the adopted server", || async {
        observed(&second, "adopt")
            .await
            .and_then(|o| o.status)
            .and_then(|s| s.stats)
            .is_some()
    })
    .await;
    // …and supervises it: killed → restarted.
    sigkill(pid);
    wait_until("a restart of the adopted server", || async {
        second.pid("adopt").await.is_some_and(|p| p != pid)
    })
    .await;
    wait_state(&second, "adopt", ObservedState::Running).await;
    let restarted = second.pid("adopt").await.expect("pid");
    second.detach().await;

    // A third agent adopts the restarted one and can stop it.
    let third = Supervisor::new(fx.config());
    third.adopt_existing().await.expect("adopt again");
    assert_eq!(third.pid("adopt").await, Some(restarted));
    third.stop("adopt").await.expect("stop adopted");
    wait_until("the adopted server to exit", || async {
        !process_exists(restarted) || zombie(restarted)
    })
    .await;
    assert!(!port_accepts(port).await);
    fx.finish().await;
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn port_in_use_names_its_owner() {
    let fx = Fixture::new();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = blocker.local_addr().expect("addr").port();
    let err = fx
        .sup
        .start(&spec("busy", port))
        .await
        .expect_err("port is taken")
        .to_string();
    assert_eq!(
        err,
        format!("port {port} is in use by pid {}", std::process::id())
    );
    assert_eq!(
        wait_state(&fx.sup, "busy", ObservedState::Failed).await,
        err
    );
    assert_eq!(fx.sup.pid("busy").await, None);
    drop(blocker);
    fx.finish().await;
}

/// A socket bound (not listening) on the port passes the listen check but makes icecast2's own
/// bind fail: the real startup-failure path.
#[tokio::test]
async fn startup_failure_reports_exit_status_and_stderr() {
    let fx = Fixture::new();
    let port = free_port();
    let fd = bind_without_listening(port);
    let err = fx
        .sup
        .start(&spec("nobind", port))
        .await
        .expect_err("icecast2 cannot bind")
        .to_string();
    // SAFETY: `fd` is a socket this test opened and nothing else uses.
    unsafe { libc::close(fd) };
    assert!(
        err.starts_with("icecast2 exited while starting with status 1: "),
        "{err}"
    );
    assert!(err.contains("Could not create listener socket"), "{err}");
    assert_eq!(
        wait_state(&fx.sup, "nobind", ObservedState::Failed).await,
        err
    );
    fx.finish().await;
}

fn bind_without_listening(port: u16) -> i32 {
    // SAFETY: plain socket(2)/bind(2) with a fully initialised sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        let rc = libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(rc, 0, "bind {port}");
        fd
    }
}

#[tokio::test]
async fn hostile_display_name_is_escaped() {
    let fx = Fixture::new();
    let port = free_port();
    let mut s = spec("hostile", port);
    s.display_name =
        "Evil & Co </location><hostname>pwned.example</hostname><!-- \"quoted\" 'single' ]]> \\ \r\nicy-x: y\u{1} café 🎵"
            .to_owned();
    fx.sup
        .start(&s)
        .await
        .expect("icecast2 starts with a hostile display name");

    let status = status_json(port).await.expect("status");
    assert_eq!(
        status
            .pointer("/icestats/location")
            .and_then(|v| v.as_str()),
        Some(icecast::sanitized(&s.display_name).as_str())
    );
    assert_eq!(
        status.pointer("/icestats/host").and_then(|v| v.as_str()),
        Some("radio.test")
    );
    let config =
        std::fs::read_to_string(fx.services_dir.join("hostile/icecast.xml")).expect("config");
    assert_eq!(config.matches("<hostname>").count(), 1, "{config}");
    assert!(!config.contains("pwned.example</hostname>"), "{config}");
    fx.finish().await;
}

#[tokio::test]
async fn reconcile_starts_reloads_restarts_stops_and_removes() {
    let fx = Fixture::new();
    let port = free_port();
    let mut s = spec("rec", port);
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_state(&fx.sup, "rec", ObservedState::Running).await;
    let pid = fx.sup.pid("rec").await.expect("pid");

    // A newer generation with the same port: reloaded in place (SIGHUP), same pid.
    s.generation = 2;
    s.display_name = "Renamed radio".to_owned();
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_until("the reloaded name", || async {
        status_json(port)
            .await
            .and_then(|v| v.pointer("/icestats/location").cloned())
            == Some("Renamed radio".into())
    })
    .await;
    assert_eq!(fx.sup.pid("rec").await, Some(pid));

    // A new port cannot be reloaded: restart, new pid, new port.
    let new_port = free_port();
    s.generation = 3;
    s.ports[0].port = u32::from(new_port);
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_until("a restart on the new port", || async {
        fx.sup.pid("rec").await.is_some_and(|p| p != pid) && status_json(new_port).await.is_some()
    })
    .await;
    assert!(!port_accepts(port).await);

    s.desired_running = false;
    fx.sup.reconcile(vec![s.clone()]).await;
    wait_state(&fx.sup, "rec", ObservedState::Stopped).await;
    assert_eq!(fx.sup.pid("rec").await, None);

    fx.sup.reconcile(Vec::new()).await;
    let dir = fx.services_dir.join("rec");
    wait_until("removal of the unassigned service", || async {
        !dir.exists()
    })
    .await;
    wait_until("the service to leave observed()", || async {
        observed(&fx.sup, "rec").await.is_none()
    })
    .await;
    fx.finish().await;
}

#[tokio::test]
async fn shoutcast_without_sc_serv_fails_clearly() {
    let fx = Fixture::new();
    let port = free_port();
    let mut shoutcast = spec("sc", port);
    shoutcast.r#type = ServiceType::Shoutcast as i32;
    shoutcast.ports.push(PortAssignment {
        purpose: "legacy-source".to_owned(),
        port: u32::from(port) + 1,
    });
    let err = fx
        .sup
        .start(&shoutcast)
        .await
        .expect_err("sc_serv is not installed here")
        .to_string();
    assert!(err.contains("sc_serv"), "{err}");
    assert_eq!(wait_state(&fx.sup, "sc", ObservedState::Failed).await, err);
    fx.finish().await;
}

#[tokio::test]
async fn capabilities_describe_this_host() {
    let fx = Fixture::new();
    let caps = fx.sup.capabilities().await;
    let of = |t: ServiceType| {
        caps.iter()
            .find(|c| c.r#type == t as i32)
            .cloned()
            .expect("one entry per type")
    };
    assert_eq!(caps.len(), 3);
    let ice = of(ServiceType::Icecast);
    assert!(ice.available, "{ice:?}");
    assert!(ice.version.starts_with("icecast2 2."), "{ice:?}");
    let liquidsoap = castplane_agent::plugins::find_program("liquidsoap").is_some();
    assert_eq!(ice.autodj_available, liquidsoap);
    let sc = of(ServiceType::Shoutcast);
    assert!(!sc.available && sc.detail.contains("sc_serv"), "{sc:?}");
    // Video has its own checks in supervisor_video.rs.
    let video = of(ServiceType::Video);
    assert!(video.detail.contains("nginx"), "{video:?}");
}

/// Whether something accepts TCP on `ip:port`.
async fn accepts_on(ip: std::net::Ipv4Addr, port: u16) -> bool {
    tokio::net::TcpStream::connect((ip, port)).await.is_ok()
}

#[tokio::test]
async fn servers_listen_only_on_the_nodes_bind_address() {
    let fx = Fixture::new();
    // 127.0.0.2 plays the node's public address; all of 127.0.0.0/8 is this host's, so an
    // address icecast2 was not given (127.0.0.3 here) shows whether it listens on every
    // interface without any traffic leaving loopback.
    let port = free_port();
    let s = ServiceSpec {
        bind_address: "127.0.0.2".to_owned(),
        ..spec("bound", port)
    };
    fx.sup.start(&s).await.expect("start");
    let config =
        std::fs::read_to_string(fx.services_dir.join("bound").join("icecast.xml")).expect("config");
    assert!(
        config.contains("<bind-address>127.0.0.2</bind-address>"),
        "{config}"
    );
    assert!(
        accepts_on([127, 0, 0, 2].into(), port).await,
        "bind address"
    );
    // The agent's own probes and AutoDJ use loopback.
    assert!(accepts_on([127, 0, 0, 1].into(), port).await, "loopback");
    assert!(
        !accepts_on([127, 0, 0, 3].into(), port).await,
        "icecast2 listens on an address it was not given"
    );

    // Without a bind address the public host decides: here it resolves to loopback only.
    let port = free_port();
    let resolved = ServiceSpec {
        bind_address: String::new(),
        public_host: "localhost".to_owned(),
        ..spec("resolved", port)
    };
    fx.sup.start(&resolved).await.expect("start");
    assert!(accepts_on([127, 0, 0, 1].into(), port).await);
    assert!(!accepts_on([127, 0, 0, 3].into(), port).await);

    // A public host that is not this host's address cannot be bound: refused with what to do.
    let elsewhere = ServiceSpec {
        bind_address: String::new(),
        public_host: "192.0.2.1".to_owned(),
        ..spec("elsewhere", free_port())
    };
    let err = fx
        .sup
        .start(&elsewhere)
        .await
        .expect_err("not this host")
        .to_string();
    assert!(err.contains("set the node's bind address"), "{err}");
    fx.finish().await;
}

#[tokio::test]
async fn a_restart_that_cannot_start_leaves_the_server_running() {
    let fx = Fixture::new();
    let port = free_port();
    let s = spec("steady", port);
    fx.sup.start(&s).await.expect("start");
    let pid = fx.sup.pid("steady").await.expect("pid");
    let dir = fx.services_dir.join("steady");

    // The config cannot be written (its path is taken by a directory, which no write can
    // replace, as root or not): the restart fails before anything is stopped.
    std::fs::remove_file(dir.join("icecast.xml")).expect("remove config");
    std::fs::create_dir(dir.join("icecast.xml")).expect("block the config path");
    let err = fx
        .sup
        .restart(&s)
        .await
        .expect_err("cannot render")
        .to_string();
    assert!(
        err.contains("icecast.xml") && err.contains("left as it was"),
        "{err}"
    );
    assert_eq!(
        fx.sup.pid("steady").await,
        Some(pid),
        "the server was stopped"
    );
    assert!(process_exists(pid));
    assert!(
        status_json(port).await.is_some(),
        "the server stopped serving"
    );
    std::fs::remove_dir(dir.join("icecast.xml")).expect("unblock");

    // A new port that another program holds: refused before stopping, too.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = holder.local_addr().expect("addr").port();
    let mut moved = spec("steady", taken);
    moved.generation = 2;
    let err = fx
        .sup
        .restart(&moved)
        .await
        .expect_err("port taken")
        .to_string();
    assert!(err.contains(&format!("port {taken} is in use")), "{err}");
    assert_eq!(fx.sup.pid("steady").await, Some(pid));
    assert!(status_json(port).await.is_some());

    // And a restart that can start still replaces the server.
    drop(holder);
    fx.sup.restart(&moved).await.expect("restart");
    assert_ne!(fx.sup.pid("steady").await, Some(pid));
    assert!(status_json(taken).await.is_some());
    fx.finish().await;
}
