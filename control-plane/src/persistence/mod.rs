//! All SQL lives behind this module: connecting, migrating, and the queries the service layer
//! composes inside its transactions. Works on SQLite (the embedded default) and PostgreSQL.

pub mod accounts;
pub mod actions;
pub mod entities;
pub mod migrations;
pub mod nodes;
pub mod services;

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, SqlErr,
    Statement,
};
use sea_orm_migration::MigratorTrait;

use migrations::Migrator;

#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// A unique index refused the write.
    #[error("{0}")]
    Conflict(String),
    /// The database could not serve the request now (pool exhausted, lock timeout).
    #[error("database busy: {0}")]
    Busy(String),
    /// The transaction lost a deadlock or serialization conflict; running it again may work.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    #[error("database error: {0}")]
    Database(DbErr),
    /// A stored value does not parse; the row was written by something else.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<DbErr> for PersistenceError {
    fn from(err: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(detail)) = err.sql_err() {
            return PersistenceError::Conflict(detail);
        }
        let text = err.to_string();
        // PostgreSQL 40P01 / 40001: the loser of a lock cycle or a serialization conflict.
        if text.contains("deadlock detected") || text.contains("could not serialize access") {
            return PersistenceError::Aborted(text);
        }
        match err {
            DbErr::ConnectionAcquire(e) => PersistenceError::Busy(e.to_string()),
            other => PersistenceError::Database(other),
        }
    }
}

pub type Result<T, E = PersistenceError> = std::result::Result<T, E>;

/// A handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Persistence {
    db: DatabaseConnection,
}

impl Persistence {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or `postgres://…`) and applies pending
    /// migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(30));
        let is_sqlite = url.starts_with("sqlite:");
        if is_sqlite {
            // SQLite allows one writer; a single connection turns would-be SQLITE_BUSY upgrade
            // failures into orderly queueing, which is what the embedded default wants.
            options.max_connections(1).min_connections(1);
        } else {
            options.max_connections(16).min_connections(1);
        }
        let db = Database::connect(options).await?;
        if is_sqlite {
            for pragma in [
                "PRAGMA journal_mode = WAL",
                "PRAGMA foreign_keys = ON",
                "PRAGMA synchronous = NORMAL",
            ] {
                db.execute_unprepared(pragma).await?;
            }
        }
        let persistence = Persistence { db };
        persistence.migrate().await?;
        Ok(persistence)
    }

    async fn migrate(&self) -> Result<()> {
        if self.db.get_database_backend() == DbBackend::Postgres {
            // Replicas starting together must not race each other's migrations: hold a
            // transaction-scoped advisory lock while migrating.
            use sea_orm::TransactionTrait;
            let txn = self.db.begin().await?;
            txn.execute_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(7400740074)",
            ))
            .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await?;
        } else {
            Migrator::up(&self.db, None).await?;
        }
        Ok(())
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn close(self) {
        if let Err(err) = self.db.close().await {
            tracing::warn!(error = %err, "closing the database failed");
        }
    }
}

/// `CAST(COALESCE(SUM(col), 0) AS BIGINT)`: PostgreSQL sums BIGINT into NUMERIC otherwise.
pub(crate) fn sum_bigint(column: &str) -> sea_orm::sea_query::Expr {
    sea_orm::sea_query::Expr::cust(format!("CAST(COALESCE(SUM({column}), 0) AS BIGINT)"))
}

pub(crate) fn max_bigint(column: &str) -> sea_orm::sea_query::Expr {
    sea_orm::sea_query::Expr::cust(format!("CAST(COALESCE(MAX({column}), 0) AS BIGINT)"))
}

pub(crate) fn count_bigint() -> sea_orm::sea_query::Expr {
    sea_orm::sea_query::Expr::cust("CAST(COUNT(*) AS BIGINT)")
}

impl Persistence {
    /// One round trip to the database (health checking).
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await.map_err(PersistenceError::from)
    }

    /// Reports every statement's duration and failure to `observe` (query metrics). Call it
    /// before cloning the handle: clones made earlier keep the previous callback.
    pub fn observe_queries(
        &mut self,
        observe: impl Fn(&str, Duration, bool) + Send + Sync + 'static,
    ) {
        self.db
            .set_metric_callback(move |info: &sea_orm::metric::Info<'_>| {
                observe(&info.statement.sql, info.elapsed, info.failed)
            });
    }
}
