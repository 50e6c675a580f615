//! One shared fan-out per watched action, so `WatchAction` costs the database one read per
//! watcher (its first answer), not a query loop.
//!
//! Writes made on this replica hand their new rows and transitions to [`ActionHub::apply`];
//! other replicas' changes arrive as notices and are re-read once per action, whatever the
//! number of watchers ([`ActionHub::stale`]). Entries exist only while someone watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::persistence::entities::{action, action_transition};
use crate::service::ActionRecord;

/// A change made on this replica: the action's row as written, and transitions it added.
#[derive(Clone, Debug)]
pub struct ActionDelta {
    pub action: action::Model,
    pub transitions: Vec<action_transition::Model>,
}

#[derive(Default)]
struct Entry {
    /// The latest record; `None` until the first watcher's read arrives.
    record: Option<ActionRecord>,
    /// Deltas seen before any record: applied to it when it comes, as the read may predate them.
    early: Vec<ActionDelta>,
}

struct Slot {
    entry: Mutex<Entry>,
    tx: watch::Sender<Option<Arc<ActionRecord>>>,
}

/// What a watcher holds: the latest record, and a way to offer its own read.
pub struct Subscription {
    slot: Arc<Slot>,
    pub rx: watch::Receiver<Option<Arc<ActionRecord>>>,
}

impl Subscription {
    /// Offers a record read from the database. Deltas that arrived before it are applied
    /// (repeats are skipped by transition id); a newer record already held wins.
    pub fn offer(&self, record: ActionRecord) {
        let mut entry = self.slot.entry.lock().unwrap_or_else(|e| e.into_inner());
        let mut record = record;
        for delta in std::mem::take(&mut entry.early) {
            apply_delta(&mut record, &delta);
        }
        let newer = match &entry.record {
            Some(current) => progress(&record) >= progress(current),
            None => true,
        };
        if newer {
            entry.record = Some(record.clone());
            self.slot.tx.send_replace(Some(Arc::new(record)));
        }
    }
}

/// How far a record has come: transitions only ever append, and a late result only follows.
fn progress(record: &ActionRecord) -> (usize, bool, i64) {
    (
        record.transitions.len(),
        record.action.late_state.is_some(),
        record.action.update_time,
    )
}

fn apply_delta(record: &mut ActionRecord, delta: &ActionDelta) {
    for transition in &delta.transitions {
        if !record.transitions.iter().any(|t| t.id == transition.id) {
            record.transitions.push(transition.clone());
        }
    }
    record
        .transitions
        .sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    if delta.action.update_time >= record.action.update_time
        || delta.action.state.is_terminal() && !record.action.state.is_terminal()
    {
        record.action = delta.action.clone();
    }
}

#[derive(Default)]
pub struct ActionHub {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl ActionHub {
    pub fn subscribe(&self, action_id: &str) -> Subscription {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|_, slot| slot.tx.receiver_count() > 0);
        let slot = slots
            .entry(action_id.to_owned())
            .or_insert_with(|| {
                Arc::new(Slot {
                    entry: Mutex::new(Entry::default()),
                    tx: watch::channel(None).0,
                })
            })
            .clone();
        let rx = slot.tx.subscribe();
        Subscription { slot, rx }
    }

    fn slot(&self, action_id: &str) -> Option<Arc<Slot>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .get(action_id)
            .filter(|slot| slot.tx.receiver_count() > 0)
            .cloned()
    }

    /// Changes written on this replica.
    pub fn apply(&self, deltas: &[ActionDelta]) {
        for delta in deltas {
            let Some(slot) = self.slot(&delta.action.id) else {
                continue;
            };
            let mut entry = slot.entry.lock().unwrap_or_else(|e| e.into_inner());
            match entry.record.as_mut() {
                Some(record) => {
                    apply_delta(record, delta);
                    let record = record.clone();
                    slot.tx.send_replace(Some(Arc::new(record)));
                }
                None => entry.early.push(delta.clone()),
            }
        }
    }

    /// Which of `ids` someone here watches: they changed elsewhere and must be re-read.
    pub fn watched(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .filter(|id| self.slot(id).is_some())
            .cloned()
            .collect()
    }

    /// Every watched action (after notices may have been lost).
    pub fn all_watched(&self) -> Vec<String> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .filter(|(_, slot)| slot.tx.receiver_count() > 0)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Fresh reads of actions that changed elsewhere.
    pub fn refresh(&self, records: Vec<ActionRecord>) {
        for record in records {
            let Some(slot) = self.slot(&record.action.id) else {
                continue;
            };
            Subscription {
                rx: slot.tx.subscribe(),
                slot,
            }
            .offer(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ActionKind, ActionState};

    fn action(state: ActionState, update_time: i64) -> action::Model {
        action::Model {
            id: "act_1".into(),
            media_service_id: "svc_1".into(),
            node_id: "node_1".into(),
            kind: ActionKind::Stop,
            state,
            sequence: 1,
            requested_by: "admin".into(),
            error: String::new(),
            create_time: 1,
            update_time,
            dispatch_generation: None,
            not_after: None,
            expire_time: None,
            previous_desired_state: None,
            expired: false,
            late_state: None,
            late_message: String::new(),
            trace_context: String::new(),
        }
    }

    fn transition(id: &str, state: ActionState, time: i64) -> action_transition::Model {
        action_transition::Model {
            id: id.into(),
            action_id: "act_1".into(),
            state,
            time,
            message: String::new(),
        }
    }

    #[test]
    fn a_delta_before_the_first_read_is_applied_once_whichever_the_read_saw() {
        let hub = ActionHub::default();
        let sub = hub.subscribe("act_1");
        let dispatched = ActionDelta {
            action: action(ActionState::Dispatched, 2),
            transitions: vec![transition("atr_2", ActionState::Dispatched, 2)],
        };
        hub.apply(std::slice::from_ref(&dispatched));
        // The read already includes the dispatch.
        sub.offer(ActionRecord {
            action: action(ActionState::Dispatched, 2),
            transitions: vec![
                transition("atr_1", ActionState::Queued, 1),
                transition("atr_2", ActionState::Dispatched, 2),
            ],
        });
        let record = sub.rx.borrow().clone().expect("record");
        assert_eq!(record.transitions.len(), 2);
        hub.apply(&[ActionDelta {
            action: action(ActionState::Succeeded, 3),
            transitions: vec![transition("atr_3", ActionState::Succeeded, 3)],
        }]);
        let record = sub.rx.borrow().clone().expect("record");
        assert_eq!(record.action.state, ActionState::Succeeded);
        assert_eq!(record.transitions.len(), 3);
        drop(sub);
        assert!(hub.watched(&["act_1".to_owned()]).is_empty());
    }
}
