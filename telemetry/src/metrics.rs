//! `GET /metrics` in the Prometheus text format (0.0.4), on its own listener.
//!
//! The endpoint is plain HTTP/1.1 with no authentication, like every Prometheus target: bind
//! it to loopback or a network only the scraper reaches. Metrics never carry secrets, and
//! their labels are bounded (method names, program names, service ids), never client text.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Scrapers are few; anything beyond this many connections waits for a free slot.
const MAX_CONNECTIONS: usize = 16;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Produces the exposition on each scrape: refreshes what is sampled at scrape time, then
/// encodes the registry.
pub type Render = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// The registry in the Prometheus text format.
pub fn encode_registry(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(err) = prometheus_text::encode(&mut text, registry) {
        // Only a broken `Display` of a label could fail; serve what was encoded.
        tracing::warn!(error = %err, "encoding metrics failed");
    }
    text
}

pub struct MetricsServer {
    listener: TcpListener,
    render: Render,
}

impl MetricsServer {
    pub fn new(listener: TcpListener, render: Render) -> Self {
        MetricsServer { listener, render }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`; open scrapes are dropped then.
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = JoinSet::new();
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = shutdown.cancelled() => return,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "metrics listener accept failed");
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            // Finished connections are reaped as we go, so the set stays small.
            while connections.try_join_next().is_some() {}
            let render = self.render.clone();
            connections.spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request| {
                    let render = render.clone();
                    async move { Ok::<_, Infallible>(respond(request, render).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(err) = served {
                    tracing::debug!(%peer, error = %err, "metrics connection ended with an error");
                }
            });
        }
    }
}

async fn respond(request: Request<Incoming>, render: Render) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "metrics are served at /metrics\n".to_owned(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET\n".to_owned(),
        );
    }
    reply(
        StatusCode::OK,
        prometheus_text::CONTENT_TYPE,
        render().await,
    )
}
