//! Node agents end to end: join and identity (mTLS), the action pipeline, and real Icecast
//! services (icecast2 + an ffmpeg source + a listener reading MP3), supervision, re-adoption,
//! liveness, deadlines and certificate renewal.

use std::time::Duration;

use castplane_agent::state::DataDir;
use castplane_agent::tls;
use castplane_control::ServiceConfig;
use castplane_control::service::DispatchConfig;
use castplane_integration_tests::client::icecast_request;
use castplane_integration_tests::fleet::{
    LONG, create, http_port, setup, start, succeeded, wait_online, wait_status,
};
use castplane_integration_tests::streaming::{
    Source, icecast_pid, liquidsoap_pid, looks_like_mp3, port_open, wait_for_stream,
};
use castplane_integration_tests::{AgentHandle, AgentProcess, Backend, Client, wait_for};
use castplane_proto::agent::v1 as apb;
use castplane_proto::agent::v1::agent_service_client::AgentServiceClient;
use castplane_proto::v1 as pb;
use tonic::Code;

/// Built with these tests from this tree (see `src/bin/castplane-test-agent.rs`).
const AGENT_BINARY: &str = env!("CARGO_BIN_EXE_castplane-test-agent");

async fn source_password(client: &Client, id: &str) -> String {
    client
        .media()
        .get_media_service_connection_info(pb::GetMediaServiceConnectionInfoRequest {
            id: id.to_owned(),
        })
        .await
        .expect("connection info")
        .into_inner()
        .source_password
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_tokens_are_single_use_expire_and_pin_the_control_plane() {
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 5).await;
    let agent = AgentHandle::join(&s.cp, &token).await.expect("first join");
    // Credentials are private to the agent.
    use std::os::unix::fs::PermissionsExt;
    let data = DataDir::new(agent.data_dir());
    for path in [data.key_path(), data.cert_path(), data.ca_path()] {
        assert_eq!(
            std::fs::metadata(&path).expect("file").permissions().mode() & 0o777,
            0o600,
            "{}",
            path.display()
        );
    }
    let replay = AgentHandle::join(&s.cp, &token)
        .await
        .err()
        .expect("replayed token refused");
    assert!(
        format!("{replay:#}").contains("invalid, expired or already used"),
        "{replay:#}"
    );

    // A token for a control plane with another CA: refused before the secret is sent.
    let fresh = s
        .admin
        .nodes()
        .create_node_join_token(pb::CreateNodeJoinTokenRequest {
            node_id: s.node.id.clone(),
            ttl_seconds: 0,
        })
        .await
        .expect("token")
        .into_inner();
    let (prefix, _) = fresh.token.rsplit_once('.').expect("token shape");
    let forged = format!("{prefix}.{}", "0".repeat(64));
    let pinned = AgentHandle::join(&s.cp, &forged)
        .await
        .err()
        .expect("wrong CA hash refused");
    assert!(
        format!("{pinned:#}").contains("does not match"),
        "{pinned:#}"
    );
    // …and the genuine token was not consumed by that attempt.
    AgentHandle::join(&s.cp, &fresh.token)
        .await
        .expect("genuine token still works");

    // An expired token is refused.
    let short = s
        .admin
        .nodes()
        .create_node_join_token(pb::CreateNodeJoinTokenRequest {
            node_id: s.node.id.clone(),
            ttl_seconds: 1,
        })
        .await
        .expect("token")
        .into_inner();
    let expiry = short.expire_time.expect("expiry");
    wait_for(
        "the token to expire",
        Duration::from_secs(10),
        || async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            (now.as_secs() as i64 > expiry.seconds + 1).then_some(())
        },
    )
    .await;
    let expired = AgentHandle::join(&s.cp, &short.token)
        .await
        .err()
        .expect("expired token refused");
    assert!(
        format!("{expired:#}").contains("invalid, expired or already used"),
        "{expired:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_nodes_own_certificate_opens_a_session() {
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 5).await;
    let agent = AgentHandle::join(&s.cp, &token).await.expect("join");
    let data = DataDir::new(agent.data_dir());
    let ca_pem = data.read(&data.ca_path()).expect("ca");

    // A client certificate from another CA is refused in the TLS handshake.
    let foreign_ca = {
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rcgen::Issuer::new(params, rcgen::KeyPair::generate().expect("key"))
    };
    let client_key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, s.node.id.clone());
    let client_cert = params.signed_by(&client_key, &foreign_ca).expect("sign");
    let config = tls::mtls_client_config(&ca_pem, &client_cert.pem(), &client_key.serialize_pem())
        .expect("config");
    let outcome = match tls::connect(&s.cp.agent_url(), config).await {
        Err(err) => Err(format!("{err:#}")),
        Ok(channel) => AgentServiceClient::new(channel)
            .renew_certificate(apb::RenewCertificateRequest {
                csr_pem: String::new(),
            })
            .await
            .map(|_| ())
            .map_err(|status| format!("{status}")),
    };
    let error = outcome.expect_err("a foreign certificate must not get through");
    assert!(
        !error.contains("does not belong to any node"),
        "refused by the handler, not the handshake: {error}"
    );

    // Without a certificate only Join is possible.
    let anonymous = tls::connect(
        &s.cp.agent_url(),
        tls::pinned_client_config(&ca_hash(&ca_pem)).expect("config"),
    )
    .await
    .expect("connect");
    let status = AgentServiceClient::new(anonymous)
        .renew_certificate(apb::RenewCertificateRequest {
            csr_pem: String::new(),
        })
        .await
        .expect_err("no client certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // The node's own certificate works.
    let own = tls::mtls_client_config(
        &ca_pem,
        &data.read(&data.cert_path()).expect("cert"),
        &data.read(&data.key_path()).expect("key"),
    )
    .expect("config");
    let channel = tls::connect(&s.cp.agent_url(), own).await.expect("connect");
    let (_, csr) = castplane_agent::join::new_key_and_csr("x").expect("csr");
    AgentServiceClient::new(channel)
        .renew_certificate(apb::RenewCertificateRequest { csr_pem: csr })
        .await
        .expect("own certificate accepted");
}

