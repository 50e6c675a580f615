//! The dispatcher's queries: replica leases, fenced node sessions, what a node must run, claims
//! of queued actions, agents' results and observations in batches, and the deadline sweep.
//!
//! Every write a session makes is fenced: it happens only while `nodes.session_generation`
//! still holds the session's own value, checked under a share lock on the node row
//! (PostgreSQL) in the same transaction, so a replica whose session was replaced can neither
//! dispatch nor record anything. Times that decide liveness and deadlines come from the
//! database's clock.

use std::collections::HashMap;

use sea_orm::{
    ConnectionTrait, DbBackend, FromQueryResult, QueryResult, Statement, TryGetable, Value,
};

use super::Result;
use super::entities::{action, media_service, node, port_allocation};
use crate::domain::{
    ActionState, DesiredState, NodeCapabilities, ObservedState, ServiceStats, ServiceType,
};

const OPEN: &str = "('queued', 'dispatched', 'running')";

/// Builds a statement from SQL written with `$1…$n` placeholders (PostgreSQL's); SQLite gets
/// the same numbers as `?1…?n`.
pub(crate) fn sql(backend: DbBackend, text: &str, values: Vec<Value>) -> Statement {
    let text = match backend {
        DbBackend::Postgres => text.to_owned(),
        _ => text.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, text, values)
}

/// `$first, $first+1, …` for an IN list of `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn now_sql(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        _ => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
    }
}

fn share_lock(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => " FOR SHARE",
        _ => "",
    }
}

fn models<M: FromQueryResult>(rows: Vec<QueryResult>) -> Result<Vec<M>> {
    rows.iter()
        .map(|row| M::from_query_result(row, "").map_err(Into::into))
        .collect()
}

fn column<T: TryGetable>(row: &QueryResult, name: &str) -> Result<T> {
    Ok(row.try_get::<T>("", name)?)
}

/// The database's clock now, in milliseconds.
pub async fn now(db: &impl ConnectionTrait) -> Result<i64> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(sql(
            backend,
            &format!("SELECT {} AS now", now_sql(backend)),
            vec![],
        ))
        .await?
        .ok_or_else(|| {
            super::PersistenceError::Corrupt("the clock query returned nothing".into())
        })?;
    column(&row, "now")
}

// ---------------------------------------------------------------------------------------------
// Replica leases

pub async fn register_replica(db: &impl ConnectionTrait, id: &str, lease_ms: i64) -> Result<()> {
    let b = db.get_database_backend();
    let now = now_sql(b);
    db.execute_raw(sql(
        b,
        &format!(
            "INSERT INTO replicas (id, lease_expire_time, start_time) VALUES ($1, {now} + $2, {now})"
        ),
        vec![id.into(), lease_ms.into()],
    ))
    .await?;
    Ok(())
}

