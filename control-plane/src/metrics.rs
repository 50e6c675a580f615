//! The control plane's Prometheus metrics: one registry per process, typed metric families.
//!
//! Served by `--metrics-listen ADDR` at `/metrics` (Prometheus text format). Names follow the
//! Prometheus conventions: a `castplane_` prefix, base units (`_seconds`), counters end in
//! `_total` (added by the encoder). Labels are bounded: method names come from the compiled
//! method table (anything else is `unknown`), operations and states from closed enums.
//!
//! | family | labels | what |
//! |---|---|---|
//! | `castplane_rpc_requests_total` | service, method, code | finished calls, by gRPC status |
//! | `castplane_rpc_duration_seconds` | service, method | time to the response (for a stream: until it opens) |
//! | `castplane_api_limit_refusals_total` | limit | calls refused by a limit (RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED) |
//! | `castplane_api_open_streams` | | streaming calls open now |
//! | `castplane_db_query_duration_seconds` | operation, outcome | every SQL statement |
//! | `castplane_health_serving` | | 1 while health reports SERVING |
//! | `castplane_actions_finished_total` | action, state | actions that reached succeeded or failed (dispatcher) |
//! | `castplane_action_queue_seconds` | action | queued → dispatched (dispatcher) |
//! | `castplane_action_execution_seconds` | action, state | dispatched → succeeded / failed (dispatcher) |
//! | `castplane_action_duration_seconds` | action, state | queued → succeeded / failed (dispatcher) |
//! | `castplane_agent_sessions` | | agent sessions this replica holds (dispatcher) |
//! | `castplane_connected_agents` | | nodes with a live session on any replica (dispatcher) |
//!
//! The dispatcher's families are registered here and filled by the dispatcher; every other
//! family is filled by the layer or hook named beside it in this module.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::{ActionKind, ActionState};

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms … ~33 s: RPC handlers and SQL statements.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// 10 ms … ~11 min: an action's phases, which include starting a streaming server and waiting
/// for an offline node (up to the action deadline).
fn action_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: Arc<str>,
    pub method: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcResultLabels {
    pub service: Arc<str>,
    pub method: Arc<str>,
    pub code: GrpcCode,
}

/// A gRPC status code, labelled by its canonical name (`OK`, `RESOURCE_EXHAUSTED`, …).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct GrpcCode(pub tonic::Code);

impl EncodeLabelValue for GrpcCode {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&castplane_proto::grpc_code_name(self.0), encoder)
    }
}

/// Which limit refused a call (`limits.rs`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Limit {
    ConcurrentRequests,
    Streams,
    StreamsPerPrincipal,
    RequestTimeout,
}

impl EncodeLabelValue for Limit {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let name = match self {
            Limit::ConcurrentRequests => "concurrent_requests",
            Limit::Streams => "streams",
            Limit::StreamsPerPrincipal => "streams_per_principal",
            Limit::RequestTimeout => "request_timeout",
        };
        EncodeLabelValue::encode(&name, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: Limit,
}

/// The SQL statement's verb.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DbOperation {
    Select,
    Insert,
    Update,
    Delete,
    Other,
}

impl DbOperation {
    /// From the statement text's first word; never the text itself (it may hold values).
    pub fn of_sql(sql: &str) -> DbOperation {
        let verb = sql.split_whitespace().next().unwrap_or("");
        if verb.eq_ignore_ascii_case("select") || verb.eq_ignore_ascii_case("with") {
            DbOperation::Select
        } else if verb.eq_ignore_ascii_case("insert") {
            DbOperation::Insert
        } else if verb.eq_ignore_ascii_case("update") {
            DbOperation::Update
        } else if verb.eq_ignore_ascii_case("delete") {
            DbOperation::Delete
        } else {
            DbOperation::Other
        }
    }
}

impl EncodeLabelValue for DbOperation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let name = match self {
            DbOperation::Select => "select",
            DbOperation::Insert => "insert",
            DbOperation::Update => "update",
            DbOperation::Delete => "delete",
            DbOperation::Other => "other",
        };
        EncodeLabelValue::encode(&name, encoder)
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let name = match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        };
        EncodeLabelValue::encode(&name, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DbLabels {
    pub operation: DbOperation,
    pub outcome: Outcome,
}

impl EncodeLabelValue for ActionKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for ActionState {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: ActionKind,
}

/// `state` is the final one: succeeded or failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionOutcomeLabels {
    pub action: ActionKind,
    pub state: ActionState,
}

