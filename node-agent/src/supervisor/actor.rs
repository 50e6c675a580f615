//! One task per service: it owns the service's process and applies commands one at a time, so
//! operations on a service never interleave, while different services proceed in parallel.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use castplane_proto::agent::v1::{ObservedService, ServiceSpec};
use castplane_proto::v1::{ObservedState, ServiceStats, ServiceStatus};
use nix::sys::signal::Signal;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::SupervisorConfig;
use super::files::{self, Account, ProcessRecord, StderrTail};
use super::process::{self, Exit, Proc};
use crate::plugins::{Plugin, Plugins, Readiness, UpdateMode};

pub type Reply = oneshot::Sender<Result<(), String>>;

pub enum Command {
    /// From `reconcile`: converge on the spec; nobody waits for the outcome.
    Ensure(Box<ServiceSpec>),
    Start(Box<ServiceSpec>, Reply),
    Restart(Box<ServiceSpec>, Reply),
    Stop(Reply),
    Delete(Reply),
}

/// The part of a service's state others read: `observed()`, `pid()`.
pub struct Shared {
    pub state: ObservedState,
    pub message: String,
    pub stats: Option<ServiceStats>,
    pub pid: Option<u32>,
    pub observe_time: SystemTime,
}

impl Shared {
    pub fn new(state: ObservedState, message: String, pid: Option<u32>) -> Self {
        Shared {
            state,
            message,
            stats: None,
            pid,
            observe_time: SystemTime::now(),
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
        }
    }
}

