//! Durable actions: queuing start / stop / restart / delete, reading and watching them.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::media::{DeletionPlan, being_deleted};
use super::{Changes, ControlPlane, Result, can_see_service, page_size};
use crate::clock::now_millis;
use crate::domain::{ActionKind, ActionState, Principal, ServiceKind};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::actions::ActionFilter;
use crate::persistence::dispatch as dispatch_db;
use crate::persistence::entities::action;
use crate::persistence::{actions as db, services as service_db};

/// An action as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRecord {
    pub action: action::Model,
}

/// One step of an action's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub state: ActionState,
    pub time: i64,
    pub message: String,
}

impl ActionRecord {
    pub fn state(&self) -> ActionState {
        self.action.state
    }

    /// Its steps so far, oldest first. The history is linear (queued → dispatched → running →
    /// succeeded | failed, any step but the first possibly skipped), so each step is a time on
    /// the row rather than a row of its own.
    pub fn transitions(&self) -> Vec<Transition> {
        let a = &self.action;
        let step = |state, time: Option<i64>, message: &str| {
            time.map(|time| Transition {
                state,
                time,
                message: message.to_owned(),
            })
        };
        [
            step(ActionState::Queued, Some(a.create_time), ""),
            step(ActionState::Dispatched, a.dispatch_time, ""),
            step(ActionState::Running, a.run_time, ""),
            a.state
                .is_terminal()
                .then(|| step(a.state, a.finish_time, &a.error))
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl ControlPlane {
    /// Queues an action and returns it at once. One service's actions get consecutive
    /// sequence numbers under its row lock; the unique index backs the order up. Only the
    /// node's session is woken. The service's desired state changes when the action is
    /// dispatched (and is put back if it fails), not here: an action that never reaches its
    /// node changes nothing.
    ///
    /// The action keeps the trace context of this span (the caller's trace, continued), so its
    /// dispatch — on whichever replica holds the node's session, whenever the node connects —
    /// and the agent's execution land in the trace of the request that queued it. When this
    /// replica exports no traces, the caller's own `traceparent` is kept instead, so the
    /// agent still continues the caller's trace.
    #[tracing::instrument(
        name = "queue action",
        skip_all,
        fields(media_service_id = %service_id, kind = %kind, action_id = tracing::field::Empty)
    )]
    pub async fn enqueue_action(
        &self,
        principal: &Principal,
        service_id: &str,
        kind: ActionKind,
        trace_context: &str,
    ) -> Result<ActionRecord> {
        super::retry_aborted("enqueue_action", || {
            self.enqueue_action_once(principal, service_id, kind, trace_context)
        })
        .await
    }

    async fn enqueue_action_once(
        &self,
        principal: &Principal,
        service_id: &str,
        kind: ActionKind,
        trace_context: &str,
    ) -> Result<ActionRecord> {
        if kind == ActionKind::Delete {
            super::require_manager(principal, "delete media services")?;
        }
        let not_found =
            || ServiceError::NotFound(format!("media service {service_id:?} not found"));
        let txn = self.begin().await?;
        // Refusals below drop the transaction, which rolls the sequence number back.
        let service = dispatch_db::next_action_sequence(&txn, service_id)
            .await?
            .filter(|s| can_see_service(principal, s))
            .ok_or_else(not_found)?;
        if service.deleting {
            return Err(being_deleted(&service));
        }
        if kind == ActionKind::Delete {
            service_db::mark_deleting(&txn, &service.id).await?;
        }
        let now = now_millis();
        let model = action::Model {
            id: ids::new_id("act"),
            media_service_id: service.id.clone(),
            node_id: service.node_id.clone(),
            kind,
            state: ActionState::Queued,
            sequence: service.action_sequence,
            requested_by: principal.audit_name(),
            error: String::new(),
            create_time: now,
            update_time: now,
            dispatch_generation: None,
            not_after: None,
            expire_time: None,
            previous_desired_state: None,
            expired: false,
            late_state: None,
            late_message: String::new(),
            trace_context: action_trace_context(trace_context),
            dispatch_time: None,
            run_time: None,
            finish_time: None,
        };
        let model =
            dispatch_db::insert_action(&txn, &model, self.dispatch_config().deadline_ms()).await?;
        let mut changes = Changes::default();
        changes.queued.insert(model.node_id.clone());
        if kind == ActionKind::Delete {
            // The node's session must see the service as being deleted.
            dispatch_db::touch_services(
                &txn,
                &model.node_id,
                std::slice::from_ref(&model.media_service_id),
            )
            .await?;
            changes.nodes.insert(model.node_id.clone());
        }
        self.commit(txn, changes).await?;
        tracing::Span::current().record("action_id", model.id.as_str());
        tracing::info!(action_id = %model.id, media_service_id = %model.media_service_id, kind = %kind, "queued action");
        self.redacted(principal, ActionRecord { action: model })
            .await
    }

    /// Deletion: video services need explicit confirmation; a dry run only returns the plan.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), service_id = %service_id))]
    pub async fn delete_media_service(
        &self,
        principal: &Principal,
        service_id: &str,
        confirm_permanent_deletion: bool,
        validate_only: bool,
        trace_context: &str,
    ) -> Result<(DeletionPlan, Option<ActionRecord>)> {
        super::require_manager(principal, "delete media services")?;
        let service = self.visible_service(principal, service_id).await?;
        let ports =
            service_db::ports_of_services(self.db(), std::slice::from_ref(&service.id)).await?;
        // A dry run answers what the real call would: a deletion already queued is refused.
        if service.deleting {
            return Err(being_deleted(&service));
        }
        let video_files = self.video_file_names(&service.id).await?;
        let plan = self.deletion_plan(&service, &ports, &video_files)?;
        if validate_only {
            return Ok((plan, None));
        }
        let service_type = service.service_type;
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
            .enqueue_action(principal, service_id, ActionKind::Delete, trace_context)
            .await?;
        Ok((plan, Some(record)))
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn get_action(&self, principal: &Principal, id: &str) -> Result<ActionRecord> {
        Ok(self.visible_action(principal, id).await?.0)
    }

    /// The action and the owner of its service, if the caller may see it.
    async fn visible_action(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<(ActionRecord, (String, String))> {
        let not_found = || ServiceError::NotFound(format!("action {id:?} not found"));
        let action = db::get_action(self.reader(), id)
            .await?
            .ok_or_else(not_found)?;
        let service = service_db::get_any_service(self.reader(), &action.media_service_id)
            .await?
            .filter(|s| can_see_service(principal, s))
            .ok_or_else(not_found)?;
        let record = self.redacted(principal, ActionRecord { action }).await?;
        Ok((record, (service.reseller_id, service.customer_id)))
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

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
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
        let listing = format!(
            "actions|{}|{}|{}",
            principal.audit_name(),
            media_service_id.unwrap_or_default(),
            state.map(|s| s.as_str()).unwrap_or_default()
        );
        let after = self.page_after(&listing, page_token)?;
        let mut filter = ActionFilter {
            media_service_id: media_service_id.map(str::to_owned),
            state,
            newest_first,
            ..Default::default()
        };
        if let Some(service_id) = media_service_id {
            let visible = service_db::get_any_service(self.reader(), service_id)
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
        let rows = db::list_actions(self.reader(), &filter, after.as_deref(), size + 1).await?;
        let (rows, token) = self.paginate(&listing, rows, size, |a| &a.id);
        let mut records = Vec::with_capacity(rows.len());
        for action in rows {
            records.push(self.redacted(principal, ActionRecord { action }).await?);
        }
        Ok((records, token))
    }

    /// The action now, then again on every change, until it has succeeded or failed. Every
    /// watcher of one action on this replica shares one fan-out (see `dispatch::hub`); only
    /// the first answer is read from the database.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn watch_action(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<ReceiverStream<Result<ActionRecord>>> {
        // Subscribed before the read, so no change between the two is missed.
        let subscription = self.hub().subscribe(id);
        let (first, first_owner) = self.visible_action(principal, id).await?;
        let requested_by = first.action.requested_by.clone();
        let mut seen_epoch = self.owner_epoch();
        subscription.offer(first.clone());
        let (tx, rx) = mpsc::channel(16);
        let shutdown = self.shutdown_token().clone();
        let principal = principal.clone();
        let control_plane = self.clone();
        tokio::spawn(async move {
            let mut rx_records = subscription.rx.clone();
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() || last.state().is_terminal() {
                return;
            }
            let mut owner = first_owner;
            loop {
                tokio::select! {
                    changed = rx_records.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    () = shutdown.cancelled() => return,
                }
                let Some(current) = rx_records.borrow_and_update().clone() else {
                    continue;
                };
                let mut record = (*current).clone();
                record.action.requested_by = requested_by.clone();
                if record == last {
                    continue;
                }
                // A service that has moved out of the caller's tenancy stops being visible
                // mid-watch too. Owners change rarely: the service is re-read only after one did.
                let epoch = control_plane.owner_epoch();
                if epoch != seen_epoch {
                    seen_epoch = epoch;
                    match service_db::get_any_service(
                        control_plane.reader(),
                        &record.action.media_service_id,
                    )
                    .await
                    {
                        Ok(Some(s)) => owner = (s.reseller_id.clone(), s.customer_id.clone()),
                        Ok(None) => {}
                        Err(err) => {
                            let _ = tx.send(Err(err.into())).await;
                            return;
                        }
                    }
                }
                if !super::can_see_owner(&principal, &owner.0, &owner.1) {
                    let _ = tx
                        .send(Err(ServiceError::NotFound(format!(
                            "action {:?} not found",
                            record.action.id
                        ))))
                        .await;
                    return;
                }
                let done = record.state().is_terminal();
                last = record.clone();
                if tx.send(Ok(record)).await.is_err() || done {
                    return;
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// Re-reads actions another replica changed, for the watchers here.
    pub(crate) async fn refresh_actions(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let loaded = async {
            let actions = dispatch_db::actions_by_id(self.reader(), ids).await?;
            Ok::<_, ServiceError>(
                actions
                    .into_iter()
                    .map(|action| ActionRecord { action })
                    .collect::<Vec<_>>(),
            )
        };
        match loaded.await {
            Ok(records) => self.hub().refresh(records),
            Err(err) => {
                tracing::warn!(error = %err, "could not re-read actions for their watchers")
            }
        }
    }
}

/// The trace context an action is queued with: the current span's, else the caller's.
fn action_trace_context(caller: &str) -> String {
    let own = castplane_telemetry::current_traceparent();
    if own.is_empty() {
        traceparent_or_empty(caller)
    } else {
        own
    }
}

/// A W3C `traceparent` (version 00) as given, or nothing: it is stored and sent on, so
/// nothing else is kept.
fn traceparent_or_empty(value: &str) -> String {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2);
    if valid {
        value.to_ascii_lowercase()
    } else {
        String::new()
    }
}
