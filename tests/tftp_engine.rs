//! Scripted conversations with the server engine: explicit times, exact
//! datagrams. Each test cites the rule it checks.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use preboot::Instant;
use preboot::engine::Datagram;
use preboot::fs::{FileSource, MemFile, MemFs, VecSink};
use preboot::tftp::server::{
    Direction, Incoming, RefuseReason, Server, ServerConfig, ServerEvent, Slot, TransferHandle,
};
use preboot::tftp::{Event, FailReason};
use preboot::wire::tftp::{ErrorCode, Options, Repr};

type Srv = Server<MemFile<'static>, VecSink, Vec<Slot<MemFile<'static>, VecSink>>>;

static DATA: [u8; 5000] = {
    let mut d = [0u8; 5000];
    let mut i = 0;
    while i < d.len() {
        d[i] = (i * 7 % 251) as u8;
        i += 1;
    }
    d
};
static FILES: [(&str, &[u8]); 3] = [
    ("e2e-uki.efi", &DATA),
    ("pxelinux.0", &DATA),
    ("empty", &[]),
];

fn server(config: ServerConfig) -> Srv {
    Server::new(config, (0..8).map(|_| Slot::new()).collect())
}

fn peer(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 129), port)
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vector(name: &str) -> Vec<u8> {
    hex(&std::fs::read_to_string(format!(
        "{}/tests/vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap())
}

/// The listening endpoint, and the one the transfers speak from (their
/// clients tell them apart).
const LISTEN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 1), 69);
const PORT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 1), 40000);

/// What a datagram to the listening port came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome<'a> {
    Read(Incoming<'a>),
    Write(Incoming<'a>),
    Refused {
        code: ErrorCode,
        reason: RefuseReason,
    },
    Ignored,
}

/// Feeds `datagram` from `from` to the listening port.
fn request<'a>(s: &mut Srv, now: Instant, from: SocketAddrV4, datagram: &'a [u8]) -> Outcome<'a> {
    let dg = Datagram {
        local: LISTEN,
        remote: from,
        payload: datagram,
    };
    match s.handle(now, dg) {
        Some(inc) if inc.direction == Direction::Read => Outcome::Read(inc),
        Some(inc) => Outcome::Write(inc),
        // Refusals are the engine's first events; transfers' events
        // polled on the way are dropped.
        None => loop {
            match s.poll_event() {
                Some(ServerEvent::Refused {
                    peer, code, reason, ..
                }) => {
                    assert_eq!(peer, from);
                    break Outcome::Refused { code, reason };
                }
                Some(_) => continue,
                None => break Outcome::Ignored,
            }
        },
    }
}

/// Sends a request, accepts it from FILES; returns the handle.
fn open(s: &mut Srv, now: Instant, from: SocketAddrV4, rrq: &[u8]) -> TransferHandle {
    let mut fs = MemFs::new(&FILES);
    match request(s, now, from, rrq) {
        Outcome::Read(inc) => {
            let f = fs.open(&inc.path).expect("file");
            s.accept_read(now, &inc, f, PORT).expect("accepted")
        }
        other => panic!("{other:?}"),
    }
}

/// Feeds `datagram` from `h`'s client to `h`'s port.
fn feed(s: &mut Srv, h: TransferHandle, now: Instant, datagram: &[u8]) {
    let dg = Datagram {
        local: PORT,
        remote: s.peer(h).expect("live transfer"),
        payload: datagram,
    };
    assert!(s.handle(now, dg).is_none());
}

/// What the engine sends now to `h`'s client (datagrams of other
/// transfers are dropped).
fn drain(s: &mut Srv, h: TransferHandle, now: Instant) -> Vec<Vec<u8>> {
    let peer = s.peer(h);
    let mut buf = vec![0u8; 70000];
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
        if Some(t.remote) == peer {
            assert_eq!(t.local, Some(PORT));
            out.push(buf[..t.len].to_vec());
        }
    }
    s.read_ahead();
    out
}

/// The length of the next datagram the engine sends.
fn next_len(s: &mut Srv, now: Instant, buf: &mut [u8]) -> Option<usize> {
    s.poll_transmit(now, buf).unwrap().map(|t| t.len)
}

/// The next datagram sent from the listening port: (to, length).
fn listener_tx(s: &mut Srv, buf: &mut [u8]) -> Option<(SocketAddrV4, usize)> {
    let t = s.poll_transmit(Instant::ZERO, buf).unwrap()?;
    assert_eq!(t.local, Some(LISTEN));
    Some((t.remote, t.len))
}

