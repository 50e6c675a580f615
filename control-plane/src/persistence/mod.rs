//! All SQL lives behind this module: connecting, migrating, and the queries the service layer
//! composes inside its transactions. Works on SQLite (the embedded default) and PostgreSQL.

pub mod accounts;
pub mod actions;
pub mod cluster;
pub mod dispatch;
pub mod entities;
pub mod logins;
pub mod media;
pub mod migrations;
pub mod nodes;
pub mod notify;
pub mod services;

use std::sync::atomic::{AtomicI64, Ordering};
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
    /// The database cannot do its work now for a reason a person can fix (its disk is full, it
    /// is down or unreachable); the message says which.
    #[error("{0}")]
    Unavailable(String),
    /// The transaction lost a deadlock or serialization conflict; running it again may work.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    #[error("database error: {0}")]
    Database(DbErr),
    /// A stored value does not parse; the row was written by something else.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl PersistenceError {
    /// Names the row a [`PersistenceError::Corrupt`] came from; other errors pass through.
    pub fn in_row(self, table: &str, id: &str) -> Self {
        match self {
            PersistenceError::Corrupt(what) => {
                PersistenceError::Corrupt(format!("{table} row {id:?}: {what}"))
            }
            other => other,
        }
    }
}

/// The result of loading the row `id` of `table`: a value that does not decode names the row.
pub(crate) fn load_row<T>(table: &str, id: &str, loaded: Result<T, DbErr>) -> Result<T> {
    loaded.map_err(|err| PersistenceError::from(err).in_row(table, id))
}

impl From<DbErr> for PersistenceError {
    fn from(err: DbErr) -> Self {
        // A stored value that does not decode into its column's type (an enum, a set, JSON):
        // the row was written by something else. Nothing is guessed in its place.
        if matches!(
            err,
            DbErr::Type(_) | DbErr::TryIntoErr { .. } | DbErr::Json(_)
        ) {
            return PersistenceError::Corrupt(err.to_string());
        }
        if let Some(SqlErr::UniqueConstraintViolation(detail)) = err.sql_err() {
            return PersistenceError::Conflict(detail);
        }
        if let Some(reason) = unavailable_reason(&err) {
            tracing::warn!(error = %err, "the database cannot serve requests");
            return PersistenceError::Unavailable(reason);
        }
        if sqlstate(&err).is_some_and(|code| code == "40001" || code == "40P01") {
            // The loser of a serialization conflict or a lock cycle: nothing was written.
            return PersistenceError::Aborted(err.to_string());
        }
        match err {
            DbErr::ConnectionAcquire(e) => {
                LAST_ACQUIRE_TIMEOUT.store(crate::clock::now_millis(), Ordering::Relaxed);
                PersistenceError::Busy(format!(
                    "no database connection in time ({e}): the database is overloaded, down or unreachable"
                ))
            }
            other => PersistenceError::Database(other),
        }
    }
}

