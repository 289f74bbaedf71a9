//! The preboot boot server: DHCP/proxyDHCP, the PXE boot server (4011),
//! TFTP and the transaction server (4012) in one process. The logic lives in `preboot::driver::boot_server`;
//! this file declares the flags (clap), sets up logs and signals, and prints.
//!
//! ```sh
//! cargo run --release --example preboot-server            # demo on loopback, no root
//! cargo run --release --example preboot-server -- --help
//! ```

#[path = "../common/mod.rs"]
mod common;
mod demo;
mod inventory;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;

use preboot::driver::boot_server::config::{self, BootServerConfig};
use preboot::driver::boot_server::{BootServer, BootServerError, Reloader};
use preboot::driver::privileges::{self, Switched};
use preboot::transaction::Hex;

use demo::{DEFAULT_CONFIG, DemoTree};

/// PXE boot server: DHCP/proxyDHCP on 67, boot server on 4011, TFTP on 69,
/// transaction server on 4012.
///
/// With no --config it runs a demo that needs no root: proxy mode on
/// 127.0.0.1 with DHCP on udp 6767, the boot server on udp 14011, TFTP on
/// udp 6969, the transaction server on udp 14012 (with a demo policy) and
/// answers sent to port 6868, serving a small boot tree (a boot file per
/// architecture and a menu file) created in a new temporary directory and
/// removed at exit. It prints what it serves, a command to fetch a file and
/// how a preboot client reaches the transaction server.
#[derive(Parser, Debug)]
#[command(name = "preboot-server", version, after_help = AFTER_HELP)]
struct Args {
    /// Serve what FILE describes (TOML; every key is documented in
    /// examples/preboot.toml). Standard ports need CAP_NET_BIND_SERVICE, an
    /// interface binding CAP_NET_RAW (or root).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration (syntax, values, boot files in the TFTP
    /// root, lease directory) and exit: 0 if valid, 2 if not. Binds
    /// nothing.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    log: common::LogArgs,
    /// Create the demo tree under DIR instead of the system temporary
    /// directory (demo only).
    #[arg(long, value_name = "DIR")]
    demo_dir: Option<PathBuf>,
    /// Print the embedded demo configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Print the task history the journal JOURNAL holds (one line per
    /// record: time, workstation, task, event, server) and exit; reads
    /// the file only (a running server may keep writing it).
    #[arg(long, value_name = "JOURNAL")]
    tasks: Option<PathBuf>,
    /// Print the workstation inventory kept in DIR (the server's
    /// `server.state_dir`, or its `inventory/` directory, or one record
    /// file) and exit: 0 if every record read, 1 if not.
    #[arg(long, value_name = "DIR")]
    inventory: Option<PathBuf>,
}

const AFTER_HELP: &str = "\
Signals:
  SIGINT (Ctrl-C) and SIGTERM stop it cleanly (exit 0); a second signal
  during shutdown exits at once (status 1).
  SIGHUP reloads the policy store and the workstation keys from the
  configuration (and the store file it names), and [mtftp], without
  dropping transfers, leases or sessions (an MTFTP stream running ends
  on its channel); a file that does not parse is refused with its error
  and the running policy and MTFTP table stay. Other changes take a
  restart (the log names them).

