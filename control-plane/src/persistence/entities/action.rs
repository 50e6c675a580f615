//! The `actions` table.

use sea_orm::entity::prelude::*;

use crate::domain::{ActionKind, ActionState, DesiredState};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "actions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub media_service_id: String,
    pub node_id: String,
    pub kind: ActionKind,
    pub state: ActionState,
    pub sequence: i64,
    pub requested_by: String,
    pub error: String,
    pub create_time: i64,
    pub update_time: i64,
    /// The session fence (`nodes.session_generation`) it was claimed under.
    pub dispatch_generation: Option<i64>,
    /// Database time past which the agent refuses it (set when it is claimed).
    pub not_after: Option<i64>,
    /// While its node is unreachable: database time at which it fails. None while connected.
    pub expire_time: Option<i64>,
    /// The service's desired state before this action's claim set it; restored on failure.
    pub previous_desired_state: Option<DesiredState>,
    /// The control plane failed it at its deadline (the node may still report on it).
    pub expired: bool,
    /// A result the node reported after the action had expired.
    pub late_state: Option<ActionState>,
    pub late_message: String,
    /// W3C trace context (`traceparent`) of the request that queued it.
    pub trace_context: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
