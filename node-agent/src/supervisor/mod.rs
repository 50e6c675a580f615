//! Process supervision of the node's services.
//!
//! Each service has a directory under `services_dir` (layout in `files.rs`) and one task (an
//! `Actor` in `actor.rs`) that owns its processes: it executes start/stop/restart/delete and
//! reconcile commands one at a time, restarts the server with backoff when it dies while it
//! should run, gives up after a crash loop, and publishes observed state and statistics.
//!
//! An audio service with AutoDJ has a second process, liquidsoap, supervised as a sibling unit
//! of the server (`unit.rs` runs either kind of process; `actor.rs` explains how the two are
//! ordered and reported). AutoDJ plays the owner's media library from
//! `media_dir/<customer id>/`, which belongs to the customer: it is never deleted, neither with
//! the service nor when the service changes hands (AutoDJ then plays the new owner's).
//!
//! Servers run in their own process groups with their output in a file, so they survive the
//! agent: [`Supervisor::detach`] leaves them running and the next agent re-adopts them from
//! `process.json` / the server's pid file (AutoDJ: `autodj.json`) ([`Supervisor::adopt_existing`]),
//! verified against `/proc/PID/cmdline` and the process start time, without restarting them.
//!
//! A running service whose spec gets a newer `generation` is updated by re-rendering its config
//! and sending the plugin's reload signal (SIGHUP for icecast2) when the plugin deems that
//! enough, or by a restart otherwise (icecast2: when its port changes, because a reload does not
//! re-bind sockets). A source already connected keeps its old mount limits until it reconnects.
//! A plugin may also say that nothing the server reads changed ([`plugins::UpdateMode::Rewrite`]):
//! the config is rewritten without a signal (nginx-rtmp, whose reload disturbs broadcasters;
//! icecast2 when its config comes out the same, e.g. for a new owner). AutoDJ cannot reload: it
//! restarts when its script changes (owner, bitrate, name), starts when turned on and stops
//! when turned off, while the server takes the change by reload and keeps its pid.

mod actor;
pub(crate) mod files;
mod process;
pub(crate) mod unit;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use castplane_proto::agent::v1::{ObservedService, ServiceSpec};
use castplane_proto::v1::{ObservedState, PluginCapability};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::plugins::{self, Plugins};
use actor::{Actor, Command, Reply, Shared};
use process::Proc;
use unit::{Ctx, Unit};

#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// `<agent data dir>/services`; one directory per service.
    pub services_dir: PathBuf,
    /// `<agent data dir>/media`; one media library per customer, played by AutoDJ.
    pub media_dir: PathBuf,
    /// How long a server gets after SIGTERM before its process group is killed.
    pub stop_grace: Duration,
    /// This many unexpected exits within `crash_loop_window` → FAILED, no more restarts.
    pub crash_loop_exits: u32,
    pub crash_loop_window: Duration,
    pub stats_interval: Duration,
    pub ready_timeout: Duration,
    /// Restart and crash-loop counters (`crate::metrics`).
    pub metrics: crate::metrics::SupervisorMetrics,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            services_dir: PathBuf::from("services"),
            media_dir: PathBuf::from("media"),
            stop_grace: Duration::from_secs(10),
            crash_loop_exits: 5,
            crash_loop_window: Duration::from_secs(60),
            stats_interval: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(15),
            metrics: Default::default(),
        }
    }
}

/// Runs and watches the node's streaming servers. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<SupervisorConfig>,
    plugins: Arc<Plugins>,
    /// See [`unit::Ctx::start_slots`].
    start_slots: Arc<Semaphore>,
    services: Mutex<HashMap<String, Arc<Handle>>>,
    events: broadcast::Sender<ObservedService>,
    cancel: CancellationToken,
    /// Background deletions of services no longer assigned here.
    tasks: TaskTracker,
    /// The last capability probe, and the programs it saw.
    capabilities: Mutex<Option<(CapabilityFingerprint, Vec<PluginCapability>)>>,
}

type CapabilityFingerprint = Vec<(PathBuf, u64, Option<std::time::SystemTime>)>;

