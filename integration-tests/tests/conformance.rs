//! The product rules (DESIGN.md: tenancy, service types, quotas, ports, ownership, actions),
//! driven through the public gRPC API, against SQLite and against PostgreSQL.
//!
//! Every rule runs once per backend: `sqlite::<rule>` and `postgres::<rule>`.

use std::collections::HashSet;
use std::time::Duration;

use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::{
    AgentHandle, Backend, Client, ControlPlaneHandle, free_port_range, wait_for,
};
use castplane_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

macro_rules! conformance {
    ($($rule:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $rule() {
                    super::$rule(super::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $rule() {
                    super::$rule(super::Backend::Postgres).await;
                }
            )+
        }
    };
}

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
);

const ALL_TYPES: &[pb::ServiceType] = &[
    pb::ServiceType::Icecast,
    pb::ServiceType::Shoutcast,
    pb::ServiceType::Video,
];
const UNLIMITED: fn() -> pb::ResellerLimits = || limits(None, None, None, None, None, None);

/// A control plane with one joined, connected agent whose node can run icecast and video.
struct Fixture {
    cp: ControlPlaneHandle,
    admin: Client,
    agent: AgentHandle,
    node: pb::Node,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        Self::with_ports(backend, 20).await
    }

    /// A node with `count` ports that are free on this machine now, since some tests start
    /// real servers on them while other tests run.
    async fn with_ports(backend: Backend, count: u32) -> Self {
        let (first, last) = free_port_range(count);
        let cp = ControlPlaneHandle::start(backend).await;
        let admin = cp.admin().await;
        let (node, token) = admin
            .create_node(&format!("node-{first}"), first, last)
            .await;
        let agent = AgentHandle::join_and_start(&cp, &token).await;
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
            cp,
            admin,
            agent,
            node,
        }
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
    let f = Fixture::new(backend).await;
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
    let status = assert_code(
        create(&client, video).await,
        Code::PermissionDenied,
        "video not allowed",
    );
    assert!(status.message().contains("video"), "{}", status.message());
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
    let f = Fixture::new(backend).await;
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
    assert_code(
        client
            .media()
            .get_media_service(pb::GetMediaServiceRequest {
                id: video.id.clone(),
            })
            .await,
        Code::NotFound,
        "deleted",
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
        "control character and bad email",
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
    assert_code(
        client
            .media()
            .update_media_service(pb::UpdateMediaServiceRequest {
                media_service: Some(pb::MediaService {
                    id: "svc_x".into(),
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
    let names = anonymous.reflected_services().await;
    assert!(
        names.contains(&"castplane.v1.MediaServiceService".to_owned()),
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
    let f = Fixture::new(backend).await;
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
