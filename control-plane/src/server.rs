//! Starting and stopping the control plane: `run(config, listeners, shutdown)`.
//!
//! The binary binds its listeners and calls `run`; tests bind port 0 and do the same, so they
//! start real servers in-process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use castplane_proto::agent::v1::agent_service_server::AgentServiceServer;
use castplane_proto::v1::account_service_server::AccountServiceServer;
use castplane_proto::v1::action_service_server::ActionServiceServer;
use castplane_proto::v1::catalog_service_server::CatalogServiceServer;
use castplane_proto::v1::login_service_server::LoginServiceServer;
use castplane_proto::v1::media_library_service_server::MediaLibraryServiceServer;
use castplane_proto::v1::media_service_service_server::MediaServiceServiceServer;
use castplane_proto::v1::node_service_server::NodeServiceServer;
use castplane_proto::v1::session_service_server::SessionServiceServer;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::api::accounts::AccountApi;
use crate::api::actions::ActionApi;
use crate::api::agent::AgentApi;
use crate::api::catalog::CatalogApi;
use crate::api::library::MediaLibraryApi;
use crate::api::media::MediaServiceApi;
use crate::api::nodes::NodeApi;
use crate::api::sessions::{LoginApi, SessionApi};
use crate::auth::AuthLayer;
use crate::console;
use crate::health::{Health, HealthConfig};
use crate::limits::{ApiLimits, admission_layer, rpc_metrics_layer, stream_limit_layer};
use crate::metrics::Metrics;
use crate::persistence::Persistence;
use crate::pki::CertificateAuthority;
use crate::rpc_trace::rpc_trace_layer;
use crate::service::page_tokens::PageTokens;
use crate::service::{ControlPlane, ServiceConfig};
use crate::uploads;

/// How long in-flight calls get to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; defaults to SQLite in the data directory.
    pub database_url: Option<String>,
    /// TLS for the public API. Without it the API only listens on loopback.
    pub public_tls: Option<TlsFiles>,
    /// The console's built assets, served at `/` of the public API; none serves no console.
    pub console_dir: Option<PathBuf>,
    pub service: ServiceConfig,
    /// Timeouts and concurrency limits on the public API (`limits.rs`).
    pub limits: ApiLimits,
    pub health: HealthConfig,
    /// How long the replica keeps serving after health turned NOT_SERVING at shutdown, so
    /// that load balancers stop sending it calls before it drains.
    pub drain_delay: Duration,
    /// Used as the admin's API token when the database is bootstrapped, instead of a
    /// generated one written to `admin.token`.
    pub bootstrap_admin_token: Option<BootstrapToken>,
}

/// An operator-supplied admin token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken(pub String);

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Listeners {
    pub public: TcpListener,
    pub agent: TcpListener,
    /// `/metrics` (Prometheus), when asked for.
    pub metrics: Option<TcpListener>,
    /// `grpc.health.v1` alone, in plaintext, for probes that cannot speak TLS (kubelet).
    pub health: Option<TcpListener>,
}

impl Config {
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("castplane.db").display()
            )
        })
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }
}

