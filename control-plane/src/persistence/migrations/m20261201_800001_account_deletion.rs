//! Accounts and nodes can be deleted.
//!
//! Deleted rows stay as tombstones: deleted services keep naming their customer, reseller and
//! node (foreign keys), and their history must stay readable. A forced account deletion that
//! waits for its services' deletes is recorded as `delete_request_time`, so whichever replica
//! records the last delete finishes it, after any restart.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_800001_account_deletion"
    }
}

const UP: &[&str] = &[
    "ALTER TABLE customers ADD COLUMN delete_request_time BIGINT",
    "ALTER TABLE customers ADD COLUMN delete_time BIGINT",
    "ALTER TABLE resellers ADD COLUMN delete_request_time BIGINT",
    "ALTER TABLE resellers ADD COLUMN delete_time BIGINT",
    "ALTER TABLE nodes ADD COLUMN delete_time BIGINT",
    // The account-deletion sweep looks for pending deletions only.
    "CREATE INDEX customers_pending_deletion ON customers (delete_request_time) WHERE delete_request_time IS NOT NULL AND delete_time IS NULL",
    "CREATE INDEX api_tokens_by_principal ON api_tokens (principal_kind, principal_id, id)",
];

const DOWN: &[&str] = &[
    "DROP INDEX api_tokens_by_principal",
    "DROP INDEX customers_pending_deletion",
    "ALTER TABLE nodes DROP COLUMN delete_time",
    "ALTER TABLE resellers DROP COLUMN delete_time",
    "ALTER TABLE resellers DROP COLUMN delete_request_time",
    "ALTER TABLE customers DROP COLUMN delete_time",
    "ALTER TABLE customers DROP COLUMN delete_request_time",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in UP {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in DOWN {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
