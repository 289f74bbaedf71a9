//! Transaction protocol throughput (docs/transaction-protocol.md version
//! 2): how many handshakes and sealed menu + task exchanges the server
//! engine sustains on one core.
//!
//! - `engine/server_only/handshake_x64`: the server engine alone, answering
//!   64 clients' pre-built `Hello` and `Init` frames: cookie, Noise `IK`
//!   responder (three X25519 and one base-point multiplication), key
//!   lookup, `Accept` (client cost excluded; throughput counts handshakes).
//! - `engine/exchange`: one established session; per iteration the client
//!   engine sends `MenuQuery`, the server engine answers `MenuReply`, then
//!   `TaskQuery` → `TaskReply` (two sealed round trips, ChaCha20-Poly1305
//!   both ways, both engines in memory, both on this core). Policies:
//!   nothing to do (boot the local disk, the common case), a restore task
//!   every time (then also reported, a third round trip), and the same
//!   live task asked for again and again (never reported).
//! - `engine/handshake_and_exchange`: a new client per iteration: `Hello`,
//!   `Cookie`, `Init`, `Accept`, `WorkstationInfo`, then the exchange
//!   (both engines).
//! - `engine/server_only/boot_local_x256`: the server engine alone,
//!   answering 256 exchanges' pre-built `MenuQuery`/`TaskQuery` frames
//!   (client cost excluded; throughput counts exchanges).
//! - `udp_loopback/exchange`: the same exchange through the std UDP driver
//!   on 127.0.0.1 (server thread, client engine on a socket in the bench
//!   thread): one client, so this is round-trip latency bound;
//!   `exchange_x16_clients` has 16 clients in flight at once.
//!
//! - `primitives/x25519`: one X25519 operation (x25519-dalek), measured in
//!   the same run: a handshake costs the server three of them (four for a
//!   key's first handshake) and one base-point multiplication, so this
//!   bounds `handshake_x64` on the machine at hand.
//!
//! Run: `cargo bench --bench transaction`.

use core::net::{Ipv4Addr, SocketAddrV4};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use preboot::Instant;
use preboot::driver::transaction::UdpTransactionServer;
use preboot::engine::Datagram;
use preboot::policy::{
    Condition, EnvironmentSpec, ImagingProxy, ImagingRule, MemoryStore, NoLog, ServerPolicy,
    WorkstationId, WorkstationObject,
};
use preboot::transaction::{
    Client, ClientConfig, ClientEvent, HandshakeSeed, Random, Server, ServerConfig, StaticKey,
    WorkstationKeys,
};
use preboot::wire::image_safe::ImageSafe;
use preboot::wire::transaction::MAX_FRAME_LEN;
use preboot::wire::transaction::messages::*;
use std::hint::black_box;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The receiving socket's address (these engines do not look at it).
const ANY: std::net::SocketAddrV4 = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Workstations with a key bound (client keys 0..CLIENTS, MACs `mac(i)`).
const CLIENTS: u8 = 64;

fn key(tag: u8) -> StaticKey {
    StaticKey::from_bytes(core::array::from_fn(|i| {
        tag ^ (i as u8).wrapping_mul(29) ^ 0x11
    }))
    .expect("key")
}

fn server_key() -> StaticKey {
    key(0xee)
}

fn mac(i: u8) -> [u8; 6] {
    let mut m = MAC;
    m[5] = m[5].wrapping_add(i);
    m
}

