//! The boot server's TOML configuration: `examples/preboot.toml` and the
//! embedded default parse into what they say; every kind of bad file
//! (syntax, unknown key, bad value, broken relation, missing boot file) is
//! an error naming the file, line and field; and a server that cannot
//! start keeps nothing bound.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use preboot::dhcp::BootArch;
use preboot::driver::boot_server::config::{self, BootServerConfig};
#[path = "../examples/preboot-server/demo.rs"]
mod demo;
use demo::{DEFAULT_CONFIG, DEMO_FILES, DemoTree, demo_file};
use preboot::driver::boot_server::{BootServer, BootServerError};
use preboot::driver::dhcp::{MenuPolicy, Mode, ReservationKey};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/preboot.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).unwrap()
}

/// `examples/preboot.toml` says what its comments say (every section).
#[test]
fn example_file_parses_into_what_it_documents() {
    let c = config::load(&example_path()).unwrap();
    let d = &c.dhcp;
    assert_eq!(d.mode, Mode::Proxy);
    assert_eq!(d.server_id, Ipv4Addr::new(192, 168, 1, 10));
    assert_eq!(d.tftp_server, None);
    assert_eq!(d.interface, None);
    assert_eq!(d.dhcp_addr, "0.0.0.0:67".parse().unwrap());
    assert_eq!(d.boot_addr, Some("0.0.0.0:4011".parse().unwrap()));
    assert_eq!(d.client_port, 68);
    assert_eq!(d.broadcast_address, Ipv4Addr::BROADCAST);
    let f = &d.boot_files;
    let file = |a| f.files.get(&a).map(String::as_str);
    assert_eq!(file(BootArch::Bios), Some("bios/pxelinux.0"));
    assert_eq!(file(BootArch::UefiX64), Some("efi64/bootx64.efi"));
    assert_eq!(file(BootArch::UefiIa32), Some("efi32/bootia32.efi"));
    assert_eq!(file(BootArch::UefiArm64), Some("arm64/bootaa64.efi"));
    assert_eq!(
        file(BootArch::Http),
        Some("http://192.168.1.10/boot/bootx64.efi")
    );
    assert_eq!(f.ipxe.as_deref(), Some("boot.ipxe"));
    assert_eq!(d.menu, MenuPolicy::Never);
    assert_eq!(d.menu_prompt, "Press F8 for boot menu");
    assert_eq!(
        d.menu_items,
        vec![
            (0x8000, "Network boot (preboot)".to_string()),
            (0, "Boot from local disk".to_string())
        ]
    );
    assert_eq!(d.rate_limit.per_second, 10);
    assert_eq!(d.rate_limit.burst, 20);
    // Proxy mode: the full-mode pools and reservations are commented out.
    assert!(d.pools.is_empty() && d.reservations.is_empty());
    assert_eq!(d.max_declined_percent, 10);
    // Relative to the file's directory.
    assert_eq!(
        d.lease_file.as_deref(),
        Some(example_path().parent().unwrap().join("leases").as_path())
    );
    let t = c.tftp.as_ref().unwrap();
    assert_eq!(t.root, Path::new("/srv/tftp"));
    assert_eq!(t.bind, "0.0.0.0:69".parse::<SocketAddr>().unwrap());
    assert_eq!((t.max_transfers, t.max_per_client), (1024, 64));
    assert_eq!((t.max_blksize, t.max_windowsize), (65464, 64));
    assert_eq!(t.timeout, Duration::from_millis(1000));
    assert_eq!(t.max_timeout, Duration::from_secs(5));
    assert_eq!(t.max_retries, 5);
    assert!(!t.single_port && !t.allow_write && !t.allow_overwrite);
    assert_eq!(t.port_range, None);
    // The five TFTP boot files are checked (the URL is not), in the order
    // of the architecture table.
    let names: Vec<&str> = c.boot_files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bios/pxelinux.0",
            "efi32/bootia32.efi",
            "efi64/bootx64.efi",
            "arm64/bootaa64.efi",
            "boot.ipxe"
        ]
    );
    // The shipped file is valid as shipped: no warning at all.
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // Its commented full-mode block, uncommented with mode = "full", is
    // what it documents.
    let c = config::parse(&example_path(), &example_full_mode()).unwrap();
    let d = &c.dhcp;
    assert_eq!(d.mode, Mode::Full);
    assert_eq!(d.pools.len(), 1);
    let p = &d.pools[0];
    assert_eq!(
        (p.subnet, p.prefix_len),
        (Ipv4Addr::new(192, 168, 1, 0), 24)
    );
    assert_eq!(p.start, Ipv4Addr::new(192, 168, 1, 100));
    assert_eq!(p.end, Ipv4Addr::new(192, 168, 1, 199));
    assert_eq!(p.router, Some(Ipv4Addr::new(192, 168, 1, 1)));
    assert_eq!(p.dns.len(), 2);
    assert_eq!(p.lease_time, Duration::from_secs(3600));
    assert_eq!(d.reservations.len(), 2);
    assert_eq!(
        d.reservations[0].key,
        ReservationKey::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert!(
        matches!(&d.reservations[1].key, ReservationKey::ClientId(id) if id.as_slice() == [1, 0x52, 0x54, 0, 0x12, 0x34, 0x57])
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// examples/preboot.toml in full mode: `mode = "full"` and its commented
/// pool and reservation lines uncommented, as its comment says.
fn example_full_mode() -> String {
    let keys = [
        "[[dhcp.",
        "subnet =",
        "start =",
        "end =",
        "router =",
        "dns =",
        "lease_time_secs =",
        "mac =",
        "client_id =",
        "address =",
    ];
    example_text()
        .replacen("mode = \"proxy\"", "mode = \"full\"", 1)
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(u) if keys.iter().any(|k| u.starts_with(k)) => u,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The file-system stage against a tree holding every file it names.
#[test]
fn example_file_checks_against_a_real_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tftp");
    for (name, size) in DEMO_FILES {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, demo_file(name, size)).unwrap();
    }
    std::fs::write(root.join("boot.ipxe"), "#!ipxe\n").unwrap();
    let text = example_text().replace("root = \"/srv/tftp\"", "root = \"tftp\"");
    let file = dir.path().join("preboot.toml");
    let c = config::parse(&file, &text).unwrap();
    c.check_files().unwrap();
    // Remove one: the error names it, its line and field.
    std::fs::remove_file(root.join("efi32/bootia32.efi")).unwrap();
    let e = c.check_files().unwrap_err();
    let line = line_of(&text, "uefi_ia32 = ");
    assert_eq!((e.line, e.field.as_str()), (line, "boot.uefi_ia32"), "{e}");
    assert!(e.message.contains("efi32/bootia32.efi"), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:{line}:", file.display()))
    );
}

/// The embedded default: loopback, unprivileged ports, proxy, and the demo
/// tree holds every file it names.
#[test]
fn embedded_default_is_a_loopback_demo_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let tree = DemoTree::create(dir.path()).unwrap();
    let c = config::load(tree.config_path()).unwrap();
    c.check_files().unwrap();
    let lo = Ipv4Addr::LOCALHOST;
    assert_eq!(c.dhcp.mode, Mode::Proxy);
    assert_eq!(c.dhcp.dhcp_addr, SocketAddrV4::new(lo, 6767));
    assert_eq!(c.dhcp.boot_addr, Some(SocketAddrV4::new(lo, 14011)));
    assert_eq!(c.dhcp.client_port, 6868);
    assert_eq!(c.dhcp.broadcast_address, lo);
    let t = c.tftp.as_ref().unwrap();
    assert_eq!(t.bind, SocketAddr::from((lo, 6969)));
    assert_eq!(t.root, tree.root());
    for (name, size) in DEMO_FILES {
        let bytes = std::fs::read(tree.root().join(name)).unwrap();
        assert_eq!(bytes, demo_file(name, size));
    }
    assert!(tree.root().join("bios/pxelinux.cfg/default").is_file());
    assert_eq!(
        std::fs::read_to_string(tree.config_path()).unwrap(),
        DEFAULT_CONFIG
    );
    let d = tree.dir().to_path_buf();
    drop(tree);
    assert!(!d.exists(), "the demo tree is removed when dropped");
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in text"))
        + 1
}

