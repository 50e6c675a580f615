//! Video: live RTMP ingest with HLS output and uploaded on-demand files, served by nginx with
//! the RTMP module (Debian 12: `nginx` 1.22.1 + `libnginx-mod-rtmp` 1.2.2, whose `/stat` calls
//! itself 1.1.4).
//!
//! Broadcasters push to `rtmp://HOST:RTMP_PORT/<source password>/live`: the RTMP application
//! name *is* the source password, so only its holders can publish. Viewers play
//! `http://HOST:HTTP_PORT/hls/live.m3u8`. Uploaded files are served from `/videos/`.
//!
//! Facts this plugin relies on (measured; see also `/work/shared/notes/streaming-servers.md`):
//! - The master runs as `www-data` (not root), so there is no `user` directive. nginx opens its
//!   compiled-in log and temp paths under `/var` before reading the config unless told
//!   otherwise, which that account may not do: `-e stderr` and explicit temp paths. It creates
//!   the last component of each temp path itself, not its parents.
//! - The pid file is written after the listening sockets are bound; `/healthz` answers ~10 ms
//!   after spawn. The master retitles itself `nginx: master process <argv joined by spaces>`,
//!   which is what `/proc/PID/cmdline` then shows (see [`VideoPlugin::owns_process`]).
//! - A publish shows up as `hls/live.m3u8` ~2 s later. Application names are compared
//!   case-sensitively; an unknown one is refused at `connect` ("application not found"). The
//!   HLS module refuses stream names containing `/` ("hls: bad stream name"), so a publisher
//!   cannot write outside `hls/`.
//! - nginx-rtmp logs `connect: app='…' tc_url='…'` at `info`, i.e. the source password: the
//!   error log stays at `notice`, which never carries it.
//! - **`SIGQUIT` (graceful stop) never finishes while an RTMP session is open**: the worker
//!   waits for it, and `worker_shutdown_timeout` does not close RTMP sessions (their read
//!   handler ignores the close flag). Stopping a live service would always end in the
//!   supervisor's `SIGKILL` after the grace period. `SIGTERM` (nginx's fast shutdown) closes
//!   every connection and exits 0 in ~10 ms, publisher or not, so it is the stop signal; the
//!   group kill stays the fallback. `SIGKILL` of the master alone leaves the workers holding
//!   the ports; the supervisor kills the whole group.
//! - `SIGHUP` re-reads the config and does re-bind: new ports are opened and dropped ones
//!   closed by the master. But the old worker keeps every RTMP session it has, under the old
//!   config, until the client leaves — a changed password would not cut off a broadcaster who
//!   still uses the old one. So a new password or new ports restart the server (ports also
//!   because the supervisor checks them for conflicts only at launch; a reload onto a taken
//!   port merely logs and keeps the old config). A new listener limit is reloaded: the stream
//!   continues. Changes the config does not reflect (display name, bitrate, host) are not
//!   signalled at all, see [`UpdateMode::Rewrite`].
//! - `rtmp_stat` reports only the worker that answers the request: after a reload, a
//!   broadcaster still on the old worker is not counted until it reconnects.
//! - `max_connections` (rtmp) counts TCP connections to the RTMP port from accept on (a bare
//!   connect counts), in shared memory that survives reloads; over the limit the connection is
//!   closed before the handshake.
//!
//! Listener counting: `listeners` are RTMP players, which this config allows only from the
//! host itself (`allow play 127.0.0.1; deny play all;`: RTMP playback would otherwise be a
//! second, unmetered public output beside HLS). HLS viewers are plain HTTP GETs of the playlist
//! and its fragments; nginx keeps no per-viewer state for them, so they are **not** counted.

use super::xml::{element_number, element_text, xml_unescape};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use castplane_proto::agent::v1::ServiceSpec;
use castplane_proto::v1::{ServiceStats, ServiceType};
use nix::sys::signal::Signal;

use super::{
    BoxFuture, ConfigFile, Launch, Plugin, Readiness, ServiceAccount, UpdateMode, find_program,
    http,
};

