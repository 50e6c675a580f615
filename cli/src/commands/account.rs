//! `login` and `whoami`.

use std::path::Path;

use castplane_proto::v1 as pb;
use serde_json::json;

use super::Ctx;
use crate::client::{self, Api};
use crate::config::{self, ConfigFile, Settings};
use crate::error::{CliError, Result};
use crate::json::ToJson;
use crate::output::{Output, enum_text, fields, or_dash, render};

async fn caller(api: &Api) -> Result<pb::Caller> {
    let mut client = api.accounts.clone();
    Ok(client
        .get_caller(pb::GetCallerRequest {})
        .await?
        .into_inner())
}

fn describe(caller: &pb::Caller) -> String {
    match pb::PrincipalKind::try_from(caller.principal_kind) {
        Ok(pb::PrincipalKind::Admin) => "the admin".to_owned(),
        _ => format!(
            "{} {:?} ({})",
            enum_text::<pb::PrincipalKind>(caller.principal_kind),
            caller.display_name,
            caller.principal_id
        ),
    }
}

/// Checks the settings with GetCaller, then saves them.
pub async fn login(settings: &Settings, path: Option<&Path>, out: Output) -> Result<()> {
    let path = path.ok_or_else(|| {
        CliError::usage("cannot tell where to save the login: set --config, CASTCTL_CONFIG or HOME")
    })?;
    if settings.token.is_none() {
        return Err(CliError::usage(
            "login needs a token: pass --token TOKEN or set CASTPLANE_TOKEN",
        ));
    }
    let api = client::connect(settings).await?;
    let caller = caller(&api).await?;
    // Saved absolute, so later commands run from any directory find it.
    let ca_cert = match &settings.ca_cert {
        Some(p) => Some(
            std::fs::canonicalize(p)
                .map_err(|err| CliError::failed(format!("{}: {err}", p.display())))?,
        ),
        None => None,
    };
    let file = ConfigFile {
        endpoint: Some(settings.endpoint.clone()),
        token: settings.token.clone(),
        ca_cert,
    };
    config::save(path, &file)?;
    out.emit(
        || {
            json!({
                "endpoint": settings.endpoint,
                "config": path.display().to_string(),
                "caller": caller.to_json(),
            })
        },
        || {
            format!(
                "Logged in to {} as {}.\nSaved to {}.",
                settings.endpoint,
                describe(&caller),
                path.display()
            )
        },
    )
}

pub async fn whoami(ctx: &Ctx, endpoint: &str) -> Result<()> {
    let caller = caller(&ctx.api).await?;
    ctx.out.emit(
        || caller.to_json(),
        || {
            render(&fields(vec![
                ("Endpoint", endpoint.to_owned()),
                (
                    "Kind",
                    enum_text::<pb::PrincipalKind>(caller.principal_kind),
                ),
                ("Id", or_dash(&caller.principal_id)),
                ("Name", caller.display_name.clone()),
            ]))
        },
    )
}
