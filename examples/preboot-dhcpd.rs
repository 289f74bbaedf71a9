//! `preboot-dhcpd`: the DHCP side of a PXE boot server, on its own.
//!
//! A thin command line over [`preboot::driver::dhcp::DhcpServer`]:
//! proxyDHCP (PXE 2.1 §2.2.2, the default: it sits beside the network's
//! DHCP server and only names boot files) or a full RFC 2131 server with one
//! address pool and a lease file. Logs go to stderr through `tracing`
//! (`--log-level` sets the level, `RUST_LOG` overrides it; `--log-format
//! json` writes one JSON object per line; the flags and the set-up in
//! `examples/common` are shared by every example); SIGINT or SIGTERM stop it
//! cleanly (the lease writer finishes its last group commit first).
//!
//! ```text
//! # proxyDHCP beside an existing DHCP server
//! preboot-dhcpd --interface br0 --server-id 192.168.77.1 \
//!     --bios pxelinux.0 --uefi-x64 grubnetx64.efi
//!
//! # full DHCP server
//! preboot-dhcpd --full --interface br0 --server-id 192.168.77.1 \
//!     --subnet 192.168.77.0/24 --pool 192.168.77.100-192.168.77.200 \
//!     --router 192.168.77.1 --lease-file /var/lib/preboot/leases \
//!     --bios pxelinux.0 --uefi-x64 grubnetx64.efi
//! ```
//!
//! Run with `--help` for every flag.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use preboot::driver::dhcp::{DhcpServer, DhcpServerConfig, MenuPolicy, Pool, RateLimit};

/// The DHCP side of a PXE boot server: proxyDHCP (PXE 2.1 §2.2.2; only
/// names boot files, beside the network's DHCP server) or a full DHCP server
/// with one address pool (RFC 2131).
#[derive(Parser, Debug)]
#[command(
    name = "preboot-dhcpd",
    version,
    after_help = AFTER_HELP,
    // The older spelling of --log-level, still taken (benches/dhcp-peers.sh).
    mut_arg("log_level", |a| a.visible_alias("log"))
)]
struct Args {
    /// proxyDHCP: answer PXE clients only, give no addresses (the default).
    #[arg(long, overrides_with = "full", help_heading = "Mode")]
    proxy: bool,
    /// Full DHCP server (needs --subnet and --pool).
    #[arg(long, overrides_with = "proxy", requires_all = ["subnet", "pool"], help_heading = "Mode")]
    full: bool,

