//! What a hostile or unlucky world does to the control plane: files other users could read,
//! bytes that are not protobuf, reflection that says too much, a database that goes away, and
//! thousands of random and garbage requests over every public RPC.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use castplane_control::{Config, ServiceConfig};
use castplane_integration_tests::client::reflected_services;
use castplane_integration_tests::fuzz::{self, Strings};
use castplane_integration_tests::{Backend, ControlPlaneHandle, postgres, raw, wait_for};
use castplane_proto::v1 as pb;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;
use tonic::Code;

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_data_dir_and_the_database_files_become_private() {
    castplane_integration_tests::init_tracing();
    let root = tempfile::tempdir().expect("tempdir");
    let data_dir = root.path().join("state");
    std::fs::create_dir(&data_dir).expect("mkdir");
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let listeners = castplane_control::bind(
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("bind");
    let config = Config {
        data_dir: data_dir.clone(),
        database_url: None,
        public_tls: None,
        console_dir: None,
        service: ServiceConfig::default(),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(castplane_control::run(config, listeners, shutdown.clone()));
    let token = data_dir.join("admin.token");
    wait_for("the admin token", Duration::from_secs(30), || {
        let ready = token.exists();
        async move { ready.then_some(()) }
    })
    .await;
    assert_eq!(mode_of(&data_dir), 0o700, "data directory");
    // The database (the CA key, every service password) and its WAL companions.
    for file in [
        "castplane.db",
        "castplane.db-wal",
        "castplane.db-shm",
        "admin.token",
    ] {
        assert_eq!(mode_of(&data_dir.join(file)), 0o600, "{file}");
    }
    shutdown.cancel();
    server.await.expect("task").expect("clean exit");
}

/// A TLS channel to the agent listener without a client certificate, as a joining agent has.
async fn anonymous_agent_channel(cp: &ControlPlaneHandle) -> tonic::transport::Channel {
    let (first, last) = castplane_integration_tests::free_port_range(2);
    let (_, token) = cp.admin().await.create_node("reflect", first, last).await;
    let (_, ca_hash) = castplane_proto::join_token::parse(&token).expect("join token");
    castplane_agent::tls::connect(
        &cp.agent_url(),
        castplane_agent::tls::pinned_client_config(ca_hash).expect("tls"),
    )
    .await
    .expect("connect to the agent listener")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_reflects_only_what_it_serves() {
    let cp = ControlPlaneHandle::start(Backend::Sqlite).await;
    let public = reflected_services(cp.client("none").await.channel()).await;
    assert_eq!(
        public,
        vec![
            "castplane.v1.AccountService",
            "castplane.v1.ActionService",
            "castplane.v1.CatalogService",
            "castplane.v1.LoginService",
            "castplane.v1.MediaLibraryService",
            "castplane.v1.MediaServiceService",
            "castplane.v1.NodeService",
            "castplane.v1.SessionService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
    let agent = reflected_services(anonymous_agent_channel(&cp).await).await;
    assert_eq!(
        agent,
        vec![
            "castplane.agent.v1.AgentService",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_invalid_argument_on_both_listeners() {
    let cp = ControlPlaneHandle::start(Backend::Sqlite).await;
    let admin = cp.admin_token();
    let public = cp.client(&admin).await.channel();
    // Field 1 (the id) as a string that is not UTF-8; then bytes that are no protobuf at all.
    let not_utf8 = vec![0x0a, 0x02, 0xff, 0xfe];
    let garbage = vec![0xff; 12];
    for body in [not_utf8.clone(), garbage.clone()] {
        let status = raw::unary(
            public.clone(),
            "/castplane.v1.AccountService/GetReseller",
            body,
            Some(&admin),
        )
        .await
        .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("GetResellerRequest"),
            "{status:?}"
        );
    }
    let agent = anonymous_agent_channel(&cp).await;
    for body in [not_utf8, garbage] {
        let status = raw::unary(
            agent.clone(),
            "/castplane.agent.v1.AgentService/Join",
            body,
            None,
        )
        .await
        .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_that_goes_away_answers_unavailable_with_the_reason() {
    // A cluster of this test's own, stopped halfway: it lives as long as `lifeline`.
    let mut lifeline = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn the cluster's lifeline");
    let server = postgres::start_cluster(lifeline.id()).expect("a PostgreSQL cluster");
    let database = postgres::fresh_database_on(&server)
        .await
        .expect("a database");
    let port = database
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse::<u16>().ok())
        .expect("port in the URL");
    let cp = ControlPlaneHandle::start_on(Some(database), ServiceConfig::default()).await;
    let admin = cp.admin().await;
    admin
        .accounts()
        .get_caller(pb::GetCallerRequest {})
        .await
        .expect("served while the database is up");

    let _ = lifeline.kill();
    let _ = lifeline.wait();
    wait_for(
        "PostgreSQL to stop",
        Duration::from_secs(60),
        || async move {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        },
    )
    .await;
    // Each pooled connection the server closed fails one call with "shutting down" (how many
    // the pool holds depends on what ran before); then a caller waits for a new connection in
    // vain and the outage is diagnosed: it and every caller after it are told the cause.
    let mut elapsed = Vec::new();
    let mut diagnosed_at = None;
    for call in 0..40 {
        if diagnosed_at.is_some_and(|at| call > at + 2) {
            break;
        }
        let began = Instant::now();
        let status = admin
            .accounts()
            .list_resellers(pb::ListResellersRequest::default())
            .await
            .expect_err("no database");
        elapsed.push(began.elapsed());
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        // A pooled connection the server closed says so; the first caller that then waits
        // for a new connection in vain diagnoses the outage for every caller after it, who
        // is told exactly what is wrong.
        let message = status.message();
        let actionable = (message.contains("shutting down") && message.contains("retry"))
            || (message.contains("no database connection")
                && message.contains("down or unreachable"))
            || (message.contains("cannot be reached")
                && message.contains("check that PostgreSQL is running"));
        assert!(actionable, "{status:?}");
        let diagnosed = message.contains("cannot be reached");
        match diagnosed_at {
            None if diagnosed => diagnosed_at = Some(call),
            Some(_) => assert!(
                diagnosed,
                "once diagnosed, every later caller is told: {status:?}"
            ),
            None => {}
        }
    }
    assert!(
        diagnosed_at.is_some(),
        "the outage was diagnosed for the later callers"
    );
    // Figures, not assertions: the first call waits for the pool, the next are answered from
    // the diagnosed outage.
    println!("UNAVAILABLE after {elapsed:?} with PostgreSQL down");
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Random and garbage requests over every public RPC, as every kind of caller: none may answer
/// INTERNAL or UNKNOWN, and nothing may panic.
async fn fuzz(backend: Backend, per_method: usize) {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let cp = ControlPlaneHandle::start(backend).await;
    let admin = cp.admin().await;
    let reseller = admin
        .create_reseller(
            "Fuzz Radio",
            castplane_integration_tests::client::limits(None, None, None, None, None, None),
            &[pb::ServiceType::Icecast, pb::ServiceType::Video],
        )
        .await;
    let reseller_token = admin
        .token_for(pb::PrincipalKind::Reseller, &reseller.id)
        .await;
    let customer = cp
        .client(&reseller_token)
        .await
        .create_customer("", "Fuzz Customer")
        .await;
    let customer_token = admin
        .token_for(pb::PrincipalKind::Customer, &customer.id)
        .await;
    let (first, last) = castplane_integration_tests::free_port_range(4);
    let (node, _) = admin.create_node("fuzz-node", first, last).await;
    let tokens = [
        Some(cp.admin_token()),
        Some(reseller_token),
        Some(customer_token),
        None,
        Some("cpt_not-a-token".to_owned()),
    ];
    let strings = Strings {
        known: vec![
            reseller.id.clone(),
            reseller.primary_customer_id.clone(),
            customer.id.clone(),
            node.id.clone(),
            "icecast".to_owned(),
            "display_name".to_owned(),
            "limits.services".to_owned(),
        ],
    };
    let seed = std::env::var("CASTPLANE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7400_u64);
    println!("fuzz seed {seed} (set CASTPLANE_FUZZ_SEED to vary it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let channel = admin.channel();
    let methods = fuzz::public_methods();
    assert!(methods.len() >= 25, "{} methods", methods.len());
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let began = Instant::now();
    for method in &methods {
        let path = fuzz::path(method);
        for _ in 0..per_method {
            let body = fuzz::body(method, &mut rng, &strings);
            let token = tokens[rand::Rng::random_range(&mut rng, 0..tokens.len())].clone();
            let call = async {
                if method.is_server_streaming() {
                    raw::server_streaming_first(
                        channel.clone(),
                        &path,
                        body.clone(),
                        token.as_deref(),
                    )
                    .await
                    .map(|_| ())
                } else {
                    raw::unary(channel.clone(), &path, body.clone(), token.as_deref())
                        .await
                        .map(|_| ())
                }
            };
            let outcome = tokio::time::timeout(Duration::from_secs(20), call)
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in 20 s")));
            let code = match &outcome {
                Ok(()) => Code::Ok,
                Err(status) => status.code(),
            };
            *codes.entry(format!("{code:?}")).or_default() += 1;
            if let Err(status) = outcome
                && matches!(
                    status.code(),
                    Code::Internal | Code::Unknown | Code::DeadlineExceeded
                )
            {
                failures.push(format!("{path} {status:?} for {}", hex::encode(&body)));
            }
        }
    }
    let total: usize = codes.values().sum();
    println!(
        "{total} requests over {} methods in {:?}: {codes:?}",
        methods.len(),
        began.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the server panicked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzzed_requests_never_answer_internal_on_sqlite() {
    fuzz(Backend::Sqlite, 80).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzzed_requests_never_answer_internal_on_postgres() {
    fuzz(Backend::Postgres, 80).await;
}