/// Runs until `shutdown` is cancelled, then drains within a grace period.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Only ring is compiled in; installing it explicitly keeps rustls from guessing.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let public_addr = listeners.public.local_addr()?;
    let agent_addr = listeners.agent.local_addr()?;
    if config.public_tls.is_none() && !public_addr.ip().is_loopback() {
        bail!(
            "refusing to serve the public API without TLS on {public_addr}: configure a certificate and key, or listen on loopback"
        );
    }
    create_private_dir(&config.data_dir)?;
    let mut service_config = config.service.clone();
    if service_config.upload_spool_dir.as_os_str().is_empty() {
        service_config.upload_spool_dir = config.data_dir.join("spool");
    }
    prepare_spool_dir(&service_config.upload_spool_dir)?;
    let database_url = config.database_url();
    if let Some(database) = sqlite_path(&database_url) {
        prepare_sqlite_files(&database)?;
    }

    // Everything started below stops when `drain` is cancelled: after health has turned
    // NOT_SERVING and the drain delay has passed, or when this function returns early.
    let drain = CancellationToken::new();
    let _drain_on_return = drain.clone().drop_guard();
    let metrics = Metrics::new();
    let mut persistence = Persistence::connect(&database_url)
        .await
        .context("opening the database")?;
    {
        let metrics = metrics.clone();
        persistence.observe_queries(move |sql, elapsed, failed| {
            metrics.observe_query(sql, elapsed, failed)
        });
    }
    let ca = CertificateAuthority::load_or_create(&persistence)
        .await
        .context("loading the internal CA")?;
    let agent_identity = ca.issue_server_identity()?;
    let page_tokens = PageTokens::load_or_create(&persistence)
        .await
        .context("loading the page-token key")?;
    let control_plane = ControlPlane::new(
        persistence.clone(),
        service_config,
        ca,
        page_tokens,
        drain.clone(),
        metrics.dispatch.clone(),
    );

    let token_path = config.admin_token_path();
    let provided = config.bootstrap_admin_token.as_ref().map(|t| t.0.as_str());
    let bootstrapped = control_plane
        .bootstrap_admin(provided, |secret| {
            if provided.is_some() {
                // The operator holds it already; no copy on disk.
                return Ok(());
            }
            write_private_file(&token_path, format!("{secret}\n").as_bytes())
                .map_err(|e| format!("{e:#}"))
        })
        .await?;
    match (bootstrapped, provided.is_some()) {
        (true, true) => {
            tracing::info!("first start: the configured bootstrap token is the admin's")
        }
        (true, false) => {
            tracing::info!(path = %token_path.display(), "first start: wrote the admin API token")
        }
        (false, true) => tracing::info!(
            "the database already has its admin token; the bootstrap token is not used"
        ),
        (false, false) => {}
    }

    let (health, health_service) = Health::new(metrics.clone()).await;
    health
        .check_database(&persistence, config.health.ping_timeout())
        .await;
    tokio::spawn(health.clone().watch_database(
        persistence.clone(),
        config.health.clone(),
        drain.clone(),
    ));
    if let Some(listener) = listeners.health {
        tracing::info!(health_addr = %listener.local_addr()?, "serving plaintext health checks");
        let probes = Server::builder()
            .add_service(health_service.clone())
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                drain.clone().cancelled_owned(),
            );
        tokio::spawn(async move {
            if let Err(err) = probes.await {
                tracing::warn!(error = %err, "the health listener failed");
            }
        });
    }
    if let Some(listener) = listeners.metrics {
        let metrics = metrics.clone();
        let render: castplane_telemetry::metrics::Render = Arc::new(move || {
            let metrics = metrics.clone();
            Box::pin(async move { metrics.render() })
        });
        let server = castplane_telemetry::MetricsServer::new(listener, render);
        tracing::info!(metrics_addr = %server.local_addr()?, "serving /metrics");
        tokio::spawn(server.run(drain.clone()));
    }
    let reflection_v1 = reflection(PUBLIC_SERVICES).build_v1()?;
    let reflection_v1alpha = reflection(PUBLIC_SERVICES).build_v1alpha()?;

    let public_tls = config
        .public_tls
        .as_ref()
        .map(public_tls_config)
        .transpose()?;
    let cp = || control_plane.clone();
    let layers = tower::ServiceBuilder::new()
        .layer(rpc_trace_layer())
        .layer(rpc_metrics_layer(metrics.rpc.clone()))
        .layer(uploads::http_errors_layer())
        .layer(admission_layer(config.limits.clone(), metrics.rpc.clone()))
        .layer(AuthLayer::new(control_plane.clone()))
        .layer(stream_limit_layer(
            config.limits.clone(),
            metrics.rpc.clone(),
        ))
        .into_inner();
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AccountServiceServer::new(AccountApi {
            control_plane: cp(),
        }))
        .add_service(CatalogServiceServer::new(CatalogApi {
            control_plane: cp(),
        }))
        .add_service(MediaServiceServiceServer::new(MediaServiceApi {
            control_plane: cp(),
        }))
        .add_service(
            MediaLibraryServiceServer::new(MediaLibraryApi {
                control_plane: cp(),
            })
            // One chunk (1 MiB) and its framing fit; tonic's default of 4 MiB would admit more.
            .max_decoding_message_size(UPLOAD_MESSAGE_BYTES),
        )
        .add_service(ActionServiceServer::new(ActionApi {
            control_plane: cp(),
        }))
        .add_service(NodeServiceServer::new(NodeApi {
            control_plane: cp(),
        }))
        .add_service(SessionServiceServer::new(SessionApi {
            control_plane: cp(),
        }))
        .add_service(LoginServiceServer::new(LoginApi {
            control_plane: cp(),
        }));
    let mut routes = routes.routes();
    // Browsers' uploads (plain HTTP bodies: gRPC-web cannot stream from the client).
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.merge(uploads::routes(cp()));
    if let Some(dir) = config.console_dir.clone() {
        let router = std::mem::take(routes.axum_router_mut());
        *routes.axum_router_mut() = router.fallback_service(console::assets_service(&dir));
    }
    // HTTP/1.1 and gRPC-web for browsers (the console), beside HTTP/2 gRPC for everything else;
    // the same TLS, limits and bearer check serve both, and the uploads.
    let public = Server::builder()
        .accept_http1(true)
        .layer(console::BrowserLayer)
        .layer(layers)
        .add_routes(routes);
    let public: BoxFuture<'static, Result<(), tonic::transport::Error>> = match public_tls {
        Some(tls) => Box::pin(public.serve_with_incoming_shutdown(
            tls_incoming(listeners.public, tls, drain.clone()),
            drain.clone().cancelled_owned(),
        )),
        None => Box::pin(public.serve_with_incoming_shutdown(
            no_delay(listeners.public),
            drain.clone().cancelled_owned(),
        )),
    };

    // Client certificates are optional at the handshake only so that Join can be called with a
    // token; a certificate that is presented must chain to our CA, and every other call
    // requires one.
    let agent_tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            agent_identity.cert_pem,
            agent_identity.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(control_plane.ca().cert_pem()))
        .client_auth_optional(true);
    let agent_reflection_v1 = reflection(AGENT_SERVICES).build_v1()?;
    let agent_reflection_v1alpha = reflection(AGENT_SERVICES).build_v1alpha()?;
    let agent = Server::builder()
        .tls_config(agent_tls)?
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(rpc_trace_layer())
        .layer(rpc_metrics_layer(metrics.rpc.clone()))
        .add_service(agent_reflection_v1)
        .add_service(agent_reflection_v1alpha)
        .add_service(AgentServiceServer::new(AgentApi {
            control_plane: cp(),
        }))
        .serve_with_incoming_shutdown(no_delay(listeners.agent), drain.clone().cancelled_owned());

    control_plane
        .start_dispatcher()
        .await
        .context("starting the dispatcher")?;
    tokio::spawn(drain_after_shutdown(
        health,
        config.drain_delay,
        shutdown.clone(),
        drain.clone(),
    ));
    tracing::info!(%public_addr, %agent_addr, tls = config.public_tls.is_some(), console = config.console_dir.is_some(), "castplane control plane serving");

    let servers = async { tokio::try_join!(public, agent) };
    tokio::pin!(servers);
    tokio::select! {
        result = &mut servers => { result?; }
        _ = drain.cancelled() => {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut servers).await {
                Ok(result) => { result?; }
                Err(_) => tracing::warn!("in-flight calls did not finish within the grace period"),
            }
        }
    }
    control_plane.dispatcher_drained().await;
    persistence.close().await;
    tracing::info!("castplane control plane stopped");
    Ok(())
}

