//! The product rules (DESIGN.md: tenancy, service types, quotas, ports, ownership, actions),
//! driven through the public gRPC API, against SQLite and against PostgreSQL.
//!
//! Every rule runs once per backend: `sqlite::<rule>` and `postgres::<rule>`.

use std::collections::HashSet;
use std::time::Duration;

use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::{
    AgentHandle, Backend, Client, ControlPlaneHandle, conformance, free_port_range, wait_for,
};
use castplane_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

conformance!(
    tenancy_hides_everything_outside_it,
    list_scopes_split_my_services_from_customer_services,
    customer_choices_are_sorted_and_marked,
    disallowed_types_are_refused_and_the_default_type_is_remembered,
    quota_edges_on_create_and_update,
    customer_quota_and_unlimited_limits,
    concurrent_creates_never_share_a_port_or_exceed_the_range,
    ownership_changes_move_usage_and_are_recorded,
    actions_are_durable_ordered_and_survive_a_restart,
    video_deletion_needs_confirmation_and_dry_run_lists_the_plan,
    invalid_input_is_refused_precisely_and_changes_nothing,
    authentication_is_required_except_for_health,
    listings_page_stably,
    deletion_frees_ports_and_quota,
    the_boundary_refuses_what_no_field_may_carry,
    page_tokens_are_tamper_evident_and_bound_to_their_listing,
    reseller_limits_are_bounded,
    api_tokens_are_bounded_and_capped_per_principal,
);

const ALL_TYPES: &[pb::ServiceType] = &[
    pb::ServiceType::Icecast,
    pb::ServiceType::Shoutcast,
    pb::ServiceType::Video,
];
const UNLIMITED: fn() -> pb::ResellerLimits = || limits(None, None, None, None, None, None);

/// A control plane and its admin: all that rules about accounts, quotas of accounts, tokens
/// and listings need.
struct Accounts {
    cp: ControlPlaneHandle,
    admin: Client,
}

impl Accounts {
    async fn new(backend: Backend) -> Self {
        let cp = ControlPlaneHandle::start(backend).await;
        let admin = cp.admin().await;
        Accounts { cp, admin }
    }

    async fn reseller(
        &self,
        name: &str,
        limits: pb::ResellerLimits,
        types: &[pb::ServiceType],
    ) -> (pb::Reseller, Client) {
        let reseller = self.admin.create_reseller(name, limits, types).await;
        let token = self
            .admin
            .token_for(pb::PrincipalKind::Reseller, &reseller.id)
            .await;
        (reseller, self.cp.client(&token).await)
    }

    async fn finish(self) {}
}

/// Accounts plus one joined, connected agent whose node can run icecast and video: what rules
/// that place services need, since only an agent reports what a node can run.
struct Fixture {
    accounts: Accounts,
    agent: AgentHandle,
    node: pb::Node,
}

impl std::ops::Deref for Fixture {
    type Target = Accounts;

    fn deref(&self) -> &Accounts {
        &self.accounts
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut Accounts {
        &mut self.accounts
    }
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        Self::with_ports(backend, 20).await
    }

