//! The logging set-up every example shares: `tracing` lines on stderr,
//! with ANSI colours only when stderr is a terminal (a redirected log gets
//! plain text), or one JSON object per line (`--log-format json`) for log
//! shippers. `RUST_LOG` overrides the level filter.
//!
//! Included by each example with `mod common;` (a subdirectory, so Cargo
//! does not take it for an example of its own).
#![allow(dead_code)] // each example uses part of it

use std::io::IsTerminal;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` text lines (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The value of `--log-format`: `text` or `json`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "--log-format: expected text or json, not {other:?}"
            )),
        }
    }
}

/// Install the subscriber: `filter` (e.g. `info`, `preboot=debug`) unless
/// `RUST_LOG` is set, in `format`, on stderr.
pub fn init_logs(filter: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    init_logs_with(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter)),
        format,
    );
}

/// Install the subscriber with this filter, in `format`, on stderr.
pub fn init_logs_with(filter: tracing_subscriber::EnvFilter, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
