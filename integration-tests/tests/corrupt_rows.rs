//! Rows the control plane cannot decode — a type, a set of types, a state or a JSON column
//! holding what no version of castplane writes — are errors, never a plausible default: the
//! caller gets INTERNAL without SQL or the stored text, the log names the row once, and the
//! rows beside it are served as before. On SQLite and PostgreSQL, through the public API, with
//! the damage done by a second connection to the control plane's own database.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use castplane_control::ServiceConfig;
use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::{
    AgentHandle, Backend, Client, ControlPlaneHandle, conformance, free_port_range,
};
use castplane_proto::v1 as pb;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tonic::Code;

conformance!(a_row_that_does_not_decode_is_an_internal_error_naming_it);

/// What the control plane logs at ERROR, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Installs the process's subscriber (each test runs in its own process under nextest).
    fn install() -> Captured {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("error")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the first subscriber of this process");
        captured
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Log lines that mention `needle`.
    fn lines_with(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn damage(db: &DatabaseConnection, sql: String) {
    db.execute_unprepared(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The answer to a request that reads a damaged row: INTERNAL, in words that give away
/// neither the schema nor the stored text.
fn assert_internal<T: std::fmt::Debug>(result: Result<T, tonic::Status>, stored: &str, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::Internal, "{what}: {status:?}");
    for leak in [stored, "SELECT", "UPDATE", "FROM "] {
        assert!(
            !status.message().contains(leak),
            "{what}: the answer leaks {leak:?}: {}",
            status.message()
        );
    }
}

async fn create(client: &Client, owner: &str, name: &str) -> pb::MediaService {
    client
        .media()
        .create_media_service(icecast_request(owner, name, 10))
        .await
        .expect("create service")
        .into_inner()
}

async fn a_row_that_does_not_decode_is_an_internal_error_naming_it(backend: Backend) {
    let log = Captured::install();
    let cp =
        ControlPlaneHandle::start_configured(backend, ServiceConfig::default(), None, false).await;
    let admin = cp.admin().await;
    let (first, last) = free_port_range(10);
    let (node, token) = admin
        .create_node(&format!("node-{first}"), first, last)
        .await;
    let agent = AgentHandle::join_and_start(&cp, &token).await;
    admin
        .wait_node_ready(&node.id, pb::ServiceType::Icecast)
        .await;
    let unlimited = limits(None, None, None, None, None, None);
    let reseller = admin
        .create_reseller("Damaged Radio", unlimited, &[pb::ServiceType::Icecast])
        .await;
    let neighbour = admin
        .create_reseller("Sound Radio", unlimited, &[pb::ServiceType::Icecast])
        .await;
    let owner = &reseller.primary_customer_id;
    let sound = create(&admin, owner, "sound-fm").await;
    let damaged = create(&admin, owner, "damaged-fm").await;
    let start = admin.start_service(&sound.id).await;
    let started = admin
        .finished_action(&start.id, Duration::from_secs(60))
        .await;
    assert_eq!(
        started.state,
        pb::ActionState::Succeeded as i32,
        "{started:?}"
    );
    let db = Database::connect(cp.effective_database_url())
        .await
        .expect("a second connection to the control plane's database");

    // A service type no version writes.
    damage(
        &db,
        format!(
            "UPDATE media_services SET service_type = 'gramophone' WHERE id = '{}'",
            damaged.id
        ),
    )
    .await;
    assert_internal(
        admin
            .media()
            .get_media_service(pb::GetMediaServiceRequest {
                id: damaged.id.clone(),
            })
            .await,
        "gramophone",
        "a service whose type does not decode",
    );
    assert_eq!(
        log.lines_with(&damaged.id),
        1,
        "logged once, naming the row:\n{}",
        log.text()
    );
    assert!(log.text().contains("gramophone"), "{}", log.text());
    assert_eq!(
        admin.service(&sound.id).await.r#type,
        pb::ServiceType::Icecast as i32,
        "the service beside it"
    );
    assert_internal(
        admin
            .media()
            .list_media_services(pb::ListMediaServicesRequest {
                customer_id: owner.clone(),
                ..Default::default()
            })
            .await,
        "gramophone",
        "a listing holding it fails rather than skipping it or showing a default",
    );

    // A set of allowed types with a name that is not a type.
    damage(
        &db,
        format!(
            "UPDATE resellers SET allowed_types = 'icecast,telegraph' WHERE id = '{}'",
            reseller.id
        ),
    )
    .await;
    assert_internal(
        admin
            .accounts()
            .get_reseller(pb::GetResellerRequest {
                id: reseller.id.clone(),
            })
            .await,
        "telegraph",
        "a reseller whose allowed types do not decode",
    );
    assert_eq!(log.lines_with(&reseller.id), 1, "{}", log.text());
    admin
        .accounts()
        .get_reseller(pb::GetResellerRequest {
            id: neighbour.id.clone(),
        })
        .await
        .expect("the reseller beside it");

    // An action state no version writes: reading it and watching it both end at once.
    damage(
        &db,
        format!(
            "UPDATE actions SET state = 'exploded' WHERE id = '{}'",
            start.id
        ),
    )
    .await;
    assert_internal(
        admin
            .actions()
            .get_action(pb::GetActionRequest {
                id: start.id.clone(),
            })
            .await,
        "exploded",
        "an action whose state does not decode",
    );
    let watched = tokio::time::timeout(Duration::from_secs(30), async {
        let mut stream = admin
            .actions()
            .watch_action(pb::WatchActionRequest {
                id: start.id.clone(),
            })
            .await?
            .into_inner();
        stream.message().await
    })
    .await
    .expect("a watch on a damaged action ends instead of waiting for a state that never comes");
    assert_internal(
        watched,
        "exploded",
        "watching an action whose state does not decode",
    );

    // A JSON column that is not JSON.
    damage(
        &db,
        format!(
            "UPDATE nodes SET capabilities = '[{{\"service_type\": \"icecast\", \"avail' WHERE id = '{}'",
            node.id
        ),
    )
    .await;
    assert_internal(
        admin
            .nodes()
            .get_node(pb::GetNodeRequest {
                id: node.id.clone(),
            })
            .await,
        "avail",
        "a node whose capabilities do not decode",
    );
    assert_eq!(log.lines_with(&node.id), 1, "{}", log.text());

    db.close().await.expect("close the second connection");
    agent.shutdown().await;
}
