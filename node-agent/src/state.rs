//! What the agent keeps in its data directory.
//!
//! ```text
//! DATA_DIR/
//!   node.json      node id, name and control-plane URLs (written at join)
//!   node.key       the node's private key (0600; never leaves the host)
//!   node.crt       its certificate, signed by the control plane's CA
//!   ca.crt         the control plane's CA certificate, pinned at join
//!   actions.jsonl  actions started and finished, so a redelivered action is answered, not re-run
//!   services/      one directory per service (see the supervisor)
//! ```

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    pub node_id: String,
    pub node_name: String,
    /// e.g. `https://cp.example.net:7401`.
    pub control_plane_url: String,
    /// Further control-plane replicas' agent listeners, tried in turn when one is unreachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_control_plane_urls: Vec<String>,
}

impl NodeIdentity {
    /// Every control-plane endpoint, the one joined through first.
    pub fn endpoints(&self) -> Vec<String> {
        std::iter::once(self.control_plane_url.clone())
            .chain(self.other_control_plane_urls.iter().cloned())
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn identity_path(&self) -> PathBuf {
        self.root.join("node.json")
    }

    pub fn key_path(&self) -> PathBuf {
        self.root.join("node.key")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.root.join("node.crt")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.root.join("ca.crt")
    }

    pub fn action_log_path(&self) -> PathBuf {
        self.root.join("actions.jsonl")
    }

    pub fn services_dir(&self) -> PathBuf {
        self.root.join("services")
    }

    pub fn create(&self) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        self.make_private()
    }

    /// Takes read and write access away from group and others: the directory holds the node's
    /// private key. The execute bit stays, since service accounts traverse it to reach their
    /// directories under `services/` (see the supervisor's `prepare_root_dir`).
    pub fn make_private(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&self.root)
            .with_context(|| format!("reading {}", self.root.display()))?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o066 != 0 {
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(mode & !0o066))
                .with_context(|| format!("making {} private", self.root.display()))?;
            tracing::warn!(dir = %self.root.display(), was = %format!("{mode:o}"), "made the agent's data directory private: it holds the node's key");
        }
        Ok(())
    }

    pub fn is_joined(&self) -> bool {
        self.identity_path().exists() && self.key_path().exists() && self.cert_path().exists()
    }

    pub fn load_identity(&self) -> anyhow::Result<NodeIdentity> {
        let path = self.identity_path();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (has this agent joined? run `castplane-agent join` first)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn save_identity(&self, identity: &NodeIdentity) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(identity)?;
        write_private(&self.identity_path(), &json)
    }

    /// Stores a key and its certificate as a pair. Both are staged first (`*.next`), then
    /// moved into place key first; [`DataDir::finish_credential_swap`] completes a swap a crash
    /// interrupted, so the node never ends up with a key that does not match its certificate.
    pub fn save_credentials(
        &self,
        key_pem: &str,
        cert_pem: &str,
        ca_pem: &str,
    ) -> anyhow::Result<()> {
        write_private(&self.ca_path(), ca_pem.as_bytes())?;
        write_private(&staged(&self.key_path()), key_pem.as_bytes())?;
        write_private(&staged(&self.cert_path()), cert_pem.as_bytes())?;
        self.finish_credential_swap()
    }

    /// Completes an interrupted [`DataDir::save_credentials`]: a staged certificate means the
    /// staged key (if still there) belongs to it; a staged key alone was never paired and goes.
    pub fn finish_credential_swap(&self) -> anyhow::Result<()> {
        let (key, cert) = (self.key_path(), self.cert_path());
        if staged(&cert).exists() {
            if staged(&key).exists() {
                std::fs::rename(staged(&key), &key).context("installing the new node key")?;
            }
            std::fs::rename(staged(&cert), &cert).context("installing the new node certificate")?;
        } else if staged(&key).exists() {
            std::fs::remove_file(staged(&key)).context("discarding an unpaired node key")?;
        }
        Ok(())
    }

    pub fn read(&self, path: &Path) -> anyhow::Result<String> {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Writes `contents` atomically with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn staged(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_data_dir_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("agent");
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        DataDir::new(&root).create().expect("create");
        let mode = std::fs::metadata(&root).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o711);
    }

    #[test]
    fn an_interrupted_credential_swap_completes_as_a_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::new(dir.path());
        data.save_credentials("key-1", "cert-1", "ca")
            .expect("save");
        // Crash after staging both and moving the key: the certificate follows on recovery.
        write_private(&staged(&data.cert_path()), b"cert-2").expect("stage");
        write_private(&data.key_path(), b"key-2").expect("moved key");
        data.finish_credential_swap().expect("finish");
        assert_eq!(data.read(&data.cert_path()).expect("cert"), "cert-2");
        assert_eq!(data.read(&data.key_path()).expect("key"), "key-2");
        // Crash after staging only the key: the old pair stays.
        write_private(&staged(&data.key_path()), b"key-3").expect("stage");
        data.finish_credential_swap().expect("finish");
        assert_eq!(data.read(&data.key_path()).expect("key"), "key-2");
        assert!(!staged(&data.key_path()).exists());
    }
}
