//! Steps 7–17 of the boot (DESIGN.md) on the wire: a transaction session
//! (docs/transaction-protocol.md, version 2) on the crate's client engine
//! ([`preboot::transaction::Client`]) and a UDP socket of its own, with the
//! workstation's key record on its disk (§11.2: counted before every
//! handshake).
//!
//! A request that gets no answer after the engine's last retransmission
//! (the server restarted and forgot the session, or was away) is sent
//! again on a new session, up to [`RESUMES`] times: a reply from the
//! server is what counts, not the session it came on. A session idle for
//! [`IDLE_RESUME`] (the server forgets it at 60 s, §3.5: e.g. after the
//! imaging environment's download) is replaced before the next request.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use preboot::Instant;
use preboot::driver::clock;
use preboot::driver::key_record_disk::DiskKeySlot;
use preboot::driver::transaction::Urandom;
use preboot::engine::Datagram;
use preboot::transaction::provision::{KeyRecord, next_handshake};
use preboot::transaction::{Client, ClientConfig, ClientEvent};
use preboot::wire::transaction::messages::WorkstationInfo;
use preboot::wire::transaction::{MessageType, Payload, Status};

/// New sessions a request may take after the one it started on died.
pub const RESUMES: u32 = 3;

/// Why a workstation whose key the server holds pending (§3.4) gets no
/// session.
const PENDING: &str = "the server keeps this workstation's key pending: an administrator must bind it (its public key is printed above)";

/// A session idle this long is replaced before the next request: the
/// server forgets sessions after 60 s without a request (§3.5).
pub const IDLE_RESUME: Duration = Duration::from_secs(50);

/// An authenticated session with the transaction server.
pub struct Session {
    config: ClientConfig,
    client: Client,
    socket: UdpSocket,
    local: SocketAddrV4,
    slot: DiskKeySlot,
    record: KeyRecord,
    random: Urandom,
    /// Handshakes made (the first included).
    pub handshakes: u32,
    /// Authenticated `Pending` answers seen (the key waits for an
    /// administrator, §3.4).
    pub pending_seen: bool,
    /// The last `WorkstationInfo` sent (its encoded payload): a new
    /// session starts with it again (§4: it comes before any query).
    info: Option<Vec<u8>>,
    /// When the server last answered on this session.
    last_answer: Instant,
}

/// How a request ended.
pub enum Answer {
    /// The reply (read it with the engine's accessor for its type).
    Reply,
    /// An authenticated refusal.
    Refused(Status),
}