const GOOD: &str = r#"[server]
mode = "full"
server_ip = "10.9.0.1"
[boot]
bios = "pxelinux.0"
uefi_x64 = "bootx64.efi"
[pxe_prompt]
show = "on-key-press"
timeout_secs = 3
[dhcp]
[[dhcp.pool]]
subnet = "10.9.0.0/24"
start = "10.9.0.100"
end = "10.9.0.199"
[[dhcp.reservation]]
mac = "52:54:00:00:00:01"
address = "10.9.0.5"
[tftp]
root = "tftp"
"#;

/// The base for the bad cases is good.
#[test]
fn good_base_config() {
    let c = config::parse(Path::new("/etc/preboot/preboot.toml"), GOOD).unwrap();
    assert_eq!(c.dhcp.mode, Mode::Full);
    assert_eq!(c.dhcp.menu, MenuPolicy::OnKeyPress { timeout_secs: 3 });
    assert_eq!(c.dhcp.dhcp_addr, "0.0.0.0:67".parse().unwrap());
    assert_eq!(
        c.tftp.unwrap().root,
        Path::new("/etc/preboot/tftp"),
        "relative to the file"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // TFTP event loops: one per CPU unless set.
    let c = config::parse(Path::new("p.toml"), GOOD).unwrap();
    assert_eq!(
        c.tftp.unwrap().loops,
        preboot::driver::tftp::default_loops()
    );
    let c = config::parse(
        Path::new("p.toml"),
        &GOOD.replace("[tftp]\n", "[tftp]\nloops = 3\n"),
    )
    .unwrap();
    assert_eq!(c.tftp.unwrap().loops, 3);
}

/// Every bad file gives file:line:column: field: message, with the line
/// and field of the fault.
#[test]
fn bad_configs_name_file_line_and_field() {
    // (replace this, with this, line of the fault, field, words of the message)
    let cases: &[(&str, &str, usize, &str, &str)] = &[
        // syntax
        ("mode = \"full\"", "mode = \"full", 2, "server.mode", ""),
        ("[pxe_prompt]", "[pxe_prompt", 7, "pxe_prompt", ""),
        // unknown keys, at any depth
        (
            "server_ip = \"10.9.0.1\"",
            "server_ip = \"10.9.0.1\"\ncolour = \"red\"",
            4,
            "server.colour",
            "unknown key `colour`; the keys allowed here are `mode`, `server_ip`",
        ),
        (
            "end = \"10.9.0.199\"",
            "end = \"10.9.0.199\"\nrouter_ip = \"10.9.0.1\"",
            15,
            "dhcp.pool.router_ip",
            "unknown key `router_ip`",
        ),
        (
            "[tftp]",
            "[tftp]\nmax_blocksize = 1468",
            19,
            "tftp.max_blocksize",
            "unknown key `max_blocksize`; the keys allowed here are `enabled`, `root`",
        ),
        // bad values
        (
            "server_ip = \"10.9.0.1\"",
            "server_ip = \"10.9.0.300\"",
            3,
            "server.server_ip",
            "IPv4",
        ),
        (
            "server_ip = \"10.9.0.1\"",
            "server_ip = \"0.0.0.0\"",
            3,
            "server.server_ip",
            "unicast",
        ),
        (
            "mode = \"full\"",
            "mode = \"fast\"",
            2,
            "server.mode",
            "proxy",
        ),
        (
            "mode = \"full\"",
            "mode = 1",
            2,
            "server.mode",
            "expected a string (in quotes), found the whole number 1",
        ),
        // types, in words (serde says i64, u16, a sequence, …)
        (
            "[tftp]",
            "[tftp]\ntimeout_ms = \"5\"",
            19,
            "tftp.timeout_ms",
            "expected a whole number, found the string \"5\"",
        ),
        (
            "[tftp]",
            "[tftp]\nmax_blksz = 1468",
            19,
            "tftp.max_blksz",
            "unknown key `max_blksz`",
        ),
        (
            "[tftp]",
            "[tftp]\nallow_write = \"yes\"",
            19,
            "tftp.allow_write",
            "expected true or false, found the string \"yes\"",
        ),
        (
            "[tftp]",
            "[tftp]\nport_range = 50000",
            19,
            "tftp.port_range",
            "expected an array of 2 values, found the whole number 50000",
        ),
        (
            "end = \"10.9.0.199\"",
            "end = \"10.9.0.199\"\ndns = \"10.9.0.1\"",
            15,
            "dhcp.pool.dns",
            "expected an array [ ... ], found the string \"10.9.0.1\"",
        ),
        (
            "[dhcp]",
            "[dhcp]\nrate_limit = 5",
            11,
            "dhcp.rate_limit",
            "expected a table, found the whole number 5",
        ),
        (
            "[pxe_prompt]",
            "[ports]\ndhcp = 70000\n[pxe_prompt]",
            8,
            "ports.dhcp",
            "expected a whole number from 0 to 65535, found the whole number 70000",
        ),
        (
            "server_ip = \"10.9.0.1\"\n",
            "",
            1,
            "server.server_ip",
            "missing key `server_ip`",
        ),
        (
            "[pxe_prompt]",
            "[ports]\nclient = 67\n[pxe_prompt]",
            8,
            "ports.client",
            "ports.client and ports.dhcp are both 67",
        ),
        (
            "show = \"on-key-press\"",
            "show = \"sometimes\"",
            8,
            "pxe_prompt.show",
            "on-key-press",
        ),
        (
            "timeout_secs = 3",
            "timeout_secs = 0",
            9,
            "pxe_prompt.timeout_secs",
            "1-254",
        ),
        (
            "[pxe_prompt]",
            "[pxe_prompt]\nprompt = \"Press F8 or F12 or any other key you like to see the menu, really, now\"",
            8,
            "pxe_prompt.prompt",
            "at most 64",
        ),
        (
            "bios = \"pxelinux.0\"",
            &format!("bios = \"{}\"", "a".repeat(128)),
            5,
            "boot.bios",
            "at most 127",
        ),
        (
            "bios = \"pxelinux.0\"",
            "bios = \"../etc/shadow\"",
            5,
            "boot.bios",
            "inside the TFTP root",
        ),
        (
            "uefi_x64 = \"bootx64.efi\"",
            "uefi_x64 = \"bootx64.efi\"\nhttp_url = \"ftp://x/y\"",
            7,
            "boot.http_url",
            "http",
        ),
        (
            "uefi_x64 = \"bootx64.efi\"",
            "uefi_x64 = \"bootx64.efi\"\nhttp_arm64 = \"bootaa64.efi\"",
            7,
            "boot.http_arm64",
            "expected an http:// or https:// URL",
        ),
        (
            "uefi_x64 = \"bootx64.efi\"",
            "uefi_x64 = \"bootx64.efi\"\nuefi_riscv64 = \"../riscv.efi\"",
            7,
            "boot.uefi_riscv64",
            "inside the TFTP root",
        ),
        (
            "uefi_x64 = \"bootx64.efi\"",
            "uefi_x64 = \"bootx64.efi\"\nuefi_arm = \"bootarm.efi\"",
            7,
            "boot.uefi_arm",
            "unknown key `uefi_arm`; the keys allowed here are `bios`",
        ),
        (
            "uefi_x64 = \"bootx64.efi\"",
            "uefi_x64 = \"bootx64.efi\"\n[boot.servers]\nhttp_x64 = \"10.9.0.2\"",
            8,
            "boot.servers.http_x64",
            "unknown key `http_x64`",
        ),
        (
            "uefi_x64 = \"bootx64.efi\"",
            "uefi_x64 = \"bootx64.efi\"\n[boot.servers]\nuboot_arm64 = \"10.9.0\"",
            8,
            "boot.servers.uboot_arm64",
            "IPv4",
        ),
        (
            "[tftp]",
            "[tftp]\nmax_blksize = 100",
            19,
            "tftp.max_blksize",
            "512-65464",
        ),
        (
            "[tftp]",
            "[tftp]\nmax_transfers = 1048576",
            19,
            "tftp.max_transfers",
            "1-65536",
        ),
        ("[tftp]", "[tftp]\nloops = 0", 19, "tftp.loops", "1-1024"),
        (
            "[tftp]",
            "[tftp]\nmax_timeout_secs = 0",
            19,
            "tftp.max_timeout_secs",
            "1-255",
        ),
        (
            "[tftp]",
            "[tftp]\nport_range = [60000, 50000]",
            19,
            "tftp.port_range",
            "first <= last",
        ),
        (
            "[dhcp]",
            "[dhcp]\nrate_limit = { per_second = -1, burst = 2 }",
            11,
            "dhcp.rate_limit.per_second",
            "expected a whole number from 0 to 4294967295, found the whole number -1",
        ),
        (
            "mac = \"52:54:00:00:00:01\"",
            "mac = \"52:54:00:00:01\"",
            16,
            "dhcp.reservation.mac",
            "MAC",
        ),
        (
            "subnet = \"10.9.0.0/24\"",
            "subnet = \"10.9.0.0/33\"",
            12,
            "dhcp.pool.subnet",
            "192.168.1.0/24",
        ),
        (
            "subnet = \"10.9.0.0/24\"",
            "subnet = \"10.9.0.7/24\"",
            12,
            "dhcp.pool.subnet",
            "10.9.0.0",
        ),
        // relations
        (
            "start = \"10.9.0.100\"",
            "start = \"10.8.0.100\"",
            13,
            "dhcp.pool.start",
            "outside",
        ),
        (
            "end = \"10.9.0.199\"",
            "end = \"10.9.0.255\"",
            14,
            "dhcp.pool.end",
            "outside",
        ),
        (
            "end = \"10.9.0.199\"",
            "end = \"10.9.0.50\"",
            14,
            "dhcp.pool.end",
            "before start",
        ),
        (
            "address = \"10.9.0.5\"",
            "address = \"10.7.0.5\"",
            17,
            "dhcp.reservation.address",
            "no pool",
        ),
        (
            "bios = \"pxelinux.0\"\nuefi_x64 = \"bootx64.efi\"",
            "check_files = true",
            4,
            "boot",
            "no boot file",
        ),
    ];
    for (from, to, line, field, words) in cases {
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replacen(from, to, 1);
        let e = config::parse(Path::new("/etc/preboot/preboot.toml"), &text).expect_err(&text);
        assert_eq!((e.line, e.field.as_str()), (*line, *field), "{text}\n→ {e}");
        assert!(e.message.contains(words), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("/etc/preboot/preboot.toml:{line}:")),
            "{e}"
        );
        // The parser's Rust wording never reaches the user.
        for jargon in [
            "i64",
            "u16",
            "u32",
            "u64",
            "struct ",
            "sequence",
            "map",
            "invalid type",
            "invalid value",
            "field `",
        ] {
            assert!(!e.message.contains(jargon), "{jargon}: {e}");
        }
    }
    // Ports used twice, given or by default.
    for (ports, line, field) in [
        ("[ports]\nboot = 67\n", 2, "ports.boot"),
        ("[ports]\ntftp = 4011\n", 2, "ports.tftp"),
        ("[ports]\ndhcp = 69\n", 2, "ports.dhcp"),
    ] {
        let e = config::parse(Path::new("p.toml"), &format!("{ports}{GOOD}")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (line, field), "{e}");
        assert!(e.message.contains("used by both"), "{e}");
    }
    // Relations that span the file.
    let no_pool = GOOD.replace("[[dhcp.pool]]", "[dhcp.x]");
    let e = config::parse(Path::new("p.toml"), &no_pool).unwrap_err();
    assert_eq!(e.field, "dhcp.x", "{e}");
    assert_eq!(e.line, 11, "{e}");
    let no_pool: String = GOOD
        .lines()
        .filter(|l| {
            ![
                "[[dhcp.pool]]",
                "subnet",
                "start",
                "end",
                "[[dhcp.res",
                "mac",
                "address",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let e = config::parse(Path::new("p.toml"), &no_pool).unwrap_err();
    assert_eq!(e.field, "dhcp.pool", "{e}");
    assert!(e.message.contains("at least one"), "{e}");
    let e = config::parse(
        Path::new("p.toml"),
        &GOOD.replace("[tftp]\nroot = \"tftp\"\n", ""),
    )
    .unwrap_err();
    assert_eq!(e.field, "tftp", "{e}");
    // A missing file: what and why, nothing else.
    let e = config::load(Path::new("/nonexistent.toml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot read /nonexistent.toml: No such file or directory"
    );
}

/// A free UDP port on loopback (bound, then released).
fn free_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn loopback_config(dir: &Path, dhcp: u16, boot: u16, tftp: u16, bios: &str) -> BootServerConfig {
    let text = format!(
        "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\n\
         [ports]\ndhcp = {dhcp}\nboot = {boot}\ntftp = {tftp}\nclient = 6868\n\
         [boot]\nbios = \"{bios}\"\n[tftp]\nroot = \"tftp\"\n"
    );
    std::fs::create_dir_all(dir.join("tftp")).unwrap();
    std::fs::write(dir.join("tftp/pxelinux.0"), b"pxe").unwrap();
    config::parse(&dir.join("preboot.toml"), &text).unwrap()
}

/// A missing boot file stops the start before any socket exists: the ports
/// stay free.
#[test]
fn missing_boot_file_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (d, b, t) = (free_port(), free_port(), free_port());
    let c = loopback_config(dir.path(), d, b, t, "missing.0");
    let e = BootServer::bind(c).unwrap_err();
    let BootServerError::Config(e) = e else {
        panic!("{e}")
    };
    assert_eq!((e.line, e.field.as_str()), (11, "boot.bios"), "{e}");
    assert!(e.message.contains("missing.0"), "{e}");
    for p in [d, b, t] {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).expect("port left free");
    }
}

/// When the last socket cannot bind (TFTP's port is taken), the DHCP
/// sockets opened before it are closed again: never half a server.
#[test]
fn failed_bind_leaves_nothing_half_open() {
    let dir = tempfile::tempdir().unwrap();
    let taken = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let t = taken.local_addr().unwrap().port();
    let (d, b) = (free_port(), free_port());
    let c = loopback_config(dir.path(), d, b, t, "pxelinux.0");
    let e = BootServer::bind(c).unwrap_err();
    assert!(
        matches!(&e, BootServerError::Bind { what, .. } if what.starts_with("TFTP 127.0.0.1:")),
        "{e}"
    );
    for p in [d, b] {
        // Without SO_REUSEADDR: fails if the server still held the port.
        UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).expect("DHCP port closed again");
    }
}

/// The optional keys do what examples/preboot.toml says: per-architecture
/// TFTP servers (files there are not checked here), the mask form of a
/// subnet, client ids, no boot server socket, TFTP off, interface.
#[test]
fn optional_keys_take_effect() {
    let text = r#"[server]
mode = "full"
server_ip = "10.9.0.1"
tftp_server = "10.9.0.2"
interface = "br0"
listen = "0.0.0.0"
broadcast_address = "10.9.0.255"
[ports]
dhcp = 1067
boot = 0
client = 1068
[boot]
bios = "pxelinux.0"
uefi_arm64 = "arm64/bootaa64.efi"
http_url = "https://10.9.0.1/boot.efi"
ipxe = "http://10.9.0.1/boot.ipxe"
[boot.servers]
uefi_arm64 = "10.9.0.3"
[pxe_prompt]
show = "always"
[dhcp]
rate_limit = { per_second = 0, burst = 1 }
[[dhcp.pool]]
subnet = "10.9.0.0"
mask = "255.255.254.0"
start = "10.9.1.1"
end = "10.9.1.254"
dns = ["10.9.0.1"]
lease_time_secs = 120
[[dhcp.reservation]]
client_id = "01:52:54:00:00:00:09"
address = "10.9.0.9"
[tftp]
enabled = false
"#;
    let c = config::parse(Path::new("/x/p.toml"), text).unwrap();
    let d = &c.dhcp;
    assert_eq!(d.tftp_server, Some(Ipv4Addr::new(10, 9, 0, 2)));
    assert_eq!(d.interface.as_deref(), Some("br0"));
    assert_eq!(d.broadcast_address, Ipv4Addr::new(10, 9, 0, 255));
    assert_eq!(d.dhcp_addr, "0.0.0.0:1067".parse().unwrap());
    assert_eq!(d.boot_addr, None, "ports.boot = 0: no 4011 socket");
    assert_eq!(d.client_port, 1068);
    assert_eq!(
        d.boot_files.servers.get(&BootArch::UefiArm64).copied(),
        Some(Ipv4Addr::new(10, 9, 0, 3))
    );
    assert_eq!(d.boot_files.servers.get(&BootArch::Bios), None);
    assert_eq!(
        d.boot_files.files.get(&BootArch::Http).map(String::as_str),
        Some("https://10.9.0.1/boot.efi")
    );
    assert_eq!(d.menu, MenuPolicy::Always);
    assert_eq!(d.rate_limit.per_second, 0);
    assert_eq!(d.pools[0].prefix_len, 23);
    assert_eq!(d.pools[0].lease_time, Duration::from_secs(120));
    assert!(matches!(&d.reservations[0].key, ReservationKey::ClientId(id) if id.len() == 7));
    assert!(c.tftp.is_none(), "tftp.enabled = false");
    assert!(c.boot_files.is_empty(), "no TFTP here: nothing to check");
    c.check_files().unwrap();
    // The engine answers an ARM64 client with the file's own server.
    let engine = d.engine_config().unwrap();
    let arm = engine.boot.get(BootArch::UefiArm64).unwrap();
    assert_eq!(arm.server, Some(Ipv4Addr::new(10, 9, 0, 3)));
    assert_eq!(engine.boot.get(BootArch::Bios).unwrap().server, None);
    assert_eq!(engine.tftp_server, Ipv4Addr::new(10, 9, 0, 2));

    // With TFTP here, files on another host are not looked for.
    let here = text.replace(
        "[tftp]\nenabled = false\n",
        "[tftp]\nroot = \"/nonexistent-root\"\n",
    );
    let c = config::parse(Path::new("/x/p.toml"), &here).unwrap();
    let names: Vec<&str> = c.boot_files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["pxelinux.0"], "not the ARM64 file, not URLs");
    let e = c.check_files().unwrap_err();
    assert_eq!(e.field, "tftp.root", "{e}");
    // A bad interface name.
    let e = config::parse(Path::new("/x/p.toml"), &text.replace("\"br0\"", "\"a/b\"")).unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (5, "server.interface"), "{e}");
}

