//! Client/server pair simulation over an in-memory link with seeded loss,
//! duplication and reordering (docs/transaction-protocol.md §6; version 2
//! with auto-enrolment, §3.4): every conversation completes or fails
//! cleanly, and the server never performs a task twice.

use core::net::{Ipv4Addr, SocketAddrV4};
use preboot::Instant;
use preboot::engine::Datagram;
use preboot::policy::{
    AfterRun, ImagingProxy, LateJoin, MemoryStore, MulticastSession, ServerPolicy, WorkstationId,
};
use preboot::transaction::{
    Client, ClientConfig, ClientEvent, HandshakeSeed, Policy, Random, Server, ServerConfig,
    StaticKey, WorkstationKeys,
};
use preboot::wire::transaction::MAX_FRAME_LEN;
use preboot::wire::transaction::Status;
use preboot::wire::transaction::messages::*;
use std::collections::VecDeque;
use std::time::Duration;

/// The receiving socket's address (these engines do not look at it).
const ANY: std::net::SocketAddrV4 = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);

fn key(tag: u8) -> StaticKey {
    StaticKey::from_bytes(core::array::from_fn(|i| tag ^ (i as u8).wrapping_mul(13))).unwrap()
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
impl Random for XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

/// Counts how often each state-changing policy call really ran.
struct Counting {
    inner: ImagingProxy<MemoryStore>,
    tasks_calls: u32,
    report_calls: u32,
}

impl Policy for Counting {
    fn object_of(&self, id: &WorkstationId) -> Option<WorkstationId> {
        self.inner.object_of(id)
    }
    fn register<'s>(
        &'s mut self,
        now: Instant,
        w: &WorkstationId,
        i: &WorkstationInfo<'_>,
    ) -> Result<InfoAck<'s>, Status> {
        self.inner.register(now, w, i)
    }
    fn menu<'s>(
        &'s mut self,
        now: Instant,
        w: &WorkstationId,
        i: &WorkstationInfo<'_>,
    ) -> Result<MenuReply<'s>, Status> {
        self.inner.menu(now, w, i)
    }
    fn tasks<'s>(
        &'s mut self,
        now: Instant,
        w: &WorkstationId,
        i: &WorkstationInfo<'_>,
    ) -> Result<TaskReply<'s>, Status> {
        self.tasks_calls += 1;
        self.inner.tasks(now, w, i)
    }
    fn report(
        &mut self,
        now: Instant,
        w: &WorkstationId,
        i: &WorkstationInfo<'_>,
        r: &TaskReport<'_>,
    ) -> Result<(), Status> {
        self.report_calls += 1;
        self.inner.report(now, w, i, r)
    }
}