    /// This server's address on the clients' network.
    #[arg(long, value_name = "IP", help_heading = "Network")]
    server_id: Ipv4Addr,
    /// DHCP socket.
    #[arg(long, value_name = "IP[:PORT]", default_value = "0.0.0.0:67",
          value_parser = |s: &str| sock(s, 67), help_heading = "Network")]
    bind: SocketAddrV4,
    /// Boot server socket, or none.
    #[arg(long, value_name = "IP[:PORT]|none", default_value = "0.0.0.0:4011",
          value_parser = boot_bind, help_heading = "Network")]
    boot_bind: BootBind,
    /// Bind both sockets to this interface (SO_BINDTODEVICE).
    #[arg(long, value_name = "NAME", help_heading = "Network")]
    interface: Option<String>,
    /// siaddr, the TFTP server [default: --server-id].
    #[arg(long, value_name = "IP", help_heading = "Network")]
    tftp_server: Option<Ipv4Addr>,

    /// The clients' subnet, e.g. 192.168.77.0/24.
    #[arg(long, value_name = "NET/PREFIX", value_parser = subnet, help_heading = "Full mode")]
    subnet: Option<Subnet>,
    /// Dynamic range, e.g. 192.168.77.100-192.168.77.200.
    #[arg(long, value_name = "START-END", value_parser = range, requires = "full",
          help_heading = "Full mode")]
    pool: Option<Range>,
    /// Option 3.
    #[arg(long, value_name = "IP", help_heading = "Full mode")]
    router: Option<Ipv4Addr>,
    /// Option 6 (repeatable, up to 3).
    #[arg(long, value_name = "IP", help_heading = "Full mode")]
    dns: Vec<Ipv4Addr>,
    /// Lease time.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Full mode")]
    lease_time: u64,
    /// Lease log, fsync'd before each ACK [default: none, memory only].
    #[arg(
        long,
        value_name = "PATH",
        requires = "full",
        help_heading = "Full mode"
    )]
    lease_file: Option<PathBuf>,
    /// Group commit window of the lease log [default: the driver's, 4].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=1000),
          help_heading = "Full mode")]
    commit_window_ms: Option<u64>,

    /// BIOS clients.
    #[arg(long, value_name = "FILE", help_heading = BOOT_FILES)]
    bios: Option<String>,
    /// UEFI x64 clients.
    #[arg(long, value_name = "FILE", help_heading = BOOT_FILES)]
    uefi_x64: Option<String>,
    /// UEFI IA32 clients.
    #[arg(long, value_name = "FILE", help_heading = BOOT_FILES)]
    uefi_ia32: Option<String>,
    /// UEFI ARM64 clients.
    #[arg(long, value_name = "FILE", help_heading = BOOT_FILES)]
    uefi_arm64: Option<String>,
    /// UEFI HTTP boot.
    #[arg(long, value_name = "URL", help_heading = BOOT_FILES)]
    http_url: Option<String>,
    /// Clients already running iPXE.
    #[arg(long, value_name = "FILE|URL", help_heading = BOOT_FILES)]
    ipxe: Option<String>,

    /// Boot menu policy: never, always or key:SECONDS.
    #[arg(long, value_name = "POLICY", default_value = "never", value_parser = menu,
          help_heading = "PXE menu and limits")]
    menu: MenuPolicy,
    /// Per-MAC limit, PER_SECOND[/BURST] (BURST defaults to twice the rate;
    /// 0 = off) [default: the driver's, 10/20].
    #[arg(long, value_name = "RATE", value_parser = rate_limit,
          help_heading = "PXE menu and limits")]
    rate_limit: Option<RateLimit>,

    #[command(flatten, next_help_heading = "Logging")]
    log: common::LogArgs,
}

const BOOT_FILES: &str = "Boot files by client architecture (option 93)";

