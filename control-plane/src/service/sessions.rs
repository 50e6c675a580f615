//! Console sign-in: logins (email + argon2id password hash), sessions, lockout.
//!
//! Everything is in the database: a sign-out, an expiry or a lockout on one replica holds on
//! all of them. Session tokens are random 256-bit secrets stored as SHA-256 hashes, like API
//! tokens, and carried the same way (`authorization: Bearer`); their prefix tells them apart.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash::rand_core::OsRng};
use tokio::sync::Semaphore;

use super::accounts::CallerView;
use super::{ControlPlane, Result, can_see_customer};
use crate::clock::now_millis;
use crate::domain::Principal;
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::entities::{console_session, login};
use crate::persistence::{PersistenceError, accounts as account_db, logins as db};

/// Session tokens start with this; API tokens with `cpt_`.
pub const SESSION_TOKEN_PREFIX: &str = "cps_";
/// Consecutive failed sign-ins that lock a login.
pub const MAX_FAILED_SIGN_INS: i64 = 5;
/// How long a locked login refuses sign-ins (setting a new password lifts it at once).
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// A session's last use is written at most this often, so browsing costs no write per call.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation) costs
/// tens of milliseconds of CPU and 19 MiB per check; at most this many run at once, so a burst
/// of sign-ins queues instead of starving the API.
static PASSWORD_CHECKS: Semaphore = Semaphore::const_new(2);

/// A hash of a password nobody has, checked when the email is unknown so that an unknown email
/// takes as long to refuse as a wrong password.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Y2FzdHBsYW5lZGVjb3k$J8pRPxY3e1PB0T8Sf5RyrGzrR1nA0qGYm0gK3sB6S1Q";

const WRONG_CREDENTIALS: &str = "wrong email or password";

/// Who a bearer token belongs to, and the console session it is, if it is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub principal: Principal,
    pub session_id: Option<String>,
}

/// A new session, handed to the person who signed in.
pub struct SessionGrant {
    pub token: String,
    pub expire_time: i64,
    pub idle_timeout: Duration,
    pub caller: CallerView,
}

async fn hash_password(password: String) -> Result<String> {
    let _permit = PASSWORD_CHECKS
        .acquire()
        .await
        .map_err(|_| ServiceError::Unavailable("shutting down".into()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ServiceError::Internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("password hashing task: {e}")))?
}

/// True when `password` matches `stored`. A stored hash that does not parse never matches.
async fn verify_password(password: String, stored: String) -> Result<bool> {
    let _permit = PASSWORD_CHECKS
        .acquire()
        .await
        .map_err(|_| ServiceError::Unavailable("shutting down".into()))?;
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&stored) else {
            tracing::error!("a stored password hash does not parse");
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("password check task: {e}")))
}

fn locked(lock_expire_time: Option<i64>, now: i64) -> ServiceError {
    // Without a lock time the attempts are used up by guesses still being checked.
    let retry_ms = lock_expire_time.map_or(1000, |until| (until - now).max(1000));
    let minutes = (retry_ms + 59_999) / 60_000;
    ServiceError::TooManyAttempts {
        message: format!(
            "too many failed sign-ins: this login is locked; try again in {minutes} minute{}, \
             or ask whoever manages the account to set a new password",
            if minutes == 1 { "" } else { "s" }
        ),
        retry_after: Duration::from_millis(retry_ms as u64),
    }
}

fn login_conflict(err: PersistenceError) -> ServiceError {
    match err {
        PersistenceError::Conflict(_) => {
            ServiceError::AlreadyExists("that email is already used by another login".into())
        }
        other => other.into(),
    }
}

