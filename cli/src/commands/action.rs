//! `action get|list|watch`.

use castplane_proto::v1 as pb;

use super::Ctx;
use crate::cli::{ActionCommand, ActionStateArg};
use crate::error::Result;
use crate::json::{self, ToJson};
use crate::lookup;
use crate::output::{enum_text, fields, or_dash, render, table, time_text};
use crate::watch;

pub async fn run(ctx: &Ctx, command: ActionCommand) -> Result<()> {
    let mut client = ctx.api.actions.clone();
    match command {
        ActionCommand::Get { id } => {
            let action = client
                .get_action(pb::GetActionRequest { id })
                .await?
                .into_inner();
            ctx.out.emit(|| action.to_json(), || action_detail(&action))
        }
        ActionCommand::List { service, state } => {
            let service_id = match service {
                Some(s) => lookup::service_id(&ctx.api, &s).await?,
                None => String::new(),
            };
            let state = match state {
                None => pb::ActionState::Unspecified,
                Some(ActionStateArg::Queued) => pb::ActionState::Queued,
                Some(ActionStateArg::Dispatched) => pb::ActionState::Dispatched,
                Some(ActionStateArg::Running) => pb::ActionState::Running,
                Some(ActionStateArg::Succeeded) => pb::ActionState::Succeeded,
                Some(ActionStateArg::Failed) => pb::ActionState::Failed,
            };
            let actions = lookup::list_actions(&ctx.api, service_id, state).await?;
            ctx.out.emit(
                || json::list("actions", &actions),
                || {
                    let mut t =
                        table(["ID", "SERVICE", "KIND", "STATE", "SEQ", "CREATED", "ERROR"]);
                    for a in &actions {
                        t.add_row(vec![
                            a.id.clone(),
                            a.media_service_id.clone(),
                            enum_text::<pb::ActionKind>(a.kind),
                            enum_text::<pb::ActionState>(a.state),
                            a.sequence.to_string(),
                            time_text(a.create_time.as_ref()),
                            or_dash(&a.error),
                        ]);
                    }
                    render(&t)
                },
            )
        }
        ActionCommand::Watch { id } => {
            let action = client
                .get_action(pb::GetActionRequest { id })
                .await?
                .into_inner();
            let done = watch::until_finished(&ctx.api, action).await?;
            ctx.out.emit(|| done.to_json(), || action_detail(&done))?;
            watch::outcome(&done)
        }
    }
}

/// An action's fields, then its transitions.
pub fn action_detail(a: &pb::Action) -> String {
    let summary = render(&fields(vec![
        ("Action", a.id.clone()),
        ("Service", a.media_service_id.clone()),
        ("Kind", enum_text::<pb::ActionKind>(a.kind)),
        ("State", enum_text::<pb::ActionState>(a.state)),
        ("Error", or_dash(&a.error)),
        ("Requested by", a.requested_by.clone()),
        ("Node", or_dash(&a.node_id)),
        ("Sequence", a.sequence.to_string()),
        ("Created", time_text(a.create_time.as_ref())),
        ("Updated", time_text(a.update_time.as_ref())),
        ("Deadline", time_text(a.deadline.as_ref())),
    ]));
    if a.transitions.is_empty() {
        return summary;
    }
    let mut t = table(["TIME", "STATE", "MESSAGE"]);
    for tr in &a.transitions {
        t.add_row(vec![
            time_text(tr.time.as_ref()),
            enum_text::<pb::ActionState>(tr.state),
            tr.message.clone(),
        ]);
    }
    format!("{summary}\n\n{}", render(&t))
}
