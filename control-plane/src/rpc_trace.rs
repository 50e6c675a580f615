//! One span per castplane RPC, the outermost layer of both listeners, so that limits, the
//! token check and the handler all run inside it.
//!
//! The span continues the caller's trace when the call carries W3C trace context
//! (`traceparent` metadata, as castctl sends it); otherwise it starts one. It ends with the
//! call — for a stream (`WatchAction`) when the stream ends — and records the gRPC status.
//! Health checks and reflection are not traced (probes would bury everything else), nor are
//! paths that name no castplane method: span names come from the API's own descriptors,
//! never from client text.

use futures::future::BoxFuture;
use tonic::Code;
use tower::Service;
use tracing::Instrument;

use crate::limits::{Middleware, MiddlewareLayer, OnEnd, TrackedBody};
use crate::methods::MethodTable;

type Response = http::Response<tonic::body::Body>;

pub fn rpc_trace_layer() -> MiddlewareLayer<TraceRpcs> {
    MiddlewareLayer::new(TraceRpcs)
}

#[derive(Clone, Copy, Debug)]
pub struct TraceRpcs;

/// The server span of a call to `path`, continuing the trace in `headers`; disabled for
/// what is not traced.
fn rpc_span(path: &str, headers: &http::HeaderMap) -> tracing::Span {
    if !path.starts_with("/castplane.") {
        return tracing::Span::none();
    }
    let Some(method) = MethodTable::get().lookup(path) else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        "rpc",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %method.service,
        rpc.method = %method.name,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    castplane_telemetry::set_parent_from_headers(&span, headers);
    span
}

impl Middleware for TraceRpcs {
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
        let span = rpc_span(request.uri().path(), request.headers());
        if span.is_disabled() {
            return Box::pin(inner.call(request));
        }
        let call = {
            let _entered = span.enter();
            inner.call(request)
        };
        let in_span = span.clone();
        Box::pin(
            async move {
                let response = call.await?;
                // The span lives in the closure until the call's status is known.
                let on_end: OnEnd = Box::new(move |code| {
                    span.record("rpc.grpc.status_code", code as i32);
                    if code != Code::Ok {
                        span.record("otel.status_code", "ERROR");
                    }
                });
                Ok(TrackedBody::wrap(response, Some(on_end), None))
            }
            .instrument(in_span),
        )
    }
}
