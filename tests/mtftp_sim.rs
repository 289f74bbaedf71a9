//! Deterministic group simulation of PXE MTFTP: one server engine and N
//! client engines on an in-memory network with a multicast group, seeded
//! per-receiver loss, duplication and reordering; time is virtual, nothing
//! sleeps.
//!
//! Clients join before the stream starts, mid-file and after it ended; the
//! master may vanish mid-stream. Every surviving client must end with the
//! exact file. Rules cited as PXE 2.1 MTFTP, numbered as in the project's
//! notes (`pxe-and-zenworks-facts.md` §2.5, items 1–10).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use preboot::Instant;
use preboot::engine::Datagram;
use preboot::fs::{FileSource, MemFile, MemFs, VecSink};
use preboot::mtftp::Channel;
use preboot::mtftp::client::{Client, ClientConfig, ClientEvent, FallBackReason};
use preboot::mtftp::server::{Server, ServerConfig, ServerEvent, Slot};
use preboot::wire::tftp::ErrorCode;

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

const SPORT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1759);
const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 239, 239, 2), 1760);
/// The stream's own port in `fresh_port` mode (notes §2.5 item 10).
const FRESH: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
const FILE: &str = "boot/pxeboot.0";

const MS: u64 = 1_000;
const S: u64 = 1_000_000;

fn client_addr(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 10 + i as u8), GROUP.port())
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: u64,
    seq: u64,
    /// The receiving socket's address as the engine sees it: the group
    /// for multicast, else the destination.
    local: SocketAddrV4,
    from: SocketAddrV4,
    to: SocketAddrV4,
    data: Vec<u8>,
}

struct Net {
    rng: Rng,
    loss: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
}

impl Net {
    fn push(
        &mut self,
        now: u64,
        local: SocketAddrV4,
        from: SocketAddrV4,
        to: SocketAddrV4,
        data: &[u8],
    ) {
        let copies = if self.rng.chance(1) { 2 } else { 1 };
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
                local,
                from,
                to,
                data: data.to_vec(),
            }));
        }
    }
}

/// One simulated workstation.
struct Node {
    join_at: u64,
    /// It vanishes (powered off) once it is master and holds this many
    /// blocks.
    die_as_master_after: Option<u32>,
    dead: bool,
    client: Option<Client<'static, VecSink>>,
    events: Vec<ClientEvent>,
    was_master: bool,
}

struct Setup {
    size: usize,
    loss: u64,
    seed: u64,
    joins: Vec<u64>,
    /// (node, blocks): that node dies once master with this many blocks.
    kill: Option<(usize, u32)>,
    /// The server answers (false: no MTFTP server at all).
    server_up: bool,
    /// The file is in the server's MTFTP table.
    in_table: bool,
    /// The stream speaks from a fresh port (atftpd) instead of SPORT.
    fresh_port: bool,
}

struct Report {
    data: Vec<u8>,
    nodes: Vec<Node>,
    streams: u32,
    server_datagrams: u64,
    server_bytes: u64,
    end: u64,
}

fn file_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(size);
    v
}

fn channel() -> Channel {
    Channel {
        group: GROUP,
        server: SPORT,
        listen: Duration::from_secs(1),
        delay: Duration::from_millis(600),
    }
}

fn dg<'a>(local: SocketAddrV4, remote: SocketAddrV4, payload: &'a [u8]) -> Datagram<'a> {
    Datagram {
        local,
        remote,
        payload,
    }
}

fn run(setup: Setup) -> Report {
    run_with_window(setup, 1)
}

