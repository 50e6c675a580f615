//! `cluster_state`: values every replica must share (keys, markers).

use sea_orm::{ConnectionTrait, EntityTrait, IntoActiveModel};

use super::entities::cluster_state;
use super::{PersistenceError, Result};

/// The value stored under `name`, storing `candidate` first if there is none. Replicas racing
/// to store one agree through the primary key: the loser gets the winner's value.
pub async fn get_or_insert(
    db: &impl ConnectionTrait,
    name: &str,
    candidate: String,
) -> Result<String> {
    if let Some(row) = cluster_state::Entity::find_by_id(name.to_owned())
        .one(db)
        .await?
    {
        return Ok(row.value);
    }
    let row = cluster_state::Model {
        name: name.to_owned(),
        value: candidate.clone(),
        create_time: crate::clock::now_millis(),
    };
    match cluster_state::Entity::insert(row.into_active_model())
        .exec_without_returning(db)
        .await
        .map_err(PersistenceError::from)
    {
        Ok(_) => Ok(candidate),
        Err(PersistenceError::Conflict(_)) => cluster_state::Entity::find_by_id(name.to_owned())
            .one(db)
            .await?
            .map(|row| row.value)
            .ok_or_else(|| PersistenceError::Corrupt(format!("cluster_state {name} vanished"))),
        Err(other) => Err(other),
    }
}

/// Stores `name` unless it is already there: true when this call stored it (the one replica
/// that wins a race to do something once).
pub async fn insert_marker(db: &impl ConnectionTrait, name: &str) -> Result<bool> {
    let marker = cluster_state::Model {
        name: name.to_owned(),
        value: "1".to_owned(),
        create_time: crate::clock::now_millis(),
    };
    let inserted = cluster_state::Entity::insert(marker.into_active_model())
        .on_conflict_do_nothing()
        .exec_without_returning(db)
        .await?;
    Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0))
}

/// The value stored under `name`, if any.
pub async fn get(db: &impl ConnectionTrait, name: &str) -> Result<Option<String>> {
    Ok(cluster_state::Entity::find_by_id(name.to_owned())
        .one(db)
        .await?
        .map(|row| row.value))
}
