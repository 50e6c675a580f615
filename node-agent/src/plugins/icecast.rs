//! Icecast 2 (Debian's `icecast2` 2.4.4).
//!
//! Facts this plugin relies on (measured; see also `/work/shared/notes/streaming-servers.md`):
//! - A connection in icecast2's first milliseconds can crash it (see [`STATS_READY_MARKER`]), so
//!   readiness probes wait for the pid file and that log line before connecting.
//! - `/status-json.xsl` answers before the server is fully up, with invalid JSON for the first
//!   ~300 ms; ready means the body parses and carries `icestats.server_id`. It lists sources
//!   (listeners, `listenurl`, `server_name`, `bitrate`) but neither the mount name nor byte
//!   counters, so statistics come from `/admin/stats` (XML, admin credentials), which has the
//!   global `listeners`/`sources` counts and per-`<source mount="…">` `total_bytes_read` /
//!   `total_bytes_sent`.
//! - `SIGHUP` re-reads the config asynchronously (~1 s). It applies passwords, limits and names
//!   (a source already connected keeps its old mount limits until it reconnects) but does **not**
//!   re-bind listen sockets, so a changed port needs a restart.
//! - 2.4 has no bitrate enforcement: `<bitrate>` only sets the advertised/stats value. The agent
//!   renders the service's maximum there; enforcing it would need a source-side check.
//! - With no global `<source-password>` icecast rejects sources on every mount that lacks its
//!   own password ("No source password set, rejecting source"); giving only `/live` a password
//!   confines a service's broadcasters to the one mount its limits apply to.
//!
//! AutoDJ (see [`super::autodj`]): liquidsoap feeds its own mount, [`AUTODJ_MOUNT`], whose
//! source password is the service's relay password (internal, never shown to users), so the
//! customer's source password still works on `/live` only (measured: 401 on `/autodj`) and
//! AutoDJ's only on `/autodj`. `/live` names `/autodj` as its `<fallback-mount>` with
//! `<fallback-override>`: per the 2.4 docs (and measured), a listener of `/live` while it has no
//! source is served `/autodj`, listeners are moved to `/autodj` when the live source leaves, and
//! a source connecting to `/live` takes every listener of `/autodj` back (icecast logs "passing
//! N listeners to /live"). Listeners on `/autodj` count against its own `<max-listeners>`, which
//! is the service's; the global `<clients>` limit still bounds both mounts together. A fallback
//! may also name a file in the web root, so while `/autodj` has no source icecast2 logs
//! "WARN source/source_fallback_file unable to open file …/web/autodj" (at start, for one):
//! harmless.

use super::xml::{element_number, xml_unescape};
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

pub const CONFIG_FILE: &str = "icecast.xml";
pub const PID_FILE: &str = "icecast.pid";
/// The one mount broadcasters may use; the control plane hands it out in connection info.
pub const LIVE_MOUNT: &str = "/live";
/// AutoDJ's mount, the fallback of [`LIVE_MOUNT`] when the service has AutoDJ.
pub const AUTODJ_MOUNT: &str = "/autodj";
pub const HTTP_PORT_PURPOSE: &str = "http";
pub const ADMIN_USER: &str = "admin";
/// Logged (at INFO, hence `<loglevel>3`) by icecast2's stats thread right after it queued the
/// initial global counters. A client connecting before that queues an increment of a counter
/// that does not exist yet, and the stats thread then crashes on `strdup(NULL)` (SIGSEGV) in
/// `process_global_event`. The event queue is FIFO, so after this line connections are safe.
/// icecast2 drops the line when the thread runs before its log is open (then it ran early,
/// which is safe too), so the supervisor waits for it only briefly.
pub const STATS_READY_MARKER: &str = "stats thread started";
/// Static files, status pages, admin requests and the source itself also count against the
/// global `<clients>` limit; the listener limit proper is the mount's `<max-listeners>`.
const CLIENT_HEADROOM: u32 = 16;
const WEB_ROOT: &str = "/usr/share/icecast2/web";
const ADMIN_ROOT: &str = "/usr/share/icecast2/admin";
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const STATS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct IcecastPlugin;