/// `run` with the server sending `window` blocks ahead of the master's
/// last ACK ([`ServerConfig::window`]).
fn run_with_window(setup: Setup, window: u16) -> Report {
    let data: &'static [u8] = Vec::leak(file_bytes(setup.size, setup.seed ^ 0x5A5A));
    let files: &'static [(&'static str, &'static [u8])] = Vec::leak(vec![(FILE, data)]);
    let mut fs = MemFs::new(files);
    let slots: Vec<Slot<MemFile<'static>>> = (0..2).map(|_| Slot::new()).collect();
    let mut server = Server::new(
        ServerConfig {
            timeout: Duration::from_millis(100),
            max_retries: 5,
            window,
        },
        slots,
    );
    let mut net = Net {
        rng: Rng((setup.seed << 1) | 1),
        loss: setup.loss,
        queue: BinaryHeap::new(),
        seq: 0,
    };
    let mut nodes: Vec<Node> = setup
        .joins
        .iter()
        .enumerate()
        .map(|(i, &join_at)| Node {
            join_at,
            die_as_master_after: setup.kill.filter(|k| k.0 == i).map(|k| k.1),
            dead: false,
            client: None,
            events: Vec::new(),
            was_master: false,
        })
        .collect();
    let ccfg = ClientConfig {
        timeout: Duration::from_millis(100),
        max_retries: 4,
        max_silent_opens: 2,
        ..ClientConfig::new(channel())
    };
    let mut buf = vec![0u8; 1024];
    let (mut streams, mut server_datagrams, mut server_bytes) = (0u32, 0u64, 0u64);
    let mut now = 0u64;
    for _step in 0..20_000_000u64 {
        let t = Instant::from_micros(now);
        // Joins.
        for node in nodes.iter_mut() {
            if node.client.is_none() && !node.dead && node.join_at <= now {
                node.client = Some(Client::new(t, FILE.as_bytes(), ccfg, VecSink::default()));
            }
        }
        // Transmits and events.
        for (i, node) in nodes.iter_mut().enumerate() {
            let Some(c) = node.client.as_mut().filter(|_| !node.dead) else {
                continue;
            };
            while let Some(tx) = c.poll_transmit(t, &mut buf).unwrap() {
                let to = tx.remote;
                net.push(now, to, client_addr(i), to, &buf[..tx.len]);
            }
            while let Some(e) = c.poll_event() {
                node.was_master |= e == ClientEvent::Master;
                node.events.push(e);
            }
            if let Some(n) = node.die_as_master_after {
                if c.is_master() && c.blocks() >= n {
                    node.dead = true;
                }
            }
        }
        while let Some(tx) = server.poll_transmit(t, &mut buf).unwrap() {
            server_datagrams += 1;
            server_bytes += tx.len as u64;
            let from = tx.local.expect("a server datagram names its socket");
            if tx.remote == GROUP {
                // Multicast: each joined, live node gets its own copy
                // (and its own loss).
                for (i, node) in nodes.iter().enumerate() {
                    if node.client.is_some() && !node.dead {
                        net.push(now, GROUP, from, client_addr(i), &buf[..tx.len]);
                    }
                }
            } else {
                net.push(now, tx.remote, from, tx.remote, &buf[..tx.len]);
            }
        }
        while let Some(e) = server.poll_event() {
            if matches!(e, ServerEvent::Started { .. }) {
                streams += 1;
            }
        }
        let all_done = nodes
            .iter()
            .all(|n| n.dead || n.client.as_ref().is_some_and(|c| c.is_finished()));
        if all_done && server.active() == 0 {
            break;
        }
        // Advance virtual time to the next thing that happens.
        let mut next = u64::MAX;
        if let Some(Reverse(p)) = net.queue.peek() {
            next = next.min(p.at);
        }
        for node in nodes.iter() {
            if node.dead {
                continue;
            }
            match &node.client {
                None => next = next.min(node.join_at),
                Some(c) => {
                    if let Some(d) = c.poll_timeout() {
                        next = next.min(d.as_micros());
                    }
                }
            }
        }
        if let Some(d) = server.poll_timeout() {
            next = next.min(d.as_micros());
        }
        assert_ne!(next, u64::MAX, "simulation stalled");
        now = now.max(next);
        assert!(now < 3_600 * S, "an hour of virtual time: stuck");
        let t = Instant::from_micros(now);
        while net.queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Reverse(p) = net.queue.pop().unwrap();
            if p.to == SPORT || p.to == FRESH {
                if !setup.server_up {
                    continue;
                }
                if let Some(inc) = server.handle(t, dg(p.local, p.from, &p.data)) {
                    if !setup.in_table || inc.path.as_str() != FILE {
                        server.refuse(&inc, ErrorCode::FileNotFound);
                        continue;
                    }
                    let file = fs.open(&inc.path).expect("file exists");
                    let local = if setup.fresh_port { FRESH } else { SPORT };
                    let _ = server.accept(t, &inc, file, GROUP, local);
                }
            } else if let Some(i) = (0..nodes.len()).find(|&i| client_addr(i) == p.to) {
                let node = &mut nodes[i];
                if let Some(c) = node.client.as_mut().filter(|_| !node.dead) {
                    c.handle(t, dg(p.local, p.from, &p.data));
                }
            }
        }
        for node in nodes.iter_mut().filter(|n| !n.dead) {
            if let Some(c) = node.client.as_mut() {
                c.handle_timeout(t);
            }
        }
        server.handle_timeout(t);
    }
    Report {
        data: data.to_vec(),
        nodes,
        streams,
        server_datagrams,
        server_bytes,
        end: now,
    }
}

