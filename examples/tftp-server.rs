//! A minimal TFTP server: serves one directory, read-only, from one event
//! loop per core (RFC 1350 with the blksize, timeout, tsize and windowsize
//! options).
//!
//! ```text
//! cargo run --release --example tftp-server -- --root /srv/tftp [--bind 0.0.0.0] [--port 69]
//!     [--max-transfers 1024] [--max-per-client 64] [--loops N] [--single-port] [--no-batch]
//! ```
//!
//! Logs go to stderr (text, coloured only on a terminal, or one JSON object
//! per line with `--log-format json`); `RUST_LOG=preboot=debug` shows every
//! request. Stop it with Ctrl-C or SIGTERM.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use clap::Parser;

use preboot::driver::tftp::{TftpServer, TftpServerConfig};

/// Serve one directory, read-only, over TFTP (RFC 1350; options blksize,
/// timeout, tsize, windowsize).
#[derive(Parser, Debug)]
#[command(name = "tftp-server", version, after_help = AFTER_HELP)]
struct Args {
    /// Directory to serve; nothing outside it is read.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// Port to listen on (needs privileges below 1024; 0 picks a free one).
    #[arg(long, default_value_t = 69)]
    port: u16,
    /// Concurrent transfers at most [default: the driver's].
    #[arg(long, value_name = "N")]
    max_transfers: Option<usize>,
    /// Concurrent transfers per client address at most [default: the
    /// driver's].
    #[arg(long, value_name = "N")]
    max_per_client: Option<usize>,
    /// Event loops (threads), 1-1024 [default: one per CPU this process
    /// may run on].
    #[arg(long, value_name = "N")]
    loops: Option<usize>,
    /// Answer every transfer from the listening port (NAT).
    #[arg(long)]
    single_port: bool,
    /// Send DATA block by block instead of one send per window.
    #[arg(long)]
    no_batch: bool,
    #[command(flatten)]
    log: common::LogArgs,
}

const AFTER_HELP: &str = "\
Logs go to stderr (RUST_LOG=preboot=debug for every request); Ctrl-C or
SIGTERM stops it. Exit status: 1 if it cannot bind or fails, 2 on a usage
error.";

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version 0.
    let args = Args::parse();
    args.log.init();
    let mut config = TftpServerConfig::new(SocketAddr::new(args.bind, args.port), args.root);
    config.single_port = args.single_port;
    config.batch_sends = !args.no_batch;
    if let Some(n) = args.max_transfers {
        config.max_transfers = n;
    }
    if let Some(n) = args.max_per_client {
        config.max_per_client = n;
    }
    if let Some(n) = args.loops {
        config.loops = n;
    }
    let mut server = match TftpServer::bind(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tftp-server: cannot bind {}:{}: {e}", args.bind, args.port);
            return ExitCode::FAILURE;
        }
    };
    // A log line like every other, so that a JSON log stays JSON.
    tracing::info!(loops = server.loops(), addr = %server.local_addr(), "tftp-server: serving");
    // Runs until the process is stopped.
    let stop = AtomicBool::new(false);
    match server.run(&stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tftp-server: {e}");
            ExitCode::FAILURE
        }
    }
}
