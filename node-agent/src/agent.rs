//! `castplane-agent run`: the long-lived connection to the control plane.
//!
//! One bidirectional stream at a time. On connect the agent says Hello (capabilities, full
//! observed state), receives the full desired state and reconciles; then it executes actions,
//! heart-beats, and streams observed state. If the stream breaks it reconnects with backoff;
//! the services it runs are never stopped because the control plane went away.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use castplane_proto::agent::v1 as apb;
use castplane_proto::agent::v1::agent_service_client::AgentServiceClient;
use castplane_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::action_log::{ActionLog, ActionResult};
use crate::state::DataDir;
use crate::supervisor::{Supervisor, SupervisorConfig};
use crate::{renewal, tls};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    /// Overrides the URL recorded at join.
    pub control_plane_url: Option<String>,
    pub heartbeat_interval: Duration,
    pub max_reconnect_backoff: Duration,
    /// Renew the node certificate once less than this share of its lifetime remains.
    pub renew_when_remaining: f64,
    /// How often a connected agent checks whether renewal is due.
    pub renewal_check_interval: Duration,
    pub supervisor: SupervisorConfig,
    /// Serve Prometheus metrics at `/metrics` here (`crate::metrics`).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl AgentConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let supervisor = SupervisorConfig {
            services_dir: DataDir::new(&data_dir).services_dir(),
            media_dir: data_dir.join("media"),
            ..Default::default()
        };
        AgentConfig {
            data_dir,
            control_plane_url: None,
            heartbeat_interval: Duration::from_secs(5),
            max_reconnect_backoff: Duration::from_secs(10),
            renew_when_remaining: 1.0 / 3.0,
            renewal_check_interval: Duration::from_secs(30),
            supervisor,
            metrics_listen: None,
        }
    }
}

type Outbound = mpsc::Sender<apb::AgentMessage>;

struct Executions {
    log: ActionLog,
    /// Actions executing now; a redelivery of one of them is ignored, its result follows.
    in_flight: HashSet<String>,
}

/// State shared by every session of one agent process.
struct Shared {
    supervisor: Supervisor,
    /// One lock over both, so "not done and not running" is checked and claimed atomically.
    executions: Mutex<Executions>,
    /// The current session's sender; results of actions that outlive a session go to the next.
    outbound: Mutex<Option<Outbound>>,
}

impl Shared {
    fn current_outbound(&self) -> Option<Outbound> {
        self.outbound.lock().ok().and_then(|o| o.clone())
    }
}

/// Runs the agent until `shutdown`. Services keep running after it returns.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data_dir = DataDir::new(&config.data_dir);
    let identity = data_dir.load_identity()?;
    data_dir.finish_credential_swap()?;
    let url = config
        .control_plane_url
        .clone()
        .unwrap_or_else(|| identity.control_plane_url.clone());
    let supervisor = Supervisor::new(config.supervisor.clone());
    supervisor
        .adopt_existing()
        .await
        .context("re-adopting running services")?;
    if let Some(addr) = config.metrics_listen {
        crate::metrics::serve(
            addr,
            &config.supervisor.metrics,
            &supervisor,
            shutdown.clone(),
        )
        .await?;
    }
    let shared = Arc::new(Shared {
        supervisor: supervisor.clone(),
        executions: Mutex::new(Executions {
            log: ActionLog::open(data_dir.action_log_path())?,
            in_flight: HashSet::new(),
        }),
        outbound: Mutex::new(None),
    });
    tracing::info!(node_id = %identity.node_id, control_plane = %url, "agent starting");

    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        match session(&config, &data_dir, &url, &shared, &shutdown).await {
            Ok(()) => tracing::info!("session ended"),
            Err(err) => tracing::warn!(error = format!("{err:#}"), "control plane session failed"),
        }
        if let Ok(mut outbound) = shared.outbound.lock() {
            *outbound = None;
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => {}
        }
        backoff = (backoff * 2).min(config.max_reconnect_backoff);
    }
    supervisor.detach().await;
    tracing::info!("agent stopped; services left running");
    Ok(())
}

