//! Conversions between wire messages and the service layer's inputs and outputs. Request
//! conversions validate everything at once and fail with INVALID_ARGUMENT.

use castplane_proto::v1 as pb;

use crate::clock::to_timestamp;
use crate::domain::Principal;
use crate::domain::{
    Limits, ObservedState, Resource, ServiceStats, ServiceType, service_type_from_wire,
};
use crate::error::{ServiceError, Violations};
use crate::service::limits_of;
use crate::service::records;
use crate::service::{ActionRecord, CallerView, DeletionPlan, MediaServiceView, NodeView};

pub const MAX_NAME_CHARS: usize = 200;

/// Free-text names: non-blank, bounded, no control characters (they end up in config files,
/// which escape them, and in terminals, which should not be driven by them).
pub fn check_display_name(violations: &mut Violations, field: &str, value: &str) {
    if value.trim().is_empty() {
        violations.add(field, "must not be empty");
    } else if value.chars().count() > MAX_NAME_CHARS {
        violations.add(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        );
    } else if value.chars().any(char::is_control) {
        violations.add(field, "must not contain control characters");
    }
}

pub fn check_email(violations: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    let plausible = value.len() <= 254
        && value
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    violations.check(plausible, field, "is not an email address");
}

/// Service names: a DNS-label-like slug, used in paths and on the command line.
pub fn check_service_name(violations: &mut Violations, field: &str, value: &str) {
    let ok = (1..=63).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    violations.check(
        ok,
        field,
        "must be 1-63 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen",
    );
}

/// A reseller's limits from the wire; an absent `Limit` or `max` is unlimited. Each number must
/// be within [`Resource::max_limit`]: past it, "unlimited" is the only way.
pub fn limits_from_wire(
    violations: &mut Violations,
    field: &str,
    limits: Option<&pb::ResellerLimits>,
) -> Limits {
    let Some(l) = limits else {
        return Limits::default();
    };
    let mut out = Limits::default();
    for resource in Resource::ALL {
        let wire = match resource {
            Resource::Customers => &l.customers,
            Resource::Services => &l.services,
            Resource::ListenerSlots => &l.listener_slots,
            Resource::MaxBitrateKbps => &l.max_bitrate_kbps,
            Resource::DiskMb => &l.disk_mb,
            Resource::BandwidthGbPerMonth => &l.bandwidth_gb_per_month,
        };
        let value = wire.as_ref().and_then(|l| l.max);
        if let Some(max) = value
            && max > resource.max_limit()
        {
            violations.add(
                &format!("{field}.{}.max", wire_limit_name(resource)),
                format!(
                    "must be at most {}; leave `max` out for unlimited",
                    resource.max_limit()
                ),
            );
        }
        out.set(resource, value);
    }
    out
}

pub fn limit_to_wire(value: Option<u64>) -> Option<pb::Limit> {
    Some(pb::Limit { max: value })
}

pub fn limits_to_wire(limits: &Limits) -> pb::ResellerLimits {
    pb::ResellerLimits {
        customers: limit_to_wire(limits.customers),
        services: limit_to_wire(limits.services),
        listener_slots: limit_to_wire(limits.listener_slots),
        max_bitrate_kbps: limit_to_wire(limits.max_bitrate_kbps),
        disk_mb: limit_to_wire(limits.disk_mb),
        bandwidth_gb_per_month: limit_to_wire(limits.bandwidth_gb_per_month),
    }
}

pub fn resource_from_path(path: &str) -> Option<Resource> {
    Resource::ALL
        .into_iter()
        .find(|r| path == format!("limits.{}", wire_limit_name(*r)))
}

/// Field names of `ResellerLimits`, as field-mask paths use them.
pub fn wire_limit_name(resource: Resource) -> &'static str {
    match resource {
        Resource::Customers => "customers",
        Resource::Services => "services",
        Resource::ListenerSlots => "listener_slots",
        Resource::MaxBitrateKbps => "max_bitrate_kbps",
        Resource::DiskMb => "disk_mb",
        Resource::BandwidthGbPerMonth => "bandwidth_gb_per_month",
    }
}

