//! `preboot-dhcpd`: the DHCP side of a PXE boot server, on its own.
//!
//! A thin command line over [`preboot::driver::dhcp::DhcpServer`]:
//! proxyDHCP (PXE 2.1 §2.2.2, the default: it sits beside the network's
//! DHCP server and only names boot files) or a full RFC 2131 server with one
//! address pool and a lease file. Logs go to stderr through `tracing`
//! (`--log` or `RUST_LOG` sets the level, `--log-format json` writes one
//! JSON object per line; the set-up in `examples/common` is shared by every
//! example); SIGINT or SIGTERM stop it cleanly
//! (the lease writer finishes its last group commit first).
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

use preboot::dhcp::BootArch;
use preboot::driver::dhcp::{DhcpServer, DhcpServerConfig, MenuPolicy, Mode, Pool, RateLimit};

const USAGE: &str = "\
usage: preboot-dhcpd [flags]

mode (proxyDHCP unless --full):
  --proxy                      proxyDHCP: answer PXE clients only, no addresses
  --full                       full DHCP server (needs --subnet and --pool)

network:
  --server-id IP               this server's address on the clients' network (required)
  --bind IP[:PORT]             DHCP socket (default 0.0.0.0:67)
  --boot-bind IP[:PORT]|none   boot server socket (default 0.0.0.0:4011)
  --interface NAME             bind both sockets to this interface (SO_BINDTODEVICE)
  --tftp-server IP             siaddr (default: --server-id)

full mode:
  --subnet NET/PREFIX          the clients' subnet, e.g. 192.168.77.0/24
  --pool START-END             dynamic range, e.g. 192.168.77.100-192.168.77.200
  --router IP                  option 3
  --dns IP                     option 6 (repeatable, up to 3)
  --lease-time SECONDS         default 3600
  --lease-file PATH            lease log (fsync'd before each ACK); none = memory only
  --commit-window-ms MS        group commit window of the lease log (default 4)

boot files by client architecture (option 93):
  --bios FILE  --uefi-x64 FILE  --uefi-ia32 FILE  --uefi-arm64 FILE
  --http-url URL               UEFI HTTP boot
  --ipxe FILE|URL              for clients already running iPXE

PXE menu and limits:
  --menu never|always|key:SECONDS   boot menu policy (default never)
  --rate-limit PER_SECOND[/BURST]   per-MAC limit (default 10/20; 0 = off)

logging:
  --log LEVEL                  error|warn|info|debug|trace (default info, or RUST_LOG)
  --log-format FORMAT          text (default; colours only on a terminal) or json
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("preboot-dhcpd: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .ok()
        .filter(|_| opts.log.is_none())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::new(opts.log.as_deref().unwrap_or("info"))
        });
    common::init_logs_with(filter, opts.log_format);
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
    let config = opts.config;
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

