//! Read-ahead: which hints the server engine gives
//! (`Server::read_ahead`), and that a file taking them (`JailedFile`) still
//! returns the file's exact bytes, whatever hints came before.
//!
//! The rules checked, with the clause behind each:
//! - RFC 1350 §2: without windows every DATA must be acknowledged before the
//!   next is sent (lock-step), so block n+1 is the one the next ACK asks
//!   for: after sending block n the hint is `(n * blksize, blksize)`.
//! - RFC 1350 §6 (and RFC 2348 §"Blocksize Option Specification" for other
//!   sizes): a block shorter than `blksize` is the last; a file that is a
//!   multiple of `blksize` ends with an empty block, which is still a next
//!   block to hint. Nothing follows the last block: no hint after it.
//! - RFC 7440 §4: with a window larger than 1 the sender sends a window's
//!   blocks back to back and the ACK of its last block starts the next
//!   window at the block after it: after a window ending at block n the hint
//!   is `(n * blksize, windowsize * blksize)`.
//! - RFC 1350 §1 netascii: a block's file offset depends on how the blocks
//!   before it were encoded (LF becomes CR LF): no hints.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use preboot::Instant;
use preboot::driver::fs::{JailedDir, JailedFile, MAX_READ_AHEAD};
use preboot::driver::tftp::{TftpServer, TftpServerConfig};
use preboot::engine::Datagram;
use preboot::fs::{FsError, MemFile, ReadAt, ValidPath, VecSink};
use preboot::tftp::server::{Server, ServerConfig, ServerEvent, Slot, TransferHandle};
use preboot::wire::tftp::Repr;
use sha2::{Digest, Sha256};

mod tftp_support;
use tftp_support::{content, fetch};

/// What the engine asked of the file, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Hint { offset: u64, len: usize },
    Read { offset: u64, len: usize },
}

/// A [`MemFile`] that records every hint and read.
struct Recording {
    inner: MemFile<'static>,
    log: Rc<RefCell<Vec<Call>>>,
}

impl ReadAt for Recording {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        self.log.borrow_mut().push(Call::Read {
            offset,
            len: buf.len(),
        });
        self.inner.read_at(offset, buf)
    }
    fn read_ahead(&mut self, offset: u64, len: usize) {
        self.log.borrow_mut().push(Call::Hint { offset, len });
    }
}

type Srv = Server<Recording, VecSink, Vec<Slot<Recording, VecSink>>>;

const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 129), 2000);
/// The listening endpoint, and the transfer's own.
const LISTEN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 1), 69);
const PORT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 1), 40000);

/// `payload` from the client to `local`.
fn from_peer(local: SocketAddrV4, payload: &[u8]) -> Datagram<'_> {
    Datagram {
        local,
        remote: PEER,
        payload,
    }
}

/// The client's ACK of `block`, to the transfer's port.
fn ack<F: ReadAt, W: preboot::fs::WriteAt>(
    s: &mut Server<F, W, Vec<Slot<F, W>>>,
    now: Instant,
    block: u16,
) {
    let [a, b] = block.to_be_bytes();
    assert!(s.handle(now, from_peer(PORT, &[0, 4, a, b])).is_none());
}

/// Everything the engine has to send now, as the lengths sent, drained
/// the way the std driver does (until `poll_transmit` has nothing).
fn drain<F: ReadAt, W: preboot::fs::WriteAt>(
    s: &mut Server<F, W, Vec<Slot<F, W>>>,
    now: Instant,
    buf: &mut [u8],
) -> Vec<usize> {
    let mut sent = Vec::new();
    while let Some(t) = s.poll_transmit(now, buf).expect("buffer large enough") {
        sent.push(t.len);
    }
    sent
}

