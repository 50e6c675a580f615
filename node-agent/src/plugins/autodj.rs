//! AutoDJ: liquidsoap (Debian's 2.1.3) playing the owner's media library into an audio
//! service, a sibling unit beside the service's server (see the supervisor).
//!
//! The library is `<media dir>/<owner customer id>/`. It belongs to the customer, not to the
//! service: it lives outside the service directory, so deleting the service never touches it,
//! and a new owner only points AutoDJ at another directory.
//!
//! Facts this plugin relies on (measured; see also `/work/shared/notes/streaming-servers.md`):
//! - liquidsoap refuses to run as root, so it runs as the `liquidsoap` account. It writes
//!   nothing but its log, which goes to stdout (its default log file under `/var/log` is not
//!   that account's to write).
//! - The `/autodj` mount shows up in icecast2's stats 2–7 s after spawn: every start type-checks
//!   the whole standard library, ~4.5 s of CPU (`liquidsoap --check`). Wall time grows with
//!   every other start on the same cores (nine at once on two cores: over 45 s each), hence
//!   [`READY_TIMEOUT`] and [`Plugin::costly_start`]. ~160 MB RSS.
//! - It exits with status 1 on `SIGTERM`, within ~0.1 s: a clean stop, not a failure.
//! - `mksafe` plays silence while the library is empty or unreadable, so an empty library is
//!   not an error; `reload_mode="watch"` picks up a track dropped in later within ~0.2 s
//!   (inotify).
//! - If icecast2 is down or refuses the source it logs and retries every ~3 s by itself.
//! - After liquidsoap exits (SIGTERM or SIGKILL), icecast2 still lists `/autodj` for 10–50 ms:
//!   a restart that probed right away would take the old run's mount for the new one's (seen:
//!   "ready" 17 ms after spawn). See [`AutoDjPlugin::probe_released`].
//! - `%mp3(bitrate=…)` is checked when the script is parsed: anything outside the MPEG bitrate
//!   table is "Invalid bitrate value" and liquidsoap exits. See [`mp3_encoder`].
//! - String literals: the lexer decodes backslash escapes first, and `#{…}` interpolation
//!   (which evaluates any expression) then runs on the *decoded* text of every literal, single-
//!   or double-quoted. So an escape cannot protect `#{`: `"\x23{…}"` and `"\\#{…}"` are both
//!   interpolated. See [`liq_string`].

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use castplane_proto::agent::v1::ServiceSpec;
use castplane_proto::v1::{ServiceStats, ServiceType};

use super::icecast::{self, AUTODJ_MOUNT};
use super::shoutcast;
use super::{
    BoxFuture, ConfigFile, Launch, Plugin, Readiness, ServiceAccount, UpdateMode, find_program,
};

pub const SCRIPT_FILE: &str = "autodj.liq";
/// liquidsoap's stdout and stderr; icecast2's go to the service's `stderr.log`.
pub const LOG_FILE: &str = "autodj.log";
/// The running liquidsoap, for re-adoption (liquidsoap writes no pid file when not daemonised).
pub const RECORD_FILE: &str = "autodj.json";
pub const PROGRAM: &str = "liquidsoap";
/// As for service ids: customer ids become directory names.
const MAX_CUSTOMER_ID_LEN: usize = 128;
/// Startup type-checks the whole standard library: seconds of CPU, more while other services
/// start on the same cores.
const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// Used when the service has no bitrate limit.
const DEFAULT_BITRATE_KBPS: u32 = 128;
/// MPEG-1 Layer III bitrates, the ones lame encodes at 44.1 kHz.
const MPEG1_KBPS: &[u32] = &[
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];
/// MPEG-2 Layer III bitrates (22.05 kHz), for limits below MPEG-1's lowest.
const MPEG2_KBPS: &[u32] = &[8, 16, 24];

pub struct AutoDjPlugin {
    media_dir: PathBuf,
    /// The program looked up on `PATH`; tests name one that does not exist.
    program: &'static str,
}

