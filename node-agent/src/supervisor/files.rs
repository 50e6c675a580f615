//! The files of a service directory:
//!
//! ```text
//! services_dir/<service_id>/     owned by the server's account (it writes its pid and access log);
//!                                with AutoDJ, its group is liquidsoap's (which reads its script there)
//!   spec.pb        the last spec, protobuf (0600: carries passwords)
//!   process.json   pid + start time + generation of the running server, for re-adoption
//!   icecast.xml    rendered config (0640 root:icecast: carries passwords)
//!   stderr.log     the server's stdout and stderr, appended
//!   icecast.pid, access.log   written by icecast2 itself
//!   autodj.liq     AutoDJ: liquidsoap's script (0640 root:liquidsoap: carries its mount's password)
//!   autodj.json    AutoDJ: like process.json, for liquidsoap
//!   autodj.log     AutoDJ: liquidsoap's stdout and stderr, appended
//!   nginx.conf     video: rendered config (0640 root:www-data: carries the source password)
//!   nginx.pid      video: written by nginx
//!   hls/ videos/ temp/   video: HLS output, uploaded files, nginx's temp paths
//! ```
//!
//! Media libraries are not the service's and live elsewhere (`media_dir/<customer_id>/`, see
//! [`prepare_external_dir`]).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use castplane_proto::agent::v1::ServiceSpec;
use prost::Message;
use serde::{Deserialize, Serialize};

pub const SPEC_FILE: &str = "spec.pb";

/// The uid/gid a server runs as, when the agent (as root) switches to a service account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Writes `path` so readers see the old or the new file, never a torn one: a temp file in the
/// same directory, fsynced, renamed over. The temp file starts 0600 so secrets are never
/// readable by anyone else, even briefly; the group and final mode are set before the rename.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, group: Option<u32>) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        if let Some(gid) = group {
            std::os::unix::fs::fchown(&file, None, Some(gid))?;
        }
        file.set_permissions(Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `root` (the services or the media directory) and, when servers run under another
/// account, makes it and every ancestor traversable (o+x) for that account. Only the execute bit
/// is added: nothing becomes listable or readable, so key files beside it stay private.
pub fn prepare_root_dir(root: &Path, other_account: bool) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)?;
    if !other_account {
        return Ok(());
    }
    for dir in root.ancestors() {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let meta = fs::metadata(dir)?;
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            tracing::info!(dir = %dir.display(), "adding o+x so service accounts can reach their directories");
            fs::set_permissions(dir, Permissions::from_mode((mode & 0o7777) | 0o001))?;
        }
    }
    Ok(())
}

