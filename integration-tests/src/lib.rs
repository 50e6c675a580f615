//! Test harness: starts the real control plane in-process (public API over TLS, agents over
//! mTLS), real node agents, and a throwaway PostgreSQL cluster, and hands out authenticated
//! gRPC clients. Tests drive the system only through the public API, as a user's client would.

pub mod agent;
pub mod client;
pub mod control_plane;
pub mod fleet;
pub mod fuzz;
pub mod media;
pub mod metrics;
pub mod otlp;
pub mod postgres;
pub mod raw;
pub mod scenarios;
pub mod streaming;
pub mod uploads;
pub mod wait;

pub use agent::{AgentHandle, AgentProcess};
pub use client::Client;
pub use control_plane::{Backend, ControlPlaneHandle};
pub use wait::wait_for;

/// Runs each named rule `async fn rule(backend: Backend)` once on SQLite and once on
/// PostgreSQL, as `sqlite::rule` and `postgres::rule`.
#[macro_export]
macro_rules! conformance {
    ($($rule:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $rule() {
                    super::$rule(super::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $rule() {
                    super::$rule(super::Backend::Postgres).await;
                }
            )+
        }
    };
}

/// Logs warnings (or what `RUST_LOG` asks for) to the test output.
pub fn init_tracing() {
    init_tracing_with_default("warn");
}

/// Like [`init_tracing`] with another default filter; the first call in a process wins.
pub fn init_tracing_with_default(filter: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_test_writer()
        .try_init();
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests that bind it right away).
pub fn free_port() -> u16 {
    free_port_range(1).0 as u16
}

/// Where test servers get their ports: below the kernel's ephemeral range (32768–60999 here),
/// so a port found free cannot be handed to some process's outgoing connection before the
/// server binds it, as a port from `bind(0)` can.
const TEST_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// `n` consecutive ports that are free right now, for a node's port range.
pub fn free_port_range(n: u32) -> (u32, u32) {
    use rand::Rng;
    let n = n.clamp(1, 1000);
    loop {
        let first = rand::rng().random_range(TEST_PORTS.start..TEST_PORTS.end - n);
        if (first..first + n).all(|p| std::net::TcpListener::bind(("0.0.0.0", p as u16)).is_ok()) {
            return (first, first + n - 1);
        }
    }
}