impl AutoDjPlugin {
    /// `media_dir`: where the customers' libraries are, one directory per customer.
    pub fn new(media_dir: impl Into<PathBuf>) -> Self {
        AutoDjPlugin {
            media_dir: media_dir.into(),
            program: PROGRAM,
        }
    }

    #[cfg(test)]
    fn with_program(media_dir: impl Into<PathBuf>, program: &'static str) -> Self {
        AutoDjPlugin {
            media_dir: media_dir.into(),
            program,
        }
    }

    /// The owner's media library.
    pub fn library_dir(&self, spec: &ServiceSpec) -> Result<PathBuf, String> {
        check_customer_id(&spec.owner_customer_id)?;
        Ok(self.media_dir.join(&spec.owner_customer_id))
    }
}

/// The same alphabet as service ids: no `/`, no `..`, nothing a path or a script could misread.
pub fn valid_customer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CUSTOMER_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_customer_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        Err("AutoDJ needs the service's owner (its media library is the owner's)".to_owned())
    } else if valid_customer_id(id) {
        Ok(())
    } else {
        Err(format!("invalid owner customer id {id:?}"))
    }
}

/// `text` as a liquidsoap string expression that evaluates to exactly `text` (control characters
/// aside) and runs nothing.
///
/// Inside double quotes the lexer treats `\` and `"` specially; both are backslash-escaped.
/// Interpolation cannot be escaped (see the module docs), so the text is split into separately
/// quoted literals joined with `^` wherever a `#` is followed by `{`: no literal then contains
/// `#{`, and interpolation is per literal. Control characters become spaces: liquidsoap sends
/// the stream name as an HTTP header, where CR or LF would split it.
pub fn liq_string(text: &str) -> String {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut previous = None;
    for c in text.chars() {
        if previous == Some('#') && c == '{' {
            parts.push(std::mem::take(&mut part));
        }
        match c {
            '\\' => part.push_str("\\\\"),
            '"' => part.push_str("\\\""),
            c if c.is_control() => part.push(' '),
            c => part.push(c),
        }
        previous = Some(c);
    }
    parts.push(part);
    let quoted: Vec<String> = parts.iter().map(|p| format!("\"{p}\"")).collect();
    if quoted.len() == 1 {
        quoted.into_iter().collect()
    } else {
        format!("({})", quoted.join(" ^ "))
    }
}

/// The text icecast reports as the stream name after [`liq_string`] and liquidsoap.
pub fn sanitized(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The encoder for the service's bitrate limit: the highest bitrate lame can encode that does
/// not exceed it (liquidsoap refuses values outside the MPEG table, and MPEG-1 at 44.1 kHz
/// starts at 32 kbps; lower limits get MPEG-2 at 22.05 kHz).
pub fn mp3_encoder(max_bitrate_kbps: u32) -> String {
    let limit = if max_bitrate_kbps == 0 {
        DEFAULT_BITRATE_KBPS
    } else {
        max_bitrate_kbps
    };
    match MPEG1_KBPS.iter().rev().find(|b| **b <= limit) {
        Some(kbps) => format!("%mp3(bitrate={kbps}, samplerate=44100)"),
        None => {
            let kbps = MPEG2_KBPS
                .iter()
                .rev()
                .find(|b| **b <= limit)
                .unwrap_or(&MPEG2_KBPS[0]);
            format!("%mp3(bitrate={kbps}, samplerate=22050)")
        }
    }
}

/// The server AutoDJ feeds, by the service's type: the only audio servers are icecast2 and
/// sc_serv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Icecast,
    Shoutcast,
}

fn server_of(spec: &ServiceSpec) -> Result<Server, String> {
    match ServiceType::try_from(spec.r#type) {
        Ok(ServiceType::Icecast) => Ok(Server::Icecast),
        Ok(ServiceType::Shoutcast) => Ok(Server::Shoutcast),
        _ => Err("AutoDJ is for audio services (icecast, shoutcast) only".to_owned()),
    }
}