fn rrq(mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut v = b"\x00\x01file\x00".to_vec();
    v.extend_from_slice(mode.as_bytes());
    v.push(0);
    for (k, val) in options {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// A server with one read transfer of `data` started by `request`.
fn open(data: &'static [u8], request: &[u8]) -> (Srv, TransferHandle, Rc<RefCell<Vec<Call>>>) {
    let mut s: Srv = Server::new(
        ServerConfig::default(),
        (0..2).map(|_| Slot::new()).collect(),
    );
    let log = Rc::new(RefCell::new(Vec::new()));
    let Some(inc) = s.handle(Instant::ZERO, from_peer(LISTEN, request)) else {
        panic!("not a read request")
    };
    let file = Recording {
        inner: MemFile::new(data),
        log: log.clone(),
    };
    let h = s
        .accept_read(Instant::ZERO, &inc, file, PORT)
        .expect("accepted");
    (s, h, log)
}

/// Drives a transfer to its end the way the std driver does: send what
/// `poll_transmit` gives, then `read_ahead`, then the client's ACK of the
/// last datagram. Returns the data received.
fn run(s: &mut Srv, h: TransferHandle) -> Vec<u8> {
    let mut buf = vec![0u8; 4 + 65464];
    let mut received = Vec::new();
    let mut now = Instant::ZERO;
    for _round in 0..100_000 {
        let mut ack = None;
        while let Some(t) = s.poll_transmit(now, &mut buf).expect("buffer") {
            match Repr::parse_bytes(&buf[..t.len]).expect("valid datagram") {
                Repr::Oack { .. } => ack = Some(0),
                Repr::Data { block, data } => {
                    received.extend_from_slice(data);
                    ack = Some(block);
                }
                other => panic!("{other:?}"),
            }
        }
        s.read_ahead();
        if s.is_finished(h) {
            return received;
        }
        let block = ack.expect("something sent each round");
        self::ack(s, now, block);
        now += Duration::from_millis(1);
    }
    panic!("transfer did not end");
}

fn hints(log: &Rc<RefCell<Vec<Call>>>) -> Vec<(u64, usize)> {
    log.borrow()
        .iter()
        .filter_map(|c| match *c {
            Call::Hint { offset, len } => Some((offset, len)),
            Call::Read { .. } => None,
        })
        .collect()
}

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

#[test]
fn lock_step_hints_exactly_the_next_block() {
    // RFC 1350 §2 lock-step, no options: blksize 512; 5000 bytes are blocks
    // 1..=9 full and block 10 with 392 bytes (the last, RFC 1350 §6).
    let data = leak(content(5000));
    let (mut s, h, log) = open(data, &rrq("octet", &[]));
    assert_eq!(run(&mut s, h), data);
    let expected: Vec<(u64, usize)> = (1..=9u64).map(|n| (n * 512, 512)).collect();
    assert_eq!(hints(&log), expected);
    // Each hint comes right after block n was read and before block n+1 is:
    // the hinted bytes are the next ones read.
    let calls = log.borrow().clone();
    for (i, c) in calls.iter().enumerate() {
        if let Call::Hint { offset, len } = *c {
            assert!(
                matches!(calls.get(i + 1), Some(&Call::Read { offset: o, len: l }) if o == offset && l == len),
                "hint {c:?} not followed by its read: {:?}",
                calls.get(i + 1)
            );
        }
    }
}

#[test]
fn lock_step_with_options_hints_block_one_while_the_oack_waits() {
    // RFC 2347: the OACK is acknowledged with ACK 0 before block 1; the hint
    // for block 1 (offset 0) is given while that ACK is on its way. An
    // explicit windowsize 1 (RFC 7440 §3) is lock-step too.
    let data = leak(content(10_000));
    let (mut s, h, log) = open(
        data,
        &rrq(
            "octet",
            &[("blksize", "1468"), ("tsize", "0"), ("windowsize", "1")],
        ),
    );
    assert_eq!(run(&mut s, h), data);
    // 10000 = 6 * 1468 + 1192: blocks 1..=6 full, block 7 the last.
    let expected: Vec<(u64, usize)> = (0..=6u64).map(|n| (n * 1468, 1468)).collect();
    assert_eq!(hints(&log), expected);
}

#[test]
fn a_file_of_whole_blocks_hints_its_empty_last_block() {
    // RFC 1350 §6 / RFC 2348: 1024 bytes at blksize 512 end with an empty
    // block 3, read at offset 1024; after it, nothing.
    let data = leak(content(1024));
    let (mut s, h, log) = open(data, &rrq("octet", &[]));
    assert_eq!(run(&mut s, h), data);
    assert_eq!(hints(&log), [(512, 512), (1024, 512)]);
}

#[test]
fn no_hint_after_the_last_block_even_when_it_is_resent() {
    // RFC 1350 §6: block 2 (488 bytes) is the last. Its ACK is lost; the
    // timeout re-sends it (RFC 1350 §2); still nothing to read ahead.
    let data = leak(content(1000));
    let (mut s, h, log) = open(data, &rrq("octet", &[]));
    let mut buf = vec![0u8; 600];
    let t0 = Instant::ZERO;
    s.read_ahead(); // before anything is sent: no transfer has sent, no hint
    assert_eq!(drain(&mut s, t0, &mut buf), [4 + 512]);
    s.read_ahead(); // block 2 is next
    ack(&mut s, t0, 1);
    assert_eq!(drain(&mut s, t0, &mut buf), [4 + 488]);
    s.read_ahead();
    let late = t0 + Duration::from_secs(2);
    s.handle_timeout(late);
    assert_eq!(drain(&mut s, late, &mut buf), [4 + 488]);
    s.read_ahead();
    s.read_ahead();
    assert_eq!(hints(&log), [(512, 512)]);
    ack(&mut s, late, 2);
    assert!(s.is_finished(h));
    s.read_ahead();
    assert_eq!(hints(&log).len(), 1);
}

#[test]
fn a_resent_block_hints_the_same_next_block_again() {
    // A lost DATA (RFC 1350 §2: resent on timeout): the block after it is
    // still the next; the hint repeats (the file decides whether to read
    // again).
    let data = leak(content(2000));
    let (mut s, _h, log) = open(data, &rrq("octet", &[]));
    let mut buf = vec![0u8; 600];
    let t0 = Instant::ZERO;
    assert_eq!(drain(&mut s, t0, &mut buf).len(), 1);
    s.read_ahead();
    let late = t0 + Duration::from_secs(2);
    s.handle_timeout(late);
    // Nothing acknowledged yet: the timer alone re-sends nothing (issue 11
    // item 3); the client's repeated request pays for the re-send.
    assert!(drain(&mut s, late, &mut buf).is_empty());
    let again = rrq("octet", &[]);
    assert_eq!(s.handle(late, from_peer(LISTEN, &again)), None);
    assert_eq!(drain(&mut s, late, &mut buf).len(), 1);
    s.read_ahead();
    assert_eq!(hints(&log), [(512, 512), (512, 512)]);
}

#[test]
fn hints_the_next_window() {
    // RFC 7440 §4: after a window has left, the ACK of its last block
    // starts the next window at the block after it; the hint is that whole
    // window (windowsize * blksize bytes), and none once the last block has
    // gone.
    for w in [2u16, 4, 64] {
        let data = leak(content(100_000));
        let ws = w.to_string();
        let (mut s, h, log) = open(
            data,
            &rrq("octet", &[("blksize", "1024"), ("windowsize", &ws)]),
        );
        assert_eq!(s.negotiated(h).map(|n| n.windowsize), Some(w));
        let mut buf = vec![0u8; 4 + 1024];
        let mut now = Instant::ZERO;
        let mut acked = 0u16;
        let mut expected = Vec::new();
        while !s.is_finished(h) {
            let mut last = acked;
            while let Some(t) = s.poll_transmit(now, &mut buf).expect("buffer") {
                if let Ok(Repr::Data { block, .. }) = Repr::parse_bytes(&buf[..t.len]) {
                    last = block;
                }
            }
            s.read_ahead();
            // Blocks 1..=98; block 98 (672 bytes) is the last.
            if last < 98 {
                expected.push((u64::from(last) * 1024, usize::from(w) * 1024));
            }
            ack(&mut s, now, last);
            acked = last;
            now += Duration::from_millis(1);
        }
        assert_eq!(hints(&log), expected, "windowsize {w}");
        assert!(log.borrow().len() > 90, "the transfer ran");
    }
}

#[test]
fn no_hints_in_netascii() {
    // RFC 1350 §1: netascii blocks do not sit at `n * blksize` in the file.
    let data = leak(b"line\n".repeat(400));
    let (mut s, h, log) = open(data, &rrq("netascii", &[]));
    let got = run(&mut s, h);
    assert_eq!(got, b"line\r\n".repeat(400));
    assert!(hints(&log).is_empty(), "{:?}", hints(&log));
}

#[test]
fn stale_handles_and_uploads_get_no_hint() {
    let data = leak(content(100));
    let (mut s, h, log) = open(data, &rrq("octet", &[]));
    let mut buf = vec![0u8; 600];
    let t0 = Instant::ZERO;
    assert_eq!(drain(&mut s, t0, &mut buf).len(), 1);
    ack(&mut s, t0, 1);
    assert!(s.is_finished(h));
    while let Some(ev) = s.poll_event() {
        if let ServerEvent::Closed { transfer, .. } = ev {
            assert_eq!(transfer, h);
        }
    }
    assert_eq!(s.active(), 0);
    s.read_ahead();
    assert!(hints(&log).is_empty());

    let mut up: Server<Recording, VecSink, Vec<Slot<Recording, VecSink>>> = Server::new(
        ServerConfig {
            allow_write: true,
            ..ServerConfig::default()
        },
        vec![Slot::new()],
    );
    let Some(inc) = up.handle(t0, from_peer(LISTEN, b"\x00\x02up\x00octet\x00")) else {
        panic!("write request")
    };
    up.accept_write(t0, &inc, VecSink::default(), PORT)
        .expect("accepted");
    up.read_ahead();
    assert_eq!(drain(&mut up, t0, &mut buf).len(), 1);
    up.read_ahead();
}

// --- JailedFile: a hint never changes what read_at returns ---------------

const BLK: usize = 65464;

/// A file of `size` bytes in a fresh root, opened through the jail.
fn jailed(size: usize) -> (tempfile::TempDir, Vec<u8>, JailedFile) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = content(size);
    std::fs::write(dir.path().join("img"), &data).expect("write");
    let file = JailedDir::new(dir.path())
        .expect("root")
        .open_file(&ValidPath::new(b"img").expect("path"))
        .expect("open");
    (dir, data, file)
}

/// What a read of `len` bytes at `offset` must return: the file's bytes.
fn expect(data: &[u8], offset: u64, len: usize) -> &[u8] {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    &data[start..(start + len).min(data.len())]
}

fn read(f: &mut JailedFile, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let n = f.read_full_at(offset, &mut buf).expect("read");
    buf.truncate(n);
    buf
}

/// Reading `len` bytes at `offset` from `f` returns the file's bytes
/// (`what` names the case in the failure message).
fn assert_reads_exact(f: &mut JailedFile, data: &[u8], offset: u64, len: usize, what: &str) {
    assert_eq!(
        read(f, offset, len),
        expect(data, offset, len),
        "{what}: read {offset}+{len}"
    );
}

#[test]
fn jailed_file_hinted_block_reads_exact() {
    // The engine's pattern (RFC 1350 §2 lock-step): hint block n+1, then
    // read it; also the hinted block read again (a retransmission).
    let size = 5 * BLK + 1234;
    let (_dir, data, mut f) = jailed(size);
    for n in 0..6u64 {
        let off = n * BLK as u64;
        f.read_ahead(off, BLK);
        for _ in 0..2 {
            let mut buf = vec![0u8; BLK];
            // A single read_at, as the kept block should answer it whole.
            let got = f.read_at(off, &mut buf).expect("read");
            assert_eq!(&buf[..got], expect(&data, off, BLK), "block {n}");
            assert_eq!(got, expect(&data, off, BLK).len());
        }
    }
    // The last block is short: at its end, end of file.
    let end = size as u64;
    assert_eq!(f.read_at(end, &mut [0u8; 10]).expect("read"), 0);
}

#[test]
fn jailed_file_partial_overlaps_and_other_offsets() {
    let (_dir, data, mut f) = jailed(4 * BLK);
    let kept = BLK as u64;
    f.read_ahead(kept, BLK);
    let cases: [(u64, usize); 10] = [
        (kept, BLK),              // exactly the kept block
        (kept + 10, 100),         // inside it
        (kept + 10, BLK),         // starts inside, runs past its end
        (kept - 10, BLK),         // starts before, ends inside
        (kept - 10, BLK + 20),    // covers it and more
        (kept + BLK as u64, BLK), // right after it
        (kept + BLK as u64 - 1, 2),
        (0, BLK), // before it
        (3 * BLK as u64, BLK),
        (kept, 0), // empty request
    ];
    for (off, len) in cases {
        assert_reads_exact(&mut f, &data, off, len, "around the kept block");
    }
}

#[test]
fn jailed_file_hints_at_and_past_the_end() {
    let size = 2 * BLK + 100;
    let (_dir, data, mut f) = jailed(size);
    let end = size as u64;
    // A hint running past the end keeps the short tail: reads of it and
    // past it are exact, end of file included.
    f.read_ahead(2 * BLK as u64, BLK);
    assert_reads_exact(&mut f, &data, 2 * BLK as u64, BLK, "kept tail");
    assert_reads_exact(&mut f, &data, end - 1, 10, "kept tail");
    assert_eq!(read(&mut f, end, 10), b"");
    assert_eq!(read(&mut f, end + 5, 10), b"");
    // Hints wholly past the end, absurd offsets, empty hints and hints
    // longer than what is kept (the first MAX_READ_AHEAD bytes are): no
    // panic, every read returns the file's bytes.
    for (off, len) in [
        (end, BLK),
        (end + 1, 512),
        (1 << 40, BLK),
        (u64::MAX, BLK),
        (u64::MAX - 3, 8),
        (0, 0),
        (0, MAX_READ_AHEAD + 1),
        (0, usize::MAX),
    ] {
        f.read_ahead(off, len);
        for (o, l) in [(0, BLK), (BLK as u64 - 7, BLK), (end - 3, BLK), (end, 1)] {
            assert_reads_exact(&mut f, &data, o, l, &format!("hint {off}+{len}"));
        }
    }
}

#[test]
fn jailed_file_random_hints_and_reads() {
    // Any interleaving of hints and reads, at block boundaries and not.
    let size = 3 * BLK + 777;
    let (_dir, data, mut f) = jailed(size);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    for step in 0..3000 {
        let aligned = rnd(2) == 0;
        let off = if aligned {
            rnd(5) * BLK as u64
        } else {
            rnd(size as u64 + 2000)
        };
        let len = match rnd(4) {
            0 => BLK,
            1 => rnd(512) as usize,
            2 => rnd(MAX_READ_AHEAD as u64 + 100) as usize,
            _ => 512,
        };
        if rnd(2) == 0 {
            f.read_ahead(off, len);
        } else {
            let mut buf = vec![0u8; len];
            let n = f.read_at(off, &mut buf).expect("read");
            // read_at may stop short; what it gives must be the file's.
            assert_eq!(&buf[..n], &expect(&data, off, len)[..n], "step {step}");
            assert!(
                n > 0 || expect(&data, off, len).is_empty(),
                "step {step}: no progress"
            );
            assert_reads_exact(&mut f, &data, off, len, &format!("step {step}"));
        }
    }
}

#[test]
fn jailed_file_rewritten_after_a_hint() {
    // Defined behaviour: a read the kept block answers returns the file as
    // it was when the block was read (the hint), the same as reading ahead
    // without keeping anything would have; every other read sees the file
    // as it is now.
    use std::os::unix::fs::FileExt;
    let (dir, old, mut f) = jailed(3 * 4096);
    f.read_ahead(4096, 4096);
    let new = vec![0xeeu8; 3 * 4096];
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("img"))
        .expect("open for writing")
        .write_all_at(&new, 0)
        .expect("rewrite in place");
    assert_eq!(read(&mut f, 4096, 4096), &old[4096..8192]);
    assert_eq!(read(&mut f, 4096 + 10, 100), &old[4106..4206]);
    assert_eq!(read(&mut f, 0, 4096), &new[..4096]);
    assert_eq!(read(&mut f, 4096, 8192), &new[4096..]); // partly outside: fresh
    // A repeated hint for the kept range keeps it; a hint elsewhere reads
    // the file as it is now.
    f.read_ahead(4096, 4096);
    assert_eq!(read(&mut f, 4096, 4096), &old[4096..8192]);
    f.read_ahead(8192, 4096);
    assert_eq!(read(&mut f, 8192, 4096), &new[8192..]);
    assert_eq!(read(&mut f, 4096, 4096), &new[4096..8192]);
}

