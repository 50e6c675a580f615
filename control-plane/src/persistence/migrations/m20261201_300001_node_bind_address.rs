//! Nodes get a bind address: the IP their streaming servers listen on.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_300001_node_bind_address"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Empty for existing nodes: their agents resolve the public host, as new nodes' do.
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE nodes ADD COLUMN bind_address TEXT NOT NULL DEFAULT ''",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE nodes DROP COLUMN bind_address")
            .await?;
        Ok(())
    }
}
