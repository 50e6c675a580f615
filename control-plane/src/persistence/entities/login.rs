//! The `logins` table: how an account signs in to the console.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "logins")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// "admin", "reseller" or "customer", as on API tokens.
    pub principal_kind: String,
    /// Empty for the admin.
    pub principal_id: String,
    /// Lowercase.
    pub email: String,
    /// An argon2id PHC string (salt and parameters included).
    pub password_hash: String,
    /// Failed sign-ins since the last success or lockout.
    pub failed_attempts: i64,
    pub lock_expire_time: Option<i64>,
    pub password_update_time: i64,
    pub create_time: i64,
}

/// The hash is kept out of debug output like any other secret.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("id", &self.id)
            .field("principal_kind", &self.principal_kind)
            .field("principal_id", &self.principal_id)
            .field("email", &self.email)
            .field("failed_attempts", &self.failed_attempts)
            .field("lock_expire_time", &self.lock_expire_time)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
