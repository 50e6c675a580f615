//! The `observed_services` table: what the agent last reported of a service, apart from the
//! intent in `media_services`.

use sea_orm::entity::prelude::*;

use crate::domain::{ObservedState, ServiceStats};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "observed_services")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub media_service_id: String,
    pub node_id: String,
    pub state: ObservedState,
    pub message: String,
    /// Stored as JSON.
    pub stats: ServiceStats,
    /// The desired generation the agent runs.
    pub observed_generation: i64,
    pub observe_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
