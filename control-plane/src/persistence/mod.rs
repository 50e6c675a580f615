//! All SQL lives behind this module: connecting, migrating, and the queries the service layer
//! composes inside its transactions. Works on SQLite (the embedded default) and PostgreSQL.

pub mod accounts;
pub mod actions;
pub mod dispatch;
pub mod entities;
pub mod migrations;
pub mod nodes;
pub mod notify;
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

/// Pool settings; the defaults are what the server uses.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Connections are replaced after this long (sqlx's default is 30 minutes). Every new
    /// connection gets the same pragmas, so nothing lapses when one is replaced.
    pub max_lifetime: Duration,
    /// SQLite: read-only connections beside the single writer (WAL lets them read while it
    /// writes). PostgreSQL: the size of the one pool.
    pub readers: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_lifetime: Duration::from_secs(30 * 60),
            readers: 4,
        }
    }
}

/// A handle on the database. Cheap to clone.
///
/// SQLite runs with one writer connection (a single connection turns would-be `SQLITE_BUSY`
/// upgrade failures into orderly queueing) and a pool of read-only connections, so reads never
/// wait behind writes. Durability mode: WAL with `synchronous = NORMAL` — a commit is atomic
/// and survives a crash of the process; a power loss may lose the last commits before the
/// next checkpoint, never corrupt the database. On PostgreSQL both handles are one pool.
#[derive(Clone)]
pub struct Persistence {
    db: DatabaseConnection,
    reader: DatabaseConnection,
}

impl Persistence {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or `postgres://…`) and applies pending
    /// migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PoolSettings::default()).await
    }

    pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<Self> {
        let is_sqlite = url.starts_with("sqlite:");
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(30))
            .max_lifetime(settings.max_lifetime);
        if is_sqlite {
            options
                .max_connections(1)
                .min_connections(1)
                .map_sqlx_sqlite_opts(sqlite_options);
        } else {
            options
                .max_connections(settings.readers.max(2) * 4)
                .min_connections(1);
        }
        let db = Database::connect(options).await?;
        let persistence = Persistence {
            reader: db.clone(),
            db,
        };
        persistence.migrate().await?;
        if !is_sqlite {
            return Ok(persistence);
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(30))
            .max_lifetime(settings.max_lifetime)
            .max_connections(settings.readers.max(1))
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| sqlite_options(o).read_only(true));
        let reader = Database::connect(options).await?;
        Ok(Persistence {
            reader,
            ..persistence
        })
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

    /// The connection writes and transactions use.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// For reads outside a transaction: they see every committed write.
    pub fn reader(&self) -> &DatabaseConnection {
        &self.reader
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub async fn close(self) {
        let backend = self.backend();
        if let Err(err) = self.db.close().await {
            tracing::warn!(error = %err, "closing the database failed");
        }
        if backend == DbBackend::Sqlite
            && let Err(err) = self.reader.close().await
        {
            tracing::warn!(error = %err, "closing the database readers failed");
        }
    }
}

/// Every SQLite connection's settings, applied as it is opened.
fn sqlite_options(
    options: sea_orm::sqlx::sqlite::SqliteConnectOptions,
) -> sea_orm::sqlx::sqlite::SqliteConnectOptions {
    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
    options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
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
        let observe = std::sync::Arc::new(observe);
        let on_reader = observe.clone();
        self.db
            .set_metric_callback(move |info: &sea_orm::metric::Info<'_>| {
                observe(&info.statement.sql, info.elapsed, info.failed)
            });
        // A statement runs through one handle or the other (on PostgreSQL they share a pool,
        // but each handle keeps its own callback), so nothing is counted twice.
        self.reader
            .set_metric_callback(move |info: &sea_orm::metric::Info<'_>| {
                on_reader(&info.statement.sql, info.elapsed, info.failed)
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pragma(db: &DatabaseConnection, name: &str) -> String {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                format!("PRAGMA {name}"),
            ))
            .await
            .expect("pragma")
            .expect("a row");
        row.try_get_by_index::<i64>(0)
            .map(|v| v.to_string())
            .or_else(|_| row.try_get_by_index::<String>(0))
            .expect("pragma value")
    }

    /// The pool replaces connections at their maximum lifetime; every replacement must come
    /// with the same durability settings (they once ran on the first connection only).
    #[tokio::test]
    async fn sqlite_settings_hold_on_every_connection_across_recycling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db.sqlite").display()
        );
        let persistence = Persistence::connect_with(
            &url,
            PoolSettings {
                max_lifetime: Duration::from_millis(300),
                readers: 1,
            },
        )
        .await
        .expect("connect");
        let db = persistence.db();
        db.execute_unprepared("CREATE TEMP TABLE first_connection (x INTEGER)")
            .await
            .expect("marker");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let still_first = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT COUNT(*) FROM temp.sqlite_master WHERE name = 'first_connection'",
                ))
                .await
                .expect("query")
                .expect("row")
                .try_get_by_index::<i64>(0)
                .expect("count");
            if still_first == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the writer connection was never replaced"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // 1 = NORMAL
        assert_eq!(pragma(db, "synchronous").await, "1");
        assert_eq!(pragma(db, "journal_mode").await, "wal");
        assert_eq!(pragma(db, "foreign_keys").await, "1");
        assert_eq!(pragma(persistence.reader(), "journal_mode").await, "wal");
        assert!(
            persistence
                .reader()
                .execute_unprepared("CREATE TABLE written_by_a_reader (x INTEGER)")
                .await
                .is_err(),
            "readers are read-only"
        );
    }
}
