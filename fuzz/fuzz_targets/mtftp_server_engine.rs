//! The PXE MTFTP server engine driven by arbitrary operation sequences:
//! requests for files of several sizes (one over 65,535 blocks) from
//! several clients, to SPORT or elsewhere; ACKs and ERRORs from masters
//! and from listeners, to the stream's port or another; raw datagrams;
//! accept / refuse / ignore decisions with SPORT or a fresh port; time
//! steps, timeouts, small buffers, lazy event polling.
//!
//! Checked, against a model the target keeps itself: no panic; every
//! transmit is a well-formed TFTP DATA or ERROR sent from `Some(local)`;
//! DATA goes either to a running stream's group (from the stream's port)
//! or, block 1 only, unicast to that stream's master (PXE 2.1 MTFTP: block
//! 1 unicast to the opener, later blocks to the group); DATA is at most
//! 512 bytes and carries the file's bytes; at most one running stream per
//! group; a master that has not ACKed gets at most as many unicast blocks
//! as it sent datagrams; the group gets block 1 only until the master ACKs
//! it; per step at most the window plus one datagrams per stream plus 16
//! refusals, and a bounded number of events.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::engine::Datagram;
use preboot::fs::{FileSource, MemFile, MemFs};
use preboot::mtftp::server::{AcceptError, Server, ServerConfig, ServerEvent, Slot};
use preboot::wire::tftp::{ErrorCode, Repr};

#[derive(Arbitrary, Debug)]
enum Decision {
    Accept { fresh_port: bool },
    Refuse,
    Ignore,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Rrq { client: u8, file: u8, decision: Decision, elsewhere: bool },
    Ack { client: u8, block: u16, to_sport: bool },
    Error { client: u8, code: u16 },
    Raw { client: u8, raw: Vec<u8> },
    Advance { ms: u16 },
    Timeout,
    SmallBuffer { len: u16 },
    SkipEvents,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_retries: u8,
    window: u8,
    slots: u8,
    ops: Vec<Op>,
}

const NAMES: [&str; 4] = ["a", "b", "c", "huge"];

/// The files' bytes, made once (the last is 32 MiB).
fn contents(i: usize) -> &'static [u8] {
    static DATA: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &DATA.get_or_init(|| {
        (0..NAMES.len())
            .map(|i| {
                let size = [0usize, 700, 512 * 3, 65535 * 512][i];
                (0..size).map(|n| (n * 7 + i) as u8).collect()
            })
            .collect()
    })[i]
}

