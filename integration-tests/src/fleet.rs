//! A control plane with one node, a reseller and its primary account, and the small steps the
//! end-to-end tests share: waiting for a node's status, queuing actions, waiting for results.

use std::time::Duration;

use castplane_control::ServiceConfig;
use castplane_proto::v1 as pb;

use crate::client::{icecast_request, limits};
use crate::{Backend, Client, ControlPlaneHandle, free_port_range, wait_for};

/// How long end-to-end steps may take on a loaded machine.
pub const LONG: Duration = Duration::from_secs(60);

pub struct Setup {
    pub cp: ControlPlaneHandle,
    pub admin: Client,
    pub node: pb::Node,
    /// The reseller's primary account, owner of the services tests create.
    pub owner: String,
}

/// A control plane (`backend`) with one node of `ports` free ports, and the node's join token.
pub async fn setup(backend: Backend, config: ServiceConfig, ports: u32) -> (Setup, String) {
    let cp = ControlPlaneHandle::start_with(backend, config).await;
    let admin = cp.admin().await;
    let (first, last) = free_port_range(ports);
    let (node, token) = admin.create_node("stream-host", first, last).await;
    let reseller = admin
        .create_reseller(
            "Live Radio",
            limits(None, None, None, None, None, None),
            &[pb::ServiceType::Icecast, pb::ServiceType::Video],
        )
        .await;
    (
        Setup {
            cp,
            admin,
            node,
            owner: reseller.primary_customer_id,
        },
        token,
    )
}

pub async fn wait_online(admin: &Client, node_id: &str) -> pb::Node {
    wait_for("the node to be online", LONG, || {
        let admin = admin.clone();
        let id = node_id.to_owned();
        async move {
            let node = admin.node(&id).await;
            (node.status == pb::NodeStatus::Online as i32 && !node.capabilities.is_empty())
                .then_some(node)
        }
    })
    .await
}

pub async fn wait_status(admin: &Client, node_id: &str, status: pb::NodeStatus, timeout: Duration) {
    wait_for(&format!("node status {status:?}"), timeout, || {
        let admin = admin.clone();
        let id = node_id.to_owned();
        async move { (admin.node(&id).await.status == status as i32).then_some(()) }
    })
    .await
}

/// Waits for the action to finish and asserts it succeeded.
pub async fn succeeded(client: &Client, id: &str) -> pb::Action {
    let action = client.finished_action(id, LONG).await;
    assert_eq!(
        action.state,
        pb::ActionState::Succeeded as i32,
        "action failed: {}",
        action.error
    );
    action
}

/// Waits until the action reaches `state` (e.g. RUNNING: the agent has it).
pub async fn reaches(client: &Client, id: &str, state: pb::ActionState) -> pb::Action {
    wait_for(&format!("action {id} to be {state:?}"), LONG, || {
        let client = client.clone();
        let id = id.to_owned();
        async move {
            let action = client.action(&id).await;
            (action.state == state as i32).then_some(action)
        }
    })
    .await
}

pub async fn create(client: &Client, owner: &str, name: &str) -> pb::MediaService {
    client
        .media()
        .create_media_service(icecast_request(owner, name, 10))
        .await
        .expect("create")
        .into_inner()
}

pub async fn start(client: &Client, id: &str) -> pb::Action {
    client
        .media()
        .start_media_service(pb::StartMediaServiceRequest { id: id.to_owned() })
        .await
        .expect("start")
        .into_inner()
}

pub async fn stop(client: &Client, id: &str) -> pb::Action {
    client
        .media()
        .stop_media_service(pb::StopMediaServiceRequest { id: id.to_owned() })
        .await
        .expect("stop")
        .into_inner()
}

pub async fn restart(client: &Client, id: &str) -> pb::Action {
    client
        .media()
        .restart_media_service(pb::RestartMediaServiceRequest { id: id.to_owned() })
        .await
        .expect("restart")
        .into_inner()
}

pub fn http_port(service: &pb::MediaService) -> u16 {
    service
        .ports
        .iter()
        .find(|p| p.purpose == "http")
        .map(|p| p.port as u16)
        .expect("http port")
}
