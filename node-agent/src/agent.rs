//! `castplane-agent run`: the long-lived connection to the control plane.
//!
//! One bidirectional stream at a time. On connect the agent says Hello (capabilities, full
//! observed state), receives the full desired state and reconciles; then it applies changes of
//! the desired state, executes actions, heart-beats, and streams observed state. If the stream
//! breaks it reconnects — to the next control-plane endpoint at once (another replica), with
//! backoff only once every endpoint has failed. The services it runs are never stopped because
//! the control plane went away.
//!
//! Actions (see `action_log.rs` for what is logged): an action that reaches the agent after
//! its `not_after` is refused without running — the control plane may by then have failed it
//! as undelivered. Otherwise it is logged as started before it runs, so a redelivery after a
//! crash resumes it by reconciling instead of repeating it; its result is logged before it is
//! reported, so a redelivery after that is answered from the log.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use castplane_proto::agent::v1 as apb;
use castplane_proto::agent::v1::agent_service_client::AgentServiceClient;
use castplane_proto::v1 as pb;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::action_log::{ActionLog, ActionResult, Entry, StartedAction};
use crate::media::MediaSync;
use crate::state::DataDir;
use crate::supervisor::{Supervisor, SupervisorConfig, SupervisorError};
use crate::{renewal, tls};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    /// Overrides the control-plane endpoints recorded at join.
    pub control_plane_urls: Vec<String>,
    /// Used until the control plane says otherwise.
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
            control_plane_urls: Vec::new(),
            heartbeat_interval: Duration::from_secs(5),
            max_reconnect_backoff: Duration::from_secs(10),
            renew_when_remaining: 1.0 / 3.0,
            renewal_check_interval: Duration::from_secs(30),
            supervisor,
            metrics_listen: None,
        }
    }
}

/// Messages to the control plane. Unbounded so that sending never waits on the control plane
/// reading, which could otherwise deadlock both sides' loops; what is queued is bounded by the
/// node's services and the actions in flight.
type Outbound = mpsc::UnboundedSender<apb::AgentMessage>;

/// State shared by every session of one agent process.
struct Shared {
    supervisor: Supervisor,
    log: ActionLog,
    /// Actions executing now; a redelivery of one of them is ignored, its result follows.
    in_flight: Mutex<HashSet<String>>,
    link: Mutex<Link>,
    /// Every action task, so shutdown waits for them.
    tasks: TaskTracker,
}

/// The current session, and what it must repeat. One lock over both, so each result is either
/// sent on the session current when it is reported or repeated by the next one.
#[derive(Default)]
struct Link {
    /// The current session's sender; results of actions that outlive a session go to the next.
    outbound: Option<Outbound>,
    /// Results reported lately. A report sent on a session that then broke may never have
    /// arrived, and the control plane re-sends only what it has not seen finish — not what
    /// it failed meanwhile at its deadline — so each new session repeats these; the control
    /// plane ignores what it already has and keeps the rest as late results.
    recent: std::collections::VecDeque<(Instant, ActionResult)>,
}

/// How long, and how many, reported results are repeated on a new session.
const RECENT_RESULTS_AGE: Duration = Duration::from_secs(15 * 60);
const RECENT_RESULTS: usize = 1000;

impl Shared {
    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session: it gets every later report, and repeats the recent results now.
    fn connect(&self, outbound: Outbound) -> anyhow::Result<()> {
        let mut link = self.link();
        while link
            .recent
            .front()
            .is_some_and(|(at, _)| at.elapsed() > RECENT_RESULTS_AGE)
        {
            link.recent.pop_front();
        }
        for (_, result) in &link.recent {
            outbound.send(result_update(result))?;
        }
        link.outbound = Some(outbound);
        Ok(())
    }

    fn disconnect(&self) {
        self.link().outbound = None;
    }

    fn report(&self, message: apb::AgentMessage) {
        if let Some(outbound) = &self.link().outbound {
            let _ = outbound.send(message);
        }
    }

    /// Reports a result, and keeps it for the next session to repeat.
    fn report_result(&self, result: &ActionResult) {
        let mut link = self.link();
        if link.recent.len() >= RECENT_RESULTS {
            link.recent.pop_front();
        }
        link.recent.push_back((Instant::now(), result.clone()));
        if let Some(outbound) = &link.outbound {
            let _ = outbound.send(result_update(result));
        }
    }
}