impl ControlPlane {
    /// Checks a password against a login through its failure counter: true when right (the
    /// count starts afresh), false when wrong, TooManyAttempts when the login is locked, before
    /// this attempt or by it.
    async fn attempt(&self, login: &login::Model, password: String) -> Result<bool> {
        let now = now_millis();
        if !db::reserve_attempt(self.db(), &login.id, MAX_FAILED_SIGN_INS, now).await? {
            let current = db::get_login(self.db(), &login.id).await?;
            return Err(locked(current.and_then(|l| l.lock_expire_time), now));
        }
        if verify_password(password, login.password_hash.clone()).await? {
            db::clear_attempts(self.db(), &login.id).await?;
            return Ok(true);
        }
        let until = now_millis() + LOCKOUT.as_millis() as i64;
        if db::lock_if_exhausted(self.db(), &login.id, MAX_FAILED_SIGN_INS, until).await? {
            tracing::warn!(login_id = %login.id, "login locked after repeated failed sign-ins");
            return Err(locked(Some(until), now_millis()));
        }
        Ok(false)
    }

    /// Signs in with email and password.
    #[tracing::instrument(skip_all)]
    pub async fn create_session(&self, email: &str, password: String) -> Result<SessionGrant> {
        let email = email.trim().to_lowercase();
        let Some(login) = db::find_login_by_email(self.db(), &email).await? else {
            verify_password(password, DECOY_HASH.to_owned()).await?;
            return Err(ServiceError::Unauthenticated(WRONG_CREDENTIALS.into()));
        };
        if !self.attempt(&login, password).await? {
            return Err(ServiceError::Unauthenticated(WRONG_CREDENTIALS.into()));
        }
        let Some(principal) = self
            .resolve_principal(&login.principal_kind, &login.principal_id)
            .await?
        else {
            // The account was deleted and left its login behind.
            return Err(ServiceError::Unauthenticated(WRONG_CREDENTIALS.into()));
        };
        let caller = self.describe_caller(&principal).await?;
        let config = self.config();
        let now = now_millis();
        let idle_ms = config.session_idle_timeout.as_millis() as i64;
        db::delete_expired_sessions(self.db(), now, idle_ms).await?;
        let token = format!("{SESSION_TOKEN_PREFIX}{}", ids::new_secret(32));
        let session = console_session::Model {
            id: ids::new_id("ses"),
            token_hash: ids::hash_secret(&token),
            login_id: login.id.clone(),
            create_time: now,
            last_use_time: now,
            expire_time: now + config.session_lifetime.as_millis() as i64,
        };
        db::insert_session(self.db(), session.clone()).await?;
        tracing::info!(session_id = %session.id, login_id = %login.id, "signed in");
        Ok(SessionGrant {
            token,
            expire_time: session.expire_time,
            idle_timeout: config.session_idle_timeout,
            caller,
        })
    }

    /// Signs out of the session the call came with.
    #[tracing::instrument(skip_all)]
    pub async fn delete_session(&self, session_id: Option<&str>) -> Result<()> {
        let Some(session_id) = session_id else {
            return Err(ServiceError::precondition(
                "NOT_A_SESSION",
                "credential",
                "this call was made with an API token, not a console session; there is nothing to sign out of",
            ));
        };
        db::delete_session(self.db(), session_id).await?;
        tracing::info!(session_id, "signed out");
        Ok(())
    }

