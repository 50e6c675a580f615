//! The `ownership_changes` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ownership_changes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub media_service_id: String,
    pub from_customer_id: String,
    pub to_customer_id: String,
    pub from_reseller_id: String,
    pub to_reseller_id: String,
    pub changed_by: String,
    pub change_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
