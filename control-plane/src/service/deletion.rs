//! Deleting accounts (customers, resellers), API tokens and nodes (DESIGN: Deleting accounts
//! and nodes).
//!
//! An account with services is deleted in two steps. The forced call records the intent on
//! the account's row (`delete_request_time`) and queues its services' deletes; the account
//! goes when the last of them has succeeded. Both steps live in the database, so whichever
//! replica records the last delete — or the sweep on any replica, after a restart or a lost
//! wake-up — finishes it: [`ControlPlane::finish_account_deletions`]. A delete that fails
//! leaves the account waiting (and its service operable); repeating the forced call queues
//! the deletes still missing.
//!
//! A deleted account stays as a tombstone row (deleted services name it), invisible to every
//! read; its logins, console sessions and API tokens are removed with it, and every replica's
//! token cache is cleared in the same commit.

use crate::persistence::Tx;

use super::{
    Changes, ControlPlane, Result, can_see_customer, page_size, require_admin, require_manager,
};
use crate::clock::now_millis;
use crate::domain::{ActionKind, Principal, ServiceKind};
use crate::error::ServiceError;
use crate::persistence::entities::{api_token, customer, media_service};
use crate::persistence::{
    accounts as account_db, logins as login_db, nodes as node_db, services as service_db,
};

use super::actions::ActionRecord;

/// How far a deletion may go.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeleteOptions {
    /// Queue the deletes of the account's services instead of refusing.
    pub force: bool,
    /// Video services among them destroy their files: this must be set.
    pub confirm_permanent_deletion: bool,
    /// Dry run: the plan only.
    pub validate_only: bool,
}

/// What deleting an account takes with it.
#[derive(Clone, Debug, Default)]
pub struct AccountDeletionPlan {
    pub accounts: Vec<String>,
    pub media_service_ids: Vec<String>,
    pub destroyed: Vec<String>,
    pub kept: Vec<String>,
    pub requires_confirmation: bool,
}

/// The answer to a deletion: its plan, the deletes it queued, and whether the account is gone.
#[derive(Clone, Debug, Default)]
pub struct AccountDeletion {
    pub plan: AccountDeletionPlan,
    pub actions: Vec<ActionRecord>,
    pub deleted: bool,
}

/// At most this many services are named in a refusal; the rest are counted.
const NAMED_IN_REFUSAL: usize = 20;

pub(crate) fn account_being_deleted(customer: &customer::Model) -> ServiceError {
    ServiceError::precondition(
        "ACCOUNT_DELETING",
        format!("customer:{}", customer.id),
        format!(
            "customer {} is being deleted: it waits for its services' deletes and takes no new services",
            customer.id
        ),
    )
}

/// "name (id), name (id) and 3 more".
fn name_services(services: &[media_service::Model]) -> String {
    let mut named: Vec<String> = services
        .iter()
        .take(NAMED_IN_REFUSAL)
        .map(|s| format!("{} ({})", s.name, s.id))
        .collect();
    if services.len() > NAMED_IN_REFUSAL {
        named.push(format!("{} more", services.len() - NAMED_IN_REFUSAL));
    }
    named.join(", ")
}

fn is_video(service: &media_service::Model) -> bool {
    service.service_type.kind() == ServiceKind::Video
}

fn plan_for(
    customers: &[customer::Model],
    services: &[media_service::Model],
) -> AccountDeletionPlan {
    let mut destroyed = Vec::new();
    for service in services {
        destroyed.push(if is_video(service) {
            format!(
                "media service {} ({}) with all its uploaded video files and HLS output (permanently)",
                service.name, service.id
            )
        } else {
            format!(
                "media service {} ({}): its process, configuration, logs, ports and quota",
                service.name, service.id
            )
        });
    }
    for customer in customers {
        destroyed.push(format!(
            "the media library (all uploaded tracks) of customer {}",
            customer.id
        ));
        destroyed.push(format!(
            "the console login, sessions and API tokens of customer {}",
            customer.id
        ));
    }
    AccountDeletionPlan {
        accounts: customers.iter().map(|c| c.id.clone()).collect(),
        media_service_ids: services.iter().map(|s| s.id.clone()).collect(),
        destroyed,
        kept: vec![
            "the deleted services' records, readable by id, with their action and ownership history"
                .to_owned(),
        ],
        requires_confirmation: services.iter().any(is_video),
    }
}

