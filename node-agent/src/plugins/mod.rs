//! Streaming-server plugins: what differs between service types.
//!
//! The supervisor owns everything generic about a service's process (directories, spawning,
//! process groups, readiness deadlines, stop/kill, crash loops, adoption, log tailing). A
//! [`Plugin`] answers the type-specific questions: which config files to write, which program to
//! run with which arguments and as which user, how to tell that it is ready, how to read its
//! statistics, and whether a changed spec can be applied by a reload signal.
//!
//! Implemented: Icecast ([`icecast`]), SHOUTcast DNAS 2 ([`shoutcast`]: the proprietary
//! `sc_serv`, available only where an operator installed it) and video ([`video`]: nginx with
//! the RTMP module, `SIGTERM` to stop, `SIGHUP` to reload, `/healthz` for readiness, `/stat`
//! for statistics). AutoDJ
//! ([`autodj`]: liquidsoap) is a second process of an audio service; it implements the same
//! interface as its own plugin, supervised as a sibling unit of the service's server process
//! ([`Plugins::sibling`]).

pub mod autodj;
pub mod http;
pub mod icecast;
pub mod shoutcast;
pub mod video;
mod xml;

use std::ffi::OsString;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use castplane_proto::agent::v1::ServiceSpec;
use castplane_proto::v1::{PluginCapability, ServiceStats, ServiceType};
use nix::sys::signal::Signal;

pub use autodj::AutoDjPlugin;
pub use icecast::IcecastPlugin;
pub use shoutcast::ShoutcastPlugin;
pub use video::VideoPlugin;

/// A boxed future, so [`Plugin`] stays object-safe without an async-trait dependency.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A config file a plugin wants written into the service directory.
pub struct ConfigFile {
    pub name: &'static str,
    pub contents: String,
    /// Readable by the service's group (the server runs in it) but never by others: configs
    /// carry passwords.
    pub mode: u32,
}

/// The program to run, with its arguments and the environment it needs beyond the minimal
/// one the supervisor gives every server.
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

/// The system account a server runs as when the agent runs as root.
#[derive(Clone, Copy, Debug)]
pub struct ServiceAccount {
    pub user: &'static str,
    pub group: &'static str,
}

/// One readiness probe's verdict.
pub enum Readiness {
    Ready,
    NotReady(String),
}

/// How a running service takes a newer spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateMode {
    /// Re-render the config and send the plugin's reload signal.
    Reload,
    /// Re-render the config and restart the process.
    Restart,
    /// Re-render the config but leave the process alone: nothing it reads changed. For servers
    /// whose reload disturbs clients (nginx-rtmp: see [`video`]).
    Rewrite,
}

pub trait Plugin: Send + Sync {
    fn service_type(&self) -> ServiceType;

    /// The server program's name as people know it, used in messages ("icecast2 exited …").
    fn program_name(&self) -> &'static str;

    /// Rejects specs the server cannot run, before anything is written.
    fn validate(&self, spec: &ServiceSpec) -> Result<(), String>;

    /// Ports the server binds; checked for conflicts before it is spawned.
    fn ports(&self, spec: &ServiceSpec) -> Result<Vec<u16>, String>;

    /// `None` runs the server as the agent's own user even when that is root.
    fn account(&self) -> Option<ServiceAccount>;

