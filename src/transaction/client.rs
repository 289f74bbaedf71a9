//! The transaction client engine (sans-IO): the preboot client's side of
//! docs/transaction-protocol.md — `Hello`/`Cookie` (§3.2), the Noise `IK`
//! initiator with the pinned server key (§3.3), sealed requests one at a
//! time, in parts when long (§4.7), retransmission with exponential
//! backoff, advisory and ignored refusals, handshake backoff (§6).
//!
//! # How to drive it
//!
//! 1. Provision the workstation's key and count the handshake
//!    ([`provision`](super::provision)), then [`Client::new`] with the
//!    [`HandshakeSeed`] it gives; the `Hello` is queued.
//! 2. Drain [`Client::poll_transmit`] and send to the server (the
//!    [engine contract](crate::engine); one socket, so `local` is `None`).
//! 3. Feed replies to [`Client::handle`] as a [`Datagram`]; the client
//!    answers the `Cookie` by itself.
//! 4. When [`ClientEvent::Established`] arrives, send requests with
//!    [`Client::send_info`], [`Client::query_menu`], [`Client::query_tasks`],
//!    [`Client::report`] — one at a time; each ends with
//!    [`ClientEvent::Reply`], [`ClientEvent::Refused`] or
//!    [`ClientEvent::Failed`]. Read a reply with [`Client::menu_reply`],
//!    [`Client::task_reply`], [`Client::info_ack`].
//! 5. Call [`Client::handle_timeout`] at [`Client::poll_timeout`]. After
//!    [`ClientEvent::RestartDue`] (the server answered `Busy` or `Pending`)
//!    call [`Client::restart`] with a new seed.

use super::crypto::{self, Aead};
use super::handshake::{self, Initiator, Symmetric};
use super::keys::StaticKey;
use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram, Transmit};
use crate::wire::transaction::menu_choice::TaskQuery;
use crate::wire::transaction::messages::{
    Accept, Cookie, Empty, Hello, InfoAck, Init, InitPayload, MenuReply, NONCE_LEN, TaskReply,
    TaskReport, WorkstationInfo,
};
use crate::wire::transaction::{
    EmitError, FLAG_MORE, Frame, Header, MAX_FRAME_LEN, MAX_MESSAGE_LEN, MAX_PAYLOAD_LEN,
    MessageType, Payload, Status, VERSION, emit_frame,
};
use core::net::SocketAddrV4;
use core::time::Duration;
use heapless::Deque;

/// The fresh values of one handshake (§3.1, §3.2): the `Hello` nonce and
/// the client's (hedged) ephemeral private key. Made by
/// [`provision::next_handshake`](super::provision::next_handshake).
#[derive(Clone, Copy)]
pub struct HandshakeSeed {
    /// `Nh`: 16 fresh random bytes.
    pub nonce: [u8; NONCE_LEN],
    /// The ephemeral private key `e`.
    pub ephemeral: [u8; 32],
}

impl core::fmt::Debug for HandshakeSeed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HandshakeSeed").finish_non_exhaustive()
    }
}

/// Client settings (§3.1, §6).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The transaction server (default port 4012).
    pub server: SocketAddrV4,
    /// The server's static public key, pinned (§3.1).
    pub server_public: [u8; 32],
    /// The workstation's static key (§11).
    pub key: StaticKey,
    /// First retransmission timeout (500 ms).
    pub initial_rto: Duration,
    /// Largest retransmission timeout (4 s).
    pub max_rto: Duration,
    /// Transmissions of one request before it fails (6).
    pub max_transmissions: u32,
    /// First wait after an authenticated `Busy` or `Pending` (1 s).
    pub backoff: Duration,
    /// Longest such wait (32 s).
    pub max_backoff: Duration,
    /// Handshakes before the client gives up (8).
    pub max_handshakes: u32,
}

impl ClientConfig {
    /// Settings with the default timers.
    pub fn new(server: SocketAddrV4, server_public: [u8; 32], key: StaticKey) -> Self {
        ClientConfig {
            server,
            server_public,
            key,
            initial_rto: Duration::from_millis(500),
            max_rto: Duration::from_secs(4),
            max_transmissions: 6,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(32),
            max_handshakes: 8,
        }
    }
}