pub const CONFIG_FILE: &str = "nginx.conf";
pub const PID_FILE: &str = "nginx.pid";
/// HLS output: playlists and fragments written by nginx-rtmp, served under `/hls/`.
pub const HLS_DIR: &str = "hls";
/// Uploaded on-demand video files, served under `/videos/`.
pub const VIDEOS_DIR: &str = "videos";
/// nginx's temp paths (request bodies, proxy buffers …), which it creates inside this one.
pub const TEMP_DIR: &str = "temp";
pub const RTMP_PORT_PURPOSE: &str = "rtmp";
pub const HTTP_PORT_PURPOSE: &str = "http";
/// The stream name broadcasters publish; the control plane hands out `…/<password>/live`.
pub const LIVE_STREAM: &str = "live";
/// Shorter source passwords are refused as guessable; the control plane generates 24
/// characters (18 random bytes, URL-safe base64).
pub const MIN_PASSWORD_LEN: usize = 16;
pub const MAX_PASSWORD_LEN: usize = 128;
/// RTMP connections beyond the listener limit: broadcasters, and probes of the port.
const RTMP_HEADROOM: u32 = 8;
/// nginx's own default, which small services keep.
const MIN_WORKER_CONNECTIONS: u32 = 1024;
const MAX_WORKER_CONNECTIONS: u32 = 65535;
/// Where distributions install nginx's dynamic RTMP module.
const RTMP_MODULE_PATHS: &[&str] = &[
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
    "/usr/share/nginx/modules/ngx_rtmp_module.so",
    "/usr/local/nginx/modules/ngx_rtmp_module.so",
];
/// The title nginx gives its master process, before its original command line.
const MASTER_TITLE: &str = "nginx: master process ";
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const STATS_TIMEOUT: Duration = Duration::from_secs(3);

/// nginx's dynamic RTMP module on this host.
pub fn find_rtmp_module() -> Option<PathBuf> {
    RTMP_MODULE_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

#[derive(Default)]
pub struct VideoPlugin;

impl VideoPlugin {
    pub fn new() -> Self {
        VideoPlugin
    }
}

fn port_of(spec: &ServiceSpec, purpose: &str) -> Result<u16, String> {
    let assignment = spec
        .ports
        .iter()
        .find(|p| p.purpose == purpose)
        .ok_or_else(|| format!("the service has no \"{purpose}\" port assigned"))?;
    u16::try_from(assignment.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid {purpose} port {}", assignment.port))
}

/// The spec's port with purpose "rtmp" (ingest).
pub fn rtmp_port(spec: &ServiceSpec) -> Result<u16, String> {
    port_of(spec, RTMP_PORT_PURPOSE)
}

/// The spec's port with purpose "http" (HLS, files, health, stats).
pub fn http_port(spec: &ServiceSpec) -> Result<u16, String> {
    port_of(spec, HTTP_PORT_PURPOSE)
}

/// The source password becomes a bare token of nginx.conf (the application name) and a path
/// segment of the ingest URL, so only the URL-safe base64 alphabet the control plane generates
/// is accepted: nothing in it can end a token, open a block or start a variable.
fn check_source_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("the service has no source password".to_owned());
    }
    if !password
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        // The message never quotes the password: it is a secret.
        return Err(
            "the source password may contain only letters, digits, '-' and '_' (it is the RTMP application name)"
                .to_owned(),
        );
    }
    if password.len() < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "the source password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters long"
        ));
    }
    Ok(())
}

fn validate(spec: &ServiceSpec) -> Result<(), String> {
    let rtmp = rtmp_port(spec)?;
    let http = http_port(spec)?;
    super::listen_addresses(spec)?;
    if rtmp == http {
        return Err(format!(
            "the rtmp and http ports must differ (both are {rtmp})"
        ));
    }
    if spec.max_listeners == 0 {
        return Err("max_listeners must be at least 1".to_owned());
    }
    check_source_password(&spec.source_password)
}

/// `path` as a double-quoted nginx string. Inside quotes only `"` and `\` are special to the
/// parser, and `$` starts a variable in directives such as `alias`; control characters have no
/// place in a path. Such paths are refused rather than escaped, so what nginx opens is exactly
/// the path the agent means.
fn quoted_path(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
    if !text.starts_with('/') {
        return Err(format!("{text:?} is not an absolute path"));
    }
    if let Some(c) = text
        .chars()
        .find(|c| matches!(c, '"' | '\\' | '$') || c.is_control())
    {
        return Err(format!(
            "{text:?} contains {c:?}, which nginx.conf cannot carry safely"
        ));
    }
    Ok(format!("\"{text}\""))
}

/// Every HLS viewer holds about one keep-alive connection; the RTMP side and probes need a few
/// more.
fn worker_connections(max_listeners: u32) -> u32 {
    max_listeners
        .saturating_mul(2)
        .saturating_add(64)
        .clamp(MIN_WORKER_CONNECTIONS, MAX_WORKER_CONNECTIONS)
}

