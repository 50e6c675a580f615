//! Deleting accounts, tokens and nodes, and deleted services as tombstones (DESIGN: Deleting
//! accounts and nodes), through the public API with a real agent, on SQLite and PostgreSQL.

use std::time::Duration;

use castplane_control::ServiceConfig;
use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::metrics::{sample, scrape};
use castplane_integration_tests::{
    AgentHandle, Backend, Client, ControlPlaneHandle, conformance, free_port_range, wait_for,
};
use castplane_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

conformance!(
    a_customer_with_services_is_refused_unless_forced_then_goes_after_its_deletes,
    a_customer_without_services_goes_at_once_with_its_tokens_and_login,
    deleting_a_reseller_takes_every_customer_and_its_own_credentials,
    deleted_services_stay_readable_by_id_and_lists_hide_them_unless_asked,
    a_node_with_services_is_not_deleted_and_a_deleted_node_loses_its_identity,
    api_tokens_are_listed_without_secrets_and_revoked_at_once,
);

const LONG: Duration = Duration::from_secs(60);
const ALL_TYPES: &[pb::ServiceType] = &[pb::ServiceType::Icecast, pb::ServiceType::Video];

fn unlimited() -> pb::ResellerLimits {
    limits(None, None, None, None, None, None)
}

/// A control plane with one joined agent whose node runs icecast (and reports video).
struct Fleet {
    cp: ControlPlaneHandle,
    admin: Client,
    agent: AgentHandle,
    node: pb::Node,
}

impl Fleet {
    /// With `/metrics`, where the node tests see the agent's sessions.
    async fn start(backend: Backend) -> Fleet {
        let cp =
            ControlPlaneHandle::start_configured(backend, ServiceConfig::default(), None, true)
                .await;
        let admin = cp.admin().await;
        let (first, last) = free_port_range(20);
        let (node, token) = admin
            .create_node(&format!("node-{first}"), first, last)
            .await;
        let agent = AgentHandle::join_and_start(&cp, &token).await;
        let node = admin
            .wait_node_ready(&node.id, pb::ServiceType::Icecast)
            .await;
        Fleet {
            cp,
            admin,
            agent,
            node,
        }
    }

    async fn reseller(&self, name: &str) -> (pb::Reseller, Client) {
        let reseller = self
            .admin
            .create_reseller(name, unlimited(), ALL_TYPES)
            .await;
        let token = self
            .admin
            .token_for(pb::PrincipalKind::Reseller, &reseller.id)
            .await;
        (reseller, self.cp.client(&token).await)
    }

    async fn finish(self) {
        self.agent.shutdown().await;
    }
}

async fn create(client: &Client, request: pb::CreateMediaServiceRequest) -> pb::MediaService {
    client
        .media()
        .create_media_service(request)
        .await
        .expect("create service")
        .into_inner()
}

fn video_request(customer_id: &str, name: &str) -> pb::CreateMediaServiceRequest {
    let mut request = icecast_request(customer_id, name, 10);
    request.media_service.as_mut().expect("service").r#type = pb::ServiceType::Video as i32;
    request
}

fn assert_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    what: &str,
) -> tonic::Status {
    match result {
        Err(status) if status.code() == code => status,
        other => panic!("{what}: expected {code:?}, got {other:?}"),
    }
}

