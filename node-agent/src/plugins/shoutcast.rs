//! SHOUTcast DNAS 2 (`sc_serv`, proprietary: never installed by castplane).
//!
//! What this plugin relies on, from the DNAS 2 documentation and its option table (the
//! binary cannot be installed here, so none of it is measured; tests render and parse the
//! documented formats):
//! - `sc_serv CONFIG` runs in the foreground with a `key=value` config, one per line. A line
//!   starting with `;`, `#` or `[` is a comment; there is no quoting or escaping, so a value
//!   ends at the end of its line. Per-stream keys take a `_N` suffix (`streampath_1`).
//! - `portbase` serves listeners, admin pages and 2.x sources; 1.x sources connect to
//!   `portlegacy`, by default `portbase + 1` — why placement gives shoutcast two consecutive
//!   ports ("http" and "legacy-source"). Both are written explicitly.
//! - `srcip` / `destip` take one address each (sources / listeners); without them sc_serv
//!   listens on every interface. The agent probes on 127.0.0.1, so a node bound to one
//!   specific address cannot run sc_serv without listening wider than it was told: such a spec
//!   is refused rather than widened.
//! - `password` admits sources, `adminpassword` the admin pages; `maxuser` caps listeners and
//!   `streammaxbitrate_1` (kbps, as the stream-configuration JSON reports it) refuses sources
//!   above the cap. `publicserver=never` keeps the stream out of the public directory.
//! - `logfile`, `w3clog`, `banfile`, `ripfile`, `agentfile`, `adminfile` and `pidfile` name the
//!   files it writes; all go into the service directory.
//! - `/statistics?json=1` (public) lists server-wide counters (`currentlisteners`,
//!   `activestreams`, `version`) and a `streams` array whose entries carry `streampath` and
//!   `streamstatus` (1 while a source is connected). It has no byte counters, so the agent
//!   reports none.
//!
//!
//! AutoDJ (see [`super::autodj`]): liquidsoap's `output.shoutcast` is a 1.x (ICY) source. Given
//! `port=` the base port it connects to the port after it, `portlegacy` (measured with
//! liquidsoap 2.1.3: it sends the password line, reads `OK2`, sends `icy-*` headers and a blank
//! line, then MP3; it also sends title updates to `admin.cgi` on the base port). It feeds the
//! service's one stream with the service's source password: a 1.x source has no user name, and
//! the password alone picks the stream. sc_serv admits one source per stream and, per its
//! documentation, refuses another while one is connected; it has no fallback mount like
//! icecast2's that a live source could take listeners back from. So on shoutcast **a live DJ
//! cannot take over from AutoDJ**: turn AutoDJ off to broadcast live (or AutoDJ waits, retrying
//! every 3 s, while a live DJ holds the stream). The stand-in in the tests models the
//! one-source rule but not a real server's refusal text, so none of this is measured against
//! sc_serv itself.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use castplane_proto::agent::v1::ServiceSpec;
use castplane_proto::v1::{ServiceStats, ServiceType};

use super::{
    BoxFuture, ConfigFile, Launch, Plugin, Readiness, ServiceAccount, UpdateMode, find_program,
    http,
};

pub const PROGRAM: &str = "sc_serv";
pub const CONFIG_FILE: &str = "sc_serv.conf";
pub const PID_FILE: &str = "sc_serv.pid";
/// The one stream a service has, and the path listeners use (connection info says so too).
pub const STREAM_PATH: &str = "/stream";
pub const HTTP_PORT_PURPOSE: &str = "http";
pub const LEGACY_PORT_PURPOSE: &str = "legacy-source";
pub const STATISTICS_PATH: &str = "/statistics?json=1";
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const STATS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct ShoutcastPlugin;

impl ShoutcastPlugin {
    pub fn new() -> Self {
        ShoutcastPlugin
    }
}

