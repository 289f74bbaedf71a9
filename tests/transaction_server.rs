//! Scripted conversations with the transaction server engine, one message
//! at a time, with frames built and MACs computed independently of the
//! engine (straight from docs/transaction-protocol.md). Each test cites the
//! section it checks.

use core::net::{Ipv4Addr, SocketAddrV4};
use hmac::{Hmac, KeyInit, Mac};
use preboot::Instant;
use preboot::engine::Datagram;
use preboot::policy::{
    Condition, ImagingProxy, ImagingRule, MemoryStore, MenuSetting, ServerPolicy, WorkstationId,
    WorkstationObject,
};
use preboot::transaction::{Server, ServerConfig, ServerEvent, SiteKeys};
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::*;
use sha2::Sha256;
use std::time::Duration;

/// The receiving socket's address (these engines do not look at it).
const ANY: std::net::SocketAddrV4 = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);

const KEY: &[u8] = b"0123456789abcdef-site-secret";
const MAC_A: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

type H = Hmac<Sha256>;

fn h(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <H as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn peer() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 40000)
}

struct Rng(u64);
impl preboot::transaction::Random for Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

fn store() -> MemoryStore {
    let mut w = WorkstationObject::new(WorkstationId::Mac(MAC_A), "lab-pc-07");
    w.image_next_boot = true;
    w.image = Some("images/lab.img".into());
    w.menu = Some(MenuSetting::always());
    MemoryStore {
        server: ServerPolicy {
            image_server: Ipv4Addr::new(10, 0, 0, 5),
            menu_file: Some("menu.txt".into()),
            environment: Some(preboot::policy::EnvironmentSpec {
                fetch: Fetch::Tftp,
                kernel: "linux".into(),
                initrd: "initrd".into(),
                loader: "loader.efi".into(),
            }),
            rules: vec![ImagingRule {
                name: "all".into(),
                when: Condition::All(vec![]),
                image: "images/default.img".into(),
                force: false,
                partitions: vec![],
            }],
            ..ServerPolicy::default()
        },
        workstations: vec![w],
        ..MemoryStore::default()
    }
}

type Srv = Server<ImagingProxy<MemoryStore>, SiteKeys, Rng>;

fn server_with(config: ServerConfig) -> Srv {
    Server::new(
        config,
        SiteKeys::new(b"site", KEY),
        ImagingProxy::new(store()),
        Rng(0x9E37_79B9_7F4A_7C15),
    )
}

fn server() -> Srv {
    server_with(ServerConfig::default())
}

/// A hand-driven client: builds frames itself.
struct Raw {
    nc: [u8; 16],
    ns: [u8; 16],
    sid: u64,
    key: Vec<u8>,
    rid: u32,
}

impl Raw {
    fn new() -> Self {
        Raw {
            nc: [0x11; 16],
            ns: [0; 16],
            sid: 0,
            key: KEY.to_vec(),
            rid: 1,
        }
    }
    fn sk(&self) -> [u8; 32] {
        h(
            &self.key,
            &[
                b"PBTX1 session",
                &self.nc,
                &self.ns,
                &self.sid.to_be_bytes(),
            ],
        )
    }
    fn hello(&self) -> Vec<u8> {
        frame(
            MessageType::Hello,
            self.rid,
            0,
            &Hello {
                client_nonce: self.nc,
                key_id: b"site",
            },
            None,
        )
    }
    fn req<P: Payload>(&self, t: MessageType, p: &P) -> Vec<u8> {
        frame(t, self.rid, self.sid, p, Some(self.sk()))
    }
    fn proof(&self) -> Vec<u8> {
        let cp = h(
            &self.key,
            &[
                b"PBTX1 client",
                &self.nc,
                &self.ns,
                &self.sid.to_be_bytes(),
                b"site",
            ],
        );
        self.req(MessageType::Proof, &Proof { client_proof: cp })
    }
}

fn frame<P: Payload>(t: MessageType, rid: u32, sid: u64, p: &P, sk: Option<[u8; 32]>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let hd = Header {
        message_type: t,
        status: Status::Ok,
        request_id: rid,
        session_id: sid,
    };
    let n = emit_frame(&hd, p, sk.is_some(), &mut buf).unwrap();
    if let Some(k) = sk {
        let tag = h(&k, &[&buf[..n - 32]]);
        buf[n - 32..n].copy_from_slice(&tag);
    }
    buf.truncate(n);
    buf
}

