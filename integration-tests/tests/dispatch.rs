//! The dispatcher's promises under faults, through the public API with real agents and real
//! icecast2: what the API reports is what happened on the node.
//!
//! - An action sent to an agent that froze (SIGSTOP) past its deadline fails, and the agent,
//!   once thawed, refuses it: the service never changes, and its intent is put back.
//! - An action never delivered changes nothing when its node returns.
//! - An action running when its node went silent fails saying it may still complete; when it
//!   does, its late result is recorded.
//! - An agent killed after executing an action but before logging it, or after logging it but
//!   before executing it, completes it exactly once (no second restart).
//! - The deadline counts only time the node is unreachable.
//! - A session replaced by a newer one (on another replica) can neither receive actions nor
//!   record results; agents fail over to another replica when one is killed.

use std::time::{Duration, Instant};

use castplane_agent::state::DataDir;
use castplane_agent::tls;
use castplane_control::ServiceConfig;
use castplane_control::service::DispatchConfig;
use castplane_integration_tests::fleet::{
    LONG, Setup, create, http_port, reaches, restart, setup, start, stop, succeeded, wait_online,
    wait_status,
};
use castplane_integration_tests::streaming::{icecast_pid, port_open};
use castplane_integration_tests::{AgentHandle, AgentProcess, Backend, wait_for};
use castplane_proto::agent::v1 as apb;
use castplane_proto::agent::v1::agent_service_client::AgentServiceClient;
use castplane_proto::v1 as pb;

/// Built with these tests from this tree (see `src/bin/castplane-test-agent.rs`).
const AGENT_BINARY: &str = env!("CARGO_BIN_EXE_castplane-test-agent");