    /// A node with `count` ports that are free on this machine now, since some tests start
    /// real servers on them while other tests run.
    async fn with_ports(backend: Backend, count: u32) -> Self {
        let (first, last) = free_port_range(count);
        let accounts = Accounts::new(backend).await;
        let (cp, admin) = (&accounts.cp, &accounts.admin);
        let (node, token) = admin
            .create_node(&format!("node-{first}"), first, last)
            .await;
        let agent = AgentHandle::join_and_start(cp, &token).await;
        let node = wait_for(
            "the node to come online with capabilities",
            Duration::from_secs(30),
            || {
                let admin = admin.clone();
                let id = node.id.clone();
                async move {
                    let node = admin.node(&id).await;
                    let icecast = node
                        .capabilities
                        .iter()
                        .any(|c| c.r#type == pb::ServiceType::Icecast as i32 && c.available);
                    (node.status == pb::NodeStatus::Online as i32 && icecast).then_some(node)
                }
            },
        )
        .await;
        Fixture {
            accounts,
            agent,
            node,
        }
    }

    async fn finish(self) {
        self.agent.shutdown().await;
    }
}

async fn create(
    client: &Client,
    request: pb::CreateMediaServiceRequest,
) -> Result<pb::MediaService, tonic::Status> {
    client
        .media()
        .create_media_service(request)
        .await
        .map(|r| r.into_inner())
}

async fn usage(client: &Client, reseller_id: &str) -> Vec<pb::ResourceUsage> {
    client
        .catalog()
        .get_reseller_usage(pb::GetResellerUsageRequest {
            reseller_id: reseller_id.to_owned(),
        })
        .await
        .expect("usage")
        .into_inner()
        .resources
}

fn used(usage: &[pb::ResourceUsage], resource: pb::Resource) -> u64 {
    usage
        .iter()
        .find(|u| u.resource == resource as i32)
        .map(|u| u.used)
        .expect("resource listed")
}

fn available(usage: &[pb::ResourceUsage], resource: pb::Resource) -> Option<u64> {
    usage
        .iter()
        .find(|u| u.resource == resource as i32)
        .and_then(|u| u.available)
}

async fn list_all(client: &Client, scope: pb::ServiceScope) -> Vec<pb::MediaService> {
    client
        .media()
        .list_media_services(pb::ListMediaServicesRequest {
            scope: scope as i32,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list services")
        .into_inner()
        .media_services
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

/// A type the reseller may not provision: FAILED_PRECONDITION with a `PreconditionFailure`
/// naming the reseller, wherever it is refused.
fn assert_type_not_allowed(status: &tonic::Status, reseller_id: &str) {
    let details = status.get_error_details();
    let failure = details
        .precondition_failure()
        .expect("a PreconditionFailure detail");
    assert_eq!(failure.violations.len(), 1, "{failure:?}");
    assert_eq!(failure.violations[0].r#type, "SERVICE_TYPE_NOT_ALLOWED");
    assert_eq!(
        failure.violations[0].subject,
        format!("reseller:{reseller_id}")
    );
}

/// Out-of-tenancy calls answer NOT_FOUND, never revealing that the object exists.
fn nf<T>(result: Result<tonic::Response<T>, tonic::Status>, what: &str) {
    assert_code(result.map(|_| ()), Code::NotFound, what);
}

async fn tenancy_hides_everything_outside_it(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (r1, c1) = f.reseller("Alpha Radio", UNLIMITED(), ALL_TYPES).await;
    let (r2, c2) = f.reseller("Beta Radio", UNLIMITED(), ALL_TYPES).await;
    let alice = c1.create_customer("", "Alice").await;
    let bob = c2.create_customer("", "Bob").await;
    let service = create(&c1, icecast_request(&alice.id, "alice-fm", 10))
        .await
        .expect("create");
    let action = c1
        .media()
        .stop_media_service(pb::StopMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("stop")
        .into_inner();

    // Reseller 2 cannot see or touch anything of reseller 1: every call answers NOT_FOUND.
    nf(
        c2.accounts()
            .get_reseller(pb::GetResellerRequest { id: r1.id.clone() })
            .await,
        "get reseller",
    );
    nf(
        c2.accounts()
            .get_customer(pb::GetCustomerRequest {
                id: alice.id.clone(),
            })
            .await,
        "get customer",
    );
    nf(
        c2.accounts()
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: alice.id.clone(),
                    email: "x@example.com".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
            })
            .await,
        "update customer",
    );
    nf(
        c2.accounts()
            .list_customers(pb::ListCustomersRequest {
                reseller_id: r1.id.clone(),
                ..Default::default()
            })
            .await,
        "list customers",
    );
    nf(
        c2.accounts()
            .list_customer_choices(pb::ListCustomerChoicesRequest {
                reseller_id: r1.id.clone(),
            })
            .await,
        "choices",
    );
    nf(
        c2.catalog()
            .get_reseller_usage(pb::GetResellerUsageRequest {
                reseller_id: r1.id.clone(),
            })
            .await,
        "usage",
    );
    nf(
        c2.media()
            .get_media_service(pb::GetMediaServiceRequest {
                id: service.id.clone(),
            })
            .await,
        "get service",
    );
    nf(
        c2.media()
            .get_media_service_connection_info(pb::GetMediaServiceConnectionInfoRequest {
                id: service.id.clone(),
            })
            .await,
        "connection info",
    );
    nf(
        c2.media()
            .update_media_service(pb::UpdateMediaServiceRequest {
                media_service: Some(pb::MediaService {
                    id: service.id.clone(),
                    max_listeners: 5,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["max_listeners".into()],
                }),
            })
            .await,
        "update service",
    );
    nf(
        c2.media()
            .start_media_service(pb::StartMediaServiceRequest {
                id: service.id.clone(),
            })
            .await,
        "start",
    );
    nf(
        c2.media()
            .stop_media_service(pb::StopMediaServiceRequest {
                id: service.id.clone(),
            })
            .await,
        "stop",
    );
    nf(
        c2.media()
            .restart_media_service(pb::RestartMediaServiceRequest {
                id: service.id.clone(),
            })
            .await,
        "restart",
    );
    nf(
        c2.media()
            .delete_media_service(pb::DeleteMediaServiceRequest {
                id: service.id.clone(),
                ..Default::default()
            })
            .await,
        "delete",
    );
    nf(
        c2.media()
            .change_media_service_owner(pb::ChangeMediaServiceOwnerRequest {
                id: service.id.clone(),
                new_customer_id: bob.id.clone(),
            })
            .await,
        "change owner of a foreign service",
    );
    nf(
        c1.media()
            .change_media_service_owner(pb::ChangeMediaServiceOwnerRequest {
                id: service.id.clone(),
                new_customer_id: bob.id.clone(),
            })
            .await,
        "change owner to a foreign customer",
    );
    nf(
        c2.media()
            .list_ownership_changes(pb::ListOwnershipChangesRequest {
                media_service_id: service.id.clone(),
            })
            .await,
        "history",
    );
    nf(
        c2.actions()
            .get_action(pb::GetActionRequest {
                id: action.id.clone(),
            })
            .await,
        "get action",
    );
    nf(
        c2.actions()
            .list_actions(pb::ListActionsRequest {
                media_service_id: service.id.clone(),
                ..Default::default()
            })
            .await,
        "list actions",
    );
    nf(
        c2.actions()
            .watch_action(pb::WatchActionRequest {
                id: action.id.clone(),
            })
            .await,
        "watch action",
    );
    nf(
        c2.accounts()
            .create_api_token(pb::CreateApiTokenRequest {
                principal_kind: pb::PrincipalKind::Customer as i32,
                principal_id: alice.id.clone(),
                description: String::new(),
            })
            .await,
        "token for a foreign customer",
    );
    // …and its listings simply do not contain them.
    assert!(list_all(&c2, pb::ServiceScope::All).await.is_empty());
    let all_actions = c2
        .actions()
        .list_actions(pb::ListActionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert!(all_actions.is_empty(), "{all_actions:?}");
    let customers = c2
        .accounts()
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .customers;
    assert!(
        customers.iter().all(|c| c.reseller_id == r2.id),
        "{customers:?}"
    );

    // A customer sees its own service only.
    let alice_token = c1.token_for(pb::PrincipalKind::Customer, &alice.id).await;
    let alice_client = f.cp.client(&alice_token).await;
    let other = create(&c1, icecast_request(&r1.primary_customer_id, "own-fm", 10))
        .await
        .expect("create own");
    let seen: Vec<String> = list_all(&alice_client, pb::ServiceScope::All)
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(seen, vec![service.id.clone()]);
    nf(
        alice_client
            .media()
            .get_media_service(pb::GetMediaServiceRequest {
                id: other.id.clone(),
            })
            .await,
        "customer gets sibling",
    );
    nf(
        alice_client
            .accounts()
            .get_reseller(pb::GetResellerRequest { id: r1.id.clone() })
            .await,
        "customer gets reseller",
    );
    // The admin sees everything.
    assert_eq!(list_all(&f.admin, pb::ServiceScope::All).await.len(), 2);
    f.finish().await;
}

async fn list_scopes_split_my_services_from_customer_services(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (reseller, client) = f.reseller("Scope Radio", UNLIMITED(), ALL_TYPES).await;
    let sub = client.create_customer("", "Sub Account").await;
    let mine = create(
        &client,
        icecast_request(&reseller.primary_customer_id, "my-fm", 10),
    )
    .await
    .expect("create");
    let theirs = create(&client, icecast_request(&sub.id, "their-fm", 10))
        .await
        .expect("create");
    let ids = |list: Vec<pb::MediaService>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(list_all(&client, pb::ServiceScope::MyServices).await),
        vec![mine.id.clone()]
    );
    assert_eq!(
        ids(list_all(&client, pb::ServiceScope::CustomerServices).await),
        vec![theirs.id.clone()]
    );
    let mut both = ids(list_all(&client, pb::ServiceScope::All).await);
    both.sort();
    let mut expected = vec![mine.id, theirs.id];
    expected.sort();
    assert_eq!(both, expected);
    f.finish().await;
}

async fn customer_choices_are_sorted_and_marked(backend: Backend) {
    let f = Accounts::new(backend).await;
    let (reseller, client) = f.reseller("Mango Radio", UNLIMITED(), ALL_TYPES).await;
    for name in ["beta", "Alpha", "charlie", "alpha two", "Zulu"] {
        client.create_customer("", name).await;
    }
    let choices = client
        .accounts()
        .list_customer_choices(pb::ListCustomerChoicesRequest::default())
        .await
        .expect("choices")
        .into_inner()
        .choices;
    let names: Vec<&str> = choices.iter().map(|c| c.display_name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "Alpha",
            "alpha two",
            "beta",
            "charlie",
            "Mango Radio",
            "Zulu"
        ]
    );
    for choice in &choices {
        if choice.customer_id == reseller.primary_customer_id {
            assert_eq!(choice.kind, pb::CustomerKind::PrimaryAccount as i32);
            assert_eq!(choice.label, "reseller (primary account)");
        } else {
            assert_eq!(choice.kind, pb::CustomerKind::SubAccount as i32);
            assert_eq!(choice.label, "sub-account");
        }
    }
    assert_eq!(
        choices
            .iter()
            .filter(|c| c.kind == pb::CustomerKind::PrimaryAccount as i32)
            .count(),
        1
    );
    // The admin must say which reseller; with it, it sees the same list.
    assert_code(
        f.admin
            .accounts()
            .list_customer_choices(pb::ListCustomerChoicesRequest::default())
            .await,
        Code::InvalidArgument,
        "admin without reseller",
    );
    let admin_view = f
        .admin
        .accounts()
        .list_customer_choices(pb::ListCustomerChoicesRequest {
            reseller_id: reseller.id.clone(),
        })
        .await
        .expect("choices")
        .into_inner()
        .choices;
    assert_eq!(admin_view, choices);
    f.finish().await;
}

async fn disallowed_types_are_refused_and_the_default_type_is_remembered(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (reseller, client) = f
        .reseller("Icecast Only", UNLIMITED(), &[pb::ServiceType::Icecast])
        .await;
    let mut video = icecast_request(&reseller.primary_customer_id, "tv", 10);
    video.media_service.as_mut().expect("service").r#type = pb::ServiceType::Video as i32;
    // The same rule, code and detail as on a change of owner to such a reseller.
    let status = assert_code(
        create(&client, video).await,
        Code::FailedPrecondition,
        "video not allowed",
    );
    assert!(status.message().contains("video"), "{}", status.message());
    assert_type_not_allowed(&status, &reseller.id);
    assert!(list_all(&client, pb::ServiceScope::All).await.is_empty());

    let options = |c: Client| async move {
        c.catalog()
            .get_provisioning_options(pb::GetProvisioningOptionsRequest::default())
            .await
            .expect("options")
            .into_inner()
    };
    let before = options(client.clone()).await;
    assert_eq!(
        before.default_service_type,
        pb::ServiceType::Unspecified as i32
    );
    assert_eq!(
        before
            .allowed_service_types
            .iter()
            .map(|t| t.r#type)
            .collect::<Vec<_>>(),
        vec![pb::ServiceType::Icecast as i32]
    );
    let mut remember = icecast_request(&reseller.primary_customer_id, "first-fm", 10);
    remember.remember_type_as_default = true;
    create(&client, remember).await.expect("create");
    assert_eq!(
        options(client.clone()).await.default_service_type,
        pb::ServiceType::Icecast as i32
    );

    // A reseller may change its own default, nothing else.
    let patch = |paths: &[&str], reseller: pb::Reseller| pb::UpdateResellerRequest {
        reseller: Some(reseller),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    };
    let clear = pb::Reseller {
        id: reseller.id.clone(),
        default_service_type: 0,
        ..Default::default()
    };
    client
        .accounts()
        .update_reseller(patch(&["default_service_type"], clear))
        .await
        .expect("clear default");
    assert_eq!(options(client.clone()).await.default_service_type, 0);
    let rename = client
        .accounts()
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: reseller.primary_customer_id.clone(),
                display_name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await;
    assert_code(
        rename,
        Code::PermissionDenied,
        "reseller renames itself through its primary account",
    );
    let grab = pb::Reseller {
        id: reseller.id.clone(),
        allowed_service_types: vec![pb::ServiceType::Video as i32],
        ..Default::default()
    };
    assert_code(
        client
            .accounts()
            .update_reseller(patch(&["allowed_service_types"], grab.clone()))
            .await,
        Code::PermissionDenied,
        "reseller widens its types",
    );
    // The admin may; the catalog lists every type with what it needs.
    f.admin
        .accounts()
        .update_reseller(patch(&["allowed_service_types"], grab))
        .await
        .expect("admin widens");
    assert_eq!(options(client.clone()).await.allowed_service_types.len(), 1);
    let types = client
        .catalog()
        .list_service_types(pb::ListServiceTypesRequest {})
        .await
        .expect("types")
        .into_inner()
        .service_types;
    assert_eq!(types.len(), 3);
    assert!(
        types
            .iter()
            .any(|t| t.r#type == pb::ServiceType::Shoutcast as i32
                && t.requires == vec!["sc_serv".to_owned()])
    );
    f.finish().await;
}

async fn quota_edges_on_create_and_update(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (reseller, client) = f
        .reseller(
            "Tight Radio",
            limits(None, Some(3), Some(100), Some(128), Some(300), Some(30)),
            ALL_TYPES,
        )
        .await;
    let owner = reseller.primary_customer_id.clone();
    let request = |name: &str, listeners: u32, bitrate: u32, disk: u64, bandwidth: u64| {
        let mut r = icecast_request(&owner, name, listeners);
        let s = r.media_service.as_mut().expect("service");
        s.max_bitrate_kbps = bitrate;
        s.disk_quota_mb = disk;
        s.bandwidth_gb_per_month = bandwidth;
        r
    };
    // Over the per-service bitrate cap: refused with the resource, the ask and the cap.
    let a = create(&client, request("a", 60, 128, 200, 20))
        .await
        .expect("a fits");
    let status = assert_code(
        create(&client, request("c", 1, 256, 0, 0)).await,
        Code::ResourceExhausted,
        "bitrate",
    );
    assert!(
        status
            .message()
            .contains("max_bitrate_kbps: asked for 256, 128 available"),
        "{}",
        status.message()
    );
    let details = status.get_error_details();
    let quota = details.quota_failure().expect("QuotaFailure details");
    assert!(
        quota.violations[0].subject.ends_with("max_bitrate_kbps"),
        "{:?}",
        quota.violations
    );
    // Exactly at the limits is fine.
    let b = create(&client, request("b", 40, 64, 100, 10))
        .await
        .expect("b fits exactly");
    let before = usage(&client, &reseller.id).await;
    assert_eq!(used(&before, pb::Resource::ListenerSlots), 100);
    assert_eq!(available(&before, pb::Resource::ListenerSlots), Some(0));
    assert_eq!(available(&before, pb::Resource::DiskMb), Some(0));
    assert_eq!(
        available(&before, pb::Resource::BandwidthGbPerMonth),
        Some(0)
    );
    assert_eq!(available(&before, pb::Resource::MaxBitrateKbps), Some(128));

    // One over on a pool: refused, naming it.
    let cases = [(
        request("c", 1, 64, 0, 0),
        "listener_slots",
        "listener_slots: asked for 1, 0 available",
    )];
    for (req, resource, detail) in cases {
        let status = assert_code(
            create(&client, req).await,
            Code::ResourceExhausted,
            resource,
        );
        assert!(status.message().contains(detail), "{}", status.message());
        let details = status.get_error_details();
        let quota = details.quota_failure().expect("QuotaFailure details");
        assert!(
            quota.violations[0].subject.ends_with(resource),
            "{:?}",
            quota.violations
        );
    }
    // Growing a service by one unit of a full pool is refused too, naming the pool.
    for (path, disk, bandwidth, resource) in [
        (
            "disk_quota_mb",
            201,
            20,
            "disk_mb: asked for 1, 0 available",
        ),
        (
            "bandwidth_gb_per_month",
            200,
            21,
            "bandwidth_gb_per_month: asked for 1, 0 available",
        ),
    ] {
        let grow = pb::UpdateMediaServiceRequest {
            media_service: Some(pb::MediaService {
                id: a.id.clone(),
                disk_quota_mb: disk,
                bandwidth_gb_per_month: bandwidth,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![path.to_owned()],
            }),
        };
        let status = assert_code(
            client.media().update_media_service(grow).await,
            Code::ResourceExhausted,
            path,
        );
        assert!(status.message().contains(resource), "{}", status.message());
    }
    // Nothing was written: same services, same usage.
    assert_eq!(list_all(&client, pb::ServiceScope::All).await.len(), 2);
    assert_eq!(usage(&client, &reseller.id).await, before);

    // Updates are checked on the increase; shrinking always works.
    let update = |id: &str, listeners: u32| pb::UpdateMediaServiceRequest {
        media_service: Some(pb::MediaService {
            id: id.to_owned(),
            max_listeners: listeners,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["max_listeners".into()],
        }),
    };
    let status = assert_code(
        client.media().update_media_service(update(&a.id, 61)).await,
        Code::ResourceExhausted,
        "grow a",
    );
    assert!(
        status
            .message()
            .contains("listener_slots: asked for 1, 0 available"),
        "{}",
        status.message()
    );
    assert_eq!(client.service(&a.id).await.max_listeners, 60);
    client
        .media()
        .update_media_service(update(&a.id, 50))
        .await
        .expect("shrink a");
    client
        .media()
        .update_media_service(update(&b.id, 50))
        .await
        .expect("b takes the freed 10");
    assert_eq!(
        used(
            &usage(&client, &reseller.id).await,
            pb::Resource::ListenerSlots
        ),
        100
    );

    // The services limit: the third fits, a fourth does not.
    let mut lower = f
        .admin
        .accounts()
        .get_reseller(pb::GetResellerRequest {
            id: reseller.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    lower.limits.as_mut().expect("limits").listener_slots = Some(pb::Limit { max: None });
    lower.limits.as_mut().expect("limits").disk_mb = Some(pb::Limit { max: None });
    lower
        .limits
        .as_mut()
        .expect("limits")
        .bandwidth_gb_per_month = Some(pb::Limit { max: None });
    f.admin
        .accounts()
        .update_reseller(pb::UpdateResellerRequest {
            reseller: Some(lower),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![
                    "limits.listener_slots".into(),
                    "limits.disk_mb".into(),
                    "limits.bandwidth_gb_per_month".into(),
                ],
            }),
        })
        .await
        .expect("lift pool limits");
    create(&client, request("c", 10, 64, 10, 1))
        .await
        .expect("third service fits");
    let status = assert_code(
        create(&client, request("d", 10, 64, 10, 1)).await,
        Code::ResourceExhausted,
        "fourth service",
    );
    assert!(
        status
            .message()
            .contains("services: asked for 1, 0 available"),
        "{}",
        status.message()
    );
    f.finish().await;
}

async fn customer_quota_and_unlimited_limits(backend: Backend) {
    let f = Accounts::new(backend).await;
    let (limited, client) = f
        .reseller(
            "Two Customers",
            limits(Some(2), None, None, None, None, None),
            ALL_TYPES,
        )
        .await;
    client.create_customer("", "one").await;
    client.create_customer("", "two").await;
    let refused = client
        .accounts()
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name: "three".into(),
                ..Default::default()
            }),
        })
        .await;
    let status = assert_code(refused, Code::ResourceExhausted, "third customer");
    assert!(
        status
            .message()
            .contains("customers: asked for 1, 0 available"),
        "{}",
        status.message()
    );
    let listed = client
        .accounts()
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .customers;
    assert_eq!(listed.len(), 3, "primary account + two sub-accounts");
    let u = usage(&client, &limited.id).await;
    assert_eq!(used(&u, pb::Resource::Customers), 2);
    // Unlimited resources have no limit and no "available".
    for resource in [
        pb::Resource::Services,
        pb::Resource::ListenerSlots,
        pb::Resource::DiskMb,
    ] {
        let entry = u
            .iter()
            .find(|r| r.resource == resource as i32)
            .expect("listed");
        assert_eq!(entry.limit.as_ref().and_then(|l| l.max), None);
        assert_eq!(entry.available, None);
    }
    f.finish().await;
}

