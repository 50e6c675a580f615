//! The control plane's side of the agent protocol: joining, certificate renewal, sessions,
//! action dispatch and results, observed state, and the liveness sweep.

use sea_orm::TransactionTrait;

use super::nodes::NodeCapabilities;
use super::{ControlPlane, Result};
use crate::clock::now_millis;
use crate::domain::{ActionKind, ActionState, DesiredState, ObservedState};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::entities::{action, media_service, node, port_allocation};
use crate::persistence::{actions as action_db, nodes as db, services as service_db};

/// A service as its node should run it.
#[derive(Clone, Debug)]
pub struct ServiceAssignment {
    pub service: media_service::Model,
    pub ports: Vec<port_allocation::Model>,
    pub public_host: String,
    pub bind_address: String,
}

/// What the agent reported about one service.
#[derive(Clone, Debug)]
pub struct ObservedReport {
    pub service_id: String,
    pub state: ObservedState,
    pub message: String,
    pub stats_json: String,
    pub observe_time: i64,
}

pub struct Joined {
    pub node: node::Model,
    pub certificate_pem: String,
}

impl ControlPlane {
    /// Exchanges a valid, unused, unexpired join token for a node certificate. The token is
    /// consumed in the same transaction, so a replay (even a concurrent one) is refused.
    pub async fn join_node(&self, token: &str, csr_pem: &str) -> Result<Joined> {
        let refused = || {
            ServiceError::Unauthenticated("join token is invalid, expired or already used".into())
        };
        let (secret, _) = castplane_proto::join_token::parse(token).ok_or_else(refused)?;
        let txn = self.db().begin().await?;
        let mut node = db::find_by_join_token(&txn, &ids::hash_secret(secret))
            .await?
            .ok_or_else(refused)?;
        let now = now_millis();
        if node.join_token_expire_time.is_none_or(|t| t < now) {
            return Err(refused());
        }
        let issued = self
            .ca()
            .issue_node_certificate(csr_pem, &node.id, self.config().agent_certificate_validity)
            .map_err(|e| ServiceError::invalid_field("csr_pem", e.to_string()))?;
        node.join_token_hash = None;
        node.join_token_expire_time = None;
        node.join_time = Some(now);
        node.previous_cert_fingerprint = None;
        node.cert_fingerprint = Some(issued.fingerprint);
        node.cert_expire_time = Some(issued.not_after_millis);
        db::update_node(&txn, node.clone()).await?;
        txn.commit().await?;
        tracing::info!(node_id = %node.id, node_name = %node.name, "node joined");
        Ok(Joined {
            node,
            certificate_pem: issued.cert_pem,
        })
    }

    /// The node a presented client certificate belongs to. The certificate chain was already
    /// verified against the CA in the TLS handshake; this checks it is the node's current (or,
    /// during renewal, previous) certificate, so a re-joined node's old certificate stops working.
    pub async fn authenticate_node(&self, cert_der: &[u8]) -> Result<node::Model> {
        let fingerprint = crate::pki::fingerprint_der(cert_der);
        db::find_by_certificate(self.db(), &fingerprint)
            .await?
            .ok_or_else(|| {
                ServiceError::Unauthenticated(
                    "client certificate does not belong to any node".into(),
                )
            })
    }

