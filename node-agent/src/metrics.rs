//! The agent's Prometheus metrics, served by `--metrics-listen ADDR` at `/metrics`.
//!
//! | family | labels | what |
//! |---|---|---|
//! | `castplane_agent_process_restarts_total` | program | restarts after an unexpected exit |
//! | `castplane_agent_crash_loops_total` | program | times the supervisor gave up on a crash loop |
//! | `castplane_agent_services` | state | services on this node by observed state |
//! | `castplane_agent_service_listeners` | media_service_id | listeners connected now |
//! | `castplane_agent_service_sources` | media_service_id | sources (broadcasters) connected now |
//! | `castplane_agent_service_sent_bytes_total` | media_service_id | bytes the server sent since it started |
//! | `castplane_agent_service_received_bytes_total` | media_service_id | bytes the server read from sources |
//!
//! Labels are bounded: `program` is a plugin's program name, `state` a closed enum, and
//! `media_service_id` one per service on this node — never anything per listener. The
//! per-service families are sampled from the supervisor at each scrape, so a deleted service
//! disappears with its series.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use castplane_proto::agent::v1::ObservedService;
use castplane_proto::v1::{ObservedState, ServiceStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::supervisor::Supervisor;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProgramLabels {
    /// `icecast2`, `nginx`, `liquidsoap`.
    pub program: &'static str,
}

/// What the supervisor counts as it goes; cloned into every service's actor.
#[derive(Clone, Debug, Default)]
pub struct SupervisorMetrics {
    pub process_restarts: Family<ProgramLabels, Counter>,
    pub crash_loops: Family<ProgramLabels, Counter>,
}

impl SupervisorMetrics {
    pub fn restarted(&self, program: &'static str) {
        self.process_restarts
            .get_or_create(&ProgramLabels { program })
            .inc();
    }

    pub fn crash_looped(&self, program: &'static str) {
        self.crash_loops
            .get_or_create(&ProgramLabels { program })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    media_service_id: String,
}

const STATES: [(ObservedState, &str); 6] = [
    (ObservedState::Unknown, "unknown"),
    (ObservedState::Stopped, "stopped"),
    (ObservedState::Starting, "starting"),
    (ObservedState::Running, "running"),
    (ObservedState::BackingOff, "backing_off"),
    (ObservedState::Failed, "failed"),
];

/// A per-service family: name, help, and how to read its value from the statistics.
type StatFamily<T> = (&'static str, &'static str, fn(&ServiceStats) -> T);

/// The services as the supervisor last reported them, encoded at scrape time.
#[derive(Debug, Default)]
struct ServicesCollector {
    observed: Mutex<Vec<ObservedService>>,
}

impl ServicesCollector {
    fn set(&self, observed: Vec<ObservedService>) {
        if let Ok(mut current) = self.observed.lock() {
            *current = observed;
        }
    }
}

impl Collector for ServicesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(observed) = self.observed.lock() else {
            return Ok(());
        };
        let state_of = |service: &ObservedService| {
            service
                .status
                .as_ref()
                .and_then(|s| ObservedState::try_from(s.state).ok())
                .unwrap_or(ObservedState::Unknown)
        };
        {
            let mut family = encoder.encode_descriptor(
                "agent_services",
                "Services on this node by observed state",
                None,
                MetricType::Gauge,
            )?;
            for (state, name) in STATES {
                let count = observed.iter().filter(|s| state_of(s) == state).count();
                let count = i64::try_from(count).unwrap_or(i64::MAX);
                ConstGauge::new(count)
                    .encode(family.encode_family(&StateLabels { state: name })?)?;
            }
        }
        let running: Vec<(ServiceLabels, &ServiceStats)> = observed
            .iter()
            .filter_map(|service| {
                let stats = service.status.as_ref()?.stats.as_ref()?;
                Some((
                    ServiceLabels {
                        media_service_id: service.media_service_id.clone(),
                    },
                    stats,
                ))
            })
            .collect();
        let gauges: [StatFamily<u32>; 2] = [
            (
                "agent_service_listeners",
                "Listeners connected to the service now",
                |s| s.listeners,
            ),
            (
                "agent_service_sources",
                "Sources (broadcasters) connected to the service now",
                |s| s.sources,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, stats) in &running {
                ConstGauge::new(i64::from(value(stats))).encode(family.encode_family(labels)?)?;
            }
        }
        let counters: [StatFamily<u64>; 2] = [
            (
                "agent_service_sent_bytes",
                "Bytes the service's server has sent since it started",
                |s| s.bytes_sent,
            ),
            (
                "agent_service_received_bytes",
                "Bytes the service's server has read from sources since it started",
                |s| s.bytes_read,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, stats) in &running {
                ConstCounter::new(value(stats)).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// Binds `addr` and serves `/metrics` until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    supervisor_metrics: &SupervisorMetrics,
    supervisor: &Supervisor,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener to {addr}"))?;
    let mut registry = Registry::with_prefix("castplane");
    registry.register(
        "agent_process_restarts",
        "Streaming server processes restarted after an unexpected exit",
        supervisor_metrics.process_restarts.clone(),
    );
    registry.register(
        "agent_crash_loops",
        "Crash loops the supervisor gave up on (the service stays FAILED until started again)",
        supervisor_metrics.crash_loops.clone(),
    );
    let services = Arc::new(ServicesCollector::default());
    registry.register_collector(Box::new(services.clone()));
    let registry = Arc::new(registry);
    let supervisor = supervisor.clone();
    let render: castplane_telemetry::metrics::Render = Arc::new(move || {
        let registry = registry.clone();
        let services = services.clone();
        let supervisor = supervisor.clone();
        Box::pin(async move {
            services.set(supervisor.observed().await);
            castplane_telemetry::encode_registry(&registry)
        })
    });
    let server = castplane_telemetry::MetricsServer::new(listener, render);
    let bound = server.local_addr()?;
    tracing::info!(metrics_addr = %bound, "serving /metrics");
    tokio::spawn(server.run(shutdown));
    Ok(bound)
}