async fn concurrent_creates_never_share_a_port_or_exceed_the_range(backend: Backend) {
    // 40 ports, 50 concurrent creates of one-port services.
    let f = Fixture::with_ports(backend, 40).await;
    let range = f.node.port_range.expect("range");
    let (reseller, client) = f.reseller("Rush Radio", UNLIMITED(), ALL_TYPES).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = client.clone();
        let owner = reseller.primary_customer_id.clone();
        tasks.push(tokio::spawn(async move {
            create(&client, icecast_request(&owner, &format!("rush-{i}"), 1)).await
        }));
    }
    let mut ports = HashSet::new();
    let (mut created, mut exhausted) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(service) => {
                created += 1;
                for p in service.ports {
                    assert!(
                        (range.first..=range.last).contains(&p.port),
                        "port {} outside the range",
                        p.port
                    );
                    assert!(ports.insert(p.port), "port {} given twice", p.port);
                }
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("no free ports"),
                    "{}",
                    status.message()
                );
                exhausted += 1;
            }
        }
    }
    assert_eq!((created, exhausted), (40, 10));
    let node = f.admin.node(&f.node.id).await;
    assert_eq!(node.ports_used, 40);
    assert_eq!(node.service_count, 40);
    f.finish().await;
}

async fn ownership_changes_move_usage_and_are_recorded(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (r1, c1) = f.reseller("Old Owner Radio", UNLIMITED(), ALL_TYPES).await;
    let (r2, _c2) = f
        .reseller(
            "New Owner Radio",
            limits(None, Some(5), Some(100), None, None, None),
            &[pb::ServiceType::Icecast],
        )
        .await;
    let (r3, _c3) = f
        .reseller("No Icecast", UNLIMITED(), &[pb::ServiceType::Video])
        .await;
    let (r4, _c4) = f
        .reseller(
            "Full Radio",
            limits(None, Some(0), None, None, None, None),
            ALL_TYPES,
        )
        .await;
    let sub = c1.create_customer("", "Sub").await;
    let service = create(
        &c1,
        icecast_request(&r1.primary_customer_id, "moving-fm", 50),
    )
    .await
    .expect("create");

    // Within the reseller: usage unchanged, change recorded with who and when.
    let moved = c1
        .media()
        .change_media_service_owner(pb::ChangeMediaServiceOwnerRequest {
            id: service.id.clone(),
            new_customer_id: sub.id.clone(),
        })
        .await
        .expect("move to sub-account")
        .into_inner();
    assert_eq!(moved.customer_id, sub.id);
    assert_eq!(
        used(&usage(&c1, &r1.id).await, pb::Resource::ListenerSlots),
        50
    );
    let history = c1
        .media()
        .list_ownership_changes(pb::ListOwnershipChangesRequest {
            media_service_id: service.id.clone(),
        })
        .await
        .expect("history")
        .into_inner()
        .changes;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].changed_by, format!("reseller:{}", r1.id));
    assert_eq!(
        (
            history[0].from_customer_id.as_str(),
            history[0].to_customer_id.as_str()
        ),
        (r1.primary_customer_id.as_str(), sub.id.as_str())
    );
    assert!(history[0].change_time.is_some());

    // Across resellers (admin only): the target's types and quotas are checked.
    let to = |customer: &str| pb::ChangeMediaServiceOwnerRequest {
        id: service.id.clone(),
        new_customer_id: customer.to_owned(),
    };
    let status = assert_code(
        f.admin
            .media()
            .change_media_service_owner(to(&r3.primary_customer_id))
            .await,
        Code::FailedPrecondition,
        "type not allowed",
    );
    assert!(status.message().contains("icecast"), "{}", status.message());
    assert_type_not_allowed(&status, &r3.id);
    let status = assert_code(
        f.admin
            .media()
            .change_media_service_owner(to(&r4.primary_customer_id))
            .await,
        Code::ResourceExhausted,
        "target full",
    );
    assert!(
        status
            .message()
            .contains("services: asked for 1, 0 available"),
        "{}",
        status.message()
    );
    assert_eq!(
        f.admin.service(&service.id).await.customer_id,
        sub.id,
        "refusals changed nothing"
    );
    f.admin
        .media()
        .change_media_service_owner(to(&r2.primary_customer_id))
        .await
        .expect("admin moves across resellers");
    assert_eq!(
        used(&usage(&f.admin, &r1.id).await, pb::Resource::ListenerSlots),
        0
    );
    assert_eq!(
        used(&usage(&f.admin, &r2.id).await, pb::Resource::ListenerSlots),
        50
    );
    assert_eq!(
        used(&usage(&f.admin, &r2.id).await, pb::Resource::Services),
        1
    );
    // The old reseller no longer sees it.
    assert_code(
        c1.media()
            .get_media_service(pb::GetMediaServiceRequest {
                id: service.id.clone(),
            })
            .await,
        Code::NotFound,
        "moved away",
    );
    let history = f
        .admin
        .media()
        .list_ownership_changes(pb::ListOwnershipChangesRequest {
            media_service_id: service.id.clone(),
        })
        .await
        .expect("history")
        .into_inner()
        .changes;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].changed_by, "admin");
    assert_eq!(history[1].to_reseller_id, r2.id);
    // The new reseller sees the move, but not the accounts it came from.
    let r2_token = f.admin.token_for(pb::PrincipalKind::Reseller, &r2.id).await;
    let seen_by_r2 =
        f.cp.client(&r2_token)
            .await
            .media()
            .list_ownership_changes(pb::ListOwnershipChangesRequest {
                media_service_id: service.id.clone(),
            })
            .await
            .expect("history as the new reseller")
            .into_inner()
            .changes;
    assert_eq!(seen_by_r2.len(), 2);
    assert_eq!(seen_by_r2[1].to_customer_id, r2.primary_customer_id);
    assert_eq!(seen_by_r2[1].changed_by, "admin");
    for change in &seen_by_r2 {
        assert_eq!(change.from_reseller_id, "", "{change:?}");
        assert!(
            !change.from_customer_id.contains(&r1.primary_customer_id)
                && change.from_customer_id != sub.id,
            "{change:?}"
        );
    }
    assert_eq!(
        seen_by_r2[0].changed_by, "another account",
        "{:?}",
        seen_by_r2[0]
    );
    f.finish().await;
}

