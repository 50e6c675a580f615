//! Log output: human-readable text (the default) or one JSON object per line for log
//! collectors. Either way the filter comes from `RUST_LOG`, else the daemon's default. The
//! subscriber that writes them is installed with the traces (`traces::init`).

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (the message and
    /// every structured value) and the enclosing `spans`.
    Json,
}
