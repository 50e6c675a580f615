//! Uploaded media on the node: the files its services need, fetched from the control plane
//! over the agent's mTLS channel (`FetchBlob`) into a content-addressed cache, and
//! materialised where the servers read them:
//!
//! ```text
//! <data dir>/blobs/<sha256>                       the cache: one file per content, 0644, read-only
//! <data dir>/media/<customer id>/<track id>.<ext> the owner's library, which AutoDJ watches
//! <data dir>/services/<id>/videos/<video id>.<ext> a video service's files, served at /videos/
//! ```
//!
//! Materialised files are hard links to the cache (copies where a link cannot be made), put
//! in place by rename, so a server never sees half a file. Names come from the control plane's
//! ids and the format ffprobe found — never from what an uploader called the file — and are
//! checked again here before they touch a path. Only files named like that are managed: a
//! track or video file no spec lists any more is removed (AutoDJ's `watch` playlist drops it
//! without a restart), files an operator put there by hand are left alone, and a cache entry
//! no spec needs is removed once nothing links to it.
//!
//! The sync runs beside the supervisor, not inside it: fetching a large file never holds up
//! starting or stopping a server, and a server that starts before its files arrive plays (or
//! serves) them as they land.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use castplane_proto::agent::v1 as apb;
use castplane_proto::agent::v1::agent_service_client::AgentServiceClient;
use castplane_proto::v1::ServiceType;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tonic::transport::Channel;

use crate::plugins::autodj::{AutoDjPlugin, valid_customer_id};
use crate::plugins::video::{VIDEOS_DIR, VideoPlugin};
use crate::supervisor::files::{self, Account};
use crate::supervisor::unit;

/// How long a failed sync waits before it tries again (a new desired state retries at once).
const RETRY_AFTER: Duration = Duration::from_secs(3);

/// What the node must hold, from its services' specs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Customer id → file name → file: the libraries of the owners of AutoDJ services.
    pub libraries: BTreeMap<String, BTreeMap<String, apb::MediaFile>>,
    /// Service id → file name → file: video services' files.
    pub videos: BTreeMap<String, BTreeMap<String, apb::MediaFile>>,
}

impl Wanted {
    pub fn of(specs: &BTreeMap<String, apb::ServiceSpec>) -> Wanted {
        let mut wanted = Wanted::default();
        for spec in specs.values() {
            if spec.autodj && valid_customer_id(&spec.owner_customer_id) {
                let library = wanted
                    .libraries
                    .entry(spec.owner_customer_id.clone())
                    .or_default();
                for track in spec.media_tracks.iter().filter(|t| valid_file(t, "trk")) {
                    library.insert(track.file_name.clone(), track.clone());
                }
            }
            if spec.r#type == ServiceType::Video as i32 && valid_customer_id(&spec.id) {
                let videos = wanted.videos.entry(spec.id.clone()).or_default();
                for video in spec.video_files.iter().filter(|v| valid_file(v, "vid")) {
                    videos.insert(video.file_name.clone(), video.clone());
                }
            }
        }
        wanted
    }

    fn blobs(&self) -> BTreeMap<String, u64> {
        self.libraries
            .values()
            .chain(self.videos.values())
            .flat_map(|files| files.values())
            .map(|f| (f.sha256.clone(), f.size_bytes))
            .collect()
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `<prefix>_<id chars>.<ext>`: what the control plane names files; nothing else is a path.
fn managed_name(name: &str, prefix: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    stem.len() <= 64
        && stem
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('_'))
        && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && (1..=8).contains(&ext.len())
        && ext.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn valid_file(file: &apb::MediaFile, prefix: &str) -> bool {
    let ok = is_sha256(&file.sha256)
        && managed_name(&file.file_name, prefix)
        && file.file_name.starts_with(&format!("{}.", file.id));
    if !ok {
        tracing::warn!(file_id = %file.id, "ignoring a media file with an unexpected name or hash");
    }
    ok
}

/// How far a sync got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synced {
    Complete,
    /// A video service's directory did not exist yet (its first spec is still being applied):
    /// its files are placed by a later sync.
    WaitingForServiceDirs,
}

/// The node's media, kept in step with the desired state.
pub struct MediaSync {
    cache_dir: PathBuf,
    media_dir: PathBuf,
    services_dir: PathBuf,
    specs: Mutex<BTreeMap<String, apb::ServiceSpec>>,
    notify: Notify,
}

