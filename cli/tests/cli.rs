//! castctl against a real control plane: each test starts `castplane-control` in-process on
//! free loopback ports with its own data directory, and runs the built `castctl` binary.
//!
//! Media services themselves are not created here: that needs a node whose agent has joined
//! and reported capabilities, which the integration tests cover with real agents.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

struct Server {
    dir: TempDir,
    endpoint: String,
    admin_token: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Serves plaintext on loopback, or TLS when given a certificate and key.
async fn start_server(tls: Option<castplane_control::TlsFiles>) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let config = castplane_control::Config {
        data_dir: data_dir.clone(),
        database_url: None,
        public_tls: tls.clone(),
        console_dir: None,
        service: castplane_control::ServiceConfig::default(),
        ..Default::default()
    };
    let listeners = castplane_control::bind("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await?;
    let port = listeners.public.local_addr()?.port();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(castplane_control::run(config, listeners, shutdown.clone()));
    let endpoint = match tls {
        Some(_) => format!("https://localhost:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    };
    let mut server = Server {
        dir,
        endpoint,
        admin_token: String::new(),
        shutdown,
        task: Some(task),
    };
    server.admin_token = wait_for_admin_token(&data_dir.join("admin.token"), &mut server).await?;
    Ok(server)
}

async fn wait_for_admin_token(path: &Path, server: &mut Server) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let token = text.trim().to_owned();
            if !token.is_empty() {
                return Ok(token);
            }
        }
        if server.task.as_ref().is_some_and(|t| t.is_finished()) {
            let result = server.task.take().context("server task")?.await?;
            bail!("the control plane stopped before writing its admin token: {result:?}");
        }
        if Instant::now() > deadline {
            bail!("no admin token at {} after 60s", path.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a castctl run printed and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "castctl failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout))
    }
}

impl Server {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("home").join("castctl.toml")
    }

    /// Runs castctl with only what is given: no inherited castplane settings, and a config
    /// file inside the test's directory.
    async fn castctl_with(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let home = self.dir.path().join("home");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_castctl"));
        // A test that names its own config file gets that one.
        if !args.contains(&"--config") {
            command.arg("--config").arg(self.config_path());
        }
        command
            .args(args)
            .env_remove("CASTPLANE_ENDPOINT")
            .env_remove("CASTPLANE_TOKEN")
            .env_remove("CASTPLANE_CA_CERT")
            .env_remove("CASTCTL_CONFIG")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .stdin(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        Run::from(command.output().await.expect("castctl runs"))
    }

    /// As `token`, against this server.
    async fn as_token(&self, token: &str, args: &[&str]) -> Run {
        self.castctl_with(
            &[
                ("CASTPLANE_ENDPOINT", self.endpoint.as_str()),
                ("CASTPLANE_TOKEN", token),
            ],
            args,
        )
        .await
    }

    async fn admin(&self, args: &[&str]) -> Run {
        self.as_token(&self.admin_token, args).await
    }

    /// Creates a reseller and returns its JSON.
    async fn reseller(&self, extra: &[&str]) -> Value {
        let mut args = vec!["reseller", "create", "-o", "json"];
        args.extend_from_slice(extra);
        self.admin(&args).await.ok().json()
    }

    async fn customer(&self, reseller_id: &str, name: &str) -> Value {
        self.admin(&[
            "customer",
            "create",
            "--reseller",
            reseller_id,
            "--name",
            name,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json()
    }
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_whoami() -> Result<()> {
    let server = start_server(None).await?;
    let run = server
        .castctl_with(
            &[],
            &[
                "login",
                "--endpoint",
                &server.endpoint,
                "--token",
                &server.admin_token,
            ],
        )
        .await
        .ok();
    assert!(run.stdout.contains("as the admin"), "{}", run.stdout);
    assert!(
        !run.stdout.contains(&server.admin_token),
        "login must not echo the token"
    );

    let path = server.config_path();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path)?.permissions());
    assert_eq!(mode & 0o777, 0o600, "the config holds a token");
    let saved = std::fs::read_to_string(&path)?;
    assert!(saved.contains(&server.endpoint));

    // No flags or environment: everything comes from the saved login.
    let run = server.castctl_with(&[], &["whoami"]).await.ok();
    assert!(run.stdout.contains("admin"), "{}", run.stdout);
    assert!(run.stdout.contains(&server.endpoint), "{}", run.stdout);
    let json = server
        .castctl_with(&[], &["whoami", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json["principal_kind"], "PRINCIPAL_KIND_ADMIN");

    // A wrong token from the environment beats the saved one, and the server says no.
    let run = server
        .castctl_with(&[("CASTPLANE_TOKEN", "cpt_wrong")], &["whoami"])
        .await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("invalid API token"), "{}", run.stderr);
    assert!(run.stderr.contains("UNAUTHENTICATED"), "{}", run.stderr);

    // Another endpoint given explicitly: the saved token is not sent there.
    let run = server
        .castctl_with(&[], &["--endpoint", "http://127.0.0.1:1", "whoami"])
        .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no API token"), "{}", run.stderr);
    assert!(run.stderr.contains("castctl login"), "{}", run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_says_how_to_provide_one() -> Result<()> {
    let server = start_server(None).await?;
    let run = server
        .castctl_with(&[("CASTPLANE_ENDPOINT", &server.endpoint)], &["whoami"])
        .await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--token"), "{}", run.stderr);
    assert!(run.stderr.contains("CASTPLANE_TOKEN"), "{}", run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseller_create_with_limits_and_types() -> Result<()> {
    let server = start_server(None).await?;
    let reseller = server
        .reseller(&[
            "--name",
            "Acme Radio",
            "--max-customers",
            "2",
            "--max-services",
            "unlimited",
            "--max-listener-slots",
            "500",
            "--max-bitrate-kbps",
            "320",
            "--max-disk-mb",
            "10000",
            "--max-bandwidth-gb",
            "100",
            "--allow-types",
            "icecast,video",
            "--default-type",
            "icecast",
        ])
        .await;
    assert!(str_of(&reseller, "id").starts_with("rsl_"));
    assert_eq!(reseller["display_name"], "Acme Radio");
    assert!(str_of(&reseller, "primary_customer_id").starts_with("cus_"));
    let limits = &reseller["limits"];
    assert_eq!(limits["customers"]["max"], 2);
    assert_eq!(
        limits["services"]["max"],
        Value::Null,
        "unlimited has no max"
    );
    assert_eq!(limits["listener_slots"]["max"], 500);
    assert_eq!(limits["max_bitrate_kbps"]["max"], 320);
    assert_eq!(limits["disk_mb"]["max"], 10000);
    assert_eq!(limits["bandwidth_gb_per_month"]["max"], 100);
    assert_eq!(
        reseller["allowed_service_types"],
        serde_json::json!(["SERVICE_TYPE_ICECAST", "SERVICE_TYPE_VIDEO"])
    );
    assert_eq!(reseller["default_service_type"], "SERVICE_TYPE_ICECAST");
    // RFC 3339.
    assert!(str_of(&reseller, "create_time").ends_with('Z'));

    let run = server.admin(&["reseller", "list"]).await.ok();
    assert!(run.stdout.contains("Acme Radio"), "{}", run.stdout);
    assert!(run.stdout.contains("icecast,video"), "{}", run.stdout);
    let id = str_of(&reseller, "id");
    let run = server.admin(&["reseller", "get", id]).await.ok();
    assert!(run.stdout.contains("unlimited"), "{}", run.stdout);
    assert!(run.stdout.contains("500"), "{}", run.stdout);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseller_update_changes_only_the_given_limit() -> Result<()> {
    let server = start_server(None).await?;
    let reseller = server
        .reseller(&[
            "--name",
            "Wave FM",
            "--max-customers",
            "5",
            "--max-services",
            "10",
            "--max-listener-slots",
            "1000",
            "--max-bitrate-kbps",
            "256",
            "--max-disk-mb",
            "2048",
            "--max-bandwidth-gb",
            "50",
            "--allow-types",
            "icecast,shoutcast",
            "--default-type",
            "shoutcast",
        ])
        .await;
    let id = str_of(&reseller, "id");
    let updated = server
        .admin(&[
            "reseller",
            "update",
            id,
            "--max-services",
            "7",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let mut expected = reseller.clone();
    expected["limits"]["services"]["max"] = 7.into();
    for field in [
        "limits",
        "allowed_service_types",
        "default_service_type",
        "display_name",
        "primary_customer_id",
    ] {
        assert_eq!(updated[field], expected[field], "{field}");
    }

    // `unlimited` clears one limit and leaves the rest.
    let updated = server
        .admin(&[
            "reseller",
            "update",
            id,
            "--max-disk-mb",
            "unlimited",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(updated["limits"]["disk_mb"], serde_json::json!({}));
    assert_eq!(updated["limits"]["services"]["max"], 7);
    assert_eq!(updated["limits"]["customers"]["max"], 5);

    // Nothing given is a usage error, not an empty update.
    let run = server.admin(&["reseller", "update", id]).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("nothing to change"), "{}", run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_and_wizard_choices_sorted_with_labels() -> Result<()> {
    let server = start_server(None).await?;
    let reseller = server.reseller(&["--name", "Mango Media"]).await;
    let rid = str_of(&reseller, "id");
    let created = server.customer(rid, "zulu station").await;
    assert_eq!(created["kind"], "CUSTOMER_KIND_SUB_ACCOUNT");
    assert_eq!(created["reseller_id"], rid);
    server.customer(rid, "Alpha Beats").await;
    server.customer(rid, "bravo talk").await;

    let json = server
        .admin(&["customer", "choices", "--reseller", rid, "-o", "json"])
        .await
        .ok()
        .json();
    let choices = json["choices"].as_array().expect("choices");
    let names: Vec<&str> = choices.iter().map(|c| str_of(c, "display_name")).collect();
    assert_eq!(
        names,
        ["Alpha Beats", "bravo talk", "Mango Media", "zulu station"]
    );
    for choice in choices {
        let expected = if choice["display_name"] == "Mango Media" {
            "reseller (primary account)"
        } else {
            "sub-account"
        };
        assert_eq!(choice["label"], expected);
    }

    // The table keeps that order and shows the labels.
    let run = server
        .admin(&["customer", "choices", "--reseller", rid])
        .await
        .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", run.stdout);
    assert!(lines[1].starts_with("Alpha Beats"), "{}", run.stdout);
    assert!(lines[3].contains("Mango Media"), "{}", run.stdout);
    assert!(
        lines[3].contains("reseller (primary account)"),
        "{}",
        run.stdout
    );
    assert!(lines[4].contains("sub-account"), "{}", run.stdout);

    let run = server
        .admin(&["customer", "list", "--reseller", rid])
        .await
        .ok();
    assert!(run.stdout.contains("zulu station"), "{}", run.stdout);
    assert!(run.stdout.contains("primary-account"), "{}", run.stdout);

    let id = str_of(&created, "id");
    let updated = server
        .admin(&[
            "customer",
            "update",
            id,
            "--email",
            "ops@zulu.example",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(updated["email"], "ops@zulu.example");
    assert_eq!(updated["display_name"], "zulu station");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_shows_used_limit_available() -> Result<()> {
    let server = start_server(None).await?;
    let reseller = server
        .reseller(&["--name", "Usage Co", "--max-customers", "3"])
        .await;
    let rid = str_of(&reseller, "id");
    server.customer(rid, "first").await;

    let run = server.admin(&["usage", "--reseller", rid]).await.ok();
    let row = |label: &str| -> Vec<String> {
        run.stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row in\n{}", run.stdout))
            .trim_start_matches(label)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert!(run.stdout.contains("USED"), "{}", run.stdout);
    assert!(run.stdout.contains("AVAILABLE"), "{}", run.stdout);
    assert_eq!(row("customers"), ["1", "3", "2"]);
    assert_eq!(row("services"), ["0", "unlimited", "unlimited"]);

    let json = server
        .admin(&["usage", "--reseller", rid, "-o", "json"])
        .await
        .ok()
        .json();
    let customers = json["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "RESOURCE_CUSTOMERS")
        .expect("customers")
        .clone();
    assert_eq!(customers["used"], 1);
    assert_eq!(customers["limit"]["max"], 3);
    assert_eq!(customers["available"], 2);

    // Lists name the accounts they refer to.
    let run = server
        .admin(&["customer", "list", "--reseller", rid])
        .await
        .ok();
    let first = run
        .stdout
        .lines()
        .find(|l| l.contains("first"))
        .unwrap_or_default();
    assert!(
        first.contains(&format!("Usage Co ({rid})")),
        "{}",
        run.stdout
    );

    // The admin without --reseller sees every reseller, by name.
    server.reseller(&["--name", "Second Co"]).await;
    let run = server.admin(&["usage"]).await.ok();
    assert!(
        run.stdout.contains(&format!("Reseller Usage Co ({rid})")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Reseller Second Co"), "{}", run.stdout);
    let json = server.admin(&["usage", "-o", "json"]).await.ok().json();
    assert_eq!(json["resellers"].as_array().expect("resellers").len(), 2);
    let yaml = server.admin(&["usage", "-o", "yaml"]).await.ok();
    assert!(yaml.stdout.contains("resellers:"), "{}", yaml.stdout);
    assert!(
        yaml.stdout.contains("RESOURCE_CUSTOMERS"),
        "{}",
        yaml.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_create_without_a_terminal_lists_missing_flags() -> Result<()> {
    let server = start_server(None).await?;
    let run = server
        .admin(&[
            "service",
            "create",
            "--name",
            "radio",
            "--max-listeners",
            "10",
        ])
        .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    for flag in [
        "--customer",
        "--type",
        "--max-bitrate-kbps",
        "--disk-mb",
        "--bandwidth-gb",
    ] {
        assert!(
            run.stderr.contains(flag),
            "{flag} missing from: {}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("--name"), "{}", run.stderr);
    assert!(!run.stderr.contains("--max-listeners"), "{}", run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_print_the_message_and_fail() -> Result<()> {
    let server = start_server(None).await?;
    let reseller = server
        .reseller(&["--name", "Tiny", "--max-customers", "1"])
        .await;
    let rid = str_of(&reseller, "id");
    server.customer(rid, "only one").await;

    let run = server
        .admin(&[
            "customer",
            "create",
            "--reseller",
            rid,
            "--name",
            "one too many",
        ])
        .await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(
        run.stderr.contains("quota exceeded for customers"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("RESOURCE_EXHAUSTED"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("quota reseller:{rid}/")),
        "QuotaFailure detail: {}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let run = server
        .admin(&["service", "get", "svc_00000000000000000000000000"])
        .await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
    assert!(run.stderr.contains("NOT_FOUND"), "{}", run.stderr);

    let run = server.admin(&["service", "start", "no-such-radio"]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("no media service named \"no-such-radio\""),
        "{}",
        run.stderr
    );

    // Field violations are listed one by one.
    let run = server
        .admin(&["customer", "create", "--reseller", rid, "--name", " "])
        .await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("INVALID_ARGUMENT"), "{}", run.stderr);
    assert!(
        run.stderr.contains("invalid customer.display_name"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_add_prints_a_join_token() -> Result<()> {
    let server = start_server(None).await?;
    let run = server
        .admin(&[
            "node",
            "add",
            "edge-1",
            "--public-host",
            "edge1.example.net",
            "--ports",
            "8000-8099",
            "--capacity",
            "20",
        ])
        .await
        .ok();
    assert!(run.stdout.contains("edge-1"), "{}", run.stdout);
    assert!(run.stdout.contains("pending-join"), "{}", run.stdout);
    assert!(run.stdout.contains("cpjoin."), "{}", run.stdout);
    assert!(
        run.stdout.contains("castplane-agent join"),
        "{}",
        run.stdout
    );

    let json = server
        .admin(&[
            "node",
            "add",
            "edge-2",
            "--public-host",
            "edge2.example.net",
            "--ports",
            "9000-9009",
            "--token-ttl",
            "600",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert!(str_of(&json["join_token"], "token").starts_with("cpjoin."));
    assert!(json["join_token"]["expire_time"].is_string());
    assert_eq!(json["node"]["status"], "NODE_STATUS_PENDING_JOIN");
    assert_eq!(json["node"]["port_range"]["first"], 9000);
    assert_eq!(json["node"]["port_range"]["last"], 9009);
    let node_id = str_of(&json["node"], "id").to_owned();

    let run = server.admin(&["node", "list"]).await.ok();
    assert!(run.stdout.contains("LAST-HEARTBEAT"), "{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("edge-2"))
        .expect("edge-2 listed");
    assert!(line.contains("pending-join"), "{line}");
    assert!(line.contains("0/10"), "ports used/total: {line}");

    // By name and by id.
    let by_name = server
        .admin(&["node", "get", "edge-2", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(by_name["id"], node_id.as_str());
    let by_id = server
        .admin(&["node", "get", &node_id, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(by_id["name"], "edge-2");

    let token = server
        .admin(&["node", "token", "edge-2", "-o", "json"])
        .await
        .ok()
        .json();
    assert!(str_of(&token, "token").starts_with("cpjoin."));
    assert_ne!(token["token"], json["join_token"]["token"]);

    let run = server.admin(&["node", "get", "edge-404"]).await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("no node named"), "{}", run.stderr);

    // A bad range never reaches the server.
    let run = server
        .admin(&[
            "node",
            "add",
            "edge-3",
            "--public-host",
            "h",
            "--ports",
            "9-1",
        ])
        .await;
    assert_eq!(run.code, Some(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_for_resellers_and_customers() -> Result<()> {
    let server = start_server(None).await?;
    let reseller = server
        .reseller(&["--name", "Token Town", "--allow-types", "icecast"])
        .await;
    let rid = str_of(&reseller, "id");
    let token = server
        .admin(&[
            "token",
            "create",
            "--reseller",
            rid,
            "--description",
            "ci",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert!(str_of(&token, "token_id").starts_with("tok_"));
    let secret = str_of(&token, "secret").to_owned();

    let me = server
        .as_token(&secret, &["whoami", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(me["principal_kind"], "PRINCIPAL_KIND_RESELLER");
    assert_eq!(me["principal_id"], rid);

    // As the reseller: its own wizard data without naming itself.
    let options = server
        .as_token(&secret, &["catalog", "options", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(options["reseller_id"], rid);
    assert_eq!(
        options["allowed_service_types"][0]["type"],
        "SERVICE_TYPE_ICECAST"
    );
    let customer = server
        .as_token(
            &secret,
            &["customer", "create", "--name", "Sub One", "-o", "json"],
        )
        .await
        .ok()
        .json();
    let run = server
        .as_token(&secret, &["customer", "choices"])
        .await
        .ok();
    assert!(run.stdout.contains("Sub One"), "{}", run.stdout);

    let ctoken = server
        .as_token(
            &secret,
            &[
                "token",
                "create",
                "--customer",
                str_of(&customer, "id"),
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    let me = server
        .as_token(str_of(&ctoken, "secret"), &["whoami", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(me["principal_kind"], "PRINCIPAL_KIND_CUSTOMER");

    // Resellers may not see nodes.
    let run = server.as_token(&secret, &["node", "list"]).await;
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("PERMISSION_DENIED"), "{}", run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_and_empty_listings() -> Result<()> {
    let server = start_server(None).await?;
    let json = server
        .admin(&["catalog", "types", "-o", "json"])
        .await
        .ok()
        .json();
    let types: Vec<&str> = json["service_types"]
        .as_array()
        .expect("types")
        .iter()
        .map(|t| str_of(t, "type"))
        .collect();
    assert_eq!(
        types,
        [
            "SERVICE_TYPE_ICECAST",
            "SERVICE_TYPE_SHOUTCAST",
            "SERVICE_TYPE_VIDEO"
        ]
    );
    let run = server.admin(&["catalog", "types"]).await.ok();
    assert!(run.stdout.contains("icecast"), "{}", run.stdout);

    let json = server
        .admin(&["service", "list", "--scope", "customers", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json, serde_json::json!({ "media_services": [] }));
    let run = server.admin(&["service", "list"]).await.ok();
    assert!(run.stdout.starts_with("NAME"), "{}", run.stdout);
    let json = server
        .admin(&["action", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json, serde_json::json!({ "actions": [] }));
    Ok(())
}

/// A CA and a `localhost` certificate it signed, as PEM files in `dir`.
fn write_test_pki(dir: &Path) -> Result<(PathBuf, castplane_control::TlsFiles)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_owned()])?;
    let cert = params.signed_by(&key, &issuer)?;
    let ca_path = dir.join("ca.pem");
    let tls = castplane_control::TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&ca_path, ca_cert.pem())?;
    std::fs::write(&tls.cert, cert.pem())?;
    std::fs::write(&tls.key, key.serialize_pem())?;
    Ok((ca_path, tls))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_with_an_extra_ca() -> Result<()> {
    let pki = tempfile::tempdir()?;
    let (ca_path, tls) = write_test_pki(pki.path())?;
    let server = start_server(Some(tls)).await?;
    let ca = ca_path.to_string_lossy().into_owned();

    let json = server
        .castctl_with(
            &[("CASTPLANE_TOKEN", &server.admin_token)],
            &[
                "--endpoint",
                &server.endpoint,
                "--ca-cert",
                &ca,
                "whoami",
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(json["principal_kind"], "PRINCIPAL_KIND_ADMIN");

    // Login remembers the CA, so later commands need nothing else.
    server
        .castctl_with(
            &[("CASTPLANE_TOKEN", &server.admin_token)],
            &["login", "--endpoint", &server.endpoint, "--ca-cert", &ca],
        )
        .await
        .ok();
    server.castctl_with(&[], &["whoami"]).await.ok();

    // Without the CA the certificate is not trusted.
    let run = server
        .castctl_with(
            &[("CASTPLANE_TOKEN", &server.admin_token)],
            &[
                "--config",
                "/nonexistent/castctl.toml",
                "--endpoint",
                &server.endpoint,
                "whoami",
            ],
        )
        .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    Ok(())
}

/// A castctl process on a pseudo-terminal, driven like a person at a keyboard.
struct Terminal {
    child: std::process::Child,
    master: std::fs::File,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    seen: usize,
}

impl Terminal {
    fn spawn(server: &Server, args: &[&str]) -> Result<Terminal> {
        use std::io::Read;
        let size = nix::pty::Winsize {
            ws_row: 40,
            ws_col: 160,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None)?;
        let home = server.dir.path().join("home");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_castctl"))
            .arg("--config")
            .arg(server.config_path())
            .args(args)
            .env_remove("CASTPLANE_CA_CERT")
            .env_remove("CASTCTL_CONFIG")
            .env("CASTPLANE_ENDPOINT", &server.endpoint)
            .env("CASTPLANE_TOKEN", &server.admin_token)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("TERM", "xterm")
            .stdin(pty.slave.try_clone()?)
            .stdout(pty.slave.try_clone()?)
            .stderr(pty.slave)
            .spawn()?;
        let master = std::fs::File::from(pty.master);
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reading = master.try_clone()?;
        let sink = screen.clone();
        // Reads until the child's side closes (EIO), so the pty never fills up.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reading.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut screen) = sink.lock() {
                    screen.extend_from_slice(&buf[..n]);
                }
            }
        });
        Ok(Terminal {
            child,
            master,
            screen,
            reader: Some(reader),
            seen: 0,
        })
    }

    fn text(&self) -> String {
        let bytes = self.screen.lock().map(|s| s.clone()).unwrap_or_default();
        strip_ansi(&String::from_utf8_lossy(&bytes))
    }

    /// Waits until `needle` appears after what was already matched.
    fn expect(&mut self, needle: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.text();
            if let Some(at) = text.get(self.seen..).and_then(|rest| rest.find(needle)) {
                self.seen += at + needle.len();
                return self.await_raw_mode();
            }
            if Instant::now() > deadline {
                bail!("{needle:?} did not appear; the screen:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the prompt has switched the terminal to raw mode (canonical input off):
    /// keys typed before that would be flushed by the switch.
    fn await_raw_mode(&self) -> Result<()> {
        use nix::sys::termios::{LocalFlags, tcgetattr};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attrs = tcgetattr(&self.master)?;
            if !attrs.local_flags.contains(LocalFlags::ICANON) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the prompt never read the keyboard; the screen:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn keys(&mut self, keys: &str) -> Result<()> {
        use std::io::Write;
        self.master.write_all(keys.as_bytes())?;
        self.master.flush()?;
        Ok(())
    }

    fn finish(mut self) -> Result<(Option<i32>, String)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("castctl did not exit; the screen:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ok((status.code(), self.text()))
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

const DOWN: &str = "\u{1b}[B";
const UP: &str = "\u{1b}[A";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wizard_asks_only_for_what_is_missing() -> Result<()> {
    let server = start_server(None).await?;
    let reseller = server
        .reseller(&[
            "--name",
            "Mango Media",
            "--max-listener-slots",
            "300",
            "--allow-types",
            "icecast,video",
            "--default-type",
            "video",
        ])
        .await;
    let rid = str_of(&reseller, "id").to_owned();
    server.customer(&rid, "alpha sub").await;

    let args = [
        "service",
        "create",
        "--reseller",
        &rid,
        "--name",
        "wiz-radio",
        "--max-bitrate-kbps",
        "64",
        "--disk-mb",
        "10",
        "--bandwidth-gb",
        "1",
    ];
    let term = Terminal::spawn(&server, &args)?;
    // The dialogue blocks while waiting for the screen; keep it off the server's threads.
    let (code, screen) = tokio::task::spawn_blocking(move || answer_wizard(term)).await??;

    assert!(
        !screen.contains("Service name"),
        "--name was given:\n{screen}"
    );
    assert!(
        !screen.contains("Disk quota"),
        "--disk-mb was given:\n{screen}"
    );
    // 600 listeners with 300 available was refused as it was typed, and asked again.
    assert!(
        screen.contains("only 300 listener slots are available"),
        "{screen}"
    );
    let usage_row = screen
        .lines()
        .find(|l| l.trim_start().starts_with("listener slots"))
        .unwrap_or_default();
    assert!(usage_row.contains("300"), "{usage_row:?}");
    // No agent has joined here, so the request reaches the server and placement refuses it.
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("no node can run icecast"), "{screen}");
    assert!(screen.contains("FAILED_PRECONDITION"), "{screen}");

    let options = server
        .admin(&["catalog", "options", "--reseller", &rid, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(options["default_service_type"], "SERVICE_TYPE_VIDEO");
    Ok(())
}

/// Answers the wizard for `wizard_asks_only_for_what_is_missing`.
fn answer_wizard(mut term: Terminal) -> Result<(Option<i32>, String)> {
    // Step 1: the customers a–z, labelled; pick the primary account (second).
    term.expect("Step 1 of 3")?;
    term.expect("alpha sub — sub-account")?;
    term.expect("Mango Media — reseller (primary account)")?;
    term.keys(DOWN)?;
    term.keys("\r")?;
    // Step 2: the saved default (video) is preselected; go up to icecast, don't remember it.
    term.expect("Step 2 of 3")?;
    term.expect("[default]")?;
    term.keys(UP)?;
    term.keys("\r")?;
    term.expect("Use selected type as default in the future?")?;
    term.keys("n")?;
    // Step 3: the usage table, then only the values no flag gave.
    term.expect("Step 3 of 3")?;
    term.expect("listener slots")?;
    term.expect("Display name")?;
    term.keys("\r")?;
    term.expect("Max listeners (listener slots available: 300)")?;
    term.keys("600\r")?;
    term.expect("only 300 listener slots are available")?;
    term.await_raw_mode()?;
    term.keys("10\r")?;
    term.expect("Enable AutoDJ")?;
    term.keys("n")?;
    // The confirmation names the customer, not its id.
    term.expect(
        "Create icecast service \"wiz-radio\" for Mango Media (the reseller's primary account)?",
    )?;
    term.keys("y")?;
    term.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_login_reads_the_password_from_stdin_only() -> Result<()> {
    let server = start_server(None).await?;
    let reseller = server
        .reseller(&["--name", "Login Lane", "--allow-types", "icecast"])
        .await;
    let rid = str_of(&reseller, "id");
    // No login yet.
    let missing = server
        .admin(&["console-login", "get", "--reseller", rid])
        .await;
    assert_ne!(missing.code, Some(0));
    assert!(
        missing.stderr.contains("has no login"),
        "{}",
        missing.stderr
    );
    // The password is never an argument; an empty standard input is a usage error.
    let empty = server
        .admin(&[
            "console-login",
            "set",
            "--reseller",
            rid,
            "--email",
            "ops@lane.example",
            "--password-stdin",
        ])
        .await;
    assert_eq!(empty.code, Some(2), "{}", empty.stderr);
    assert!(
        empty.stderr.contains("no password on standard input"),
        "{}",
        empty.stderr
    );
    let no_flag = server
        .admin(&[
            "console-login",
            "set",
            "--reseller",
            rid,
            "--email",
            "ops@lane.example",
        ])
        .await;
    assert_eq!(no_flag.code, Some(2), "{}", no_flag.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_and_revoked_and_customers_deleted() -> Result<()> {
    let server = start_server(None).await?;
    let reseller = server
        .reseller(&["--name", "Closing Time", "--allow-types", "icecast"])
        .await;
    let rid = str_of(&reseller, "id").to_owned();
    let customer = server.customer(&rid, "Short Lived").await;
    let cid = str_of(&customer, "id").to_owned();
    let token = server
        .admin(&["token", "create", "--customer", &cid, "-o", "json"])
        .await
        .ok()
        .json();
    let secret = str_of(&token, "secret").to_owned();
    let token_id = str_of(&token, "token_id").to_owned();

    // Listed by id and account, never with the secret.
    let run = server
        .admin(&["token", "list", "--customer", &cid])
        .await
        .ok();
    assert!(run.stdout.contains(&token_id), "{}", run.stdout);
    assert!(!run.stdout.contains(&secret), "{}", run.stdout);
    // A customer lists its own without naming itself.
    let own = server
        .as_token(&secret, &["token", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(own["api_tokens"][0]["id"], token_id.as_str());

    let run = server.admin(&["token", "revoke", &token_id]).await.ok();
    assert!(run.stdout.contains("Revoked"), "{}", run.stdout);
    let refused = server.as_token(&secret, &["whoami"]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);

    // A dry run changes nothing; the delete itself removes the customer at once (no services).
    let run = server
        .admin(&["customer", "delete", &cid, "--dry-run"])
        .await
        .ok();
    assert!(run.stdout.contains("nothing was changed"), "{}", run.stdout);
    server.admin(&["customer", "get", &cid]).await.ok();
    let deleted = server
        .admin(&["customer", "delete", &cid, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(deleted["deleted"], true);
    let gone = server.admin(&["customer", "get", &cid]).await;
    assert_eq!(gone.code, Some(1));
    assert!(gone.stderr.contains("NOT_FOUND"), "{}", gone.stderr);
    // The primary account goes only with the reseller.
    let primary = server
        .admin(&[
            "customer",
            "delete",
            str_of(&reseller, "primary_customer_id"),
        ])
        .await;
    assert_eq!(primary.code, Some(1));
    assert!(
        primary.stderr.contains("FAILED_PRECONDITION"),
        "{}",
        primary.stderr
    );
    let run = server.admin(&["reseller", "delete", &rid]).await.ok();
    assert!(
        run.stdout.contains(&format!("Deleted {rid}")),
        "{}",
        run.stdout
    );
    Ok(())
}
