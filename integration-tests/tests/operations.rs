//! Running the control plane as a fleet does: health that checks the database and turns
//! before a drain, limits that keep one caller from starving the others, and Prometheus
//! metrics on both daemons that pass Prometheus's own checker and move with work.

use std::sync::Arc;
use std::time::Duration;

use castplane_control::health::LIVENESS;
use castplane_control::{ApiLimits, BootstrapToken, HealthConfig, ServiceConfig};
use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::metrics::{promtool_check, sample, scrape};
use castplane_integration_tests::scenarios::{QueuedAction, watch_action};
use castplane_integration_tests::streaming::icecast_pid;
use castplane_integration_tests::{
    AgentHandle, Backend, Client, ControlPlaneHandle, free_port, free_port_range, wait_for,
};
use castplane_proto::v1 as pb;
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_types::StatusExt;

const LONG: Duration = Duration::from_secs(60);

fn unlimited() -> pb::ResellerLimits {
    limits(None, None, None, None, None, None)
}

/// Every `castplane.v1` service, as reflection lists them (so a new service is covered too).
async fn public_services(client: &Client) -> Vec<String> {
    let services: Vec<String> =
        castplane_integration_tests::client::reflected_services(client.channel())
            .await
            .into_iter()
            .filter(|name| name.starts_with("castplane.v1."))
            .collect();
    assert!(services.len() >= 5, "{services:?}");
    services
}

async fn check(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap_or_else(|status| panic!("health of {service:?}: {status:?}"))
        .into_inner()
        .status
}

