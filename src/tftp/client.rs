//! The TFTP client engine: one read request (RFC 1350) with options
//! (RFC 2347 `blksize`/`timeout`/`tsize`/`windowsize`), writing what arrives
//! into a [`WriteAt`] sink.
//!
//! The server answers from a new port (its transfer identifier, RFC 1350
//! §4): the first reply fixes it, and datagrams from any other source get
//! ERROR 5 and are otherwise ignored. An OACK is checked (only options we
//! asked for, values no larger than asked) and acknowledged with ACK 0; a
//! server that ignores options answers with DATA 1 and the defaults apply.
//!
//! # How to drive it
//!
//! The [engine contract](crate::engine): drain [`Client::poll_transmit`]
//! and send each datagram to [`Transmit::remote`] from the client's one
//! socket; feed every datagram received on it to [`Client::handle`]; call
//! [`Client::handle_timeout`] at [`Client::poll_timeout`]; read
//! [`Client::poll_event`]. Done when [`Client::is_finished`] (after the
//! dally period that lets a lost final ACK be repeated).
//!
//! ```
//! use core::net::{Ipv4Addr, SocketAddrV4};
//! use preboot::Instant;
//! use preboot::engine::Datagram;
//! use preboot::fs::SliceSink;
//! use preboot::tftp::client::{Client, ClientConfig};
//!
//! let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 69);
//! let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2000);
//! let mut store = [0u8; 16];
//! let mut c = Client::new(Instant::ZERO, server, b"hello.txt", ClientConfig::default(), SliceSink::new(&mut store));
//! let mut buf = [0u8; Client::<SliceSink>::MAX_DATAGRAM];
//! let t = c.poll_transmit(Instant::ZERO, &mut buf)?.unwrap();
//! assert_eq!((&buf[..t.len], t.remote), (&b"\x00\x01hello.txt\x00octet\x00"[..], server));
//! // The server answers from its transfer port with the whole file.
//! let tid = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000);
//! c.handle(Instant::ZERO, Datagram { local, remote: tid, payload: b"\x00\x03\x00\x01hi" });
//! let t = c.poll_transmit(Instant::ZERO, &mut buf)?.unwrap();
//! assert_eq!((&buf[..t.len], t.remote), (&b"\x00\x04\x00\x01"[..], tid));
//! # Ok::<(), preboot::engine::BufferTooSmall>(())
//! ```

use core::net::SocketAddrV4;
use core::time::Duration;

use super::receiver::{Receiver, RxState};
use super::{Event, EventQueue, FailReason, Negotiated, Rollover};
use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram, Transmit};
use crate::fs::WriteAt;
use crate::wire::tftp::{DEFAULT_BLKSIZE, ErrorCode, Mode, OptionSet, Options, Repr, Request};

/// What the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Transfer mode.
    pub mode: Mode,
    /// `blksize` to ask for (RFC 2348).
    pub blksize: Option<u16>,
    /// `windowsize` to ask for (RFC 7440).
    pub windowsize: Option<u16>,
    /// Ask for `tsize` (RFC 2349) to learn the size up front.
    pub tsize: bool,
    /// `timeout` to ask for, in seconds (RFC 2349).
    pub timeout_option: Option<u8>,
    /// Our own retransmission timeout.
    pub timeout: Duration,
    /// Retransmissions before giving up.
    pub max_retries: u8,
    /// Block number after 65535.
    pub rollover: Rollover,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            mode: Mode::Octet,
            blksize: None,
            windowsize: None,
            tsize: false,
            timeout_option: None,
            timeout: Duration::from_secs(1),
            max_retries: 5,
            rollover: Rollover::ToZero,
        }
    }
}

/// See [`Client::MAX_DATAGRAM`].
const MAX_DATAGRAM: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Requesting,
    Receiving,
    Ended,
}

/// A TFTP read transfer (client side); see the module docs.
#[derive(Debug)]
pub struct Client<'n, W> {
    server: SocketAddrV4,
    tid: Option<SocketAddrV4>,
    filename: &'n [u8],
    config: ClientConfig,
    sink: W,
    phase: Phase,
    rrq_due: bool,
    deadline: Option<Instant>,
    retries: u8,
    rx: Receiver,
    neg: Negotiated,
    error_due: Option<(SocketAddrV4, ErrorCode)>,
    start: Instant,
    events: EventQueue,
}

