//! Several control-plane replicas on one PostgreSQL: no replica holds state the others need.

use std::collections::HashSet;
use std::time::Duration;

use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::streaming::port_open;
use castplane_integration_tests::{
    AgentHandle, Backend, ControlPlaneHandle, free_port_range, wait_for,
};
use castplane_proto::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_ports_quotas_and_the_action_queue() {
    let a = ControlPlaneHandle::start(Backend::Postgres).await;
    let b = a.start_replica().await;
    let (admin_a, admin_b) = (a.admin().await, b.admin().await);

    // Both replicas sign with the one CA: an agent joins through A and runs against B.
    let (first, last) = free_port_range(30);
    let (node, token) = admin_a.create_node("shared-host", first, last).await;
    let mut agent = AgentHandle::join(&a, &token)
        .await
        .expect("join through replica A");
    agent.config.control_plane_urls = vec![b.agent_url()];
    agent.start();
    wait_for("the node online via replica B", Duration::from_secs(30), || {
        let admin = admin_a.clone();
        let id = node.id.clone();
        async move { (admin.node(&id).await.status == pb::NodeStatus::Online as i32).then_some(()) }
    })
    .await;

    // Concurrent creates through both replicas: ports unique, quota exact.
    let reseller = admin_a
        .create_reseller(
            "Replicated Radio",
            limits(None, Some(24), None, None, None, None),
            &[pb::ServiceType::Icecast],
        )
        .await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let client = if i % 2 == 0 {
            admin_a.clone()
        } else {
            admin_b.clone()
        };
        let owner = reseller.primary_customer_id.clone();
        tasks.push(tokio::spawn(async move {
            client
                .media()
                .create_media_service(icecast_request(&owner, &format!("replica-{i}"), 1))
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut ports = HashSet::new();
    let mut created = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(service) => {
                assert!(
                    ports.insert(service.ports[0].port),
                    "port {} given twice",
                    service.ports[0].port
                );
                created.push(service);
            }
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    assert_eq!(
        created.len(),
        24,
        "exactly the services quota, across replicas"
    );

    // Page tokens are keyed by a secret both replicas share: A's token continues on B.
    let page = |client: castplane_integration_tests::Client, token: String| async move {
        client
            .media()
            .list_media_services(pb::ListMediaServicesRequest {
                page_size: 1,
                page_token: token,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    };
    let first_page = page(admin_a.clone(), String::new()).await.expect("page");
    page(admin_b.clone(), first_page.next_page_token)
        .await
        .expect("replica B continues replica A's listing");

    // An action queued through A is dispatched by B, which holds the agent's stream.
    let service = &created[0];
    let action = admin_a
        .media()
        .start_media_service(pb::StartMediaServiceRequest {
            id: service.id.clone(),
        })
        .await
        .expect("start")
        .into_inner();
    let done = wait_for("the action to succeed", Duration::from_secs(60), || {
        let admin = admin_a.clone();
        let id = action.id.clone();
        async move {
            Some(admin.action(&id).await).filter(|a| a.state == pb::ActionState::Succeeded as i32)
        }
    })
    .await;
    assert_eq!(done.state, pb::ActionState::Succeeded as i32);
    assert!(port_open(service.ports[0].port as u16));
    // A watch through B sees the same durable record.
    let mut watch = admin_b
        .actions()
        .watch_action(pb::WatchActionRequest {
            id: action.id.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let seen = watch.message().await.expect("stream").expect("one message");
    assert_eq!(seen.state, pb::ActionState::Succeeded as i32);
    agent.shutdown().await;
}

/// A token revoked through replica A is refused by A when the call returns, and by B as soon as
/// B receives A's notice (PostgreSQL LISTEN/NOTIFY) — well inside the 30 s its cache entry
/// would otherwise live, which is what this test's 5 s deadline proves. The time B took is
/// printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_revoked_through_one_replica_is_refused_by_every_replica() {
    let a = ControlPlaneHandle::start(Backend::Postgres).await;
    let b = a.start_replica().await;
    let admin_a = a.admin().await;
    let reseller = admin_a
        .create_reseller(
            "Revoked Radio",
            limits(None, None, None, None, None, None),
            &[pb::ServiceType::Icecast],
        )
        .await;
    let secret = admin_a
        .token_for(pb::PrincipalKind::Reseller, &reseller.id)
        .await;
    let (on_a, on_b) = (a.client(&secret).await, b.client(&secret).await);
    let caller = |client: &castplane_integration_tests::Client| {
        let client = client.clone();
        async move {
            client
                .accounts()
                .get_caller(pb::GetCallerRequest {})
                .await
                .map(tonic::Response::into_inner)
        }
    };
    // Both replicas have the token cached now.
    caller(&on_a).await.expect("works on A");
    caller(&on_b).await.expect("works on B");
    let tokens = admin_a
        .accounts()
        .list_api_tokens(pb::ListApiTokensRequest {
            principal_kind: pb::PrincipalKind::Reseller as i32,
            principal_id: reseller.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list tokens")
        .into_inner()
        .api_tokens;
    assert_eq!(tokens.len(), 1);
    admin_a
        .accounts()
        .revoke_api_token(pb::RevokeApiTokenRequest {
            id: tokens[0].id.clone(),
        })
        .await
        .expect("revoke through A");
    let revoked = std::time::Instant::now();
    let status = caller(&on_a).await.expect_err("refused on A at once");
    assert_eq!(status.code(), Code::Unauthenticated);
    wait_for(
        "replica B to refuse the token",
        Duration::from_secs(5),
        || {
            let on_b = on_b.clone();
            async move {
                match caller(&on_b).await {
                    Err(status) if status.code() == Code::Unauthenticated => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
    eprintln!(
        "replica B refused the revoked token {:?} after the revoke returned on A",
        revoked.elapsed()
    );
}
