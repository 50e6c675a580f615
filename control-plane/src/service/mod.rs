//! The service layer: every product rule lives here. gRPC handlers convert requests into the
//! domain inputs below, call one method, and convert the result.

mod accounts;
mod actions;
pub mod agents;
mod media;
mod nodes;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use accounts::{
    CallerView, CustomerPatch, NewCustomer, NewReseller, ResellerPatch, decode_types, limits_of,
};
pub use actions::ActionRecord;
pub use media::{DeletionPlan, MediaServicePatch, MediaServiceView, NewMediaService, ServiceScope};
pub use nodes::{Capability, NewNode, NodeCapabilities, NodeView};
pub use sessions::{Credential, SESSION_TOKEN_PREFIX, SessionGrant};

use crate::domain::Principal;
use crate::error::ServiceError;
use crate::persistence::Persistence;
use crate::persistence::entities::{customer, media_service};
use crate::pki::CertificateAuthority;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// An unfinished action whose node is unreachable past this fails.
    pub action_deadline: Duration,
    pub join_token_ttl: Duration,
    pub agent_certificate_validity: Duration,
    /// A connected node that has not sent a heartbeat for this long is marked unreachable.
    pub heartbeat_timeout: Duration,
    /// How often agents send heartbeats (sent to them at connect).
    pub heartbeat_interval: Duration,
    /// A console session unused for this long ends.
    pub session_idle_timeout: Duration,
    /// A console session ends this long after sign-in, however much it is used.
    pub session_lifetime: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            action_deadline: Duration::from_secs(600),
            join_token_ttl: Duration::from_secs(3600),
            agent_certificate_validity: Duration::from_secs(30 * 24 * 3600),
            heartbeat_timeout: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            session_idle_timeout: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// The control plane's state and rules. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

struct Inner {
    persistence: Persistence,
    config: ServiceConfig,
    ca: CertificateAuthority,
    /// Cancelled when the server shuts down; long-lived streams end on it.
    shutdown: CancellationToken,
    /// Bumped whenever this replica changes an action or a node's desired state, so local
    /// watchers and dispatchers wake at once; other replicas' changes are picked up by polling.
    changes: watch::Sender<u64>,
}