/// Held while a service's directory is removed and while the media sync puts files into
/// service directories. Without it a sync running beside a delete (the delete's own spec
/// change wakes it) recreates `videos/` inside the tree being removed — the delete fails with
/// "Directory not empty" — or recreates a directory just removed. One agent per process.
pub static SERVICE_DIRS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Removes a service's directory (absent is fine), under [`SERVICE_DIRS`].
pub fn remove_service_dir(dir: &Path) -> io::Result<()> {
    let _dirs = SERVICE_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates a service's directory, owned by the server's account so it can write there.
pub fn prepare_service_dir(dir: &Path, account: Option<Account>) -> io::Result<()> {
    fs::DirBuilder::new()
        .mode(0o750)
        .create(dir)
        .or_else(|e| if dir.is_dir() { Ok(()) } else { Err(e) })?;
    if let Some(a) = account {
        let meta = fs::metadata(dir)?;
        if meta.uid() != a.uid || meta.gid() != a.gid {
            std::os::unix::fs::chown(dir, Some(a.uid), Some(a.gid))?;
        }
    }
    fs::set_permissions(dir, Permissions::from_mode(0o750))
}

/// Lets a sibling unit's account into the service directory: the directory's group becomes the
/// sibling's, while the server's account stays its owner (and the only one who may write).
/// The server's next start takes the group back.
pub fn share_service_dir(dir: &Path, sibling: Option<Account>) -> io::Result<()> {
    if let Some(a) = sibling {
        if fs::metadata(dir)?.gid() != a.gid {
            std::os::unix::fs::chown(dir, None, Some(a.gid))?;
        }
        fs::set_permissions(dir, Permissions::from_mode(0o750))?;
    }
    Ok(())
}

/// Creates a directory outside the service directory that a process reads (a customer's media
/// library) if it is missing: 0750, group of the process's account. One that exists is left
/// exactly as it is: it is not the service's (an operator may have set it up on purpose).
pub fn prepare_external_dir(dir: &Path, account: Option<Account>) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        prepare_root_dir(parent, account.is_some())?;
    }
    match fs::DirBuilder::new().mode(0o750).create(dir) {
        Ok(()) => {
            if let Some(a) = account {
                std::os::unix::fs::chown(dir, None, Some(a.gid))?;
            }
            // The mode given to mkdir is masked by the umask.
            fs::set_permissions(dir, Permissions::from_mode(0o750))?;
            tracing::info!(dir = %dir.display(), "created media library");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn save_spec(dir: &Path, spec: &ServiceSpec) -> io::Result<()> {
    write_atomic(&dir.join(SPEC_FILE), &spec.encode_to_vec(), 0o600, None)
}

pub fn load_spec(dir: &Path) -> io::Result<ServiceSpec> {
    let bytes = fs::read(dir.join(SPEC_FILE))?;
    ServiceSpec::decode(bytes.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// What the agent remembers about a running server so the next agent can adopt it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    pub pid: u32,
    pub start_time: u64,
    /// The spec generation the server's config was rendered from.
    pub generation: u64,
}

/// `file`: the unit's record file (`process.json` for the server).
pub fn save_process(dir: &Path, file: &str, record: &ProcessRecord) -> io::Result<()> {
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    write_atomic(&dir.join(file), &json, 0o600, None)
}

pub fn load_process(dir: &Path, file: &str) -> Option<ProcessRecord> {
    serde_json::from_slice(&fs::read(dir.join(file)).ok()?).ok()
}

pub fn remove_if_exists(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove file");
    }
}

/// Reads a pid file; servers write the pid in decimal, maybe followed by a newline.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Opens a process's stdout/stderr file (`file`: `stderr.log` for the server) for appending.
/// `O_APPEND` matters twice: several server generations share the file, and truncating it (see
/// [`StderrTail`]) while the server holds it open makes its next write land at the new end
/// instead of leaving a hole.
pub fn open_log(dir: &Path, file: &str, group: Option<u32>) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(dir.join(file))?;
    if let Some(gid) = group {
        std::os::unix::fs::fchown(&file, None, Some(gid))?;
    }
    Ok(file)
}

/// Past this size the log is truncated once it has been read, so a chatty server cannot fill
/// the disk; the lines went to `tracing` already.
const MAX_LOG_BYTES: u64 = 4 * 1024 * 1024;
/// Lines kept for failure reasons.
const RECENT_LINES: usize = 20;
const MAX_LINE_CHARS: usize = 400;
/// One poll reads at most this much, keeping each poll short on the runtime.
const MAX_READ_PER_POLL: u64 = 256 * 1024;

/// Follows a process's log file (the server's `stderr.log`, AutoDJ's `autodj.log`) into
/// `tracing` (with the service id and program) and keeps its last lines for failure reasons. A
/// file instead of a pipe keeps the server independent of the agent: if the agent dies, writes
/// still succeed instead of raising SIGPIPE.
pub struct StderrTail {
    path: PathBuf,
    service_id: String,
    program: &'static str,
    offset: u64,
    partial: Vec<u8>,
    recent: VecDeque<String>,
    marker: Option<&'static str>,
    marker_seen: bool,
}

impl StderrTail {
    /// Follows `dir/file` from its current end: what is there already belongs to earlier runs.
    pub fn new(dir: &Path, file: &str, service_id: &str, program: &'static str) -> Self {
        let path = dir.join(file);
        let offset = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        StderrTail {
            path,
            service_id: service_id.to_owned(),
            program,
            offset,
            partial: Vec::new(),
            recent: VecDeque::new(),
            marker: None,
            marker_seen: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a new run: only lines from here on belong to it. `marker`: a line to watch for
    /// (see [`Self::marker_seen`]).
    pub fn mark_start(&mut self, marker: Option<&'static str>) {
        self.poll();
        self.flush_partial();
        self.recent.clear();
        self.marker = marker;
        self.marker_seen = false;
    }

    /// Whether the current run has logged the marker line.
    pub fn marker_seen(&self) -> bool {
        self.marker_seen
    }

    pub fn poll(&mut self) {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(_) => return,
        };
        let len = match file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return,
        };
        if len < self.offset {
            // Truncated by someone else; start over.
            self.offset = 0;
        }
        if len == self.offset {
            return;
        }
        let mut buf = Vec::new();
        let read = file
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| (&mut file).take(MAX_READ_PER_POLL).read_to_end(&mut buf));
        if read.is_err() {
            return;
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.push_line(&line[..line.len() - 1]);
        }
        if self.offset >= MAX_LOG_BYTES && self.offset == len {
            if let Err(e) = OpenOptions::new()
                .write(true)
                .open(&self.path)
                .and_then(|f| f.set_len(0))
            {
                tracing::warn!(media_service_id = %self.service_id, error = %e, "cannot truncate server log");
            } else {
                self.offset = 0;
            }
        }
    }

    /// Treats an unterminated last line as complete (the server has exited).
    pub fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.push_line(&line);
        }
    }

    fn push_line(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            return;
        }
        if self.marker.is_some_and(|m| text.contains(m)) {
            self.marker_seen = true;
        }
        let line: String = text.chars().take(MAX_LINE_CHARS).collect();
        log_server_line(&self.service_id, self.program, &line);
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    /// The last `n` lines of the current run that say something went wrong (warnings, errors,
    /// unlevelled output such as "Server startup failed"), or else its last `n` lines; without
    /// icecast's timestamp prefix.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let lines: Vec<&str> = self.recent.iter().map(|l| strip_timestamp(l)).collect();
        let notable: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !matches!(level_of(l), "INFO" | "DBUG" | "DEBUG"))
            .collect();
        let pick = if notable.is_empty() { lines } else { notable };
        pick[pick.len().saturating_sub(n)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }
}

