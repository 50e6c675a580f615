//! What the agent has done with each action, persisted, so that a redelivered action
//! (delivery is at-least-once) is answered instead of run again.
//!
//! An action is logged twice: as started — durably, before anything is executed — and with
//! its result. A redelivery of a finished action is answered with its result; one that was
//! started by an agent that then died is resumed by reconciling towards what the action asked
//! for, never repeated from the start (a restart that already replaced the server's process
//! does not replace it again).
//!
//! Appends go through one writer thread that batches whatever is waiting into one write and
//! one `fdatasync`, so many actions finishing at once cost one disk flush, and no flush ever
//! blocks the async runtime.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Old results beyond this many are forgotten; the control plane never redelivers an action
/// it has seen finish, so only recent ones matter.
const KEEP: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub action_id: String,
    pub succeeded: bool,
    pub message: String,
}

/// An action accepted for execution, before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub action_id: String,
    pub started: StartedAction,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedAction {
    /// `start`, `stop`, `restart` or `delete`.
    pub kind: String,
    pub service_id: String,
    /// The server's pid when a restart began: if another process runs when it is resumed, the
    /// restart already happened.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// What the log knows of an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Finished(ActionResult),
    Started(StartedAction),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Finished(ActionResult),
    Started(Started),
}

struct State {
    entries: HashMap<String, Entry>,
    /// Action ids, oldest first, for compaction.
    order: Vec<String>,
    /// How many entries compaction keeps.
    keep: usize,
}

impl State {
    fn remember(&mut self, id: String, entry: Entry) {
        if !self.entries.contains_key(&id) {
            self.order.push(id.clone());
        }
        self.entries.insert(id, entry);
    }

    /// The entries to keep, oldest first: the latest `KEEP`, and every started action.
    fn compacted(&mut self) -> Vec<(String, Entry)> {
        let drop = self.order.len().saturating_sub(self.keep);
        let mut kept_order = Vec::with_capacity(self.order.len());
        for (i, id) in self.order.drain(..).enumerate() {
            let unfinished = matches!(self.entries.get(&id), Some(Entry::Started(_)));
            if i < drop && !unfinished {
                self.entries.remove(&id);
            } else {
                kept_order.push(id);
            }
        }
        self.order = kept_order;
        self.order
            .iter()
            .filter_map(|id| self.entries.get(id).map(|e| (id.clone(), e.clone())))
            .collect()
    }
}

enum Request {
    Append(Vec<u8>, oneshot::Sender<std::io::Result<()>>),
    Rewrite(Vec<u8>, oneshot::Sender<std::io::Result<()>>),
}

/// Cheap to clone.
#[derive(Clone)]
pub struct ActionLog {
    state: Arc<Mutex<State>>,
    writer: mpsc::UnboundedSender<Request>,
}

fn encode(id: &str, entry: &Entry) -> anyhow::Result<Vec<u8>> {
    let mut line = match entry {
        Entry::Finished(result) => serde_json::to_vec(result)?,
        Entry::Started(started) => serde_json::to_vec(&Started {
            action_id: id.to_owned(),
            started: started.clone(),
        })?,
    };
    line.push(b'\n');
    Ok(line)
}

impl ActionLog {
    /// Loads the log (blocking: call before serving, or from a blocking task); a torn last
    /// line (crash mid-write) is cut off.
    pub fn open(path: PathBuf) -> anyhow::Result<Self> {
        Self::open_keeping(path, KEEP)
    }