impl IcecastPlugin {
    pub fn new() -> Self {
        IcecastPlugin
    }
}

/// The spec's port with purpose "http".
pub fn http_port(spec: &ServiceSpec) -> Result<u16, String> {
    let assignment = spec
        .ports
        .iter()
        .find(|p| p.purpose == HTTP_PORT_PURPOSE)
        .ok_or_else(|| "the service has no \"http\" port assigned".to_owned())?;
    u16::try_from(assignment.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid http port {}", assignment.port))
}

/// Rejects specs icecast2 cannot run (and, with AutoDJ, that would give it no mount of its own).
pub fn validate(spec: &ServiceSpec) -> Result<(), String> {
    http_port(spec)?;
    super::listen_addresses(spec)?;
    if spec.max_listeners == 0 {
        return Err("max_listeners must be at least 1".to_owned());
    }
    if spec.source_password.is_empty() {
        return Err("the service has no source password".to_owned());
    }
    if spec.admin_password.is_empty() {
        return Err("the service has no admin password".to_owned());
    }
    if spec.autodj {
        if spec.relay_password.is_empty() {
            return Err(
                "AutoDJ needs the relay password (the source password of its mount)".to_owned(),
            );
        }
        // Equal passwords would let broadcasters onto AutoDJ's mount.
        if spec.relay_password == spec.source_password {
            return Err("the relay password must differ from the source password".to_owned());
        }
    }
    Ok(())
}

/// Escapes text for an XML element or attribute, so no user-supplied string can close an
/// element and inject configuration.
///
/// Control characters are replaced by spaces rather than escaped: XML 1.0 cannot carry most of
/// them at all (icecast would refuse the whole file), and icecast copies names such as
/// `<stream-name>` into HTTP response headers (`icy-name`), where a CR or LF would split the
/// header.
pub fn xml_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\u{FFFE}' | '\u{FFFF}' => out.push('\u{FFFD}'),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The text icecast will report for a value after [`xml_escape`] and its XML parser.
pub fn sanitized(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\u{FFFE}' | '\u{FFFF}' => '\u{FFFD}',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

fn element(out: &mut String, indent: usize, name: &str, value: &str) {
    let _ = writeln!(out, "{:indent$}<{name}>{}</{name}>", "", xml_escape(value));
}

/// The service's `icecast.xml`. Every value, paths included, goes through [`xml_escape`].
pub fn render_config(spec: &ServiceSpec, dir: &Path) -> Result<String, String> {
    validate(spec)?;
    let port = http_port(spec)?;
    let dir_text = dir
        .to_str()
        .ok_or_else(|| format!("service directory {} is not valid UTF-8", dir.display()))?;
    let path_in_dir = |name: &str| format!("{}/{name}", dir_text.trim_end_matches('/'));
    let hostname = if spec.public_host.is_empty() {
        "localhost"
    } else {
        spec.public_host.as_str()
    };
    let clients = spec.max_listeners.saturating_add(CLIENT_HEADROOM);
    let display_name = if spec.display_name.trim().is_empty() {
        spec.name.as_str()
    } else {
        spec.display_name.as_str()
    };

    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<!-- written by castplane-agent; local changes are overwritten -->\n");
    x.push_str("<icecast>\n");
    element(&mut x, 2, "location", display_name);
    element(&mut x, 2, "hostname", hostname);
    // icecast2's own default, stated so it does not warn about it on every start.
    element(&mut x, 2, "admin", "icemaster@localhost");
    x.push_str("  <limits>\n");
    element(&mut x, 4, "clients", &clients.to_string());
    element(&mut x, 4, "sources", "2");
    element(&mut x, 4, "queue-size", "524288");
    element(&mut x, 4, "header-timeout", "15");
    element(&mut x, 4, "source-timeout", "10");
    element(&mut x, 4, "burst-size", "65536");
    x.push_str("  </limits>\n");
    x.push_str("  <authentication>\n");
    if !spec.relay_password.is_empty() {
        element(&mut x, 4, "relay-password", &spec.relay_password);
    }
    element(&mut x, 4, "admin-user", ADMIN_USER);
    element(&mut x, 4, "admin-password", &spec.admin_password);
    x.push_str("  </authentication>\n");
    // One socket per address: icecast2 binds every interface when given none.
    for address in super::listen_addresses(spec)? {
        x.push_str("  <listen-socket>\n");
        element(&mut x, 4, "port", &port.to_string());
        element(&mut x, 4, "bind-address", &address.to_string());
        x.push_str("  </listen-socket>\n");
    }
    x.push_str("  <http-headers>\n");
    x.push_str("    <header name=\"Access-Control-Allow-Origin\" value=\"*\" />\n");
    x.push_str("  </http-headers>\n");
    x.push_str("  <mount type=\"normal\">\n");
    element(&mut x, 4, "mount-name", LIVE_MOUNT);
    element(&mut x, 4, "password", &spec.source_password);
    element(&mut x, 4, "max-listeners", &spec.max_listeners.to_string());
    element(&mut x, 4, "stream-name", display_name);
    if spec.max_bitrate_kbps > 0 {
        element(&mut x, 4, "bitrate", &spec.max_bitrate_kbps.to_string());
    }
    element(&mut x, 4, "public", "0");
    if spec.autodj {
        element(&mut x, 4, "fallback-mount", AUTODJ_MOUNT);
        // A live source takes the listeners back from AutoDJ.
        element(&mut x, 4, "fallback-override", "1");
    }
    x.push_str("  </mount>\n");
    if spec.autodj {
        // No stream name: listeners see the one liquidsoap announces (the display name).
        x.push_str("  <mount type=\"normal\">\n");
        element(&mut x, 4, "mount-name", AUTODJ_MOUNT);
        element(&mut x, 4, "password", &spec.relay_password);
        element(&mut x, 4, "max-listeners", &spec.max_listeners.to_string());
        element(&mut x, 4, "public", "0");
        x.push_str("  </mount>\n");
    }
    element(&mut x, 2, "fileserve", "1");
    x.push_str("  <paths>\n");
    element(&mut x, 4, "basedir", dir_text);
    element(&mut x, 4, "logdir", dir_text);
    element(&mut x, 4, "pidfile", &path_in_dir(PID_FILE));
    element(&mut x, 4, "webroot", WEB_ROOT);
    element(&mut x, 4, "adminroot", ADMIN_ROOT);
    x.push_str("  </paths>\n");
    x.push_str("  <logging>\n");
    element(&mut x, 4, "accesslog", "access.log");
    // "-" sends icecast's own log to stderr, which the supervisor captures and tails.
    element(&mut x, 4, "errorlog", "-");
    element(&mut x, 4, "loglevel", "3");
    element(&mut x, 4, "logsize", "10000");
    x.push_str("  </logging>\n");
    x.push_str("  <security>\n");
    element(&mut x, 4, "chroot", "0");
    x.push_str("  </security>\n");
    x.push_str("</icecast>\n");
    Ok(x)
}

/// Readiness from a `/status-json.xsl` body.
pub fn parse_status_json(body: &[u8]) -> Readiness {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v)
            if v.pointer("/icestats/server_id")
                .is_some_and(|s| s.is_string()) =>
        {
            Readiness::Ready
        }
        Ok(_) => Readiness::NotReady("status-json.xsl has no icestats.server_id yet".to_owned()),
        Err(e) => Readiness::NotReady(format!("status-json.xsl is not valid JSON yet: {e}")),
    }
}