impl MediaSync {
    pub fn new(data_dir: &Path, media_dir: PathBuf, services_dir: PathBuf) -> Self {
        MediaSync {
            cache_dir: data_dir.join("blobs"),
            media_dir,
            services_dir,
            specs: Mutex::new(BTreeMap::new()),
            notify: Notify::new(),
        }
    }

    fn specs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, apb::ServiceSpec>> {
        self.specs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A whole desired state.
    pub fn replace(&self, services: &[apb::ServiceSpec]) {
        *self.specs() = services.iter().map(|s| (s.id.clone(), s.clone())).collect();
        self.notify.notify_one();
    }

    /// A change of the desired state.
    pub fn update(&self, changed: &[apb::ServiceSpec], removed: &[String]) {
        let mut specs = self.specs();
        for id in removed {
            specs.remove(id);
        }
        for spec in changed {
            specs.insert(spec.id.clone(), spec.clone());
        }
        drop(specs);
        self.notify.notify_one();
    }

    /// Syncs whenever the desired state changes, for as long as the session lasts.
    pub async fn run(&self, client: AgentServiceClient<Channel>) {
        loop {
            self.notify.notified().await;
            loop {
                let wanted = Wanted::of(&self.specs());
                match self.sync(&client, &wanted).await {
                    Ok(Synced::Complete) => break,
                    Ok(Synced::WaitingForServiceDirs) => {
                        tracing::debug!(
                            "some video services have no directory yet; syncing again shortly"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "media sync failed; retrying"),
                }
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                    () = self.notify.notified() => {}
                }
            }
        }
    }

    /// Fetches what is missing, then materialises and prunes.
    pub async fn sync(
        &self,
        client: &AgentServiceClient<Channel>,
        wanted: &Wanted,
    ) -> anyhow::Result<Synced> {
        let blobs = wanted.blobs();
        let cache_dir = self.cache_dir.clone();
        tokio::task::spawn_blocking(move || prepare_cache(&cache_dir)).await??;
        for (sha256, size) in &blobs {
            if !self.cache_dir.join(sha256).is_file() {
                self.fetch(client, sha256, *size).await?;
            }
        }
        let cache_dir = self.cache_dir.clone();
        let media_dir = self.media_dir.clone();
        let services_dir = self.services_dir.clone();
        let wanted = wanted.clone();
        let synced = tokio::task::spawn_blocking(move || {
            materialise(&cache_dir, &media_dir, &services_dir, &wanted)
        })
        .await??;
        Ok(synced)
    }

    /// One blob into the cache: streamed to a temporary file, hashed, checked, renamed.
    async fn fetch(
        &self,
        client: &AgentServiceClient<Channel>,
        sha256: &str,
        size: u64,
    ) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt;
        let started = std::time::Instant::now();
        let mut stream = client
            .clone()
            .fetch_blob(apb::FetchBlobRequest {
                sha256: sha256.to_owned(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("fetching blob {sha256}: {}", s.message()))?
            .into_inner();
        let tmp = self
            .cache_dir
            .join(format!(".{sha256}.{}.part", std::process::id()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .await?;
        let result: anyhow::Result<()> = async {
            let mut hasher = Sha256::new();
            let mut received: u64 = 0;
            while let Some(chunk) = stream
                .message()
                .await
                .map_err(|s| anyhow::anyhow!("fetching blob {sha256}: {}", s.message()))?
            {
                received = received.saturating_add(chunk.data.len() as u64);
                anyhow::ensure!(
                    received <= size,
                    "blob {sha256} is longer than {size} bytes"
                );
                hasher.update(&chunk.data);
                file.write_all(&chunk.data).await?;
            }
            anyhow::ensure!(
                received == size,
                "blob {sha256} ended after {received} of {size} bytes"
            );
            let actual = hex::encode(hasher.finalize());
            anyhow::ensure!(
                actual == sha256,
                "blob {sha256} arrived hashing to {actual}"
            );
            file.sync_all().await?;
            // Read-only for everyone: its links are what servers open, and the directories
            // above them decide who may.
            tokio::fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444)).await?;
            tokio::fs::rename(&tmp, self.cache_dir.join(sha256)).await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result?;
        tracing::info!(
            sha256,
            size_bytes = size,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fetched blob"
        );
        Ok(())
    }
}

fn prepare_cache(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).create(dir)?;
    // The cache is reached only through the links; o+x lets servers open those.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711))?;
    // Partial downloads of an agent that died are never resumed.
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".part") {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Puts `file` at `dir/name` unless it is already there (same inode, or same size).
fn place(
    cache_dir: &Path,
    dir: &Path,
    file: &apb::MediaFile,
    group: Option<u32>,
) -> io::Result<()> {
    let target = dir.join(&file.file_name);
    let source = cache_dir.join(&file.sha256);
    if let Ok(meta) = fs::metadata(&target)
        && meta.len() == file.size_bytes
    {
        return Ok(());
    }
    let tmp = dir.join(format!(".{}.tmp", file.file_name));
    let _ = fs::remove_file(&tmp);
    if fs::hard_link(&source, &tmp).is_err() {
        // Another filesystem: a copy, readable by the server's group only.
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        io::copy(&mut fs::File::open(&source)?, &mut out)?;
        if let Some(gid) = group {
            std::os::unix::fs::fchown(&out, None, Some(gid))?;
        }
        out.set_permissions(fs::Permissions::from_mode(0o640))?;
        out.flush()?;
    }
    fs::rename(&tmp, &target)?;
    tracing::info!(file = %target.display(), display_name = %file.display_name, "materialised media file");
    Ok(())
}

/// Removes managed files of `dir` that `keep` does not list.
fn prune(
    dir: &Path,
    prefix: &str,
    keep: Option<&BTreeMap<String, apb::MediaFile>>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if managed_name(&name, prefix) && !keep.is_some_and(|k| k.contains_key(&name)) {
            fs::remove_file(entry.path())?;
            tracing::info!(file = %entry.path().display(), "removed media file no longer listed");
        }
    }
    Ok(())
}

/// The account a server runs as, if the agent switches to one (as root); a host without it
/// cannot run that server anyway, and its files are placed for the agent's own account.
fn account_of(plugin: &dyn crate::plugins::Plugin) -> Option<Account> {
    unit::account(plugin).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "no service account for media files");
        None
    })
}

