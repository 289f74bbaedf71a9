//! The transaction server engine (sans-IO): docs/transaction-protocol.md
//! §3.2 (stateless cookie), §3.3 (Noise `IK`, responder), §3.4 (the key
//! decides the workstation object), §3.5 (bounded sessions), §4
//! (messages, parts), §5 (statuses), §6 (replay window, reply cache).
//!
//! # How to drive it
//!
//! The [engine contract](crate::engine):
//!
//! 1. For every datagram received on the server socket call
//!    [`Server::handle`]`(now, Datagram { local, remote, payload })`.
//! 2. Then drain [`Server::poll_transmit`]`(now, buf)` until `Ok(None)` and
//!    send each datagram to its `remote` (`buf` should hold
//!    [`Server::MAX_DATAGRAM`] bytes; a smaller one gets
//!    [`BufferTooSmall`] and the reply stays queued).
//! 3. Sleep until [`Server::poll_timeout`] (or the next datagram) and call
//!    [`Server::handle_timeout`]`(now)` (a spurious call is harmless).
//! 4. Drain [`Server::poll_event`] for logs and metrics; bind the keys of
//!    [`ServerEvent::KeyPending`] (or [`Server::pending_keys`]) in the key
//!    store as an administrator decides.
//!
//! The server owns no socket, no clock and no random source of its own:
//! time is passed to every call; cookie secrets, ephemeral keys and
//! session ids come from the [`Random`] given at construction.

use super::Random;
use super::cookie::CookieSecrets;
use super::crypto::{self, Aead};
use super::dh_cache::DhCache;
use super::handshake::{self, Symmetric};
use super::keys::{KeyStore, StaticKey};
use super::policy::Policy;
use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram, Transmit};
use crate::wire::transaction::menu_choice::TaskQuery;
use crate::wire::transaction::messages::{
    ACCEPT_PLAIN_LEN, Cookie, Empty, Hello, Init, InitPayload, Outcome, TaskReport, WorkstationInfo,
};
use crate::wire::transaction::{
    FLAG_MORE, Frame, HEADER_LEN, Header, MAX_FRAME_LEN, MAX_MESSAGE_LEN, MessageType, Payload,
    Status, TAG_LEN, emit_frame,
};
use crate::workstation::WorkstationId;
use core::net::SocketAddrV4;
use core::time::Duration;
use heapless::Deque;

/// Server limits and timers (§3.2, §3.5, §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Most established sessions; capped at 16 without `alloc`.
    pub max_sessions: usize,
    /// Most half-open sessions; capped at 8 without `alloc`.
    pub max_half_open: usize,
    /// Most half-open sessions per source IPv4 address.
    pub max_half_open_per_address: usize,
    /// Most established sessions per key.
    pub max_sessions_per_key: usize,
    /// Half-open session lifetime.
    pub half_open_timeout: Duration,
    /// Established session idle lifetime.
    pub idle_timeout: Duration,
    /// How often the cookie secret is replaced.
    pub cookie_rotation: Duration,
    /// How many times a cached reply is sent again (§6).
    pub max_resends: u8,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_sessions: 1024,
            max_half_open: 256,
            max_half_open_per_address: 4,
            max_sessions_per_key: 2,
            half_open_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            cookie_rotation: Duration::from_secs(120),
            max_resends: 3,
        }
    }
}

/// Why a datagram got no answer at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// An `Init` whose cookie does not verify for its source (§3.2).
    BadCookie,
    /// A handshake that did not decrypt or had a zero DH (§3.3).
    HandshakeFailed,
    /// A sealed frame whose tag does not verify (§2.4).
    BadTag,
    /// A sealed frame from another address than the session's (§3.5).
    WrongAddress,
    /// A request id older than the last one, or the last one with other
    /// bytes (§6).
    Replay,
    /// A retransmission beyond the answered limit (§6).
    ResendLimit,
}