    /// Subdirectories of the service directory the server needs, created before every start
    /// and owned, like the service directory, by its account.
    fn data_dirs(&self) -> &'static [&'static str] {
        &[]
    }

    /// Directories outside the service directory the process reads (AutoDJ: the owner's media
    /// library). The supervisor creates missing ones, readable by the process's group, and
    /// never changes or removes existing ones: they are not the service's.
    fn external_dirs(&self, _spec: &ServiceSpec) -> Result<Vec<PathBuf>, String> {
        Ok(Vec::new())
    }

    /// The file in the service directory that takes the process's stdout and stderr. A sibling
    /// unit has its own, so each process's lines stay its own.
    fn log_file(&self) -> &'static str {
        "stderr.log"
    }

    /// The file in the service directory that records the running process for re-adoption.
    fn record_file(&self) -> &'static str {
        "process.json"
    }

    fn render(&self, spec: &ServiceSpec, dir: &Path) -> Result<Vec<ConfigFile>, String>;

    fn launch(&self, dir: &Path) -> Result<Launch, String>;

    /// A pid file the server writes once it has initialised; readiness probes wait for it.
    fn pid_file(&self, dir: &Path) -> Option<PathBuf>;

    /// A line the server logs once connecting to it is safe; readiness probes also wait for
    /// it. `None`: any time after the pid file is safe.
    fn ready_log_marker(&self) -> Option<&'static str> {
        None
    }

    /// Whether a process with this command line is this plugin's server for `dir`; guards
    /// adoption against pid reuse.
    fn owns_process(&self, cmdline: &[OsString], dir: &Path) -> bool;

    /// How long a start may take before it counts as failed, given the agent's setting.
    fn ready_timeout(&self, configured: Duration) -> Duration {
        configured
    }

    /// Whether starting takes seconds of CPU. The supervisor starts at most one such process
    /// per core at a time: a host starting many at once (after a reboot, or tests in
    /// parallel) would otherwise stretch every start past its readiness timeout, and the
    /// retries would make it worse.
    fn costly_start(&self) -> bool {
        false
    }

    fn probe_ready<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Readiness>;

    /// `Ready` once what an earlier run of this process held in another process is free
    /// again (AutoDJ: its mount in icecast2). A new run is spawned only then, so that its
    /// readiness probe cannot mistake what is left of the old run for the new one.
    fn probe_released<'a>(&'a self, _spec: &'a ServiceSpec) -> BoxFuture<'a, Readiness> {
        Box::pin(async { Readiness::Ready })
    }

    fn stats<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Result<ServiceStats, String>>;

    fn update_mode(&self, running: &ServiceSpec, next: &ServiceSpec) -> UpdateMode;

    fn stop_signal(&self) -> Signal {
        Signal::SIGTERM
    }

    fn reload_signal(&self) -> Signal {
        Signal::SIGHUP
    }

    /// Whether the status after the stop signal means a clean shutdown.
    fn clean_stop(&self, status: ExitStatus) -> bool {
        status.success()
    }
}

/// The plugins this agent implements.
pub struct Plugins {
    icecast: Arc<IcecastPlugin>,
    shoutcast: Arc<ShoutcastPlugin>,
    video: Arc<VideoPlugin>,
    autodj: Arc<AutoDjPlugin>,
}

impl Plugins {
    /// `media_dir`: the customers' media libraries, which AutoDJ plays.
    pub fn new(media_dir: impl Into<PathBuf>) -> Self {
        Plugins {
            icecast: Arc::new(IcecastPlugin::new()),
            shoutcast: Arc::new(ShoutcastPlugin::new()),
            video: Arc::new(VideoPlugin::new()),
            autodj: Arc::new(AutoDjPlugin::new(media_dir)),
        }
    }

    /// The sibling unit services of this type can have (audio: AutoDJ), whether or not a given
    /// spec asks for it: what may be running beside the server, to adopt or to stop.
    pub fn sibling_for_type(&self, service_type: i32) -> Option<Arc<dyn Plugin>> {
        match ServiceType::try_from(service_type) {
            Ok(ServiceType::Icecast | ServiceType::Shoutcast) => Some(self.autodj.clone()),
            _ => None,
        }
    }