fn materialise(
    cache_dir: &Path,
    media_dir: &Path,
    services_dir: &Path,
    wanted: &Wanted,
) -> anyhow::Result<Synced> {
    let liquidsoap = account_of(&AutoDjPlugin::new(media_dir));
    let www = account_of(&VideoPlugin::new());
    let mut synced = Synced::Complete;
    for (customer, files) in &wanted.libraries {
        let dir = media_dir.join(customer);
        files::prepare_external_dir(&dir, liquidsoap)?;
        for file in files.values() {
            place(cache_dir, &dir, file, liquidsoap.map(|a: Account| a.gid))?;
        }
        prune(&dir, "trk", Some(files))?;
    }
    // Libraries no AutoDJ service here plays any more: their managed tracks go (the customer
    // keeps them in the store; a node's copy is a cache).
    if let Ok(entries) = fs::read_dir(media_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if valid_customer_id(&name)
                && !wanted.libraries.contains_key(&name)
                && entry.path().is_dir()
            {
                prune(&entry.path(), "trk", None)?;
            }
        }
    }
    // Service directories come and go with the supervisor's deletes: hold them still.
    let dirs = files::SERVICE_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for (service, files) in &wanted.videos {
        let service_dir = services_dir.join(service);
        // The supervisor creates the service's directory with its first spec; until then
        // there is nowhere to put its files, and the next sync will.
        if !service_dir.is_dir() {
            synced = Synced::WaitingForServiceDirs;
            continue;
        }
        let dir = service_dir.join(VIDEOS_DIR);
        files::prepare_service_dir(&dir, www)?;
        for file in files.values() {
            place(cache_dir, &dir, file, www.map(|a| a.gid))?;
        }
        prune(&dir, "vid", Some(files))?;
    }
    drop(dirs);
    // The cache keeps what some spec still lists.
    let needed: BTreeSet<String> = wanted.blobs().into_keys().collect();
    for entry in fs::read_dir(cache_dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_sha256(&name) && !needed.contains(&name) {
            fs::remove_file(entry.path())?;
            tracing::info!(sha256 = %name, "removed cached blob no service needs");
        }
    }
    Ok(synced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_control_plane_gives_are_managed() {
        assert!(managed_name("trk_01JABCDEFGHJKMNPQRSTVWXYZ0.mp3", "trk"));
        assert!(!managed_name("trk_01JABC.mp3", "vid"));
        assert!(!managed_name("../trk_1.mp3", "trk"));
        assert!(!managed_name("trk_1.mp3/x", "trk"));
        assert!(!managed_name("my song.mp3", "trk"));
        assert!(!managed_name("trk_1", "trk"));
        assert!(!managed_name("trk_1.m p3", "trk"));
    }
}
