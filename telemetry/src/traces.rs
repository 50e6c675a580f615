//! Traces: one trace per action, from castctl through the control plane to the agent.
//!
//! Every binary installs one `tracing` subscriber ([`init`]). When `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, it also carries an OpenTelemetry layer
//! that turns `tracing` spans into OTLP spans and exports them over gRPC (tonic, rustls with
//! ring; an `https://` endpoint is verified against the system's roots) in batches from a
//! background thread. When neither is set there is no OpenTelemetry layer at all: no span is
//! kept beyond what the log lines need, nothing is exported, no thread is started.
//!
//! The standard `OTEL_*` variables tune the exporter as everywhere (`OTEL_BSP_SCHEDULE_DELAY`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_RESOURCE_ATTRIBUTES`), except
//! `service.name`, which is always the binary's: `castctl`, `castplane-control`,
//! `castplane-agent`.
//!
//! W3C trace context crosses process boundaries as a `traceparent` string: in gRPC metadata
//! from castctl, in the `actions.trace_context` column while an action waits for its node, and
//! in `ExecuteAction.traceparent` to the agent. [`traceparent`] writes the current span's,
//! [`set_parent`] makes a new span continue one.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::LogFormat;

/// The binaries, by the `service.name` their spans carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Control,
    Agent,
    Castctl,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Control => "castplane-control",
            Service::Agent => "castplane-agent",
            Service::Castctl => "castctl",
        }
    }
}

/// The variables that turn export on, as the OpenTelemetry specification names them.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Whether spans are exported: an OTLP endpoint is configured.
pub fn export_configured() -> bool {
    ENDPOINT_VARS
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// The exporter's own crates would trace their own exports: never hand those to the exporter.
const NOT_EXPORTED: [&str; 5] = [
    "h2=off",
    "hyper=off",
    "tonic=off",
    "tower=off",
    "opentelemetry=off",
];

/// Holds the exporter; [`Telemetry::shutdown`] flushes what is still buffered.
#[must_use = "call shutdown() before the process exits, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span still buffered, then stops the exporter. The flush blocks
    /// a thread, and on a current-thread runtime the export needs that runtime's thread, so it
    /// runs on a blocking thread while this task waits. Must be called from inside the
    /// runtime the binary traced with.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("warning: exporting the last traces failed: {err}"),
            Err(err) => eprintln!("warning: exporting the last traces failed: {err}"),
        }
    }
}

/// What a binary writes to stderr besides its traces.
#[derive(Clone, Copy, Debug)]
pub struct Logs<'a> {
    pub format: LogFormat,
    /// The filter when `RUST_LOG` is unset.
    pub default_filter: &'a str,
}

/// Installs the global subscriber: log lines as `logs` says (none for castctl, which prints
/// its own output), and, when an OTLP endpoint is set, the OpenTelemetry layer for
/// `service`. Spans are exported at the log filter's levels (`RUST_LOG`, else
/// `default_filter`; castctl: `info`). Must be called inside a Tokio runtime (the gRPC channel
/// is created on it). A second call changes nothing and exports nothing.
pub fn init(service: Service, logs: Option<Logs<'_>>) -> Telemetry {
    let default_filter = logs.map_or("info", |l| l.default_filter);
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    if let Some(logs) = logs {
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let fmt = match logs.format {
            LogFormat::Text => fmt.with_filter(filter()).boxed(),
            LogFormat::Json => fmt
                .json()
                .with_current_span(false)
                .with_span_list(true)
                .with_filter(filter())
                .boxed(),
        };
        layers.push(fmt);
    }
    let mut provider = None;
    if export_configured() {
        match build_provider(service) {
            Ok(built) => {
                let mut otel_filter = filter();
                for directive in NOT_EXPORTED {
                    if let Ok(directive) = directive.parse() {
                        otel_filter = otel_filter.add_directive(directive);
                    }
                }
                let tracer = built.tracer("castplane");
                layers.push(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_location(false)
                        .with_threads(false)
                        .with_filter(otel_filter)
                        .boxed(),
                );
                provider = Some(built);
            }
            // Tracing is an aid: the binary runs on without it, and says why.
            Err(err) => eprintln!("warning: OpenTelemetry export disabled: {err}"),
        }
    }
    if layers.is_empty() {
        // castctl without an endpoint: no subscriber, so its spans cost next to nothing.
        return Telemetry { provider };
    }
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        // Someone (a test harness) installed a subscriber first; ours would see nothing.
        if let Some(provider) = provider.take() {
            let _ = provider.shutdown();
        }
    }
    Telemetry { provider }
}

fn build_provider(service: Service) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|err| format!("building the OTLP exporter: {err}"))?;
    let resource = Resource::builder()
        .with_service_name(service.name())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// The W3C `traceparent` of `span`, or `""` when it is not traced (no exporter, or the span
/// is disabled), so that nothing is sent or stored for it.
pub fn traceparent(span: &tracing::Span) -> String {
    let mut carrier = HashMap::new();
    propagator().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent").unwrap_or_default()
}

/// The current span's `traceparent` (see [`traceparent`]).
pub fn current_traceparent() -> String {
    traceparent(&tracing::Span::current())
}

/// Makes `span` continue the trace `traceparent` names. Call it before the span is first
/// entered. A value that is not a valid W3C `traceparent` (or an untraced span) changes
/// nothing: the span starts a trace of its own, or keeps its local parent.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    set_parent_from(span, &carrier);
}

/// Makes `span` continue the trace in `headers` (`traceparent`, `tracestate`), as an incoming
/// gRPC call carries it.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        set_parent_from(span, &HeaderExtractor(headers));
    }
}

fn set_parent_from(span: &tracing::Span, carrier: &dyn Extractor) {
    use opentelemetry::trace::TraceContextExt;
    let context = propagator().extract(carrier);
    if context.span().span_context().is_valid() {
        // Fails only for a span the layer does not know (no exporter): nothing to continue.
        let _ = span.set_parent(context);
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untraced_span_has_no_traceparent() {
        let span = tracing::info_span!("untraced");
        assert_eq!(traceparent(&span), "");
        // Continuing a trace without a layer is harmless.
        set_parent(
            &span,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        assert_eq!(traceparent(&span), "");
    }

    #[test]
    fn a_span_continues_the_trace_it_is_given() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("continued");
            set_parent(
                &span,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            );
            let own = traceparent(&span);
            assert!(
                own.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{own}"
            );
            assert!(
                !own.contains("00f067aa0ba902b7"),
                "a span of its own: {own}"
            );

            let garbage = tracing::info_span!("fresh");
            set_parent(&garbage, "00-nothex-00f067aa0ba902b7-01");
            let fresh = traceparent(&garbage);
            assert_eq!(fresh.len(), 55, "{fresh}");
            assert!(!fresh.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
        });
    }
}
