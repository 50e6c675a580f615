//! What castplane's two daemons share for operations: how they log (`--log-format`) and how
//! they serve Prometheus metrics (`--metrics-listen`). Each daemon keeps its own `metrics`
//! module with its registry and metric families; this crate only exposes them.

pub mod logging;
pub mod metrics;

pub use logging::{LogFormat, init_logging};
pub use metrics::{MetricsServer, encode_registry};
pub use prometheus_client;
