//! Fan-in: many connected agents on one control plane — what an idle one costs, how fast all
//! come back after a restart, and how fast an action on every node gets out.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::control::ControlPlane;
use crate::pipeline::{create_nodes, create_services, owner};
use crate::sim_agent::{self, Fleet, SimAgent, now_ns};

#[derive(Clone, Debug, Default, Serialize)]
pub struct FanInResult {
    pub agents: usize,
    /// Seconds to create, join and connect the agents added for this level.
    pub setup_seconds: f64,
    pub rss_mib: f64,
    /// Control-plane RSS above the empty process's, per connected agent.
    pub rss_kib_per_agent: f64,
    /// Control-plane CPU while every agent is connected and idle, % of one core.
    pub idle_cpu_percent: f64,
    /// SQL statements per second per idle agent (the control plane's statement counter).
    pub queries_per_second_per_agent: f64,
    /// PostgreSQL transactions per second per idle agent (pg_stat_database), PostgreSQL only.
    pub pg_transactions_per_second_per_agent: Option<f64>,
    /// From queuing one action per node (the API, 64 calls in flight) until every agent has it.
    pub dispatch_all_seconds: f64,
    /// From the restarted process's start until every agent has a new session.
    pub restart_reconnect_seconds: f64,
    /// From the restarted process's start until every node's pending action was re-sent.
    pub restart_dispatch_seconds: f64,
    /// The graceful stop before the restart (SIGTERM until exit).
    pub stop_seconds: f64,
}

async fn pg_transactions(url: &str) -> anyhow::Result<f64> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(url).await?;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT (xact_commit + xact_rollback)::float8 AS n FROM pg_stat_database \
             WHERE datname = current_database()",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no pg_stat_database row"))?;
    let n: f64 = row.try_get("", "n")?;
    db.close().await?;
    Ok(n)
}

pub async fn run(
    binary: &std::path::Path,
    database_url: Option<String>,
    levels: &[usize],
    idle_window: Duration,
) -> anyhow::Result<Vec<FanInResult>> {
    let mut cp = ControlPlane::start(binary, database_url.clone()).await?;
    let admin = cp.admin().await?;
    let owner = owner(&admin).await?;
    // Let the fresh process settle before taking its empty footprint.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline_rss = cp.rss_bytes()?;
    let fleet = Arc::new(Fleet::default());
    let shutdown = CancellationToken::new();
    let _stop_agents = shutdown.clone().drop_guard();
    let mut agents: Vec<Arc<SimAgent>> = Vec::new();
    let mut services: Vec<String> = Vec::new();
    let mut results = Vec::new();
    for &level in levels {
        let setup_started = Instant::now();
        let adding = level.saturating_sub(agents.len());
        let admin = cp.admin().await?;
        let tokens = create_nodes(&admin, &format!("fan-{level}"), adding, 4).await?;
        let joined = sim_agent::join_all(&cp.agent_url(), tokens, 64).await?;
        let since = now_ns();
        sim_agent::run_all(&joined, &fleet, &shutdown);
        sim_agent::all_connected_after(&joined, since, Duration::from_secs(300)).await?;
        let nodes: Vec<String> = joined.iter().map(|a| a.node_id.clone()).collect();
        services.extend(create_services(&admin, &owner, &format!("fan-{level}"), &nodes).await?);
        agents.extend(joined);
        let setup_seconds = setup_started.elapsed().as_secs_f64();

        // Idle: everything connected, nothing to do.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let q0 = cp.queries().await?;
        let cpu0 = cp.cpu_time()?;
        let x0 = match &database_url {
            Some(url) => Some(pg_transactions(url).await?),
            None => None,
        };
        let t0 = Instant::now();
        tokio::time::sleep(idle_window).await;
        let q1 = cp.queries().await?;
        let cpu1 = cp.cpu_time()?;
        let x1 = match &database_url {
            Some(url) => Some(pg_transactions(url).await?),
            None => None,
        };
        let window = t0.elapsed().as_secs_f64();
        let n = agents.len() as f64;
        let rss = cp.rss_bytes()?;

        // One action per node, held unanswered so that the restart finds them pending.
        fleet.hold.store(true, Ordering::Relaxed);
        let queued_at = now_ns();
        let queued: Vec<anyhow::Result<()>> = futures::stream::iter(services.clone())
            .map(|id| {
                let admin = admin.clone();
                async move {
                    admin
                        .media()
                        .stop_media_service(castplane_proto::v1::StopMediaServiceRequest { id })
                        .await?;
                    Ok(())
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        queued.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        let dispatch_all =
            sim_agent::all_delivered_after(&agents, queued_at, Duration::from_secs(300)).await?;

        let stop_started = Instant::now();
        cp.stop();
        let stop_seconds = stop_started.elapsed().as_secs_f64();
        let restarted_at = now_ns();
        cp.spawn()?;
        let reconnect =
            sim_agent::all_connected_after(&agents, restarted_at, Duration::from_secs(300)).await?;
        let redispatch =
            sim_agent::all_delivered_after(&agents, restarted_at, Duration::from_secs(300)).await?;
        cp.wait_serving().await?;
        fleet.hold.store(false, Ordering::Relaxed);
        for agent in &agents {
            agent.flush_held(&fleet);
        }

        results.push(FanInResult {
            agents: agents.len(),
            setup_seconds,
            rss_mib: rss as f64 / (1024.0 * 1024.0),
            rss_kib_per_agent: rss.saturating_sub(baseline_rss) as f64 / 1024.0 / n,
            idle_cpu_percent: (cpu1.saturating_sub(cpu0)).as_secs_f64() / window * 100.0,
            queries_per_second_per_agent: q1.since(&q0).total() / window / n,
            pg_transactions_per_second_per_agent: match (x0, x1) {
                (Some(a), Some(b)) => Some((b - a) / window / n),
                _ => None,
            },
            dispatch_all_seconds: dispatch_all.as_secs_f64(),
            restart_reconnect_seconds: reconnect.as_secs_f64(),
            restart_dispatch_seconds: redispatch.as_secs_f64(),
            stop_seconds,
        });
        eprintln!("fan-in {}: {:?}", agents.len(), results.last());
    }
    Ok(results)
}
