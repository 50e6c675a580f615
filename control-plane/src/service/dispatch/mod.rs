//! The dispatcher: owns each connected node's session on this replica.
//!
//! The node is the unit of change. Whatever changes what a node must run bumps the node's
//! `version` in the same transaction (`persistence::dispatch::touch_services`), and queuing an
//! action notifies the node; both wake only that node's session — in-process on this replica,
//! through PostgreSQL `LISTEN/NOTIFY` from any other — which then reads just what moved, in one
//! read. An idle session costs the database one small read a minute (the safety poll, for
//! notices lost while the listening connection was down, which also triggers a full resync).
//!
//! Sessions are fenced: opening one bumps `nodes.session_generation`, and every durable write
//! for the node checks it (see `writer.rs`), so a replica whose session was replaced — or whose
//! lease ran out — can neither dispatch nor record results. Liveness is judged on the database's
//! clock: each replica renews one lease row; a node is online while its session's replica holds
//! its lease, so heart-beating agents cost the database nothing.

pub mod hub;
mod session;
pub mod wire;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use castplane_proto::agent::v1 as apb;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{ActionLabels, ActionOutcomeLabels, DispatchMetrics};
use crate::persistence::entities::{action, media_service};
use writer::Write;
pub(crate) use writer::run as run_writer;

/// Wake reasons, or-ed together.
pub const ACTIONS_QUEUED: u8 = 1;
pub const SPECS_CHANGED: u8 = 2;
const EVERYTHING: u8 = ACTIONS_QUEUED | SPECS_CHANGED;

/// How the dispatcher runs.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// An action whose node stays unreachable this long fails; also how long after its claim
    /// an agent may still accept it.
    pub action_deadline: Duration,
    /// How often agents heart-beat, and how long a silent one keeps its session.
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    /// How far a node's clock may be off the database's: an unacknowledged action is failed
    /// only once its `not_after` is this far in the past.
    pub clock_skew: Duration,
    /// A replica's lease; renewed every third of it.
    pub replica_lease: Duration,
    /// A session's periodic check, against notices lost in transit.
    pub safety_poll: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            action_deadline: Duration::from_secs(600),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            clock_skew: Duration::from_secs(2),
            replica_lease: Duration::from_secs(15),
            safety_poll: Duration::from_secs(60),
        }
    }
}

impl DispatchConfig {
    pub(crate) fn deadline_ms(&self) -> i64 {
        millis(self.action_deadline)
    }

    pub(crate) fn not_after_ms(&self) -> i64 {
        millis(self.action_deadline)
    }

    pub(crate) fn skew_ms(&self) -> i64 {
        millis(self.clock_skew)
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        millis(self.replica_lease)
    }
}

/// Settings are bounded at startup, so this never saturates in practice.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What the writer hands a session.
pub(crate) enum SessionEvent {
    /// Actions claimed for the node, and services whose intent the claims changed.
    Claimed {
        actions: Vec<action::Model>,
        services: Vec<media_service::Model>,
    },
    /// The session's writes could not be recorded: it must end so its agent re-sends.
    Failed(String),
    /// A newer session (on any replica) holds the node: this one's writes are fenced off.
    Replaced,
}

#[derive(Default)]
struct Wake {
    flags: AtomicU8,
    notify: Notify,
}

impl Wake {
    fn raise(&self, flags: u8) {
        self.flags.fetch_or(flags, Ordering::AcqRel);
        self.notify.notify_one();
    }

    fn take(&self) -> u8 {
        self.flags.swap(0, Ordering::AcqRel)
    }
}

struct Slot {
    generation: i64,
    wake: Arc<Wake>,
    events: mpsc::UnboundedSender<SessionEvent>,
    /// Cancelled to end the session from outside (lost lease, replaced on this replica).
    cancel: CancellationToken,
}

pub struct Dispatcher {
    replica_id: String,
    config: DispatchConfig,
    sessions: Mutex<HashMap<String, Slot>>,
    /// Sessions being opened at once. After a restart thousands of agents reconnect together;
    /// unbounded, their opening transactions queue on SQLite's one writer ahead of the
    /// replica's lease renewal, the lease lapses, every session ends and the storm repeats.
    opening: tokio::sync::Semaphore,
    writes: mpsc::Sender<Write>,
    writes_rx: Mutex<Option<mpsc::Receiver<Write>>>,
    tracker: TaskTracker,
    metrics: DispatchMetrics,
}

/// At most this many agent sessions are opened (one short transaction each) at a time.
const MAX_OPENING: usize = 32;

