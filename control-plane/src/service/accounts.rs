//! Resellers, customers, API tokens.

use super::{ControlPlane, Result, can_see_customer, page_size, require_admin, resolve_reseller};
use crate::clock::now_millis;
use crate::domain::{Limits, Principal, Resource, ServiceType};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::entities::{api_token, customer, reseller};
use crate::persistence::{accounts as db, services as service_db};

#[derive(Clone)]
pub struct NewReseller {
    pub display_name: String,
    pub limits: Limits,
    pub allowed_types: Vec<ServiceType>,
    pub default_type: Option<ServiceType>,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Clone, Default)]
pub struct ResellerPatch {
    pub display_name: Option<String>,
    /// Each entry replaces one limit (`None` inside = unlimited).
    pub limits: Vec<(Resource, Option<u64>)>,
    pub allowed_types: Option<Vec<ServiceType>>,
    /// `Some(None)` clears the saved default.
    pub default_type: Option<Option<ServiceType>>,
}

#[derive(Clone)]
pub struct NewCustomer {
    pub reseller_id: Option<String>,
    pub display_name: String,
    pub email: String,
}

#[derive(Clone, Default)]
pub struct CustomerPatch {
    pub display_name: Option<String>,
    pub email: Option<String>,
}

/// API tokens one principal may hold: enough for every program it runs, few enough that nobody
/// can fill the database with them.
pub const MAX_TOKENS_PER_PRINCIPAL: u64 = 100;

/// The caller's identity as shown by `GetCaller`.
pub struct CallerView {
    pub principal: Principal,
    pub display_name: String,
}

pub fn limits_of(model: &reseller::Model) -> Limits {
    let get = |v: Option<i64>| v.map(|n| n.max(0) as u64);
    Limits {
        customers: get(model.limit_customers),
        services: get(model.limit_services),
        listener_slots: get(model.limit_listener_slots),
        max_bitrate_kbps: get(model.limit_max_bitrate_kbps),
        disk_mb: get(model.limit_disk_mb),
        bandwidth_gb_per_month: get(model.limit_bandwidth_gb),
    }
}

fn store_limits(model: &mut reseller::Model, limits: &Limits) {
    let put = |v: Option<u64>| v.map(|n| n.min(i64::MAX as u64) as i64);
    model.limit_customers = put(limits.customers);
    model.limit_services = put(limits.services);
    model.limit_listener_slots = put(limits.listener_slots);
    model.limit_max_bitrate_kbps = put(limits.max_bitrate_kbps);
    model.limit_disk_mb = put(limits.disk_mb);
    model.limit_bandwidth_gb = put(limits.bandwidth_gb_per_month);
}

fn check_default_allowed(default: Option<ServiceType>, allowed: &[ServiceType]) -> Result<()> {
    match default {
        Some(t) if !allowed.contains(&t) => Err(ServiceError::invalid_field(
            "default_service_type",
            format!("{t} is not among the reseller's allowed service types"),
        )),
        _ => Ok(()),
    }
}