/// What happened, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A handshake completed: a half-open session (§3.5).
    SessionOpened {
        /// Session id.
        session_id: u64,
        /// Client address.
        peer: SocketAddrV4,
    },
    /// The first sealed request verified: the session is established.
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
    /// A half-open session gave way to a newer one, or a key's oldest
    /// established session to its newest (§3.5).
    SessionReplaced {
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
    /// A request was refused with `status`.
    Refused {
        /// Client address.
        peer: SocketAddrV4,
        /// Request type.
        message_type: MessageType,
        /// Status sent back.
        status: Status,
    },
    /// A datagram was dropped without an answer.
    Dropped {
        /// Sender.
        peer: SocketAddrV4,
        /// Why.
        reason: DropReason,
    },
    /// A client with an unknown key completed a handshake; its key is
    /// recorded as pending (§3.4).
    KeyPending {
        /// The client's static public key.
        key: [u8; 32],
        /// Client address.
        peer: SocketAddrV4,
    },
    /// Auto-enrolment bound a key to an object (§3.4).
    KeyEnrolled {
        /// The client's static public key.
        key: [u8; 32],
        /// The object.
        workstation: WorkstationId,
    },
    /// A `WorkstationInfo` was accepted for `workstation` (§4.3): its
    /// facts are the session's until the next one
    /// ([`Server::session_info`]).
    InfoAccepted {
        /// Session id.
        session_id: u64,
        /// The object the session speaks for (§3.4).
        workstation: WorkstationId,
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

/// A key seen in a handshake but not bound to any object (§3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingKey {
    /// The client's static public key.
    pub key: [u8; 32],
    /// The address it last came from.
    pub peer: SocketAddrV4,
    /// First seen.
    pub first_seen: Instant,
    /// Last seen.
    pub last_seen: Instant,
}

const MAX_PENDING: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    HalfOpen,
    Established,
}

struct Session {
    id: u64,
    phase: Phase,
    peer: SocketAddrV4,
    created: Instant,
    expires: Instant,
    client_static: [u8; 32],
    client_ephemeral: [u8; 32],
    /// The object the key speaks for; `None` only while auto-enrolment
    /// waits for the first `WorkstationInfo` (§3.4).
    who: Option<WorkstationId>,
    rx: Aead,
    tx: Aead,
    // reply cache (§6)
    last_request_id: u32,
    fingerprint: [u8; TAG_LEN],
    resends: u8,
    reply_len: usize,
    reply: [u8; MAX_FRAME_LEN],
    // latest accepted WorkstationInfo plaintext (§4.3)
    info_len: usize,
    info: [u8; MAX_MESSAGE_LEN],
    // message in parts (§4.7)
    parts_type: MessageType,
    parts_len: usize,
    parts: [u8; MAX_MESSAGE_LEN],
}

#[cfg(feature = "alloc")]
type Sessions = alloc::vec::Vec<alloc::boxed::Box<Session>>;
#[cfg(not(feature = "alloc"))]
type Sessions = heapless::Vec<Session, 24>;

#[cfg(feature = "alloc")]
const SESSION_CAP: usize = usize::MAX;
#[cfg(not(feature = "alloc"))]
const SESSION_CAP: usize = 16;
#[cfg(feature = "alloc")]
const HALF_OPEN_CAP: usize = usize::MAX;
#[cfg(not(feature = "alloc"))]
const HALF_OPEN_CAP: usize = 8;

/// Replies the server holds until [`Server::poll_transmit`] drains them;
/// one more is dropped (and counted). A driver handles at most this many
/// datagrams between two drains.
pub const QUEUED: usize = 16;

/// Bare headers, `Cookie` and `Accept` are built inline.
const INLINE_MAX: usize = 96;

#[derive(Clone, Copy)]
enum Body {
    Cached(u64),
    Inline { len: usize, bytes: [u8; INLINE_MAX] },
}

#[derive(Clone, Copy)]
struct Outgoing {
    to: SocketAddrV4,
    body: Body,
}

/// The transaction server engine. `P` is the policy layer, `K` the key
/// store, `R` the random source for cookie secrets, ephemeral keys and
/// session ids.
pub struct Server<P: Policy, K: KeyStore, R: Random> {
    config: ServerConfig,
    key: StaticKey,
    policy: P,
    keys: K,
    random: R,
    cookies: CookieSecrets,
    ss_cache: DhCache,
    sessions: Sessions,
    pending: heapless::Vec<PendingKey, MAX_PENDING>,
    /// Replies, each with the local address of the socket that sends it.
    queue: Deque<(SocketAddrV4, Outgoing), QUEUED>,
    /// The `local` of the datagram being handled.
    local: SocketAddrV4,
    events: Deque<ServerEvent, 64>,
    events_dropped: u32,
    transmits_dropped: u64,
}

fn bare(to: SocketAddrV4, req: &Header, status: Status) -> Option<Outgoing> {
    let h = Header {
        message_type: req.message_type.reply(),
        status,
        flags: 0,
        request_id: req.request_id,
        session_id: req.session_id,
    };
    let mut bytes = [0u8; INLINE_MAX];
    let len = emit_frame(&h, &Empty, false, &mut bytes).ok()?;
    Some(Outgoing {
        to,
        body: Body::Inline { len, bytes },
    })
}