/// The service's `nginx.conf`. No user-supplied text but the validated source password reaches
/// it (the display name, host and bitrate do not appear at all); paths go through
/// `quoted_path`.
pub fn render_config(spec: &ServiceSpec, dir: &Path, rtmp_module: &Path) -> Result<String, String> {
    validate(spec)?;
    let rtmp = rtmp_port(spec)?;
    let http = http_port(spec)?;
    let module = quoted_path(rtmp_module)?;
    let path = |name: &str| quoted_path(&dir.join(name));
    let sub = |a: &str, b: &str| quoted_path(&dir.join(a).join(b));
    // `alias` maps `/hls/x` to `<alias>x`, so the directory needs its trailing slash.
    let alias = |name: &str| {
        quoted_path(&dir.join(name)).map(|q| format!("{}/\"", q.trim_end_matches('"')))
    };
    let hls = path(HLS_DIR)?;
    let addresses = super::listen_addresses(spec)?;

    let mut c = String::new();
    c.push_str("# written by castplane-agent; local changes are overwritten\n");
    let _ = writeln!(c, "load_module {module};");
    c.push_str("daemon off;\n");
    c.push_str("master_process on;\n");
    c.push_str("worker_processes 1;\n");
    let _ = writeln!(c, "pid {};", path(PID_FILE)?);
    // `info` would log every RTMP connect with its application name: the source password.
    c.push_str("error_log stderr notice;\n");
    // Bounds how long an old worker keeps serving HTTP downloads after a reload. RTMP
    // sessions ignore it (see the module docs).
    c.push_str("worker_shutdown_timeout 10s;\n\n");

    c.push_str("events {\n");
    let _ = writeln!(
        c,
        "    worker_connections {};",
        worker_connections(spec.max_listeners)
    );
    c.push_str("}\n\n");

    c.push_str("rtmp {\n");
    // Counts every TCP connection to the RTMP port, broadcasters included.
    let _ = writeln!(
        c,
        "    max_connections {};",
        spec.max_listeners.saturating_add(RTMP_HEADROOM)
    );
    c.push_str("    server {\n");
    for address in &addresses {
        let _ = writeln!(c, "        listen {};", super::socket_text(*address, rtmp));
    }
    // The application name is the source password: only its holders can publish.
    let _ = writeln!(c, "        application {} {{", spec.source_password);
    c.push_str("            live on;\n");
    c.push_str("            record off;\n");
    // RTMP playback is for local tools only; viewers use HLS.
    c.push_str("            allow play 127.0.0.1;\n");
    c.push_str("            deny play all;\n");
    // A broadcaster that stops sending frees the stream instead of holding it.
    c.push_str("            drop_idle_publisher 10s;\n");
    c.push_str("            hls on;\n");
    let _ = writeln!(c, "            hls_path {hls};");
    c.push_str("            hls_fragment 2s;\n");
    c.push_str("            hls_playlist_length 10s;\n");
    c.push_str("        }\n");
    c.push_str("    }\n");
    c.push_str("}\n\n");

    c.push_str("http {\n");
    c.push_str("    access_log off;\n");
    // Players poll for fragments that do not exist yet; each would be an error line.
    c.push_str("    log_not_found off;\n");
    c.push_str("    server_tokens off;\n");
    c.push_str("    sendfile on;\n");
    c.push_str("    tcp_nopush on;\n");
    c.push_str("    default_type application/octet-stream;\n");
    for (directive, name) in [
        ("client_body_temp_path", "client_body"),
        ("proxy_temp_path", "proxy"),
        ("fastcgi_temp_path", "fastcgi"),
        ("uwsgi_temp_path", "uwsgi"),
        ("scgi_temp_path", "scgi"),
    ] {
        let _ = writeln!(c, "    {directive} {};", sub(TEMP_DIR, name)?);
    }
    c.push_str("    server {\n");
    for address in &addresses {
        let _ = writeln!(c, "        listen {};", super::socket_text(*address, http));
    }
    c.push_str("        location = /healthz {\n");
    c.push_str("            default_type text/plain;\n");
    c.push_str("            return 200 \"ok\\n\";\n");
    c.push_str("        }\n");
    // The statistics name the application, i.e. the source password: local readers only.
    c.push_str("        location = /stat {\n");
    c.push_str("            allow 127.0.0.1;\n");
    c.push_str("            deny all;\n");
    c.push_str("            rtmp_stat all;\n");
    c.push_str("        }\n");
    c.push_str("        location /hls/ {\n");
    let _ = writeln!(c, "            alias {};", alias(HLS_DIR)?);
    c.push_str("            types {\n");
    c.push_str("                application/vnd.apple.mpegurl m3u8;\n");
    c.push_str("                video/mp2t ts;\n");
    c.push_str("            }\n");
    // The playlist changes every fragment; a cached one stalls the player.
    c.push_str("            add_header Cache-Control no-cache;\n");
    c.push_str("            add_header Access-Control-Allow-Origin *;\n");
    c.push_str("        }\n");
    c.push_str("        location /videos/ {\n");
    let _ = writeln!(c, "            alias {};", alias(VIDEOS_DIR)?);
    c.push_str("            types {\n");
    c.push_str("                video/mp4 mp4 m4v;\n");
    c.push_str("                video/webm webm;\n");
    c.push_str("                video/x-matroska mkv;\n");
    c.push_str("                video/quicktime mov;\n");
    c.push_str("                video/x-flv flv;\n");
    c.push_str("                video/mp2t ts;\n");
    c.push_str("                application/vnd.apple.mpegurl m3u8;\n");
    c.push_str("            }\n");
    c.push_str("            add_header Access-Control-Allow-Origin *;\n");
    c.push_str("        }\n");
    // Nothing else of the service directory (config, logs) is reachable.
    c.push_str("        location / {\n");
    c.push_str("            return 404;\n");
    c.push_str("        }\n");
    c.push_str("    }\n");
    c.push_str("}\n");
    Ok(c)
}

