//! The transaction server engine (sans-IO): docs/transaction-protocol.md
//! §3 (handshake), §4 (messages), §5 (statuses), §6 (reply cache).
//!
//! # How to drive it
//!
//! 1. For every datagram received on the server socket call
//!    [`Server::handle`]`(now, from, datagram)`.
//! 2. Then drain [`Server::poll_transmit`]`(now, buf)` until `None` and send
//!    each datagram to its `destination` (`buf` should hold
//!    [`MAX_FRAME_LEN`] bytes).
//! 3. Sleep until [`Server::poll_timeout`] (or the next datagram) and call
//!    [`Server::handle_timeout`]`(now)` (a spurious call is harmless).
//! 4. Drain [`Server::poll_event`] for logs and metrics.
//!
//! The server owns no socket, no clock and no random source of its own:
//! time is passed to every call and nonces/session ids come from the
//! [`Random`] given at construction.
//!
// The example's policy (`ImagingProxy` over a `MemoryStore`) needs alloc;
// the engine does not.
#![cfg_attr(
    feature = "alloc",
    doc = r#"
```
use core::net::{Ipv4Addr, SocketAddrV4};
use preboot::Instant;
use preboot::policy::{ImagingProxy, MemoryStore};
use preboot::transaction::{Client, ClientConfig, ClientEvent, Random, Server, ServerConfig, SiteKeys};
use preboot::wire::transaction::MAX_FRAME_LEN;

struct Counter(u8);
impl Random for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf { self.0 = self.0.wrapping_add(1); *b = self.0; }
    }
}
let key = b"a site secret of 16+ bytes";
let mut server = Server::new(
    ServerConfig::default(),
    SiteKeys::new(b"site", key),
    ImagingProxy::new(MemoryStore::default()),
    Counter(0),
);
let srv = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4012);
let me = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50000);
let now = Instant::ZERO;
let mut client = Client::new(ClientConfig::new(srv, b"site", key).unwrap(), [9; 16], now);
let mut buf = [0u8; MAX_FRAME_LEN];
// Hello → Challenge → Proof → ProofAck
for _ in 0..2 {
    let t = client.poll_transmit(now, &mut buf).unwrap();
    server.handle(now, me, &buf[..t.len]);
    let r = server.poll_transmit(now, &mut buf).unwrap();
    client.handle(now, srv, &buf[..r.len]);
}
assert!(client.is_established());
```
"#
)]

use super::crypto::{self, HmacSha256, LABEL_CLIENT, LABEL_SERVER};
use super::keys::KeyStore;
use super::policy::Policy;
use super::{Random, Transmit};
use crate::Instant;
use crate::wire::transaction::messages::Outcome;
use crate::wire::transaction::messages::{
    Challenge, Empty, Hello, MAX_KEY_ID_LEN, NONCE_LEN, Proof, TaskReport, WorkstationInfo,
};
use crate::wire::transaction::{
    Frame, HEADER_LEN, Header, MAC_LEN, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, MessageType, ParseError,
    Payload, Status, emit_frame,
};
use core::net::SocketAddrV4;
use core::time::Duration;
use heapless::Deque;

/// Server limits and timers (§3, §6, §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Most sessions (half-open and established) at once; each keeps one
    /// cached reply. Capped at 16 without `alloc`.
    pub max_sessions: usize,
    /// Half-open session lifetime.
    pub half_open_timeout: Duration,
    /// Established session idle lifetime.
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_sessions: 1024,
            half_open_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What happened, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A `Hello` opened a half-open session.
    SessionOpened {
        /// Session id.
        session_id: u64,
        /// Client address.
        peer: SocketAddrV4,
    },
    /// A valid `Proof` established the session.
    SessionEstablished {
        /// Session id.
        session_id: u64,
        /// Client address.
        peer: SocketAddrV4,
    },
    /// A session expired (half-open or idle).
    SessionExpired {
        /// Session id.
        session_id: u64,
    },
    /// A retransmitted request was answered from the reply cache.
    Retransmission {
        /// Session id.
        session_id: u64,
        /// Request id.
        request_id: u32,
    },
    /// A request was refused with `status`; nothing changed.
    Refused {
        /// Client address.
        peer: SocketAddrV4,
        /// Request type.
        message_type: MessageType,
        /// Status sent back.
        status: Status,
    },
    /// A task report was applied.
    TaskReported {
        /// Session id.
        session_id: u64,
        /// Task id.
        task_id: u32,
        /// Outcome.
        outcome: Outcome,
    },
    /// Events were dropped because nobody drained them.
    EventsDropped {
        /// How many.
        count: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    HalfOpen,
    Established,
}