/// Binding the DHCP socket to a unicast address would miss broadcasts:
/// allowed (relay-only setups), but warned about; loopback is not.
#[test]
fn unicast_listen_address_is_warned_about() {
    let c = config::parse(
        Path::new("p.toml"),
        &GOOD.replace(
            "server_ip = \"10.9.0.1\"",
            "server_ip = \"10.9.0.1\"\nlisten = \"10.9.0.1\"",
        ),
    )
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("server.listen = 10.9.0.1")),
        "{:?}",
        c.warnings
    );
    let c = config::load(&example_path()).unwrap();
    assert!(!c.warnings.iter().any(|w| w.contains("server.listen")));
}

/// Issue 14: the firmware's PXE boot prompt (option 43 sub-options 9 and
/// 10) is `[pxe_prompt]`; an old `[menu]` table (or only its items) is
/// refused at its line, naming the new key and saying that the preboot
/// client's menu is the policy's, not this one.
#[test]
fn old_menu_table_is_refused_naming_pxe_prompt() {
    let text = GOOD.replace("[pxe_prompt]", "[menu]");
    let e = config::parse(Path::new("/etc/preboot/p.toml"), &text).unwrap_err();
    let line = line_of(&text, "[menu]");
    assert_eq!((e.line, e.field.as_str()), (line, "menu"), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "/etc/preboot/p.toml:{line}:1: menu: [menu] is now [pxe_prompt] (the firmware's PXE boot prompt"
        )),
        "{e}"
    );
    assert!(
        e.message
            .contains("the preboot client's menu is the policy's: transaction.store"),
        "{e}"
    );
    // Only items, under the old name.
    let items = format!("{GOOD}[[menu.item]]\ntype = 0\nlabel = \"local\"\n");
    let e = config::parse(Path::new("p.toml"), &items).unwrap_err();
    assert_eq!(e.field, "menu", "{e}");
    assert!(e.message.starts_with("[menu] is now [pxe_prompt]"), "{e}");
    // The new name is accepted with the same contents.
    config::parse(Path::new("p.toml"), GOOD).unwrap();
}

