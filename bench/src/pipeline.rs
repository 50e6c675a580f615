//! The action pipeline end to end: `StopMediaService` through the public API, the dispatcher,
//! the agent session over mutual TLS and back, until `WatchAction` reports SUCCEEDED.
//! Stops of stopped services are no-ops on a node, so what is measured is castplane itself.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use castplane_integration_tests::Client;
use castplane_integration_tests::client::{icecast_request, limits};
use castplane_proto::v1 as pb;
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::control::ControlPlane;
use crate::sim_agent::{self, Fleet, SimAgent};
use crate::stats::{Latencies, LatencySummary};

/// Simulated nodes the pipeline's services are spread over.
pub const NODES: usize = 16;

/// API connections the load generator spreads its calls over (HTTP/2 streams per connection
/// are bounded by the server's settings).
const CLIENT_CONNECTIONS: usize = 8;

/// A control plane with a reseller, simulated agents and services placed on them.
pub struct Fixture {
    pub cp: ControlPlane,
    pub clients: Vec<Client>,
    pub agents: Vec<Arc<SimAgent>>,
    pub fleet: Arc<Fleet>,
    pub shutdown: CancellationToken,
    pub services: Vec<String>,
}

impl Fixture {
    pub fn admin(&self) -> &Client {
        &self.clients[0]
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A reseller without limits; its primary account owns the services.
pub async fn owner(admin: &Client) -> anyhow::Result<String> {
    let reseller = admin
        .accounts()
        .create_reseller(pb::CreateResellerRequest {
            reseller: Some(pb::Reseller {
                display_name: "Bench Radio".to_owned(),
                limits: Some(limits(None, None, None, None, None, None)),
                allowed_service_types: vec![pb::ServiceType::Icecast as i32],
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    Ok(reseller.primary_customer_id)
}

/// `count` nodes with `ports` ports each; their join tokens. Nodes are records only: the
/// simulated agents bind nothing, so port ranges may repeat across nodes.
pub async fn create_nodes(
    admin: &Client,
    prefix: &str,
    count: usize,
    ports: u32,
) -> anyhow::Result<Vec<String>> {
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(0..count)
        .map(|i| {
            let admin = admin.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let response = admin
                    .nodes()
                    .create_node(pb::CreateNodeRequest {
                        node: Some(pb::Node {
                            name,
                            public_host: "127.0.0.1".to_owned(),
                            port_range: Some(pb::PortRange {
                                first: 20_000,
                                last: 20_000 + ports - 1,
                            }),
                            ..Default::default()
                        }),
                        join_token_ttl_seconds: 0,
                    })
                    .await?
                    .into_inner();
                Ok(response.join_token.context("a join token")?.token)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Creates one icecast service per entry of `node_ids` on that node; their ids, in order.
pub async fn create_services(
    admin: &Client,
    owner: &str,
    prefix: &str,
    node_ids: &[String],
) -> anyhow::Result<Vec<String>> {
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(node_ids.iter().enumerate())
        .map(|(i, node)| {
            let admin = admin.clone();
            let mut request = icecast_request(owner, &format!("{prefix}-{i}"), 10);
            if let Some(service) = request.media_service.as_mut() {
                service.node_id = node.clone();
            }
            async move {
                Ok(admin
                    .media()
                    .create_media_service(request)
                    .await?
                    .into_inner()
                    .id)
            }
        })
        .buffered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

impl Fixture {
    /// A control plane on `database_url` with [`NODES`] simulated agents and `services`
    /// services spread over them.
    pub async fn start(
        binary: &std::path::Path,
        database_url: Option<String>,
        services: usize,
    ) -> anyhow::Result<Fixture> {
        let cp = ControlPlane::start(binary, database_url).await?;
        let mut clients = Vec::new();
        for _ in 0..CLIENT_CONNECTIONS {
            clients.push(cp.admin().await?);
        }
        let admin = clients[0].clone();
        let owner = owner(&admin).await?;
        let per_node = services.div_ceil(NODES) as u32;
        let tokens = create_nodes(&admin, "bench-node", NODES, 2 * per_node + 4).await?;
        let agents = sim_agent::join_all(&cp.agent_url(), tokens, 16).await?;
        let fleet = Arc::new(Fleet::default());
        let shutdown = CancellationToken::new();
        sim_agent::run_all(&agents, &fleet, &shutdown);
        sim_agent::all_connected_after(&agents, 0, Duration::from_secs(60)).await?;
        let placement: Vec<String> = (0..services)
            .map(|i| agents[i % agents.len()].node_id.clone())
            .collect();
        let services = create_services(&admin, &owner, "bench", &placement).await?;
        Ok(Fixture {
            cp,
            clients,
            agents,
            fleet,
            shutdown,
            services,
        })
    }
}

/// Queues a stop and follows it to its end; Ok(true) when it succeeded.
pub async fn stop_and_watch(client: &Client, service_id: &str) -> anyhow::Result<bool> {
    let action = client
        .media()
        .stop_media_service(pb::StopMediaServiceRequest {
            id: service_id.to_owned(),
        })
        .await?
        .into_inner();
    watch_to_end(client, &action.id).await
}

pub async fn watch_to_end(client: &Client, action_id: &str) -> anyhow::Result<bool> {
    let mut stream = client
        .actions()
        .watch_action(pb::WatchActionRequest {
            id: action_id.to_owned(),
        })
        .await?
        .into_inner();
    while let Some(action) = stream.message().await? {
        if action.state == pb::ActionState::Succeeded as i32 {
            return Ok(true);
        }
        if action.state == pb::ActionState::Failed as i32 {
            return Ok(false);
        }
    }
    bail!("WatchAction ended before action {action_id} did")
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadResult {
    pub in_flight: usize,
    pub actions_per_second: f64,
    #[serde(flatten)]
    pub latency: LatencySummary,
    pub failed: u64,
    /// SQL statements per finished action (all verbs).
    pub queries_per_action: f64,
    /// Control-plane CPU per finished action, milliseconds.
    pub cpu_ms_per_action: f64,
}

/// `in_flight` workers, each with its own services, queue a stop and watch it to its end,
/// again and again; counted over `duration` after `warmup`.
pub async fn closed_loop(
    cp: &ControlPlane,
    clients: &[Client],
    services: &[String],
    in_flight: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let in_flight = in_flight.min(services.len()).max(1);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let client = clients[worker % clients.len()].clone();
        let mine: Vec<String> = services
            .iter()
            .skip(worker)
            .step_by(in_flight)
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut failed = 0u64;
            let mut i = 0usize;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let ok = stop_and_watch(&client, &mine[i % mine.len()]).await?;
                i += 1;
                if began >= measure_from && Instant::now() <= end {
                    if ok {
                        latencies.record(began.elapsed());
                    } else {
                        failed += 1;
                    }
                }
            }
            anyhow::Ok((latencies, failed))
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let before = (cp.queries().await?, cp.cpu_time()?);
    tokio::time::sleep_until(end.into()).await;
    let after = (cp.queries().await?, cp.cpu_time()?);
    let mut latencies = Latencies::default();
    let mut failed = 0;
    for task in tasks {
        let (l, f) = task.await??;
        latencies.merge(l);
        failed += f;
    }
    let done = latencies.count().max(1) as f64;
    Ok(LoadResult {
        in_flight,
        actions_per_second: latencies.count() as f64 / duration.as_secs_f64(),
        latency: latencies.summary(),
        failed,
        queries_per_action: after.0.since(&before.0).total() / done,
        cpu_ms_per_action: (after.1.saturating_sub(before.1)).as_secs_f64() * 1000.0 / done,
    })
}

/// Actions queued at a fixed `rate` (per second), whatever the answers do, for `duration`;
/// a service is reused only once its previous action ended.
pub async fn open_loop(
    fixture: &Fixture,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for service in &fixture.services {
        idle_tx.send(service.clone())?;
    }
    let latencies: Arc<Mutex<Latencies>> = Arc::default();
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let tasks = tokio_util::task::TaskTracker::new();
    let before = (fixture.cp.queries().await?, fixture.cp.cpu_time()?);
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < duration {
        ticker.tick().await;
        let service = idle_rx.recv().await.context("idle services")?;
        let client = fixture.clients[sent % fixture.clients.len()].clone();
        sent += 1;
        let (latencies, failed, errors, idle_tx) = (
            latencies.clone(),
            failed.clone(),
            errors.clone(),
            idle_tx.clone(),
        );
        tasks.spawn(async move {
            let began = Instant::now();
            match stop_and_watch(&client, &service).await {
                Ok(true) => latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(began.elapsed()),
                Ok(false) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = idle_tx.send(service);
        });
    }
    tasks.close();
    tasks.wait().await;
    let elapsed = started.elapsed();
    let after = (fixture.cp.queries().await?, fixture.cp.cpu_time()?);
    let latencies = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let errors = errors.load(Ordering::Relaxed);
    if errors > 0 {
        bail!("{errors} API calls failed during the open-loop run");
    }
    let done = latencies.count().max(1) as f64;
    Ok(LoadResult {
        in_flight: 0,
        actions_per_second: latencies.count() as f64 / elapsed.as_secs_f64(),
        latency: latencies.summary(),
        failed: failed.load(Ordering::Relaxed),
        queries_per_action: after.0.since(&before.0).total() / done,
        cpu_ms_per_action: (after.1.saturating_sub(before.1)).as_secs_f64() * 1000.0 / done,
    })
}
