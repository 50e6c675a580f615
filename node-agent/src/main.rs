//! `castplane-agent`: the node agent binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use castplane_agent::state::DataDir;
use castplane_agent::{AgentConfig, join, run};
use castplane_telemetry::LogFormat;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// castplane's node agent: runs the streaming servers of this host for the control plane.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text or as one JSON object each.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CASTPLANE_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Join the control plane with a one-time token (from `castctl node add`).
    Join {
        /// The control plane's agent listener, e.g. https://cp.example.net:7401. Give several
        /// (repeated, or comma-separated) for several replicas: the agent fails over between
        /// them.
        #[arg(long, required = true, value_delimiter = ',')]
        control_plane: Vec<String>,
        /// The join token; also read from CASTPLANE_JOIN_TOKEN so it stays out of `ps`.
        #[arg(long, env = "CASTPLANE_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long, env = "CASTPLANE_AGENT_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Connect to the control plane and run this host's services.
    Run {
        #[arg(long, env = "CASTPLANE_AGENT_DATA_DIR")]
        data_dir: PathBuf,
        /// Overrides the control-plane endpoints recorded at join (repeated, or
        /// comma-separated).
        #[arg(long, value_delimiter = ',')]
        control_plane: Vec<String>,
        /// Serve Prometheus metrics at http://ADDR/metrics (unauthenticated: keep it internal).
        #[arg(long, env = "CASTPLANE_AGENT_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    castplane_telemetry::init_logging(args.log_format, "info");
    let result = match args.command {
        Command::Join {
            control_plane,
            token,
            data_dir,
        } => join(&control_plane, &token, &DataDir::new(data_dir))
            .await
            .map(|identity| {
                println!(
                    "joined as node {} ({})",
                    identity.node_name, identity.node_id
                );
            }),
        Command::Run {
            data_dir,
            control_plane,
            metrics_listen,
        } => {
            let mut config = AgentConfig::new(data_dir);
            config.control_plane_urls = control_plane;
            config.metrics_listen = metrics_listen;
            let shutdown = CancellationToken::new();
            let on_signal = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down; services keep running");
                on_signal.cancel();
            });
            run(config, shutdown).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("castplane-agent: {err:#}");
            ExitCode::FAILURE
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
