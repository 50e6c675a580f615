//! Group commit: every durable write the dispatcher makes on this replica — agents' results
//! and observations, and claims of queued actions — goes through one task that takes whatever
//! has arrived and commits it in one transaction. Under load a commit carries hundreds of
//! writes; a result and the claim of the same service's next action share one.
//!
//! A batch is fenced per node: items from a session that no longer holds its node are dropped.
//! When a batch cannot be committed, the sessions that contributed to it are closed: their
//! agents reconnect, and everything unanswered is sent and answered again (at-least-once; the
//! agent's log answers repeats).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::sync::mpsc;

use super::hub::ActionDelta;
use super::{SPECS_CHANGED, SessionEvent};
use crate::clock::now_millis;
use crate::domain::{ActionKind, ActionState, DesiredState};
use crate::persistence::PersistenceError;
use crate::persistence::dispatch::{self as db, Observation, Which};
use crate::persistence::entities::{action, media_service};
use crate::persistence::media as media_db;
use crate::persistence::notify::{self, NoticeKind};
use crate::service::ControlPlane;

/// Most items one transaction takes.
const MAX_BATCH: usize = 2048;
/// A batch that loses a serialization conflict (PostgreSQL) is tried again this often.
const ATTEMPTS: usize = 3;

pub enum Write {
    /// An agent's report on an action (RUNNING, SUCCEEDED or FAILED).
    Result {
        node_id: String,
        generation: i64,
        action_id: String,
        state: ActionState,
        message: String,
    },
    Observe {
        generation: i64,
        observation: Observation,
    },
    /// Claim whatever is due on the node.
    Claim { node_id: String, generation: i64 },
}

impl Write {
    fn node(&self) -> (&str, i64) {
        match self {
            Write::Result {
                node_id,
                generation,
                ..
            }
            | Write::Claim {
                node_id,
                generation,
            } => (node_id, *generation),
            Write::Observe {
                generation,
                observation,
            } => (&observation.node_id, *generation),
        }
    }
}

/// (action id, node id, session generation) of an agent's report.
type Fenced = (String, String, i64);

/// The intent an action records when it is claimed.
pub fn intent_of(kind: ActionKind) -> Option<DesiredState> {
    match kind {
        ActionKind::Start | ActionKind::Restart => Some(DesiredState::Running),
        ActionKind::Stop => Some(DesiredState::Stopped),
        ActionKind::Delete => None,
    }
}

/// Commits until shutdown, then what is still queued.
pub async fn run(control_plane: ControlPlane, mut rx: mpsc::Receiver<Write>) {
    let shutdown = control_plane.shutdown_token().clone();
    let mut batch = Vec::with_capacity(64);
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            () = shutdown.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        commit_batch(&control_plane, std::mem::take(&mut batch)).await;
    }
}

/// What a committed batch hands on once it is durable.
#[derive(Default)]
struct Outcome {
    /// Sessions whose writes were fenced off: a newer session holds their node.
    replaced: BTreeSet<(String, i64)>,
    deltas: Vec<ActionDelta>,
    /// Per node: the actions claimed for it, and the services whose intent the claims changed.
    claimed: BTreeMap<String, (Vec<action::Model>, Vec<media_service::Model>)>,
    /// Nodes whose services changed (tombstones, rolled-back intents).
    touched: BTreeSet<String>,
}

async fn commit_batch(control_plane: &ControlPlane, batch: Vec<Write>) {
    let nodes: BTreeMap<String, i64> = batch
        .iter()
        .map(|w| {
            let (node, generation) = w.node();
            (node.to_owned(), generation)
        })
        .collect();
    let mut last_error = None;
    for attempt in 1..=ATTEMPTS {
        match try_commit(control_plane, &batch).await {
            Ok(outcome) => {
                publish(control_plane, outcome);
                return;
            }
            Err(PersistenceError::Aborted(reason)) if attempt < ATTEMPTS => {
                tracing::debug!(attempt, %reason, "dispatch batch lost a conflict; retrying");
            }
            Err(err) => {
                last_error = Some(err);
                break;
            }
        }
    }
    let reason = last_error.map_or_else(|| "conflicts".to_owned(), |e| e.to_string());
    tracing::warn!(error = %reason, items = batch.len(), "could not record agents' reports; closing their sessions so they are sent again");
    let dispatcher = control_plane.dispatcher();
    for (node, generation) in nodes {
        dispatcher.deliver(
            &node,
            generation,
            SessionEvent::Failed(format!("recording its reports failed: {reason}")),
        );
    }
}