impl ControlPlane {
    /// Creates a reseller together with its primary account, in one transaction.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn create_reseller(
        &self,
        principal: &Principal,
        new: NewReseller,
    ) -> Result<reseller::Model> {
        super::retry_aborted("create_reseller", || {
            self.create_reseller_once(principal, new.clone())
        })
        .await
    }

    async fn create_reseller_once(
        &self,
        principal: &Principal,
        new: NewReseller,
    ) -> Result<reseller::Model> {
        require_admin(principal, "create resellers")?;
        check_default_allowed(new.default_type, &new.allowed_types)?;
        let now = now_millis();
        let reseller_id = ids::new_id("rsl");
        let primary = customer::Model {
            id: ids::new_id("cus"),
            reseller_id: reseller_id.clone(),
            sort_key: new.display_name.to_lowercase(),
            display_name: new.display_name.clone(),
            email: String::new(),
            is_primary: true,
            create_time: now,
            update_time: now,
            delete_request_time: None,
            delete_time: None,
        };
        let mut model = reseller::Model {
            id: reseller_id,
            display_name: new.display_name,
            primary_customer_id: primary.id.clone(),
            limit_customers: None,
            limit_services: None,
            limit_listener_slots: None,
            limit_max_bitrate_kbps: None,
            limit_disk_mb: None,
            limit_bandwidth_gb: None,
            allowed_types: new.allowed_types.iter().copied().collect(),
            default_type: new.default_type,
            create_time: now,
            update_time: now,
            delete_request_time: None,
            delete_time: None,
        };
        store_limits(&mut model, &new.limits);
        let txn = self.begin().await?;
        db::insert_reseller(&txn, model.clone()).await?;
        db::insert_customer(&txn, primary).await?;
        txn.commit().await?;
        tracing::info!(reseller_id = %model.id, "created reseller");
        Ok(model)
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn get_reseller(&self, principal: &Principal, id: &str) -> Result<reseller::Model> {
        let not_found = || ServiceError::NotFound(format!("reseller {id:?} not found"));
        let visible = match principal {
            Principal::Admin => true,
            Principal::Reseller { id: own } => own == id,
            Principal::Customer { .. } => false,
        };
        if !visible {
            return Err(not_found());
        }
        db::get_reseller(self.db(), id, false)
            .await?
            .ok_or_else(not_found)
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn list_resellers(
        &self,
        principal: &Principal,
        page_token: &str,
        requested_size: i32,
    ) -> Result<(Vec<reseller::Model>, String)> {
        let size = page_size(requested_size)?;
        let listing = format!("resellers|{}", principal.audit_name());
        let after = self.page_after(&listing, page_token)?;
        match principal {
            Principal::Admin => {
                let rows = db::list_resellers(self.db(), after.as_deref(), size + 1).await?;
                Ok(self.paginate(&listing, rows, size, |r| &r.id))
            }
            Principal::Reseller { id } if after.is_none() => {
                Ok((vec![self.get_reseller(principal, id).await?], String::new()))
            }
            Principal::Reseller { .. } => Ok((Vec::new(), String::new())),
            Principal::Customer { .. } => Err(ServiceError::PermissionDenied(
                "customers cannot list resellers".into(),
            )),
        }
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn update_reseller(
        &self,
        principal: &Principal,
        id: &str,
        patch: ResellerPatch,
    ) -> Result<reseller::Model> {
        super::retry_aborted("update_reseller", || {
            self.update_reseller_once(principal, id, patch.clone())
        })
        .await
    }

    async fn update_reseller_once(
        &self,
        principal: &Principal,
        id: &str,
        patch: ResellerPatch,
    ) -> Result<reseller::Model> {
        // Visibility first, then the row again under lock: the patch applies to the latest
        // version, not to one a concurrent writer has since replaced.
        self.get_reseller(principal, id).await?;
        let txn = self.begin().await?;
        let mut model = db::get_reseller(&txn, id, true)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("reseller {id:?} not found")))?;
        if !principal.is_admin()
            && (patch.display_name.is_some()
                || !patch.limits.is_empty()
                || patch.allowed_types.is_some())
        {
            return Err(ServiceError::PermissionDenied(
                "a reseller may only change its own default_service_type".into(),
            ));
        }
        let mut allowed: Vec<ServiceType> = model.allowed_types.iter().collect();
        if let Some(types) = patch.allowed_types {
            allowed = types;
            model.allowed_types = allowed.iter().copied().collect();
        }
        let mut default = model.default_type;
        match patch.default_type {
            Some(explicit) => {
                check_default_allowed(explicit, &allowed)?;
                default = explicit;
            }
            // A saved default the admin no longer allows is dropped rather than kept dangling.
            None if default.is_some_and(|t| !allowed.contains(&t)) => default = None,
            None => {}
        }
        model.default_type = default;
        let mut limits = limits_of(&model);
        for (resource, value) in patch.limits {
            limits.set(resource, value);
        }
        store_limits(&mut model, &limits);
        let now = now_millis();
        model.update_time = now;
        if let Some(name) = patch.display_name {
            model.display_name = name.clone();
            // The primary account is the reseller itself; keep its name in step.
            let primary = db::get_customer(&txn, &model.primary_customer_id, true).await?;
            if let Some(primary) = primary {
                db::update_customer(&txn, &primary.id, name, primary.email, now).await?;
            }
        }
        db::update_reseller(&txn, model.clone()).await?;
        txn.commit().await?;
        Ok(model)
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn create_customer(
        &self,
        principal: &Principal,
        new: NewCustomer,
    ) -> Result<customer::Model> {
        super::retry_aborted("create_customer", || {
            self.create_customer_once(principal, new.clone())
        })
        .await
    }

    async fn create_customer_once(
        &self,
        principal: &Principal,
        new: NewCustomer,
    ) -> Result<customer::Model> {
        let reseller_id = match principal {
            Principal::Customer { .. } => {
                return Err(ServiceError::PermissionDenied(
                    "customers cannot create customers".into(),
                ));
            }
            _ => resolve_reseller(principal, new.reseller_id.as_deref())?,
        };
        let txn = self.begin().await?;
        let reseller = db::get_reseller(&txn, &reseller_id, true)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("reseller {reseller_id:?} not found")))?;
        if reseller.delete_request_time.is_some() {
            return Err(ServiceError::precondition(
                "ACCOUNT_DELETING",
                format!("reseller:{reseller_id}"),
                format!("reseller {reseller_id} is being deleted and takes no new customers"),
            ));
        }
        let limits = limits_of(&reseller);
        let usage = service_db::reseller_usage(&txn, &reseller_id).await?;
        if let Some(available) = usage.available(&limits, Resource::Customers)
            && available < 1
        {
            return Err(ServiceError::QuotaExceeded {
                message: format!(
                    "quota exceeded for customers: asked for 1, {available} available (limit {})",
                    limits.customers.unwrap_or_default()
                ),
                resource: Resource::Customers,
                subject: format!("reseller:{reseller_id}"),
                asked: 1,
                available,
            });
        }
        let now = now_millis();
        let model = customer::Model {
            id: ids::new_id("cus"),
            reseller_id,
            sort_key: new.display_name.to_lowercase(),
            display_name: new.display_name,
            email: new.email,
            is_primary: false,
            create_time: now,
            update_time: now,
            delete_request_time: None,
            delete_time: None,
        };
        db::insert_customer(&txn, model.clone()).await?;
        txn.commit().await?;
        Ok(model)
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn get_customer(&self, principal: &Principal, id: &str) -> Result<customer::Model> {
        match db::get_customer(self.db(), id, false).await? {
            Some(c) if can_see_customer(principal, &c) => Ok(c),
            _ => Err(ServiceError::NotFound(format!("customer {id:?} not found"))),
        }
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn list_customers(
        &self,
        principal: &Principal,
        reseller_id: Option<&str>,
        page_token: &str,
        requested_size: i32,
    ) -> Result<(Vec<customer::Model>, String)> {
        let size = page_size(requested_size)?;
        let listing = format!(
            "customers|{}|{}",
            principal.audit_name(),
            reseller_id.unwrap_or_default()
        );
        let after = self.page_after(&listing, page_token)?;
        match principal {
            Principal::Customer { id, .. } => {
                let me = self.get_customer(principal, id).await?;
                Ok((
                    if after.is_none() {
                        vec![me]
                    } else {
                        Vec::new()
                    },
                    String::new(),
                ))
            }
            Principal::Admin if reseller_id.is_none() => {
                let rows = db::list_customers(self.db(), None, after.as_deref(), size + 1).await?;
                Ok(self.paginate(&listing, rows, size, |c| &c.id))
            }
            _ => {
                let reseller_id = resolve_reseller(principal, reseller_id)?;
                let rows =
                    db::list_customers(self.db(), Some(&reseller_id), after.as_deref(), size + 1)
                        .await?;
                Ok(self.paginate(&listing, rows, size, |c| &c.id))
            }
        }
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name(), id = %id))]
    pub async fn update_customer(
        &self,
        principal: &Principal,
        id: &str,
        patch: CustomerPatch,
    ) -> Result<customer::Model> {
        super::retry_aborted("update_customer", || {
            self.update_customer_once(principal, id, patch.clone())
        })
        .await
    }

    async fn update_customer_once(
        &self,
        principal: &Principal,
        id: &str,
        patch: CustomerPatch,
    ) -> Result<customer::Model> {
        self.get_customer(principal, id).await?;
        let now = now_millis();
        // Re-read under lock so the fields this patch leaves alone keep any concurrent change.
        let txn = self.begin().await?;
        let mut model = db::get_customer(&txn, id, true)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("customer {id:?} not found")))?;
        if patch.display_name.is_some() {
            match principal {
                Principal::Customer { .. } => {
                    return Err(ServiceError::PermissionDenied(
                        "customers may only change their email".into(),
                    ));
                }
                // The primary account's name is the reseller's, which the admin sets.
                Principal::Reseller { .. } if model.is_primary => {
                    return Err(ServiceError::PermissionDenied(
                        "a reseller's name is changed by the admin".into(),
                    ));
                }
                _ => {}
            }
        }
        if let Some(name) = patch.display_name {
            model.sort_key = name.to_lowercase();
            model.display_name = name;
            if model.is_primary {
                // The primary account is the reseller itself; keep the reseller's name in step.
                if let Some(mut reseller) = db::get_reseller(&txn, &model.reseller_id, true).await?
                {
                    reseller.display_name = model.display_name.clone();
                    reseller.update_time = now;
                    db::update_reseller(&txn, reseller).await?;
                }
            }
        }
        if let Some(email) = patch.email {
            model.email = email;
        }
        model.update_time = now;
        db::update_customer(
            &txn,
            &model.id,
            model.display_name.clone(),
            model.email.clone(),
            now,
        )
        .await?;
        txn.commit().await?;
        Ok(model)
    }

    /// Wizard step 1: a–z by name, case-insensitively, primary account marked.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn list_customer_choices(
        &self,
        principal: &Principal,
        reseller_id: Option<&str>,
    ) -> Result<Vec<customer::Model>> {
        if matches!(principal, Principal::Customer { .. }) {
            return Err(ServiceError::PermissionDenied(
                "customers cannot create services".into(),
            ));
        }
        let reseller_id = resolve_reseller(principal, reseller_id)?;
        if db::get_reseller(self.db(), &reseller_id, false)
            .await?
            .is_none()
        {
            return Err(ServiceError::NotFound(format!(
                "reseller {reseller_id:?} not found"
            )));
        }
        Ok(db::list_customers_sorted(self.db(), &reseller_id).await?)
    }

    /// Issues a token for `target` (the caller itself, or an account in its tenancy). Returns
    /// the token id and the secret, which is not stored.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn create_api_token(
        &self,
        principal: &Principal,
        target: Principal,
        description: String,
    ) -> Result<(String, String)> {
        super::retry_aborted("create_api_token", || {
            self.create_api_token_once(principal, target.clone(), description.clone())
        })
        .await
    }

    async fn create_api_token_once(
        &self,
        principal: &Principal,
        target: Principal,
        description: String,
    ) -> Result<(String, String)> {
        let allowed = match (principal, &target) {
            (Principal::Admin, Principal::Admin) => true,
            (Principal::Admin, Principal::Reseller { id }) => {
                db::get_reseller(self.db(), id, false).await?.is_some()
            }
            (Principal::Admin, Principal::Customer { id, .. })
            | (Principal::Reseller { .. }, Principal::Customer { id, .. }) => {
                db::get_customer(self.db(), id, false)
                    .await?
                    .is_some_and(|c| can_see_customer(principal, &c))
            }
            (Principal::Reseller { id: own }, Principal::Reseller { id }) => own == id,
            (Principal::Customer { id: own, .. }, Principal::Customer { id, .. }) => own == id,
            _ => false,
        };
        if !allowed {
            return Err(match target {
                Principal::Admin => {
                    ServiceError::PermissionDenied("only the admin can issue admin tokens".into())
                }
                Principal::Reseller { id } => {
                    ServiceError::NotFound(format!("reseller {id:?} not found"))
                }
                Principal::Customer { id, .. } => {
                    ServiceError::NotFound(format!("customer {id:?} not found"))
                }
            });
        }
        let (id, secret) = self.insert_token(&target, description).await?;
        Ok((id, secret))
    }

    /// Inserts a token unless its principal already holds [`MAX_TOKENS_PER_PRINCIPAL`]. The
    /// principal's row is locked while counting, so concurrent creates cannot pass the cap
    /// together.
    async fn insert_token(
        &self,
        target: &Principal,
        description: String,
    ) -> Result<(String, String)> {
        let (model, secret) = new_token(target, description);
        let id = model.id.clone();
        let txn = self.begin().await?;
        match target {
            Principal::Admin => {}
            Principal::Reseller { id } => {
                db::get_reseller(&txn, id, true).await?;
            }
            Principal::Customer { id, .. } => {
                db::get_customer(&txn, id, true).await?;
            }
        }
        let held = db::count_tokens(&txn, &model.principal_kind, &model.principal_id).await?;
        if held >= MAX_TOKENS_PER_PRINCIPAL {
            return Err(ServiceError::LimitReached {
                message: format!(
                    "{} already holds {held} API tokens, the most one account may have; revoke one first",
                    target.audit_name()
                ),
                subject: target.audit_name(),
                limit: "api_tokens",
            });
        }
        db::insert_token(&txn, model).await?;
        txn.commit().await?;
        Ok((id, secret))
    }

    /// Resolves a bearer token to its principal; `None` when it is not a valid token.
    ///
    /// Every public call starts here, so this is also where a database outage is diagnosed
    /// and then answered at once until the database is back.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>> {
        let persistence = self.persistence();
        persistence.check_available().await?;
        let hash = ids::hash_secret(secret);
        if let Some(principal) = self.inner.tokens.get(&hash) {
            return Ok(Some(principal));
        }
        let found = match db::find_token_by_hash(self.reader(), &hash).await {
            Ok(found) => found,
            Err(err) => return Err(persistence.diagnose(err).await.into()),
        };
        let Some(token) = found else {
            return Ok(None);
        };
        let principal = self
            .resolve_principal(&token.principal_kind, &token.principal_id)
            .await?;
        if let Some(principal) = &principal {
            self.inner.tokens.insert(hash, principal.clone());
        }
        Ok(principal)
    }

    /// The principal a stored (kind, id) pair names, as long as its account still exists.
    pub(crate) async fn resolve_principal(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<Principal>> {
        Ok(match kind {
            "admin" => Some(Principal::Admin),
            "reseller" => db::get_reseller(self.reader(), id, false)
                .await?
                .map(|r| Principal::Reseller { id: r.id }),
            "customer" => {
                db::get_customer(self.reader(), id, false)
                    .await?
                    .map(|c| Principal::Customer {
                        id: c.id,
                        reseller_id: c.reseller_id,
                    })
            }
            _ => None,
        })
    }

    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn describe_caller(&self, principal: &Principal) -> Result<CallerView> {
        let display_name = match principal {
            Principal::Admin => "admin".to_owned(),
            Principal::Reseller { id } => self.get_reseller(principal, id).await?.display_name,
            Principal::Customer { id, .. } => self.get_customer(principal, id).await?.display_name,
        };
        Ok(CallerView {
            principal: principal.clone(),
            display_name,
        })
    }

    /// On first start with an empty database: creates the admin's first token and hands its
    /// secret over, on the one replica that wins the bootstrap. True when this one did.
    ///
    /// `hand_over` stores the secret (the server writes the admin token file); it runs before
    /// the commit, so a failure there leaves the database unbootstrapped for the next start
    /// rather than with a token nobody has.
    ///
    /// `provided`: the secret to use instead of a generated one (an operator's bootstrap
    /// token, e.g. from a Kubernetes Secret); it is stored hashed like any other.
    pub async fn bootstrap_admin(
        &self,
        provided: Option<&str>,
        hand_over: impl FnOnce(&str) -> std::result::Result<(), String>,
    ) -> Result<bool> {
        let txn = self.begin().await?;
        if !crate::persistence::cluster::insert_marker(&txn, "admin_bootstrapped").await? {
            return Ok(false);
        }
        let description = "bootstrap admin token".to_owned();
        let (model, secret) = match provided {
            Some(secret) => (
                token_row(&Principal::Admin, description, secret),
                secret.to_owned(),
            ),
            None => new_token(&Principal::Admin, description),
        };
        db::insert_token(&txn, model).await?;
        hand_over(&secret).map_err(ServiceError::Unavailable)?;
        txn.commit().await?;
        Ok(true)
    }
}

