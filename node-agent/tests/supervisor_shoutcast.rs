//! The supervisor driving the shoutcast plugin through start, a source, statistics, restart,
//! re-adoption by a new agent, stop and delete — against a STAND-IN for `sc_serv`.
//!
//! SHOUTcast DNAS 2 is proprietary and cannot be installed here, so `sc_serv` is
//! `tests/sc_serv_standin.py` behind a wrapper named `sc_serv` on `PATH` (its command line
//! starts with `sc_serv`, as the real one's does, for the adoption check). The stand-in is not
//! sc_serv: it reads the rendered config, writes the pid file, serves the documented
//! `/statistics?json=1` and accepts a 1.x source on the legacy port. What these tests prove is
//! the plugin's and the supervisor's side of the contract, not sc_serv's.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use castplane_agent::supervisor::{Supervisor, SupervisorConfig};
use castplane_proto::agent::v1::ServiceSpec;
use castplane_proto::v1::{ObservedState, PortAssignment, ServiceType};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Puts the stand-in first on `PATH`, where the plugin looks for `sc_serv`.
fn install_standin() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    // The server runs as nobody: it must reach the script.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = dir.path().join("sc_serv_standin.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sc_serv_standin.py"),
        &script,
    )
    .expect("copy the stand-in");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let wrapper = dir.path().join("sc_serv");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\n# STAND-IN for sc_serv (see supervisor_shoutcast.rs)\nexec -a \"$0\" /usr/bin/python3 {} \"$@\"\n",
            script.display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.path().to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    // SAFETY: called before the test starts its runtime, while this process (nextest runs
    // each test in its own) has no other thread reading the environment.
    unsafe {
        std::env::set_var("PATH", std::env::join_paths(paths).expect("PATH"));
    }
    dir
}

/// Two consecutive free ports: sc_serv's base port and its legacy source port.
fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port < u16::MAX && std::net::TcpListener::bind(("0.0.0.0", port + 1)).is_ok() {
            return port;
        }
    }
}

fn spec(id: &str, port: u16) -> ServiceSpec {
    ServiceSpec {
        id: id.to_owned(),
        name: id.to_owned(),
        display_name: format!("Test radio {id}"),
        r#type: ServiceType::Shoutcast as i32,
        ports: vec![
            PortAssignment {
                purpose: "http".to_owned(),
                port: u32::from(port),
            },
            PortAssignment {
                purpose: "legacy-source".to_owned(),
                port: u32::from(port) + 1,
            },
        ],
        max_listeners: 10,
        max_bitrate_kbps: 128,
        source_password: format!("src-{id}-secret"),
        admin_password: format!("adm-{id}-secret"),
        relay_password: format!("rel-{id}-secret"),
        public_host: "radio.test".to_owned(),
        bind_address: "127.0.0.1".to_owned(),
        desired_running: true,
        generation: 1,
        ..Default::default()
    }
}

/// Kills whatever a failed test leaves running under `services_dir`.
struct KillGuard(PathBuf);

impl Drop for KillGuard {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for entry in entries.flatten() {
            let pid = std::fs::read_to_string(entry.path().join("sc_serv.pid"))
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// A 1.x source on the legacy port: the password line, then `OK2`.
async fn connect_source(port: u16, password: &str) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the legacy source port");
    stream
        .write_all(format!("{password}\r\n").as_bytes())
        .await
        .expect("send the password");
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    answer.truncate(n);
    (stream, String::from_utf8_lossy(&answer).into_owned())
}

async fn sources_and_mounts(sup: &Supervisor, id: &str) -> Option<(u32, Vec<String>)> {
    observed(sup, id)
        .await
        .and_then(|o| o.status)
        .and_then(|s| s.stats)
        .map(|s| (s.sources, s.mounts))
}

#[test]
fn the_stand_in_runs_through_start_source_restart_adoption_stop_and_delete() {
    let _standin = install_standin();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(lifecycle());
}

async fn lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services_dir = dir.path().join("agent").join("services");
    let _guard = KillGuard(services_dir.clone());
    let config = SupervisorConfig {
        services_dir: services_dir.clone(),
        stats_interval: Duration::from_millis(500),
        ..Default::default()
    };
    let sup = Supervisor::new(config.clone());
    let port = free_port_pair();
    let s = spec("sc", port);

