//! `castctl`: the admin CLI of castplane, a thin client of the `castplane.v1` gRPC API.
//!
//! Exit status: 0 on success, 1 when the server refuses or something fails (including an
//! action that ends FAILED), 2 when the command line is incomplete or wrong.

mod cli;
mod client;
mod commands;
mod config;
mod error;
mod json;
mod lookup;
mod output;
mod parse;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tracing::Instrument;

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    // One thread is plenty for one call at a time, and lets the wizard's blocking prompts run
    // on it without starving anything.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Inside the runtime: the exporter's gRPC channel lives on it.
        let telemetry =
            castplane_telemetry::traces::init(castplane_telemetry::Service::Castctl, None);
        let command = command_path(&matches);
        // The root of the trace: every call this command makes continues it (client.rs sends
        // its traceparent), and so does every action it queues, down to the agent.
        let span = tracing::info_span!(
            "castctl",
            otel.name = %format_args!("castctl {command}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            command = %command,
        );
        let result = commands::run(cli).instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        // Closed before the flush, so that it is exported with the rest.
        drop(span);
        // castctl exits right after: export what is buffered first.
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", err.render());
            err.exit_code()
        }
    }
}

/// The subcommands given, as clap names them (`service start`): the command's span name, and
/// never an argument's value (a token, a password).
fn command_path(matches: &clap::ArgMatches) -> String {
    let mut path = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        path.push(name);
        current = sub;
    }
    path.join(" ")
}