    /// Like [`ActionLog::open`], keeping `keep` results through compaction.
    pub fn open_keeping(path: PathBuf, keep: usize) -> anyhow::Result<Self> {
        let mut state = State {
            entries: HashMap::new(),
            order: Vec::new(),
            keep: keep.max(1),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                // A crash mid-append leaves a torn last line; cut it off so the next record
                // starts on a line of its own instead of being glued to the fragment.
                if !text.is_empty() && !text.ends_with('\n') {
                    let keep = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
                    let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                    file.set_len(keep as u64)?;
                    file.sync_data()?;
                }
                for line in text.lines() {
                    match serde_json::from_str::<Line>(line) {
                        Ok(Line::Finished(result)) => {
                            state.remember(result.action_id.clone(), Entry::Finished(result))
                        }
                        Ok(Line::Started(started)) => {
                            // A result already read wins over a start logged before it.
                            if !matches!(
                                state.entries.get(&started.action_id),
                                Some(Entry::Finished(_))
                            ) {
                                state.remember(
                                    started.action_id.clone(),
                                    Entry::Started(started.started),
                                );
                            }
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        if state.order.len() > state.keep {
            let text = state
                .compacted()
                .iter()
                .map(|(id, entry)| encode(id, entry))
                .collect::<anyhow::Result<Vec<_>>>()?
                .concat();
            crate::state::write_private(&path, &text)?;
        }
        let (writer, requests) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("action-log".to_owned())
            .spawn(move || write_loop(&path, requests))?;
        Ok(ActionLog {
            state: Arc::new(Mutex::new(state)),
            writer,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, action_id: &str) -> Option<Entry> {
        self.state().entries.get(action_id).cloned()
    }

    /// Durably records that the action is about to run.
    pub async fn record_started(
        &self,
        action_id: &str,
        started: StartedAction,
    ) -> anyhow::Result<()> {
        self.append(action_id, Entry::Started(started)).await
    }

    /// Durably records a result, before it is reported.
    pub async fn record(&self, result: ActionResult) -> anyhow::Result<()> {
        let id = result.action_id.clone();
        self.append(&id, Entry::Finished(result)).await
    }

    async fn append(&self, action_id: &str, entry: Entry) -> anyhow::Result<()> {
        let line = encode(action_id, &entry)?;
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Request::Append(line, tx))
            .map_err(|_| anyhow::anyhow!("the action log's writer has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the action log's writer has stopped"))??;
        let compacted = {
            let mut state = self.state();
            state.remember(action_id.to_owned(), entry);
            (state.order.len() > 2 * state.keep).then(|| state.compacted())
        };
        if let Some(entries) = compacted {
            let text = entries
                .iter()
                .map(|(id, entry)| encode(id, entry))
                .collect::<anyhow::Result<Vec<_>>>()?
                .concat();
            let (tx, rx) = oneshot::channel();
            self.writer
                .send(Request::Rewrite(text, tx))
                .map_err(|_| anyhow::anyhow!("the action log's writer has stopped"))?;
            rx.await
                .map_err(|_| anyhow::anyhow!("the action log's writer has stopped"))??;
        }
        Ok(())
    }
}

/// The writer thread: batches appends into one write and one flush.
fn write_loop(path: &Path, mut requests: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = requests.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(next) = requests.try_recv() {
            batch.push(next);
        }
        let mut appends = Vec::new();
        let mut waiting = Vec::new();
        for request in batch {
            match request {
                Request::Append(line, reply) => {
                    appends.extend(line);
                    waiting.push(reply);
                }
                Request::Rewrite(text, reply) => {
                    let result = flush_appends(path, &appends)
                        .and_then(|()| {
                            crate::state::write_private(path, &text).map_err(std::io::Error::other)
                        })
                        .map_err(|e| std::io::Error::new(e.kind(), e.to_string()));
                    appends.clear();
                    answer(std::mem::take(&mut waiting), &result);
                    let _ = reply.send(result);
                }
            }
        }
        let result = flush_appends(path, &appends);
        answer(waiting, &result);
    }
}

fn flush_appends(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if bytes.is_empty() {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

fn answer(waiting: Vec<oneshot::Sender<std::io::Result<()>>>, result: &std::io::Result<()>) {
    for reply in waiting {
        let _ = reply.send(match result {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, succeeded: bool, message: &str) -> ActionResult {
        ActionResult {
            action_id: id.into(),
            succeeded,
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn entries_survive_a_reopen_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actions.jsonl");
        let log = ActionLog::open(path.clone()).unwrap();
        log.record(result("act_1", true, "")).await.unwrap();
        log.record(result("act_2", false, "boom")).await.unwrap();
        log.record_started(
            "act_5",
            StartedAction {
                kind: "restart".into(),
                service_id: "svc_1".into(),
                pid: Some(42),
            },
        )
        .await
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"action_id\":\"act_3\",")
            .unwrap();
        let reopened = ActionLog::open(path.clone()).unwrap();
        reopened.record(result("act_4", true, "")).await.unwrap();
        let reopened = ActionLog::open(path).unwrap();
        assert!(matches!(reopened.get("act_4"), Some(Entry::Finished(_))));
        assert_eq!(
            reopened.get("act_2"),
            Some(Entry::Finished(result("act_2", false, "boom")))
        );
        assert!(reopened.get("act_3").is_none());
        assert_eq!(
            reopened.get("act_5"),
            Some(Entry::Started(StartedAction {
                kind: "restart".into(),
                service_id: "svc_1".into(),
                pid: Some(42),
            }))
        );
    }

    #[tokio::test]
    async fn a_result_replaces_the_start_and_compaction_keeps_unfinished_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actions.jsonl");
        let keep = 5;
        let log = ActionLog::open_keeping(path.clone(), keep).unwrap();
        let started = StartedAction {
            kind: "stop".into(),
            service_id: "svc_1".into(),
            pid: None,
        };
        log.record_started("act_old", started.clone())
            .await
            .unwrap();
        log.record_started("act_done", started.clone())
            .await
            .unwrap();
        log.record(result("act_done", true, "")).await.unwrap();
        for i in 0..(2 * keep + 1) {
            log.record(result(&format!("act_{i}"), true, ""))
                .await
                .unwrap();
        }
        let reopened = ActionLog::open_keeping(path.clone(), keep).unwrap();
        assert_eq!(reopened.get("act_old"), Some(Entry::Started(started)));
        assert!(
            reopened.get("act_done").is_none(),
            "old results are forgotten"
        );
        assert!(reopened.get(&format!("act_{}", 2 * keep)).is_some());
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= keep + 2, "compacted to {lines} lines");
    }
}
