//! What one token's streams cost everyone else: another principal's `GetCaller` latency
//! while one customer tries to open `CASTPLANE_BENCH_STREAMS` (default 2,000) `WatchAction`
//! streams, with the per-principal stream limit at its default and with it effectively off.
//!
//! Prints median, p99, min and max over `CASTPLANE_BENCH_RUNS` calls (default 50) and how
//! many streams were admitted. Run with
//! `cargo bench -p castplane-integration-tests --bench stream_limits`.

use std::time::{Duration, Instant};

use castplane_control::ApiLimits;
use castplane_integration_tests::scenarios::{QueuedAction, report, watch_action};
use castplane_proto::v1 as pb;
use futures::StreamExt;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let streams = env_or("CASTPLANE_BENCH_STREAMS", 2_000);
    let runs = env_or("CASTPLANE_BENCH_RUNS", 50);
    castplane_integration_tests::init_tracing_with_default("error");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let unlimited = ApiLimits {
            max_streams: 1_000_000,
            max_streams_per_principal: 100_000,
            max_concurrent_requests: 100_000,
            ..ApiLimits::default()
        };
        for (label, limits) in [
            ("default limits", ApiLimits::default()),
            ("stream limits off", unlimited),
        ] {
            let setup = QueuedAction::start(limits).await;
            let quiet = get_caller_latency(&setup, runs).await;
            report(&format!("{label}: GetCaller, no streams"), &quiet);
            let attempts = (0..streams).map(|_| {
                let client = setup.customer.clone();
                let id = setup.action_id.clone();
                async move { watch_action(&client, &id).await.ok() }
            });
            let open: Vec<_> = futures::stream::iter(attempts)
                .buffer_unordered(256)
                .filter_map(|stream| async move { stream })
                .collect()
                .await;
            let busy = get_caller_latency(&setup, runs).await;
            report(
                &format!(
                    "{label}: GetCaller, {} of {streams} streams open",
                    open.len()
                ),
                &busy,
            );
            drop(open);
            setup.agent.shutdown().await;
        }
        Ok(())
    })
}

/// Another principal's (the reseller's) GetCaller, `runs` times in a row.
async fn get_caller_latency(setup: &QueuedAction, runs: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        setup
            .reseller
            .accounts()
            .get_caller(pb::GetCallerRequest {})
            .await
            .expect("GetCaller");
        samples.push(started.elapsed());
    }
    samples
}