/// Why the client cannot do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The session is not established yet (or has failed).
    #[error("session not established")]
    NotEstablished,
    /// A request is still outstanding (one at a time, §1).
    #[error("a request is still outstanding")]
    Busy,
    /// The request does not fit a message (§4.7: 4096 bytes).
    #[error("request cannot be encoded: {0}")]
    Encode(EmitError),
    /// [`Client::restart`] was called while a handshake is running.
    #[error("a handshake is running")]
    HandshakeRunning,
    /// The session used every request id (§6): start a new handshake.
    #[error("the session has no request ids left")]
    SessionExhausted,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The pinned server proved itself and the session is up.
    Established {
        /// Session id.
        session_id: u64,
    },
    /// The server refused the handshake, authenticated (`Busy`, or
    /// `Pending`: the key waits for an administrator). Call
    /// [`Client::restart`] after [`ClientEvent::RestartDue`].
    HandshakeRefused {
        /// `Busy` or `Pending`.
        status: Status,
        /// When the next handshake is due.
        retry_at: Instant,
    },
    /// The backoff after [`ClientEvent::HandshakeRefused`] is over.
    RestartDue,
    /// An unauthenticated refusal before the server proved itself:
    /// advisory only, the client keeps waiting (§6).
    Advisory {
        /// Request type.
        request: MessageType,
        /// Status.
        status: Status,
    },
    /// A reply to the outstanding request arrived (read it with the
    /// accessor for its type).
    Reply {
        /// Reply type.
        message_type: MessageType,
    },
    /// The server refused the request (sealed: authenticated).
    Refused {
        /// Request type.
        request: MessageType,
        /// Status.
        status: Status,
    },
    /// No valid reply after the last retransmission, or the handshakes ran
    /// out.
    Failed {
        /// Request type.
        request: MessageType,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitCookie,
    AwaitAccept,
    Established,
    Backoff(Instant),
    RestartDue,
    Dead,
}

struct Pending {
    message_type: MessageType,
    request_id: u32,
    len: usize,
    bytes: [u8; MAX_FRAME_LEN],
    transmissions: u32,
    rto: Duration,
    next: Instant,
    send_now: bool,
}

/// A payload that is already bytes (a part of a message, §4.7).
struct Raw<'a>(&'a [u8]);

impl Payload for Raw<'_> {
    fn buffer_len(&self) -> usize {
        self.0.len()
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        out.copy_from_slice(self.0);
        Ok(())
    }
}

/// The transaction client engine.
pub struct Client {
    config: ClientConfig,
    phase: Phase,
    seed: HandshakeSeed,
    hello: [u8; 72],
    initiator: Option<Initiator>,
    session_id: u64,
    tx: Option<Aead>,
    rx: Option<Aead>,
    next_request_id: u32,
    pending: Option<Pending>,
    handshakes: u32,
    backoff: Duration,
    out_type: MessageType,
    out_len: usize,
    out_pos: usize,
    out: [u8; MAX_MESSAGE_LEN],
    reply_type: Option<MessageType>,
    reply_len: usize,
    reply: [u8; MAX_FRAME_LEN],
    events: Deque<ClientEvent, 8>,
}

impl Client {
    /// The largest datagram the client sends ([`MAX_FRAME_LEN`]): give
    /// `poll_transmit` a buffer of at least this size.
    pub const MAX_DATAGRAM: usize = MAX_FRAME_LEN;

    /// A client that starts the handshake with `seed` at `now`.
    pub fn new(config: ClientConfig, seed: HandshakeSeed, now: Instant) -> Self {
        let backoff = config.backoff;
        let mut c = Client {
            config,
            phase: Phase::Dead,
            seed,
            hello: [0; 72],
            initiator: None,
            session_id: 0,
            tx: None,
            rx: None,
            next_request_id: 1,
            pending: None,
            handshakes: 0,
            backoff,
            out_type: MessageType::Unknown(0),
            out_len: 0,
            out_pos: 0,
            out: [0; MAX_MESSAGE_LEN],
            reply_type: None,
            reply_len: 0,
            reply: [0; MAX_FRAME_LEN],
            events: Deque::new(),
        };
        c.start(now, seed);
        c
    }

    fn start(&mut self, now: Instant, seed: HandshakeSeed) {
        self.seed = seed;
        self.handshakes += 1;
        self.initiator = None;
        self.session_id = 0;
        self.tx = None;
        self.rx = None;
        self.pending = None;
        self.next_request_id = 1;
        self.phase = Phase::AwaitCookie;
        let h = Header {
            message_type: MessageType::Hello,
            status: Status::Ok,
            flags: 0,
            request_id: 1,
            session_id: 0,
        };
        let hello = Hello { nonce: seed.nonce };
        match emit_frame(&h, &hello, false, &mut self.hello) {
            Ok(_) => {
                let bytes = self.hello;
                self.set_pending(now, MessageType::Hello, 1, &bytes);
            }
            Err(_) => self.phase = Phase::Dead,
        }
    }

