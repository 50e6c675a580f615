//! Streaming hosts and their agent sessions.

use sea_orm::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ConnectionTrait, FromQueryResult, IntoActiveModel, QueryOrder, QuerySelect};

use super::Result;
use super::entities::node;
use crate::domain::ServiceType;

pub async fn insert_node(db: &impl ConnectionTrait, model: node::Model) -> Result<()> {
    node::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn get_node(
    db: &impl ConnectionTrait,
    id: &str,
    for_update: bool,
) -> Result<Option<node::Model>> {
    let mut query =
        node::Entity::find_by_id(id.to_owned()).filter(node::Column::DeleteTime.is_null());
    if for_update {
        query = query.lock_exclusive();
    }
    super::load_row("nodes", id, query.one(db).await)
}

pub async fn list_nodes(
    db: &impl ConnectionTrait,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<node::Model>> {
    let mut query = node::Entity::find()
        .filter(node::Column::DeleteTime.is_null())
        .order_by_asc(node::Column::Id)
        .limit(limit);
    if let Some(after) = after_id {
        query = query.filter(node::Column::Id.gt(after));
    }
    Ok(query.all(db).await?)
}

pub async fn find_by_join_token(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<node::Model>> {
    Ok(node::Entity::find()
        .filter(node::Column::JoinTokenHash.eq(token_hash))
        .filter(node::Column::DeleteTime.is_null())
        .lock_exclusive()
        .one(db)
        .await?)
}

/// The node holding this certificate as its current or (during renewal) previous one.
pub async fn find_by_certificate(
    db: &impl ConnectionTrait,
    fingerprint: &str,
) -> Result<Option<node::Model>> {
    use sea_orm::Condition;
    Ok(node::Entity::find()
        .filter(
            Condition::any()
                .add(node::Column::CertFingerprint.eq(fingerprint))
                .add(node::Column::PreviousCertFingerprint.eq(fingerprint)),
        )
        .filter(node::Column::DeleteTime.is_null())
        .one(db)
        .await?)
}

/// A joined node's first certificate: the join token is used up.
pub async fn record_join(
    db: &impl ConnectionTrait,
    node_id: &str,
    fingerprint: &str,
    cert_expire_time: i64,
    now: i64,
) -> Result<()> {
    node::Entity::update_many()
        .col_expr(
            node::Column::JoinTokenHash,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            node::Column::JoinTokenExpireTime,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(node::Column::JoinTime, Expr::value(now))
        .col_expr(
            node::Column::PreviousCertFingerprint,
            Expr::value(Option::<String>::None),
        )
        .col_expr(node::Column::CertFingerprint, Expr::value(fingerprint))
        .col_expr(node::Column::CertExpireTime, Expr::value(cert_expire_time))
        .filter(node::Column::Id.eq(node_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A renewed certificate; the one it replaces keeps working until the next renewal, so a
/// stream opened with it is not cut off.
pub async fn record_renewal(
    db: &impl ConnectionTrait,
    node_id: &str,
    previous_fingerprint: Option<String>,
    fingerprint: &str,
    cert_expire_time: i64,
) -> Result<()> {
    node::Entity::update_many()
        .col_expr(
            node::Column::PreviousCertFingerprint,
            Expr::value(previous_fingerprint),
        )
        .col_expr(node::Column::CertFingerprint, Expr::value(fingerprint))
        .col_expr(node::Column::CertExpireTime, Expr::value(cert_expire_time))
        .filter(node::Column::Id.eq(node_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Replaces the node's join token (only those columns: the node may be connected).
pub async fn set_join_token(
    db: &impl ConnectionTrait,
    node_id: &str,
    token_hash: &str,
    expire_time: i64,
) -> Result<bool> {
    let result = node::Entity::update_many()
        .col_expr(node::Column::JoinTokenHash, Expr::value(token_hash))
        .col_expr(node::Column::JoinTokenExpireTime, Expr::value(expire_time))
        .filter(node::Column::Id.eq(node_id))
        .filter(node::Column::DeleteTime.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Nodes whose agent reported it can run `service_type` (and AutoDJ, if asked), least loaded
/// first, skipping `exclude`. PostgreSQL locks what it returns; with `skip_locked` it passes
/// over nodes another placement holds, so concurrent creates spread instead of queueing.
pub async fn capable_candidates(
    db: &impl ConnectionTrait,
    service_type: ServiceType,
    autodj: bool,
    exclude: &[String],
    limit: u64,
    skip_locked: bool,
) -> Result<Vec<node::Model>> {
    use super::dispatch::sql;
    let b = db.get_database_backend();
    let mut values: Vec<sea_orm::Value> = vec![service_type.into(), autodj.into()];
    let excluded = if exclude.is_empty() {
        String::new()
    } else {
        let list = (0..exclude.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        values.extend(exclude.iter().map(|id| id.clone().into()));
        format!(" AND n.id NOT IN ({list})")
    };
    let lock = match (b, skip_locked) {
        (sea_orm::DbBackend::Postgres, true) => " FOR UPDATE OF n SKIP LOCKED",
        (sea_orm::DbBackend::Postgres, false) => " FOR UPDATE OF n",
        _ => "",
    };
    let rows = db
        .query_all_raw(sql(
            b,
            &format!(
                "SELECT n.* FROM nodes n JOIN node_capabilities c ON c.node_id = n.id \
                 WHERE c.service_type = $1 AND (c.autodj = TRUE OR $2 = FALSE) \
                 AND n.delete_time IS NULL{excluded} \
                 ORDER BY n.service_count, n.id LIMIT {limit}{lock}"
            ),
            values,
        ))
        .await?;
    rows.iter()
        .map(|row| node::Model::from_query_result(row, "").map_err(Into::into))
        .collect()
}

/// Whether the node's agent reported it can run the type (and AutoDJ, if asked).
pub async fn supports(
    db: &impl ConnectionTrait,
    node_id: &str,
    service_type: ServiceType,
    autodj: bool,
) -> Result<bool> {
    use super::entities::node_capability;
    let found = node_capability::Entity::find_by_id((node_id.to_owned(), service_type))
        .one(db)
        .await?;
    Ok(found.is_some_and(|c| c.autodj || !autodj))
}

/// Counts a placed service and its ports on the node.
pub async fn count_placement(db: &impl ConnectionTrait, node_id: &str, ports: i64) -> Result<()> {
    node::Entity::update_many()
        .col_expr(
            node::Column::ServiceCount,
            Expr::col(node::Column::ServiceCount).add(1),
        )
        .col_expr(
            node::Column::PortsUsed,
            Expr::col(node::Column::PortsUsed).add(ports),
        )
        .filter(node::Column::Id.eq(node_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A node's deletion: it leaves listings and placement, its certificates and join token stop
/// working, and its session is fenced off (the generation moves on, so the session's next
/// write fails and it closes). Its name is freed for a new node. False when it was not there.
pub async fn mark_deleted(db: &impl ConnectionTrait, node_id: &str, now: i64) -> Result<bool> {
    use super::entities::node_capability;
    use sea_orm::ActiveValue::Set;
    let active = node::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(node_id.to_owned()),
        name: Set(format!("deleted-{node_id}")),
        delete_time: Set(Some(now)),
        cert_fingerprint: Set(None),
        previous_cert_fingerprint: Set(None),
        join_token_hash: Set(None),
        join_token_expire_time: Set(None),
        connected: Set(false),
        session_id: Set(None),
        session_replica: Set(None),
        ..Default::default()
    };
    let result = node::Entity::update_many()
        .set(active)
        .col_expr(
            node::Column::SessionGeneration,
            Expr::col(node::Column::SessionGeneration).add(1),
        )
        .col_expr(
            node::Column::Version,
            Expr::col(node::Column::Version).add(1),
        )
        .filter(node::Column::Id.eq(node_id))
        .filter(node::Column::DeleteTime.is_null())
        .exec(db)
        .await?;
    node_capability::Entity::delete_many()
        .filter(node_capability::Column::NodeId.eq(node_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
