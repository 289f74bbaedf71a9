//! PXE MTFTP in the boot server (issue 16): the `[mtftp]` table and its
//! checks at start, option 43 sub-options 1–5 for BIOS clients only
//! (notes §2.2 and §2.5: EDK2 discards UEFI offers that carry them), and
//! the real boot server serving a file by multicast to 4 clients started
//! at staggered times, inside a network namespace this test creates
//! (never on the host's interfaces).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use preboot::dhcp::BootArch;
use preboot::dhcp::config::MtftpParams;
use preboot::driver::boot_server::{BootServer, config};
use preboot::wire::dhcp::{DhcpHeader, DhcpOption, DhcpPacket, List, MessageType, OptionData};
use preboot::wire::pxe::{ClientArch, MtftpPort, PxeOption, PxeOptions};

#[path = "support/netns.rs"]
mod netns;
use netns::run_child_in_namespace;

const BASE: &str = r#"[server]
server_ip = "10.9.0.1"
[boot]
bios = "bios/pxelinux.0"
uefi_x64 = "efi64/bootx64.efi"
[tftp]
root = "tftp"
"#;

const MTFTP: &str = r#"[mtftp]
server_port = 1759
listen_secs = 3
delay_secs = 6
timeout_ms = 400
max_retries = 7
window = 8
ttl = 2
[[mtftp.file]]
file = "bios/pxelinux.0"
group = "239.255.1.1"
client_port = 3001
[[mtftp.file]]
file = "images/big.bin"
group = "239.255.1.2"
client_port = 3001
"#;

fn parse(text: &str) -> Result<config::BootServerConfig, config::ConfigError> {
    config::parse(Path::new("/etc/preboot/p.toml"), text)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in text"))
        + 1
}

/// `[mtftp]` parses into the server port, the delays (MTFTP_TMOUT,
/// MTFTP_DELAY), the stream's timers and the files; the BIOS boot file's
/// DHCP entry carries sub-options 1–5, the UEFI one none.
#[test]
fn mtftp_table_parses() {
    let c = parse(&format!("{BASE}{MTFTP}")).unwrap();
    let m = c.mtftp.as_ref().expect("[mtftp]");
    assert_eq!(m.bind, "0.0.0.0:1759".parse().unwrap());
    assert_eq!(m.interface, Ipv4Addr::new(10, 9, 0, 1), "server.server_ip");
    assert_eq!((m.listen_secs, m.delay_secs, m.ttl), (3, 6, 2));
    assert_eq!(m.engine.timeout, Duration::from_millis(400));
    assert_eq!(m.engine.max_retries, 7);
    assert_eq!(m.engine.window, 8);
    assert_eq!(m.root, Path::new("/etc/preboot/tftp"));
    assert_eq!(m.device, None);
    let groups: Vec<_> = m.files.iter().map(|f| (f.name.as_str(), f.group)).collect();
    assert_eq!(
        groups,
        [
            ("bios/pxelinux.0", "239.255.1.1:3001".parse().unwrap()),
            ("images/big.bin", "239.255.1.2:3001".parse().unwrap())
        ]
    );
    let want = MtftpParams {
        ip: Ipv4Addr::new(239, 255, 1, 1),
        client_port: 3001,
        server_port: 1759,
        timeout_secs: 3,
        delay_secs: 6,
    };
    assert_eq!(c.dhcp.mtftp.get("bios/pxelinux.0"), Some(&want));
    let engine = c.dhcp.engine_config().unwrap();
    assert_eq!(engine.boot.get(BootArch::Bios).unwrap().mtftp, Some(want));
    assert_eq!(engine.boot.get(BootArch::UefiX64).unwrap().mtftp, None);
    // Defaults.
    let c = parse(&format!(
        "{BASE}[mtftp]\n[[mtftp.file]]\nfile = \"x\"\ngroup = \"239.1.1.1\"\nclient_port = 3001\n"
    ))
    .unwrap();
    let m = c.mtftp.unwrap();
    assert_eq!(m.device, None);
    assert_eq!(
        (m.bind.port(), m.listen_secs, m.delay_secs, m.ttl),
        (1759, 2, 5, 1)
    );
    // server.interface binds the request socket to the device too;
    // server.listen is the multicast interface.
    let c = parse(&format!(
        "{}{MTFTP}",
        BASE.replace(
            "server_ip = \"10.9.0.1\"",
            "server_ip = \"10.9.0.1\"\ninterface = \"br0\"\nlisten = \"10.9.0.1\""
        )
    ))
    .unwrap();
    let m = c.mtftp.unwrap();
    assert_eq!(m.device.as_deref(), Some("br0"));
    assert_eq!(m.bind, "10.9.0.1:1759".parse().unwrap());
    assert_eq!(m.interface, Ipv4Addr::new(10, 9, 0, 1));
    // No table, or disabled: no MTFTP, nothing advertised.
    assert!(parse(BASE).unwrap().mtftp.is_none());
    let c = parse(&format!(
        "{BASE}{}",
        MTFTP.replace("[mtftp]\n", "[mtftp]\nenabled = false\n")
    ))
    .unwrap();
    assert!(c.mtftp.is_none() && c.dhcp.mtftp.is_empty());
}

