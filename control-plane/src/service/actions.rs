//! Durable actions: queuing start / stop / restart / delete, reading and watching them.

use std::time::Duration;

use sea_orm::TransactionTrait;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::media::{DeletionPlan, being_deleted};
use super::{ControlPlane, Result, can_see_service, page_size, paginate};
use crate::clock::now_millis;
use crate::domain::{ActionKind, ActionState, DesiredState, Principal, ServiceKind, ServiceType};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::actions::ActionFilter;
use crate::persistence::entities::{action, action_transition};
use crate::persistence::{actions as db, services as service_db};

/// An action with its recorded transitions.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRecord {
    pub action: action::Model,
    pub transitions: Vec<action_transition::Model>,
}

impl ActionRecord {
    pub fn state(&self) -> ActionState {
        self.action.state.parse().unwrap_or(ActionState::Queued)
    }
}

/// How often a watcher re-reads the database for changes made by other replicas.
const WATCH_POLL: Duration = Duration::from_millis(500);

impl ControlPlane {
    /// Queues an action and returns it at once. One service's actions get consecutive
    /// sequence numbers under its row lock; the unique index backs the order up.
    pub async fn enqueue_action(
        &self,
        principal: &Principal,
        service_id: &str,
        kind: ActionKind,
    ) -> Result<ActionRecord> {
        if kind == ActionKind::Delete {
            super::require_manager(principal, "delete media services")?;
        }
        let txn = self.db().begin().await?;
        let mut service = service_db::get_live_service(&txn, service_id, true)
            .await?
            .filter(|s| can_see_service(principal, s))
            .ok_or_else(|| {
                ServiceError::NotFound(format!("media service {service_id:?} not found"))
            })?;
        if service.deleting {
            return Err(being_deleted(&service));
        }
        let now = now_millis();
        let model = action::Model {
            id: ids::new_id("act"),
            media_service_id: service.id.clone(),
            node_id: service.node_id.clone(),
            kind: kind.as_str().to_owned(),
            state: ActionState::Queued.as_str().to_owned(),
            sequence: db::next_sequence(&txn, &service.id).await?,
            requested_by: principal.audit_name(),
            error: String::new(),
            deadline: now + self.config().action_deadline.as_millis() as i64,
            dispatch_session: None,
            create_time: now,
            update_time: now,
        };
        db::insert_action(&txn, model.clone()).await?;
        // The desired state is the latest intent, recorded as the action is queued: the agent
        // reconciles towards it, so a desired-state sync racing an in-flight action can never
        // undo what the action is doing.
        match kind {
            ActionKind::Start | ActionKind::Restart => {
                service.desired_state = DesiredState::Running.as_str().to_owned()
            }
            ActionKind::Stop => service.desired_state = DesiredState::Stopped.as_str().to_owned(),
            ActionKind::Delete => service.deleting = true,
        }
        service.generation += 1;
        service.update_time = now;
        service_db::update_service(&txn, service).await?;
        txn.commit().await?;
        self.notify_change();
        tracing::info!(action_id = %model.id, media_service_id = %model.media_service_id, kind = %kind, "queued action");
        self.action_record(model).await
    }

    /// Deletion: video services need explicit confirmation; a dry run only returns the plan.
    pub async fn delete_media_service(
        &self,
        principal: &Principal,
        service_id: &str,
        confirm_permanent_deletion: bool,
        validate_only: bool,
    ) -> Result<(DeletionPlan, Option<ActionRecord>)> {
        super::require_manager(principal, "delete media services")?;
        let service = self.visible_service(principal, service_id).await?;
        let ports =
            service_db::ports_of_services(self.db(), std::slice::from_ref(&service.id)).await?;
        // A dry run answers what the real call would: a deletion already queued is refused.
        if service.deleting {
            return Err(being_deleted(&service));
        }
        let plan = self.deletion_plan(&service, &ports)?;
        if validate_only {
            return Ok((plan, None));
        }
        let service_type: ServiceType = service
            .service_type
            .parse()
            .map_err(ServiceError::Internal)?;
        if service_type.kind() == ServiceKind::Video && !confirm_permanent_deletion {
            return Err(ServiceError::precondition(
                "PERMANENT_DELETION_UNCONFIRMED",
                format!("media_service:{}", service.id),
                format!(
                    "deleting video service {} permanently destroys its uploaded video files and HLS output; \
                     repeat with confirm_permanent_deletion to proceed (validate_only shows the plan)",
                    service.id
                ),
            ));
        }
        let record = self
            .enqueue_action(principal, service_id, crate::domain::ActionKind::Delete)
            .await?;
        Ok((plan, Some(record)))
    }