async fn actions_are_durable_ordered_and_survive_a_restart(backend: Backend) {
    let mut f = Fixture::new(backend).await;
    let (reseller, client) = f.reseller("Durable Radio", UNLIMITED(), ALL_TYPES).await;
    let service = create(
        &client,
        icecast_request(&reseller.primary_customer_id, "durable-fm", 10),
    )
    .await
    .expect("create");
    // With the agent away, actions stay queued.
    f.agent.stop().await;
    let start = client
        .media()
        .start_media_service(pb::StartMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("start")
        .into_inner();
    let stop = client
        .media()
        .stop_media_service(pb::StopMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("stop")
        .into_inner();
    assert_eq!(
        start.state,
        pb::ActionState::Queued as i32,
        "returned at once, queued"
    );
    assert_eq!((start.sequence, stop.sequence), (1, 2));
    assert_eq!(start.requested_by, format!("reseller:{}", reseller.id));

    f.cp.restart().await;
    let client =
        f.cp.client(
            &f.admin
                .token_for(pb::PrincipalKind::Reseller, &reseller.id)
                .await,
        )
        .await;
    for id in [&start.id, &stop.id] {
        assert_eq!(
            client.action(id).await.state,
            pb::ActionState::Queued as i32,
            "still queued after the restart"
        );
    }
    let queued = client
        .actions()
        .list_actions(pb::ListActionsRequest {
            media_service_id: service.id.clone(),
            state: pb::ActionState::Queued as i32,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .actions;
    assert_eq!(
        queued.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        vec![start.id.clone(), stop.id.clone()]
    );

    // The agent comes back; both run, in order.
    f.agent.start();
    let start_done = client
        .finished_action(&start.id, Duration::from_secs(60))
        .await;
    let stop_done = client
        .finished_action(&stop.id, Duration::from_secs(60))
        .await;
    assert_eq!(
        start_done.state,
        pb::ActionState::Succeeded as i32,
        "{start_done:?}"
    );
    assert_eq!(
        stop_done.state,
        pb::ActionState::Succeeded as i32,
        "{stop_done:?}"
    );
    let states: Vec<i32> = start_done.transitions.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        vec![
            pb::ActionState::Queued as i32,
            pb::ActionState::Dispatched as i32,
            pb::ActionState::Running as i32,
            pb::ActionState::Succeeded as i32
        ]
    );
    let finished = |a: &pb::Action| {
        a.transitions
            .last()
            .and_then(|t| t.time)
            .map(|t| (t.seconds, t.nanos))
            .expect("time")
    };
    let stop_began = stop_done
        .transitions
        .iter()
        .find(|t| t.state == pb::ActionState::Dispatched as i32)
        .and_then(|t| t.time)
        .map(|t| (t.seconds, t.nanos))
        .expect("dispatched");
    assert!(
        finished(&start_done) <= stop_began,
        "the stop was dispatched only after the start finished"
    );
    assert_eq!(
        client.service(&service.id).await.desired_state,
        pb::DesiredState::Stopped as i32
    );
    f.finish().await;
}

async fn video_deletion_needs_confirmation_and_dry_run_lists_the_plan(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (reseller, client) = f.reseller("Video Co", UNLIMITED(), ALL_TYPES).await;
    let mut request = icecast_request(&reseller.primary_customer_id, "tv", 10);
    request.media_service.as_mut().expect("service").r#type = pb::ServiceType::Video as i32;
    let video = create(&client, request).await.expect("create video");
    assert_eq!(video.ports.len(), 2);
    let delete = |confirm: bool, dry: bool| pb::DeleteMediaServiceRequest {
        id: video.id.clone(),
        confirm_permanent_deletion: confirm,
        validate_only: dry,
    };

    let status = assert_code(
        client
            .media()
            .delete_media_service(delete(false, false))
            .await,
        Code::FailedPrecondition,
        "unconfirmed",
    );
    assert!(
        status.message().contains("permanently"),
        "{}",
        status.message()
    );
    assert!(status.get_error_details().precondition_failure().is_some());
    assert!(
        client
            .actions()
            .list_actions(pb::ListActionsRequest {
                media_service_id: video.id.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .actions
            .is_empty()
    );

    let plan = client
        .media()
        .delete_media_service(delete(false, true))
        .await
        .expect("dry run")
        .into_inner();
    assert!(plan.action.is_none(), "a dry run queues nothing");
    let plan = plan.plan.expect("plan");
    assert!(plan.requires_confirmation);
    assert!(
        plan.destroyed.iter().any(|d| d.contains("video files")),
        "{plan:?}"
    );
    assert!(!client.service(&video.id).await.deleting);

    // Audio: the customer's media tracks are kept.
    let audio = create(
        &client,
        icecast_request(&reseller.primary_customer_id, "radio", 10),
    )
    .await
    .expect("audio");
    let audio_plan = client
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: audio.id.clone(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry run")
        .into_inner()
        .plan
        .expect("plan");
    assert!(!audio_plan.requires_confirmation);
    assert!(
        audio_plan.kept.iter().any(|k| k.contains("media tracks")),
        "{audio_plan:?}"
    );

    let confirmed = client
        .media()
        .delete_media_service(delete(true, false))
        .await
        .expect("confirmed")
        .into_inner();
    let action = confirmed.action.expect("queued delete");
    assert_eq!(
        client
            .finished_action(&action.id, Duration::from_secs(60))
            .await
            .state,
        pb::ActionState::Succeeded as i32
    );
    // Gone from the node and from listings, but readable by id as a tombstone.
    let tombstone = client.service(&video.id).await;
    assert_eq!(tombstone.state, pb::MediaServiceState::Deleted as i32);
    assert!(tombstone.delete_time.is_some() && tombstone.ports.is_empty());
    assert!(
        list_all(&client, pb::ServiceScope::All)
            .await
            .iter()
            .all(|s| s.id != video.id)
    );
    f.finish().await;
}

async fn invalid_input_is_refused_precisely_and_changes_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (reseller, client) = f.reseller("Strict Radio", UNLIMITED(), ALL_TYPES).await;
    let mut bad = icecast_request(&reseller.primary_customer_id, "Not A Slug!", 0);
    {
        let s = bad.media_service.as_mut().expect("service");
        s.r#type = 0;
        s.max_bitrate_kbps = 1;
    }
    let status = assert_code(
        create(&client, bad).await,
        Code::InvalidArgument,
        "bad create",
    );
    let details = status.get_error_details();
    let fields: HashSet<String> = details
        .bad_request()
        .expect("BadRequest")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    for field in [
        "media_service.type",
        "media_service.name",
        "media_service.max_listeners",
        "media_service.max_bitrate_kbps",
    ] {
        assert!(fields.contains(field), "{field} missing from {fields:?}");
    }
    let mut autodj_video = icecast_request(&reseller.primary_customer_id, "tv", 10);
    autodj_video.media_service.as_mut().expect("service").r#type = pb::ServiceType::Video as i32;
    autodj_video.media_service.as_mut().expect("service").autodj = true;
    assert_code(
        create(&client, autodj_video).await,
        Code::InvalidArgument,
        "autodj on video",
    );
    let mut huge = icecast_request(&reseller.primary_customer_id, "huge", 10);
    huge.media_service.as_mut().expect("service").disk_quota_mb = u64::MAX;
    huge.media_service
        .as_mut()
        .expect("service")
        .bandwidth_gb_per_month = u64::MAX;
    let status = assert_code(
        create(&client, huge).await,
        Code::InvalidArgument,
        "unbounded quotas",
    );
    assert_eq!(
        status
            .get_error_details()
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .len(),
        2
    );
    let name_with_markup = "<b>&amp;\u{7}";
    let status = assert_code(
        client
            .accounts()
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    display_name: name_with_markup.into(),
                    email: "not-an-email".into(),
                    ..Default::default()
                }),
            })
            .await,
        Code::InvalidArgument,
        "control character",
    );
    let violations = status
        .get_error_details()
        .bad_request()
        .expect("BadRequest")
        .field_violations
        .clone();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "customer.display_name");
    assert!(violations[0].description.contains("control characters"));
    let status = assert_code(
        client
            .accounts()
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    display_name: "<b>&amp;".into(),
                    email: "not-an-email".into(),
                    ..Default::default()
                }),
            })
            .await,
        Code::InvalidArgument,
        "bad email",
    );
    assert_eq!(
        status
            .get_error_details()
            .bad_request()
            .expect("BadRequest")
            .field_violations[0]
            .field,
        "customer.email"
    );
    assert_code(
        client
            .media()
            .update_media_service(pb::UpdateMediaServiceRequest {
                media_service: Some(pb::MediaService {
                    id: castplane_control::ids::new_id("svc"),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["node_id".into()],
                }),
            })
            .await,
        Code::InvalidArgument,
        "unknown mask path",
    );
    assert_code(
        client
            .media()
            .get_media_service(pb::GetMediaServiceRequest::default())
            .await,
        Code::InvalidArgument,
        "missing id",
    );
    assert_code(
        client
            .media()
            .list_media_services(pb::ListMediaServicesRequest {
                page_token: "%%%".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "bad page token",
    );
    // A name taken within the reseller.
    create(
        &client,
        icecast_request(&reseller.primary_customer_id, "taken", 5),
    )
    .await
    .expect("create");
    let status = assert_code(
        create(
            &client,
            icecast_request(&reseller.primary_customer_id, "taken", 5),
        )
        .await,
        Code::AlreadyExists,
        "duplicate name",
    );
    assert!(status.message().contains("taken"), "{}", status.message());
    // Shoutcast: no node here has sc_serv.
    let mut shout = icecast_request(&reseller.primary_customer_id, "shout", 5);
    shout.media_service.as_mut().expect("service").r#type = pb::ServiceType::Shoutcast as i32;
    let status = assert_code(
        create(&client, shout).await,
        Code::FailedPrecondition,
        "no node runs shoutcast",
    );
    assert!(
        status.message().contains("no node can run shoutcast"),
        "{}",
        status.message()
    );
    // Nothing but "taken" was written.
    assert_eq!(list_all(&client, pb::ServiceScope::All).await.len(), 1);
    assert_eq!(
        client
            .accounts()
            .list_customers(pb::ListCustomersRequest::default())
            .await
            .expect("list")
            .into_inner()
            .customers
            .len(),
        1
    );
    f.finish().await;
}

async fn authentication_is_required_except_for_health(backend: Backend) {
    let cp = ControlPlaneHandle::start(backend).await;
    let anonymous = cp.client("not-a-real-token").await;
    let status = assert_code(
        anonymous
            .accounts()
            .get_caller(pb::GetCallerRequest {})
            .await,
        Code::Unauthenticated,
        "bad token",
    );
    assert_eq!(status.message(), "invalid API token");
    let mut health = tonic_health::pb::health_client::HealthClient::new(anonymous.channel());
    let served = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(
        served.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // Reflection too, so grpcurl works without credentials.
    let names = castplane_integration_tests::client::reflected_services(anonymous.channel()).await;
    assert!(
        names.contains(&"castplane.v1.MediaServiceService".to_owned()),
        "{names:?}"
    );
    // Only what this listener serves: the agent protocol is served on the agent listener.
    assert!(
        !names.iter().any(|n| n.starts_with("castplane.agent.")),
        "{names:?}"
    );
    let no_header =
        castplane_proto::v1::account_service_client::AccountServiceClient::new(anonymous.channel());
    assert_code(
        no_header.clone().get_caller(pb::GetCallerRequest {}).await,
        Code::Unauthenticated,
        "no token",
    );
    let caller = cp
        .admin()
        .await
        .accounts()
        .get_caller(pb::GetCallerRequest {})
        .await
        .expect("admin")
        .into_inner();
    assert_eq!(caller.principal_kind, pb::PrincipalKind::Admin as i32);
    // The admin token file is private, and tokens are stored only as hashes.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cp.admin_token_path())
        .expect("token file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

async fn listings_page_stably(backend: Backend) {
    let f = Accounts::new(backend).await;
    let (_, client) = f.reseller("Paging Radio", UNLIMITED(), ALL_TYPES).await;
    for i in 0..7 {
        client.create_customer("", &format!("customer {i}")).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .accounts()
            .list_customers(pb::ListCustomersRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.customers.len() <= 3);
        seen.extend(page.customers.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 8, "seven sub-accounts and the primary account");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 8);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "stable order");
    f.finish().await;
}

async fn deletion_frees_ports_and_quota(backend: Backend) {
    let mut f = Fixture::with_ports(backend, 1).await;
    let only_port = f.node.port_range.expect("range").first;
    let (reseller, client) = f
        .reseller(
            "Churn Radio",
            limits(None, Some(1), None, None, None, None),
            ALL_TYPES,
        )
        .await;
    let first = create(
        &client,
        icecast_request(&reseller.primary_customer_id, "first", 10),
    )
    .await
    .expect("create");
    assert_eq!(first.ports[0].port, only_port);
    assert_code(
        create(
            &client,
            icecast_request(&reseller.primary_customer_id, "second", 10),
        )
        .await,
        Code::ResourceExhausted,
        "full",
    );
    // With the agent away, the delete stays pending: the service still counts, and refuses
    // other actions and a second delete.
    f.agent.stop().await;
    let deleted = client
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: first.id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    let pending = client.service(&first.id).await;
    assert!(pending.deleting);
    assert_eq!(
        used(&usage(&client, &reseller.id).await, pb::Resource::Services),
        1
    );
    let status = assert_code(
        client
            .media()
            .start_media_service(pb::StartMediaServiceRequest {
                id: first.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "start while deleting",
    );
    assert!(
        status.message().contains("being deleted"),
        "{}",
        status.message()
    );
    assert_code(
        client
            .media()
            .delete_media_service(pb::DeleteMediaServiceRequest {
                id: first.id.clone(),
                validate_only: true,
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "dry run of a second delete",
    );
    f.agent.start();
    let action = client
        .finished_action(&deleted.action.expect("action").id, Duration::from_secs(60))
        .await;
    assert_eq!(
        action.state,
        pb::ActionState::Succeeded as i32,
        "{action:?}"
    );
    let u = usage(&client, &reseller.id).await;
    assert_eq!(
        (
            used(&u, pb::Resource::Services),
            used(&u, pb::Resource::ListenerSlots)
        ),
        (0, 0)
    );
    let second = create(
        &client,
        icecast_request(&reseller.primary_customer_id, "first", 10),
    )
    .await
    .expect("name and port are free again");
    assert_eq!(second.ports[0].port, only_port);
    // The deleted service's action history remains readable.
    assert_eq!(
        client.action(&action.id).await.state,
        pb::ActionState::Succeeded as i32
    );
    f.finish().await;
}

fn violation_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// NUL bytes, control characters and malformed ids, in every kind of field and reachable with
/// a customer's token, answer INVALID_ARGUMENT naming the field, the same on both databases
/// (PostgreSQL used to answer INTERNAL for NUL bytes), and change nothing.
async fn the_boundary_refuses_what_no_field_may_carry(backend: Backend) {
    let f = Accounts::new(backend).await;
    let (reseller, reseller_client) = f.reseller("Bytes Radio", UNLIMITED(), ALL_TYPES).await;
    let customer = reseller_client
        .create_customer("", "Careful Customer")
        .await;
    let token = f
        .admin
        .token_for(pb::PrincipalKind::Customer, &customer.id)
        .await;
    let c = f.cp.client(&token).await;
    let nul = |s: &str| format!("{s}\0tail");
    let expect = |result: Result<(), tonic::Status>, field: &str| {
        let status = assert_code(result, Code::InvalidArgument, field);
        assert!(
            violation_fields(&status).iter().any(|f| f == field),
            "{field} not named in {status:?}"
        );
    };
    expect(
        c.accounts()
            .get_customer(pb::GetCustomerRequest {
                id: nul(&customer.id),
            })
            .await
            .map(|_| ()),
        "id",
    );
    expect(
        c.accounts()
            .get_reseller(pb::GetResellerRequest {
                id: "rsl_nope".into(),
            })
            .await
            .map(|_| ()),
        "id",
    );
    expect(
        c.accounts()
            .list_customers(pb::ListCustomersRequest {
                reseller_id: nul(&reseller.id),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "reseller_id",
    );
    expect(
        c.accounts()
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: customer.id.clone(),
                    email: nul("a@example.com"),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
            })
            .await
            .map(|_| ()),
        "customer.email",
    );
    expect(
        c.accounts()
            .create_api_token(pb::CreateApiTokenRequest {
                principal_kind: pb::PrincipalKind::Customer as i32,
                principal_id: customer.id.clone(),
                description: nul("script"),
            })
            .await
            .map(|_| ()),
        "description",
    );
    expect(
        c.media()
            .list_media_services(pb::ListMediaServicesRequest {
                customer_id: nul(&customer.id),
                node_id: "node_\u{1b}[2J".into(),
                page_token: nul("AAAA"),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "page_token",
    );
    expect(
        c.media()
            .get_media_service(pb::GetMediaServiceRequest { id: nul("svc_") })
            .await
            .map(|_| ()),
        "id",
    );
    expect(
        c.actions()
            .list_actions(pb::ListActionsRequest {
                media_service_id: nul("svc_"),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "media_service_id",
    );
    expect(
        c.actions()
            .get_action(pb::GetActionRequest { id: nul("act_") })
            .await
            .map(|_| ()),
        "id",
    );
    expect(
        reseller_client
            .accounts()
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    display_name: nul("Evil"),
                    ..Default::default()
                }),
            })
            .await
            .map(|_| ()),
        "customer.display_name",
    );
    expect(
        reseller_client
            .media()
            .create_media_service(pb::CreateMediaServiceRequest {
                media_service: Some(pb::MediaService {
                    customer_id: customer.id.clone(),
                    name: nul("radio"),
                    ..Default::default()
                }),
                remember_type_as_default: false,
            })
            .await
            .map(|_| ()),
        "media_service.name",
    );
    // A well-formed id that names nothing is still NOT_FOUND, as outside the tenancy.
    nf(
        c.accounts()
            .get_reseller(pb::GetResellerRequest {
                id: castplane_control::ids::new_id("rsl"),
            })
            .await,
        "well-formed unknown id",
    );
    // Nothing was written.
    let customers = reseller_client
        .accounts()
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .customers;
    assert_eq!(customers.len(), 2, "primary account and one sub-account");
    assert!(customers.iter().all(|c| c.email.is_empty()));
    f.finish().await;
}

/// Page tokens cannot be forged or altered, and a token continues only the listing (with the
/// same caller and filters) that issued it.
async fn page_tokens_are_tamper_evident_and_bound_to_their_listing(backend: Backend) {
    use base64::Engine;
    let f = Accounts::new(backend).await;
    let (r1, c1) = f.reseller("Token Radio One", UNLIMITED(), ALL_TYPES).await;
    let (_, c2) = f.reseller("Token Radio Two", UNLIMITED(), ALL_TYPES).await;
    for i in 0..3 {
        c1.create_customer("", &format!("one {i}")).await;
        c2.create_customer("", &format!("two {i}")).await;
    }
    let resellers = |token: String| {
        let admin = f.admin.clone();
        async move {
            admin
                .accounts()
                .list_resellers(pb::ListResellersRequest {
                    page_size: 1,
                    page_token: token,
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let first = resellers(String::new()).await.expect("first page");
    assert!(!first.next_page_token.is_empty());
    let second = resellers(first.next_page_token.clone())
        .await
        .expect("the issued token continues its listing");
    assert_ne!(first.resellers[0].id, second.resellers[0].id);

    // What the old tokens were (any base64url string) no longer works.
    let forged = [
        "AAAA".to_owned(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&first.resellers[0].id),
    ];
    for token in forged {
        let status = assert_code(resellers(token).await, Code::InvalidArgument, "forged");
        assert_eq!(violation_fields(&status), vec!["page_token"]);
    }
    // Altered: one character of a real token changed.
    let mut altered = first.next_page_token.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    assert_code(
        resellers(String::from_utf8(altered).expect("ascii")).await,
        Code::InvalidArgument,
        "altered",
    );
    // From another listing.
    assert_code(
        f.admin
            .accounts()
            .list_customers(pb::ListCustomersRequest {
                page_size: 1,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "a resellers token for customers",
    );
    // The same listing with other filters, or another caller's.
    let customers_of = |client: Client, reseller_id: String, token: String| async move {
        client
            .accounts()
            .list_customers(pb::ListCustomersRequest {
                reseller_id,
                page_size: 1,
                page_token: token,
            })
            .await
            .map(|r| r.into_inner())
    };
    let page = customers_of(f.admin.clone(), r1.id.clone(), String::new())
        .await
        .expect("page");
    customers_of(f.admin.clone(), r1.id.clone(), page.next_page_token.clone())
        .await
        .expect("same filters");
    assert_code(
        customers_of(f.admin.clone(), String::new(), page.next_page_token.clone()).await,
        Code::InvalidArgument,
        "other filters",
    );
    let own = customers_of(c1.clone(), String::new(), String::new())
        .await
        .expect("page");
    assert_code(
        customers_of(c2.clone(), String::new(), own.next_page_token).await,
        Code::InvalidArgument,
        "another caller's token",
    );
    f.finish().await;
}

/// Limits beyond what a million services could use are refused naming the bound (leaving `max`
/// out is "unlimited"), on create and update, and nothing is stored.
async fn reseller_limits_are_bounded(backend: Backend) {
    let f = Accounts::new(backend).await;
    let huge = limits(Some(u64::MAX), None, None, Some(u64::MAX), None, None);
    let status = assert_code(
        f.admin
            .accounts()
            .create_reseller(pb::CreateResellerRequest {
                reseller: Some(pb::Reseller {
                    display_name: "Greedy".into(),
                    limits: Some(huge),
                    ..Default::default()
                }),
            })
            .await,
        Code::InvalidArgument,
        "2^64-1 services",
    );
    assert_eq!(
        violation_fields(&status),
        vec![
            "reseller.limits.customers.max",
            "reseller.limits.max_bitrate_kbps.max"
        ]
    );
    assert!(
        status.message().contains("at most 1000000"),
        "{}",
        status.message()
    );
    let listed = f
        .admin
        .accounts()
        .list_resellers(pb::ListResellersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .resellers;
    assert!(listed.is_empty(), "stored: {listed:?}");

    // The bound itself is accepted, and so is unlimited.
    let (reseller, _) = f
        .reseller(
            "Generous",
            limits(Some(1_000_000), None, None, Some(100_000), None, None),
            ALL_TYPES,
        )
        .await;
    let status = assert_code(
        f.admin
            .accounts()
            .update_reseller(pb::UpdateResellerRequest {
                reseller: Some(pb::Reseller {
                    id: reseller.id.clone(),
                    limits: Some(huge),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["limits.customers".into()],
                }),
            })
            .await,
        Code::InvalidArgument,
        "update beyond the bound",
    );
    assert!(violation_fields(&status).contains(&"reseller.limits.customers.max".to_owned()));
    let stored = f
        .admin
        .accounts()
        .get_reseller(pb::GetResellerRequest {
            id: reseller.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    let stored_limits = stored.limits.expect("limits");
    assert_eq!(stored_limits.customers.and_then(|l| l.max), Some(1_000_000));
    assert_eq!(stored_limits.services.and_then(|l| l.max), None);
    f.finish().await;
}

/// Token descriptions are bounded, and one account holds at most 100 tokens.
async fn api_tokens_are_bounded_and_capped_per_principal(backend: Backend) {
    let f = Accounts::new(backend).await;
    let (_, reseller_client) = f.reseller("Token Minter", UNLIMITED(), ALL_TYPES).await;
    let customer = reseller_client.create_customer("", "Minter").await;
    let token = f
        .admin
        .token_for(pb::PrincipalKind::Customer, &customer.id)
        .await;
    let c = f.cp.client(&token).await;
    let mint = |description: String| {
        let c = c.clone();
        let id = customer.id.clone();
        async move {
            c.accounts()
                .create_api_token(pb::CreateApiTokenRequest {
                    principal_kind: pb::PrincipalKind::Customer as i32,
                    principal_id: id,
                    description,
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let status = assert_code(
        mint("x".repeat(100_000)).await,
        Code::InvalidArgument,
        "a 100 kB description",
    );
    assert_eq!(violation_fields(&status), vec!["description"]);
    // One token is held already (the test's own); 99 more fit.
    for i in 1..100 {
        mint(format!("script {i}")).await.expect("under the cap");
    }
    let status = assert_code(
        mint("one too many".into()).await,
        Code::ResourceExhausted,
        "the 101st token",
    );
    assert!(
        status.message().contains("100 API tokens"),
        "{}",
        status.message()
    );
    let details = status.get_error_details();
    let quota = details.quota_failure().expect("QuotaFailure");
    assert_eq!(
        quota.violations[0].subject,
        format!("customer:{}/api_tokens", customer.id)
    );
    f.finish().await;
}
