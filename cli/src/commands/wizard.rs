//! `service create`: straight from flags, or the three-step creation wizard on a terminal for
//! whatever flags are missing — 1) customer, 2) service type, 3) configuration.
//!
//! The prompts are blocking calls on the runtime's only thread; nothing else needs to run
//! while a person is typing.

use std::io::IsTerminal;

use castplane_proto::v1 as pb;
use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, Select};

use super::Ctx;
use super::catalog::{available_text, fetch_usage, usage_table};
use super::service::service_detail;
use crate::cli::{CreateServiceArgs, ServiceTypeArg};
use crate::error::{CliError, Result};
use crate::json::ToJson;
use crate::lookup;
use crate::output::enum_text;

/// The flags a creation needs, in the order the wizard asks for them.
pub fn missing_flags(args: &CreateServiceArgs) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if args.customer.is_none() {
        missing.push("--customer");
    }
    if args.service_type.is_none() {
        missing.push("--type");
    }
    if args.name.is_none() {
        missing.push("--name");
    }
    if args.max_listeners.is_none() {
        missing.push("--max-listeners");
    }
    if args.max_bitrate_kbps.is_none() {
        missing.push("--max-bitrate-kbps");
    }
    if args.disk_mb.is_none() {
        missing.push("--disk-mb");
    }
    if args.bandwidth_gb.is_none() {
        missing.push("--bandwidth-gb");
    }
    missing
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Without a terminal there is nobody to ask: name every missing flag at once.
pub fn precheck(args: &CreateServiceArgs) -> Result<()> {
    let missing = missing_flags(args);
    if missing.is_empty() || interactive() {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "missing required flags: {}. Give them all, or run `castctl service create` in a terminal to be asked",
        missing.join(", ")
    )))
}

fn wire_type(t: ServiceTypeArg) -> pb::ServiceType {
    match t {
        ServiceTypeArg::Icecast => pb::ServiceType::Icecast,
        ServiceTypeArg::Shoutcast => pb::ServiceType::Shoutcast,
        ServiceTypeArg::Video => pb::ServiceType::Video,
    }
}

/// Everything a create request needs, once collected.
struct Collected {
    customer_id: String,
    service_type: pb::ServiceType,
    remember_type: bool,
    name: String,
    display_name: String,
    max_listeners: u32,
    max_bitrate_kbps: u32,
    disk_mb: u64,
    bandwidth_gb: u64,
    autodj: bool,
}

pub async fn create(ctx: &Ctx, args: CreateServiceArgs) -> Result<()> {
    precheck(&args)?;
    // Names are resolved here; ids are passed on for the server to check (resellers may not
    // list nodes, but may name one they were given).
    let node_id = match &args.node {
        Some(node) if node.starts_with("node_") => node.clone(),
        Some(node) => lookup::node(&ctx.api, node).await?.id,
        None => String::new(),
    };
    let collected = match from_flags(&args) {
        Some(collected) => collected,
        None => wizard(ctx, args).await?,
    };
    let request = pb::CreateMediaServiceRequest {
        media_service: Some(pb::MediaService {
            customer_id: collected.customer_id,
            r#type: collected.service_type as i32,
            name: collected.name,
            display_name: collected.display_name,
            max_listeners: collected.max_listeners,
            max_bitrate_kbps: collected.max_bitrate_kbps,
            disk_quota_mb: collected.disk_mb,
            bandwidth_gb_per_month: collected.bandwidth_gb,
            autodj: collected.autodj,
            node_id,
            ..Default::default()
        }),
        remember_type_as_default: collected.remember_type,
    };
    let mut client = ctx.api.media.clone();
    let service = client.create_media_service(request).await?.into_inner();
    ctx.out.emit(
        || service.to_json(),
        || {
            format!(
                "{}\nCreated (stopped); start it with `castctl service start {}`.",
                service_detail(&service),
                service.name
            )
        },
    )
}

fn from_flags(args: &CreateServiceArgs) -> Option<Collected> {
    Some(Collected {
        customer_id: args.customer.clone()?,
        service_type: wire_type(args.service_type?),
        remember_type: args.remember_type,
        name: args.name.clone()?,
        display_name: args.display_name.clone().unwrap_or_default(),
        max_listeners: args.max_listeners?,
        max_bitrate_kbps: args.max_bitrate_kbps?,
        disk_mb: args.disk_mb?,
        bandwidth_gb: args.bandwidth_gb?,
        autodj: args.autodj,
    })
}