/// The server's own checks, AutoDJ's included (icecast: a relay password of its own).
fn validate_server(spec: &ServiceSpec) -> Result<Server, String> {
    let server = server_of(spec)?;
    match server {
        Server::Icecast => icecast::validate(spec)?,
        Server::Shoutcast => shoutcast::validate(spec)?,
    }
    Ok(server)
}

/// The path in the server's statistics that shows AutoDJ's source.
fn fed_path(server: Server) -> &'static str {
    match server {
        Server::Icecast => AUTODJ_MOUNT,
        Server::Shoutcast => shoutcast::STREAM_PATH,
    }
}

/// The server's statistics: AutoDJ's source is one of the server's.
async fn server_stats(spec: &ServiceSpec) -> Result<ServiceStats, String> {
    match server_of(spec)? {
        Server::Icecast => icecast::admin_stats(spec).await,
        Server::Shoutcast => shoutcast::statistics(spec).await,
    }
}

/// The service's `autodj.liq`: the owner's library, shuffled, silence while it is empty, to the
/// service's own server: icecast2's [`AUTODJ_MOUNT`], or sc_serv's one stream (see
/// [`super::shoutcast`] for why a live DJ cannot take over there). Every string goes through
/// [`liq_string`].
pub fn render_script(spec: &ServiceSpec, library: &Path) -> Result<String, String> {
    let server = validate_server(spec)?;
    let library = library
        .to_str()
        .ok_or_else(|| format!("media library {} is not valid UTF-8", library.display()))?;
    let name = if spec.display_name.trim().is_empty() {
        spec.name.as_str()
    } else {
        spec.display_name.as_str()
    };

    let mut s = String::new();
    s.push_str("# written by castplane-agent; local changes are overwritten\n");
    // The supervisor captures stdout; liquidsoap's default log file is not its account's to write.
    s.push_str("settings.log.stdout.set(true)\n");
    s.push_str("settings.log.file.set(false)\n");
    s.push_str("settings.log.level.set(3)\n");
    let _ = writeln!(
        s,
        "library = playlist(id=\"library\", mode=\"randomize\", reload_mode=\"watch\", {})",
        liq_string(library)
    );
    // Silence while the library is empty or between unreadable tracks, instead of a dead mount.
    s.push_str("radio = mksafe(library)\n");
    match server {
        Server::Icecast => {
            let _ = writeln!(
                s,
                "output.icecast({}, id=\"autodj\", host=\"127.0.0.1\", port={}, user=\"source\", password={}, mount={}, name={}, public=false, radio)",
                mp3_encoder(spec.max_bitrate_kbps),
                icecast::http_port(spec)?,
                liq_string(&spec.relay_password),
                liq_string(AUTODJ_MOUNT),
                liq_string(name),
            );
        }
        Server::Shoutcast => {
            // `port` is sc_serv's base port: liquidsoap's ICY (1.x) source connects to the port
            // after it, sc_serv's `portlegacy` (measured). The password is the one sc_serv's
            // config holds, after the same sanitising, so the two cannot differ.
            let _ = writeln!(
                s,
                "output.shoutcast({}, id=\"autodj\", host=\"127.0.0.1\", port={}, password={}, name={}, public=false, radio)",
                mp3_encoder(spec.max_bitrate_kbps),
                shoutcast::http_port(spec)?,
                liq_string(&shoutcast::config_value(&spec.source_password)),
                liq_string(name),
            );
        }
    }
    Ok(s)
}

impl Plugin for AutoDjPlugin {
    fn service_type(&self) -> ServiceType {
        ServiceType::Icecast
    }