struct Session {
    id: u64,
    phase: Phase,
    expires: Instant,
    client_nonce: [u8; NONCE_LEN],
    key_id: heapless::Vec<u8, MAX_KEY_ID_LEN>,
    hello_peer: SocketAddrV4,
    expected_proof: [u8; 32],
    mac: HmacSha256,
    // reply cache (§6)
    last_request_id: u32,
    fingerprint: [u8; 32],
    reply_len: usize,
    reply: [u8; MAX_FRAME_LEN],
    // latest WorkstationInfo payload (§4.3)
    info_len: usize,
    info: [u8; MAX_PAYLOAD_LEN],
}

#[cfg(feature = "alloc")]
type Sessions = alloc::vec::Vec<Session>;
#[cfg(not(feature = "alloc"))]
type Sessions = heapless::Vec<Session, 16>;

#[cfg(feature = "alloc")]
const SESSION_CAP: usize = usize::MAX;
#[cfg(not(feature = "alloc"))]
const SESSION_CAP: usize = 16;

const ERROR_REPLY_MAX: usize = HEADER_LEN + MAC_LEN;

#[derive(Clone, Copy)]
enum Body {
    Cached(u64),
    Inline {
        len: usize,
        bytes: [u8; ERROR_REPLY_MAX],
    },
}

#[derive(Clone, Copy)]
struct Outgoing {
    to: SocketAddrV4,
    body: Body,
}

/// The transaction server engine. `P` is the policy layer, `K` the key
/// store, `R` the random source for nonces and session ids.
pub struct Server<P: Policy, K: KeyStore, R: Random> {
    config: ServerConfig,
    policy: P,
    keys: K,
    random: R,
    sessions: Sessions,
    queue: Deque<Outgoing, 16>,
    events: Deque<ServerEvent, 64>,
    events_dropped: u32,
    transmits_dropped: u64,
}

enum Refusal {
    /// Answer without MAC.
    Plain(Status),
    /// Answer with the session's MAC.
    Authenticated(Status),
}

impl<P: Policy, K: KeyStore, R: Random> Server<P, K, R> {
    /// A server with no sessions.
    pub fn new(config: ServerConfig, keys: K, policy: P, random: R) -> Self {
        Server {
            config,
            policy,
            keys,
            random,
            sessions: Sessions::new(),
            queue: Deque::new(),
            events: Deque::new(),
            events_dropped: 0,
            transmits_dropped: 0,
        }
    }

    /// The policy layer.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The policy layer, mutable (e.g. to reload it).
    pub fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    /// Take the policy layer back (consumes the server).
    pub fn into_policy(self) -> P {
        self.policy
    }

