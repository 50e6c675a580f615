//! Setups that tests and benchmarks share.

use std::sync::Arc;
use std::time::Duration;

use castplane_control::{ApiLimits, ServiceConfig};
use castplane_proto::v1 as pb;

use crate::client::{icecast_request, limits};
use crate::{AgentHandle, Backend, Client, ControlPlaneHandle, free_port_range};

/// A customer with an action that stays open (its node's agent is stopped, so the start
/// waits in the queue), the reseller above it, and the control plane with `limits`.
pub struct QueuedAction {
    pub cp: ControlPlaneHandle,
    pub customer: Client,
    pub reseller: Client,
    pub action_id: String,
    /// Stopped; [`AgentHandle::shutdown`] cleans up.
    pub agent: AgentHandle,
}

impl QueuedAction {
    pub async fn start(api_limits: ApiLimits) -> QueuedAction {
        let configure: crate::control_plane::Configure =
            Arc::new(move |config| config.limits = api_limits.clone());
        let cp = ControlPlaneHandle::start_configured(
            Backend::Sqlite,
            ServiceConfig::default(),
            Some(configure),
            false,
        )
        .await;
        let admin = cp.admin().await;
        let (first, last) = free_port_range(3);
        let (node, join_token) = admin.create_node("watch-host", first, last).await;
        let mut agent = AgentHandle::join_and_start(&cp, &join_token).await;
        admin
            .node_that_runs(&node.id, pb::ServiceType::Icecast, Duration::from_secs(60))
            .await;
        let reseller = admin
            .create_reseller(
                "Watch Radio",
                limits(None, None, None, None, None, None),
                &[pb::ServiceType::Icecast],
            )
            .await;
        let customer = admin.create_customer(&reseller.id, "Listener Club").await;
        let customer_token = admin
            .token_for(pb::PrincipalKind::Customer, &customer.id)
            .await;
        let reseller_token = admin
            .token_for(pb::PrincipalKind::Reseller, &reseller.id)
            .await;
        let customer_client = cp.client(&customer_token).await;
        let reseller_client = cp.client(&reseller_token).await;
        let service = reseller_client
            .media()
            .create_media_service(icecast_request(&customer.id, "watched-fm", 10))
            .await
            .expect("create")
            .into_inner();
        agent.stop().await;
        let action = customer_client.start_service(&service.id).await;
        QueuedAction {
            reseller: reseller_client,
            customer: customer_client,
            cp,
            action_id: action.id,
            agent,
        }
    }

    /// A second token of the same customer (limits are per account, not per token).
    pub async fn another_customer_token(&self) -> String {
        let caller = self
            .customer
            .accounts()
            .get_caller(pb::GetCallerRequest {})
            .await
            .expect("caller")
            .into_inner();
        self.cp
            .admin()
            .await
            .token_for(pb::PrincipalKind::Customer, &caller.principal_id)
            .await
    }
}

/// An open `WatchAction` stream, after its first message (the action's current state).
pub async fn watch_action(
    client: &Client,
    action_id: &str,
) -> Result<tonic::Streaming<pb::Action>, tonic::Status> {
    let mut stream = client
        .actions()
        .watch_action(pb::WatchActionRequest {
            id: action_id.to_owned(),
        })
        .await?
        .into_inner();
    let first = stream.message().await?.expect("the action's current state");
    assert_eq!(first.id, action_id);
    Ok(stream)
}

/// Prints median, p99, min and max of `samples` on one line (benchmarks).
pub fn report(label: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n == 0 {
        println!("{label:<48} no samples");
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = sorted[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1];
    println!(
        "{label:<48} n={n:<3} median {:>7.1} ms  p99 {:>7.1} ms  min {:>7.1} ms  max {:>7.1} ms",
        ms(sorted[n / 2]),
        ms(p99),
        ms(sorted[0]),
        ms(sorted[n - 1])
    );
}