/// The `Hello` frame as the client sent it, rebuilt from an `Init` (§3.3).
fn hello_frame(flags: u8, nonce: [u8; 16]) -> Option<[u8; 72]> {
    let h = Header {
        message_type: MessageType::Hello,
        status: Status::Ok,
        flags,
        request_id: 1,
        session_id: 0,
    };
    let mut b = [0u8; 72];
    emit_frame(&h, &Hello { nonce }, false, &mut b).ok()?;
    Some(b)
}

/// The `Cookie` frame as the server sends it (§3.2).
fn cookie_frame(cookie: [u8; 32]) -> Option<[u8; 56]> {
    let h = Header {
        message_type: MessageType::Cookie,
        status: Status::Ok,
        flags: 0,
        request_id: 1,
        session_id: 0,
    };
    let mut b = [0u8; 56];
    emit_frame(&h, &Cookie { cookie }, false, &mut b).ok()?;
    Some(b)
}

impl<P: Policy, K: KeyStore, R: Random> Server<P, K, R> {
    /// The largest datagram the server sends ([`MAX_FRAME_LEN`]): give
    /// `poll_transmit` a buffer of at least this size.
    pub const MAX_DATAGRAM: usize = MAX_FRAME_LEN;

    /// A server with the static key `key` (whose public half the clients
    /// pin), no sessions, and a fresh cookie secret.
    pub fn new(config: ServerConfig, key: StaticKey, keys: K, policy: P, random: R) -> Self {
        Server {
            config,
            key,
            policy,
            keys,
            random,
            cookies: CookieSecrets::new(config.cookie_rotation),
            ss_cache: DhCache::default(),
            sessions: Sessions::new(),
            pending: heapless::Vec::new(),
            queue: Deque::new(),
            local: SocketAddrV4::new(core::net::Ipv4Addr::UNSPECIFIED, 0),
            events: Deque::new(),
            events_dropped: 0,
            transmits_dropped: 0,
        }
    }

    /// The server's public key: the one the preboot client pins (§3.1).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public()
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

    /// The key store.
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// The key store, mutable (an administrator bound a pending key).
    pub fn keys_mut(&mut self) -> &mut K {
        &mut self.keys
    }

    /// Compute the static-static DH of a bound workstation key ahead of its
    /// first handshake (§3.3 `ss`; e.g. for every key when the key store is
    /// loaded or reloaded), so a boot storm costs three X25519 operations
    /// per handshake instead of four. Handshakes fill the same cache.
    pub fn prepare_key(&mut self, public: &[u8; 32]) {
        if self.ss_cache.get(public).is_none() {
            if let Some(ss) = crypto::dh(self.key.private(), public) {
                self.ss_cache.insert(*public, ss);
            }
        }
    }

    /// Keys that completed a handshake but are bound to no object (§3.4),
    /// at most 64, least recently seen forgotten first.
    pub fn pending_keys(&self) -> &[PendingKey] {
        &self.pending
    }