    /// Start a new handshake with a new `seed` after
    /// [`ClientEvent::RestartDue`], or after a failed handshake.
    pub fn restart(&mut self, now: Instant, seed: HandshakeSeed) -> Result<(), ClientError> {
        match self.phase {
            Phase::RestartDue | Phase::Backoff(_) | Phase::Dead => {
                self.start(now, seed);
                Ok(())
            }
            _ => Err(ClientError::HandshakeRunning),
        }
    }

    /// Is the session established?
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// The session id (0 before the `Accept`).
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Is a request outstanding?
    pub fn is_busy(&self) -> bool {
        self.pending.is_some()
    }

    fn set_pending(&mut self, now: Instant, t: MessageType, rid: u32, bytes: &[u8]) {
        let mut b = [0u8; MAX_FRAME_LEN];
        b[..bytes.len()].copy_from_slice(bytes);
        self.pending = Some(Pending {
            message_type: t,
            request_id: rid,
            len: bytes.len(),
            bytes: b,
            transmissions: 0,
            rto: self.config.initial_rto,
            next: now,
            send_now: true,
        });
    }

    fn request<P: Payload + ?Sized>(
        &mut self,
        now: Instant,
        t: MessageType,
        p: &P,
    ) -> Result<(), ClientError> {
        if self.phase != Phase::Established {
            return Err(ClientError::NotEstablished);
        }
        if self.pending.is_some() {
            return Err(ClientError::Busy);
        }
        let n = p.buffer_len();
        if n > MAX_MESSAGE_LEN {
            return Err(ClientError::Encode(EmitError::TooLarge { len: n }));
        }
        p.emit(&mut self.out[..n]).map_err(ClientError::Encode)?;
        self.out_type = t;
        self.out_len = n;
        self.out_pos = 0;
        self.send_part(now)
    }

    /// Seal and queue the next part of the outgoing message (§4.7).
    fn send_part(&mut self, now: Instant) -> Result<(), ClientError> {
        let Some(tx) = &self.tx else {
            return Err(ClientError::NotEstablished);
        };
        let chunk = (self.out_len - self.out_pos).min(MAX_PAYLOAD_LEN);
        let more = self.out_pos + chunk < self.out_len;
        let rid = self.next_request_id;
        // §2.4, §6: a request id is a nonce; it never wraps.
        if rid == u32::MAX {
            return Err(ClientError::SessionExhausted);
        }
        let h = Header {
            message_type: self.out_type,
            status: Status::Ok,
            flags: if more { FLAG_MORE } else { 0 },
            request_id: rid,
            session_id: self.session_id,
        };
        let mut bytes = [0u8; MAX_FRAME_LEN];
        let part = Raw(&self.out[self.out_pos..self.out_pos + chunk]);
        let len = emit_frame(&h, &part, true, &mut bytes).map_err(ClientError::Encode)?;
        crypto::seal_frame(tx, &mut bytes, len);
        self.out_pos += chunk;
        self.next_request_id = rid + 1;
        let t = self.out_type;
        self.set_pending(now, t, rid, &bytes[..len]);
        Ok(())
    }

    /// Send the workstation information (§4.3), in parts if long (§4.7).
    pub fn send_info(
        &mut self,
        now: Instant,
        info: &WorkstationInfo<'_>,
    ) -> Result<(), ClientError> {
        self.request(now, MessageType::WorkstationInfo, info)
    }
    /// Ask whether to show the menu (§4.4).
    pub fn query_menu(&mut self, now: Instant) -> Result<(), ClientError> {
        self.request(now, MessageType::MenuQuery, &Empty)
    }
    /// Ask for the live tasks (§4.5), no menu choice.
    pub fn query_tasks(&mut self, now: Instant) -> Result<(), ClientError> {
        self.query_tasks_with(now, &TaskQuery::default())
    }
    /// Ask for the live tasks (§4.5), saying what was chosen in the menu.
    pub fn query_tasks_with(&mut self, now: Instant, query: &TaskQuery) -> Result<(), ClientError> {
        self.request(now, MessageType::TaskQuery, query)
    }
    /// Report a task's progress or outcome (§4.6).
    pub fn report(&mut self, now: Instant, report: &TaskReport<'_>) -> Result<(), ClientError> {
        self.request(now, MessageType::TaskReport, report)
    }