async fn wizard(ctx: &Ctx, args: CreateServiceArgs) -> Result<Collected> {
    let theme = ColorfulTheme::default();

    // Step 1: the customer.
    let customer_id = match args.customer.clone() {
        Some(id) => id,
        None => pick_customer(ctx, &theme, args.reseller.clone()).await?,
    };
    // Steps 2 and 3 are about the customer's reseller, which the customer record names.
    let mut accounts = ctx.api.accounts.clone();
    let customer = accounts
        .get_customer(pb::GetCustomerRequest {
            id: customer_id.clone(),
        })
        .await?
        .into_inner();
    let reseller_id = customer.reseller_id.clone();

    // Step 2: the service type.
    let mut catalog = ctx.api.catalog.clone();
    let options = catalog
        .get_provisioning_options(pb::GetProvisioningOptionsRequest {
            reseller_id: reseller_id.clone(),
        })
        .await?
        .into_inner();
    let (service_type, remember_type) = match args.service_type {
        Some(t) => (wire_type(t), args.remember_type),
        None => pick_type(&theme, &options, args.remember_type)?,
    };
    let supports_autodj = options
        .allowed_service_types
        .iter()
        .any(|info| info.r#type == service_type as i32 && info.supports_autodj);

    // Step 3: the configuration, next to what the reseller has left.
    let usage = fetch_usage(ctx, reseller_id.clone()).await?;
    eprintln!("\nStep 3 of 3: configuration. Reseller {reseller_id}:");
    eprintln!("{}\n", usage_table(&usage));
    let amount = |resource: pb::Resource| {
        usage
            .resources
            .iter()
            .find(|r| r.resource == resource as i32)
            .and_then(|r| r.available)
    };
    let available = |resource: pb::Resource| available_text(amount(resource));
    let name = match args.name {
        Some(name) => name,
        None => Input::<String>::with_theme(&theme)
            .with_prompt("Service name (lowercase letters, digits and hyphens)")
            .interact_text()?,
    };
    let display_name = match args.display_name {
        Some(text) => text,
        None => Input::<String>::with_theme(&theme)
            .with_prompt("Display name shown to listeners (empty: the service name)")
            .allow_empty(true)
            .interact_text()?,
    };
    let max_listeners = match args.max_listeners {
        Some(n) => n,
        None => Input::<u32>::with_theme(&theme)
            .with_prompt(format!(
                "Max listeners (listener slots available: {})",
                available(pb::Resource::ListenerSlots)
            ))
            .validate_with(within(
                amount(pb::Resource::ListenerSlots),
                "listener slots are available",
            ))
            .interact_text()?,
    };
    let max_bitrate_kbps = match args.max_bitrate_kbps {
        Some(n) => n,
        None => Input::<u32>::with_theme(&theme)
            .with_prompt(format!(
                "Max bitrate in kbps (at most: {})",
                available(pb::Resource::MaxBitrateKbps)
            ))
            .validate_with(within(
                amount(pb::Resource::MaxBitrateKbps),
                "kbps is the reseller's cap per service",
            ))
            .interact_text()?,
    };
    let disk_mb = match args.disk_mb {
        Some(n) => n,
        None => Input::<u64>::with_theme(&theme)
            .with_prompt(format!(
                "Disk quota in MB (available: {})",
                available(pb::Resource::DiskMb)
            ))
            .validate_with(within(amount(pb::Resource::DiskMb), "MB are available"))
            .interact_text()?,
    };
    let bandwidth_gb = match args.bandwidth_gb {
        Some(n) => n,
        None => Input::<u64>::with_theme(&theme)
            .with_prompt(format!(
                "Bandwidth in GB per month (available: {})",
                available(pb::Resource::BandwidthGbPerMonth)
            ))
            .validate_with(within(
                amount(pb::Resource::BandwidthGbPerMonth),
                "GB per month are available",
            ))
            .interact_text()?,
    };
    let autodj = if args.autodj || !supports_autodj {
        args.autodj
    } else {
        Confirm::with_theme(&theme)
            .with_prompt("Enable AutoDJ (play the owner's media library)?")
            .default(false)
            .interact()?
    };
    let go = Confirm::with_theme(&theme)
        .with_prompt(format!(
            "Create {} service {name:?} for {} ({})?",
            enum_text::<pb::ServiceType>(service_type as i32),
            customer.display_name,
            customer_kind_text(&customer)
        ))
        .default(true)
        .interact()?;
    if !go {
        return Err(CliError::failed("cancelled; nothing was created"));
    }
    Ok(Collected {
        customer_id,
        service_type,
        remember_type,
        name,
        display_name,
        max_listeners,
        max_bitrate_kbps,
        disk_mb,
        bandwidth_gb,
        autodj,
    })
}

/// Checks an amount as it is typed against what the reseller still has (`None`: unlimited),
/// so the wizard asks again instead of failing once everything has been entered.
fn within<T: Copy + Into<u64>>(
    available: Option<u64>,
    what: &'static str,
) -> impl FnMut(&T) -> std::result::Result<(), String> {
    move |value: &T| match available {
        Some(available) if (*value).into() > available => Err(format!("only {available} {what}")),
        _ => Ok(()),
    }
}

fn customer_kind_text(customer: &pb::Customer) -> &'static str {
    if customer.kind == pb::CustomerKind::PrimaryAccount as i32 {
        "the reseller's primary account"
    } else {
        "sub-account"
    }
}