fn seed(n: u64) -> HandshakeSeed {
    let mut r = XorShift(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut s = HandshakeSeed {
        nonce: [0; 16],
        ephemeral: [0; 32],
    };
    r.fill(&mut s.nonce);
    r.fill(&mut s.ephemeral);
    s
}

fn new_client(server: SocketAddrV4, i: u8, n: u64, now: Instant) -> Client {
    Client::new(
        ClientConfig::new(server, server_key().public(), key(i)),
        seed(n),
        now,
    )
}
const BASE: &str = "images/win11-base.img";

struct XorShift(u64);
impl Random for XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// A lab: one registered workstation, a rule that puts `BASE` on it.
/// With `work`, the rule is forced (a restore task every time); without,
/// the image is already on the disk (nothing to do).
fn store(work: bool) -> MemoryStore {
    let mut w = WorkstationObject::new(WorkstationId::Mac(MAC), "lab-pc-07");
    w.policy = None;
    MemoryStore {
        server: ServerPolicy {
            image_server: Ipv4Addr::new(10, 0, 0, 5),
            menu_file: Some("preboot/menu.txt".into()),
            rules: vec![ImagingRule {
                name: "lab".into(),
                when: Condition::All(vec![
                    Condition::RamMb(preboot::policy::Cmp::Ge, 4096),
                    Condition::MacPrefix(vec![0x52, 0x54, 0x00]),
                ]),
                image: BASE.into(),
                force: work,
                partitions: vec![1, 2],
            }],
            environment: Some(EnvironmentSpec {
                fetch: Fetch::Tftp,
                kernel: "imaging/linux".into(),
                initrd: "imaging/initrd.img".into(),
                loader: "imaging/loader.efi".into(),
            }),
            ..ServerPolicy::default()
        },
        workstations: vec![w],
        ..MemoryStore::default()
    }
}

type Srv = Server<ImagingProxy<MemoryStore>, WorkstationKeys, XorShift>;

fn server(work: bool) -> Srv {
    let mut keys = WorkstationKeys::new(false);
    for i in 0..CLIENTS {
        keys.insert(WorkstationId::Mac(mac(i)), key(i).public())
            .expect("distinct keys");
    }
    Server::new(
        ServerConfig::default(),
        server_key(),
        keys,
        // Every query hands the same tasks out again; no hand-out limit,
        // so that the work measured stays the same (§4.8).
        ImagingProxy::with_log(store(work), NoLog, u32::MAX),
        XorShift(0x9E37_79B9_7F4A_7C15),
    )
}

fn record(buf: &mut [u8; 1024]) -> usize {
    let rec = ImageSafe {
        base_image: Some(BASE),
        ..ImageSafe::default()
    };
    rec.emit(buf).expect("small record")
}

fn info(image_safe: &[u8], m: [u8; 6]) -> WorkstationInfo<'_> {
    let mut i = WorkstationInfo::default();
    let _ = i.macs.push(m);
    i.arch = Some(7);
    i.cpu_model = Some("Intel(R) Core(TM) i7-8700");
    i.cpu_count = Some(12);
    i.ram_mb = Some(16384);
    let _ = i.disks_mb.push(512_000);
    let _ = i.pci.push(PciId {
        vendor: 0x8086,
        device: 0x15b8,
    });
    i.image_safe = Some(image_safe);
    i
}

const SRV: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4012);
const ME: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 49152);

/// Client request → server → reply → client, in memory.
fn round_trip(c: &mut Client, s: &mut Srv, now: Instant, buf: &mut [u8; MAX_FRAME_LEN]) {
    let t = c.poll_transmit(now, buf).unwrap().expect("request");
    s.handle(
        now,
        Datagram {
            local: ANY,
            remote: ME,
            payload: &buf[..t.len],
        },
    );
    let r = s.poll_transmit(now, buf).unwrap().expect("reply");
    c.handle(
        now,
        Datagram {
            local: ANY,
            remote: SRV,
            payload: &buf[..r.len],
        },
    );
}

fn establish(s: &mut Srv, nonce: u64, now: Instant, buf: &mut [u8; MAX_FRAME_LEN]) -> Client {
    let mut c = new_client(SRV, 0, nonce, now);
    round_trip(&mut c, s, now, buf); // Hello → Cookie
    round_trip(&mut c, s, now, buf); // Init → Accept
    let mut rec = [0u8; 1024];
    let n = record(&mut rec);
    c.send_info(now, &info(&rec[..n], MAC)).expect("info");
    round_trip(&mut c, s, now, buf);
    while c.poll_event().is_some() {}
    assert!(c.is_established());
    c
}

fn exchange(c: &mut Client, s: &mut Srv, now: Instant, buf: &mut [u8; MAX_FRAME_LEN]) {
    c.query_menu(now).expect("menu query");
    round_trip(c, s, now, buf);
    c.query_tasks(now).expect("task query");
    round_trip(c, s, now, buf);
    // Both replies arrived (a refusal would show as Refused).
    for _ in 0..2 {
        let e = c.poll_event();
        debug_assert!(matches!(e, Some(ClientEvent::Reply { .. })), "{e:?}");
        black_box(e);
    }
}

