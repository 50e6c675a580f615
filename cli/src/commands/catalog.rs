//! `catalog types|options` and `usage`.

use castplane_proto::v1 as pb;

use super::Ctx;
use crate::cli::{CatalogCommand, ResellerFilter};
use crate::error::Result;
use crate::json::{self, ToJson};
use crate::lookup;
use crate::output::{enum_text, limit_text, render, table};

pub async fn run(ctx: &Ctx, command: CatalogCommand) -> Result<()> {
    let mut client = ctx.api.catalog.clone();
    match command {
        CatalogCommand::Types => {
            let types = client
                .list_service_types(pb::ListServiceTypesRequest {})
                .await?
                .into_inner()
                .service_types;
            ctx.out.emit(
                || json::list("service_types", &types),
                || {
                    let mut t = table([
                        "TYPE",
                        "KIND",
                        "NAME",
                        "REQUIRES",
                        "AUTODJ",
                        "PORTS",
                        "DESCRIPTION",
                    ]);
                    for info in &types {
                        t.add_row(vec![
                            enum_text::<pb::ServiceType>(info.r#type),
                            enum_text::<pb::ServiceKind>(info.kind),
                            info.display_name.clone(),
                            info.requires.join(", "),
                            yes_no(info.supports_autodj),
                            info.ports_per_service.to_string(),
                            info.description.clone(),
                        ]);
                    }
                    render(&t)
                },
            )
        }
        CatalogCommand::Options(filter) => {
            let options = client
                .get_provisioning_options(pb::GetProvisioningOptionsRequest {
                    reseller_id: filter.reseller.unwrap_or_default(),
                })
                .await?
                .into_inner();
            ctx.out.emit(
                || options.to_json(),
                || {
                    let mut t = table(["TYPE", "KIND", "NAME", "AUTODJ", "DEFAULT"]);
                    for info in &options.allowed_service_types {
                        t.add_row(vec![
                            enum_text::<pb::ServiceType>(info.r#type),
                            enum_text::<pb::ServiceKind>(info.kind),
                            info.display_name.clone(),
                            yes_no(info.supports_autodj),
                            if info.r#type == options.default_service_type {
                                "yes".to_owned()
                            } else {
                                String::new()
                            },
                        ]);
                    }
                    if options.allowed_service_types.is_empty() {
                        format!(
                            "Reseller {} may not provision any service type.",
                            options.reseller_id
                        )
                    } else {
                        format!("Reseller {}\n{}", options.reseller_id, render(&t))
                    }
                },
            )
        }
    }
}

/// One reseller's usage; as the admin without `--reseller`, every reseller's.
pub async fn usage(ctx: &Ctx, filter: ResellerFilter) -> Result<()> {
    if let Some(reseller) = filter.reseller {
        let usage = fetch_usage(ctx, reseller).await?;
        return ctx.out.emit(
            || usage.to_json(),
            || format!("Reseller {}\n{}", usage.reseller_id, usage_table(&usage)),
        );
    }
    let mut accounts = ctx.api.accounts.clone();
    let caller = accounts
        .get_caller(pb::GetCallerRequest {})
        .await?
        .into_inner();
    if caller.principal_kind != pb::PrincipalKind::Admin as i32 {
        let usage = fetch_usage(ctx, String::new()).await?;
        return ctx.out.emit(
            || usage.to_json(),
            || format!("Reseller {}\n{}", caller.display_name, usage_table(&usage)),
        );
    }
    let resellers = lookup::list_resellers(&ctx.api).await?;
    let mut usages = Vec::with_capacity(resellers.len());
    for reseller in &resellers {
        usages.push(fetch_usage(ctx, reseller.id.clone()).await?);
    }
    ctx.out.emit(
        || json::list("resellers", &usages),
        || {
            if resellers.is_empty() {
                return "No resellers yet.".to_owned();
            }
            resellers
                .iter()
                .zip(&usages)
                .map(|(r, u)| format!("Reseller {} ({})\n{}", r.display_name, r.id, usage_table(u)))
                .collect::<Vec<_>>()
                .join("\n\n")
        },
    )
}

pub async fn fetch_usage(ctx: &Ctx, reseller_id: String) -> Result<pb::ResellerUsage> {
    let mut client = ctx.api.catalog.clone();
    Ok(client
        .get_reseller_usage(pb::GetResellerUsageRequest { reseller_id })
        .await?
        .into_inner())
}

/// RESOURCE / USED / LIMIT / AVAILABLE, as the creation wizard shows it too.
pub fn usage_table(usage: &pb::ResellerUsage) -> String {
    let mut t = table(["RESOURCE", "USED", "LIMIT", "AVAILABLE"]);
    for r in &usage.resources {
        t.add_row(vec![
            resource_label(r.resource),
            r.used.to_string(),
            limit_text(r.limit.as_ref()),
            available_text(r.available),
        ]);
    }
    render(&t)
}

pub fn available_text(available: Option<u64>) -> String {
    available.map_or_else(|| "unlimited".to_owned(), |a| a.to_string())
}

pub fn resource_label(resource: i32) -> String {
    match pb::Resource::try_from(resource) {
        Ok(pb::Resource::Customers) => "customers".to_owned(),
        Ok(pb::Resource::Services) => "services".to_owned(),
        Ok(pb::Resource::ListenerSlots) => "listener slots".to_owned(),
        Ok(pb::Resource::MaxBitrateKbps) => "max bitrate (kbps)".to_owned(),
        Ok(pb::Resource::DiskMb) => "disk (MB)".to_owned(),
        Ok(pb::Resource::BandwidthGbPerMonth) => "bandwidth (GB/month)".to_owned(),
        _ => enum_text::<pb::Resource>(resource),
    }
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}
