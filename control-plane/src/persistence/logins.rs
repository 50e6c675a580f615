//! Console logins and sessions.
//!
//! Failed sign-ins are counted with single conditional UPDATEs, so replicas sharing one
//! database agree on a lockout without any of them holding state.

use sea_orm::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ConnectionTrait, IntoActiveModel};

use super::Result;
use super::entities::{console_session, login};

pub async fn insert_login(db: &impl ConnectionTrait, model: login::Model) -> Result<()> {
    login::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn get_login(db: &impl ConnectionTrait, id: &str) -> Result<Option<login::Model>> {
    Ok(login::Entity::find_by_id(id.to_owned()).one(db).await?)
}

pub async fn find_login_of(
    db: &impl ConnectionTrait,
    principal_kind: &str,
    principal_id: &str,
) -> Result<Option<login::Model>> {
    Ok(login::Entity::find()
        .filter(login::Column::PrincipalKind.eq(principal_kind))
        .filter(login::Column::PrincipalId.eq(principal_id))
        .one(db)
        .await?)
}

/// `email` must already be lowercase.
pub async fn find_login_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<login::Model>> {
    Ok(login::Entity::find()
        .filter(login::Column::Email.eq(email))
        .one(db)
        .await?)
}

/// Replaces email and password hash; a new password also clears failures and any lockout.
pub async fn set_credentials(
    db: &impl ConnectionTrait,
    id: &str,
    email: &str,
    password_hash: &str,
    now: i64,
) -> Result<()> {
    login::Entity::update_many()
        .col_expr(login::Column::Email, Expr::value(email))
        .col_expr(login::Column::PasswordHash, Expr::value(password_hash))
        .col_expr(login::Column::FailedAttempts, Expr::value(0i64))
        .col_expr(
            login::Column::LockExpireTime,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(login::Column::PasswordUpdateTime, Expr::value(now))
        .filter(login::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn delete_login(db: &impl ConnectionTrait, id: &str) -> Result<()> {
    end_sessions_of(db, id, None).await?;
    login::Entity::delete_by_id(id.to_owned()).exec(db).await?;
    Ok(())
}

/// Counts a sign-in attempt before its password is checked, so concurrent guesses cannot
/// exceed `max_attempts` between lockouts. False when the login is locked (or the attempts
/// are used up by guesses still being checked).
pub async fn reserve_attempt(
    db: &impl ConnectionTrait,
    id: &str,
    max_attempts: i64,
    now: i64,
) -> Result<bool> {
    let result = login::Entity::update_many()
        .col_expr(
            login::Column::FailedAttempts,
            Expr::col(login::Column::FailedAttempts).add(1),
        )
        .filter(login::Column::Id.eq(id))
        .filter(login::Column::FailedAttempts.lt(max_attempts))
        .filter(
            login::Column::LockExpireTime
                .is_null()
                .or(login::Column::LockExpireTime.lte(now)),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The password was right: the attempt does not count and a past lockout is forgotten.
pub async fn clear_attempts(db: &impl ConnectionTrait, id: &str) -> Result<()> {
    login::Entity::update_many()
        .col_expr(login::Column::FailedAttempts, Expr::value(0i64))
        .col_expr(
            login::Column::LockExpireTime,
            Expr::value(Option::<i64>::None),
        )
        .filter(login::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Locks the login until `until` if its failures reached `max_attempts`, starting the count
/// afresh for when the lock expires. True when this call locked it.
pub async fn lock_if_exhausted(
    db: &impl ConnectionTrait,
    id: &str,
    max_attempts: i64,
    until: i64,
) -> Result<bool> {
    let result = login::Entity::update_many()
        .col_expr(login::Column::FailedAttempts, Expr::value(0i64))
        .col_expr(login::Column::LockExpireTime, Expr::value(until))
        .filter(login::Column::Id.eq(id))
        .filter(login::Column::FailedAttempts.gte(max_attempts))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn insert_session(
    db: &impl ConnectionTrait,
    model: console_session::Model,
) -> Result<()> {
    console_session::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find_session_by_hash(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<console_session::Model>> {
    Ok(console_session::Entity::find()
        .filter(console_session::Column::TokenHash.eq(token_hash))
        .one(db)
        .await?)
}

pub async fn touch_session(db: &impl ConnectionTrait, id: &str, now: i64) -> Result<()> {
    console_session::Entity::update_many()
        .col_expr(console_session::Column::LastUseTime, Expr::value(now))
        .filter(console_session::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn delete_session(db: &impl ConnectionTrait, id: &str) -> Result<()> {
    console_session::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

/// Ends every session of a login, except `keep` (the caller's own, on a password change).
pub async fn end_sessions_of(
    db: &impl ConnectionTrait,
    login_id: &str,
    keep: Option<&str>,
) -> Result<u64> {
    let mut query = console_session::Entity::delete_many()
        .filter(console_session::Column::LoginId.eq(login_id));
    if let Some(keep) = keep {
        query = query.filter(console_session::Column::Id.ne(keep));
    }
    Ok(query.exec(db).await?.rows_affected)
}

/// Removes sessions past their lifetime or idle for longer than `idle_ms`.
pub async fn delete_expired_sessions(
    db: &impl ConnectionTrait,
    now: i64,
    idle_ms: i64,
) -> Result<u64> {
    let result = console_session::Entity::delete_many()
        .filter(
            console_session::Column::ExpireTime
                .lte(now)
                .or(console_session::Column::LastUseTime.lte(now.saturating_sub(idle_ms))),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
