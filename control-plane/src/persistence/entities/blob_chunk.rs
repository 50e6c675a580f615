//! The `blob_chunks` table: a blob's bytes, in order, at most `BLOB_CHUNK_BYTES` per row.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blob_chunks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    /// The chunk set: an upload's own key until its blob row adopts it.
    pub storage_key: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub chunk_index: i64,
    pub data: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
