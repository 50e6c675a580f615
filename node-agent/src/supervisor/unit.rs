//! One supervised process of a service: its server, or the sibling beside it (AutoDJ). A unit
//! spawns its process, waits until it is ready, stops it and records it for re-adoption; the
//! service's actor (`actor.rs`) decides when, and counts its failures.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use castplane_proto::agent::v1::ServiceSpec;
use nix::sys::signal::Signal;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::SupervisorConfig;
use super::files::{self, Account, ProcessRecord, StderrTail};
use super::process::{self, Exit, Proc};
use crate::plugins::{Plugin, Readiness};

/// Lines of a process's output quoted in failure reasons.
const REASON_LINES: usize = 5;
const PID_FILE_POLL: Duration = Duration::from_millis(10);
const READY_POLL: Duration = Duration::from_millis(100);
/// After SIGKILL a process is gone within milliseconds unless stuck in the kernel.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Spawns per start when the server crashes (by a signal) before it is ready.
const STARTUP_CRASH_ATTEMPTS: u32 = 3;
/// How long what an earlier run held may stay taken. Longer than icecast2's 10 s source
/// timeout: a source still holding it after that is someone else's.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(12);
/// How long after the pid file a missing log marker is waited for. icecast2's status page is
/// not valid JSON before ~300 ms anyway, so this costs next to nothing.
const MARKER_GRACE: Duration = Duration::from_millis(500);
const SERVER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Locale and time zone shape servers' log timestamps and text; nothing secret.
const PASSED_ENV: &[&str] = &["TZ", "LANG", "LC_ALL"];

/// What all units of one service share.
pub struct Ctx {
    pub id: String,
    pub dir: PathBuf,
    pub config: Arc<SupervisorConfig>,
    pub cancel: CancellationToken,
    /// One permit per core, shared by every service: held from spawn to ready by processes
    /// whose start is costly ([`Plugin::costly_start`]).
    pub start_slots: Arc<Semaphore>,
}

/// Which process of the service a unit runs; they prepare the service directory differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Owns the service directory (its account writes there).
    Server,
    /// Runs beside the server under its own account, which the directory's group lets in.
    Sibling,
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

/// The account `plugin`'s process runs as: `None` when the agent is not root (it cannot switch)
/// or the plugin wants the agent's own.
pub fn account(plugin: &dyn Plugin) -> Result<Option<Account>, String> {
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

async fn start_slot<'a>(ctx: &'a Ctx, program: &str) -> Result<SemaphorePermit<'a>, String> {
    if let Ok(permit) = ctx.start_slots.try_acquire() {
        return Ok(permit);
    }
    tracing::info!(media_service_id = %ctx.id, "{program} waits for other starts to finish");
    tokio::select! {
        permit = ctx.start_slots.acquire() => {
            permit.map_err(|_| "the agent is shutting down".to_owned())
        }
        () = ctx.cancel.cancelled() => Err("the agent is shutting down".to_owned()),
    }
}