    fn reply_payload(&self, t: MessageType) -> Option<&[u8]> {
        (self.reply_type == Some(t)).then(|| &self.reply[..self.reply_len])
    }
    /// The last `InfoAck`.
    pub fn info_ack(&self) -> Option<InfoAck<'_>> {
        InfoAck::parse(self.reply_payload(MessageType::InfoAck)?).ok()
    }
    /// The last `MenuReply`.
    pub fn menu_reply(&self) -> Option<MenuReply<'_>> {
        MenuReply::parse(self.reply_payload(MessageType::MenuReply)?).ok()
    }
    /// The last `TaskReply`.
    pub fn task_reply(&self) -> Option<TaskReply<'_>> {
        TaskReply::parse(self.reply_payload(MessageType::TaskReply)?).ok()
    }

    fn event(&mut self, e: ClientEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    /// An unauthenticated refusal before the server proved itself (§6):
    /// reported, and a `Busy` stretches the wait; nothing else changes.
    fn advisory(&mut self, now: Instant, request: MessageType, status: Status) {
        if status == Status::Busy {
            if let Some(p) = self.pending.as_mut() {
                p.rto = (p.rto * 2).min(self.config.max_rto);
                if !p.send_now {
                    p.next = now + p.rto;
                }
            }
        }
        self.event(ClientEvent::Advisory { request, status });
    }

    /// Feed one received datagram. Anything that is not the reply to the
    /// outstanding request (wrong source, type, request id, session, or
    /// tag) is ignored; so is every unauthenticated refusal after the
    /// server proved itself (§6).
    pub fn handle(&mut self, now: Instant, datagram: Datagram<'_>) {
        if datagram.remote != self.config.server {
            return;
        }
        let bytes = datagram.payload;
        let Ok(frame) = Frame::new_checked(bytes) else {
            return;
        };
        let h = frame.header();
        let Some(p) = &self.pending else {
            return;
        };
        if h.message_type != p.message_type.reply() || h.request_id != p.request_id {
            return;
        }
        match self.phase {
            Phase::AwaitCookie => self.on_cookie(now, &frame),
            Phase::AwaitAccept => self.on_accept(now, &frame),
            Phase::Established => self.on_sealed(now, &frame),
            _ => {}
        }
    }

    fn on_cookie(&mut self, now: Instant, frame: &Frame<&[u8]>) {
        let h = frame.header();
        if h.session_id != 0 || frame.is_sealed() {
            return;
        }
        if h.status != Status::Ok {
            return self.advisory(now, MessageType::Hello, h.status);
        }
        let (Ok(c), Ok(cookie_bytes)) = (
            Cookie::parse(frame.payload()),
            <[u8; 56]>::try_from(frame.as_bytes()),
        ) else {
            return;
        };
        let ih = Header {
            message_type: MessageType::Init,
            status: Status::Ok,
            flags: 0,
            request_id: 2,
            session_id: 0,
        };
        let mut payload = [0u8; 20];
        let _ = InitPayload {
            highest_version: VERSION,
        }
        .emit(&mut payload[..4]);
        let mut init = Init {
            nonce: self.seed.nonce,
            cookie: c.cookie,
            ephemeral: [0; 32],
            encrypted_static: [0; 48],
            encrypted_payload: &[0; 20],
        };
        let mut bytes = [0u8; MAX_FRAME_LEN];
        let Ok(len) = emit_frame(&ih, &init, false, &mut bytes) else {
            return;
        };
        let server = self.config.server_public;
        let sym = Symmetric::new(&self.hello, &cookie_bytes, &bytes[..24], &server);
        let Some((e_pub, enc_s, st)) = handshake::write_init(
            sym,
            &server,
            self.config.key.private(),
            &self.seed.ephemeral,
            &mut payload,
        ) else {
            self.phase = Phase::Dead;
            self.pending = None;
            return self.event(ClientEvent::Failed {
                request: MessageType::Init,
            });
        };
        init.ephemeral = e_pub;
        init.encrypted_static = enc_s;
        init.encrypted_payload = &payload;
        if emit_frame(&ih, &init, false, &mut bytes).is_err() {
            return;
        }
        self.initiator = Some(st);
        self.phase = Phase::AwaitAccept;
        self.set_pending(now, MessageType::Init, 2, &bytes[..len]);
        self.next_request_id = 3;
    }

    fn on_accept(&mut self, now: Instant, frame: &Frame<&[u8]>) {
        let h = frame.header();
        if frame.is_sealed() {
            return;
        }
        let Ok(a) = Accept::parse(frame.payload()) else {
            if h.status != Status::Ok && frame.payload().is_empty() {
                self.advisory(now, MessageType::Init, h.status);
            }
            return;
        };
        let Some(st) = &self.initiator else { return };
        // Not from the holder of the pinned key: ignored, keep waiting.
        let Some((plain, keys)) = handshake::read_accept(st, &a) else {
            return;
        };
        let status = Status::from(plain[0]);
        let mut sid = [0u8; 8];
        sid.copy_from_slice(&plain[1..]);
        let sid = u64::from_be_bytes(sid);
        if h.status != status || h.session_id != sid {
            return;
        }
        self.pending = None;
        self.initiator = None;
        if status == Status::Ok && sid != 0 {
            self.session_id = sid;
            self.tx = Some(Aead::new(&keys.client_to_server));
            self.rx = Some(Aead::new(&keys.server_to_client));
            self.phase = Phase::Established;
            self.backoff = self.config.backoff;
            return self.event(ClientEvent::Established { session_id: sid });
        }
        if self.handshakes >= self.config.max_handshakes {
            self.phase = Phase::Dead;
            self.event(ClientEvent::HandshakeRefused {
                status,
                retry_at: now,
            });
            return self.event(ClientEvent::Failed {
                request: MessageType::Init,
            });
        }
        let retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.max_backoff);
        self.phase = Phase::Backoff(retry_at);
        self.event(ClientEvent::HandshakeRefused { status, retry_at });
    }

    fn on_sealed(&mut self, now: Instant, frame: &Frame<&[u8]>) {
        let h = frame.header();
        if h.session_id != self.session_id {
            return;
        }
        let Some(rx) = &self.rx else { return };
        let mut plain = [0u8; MAX_FRAME_LEN];
        let Some(n) = crypto::open_frame(rx, frame, &mut plain) else {
            return; // unauthenticated: ignored (§6)
        };
        let request = self
            .pending
            .as_ref()
            .map_or(h.message_type, |p| p.message_type);
        self.pending = None;
        if h.status != Status::Ok {
            self.out_len = 0;
            return self.event(ClientEvent::Refused {
                request,
                status: h.status,
            });
        }
        if h.flags & FLAG_MORE != 0 {
            if self.out_pos < self.out_len && self.send_part(now).is_ok() {
                return;
            }
            return self.event(ClientEvent::Failed { request });
        }
        self.reply[..n].copy_from_slice(&plain[..n]);
        self.reply_len = n;
        self.reply_type = Some(h.message_type);
        self.event(ClientEvent::Reply {
            message_type: h.message_type,
        });
    }

    /// The next datagram to send (the request, or its retransmission).
    ///
    /// A `buf` shorter than the datagram (give it [`Client::MAX_DATAGRAM`]
    /// bytes) is left untouched and the request stays due, with the size
    /// needed in the error.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        let Some(p) = self.pending.as_mut() else {
            return Ok(None);
        };
        if !p.send_now {
            return Ok(None);
        }
        let Some(dst) = buf.get_mut(..p.len) else {
            return Err(BufferTooSmall { needed: p.len });
        };
        dst.copy_from_slice(&p.bytes[..p.len]);
        p.send_now = false;
        p.transmissions += 1;
        p.next = now + p.rto;
        Ok(Some(Transmit {
            local: None,
            remote: self.config.server,
            len: p.len,
            broadcast: false,
            after_sync: false,
        }))
    }

    /// When [`Client::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Phase::Backoff(t) = self.phase {
            return Some(t);
        }
        self.pending
            .as_ref()
            .filter(|p| !p.send_now)
            .map(|p| p.next)
    }

    /// Retransmit (with doubled timeout, capped) or give up (§6); end a
    /// handshake backoff.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Backoff(t) = self.phase {
            if now >= t {
                self.phase = Phase::RestartDue;
                self.event(ClientEvent::RestartDue);
            }
            return;
        }
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if p.send_now || now < p.next {
            return;
        }
        if p.transmissions >= self.config.max_transmissions {
            let request = p.message_type;
            self.pending = None;
            if matches!(request, MessageType::Hello | MessageType::Init) {
                self.phase = Phase::Dead;
            }
            return self.event(ClientEvent::Failed { request });
        }
        p.rto = (p.rto * 2).min(self.config.max_rto);
        p.send_now = true;
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}