fuzz_target!(|input: Input| {
    let files: Vec<(&str, &[u8])> = NAMES.iter().enumerate().map(|(i, n)| (*n, contents(i))).collect();
    let mut fs = MemFs::new(&files);
    let sport = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1759);
    let groups: Vec<SocketAddrV4> =
        (0..NAMES.len()).map(|i| SocketAddrV4::new(Ipv4Addr::new(239, 1, 1, 1 + i as u8), 1760)).collect();
    let client = |c: u8| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2 + c % 4), 1760);
    let window = u16::from(input.window % 40);
    let config = ServerConfig { timeout: Duration::from_millis(100), max_retries: input.max_retries % 8, window };
    let slots: Vec<Slot<MemFile>> = (0..usize::from(input.slots % 4)).map(|_| Slot::new()).collect();
    let mut s = Server::new(config, slots);
    let mut now = Instant::ZERO;
    let mut buf = vec![0u8; 600];
    let mut small = None;
    let mut skip_events = false;
    let mut next_port = 40000u16;
    // Model: the streams not yet closed, by group.
    struct M { local: SocketAddrV4, master: SocketAddrV4, file: usize, validated: bool, from_master: u32, unicast: u32 }
    let mut streams: HashMap<SocketAddrV4, M> = HashMap::new();
    let mut refusals_owed: u32 = 0;
    for op in input.ops.into_iter().take(3000) {
        match op {
            Op::Rrq { client: c, file, decision, elsewhere } => {
                let f = usize::from(file) % NAMES.len();
                let rrq = format!("\x00\x01{}\x00octet\x00", NAMES[f]);
                let local = if elsewhere { SocketAddrV4::new(*sport.ip(), 9) } else { sport };
                for m in streams.values_mut().filter(|m| m.master == client(c)) {
                    m.from_master += 1;
                }
                refusals_owed += 1;
                if let Some(inc) = s.handle(now, Datagram { local, remote: client(c), payload: rrq.as_bytes() }) {
                    match decision {
                        Decision::Accept { fresh_port } => {
                            let file = fs.open(&inc.path).expect("exists");
                            let l = if fresh_port { next_port += 1; SocketAddrV4::new(*sport.ip(), next_port) } else { local };
                            match s.accept(now, &inc, file, groups[f], l) {
                                Ok(_) => {
                                    assert!(f != 3, "a file over 65,535 blocks was accepted");
                                    // An ended stream not yet closed (events
                                    // skipped) may still be in the model.
                                    streams.insert(groups[f], M { local: l, master: client(c), file: f, validated: false, from_master: 1, unicast: 0 });
                                }
                                Err(AcceptError::AlreadyServing(_)) => {
                                    assert!(streams.contains_key(&groups[f]), "serving a group never accepted");
                                }
                                Err(_) => {}
                            }
                        }
                        Decision::Refuse => s.refuse(&inc, ErrorCode::FileNotFound),
                        Decision::Ignore => {}
                    }
                }
            }
            Op::Ack { client: c, block, to_sport } => {
                let from = client(c);
                let local = if to_sport { sport } else { streams.values().find(|m| m.master == from).map_or(sport, |m| m.local) };
                for m in streams.values_mut() {
                    if m.master == from {
                        m.from_master += 1;
                        if m.local == local && block == 1 {
                            m.validated = true;
                        }
                    }
                }
                let [a, b] = block.to_be_bytes();
                s.handle(now, Datagram { local, remote: from, payload: &[0, 4, a, b] });
            }
            Op::Error { client: c, code } => {
                let [a, b] = code.to_be_bytes();
                for m in streams.values_mut().filter(|m| m.master == client(c)) {
                    m.from_master += 1;
                }
                s.handle(now, Datagram { local: sport, remote: client(c), payload: &[0, 5, a, b, 0] });
            }
            Op::Raw { client: c, raw } => {
                for m in streams.values_mut().filter(|m| m.master == client(c)) {
                    m.from_master += 1;
                }
                refusals_owed += 1;
                let _ = s.handle(now, Datagram { local: sport, remote: client(c), payload: &raw });
            }
            Op::Advance { ms } => now += Duration::from_millis(u64::from(ms)),
            Op::Timeout => s.handle_timeout(now),
            Op::SmallBuffer { len } => small = Some(usize::from(len) % 600),
            Op::SkipEvents => skip_events = true,
        }
        let mut sent = 0;
        loop {
            let b = match small.take() {
                Some(n) => &mut buf[..n],
                None => &mut buf[..],
            };
            let t = match s.poll_transmit(now, b) {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(e) => {
                    assert!(e.needed > b.len() && e.needed <= 516);
                    continue;
                }
            };
            sent += 1;
            assert!(sent <= (usize::from(window.max(1)) + 1) * 4 + 16, "unbounded transmit");
            assert!(!t.broadcast && !t.after_sync);
            let local = t.local.expect("server names its socket");
            match Repr::parse_bytes(&buf[..t.len]).expect("well formed") {
                Repr::Data { block, data } => {
                    assert!(data.len() <= 512 && block >= 1);
                    let off = (usize::from(block) - 1) * 512;
                    let matches = |m: &M| contents(m.file).get(off..off + data.len()) == Some(data);
                    if t.remote.ip().is_multicast() {
                        let m = streams.get(&t.remote).expect("DATA to a stream's group");
                        assert_eq!(m.local, local, "group DATA from the stream's port");
                        assert!(matches(m), "the file's bytes");
                        // Until the master ACKs block 1, the group gets
                        // block 1 only (the window opens after).
                        assert!(m.validated || block == 1, "block {block} before the master's first ACK");
                    } else {
                        // Block 1 only, to a master, from its stream's port.
                        assert_eq!(block, 1, "unicast only block 1");
                        let m = streams
                            .values_mut()
                            .filter(|m| m.local == local && m.master == t.remote && !m.validated)
                            .find(|m| contents(m.file).get(..data.len()) == Some(data))
                            .expect("unicast block 1 to an unvalidated master");
                        m.unicast += 1;
                        assert!(m.unicast <= m.from_master, "amplification: {} unicast for {} received", m.unicast, m.from_master);
                    }
                }
                Repr::Error { .. } => {}
                other => panic!("server sent {other:?}"),
            }
        }
        let _ = refusals_owed;
        if !skip_events {
            let mut ev = 0;
            while let Some(e) = s.poll_event() {
                ev += 1;
                assert!(ev <= 16 + 4 * 3, "unbounded events");
                if let ServerEvent::Closed { local, group, .. } = e {
                    let m = streams.remove(&group).expect("closed a known stream");
                    assert_eq!(m.local, local);
                }
            }
        }
        skip_events = false;
    }
});