/// `[2026-11-28  02:50:18] INFO main/main …` (icecast2) → `INFO main/main …`;
/// `2026/11/28 02:50:18 [autodj:3] …` (liquidsoap) → `[autodj:3] …`.
fn strip_timestamp(line: &str) -> &str {
    if line.starts_with('[')
        && let Some(end) = line.find("] ")
    {
        return &line[end + 2..];
    }
    // "2026/11/28 02:50:18 ": all ASCII, so the text after it starts on a char boundary.
    let stamp = 20;
    if line.len() > stamp
        && line.as_bytes()[..stamp]
            .iter()
            .enumerate()
            .all(|(i, b)| match i {
                4 | 7 => *b == b'/',
                10 | 19 => *b == b' ',
                13 | 16 => *b == b':',
                _ => b.is_ascii_digit(),
            })
    {
        return &line[stamp..];
    }
    line
}

/// The level word after the timestamp: icecast2's ("INFO", "WARN", "EROR", "DBUG"), or
/// liquidsoap's `[label:N]` mapped onto it (1 critical, 2 severe, 3 important, 4 info, 5 debug).
fn level_of(line: &str) -> &str {
    let word = line.split_whitespace().next().unwrap_or("");
    if let Some(label) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']'))
        && let Some((_, level)) = label.rsplit_once(':')
    {
        return match level {
            "1" => "ERROR",
            "2" => "WARN",
            "3" | "4" => "INFO",
            "5" => "DEBUG",
            _ => word,
        };
    }
    word
}

