//! Fault injection for the project's own crash tests.
//!
//! `CASTPLANE_AGENT_FAILPOINTS=point[,point…]` makes the agent process abort — as a crash
//! would: no cleanup, nothing flushed that was not already — when it reaches a named point.
//! Unset (always, outside those tests) it costs one lookup at startup.
//!
//! Points: `action-before-execute` (an action is logged as started, nothing has run yet) and
//! `action-after-execute` (it has run, its result is not logged yet).

use std::sync::OnceLock;

const VARIABLE: &str = "CASTPLANE_AGENT_FAILPOINTS";

fn enabled() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var(VARIABLE)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Aborts the process if `point` is enabled.
pub fn hit(point: &str) {
    if enabled().iter().any(|p| p == point) {
        eprintln!("castplane-agent: failpoint {point} reached; aborting");
        std::process::abort();
    }
}
