//! The control plane under test: the release `castplane-control` binary as its own process,
//! started the way an operator starts it (flags, a data directory, a TLS certificate), with
//! `/metrics` on, so the bench reads what production would expose, plus `/proc` for memory
//! and CPU.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use castplane_integration_tests::Client;

/// Everything needed to start (and restart) one replica on the same ports and data.
pub struct ControlPlane {
    binary: PathBuf,
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
    pub public_addr: SocketAddr,
    pub agent_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub public_ca_pem: String,
    child: Option<Child>,
}

/// Ports below the kernel's ephemeral range, as the test harness picks them.
fn port() -> u16 {
    castplane_integration_tests::free_port()
}

impl ControlPlane {
    /// A new replica with its own data directory and certificate; `database_url` `None` is
    /// SQLite in the data directory.
    pub async fn start(binary: &Path, database_url: Option<String>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("castplane-bench-cp-")
            .tempdir()?;
        let cert = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])?;
        let public_ca_pem = cert.cert.pem();
        std::fs::write(dir.path().join("public.crt"), &public_ca_pem)?;
        std::fs::write(
            dir.path().join("public.key"),
            cert.signing_key.serialize_pem(),
        )?;
        Self::start_in(binary, dir, public_ca_pem, database_url, true).await
    }

    /// Another replica on the same database and public certificate.
    pub async fn replica(&self) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("castplane-bench-cp-")
            .tempdir()?;
        for file in ["public.crt", "public.key"] {
            std::fs::copy(self.dir.path().join(file), dir.path().join(file))?;
        }
        let replica = Self::start_in(
            &self.binary,
            dir,
            self.public_ca_pem.clone(),
            self.database_url.clone(),
            false,
        )
        .await?;
        // Only the replica that bootstrapped the database wrote the admin token.
        std::fs::copy(self.admin_token_path(), replica.admin_token_path())
            .context("sharing the admin token file with the replica")?;
        Ok(replica)
    }

    async fn start_in(
        binary: &Path,
        dir: tempfile::TempDir,
        public_ca_pem: String,
        database_url: Option<String>,
        bootstraps: bool,
    ) -> anyhow::Result<Self> {
        let mut cp = ControlPlane {
            binary: binary.to_owned(),
            dir,
            database_url,
            public_addr: SocketAddr::from(([127, 0, 0, 1], port())),
            agent_addr: SocketAddr::from(([127, 0, 0, 1], port())),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], port())),
            public_ca_pem,
            child: None,
        };
        cp.spawn()?;
        cp.wait_serving().await?;
        if bootstraps {
            // The first replica on a database writes the admin token once it is bootstrapped.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !cp.admin_token_path().exists() {
                if Instant::now() > deadline {
                    bail!(
                        "no admin token after 60 s (log: {})",
                        cp.log_path().display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(cp)
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.state_dir().join("admin.token")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("control.log")
    }

    /// Starts the process (again, on the same ports and data after [`Self::stop`]).
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--data-dir")
            .arg(self.state_dir())
            .arg("--listen")
            .arg(self.public_addr.to_string())
            .arg("--agent-listen")
            .arg(self.agent_addr.to_string())
            .arg("--metrics-listen")
            .arg(self.metrics_addr.to_string())
            .arg("--tls-cert")
            .arg(self.dir.path().join("public.crt"))
            .arg("--tls-key")
            .arg(self.dir.path().join("public.key"))
            // The load generator is one principal holding hundreds of WatchAction streams:
            // the per-principal and total limits protect other callers, not the figures.
            .args(["--max-streams", "1000000"])
            .args(["--max-streams-per-principal", "100000"])
            .args(["--max-concurrent-requests", "100000"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", self.binary.display()))?,
        );
        Ok(())
    }

    /// Waits until the public and agent ports accept.
    pub async fn wait_serving(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "castplane-control exited with {status} (log: {})",
                    self.log_path().display()
                );
            }
            let up = std::net::TcpStream::connect(self.public_addr).is_ok()
                && std::net::TcpStream::connect(self.agent_addr).is_ok();
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "castplane-control did not serve within 60 s (log: {})",
                    self.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM and wait: a graceful stop, as an operator's restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn agent_url(&self) -> String {
        format!("https://{}", self.agent_addr)
    }

    pub async fn admin(&self) -> anyhow::Result<Client> {
        let token = std::fs::read_to_string(self.admin_token_path())?;
        Ok(Client::connect(
            &format!("https://localhost:{}", self.public_addr.port()),
            &self.public_ca_pem,
            token.trim(),
        )
        .await)
    }

    /// The process's resident memory, bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.pid().context("not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS in /proc/PID/status")?;
        Ok(kib * 1024)
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let pid = self.pid().context("not running")?;
        cpu_time_of(pid)
    }

    /// SQL statements run so far, from `castplane_db_query_duration_seconds_count`, by verb.
    pub async fn queries(&self) -> anyhow::Result<Queries> {
        let text = scrape(self.metrics_addr).await?;
        let mut queries = Queries::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("castplane_db_query_duration_seconds_count{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            let op = labels
                .split(',')
                .find_map(|l| l.strip_prefix("operation=\""))
                .and_then(|l| l.split('"').next())
                .unwrap_or("other");
            *queries.by_operation.entry(op.to_owned()).or_default() += value;
        }
        Ok(queries)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn cpu_time_of(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name and state.
    let total = ticks(11) + ticks(12);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis(total * 1000 / hz))
}

#[derive(Clone, Debug, Default)]
pub struct Queries {
    pub by_operation: std::collections::BTreeMap<String, f64>,
}

impl Queries {
    pub fn total(&self) -> f64 {
        self.by_operation.values().sum()
    }

    /// What ran between `earlier` and `self`.
    pub fn since(&self, earlier: &Queries) -> Queries {
        let mut by_operation = self.by_operation.clone();
        for (op, value) in &mut by_operation {
            *value -= earlier.by_operation.get(op).copied().unwrap_or(0.0);
        }
        Queries { by_operation }
    }
}

async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let raw = String::from_utf8(raw)?;
    let (_, body) = raw.split_once("\r\n\r\n").context("an HTTP response")?;
    Ok(body.to_owned())
}
