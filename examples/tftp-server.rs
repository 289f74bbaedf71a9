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

use preboot::driver::tftp::{TftpServer, TftpServerConfig};

const USAGE: &str = "usage: tftp-server --root DIR [--bind ADDR] [--port PORT] \
[--max-transfers N] [--max-per-client N] [--loops N] [--single-port] [--no-batch] [--log-format text|json]";

const HELP: &str = "
Serve one directory, read-only, over TFTP (RFC 1350; options blksize,
timeout, tsize, windowsize).

  --root DIR            directory to serve (required); nothing outside it is read
  --bind ADDR           address to listen on (default 0.0.0.0)
  --port PORT           port to listen on (default 69; needs privileges below 1024)
  --max-transfers N     concurrent transfers at most (default: the driver's)
  --max-per-client N    concurrent transfers per client address at most
  --loops N             event loops (threads), 1-1024 (default: one per CPU
                        this process may run on)
  --single-port         answer every transfer from the listening port (NAT)
  --no-batch            send DATA block by block instead of one send per window
  --log-format FORMAT   text (default; colours only on a terminal) or json
  -h, --help            this text

Logs go to stderr (RUST_LOG=preboot=debug for every request); Ctrl-C or
SIGTERM stops it.";

struct Args {
    root: PathBuf,
    bind: IpAddr,
    port: u16,
    max_transfers: Option<usize>,
    max_per_client: Option<usize>,
    loops: Option<usize>,
    single_port: bool,
    no_batch: bool,
    log_format: common::LogFormat,
}

fn parse() -> Result<Args, String> {
    let mut root = None;
    let mut bind = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut port = 69;
    let mut max_transfers = None;
    let mut max_per_client = None;
    let mut loops = None;
    let mut single_port = false;
    let mut no_batch = false;
    let mut log_format = common::LogFormat::Text;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value("--root")?)),
            "--bind" => {
                bind = value("--bind")?
                    .parse()
                    .map_err(|e| format!("--bind: {e}"))?
            }
            "--port" => {
                port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--max-transfers" => {
                max_transfers = Some(
                    value("--max-transfers")?
                        .parse()
                        .map_err(|e| format!("--max-transfers: {e}"))?,
                )
            }
            "--max-per-client" => {
                max_per_client = Some(
                    value("--max-per-client")?
                        .parse()
                        .map_err(|e| format!("--max-per-client: {e}"))?,
                )
            }
            "--loops" => {
                loops = Some(
                    value("--loops")?
                        .parse()
                        .map_err(|e| format!("--loops: {e}"))?,
                )
            }
            "--single-port" => single_port = true,
            "--no-batch" => no_batch = true,
            "--log-format" => log_format = common::LogFormat::parse(&value("--log-format")?)?,
            "-h" | "--help" => {
                println!("{USAGE}\n{HELP}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        root: root.ok_or(format!("--root is required\n{USAGE}"))?,
        bind,
        port,
        max_transfers,
        max_per_client,
        loops,
        single_port,
        no_batch,
        log_format,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    common::init_logs("info", args.log_format);
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
