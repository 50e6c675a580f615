//! One task per service: it owns the service's processes and applies commands one at a time, so
//! operations on a service never interleave, while different services proceed in parallel.
//!
//! A service has a server unit and, for an audio service with AutoDJ, a sibling unit
//! (liquidsoap; see `unit.rs` and `plugins::autodj`). The sibling feeds one of the server's
//! mounts, so it runs only while the server does: it starts once the server is ready and stops
//! before the server stops, restarts or dies (left alone it would retry a server that is gone,
//! and a crash-looping server must not leave it behind). The service's observed state is the
//! server's — RUNNING while the server runs, whatever AutoDJ does — and the status message says
//! when AutoDJ is down and why. AutoDJ has its own restart backoff and crash-loop protection,
//! so a failing liquidsoap never takes the server (and live broadcasting) down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use castplane_proto::agent::v1::{ObservedService, ServiceSpec};
use castplane_proto::v1::{ObservedState, ServiceStats, ServiceStatus};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Instrument;

use super::files;
use super::process::{Exit, Proc};
use super::unit::{self, Ctx, Role, Unit};
use crate::plugins::{Plugin, Plugins, UpdateMode};

pub type Reply = oneshot::Sender<Result<(), String>>;

pub enum Command {
    /// From `reconcile`: converge on the spec; nobody waits for the outcome.
    Ensure(Box<ServiceSpec>),
    Start(Box<ServiceSpec>, Reply),
    Restart(Box<ServiceSpec>, Reply),
    Stop(Reply),
    Delete(Reply),
}

/// The part of a service's state others read: `observed()`, `pid()`, `sibling_pid()`.
pub struct Shared {
    pub state: ObservedState,
    pub message: String,
    pub stats: Option<ServiceStats>,
    pub pid: Option<u32>,
    pub sibling_pid: Option<u32>,
    pub observe_time: SystemTime,
    /// The spec generation the actor has applied (converged on, or acted on).
    pub generation: u64,
}

impl Shared {
    pub fn new(
        state: ObservedState,
        message: String,
        pid: Option<u32>,
        sibling_pid: Option<u32>,
    ) -> Self {
        Shared {
            state,
            message,
            stats: None,
            pid,
            sibling_pid,
            observe_time: SystemTime::now(),
            generation: 0,
        }
    }

    pub fn to_observed(&self, id: &str) -> ObservedService {
        ObservedService {
            media_service_id: id.to_owned(),
            status: Some(ServiceStatus {
                state: self.state as i32,
                message: self.message.clone(),
                stats: self.stats.clone(),
                observe_time: Some(self.observe_time.into()),
            }),
            generation: self.generation,
        }
    }
}

const LOG_POLL: Duration = Duration::from_millis(250);
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The status message while AutoDJ starts beside a running server.
const SIBLING_STARTING: &str = "starting AutoDJ";

