//! Node identity (joining, certificate authentication and renewal) and the dispatcher's
//! background work: this replica's lease, notices from other replicas, and the deadline sweep.

use super::dispatch::hub::ActionDelta;
use super::{ControlPlane, Result};
use crate::clock::now_millis;
use crate::domain::{ActionKind, ActionState};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::dispatch::{self as db_dispatch, Which};
use crate::persistence::entities::node;
use crate::persistence::nodes as db;

pub struct Joined {
    pub node: node::Model,
    pub certificate_pem: String,
}

impl ControlPlane {
    /// Exchanges a valid, unused, unexpired join token for a node certificate. The token is
    /// consumed in the same transaction, so a replay (even a concurrent one) is refused.
    #[tracing::instrument(skip_all)]
    pub async fn join_node(&self, token: &str, csr_pem: &str) -> Result<Joined> {
        super::retry_aborted("join_node", || self.join_node_once(token, csr_pem)).await
    }

    async fn join_node_once(&self, token: &str, csr_pem: &str) -> Result<Joined> {
        let refused = || {
            ServiceError::Unauthenticated("join token is invalid, expired or already used".into())
        };
        let (secret, _) = castplane_proto::join_token::parse(token).ok_or_else(refused)?;
        let txn = self.begin().await?;
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
        db::record_join(
            &txn,
            &node.id,
            &issued.fingerprint,
            issued.not_after_millis,
            now,
        )
        .await?;
        txn.commit().await?;
        node.join_token_hash = None;
        node.join_token_expire_time = None;
        node.join_time = Some(now);
        node.previous_cert_fingerprint = None;
        node.cert_fingerprint = Some(issued.fingerprint);
        node.cert_expire_time = Some(issued.not_after_millis);
        tracing::info!(node_id = %node.id, node_name = %node.name, "node joined");
        Ok(Joined {
            node,
            certificate_pem: issued.cert_pem,
        })
    }

