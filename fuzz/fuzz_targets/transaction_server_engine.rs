//! The transaction server engine (docs/transaction-protocol.md §3–§6,
//! version 2) driven by arbitrary operation sequences: raw datagrams,
//! client engines running real handshakes and requests (so valid, sealed
//! frames reach the deep states; with a bound key, an unknown key, a wrong
//! pinned server key, and auto-enrolment on or off, §3.4), replays,
//! tampering and truncation of recorded frames, time steps and timeouts.
//!
//! Asserts: no panic; at most one reply per datagram, to its sender, never
//! larger than a frame; refusals are no larger than the request (§5, §7.5);
//! sessions stay within the configured maxima (§3.5, so the
//! one-entry-per-session reply cache is bounded); no task outcome is
//! applied more often than tasks were handed out (§6).
#![no_main]

use preboot::engine::Datagram;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::policy::{ImagingProxy, ImagingRule, MemoryStore, Condition, WorkstationId, WorkstationObject};
use preboot::transaction::{
    Client, ClientConfig, HandshakeSeed, Policy, Server, ServerConfig, StaticKey, WorkstationKeys,
};
use preboot::wire::transaction::messages::{
    InfoAck, MenuReply, Outcome, TaskReply, TaskReport, WorkstationInfo,
};
use preboot::wire::transaction::{Frame, MAX_FRAME_LEN, Status};

/// The receiving socket (these engines do not look at it).
const ANY: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);

fn key(tag: u8) -> StaticKey {
    StaticKey::from_bytes(core::array::from_fn(|i| tag ^ (i as u8).wrapping_mul(41) ^ 0x5a))
        .expect("key")
}
/// The server's key is key(0); workstation 02:00:00:00:00:01's is key(1)
/// (§3.4); key(2) and key(3) are unknown.

#[derive(Arbitrary, Debug)]
enum Op {
    /// A new client engine (real handshake) on peer `peer`.
    NewClient { peer: u8, nonce: [u8; 16], ephemeral: [u8; 32], key: u8 },
    /// Deliver what a client wants to send.
    ClientSend { client: u8 },
    /// Ask a client to start a request.
    ClientRequest { client: u8, kind: u8, task: u8, outcome: u8 },
    /// Arbitrary bytes from `peer`.
    Raw { peer: u8, bytes: Vec<u8> },
    /// A recorded datagram again, from its own or another peer.
    Replay { index: u8, peer: Option<u8> },
    /// A recorded datagram with one byte changed.
    Tamper { index: u8, at: u16, xor: u8 },
    /// A recorded datagram cut short, or extended.
    Truncate { index: u8, len: u16 },
    Extend { index: u8, extra: Vec<u8> },
    /// Time passes.
    Advance { ms: u16 },
    /// Timers fire.
    Timeouts,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_sessions: u8,
    max_half_open: u8,
    auto_enrol: bool,
    half_open_ms: u16,
    idle_ms: u16,
    drop_replies: u8,
    ops: Vec<Op>,
}

/// Counts tasks handed out, to check reports are applied at most once each.
struct Counting {
    proxy: ImagingProxy<MemoryStore>,
    handed_out: u64,
}

impl Policy for Counting {
    fn object_of(&self, id: &WorkstationId) -> Option<WorkstationId> {
        self.proxy.object_of(id)
    }
    fn register<'s>(&'s mut self, now: Instant, who: &WorkstationId, info: &WorkstationInfo<'_>) -> Result<InfoAck<'s>, Status> {
        self.proxy.register(now, who, info)
    }
    fn menu<'s>(&'s mut self, now: Instant, who: &WorkstationId, info: &WorkstationInfo<'_>) -> Result<MenuReply<'s>, Status> {
        self.proxy.menu(now, who, info)
    }
    fn tasks<'s>(&'s mut self, now: Instant, who: &WorkstationId, info: &WorkstationInfo<'_>) -> Result<TaskReply<'s>, Status> {
        let r = self.proxy.tasks(now, who, info)?;
        self.handed_out += r.tasks.len() as u64;
        Ok(r)
    }
    fn report(&mut self, now: Instant, who: &WorkstationId, info: &WorkstationInfo<'_>, report: &TaskReport<'_>) -> Result<(), Status> {
        self.proxy.report(now, who, info, report)
    }
}

