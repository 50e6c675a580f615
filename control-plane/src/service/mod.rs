//! The service layer: every product rule lives here. gRPC handlers convert requests into the
//! domain inputs below, call one method, and convert the result.

mod accounts;
mod actions;
pub mod agents;
mod deletion;
pub mod dispatch;
pub mod library;
mod media;
mod nodes;
pub mod page_tokens;
mod probe;
mod sessions;
mod tokens;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use accounts::{CallerView, CustomerPatch, NewCustomer, NewReseller, ResellerPatch, limits_of};
pub use actions::ActionRecord;
pub use deletion::{AccountDeletion, AccountDeletionPlan, DeleteOptions};
pub use dispatch::{DispatchConfig, Hello};
pub use media::{DeletionPlan, MediaServicePatch, MediaServiceView, NewMediaService, ServiceScope};
pub use nodes::{Capability, MAX_JOIN_TOKEN_TTL, NewNode, NodeCapabilities, NodeView};
pub use sessions::{Credential, SESSION_TOKEN_PREFIX, SessionGrant};

use crate::blobs::{BlobStore, DatabaseBlobStore};
use crate::domain::Principal;
use crate::error::ServiceError;
use crate::persistence::entities::{customer, media_service};
use crate::persistence::notify::{self, NoticeKind, Received};
use crate::persistence::{Connection, Persistence, Tx, retry_aborted};
use crate::pki::CertificateAuthority;
use dispatch::Dispatcher;
use dispatch::hub::{ActionDelta, ActionHub};
use tokens::TokenCache;

/// The stored records the service layer hands out, by their domain names: rows whose columns
/// are typed (enums, sets and JSON decoded on load), so a row that does not decode is an error
/// rather than a default.
pub mod records {
    pub use crate::persistence::entities::api_token::Model as ApiToken;
    pub use crate::persistence::entities::customer::Model as Customer;
    pub use crate::persistence::entities::login::Model as Login;
    pub use crate::persistence::entities::media_track::Model as MediaTrack;
    pub use crate::persistence::entities::node::Model as Node;
    pub use crate::persistence::entities::ownership_change::Model as OwnershipChange;
    pub use crate::persistence::entities::reseller::Model as Reseller;
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub join_token_ttl: Duration,
    pub agent_certificate_validity: Duration,
    /// Sessions, heart-beats, deadlines and leases.
    pub dispatch: DispatchConfig,
    /// A console session unused for this long ends.
    pub session_idle_timeout: Duration,
    /// A console session ends this long after sign-in, however much it is used.
    pub session_lifetime: Duration,
    /// Where uploads are spooled (private temporary files) while they are hashed and probed;
    /// empty: `DATA_DIR/spool`.
    pub upload_spool_dir: std::path::PathBuf,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            join_token_ttl: Duration::from_secs(3600),
            agent_certificate_validity: Duration::from_secs(30 * 24 * 3600),
            dispatch: DispatchConfig::default(),
            session_idle_timeout: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 3600),
            upload_spool_dir: std::path::PathBuf::new(),
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
    page_tokens: page_tokens::PageTokens,
    /// Cancelled when the server shuts down; long-lived streams end on it.
    shutdown: CancellationToken,
    dispatcher: Dispatcher,
    hub: ActionHub,
    tokens: TokenCache,
    owner_epoch: std::sync::atomic::AtomicU64,
    /// Uploaded files' bytes (see `crate::blobs`).
    blobs: Arc<dyn BlobStore>,
}

/// What a transaction changed that someone may be waiting on: published to this replica once
/// it commits, and to the others through the database (see `persistence::notify`).
#[derive(Default)]
pub(crate) struct Changes {
    /// Nodes that have new actions queued.
    pub queued: BTreeSet<String>,
    /// Nodes whose services changed (their version was bumped).
    pub nodes: BTreeSet<String>,
    /// Actions changed here, as written.
    pub actions: Vec<ActionDelta>,
    /// API tokens revoked, or principals removed.
    pub tokens: bool,
    /// Services that changed hands.
    pub owners: Vec<String>,
}