/// Every bad `[mtftp]` names the key, the line and why.
#[test]
fn bad_mtftp_tables_name_the_key() {
    // (replace this, with this, the line's text, field, words)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "group = \"239.255.1.1\"",
            "group = \"10.0.0.1\"",
            "group = \"10.0.0.1\"",
            "mtftp.file.group",
            "not a multicast address",
        ),
        (
            "group = \"239.255.1.1\"",
            "group = \"239.255.1\"",
            "group = \"239.255.1\"",
            "mtftp.file.group",
            "IPv4",
        ),
        (
            "server_port = 1759",
            "server_port = 0",
            "server_port = 0",
            "mtftp.server_port",
            "1-65535",
        ),
        (
            "server_port = 1759",
            "server_port = 69",
            "server_port = 69",
            "mtftp.server_port",
            "used by both ports.tftp and mtftp.server_port",
        ),
        (
            "server_port = 1759",
            "server_port = 4011",
            "server_port = 4011",
            "mtftp.server_port",
            "ports.boot",
        ),
        (
            "client_port = 3001\n[[mtftp.file]]",
            "client_port = 0\n[[mtftp.file]]",
            "client_port = 0",
            "mtftp.file.client_port",
            "1-65535",
        ),
        (
            "client_port = 3001\n[[mtftp.file]]",
            "client_port = 1759\n[[mtftp.file]]",
            "client_port = 1759",
            "mtftp.file.client_port",
            "mtftp.server_port",
        ),
        (
            "client_port = 3001\n[[mtftp.file]]",
            "client_port = 68\n[[mtftp.file]]",
            "client_port = 68",
            "mtftp.file.client_port",
            "ports.client",
        ),
        (
            "group = \"239.255.1.2\"",
            "group = \"239.255.1.1\"",
            "file = \"images/big.bin\"",
            "mtftp.file",
            "239.255.1.1:3001 already serves bios/pxelinux.0",
        ),
        (
            "file = \"images/big.bin\"",
            "file = \"bios/pxelinux.0\"",
            "group = \"239.255.1.2\"",
            "mtftp.file.file",
            "already served on 239.255.1.1:3001",
        ),
        (
            "file = \"images/big.bin\"",
            "file = \"../etc/shadow\"",
            "file = \"../etc/shadow\"",
            "mtftp.file.file",
            "not a file name",
        ),
        (
            "listen_secs = 3",
            "listen_secs = 256",
            "listen_secs = 256",
            "mtftp.listen_secs",
            "1-255",
        ),
        (
            "delay_secs = 6",
            "delay_secs = 0",
            "delay_secs = 0",
            "mtftp.delay_secs",
            "1-255",
        ),
        (
            "window = 8",
            "window = 65",
            "window = 65",
            "mtftp.window",
            "1-64",
        ),
        (
            "ttl = 2",
            "ttl = 2\ncolour = 1",
            "colour = 1",
            "mtftp.colour",
            "unknown key",
        ),
    ];
    for (from, to, line_text, field, words) in cases {
        let mtftp = MTFTP.replacen(from, to, 1);
        assert_ne!(mtftp, MTFTP, "{from} not in the table");
        let text = format!("{BASE}{mtftp}");
        let e = parse(&text).expect_err(to);
        let mut line = line_of(&text, line_text);
        if *field == "mtftp.file" || (*field == "mtftp.file.file" && line_text.contains("group")) {
            // The entry's own line or the file key above the group.
            line = e.line;
            assert!((line_of(&text, "[[mtftp.file]]")..=line_of(&text, line_text)).contains(&line));
        }
        assert_eq!((e.line, e.field.as_str()), (line, *field), "{to}: {e}");
        assert!(e.message.contains(words), "{to}: {e}");
        assert!(e.to_string().starts_with("/etc/preboot/p.toml:"), "{e}");
    }
    // MTFTP serves files under tftp.root: none without TFTP.
    let text = format!(
        "{}{MTFTP}",
        BASE.replace("root = \"tftp\"", "enabled = false")
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field, "mtftp", "{e}");
    assert!(e.message.contains("tftp.root"), "{e}");
}