impl<'n, W: WriteAt> Client<'n, W> {
    /// Starts reading `filename` from `server` (normally port 69).
    pub fn new(
        now: Instant,
        server: SocketAddrV4,
        filename: &'n [u8],
        config: ClientConfig,
        sink: W,
    ) -> Self {
        Client {
            server,
            tid: None,
            filename,
            config,
            sink,
            phase: Phase::Requesting,
            rrq_due: true,
            deadline: None,
            retries: 0,
            rx: Receiver::new(
                DEFAULT_BLKSIZE,
                1,
                config.rollover,
                config.timeout,
                config.max_retries,
                config.mode == Mode::Netascii,
            ),
            neg: Negotiated {
                timeout: config.timeout,
                ..Negotiated::default()
            },
            error_due: None,
            start: now,
            events: EventQueue::default(),
        }
    }

    fn requested(&self) -> OptionSet {
        OptionSet {
            blksize: self.config.blksize,
            timeout: self.config.timeout_option,
            tsize: self.config.tsize.then_some(0),
            windowsize: self.config.windowsize,
            multicast: None,
        }
    }

    /// The sink (e.g. to read what arrived).
    pub fn sink(&self) -> &W {
        &self.sink
    }

    /// Consumes the client, returning the sink.
    pub fn into_sink(self) -> W {
        self.sink
    }

    /// The options in force (defaults until the server answered).
    pub fn negotiated(&self) -> Negotiated {
        self.neg
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.rx.bytes
    }

    /// True when the transfer ended and the dally period is over.
    pub fn is_finished(&self) -> bool {
        self.error_due.is_none()
            && (self.phase == Phase::Ended
                || (self.phase == Phase::Receiving && self.rx.state == RxState::Done))
    }

    fn fail(&mut self, reason: FailReason, send: Option<ErrorCode>) {
        // Ended already, or completed and dallying.
        if self.phase == Phase::Ended || self.rx.state != RxState::Receiving {
            return;
        }
        if let (Some(code), Some(to)) = (send, self.tid.or(Some(self.server))) {
            self.error_due = Some((to, code));
        }
        self.phase = Phase::Ended;
        self.deadline = None;
        self.events.end(Event::Failed {
            reason,
            bytes: self.rx.bytes,
        });
    }

    fn start_receiving(&mut self, neg: Negotiated) {
        self.neg = neg;
        self.rx = Receiver::new(
            neg.blksize,
            neg.windowsize,
            self.config.rollover,
            self.config.timeout,
            self.config.max_retries,
            self.config.mode == Mode::Netascii,
        );
        self.phase = Phase::Receiving;
        self.deadline = None;
        self.events.started(neg);
    }

    fn check_oack(&self, granted: OptionSet) -> Option<Negotiated> {
        let asked = self.requested();
        let mut neg = Negotiated {
            timeout: self.config.timeout,
            oack: true,
            ..Negotiated::default()
        };
        if granted.multicast.is_some() {
            return None;
        }
        if let Some(b) = granted.blksize {
            if b > asked.blksize? {
                return None;
            }
            neg.blksize = b;
        }
        if let Some(w) = granted.windowsize {
            if w > asked.windowsize? {
                return None;
            }
            neg.windowsize = w;
        }
        if let Some(t) = granted.timeout {
            asked.timeout?;
            neg.timeout = Duration::from_secs(u64::from(t));
        }
        if let Some(ts) = granted.tsize {
            asked.tsize?;
            neg.tsize = Some(ts);
        }
        Some(neg)
    }

    /// The largest datagram this client sends: an RRQ (a longer name
    /// cannot be requested; the client fails at once). ACKs and ERRORs are
    /// smaller.
    pub const MAX_DATAGRAM: usize = MAX_DATAGRAM;