impl Session {
    /// Open a session: a socket on `bind`, the first handshake, and wait
    /// until it is established or refused for good, within `limit`.
    pub fn establish(
        bind: Ipv4Addr,
        config: ClientConfig,
        slot: DiskKeySlot,
        mut record: KeyRecord,
        limit: Duration,
    ) -> Result<Session, String> {
        let fail = |e: io::Error| format!("transaction socket: {e}");
        let socket = UdpSocket::bind((bind, 0)).map_err(fail)?;
        let local = match socket.local_addr().map_err(fail)? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => return Err("transaction socket is not IPv4".into()),
        };
        let mut random = Urandom::open().map_err(|e| format!("/dev/urandom: {e}"))?;
        let mut slot = slot;
        let seed =
            next_handshake(&mut slot, &mut record, &mut random).map_err(|e| e.to_string())?;
        let client = Client::new(config.clone(), seed, clock::now());
        let mut s = Session {
            config,
            client,
            socket,
            local,
            slot,
            record,
            random,
            handshakes: 1,
            pending_seen: false,
            info: None,
            last_answer: clock::now(),
        };
        s.wait_established(clock::now() + limit)?;
        Ok(s)
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.client.session_id()
    }

    /// The transaction server.
    pub fn server(&self) -> SocketAddrV4 {
        self.config.server
    }

    /// The engine, to read the last reply.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A fresh handshake on a new engine (the old session is gone).
    fn rehandshake(&mut self, end: Instant) -> Result<(), String> {
        let seed = next_handshake(&mut self.slot, &mut self.record, &mut self.random)
            .map_err(|e| e.to_string())?;
        self.client = Client::new(self.config.clone(), seed, clock::now());
        self.handshakes += 1;
        self.wait_established(end)
    }

    fn wait_established(&mut self, end: Instant) -> Result<(), String> {
        let (mut busy, mut advisories) = (0u32, 0u32);
        loop {
            while let Some(e) = self.client.poll_event() {
                match e {
                    ClientEvent::Established { session_id } => {
                        self.last_answer = clock::now();
                        tracing::debug!(session_id, "transaction: established");
                        return Ok(());
                    }
                    ClientEvent::HandshakeRefused { status, retry_at } => {
                        if status == Status::Pending {
                            self.pending_seen = true;
                        }
                        if status == Status::Busy {
                            busy += 1;
                        }
                        tracing::info!(
                            ?status,
                            retry_in_ms =
                                retry_at.saturating_duration_since(clock::now()).as_millis() as u64,
                            "transaction: handshake refused, will retry"
                        );
                    }
                    ClientEvent::RestartDue => {
                        let seed =
                            next_handshake(&mut self.slot, &mut self.record, &mut self.random)
                                .map_err(|e| e.to_string())?;
                        self.client
                            .restart(clock::now(), seed)
                            .map_err(|e| e.to_string())?;
                        self.handshakes += 1;
                    }
                    ClientEvent::Advisory { request, status } => {
                        advisories += 1;
                        tracing::debug!(
                            ?request,
                            ?status,
                            "transaction: unauthenticated refusal ignored"
                        );
                    }
                    ClientEvent::Failed { request } => {
                        return Err(if self.pending_seen {
                            PENDING.into()
                        } else if busy > 0 {
                            format!(
                                "no handshake with the transaction server {}: it answered Busy {busy} times (its session table is full)",
                                self.config.server
                            )
                        } else {
                            format!(
                                "no handshake with the transaction server {}: no valid answer to {request:?} after every retransmission ({advisories} unauthenticated refusals ignored; no server, a lossy path, or a server that does not hold the pinned key)",
                                self.config.server
                            )
                        });
                    }
                    ClientEvent::Reply { .. } | ClientEvent::Refused { .. } => {}
                }
            }
            self.turn(end)?;
        }
    }

    /// Send the workstation information (§4.3) and keep it for a new
    /// session.
    pub fn send_info(
        &mut self,
        info: &WorkstationInfo<'_>,
        limit: Duration,
    ) -> Result<Answer, String> {
        let mut bytes = vec![0u8; info.buffer_len()];
        info.emit(&mut bytes)
            .map_err(|e| format!("WorkstationInfo: {e}"))?;
        self.info = Some(bytes);
        self.request("WorkstationInfo", limit, |c, now| c.send_info(now, info))
    }

    /// On a new session: the workstation information again, first.
    fn replay_info(&mut self, end: Instant) -> Result<(), String> {
        let Some(bytes) = self.info.clone() else {
            return Ok(());
        };
        let info = WorkstationInfo::parse(&bytes).map_err(|e| format!("WorkstationInfo: {e:?}"))?;
        self.client
            .send_info(clock::now(), &info)
            .map_err(|e| format!("WorkstationInfo: {e}"))?;
        loop {
            while let Some(e) = self.client.poll_event() {
                match e {
                    ClientEvent::Reply { .. } => return Ok(()),
                    ClientEvent::Refused { status, .. } => {
                        return Err(format!(
                            "the server refused WorkstationInfo on the new session: {status:?}"
                        ));
                    }
                    ClientEvent::Failed { .. } => {
                        return Err("no answer to WorkstationInfo on the new session".into());
                    }
                    _ => {}
                }
            }
            self.turn(end)?;
        }
    }

    /// Run one request (`send` queues it on the engine) to its answer,
    /// resuming on a new session if the server forgot this one.
    pub fn request(
        &mut self,
        what: &str,
        limit: Duration,
        mut send: impl FnMut(&mut Client, Instant) -> Result<(), preboot::transaction::ClientError>,
    ) -> Result<Answer, String> {
        let end = clock::now() + limit;
        let mut resumes = 0;
        // The server forgets a session after 60 s without a request
        // (§3.5): after a long download, start a new one rather than wait
        // for the old one's retransmissions to run out.
        if clock::now().saturating_duration_since(self.last_answer) >= IDLE_RESUME {
            tracing::debug!(what, "transaction: session idle, opening a new one");
            self.rehandshake(end)?;
            if what != "WorkstationInfo" {
                self.replay_info(end)?;
            }
        }
        send(&mut self.client, clock::now()).map_err(|e| format!("{what}: {e}"))?;
        loop {
            while let Some(e) = self.client.poll_event() {
                match e {
                    ClientEvent::Reply { .. } => {
                        self.last_answer = clock::now();
                        return Ok(Answer::Reply);
                    }
                    ClientEvent::Refused { status, .. } => {
                        self.last_answer = clock::now();
                        return Ok(Answer::Refused(status));
                    }
                    ClientEvent::Failed { request } => {
                        if resumes >= RESUMES {
                            return Err(format!(
                                "{what}: no answer from {} after {resumes} new sessions",
                                self.config.server
                            ));
                        }
                        resumes += 1;
                        tracing::warn!(
                            ?request,
                            resumes,
                            "transaction: no answer, resuming on a new session"
                        );
                        self.rehandshake(end)?;
                        if request != MessageType::WorkstationInfo {
                            self.replay_info(end)?;
                        }
                        send(&mut self.client, clock::now()).map_err(|e| format!("{what}: {e}"))?;
                    }
                    ClientEvent::Advisory { request, status } => {
                        tracing::debug!(
                            ?request,
                            ?status,
                            "transaction: unauthenticated refusal ignored"
                        );
                    }
                    _ => {}
                }
            }
            self.turn(end).map_err(|e| format!("{what}: {e}"))?;
        }
    }

    /// Send what is due, wait for one datagram or the next deadline.
    fn turn(&mut self, end: Instant) -> Result<(), String> {
        let now = clock::now();
        if now >= end {
            return Err(if self.pending_seen {
                PENDING.into()
            } else {
                format!(
                    "the transaction server {} did not answer in time",
                    self.config.server
                )
            });
        }
        // What arrived while this thread was not running counts before any
        // timer fires (a starved thread must not retransmit, or give up,
        // with the answer already waiting in its socket).
        self.drain()?;
        self.client.handle_timeout(clock::now());
        let mut buf = [0u8; Client::MAX_DATAGRAM];
        while let Some(t) = self
            .client
            .poll_transmit(now, &mut buf)
            .map_err(|e| e.to_string())?
        {
            if let Err(e) = self.socket.send_to(&buf[..t.len], t.remote) {
                // ICMP unreachable from an earlier datagram (server down):
                // the retransmission timer copes.
                tracing::debug!(error = %e, "transaction: send failed");
            }
        }
        // No timer left: the engine ended the request or the handshake
        // (an event waits for the caller), or waits only for an answer
        // that the next datagram brings. Look at the events first.
        let Some(next) = self.client.poll_timeout() else {
            return self.receive(Some(Duration::from_millis(10)));
        };
        let wait = next
            .min(end)
            .saturating_duration_since(clock::now())
            .max(Duration::from_millis(1));
        self.receive(Some(wait))
    }

    /// Take every datagram already waiting (without blocking) and feed
    /// it to the engine.
    fn drain(&mut self) -> Result<(), String> {
        self.socket
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        // Bounded: a socket buffer holds a few hundred datagrams at most.
        for _ in 0..1024 {
            if self.recv_one().is_err() {
                break;
            }
        }
        self.socket
            .set_nonblocking(false)
            .map_err(|e| e.to_string())
    }

    /// Wait up to `wait` for one datagram and feed it to the engine.
    fn receive(&mut self, wait: Option<Duration>) -> Result<(), String> {
        self.socket
            .set_read_timeout(wait)
            .map_err(|e| e.to_string())?;
        match self.recv_one() {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Read one datagram from the socket and feed it to the engine.
    fn recv_one(&mut self) -> io::Result<()> {
        let mut rx = [0u8; Client::MAX_DATAGRAM];
        if let (n, SocketAddr::V4(from)) = self.socket.recv_from(&mut rx)? {
            self.client.handle(
                clock::now(),
                Datagram {
                    local: self.local,
                    remote: from,
                    payload: &rx[..n],
                },
            );
        }
        Ok(())
    }
}