struct Handle {
    tx: mpsc::UnboundedSender<(Command, tracing::Span)>,
    shared: Arc<Mutex<Shared>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Handle {
    /// Hands `command` to the service's actor with the caller's span, so that what the actor
    /// does for it (render, spawn, readiness probe, stop) is part of the caller's trace — an
    /// action's. Gives the command back if the actor has ended.
    fn send(&self, command: Command) -> Result<(), Command> {
        self.tx
            .send((command, tracing::Span::current()))
            .map_err(|mpsc::error::SendError((command, _))| command)
    }
}

/// What a new actor starts from: nothing (a new service) or what adoption found.
#[derive(Default)]
struct Initial {
    spec: Option<ServiceSpec>,
    proc: Option<Proc>,
    running_generation: Option<u64>,
    /// AutoDJ still running, and the generation its script came from.
    sibling: Option<(Proc, u64)>,
}

/// Why a supervisor command did not succeed. Callers tell an agent that is going away (the
/// command may be retried by the next one) from a command that failed on its merits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("service {0} is busy; try again")]
    Busy(String),
    #[error("invalid service id {0:?}")]
    InvalidId(String),
    /// The operation ran and failed; the text says why (as the service's status does).
    #[error("{0}")]
    Failed(String),
}

/// Ids become directory names, so only a safe alphabet is accepted (no `/`, no `..`).
pub fn valid_service_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_id(id: &str) -> Result<(), SupervisorError> {
    if valid_service_id(id) {
        Ok(())
    } else {
        Err(SupervisorError::InvalidId(id.to_owned()))
    }
}