/// Five clients that all join within the listen time, no loss: one
/// round.
fn one_round() -> Setup {
    Setup {
        size: 200 * 512 + 77,
        loss: 0,
        seed: 1,
        joins: vec![0, 10 * MS, 200 * MS, 500 * MS, 900 * MS],
        kill: None,
        server_up: true,
        in_table: true,
        fresh_port: false,
    }
}

/// Eight clients joining before the start, mid-file and after the end,
/// at 10 % loss.
fn staggered(seed: u64) -> Setup {
    Setup {
        size: 300 * 512 + 300,
        loss: 10,
        seed,
        joins: vec![0, 0, 300 * MS, 1_500 * MS, 3 * S, 5 * S, 8 * S, 120 * S],
        kill: None,
        server_up: true,
        in_table: true,
        fresh_port: false,
    }
}

/// Five clients, 5 % loss; the first (the master) dies after 120 blocks.
fn master_lost(seed: u64) -> Setup {
    Setup {
        size: 256 * 512,
        loss: 5,
        seed,
        joins: vec![0, 100 * MS, 200 * MS, 2 * S, 4 * S],
        kill: Some((0, 120)),
        server_up: true,
        in_table: true,
        fresh_port: false,
    }
}

/// Every live node holds the exact file and said so with `Completed`.
fn check_all_exact(r: &Report) {
    for (i, node) in r.nodes.iter().enumerate() {
        if node.dead {
            continue;
        }
        let c = node.client.as_ref().expect("joined");
        assert!(
            c.is_complete(),
            "node {i} incomplete: {} blocks; events {:?}",
            c.blocks(),
            last(&node.events)
        );
        assert!(c.sink().data == r.data, "node {i}: bytes differ");
        assert!(c.sink().finished, "node {i}: sink not finished");
        let completed = node.events.iter().find_map(|e| match e {
            ClientEvent::Completed { bytes, .. } => Some(*bytes),
            _ => None,
        });
        assert_eq!(completed, Some(r.data.len() as u64), "node {i}");
    }
}

fn last(events: &[ClientEvent]) -> &[ClientEvent] {
    &events[events.len().saturating_sub(5)..]
}

fn summary(name: &str, r: &Report) {
    let blocks = r.data.len() / 512 + 1;
    println!(
        "{name}: {} clients, file {} B ({blocks} blocks), {} streams, server sent {} datagrams / {} B ({:.2}x the file), done at {:.1} s virtual; opens per client {:?}",
        r.nodes.len(),
        r.data.len(),
        r.streams,
        r.server_datagrams,
        r.server_bytes,
        r.server_bytes as f64 / r.data.len().max(1) as f64,
        r.end as f64 / S as f64,
        r.nodes
            .iter()
            .map(|n| n.client.as_ref().map_or(0, |c| c.opens()))
            .collect::<Vec<_>>()
    );
}

// Items 1–4: clients that all join within the listen time share one
// stream; exactly one opens (the first to time out) and is master, the
// others only listen; without loss the server sends each block once to
// the group plus block 1 unicast.
#[test]
fn one_round_serves_everyone_who_listens() {
    let r = run(one_round());
    summary("one round", &r);
    check_all_exact(&r);
    assert_eq!(r.streams, 1);
    assert_eq!(r.nodes.iter().filter(|n| n.was_master).count(), 1);
    assert!(r.nodes[0].was_master, "the first to listen opens first");
    let opens: u16 = r
        .nodes
        .iter()
        .map(|n| n.client.as_ref().unwrap().opens())
        .sum();
    assert_eq!(opens, 1, "only the master opened");
    // Block 1 twice (unicast and group), every other block once.
    assert_eq!(r.server_datagrams, 201 + 1);
}

// Items 1, 6: joiners before the start, mid-file (they keep what they
// hear and re-open for the head after MTFTP_DELAY) and after the end
// (they hear nothing and open a stream of their own), at 10 % loss on
// every link, each receiver losing its own copies.
#[test]
fn joiners_before_mid_file_and_after_the_end_at_10_percent_loss() {
    for seed in 1..=4u64 {
        let r = run(staggered(10 + seed));
        summary("staggered joins, 10 % loss", &r);
        check_all_exact(&r);
        assert!(r.streams >= 2, "late joiners needed more rounds");
        // The one after the end had to open.
        assert!(r.nodes[7].client.as_ref().unwrap().opens() >= 1);
    }
}

// Item 7: the master vanishes mid-stream; the server stops the stream
// after its retries, the listeners re-open after MTFTP_DELAY, one becomes
// the new master, and everyone left ends with the exact file (keeping
// the blocks of the first round).
#[test]
fn master_lost_mid_stream() {
    for seed in 1..=4u64 {
        let r = run(master_lost(40 + seed));
        summary("master lost", &r);
        assert!(r.nodes[0].dead, "the master died as planned");
        check_all_exact(&r);
        assert!(r.streams >= 2);
        let new_masters = r.nodes[1..].iter().filter(|n| n.was_master).count();
        assert!(new_masters >= 1, "a listener took over");
    }
}

