//! Following an action to its end with a spinner.

use std::time::Duration;

use castplane_proto::v1 as pb;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::Api;
use crate::error::{CliError, Result};
use crate::output::enum_text;

pub fn is_finished(action: &pb::Action) -> bool {
    matches!(
        pb::ActionState::try_from(action.state),
        Ok(pb::ActionState::Succeeded | pb::ActionState::Failed)
    )
}

/// The spinner's message: the current state, and what the last transition said.
fn progress_message(action: &pb::Action) -> String {
    let mut text = format!(
        "{} {} {}: {}",
        enum_text::<pb::ActionKind>(action.kind),
        action.media_service_id,
        action.id,
        enum_text::<pb::ActionState>(action.state)
    );
    if let Some(note) = action
        .transitions
        .last()
        .map(|t| t.message.as_str())
        .filter(|m| !m.is_empty())
    {
        text.push_str(&format!(" ({note})"));
    }
    text
}

/// Streams the action's updates until it has succeeded or failed, and returns its last state.
/// The spinner draws on stderr, and only when that is a terminal.
pub async fn until_finished(api: &Api, action: pb::Action) -> Result<pb::Action> {
    if is_finished(&action) {
        return Ok(action);
    }
    let spinner = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        spinner.set_style(style);
    }
    spinner.set_message(progress_message(&action));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = follow(api, action, &spinner).await;
    spinner.finish_and_clear();
    result
}

async fn follow(api: &Api, mut last: pb::Action, spinner: &ProgressBar) -> Result<pb::Action> {
    let mut client = api.actions.clone();
    let mut stream = client
        .watch_action(pb::WatchActionRequest {
            id: last.id.clone(),
        })
        .await?
        .into_inner();
    while let Some(update) = stream.message().await? {
        spinner.set_message(progress_message(&update));
        last = update;
        if is_finished(&last) {
            return Ok(last);
        }
    }
    // The server ends the stream after the final state; ending earlier means it went away
    // (e.g. a replica shutting down). Ask once more before giving up.
    let mut client = api.actions.clone();
    let current = client
        .get_action(pb::GetActionRequest {
            id: last.id.clone(),
        })
        .await?
        .into_inner();
    if is_finished(&current) {
        return Ok(current);
    }
    Err(CliError::failed(format!(
        "the watch ended before action {} finished (now {}); follow it with `castctl action watch {}`",
        current.id,
        enum_text::<pb::ActionState>(current.state),
        current.id
    )))
}

/// Exit status for a finished action: success only if it succeeded.
pub fn outcome(action: &pb::Action) -> Result<()> {
    match pb::ActionState::try_from(action.state) {
        Ok(pb::ActionState::Succeeded) => Ok(()),
        _ => {
            let reason = if action.error.is_empty() {
                "no reason given".to_owned()
            } else {
                action.error.clone()
            };
            Err(CliError::failed(format!(
                "action {} ({} {}) failed: {reason}",
                action.id,
                enum_text::<pb::ActionKind>(action.kind),
                action.media_service_id
            )))
        }
    }
}