fn store() -> MemoryStore {
    let mut s = MemoryStore::default();
    let mut w = WorkstationObject::new(WorkstationId::Mac([2, 0, 0, 0, 0, 1]), "ws1");
    w.image_next_boot = true;
    w.image = Some("images/a.img".into());
    w.maintenance = true;
    s.workstations.push(w);
    s.server.rules.push(ImagingRule {
        name: "all".into(),
        when: Condition::RamMb(preboot::policy::Cmp::Ge, 0),
        image: "images/b.img".into(),
        force: false,
        partitions: vec![1],
    });
    s
}

fn info(peer: u8) -> WorkstationInfo<'static> {
    let mut i = WorkstationInfo::default();
    let _ = i.macs.push([2, 0, 0, 0, 0, peer % 3]);
    i.ram_mb = Some(4096);
    i
}

fn peer_addr(p: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, p % 8), 40000 + u16::from(p % 4))
}

struct Cl {
    peer: SocketAddrV4,
    engine: Client,
    tasks: Vec<u32>,
}

fuzz_target!(|input: Input| {
    let server_addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 4012);
    let config = ServerConfig {
        max_sessions: usize::from(input.max_sessions % 8),
        max_half_open: usize::from(input.max_half_open % 8),
        half_open_timeout: Duration::from_millis(u64::from(input.half_open_ms)),
        idle_timeout: Duration::from_millis(u64::from(input.idle_ms)),
        ..ServerConfig::default()
    };
    let mut counter = 0u64;
    let random = move |buf: &mut [u8]| {
        for b in buf {
            counter = counter.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (counter >> 56) as u8;
        }
    };
    let policy = Counting { proxy: ImagingProxy::new(store()), handed_out: 0 };
    let mut keys = WorkstationKeys::new(input.auto_enrol);
    keys.insert(WorkstationId::Mac([2, 0, 0, 0, 0, 1]), key(1).public()).expect("key");
    let mut server = Server::new(config, key(0), keys, policy, random);
    let max_sessions = config.max_sessions.max(1) + config.max_half_open.max(1);
    let mut now = Instant::ZERO;
    let mut clients: Vec<Cl> = Vec::new();
    let mut history: Vec<(SocketAddrV4, Vec<u8>)> = Vec::new();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut drop_counter = 0u32;

    for op in input.ops.into_iter().take(1000) {
        let mut sent: Option<(SocketAddrV4, Vec<u8>)> = None;
        match op {
            Op::NewClient { peer, nonce, ephemeral, key: k } => {
                if clients.len() < 8 {
                    // Pinned server key: the right one, or (k % 5 == 4) a wrong one.
                    let pinned = if k % 5 == 4 { key(9).public() } else { key(0).public() };
                    let cfg = ClientConfig::new(server_addr, pinned, key(k % 4));
                    let seed = HandshakeSeed { nonce, ephemeral };
                    clients.push(Cl { peer: peer_addr(peer), engine: Client::new(cfg, seed, now), tasks: Vec::new() });
                }
            }
            Op::ClientSend { client } => {
                if let Some(c) = clients.get_mut(usize::from(client) % 8) {
                    c.engine.handle_timeout(now);
                    if let Some(t) = c.engine.poll_transmit(now, &mut buf).unwrap() {
                        assert_eq!(t.remote, server_addr);
                        sent = Some((c.peer, buf[..t.len].to_vec()));
                    }
                }
            }
            Op::ClientRequest { client, kind, task, outcome } => {
                if let Some(c) = clients.get_mut(usize::from(client) % 8) {
                    let _ = match kind % 4 {
                        0 => c.engine.send_info(now, &info(c.peer.ip().octets()[3])),
                        1 => c.engine.query_menu(now),
                        2 => c.engine.query_tasks(now),
                        _ => {
                            let id = c.tasks.get(usize::from(task) % c.tasks.len().max(1)).copied().unwrap_or(u32::from(task));
                            c.engine.report(now, &TaskReport { task_id: id, outcome: Outcome::from(outcome % 4), percent: None, reason: None })
                        }
                    };
                }
            }
            Op::Raw { peer, bytes } => sent = Some((peer_addr(peer), bytes)),
            Op::Replay { index, peer } => {
                if let Some((p, d)) = history.get(usize::from(index) % history.len().max(1)) {
                    sent = Some((peer.map_or(*p, peer_addr), d.clone()));
                }
            }
            Op::Tamper { index, at, xor } => {
                if let Some((p, d)) = history.get(usize::from(index) % history.len().max(1)) {
                    let mut d = d.clone();
                    if !d.is_empty() {
                        let i = usize::from(at) % d.len();
                        d[i] ^= xor.max(1);
                    }
                    sent = Some((*p, d));
                }
            }
            Op::Truncate { index, len } => {
                if let Some((p, d)) = history.get(usize::from(index) % history.len().max(1)) {
                    let n = usize::from(len) % (d.len() + 1);
                    sent = Some((*p, d[..n].to_vec()));
                }
            }
            Op::Extend { index, extra } => {
                if let Some((p, d)) = history.get(usize::from(index) % history.len().max(1)) {
                    let mut d = d.clone();
                    d.extend_from_slice(&extra);
                    sent = Some((*p, d));
                }
            }
            Op::Advance { ms } => now = now + Duration::from_millis(u64::from(ms)),
            Op::Timeouts => {
                server.handle_timeout(now);
                for c in &mut clients {
                    c.engine.handle_timeout(now);
                }
            }
        }
        if let Some((from, d)) = sent {
            server.handle(now, Datagram { local: ANY, remote: from, payload: &d });
            let mut replies = 0;
            while let Some(t) = server.poll_transmit(now, &mut buf).unwrap() {
                replies += 1;
                assert!(replies <= 1, "more than one reply to one datagram");
                assert!(t.len <= MAX_FRAME_LEN);
                assert_eq!(t.remote, from, "replies go to the sender");
                let reply = &buf[..t.len];
                let f = Frame::new_checked(reply).expect("the server sends valid frames");
                assert!(f.message_type().is_reply());
                if f.status() != Status::Ok {
                    // §5, §7.5: refusals are never larger than the request.
                    assert!(t.len <= d.len(), "refusal amplifies: {} > {}", t.len, d.len());
                }
                drop_counter = drop_counter.wrapping_add(1);
                if input.drop_replies != 0 && drop_counter % u32::from(input.drop_replies) == 0 {
                    continue;
                }
                for c in clients.iter_mut().filter(|c| c.peer == from) {
                    c.engine.handle(now, Datagram { local: ANY, remote: server_addr, payload: reply });
                    if let Some(tr) = c.engine.task_reply() {
                        for t in &tr.tasks {
                            if !c.tasks.contains(&t.id) && c.tasks.len() < 32 {
                                c.tasks.push(t.id);
                            }
                        }
                    }
                    while c.engine.poll_event().is_some() {}
                }
            }
            if history.len() < 64 && !d.is_empty() {
                history.push((from, d));
            }
        }
        assert!(server.session_count() <= max_sessions, "{} sessions > {}", server.session_count(), max_sessions);
        assert!(server.established_count() <= server.session_count());
        let p = server.policy();
        assert!(p.proxy.reports_applied() <= p.handed_out, "a task outcome applied twice");
        let mut events = 0;
        while server.poll_event().is_some() {
            events += 1;
            assert!(events <= 65, "event queue unbounded");
        }
        if let Some(t) = server.poll_timeout() {
            let _ = t;
        }
    }
});