    /// Feeds a datagram received on the client's socket.
    pub fn handle(&mut self, now: Instant, datagram: Datagram<'_>) {
        let (from, datagram) = (datagram.remote, datagram.payload);
        if self.phase == Phase::Ended {
            return;
        }
        match self.tid {
            Some(tid) if tid != from => {
                // RFC 1350 §4: a packet from a foreign transfer ID gets
                // ERROR 5; our transfer goes on.
                if self.error_due.is_none() {
                    self.error_due = Some((from, ErrorCode::UnknownTid));
                }
                return;
            }
            Some(_) => {}
            None => {
                if from.ip() != self.server.ip() {
                    return;
                }
            }
        }
        let Ok(repr) = Repr::parse_bytes(datagram) else {
            return;
        };
        match (self.phase, repr) {
            (_, Repr::Error { code, .. }) => {
                self.tid.get_or_insert(from);
                self.fail(FailReason::PeerError(code), None);
            }
            (Phase::Requesting, Repr::Oack { options }) => {
                self.tid = Some(from);
                match self.check_oack(options.to_set()) {
                    Some(neg) => {
                        self.start_receiving(neg);
                        // ACK 0 accepts the options (RFC 2347 §3).
                        self.rx.ack_due = true;
                    }
                    None => self.fail(
                        FailReason::Protocol(ErrorCode::OptionRefused),
                        Some(ErrorCode::OptionRefused),
                    ),
                }
            }
            (Phase::Requesting, Repr::Data { block, data }) => {
                // The server ignored our options: defaults (RFC 2347 §5).
                self.tid = Some(from);
                self.start_receiving(Negotiated {
                    timeout: self.config.timeout,
                    ..Negotiated::default()
                });
                self.on_data(now, block, data);
            }
            (Phase::Receiving, Repr::Oack { .. }) if self.rx.next == 1 => {
                // Our ACK 0 was lost; the server repeats its OACK.
                self.rx.ack_due = true;
            }
            (Phase::Receiving, Repr::Data { block, data }) => self.on_data(now, block, data),
            _ => {}
        }
    }

    fn on_data(&mut self, now: Instant, block: u16, data: &[u8]) {
        // After the last block the client dallies until the receiver is
        // done.
        let outcome = self.rx.on_data(now, block, data, &mut self.sink);
        if let Some((reason, send)) =
            outcome.record(self.rx.bytes, self.start, now, &mut self.events)
        {
            self.fail(reason, send);
        }
    }

    /// When the client's timer fires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Requesting => self.deadline,
            Phase::Receiving => self.rx.deadline,
            Phase::Ended => None,
        }
    }

    /// Lets the timer act (retransmit or give up); spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Requesting => {
                if self.deadline.is_none_or(|d| now < d) {
                    return;
                }
                self.deadline = None;
                self.retries = self.retries.saturating_add(1);
                if self.retries > self.config.max_retries {
                    self.fail(FailReason::TimedOut, None);
                } else {
                    self.rrq_due = true;
                }
            }
            Phase::Receiving => {
                if !self.rx.on_timeout(now) {
                    self.fail(FailReason::TimedOut, None);
                }
            }
            Phase::Ended => {}
        }
    }

    /// The next datagram to send, written into `buf`; one that does not
    /// fit stays queued ([`BufferTooSmall`], the
    /// [engine contract](crate::engine)).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        let send = |remote: SocketAddrV4, len: usize| Transmit {
            local: None,
            remote,
            len,
            broadcast: false,
            after_sync: false,
        };
        if let Some((to, code)) = self.error_due {
            let repr = Repr::error(code);
            let len = emit(&repr, buf)?;
            self.error_due = None;
            return Ok(len.map(|len| send(to, len)));
        }
        match self.phase {
            Phase::Requesting if self.rrq_due => {
                let repr = Repr::Rrq(Request {
                    filename: self.filename,
                    mode: self.config.mode,
                    options: Options::Set(self.requested()),
                });
                let len = emit(&repr, buf)?;
                self.rrq_due = false;
                self.deadline = Some(now + self.config.timeout);
                match len {
                    Some(len) => Ok(Some(send(self.server, len))),
                    // A name no request can carry: nothing will ever answer.
                    None => {
                        self.fail(FailReason::Protocol(ErrorCode::NotDefined), None);
                        Ok(None)
                    }
                }
            }
            Phase::Receiving => {
                let Some(tid) = self.tid else { return Ok(None) };
                if buf.len() < 4 {
                    return Err(BufferTooSmall { needed: 4 });
                }
                let Some(block) = self.rx.poll_ack(now) else {
                    return Ok(None);
                };
                Ok(Repr::Ack { block }.emit(buf).ok().map(|len| send(tid, len)))
            }
            _ => Ok(None),
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }
}

/// Emits `repr` into `buf`: `Ok(None)` if it cannot be encoded at all,
/// [`BufferTooSmall`] (nothing written) if only `buf` is too short.
fn emit(repr: &Repr<'_>, buf: &mut [u8]) -> Result<Option<usize>, BufferTooSmall> {
    let needed = repr.buffer_len();
    if needed > buf.len() {
        if needed <= MAX_DATAGRAM {
            return Err(BufferTooSmall { needed });
        }
        return Ok(None);
    }
    Ok(repr.emit(buf).ok())
}