/// Waits until [`Plugin::probe_released`] says an earlier run left nothing behind.
async fn wait_released(ctx: &Ctx, plugin: &dyn Plugin, spec: &ServiceSpec) -> Result<(), String> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    loop {
        if ctx.cancel.is_cancelled() {
            return Err("the agent is shutting down".to_owned());
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let why = match tokio::time::timeout(remaining, plugin.probe_released(spec)).await {
            Ok(Readiness::Ready) => return Ok(()),
            Ok(Readiness::NotReady(why)) => why,
            Err(_) => "the probe timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "cannot start {}: {why} after {} s",
                plugin.program_name(),
                RELEASE_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

#[derive(Default)]
pub struct Unit {
    pub proc: Option<Proc>,
    /// The spec the running process's config was rendered from.
    pub running_spec: Option<ServiceSpec>,
    /// Unexpected exits within the crash-loop window.
    pub exits: VecDeque<Instant>,
    pub backoff_until: Option<Instant>,
    /// Whether the last stop had to kill the process group after the grace period; the
    /// service's status says so.
    pub last_stop_forced: bool,
    /// Follows the process's log file; created once the plugin (hence the file) is known.
    log: Option<StderrTail>,
}

impl Unit {
    /// A unit with an adopted process (or none), following its log from now on.
    pub fn adopted(
        ctx: &Ctx,
        plugin: Option<&dyn Plugin>,
        proc: Option<Proc>,
        running_spec: Option<ServiceSpec>,
    ) -> Self {
        Unit {
            log: plugin.map(|p| StderrTail::new(&ctx.dir, p.log_file(), &ctx.id, p.program_name())),
            proc,
            running_spec,
            ..Default::default()
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn poll_log(&mut self) {
        if let Some(log) = &mut self.log {
            log.poll();
        }
    }

    fn log(&mut self, ctx: &Ctx, plugin: &dyn Plugin) -> &mut StderrTail {
        let path = ctx.dir.join(plugin.log_file());
        let log = self.log.take().filter(|l| l.path() == path);
        self.log.insert(log.unwrap_or_else(|| {
            StderrTail::new(&ctx.dir, plugin.log_file(), &ctx.id, plugin.program_name())
        }))
    }

    /// Counts an unexpected exit; returns how many fall within the crash-loop `window`.
    pub fn count_failure(&mut self, window: Duration) -> usize {
        let now = Instant::now();
        self.exits.push_back(now);
        while self
            .exits
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.exits.pop_front();
        }
        self.exits.len()
    }

    pub fn clear_failures(&mut self) {
        self.exits.clear();
        self.backoff_until = None;
    }

    /// Everything a start needs that can fail without touching a running process: the spec is
    /// valid, the directories are ready, the ports are free (or held by this unit's own running
    /// process, which a restart replaces), and the config is rendered and written. A restart
    /// calls this before stopping anything, so one that could not start leaves the service
    /// running as it was.
    #[tracing::instrument(name = "prepare", skip_all, fields(media_service_id = %ctx.id, program = plugin.program_name(), role = ?role))]
    pub async fn prepare(
        &self,
        ctx: &Ctx,
        plugin: &dyn Plugin,
        spec: &ServiceSpec,
        role: Role,
    ) -> Result<Option<Account>, String> {
        plugin.validate(spec)?;
        let account = account(plugin)?;

        let services_dir = ctx.config.services_dir.clone();
        let dir = ctx.dir.clone();
        let data_dirs = plugin.data_dirs();
        let external = plugin.external_dirs(spec)?;
        tokio::task::spawn_blocking(move || {
            match role {
                Role::Server => {
                    files::prepare_root_dir(&services_dir, account.is_some())?;
                    files::prepare_service_dir(&dir, account)?;
                }
                Role::Sibling => files::share_service_dir(&dir, account)?,
            }
            for sub in data_dirs {
                files::prepare_service_dir(&dir.join(sub), account)?;
            }
            for outside in &external {
                files::prepare_external_dir(outside, account).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", outside.display()))
                })?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(|e| format!("preparing the service directory: {e}"))?
        .map_err(|e| format!("cannot prepare {}: {e}", ctx.dir.display()))?;

        let own = self.pid();
        for port in plugin.ports(spec)? {
            let owner = tokio::task::spawn_blocking(move || process::port_owner(port))
                .await
                .map_err(|e| format!("checking port {port}: {e}"))?;
            match owner {
                None => {}
                Some(Some(pid)) if own.is_some_and(|own| process::in_group_of(pid, own)) => {}
                Some(Some(pid)) => return Err(format!("port {port} is in use by pid {pid}")),
                Some(None) => return Err(format!("port {port} is in use")),
            }
        }

        let group = account.map(|a| a.gid);
        let render = tracing::info_span!("render", files = tracing::field::Empty);
        render.in_scope(|| {
            let rendered = plugin.render(spec, &ctx.dir)?;
            render.record("files", rendered.len());
            for file in rendered {
                files::write_atomic(
                    &ctx.dir.join(file.name),
                    file.contents.as_bytes(),
                    file.mode,
                    group,
                )
                .map_err(|e| format!("cannot write {}: {e}", file.name))?;
            }
            Ok::<(), String>(())
        })?;
        Ok(account)
    }

    /// Prepares ([`Self::prepare`]), spawns the process and waits until it is ready. On success
    /// the process is in `self.proc`; on failure nothing of it is left running.
    #[tracing::instrument(name = "launch", skip_all, fields(media_service_id = %ctx.id, program = plugin.program_name(), role = ?role, generation = spec.generation))]
    pub async fn launch(
        &mut self,
        ctx: &Ctx,
        plugin: &dyn Plugin,
        spec: &ServiceSpec,
        role: Role,
    ) -> Result<(), String> {
        let program = plugin.program_name();
        let account = self.prepare(ctx, plugin, spec, role).await?;
        wait_released(ctx, plugin, spec).await?;
        // The readiness timeout starts once the slot is ours.
        let _slot = if plugin.costly_start() {
            Some(start_slot(ctx, program).await?)
        } else {
            None
        };
        let pid_file = plugin.pid_file(&ctx.dir);
        let mut attempt = 1;
        loop {
            match self
                .spawn_until_ready(ctx, plugin, spec, account, pid_file.as_deref())
                .await
            {
                Ok(()) => return Ok(()),
                Err(failure) if failure.crashed && attempt < STARTUP_CRASH_ATTEMPTS => {
                    // A crash (by signal) while starting is icecast2's startup race with early
                    // clients (see `icecast::STATS_READY_MARKER`), not a config error: try again.
                    tracing::warn!(
                        media_service_id = %ctx.id,
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

    /// One spawn of the process, waiting until it is ready.
    async fn spawn_until_ready(
        &mut self,
        ctx: &Ctx,
        plugin: &dyn Plugin,
        spec: &ServiceSpec,
        account: Option<Account>,
        pid_file: Option<&Path>,
    ) -> Result<(), StartFailure> {
        let program = plugin.program_name();
        let group = account.map(|a| a.gid);
        let spawn_span = tracing::info_span!(
            "spawn",
            media_service_id = %ctx.id,
            program,
            pid = tracing::field::Empty,
        );
        let spawning = spawn_span.enter();
        if let Some(path) = pid_file {
            files::remove_if_exists(path);
        }
        let launch = plugin.launch(&ctx.dir).map_err(StartFailure::from)?;
        let log = files::open_log(&ctx.dir, plugin.log_file(), group)
            .map_err(|e| format!("cannot open the {program} log: {e}"))?;
        let log_for_stdout = log
            .try_clone()
            .map_err(|e| format!("cannot open the {program} log: {e}"))?;
        self.log(ctx, plugin).mark_start(plugin.ready_log_marker());

        let mut command = tokio::process::Command::new(&launch.program);
        command
            .args(&launch.args)
            .current_dir(&ctx.dir)
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
        tracing::info!(media_service_id = %ctx.id, pid, generation = spec.generation, "spawned {program}");
        self.proc = Some(Proc::Child {
            child,
            pid,
            start_time,
        });
        self.running_spec = Some(spec.clone());
        self.save_record(ctx, plugin, spec.generation);
        spawn_span.record("pid", pid);
        drop(spawning);
        drop(spawn_span);

        match self.wait_ready(ctx, plugin, spec, pid_file, pid).await {
            Ok(()) => {
                tracing::info!(media_service_id = %ctx.id, pid, "{program} is ready");
                Ok(())
            }
            Err(failure) => {
                if ctx.cancel.is_cancelled() {
                    // Detaching: leave it for the next agent to adopt.
                    return Err(failure);
                }
                if let Err(e) = self.stop(ctx, plugin).await {
                    tracing::warn!(media_service_id = %ctx.id, error = %e, "cannot stop {program} after it failed to start");
                }
                Err(failure)
            }
        }
    }

    /// Waits for the pid file and the plugin's log marker, then probes. Connecting earlier can
    /// crash icecast2 (see `icecast::STATS_READY_MARKER`).
    #[tracing::instrument(name = "readiness probe", skip_all, fields(media_service_id = %ctx.id, program = plugin.program_name(), pid = pid))]
    async fn wait_ready(
        &mut self,
        ctx: &Ctx,
        plugin: &dyn Plugin,
        spec: &ServiceSpec,
        pid_file: Option<&Path>,
        pid: u32,
    ) -> Result<(), StartFailure> {
        let program = plugin.program_name();
        let timeout = plugin.ready_timeout(ctx.config.ready_timeout);
        let deadline = Instant::now() + timeout;
        let mut pid_file_seen = pid_file.is_none();
        let mut pid_file_at: Option<Instant> = None;
        let mut last_probe = String::from("no probe yet");
        loop {
            if ctx.cancel.is_cancelled() {
                return Err("the agent is shutting down".into());
            }
            self.poll_log();
            if let Some(exit) = self.proc.as_mut().and_then(Proc::try_exit) {
                let crashed = matches!(exit, Exit::Status(status) if status.signal().is_some());
                return Err(StartFailure {
                    reason: self.ended(ctx, plugin, &exit, "while starting"),
                    crashed,
                });
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{program} did not become ready within {} s ({last_probe})",
                    timeout.as_secs()
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
                && !self.log(ctx, plugin).marker_seen()
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

    /// The process has ended (`exit`): cleans up after it and returns why it ended, as
    /// "icecast2 exited <context> with status 1: <last lines>".
    pub fn ended(&mut self, ctx: &Ctx, plugin: &dyn Plugin, exit: &Exit, context: &str) -> String {
        if let Some(p) = self.proc.take() {
            // Workers outlive a killed leader and keep its ports (nginx): a restart must find
            // them free.
            p.kill_leftovers();
        }
        self.running_spec = None;
        self.forget_files(ctx, plugin);
        let program = plugin.program_name();
        let log = self.log(ctx, plugin);
        log.poll();
        log.flush_partial();
        let lines = log.last_lines(REASON_LINES);
        let mut reason = format!("{program} exited {context} with {exit}");
        if !lines.is_empty() {
            reason.push_str(": ");
            reason.push_str(&lines.join(" | "));
        }
        reason
    }

    pub fn save_record(&self, ctx: &Ctx, plugin: &dyn Plugin, generation: u64) {
        let Some(p) = &self.proc else { return };
        let record = ProcessRecord {
            pid: p.pid(),
            start_time: p.start_time(),
            generation,
        };
        if let Err(e) = files::save_process(&ctx.dir, plugin.record_file(), &record) {
            tracing::warn!(media_service_id = %ctx.id, error = %e, "cannot record {} for re-adoption", plugin.program_name());
        }
    }

    fn forget_files(&self, ctx: &Ctx, plugin: &dyn Plugin) {
        files::remove_if_exists(&ctx.dir.join(plugin.record_file()));
        if let Some(pid_file) = plugin.pid_file(&ctx.dir) {
            files::remove_if_exists(&pid_file);
        }
    }

    /// The plugin's stop signal to the group, up to `stop_grace`, then SIGKILL.
    #[tracing::instrument(name = "stop process", skip_all, fields(media_service_id = %ctx.id, program = plugin.program_name(), pid = tracing::field::Empty, forced = tracing::field::Empty))]
    pub async fn stop(&mut self, ctx: &Ctx, plugin: &dyn Plugin) -> Result<(), String> {
        let Some(mut proc) = self.proc.take() else {
            return Ok(());
        };
        let program = plugin.program_name();
        let stop_signal = plugin.stop_signal();
        let pid = proc.pid();
        tracing::Span::current().record("pid", pid);
        self.last_stop_forced = false;
        tracing::info!(media_service_id = %ctx.id, pid, "stopping {program}");
        if let Err(e) = proc.signal_group(stop_signal) {
            self.proc = Some(proc);
            return Err(format!("cannot signal {program} (pid {pid}): {e}"));
        }
        let exit = match tokio::time::timeout(ctx.config.stop_grace, proc.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                tracing::warn!(
                    media_service_id = %ctx.id,
                    pid,
                    grace_s = ctx.config.stop_grace.as_secs_f32(),
                    "{program} ignored {stop_signal}; killing its process group"
                );
                self.last_stop_forced = true;
                tracing::Span::current().record("forced", true);
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
        let log = self.log(ctx, plugin);
        log.poll();
        log.flush_partial();
        self.running_spec = None;
        self.forget_files(ctx, plugin);
        match exit {
            // liquidsoap, for one, answers SIGTERM with status 1.
            Exit::Status(status) if !plugin.clean_stop(status) => {
                tracing::warn!(media_service_id = %ctx.id, pid, exit = %exit, "{program} did not stop cleanly")
            }
            _ => tracing::info!(media_service_id = %ctx.id, pid, exit = %exit, "{program} stopped"),
        }
        Ok(())
    }

    /// Agent shutdown: the process keeps running for the next agent to adopt.
    pub fn detach(&mut self, ctx: &Ctx) {
        self.poll_log();
        if let Some(p) = &self.proc {
            tracing::info!(media_service_id = %ctx.id, pid = p.pid(), "detached; leaving the process running");
        }
    }
}