async fn session(
    config: &AgentConfig,
    data_dir: &DataDir,
    url: &str,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    if renewal::due(data_dir, config.renew_when_remaining)? {
        renewal::renew(data_dir, url)
            .await
            .context("renewing the node certificate")?;
    }
    let tls_config = tls::mtls_client_config(
        &data_dir.read(&data_dir.ca_path())?,
        &data_dir.read(&data_dir.cert_path())?,
        &data_dir.read(&data_dir.key_path())?,
    )?;
    let channel = tls::connect(url, tls_config).await?;
    let mut client = AgentServiceClient::new(channel);

    let (tx, rx) = mpsc::channel::<apb::AgentMessage>(256);
    let hello = apb::Hello {
        agent_version: AGENT_VERSION.to_owned(),
        capabilities: shared.supervisor.capabilities().await,
        services: shared.supervisor.observed().await,
    };
    tx.send(message(apb::agent_message::Body::Hello(hello)))
        .await?;
    let mut inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|status| anyhow::anyhow!("session refused: {}", status.message()))?
        .into_inner();
    if let Ok(mut outbound) = shared.outbound.lock() {
        *outbound = Some(tx.clone());
    }
    tracing::info!("connected to the control plane");

    // Desired states are applied by one task, latest first: a burst of updates collapses.
    let (desired_tx, desired_rx) = watch::channel::<Option<Vec<apb::ServiceSpec>>>(None);
    let reconciler = tokio::spawn(reconcile_latest(shared.supervisor.clone(), desired_rx));
    let _reconciler_guard = AbortOnDrop(reconciler);

    let mut updates = shared.supervisor.subscribe();
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    let mut renewal_check = tokio::time::interval(config.renewal_check_interval);
    renewal_check.tick().await;
    loop {
        tokio::select! {
            received = inbound.message() => {
                let Some(control) = received.map_err(|s| anyhow::anyhow!("stream error: {}", s.message()))? else {
                    return Ok(());
                };
                match control.body {
                    Some(apb::control_message::Body::DesiredState(desired)) => {
                        let _ = desired_tx.send(Some(desired.services));
                    }
                    Some(apb::control_message::Body::ExecuteAction(action)) => {
                        handle_action(shared.clone(), &tx, action).await;
                    }
                    None => {}
                }
            }
            _ = heartbeat.tick() => {
                tx.send(message(apb::agent_message::Body::Heartbeat(apb::Heartbeat {}))).await?;
            }
            update = updates.recv() => {
                let services = match update {
                    Ok(observed) => vec![observed],
                    Err(broadcast::error::RecvError::Lagged(_)) => shared.supervisor.observed().await,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                };
                tx.send(message(apb::agent_message::Body::ServiceReport(apb::ServiceReport { services }))).await?;
            }
            _ = renewal_check.tick() => {
                // The open stream stays up: its certificate was checked at the handshake, and the
                // renewed one is used from the next connection on.
                if renewal::due(data_dir, config.renew_when_remaining)?
                    && let Err(err) = renewal::renew(data_dir, url).await
                {
                    tracing::warn!(error = format!("{err:#}"), "certificate renewal failed; will retry");
                }
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn reconcile_latest(
    supervisor: Supervisor,
    mut desired: watch::Receiver<Option<Vec<apb::ServiceSpec>>>,
) {
    while desired.changed().await.is_ok() {
        let latest = desired.borrow_and_update().clone();
        if let Some(services) = latest {
            supervisor.reconcile(services).await;
        }
    }
}

fn message(body: apb::agent_message::Body) -> apb::AgentMessage {
    apb::AgentMessage { body: Some(body) }
}

fn update(action_id: &str, state: pb::ActionState, text: &str) -> apb::AgentMessage {
    message(apb::agent_message::Body::ActionUpdate(apb::ActionUpdate {
        action_id: action_id.to_owned(),
        state: state as i32,
        message: text.to_owned(),
    }))
}

fn result_update(result: &ActionResult) -> apb::AgentMessage {
    let state = if result.succeeded {
        pb::ActionState::Succeeded
    } else {
        pb::ActionState::Failed
    };
    update(&result.action_id, state, &result.message)
}

/// Executes an action at most once per id: a recorded result is replayed, an action still
/// running is left to finish, anything else runs in its own task.
async fn handle_action(shared: Arc<Shared>, tx: &Outbound, action: apb::ExecuteAction) {
    enum Verdict {
        Replay(ActionResult),
        AlreadyRunning,
        Run,
    }
    let verdict = match shared.executions.lock() {
        Ok(mut executions) => {
            if let Some(result) = executions.log.get(&action.action_id) {
                Verdict::Replay(result.clone())
            } else if executions.in_flight.insert(action.action_id.clone()) {
                Verdict::Run
            } else {
                Verdict::AlreadyRunning
            }
        }
        Err(_) => {
            tracing::error!("action state lock poisoned");
            return;
        }
    };
    match verdict {
        Verdict::Replay(result) => {
            tracing::info!(action_id = %action.action_id, "action already done; replaying its result");
            let _ = tx.send(result_update(&result)).await;
            return;
        }
        Verdict::AlreadyRunning => {
            tracing::info!(action_id = %action.action_id, "action redelivered while still running");
            return;
        }
        Verdict::Run => {}
    }
    let _ = tx
        .send(update(&action.action_id, pb::ActionState::Running, ""))
        .await;
    tokio::spawn(async move {
        let kind = pb::ActionKind::try_from(action.kind).unwrap_or(pb::ActionKind::Unspecified);
        tracing::info!(action_id = %action.action_id, kind = kind.as_str_name(), "executing action");
        let outcome = execute(&shared.supervisor, kind, action.service.as_ref()).await;
        let result = ActionResult {
            action_id: action.action_id.clone(),
            succeeded: outcome.is_ok(),
            message: outcome.err().unwrap_or_default(),
        };
        // The result is fsynced before it is reported; that disk wait stays off the runtime.
        let persisted = {
            let shared = shared.clone();
            let result = result.clone();
            // Recorded and released under one lock: a redelivery sees it either running or done.
            tokio::task::spawn_blocking(move || match shared.executions.lock() {
                Ok(mut executions) => {
                    let recorded = executions.log.record(result.clone());
                    executions.in_flight.remove(&result.action_id);
                    recorded
                }
                Err(_) => Err(anyhow::anyhow!("action state lock poisoned")),
            })
            .await
        };
        match persisted {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(action_id = %result.action_id, error = %err, "could not persist an action result")
            }
            Err(err) => {
                tracing::error!(action_id = %result.action_id, error = %err, "action log writer panicked")
            }
        }
        tracing::info!(action_id = %result.action_id, succeeded = result.succeeded, reason = %result.message, "action finished");
        // If the session that asked is gone, the next one gets it: the control plane re-sends
        // unanswered actions and the log answers them.
        if let Some(outbound) = shared.current_outbound() {
            let _ = outbound.send(result_update(&result)).await;
        }
    });
}

async fn execute(
    supervisor: &Supervisor,
    kind: pb::ActionKind,
    spec: Option<&apb::ServiceSpec>,
) -> Result<(), String> {
    let spec = spec.ok_or_else(|| "the action carries no service".to_owned())?;
    match kind {
        pb::ActionKind::Start => supervisor.start(spec).await,
        pb::ActionKind::Stop => supervisor.stop(&spec.id).await,
        pb::ActionKind::Restart => supervisor.restart(spec).await,
        pb::ActionKind::Delete => supervisor.delete(&spec.id).await,
        pb::ActionKind::Unspecified => Err("unknown action kind".to_owned()),
    }
}
