//! The initial schema. Landed migrations are never edited: add a new dated one instead.
//!
//! Written as SQL that SQLite (≥ 3.35) and PostgreSQL both accept, so one text serves both.
//! Times are milliseconds since the Unix epoch (BIGINT); ids are opaque text.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000001_initial"
    }
}

const UP: &[&str] = &[
    r#"CREATE TABLE resellers (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        primary_customer_id TEXT NOT NULL,
        limit_customers BIGINT,
        limit_services BIGINT,
        limit_listener_slots BIGINT,
        limit_max_bitrate_kbps BIGINT,
        limit_disk_mb BIGINT,
        limit_bandwidth_gb BIGINT,
        allowed_types TEXT NOT NULL,
        default_type TEXT,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        reseller_id TEXT NOT NULL REFERENCES resellers(id),
        display_name TEXT NOT NULL,
        sort_key TEXT NOT NULL,
        email TEXT NOT NULL,
        is_primary BOOLEAN NOT NULL,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL
    )"#,
    "CREATE INDEX customers_by_reseller ON customers (reseller_id, sort_key)",
    // At most one primary account per reseller.
    "CREATE UNIQUE INDEX customers_one_primary ON customers (reseller_id) WHERE is_primary",
    r#"CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        principal_kind TEXT NOT NULL,
        principal_id TEXT NOT NULL,
        description TEXT NOT NULL,
        create_time BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        public_host TEXT NOT NULL,
        port_first BIGINT NOT NULL,
        port_last BIGINT NOT NULL,
        capacity BIGINT NOT NULL,
        capabilities TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        connected BOOLEAN NOT NULL,
        session_id TEXT,
        last_heartbeat_time BIGINT,
        join_time BIGINT,
        join_token_hash TEXT,
        join_token_expire_time BIGINT,
        cert_fingerprint TEXT,
        previous_cert_fingerprint TEXT,
        cert_expire_time BIGINT,
        create_time BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE media_services (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        display_name TEXT NOT NULL,
        customer_id TEXT NOT NULL REFERENCES customers(id),
        reseller_id TEXT NOT NULL REFERENCES resellers(id),
        service_type TEXT NOT NULL,
        max_listeners BIGINT NOT NULL,
        max_bitrate_kbps BIGINT NOT NULL,
        disk_quota_mb BIGINT NOT NULL,
        bandwidth_gb_per_month BIGINT NOT NULL,
        autodj BOOLEAN NOT NULL,
        node_id TEXT NOT NULL REFERENCES nodes(id),
        desired_state TEXT NOT NULL,
        deleting BOOLEAN NOT NULL,
        delete_time BIGINT,
        source_password TEXT NOT NULL,
        admin_password TEXT NOT NULL,
        relay_password TEXT NOT NULL,
        generation BIGINT NOT NULL,
        observed_state TEXT NOT NULL,
        observed_message TEXT NOT NULL,
        observed_stats TEXT NOT NULL,
        observe_time BIGINT,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL
    )"#,
    // Names are unique among a reseller's live services; a deleted service frees its name.
    "CREATE UNIQUE INDEX media_services_live_name ON media_services (reseller_id, name) WHERE delete_time IS NULL",
    "CREATE INDEX media_services_by_customer ON media_services (customer_id)",
    "CREATE INDEX media_services_by_node ON media_services (node_id)",
    // The primary key is what keeps two services from sharing a port on one node, however many
    // control-plane replicas allocate at once.
    r#"CREATE TABLE port_allocations (
        node_id TEXT NOT NULL REFERENCES nodes(id),
        port BIGINT NOT NULL,
        media_service_id TEXT NOT NULL REFERENCES media_services(id),
        purpose TEXT NOT NULL,
        PRIMARY KEY (node_id, port)
    )"#,
    "CREATE INDEX port_allocations_by_service ON port_allocations (media_service_id)",
    r#"CREATE TABLE actions (
        id TEXT PRIMARY KEY,
        media_service_id TEXT NOT NULL REFERENCES media_services(id),
        node_id TEXT NOT NULL REFERENCES nodes(id),
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        requested_by TEXT NOT NULL,
        error TEXT NOT NULL,
        deadline BIGINT NOT NULL,
        dispatch_session TEXT,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL
    )"#,
    // One service's actions run in this order; the index makes the order unambiguous.
    "CREATE UNIQUE INDEX actions_service_sequence ON actions (media_service_id, sequence)",
    "CREATE INDEX actions_by_node_state ON actions (node_id, state)",
    r#"CREATE TABLE action_transitions (
        id TEXT PRIMARY KEY,
        action_id TEXT NOT NULL REFERENCES actions(id),
        state TEXT NOT NULL,
        time BIGINT NOT NULL,
        message TEXT NOT NULL
    )"#,
    "CREATE INDEX action_transitions_by_action ON action_transitions (action_id, id)",
    r#"CREATE TABLE ownership_changes (
        id TEXT PRIMARY KEY,
        media_service_id TEXT NOT NULL REFERENCES media_services(id),
        from_customer_id TEXT NOT NULL,
        to_customer_id TEXT NOT NULL,
        from_reseller_id TEXT NOT NULL,
        to_reseller_id TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        change_time BIGINT NOT NULL
    )"#,
    "CREATE INDEX ownership_changes_by_service ON ownership_changes (media_service_id, id)",
    // Cluster-wide singletons: the internal CA, the bootstrap marker.
    r#"CREATE TABLE cluster_state (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        create_time BIGINT NOT NULL
    )"#,
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
        for table in [
            "cluster_state",
            "ownership_changes",
            "action_transitions",
            "actions",
            "port_allocations",
            "media_services",
            "nodes",
            "api_tokens",
            "customers",
            "resellers",
        ] {
            db.execute_unprepared(&format!("DROP TABLE {table}"))
                .await?;
        }
        Ok(())
    }
}
