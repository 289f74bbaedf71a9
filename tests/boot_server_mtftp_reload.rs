//! `[mtftp]` reloaded on a running boot server (issue 16; `SIGHUP` in
//! `preboot-server`, `driver::boot_server::reload`): the real
//! `BootServer`, in process, inside a network namespace this test creates
//! (multicast never on the host's interfaces), with clients that fetch
//! by PXE MTFTP (`driver::mtftp::fetch`) and ask DHCP (proxy OFFER on 67,
//! 4011 ACK) what it advertises (option 43 sub-options 1–5, PXE 2.1
//! MTFTP; notes §2.2 and §2.5):
//!
//! - streams in flight when their file is removed from the table, or
//!   moved to another group and client port, run to their end on their
//!   old channel: the file complete, sha256 equal, while the moved file
//!   is served on its new channel at the same time;
//! - a file added by the reload is served at once (sha256 equal), a
//!   removed one is refused with ERROR 1 on a new request, and the
//!   OFFER and 4011 ACK that follow carry the new channel, or no
//!   sub-options at all for a boot file no longer in the table;
//! - a bad new `[mtftp]` (a group that is not multicast, a file that is
//!   not there, a server port that cannot be bound) is refused with its
//!   `file:line` or port, and the table in force keeps serving;
//! - a new server port (SPORT) is bound and served.
//!
//! Needs root and `ip`; without them it says so and passes, unless
//! `PREBOOT_CI=1`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use preboot::driver::boot_server::{BootServer, ReloadError, config};
use preboot::driver::mtftp::{FetchOutcome, fetch};
use preboot::fs::{FsError, VecSink, WriteAt};
use preboot::mtftp::Channel;
use preboot::wire::dhcp::{DhcpHeader, DhcpOption, DhcpPacket, List, MessageType, OptionData};
use preboot::wire::pxe::{ClientArch, MtftpPort, PxeOption, PxeOptions};
use sha2::{Digest, Sha256};

#[path = "support/mtftp_fetch.rs"]
mod mtftp_fetch;
use mtftp_fetch::{fetch_loopback, loopback_config};
#[path = "support/netns.rs"]
mod netns;
use netns::run_child_in_namespace;

const CHILD_ENV: &str = "PREBOOT_BOOT_SERVER_MTFTP_RELOAD_CHILD";

/// The port DHCP answers go to (`ports.client`).
const CLIENT_PORT: u16 = 6868;

/// The configuration: proxy mode on 127.0.0.1 inside the namespace, no
/// transaction server (the MTFTP reload needs none), and `mtftp`.
fn config_text(mtftp: &str) -> String {
    format!(
        "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\n\
         [ports]\ndhcp = 67\nboot = 4011\ntftp = 69\nclient = {CLIENT_PORT}\n\
         [boot]\nbios = \"bios/pxelinux.0\"\n[tftp]\nroot = \"tftp\"\nloops = 1\n{mtftp}"
    )
}

/// `[mtftp]` with these (file, group, client port) entries.
fn mtftp(sport: u16, delay: u8, files: &[(&str, &str, u16)]) -> String {
    let mut t = format!(
        "[mtftp]\nserver_port = {sport}\nlisten_secs = 1\ndelay_secs = {delay}\ntimeout_ms = 300\nmax_retries = 10\n"
    );
    for (f, g, p) in files {
        t.push_str(&format!(
            "[[mtftp.file]]\nfile = \"{f}\"\ngroup = \"{g}\"\nclient_port = {p}\n"
        ));
    }
    t
}

