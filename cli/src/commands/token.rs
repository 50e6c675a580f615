//! `token create|list|revoke`.

use castplane_proto::v1 as pb;

use super::Ctx;
use crate::cli::TokenCommand;
use crate::error::{CliError, Result};
use crate::json::{self, ToJson};
use crate::lookup;
use crate::output::{enum_text, fields, or_dash, render, table, time_text};

/// The principal named by exactly one of the flags; `None` when none is given.
fn principal(
    admin: bool,
    reseller: Option<String>,
    customer: Option<String>,
) -> Result<Option<(pb::PrincipalKind, String)>> {
    match (admin, reseller, customer) {
        (false, None, None) => Ok(None),
        (true, None, None) => Ok(Some((pb::PrincipalKind::Admin, String::new()))),
        (false, Some(id), None) => Ok(Some((pb::PrincipalKind::Reseller, id))),
        (false, None, Some(id)) => Ok(Some((pb::PrincipalKind::Customer, id))),
        // clap's argument group already enforces at most one.
        _ => Err(CliError::usage(
            "give exactly one of --admin, --reseller ID, --customer ID",
        )),
    }
}

pub async fn run(ctx: &Ctx, command: TokenCommand) -> Result<()> {
    let mut client = ctx.api.accounts.clone();
    match command {
        TokenCommand::Create {
            admin,
            reseller,
            customer,
            description,
        } => {
            let Some((kind, principal_id)) = principal(admin, reseller, customer)? else {
                return Err(CliError::usage(
                    "give exactly one of --admin, --reseller ID, --customer ID",
                ));
            };
            let created = client
                .create_api_token(pb::CreateApiTokenRequest {
                    principal_kind: kind as i32,
                    principal_id,
                    description,
                })
                .await?
                .into_inner();
            if !ctx.out.is_json() {
                eprintln!("The secret is shown only this once: store it now.");
            }
            // Showing the secret is this command's purpose.
            ctx.out.emit(
                || created.to_json(),
                || {
                    render(&fields(vec![
                        ("Token id", created.token_id.clone()),
                        ("Secret", created.secret.clone()),
                    ]))
                },
            )
        }
        TokenCommand::List {
            admin,
            reseller,
            customer,
        } => {
            let (kind, principal_id) = principal(admin, reseller, customer)?
                .unwrap_or((pb::PrincipalKind::Unspecified, String::new()));
            let tokens = lookup::all_pages(|page_token| {
                let mut client = ctx.api.accounts.clone();
                let request = pb::ListApiTokensRequest {
                    principal_kind: kind as i32,
                    principal_id: principal_id.clone(),
                    page_size: 100,
                    page_token,
                };
                async move {
                    let r = client.list_api_tokens(request).await?.into_inner();
                    Ok((r.api_tokens, r.next_page_token))
                }
            })
            .await?;
            ctx.out.emit(
                || json::list("api_tokens", &tokens),
                || {
                    let mut t = table(["ID", "ACCOUNT", "DESCRIPTION", "CREATED"]);
                    for token in &tokens {
                        let kind = enum_text::<pb::PrincipalKind>(token.principal_kind);
                        let account = if token.principal_id.is_empty() {
                            kind
                        } else {
                            format!("{kind} {}", token.principal_id)
                        };
                        t.add_row(vec![
                            token.id.clone(),
                            account,
                            or_dash(&token.description),
                            time_text(token.create_time.as_ref()),
                        ]);
                    }
                    render(&t)
                },
            )
        }
        TokenCommand::Revoke { id } => {
            client
                .revoke_api_token(pb::RevokeApiTokenRequest { id: id.clone() })
                .await?;
            ctx.out.emit(
                || serde_json::json!({ "revoked": id }),
                || format!("Revoked token {id}; it is refused from now on."),
            )
        }
    }
}
