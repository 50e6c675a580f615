//! Media services: creation (the wizard), listing by scope, configuration, ownership.

use crate::persistence::Tx;

use super::accounts::limits_of;
use super::nodes::place_service;
use super::{ControlPlane, Result, can_see_customer, can_see_service, page_size, require_manager};
use crate::clock::now_millis;
use crate::domain::{
    Demand, DesiredState, Limits, Principal, Resource, ServiceKind, ServiceType, Usage,
};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::dispatch as dispatch_db;
use crate::persistence::entities::{
    media_service, observed_service, ownership_change, port_allocation, reseller,
};
use crate::persistence::services::ServiceFilter;
use crate::persistence::{accounts as account_db, nodes as node_db, services as db};

pub struct NewMediaService {
    pub customer_id: String,
    pub service_type: ServiceType,
    pub name: String,
    pub display_name: String,
    pub max_listeners: u32,
    pub max_bitrate_kbps: u32,
    pub disk_quota_mb: u64,
    pub bandwidth_gb_per_month: u64,
    pub autodj: bool,
    pub node_id: Option<String>,
    pub remember_type_as_default: bool,
}

#[derive(Clone, Default)]
pub struct MediaServicePatch {
    pub display_name: Option<String>,
    pub max_listeners: Option<u32>,
    pub max_bitrate_kbps: Option<u32>,
    pub disk_quota_mb: Option<u64>,
    pub bandwidth_gb_per_month: Option<u64>,
    pub autodj: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceScope {
    All,
    MyServices,
    CustomerServices,
}

/// A service with its ports, as the API shows it.
#[derive(Clone, Debug)]
pub struct MediaServiceView {
    pub service: media_service::Model,
    pub ports: Vec<port_allocation::Model>,
    /// What its node last reported; `None` before the first report.
    pub observed: Option<observed_service::Model>,
}

/// What a deletion keeps and what it destroys.
#[derive(Clone, Debug)]
pub struct DeletionPlan {
    pub kept: Vec<String>,
    pub destroyed: Vec<String>,
    pub requires_confirmation: bool,
}

/// Connection details, including the source password.
pub struct ConnectionView {
    pub service_id: String,
    pub stream_url: String,
    pub source_host: String,
    pub source_port: u32,
    pub mount: String,
    pub source_username: String,
    pub source_password: String,
    pub ingest_url: String,
}

fn demand_of(service: &media_service::Model) -> Demand {
    Demand {
        services: 1,
        listener_slots: service.max_listeners as u64,
        max_bitrate_kbps: service.max_bitrate_kbps as u64,
        disk_mb: service.disk_quota_mb as u64,
        bandwidth_gb_per_month: service.bandwidth_gb_per_month as u64,
    }
}

/// Refuses a demand that does not fit what the reseller has left. Pools are checked on the
/// increase asked for; the bitrate cap applies to the service's bitrate itself.
fn check_quota(reseller_id: &str, limits: &Limits, usage: &Usage, demand: &Demand) -> Result<()> {
    let pools = [
        (Resource::Services, demand.services),
        (Resource::ListenerSlots, demand.listener_slots),
        (Resource::DiskMb, demand.disk_mb),
        (Resource::BandwidthGbPerMonth, demand.bandwidth_gb_per_month),
    ];
    for (resource, asked) in pools {
        let (Some(limit), Some(available)) =
            (limits.get(resource), usage.available(limits, resource))
        else {
            continue;
        };
        if asked > available {
            return Err(ServiceError::QuotaExceeded {
                message: format!(
                    "quota exceeded for {}: asked for {asked}, {available} available (limit {limit}, {} in use)",
                    resource.name(),
                    usage.get(resource)
                ),
                resource,
                subject: format!("reseller:{reseller_id}"),
                asked,
                available,
            });
        }
    }
    if let Some(cap) = limits.max_bitrate_kbps
        && demand.max_bitrate_kbps > cap
    {
        return Err(ServiceError::QuotaExceeded {
            message: format!(
                "quota exceeded for max_bitrate_kbps: asked for {}, {cap} available (the per-service cap)",
                demand.max_bitrate_kbps
            ),
            resource: Resource::MaxBitrateKbps,
            subject: format!("reseller:{reseller_id}"),
            asked: demand.max_bitrate_kbps,
            available: cap,
        });
    }
    Ok(())
}

fn check_type_allowed(reseller: &reseller::Model, service_type: ServiceType) -> bool {
    reseller.allowed_types.contains(service_type)
}

/// The one answer to a service type the reseller may not provision, whether on create or on
/// a move to another reseller: the request is fine, the reseller's configuration refuses it.
fn type_not_allowed(reseller_id: &str, service_type: ServiceType) -> ServiceError {
    ServiceError::precondition(
        "SERVICE_TYPE_NOT_ALLOWED",
        format!("reseller:{reseller_id}"),
        format!(
            "service type {service_type} is not allowed for reseller {reseller_id}; the admin sets which types a reseller may provision"
        ),
    )
}

fn name_conflict(err: ServiceError, name: &str) -> ServiceError {
    match err {
        ServiceError::AlreadyExists(_) => ServiceError::AlreadyExists(format!(
            "a media service named {name:?} already exists for this reseller"
        )),
        other => other,
    }
}

impl ControlPlane {
    /// The whole creation wizard in one transaction: quota, type, placement and ports are
    /// checked and taken together, or nothing is written.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn create_media_service(
        &self,
        principal: &Principal,
        new: NewMediaService,
    ) -> Result<MediaServiceView> {
        require_manager(principal, "create media services")?;
        // Nodes are the provider's business: resellers get placement, not a choice of host.
        if new.node_id.is_some() && !principal.is_admin() {
            return Err(ServiceError::PermissionDenied(
                "only the admin can choose a node".into(),
            ));
        }
        if new.autodj && new.service_type.kind() == ServiceKind::Video {
            return Err(ServiceError::invalid_field(
                "media_service.autodj",
                "AutoDJ is for audio services only",
            ));
        }
        // Two replicas can race for the last ports of a node only if the row lock is bypassed;
        // the primary key still refuses the loser, whose request runs again.
        let new = &new;
        super::retry_aborted("create_media_service", move || async move {
            let txn = self.begin().await?;
            let view = self
                .create_media_service_in(&txn, principal, new)
                .await
                .map_err(|e| name_conflict(e, &new.name))?;
            let mut changes = super::Changes::default();
            changes.nodes.insert(view.service.node_id.clone());
            self.commit(txn, changes)
                .await
                .map_err(|e| name_conflict(e, &new.name))?;
            tracing::info!(media_service_id = %view.service.id, node_id = %view.service.node_id, "created media service");
            Ok(view)
        })
        .await
    }