/// Fills in where the service's servers listen when the node names no bind address: what its
/// public host resolves to on this host. An address that is not this host's cannot be bound,
/// so it is refused with what to do rather than silently widened to every interface.
pub async fn resolve_bind_address(spec: &mut ServiceSpec) -> Result<(), String> {
    if !spec.bind_address.is_empty() {
        return spec
            .bind_address
            .parse::<std::net::IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("invalid bind address {:?}", spec.bind_address));
    }
    let host = spec
        .public_host
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    if host.is_empty() {
        return Err("the service has neither a bind address nor a public host".to_owned());
    }
    let candidates: Vec<std::net::IpAddr> = match host.parse() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), 0))
            .await
            .map_err(|e| {
                format!(
                    "cannot resolve the public host {host:?} to find the bind address ({e}); set the node's bind address"
                )
            })?
            .map(|a| a.ip())
            .collect(),
    };
    let local = candidates
        .iter()
        .copied()
        .find(|ip| std::net::TcpListener::bind((*ip, 0)).is_ok());
    match local {
        Some(ip) => {
            spec.bind_address = ip.to_string();
            Ok(())
        }
        None => Err(format!(
            "the public host {host:?} resolves to {}, none of them an address of this host; set the node's bind address (0.0.0.0 for every interface)",
            candidates
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

const EVENT_CAPACITY: usize = 1024;
/// A command is retried on a fresh actor this often if the old one went away meanwhile (a
/// delete raced with it).
const COMMAND_ATTEMPTS: usize = 3;

impl Supervisor {
    pub fn new(mut config: SupervisorConfig) -> Self {
        // Servers get absolute paths in their command lines and configs, and adoption compares
        // them, so they must not depend on the agent's working directory.
        if let Ok(abs) = std::path::absolute(&config.services_dir) {
            config.services_dir = abs;
        }
        if let Ok(abs) = std::path::absolute(&config.media_dir) {
            config.media_dir = abs;
        }
        let plugins = Plugins::new(config.media_dir.clone());
        Supervisor {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                plugins: Arc::new(plugins),
                start_slots: Arc::new(Semaphore::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                )),
                services: Mutex::new(HashMap::new()),
                events: broadcast::channel(EVENT_CAPACITY).0,
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                capabilities: Mutex::new(None),
            }),
        }
    }

    /// Which plugins this host can run; see [`plugins::detect_capabilities`].
    /// Probed once, and again only when one of the programs changed (installed, upgraded,
    /// removed).
    pub async fn capabilities(&self) -> Vec<PluginCapability> {
        let fingerprint = tokio::task::spawn_blocking(plugins::capability_fingerprint)
            .await
            .unwrap_or_default();
        {
            let cached = self
                .inner
                .capabilities
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((known, capabilities)) = cached.as_ref()
                && *known == fingerprint
            {
                return capabilities.clone();
            }
        }
        let capabilities = plugins::detect_capabilities().await;
        *self
            .inner
            .capabilities
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((fingerprint, capabilities.clone()));
        capabilities
    }

    fn service_dir(&self, id: &str) -> PathBuf {
        self.inner.config.services_dir.join(id)
    }

    fn services(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Handle>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so poisoning is ignored.
        self.inner
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, id: &str) -> Option<Arc<Handle>> {
        self.services().get(id).cloned()
    }

    /// The service's handle, spawning its actor if it has none.
    fn handle_or_spawn(
        &self,
        id: &str,
        initial: impl FnOnce() -> Initial,
    ) -> Result<Arc<Handle>, SupervisorError> {
        let mut services = self.services();
        if let Some(h) = services.get(id) {
            return Ok(h.clone());
        }
        if self.inner.cancel.is_cancelled() {
            return Err(SupervisorError::ShuttingDown);
        }
        let initial = initial();
        // A spec loaded from the service directory is what the directory holds.
        let initial_persisted = initial.spec.clone();
        let (state, message, pid) = match &initial.proc {
            Some(p) => (
                ObservedState::Running,
                "adopted running process".to_owned(),
                Some(p.pid()),
            ),
            None => (ObservedState::Stopped, "stopped".to_owned(), None),
        };
        let sibling_pid = initial.sibling.as_ref().map(|(p, _)| p.pid());
        let mut shared = Shared::new(state, message, pid, sibling_pid);
        shared.generation = initial.spec.as_ref().map_or(0, |s| s.generation);
        let shared = Arc::new(Mutex::new(shared));
        let ctx = Ctx {
            id: id.to_owned(),
            dir: self.service_dir(id),
            config: self.inner.config.clone(),
            cancel: self.inner.cancel.child_token(),
            start_slots: self.inner.start_slots.clone(),
        };
        let plugins = &self.inner.plugins;
        let server_plugin = initial
            .spec
            .as_ref()
            .and_then(|s| plugins.for_type(s.r#type).ok());
        let sibling_plugin = initial
            .spec
            .as_ref()
            .and_then(|s| plugins.sibling_for_type(s.r#type));
        let at_generation = |generation: u64| {
            initial.spec.as_ref().map(|spec| ServiceSpec {
                generation,
                ..spec.clone()
            })
        };
        let running_spec = match (&initial.proc, initial.running_generation) {
            (Some(_), Some(generation)) => at_generation(generation),
            _ => None,
        };
        let sibling_running_spec = initial
            .sibling
            .as_ref()
            .and_then(|(_, generation)| at_generation(*generation));
        let (sibling_proc, _) = initial.sibling.unzip();
        let actor = Actor {
            server: Unit::adopted(&ctx, server_plugin.as_deref(), initial.proc, running_spec),
            sibling: Unit::adopted(
                &ctx,
                sibling_plugin.as_deref(),
                sibling_proc,
                sibling_running_spec,
            ),
            ctx,
            plugins: self.inner.plugins.clone(),
            shared: shared.clone(),
            events: self.inner.events.clone(),
            desired_running: initial.spec.as_ref().is_some_and(|s| s.desired_running),
            spec: initial.spec,
            failed_generation: None,
            sibling_failed_generation: None,
            sibling_trouble: None,
            persisted: initial_persisted,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(actor.run(rx));
        let handle = Arc::new(Handle {
            tx,
            shared,
            task: Mutex::new(Some(task)),
        });
        services.insert(id.to_owned(), handle.clone());
        Ok(handle)
    }

    fn forget(&self, id: &str, handle: &Arc<Handle>) {
        let mut services = self.services();
        if services.get(id).is_some_and(|h| Arc::ptr_eq(h, handle)) {
            services.remove(id);
        }
    }

    /// Sends a command to the service's actor and waits for its answer.
    async fn call(&self, id: &str, make: impl Fn(Reply) -> Command) -> Result<(), SupervisorError> {
        for _ in 0..COMMAND_ATTEMPTS {
            let handle = self.handle_or_spawn(id, Initial::default)?;
            let (tx, rx) = oneshot::channel();
            if handle.send(make(tx)).is_ok()
                && let Ok(result) = rx.await
            {
                return result.map_err(|reason| self.failure(reason));
            }
            if self.inner.cancel.is_cancelled() {
                return Err(SupervisorError::ShuttingDown);
            }
            // The actor ended (deleted) before answering; a fresh one takes the command.
            self.forget(id, &handle);
        }
        Err(SupervisorError::Busy(id.to_owned()))
    }

    /// A command's failure; one cut short by the agent's shutdown says so.
    fn failure(&self, reason: String) -> SupervisorError {
        if self.inner.cancel.is_cancelled() {
            SupervisorError::ShuttingDown
        } else {
            SupervisorError::Failed(reason)
        }
    }

    /// At agent start: loads every service directory's spec and re-adopts servers still
    /// running, without restarting them. Services that should run but do not are started
    /// (in the background). Idempotent: services already known are left alone.
    pub async fn adopt_existing(&self) -> anyhow::Result<()> {
        self.load(None, true).await
    }

    /// Loads service directories not known yet (`only`: just that one) and adopts their running
    /// servers; `autostart` starts those that should run but do not.
    async fn load(&self, only: Option<&str>, autostart: bool) -> anyhow::Result<()> {
        let services_dir = self.inner.config.services_dir.clone();
        let run_as_other = nix::unistd::geteuid().is_root();
        let dir = services_dir.clone();
        tokio::task::spawn_blocking(move || files::prepare_root_dir(&dir, run_as_other))
            .await
            .context("preparing the services directory")?
            .with_context(|| format!("preparing {}", services_dir.display()))?;

        let found = {
            let dir = services_dir.clone();
            let plugins = self.inner.plugins.clone();
            let known: HashSet<String> = self.services().keys().cloned().collect();
            let only = only.map(str::to_owned);
            tokio::task::spawn_blocking(move || {
                scan_services(&dir, &plugins, &known, only.as_deref())
            })
            .await
            .context("scanning the services directory")?
            .with_context(|| format!("reading {}", services_dir.display()))?
        };

        for Scanned {
            id,
            spec,
            adopted,
            sibling,
        } in found
        {
            let desired = spec.desired_running;
            let adopted_pid = adopted.as_ref().map(|(p, _)| p.pid());
            let sibling_pid = sibling.as_ref().map(|(p, _)| p.pid());
            let wants_sibling = desired && self.inner.plugins.sibling(&spec).is_some();
            let spawn_spec = spec.clone();
            let handle = match self.handle_or_spawn(&id, move || {
                let (proc, generation) = adopted.map_or((None, None), |(p, g)| (Some(p), Some(g)));
                Initial {
                    spec: Some(spawn_spec),
                    proc,
                    running_generation: generation,
                    sibling,
                }
            }) {
                Ok(h) => h,
                Err(e) => anyhow::bail!("{e}"),
            };
            if let Some(pid) = sibling_pid {
                tracing::info!(media_service_id = %id, pid, "adopted running AutoDJ");
            }
            match adopted_pid {
                Some(pid) => {
                    tracing::info!(media_service_id = %id, pid, "adopted running server");
                    if autostart && wants_sibling != sibling_pid.is_some() {
                        // AutoDJ died (or should not run) while no agent watched.
                        let _ = handle.send(Command::Ensure(Box::new(spec)));
                    }
                }
                None if desired && autostart => {
                    tracing::info!(media_service_id = %id, "server should run but is not running; starting it");
                    let _ = handle.send(Command::Ensure(Box::new(spec)));
                }
                None if sibling_pid.is_some() && autostart => {
                    tracing::info!(media_service_id = %id, "AutoDJ runs without its server; stopping it");
                    let _ = handle.send(Command::Ensure(Box::new(spec)));
                }
                None => tracing::info!(media_service_id = %id, "known stopped service"),
            }
        }
        Ok(())
    }

    /// Every known service's observed state now, ordered by id.
    pub async fn observed(&self) -> Vec<ObservedService> {
        let mut all: Vec<ObservedService> = self
            .services()
            .iter()
            .filter_map(|(id, h)| h.shared.lock().ok().map(|s| s.to_observed(id)))
            .collect();
        all.sort_by(|a, b| a.media_service_id.cmp(&b.media_service_id));
        all
    }

    /// Observed-state updates: one on every state change, and one per `stats_interval` with
    /// fresh statistics for running services.
    pub fn subscribe(&self) -> broadcast::Receiver<ObservedService> {
        self.inner.events.subscribe()
    }

    /// Converges on the control plane's full desired state without waiting for any service:
    /// each service's actor does the work. Services known here but absent from `desired` are
    /// stopped and their directories removed. A service that is FAILED is not retried for the
    /// same generation (crash-loop protection holds); a newer generation or an explicit start
    /// retries it.
    pub async fn reconcile(&self, desired: Vec<ServiceSpec>) {
        // Directories of services this agent has not loaded yet (adopt_existing not called)
        // must be adopted first, or their running servers would be orphaned by the cleanup.
        if let Err(e) = self.adopt_existing().await {
            tracing::warn!(error = %e, "cannot scan the services directory before reconciling");
        }
        let wanted: HashSet<String> = desired.iter().map(|s| s.id.clone()).collect();
        self.ensure(desired).await;
        let unwanted: Vec<String> = self
            .services()
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        self.remove(unwanted);
    }

    /// Converges on changes of the desired state: `changed` services (whole specs) and
    /// `removed` ones, leaving every other service alone.
    pub async fn apply_changes(&self, changed: Vec<ServiceSpec>, removed: Vec<String>) {
        self.ensure(changed).await;
        self.remove(removed);
    }

    /// Hands each spec to its service's actor, without waiting for the outcome.
    async fn ensure(&self, specs: Vec<ServiceSpec>) {
        for mut spec in specs {
            if let Err(e) = check_id(&spec.id) {
                tracing::warn!(error = %e, "ignoring desired service");
                continue;
            }
            // Unresolved, the plugin refuses to start it and the service reports why.
            if let Err(e) = resolve_bind_address(&mut spec).await {
                tracing::warn!(media_service_id = %spec.id, error = %e, "no bind address");
            }
            let id = spec.id.clone();
            let mut spec = Some(spec);
            for _ in 0..COMMAND_ATTEMPTS {
                let handle = match self.handle_or_spawn(&id, Initial::default) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(media_service_id = %id, error = %e, "cannot reconcile service");
                        break;
                    }
                };
                let Some(s) = spec.take() else { break };
                match handle.send(Command::Ensure(Box::new(s))) {
                    Ok(()) => break,
                    Err(cmd) => {
                        self.forget(&id, &handle);
                        if let Command::Ensure(s) = cmd {
                            spec = Some(*s);
                        }
                    }
                }
            }
        }
    }

    /// Deletes services the node must no longer have, in the background.
    fn remove(&self, ids: Vec<String>) {
        for id in ids {
            if !valid_service_id(&id) {
                continue;
            }
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                tracing::info!(media_service_id = %id, "service is no longer assigned to this node; deleting");
                if let Err(e) = this.delete(&id).await {
                    tracing::warn!(media_service_id = %id, error = %e, "cannot delete unassigned service");
                }
            });
        }
    }

    /// Starts the service (desired: running) and waits until it is ready, AutoDJ included.
    /// Already running → `Ok` without a restart (a newer spec generation is applied by reload
    /// or restart). Clears a crash loop. If the server starts but AutoDJ does not, the server
    /// keeps running (RUNNING, the message says why AutoDJ is down, and AutoDJ is retried with
    /// backoff) and the start fails with AutoDJ's reason.
    #[tracing::instrument(name = "start", skip_all, fields(media_service_id = %spec.id, generation = spec.generation))]
    pub async fn start(&self, spec: &ServiceSpec) -> Result<(), SupervisorError> {
        check_id(&spec.id)?;
        let mut spec = spec.clone();
        resolve_bind_address(&mut spec)
            .await
            .map_err(SupervisorError::Failed)?;
        self.call(&spec.id, |reply| {
            Command::Start(Box::new(spec.clone()), reply)
        })
        .await
    }

    /// Stops the service (desired: stopped). Stopped or unknown → `Ok`.
    #[tracing::instrument(name = "stop", skip_all, fields(media_service_id = %service_id))]
    pub async fn stop(&self, service_id: &str) -> Result<(), SupervisorError> {
        if !valid_service_id(service_id) {
            return Ok(());
        }
        self.load_if_on_disk(service_id).await;
        if self.handle(service_id).is_none() {
            return Ok(());
        }
        self.call(service_id, Command::Stop).await
    }

    /// A service directory this supervisor has not loaded (adopt_existing not called yet) may
    /// still have a running server; load it so stop/delete reach that server.
    async fn load_if_on_disk(&self, service_id: &str) {
        if self.handle(service_id).is_none()
            && self.service_dir(service_id).is_dir()
            && let Err(e) = self.load(Some(service_id), false).await
        {
            tracing::warn!(media_service_id = %service_id, error = %e, "cannot load service directory");
        }
    }

    /// Stop + start: always a new process. Clears a crash loop.
    #[tracing::instrument(name = "restart", skip_all, fields(media_service_id = %spec.id, generation = spec.generation))]
    pub async fn restart(&self, spec: &ServiceSpec) -> Result<(), SupervisorError> {
        check_id(&spec.id)?;
        let mut spec = spec.clone();
        resolve_bind_address(&mut spec)
            .await
            .map_err(SupervisorError::Failed)?;
        self.call(&spec.id, |reply| {
            Command::Restart(Box::new(spec.clone()), reply)
        })
        .await
    }

    /// Stops the service and removes its whole directory. Unknown → `Ok`.
    #[tracing::instrument(name = "delete", skip_all, fields(media_service_id = %service_id))]
    pub async fn delete(&self, service_id: &str) -> Result<(), SupervisorError> {
        check_id(service_id)?;
        self.load_if_on_disk(service_id).await;
        if let Some(handle) = self.handle(service_id) {
            let (tx, rx) = oneshot::channel();
            if handle.send(Command::Delete(tx)).is_ok() {
                match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(self.failure(e)),
                    Err(_) if self.inner.cancel.is_cancelled() => {
                        return Err(SupervisorError::ShuttingDown);
                    }
                    // The actor was already gone (deleted concurrently): fall through.
                    Err(_) => {}
                }
            }
            self.forget(service_id, &handle);
            if let Ok(mut task) = handle.task.lock() {
                task.take();
            }
        }
        // Also covers a directory this supervisor never loaded.
        let dir = self.service_dir(service_id);
        tokio::task::spawn_blocking(move || {
            files::remove_service_dir(&dir).map_err(|e| {
                SupervisorError::Failed(format!("cannot remove {}: {e}", dir.display()))
            })
        })
        .await
        .map_err(|e| SupervisorError::Failed(format!("removing the service directory: {e}")))?
    }

    pub async fn pid(&self, service_id: &str) -> Option<u32> {
        self.handle(service_id)
            .and_then(|h| h.shared.lock().ok().and_then(|s| s.pid))
    }

    /// The pid of the service's sibling unit: AutoDJ's liquidsoap, for an audio service.
    pub async fn sibling_pid(&self, service_id: &str) -> Option<u32> {
        self.handle(service_id)
            .and_then(|h| h.shared.lock().ok().and_then(|s| s.sibling_pid))
    }

    /// Agent shutdown: ends supervision but leaves every server running for the next agent to
    /// adopt. Afterwards commands fail with "the agent is shutting down".
    pub async fn detach(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        let tasks: Vec<JoinHandle<()>> = self
            .services()
            .values()
            .filter_map(|h| h.task.lock().ok().and_then(|mut t| t.take()))
            .collect();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "service task ended abnormally");
            }
        }
    }

    /// Stops every service (tests, demo cleanup).
    pub async fn stop_all(&self) {
        let ids: Vec<String> = self.services().keys().cloned().collect();
        let stops = ids.iter().map(|id| async move {
            if let Err(e) = self.stop(id).await {
                tracing::warn!(media_service_id = %id, error = %e, "cannot stop service");
            }
        });
        futures::future::join_all(stops).await;
    }
}

