//! What every example shares: the logging flags (`--log-level`,
//! `--log-format`, a `clap` argument group each program flattens into its
//! own) and the logging set-up behind them: `tracing` lines on stderr, with
//! ANSI colours only when stderr is a terminal (a redirected log gets plain
//! text), or one JSON object per line (`--log-format json`) for log
//! shippers. `RUST_LOG`, when set, overrides the level.
//!
//! Included by each example with `mod common;` (a subdirectory, so Cargo
//! does not take it for an example of its own).
#![allow(dead_code)] // each example uses part of it

use std::io::IsTerminal;

/// The logging flags, flattened into each example's arguments with
/// `#[command(flatten)]`.
#[derive(clap::Args, Clone, Debug)]
pub struct LogArgs {
    /// Log level. RUST_LOG, when set, overrides it (per-module filters
    /// like preboot=debug).
    #[arg(long, value_name = "LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// How log lines are written.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Install the subscriber these flags describe, on stderr.
    pub fn init(&self) {
        init_logs(self.log_level.as_filter(), self.log_format);
    }
}

/// The value of `--log-level`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// As a `tracing` filter directive.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// How log lines are written (`--log-format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Text lines, key=value (colours only on a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Install the subscriber: `filter` (e.g. `info`, `preboot=debug`) unless
/// `RUST_LOG` is set, in `format`, on stderr.
pub fn init_logs(filter: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