    /// Resolves a bearer token, API token or session, to whom it belongs.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate_bearer(&self, secret: &str) -> Result<Option<Credential>> {
        if !secret.starts_with(SESSION_TOKEN_PREFIX) {
            return Ok(self
                .authenticate(secret)
                .await?
                .map(|principal| Credential {
                    principal,
                    session_id: None,
                }));
        }
        let Some(session) = db::find_session_by_hash(self.db(), &ids::hash_secret(secret)).await?
        else {
            return Ok(None);
        };
        let now = now_millis();
        let idle_ms = self.config().session_idle_timeout.as_millis() as i64;
        if now >= session.expire_time || now >= session.last_use_time.saturating_add(idle_ms) {
            db::delete_session(self.db(), &session.id).await?;
            return Ok(None);
        }
        let Some(login) = db::get_login(self.db(), &session.login_id).await? else {
            return Ok(None);
        };
        let Some(principal) = self
            .resolve_principal(&login.principal_kind, &login.principal_id)
            .await?
        else {
            return Ok(None);
        };
        if now - session.last_use_time >= TOUCH_INTERVAL_MS {
            db::touch_session(self.db(), &session.id, now).await?;
        }
        Ok(Some(Credential {
            principal,
            session_id: Some(session.id),
        }))
    }

    /// Checks that `principal` may see `target`'s login and, with `manage`, set or remove it.
    async fn check_login_access(
        &self,
        principal: &Principal,
        target: &Principal,
        manage: bool,
    ) -> Result<()> {
        let not_found =
            |what: &str, id: &str| ServiceError::NotFound(format!("{what} {id:?} not found"));
        let (visible, manager) = match target {
            Principal::Admin => (principal.is_admin(), principal.is_admin()),
            Principal::Reseller { id } => {
                if account_db::get_reseller(self.db(), id, false)
                    .await?
                    .is_none()
                {
                    return Err(not_found("reseller", id));
                }
                let own = matches!(principal, Principal::Reseller { id: own } if own == id);
                (principal.is_admin() || own, principal.is_admin())
            }
            Principal::Customer { id, .. } => {
                let customer = account_db::get_customer(self.db(), id, false)
                    .await?
                    .filter(|c| can_see_customer(principal, c))
                    .ok_or_else(|| not_found("customer", id))?;
                if customer.is_primary {
                    return Err(ServiceError::precondition(
                        "PRIMARY_ACCOUNT",
                        format!("customer:{id}"),
                        "a reseller's primary account signs in as the reseller: set the reseller's login instead",
                    ));
                }
                let is_customer = matches!(principal, Principal::Customer { .. });
                (true, !is_customer)
            }
        };
        if !visible {
            return Err(match target {
                Principal::Admin => {
                    ServiceError::PermissionDenied("only the admin can manage its login".into())
                }
                Principal::Reseller { id } => not_found("reseller", id),
                Principal::Customer { id, .. } => not_found("customer", id),
            });
        }
        if manage && !manager {
            return Err(ServiceError::PermissionDenied(
                "a login is set by whoever manages the account; change your own password with ChangePassword"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Sets `target`'s sign-in email and password, creating its login if needed. Ends the
    /// login's sessions and lifts any lockout.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn set_login(
        &self,
        principal: &Principal,
        target: Principal,
        email: &str,
        password: String,
    ) -> Result<login::Model> {
        super::retry_aborted("set_login", || {
            self.set_login_once(principal, target.clone(), email, password.clone())
        })
        .await
    }

    async fn set_login_once(
        &self,
        principal: &Principal,
        target: Principal,
        email: &str,
        password: String,
    ) -> Result<login::Model> {
        self.check_login_access(principal, &target, true).await?;
        let email = email.trim().to_lowercase();
        let password_hash = hash_password(password).await?;
        let (kind, principal_id) = target.stored_key();
        let now = now_millis();
        let txn = self.begin().await?;
        let login = match db::find_login_of(&txn, kind, principal_id).await? {
            Some(existing) => {
                db::set_credentials(&txn, &existing.id, &email, &password_hash, now)
                    .await
                    .map_err(login_conflict)?;
                let ended = db::end_sessions_of(&txn, &existing.id, None).await?;
                tracing::info!(login_id = %existing.id, sessions_ended = ended, by = %principal.audit_name(), "login reset");
                login::Model {
                    email,
                    password_hash,
                    failed_attempts: 0,
                    lock_expire_time: None,
                    password_update_time: now,
                    ..existing
                }
            }
            None => {
                let model = login::Model {
                    id: ids::new_id("lgn"),
                    principal_kind: kind.to_owned(),
                    principal_id: principal_id.to_owned(),
                    email,
                    password_hash,
                    failed_attempts: 0,
                    lock_expire_time: None,
                    password_update_time: now,
                    create_time: now,
                };
                db::insert_login(&txn, model.clone())
                    .await
                    .map_err(login_conflict)?;
                tracing::info!(login_id = %model.id, by = %principal.audit_name(), "login created");
                model
            }
        };
        txn.commit().await.map_err(login_conflict)?;
        Ok(login)
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn get_login(
        &self,
        principal: &Principal,
        target: Principal,
    ) -> Result<login::Model> {
        self.check_login_access(principal, &target, false).await?;
        let (kind, id) = target.stored_key();
        db::find_login_of(self.db(), kind, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("this account has no login".into()))
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn delete_login(&self, principal: &Principal, target: Principal) -> Result<()> {
        super::retry_aborted("delete_login", || {
            self.delete_login_once(principal, target.clone())
        })
        .await
    }

    async fn delete_login_once(&self, principal: &Principal, target: Principal) -> Result<()> {
        self.check_login_access(principal, &target, true).await?;
        let (kind, id) = target.stored_key();
        let login = db::find_login_of(self.db(), kind, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("this account has no login".into()))?;
        let txn = self.begin().await?;
        db::delete_login(&txn, &login.id).await?;
        txn.commit().await?;
        tracing::info!(login_id = %login.id, by = %principal.audit_name(), "login removed");
        Ok(())
    }

    /// The caller changes its own password; its other sessions end, the current one stays.
    #[tracing::instrument(skip_all)]
    pub async fn change_password(
        &self,
        credential: &Credential,
        current_password: String,
        new_password: String,
    ) -> Result<()> {
        super::retry_aborted("change_password", || {
            self.change_password_once(credential, current_password.clone(), new_password.clone())
        })
        .await
    }

    async fn change_password_once(
        &self,
        credential: &Credential,
        current_password: String,
        new_password: String,
    ) -> Result<()> {
        let (kind, id) = credential.principal.stored_key();
        let login = db::find_login_of(self.db(), kind, id)
            .await?
            .ok_or_else(|| {
                ServiceError::precondition(
                    "NO_LOGIN",
                    "login",
                    "this account has no login yet; whoever manages it sets the first password",
                )
            })?;
        // The current password is guessed through the same counter as a sign-in.
        if !self.attempt(&login, current_password).await? {
            return Err(ServiceError::invalid_field(
                "current_password",
                "is not the current password",
            ));
        }
        let password_hash = hash_password(new_password).await?;
        let txn = self.begin().await?;
        db::set_credentials(&txn, &login.id, &login.email, &password_hash, now_millis()).await?;
        let ended = db::end_sessions_of(&txn, &login.id, credential.session_id.as_deref()).await?;
        txn.commit().await?;
        tracing::info!(login_id = %login.id, sessions_ended = ended, "password changed by its owner");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify_only_the_right_password() {
        let a = hash_password("correct horse battery".into()).await.unwrap();
        let b = hash_password("correct horse battery".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(
            verify_password("correct horse battery".into(), a.clone())
                .await
                .unwrap()
        );
        assert!(
            !verify_password("correct horse battery!".into(), a)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_decoy_hash_parses_and_matches_nothing_typed() {
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
        assert!(!verify_password("".into(), DECOY_HASH.into()).await.unwrap());
        assert!(
            !verify_password("password1234".into(), DECOY_HASH.into())
                .await
                .unwrap()
        );
    }

    #[test]
    fn a_lock_says_how_long_it_lasts() {
        let err = locked(Some(10 * 60_000), 0);
        assert!(err.to_string().contains("try again in 10 minutes"), "{err}");
        let ServiceError::TooManyAttempts { retry_after, .. } = err else {
            panic!("wrong variant");
        };
        assert_eq!(retry_after, Duration::from_secs(600));
    }
}
