//! The `media_services` table.

use sea_orm::entity::prelude::*;

use crate::domain::{DesiredState, ServiceType};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "media_services")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub customer_id: String,
    pub reseller_id: String,
    pub service_type: ServiceType,
    pub max_listeners: i64,
    pub max_bitrate_kbps: i64,
    pub disk_quota_mb: i64,
    pub bandwidth_gb_per_month: i64,
    pub autodj: bool,
    pub node_id: String,
    pub desired_state: DesiredState,
    pub deleting: bool,
    pub delete_time: Option<i64>,
    pub source_password: String,
    pub admin_password: String,
    pub relay_password: String,
    pub generation: i64,
    pub create_time: i64,
    pub update_time: i64,
    /// The node version of the service's last change: a session reads what moved past its own.
    pub node_version: i64,
    /// The last action sequence number handed out for the service.
    pub action_sequence: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