/// Writes queued for the group commit before callers wait; beyond it they wait their turn.
const WRITE_QUEUE: usize = 16 * 1024;

impl Dispatcher {
    pub fn new(replica_id: String, config: DispatchConfig, metrics: DispatchMetrics) -> Self {
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        Dispatcher {
            replica_id,
            config,
            sessions: Mutex::new(HashMap::new()),
            opening: tokio::sync::Semaphore::new(MAX_OPENING),
            writes,
            writes_rx: Mutex::new(Some(rx)),
            tracker: TaskTracker::new(),
            metrics,
        }
    }

    /// A turn to open a session; agents beyond [`MAX_OPENING`] wait for one, holding no
    /// database connection.
    pub(crate) async fn opening_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.opening.acquire().await.ok()
    }

    pub fn metrics(&self) -> &DispatchMetrics {
        &self.metrics
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    pub fn config(&self) -> &DispatchConfig {
        &self.config
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the node's session if this replica holds it.
    pub fn wake(&self, node_id: &str, flags: u8) {
        if let Some(slot) = self.sessions().get(node_id) {
            slot.wake.raise(flags);
        }
    }

    /// After notices may have been lost: every session re-reads everything.
    pub fn wake_all(&self) {
        for slot in self.sessions().values() {
            slot.wake.raise(EVERYTHING);
        }
    }

    /// How many sessions this replica holds.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    fn deliver(&self, node_id: &str, generation: i64, event: SessionEvent) {
        if let Some(slot) = self.sessions().get(node_id)
            && slot.generation == generation
        {
            let _ = slot.events.send(event);
        }
    }

    /// Ends every session (the lease was lost, or the replica stops).
    pub fn close_all(&self) {
        for slot in self.sessions().values() {
            slot.cancel.cancel();
        }
    }

    async fn write(&self, write: Write) -> bool {
        self.writes.send(write).await.is_ok()
    }

    fn attach(&self, node_id: &str, generation: i64) -> Attached {
        let wake = Arc::new(Wake::default());
        let (events, events_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let previous = self.sessions().insert(
            node_id.to_owned(),
            Slot {
                generation,
                wake: wake.clone(),
                events,
                cancel: cancel.clone(),
            },
        );
        if let Some(previous) = previous {
            // The agent reconnected to this replica before its old stream noticed.
            previous.cancel.cancel();
        }
        Attached {
            wake,
            events: events_rx,
            cancel,
        }
    }

    fn detach(&self, node_id: &str, generation: i64) {
        let mut sessions = self.sessions();
        if sessions
            .get(node_id)
            .is_some_and(|slot| slot.generation == generation)
        {
            sessions.remove(node_id);
        }
    }

    /// Runs `task` as part of the dispatcher: [`Dispatcher::drained`] waits for it.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// The group commit's queue, handed to its task once.
    pub(crate) fn take_writes(&self) -> Option<mpsc::Receiver<Write>> {
        self.writes_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Waits for every session and the writer to finish (after shutdown was signalled).
    pub async fn drained(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

struct Attached {
    wake: Arc<Wake>,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    cancel: CancellationToken,
}

/// What the agent said when it connected.
pub struct Hello {
    pub agent_version: String,
    pub capabilities: Vec<castplane_proto::v1::PluginCapability>,
    pub services: Vec<apb::ObservedService>,
}

pub(crate) use session::OutboundStream;

/// Seconds between two of an action's instants (milliseconds), if both happened.
fn seconds_between(from: i64, to: Option<i64>) -> Option<f64> {
    to.and_then(|to| to.checked_sub(from))
        .map(|ms| ms.max(0) as f64 / 1000.0)
}

impl DispatchMetrics {
    /// An action was claimed for its node: how long it waited queued.
    pub(crate) fn dispatched(&self, action: &action::Model) {
        if let Some(wait) = seconds_between(action.create_time, action.dispatch_time) {
            self.queue_wait
                .get_or_create(&ActionLabels {
                    action: action.kind,
                })
                .observe(wait);
        }
    }

    /// An action reached its final state, by an agent's result or by its deadline.
    pub(crate) fn finished(&self, action: &action::Model) {
        let labels = ActionOutcomeLabels {
            action: action.kind,
            state: action.state,
        };
        self.actions_finished.get_or_create(&labels).inc();
        if let Some(total) = seconds_between(action.create_time, action.finish_time) {
            self.duration.get_or_create(&labels).observe(total);
        }
        if let Some(dispatched) = action.dispatch_time
            && let Some(execution) = seconds_between(dispatched, action.finish_time)
        {
            self.execution.get_or_create(&labels).observe(execution);
        }
    }
}