/// Service types from a repeated wire enum, rejecting UNSPECIFIED and unknown values.
pub fn service_types_from_wire(
    violations: &mut Violations,
    field: &str,
    values: &[i32],
) -> Vec<ServiceType> {
    let mut out = Vec::new();
    for value in values {
        match service_type_from_wire(*value) {
            Some(t) => out.push(t),
            None => violations.add(field, format!("{value} is not a service type")),
        }
    }
    out
}

pub fn reseller_to_wire(model: &records::Reseller) -> pb::Reseller {
    pb::Reseller {
        id: model.id.clone(),
        display_name: model.display_name.clone(),
        limits: Some(limits_to_wire(&limits_of(model))),
        allowed_service_types: model
            .allowed_types
            .iter()
            .map(|t| pb::ServiceType::from(t) as i32)
            .collect(),
        default_service_type: model
            .default_type
            .map_or(pb::ServiceType::Unspecified, pb::ServiceType::from)
            as i32,
        primary_customer_id: model.primary_customer_id.clone(),
        create_time: Some(to_timestamp(model.create_time)),
        update_time: Some(to_timestamp(model.update_time)),
        delete_request_time: model.delete_request_time.map(to_timestamp),
    }
}

/// A principal named on the wire by kind and id (empty for the admin).
pub fn principal_from_wire(kind: i32, id: &str) -> Result<Principal, ServiceError> {
    let id = || {
        if id.is_empty() {
            Err(ServiceError::invalid_field("principal_id", "required"))
        } else {
            Ok(id.to_owned())
        }
    };
    match pb::PrincipalKind::try_from(kind) {
        Ok(pb::PrincipalKind::Admin) => Ok(Principal::Admin),
        Ok(pb::PrincipalKind::Reseller) => Ok(Principal::Reseller { id: id()? }),
        Ok(pb::PrincipalKind::Customer) => Ok(Principal::Customer {
            id: id()?,
            reseller_id: String::new(),
        }),
        Ok(pb::PrincipalKind::Unspecified) | Err(_) => Err(ServiceError::invalid_field(
            "principal_kind",
            "must be ADMIN, RESELLER or CUSTOMER",
        )),
    }
}

pub fn principal_kind_to_wire(kind: &str) -> pb::PrincipalKind {
    match kind {
        "admin" => pb::PrincipalKind::Admin,
        "reseller" => pb::PrincipalKind::Reseller,
        "customer" => pb::PrincipalKind::Customer,
        _ => pb::PrincipalKind::Unspecified,
    }
}

pub fn caller_to_wire(view: &CallerView) -> pb::Caller {
    let (kind, id) = view.principal.stored_key();
    pb::Caller {
        principal_kind: principal_kind_to_wire(kind) as i32,
        principal_id: id.to_owned(),
        display_name: view.display_name.clone(),
    }
}

pub fn customer_kind(model: &records::Customer) -> pb::CustomerKind {
    if model.is_primary {
        pb::CustomerKind::PrimaryAccount
    } else {
        pb::CustomerKind::SubAccount
    }
}

pub fn customer_to_wire(model: &records::Customer) -> pb::Customer {
    pb::Customer {
        id: model.id.clone(),
        reseller_id: model.reseller_id.clone(),
        display_name: model.display_name.clone(),
        email: model.email.clone(),
        kind: customer_kind(model) as i32,
        create_time: Some(to_timestamp(model.create_time)),
        update_time: Some(to_timestamp(model.update_time)),
        delete_request_time: model.delete_request_time.map(to_timestamp),
    }
}

pub fn customer_choice(model: &records::Customer) -> pb::CustomerChoice {
    pb::CustomerChoice {
        customer_id: model.id.clone(),
        display_name: model.display_name.clone(),
        kind: customer_kind(model) as i32,
        label: if model.is_primary {
            "reseller (primary account)"
        } else {
            "sub-account"
        }
        .to_owned(),
    }
}

