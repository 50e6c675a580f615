//! The control plane, started in-process on port 0 with TLS on its public API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use castplane_control::{Config, ServiceConfig, TlsFiles};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::Client;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Changes a test makes to the configuration the harness builds (limits, health, drain).
pub type Configure = Arc<dyn Fn(&mut Config) + Send + Sync>;

pub struct ControlPlaneHandle {
    data_dir: tempfile::TempDir,
    database_url: Option<String>,
    service_config: ServiceConfig,
    configure: Option<Configure>,
    /// Where `/metrics` is served, when started with `metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// The plaintext health listener (every test control plane has one).
    pub health_addr: SocketAddr,
    /// The CA (here: the self-signed certificate) clients trust for the public API.
    pub public_ca_pem: String,
    pub public_addr: SocketAddr,
    pub agent_addr: SocketAddr,
    /// The replica that bootstrapped the database holds the admin token file.
    admin_token_file: PathBuf,
    running: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

impl ControlPlaneHandle {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, ServiceConfig::default()).await
    }

    pub async fn start_with(backend: Backend, service_config: ServiceConfig) -> Self {
        Self::start_configured(backend, service_config, None, false).await
    }

    /// Also serves the console from `console_dir` (its `dist/`), as a deployment would.
    pub async fn start_serving(
        backend: Backend,
        service_config: ServiceConfig,
        console_dir: Option<PathBuf>,
    ) -> Self {
        let configure = console_dir.map(|dir| {
            Arc::new(move |config: &mut Config| config.console_dir = Some(dir.clone())) as Configure
        });
        Self::start_configured(backend, service_config, configure, false).await
    }

    /// Like [`ControlPlaneHandle::start`], with `configure` applied to the configuration and,
    /// if `metrics`, a `/metrics` listener on a free port ([`ControlPlaneHandle::metrics_addr`]).
    pub async fn start_configured(
        backend: Backend,
        service_config: ServiceConfig,
        configure: Option<Configure>,
        metrics: bool,
    ) -> Self {
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                crate::postgres::fresh_database()
                    .await
                    .expect("a PostgreSQL database for the test"),
            ),
        };
        Self::start_on_configured(database_url, service_config, configure, metrics).await
    }

    /// On the database at `database_url` (`None`: SQLite in its data directory).
    pub async fn start_on(database_url: Option<String>, service_config: ServiceConfig) -> Self {
        Self::start_on_configured(database_url, service_config, None, false).await
    }

    async fn start_on_configured(
        database_url: Option<String>,
        service_config: ServiceConfig,
        configure: Option<Configure>,
        metrics: bool,
    ) -> Self {
        crate::init_tracing();
        let data_dir = tempfile::Builder::new()
            .prefix("castplane-cp-")
            .tempdir()
            .expect("temp dir");
        let cert = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("test certificate");
        let public_ca_pem = cert.cert.pem();
        std::fs::write(data_dir.path().join("public.crt"), &public_ca_pem).expect("write cert");
        std::fs::write(
            data_dir.path().join("public.key"),
            cert.signing_key.serialize_pem(),
        )
        .expect("write key");
        let admin_token_file = data_dir.path().join("state").join("admin.token");
        let mut handle = ControlPlaneHandle {
            admin_token_file,
            data_dir,
            database_url,
            service_config,
            configure,
            metrics_addr: metrics.then(|| "127.0.0.1:0".parse().expect("addr")),
            health_addr: "127.0.0.1:0".parse().expect("addr"),
            public_ca_pem,
            public_addr: "127.0.0.1:0".parse().expect("addr"),
            agent_addr: "127.0.0.1:0".parse().expect("addr"),
            running: None,
        };
        handle.launch().await;
        handle
    }

    fn config(&self) -> Config {
        let mut config = Config {
            data_dir: self.data_dir.path().join("state"),
            database_url: self.database_url.clone(),
            public_tls: Some(TlsFiles {
                cert: self.data_dir.path().join("public.crt"),
                key: self.data_dir.path().join("public.key"),
            }),
            service: self.service_config.clone(),
            ..Default::default()
        };
        if let Some(configure) = &self.configure {
            configure(&mut config);
        }
        config
    }

    /// Starts the server, on the same ports as before when restarting.
    async fn launch(&mut self) {
        let mut listeners = castplane_control::bind(self.public_addr, self.agent_addr)
            .await
            .expect("bind listeners");
        self.public_addr = listeners.public.local_addr().expect("addr");
        self.agent_addr = listeners.agent.local_addr().expect("addr");
        if let Some(addr) = self.metrics_addr {
            let listener = castplane_control::bind_extra("metrics", addr)
                .await
                .expect("bind the metrics listener");
            self.metrics_addr = Some(listener.local_addr().expect("addr"));
            listeners.metrics = Some(listener);
        }
        let health = castplane_control::bind_extra("health", self.health_addr)
            .await
            .expect("bind the health listener");
        self.health_addr = health.local_addr().expect("addr");
        listeners.health = Some(health);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(castplane_control::run(
            self.config(),
            listeners,
            shutdown.clone(),
        ));
        self.running = Some((shutdown, task));
        // With an operator's bootstrap token there is no token file to wait for.
        let token_path = self
            .config()
            .bootstrap_admin_token
            .is_none()
            .then(|| self.admin_token_file.clone());
        let public_addr = self.public_addr;
        crate::wait_for(
            "the control plane to serve",
            std::time::Duration::from_secs(30),
            || {
                let ready = token_path.as_ref().is_none_or(|p| p.exists())
                    && std::net::TcpStream::connect(public_addr).is_ok();
                async move { ready.then_some(()) }
            },
        )
        .await;
    }

    /// Starts a graceful shutdown (as on SIGTERM) without waiting for it; [`Self::stop`]
    /// waits for the end.
    pub fn begin_stop(&self) {
        if let Some((shutdown, _)) = &self.running {
            shutdown.cancel();
        }
    }

    /// The database this control plane uses, whichever backend, as a URL sea-orm connects to.
    pub fn effective_database_url(&self) -> String {
        self.config().database_url()
    }

    /// Where uploads are spooled while they are checked.
    pub fn spool_dir(&self) -> PathBuf {
        self.config().data_dir.join("spool")
    }

    /// The database this control plane uses, when it is PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// Stops the server gracefully (as on SIGTERM).
    pub async fn stop(&mut self) {
        if let Some((shutdown, task)) = self.running.take() {
            shutdown.cancel();
            task.await
                .expect("control plane task")
                .expect("control plane exits cleanly");
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Another replica on the same database, with its own data directory and listeners.
    pub async fn start_replica(&self) -> ControlPlaneHandle {
        let data_dir = tempfile::Builder::new()
            .prefix("castplane-cp-")
            .tempdir()
            .expect("temp dir");
        for file in ["public.crt", "public.key"] {
            std::fs::copy(self.data_dir.path().join(file), data_dir.path().join(file))
                .expect("copy TLS files");
        }
        let mut handle = ControlPlaneHandle {
            data_dir,
            database_url: self.database_url.clone(),
            service_config: self.service_config.clone(),
            configure: self.configure.clone(),
            metrics_addr: None,
            health_addr: "127.0.0.1:0".parse().expect("addr"),
            public_ca_pem: self.public_ca_pem.clone(),
            public_addr: "127.0.0.1:0".parse().expect("addr"),
            agent_addr: "127.0.0.1:0".parse().expect("addr"),
            admin_token_file: self.admin_token_file.clone(),
            running: None,
        };
        handle.launch().await;
        handle
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(&self.admin_token_file)
            .expect("admin token")
            .trim()
            .to_owned()
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.admin_token_file.clone()
    }

    /// The URL agents join and connect to.
    pub fn agent_url(&self) -> String {
        format!("https://{}", self.agent_addr)
    }

    pub fn public_url(&self) -> String {
        format!("https://localhost:{}", self.public_addr.port())
    }

    pub async fn client(&self, token: &str) -> Client {
        Client::connect(&self.public_url(), &self.public_ca_pem, token).await
    }

    pub async fn admin(&self) -> Client {
        self.client(&self.admin_token()).await
    }
}

impl Drop for ControlPlaneHandle {
    fn drop(&mut self) {
        if let Some((shutdown, _)) = &self.running {
            shutdown.cancel();
        }
    }
}

/// A control-plane replica as its own process (the `castplane-control` binary), for tests that
/// must kill one the way a crash does (`kill -9`: no shutdown, its lease left to run out). It
/// shares the database and TLS certificate of the in-process replica it was made from.
pub struct ControlPlaneProcess {
    child: std::process::Child,
    data_dir: tempfile::TempDir,
    pub public_addr: SocketAddr,
    pub agent_addr: SocketAddr,
    public_ca_pem: String,
}

impl ControlPlaneHandle {
    /// Another replica on this one's database, as a separate process (PostgreSQL only).
    pub async fn spawn_replica_process(&self) -> ControlPlaneProcess {
        self.spawn_replica_process_with(&[]).await
    }

    /// Like [`Self::spawn_replica_process`], with extra environment (e.g. where to export
    /// traces).
    pub async fn spawn_replica_process_with(
        &self,
        env: &[(String, String)],
    ) -> ControlPlaneProcess {
        let database_url = self
            .database_url
            .clone()
            .expect("replica processes share a PostgreSQL database");
        let data_dir = tempfile::Builder::new()
            .prefix("castplane-cp-")
            .tempdir()
            .expect("temp dir");
        for file in ["public.crt", "public.key"] {
            std::fs::copy(self.data_dir.path().join(file), data_dir.path().join(file))
                .expect("copy TLS files");
        }
        let public_addr: SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("addr");
        let agent_addr: SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("addr");
        let log = std::fs::File::create(data_dir.path().join("control.log")).expect("log file");
        let child = std::process::Command::new(crate::agent::workspace_binary("castplane-control"))
            .arg("--data-dir")
            .arg(data_dir.path().join("state"))
            .arg("--database-url")
            .arg(&database_url)
            .arg("--listen")
            .arg(public_addr.to_string())
            .arg("--agent-listen")
            .arg(agent_addr.to_string())
            .arg("--tls-cert")
            .arg(data_dir.path().join("public.crt"))
            .arg("--tls-key")
            .arg(data_dir.path().join("public.key"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn castplane-control");
        crate::wait_for(
            "the replica process to serve",
            std::time::Duration::from_secs(30),
            || {
                let ready = std::net::TcpStream::connect(public_addr).is_ok()
                    && std::net::TcpStream::connect(agent_addr).is_ok();
                async move { ready.then_some(()) }
            },
        )
        .await;
        ControlPlaneProcess {
            child,
            data_dir,
            public_addr,
            agent_addr,
            public_ca_pem: self.public_ca_pem.clone(),
        }
    }
}

impl ControlPlaneProcess {
    /// Its public API, as clients dial it (the certificate names `localhost`).
    pub fn public_url(&self) -> String {
        format!("https://localhost:{}", self.public_addr.port())
    }

    pub fn agent_url(&self) -> String {
        format!("https://{}", self.agent_addr)
    }

    pub async fn client(&self, token: &str) -> Client {
        Client::connect(
            &format!("https://localhost:{}", self.public_addr.port()),
            &self.public_ca_pem,
            token,
        )
        .await
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Where its log is, for a failing test's message.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("control.log")
    }
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
