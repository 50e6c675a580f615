//! `service list|get|update|connection|change-owner|owner-history|start|stop|restart|delete`
//! (`create` is in `wizard`).

use castplane_proto::v1 as pb;
use prost_types::FieldMask;
use serde_json::json;

use super::Ctx;
use super::action::action_detail;
use crate::cli::{ActionArgs, ScopeArg, ServiceCommand};
use crate::error::{CliError, Result};
use crate::json::{self, ToJson};
use crate::lookup;
use crate::output::{enum_text, fields, or_dash, render, table, time_text};
use crate::watch;

#[derive(Clone, Copy)]
enum Kind {
    Start,
    Stop,
    Restart,
}

pub async fn run(ctx: &Ctx, command: ServiceCommand) -> Result<()> {
    let mut client = ctx.api.media.clone();
    match command {
        // Dispatched to the wizard before this point.
        ServiceCommand::Create(_) => Err(CliError::failed("internal: create is the wizard's")),
        ServiceCommand::List {
            scope,
            customer,
            reseller,
            node,
            show_deleted,
        } => {
            let node_id = match node {
                Some(node) => lookup::node(&ctx.api, &node).await?.id,
                None => String::new(),
            };
            let request = pb::ListMediaServicesRequest {
                scope: match scope {
                    ScopeArg::My => pb::ServiceScope::MyServices,
                    ScopeArg::Customers => pb::ServiceScope::CustomerServices,
                    ScopeArg::All => pb::ServiceScope::All,
                } as i32,
                customer_id: customer.unwrap_or_default(),
                reseller_id: reseller.unwrap_or_default(),
                node_id,
                show_deleted,
                ..Default::default()
            };
            let services = lookup::list_services(&ctx.api, request).await?;
            if ctx.out.is_json() {
                return ctx
                    .out
                    .emit(|| json::list("media_services", &services), String::new);
            }
            let names = lookup::Names::default()
                .customers(&ctx.api, services.iter().map(|s| s.customer_id.as_str()))
                .await
                .nodes(&ctx.api)
                .await;
            ctx.out.emit(
                || json::list("media_services", &services),
                || list_table(&services, &names),
            )
        }
        ServiceCommand::Get(target) => {
            let id = lookup::service_id(&ctx.api, &target.service).await?;
            let service = client
                .get_media_service(pb::GetMediaServiceRequest { id })
                .await?
                .into_inner();
            show(ctx, &service)
        }
        ServiceCommand::Update {
            target,
            display_name,
            max_listeners,
            max_bitrate_kbps,
            disk_mb,
            bandwidth_gb,
            autodj,
        } => {
            let id = lookup::service_id(&ctx.api, &target.service).await?;
            let mut paths = Vec::new();
            let mut service = pb::MediaService {
                id,
                ..Default::default()
            };
            if let Some(v) = display_name {
                service.display_name = v;
                paths.push("display_name");
            }
            if let Some(v) = max_listeners {
                service.max_listeners = v;
                paths.push("max_listeners");
            }
            if let Some(v) = max_bitrate_kbps {
                service.max_bitrate_kbps = v;
                paths.push("max_bitrate_kbps");
            }
            if let Some(v) = disk_mb {
                service.disk_quota_mb = v;
                paths.push("disk_quota_mb");
            }
            if let Some(v) = bandwidth_gb {
                service.bandwidth_gb_per_month = v;
                paths.push("bandwidth_gb_per_month");
            }
            if let Some(v) = autodj {
                service.autodj = v;
                paths.push("autodj");
            }
            if paths.is_empty() {
                return Err(CliError::usage(
                    "nothing to change: give --display-name, --max-listeners, --max-bitrate-kbps, --disk-mb, --bandwidth-gb or --autodj",
                ));
            }
            let updated = client
                .update_media_service(pb::UpdateMediaServiceRequest {
                    media_service: Some(service),
                    update_mask: Some(FieldMask {
                        paths: paths.into_iter().map(str::to_owned).collect(),
                    }),
                })
                .await?
                .into_inner();
            show(ctx, &updated)
        }
        ServiceCommand::Connection(target) => {
            let id = lookup::service_id(&ctx.api, &target.service).await?;
            let info = client
                .get_media_service_connection_info(pb::GetMediaServiceConnectionInfoRequest { id })
                .await?
                .into_inner();
            // Showing the source password is this command's purpose.
            ctx.out.emit(
                || info.to_json(),
                || {
                    render(&fields(vec![
                        ("Service", info.media_service_id.clone()),
                        ("Stream URL", or_dash(&info.stream_url)),
                        ("Source host", or_dash(&info.source_host)),
                        ("Source port", info.source_port.to_string()),
                        ("Mount", or_dash(&info.mount)),
                        ("Source username", or_dash(&info.source_username)),
                        ("Source password", or_dash(&info.source_password)),
                        ("Ingest URL", or_dash(&info.ingest_url)),
                    ]))
                },
            )
        }
        ServiceCommand::ChangeOwner { target, to } => {
            let id = lookup::service_id(&ctx.api, &target.service).await?;
            let moved = client
                .change_media_service_owner(pb::ChangeMediaServiceOwnerRequest {
                    id,
                    new_customer_id: to,
                })
                .await?
                .into_inner();
            show(ctx, &moved)
        }
        ServiceCommand::OwnerHistory(target) => {
            let id = lookup::service_id(&ctx.api, &target.service).await?;
            let changes = client
                .list_ownership_changes(pb::ListOwnershipChangesRequest {
                    media_service_id: id,
                })
                .await?
                .into_inner()
                .changes;
            ctx.out.emit(
                || json::list("changes", &changes),
                || {
                    let mut t = table(["TIME", "FROM", "TO", "BY"]);
                    for c in &changes {
                        let side = |customer: &str, reseller: &str| {
                            format!("{customer} (reseller {reseller})")
                        };
                        t.add_row(vec![
                            time_text(c.change_time.as_ref()),
                            side(&c.from_customer_id, &c.from_reseller_id),
                            side(&c.to_customer_id, &c.to_reseller_id),
                            c.changed_by.clone(),
                        ]);
                    }
                    if changes.is_empty() {
                        "No ownership changes.".to_owned()
                    } else {
                        render(&t)
                    }
                },
            )
        }
        ServiceCommand::Start(args) => queue(ctx, args, Kind::Start).await,
        ServiceCommand::Stop(args) => queue(ctx, args, Kind::Stop).await,
        ServiceCommand::Restart(args) => queue(ctx, args, Kind::Restart).await,
        ServiceCommand::Delete {
            action,
            confirm_permanent_deletion,
            dry_run,
        } => delete(ctx, action, confirm_permanent_deletion, dry_run).await,
    }
}