/// `<dir>/tftp` holding the files the MTFTP table names (4 bytes each).
fn tftp_root(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("tftp");
    for f in ["bios/pxelinux.0", "efi64/bootx64.efi", "images/big.bin"] {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"boot").unwrap();
    }
    root
}

/// Stage 3: a missing file, a directory, and a file over 65,535 blocks
/// (PXE MTFTP has no block-number rollover) are refused at start, naming
/// the entry's line; a file of exactly the maximum passes.
#[test]
fn mtftp_files_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = tftp_root(dir.path());
    let text = format!("{BASE}{MTFTP}");
    let c = config::parse(&dir.path().join("p.toml"), &text).unwrap();
    c.check_files().unwrap();
    let big = std::fs::File::options()
        .write(true)
        .open(root.join("images/big.bin"))
        .unwrap();
    big.set_len(preboot::mtftp::MAX_FILE_SIZE).unwrap();
    c.check_files().unwrap();
    big.set_len(preboot::mtftp::MAX_FILE_SIZE + 1).unwrap();
    let e = c.check_files().unwrap_err();
    let entry = line_of(&text, "file = \"images/big.bin\"") - 1;
    assert_eq!(
        (e.field.as_str(), e.line),
        ("mtftp.file.file", entry),
        "{e}"
    );
    assert!(e.message.contains("too large for MTFTP"), "{e}");
    std::fs::remove_file(root.join("images/big.bin")).unwrap();
    let e = c.check_files().unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.line),
        ("mtftp.file.file", entry),
        "{e}"
    );
    assert!(e.message.contains("images/big.bin"), "{e}");
    std::fs::create_dir(root.join("images/big.bin")).unwrap();
    let e = c.check_files().unwrap_err();
    assert!(e.message.contains("not a regular file"), "{e}");
}