/// The next status a health watch reports that differs from `from`.
async fn next_status(
    watch: &mut tonic::Streaming<HealthCheckResponse>,
    from: ServingStatus,
) -> ServingStatus {
    tokio::time::timeout(LONG, async {
        loop {
            let update = watch
                .message()
                .await
                .expect("health watch")
                .expect("an update");
            let status = ServingStatus::try_from(update.status).expect("a status");
            if status != from {
                return status;
            }
        }
    })
    .await
    .expect("health changed in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_covers_every_service_and_turns_before_the_drain() {
    let configure: castplane_integration_tests::control_plane::Configure =
        Arc::new(|config| config.drain_delay = Duration::from_secs(3));
    let mut cp = ControlPlaneHandle::start_configured(
        Backend::Sqlite,
        ServiceConfig::default(),
        Some(configure),
        false,
    )
    .await;
    let admin = cp.admin().await;
    let mut health = HealthClient::new(admin.channel());
    let services = public_services(&admin).await;
    for service in std::iter::once("").chain(services.iter().map(String::as_str)) {
        assert_eq!(
            check(&mut health, service).await,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch health")
        .into_inner();

    // Kubelet's probes use the plaintext health listener: the same statuses.
    let probe_channel =
        tonic::transport::Channel::from_shared(format!("http://{}", cp.health_addr))
            .expect("url")
            .connect()
            .await
            .expect("connect to the health listener");
    let mut probe = HealthClient::new(probe_channel);
    assert_eq!(check(&mut probe, "").await, ServingStatus::Serving as i32);
    assert_eq!(
        check(&mut probe, LIVENESS).await,
        ServingStatus::Serving as i32
    );

    cp.begin_stop();
    assert_eq!(
        next_status(&mut watch, ServingStatus::Serving).await,
        ServingStatus::NotServing
    );
    assert_eq!(
        check(&mut probe, "").await,
        ServingStatus::NotServing as i32
    );
    // Liveness holds: a draining replica must not be restarted.
    assert_eq!(
        check(&mut probe, LIVENESS).await,
        ServingStatus::Serving as i32
    );
    // Health turned while the replica still serves: calls on the open connection still work,
    // and every service reports NOT_SERVING.
    admin
        .accounts()
        .get_caller(pb::GetCallerRequest {})
        .await
        .expect("calls are still served while draining is announced");
    for service in std::iter::once("").chain(services.iter().map(String::as_str)) {
        assert_eq!(
            check(&mut health, service).await,
            ServingStatus::NotServing as i32,
            "{service:?}"
        );
    }
    drop(watch);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_is_not_serving_while_the_database_is_unreachable() {
    let configure: castplane_integration_tests::control_plane::Configure = Arc::new(|config| {
        config.health = HealthConfig {
            check_interval: Duration::from_millis(200),
        }
    });
    let mut cp = ControlPlaneHandle::start_configured(
        Backend::Postgres,
        ServiceConfig::default(),
        Some(configure),
        false,
    )
    .await;
    let url = cp.database_url().expect("PostgreSQL").to_owned();
    let (server, database) = url.rsplit_once('/').expect("a database URL");
    let postgres = Database::connect(format!("{server}/postgres"))
        .await
        .expect("connect as the cluster's admin");
    let anonymous = cp.client("no token needed for health").await;
    let mut health = HealthClient::new(anonymous.channel());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "castplane.v1.MediaServiceService".to_owned(),
        })
        .await
        .expect("watch health")
        .into_inner();
    assert_eq!(
        next_status(&mut watch, ServingStatus::Unknown).await,
        ServingStatus::Serving
    );

    // The database refuses the control plane: new connections are not allowed, existing
    // ones are cut.
    postgres
        .execute_unprepared(&format!(
            "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS false"
        ))
        .await
        .expect("block connections");
    postgres
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
        ))
        .await
        .expect("cut connections");
    assert_eq!(
        next_status(&mut watch, ServingStatus::Serving).await,
        ServingStatus::NotServing
    );
    assert_eq!(
        check(&mut health, "").await,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        check(&mut health, LIVENESS).await,
        ServingStatus::Serving as i32,
        "a database outage must not restart the replicas"
    );

    postgres
        .execute_unprepared(&format!(
            "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true"
        ))
        .await
        .expect("allow connections");
    assert_eq!(
        next_status(&mut watch, ServingStatus::NotServing).await,
        ServingStatus::Serving
    );
    drop(watch);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_supplied_bootstrap_token_becomes_the_admin_token() {
    let secret = format!("cpt_{}", "k8s-secret-".repeat(4));
    let token = secret.clone();
    let configure: castplane_integration_tests::control_plane::Configure =
        Arc::new(move |config| config.bootstrap_admin_token = Some(BootstrapToken(token.clone())));
    let cp = ControlPlaneHandle::start_configured(
        Backend::Sqlite,
        ServiceConfig::default(),
        Some(configure),
        false,
    )
    .await;
    let caller = cp
        .client(&secret)
        .await
        .accounts()
        .get_caller(pb::GetCallerRequest {})
        .await
        .expect("the bootstrap token is the admin's")
        .into_inner();
    assert_eq!(caller.principal_kind, pb::PrincipalKind::Admin as i32);
    assert!(
        !cp.admin_token_path().exists(),
        "no copy of an operator's token is written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_streams_from_one_token_leave_other_principals_served() {
    const PER_PRINCIPAL: usize = 40;
    const ATTEMPTS: usize = 2_000;
    let w = QueuedAction::start(ApiLimits {
        max_streams_per_principal: PER_PRINCIPAL,
        // Generous enough that only the per-principal limit is in play here.
        max_concurrent_requests: 100_000,
        ..ApiLimits::default()
    })
    .await;
    // Several connections, as a misbehaving client with many processes would open.
    let mut customers = vec![w.customer.clone()];
    for _ in 0..3 {
        customers.push(w.cp.client(&w.another_customer_token().await).await);
    }
    let attempts = (0..ATTEMPTS).map(|i| {
        let client = customers[i % customers.len()].clone();
        let id = w.action_id.clone();
        async move { watch_action(&client, &id).await }
    });
    let results = futures::stream::iter(attempts)
        .buffer_unordered(500)
        .collect::<Vec<_>>()
        .await;
    let mut open = Vec::new();
    let mut refused = 0;
    for result in results {
        match result {
            Ok(stream) => open.push(stream),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status
                        .message()
                        .starts_with("too many open streams for this caller"),
                    "{}",
                    status.message()
                );
                let details = status.get_error_details();
                let quota = details.quota_failure().expect("a QuotaFailure detail");
                assert!(
                    quota.violations[0].subject.ends_with("/streams"),
                    "{quota:?}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(open.len(), PER_PRINCIPAL);
    assert_eq!(refused, ATTEMPTS - PER_PRINCIPAL);

    // Another principal is served at once, unary and streaming, while the customer holds
    // every stream it may.
    let caller = w
        .reseller
        .accounts()
        .get_caller(pb::GetCallerRequest {})
        .await
        .expect("the reseller is served")
        .into_inner();
    assert_eq!(caller.principal_kind, pb::PrincipalKind::Reseller as i32);
    let reseller_watch = watch_action(&w.reseller, &w.action_id)
        .await
        .expect("the reseller may watch too");
    // The customer's own unary calls are not blocked by its streams.
    w.customer
        .accounts()
        .get_caller(pb::GetCallerRequest {})
        .await
        .expect("unary calls are not streams");

    // Closing streams gives their slots back.
    drop(open);
    wait_for("the customer's stream slots to free up", LONG, || {
        let customer = w.customer.clone();
        let id = w.action_id.clone();
        async move { watch_action(&customer, &id).await.ok() }
    })
    .await;
    drop(reseller_watch);
    w.agent.shutdown().await;
}

#[tokio::test]
async fn the_dispatcher_families_pass_the_prometheus_checker() {
    use castplane_control::domain::{ActionKind, ActionState};
    use castplane_control::metrics::{ActionLabels, ActionOutcomeLabels, Metrics};
    let metrics = Metrics::new();
    let dispatch = &metrics.dispatch;
    let outcome = ActionOutcomeLabels {
        action: ActionKind::Start,
        state: ActionState::Succeeded,
    };
    dispatch.actions_finished.get_or_create(&outcome).inc();
    dispatch
        .queue_wait
        .get_or_create(&ActionLabels {
            action: ActionKind::Start,
        })
        .observe(0.02);
    dispatch.execution.get_or_create(&outcome).observe(0.4);
    dispatch.duration.get_or_create(&outcome).observe(0.42);
    dispatch.agent_sessions.set(3);
    dispatch.connected_agents.set(5);
    let text = metrics.render();
    promtool_check(&text).await;
    for family in [
        "castplane_actions_finished_total",
        "castplane_action_queue_seconds",
        "castplane_action_execution_seconds",
        "castplane_action_duration_seconds",
        "castplane_agent_sessions",
        "castplane_connected_agents",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}: {text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "castplane_actions_finished_total",
            &[("action", "start"), ("state", "succeeded")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_daemons_serve_prometheus_metrics_that_move_with_work() {
    let cp =
        ControlPlaneHandle::start_configured(Backend::Sqlite, ServiceConfig::default(), None, true)
            .await;
    let cp_metrics = cp.metrics_addr.expect("control plane metrics");
    let admin = cp.admin().await;
    let (first, last) = free_port_range(3);
    let (node, join_token) = admin.create_node("metrics-host", first, last).await;
    let mut agent = AgentHandle::join(&cp, &join_token).await.expect("join");
    let agent_metrics: std::net::SocketAddr =
        format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    agent.config.metrics_listen = Some(agent_metrics);
    agent.config.supervisor.stats_interval = Duration::from_millis(500);
    agent.start();
    admin
        .node_that_runs(&node.id, pb::ServiceType::Icecast, LONG)
        .await;

    let before = scrape(agent_metrics).await;
    promtool_check(&before).await;
    assert_eq!(
        sample(&before, "castplane_agent_services", &[("state", "running")]),
        Some(0.0)
    );

    let reseller = admin
        .create_reseller("Metrics Radio", unlimited(), &[pb::ServiceType::Icecast])
        .await;
    let service = admin
        .media()
        .create_media_service(icecast_request(
            &reseller.primary_customer_id,
            "counted-fm",
            10,
        ))
        .await
        .expect("create")
        .into_inner();
    let action = admin.start_service(&service.id).await;
    let finished = admin.finished_action(&action.id, LONG).await;
    assert_eq!(
        finished.state,
        pb::ActionState::Succeeded as i32,
        "{finished:?}"
    );

    // Counted when the result is committed, which a reader of the action may see first.
    let control = wait_for("the dispatcher to count the start", LONG, || async {
        let text = scrape(cp_metrics).await;
        (sample(
            &text,
            "castplane_actions_finished_total",
            &[("action", "start"), ("state", "succeeded")],
        ) == Some(1.0))
        .then_some(text)
    })
    .await;
    promtool_check(&control).await;
    let started = sample(
        &control,
        "castplane_rpc_requests_total",
        &[
            ("service", "castplane.v1.MediaServiceService"),
            ("method", "StartMediaService"),
            ("code", "OK"),
        ],
    );
    assert_eq!(started, Some(1.0), "{control}");
    let lookups = sample(
        &control,
        "castplane_rpc_duration_seconds_count",
        &[("method", "GetAction")],
    )
    .expect("GetAction latency");
    assert!(lookups >= 1.0);
    let selects = sample(
        &control,
        "castplane_db_query_duration_seconds_count",
        &[("operation", "select"), ("outcome", "ok")],
    )
    .expect("query latency");
    assert!(selects > 0.0);
    assert_eq!(sample(&control, "castplane_health_serving", &[]), Some(1.0));
    // The dispatcher's own families moved with the start.
    for histogram in [
        "castplane_action_queue_seconds_count",
        "castplane_action_execution_seconds_count",
        "castplane_action_duration_seconds_count",
    ] {
        assert_eq!(
            sample(&control, histogram, &[("action", "start")]),
            Some(1.0),
            "{histogram}: {control}"
        );
    }
    assert_eq!(sample(&control, "castplane_agent_sessions", &[]), Some(1.0));
    // A refused call is counted with its code.
    let anonymous = cp.client("not-a-token").await;
    let _ = anonymous
        .accounts()
        .get_caller(pb::GetCallerRequest {})
        .await
        .expect_err("refused");
    let control = scrape(cp_metrics).await;
    assert_eq!(
        sample(
            &control,
            "castplane_rpc_requests_total",
            &[("method", "GetCaller"), ("code", "UNAUTHENTICATED")]
        ),
        Some(1.0)
    );

    let running = wait_for("the agent to count the running service", LONG, || async {
        let text = scrape(agent_metrics).await;
        let listeners = sample(
            &text,
            "castplane_agent_service_listeners",
            &[("media_service_id", service.id.as_str())],
        );
        (sample(&text, "castplane_agent_services", &[("state", "running")]) == Some(1.0)
            && listeners == Some(0.0))
        .then_some(text)
    })
    .await;
    promtool_check(&running).await;

    // Kill icecast2: the supervisor restarts it and counts the restart.
    let pid = icecast_pid(agent.data_dir(), &service.id).expect("icecast2 runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let restarted = wait_for("the restart to be counted", LONG, || async {
        let text = scrape(agent_metrics).await;
        (sample(
            &text,
            "castplane_agent_process_restarts_total",
            &[("program", "icecast2")],
        ) == Some(1.0))
        .then_some(text)
    })
    .await;
    promtool_check(&restarted).await;

    let stopped = admin
        .media()
        .stop_media_service(pb::StopMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("stop")
        .into_inner();
    admin.finished_action(&stopped.id, LONG).await;
    agent.shutdown().await;
}
