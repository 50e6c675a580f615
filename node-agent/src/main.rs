//! `castplane-agent`: the node agent binary (see `castplane_agent::cli`).

fn main() -> std::process::ExitCode {
    castplane_agent::cli::main()
}
