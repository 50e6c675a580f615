//! castplane's node agent: joins the control plane with a one-time token, keeps one mTLS
//! stream to it, and runs the host's streaming servers under supervision.

pub mod action_log;
pub mod agent;
pub mod cli;
pub mod failpoints;
pub mod join;
pub mod media;
pub mod metrics;
pub mod plugins;
pub mod renewal;
pub mod state;
pub mod supervisor;
pub mod tls;

pub use agent::{AgentConfig, run};
pub use join::join;