/// Every key the parser accepts, in every table, is documented in
/// examples/preboot.toml. The parser lists the keys it accepts when it
/// meets an unknown one; this asks each table.
#[test]
fn example_file_documents_every_key() {
    let example = example_text();
    let base = r#"[server]
server_ip = "10.9.0.1"
[ports]
[boot]
bios = "pxelinux.0"
[boot.servers]
[pxe_prompt]
[[pxe_prompt.item]]
type = 0
label = "x"
[dhcp]
rate_limit = { per_second = 1, burst = 1 }
[[dhcp.pool]]
subnet = "10.9.0.0/24"
start = "10.9.0.100"
end = "10.9.0.199"
[[dhcp.reservation]]
mac = "52:54:00:00:00:01"
address = "10.9.0.5"
[tftp]
root = "tftp"
[transaction]
[transaction.keys]
server_private = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
"#;
    config::parse(Path::new("p.toml"), base).unwrap();
    let mut seen = 0;
    for (after, table) in [
        ("", "top level"),
        ("[server]\n", "server"),
        ("[ports]\n", "ports"),
        ("[boot]\n", "boot"),
        ("[boot.servers]\n", "boot.servers"),
        ("[pxe_prompt]\n", "pxe_prompt"),
        ("[[pxe_prompt.item]]\n", "pxe_prompt.item"),
        ("[dhcp]\n", "dhcp"),
        ("burst = 1", "dhcp.rate_limit"),
        ("[[dhcp.pool]]\n", "dhcp.pool"),
        ("[[dhcp.reservation]]\n", "dhcp.reservation"),
        ("[tftp]\n", "tftp"),
        ("[transaction]\n", "transaction"),
        ("[transaction.keys]\n", "transaction.keys"),
    ] {
        let text = if after.is_empty() {
            format!("zzz_unknown = 1\n{base}")
        } else if after == "burst = 1" {
            base.replace(after, "burst = 1, zzz_unknown = 1")
        } else {
            base.replacen(after, &format!("{after}zzz_unknown = 1\n"), 1)
        };
        let e = config::parse(Path::new("p.toml"), &text).unwrap_err();
        let keys: Vec<&str> = e
            .message
            .split("allowed here are")
            .nth(1)
            .unwrap_or_else(|| panic!("{table}: {e}"))
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        assert!(!keys.is_empty(), "{table}: {e}");
        for k in keys {
            let documented = example.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{k} ="))
                    || l.starts_with(&format!("[{k}]"))
                    || l.starts_with(&format!("[[{k}]]"))
                    || l.contains(&format!("[{table}.{k}]"))
                    || l.contains(&format!("[[{table}.{k}]]"))
                    || l.contains(&format!("{{ {k} ="))
                    || l.contains(&format!(", {k} ="))
                    || l.contains(&format!("{k} = \""))
            });
            assert!(documented, "{table}.{k} is not in examples/preboot.toml");
            seen += 1;
        }
    }
    assert!(seen >= 50, "only {seen} keys");
}

