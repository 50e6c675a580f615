//! What castplane's binaries share for operations: how they log (`--log-format`), how they
//! export traces (OTLP, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and carry W3C trace
//! context between them, and how they serve Prometheus metrics (`--metrics-listen`). Each
//! daemon keeps its own `metrics` module with its registry and metric families; this crate
//! only exposes them.

pub mod logging;
pub mod metrics;
pub mod traces;

pub use logging::LogFormat;
pub use metrics::{MetricsServer, encode_registry};
pub use prometheus_client;
pub use traces::{
    Logs, Service, Telemetry, current_traceparent, set_parent, set_parent_from_headers, traceparent,
};