/// A firmware message of architecture `code`.
fn message(kind: MessageType, code: u16) -> Vec<u8> {
    let vc = format!("PXEClient:Arch:{code:05}:UNDI:002001");
    let hdr = DhcpHeader {
        op: 1,
        htype: 1,
        hlen: 6,
        xid: 0x6d74_0000 | u32::from(code),
        chaddr: [
            0x52, 0x54, 0, 0x12, 0x35, code as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        ..DhcpHeader::default()
    };
    let mut buf = [0u8; 576];
    let n = hdr
        .emit(
            &[
                DhcpOption::MessageType(kind),
                DhcpOption::VendorClassIdentifier(OptionData::new(vc.as_bytes())),
                DhcpOption::ClientSystemArchitecture(List::Items(&[ClientArch::from(code)])),
            ],
            &mut buf,
        )
        .unwrap();
    buf[..n].to_vec()
}

/// Option 43 sub-options 1–5 of a DHCP answer: the typed values and the
/// raw bytes of sub-options 2 and 3.
#[derive(Debug, Default, PartialEq, Eq)]
struct Sub {
    ip: Option<Ipv4Addr>,
    cport: Option<u16>,
    sport: Option<u16>,
    tmout: Option<u8>,
    delay: Option<u8>,
    raw_ports: Vec<[u8; 2]>,
}

fn mtftp_suboptions(answer: &[u8]) -> Sub {
    use preboot::wire::dhcp::code;
    let p = DhcpPacket::new_checked(answer).unwrap();
    let mut s = Sub::default();
    let Some(o43) = p.option(code::VENDOR_SPECIFIC) else {
        return s;
    };
    for o in PxeOptions::new(o43) {
        match o {
            PxeOption::MtftpIp(a) => s.ip = Some(a),
            PxeOption::MtftpClientPort(MtftpPort(x)) => s.cport = Some(x),
            PxeOption::MtftpServerPort(MtftpPort(x)) => s.sport = Some(x),
            PxeOption::MtftpTimeout(x) => s.tmout = Some(x),
            PxeOption::MtftpDelay(x) => s.delay = Some(x),
            _ => {}
        }
    }
    // The raw bytes: tags 2 and 3 with length 2 (notes §2.2: Intel order).
    let mut raw = [0u8; 312];
    let n = o43.copy_to(&mut raw).unwrap();
    let mut i = 0;
    while i + 1 < n {
        let (tag, len) = (raw[i], raw[i + 1] as usize);
        if tag == 0 {
            i += 1;
            continue;
        }
        if tag == 255 {
            break;
        }
        if (tag == 2 || tag == 3) && len == 2 && i + 4 <= n {
            s.raw_ports.push([raw[i + 2], raw[i + 3]]);
        }
        i += 2 + len;
    }
    s
}

/// Notes §2.2 and §2.5 (EDK2 `PxeBcParseDhcp4Packet` discards UEFI offers
/// with MTFTP tags): the boot server's proxy OFFER and its 4011 ACK to a
/// BIOS client (arch 0) carry sub-options 1–5 for a boot file under
/// `[[mtftp.file]]`, the ports little-endian (3001 = b9 0b, 1759 = df 06);
/// to a UEFI x64 client (arch 7) neither answer carries any of them.
#[test]
fn option_43_mtftp_only_for_bios() {
    let dir = tempfile::tempdir().unwrap();
    tftp_root(dir.path());
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let cport = client.local_addr().unwrap().port();
    let free = || {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (boot, sport) = (free(), free());
    let text = format!(
        "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\n\
         [ports]\ndhcp = 0\nboot = {boot}\ntftp = 0\nclient = {cport}\n\
         [boot]\nbios = \"bios/pxelinux.0\"\nuefi_x64 = \"efi64/bootx64.efi\"\n[tftp]\nroot = \"tftp\"\n{}",
        MTFTP.replace("server_port = 1759", &format!("server_port = {sport}"))
    );
    let c = config::parse(&dir.path().join("p.toml"), &text).unwrap();
    let server = BootServer::bind(c).unwrap();
    assert_eq!(
        server.mtftp_addr(),
        Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, sport))
    );
    assert!(
        server
            .describe()
            .iter()
            .any(|l| l.contains("239.255.1.1:3001"))
    );
    let dhcp = server.dhcp_addr();
    let boot_addr = server.boot_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || server.run(&flag).unwrap());
    let ask = |to: SocketAddr, msg: Vec<u8>| {
        client.send_to(&msg, to).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = client.recv_from(&mut buf).expect("an answer within 5 s");
        buf[..n].to_vec()
    };
    let [lo, hi] = sport.to_le_bytes();
    let bios = Sub {
        ip: Some(Ipv4Addr::new(239, 255, 1, 1)),
        cport: Some(3001),
        sport: Some(sport),
        tmout: Some(3),
        delay: Some(6),
        raw_ports: vec![[0xb9, 0x0b], [lo, hi]],
    };
    let offer = ask(dhcp, message(MessageType::Discover, 0));
    let ack = ask(boot_addr, message(MessageType::Request, 0));
    let uefi_offer = ask(dhcp, message(MessageType::Discover, 7));
    let uefi_ack = ask(boot_addr, message(MessageType::Request, 7));
    // The MTFTP port serves only [[mtftp.file]]: ERROR 1 for another file
    // (unicast to the requester; nothing goes to a group).
    let rrq = b"\x00\x01efi64/bootx64.efi\x00octet\x00";
    let refused = ask(SocketAddr::from((Ipv4Addr::LOCALHOST, sport)), rrq.to_vec());
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert_eq!(mtftp_suboptions(&offer), bios, "BIOS proxy OFFER");
    assert_eq!(mtftp_suboptions(&ack), bios, "BIOS 4011 ACK");
    assert_eq!(mtftp_suboptions(&uefi_offer), Sub::default(), "UEFI OFFER");
    assert_eq!(mtftp_suboptions(&uefi_ack), Sub::default(), "UEFI ACK");
    let p = DhcpPacket::new_checked(&uefi_ack[..]).unwrap();
    assert_eq!(p.file(), b"efi64/bootx64.efi", "UEFI still boots its file");
    assert_eq!(&refused[..4], b"\x00\x05\x00\x01", "ERROR 1: {refused:?}");
}

// ---- end to end in a network namespace ----

const CHILD_ENV: &str = "PREBOOT_BOOT_SERVER_MTFTP_CHILD";