/// Proxy mode without the boot server socket could boot nobody: the proxy
/// OFFER names no file, the 4011 ACK does (PXE 2.1 §2.2.1 steps 4-6).
#[test]
fn proxy_mode_without_boot_server_port_is_refused() {
    let text = "[server]\nserver_ip = \"10.9.0.1\"\n[ports]\nboot = 0\n[boot]\nbios = \"pxelinux.0\"\ncheck_files = false\n";
    let e = config::parse(Path::new("/etc/preboot/p.toml"), text).unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (4, "ports.boot"), "{e}");
    assert!(
        e.message.contains("proxy mode needs the boot server"),
        "{e}"
    );
}

/// Issue 11 item 1: a menu whose labels do not fit in the 255 bytes of the
/// PXE boot menu sub-option is refused at load (and so at --check), at the
/// item that crosses the limit, with the byte count.
#[test]
fn a_menu_over_its_pxe_sub_option_is_refused() {
    let mut text = GOOD.to_string();
    for n in 0..8 {
        text.push_str(&format!(
            "[[pxe_prompt.item]]\ntype = {}\nlabel = \"Boot item number {n:02} for lab PC\"\n",
            0x8000 + n
        ));
    }
    let e = config::parse(Path::new("/etc/preboot/p.toml"), &text).unwrap_err();
    assert_eq!(e.field, "pxe_prompt.item", "{e}");
    // The span of the 8th [[pxe_prompt.item]] table starts at its header.
    assert_eq!(e.line, line_of(&text, "number 07") - 2, "{e}");
    assert!(e.message.contains("264 bytes"), "{e}");
    assert!(e.message.contains("at most 255"), "{e}");
    // Seven of them fit (231 bytes).
    let seven: String = text
        .lines()
        .take(text.lines().count() - 3)
        .collect::<Vec<_>>()
        .join("\n");
    config::parse(Path::new("/etc/preboot/p.toml"), &seven).unwrap();
}