/// The refusals every account deletion shares: services left without `force`, video without
/// the confirmation.
fn check_options(
    subject: &str,
    services: &[media_service::Model],
    options: DeleteOptions,
) -> Result<()> {
    if !services.is_empty() && !options.force {
        return Err(ServiceError::precondition(
            "HAS_MEDIA_SERVICES",
            subject.to_owned(),
            format!(
                "{subject} still has media services: {}; delete them first, or repeat with force to queue their deletes (validate_only shows the plan)",
                name_services(services)
            ),
        ));
    }
    let videos: Vec<media_service::Model> =
        services.iter().filter(|s| is_video(s)).cloned().collect();
    if !videos.is_empty() && !options.confirm_permanent_deletion {
        return Err(ServiceError::precondition(
            "PERMANENT_DELETION_UNCONFIRMED",
            subject.to_owned(),
            format!(
                "deleting {subject} permanently destroys the uploaded video files and HLS output of {}; repeat with confirm_permanent_deletion to proceed",
                name_services(&videos)
            ),
        ));
    }
    Ok(())
}

/// Whether `principal` may see (and so manage) the tokens of `kind`/`id`.
async fn may_manage_tokens_of(
    control_plane: &ControlPlane,
    principal: &Principal,
    kind: &str,
    id: &str,
) -> Result<bool> {
    Ok(match (principal, kind) {
        (Principal::Admin, "admin") => true,
        (Principal::Admin, "reseller") => {
            account_db::get_reseller(control_plane.reader(), id, false)
                .await?
                .is_some()
        }
        (Principal::Reseller { id: own }, "reseller") => own == id,
        (Principal::Admin | Principal::Reseller { .. }, "customer") => {
            account_db::get_customer(control_plane.reader(), id, false)
                .await?
                .is_some_and(|c| can_see_customer(principal, &c))
        }
        (Principal::Customer { id: own, .. }, "customer") => own == id,
        _ => false,
    })
}

impl ControlPlane {
    /// Deletes a sub-account (a reseller its own, the admin any); see the module comment.
    pub async fn delete_customer(
        &self,
        principal: &Principal,
        id: &str,
        options: DeleteOptions,
        trace_context: &str,
    ) -> Result<AccountDeletion> {
        require_manager(principal, "delete customers")?;
        let customer = account_db::get_customer(self.reader(), id, false)
            .await?
            .filter(|c| can_see_customer(principal, c))
            .ok_or_else(|| ServiceError::NotFound(format!("customer {id:?} not found")))?;
        if customer.is_primary {
            return Err(ServiceError::precondition(
                "PRIMARY_ACCOUNT",
                format!("customer:{id}"),
                format!(
                    "customer {id} is the primary account of reseller {}: it is deleted only with the reseller (DeleteReseller)",
                    customer.reseller_id
                ),
            ));
        }
        let customers = vec![customer];
        let services =
            service_db::live_services_of_customers(self.reader(), &[id.to_owned()]).await?;
        let plan = plan_for(&customers, &services);
        if options.validate_only {
            return Ok(AccountDeletion {
                plan,
                ..Default::default()
            });
        }
        check_options(&format!("customer {id}"), &services, options)?;
        let txn = self.begin().await?;
        account_db::request_customer_deletion(&txn, id, now_millis()).await?;
        txn.commit().await?;
        tracing::info!(customer_id = %id, services = services.len(), by = %principal.audit_name(), "customer deletion requested");
        self.queue_account_deletes(principal, plan, &services, trace_context)
            .await
    }

