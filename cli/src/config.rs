//! Connection settings: flags, then environment variables (clap merges those two), then the
//! config file `castctl login` writes.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::GlobalArgs;
use crate::error::{CliError, Result};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7400";

/// What `castctl login` saves. The token is a secret, so the file is written 0600 (and
/// `Debug` is written by hand to leave it out).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
}

fn redacted(token: &Option<String>) -> Option<&'static str> {
    token.as_ref().map(|_| "<redacted>")
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("endpoint", &self.endpoint)
            .field("token", &redacted(&self.token))
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

/// Where the config file lives: `--config`/`CASTCTL_CONFIG`, else the XDG location.
pub fn config_path(global: &GlobalArgs) -> Option<PathBuf> {
    if let Some(path) = &global.config {
        return Some(path.clone());
    }
    // The XDG spec says to ignore relative values.
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".config"))
        })?;
    Some(base.join("castplane").join("castctl.toml"))
}

pub fn load(path: Option<&Path>) -> Result<Option<ConfigFile>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(CliError::failed(format!(
                "reading {}: {err}",
                path.display()
            )));
        }
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|err| CliError::failed(format!("{}: {err}", path.display())))
}

/// Writes the file atomically and readable by its owner only: it holds a token.
pub fn save(path: &Path, config: &ConfigFile) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io_error = |what: &Path, err: std::io::Error| {
        CliError::failed(format!("writing {}: {err}", what.display()))
    };
    let text = toml::to_string(config)
        .map_err(|err| CliError::failed(format!("encoding the config: {err}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|err| io_error(dir, err))?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A stale temp file from an interrupted run may have other permissions; start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|err| io_error(&tmp, err))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|err| io_error(&tmp, err))?;
    std::fs::rename(&tmp, path).map_err(|err| io_error(path, err))
}

/// The settings a command connects with.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: String,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    /// Set when the file holds a token that was not used because the endpoint differs; the
    /// missing-token error mentions it.
    pub saved_for_other_endpoint: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("token", &redacted(&self.token))
            .field("ca_cert", &self.ca_cert)
            .field("saved_for_other_endpoint", &self.saved_for_other_endpoint)
            .finish()
    }
}

pub fn resolve(global: &GlobalArgs, file: Option<&ConfigFile>) -> Settings {
    let saved_endpoint = file.and_then(|f| f.endpoint.as_deref());
    let endpoint = global
        .endpoint
        .as_deref()
        .or(saved_endpoint)
        .unwrap_or(DEFAULT_ENDPOINT)
        .trim()
        .to_owned();
    // A saved token belongs to the control plane it was saved for: never send it to an
    // endpoint given on the command line that is a different server.
    let same_server = saved_endpoint.is_some_and(|saved| same_endpoint(saved, &endpoint));
    let (file_token, file_ca) = match file {
        Some(f) if same_server => (f.token.clone(), f.ca_cert.clone()),
        _ => (None, None),
    };
    let saved_for_other_endpoint = match (file, same_server) {
        (Some(f), false) if f.token.is_some() => f.endpoint.clone(),
        _ => None,
    };
    Settings {
        token: global.token.clone().or(file_token),
        ca_cert: global.ca_cert.clone().or(file_ca),
        endpoint,
        saved_for_other_endpoint,
    }
}

fn same_endpoint(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

impl Settings {
    pub fn require_token(&self) -> Result<&str> {
        match self.token.as_deref().map(str::trim) {
            Some(token) if !token.is_empty() => Ok(token),
            _ => {
                let mut message = format!(
                    "no API token for {}: pass --token, set CASTPLANE_TOKEN, or run `castctl login --endpoint URL --token TOKEN`",
                    self.endpoint
                );
                if let Some(other) = &self.saved_for_other_endpoint {
                    message.push_str(&format!(
                        " (the saved token is for {other}, not this endpoint)"
                    ));
                }
                Err(CliError::usage(message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::OutputFormat;

    fn global(endpoint: Option<&str>, token: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            endpoint: endpoint.map(str::to_owned),
            token: token.map(str::to_owned),
            ca_cert: None,
            output: OutputFormat::Table,
            config: None,
        }
    }

    fn file() -> ConfigFile {
        ConfigFile {
            endpoint: Some("https://cp.example.net:7400".into()),
            token: Some("cpt_saved".into()),
            ca_cert: Some("/etc/ca.pem".into()),
        }
    }

    #[test]
    fn flags_override_the_file() {
        let s = resolve(&global(None, Some("cpt_flag")), Some(&file()));
        assert_eq!(s.endpoint, "https://cp.example.net:7400");
        assert_eq!(s.token.as_deref(), Some("cpt_flag"));
        assert_eq!(s.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn the_file_fills_in() {
        let s = resolve(
            &global(Some("https://cp.example.net:7400/"), None),
            Some(&file()),
        );
        assert_eq!(s.token.as_deref(), Some("cpt_saved"));
    }

    #[test]
    fn a_saved_token_is_not_sent_elsewhere() {
        let s = resolve(&global(Some("http://127.0.0.1:7400"), None), Some(&file()));
        assert_eq!(s.token, None);
        assert_eq!(s.ca_cert, None);
        let err = s.require_token().expect_err("no token");
        assert!(
            err.to_string()
                .contains("saved token is for https://cp.example.net:7400")
        );
    }

    #[test]
    fn debug_output_leaves_the_token_out() {
        let s = resolve(&global(None, Some("cpt_secret")), Some(&file()));
        assert!(!format!("{s:?}").contains("cpt_secret"));
        assert!(!format!("{:?}", file()).contains("cpt_saved"));
        assert!(!format!("{:?}", global(None, Some("cpt_secret"))).contains("cpt_secret"));
    }

    #[test]
    fn defaults_without_anything() {
        let s = resolve(&global(None, None), None);
        assert_eq!(s.endpoint, DEFAULT_ENDPOINT);
        assert!(s.require_token().is_err());
    }

    #[test]
    fn save_writes_0600_and_loads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("castctl.toml");
        save(&path, &file()).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(Some(&path)).expect("load"), Some(file()));
        assert_eq!(load(Some(&dir.path().join("missing"))).expect("load"), None);
    }
}