fn exchange(s: &mut Srv, now: Instant, d: &[u8]) -> Option<Vec<u8>> {
    s.handle(
        now,
        Datagram {
            local: ANY,
            remote: peer(),
            payload: d,
        },
    );
    let mut buf = [0u8; MAX_FRAME_LEN];
    let t = s.poll_transmit(now, &mut buf).unwrap()?;
    assert_eq!(t.remote, peer());
    assert!(
        s.poll_transmit(now, &mut buf).unwrap().is_none(),
        "one reply per request"
    );
    Some(buf[..t.len].to_vec())
}

fn info() -> Vec<u8> {
    let mut wi = WorkstationInfo::default();
    wi.macs.push(MAC_A).unwrap();
    wi.arch = Some(7);
    wi.ram_mb = Some(8192);
    let mut buf = vec![0u8; 2000];
    let n = wi.buffer_len();
    wi.emit(&mut buf[..n]).unwrap();
    buf.truncate(n);
    buf
}

struct RawPayload(Vec<u8>);
impl Payload for RawPayload {
    fn buffer_len(&self) -> usize {
        self.0.len()
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        out.copy_from_slice(&self.0);
        Ok(())
    }
}

/// Handshake to an established session; returns the raw client.
fn establish(s: &mut Srv, now: Instant) -> Raw {
    let mut c = Raw::new();
    let r = exchange(s, now, &c.hello()).unwrap();
    let f = Frame::new_checked(&r[..]).unwrap();
    let ch = Challenge::parse(f.payload()).unwrap();
    c.sid = f.session_id();
    c.ns = ch.server_nonce;
    c.rid += 1;
    let r = exchange(s, now, &c.proof()).unwrap();
    assert_eq!(Frame::new_checked(&r[..]).unwrap().status(), Status::Ok);
    c.rid += 1;
    c
}

fn status(r: &[u8]) -> Status {
    Frame::new_checked(r).unwrap().status()
}

fn check_mac(c: &Raw, r: &[u8]) {
    let f = Frame::new_checked(r).unwrap();
    assert_eq!(
        f.mac().unwrap(),
        &h(&c.sk(), &[f.authenticated_bytes()])[..]
    );
}

/// §3, §4.1: Challenge echoes the request id, names a non-zero session and
/// carries H(K, "PBTX1 server" ‖ Nc ‖ Ns ‖ sid ‖ kid).
#[test]
fn hello_gets_authentic_challenge() {
    let mut s = server();
    let c = Raw::new();
    let r = exchange(&mut s, Instant::ZERO, &c.hello()).unwrap();
    let f = Frame::new_checked(&r[..]).unwrap();
    assert_eq!(f.message_type(), MessageType::Challenge);
    assert_eq!(f.status(), Status::Ok);
    assert_eq!(f.request_id(), 1);
    assert_ne!(f.session_id(), 0);
    assert!(f.mac().is_none());
    let ch = Challenge::parse(f.payload()).unwrap();
    let want = h(
        KEY,
        &[
            b"PBTX1 server",
            &c.nc,
            &ch.server_nonce,
            &f.session_id().to_be_bytes(),
            b"site",
        ],
    );
    assert_eq!(ch.server_proof, want);
    assert_eq!(s.session_count(), 1);
    assert_eq!(s.established_count(), 0);
    // §6: the same Hello again gets the same Challenge, no new session.
    let again = exchange(&mut s, Instant::ZERO, &c.hello()).unwrap();
    assert_eq!(again, r);
    assert_eq!(s.session_count(), 1);
}

/// §3, §4.2: a correct Proof establishes the session; ProofAck carries the
/// session-key MAC.
#[test]
fn proof_establishes_session() {
    let mut s = server();
    let c = establish(&mut s, Instant::ZERO);
    assert_eq!(s.established_count(), 1);
    let mut evs = vec![];
    while let Some(e) = s.poll_event() {
        evs.push(e);
    }
    assert!(evs.contains(&ServerEvent::SessionEstablished {
        session_id: c.sid,
        peer: peer()
    }));
}

