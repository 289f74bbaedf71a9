//! The transaction client engine (sans-IO): the preboot client's side of
//! docs/transaction-protocol.md — handshake (§3), one request at a time,
//! retransmission with exponential backoff (§6).
//!
//! # How to drive it
//!
//! 1. [`Client::new`] queues the `Hello` (pass a fresh random nonce).
//! 2. Drain [`Client::poll_transmit`] and send to the server (the
//!    [engine contract](crate::engine); one socket, so `local` is `None`).
//! 3. Feed replies to [`Client::handle`] as a [`Datagram`]; the client answers the
//!    `Challenge` by itself once the server proof verifies.
//! 4. When [`ClientEvent::Established`] arrives, send requests with
//!    [`Client::send_info`], [`Client::query_menu`], [`Client::query_tasks`],
//!    [`Client::report`] — one at a time; each ends with
//!    [`ClientEvent::Reply`], [`ClientEvent::Refused`] or
//!    [`ClientEvent::Failed`]. Read a reply with [`Client::menu_reply`],
//!    [`Client::task_reply`], [`Client::info_ack`].
//! 5. Call [`Client::handle_timeout`] at [`Client::poll_timeout`].

use super::crypto::{self, HmacSha256, LABEL_CLIENT, LABEL_SERVER};
use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram, Transmit};
use crate::wire::transaction::messages::{
    Challenge, Empty, Hello, InfoAck, MAX_KEY_ID_LEN, MenuReply, NONCE_LEN, Proof, TaskReply,
    TaskReport, WorkstationInfo,
};
use crate::wire::transaction::{
    EmitError, Frame, Header, MAX_FRAME_LEN, MessageType, Payload, Status, emit_frame,
};
use core::net::SocketAddrV4;
use core::time::Duration;
use heapless::Deque;

/// Client settings (§3, §6).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The transaction server (default port 4012).
    pub server: SocketAddrV4,
    /// Key id sent in `Hello`.
    pub key_id: heapless::Vec<u8, MAX_KEY_ID_LEN>,
    /// The key (site secret or workstation key).
    pub key: heapless::Vec<u8, 64>,
    /// First retransmission timeout (500 ms).
    pub initial_rto: Duration,
    /// Largest retransmission timeout (4 s).
    pub max_rto: Duration,
    /// Transmissions of one request before it fails (6).
    pub max_transmissions: u32,
}

/// Why the client cannot do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Key id must be 1–64 bytes, key 16–64 bytes.
    #[error("key id must be 1-64 bytes and key 16-64 bytes")]
    BadKey,
    /// The session is not established yet (or has failed).
    #[error("session not established")]
    NotEstablished,
    /// A request is still outstanding (one at a time, §1).
    #[error("a request is still outstanding")]
    Busy,
    /// The request does not fit a frame.
    #[error("request cannot be encoded: {0}")]
    Encode(EmitError),
}