/// The start of a graceful shutdown: health turns NOT_SERVING at once, the replica keeps
/// serving for `delay` while probes and load balancers notice, then everything drains.
async fn drain_after_shutdown(
    health: Health,
    delay: Duration,
    shutdown: CancellationToken,
    drain: CancellationToken,
) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = drain.cancelled() => return,
    }
    health.start_draining().await;
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "health is NOT_SERVING; draining after the delay"
    );
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = drain.cancelled() => {}
    }
    drain.cancel();
}

/// What the public listener serves, as its reflection lists it.
const PUBLIC_SERVICES: &[&str] = &[
    "castplane.v1.AccountService",
    "castplane.v1.CatalogService",
    "castplane.v1.MediaServiceService",
    "castplane.v1.MediaLibraryService",
    "castplane.v1.ActionService",
    "castplane.v1.NodeService",
    "castplane.v1.SessionService",
    "castplane.v1.LoginService",
    "grpc.health.v1.Health",
];
/// The largest message an upload may send: a chunk of `blobs::BLOB_CHUNK_BYTES` with room for
/// its framing (the header is far smaller).
const UPLOAD_MESSAGE_BYTES: usize = crate::blobs::BLOB_CHUNK_BYTES + 64 * 1024;
/// What the agent listener serves.
const AGENT_SERVICES: &[&str] = &["castplane.agent.v1.AgentService"];

