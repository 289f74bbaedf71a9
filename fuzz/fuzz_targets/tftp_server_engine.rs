//! The server engine driven by arbitrary operation sequences: requests,
//! datagrams into transfers, time steps, timeouts, read-ahead calls. No
//! panic, bounded output per poll, bounded state, read-ahead hints only
//! where they belong (octet reads; one block in lock-step, one window with
//! windowsize; starting inside the file), timers that lie in the future
//! once they have run, and the anti-amplification rule: a read transfer
//! whose peer is not validated sends at most one datagram per datagram it
//! received (its request, repeats of it, datagrams to its port), plus one
//! ERROR.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::fs::{FileSource, FsError, MemFile, MemFs, ReadAt, VecSink};
use preboot::tftp::server::{RequestOutcome, Server, ServerConfig, Slot, TransferHandle};
use preboot::wire::tftp::Mode;

type Hints = Rc<RefCell<Vec<(u64, usize)>>>;

/// A [`MemFile`] that records the hints it is given.
struct Hinted<'a> {
    inner: MemFile<'a>,
    hints: Hints,
}

impl ReadAt for Hinted<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        self.inner.read_at(offset, buf)
    }
    fn read_ahead(&mut self, offset: u64, len: usize) {
        self.hints.borrow_mut().push((offset, len));
    }
}

/// What a read transfer may be hinted: its file's hint log, size, mode.
struct ReadInfo {
    hints: Hints,
    size: u64,
    netascii: bool,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Request { client: u8, raw: Vec<u8> },
    Rrq { client: u8, file: u8, blksize: u16, windowsize: u8, tsize: bool, netascii: bool },
    Wrq { client: u8, blksize: u16 },
    Raw { transfer: u8, raw: Vec<u8> },
    Ack { transfer: u8, block: u16 },
    Data { transfer: u8, block: u16, len: u16 },
    Error { transfer: u8, code: u16 },
    Advance { ms: u16 },
    Timeouts,
    ReadAhead { transfer: u8 },
    Drain,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sizes: [u16; 3],
    windowsize: u8,
    max_per_client: u8,
    rollover_one: bool,
    ops: Vec<Op>,
}

type Srv<'a> = Server<Hinted<'a>, VecSink, Vec<Slot<Hinted<'a>, VecSink>>>;

/// Calls `Server::read_ahead` and checks the hint it gave, if any: at most
/// one, only for an octet read, exactly one window (one block in
/// lock-step) at a block boundary no further than the end of the file
/// (RFC 1350 §2, §6; RFC 7440 §4).
fn read_ahead_checked(server: &mut Srv<'_>, h: TransferHandle, info: Option<&ReadInfo>) {
    let before = info.map_or(0, |i| i.hints.borrow().len());
    server.read_ahead(h);
    let Some(info) = info else { return };
    let hints = info.hints.borrow();
    assert!(hints.len() <= before + 1, "more than one hint per call");
    if let Some(&(offset, len)) = hints.get(before) {
        let neg = server.negotiated(h).expect("a live read transfer");
        assert!(!info.netascii, "hint in netascii");
        let blksize = u64::from(neg.blksize);
        // One block in lock-step, one window with windowsize (RFC 7440 §4).
        assert_eq!(
            len,
            usize::from(neg.blksize) * usize::from(neg.windowsize.max(1)),
            "hint is not one window"
        );
        assert_eq!(offset % blksize, 0, "hint off a block boundary");
        assert!(offset <= info.size, "hint past the end of the file");
    }
}

