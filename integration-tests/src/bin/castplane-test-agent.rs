//! The agent binary, built with the tests that run it as a process (`AgentProcess`), so they
//! always run the agent of the tree under test, never a stale `target/debug/castplane-agent`.

fn main() -> std::process::ExitCode {
    castplane_agent::cli::main()
}
