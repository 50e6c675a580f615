//! Tower layers on the public API: per-call metrics, a global concurrency limit, request
//! timeouts and limits on open streams, per principal and in total.
//!
//! Order (outermost first): metrics → concurrency → timeout → auth → streams. Metrics see
//! every call, refusals included; the concurrency limit and the timeout need no principal, so
//! they run before the token's database lookup; the stream limit needs the principal.
//!
//! - **Concurrency**: at most `max_concurrent_requests` calls between arrival and response;
//!   one more is refused at once (RESOURCE_EXHAUSTED), not queued, so overload turns into
//!   fast refusals instead of growing latency for everyone. A stream counts until it opens.
//! - **Timeout**: a call that has not answered within `request_timeout` gets
//!   DEADLINE_EXCEEDED. For a stream this covers opening it, not how long it stays open; an
//!   upload (client streaming) answers only at its end, so instead each of its messages must
//!   arrive within `service::library::UPLOAD_IDLE_TIMEOUT`.
//! - **Streams**: a streaming call (`WatchAction`, or any method the descriptor set marks as
//!   streaming) holds a slot for as long as its response body lives, both from its
//!   principal's `max_streams_per_principal` and from the process-wide `max_streams`. One
//!   token (or all tokens of one account: the principal is the account) cannot hold more, so
//!   it cannot starve other callers of the server's memory and database time.
//!
//! Health checks are exempt from everything but metrics: a probe must see the truth even
//! when the API is saturated. Limits are per replica; they live in memory because they
//! bound what this process holds open, not a shared quota.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Code;
use tonic::body::Body;
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::domain::Principal;
use crate::methods::{Method, MethodTable};
use crate::metrics::{GrpcCode, Limit, LimitLabels, RpcLabels, RpcMetrics, RpcResultLabels};

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The limits, resolved and bounded (`config.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub max_streams: usize,
    pub max_streams_per_principal: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 512,
            max_streams: 4096,
            max_streams_per_principal: 64,
        }
    }
}

impl ApiLimits {
    /// The bounds `config.rs` enforces at startup: (name, smallest, largest).
    pub const BOUNDS: [(&'static str, u64, u64); 4] = [
        ("request_timeout_seconds", 1, 3600),
        ("max_concurrent_requests", 1, 100_000),
        ("max_streams", 1, 1_000_000),
        ("max_streams_per_principal", 1, 100_000),
    ];
}

type Response = http::Response<Body>;

fn is_health(path: &str) -> bool {
    path.starts_with(HEALTH_PREFIX)
}

/// A refusal with a `QuotaFailure` detail naming the limit, so tools can tell which one.
fn refusal(code: Code, subject: String, message: String) -> Response {
    let mut details = ErrorDetails::new();
    details.add_quota_failure_violation(subject, message.clone());
    tonic::Status::with_error_details(code, message, details).into_http()
}

/// One middleware of this module: what it does with a call, given the (ready) inner service.
/// [`MiddlewareLayer`] supplies the tower plumbing, the same for all of them.
pub trait Middleware: Clone + Send + Sync + 'static {
    fn handle<S, B>(
        &self,
        inner: S,
        request: http::Request<B>,
    ) -> BoxFuture<'static, Result<Response, S::Error>>
    where
        S: Service<http::Request<B>, Response = Response> + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static;
}

#[derive(Clone)]
pub struct MiddlewareLayer<M>(M);

impl<M> MiddlewareLayer<M> {
    pub(crate) fn new(middleware: M) -> Self {
        MiddlewareLayer(middleware)
    }
}

impl<M: Clone, S> Layer<S> for MiddlewareLayer<M> {
    type Service = WithMiddleware<M, S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithMiddleware {
            middleware: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct WithMiddleware<M, S> {
    middleware: M,
    inner: S,
}

impl<M, S, B> Service<http::Request<B>> for WithMiddleware<M, S>
where
    M: Middleware,
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone is the one that was not polled ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.middleware.handle(inner, request)
    }
}

fn answer<E: 'static>(response: Response) -> BoxFuture<'static, Result<Response, E>> {
    Box::pin(async move { Ok(response) })
}

// ---------------------------------------------------------------------------------------
// Response bodies that report their end.

pub(crate) type OnEnd = Box<dyn FnOnce(Code) + Send>;

/// A response body that runs `on_end` with the call's gRPC status when it ends (its trailers
/// arrive, it errors, or it is dropped unfinished: `CANCELLED`), and drops `guard` — a stream
/// slot — with itself.
pub struct TrackedBody {
    inner: Body,
    on_end: Option<OnEnd>,
    _guard: Option<Box<dyn Send>>,
}

impl TrackedBody {
    /// Wraps `response`. A response already complete (a trailers-only error, whose status is
    /// in its headers) ends at once: `on_end` runs now and `guard` is dropped.
    pub(crate) fn wrap(
        response: Response,
        on_end: Option<OnEnd>,
        guard: Option<Box<dyn Send>>,
    ) -> Response {
        let header_code = grpc_code(response.headers());
        if header_code.is_some() || response.body().is_end_stream() {
            if let Some(on_end) = on_end {
                on_end(header_code.unwrap_or(Code::Ok));
            }
            return response;
        }
        response.map(|inner| {
            Body::new(TrackedBody {
                inner,
                on_end,
                _guard: guard,
            })
        })
    }

    fn finish(&mut self, code: Code) {
        if let Some(on_end) = self.on_end.take() {
            on_end(code);
        }
    }
}

fn grpc_code(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_code(trailers).unwrap_or(Code::Unknown);
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let code = status.code();
                self.finish(code);
            }
            Poll::Ready(None) => self.finish(Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

// ---------------------------------------------------------------------------------------
// Metrics.

/// Counts every call by method and final status, and times it to its response.
pub fn rpc_metrics_layer(metrics: RpcMetrics) -> MiddlewareLayer<RecordRpcs> {
    MiddlewareLayer(RecordRpcs { metrics })
}

#[derive(Clone)]
pub struct RecordRpcs {
    metrics: RpcMetrics,
}

fn labels_of(path: &str) -> RpcLabels {
    match MethodTable::get().lookup(path) {
        Some(Method { service, name, .. }) => RpcLabels {
            service: service.clone(),
            method: name.clone(),
        },
        None => RpcLabels {
            service: "unknown".into(),
            method: "unknown".into(),
        },
    }
}

impl Middleware for RecordRpcs {
    fn handle<S, B>(
        &self,
        mut inner: S,
        request: http::Request<B>,
    ) -> BoxFuture<'static, Result<Response, S::Error>>
    where
        S: Service<http::Request<B>, Response = Response> + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        let metrics = self.metrics.clone();
        let labels = labels_of(request.uri().path());
        let started = Instant::now();
        Box::pin(async move {
            let response = inner.call(request).await?;
            metrics
                .duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            let requests = metrics.requests.clone();
            let on_end: OnEnd = Box::new(move |code| {
                requests
                    .get_or_create(&RpcResultLabels {
                        service: labels.service,
                        method: labels.method,
                        code: GrpcCode(code),
                    })
                    .inc();
            });
            Ok(TrackedBody::wrap(response, Some(on_end), None))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Global concurrency and timeout.

/// Refuses calls beyond `max_concurrent_requests` in flight, and answers DEADLINE_EXCEEDED
/// for a call still unanswered after `request_timeout`.
pub fn admission_layer(limits: ApiLimits, metrics: RpcMetrics) -> MiddlewareLayer<Admission> {
    MiddlewareLayer(Admission {
        slots: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
        limits,
        metrics,
    })
}

#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limits: ApiLimits,
    metrics: RpcMetrics,
}

impl Middleware for Admission {
    fn handle<S, B>(
        &self,
        mut inner: S,
        request: http::Request<B>,
    ) -> BoxFuture<'static, Result<Response, S::Error>>
    where
        S: Service<http::Request<B>, Response = Response> + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        if is_health(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let limits = &self.limits;
        let refuse = |limit: Limit, response: Response| {
            self.metrics
                .limit_refusals
                .get_or_create(&LimitLabels { limit })
                .inc();
            answer(response)
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            let max = limits.max_concurrent_requests;
            return refuse(
                Limit::ConcurrentRequests,
                refusal(
                    Code::ResourceExhausted,
                    "server/concurrent_requests".to_owned(),
                    format!(
                        "the server is handling its limit of {max} concurrent requests; retry with backoff"
                    ),
                ),
            );
        };
        let timeout = limits.request_timeout;
        let refusals = self.metrics.limit_refusals.clone();
        // An upload answers after its last chunk, however long the file takes to send; its
        // handler bounds the wait for each message instead.
        let path = request.uri().path();
        let uploading = crate::uploads::is_upload_path(path)
            || crate::methods::MethodTable::get()
                .lookup(path)
                .is_some_and(|m| m.client_streaming);
        if uploading {
            return Box::pin(async move {
                let _permit = permit;
                inner.call(request).await
            });
        }
        Box::pin(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, inner.call(request)).await {
                Ok(result) => result,
                Err(_) => {
                    refusals
                        .get_or_create(&LimitLabels {
                            limit: Limit::RequestTimeout,
                        })
                        .inc();
                    Ok(tonic::Status::deadline_exceeded(format!(
                        "the request did not complete within the server's limit of {timeout:?}"
                    ))
                    .into_http())
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------
// Streams.

/// Open streams per principal; an entry goes when its count drops to zero, so the map holds
/// only principals with a stream open.
#[derive(Default)]
struct StreamCounts {
    by_principal: Mutex<HashMap<String, usize>>,
}

impl StreamCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // Single increments and decrements cannot leave the map inconsistent.
        self.by_principal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A stream's hold on its principal's slot and on the process-wide one.
struct StreamSlot {
    counts: Arc<StreamCounts>,
    principal: String,
    _total: OwnedSemaphorePermit,
    open_streams: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.principal);
            }
        }
        self.open_streams.dec();
    }
}

/// Limits streaming calls per principal and in total; must run after authentication.
pub fn stream_limit_layer(limits: ApiLimits, metrics: RpcMetrics) -> MiddlewareLayer<StreamLimit> {
    MiddlewareLayer(StreamLimit {
        counts: Arc::default(),
        total: Arc::new(Semaphore::new(limits.max_streams)),
        limits,
        metrics,
    })
}

#[derive(Clone)]
pub struct StreamLimit {
    counts: Arc<StreamCounts>,
    total: Arc<Semaphore>,
    limits: ApiLimits,
    metrics: RpcMetrics,
}

impl StreamLimit {
    /// A slot, or the refusal to answer with.
    fn acquire(&self, principal: &Principal) -> Result<StreamSlot, Box<Response>> {
        let key = principal.audit_name();
        let refuse = |limit: Limit, response: Response| {
            self.metrics
                .limit_refusals
                .get_or_create(&LimitLabels { limit })
                .inc();
            Box::new(response)
        };
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            let max = self.limits.max_streams;
            return Err(refuse(
                Limit::Streams,
                refusal(
                    Code::ResourceExhausted,
                    "server/streams".to_owned(),
                    format!("the server holds its limit of {max} open streams; retry with backoff"),
                ),
            ));
        };
        let mut counts = self.counts.lock();
        let open = counts.entry(key.clone()).or_insert(0);
        let max = self.limits.max_streams_per_principal;
        if *open >= max {
            let response = refusal(
                Code::ResourceExhausted,
                format!("{key}/streams"),
                format!(
                    "too many open streams for this caller: {open} of {max} in use; close finished ones (e.g. watches) before opening more"
                ),
            );
            drop(counts);
            return Err(refuse(Limit::StreamsPerPrincipal, response));
        }
        *open += 1;
        drop(counts);
        self.metrics.open_streams.inc();
        Ok(StreamSlot {
            counts: self.counts.clone(),
            principal: key,
            _total: total,
            open_streams: self.metrics.open_streams.clone(),
        })
    }
}

impl Middleware for StreamLimit {
    fn handle<S, B>(
        &self,
        mut inner: S,
        request: http::Request<B>,
    ) -> BoxFuture<'static, Result<Response, S::Error>>
    where
        S: Service<http::Request<B>, Response = Response> + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        let path = request.uri().path();
        // A browser's upload (plain HTTP) holds a slot like the gRPC upload it stands for.
        let streaming = !is_health(path)
            && (crate::uploads::is_upload_path(path)
                || MethodTable::get()
                    .lookup(path)
                    .is_some_and(|method| method.streaming));
        // Only authenticated calls carry a principal; the public ones (reflection) are
        // bounded by the process-wide concurrency limit instead.
        let principal = request.extensions().get::<Principal>();
        let (true, Some(principal)) = (streaming, principal) else {
            return Box::pin(inner.call(request));
        };
        let slot = match self.acquire(principal) {
            Ok(slot) => slot,
            Err(response) => return answer(*response),
        };
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(TrackedBody::wrap(response, None, Some(Box::new(slot))))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn status_of(response: &Response) -> (Code, String) {
        let status =
            tonic::Status::from_header_map(response.headers()).expect("a trailers-only status");
        (status.code(), status.message().to_owned())
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(path)
            .body(())
            .expect("request")
    }

    /// A handler whose first call waits until `release` fires; later calls answer at once.
    fn gated(
        release: Arc<tokio::sync::Notify>,
    ) -> tower::util::BoxCloneService<http::Request<()>, Response, std::convert::Infallible> {
        let calls = Arc::new(AtomicUsize::new(0));
        tower::util::BoxCloneService::new(tower::service_fn(move |_: http::Request<()>| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            let release = release.clone();
            async move {
                if first {
                    release.notified().await;
                }
                Ok(http::Response::new(Body::empty()))
            }
        }))
    }

    #[tokio::test]
    async fn calls_beyond_the_concurrency_limit_are_refused_not_queued() {
        let limits = ApiLimits {
            max_concurrent_requests: 1,
            ..ApiLimits::default()
        };
        let metrics = crate::metrics::Metrics::new();
        let release = Arc::new(tokio::sync::Notify::new());
        let mut service =
            admission_layer(limits, metrics.rpc.clone()).layer(gated(release.clone()));
        let first = tokio::spawn(service.call(request("/castplane.v1.AccountService/GetCaller")));
        // Let the first call take its slot.
        tokio::task::yield_now().await;
        let refused = service
            .call(request("/castplane.v1.AccountService/GetCaller"))
            .await
            .expect("an answer");
        let (code, message) = status_of(&refused);
        assert_eq!(code, Code::ResourceExhausted);
        assert!(
            message.contains("limit of 1 concurrent requests"),
            "{message}"
        );
        // Health is never refused: probes must see the truth under load.
        let health = service
            .call(request("/grpc.health.v1.Health/Check"))
            .await
            .expect("health");
        assert_eq!(grpc_code(health.headers()), None);
        release.notify_one();
        first
            .await
            .expect("joined")
            .expect("the first call answers");
        let after = service
            .call(request("/castplane.v1.AccountService/GetCaller"))
            .await
            .expect("an answer");
        assert_eq!(grpc_code(after.headers()), None, "the slot is free again");
        assert!(
            metrics
                .render()
                .contains("castplane_api_limit_refusals_total{limit=\"concurrent_requests\"} 1")
        );
    }

    #[tokio::test]
    async fn a_call_past_the_timeout_answers_deadline_exceeded() {
        let limits = ApiLimits {
            request_timeout: Duration::from_millis(50),
            ..ApiLimits::default()
        };
        let metrics = crate::metrics::Metrics::new();
        // Never released: only the timeout can end the call.
        let never = Arc::new(tokio::sync::Notify::new());
        let mut service = admission_layer(limits, metrics.rpc.clone()).layer(gated(never));
        let response = service
            .call(request("/castplane.v1.NodeService/ListNodes"))
            .await
            .expect("an answer");
        let (code, message) = status_of(&response);
        assert_eq!(code, Code::DeadlineExceeded);
        assert!(message.contains("within the server's limit"), "{message}");
    }
}
