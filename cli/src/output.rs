//! Printing: a human table, or one JSON document, per command.

use std::io::Write as _;

use castplane_proto::v1 as pb;
use comfy_table::{Cell, ContentArrangement, Table, presets};
use serde_json::Value;

use crate::cli::OutputFormat;
use crate::error::{CliError, Result};

#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub format: OutputFormat,
}

impl Output {
    /// Prints the JSON document or the human text; each is built only if needed.
    pub fn emit(&self, json: impl FnOnce() -> Value, human: impl FnOnce() -> String) -> Result<()> {
        match self.format {
            OutputFormat::Json => {
                let text = serde_json::to_string_pretty(&json())
                    .map_err(|err| CliError::failed(format!("encoding JSON: {err}")))?;
                write_stdout(&text)
            }
            // The same document as `-o json`, in YAML.
            OutputFormat::Yaml => {
                let text = yaml_serde::to_string(&json())
                    .map_err(|err| CliError::failed(format!("encoding YAML: {err}")))?;
                write_stdout(&text)
            }
            OutputFormat::Table => write_stdout(&human()),
        }
    }

    /// Whether the output is a document for programs (JSON or YAML) rather than text.
    pub fn is_json(&self) -> bool {
        matches!(self.format, OutputFormat::Json | OutputFormat::Yaml)
    }
}

/// Writes a line to stdout. A closed pipe (`castctl … | head`) is not an error worth a panic.
pub fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.trim_end_matches('\n')).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(CliError::failed(format!("writing output: {err}"))),
    }
}

/// A borderless table with a header row, in the style of other fleet CLIs. Rows are never
/// wrapped: a row per line keeps the output greppable, and tables also go to places whose
/// width is unknown or zero (pipes, a fresh pty).
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.into_iter().map(Cell::new));
    table
}

/// Two columns, field and value, for one resource.
pub fn fields(rows: Vec<(&str, String)>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    for (name, value) in rows {
        table.add_row(vec![format!("{name}:"), value]);
    }
    table
}

/// Renders a table without the padding comfy-table puts at the start and end of lines.
pub fn render(table: &Table) -> String {
    table
        .lines()
        .map(|line| {
            line.trim_end()
                .strip_prefix(' ')
                .unwrap_or(&line)
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A proto enum for people: a short lowercase name.
pub trait ProtoEnum: TryFrom<i32> {
    /// What every value's name starts with, e.g. `SERVICE_TYPE_`.
    const PREFIX: &'static str;
    fn full_name(&self) -> &'static str;
}

macro_rules! proto_enums {
    ($($ty:ty => $prefix:literal),* $(,)?) => {
        $(impl ProtoEnum for $ty {
            const PREFIX: &'static str = $prefix;
            fn full_name(&self) -> &'static str {
                self.as_str_name()
            }
        })*
    };
}

proto_enums! {
    pb::ServiceType => "SERVICE_TYPE_",
    pb::ServiceKind => "SERVICE_KIND_",
    pb::CustomerKind => "CUSTOMER_KIND_",
    pb::PrincipalKind => "PRINCIPAL_KIND_",
    pb::Resource => "RESOURCE_",
    pb::DesiredState => "DESIRED_STATE_",
    pb::ObservedState => "OBSERVED_STATE_",
    pb::ServiceScope => "SERVICE_SCOPE_",
    pb::ActionKind => "ACTION_KIND_",
    pb::ActionState => "ACTION_STATE_",
    pb::NodeStatus => "NODE_STATUS_",
}

/// For people: `SERVICE_TYPE_ICECAST` → `icecast`, `NODE_STATUS_PENDING_JOIN` → `pending-join`.
pub fn enum_text<E: ProtoEnum>(value: i32) -> String {
    match E::try_from(value) {
        Ok(e) => {
            let name = e.full_name();
            name.strip_prefix(E::PREFIX)
                .unwrap_or(name)
                .to_ascii_lowercase()
                .replace('_', "-")
        }
        Err(_) => format!("unknown({value})"),
    }
}

pub fn types_text(types: &[i32]) -> String {
    if types.is_empty() {
        return "none".to_owned();
    }
    types
        .iter()
        .map(|t| enum_text::<pb::ServiceType>(*t))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn time_text(time: Option<&prost_types::Timestamp>) -> String {
    time.map(ToString::to_string)
        .unwrap_or_else(|| "-".to_owned())
}

pub fn limit_text(limit: Option<&pb::Limit>) -> String {
    match limit.and_then(|l| l.max) {
        Some(max) => max.to_string(),
        None => "unlimited".to_owned(),
    }
}

pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names() {
        assert_eq!(enum_text::<pb::ServiceType>(1), "icecast");
        assert_eq!(enum_text::<pb::NodeStatus>(1), "pending-join");
        assert_eq!(enum_text::<pb::ServiceType>(99), "unknown(99)");
    }

    #[test]
    fn tables_have_no_edge_padding() {
        let mut t = table(["NAME", "ID"]);
        t.add_row(vec!["radio", "svc_1"]);
        let text = render(&t);
        assert!(text.starts_with("NAME"), "{text:?}");
        assert!(text.lines().all(|l| !l.ends_with(' ')));
    }
}
