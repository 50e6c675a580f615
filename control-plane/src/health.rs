//! `grpc.health.v1` on the public API: the overall status (`""`) and every `castplane.v1`
//! service, all SERVING only while the database answers and the replica is not draining.
//!
//! The database is checked every `check_interval` (a ping with a deadline); a failed or slow
//! ping turns everything NOT_SERVING until a ping succeeds again. Once shutdown starts,
//! [`Health::start_draining`] turns everything NOT_SERVING for good, before the servers stop
//! accepting and drain, so load balancers and probes move traffic away first.
//!
//! One more name, [`LIVENESS`], is SERVING for as long as the process answers: a liveness
//! probe must not restart every replica because the database is down, nor a draining one.
//! Kubelet gRPC probes cannot use TLS, so the same health service is also served in
//! plaintext, alone, on `health_listen` for them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::methods::MethodTable;
use crate::metrics::Metrics;
use crate::persistence::Persistence;

/// The health entry for liveness probes: SERVING while the process runs.
pub const LIVENESS: &str = "liveness";

#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// How often the database is pinged.
    pub check_interval: Duration,
}

impl HealthConfig {
    /// A ping slower than the interval counts as a failure, but never below one second: a
    /// busy database is not a dead one.
    pub fn ping_timeout(&self) -> Duration {
        self.check_interval.max(Duration::from_secs(1))
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            check_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    reporter: HealthReporter,
    metrics: Metrics,
    /// Serialises transitions, so a ping finishing during the drain cannot undo it.
    state: Mutex<State>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct State {
    database_ok: bool,
    draining: bool,
}

impl Health {
    /// The health service to mount, and the handle that drives it. Everything starts
    /// NOT_SERVING until the first database check.
    pub async fn new(
        metrics: Metrics,
    ) -> (
        Health,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let health = Health {
            inner: Arc::new(Inner {
                reporter,
                metrics,
                state: Mutex::new(State {
                    database_ok: false,
                    draining: false,
                }),
            }),
        };
        health.publish(ServingStatus::NotServing).await;
        health
            .inner
            .reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        (health, service)
    }

    async fn publish(&self, status: ServingStatus) {
        let reporter = &self.inner.reporter;
        reporter.set_service_status("", status).await;
        for service in MethodTable::get().public_services() {
            reporter.set_service_status(service, status).await;
        }
        self.inner
            .metrics
            .health_serving
            .set(i64::from(status == ServingStatus::Serving));
    }

    async fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.inner.state.lock().await;
        let before = *state;
        change(&mut state);
        if *state == before {
            return;
        }
        let serving = state.database_ok && !state.draining;
        let was_serving = before.database_ok && !before.draining;
        if serving != was_serving {
            self.publish(if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            })
            .await;
        }
    }

    /// NOT_SERVING from now on: shutdown has started.
    pub async fn start_draining(&self) {
        self.update(|state| state.draining = true).await;
    }

    /// Pings the database once, with `timeout`, and publishes the outcome.
    pub async fn check_database(&self, persistence: &Persistence, timeout: Duration) {
        let ok = match tokio::time::timeout(timeout, persistence.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "health: the database does not answer");
                false
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "health: the database did not answer in time"
                );
                false
            }
        };
        let was_ok = self.inner.state.lock().await.database_ok;
        if ok && !was_ok {
            tracing::info!("health: the database answers; serving");
        }
        self.update(|state| state.database_ok = ok).await;
    }

    /// Checks the database every `config.check_interval` until `stop`.
    pub async fn watch_database(
        self,
        persistence: Persistence,
        config: HealthConfig,
        stop: CancellationToken,
    ) {
        let timeout = config.ping_timeout();
        let mut ticker = tokio::time::interval(config.check_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.check_database(&persistence, timeout).await,
                _ = stop.cancelled() => return,
            }
        }
    }
}
