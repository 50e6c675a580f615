//! Simulated node agents: each joins through the real Join flow (its own key, a CSR, the
//! one-time token, the CA pinned by the token's hash), then holds the real
//! `castplane.agent.v1` session over mutual TLS with the certificate it was issued — exactly
//! what `castplane-agent` does — but executes every action at once instead of running
//! streaming servers. They answer RUNNING then SUCCEEDED (as the real agent does), keep a log
//! of completed action ids and answer a redelivery from it (as the real agent's action log
//! does), send heartbeats at the interval the control plane asks for, and reconnect with the
//! real agent's policy (at once after a session that lasted, next endpoint first; backoff
//! doubling from 0.5 s once every endpoint refused).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use castplane_agent::tls;
use castplane_proto::agent::v1 as apb;
use castplane_proto::agent::v1::agent_service_client::AgentServiceClient;
use castplane_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

/// Process-wide time base for the agents' timestamps (nanoseconds since it).
pub fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// What all simulated agents share: counters and the "hold" switch.
#[derive(Default)]
pub struct Fleet {
    /// While set, agents record arriving actions but do not answer them (see
    /// [`SimAgent::flush_held`]).
    pub hold: AtomicBool,
    pub deliveries: AtomicU64,
    pub executions: AtomicU64,
    /// Deliveries of an action already answered: replayed from the log, not executed.
    pub replays: AtomicU64,
    /// Deliveries of an action the agent already holds unanswered.
    pub held_repeats: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub session_errors: AtomicU64,
}

/// One simulated node.
pub struct SimAgent {
    pub node_id: String,
    tls: rustls::ClientConfig,
    urls: Mutex<Vec<String>>,
    state: Mutex<AgentState>,
    /// When this agent last received a whole desired state (a session opened).
    pub last_connected_ns: AtomicU64,
    /// When this agent last received an ExecuteAction.
    pub last_delivery_ns: AtomicU64,
    /// The endpoint the current (or last) session uses.
    current_url: Mutex<String>,
}

#[derive(Default)]
struct AgentState {
    /// Executions per action id: the log of completed actions.
    executed: HashMap<String, u32>,
    /// Deliveries per action id.
    delivered: HashMap<String, u32>,
    /// Actions received while the fleet is on hold, in order.
    held: Vec<String>,
    /// The session's sender, to answer held actions on release.
    tx: Option<mpsc::UnboundedSender<apb::AgentMessage>>,
}

fn message(body: apb::agent_message::Body) -> apb::AgentMessage {
    apb::AgentMessage { body: Some(body) }
}

fn update(action_id: &str, state: pb::ActionState) -> apb::AgentMessage {
    message(apb::agent_message::Body::ActionUpdate(apb::ActionUpdate {
        action_id: action_id.to_owned(),
        state: state as i32,
        message: String::new(),
    }))
}

impl SimAgent {
    /// Joins with `token` through `url`: a fresh key and CSR, the join token, the control
    /// plane verified against the CA hash in the token.
    pub async fn join(url: &str, token: &str) -> anyhow::Result<SimAgent> {
        let (_, ca_hash) = castplane_proto::join_token::parse(token).context("a join token")?;
        let (key, csr_pem) = castplane_agent::join::new_key_and_csr("castplane-node")?;
        let channel = tls::connect(url, tls::pinned_client_config(ca_hash)?).await?;
        let response = AgentServiceClient::new(channel)
            .join(apb::JoinRequest {
                token: token.to_owned(),
                csr_pem,
            })
            .await
            .map_err(|s| anyhow::anyhow!("join refused: {}", s.message()))?
            .into_inner();
        let config = tls::mtls_client_config(
            &response.ca_certificate_pem,
            &response.certificate_pem,
            &key.serialize_pem(),
        )?;
        Ok(SimAgent {
            node_id: response.node_id,
            tls: config,
            urls: Mutex::new(vec![url.to_owned()]),
            state: Mutex::default(),
            last_connected_ns: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            current_url: Mutex::default(),
        })
    }

    pub fn set_urls(&self, urls: Vec<String>) {
        *self.urls.lock().unwrap_or_else(|e| e.into_inner()) = urls;
    }

