//! Node agents for tests: in-process (`AgentHandle`) or as a real process that can be
//! SIGKILLed (`AgentProcess`). Both use their own data directory, and both make sure no
//! streaming server outlives the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use castplane_agent::AgentConfig;
use castplane_agent::state::DataDir;
use castplane_agent::supervisor::Supervisor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::control_plane::ControlPlaneHandle;

pub struct AgentHandle {
    dir: tempfile::TempDir,
    pub node_id: String,
    pub config: AgentConfig,
    running: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

impl AgentHandle {
    /// Joins with `token` (no run yet).
    pub async fn join(control_plane: &ControlPlaneHandle, token: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("castplane-agent-")
            .tempdir()?;
        let data_dir = dir.path().join("agent");
        let identity = castplane_agent::join(
            &[control_plane.agent_url()],
            token,
            &DataDir::new(&data_dir),
        )
        .await?;
        let mut config = AgentConfig::new(&data_dir);
        config.heartbeat_interval = std::time::Duration::from_secs(1);
        config.max_reconnect_backoff = std::time::Duration::from_secs(1);
        Ok(AgentHandle {
            dir,
            node_id: identity.node_id,
            config,
            running: None,
        })
    }

    pub async fn join_and_start(control_plane: &ControlPlaneHandle, token: &str) -> Self {
        let mut agent = Self::join(control_plane, token).await.expect("agent joins");
        agent.start();
        agent
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    pub fn start(&mut self) {
        if self.running.is_none() {
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(castplane_agent::run(self.config.clone(), shutdown.clone()));
            self.running = Some((shutdown, task));
        }
    }

    /// Stops the agent; the services it runs keep running (as after an agent crash or upgrade).
    pub async fn stop(&mut self) {
        if let Some((shutdown, task)) = self.running.take() {
            shutdown.cancel();
            let _ = task.await;
        }
    }

    /// Stops every service this agent's data directory holds.
    pub async fn stop_services(&self) {
        let supervisor = Supervisor::new(self.config.supervisor.clone());
        if supervisor.adopt_existing().await.is_ok() {
            supervisor.stop_all().await;
        }
        supervisor.detach().await;
        kill_processes_under(self.dir.path());
    }

    /// Stops the agent and its services.
    pub async fn shutdown(mut self) {
        self.stop().await;
        self.stop_services().await;
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        if let Some((shutdown, _)) = &self.running {
            shutdown.cancel();
        }
        // A failed test must not leave streaming servers behind.
        kill_processes_under(self.dir.path());
    }
}

/// The agent binary as a separate process.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    /// `binary`: the tests' `env!("CARGO_BIN_EXE_castplane-test-agent")`, the agent built with
    /// them from this tree (never a stale `target/debug/castplane-agent`).
    pub fn spawn(binary: &Path, data_dir: &Path) -> std::io::Result<Self> {
        Self::spawn_with(binary, data_dir, &[])
    }

    /// With extra environment, e.g. `CASTPLANE_AGENT_FAILPOINTS` to crash it at a chosen point.
    pub fn spawn_with(
        binary: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))?;
        let child = Command::new(binary)
            .args(["run", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(AgentProcess { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the agent freezes with its connections open, as a hung host would.
    pub fn freeze(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`AgentProcess::freeze`].
    pub fn thaw(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    }

    /// Waits for the process to exit by itself (a failpoint aborted it).
    pub async fn exited(mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        crate::wait_for("the agent process to exit", timeout, || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary of the workspace, `target/<profile>/NAME`, next to the test binary's `deps/`.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    profile_dir.join(name)
}

/// Kills (by process group) every process whose command line mentions `dir`.
pub fn kill_processes_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) && pid != std::process::id() as i32 {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
