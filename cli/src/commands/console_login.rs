//! `console-login set|get|delete`: the email and password an account signs in to the browser
//! console with. The password comes from standard input so it never shows in the process list.

use castplane_proto::v1 as pb;
use serde_json::json;

use super::Ctx;
use crate::cli::{ConsoleLoginCommand, LoginAccount};
use crate::error::{CliError, Result};
use crate::output::{fields, render, time_text};

fn account(account: LoginAccount) -> Result<(pb::PrincipalKind, String)> {
    match (account.admin, account.reseller, account.customer) {
        (true, None, None) => Ok((pb::PrincipalKind::Admin, String::new())),
        (false, Some(id), None) => Ok((pb::PrincipalKind::Reseller, id)),
        (false, None, Some(id)) => Ok((pb::PrincipalKind::Customer, id)),
        // clap's argument group already enforces exactly one.
        _ => Err(CliError::usage(
            "give exactly one of --admin, --reseller ID, --customer ID",
        )),
    }
}

fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::usage(format!("reading the password from standard input: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(CliError::usage(
            "no password on standard input (e.g. `printf '%s\\n' \"$PASSWORD\" | castctl console-login set … --password-stdin`)",
        ));
    }
    Ok(password)
}

fn show(ctx: &Ctx, login: &pb::Login) -> Result<()> {
    let locked = login.lock_expire_time.as_ref();
    ctx.out.emit(
        || {
            json!({
                "email": login.email,
                "principal_id": login.principal_id,
                "locked_until": locked.map(|t| t.to_string()),
                "password_update_time": login.password_update_time.map(|t| t.to_string()),
            })
        },
        || {
            render(&fields(vec![
                ("Email", login.email.clone()),
                (
                    "Locked until",
                    locked.map_or_else(|| "not locked".to_owned(), |t| time_text(Some(t))),
                ),
                (
                    "Password set",
                    time_text(login.password_update_time.as_ref()),
                ),
            ]))
        },
    )
}

pub async fn run(ctx: &Ctx, command: ConsoleLoginCommand) -> Result<()> {
    let mut client = ctx.api.logins.clone();
    match command {
        ConsoleLoginCommand::Set {
            account: who,
            email,
            password_stdin: _,
        } => {
            let (kind, principal_id) = account(who)?;
            let password = read_password()?;
            let login = client
                .set_login(pb::SetLoginRequest {
                    principal_kind: kind as i32,
                    principal_id,
                    email,
                    password,
                })
                .await?
                .into_inner();
            show(ctx, &login)
        }
        ConsoleLoginCommand::Get { account: who } => {
            let (kind, principal_id) = account(who)?;
            let login = client
                .get_login(pb::GetLoginRequest {
                    principal_kind: kind as i32,
                    principal_id,
                })
                .await?
                .into_inner();
            show(ctx, &login)
        }
        ConsoleLoginCommand::Delete { account: who } => {
            let (kind, principal_id) = account(who)?;
            client
                .delete_login(pb::DeleteLoginRequest {
                    principal_kind: kind as i32,
                    principal_id,
                })
                .await?;
            ctx.out.emit(
                || json!({ "deleted": true }),
                || "Login removed.".to_owned(),
            )
        }
    }
}