/// Bytes of a file (a different pattern per `seed`).
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// A BIOS (arch 0) firmware message.
fn message(kind: MessageType) -> Vec<u8> {
    let vc = "PXEClient:Arch:00000:UNDI:002001";
    let hdr = DhcpHeader {
        op: 1,
        htype: 1,
        hlen: 6,
        xid: 0x6d74_7200,
        chaddr: [
            0x52, 0x54, 0, 0x12, 0x35, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        ..DhcpHeader::default()
    };
    let mut buf = [0u8; 576];
    let n = hdr
        .emit(
            &[
                DhcpOption::MessageType(kind),
                DhcpOption::VendorClassIdentifier(OptionData::new(vc.as_bytes())),
                DhcpOption::ClientSystemArchitecture(List::Items(&[ClientArch::from(0)])),
            ],
            &mut buf,
        )
        .unwrap();
    buf[..n].to_vec()
}

/// Option 43 sub-options 1–5 of a DHCP answer: (group, CPORT, SPORT,
/// TMOUT, DELAY), each `None` when absent.
type Sub = (
    Option<Ipv4Addr>,
    Option<u16>,
    Option<u16>,
    Option<u8>,
    Option<u8>,
);

fn mtftp_suboptions(answer: &[u8]) -> Sub {
    use preboot::wire::dhcp::code;
    let p = DhcpPacket::new_checked(answer).unwrap();
    let mut s: Sub = Default::default();
    let Some(o43) = p.option(code::VENDOR_SPECIFIC) else {
        return s;
    };
    for o in PxeOptions::new(o43) {
        match o {
            PxeOption::MtftpIp(a) => s.0 = Some(a),
            PxeOption::MtftpClientPort(MtftpPort(x)) => s.1 = Some(x),
            PxeOption::MtftpServerPort(MtftpPort(x)) => s.2 = Some(x),
            PxeOption::MtftpTimeout(x) => s.3 = Some(x),
            PxeOption::MtftpDelay(x) => s.4 = Some(x),
            _ => {}
        }
    }
    s
}

/// What the boot server advertises to a BIOS client now: sub-options
/// 1–5 of the proxy OFFER and of the 4011 ACK.
fn advertised(client: &UdpSocket) -> (Sub, Sub) {
    let ask = |to: u16, kind| {
        client
            .send_to(&message(kind), (Ipv4Addr::LOCALHOST, to))
            .unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = client
            .recv_from(&mut buf)
            .expect("a DHCP answer within 5 s");
        mtftp_suboptions(&buf[..n])
    };
    (
        ask(67, MessageType::Discover),
        ask(4011, MessageType::Request),
    )
}

/// The first answer of the MTFTP server to a plain RRQ for `file` on
/// `sport`.
fn first_answer(sport: u16, file: &str) -> Vec<u8> {
    let s = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 99), 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let rrq = [&b"\x00\x01"[..], file.as_bytes(), b"\x00octet\x00"].concat();
    s.send_to(&rrq, (Ipv4Addr::LOCALHOST, sport)).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf).expect("an answer within 3 s");
    buf[..n].to_vec()
}

/// A sink that takes its time (so the master's ACKs, and the stream,
/// are paced) and counts the blocks it got.
#[derive(Debug)]
struct SlowSink {
    inner: VecSink,
    pause: Duration,
    blocks: Arc<AtomicUsize>,
}

impl WriteAt for SlowSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        std::thread::sleep(self.pause);
        self.blocks.fetch_add(1, Ordering::Relaxed);
        self.inner.write_at(offset, data)
    }
    fn finish(&mut self) -> Result<(), FsError> {
        self.inner.finish()
    }
}

/// A paced fetch of `file` on `ch` from 127.0.0.`host` (its own thread);
/// the blocks it got so far.
type Paced =
    std::thread::JoinHandle<Result<(FetchOutcome, SlowSink), preboot::driver::mtftp::FetchError>>;

fn paced(ch: Channel, host: u8, file: &'static str) -> (Paced, Arc<AtomicUsize>) {
    let blocks = Arc::new(AtomicUsize::new(0));
    let counted = blocks.clone();
    let thread = std::thread::spawn(move || {
        let sink = SlowSink {
            inner: VecSink {
                limit: Some(8 << 20),
                ..VecSink::default()
            },
            pause: Duration::from_millis(5),
            blocks: counted,
        };
        let config = loopback_config(ch);
        fetch(
            ch,
            Ipv4Addr::new(127, 0, 0, host),
            file.as_bytes(),
            config,
            sink,
            Duration::from_secs(60),
        )
    });
    (thread, blocks)
}

fn channel(group: &str, sport: u16, delay: u64) -> Channel {
    Channel {
        group: group.parse().unwrap(),
        server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, sport),
        listen: Duration::from_secs(1),
        delay: Duration::from_secs(delay),
    }
}

/// A plain RRQ for `images/new.bin` from 127.0.0.`host` to `port` on
/// loopback; the first datagram back within `wait` (an error: none, or an
/// ICMP port unreachable).
fn ask_for_new_bin(host: u8, port: u16, wait: Duration) -> std::io::Result<(usize, SocketAddr)> {
    let s = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, host), 0))?;
    s.set_read_timeout(Some(wait))?;
    s.send_to(
        b"\x00\x01images/new.bin\x00octet\x00",
        (Ipv4Addr::LOCALHOST, port),
    )?;
    let mut buf = [0u8; 600];
    s.recv_from(&mut buf)
}