/// The `PreconditionFailure` violation type of a FAILED_PRECONDITION.
fn violation_type(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .precondition_failure()
        .and_then(|f| f.violations.first().map(|v| v.r#type.clone()))
        .unwrap_or_default()
}

async fn delete_customer(
    client: &Client,
    id: &str,
    force: bool,
    confirm: bool,
    dry_run: bool,
) -> Result<pb::DeleteAccountResponse, tonic::Status> {
    client
        .accounts()
        .delete_customer(pb::DeleteCustomerRequest {
            id: id.to_owned(),
            force,
            confirm_permanent_deletion: confirm,
            validate_only: dry_run,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn get_customer(client: &Client, id: &str) -> Result<pb::Customer, tonic::Status> {
    client
        .accounts()
        .get_customer(pb::GetCustomerRequest { id: id.to_owned() })
        .await
        .map(tonic::Response::into_inner)
}

async fn caller(client: &Client) -> Result<pb::Caller, tonic::Status> {
    client
        .accounts()
        .get_caller(pb::GetCallerRequest {})
        .await
        .map(tonic::Response::into_inner)
}

/// Waits until `id` answers NOT_FOUND: its deletion finished (after the last delete, by
/// whichever replica or sweep got there).
async fn customer_gone(admin: &Client, id: &str) {
    wait_for("the customer to be deleted", LONG, || {
        let admin = admin.clone();
        let id = id.to_owned();
        async move {
            matches!(get_customer(&admin, &id).await, Err(s) if s.code() == Code::NotFound)
                .then_some(())
        }
    })
    .await;
}

async fn list_services(client: &Client, show_deleted: bool) -> Vec<pb::MediaService> {
    client
        .media()
        .list_media_services(pb::ListMediaServicesRequest {
            scope: pb::ServiceScope::All as i32,
            page_size: 1000,
            show_deleted,
            ..Default::default()
        })
        .await
        .expect("list services")
        .into_inner()
        .media_services
}

async fn a_customer_with_services_is_refused_unless_forced_then_goes_after_its_deletes(
    backend: Backend,
) {
    let f = Fleet::start(backend).await;
    let (reseller, client) = f.reseller("Closing Radio").await;
    let customer = client.create_customer("", "Leaving Customer").await;
    let radio = create(&client, icecast_request(&customer.id, "leaving-fm", 10)).await;
    let tv = create(&client, video_request(&customer.id, "leaving-tv")).await;
    let customer_token = f
        .admin
        .token_for(pb::PrincipalKind::Customer, &customer.id)
        .await;
    let as_customer = f.cp.client(&customer_token).await;
    caller(&as_customer)
        .await
        .expect("the customer's token works");

    // The primary account goes only with the reseller.
    let primary = assert_code(
        delete_customer(&client, &reseller.primary_customer_id, true, true, false).await,
        Code::FailedPrecondition,
        "primary account",
    );
    assert_eq!(violation_type(&primary), "PRIMARY_ACCOUNT");
    // Customers manage no accounts.
    assert_code(
        delete_customer(&as_customer, &customer.id, true, true, false).await,
        Code::PermissionDenied,
        "a customer deleting itself",
    );

    // Unforced: refused, naming the services.
    let refused = assert_code(
        delete_customer(&client, &customer.id, false, false, false).await,
        Code::FailedPrecondition,
        "services left",
    );
    assert_eq!(violation_type(&refused), "HAS_MEDIA_SERVICES");
    for service in [&radio, &tv] {
        assert!(
            refused.message().contains(&service.name) && refused.message().contains(&service.id),
            "{}",
            refused.message()
        );
    }
    // The dry run lists what goes and changes nothing.
    let plan = delete_customer(&client, &customer.id, true, false, true)
        .await
        .expect("dry run")
        .plan
        .expect("plan");
    let mut listed = plan.media_service_ids.clone();
    listed.sort();
    let mut expected = vec![radio.id.clone(), tv.id.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(plan.requires_confirmation, "a video service is among them");
    assert!(
        plan.destroyed.iter().any(|d| d.contains("media library")),
        "{plan:?}"
    );
    // Forced, but the video service's files need the confirmation.
    let unconfirmed = assert_code(
        delete_customer(&client, &customer.id, true, false, false).await,
        Code::FailedPrecondition,
        "video unconfirmed",
    );
    assert_eq!(
        violation_type(&unconfirmed),
        "PERMANENT_DELETION_UNCONFIRMED"
    );
    assert!(
        unconfirmed.message().contains(&tv.id),
        "{}",
        unconfirmed.message()
    );
    for service in [&radio, &tv] {
        assert!(
            !client.service(&service.id).await.deleting,
            "nothing queued"
        );
    }
    assert!(
        get_customer(&client, &customer.id)
            .await
            .expect("still there")
            .delete_request_time
            .is_none()
    );

    // With the agent away the deletes wait, and so does the customer — across a restart of
    // the control plane, since the intent is in the database.
    let mut f = f;
    f.agent.stop().await;
    let response = delete_customer(&client, &customer.id, true, true, false)
        .await
        .expect("forced delete");
    assert!(!response.deleted, "it waits for its services' deletes");
    assert_eq!(response.actions.len(), 2, "{response:?}");
    let waiting = get_customer(&client, &customer.id)
        .await
        .expect("still readable while waiting");
    assert!(waiting.delete_request_time.is_some());
    let status = assert_code(
        client
            .media()
            .create_media_service(icecast_request(&customer.id, "late-fm", 10))
            .await,
        Code::FailedPrecondition,
        "a new service for a customer being deleted",
    );
    assert_eq!(violation_type(&status), "ACCOUNT_DELETING");
    f.cp.restart().await;
    let admin = f.cp.admin().await;
    f.agent.start();
    for action in &response.actions {
        let done = admin.finished_action(&action.id, LONG).await;
        assert_eq!(done.state, pb::ActionState::Succeeded as i32, "{done:?}");
    }
    customer_gone(&admin, &customer.id).await;

    // Its token is refused; its services are tombstones the reseller can still read.
    let refused = assert_code(
        caller(&f.cp.client(&customer_token).await).await,
        Code::Unauthenticated,
        "a deleted customer's token",
    );
    assert!(!refused.message().is_empty());
    for service in [&radio, &tv] {
        let tombstone = admin.service(&service.id).await;
        assert_eq!(tombstone.state, pb::MediaServiceState::Deleted as i32);
        assert!(tombstone.delete_time.is_some());
    }
    let customers = admin
        .accounts()
        .list_customers(pb::ListCustomersRequest {
            reseller_id: reseller.id.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list customers")
        .into_inner()
        .customers;
    assert!(
        customers.iter().all(|c| c.id != customer.id),
        "{customers:?}"
    );
    // The sub-account no longer counts against the reseller's customers.
    let usage = admin
        .catalog()
        .get_reseller_usage(pb::GetResellerUsageRequest {
            reseller_id: reseller.id.clone(),
        })
        .await
        .expect("usage")
        .into_inner();
    let used = |resource: pb::Resource| {
        usage
            .resources
            .iter()
            .find(|u| u.resource == resource as i32)
            .map(|u| u.used)
    };
    assert_eq!(used(pb::Resource::Customers), Some(0));
    assert_eq!(used(pb::Resource::Services), Some(0));
    f.finish().await;
}

async fn a_customer_without_services_goes_at_once_with_its_tokens_and_login(backend: Backend) {
    let cp = ControlPlaneHandle::start(backend).await;
    let admin = cp.admin().await;
    let reseller = admin
        .create_reseller("Quiet Radio", unlimited(), ALL_TYPES)
        .await;
    let customer = admin.create_customer(&reseller.id, "Short Stay").await;
    let token = admin
        .token_for(pb::PrincipalKind::Customer, &customer.id)
        .await;
    let email = format!("{}@example.net", customer.id.to_lowercase());
    let password = "a long enough password";
    admin
        .logins()
        .set_login(pb::SetLoginRequest {
            principal_kind: pb::PrincipalKind::Customer as i32,
            principal_id: customer.id.clone(),
            email: email.clone(),
            password: password.to_owned(),
        })
        .await
        .expect("set login");
    let session = cp
        .client("")
        .await
        .sessions()
        .create_session(pb::CreateSessionRequest {
            email: email.clone(),
            password: password.to_owned(),
        })
        .await
        .expect("sign in")
        .into_inner();
    let signed_in = cp.client(&session.token).await;
    caller(&signed_in).await.expect("the session works");

    let response = delete_customer(&admin, &customer.id, false, false, false)
        .await
        .expect("delete");
    assert!(response.deleted, "nothing to wait for");
    assert!(response.actions.is_empty());
    assert_code(
        get_customer(&admin, &customer.id).await,
        Code::NotFound,
        "deleted customer",
    );
    assert_code(
        caller(&cp.client(&token).await).await,
        Code::Unauthenticated,
        "its API token",
    );
    assert_code(
        caller(&signed_in).await,
        Code::Unauthenticated,
        "its console session",
    );
    assert_code(
        cp.client("")
            .await
            .sessions()
            .create_session(pb::CreateSessionRequest {
                email,
                password: password.to_owned(),
            })
            .await,
        Code::Unauthenticated,
        "signing in again",
    );
    // Deleting it again: it is not there.
    assert_code(
        delete_customer(&admin, &customer.id, false, false, false).await,
        Code::NotFound,
        "a second delete",
    );
}

async fn deleting_a_reseller_takes_every_customer_and_its_own_credentials(backend: Backend) {
    let mut f = Fleet::start(backend).await;
    let (reseller, client) = f.reseller("Sold Radio").await;
    let sub = client.create_customer("", "Sub Account").await;
    let mine = create(
        &client,
        icecast_request(&reseller.primary_customer_id, "own-fm", 10),
    )
    .await;
    let theirs = create(&client, icecast_request(&sub.id, "sub-fm", 10)).await;
    let delete = |force: bool, dry_run: bool| {
        let admin = f.admin.clone();
        let id = reseller.id.clone();
        async move {
            admin
                .accounts()
                .delete_reseller(pb::DeleteResellerRequest {
                    id,
                    force,
                    confirm_permanent_deletion: false,
                    validate_only: dry_run,
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    assert_code(
        client
            .accounts()
            .delete_reseller(pb::DeleteResellerRequest {
                id: reseller.id.clone(),
                force: true,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "a reseller deleting itself",
    );
    let refused = assert_code(
        delete(false, false).await,
        Code::FailedPrecondition,
        "unforced",
    );
    assert!(
        refused.message().contains(&mine.id) && refused.message().contains(&theirs.id),
        "{}",
        refused.message()
    );
    let plan = delete(true, true)
        .await
        .expect("dry run")
        .plan
        .expect("plan");
    for account in [&reseller.id, &reseller.primary_customer_id, &sub.id] {
        assert!(plan.accounts.contains(account), "{plan:?}");
    }
    // With the agent away the deletes wait, so the reseller is observably being deleted
    // (with it connected they may finish before the next call and revoke the token).
    f.agent.stop().await;
    let response = delete(true, false).await.expect("forced");
    assert_eq!(response.actions.len(), 2);
    assert_code(
        client
            .accounts()
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    display_name: "Too Late".into(),
                    ..Default::default()
                }),
            })
            .await,
        Code::FailedPrecondition,
        "a new customer for a reseller being deleted",
    );
    f.agent.start();
    for action in &response.actions {
        let done = f.admin.finished_action(&action.id, LONG).await;
        assert_eq!(done.state, pb::ActionState::Succeeded as i32, "{done:?}");
    }
    customer_gone(&f.admin, &sub.id).await;
    customer_gone(&f.admin, &reseller.primary_customer_id).await;
    assert_code(
        f.admin
            .accounts()
            .get_reseller(pb::GetResellerRequest {
                id: reseller.id.clone(),
            })
            .await,
        Code::NotFound,
        "deleted reseller",
    );
    assert_code(caller(&client).await, Code::Unauthenticated, "its token");
    // The admin still reads the tombstones.
    assert_eq!(
        f.admin.service(&mine.id).await.state,
        pb::MediaServiceState::Deleted as i32
    );
    f.finish().await;
}

async fn deleted_services_stay_readable_by_id_and_lists_hide_them_unless_asked(backend: Backend) {
    let f = Fleet::start(backend).await;
    let (reseller, client) = f.reseller("History Radio").await;
    let other = client.create_customer("", "Next Owner").await;
    let service = create(
        &client,
        icecast_request(&reseller.primary_customer_id, "history-fm", 10),
    )
    .await;
    client
        .media()
        .change_media_service_owner(pb::ChangeMediaServiceOwnerRequest {
            id: service.id.clone(),
            new_customer_id: other.id.clone(),
        })
        .await
        .expect("change owner");
    let deleted = client
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: service.id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    let action = deleted.action.expect("action");
    let done = client.finished_action(&action.id, LONG).await;
    assert_eq!(done.state, pb::ActionState::Succeeded as i32, "{done:?}");

    let tombstone = client.service(&service.id).await;
    assert_eq!(tombstone.state, pb::MediaServiceState::Deleted as i32);
    assert!(tombstone.delete_time.is_some());
    assert!(!tombstone.deleting);
    assert!(tombstone.ports.is_empty(), "its ports are free");
    assert_eq!(tombstone.customer_id, other.id);
    let history = client
        .media()
        .list_ownership_changes(pb::ListOwnershipChangesRequest {
            media_service_id: service.id.clone(),
        })
        .await
        .expect("ownership history of a tombstone")
        .into_inner()
        .changes;
    assert_eq!(history.len(), 1);
    let actions = client
        .actions()
        .list_actions(pb::ListActionsRequest {
            media_service_id: service.id.clone(),
            ..Default::default()
        })
        .await
        .expect("action history of a tombstone")
        .into_inner()
        .actions;
    assert!(actions.iter().any(|a| a.id == action.id));

    assert!(
        list_services(&client, false)
            .await
            .iter()
            .all(|s| s.id != service.id)
    );
    let with_deleted = list_services(&client, true).await;
    let listed = with_deleted
        .iter()
        .find(|s| s.id == service.id)
        .expect("listed with show_deleted");
    assert_eq!(listed.state, pb::MediaServiceState::Deleted as i32);
    // A tombstone takes no actions and no changes, and stays outside other tenancies.
    assert_code(
        client
            .media()
            .start_media_service(pb::StartMediaServiceRequest {
                id: service.id.clone(),
            })
            .await,
        Code::NotFound,
        "start a deleted service",
    );
    let (_, stranger) = f.reseller("Stranger Radio").await;
    assert_code(
        stranger
            .media()
            .get_media_service(pb::GetMediaServiceRequest {
                id: service.id.clone(),
            })
            .await,
        Code::NotFound,
        "another reseller reading the tombstone",
    );
    f.finish().await;
}

async fn a_node_with_services_is_not_deleted_and_a_deleted_node_loses_its_identity(
    backend: Backend,
) {
    let mut f = Fleet::start(backend).await;
    let (reseller, client) = f.reseller("Node Radio").await;
    let service = create(
        &client,
        icecast_request(&reseller.primary_customer_id, "on-the-node", 10),
    )
    .await;
    let delete_node = |by: &Client| {
        let by = by.clone();
        let id = f.node.id.clone();
        async move {
            by.nodes()
                .delete_node(pb::DeleteNodeRequest { id })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    assert_code(
        delete_node(&client).await,
        Code::PermissionDenied,
        "a reseller deleting a node",
    );
    let refused = assert_code(
        delete_node(&f.admin).await,
        Code::FailedPrecondition,
        "services placed",
    );
    assert_eq!(violation_type(&refused), "NODE_HAS_MEDIA_SERVICES");
    assert!(
        refused.message().contains(&service.id),
        "{}",
        refused.message()
    );
    let deleted = client
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: service.id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete service")
        .into_inner();
    let done = client
        .finished_action(&deleted.action.expect("action").id, LONG)
        .await;
    assert_eq!(done.state, pb::ActionState::Succeeded as i32);

    delete_node(&f.admin).await.expect("delete the empty node");
    assert_code(
        f.admin
            .nodes()
            .get_node(pb::GetNodeRequest {
                id: f.node.id.clone(),
            })
            .await,
        Code::NotFound,
        "deleted node",
    );
    assert_code(
        f.admin
            .nodes()
            .create_node_join_token(pb::CreateNodeJoinTokenRequest {
                node_id: f.node.id.clone(),
                ttl_seconds: 0,
            })
            .await,
        Code::NotFound,
        "a join token for a deleted node",
    );
    // Nothing is placed there any more: the only node is gone.
    assert_code(
        client
            .media()
            .create_media_service(icecast_request(
                &reseller.primary_customer_id,
                "nowhere-fm",
                10,
            ))
            .await,
        Code::FailedPrecondition,
        "placement without nodes",
    );
    // Its session ends at once, and its certificate no longer opens one: a restarted agent is
    // refused (UNAUTHENTICATED on the agent listener) and holds no session.
    let metrics = f.cp.metrics_addr.expect("metrics listener");
    let sessions = || async move {
        sample(&scrape(metrics).await, "castplane_agent_sessions", &[]).unwrap_or(-1.0)
    };
    wait_for("the deleted node's session to end", LONG, || async {
        (sessions().await == 0.0).then_some(())
    })
    .await;
    f.agent.stop().await;
    f.agent.start();
    wait_for("the restarted agent to be refused", LONG, || async {
        let text = scrape(metrics).await;
        sample(
            &text,
            "castplane_rpc_requests_total",
            &[
                ("service", "castplane.agent.v1.AgentService"),
                ("method", "Session"),
                ("code", "UNAUTHENTICATED"),
            ],
        )
        .filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(sessions().await, 0.0, "no session for a deleted node");
    // Its name is free for a new node, and listings show only that one.
    let (first, last) = free_port_range(2);
    let (again, _) = f.admin.create_node(&f.node.name, first, last).await;
    assert_ne!(again.id, f.node.id);
    let nodes = f
        .admin
        .nodes()
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .expect("list nodes")
        .into_inner()
        .nodes;
    assert_eq!(
        nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        vec![again.id.as_str()]
    );
    f.finish().await;
}

async fn api_tokens_are_listed_without_secrets_and_revoked_at_once(backend: Backend) {
    let cp = ControlPlaneHandle::start(backend).await;
    let admin = cp.admin().await;
    let reseller = admin
        .create_reseller("Token Radio", unlimited(), ALL_TYPES)
        .await;
    let other = admin
        .create_reseller("Other Radio", unlimited(), ALL_TYPES)
        .await;
    let reseller_client = cp
        .client(
            &admin
                .token_for(pb::PrincipalKind::Reseller, &reseller.id)
                .await,
        )
        .await;
    let other_client = cp
        .client(
            &admin
                .token_for(pb::PrincipalKind::Reseller, &other.id)
                .await,
        )
        .await;
    let customer = reseller_client.create_customer("", "Tokened").await;
    let first = reseller_client
        .token_for(pb::PrincipalKind::Customer, &customer.id)
        .await;
    let second = reseller_client
        .token_for(pb::PrincipalKind::Customer, &customer.id)
        .await;
    let (first_client, second_client) = (cp.client(&first).await, cp.client(&second).await);
    caller(&first_client).await.expect("first works");
    caller(&second_client).await.expect("second works");

    let list = |by: &Client, page_size: i32, page_token: String| {
        let by = by.clone();
        let id = customer.id.clone();
        async move {
            by.accounts()
                .list_api_tokens(pb::ListApiTokensRequest {
                    principal_kind: pb::PrincipalKind::Customer as i32,
                    principal_id: id,
                    page_size,
                    page_token,
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    // Paged one at a time: two pages, stable order, then the end.
    let page_one = list(&reseller_client, 1, String::new())
        .await
        .expect("page 1");
    assert_eq!(page_one.api_tokens.len(), 1);
    assert!(!page_one.next_page_token.is_empty());
    let page_two = list(&reseller_client, 1, page_one.next_page_token.clone())
        .await
        .expect("page 2");
    let mut tokens = page_one.api_tokens.clone();
    tokens.extend(page_two.api_tokens.clone());
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t.principal_id == customer.id));
    // The listing never carries a secret: neither secret appears anywhere in it.
    let shown = format!("{tokens:?}");
    assert!(!shown.contains(&first) && !shown.contains(&second));
    // The customer lists its own (the default target); another reseller sees nothing.
    let own = first_client
        .accounts()
        .list_api_tokens(pb::ListApiTokensRequest::default())
        .await
        .expect("own tokens")
        .into_inner()
        .api_tokens;
    assert_eq!(own.len(), 2);
    assert_code(
        list(&other_client, 0, String::new()).await,
        Code::NotFound,
        "another reseller's customer",
    );
    for token in &tokens {
        assert_code(
            other_client
                .accounts()
                .revoke_api_token(pb::RevokeApiTokenRequest {
                    id: token.id.clone(),
                })
                .await,
            Code::NotFound,
            "revoking outside the tenancy",
        );
    }

    // Which listed token is `first`? The one that stops working when revoked: revoke each
    // in turn until one of the clients fails, checking the other keeps working.
    reseller_client
        .accounts()
        .revoke_api_token(pb::RevokeApiTokenRequest {
            id: tokens[0].id.clone(),
        })
        .await
        .expect("revoke");
    let first_ok = caller(&first_client).await.is_ok();
    let second_ok = caller(&second_client).await.is_ok();
    assert!(
        first_ok != second_ok,
        "exactly one token is refused at once (first {first_ok}, second {second_ok})"
    );
    let remaining = list(&reseller_client, 0, String::new())
        .await
        .expect("list")
        .api_tokens;
    assert_eq!(
        remaining.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&tokens[1].id]
    );
    assert_code(
        reseller_client
            .accounts()
            .revoke_api_token(pb::RevokeApiTokenRequest {
                id: tokens[0].id.clone(),
            })
            .await,
        Code::NotFound,
        "revoking twice",
    );

    // The admin's last token stays: without it nobody administers the cluster.
    let admin_tokens = admin
        .accounts()
        .list_api_tokens(pb::ListApiTokensRequest::default())
        .await
        .expect("admin tokens")
        .into_inner()
        .api_tokens;
    assert_eq!(admin_tokens.len(), 1, "{admin_tokens:?}");
    let status = assert_code(
        admin
            .accounts()
            .revoke_api_token(pb::RevokeApiTokenRequest {
                id: admin_tokens[0].id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "the last admin token",
    );
    assert_eq!(violation_type(&status), "LAST_ADMIN_TOKEN");
}
