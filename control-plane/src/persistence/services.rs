//! Media services, their port allocations, ownership history, and quota usage.

use std::collections::BTreeSet;

use sea_orm::prelude::*;
use sea_orm::sea_query::Query;
use sea_orm::{ConnectionTrait, IntoActiveModel, QueryOrder, QuerySelect};

use super::entities::{
    media_service, observed_service, ownership_change, port_allocation, reseller,
};
use super::{Result, count_bigint, max_bigint, sum_bigint};
use crate::domain::Usage;

pub async fn insert_service(db: &impl ConnectionTrait, model: media_service::Model) -> Result<()> {
    media_service::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A live (not yet deleted) service.
pub async fn get_live_service(
    db: &impl ConnectionTrait,
    id: &str,
    for_update: bool,
) -> Result<Option<media_service::Model>> {
    let mut query = media_service::Entity::find_by_id(id.to_owned())
        .filter(media_service::Column::DeleteTime.is_null());
    if for_update {
        query = query.lock_exclusive();
    }
    super::load_row("media_services", id, query.one(db).await)
}

/// A service whether deleted or not, for action history.
pub async fn get_any_service(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<media_service::Model>> {
    let loaded = media_service::Entity::find_by_id(id.to_owned())
        .one(db)
        .await;
    super::load_row("media_services", id, loaded)
}

pub async fn update_service(db: &impl ConnectionTrait, model: media_service::Model) -> Result<()> {
    // Every column is written; the primary key in the model selects the row.
    let active = model.into_active_model().reset_all();
    media_service::Entity::update(active).exec(db).await?;
    Ok(())
}

/// Marks the service as being deleted (a delete action is queued).
pub async fn mark_deleting(db: &impl ConnectionTrait, service_id: &str) -> Result<()> {
    use sea_orm::sea_query::Expr;
    media_service::Entity::update_many()
        .col_expr(media_service::Column::Deleting, Expr::value(true))
        .filter(media_service::Column::Id.eq(service_id))
        .exec(db)
        .await?;
    Ok(())
}

/// What the agents last reported of these services.
pub async fn observed_of(
    db: &impl ConnectionTrait,
    service_ids: &[String],
) -> Result<Vec<observed_service::Model>> {
    if service_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(observed_service::Entity::find()
        .filter(
            observed_service::Column::MediaServiceId.is_in(service_ids.iter().map(String::as_str)),
        )
        .all(db)
        .await?)
}

/// Which customers' services a listing covers.
#[derive(Clone, Debug, Default)]
pub struct ServiceFilter {
    pub reseller_id: Option<String>,
    pub customer_id: Option<String>,
    pub node_id: Option<String>,
    /// Some(true): only primary accounts' services; Some(false): only sub-accounts'.
    pub primary_accounts: Option<bool>,
    /// Only services whose name or display name contains this, ignoring case.
    pub name_contains: Option<String>,
    /// Deleted services (tombstones) too.
    pub show_deleted: bool,
}

pub async fn list_live_services(
    db: &impl ConnectionTrait,
    filter: &ServiceFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<media_service::Model>> {
    let mut query = media_service::Entity::find()
        .order_by_asc(media_service::Column::Id)
        .limit(limit);
    if !filter.show_deleted {
        query = query.filter(media_service::Column::DeleteTime.is_null());
    }
    if let Some(reseller_id) = &filter.reseller_id {
        query = query.filter(media_service::Column::ResellerId.eq(reseller_id.as_str()));
    }
    if let Some(customer_id) = &filter.customer_id {
        query = query.filter(media_service::Column::CustomerId.eq(customer_id.as_str()));
    }
    if let Some(node_id) = &filter.node_id {
        query = query.filter(media_service::Column::NodeId.eq(node_id.as_str()));
    }
    if let Some(primary) = filter.primary_accounts {
        let primaries = Query::select()
            .column(reseller::Column::PrimaryCustomerId)
            .from(reseller::Entity)
            .to_owned();
        query = query.filter(if primary {
            media_service::Column::CustomerId.in_subquery(primaries)
        } else {
            media_service::Column::CustomerId.not_in_subquery(primaries)
        });
    }
    if let Some(text) = &filter.name_contains {
        use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
        // LIKE wildcards in the text are matched literally.
        let escaped = text
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = || LikeExpr::new(format!("%{escaped}%")).escape('\\');
        let lower = |column: media_service::Column| Expr::expr(Func::lower(Expr::col(column)));
        query = query.filter(
            lower(media_service::Column::Name)
                .like(pattern())
                .or(lower(media_service::Column::DisplayName).like(pattern())),
        );
    }
    if let Some(after) = after_id {
        query = query.filter(media_service::Column::Id.gt(after));
    }
    Ok(query.all(db).await?)
}

/// What a reseller uses, summed over its live services; never stored, so it cannot drift.
pub async fn reseller_usage(db: &impl ConnectionTrait, reseller_id: &str) -> Result<Usage> {
    let row: Option<(i64, i64, i64, i64, i64)> = media_service::Entity::find()
        .select_only()
        .column_as(count_bigint(), "services")
        .column_as(sum_bigint("max_listeners"), "listener_slots")
        .column_as(max_bigint("max_bitrate_kbps"), "max_bitrate_kbps")
        .column_as(sum_bigint("disk_quota_mb"), "disk_mb")
        .column_as(sum_bigint("bandwidth_gb_per_month"), "bandwidth")
        .filter(media_service::Column::ResellerId.eq(reseller_id))
        .filter(media_service::Column::DeleteTime.is_null())
        .into_tuple()
        .one(db)
        .await?;
    let (services, listener_slots, max_bitrate_kbps, disk_mb, bandwidth) = row.unwrap_or_default();
    let customers = super::accounts::count_sub_accounts(db, reseller_id).await?;
    Ok(Usage {
        customers,
        services: services as u64,
        listener_slots: listener_slots as u64,
        max_bitrate_kbps: max_bitrate_kbps as u64,
        disk_mb: disk_mb as u64,
        bandwidth_gb_per_month: bandwidth as u64,
    })
}

pub async fn used_ports(db: &impl ConnectionTrait, node_id: &str) -> Result<BTreeSet<u16>> {
    let ports: Vec<i64> = port_allocation::Entity::find()
        .select_only()
        .column(port_allocation::Column::Port)
        .filter(port_allocation::Column::NodeId.eq(node_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok(ports
        .into_iter()
        .filter_map(|p| u16::try_from(p).ok())
        .collect())
}

pub async fn insert_ports(
    db: &impl ConnectionTrait,
    allocations: Vec<port_allocation::Model>,
) -> Result<()> {
    if allocations.is_empty() {
        return Ok(());
    }
    port_allocation::Entity::insert_many(
        allocations
            .into_iter()
            .map(IntoActiveModel::into_active_model),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn ports_of_services(
    db: &impl ConnectionTrait,
    service_ids: &[String],
) -> Result<Vec<port_allocation::Model>> {
    if service_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(port_allocation::Entity::find()
        .filter(
            port_allocation::Column::MediaServiceId.is_in(service_ids.iter().map(String::as_str)),
        )
        .order_by_asc(port_allocation::Column::Port)
        .all(db)
        .await?)
}

pub async fn release_ports(db: &impl ConnectionTrait, service_id: &str) -> Result<()> {
    port_allocation::Entity::delete_many()
        .filter(port_allocation::Column::MediaServiceId.eq(service_id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn insert_ownership_change(
    db: &impl ConnectionTrait,
    model: ownership_change::Model,
) -> Result<()> {
    ownership_change::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn list_ownership_changes(
    db: &impl ConnectionTrait,
    service_id: &str,
) -> Result<Vec<ownership_change::Model>> {
    Ok(ownership_change::Entity::find()
        .filter(ownership_change::Column::MediaServiceId.eq(service_id))
        .order_by_asc(ownership_change::Column::Id)
        .all(db)
        .await?)
}

/// The live (not yet deleted) services of these customers, by id: what an account deletion
/// must delete first.
pub async fn live_services_of_customers(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<Vec<media_service::Model>> {
    if customer_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(media_service::Entity::find()
        .filter(media_service::Column::CustomerId.is_in(customer_ids.iter().map(String::as_str)))
        .filter(media_service::Column::DeleteTime.is_null())
        .order_by_asc(media_service::Column::Id)
        .all(db)
        .await?)
}

/// The live services placed on a node (deleting ones included), at most `limit`.
pub async fn live_services_on_node(
    db: &impl ConnectionTrait,
    node_id: &str,
    limit: u64,
) -> Result<Vec<media_service::Model>> {
    Ok(media_service::Entity::find()
        .filter(media_service::Column::NodeId.eq(node_id))
        .filter(media_service::Column::DeleteTime.is_null())
        .order_by_asc(media_service::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}
