//! The control plane's configuration file (TOML) and command-line flags.
//!
//! Flags override the file. Unknown keys are errors, and every problem is reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::server::{Config, TlsFiles};
use crate::service::ServiceConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub agent_listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub action_deadline_seconds: Option<u64>,
    pub join_token_ttl_seconds: Option<u64>,
    pub agent_certificate_validity_seconds: Option<u64>,
    pub heartbeat_timeout_seconds: Option<u64>,
    pub session_idle_timeout_seconds: Option<u64>,
    pub session_lifetime_seconds: Option<u64>,
    /// The console's built assets (`console/dist`), served at `/` of the public API.
    pub console_dir: Option<PathBuf>,
}

/// Everything resolved: where to listen and how to run.
#[derive(Debug)]
pub struct Resolved {
    pub config: Config,
    pub listen: SocketAddr,
    pub agent_listen: SocketAddr,
}

pub const DEFAULT_PORT: u16 = 7400;
pub const DEFAULT_AGENT_PORT: u16 = 7401;

pub fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn pick<T>(flag: Option<T>, file: Option<T>) -> Option<T> {
    flag.or(file)
}

/// Merges flags (`overrides`) over the file and checks the result, collecting every error.
pub fn resolve(file: FileConfig, overrides: FileConfig) -> Result<Resolved, Vec<String>> {
    let mut errors = Vec::new();
    let data_dir =
        pick(overrides.data_dir, file.data_dir).unwrap_or_else(|| PathBuf::from("castplane-data"));
    let listen = pick(overrides.listen, file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
    let agent_listen = pick(overrides.agent_listen, file.agent_listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_AGENT_PORT)));
    let database_url = pick(overrides.database_url, file.database_url);
    if let Some(url) = &database_url
        && !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
    {
        errors
            .push("database_url: must start with postgres://, postgresql:// or sqlite:".to_owned());
    }
    let public_tls = match (
        pick(overrides.tls_cert, file.tls_cert),
        pick(overrides.tls_key, file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => {
            errors.push("tls_cert and tls_key: give both or neither".to_owned());
            None
        }
    };
    if public_tls.is_none() && !listen.ip().is_loopback() {
        errors.push(format!(
            "listen: {listen} is not loopback, so the public API needs tls_cert and tls_key"
        ));
    }
    if listen == agent_listen {
        errors.push("agent_listen: must differ from listen".to_owned());
    }
    let defaults = ServiceConfig::default();
    let seconds =
        |name: &str, value: Option<u64>, default: Duration, errors: &mut Vec<String>| match value {
            Some(0) => {
                errors.push(format!("{name}: must be positive"));
                default
            }
            Some(n) => Duration::from_secs(n),
            None => default,
        };
    let service = ServiceConfig {
        action_deadline: seconds(
            "action_deadline_seconds",
            pick(
                overrides.action_deadline_seconds,
                file.action_deadline_seconds,
            ),
            defaults.action_deadline,
            &mut errors,
        ),
        join_token_ttl: seconds(
            "join_token_ttl_seconds",
            pick(
                overrides.join_token_ttl_seconds,
                file.join_token_ttl_seconds,
            ),
            defaults.join_token_ttl,
            &mut errors,
        ),
        agent_certificate_validity: seconds(
            "agent_certificate_validity_seconds",
            pick(
                overrides.agent_certificate_validity_seconds,
                file.agent_certificate_validity_seconds,
            ),
            defaults.agent_certificate_validity,
            &mut errors,
        ),
        heartbeat_timeout: seconds(
            "heartbeat_timeout_seconds",
            pick(
                overrides.heartbeat_timeout_seconds,
                file.heartbeat_timeout_seconds,
            ),
            defaults.heartbeat_timeout,
            &mut errors,
        ),
        heartbeat_interval: defaults.heartbeat_interval,
        session_idle_timeout: seconds(
            "session_idle_timeout_seconds",
            pick(
                overrides.session_idle_timeout_seconds,
                file.session_idle_timeout_seconds,
            ),
            defaults.session_idle_timeout,
            &mut errors,
        ),
        session_lifetime: seconds(
            "session_lifetime_seconds",
            pick(
                overrides.session_lifetime_seconds,
                file.session_lifetime_seconds,
            ),
            defaults.session_lifetime,
            &mut errors,
        ),
    };
    let console_dir = pick(overrides.console_dir, file.console_dir);
    if let Some(dir) = &console_dir
        && !dir.join("index.html").is_file()
    {
        errors.push(format!(
            "console_dir: {} has no index.html (build the console with `npm run build` in console/)",
            dir.display()
        ));
    }
    if errors.is_empty() {
        Ok(Resolved {
            config: Config {
                data_dir,
                database_url,
                public_tls,
                console_dir,
                service,
            },
            listen,
            agent_listen,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<FileConfig>("listen = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let file = FileConfig {
            listen: Some("0.0.0.0:7400".parse().unwrap()),
            tls_cert: Some("cert.pem".into()),
            action_deadline_seconds: Some(0),
            database_url: Some("mysql://x".into()),
            ..Default::default()
        };
        let errors = resolve(file, FileConfig::default()).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn flags_override_the_file() {
        let file = FileConfig {
            action_deadline_seconds: Some(30),
            ..Default::default()
        };
        let flags = FileConfig {
            action_deadline_seconds: Some(5),
            ..Default::default()
        };
        let resolved = resolve(file, flags).unwrap();
        assert_eq!(
            resolved.config.service.action_deadline,
            Duration::from_secs(5)
        );
        assert_eq!(resolved.listen.to_string(), "127.0.0.1:7400");
    }
}
