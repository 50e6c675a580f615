//! `reseller create|list|get|update|delete`.

use castplane_proto::v1 as pb;
use prost_types::FieldMask;

use super::Ctx;
use crate::cli::{LimitArgs, ResellerCommand};
use crate::error::{CliError, Result};
use crate::json::{self, ToJson};
use crate::lookup;
use crate::output::{enum_text, fields, limit_text, render, table, time_text, types_text};
use crate::parse::LimitArg;

impl LimitArgs {
    /// Each given limit with its FieldMask path.
    fn given(&self) -> Vec<(&'static str, LimitArg)> {
        [
            ("limits.customers", self.max_customers),
            ("limits.services", self.max_services),
            ("limits.listener_slots", self.max_listener_slots),
            ("limits.max_bitrate_kbps", self.max_bitrate_kbps),
            ("limits.disk_mb", self.max_disk_mb),
            ("limits.bandwidth_gb_per_month", self.max_bandwidth_gb),
        ]
        .into_iter()
        .filter_map(|(path, limit)| limit.map(|l| (path, l)))
        .collect()
    }

    /// The wire limits; a limit not given is absent, which the server reads as unlimited.
    fn to_wire(&self) -> pb::ResellerLimits {
        let wire = |l: Option<LimitArg>| l.map(LimitArg::to_wire);
        pb::ResellerLimits {
            customers: wire(self.max_customers),
            services: wire(self.max_services),
            listener_slots: wire(self.max_listener_slots),
            max_bitrate_kbps: wire(self.max_bitrate_kbps),
            disk_mb: wire(self.max_disk_mb),
            bandwidth_gb_per_month: wire(self.max_bandwidth_gb),
        }
    }
}

pub async fn run(ctx: &Ctx, command: ResellerCommand) -> Result<()> {
    let mut client = ctx.api.accounts.clone();
    match command {
        ResellerCommand::Create {
            name,
            limits,
            allow_types,
            default_type,
        } => {
            let reseller = pb::Reseller {
                display_name: name,
                limits: Some(limits.to_wire()),
                allowed_service_types: allow_types
                    .map(|t| t.0.into_iter().map(|t| t as i32).collect())
                    .unwrap_or_default(),
                default_service_type: default_type.and_then(|d| d.0).map_or(0, |t| t as i32),
                ..Default::default()
            };
            let created = client
                .create_reseller(pb::CreateResellerRequest {
                    reseller: Some(reseller),
                })
                .await?
                .into_inner();
            show(ctx, &created)
        }
        ResellerCommand::List => {
            let resellers = lookup::list_resellers(&ctx.api).await?;
            ctx.out.emit(
                || json::list("resellers", &resellers),
                || list_table(&resellers),
            )
        }
        ResellerCommand::Get { id } => {
            let reseller = client
                .get_reseller(pb::GetResellerRequest { id })
                .await?
                .into_inner();
            show(ctx, &reseller)
        }
        ResellerCommand::Update {
            id,
            name,
            limits,
            allow_types,
            default_type,
        } => {
            // The mask names exactly the flags given, so nothing else changes.
            let mut paths: Vec<String> = Vec::new();
            let mut reseller = pb::Reseller {
                id,
                limits: Some(limits.to_wire()),
                ..Default::default()
            };
            if let Some(name) = name {
                reseller.display_name = name;
                paths.push("display_name".into());
            }
            paths.extend(limits.given().into_iter().map(|(p, _)| p.to_owned()));
            if let Some(types) = allow_types {
                reseller.allowed_service_types = types.0.into_iter().map(|t| t as i32).collect();
                paths.push("allowed_service_types".into());
            }
            if let Some(default) = default_type {
                reseller.default_service_type = default.0.map_or(0, |t| t as i32);
                paths.push("default_service_type".into());
            }
            if paths.is_empty() {
                return Err(CliError::usage(
                    "nothing to change: give --name, --allow-types, --default-type or a --max-… limit",
                ));
            }
            let updated = client
                .update_reseller(pb::UpdateResellerRequest {
                    reseller: Some(reseller),
                    update_mask: Some(FieldMask { paths }),
                })
                .await?
                .into_inner();
            show(ctx, &updated)
        }
        ResellerCommand::Delete { id, options } => {
            let response = client
                .delete_reseller(pb::DeleteResellerRequest {
                    id: id.clone(),
                    force: options.force,
                    confirm_permanent_deletion: options.confirm_permanent_deletion,
                    validate_only: options.dry_run,
                })
                .await?
                .into_inner();
            super::customer::account_deletion(ctx, &id, &options, &response)
        }
    }
}

fn show(ctx: &Ctx, reseller: &pb::Reseller) -> Result<()> {
    ctx.out.emit(|| reseller.to_json(), || detail(reseller))
}

fn detail(r: &pb::Reseller) -> String {
    let l = r.limits.unwrap_or_default();
    render(&fields(vec![
        ("Id", r.id.clone()),
        ("Name", r.display_name.clone()),
        ("Primary account", r.primary_customer_id.clone()),
        ("Allowed types", types_text(&r.allowed_service_types)),
        ("Default type", default_type_text(r.default_service_type)),
        ("Max customers", limit_text(l.customers.as_ref())),
        ("Max services", limit_text(l.services.as_ref())),
        ("Max listener slots", limit_text(l.listener_slots.as_ref())),
        (
            "Max bitrate (kbps)",
            limit_text(l.max_bitrate_kbps.as_ref()),
        ),
        ("Max disk (MB)", limit_text(l.disk_mb.as_ref())),
        (
            "Max bandwidth (GB/month)",
            limit_text(l.bandwidth_gb_per_month.as_ref()),
        ),
        ("Created", time_text(r.create_time.as_ref())),
        ("Updated", time_text(r.update_time.as_ref())),
    ]))
}

fn default_type_text(value: i32) -> String {
    if value == pb::ServiceType::Unspecified as i32 {
        "none".to_owned()
    } else {
        enum_text::<pb::ServiceType>(value)
    }
}

fn list_table(resellers: &[pb::Reseller]) -> String {
    let mut t = table([
        "ID",
        "NAME",
        "TYPES",
        "DEFAULT",
        "CUSTOMERS",
        "SERVICES",
        "LISTENERS",
        "BITRATE",
        "DISK-MB",
        "BW-GB",
    ]);
    for r in resellers {
        let l = r.limits.unwrap_or_default();
        t.add_row(vec![
            r.id.clone(),
            r.display_name.clone(),
            types_text(&r.allowed_service_types),
            default_type_text(r.default_service_type),
            limit_text(l.customers.as_ref()),
            limit_text(l.services.as_ref()),
            limit_text(l.listener_slots.as_ref()),
            limit_text(l.max_bitrate_kbps.as_ref()),
            limit_text(l.disk_mb.as_ref()),
            limit_text(l.bandwidth_gb_per_month.as_ref()),
        ]);
    }
    render(&t)
}
