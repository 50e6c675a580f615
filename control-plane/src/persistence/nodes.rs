//! Streaming hosts and their agent sessions.

use sea_orm::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ConnectionTrait, IntoActiveModel, QueryOrder, QuerySelect};

use super::entities::{media_service, node};
use super::{Result, count_bigint};

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
    let mut query = node::Entity::find_by_id(id.to_owned());
    if for_update {
        query = query.lock_exclusive();
    }
    Ok(query.one(db).await?)
}

pub async fn list_nodes(
    db: &impl ConnectionTrait,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<node::Model>> {
    let mut query = node::Entity::find()
        .order_by_asc(node::Column::Id)
        .limit(limit);
    if let Some(after) = after_id {
        query = query.filter(node::Column::Id.gt(after));
    }
    Ok(query.all(db).await?)
}

pub async fn all_nodes(db: &impl ConnectionTrait) -> Result<Vec<node::Model>> {
    Ok(node::Entity::find()
        .order_by_asc(node::Column::Id)
        .all(db)
        .await?)
}

pub async fn find_by_join_token(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<node::Model>> {
    Ok(node::Entity::find()
        .filter(node::Column::JoinTokenHash.eq(token_hash))
        .lock_exclusive()
        .one(db)
        .await?)
}

/// Locks these nodes' rows (PostgreSQL; SQLite's single writer needs none), in id order.
pub async fn lock_nodes(db: &impl ConnectionTrait, ids: &[String]) -> Result<Vec<node::Model>> {
    Ok(node::Entity::find()
        .filter(node::Column::Id.is_in(ids.iter().map(String::as_str)))
        .order_by_asc(node::Column::Id)
        .lock_exclusive()
        .all(db)
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
        .one(db)
        .await?)
}

pub async fn update_node(db: &impl ConnectionTrait, model: node::Model) -> Result<()> {
    // Every column is written; the primary key in the model selects the row.
    let active = model.into_active_model().reset_all();
    node::Entity::update(active).exec(db).await?;
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
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Live services per node.
pub async fn service_counts(db: &impl ConnectionTrait) -> Result<Vec<(String, i64)>> {
    Ok(media_service::Entity::find()
        .select_only()
        .column(media_service::Column::NodeId)
        .column_as(count_bigint(), "n")
        .filter(media_service::Column::DeleteTime.is_null())
        .group_by(media_service::Column::NodeId)
        .into_tuple()
        .all(db)
        .await?)
}

/// Allocated ports per node.
pub async fn port_counts(db: &impl ConnectionTrait) -> Result<Vec<(String, i64)>> {
    use super::entities::port_allocation;
    Ok(port_allocation::Entity::find()
        .select_only()
        .column(port_allocation::Column::NodeId)
        .column_as(count_bigint(), "n")
        .group_by(port_allocation::Column::NodeId)
        .into_tuple()
        .all(db)
        .await?)
}

/// Records the session as the node's current one. Returns false when the node is gone.
pub async fn open_session(
    db: &impl ConnectionTrait,
    node_id: &str,
    session_id: &str,
    agent_version: &str,
    capabilities_json: &str,
    now: i64,
) -> Result<bool> {
    let result = node::Entity::update_many()
        .col_expr(node::Column::Connected, Expr::value(true))
        .col_expr(node::Column::SessionId, Expr::value(session_id))
        .col_expr(node::Column::AgentVersion, Expr::value(agent_version))
        .col_expr(node::Column::Capabilities, Expr::value(capabilities_json))
        .col_expr(node::Column::LastHeartbeatTime, Expr::value(now))
        .filter(node::Column::Id.eq(node_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Refreshes liveness, but only for the session that currently holds the node.
pub async fn heartbeat(
    db: &impl ConnectionTrait,
    node_id: &str,
    session_id: &str,
    now: i64,
) -> Result<bool> {
    let result = node::Entity::update_many()
        .col_expr(node::Column::LastHeartbeatTime, Expr::value(now))
        .col_expr(node::Column::Connected, Expr::value(true))
        .filter(node::Column::Id.eq(node_id))
        .filter(node::Column::SessionId.eq(session_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Marks the node unreachable if `session_id` still holds it (a newer session may have taken
/// over on another replica).
pub async fn close_session(
    db: &impl ConnectionTrait,
    node_id: &str,
    session_id: &str,
) -> Result<()> {
    node::Entity::update_many()
        .col_expr(node::Column::Connected, Expr::value(false))
        .filter(node::Column::Id.eq(node_id))
        .filter(node::Column::SessionId.eq(session_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Marks unreachable every connected node whose last heartbeat is older than `stale_before`.
pub async fn expire_stale_sessions(db: &impl ConnectionTrait, stale_before: i64) -> Result<u64> {
    let result = node::Entity::update_many()
        .col_expr(node::Column::Connected, Expr::value(false))
        .filter(node::Column::Connected.eq(true))
        .filter(node::Column::LastHeartbeatTime.lt(stale_before))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
