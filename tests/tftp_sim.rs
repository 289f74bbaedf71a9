//! Deterministic pair simulator: the client engine and the server engine
//! talk through an in-memory link with seeded loss, duplication and
//! reordering; time is virtual, nothing sleeps.
//!
//! Checks issue 3's matrix: files of 0, 1, 511, 512, 513 bytes, 1 MiB and
//! 40 MiB arrive byte-exact at 20 % loss with windowsize 1, 4 and 64
//! (RFC 7440), including block-number rollover past 65535 at blksize 512;
//! in lock-step also with the file on disk reading ahead.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use preboot::Instant;
use preboot::driver::fs::JailedDir;
use preboot::engine::Datagram;
use preboot::fs::{FileSource, MemFs, VecSink};
use preboot::tftp::client::{Client, ClientConfig};
use preboot::tftp::server::{Server, ServerConfig, ServerEvent, Slot, TransferHandle};
use preboot::tftp::{Event, Rollover};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 2000);
const LISTEN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 69);
const TID: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: u64,
    seq: u64,
    from: SocketAddrV4,
    to: SocketAddrV4,
    data: Vec<u8>,
}

struct Link {
    rng: Rng,
    loss: u64,
    dup: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    sent: u64,
}

impl Link {
    fn send(&mut self, now: u64, from: SocketAddrV4, to: SocketAddrV4, data: &[u8]) {
        self.sent += 1;
        let copies = if self.rng.chance(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            if self.rng.chance(self.loss) {
                continue;
            }
            // 100 µs base delay plus up to 400 µs jitter: reorders.
            let at = now + 100 + self.rng.next() % 400;
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from,
                to,
                data: data.to_vec(),
            }));
        }
    }
}

struct Outcome {
    received: Vec<u8>,
    client_events: Vec<Event>,
    server_end: Option<Event>,
    datagrams: u64,
}

#[derive(Clone, Copy)]
struct Case {
    size: usize,
    blksize: Option<u16>,
    windowsize: Option<u16>,
    loss: u64,
    rollover: Rollover,
    seed: u64,
}

fn file_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut v = Vec::with_capacity(size);
    while v.len() < size {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(size);
    v
}

fn run(case: Case, data: &[u8]) -> Outcome {
    let files = [("boot/file.bin", data)];
    run_with(case, &mut MemFs::new(&files))
}

/// The simulation with the server's files from `fs`, driven in the order
/// the std driver uses: after sending, `read_ahead`.
fn run_with<S: FileSource>(case: Case, fs: &mut S) -> Outcome {
    let config = ServerConfig {
        timeout: Duration::from_millis(50),
        max_retries: 40,
        rollover: case.rollover,
        ..ServerConfig::default()
    };
    let slots: Vec<Slot<S::File, VecSink>> = (0..4).map(|_| Slot::new()).collect();
    let mut server = Server::new(config, slots);
    let mut link = Link {
        rng: Rng(case.seed | 1),
        loss: case.loss,
        dup: 3,
        queue: BinaryHeap::new(),
        seq: 0,
        sent: 0,
    };
    let ccfg = ClientConfig {
        blksize: case.blksize,
        windowsize: case.windowsize,
        tsize: true,
        timeout: Duration::from_millis(50),
        max_retries: 40,
        rollover: case.rollover,
        ..ClientConfig::default()
    };
    let mut now = 0u64;
    let mut client = Client::new(
        Instant::from_micros(now),
        LISTEN,
        b"/boot/file.bin",
        ccfg,
        VecSink::default(),
    );
    let mut handle: Option<TransferHandle> = None;
    let mut buf = vec![0u8; 65536 + 4];
    let mut client_events = Vec::new();
    let mut server_end = None;
    for _step in 0..50_000_000u64 {
        let t = Instant::from_micros(now);
        while let Some(tx) = client.poll_transmit(t, &mut buf).unwrap() {
            let to = if tx.remote == LISTEN { LISTEN } else { TID };
            link.send(now, CLIENT, to, &buf[..tx.len]);
        }
        while let Some(tx) = server.poll_transmit(t, &mut buf).unwrap() {
            let from = tx.local.expect("a server datagram names its socket");
            link.send(now, from, tx.remote, &buf[..tx.len]);
        }
        server.read_ahead();
        while let Some(e) = server.poll_event() {
            match e {
                ServerEvent::Transfer { event, .. } => {
                    if matches!(event, Event::Completed { .. } | Event::Failed { .. }) {
                        server_end = Some(event);
                    }
                }
                ServerEvent::Closed { transfer, .. } => {
                    assert_eq!(Some(transfer), handle);
                    handle = None;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        while let Some(e) = client.poll_event() {
            client_events.push(e);
        }
        if client.is_finished() && handle.is_none() {
            break;
        }
        // Advance virtual time to the next thing that happens.
        let mut next = u64::MAX;
        if let Some(Reverse(p)) = link.queue.peek() {
            next = next.min(p.at);
        }
        if let Some(d) = client.poll_timeout() {
            next = next.min(d.as_micros());
        }
        if let Some(d) = server.poll_timeout() {
            next = next.min(d.as_micros());
        }
        assert_ne!(next, u64::MAX, "simulation stalled");
        now = now.max(next);
        let t = Instant::from_micros(now);
        while link.queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Reverse(p) = link.queue.pop().unwrap();
            if p.to == CLIENT {
                client.handle(t, dg(CLIENT, p.from, &p.data));
            } else if let Some(inc) = server.handle(t, dg(p.to, p.from, &p.data)) {
                assert_eq!(p.to, LISTEN, "requests come to the listening port");
                let file = fs.open(&inc.path).expect("file exists");
                if handle.is_none() {
                    handle = server.accept_read(t, &inc, file, TID).ok();
                }
            }
        }
        client.handle_timeout(t);
        server.handle_timeout(t);
    }
    Outcome {
        received: client.into_sink().data,
        client_events,
        server_end,
        datagrams: link.sent,
    }
}

fn dg<'a>(local: SocketAddrV4, remote: SocketAddrV4, payload: &'a [u8]) -> Datagram<'a> {
    Datagram {
        local,
        remote,
        payload,
    }
}

