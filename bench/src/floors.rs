//! Floors: what the same work costs without castplane in it, measured in the same run.
//!
//! - `bidi`: a bare tonic server on the agent protocol's `Session`, over mutual TLS set up as
//!   the control plane's agent listener is (an internal CA, a server certificate for
//!   `control.castplane.internal`, client certificates, TCP_NODELAY through the same
//!   `no_delay` incoming), answering each agent message with one control message: the round
//!   trip the pipeline cannot beat.
//! - `unary`: a bare tonic server on the public API's port setup (TLS, TCP_NODELAY) that
//!   answers `GetMediaService` / `ListMediaServices` with the very bytes the control plane
//!   answered, without reading anything.
//! - `db`: the database committing an action's durable write set with nothing else around it.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use castplane_proto::agent::v1 as apb;
use castplane_proto::agent::v1::agent_service_client::AgentServiceClient;
use castplane_proto::agent::v1::agent_service_server::{AgentService, AgentServiceServer};
use futures::Stream;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::stats::Latencies;

/// A CA, a server identity for the agent listener's name, and one client identity.
struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "bench floor CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = params.self_signed(&ca_key)?;
    let ca_pem = ca.pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        castplane_agent::tls::CONTROL_PLANE_SERVER_NAME.to_owned(),
    ])?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = params.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = params.signed_by(&client_key, &issuer)?;
    Ok(Pki {
        server_cert_pem: format!("{}{}", server.pem(), ca_pem),
        ca_pem,
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

/// Answers every agent message on a session with one `ExecuteAction` carrying a spec.
struct EchoAgentService;

type ControlStream = Pin<Box<dyn Stream<Item = Result<apb::ControlMessage, Status>> + Send>>;

fn sample_execute() -> apb::ControlMessage {
    apb::ControlMessage {
        body: Some(apb::control_message::Body::ExecuteAction(
            apb::ExecuteAction {
                action_id: "act_01jbenchfloor0000000000000".to_owned(),
                kind: castplane_proto::v1::ActionKind::Stop as i32,
                service: Some(apb::ServiceSpec {
                    id: "svc_01jbenchfloor0000000000000".to_owned(),
                    name: "bench-floor".to_owned(),
                    display_name: "bench floor".to_owned(),
                    r#type: castplane_proto::v1::ServiceType::Icecast as i32,
                    max_listeners: 10,
                    max_bitrate_kbps: 128,
                    source_password: "0123456789abcdef0123456789abcdef".to_owned(),
                    admin_password: "0123456789abcdef0123456789abcdef".to_owned(),
                    relay_password: "0123456789abcdef0123456789abcdef".to_owned(),
                    public_host: "127.0.0.1".to_owned(),
                    generation: 7,
                    ..Default::default()
                }),
                not_after: None,
                traceparent: String::new(),
            },
        )),
    }
}

#[tonic::async_trait]
impl AgentService for EchoAgentService {
    async fn join(
        &self,
        _: Request<apb::JoinRequest>,
    ) -> Result<Response<apb::JoinResponse>, Status> {
        Err(Status::unimplemented("floor"))
    }

    async fn renew_certificate(
        &self,
        _: Request<apb::RenewCertificateRequest>,
    ) -> Result<Response<apb::RenewCertificateResponse>, Status> {
        Err(Status::unimplemented("floor"))
    }

    type FetchBlobStream = futures::stream::Empty<Result<apb::BlobChunk, Status>>;

    async fn fetch_blob(
        &self,
        _: Request<apb::FetchBlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        Err(Status::unimplemented("floor"))
    }

    type SessionStream = ControlStream;

    async fn session(
        &self,
        request: Request<Streaming<apb::AgentMessage>>,
    ) -> Result<Response<ControlStream>, Status> {
        let mut inbound = request.into_inner();
        let reply = sample_execute();
        let outbound = async_stream_from(move |tx| async move {
            while let Ok(Some(_)) = inbound.message().await {
                if tx.send(Ok(reply.clone())).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(outbound))
    }
}

/// A stream fed by a task.
fn async_stream_from<F, Fut>(f: F) -> ControlStream
where
    F: FnOnce(mpsc::UnboundedSender<Result<apb::ControlMessage, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(f(tx));
    Box::pin(UnboundedReceiverStream::new(rx))
}

async fn listener() -> anyhow::Result<(tokio::net::TcpListener, u16)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// Round trips per second and their latency on `streams` concurrent sessions of one
/// mutual-TLS connection, for `duration`.
pub async fn bidi(streams: usize, duration: Duration) -> anyhow::Result<(f64, Latencies)> {
    let pki = pki()?;
    let (listener, port) = listener().await?;
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &pki.server_cert_pem,
            &pki.server_key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem))
        .client_auth_optional(true);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = Server::builder()
        .tls_config(tls)?
        .add_service(AgentServiceServer::new(EchoAgentService))
        .serve_with_incoming_shutdown(
            castplane_control::server::no_delay(listener),
            shutdown.clone().cancelled_owned(),
        );
    let server = tokio::spawn(server);
    let config = castplane_agent::tls::mtls_client_config(
        &pki.ca_pem,
        &pki.client_cert_pem,
        &pki.client_key_pem,
    )?;
    let channel =
        castplane_agent::tls::connect(&format!("https://127.0.0.1:{port}"), config).await?;
    let heartbeat = apb::AgentMessage {
        body: Some(apb::agent_message::Body::Heartbeat(apb::Heartbeat {})),
    };
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let channel = channel.clone();
        let heartbeat = heartbeat.clone();
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut inbound = AgentServiceClient::new(channel)
                .session(UnboundedReceiverStream::new(rx))
                .await?
                .into_inner();
            let mut latencies = Latencies::default();
            while Instant::now() < end {
                let sent = Instant::now();
                tx.send(heartbeat.clone())?;
                inbound
                    .message()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("floor stream ended"))?;
                latencies.record(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let started = Instant::now();
    let mut all = Latencies::default();
    for task in tasks {
        all.merge(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = server.await;
    Ok((all.count() as f64 / elapsed, all))
}

/// Answers any unary call on the media-service service with fixed bytes.
#[derive(Clone)]
struct FixedAnswers {
    get: Arc<Vec<u8>>,
    list: Arc<Vec<u8>>,
}

impl tonic::server::NamedService for FixedAnswers {
    const NAME: &'static str = "castplane.v1.MediaServiceService";
}

struct Answer(Arc<Vec<u8>>);

impl tonic::server::UnaryService<Vec<u8>> for Answer {
    type Response = Vec<u8>;
    type Future = std::future::Ready<Result<Response<Vec<u8>>, Status>>;

    fn call(&mut self, _: Request<Vec<u8>>) -> Self::Future {
        std::future::ready(Ok(Response::new(self.0.as_ref().clone())))
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for FixedAnswers {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let answer = if request.uri().path().ends_with("/ListMediaServices") {
            self.list.clone()
        } else {
            self.get.clone()
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(castplane_integration_tests::raw::RawCodec);
            Ok(grpc.unary(Answer(answer), request).await)
        })
    }
}

/// A bare TLS tonic server answering Get and List with `get` and `list` (encoded responses);
/// returns its URL, the CA to trust, and the shutdown token.
pub async fn unary_server(
    get: Vec<u8>,
    list: Vec<u8>,
) -> anyhow::Result<(String, String, tokio_util::sync::CancellationToken)> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let (listener, port) = listener().await?;
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(
        cert.cert.pem(),
        cert.signing_key.serialize_pem(),
    ));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = Server::builder()
        .tls_config(tls)?
        .add_service(FixedAnswers {
            get: Arc::new(get),
            list: Arc::new(list),
        })
        .serve_with_incoming_shutdown(
            castplane_control::server::no_delay(listener),
            shutdown.clone().cancelled_owned(),
        );
    tokio::spawn(server);
    Ok((
        format!("https://localhost:{port}"),
        cert.cert.pem(),
        shutdown,
    ))
}

/// The database's raw commit rate for an action's durable write set, with `writers` writers
/// in parallel (SQLite has one writer whatever the pool: they queue on its lock). Per action:
/// one transaction that inserts the action row and bumps its node's version (queuing), one
/// that marks it dispatched and finished (claim and result, as the group commit pairs them
/// at best): the dispatcher's two durable writes, without any batching across actions.
/// As many nodes as the pipeline spreads its services over.
const NODES: usize = crate::pipeline::NODES;

pub async fn db_commits(
    database_url: &str,
    sqlite: bool,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let mut options = sea_orm::ConnectOptions::new(database_url.to_owned());
    options
        .max_connections(if sqlite { 1 } else { writers as u32 })
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    if sqlite {
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        db.execute_unprepared("PRAGMA synchronous=NORMAL").await?;
    }
    db.execute_unprepared(
        "CREATE TABLE bench_nodes (id TEXT PRIMARY KEY, version BIGINT NOT NULL)",
    )
    .await?;
    db.execute_unprepared(
        "CREATE TABLE bench_actions (id TEXT PRIMARY KEY, service_id TEXT NOT NULL, \
         node_id TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, sequence BIGINT NOT NULL, \
         queued_at BIGINT NOT NULL, dispatched_at BIGINT, finished_at BIGINT, error TEXT)",
    )
    .await?;
    for node in 0..NODES {
        db.execute_unprepared(&format!(
            "INSERT INTO bench_nodes VALUES ('node_{node}', 0)"
        ))
        .await?;
    }
    let end = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let db: DatabaseConnection = db.clone();
        let node = writer % NODES;
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < end {
                let id = format!("act_{writer}_{done}");
                let txn = db.begin().await?;
                txn.execute_unprepared(&format!(
                    "INSERT INTO bench_actions (id, service_id, node_id, kind, state, sequence, queued_at) \
                     VALUES ('{id}', 'svc_{writer}', 'node_{node}', 'stop', 'queued', {done}, 1)"
                ))
                .await?;
                txn.execute_unprepared(&format!("UPDATE bench_nodes SET version = version + 1 WHERE id = 'node_{node}'"))
                    .await?;
                txn.commit().await?;
                let txn = db.begin().await?;
                txn.execute_unprepared(&format!(
                    "UPDATE bench_actions SET state = 'succeeded', dispatched_at = 2, finished_at = 3 WHERE id = '{id}'"
                ))
                .await?;
                txn.commit().await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    db.close().await?;
    Ok(rate)
}
