//! The preboot client: the workstation side of the boot, steps 1–19 of
//! DESIGN.md, on the crate's engines. What runs on a workstation (in a
//! Linux initrd on BIOS machines), and what plays N workstations at once
//! to load a boot server.
//!
//! ```sh
//! cargo run --release --example preboot-server &   # the demo server on loopback
//! cargo run --release --example preboot-client     # one workstation through every step
//! cargo run --release --example preboot-client -- --workstations 100
//! cargo run --release --example preboot-client -- --help
//! ```

#[path = "../common/mod.rs"]
mod common;
mod dhcp;
mod fetch;
mod flow;
mod hardware;
#[allow(dead_code)] // kexec_unload, os_error_of: for the tests and library users
mod linux;
mod menu;
mod mfetch;
mod mtftp_fetch;
mod session;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant as StdInstant};

use clap::Parser;

use preboot::driver::config_file;
use preboot::driver::image_safe_disk::read_image_safe;
use preboot::tftp::client::ClientConfig as TftpConfig;
use preboot::transaction::parse_key;

use dhcp::{DhcpHub, DhcpTarget};
use flow::{BootOutcome, Ending, Handover, Profile, STEPS, Workstation};

/// Preboot client: DHCP/proxyDHCP and the boot server, the preboot file,
/// image-safe data and hardware, an authenticated transaction session
/// (protocol v2), the boot menu decision, the imaging tasks, the imaging
/// environment and the hand-over to it.
///
/// With no arguments it boots one workstation (this machine's hardware, a
/// disk-image file in the temporary directory) against the demo boot
/// server on 127.0.0.1 (`preboot-server` with no arguments): unicast on
/// loopback, the demo's ports, the server key its DHCP answer names.
/// Nothing leaves the host.
#[derive(Parser, Debug)]
#[command(name = "preboot-client", version, after_help = AFTER_HELP)]
struct Args {
    /// Boot on this network interface: broadcast DHCP from port 68 (root),
    /// the standard ports, the address configured on the interface.
    #[arg(long, value_name = "IFACE", conflicts_with = "server")]
    interface: Option<String>,
    /// The boot server (DHCP unicast to it; this host already has an
    /// address). Standard ports unless it is the demo on loopback.
    #[arg(long, value_name = "IP")]
    server: Option<Ipv4Addr>,
    /// The servers' DHCP port [default: 67; the demo's 6767 on loopback].
    #[arg(long, value_name = "PORT")]
    dhcp_port: Option<u16>,
    /// The DHCP client port answers come to [default: 68; the demo's 6868].
    #[arg(long, value_name = "PORT")]
    client_port: Option<u16>,
    /// The boot server port [default: 4011; the demo's 14011].
    #[arg(long, value_name = "PORT")]
    boot_port: Option<u16>,
    /// The TFTP port [default: 69; the demo's 6969].
    #[arg(long, value_name = "PORT")]
    tftp_port: Option<u16>,
    /// The transaction port on the boot server, when DHCP names no
    /// transaction server [default: 4012; the demo's 14012].
    #[arg(long, value_name = "PORT")]
    transaction_port: Option<u16>,
    /// The transaction server [default: the one DHCP names, else the boot
    /// server on --transaction-port].
    #[arg(long, value_name = "IP:PORT")]
    transaction: Option<SocketAddrV4>,
    /// The transaction server's public key to pin (64 hex digits or
    /// base64, or @FILE) [default: the one the DHCP answer names, option
    /// 43 sub-option 129: trusted on first use].
    #[arg(long, value_name = "KEY")]
    server_key: Option<String>,
    /// The disk holding image-safe data and the key record (a block device
    /// or a disk-image file) [default: a 2 MiB image file per MAC in the
    /// temporary directory].
    #[arg(long, value_name = "PATH")]
    disk: Option<PathBuf>,
    /// Use this MAC instead of the first network interface's.
    #[arg(long, value_name = "MAC")]
    mac: Option<String>,
    /// Use this machine UUID instead of the firmware's.
    #[arg(long, value_name = "UUID")]
    uuid: Option<String>,
    /// Client architecture (option 93) [default: from the firmware].
    #[arg(long, value_name = "N")]
    arch: Option<u16>,
    /// Play N workstations at once (distinct MACs from --mac upwards,
    /// UUIDs and disks), each through every step, and print a summary.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    workstations: u32,
    /// With --workstations: workstation i speaks from address IP + i (the
    /// addresses must be on this host) [default on loopback: 127.1.0.1
    /// upwards; else the host's address for all].
    #[arg(long, value_name = "IP")]
    address_base: Option<Ipv4Addr>,
    /// Baseline for benchmarks against boot servers without a transaction
    /// server (dnsmasq): after DHCP and the boot file, fetch these files
    /// by TFTP (comma-separated) and stop; no session, no menu, no tasks.
    #[arg(long, value_name = "FILE,FILE", value_delimiter = ',')]
    baseline_files: Vec<String>,
    /// Step 19: simulate the imaging environment (report the tasks done),
    /// kexec into it, or stop after fetching it.
    #[arg(long, value_enum, default_value_t = Handover::Simulate)]
    handover: Handover,
    /// Extra kernel command line for the imaging environment (kexec).
    #[arg(long, value_name = "TEXT", default_value = "")]
    kexec_append: String,
    /// Where the imaging environment is written (kexec) [default: a new
    /// directory in the temporary directory].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Take this menu entry (1-based) when the menu is shown and nobody
    /// types [default: the first].
    #[arg(long, value_name = "N")]
    menu_choice: Option<usize>,
    /// Wait for the hotkey and read the menu choice on the console even
    /// if stdin is not a terminal (a serial console).
    #[arg(long)]
    console: bool,
    /// Do not fetch the boot file DHCP names (the firmware did).
    #[arg(long)]
    no_boot_file: bool,
    /// TFTP blksize to ask for (RFC 2348).
    #[arg(long, value_name = "N", default_value_t = 1432)]
    blksize: u16,
    /// Give up on a step after SECS (a TFTP download: after SECS without
    /// progress).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    step_limit: u64,
    /// Wait at most SECS for a multicast session to start, asking the
    /// server again at the poll interval it gives; then boot the local
    /// disk.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    multicast_wait: u64,
    /// Print the image-safe data of the disk and exit.
    #[arg(long)]
    show_image_safe: bool,
    /// Print the hardware this machine reports (sysfs, procfs: what
    /// `WorkstationInfo` carries) and exit.
    #[arg(long)]
    probe: bool,
    #[command(flatten)]
    log: common::LogArgs,
}