fn blocks(dgrams: &[Vec<u8>]) -> Vec<u16> {
    dgrams
        .iter()
        .map(|d| match Repr::parse_bytes(d).unwrap() {
            Repr::Data { block, .. } => block,
            other => panic!("{other:?}"),
        })
        .collect()
}

/// `h`'s events (the engine's others are dropped).
fn events(s: &mut Srv, h: TransferHandle) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            ServerEvent::Transfer {
                transfer, event, ..
            } if transfer == h => Some(event),
            _ => None,
        })
        .collect()
}

#[test]
fn ovmf_probe_then_error_8_then_second_rrq() {
    // RFC 2347 §3 + issue 3: OVMF asks tsize=0 blksize=1468 windowsize=4,
    // gets an OACK, aborts with ERROR 8 (normal), then reads at once.
    let mut s = server(ServerConfig::default());
    let ovmf = peer(1492);
    let h = open(&mut s, t(0), ovmf, &vector("tftp-rrq-ovmf-probe.hex"));
    let out = drain(&mut s, h, t(0));
    assert_eq!(out.len(), 1);
    match Repr::parse_bytes(&out[0]).unwrap() {
        Repr::Oack { options } => {
            let set = options.to_set();
            assert_eq!(set.tsize, Some(5000));
            assert_eq!(set.blksize, Some(1468));
            assert_eq!(set.windowsize, Some(4));
        }
        other => panic!("{other:?}"),
    }
    feed(&mut s, h, t(1), &vector("tftp-error8-ovmf-abort.hex"));
    assert!(s.is_finished(h), "no lingering state");
    assert_eq!(
        events(&mut s, h),
        vec![Event::Failed {
            reason: FailReason::Declined,
            bytes: 0
        }]
    );
    assert!(!FailReason::Declined.is_error());
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.active(), 0, "its slot is free once its events are read");
    // The second RRQ, from the same port, is a new transfer.
    let h2 = open(&mut s, t(2), ovmf, &vector("tftp-rrq-ovmf.hex"));
    let out = drain(&mut s, h2, t(2));
    assert!(matches!(
        Repr::parse_bytes(&out[0]).unwrap(),
        Repr::Oack { .. }
    ));
    feed(&mut s, h2, t(3), b"\x00\x04\x00\x00");
    assert_eq!(blocks(&drain(&mut s, h2, t(3))), vec![1, 2, 3, 4]);
}

#[test]
fn sorcerers_apprentice_duplicate_ack_never_resends() {
    // RFC 1123 §4.2.3.1 / RFC 7440 §4: a duplicate ACK must not trigger a
    // retransmission; only the timer does, from the first un-ACKed block.
    let mut s = server(ServerConfig::default());
    let h = open(
        &mut s,
        t(0),
        peer(2000),
        b"\x00\x01e2e-uki.efi\x00octet\x00blksize\x00512\x00windowsize\x004\x00",
    );
    drain(&mut s, h, t(0)); // OACK
    feed(&mut s, h, t(1), b"\x00\x04\x00\x00");
    assert_eq!(blocks(&drain(&mut s, h, t(1))), vec![1, 2, 3, 4]);
    // Block 3 was lost: the client ACKs 2 (last in order) — a new ACK.
    feed(&mut s, h, t(2), b"\x00\x04\x00\x02");
    assert_eq!(blocks(&drain(&mut s, h, t(2))), vec![3, 4, 5, 6]);
    // The same ACK again (duplicated by the network): nothing is sent.
    feed(&mut s, h, t(3), b"\x00\x04\x00\x02");
    assert!(drain(&mut s, h, t(3)).is_empty());
    // An old ACK: nothing either.
    feed(&mut s, h, t(3), b"\x00\x04\x00\x01");
    assert!(drain(&mut s, h, t(3)).is_empty());
    // A spurious early timeout call is harmless.
    s.handle_timeout(t(4));
    assert!(drain(&mut s, h, t(4)).is_empty());
    // The timer fires: only the first unacknowledged block goes again, not
    // the window (issue 11).
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, t(2) + Duration::from_secs(1));
    s.handle_timeout(deadline);
    assert_eq!(blocks(&drain(&mut s, h, deadline)), vec![3]);
    // Consecutive timeouts back off: 2 s, then 4 s.
    let second = s.poll_timeout().unwrap();
    assert_eq!(second, deadline + Duration::from_secs(2));
    s.handle_timeout(second);
    assert_eq!(blocks(&drain(&mut s, h, second)), vec![3]);
    assert_eq!(s.poll_timeout(), Some(second + Duration::from_secs(4)));
    // An ACK of a block sent before the timeouts still counts, and opens
    // the window again (block 10, 392 bytes, is the last).
    feed(&mut s, h, second, b"\x00\x04\x00\x06");
    assert_eq!(blocks(&drain(&mut s, h, second)), vec![7, 8, 9, 10]);
}

