//! The results of completed actions, persisted, so that a redelivered action (delivery is
//! at-least-once) is answered with its recorded result instead of running again.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Old results beyond this many are forgotten; the control plane never redelivers an action
/// it has seen finish, so only recent ones matter.
const KEEP: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub action_id: String,
    pub succeeded: bool,
    pub message: String,
}

pub struct ActionLog {
    path: PathBuf,
    results: HashMap<String, ActionResult>,
    order: Vec<String>,
}

impl ActionLog {
    /// Loads the log; a torn last line (crash mid-write) is skipped.
    pub fn open(path: PathBuf) -> anyhow::Result<Self> {
        let mut log = ActionLog {
            path,
            results: HashMap::new(),
            order: Vec::new(),
        };
        match std::fs::read_to_string(&log.path) {
            Ok(text) => {
                // A crash mid-append leaves a torn last line; cut it off so the next record
                // starts on a line of its own instead of being glued to the fragment.
                if !text.is_empty() && !text.ends_with('\n') {
                    let keep = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
                    let file = std::fs::OpenOptions::new().write(true).open(&log.path)?;
                    file.set_len(keep as u64)?;
                    file.sync_data()?;
                }
                for line in text.lines() {
                    if let Ok(result) = serde_json::from_str::<ActionResult>(line) {
                        log.remember(result);
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        if log.order.len() > KEEP {
            log.compact()?;
        }
        Ok(log)
    }

    pub fn get(&self, action_id: &str) -> Option<&ActionResult> {
        self.results.get(action_id)
    }

    /// Durably records a result before it is reported.
    pub fn record(&mut self, result: ActionResult) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&result)?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&line)?;
        file.sync_data()?;
        self.remember(result);
        if self.order.len() > 2 * KEEP {
            self.compact()?;
        }
        Ok(())
    }

    fn remember(&mut self, result: ActionResult) {
        if !self.results.contains_key(&result.action_id) {
            self.order.push(result.action_id.clone());
        }
        self.results.insert(result.action_id.clone(), result);
    }

    fn compact(&mut self) -> anyhow::Result<()> {
        let drop = self.order.len().saturating_sub(KEEP);
        for id in self.order.drain(..drop) {
            self.results.remove(&id);
        }
        let mut text = Vec::new();
        for id in &self.order {
            if let Some(result) = self.results.get(id) {
                text.extend(serde_json::to_vec(result)?);
                text.push(b'\n');
            }
        }
        crate::state::write_private(&self.path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_survive_a_reopen_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actions.jsonl");
        let mut log = ActionLog::open(path.clone()).unwrap();
        log.record(ActionResult {
            action_id: "act_1".into(),
            succeeded: true,
            message: String::new(),
        })
        .unwrap();
        log.record(ActionResult {
            action_id: "act_2".into(),
            succeeded: false,
            message: "boom".into(),
        })
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"action_id\":\"act_3\",")
            .unwrap();
        let mut reopened = ActionLog::open(path.clone()).unwrap();
        reopened
            .record(ActionResult {
                action_id: "act_4".into(),
                succeeded: true,
                message: String::new(),
            })
            .unwrap();
        let reopened = ActionLog::open(path).unwrap();
        assert!(
            reopened.get("act_4").is_some(),
            "a record after a torn line survives"
        );
        assert!(reopened.get("act_1").unwrap().succeeded);
        assert_eq!(reopened.get("act_2").unwrap().message, "boom");
        assert!(reopened.get("act_3").is_none());
    }
}