    pub fn current_url(&self) -> String {
        self.current_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn executed(&self, action_id: &str) -> u32 {
        self.state().executed.get(action_id).copied().unwrap_or(0)
    }

    /// Runs sessions until `shutdown`, reconnecting as the real agent does.
    pub async fn run(self: Arc<Self>, fleet: Arc<Fleet>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        let mut failed_in_a_row = 0usize;
        let mut next = 0usize;
        while !shutdown.is_cancelled() {
            let urls = self.urls.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let index = next % urls.len().max(1);
            next = next.wrapping_add(1);
            let Some(url) = urls.get(index).cloned() else {
                return;
            };
            url.clone_into(&mut self.current_url.lock().unwrap_or_else(|e| e.into_inner()));
            let started = Instant::now();
            if self.session(&url, &fleet, &shutdown).await.is_err() {
                fleet.session_errors.fetch_add(1, Ordering::Relaxed);
            }
            self.state().tx = None;
            let lasted = started.elapsed();
            if lasted > Duration::from_secs(30) {
                backoff = Duration::from_millis(500);
            }
            if lasted > Duration::from_secs(1) {
                failed_in_a_row = 0;
                continue;
            }
            failed_in_a_row += 1;
            if failed_in_a_row < urls.len() {
                continue;
            }
            failed_in_a_row = 0;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn session(
        &self,
        url: &str,
        fleet: &Fleet,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let channel = tokio::select! {
            channel = tls::connect(url, self.tls.clone()) => channel?,
            () = shutdown.cancelled() => return Ok(()),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(message(apb::agent_message::Body::Hello(apb::Hello {
            agent_version: "castplane-bench".to_owned(),
            capabilities: vec![pb::PluginCapability {
                r#type: pb::ServiceType::Icecast as i32,
                available: true,
                version: "icecast2 2.4.4 (simulated)".to_owned(),
                detail: String::new(),
                autodj_available: false,
            }],
            services: vec![],
        })))?;
        let mut inbound = AgentServiceClient::new(channel)
            .session(UnboundedReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow::anyhow!("session refused: {}", s.message()))?
            .into_inner();
        fleet.sessions_opened.fetch_add(1, Ordering::Relaxed);
        self.state().tx = Some(tx.clone());
        let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                received = inbound.message() => {
                    let Some(control) = received? else { return Ok(()) };
                    match control.body {
                        Some(apb::control_message::Body::DesiredState(state)) => {
                            let seconds = u64::from(state.heartbeat_interval_seconds);
                            if (1..=300).contains(&seconds) && heartbeat.period() != Duration::from_secs(seconds) {
                                heartbeat = tokio::time::interval(Duration::from_secs(seconds));
                            }
                            self.last_connected_ns.store(now_ns(), Ordering::Relaxed);
                        }
                        Some(apb::control_message::Body::ExecuteAction(action)) => {
                            self.on_execute(action.action_id, fleet, &tx);
                        }
                        Some(apb::control_message::Body::DesiredStateUpdate(_)) | None => {}
                    }
                }
                _ = heartbeat.tick() => {
                    tx.send(message(apb::agent_message::Body::Heartbeat(apb::Heartbeat {})))?;
                }
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    fn on_execute(&self, id: String, fleet: &Fleet, tx: &mpsc::UnboundedSender<apb::AgentMessage>) {
        fleet.deliveries.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_ns.store(now_ns(), Ordering::Relaxed);
        let mut state = self.state();
        *state.delivered.entry(id.clone()).or_default() += 1;
        if state.executed.contains_key(&id) {
            fleet.replays.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(update(&id, pb::ActionState::Succeeded));
            return;
        }
        if fleet.hold.load(Ordering::Relaxed) {
            if state.held.contains(&id) {
                fleet.held_repeats.fetch_add(1, Ordering::Relaxed);
            } else {
                state.held.push(id);
            }
            return;
        }
        *state.executed.entry(id.clone()).or_default() += 1;
        fleet.executions.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(update(&id, pb::ActionState::Running));
        let _ = tx.send(update(&id, pb::ActionState::Succeeded));
    }

    /// Executes and answers whatever arrived during a hold, on the current session.
    pub fn flush_held(&self, fleet: &Fleet) {
        let mut state = self.state();
        let Some(tx) = state.tx.clone() else { return };
        for id in std::mem::take(&mut state.held) {
            *state.executed.entry(id.clone()).or_default() += 1;
            fleet.executions.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(update(&id, pb::ActionState::Running));
            let _ = tx.send(update(&id, pb::ActionState::Succeeded));
        }
    }
}

/// Joins `tokens.len()` agents with up to `parallel` joins at once.
pub async fn join_all(
    url: &str,
    tokens: Vec<String>,
    parallel: usize,
) -> anyhow::Result<Vec<Arc<SimAgent>>> {
    use futures::StreamExt;
    let url = url.to_owned();
    let joined: Vec<anyhow::Result<SimAgent>> = futures::stream::iter(tokens)
        .map(|token| {
            let url = url.clone();
            async move { SimAgent::join(&url, &token).await }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    joined
        .into_iter()
        .map(|r| r.map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()
}

/// Starts every agent's session loop.
pub fn run_all(
    agents: &[Arc<SimAgent>],
    fleet: &Arc<Fleet>,
    shutdown: &CancellationToken,
) -> tokio_util::task::TaskTracker {
    let tracker = tokio_util::task::TaskTracker::new();
    for agent in agents {
        tracker.spawn(agent.clone().run(fleet.clone(), shutdown.clone()));
    }
    tracker.close();
    tracker
}

/// Waits until every agent has received a whole desired state after `since_ns`.
pub async fn all_connected_after(
    agents: &[Arc<SimAgent>],
    since_ns: u64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    all_after(
        agents,
        |a| &a.last_connected_ns,
        since_ns,
        timeout,
        "connect",
    )
    .await
}

/// Waits until every agent has received an action after `since_ns`.
pub async fn all_delivered_after(
    agents: &[Arc<SimAgent>],
    since_ns: u64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    all_after(
        agents,
        |a| &a.last_delivery_ns,
        since_ns,
        timeout,
        "get their action",
    )
    .await
}

/// Waits until `event` (a time each agent records) is past `since_ns` for every agent; how
/// long after `since_ns` the last one came.
async fn all_after(
    agents: &[Arc<SimAgent>],
    event: impl Fn(&SimAgent) -> &AtomicU64,
    since_ns: u64,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let times: Vec<u64> = agents
            .iter()
            .map(|a| event(a).load(Ordering::Relaxed))
            .collect();
        let missing = times.iter().filter(|t| **t <= since_ns).count();
        if missing == 0 {
            let last = times.into_iter().max().unwrap_or(since_ns);
            return Ok(Duration::from_nanos(last.saturating_sub(since_ns)));
        }
        if started.elapsed() > timeout {
            anyhow::bail!(
                "{missing} of {} agents did not {what} within {timeout:?}",
                agents.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
