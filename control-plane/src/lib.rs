//! castplane's control plane: tenancy, media service records, ownership rules, quotas, nodes
//! and the durable action queue, served over gRPC to admins, resellers and customers on one
//! listener and to node agents (mTLS) on another.
//!
//! Layers: `api` (thin gRPC handlers) → `service` (the rules) → `persistence` (SQL).

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod console;
pub mod domain;
pub mod error;
pub mod ids;
pub mod persistence;
pub mod pki;
pub mod server;
pub mod service;

pub use server::{Config, Listeners, TlsFiles, bind, run};
pub use service::ServiceConfig;