    fn program_name(&self) -> &'static str {
        PROGRAM
    }

    fn validate(&self, spec: &ServiceSpec) -> Result<(), String> {
        validate_server(spec)?;
        check_customer_id(&spec.owner_customer_id)?;
        if find_program(self.program).is_none() {
            return Err(format!(
                "the service has AutoDJ, but {} is not installed on this host",
                self.program
            ));
        }
        Ok(())
    }

    fn ports(&self, _spec: &ServiceSpec) -> Result<Vec<u16>, String> {
        // A source client: it binds nothing.
        Ok(Vec::new())
    }

    fn account(&self) -> Option<ServiceAccount> {
        // liquidsoap refuses to run as root.
        Some(ServiceAccount {
            user: "liquidsoap",
            group: "liquidsoap",
        })
    }

    fn external_dirs(&self, spec: &ServiceSpec) -> Result<Vec<PathBuf>, String> {
        Ok(vec![self.library_dir(spec)?])
    }

    fn log_file(&self) -> &'static str {
        LOG_FILE
    }

    fn record_file(&self) -> &'static str {
        RECORD_FILE
    }

    fn render(&self, spec: &ServiceSpec, _dir: &Path) -> Result<Vec<ConfigFile>, String> {
        Ok(vec![ConfigFile {
            name: SCRIPT_FILE,
            contents: render_script(spec, &self.library_dir(spec)?)?,
            // Carries the mount's password.
            mode: 0o640,
        }])
    }

    fn launch(&self, dir: &Path) -> Result<Launch, String> {
        let program = find_program(self.program)
            .ok_or_else(|| format!("{} is not installed on this host", self.program))?;
        Ok(Launch {
            program,
            args: vec![dir.join(SCRIPT_FILE).into_os_string()],
            env: Vec::new(),
        })
    }

    fn pid_file(&self, _dir: &Path) -> Option<PathBuf> {
        None
    }

    fn owns_process(&self, cmdline: &[OsString], dir: &Path) -> bool {
        let is_liquidsoap = cmdline
            .first()
            .and_then(|argv0| Path::new(argv0).file_name())
            .is_some_and(|name| name == PROGRAM);
        let script = dir.join(SCRIPT_FILE).into_os_string();
        is_liquidsoap && cmdline.len() == 2 && cmdline[1] == script
    }

    fn ready_timeout(&self, configured: Duration) -> Duration {
        configured.max(READY_TIMEOUT)
    }

    fn costly_start(&self) -> bool {
        // ~4.5 s of CPU per start; nine at once on two cores took over 45 s each.
        true
    }

    fn probe_ready<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Readiness> {
        Box::pin(async move {
            let path = match server_of(spec) {
                Ok(server) => fed_path(server),
                Err(e) => return Readiness::NotReady(e),
            };
            match server_stats(spec).await {
                Ok(stats) if stats.mounts.iter().any(|m| m == path) => Readiness::Ready,
                Ok(_) => Readiness::NotReady(format!("the server has no {path} source yet")),
                Err(e) => Readiness::NotReady(e),
            }
        })
    }

    fn probe_released<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Readiness> {
        // icecast2 drops the mount of a source that disconnected within ~50 ms; until then a
        // new liquidsoap would look ready before it even started. sc_serv is treated alike.
        Box::pin(async move {
            let path = match server_of(spec) {
                Ok(server) => fed_path(server),
                Err(e) => return Readiness::NotReady(e),
            };
            match server_stats(spec).await {
                Ok(stats) if stats.mounts.iter().any(|m| m == path) => {
                    Readiness::NotReady(format!("the server still has a source on {path}"))
                }
                Ok(_) => Readiness::Ready,
                Err(e) => Readiness::NotReady(e),
            }
        })
    }

    fn stats<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Result<ServiceStats, String>> {
        // AutoDJ's mount is one of the server's: the server's statistics include it.
        Box::pin(server_stats(spec))
    }

    fn update_mode(&self, running: &ServiceSpec, next: &ServiceSpec) -> UpdateMode {
        // liquidsoap has no reload: any change to its script (library, bitrate, name, port,
        // password) needs a restart; anything else leaves it alone.
        let script = |spec: &ServiceSpec| {
            self.library_dir(spec)
                .and_then(|library| render_script(spec, &library))
        };
        match (script(running), script(next)) {
            (Ok(old), Ok(new)) if old == new => UpdateMode::Rewrite,
            _ => UpdateMode::Restart,
        }
    }

    fn clean_stop(&self, status: ExitStatus) -> bool {
        matches!(status.code(), Some(0 | 1))
    }
}