pub fn stats_to_wire(stats: &ServiceStats) -> pb::ServiceStats {
    pb::ServiceStats {
        listeners: stats.listeners,
        sources: stats.sources,
        mounts: stats.mounts.clone(),
        bytes_sent: stats.bytes_sent,
        bytes_read: stats.bytes_read,
    }
}

pub fn media_service_to_wire(view: &MediaServiceView) -> pb::MediaService {
    let s = &view.service;
    pb::MediaService {
        id: s.id.clone(),
        name: s.name.clone(),
        display_name: s.display_name.clone(),
        customer_id: s.customer_id.clone(),
        reseller_id: s.reseller_id.clone(),
        r#type: pb::ServiceType::from(s.service_type) as i32,
        kind: s.service_type.info().kind,
        max_listeners: s.max_listeners as u32,
        max_bitrate_kbps: s.max_bitrate_kbps as u32,
        disk_quota_mb: s.disk_quota_mb as u64,
        bandwidth_gb_per_month: s.bandwidth_gb_per_month as u64,
        autodj: s.autodj,
        node_id: s.node_id.clone(),
        ports: view
            .ports
            .iter()
            .map(|p| pb::PortAssignment {
                purpose: p.purpose.clone(),
                port: p.port as u32,
            })
            .collect(),
        desired_state: pb::DesiredState::from(s.desired_state) as i32,
        status: Some(match &view.observed {
            // A tombstone runs nothing, whatever its node last said before the delete.
            _ if s.delete_time.is_some() => pb::ServiceStatus {
                state: pb::ObservedState::from(ObservedState::Stopped) as i32,
                message: "deleted".to_owned(),
                stats: Some(pb::ServiceStats::default()),
                observe_time: s.delete_time.map(to_timestamp),
            },
            Some(o) => pb::ServiceStatus {
                state: pb::ObservedState::from(o.state) as i32,
                message: o.message.clone(),
                stats: Some(stats_to_wire(&o.stats)),
                observe_time: Some(to_timestamp(o.observe_time)),
            },
            None => pb::ServiceStatus {
                state: pb::ObservedState::from(ObservedState::Unknown) as i32,
                message: String::new(),
                stats: Some(pb::ServiceStats::default()),
                observe_time: None,
            },
        }),
        create_time: Some(to_timestamp(s.create_time)),
        update_time: Some(to_timestamp(s.update_time)),
        deleting: s.deleting && s.delete_time.is_none(),
        delete_time: s.delete_time.map(to_timestamp),
        state: match (s.delete_time, s.deleting) {
            (Some(_), _) => pb::MediaServiceState::Deleted,
            (None, true) => pb::MediaServiceState::Deleting,
            (None, false) => pb::MediaServiceState::Active,
        } as i32,
        generation: u64::try_from(s.generation).unwrap_or_default(),
        observed_generation: view
            .observed
            .as_ref()
            .and_then(|o| u64::try_from(o.observed_generation).ok())
            .unwrap_or_default(),
    }
}

pub fn action_to_wire(record: &ActionRecord) -> pb::Action {
    let a = &record.action;
    pb::Action {
        id: a.id.clone(),
        media_service_id: a.media_service_id.clone(),
        kind: pb::ActionKind::from(a.kind) as i32,
        state: pb::ActionState::from(a.state) as i32,
        requested_by: a.requested_by.clone(),
        error: a.error.clone(),
        sequence: a.sequence as u64,
        create_time: Some(to_timestamp(a.create_time)),
        update_time: Some(to_timestamp(a.update_time)),
        deadline: a.expire_time.map(to_timestamp),
        transitions: record
            .transitions()
            .iter()
            .map(|t| pb::ActionTransition {
                state: pb::ActionState::from(t.state) as i32,
                time: Some(to_timestamp(t.time)),
                message: t.message.clone(),
            })
            .collect(),
        node_id: a.node_id.clone(),
        late_state: a
            .late_state
            .map(|s| pb::ActionState::from(s) as i32)
            .unwrap_or_default(),
        late_message: a.late_message.clone(),
    }
}