impl ControlPlane {
    pub fn new(
        persistence: Persistence,
        config: ServiceConfig,
        ca: CertificateAuthority,
        page_tokens: page_tokens::PageTokens,
        shutdown: CancellationToken,
        metrics: crate::metrics::DispatchMetrics,
    ) -> Self {
        let blobs: Arc<dyn BlobStore> = Arc::new(DatabaseBlobStore::new(
            persistence.db().clone(),
            persistence.reader().clone(),
        ));
        let dispatcher =
            Dispatcher::new(crate::ids::new_id("rep"), config.dispatch.clone(), metrics);
        ControlPlane {
            inner: Arc::new(Inner {
                persistence,
                config,
                ca,
                page_tokens,
                shutdown,
                dispatcher,
                hub: ActionHub::default(),
                tokens: TokenCache::default(),
                owner_epoch: std::sync::atomic::AtomicU64::new(0),
                blobs,
            }),
        }
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub fn persistence(&self) -> &Persistence {
        &self.inner.persistence
    }

    fn db(&self) -> &Connection {
        self.inner.persistence.db()
    }

    async fn begin(&self) -> Result<Tx> {
        Ok(self.inner.persistence.begin().await?)
    }

    /// For reads outside a transaction.
    fn reader(&self) -> &Connection {
        self.inner.persistence.reader()
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    pub(crate) fn dispatch_config(&self) -> &DispatchConfig {
        &self.inner.config.dispatch
    }

    pub fn blobs(&self) -> &dyn BlobStore {
        self.inner.blobs.as_ref()
    }

    pub fn ca(&self) -> &CertificateAuthority {
        &self.inner.ca
    }

    pub(crate) fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    pub(crate) fn hub(&self) -> &ActionHub {
        &self.inner.hub
    }

    pub(crate) fn replica_id(&self) -> &str {
        self.inner.dispatcher.replica_id()
    }

    /// Adds `changes` to `txn` as notices for other replicas, commits, and publishes them here.
    pub(crate) async fn commit(&self, txn: Tx, changes: Changes) -> Result<()> {
        let origin = self.replica_id();
        let queued: Vec<String> = changes.queued.iter().cloned().collect();
        let nodes: Vec<String> = changes.nodes.iter().cloned().collect();
        let actions: Vec<String> = changes
            .actions
            .iter()
            .map(|d| d.action.id.clone())
            .collect();
        if !queued.is_empty() {
            notify::send(&txn, origin, NoticeKind::ActionsQueued, &queued).await?;
        }
        if !nodes.is_empty() {
            notify::send(&txn, origin, NoticeKind::NodesChanged, &nodes).await?;
        }
        if !actions.is_empty() {
            notify::send(&txn, origin, NoticeKind::ActionsChanged, &actions).await?;
        }
        if changes.tokens {
            notify::send(&txn, origin, NoticeKind::TokensChanged, &[]).await?;
        }
        if !changes.owners.is_empty() {
            notify::send(&txn, origin, NoticeKind::OwnersChanged, &changes.owners).await?;
        }
        txn.commit().await?;
        self.publish(changes);
        Ok(())
    }

    fn publish(&self, changes: Changes) {
        let dispatcher = self.dispatcher();
        for node in &changes.queued {
            dispatcher.wake(node, dispatch::ACTIONS_QUEUED);
        }
        for node in &changes.nodes {
            dispatcher.wake(node, dispatch::SPECS_CHANGED);
        }
        self.hub().apply(&changes.actions);
        if changes.tokens {
            self.inner.tokens.clear();
        }
        if !changes.owners.is_empty() {
            self.owners_changed();
        }
    }

    /// Waits until the dispatcher's sessions and background work have ended (after shutdown).
    pub async fn dispatcher_drained(&self) {
        self.dispatcher().drained().await;
    }

    /// Bumped whenever a service changes hands, here or on another replica.
    pub(crate) fn owner_epoch(&self) -> u64 {
        self.inner
            .owner_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn owners_changed(&self) {
        self.inner
            .owner_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Applies what another replica changed.
    async fn received(&self, received: Received) {
        let dispatcher = self.dispatcher();
        let notice = match received {
            Received::Notice(notice) => notice,
            Received::Resync => {
                dispatcher.wake_all();
                self.inner.tokens.clear();
                self.owners_changed();
                let watched = self.hub().all_watched();
                self.refresh_actions(&watched).await;
                return;
            }
        };
        match notice.kind {
            NoticeKind::ActionsQueued => {
                for node in &notice.ids {
                    dispatcher.wake(node, dispatch::ACTIONS_QUEUED);
                }
            }
            NoticeKind::NodesChanged => {
                for node in &notice.ids {
                    dispatcher.wake(node, dispatch::SPECS_CHANGED);
                }
            }
            NoticeKind::ActionsChanged => {
                let watched = self.hub().watched(&notice.ids);
                self.refresh_actions(&watched).await;
            }
            NoticeKind::TokensChanged => self.inner.tokens.clear(),
            NoticeKind::OwnersChanged => self.owners_changed(),
        }
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
    can_see_owner(principal, &service.reseller_id, &service.customer_id)
}

/// Whether the caller may see what belongs to this reseller's customer.
fn can_see_owner(principal: &Principal, reseller_id: &str, customer_id: &str) -> bool {
    match principal {
        Principal::Admin => true,
        Principal::Reseller { id } => reseller_id == id,
        Principal::Customer { id, .. } => customer_id == id,
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

impl ControlPlane {
    /// Where a listing continues: `None` for its first page. `listing` names the listing, the
    /// caller and its filters; a token issued for any other is refused.
    pub(crate) fn page_after(&self, listing: &str, token: &str) -> Result<Option<String>> {
        self.inner.page_tokens.decode(listing, token)
    }

    /// Cuts `rows` (one more than `size` was fetched, to know whether another page follows)
    /// to a page and the token of the next one.
    pub(crate) fn paginate<T>(
        &self,
        listing: &str,
        mut rows: Vec<T>,
        size: u64,
        id: impl Fn(&T) -> &str,
    ) -> (Vec<T>, String) {
        if rows.len() as u64 > size {
            rows.truncate(size as usize);
            let token = rows
                .last()
                .map(|r| self.inner.page_tokens.encode(listing, id(r)))
                .unwrap_or_default();
            (rows, token)
        } else {
            (rows, String::new())
        }
    }
}