    /// Sessions currently held (half-open and established).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Established sessions.
    pub fn established_count(&self) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.phase == Phase::Established)
            .count()
    }

    /// Replies dropped because the transmit queue was full or the buffer
    /// passed to `poll_transmit` was too small.
    pub fn transmits_dropped(&self) -> u64 {
        self.transmits_dropped
    }

    fn event(&mut self, e: ServerEvent) {
        if self.events.is_full() {
            self.events.pop_front();
            self.events_dropped = self.events_dropped.saturating_add(1);
        }
        let _ = self.events.push_back(e);
    }

    fn enqueue(&mut self, o: Outgoing) {
        if self.queue.push_back(o).is_err() {
            self.transmits_dropped += 1;
        }
    }

    fn max_sessions(&self) -> usize {
        self.config.max_sessions.clamp(1, SESSION_CAP)
    }

    /// Feed one received datagram (§2–§6).
    pub fn handle(&mut self, now: Instant, from: SocketAddrV4, datagram: &[u8]) {
        let frame = match Frame::new_checked(datagram) {
            Ok(f) => f,
            Err(e) => {
                if let Some(status) = e.status() {
                    self.refuse_raw(from, datagram, e, status);
                }
                return;
            }
        };
        let h = frame.header();
        if h.message_type.is_reply() || h.status != Status::Ok || h.request_id == 0 {
            // Never answer replies (no loops); a request must carry status 0
            // and a non-zero request id.
            if !h.message_type.is_reply() {
                self.refuse(from, &h, Refusal::Plain(Status::BadFrame), None);
            }
            return;
        }
        if h.message_type == MessageType::Hello {
            self.handle_hello(now, from, &frame);
        } else {
            self.handle_session(now, from, &frame);
        }
    }

    fn refuse_raw(&mut self, from: SocketAddrV4, d: &[u8], e: ParseError, status: Status) {
        // Echo what the header prefix lets us read.
        let f = Frame::new_unchecked(d);
        let h = Header {
            message_type: f.message_type(),
            status,
            request_id: f.request_id(),
            session_id: f.session_id(),
        };
        if h.message_type.is_reply() {
            return;
        }
        let _ = e;
        self.refuse(from, &h, Refusal::Plain(status), None);
    }

    /// Queue an error reply; nothing else changes.
    fn refuse(&mut self, to: SocketAddrV4, req: &Header, r: Refusal, session: Option<usize>) {
        let (status, mac) = match r {
            Refusal::Plain(s) => (s, None),
            Refusal::Authenticated(s) => (
                s,
                session
                    .and_then(|i| self.sessions.get(i))
                    .map(|s| s.mac.clone()),
            ),
        };
        let h = Header {
            message_type: req.message_type.reply(),
            status,
            request_id: req.request_id,
            session_id: req.session_id,
        };
        let mut bytes = [0u8; ERROR_REPLY_MAX];
        if let Ok(len) = emit_frame(&h, &Empty, mac.is_some(), &mut bytes) {
            if let Some(m) = &mac {
                crypto::seal(m, &mut bytes, len);
            }
            self.enqueue(Outgoing {
                to,
                body: Body::Inline { len, bytes },
            });
        }
        self.event(ServerEvent::Refused {
            peer: to,
            message_type: req.message_type,
            status,
        });
    }

    fn expire(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.sessions.len() {
            if self.sessions[i].expires <= now {
                let id = self.sessions[i].id;
                self.sessions.swap_remove(i);
                self.event(ServerEvent::SessionExpired { session_id: id });
            } else {
                i += 1;
            }
        }
    }

    fn handle_hello<T: AsRef<[u8]>>(&mut self, now: Instant, from: SocketAddrV4, frame: &Frame<T>) {
        let h = frame.header();
        if h.session_id != 0 || frame.mac().is_some() {
            return self.refuse(from, &h, Refusal::Plain(Status::BadFrame), None);
        }
        let hello = match Hello::parse(frame.payload()) {
            Ok(x) => x,
            Err(_) => return self.refuse(from, &h, Refusal::Plain(Status::BadPayload), None),
        };
        // §6: a retransmitted Hello gets the same Challenge.
        if let Some(s) = self.sessions.iter().find(|s| {
            s.phase == Phase::HalfOpen
                && s.hello_peer == from
                && s.last_request_id == h.request_id
                && s.client_nonce == hello.client_nonce
                && &s.key_id[..] == hello.key_id
                && s.expires > now
        }) {
            let (sid, rid) = (s.id, h.request_id);
            self.enqueue(Outgoing {
                to: from,
                body: Body::Cached(sid),
            });
            self.event(ServerEvent::Retransmission {
                session_id: sid,
                request_id: rid,
            });
            return;
        }
        let Some(key) = self.keys.key(hello.key_id) else {
            return self.refuse(from, &h, Refusal::Plain(Status::UnknownKey), None);
        };
        let mut key_buf = [0u8; 64];
        let key_len = key.len().min(64);
        key_buf[..key_len].copy_from_slice(&key[..key_len]);
        let key = &key_buf[..key_len];
        self.expire(now);
        if self.sessions.len() >= self.max_sessions() {
            return self.refuse(from, &h, Refusal::Plain(Status::Busy), None);
        }
        let mut rnd = [0u8; NONCE_LEN + 8];
        let mut sid = 0;
        for _ in 0..8 {
            self.random.fill(&mut rnd);
            let mut s = [0u8; 8];
            s.copy_from_slice(&rnd[NONCE_LEN..]);
            sid = u64::from_be_bytes(s);
            if sid != 0 && !self.sessions.iter().any(|x| x.id == sid) {
                break;
            }
            sid = 0;
        }
        if sid == 0 {
            return self.refuse(from, &h, Refusal::Plain(Status::ServerError), None);
        }
        let mut ns = [0u8; NONCE_LEN];
        ns.copy_from_slice(&rnd[..NONCE_LEN]);
        let nc = hello.client_nonce;
        let challenge = Challenge {
            server_nonce: ns,
            server_proof: crypto::proof(key, LABEL_SERVER, &nc, &ns, sid, hello.key_id),
        };
        let mut session = Session {
            id: sid,
            phase: Phase::HalfOpen,
            expires: now + self.config.half_open_timeout,
            client_nonce: nc,
            key_id: heapless::Vec::from_slice(hello.key_id).unwrap_or_default(),
            hello_peer: from,
            expected_proof: crypto::proof(key, LABEL_CLIENT, &nc, &ns, sid, hello.key_id),
            mac: crypto::session_mac(key, &nc, &ns, sid),
            last_request_id: h.request_id,
            fingerprint: [0; 32],
            reply_len: 0,
            reply: [0; MAX_FRAME_LEN],
            info_len: 0,
            info: [0; MAX_PAYLOAD_LEN],
        };
        let rh = Header {
            message_type: MessageType::Challenge,
            status: Status::Ok,
            request_id: h.request_id,
            session_id: sid,
        };
        match emit_frame(&rh, &challenge, false, &mut session.reply) {
            Ok(n) => session.reply_len = n,
            Err(_) => return self.refuse(from, &h, Refusal::Plain(Status::ServerError), None),
        }
        #[cfg(feature = "alloc")]
        self.sessions.push(session);
        #[cfg(not(feature = "alloc"))]
        if self.sessions.push(session).is_err() {
            return self.refuse(from, &h, Refusal::Plain(Status::Busy), None);
        }
        self.enqueue(Outgoing {
            to: from,
            body: Body::Cached(sid),
        });
        self.event(ServerEvent::SessionOpened {
            session_id: sid,
            peer: from,
        });
    }

    fn handle_session<T: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        frame: &Frame<T>,
    ) {
        let h = frame.header();
        let Some(idx) = self
            .sessions
            .iter()
            .position(|s| s.id == h.session_id && h.session_id != 0 && s.expires > now)
        else {
            return self.refuse(from, &h, Refusal::Plain(Status::UnknownSession), None);
        };
        let s = &self.sessions[idx];
        if !crypto::verify(&s.mac, frame) {
            return self.refuse(from, &h, Refusal::Plain(Status::AuthFailed), None);
        }
        let mut fp = [0u8; 32];
        fp.copy_from_slice(frame.mac().unwrap_or(&[0; 32]));
        if h.request_id == s.last_request_id {
            // §6: the cached request again → the cached reply, nothing else.
            if s.fingerprint == fp && s.reply_len > 0 {
                let sid = s.id;
                self.enqueue(Outgoing {
                    to: from,
                    body: Body::Cached(sid),
                });
                return self.event(ServerEvent::Retransmission {
                    session_id: sid,
                    request_id: h.request_id,
                });
            }
            return self.refuse(from, &h, Refusal::Plain(Status::Replay), None);
        }
        if h.request_id <= s.last_request_id {
            return self.refuse(from, &h, Refusal::Plain(Status::Replay), None);
        }
        let outcome = self.dispatch(now, idx, frame);
        match outcome {
            Ok(()) => {
                let s = &mut self.sessions[idx];
                s.last_request_id = h.request_id;
                s.fingerprint = fp;
                s.expires = now + self.config.idle_timeout;
                let sid = s.id;
                self.enqueue(Outgoing {
                    to: from,
                    body: Body::Cached(sid),
                });
            }
            Err(r) => self.refuse(from, &h, r, Some(idx)),
        }
    }

    /// Run one new, authenticated request. On `Ok` the reply is in the
    /// session's reply buffer; on `Err` nothing has changed.
    fn dispatch<T: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        idx: usize,
        frame: &Frame<T>,
    ) -> Result<(), Refusal> {
        let h = frame.header();
        let auth = Refusal::Authenticated;
        let Server {
            sessions,
            policy,
            keys,
            ..
        } = self;
        let s = &mut sessions[idx];
        let Session {
            phase,
            reply,
            reply_len,
            info,
            info_len,
            mac,
            expected_proof,
            key_id,
            ..
        } = s;
        let rh = Header {
            message_type: h.message_type.reply(),
            status: Status::Ok,
            request_id: h.request_id,
            session_id: h.session_id,
        };
        fn write<Q: Payload + ?Sized>(
            rh: &Header,
            p: &Q,
            mac: &HmacSha256,
            reply: &mut [u8; MAX_FRAME_LEN],
            reply_len: &mut usize,
        ) -> Result<(), Refusal> {
            let mut tmp = [0u8; MAX_FRAME_LEN];
            let n = emit_frame(rh, p, true, &mut tmp)
                .map_err(|_| Refusal::Authenticated(Status::ServerError))?;
            crypto::seal(mac, &mut tmp, n);
            reply[..n].copy_from_slice(&tmp[..n]);
            *reply_len = n;
            Ok(())
        }
        match h.message_type {
            MessageType::Proof => {
                if *phase != Phase::HalfOpen {
                    return Err(auth(Status::OutOfOrder));
                }
                let p = Proof::parse(frame.payload()).map_err(|_| auth(Status::BadPayload))?;
                if !crypto::ct_eq(&p.client_proof, expected_proof) {
                    return Err(Refusal::Plain(Status::AuthFailed));
                }
                write(&rh, &Empty, mac, reply, reply_len)?;
                *phase = Phase::Established;
                let (session_id, peer) = (s.id, s.hello_peer);
                self.event(ServerEvent::SessionEstablished { session_id, peer });
                Ok(())
            }
            _ if *phase != Phase::Established => Err(Refusal::Plain(Status::OutOfOrder)),
            MessageType::WorkstationInfo => {
                let payload = frame.payload();
                let wi = WorkstationInfo::parse(payload).map_err(|_| auth(Status::BadPayload))?;
                // §3.1: the session's key must be allowed to speak for
                // this workstation.
                if !keys.authorizes(key_id, &wi) {
                    return Err(auth(Status::AuthFailed));
                }
                let ack = policy.register(now, &wi).map_err(auth)?;
                write(&rh, &ack, mac, reply, reply_len)?;
                info[..payload.len()].copy_from_slice(payload);
                *info_len = payload.len();
                Ok(())
            }
            MessageType::MenuQuery | MessageType::TaskQuery | MessageType::TaskReport => {
                if *info_len == 0 {
                    return Err(auth(Status::OutOfOrder));
                }
                let wi = WorkstationInfo::parse(&info[..*info_len])
                    .map_err(|_| auth(Status::ServerError))?;
                match h.message_type {
                    MessageType::MenuQuery => {
                        Empty::parse(frame.payload()).map_err(|_| auth(Status::BadPayload))?;
                        let m = policy.menu(now, &wi).map_err(auth)?;
                        write(&rh, &m, mac, reply, reply_len)
                    }
                    MessageType::TaskQuery => {
                        Empty::parse(frame.payload()).map_err(|_| auth(Status::BadPayload))?;
                        let t = policy.tasks(now, &wi).map_err(auth)?;
                        write(&rh, &t, mac, reply, reply_len)
                    }
                    _ => {
                        let r = TaskReport::parse(frame.payload())
                            .map_err(|_| auth(Status::BadPayload))?;
                        policy.report(now, &wi, &r).map_err(auth)?;
                        write(&rh, &Empty, mac, reply, reply_len)?;
                        let session_id = s.id;
                        self.event(ServerEvent::TaskReported {
                            session_id,
                            task_id: r.task_id,
                            outcome: r.outcome,
                        });
                        Ok(())
                    }
                }
            }
            _ => Err(auth(Status::UnknownType)),
        }
    }

    /// The next datagram to send, written into `buf` (give it
    /// [`MAX_FRAME_LEN`] bytes).
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        while let Some(o) = self.queue.pop_front() {
            let bytes: &[u8] = match &o.body {
                Body::Inline { len, bytes } => &bytes[..*len],
                Body::Cached(sid) => match self.sessions.iter().find(|s| s.id == *sid) {
                    Some(s) => &s.reply[..s.reply_len],
                    None => continue,
                },
            };
            let Some(dst) = buf.get_mut(..bytes.len()) else {
                self.transmits_dropped += 1;
                continue;
            };
            dst.copy_from_slice(bytes);
            return Some(Transmit {
                destination: o.to,
                len: bytes.len(),
            });
        }
        None
    }

    /// When [`Server::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions.iter().map(|s| s.expires).min()
    }

    /// Expire sessions whose time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        if self.events_dropped > 0 {
            let count = self.events_dropped;
            self.events_dropped = 0;
            return Some(ServerEvent::EventsDropped { count });
        }
        self.events.pop_front()
    }
}