/// The arguments nginx is started with; adoption recognises the master by them.
fn launch_args(dir: &Path) -> Vec<OsString> {
    vec![
        "-p".into(),
        dir.as_os_str().to_owned(),
        "-c".into(),
        dir.join(CONFIG_FILE).into_os_string(),
        // Startup messages to stderr instead of the compiled-in /var/log/nginx/error.log.
        "-e".into(),
        "stderr".into(),
    ]
}

fn is_nginx(program: &OsStr) -> bool {
    Path::new(program)
        .file_name()
        .is_some_and(|name| name == "nginx")
}

/// The bodies of every `<name>…</name>` in `xml` (not nested in each other).
fn elements<'a>(xml: &'a str, name: &str) -> Result<Vec<&'a str>, String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        let body_start = at + open.len();
        let len = rest[body_start..]
            .find(&close)
            .ok_or_else(|| format!("unterminated <{name}> element"))?;
        found.push(&rest[body_start..body_start + len]);
        rest = &rest[body_start + len + close.len()..];
    }
    Ok(found)
}

/// Statistics from nginx-rtmp's `/stat` (`rtmp_stat all`). Its layout is fixed and every
/// client-supplied string in it is escaped, which a scan handles without an XML parser:
///
/// ```text
/// <rtmp> … <bytes_in>N</bytes_in> <bytes_out>N</bytes_out>
///   <server><application><name>APP</name><live>
///     <stream><name>live</name> … <client>… [<publishing/>] …</client> …
///             <meta>…</meta><nclients>N</nclients>[<publishing/>][<active/>]</stream>
/// ```
///
/// Sources are publishing clients, listeners the other (playing) clients, mounts the streams
/// that are active (receiving media), as `/NAME`. The byte counters are the worker's totals
/// over all RTMP connections. The application name is the source password and is never
/// returned.
pub fn parse_rtmp_stat(xml: &str) -> Result<ServiceStats, String> {
    let start = xml
        .find("<rtmp>")
        .ok_or_else(|| "/stat has no <rtmp> element".to_owned())?;
    let body = &xml[start..];
    let global = &body[..body.find("<server>").unwrap_or(body.len())];
    let mut stats = ServiceStats {
        bytes_read: element_number(global, "bytes_in"),
        bytes_sent: element_number(global, "bytes_out"),
        ..Default::default()
    };
    for stream in elements(body, "stream")? {
        let clients = elements(stream, "client")?;
        for client in &clients {
            if client.contains("<publishing/>") {
                stats.sources = stats.sources.saturating_add(1);
            } else {
                stats.listeners = stats.listeners.saturating_add(1);
            }
        }
        // The stream's own flags follow its clients and metadata.
        let head_end = stream.find("<client>").unwrap_or(stream.len());
        let tail_start = stream
            .rfind("</client>")
            .map_or(0, |at| at + "</client>".len());
        if stream[tail_start..].contains("<active/>")
            && let Some(name) = element_text(&stream[..head_end], "name")
        {
            stats.mounts.push(format!("/{}", xml_unescape(name)));
        }
    }
    Ok(stats)
}

impl Plugin for VideoPlugin {
    fn service_type(&self) -> ServiceType {
        ServiceType::Video
    }