/// Deadlines short enough for a test: silent agents are cut off after 2 s, and actions fail
/// after 3 s of their node being unreachable.
fn short_deadlines() -> ServiceConfig {
    ServiceConfig {
        dispatch: DispatchConfig {
            heartbeat_timeout: Duration::from_secs(2),
            action_deadline: Duration::from_secs(3),
            clock_skew: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A joined node whose agent runs as its own process (so it can be frozen or crash), with one
/// running icecast service.
async fn running_service(
    config: ServiceConfig,
) -> (Setup, AgentHandle, AgentProcess, pb::MediaService, u32) {
    let (s, token) = setup(Backend::Sqlite, config, 4).await;
    let agent = AgentHandle::join(&s.cp, &token).await.expect("join");
    let process = AgentProcess::spawn(AGENT_BINARY.as_ref(), agent.data_dir())
        .expect("spawn the agent binary");
    wait_online(&s.admin, &s.node.id).await;
    let service = create(&s.admin, &s.owner, "steady-fm").await;
    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;
    let pid = icecast_pid(agent.data_dir(), &service.id).expect("icecast running");
    (s, agent, process, service, pid)
}

async fn desired_state(s: &Setup, service_id: &str) -> i32 {
    s.admin.service(service_id).await.desired_state
}

/// Waits until the node has applied the service's latest generation.
async fn applied(s: &Setup, service_id: &str) -> pb::MediaService {
    wait_for("the node to apply the latest change", LONG, || {
        let admin = s.admin.clone();
        let id = service_id.to_owned();
        async move {
            let service = admin.service(&id).await;
            (service.observed_generation == service.generation).then_some(service)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_action_sent_to_a_frozen_agent_fails_at_its_deadline_and_never_runs() {
    let (s, agent, process, service, pid) = running_service(short_deadlines()).await;

    process.freeze();
    let action = stop(&s.admin, &service.id).await;
    // Sent: it sits in the frozen agent's socket.
    reaches(&s.admin, &action.id, pb::ActionState::Dispatched).await;
    let failed = s.admin.finished_action(&action.id, LONG).await;
    assert_eq!(failed.state, pb::ActionState::Failed as i32, "{failed:?}");
    assert!(
        failed.error.contains("never confirmed") && failed.error.contains("not taken effect"),
        "{}",
        failed.error
    );
    // Its intent is put back: the service is to keep running.
    assert_eq!(
        desired_state(&s, &service.id).await,
        pb::DesiredState::Running as i32
    );

    process.thaw();
    wait_online(&s.admin, &s.node.id).await;
    // The agent found the action past its deadline and refused it; the refusal is recorded
    // beside the failure.
    let late = wait_for("the agent's late answer", LONG, || {
        let admin = s.admin.clone();
        let id = action.id.clone();
        async move {
            let a = admin.action(&id).await;
            (a.late_state != pb::ActionState::Unspecified as i32).then_some(a)
        }
    })
    .await;
    assert_eq!(late.state, pb::ActionState::Failed as i32);
    assert_eq!(late.late_state, pb::ActionState::Failed as i32);
    assert!(
        late.late_message.contains("after its deadline"),
        "{}",
        late.late_message
    );
    applied(&s, &service.id).await;
    assert_eq!(
        icecast_pid(agent.data_dir(), &service.id),
        Some(pid),
        "the stop never ran: the same server still runs"
    );
    assert!(port_open(http_port(&service)));
    drop(process);
    agent.stop_services().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_action_never_delivered_changes_nothing_when_its_node_returns() {
    let (s, token) = setup(Backend::Sqlite, short_deadlines(), 4).await;
    let mut agent = AgentHandle::join_and_start(&s.cp, &token).await;
    wait_online(&s.admin, &s.node.id).await;
    let service = create(&s.admin, &s.owner, "offline-fm").await;
    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;
    let pid = icecast_pid(agent.data_dir(), &service.id).expect("running");

    agent.stop().await;
    wait_status(&s.admin, &s.node.id, pb::NodeStatus::Unreachable, LONG).await;
    let action = stop(&s.admin, &service.id).await;
    let failed = s.admin.finished_action(&action.id, LONG).await;
    assert_eq!(failed.state, pb::ActionState::Failed as i32);
    assert!(
        failed.error.contains("never sent") && failed.error.contains("will not be"),
        "{}",
        failed.error
    );
    assert!(
        failed
            .transitions
            .iter()
            .all(|t| t.state != pb::ActionState::Dispatched as i32),
        "it was never dispatched: {:?}",
        failed.transitions
    );

    agent.start();
    wait_online(&s.admin, &s.node.id).await;
    let now = applied(&s, &service.id).await;
    assert_eq!(now.desired_state, pb::DesiredState::Running as i32);
    assert_eq!(
        icecast_pid(agent.data_dir(), &service.id),
        Some(pid),
        "the failed stop did not take effect when the node returned"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_action_past_its_deadline_fails_and_its_late_result_is_recorded() {
    let (s, agent, process, service, _pid) = running_service(short_deadlines()).await;

    // icecast2 takes about 3 s to stop: the agent is frozen while the stop runs.
    let action = stop(&s.admin, &service.id).await;
    reaches(&s.admin, &action.id, pb::ActionState::Running).await;
    process.freeze();
    let failed = s.admin.finished_action(&action.id, LONG).await;
    assert_eq!(failed.state, pb::ActionState::Failed as i32);
    assert!(
        failed.error.contains("while the action was running")
            && failed.error.contains("late result"),
        "{}",
        failed.error
    );
    // It may still take effect, so its intent stands.
    assert_eq!(
        desired_state(&s, &service.id).await,
        pb::DesiredState::Stopped as i32
    );

    process.thaw();
    let late = wait_for("the late result", LONG, || {
        let admin = s.admin.clone();
        let id = action.id.clone();
        async move {
            let a = admin.action(&id).await;
            (a.late_state != pb::ActionState::Unspecified as i32).then_some(a)
        }
    })
    .await;
    assert_eq!(late.state, pb::ActionState::Failed as i32, "still failed");
    assert_eq!(
        late.late_state,
        pb::ActionState::Succeeded as i32,
        "{late:?}"
    );
    assert_eq!(icecast_pid(agent.data_dir(), &service.id), None);
    drop(process);
    agent.stop_services().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_crash_around_a_restart_restarts_the_service_exactly_once() {
    let (s, agent, process, service, first_pid) = running_service(ServiceConfig::default()).await;
    process.kill();
    let data_dir = agent.data_dir().to_owned();

    // Killed after the restart ran, before its result was logged: the next agent finds the
    // server already replaced and does not replace it again.
    let crashing = AgentProcess::spawn_with(
        AGENT_BINARY.as_ref(),
        &data_dir,
        &[("CASTPLANE_AGENT_FAILPOINTS", "action-after-execute")],
    )
    .expect("spawn");
    let action = restart(&s.admin, &service.id).await;
    crashing.exited(LONG).await;
    let second_pid = icecast_pid(&data_dir, &service.id).expect("restarted server");
    assert_ne!(second_pid, first_pid, "the restart ran before the crash");
    let process = AgentProcess::spawn(AGENT_BINARY.as_ref(), &data_dir).expect("respawn");
    let done = succeeded(&s.admin, &action.id).await;
    assert_eq!(
        icecast_pid(&data_dir, &service.id),
        Some(second_pid),
        "no second restart"
    );
    let successes = done
        .transitions
        .iter()
        .filter(|t| t.state == pb::ActionState::Succeeded as i32)
        .count();
    assert_eq!(successes, 1, "{:?}", done.transitions);
    process.kill();

    // Killed after the restart was logged as started, before it ran: the next agent runs it.
    let crashing = AgentProcess::spawn_with(
        AGENT_BINARY.as_ref(),
        &data_dir,
        &[("CASTPLANE_AGENT_FAILPOINTS", "action-before-execute")],
    )
    .expect("spawn");
    let action = restart(&s.admin, &service.id).await;
    crashing.exited(LONG).await;
    assert_eq!(
        icecast_pid(&data_dir, &service.id),
        Some(second_pid),
        "nothing ran before the crash"
    );
    let process = AgentProcess::spawn(AGENT_BINARY.as_ref(), &data_dir).expect("respawn");
    succeeded(&s.admin, &action.id).await;
    let third_pid = icecast_pid(&data_dir, &service.id).expect("restarted server");
    assert_ne!(third_pid, second_pid, "the resumed restart ran");
    let log = std::fs::read_to_string(data_dir.join("actions.jsonl")).expect("action log");
    let results = log
        .lines()
        .filter(|l| l.contains(&action.id) && l.contains("\"succeeded\""))
        .count();
    assert_eq!(results, 1, "one result logged");
    drop(process);
    agent.stop_services().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deadline_counts_only_time_the_node_is_unreachable() {
    const DEADLINE: Duration = Duration::from_secs(8);
    let config = ServiceConfig {
        dispatch: DispatchConfig {
            heartbeat_timeout: Duration::from_secs(2),
            action_deadline: DEADLINE,
            clock_skew: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    };
    let (s, token) = setup(Backend::Sqlite, config, 4).await;
    let mut agent = AgentHandle::join_and_start(&s.cp, &token).await;
    wait_online(&s.admin, &s.node.id).await;
    let service = create(&s.admin, &s.owner, "queue-fm").await;
    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;

    // Each restart waits 1.5–3 s for icecast2 to stop and start again, so the stop queued
    // behind eight of them waits longer than the deadline while its node is connected (four
    // were measured to take as little as 7 s).
    let mut restarts = Vec::new();
    for _ in 0..8 {
        restarts.push(restart(&s.admin, &service.id).await);
    }
    let last = stop(&s.admin, &service.id).await;
    succeeded(&s.admin, &restarts[1].id).await;
    // A short disconnect (the agent lets the restart under way finish first) while the stop
    // still waits.
    agent.stop().await;
    wait_status(&s.admin, &s.node.id, pb::NodeStatus::Unreachable, LONG).await;
    agent.start();
    for action in &restarts {
        succeeded(&s.admin, &action.id).await;
    }
    let done = succeeded(&s.admin, &last.id).await;
    let queued = done.create_time.expect("created");
    let dispatched = done
        .transitions
        .iter()
        .find(|t| t.state == pb::ActionState::Dispatched as i32)
        .and_then(|t| t.time)
        .expect("dispatched");
    let waited = Duration::from_secs((dispatched.seconds - queued.seconds).max(0) as u64);
    assert!(
        waited >= DEADLINE,
        "the stop waited {waited:?}, longer than the {DEADLINE:?} deadline, and still ran"
    );
    agent.shutdown().await;
}

/// A raw session with the node's certificate, as an agent would open it, reporting an icecast
/// capability.
async fn raw_session(
    data_dir: &std::path::Path,
    url: &str,
) -> (
    tokio::sync::mpsc::UnboundedSender<apb::AgentMessage>,
    tonic::Streaming<apb::ControlMessage>,
) {
    let data = DataDir::new(data_dir);
    let config = tls::mtls_client_config(
        &data.read(&data.ca_path()).expect("ca"),
        &data.read(&data.cert_path()).expect("cert"),
        &data.read(&data.key_path()).expect("key"),
    )
    .expect("config");
    let channel = tls::connect(url, config).await.expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(apb::AgentMessage {
        body: Some(apb::agent_message::Body::Hello(apb::Hello {
            agent_version: "raw".into(),
            capabilities: vec![pb::PluginCapability {
                r#type: pb::ServiceType::Icecast as i32,
                available: true,
                version: "icecast2 2.4.4".into(),
                detail: String::new(),
                autodj_available: false,
            }],
            services: vec![],
        })),
    })
    .expect("hello");
    let inbound = AgentServiceClient::new(channel)
        .session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    (tx, inbound)
}

fn report(action_id: &str, state: pb::ActionState, message: &str) -> apb::AgentMessage {
    apb::AgentMessage {
        body: Some(apb::agent_message::Body::ActionUpdate(apb::ActionUpdate {
            action_id: action_id.to_owned(),
            state: state as i32,
            message: message.to_owned(),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_session_can_neither_receive_actions_nor_record_results() {
    let (s, token) = setup(Backend::Postgres, ServiceConfig::default(), 4).await;
    let replica = s.cp.start_replica().await;
    let agent = AgentHandle::join(&s.cp, &token).await.expect("join");

    let (stale_tx, mut stale) = raw_session(agent.data_dir(), &s.cp.agent_url()).await;
    wait_online(&s.admin, &s.node.id).await;
    let service = create(&s.admin, &s.owner, "fenced-fm").await;
    // The node's agent reconnects to the other replica; the first session lingers.
    let (current_tx, mut current) = raw_session(agent.data_dir(), &replica.agent_url()).await;

    let action = start(&s.admin, &service.id).await;
    let sent = loop {
        let message = current
            .message()
            .await
            .expect("current stream")
            .expect("a message");
        if let Some(apb::control_message::Body::ExecuteAction(execute)) = message.body {
            break execute;
        }
    };
    assert_eq!(sent.action_id, action.id);
    // The stale session tries to fail it; its write is fenced off and it is closed.
    let _ = stale_tx.send(report(
        &action.id,
        pb::ActionState::Failed,
        "from a stale session",
    ));
    let mut stale_got_actions = 0;
    while let Ok(Some(message)) = stale.message().await {
        if matches!(
            message.body,
            Some(apb::control_message::Body::ExecuteAction(_))
        ) {
            stale_got_actions += 1;
        }
    }
    assert_eq!(stale_got_actions, 0, "the stale session was sent an action");

    current_tx
        .send(report(&action.id, pb::ActionState::Running, ""))
        .expect("send");
    current_tx
        .send(report(&action.id, pb::ActionState::Succeeded, ""))
        .expect("send");
    let done = succeeded(&s.admin, &action.id).await;
    assert!(done.error.is_empty(), "{}", done.error);
    assert!(
        done.transitions
            .iter()
            .all(|t| t.state != pb::ActionState::Failed as i32),
        "{:?}",
        done.transitions
    );
    drop(current_tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_fail_over_when_a_replica_is_killed() {
    let (s, token) = setup(Backend::Postgres, ServiceConfig::default(), 4).await;
    let mut doomed = s.cp.spawn_replica_process().await;
    let mut agent = AgentHandle::join(&s.cp, &token).await.expect("join");
    // The agent knows both replicas and is connected to the one about to die.
    agent.config.control_plane_urls = vec![doomed.agent_url(), s.cp.agent_url()];
    agent.start();
    wait_online(&s.admin, &s.node.id).await;
    let service = create(&s.admin, &s.owner, "failover-fm").await;
    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;
    let pid = icecast_pid(agent.data_dir(), &service.id).expect("running");

    let killed = Instant::now();
    doomed.kill();
    let action = stop(&s.admin, &service.id).await;
    succeeded(&s.admin, &action.id).await;
    println!(
        "stop queued right after the kill finished {:?} later",
        killed.elapsed()
    );
    wait_online(&s.admin, &s.node.id).await;
    assert_eq!(icecast_pid(agent.data_dir(), &service.id), None);
    let again = start(&s.admin, &service.id).await;
    succeeded(&s.admin, &again.id).await;
    assert_ne!(icecast_pid(agent.data_dir(), &service.id), Some(pid));
    agent.shutdown().await;
}
