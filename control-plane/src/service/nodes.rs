//! Streaming hosts: registration, join tokens, capabilities and placement.

use std::time::Duration;

use crate::persistence::Tx;

use super::{ControlPlane, Result, page_size, require_admin};
use crate::clock::now_millis;
pub use crate::domain::{Capability, NodeCapabilities};
use crate::domain::{Principal, ServiceType};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::entities::{node, port_allocation};
use crate::persistence::{dispatch as dispatch_db, nodes as db, services as service_db};

pub struct NewNode {
    pub name: String,
    pub public_host: String,
    /// Empty: the agent binds what `public_host` resolves to on its host.
    pub bind_address: String,
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
    /// A session holds it on a replica whose lease is current.
    pub online: bool,
}

/// A join token as handed to the operator: `cpjoin.<secret>.<sha256 of the CA certificate>`.
/// The hash lets the agent verify the control plane before it sends the secret.
pub struct JoinToken {
    pub token: String,
    pub expire_time: i64,
}

pub(crate) struct Placement {
    pub node: node::Model,
    pub ports: Vec<port_allocation::Model>,
}

/// Picks a node for a new service and takes its ports, inside the creating transaction.
///
/// Candidates are the nodes whose agent reported it can run the type (and AutoDJ when asked),
/// least loaded first (`nodes.service_count`, kept by placement and deletion). One candidate
/// at a time is locked — on PostgreSQL with `SKIP LOCKED`, so concurrent creates on other
/// replicas take other nodes instead of queueing behind one — and given the first run of
/// consecutive free ports its type needs (SHOUTcast DNAS 2 serves on a port and takes sources
/// on the next). The `port_allocations` primary key refuses any duplicate regardless.
pub(crate) async fn place_service(
    txn: &Tx,
    service_type: ServiceType,
    autodj: bool,
    requested_node: Option<&str>,
    service_id: &str,
) -> Result<Placement> {
    let purposes = service_type.port_purposes();
    let mut reasons = Vec::new();
    if let Some(id) = requested_node {
        let node = db::get_node(txn, id, true)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("node {id:?} not found")))?;
        if !db::supports(txn, &node.id, service_type, autodj).await? {
            return Err(incapable(service_type, autodj, Some(id)));
        }
        if let Some(placement) = try_node(txn, node, purposes, service_id, &mut reasons).await? {
            return Ok(placement);
        }
        return Err(no_room(service_type, requested_node, &reasons));
    }
    let mut tried: Vec<String> = Vec::new();
    let mut skip_locked = true;
    loop {
        let candidate = db::capable_candidates(txn, service_type, autodj, &tried, 1, skip_locked)
            .await?
            .pop();
        let Some(node) = candidate else {
            if skip_locked {
                // Every remaining candidate is locked by a concurrent placement (or there is
                // none): wait for the best one instead.
                skip_locked = false;
                continue;
            }
            if tried.is_empty() {
                return Err(incapable(service_type, autodj, None));
            }
            return Err(no_room(service_type, None, &reasons));
        };
        tried.push(node.id.clone());
        if let Some(placement) = try_node(txn, node, purposes, service_id, &mut reasons).await? {
            return Ok(placement);
        }
        skip_locked = true;
    }
}

/// The node's first run of free ports for `purposes`, taken; `None` (with the reason) when it
/// is full.
async fn try_node(
    txn: &Tx,
    node: node::Model,
    purposes: &[&str],
    service_id: &str,
    reasons: &mut Vec<String>,
) -> Result<Option<Placement>> {
    if node.capacity > 0 && node.service_count >= node.capacity {
        reasons.push(format!(
            "node {} is at capacity ({} services)",
            node.name, node.capacity
        ));
        return Ok(None);
    }
    let used = service_db::used_ports(txn, &node.id).await?;
    let Some(first) = first_free_run(node.port_first, node.port_last, purposes.len(), &used) else {
        let range = node.port_last - node.port_first + 1;
        reasons.push(format!(
            "node {} has no free ports: range {}-{} has {} free, {} consecutive needed",
            node.name,
            node.port_first,
            node.port_last,
            range - used.len() as i64,
            purposes.len()
        ));
        return Ok(None);
    };
    let ports: Vec<port_allocation::Model> = purposes
        .iter()
        .zip(first..)
        .map(|(purpose, port)| port_allocation::Model {
            node_id: node.id.clone(),
            port: i64::from(port),
            media_service_id: service_id.to_owned(),
            purpose: (*purpose).to_owned(),
        })
        .collect();
    db::count_placement(txn, &node.id, ports.len() as i64).await?;
    Ok(Some(Placement { node, ports }))
}

/// The lowest port starting `count` consecutive ports in `first..=last` none of which is used.
fn first_free_run(
    first: i64,
    last: i64,
    count: usize,
    used: &std::collections::BTreeSet<u16>,
) -> Option<u16> {
    let first = u16::try_from(first.max(1)).ok()?;
    let last = u16::try_from(last.min(i64::from(u16::MAX))).ok()?;
    let mut run_start = first;
    let mut run = 0usize;
    for port in first..=last {
        if used.contains(&port) {
            run = 0;
            run_start = port.saturating_add(1);
            continue;
        }
        run += 1;
        if run == count {
            return Some(run_start);
        }
    }
    None
}