/// Runs the agent until `shutdown`. Services keep running after it returns.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data_dir = DataDir::new(&config.data_dir);
    let identity = data_dir.load_identity()?;
    data_dir.finish_credential_swap()?;
    let endpoints = if config.control_plane_urls.is_empty() {
        identity.endpoints()
    } else {
        config.control_plane_urls.clone()
    };
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
    let log_path = data_dir.action_log_path();
    let log = tokio::task::spawn_blocking(move || ActionLog::open(log_path))
        .await
        .context("opening the action log")??;
    let shared = Arc::new(Shared {
        supervisor: supervisor.clone(),
        log,
        in_flight: Mutex::new(HashSet::new()),
        link: Mutex::new(Link::default()),
        tasks: TaskTracker::new(),
    });
    tracing::info!(node_id = %identity.node_id, control_plane = %endpoints.join(", "), "agent starting");

    let mut backoff = Duration::from_millis(500);
    let mut failed_in_a_row = 0usize;
    let mut next = 0usize;
    while !shutdown.is_cancelled() {
        let url = &endpoints[next % endpoints.len()];
        next = next.wrapping_add(1);
        let started = Instant::now();
        let result = session(&config, &data_dir, url, &shared, &shutdown).await;
        shared.disconnect();
        let lasted = started.elapsed();
        match &result {
            Ok(()) => tracing::info!(control_plane = %url, "session ended"),
            Err(err) => {
                tracing::warn!(control_plane = %url, error = format!("{err:#}"), "control plane session failed")
            }
        }
        if lasted > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        // A session that ran a while ended (a replica went away): reconnect at once, to the
        // next endpoint. One that failed right away counts against the round; once every
        // endpoint has, back off.
        if lasted > Duration::from_secs(1) {
            failed_in_a_row = 0;
            continue;
        }
        failed_in_a_row += 1;
        if failed_in_a_row < endpoints.len() {
            continue;
        }
        failed_in_a_row = 0;
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => {}
        }
        backoff = (backoff * 2).min(config.max_reconnect_backoff);
    }
    supervisor.detach().await;
    shared.tasks.close();
    shared.tasks.wait().await;
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
    let media_client = client.clone();

    let (tx, rx) = mpsc::unbounded_channel::<apb::AgentMessage>();
    let hello = apb::Hello {
        agent_version: AGENT_VERSION.to_owned(),
        capabilities: shared.supervisor.capabilities().await,
        services: shared.supervisor.observed().await,
    };
    tx.send(message(apb::agent_message::Body::Hello(hello)))?;
    let mut inbound = client
        .session(UnboundedReceiverStream::new(rx))
        .await
        .map_err(|status| anyhow::anyhow!("session refused: {}", status.message()))?
        .into_inner();
    shared.connect(tx.clone())?;
    tracing::info!(control_plane = %url, "connected to the control plane");

    // Desired states are applied by one task, merged: a burst of updates collapses.
    let desired = Arc::new(Desired::default());
    let reconciler = tokio::spawn(reconcile_desired(
        shared.supervisor.clone(),
        desired.clone(),
    ));
    let _reconciler = tokio_util::task::AbortOnDropHandle::new(reconciler);
    // Uploaded media the services need, fetched over this session's channel.
    let media = Arc::new(MediaSync::new(
        &config.data_dir,
        config.supervisor.media_dir.clone(),
        config.supervisor.services_dir.clone(),
    ));
    let media_task = tokio::spawn({
        let media = media.clone();
        let client = media_client;
        async move { media.run(client).await }
    });
    let _media_task = tokio_util::task::AbortOnDropHandle::new(media_task);

    let mut updates = shared.supervisor.subscribe();
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    let mut renewal_check = tokio::time::interval(config.renewal_check_interval);
    renewal_check.tick().await;
    // Once the control plane has ended its side, what it sent before is still read: an action
    // already in the socket gets its answer (refused if past its deadline) instead of vanishing
    // with the connection.
    let mut outbound_open = true;
    loop {
        tokio::select! {
            received = inbound.message() => {
                let Some(control) = received.map_err(|s| anyhow::anyhow!("stream error: {}", s.message()))? else {
                    return Ok(());
                };
                match control.body {
                    Some(apb::control_message::Body::DesiredState(state)) => {
                        if let Some(interval) = heartbeat_interval(state.heartbeat_interval_seconds)
                            && interval != heartbeat.period()
                        {
                            heartbeat = tokio::time::interval(interval);
                        }
                        media.replace(&state.services);
                        desired.replace(state.services);
                    }
                    Some(apb::control_message::Body::DesiredStateUpdate(update)) => {
                        media.update(&update.services, &update.removed_service_ids);
                        desired.update(update.services, update.removed_service_ids);
                    }
                    Some(apb::control_message::Body::ExecuteAction(action)) => {
                        handle_action(shared, action);
                    }
                    None => {}
                }
            }
            _ = heartbeat.tick(), if outbound_open => {
                outbound_open = tx.send(message(apb::agent_message::Body::Heartbeat(apb::Heartbeat {}))).is_ok();
            }
            update = updates.recv(), if outbound_open => {
                let services = match update {
                    Ok(observed) => vec![observed],
                    Err(broadcast::error::RecvError::Lagged(_)) => shared.supervisor.observed().await,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                };
                outbound_open = tx.send(message(apb::agent_message::Body::ServiceReport(apb::ServiceReport { services }))).is_ok();
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
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// The control plane's heartbeat interval, if it sent a sensible one.
fn heartbeat_interval(seconds: u32) -> Option<Duration> {
    (1..=300)
        .contains(&seconds)
        .then(|| Duration::from_secs(u64::from(seconds)))
}

/// The desired state waiting to be applied.
#[derive(Default)]
struct Desired {
    pending: Mutex<Pending>,
    notify: Notify,
}

#[derive(Default)]
struct Pending {
    /// A whole desired state not yet applied, with later changes merged in.
    full: Option<BTreeMap<String, apb::ServiceSpec>>,
    changed: BTreeMap<String, apb::ServiceSpec>,
    removed: BTreeSet<String>,
}

impl Desired {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn replace(&self, services: Vec<apb::ServiceSpec>) {
        let mut pending = self.pending();
        pending.full = Some(services.into_iter().map(|s| (s.id.clone(), s)).collect());
        pending.changed.clear();
        pending.removed.clear();
        drop(pending);
        self.notify.notify_one();
    }

    fn update(&self, changed: Vec<apb::ServiceSpec>, removed: Vec<String>) {
        let mut pending = self.pending();
        let pending = &mut *pending;
        match pending.full.as_mut() {
            Some(full) => {
                for id in &removed {
                    full.remove(id);
                }
                for spec in changed {
                    full.insert(spec.id.clone(), spec);
                }
            }
            None => {
                for id in removed {
                    pending.changed.remove(&id);
                    pending.removed.insert(id);
                }
                for spec in changed {
                    pending.removed.remove(&spec.id);
                    pending.changed.insert(spec.id.clone(), spec);
                }
            }
        }
        self.notify.notify_one();
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending())
    }
}

async fn reconcile_desired(supervisor: Supervisor, desired: Arc<Desired>) {
    loop {
        desired.notify.notified().await;
        let pending = desired.take();
        if let Some(full) = pending.full {
            supervisor.reconcile(full.into_values().collect()).await;
        }
        if !pending.changed.is_empty() || !pending.removed.is_empty() {
            supervisor
                .apply_changes(
                    pending.changed.into_values().collect(),
                    pending.removed.into_iter().collect(),
                )
                .await;
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

/// What to do with an action that arrived.
enum Verdict {
    /// Finished before: its result again.
    Replay(ActionResult),
    /// Running now: its result follows.
    AlreadyRunning,
    /// Started by an agent that then stopped: reconcile towards it.
    Resume(StartedAction),
    /// Arrived past its deadline: refused.
    Late(SystemTime),
    Run,
}

/// The agent's span of an action: it continues the control plane's dispatch span (the
/// action's `traceparent`), so one trace holds the action from castctl to the server's
/// readiness probe. Its children are the supervisor's steps (render, spawn, readiness probe,
/// stop).
fn action_span(action: &apb::ExecuteAction) -> tracing::Span {
    let kind = pb::ActionKind::try_from(action.kind).unwrap_or(pb::ActionKind::Unspecified);
    let span = tracing::info_span!(
        "execute action",
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        action_id = %action.action_id,
        kind = kind_name(kind),
        media_service_id = %action.service.as_ref().map_or("", |s| s.id.as_str()),
        verdict = tracing::field::Empty,
        succeeded = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    castplane_telemetry::set_parent(&span, &action.traceparent);
    span
}

/// Executes an action at most once per id (see the module's comment).
fn handle_action(shared: &Arc<Shared>, action: apb::ExecuteAction) {
    let span = action_span(&action);
    let id = action.action_id.clone();
    let verdict = {
        let mut in_flight = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.contains(&id) {
            Verdict::AlreadyRunning
        } else {
            match shared.log.get(&id) {
                Some(Entry::Finished(result)) => Verdict::Replay(result),
                Some(Entry::Started(started)) => {
                    in_flight.insert(id.clone());
                    Verdict::Resume(started)
                }
                None => match action.not_after.and_then(|t| SystemTime::try_from(t).ok()) {
                    Some(not_after) if SystemTime::now() > not_after => {
                        in_flight.insert(id.clone());
                        Verdict::Late(not_after)
                    }
                    _ => {
                        in_flight.insert(id.clone());
                        Verdict::Run
                    }
                },
            }
        }
    };
    span.record(
        "verdict",
        match &verdict {
            Verdict::Replay(_) => "replay",
            Verdict::AlreadyRunning => "already running",
            Verdict::Resume(_) => "resume",
            Verdict::Late(_) => "late",
            Verdict::Run => "run",
        },
    );
    match verdict {
        Verdict::Replay(result) => {
            let _entered = span.enter();
            tracing::info!(action_id = %id, "action already done; replaying its result");
            shared.report_result(&result);
        }
        Verdict::AlreadyRunning => {
            let _entered = span.enter();
            tracing::info!(action_id = %id, "action redelivered while still running");
        }
        Verdict::Late(not_after) => {
            let shared = shared.clone();
            shared.tasks.clone().spawn(async move {
                let late_by = SystemTime::now()
                    .duration_since(not_after)
                    .unwrap_or_default();
                tracing::warn!(action_id = %id, late_by_ms = late_by.as_millis() as u64, "action arrived after its deadline; not executing it");
                let result = ActionResult {
                    action_id: id.clone(),
                    succeeded: false,
                    message: format!(
                        "the action reached the node {} s after its deadline; it was not executed",
                        late_by.as_secs()
                    ),
                };
                finish(&shared, result).await;
            }.instrument(span));
        }
        Verdict::Resume(started) => {
            let shared = shared.clone();
            shared.tasks.clone().spawn(async move {
                tracing::info!(action_id = %id, kind = %started.kind, "resuming an action a previous agent started");
                shared.report(update(&id, pb::ActionState::Running, "resumed after an agent restart"));
                let outcome = resume(&shared.supervisor, &started, action.service.as_ref()).await;
                conclude(&shared, id, outcome).await;
            }.instrument(span));
        }
        Verdict::Run => {
            let shared = shared.clone();
            shared.tasks.clone().spawn(async move {
                let kind =
                    pb::ActionKind::try_from(action.kind).unwrap_or(pb::ActionKind::Unspecified);
                let Some(spec) = action.service.as_ref() else {
                    let result = ActionResult {
                        action_id: id.clone(),
                        succeeded: false,
                        message: "the action carries no service".to_owned(),
                    };
                    finish(&shared, result).await;
                    return;
                };
                let pid = match kind {
                    pb::ActionKind::Restart => shared.supervisor.pid(&spec.id).await,
                    _ => None,
                };
                let started = StartedAction {
                    kind: kind_name(kind).to_owned(),
                    service_id: spec.id.clone(),
                    pid,
                };
                if let Err(err) = shared.log.record_started(&id, started).await {
                    // Nothing has run: say so, and let a redelivery try again.
                    tracing::error!(action_id = %id, error = %err, "cannot log the action as started; not executing it");
                    release(&shared, &id);
                    shared.report(update(
                        &id,
                        pb::ActionState::Failed,
                        &format!("the node cannot record the action ({err}); it was not executed"),
                    ));
                    return;
                }
                shared.report(update(&id, pb::ActionState::Running, ""));
                crate::failpoints::hit("action-before-execute");
                tracing::info!(action_id = %id, kind = kind.as_str_name(), "executing action");
                let outcome = execute(&shared.supervisor, kind, spec).await;
                crate::failpoints::hit("action-after-execute");
                conclude(&shared, id, outcome).await;
            }.instrument(span));
        }
    }
}

/// Records and reports an execution's outcome. One cut short by the agent's own shutdown is
/// left as started: the next agent resumes it when it is redelivered.
async fn conclude(shared: &Arc<Shared>, id: String, outcome: Result<(), SupervisorError>) {
    if outcome == Err(SupervisorError::ShuttingDown) {
        tracing::info!(action_id = %id, "agent shutting down mid-action; the next agent resumes it");
        release(shared, &id);
        return;
    }
    let result = ActionResult {
        action_id: id,
        succeeded: outcome.is_ok(),
        message: outcome.err().map(|e| e.to_string()).unwrap_or_default(),
    };
    let span = tracing::Span::current();
    span.record("succeeded", result.succeeded);
    if !result.succeeded {
        span.record("error", result.message.as_str());
        span.record("otel.status_code", "ERROR");
    }
    tracing::info!(action_id = %result.action_id, succeeded = result.succeeded, reason = %result.message, "action finished");
    finish(shared, result).await;
}

/// Logs the result durably, releases the action, and reports it. If the session that asked is
/// gone, the next one gets it: the control plane re-sends unanswered actions and the log
/// answers them.
async fn finish(shared: &Arc<Shared>, result: ActionResult) {
    if let Err(err) = shared.log.record(result.clone()).await {
        tracing::error!(action_id = %result.action_id, error = %err, "could not persist an action result");
    }
    release(shared, &result.action_id);
    shared.report_result(&result);
}

fn release(shared: &Shared, id: &str) {
    shared
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
}

fn kind_name(kind: pb::ActionKind) -> &'static str {
    match kind {
        pb::ActionKind::Start => "start",
        pb::ActionKind::Stop => "stop",
        pb::ActionKind::Restart => "restart",
        pb::ActionKind::Delete => "delete",
        pb::ActionKind::Unspecified => "unspecified",
    }
}

async fn execute(
    supervisor: &Supervisor,
    kind: pb::ActionKind,
    spec: &apb::ServiceSpec,
) -> Result<(), SupervisorError> {
    match kind {
        pb::ActionKind::Start => supervisor.start(spec).await,
        pb::ActionKind::Stop => supervisor.stop(&spec.id).await,
        pb::ActionKind::Restart => supervisor.restart(spec).await,
        pb::ActionKind::Delete => supervisor.delete(&spec.id).await,
        pb::ActionKind::Unspecified => Err(SupervisorError::Failed("unknown action kind".into())),
    }
}

/// Completes an action a previous agent started, towards what it asked for: start and stop
/// converge (a no-op if they had finished), delete finishes deleting, and a restart restarts
/// only if the server it was to replace still runs.
async fn resume(
    supervisor: &Supervisor,
    started: &StartedAction,
    spec: Option<&apb::ServiceSpec>,
) -> Result<(), SupervisorError> {
    let spec =
        spec.ok_or_else(|| SupervisorError::Failed("the action carries no service".into()))?;
    match started.kind.as_str() {
        "start" => supervisor.start(spec).await,
        "stop" => supervisor.stop(&spec.id).await,
        "delete" => supervisor.delete(&spec.id).await,
        "restart" => {
            let now = supervisor.pid(&spec.id).await;
            if now.is_some() && now != started.pid {
                // The old server is gone and a new one runs: the restart happened.
                supervisor.start(spec).await
            } else {
                supervisor.restart(spec).await
            }
        }
        other => Err(SupervisorError::Failed(format!(
            "unknown action kind {other:?} in the action log"
        ))),
    }
}
