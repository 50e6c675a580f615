//! castplane's control plane: tenancy, media service records, ownership rules, quotas, nodes
//! and the durable action queue, served over gRPC to admins, resellers and customers on one
//! listener and to node agents (mTLS) on another.
//!
//! Layers: `api` (thin gRPC handlers) → `service` (the rules) → `persistence` (SQL).

pub mod api;
pub mod auth;
pub mod blobs;
pub mod clock;
pub mod config;
pub mod console;
pub mod domain;
pub mod error;
pub mod health;
pub mod ids;
pub mod limits;
pub mod methods;
pub mod metrics;
pub mod persistence;
pub mod pki;
pub mod rpc_trace;
pub mod server;
pub mod service;
pub mod uploads;

pub use health::HealthConfig;
pub use limits::ApiLimits;
pub use server::{BootstrapToken, Config, Listeners, TlsFiles, bind, bind_extra, run};
pub use service::ServiceConfig;