const AFTER_HELP: &str = "\
SIGINT or SIGTERM stop it cleanly (the lease writer finishes its last group
commit first). Exit status: 0 stopped cleanly, 1 runtime error (bind, I/O),
2 usage error.";

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version 0.
    let args = Args::parse();
    args.log.init();
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // SIGINT/SIGTERM go to one waiting thread (signal-hook's self-pipe), so
    // the server stops through its stop handle instead of dying mid-commit.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("preboot-dhcpd: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mode = config.mode;
    let server = match DhcpServer::bind(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("preboot-dhcpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        mode = ?mode,
        dhcp = ?server.dhcp_local_addr().ok(),
        boot = ?server.boot_local_addr().and_then(Result::ok),
        "preboot-dhcpd: serving"
    );
    let stop = server.stop_handle();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!(signal = sig, "preboot-dhcpd: stopping");
        }
        stop.stop();
    });
    match server.run() {
        Ok(()) => {
            tracing::info!("preboot-dhcpd: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("preboot-dhcpd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--boot-bind`: an address, or none.
#[derive(Clone, Copy, Debug)]
struct BootBind(Option<SocketAddrV4>);

/// `--subnet`: network and prefix length.
#[derive(Clone, Copy, Debug)]
struct Subnet(Ipv4Addr, u8);

/// `--pool`: first and last address.
#[derive(Clone, Copy, Debug)]
struct Range(Ipv4Addr, Ipv4Addr);

impl Args {
    /// The server configuration; a usage error (exit 2) for what clap's
    /// attributes cannot say.
    fn config(&self) -> Result<DhcpServerConfig, clap::Error> {
        let usage = |kind, msg: String| Args::command().error(kind, msg);
        let mut config = if self.full {
            // clap requires both with --full.
            let (Some(Subnet(subnet, prefix_len)), Some(Range(start, end))) =
                (self.subnet, self.pool)
            else {
                return Err(usage(
                    ErrorKind::MissingRequiredArgument,
                    "--full needs --subnet and --pool".into(),
                ));
            };
            if self.dns.len() > 3 {
                return Err(usage(ErrorKind::TooManyValues, "at most 3 --dns".into()));
            }
            let pool = Pool {
                subnet,
                prefix_len,
                start,
                end,
                router: self.router,
                dns: self.dns.iter().copied().collect(),
                lease_time: Duration::from_secs(self.lease_time),
            };
            DhcpServerConfig::full(self.server_id, pool)
        } else {
            DhcpServerConfig::proxy(self.server_id)
        };
        config.dhcp_addr = self.bind;
        config.boot_addr = self.boot_bind.0;
        config.interface = self.interface.clone();
        config.tftp_server = self.tftp_server;
        config.boot_files = preboot::driver::dhcp::BootFileConfig {
            bios: self.bios.clone(),
            uefi_x64: self.uefi_x64.clone(),
            uefi_ia32: self.uefi_ia32.clone(),
            uefi_arm64: self.uefi_arm64.clone(),
            http_url: self.http_url.clone(),
            ipxe: self.ipxe.clone(),
            ..Default::default()
        };
        config.menu = self.menu;
        config.lease_file = self.lease_file.clone();
        if let Some(ms) = self.commit_window_ms {
            config.lease_commit_window = Duration::from_millis(ms);
        }
        if let Some(r) = self.rate_limit {
            config.rate_limit = r;
        }
        // Check the engine configuration now, for a clear message.
        config
            .engine_config()
            .map_err(|e| usage(ErrorKind::ValueValidation, e.to_string()))?;
        Ok(config)
    }
}

fn boot_bind(s: &str) -> Result<BootBind, String> {
    if s == "none" {
        return Ok(BootBind(None));
    }
    sock(s, 4011).map(|a| BootBind(Some(a)))
}

fn subnet(s: &str) -> Result<Subnet, String> {
    let (net, len) = s.split_once('/').ok_or("expected NET/PREFIX")?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or("bad prefix length")?;
    Ok(Subnet(ip(net)?, len))
}

fn range(s: &str) -> Result<Range, String> {
    let (start, end) = s.split_once('-').ok_or("expected START-END")?;
    Ok(Range(ip(start)?, ip(end)?))
}

fn menu(s: &str) -> Result<MenuPolicy, String> {
    match s {
        "never" => Ok(MenuPolicy::Never),
        "always" => Ok(MenuPolicy::Always),
        other => other
            .strip_prefix("key:")
            .and_then(|s| s.parse::<u8>().ok())
            .map(|timeout_secs| MenuPolicy::OnKeyPress { timeout_secs })
            .ok_or_else(|| "expected never, always or key:SECONDS (0-255)".into()),
    }
}

fn rate_limit(s: &str) -> Result<RateLimit, String> {
    let (rate, burst) = match s.split_once('/') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    let per_second: u32 = rate.parse().map_err(|_| "expected PER_SECOND[/BURST]")?;
    let burst: u32 = match burst {
        Some(b) => b.parse().map_err(|_| "bad burst")?,
        None => per_second.saturating_mul(2),
    };
    Ok(RateLimit { per_second, burst })
}

fn ip(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("{s}: not an IPv4 address"))
}

fn sock(s: &str, default_port: u16) -> Result<SocketAddrV4, String> {
    if let Ok(a) = s.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    Ok(SocketAddrV4::new(ip(s)?, default_port))
}
