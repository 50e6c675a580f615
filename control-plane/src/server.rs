//! Starting and stopping the control plane: `run(config, listeners, shutdown)`.
//!
//! The binary binds its listeners and calls `run`; tests bind port 0 and do the same, so they
//! start real servers in-process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use anyhow::{Context, bail};
use castplane_proto::agent::v1::agent_service_server::AgentServiceServer;
use castplane_proto::v1::account_service_server::AccountServiceServer;
use castplane_proto::v1::action_service_server::ActionServiceServer;
use castplane_proto::v1::catalog_service_server::CatalogServiceServer;
use castplane_proto::v1::login_service_server::LoginServiceServer;
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
use crate::api::media::MediaServiceApi;
use crate::api::nodes::NodeApi;
use crate::api::sessions::{LoginApi, SessionApi};
use crate::auth::AuthLayer;
use crate::console;
use crate::persistence::Persistence;
use crate::pki::CertificateAuthority;
use crate::service::{ControlPlane, ServiceConfig};

/// How long in-flight calls get to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; defaults to SQLite in the data directory.
    pub database_url: Option<String>,
    /// TLS for the public API. Without it the API only listens on loopback.
    pub public_tls: Option<TlsFiles>,
    /// The console's built assets, served at `/` of the public API; none serves no console.
    pub console_dir: Option<PathBuf>,
    pub service: ServiceConfig,
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Listeners {
    pub public: TcpListener,
    pub agent: TcpListener,
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

    let persistence = Persistence::connect(&config.database_url())
        .await
        .context("opening the database")?;
    let ca = CertificateAuthority::load_or_create(&persistence)
        .await
        .context("loading the internal CA")?;
    let agent_identity = ca.issue_server_identity()?;
    let control_plane = ControlPlane::new(
        persistence.clone(),
        config.service.clone(),
        ca,
        shutdown.clone(),
    );

    let token_path = config.admin_token_path();
    let wrote_token = control_plane
        .bootstrap_admin(|secret| {
            write_private_file(&token_path, format!("{secret}\n").as_bytes())
                .map_err(|e| format!("{e:#}"))
        })
        .await?;
    if wrote_token {
        tracing::info!(path = %token_path.display(), "first start: wrote the admin API token");
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AccountServiceServer<AccountApi>>()
        .await;
    health_reporter
        .set_serving::<MediaServiceServiceServer<MediaServiceApi>>()
        .await;
    // Both reflection versions: older grpcurl and IDEs only speak v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(castplane_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let public_tls = config
        .public_tls
        .as_ref()
        .map(public_tls_config)
        .transpose()?;
    let cp = || control_plane.clone();
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
    if let Some(dir) = config.console_dir.clone() {
        let router = std::mem::take(routes.axum_router_mut());
        *routes.axum_router_mut() = router.fallback_service(console::assets_service(&dir));
    }
    // HTTP/1.1 and gRPC-web for browsers (the console), beside HTTP/2 gRPC for everything else;
    // the same TLS and the same bearer check serve both.
    let public = Server::builder()
        .accept_http1(true)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(AuthLayer::new(control_plane.clone()))
        .add_routes(routes);
    let public: BoxFuture<'static, Result<(), tonic::transport::Error>> = match public_tls {
        Some(tls) => Box::pin(public.serve_with_incoming_shutdown(
            tls_incoming(listeners.public, tls, shutdown.clone()),
            shutdown.clone().cancelled_owned(),
        )),
        None => Box::pin(public.serve_with_incoming_shutdown(
            TcpListenerStream::new(listeners.public),
            shutdown.clone().cancelled_owned(),
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
    let agent = Server::builder()
        .tls_config(agent_tls)?
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(AgentServiceServer::new(AgentApi {
            control_plane: cp(),
            shutdown: shutdown.clone(),
        }))
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listeners.agent),
            shutdown.clone().cancelled_owned(),
        );

    let sweeper = tokio::spawn(sweep_until(control_plane.clone(), shutdown.clone()));
    tracing::info!(%public_addr, %agent_addr, tls = config.public_tls.is_some(), console = config.console_dir.is_some(), "castplane control plane serving");

    let servers = async { tokio::try_join!(public, agent) };
    tokio::pin!(servers);
    tokio::select! {
        result = &mut servers => { result?; }
        _ = shutdown.cancelled() => {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut servers).await {
                Ok(result) => { result?; }
                Err(_) => tracing::warn!("in-flight calls did not finish within the grace period"),
            }
        }
    }
    let _ = sweeper.await;
    persistence.close().await;
    tracing::info!("castplane control plane stopped");
    Ok(())
}

async fn sweep_until(control_plane: ControlPlane, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(err) = control_plane.sweep().await {
                    tracing::warn!(error = %err, "liveness sweep failed");
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
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
    Ok(Listeners { public, agent })
}

pub fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
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
