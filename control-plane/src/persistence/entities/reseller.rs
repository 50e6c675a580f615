//! The `resellers` table.

use sea_orm::entity::prelude::*;

use crate::domain::{ServiceType, ServiceTypes};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "resellers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub display_name: String,
    pub primary_customer_id: String,
    pub limit_customers: Option<i64>,
    pub limit_services: Option<i64>,
    pub limit_listener_slots: Option<i64>,
    pub limit_max_bitrate_kbps: Option<i64>,
    pub limit_disk_mb: Option<i64>,
    pub limit_bandwidth_gb: Option<i64>,
    /// Stored as comma-separated type names, e.g. "icecast,video".
    pub allowed_types: ServiceTypes,
    pub default_type: Option<ServiceType>,
    pub create_time: i64,
    pub update_time: i64,
    /// A forced delete waits for its customers' deletions; set while it does.
    pub delete_request_time: Option<i64>,
    /// Deleted: the row stays only because tombstoned services name it.
    pub delete_time: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