fn incapable(service_type: ServiceType, autodj: bool, node: Option<&str>) -> ServiceError {
    let needs = service_type.info().requires.join(" and ");
    let what = if autodj {
        format!("{service_type} with AutoDJ")
    } else {
        service_type.to_string()
    };
    let liquidsoap = if autodj { " and liquidsoap" } else { "" };
    let (subject, message) = match node {
        Some(id) => (
            format!("node:{id}"),
            format!("node {id} cannot run {what}: its agent has not reported {needs}{liquidsoap}"),
        ),
        None => (
            "nodes".to_owned(),
            format!("no node can run {what}: no agent has reported {needs}{liquidsoap}"),
        ),
    };
    ServiceError::precondition("NODE_CAPABILITY", subject, message)
}

fn no_room(service_type: ServiceType, node: Option<&str>, reasons: &[String]) -> ServiceError {
    ServiceError::QuotaExceeded {
        message: format!(
            "no room for a {service_type} service: {}",
            reasons.join("; ")
        ),
        resource: crate::domain::Resource::Services,
        subject: node
            .map(|n| format!("node:{n}"))
            .unwrap_or_else(|| "nodes".to_owned()),
        asked: 1,
        available: 0,
    }
}

/// The longest a join token may stay valid, asked for or configured.
pub const MAX_JOIN_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

fn join_token_expiry(now: i64, ttl: Duration) -> Result<i64> {
    crate::clock::after(now, ttl.min(MAX_JOIN_TOKEN_TTL))
        .ok_or_else(|| ServiceError::Internal("the join token expiry overflows".into()))
}

impl ControlPlane {
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
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
        let expire_time = join_token_expiry(now, ttl)?;
        let model = node::Model {
            id: ids::new_id("node"),
            name: new.name.clone(),
            public_host: new.public_host,
            port_first: new.port_first as i64,
            port_last: new.port_last as i64,
            capacity: new.capacity as i64,
            capabilities: NodeCapabilities::default(),
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
            bind_address: new.bind_address,
            version: 0,
            session_generation: 0,
            session_replica: None,
            unreachable_since: Some(now),
            service_count: 0,
            ports_used: 0,
            delete_time: None,
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
            online: false,
        };
        Ok((view, JoinToken { token, expire_time }))
    }

    /// Replaces the node's join token; the previous one stops working.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), node_id = %node_id))]
    pub async fn create_join_token(
        &self,
        principal: &Principal,
        node_id: &str,
        ttl: Option<Duration>,
    ) -> Result<JoinToken> {
        require_admin(principal, "issue join tokens")?;
        let (secret, token) = self.new_join_token();
        let expire_time =
            join_token_expiry(now_millis(), ttl.unwrap_or(self.config().join_token_ttl))?;
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

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn get_node(&self, principal: &Principal, id: &str) -> Result<NodeView> {
        require_admin(principal, "view nodes")?;
        let node = db::get_node(self.reader(), id, false)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("node {id:?} not found")))?;
        let mut views = self.node_views(vec![node]).await?;
        views
            .pop()
            .ok_or_else(|| ServiceError::Internal("node view vanished".into()))
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn list_nodes(
        &self,
        principal: &Principal,
        page_token: &str,
        requested_size: i32,
    ) -> Result<(Vec<NodeView>, String)> {
        require_admin(principal, "list nodes")?;
        let size = page_size(requested_size)?;
        let listing = "nodes";
        let after = self.page_after(listing, page_token)?;
        let rows = db::list_nodes(self.reader(), after.as_deref(), size + 1).await?;
        let (rows, token) = self.paginate(listing, rows, size, |n| &n.id);
        Ok((self.node_views(rows).await?, token))
    }

    async fn node_views(&self, nodes: Vec<node::Model>) -> Result<Vec<NodeView>> {
        let (now, leases) = dispatch_db::replica_leases(self.reader()).await?;
        Ok(nodes
            .into_iter()
            .map(|node| {
                let online = node.connected
                    && node
                        .session_replica
                        .as_ref()
                        .and_then(|r| leases.get(r))
                        .is_some_and(|lease| *lease >= now);
                NodeView {
                    service_count: u32::try_from(node.service_count).unwrap_or_default(),
                    ports_used: u32::try_from(node.ports_used).unwrap_or_default(),
                    capabilities: node.capabilities.clone(),
                    online,
                    node,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::first_free_run;

    #[test]
    fn consecutive_ports_skip_gaps_too_small() {
        let used = [8000u16, 8002, 8003].into_iter().collect();
        assert_eq!(first_free_run(8000, 8010, 1, &used), Some(8001));
        assert_eq!(first_free_run(8000, 8010, 2, &used), Some(8004));
        assert_eq!(first_free_run(8000, 8005, 3, &used), None);
        assert_eq!(
            first_free_run(8000, 8000, 1, &Default::default()),
            Some(8000)
        );
    }
}
