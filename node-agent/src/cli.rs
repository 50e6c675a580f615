//! The `castplane-agent` command line. The binary's `main` is this module's [`main`], so every
//! build of the agent (the packaged binary, the one the integration tests run) is the same.
//!
//! Exit status: 0 on success, 1 when joining or running fails, 2 when a setting is wrong — every
//! setting is checked before anything connects or starts, and each wrong one is named.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use castplane_telemetry::LogFormat;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::state::DataDir;
use crate::{AgentConfig, join, run};

/// castplane's node agent: runs the streaming servers of this host for the control plane.
#[derive(Parser, Debug)]
#[command(name = "castplane-agent", version, about)]
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

/// Checks an agent-listener URL: `https://HOST:PORT`, nothing else.
pub fn check_control_plane_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url:?} must start with https:// (the agent listener is mTLS)"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!("{url:?} must be https://HOST:PORT"));
    }
    let port = authority
        .rsplit_once(':')
        .map(|(_, port)| port)
        .ok_or_else(|| format!("{url:?} must name the port, e.g. https://cp.example.net:7401"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{url:?}: {port:?} is not a port")),
    }
}

fn check_urls(urls: &[String], errors: &mut Vec<String>) {
    for url in urls {
        if let Err(e) = check_control_plane_url(url) {
            errors.push(format!("--control-plane: {e}"));
        }
    }
}

/// Every problem with the settings of `command`, before anything is done.
fn check(command: &Command) -> Vec<String> {
    let mut errors = Vec::new();
    match command {
        Command::Join {
            control_plane,
            token,
            data_dir,
        } => {
            check_urls(control_plane, &mut errors);
            if castplane_proto::join_token::parse(token).is_none() {
                errors.push(
                    "--token: not a castplane join token (expected cpjoin.<secret>.<ca sha256>, as `castctl node add` prints it)"
                        .to_owned(),
                );
            }
            if data_dir.as_os_str().is_empty() {
                errors.push("--data-dir: must not be empty".to_owned());
            }
        }
        Command::Run {
            data_dir,
            control_plane,
            metrics_listen: _,
        } => {
            check_urls(control_plane, &mut errors);
            if !DataDir::new(data_dir).is_joined() {
                errors.push(format!(
                    "--data-dir: {} holds no joined node; run `castplane-agent join` first",
                    data_dir.display()
                ));
            }
        }
    }
    errors
}

pub fn main() -> ExitCode {
    // What the agent writes is private unless it says otherwise (config files it hands to a
    // server's group get explicit modes).
    // SAFETY: umask has no preconditions; no other thread exists yet.
    unsafe { libc::umask(0o077) };
    let args = Args::parse();
    let errors = check(&args.command);
    if !errors.is_empty() {
        for error in errors {
            eprintln!("castplane-agent: {error}");
        }
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("castplane-agent: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let log_format = args.log_format;
    let result = runtime.block_on(async {
        // Inside the runtime: the trace exporter's gRPC channel lives on it.
        let telemetry = castplane_telemetry::traces::init(
            castplane_telemetry::Service::Agent,
            Some(castplane_telemetry::Logs {
                format: log_format,
                default_filter: "info",
            }),
        );
        let result = run_command(args.command).await;
        // Spans of the last actions are still buffered: export them before the process goes.
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("castplane-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
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
            DataDir::new(&data_dir).make_private()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_plane_urls_are_checked() {
        assert!(check_control_plane_url("https://cp.example.net:7401").is_ok());
        assert!(check_control_plane_url("https://127.0.0.1:7401/").is_ok());
        assert!(check_control_plane_url("https://[::1]:7401").is_ok());
        for bad in [
            "http://cp:7401",
            "cp:7401",
            "https://cp",
            "https://cp:99999",
            "https://cp:7401/path",
            "https://user@cp:7401",
            "https://",
        ] {
            assert!(check_control_plane_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_bad_setting_is_named_at_once() {
        let errors = check(&Command::Join {
            control_plane: vec!["cp:7401".into()],
            token: "nope".into(),
            data_dir: PathBuf::new(),
        });
        assert_eq!(errors.len(), 3, "{errors:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let errors = check(&Command::Run {
            data_dir: dir.path().to_owned(),
            control_plane: Vec::new(),
            metrics_listen: None,
        });
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("castplane-agent join"), "{errors:?}");
    }
}