// RFC 1350 §6 block edges within MTFTP's 512-byte blocks: empty file,
// one short block, exact multiples (an empty last block), at 20 % loss.
#[test]
fn block_edges_at_20_percent_loss() {
    for (i, size) in [0usize, 1, 511, 512, 1024, 5 * 512 + 1]
        .into_iter()
        .enumerate()
    {
        let r = run(Setup {
            size,
            loss: 20,
            seed: 100 + i as u64,
            joins: vec![0, 500 * MS, 3 * S],
            kill: None,
            server_up: true,
            in_table: true,
            fresh_port: false,
        });
        check_all_exact(&r);
    }
}

// Item 8: no MTFTP server at all — the client listens MTFTP_TMOUT, opens
// `max_silent_opens` times (each `max_retries + 1` RRQs, MTFTP_DELAY
// apart) and reports "fall back to plain TFTP".
#[test]
fn silence_falls_back_to_tftp() {
    let r = run(Setup {
        size: 1000,
        loss: 0,
        seed: 7,
        joins: vec![0],
        kill: None,
        server_up: false,
        in_table: true,
        fresh_port: false,
    });
    let node = &r.nodes[0];
    assert_eq!(
        node.events.last(),
        Some(&ClientEvent::FallBack {
            reason: FallBackReason::NoAnswer
        })
    );
    let c = node.client.as_ref().unwrap();
    assert_eq!(c.opens(), 2);
    assert!(c.is_finished() && !c.is_complete());
    // 1 s listen + 2 opens of 5 × 100 ms + one 600 ms delay between them.
    assert_eq!(r.end, S + 2 * 500 * MS + 600 * MS);
}

// Item 8: an ERROR in answer to the open (the file is not served by
// MTFTP) falls back at once.
#[test]
fn error_answer_falls_back_to_tftp() {
    let r = run(Setup {
        size: 1000,
        loss: 0,
        seed: 8,
        joins: vec![0],
        kill: None,
        server_up: true,
        in_table: false,
        fresh_port: false,
    });
    assert_eq!(
        r.nodes[0].events.last(),
        Some(&ClientEvent::FallBack {
            reason: FallBackReason::PeerError(ErrorCode::FileNotFound)
        })
    );
    assert_eq!(r.nodes[0].client.as_ref().unwrap().opens(), 1);
}

// Item 10: the stream may speak from a fresh port, as atftpd does; the
// master ACKs to the port block 1 came from, and late joiners still end
// with the file.
#[test]
fn stream_from_a_fresh_port() {
    let r = run(Setup {
        size: 100 * 512 + 5,
        loss: 10,
        seed: 77,
        joins: vec![0, 300 * MS, 1_200 * MS, 30 * S],
        kill: None,
        server_up: true,
        in_table: true,
        fresh_port: true,
    });
    summary("fresh port", &r);
    check_all_exact(&r);
}

// A send-ahead window (ServerConfig::window, not in PXE 2.1, which is
// lock-step) changes nothing of items 3–7 for a client that keeps blocks
// that come early: one round still serves everyone who listens, each
// block goes out once when nothing is lost.
#[test]
fn window_of_16_serves_one_round_with_each_block_once() {
    let r = run_with_window(one_round(), 16);
    summary("window 16, one round", &r);
    check_all_exact(&r);
    assert_eq!(r.streams, 1);
    assert_eq!(r.server_datagrams, 201 + 1);
    let lock_step = run(one_round());
    assert!(
        r.end < lock_step.end,
        "blocks in flight end sooner: {} vs {} µs",
        r.end,
        lock_step.end
    );
}

// Items 6 and 7 with a window: staggered joiners at 10 % loss (go-back to
// the first unacknowledged block on the timeout) and a master lost
// mid-stream; everyone ends with the exact file.
#[test]
fn window_of_16_with_loss_late_joiners_and_a_lost_master() {
    for seed in 1..=4u64 {
        let r = run_with_window(staggered(70 + seed), 16);
        summary("window 16, staggered joins, 10 % loss", &r);
        check_all_exact(&r);
        let r = run_with_window(master_lost(80 + seed), 16);
        summary("window 16, master lost", &r);
        assert!(r.nodes[0].dead, "the master died as planned");
        check_all_exact(&r);
        assert!(
            r.nodes[1..].iter().any(|n| n.was_master),
            "a listener took over"
        );
    }
}
