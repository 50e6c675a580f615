//! `castplane-bench`: castplane's benchmark. Run from the workspace root with
//!
//! ```sh
//! cargo run --release -p castplane-bench -- [--quick] [--json out.json] [--runs N]
//! ```
//!
//! It builds (or is given) the release `castplane-control` and `castplane-agent` binaries,
//! spawns the control plane as its own process as production does, and measures the action
//! pipeline, agent fan-in, replica failover and the read API, each figure beside its floor
//! from the same run and the target of issue 6; figures are medians of `--runs` runs.
//! See README.md, "Tests and benchmarks".

mod control;
mod failover;
mod fanin;
mod floors;
mod pipeline;
mod read_api;
mod real_agent;
mod report;
mod sim_agent;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Serialize;
use serde_json::Value;

/// castplane's benchmark: action pipeline, agent fan-in, replica failover and the read API,
/// against floors measured in the same run. Needs root or a `postgres` user for PostgreSQL,
/// icecast2 for the real-agent run, and a machine left otherwise idle for figures that mean
/// something.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short phases, fan-in capped at 1,000 agents, one run: for trying the bench out.
    #[arg(long)]
    quick: bool,
    /// Write every figure (medians and each run's own) as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Runs of each pipeline and read-API measurement; figures are their medians
    /// [default: 3, or 1 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Phases to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pipeline,read,real-agent,fan-in,failover"
    )]
    only: Vec<Phase>,
    /// Databases to run the pipeline, read API and fan-in on.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<Backend>,
    /// Agents connected at each fan-in level [default: 1000,5000,10000; 1000 with --quick].
    #[arg(long, value_delimiter = ',')]
    fan_in: Option<Vec<usize>>,
    /// Seconds each load point is measured for [default: 5, 2 with --quick].
    #[arg(long)]
    seconds: Option<u64>,
    /// The castplane-control binary to measure, instead of building it
    /// (`cargo build --release -p castplane-control -p castplane-agent` next to this binary).
    #[arg(long)]
    control_bin: Option<PathBuf>,
    /// The castplane-agent binary for the real-agent run [default: next to castplane-control].
    #[arg(long)]
    agent_bin: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Phase {
    Pipeline,
    Read,
    RealAgent,
    FanIn,
    Failover,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The bench holds a socket per simulated agent, plus the API clients.
fn raise_open_file_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

/// Builds the release binaries into the target directory this bench runs from, so the bench
/// never measures a stale control plane.
fn build_binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().context("the bench binary's directory")?;
    let target_dir = profile_dir.parent().context("the target directory")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("building the release castplane-control and castplane-agent …");
    let status = std::process::Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            "castplane-control",
            "-p",
            "castplane-agent",
            "--bins",
            "--target-dir",
        ])
        .arg(target_dir)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the release binaries failed");
    }
    Ok((
        profile_dir.join("castplane-control"),
        profile_dir.join("castplane-agent"),
    ))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The median, field by field, of the same figures from several runs.
