//! One trace per action: `castctl service start NAME --wait` (the real binary) through two
//! real control-plane replicas on one PostgreSQL to a real agent starting a real icecast2, all
//! three exporting to an OTLP receiver in this process. The action is queued on one replica
//! and dispatched by the other (the one the agent is connected to), and a second action is
//! queued while the node is offline: both still end up in the trace castctl started.
//!
//! The binaries run as processes because each installs its own global exporter; castctl and
//! castplane-control come from the workspace build (`cargo build` builds them, as `cargo
//! nextest run --workspace` does).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use castplane_integration_tests::agent::workspace_binary;
use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::otlp::{ReceivedSpan, TraceReceiver};
use castplane_integration_tests::{
    AgentProcess, Backend, ControlPlaneHandle, free_port_range, wait_for,
};
use castplane_proto::v1 as pb;

const AGENT_BINARY: &str = env!("CARGO_BIN_EXE_castplane-test-agent");

/// The spans of one trace, by id.
struct Trace {
    spans: HashMap<String, ReceivedSpan>,
}

impl Trace {
    fn of(all: &[ReceivedSpan], trace_id: &str) -> Trace {
        Trace {
            spans: all
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .map(|s| (s.span_id.clone(), s.clone()))
                .collect(),
        }
    }

    fn find(&self, service: &str, name: &str) -> Vec<&ReceivedSpan> {
        self.spans
            .values()
            .filter(|s| s.service == service && s.name == name)
            .collect()
    }

    fn one(&self, service: &str, name: &str) -> Option<&ReceivedSpan> {
        self.find(service, name).into_iter().next()
    }

    /// Whether `ancestor` is on `span`'s chain of parents, every link received.
    fn descends_from(&self, span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
        let mut current = span;
        for _ in 0..64 {
            if current.parent_span_id == ancestor.span_id {
                return true;
            }
            match self.spans.get(&current.parent_span_id) {
                Some(parent) => current = parent,
                None => return false,
            }
        }
        false
    }

    fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .spans
            .values()
            .map(|s| {
                format!(
                    "{} {} [{}] {} <- {}",
                    s.service, s.instance, s.name, s.span_id, s.parent_span_id
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }
}

/// The castctl root span of `command` (e.g. `service start`), once received.
fn castctl_root<'a>(spans: &'a [ReceivedSpan], command: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| {
        s.service == "castctl"
            && s.parent_span_id.is_empty()
            && s.attribute("command") == Some(command)
    })
}

/// The chain the trace must hold, as far as it is received: castctl → the control plane's
/// RPC span → the queued action → its dispatch (replica `dispatcher`) → the agent's execution
/// → the supervisor's steps `agent_steps`.
fn complete_chain(
    trace: &Trace,
    root: &ReceivedSpan,
    rpc_method: &str,
    dispatcher: &str,
    agent_steps: &[&str],
) -> Result<(), String> {
    let rpc = trace
        .spans
        .values()
        .find(|s| s.service == "castplane-control" && s.attribute("rpc.method") == Some(rpc_method))
        .ok_or_else(|| format!("no {rpc_method} rpc span"))?;
    if rpc.parent_span_id != root.span_id {
        return Err(format!("the {rpc_method} rpc span is not castctl's child"));
    }
    let queued = trace
        .one("castplane-control", "queue action")
        .ok_or("no queue action span")?;
    if !trace.descends_from(queued, rpc) {
        return Err("queue action is not under the rpc span".into());
    }
    let dispatch = trace
        .find("castplane-control", "dispatch action")
        .into_iter()
        .find(|s| s.instance == dispatcher)
        .ok_or_else(|| format!("no dispatch action span from {dispatcher}"))?;
    if !trace.descends_from(dispatch, queued) {
        return Err("dispatch action is not under queue action".into());
    }
    let execute = trace
        .one("castplane-agent", "execute action")
        .ok_or("no agent execute action span")?;
    if execute.parent_span_id != dispatch.span_id {
        return Err("the agent's execute action is not the dispatch's child".into());
    }
    for step in agent_steps {
        let found = trace
            .find("castplane-agent", step)
            .into_iter()
            .any(|s| trace.descends_from(s, execute));
        if !found {
            return Err(format!("no agent {step} span under execute action"));
        }
    }
    let transitions = trace.find("castplane-control", "action succeeded");
    if !transitions.iter().any(|s| trace.descends_from(s, queued)) {
        return Err("no succeeded transition under queue action".into());
    }
    Ok(())
}

async fn castctl(
    endpoint: &str,
    ca_cert: &Path,
    token: &str,
    home: &Path,
    env: &[(String, String)],
    args: &[&str],
) -> std::process::Output {
    let binary = workspace_binary("castctl");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace's binaries (cargo build)",
        binary.display()
    );
    tokio::process::Command::new(binary)
        .arg("--endpoint")
        .arg(endpoint)
        .arg("--ca-cert")
        .arg(ca_cert)
        .args(args)
        .env("CASTPLANE_TOKEN", token)
        .env("HOME", home)
        .env_remove("CASTPLANE_ENDPOINT")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run castctl")
}