fn log_server_line(service_id: &str, program: &str, line: &str) {
    let body = strip_timestamp(line);
    match level_of(body) {
        "EROR" | "ERROR" | "WARN" => {
            tracing::warn!(media_service_id = %service_id, program, line = %body, "server log")
        }
        "DBUG" | "DEBUG" => {
            tracing::debug!(media_service_id = %service_id, program, line = %body, "server log")
        }
        _ => tracing::info!(media_service_id = %service_id, program, line = %body, "server log"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_set_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.conf");
        write_atomic(&path, b"one", 0o640, None).expect("write");
        write_atomic(&path, b"two", 0o600, None).expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temp files left behind: {leftovers:?}");
    }

    #[test]
    fn tail_keeps_last_lines_of_the_current_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open_log(dir.path(), "stderr.log", None).expect("open");
        writeln!(log, "[2026-01-01  00:00:00] INFO old run").expect("write");
        let mut tail = StderrTail::new(dir.path(), "stderr.log", "svc", "icecast2");
        tail.mark_start(Some("listener socket"));
        assert!(!tail.marker_seen());
        writeln!(
            log,
            "[2026-01-01  00:00:01] INFO main/main Icecast 2.4.4 server started"
        )
        .expect("write");
        writeln!(
            log,
            "[2026-01-01  00:00:01] EROR connection/x Could not create listener socket"
        )
        .expect("write");
        write!(log, "Server startup failed. Exiting").expect("write");
        tail.poll();
        assert!(tail.marker_seen());
        assert_eq!(
            tail.last_lines(5),
            vec!["EROR connection/x Could not create listener socket"]
        );
        tail.flush_partial();
        assert_eq!(tail.last_lines(1), vec!["Server startup failed. Exiting"]);
        assert_eq!(tail.last_lines(10).len(), 2);
        // Only INFO lines: those are all there is to quote.
        tail.mark_start(None);
        writeln!(
            log,
            "[2026-01-01  00:00:02] INFO main/main Icecast 2.4.4 server started"
        )
        .expect("write");
        tail.poll();
        assert_eq!(
            tail.last_lines(5),
            vec!["INFO main/main Icecast 2.4.4 server started"]
        );
    }

    #[test]
    fn specs_and_process_records_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = ServiceSpec {
            id: "svc".into(),
            admin_password: "pw".into(),
            generation: 7,
            ..Default::default()
        };
        save_spec(dir.path(), &spec).expect("save");
        assert_eq!(load_spec(dir.path()).expect("load"), spec);
        assert_eq!(
            fs::metadata(dir.path().join(SPEC_FILE))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let record = ProcessRecord {
            pid: 42,
            start_time: 99,
            generation: 7,
        };
        save_process(dir.path(), "process.json", &record).expect("save");
        assert_eq!(load_process(dir.path(), "process.json"), Some(record));
        assert_eq!(load_process(dir.path(), "autodj.json"), None);
    }

    #[test]
    fn liquidsoap_lines_have_levels_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open_log(dir.path(), "autodj.log", None).expect("open");
        let mut tail = StderrTail::new(dir.path(), "autodj.log", "svc", "liquidsoap");
        tail.mark_start(None);
        for line in [
            "2026/11/28 03:52:38 [main:3] Liquidsoap 2.1.3",
            "2026/11/28 03:52:38 [autodj:2] Connection failed: 401, Unauthorized (HTTP/1.0)",
            "2026/11/28 03:52:38 [autodj:3] Will try again in 3.00 sec.",
            "[mp3float @ 0x7fb808016440] Could not update timestamps for skipped samples.",
        ] {
            writeln!(log, "{line}").expect("write");
        }
        tail.poll();
        assert_eq!(
            tail.last_lines(5),
            vec![
                "[autodj:2] Connection failed: 401, Unauthorized (HTTP/1.0)",
                // Read as an icecast2 timestamp: only the prefix is lost.
                "Could not update timestamps for skipped samples.",
            ]
        );
        assert_eq!(level_of("[autodj:5] x"), "DEBUG");
        assert_eq!(level_of("[autodj:1] x"), "ERROR");
        assert_eq!(
            strip_timestamp("2026/11/28 03:52:38"),
            "2026/11/28 03:52:38"
        );
        assert_eq!(
            strip_timestamp("2026/1x/28 03:52:38 y"),
            "2026/1x/28 03:52:38 y"
        );
    }

    #[test]
    fn external_dirs_are_created_but_never_changed() {
        let root = tempfile::tempdir().expect("tempdir");
        let library = root.path().join("media").join("cus_1");
        prepare_external_dir(&library, None).expect("create");
        let meta = fs::metadata(&library).expect("meta");
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o750);
        assert_eq!(
            fs::metadata(root.path().join("media"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o711
        );
        fs::write(library.join("track.mp3"), b"x").expect("track");
        fs::set_permissions(&library, Permissions::from_mode(0o755)).expect("chmod");
        prepare_external_dir(&library, None).expect("exists");
        assert_eq!(
            fs::metadata(&library).expect("meta").permissions().mode() & 0o777,
            0o755
        );
        assert!(library.join("track.mp3").exists());
        let file = root.path().join("media").join("file");
        fs::write(&file, b"x").expect("file");
        assert!(prepare_external_dir(&file, None).is_err());
    }
}