    fn program_name(&self) -> &'static str {
        "nginx"
    }

    fn validate(&self, spec: &ServiceSpec) -> Result<(), String> {
        validate(spec)
    }

    fn ports(&self, spec: &ServiceSpec) -> Result<Vec<u16>, String> {
        Ok(vec![rtmp_port(spec)?, http_port(spec)?])
    }

    fn account(&self) -> Option<ServiceAccount> {
        // The account Debian's nginx package creates for its workers.
        Some(ServiceAccount {
            user: "www-data",
            group: "www-data",
        })
    }

    fn data_dirs(&self) -> &'static [&'static str] {
        &[HLS_DIR, VIDEOS_DIR, TEMP_DIR]
    }

    fn render(&self, spec: &ServiceSpec, dir: &Path) -> Result<Vec<ConfigFile>, String> {
        let module = find_rtmp_module().ok_or_else(|| {
            "nginx's RTMP module is not installed on this host (install libnginx-mod-rtmp)"
                .to_owned()
        })?;
        Ok(vec![ConfigFile {
            name: CONFIG_FILE,
            contents: render_config(spec, dir, &module)?,
            mode: 0o640,
        }])
    }

    fn launch(&self, dir: &Path) -> Result<Launch, String> {
        let program = find_program("nginx")
            .ok_or_else(|| "nginx is not installed on this host".to_owned())?;
        Ok(Launch {
            program,
            args: launch_args(dir),
            env: Vec::new(),
        })
    }

    fn pid_file(&self, dir: &Path) -> Option<PathBuf> {
        Some(dir.join(PID_FILE))
    }

    /// The master for `dir`, by its arguments: as spawned (its first milliseconds), or retitled
    /// `nginx: master process <program> -p DIR -c DIR/nginx.conf -e stderr`, one string. Workers
    /// ("nginx: worker process") never match; they share the master's process group.
    fn owns_process(&self, cmdline: &[OsString], dir: &Path) -> bool {
        let args = launch_args(dir);
        if let Some((program, rest)) = cmdline.split_first()
            && is_nginx(program)
            && rest == args.as_slice()
        {
            return true;
        }
        let [title] = cmdline else {
            return false;
        };
        let Some(command) = title.as_bytes().strip_prefix(MASTER_TITLE.as_bytes()) else {
            return false;
        };
        let mut suffix = Vec::new();
        for arg in &args {
            suffix.push(b' ');
            suffix.extend_from_slice(arg.as_bytes());
        }
        command
            .strip_suffix(suffix.as_slice())
            .is_some_and(|program| is_nginx(OsStr::from_bytes(program)))
    }

    fn probe_ready<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Readiness> {
        Box::pin(async move {
            let port = match http_port(spec) {
                Ok(p) => p,
                Err(e) => return Readiness::NotReady(e),
            };
            match http::get(port, "/healthz", None, PROBE_TIMEOUT).await {
                Ok(r) if r.status == 200 => Readiness::Ready,
                Ok(r) => Readiness::NotReady(format!("/healthz answered HTTP {}", r.status)),
                Err(e) => Readiness::NotReady(e),
            }
        })
    }

    fn stats<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Result<ServiceStats, String>> {
        Box::pin(async move {
            let port = http_port(spec)?;
            let response = http::get(port, "/stat", None, STATS_TIMEOUT).await?;
            match response.status {
                200 => parse_rtmp_stat(&String::from_utf8_lossy(&response.body)),
                status => Err(format!("/stat answered HTTP {status}")),
            }
        })
    }

    fn update_mode(&self, running: &ServiceSpec, next: &ServiceSpec) -> UpdateMode {
        // A reload leaves connected broadcasters on the old worker with the old password, and
        // port conflicts are only checked at launch (see the module docs).
        if self.ports(running).ok() != self.ports(next).ok()
            || running.bind_address != next.bind_address
            || running.source_password != next.source_password
        {
            return UpdateMode::Restart;
        }
        // Compared independently of this host's paths: only the spec matters.
        let (dir, module) = (Path::new("/srv/video"), Path::new("/rtmp.so"));
        match (
            render_config(running, dir, module),
            render_config(next, dir, module),
        ) {
            (Ok(old), Ok(new)) if old == new => UpdateMode::Rewrite,
            (Ok(_), Ok(_)) => UpdateMode::Reload,
            // Invalid: the restart's validation reports why.
            _ => UpdateMode::Restart,
        }
    }

    fn stop_signal(&self) -> Signal {
        // SIGQUIT would wait for RTMP sessions forever (see the module docs).
        Signal::SIGTERM
    }

    fn reload_signal(&self) -> Signal {
        Signal::SIGHUP
    }
}

#[cfg(test)]
mod tests {
    use castplane_proto::v1::PortAssignment;

    use super::*;

    const PASSWORD: &str = "Zm9vYmFyYmF6cXV4X-_0123";
    const DIR: &str = "/srv/services/vid-1";
    const MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