    // The host has sc_serv now: the capability says so, and AutoDJ goes with liquidsoap.
    let caps = sup.capabilities().await;
    let sc = caps
        .iter()
        .find(|c| c.r#type == ServiceType::Shoutcast as i32)
        .expect("a shoutcast entry");
    let liquidsoap = castplane_agent::plugins::find_program("liquidsoap").is_some();
    assert!(sc.available && sc.autodj_available == liquidsoap, "{sc:?}");

    sup.start(&s).await.expect("start");
    wait_state(&sup, "sc", ObservedState::Running).await;
    let config_text =
        std::fs::read_to_string(services_dir.join("sc").join("sc_serv.conf")).expect("config");
    assert!(
        config_text.contains(&format!("portbase={port}")),
        "{config_text}"
    );
    assert!(config_text.contains(&format!("portlegacy={}", port + 1)));
    let first = sup.pid("sc").await.expect("pid");

    // A source with the service's password is taken; the statistics show it on /stream.
    let (mut source, answer) = connect_source(port + 1, &s.source_password).await;
    assert!(answer.starts_with("OK2"), "{answer:?}");
    source.write_all(&[0u8; 1024]).await.expect("audio");
    wait_until("the source in the statistics", || async {
        sources_and_mounts(&sup, "sc").await == Some((1, vec!["/stream".to_owned()]))
    })
    .await;
    let (_, refused) = connect_source(port + 1, "wrong").await;
    assert!(refused.contains("invalid password"), "{refused:?}");
    drop(source);

    // Restart: a new process, running again.
    sup.restart(&s).await.expect("restart");
    wait_until("a new sc_serv process", || async {
        sup.pid("sc").await.is_some_and(|p| p != first)
    })
    .await;
    wait_state(&sup, "sc", ObservedState::Running).await;
    let restarted = sup.pid("sc").await.expect("pid");

    // A new agent adopts the running server without restarting it, and controls it.
    sup.detach().await;
    let second = Supervisor::new(config);
    second.adopt_existing().await.expect("adopt");
    assert_eq!(second.pid("sc").await, Some(restarted));
    let message = wait_state(&second, "sc", ObservedState::Running).await;
    assert!(message.contains("adopted"), "{message}");
    second.stop("sc").await.expect("stop");
    wait_until("sc_serv to exit", || async {
        !port_accepts(port).await && !port_accepts(port + 1).await
    })
    .await;
    wait_state(&second, "sc", ObservedState::Stopped).await;

    // Started again and deleted: its directory goes.
    second.start(&s).await.expect("start again");
    wait_state(&second, "sc", ObservedState::Running).await;
    second.delete("sc").await.expect("delete");
    wait_until("the service directory to go", || async {
        !services_dir.join("sc").exists()
    })
    .await;
    assert!(!port_accepts(port).await);
    second.stop_all().await;
}

/// Live processes whose command line names `dir`: the test's sc_serv (its config) and
/// liquidsoap (its script).
fn processes_under(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = status
                .rfind(')')
                .and_then(|i| status[i + 1..].split_whitespace().next())
                .is_none_or(|state| state == "Z" || state == "X");
            !zombie
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .split(|b| *b == 0)
                    .any(|arg| String::from_utf8_lossy(arg).contains(&needle))
        })
        .collect()
}

/// Kills every process of `services_dir` (AutoDJ included) when the test ends, even by panic.
struct KillAllGuard(PathBuf);

