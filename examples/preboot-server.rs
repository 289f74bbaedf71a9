//! The preboot boot server: DHCP/proxyDHCP, the PXE boot server (4011) and
//! TFTP in one process. The logic lives in `preboot::driver::boot_server`;
//! this file parses flags, sets up logs and signals, and prints.
//!
//! ```sh
//! cargo run --release --example preboot-server            # demo on loopback, no root
//! cargo run --release --example preboot-server -- --help
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use preboot::driver::boot_server::config::{self, BootServerConfig};
use preboot::driver::boot_server::demo::{DEFAULT_CONFIG, DemoTree};
use preboot::driver::boot_server::{BootServer, BootServerError};
use preboot::driver::privileges::{self, Switched};

const HELP: &str = "\
preboot-server: PXE boot server (DHCP/proxyDHCP on 67, boot server on 4011, TFTP on 69)

USAGE:
    preboot-server [OPTIONS]

With no --config it runs a demo that needs no root: proxy mode on
127.0.0.1 with DHCP on udp 6767, the boot server on udp 14011, TFTP on
udp 6969 and answers sent to port 6868, serving a small boot tree (a boot
file per architecture and a menu file) created in a new temporary
directory and removed at exit. It prints what it serves and a command to
fetch a file.

OPTIONS:
    -c, --config FILE         Serve what FILE describes (TOML; every key is
                              documented in examples/preboot.toml). Standard
                              ports need CAP_NET_BIND_SERVICE, an interface
                              binding CAP_NET_RAW (or root).
        --check               Validate the configuration (syntax, values,
                              boot files in the TFTP root, lease directory)
                              and exit: 0 if valid, 2 if not. Binds nothing.
        --log-level LEVEL     error, warn, info (default), debug or trace.
                              RUST_LOG, when set, overrides it (per-module
                              filters like preboot=debug).
        --log-format FORMAT   text (default; colours only on a terminal) or
                              json (one object per line, for log shippers).
        --demo-dir DIR        Create the demo tree under DIR instead of the
                              system temporary directory (demo only).
        --print-default-config
                              Print the embedded demo configuration and exit.
    -h, --help                Print this help and exit.
    -V, --version             Print the version and exit.

SIGNALS:
    SIGINT (Ctrl-C) and SIGTERM stop it cleanly (exit 0); a second signal
    during shutdown exits at once (status 1).

EXIT STATUS:
    0 stopped cleanly or valid config, 1 runtime error (bind, I/O),
    2 bad configuration or usage.
";

struct Args {
    config: Option<PathBuf>,
    check: bool,
    log_level: String,
    log_format: common::LogFormat,
    demo_dir: Option<PathBuf>,
}

enum Parsed {
    Run(Args),
    Exit(ExitCode),
}

fn parse_args() -> Result<Parsed, String> {
    let mut args = Args {
        config: None,
        check: false,
        log_level: "info".into(),
        log_format: common::LogFormat::Text,
        demo_dir: None,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        let a = a.into_string().map_err(|a| format!("not UTF-8: {a:?}"))?;
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-V" | "--version" => {
                println!("preboot-server {}", env!("CARGO_PKG_VERSION"));
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "--print-default-config" => {
                print!("{DEFAULT_CONFIG}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-c" | "--config" => args.config = Some(value("--config")?.into()),
            "--check" => args.check = true,
            "--log-level" => {
                let l = value("--log-level")?;
                if !["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
                    return Err(format!(
                        "--log-level: expected error, warn, info, debug or trace, not {l:?}"
                    ));
                }
                args.log_level = l;
            }
            "--log-format" => args.log_format = common::LogFormat::parse(&value("--log-format")?)?,
            "--demo-dir" => args.demo_dir = Some(value("--demo-dir")?.into()),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(Parsed::Run(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Exit(code)) => return code,
        Err(e) => {
            eprintln!("preboot-server: {e}");
            return ExitCode::from(2);
        }
    };
    common::init_logs(&args.log_level, args.log_format);

    // The demo tree lives as long as `_demo`; dropping it removes it.
    let (_demo, path) = match &args.config {
        Some(p) => (None, p.clone()),
        None => {
            let parent = args.demo_dir.clone().unwrap_or_else(std::env::temp_dir);
            // The demo binds unprivileged ports only: give up root before
            // creating the tree, so the same account serves and removes it.
            if let Err(e) = privileges::switch_user(privileges::DEFAULT_USER) {
                eprintln!("preboot-server: {e}");
                return ExitCode::from(1);
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
    println!("  stop:        Ctrl-C or kill -TERM {}", std::process::id());
    match server.run(&stop) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("preboot-server: {e}");
            ExitCode::from(1)
        }
    }
}