const AFTER_HELP: &str = "\
Output: one line per step (one workstation) or a summary (many): done,
failed, p50/p99/max per step. The last line is
  RESULT local-boot | imaged tasks=ID,... | fetched tasks=ID,... | failed step=STEP: REASON
for one workstation, or
  RESULT workstations=N done=D failed=F total_p50_ms=… total_p99_ms=… total_max_ms=…
Exit status: 0 when every workstation got through, 1 when one failed, 2 on
a usage error.";

fn main() -> ExitCode {
    let args = Args::parse();
    args.log.init();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("preboot-client: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    config_file::parse_mac(s)
        .ok_or_else(|| format!("--mac {s}: expected six hex bytes like 52:54:00:12:34:56"))
}

fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    config_file::parse_uuid(s).ok_or_else(|| format!("--uuid {s}: expected 32 hex digits"))
}

fn server_key(text: &str) -> Result<[u8; 32], String> {
    let text = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("--server-key {path}: {e}"))?
        }
        None => text.to_string(),
    };
    parse_key(text.trim()).map_err(|e| format!("--server-key: {e}"))
}

fn run(args: Args) -> Result<ExitCode, String> {
    let tmp = std::env::temp_dir().join(format!("preboot-client-{}", unsafe_uid()));
    if args.probe {
        print!("{}", hardware::detect(Path::new("/")));
        return Ok(ExitCode::SUCCESS);
    }
    if args.show_image_safe {
        let disk = args
            .disk
            .as_deref()
            .ok_or("--show-image-safe needs --disk")?;
        return show_image_safe(disk).map(|()| ExitCode::SUCCESS);
    }
    let demo = args.interface.is_none() && args.server.is_none_or(|s| s.is_loopback());
    let (dhcp, tftp_port, transaction_port) = if let Some(iface) = &args.interface {
        let _ = iface;
        (
            DhcpTarget {
                broadcast: Ipv4Addr::BROADCAST,
                server_port: 67,
                boot_port: 4011,
                address_known: false,
            },
            69,
            4012,
        )
    } else if demo {
        let server = args.server.unwrap_or(Ipv4Addr::LOCALHOST);
        (
            DhcpTarget {
                broadcast: server,
                server_port: 6767,
                boot_port: 14011,
                address_known: true,
            },
            6969,
            14012,
        )
    } else {
        let server = args.server.unwrap_or(Ipv4Addr::LOCALHOST);
        (
            DhcpTarget {
                broadcast: server,
                server_port: 67,
                boot_port: 4011,
                address_known: true,
            },
            69,
            4012,
        )
    };
    let mut dhcp = dhcp;
    dhcp.server_port = args.dhcp_port.unwrap_or(dhcp.server_port);
    dhcp.boot_port = args.boot_port.unwrap_or(dhcp.boot_port);
    let tftp_port = args.tftp_port.unwrap_or(tftp_port);
    let transaction_port = args.transaction_port.unwrap_or(transaction_port);
    let key = match args.server_key.as_deref() {
        Some(k) => Some(server_key(k)?),
        None => None,
    };
    let client_port = args.client_port.unwrap_or(if demo { 6868 } else { 68 });
    let bind = if demo {
        SocketAddrV4::new(dhcp.broadcast, client_port)
    } else {
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, client_port)
    };
    if let Some(iface) = &args.interface {
        linux::interface_up(iface).map_err(|e| format!("{iface}: cannot bring it up: {e}"))?;
    }
    let socket = match &args.interface {
        Some(iface) => linux::dhcp_socket(iface, client_port)
            .map_err(|e| format!("DHCP socket on {iface} port {client_port}: {e}"))?,
        None => {
            let s = UdpSocket::bind(bind).map_err(|e| {
                format!("cannot bind the DHCP client port {bind}: {e} (another client running? port 68 needs root)")
            })?;
            s.set_broadcast(true).map_err(|e| e.to_string())?;
            s
        }
    };
    let hub = DhcpHub::start(socket).map_err(|e| e.to_string())?;

    let host = hardware::detect(Path::new("/"));
    let base_mac = match (&args.mac, &args.interface) {
        (Some(m), _) => parse_mac(m)?,
        (None, Some(iface)) => {
            linux::mac_of(iface).map_err(|e| format!("{iface}: no MAC address: {e}"))?
        }
        (None, None) => host.to_info().macs.first().copied().unwrap_or(local_mac()),
    };
    let uuid = match &args.uuid {
        Some(u) => Some(parse_uuid(u)?),
        None => host.uuid,
    };
    let n = args.workstations as usize;
    let work_dir = match (&args.work_dir, args.handover) {
        (Some(d), _) => Some(d.clone()),
        (None, Handover::Kexec) => Some(tmp.join(format!("env-{}", std::process::id()))),
        (None, _) => None,
    };
    if let Some(d) = &work_dir {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let profile = Profile {
        dhcp,
        interface: args.interface.clone(),
        tftp_port,
        transaction: args.transaction,
        transaction_port,
        server_key: key,
        fetch_boot_file: !args.no_boot_file,
        tftp: TftpConfig {
            blksize: Some(args.blksize),
            tsize: true,
            ..TftpConfig::default()
        },
        work_dir,
        handover: args.handover,
        baseline_files: args.baseline_files.clone(),
        kexec_append: args.kexec_append.clone(),
        console: args.console || (n == 1 && std::io::IsTerminal::is_terminal(&std::io::stdin())),
        menu_choice: args.menu_choice,
        step_limit: Duration::from_secs(args.step_limit),
        multicast_wait: Duration::from_secs(args.multicast_wait),
        verbose: n == 1,
    };
    let here = if demo {
        args.server.unwrap_or(Ipv4Addr::LOCALHOST)
    } else {
        args.server
            .and_then(flow::local_address_towards)
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    };
    let mut fleet = Vec::with_capacity(n);
    let seed = xid_seed();
    for i in 0..n {
        // Many workstations without --mac: simulated machines (distinct
        // MACs, UUIDs, an e1000 each). One: this machine, with --mac/--uuid
        // replacing its identity.
        let mut hw = if n > 1 && args.mac.is_none() {
            hardware::Hardware::simulated(i as u32)
        } else {
            host.clone()
        };
        let mac = if n > 1 && args.mac.is_none() {
            hw.to_info().macs.first().copied().unwrap_or(base_mac)
        } else {
            add_to_mac(base_mac, i as u32)
        };
        if args.mac.is_some() || args.interface.is_some() || hw.to_info().macs.is_empty() {
            hw.nics = vec![hardware::NetInterface {
                name: "eth0".into(),
                mac,
                pci: Some(preboot::wire::transaction::messages::PciId {
                    vendor: 0x8086,
                    device: 0x100e,
                }),
            }];
        }
        if n > 1 && args.mac.is_some() {
            hw.uuid = Some(uuid_for(uuid.unwrap_or([0x5a; 16]), i as u32));
        } else if n == 1 && uuid.is_some() {
            hw.uuid = uuid;
        }
        if let Some(a) = args.arch {
            hw.arch = a;
        }
        let disk = match (&args.disk, n) {
            (Some(d), 1) => d.clone(),
            (Some(d), _) => d.join(format!("{}.img", flow::mac_label(&mac).replace(':', ""))),
            (None, _) => tmp
                .join("disks")
                .join(format!("{}.img", flow::mac_label(&mac).replace(':', ""))),
        };
        if args.disk.is_none() || n > 1 {
            flow::ensure_disk(&disk)?;
        }
        // On loopback each workstation speaks from an address of its own
        // (127.1.x.y), as real ones do: per-client limits of the server
        // apply to each, not to all of them together.
        let address = if args.interface.is_some() {
            Ipv4Addr::UNSPECIFIED
        } else if let Some(base) = args.address_base {
            Ipv4Addr::from(u32::from(base).wrapping_add(i as u32))
        } else if demo && n > 1 {
            Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1)
        } else {
            here
        };
        fleet.push(Workstation {
            address,
            label: flow::mac_label(&mac),
            hardware: hw,
            disk,
            xid: seed.wrapping_add(i as u32 * 0x9e37),
        });
    }
    if n == 1 {
        let ws = &fleet[0];
        println!(
            "preboot-client {}: workstation {} · uuid {} · arch {} · disk {}",
            env!("CARGO_PKG_VERSION"),
            ws.label,
            ws.hardware
                .uuid
                .map_or_else(|| "none".into(), |u| fetch::hex(&u)),
            ws.hardware.arch,
            ws.disk.display()
        );
        let out = flow::boot(&profile, ws, &hub);
        print_one(&out);
        return Ok(if out.result.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    raise_fd_limit();
    println!(
        "preboot-client {}: {n} workstations from {} · disks under {}",
        env!("CARGO_PKG_VERSION"),
        fleet[0].label,
        fleet[0]
            .disk
            .parent()
            .map_or(Path::new("."), |p| p)
            .display()
    );
    let start = StdInstant::now();
    let outcomes: Vec<BootOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = fleet
            .iter()
            .map(|ws| {
                let (profile, hub) = (&profile, &hub);
                std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn_scoped(s, move || flow::boot(profile, ws, hub))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.ok())
            .map(|h| {
                h.join().unwrap_or_else(|_| BootOutcome {
                    steps: [None; STEPS.len()],
                    total: Duration::ZERO,
                    result: Err((0, "workstation thread panicked".into())),
                })
            })
            .collect()
    });
    Ok(summary(&outcomes, n, start.elapsed()))
}