/// Extends the lease; false when it had already run out (other replicas may have taken this
/// replica's nodes for unreachable: its sessions must end).
pub async fn renew_replica(db: &impl ConnectionTrait, id: &str, lease_ms: i64) -> Result<bool> {
    let b = db.get_database_backend();
    let now = now_sql(b);
    let result = db
        .execute_raw(sql(
            b,
            &format!(
                "UPDATE replicas SET lease_expire_time = {now} + $2 WHERE id = $1 AND lease_expire_time >= {now}"
            ),
            vec![id.into(), lease_ms.into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Takes a fresh lease after the old one lapsed (the caller has ended every session it held).
pub async fn renew_replica_forced(
    db: &impl ConnectionTrait,
    id: &str,
    lease_ms: i64,
) -> Result<()> {
    let b = db.get_database_backend();
    db.execute_raw(sql(
        b,
        &format!(
            "UPDATE replicas SET lease_expire_time = {} + $2 WHERE id = $1",
            now_sql(b)
        ),
        vec![id.into(), lease_ms.into()],
    ))
    .await?;
    Ok(())
}

/// A replica that stops cleanly gives its lease up, so its nodes count as unreachable at once.
pub async fn retire_replica(db: &impl ConnectionTrait, id: &str) -> Result<()> {
    let b = db.get_database_backend();
    db.execute_raw(sql(
        b,
        "UPDATE replicas SET lease_expire_time = 0 WHERE id = $1",
        vec![id.into()],
    ))
    .await?;
    Ok(())
}

/// Every replica's lease and the database's clock: a node is online while its session's
/// replica holds its lease.
pub async fn replica_leases(db: &impl ConnectionTrait) -> Result<(i64, HashMap<String, i64>)> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(sql(
            b,
            &format!(
                "SELECT id, lease_expire_time, {} AS now FROM replicas",
                now_sql(b)
            ),
            vec![],
        ))
        .await?;
    let mut leases = HashMap::new();
    let mut now = None;
    for row in &rows {
        leases.insert(column(row, "id")?, column(row, "lease_expire_time")?);
        now = Some(column::<i64>(row, "now")?);
    }
    let now = match now {
        Some(now) => now,
        None => self::now(db).await?,
    };
    Ok((now, leases))
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// What a node's new session starts from.
pub struct OpenedSession {
    pub node: node::Model,
    /// Actions sent on an earlier session and not finished: re-sent (the agent answers repeats
    /// from its log), now fenced by this session and with a fresh `not_after`.
    pub resend: Vec<action::Model>,
}

/// Takes the node over for a new session (any earlier one, on any replica, is fenced off) and
/// records what its agent reported. `None` when the node is gone.
#[allow(clippy::too_many_arguments)]
pub async fn open_session(
    txn: &impl ConnectionTrait,
    node_id: &str,
    session_id: &str,
    replica_id: &str,
    agent_version: &str,
    capabilities: &NodeCapabilities,
    capable_types: &[(ServiceType, bool)],
    validity_ms: i64,
) -> Result<Option<OpenedSession>> {
    let b = txn.get_database_backend();
    let now = now_sql(b);
    let rows = txn
        .query_all_raw(sql(
            b,
            &format!(
                "UPDATE nodes SET session_generation = session_generation + 1, connected = TRUE, \
                 session_id = $2, session_replica = $3, agent_version = $4, capabilities = $5, \
                 last_heartbeat_time = {now}, unreachable_since = NULL \
                 WHERE id = $1 RETURNING *"
            ),
            vec![
                node_id.into(),
                session_id.into(),
                replica_id.into(),
                agent_version.into(),
                capabilities.clone().into(),
            ],
        ))
        .await?;
    let Some(node) = models::<node::Model>(rows)?.pop() else {
        return Ok(None);
    };
    txn.execute_raw(sql(
        b,
        "DELETE FROM node_capabilities WHERE node_id = $1",
        vec![node_id.into()],
    ))
    .await?;
    if !capable_types.is_empty() {
        let mut values: Vec<Value> = Vec::new();
        let mut tuples = Vec::new();
        for (i, (service_type, autodj)) in capable_types.iter().enumerate() {
            tuples.push(format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3));
            values.push((*service_type).into());
            values.push((*autodj).into());
        }
        values.insert(0, node_id.into());
        txn.execute_raw(sql(
            b,
            &format!(
                "INSERT INTO node_capabilities (node_id, service_type, autodj) VALUES {}",
                tuples.join(", ")
            ),
            values,
        ))
        .await?;
    }
    // The node is reachable again: no open action counts down towards failure.
    txn.execute_raw(sql(
        b,
        &format!(
            "UPDATE actions SET expire_time = NULL WHERE node_id = $1 AND expire_time IS NOT NULL AND state IN {OPEN}"
        ),
        vec![node_id.into()],
    ))
    .await?;
    let rows = txn
        .query_all_raw(sql(
            b,
            &format!(
                "UPDATE actions SET dispatch_generation = $2, not_after = {now} + $3 \
                 WHERE node_id = $1 AND state IN ('dispatched', 'running') RETURNING *"
            ),
            vec![
                node_id.into(),
                node.session_generation.into(),
                validity_ms.into(),
            ],
        ))
        .await?;
    let mut resend: Vec<action::Model> = models(rows)?;
    resend
        .sort_by(|a, b| (&a.media_service_id, a.sequence).cmp(&(&b.media_service_id, b.sequence)));
    Ok(Some(OpenedSession { node, resend }))
}

/// Ends the session if it still holds the node: the node is unreachable from now (database
/// time), and its open actions start counting down towards failure. False when a newer
/// session had already taken over.
pub async fn close_session(
    txn: &impl ConnectionTrait,
    node_id: &str,
    generation: i64,
    deadline_ms: i64,
) -> Result<bool> {
    let b = txn.get_database_backend();
    let now = now_sql(b);
    let closed = txn
        .execute_raw(sql(
            b,
            &format!(
                "UPDATE nodes SET connected = FALSE, unreachable_since = {now}, last_heartbeat_time = {now} \
                 WHERE id = $1 AND session_generation = $2"
            ),
            vec![node_id.into(), generation.into()],
        ))
        .await?
        .rows_affected()
        == 1;
    if closed {
        start_deadlines(txn, Some(node_id), deadline_ms).await?;
    }
    Ok(closed)
}

/// Gives open actions of unreachable nodes (or of `node_id`) that have none a deadline.
async fn start_deadlines(
    txn: &impl ConnectionTrait,
    node_id: Option<&str>,
    deadline_ms: i64,
) -> Result<u64> {
    let b = txn.get_database_backend();
    let now = now_sql(b);
    let (filter, mut values): (&str, Vec<Value>) = match node_id {
        Some(id) => ("node_id = $2", vec![id.into()]),
        None => (
            "node_id IN (SELECT id FROM nodes WHERE connected = FALSE)",
            vec![],
        ),
    };
    values.insert(0, deadline_ms.into());
    Ok(txn
        .execute_raw(sql(
            b,
            &format!(
                "UPDATE actions SET expire_time = {now} + $1 \
                 WHERE expire_time IS NULL AND state IN {OPEN} AND {filter}"
            ),
            values,
        ))
        .await?
        .rows_affected())
}

/// The current session generation of each of `node_ids`, share-locked (PostgreSQL) until the
/// transaction ends so no new session can take a node over while the caller writes for it.
pub async fn fence(txn: &impl ConnectionTrait, node_ids: &[&str]) -> Result<HashMap<String, i64>> {
    if node_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let b = txn.get_database_backend();
    let mut ids: Vec<&str> = node_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let rows = txn
        .query_all_raw(sql(
            b,
            &format!(
                "SELECT id, session_generation FROM nodes WHERE id IN ({}) ORDER BY id{}",
                placeholders(1, ids.len()),
                share_lock(b)
            ),
            ids.iter().map(|id| (*id).into()).collect(),
        ))
        .await?;
    rows.iter()
        .map(|row| Ok((column(row, "id")?, column(row, "session_generation")?)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What a node must run

pub async fn node_version(db: &impl ConnectionTrait, node_id: &str) -> Result<Option<i64>> {
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(sql(
            b,
            "SELECT version FROM nodes WHERE id = $1",
            vec![node_id.into()],
        ))
        .await?;
    row.map(|row| column(&row, "version")).transpose()
}

/// The node's services whose last change is newer than `since` (all live ones for `None`),
/// tombstones included so the caller learns what to remove, with their ports, and the node
/// version they are current to.
pub struct NodeServices {
    pub version: i64,
    pub public_host: String,
    pub bind_address: String,
    pub services: Vec<media_service::Model>,
    pub ports: Vec<port_allocation::Model>,
}

pub async fn node_services(
    db: &impl ConnectionTrait,
    node_id: &str,
    since: Option<i64>,
) -> Result<Option<NodeServices>> {
    let b = db.get_database_backend();
    let Some(node) = db
        .query_one_raw(sql(
            b,
            "SELECT version, public_host, bind_address FROM nodes WHERE id = $1 AND delete_time IS NULL",
            vec![node_id.into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let version: i64 = column(&node, "version")?;
    let public_host: String = column(&node, "public_host")?;
    let bind_address: String = column(&node, "bind_address")?;
    let rows = match since {
        None => {
            db.query_all_raw(sql(
                b,
                "SELECT * FROM media_services WHERE node_id = $1 AND delete_time IS NULL ORDER BY id",
                vec![node_id.into()],
            ))
            .await?
        }
        Some(since) => {
            db.query_all_raw(sql(
                b,
                "SELECT * FROM media_services WHERE node_id = $1 AND node_version > $2 ORDER BY id",
                vec![node_id.into(), since.into()],
            ))
            .await?
        }
    };
    let services: Vec<media_service::Model> = models(rows)?;
    let live: Vec<Value> = services
        .iter()
        .filter(|s| s.delete_time.is_none())
        .map(|s| s.id.clone().into())
        .collect();
    let ports = if live.is_empty() {
        Vec::new()
    } else {
        models(
            db.query_all_raw(sql(
                b,
                &format!(
                    "SELECT * FROM port_allocations WHERE media_service_id IN ({}) ORDER BY media_service_id, port",
                    placeholders(1, live.len())
                ),
                live,
            ))
            .await?,
        )?
    };
    Ok(Some(NodeServices {
        version,
        public_host,
        bind_address,
        services,
        ports,
    }))
}

/// Bumps the node's version and marks `service_ids` as changed at it, so the node's session
/// re-reads exactly those. Call in the transaction that changed them.
pub async fn touch_services(
    txn: &impl ConnectionTrait,
    node_id: &str,
    service_ids: &[String],
) -> Result<i64> {
    let b = txn.get_database_backend();
    let row = txn
        .query_one_raw(sql(
            b,
            "UPDATE nodes SET version = version + 1 WHERE id = $1 RETURNING version",
            vec![node_id.into()],
        ))
        .await?
        .ok_or_else(|| super::PersistenceError::Corrupt(format!("node {node_id} vanished")))?;
    let version: i64 = column(&row, "version")?;
    if !service_ids.is_empty() {
        let mut values: Vec<Value> = vec![version.into()];
        values.extend(service_ids.iter().map(|id| id.clone().into()));
        txn.execute_raw(sql(
            b,
            &format!(
                "UPDATE media_services SET node_version = $1 WHERE id IN ({})",
                placeholders(2, service_ids.len())
            ),
            values,
        ))
        .await?;
    }
    Ok(version)
}

// ---------------------------------------------------------------------------------------------
// Claims

/// Claims, for the session fenced by `generation`, each service's oldest unfinished action if
/// it is still queued: one statement, which also keeps the intent it replaces. Empty when the
/// session no longer holds the node.
pub async fn claim_heads(
    txn: &impl ConnectionTrait,
    node_id: &str,
    generation: i64,
    now: i64,
    validity_ms: i64,
) -> Result<Vec<action::Model>> {
    let b = txn.get_database_backend();
    let fenced = fence(txn, &[node_id]).await?;
    if fenced.get(node_id) != Some(&generation) {
        return Ok(Vec::new());
    }
    let rows = txn
        .query_all_raw(sql(
            b,
            &format!(
                "UPDATE actions SET state = 'dispatched', dispatch_generation = $2, \
                 not_after = {db_now} + $3, update_time = $4, dispatch_time = $4, \
                 previous_desired_state = (SELECT s.desired_state FROM media_services s WHERE s.id = actions.media_service_id) \
                 WHERE node_id = $1 AND state = 'queued' \
                 AND sequence = (SELECT MIN(o.sequence) FROM actions o \
                     WHERE o.media_service_id = actions.media_service_id AND o.state IN {OPEN}) \
                 RETURNING *",
                db_now = now_sql(b)
            ),
            vec![
                node_id.into(),
                generation.into(),
                validity_ms.into(),
                now.into(),
            ],
        ))
        .await?;
    let mut claimed: Vec<action::Model> = models(rows)?;
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(claimed)
}

/// Sets the desired state of `service_ids` where it differs, bumping their generation.
/// Returns the services it changed.
pub async fn set_desired(
    txn: &impl ConnectionTrait,
    service_ids: &[String],
    desired: DesiredState,
    now: i64,
) -> Result<Vec<media_service::Model>> {
    if service_ids.is_empty() {
        return Ok(Vec::new());
    }
    let b = txn.get_database_backend();
    let mut values: Vec<Value> = vec![desired.as_str().into(), now.into()];
    values.extend(service_ids.iter().map(|id| id.clone().into()));
    models(
        txn.query_all_raw(sql(
            b,
            &format!(
                "UPDATE media_services SET desired_state = $1, generation = generation + 1, update_time = $2 \
                 WHERE id IN ({}) AND delete_time IS NULL AND desired_state <> $1 RETURNING *",
                placeholders(3, service_ids.len())
            ),
            values,
        ))
        .await?,
    )
}

// ---------------------------------------------------------------------------------------------
// Results

/// Which actions a transition may move.
pub enum Which<'a> {
    /// These, whoever holds their nodes (the sweep).
    Ids(&'a [String]),
    /// (action id, node id, session generation): only actions of that node sent under that
    /// session — what an agent's report may move.
    Fenced(&'a [(String, String, i64)]),
}

/// Moves the chosen actions that are in one of `from` to `to` (with `error` when failing), in
/// one statement. Returns the moved rows, as they are now, in id order.
pub async fn transition_many(
    txn: &impl ConnectionTrait,
    which: Which<'_>,
    from: &[ActionState],
    to: ActionState,
    error: &str,
    now: i64,
) -> Result<Vec<action::Model>> {
    let b = txn.get_database_backend();
    let mut values: Vec<Value> = vec![to.as_str().into(), now.into()];
    let set_error = match (to, &which) {
        // The sweep fails actions at their deadline: their nodes may still report on them.
        (ActionState::Failed, Which::Ids(_)) => {
            values.push(error.into());
            ", error = $3, expired = TRUE"
        }
        (ActionState::Failed, Which::Fenced(_)) => {
            values.push(error.into());
            ", error = $3"
        }
        _ => "",
    };
    let first = values.len() + 1;
    let filter = match which {
        Which::Ids([]) | Which::Fenced([]) => return Ok(Vec::new()),
        Which::Ids(ids) => {
            values.extend(ids.iter().map(|id| id.clone().into()));
            format!("id IN ({})", placeholders(first, ids.len()))
        }
        Which::Fenced(keys) => {
            let tuples = (0..keys.len())
                .map(|i| {
                    let p = first + 3 * i;
                    format!("(${p}, ${}, ${})", p + 1, p + 2)
                })
                .collect::<Vec<_>>()
                .join(", ");
            for (id, node, generation) in keys {
                values.extend([id.clone().into(), node.clone().into(), (*generation).into()]);
            }
            format!("(id, node_id, dispatch_generation) IN (VALUES {tuples})")
        }
    };
    let from_list = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let step = match to {
        ActionState::Running => ", run_time = $2",
        ActionState::Succeeded | ActionState::Failed => ", finish_time = $2",
        ActionState::Queued | ActionState::Dispatched => "",
    };
    let mut moved: Vec<action::Model> = models(
        txn.query_all_raw(sql(
            b,
            &format!(
                "UPDATE actions SET state = $1, update_time = $2{step}{set_error}, expire_time = NULL \
                 WHERE {filter} AND state IN ({from_list}) RETURNING *"
            ),
            values,
        ))
        .await?,
    )?;
    moved.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(moved)
}

/// Records a result that arrived after the control plane had failed the action at its
/// deadline. `None` for anything else (a repeat of a result already recorded).
pub async fn record_late_result(
    txn: &impl ConnectionTrait,
    action_id: &str,
    node_id: &str,
    state: ActionState,
    message: &str,
    now: i64,
) -> Result<Option<action::Model>> {
    let b = txn.get_database_backend();
    Ok(models(
        txn.query_all_raw(sql(
            b,
            "UPDATE actions SET late_state = $3, late_message = $4, update_time = $5 \
             WHERE id = $1 AND node_id = $2 AND state = 'failed' AND expired AND late_state IS NULL \
             RETURNING *",
            vec![
                action_id.into(),
                node_id.into(),
                state.as_str().into(),
                message.into(),
                now.into(),
            ],
        ))
        .await?,
    )?
    .pop())
}

pub async fn actions_by_id(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<Vec<action::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let b = db.get_database_backend();
    models(
        db.query_all_raw(sql(
            b,
            &format!(
                "SELECT * FROM actions WHERE id IN ({})",
                placeholders(1, ids.len())
            ),
            ids.iter().map(|id| id.clone().into()).collect(),
        ))
        .await?,
    )
}

/// One agent observation, ready to store.
#[derive(Clone, Debug)]
pub struct Observation {
    pub service_id: String,
    pub node_id: String,
    pub state: ObservedState,
    pub message: String,
    pub stats: ServiceStats,
    pub generation: i64,
    pub observe_time: i64,
}

/// Upserts observations in one statement per few hundred; an older observation never
/// replaces a newer one.
pub async fn upsert_observations(
    txn: &impl ConnectionTrait,
    observations: &[Observation],
) -> Result<()> {
    let b = txn.get_database_backend();
    for chunk in observations.chunks(500) {
        if chunk.is_empty() {
            continue;
        }
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 7);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (i, o) in chunk.iter().enumerate() {
            let p = 7 * i;
            tuples.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            ));
            values.extend([
                o.service_id.clone().into(),
                o.node_id.clone().into(),
                o.state.as_str().into(),
                o.message.clone().into(),
                o.stats.clone().into(),
                o.generation.into(),
                o.observe_time.into(),
            ]);
        }
        txn.execute_raw(sql(
            b,
            &format!(
                "INSERT INTO observed_services \
                 (media_service_id, node_id, state, message, stats, observed_generation, observe_time) \
                 VALUES {} ON CONFLICT (media_service_id) DO UPDATE SET \
                 node_id = excluded.node_id, state = excluded.state, message = excluded.message, \
                 stats = excluded.stats, observed_generation = excluded.observed_generation, \
                 observe_time = excluded.observe_time \
                 WHERE observed_services.observe_time <= excluded.observe_time",
                tuples.join(", ")
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The sweep

/// Marks unreachable the nodes whose session's replica lost its lease (it died or was cut
/// off), and gives every open action of an unreachable node a deadline. Returns the nodes.
pub async fn expire_dead_sessions(
    txn: &impl ConnectionTrait,
    deadline_ms: i64,
) -> Result<Vec<String>> {
    let b = txn.get_database_backend();
    let now = now_sql(b);
    let rows = txn
        .query_all_raw(sql(
            b,
            &format!(
                "UPDATE nodes SET connected = FALSE, \
                 unreachable_since = (SELECT r.lease_expire_time FROM replicas r WHERE r.id = nodes.session_replica) \
                 WHERE connected = TRUE AND (session_replica IS NULL OR session_replica NOT IN \
                     (SELECT id FROM replicas WHERE lease_expire_time >= {now})) \
                 RETURNING id"
            ),
            vec![],
        ))
        .await?;
    let nodes = rows
        .iter()
        .map(|row| column(row, "id"))
        .collect::<Result<Vec<String>>>()?;
    start_deadlines(txn, None, deadline_ms).await?;
    Ok(nodes)
}

/// Open actions past their deadline, by what failing them means: never sent; sent but never
/// acknowledged, and past the instant the agent refuses them (plus `skew_ms` for clocks); or
/// acknowledged and running (deletes excepted: they complete when the node returns).
pub struct Overdue {
    pub undelivered: Vec<action::Model>,
    pub unacknowledged: Vec<action::Model>,
    pub running: Vec<action::Model>,
}

pub async fn overdue_actions(db: &impl ConnectionTrait, skew_ms: i64) -> Result<Overdue> {
    let b = db.get_database_backend();
    let now = now_sql(b);
    let rows: Vec<action::Model> = models(
        db.query_all_raw(sql(
            b,
            &format!(
                "SELECT * FROM actions WHERE expire_time IS NOT NULL AND expire_time < {now} \
                 AND state IN {OPEN} \
                 AND (state <> 'dispatched' OR not_after IS NULL OR not_after + $1 < {now}) \
                 AND NOT (state = 'running' AND kind = 'delete') \
                 ORDER BY id LIMIT 1000"
            ),
            vec![skew_ms.into()],
        ))
        .await?,
    )?;
    let mut overdue = Overdue {
        undelivered: Vec::new(),
        unacknowledged: Vec::new(),
        running: Vec::new(),
    };
    for action in rows {
        match action.state {
            ActionState::Queued => overdue.undelivered.push(action),
            ActionState::Dispatched => overdue.unacknowledged.push(action),
            _ => overdue.running.push(action),
        }
    }
    Ok(overdue)
}

// ---------------------------------------------------------------------------------------------
// Queuing

/// Takes the service's row lock and its next action sequence number in one statement.
/// Returns the live service as updated, or `None`.
pub async fn next_action_sequence(
    txn: &impl ConnectionTrait,
    service_id: &str,
) -> Result<Option<media_service::Model>> {
    let b = txn.get_database_backend();
    Ok(models(
        txn.query_all_raw(sql(
            b,
            "UPDATE media_services SET action_sequence = action_sequence + 1 \
             WHERE id = $1 AND delete_time IS NULL RETURNING *",
            vec![service_id.into()],
        ))
        .await?,
    )?
    .pop())
}

/// Inserts a queued action. It starts counting down towards its deadline at once if no session
/// holds its node (`deadline_ms` from now), and not before its node becomes unreachable
/// otherwise. Returns it as stored.
pub async fn insert_action(
    txn: &impl ConnectionTrait,
    action: &action::Model,
    deadline_ms: i64,
) -> Result<action::Model> {
    let b = txn.get_database_backend();
    let now = now_sql(b);
    models::<action::Model>(
        txn.query_all_raw(sql(
            b,
            &format!(
                "INSERT INTO actions (id, media_service_id, node_id, kind, state, sequence, \
                 requested_by, error, create_time, update_time, expired, late_message, trace_context, \
                 expire_time) VALUES ($1, $2, $3, $4, 'queued', $5, $6, '', $7, $7, FALSE, '', $8, \
                 CASE WHEN EXISTS (SELECT 1 FROM nodes n JOIN replicas r ON r.id = n.session_replica \
                     WHERE n.id = $3 AND n.connected = TRUE AND r.lease_expire_time >= {now}) \
                 THEN NULL ELSE {now} + $9 END) RETURNING *"
            ),
            vec![
                action.id.clone().into(),
                action.media_service_id.clone().into(),
                action.node_id.clone().into(),
                action.kind.as_str().into(),
                action.sequence.into(),
                action.requested_by.clone().into(),
                action.create_time.into(),
                action.trace_context.clone().into(),
                deadline_ms.into(),
            ],
        ))
        .await?,
    )?
    .pop()
    .ok_or_else(|| super::PersistenceError::Corrupt(format!("action {} vanished", action.id)))
}

/// How many nodes hold a live session, on any replica.
pub async fn connected_nodes(db: &impl ConnectionTrait) -> Result<i64> {
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(sql(
            b,
            "SELECT COUNT(*) AS connected FROM nodes WHERE connected = TRUE",
            vec![],
        ))
        .await?
        .ok_or_else(|| super::PersistenceError::Corrupt("COUNT returned no row".into()))?;
    column(&row, "connected")
}

/// One read for a session's periodic check: the node's version, and whether anything is
/// queued for it.
pub async fn node_poll(db: &impl ConnectionTrait, node_id: &str) -> Result<Option<(i64, bool)>> {
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(sql(
            b,
            "SELECT version, EXISTS (SELECT 1 FROM actions a WHERE a.node_id = $1 AND a.state = 'queued') AS queued \
             FROM nodes WHERE id = $1 AND delete_time IS NULL",
            vec![node_id.into()],
        ))
        .await?;
    row.map(|row| Ok((column(&row, "version")?, column(&row, "queued")?)))
        .transpose()
}

/// A succeeded delete: the service becomes a tombstone, its ports and its place on the node
/// are released. `None` when it was already gone.
pub async fn tombstone_service(
    txn: &impl ConnectionTrait,
    service_id: &str,
    now: i64,
) -> Result<Option<media_service::Model>> {
    let b = txn.get_database_backend();
    let Some(service) = models::<media_service::Model>(
        txn.query_all_raw(sql(
            b,
            "UPDATE media_services SET delete_time = $2, desired_state = 'stopped', \
             generation = generation + 1, update_time = $2 \
             WHERE id = $1 AND delete_time IS NULL RETURNING *",
            vec![service_id.into(), now.into()],
        ))
        .await?,
    )?
    .pop() else {
        return Ok(None);
    };
    let released = txn
        .execute_raw(sql(
            b,
            "DELETE FROM port_allocations WHERE media_service_id = $1",
            vec![service_id.into()],
        ))
        .await?
        .rows_affected();
    txn.execute_raw(sql(
        b,
        "UPDATE nodes SET service_count = service_count - 1, ports_used = ports_used - $2 WHERE id = $1",
        vec![
            service.node_id.clone().into(),
            i64::try_from(released).unwrap_or(0).into(),
        ],
    ))
    .await?;
    Ok(Some(service))
}

/// A failed delete leaves the service in place, operable again.
pub async fn reopen_service(txn: &impl ConnectionTrait, service_id: &str, now: i64) -> Result<()> {
    let b = txn.get_database_backend();
    txn.execute_raw(sql(
        b,
        "UPDATE media_services SET deleting = FALSE, update_time = $2 WHERE id = $1 AND delete_time IS NULL",
        vec![service_id.into(), now.into()],
    ))
    .await?;
    Ok(())
}