    /// Deletes a reseller with its primary account and every sub-account (admin only).
    pub async fn delete_reseller(
        &self,
        principal: &Principal,
        id: &str,
        options: DeleteOptions,
        trace_context: &str,
    ) -> Result<AccountDeletion> {
        require_admin(principal, "delete resellers")?;
        account_db::get_reseller(self.reader(), id, false)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("reseller {id:?} not found")))?;
        let customers = account_db::customers_of(self.reader(), id).await?;
        let customer_ids: Vec<String> = customers.iter().map(|c| c.id.clone()).collect();
        let services = service_db::live_services_of_customers(self.reader(), &customer_ids).await?;
        let mut plan = plan_for(&customers, &services);
        plan.accounts.insert(0, id.to_owned());
        plan.destroyed
            .push(format!("the console login and API tokens of reseller {id}"));
        if options.validate_only {
            return Ok(AccountDeletion {
                plan,
                ..Default::default()
            });
        }
        check_options(&format!("reseller {id}"), &services, options)?;
        let now = now_millis();
        let txn = self.begin().await?;
        // The reseller first: from here on it takes no new customers.
        account_db::request_reseller_deletion(&txn, id, now).await?;
        for customer in &customer_ids {
            account_db::request_customer_deletion(&txn, customer, now).await?;
        }
        txn.commit().await?;
        tracing::info!(reseller_id = %id, customers = customers.len(), services = services.len(), "reseller deletion requested");
        self.queue_account_deletes(principal, plan, &services, trace_context)
            .await
    }

    /// Queues the delete of every service not already being deleted, then finishes whatever
    /// can be finished now (an account without services goes at once).
    async fn queue_account_deletes(
        &self,
        principal: &Principal,
        plan: AccountDeletionPlan,
        services: &[media_service::Model],
        trace_context: &str,
    ) -> Result<AccountDeletion> {
        let mut actions = Vec::new();
        for service in services.iter().filter(|s| !s.deleting) {
            match self
                .enqueue_action(principal, &service.id, ActionKind::Delete, trace_context)
                .await
            {
                Ok(record) => actions.push(record),
                // Queued meanwhile by someone else, or already gone: either way on its way.
                Err(ServiceError::FailedPrecondition { .. } | ServiceError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let finished = self.finish_account_deletions_of(&plan.accounts).await?;
        let deleted = plan.accounts.iter().all(|a| finished.contains(a));
        Ok(AccountDeletion {
            plan,
            actions,
            deleted,
        })
    }

    /// Finishes every waiting account deletion whose services are all deleted; run by the
    /// sweep on every replica and after each succeeded delete. Returns the accounts deleted.
    pub(crate) async fn finish_account_deletions(&self) -> Result<Vec<String>> {
        let pending = account_db::pending_customer_deletions(self.reader(), 100).await?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = pending.into_iter().map(|c| c.id).collect();
        self.finish_account_deletions_of(&ids).await
    }

    /// Finishes the deletion of these customers (and of their resellers, when waiting and
    /// left without customers) if nothing of theirs is still live.
    async fn finish_account_deletions_of(&self, account_ids: &[String]) -> Result<Vec<String>> {
        let mut finished = Vec::new();
        for id in account_ids {
            if let Some(mut gone) = self.finish_customer_deletion(id).await? {
                finished.append(&mut gone);
            }
        }
        Ok(finished)
    }

    async fn finish_customer_deletion(&self, customer_id: &str) -> Result<Option<Vec<String>>> {
        let txn = self.begin().await?;
        let Some(customer) = account_db::get_customer(&txn, customer_id, true).await? else {
            return Ok(None);
        };
        if customer.delete_request_time.is_none() {
            return Ok(None);
        }
        let live = service_db::live_services_of_customers(&txn, std::slice::from_ref(&customer.id))
            .await?;
        if !live.is_empty() {
            return Ok(None);
        }
        let now = now_millis();
        let mut changes = Changes {
            tokens: true,
            ..Default::default()
        };
        // DESIGN: deleting a customer permanently deletes its media library — from the store
        // and, through the node versions it bumps, from every node.
        self.delete_customer_media(&txn, &customer.id, &mut changes)
            .await?;
        remove_credentials(&txn, "customer", &customer.id).await?;
        account_db::mark_customer_deleted(&txn, &customer.id, now).await?;
        let mut gone = vec![customer.id.clone()];
        let reseller = account_db::get_reseller(&txn, &customer.reseller_id, true).await?;
        if let Some(reseller) = reseller.filter(|r| r.delete_request_time.is_some())
            && account_db::customers_of(&txn, &reseller.id)
                .await?
                .is_empty()
        {
            remove_credentials(&txn, "reseller", &reseller.id).await?;
            account_db::mark_reseller_deleted(&txn, &reseller.id, now).await?;
            gone.push(reseller.id.clone());
        }
        self.commit(txn, changes).await?;
        for account in &gone {
            tracing::info!(account_id = %account, "account deleted");
        }
        Ok(Some(gone))
    }

    // -----------------------------------------------------------------------------------------
    // API tokens

    /// The tokens of `target` (the caller when `None`), never their secrets.
    pub async fn list_api_tokens(
        &self,
        principal: &Principal,
        target: Option<Principal>,
        page_token: &str,
        requested_size: i32,
    ) -> Result<(Vec<api_token::Model>, String)> {
        let target = target.unwrap_or_else(|| principal.clone());
        let (kind, id) = target.stored_key();
        if !may_manage_tokens_of(self, principal, kind, id).await? {
            return Err(match target {
                Principal::Admin => {
                    ServiceError::PermissionDenied("only the admin can list admin tokens".into())
                }
                Principal::Reseller { id } => {
                    ServiceError::NotFound(format!("reseller {id:?} not found"))
                }
                Principal::Customer { id, .. } => {
                    ServiceError::NotFound(format!("customer {id:?} not found"))
                }
            });
        }
        let size = page_size(requested_size)?;
        let listing = format!("api_tokens|{}|{kind}|{id}", principal.audit_name());
        let after = self.page_after(&listing, page_token)?;
        let rows =
            account_db::list_tokens(self.reader(), kind, id, after.as_deref(), size + 1).await?;
        Ok(self.paginate(&listing, rows, size, |t| &t.id))
    }

    /// Revokes a token. Its cache entries go on every replica in the same commit, so it is
    /// refused everywhere once this returns. The admin's last token is kept: without it
    /// nobody could administer the cluster.
    pub async fn revoke_api_token(&self, principal: &Principal, id: &str) -> Result<()> {
        let not_found = || ServiceError::NotFound(format!("API token {id:?} not found"));
        let token = account_db::get_token(self.reader(), id)
            .await?
            .ok_or_else(not_found)?;
        if !may_manage_tokens_of(self, principal, &token.principal_kind, &token.principal_id)
            .await?
        {
            return Err(not_found());
        }
        let txn = self.begin().await?;
        if token.principal_kind == "admin"
            && account_db::count_tokens(&txn, "admin", "").await? <= 1
        {
            return Err(ServiceError::precondition(
                "LAST_ADMIN_TOKEN",
                format!("api_token:{id}"),
                "this is the admin's last API token; create another before revoking it",
            ));
        }
        if !account_db::delete_token(&txn, id).await? {
            return Err(not_found());
        }
        let changes = Changes {
            tokens: true,
            ..Default::default()
        };
        self.commit(txn, changes).await?;
        tracing::info!(token_id = %id, by = %principal.audit_name(), "API token revoked");
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Nodes

    /// Removes a node with nothing placed on it; its agent's identity is revoked and its
    /// session (on whichever replica) ends.
    pub async fn delete_node(&self, principal: &Principal, id: &str) -> Result<()> {
        require_admin(principal, "delete nodes")?;
        let txn = self.begin().await?;
        node_db::get_node(&txn, id, true)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("node {id:?} not found")))?;
        let placed =
            service_db::live_services_on_node(&txn, id, NAMED_IN_REFUSAL as u64 + 1).await?;
        if !placed.is_empty() {
            let mut named = name_services(&placed[..placed.len().min(NAMED_IN_REFUSAL)]);
            if placed.len() > NAMED_IN_REFUSAL {
                named.push_str(" and more");
            }
            return Err(ServiceError::precondition(
                "NODE_HAS_MEDIA_SERVICES",
                format!("node:{id}"),
                format!(
                    "node {id} still has media services placed on it: {named}; delete them (or wait for their deletes to finish) first — a node is never drained silently"
                ),
            ));
        }
        node_db::mark_deleted(&txn, id, now_millis()).await?;
        let mut changes = Changes::default();
        // Wakes the node's session wherever it is: it finds the node gone and closes.
        changes.nodes.insert(id.to_owned());
        self.commit(txn, changes).await?;
        tracing::info!(node_id = %id, by = %principal.audit_name(), "node deleted");
        Ok(())
    }
}

/// Removes an account's API tokens, login and console sessions.
async fn remove_credentials(txn: &Tx, kind: &str, id: &str) -> Result<()> {
    account_db::delete_tokens_of(txn, kind, id).await?;
    if let Some(login) = login_db::find_login_of(txn, kind, id).await? {
        login_db::delete_login(txn, &login.id).await?;
    }
    Ok(())
}