/// Statistics from `/admin/stats`. Its layout is flat and regular (the global counters, then one
/// `<source mount="…">` element per mount), which a scan handles without an XML parser.
pub fn parse_admin_stats(xml: &str) -> Result<ServiceStats, String> {
    let start = xml
        .find("<icestats>")
        .ok_or_else(|| "admin stats have no <icestats> element".to_owned())?;
    let mut rest = &xml[start..];
    let mut global = String::new();
    let mut stats = ServiceStats::default();
    while let Some(at) = rest.find("<source mount=") {
        global.push_str(&rest[..at]);
        let source = &rest[at..];
        let head_end = source
            .find('>')
            .ok_or_else(|| "truncated <source> element".to_owned())?;
        let head = &source[..head_end];
        let (body, next) = match source.find("</source>") {
            Some(end) => (&source[head_end..end], &source[end + "</source>".len()..]),
            None => return Err("unterminated <source> element".to_owned()),
        };
        let quote = head
            .as_bytes()
            .get("<source mount=".len())
            .copied()
            .unwrap_or(b'"') as char;
        let mount = head["<source mount=".len()..].trim().trim_matches(quote);
        stats.mounts.push(xml_unescape(mount));
        stats.bytes_read = stats
            .bytes_read
            .saturating_add(element_number(body, "total_bytes_read"));
        stats.bytes_sent = stats
            .bytes_sent
            .saturating_add(element_number(body, "total_bytes_sent"));
        rest = next;
    }
    global.push_str(rest);
    stats.listeners = u32::try_from(element_number(&global, "listeners")).unwrap_or(u32::MAX);
    stats.sources = u32::try_from(element_number(&global, "sources")).unwrap_or(u32::MAX);
    Ok(stats)
}