fn median_of(runs: &[Value]) -> Value {
    match runs.first() {
        Some(Value::Number(_)) => {
            let values: Vec<f64> = runs.iter().filter_map(Value::as_f64).collect();
            serde_json::Number::from_f64(stats::median(values))
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        Some(Value::Object(first)) => Value::Object(
            first
                .keys()
                .map(|k| {
                    let column: Vec<Value> = runs
                        .iter()
                        .map(|r| r.get(k).cloned().unwrap_or(Value::Null))
                        .collect();
                    (k.clone(), median_of(&column))
                })
                .collect(),
        ),
        Some(Value::Array(first)) => Value::Array(
            (0..first.len())
                .map(|i| {
                    let column: Vec<Value> = runs
                        .iter()
                        .map(|r| r.get(i).cloned().unwrap_or(Value::Null))
                        .collect();
                    median_of(&column)
                })
                .collect(),
        ),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

#[derive(Serialize)]
struct PipelineRun {
    sweep: Vec<pipeline::LoadResult>,
    max: pipeline::LoadResult,
    half: pipeline::LoadResult,
    floor_bidi_round_trips_per_second: f64,
    floor_bidi_latency: stats::LatencySummary,
    floor_db_actions_per_second: f64,
    read: Vec<read_api::ReadResult>,
    simulated_agents: usize,
    /// Deliveries of actions already answered (a session that closed and was re-sent to).
    redeliveries: u64,
}

struct Settings {
    control: PathBuf,
    agent: PathBuf,
    quick: bool,
    runs: usize,
    seconds: Duration,
    warmup: Duration,
    sweep: Vec<usize>,
    phases: Vec<Phase>,
}

async fn database_for(
    backend: Backend,
    pg_server: &Option<String>,
) -> anyhow::Result<Option<String>> {
    match backend {
        Backend::Sqlite => Ok(None),
        Backend::Postgres => {
            let server = pg_server.as_ref().context("no PostgreSQL cluster")?;
            Ok(Some(
                castplane_integration_tests::postgres::fresh_database_on(server).await?,
            ))
        }
    }
}

async fn pipeline_run(
    settings: &Settings,
    backend: Backend,
    pg_server: &Option<String>,
) -> anyhow::Result<PipelineRun> {
    let max_in_flight = settings.sweep.iter().copied().max().unwrap_or(64);
    let fixture = pipeline::Fixture::start(
        &settings.control,
        database_for(backend, pg_server).await?,
        max_in_flight.max(128),
    )
    .await?;
    let mut sweep = Vec::new();
    if settings.phases.contains(&Phase::Pipeline) {
        for &in_flight in &settings.sweep {
            let point = pipeline::closed_loop(
                &fixture.cp,
                &fixture.clients,
                &fixture.services,
                in_flight,
                settings.warmup,
                settings.seconds,
            )
            .await?;
            eprintln!("  {} {in_flight} in flight: {point:?}", backend.name());
            sweep.push(point);
        }
    }
    let max = sweep
        .iter()
        .max_by(|a, b| a.actions_per_second.total_cmp(&b.actions_per_second))
        .cloned()
        .unwrap_or_default();
    let mut half = pipeline::LoadResult::default();
    let mut floor_bidi = (f64::NAN, stats::Latencies::default());
    let mut floor_db = f64::NAN;
    if settings.phases.contains(&Phase::Pipeline) {
        half =
            pipeline::open_loop(&fixture, max.actions_per_second / 2.0, settings.seconds).await?;
        eprintln!("  {} at half the max: {half:?}", backend.name());
        floor_bidi = floors::bidi(max.in_flight.max(1), settings.seconds).await?;
        let (url, sqlite, _dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("castplane-bench-db-")
                    .tempdir()?;
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("floor.db").display()
                );
                (url, true, Some(dir))
            }
            Backend::Postgres => (
                database_for(backend, pg_server).await?.context("url")?,
                false,
                None,
            ),
        };
        floor_db =
            floors::db_commits(&url, sqlite, max.in_flight.clamp(1, 64), settings.seconds).await?;
    }
    let mut read = Vec::new();
    if settings.phases.contains(&Phase::Read) {
        read = read_api::run(&fixture, &[16, 64], settings.seconds).await?;
        eprintln!("  {} read API: {read:?}", backend.name());
    }
    Ok(PipelineRun {
        sweep,
        max,
        half,
        floor_bidi_round_trips_per_second: floor_bidi.0,
        floor_bidi_latency: floor_bidi.1.summary(),
        floor_db_actions_per_second: floor_db,
        read,
        simulated_agents: fixture.agents.len(),
        redeliveries: fixture
            .fleet
            .replays
            .load(std::sync::atomic::Ordering::Relaxed),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nofile = raise_open_file_limit()?;
    let (control, agent) = match &args.control_bin {
        Some(path) => (
            path.clone(),
            args.agent_bin
                .clone()
                .unwrap_or_else(|| path.with_file_name("castplane-agent")),
        ),
        None => build_binaries()?,
    };
    let settings = Settings {
        control,
        agent,
        quick: args.quick,
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        seconds: Duration::from_secs(args.seconds.unwrap_or(if args.quick { 2 } else { 5 })),
        warmup: Duration::from_secs(1),
        sweep: if args.quick {
            vec![8, 64, 256]
        } else {
            vec![8, 32, 64, 128, 256]
        },
        phases: args.only.clone(),
    };
    let fan_in_levels = args.fan_in.clone().unwrap_or_else(|| {
        if settings.quick {
            vec![1000]
        } else {
            vec![1000, 5000, 10000]
        }
    });
    let fan_in_levels: Vec<usize> = if settings.quick {
        fan_in_levels.into_iter().map(|n| n.min(1000)).collect()
    } else {
        fan_in_levels
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let load_before = load_average();
    let started = std::time::Instant::now();
    let mut results = serde_json::Map::new();
    runtime.block_on(async {
        let pg_server = if args.backends.contains(&Backend::Postgres) {
            Some(castplane_integration_tests::postgres::start_cluster(
                std::process::id(),
            )?)
        } else {
            None
        };
        for &backend in &args.backends {
            if settings
                .phases
                .iter()
                .any(|p| matches!(p, Phase::Pipeline | Phase::Read))
            {
                let mut runs = Vec::new();
                for run in 0..settings.runs {
                    eprintln!(
                        "pipeline and read API on {}, run {}/{}",
                        backend.name(),
                        run + 1,
                        settings.runs
                    );
                    runs.push(serde_json::to_value(
                        pipeline_run(&settings, backend, &pg_server).await?,
                    )?);
                }
                results.insert(
                    format!("pipeline_{backend:?}").to_lowercase(),
                    serde_json::json!({ "median": median_of(&runs), "runs": runs }),
                );
            }
            if settings.phases.contains(&Phase::FanIn) {
                eprintln!("fan-in on {}: {fan_in_levels:?} agents", backend.name());
                let fan = fanin::run(
                    &settings.control,
                    database_for(backend, &pg_server).await?,
                    &fan_in_levels,
                    if settings.quick {
                        Duration::from_secs(5)
                    } else {
                        Duration::from_secs(10)
                    },
                )
                .await?;
                results.insert(
                    format!("fan_in_{backend:?}").to_lowercase(),
                    serde_json::to_value(fan)?,
                );
            }
        }
        if settings.phases.contains(&Phase::RealAgent) {
            eprintln!("one real agent with icecast services on SQLite");
            let real = real_agent::run(
                &settings.control,
                &settings.agent,
                None,
                100,
                &[8, 32, 64],
                settings.warmup,
                settings.seconds,
            )
            .await?;
            results.insert("real_agent_sqlite".to_owned(), serde_json::to_value(real)?);
        }
        if settings.phases.contains(&Phase::Failover) && pg_server.is_some() {
            eprintln!("failover: two replicas on PostgreSQL, kill -9 of one during a burst");
            let mut runs = Vec::new();
            for _ in 0..settings.runs {
                let url = database_for(Backend::Postgres, &pg_server)
                    .await?
                    .context("url")?;
                let result = failover::run(
                    &settings.control,
                    url,
                    if settings.quick { 50 } else { 200 },
                    64,
                    Duration::from_secs(if settings.quick { 3 } else { 6 }),
                )
                .await?;
                eprintln!("  {result:?}");
                runs.push(serde_json::to_value(result)?);
            }
            results.insert(
                "failover_postgres".to_owned(),
                serde_json::json!({ "median": median_of(&runs), "runs": runs }),
            );
        }
        anyhow::Ok(())
    })?;
    let meta = serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "seconds_taken": started.elapsed().as_secs(),
        "runs": settings.runs,
        "quick": settings.quick,
        "seconds_per_point": settings.seconds.as_secs(),
        "open_file_limit": nofile,
        "control_plane": settings.control.display().to_string(),
    });
    results.insert("machine".to_owned(), meta);
    let results = Value::Object(results);
    println!("{}", report::table(&results));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
