//! The `nodes` table.

use sea_orm::entity::prelude::*;

use crate::domain::NodeCapabilities;

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
    /// The plugin capabilities the agent last reported, stored as JSON.
    pub capabilities: NodeCapabilities,
    pub agent_version: String,
    /// A session holds the node (live while `session_replica`'s lease is).
    pub connected: bool,
    pub session_id: Option<String>,
    pub last_heartbeat_time: Option<i64>,
    pub join_time: Option<i64>,
    pub join_token_hash: Option<String>,
    pub join_token_expire_time: Option<i64>,
    pub cert_fingerprint: Option<String>,
    pub previous_cert_fingerprint: Option<String>,
    pub cert_expire_time: Option<i64>,
    pub create_time: i64,
    /// Bumped by every change of what the node must run.
    pub version: i64,
    /// The fence: bumped by every new session; a session's writes require its own value.
    pub session_generation: i64,
    /// The replica holding the current session.
    pub session_replica: Option<String>,
    /// Database time the node's last session ended; None while connected.
    pub unreachable_since: Option<i64>,
    /// Live services placed on the node and ports allocated on it, kept by placement.
    pub service_count: i64,
    pub ports_used: i64,
    /// Where the node's servers listen; empty: what `public_host` resolves to on the node.
    pub bind_address: String,
    /// Deleted: its identity is revoked; the row stays only because tombstoned services and
    /// their actions name it.
    pub delete_time: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
