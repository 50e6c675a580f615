//! The durable action queue.

use sea_orm::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ConnectionTrait, IntoActiveModel, QueryOrder, QuerySelect};

use super::entities::{action, action_transition, node};
use super::{Result, max_bigint};
use crate::domain::ActionState;
use crate::ids;

const OPEN_STATES: [&str; 3] = ["queued", "dispatched", "running"];

pub async fn next_sequence(db: &impl ConnectionTrait, service_id: &str) -> Result<i64> {
    let max: Option<i64> = action::Entity::find()
        .select_only()
        .column_as(max_bigint("sequence"), "max_sequence")
        .filter(action::Column::MediaServiceId.eq(service_id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(max.unwrap_or(0) + 1)
}

pub async fn insert_action(db: &impl ConnectionTrait, model: action::Model) -> Result<()> {
    let transition = action_transition::Model {
        id: ids::new_id("atr"),
        action_id: model.id.clone(),
        state: model.state.clone(),
        time: model.create_time,
        message: String::new(),
    };
    action::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    action_transition::Entity::insert(transition.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn get_action(db: &impl ConnectionTrait, id: &str) -> Result<Option<action::Model>> {
    Ok(action::Entity::find_by_id(id.to_owned()).one(db).await?)
}

pub async fn transitions(
    db: &impl ConnectionTrait,
    action_ids: &[String],
) -> Result<Vec<action_transition::Model>> {
    if action_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(action_transition::Entity::find()
        .filter(action_transition::Column::ActionId.is_in(action_ids.iter().map(String::as_str)))
        .order_by_asc(action_transition::Column::Time)
        .order_by_asc(action_transition::Column::Id)
        .all(db)
        .await?)
}

#[derive(Clone, Debug, Default)]
pub struct ActionFilter {
    pub media_service_id: Option<String>,
    pub state: Option<ActionState>,
    /// Restricts to services of these resellers / this customer (tenancy).
    pub reseller_id: Option<String>,
    pub customer_id: Option<String>,
    /// Newest first (ids follow creation time) instead of oldest first.
    pub newest_first: bool,
}

pub async fn list_actions(
    db: &impl ConnectionTrait,
    filter: &ActionFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<action::Model>> {
    use super::entities::media_service;
    let mut query = action::Entity::find().limit(limit);
    query = if filter.newest_first {
        query.order_by_desc(action::Column::Id)
    } else {
        query.order_by_asc(action::Column::Id)
    };
    if let Some(service_id) = &filter.media_service_id {
        query = query.filter(action::Column::MediaServiceId.eq(service_id.as_str()));
    }
    if let Some(state) = filter.state {
        query = query.filter(action::Column::State.eq(state.as_str()));
    }
    if filter.reseller_id.is_some() || filter.customer_id.is_some() {
        let mut services = sea_orm::sea_query::Query::select();
        services
            .column(media_service::Column::Id)
            .from(media_service::Entity);
        if let Some(reseller_id) = &filter.reseller_id {
            services.and_where(media_service::Column::ResellerId.eq(reseller_id.as_str()));
        }
        if let Some(customer_id) = &filter.customer_id {
            services.and_where(media_service::Column::CustomerId.eq(customer_id.as_str()));
        }
        query = query.filter(action::Column::MediaServiceId.in_subquery(services.to_owned()));
    }
    if let Some(after) = after_id {
        query = query.filter(if filter.newest_first {
            action::Column::Id.lt(after)
        } else {
            action::Column::Id.gt(after)
        });
    }
    Ok(query.all(db).await?)
}

/// Moves an action from one of `from` to `to`, recording the transition. Returns false (and
/// writes nothing) when the action was not in any of `from`: another replica or an earlier
/// delivery got there first.
pub async fn transition(
    db: &impl ConnectionTrait,
    action_id: &str,
    from: &[ActionState],
    to: ActionState,
    message: &str,
    now: i64,
) -> Result<bool> {
    let mut update = action::Entity::update_many()
        .col_expr(action::Column::State, Expr::value(to.as_str()))
        .col_expr(action::Column::UpdateTime, Expr::value(now))
        .filter(action::Column::Id.eq(action_id))
        .filter(action::Column::State.is_in(from.iter().map(|s| s.as_str())));
    if to == ActionState::Failed {
        update = update.col_expr(action::Column::Error, Expr::value(message));
    }
    let result = update.exec(db).await?;
    if result.rows_affected == 0 {
        return Ok(false);
    }
    let transition = action_transition::Model {
        id: ids::new_id("atr"),
        action_id: action_id.to_owned(),
        state: to.as_str().to_owned(),
        time: now,
        message: message.to_owned(),
    };
    action_transition::Entity::insert(transition.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(true)
}

pub async fn set_dispatch_session(
    db: &impl ConnectionTrait,
    action_id: &str,
    session_id: &str,
) -> Result<()> {
    action::Entity::update_many()
        .col_expr(action::Column::DispatchSession, Expr::value(session_id))
        .filter(action::Column::Id.eq(action_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The unfinished actions of services on `node_id`, oldest first per service.
pub async fn open_actions_on_node(
    db: &impl ConnectionTrait,
    node_id: &str,
) -> Result<Vec<action::Model>> {
    Ok(action::Entity::find()
        .filter(action::Column::NodeId.eq(node_id))
        .filter(action::Column::State.is_in(OPEN_STATES))
        .order_by_asc(action::Column::MediaServiceId)
        .order_by_asc(action::Column::Sequence)
        .all(db)
        .await?)
}

/// Unfinished actions past their deadline whose node is not connected.
pub async fn overdue_on_unreachable_nodes(
    db: &impl ConnectionTrait,
    now: i64,
) -> Result<Vec<action::Model>> {
    let unreachable = sea_orm::sea_query::Query::select()
        .column(node::Column::Id)
        .from(node::Entity)
        .and_where(node::Column::Connected.eq(false))
        .to_owned();
    Ok(action::Entity::find()
        .filter(action::Column::State.is_in(OPEN_STATES))
        .filter(action::Column::Deadline.lt(now))
        .filter(action::Column::NodeId.in_subquery(unreachable))
        .all(db)
        .await?)
}