    fn spec() -> ServiceSpec {
        ServiceSpec {
            id: "vid-1".into(),
            name: "tv".into(),
            display_name: "TV One".into(),
            r#type: ServiceType::Video as i32,
            ports: vec![
                PortAssignment {
                    purpose: "rtmp".into(),
                    port: 1935,
                },
                PortAssignment {
                    purpose: "http".into(),
                    port: 8080,
                },
            ],
            max_listeners: 50,
            max_bitrate_kbps: 2500,
            source_password: PASSWORD.into(),
            admin_password: "adm-pass".into(),
            public_host: "tv.example.net".into(),
            bind_address: "127.0.0.1".into(),
            desired_running: true,
            generation: 1,
            ..Default::default()
        }
    }

    fn render(s: &ServiceSpec) -> Result<String, String> {
        render_config(s, Path::new(DIR), Path::new(MODULE))
    }

    #[test]
    fn config_carries_the_spec() {
        let conf = render(&spec()).expect("renders");
        for expected in [
            "load_module \"/usr/lib/nginx/modules/ngx_rtmp_module.so\";",
            "daemon off;",
            "master_process on;",
            "worker_processes 1;",
            "pid \"/srv/services/vid-1/nginx.pid\";",
            "error_log stderr notice;",
            "worker_connections 1024;",
            "max_connections 58;",
            "listen 127.0.0.1:1935;",
            &format!("application {PASSWORD} {{"),
            "live on;",
            "record off;",
            "allow play 127.0.0.1;",
            "deny play all;",
            "hls on;",
            "hls_path \"/srv/services/vid-1/hls\";",
            "hls_fragment 2s;",
            "hls_playlist_length 10s;",
            "listen 127.0.0.1:8080;",
            "access_log off;",
            "client_body_temp_path \"/srv/services/vid-1/temp/client_body\";",
            "proxy_temp_path \"/srv/services/vid-1/temp/proxy\";",
            "fastcgi_temp_path \"/srv/services/vid-1/temp/fastcgi\";",
            "uwsgi_temp_path \"/srv/services/vid-1/temp/uwsgi\";",
            "scgi_temp_path \"/srv/services/vid-1/temp/scgi\";",
            "location = /healthz {",
            "return 200 \"ok\\n\";",
            "rtmp_stat all;",
            "alias \"/srv/services/vid-1/hls/\";",
            "application/vnd.apple.mpegurl m3u8;",
            "video/mp2t ts;",
            "add_header Cache-Control no-cache;",
            "alias \"/srv/services/vid-1/videos/\";",
        ] {
            assert!(conf.contains(expected), "missing {expected} in\n{conf}");
        }
        // The node's address and loopback (for the agent's probes), never every interface.
        assert_eq!(conf.matches("listen ").count(), 2, "{conf}");
        let mut public = spec();
        public.bind_address = "192.0.2.7".into();
        let conf = render(&public).expect("renders");
        for expected in [
            "listen 192.0.2.7:1935;",
            "listen 127.0.0.1:1935;",
            "listen 192.0.2.7:8080;",
            "listen 127.0.0.1:8080;",
        ] {
            assert!(conf.contains(expected), "missing {expected} in\n{conf}");
        }
        public.bind_address = "2001:db8::7".into();
        assert!(
            render(&public)
                .expect("renders")
                .contains("listen [2001:db8::7]:8080;")
        );
        // /stat names the application (the password): local readers only.
        let stat = &conf[conf.find("location = /stat").expect("stat")..];
        let stat = &stat[..stat.find('}').expect("end")];
        assert!(stat.contains("allow 127.0.0.1;") && stat.contains("deny all;"));
        // The password appears exactly once: as the application name.
        assert_eq!(conf.matches(PASSWORD).count(), 1);
        // Braces balance: no value opened or closed a block.
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
        assert!(!conf.contains("user "), "the master is not root");
    }

    #[test]
    fn limits_follow_max_listeners() {
        let mut s = spec();
        s.max_listeners = 5000;
        let conf = render(&s).expect("renders");
        assert!(conf.contains("worker_connections 10064;"), "{conf}");
        assert!(conf.contains("max_connections 5008;"), "{conf}");
        s.max_listeners = u32::MAX;
        let conf = render(&s).expect("renders");
        assert!(conf.contains("worker_connections 65535;"), "{conf}");
        assert!(conf.contains(&format!("max_connections {};", u32::MAX)));
    }

    #[test]
    fn user_text_never_reaches_the_config() {
        let mut s = spec();
        s.display_name =
            "Evil\"; } } http { server { listen 80; location / { alias /etc/; } } }\n# $x \\ 'q' 🎵"
                .into();
        s.public_host = "h\"; include /etc/passwd; #".into();
        s.name = "n; }".into();
        let conf = render(&s).expect("renders");
        assert!(!conf.contains("Evil"), "{conf}");
        assert!(!conf.contains("/etc/"), "{conf}");
        assert!(!conf.contains("include"), "{conf}");
        assert!(!conf.contains("listen 80;"), "{conf}");
        assert_eq!(conf, render(&spec()).expect("renders"));
    }