/// The server's statistics from `/admin/stats`: unlike the public status page, it names each
/// mount and counts its bytes.
pub async fn admin_stats(spec: &ServiceSpec) -> Result<ServiceStats, String> {
    let port = http_port(spec)?;
    let response = http::get(
        port,
        "/admin/stats",
        Some((ADMIN_USER, spec.admin_password.as_str())),
        STATS_TIMEOUT,
    )
    .await?;
    match response.status {
        200 => parse_admin_stats(&String::from_utf8_lossy(&response.body)),
        401 => Err("icecast2 rejected the admin credentials for /admin/stats".to_owned()),
        status => Err(format!("/admin/stats answered HTTP {status}")),
    }
}

impl Plugin for IcecastPlugin {
    fn service_type(&self) -> ServiceType {
        ServiceType::Icecast
    }

    fn program_name(&self) -> &'static str {
        "icecast2"
    }

    fn validate(&self, spec: &ServiceSpec) -> Result<(), String> {
        validate(spec)
    }

    fn ports(&self, spec: &ServiceSpec) -> Result<Vec<u16>, String> {
        Ok(vec![http_port(spec)?])
    }

    fn account(&self) -> Option<ServiceAccount> {
        // icecast2 refuses to run as root.
        Some(ServiceAccount {
            user: "icecast2",
            group: "icecast",
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
        let program = find_program("icecast2")
            .ok_or_else(|| "icecast2 is not installed on this host".to_owned())?;
        Ok(Launch {
            program,
            args: vec!["-c".into(), dir.join(CONFIG_FILE).into_os_string()],
            env: Vec::new(),
        })
    }

    fn pid_file(&self, dir: &Path) -> Option<PathBuf> {
        Some(dir.join(PID_FILE))
    }

    fn ready_log_marker(&self) -> Option<&'static str> {
        Some(STATS_READY_MARKER)
    }

    fn owns_process(&self, cmdline: &[OsString], dir: &Path) -> bool {
        let is_icecast = cmdline
            .first()
            .and_then(|argv0| Path::new(argv0).file_name())
            .is_some_and(|name| name == "icecast2");
        let config = dir.join(CONFIG_FILE).into_os_string();
        is_icecast && cmdline.windows(2).any(|w| w[0] == "-c" && w[1] == config)
    }

    fn probe_ready<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Readiness> {
        Box::pin(async move {
            let port = match http_port(spec) {
                Ok(p) => p,
                Err(e) => return Readiness::NotReady(e),
            };
            match http::get(port, "/status-json.xsl", None, PROBE_TIMEOUT).await {
                Ok(r) if r.status == 200 => parse_status_json(&r.body),
                Ok(r) => Readiness::NotReady(format!("status-json.xsl answered HTTP {}", r.status)),
                Err(e) => Readiness::NotReady(e),
            }
        })
    }

    fn stats<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Result<ServiceStats, String>> {
        Box::pin(admin_stats(spec))
    }

    fn update_mode(&self, running: &ServiceSpec, next: &ServiceSpec) -> UpdateMode {
        // A reload does not re-bind listen sockets.
        if http_port(running).ok() != http_port(next).ok()
            || running.bind_address != next.bind_address
        {
            return UpdateMode::Restart;
        }
        // Compared independently of this host's paths: only the spec matters. A new owner, for
        // one, changes only AutoDJ's library, not icecast2's config.
        let dir = Path::new("/srv/icecast");
        match (render_config(running, dir), render_config(next, dir)) {
            (Ok(old), Ok(new)) if old == new => UpdateMode::Rewrite,
            _ => UpdateMode::Reload,
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
            r#type: ServiceType::Icecast as i32,
            ports: vec![PortAssignment {
                purpose: "http".into(),
                port: 8010,
            }],
            max_listeners: 50,
            max_bitrate_kbps: 128,
            source_password: "src-pass".into(),
            admin_password: "adm-pass".into(),
            relay_password: "rel-pass".into(),
            public_host: "radio.example.net".into(),
            bind_address: "192.0.2.10".into(),
            desired_running: true,
            generation: 1,
            ..Default::default()
        }
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            xml_escape(r#"a & b < c > d " e ' f"#),
            "a &amp; b &lt; c &gt; d &quot; e &apos; f"
        );
        assert_eq!(
            xml_escape("</location><hostname>x</hostname>"),
            "&lt;/location&gt;&lt;hostname&gt;x&lt;/hostname&gt;"
        );
        assert_eq!(xml_escape("café 🎵"), "café 🎵");
    }

    #[test]
    fn control_characters_cannot_break_xml_or_headers() {
        assert_eq!(
            xml_escape("a\r\nicy-name: x\u{0}\u{1b}b"),
            "a  icy-name: x  b"
        );
        assert_eq!(sanitized("a\r\nb\tc"), "a  b c");
    }

    #[test]
    fn config_carries_the_spec() {
        let xml = render_config(&spec(), Path::new("/srv/services/svc-1")).expect("renders");
        for expected in [
            "<location>Radio One</location>",
            "<hostname>radio.example.net</hostname>",
            "<clients>66</clients>",
            "<port>8010</port>",
            "<mount-name>/live</mount-name>",
            "<password>src-pass</password>",
            "<max-listeners>50</max-listeners>",
            "<bitrate>128</bitrate>",
            "<admin-password>adm-pass</admin-password>",
            "<relay-password>rel-pass</relay-password>",
            "<pidfile>/srv/services/svc-1/icecast.pid</pidfile>",
            "<errorlog>-</errorlog>",
            "<chroot>0</chroot>",
            "<webroot>/usr/share/icecast2/web</webroot>",
        ] {
            assert!(xml.contains(expected), "missing {expected} in\n{xml}");
        }
        // Sources are confined to /live: no global source password.
        assert!(!xml.contains("<source-password>"));
        // The node's address and loopback (for the agent and AutoDJ), never every interface.
        let sockets: Vec<&str> = xml.split("<listen-socket>").skip(1).collect();
        assert_eq!(sockets.len(), 2, "{xml}");
        assert!(sockets[0].contains("<bind-address>192.0.2.10</bind-address>"));
        assert!(sockets[1].contains("<bind-address>127.0.0.1</bind-address>"));
        assert!(sockets.iter().all(|s| s.contains("<port>8010</port>")));
        let mut local = spec();
        local.bind_address = "127.0.0.1".into();
        let xml = render_config(&local, Path::new("/srv/services/svc-1")).expect("renders");
        assert_eq!(xml.matches("<listen-socket>").count(), 1, "{xml}");
        let mut unbound = spec();
        unbound.bind_address.clear();
        assert!(
            render_config(&unbound, Path::new("/x"))
                .unwrap_err()
                .contains("bind address")
        );
    }

    #[test]
    fn hostile_values_are_escaped_everywhere() {
        let mut s = spec();
        s.display_name = "Evil</location><hostname>pwn</hostname><!-- & \"'".into();
        s.source_password = "p<w>d&\"'".into();
        s.public_host = "h\"><x>".into();
        let xml = render_config(&s, Path::new("/srv/services/svc-1")).expect("renders");
        assert!(xml.contains("<location>Evil&lt;/location&gt;&lt;hostname&gt;pwn&lt;/hostname&gt;&lt;!-- &amp; &quot;&apos;</location>"));
        assert!(xml.contains("<password>p&lt;w&gt;d&amp;&quot;&apos;</password>"));
        assert!(xml.contains("<hostname>h&quot;&gt;&lt;x&gt;</hostname>"));
        assert_eq!(xml.matches("<hostname>").count(), 1);
        assert_eq!(xml.matches("<location>").count(), 1);
        assert!(!xml.contains("<!-- &"));
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let mut s = spec();
        s.ports.clear();
        assert!(
            render_config(&s, Path::new("/x"))
                .unwrap_err()
                .contains("\"http\" port")
        );
        let mut s = spec();
        s.max_listeners = 0;
        assert!(render_config(&s, Path::new("/x")).is_err());
        let mut s = spec();
        s.source_password.clear();
        assert!(render_config(&s, Path::new("/x")).is_err());
        let mut s = spec();
        s.ports[0].port = 70000;
        assert!(http_port(&s).is_err());
    }

    #[test]
    fn port_changes_need_a_restart() {
        let plugin = IcecastPlugin::new();
        let mut next = spec();
        next.display_name = "Renamed".into();
        assert_eq!(plugin.update_mode(&spec(), &next), UpdateMode::Reload);
        next.ports[0].port = 8011;
        assert_eq!(plugin.update_mode(&spec(), &next), UpdateMode::Restart);
        let mut moved = spec();
        moved.bind_address = "127.0.0.1".into();
        assert_eq!(plugin.update_mode(&spec(), &moved), UpdateMode::Restart);
    }

    #[test]
    fn only_config_changes_are_reloaded() {
        let plugin = IcecastPlugin::new();
        let mut with_autodj = spec();
        with_autodj.autodj = true;
        with_autodj.owner_customer_id = "cus_A".into();
        // A new owner changes AutoDJ's library, nothing icecast2 reads.
        let mut next = with_autodj.clone();
        next.generation = 2;
        next.owner_customer_id = "cus_B".into();
        assert_eq!(plugin.update_mode(&with_autodj, &next), UpdateMode::Rewrite);
        // Turning AutoDJ on or off adds or drops its mount.
        assert_eq!(
            plugin.update_mode(&spec(), &with_autodj),
            UpdateMode::Reload
        );
        assert_eq!(
            plugin.update_mode(&with_autodj, &spec()),
            UpdateMode::Reload
        );
    }

    #[test]
    fn autodj_is_the_fallback_of_live_on_its_own_mount() {
        let dir = Path::new("/srv/services/svc-1");
        let without = render_config(&spec(), dir).expect("renders");
        assert!(!without.contains("autodj"), "{without}");
        assert!(!without.contains("fallback"), "{without}");

        let mut s = spec();
        s.autodj = true;
        s.owner_customer_id = "cus_A".into();
        let with = render_config(&s, dir).expect("renders");
        let mounts: Vec<&str> = with
            .split("<mount type=\"normal\">")
            .skip(1)
            .map(|m| &m[..m.find("</mount>").expect("closed")])
            .collect();
        assert_eq!(mounts.len(), 2, "{with}");
        let live = mounts[0];
        assert!(live.contains("<mount-name>/live</mount-name>"), "{live}");
        assert!(live.contains("<password>src-pass</password>"), "{live}");
        assert!(
            live.contains("<fallback-mount>/autodj</fallback-mount>"),
            "{live}"
        );
        assert!(
            live.contains("<fallback-override>1</fallback-override>"),
            "{live}"
        );
        let autodj = mounts[1];
        assert!(
            autodj.contains("<mount-name>/autodj</mount-name>"),
            "{autodj}"
        );
        // Its own password: the customer's works on /live only.
        assert!(autodj.contains("<password>rel-pass</password>"), "{autodj}");
        assert!(!autodj.contains("src-pass"), "{autodj}");
        assert!(
            autodj.contains("<max-listeners>50</max-listeners>"),
            "{autodj}"
        );
        assert!(autodj.contains("<public>0</public>"), "{autodj}");
        assert!(!autodj.contains("fallback"), "{autodj}");
        assert!(!with.contains("<source-password>"), "{with}");

        // AutoDJ adds exactly these lines and changes nothing else.
        let added = with.replace(
            "    <fallback-mount>/autodj</fallback-mount>\n    <fallback-override>1</fallback-override>\n",
            "",
        );
        let added = added.replace(&format!("  <mount type=\"normal\">{autodj}</mount>\n"), "");
        assert_eq!(added, without);
    }

    #[test]
    fn autodj_needs_a_password_of_its_own() {
        let mut s = spec();
        s.autodj = true;
        s.relay_password.clear();
        assert!(validate(&s).unwrap_err().contains("relay password"));
        s.relay_password = s.source_password.clone();
        assert!(validate(&s).unwrap_err().contains("must differ"));
        // Without AutoDJ the relay password may be empty, as before.
        s.autodj = false;
        s.relay_password.clear();
        assert!(validate(&s).is_ok());
    }

    #[test]
    fn readiness_needs_parsable_json_with_server_id() {
        assert!(matches!(
            parse_status_json(
                br#"{"icestats":{"admin":"a","server_id":"Icecast 2.4.4","dummy":null}}"#
            ),
            Readiness::Ready
        ));
        assert!(matches!(
            parse_status_json(br#"{"icestats":{"admin":"#),
            Readiness::NotReady(_)
        ));
        assert!(matches!(
            parse_status_json(br#"{"icestats":{}}"#),
            Readiness::NotReady(_)
        ));
    }

    #[test]
    fn admin_stats_are_parsed() {
        let xml = r#"<?xml version="1.0"?>
<icestats><admin>icemaster@localhost</admin><client_connections>2</client_connections><clients>2</clients><listener_connections>1</listener_connections><listeners>1</listeners><location>A &amp; B</location><server_id>Icecast 2.4.4</server_id><source_client_connections>1</source_client_connections><sources>1</sources><stats>0</stats><source mount="/live"><bitrate>128</bitrate><listener_peak>1</listener_peak><listeners>1</listeners><max_listeners>5</max_listeners><server_name>x &lt;y&gt;</server_name><total_bytes_read>63992</total_bytes_read><total_bytes_sent>1200</total_bytes_sent></source></icestats>"#;
        let stats = parse_admin_stats(xml).expect("parses");
        assert_eq!(stats.listeners, 1);
        assert_eq!(stats.sources, 1);
        assert_eq!(stats.mounts, vec!["/live".to_owned()]);
        assert_eq!(stats.bytes_read, 63992);
        assert_eq!(stats.bytes_sent, 1200);

        let idle =
            parse_admin_stats("<icestats><listeners>0</listeners><sources>0</sources></icestats>")
                .expect("parses");
        assert_eq!(idle, ServiceStats::default());
        assert!(parse_admin_stats("<html>login</html>").is_err());
    }

    #[test]
    fn adoption_matches_only_this_services_icecast() {
        let plugin = IcecastPlugin::new();
        let dir = Path::new("/srv/services/svc-1");
        let ours: Vec<OsString> = vec![
            "/usr/bin/icecast2".into(),
            "-c".into(),
            "/srv/services/svc-1/icecast.xml".into(),
        ];
        assert!(plugin.owns_process(&ours, dir));
        let other: Vec<OsString> = vec![
            "/usr/bin/icecast2".into(),
            "-c".into(),
            "/srv/services/svc-2/icecast.xml".into(),
        ];
        assert!(!plugin.owns_process(&other, dir));
        let impostor: Vec<OsString> = vec![
            "/bin/sleep".into(),
            "-c".into(),
            "/srv/services/svc-1/icecast.xml".into(),
        ];
        assert!(!plugin.owns_process(&impostor, dir));
    }
}