/// Issue 11 item 8: `lease_file` naming an existing file that is not a
/// lease log fails `--check` (stage 3) and start, and the file is left as
/// it was; a symbolic link fails too.
#[test]
fn a_lease_file_that_is_not_ours_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("hosts");
    std::fs::write(&victim, "127.0.0.1 localhost\n").unwrap();
    let text = GOOD
        .replace(
            "[dhcp]",
            &format!("[dhcp]\nlease_file = \"{}\"", victim.display()),
        )
        .replace("[tftp]\nroot = \"tftp\"", "[tftp]\nenabled = false");
    let file = dir.path().join("p.toml");
    let c = config::parse(&file, &text).unwrap();
    let e = c.check_files().unwrap_err();
    assert_eq!(e.field, "dhcp.lease_file", "{e}");
    assert_eq!(e.line, line_of(&text, "lease_file"), "{e}");
    assert!(
        e.message.contains("not a lease log") || e.message.contains("first line"),
        "{e}"
    );
    assert!(BootServer::bind(c).is_err());
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "127.0.0.1 localhost\n"
    );
    let link = dir.path().join("leases");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let c = config::parse(
        &file,
        &text.replace(&victim.display().to_string(), &link.display().to_string()),
    )
    .unwrap();
    let e = c.check_files().unwrap_err();
    assert!(e.message.contains("symbolic link"), "{e}");
}

