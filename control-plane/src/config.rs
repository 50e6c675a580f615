//! The control plane's configuration file (TOML) and command-line flags.
//!
//! Flags override the file. Unknown keys are errors, and every problem is reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::health::HealthConfig;
use crate::limits::ApiLimits;
use crate::server::{BootstrapToken, Config, TlsFiles};
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
    /// `/metrics` for Prometheus; off unless set.
    pub metrics_listen: Option<SocketAddr>,
    /// Plaintext `grpc.health.v1` only, for kubelet probes; off unless set.
    pub health_listen: Option<SocketAddr>,
    /// A file holding the admin token to bootstrap an empty database with.
    pub bootstrap_admin_token_file: Option<PathBuf>,
    pub request_timeout_seconds: Option<u64>,
    pub max_concurrent_requests: Option<u64>,
    pub max_streams: Option<u64>,
    pub max_streams_per_principal: Option<u64>,
    pub health_check_interval_seconds: Option<u64>,
    pub shutdown_drain_seconds: Option<u64>,
}

/// Everything resolved: where to listen and how to run.
#[derive(Debug)]
pub struct Resolved {
    pub config: Config,
    pub listen: SocketAddr,
    pub agent_listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub health_listen: Option<SocketAddr>,
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

/// Bounds of the durations, in seconds. Every one is far from where the times computed from it
/// (deadlines, expiries, certificate end dates) could overflow, and each says why in its name.
const ACTION_DEADLINE_RANGE: (u64, u64) = (1, 30 * 24 * 3600);
/// Up to five years: node certificates must end well before the internal CA does (ten).
const CERTIFICATE_VALIDITY_RANGE: (u64, u64) = (60, 5 * 365 * 24 * 3600);
const HEARTBEAT_TIMEOUT_MAX: u64 = 3600;
/// Console sessions: a minute to a week.
const SESSION_RANGE: (u64, u64) = (60, 7 * 24 * 3600);

/// A duration setting within `(min, max)` seconds; out of range is an error naming both.
fn seconds(
    errors: &mut Vec<String>,
    name: &str,
    value: Option<u64>,
    (min, max): (u64, u64),
    default: Duration,
) -> Duration {
    match value {
        None => default,
        Some(n) if (min..=max).contains(&n) => Duration::from_secs(n),
        Some(n) => {
            errors.push(format!(
                "{name}: {n} is out of range; it must be between {min} and {max} seconds"
            ));
            default
        }
    }
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
    let metrics_listen = pick(overrides.metrics_listen, file.metrics_listen);
    let health_listen = pick(overrides.health_listen, file.health_listen);
    for (name, addr) in [
        ("metrics_listen", metrics_listen),
        ("health_listen", health_listen),
    ] {
        if addr.is_some_and(|a| a == listen || a == agent_listen) {
            errors.push(format!("{name}: must differ from listen and agent_listen"));
        }
    }
    if metrics_listen.is_some() && metrics_listen == health_listen {
        errors.push("health_listen: must differ from metrics_listen".to_owned());
    }
    let bootstrap_admin_token = pick(
        overrides.bootstrap_admin_token_file,
        file.bootstrap_admin_token_file,
    )
    .and_then(|path| match read_bootstrap_token(&path) {
        Ok(token) => Some(token),
        Err(err) => {
            errors.push(format!("bootstrap_admin_token_file: {err}"));
            None
        }
    });
    let limits = resolve_limits(
        [
            pick(
                overrides.request_timeout_seconds,
                file.request_timeout_seconds,
            ),
            pick(
                overrides.max_concurrent_requests,
                file.max_concurrent_requests,
            ),
            pick(overrides.max_streams, file.max_streams),
            pick(
                overrides.max_streams_per_principal,
                file.max_streams_per_principal,
            ),
        ],
        &mut errors,
    );
    let health_interval = seconds(
        &mut errors,
        "health_check_interval_seconds",
        pick(
            overrides.health_check_interval_seconds,
            file.health_check_interval_seconds,
        ),
        (1, 300),
        HealthConfig::default().check_interval,
    );
    let drain_delay = seconds(
        &mut errors,
        "shutdown_drain_seconds",
        pick(
            overrides.shutdown_drain_seconds,
            file.shutdown_drain_seconds,
        ),
        (0, 300),
        Duration::ZERO,
    );
    let defaults = ServiceConfig::default();
    let dispatch_defaults = crate::service::DispatchConfig::default();
    let action_deadline = seconds(
        &mut errors,
        "action_deadline_seconds",
        pick(
            overrides.action_deadline_seconds,
            file.action_deadline_seconds,
        ),
        ACTION_DEADLINE_RANGE,
        dispatch_defaults.action_deadline,
    );
    // Longer than the agents' heartbeat interval, or every node would flap.
    let heartbeat_timeout = seconds(
        &mut errors,
        "heartbeat_timeout_seconds",
        pick(
            overrides.heartbeat_timeout_seconds,
            file.heartbeat_timeout_seconds,
        ),
        (
            dispatch_defaults.heartbeat_interval.as_secs() + 1,
            HEARTBEAT_TIMEOUT_MAX,
        ),
        dispatch_defaults.heartbeat_timeout,
    );
    let service = ServiceConfig {
        join_token_ttl: seconds(
            &mut errors,
            "join_token_ttl_seconds",
            pick(
                overrides.join_token_ttl_seconds,
                file.join_token_ttl_seconds,
            ),
            (1, crate::service::MAX_JOIN_TOKEN_TTL.as_secs()),
            defaults.join_token_ttl,
        ),
        agent_certificate_validity: seconds(
            &mut errors,
            "agent_certificate_validity_seconds",
            pick(
                overrides.agent_certificate_validity_seconds,
                file.agent_certificate_validity_seconds,
            ),
            CERTIFICATE_VALIDITY_RANGE,
            defaults.agent_certificate_validity,
        ),
        dispatch: crate::service::DispatchConfig {
            action_deadline,
            heartbeat_timeout,
            ..dispatch_defaults
        },
        session_idle_timeout: seconds(
            &mut errors,
            "session_idle_timeout_seconds",
            pick(
                overrides.session_idle_timeout_seconds,
                file.session_idle_timeout_seconds,
            ),
            SESSION_RANGE,
            defaults.session_idle_timeout,
        ),
        session_lifetime: seconds(
            &mut errors,
            "session_lifetime_seconds",
            pick(
                overrides.session_lifetime_seconds,
                file.session_lifetime_seconds,
            ),
            SESSION_RANGE,
            defaults.session_lifetime,
        ),
        // Inside the private data directory (the server resolves the empty default): uploads
        // may hold anything, and /tmp may be memory-backed.
        upload_spool_dir: PathBuf::new(),
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
                limits,
                health: HealthConfig {
                    check_interval: health_interval,
                },
                drain_delay,
                bootstrap_admin_token,
            },
            listen,
            agent_listen,
            metrics_listen,
            health_listen,
        })
    } else {
        Err(errors)
    }
}