    async fn action_record(&self, action: action::Model) -> Result<ActionRecord> {
        let transitions = db::transitions(self.db(), std::slice::from_ref(&action.id)).await?;
        Ok(ActionRecord {
            action,
            transitions,
        })
    }

    pub async fn get_action(&self, principal: &Principal, id: &str) -> Result<ActionRecord> {
        let not_found = || ServiceError::NotFound(format!("action {id:?} not found"));
        let action = db::get_action(self.db(), id).await?.ok_or_else(not_found)?;
        let service = service_db::get_any_service(self.db(), &action.media_service_id).await?;
        if !service.is_some_and(|s| can_see_service(principal, &s)) {
            return Err(not_found());
        }
        let record = self.action_record(action).await?;
        self.redacted(principal, record).await
    }

    /// Hides who asked for an action when that account is outside the caller's tenancy (the
    /// service may have changed hands since).
    async fn redacted(
        &self,
        principal: &Principal,
        mut record: ActionRecord,
    ) -> Result<ActionRecord> {
        record.action.requested_by = self
            .visible_actor(principal, &record.action.requested_by)
            .await?;
        Ok(record)
    }

    pub async fn list_actions(
        &self,
        principal: &Principal,
        media_service_id: Option<&str>,
        state: Option<ActionState>,
        newest_first: bool,
        page_token: &str,
        requested_size: i32,
    ) -> Result<(Vec<ActionRecord>, String)> {
        let size = page_size(requested_size)?;
        let after = super::decode_page_token(page_token)?;
        let mut filter = ActionFilter {
            media_service_id: media_service_id.map(str::to_owned),
            state,
            newest_first,
            ..Default::default()
        };
        if let Some(service_id) = media_service_id {
            let visible = service_db::get_any_service(self.db(), service_id)
                .await?
                .is_some_and(|s| can_see_service(principal, &s));
            if !visible {
                return Err(ServiceError::NotFound(format!(
                    "media service {service_id:?} not found"
                )));
            }
        }
        match principal {
            Principal::Admin => {}
            Principal::Reseller { id } => filter.reseller_id = Some(id.clone()),
            Principal::Customer { id, .. } => filter.customer_id = Some(id.clone()),
        }
        let rows = db::list_actions(self.db(), &filter, after.as_deref(), size + 1).await?;
        let (rows, token) = paginate(rows, size, |a| &a.id);
        let ids: Vec<String> = rows.iter().map(|a| a.id.clone()).collect();
        let mut transitions =
            super::group_by_parent(db::transitions(self.db(), &ids).await?, |t| &t.action_id);
        let mut records = Vec::with_capacity(rows.len());
        for action in rows {
            let record = ActionRecord {
                transitions: transitions.remove(&action.id).unwrap_or_default(),
                action,
            };
            records.push(self.redacted(principal, record).await?);
        }
        Ok((records, token))
    }

    /// The action now, then again on every change, until it has succeeded or failed.
    pub async fn watch_action(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<ReceiverStream<Result<ActionRecord>>> {
        let first = self.get_action(principal, id).await?;
        let (tx, rx) = mpsc::channel(16);
        let control_plane = self.clone();
        let mut changes = self.subscribe_changes();
        let shutdown = self.shutdown_token().clone();
        let principal = principal.clone();
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() || last.state().is_terminal() {
                return;
            }
            loop {
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                    _ = tx.closed() => return,
                    _ = shutdown.cancelled() => return,
                }
                // Through the same checks as a GetAction: a service that has moved out of the
                // caller's tenancy stops being visible mid-watch too.
                let current = control_plane.get_action(&principal, &last.action.id).await;
                match current {
                    Ok(record) if record != last => {
                        let done = record.state().is_terminal();
                        last = record.clone();
                        if tx.send(Ok(record)).await.is_err() || done {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