/// Server reflection advertising exactly `services` and reflection itself: each listener
/// lists what it serves, no more. Built once per version (older grpcurl and IDEs only speak
/// v1alpha).
fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(castplane_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for service in services.iter().chain(REFLECTION_SERVICES) {
        builder = builder.with_service_name(*service);
    }
    builder
}

const REFLECTION_SERVICES: &[&str] = &[
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Accepted connections with Nagle's algorithm off. tonic sets `TCP_NODELAY` only on sockets
/// it accepts itself; with our own listener each gRPC reply would otherwise wait for the
/// peer's delayed ACK (about 40 ms per call). A socket the option cannot be set on is served
/// anyway, and said so.
pub fn no_delay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::warn!(error = %err, "could not set TCP_NODELAY on a connection");
            }
        })
    })
}

/// How long a client gets to finish its TLS handshake on the public port.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The public API's TLS: HTTP/2 for gRPC clients and browsers, and HTTP/1.1 too, for gRPC-web
/// clients that do not speak HTTP/2 (tonic's own TLS offers only h2).
fn public_tls_config(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading {}", files.key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the public API's certificate and key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepted TLS connections of the public API. Each handshake runs on its own task, so a slow
/// or silent client never holds up the others.
fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.cancelled() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a public API connection failed");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Binds both listeners (port 0 picks a free port).
pub async fn bind(public: SocketAddr, agent: SocketAddr) -> anyhow::Result<Listeners> {
    let public = TcpListener::bind(public)
        .await
        .with_context(|| format!("binding the public API to {public}"))?;
    let agent = TcpListener::bind(agent)
        .await
        .with_context(|| format!("binding the agent listener to {agent}"))?;
    Ok(Listeners {
        public,
        agent,
        metrics: None,
        health: None,
    })
}

/// Binds an optional listener (`/metrics`, plaintext health); port 0 picks a free port.
pub async fn bind_extra(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

/// Creates the data directory 0700, or makes an existing one private: it holds the SQLite
/// database (the CA key, every service password) and the admin token. One owned by another
/// user cannot be made private by us, so it is refused with the reason.
pub fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let euid = nix_euid();
    if meta.uid() != euid {
        bail!(
            "{} is mode {mode:o} and owned by uid {}, not by this process (uid {euid}): other users could read the database and the admin token there; make it private (chmod 700) or choose another --data-dir",
            path.display(),
            meta.uid()
        );
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
        .with_context(|| format!("making {} private", path.display()))?;
    tracing::warn!(dir = %path.display(), was = %format!("{mode:o}"), "made the data directory private (0700): it holds the database and the admin token");
    Ok(())
}

/// Creates the upload spool directory (private) and removes what uploads cut off by a crash
/// left there: nothing in it outlives the call that spooled it.
fn prepare_spool_dir(dir: &Path) -> anyhow::Result<()> {
    create_private_dir(dir)?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(".upload-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes the SQLite database and its `-wal` / `-shm` companions private (0600) before SQLite
/// opens them. SQLite creates the companions with the database file's mode, so a database file
/// created here 0600 keeps all three private whatever the umask.
pub fn prepare_sqlite_files(database: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(database)
        .with_context(|| format!("creating {}", database.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("making {} private", file.display()))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }
    Ok(())
}

/// The file a `sqlite:` URL names, if it names one (not `:memory:`).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Writes a secret file readable by its owner only (0600), atomically.
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut incoming = Box::pin(super::no_delay(listener));
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let accepted = incoming
            .next()
            .await
            .expect("a connection")
            .expect("accepted");
        assert!(accepted.nodelay().expect("read TCP_NODELAY"));
    }
}