async fn queue(ctx: &Ctx, args: ActionArgs, kind: Kind) -> Result<()> {
    let id = lookup::service_id(&ctx.api, &args.target.service).await?;
    let mut client = ctx.api.media.clone();
    let action = match kind {
        Kind::Start => {
            client
                .start_media_service(pb::StartMediaServiceRequest { id })
                .await?
        }
        Kind::Stop => {
            client
                .stop_media_service(pb::StopMediaServiceRequest { id })
                .await?
        }
        Kind::Restart => {
            client
                .restart_media_service(pb::RestartMediaServiceRequest { id })
                .await?
        }
    }
    .into_inner();
    finish_queue(ctx, action, args.wait).await
}

/// Prints the queued action, or with `--wait` follows it and prints how it ended.
async fn finish_queue(ctx: &Ctx, action: pb::Action, wait: bool) -> Result<()> {
    if !wait {
        ctx.out.emit(|| action.to_json(), || queued_text(&action))?;
        return Ok(());
    }
    let done = watch::until_finished(&ctx.api, action).await?;
    ctx.out.emit(|| done.to_json(), || action_detail(&done))?;
    watch::outcome(&done)
}

fn queued_text(action: &pb::Action) -> String {
    format!(
        "{}\nQueued; follow it with `castctl action watch {}`.",
        action_detail(action),
        action.id
    )
}

async fn delete(ctx: &Ctx, args: ActionArgs, confirm: bool, dry_run: bool) -> Result<()> {
    let id = lookup::service_id(&ctx.api, &args.target.service).await?;
    let mut client = ctx.api.media.clone();
    let response = client
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: id.clone(),
            confirm_permanent_deletion: confirm,
            validate_only: dry_run,
        })
        .await?
        .into_inner();
    let plan = response.plan.clone().unwrap_or_default();
    let action = match (&response.action, dry_run) {
        (Some(action), false) => action.clone(),
        _ => {
            return ctx.out.emit(
                || response.to_json(),
                || {
                    format!(
                        "Dry run for {id}: nothing was changed.\n{}",
                        plan_text(&plan)
                    )
                },
            );
        }
    };
    if !args.wait {
        return ctx.out.emit(
            || response.to_json(),
            || format!("{}\n{}", plan_text(&plan), queued_text(&action)),
        );
    }
    let done = watch::until_finished(&ctx.api, action).await?;
    ctx.out.emit(
        || json!({ "plan": plan.to_json(), "action": done.to_json() }),
        || format!("{}\n{}", plan_text(&plan), action_detail(&done)),
    )?;
    watch::outcome(&done)
}

