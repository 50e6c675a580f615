//! `customer create|list|get|update|choices|delete`.

use castplane_proto::v1 as pb;
use prost_types::FieldMask;

use super::Ctx;
use crate::cli::{AccountDeleteArgs, CustomerCommand};
use crate::error::{CliError, Result};
use crate::json::{self, ToJson};
use crate::lookup;
use crate::output::{enum_text, fields, or_dash, render, table, time_text};

pub async fn run(ctx: &Ctx, command: CustomerCommand) -> Result<()> {
    let mut client = ctx.api.accounts.clone();
    match command {
        CustomerCommand::Create {
            name,
            email,
            reseller,
        } => {
            let customer = pb::Customer {
                reseller_id: reseller.unwrap_or_default(),
                display_name: name,
                email: email.unwrap_or_default(),
                ..Default::default()
            };
            let created = client
                .create_customer(pb::CreateCustomerRequest {
                    customer: Some(customer),
                })
                .await?
                .into_inner();
            show(ctx, &created)
        }
        CustomerCommand::List(filter) => {
            let customers =
                lookup::list_customers(&ctx.api, filter.reseller.unwrap_or_default()).await?;
            let names = if ctx.out.is_json() {
                lookup::Names::default()
            } else {
                lookup::Names::default().resellers(&ctx.api).await
            };
            ctx.out.emit(
                || json::list("customers", &customers),
                || {
                    let mut t = table(["ID", "NAME", "EMAIL", "KIND", "RESELLER"]);
                    for c in &customers {
                        t.add_row(vec![
                            c.id.clone(),
                            c.display_name.clone(),
                            or_dash(&c.email),
                            enum_text::<pb::CustomerKind>(c.kind),
                            names.of(&c.reseller_id),
                        ]);
                    }
                    render(&t)
                },
            )
        }
        CustomerCommand::Get { id } => {
            let customer = client
                .get_customer(pb::GetCustomerRequest { id })
                .await?
                .into_inner();
            show(ctx, &customer)
        }
        CustomerCommand::Update { id, name, email } => {
            let mut paths = Vec::new();
            let mut customer = pb::Customer {
                id,
                ..Default::default()
            };
            if let Some(name) = name {
                customer.display_name = name;
                paths.push("display_name".to_owned());
            }
            if let Some(email) = email {
                customer.email = email;
                paths.push("email".to_owned());
            }
            if paths.is_empty() {
                return Err(CliError::usage("nothing to change: give --name or --email"));
            }
            let updated = client
                .update_customer(pb::UpdateCustomerRequest {
                    customer: Some(customer),
                    update_mask: Some(FieldMask { paths }),
                })
                .await?
                .into_inner();
            show(ctx, &updated)
        }
        CustomerCommand::Choices(filter) => {
            let choices = client
                .list_customer_choices(pb::ListCustomerChoicesRequest {
                    reseller_id: filter.reseller.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .choices;
            // Printed in the server's order: it is the wizard's a–z order.
            ctx.out.emit(
                || json::list("choices", &choices),
                || {
                    let mut t = table(["NAME", "ACCOUNT", "ID"]);
                    for c in &choices {
                        t.add_row(vec![
                            c.display_name.clone(),
                            c.label.clone(),
                            c.customer_id.clone(),
                        ]);
                    }
                    render(&t)
                },
            )
        }
        CustomerCommand::Delete { id, options } => {
            let response = client
                .delete_customer(pb::DeleteCustomerRequest {
                    id: id.clone(),
                    force: options.force,
                    confirm_permanent_deletion: options.confirm_permanent_deletion,
                    validate_only: options.dry_run,
                })
                .await?
                .into_inner();
            account_deletion(ctx, &id, &options, &response)
        }
    }
}

/// Prints what an account deletion did (or, on a dry run, would do).
pub(super) fn account_deletion(
    ctx: &Ctx,
    id: &str,
    options: &AccountDeleteArgs,
    response: &pb::DeleteAccountResponse,
) -> Result<()> {
    ctx.out.emit(
        || response.to_json(),
        || {
            let plan = response.plan.clone().unwrap_or_default();
            let mut text = if options.dry_run {
                format!("Dry run for {id}: nothing was changed.\nWould delete:")
            } else {
                "Deletes:".to_owned()
            };
            for item in &plan.destroyed {
                text.push_str(&format!("\n  - {item}"));
            }
            text.push_str("\nKept:");
            for item in &plan.kept {
                text.push_str(&format!("\n  - {item}"));
            }
            if options.dry_run {
                if plan.requires_confirmation {
                    text.push_str("\nA video service is among them: --force needs --confirm-permanent-deletion.");
                }
            } else if response.deleted {
                text.push_str(&format!("\nDeleted {id}."));
            } else {
                text.push_str(&format!(
                    "\nQueued {} service deletes; {id} is deleted once they have all succeeded (follow them with `castctl action watch ID`):",
                    response.actions.len()
                ));
                for action in &response.actions {
                    text.push_str(&format!("\n  {} {}", action.id, action.media_service_id));
                }
            }
            text
        },
    )
}

fn show(ctx: &Ctx, c: &pb::Customer) -> Result<()> {
    ctx.out.emit(
        || c.to_json(),
        || {
            render(&fields(vec![
                ("Id", c.id.clone()),
                ("Name", c.display_name.clone()),
                ("Email", or_dash(&c.email)),
                ("Kind", enum_text::<pb::CustomerKind>(c.kind)),
                ("Reseller", c.reseller_id.clone()),
                ("Created", time_text(c.create_time.as_ref())),
                ("Updated", time_text(c.update_time.as_ref())),
            ]))
        },
    )
}
