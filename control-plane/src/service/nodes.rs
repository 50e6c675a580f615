//! Streaming hosts: registration, join tokens, capabilities and placement.

use std::time::Duration;

use sea_orm::DatabaseTransaction;
use serde::{Deserialize, Serialize};

use super::{ControlPlane, Result, page_size, paginate, require_admin};
use crate::clock::now_millis;
use crate::domain::{Principal, ServiceType};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::entities::{node, port_allocation};
use crate::persistence::{nodes as db, services as service_db};

pub struct NewNode {
    pub name: String,
    pub public_host: String,
    pub port_first: u16,
    pub port_last: u16,
    pub capacity: u32,
    pub join_token_ttl: Option<Duration>,
}

/// A node with what is placed on it.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub node: node::Model,
    pub service_count: u32,
    pub ports_used: u32,
    pub capabilities: NodeCapabilities,
}

/// A join token as handed to the operator: `cpjoin.<secret>.<sha256 of the CA certificate>`.
/// The hash lets the agent verify the control plane before it sends the secret.
pub struct JoinToken {
    pub token: String,
    pub expire_time: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub service_type: String,
    pub available: bool,
    pub version: String,
    pub detail: String,
    pub autodj_available: bool,
}

/// What a node's agent last reported it can run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCapabilities(pub Vec<Capability>);

impl NodeCapabilities {
    pub fn parse(json: &str) -> Self {
        serde_json::from_str(json).unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "[]".to_owned())
    }

    pub fn supports(&self, service_type: ServiceType, autodj: bool) -> bool {
        self.0.iter().any(|c| {
            c.service_type == service_type.as_str()
                && c.available
                && (!autodj || c.autodj_available)
        })
    }
}

pub(crate) struct Placement {
    pub node: node::Model,
    pub ports: Vec<port_allocation::Model>,
}

/// Picks a node for a new service and takes its ports, inside the creating transaction.
///
/// Candidates are the nodes whose agent reported it can run the type (and AutoDJ when asked);
/// the least loaded one with room wins. The node row is locked while its ports are chosen, and
/// the `port_allocations` primary key refuses any duplicate regardless.
pub(crate) async fn place_service(
    txn: &DatabaseTransaction,
    service_type: ServiceType,
    autodj: bool,
    requested_node: Option<&str>,
    service_id: &str,
) -> Result<Placement> {
    let nodes = match requested_node {
        Some(id) => vec![
            db::get_node(txn, id, false)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("node {id:?} not found")))?,
        ],
        None => db::all_nodes(txn).await?,
    };
    let capable_ids: Vec<String> = nodes
        .into_iter()
        .filter(|n| NodeCapabilities::parse(&n.capabilities).supports(service_type, autodj))
        .map(|n| n.id)
        .collect();
    if capable_ids.is_empty() {
        let needs = service_type.info().requires.join(" and ");
        let what = if autodj {
            format!("{service_type} with AutoDJ")
        } else {
            service_type.to_string()
        };
        let (subject, message) = match requested_node {
            Some(id) => (
                format!("node:{id}"),
                format!(
                    "node {id} cannot run {what}: its agent has not reported {needs}{}",
                    if autodj { " and liquidsoap" } else { "" }
                ),
            ),
            None => (
                "nodes".to_owned(),
                format!(
                    "no node can run {what}: no agent has reported {needs}{}",
                    if autodj { " and liquidsoap" } else { "" }
                ),
            ),
        };
        return Err(ServiceError::precondition(
            "NODE_CAPABILITY",
            subject,
            message,
        ));
    }
    // Every candidate is locked, in id order, before anything is counted: concurrent
    // placements (on any replica) then see each other's services and ports, and cannot lock
    // the same nodes in opposite orders.
    let locked = db::lock_nodes(txn, &capable_ids).await?;
    let counts: std::collections::HashMap<String, i64> =
        db::service_counts(txn).await?.into_iter().collect();
    let mut capable: Vec<(i64, node::Model)> = locked
        .into_iter()
        .map(|n| (counts.get(&n.id).copied().unwrap_or(0), n))
        .collect();
    capable.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let purposes = service_type.port_purposes();
    let mut reasons = Vec::new();
    for (count, candidate) in capable {
        if candidate.capacity > 0 && count >= candidate.capacity {
            reasons.push(format!(
                "node {} is at capacity ({} services)",
                candidate.name, candidate.capacity
            ));
            continue;
        }
        let node = candidate;
        let used = service_db::used_ports(txn, &node.id).await?;
        let free: Vec<u16> = (node.port_first..=node.port_last)
            .filter_map(|p| u16::try_from(p).ok())
            .filter(|p| !used.contains(p))
            .take(purposes.len())
            .collect();
        if free.len() < purposes.len() {
            reasons.push(format!(
                "node {} has no free ports: range {}-{} has {} free, {} needed",
                node.name,
                node.port_first,
                node.port_last,
                free.len(),
                purposes.len()
            ));
            continue;
        }
        let ports = purposes
            .iter()
            .zip(free)
            .map(|(purpose, port)| port_allocation::Model {
                node_id: node.id.clone(),
                port: port as i64,
                media_service_id: service_id.to_owned(),
                purpose: (*purpose).to_owned(),
            })
            .collect();
        return Ok(Placement { node, ports });
    }
    Err(ServiceError::QuotaExceeded {
        message: format!(
            "no room for a {service_type} service: {}",
            reasons.join("; ")
        ),
        resource: crate::domain::Resource::Services,
        subject: requested_node
            .map(|n| format!("node:{n}"))
            .unwrap_or_else(|| "nodes".to_owned()),
        asked: 1,
        available: 0,
    })
}