fn check(case: Case) {
    let data = file_bytes(case.size, case.seed ^ 0xA5A5);
    let out = run(case, &data);
    verify(case, &data, out);
}

/// The same, with the file read from disk through a `JailedFile`, which
/// takes the lock-step read-ahead hints.
fn check_jailed(case: Case) {
    let data = file_bytes(case.size, case.seed ^ 0xA5A5);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("boot")).expect("mkdir");
    std::fs::write(dir.path().join("boot/file.bin"), &data).expect("write");
    let mut fs = JailedDir::new(dir.path()).expect("root");
    let out = run_with(case, &mut fs);
    verify(case, &data, out);
}

fn verify(case: Case, data: &[u8], out: Outcome) {
    assert!(
        out.received == data,
        "size {} window {:?}: received {} bytes, differs",
        case.size,
        case.windowsize,
        out.received.len()
    );
    let completed = out
        .client_events
        .iter()
        .find_map(|e| match e {
            Event::Completed { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .expect("client completed");
    assert_eq!(completed, case.size as u64);
    let started = out.client_events.iter().find_map(|e| match e {
        Event::Started(n) => Some(*n),
        _ => None,
    });
    // tsize (RFC 2349) is known up front.
    assert_eq!(started.expect("started").tsize, Some(case.size as u64));
    assert!(
        matches!(out.server_end, Some(Event::Completed { bytes, .. }) if bytes == case.size as u64),
        "server end {:?}",
        out.server_end
    );
    assert!(out.datagrams > 0);
}

const SMALL: [usize; 6] = [0, 1, 511, 512, 513, 1 << 20];

#[test]
fn small_files_at_20_percent_loss_all_windows() {
    for (i, &size) in SMALL.iter().enumerate() {
        for (j, w) in [1u16, 4, 64].into_iter().enumerate() {
            check(Case {
                size,
                blksize: Some(512),
                windowsize: Some(w),
                loss: 20,
                rollover: Rollover::ToZero,
                seed: 1 + (i * 3 + j) as u64,
            });
        }
    }
}

#[test]
fn small_files_without_options_and_at_max_blksize() {
    for (i, &size) in SMALL.iter().enumerate() {
        check(Case {
            size,
            blksize: None,
            windowsize: None,
            loss: 10,
            rollover: Rollover::ToZero,
            seed: 100 + i as u64,
        });
        check(Case {
            size,
            blksize: Some(65464),
            windowsize: Some(8),
            loss: 20,
            rollover: Rollover::ToZero,
            seed: 200 + i as u64,
        });
    }
}

// RFC 1350 §2 lock-step with the file read ahead (JailedFile): lost and
// duplicated DATA and ACKs make blocks be re-sent after a hint for the next
// one; every file still arrives exact, whole-block files (empty last block,
// RFC 1350 §6) included.
#[test]
fn lock_step_read_ahead_from_disk_at_20_percent_loss() {
    let sizes = [0, 1, 511, 512, 513, 3 * 65464, 3 * 65464 + 9, 1 << 20];
    for (i, &size) in sizes.iter().enumerate() {
        for (j, blksize) in [None, Some(512), Some(65464)].into_iter().enumerate() {
            check_jailed(Case {
                size,
                blksize,
                windowsize: Some(1),
                loss: 20,
                rollover: Rollover::ToZero,
                seed: 300 + (i * 3 + j) as u64,
            });
        }
    }
}

const BIG: usize = 40 << 20;

// 40 MiB at blksize 512 is 81 920 blocks: the block number wraps past
// 65535 (to 0 by default).
#[test]
fn forty_mib_window_1_rollover() {
    check(Case {
        size: BIG,
        blksize: Some(512),
        windowsize: Some(1),
        loss: 20,
        rollover: Rollover::ToZero,
        seed: 41,
    });
}

#[test]
fn forty_mib_window_4_rollover_to_one() {
    check(Case {
        size: BIG,
        blksize: Some(512),
        windowsize: Some(4),
        loss: 20,
        rollover: Rollover::ToOne,
        seed: 42,
    });
}

#[test]
fn forty_mib_window_64() {
    check(Case {
        size: BIG,
        blksize: Some(512),
        windowsize: Some(64),
        loss: 20,
        rollover: Rollover::ToZero,
        seed: 43,
    });
}