/// A new token row and its secret. Only the hash goes into the row.
fn new_token(target: &Principal, description: String) -> (api_token::Model, String) {
    let secret = format!("cpt_{}", ids::new_secret(32));
    (token_row(target, description, &secret), secret)
}

/// The row for a token with this secret (only its hash is kept).
fn token_row(target: &Principal, description: String, secret: &str) -> api_token::Model {
    let (kind, principal_id) = target.stored_key();
    api_token::Model {
        id: ids::new_id("tok"),
        token_hash: ids::hash_secret(secret),
        principal_kind: kind.to_owned(),
        principal_id: principal_id.to_owned(),
        description,
        create_time: now_millis(),
    }
}

/// Wizard step 2: what a reseller may provision.
pub struct ProvisioningOptions {
    pub reseller_id: String,
    pub allowed_types: Vec<ServiceType>,
    pub default_type: Option<ServiceType>,
}

impl ControlPlane {
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn provisioning_options(
        &self,
        principal: &Principal,
        reseller_id: Option<&str>,
    ) -> Result<ProvisioningOptions> {
        let reseller_id = resolve_reseller(principal, reseller_id)?;
        let reseller = db::get_reseller(self.db(), &reseller_id, false)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("reseller {reseller_id:?} not found")))?;
        Ok(ProvisioningOptions {
            allowed_types: reseller.allowed_types.iter().collect(),
            default_type: reseller.default_type,
            reseller_id,
        })
    }

    /// Wizard step 3: used, limit and available for every resource.
    #[tracing::instrument(skip_all, fields(caller = %principal.audit_name()))]
    pub async fn reseller_usage(
        &self,
        principal: &Principal,
        reseller_id: Option<&str>,
    ) -> Result<(String, Limits, crate::domain::Usage)> {
        if matches!(principal, Principal::Customer { .. }) {
            return Err(ServiceError::PermissionDenied(
                "customers cannot view reseller usage".into(),
            ));
        }
        let reseller_id = resolve_reseller(principal, reseller_id)?;
        let reseller = db::get_reseller(self.db(), &reseller_id, false)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("reseller {reseller_id:?} not found")))?;
        let usage = service_db::reseller_usage(self.db(), &reseller_id).await?;
        Ok((reseller_id, limits_of(&reseller), usage))
    }
}
