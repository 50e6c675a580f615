//! The `customers` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub reseller_id: String,
    pub display_name: String,
    /// Lowercased display name: the wizard lists customers a–z, case-insensitively.
    pub sort_key: String,
    pub email: String,
    pub is_primary: bool,
    pub create_time: i64,
    pub update_time: i64,
    /// A forced delete waits for the customer's services' deletes; set while it does.
    pub delete_request_time: Option<i64>,
    /// Deleted: the row stays only because tombstoned services name it.
    pub delete_time: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