    /// The sibling unit `spec` asks for: AutoDJ for an audio service (icecast, shoutcast) with
    /// `autodj`. Video has none; the control plane offers AutoDJ for audio only.
    pub fn sibling(&self, spec: &ServiceSpec) -> Option<Arc<dyn Plugin>> {
        if spec.autodj {
            self.sibling_for_type(spec.r#type)
        } else {
            None
        }
    }

    /// The plugin for a service type, or the reason this agent cannot run it.
    pub fn for_type(&self, service_type: i32) -> Result<Arc<dyn Plugin>, String> {
        match ServiceType::try_from(service_type) {
            Ok(ServiceType::Icecast) => Ok(self.icecast.clone()),
            Ok(ServiceType::Shoutcast) => Ok(self.shoutcast.clone()),
            Ok(ServiceType::Video) => Ok(self.video.clone()),
            Ok(ServiceType::Unspecified) => Err("the service has no type".to_owned()),
            Err(_) => Err(format!("unknown service type {service_type}")),
        }
    }
}

/// The addresses a service's server listens on: the node's bind address (resolved by the
/// supervisor, see [`crate::supervisor::resolve_bind_address`]) and, unless that already
/// covers it, 127.0.0.1 — where the agent probes the server, AutoDJ feeds it, and the servers'
/// local-only pages are reached from. A server never listens on interfaces it was not given.
pub fn listen_addresses(spec: &ServiceSpec) -> Result<Vec<IpAddr>, String> {
    let bind: IpAddr = spec.bind_address.parse().map_err(|_| {
        format!(
            "the service has no valid bind address ({:?})",
            spec.bind_address
        )
    })?;
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Ok(if bind == loopback || bind.is_unspecified() {
        vec![bind]
    } else {
        vec![bind, loopback]
    })
}

/// `addr:port` as servers' configs write it (`[v6]:port`).
pub fn socket_text(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

/// Where programs are looked up when `PATH` lacks them: services are often started with a
/// minimal environment, and nginx lives in an sbin directory.
const FALLBACK_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The executable `name` on `PATH` (then the usual system directories).
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let from_env = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_env
        .into_iter()
        .chain(FALLBACK_PATH.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `program args` and returns its stdout and stderr together (tools disagree on which one
/// carries the version).
async fn version_output(program: &Path, args: &[&str]) -> Result<String, String> {
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(VERSION_TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "{} {} did not answer within {} s",
                program.display(),
                args.join(" "),
                VERSION_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(text)
}

/// The first whitespace-separated token after `marker` that starts with a digit.
fn version_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    text[start..]
        .split(|c: char| c.is_whitespace() || c == '/')
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .map(|t| {
            t.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
}

/// A program found on this host, with its version when it could be read.
struct Found {
    path: PathBuf,
    version: Result<String, String>,
}

async fn probe_program(name: &str, args: &[&str], marker: &str) -> Option<Found> {
    let path = find_program(name)?;
    let version = version_output(&path, args).await.and_then(|out| {
        version_after(&out, marker).ok_or_else(|| format!("{} printed no version", path.display()))
    });
    Some(Found { path, version })
}

/// Which service types this host can run, one entry per type.
///
/// A type is `available` only when its programs are installed **and** this agent has a plugin
/// for it, because placement trusts this flag: reporting shoutcast as available before its
/// plugin exists would place services here that can only fail. `version` and `detail` still
/// say what was found, so an operator can see what the host has.
pub async fn detect_capabilities() -> Vec<PluginCapability> {
    let (icecast, sc_serv, nginx, liquidsoap) = tokio::join!(
        probe_program("icecast2", &["-v"], "Icecast"),
        async { find_program("sc_serv") },
        probe_program("nginx", &["-v"], "nginx/"),
        probe_program("liquidsoap", &["--version"], "Liquidsoap"),
    );

    let autodj_available = liquidsoap.as_ref().is_some_and(|l| l.version.is_ok());
    let autodj_note = match &liquidsoap {
        Some(Found {
            path,
            version: Ok(v),
        }) => format!("AutoDJ: liquidsoap {v} at {}", path.display()),
        Some(Found {
            path,
            version: Err(e),
        }) => format!(
            "AutoDJ unavailable: liquidsoap at {} is unusable: {e}",
            path.display()
        ),
        None => "AutoDJ unavailable: liquidsoap not found".to_owned(),
    };

    let icecast_cap = match icecast {
        Some(Found {
            path,
            version: Ok(v),
        }) => PluginCapability {
            r#type: ServiceType::Icecast as i32,
            available: true,
            version: format!("icecast2 {v}"),
            detail: format!("icecast2 at {}; {autodj_note}", path.display()),
            autodj_available,
        },
        Some(Found {
            path,
            version: Err(e),
        }) => PluginCapability {
            r#type: ServiceType::Icecast as i32,
            available: false,
            version: String::new(),
            detail: format!("icecast2 at {} is unusable: {e}", path.display()),
            autodj_available,
        },
        None => PluginCapability {
            r#type: ServiceType::Icecast as i32,
            available: false,
            version: String::new(),
            detail: "icecast2 not found (install the icecast2 package)".to_owned(),
            autodj_available,
        },
    };

    // sc_serv prints no version without starting a server, so none is read. AutoDJ feeds it
    // with the same liquidsoap as icecast2's.
    let shoutcast_cap = PluginCapability {
        r#type: ServiceType::Shoutcast as i32,
        available: sc_serv.is_some(),
        version: if sc_serv.is_some() {
            "sc_serv (SHOUTcast DNAS 2)".to_owned()
        } else {
            String::new()
        },
        detail: match sc_serv {
            Some(path) => format!("sc_serv at {}; {autodj_note}", path.display()),
            None => "sc_serv (SHOUTcast DNAS 2, proprietary) not found on PATH; install it there to run shoutcast services".to_owned(),
        },
        autodj_available,
    };

    let video_cap = match (nginx, video::find_rtmp_module()) {
        (
            Some(Found {
                path,
                version: Ok(v),
            }),
            Some(module),
        ) => PluginCapability {
            r#type: ServiceType::Video as i32,
            available: true,
            version: format!("nginx {v} (rtmp)"),
            detail: format!(
                "nginx at {} with the RTMP module at {}",
                path.display(),
                module.display()
            ),
            autodj_available: false,
        },
        (
            Some(Found {
                path,
                version: Err(e),
            }),
            Some(_),
        ) => PluginCapability {
            r#type: ServiceType::Video as i32,
            available: false,
            version: String::new(),
            detail: format!("nginx at {} is unusable: {e}", path.display()),
            autodj_available: false,
        },
        (Some(Found { path, version }), None) => PluginCapability {
            r#type: ServiceType::Video as i32,
            available: false,
            version: version
                .as_ref()
                .map(|v| format!("nginx {v}"))
                .unwrap_or_default(),
            detail: format!(
                "nginx at {} lacks the RTMP module (install libnginx-mod-rtmp)",
                path.display()
            ),
            autodj_available: false,
        },
        (None, _) => PluginCapability {
            r#type: ServiceType::Video as i32,
            available: false,
            version: String::new(),
            detail: "nginx not found (install nginx and libnginx-mod-rtmp)".to_owned(),
            autodj_available: false,
        },
    };

    vec![icecast_cap, shoutcast_cap, video_cap]
}

/// The programs [`detect_capabilities`] probes, as found now: path, size and modification
/// time of each. Cheap (a few `stat`s); when it is unchanged, so are the capabilities, and the
/// probes (which run the programs: `liquidsoap --version` alone takes 0.16 s of CPU) need not
/// run again.
pub fn capability_fingerprint() -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    ["icecast2", "sc_serv", "nginx", "liquidsoap"]
        .iter()
        .filter_map(|name| find_program(name))
        .chain(video::find_rtmp_module())
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, size, modified)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_tool_banners() {
        assert_eq!(
            version_after("Icecast 2.4.4\n", "Icecast").as_deref(),
            Some("2.4.4")
        );
        assert_eq!(
            version_after("\nnginx version: nginx/1.22.1\n", "nginx/").as_deref(),
            Some("1.22.1")
        );
        assert_eq!(
            version_after(
                "Liquidsoap 2.1.3\nCopyright (c) 2003-2022 Savonet team",
                "Liquidsoap"
            )
            .as_deref(),
            Some("2.1.3")
        );
        assert_eq!(version_after("no banner", "Icecast"), None);
    }

    #[test]
    fn every_type_has_a_plugin_and_unknown_ones_say_so() {
        let plugins = Plugins::new("/srv/media");
        let shoutcast = plugins
            .for_type(ServiceType::Shoutcast as i32)
            .expect("shoutcast");
        assert_eq!(shoutcast.program_name(), "sc_serv");
        assert!(plugins.for_type(ServiceType::Video as i32).is_ok());
        assert!(plugins.for_type(ServiceType::Unspecified as i32).is_err());
        assert!(plugins.for_type(ServiceType::Icecast as i32).is_ok());
    }

    #[test]
    fn only_audio_services_with_autodj_get_a_sibling() {
        let plugins = Plugins::new("/srv/media");
        let mut spec = ServiceSpec {
            r#type: ServiceType::Icecast as i32,
            ..Default::default()
        };
        assert!(plugins.sibling(&spec).is_none());
        spec.autodj = true;
        let sibling = plugins.sibling(&spec).expect("AutoDJ");
        assert_eq!(sibling.program_name(), "liquidsoap");
        assert_eq!(sibling.log_file(), "autodj.log");
        assert_eq!(sibling.record_file(), "autodj.json");
        spec.r#type = ServiceType::Shoutcast as i32;
        let sibling = plugins.sibling(&spec).expect("AutoDJ for shoutcast");
        assert_eq!(sibling.program_name(), "liquidsoap");
        spec.r#type = ServiceType::Video as i32;
        assert!(plugins.sibling(&spec).is_none());
        assert!(
            plugins
                .sibling_for_type(ServiceType::Video as i32)
                .is_none()
        );
        assert!(
            plugins
                .sibling_for_type(ServiceType::Icecast as i32)
                .is_some()
        );
    }
}