/// Fetch `file` by MTFTP on `ch` from client address 127.0.0.`host`;
/// its sha256.
fn fetch_sha(ch: Channel, host: u8, file: &str) -> Result<Vec<u8>, String> {
    match fetch_loopback(ch, host, file) {
        Ok((FetchOutcome::Completed { .. }, data)) => Ok(Sha256::digest(&data).to_vec()),
        Ok((outcome, _)) => Err(format!("{file}: {outcome:?}")),
        Err(e) => Err(format!("{file}: {e}")),
    }
}

/// PXE 2.1 MTFTP (notes §2.5) across reloads of `[mtftp]`; see the
/// module docs. Runs the child in a namespace it creates.
#[test]
fn mtftp_reload_in_a_namespace() {
    run_child_in_namespace(
        "pbmtrl",
        "mtftp_reload_netns_child",
        &[(CHILD_ENV, "1".as_ref())],
        "MTFTP RELOAD OK",
    );
}

#[test]
fn mtftp_reload_netns_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("preboot=info")
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tftp");
    std::fs::create_dir_all(root.join("bios")).unwrap();
    std::fs::create_dir_all(root.join("images")).unwrap();
    let boot = pattern(300_000, 1);
    let big = pattern(600_000, 2);
    let new = pattern(200_003, 3);
    std::fs::write(root.join("bios/pxelinux.0"), &boot).unwrap();
    std::fs::write(root.join("images/big.bin"), &big).unwrap();
    std::fs::write(root.join("images/new.bin"), &new).unwrap();
    let sha = |d: &[u8]| Sha256::digest(d).to_vec();
    let path = dir.path().join("p.toml");
    let write = |text: &str| std::fs::write(&path, text).unwrap();

    // v1: the boot file and big.bin.
    write(&config_text(&mtftp(
        1759,
        1,
        &[
            ("bios/pxelinux.0", "239.255.1.1", 3001),
            ("images/big.bin", "239.255.1.2", 3002),
        ],
    )));
    let c = config::load(&path).unwrap();
    c.check_files().unwrap();
    let server = BootServer::bind(c).unwrap();
    let reloader = server.reloader().expect("a reloader without [transaction]");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || server.run(&flag).unwrap());
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, CLIENT_PORT)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let v1 = (
        Some(Ipv4Addr::new(239, 255, 1, 1)),
        Some(3001),
        Some(1759),
        Some(1),
        Some(1),
    );
    assert_eq!(advertised(&client), (v1, v1), "v1 advertised");

    // Paced streams of big.bin and of the boot file (each fetching
    // client is its stream's master).
    let (slow_big, big_blocks) = paced(channel("239.255.1.2:3002", 1759, 1), 10, "images/big.bin");
    let (slow_boot, boot_blocks) =
        paced(channel("239.255.1.1:3001", 1759, 1), 9, "bios/pxelinux.0");
    for _ in 0..200 {
        if big_blocks.load(Ordering::Relaxed) >= 50 && boot_blocks.load(Ordering::Relaxed) >= 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = big_blocks.load(Ordering::Relaxed);
    let before_boot = boot_blocks.load(Ordering::Relaxed);
    assert!(
        before >= 50 && before_boot >= 50,
        "the streams run ({before} and {before_boot} blocks)"
    );

    // v2 while it runs: big.bin removed, the boot file on a new channel,
    // new.bin added, a longer delay.
    write(&config_text(&mtftp(
        1759,
        2,
        &[
            ("bios/pxelinux.0", "239.255.1.3", 3003),
            ("images/new.bin", "239.255.1.4", 3004),
        ],
    )));
    let r = reloader.reload().expect("v2 reloads");
    let at_reload = boot_blocks.load(Ordering::Relaxed);
    assert_eq!(r.mtftp_applied, Some(true), "{r:?}");
    assert!(r.restart_needed.is_empty(), "{r:?}");
    assert!(
        big_blocks.load(Ordering::Relaxed) < big.len() / 512
            && boot_blocks.load(Ordering::Relaxed) < boot.len() / 512,
        "the reload came while both streams were in flight"
    );
    let v2 = (
        Some(Ipv4Addr::new(239, 255, 1, 3)),
        Some(3003),
        Some(1759),
        Some(1),
        Some(2),
    );
    assert_eq!(advertised(&client), (v2, v2), "v2 advertised at once");
    assert_eq!(
        fetch_sha(channel("239.255.1.3:3003", 1759, 2), 12, "bios/pxelinux.0"),
        Ok(sha(&boot)),
        "the boot file on its new channel, while its old stream runs"
    );
    assert!(
        !slow_boot.is_finished(),
        "the old stream of the boot file was still running ({at_reload} blocks at the reload, {} now)",
        boot_blocks.load(Ordering::Relaxed)
    );
    assert_eq!(
        fetch_sha(channel("239.255.1.4:3004", 1759, 2), 11, "images/new.bin"),
        Ok(sha(&new)),
        "a file added by the reload"
    );
    assert_eq!(
        &first_answer(1759, "images/big.bin")[..4],
        b"\x00\x05\x00\x01",
        "a new request for the removed file: ERROR 1"
    );
    // Both streams in flight ran to their end on their old channels:
    // the removed file's and the moved file's.
    for (slow, want, what) in [
        (slow_big, &big, "big.bin (removed)"),
        (slow_boot, &boot, "the boot file (moved)"),
    ] {
        match slow.join().unwrap() {
            Ok((FetchOutcome::Completed { master, .. }, sink)) => {
                assert!(master, "{what}: the paced client was the master");
                assert_eq!(sha(&sink.inner.data), sha(want), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }

    // v3: the boot file removed: no sub-options 1-5 in new answers, and
    // ERROR 1 to a new request for it.
    write(&config_text(&mtftp(
        1759,
        2,
        &[("images/new.bin", "239.255.1.4", 3004)],
    )));
    assert_eq!(reloader.reload().unwrap().mtftp_applied, Some(true));
    assert_eq!(
        advertised(&client),
        Default::default(),
        "no sub-options 1-5 for a file not in the table"
    );
    assert_eq!(
        &first_answer(1759, "bios/pxelinux.0")[..4],
        b"\x00\x05\x00\x01"
    );

    // Item 5 across tables: a reload that keeps new.bin on its channel
    // (only the delay changes) while its stream runs; a new request for
    // it is not answered (no second stream on the group: the requester
    // listens), and the stream runs to its end.
    let (slow_new, new_blocks) = paced(channel("239.255.1.4:3004", 1759, 2), 16, "images/new.bin");
    for _ in 0..200 {
        if new_blocks.load(Ordering::Relaxed) >= 30 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    write(&config_text(&mtftp(
        1759,
        3,
        &[("images/new.bin", "239.255.1.4", 3004)],
    )));
    assert_eq!(reloader.reload().unwrap().mtftp_applied, Some(true));
    let answer = ask_for_new_bin(97, 1759, Duration::from_millis(400));
    assert!(
        !slow_new.is_finished(),
        "the stream of new.bin ran during the request"
    );
    assert!(
        answer.is_err(),
        "no second stream for a group a stream of the old table carries: {answer:?}"
    );
    match slow_new.join().unwrap() {
        Ok((FetchOutcome::Completed { master: true, .. }, sink)) => {
            assert_eq!(
                sha(&sink.inner.data),
                sha(&new),
                "new.bin across the reload"
            )
        }
        other => panic!("new.bin across the reload: {other:?}"),
    }

    // Bad tables are refused with file:line, and v3 keeps serving.
    let bad_group = config_text(&mtftp(1759, 2, &[("images/new.bin", "10.0.0.4", 3004)]));
    write(&bad_group);
    match reloader.reload() {
        Err(ReloadError::Config(e)) => {
            assert_eq!(e.field, "mtftp.file.group", "{e}");
            assert_eq!(
                e.line,
                bad_group
                    .lines()
                    .position(|l| l.contains("10.0.0.4"))
                    .unwrap()
                    + 1,
                "{e}"
            );
        }
        other => panic!("a group that is not multicast: {other:?}"),
    }
    write(&config_text(&mtftp(
        1759,
        2,
        &[
            ("images/new.bin", "239.255.1.4", 3004),
            ("images/missing.bin", "239.255.1.5", 3005),
        ],
    )));
    match reloader.reload() {
        Err(ReloadError::Config(e)) => {
            assert_eq!(e.field, "mtftp.file.file", "{e}");
            assert!(e.to_string().contains("missing.bin"), "{e}");
        }
        other => panic!("a file that is not there: {other:?}"),
    }
    let held = UdpSocket::bind((Ipv4Addr::LOCALHOST, 1900)).unwrap();
    write(&config_text(&mtftp(
        1900,
        2,
        &[("images/new.bin", "239.255.1.4", 3004)],
    )));
    match reloader.reload() {
        Err(e @ ReloadError::Mtftp { .. }) => {
            assert!(e.to_string().contains("1900"), "{e}");
        }
        other => panic!("a server port that cannot be bound: {other:?}"),
    }
    drop(held);
    assert_eq!(advertised(&client), Default::default(), "v3 advertised");
    assert_eq!(
        fetch_sha(channel("239.255.1.4:3004", 1759, 2), 13, "images/new.bin"),
        Ok(sha(&new)),
        "v3 still served after the refusals"
    );

    // v5: a new server port; the boot file back on its first channel.
    write(&config_text(&mtftp(
        1800,
        1,
        &[
            ("bios/pxelinux.0", "239.255.1.1", 3001),
            ("images/new.bin", "239.255.1.4", 3004),
        ],
    )));
    assert_eq!(reloader.reload().unwrap().mtftp_applied, Some(true));
    let v5 = (v1.0, v1.1, Some(1800), Some(1), Some(1));
    assert_eq!(advertised(&client), (v5, v5), "the new server port");
    assert_eq!(
        fetch_sha(channel("239.255.1.1:3001", 1800, 1), 14, "bios/pxelinux.0"),
        Ok(sha(&boot)),
        "served from the new server port"
    );
    // The old port is closed: nobody answers there.
    let old = ask_for_new_bin(98, 1759, Duration::from_millis(500));
    assert!(
        old.is_err()
            || old.is_ok_and(|(n, from)| {
                // An ICMP port unreachable surfaces as an error; a DATA
                // from the old port would be a bug.
                n == 0 || from != SocketAddr::from((Ipv4Addr::LOCALHOST, 1759))
            }),
        "the old server port no longer answers"
    );

    // v6: MTFTP off (enabled = false): nothing advertised, the port
    // closed; v5 again: served again.
    let v5_text = config_text(&mtftp(
        1800,
        1,
        &[
            ("bios/pxelinux.0", "239.255.1.1", 3001),
            ("images/new.bin", "239.255.1.4", 3004),
        ],
    ));
    write(&v5_text.replace("[mtftp]\n", "[mtftp]\nenabled = false\n"));
    assert_eq!(reloader.reload().unwrap().mtftp_applied, Some(true));
    assert_eq!(advertised(&client), Default::default(), "MTFTP off");
    assert!(
        ask_for_new_bin(98, 1800, Duration::from_millis(500)).is_err(),
        "MTFTP off: nobody answers on its port"
    );
    write(&v5_text);
    assert_eq!(reloader.reload().unwrap().mtftp_applied, Some(true));
    assert_eq!(advertised(&client), (v5, v5), "MTFTP on again");
    assert_eq!(
        fetch_sha(channel("239.255.1.4:3004", 1800, 1), 15, "images/new.bin"),
        Ok(sha(&new)),
        "served again"
    );

    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    eprintln!("MTFTP RELOAD OK: {before} blocks in flight at the reload");
}

/// A reload that turns `[mtftp]` on for a server that started with TFTP
/// off is refused and says to restart (no MTFTP service runs there);
/// no namespace needed.
#[test]
fn mtftp_needs_a_tftp_root_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let boot = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!(
        "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\n\
         [ports]\ndhcp = 0\nboot = {boot}\nclient = 6869\n[boot]\nbios = \"bios/pxelinux.0\"\n"
    );
    let off = format!("{base}[tftp]\nenabled = false\n");
    std::fs::write(&path, &off).unwrap();
    let c = match config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let server = BootServer::bind(c).unwrap();
    let reloader = server.reloader().unwrap();
    std::fs::create_dir_all(dir.path().join("tftp/bios")).unwrap();
    std::fs::write(dir.path().join("tftp/bios/pxelinux.0"), b"x").unwrap();
    std::fs::write(
        &path,
        format!(
            "{base}[tftp]\nroot = \"tftp\"\n{}",
            mtftp(1759, 1, &[("bios/pxelinux.0", "239.255.1.1", 3001)])
        ),
    )
    .unwrap();
    match reloader.reload() {
        Err(e @ ReloadError::Mtftp { .. }) => {
            assert!(e.to_string().contains("restart"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