fn print_one(out: &BootOutcome) {
    match &out.result {
        Ok(Ending::LocalBoot) => println!("RESULT local-boot total_ms={}", out.total.as_millis()),
        Ok(Ending::Imaged { tasks }) => println!(
            "RESULT imaged tasks={} total_ms={}",
            ids(tasks),
            out.total.as_millis()
        ),
        Ok(Ending::Baseline) => println!("RESULT baseline total_ms={}", out.total.as_millis()),
        Ok(Ending::Fetched { tasks }) => println!(
            "RESULT fetched tasks={} total_ms={}",
            ids(tasks),
            out.total.as_millis()
        ),
        Err((step, e)) => println!("RESULT failed step={}: {e}", STEPS[*step]),
    }
}

fn ids(t: &[u32]) -> String {
    t.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn pct(sorted: &[Duration], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_millis()
}

fn summary(outcomes: &[BootOutcome], n: usize, wall: Duration) -> ExitCode {
    let done = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let failed = n - done;
    println!(
        "{:<12} {:>6} {:>9} {:>9} {:>9}",
        "step", "ran", "p50_ms", "p99_ms", "max_ms"
    );
    for (i, name) in STEPS.iter().enumerate() {
        let mut d: Vec<Duration> = outcomes.iter().filter_map(|o| o.steps[i]).collect();
        d.sort();
        println!(
            "{name:<12} {:>6} {:>9} {:>9} {:>9}",
            d.len(),
            pct(&d, 0.5),
            pct(&d, 0.99),
            d.last().map_or(0, Duration::as_millis)
        );
    }
    let mut totals: Vec<Duration> = outcomes
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.total)
        .collect();
    totals.sort();
    let mut endings = std::collections::BTreeMap::<String, usize>::new();
    for o in outcomes {
        let k = match &o.result {
            Ok(Ending::LocalBoot) => "local-boot".to_string(),
            Ok(Ending::Imaged { .. }) => "imaged".to_string(),
            Ok(Ending::Fetched { .. }) => "fetched".to_string(),
            Ok(Ending::Baseline) => "baseline (DHCP and TFTP only)".to_string(),
            Err((step, e)) => format!("failed at {}: {e}", STEPS[*step]),
        };
        *endings.entry(k).or_default() += 1;
    }
    for (k, v) in &endings {
        println!("  {v:>6} × {k}");
    }
    println!(
        "RESULT workstations={n} done={done} failed={failed} wall_ms={} total_p50_ms={} total_p99_ms={} total_max_ms={}",
        wall.as_millis(),
        pct(&totals, 0.5),
        pct(&totals, 0.99),
        totals.last().map_or(0, Duration::as_millis)
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn show_image_safe(disk: &Path) -> Result<(), String> {
    let slots = read_image_safe(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    let l = slots.loaded();
    match (&l.slot, &l.problem) {
        (Some(s), _) => println!(
            "current slot {s:?}{}, generation {}",
            match slots.layout() {
                preboot::wire::image_safe::Layout::Legacy =>
                    " of the legacy layout (moved by the next write)",
                _ => "",
            },
            l.record.generation
        ),
        (None, Some(p)) => println!("{p}: the defaults apply"),
        (None, None) => println!("the defaults apply"),
    }
    println!("{:#?}", l.record);
    Ok(())
}

/// MAC + i in the low three bytes.
fn add_to_mac(m: [u8; 6], i: u32) -> [u8; 6] {
    let low = (u32::from(m[3]) << 16 | u32::from(m[4]) << 8 | u32::from(m[5])).wrapping_add(i);
    [
        m[0],
        m[1],
        m[2],
        (low >> 16) as u8,
        (low >> 8) as u8,
        low as u8,
    ]
}

fn uuid_for(base: [u8; 16], i: u32) -> [u8; 16] {
    let mut u = base;
    u[12..16].copy_from_slice(
        &(u32::from_be_bytes([base[12], base[13], base[14], base[15]]).wrapping_add(i))
            .to_be_bytes(),
    );
    u
}

/// A locally administered MAC from the machine id, when the host has no
/// network interface with one.
fn local_mac() -> [u8; 6] {
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let mut m = [0x52, 0x54, 0x00, 0, 0, 1];
    for (i, b) in id.trim().bytes().enumerate() {
        m[3 + i % 3] ^= b;
    }
    m
}

fn xid_seed() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut r) = preboot::driver::transaction::Urandom::open() {
        use preboot::transaction::Random;
        let _ = r.try_fill(&mut b);
    }
    u32::from_ne_bytes(b) ^ std::process::id()
}

fn unsafe_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// One process playing many workstations needs a socket or two and a
/// disk each: raise the open-file limit to its hard maximum.
fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
