//! `token create`.

use castplane_proto::v1 as pb;

use super::Ctx;
use crate::cli::TokenCommand;
use crate::error::{CliError, Result};
use crate::json::ToJson;
use crate::output::{fields, render};

pub async fn run(ctx: &Ctx, command: TokenCommand) -> Result<()> {
    let TokenCommand::Create {
        admin,
        reseller,
        customer,
        description,
    } = command;
    let (kind, principal_id) = match (admin, reseller, customer) {
        (true, None, None) => (pb::PrincipalKind::Admin, String::new()),
        (false, Some(id), None) => (pb::PrincipalKind::Reseller, id),
        (false, None, Some(id)) => (pb::PrincipalKind::Customer, id),
        // clap's argument group already enforces exactly one.
        _ => {
            return Err(CliError::usage(
                "give exactly one of --admin, --reseller ID, --customer ID",
            ));
        }
    };
    let mut client = ctx.api.accounts.clone();
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