/// A service directory found at agent start.
struct Scanned {
    id: String,
    spec: ServiceSpec,
    /// The server still running for it, and the generation its config came from.
    adopted: Option<(Proc, u64)>,
    /// The same for its sibling unit (AutoDJ).
    sibling: Option<(Proc, u64)>,
}

/// Blocking: reads every service directory not yet `known`.
fn scan_services(
    services_dir: &Path,
    plugins: &Plugins,
    known: &HashSet<String>,
    only: Option<&str>,
) -> std::io::Result<Vec<Scanned>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(services_dir)? {
        let entry = entry?;
        let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !valid_service_id(&id)
            || known.contains(&id)
            || only.is_some_and(|o| o != id)
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let dir = entry.path();
        let spec = match files::load_spec(&dir) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!(media_service_id = %id, error = %e, "service directory without a readable spec; leaving it alone");
                continue;
            }
        };
        let adopted = plugins
            .for_type(spec.r#type)
            .ok()
            .and_then(|plugin| find_running(plugin.as_ref(), &dir, &spec));
        // Whether or not the spec still asks for it: one that runs must be adopted to be stopped.
        let sibling = plugins
            .sibling_for_type(spec.r#type)
            .and_then(|plugin| find_running(plugin.as_ref(), &dir, &spec));
        found.push(Scanned {
            id,
            spec,
            adopted,
            sibling,
        });
    }
    Ok(found)
}