impl ControlPlane {
    pub fn new(
        persistence: Persistence,
        config: ServiceConfig,
        ca: CertificateAuthority,
        shutdown: CancellationToken,
    ) -> Self {
        let (changes, _) = watch::channel(0);
        ControlPlane {
            inner: Arc::new(Inner {
                persistence,
                config,
                ca,
                shutdown,
                changes,
            }),
        }
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub fn persistence(&self) -> &Persistence {
        &self.inner.persistence
    }

    fn db(&self) -> &sea_orm::DatabaseConnection {
        self.inner.persistence.db()
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    pub fn ca(&self) -> &CertificateAuthority {
        &self.inner.ca
    }

    pub(crate) fn notify_change(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

/// Shown instead of an account outside the caller's tenancy.
const ELSEWHERE: &str = "another account";

impl ControlPlane {
    /// What the caller may see of an audit name ("admin", "reseller:ID", "customer:ID"): a
    /// service that moved between tenancies must not reveal its previous owners' accounts.
    pub(crate) async fn visible_actor(&self, principal: &Principal, actor: &str) -> Result<String> {
        let visible = match (principal, actor.split_once(':')) {
            (Principal::Admin, _) | (_, None) => true,
            (_, Some(("reseller", id))) => can_see_reseller(principal, id),
            (Principal::Customer { id: own, .. }, Some(("customer", id))) => own == id,
            (Principal::Reseller { id: own }, Some(("customer", id))) => {
                crate::persistence::accounts::get_customer(self.db(), id, false)
                    .await?
                    .is_some_and(|c| c.reseller_id == *own)
            }
            (_, Some(_)) => false,
        };
        Ok(if visible {
            actor.to_owned()
        } else {
            ELSEWHERE.to_owned()
        })
    }
}

/// Blanks the parts of an ownership change outside the caller's tenancy.
fn redact_ownership_change(
    principal: &Principal,
    change: &mut crate::persistence::entities::ownership_change::Model,
) {
    let (own_reseller, own_customer) = match principal {
        Principal::Admin => return,
        Principal::Reseller { id } => (id.as_str(), None),
        Principal::Customer { id, reseller_id } => (reseller_id.as_str(), Some(id.as_str())),
    };
    let customer_visible = |customer: &str, reseller: &str| match own_customer {
        Some(own) => own == customer,
        None => reseller == own_reseller,
    };
    if !customer_visible(&change.from_customer_id, &change.from_reseller_id) {
        change.from_customer_id = String::new();
    }
    if !customer_visible(&change.to_customer_id, &change.to_reseller_id) {
        change.to_customer_id = String::new();
    }
    for reseller in [&mut change.from_reseller_id, &mut change.to_reseller_id] {
        if reseller != own_reseller {
            reseller.clear();
        }
    }
    let actor_visible = match change.changed_by.split_once(':') {
        None => true,
        Some(("reseller", id)) => id == own_reseller,
        Some(_) => false,
    };
    if !actor_visible {
        change.changed_by = ELSEWHERE.to_owned();
    }
}

fn can_see_customer(principal: &Principal, customer: &customer::Model) -> bool {
    match principal {
        Principal::Admin => true,
        Principal::Reseller { id } => customer.reseller_id == *id,
        Principal::Customer { id, .. } => customer.id == *id,
    }
}

fn can_see_service(principal: &Principal, service: &media_service::Model) -> bool {
    match principal {
        Principal::Admin => true,
        Principal::Reseller { id } => service.reseller_id == *id,
        Principal::Customer { id, .. } => service.customer_id == *id,
    }
}

fn can_see_reseller(principal: &Principal, reseller_id: &str) -> bool {
    match principal {
        Principal::Admin => true,
        Principal::Reseller { id } => id == reseller_id,
        Principal::Customer {
            reseller_id: own, ..
        } => own == reseller_id,
    }
}

fn require_admin(principal: &Principal, what: &str) -> Result<()> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied(format!(
            "only the admin can {what}"
        )))
    }
}

/// Resellers and the admin manage services; customers may only operate their own.
fn require_manager(principal: &Principal, what: &str) -> Result<()> {
    match principal {
        Principal::Admin | Principal::Reseller { .. } => Ok(()),
        Principal::Customer { .. } => Err(ServiceError::PermissionDenied(format!(
            "customers cannot {what}"
        ))),
    }
}

/// Resolves which reseller a request is about: the admin must name one; others get their own
/// (naming another answers NOT_FOUND, as for anything outside the tenancy).
fn resolve_reseller(principal: &Principal, requested: Option<&str>) -> Result<String> {
    match (principal, requested) {
        (Principal::Admin, Some(id)) => Ok(id.to_owned()),
        (Principal::Admin, None) => Err(ServiceError::invalid_field(
            "reseller_id",
            "required when called by the admin",
        )),
        (Principal::Reseller { id }, None)
        | (
            Principal::Customer {
                reseller_id: id, ..
            },
            None,
        ) => Ok(id.clone()),
        (_, Some(id)) if can_see_reseller(principal, id) => Ok(id.to_owned()),
        (_, Some(id)) => Err(ServiceError::NotFound(format!("reseller {id:?} not found"))),
    }
}

/// Groups child rows (ports, transitions) by their parent's id in one pass, keeping order.
pub(crate) fn group_by_parent<T>(
    children: Vec<T>,
    parent_id: impl Fn(&T) -> &str,
) -> std::collections::HashMap<String, Vec<T>> {
    let mut groups: std::collections::HashMap<String, Vec<T>> = std::collections::HashMap::new();
    for child in children {
        groups
            .entry(parent_id(&child).to_owned())
            .or_default()
            .push(child);
    }
    groups
}

/// Page tokens are the last id of the previous page, opaque to callers.
pub(crate) fn decode_page_token(token: &str) -> Result<Option<String>> {
    use base64::Engine;
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ServiceError::invalid_field("page_token", "not a token this server issued"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ServiceError::invalid_field("page_token", "not a token this server issued"))
}

pub(crate) fn encode_page_token(last_id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last_id)
}

/// Default 50, at most 1000.
pub(crate) fn page_size(requested: i32) -> Result<u64> {
    match requested {
        n if n < 0 => Err(ServiceError::invalid_field(
            "page_size",
            "must not be negative",
        )),
        0 => Ok(50),
        n => Ok((n as u64).min(1000)),
    }
}

/// Fetches one more row than the page needs to know whether another page follows.
pub(crate) fn paginate<T>(
    mut rows: Vec<T>,
    size: u64,
    id: impl Fn(&T) -> &str,
) -> (Vec<T>, String) {
    if rows.len() as u64 > size {
        rows.truncate(size as usize);
        let token = rows
            .last()
            .map(|r| encode_page_token(id(r)))
            .unwrap_or_default();
        (rows, token)
    } else {
        (rows, String::new())
    }
}