fn store() -> MemoryStore {
    MemoryStore {
        server: ServerPolicy::default(),
        multicast: vec![MulticastSession {
            name: "monday".into(),
            enabled: true,
            image: Some("images/lab.img".into()),
            master: None,
            members: vec![],
            member_rule: Some(preboot::policy::Condition::MacPrefix(vec![0x52, 0x54])),
            group: Ipv4Addr::new(239, 1, 1, 1),
            port: 5000,
            start_members: 100,
            start_after_secs: 60,
            poll_secs: 30,
            timeout_secs: 0,
            after: AfterRun::Disable,
            late: LateJoin::Refuse,
        }],
        ..MemoryStore::default()
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Handshake,
    Info,
    Menu,
    Tasks,
    Report,
    Done,
}

struct Workstation {
    client: Client,
    addr: SocketAddrV4,
    mac: [u8; 6],
    step: Step,
    task_id: Option<u32>,
    failed: bool,
}

struct Packet {
    at: Instant,
    to_server: bool,
    from: SocketAddrV4,
    ws: usize,
    data: Vec<u8>,
}

/// Run `n` workstations through the whole conversation over a lossy link.
/// Returns (server policy, workstations that completed).
fn simulate(seed: u64, n: usize, loss: u64, dup: u64) -> (Counting, usize, usize) {
    let mut rng = XorShift(seed | 1);
    let server_addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4012);
    let server_key = key(0xa5);
    let server_public = server_key.public();
    let mut server = Server::new(
        ServerConfig::default(),
        server_key,
        WorkstationKeys::new(true),
        Counting {
            inner: ImagingProxy::new(store()),
            tasks_calls: 0,
            report_calls: 0,
        },
        XorShift(seed.wrapping_mul(31) | 1),
    );
    let mut now = Instant::ZERO;
    let mut ws: Vec<Workstation> = (0..n)
        .map(|i| {
            let mut seed = HandshakeSeed {
                nonce: [0; 16],
                ephemeral: [0; 32],
            };
            rng.fill(&mut seed.nonce);
            rng.fill(&mut seed.ephemeral);
            Workstation {
                client: Client::new(
                    ClientConfig::new(server_addr, server_public, key(i as u8 + 1)),
                    seed,
                    now,
                ),
                addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, i as u8 + 1), 40000),
                mac: [0x52, 0x54, 0, 0, 0, i as u8],
                step: Step::Handshake,
                task_id: None,
                failed: false,
            }
        })
        .collect();
    let mut link: VecDeque<Packet> = VecDeque::new();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut queries = 0u32;
    let mut reports = 0u32;
    // Bounded: 200 000 simulated steps, 10 minutes of simulated time.
    for _ in 0..200_000 {
        // 1. clients act
        for (i, w) in ws.iter_mut().enumerate() {
            while let Some(e) = w.client.poll_event() {
                match e {
                    ClientEvent::Established { .. } => w.step = Step::Info,
                    ClientEvent::Reply { message_type } => match message_type {
                        preboot::wire::transaction::MessageType::InfoAck => w.step = Step::Menu,
                        preboot::wire::transaction::MessageType::MenuReply => w.step = Step::Tasks,
                        preboot::wire::transaction::MessageType::TaskReply => {
                            let t = w.client.task_reply().unwrap();
                            assert_eq!(t.tasks.len(), 1);
                            assert!(matches!(
                                t.tasks[0].action,
                                TaskAction::JoinMulticast { port: 5000, .. }
                            ));
                            w.task_id = Some(t.tasks[0].id);
                            w.step = Step::Report;
                        }
                        preboot::wire::transaction::MessageType::ReportAck => w.step = Step::Done,
                        other => panic!("unexpected reply {other:?}"),
                    },
                    ClientEvent::Failed { .. }
                    | ClientEvent::Refused { .. }
                    | ClientEvent::HandshakeRefused { .. } => w.failed = true,
                    ClientEvent::Advisory { .. } | ClientEvent::RestartDue => {}
                }
            }
            if !w.client.is_busy() && !w.failed {
                match w.step {
                    Step::Info => {
                        let mut wi = WorkstationInfo::default();
                        wi.macs.push(w.mac).unwrap();
                        w.client.send_info(now, &wi).unwrap();
                    }
                    Step::Menu => w.client.query_menu(now).unwrap(),
                    Step::Tasks => {
                        queries += 1;
                        w.client.query_tasks(now).unwrap()
                    }
                    Step::Report => {
                        reports += 1;
                        let r = TaskReport {
                            task_id: w.task_id.unwrap(),
                            outcome: Outcome::Success,
                            percent: Some(100),
                            reason: None,
                        };
                        w.client.report(now, &r).unwrap();
                    }
                    _ => {}
                }
                // keep the step: it advances on the reply event
                if matches!(w.step, Step::Info | Step::Menu | Step::Tasks | Step::Report) {
                    // mark as waiting by leaving step as is; is_busy() guards re-sending
                }
            }
            while let Some(t) = w.client.poll_transmit(now, &mut buf).unwrap() {
                let copies = if rng.chance(loss) {
                    0
                } else if rng.chance(dup) {
                    2
                } else {
                    1
                };
                for k in 0..copies {
                    let delay = Duration::from_millis(1 + rng.next() % 40 + k * 5);
                    link.push_back(Packet {
                        at: now + delay,
                        to_server: true,
                        from: w.addr,
                        ws: i,
                        data: buf[..t.len].to_vec(),
                    });
                }
            }
        }
        // 2. server replies
        while let Some(t) = server.poll_transmit(now, &mut buf).unwrap() {
            let ws_i = ws.iter().position(|w| w.addr == t.remote).unwrap();
            let copies = if rng.chance(loss) {
                0
            } else if rng.chance(dup) {
                2
            } else {
                1
            };
            for k in 0..copies {
                let delay = Duration::from_millis(1 + rng.next() % 40 + k * 5);
                link.push_back(Packet {
                    at: now + delay,
                    to_server: false,
                    from: server_addr,
                    ws: ws_i,
                    data: buf[..t.len].to_vec(),
                });
            }
        }
        if ws.iter().all(|w| w.step == Step::Done || w.failed) {
            break;
        }
        // 3. advance time to the next event: a packet arrival or a timer
        let next_pkt = link.iter().map(|p| p.at).min();
        let next_timer = ws.iter().filter_map(|w| w.client.poll_timeout()).min();
        let next = [next_pkt, next_timer, server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { break };
        now = now.max(next);
        assert!(now < Instant::from_secs(600), "simulation ran away");
        // deliver every packet due now (reordering comes from random delays)
        let mut i = 0;
        while i < link.len() {
            if link[i].at <= now {
                let p = link.remove(i).unwrap();
                if p.to_server {
                    server.handle(
                        now,
                        Datagram {
                            local: ANY,
                            remote: p.from,
                            payload: &p.data,
                        },
                    );
                } else {
                    ws[p.ws].client.handle(
                        now,
                        Datagram {
                            local: ANY,
                            remote: p.from,
                            payload: &p.data,
                        },
                    );
                }
            } else {
                i += 1;
            }
        }
        for w in ws.iter_mut() {
            w.client.handle_timeout(now);
        }
        server.handle_timeout(now);
    }
    let done = ws.iter().filter(|w| w.step == Step::Done).count();
    let policy = server.policy();
    // No task performed twice: the policy ran once per *distinct* request.
    assert_eq!(
        policy.tasks_calls, queries,
        "a TaskQuery ran twice (seed {seed})"
    );
    assert!(
        policy.report_calls <= reports,
        "a TaskReport ran twice (seed {seed})"
    );
    assert_eq!(policy.inner.reports_applied() as usize, done, "seed {seed}");
    assert!(policy.inner.joined(0).len() <= n);
    let failed = ws.iter().filter(|w| w.failed).count();
    (server.into_policy(), done, failed)
}