    async fn create_media_service_in(
        &self,
        txn: &Tx,
        principal: &Principal,
        new: &NewMediaService,
    ) -> Result<MediaServiceView> {
        // Not locked (the reseller's row below serialises creates): a create racing a forced
        // deletion of its customer can still land, and then keeps the customer waiting until
        // the deletion is repeated — the finisher deletes no account with a live service.
        let customer = account_db::get_customer(txn, &new.customer_id, false)
            .await?
            .filter(|c| can_see_customer(principal, c))
            .ok_or_else(|| {
                ServiceError::NotFound(format!("customer {:?} not found", new.customer_id))
            })?;
        if customer.delete_request_time.is_some() {
            return Err(super::deletion::account_being_deleted(&customer));
        }
        let mut reseller = account_db::get_reseller(txn, &customer.reseller_id, true)
            .await?
            .ok_or_else(|| {
                ServiceError::Internal(format!("customer {} has no reseller", customer.id))
            })?;
        if !check_type_allowed(&reseller, new.service_type) {
            return Err(type_not_allowed(&reseller.id, new.service_type));
        }
        let limits = limits_of(&reseller);
        let usage = db::reseller_usage(txn, &reseller.id).await?;
        let demand = Demand {
            services: 1,
            listener_slots: new.max_listeners as u64,
            max_bitrate_kbps: new.max_bitrate_kbps as u64,
            disk_mb: new.disk_quota_mb,
            bandwidth_gb_per_month: new.bandwidth_gb_per_month,
        };
        check_quota(&reseller.id, &limits, &usage, &demand)?;

        let service_id = ids::new_id("svc");
        let placement = place_service(
            txn,
            new.service_type,
            new.autodj,
            new.node_id.as_deref(),
            &service_id,
        )
        .await?;
        let now = now_millis();
        let model = media_service::Model {
            id: service_id,
            name: new.name.clone(),
            display_name: if new.display_name.is_empty() {
                new.name.clone()
            } else {
                new.display_name.clone()
            },
            customer_id: customer.id.clone(),
            reseller_id: reseller.id.clone(),
            service_type: new.service_type,
            max_listeners: new.max_listeners as i64,
            max_bitrate_kbps: new.max_bitrate_kbps as i64,
            disk_quota_mb: new.disk_quota_mb as i64,
            bandwidth_gb_per_month: new.bandwidth_gb_per_month as i64,
            autodj: new.autodj,
            node_id: placement.node.id.clone(),
            desired_state: DesiredState::Stopped,
            deleting: false,
            delete_time: None,
            source_password: ids::new_secret(18),
            admin_password: ids::new_secret(18),
            relay_password: ids::new_secret(18),
            generation: 1,
            create_time: now,
            update_time: now,
            node_version: 0,
            action_sequence: 0,
        };
        db::insert_service(txn, model.clone()).await?;
        db::insert_ports(txn, placement.ports.clone()).await?;
        let node_version =
            dispatch_db::touch_services(txn, &placement.node.id, std::slice::from_ref(&model.id))
                .await?;
        let model = media_service::Model {
            node_version,
            ..model
        };
        if new.remember_type_as_default {
            reseller.default_type = Some(new.service_type);
            reseller.update_time = now;
            account_db::update_reseller(txn, reseller).await?;
        }
        Ok(MediaServiceView {
            service: model,
            ports: placement.ports,
            observed: None,
        })
    }