async fn wait_for_trace(
    receiver: &TraceReceiver,
    command: &str,
    rpc_method: &str,
    dispatcher: &str,
    agent_steps: &[&str],
) {
    let mut last = String::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let spans = receiver.spans();
            if let Some(root) = castctl_root(&spans, command) {
                let trace = Trace::of(&spans, &root.trace_id);
                match complete_chain(&trace, root, rpc_method, dispatcher, agent_steps) {
                    Ok(()) => return trace,
                    Err(why) => last = format!("{why}; received:\n{}", trace.describe()),
                }
            } else {
                last = format!("no castctl root span for {command:?} yet");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let trace = found.unwrap_or_else(|_| panic!("the trace of `castctl {command}`: {last}"));
    // Every span of the three binaries under one trace id.
    for service in ["castctl", "castplane-control", "castplane-agent"] {
        assert!(
            trace.spans.values().any(|s| s.service == service),
            "{service} in the trace:\n{}",
            trace.describe()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_from_castctl_through_two_replicas_to_the_agent() {
    let receiver = TraceReceiver::start().await;
    // The in-process control plane bootstraps the database; the replicas that export run as
    // processes on it: castctl talks to A, the agent to B.
    let cp = ControlPlaneHandle::start(Backend::Postgres).await;
    let replica_a = cp
        .spawn_replica_process_with(&receiver.env("replica-a"))
        .await;
    let replica_b = cp
        .spawn_replica_process_with(&receiver.env("replica-b"))
        .await;
    let admin = cp.admin().await;

    let (first, last) = free_port_range(3);
    let (node, join_token) = admin.create_node("traced-host", first, last).await;
    let agent_dir = tempfile::Builder::new()
        .prefix("castplane-agent-")
        .tempdir()
        .expect("temp dir");
    let data_dir = agent_dir.path().join("agent");
    castplane_agent::join(
        &[replica_b.agent_url()],
        &join_token,
        &castplane_agent::state::DataDir::new(&data_dir),
    )
    .await
    .expect("the agent joins through replica B");
    let agent_env: Vec<(String, String)> = receiver.env("agent");
    let agent_env_refs: Vec<(&str, &str)> = agent_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let agent = AgentProcess::spawn_with(Path::new(AGENT_BINARY), &data_dir, &agent_env_refs)
        .expect("spawn the agent");
    admin
        .node_that_runs(&node.id, pb::ServiceType::Icecast, Duration::from_secs(60))
        .await;

    let reseller = admin
        .create_reseller(
            "Traced Radio",
            limits(None, None, None, None, None, None),
            &[pb::ServiceType::Icecast],
        )
        .await;
    admin
        .media()
        .create_media_service(icecast_request(
            &reseller.primary_customer_id,
            "traced-fm",
            10,
        ))
        .await
        .expect("create");

    let home = tempfile::tempdir().expect("home");
    let ca_cert = home.path().join("ca.pem");
    std::fs::write(&ca_cert, &cp.public_ca_pem).expect("write the CA");
    let token = cp.admin_token();
    let castctl_env = receiver.env("castctl");

    // Started with --wait through replica A; B, which holds the node's session, dispatches.
    let started = castctl(
        &replica_a.public_url(),
        &ca_cert,
        &token,
        home.path(),
        &castctl_env,
        &["service", "start", "traced-fm", "--wait"],
    )
    .await;
    assert!(
        started.status.success(),
        "castctl service start: {}{}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr)
    );
    wait_for_trace(
        &receiver,
        "service start",
        "StartMediaService",
        "replica-b",
        &[
            "start",
            "launch",
            "prepare",
            "render",
            "spawn",
            "readiness probe",
        ],
    )
    .await;

    // Queued while the node is offline: the stop waits for the agent, then lands in the trace
    // of the castctl call that queued it.
    agent.kill();
    wait_for("the node offline", Duration::from_secs(60), || {
        let admin = admin.clone();
        let id = node.id.clone();
        async move { (admin.node(&id).await.status != pb::NodeStatus::Online as i32).then_some(()) }
    })
    .await;
    let stopped = castctl(
        &replica_a.public_url(),
        &ca_cert,
        &token,
        home.path(),
        &castctl_env,
        &["service", "stop", "traced-fm", "-o", "json"],
    )
    .await;
    assert!(
        stopped.status.success(),
        "castctl service stop: {}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let queued: serde_json::Value =
        serde_json::from_slice(&stopped.stdout).expect("the action as JSON");
    let action_id = queued["id"].as_str().expect("the action's id").to_owned();
    assert_eq!(
        admin.action(&action_id).await.state,
        pb::ActionState::Queued as i32,
        "the stop waits for the offline node"
    );
    let agent = AgentProcess::spawn_with(Path::new(AGENT_BINARY), &data_dir, &agent_env_refs)
        .expect("restart the agent");
    let finished = admin
        .finished_action(&action_id, Duration::from_secs(60))
        .await;
    assert_eq!(
        finished.state,
        pb::ActionState::Succeeded as i32,
        "{finished:?}"
    );
    wait_for_trace(
        &receiver,
        "service stop",
        "StopMediaService",
        "replica-b",
        &["stop", "stop process"],
    )
    .await;

    drop(agent);
    castplane_integration_tests::agent::kill_processes_under(agent_dir.path());
}
