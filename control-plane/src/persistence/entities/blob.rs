//! The `blobs` table: one row per stored blob, naming the chunk set (`storage_key`) that holds
//! its bytes; written once every chunk is in, so a blob either exists whole or not at all.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub sha256: String,
    pub storage_key: String,
    pub size_bytes: i64,
    pub chunk_count: i64,
    pub create_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