/// Restart delay after the `n`th unexpected exit within the crash-loop window: 1, 2, 4 … s.
pub fn backoff_delay(exits_in_window: usize) -> Duration {
    let doublings = exits_in_window.saturating_sub(1).min(16) as u32;
    BACKOFF_INITIAL
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

pub struct Actor {
    pub ctx: Ctx,
    pub plugins: Arc<Plugins>,
    pub shared: Arc<Mutex<Shared>>,
    pub events: broadcast::Sender<ObservedService>,
    /// The latest spec the control plane (or an action) gave.
    pub spec: Option<ServiceSpec>,
    pub desired_running: bool,
    /// The server (icecast2, nginx).
    pub server: Unit,
    /// AutoDJ beside the server; no process unless the spec asks for it and the server runs.
    pub sibling: Unit,
    /// Set while FAILED: the generation that failed. `reconcile` does not retry it (that would
    /// defeat crash-loop protection); a newer generation or an explicit start does.
    pub failed_generation: Option<u64>,
    /// The same for AutoDJ alone (crash loop, or a spec it cannot run).
    pub sibling_failed_generation: Option<u64>,
    /// Why AutoDJ is not running although wanted: the status message while the server runs.
    pub sibling_trouble: Option<String>,
    /// The spec as last written to the service directory.
    pub persisted: Option<ServiceSpec>,
}

enum Flow {
    Continue,
    Exit,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn wait_proc(proc: &mut Option<Proc>) -> Exit {
    match proc {
        Some(p) => p.wait().await,
        None => std::future::pending().await,
    }
}

impl Actor {
    /// Each command arrives with its sender's span (see `Handle::send`), and runs in it.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<(Command, tracing::Span)>) {
        let mut stats_tick = tokio::time::interval(self.ctx.config.stats_interval);
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut log_tick = tokio::time::interval(LOG_POLL);
        log_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let backoff = self.server.backoff_until;
            let sibling_backoff = self.sibling.backoff_until;
            tokio::select! {
                biased;
                () = self.ctx.cancel.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some((cmd, span)) => {
                        if let Flow::Exit = self.handle(cmd).instrument(span).await {
                            return;
                        }
                    }
                    // Every handle is gone: the supervisor was dropped. Like detach.
                    None => break,
                },
                exit = wait_proc(&mut self.server.proc) => self.on_exit(exit).await,
                exit = wait_proc(&mut self.sibling.proc) => self.on_sibling_exit(exit).await,
                () = sleep_until_opt(backoff) => self.on_backoff_elapsed().await,
                () = sleep_until_opt(sibling_backoff) => self.on_sibling_backoff_elapsed().await,
                _ = stats_tick.tick() => self.refresh_stats().await,
                _ = log_tick.tick() => {
                    self.server.poll_log();
                    self.sibling.poll_log();
                }
            }
        }
        self.server.detach(&self.ctx);
        self.sibling.detach(&self.ctx);
    }

    async fn handle(&mut self, cmd: Command) -> Flow {
        let flow = self.handle_command(cmd).await;
        self.mark_applied();
        flow
    }

    /// Publishes the generation now applied, when it moved.
    fn mark_applied(&mut self) {
        let generation = self.generation();
        let observed = {
            let Ok(mut shared) = self.shared.lock() else {
                return;
            };
            if shared.generation == generation {
                return;
            }
            shared.generation = generation;
            shared.to_observed(&self.ctx.id)
        };
        let _ = self.events.send(observed);
    }

    async fn handle_command(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Ensure(spec) => {
                // Desired states are applied apart from actions: one sent before an action
                // may arrive after it, and must not undo it.
                if spec.generation < self.generation() {
                    tracing::debug!(media_service_id = %self.ctx.id, generation = spec.generation, "ignoring an older desired state");
                    return Flow::Continue;
                }
                self.set_spec(*spec, None).await;
                self.converge().await;
            }
            Command::Start(spec, reply) => {
                self.set_spec(*spec, Some(true)).await;
                self.clear_crash_state();
                let result = match &self.server.proc {
                    Some(_) => self.apply_newer_spec().await,
                    None => self.start_now().await,
                };
                let _ = reply.send(result);
            }
            Command::Restart(spec, reply) => {
                self.set_spec(*spec, Some(true)).await;
                self.clear_crash_state();
                let result = self.restart_now().await;
                let _ = reply.send(result);
            }
            Command::Stop(reply) => {
                self.desired_running = false;
                self.persist_spec().await;
                let _ = reply.send(self.stop_to_stopped().await);
            }
            Command::Delete(reply) => {
                self.desired_running = false;
                if let Err(e) = self.stop_to_stopped().await {
                    let _ = reply.send(Err(e));
                    return Flow::Continue;
                }
                // The service directory only: media libraries live elsewhere and are the
                // customer's.
                let dir = self.ctx.dir.clone();
                let removed =
                    tokio::task::spawn_blocking(move || files::remove_service_dir(&dir)).await;
                match removed {
                    Ok(Ok(())) => {
                        tracing::info!(media_service_id = %self.ctx.id, "service deleted");
                        let _ = reply.send(Ok(()));
                        return Flow::Exit;
                    }
                    Ok(Err(e)) => {
                        let _ = reply.send(Err(format!(
                            "cannot remove {}: {e}",
                            self.ctx.dir.display()
                        )));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!(
                            "cannot remove {}: {e}",
                            self.ctx.dir.display()
                        )));
                    }
                }
            }
        }
        Flow::Continue
    }

    /// `desired`: the running/stopped wish of an action, which overrides the spec's field.
    async fn set_spec(&mut self, mut spec: ServiceSpec, desired: Option<bool>) {
        self.desired_running = desired.unwrap_or(spec.desired_running);
        spec.desired_running = self.desired_running;
        self.spec = Some(spec);
        self.persist_spec().await;
    }

    /// Writes the spec for the next agent, off the runtime (it is fsynced), and only when it
    /// differs from what was last written.
    async fn persist_spec(&mut self) {
        let Some(spec) = self.spec.as_mut() else {
            return;
        };
        spec.desired_running = self.desired_running;
        if self.persisted.as_ref() == Some(spec) {
            return;
        }
        let dir = self.ctx.dir.clone();
        let to_write = spec.clone();
        let written = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).and_then(|()| files::save_spec(&dir, &to_write))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match written {
            Ok(()) => self.persisted = Some(spec.clone()),
            Err(e) => {
                tracing::warn!(media_service_id = %self.ctx.id, error = %e, "cannot persist service spec")
            }
        }
    }

    fn clear_crash_state(&mut self) {
        self.server.clear_failures();
        self.failed_generation = None;
        self.sibling.clear_failures();
        self.sibling_failed_generation = None;
        self.sibling_trouble = None;
    }

    fn plugin(&self) -> Result<Arc<dyn Plugin>, String> {
        let spec = self
            .spec
            .as_ref()
            .ok_or_else(|| "the service has no spec".to_owned())?;
        self.plugins.for_type(spec.r#type)
    }

    /// The plugin of whatever sibling may be running, wanted or not.
    fn sibling_plugin(&self) -> Option<Arc<dyn Plugin>> {
        self.plugins.sibling_for_type(self.spec.as_ref()?.r#type)
    }

    /// The sibling the spec asks for, if the service should run at all.
    fn wanted_sibling(&self) -> Option<Arc<dyn Plugin>> {
        if !self.desired_running {
            return None;
        }
        self.plugins.sibling(self.spec.as_ref()?)
    }

    fn generation(&self) -> u64 {
        self.spec.as_ref().map_or(0, |s| s.generation)
    }

    fn program(&self) -> &'static str {
        self.plugin().map(|p| p.program_name()).unwrap_or("server")
    }

    /// Makes the processes match the desired state (reconcile).
    async fn converge(&mut self) {
        let generation = self.generation();
        match (self.desired_running, self.server.proc.is_some()) {
            // Also stops a sibling adopted without its server.
            (false, _) => {
                let _ = self.stop_to_stopped().await;
            }
            (true, true) => {
                if let Err(e) = self.apply_newer_spec().await {
                    tracing::warn!(media_service_id = %self.ctx.id, error = %e, "cannot apply the new spec");
                }
            }
            (true, false) => {
                if self.server.backoff_until.is_some() {
                    // The pending restart will use the new spec.
                } else if self.failed_generation.is_some_and(|g| generation <= g) {
                    // Still FAILED for this spec; only a change or an explicit start retries.
                } else {
                    let _ = self.start_now().await;
                }
            }
        }
    }

    fn state(&self) -> ObservedState {
        self.shared
            .lock()
            .map(|s| s.state)
            .unwrap_or(ObservedState::Unknown)
    }

    fn set_state(&mut self, state: ObservedState, message: String) {
        let pid = self.server.pid();
        let sibling_pid = self.sibling.pid();
        let observed = {
            let Ok(mut shared) = self.shared.lock() else {
                return;
            };
            shared.state = state;
            shared.message = message;
            shared.pid = pid;
            shared.sibling_pid = sibling_pid;
            if state != ObservedState::Running {
                shared.stats = None;
            }
            shared.observe_time = SystemTime::now();
            shared.to_observed(&self.ctx.id)
        };
        tracing::info!(
            media_service_id = %self.ctx.id,
            state = state.as_str_name(),
            pid,
            sibling_pid,
            message = observed.status.as_ref().map_or("", |s| s.message.as_str()),
            "service state changed"
        );
        // No receivers is fine: nobody is listening yet.
        let _ = self.events.send(observed);
    }

    /// The message of a running service: empty, or what is wrong with AutoDJ.
    fn running_message(&self) -> String {
        self.sibling_trouble.clone().unwrap_or_default()
    }

    /// Publishes a change of AutoDJ: the message of a running service, and the pids.
    fn publish_sibling(&mut self) {
        if self.state() == ObservedState::Running {
            self.set_state(ObservedState::Running, self.running_message());
        } else if let Ok(mut shared) = self.shared.lock() {
            shared.sibling_pid = self.sibling.pid();
        }
    }

    /// A start the caller asked for: failures end in FAILED (no retry loop). AutoDJ starts once
    /// the server is ready; its failure fails the start but not the server.
    async fn start_now(&mut self) -> Result<(), String> {
        let program = self.program();
        self.server.backoff_until = None;
        // A sibling adopted while its server was down starts again with the server.
        if let Err(e) = self.stop_sibling().await {
            tracing::warn!(media_service_id = %self.ctx.id, error = %e, "cannot stop AutoDJ");
        }
        // Checked before anything runs: a start that could only half succeed fails clearly.
        if let (Some(sibling), Some(spec)) = (self.wanted_sibling(), &self.spec)
            && let Err(reason) = sibling.validate(spec)
        {
            self.failed_generation = Some(self.generation());
            self.set_state(ObservedState::Failed, reason.clone());
            return Err(reason);
        }
        self.set_state(ObservedState::Starting, format!("starting {program}"));
        match self.launch_server().await {
            Ok(()) => {
                self.failed_generation = None;
                self.set_state(ObservedState::Running, self.running_message());
                self.refresh_stats().await;
                self.ensure_sibling().await
            }
            Err(reason) => {
                self.failed_generation = Some(self.generation());
                self.set_state(ObservedState::Failed, reason.clone());
                Err(reason)
            }
        }
    }

    /// Stop + start, but only once the new start is known to be possible: a restart whose
    /// config cannot be written or whose ports are taken leaves the running server alone.
    async fn restart_now(&mut self) -> Result<(), String> {
        if self.server.proc.is_some()
            && let Err(reason) = self.prepare_server().await
        {
            return Err(format!(
                "{reason}; the running {} was left as it was",
                self.program()
            ));
        }
        self.stop_processes().await?;
        self.start_now().await
    }

    /// See [`Unit::prepare`].
    async fn prepare_server(&self) -> Result<(), String> {
        let spec = self
            .spec
            .as_ref()
            .ok_or_else(|| "the service has no spec".to_owned())?;
        let plugin = self.plugin()?;
        self.server
            .prepare(&self.ctx, plugin.as_ref(), spec, Role::Server)
            .await
            .map(|_| ())
    }

    async fn launch_server(&mut self) -> Result<(), String> {
        let spec = self
            .spec
            .clone()
            .ok_or_else(|| "the service has no spec".to_owned())?;
        let plugin = self.plugin()?;
        self.server
            .launch(&self.ctx, plugin.as_ref(), &spec, Role::Server)
            .await
    }

    /// Starts AutoDJ if the running server should have it and it is not running (unless it
    /// waits for its restart or gave up on this generation), and stops it if the spec no longer
    /// asks for it.
    async fn ensure_sibling(&mut self) -> Result<(), String> {
        let wanted = match self.server.proc {
            Some(_) => self.wanted_sibling(),
            None => None,
        };
        let (Some(plugin), Some(spec)) = (wanted, self.spec.clone()) else {
            let had_trouble = self.sibling_trouble.is_some();
            let result = self.stop_sibling().await;
            self.sibling.clear_failures();
            self.sibling_failed_generation = None;
            self.sibling_trouble = None;
            if had_trouble {
                self.publish_sibling();
            }
            return result;
        };
        if self.sibling.proc.is_some() {
            // Still current (`apply_newer_spec` stops it otherwise): only its record moves on.
            if self
                .sibling
                .running_spec
                .as_ref()
                .is_some_and(|r| r.generation < spec.generation)
            {
                self.sibling.running_spec = Some(spec.clone());
                self.sibling
                    .save_record(&self.ctx, plugin.as_ref(), spec.generation);
            }
            return Ok(());
        }
        if self.sibling.backoff_until.is_some()
            || self
                .sibling_failed_generation
                .is_some_and(|g| spec.generation <= g)
        {
            return Ok(());
        }
        self.start_sibling(plugin, spec).await
    }

    async fn start_sibling(
        &mut self,
        plugin: Arc<dyn Plugin>,
        spec: ServiceSpec,
    ) -> Result<(), String> {
        if let Err(reason) = plugin.validate(&spec) {
            // Retrying cannot help until the spec changes.
            self.sibling_failed_generation = Some(spec.generation);
            let message = format!("AutoDJ cannot start: {reason}");
            self.sibling_trouble = Some(message.clone());
            self.publish_sibling();
            return Err(message);
        }
        self.sibling_trouble = Some(SIBLING_STARTING.to_owned());
        self.publish_sibling();
        match self
            .sibling
            .launch(&self.ctx, plugin.as_ref(), &spec, Role::Sibling)
            .await
        {
            Ok(()) => {
                self.sibling_failed_generation = None;
                self.sibling_trouble = None;
                self.publish_sibling();
                Ok(())
            }
            Err(reason) => {
                if !self.ctx.cancel.is_cancelled() {
                    self.record_sibling_failure(reason.clone());
                }
                Err(format!("AutoDJ did not start: {reason}"))
            }
        }
    }

    /// Stops AutoDJ, if it runs; a stopped AutoDJ does not wait for a restart either.
    async fn stop_sibling(&mut self) -> Result<(), String> {
        self.sibling.backoff_until = None;
        if self.sibling.proc.is_none() {
            return Ok(());
        }
        let Some(plugin) = self.sibling_plugin() else {
            return Err("the service has no spec".to_owned());
        };
        let result = self.sibling.stop(&self.ctx, plugin.as_ref()).await;
        if let Ok(mut shared) = self.shared.lock() {
            shared.sibling_pid = self.sibling.pid();
        }
        result
    }

    async fn stop_server(&mut self) -> Result<(), String> {
        if self.server.proc.is_none() {
            return Ok(());
        }
        let plugin = self.plugin()?;
        self.server.stop(&self.ctx, plugin.as_ref()).await
    }

    /// AutoDJ first: it feeds the server.
    async fn stop_processes(&mut self) -> Result<(), String> {
        self.stop_sibling().await?;
        self.stop_server().await
    }

    /// Stops the processes and reports STOPPED.
    async fn stop_to_stopped(&mut self) -> Result<(), String> {
        self.clear_crash_state();
        let had_process = self.server.proc.is_some() || self.sibling.proc.is_some();
        self.server.last_stop_forced = false;
        match self.stop_processes().await {
            Ok(()) => {
                if had_process || self.state() != ObservedState::Stopped {
                    let message = if self.server.last_stop_forced {
                        format!(
                            "stopped: {} ignored its stop signal for {} s and was killed",
                            self.program(),
                            self.ctx.config.stop_grace.as_secs()
                        )
                    } else {
                        "stopped".to_owned()
                    };
                    self.set_state(ObservedState::Stopped, message);
                }
                Ok(())
            }
            Err(e) => {
                self.set_state(ObservedState::Failed, e.clone());
                Err(e)
            }
        }
    }

    /// The server ended without being asked to.
    async fn on_exit(&mut self, exit: Exit) {
        let pid = self.server.pid();
        // AutoDJ has nothing to feed now; it starts again with the server.
        if let Err(e) = self.stop_sibling().await {
            tracing::warn!(media_service_id = %self.ctx.id, error = %e, "cannot stop AutoDJ");
        }
        if self.sibling_failed_generation.is_none() {
            self.sibling_trouble = None;
        }
        let reason = match self.plugin() {
            Ok(plugin) => self
                .server
                .ended(&self.ctx, plugin.as_ref(), &exit, "unexpectedly"),
            Err(_) => {
                self.server.proc = None;
                self.server.running_spec = None;
                format!("the server exited unexpectedly with {exit}")
            }
        };
        tracing::warn!(media_service_id = %self.ctx.id, pid, reason = %reason, "server exited");
        if self.desired_running {
            self.record_failure(reason);
        } else {
            self.set_state(ObservedState::Stopped, reason);
        }
    }

    /// Counts a server failure towards the crash loop and schedules a restart, or gives up.
    fn record_failure(&mut self, reason: String) {
        let window = self.ctx.config.crash_loop_window;
        let count = self.server.count_failure(window);
        if count >= self.ctx.config.crash_loop_exits as usize {
            self.ctx.config.metrics.crash_looped(self.program());
            self.server.backoff_until = None;
            self.failed_generation = Some(self.generation());
            self.set_state(
                ObservedState::Failed,
                format!(
                    "crash loop: failed {count} times within {} s, not restarting until started again; last failure: {reason}",
                    window.as_secs()
                ),
            );
        } else {
            let delay = backoff_delay(count);
            self.server.backoff_until = Some(Instant::now() + delay);
            self.set_state(
                ObservedState::BackingOff,
                format!("{reason}; restarting in {} s", delay.as_secs_f32()),
            );
        }
    }

    async fn on_backoff_elapsed(&mut self) {
        self.server.backoff_until = None;
        if !self.desired_running || self.server.proc.is_some() {
            return;
        }
        let program = self.program();
        self.ctx.config.metrics.restarted(program);
        self.set_state(ObservedState::Starting, format!("restarting {program}"));
        match self.launch_server().await {
            Ok(()) => {
                self.set_state(ObservedState::Running, self.running_message());
                self.refresh_stats().await;
                // A failure is recorded (and shown) by AutoDJ's own backoff.
                let _ = self.ensure_sibling().await;
            }
            Err(reason) => {
                if !self.ctx.cancel.is_cancelled() {
                    self.record_failure(reason);
                }
            }
        }
    }

    /// AutoDJ ended without being asked to; the server keeps running.
    async fn on_sibling_exit(&mut self, exit: Exit) {
        let pid = self.sibling.pid();
        let reason = match self.sibling_plugin() {
            Some(plugin) => self
                .sibling
                .ended(&self.ctx, plugin.as_ref(), &exit, "unexpectedly"),
            None => {
                self.sibling.proc = None;
                self.sibling.running_spec = None;
                format!("AutoDJ exited unexpectedly with {exit}")
            }
        };
        tracing::warn!(media_service_id = %self.ctx.id, pid, reason = %reason, "AutoDJ exited");
        if self.server.proc.is_some() && self.wanted_sibling().is_some() {
            self.record_sibling_failure(reason);
        } else {
            self.publish_sibling();
        }
    }

    /// Counts an AutoDJ failure towards its own crash loop and schedules its restart, or gives
    /// up on it; either way the status message of the running service says so.
    fn record_sibling_failure(&mut self, reason: String) {
        let window = self.ctx.config.crash_loop_window;
        let count = self.sibling.count_failure(window);
        if count >= self.ctx.config.crash_loop_exits as usize {
            if let Some(plugin) = self.sibling_plugin() {
                self.ctx.config.metrics.crash_looped(plugin.program_name());
            }
            self.sibling.backoff_until = None;
            self.sibling_failed_generation = Some(self.generation());
            self.sibling_trouble = Some(format!(
                "AutoDJ failed: crash loop: failed {count} times within {} s, not restarting until started again; last failure: {reason}",
                window.as_secs()
            ));
        } else {
            let delay = backoff_delay(count);
            self.sibling.backoff_until = Some(Instant::now() + delay);
            self.sibling_trouble = Some(format!(
                "AutoDJ is down: {reason}; restarting in {} s",
                delay.as_secs_f32()
            ));
        }
        self.publish_sibling();
    }

    async fn on_sibling_backoff_elapsed(&mut self) {
        self.sibling.backoff_until = None;
        if self.sibling.proc.is_some() || self.server.proc.is_none() {
            return;
        }
        let (Some(plugin), Some(spec)) = (self.wanted_sibling(), self.spec.clone()) else {
            return;
        };
        self.ctx.config.metrics.restarted(plugin.program_name());
        // A failure is recorded inside, with the next backoff.
        let _ = self.start_sibling(plugin, spec).await;
    }

    /// A running service gets a spec with a newer generation: the server by reload or restart
    /// (as its plugin says), AutoDJ by a restart when its script changed, a start when it was
    /// turned on and a stop when it was turned off.
    async fn apply_newer_spec(&mut self) -> Result<(), String> {
        let Some(next) = self.spec.clone() else {
            return Ok(());
        };
        let plugin = self.plugin()?;
        let server_mode = match &self.server.running_spec {
            Some(running) if next.generation > running.generation => {
                Some(plugin.update_mode(running, &next))
            }
            _ => None,
        };
        if server_mode == Some(UpdateMode::Restart) {
            // Nothing stops before the new configuration is known to start.
            self.prepare_server().await.map_err(|reason| {
                format!(
                    "{reason}; the running {} was left as it was",
                    plugin.program_name()
                )
            })?;
        }
        // AutoDJ goes first: before the server restarts, and before a reload drops its mount.
        if self.sibling_outdated(&next, server_mode) {
            self.stop_sibling().await?;
        }
        match server_mode {
            None => {}
            Some(UpdateMode::Restart) => {
                let program = plugin.program_name();
                tracing::info!(media_service_id = %self.ctx.id, generation = next.generation, "restarting {program} for the new spec");
                self.stop_server().await?;
                return self.start_now().await;
            }
            Some(mode) => self.update_server_in_place(plugin.as_ref(), &next, mode)?,
        }
        self.ensure_sibling().await
    }

    /// Whether the running AutoDJ must stop for `next`: no longer wanted, its server restarts,
    /// or its script changes (liquidsoap cannot reload).
    fn sibling_outdated(&self, next: &ServiceSpec, server_mode: Option<UpdateMode>) -> bool {
        if self.sibling.proc.is_none() {
            return false;
        }
        let Some(plugin) = self.wanted_sibling() else {
            return true;
        };
        if server_mode == Some(UpdateMode::Restart) {
            return true;
        }
        match &self.sibling.running_spec {
            Some(running) => {
                next.generation > running.generation
                    && plugin.update_mode(running, next) == UpdateMode::Restart
            }
            None => true,
        }
    }

    /// Re-renders the server's config and, for [`UpdateMode::Reload`], signals it.
    fn update_server_in_place(
        &mut self,
        plugin: &dyn Plugin,
        next: &ServiceSpec,
        mode: UpdateMode,
    ) -> Result<(), String> {
        let program = plugin.program_name();
        plugin.validate(next)?;
        let group = unit::account(plugin)?.map(|a| a.gid);
        for file in plugin.render(next, &self.ctx.dir)? {
            files::write_atomic(
                &self.ctx.dir.join(file.name),
                file.contents.as_bytes(),
                file.mode,
                group,
            )
            .map_err(|e| format!("cannot write {}: {e}", file.name))?;
        }
        let Some(proc) = &self.server.proc else {
            return Ok(());
        };
        if mode == UpdateMode::Reload {
            proc.signal_leader(plugin.reload_signal())
                .map_err(|e| format!("cannot signal {program} to reload: {e}"))?;
            tracing::info!(media_service_id = %self.ctx.id, pid = proc.pid(), generation = next.generation, "reloaded {program}");
        } else {
            tracing::info!(media_service_id = %self.ctx.id, pid = proc.pid(), generation = next.generation, "new spec needs no reload of {program}");
        }
        self.server.running_spec = Some(next.clone());
        self.server.save_record(&self.ctx, plugin, next.generation);
        Ok(())
    }

    async fn refresh_stats(&mut self) {
        if self.server.proc.is_none() || self.state() != ObservedState::Running {
            return;
        }
        let (Ok(plugin), Some(spec)) = (self.plugin(), self.server.running_spec.clone()) else {
            return;
        };
        match plugin.stats(&spec).await {
            Ok(stats) => {
                let observed = {
                    let Ok(mut shared) = self.shared.lock() else {
                        return;
                    };
                    shared.stats = Some(stats);
                    shared.observe_time = SystemTime::now();
                    shared.to_observed(&self.ctx.id)
                };
                let _ = self.events.send(observed);
            }
            Err(e) => {
                tracing::debug!(media_service_id = %self.ctx.id, error = %e, "cannot read server stats")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_delay(1), Duration::from_secs(1));
        assert_eq!(backoff_delay(2), Duration::from_secs(2));
        assert_eq!(backoff_delay(3), Duration::from_secs(4));
        assert_eq!(backoff_delay(6), Duration::from_secs(30));
        assert_eq!(backoff_delay(1000), Duration::from_secs(30));
    }
}