struct Options {
    config: DhcpServerConfig,
    log: Option<String>,
    log_format: common::LogFormat,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut mode = Mode::Proxy;
        let mut server_id: Option<Ipv4Addr> = None;
        let mut bind = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67);
        let mut boot_bind = Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4011));
        let mut interface = None;
        let mut tftp_server = None;
        let mut subnet: Option<(Ipv4Addr, u8)> = None;
        let mut range: Option<(Ipv4Addr, Ipv4Addr)> = None;
        let mut router = None;
        let mut dns: Vec<Ipv4Addr> = Vec::new();
        let mut lease_time = Duration::from_secs(3600);
        let mut lease_file = None;
        let mut commit_window = None;
        let mut boot = preboot::driver::dhcp::BootFileConfig::default();
        let mut menu = MenuPolicy::Never;
        let mut rate_limit = RateLimit::default();
        let mut log = None;
        let mut log_format = common::LogFormat::Text;

        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--proxy" => mode = Mode::Proxy,
                "--full" => mode = Mode::Full,
                "--server-id" => server_id = Some(ip(&value()?)?),
                "--bind" => bind = sock(&value()?, 67)?,
                "--boot-bind" => {
                    let v = value()?;
                    boot_bind = if v == "none" {
                        None
                    } else {
                        Some(sock(&v, 4011)?)
                    };
                }
                "--interface" => interface = Some(value()?),
                "--tftp-server" => tftp_server = Some(ip(&value()?)?),
                "--subnet" => {
                    let v = value()?;
                    let (net, len) = v
                        .split_once('/')
                        .ok_or_else(|| format!("--subnet {v}: expected NET/PREFIX"))?;
                    let len: u8 = len
                        .parse()
                        .ok()
                        .filter(|l| *l <= 32)
                        .ok_or_else(|| format!("--subnet {v}: bad prefix length"))?;
                    subnet = Some((ip(net)?, len));
                }
                "--pool" => {
                    let v = value()?;
                    let (s, e) = v
                        .split_once('-')
                        .ok_or_else(|| format!("--pool {v}: expected START-END"))?;
                    range = Some((ip(s)?, ip(e)?));
                }
                "--router" => router = Some(ip(&value()?)?),
                "--dns" => dns.push(ip(&value()?)?),
                "--lease-time" => {
                    let v = value()?;
                    let s: u64 = v
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| format!("--lease-time {v}: expected seconds > 0"))?;
                    lease_time = Duration::from_secs(s);
                }
                "--lease-file" => lease_file = Some(PathBuf::from(value()?)),
                "--commit-window-ms" => {
                    let v = value()?;
                    let ms: u64 = v
                        .parse()
                        .ok()
                        .filter(|ms| *ms <= 1000)
                        .ok_or_else(|| format!("--commit-window-ms {v}: expected 0..=1000"))?;
                    commit_window = Some(Duration::from_millis(ms));
                }
                "--bios" => {
                    boot.files.insert(BootArch::Bios, value()?);
                }
                "--uefi-x64" => {
                    boot.files.insert(BootArch::UefiX64, value()?);
                }
                "--uefi-ia32" => {
                    boot.files.insert(BootArch::UefiIa32, value()?);
                }
                "--uefi-arm64" => {
                    boot.files.insert(BootArch::UefiArm64, value()?);
                }
                "--http-url" => {
                    boot.files.insert(BootArch::Http, value()?);
                }
                "--ipxe" => boot.ipxe = Some(value()?),
                "--menu" => {
                    let v = value()?;
                    menu = match v.as_str() {
                        "never" => MenuPolicy::Never,
                        "always" => MenuPolicy::Always,
                        other => {
                            let secs = other
                                .strip_prefix("key:")
                                .and_then(|s| s.parse::<u8>().ok())
                                .ok_or_else(|| {
                                    format!("--menu {v}: expected never, always or key:SECONDS")
                                })?;
                            MenuPolicy::OnKeyPress { timeout_secs: secs }
                        }
                    };
                }
                "--rate-limit" => {
                    let v = value()?;
                    let (rate, burst) = match v.split_once('/') {
                        Some((r, b)) => (r, Some(b)),
                        None => (v.as_str(), None),
                    };
                    let per_second: u32 = rate
                        .parse()
                        .map_err(|_| format!("--rate-limit {v}: expected PER_SECOND[/BURST]"))?;
                    let burst: u32 = match burst {
                        Some(b) => b
                            .parse()
                            .map_err(|_| format!("--rate-limit {v}: bad burst"))?,
                        None => per_second.saturating_mul(2),
                    };
                    rate_limit = RateLimit { per_second, burst };
                }
                "--log" => log = Some(value()?),
                "--log-format" => log_format = common::LogFormat::parse(&value()?)?,
                other => return Err(format!("unknown flag {other}")),
            }
        }

        let server_id = server_id.ok_or("--server-id is required")?;
        let mut config = match mode {
            Mode::Proxy => DhcpServerConfig::proxy(server_id),
            Mode::Full => {
                let (net, prefix_len) = subnet.ok_or("full mode needs --subnet")?;
                let (start, end) = range.ok_or("full mode needs --pool")?;
                if dns.len() > 3 {
                    return Err("at most 3 --dns".into());
                }
                let pool = Pool {
                    subnet: net,
                    prefix_len,
                    start,
                    end,
                    router,
                    dns: dns.iter().copied().collect(),
                    lease_time,
                };
                DhcpServerConfig::full(server_id, pool)
            }
        };
        if mode == Mode::Proxy && (lease_file.is_some() || range.is_some()) {
            return Err("--pool and --lease-file need --full".into());
        }
        config.dhcp_addr = bind;
        config.boot_addr = boot_bind;
        config.interface = interface;
        config.tftp_server = tftp_server;
        config.boot_files = boot;
        config.menu = menu;
        config.lease_file = lease_file;
        if let Some(w) = commit_window {
            config.lease_commit_window = w;
        }
        config.rate_limit = rate_limit;
        // Check the engine configuration now, for a clear message.
        config.engine_config().map_err(|e| e.to_string())?;
        Ok(Options {
            config,
            log,
            log_format,
        })
    }
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