/// Issue 11 item 2: `server.state_dir` must exist (--check), and a second
/// boot server with the same state directory is refused at bind with a
/// message naming the lock and the instance holding it, even on other
/// ports (SO_REUSEPORT would let the same user share ports: they cannot
/// tell).
#[test]
fn a_second_instance_with_the_same_state_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = |d: u16, b: u16, t: u16, state: &str| {
        format!(
            "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\nstate_dir = \"{state}\"\n\
             [ports]\ndhcp = {d}\nboot = {b}\ntftp = {t}\nclient = 6868\n\
             [boot]\nbios = \"pxelinux.0\"\n[tftp]\nroot = \"tftp\"\n"
        )
    };
    std::fs::create_dir_all(dir.path().join("tftp")).unwrap();
    std::fs::write(dir.path().join("tftp/pxelinux.0"), b"pxe").unwrap();
    let file = dir.path().join("preboot.toml");
    let missing = config::parse(&file, &text(0, 4011, 0, "nowhere")).unwrap();
    let e = missing.check_files().unwrap_err();
    assert_eq!(e.field, "server.state_dir", "{e}");
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let one = config::parse(&file, &text(free_port(), free_port(), free_port(), "state")).unwrap();
    let first = BootServer::bind(one).unwrap();
    let two = config::parse(&file, &text(free_port(), free_port(), free_port(), "state")).unwrap();
    let e = BootServer::bind(two).unwrap_err().to_string();
    assert!(e.contains("another preboot instance"), "{e}");
    assert!(e.contains("state/preboot.lock"), "{e}");
    drop(first);
}