#[test]
fn retries_are_bounded_and_failure_is_reported() {
    let mut s = server(ServerConfig {
        max_retries: 2,
        ..ServerConfig::default()
    });
    let rrq = b"\x00\x01pxelinux.0\x00octet\x00";
    let h = open(&mut s, t(0), peer(2001), rrq);
    assert_eq!(blocks(&drain(&mut s, h, t(0))), vec![1]);
    // Nothing acknowledged yet (issue 11): the timer re-sends only what a
    // datagram from the client paid for, on the server's own 1 s schedule.
    let mut now = s.poll_timeout().unwrap();
    assert_eq!(now, t(1000));
    s.handle_timeout(now);
    assert!(drain(&mut s, h, now).is_empty());
    // The client repeats its request: one re-send.
    assert_eq!(request(&mut s, now, peer(2001), rrq), Outcome::Ignored);
    assert_eq!(blocks(&drain(&mut s, h, now)), vec![1]);
    now = s.poll_timeout().unwrap();
    assert_eq!(now, t(2000));
    s.handle_timeout(now);
    assert!(drain(&mut s, h, now).is_empty());
    now = s.poll_timeout().unwrap();
    s.handle_timeout(now);
    assert!(drain(&mut s, h, now).is_empty());
    assert!(s.is_finished(h));
    assert!(events(&mut s, h).contains(&Event::Failed {
        reason: FailReason::TimedOut,
        bytes: 0
    }));
}

#[test]
fn ipxe_blksize_1432_tsize_0() {
    // tftp-rrq-ipxe.hex: pxelinux.0 with blksize=1432 tsize=0.
    let mut s = server(ServerConfig::default());
    let h = open(&mut s, t(0), peer(2002), &vector("tftp-rrq-ipxe.hex"));
    let out = drain(&mut s, h, t(0));
    let Repr::Oack { options } = Repr::parse_bytes(&out[0]).unwrap() else {
        panic!()
    };
    assert_eq!(options.to_set().blksize, Some(1432));
    assert_eq!(options.to_set().tsize, Some(5000));
    feed(&mut s, h, t(1), b"\x00\x04\x00\x00");
    let mut got = Vec::new();
    let mut now = 1;
    loop {
        let out = drain(&mut s, h, t(now));
        assert_eq!(out.len(), 1, "windowsize 1: lock-step");
        let Repr::Data { block, data } = Repr::parse_bytes(&out[0]).unwrap() else {
            panic!()
        };
        got.extend_from_slice(data);
        now += 1;
        feed(&mut s, h, t(now), &[0, 4, (block >> 8) as u8, block as u8]);
        if data.len() < 1432 {
            break;
        }
    }
    assert_eq!(got, DATA);
    assert!(s.is_finished(h));
    let ev = events(&mut s, h);
    assert!(
        matches!(ev.last(), Some(Event::Completed { bytes: 5000, .. })),
        "{ev:?}"
    );
}

#[test]
fn grub_leading_slash_and_missing_files_get_error_1_at_once() {
    let mut s = server(ServerConfig::default());
    // GRUB prefixes a '/'.
    let h = open(
        &mut s,
        t(0),
        peer(2003),
        b"\x00\x01/pxelinux.0\x00octet\x00",
    );
    assert_eq!(blocks(&drain(&mut s, h, t(0))), vec![1]);
    // pxelinux probes config names that do not exist: the application
    // refuses with ERROR 1 and it goes out immediately.
    let mut fs = MemFs::new(&FILES);
    let rrq = vector("tftp-rrq-pxelinux-cfg.hex");
    let Outcome::Read(inc) = request(&mut s, t(0), peer(2004), &rrq) else {
        panic!()
    };
    let e = fs.open(&inc.path).unwrap_err();
    s.refuse(&inc, e.error_code());
    let mut buf = [0u8; 600];
    let (to, n) = listener_tx(&mut s, &mut buf).unwrap();
    assert_eq!(to, peer(2004));
    assert!(matches!(
        Repr::parse_bytes(&buf[..n]).unwrap(),
        Repr::Error {
            code: ErrorCode::FileNotFound,
            ..
        }
    ));
}