    /// The last `WorkstationInfo` accepted on session `session_id` (§4.3),
    /// if the session exists and sent one: what the policy sees of the
    /// workstation (e.g. to log its facts on [`ServerEvent::InfoAccepted`]).
    pub fn session_info(&self, session_id: u64) -> Option<WorkstationInfo<'_>> {
        let s = self.sessions.iter().find(|s| s.id == session_id)?;
        let bytes = s.info.get(..s.info_len).filter(|b| !b.is_empty())?;
        WorkstationInfo::parse(bytes).ok()
    }

    /// Sessions currently held (half-open and established).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Established sessions.
    pub fn established_count(&self) -> usize {
        self.count(|s| s.phase == Phase::Established)
    }

    /// Half-open sessions.
    pub fn half_open_count(&self) -> usize {
        self.count(|s| s.phase == Phase::HalfOpen)
    }

    fn count(&self, f: impl Fn(&Session) -> bool) -> usize {
        self.sessions.iter().filter(|s| f(s)).count()
    }

    /// Replies dropped because the transmit queue was full (a too-small
    /// `poll_transmit` buffer drops nothing: the reply stays queued).
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

    fn enqueue(&mut self, o: Option<Outgoing>) {
        let Some(o) = o else { return };
        if self.queue.push_back((self.local, o)).is_err() {
            self.transmits_dropped += 1;
        }
    }

    fn refuse(&mut self, to: SocketAddrV4, req: &Header, status: Status) {
        self.enqueue(bare(to, req, status));
        self.event(ServerEvent::Refused {
            peer: to,
            message_type: req.message_type,
            status,
        });
    }

    /// §6: a repeated request gets session `i`'s cached reply again, to
    /// the address that sent the original, at most `max_resends` times.
    fn resend_cached(&mut self, i: usize, from: SocketAddrV4, request_id: u32) {
        let s = &mut self.sessions[i];
        if s.resends >= self.config.max_resends {
            return self.drop_it(from, DropReason::ResendLimit);
        }
        s.resends += 1;
        let sid = s.id;
        self.enqueue(Some(Outgoing {
            to: from,
            body: Body::Cached(sid),
        }));
        self.event(ServerEvent::Retransmission {
            session_id: sid,
            request_id,
        });
    }

    fn drop_it(&mut self, peer: SocketAddrV4, reason: DropReason) {
        self.event(ServerEvent::Dropped { peer, reason });
    }

    fn random_bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.random.fill(&mut b);
        b
    }

    /// Feed one received datagram (§2–§6).
    pub fn handle(&mut self, now: Instant, datagram: Datagram<'_>) {
        self.local = datagram.local;
        let random = &mut self.random;
        self.cookies.rotate_if_due(now, |b| random.fill(b));
        let (from, bytes) = (datagram.remote, datagram.payload);
        let frame = match Frame::new_checked(bytes) {
            Ok(f) => f,
            Err(e) => {
                // §2.2: below the minimum frame or not PBTX → nothing.
                let Some(status) = e.status() else { return };
                let f = Frame::new_unchecked(bytes);
                let h = Header {
                    message_type: f.message_type(),
                    status,
                    flags: 0,
                    request_id: f.request_id(),
                    session_id: f.session_id(),
                };
                if !h.message_type.is_reply() {
                    self.refuse(from, &h, status);
                }
                return;
            }
        };
        let h = frame.header();
        if h.message_type.is_reply() {
            return; // never answer replies (no loops)
        }
        if h.status != Status::Ok || h.request_id == 0 {
            return self.refuse(from, &h, Status::BadFrame);
        }
        match h.message_type {
            MessageType::Hello => self.handle_hello(from, &frame),
            MessageType::Init => self.handle_init(now, from, &frame),
            _ => self.handle_sealed(now, from, &frame),
        }
    }

    /// §3.2: a `Cookie` computed from the `Hello`; no state.
    fn handle_hello(&mut self, from: SocketAddrV4, frame: &Frame<&[u8]>) {
        let h = frame.header();
        if h.session_id != 0 || h.request_id != 1 || frame.is_sealed() {
            return self.refuse(from, &h, Status::BadFrame);
        }
        if Hello::parse(frame.payload()).is_err() {
            return self.refuse(from, &h, Status::BadPayload);
        }
        let cookie = self.cookies.make(from, frame.as_bytes());
        let Some(bytes) = cookie_frame(cookie) else {
            return;
        };
        let mut inline = [0u8; INLINE_MAX];
        inline[..56].copy_from_slice(&bytes);
        self.enqueue(Some(Outgoing {
            to: from,
            body: Body::Inline {
                len: 56,
                bytes: inline,
            },
        }));
    }

    /// §3.3–§3.5: cookie, handshake, key resolution, session.
    fn handle_init(&mut self, now: Instant, from: SocketAddrV4, frame: &Frame<&[u8]>) {
        let h = frame.header();
        if h.session_id != 0 || h.request_id != 2 || frame.is_sealed() {
            return self.refuse(from, &h, Status::BadFrame);
        }
        let Ok(init) = Init::parse(frame.payload()) else {
            return self.refuse(from, &h, Status::BadPayload);
        };
        // §6: a retransmitted Init gets the same Accept, only to its source.
        if let Some(i) = self
            .sessions
            .iter()
            .position(|s| s.client_ephemeral == init.ephemeral && s.expires > now)
        {
            let s = &mut self.sessions[i];
            if s.peer != from || s.phase != Phase::HalfOpen {
                return self.drop_it(from, DropReason::Replay);
            }
            return self.resend_cached(i, from, h.request_id);
        }
        let (Some(hello), Some(cookie)) =
            (hello_frame(h.flags, init.nonce), cookie_frame(init.cookie))
        else {
            return;
        };
        if !self.cookies.verify(from, &hello, &init.cookie) {
            return self.drop_it(from, DropReason::BadCookie);
        }
        let sym = Symmetric::new(&hello, &cookie, frame.header_bytes(), &self.key.public());
        let mut plain = [0u8; MAX_FRAME_LEN];
        let Some(dst) = plain.get_mut(..init.encrypted_payload.len()) else {
            return;
        };
        dst.copy_from_slice(init.encrypted_payload);
        let (private, cache) = (self.key.private(), &self.ss_cache);
        let mut fresh_ss = None;
        let Some((resp, n)) = handshake::read_init(
            sym,
            private,
            &init.ephemeral,
            &init.encrypted_static,
            dst,
            |k| {
                cache.get(k).or_else(|| {
                    fresh_ss = crypto::dh(private, k);
                    fresh_ss
                })
            },
        ) else {
            return self.drop_it(from, DropReason::HandshakeFailed);
        };
        if InitPayload::parse(&dst[..n]).is_err() {
            return self.drop_it(from, DropReason::HandshakeFailed);
        }
        // §3.4: which object does this key speak for?
        let who = self.keys.object_of_key(&resp.client_static);
        if let (Some(_), Some(ss)) = (who, fresh_ss) {
            self.ss_cache.insert(resp.client_static, ss);
        }
        self.expire(now);
        let status = if who.is_none() && !self.keys.auto_enrol() {
            self.record_pending(now, resp.client_static, from);
            Status::Pending
        } else if self.established_count() >= self.max_sessions() {
            Status::Busy
        } else {
            Status::Ok
        };
        let sid = if status == Status::Ok {
            self.new_session_id()
        } else {
            0
        };
        let mut plain9 = [0u8; ACCEPT_PLAIN_LEN];
        plain9[0] = status.into();
        plain9[1..].copy_from_slice(&sid.to_be_bytes());
        let ephemeral: [u8; 32] = self.random_bytes();
        let Some((accept, keys)) = handshake::write_accept(&resp, &ephemeral, plain9) else {
            return self.drop_it(from, DropReason::HandshakeFailed);
        };
        let rh = Header {
            message_type: MessageType::Accept,
            status,
            flags: 0,
            request_id: h.request_id,
            session_id: sid,
        };
        let mut bytes = [0u8; INLINE_MAX];
        let Ok(len) = emit_frame(&rh, &accept, false, &mut bytes) else {
            return;
        };
        if status != Status::Ok || sid == 0 {
            self.enqueue(Some(Outgoing {
                to: from,
                body: Body::Inline { len, bytes },
            }));
            return self.event(ServerEvent::Refused {
                peer: from,
                message_type: MessageType::Init,
                status,
            });
        }
        self.make_room_for_half_open(from);
        let mut session = Session {
            id: sid,
            phase: Phase::HalfOpen,
            peer: from,
            created: now,
            expires: now + self.config.half_open_timeout,
            client_static: resp.client_static,
            client_ephemeral: init.ephemeral,
            who,
            rx: Aead::new(&keys.client_to_server),
            tx: Aead::new(&keys.server_to_client),
            last_request_id: h.request_id,
            fingerprint: [0; TAG_LEN],
            resends: 0,
            reply_len: len,
            reply: [0; MAX_FRAME_LEN],
            info_len: 0,
            info: [0; MAX_MESSAGE_LEN],
            parts_type: MessageType::Unknown(0),
            parts_len: 0,
            parts: [0; MAX_MESSAGE_LEN],
        };
        session.reply[..len].copy_from_slice(&bytes[..len]);
        #[cfg(feature = "alloc")]
        self.sessions.push(alloc::boxed::Box::new(session));
        #[cfg(not(feature = "alloc"))]
        if self.sessions.push(session).is_err() {
            return;
        }
        self.enqueue(Some(Outgoing {
            to: from,
            body: Body::Cached(sid),
        }));
        self.event(ServerEvent::SessionOpened {
            session_id: sid,
            peer: from,
        });
    }

    fn max_sessions(&self) -> usize {
        self.config.max_sessions.clamp(1, SESSION_CAP)
    }

    fn new_session_id(&mut self) -> u64 {
        for _ in 0..8 {
            let sid = u64::from_be_bytes(self.random_bytes());
            if sid != 0 && !self.sessions.iter().any(|s| s.id == sid) {
                return sid;
            }
        }
        0
    }

    fn record_pending(&mut self, now: Instant, key: [u8; 32], peer: SocketAddrV4) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.key == key) {
            p.last_seen = now;
            p.peer = peer;
        } else {
            if self.pending.is_full() {
                if let Some(i) = (0..self.pending.len()).min_by_key(|&i| self.pending[i].last_seen)
                {
                    self.pending.swap_remove(i);
                }
            }
            let _ = self.pending.push(PendingKey {
                key,
                peer,
                first_seen: now,
                last_seen: now,
            });
        }
        self.event(ServerEvent::KeyPending { key, peer });
    }

    /// §3.5: evict the oldest half-open session of this address, else the
    /// oldest overall, when a limit is reached. Established ones are never
    /// touched.
    fn make_room_for_half_open(&mut self, from: SocketAddrV4) {
        let oldest = |sessions: &Sessions, same_ip: bool| {
            sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.phase == Phase::HalfOpen && (!same_ip || s.peer.ip() == from.ip())
                })
                .min_by_key(|(_, s)| s.created)
                .map(|(i, _)| i)
        };
        let per_ip = self
            .sessions
            .iter()
            .filter(|s| s.phase == Phase::HalfOpen && s.peer.ip() == from.ip())
            .count();
        let victim = if per_ip >= self.config.max_half_open_per_address.max(1) {
            oldest(&self.sessions, true)
        } else if self.half_open_count() >= self.config.max_half_open.clamp(1, HALF_OPEN_CAP) {
            oldest(&self.sessions, false)
        } else {
            None
        };
        if let Some(i) = victim {
            let id = self.sessions[i].id;
            self.sessions.swap_remove(i);
            self.event(ServerEvent::SessionReplaced { session_id: id });
        }
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

    /// §2.4, §6: a sealed request of a session.
    fn handle_sealed(&mut self, now: Instant, from: SocketAddrV4, frame: &Frame<&[u8]>) {
        let h = frame.header();
        let Some(idx) = self
            .sessions
            .iter()
            .position(|s| s.id == h.session_id && h.session_id != 0 && s.expires > now)
        else {
            return self.refuse(from, &h, Status::UnknownSession);
        };
        let Some(tag) = frame.tag() else {
            return self.drop_it(from, DropReason::BadTag);
        };
        let mut fp = [0u8; TAG_LEN];
        fp.copy_from_slice(tag);
        let s = &mut self.sessions[idx];
        if s.peer != from {
            return self.drop_it(from, DropReason::WrongAddress);
        }
        if h.request_id == s.last_request_id && s.phase == Phase::Established {
            // §6: the cached request again → the cached reply, a few times.
            if s.fingerprint != fp {
                return self.drop_it(from, DropReason::Replay);
            }
            return self.resend_cached(idx, from, h.request_id);
        }
        if h.request_id <= s.last_request_id {
            return self.drop_it(from, DropReason::Replay);
        }
        // Decrypt after the parts already kept (§4.7).
        let start = if s.parts_len > 0 && s.parts_type == h.message_type {
            s.parts_len
        } else {
            0
        };
        let Some(n) = frame
            .payload()
            .len()
            .checked_add(start)
            .filter(|&end| end <= MAX_MESSAGE_LEN)
            .and_then(|_| crypto::open_frame(&s.rx, frame, &mut s.parts[start..]))
        else {
            // Too long for the parts buffer, or a bad tag.
            if frame.payload().len() + start > MAX_MESSAGE_LEN && self.verify_only(idx, frame) {
                let s = &mut self.sessions[idx];
                s.parts_len = 0;
                return self.answer(now, idx, &h, fp, Err(Status::TooLarge));
            }
            return self.drop_it(from, DropReason::BadTag);
        };
        if self.sessions[idx].phase == Phase::HalfOpen {
            // §3.5: a full established table (half-open sessions promoted
            // meanwhile) takes no more; the client starts again.
            if self.established_count() >= self.max_sessions() {
                let id = self.sessions[idx].id;
                self.sessions.swap_remove(idx);
                self.event(ServerEvent::SessionReplaced { session_id: id });
                return self.refuse(from, &h, Status::UnknownSession);
            }
            self.establish(idx);
        }
        let Some(idx) = self.sessions.iter().position(|s| s.id == h.session_id) else {
            return;
        };
        let s = &mut self.sessions[idx];
        if s.parts_len > 0 && start == 0 {
            // A part of another type than the parts before: refuse them all.
            s.parts_len = 0;
            return self.answer(now, idx, &h, fp, Err(Status::TooLarge));
        }
        let total = start + n;
        if h.flags & FLAG_MORE != 0 {
            s.parts_len = total;
            s.parts_type = h.message_type;
            return self.answer(now, idx, &h, fp, Ok(true));
        }
        s.parts_len = 0;
        let outcome = self.dispatch(now, idx, &h, total);
        self.answer(now, idx, &h, fp, outcome.map(|()| false))
    }

    fn verify_only(&mut self, idx: usize, frame: &Frame<&[u8]>) -> bool {
        let mut tmp = [0u8; MAX_FRAME_LEN];
        crypto::open_frame(&self.sessions[idx].rx, frame, &mut tmp).is_some()
    }

    /// §3.5: key confirmation makes a half-open session established; the
    /// key's oldest established session gives way beyond its limit.
    fn establish(&mut self, idx: usize) {
        let (sid, peer, key) = {
            let s = &mut self.sessions[idx];
            s.phase = Phase::Established;
            (s.id, s.peer, s.client_static)
        };
        let limit = self.config.max_sessions_per_key.max(1);
        loop {
            let same_key = self
                .sessions
                .iter()
                .filter(|s| s.phase == Phase::Established && s.client_static == key)
                .count();
            if same_key <= limit {
                break;
            }
            let Some(i) = self
                .sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.phase == Phase::Established && s.client_static == key && s.id != sid
                })
                .min_by_key(|(_, s)| s.created)
                .map(|(i, _)| i)
            else {
                break;
            };
            let id = self.sessions[i].id;
            self.sessions.swap_remove(i);
            self.event(ServerEvent::SessionReplaced { session_id: id });
        }
        self.event(ServerEvent::SessionEstablished {
            session_id: sid,
            peer,
        });
    }

    /// Seal and cache the reply to request `h` (every authenticated request
    /// id gets exactly one, §2.4), and queue it. `Ok(true)`: a part
    /// acknowledged; `Ok(false)`: the reply is already in the cache.
    fn answer(
        &mut self,
        now: Instant,
        idx: usize,
        h: &Header,
        fp: [u8; TAG_LEN],
        outcome: Result<bool, Status>,
    ) {
        let idle = self.config.idle_timeout;
        let s = &mut self.sessions[idx];
        let rh = |status, flags| Header {
            message_type: h.message_type.reply(),
            status,
            flags,
            request_id: h.request_id,
            session_id: h.session_id,
        };
        let refused = match outcome {
            Ok(false) => None,
            Ok(true) => {
                s.reply_len = write_sealed(&s.tx, &rh(Status::Ok, FLAG_MORE), &Empty, &mut s.reply);
                None
            }
            Err(status) => {
                s.reply_len = write_sealed(&s.tx, &rh(status, 0), &Empty, &mut s.reply);
                Some(status)
            }
        };
        s.last_request_id = h.request_id;
        s.fingerprint = fp;
        s.resends = 0;
        s.expires = now + idle;
        let (sid, peer) = (s.id, s.peer);
        if s.reply_len == 0 {
            return;
        }
        self.enqueue(Some(Outgoing {
            to: peer,
            body: Body::Cached(sid),
        }));
        if let Some(status) = refused {
            self.event(ServerEvent::Refused {
                peer,
                message_type: h.message_type,
                status,
            });
        }
    }

    /// Run one new, authenticated request whose plaintext is
    /// `parts[..len]`. On `Ok` the sealed reply is in the session's reply
    /// buffer.
    fn dispatch(&mut self, now: Instant, idx: usize, h: &Header, len: usize) -> Result<(), Status> {
        let Server {
            sessions,
            policy,
            keys,
            ..
        } = self;
        let s: &mut Session = &mut sessions[idx];
        let rh = Header {
            message_type: h.message_type.reply(),
            status: Status::Ok,
            flags: 0,
            request_id: h.request_id,
            session_id: h.session_id,
        };
        let Session {
            reply,
            reply_len,
            info,
            info_len,
            parts,
            tx,
            who,
            client_static,
            ..
        } = &mut *s;
        let plain = &parts[..len];
        let mut enrolled = None;
        let mut reported = None;
        let mut accepted = None;
        match h.message_type {
            MessageType::WorkstationInfo => {
                let wi = WorkstationInfo::parse(plain).map_err(|_| Status::BadPayload)?;
                let bound = check_identities(&*policy, &*keys, *who, client_static, &wi)?;
                if who.is_none() {
                    if !keys.enrol(client_static, bound) {
                        return Err(Status::IdentityRefused);
                    }
                    *who = Some(bound);
                    enrolled = Some(bound);
                }
                let ack = policy.register(now, &bound, &wi)?;
                *reply_len = write_sealed(tx, &rh, &ack, reply);
                info[..len].copy_from_slice(plain);
                *info_len = len;
                accepted = Some(bound);
            }
            MessageType::MenuQuery | MessageType::TaskQuery | MessageType::TaskReport => {
                let (Some(bound), true) = (*who, *info_len > 0) else {
                    return Err(Status::OutOfOrder);
                };
                let wi =
                    WorkstationInfo::parse(&info[..*info_len]).map_err(|_| Status::ServerError)?;
                match h.message_type {
                    MessageType::MenuQuery => {
                        Empty::parse(plain).map_err(|_| Status::BadPayload)?;
                        let m = policy.menu(now, &bound, &wi)?;
                        *reply_len = write_sealed(tx, &rh, &m, reply);
                    }
                    MessageType::TaskQuery => {
                        let q = TaskQuery::parse(plain).map_err(|_| Status::BadPayload)?;
                        let t = policy.tasks_for(now, &bound, &wi, &q)?;
                        *reply_len = write_sealed(tx, &rh, &t, reply);
                    }
                    _ => {
                        let r = TaskReport::parse(plain).map_err(|_| Status::BadPayload)?;
                        policy.report(now, &bound, &wi, &r)?;
                        *reply_len = write_sealed(tx, &rh, &Empty, reply);
                        reported = Some((r.task_id, r.outcome));
                    }
                }
            }
            _ => return Err(Status::UnknownType),
        }
        if *reply_len == 0 {
            return Err(Status::ServerError);
        }
        let (sid, key) = (s.id, s.client_static);
        if let Some(workstation) = enrolled {
            self.event(ServerEvent::KeyEnrolled { key, workstation });
        }
        if let Some(workstation) = accepted {
            self.event(ServerEvent::InfoAccepted {
                session_id: sid,
                workstation,
            });
        }
        if let Some((task_id, outcome)) = reported {
            self.event(ServerEvent::TaskReported {
                session_id: sid,
                task_id,
                outcome,
            });
        }
        Ok(())
    }

    /// The next datagram to send, written into `buf` (give it
    /// [`Server::MAX_DATAGRAM`] bytes). A smaller `buf` that cannot hold
    /// the reply leaves it queued and `buf` untouched, with the size needed
    /// in the error. A cached reply whose session has gone meanwhile is
    /// dropped.
    pub fn poll_transmit(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        while let Some((local, o)) = self.queue.front() {
            let bytes: &[u8] = match &o.body {
                Body::Inline { len, bytes } => &bytes[..*len],
                Body::Cached(sid) => match self.sessions.iter().find(|s| s.id == *sid) {
                    Some(s) => &s.reply[..s.reply_len],
                    None => {
                        self.queue.pop_front();
                        continue;
                    }
                },
            };
            let Some(dst) = buf.get_mut(..bytes.len()) else {
                return Err(BufferTooSmall {
                    needed: bytes.len(),
                });
            };
            dst.copy_from_slice(bytes);
            let t = Transmit {
                local: Some(*local),
                remote: o.to,
                len: bytes.len(),
                broadcast: false,
                after_sync: false,
            };
            self.queue.pop_front();
            return Ok(Some(t));
        }
        Ok(None)
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

/// Write a sealed reply into `out`; its length, or 0 if it cannot be
/// encoded.
fn write_sealed<Q: Payload + ?Sized>(
    tx: &Aead,
    h: &Header,
    p: &Q,
    out: &mut [u8; MAX_FRAME_LEN],
) -> usize {
    let mut tmp = [0u8; MAX_FRAME_LEN];
    let Ok(n) = emit_frame(h, p, true, &mut tmp) else {
        return 0;
    };
    crypto::seal_frame(tx, &mut tmp, n);
    out[..n].copy_from_slice(&tmp[..n]);
    n
}

/// §3.4: which object may this `WorkstationInfo` be for? With a bound key,
/// the key's object; under auto-enrolment, the first identity naming an
/// object, else the first MAC. Refused if any identity has another key or
/// names another object.
fn check_identities<P: Policy, K: KeyStore>(
    policy: &P,
    keys: &K,
    who: Option<WorkstationId>,
    key: &[u8; 32],
    info: &WorkstationInfo<'_>,
) -> Result<WorkstationId, Status> {
    let ids = info
        .macs
        .iter()
        .map(|m| WorkstationId::Mac(*m))
        .chain(info.uuid.map(WorkstationId::Uuid));
    let bound = match who {
        Some(w) => w,
        None => ids
            .clone()
            .find_map(|i| policy.object_of(&i))
            .or_else(|| info.macs.first().map(|m| WorkstationId::Mac(*m)))
            .ok_or(Status::BadPayload)?,
    };
    let object = policy.object_of(&bound).unwrap_or(bound);
    for id in ids {
        if keys
            .key_of_object(&id)
            .is_some_and(|k| !crypto::ct_eq(&k, key))
        {
            return Err(Status::IdentityRefused);
        }
        if policy.object_of(&id).is_some_and(|o| o != object) {
            return Err(Status::IdentityRefused);
        }
    }
    if who.is_none() && keys.key_of_object(&bound).is_some() {
        return Err(Status::IdentityRefused);
    }
    Ok(bound)
}

// The largest inline reply, `Accept` (24 + 57 bytes, §4), fits.
const _: () = assert!(HEADER_LEN + 57 <= INLINE_MAX);