    /// The node a presented client certificate belongs to. The certificate chain was already
    /// verified against the CA in the TLS handshake; this checks it is the node's current (or,
    /// during renewal, previous) certificate, so a re-joined node's old certificate stops working.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate_node(&self, cert_der: &[u8]) -> Result<node::Model> {
        let fingerprint = crate::pki::fingerprint_der(cert_der);
        db::find_by_certificate(self.reader(), &fingerprint)
            .await?
            .ok_or_else(|| {
                ServiceError::Unauthenticated(
                    "client certificate does not belong to any node".into(),
                )
            })
    }

    #[tracing::instrument(skip_all)]
    pub async fn renew_node_certificate(
        &self,
        node: &node::Model,
        csr_pem: &str,
    ) -> Result<String> {
        super::retry_aborted("renew_node_certificate", || {
            self.renew_node_certificate_once(node, csr_pem)
        })
        .await
    }

    async fn renew_node_certificate_once(
        &self,
        node: &node::Model,
        csr_pem: &str,
    ) -> Result<String> {
        let issued = self
            .ca()
            .issue_node_certificate(csr_pem, &node.id, self.config().agent_certificate_validity)
            .map_err(|e| ServiceError::invalid_field("csr_pem", e.to_string()))?;
        let txn = self.begin().await?;
        let current = db::get_node(&txn, &node.id, true)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("node {:?} not found", node.id)))?;
        db::record_renewal(
            &txn,
            &node.id,
            current.cert_fingerprint,
            &issued.fingerprint,
            issued.not_after_millis,
        )
        .await?;
        txn.commit().await?;
        tracing::info!(node_id = %node.id, "renewed node certificate");
        Ok(issued.cert_pem)
    }

    /// Runs the dispatcher's background work until shutdown: this replica's lease, the group
    /// commit, change notices from other replicas (PostgreSQL), and the deadline sweep.
    /// Returns once the lease is held and notices are being received, so nothing committed
    /// afterwards is missed.
    pub async fn start_dispatcher(&self) -> Result<()> {
        let dispatcher = self.dispatcher();
        let config = self.dispatch_config().clone();
        db_dispatch::register_replica(self.db(), self.replica_id(), config.lease_ms()).await?;
        if self.persistence().is_postgres() {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let listening = crate::persistence::notify::listen(
                self.db(),
                self.replica_id().to_owned(),
                tx,
                self.shutdown_token().clone(),
            )
            .await?;
            let this = self.clone();
            dispatcher.spawn(async move {
                while let Some(received) = rx.recv().await {
                    this.received(received).await;
                }
                let _ = listening.await;
            });
        }
        if let Some(writes) = dispatcher.take_writes() {
            dispatcher.spawn(super::dispatch::run_writer(self.clone(), writes));
        }
        dispatcher.spawn(self.clone().keep_lease());
        dispatcher.spawn(self.clone().sweep_until_shutdown());
        tracing::info!(replica_id = %self.replica_id(), "dispatcher started");
        Ok(())
    }

    /// Renews this replica's lease; if it ever lapsed, other replicas may have declared its
    /// nodes unreachable, so every session here ends and its agent reconnects.
    async fn keep_lease(self) {
        let config = self.dispatch_config().clone();
        let mut ticker = tokio::time::interval(config.replica_lease / 3);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.shutdown_token().clone();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => break,
            }
            match db_dispatch::renew_replica(self.db(), self.replica_id(), config.lease_ms()).await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(replica_id = %self.replica_id(), "this replica's lease lapsed; ending its sessions and taking a new lease");
                    self.dispatcher().close_all();
                    if let Err(err) = db_dispatch::renew_replica_forced(
                        self.db(),
                        self.replica_id(),
                        config.lease_ms(),
                    )
                    .await
                    {
                        tracing::warn!(error = %err, "could not take a new lease");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "could not renew this replica's lease"),
            }
        }
        // Shutting down: give the lease up so this replica's nodes count as unreachable at
        // once and their agents' reconnects elsewhere are not fenced by a live lease.
        if let Err(err) = db_dispatch::retire_replica(self.db(), self.replica_id()).await {
            tracing::warn!(error = %err, "could not give up this replica's lease");
        }
    }

    async fn sweep_until_shutdown(self) {
        let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.shutdown_token().clone();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(err) = self.sweep().await {
                tracing::warn!(error = %err, "deadline sweep failed");
            }
            match db_dispatch::connected_nodes(self.reader()).await {
                Ok(connected) => {
                    self.dispatcher().metrics().connected_agents.set(connected);
                }
                Err(err) => tracing::debug!(error = %err, "could not count connected agents"),
            }
        }
    }

    /// Marks unreachable the nodes whose replica died, and fails actions whose node has been
    /// unreachable past their deadline — saying exactly what that means for each.
    pub async fn sweep(&self) -> Result<()> {
        // Account deletions whose last delete succeeded while no replica finished them (a
        // restart in between): an index lookup that finds nothing almost always.
        if let Err(err) = self.finish_account_deletions().await {
            tracing::warn!(error = %err, "could not finish account deletions");
        }
        let config = self.dispatch_config().clone();
        let txn = self.begin().await?;
        let expired = db_dispatch::expire_dead_sessions(&txn, config.deadline_ms()).await?;
        txn.commit().await?;
        if !expired.is_empty() {
            tracing::warn!(
                nodes = expired.len(),
                "marked nodes unreachable: their control-plane replica stopped holding its lease"
            );
        }
        let overdue = db_dispatch::overdue_actions(self.reader(), config.skew_ms()).await?;
        if overdue.undelivered.is_empty()
            && overdue.unacknowledged.is_empty()
            && overdue.running.is_empty()
        {
            return Ok(());
        }
        let deadline = humantime(config.action_deadline);
        let now = now_millis();
        let txn = self.begin().await?;
        let mut changes = super::Changes::default();
        let mut touched: std::collections::BTreeMap<String, Vec<String>> = Default::default();

        let never_sent = format!(
            "node unreachable for {deadline}: the action was never sent to it and will not be"
        );
        let never_confirmed = format!(
            "node unreachable for {deadline}: the action was sent but the node never confirmed \
             it; a node does not start an action that reaches it after its deadline, so it has \
             not taken effect (if the node had started it, its result is recorded as this \
             action's late result)"
        );
        let while_running = format!(
            "node unreachable for {deadline} while the action was running: it may still \
             complete on the node, and if it does its result is recorded as this action's late \
             result"
        );
        let groups = [
            (&overdue.undelivered, ActionState::Queued, &never_sent),
            (
                &overdue.unacknowledged,
                ActionState::Dispatched,
                &never_confirmed,
            ),
            (&overdue.running, ActionState::Running, &while_running),
        ];
        for (actions, from, message) in groups {
            let ids: Vec<String> = actions.iter().map(|a| a.id.clone()).collect();
            let moved = db_dispatch::transition_many(
                &txn,
                Which::Ids(&ids),
                &[from],
                ActionState::Failed,
                message,
                now,
            )
            .await?;
            for action in moved {
                tracing::warn!(action_id = %action.id, node_id = %action.node_id, reason = %message, "action failed: node unreachable past its deadline");
                self.dispatcher().metrics().finished(&action);
                // What was never started has not taken effect: its intent gives way to the
                // one before (a delete leaves the service operable).
                if from == ActionState::Dispatched {
                    if action.kind == ActionKind::Delete {
                        db_dispatch::reopen_service(&txn, &action.media_service_id, now).await?;
                    } else if let Some(previous) = action.previous_desired_state {
                        db_dispatch::set_desired(
                            &txn,
                            std::slice::from_ref(&action.media_service_id),
                            previous,
                            now,
                        )
                        .await?;
                    }
                    touched
                        .entry(action.node_id.clone())
                        .or_default()
                        .push(action.media_service_id.clone());
                }
                changes.actions.push(ActionDelta { action });
            }
        }
        for (node, services) in &touched {
            db_dispatch::touch_services(&txn, node, services).await?;
            changes.nodes.insert(node.clone());
        }
        self.commit(txn, changes).await
    }
}

const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// "10 min", "90 s": deadlines as people say them.
fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}
