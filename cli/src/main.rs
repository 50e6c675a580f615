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

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", err.render());
            err.exit_code()
        }
    }
}