impl ControlPlane {
    pub async fn create_node(
        &self,
        principal: &Principal,
        new: NewNode,
    ) -> Result<(NodeView, JoinToken)> {
        require_admin(principal, "register nodes")?;
        if new.port_first > new.port_last {
            return Err(ServiceError::invalid_field(
                "node.port_range",
                "first must not be above last",
            ));
        }
        let now = now_millis();
        let (secret, token) = self.new_join_token();
        let ttl = new.join_token_ttl.unwrap_or(self.config().join_token_ttl);
        let expire_time = now + ttl.as_millis() as i64;
        let model = node::Model {
            id: ids::new_id("node"),
            name: new.name.clone(),
            public_host: new.public_host,
            port_first: new.port_first as i64,
            port_last: new.port_last as i64,
            capacity: new.capacity as i64,
            capabilities: "[]".to_owned(),
            agent_version: String::new(),
            connected: false,
            session_id: None,
            last_heartbeat_time: None,
            join_time: None,
            join_token_hash: Some(ids::hash_secret(&secret)),
            join_token_expire_time: Some(expire_time),
            cert_fingerprint: None,
            previous_cert_fingerprint: None,
            cert_expire_time: None,
            create_time: now,
        };
        db::insert_node(self.db(), model.clone())
            .await
            .map_err(|e| match e {
                crate::persistence::PersistenceError::Conflict(_) => ServiceError::AlreadyExists(
                    format!("a node named {:?} already exists", new.name),
                ),
                other => other.into(),
            })?;
        tracing::info!(node_id = %model.id, node_name = %model.name, "registered node");
        let view = NodeView {
            node: model,
            service_count: 0,
            ports_used: 0,
            capabilities: NodeCapabilities::default(),
        };
        Ok((view, JoinToken { token, expire_time }))
    }

    /// Replaces the node's join token; the previous one stops working.
    pub async fn create_join_token(
        &self,
        principal: &Principal,
        node_id: &str,
        ttl: Option<Duration>,
    ) -> Result<JoinToken> {
        require_admin(principal, "issue join tokens")?;
        let (secret, token) = self.new_join_token();
        let expire_time =
            now_millis() + ttl.unwrap_or(self.config().join_token_ttl).as_millis() as i64;
        let found =
            db::set_join_token(self.db(), node_id, &ids::hash_secret(&secret), expire_time).await?;
        if !found {
            return Err(ServiceError::NotFound(format!(
                "node {node_id:?} not found"
            )));
        }
        Ok(JoinToken { token, expire_time })
    }

    fn new_join_token(&self) -> (String, String) {
        let secret = ids::new_secret(32);
        let token = castplane_proto::join_token::format(&secret, &self.ca().fingerprint());
        (secret, token)
    }

    pub async fn get_node(&self, principal: &Principal, id: &str) -> Result<NodeView> {
        require_admin(principal, "view nodes")?;
        let node = db::get_node(self.db(), id, false)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("node {id:?} not found")))?;
        let mut views = self.node_views(vec![node]).await?;
        views
            .pop()
            .ok_or_else(|| ServiceError::Internal("node view vanished".into()))
    }

    pub async fn list_nodes(
        &self,
        principal: &Principal,
        page_token: &str,
        requested_size: i32,
    ) -> Result<(Vec<NodeView>, String)> {
        require_admin(principal, "list nodes")?;
        let size = page_size(requested_size)?;
        let after = super::decode_page_token(page_token)?;
        let rows = db::list_nodes(self.db(), after.as_deref(), size + 1).await?;
        let (rows, token) = paginate(rows, size, |n| &n.id);
        Ok((self.node_views(rows).await?, token))
    }

    async fn node_views(&self, nodes: Vec<node::Model>) -> Result<Vec<NodeView>> {
        let services: std::collections::HashMap<String, i64> =
            db::service_counts(self.db()).await?.into_iter().collect();
        let ports: std::collections::HashMap<String, i64> =
            db::port_counts(self.db()).await?.into_iter().collect();
        Ok(nodes
            .into_iter()
            .map(|node| NodeView {
                service_count: services.get(&node.id).copied().unwrap_or(0) as u32,
                ports_used: ports.get(&node.id).copied().unwrap_or(0) as u32,
                capabilities: NodeCapabilities::parse(&node.capabilities),
                node,
            })
            .collect())
    }
}
