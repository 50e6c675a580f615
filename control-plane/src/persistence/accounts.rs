//! Resellers, customers and API tokens.

use sea_orm::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, IntoActiveModel, QueryOrder, QuerySelect};

use super::entities::{api_token, customer, reseller};
use super::{Result, count_bigint};

pub async fn insert_reseller(db: &impl ConnectionTrait, model: reseller::Model) -> Result<()> {
    reseller::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// `for_update` takes a row lock on PostgreSQL, serialising quota checks of one reseller
/// across replicas; SQLite's single writer already serialises them.
pub async fn get_reseller(
    db: &impl ConnectionTrait,
    id: &str,
    for_update: bool,
) -> Result<Option<reseller::Model>> {
    let mut query =
        reseller::Entity::find_by_id(id.to_owned()).filter(reseller::Column::DeleteTime.is_null());
    if for_update {
        query = query.lock_exclusive();
    }
    super::load_row("resellers", id, query.one(db).await)
}

pub async fn list_resellers(
    db: &impl ConnectionTrait,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<reseller::Model>> {
    let mut query = reseller::Entity::find()
        .filter(reseller::Column::DeleteTime.is_null())
        .order_by_asc(reseller::Column::Id)
        .limit(limit);
    if let Some(after) = after_id {
        query = query.filter(reseller::Column::Id.gt(after));
    }
    Ok(query.all(db).await?)
}

pub async fn update_reseller(db: &impl ConnectionTrait, model: reseller::Model) -> Result<()> {
    // Every column is written; the primary key in the model selects the row.
    let active = model.into_active_model().reset_all();
    reseller::Entity::update(active).exec(db).await?;
    Ok(())
}

pub async fn insert_customer(db: &impl ConnectionTrait, model: customer::Model) -> Result<()> {
    customer::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn get_customer(
    db: &impl ConnectionTrait,
    id: &str,
    for_update: bool,
) -> Result<Option<customer::Model>> {
    let mut query =
        customer::Entity::find_by_id(id.to_owned()).filter(customer::Column::DeleteTime.is_null());
    if for_update {
        query = query.lock_exclusive();
    }
    super::load_row("customers", id, query.one(db).await)
}

pub async fn list_customers(
    db: &impl ConnectionTrait,
    reseller_id: Option<&str>,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<customer::Model>> {
    let mut query = customer::Entity::find()
        .filter(customer::Column::DeleteTime.is_null())
        .order_by_asc(customer::Column::Id)
        .limit(limit);
    if let Some(reseller_id) = reseller_id {
        query = query.filter(customer::Column::ResellerId.eq(reseller_id));
    }
    if let Some(after) = after_id {
        query = query.filter(customer::Column::Id.gt(after));
    }
    Ok(query.all(db).await?)
}

/// A reseller's customers a–z, case-insensitively; ties keep a stable order by id.
pub async fn list_customers_sorted(
    db: &impl ConnectionTrait,
    reseller_id: &str,
) -> Result<Vec<customer::Model>> {
    Ok(customer::Entity::find()
        .filter(customer::Column::ResellerId.eq(reseller_id))
        .filter(customer::Column::DeleteTime.is_null())
        .order_by_asc(customer::Column::SortKey)
        .order_by_asc(customer::Column::Id)
        .all(db)
        .await?)
}

pub async fn update_customer(
    db: &impl ConnectionTrait,
    id: &str,
    display_name: String,
    email: String,
    now: i64,
) -> Result<()> {
    let active = customer::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(id.to_owned()),
        sort_key: Set(display_name.to_lowercase()),
        display_name: Set(display_name),
        email: Set(email),
        update_time: Set(now),
        ..Default::default()
    };
    customer::Entity::update(active).exec(db).await?;
    Ok(())
}

pub async fn count_sub_accounts(db: &impl ConnectionTrait, reseller_id: &str) -> Result<u64> {
    let count: Option<i64> = customer::Entity::find()
        .select_only()
        .column_as(count_bigint(), "n")
        .filter(customer::Column::ResellerId.eq(reseller_id))
        .filter(customer::Column::IsPrimary.eq(false))
        .filter(customer::Column::DeleteTime.is_null())
        .into_tuple()
        .one(db)
        .await?;
    Ok(count.unwrap_or(0) as u64)
}

pub async fn insert_token(db: &impl ConnectionTrait, model: api_token::Model) -> Result<()> {
    api_token::Entity::insert(model.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find_token_by_hash(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<api_token::Model>> {
    Ok(api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(token_hash))
        .one(db)
        .await?)
}

/// How many tokens a principal holds (`principal_id` is empty for the admin).
pub async fn count_tokens(
    db: &impl ConnectionTrait,
    principal_kind: &str,
    principal_id: &str,
) -> Result<u64> {
    let count: Option<i64> = api_token::Entity::find()
        .select_only()
        .column_as(count_bigint(), "n")
        .filter(api_token::Column::PrincipalKind.eq(principal_kind))
        .filter(api_token::Column::PrincipalId.eq(principal_id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(count.unwrap_or(0).max(0) as u64)
}

/// A principal's tokens by id, from after `after_id`.
pub async fn list_tokens(
    db: &impl ConnectionTrait,
    principal_kind: &str,
    principal_id: &str,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<api_token::Model>> {
    let mut query = api_token::Entity::find()
        .filter(api_token::Column::PrincipalKind.eq(principal_kind))
        .filter(api_token::Column::PrincipalId.eq(principal_id))
        .order_by_asc(api_token::Column::Id)
        .limit(limit);
    if let Some(after) = after_id {
        query = query.filter(api_token::Column::Id.gt(after));
    }
    Ok(query.all(db).await?)
}

pub async fn get_token(db: &impl ConnectionTrait, id: &str) -> Result<Option<api_token::Model>> {
    Ok(api_token::Entity::find_by_id(id.to_owned()).one(db).await?)
}

pub async fn delete_token(db: &impl ConnectionTrait, id: &str) -> Result<bool> {
    let result = api_token::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Removes every token of a principal (its account is being deleted).
pub async fn delete_tokens_of(
    db: &impl ConnectionTrait,
    principal_kind: &str,
    principal_id: &str,
) -> Result<u64> {
    let result = api_token::Entity::delete_many()
        .filter(api_token::Column::PrincipalKind.eq(principal_kind))
        .filter(api_token::Column::PrincipalId.eq(principal_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// The live customers of a reseller (primary account included), by id.
pub async fn customers_of(
    db: &impl ConnectionTrait,
    reseller_id: &str,
) -> Result<Vec<customer::Model>> {
    Ok(customer::Entity::find()
        .filter(customer::Column::ResellerId.eq(reseller_id))
        .filter(customer::Column::DeleteTime.is_null())
        .order_by_asc(customer::Column::Id)
        .all(db)
        .await?)
}

/// Records that a forced delete waits for the customer's services (kept if already set).
pub async fn request_customer_deletion(
    db: &impl ConnectionTrait,
    id: &str,
    now: i64,
) -> Result<()> {
    use sea_orm::sea_query::Expr;
    customer::Entity::update_many()
        .col_expr(customer::Column::DeleteRequestTime, Expr::value(now))
        .filter(customer::Column::Id.eq(id))
        .filter(customer::Column::DeleteRequestTime.is_null())
        .filter(customer::Column::DeleteTime.is_null())
        .exec(db)
        .await?;
    Ok(())
}

pub async fn request_reseller_deletion(
    db: &impl ConnectionTrait,
    id: &str,
    now: i64,
) -> Result<()> {
    use sea_orm::sea_query::Expr;
    reseller::Entity::update_many()
        .col_expr(reseller::Column::DeleteRequestTime, Expr::value(now))
        .filter(reseller::Column::Id.eq(id))
        .filter(reseller::Column::DeleteRequestTime.is_null())
        .filter(reseller::Column::DeleteTime.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Tombstones a customer. Its email is blanked: personal data goes with the account; the row
/// stays only because deleted services name it.
pub async fn mark_customer_deleted(db: &impl ConnectionTrait, id: &str, now: i64) -> Result<bool> {
    use sea_orm::sea_query::Expr;
    let result = customer::Entity::update_many()
        .col_expr(customer::Column::DeleteTime, Expr::value(now))
        .col_expr(customer::Column::Email, Expr::value(""))
        .col_expr(customer::Column::UpdateTime, Expr::value(now))
        .filter(customer::Column::Id.eq(id))
        .filter(customer::Column::DeleteTime.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn mark_reseller_deleted(db: &impl ConnectionTrait, id: &str, now: i64) -> Result<bool> {
    use sea_orm::sea_query::Expr;
    let result = reseller::Entity::update_many()
        .col_expr(reseller::Column::DeleteTime, Expr::value(now))
        .col_expr(reseller::Column::UpdateTime, Expr::value(now))
        .filter(reseller::Column::Id.eq(id))
        .filter(reseller::Column::DeleteTime.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Customers whose forced delete is still waiting, oldest request first.
pub async fn pending_customer_deletions(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<customer::Model>> {
    Ok(customer::Entity::find()
        .filter(customer::Column::DeleteRequestTime.is_not_null())
        .filter(customer::Column::DeleteTime.is_null())
        .order_by_asc(customer::Column::DeleteRequestTime)
        .limit(limit)
        .all(db)
        .await?)
}