#[test]
fn hostile_paths_writes_and_limits_are_refused_with_errors() {
    let mut s = server(ServerConfig {
        max_per_client: 2,
        max_transfers: 3,
        ..ServerConfig::default()
    });
    let mut buf = [0u8; 600];
    for (rrq, code) in [
        (
            &b"\x00\x01../../etc/passwd\x00octet\x00"[..],
            ErrorCode::AccessViolation,
        ),
        (
            b"\x00\x01a\\..\\..\\b\x00octet\x00",
            ErrorCode::AccessViolation,
        ),
        (
            b"\x00\x02upload.bin\x00octet\x00",
            ErrorCode::AccessViolation,
        ),
        (b"\x00\x01f\x00mail\x00", ErrorCode::IllegalOperation),
        (b"\x00\x01f\x00bogus\x00", ErrorCode::IllegalOperation),
    ] {
        let out = request(&mut s, t(0), peer(3000), rrq);
        assert!(
            matches!(out, Outcome::Refused { code: c, .. } if c == code),
            "{out:?}"
        );
        let (_, n) = listener_tx(&mut s, &mut buf).unwrap();
        assert!(
            matches!(Repr::parse_bytes(&buf[..n]).unwrap(), Repr::Error { code: c, .. } if c == code)
        );
    }
    // Per-client limit: the third transfer from one address is refused,
    // others keep being served.
    let a = open(&mut s, t(0), peer(4001), b"\x00\x01empty\x00octet\x00");
    let _b = open(&mut s, t(0), peer(4002), b"\x00\x01empty\x00octet\x00");
    let out = request(&mut s, t(0), peer(4003), b"\x00\x01empty\x00octet\x00");
    assert!(
        matches!(
            out,
            Outcome::Refused {
                reason: RefuseReason::ClientBusy,
                ..
            }
        ),
        "{out:?}"
    );
    listener_tx(&mut s, &mut buf).unwrap();
    let other = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 1);
    let _c = open(&mut s, t(0), other, b"\x00\x01empty\x00octet\x00");
    let other2 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 10), 1);
    let out = request(&mut s, t(0), other2, b"\x00\x01empty\x00octet\x00");
    assert!(
        matches!(
            out,
            Outcome::Refused {
                reason: RefuseReason::Busy,
                ..
            }
        ),
        "{out:?}"
    );
    // A repeated RRQ from a client already being served is ignored.
    assert_eq!(
        request(&mut s, t(0), peer(4001), b"\x00\x01empty\x00octet\x00"),
        Outcome::Ignored
    );
    // The served transfers still work: empty file = one empty DATA block.
    let out = drain(&mut s, a, t(0));
    assert_eq!(out, vec![b"\x00\x03\x00\x01".to_vec()]);
}

#[test]
fn write_request_with_options_uploads_through_sink() {
    let mut s = server(ServerConfig {
        allow_write: true,
        max_write_size: Some(10_000),
        ..ServerConfig::default()
    });
    let big = request(
        &mut s,
        t(0),
        peer(5000),
        b"\x00\x02up\x00octet\x00tsize\x0020000\x00",
    );
    assert!(matches!(
        big,
        Outcome::Refused {
            code: ErrorCode::DiskFull,
            ..
        }
    ));
    let mut buf = vec![0u8; 2000];
    listener_tx(&mut s, &mut buf).unwrap();
    let Outcome::Write(inc) = request(
        &mut s,
        t(0),
        peer(5001),
        b"\x00\x02up\x00octet\x00blksize\x001000\x00tsize\x001500\x00",
    ) else {
        panic!()
    };
    let h = s
        .accept_write(t(0), &inc, VecSink::default(), PORT)
        .unwrap();
    let n = next_len(&mut s, t(0), &mut buf).unwrap();
    let Repr::Oack { options } = Repr::parse_bytes(&buf[..n]).unwrap() else {
        panic!()
    };
    assert_eq!(options.to_set().blksize, Some(1000));
    let mut pkt = vec![0, 3, 0, 1];
    pkt.extend_from_slice(&DATA[..1000]);
    feed(&mut s, h, t(1), &pkt);
    assert_eq!(next_len(&mut s, t(1), &mut buf), Some(4));
    assert_eq!(&buf[..4], b"\x00\x04\x00\x01");
    let mut pkt = vec![0, 3, 0, 2];
    pkt.extend_from_slice(&DATA[1000..1500]);
    feed(&mut s, h, t(2), &pkt);
    let n = next_len(&mut s, t(2), &mut buf).unwrap();
    assert_eq!(&buf[..n], b"\x00\x04\x00\x02");
    let ev = events(&mut s, h);
    assert!(
        matches!(ev.last(), Some(Event::Completed { bytes: 1500, .. })),
        "{ev:?}"
    );
    // Dallying: a repeated last block is ACKed again.
    feed(&mut s, h, t(3), &pkt);
    let n = next_len(&mut s, t(3), &mut buf).unwrap();
    assert_eq!(&buf[..n], b"\x00\x04\x00\x02");
    let end = s.poll_timeout().unwrap();
    s.handle_timeout(end);
    assert!(s.is_finished(h));
}