/// The plugin's process still running for `dir`, from its record (`process.json`) or else its
/// own pid file, verified by its command line (and start time, against pid reuse).
fn find_running(
    plugin: &dyn plugins::Plugin,
    dir: &Path,
    spec: &ServiceSpec,
) -> Option<(Proc, u64)> {
    let record = files::load_process(dir, plugin.record_file());
    let mut candidates: Vec<(u32, Option<u64>, u64)> = Vec::new();
    if let Some(r) = record {
        candidates.push((r.pid, Some(r.start_time), r.generation));
    }
    if let Some(pid) = plugin
        .pid_file(dir)
        .as_deref()
        .and_then(files::read_pid_file)
    {
        // Without our record the generation is unknown; assume the persisted spec's.
        candidates.push((
            pid,
            None,
            record
                .filter(|r| r.pid == pid)
                .map_or(spec.generation, |r| r.generation),
        ));
    }
    for (pid, start_time, generation) in candidates {
        let Some(stat) = process::stat(pid) else {
            continue;
        };
        if stat.state == 'Z'
            || stat.state == 'X'
            || start_time.is_some_and(|t| t != stat.start_time)
        {
            continue;
        }
        if !process::cmdline(pid).is_some_and(|cmd| plugin.owns_process(&cmd, dir)) {
            continue;
        }
        let own_group = stat.pgrp == pid as i32;
        return Some((
            Proc::Adopted {
                pid,
                start_time: stat.start_time,
                own_group,
            },
            generation,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ids_cannot_escape_the_services_dir() {
        assert!(valid_service_id("svc-01_a"));
        assert!(!valid_service_id(""));
        assert!(!valid_service_id(".."));
        assert!(!valid_service_id("a/b"));
        assert!(!valid_service_id("a b"));
        assert!(!valid_service_id(&"x".repeat(129)));
    }
}