#[cfg(test)]
mod tests {
    use castplane_proto::v1::PortAssignment;

    use super::*;

    const MEDIA: &str = "/srv/agent/media";
    const DIR: &str = "/srv/agent/services/svc-1";

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
            autodj: true,
            owner_customer_id: "cus_01ABC".into(),
            source_password: "src-pass".into(),
            admin_password: "adm-pass".into(),
            relay_password: "rel-pass".into(),
            public_host: "radio.example.net".into(),
            bind_address: "127.0.0.1".into(),
            desired_running: true,
            generation: 1,
            media_tracks: Vec::new(),
            video_files: Vec::new(),
        }
    }

    fn plugin() -> AutoDjPlugin {
        AutoDjPlugin::new(MEDIA)
    }

    fn script(s: &ServiceSpec) -> Result<String, String> {
        let files = plugin().render(s, Path::new(DIR))?;
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, SCRIPT_FILE);
        assert_eq!(files[0].mode, 0o640);
        Ok(files[0].contents.clone())
    }

    #[test]
    fn script_plays_the_owners_library_into_the_autodj_mount() {
        let text = script(&spec()).expect("renders");
        for expected in [
            "settings.log.stdout.set(true)\n",
            "settings.log.file.set(false)\n",
            "library = playlist(id=\"library\", mode=\"randomize\", reload_mode=\"watch\", \"/srv/agent/media/cus_01ABC\")\n",
            "radio = mksafe(library)\n",
            "output.icecast(%mp3(bitrate=128, samplerate=44100), id=\"autodj\", host=\"127.0.0.1\", port=8010, user=\"source\", password=\"rel-pass\", mount=\"/autodj\", name=\"Radio One\", public=false, radio)\n",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        // Neither the customer's source password nor the admin password is AutoDJ's business.
        assert!(
            !text.contains("src-pass") && !text.contains("adm-pass"),
            "{text}"
        );
        assert!(!text.contains("allow_root"), "{text}");
    }

    fn shoutcast_spec() -> ServiceSpec {
        let mut s = spec();
        s.r#type = ServiceType::Shoutcast as i32;
        s.ports.push(PortAssignment {
            purpose: "legacy-source".into(),
            port: 8011,
        });
        s
    }

    #[test]
    fn on_shoutcast_the_script_feeds_the_one_stream_with_the_source_password() {
        let text = script(&shoutcast_spec()).expect("renders");
        // `port` is the base port: liquidsoap's ICY source connects to the legacy port after it.
        assert!(
            text.contains("output.shoutcast(%mp3(bitrate=128, samplerate=44100), id=\"autodj\", host=\"127.0.0.1\", port=8010, password=\"src-pass\", name=\"Radio One\", public=false, radio)\n"),
            "{text}"
        );
        assert!(
            !text.contains("output.icecast") && !text.contains("adm-pass"),
            "{text}"
        );
        // The password liquidsoap sends is the one sc_serv's config holds, sanitised alike.
        let mut s = shoutcast_spec();
        s.source_password = " p\"#{x}\n ".into();
        let text = script(&s).expect("renders");
        assert!(
            text.contains(r##"password=("p\"#" ^ "{x}"), name="##),
            "{text}"
        );
        // sc_serv's own checks apply: its legacy port must follow the base port.
        let mut s = shoutcast_spec();
        s.ports[1].port = 9000;
        assert!(script(&s).unwrap_err().contains("legacy-source"));
        let mut s = shoutcast_spec();
        s.r#type = ServiceType::Video as i32;
        assert!(script(&s).unwrap_err().contains("audio services"));
    }

    #[test]
    fn strings_are_escaped_and_cannot_interpolate() {
        assert_eq!(liq_string("plain"), "\"plain\"");
        assert_eq!(liq_string(""), "\"\"");
        assert_eq!(liq_string(r#"a"b\c'd"#), r#""a\"b\\c'd""#);
        // Interpolation cannot be escaped, so the literal is split between '#' and '{'.
        assert_eq!(
            liq_string("x #{shutdown()} y"),
            r#"("x #" ^ "{shutdown()} y")"#
        );
        assert_eq!(liq_string("##{{"), r###"("##" ^ "{{")"###);
        assert_eq!(liq_string("#{#{"), r##"("#" ^ "{#" ^ "{")"##);
        // An escaped '#' is still a '#' to the interpolation that follows decoding.
        assert_eq!(liq_string("\\#{x}"), r#"("\\#" ^ "{x}")"#);
        assert_eq!(liq_string("a\r\nb\t\u{0}c"), "\"a  b  c\"");
        assert_eq!(liq_string("café 🎵 %mp3 r/x/"), "\"café 🎵 %mp3 r/x/\"");
        for hostile in ["#{", "\"#{", "\\\"#{x}", "#\\{", "a\"; shutdown() #{1}"] {
            let rendered = liq_string(hostile);
            for literal in literals(&rendered) {
                assert!(!literal.contains("#{"), "{hostile:?} → {rendered}");
            }
        }
        assert_eq!(sanitized("a\r\nb"), "a  b");
    }

    /// The decoded text of each double-quoted literal in `expr`.
    fn literals(expr: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut chars = expr.chars();
        while let Some(c) = chars.next() {
            if c != '"' {
                continue;
            }
            let mut literal = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => literal.extend(chars.next()),
                    '"' => break,
                    c => literal.push(c),
                }
            }
            out.push(literal);
        }
        out
    }

    #[test]
    fn hostile_display_names_stay_one_string() {
        let mut s = spec();
        s.display_name =
            "Evil\"; shutdown() # #{file.write(data=\"x\", \"/tmp/pwned\")} \\ \r\nsettings.x.set(1) 'q' é"
                .into();
        let text = script(&s).expect("renders");
        let line = text
            .lines()
            .find(|l| l.starts_with("output.icecast("))
            .expect("output line");
        assert!(
            line.ends_with(r#"name=("Evil\"; shutdown() # #" ^ "{file.write(data=\"x\", \"/tmp/pwned\")} \\   settings.x.set(1) 'q' é"), public=false, radio)"#),
            "{line}"
        );
        // The newline did not start a statement of its own.
        assert_eq!(
            text.lines().count(),
            script(&spec()).expect("renders").lines().count()
        );
        assert!(!text.contains("\nsettings.x"), "{text}");
    }

    #[test]
    fn bitrates_round_down_to_what_lame_encodes() {
        assert_eq!(mp3_encoder(128), "%mp3(bitrate=128, samplerate=44100)");
        assert_eq!(mp3_encoder(130), "%mp3(bitrate=128, samplerate=44100)");
        assert_eq!(mp3_encoder(0), "%mp3(bitrate=128, samplerate=44100)");
        assert_eq!(mp3_encoder(320), "%mp3(bitrate=320, samplerate=44100)");
        assert_eq!(mp3_encoder(10_000), "%mp3(bitrate=320, samplerate=44100)");
        assert_eq!(mp3_encoder(32), "%mp3(bitrate=32, samplerate=44100)");
        assert_eq!(mp3_encoder(31), "%mp3(bitrate=24, samplerate=22050)");
        assert_eq!(mp3_encoder(16), "%mp3(bitrate=16, samplerate=22050)");
        assert_eq!(mp3_encoder(1), "%mp3(bitrate=8, samplerate=22050)");
    }

    #[test]
    fn owners_must_be_safe_directory_names() {
        for bad in ["", "..", "a/b", "../../etc", "a b", "a\"b", "a\nb", "é"] {
            let mut s = spec();
            s.owner_customer_id = bad.into();
            let err = script(&s).expect_err(bad);
            assert!(err.contains("owner"), "{bad:?}: {err}");
        }
        let mut s = spec();
        s.owner_customer_id = "x".repeat(MAX_CUSTOMER_ID_LEN + 1);
        assert!(script(&s).is_err());
        assert_eq!(
            plugin().library_dir(&spec()).expect("dir"),
            Path::new("/srv/agent/media/cus_01ABC")
        );
    }

    #[test]
    fn autodj_needs_its_own_password() {
        let mut s = spec();
        s.relay_password.clear();
        assert!(script(&s).unwrap_err().contains("relay password"));
        let mut s = spec();
        s.relay_password = s.source_password.clone();
        assert!(script(&s).unwrap_err().contains("must differ"));
    }

    #[test]
    fn a_host_without_liquidsoap_says_so() {
        let plugin = AutoDjPlugin::with_program(MEDIA, "liquidsoap-not-installed-here");
        let err = plugin.validate(&spec()).expect_err("no such program");
        assert_eq!(
            err,
            "the service has AutoDJ, but liquidsoap-not-installed-here is not installed on this host"
        );
        assert!(plugin.launch(Path::new(DIR)).is_err());
    }

    #[test]
    fn only_script_changes_restart_liquidsoap() {
        let plugin = plugin();
        let mut next = spec();
        next.generation = 2;
        next.max_listeners = 7;
        next.public_host = "elsewhere.example.net".into();
        next.source_password = "new-src".into();
        assert_eq!(plugin.update_mode(&spec(), &next), UpdateMode::Rewrite);
        for change in [
            |s: &mut ServiceSpec| s.owner_customer_id = "cus_OTHER".into(),
            |s: &mut ServiceSpec| s.max_bitrate_kbps = 64,
            |s: &mut ServiceSpec| s.display_name = "Renamed".into(),
            |s: &mut ServiceSpec| s.relay_password = "new-rel".into(),
            |s: &mut ServiceSpec| s.ports[0].port = 8011,
        ] {
            let mut next = spec();
            change(&mut next);
            assert_eq!(plugin.update_mode(&spec(), &next), UpdateMode::Restart);
        }
    }

    #[test]
    fn adoption_matches_only_this_services_script() {
        let plugin = plugin();
        let dir = Path::new(DIR);
        let ours: Vec<OsString> = vec![
            "/usr/bin/liquidsoap".into(),
            "/srv/agent/services/svc-1/autodj.liq".into(),
        ];
        assert!(plugin.owns_process(&ours, dir));
        for other in [
            vec![
                "/usr/bin/liquidsoap",
                "/srv/agent/services/svc-2/autodj.liq",
            ],
            vec!["/bin/sleep", "/srv/agent/services/svc-1/autodj.liq"],
            vec!["/usr/bin/liquidsoap"],
            vec![
                "/usr/bin/liquidsoap",
                "/srv/agent/services/svc-1/autodj.liq",
                "extra.liq",
            ],
        ] {
            let cmdline: Vec<OsString> = other.iter().map(OsString::from).collect();
            assert!(!plugin.owns_process(&cmdline, dir), "{other:?}");
        }
    }

    #[test]
    fn sigterm_status_1_is_a_clean_stop() {
        use std::os::unix::process::ExitStatusExt;
        let plugin = plugin();
        assert!(plugin.clean_stop(ExitStatus::from_raw(0)));
        assert!(plugin.clean_stop(ExitStatus::from_raw(1 << 8)));
        assert!(!plugin.clean_stop(ExitStatus::from_raw(2 << 8)));
        assert!(!plugin.clean_stop(ExitStatus::from_raw(9)));
    }
}