/// Per-call metrics, filled by `limits::RpcMetricsLayer`.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    pub requests: Family<RpcResultLabels, Counter>,
    pub duration: HistogramFamily<RpcLabels>,
    pub limit_refusals: Family<LimitLabels, Counter>,
    pub open_streams: Gauge,
}

/// The dispatcher's families: queue, dispatch, results and sessions.
#[derive(Clone, Debug)]
pub struct DispatchMetrics {
    pub actions_finished: Family<ActionOutcomeLabels, Counter>,
    pub queue_wait: HistogramFamily<ActionLabels>,
    pub execution: HistogramFamily<ActionOutcomeLabels>,
    pub duration: HistogramFamily<ActionOutcomeLabels>,
    pub agent_sessions: Gauge,
    pub connected_agents: Gauge,
}

/// Every family the control plane exports, and the registry that serves them.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub rpc: RpcMetrics,
    pub db_queries: HistogramFamily<DbLabels>,
    pub health_serving: Gauge,
    pub dispatch: DispatchMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("castplane");
        let rpc = RpcMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            limit_refusals: Family::default(),
            open_streams: Gauge::default(),
        };
        registry.register(
            "rpc_requests",
            "Finished gRPC calls by service, method and status code",
            rpc.requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "Time from a gRPC call's arrival to its response (for a stream: until it opens)",
            rpc.duration.clone(),
        );
        registry.register(
            "api_limit_refusals",
            "Calls on the public API refused by a limit",
            rpc.limit_refusals.clone(),
        );
        registry.register(
            "api_open_streams",
            "Streaming calls open on the public API now",
            rpc.open_streams.clone(),
        );
        let db_queries: HistogramFamily<DbLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "db_query_duration_seconds",
            "SQL statements by operation and outcome",
            db_queries.clone(),
        );
        let health_serving = Gauge::default();
        registry.register(
            "health_serving",
            "1 while grpc.health.v1 reports SERVING (database reachable, not draining)",
            health_serving.clone(),
        );
        let dispatch = DispatchMetrics {
            actions_finished: Family::default(),
            queue_wait: Family::new_with_constructor(action_histogram),
            execution: Family::new_with_constructor(action_histogram),
            duration: Family::new_with_constructor(action_histogram),
            agent_sessions: Gauge::default(),
            connected_agents: Gauge::default(),
        };
        registry.register(
            "actions_finished",
            "Actions that reached a final state, by action and state",
            dispatch.actions_finished.clone(),
        );
        registry.register(
            "action_queue_seconds",
            "Time an action waited from queued to dispatched",
            dispatch.queue_wait.clone(),
        );
        registry.register(
            "action_execution_seconds",
            "Time from an action's dispatch to its final state",
            dispatch.execution.clone(),
        );
        registry.register(
            "action_duration_seconds",
            "Time from an action's queueing to its final state",
            dispatch.duration.clone(),
        );
        registry.register(
            "agent_sessions",
            "Agent sessions this replica holds",
            dispatch.agent_sessions.clone(),
        );
        registry.register(
            "connected_agents",
            "Nodes with a live agent session on any replica",
            dispatch.connected_agents.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            rpc,
            db_queries,
            health_serving,
            dispatch,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one SQL statement (the database connection's metric callback).
    pub fn observe_query(&self, sql: &str, elapsed: Duration, failed: bool) {
        let labels = DbLabels {
            operation: DbOperation::of_sql(sql),
            outcome: if failed { Outcome::Error } else { Outcome::Ok },
        };
        self.db_queries
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        castplane_telemetry::encode_registry(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_labelled_by_verb_only() {
        assert_eq!(
            DbOperation::of_sql("  SELECT * FROM x"),
            DbOperation::Select
        );
        assert_eq!(DbOperation::of_sql("insert into x"), DbOperation::Insert);
        assert_eq!(
            DbOperation::of_sql("WITH a AS (..) SELECT"),
            DbOperation::Select
        );
        assert_eq!(DbOperation::of_sql("PRAGMA x"), DbOperation::Other);
        let metrics = Metrics::new();
        metrics.observe_query(
            "UPDATE nodes SET secret = 'x'",
            Duration::from_millis(3),
            false,
        );
        let text = metrics.render();
        assert!(
            text.contains(
                "castplane_db_query_duration_seconds_count{operation=\"update\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }
}