fn port_for(spec: &ServiceSpec, purpose: &str) -> Result<u16, String> {
    let assignment = spec
        .ports
        .iter()
        .find(|p| p.purpose == purpose)
        .ok_or_else(|| format!("the service has no {purpose:?} port assigned"))?;
    u16::try_from(assignment.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid {purpose} port {}", assignment.port))
}

/// `portbase`: listeners, admin pages, 2.x sources.
pub fn http_port(spec: &ServiceSpec) -> Result<u16, String> {
    port_for(spec, HTTP_PORT_PURPOSE)
}

/// The address sc_serv binds, if it must be one: `None` for every interface.
fn bind_address(spec: &ServiceSpec) -> Result<Option<std::net::IpAddr>, String> {
    let addresses = super::listen_addresses(spec)?;
    match addresses.as_slice() {
        [one] if one.is_unspecified() => Ok(None),
        [one] if one.is_loopback() => Ok(Some(*one)),
        _ => Err(format!(
            "sc_serv listens on one address, and the agent reaches it on 127.0.0.1: give this node \
             bind address 0.0.0.0 (every interface) or 127.0.0.1 to run shoutcast, not {}",
            spec.bind_address
        )),
    }
}

pub fn validate(spec: &ServiceSpec) -> Result<(), String> {
    let base = http_port(spec)?;
    let legacy = port_for(spec, LEGACY_PORT_PURPOSE)?;
    if Some(legacy) != base.checked_add(1) {
        return Err(format!(
            "sc_serv takes 1.x sources on the port after its base port: expected {} for {LEGACY_PORT_PURPOSE}, got {legacy}",
            u32::from(base) + 1
        ));
    }
    bind_address(spec)?;
    if spec.max_listeners == 0 {
        return Err("max_listeners must be at least 1".to_owned());
    }
    if spec.source_password.is_empty() {
        return Err("the service has no source password".to_owned());
    }
    if spec.admin_password.is_empty() {
        return Err("the service has no admin password".to_owned());
    }
    // sc_serv itself only warns about equal passwords; equal ones would make every
    // broadcaster an administrator.
    if spec.admin_password == spec.source_password {
        return Err("the admin password must differ from the source password".to_owned());
    }
    Ok(())
}

/// A value safe on one `key=value` line: sc_serv has no escaping, so anything that could end
/// the line (CR, LF, any control character) becomes a space, and leading and trailing spaces,
/// which its parser may trim, go. No value can therefore start a new key.
pub fn config_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn line(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key}={}", config_value(value));
}

/// The service's `sc_serv.conf`. Every value, paths included, goes through [`config_value`].
pub fn render_config(spec: &ServiceSpec, dir: &Path) -> Result<String, String> {
    validate(spec)?;
    let base = http_port(spec)?;
    let legacy = port_for(spec, LEGACY_PORT_PURPOSE)?;
    let dir_text = dir
        .to_str()
        .ok_or_else(|| format!("service directory {} is not valid UTF-8", dir.display()))?;
    let path_in_dir = |name: &str| format!("{}/{name}", dir_text.trim_end_matches('/'));

    let mut c = String::new();
    c.push_str("; written by castplane-agent; local changes are overwritten\n");
    line(&mut c, "portbase", &base.to_string());
    line(&mut c, "portlegacy", &legacy.to_string());
    if let Some(address) = bind_address(spec)? {
        line(&mut c, "srcip", &address.to_string());
        line(&mut c, "destip", &address.to_string());
    }
    line(&mut c, "password", &spec.source_password);
    line(&mut c, "adminpassword", &spec.admin_password);
    line(&mut c, "maxuser", &spec.max_listeners.to_string());
    line(&mut c, "publicserver", "never");
    line(&mut c, "requirestreamconfigs", "1");
    line(&mut c, "streamid_1", "1");
    line(&mut c, "streampath_1", STREAM_PATH);
    line(&mut c, "streammaxuser_1", &spec.max_listeners.to_string());
    if spec.max_bitrate_kbps > 0 {
        line(
            &mut c,
            "streammaxbitrate_1",
            &spec.max_bitrate_kbps.to_string(),
        );
    }
    // The supervisor captures stdout; the log file is the service's own.
    line(&mut c, "screenlog", "1");
    line(&mut c, "logfile", &path_in_dir("sc_serv.log"));
    line(&mut c, "w3cenable", "1");
    line(&mut c, "w3clog", &path_in_dir("sc_w3c.log"));
    line(&mut c, "banfile", &path_in_dir("sc_serv.ban"));
    line(&mut c, "ripfile", &path_in_dir("sc_serv.rip"));
    line(&mut c, "agentfile", &path_in_dir("sc_serv.agent"));
    line(&mut c, "adminfile", &path_in_dir("sc_serv.admin"));
    line(&mut c, "pidfile", &path_in_dir(PID_FILE));
    Ok(c)
}