/// §6: lossless link — everyone completes, once.
#[test]
fn lossless_pair() {
    let (p, done, failed) = simulate(1, 5, 0, 0);
    assert_eq!((done, failed), (5, 0));
    assert_eq!(p.tasks_calls, 5);
    assert_eq!(p.inner.joined(0).len(), 5);
}

/// §6: 20 % loss and 20 % duplication over 40 seeds — retransmission
/// recovers, duplicates are answered from the cache, no task runs twice.
#[test]
fn lossy_duplicating_pair() {
    let mut total_done = 0;
    for seed in 1..=40u64 {
        let (p, done, failed) = simulate(seed * 7919, 4, 20, 20);
        assert_eq!(done + failed, 4);
        assert_eq!(p.inner.joined(0).len(), p.tasks_calls.min(4) as usize);
        total_done += done;
    }
    // With 6 transmissions per request, failures are rare.
    assert!(total_done >= 150, "only {total_done}/160 completed");
}

/// §6: heavy duplication without loss — every duplicate is absorbed.
#[test]
fn heavy_duplication() {
    for seed in 1..=10u64 {
        let (p, done, _) = simulate(seed, 3, 0, 90);
        assert_eq!(done, 3);
        assert_eq!(p.report_calls, 3);
        assert_eq!(p.tasks_calls, 3);
    }
}

#[test]
fn ids_are_stable() {
    assert_eq!(
        WorkstationId::Mac([1, 2, 3, 4, 5, 6]).to_string(),
        "01:02:03:04:05:06"
    );
}