fuzz_target!(|input: Input| {
    let blobs: Vec<Vec<u8>> = input.sizes.iter().map(|&s| vec![0x5a; usize::from(s) * 3]).collect();
    let files: Vec<(&str, &[u8])> = vec![("a", &blobs[0]), ("b/c", &blobs[1]), ("d", &blobs[2])];
    let mut fs = MemFs::new(&files);
    let config = ServerConfig {
        max_windowsize: u16::from(input.windowsize).max(1),
        max_per_client: usize::from(input.max_per_client % 8),
        allow_write: true,
        max_write_size: Some(100_000),
        rollover: if input.rollover_one { preboot::tftp::Rollover::ToOne } else { preboot::tftp::Rollover::ToZero },
        timeout: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let mut server: Srv<'_> = Server::new(config, (0..6).map(|_| Slot::new()).collect());
    let mut handles: Vec<TransferHandle> = Vec::new();
    let mut reads: HashMap<TransferHandle, ReadInfo> = HashMap::new();
    // Per read transfer: datagrams received from its peer, datagrams sent
    // while the peer was unvalidated.
    let mut amp: HashMap<TransferHandle, (u64, u64)> = HashMap::new();
    let mut now = Instant::ZERO;
    let mut buf = vec![0u8; 65536 + 4];
    let peer = |c: u8| SocketAddrV4::new(Ipv4Addr::new(10, 0, c % 3, 1), 1000 + u16::from(c));
    let pick = |handles: &Vec<TransferHandle>, t: u8| handles.get(usize::from(t) % handles.len().max(1)).copied();
    for op in input.ops.into_iter().take(2000) {
        let mut raw_req = Vec::new();
        let req: Option<(u8, &[u8])> = match &op {
            Op::Request { client, raw } => Some((*client, raw)),
            Op::Rrq { client, file, blksize, windowsize, tsize, netascii } => {
                raw_req.extend_from_slice(b"\x00\x01");
                raw_req.extend_from_slice(["a", "/b/c", "d", "missing"][usize::from(*file) % 4].as_bytes());
                raw_req.extend_from_slice(if *netascii { b"\x00netascii\x00" } else { b"\x00octet\x00" });
                raw_req.extend_from_slice(format!("blksize\x00{blksize}\x00windowsize\x00{windowsize}\x00").as_bytes());
                if *tsize {
                    raw_req.extend_from_slice(b"tsize\x000\x00");
                }
                Some((*client, &raw_req))
            }
            Op::Wrq { client, blksize } => {
                raw_req.extend_from_slice(format!("\x00\x02up\x00octet\x00blksize\x00{blksize}\x00").as_bytes());
                Some((*client, &raw_req))
            }
            _ => None,
        };
        if let Some((client, raw)) = req {
            // A repeat of a live transfer's request is a datagram from its
            // peer.
            for (&h, a) in amp.iter_mut() {
                if server.peer(h) == Some(peer(client)) && !server.is_finished(h) {
                    a.0 += 1;
                }
            }
            match server.handle_request(now, peer(client), raw) {
                RequestOutcome::Read(inc) => match fs.open(&inc.path) {
                    Ok(f) => {
                        let hints = Hints::default();
                        let info = ReadInfo { hints: hints.clone(), size: f.size(), netascii: inc.mode == Mode::Netascii };
                        if let Ok(h) = server.accept_read(now, &inc, Hinted { inner: f, hints }) {
                            handles.push(h);
                            reads.insert(h, info);
                            amp.insert(h, (1, 0));
                        }
                    }
                    Err(e) => server.refuse(&inc, e.error_code()),
                },
                RequestOutcome::Write(inc) => {
                    let sink = VecSink { limit: Some(100_000), ..VecSink::default() };
                    if let Ok(h) = server.accept_write(now, &inc, sink) {
                        handles.push(h);
                    }
                }
                _ => {}
            }
            continue;
        }
        if let Op::Raw { transfer, .. } | Op::Ack { transfer, .. } | Op::Data { transfer, .. } | Op::Error { transfer, .. } = &op {
            if let Some(a) = pick(&handles, *transfer).and_then(|h| amp.get_mut(&h)) {
                a.0 += 1;
            }
        }
        match op {
            Op::Raw { transfer, raw } => {
                if let Some(h) = pick(&handles, transfer) {
                    server.handle(h, now, &raw);
                }
            }
            Op::Ack { transfer, block } => {
                if let Some(h) = pick(&handles, transfer) {
                    let [a, b] = block.to_be_bytes();
                    server.handle(h, now, &[0, 4, a, b]);
                }
            }
            Op::Data { transfer, block, len } => {
                if let Some(h) = pick(&handles, transfer) {
                    let mut d = vec![0u8; 4 + usize::from(len) % 70000];
                    d[1] = 3;
                    d[2..4].copy_from_slice(&block.to_be_bytes());
                    server.handle(h, now, &d);
                }
            }
            Op::Error { transfer, code } => {
                if let Some(h) = pick(&handles, transfer) {
                    let [a, b] = code.to_be_bytes();
                    server.handle(h, now, &[0, 5, a, b, b'x', 0]);
                }
            }
            Op::Advance { ms } => now += Duration::from_millis(u64::from(ms)),
            Op::Timeouts => {
                for &h in &handles {
                    server.handle_timeout(h, now);
                    // A timer that has run is re-armed in the future (or
                    // gone): a driver never spins on it.
                    if let Some(t) = server.poll_timeout(h) {
                        assert!(t > now, "deadline {t:?} not after {now:?} once handled");
                    }
                }
            }
            Op::ReadAhead { transfer } => {
                // At any time, not only after sending: only ever a hint.
                if let Some(h) = pick(&handles, transfer) {
                    read_ahead_checked(&mut server, h, reads.get(&h));
                }
            }
            Op::Drain | Op::Request { .. } | Op::Rrq { .. } | Op::Wrq { .. } => {}
        }
        // Drain everything: output per call is bounded by the window.
        let mut n = 0;
        while server.poll_listener_transmit(&mut buf).is_some() {
            n += 1;
            assert!(n <= 64);
        }
        for &h in &handles {
            let mut sent = 0;
            let unvalidated = !server.validated(h);
            while server.poll_transmit(h, now, &mut buf).is_some() {
                sent += 1;
                assert!(sent <= 256 + 2, "unbounded transmit");
            }
            if let Some(a) = amp.get_mut(&h) {
                if unvalidated {
                    a.1 += sent;
                    // One datagram per datagram received, and one ERROR.
                    assert!(a.1 <= a.0 + 1, "amplification: {} sent for {} received", a.1, a.0);
                }
            }
            // The documented order: after sending, read ahead.
            read_ahead_checked(&mut server, h, reads.get(&h));
            let mut ev = 0;
            while server.poll_event(h).is_some() {
                ev += 1;
                assert!(ev <= 3, "unbounded events");
            }
        }
        handles.retain(|&h| {
            if server.is_finished(h) {
                server.remove(h);
                reads.remove(&h);
                amp.remove(&h);
                // A removed transfer takes no hint.
                server.read_ahead(h);
                false
            } else {
                true
            }
        });
        assert!(server.active() <= 6);
        assert_eq!(server.active(), handles.len());
    }
});
