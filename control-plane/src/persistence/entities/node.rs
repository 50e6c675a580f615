//! The `nodes` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub public_host: String,
    pub port_first: i64,
    pub port_last: i64,
    pub capacity: i64,
    /// JSON list of the plugin capabilities the agent last reported.
    pub capabilities: String,
    pub agent_version: String,
    pub connected: bool,
    /// The stream session currently holding the node; a stale session cannot mark it offline.
    pub session_id: Option<String>,
    pub last_heartbeat_time: Option<i64>,
    pub join_time: Option<i64>,
    pub join_token_hash: Option<String>,
    pub join_token_expire_time: Option<i64>,
    pub cert_fingerprint: Option<String>,
    pub previous_cert_fingerprint: Option<String>,
    pub cert_expire_time: Option<i64>,
    pub create_time: i64,
    /// Where the node's servers listen; empty: what `public_host` resolves to on the node.
    pub bind_address: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