// --- the std driver on a real socket -------------------------------------

#[test]
fn std_driver_lock_step_at_max_blksize_arrives_sha256_equal() {
    // RFC 2348: blksize 65464, the largest; RFC 1350 §2 lock-step
    // (windowsize 1, RFC 7440 §3), where the driver reads ahead. One file
    // ends with a short block, one is whole blocks and ends with an empty
    // block (RFC 1350 §6), one is smaller than a block.
    let dir = tempfile::tempdir().expect("tempdir");
    let files = [
        ("tail", (4 << 20) + 1),
        ("whole", 16 * BLK),
        ("small", 1000),
    ];
    for (name, size) in files {
        std::fs::write(dir.path().join(name), content(size)).expect("write");
    }
    let config = TftpServerConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path().into());
    let server = TftpServer::bind(config)
        .expect("bind")
        .spawn()
        .expect("spawn");
    for (name, size) in files {
        for blksize in [65464u16, 1468] {
            let (got, windowsize) = fetch(server.local_addr(), name, blksize, 1);
            assert_eq!(windowsize, 1);
            assert_eq!(got.len(), size, "{name} at {blksize}");
            assert!(
                Sha256::digest(&got) == Sha256::digest(content(size)),
                "{name} at blksize {blksize}: SHA-256 differs"
            );
        }
    }
    let stats = server.stop().expect("stop");
    assert_eq!(stats.failed, 0, "{stats:?}");
}