async fn pick_customer(
    ctx: &Ctx,
    theme: &ColorfulTheme,
    reseller: Option<String>,
) -> Result<String> {
    let mut accounts = ctx.api.accounts.clone();
    if reseller.is_none() {
        let caller = accounts
            .get_caller(pb::GetCallerRequest {})
            .await?
            .into_inner();
        if caller.principal_kind == pb::PrincipalKind::Admin as i32 {
            return Err(CliError::usage(
                "as the admin, pass --reseller ID so the wizard can list that reseller's customers (or pass --customer ID)",
            ));
        }
    }
    let choices = accounts
        .list_customer_choices(pb::ListCustomerChoicesRequest {
            reseller_id: reseller.unwrap_or_default(),
        })
        .await?
        .into_inner()
        .choices;
    if choices.is_empty() {
        return Err(CliError::failed(
            "the reseller has no customers to choose from",
        ));
    }
    eprintln!("Step 1 of 3: customer");
    // In the server's order, which is the wizard's a–z order.
    let items: Vec<String> = choices
        .iter()
        .map(|c| format!("{} — {} ({})", c.display_name, c.label, c.customer_id))
        .collect();
    let index = Select::with_theme(theme)
        .with_prompt("Create the service for")
        .items(&items)
        .default(0)
        .interact()?;
    choices
        .get(index)
        .map(|c| c.customer_id.clone())
        .ok_or_else(|| CliError::failed("no customer selected"))
}

fn pick_type(
    theme: &ColorfulTheme,
    options: &pb::ProvisioningOptions,
    remember_flag: bool,
) -> Result<(pb::ServiceType, bool)> {
    let allowed = &options.allowed_service_types;
    if allowed.is_empty() {
        return Err(CliError::failed(format!(
            "reseller {} may not provision any service type; the provider decides which",
            options.reseller_id
        )));
    }
    eprintln!("\nStep 2 of 3: service type");
    let items: Vec<String> = allowed
        .iter()
        .map(|info| {
            let mut text = format!(
                "{} ({}) — {}",
                info.display_name,
                enum_text::<pb::ServiceKind>(info.kind),
                info.description
            );
            if info.r#type == options.default_service_type {
                text.push_str(" [default]");
            }
            text
        })
        .collect();
    let preselected = allowed
        .iter()
        .position(|info| info.r#type == options.default_service_type)
        .unwrap_or(0);
    let index = Select::with_theme(theme)
        .with_prompt("Service type")
        .items(&items)
        .default(preselected)
        .interact()?;
    let chosen = allowed
        .get(index)
        .and_then(|info| pb::ServiceType::try_from(info.r#type).ok())
        .ok_or_else(|| CliError::failed("no service type selected"))?;
    let remember = remember_flag
        || Confirm::with_theme(theme)
            .with_prompt("Use selected type as default in the future?")
            .default(false)
            .interact()?;
    Ok((chosen, remember))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_flag_is_named() {
        let args = CreateServiceArgs {
            customer: Some("cus_1".into()),
            max_listeners: Some(10),
            ..Default::default()
        };
        assert_eq!(
            missing_flags(&args),
            vec![
                "--type",
                "--name",
                "--max-bitrate-kbps",
                "--disk-mb",
                "--bandwidth-gb"
            ]
        );
        assert!(from_flags(&args).is_none());
    }

    #[test]
    fn amounts_are_checked_against_what_is_available() {
        let mut slots = within::<u32>(Some(500), "listener slots are available");
        assert!(slots(&500).is_ok());
        assert_eq!(
            slots(&600).unwrap_err(),
            "only 500 listener slots are available"
        );
        let mut unlimited = within::<u64>(None, "MB are available");
        assert!(unlimited(&u64::MAX).is_ok());
    }

    #[test]
    fn complete_flags_need_no_wizard() {
        let args = CreateServiceArgs {
            customer: Some("cus_1".into()),
            service_type: Some(ServiceTypeArg::Icecast),
            name: Some("radio".into()),
            max_listeners: Some(10),
            max_bitrate_kbps: Some(128),
            disk_mb: Some(100),
            bandwidth_gb: Some(5),
            ..Default::default()
        };
        assert!(missing_flags(&args).is_empty());
        let collected = from_flags(&args).expect("complete");
        assert_eq!(collected.service_type, pb::ServiceType::Icecast);
        assert!(precheck(&args).is_ok());
    }
}
