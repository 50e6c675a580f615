//! The event-driven dispatcher's schema.
//!
//! - `replicas`: one row per control-plane process, with a lease renewed on the database's
//!   clock. A node session is live only while its replica's lease is.
//! - `nodes` gains the session fence (`session_generation`, bumped by every new session, checked
//!   by every write a session makes), the replica holding the session, when it became
//!   unreachable, a `version` bumped by every change of what the node must run, and the counts
//!   placement orders by.
//! - `node_capabilities`: what each node's agent reported, one row per type, so placement finds
//!   candidates with an index instead of parsing every node's JSON.
//! - `media_services` gains `node_version` (the node version of its last change, so a session
//!   reads only what moved) and `action_sequence` (the last action sequence handed out, so
//!   queuing takes the row lock and the next number in one statement).
//! - `actions`: the fence the action was claimed under, the instant past which the agent must
//!   refuse it, the intent it replaced (rolled back when it fails), whether the control plane
//!   failed it at its deadline and the result the node reported after that, the trace
//!   context it was queued under, and `expire_time` — unreachable-time deadline — instead of a
//!   deadline counted from queue time.
//! - Observed state moves off the intent row into `observed_services`, with the desired
//!   generation the agent reports running.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000001_dispatch"
    }
}

const UP: &[&str] = &[
    r#"CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        lease_expire_time BIGINT NOT NULL,
        start_time BIGINT NOT NULL
    )"#,
    "ALTER TABLE nodes ADD COLUMN version BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE nodes ADD COLUMN session_generation BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE nodes ADD COLUMN session_replica TEXT",
    "ALTER TABLE nodes ADD COLUMN unreachable_since BIGINT",
    "ALTER TABLE nodes ADD COLUMN service_count BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE nodes ADD COLUMN ports_used BIGINT NOT NULL DEFAULT 0",
    r#"UPDATE nodes SET service_count = (
        SELECT COUNT(*) FROM media_services s WHERE s.node_id = nodes.id AND s.delete_time IS NULL)"#,
    r#"UPDATE nodes SET ports_used = (
        SELECT COUNT(*) FROM port_allocations p WHERE p.node_id = nodes.id)"#,
    // Sessions of the previous design ended with the process that held them.
    "UPDATE nodes SET connected = FALSE, session_id = NULL",
    r#"CREATE TABLE node_capabilities (
        node_id TEXT NOT NULL REFERENCES nodes(id),
        service_type TEXT NOT NULL,
        autodj BOOLEAN NOT NULL,
        PRIMARY KEY (node_id, service_type)
    )"#,
    "CREATE INDEX node_capabilities_by_type ON node_capabilities (service_type, node_id)",
    "ALTER TABLE media_services ADD COLUMN node_version BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE media_services ADD COLUMN action_sequence BIGINT NOT NULL DEFAULT 0",
    r#"UPDATE media_services SET action_sequence = (
        SELECT COALESCE(MAX(a.sequence), 0) FROM actions a WHERE a.media_service_id = media_services.id)"#,
    "CREATE INDEX media_services_by_node_version ON media_services (node_id, node_version)",
    "ALTER TABLE actions ADD COLUMN dispatch_generation BIGINT",
    "ALTER TABLE actions ADD COLUMN not_after BIGINT",
    "ALTER TABLE actions ADD COLUMN expire_time BIGINT",
    "ALTER TABLE actions ADD COLUMN previous_desired_state TEXT",
    "ALTER TABLE actions ADD COLUMN expired BOOLEAN NOT NULL DEFAULT FALSE",
    "ALTER TABLE actions ADD COLUMN late_state TEXT",
    "ALTER TABLE actions ADD COLUMN late_message TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE actions ADD COLUMN trace_context TEXT NOT NULL DEFAULT ''",
    // Open actions keep their old deadline as the unreachable-time deadline: their nodes are
    // all unreachable now (see above).
    "UPDATE actions SET expire_time = deadline WHERE state IN ('queued', 'dispatched', 'running')",
    "ALTER TABLE actions DROP COLUMN deadline",
    "ALTER TABLE actions DROP COLUMN dispatch_session",
    "CREATE INDEX actions_open_by_service ON actions (media_service_id, sequence) WHERE state IN ('queued', 'dispatched', 'running')",
    "CREATE INDEX actions_expiring ON actions (expire_time) WHERE expire_time IS NOT NULL",
    r#"CREATE TABLE observed_services (
        media_service_id TEXT PRIMARY KEY REFERENCES media_services(id),
        node_id TEXT NOT NULL REFERENCES nodes(id),
        state TEXT NOT NULL,
        message TEXT NOT NULL,
        stats TEXT NOT NULL,
        observed_generation BIGINT NOT NULL,
        observe_time BIGINT NOT NULL
    )"#,
    r#"INSERT INTO observed_services
        (media_service_id, node_id, state, message, stats, observed_generation, observe_time)
        SELECT id, node_id, observed_state, observed_message, observed_stats, 0, observe_time
        FROM media_services WHERE observe_time IS NOT NULL"#,
    "ALTER TABLE media_services DROP COLUMN observed_state",
    "ALTER TABLE media_services DROP COLUMN observed_message",
    "ALTER TABLE media_services DROP COLUMN observed_stats",
    "ALTER TABLE media_services DROP COLUMN observe_time",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in UP {
            db.execute_unprepared(statement).await?;
        }
        // Capabilities were JSON on the node row; the session that next opens rewrites them,
        // but placement must not forget nodes that are already known.
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT id, capabilities FROM nodes",
            ))
            .await?;
        for row in rows {
            let id: String = row.try_get("", "id")?;
            let json: String = row.try_get("", "capabilities")?;
            let capabilities: Vec<serde_json::Value> =
                serde_json::from_str(&json).unwrap_or_default();
            for capability in capabilities {
                let available = capability.get("available").and_then(|v| v.as_bool());
                let service_type = capability.get("service_type").and_then(|v| v.as_str());
                let autodj = capability
                    .get("autodj_available")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                if let (Some(true), Some(service_type)) = (available, service_type) {
                    let insert = Query::insert()
                        .into_table(Alias::new("node_capabilities"))
                        .columns([
                            Alias::new("node_id"),
                            Alias::new("service_type"),
                            Alias::new("autodj"),
                        ])
                        .values([id.clone().into(), service_type.into(), autodj.into()])
                        .map_err(|e| DbErr::Migration(e.to_string()))?
                        .to_owned();
                    db.execute(&insert).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "m20261201_000001_dispatch cannot be reverted: restore a backup instead".to_owned(),
        ))
    }
}
