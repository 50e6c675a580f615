//! The durable action queue.

use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder, QuerySelect};

use super::Result;
use super::entities::action;
use crate::domain::ActionState;

pub async fn get_action(db: &impl ConnectionTrait, id: &str) -> Result<Option<action::Model>> {
    super::load_row(
        "actions",
        id,
        action::Entity::find_by_id(id.to_owned()).one(db).await,
    )
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
        query = query.filter(if filter.newest_first {
            action::Column::Id.lt(after)
        } else {
            action::Column::Id.gt(after)
        });
    }
    Ok(query.all(db).await?)
}