    #[test]
    fn source_passwords_outside_url_safe_base64_are_refused() {
        for bad in [
            "",
            "short-but-ok",
            "abcdefghijklmnop; }",
            "abcdefghijklmnop q",
            "abcdefghijklmnop{",
            "abcdefghijklmnop$host",
            "abcdefghijklmnop\"",
            "abcdefghijklmnop'",
            "abcdefghijklmnop\n",
            "abcdefghijklmnop/live",
            "abcdefghijklmnop?x=1",
            "abcdefghijklmnopé",
            "abcdefghijklmnop\\",
            "abcdefghijklmnop#",
        ] {
            let mut s = spec();
            s.source_password = bad.into();
            let err = render(&s).expect_err(bad);
            assert!(err.contains("source password"), "{bad:?}: {err}");
            assert!(
                bad.is_empty() || !err.contains(bad),
                "the error quotes the password: {err}"
            );
        }
        let mut s = spec();
        s.source_password = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert!(render(&s).is_err());
        s.source_password = "A-z_09".repeat(3);
        assert!(render(&s).is_ok());
    }

    #[test]
    fn both_ports_are_required_and_distinct() {
        let mut s = spec();
        s.ports.retain(|p| p.purpose != "rtmp");
        assert_eq!(
            render(&s).unwrap_err(),
            "the service has no \"rtmp\" port assigned"
        );
        let mut s = spec();
        s.ports.retain(|p| p.purpose != "http");
        assert_eq!(
            render(&s).unwrap_err(),
            "the service has no \"http\" port assigned"
        );
        let mut s = spec();
        s.ports[1].port = 1935;
        assert!(render(&s).unwrap_err().contains("must differ"));
        let mut s = spec();
        s.ports[0].port = 70000;
        assert_eq!(render(&s).unwrap_err(), "invalid rtmp port 70000");
        let mut s = spec();
        s.ports[1].port = 0;
        assert_eq!(render(&s).unwrap_err(), "invalid http port 0");
        let mut s = spec();
        s.max_listeners = 0;
        assert!(render(&s).is_err());
        assert_eq!(
            VideoPlugin::new().ports(&spec()).expect("ports"),
            vec![1935, 8080]
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for dir in [
            "/srv/a\"b",
            "/srv/$home",
            "/srv/a\\b",
            "/srv/a\nb",
            "relative/dir",
        ] {
            let err = render_config(&spec(), Path::new(dir), Path::new(MODULE)).expect_err(dir);
            assert!(
                err.contains("cannot carry") || err.contains("not an absolute path"),
                "{err}"
            );
        }
        // Spaces and braces are fine inside quotes.
        let conf = render_config(
            &spec(),
            Path::new("/srv/my services/{x};"),
            Path::new(MODULE),
        )
        .expect("renders");
        assert!(
            conf.contains("pid \"/srv/my services/{x};/nginx.pid\";"),
            "{conf}"
        );
        // A trailing slash does not double.
        let conf =
            render_config(&spec(), Path::new("/srv/v/"), Path::new(MODULE)).expect("renders");
        assert!(conf.contains("alias \"/srv/v/hls/\";"), "{conf}");
    }

    #[test]
    fn updates_reload_only_what_needs_it() {
        let plugin = VideoPlugin::new();
        let mut next = spec();
        next.generation = 2;
        next.display_name = "Renamed".into();
        next.max_bitrate_kbps = 800;
        next.public_host = "elsewhere.example.net".into();
        assert_eq!(plugin.update_mode(&spec(), &next), UpdateMode::Rewrite);
        next.max_listeners = 10;
        assert_eq!(plugin.update_mode(&spec(), &next), UpdateMode::Reload);
        let mut next = spec();
        next.source_password = "B".repeat(24);
        assert_eq!(plugin.update_mode(&spec(), &next), UpdateMode::Restart);
        let mut next = spec();
        next.ports[0].port = 1936;
        assert_eq!(plugin.update_mode(&spec(), &next), UpdateMode::Restart);
        let mut next = spec();
        next.ports[1].port = 8081;
        assert_eq!(plugin.update_mode(&spec(), &next), UpdateMode::Restart);
    }

    #[test]
    fn adoption_matches_only_this_services_master() {
        let plugin = VideoPlugin::new();
        let dir = Path::new(DIR);
        let spawned: Vec<OsString> = [
            "/usr/sbin/nginx",
            "-p",
            DIR,
            "-c",
            "/srv/services/vid-1/nginx.conf",
            "-e",
            "stderr",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert!(plugin.owns_process(&spawned, dir));
        let retitled = vec![OsString::from(
            "nginx: master process /usr/sbin/nginx -p /srv/services/vid-1 -c /srv/services/vid-1/nginx.conf -e stderr",
        )];
        assert!(plugin.owns_process(&retitled, dir));

        for other in [
            "nginx: master process /usr/sbin/nginx -p /srv/services/vid-10 -c /srv/services/vid-10/nginx.conf -e stderr",
            "nginx: master process /usr/sbin/nginx -c /etc/nginx/nginx.conf",
            "nginx: worker process",
            "nginx: cache manager process",
            "nginx: master process /bin/sleep -p /srv/services/vid-1 -c /srv/services/vid-1/nginx.conf -e stderr",
            "sleep: master process /usr/sbin/nginx -p /srv/services/vid-1 -c /srv/services/vid-1/nginx.conf -e stderr",
        ] {
            assert!(
                !plugin.owns_process(&[OsString::from(other)], dir),
                "{other}"
            );
        }
        let mut impostor = spawned.clone();
        impostor[0] = "/bin/sleep".into();
        assert!(!plugin.owns_process(&impostor, dir));
        let mut extra = spawned;
        extra.push("-g".into());
        assert!(!plugin.owns_process(&extra, dir));
        assert!(!plugin.owns_process(&[], dir));
    }

    const LIVE_STAT: &str = r#"<?xml version="1.0" encoding="utf-8" ?>
<rtmp>
<nginx_version>1.22.1</nginx_version>
<nginx_rtmp_version>1.1.4</nginx_rtmp_version>
<built>Feb 13 2023 11:56:56</built>
<pid>3773</pid>
<uptime>14</uptime>
<naccepted>4</naccepted>
<bw_in>140680</bw_in>
<bytes_in>292343</bytes_in>
<bw_out>320</bw_out>
<bytes_out>54956</bytes_out>
<server>
<application>
<name>Zm9vYmFyYmF6cXV4X-_0123</name>
<live>
<stream>
<name>live</name>
<time>9121</time><bw_in>0</bw_in>
<bytes_in>286059</bytes_in>
<bw_out>0</bw_out>
<bytes_out>52460</bytes_out>
<bw_audio>0</bw_audio>
<bw_video>0</bw_video>
<client><id>28</id><address>127.0.0.1</address><time>2864</time><flashver>LNX 9,0,124,2</flashver><dropped>0</dropped><avsync>-1</avsync><timestamp>9103</timestamp><active/></client>
<client><id>5</id><address>127.0.0.1</address><time>9305</time><flashver>FMLE/3.0 (compatible; Lavf59.27</flashver><dropped>0</dropped><avsync>-1</avsync><timestamp>9103</timestamp><publishing/><active/></client>
<meta><video><width>320</width><height>240</height><frame_rate>25</frame_rate><codec>H264</codec><profile></profile><compat>0</compat><level>1.3</level></video><audio><codec>AAC</codec><profile>LC</profile><channels>1</channels><sample_rate>44100</sample_rate></audio></meta>
<nclients>2</nclients>
<publishing/>
<active/>
</stream>
<stream>
<name>waiting &amp; idle</name>
<time>100</time>
<client><id>30</id><address>127.0.0.1</address><time>100</time><flashver>&lt;publishing/&gt;</flashver><dropped>0</dropped><avsync>0</avsync><timestamp>0</timestamp></client>
<nclients>1</nclients>
</stream>
<nclients>3</nclients>
</live>
</application>
</server>
</rtmp>
"#;

    #[test]
    fn rtmp_stat_is_parsed() {
        let stats = parse_rtmp_stat(LIVE_STAT).expect("parses");
        assert_eq!(
            stats,
            ServiceStats {
                listeners: 2,
                sources: 1,
                mounts: vec!["/live".to_owned()],
                bytes_sent: 54956,
                bytes_read: 292343,
            }
        );
        assert!(!format!("{stats:?}").contains(PASSWORD));

        let idle = parse_rtmp_stat(
            "<rtmp><bytes_in>0</bytes_in><bytes_out>0</bytes_out><server><application><name>x</name><live><nclients>0</nclients></live></application></server></rtmp>",
        )
        .expect("parses");
        assert_eq!(idle, ServiceStats::default());
        assert!(parse_rtmp_stat("<html>403 Forbidden</html>").is_err());
        assert!(parse_rtmp_stat("<rtmp><server><stream><name>live</name>").is_err());
    }
}