/// The real boot server (`BootServer` with `[mtftp]`, in process) serves
/// a 1 MiB file by multicast to 4 `driver::mtftp::fetch` clients started
/// at staggered times, each on its own address, inside a namespace this
/// test creates; each client's sha256 equals the file's (PXE 2.1 MTFTP,
/// notes §2.5 items 1–6). Needs root and `ip`; without them it says so
/// and passes, unless `PREBOOT_CI=1`.
#[test]
fn boot_server_mtftp_four_clients_in_a_namespace() {
    run_child_in_namespace(
        "pbbsmt",
        "boot_server_mtftp_netns_child",
        &[(CHILD_ENV, "1".as_ref())],
        "BOOT SERVER MTFTP OK",
    );
}

#[test]
fn boot_server_mtftp_netns_child() {
    use preboot::driver::mtftp::{FetchOutcome, fetch};
    use preboot::fs::VecSink;
    use preboot::mtftp::Channel;
    use preboot::mtftp::client::ClientConfig;
    use sha2::{Digest, Sha256};
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("preboot=info")
        .try_init();
    let data: Vec<u8> = (0..(1u32 << 20) + 77)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let want = Sha256::digest(&data);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tftp");
    std::fs::create_dir_all(root.join("bios")).unwrap();
    std::fs::write(root.join("bios/pxelinux.0"), &data).unwrap();
    let text = "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\n\
         [ports]\ndhcp = 0\nboot = 4011\ntftp = 69\nclient = 6868\n\
         [boot]\nbios = \"bios/pxelinux.0\"\n[tftp]\nroot = \"tftp\"\nloops = 1\n\
         [mtftp]\nserver_port = 1759\nlisten_secs = 1\ndelay_secs = 1\ntimeout_ms = 200\n\
         [[mtftp.file]]\nfile = \"bios/pxelinux.0\"\ngroup = \"239.255.1.1\"\nclient_port = 3001\n";
    let c = config::parse(&dir.path().join("p.toml"), text).unwrap();
    // The clients use what the boot server advertises (option 43).
    let params = *c.dhcp.mtftp.get("bios/pxelinux.0").unwrap();
    let channel = Channel::from_params(c.dhcp.server_id, &params);
    let server = BootServer::bind(c).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || server.run(&flag).unwrap());
    let config = ClientConfig {
        timeout: Duration::from_millis(200),
        ..ClientConfig::new(channel)
    };
    // Two together, one in the listen time, one later (mid-stream or
    // after it, depending on the machine's speed).
    let starts_ms = [0u64, 0, 400, 1_500];
    let clients: Vec<_> = starts_ms
        .iter()
        .enumerate()
        .map(|(i, &ms)| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                let sink = VecSink {
                    limit: Some(8 << 20),
                    ..VecSink::default()
                };
                fetch(
                    channel,
                    Ipv4Addr::new(127, 0, 0, 20 + i as u8),
                    b"bios/pxelinux.0",
                    config,
                    sink,
                    Duration::from_secs(60),
                )
            })
        })
        .collect();
    let mut failures = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        match c.join().unwrap() {
            Ok((outcome @ FetchOutcome::Completed { .. }, sink)) => {
                eprintln!("client {i}: {outcome:?}");
                if Sha256::digest(&sink.data) != want {
                    failures.push(format!("client {i}: sha256 differs"));
                }
            }
            Ok((outcome, _)) => failures.push(format!("client {i}: {outcome:?}")),
            Err(e) => failures.push(format!("client {i}: {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    eprintln!(
        "BOOT SERVER MTFTP OK: {} clients, {} B file",
        starts_ms.len(),
        data.len()
    );
}

/// A commented-out key or table line of the example, uncommented.
fn key(l: &str) -> Option<&str> {
    l.strip_prefix("# ").filter(|r| {
        r.starts_with('[') || r.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '))
    })
}

/// `examples/preboot.toml` documents `[mtftp]` commented out (the server
/// is unicast unless asked); uncommented, it parses into the defaults it
/// states.
#[test]
fn example_mtftp_block_parses_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/preboot.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(config::parse(&path, &text).unwrap().mtftp.is_none());
    let mut inside = false;
    let uncommented: Vec<String> = text
        .lines()
        .map(|l| {
            if l == "# [mtftp]" {
                inside = true;
            }
            let out = match key(l) {
                Some(r) if inside => r.to_string(),
                _ => l.to_string(),
            };
            if l == "# client_port = 3001" {
                inside = false;
            }
            out
        })
        .collect();
    let c = config::parse(&path, &uncommented.join("\n")).unwrap();
    let m = c.mtftp.expect("[mtftp] uncommented");
    assert_eq!(
        (m.bind.port(), m.listen_secs, m.delay_secs, m.ttl),
        (1759, 2, 5, 1)
    );
    assert_eq!(m.engine.timeout, Duration::from_millis(1000));
    assert_eq!(m.engine.max_retries, 5);
    assert_eq!(m.engine.window, 1, "PXE lock-step unless asked");
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].group, "239.255.1.1:3001".parse().unwrap());
    assert!(c.dhcp.mtftp.contains_key("bios/pxelinux.0"));
}

