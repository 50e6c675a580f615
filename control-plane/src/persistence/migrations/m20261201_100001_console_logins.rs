//! Console sign-in: one login (email + argon2id password hash) per account, and the sessions
//! signed-in people hold. Both live in the database so every replica agrees on sign-outs,
//! expiry and lockouts.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_100001_console_logins"
    }
}

const UP: &[&str] = &[
    r#"CREATE TABLE logins (
        id TEXT PRIMARY KEY,
        principal_kind TEXT NOT NULL,
        principal_id TEXT NOT NULL,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        failed_attempts BIGINT NOT NULL,
        lock_expire_time BIGINT,
        password_update_time BIGINT NOT NULL,
        create_time BIGINT NOT NULL
    )"#,
    "CREATE UNIQUE INDEX logins_one_per_account ON logins (principal_kind, principal_id)",
    r#"CREATE TABLE console_sessions (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        login_id TEXT NOT NULL REFERENCES logins(id) ON DELETE CASCADE,
        create_time BIGINT NOT NULL,
        last_use_time BIGINT NOT NULL,
        expire_time BIGINT NOT NULL
    )"#,
    "CREATE INDEX console_sessions_by_login ON console_sessions (login_id)",
    "CREATE INDEX console_sessions_by_expiry ON console_sessions (expire_time)",
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
        for table in ["console_sessions", "logins"] {
            db.execute_unprepared(&format!("DROP TABLE {table}"))
                .await?;
        }
        Ok(())
    }
}
