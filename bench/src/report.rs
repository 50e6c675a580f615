//! The printed table: each figure beside its floor from the same run, the target of issue 6
//! and the figure measured before the dispatcher redesign, where there is one.

use comfy_table::{Cell, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for key in path {
        cur = match key.parse::<usize>() {
            Ok(i) => cur.get(i)?,
            Err(_) => cur.get(*key)?,
        };
    }
    cur.as_f64()
}

fn rate(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{:.0}/s", v),
        Some(v) => format!("{v:.1}/s"),
        None => "–".to_owned(),
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.1} ms"),
        None => "–".to_owned(),
    }
}

fn secs(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2} s"))
        .unwrap_or_else(|| "–".to_owned())
}

fn plain(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".to_owned())
}

struct Rows(Table);

impl Rows {
    fn section(&mut self, title: &str) {
        self.0.add_row(vec![
            Cell::new(title).add_attribute(comfy_table::Attribute::Bold),
        ]);
    }

    fn row(&mut self, figure: String, measured: String, floor: &str, target: &str, before: &str) {
        self.0.add_row(vec![
            Cell::new(format!("  {figure}")),
            Cell::new(measured),
            Cell::new(floor),
            Cell::new(target),
            Cell::new(before),
        ]);
    }
}

pub fn table(results: &Value) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "figure",
        "measured",
        "floor (same run)",
        "target",
        "before (issue 6)",
    ]);
    let mut rows = Rows(table);
    for (key, name) in [
        ("pipeline_sqlite", "SQLite"),
        ("pipeline_postgres", "PostgreSQL"),
    ] {
        let Some(p) = results.get(key).and_then(|p| p.get("median")) else {
            continue;
        };
        let sweep = p
            .get("sweep")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !sweep.is_empty() {
            rows.section(&format!(
                "Pipeline, {name}: API → SUCCEEDED, simulated agents over mTLS"
            ));
            let bidi = rate(num(p, &["floor_bidi_round_trips_per_second"]));
            let db = rate(num(p, &["floor_db_actions_per_second"]));
            let floor = format!("bidi {bidi}; db {db}");
            for point in &sweep {
                let n = num(point, &["in_flight"]).unwrap_or(0.0) as usize;
                let before = match (name, n) {
                    ("SQLite", 8) => "71/s, p50 110 / p99 190 ms",
                    ("SQLite", 32) => "49/s, p50 600 / p99 1,500 ms",
                    ("SQLite", 64) => "18/s, p50 3,700 ms",
                    _ => "",
                };
                rows.row(
                    format!("{n} in flight"),
                    format!(
                        "{}, p50 {} / p99 {}",
                        rate(num(point, &["actions_per_second"])),
                        ms(num(point, &["p50_ms"])),
                        ms(num(point, &["p99_ms"]))
                    ),
                    "",
                    "",
                    before,
                );
            }
            rows.row(
                format!(
                    "max (100 %), {} in flight",
                    plain(num(p, &["max", "in_flight"]), 0)
                ),
                format!(
                    "{}, p50 {} / p99 {}",
                    rate(num(p, &["max", "actions_per_second"])),
                    ms(num(p, &["max", "p50_ms"])),
                    ms(num(p, &["max", "p99_ms"]))
                ),
                &floor,
                "≥ 5,000/s",
                "71/s (SQLite, best)",
            );
            rows.row(
                "50 % of max (open loop)".to_owned(),
                format!(
                    "{}, p50 {} / p99 {}",
                    rate(num(p, &["half", "actions_per_second"])),
                    ms(num(p, &["half", "p50_ms"])),
                    ms(num(p, &["half", "p99_ms"]))
                ),
                &format!(
                    "bidi p50 {} / p99 {}",
                    ms(num(p, &["floor_bidi_latency", "p50_ms"])),
                    ms(num(p, &["floor_bidi_latency", "p99_ms"]))
                ),
                "p99 ≤ 20 ms",
                "",
            );
            rows.row(
                "SQL statements / CPU per action (at max)".to_owned(),
                format!(
                    "{} / {} ms",
                    plain(num(p, &["max", "queries_per_action"]), 1),
                    plain(num(p, &["max", "cpu_ms_per_action"]), 2)
                ),
                "",
                "",
                "79 statements at 8, 268 at 32",
            );
        }
        let read = p
            .get("read")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !read.is_empty() {
            rows.section(&format!("Read API, {name}"));
            for r in &read {
                let call = r.get("call").and_then(Value::as_str).unwrap_or("");
                let n = num(r, &["in_flight"]).unwrap_or(0.0) as usize;
                let measured = num(r, &["requests_per_second"]);
                let floor = num(r, &["floor_requests_per_second"]);
                let share = match (measured, floor) {
                    (Some(m), Some(f)) if f > 0.0 => format!(" ({:.0} % of floor)", m / f * 100.0),
                    _ => String::new(),
                };
                let (target, before) = match (call, n, name) {
                    ("GetMediaService", 16, _) => (
                        "≥ 25 % of floor",
                        if name == "SQLite" {
                            "2,700/s vs 50,500"
                        } else {
                            ""
                        },
                    ),
                    ("ListMediaServices(100)", 16, "SQLite") => ("", "510/s vs 8,750"),
                    _ => ("", ""),
                };
                rows.row(
                    format!("{call} at {n} in flight"),
                    format!("{}{share}, p99 {}", rate(measured), ms(num(r, &["p99_ms"]))),
                    &format!(
                        "{}, p99 {}",
                        rate(floor),
                        ms(num(r, &["floor_latency", "p99_ms"]))
                    ),
                    target,
                    before,
                );
            }
        }
    }
    if let Some(real) = results.get("real_agent_sqlite").and_then(Value::as_array) {
        rows.section(
            "Pipeline, SQLite, one real castplane-agent, 100 icecast services (no-op stops)",
        );
        for point in real {
            let n = num(point, &["in_flight"]).unwrap_or(0.0) as usize;
            let before = match n {
                8 => "71/s, p50 110 / p99 190 ms",
                32 => "49/s, p50 600 / p99 1,500 ms",
                64 => "18/s, p50 3,700 ms",
                _ => "",
            };
            rows.row(
                format!("{n} in flight"),
                format!(
                    "{}, p50 {} / p99 {}",
                    rate(num(point, &["actions_per_second"])),
                    ms(num(point, &["p50_ms"])),
                    ms(num(point, &["p99_ms"]))
                ),
                "",
                "",
                before,
            );
        }
    }
    for (key, name) in [
        ("fan_in_sqlite", "SQLite"),
        ("fan_in_postgres", "PostgreSQL"),
    ] {
        let Some(levels) = results.get(key).and_then(Value::as_array) else {
            continue;
        };
        rows.section(&format!(
            "Fan-in, {name}: connected simulated agents on one control plane"
        ));
        for l in levels {
            let n = plain(num(l, &["agents"]), 0);
            rows.row(
                format!("{n} agents: RSS per agent (total)"),
                format!(
                    "{} KiB ({} MiB)",
                    plain(num(l, &["rss_kib_per_agent"]), 1),
                    plain(num(l, &["rss_mib"]), 0)
                ),
                "",
                "≤ 50 KiB",
                "",
            );
            let pg = num(l, &["pg_transactions_per_second_per_agent"])
                .map(|x| format!("; PG {x:.4} transactions/s"))
                .unwrap_or_default();
            rows.row(
                format!("{n} agents idle: CPU, SQL statements/s per agent"),
                format!(
                    "{} % of a core; {}{pg}",
                    plain(num(l, &["idle_cpu_percent"]), 1),
                    plain(num(l, &["queries_per_second_per_agent"]), 4)
                ),
                "",
                "≤ 0.05 queries/s",
                "≈ 6 queries/s",
            );
            rows.row(
                format!("{n} agents: one action per node, all dispatched"),
                secs(num(l, &["dispatch_all_seconds"])),
                "",
                "",
                "",
            );
            rows.row(
                format!("{n} agents: restart → all reconnected / all pending re-sent"),
                format!(
                    "{} / {} (stop took {})",
                    secs(num(l, &["restart_reconnect_seconds"])),
                    secs(num(l, &["restart_dispatch_seconds"])),
                    secs(num(l, &["stop_seconds"]))
                ),
                "",
                "≤ 10 s (1,000 agents)",
                "",
            );
        }
    }
    if let Some(f) = results
        .get("failover_postgres")
        .and_then(|f| f.get("median"))
    {
        rows.section("Failover, PostgreSQL: kill -9 of one of two replicas during a burst");
        rows.row(
            format!(
                "{} agents ({} on the killed replica), {} actions",
                plain(num(f, &["agents"]), 0),
                plain(num(f, &["agents_on_killed_replica"]), 0),
                plain(num(f, &["actions"]), 0)
            ),
            format!(
                "reconnected {}; all terminal {}",
                secs(num(f, &["reconnect_seconds"])),
                secs(num(f, &["all_terminal_seconds"]))
            ),
            "",
            "reconnected ≤ 5 s",
            "",
        );
        rows.row(
            "lost / doubled actions (redelivered, answered from the log)".to_owned(),
            format!(
                "{} / {} ({})",
                plain(num(f, &["lost"]), 0),
                plain(num(f, &["doubled"]), 0),
                plain(num(f, &["redeliveries"]), 0)
            ),
            "",
            "0 / 0",
            "",
        );
    }
    if let Some(m) = results.get("machine") {
        rows.section(&format!(
            "{} cores; load average before {} after {}; {} run(s), {} s per point",
            plain(num(m, &["cores"]), 0),
            m.get("load_average_before")
                .and_then(Value::as_str)
                .unwrap_or(""),
            m.get("load_average_after")
                .and_then(Value::as_str)
                .unwrap_or(""),
            plain(num(m, &["runs"]), 0),
            plain(num(m, &["seconds_per_point"]), 0),
        ));
    }
    rows.0.to_string()
}