fn ca_hash(ca_pem: &str) -> String {
    use sha2::Digest;
    let der = castplane_control::pki::pem_to_der(ca_pem).expect("pem");
    hex::encode(sha2::Sha256::digest(der))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn icecast_service_lifecycle_end_to_end() {
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 3).await;
    let agent = AgentHandle::join_and_start(&s.cp, &token).await;
    let node = wait_online(&s.admin, &s.node.id).await;
    let icecast = node
        .capabilities
        .iter()
        .find(|c| c.r#type == pb::ServiceType::Icecast as i32)
        .expect("icecast capability");
    assert!(
        icecast.available && !icecast.version.is_empty(),
        "{icecast:?}"
    );
    let shoutcast = node
        .capabilities
        .iter()
        .find(|c| c.r#type == pb::ServiceType::Shoutcast as i32)
        .expect("shoutcast capability");
    assert!(!shoutcast.available, "{shoutcast:?}");

    let service = create(&s.admin, &s.owner, "live-fm").await;
    let port = http_port(&service);
    let started = succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;
    assert_eq!(
        started.transitions.len(),
        4,
        "queued, dispatched, running, succeeded: {:?}",
        started.transitions
    );
    assert!(port_open(port));

    // A broadcaster connects, a listener gets MP3.
    let _source = Source::icecast(port, &source_password(&s.admin, &service.id).await, "/live")
        .expect("ffmpeg");
    let audio = wait_for_stream(port, "/live", 64 * 1024, LONG)
        .await
        .expect("MP3 bytes from the service's port");
    assert!(looks_like_mp3(&audio), "not MP3");
    // Stats reach the API.
    wait_for("stats with the live mount", LONG, || {
        let admin = s.admin.clone();
        let id = service.id.clone();
        async move {
            let status = admin.service(&id).await.status?;
            let stats = status.stats?;
            (status.state == pb::ObservedState::Running as i32
                && stats.sources >= 1
                && stats.mounts.iter().any(|m| m == "/live"))
            .then_some(())
        }
    })
    .await;

    let stopped = s
        .admin
        .media()
        .stop_media_service(pb::StopMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("stop")
        .into_inner();
    succeeded(&s.admin, &stopped.id).await;
    assert!(!port_open(port), "port closed after stop");
    assert!(icecast_pid(agent.data_dir(), &service.id).is_none());

    let started = start(&s.admin, &service.id).await;
    succeeded(&s.admin, &started.id).await;
    let first_pid = icecast_pid(agent.data_dir(), &service.id).expect("running");
    let restarted = s
        .admin
        .media()
        .restart_media_service(pb::RestartMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("restart")
        .into_inner();
    succeeded(&s.admin, &restarted.id).await;
    let second_pid = icecast_pid(agent.data_dir(), &service.id).expect("running again");
    assert_ne!(first_pid, second_pid, "restart spawns a new process");
    assert!(port_open(port));

    let deleted = s
        .admin
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: service.id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    succeeded(&s.admin, &deleted.action.expect("action").id).await;
    assert!(
        !agent.data_dir().join("services").join(&service.id).exists(),
        "the service's directory is gone"
    );
    assert!(!port_open(port));
    let again = create(&s.admin, &s.owner, "next-fm").await;
    assert_eq!(
        http_port(&again),
        port,
        "the freed port is given to the next service"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn supervision_restarts_a_killed_icecast_and_reports_a_crash_loop() {
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 3).await;
    let mut agent = AgentHandle::join(&s.cp, &token).await.expect("join");
    agent.config.supervisor.crash_loop_exits = 3;
    agent.config.supervisor.crash_loop_window = Duration::from_secs(120);
    agent.start();
    wait_online(&s.admin, &s.node.id).await;
    let service = create(&s.admin, &s.owner, "fragile-fm").await;
    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;

    let mut pid = icecast_pid(agent.data_dir(), &service.id).expect("running");
    for kill in 1..=3 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9");
        if kill == 3 {
            break;
        }
        pid = wait_for("supervision to restart icecast2", LONG, || {
            let dir = agent.data_dir().to_owned();
            let id = service.id.clone();
            let old = pid;
            let admin = s.admin.clone();
            async move {
                let new = icecast_pid(&dir, &id).filter(|p| *p != old)?;
                let running = admin
                    .service(&id)
                    .await
                    .status
                    .is_some_and(|st| st.state == pb::ObservedState::Running as i32);
                running.then_some(new)
            }
        })
        .await;
    }
    let status = wait_for("the crash loop to be reported", LONG, || {
        let admin = s.admin.clone();
        let id = service.id.clone();
        async move {
            admin
                .service(&id)
                .await
                .status
                .filter(|st| st.state == pb::ObservedState::Failed as i32)
        }
    })
    .await;
    assert!(!status.message.is_empty(), "the failure carries a reason");
    assert!(
        icecast_pid(agent.data_dir(), &service.id).is_none(),
        "no more restarts"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_killed_mid_action_completes_it_exactly_once_without_restarting_services() {
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 4).await;
    let agent = AgentHandle::join(&s.cp, &token).await.expect("join");
    let data_dir = agent.data_dir().to_owned();
    let process =
        AgentProcess::spawn(AGENT_BINARY.as_ref(), &data_dir).expect("spawn the agent binary");
    wait_online(&s.admin, &s.node.id).await;
    let steady = create(&s.admin, &s.owner, "steady-fm").await;
    succeeded(&s.admin, &start(&s.admin, &steady.id).await.id).await;
    let steady_pid = icecast_pid(&data_dir, &steady.id).expect("steady running");

    let target = create(&s.admin, &s.owner, "target-fm").await;
    let action = start(&s.admin, &target.id).await;
    wait_for("the agent to start executing", LONG, || {
        let admin = s.admin.clone();
        let id = action.id.clone();
        async move {
            let state = admin.action(&id).await.state;
            (state == pb::ActionState::Running as i32 || state == pb::ActionState::Succeeded as i32)
                .then_some(())
        }
    })
    .await;
    process.kill();
    wait_status(&s.admin, &s.node.id, pb::NodeStatus::Unreachable, LONG).await;
    assert_eq!(
        icecast_pid(&data_dir, &steady.id),
        Some(steady_pid),
        "services outlive the agent"
    );

    let _process = AgentProcess::spawn(AGENT_BINARY.as_ref(), &data_dir).expect("respawn");
    let done = succeeded(&s.admin, &action.id).await;
    let successes = done
        .transitions
        .iter()
        .filter(|t| t.state == pb::ActionState::Succeeded as i32)
        .count();
    assert_eq!(successes, 1, "{:?}", done.transitions);
    assert!(port_open(http_port(&target)));
    wait_online(&s.admin, &s.node.id).await;
    assert_eq!(
        icecast_pid(&data_dir, &steady.id),
        Some(steady_pid),
        "the running service was re-adopted, not restarted"
    );
    // In the agent's action log: started at most once, and one result — it ran once.
    let log = std::fs::read_to_string(data_dir.join("actions.jsonl")).expect("action log");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&action.id)).collect();
    let results = lines.iter().filter(|l| l.contains("\"succeeded\"")).count();
    let starts = lines.iter().filter(|l| l.contains("\"started\"")).count();
    assert_eq!(
        (results, starts),
        (1, 1),
        "executed and recorded once: {lines:?}"
    );
    // What the agent binary writes is its own: the key, certificates, identity and action log.
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [
            "node.key",
            "node.crt",
            "ca.crt",
            "node.json",
            "actions.jsonl",
        ] {
            let mode = std::fs::metadata(data_dir.join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{file} is {mode:o}");
        }
    }
    drop(_process);
    agent.stop_services().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn actions_queued_across_a_control_plane_restart_complete() {
    let (mut s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 3).await;
    let agent = AgentHandle::join_and_start(&s.cp, &token).await;
    wait_online(&s.admin, &s.node.id).await;
    let service = create(&s.admin, &s.owner, "restart-fm").await;
    let action = start(&s.admin, &service.id).await;
    s.cp.stop().await;
    s.cp.restart().await;
    let admin = s.cp.admin().await;
    succeeded(&admin, &action.id).await;
    assert!(port_open(http_port(&service)));
    wait_online(&admin, &s.node.id).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn liveness_and_deadlines() {
    let config = ServiceConfig {
        dispatch: DispatchConfig {
            heartbeat_timeout: Duration::from_secs(3),
            action_deadline: Duration::from_secs(3),
            ..Default::default()
        },
        ..Default::default()
    };
    let (s, token) = setup(Backend::Sqlite, config, 3).await;
    let mut agent = AgentHandle::join_and_start(&s.cp, &token).await;
    wait_online(&s.admin, &s.node.id).await;

    // A closed stream marks the node unreachable at once (well within the heartbeat timeout).
    agent.stop().await;
    wait_status(
        &s.admin,
        &s.node.id,
        pb::NodeStatus::Unreachable,
        Duration::from_secs(2),
    )
    .await;

    // An action whose node stays unreachable past its deadline fails, saying so.
    let service = create(&s.admin, &s.owner, "lonely-fm").await;
    let action = s
        .admin
        .finished_action(&start(&s.admin, &service.id).await.id, LONG)
        .await;
    assert_eq!(action.state, pb::ActionState::Failed as i32);
    assert!(
        action.error.starts_with("node unreachable"),
        "{}",
        action.error
    );

    // A session that stops heart-beating is marked unreachable after the timeout.
    let data = DataDir::new(agent.data_dir());
    let config = tls::mtls_client_config(
        &data.read(&data.ca_path()).expect("ca"),
        &data.read(&data.cert_path()).expect("cert"),
        &data.read(&data.key_path()).expect("key"),
    )
    .expect("config");
    let channel = tls::connect(&s.cp.agent_url(), config)
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(apb::AgentMessage {
        body: Some(apb::agent_message::Body::Hello(apb::Hello::default())),
    })
    .await
    .expect("hello");
    let _inbound = AgentServiceClient::new(channel)
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session");
    wait_status(&s.admin, &s.node.id, pb::NodeStatus::Online, LONG).await;
    wait_status(
        &s.admin,
        &s.node.id,
        pb::NodeStatus::Unreachable,
        Duration::from_secs(15),
    )
    .await;
    drop(tx);
    agent.stop_services().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_are_renewed_without_disturbing_services() {
    let config = ServiceConfig {
        agent_certificate_validity: Duration::from_secs(400),
        ..Default::default()
    };
    let (s, token) = setup(Backend::Sqlite, config, 3).await;
    let mut agent = AgentHandle::join(&s.cp, &token).await.expect("join");
    // Renew once less than 99% of the (backdated) lifetime remains: right away, and again
    // whenever a check finds the new certificate due.
    agent.config.renew_when_remaining = 0.99;
    agent.config.renewal_check_interval = Duration::from_secs(1);
    let before = s
        .admin
        .node(&s.node.id)
        .await
        .certificate_expire_time
        .expect("expiry");
    let cert_before =
        std::fs::read_to_string(DataDir::new(agent.data_dir()).cert_path()).expect("cert");
    agent.start();
    wait_online(&s.admin, &s.node.id).await;
    let service = create(&s.admin, &s.owner, "renew-fm").await;
    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;
    let pid = icecast_pid(agent.data_dir(), &service.id).expect("running");
    let renewed = wait_for("a renewed certificate", LONG, || {
        let admin = s.admin.clone();
        let id = s.node.id.clone();
        async move {
            admin
                .node(&id)
                .await
                .certificate_expire_time
                .filter(|t| t.seconds > before.seconds)
        }
    })
    .await;
    assert!(renewed.seconds > before.seconds);
    assert_ne!(
        std::fs::read_to_string(DataDir::new(agent.data_dir()).cert_path()).expect("cert"),
        cert_before
    );
    wait_online(&s.admin, &s.node.id).await;
    // Still controllable with the new certificate, and the service was never touched.
    let stop = s
        .admin
        .media()
        .stop_media_service(pb::StopMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("stop")
        .into_inner();
    assert_eq!(icecast_pid(agent.data_dir(), &service.id), Some(pid));
    succeeded(&s.admin, &stop.id).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn video_service_ingests_rtmp_and_serves_hls_then_deletion_destroys_it() {
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 4).await;
    let agent = AgentHandle::join_and_start(&s.cp, &token).await;
    let node = wait_online(&s.admin, &s.node.id).await;
    assert!(
        node.capabilities
            .iter()
            .any(|c| c.r#type == pb::ServiceType::Video as i32 && c.available),
        "{node:?}"
    );
    let mut request = icecast_request(&s.owner, "live-tv", 10);
    request.media_service.as_mut().expect("service").r#type = pb::ServiceType::Video as i32;
    let service = s
        .admin
        .media()
        .create_media_service(request)
        .await
        .expect("create")
        .into_inner();
    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;

    // A broadcaster pushes to the ingest URL the API hands out; viewers get HLS.
    let info = s
        .admin
        .media()
        .get_media_service_connection_info(pb::GetMediaServiceConnectionInfoRequest {
            id: service.id.clone(),
        })
        .await
        .expect("connection info")
        .into_inner();
    assert!(
        info.ingest_url.starts_with("rtmp://127.0.0.1:"),
        "{}",
        info.ingest_url
    );
    let _source = Source::rtmp(&info.ingest_url).expect("ffmpeg");
    let (http, path) = {
        let rest = info
            .stream_url
            .strip_prefix("http://127.0.0.1:")
            .expect("stream URL");
        let (port, path) = rest.split_once('/').expect("path");
        (port.parse::<u16>().expect("port"), format!("/{path}"))
    };
    let playlist = wait_for_stream(http, &path, 7, LONG)
        .await
        .map(|body| String::from_utf8_lossy(&body).into_owned())
        .expect("an HLS playlist");
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");

    // Deleting a video service needs the confirmation, then destroys its files.
    let refused = s
        .admin
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: service.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("unconfirmed");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let dir = agent.data_dir().join("services").join(&service.id);
    assert!(
        dir.join("hls").exists(),
        "HLS output exists before the delete"
    );
    let deleted = s
        .admin
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: service.id.clone(),
            confirm_permanent_deletion: true,
            validate_only: false,
        })
        .await
        .expect("delete")
        .into_inner();
    succeeded(&s.admin, &deleted.action.expect("action").id).await;
    assert!(!dir.exists(), "HLS output and uploaded videos are gone");
    assert!(!port_open(http));
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn autodj_follows_the_owner_s_media_library_across_an_ownership_change() {
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 2).await;
    let agent = AgentHandle::join_and_start(&s.cp, &token).await;
    let node = wait_online(&s.admin, &s.node.id).await;
    assert!(
        node.capabilities
            .iter()
            .any(|c| c.r#type == pb::ServiceType::Icecast as i32 && c.autodj_available)
    );
    let reseller_id = s.admin.customer(&s.owner).await.reseller_id;
    let newcomer = s.admin.create_customer(&reseller_id, "New Owner").await;

    let mut request = icecast_request(&s.owner, "auto-fm", 10);
    request.media_service.as_mut().expect("service").autodj = true;
    let service = s
        .admin
        .media()
        .create_media_service(request)
        .await
        .expect("create")
        .into_inner();
    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;
    let media = agent.data_dir().join("media");
    let script = agent
        .data_dir()
        .join("services")
        .join(&service.id)
        .join("autodj.liq");
    let first_dj = liquidsoap_pid(agent.data_dir(), &service.id).expect("AutoDJ running");
    let icecast = icecast_pid(agent.data_dir(), &service.id).expect("icecast running");
    assert!(
        std::fs::read_to_string(&script)
            .expect("script")
            .contains(&format!("media/{}", s.owner))
    );

    s.admin
        .media()
        .change_media_service_owner(pb::ChangeMediaServiceOwnerRequest {
            id: service.id.clone(),
            new_customer_id: newcomer.id.clone(),
        })
        .await
        .expect("change owner");
    let new_library = format!("media/{}", newcomer.id);
    wait_for("AutoDJ to switch to the new owner's library", LONG, || {
        let dir = agent.data_dir().to_owned();
        let id = service.id.clone();
        let script = script.clone();
        let new_library = new_library.clone();
        async move {
            let pid = liquidsoap_pid(&dir, &id).filter(|p| *p != first_dj)?;
            std::fs::read_to_string(&script)
                .ok()?
                .contains(&new_library)
                .then_some(pid)
        }
    })
    .await;
    assert_eq!(
        icecast_pid(agent.data_dir(), &service.id),
        Some(icecast),
        "icecast2 kept running"
    );
    // Tracks belong to customers: both libraries remain.
    assert!(media.join(&s.owner).is_dir() && media.join(&newcomer.id).is_dir());

    let deleted = s
        .admin
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: service.id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    succeeded(&s.admin, &deleted.action.expect("action").id).await;
    assert!(liquidsoap_pid(agent.data_dir(), &service.id).is_none());
    assert!(
        media.join(&newcomer.id).is_dir(),
        "deleting an audio service keeps the customer's media"
    );
    agent.shutdown().await;
}