/// The server's statistics (see [`parse_statistics`]); AutoDJ reads them too.
pub async fn statistics(spec: &ServiceSpec) -> Result<ServiceStats, String> {
    let port = http_port(spec)?;
    let response = http::get(port, STATISTICS_PATH, None, STATS_TIMEOUT).await?;
    match response.status {
        200 => parse_statistics(&response.body),
        status => Err(format!("{STATISTICS_PATH} answered HTTP {status}")),
    }
}

/// Readiness from a `/statistics?json=1` body: it parses and names the server's version.
pub fn parse_ready(body: &[u8]) -> Readiness {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v.get("version").is_some_and(|s| s.is_string()) => Readiness::Ready,
        Ok(_) => Readiness::NotReady("statistics have no version yet".to_owned()),
        Err(e) => Readiness::NotReady(format!("statistics are not valid JSON yet: {e}")),
    }
}

fn number(value: &serde_json::Value, key: &str) -> u64 {
    match value.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        // Some builds quote their numbers.
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Statistics from `/statistics?json=1`: listeners across streams, connected sources, and
/// the paths of the streams that have one.
pub fn parse_statistics(body: &[u8]) -> Result<ServiceStats, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("statistics are not JSON: {e}"))?;
    if !v.is_object() {
        return Err("statistics are not a JSON object".to_owned());
    }
    let mut stats = ServiceStats {
        listeners: u32::try_from(number(&v, "currentlisteners")).unwrap_or(u32::MAX),
        sources: u32::try_from(number(&v, "activestreams")).unwrap_or(u32::MAX),
        ..Default::default()
    };
    if let Some(streams) = v.get("streams").and_then(|s| s.as_array()) {
        for stream in streams {
            if number(stream, "streamstatus") == 1
                && let Some(path) = stream.get("streampath").and_then(|p| p.as_str())
            {
                stats.mounts.push(path.to_owned());
            }
        }
    }
    Ok(stats)
}

impl Plugin for ShoutcastPlugin {
    fn service_type(&self) -> ServiceType {
        ServiceType::Shoutcast
    }

    fn program_name(&self) -> &'static str {
        PROGRAM
    }

    fn validate(&self, spec: &ServiceSpec) -> Result<(), String> {
        validate(spec)
    }

    fn ports(&self, spec: &ServiceSpec) -> Result<Vec<u16>, String> {
        Ok(vec![http_port(spec)?, port_for(spec, LEGACY_PORT_PURPOSE)?])
    }

    fn account(&self) -> Option<ServiceAccount> {
        // No package creates a user for the proprietary binary; it never runs as root.
        Some(ServiceAccount {
            user: "nobody",
            group: "nogroup",
        })
    }

    fn render(&self, spec: &ServiceSpec, dir: &Path) -> Result<Vec<ConfigFile>, String> {
        Ok(vec![ConfigFile {
            name: CONFIG_FILE,
            contents: render_config(spec, dir)?,
            mode: 0o640,
        }])
    }

    fn launch(&self, dir: &Path) -> Result<Launch, String> {
        let program = find_program(PROGRAM)
            .ok_or_else(|| "sc_serv (SHOUTcast DNAS 2) is not installed on this host".to_owned())?;
        Ok(Launch {
            program,
            args: vec![dir.join(CONFIG_FILE).into_os_string()],
            env: Vec::new(),
        })
    }

    fn pid_file(&self, dir: &Path) -> Option<PathBuf> {
        Some(dir.join(PID_FILE))
    }

    fn owns_process(&self, cmdline: &[OsString], dir: &Path) -> bool {
        let is_sc_serv = cmdline
            .first()
            .and_then(|argv0| Path::new(argv0).file_name())
            .is_some_and(|name| name == PROGRAM);
        let config = dir.join(CONFIG_FILE).into_os_string();
        is_sc_serv && cmdline.iter().skip(1).any(|arg| *arg == config)
    }

    fn probe_ready<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Readiness> {
        Box::pin(async move {
            let port = match http_port(spec) {
                Ok(p) => p,
                Err(e) => return Readiness::NotReady(e),
            };
            match http::get(port, STATISTICS_PATH, None, PROBE_TIMEOUT).await {
                Ok(r) if r.status == 200 => parse_ready(&r.body),
                Ok(r) => Readiness::NotReady(format!("statistics answered HTTP {}", r.status)),
                Err(e) => Readiness::NotReady(e),
            }
        })
    }

    fn stats<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Result<ServiceStats, String>> {
        Box::pin(statistics(spec))
    }

    fn update_mode(&self, running: &ServiceSpec, next: &ServiceSpec) -> UpdateMode {
        // The documentation's reload (admin.cgi?mode=reload) re-reads only some options and
        // none of the listen settings: a changed config restarts the server.
        let dir = Path::new("/srv/shoutcast");
        match (render_config(running, dir), render_config(next, dir)) {
            (Ok(old), Ok(new)) if old == new => UpdateMode::Rewrite,
            _ => UpdateMode::Restart,
        }
    }
}

