//! A throwaway PostgreSQL cluster for the test process, or the server named by
//! `CASTPLANE_TEST_DATABASE_URL`. Every test gets its own fresh database in it.
//!
//! The cluster is created with `initdb` in a temporary directory and started on a free port.
//! PostgreSQL refuses to run as root, so as root it runs as the `postgres` user. A small
//! watchdog stops it and removes its files once the test process exits.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();

/// The admin URL of the server tests create their databases in.
fn server_url() -> anyhow::Result<String> {
    SERVER
        .get_or_init(|| match std::env::var("CASTPLANE_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => start_cluster(std::process::id()).map_err(|e| format!("{e:#}")),
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("no PostgreSQL for tests: {e}"))
}

/// Creates a fresh database and returns its URL.
pub async fn fresh_database() -> anyhow::Result<String> {
    fresh_database_on(&server_url()?).await
}

/// Creates a fresh database on the server at `server` (an admin URL) and returns its URL.
pub async fn fresh_database_on(server: &str) -> anyhow::Result<String> {
    let server = server.to_owned();
    let name = format!("castplane_test_{:016x}", rand::random::<u64>());
    let admin = Database::connect(server.as_str())
        .await
        .context("connecting to the test PostgreSQL")?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    admin.close().await?;
    let base = server
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&server);
    Ok(format!("{base}/{name}"))
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CASTPLANE_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|dir| dir.join("initdb").exists())
        .context("no PostgreSQL server binaries under /usr/lib/postgresql (install postgresql, or set CASTPLANE_TEST_DATABASE_URL)")
}

/// Starts a cluster that stops (and removes its files) once process `watched` is gone, and
/// returns its admin URL.
pub fn start_cluster(watched: u32) -> anyhow::Result<String> {
    let bin = bin_dir()?;
    let root = tempfile::Builder::new()
        .prefix("castplane-pg-")
        .tempdir()?
        .keep();
    let data = root.join("data");
    let socket_dir = root.join("sock");
    std::fs::create_dir_all(&socket_dir)?;
    let run_as = if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")?
            .context("running as root needs a `postgres` user")?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        nix::unistd::chown(&root, Some(user.uid), Some(user.gid))?;
        nix::unistd::chown(&socket_dir, Some(user.uid), Some(user.gid))?;
        Some((user.uid.as_raw(), user.gid.as_raw()))
    } else {
        None
    };
    let command = |program: &Path| {
        let mut cmd = Command::new(program);
        if let Some((uid, gid)) = run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd
    };
    let output = command(&bin.join("initdb"))
        .args(["-D"])
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
        ])
        .output()
        .context("running initdb")?;
    if !output.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let port = crate::free_port();
    // The watchdog outlives nothing: it stops the server as soon as this process is gone.
    let script = format!(
        "{postgres} -D {data} -p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 & pg=$!; \
         while [ -d /proc/{watched} ] && kill -0 $pg 2>/dev/null; do sleep 1; done; \
         kill -INT $pg 2>/dev/null; wait $pg; rm -rf {root}",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        sock = socket_dir.display(),
        root = root.display(),
    );
    let log_path = root.join("postgres.log");
    let log = std::fs::File::create(&log_path)?;
    command(Path::new("/bin/sh"))
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting postgres")?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(url);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the throwaway PostgreSQL did not start within 30 s (see {})",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