impl ClientConfig {
    /// Settings with the default timers.
    pub fn new(server: SocketAddrV4, key_id: &[u8], key: &[u8]) -> Result<Self, ClientError> {
        if key_id.is_empty() || !(16..=64).contains(&key.len()) {
            return Err(ClientError::BadKey);
        }
        Ok(ClientConfig {
            server,
            key_id: heapless::Vec::from_slice(key_id).map_err(|_| ClientError::BadKey)?,
            key: heapless::Vec::from_slice(key).map_err(|_| ClientError::BadKey)?,
            initial_rto: Duration::from_millis(500),
            max_rto: Duration::from_secs(4),
            max_transmissions: 6,
        })
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server proved it knows the key and accepted ours.
    Established {
        /// Session id.
        session_id: u64,
    },
    /// The server's proof did not verify: not the site's server (or a
    /// wrong key). The client stops.
    ServerNotAuthentic,
    /// A reply to the outstanding request arrived (read it with the
    /// accessor for its type).
    Reply {
        /// Reply type.
        message_type: MessageType,
    },
    /// The server refused the request.
    Refused {
        /// Request type.
        request: MessageType,
        /// Status.
        status: Status,
        /// The refusal carried a valid MAC.
        authenticated: bool,
    },
    /// No valid reply after the last retransmission.
    Failed {
        /// Request type.
        request: MessageType,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitChallenge,
    AwaitProofAck,
    Established,
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

/// The transaction client engine.
pub struct Client {
    config: ClientConfig,
    phase: Phase,
    nonce: [u8; NONCE_LEN],
    session_id: u64,
    mac: Option<HmacSha256>,
    next_request_id: u32,
    pending: Option<Pending>,
    reply_type: Option<MessageType>,
    reply_len: usize,
    reply: [u8; MAX_FRAME_LEN],
    events: Deque<ClientEvent, 8>,
}

impl Client {
    /// The largest datagram the client sends ([`MAX_FRAME_LEN`]): give
    /// `poll_transmit` a buffer of at least this size.
    pub const MAX_DATAGRAM: usize = MAX_FRAME_LEN;

    /// A client that starts the handshake with the `client_nonce` (16 bytes
    /// from a cryptographic random source) at `now`.
    pub fn new(config: ClientConfig, client_nonce: [u8; NONCE_LEN], now: Instant) -> Self {
        let mut c = Client {
            config,
            phase: Phase::AwaitChallenge,
            nonce: client_nonce,
            session_id: 0,
            mac: None,
            next_request_id: 1,
            pending: None,
            reply_type: None,
            reply_len: 0,
            reply: [0; MAX_FRAME_LEN],
            events: Deque::new(),
        };
        let key_id = c.config.key_id.clone();
        let hello = Hello {
            client_nonce,
            key_id: &key_id,
        };
        if c.queue(now, MessageType::Hello, &hello, false).is_err() {
            c.phase = Phase::Dead;
        }
        c
    }

    /// Is the session established?
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// The session id (0 before the `Challenge`).
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Is a request outstanding?
    pub fn is_busy(&self) -> bool {
        self.pending.is_some()
    }

    fn queue<P: Payload + ?Sized>(
        &mut self,
        now: Instant,
        t: MessageType,
        p: &P,
        with_mac: bool,
    ) -> Result<(), ClientError> {
        if self.pending.is_some() {
            return Err(ClientError::Busy);
        }
        let h = Header {
            message_type: t,
            status: Status::Ok,
            request_id: self.next_request_id,
            session_id: self.session_id,
        };
        let mut bytes = [0u8; MAX_FRAME_LEN];
        let len = emit_frame(&h, p, with_mac, &mut bytes).map_err(ClientError::Encode)?;
        if with_mac {
            let Some(m) = &self.mac else {
                return Err(ClientError::NotEstablished);
            };
            crypto::seal(m, &mut bytes, len);
        }
        self.pending = Some(Pending {
            message_type: t,
            request_id: self.next_request_id,
            len,
            bytes,
            transmissions: 0,
            rto: self.config.initial_rto,
            next: now,
            send_now: true,
        });
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        Ok(())
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
        self.queue(now, t, p, true)
    }

    /// Send the workstation information (§4.3).
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
    /// Ask for pending tasks (§4.5).
    pub fn query_tasks(&mut self, now: Instant) -> Result<(), ClientError> {
        self.request(now, MessageType::TaskQuery, &Empty)
    }
    /// Report a task's progress or outcome (§4.6).
    pub fn report(&mut self, now: Instant, report: &TaskReport<'_>) -> Result<(), ClientError> {
        self.request(now, MessageType::TaskReport, report)
    }

    fn reply_payload(&self, t: MessageType) -> Option<&[u8]> {
        if self.reply_type != Some(t) {
            return None;
        }
        Frame::new_checked(&self.reply[..self.reply_len])
            .ok()
            .map(|f| {
                let n = f.payload().len();
                &self.reply[24..24 + n]
            })
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

    /// Feed one received datagram. Anything that is not the reply to the
    /// outstanding request (wrong source, type, request id, session, or
    /// MAC) is ignored.
    pub fn handle(&mut self, now: Instant, datagram: Datagram<'_>) {
        let datagram_from = datagram.remote;
        let datagram = datagram.payload;
        if datagram_from != self.config.server {
            return;
        }
        let Ok(frame) = Frame::new_checked(datagram) else {
            return;
        };
        let h = frame.header();
        let Some(p) = &self.pending else {
            return;
        };
        if h.message_type != p.message_type.reply() || h.request_id != p.request_id {
            return;
        }
        let request = p.message_type;
        if request != MessageType::Hello && h.session_id != self.session_id {
            return;
        }
        let authentic = self.mac.as_ref().is_some_and(|m| crypto::verify(m, &frame));
        if h.status != Status::Ok {
            // Unauthenticated refusals are accepted too: the server cannot
            // MAC them (§5); an on-path forger could as well drop packets.
            self.pending = None;
            if request == MessageType::Hello || request == MessageType::Proof {
                self.phase = Phase::Dead;
            }
            return self.event(ClientEvent::Refused {
                request,
                status: h.status,
                authenticated: authentic,
            });
        }
        match request {
            MessageType::Hello => {
                let Ok(c) = Challenge::parse(frame.payload()) else {
                    return;
                };
                let sid = h.session_id;
                let key = self.config.key.clone();
                let kid = self.config.key_id.clone();
                let expect =
                    crypto::proof(&key, LABEL_SERVER, &self.nonce, &c.server_nonce, sid, &kid);
                self.pending = None;
                if sid == 0 || !crypto::ct_eq(&expect, &c.server_proof) {
                    self.phase = Phase::Dead;
                    return self.event(ClientEvent::ServerNotAuthentic);
                }
                self.session_id = sid;
                self.mac = Some(crypto::session_mac(&key, &self.nonce, &c.server_nonce, sid));
                let proof = Proof {
                    client_proof: crypto::proof(
                        &key,
                        LABEL_CLIENT,
                        &self.nonce,
                        &c.server_nonce,
                        sid,
                        &kid,
                    ),
                };
                self.phase = Phase::AwaitProofAck;
                if self.queue(now, MessageType::Proof, &proof, true).is_err() {
                    self.phase = Phase::Dead;
                }
            }
            _ if !authentic => {}
            MessageType::Proof => {
                self.pending = None;
                self.phase = Phase::Established;
                self.event(ClientEvent::Established {
                    session_id: self.session_id,
                });
            }
            _ => {
                self.pending = None;
                self.reply[..datagram.len()].copy_from_slice(datagram);
                self.reply_len = datagram.len();
                self.reply_type = Some(h.message_type);
                self.event(ClientEvent::Reply {
                    message_type: h.message_type,
                });
            }
        }
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
        self.pending
            .as_ref()
            .filter(|p| !p.send_now)
            .map(|p| p.next)
    }

    /// Retransmit (with doubled timeout, capped) or give up (§6).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if p.send_now || now < p.next {
            return;
        }
        if p.transmissions >= self.config.max_transmissions {
            let request = p.message_type;
            self.pending = None;
            if matches!(request, MessageType::Hello | MessageType::Proof) {
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