pub fn deletion_plan_to_wire(plan: &DeletionPlan) -> pb::DeletionPlan {
    pb::DeletionPlan {
        kept: plan.kept.clone(),
        destroyed: plan.destroyed.clone(),
        requires_confirmation: plan.requires_confirmation,
    }
}

pub fn ownership_change_to_wire(model: &records::OwnershipChange) -> pb::OwnershipChange {
    pb::OwnershipChange {
        media_service_id: model.media_service_id.clone(),
        from_customer_id: model.from_customer_id.clone(),
        to_customer_id: model.to_customer_id.clone(),
        from_reseller_id: model.from_reseller_id.clone(),
        to_reseller_id: model.to_reseller_id.clone(),
        changed_by: model.changed_by.clone(),
        change_time: Some(to_timestamp(model.change_time)),
    }
}

pub fn node_to_wire(view: &NodeView) -> pb::Node {
    let n = &view.node;
    let status = if n.join_time.is_none() {
        pb::NodeStatus::PendingJoin
    } else if view.online {
        pb::NodeStatus::Online
    } else {
        pb::NodeStatus::Unreachable
    };
    pb::Node {
        id: n.id.clone(),
        name: n.name.clone(),
        public_host: n.public_host.clone(),
        port_range: Some(pb::PortRange {
            first: n.port_first as u32,
            last: n.port_last as u32,
        }),
        capacity: n.capacity as u32,
        status: status as i32,
        capabilities: view
            .capabilities
            .0
            .iter()
            .map(|c| pb::PluginCapability {
                r#type: pb::ServiceType::from(c.service_type) as i32,
                available: c.available,
                version: c.version.clone(),
                detail: c.detail.clone(),
                autodj_available: c.autodj_available,
            })
            .collect(),
        service_count: view.service_count,
        ports_used: view.ports_used,
        agent_version: n.agent_version.clone(),
        last_heartbeat_time: n.last_heartbeat_time.map(to_timestamp),
        join_time: n.join_time.map(to_timestamp),
        certificate_expire_time: n.cert_expire_time.map(to_timestamp),
        create_time: Some(to_timestamp(n.create_time)),
        bind_address: n.bind_address.clone(),
    }
}

/// Checks a field mask against the paths an Update accepts.
pub fn mask_paths(
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> Result<Vec<String>, ServiceError> {
    let Some(mask) = mask.filter(|m| !m.paths.is_empty()) else {
        return Err(ServiceError::invalid_field(
            "update_mask",
            format!("required; paths: {}", allowed.join(", ")),
        ));
    };
    let mut violations = Violations::default();
    for path in &mask.paths {
        let known = allowed
            .iter()
            .any(|a| a == path || (a.ends_with(".*") && path.starts_with(a.trim_end_matches('*'))));
        violations.check(
            known,
            "update_mask",
            format!("unknown path {path:?}; allowed: {}", allowed.join(", ")),
        );
    }
    violations.into_result()?;
    Ok(mask.paths.clone())
}

pub fn api_token_to_wire(model: &records::ApiToken) -> pb::ApiToken {
    pb::ApiToken {
        id: model.id.clone(),
        principal_kind: principal_kind_to_wire(&model.principal_kind) as i32,
        principal_id: model.principal_id.clone(),
        description: model.description.clone(),
        create_time: Some(to_timestamp(model.create_time)),
    }
}

pub fn account_deletion_to_wire(
    deletion: &crate::service::AccountDeletion,
) -> pb::DeleteAccountResponse {
    let plan = &deletion.plan;
    pb::DeleteAccountResponse {
        plan: Some(pb::AccountDeletionPlan {
            accounts: plan.accounts.clone(),
            media_service_ids: plan.media_service_ids.clone(),
            destroyed: plan.destroyed.clone(),
            kept: plan.kept.clone(),
            requires_confirmation: plan.requires_confirmation,
        }),
        actions: deletion.actions.iter().map(action_to_wire).collect(),
        deleted: deletion.deleted,
    }
}
