//! Failover: two replicas on one PostgreSQL, agents spread over them (each knows both), a
//! burst of actions through the surviving replica's API, and `kill -9` of the other replica
//! in the middle of it. Every action must end SUCCEEDED and run exactly once on its node.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::control::ControlPlane;
use crate::pipeline::{create_nodes, create_services, owner, watch_to_end};
use crate::sim_agent::{self, Fleet, now_ns};

#[derive(Clone, Debug, Default, Serialize)]
pub struct FailoverResult {
    pub agents: usize,
    /// Agents whose session was on the killed replica.
    pub agents_on_killed_replica: usize,
    pub actions: usize,
    /// From the kill until every agent of the killed replica had a new session.
    pub reconnect_seconds: f64,
    /// From the kill until every action queued before it was final.
    pub all_terminal_seconds: f64,
    /// Actions that did not end SUCCEEDED, or that the API reports done but never ran.
    pub lost: usize,
    /// Actions their node executed more than once.
    pub doubled: usize,
    /// Deliveries of an action already answered (at-least-once; the agent's log answers them).
    pub redeliveries: u64,
}

pub async fn run(
    binary: &std::path::Path,
    database_url: String,
    agents_count: usize,
    in_flight: usize,
    burst: Duration,
) -> anyhow::Result<FailoverResult> {
    let survivor = ControlPlane::start(binary, Some(database_url)).await?;
    let mut doomed = survivor.replica().await?;
    let admin = survivor.admin().await?;
    let owner = owner(&admin).await?;
    let tokens = create_nodes(&admin, "failover", agents_count, 8).await?;
    let agents = sim_agent::join_all(&survivor.agent_url(), tokens, 32).await?;
    // Half prefer the replica that will die, half the survivor; all know both.
    for (i, agent) in agents.iter().enumerate() {
        let urls = if i % 2 == 0 {
            vec![doomed.agent_url(), survivor.agent_url()]
        } else {
            vec![survivor.agent_url(), doomed.agent_url()]
        };
        agent.set_urls(urls);
    }
    let fleet = Arc::new(Fleet::default());
    let shutdown = CancellationToken::new();
    let _stop_agents = shutdown.clone().drop_guard();
    sim_agent::run_all(&agents, &fleet, &shutdown);
    sim_agent::all_connected_after(&agents, 0, Duration::from_secs(120)).await?;
    let per_service: Vec<usize> = (0..in_flight.max(agents.len()))
        .map(|i| i % agents.len())
        .collect();
    let placement: Vec<String> = per_service
        .iter()
        .map(|&a| agents[a].node_id.clone())
        .collect();
    let services = create_services(&admin, &owner, "failover", &placement).await?;
    let agent_of: HashMap<String, usize> = services
        .iter()
        .cloned()
        .zip(per_service.iter().copied())
        .collect();

    let clients = {
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(survivor.admin().await?);
        }
        clients
    };
    let started = Instant::now();
    let end = started + burst;
    let mut workers = Vec::new();
    let in_flight = in_flight.min(services.len());
    for worker in 0..in_flight {
        let client = clients[worker % clients.len()].clone();
        let service = services[worker].clone();
        workers.push(tokio::spawn(async move {
            // (action id, service id, succeeded, queued at, finished at)
            let mut done: Vec<(String, String, bool, u64, u64)> = Vec::new();
            while Instant::now() < end {
                let queued_at = now_ns();
                let action = client
                    .media()
                    .stop_media_service(castplane_proto::v1::StopMediaServiceRequest {
                        id: service.clone(),
                    })
                    .await?
                    .into_inner();
                let ok = watch_to_end(&client, &action.id).await?;
                done.push((action.id, service.clone(), ok, queued_at, now_ns()));
            }
            anyhow::Ok(done)
        }));
    }
    tokio::time::sleep(burst / 3).await;
    let doomed_url = doomed.agent_url();
    let on_doomed: Vec<_> = agents
        .iter()
        .filter(|a| a.current_url() == doomed_url)
        .cloned()
        .collect();
    let killed_at = now_ns();
    doomed.kill();
    let reconnect =
        sim_agent::all_connected_after(&on_doomed, killed_at, Duration::from_secs(120)).await?;
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await??);
    }
    // Those queued before the kill, some of them on the dying replica's sessions.
    let last_finish = all
        .iter()
        .filter(|d| d.3 <= killed_at)
        .map(|d| d.4)
        .max()
        .unwrap_or(killed_at);
    let mut lost = 0;
    let mut doubled = 0;
    for (action_id, service_id, ok, _, _) in &all {
        let executed = agent_of
            .get(service_id)
            .map(|&a| agents[a].executed(action_id))
            .unwrap_or(0);
        if !ok || executed == 0 {
            lost += 1;
        }
        if executed > 1 {
            doubled += 1;
        }
    }
    Ok(FailoverResult {
        agents: agents.len(),
        agents_on_killed_replica: on_doomed.len(),
        actions: all.len(),
        reconnect_seconds: reconnect.as_secs_f64(),
        all_terminal_seconds: Duration::from_nanos(last_finish.saturating_sub(killed_at))
            .as_secs_f64(),
        lost,
        doubled,
        redeliveries: fleet.replays.load(Ordering::Relaxed),
    })
}