    pub async fn renew_node_certificate(
        &self,
        node: &node::Model,
        csr_pem: &str,
    ) -> Result<String> {
        let issued = self
            .ca()
            .issue_node_certificate(csr_pem, &node.id, self.config().agent_certificate_validity)
            .map_err(|e| ServiceError::invalid_field("csr_pem", e.to_string()))?;
        let txn = self.db().begin().await?;
        let mut current = db::get_node(&txn, &node.id, true)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("node {:?} not found", node.id)))?;
        // The old certificate keeps working until the agent's next renewal, so a stream opened
        // with it is not cut off.
        current.previous_cert_fingerprint = current.cert_fingerprint.take();
        current.cert_fingerprint = Some(issued.fingerprint);
        current.cert_expire_time = Some(issued.not_after_millis);
        db::update_node(&txn, current).await?;
        txn.commit().await?;
        tracing::info!(node_id = %node.id, "renewed node certificate");
        Ok(issued.cert_pem)
    }

    /// Records a new stream session as the node's current one, with what the agent reported.
    pub async fn open_session(
        &self,
        node_id: &str,
        agent_version: &str,
        capabilities: &NodeCapabilities,
    ) -> Result<String> {
        let session_id = ids::new_id("ses");
        let found = db::open_session(
            self.db(),
            node_id,
            &session_id,
            agent_version,
            &capabilities.to_json(),
            now_millis(),
        )
        .await?;
        if !found {
            return Err(ServiceError::NotFound(format!(
                "node {node_id:?} not found"
            )));
        }
        self.notify_change();
        Ok(session_id)
    }

    /// False when another session has taken the node over; the caller should end its stream.
    pub async fn heartbeat(&self, node_id: &str, session_id: &str) -> Result<bool> {
        Ok(db::heartbeat(self.db(), node_id, session_id, now_millis()).await?)
    }

    pub async fn close_session(&self, node_id: &str, session_id: &str) -> Result<()> {
        db::close_session(self.db(), node_id, session_id).await?;
        Ok(())
    }

    /// A fingerprint of the node's desired state: it changes whenever any service's spec does.
    pub async fn desired_fingerprint(&self, node_id: &str) -> Result<Vec<(String, i64)>> {
        Ok(service_db::generations_on_node(self.db(), node_id).await?)
    }

    /// Everything the node should run, including services whose deletion is still pending.
    pub async fn desired_assignments(&self, node_id: &str) -> Result<Vec<ServiceAssignment>> {
        let node = db::get_node(self.db(), node_id, false)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("node {node_id:?} not found")))?;
        let services = service_db::live_services_on_node(self.db(), node_id).await?;
        let ids: Vec<String> = services.iter().map(|s| s.id.clone()).collect();
        let mut ports =
            super::group_by_parent(service_db::ports_of_services(self.db(), &ids).await?, |p| {
                &p.media_service_id
            });
        Ok(services
            .into_iter()
            .map(|service| ServiceAssignment {
                ports: ports.remove(&service.id).unwrap_or_default(),
                service,
                public_host: node.public_host.clone(),
                bind_address: node.bind_address.clone(),
            })
            .collect())
    }

    /// The actions to send on `session_id` now: each service's oldest unfinished action, if it
    /// is queued or was last sent on another session (at-least-once: the agent dedupes by id).
    pub async fn take_dispatches(
        &self,
        node_id: &str,
        session_id: &str,
    ) -> Result<Vec<(action::Model, ServiceAssignment)>> {
        // A session another one has replaced (on any replica) must not claim or re-send.
        let current = db::get_node(self.db(), node_id, false).await?;
        if current.and_then(|n| n.session_id).as_deref() != Some(session_id) {
            return Err(ServiceError::Unavailable(format!(
                "session {session_id} no longer holds node {node_id}"
            )));
        }
        let open = action_db::open_actions_on_node(self.db(), node_id).await?;
        let mut heads: Vec<action::Model> = Vec::new();
        for action in open {
            if heads
                .last()
                .is_some_and(|h| h.media_service_id == action.media_service_id)
            {
                continue;
            }
            heads.push(action);
        }
        let due: Vec<action::Model> = heads
            .into_iter()
            .filter(|a| {
                a.state == ActionState::Queued.as_str()
                    || a.dispatch_session.as_deref() != Some(session_id)
            })
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let assignments = self.desired_assignments(node_id).await?;
        let now = now_millis();
        let mut out = Vec::new();
        for mut action in due {
            let Some(assignment) = assignments
                .iter()
                .find(|a| a.service.id == action.media_service_id)
            else {
                continue;
            };
            if action.state == ActionState::Queued.as_str() {
                // Claimed with a conditional update, so two replicas never both send it fresh.
                let claimed = action_db::transition(
                    self.db(),
                    &action.id,
                    &[ActionState::Queued],
                    ActionState::Dispatched,
                    "",
                    now,
                )
                .await?;
                if !claimed {
                    continue;
                }
                action.state = ActionState::Dispatched.as_str().to_owned();
            } else {
                tracing::info!(action_id = %action.id, node_id, "re-sending unanswered action");
            }
            action_db::set_dispatch_session(self.db(), &action.id, session_id).await?;
            action.dispatch_session = Some(session_id.to_owned());
            out.push((action, assignment.clone()));
        }
        if !out.is_empty() {
            self.notify_change();
        }
        Ok(out)
    }

    /// Applies an agent's report on an action. A successful delete removes the service
    /// (tombstone) and frees its ports and quota; a failed one makes it operable again. (The
    /// desired state was already set when the action was queued.)
    pub async fn record_action_update(
        &self,
        node_id: &str,
        action_id: &str,
        state: ActionState,
        message: &str,
    ) -> Result<()> {
        let Some(action) = action_db::get_action(self.db(), action_id).await? else {
            tracing::warn!(action_id, node_id, "agent reported an unknown action");
            return Ok(());
        };
        if action.node_id != node_id {
            tracing::warn!(
                action_id,
                node_id,
                "agent reported another node's action; ignored"
            );
            return Ok(());
        }
        let now = now_millis();
        let txn = self.db().begin().await?;
        let from: &[ActionState] = match state {
            ActionState::Running => &[ActionState::Dispatched],
            ActionState::Succeeded | ActionState::Failed => {
                &[ActionState::Dispatched, ActionState::Running]
            }
            ActionState::Queued | ActionState::Dispatched => {
                return Err(ServiceError::invalid_field(
                    "action_update.state",
                    "agents report running, succeeded or failed",
                ));
            }
        };
        let moved = action_db::transition(&txn, action_id, from, state, message, now).await?;
        if moved
            && state == ActionState::Succeeded
            && action.kind == ActionKind::Delete.as_str()
            && let Some(mut service) =
                service_db::get_live_service(&txn, &action.media_service_id, true).await?
        {
            service.delete_time = Some(now);
            service.desired_state = DesiredState::Stopped.as_str().to_owned();
            service.generation += 1;
            service.update_time = now;
            service_db::release_ports(&txn, &service.id).await?;
            service_db::update_service(&txn, service).await?;
        }
        if moved && state == ActionState::Failed && action.kind == ActionKind::Delete.as_str() {
            reopen_after_failed_delete(&txn, &action.media_service_id, now).await?;
        }
        txn.commit().await?;
        if moved {
            tracing::info!(action_id, node_id, state = %state, "action progressed");
            self.notify_change();
        }
        Ok(())
    }

    /// Stores what the agent observed. Only the observed columns are written, and only for
    /// live services of this node, so a report can never undo a concurrent change of the
    /// service's configuration or owner.
    pub async fn record_observed(&self, node_id: &str, reports: Vec<ObservedReport>) -> Result<()> {
        for report in reports {
            let updated = service_db::update_observed(
                self.db(),
                node_id,
                &report.service_id,
                report.state.as_str(),
                &report.message,
                &report.stats_json,
                report.observe_time,
            )
            .await?;
            if !updated {
                tracing::debug!(media_service_id = %report.service_id, node_id, "report for a service not live on this node; ignored");
            }
        }
        Ok(())
    }

    /// Marks silent nodes unreachable and fails overdue actions whose node is unreachable.
    pub async fn sweep(&self) -> Result<()> {
        let now = now_millis();
        let stale_before = now - self.config().heartbeat_timeout.as_millis() as i64;
        let expired = db::expire_stale_sessions(self.db(), stale_before).await?;
        if expired > 0 {
            tracing::warn!(
                nodes = expired,
                "marked nodes unreachable: heartbeats stopped"
            );
        }
        let overdue = action_db::overdue_on_unreachable_nodes(self.db(), now).await?;
        for action in overdue {
            // A delete the agent already holds may have destroyed data (a video's files) by
            // now; failing it would misreport that and put the service back. It completes when
            // the node returns: re-sent on the next session, answered from the agent's log.
            let handed_over = action.state != ActionState::Queued.as_str();
            if handed_over && action.kind == ActionKind::Delete.as_str() {
                continue;
            }
            let txn = self.db().begin().await?;
            let open = [
                ActionState::Queued,
                ActionState::Dispatched,
                ActionState::Running,
            ];
            let failed = action_db::transition(
                &txn,
                &action.id,
                &open,
                ActionState::Failed,
                "node unreachable",
                now,
            )
            .await?;
            if failed && action.kind == ActionKind::Delete.as_str() {
                reopen_after_failed_delete(&txn, &action.media_service_id, now).await?;
            }
            txn.commit().await?;
            if failed {
                tracing::warn!(action_id = %action.id, node_id = %action.node_id, "action failed: node unreachable past its deadline");
                self.notify_change();
            }
        }
        Ok(())
    }
}

/// A failed delete leaves the service in place, operable again.
async fn reopen_after_failed_delete(
    txn: &sea_orm::DatabaseTransaction,
    service_id: &str,
    now: i64,
) -> Result<()> {
    if let Some(mut service) = service_db::get_live_service(txn, service_id, true).await? {
        service.deleting = false;
        service.update_time = now;
        service_db::update_service(txn, service).await?;
    }
    Ok(())
}