#[cfg(test)]
mod tests {
    use castplane_proto::v1::PortAssignment;

    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            id: "svc-1".into(),
            name: "radio".into(),
            display_name: "Radio One".into(),
            r#type: ServiceType::Shoutcast as i32,
            ports: vec![
                PortAssignment {
                    purpose: "http".into(),
                    port: 8010,
                },
                PortAssignment {
                    purpose: "legacy-source".into(),
                    port: 8011,
                },
            ],
            max_listeners: 50,
            max_bitrate_kbps: 128,
            source_password: "src-pass".into(),
            admin_password: "adm-pass".into(),
            relay_password: "rel-pass".into(),
            public_host: "radio.example.net".into(),
            bind_address: "0.0.0.0".into(),
            desired_running: true,
            generation: 1,
            ..Default::default()
        }
    }

    fn value_of(config: &str, key: &str) -> Option<String> {
        config
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
    }

    #[test]
    fn the_config_has_both_ports_the_limits_and_every_path_in_the_service_directory() {
        let config = render_config(&spec(), Path::new("/data/services/svc-1")).expect("render");
        assert_eq!(value_of(&config, "portbase").as_deref(), Some("8010"));
        assert_eq!(value_of(&config, "portlegacy").as_deref(), Some("8011"));
        assert_eq!(value_of(&config, "password").as_deref(), Some("src-pass"));
        assert_eq!(
            value_of(&config, "adminpassword").as_deref(),
            Some("adm-pass")
        );
        assert_eq!(value_of(&config, "maxuser").as_deref(), Some("50"));
        assert_eq!(value_of(&config, "streammaxuser_1").as_deref(), Some("50"));
        assert_eq!(
            value_of(&config, "streammaxbitrate_1").as_deref(),
            Some("128")
        );
        assert_eq!(
            value_of(&config, "streampath_1").as_deref(),
            Some("/stream")
        );
        assert_eq!(value_of(&config, "publicserver").as_deref(), Some("never"));
        assert_eq!(
            value_of(&config, "pidfile").as_deref(),
            Some("/data/services/svc-1/sc_serv.pid")
        );
        for key in [
            "logfile",
            "w3clog",
            "banfile",
            "ripfile",
            "agentfile",
            "adminfile",
        ] {
            let path = value_of(&config, key).unwrap_or_default();
            assert!(path.starts_with("/data/services/svc-1/"), "{key}={path}");
        }
        // Every interface: no address given.
        assert_eq!(value_of(&config, "destip"), None);
        // Every line is a comment or one key=value.
        for l in config.lines() {
            assert!(l.starts_with(';') || l.split_once('=').is_some(), "{l}");
        }
    }

    #[test]
    fn no_value_can_start_a_new_line() {
        let mut s = spec();
        s.source_password = "pw\nadminpassword=owned\r\nmaxuser=99999".into();
        let config = render_config(&s, Path::new("/d")).expect("render");
        assert_eq!(
            value_of(&config, "adminpassword").as_deref(),
            Some("adm-pass")
        );
        assert_eq!(value_of(&config, "maxuser").as_deref(), Some("50"));
        assert_eq!(
            config
                .lines()
                .filter(|l| l.starts_with("adminpassword="))
                .count(),
            1
        );
        assert_eq!(config_value("  a\tb\u{7}c  "), "a b c");
    }

    #[test]
    fn loopback_binds_one_address_and_a_specific_address_is_refused() {
        let mut s = spec();
        s.bind_address = "127.0.0.1".into();
        let config = render_config(&s, Path::new("/d")).expect("render");
        assert_eq!(value_of(&config, "destip").as_deref(), Some("127.0.0.1"));
        assert_eq!(value_of(&config, "srcip").as_deref(), Some("127.0.0.1"));
        s.bind_address = "192.0.2.10".into();
        let err = validate(&s).expect_err("one specific address");
        assert!(err.contains("0.0.0.0"), "{err}");
    }

    #[test]
    fn specs_sc_serv_cannot_run_are_refused() {
        let mut s = spec();
        s.ports[1].port = 8020;
        assert!(validate(&s).expect_err("not consecutive").contains("8011"));
        let mut s = spec();
        s.admin_password = s.source_password.clone();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.max_listeners = 0;
        assert!(validate(&s).is_err());
    }

    #[test]
    fn autodj_is_accepted_and_turning_it_on_leaves_sc_serv_running() {
        let mut with_autodj = spec();
        with_autodj.autodj = true;
        with_autodj.owner_customer_id = "cus_A".into();
        validate(&with_autodj).expect("AutoDJ is supported");
        // AutoDJ is a source like any other: sc_serv's config does not change.
        assert_eq!(
            ShoutcastPlugin.update_mode(&spec(), &with_autodj),
            UpdateMode::Rewrite
        );
    }

    /// The example of the DNAS "Server Statistics" response (`/statistics?json=1`), with the
    /// documentation's comments left out.
    const DOCUMENTED_STATISTICS: &str = r#"{
        "totalstreams":2,
        "activestreams":1,
        "currentlisteners":3,
        "peaklisteners":5,
        "maxlisteners":32,
        "uniquelisteners":3,
        "averagetime":0,
        "version":"2.4.7.247 (armv6(rpi))",
        "streams":[
          {"id":1,"currentlisteners":3,"peaklisteners":5,"maxlisteners":32,"uniquelisteners":3,
           "averagetime":0,"servergenre":"Misc","servertitle":"Test Server","songtitle":"",
           "streamhits":0,"streamstatus":1,"backupstatus":0,"streamlisted":0,
           "streampath":"/stream","streamuptime":123,"bitrate":"128","content":"audio/mpeg"},
          {"id":2,"currentlisteners":0,"streamstatus":0,"streampath":"/other"}
        ]
    }"#;

    #[test]
    fn statistics_are_read_from_the_documented_response() {
        let stats = parse_statistics(DOCUMENTED_STATISTICS.as_bytes()).expect("parse");
        assert_eq!(stats.listeners, 3);
        assert_eq!(stats.sources, 1);
        assert_eq!(stats.mounts, vec!["/stream".to_owned()]);
        assert_eq!((stats.bytes_read, stats.bytes_sent), (0, 0));
        assert!(matches!(
            parse_ready(DOCUMENTED_STATISTICS.as_bytes()),
            Readiness::Ready
        ));
        assert!(matches!(parse_ready(b"{\"total"), Readiness::NotReady(_)));
        assert!(parse_statistics(b"[]").is_err());
        // Quoted numbers, as some builds send them, count too.
        let quoted =
            parse_statistics(br#"{"currentlisteners":"7","activestreams":"1"}"#).expect("quoted");
        assert_eq!((quoted.listeners, quoted.sources), (7, 1));
    }

    #[test]
    fn only_its_own_sc_serv_is_adopted() {
        let dir = Path::new("/data/services/svc-1");
        let plugin = ShoutcastPlugin::new();
        let own = [
            OsString::from("/opt/sc/sc_serv"),
            dir.join(CONFIG_FILE).into_os_string(),
        ];
        assert!(plugin.owns_process(&own, dir));
        let other = [
            OsString::from("/opt/sc/sc_serv"),
            OsString::from("/data/services/svc-2/sc_serv.conf"),
        ];
        assert!(!plugin.owns_process(&other, dir));
        let impostor = [
            OsString::from("/usr/bin/python3"),
            dir.join(CONFIG_FILE).into_os_string(),
        ];
        assert!(!plugin.owns_process(&impostor, dir));
    }
}
