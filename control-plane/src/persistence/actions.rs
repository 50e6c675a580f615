//! The durable action queue.

use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, IntoActiveModel, QueryOrder, QuerySelect};

use super::Result;
use super::entities::{action, action_transition};
use crate::domain::ActionState;

pub async fn insert_action(
    db: &impl ConnectionTrait,
    model: action::Model,
    transition: action_transition::Model,
) -> Result<()> {
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
}

pub async fn list_actions(
    db: &impl ConnectionTrait,
    filter: &ActionFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<action::Model>> {
    use super::entities::media_service;
    let mut query = action::Entity::find()
        .order_by_asc(action::Column::Id)
        .limit(limit);
    if let Some(service_id) = &filter.media_service_id {
        query = query.filter(action::Column::MediaServiceId.eq(service_id.as_str()));
    }
    if let Some(state) = filter.state {
        query = query.filter(action::Column::State.eq(state));
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
        query = query.filter(action::Column::Id.gt(after));
    }
    Ok(query.all(db).await?)
}