// ---- tshark as an independent decoder of the configured answers ----

#[path = "dhcp_support/mod.rs"]
mod dhcp_support;

/// Ethernet + IPv4 + UDP around a payload (UDP checksum 0 = none).
fn frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 0xfe]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&4u16.to_le_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&65535u32.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        p.extend_from_slice(&(i as u32).to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&(f.len() as u32).to_le_bytes());
        p.extend_from_slice(&(f.len() as u32).to_le_bytes());
        p.extend_from_slice(f);
    }
    p
}

/// Notes §2.2: the answers a `[mtftp]` configuration produces, to the real
/// iPXE BIOS and OVMF UEFI requests (proxy OFFER on 67, boot server ACK on
/// 4011), decoded by tshark: the BIOS ones carry sub-options 1–5 as
/// configured (Wireshark reads the ports little-endian, as Intel's
/// reference code sends them), the UEFI ones none, and nothing is
/// malformed.
#[test]
#[cfg_attr(preboot_skip_tshark, ignore = "needs tshark (Debian package tshark)")]
fn tshark_decodes_configured_mtftp_suboptions() {
    use preboot::engine::Datagram;
    assert!(
        Command::new("tshark").arg("--version").output().is_ok(),
        "tshark not installed (apt-get install tshark)"
    );
    let server = Ipv4Addr::new(192, 168, 77, 1);
    let text = format!(
        "{}{MTFTP}",
        BASE.replace("10.9.0.1", "192.168.77.1")
            .replace("efi64/bootx64.efi", "grubnetx64.efi")
    );
    let c = parse(&text).unwrap();
    let mut engine = preboot::dhcp::Server::new(c.dhcp.engine_config().unwrap()).unwrap();
    let dhcp = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67);
    let boot = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4011);
    let c68 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
    let t = preboot::Instant::from_secs(10);
    let mut frames = Vec::new();
    let mut buf = [0u8; 1500];
    for (local, from, name) in [
        (dhcp, c68, "ipxe-bios-discover"),
        (dhcp, c68, "ovmf-uefi-discover"),
        (
            boot,
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68),
            "ipxe-bios-request-4011",
        ),
        (
            boot,
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 145), 4011),
            "ovmf-uefi-request-4011",
        ),
    ] {
        let req = dhcp_support::vector(name);
        engine.handle(
            t,
            Datagram {
                local,
                remote: from,
                payload: &req,
            },
        );
        let tx = engine
            .poll_transmit(t, &mut buf)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: no answer"));
        let src = SocketAddrV4::new(server, if local == boot { 4011 } else { 67 });
        frames.push(frame(src, tx.remote, &buf[..tx.len]));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mtftp.pcap");
    std::fs::write(&path, pcap(&frames)).unwrap();
    let v = Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-d",
            "udp.port==4011,dhcp",
            "-V",
        ])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(!text.contains("Malformed"), "{text}");
    assert!(!text.contains("Severity level: Error"), "{text}");
    // One block of text per frame.
    let per_frame: Vec<&str> = text.split("\nFrame ").collect();
    assert_eq!(per_frame.len(), 4, "{text}");
    for (i, f) in per_frame.iter().enumerate() {
        let bios = i % 2 == 0;
        for needle in [
            "(1) PXE mtftp IP",
            "239.255.1.1",
            "mtftp client port: 3001",
            "mtftp server port: 1759",
            "(4) PXE mtftp timeout",
            "(5) PXE mtftp delay",
        ] {
            assert_eq!(f.contains(needle), bios, "frame {i}: {needle}:\n{f}");
        }
        assert_eq!(f.to_lowercase().contains("mtftp"), bios, "frame {i}:\n{f}");
    }
}