/// The database's own code for a failure: PostgreSQL's SQLSTATE, SQLite's (extended) result code.
fn sqlstate(err: &DbErr) -> Option<String> {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let (DbErr::Conn(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    match &**e {
        Sqlx::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// What the database's own error code (SQLite result code, PostgreSQL SQLSTATE) says about a
/// failure an operator must fix, in words they can act on.
fn unavailable_reason(err: &DbErr) -> Option<String> {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let (DbErr::Conn(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    match &**e {
        Sqlx::Database(db) => {
            let code = db.code()?;
            match code.as_ref() {
                // SQLITE_FULL, and PostgreSQL's disk_full class 53100.
                "13" | "53100" => Some(
                    "the database's disk is full: free space where the database stores its files, then retry"
                        .to_owned(),
                ),
                // SQLITE_READONLY and its extended codes.
                "8" | "264" | "520" | "776" | "1032" | "1288" | "1544" => Some(
                    "the database is read-only: check the permissions and the mount of the data directory"
                        .to_owned(),
                ),
                // admin_shutdown, crash_shutdown, cannot_connect_now.
                "57P01" | "57P02" | "57P03" => Some(format!(
                    "the database is shutting down or starting up ({}); retry shortly",
                    db.message()
                )),
                _ => None,
            }
        }
        Sqlx::Io(io) => Some(format!(
            "lost the connection to the database ({io}); check that it is running and reachable"
        )),
        Sqlx::PoolClosed => Some("the database connection pool is closed".to_owned()),
        _ => None,
    }
}

/// How long a request waits for a PostgreSQL connection. A healthy pool hands one out in
/// microseconds; a database that is down must not hold every caller for long.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for SQLite's connection. A local file is never down or
/// unreachable (its faults — a full disk, a read-only file — are told by their error codes);
/// waiting here is queueing behind the single writer, which a burst on a loaded host can make
/// longer than [`ACQUIRE_TIMEOUT`] without anything being wrong.
pub const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// After an outage was diagnosed, callers are answered at once for this long before the
/// database is tried again.
const OUTAGE_MEMORY: Duration = Duration::from_secs(2);
/// When a request last waited [`ACQUIRE_TIMEOUT`] in vain for a connection (any pool in this
/// process: the error does not say which). Until [`OUTAGE_MEMORY`] has passed, every caller
/// first checks that its database server answers, so one slow failure diagnoses the outage
/// for all that follow.
static LAST_ACQUIRE_TIMEOUT: AtomicI64 = AtomicI64::new(0);

/// How long the diagnosis of an outage may try to reach the database server.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// Where a PostgreSQL server listens, to tell "down" from "busy" when no connection comes.
    server: Option<(String, u16)>,
    /// The last diagnosed outage: when, and why.
    outage: std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, String)>>>,
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
            .acquire_timeout(if is_sqlite {
                SQLITE_ACQUIRE_TIMEOUT
            } else {
                ACQUIRE_TIMEOUT
            })
            .max_lifetime(settings.max_lifetime);
        if is_sqlite {
            // A local file cannot drop a connection: never ping one before use (sqlx's
            // default pings on every acquire — a round trip to the connection's thread per
            // query).
            options
                .max_connections(1)
                .min_connections(1)
                .test_before_acquire(false)
                .map_sqlx_sqlite_opts(sqlite_options);
        } else {
            // Only a connection idle long enough for the server or a proxy to have dropped it
            // is pinged before use; hot ones go straight through.
            options
                .max_connections(settings.readers.max(2) * 4)
                .min_connections(1)
                .test_before_acquire_if_idle_for(Duration::from_secs(10));
        }
        let db = Database::connect(options).await?;
        let server = if is_sqlite {
            None
        } else {
            use sea_orm::sqlx::postgres::PgConnectOptions;
            url.parse::<PgConnectOptions>()
                .ok()
                .map(|o| (o.get_host().to_owned(), o.get_port()))
        };
        let persistence = Persistence {
            reader: db.clone(),
            db,
            server,
            outage: Default::default(),
        };
        persistence.migrate().await?;
        if !is_sqlite {
            return Ok(persistence);
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .acquire_timeout(SQLITE_ACQUIRE_TIMEOUT)
            .max_lifetime(settings.max_lifetime)
            .max_connections(settings.readers.max(1))
            .min_connections(1)
            .test_before_acquire(false)
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

    /// Opens a transaction on the writer.
    pub async fn begin(&self) -> Result<Tx> {
        use sea_orm::TransactionTrait;
        Ok(Tx(self.db.begin().await?))
    }

    pub fn is_postgres(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    /// Fails at once while an outage diagnosed less than [`OUTAGE_MEMORY`] ago stands, so
    /// callers are not each held for [`ACQUIRE_TIMEOUT`] by a database known to be down; and
    /// right after a connection could not be had, checks that the server answers first.
    pub async fn check_available(&self) -> Result<()> {
        {
            let outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, reason)) = &*outage
                && at.elapsed() < OUTAGE_MEMORY
            {
                return Err(PersistenceError::Unavailable(reason.clone()));
            }
        }
        let since_timeout =
            crate::clock::now_millis() - LAST_ACQUIRE_TIMEOUT.load(Ordering::Relaxed);
        if since_timeout < OUTAGE_MEMORY.as_millis() as i64 {
            let suspected = PersistenceError::Busy("a recent request found no connection".into());
            if let err @ PersistenceError::Unavailable(_) = self.diagnose(suspected).await {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Turns a failure to get a connection into its cause, remembered for [`Self::check_available`]:
    /// the server refuses or does not answer (down, unreachable), or it answers and every
    /// connection is busy. Other errors pass through.
    pub async fn diagnose(&self, error: PersistenceError) -> PersistenceError {
        let PersistenceError::Busy(busy) = &error else {
            return error;
        };
        let Some((host, port)) = &self.server else {
            return error;
        };
        let reached = tokio::time::timeout(
            PROBE_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), *port)),
        )
        .await;
        let reason = match reached {
            Ok(Ok(_)) => return PersistenceError::Busy(busy.clone()),
            Ok(Err(e)) => format!(
                "the database server at {host}:{port} cannot be reached ({e}): check that PostgreSQL is running and reachable from this host"
            ),
            Err(_) => format!(
                "the database server at {host}:{port} does not answer within {} s: check that PostgreSQL is running and reachable from this host",
                PROBE_TIMEOUT.as_secs()
            ),
        };
        tracing::warn!(reason = %reason, "database outage");
        *self.outage.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), reason.clone()));
        PersistenceError::Unavailable(reason)
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

/// Anything the queries in this module run on: a [`Connection`] or a [`Tx`].
pub trait Executor: ConnectionTrait {}

impl<T: ConnectionTrait> Executor for T {}

/// A connection pool handle the queries in this module run on, outside a transaction.
pub type Connection = DatabaseConnection;

/// A transaction: opened by [`Persistence::begin`], passed to the queries in this module,
/// committed with [`Tx::commit`] or rolled back when dropped.
pub struct Tx(sea_orm::DatabaseTransaction);

impl Tx {
    pub async fn commit(self) -> Result<()> {
        self.0.commit().await.map_err(PersistenceError::from)
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Tx {
    fn get_database_backend(&self) -> DbBackend {
        self.0.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<sea_orm::ExecResult, DbErr> {
        self.0.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<sea_orm::ExecResult, DbErr> {
        self.0.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<sea_orm::QueryResult>, DbErr> {
        self.0.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<sea_orm::QueryResult>, DbErr> {
        self.0.query_all_raw(stmt).await
    }
}

/// How many times a request whose transaction the database aborted is run before its caller
/// is told to retry. PostgreSQL aborts the loser of a deadlock or a serialization conflict
/// (SQLSTATE 40P01, 40001) and a create can lose the last free port to another replica; the
/// transaction rolled back, so running the request again is safe, and the caller should not
/// have to.
const TRANSACTION_ATTEMPTS: u32 = 4;

/// An error that may say the database aborted the transaction ([`PersistenceError::Aborted`],
/// or what the caller made of it).
pub trait MaybeAborted {
    /// The reason, when the transaction was aborted and running it again may work.
    fn aborted(&self) -> Option<&str>;
}

impl MaybeAborted for PersistenceError {
    fn aborted(&self) -> Option<&str> {
        match self {
            PersistenceError::Aborted(reason) => Some(reason),
            _ => None,
        }
    }
}

/// Runs `request` (one transaction, committed or rolled back as a whole) again when the
/// database aborted it, after a short randomised pause so the two sides of a conflict do not
/// meet again.
pub async fn retry_aborted<T, E, F, Fut>(what: &'static str, mut request: F) -> Result<T, E>
where
    E: MaybeAborted,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match request().await {
            Err(err) if attempt < TRANSACTION_ATTEMPTS && err.aborted().is_some() => {
                let pause = Duration::from_millis(rand::random_range(1..=5u64 << attempt));
                tracing::debug!(
                    what,
                    attempt,
                    reason = err.aborted(),
                    ?pause,
                    "transaction aborted; running it again"
                );
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            outcome => return outcome,
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

    /// A real SQLITE_FULL: the database may not grow past its page limit, which SQLite reports
    /// exactly as it reports a full disk.
    #[tokio::test]
    async fn a_full_disk_answers_unavailable_with_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("full.db").display());
        let persistence = Persistence::connect(&url).await.expect("connect");
        let db = persistence.db();
        db.execute_unprepared("CREATE TABLE filler (x TEXT NOT NULL)")
            .await
            .expect("table");
        let pages: i64 = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA page_count",
            ))
            .await
            .expect("page count")
            .and_then(|row| row.try_get_by_index(0).ok())
            .expect("a count");
        db.execute_unprepared(&format!("PRAGMA max_page_count = {}", pages + 1))
            .await
            .expect("cap");
        let mut failure = None;
        for _ in 0..100 {
            if let Err(err) = db
                .execute_unprepared("INSERT INTO filler VALUES (hex(randomblob(4000)))")
                .await
            {
                failure = Some(err);
                break;
            }
        }
        let err = failure.expect("the capped database fills up");
        let status = tonic::Status::from(crate::error::ServiceError::from(PersistenceError::from(
            err,
        )));
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("disk is full") && status.message().contains("free space"),
            "{status:?}"
        );
        persistence.close().await;
    }

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