/// §4.3–§4.6: the whole conversation, every reply MAC'd and decoded.
#[test]
fn full_conversation() {
    let mut s = server();
    let now = Instant::from_secs(1);
    let mut c = establish(&mut s, now);

    let r = exchange(
        &mut s,
        now,
        &c.req(MessageType::WorkstationInfo, &RawPayload(info())),
    )
    .unwrap();
    check_mac(&c, &r);
    let f = Frame::new_checked(&r[..]).unwrap();
    assert_eq!(f.message_type(), MessageType::InfoAck);
    let ack = InfoAck::parse(f.payload()).unwrap();
    assert!(ack.registered);
    assert_eq!(ack.name, Some("lab-pc-07"));
    c.rid += 1;

    let r = exchange(&mut s, now, &c.req(MessageType::MenuQuery, &Empty)).unwrap();
    check_mac(&c, &r);
    let f = Frame::new_checked(&r[..]).unwrap();
    let m = MenuReply::parse(f.payload()).unwrap();
    assert_eq!(m.mode, MenuMode::Always);
    assert_eq!(m.menu_file, Some("menu.txt"));
    c.rid += 1;

    let r = exchange(&mut s, now, &c.req(MessageType::TaskQuery, &Empty)).unwrap();
    check_mac(&c, &r);
    let f = Frame::new_checked(&r[..]).unwrap();
    let t = TaskReply::parse(f.payload()).unwrap();
    assert_eq!(t.tasks.len(), 1);
    let task_id = t.tasks[0].id;
    match &t.tasks[0].action {
        TaskAction::RestoreImage { server, image, .. } => {
            assert_eq!(*server, Ipv4Addr::new(10, 0, 0, 5));
            assert_eq!(*image, "images/lab.img");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(t.environment.unwrap().kernel, "linux");
    c.rid += 1;

    let rep = TaskReport {
        task_id,
        outcome: Outcome::Success,
        percent: Some(100),
        reason: None,
    };
    let req = c.req(MessageType::TaskReport, &rep);
    let r = exchange(&mut s, now, &req).unwrap();
    check_mac(&c, &r);
    assert_eq!(
        Frame::new_checked(&r[..]).unwrap().message_type(),
        MessageType::ReportAck
    );
    assert_eq!(s.policy().reports_applied(), 1);
    let obj = &s.policy().store().workstations[0];
    assert!(!obj.image_next_boot);
    assert_eq!(obj.last_image.as_deref(), Some("images/lab.img"));

    // §6: the same report again → byte-identical reply, applied once.
    let r2 = exchange(&mut s, now, &req).unwrap();
    assert_eq!(r, r2);
    assert_eq!(s.policy().reports_applied(), 1);
    // A new report of the same task (new request id) → UnknownTask (§4.6).
    c.rid += 1;
    let r3 = exchange(&mut s, now, &c.req(MessageType::TaskReport, &rep)).unwrap();
    assert_eq!(status(&r3), Status::UnknownTask);
    check_mac(&c, &r3);
    assert_eq!(s.policy().reports_applied(), 1);
}

/// Snapshot of everything a refused request must not change.
#[derive(Debug, PartialEq)]
struct Snap {
    sessions: usize,
    established: usize,
    applied: u64,
    store: MemoryStore,
}
fn snap(s: &Srv) -> Snap {
    Snap {
        sessions: s.session_count(),
        established: s.established_count(),
        applied: s.policy().reports_applied(),
        store: s.policy().store().clone(),
    }
}

/// Refuse `d` with `want`, changing nothing; then the session still works.
fn refused(s: &mut Srv, c: &Raw, now: Instant, d: &[u8], want: Status) {
    let before = snap(s);
    let r = exchange(s, now, d).expect("a refusal is answered");
    let f = Frame::new_checked(&r[..]).unwrap();
    assert_eq!(f.status(), want);
    assert!(f.payload().is_empty(), "error replies are empty (§4)");
    assert!(
        r.len() <= HEADER_LEN + MAC_LEN,
        "error replies are small (§5)"
    );
    assert_eq!(snap(s), before, "refusal changed state");
    // The legitimate next request still succeeds.
    if c.sid != 0 {
        let ok = exchange(
            s,
            now,
            &c.req(MessageType::WorkstationInfo, &RawPayload(info())),
        )
        .unwrap();
        assert_eq!(status(&ok), Status::Ok);
    }
}

/// §3, §5: wrong key — a Proof and MAC made with another key → AuthFailed,
/// session stays half-open; the right Proof then works.
#[test]
fn wrong_key_is_refused() {
    let mut s = server();
    let mut c = Raw::new();
    let r = exchange(&mut s, Instant::ZERO, &c.hello()).unwrap();
    let f = Frame::new_checked(&r[..]).unwrap();
    c.sid = f.session_id();
    c.ns = Challenge::parse(f.payload()).unwrap().server_nonce;
    c.rid = 2;
    let mut wrong = Raw {
        key: b"another-key-of-16+bytes".to_vec(),
        ..Raw::new()
    };
    wrong.sid = c.sid;
    wrong.ns = c.ns;
    wrong.rid = 2;
    let before = snap(&s);
    let r = exchange(&mut s, Instant::ZERO, &wrong.proof()).unwrap();
    assert_eq!(status(&r), Status::AuthFailed);
    assert_eq!(snap(&s), before);
    // Correct MAC but a wrong proof value → AuthFailed too.
    let bad_proof = c.req(
        MessageType::Proof,
        &Proof {
            client_proof: [0; 32],
        },
    );
    assert_eq!(
        status(&exchange(&mut s, Instant::ZERO, &bad_proof).unwrap()),
        Status::AuthFailed
    );
    assert_eq!(snap(&s), before);
    let r = exchange(&mut s, Instant::ZERO, &c.proof()).unwrap();
    assert_eq!(status(&r), Status::Ok);
    assert_eq!(s.established_count(), 1);
    // Unknown key id → UnknownKey, no session.
    let hello = frame(
        MessageType::Hello,
        1,
        0,
        &Hello {
            client_nonce: [3; 16],
            key_id: b"nobody",
        },
        None,
    );
    let before = snap(&s);
    assert_eq!(
        status(&exchange(&mut s, Instant::ZERO, &hello).unwrap()),
        Status::UnknownKey
    );
    assert_eq!(snap(&s), before);
}

/// §3, §6: replays — an older request id, a reused id with other content,
/// a frame from another session — are refused.
#[test]
fn replays_are_refused() {
    let mut s = server();
    let now = Instant::ZERO;
    let mut c = establish(&mut s, now);
    let first = c.req(MessageType::WorkstationInfo, &RawPayload(info()));
    assert_eq!(status(&exchange(&mut s, now, &first).unwrap()), Status::Ok);
    c.rid += 1;
    let menu = c.req(MessageType::MenuQuery, &Empty);
    assert_eq!(status(&exchange(&mut s, now, &menu).unwrap()), Status::Ok);
    c.rid += 1;
    // The earlier request again (older id) → Replay.
    refused(&mut s, &c, now, &first, Status::Replay);
    c.rid += 1;
    // Same id as the cached one, other content → Replay.
    let mut same_id = Raw {
        rid: c.rid - 1,
        ..Raw::new()
    };
    same_id.sid = c.sid;
    same_id.ns = c.ns;
    let other = same_id.req(MessageType::TaskQuery, &Empty);
    let before = snap(&s);
    assert_eq!(
        status(&exchange(&mut s, now, &other).unwrap()),
        Status::Replay
    );
    assert_eq!(snap(&s), before);
    // A frame recorded in this session, replayed into a second session
    // (its session id rewritten): the MAC fails → AuthFailed.
    let mut c2 = Raw {
        nc: [0x22; 16],
        ..Raw::new()
    };
    let r = exchange(&mut s, now, &c2.hello()).unwrap();
    let f = Frame::new_checked(&r[..]).unwrap();
    c2.sid = f.session_id();
    c2.ns = Challenge::parse(f.payload()).unwrap().server_nonce;
    c2.rid = 2;
    assert_eq!(
        status(&exchange(&mut s, now, &c2.proof()).unwrap()),
        Status::Ok
    );
    let mut moved = menu.clone();
    moved[12..20].copy_from_slice(&c2.sid.to_be_bytes());
    moved[8..12].copy_from_slice(&100u32.to_be_bytes());
    refused(&mut s, &c, now, &moved, Status::AuthFailed);
}

/// §2.4, §5: tampering anywhere in header or payload → AuthFailed.
#[test]
fn tampered_frames_are_refused() {
    let mut s = server();
    let now = Instant::ZERO;
    let c = establish(&mut s, now);
    let good = c.req(MessageType::WorkstationInfo, &RawPayload(info()));
    for at in [5usize, 7, 9, 30, good.len() - 40, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        if at == 5 {
            // type changed to another request type: still MAC'd → AuthFailed
            bad[5] = 0x04;
        }
        let before = snap(&s);
        let r = exchange(&mut s, now, &bad).unwrap();
        assert_eq!(status(&r), Status::AuthFailed, "tamper at byte {at}");
        assert_eq!(snap(&s), before);
    }
    // Stripping the MAC (mac length 0) → AuthFailed.
    let mut stripped = good[..good.len() - 32].to_vec();
    stripped[22..24].copy_from_slice(&0u16.to_be_bytes());
    refused(&mut s, &c, now, &stripped, Status::AuthFailed);
}

/// §2.2: truncated, oversized, wrong version, bad mac length, no magic.
#[test]
fn malformed_frames_are_refused() {
    let mut s = server();
    let now = Instant::ZERO;
    let c = establish(&mut s, now);
    let good = c.req(MessageType::MenuQuery, &Empty);
    refused(&mut s, &c, now, &good[..good.len() - 1], Status::BadFrame);
    refused(&mut s, &c, now, &good[..20], Status::BadFrame);
    let mut big = good.clone();
    big.resize(1473, 0);
    refused(&mut s, &c, now, &big, Status::TooLarge);
    let mut v2 = good.clone();
    v2[4] = 2;
    let r = exchange(&mut s, now, &v2).unwrap();
    assert_eq!(
        status_raw(&r),
        (1, Status::UnsupportedVersion),
        "reply carries version 1 (§9)"
    );
    let mut ml = good.clone();
    ml[23] = 31;
    refused(&mut s, &c, now, &ml, Status::BadFrame);
    // Not this protocol: dropped silently (§2.1).
    let before = snap(&s);
    assert!(exchange(&mut s, now, b"GET / HTTP/1.0\r\n\r\n").is_none());
    assert!(exchange(&mut s, now, b"PB").is_none());
    assert_eq!(snap(&s), before);
    // Replies are never answered.
    let mut reply = good.clone();
    reply[5] = 0x84;
    assert!(exchange(&mut s, now, &reply).is_none());
}

fn status_raw(r: &[u8]) -> (u8, Status) {
    (r[4], Status::from(r[6]))
}

/// §4, §5: BadPayload, OutOfOrder, UnknownType, UnknownSession (authenticated
/// where the session is known).
#[test]
fn state_and_payload_refusals() {
    let mut s = server();
    let now = Instant::ZERO;
    let mut c = establish(&mut s, now);
    // Menu before WorkstationInfo → OutOfOrder.
    let r = exchange(&mut s, now, &c.req(MessageType::MenuQuery, &Empty)).unwrap();
    assert_eq!(status(&r), Status::OutOfOrder);
    check_mac(&c, &r);
    c.rid += 1;
    // Garbage info payload → BadPayload.
    let r = exchange(
        &mut s,
        now,
        &c.req(MessageType::WorkstationInfo, &RawPayload(vec![1, 0, 9])),
    )
    .unwrap();
    assert_eq!(status(&r), Status::BadPayload);
    c.rid += 1;
    // Info without a MAC address TLV → BadPayload (Missing).
    let r = exchange(
        &mut s,
        now,
        &c.req(
            MessageType::WorkstationInfo,
            &RawPayload(vec![6, 0, 4, 0, 0, 1, 0]),
        ),
    )
    .unwrap();
    assert_eq!(status(&r), Status::BadPayload);
    c.rid += 1;
    // Unknown request type → UnknownType, MAC'd.
    let r = exchange(&mut s, now, &c.req(MessageType::Unknown(0x33), &Empty)).unwrap();
    assert_eq!(status(&r), Status::UnknownType);
    assert_eq!(
        Frame::new_checked(&r[..]).unwrap().message_type(),
        MessageType::Unknown(0xB3)
    );
    check_mac(&c, &r);
    c.rid += 1;
    // A second Proof in an established session → OutOfOrder.
    let r = exchange(&mut s, now, &c.proof()).unwrap();
    assert_eq!(status(&r), Status::OutOfOrder);
    c.rid += 1;
    // Unknown session id → UnknownSession.
    let mut other = Raw::new();
    other.sid = c.sid ^ 1;
    other.rid = 9;
    refused(
        &mut s,
        &c,
        now,
        &other.req(MessageType::MenuQuery, &Empty),
        Status::UnknownSession,
    );
    // Query before Proof in a half-open session → OutOfOrder.
    let mut h2 = Raw {
        nc: [0x33; 16],
        ..Raw::new()
    };
    let r = exchange(&mut s, now, &h2.hello()).unwrap();
    let f = Frame::new_checked(&r[..]).unwrap();
    h2.sid = f.session_id();
    h2.ns = Challenge::parse(f.payload()).unwrap().server_nonce;
    h2.rid = 2;
    let r = exchange(&mut s, now, &h2.req(MessageType::MenuQuery, &Empty)).unwrap();
    assert_eq!(status(&r), Status::OutOfOrder);
}

/// §3, §6: sessions expire; a full table refuses Hello with Busy.
#[test]
fn expiry_and_busy() {
    let mut s = server_with(ServerConfig {
        max_sessions: 2,
        ..ServerConfig::default()
    });
    let t0 = Instant::ZERO;
    let c = establish(&mut s, t0);
    let mut h2 = Raw {
        nc: [0x44; 16],
        ..Raw::new()
    };
    assert_eq!(
        status(&exchange(&mut s, t0, &h2.hello()).unwrap()),
        Status::Ok
    );
    h2.nc = [0x45; 16];
    let before = snap(&s);
    assert_eq!(
        status(&exchange(&mut s, t0, &h2.hello()).unwrap()),
        Status::Busy
    );
    assert_eq!(snap(&s), before);
    // Half-open expires after 10 s; established lives 60 s.
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    s.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(s.session_count(), 1);
    assert_eq!(
        status(&exchange(&mut s, t0 + Duration::from_secs(10), &h2.hello()).unwrap()),
        Status::Ok
    );
    s.handle_timeout(t0 + Duration::from_secs(61));
    assert_eq!(s.session_count(), 0);
    let r = exchange(
        &mut s,
        t0 + Duration::from_secs(61),
        &c.req(MessageType::MenuQuery, &Empty),
    )
    .unwrap();
    assert_eq!(status(&r), Status::UnknownSession);
}

/// §5, §6: "a refused request changes no server state" includes the reply
/// cache — after every kind of refusal (wrong key, replay, tampered,
/// truncated, oversized, wrong version) the last good request, sent again,
/// gets the byte-identical cached reply and the policy runs no second
/// time; refused Hellos (truncated, oversized, wrong version, unknown key)
/// open no session.
#[test]
fn refusals_keep_the_reply_cache() {
    let mut s = server();
    let now = Instant::ZERO;
    let mut c = establish(&mut s, now);
    let inf = c.req(MessageType::WorkstationInfo, &RawPayload(info()));
    assert_eq!(status(&exchange(&mut s, now, &inf).unwrap()), Status::Ok);
    c.rid += 1;
    let tasks = c.req(MessageType::TaskQuery, &Empty);
    let first = exchange(&mut s, now, &tasks).unwrap();
    assert_eq!(status(&first), Status::Ok);
    let handed_out = TaskReply::parse(Frame::new_checked(&first[..]).unwrap().payload())
        .unwrap()
        .tasks
        .len();
    assert!(handed_out > 0, "the store hands out a task");
    c.rid += 1;

    let mut wrong_key = Raw {
        key: b"another-key-of-16+bytes".to_vec(),
        ..Raw::new()
    };
    wrong_key.sid = c.sid;
    wrong_key.ns = c.ns;
    wrong_key.rid = c.rid;
    let mut tampered = c.req(MessageType::TaskQuery, &Empty);
    tampered[10] ^= 0x40;
    let mut v2 = c.req(MessageType::TaskQuery, &Empty);
    v2[4] = 2;
    let mut oversized = c.req(MessageType::TaskQuery, &Empty);
    oversized.resize(MAX_FRAME_LEN + 1, 0);
    let next = c.req(MessageType::TaskQuery, &Empty);
    let cases: Vec<(&str, Vec<u8>, Status)> = vec![
        (
            "wrong key",
            wrong_key.req(MessageType::TaskQuery, &Empty),
            Status::AuthFailed,
        ),
        ("replayed", inf.clone(), Status::Replay),
        ("tampered", tampered, Status::AuthFailed),
        (
            "truncated",
            next[..next.len() - 5].to_vec(),
            Status::BadFrame,
        ),
        ("oversized", oversized, Status::TooLarge),
        ("wrong version", v2, Status::UnsupportedVersion),
    ];
    for (what, d, want) in cases {
        let before = snap(&s);
        let r = exchange(&mut s, now, &d).expect("answered");
        assert_eq!(status_raw(&r).1, want, "{what}");
        assert_eq!(snap(&s), before, "{what} changed state");
        let again = exchange(&mut s, now, &tasks).unwrap();
        assert_eq!(again, first, "{what}: the cached reply changed");
        assert_eq!(
            snap(&s),
            before,
            "{what}: the retransmission ran the policy"
        );
    }

    // Refused Hellos open nothing.
    let hello = Raw {
        nc: [0x44; 16],
        ..Raw::new()
    }
    .hello();
    let mut hello_v2 = hello.clone();
    hello_v2[4] = 9;
    let mut hello_big = hello.clone();
    hello_big.resize(MAX_FRAME_LEN + 100, 0);
    let unknown = frame(
        MessageType::Hello,
        1,
        0,
        &Hello {
            client_nonce: [5; 16],
            key_id: b"not-the-site",
        },
        None,
    );
    for (d, want) in [
        (hello[..hello.len() - 1].to_vec(), Status::BadFrame),
        (hello[..HEADER_LEN - 1].to_vec(), Status::BadFrame),
        (hello_big, Status::TooLarge),
        (hello_v2, Status::UnsupportedVersion),
        (unknown, Status::UnknownKey),
    ] {
        let before = snap(&s);
        let r = exchange(&mut s, now, &d).expect("answered");
        assert_eq!(status_raw(&r).1, want);
        assert!(r.len() <= HEADER_LEN, "Hello refusals carry no MAC");
        assert_eq!(snap(&s), before);
    }
}

/// The engine contract's buffer rule: a reply that does not fit the
/// caller's buffer stays queued, the buffer untouched, and the error names
/// the size needed; a buffer of that size then gets it.
#[test]
fn a_too_small_buffer_keeps_the_reply_queued() {
    let mut s = server();
    let c = Raw::new();
    let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_PORT);
    s.handle(
        Instant::ZERO,
        Datagram {
            local,
            remote: peer(),
            payload: &c.hello(),
        },
    );
    let mut small = [0xAAu8; 16];
    let err = s.poll_transmit(Instant::ZERO, &mut small).unwrap_err();
    assert!(err.needed > small.len() && err.needed <= MAX_FRAME_LEN);
    assert!(small.iter().all(|&b| b == 0xAA), "buffer untouched");
    let mut buf = vec![0u8; err.needed];
    let t = s.poll_transmit(Instant::ZERO, &mut buf).unwrap().unwrap();
    assert_eq!(
        (t.len, t.remote, t.local),
        (err.needed, peer(), Some(local))
    );
    let f = Frame::new_checked(&buf[..t.len]).unwrap();
    assert_eq!(f.message_type(), MessageType::Challenge);
    assert_eq!(s.poll_transmit(Instant::ZERO, &mut buf).unwrap(), None);
}
