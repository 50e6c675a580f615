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

    // The host has sc_serv now: the capability says so, AutoDJ not offered with it.
    let caps = sup.capabilities().await;
    let sc = caps
        .iter()
        .find(|c| c.r#type == ServiceType::Shoutcast as i32)
        .expect("a shoutcast entry");
    assert!(sc.available && !sc.autodj_available, "{sc:?}");

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