    pub(crate) async fn visible_service(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<media_service::Model> {
        match db::get_live_service(self.reader(), id, false).await? {
            Some(s) if can_see_service(principal, &s) => Ok(s),
            _ => Err(ServiceError::NotFound(format!(
                "media service {id:?} not found"
            ))),
        }
    }

    /// A service, or its tombstone once deleted (DESIGN: deleted services remain readable by
    /// id with their history).
    pub(crate) async fn visible_service_or_tombstone(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<media_service::Model> {
        match db::get_any_service(self.reader(), id).await? {
            Some(s) if can_see_service(principal, &s) => Ok(s),
            _ => Err(ServiceError::NotFound(format!(
                "media service {id:?} not found"
            ))),
        }
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn get_media_service(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<MediaServiceView> {
        let service = self.visible_service_or_tombstone(principal, id).await?;
        self.view_of(service).await
    }

    async fn view_of(&self, service: media_service::Model) -> Result<MediaServiceView> {
        let ids = std::slice::from_ref(&service.id);
        let ports = db::ports_of_services(self.reader(), ids).await?;
        let observed = db::observed_of(self.reader(), ids).await?.pop();
        Ok(MediaServiceView {
            service,
            ports,
            observed,
        })
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn list_media_services(
        &self,
        principal: &Principal,
        scope: ServiceScope,
        mut filter: ServiceFilter,
        page_token: &str,
        requested_size: i32,
    ) -> Result<(Vec<MediaServiceView>, String)> {
        let size = page_size(requested_size)?;
        let listing = format!(
            "media_services|{}|{scope:?}|{}|{}|{}|{}",
            principal.audit_name(),
            filter.reseller_id.as_deref().unwrap_or_default(),
            filter.customer_id.as_deref().unwrap_or_default(),
            filter.node_id.as_deref().unwrap_or_default(),
            if filter.show_deleted {
                "deleted"
            } else {
                "live"
            }
        );
        let after = self.page_after(&listing, page_token)?;
        match principal {
            Principal::Admin => {}
            Principal::Reseller { id } => {
                if filter.reseller_id.as_ref().is_some_and(|r| r != id) {
                    return Ok((Vec::new(), String::new()));
                }
                filter.reseller_id = Some(id.clone());
            }
            Principal::Customer { id, .. } => {
                if filter.customer_id.as_ref().is_some_and(|c| c != id) {
                    return Ok((Vec::new(), String::new()));
                }
                filter.customer_id = Some(id.clone());
            }
        }
        filter.primary_accounts = match (principal, scope) {
            // A customer's own services are all "my services".
            (Principal::Customer { .. }, _) | (_, ServiceScope::All) => None,
            (_, ServiceScope::MyServices) => Some(true),
            (_, ServiceScope::CustomerServices) => Some(false),
        };
        let rows =
            db::list_live_services(self.reader(), &filter, after.as_deref(), size + 1).await?;
        let (rows, token) = self.paginate(&listing, rows, size, |s| &s.id);
        let ids: Vec<String> = rows.iter().map(|s| s.id.clone()).collect();
        let mut ports =
            super::group_by_parent(db::ports_of_services(self.reader(), &ids).await?, |p| {
                &p.media_service_id
            });
        let mut observed: std::collections::HashMap<String, observed_service::Model> =
            db::observed_of(self.reader(), &ids)
                .await?
                .into_iter()
                .map(|o| (o.media_service_id.clone(), o))
                .collect();
        let views = rows
            .into_iter()
            .map(|service| MediaServiceView {
                ports: ports.remove(&service.id).unwrap_or_default(),
                observed: observed.remove(&service.id),
                service,
            })
            .collect();
        Ok((views, token))
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn update_media_service(
        &self,
        principal: &Principal,
        id: &str,
        patch: MediaServicePatch,
    ) -> Result<MediaServiceView> {
        super::retry_aborted("update_media_service", || {
            self.update_media_service_once(principal, id, patch.clone())
        })
        .await
    }

    async fn update_media_service_once(
        &self,
        principal: &Principal,
        id: &str,
        patch: MediaServicePatch,
    ) -> Result<MediaServiceView> {
        require_manager(principal, "change a media service's configuration")?;
        let txn = self.begin().await?;
        let mut service = db::get_live_service(&txn, id, true)
            .await?
            .filter(|s| can_see_service(principal, s))
            .ok_or_else(|| ServiceError::NotFound(format!("media service {id:?} not found")))?;
        if service.deleting {
            return Err(being_deleted(&service));
        }
        let service_type = service.service_type;
        if patch.autodj == Some(true) && service_type.kind() == ServiceKind::Video {
            return Err(ServiceError::invalid_field(
                "media_service.autodj",
                "AutoDJ is for audio services only",
            ));
        }
        let before = demand_of(&service);
        if let Some(v) = patch.display_name {
            service.display_name = v;
        }
        if let Some(v) = patch.max_listeners {
            service.max_listeners = v as i64;
        }
        if let Some(v) = patch.max_bitrate_kbps {
            service.max_bitrate_kbps = v as i64;
        }
        if let Some(v) = patch.disk_quota_mb {
            service.disk_quota_mb = v as i64;
        }
        if let Some(v) = patch.bandwidth_gb_per_month {
            service.bandwidth_gb_per_month = v as i64;
        }
        if let Some(v) = patch.autodj {
            if v && !service.autodj {
                let node = node_db::get_node(&txn, &service.node_id, false).await?;
                let autodj_ok = node
                    .map(|n| n.capabilities.supports(service_type, true))
                    .unwrap_or(false);
                if !autodj_ok {
                    return Err(ServiceError::precondition(
                        "NODE_CAPABILITY",
                        format!("node:{}", service.node_id),
                        "the service's node cannot run AutoDJ (liquidsoap not found)",
                    ));
                }
            }
            service.autodj = v;
        }
        let after = demand_of(&service);
        // Only growth is checked: shrinking is always allowed, even above a lowered limit.
        let increase = Demand {
            services: 0,
            listener_slots: after.listener_slots.saturating_sub(before.listener_slots),
            max_bitrate_kbps: if after.max_bitrate_kbps > before.max_bitrate_kbps {
                after.max_bitrate_kbps
            } else {
                0
            },
            disk_mb: after.disk_mb.saturating_sub(before.disk_mb),
            bandwidth_gb_per_month: after
                .bandwidth_gb_per_month
                .saturating_sub(before.bandwidth_gb_per_month),
        };
        let reseller = account_db::get_reseller(&txn, &service.reseller_id, true)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("service {id} has no reseller")))?;
        let usage = db::reseller_usage(&txn, &reseller.id).await?;
        check_quota(&reseller.id, &limits_of(&reseller), &usage, &increase)?;
        service.generation += 1;
        service.update_time = now_millis();
        db::update_service(&txn, service.clone()).await?;
        dispatch_db::touch_services(&txn, &service.node_id, std::slice::from_ref(&service.id))
            .await?;
        let mut changes = super::Changes::default();
        changes.nodes.insert(service.node_id.clone());
        self.commit(txn, changes).await?;
        self.view_of(service).await
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn connection_info(&self, principal: &Principal, id: &str) -> Result<ConnectionView> {
        let service = self.visible_service(principal, id).await?;
        let ports = db::ports_of_services(self.reader(), std::slice::from_ref(&service.id)).await?;
        let node = node_db::get_node(self.reader(), &service.node_id, false)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("service {id} has no node")))?;
        let port = |purpose: &str| {
            ports
                .iter()
                .find(|p| p.purpose == purpose)
                .map(|p| p.port as u32)
                .unwrap_or(0)
        };
        let host = node.public_host;
        let service_type = service.service_type;
        Ok(match service_type {
            ServiceType::Icecast => ConnectionView {
                service_id: service.id,
                stream_url: format!("http://{host}:{}/live", port("http")),
                source_host: host,
                source_port: port("http"),
                mount: "/live".to_owned(),
                source_username: "source".to_owned(),
                source_password: service.source_password,
                ingest_url: String::new(),
            },
            ServiceType::Shoutcast => ConnectionView {
                service_id: service.id,
                stream_url: format!("http://{host}:{}/stream", port("http")),
                source_host: host,
                source_port: port("http"),
                mount: "/stream".to_owned(),
                source_username: String::new(),
                source_password: service.source_password,
                ingest_url: String::new(),
            },
            ServiceType::Video => ConnectionView {
                service_id: service.id,
                stream_url: format!("http://{host}:{}/hls/live.m3u8", port("http")),
                // The RTMP application name is the source password: only its holders publish.
                ingest_url: format!(
                    "rtmp://{host}:{}/{}/live",
                    port("rtmp"),
                    service.source_password
                ),
                source_host: host,
                source_port: port("rtmp"),
                mount: "/live".to_owned(),
                source_username: String::new(),
                source_password: service.source_password,
            },
        })
    }

    /// Moves a service to another customer. Within one reseller nothing changes in quota;
    /// across resellers (admin only) the target's allowed types and quotas must admit it.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id, new_customer_id = %new_customer_id))]
    pub async fn change_owner(
        &self,
        principal: &Principal,
        id: &str,
        new_customer_id: &str,
    ) -> Result<MediaServiceView> {
        super::retry_aborted("change_owner", || {
            self.change_owner_once(principal, id, new_customer_id)
        })
        .await
    }

    async fn change_owner_once(
        &self,
        principal: &Principal,
        id: &str,
        new_customer_id: &str,
    ) -> Result<MediaServiceView> {
        require_manager(principal, "change a media service's owner")?;
        let txn = self.begin().await?;
        let mut service = db::get_live_service(&txn, id, true)
            .await?
            .filter(|s| can_see_service(principal, s))
            .ok_or_else(|| ServiceError::NotFound(format!("media service {id:?} not found")))?;
        let target = account_db::get_customer(&txn, new_customer_id, false)
            .await?
            .filter(|c| can_see_customer(principal, c))
            .ok_or_else(|| {
                ServiceError::NotFound(format!("customer {new_customer_id:?} not found"))
            })?;
        if service.deleting {
            return Err(being_deleted(&service));
        }
        if target.delete_request_time.is_some() {
            return Err(super::deletion::account_being_deleted(&target));
        }
        if target.id == service.customer_id {
            return Err(ServiceError::precondition(
                "OWNER",
                format!("media_service:{id}"),
                format!(
                    "media service {id} already belongs to customer {}",
                    target.id
                ),
            ));
        }
        let from_customer = service.customer_id.clone();
        let from_reseller = service.reseller_id.clone();
        if target.reseller_id != service.reseller_id {
            // Lock both resellers in id order so two crossing moves cannot deadlock.
            let (first, second) = if from_reseller < target.reseller_id {
                (from_reseller.as_str(), target.reseller_id.as_str())
            } else {
                (target.reseller_id.as_str(), from_reseller.as_str())
            };
            let locked = [
                account_db::get_reseller(&txn, first, true).await?,
                account_db::get_reseller(&txn, second, true).await?,
            ];
            let target_reseller = locked
                .into_iter()
                .flatten()
                .find(|r| r.id == target.reseller_id)
                .ok_or_else(|| {
                    ServiceError::Internal(format!("customer {} has no reseller", target.id))
                })?;
            let service_type = service.service_type;
            if !check_type_allowed(&target_reseller, service_type) {
                return Err(type_not_allowed(&target_reseller.id, service_type));
            }
            let usage = db::reseller_usage(&txn, &target_reseller.id).await?;
            check_quota(
                &target_reseller.id,
                &limits_of(&target_reseller),
                &usage,
                &demand_of(&service),
            )?;
        }
        let now = now_millis();
        service.customer_id = target.id.clone();
        service.reseller_id = target.reseller_id.clone();
        service.generation += 1;
        service.update_time = now;
        db::update_service(&txn, service.clone())
            .await
            .map_err(|e| name_conflict(e.into(), &service.name))?;
        db::insert_ownership_change(
            &txn,
            ownership_change::Model {
                id: ids::new_id("own"),
                media_service_id: service.id.clone(),
                from_customer_id: from_customer,
                to_customer_id: target.id.clone(),
                from_reseller_id: from_reseller,
                to_reseller_id: target.reseller_id.clone(),
                changed_by: principal.audit_name(),
                change_time: now,
            },
        )
        .await?;
        dispatch_db::touch_services(&txn, &service.node_id, std::slice::from_ref(&service.id))
            .await?;
        let mut changes = super::Changes::default();
        changes.nodes.insert(service.node_id.clone());
        changes.owners.push(service.id.clone());
        self.commit(txn, changes)
            .await
            .map_err(|e| name_conflict(e, &service.name))?;
        tracing::info!(media_service_id = %service.id, to_customer = %target.id, by = %principal.audit_name(), "changed media service owner");
        self.view_of(service).await
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn list_ownership_changes(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Vec<ownership_change::Model>> {
        let service = self.visible_service_or_tombstone(principal, id).await?;
        let mut changes = db::list_ownership_changes(self.reader(), &service.id).await?;
        for change in &mut changes {
            super::redact_ownership_change(principal, change);
        }
        Ok(changes)
    }

    /// What deleting the service keeps and destroys (DESIGN: Deletion).
    pub(crate) fn deletion_plan(
        &self,
        service: &media_service::Model,
        ports: &[port_allocation::Model],
        video_files: &[String],
    ) -> Result<DeletionPlan> {
        let service_type = service.service_type;
        let port_list = ports
            .iter()
            .map(|p| p.port.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut destroyed = vec![
            format!(
                "the {service_type} process of {} and its configuration and logs",
                service.name
            ),
            format!("ports {port_list} on node {}", service.node_id),
            format!(
                "its quota: {} listener slots, {} MB disk, {} GB/month bandwidth",
                service.max_listeners, service.disk_quota_mb, service.bandwidth_gb_per_month
            ),
        ];
        let mut kept = Vec::new();
        let requires_confirmation = match service_type.kind() {
            ServiceKind::Audio => {
                kept.push(format!(
                    "the media tracks of customer {} (they belong to the customer, not the service)",
                    service.customer_id
                ));
                false
            }
            ServiceKind::Video => {
                destroyed.push(match video_files.len() {
                    0 => "all uploaded video files of the service (permanently) — none yet"
                        .to_owned(),
                    1 => "the 1 uploaded video file of the service (permanently)".to_owned(),
                    n => format!("all {n} uploaded video files of the service (permanently)"),
                });
                destroyed.extend(
                    video_files
                        .iter()
                        .map(|name| format!("video file {name:?}")),
                );
                destroyed.push("its HLS output".to_owned());
                true
            }
        };
        kept.push("the service's action and ownership history".to_owned());
        Ok(DeletionPlan {
            kept,
            destroyed,
            requires_confirmation,
        })
    }
}

pub(crate) fn being_deleted(service: &media_service::Model) -> ServiceError {
    ServiceError::precondition(
        "DELETING",
        format!("media_service:{}", service.id),
        format!("media service {} is being deleted", service.id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            customers: None,
            services: Some(2),
            listener_slots: Some(100),
            max_bitrate_kbps: Some(128),
            disk_mb: None,
            bandwidth_gb_per_month: Some(10),
        }
    }

    fn demand(listener_slots: u64, max_bitrate_kbps: u64) -> Demand {
        Demand {
            services: 1,
            listener_slots,
            max_bitrate_kbps,
            disk_mb: 5,
            bandwidth_gb_per_month: 0,
        }
    }

    #[test]
    fn exactly_at_the_limit_fits_and_one_more_does_not() {
        let usage = Usage {
            services: 1,
            listener_slots: 60,
            ..Default::default()
        };
        assert!(check_quota("r", &limits(), &usage, &demand(40, 128)).is_ok());
        let err = check_quota("r", &limits(), &usage, &demand(41, 128)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "quota exceeded for listener_slots: asked for 41, 40 available (limit 100, 60 in use)"
        );
    }

    #[test]
    fn the_bitrate_cap_applies_per_service_not_as_a_pool() {
        let usage = Usage {
            max_bitrate_kbps: 128,
            ..Default::default()
        };
        assert!(check_quota("r", &limits(), &usage, &demand(1, 128)).is_ok());
        let err = check_quota("r", &limits(), &usage, &demand(1, 129)).unwrap_err();
        assert!(matches!(
            err,
            ServiceError::QuotaExceeded {
                resource: Resource::MaxBitrateKbps,
                ..
            }
        ));
    }

    #[test]
    fn unlimited_resources_never_refuse_and_growth_of_zero_always_fits() {
        let usage = Usage {
            services: 2,
            disk_mb: u64::MAX / 2,
            ..Default::default()
        };
        // Services are full, but an update asks for no new service.
        let update = Demand {
            services: 0,
            disk_mb: 1_000_000,
            ..Default::default()
        };
        assert!(check_quota("r", &limits(), &usage, &update).is_ok());
        assert_eq!(usage.available(&limits(), Resource::DiskMb), None);
        assert_eq!(usage.available(&limits(), Resource::Services), Some(0));
    }
}
