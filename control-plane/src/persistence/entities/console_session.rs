//! The `console_sessions` table: signed-in console sessions.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "console_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// SHA-256 of the session token, hex. The token itself is never stored.
    pub token_hash: String,
    pub login_id: String,
    pub create_time: i64,
    /// Refreshed at most once a minute while the session is used; idle expiry counts from it.
    pub last_use_time: i64,
    /// The latest the session may live, whatever its use.
    pub expire_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