/// The token in `path` (surrounding whitespace ignored): 32 to 256 characters that can go
/// into an `authorization` header unchanged. The message never contains the file's text.
fn read_bootstrap_token(path: &Path) -> Result<BootstrapToken, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let token = text.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if !(32..=256).contains(&token.len()) {
        return Err(format!(
            "{}: the token must be 32 to 256 characters long (it has {})",
            path.display(),
            token.len()
        ));
    }
    if !token.chars().all(allowed) {
        return Err(format!(
            "{}: the token may hold only letters, digits and - . _ ~ + / =",
            path.display()
        ));
    }
    Ok(BootstrapToken(token.to_owned()))
}

/// `value` (or `default`) if within `min..=max`; otherwise an error naming the bounds.
fn bounded(
    name: &str,
    value: Option<u64>,
    (min, max): (u64, u64),
    default: u64,
    errors: &mut Vec<String>,
) -> u64 {
    match value {
        Some(n) if n < min || n > max => {
            errors.push(format!("{name}: must be between {min} and {max} (got {n})"));
            default
        }
        Some(n) => n,
        None => default,
    }
}

/// The public API's limits, each bounded by [`ApiLimits::BOUNDS`] (same order).
fn resolve_limits(values: [Option<u64>; 4], errors: &mut Vec<String>) -> ApiLimits {
    let defaults = ApiLimits::default();
    let default_values = [
        defaults.request_timeout.as_secs(),
        defaults.max_concurrent_requests as u64,
        defaults.max_streams as u64,
        defaults.max_streams_per_principal as u64,
    ];
    let mut resolved = [0u64; 4];
    for (i, ((name, min, max), value)) in ApiLimits::BOUNDS.iter().zip(values).enumerate() {
        resolved[i] = bounded(name, value, (*min, *max), default_values[i], errors);
    }
    // The bounds keep every count far below usize::MAX.
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    ApiLimits {
        request_timeout: Duration::from_secs(resolved[0]),
        max_concurrent_requests: count(resolved[1]),
        max_streams: count(resolved[2]),
        max_streams_per_principal: count(resolved[3]),
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
    fn durations_are_bounded_so_nothing_computed_from_them_overflows() {
        for (key, value) in [
            ("action_deadline_seconds", i64::MAX as u64),
            ("agent_certificate_validity_seconds", 1u64 << 62),
            ("join_token_ttl_seconds", 31 * 24 * 3600),
            ("heartbeat_timeout_seconds", 5),
            ("heartbeat_timeout_seconds", 0),
        ] {
            let file: FileConfig = toml::from_str(&format!("{key} = {value}")).expect("parses");
            let errors = resolve(file, FileConfig::default()).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with(key) && errors[0].contains("must be between"),
                "{errors:?}"
            );
        }
        let file: FileConfig = toml::from_str(
            "action_deadline_seconds = 2592000\nagent_certificate_validity_seconds = 157680000",
        )
        .expect("parses");
        assert!(resolve(file, FileConfig::default()).is_ok());
    }

    #[test]
    fn limits_are_bounded_at_startup() {
        let file = FileConfig {
            max_streams_per_principal: Some(0),
            request_timeout_seconds: Some(86_400),
            max_concurrent_requests: Some(10_000_000),
            shutdown_drain_seconds: Some(301),
            ..Default::default()
        };
        let errors = resolve(file, FileConfig::default()).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e == "max_streams_per_principal: must be between 1 and 100000 (got 0)"),
            "{errors:?}"
        );
        let resolved = resolve(FileConfig::default(), FileConfig::default()).unwrap();
        assert_eq!(resolved.config.limits, ApiLimits::default());
        assert_eq!(resolved.config.drain_delay, Duration::ZERO);
        assert_eq!(resolved.metrics_listen, None);
    }

    #[test]
    fn bootstrap_tokens_are_checked_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "tooshort\n").unwrap();
        let spaced = dir.path().join("spaced");
        std::fs::write(&spaced, format!("{} {}\n", "a".repeat(20), "b".repeat(20))).unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{}\n", "c".repeat(40))).unwrap();
        for (path, wanted) in [(&short, "32 to 256"), (&spaced, "only letters")] {
            let errors = resolve(
                FileConfig {
                    bootstrap_admin_token_file: Some(path.clone()),
                    ..Default::default()
                },
                FileConfig::default(),
            )
            .unwrap_err();
            assert!(errors[0].contains(wanted), "{errors:?}");
            assert!(!errors[0].contains("tooshort") && !errors[0].contains("aaaa"));
        }
        let resolved = resolve(
            FileConfig {
                bootstrap_admin_token_file: Some(good),
                ..Default::default()
            },
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(
            resolved.config.bootstrap_admin_token,
            Some(BootstrapToken("c".repeat(40)))
        );
        assert_eq!(
            format!("{:?}", resolved.config.bootstrap_admin_token),
            "Some(<redacted>)"
        );
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
            resolved.config.service.dispatch.action_deadline,
            Duration::from_secs(5)
        );
        assert_eq!(resolved.listen.to_string(), "127.0.0.1:7400");
    }
}