Exit status:
  0 stopped cleanly or valid config, 1 runtime error (bind, I/O),
  2 bad configuration or usage.";

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version 0 (clap's convention, and
    // the README's).
    let args = Args::parse();
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    if let Some(journal) = &args.tasks {
        let mut out = std::io::stdout().lock();
        return match preboot::driver::task_history::write_history(journal, &mut out) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("preboot-server: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(dir) = &args.inventory {
        return inventory::dump(dir);
    }
    args.log.init();

    // The demo tree lives as long as `_demo`; dropping it removes it.
    let (_demo, path) = match &args.config {
        Some(p) => (None, p.clone()),
        None => {
            let parent = args.demo_dir.clone().unwrap_or_else(std::env::temp_dir);
            // The demo binds unprivileged ports only: give up root before
            // creating the tree, so the same account serves and removes it.
            match privileges::switch_user(privileges::DEFAULT_USER) {
                Ok(Switched::To { user, uid, gid }) => {
                    tracing::info!(user, uid, gid, "switched from root to an unprivileged user");
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("preboot-server: {e}");
                    return ExitCode::from(1);
                }
            }
            match DemoTree::create(&parent) {
                Ok(t) => {
                    let p = t.config_path().to_path_buf();
                    (Some(t), p)
                }
                Err(e) => {
                    eprintln!(
                        "preboot-server: cannot create the demo tree in {}: {e}",
                        parent.display()
                    );
                    return ExitCode::from(1);
                }
            }
        }
    };
    // `BootServer::bind` checks the boot files before it binds anything;
    // only `--check`, which binds nothing, checks them here.
    let config: BootServerConfig = match config::load(&path).and_then(|c| {
        if args.check {
            c.check_files()?;
        }
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("preboot-server: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        for w in &config.warnings {
            eprintln!("preboot-server: warning: {w}");
        }
        println!("{}: configuration is valid", path.display());
        return ExitCode::SUCCESS;
    }

    // Signals first: a SIGTERM during start-up still stops cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the flag is set exits at once.
        let armed = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = armed {
            eprintln!("preboot-server: cannot install a signal handler: {e}");
            return ExitCode::from(1);
        }
    }

    // SIGHUP from now on reloads (not the default: exit); the thread that
    // reloads starts once the server is bound.
    let hup = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("preboot-server: cannot install a signal handler: {e}");
            return ExitCode::from(1);
        }
    };

    let server = match BootServer::bind(config) {
        Ok(s) => s,
        Err(e @ BootServerError::Config(_)) => {
            eprintln!("preboot-server: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("preboot-server: {e}");
            return ExitCode::from(1);
        }
    };
    // Root is needed to bind ports 67, 69 and 4011, not to serve them.
    match server.drop_privileges() {
        Ok(Switched::To { user, uid, gid }) => {
            tracing::info!(user, uid, gid, "switched from root to an unprivileged user");
        }
        Ok(Switched::KeptRoot) => {
            tracing::warn!("running as root (server.user = \"root\")");
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("preboot-server: {e}");
            return ExitCode::from(1);
        }
    }
    println!("preboot-server {} serving", env!("CARGO_PKG_VERSION"));
    for line in server.describe() {
        println!("  {line}");
    }
    if let Some((cmd, sum)) = fetch_command(&server) {
        println!("  try:         {cmd}");
        if let Some(sum) = sum {
            println!("  expect:      {sum}");
        }
    }
    if let Some((addr, key)) = server
        .transaction_addr()
        .zip(server.transaction_public_key())
    {
        let host = match addr.ip() {
            ip if ip.is_unspecified() => server.config().dhcp.server_id.into(),
            ip => ip,
        };
        println!(
            "  client:      a preboot client (protocol v2) sends to udp {host}:{} and pins server key {}",
            addr.port(),
            Hex(&key)
        );
    }
    if _demo.is_some() && server.transaction_addr().is_some() {
        println!(
            "  demo policy: workstation 52:54:00:00:00:01 (demo-pc-01) has a pending restore task;"
        );
        println!("               52:54:00:00:00:02 and :03 join the multicast session demo-room;");
        println!("               any other workstation gets the server policy (menu on Alt+M);");
        println!(
            "               auto-enrol is on: every new workstation key is bound on first use"
        );
        println!(
            "  boot one:    cargo run --release --example preboot-client -- --mac 52:54:00:00:00:01"
        );
        println!(
            "  boot many:   cargo run --release --example preboot-client -- --workstations 50"
        );
    }
    println!("  stop:        Ctrl-C or kill -TERM {}", std::process::id());
    if server.reloader().is_some() {
        println!(
            "  reload:      kill -HUP {} (the policy store, workstation keys and [mtftp])",
            std::process::id()
        );
    }
    if let Err(e) = reload_on_sighup(hup, server.reloader()) {
        eprintln!("preboot-server: cannot start the SIGHUP thread: {e}");
        return ExitCode::from(1);
    }
    match server.run(&stop) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("preboot-server: {e}");
            ExitCode::from(1)
        }
    }
}

/// Reload on every SIGHUP, on a thread of its own (it ends with the
/// process).
fn reload_on_sighup(
    mut hup: signal_hook::iterator::Signals,
    reloader: Option<Reloader>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in hup.forever() {
                let Some(r) = &reloader else {
                    tracing::warn!(
                        "SIGHUP: no transaction server runs, so there is no policy store to reload; other changes take a restart"
                    );
                    continue;
                };
                tracing::info!(
                    "SIGHUP: reloading the policy store, the workstation keys and [mtftp]"
                );
                // `reload` logs a refusal with its file:line:column.
                if let Ok(done) = r.reload() {
                    if !done.applied {
                        tracing::warn!(
                            "reload: the event loop has not taken the new store yet; it does on its next turn"
                        );
                    }
                }
            }
        })
        .map(drop)
}

/// A shell command fetching the first boot file the server serves over
/// TFTP with `curl`, piped into `sha256sum`, and the digest it should print
/// (the file as the TFTP root holds it now).
fn fetch_command(server: &BootServer) -> Option<(String, Option<String>)> {
    use sha2::{Digest, Sha256};
    let t = server.tftp_addr()?;
    let config = server.config();
    let file = config.boot_files.first()?;
    let host = match t.ip() {
        ip if ip.is_unspecified() => config.dhcp.server_id.into(),
        ip => ip,
    };
    let name = file.name.trim_start_matches('/');
    let cmd = format!("curl -s tftp://{host}:{}/{name} | sha256sum", t.port());
    let sum = config
        .tftp
        .as_ref()
        .and_then(|tftp| std::fs::read(tftp.root.join(name)).ok())
        .map(|bytes| {
            Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        });
    Some((cmd, sum))
}
