//! The `actions` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "actions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub media_service_id: String,
    pub node_id: String,
    pub kind: String,
    pub state: String,
    pub sequence: i64,
    pub requested_by: String,
    pub error: String,
    pub deadline: i64,
    /// The agent session the action was last sent on; another session re-sends it.
    pub dispatch_session: Option<String>,
    pub create_time: i64,
    pub update_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
