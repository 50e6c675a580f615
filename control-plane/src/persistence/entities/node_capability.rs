//! The `node_capabilities` table: the service types a node's agent reported it can run.

use sea_orm::entity::prelude::*;

use crate::domain::ServiceType;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "node_capabilities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub service_type: ServiceType,
    pub autodj: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
