//! The `media_tracks` table: a customer's library.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "media_tracks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub customer_id: String,
    /// The customer's reseller, so the reseller's disk usage is one indexed sum.
    pub reseller_id: String,
    pub display_name: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub format: String,
    pub codec: String,
    /// The file name extension on nodes, chosen from the format (never the user's).
    pub extension: String,
    pub duration_ms: i64,
    pub bit_rate: i64,
    pub create_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
