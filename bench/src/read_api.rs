//! The read API: `GetMediaService` and `ListMediaServices(100)` at a fixed number of calls in
//! flight, against a bare tonic server answering the same bytes over the same TLS setup.

use std::time::{Duration, Instant};

use castplane_integration_tests::Client;
use castplane_proto::v1 as pb;
use prost::Message;
use serde::Serialize;

use crate::pipeline::Fixture;
use crate::stats::{Latencies, LatencySummary};

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReadResult {
    pub call: String,
    pub in_flight: usize,
    pub requests_per_second: f64,
    #[serde(flatten)]
    pub latency: LatencySummary,
    pub floor_requests_per_second: f64,
    pub floor_latency: LatencySummary,
}

#[derive(Clone, Copy)]
enum Call {
    Get,
    List,
}

async fn call(client: &Client, call: Call, service_id: &str) -> anyhow::Result<()> {
    match call {
        Call::Get => {
            client
                .media()
                .get_media_service(pb::GetMediaServiceRequest {
                    id: service_id.to_owned(),
                })
                .await?;
        }
        Call::List => {
            let page = client
                .media()
                .list_media_services(pb::ListMediaServicesRequest {
                    scope: pb::ServiceScope::All as i32,
                    page_size: 100,
                    ..Default::default()
                })
                .await?
                .into_inner();
            anyhow::ensure!(page.media_services.len() == 100, "a page of 100 expected");
        }
    }
    Ok(())
}

async fn load(
    clients: &[Client],
    which: Call,
    services: &[String],
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<(f64, Latencies)> {
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let client = clients[worker % clients.len()].clone();
        let services = services.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut i = worker;
            while Instant::now() < end {
                let began = Instant::now();
                call(&client, which, &services[i % services.len()]).await?;
                latencies.record(began.elapsed());
                i += 7;
            }
            anyhow::Ok(latencies)
        }));
    }
    let started = Instant::now();
    let mut all = Latencies::default();
    for task in tasks {
        all.merge(task.await??);
    }
    Ok((all.count() as f64 / started.elapsed().as_secs_f64(), all))
}

pub async fn run(
    fixture: &Fixture,
    levels: &[usize],
    duration: Duration,
) -> anyhow::Result<Vec<ReadResult>> {
    anyhow::ensure!(
        fixture.services.len() >= 100,
        "the read API needs 100 services"
    );
    // The floor answers with what the control plane answered.
    let admin = fixture.admin();
    let get = admin
        .media()
        .get_media_service(pb::GetMediaServiceRequest {
            id: fixture.services[0].clone(),
        })
        .await?
        .into_inner()
        .encode_to_vec();
    let list = admin
        .media()
        .list_media_services(pb::ListMediaServicesRequest {
            scope: pb::ServiceScope::All as i32,
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .encode_to_vec();
    let (floor_url, floor_ca, floor_stop) = crate::floors::unary_server(get, list).await?;
    let _stop_floor = floor_stop.drop_guard();
    let mut floor_clients = Vec::new();
    for _ in 0..fixture.clients.len() {
        floor_clients.push(Client::connect(&floor_url, &floor_ca, "floor").await);
    }
    let mut results = Vec::new();
    for (name, which) in [
        ("GetMediaService", Call::Get),
        ("ListMediaServices(100)", Call::List),
    ] {
        for &in_flight in levels {
            let (rate, latencies) = load(
                &fixture.clients,
                which,
                &fixture.services,
                in_flight,
                duration,
            )
            .await?;
            let (floor_rate, floor_latencies) = load(
                &floor_clients,
                which,
                &fixture.services,
                in_flight,
                duration,
            )
            .await?;
            results.push(ReadResult {
                call: name.to_owned(),
                in_flight,
                requests_per_second: rate,
                latency: latencies.summary(),
                floor_requests_per_second: floor_rate,
                floor_latency: floor_latencies.summary(),
            });
        }
    }
    Ok(results)
}