async fn try_commit(
    control_plane: &ControlPlane,
    batch: &[Write],
) -> Result<Outcome, PersistenceError> {
    let persistence = control_plane.persistence();
    let validity = control_plane.dispatch_config().not_after_ms();
    let now = now_millis();
    let txn = persistence.begin().await?;
    let node_ids: Vec<&str> = batch.iter().map(|w| w.node().0).collect();
    let fenced = db::fence(&txn, &node_ids).await?;
    let current = |node: &str, generation: i64| fenced.get(node) == Some(&generation);

    let mut observations: HashMap<&str, &Observation> = HashMap::new();
    let mut running: Vec<Fenced> = Vec::new();
    // (state, message) → reports, so one statement moves all that share them.
    let mut terminal: BTreeMap<(&'static str, &str), Vec<Fenced>> = BTreeMap::new();
    let mut claims: BTreeMap<String, i64> = BTreeMap::new();
    let mut replaced = BTreeSet::new();
    for item in batch {
        let (node, generation) = item.node();
        if !current(node, generation) {
            tracing::debug!(
                node_id = node,
                generation,
                "dropping a write from a replaced session"
            );
            replaced.insert((node.to_owned(), generation));
            continue;
        }
        match item {
            Write::Observe { observation, .. } => {
                let newer = observations
                    .get(observation.service_id.as_str())
                    .is_none_or(|o| o.observe_time <= observation.observe_time);
                if newer {
                    observations.insert(&observation.service_id, observation);
                }
            }
            Write::Result {
                action_id,
                state,
                message,
                ..
            } => {
                let key = (action_id.clone(), node.to_owned(), generation);
                match state {
                    ActionState::Running => running.push(key),
                    ActionState::Succeeded | ActionState::Failed => terminal
                        .entry((state.as_str(), message.as_str()))
                        .or_default()
                        .push(key),
                    ActionState::Queued | ActionState::Dispatched => {}
                }
            }
            Write::Claim { .. } => {
                claims.insert(node.to_owned(), generation);
            }
        }
    }

    let observations: Vec<Observation> = observations.into_values().cloned().collect();
    db::upsert_observations(&txn, &observations).await?;

    let mut outcome = Outcome {
        replaced,
        ..Outcome::default()
    };
    let mut changed: BTreeMap<String, action::Model> = BTreeMap::new();

    for moved in db::transition_many(
        &txn,
        Which::Fenced(&running),
        &[ActionState::Dispatched],
        ActionState::Running,
        "",
        now,
    )
    .await?
    {
        changed.insert(moved.id.clone(), moved);
    }

    let mut finished: Vec<action::Model> = Vec::new();
    for ((state, message), keys) in &terminal {
        let state: ActionState = state.parse().map_err(PersistenceError::Corrupt)?;
        let moved = db::transition_many(
            &txn,
            Which::Fenced(keys),
            &[ActionState::Dispatched, ActionState::Running],
            state,
            message,
            now,
        )
        .await?;
        let moved_ids: BTreeSet<&str> = moved.iter().map(|a| a.id.as_str()).collect();
        for (action_id, node, _) in keys {
            if moved_ids.contains(action_id.as_str()) {
                continue;
            }
            // Not open: a repeat of a result already recorded, or a result after the action
            // failed — which is kept, visibly, beside the failure.
            if let Some(late) =
                db::record_late_result(&txn, action_id, node, state, message, now).await?
            {
                tracing::warn!(action_id = %late.id, node_id = %node, late_state = %state, "a result arrived after its action had failed; recorded as its late result");
                changed.insert(late.id.clone(), late);
            }
        }
        for action in moved {
            changed.insert(action.id.clone(), action.clone());
            finished.push(action);
        }
    }

    let mut touched: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for action in &finished {
        match (action.kind, action.state) {
            (ActionKind::Delete, ActionState::Succeeded) => {
                if db::tombstone_service(&txn, &action.media_service_id, now)
                    .await?
                    .is_some()
                {
                    // A confirmed delete destroys the service's video files: the agent has
                    // removed its directory, and the store lets go of bytes nothing else names.
                    let hashes =
                        media_db::delete_videos_of_service(&txn, &action.media_service_id).await?;
                    for sha256 in &hashes {
                        if media_db::lock_blob(&txn, sha256).await?.is_some()
                            && !media_db::blob_referenced(&txn, sha256).await?
                        {
                            media_db::delete_blob(&txn, sha256).await?;
                        }
                    }
                    tracing::info!(media_service_id = %action.media_service_id, video_blobs = hashes.len(), "media service deleted");
                }
            }
            (ActionKind::Delete, _) => {
                db::reopen_service(&txn, &action.media_service_id, now).await?
            }
            (_, ActionState::Failed) => {
                // What failed has not taken effect: its intent gives way to the one before.
                if let Some(previous) = action.previous_desired_state {
                    db::set_desired(
                        &txn,
                        std::slice::from_ref(&action.media_service_id),
                        previous,
                        now,
                    )
                    .await?;
                }
            }
            _ => continue,
        }
        touched
            .entry(action.node_id.clone())
            .or_default()
            .push(action.media_service_id.clone());
    }
    for (node, services) in &touched {
        db::touch_services(&txn, node, services).await?;
        outcome.touched.insert(node.clone());
    }
    // A finished action may have made its service's next one due: claim it in this commit.
    for action in &finished {
        if let Some(generation) = fenced.get(&action.node_id) {
            claims.entry(action.node_id.clone()).or_insert(*generation);
        }
    }

    for (node, generation) in &claims {
        if !current(node, *generation) {
            continue;
        }
        let claimed = db::claim_heads(&txn, node, *generation, now, validity).await?;
        if claimed.is_empty() {
            continue;
        }
        let mut intents: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        for action in &claimed {
            changed.insert(action.id.clone(), action.clone());
            if let Some(desired) = intent_of(action.kind) {
                intents
                    .entry(desired.as_str())
                    .or_default()
                    .push(action.media_service_id.clone());
            }
        }
        let mut services = Vec::new();
        for (desired, ids) in intents {
            let desired: DesiredState = desired.parse().map_err(PersistenceError::Corrupt)?;
            services.extend(db::set_desired(&txn, &ids, desired, now).await?);
        }
        outcome.claimed.insert(node.clone(), (claimed, services));
    }

    let changed_ids: Vec<String> = changed.keys().cloned().collect();
    notify::send(
        &txn,
        control_plane.replica_id(),
        NoticeKind::ActionsChanged,
        &changed_ids,
    )
    .await?;
    txn.commit().await?;

    outcome.deltas = changed
        .into_values()
        .map(|action| ActionDelta { action })
        .collect();
    Ok(outcome)
}

fn publish(control_plane: &ControlPlane, outcome: Outcome) {
    // A succeeded delete may have been the last an account deletion waited for.
    let deleted_service = outcome.deltas.iter().any(|d| {
        d.action.kind == ActionKind::Delete
            && d.action.state == ActionState::Succeeded
            && d.action.late_state.is_none()
    });
    if deleted_service {
        let finisher = control_plane.clone();
        control_plane.dispatcher().spawn(async move {
            if let Err(err) = finisher.finish_account_deletions().await {
                tracing::warn!(error = %err, "could not finish account deletions");
            }
        });
    }
    let metrics = control_plane.dispatcher().metrics();
    for delta in &outcome.deltas {
        trace_transition(&delta.action);
        if delta.action.state.is_terminal() && delta.action.late_state.is_none() {
            metrics.finished(&delta.action);
            tracing::info!(action_id = %delta.action.id, node_id = %delta.action.node_id, state = %delta.action.state, "action finished");
        }
    }
    control_plane.hub().apply(&outcome.deltas);
    let dispatcher = control_plane.dispatcher();
    for (node, generation) in outcome.replaced {
        dispatcher.deliver(&node, generation, SessionEvent::Replaced);
    }
    for (node, (actions, services)) in outcome.claimed {
        let generation = actions
            .first()
            .and_then(|a| a.dispatch_generation)
            .unwrap_or_default();
        dispatcher.deliver(
            &node,
            generation,
            SessionEvent::Claimed { actions, services },
        );
    }
    for node in outcome.touched {
        dispatcher.wake(&node, SPECS_CHANGED);
    }
}

/// Marks a committed step of an action (dispatched, running, succeeded, failed, or a late
/// result) in the trace the action was queued in. One commit carries many actions of many
/// traces, so each gets a span of its own, recorded once the step is durable.
fn trace_transition(action: &action::Model) {
    let state = action.late_state.unwrap_or(action.state);
    let span = tracing::info_span!(
        parent: None,
        "action transition",
        otel.name = %format_args!("action {state}"),
        action_id = %action.id,
        kind = %action.kind,
        state = %state,
        late = action.late_state.is_some(),
        media_service_id = %action.media_service_id,
        node_id = %action.node_id,
        error = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if span.is_disabled() {
        return;
    }
    castplane_telemetry::set_parent(&span, &action.trace_context);
    let message = if action.late_state.is_some() {
        &action.late_message
    } else {
        &action.error
    };
    if state == ActionState::Failed {
        span.record("error", message.as_str());
        span.record("otel.status_code", "ERROR");
    }
}