fn engine(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    // boot_local: nothing to do. restore_task_and_report: a restore task
    // every time, then reported done (a third round trip).
    // restore_task_live: the same live task every time, never reported
    // (its id is kept, §4.5).
    for (label, work, report) in [
        ("boot_local", false, false),
        ("restore_task_and_report", true, true),
        ("restore_task_live", true, false),
    ] {
        g.bench_function(format!("exchange/{label}"), |b| {
            let mut buf = [0u8; MAX_FRAME_LEN];
            let mut s = server(work);
            let mut c = establish(&mut s, 1, Instant::ZERO, &mut buf);
            b.iter(|| {
                exchange(&mut c, &mut s, Instant::ZERO, &mut buf);
                if report {
                    let id = c.task_reply().and_then(|t| t.tasks.first().map(|t| t.id));
                    if let Some(id) = id {
                        let r = TaskReport {
                            task_id: id,
                            outcome: Outcome::Success,
                            percent: None,
                            reason: None,
                        };
                        c.report(Instant::ZERO, &r).expect("report");
                        round_trip(&mut c, &mut s, Instant::ZERO, &mut buf);
                        while c.poll_event().is_some() {}
                    }
                }
            });
        });
    }
    g.bench_function("handshake_and_exchange/boot_local", |b| {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let mut s = server(false);
        let mut nonce = 0u64;
        let mut now = Instant::ZERO;
        b.iter(|| {
            nonce += 1;
            // Sessions expire 60 s after their last request: one session
            // at a time in the table, as with workstations booting in turn.
            now += Duration::from_secs(61);
            let mut c = establish(&mut s, nonce, now, &mut buf);
            exchange(&mut c, &mut s, now, &mut buf);
        });
    });
    g.finish();

    // Server alone, handshakes: two identical servers (same seed, same
    // frames in the same order) — one answers 64 clients to generate their
    // Hello and Init frames, the other (the measured one) sees them for the
    // first time, and does exactly the same work.
    let mut g = cr.benchmark_group("engine");
    g.throughput(Throughput::Elements(u64::from(CLIENTS)));
    // warm: the bound keys' static-static DH computed at load
    // (`Server::prepare_key`), as on a server that has run for a while;
    // cold: every key's first handshake since the server started.
    for (label, warm) in [("handshake_x64_warm", true), ("handshake_x64_cold", false)] {
        g.bench_function(format!("server_only/{label}"), |b| {
            b.iter_batched(
                || {
                    let mut buf = [0u8; MAX_FRAME_LEN];
                    let (mut generator, mut fresh) = (server(false), server(false));
                    if warm {
                        for i in 0..CLIENTS {
                            fresh.prepare_key(&key(i).public());
                        }
                    }
                    let mut frames = Vec::with_capacity(2 * usize::from(CLIENTS));
                    for i in 0..CLIENTS {
                        let from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, i), 49152);
                        let mut c = new_client(SRV, i, u64::from(i) + 1, Instant::ZERO);
                        for _ in 0..2 {
                            let t = c
                                .poll_transmit(Instant::ZERO, &mut buf)
                                .unwrap()
                                .expect("request");
                            let req = buf[..t.len].to_vec();
                            generator.handle(
                                Instant::ZERO,
                                Datagram {
                                    local: ANY,
                                    remote: from,
                                    payload: &req,
                                },
                            );
                            let r = generator
                                .poll_transmit(Instant::ZERO, &mut buf)
                                .unwrap()
                                .expect("reply");
                            c.handle(
                                Instant::ZERO,
                                Datagram {
                                    local: ANY,
                                    remote: SRV,
                                    payload: &buf[..r.len],
                                },
                            );
                            frames.push((from, req));
                        }
                        assert!(c.is_established());
                    }
                    (fresh, frames)
                },
                |(mut s, frames)| {
                    let mut buf = [0u8; MAX_FRAME_LEN];
                    let mut bytes = 0;
                    for (from, f) in &frames {
                        s.handle(
                            Instant::ZERO,
                            Datagram {
                                local: ANY,
                                remote: *from,
                                payload: f,
                            },
                        );
                        let r = s
                            .poll_transmit(Instant::ZERO, &mut buf)
                            .unwrap()
                            .expect("reply");
                        bytes += r.len;
                    }
                    debug_assert_eq!(s.half_open_count(), usize::from(CLIENTS));
                    black_box(bytes);
                    s
                },
                BatchSize::LargeInput,
            );
        });
    }
    g.finish();

    // Server alone, exchanges: two identical servers (same seed, same
    // frames) — one answers the client to generate 256 exchanges'
    // requests, the other (the measured one) sees them for the first time.
    let mut g = cr.benchmark_group("engine");
    g.throughput(Throughput::Elements(256));
    g.bench_function("server_only/boot_local_x256", |b| {
        b.iter_batched(
            || {
                let mut buf = [0u8; MAX_FRAME_LEN];
                let (mut generator, mut fresh) = (server(false), server(false));
                let mut frames = Vec::with_capacity(515);
                let mut c = new_client(SRV, 0, 3, Instant::ZERO);
                let mut rec = [0u8; 1024];
                let n = record(&mut rec);
                let inf = info(&rec[..n], MAC);
                for step in 0..(3 + 512) {
                    match step {
                        0 | 1 => {}
                        2 => c.send_info(Instant::ZERO, &inf).expect("info"),
                        s if s % 2 == 1 => c.query_menu(Instant::ZERO).expect("menu"),
                        _ => c.query_tasks(Instant::ZERO).expect("tasks"),
                    }
                    let t = c
                        .poll_transmit(Instant::ZERO, &mut buf)
                        .unwrap()
                        .expect("request");
                    let req = buf[..t.len].to_vec();
                    generator.handle(
                        Instant::ZERO,
                        Datagram {
                            local: ANY,
                            remote: ME,
                            payload: &req,
                        },
                    );
                    let r = generator
                        .poll_transmit(Instant::ZERO, &mut buf)
                        .unwrap()
                        .expect("reply");
                    c.handle(
                        Instant::ZERO,
                        Datagram {
                            local: ANY,
                            remote: SRV,
                            payload: &buf[..r.len],
                        },
                    );
                    while c.poll_event().is_some() {}
                    if step < 3 {
                        fresh.handle(
                            Instant::ZERO,
                            Datagram {
                                local: ANY,
                                remote: ME,
                                payload: &req,
                            },
                        );
                        let _ = fresh.poll_transmit(Instant::ZERO, &mut buf);
                    } else {
                        frames.push(req);
                    }
                }
                (fresh, frames)
            },
            |(mut s, frames)| {
                let mut buf = [0u8; MAX_FRAME_LEN];
                let mut bytes = 0;
                for f in &frames {
                    s.handle(
                        Instant::ZERO,
                        Datagram {
                            local: ANY,
                            remote: ME,
                            payload: f,
                        },
                    );
                    let r = s
                        .poll_transmit(Instant::ZERO, &mut buf)
                        .unwrap()
                        .expect("reply");
                    bytes += r.len;
                }
                black_box(bytes);
                s
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

/// The exchange through the std UDP driver on loopback.
fn udp_loopback(cr: &mut Criterion) {
    let engine = server(false);
    let mut udp = match UdpTransactionServer::bind("127.0.0.1:0".parse().expect("addr"), engine) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("skipped udp_loopback: cannot bind 127.0.0.1: {e}");
            return;
        }
    };
    let addr = match udp.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => a,
        _ => return,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let _ = udp.serve(|_| stop2.load(Ordering::Relaxed));
    });
    let sock = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let epoch = std::time::Instant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut c = new_client(addr, 0, 5, now());
    // One request/reply over the socket; retransmits on loss (bounded).
    let mut trip = |c: &mut Client| {
        for _ in 0..6 {
            let Some(t) = c.poll_transmit(now(), &mut buf).unwrap() else {
                break;
            };
            sock.send_to(&buf[..t.len], addr).expect("send");
            if let Ok((n, std::net::SocketAddr::V4(from))) = sock.recv_from(&mut buf) {
                c.handle(
                    now(),
                    Datagram {
                        local: ANY,
                        remote: from,
                        payload: &buf[..n],
                    },
                );
            }
            if !c.is_busy() {
                return;
            }
            c.handle_timeout(now() + Duration::from_secs(5));
        }
    };
    trip(&mut c);
    trip(&mut c);
    let mut rec = [0u8; 1024];
    let n = record(&mut rec);
    c.send_info(now(), &info(&rec[..n], MAC)).expect("info");
    trip(&mut c);
    while c.poll_event().is_some() {}
    if c.is_established() {
        let mut g = cr.benchmark_group("udp_loopback");
        g.throughput(Throughput::Elements(1));
        g.bench_function("exchange/boot_local", |b| {
            b.iter(|| {
                c.query_menu(now()).expect("menu");
                trip(&mut c);
                c.query_tasks(now()).expect("tasks");
                trip(&mut c);
                while let Some(e) = c.poll_event() {
                    black_box(e);
                }
            });
        });
        // 16 workstations at once: each sends its query, then all replies
        // are collected — the server thread is kept busy, so this measures
        // its throughput rather than one client's round-trip latency.
        let mut many: Vec<(UdpSocket, Client)> = Vec::new();
        for i in 0..16u8 {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("client socket");
            sock.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            // Client 0 is the other loop's; each has its own key and MAC.
            let mut c = new_client(addr, i + 1, 0x80 | u64::from(i), now());
            for step in 0..3 {
                if step == 2 {
                    c.send_info(now(), &info(&rec[..n], mac(i + 1)))
                        .expect("info");
                }
                let t = c.poll_transmit(now(), &mut buf).unwrap().expect("request");
                sock.send_to(&buf[..t.len], addr).expect("send");
                if let Ok((len, std::net::SocketAddr::V4(from))) = sock.recv_from(&mut buf) {
                    c.handle(
                        now(),
                        Datagram {
                            local: ANY,
                            remote: from,
                            payload: &buf[..len],
                        },
                    );
                }
            }
            while c.poll_event().is_some() {}
            if c.is_established() {
                many.push((sock, c));
            }
        }
        if many.len() == 16 {
            g.throughput(Throughput::Elements(16));
            g.bench_function("exchange_x16_clients/boot_local", |b| {
                b.iter(|| {
                    for q in 0..2 {
                        for (sock, c) in many.iter_mut() {
                            if q == 0 {
                                c.query_menu(now()).expect("menu");
                            } else {
                                c.query_tasks(now()).expect("tasks");
                            }
                            let t = c.poll_transmit(now(), &mut buf).unwrap().expect("request");
                            sock.send_to(&buf[..t.len], addr).expect("send");
                        }
                        for (sock, c) in many.iter_mut() {
                            // A lost datagram on loopback would end the
                            // request with Failed after the client's timers;
                            // here a 2 s read timeout bounds the wait.
                            if let Ok((len, std::net::SocketAddr::V4(from))) =
                                sock.recv_from(&mut buf)
                            {
                                c.handle(
                                    now(),
                                    Datagram {
                                        local: ANY,
                                        remote: from,
                                        payload: &buf[..len],
                                    },
                                );
                            }
                            while let Some(e) = c.poll_event() {
                                black_box(e);
                            }
                            if c.is_busy() {
                                c.handle_timeout(now() + Duration::from_secs(60));
                                while c.is_busy() {
                                    c.handle_timeout(now() + Duration::from_secs(600));
                                    let _ = c.poll_transmit(now(), &mut buf);
                                }
                            }
                        }
                    }
                });
            });
        }
        g.finish();
    } else {
        eprintln!("skipped udp_loopback: handshake over loopback failed");
    }
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
}

/// One X25519 Diffie-Hellman, the unit a handshake is made of (§3.3).
fn primitives(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("primitives");
    g.throughput(Throughput::Elements(1));
    let s = x25519_dalek::StaticSecret::from([7u8; 32]);
    let p = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9u8; 32]));
    g.bench_function("x25519", |b| {
        b.iter(|| black_box(s.diffie_hellman(black_box(&p)).to_bytes()))
    });
    g.finish();
}

criterion_group!(benches, primitives, engine, udp_loopback);
criterion_main!(benches);
