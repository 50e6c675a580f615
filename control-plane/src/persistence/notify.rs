//! Change notifications between replicas: PostgreSQL `LISTEN/NOTIFY`.
//!
//! A transaction that changes something another replica may be waiting on adds a notice with
//! [`send`]; PostgreSQL delivers it to every listening replica when (and only if) the
//! transaction commits. The replica that made the change publishes it in-process itself, so
//! notices carry their origin and a replica ignores its own. SQLite has one replica, so
//! [`send`] does nothing there and in-process publication is all there is.
//!
//! Payloads are small text records, several per notification (PostgreSQL limits a payload to
//! 8000 bytes): `<origin> <kind> <id>,<id>,…` where kind is `q` (actions queued on nodes), `n`
//! (what nodes must run changed), `a` (actions changed), `t` (API tokens changed) or `o`
//! (services changed hands).

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::mpsc;

use super::Result;

/// The one channel every replica listens on.
pub const CHANNEL: &str = "castplane_changes";
const MAX_PAYLOAD: usize = 7900;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// Actions were queued for these nodes.
    ActionsQueued,
    /// What these nodes must run changed (their `version` moved).
    NodesChanged,
    /// These actions changed.
    ActionsChanged,
    /// API tokens were revoked or their principals removed; caches must be dropped.
    TokensChanged,
    /// These services changed hands.
    OwnersChanged,
}

impl NoticeKind {
    fn code(self) -> char {
        match self {
            NoticeKind::ActionsQueued => 'q',
            NoticeKind::NodesChanged => 'n',
            NoticeKind::ActionsChanged => 'a',
            NoticeKind::TokensChanged => 't',
            NoticeKind::OwnersChanged => 'o',
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "q" => NoticeKind::ActionsQueued,
            "n" => NoticeKind::NodesChanged,
            "a" => NoticeKind::ActionsChanged,
            "t" => NoticeKind::TokensChanged,
            "o" => NoticeKind::OwnersChanged,
            _ => return None,
        })
    }
}

/// What another replica changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub ids: Vec<String>,
}

/// What a listener hands on: notices, or word that some may have been lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    Notice(Notice),
    /// The listening connection was re-established: anything may have changed meanwhile.
    Resync,
}

/// Adds notices to the transaction `db` (PostgreSQL; nothing on SQLite).
pub async fn send(
    db: &impl ConnectionTrait,
    origin: &str,
    kind: NoticeKind,
    ids: &[String],
) -> Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for payload in payloads(origin, kind, ids) {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), payload.into()],
        ))
        .await?;
    }
    Ok(())
}

fn payloads(origin: &str, kind: NoticeKind, ids: &[String]) -> Vec<String> {
    let head = format!("{origin} {} ", kind.code());
    if ids.is_empty() {
        return vec![head];
    }
    let mut out = Vec::new();
    let mut current = head.clone();
    for id in ids {
        if current.len() > head.len() && current.len() + id.len() + 1 > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut current, head.clone()));
        }
        if current.len() > head.len() {
            current.push(',');
        }
        current.push_str(id);
    }
    out.push(current);
    out
}

/// Parses a payload; `None` for our own notices and anything malformed.
fn parse(payload: &str, own_origin: &str) -> Option<Notice> {
    let mut parts = payload.splitn(3, ' ');
    let origin = parts.next()?;
    let kind = NoticeKind::from_code(parts.next()?)?;
    if origin == own_origin {
        return None;
    }
    let ids = parts
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    Some(Notice { kind, ids })
}

/// Listens on PostgreSQL until `shutdown`, handing other replicas' notices to `out`. Returns
/// once it is listening (so nothing committed afterwards is missed), with the listening task.
pub async fn listen(
    db: &sea_orm::DatabaseConnection,
    origin: String,
    out: mpsc::UnboundedSender<Received>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    use sea_orm::sqlx::postgres::PgListener;
    let pool = db.get_postgres_connection_pool().clone();
    let mut listener = PgListener::connect_with(&pool)
        .await
        .map_err(|e| super::PersistenceError::Busy(format!("cannot listen for changes: {e}")))?;
    listener
        .listen(CHANNEL)
        .await
        .map_err(|e| super::PersistenceError::Busy(format!("cannot listen for changes: {e}")))?;
    Ok(tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = shutdown.cancelled() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    if let Some(notice) = parse(notification.payload(), &origin)
                        && out.send(Received::Notice(notice)).is_err()
                    {
                        return;
                    }
                }
                // The connection was lost; the next call reconnects and listens again, but
                // whatever was sent meanwhile is gone.
                Ok(None) => {
                    tracing::warn!("change notifications interrupted; resynchronising");
                    if out.send(Received::Resync).is_err() {
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "change notifications failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_split_below_the_limit() {
        let ids: Vec<String> = (0..2000).map(|i| format!("act_{i:026}")).collect();
        let split = payloads("rep_a", NoticeKind::ActionsChanged, &ids);
        assert!(split.len() > 1);
        let mut seen = Vec::new();
        for payload in &split {
            assert!(payload.len() <= MAX_PAYLOAD, "{}", payload.len());
            let notice = parse(payload, "rep_b").expect("parses");
            assert_eq!(notice.kind, NoticeKind::ActionsChanged);
            seen.extend(notice.ids);
        }
        assert_eq!(seen, ids);
        assert_eq!(parse(&split[0], "rep_a"), None, "own notices are ignored");
        let tokens = payloads("rep_a", NoticeKind::TokensChanged, &[]);
        assert_eq!(
            parse(&tokens[0], "rep_b"),
            Some(Notice {
                kind: NoticeKind::TokensChanged,
                ids: vec![]
            })
        );
        assert_eq!(parse("rep_a x y", "rep_b"), None);
    }
}
