//! `castplane.v1.NodeService`.

use std::time::Duration;

use castplane_proto::v1 as pb;
use castplane_proto::v1::node_service_server::NodeService;
use tonic::{Request, Response, Status};

use super::convert::{check_display_name, node_to_wire};
use super::{principal, required};
use crate::clock::to_timestamp;
use crate::error::{ServiceError, Violations};
use crate::service::{ControlPlane, NewNode};

pub struct NodeApi {
    pub control_plane: ControlPlane,
}

/// A requested join-token lifetime: 0 is the server's default.
fn ttl(violations: &mut Violations, field: &str, seconds: u32) -> Option<Duration> {
    let max = crate::service::MAX_JOIN_TOKEN_TTL;
    violations.check(
        u64::from(seconds) <= max.as_secs(),
        field,
        format!(
            "must be at most {} (30 days); 0 is the default",
            max.as_secs()
        ),
    );
    (seconds > 0).then(|| Duration::from_secs(seconds as u64))
}

impl TryFrom<pb::CreateNodeRequest> for NewNode {
    type Error = ServiceError;

    fn try_from(request: pb::CreateNodeRequest) -> Result<Self, Self::Error> {
        let node = request.node.unwrap_or_default();
        let mut violations = Violations::default();
        let name_ok = (1..=63).contains(&node.name.len())
            && node
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        violations.check(
            name_ok,
            "node.name",
            "must be 1-63 letters, digits, '-', '.' or '_'",
        );
        check_display_name(&mut violations, "node.public_host", &node.public_host);
        let host_ok = node
            .public_host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
        violations.check(
            host_ok,
            "node.public_host",
            "must be a hostname or an IP address",
        );
        violations.check(
            node.bind_address.is_empty() || node.bind_address.parse::<std::net::IpAddr>().is_ok(),
            "node.bind_address",
            "must be an IP address (0.0.0.0 for every interface), or empty for what the public host resolves to on the node",
        );
        let range = node.port_range.unwrap_or_default();
        let valid_port = |p: u32| (1..=65535).contains(&p);
        violations.check(
            valid_port(range.first) && valid_port(range.last) && range.first <= range.last,
            "node.port_range",
            "must be FIRST-LAST with 1 <= FIRST <= LAST <= 65535",
        );
        let join_token_ttl = ttl(
            &mut violations,
            "join_token_ttl_seconds",
            request.join_token_ttl_seconds,
        );
        violations.into_result()?;
        Ok(NewNode {
            name: node.name,
            public_host: node.public_host,
            bind_address: node.bind_address,
            port_first: range.first as u16,
            port_last: range.last as u16,
            capacity: node.capacity,
            join_token_ttl,
        })
    }
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    #[tracing::instrument(skip_all)]
    async fn create_node(
        &self,
        request: Request<pb::CreateNodeRequest>,
    ) -> Result<Response<pb::CreateNodeResponse>, Status> {
        let principal = principal(&request)?;
        let new = NewNode::try_from(request.into_inner())?;
        let (view, token) = self.control_plane.create_node(&principal, new).await?;
        Ok(Response::new(pb::CreateNodeResponse {
            node: Some(node_to_wire(&view)),
            join_token: Some(pb::NodeJoinToken {
                token: token.token,
                expire_time: Some(to_timestamp(token.expire_time)),
            }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_node(
        &self,
        request: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        let view = self.control_plane.get_node(&principal, id).await?;
        Ok(Response::new(node_to_wire(&view)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let (views, next_page_token) = self
            .control_plane
            .list_nodes(&principal, &r.page_token, r.page_size)
            .await?;
        Ok(Response::new(pb::ListNodesResponse {
            nodes: views.iter().map(node_to_wire).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_node_join_token(
        &self,
        request: Request<pb::CreateNodeJoinTokenRequest>,
    ) -> Result<Response<pb::NodeJoinToken>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let node_id = required("node_id", &r.node_id)?;
        let mut violations = Violations::default();
        let lifetime = ttl(&mut violations, "ttl_seconds", r.ttl_seconds);
        violations.into_result()?;
        let token = self
            .control_plane
            .create_join_token(&principal, node_id, lifetime)
            .await?;
        Ok(Response::new(pb::NodeJoinToken {
            token: token.token,
            expire_time: Some(to_timestamp(token.expire_time)),
        }))
    }

    async fn delete_node(
        &self,
        request: Request<pb::DeleteNodeRequest>,
    ) -> Result<Response<pb::DeleteNodeResponse>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        self.control_plane.delete_node(&principal, id).await?;
        Ok(Response::new(pb::DeleteNodeResponse {}))
    }
}