fn plan_text(plan: &pb::DeletionPlan) -> String {
    let mut text = String::from("Kept:");
    let list = |items: &[String], text: &mut String| {
        if items.is_empty() {
            text.push_str("\n  (nothing)");
        }
        for item in items {
            text.push_str(&format!("\n  - {item}"));
        }
    };
    list(&plan.kept, &mut text);
    text.push_str("\nDestroyed:");
    list(&plan.destroyed, &mut text);
    if plan.requires_confirmation {
        text.push_str("\nThis destroys files permanently: it needs --confirm-permanent-deletion.");
    }
    text
}

fn show(ctx: &Ctx, service: &pb::MediaService) -> Result<()> {
    ctx.out
        .emit(|| service.to_json(), || service_detail(service))
}

pub fn ports_text(ports: &[pb::PortAssignment]) -> String {
    if ports.is_empty() {
        return "-".to_owned();
    }
    ports
        .iter()
        .map(|p| format!("{} {}", p.purpose, p.port))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn service_detail(s: &pb::MediaService) -> String {
    let status = s.status.clone().unwrap_or_default();
    let stats = status.stats.clone().unwrap_or_default();
    render(&fields(vec![
        ("Id", s.id.clone()),
        ("Name", s.name.clone()),
        ("Display name", s.display_name.clone()),
        (
            "Type",
            format!(
                "{} ({})",
                enum_text::<pb::ServiceType>(s.r#type),
                enum_text::<pb::ServiceKind>(s.kind)
            ),
        ),
        ("Customer", s.customer_id.clone()),
        ("Reseller", s.reseller_id.clone()),
        ("Node", or_dash(&s.node_id)),
        ("Max listeners", s.max_listeners.to_string()),
        ("Max bitrate (kbps)", s.max_bitrate_kbps.to_string()),
        ("Disk quota (MB)", s.disk_quota_mb.to_string()),
        ("Bandwidth (GB/month)", s.bandwidth_gb_per_month.to_string()),
        ("AutoDJ", if s.autodj { "on" } else { "off" }.to_owned()),
        ("Ports", ports_text(&s.ports)),
        (
            "Desired state",
            enum_text::<pb::DesiredState>(s.desired_state),
        ),
        ("Status", enum_text::<pb::ObservedState>(status.state)),
        ("Status message", or_dash(&status.message)),
        ("Listeners", stats.listeners.to_string()),
        ("Sources", stats.sources.to_string()),
        (
            "Mounts",
            if stats.mounts.is_empty() {
                "-".to_owned()
            } else {
                stats.mounts.join(", ")
            },
        ),
        ("Bytes sent", stats.bytes_sent.to_string()),
        ("Bytes read", stats.bytes_read.to_string()),
        ("Observed", time_text(status.observe_time.as_ref())),
        ("Deleting", if s.deleting { "yes" } else { "no" }.to_owned()),
        ("Created", time_text(s.create_time.as_ref())),
        ("Updated", time_text(s.update_time.as_ref())),
    ]))
}

fn list_table(services: &[pb::MediaService], names: &lookup::Names) -> String {
    let mut t = table([
        "NAME",
        "ID",
        "TYPE",
        "CUSTOMER",
        "NODE",
        "DESIRED",
        "STATUS",
        "LISTENERS",
        "PORTS",
    ]);
    for s in services {
        let status = s.status.clone().unwrap_or_default();
        let mut state = enum_text::<pb::ObservedState>(status.state);
        if s.state == pb::MediaServiceState::Deleted as i32 {
            state = "DELETED".to_owned();
        } else if s.deleting {
            state.push_str(" (deleting)");
        }
        t.add_row(vec![
            s.name.clone(),
            s.id.clone(),
            enum_text::<pb::ServiceType>(s.r#type),
            names.of(&s.customer_id),
            names.of(&s.node_id),
            enum_text::<pb::DesiredState>(s.desired_state),
            state,
            format!(
                "{}/{}",
                status.stats.map_or(0, |st| st.listeners),
                s.max_listeners
            ),
            ports_text(&s.ports),
        ]);
    }
    render(&t)
}