/// Every architecture of the table has a `[boot]` key; one configuration
/// holds at most 16 architectures' files (a bounded map in the engine).
#[test]
fn boot_keys_come_from_the_architecture_table() {
    let keys: Vec<&str> = BootArch::ALL.iter().filter_map(|a| a.key()).collect();
    let lines = |n: usize| -> String {
        keys[..n]
            .iter()
            .map(|k| {
                let url = BootArch::from_key(k).unwrap().is_http();
                let file = if url {
                    format!("http://10.9.0.1/{k}")
                } else {
                    format!("{k}.efi")
                };
                format!("{k} = \"{file}\"\n")
            })
            .collect()
    };
    let text = |n| {
        GOOD.replace(
            "bios = \"pxelinux.0\"\nuefi_x64 = \"bootx64.efi\"\n",
            &lines(n),
        )
    };
    let c = config::parse(Path::new("p.toml"), &text(16)).unwrap();
    assert_eq!(c.dhcp.boot_files.files.len(), 16);
    let engine = c.dhcp.engine_config().unwrap();
    for k in &keys[..16] {
        let a = BootArch::from_key(k).unwrap();
        assert!(engine.boot.get(a).unwrap().file.contains(k), "{k}");
    }
    let e = config::parse(Path::new("p.toml"), &text(17)).unwrap_err();
    assert_eq!(e.field, "boot", "{e}");
    assert!(e.message.contains("at most 16"), "{e}");
}