impl Drop for KillAllGuard {
    fn drop(&mut self) {
        for pid in processes_under(&self.0) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The stand-in's `/statistics?json=1`.
async fn standin_statistics(port: u16) -> Option<serde_json::Value> {
    let response = castplane_agent::plugins::http::get(
        port,
        "/statistics?json=1",
        None,
        Duration::from_secs(3),
    )
    .await
    .ok()?;
    serde_json::from_slice(&response.body).ok()
}

/// AutoDJ with the real liquidsoap (as the `liquidsoap` account) feeding the sc_serv STAND-IN:
/// what is proved is that liquidsoap's `output.shoutcast` logs in on the legacy port with the
/// rendered password, sends the escaped name and MP3 that reaches a listener, and that the
/// supervisor runs, reports and stops it beside sc_serv. The stand-in refuses a second source
/// as sc_serv does per its documentation; the real server's answer is not modelled.
#[test]
fn autodj_plays_the_owners_library_into_the_stand_in_until_turned_off_for_a_live_dj() {
    let _standin = install_standin();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(autodj());
}

async fn autodj() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services_dir = dir.path().join("agent").join("services");
    let media_dir = dir.path().join("agent").join("media");
    let _guard = KillAllGuard(services_dir.clone());
    let sup = Supervisor::new(SupervisorConfig {
        services_dir: services_dir.clone(),
        media_dir: media_dir.clone(),
        stats_interval: Duration::from_millis(500),
        ..Default::default()
    });

    let library = media_dir.join("cus_sc");
    std::fs::create_dir_all(&library).expect("library dir");
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:duration=5")
        .args(["-c:a", "libmp3lame", "-b:a", "128k"])
        .arg(library.join("sine-440.mp3"))
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make a track");

    let port = free_port_pair();
    let mut s = spec("scdj", port);
    s.autodj = true;
    s.owner_customer_id = "cus_sc".to_owned();
    // Quotes, a backslash and an interpolation reach sc_serv as text, not as liquidsoap code.
    s.display_name = r##"DJ "#{shutdown()}" \ radio"##.to_owned();
    sup.start(&s).await.expect("start");
    wait_until("sc_serv and AutoDJ both running", || async {
        observed(&sup, "scdj").await.is_some_and(|o| {
            state_of(&o) == (ObservedState::Running, String::new())
                && o.status
                    .as_ref()
                    .and_then(|st| st.stats.as_ref())
                    .is_some_and(|st| st.sources == 1)
        })
    })
    .await;
    let server = sup.pid("scdj").await.expect("sc_serv pid");
    let liquidsoap = sup.sibling_pid("scdj").await.expect("liquidsoap pid");
    let script =
        std::fs::read_to_string(services_dir.join("scdj").join("autodj.liq")).expect("autodj.liq");
    assert!(
        script.contains(&format!(
            "output.shoutcast(%mp3(bitrate=128, samplerate=44100), id=\"autodj\", host=\"127.0.0.1\", port={port}, password=\"src-scdj-secret\","
        )),
        "{script}"
    );
    assert_eq!(
        sources_and_mounts(&sup, "scdj").await,
        Some((1, vec!["/stream".to_owned()]))
    );

    // Audio arrives: a listener of the stand-in's /stream gets back-to-back MP3 frames.
    let (listener, _, body) = listen(port, "/stream", 16 * 1024).await;
    assert!(mp3_frame_run(&body) >= 10, "no MP3 in {} bytes", body.len());
    drop(listener);
    let stats = standin_statistics(port).await.expect("statistics");
    assert_eq!(
        stats["streams"][0]["servertitle"].as_str(),
        Some(s.display_name.as_str()),
        "{stats}"
    );
    assert!(
        stats["standin_source_bytes"].as_u64() > Some(16 * 1024),
        "{stats}"
    );
    assert!(
        stats["standin_audio_head"]
            .as_str()
            .is_some_and(|h| h.starts_with("fff")),
        "{stats}"
    );

    // One source per stream: while AutoDJ has it, a live DJ is turned away...
    let (_, refused) = connect_source(port + 1, &s.source_password).await;
    assert!(refused.contains("stream in use"), "{refused:?}");

    // ...until AutoDJ is turned off, which leaves sc_serv running.
    s.generation = 2;
    s.autodj = false;
    sup.start(&s).await.expect("apply autodj off");
    assert_eq!(sup.sibling_pid("scdj").await, None);
    assert_eq!(sup.pid("scdj").await, Some(server));
    wait_until("liquidsoap to exit and its source to go", || async {
        processes_under(&services_dir).len() == 1
            && standin_statistics(port)
                .await
                .is_some_and(|st| st["activestreams"].as_u64() == Some(0))
    })
    .await;
    assert!(!processes_under(&services_dir).contains(&(liquidsoap as i32)));
    let (_live, answer) = connect_source(port + 1, &s.source_password).await;
    assert!(answer.starts_with("OK2"), "{answer:?}");

    sup.stop_all().await;
    let left = processes_under(&services_dir);
    assert!(left.is_empty(), "processes left running: {left:?}");
}
