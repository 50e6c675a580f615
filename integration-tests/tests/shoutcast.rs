//! A shoutcast service through the public API with a real agent — against a STAND-IN for
//! `sc_serv`, on SQLite and PostgreSQL.
//!
//! SHOUTcast DNAS 2 is proprietary and cannot be installed here: `sc_serv` on the agent's
//! `PATH` is `node-agent/tests/sc_serv_standin.py` behind a wrapper of that name. It is not
//! sc_serv; it reads the rendered config, writes the pid file, serves `/statistics?json=1` and
//! accepts a 1.x source on the legacy port — enough to show placement, actions, statistics and
//! re-adoption working for the type end to end.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::streaming::port_open;
use castplane_integration_tests::{
    AgentHandle, Backend, Client, ControlPlaneHandle, free_port_range, wait_for,
};
use castplane_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(60);

/// Puts the stand-in first on `PATH`, where the agent's plugin looks for `sc_serv`.
fn install_standin() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    // The server runs as nobody: it must reach the script.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = dir.path().join("sc_serv_standin.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../node-agent/tests/sc_serv_standin.py"),
        &script,
    )
    .expect("copy the stand-in");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let wrapper = dir.path().join("sc_serv");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\n# STAND-IN for sc_serv (see integration-tests/tests/shoutcast.rs)\nexec -a \"$0\" /usr/bin/python3 {} \"$@\"\n",
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

fn run(backend: Backend) {
    let _standin = install_standin();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(lifecycle(backend));
}

#[test]
fn sqlite_a_shoutcast_stand_in_runs_through_every_action_and_a_restarted_agent() {
    run(Backend::Sqlite);
}

#[test]
fn postgres_a_shoutcast_stand_in_runs_through_every_action_and_a_restarted_agent() {
    run(Backend::Postgres);
}

async fn succeeded(client: &Client, action: pb::Action) {
    let done = client.finished_action(&action.id, LONG).await;
    assert_eq!(done.state, pb::ActionState::Succeeded as i32, "{done:?}");
}

fn pid_of(agent: &AgentHandle, service_id: &str) -> Option<u32> {
    std::fs::read_to_string(
        agent
            .data_dir()
            .join("services")
            .join(service_id)
            .join("sc_serv.pid"),
    )
    .ok()
    .and_then(|t| t.trim().parse().ok())
}

async fn lifecycle(backend: Backend) {
    let cp = ControlPlaneHandle::start(backend).await;
    let admin = cp.admin().await;
    let (first, last) = free_port_range(10);
    let (node, token) = admin.create_node(&format!("sc-{first}"), first, last).await;
    let mut agent = AgentHandle::join_and_start(&cp, &token).await;
    admin
        .wait_node_ready(&node.id, pb::ServiceType::Shoutcast)
        .await;
    let reseller = admin
        .create_reseller(
            "Shout Radio",
            limits(None, None, None, None, None, None),
            &[pb::ServiceType::Shoutcast],
        )
        .await;
    let mut request = icecast_request(&reseller.primary_customer_id, "shout-fm", 10);
    request.media_service.as_mut().expect("service").r#type = pb::ServiceType::Shoutcast as i32;
    let service = admin
        .media()
        .create_media_service(request)
        .await
        .expect("create")
        .into_inner();
    let port = |purpose: &str| {
        service
            .ports
            .iter()
            .find(|p| p.purpose == purpose)
            .map(|p| p.port as u16)
            .expect("port")
    };
    let (base, legacy) = (port("http"), port("legacy-source"));
    assert_eq!(legacy, base + 1, "two consecutive ports");

    let started = admin.start_service(&service.id).await;
    succeeded(&admin, started).await;
    assert!(port_open(base) && port_open(legacy));
    let info = admin
        .media()
        .get_media_service_connection_info(pb::GetMediaServiceConnectionInfoRequest {
            id: service.id.clone(),
        })
        .await
        .expect("connection info")
        .into_inner();
    assert!(info.stream_url.ends_with("/stream"), "{info:?}");

    // A 1.x source with the service's password is taken, and the node reports it.
    let mut source = tokio::net::TcpStream::connect(("127.0.0.1", legacy))
        .await
        .expect("connect the source");
    source
        .write_all(format!("{}\r\n", info.source_password).as_bytes())
        .await
        .expect("password");
    let mut answer = [0u8; 32];
    let n = source.read(&mut answer).await.expect("answer");
    assert!(answer[..n].starts_with(b"OK2"));
    wait_for("the source in the service's statistics", LONG, || {
        let admin = admin.clone();
        let id = service.id.clone();
        async move {
            let stats = admin.service(&id).await.status?.stats?;
            (stats.sources == 1 && stats.mounts == vec!["/stream".to_owned()]).then_some(())
        }
    })
    .await;
    drop(source);

    let restarted = admin
        .media()
        .restart_media_service(pb::RestartMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("restart")
        .into_inner();
    succeeded(&admin, restarted).await;
    let pid = pid_of(&agent, &service.id).expect("a pid file");

    // A restarted agent adopts the running server: same process.
    agent.stop().await;
    agent.start();
    wait_for("the node back online", LONG, || {
        let admin = admin.clone();
        let id = node.id.clone();
        async move { (admin.node(&id).await.status == pb::NodeStatus::Online as i32).then_some(()) }
    })
    .await;
    wait_for("the service reported as adopted", LONG, || {
        let admin = admin.clone();
        let id = service.id.clone();
        async move {
            let status = admin.service(&id).await.status?;
            (status.state == pb::ObservedState::Running as i32
                && status.message.contains("adopted"))
            .then_some(())
        }
    })
    .await;
    assert_eq!(
        pid_of(&agent, &service.id),
        Some(pid),
        "re-adopted, not restarted"
    );

    let stopped = admin
        .media()
        .stop_media_service(pb::StopMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("stop")
        .into_inner();
    succeeded(&admin, stopped).await;
    assert!(!port_open(base));
    let started = admin.start_service(&service.id).await;
    succeeded(&admin, started).await;

    let deleted = admin
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: service.id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    succeeded(&admin, deleted.action.expect("action")).await;
    assert!(!port_open(base) && !port_open(legacy));
    assert!(!agent.data_dir().join("services").join(&service.id).exists());
    assert_eq!(
        admin.service(&service.id).await.state,
        pb::MediaServiceState::Deleted as i32
    );
    agent.shutdown().await;
}
