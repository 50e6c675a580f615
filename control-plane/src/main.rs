//! `castplane-control`: the control plane server.

use std::net::SocketAddr;
use std::path::PathBuf;

use castplane_control::config::{FileConfig, load_file, resolve};
use castplane_telemetry::LogFormat;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// castplane's control plane: the gRPC API for admins, resellers and customers, and the mTLS
/// listener node agents dial into.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML configuration file; flags override it.
    #[arg(long, env = "CASTPLANE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the SQLite database, the admin token and other state live [default: castplane-data].
    #[arg(long, env = "CASTPLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Public API address [default: 127.0.0.1:7400].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Agent listener address (mTLS) [default: 127.0.0.1:7401].
    #[arg(long)]
    agent_listen: Option<SocketAddr>,
    /// PostgreSQL (postgres://…) instead of the embedded SQLite.
    #[arg(long, env = "CASTPLANE_DATABASE_URL")]
    database_url: Option<String>,
    /// PEM certificate for the public API (with --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the public API.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// The console's built assets (console/dist), served at / of the public API.
    #[arg(long)]
    console_dir: Option<PathBuf>,
    /// Seconds an action waits for its node while the node is unreachable before it fails;
    /// time the node is connected does not count [default: 600].
    #[arg(long)]
    action_deadline_seconds: Option<u64>,
    /// Lifetime of node certificates in seconds [default: 30 days].
    #[arg(long)]
    agent_certificate_validity_seconds: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics (unauthenticated: keep it internal).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Serve grpc.health.v1 alone, in plaintext, here (for kubelet gRPC probes).
    #[arg(long)]
    health_listen: Option<SocketAddr>,
    /// File holding the admin token to bootstrap an empty database with, instead of
    /// writing a generated one to DATA_DIR/admin.token.
    #[arg(long, env = "CASTPLANE_BOOTSTRAP_ADMIN_TOKEN_FILE")]
    bootstrap_admin_token_file: Option<PathBuf>,
    /// Seconds a public API call may take before it answers DEADLINE_EXCEEDED [default: 30].
    #[arg(long)]
    request_timeout_seconds: Option<u64>,
    /// Calls in flight on the public API before more are refused [default: 512].
    #[arg(long)]
    max_concurrent_requests: Option<u64>,
    /// Open streams (e.g. WatchAction) on the public API in total [default: 4096].
    #[arg(long)]
    max_streams: Option<u64>,
    /// Open streams per principal (account) [default: 64].
    #[arg(long)]
    max_streams_per_principal: Option<u64>,
    /// Seconds between database health checks [default: 5].
    #[arg(long)]
    health_check_interval_seconds: Option<u64>,
    /// Seconds to keep serving after health turns NOT_SERVING on shutdown [default: 0].
    #[arg(long)]
    shutdown_drain_seconds: Option<u64>,
    /// Log lines as text or as one JSON object each.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CASTPLANE_LOG_FORMAT")]
    log_format: LogFormat,
    /// Seconds an agent may stay silent before its session is closed and its node counts as
    /// unreachable; must exceed the agents' 5 s heartbeat interval [default: 15].
    #[arg(long)]
    heartbeat_timeout_seconds: Option<u64>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Everything written from here on is private, whatever the caller's umask: the database
    // and the admin token are secrets (the files that matter also get explicit modes).
    // SAFETY: umask has no preconditions; no other thread creates files yet.
    unsafe { libc::umask(0o077) };
    raise_open_file_limit();
    let args = Args::parse();
    let telemetry = castplane_telemetry::traces::init(
        castplane_telemetry::Service::Control,
        Some(castplane_telemetry::Logs {
            format: args.log_format,
            default_filter: "info,sqlx=warn,sea_orm=warn",
        }),
    );
    let file = match args.config.as_deref().map(load_file).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(err) => {
            eprintln!("castplane-control: {err}");
            telemetry.shutdown().await;
            return std::process::ExitCode::from(2);
        }
    };
    let flags = FileConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        agent_listen: args.agent_listen,
        database_url: args.database_url,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        console_dir: args.console_dir,
        action_deadline_seconds: args.action_deadline_seconds,
        agent_certificate_validity_seconds: args.agent_certificate_validity_seconds,
        metrics_listen: args.metrics_listen,
        health_listen: args.health_listen,
        bootstrap_admin_token_file: args.bootstrap_admin_token_file,
        request_timeout_seconds: args.request_timeout_seconds,
        max_concurrent_requests: args.max_concurrent_requests,
        max_streams: args.max_streams,
        max_streams_per_principal: args.max_streams_per_principal,
        health_check_interval_seconds: args.health_check_interval_seconds,
        shutdown_drain_seconds: args.shutdown_drain_seconds,
        heartbeat_timeout_seconds: args.heartbeat_timeout_seconds,
        ..Default::default()
    };
    let resolved = match resolve(file, flags) {
        Ok(resolved) => resolved,
        Err(errors) => {
            for error in errors {
                eprintln!("castplane-control: configuration: {error}");
            }
            telemetry.shutdown().await;
            return std::process::ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    let signal_shutdown = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal_shutdown.cancel();
    });
    let result = async {
        let mut listeners = castplane_control::bind(resolved.listen, resolved.agent_listen).await?;
        if let Some(addr) = resolved.metrics_listen {
            listeners.metrics = Some(castplane_control::bind_extra("metrics", addr).await?);
        }
        if let Some(addr) = resolved.health_listen {
            listeners.health = Some(castplane_control::bind_extra("health", addr).await?);
        }
        castplane_control::run(resolved.config, listeners, shutdown).await
    }
    .await;
    // The last actions' spans are still buffered: export them before the process goes.
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("castplane-control: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Every connected agent holds a socket: take the hard limit on open files, not the (often
/// 1024) soft one.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %err, soft, hard, "could not raise the open-file limit");
            }
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not read the open-file limit"),
    }
}