/// Lines of server output quoted in failure reasons.
const REASON_LINES: usize = 5;
const LOG_POLL: Duration = Duration::from_millis(250);
const PID_FILE_POLL: Duration = Duration::from_millis(10);
const READY_POLL: Duration = Duration::from_millis(100);
/// After SIGKILL a process is gone within milliseconds unless stuck in the kernel.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Spawns per start when the server crashes (by a signal) before it is ready.
const STARTUP_CRASH_ATTEMPTS: u32 = 3;
/// How long after the pid file a missing log marker is waited for. icecast2's status page is
/// not valid JSON before ~300 ms anyway, so this costs next to nothing.
const MARKER_GRACE: Duration = Duration::from_millis(500);
const SERVER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Locale and time zone shape servers' log timestamps and text; nothing secret.
const PASSED_ENV: &[&str] = &["TZ", "LANG", "LC_ALL"];
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Restart delay after the `n`th unexpected exit within the crash-loop window: 1, 2, 4 … s.
pub fn backoff_delay(exits_in_window: usize) -> Duration {
    let doublings = exits_in_window.saturating_sub(1).min(16) as u32;
    BACKOFF_INITIAL
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

pub struct Actor {
    pub id: String,
    pub dir: PathBuf,
    pub config: Arc<SupervisorConfig>,
    pub plugins: Arc<Plugins>,
    pub shared: Arc<Mutex<Shared>>,
    pub events: broadcast::Sender<ObservedService>,
    pub cancel: CancellationToken,
    /// The latest spec the control plane (or an action) gave.
    pub spec: Option<ServiceSpec>,
    pub desired_running: bool,
    pub proc: Option<Proc>,
    /// The spec the running process's config was rendered from.
    pub running_spec: Option<ServiceSpec>,
    pub exits: VecDeque<Instant>,
    pub backoff_until: Option<Instant>,
    /// Set while FAILED: the generation that failed. `reconcile` does not retry it (that would
    /// defeat crash-loop protection); a newer generation or an explicit start does.
    pub failed_generation: Option<u64>,
    pub stderr: StderrTail,
}

/// Why one spawn did not become ready.
struct StartFailure {
    reason: String,
    /// Died by a signal while starting: worth another attempt.
    crashed: bool,
}

impl From<String> for StartFailure {
    fn from(reason: String) -> Self {
        StartFailure {
            reason,
            crashed: false,
        }
    }
}

impl From<&str> for StartFailure {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
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
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut stats_tick = tokio::time::interval(self.config.stats_interval);
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut log_tick = tokio::time::interval(LOG_POLL);
        log_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let backoff = self.backoff_until;
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        if let Flow::Exit = self.handle(cmd).await {
                            return;
                        }
                    }
                    // Every handle is gone: the supervisor was dropped. Like detach.
                    None => break,
                },
                exit = wait_proc(&mut self.proc) => self.on_exit(exit).await,
                () = sleep_until_opt(backoff) => self.on_backoff_elapsed().await,
                _ = stats_tick.tick() => self.refresh_stats().await,
                _ = log_tick.tick() => self.stderr.poll(),
            }
        }
        self.stderr.poll();
        if let Some(p) = &self.proc {
            tracing::info!(media_service_id = %self.id, pid = p.pid(), "detached; leaving the process running");
        }
    }

    async fn handle(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Ensure(spec) => {
                self.set_spec(*spec, None);
                self.converge().await;
            }
            Command::Start(spec, reply) => {
                self.set_spec(*spec, Some(true));
                self.clear_crash_state();
                let result = match &self.proc {
                    Some(_) => self.apply_newer_spec().await,
                    None => self.start_now().await,
                };
                let _ = reply.send(result);
            }
            Command::Restart(spec, reply) => {
                self.set_spec(*spec, Some(true));
                self.clear_crash_state();
                let result = match self.stop_process().await {
                    Ok(()) => self.start_now().await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Stop(reply) => {
                self.desired_running = false;
                self.persist_spec();
                let _ = reply.send(self.stop_to_stopped().await);
            }
            Command::Delete(reply) => {
                self.desired_running = false;
                if let Err(e) = self.stop_to_stopped().await {
                    let _ = reply.send(Err(e));
                    return Flow::Continue;
                }
                let dir = self.dir.clone();
                let removed =
                    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    })
                    .await;
                match removed {
                    Ok(Ok(())) => {
                        tracing::info!(media_service_id = %self.id, "service deleted");
                        let _ = reply.send(Ok(()));
                        return Flow::Exit;
                    }
                    Ok(Err(e)) => {
                        let _ =
                            reply.send(Err(format!("cannot remove {}: {e}", self.dir.display())));
                    }
                    Err(e) => {
                        let _ =
                            reply.send(Err(format!("cannot remove {}: {e}", self.dir.display())));
                    }
                }
            }
        }
        Flow::Continue
    }

    /// `desired`: the running/stopped wish of an action, which overrides the spec's field.
    fn set_spec(&mut self, mut spec: ServiceSpec, desired: Option<bool>) {
        self.desired_running = desired.unwrap_or(spec.desired_running);
        spec.desired_running = self.desired_running;
        self.spec = Some(spec);
        self.persist_spec();
    }

    fn persist_spec(&mut self) {
        let Some(spec) = self.spec.as_mut() else {
            return;
        };
        spec.desired_running = self.desired_running;
        if let Err(e) =
            std::fs::create_dir_all(&self.dir).and_then(|()| files::save_spec(&self.dir, spec))
        {
            tracing::warn!(media_service_id = %self.id, error = %e, "cannot persist service spec");
        }
    }

    fn clear_crash_state(&mut self) {
        self.exits.clear();
        self.backoff_until = None;
        self.failed_generation = None;
    }

    fn plugin(&self) -> Result<Arc<dyn Plugin>, String> {
        let spec = self
            .spec
            .as_ref()
            .ok_or_else(|| "the service has no spec".to_owned())?;
        self.plugins.for_type(spec.r#type)
    }

    fn program(&self) -> &'static str {
        self.plugin().map(|p| p.program_name()).unwrap_or("server")
    }

    /// Makes the process match the desired state (reconcile).
    async fn converge(&mut self) {
        let generation = self.spec.as_ref().map_or(0, |s| s.generation);
        match (self.desired_running, self.proc.is_some()) {
            (false, true) => {
                let _ = self.stop_to_stopped().await;
            }
            (false, false) => {
                self.clear_crash_state();
                if self.state() != ObservedState::Stopped {
                    self.set_state(ObservedState::Stopped, "stopped".to_owned());
                }
            }
            (true, true) => {
                if let Err(e) = self.apply_newer_spec().await {
                    tracing::warn!(media_service_id = %self.id, error = %e, "cannot apply the new spec");
                }
            }
            (true, false) => {
                if self.backoff_until.is_some() {
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
        let pid = self.proc.as_ref().map(Proc::pid);
        let observed = {
            let Ok(mut shared) = self.shared.lock() else {
                return;
            };
            shared.state = state;
            shared.message = message;
            shared.pid = pid;
            if state != ObservedState::Running {
                shared.stats = None;
            }
            shared.observe_time = SystemTime::now();
            shared.to_observed(&self.id)
        };
        tracing::info!(
            media_service_id = %self.id,
            state = state.as_str_name(),
            pid,
            message = observed.status.as_ref().map_or("", |s| s.message.as_str()),
            "service state changed"
        );
        // No receivers is fine: nobody is listening yet.
        let _ = self.events.send(observed);
    }

    /// A start the caller asked for: failures end in FAILED (no retry loop).
    async fn start_now(&mut self) -> Result<(), String> {
        let program = self.program();
        self.backoff_until = None;
        self.set_state(ObservedState::Starting, format!("starting {program}"));
        match self.launch().await {
            Ok(()) => {
                self.failed_generation = None;
                self.set_state(ObservedState::Running, String::new());
                self.refresh_stats().await;
                Ok(())
            }
            Err(reason) => {
                self.failed_generation = Some(self.spec.as_ref().map_or(0, |s| s.generation));
                self.set_state(ObservedState::Failed, reason.clone());
                Err(reason)
            }
        }
    }

    fn account(&self, plugin: &dyn Plugin) -> Result<Option<Account>, String> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let Some(acct) = plugin.account() else {
            return Ok(None);
        };
        let user = nix::unistd::User::from_name(acct.user)
            .map_err(|e| format!("cannot look up user {}: {e}", acct.user))?
            .ok_or_else(|| {
                format!(
                    "user {} does not exist (is the {} package installed?)",
                    acct.user,
                    plugin.program_name()
                )
            })?;
        let group = nix::unistd::Group::from_name(acct.group)
            .map_err(|e| format!("cannot look up group {}: {e}", acct.group))?
            .ok_or_else(|| format!("group {} does not exist", acct.group))?;
        Ok(Some(Account {
            uid: user.uid.as_raw(),
            gid: group.gid.as_raw(),
        }))
    }

    /// Renders the config, spawns the server and waits until it is ready. On success the
    /// process is in `self.proc`; on failure nothing of it is left running.
    async fn launch(&mut self) -> Result<(), String> {
        let spec = self
            .spec
            .clone()
            .ok_or_else(|| "the service has no spec".to_owned())?;
        let plugin = self.plugin()?;
        let program = plugin.program_name();
        plugin.validate(&spec)?;
        let account = self.account(plugin.as_ref())?;

        let services_dir = self.config.services_dir.clone();
        let dir = self.dir.clone();
        let data_dirs = plugin.data_dirs();
        tokio::task::spawn_blocking(move || {
            files::prepare_services_dir(&services_dir, account.is_some())?;
            files::prepare_service_dir(&dir, account)?;
            for sub in data_dirs {
                files::prepare_service_dir(&dir.join(sub), account)?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(|e| format!("preparing the service directory: {e}"))?
        .map_err(|e| format!("cannot prepare {}: {e}", self.dir.display()))?;

        for port in plugin.ports(&spec)? {
            let owner = tokio::task::spawn_blocking(move || process::port_owner(port))
                .await
                .map_err(|e| format!("checking port {port}: {e}"))?;
            match owner {
                None => {}
                Some(Some(pid)) => return Err(format!("port {port} is in use by pid {pid}")),
                Some(None) => return Err(format!("port {port} is in use")),
            }
        }

        let group = account.map(|a| a.gid);
        for file in plugin.render(&spec, &self.dir)? {
            files::write_atomic(
                &self.dir.join(file.name),
                file.contents.as_bytes(),
                file.mode,
                group,
            )
            .map_err(|e| format!("cannot write {}: {e}", file.name))?;
        }
        let pid_file = plugin.pid_file(&self.dir);
        let mut attempt = 1;
        loop {
            match self
                .spawn_until_ready(plugin.as_ref(), &spec, account, pid_file.as_deref())
                .await
            {
                Ok(()) => return Ok(()),
                Err(failure) if failure.crashed && attempt < STARTUP_CRASH_ATTEMPTS => {
                    // A crash (by signal) while starting is icecast2's startup race with early
                    // clients (see `icecast::STATS_READY_MARKER`), not a config error: try again.
                    tracing::warn!(
                        media_service_id = %self.id,
                        attempt,
                        reason = %failure.reason,
                        "{program} crashed while starting; retrying"
                    );
                    attempt += 1;
                }
                Err(failure) => return Err(failure.reason),
            }
        }
    }

    /// One spawn of the server, waiting until it is ready.
    async fn spawn_until_ready(
        &mut self,
        plugin: &dyn Plugin,
        spec: &ServiceSpec,
        account: Option<Account>,
        pid_file: Option<&std::path::Path>,
    ) -> Result<(), StartFailure> {
        let program = plugin.program_name();
        let group = account.map(|a| a.gid);
        if let Some(path) = pid_file {
            files::remove_if_exists(path);
        }
        let launch = plugin.launch(&self.dir).map_err(StartFailure::from)?;
        let log = files::open_stderr_log(&self.dir, group)
            .map_err(|e| format!("cannot open the server log: {e}"))?;
        let log_for_stdout = log
            .try_clone()
            .map_err(|e| format!("cannot open the server log: {e}"))?;
        self.stderr.mark_start(plugin.ready_log_marker());

        let mut command = tokio::process::Command::new(&launch.program);
        command
            .args(&launch.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_for_stdout))
            .stderr(Stdio::from(log))
            // Its own group: signals reach any workers, and a terminal's Ctrl-C on the agent
            // does not reach the servers.
            .process_group(0)
            // The server outlives the agent by design (re-adoption).
            .kill_on_drop(false);
        // The agent's environment may hold secrets (a join token) and would be readable through
        // /proc/PID/environ by the server's account: servers get a minimal one.
        command.env_clear().env("PATH", SERVER_PATH);
        for key in PASSED_ENV {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));
        if let Some(a) = account {
            command.uid(a.uid).gid(a.gid);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.program.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("{program} exited immediately"))?;
        let start_time = process::stat(pid).map_or(0, |s| s.start_time);
        tracing::info!(media_service_id = %self.id, pid, generation = spec.generation, "spawned {program}");
        self.proc = Some(Proc::Child {
            child,
            pid,
            start_time,
        });
        self.running_spec = Some(spec.clone());
        self.save_process_record(spec.generation);

        match self.wait_ready(plugin, spec, pid_file, pid).await {
            Ok(()) => {
                tracing::info!(media_service_id = %self.id, pid, "{program} is ready");
                Ok(())
            }
            Err(failure) => {
                if self.cancel.is_cancelled() {
                    // Detaching: leave it for the next agent to adopt.
                    return Err(failure);
                }
                if let Err(e) = self.stop_process().await {
                    tracing::warn!(media_service_id = %self.id, error = %e, "cannot stop a server that failed to start");
                }
                Err(failure)
            }
        }
    }

    /// Waits for the pid file and the plugin's log marker, then probes. Connecting earlier can
    /// crash icecast2 (see `icecast::STATS_READY_MARKER`).
    async fn wait_ready(
        &mut self,
        plugin: &dyn Plugin,
        spec: &ServiceSpec,
        pid_file: Option<&std::path::Path>,
        pid: u32,
    ) -> Result<(), StartFailure> {
        let program = plugin.program_name();
        let deadline = Instant::now() + self.config.ready_timeout;
        let mut pid_file_seen = pid_file.is_none();
        let mut pid_file_at: Option<Instant> = None;
        let mut last_probe = String::from("no probe yet");
        loop {
            if self.cancel.is_cancelled() {
                return Err("the agent is shutting down".into());
            }
            self.stderr.poll();
            if let Some(exit) = self.proc.as_mut().and_then(Proc::try_exit) {
                if let Some(p) = self.proc.take() {
                    p.kill_leftovers();
                }
                self.running_spec = None;
                self.forget_process_files();
                let crashed = matches!(exit, Exit::Status(status) if status.signal().is_some());
                return Err(StartFailure {
                    reason: self.exit_reason(program, &exit, "while starting"),
                    crashed,
                });
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{program} did not become ready within {} s ({last_probe})",
                    self.config.ready_timeout.as_secs()
                )
                .into());
            }
            if !pid_file_seen {
                pid_file_seen = pid_file.and_then(files::read_pid_file) == Some(pid);
                if !pid_file_seen {
                    last_probe = "no pid file yet".to_owned();
                    tokio::time::sleep(PID_FILE_POLL).await;
                    continue;
                }
            }
            let since_pid_file = *pid_file_at.get_or_insert_with(Instant::now);
            if let Some(marker) = plugin.ready_log_marker()
                && !self.stderr.marker_seen()
            {
                // The marker can be missing for good: icecast2 drops it when its stats thread
                // runs before the log is open, which is early and therefore safe. So after a
                // short grace its absence also means "go"; a thread starved for longer than that
                // makes the probe crash the server, and `launch` retries such crashes.
                if since_pid_file.elapsed() < MARKER_GRACE {
                    last_probe = format!("\"{marker}\" not logged yet");
                    tokio::time::sleep(PID_FILE_POLL).await;
                    continue;
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, plugin.probe_ready(spec)).await {
                Ok(Readiness::Ready) => return Ok(()),
                Ok(Readiness::NotReady(why)) => last_probe = why,
                Err(_) => last_probe = "the readiness probe timed out".to_owned(),
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// "icecast2 exited with status 1: <last lines>".
    fn exit_reason(&mut self, program: &str, exit: &Exit, context: &str) -> String {
        self.stderr.poll();
        self.stderr.flush_partial();
        let lines = self.stderr.last_lines(REASON_LINES);
        let mut reason = format!("{program} exited {context} with {exit}");
        if !lines.is_empty() {
            reason.push_str(": ");
            reason.push_str(&lines.join(" | "));
        }
        reason
    }

    fn save_process_record(&self, generation: u64) {
        let Some(p) = &self.proc else { return };
        let record = ProcessRecord {
            pid: p.pid(),
            start_time: p.start_time(),
            generation,
        };
        if let Err(e) = files::save_process(&self.dir, &record) {
            tracing::warn!(media_service_id = %self.id, error = %e, "cannot record the process for re-adoption");
        }
    }

    fn forget_process_files(&self) {
        files::remove_if_exists(&self.dir.join(files::PROCESS_FILE));
        if let Ok(plugin) = self.plugin()
            && let Some(pid_file) = plugin.pid_file(&self.dir)
        {
            files::remove_if_exists(&pid_file);
        }
    }

    /// Stops the process and reports STOPPED.
    async fn stop_to_stopped(&mut self) -> Result<(), String> {
        self.clear_crash_state();
        let had_process = self.proc.is_some();
        match self.stop_process().await {
            Ok(()) => {
                if had_process || self.state() != ObservedState::Stopped {
                    self.set_state(ObservedState::Stopped, "stopped".to_owned());
                }
                Ok(())
            }
            Err(e) => {
                self.set_state(ObservedState::Failed, e.clone());
                Err(e)
            }
        }
    }

    /// SIGTERM (or the plugin's stop signal) to the group, up to `stop_grace`, then SIGKILL.
    async fn stop_process(&mut self) -> Result<(), String> {
        let Some(mut proc) = self.proc.take() else {
            return Ok(());
        };
        let (program, stop_signal) = match self.plugin() {
            Ok(p) => (p.program_name(), p.stop_signal()),
            Err(_) => ("server", Signal::SIGTERM),
        };
        let pid = proc.pid();
        tracing::info!(media_service_id = %self.id, pid, "stopping {program}");
        if let Err(e) = proc.signal_group(stop_signal) {
            self.proc = Some(proc);
            return Err(format!("cannot signal {program} (pid {pid}): {e}"));
        }
        let exit = match tokio::time::timeout(self.config.stop_grace, proc.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                tracing::warn!(
                    media_service_id = %self.id,
                    pid,
                    grace_s = self.config.stop_grace.as_secs_f32(),
                    "{program} ignored {stop_signal}; killing its process group"
                );
                if let Err(e) = proc.signal_group(Signal::SIGKILL) {
                    self.proc = Some(proc);
                    return Err(format!("cannot kill {program} (pid {pid}): {e}"));
                }
                match tokio::time::timeout(KILL_WAIT, proc.wait()).await {
                    Ok(exit) => exit,
                    Err(_) => {
                        self.proc = Some(proc);
                        return Err(format!(
                            "{program} (pid {pid}) did not exit even after SIGKILL"
                        ));
                    }
                }
            }
        };
        // Leftover workers of the group would keep the ports.
        let _ = proc.signal_group(Signal::SIGKILL);
        self.stderr.poll();
        self.stderr.flush_partial();
        self.running_spec = None;
        self.forget_process_files();
        tracing::info!(media_service_id = %self.id, pid, exit = %exit, "{program} stopped");
        Ok(())
    }

    /// The process ended without being asked to.
    async fn on_exit(&mut self, exit: Exit) {
        let program = self.program();
        let pid = self.proc.as_ref().map(Proc::pid);
        if let Some(p) = self.proc.take() {
            // Workers outlive a killed leader and keep its ports (nginx): the restart must
            // find them free.
            p.kill_leftovers();
        }
        self.running_spec = None;
        self.forget_process_files();
        let reason = self.exit_reason(program, &exit, "unexpectedly");
        tracing::warn!(media_service_id = %self.id, pid, reason = %reason, "server exited");
        if self.desired_running {
            self.record_failure(reason);
        } else {
            self.set_state(ObservedState::Stopped, reason);
        }
    }

    /// Counts a failure towards the crash loop and schedules a restart, or gives up.
    fn record_failure(&mut self, reason: String) {
        let now = Instant::now();
        self.exits.push_back(now);
        while self
            .exits
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.config.crash_loop_window)
        {
            self.exits.pop_front();
        }
        let count = self.exits.len();
        if count >= self.config.crash_loop_exits as usize {
            self.backoff_until = None;
            self.failed_generation = Some(self.spec.as_ref().map_or(0, |s| s.generation));
            self.set_state(
                ObservedState::Failed,
                format!(
                    "crash loop: failed {count} times within {} s, not restarting until started again; last failure: {reason}",
                    self.config.crash_loop_window.as_secs()
                ),
            );
        } else {
            let delay = backoff_delay(count);
            self.backoff_until = Some(now + delay);
            self.set_state(
                ObservedState::BackingOff,
                format!("{reason}; restarting in {} s", delay.as_secs_f32()),
            );
        }
    }

    async fn on_backoff_elapsed(&mut self) {
        self.backoff_until = None;
        if !self.desired_running || self.proc.is_some() {
            return;
        }
        let program = self.program();
        self.set_state(ObservedState::Starting, format!("restarting {program}"));
        match self.launch().await {
            Ok(()) => {
                self.set_state(ObservedState::Running, String::new());
                self.refresh_stats().await;
            }
            Err(reason) => {
                if !self.cancel.is_cancelled() {
                    self.record_failure(reason);
                }
            }
        }
    }

    /// A running server whose spec has a newer generation gets it by reload or restart.
    async fn apply_newer_spec(&mut self) -> Result<(), String> {
        let (Some(next), Some(running)) = (self.spec.clone(), self.running_spec.clone()) else {
            return Ok(());
        };
        if next.generation <= running.generation {
            return Ok(());
        }
        let plugin = self.plugin()?;
        let program = plugin.program_name();
        let mode = plugin.update_mode(&running, &next);
        match mode {
            UpdateMode::Restart => {
                tracing::info!(media_service_id = %self.id, generation = next.generation, "restarting {program} for the new spec");
                self.stop_process().await?;
                self.start_now().await
            }
            UpdateMode::Reload | UpdateMode::Rewrite => {
                plugin.validate(&next)?;
                let group = self.account(plugin.as_ref())?.map(|a| a.gid);
                for file in plugin.render(&next, &self.dir)? {
                    files::write_atomic(
                        &self.dir.join(file.name),
                        file.contents.as_bytes(),
                        file.mode,
                        group,
                    )
                    .map_err(|e| format!("cannot write {}: {e}", file.name))?;
                }
                let Some(proc) = &self.proc else {
                    return Ok(());
                };
                if mode == UpdateMode::Reload {
                    proc.signal_leader(plugin.reload_signal())
                        .map_err(|e| format!("cannot signal {program} to reload: {e}"))?;
                    tracing::info!(media_service_id = %self.id, pid = proc.pid(), generation = next.generation, "reloaded {program}");
                } else {
                    tracing::info!(media_service_id = %self.id, pid = proc.pid(), generation = next.generation, "new spec needs no reload of {program}");
                }
                self.running_spec = Some(next.clone());
                self.save_process_record(next.generation);
                Ok(())
            }
        }
    }

    async fn refresh_stats(&mut self) {
        if self.proc.is_none() || self.state() != ObservedState::Running {
            return;
        }
        let (Ok(plugin), Some(spec)) = (self.plugin(), self.running_spec.clone()) else {
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
                    shared.to_observed(&self.id)
                };
                let _ = self.events.send(observed);
            }
            Err(e) => {
                tracing::debug!(media_service_id = %self.id, error = %e, "cannot read server stats")
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