#[test]
fn golden_vectors_parse_to_expected_fields() {
    // tests/vectors/PROVENANCE.md.
    let set = |name: &str| match Repr::parse_bytes(&vector(name)).unwrap() {
        Repr::Rrq(r) => (
            String::from_utf8(r.filename.to_vec()).unwrap(),
            r.options.to_set(),
        ),
        Repr::Oack { options } => (String::new(), options.to_set()),
        other => panic!("{name}: {other:?}"),
    };
    let (f, o) = set("tftp-rrq-ipxe.hex");
    assert_eq!(
        (f.as_str(), o.blksize, o.tsize, o.windowsize),
        ("pxelinux.0", Some(1432), Some(0), None)
    );
    let (f, o) = set("tftp-rrq-ovmf-probe.hex");
    assert_eq!(
        (f.as_str(), o.blksize, o.tsize, o.windowsize),
        ("e2e-uki.efi", Some(1468), Some(0), Some(4))
    );
    let (f, o) = set("tftp-rrq-ovmf.hex");
    assert_eq!(
        (f.as_str(), o.blksize, o.tsize, o.windowsize),
        ("e2e-uki.efi", Some(1468), None, Some(4))
    );
    let (f, o) = set("tftp-rrq-grub.hex");
    assert_eq!(
        (f.as_str(), o.blksize, o.tsize, o.windowsize),
        ("grubnetx64.efi", Some(1468), Some(0), Some(4))
    );
    let (f, o) = set("tftp-rrq-pxelinux-cfg.hex");
    assert_eq!(
        (f.as_str(), o.blksize, o.tsize),
        (
            "pxelinux.cfg/4e1d7c8b-e0e2-5a4c-9d3e-0000000000e2",
            Some(1408),
            Some(0)
        )
    );
    assert_eq!(set("mtftp-rrq-atftp.hex").0, "big.bin");
    let (_, o) = set("tftp-oack-dnsmasq.hex");
    assert_eq!((o.blksize, o.tsize), (Some(1432), Some(42430)));
    let (_, o) = set("tftp-oack-ovmf-probe.hex");
    assert_eq!(
        (o.blksize, o.tsize, o.windowsize),
        (Some(1468), Some(9360225), None)
    );
    match Repr::parse_bytes(&vector("tftp-error8-ovmf-abort.hex")).unwrap() {
        Repr::Error { code, message } => {
            assert_eq!(code, ErrorCode::OptionRefused);
            assert_eq!(message, b"User aborted the transfer");
        }
        other => panic!("{other:?}"),
    }
    match Repr::parse_bytes(&vector("tftp-error-notfound-dnsmasq.hex")).unwrap() {
        Repr::Error { code, message } => {
            assert_eq!(code, ErrorCode::FileNotFound);
            assert!(message.ends_with(b"not found for 192.168.77.129"));
        }
        other => panic!("{other:?}"),
    }
    for name in [
        "mtftp-data1-unicast-atftpd.hex",
        "mtftp-data1-multicast-atftpd.hex",
    ] {
        let bytes = vector(name);
        let Repr::Data { block, data } = Repr::parse_bytes(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!((block, data.len()), (1, 512));
    }
    assert_eq!(
        Repr::parse_bytes(&vector("mtftp-ack1-atftp.hex")).unwrap(),
        Repr::Ack { block: 1 }
    );
    // Byte-exact re-emission of every TFTP vector.
    for entry in std::fs::read_dir(format!("{}/tests/vectors", env!("CARGO_MANIFEST_DIR"))).unwrap()
    {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !(name.starts_with("tftp-") || name.starts_with("mtftp-")) || !name.ends_with(".hex") {
            continue;
        }
        let bytes = vector(&name);
        let repr = Repr::parse_bytes(&bytes).unwrap();
        let mut out = vec![0u8; bytes.len()];
        assert_eq!(repr.emit(&mut out), Ok(bytes.len()), "{name}");
        assert_eq!(out, bytes, "{name}");
    }
    // Our OACK to iPXE, typed, equals dnsmasq's bytes.
    let ours = Repr::Oack {
        options: Options::Set(preboot::wire::tftp::OptionSet {
            blksize: Some(1432),
            tsize: Some(42430),
            ..Default::default()
        }),
    };
    let mut out = [0u8; 64];
    let n = ours.emit(&mut out).unwrap();
    assert_eq!(&out[..n], &vector("tftp-oack-dnsmasq.hex")[..]);
}
