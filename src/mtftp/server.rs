//! The PXE MTFTP server engine: one multicast stream per file, in
//! lock-step with one master client (PXE 2.1 MTFTP; notes §2.5).
//!
//! # The protocol, as served
//!
//! - **Open** (item 2): a plain RFC 1350 read request on the server port
//!   (SPORT). Options are ignored (RFC 2347 §5; RFC 2090 `multicast` is
//!   not supported), blocks are 512 bytes, there is no OACK.
//! - **Master election** (item 3): DATA block 1 goes unicast to the opener
//!   — who thereby becomes the *master client* — and to the file's group
//!   (group address and client port, CPORT), so listeners that are not
//!   master see it too (EDK1 classifies it as `GOTUNI` and `GOTMULTI`).
//!   Later blocks go to the group only.
//! - **Lock-step** (item 4): only the master's ACK (from its address and
//!   port, to the stream's port) moves the stream; ACKs from anyone else
//!   are ignored, as atftp does. A duplicate ACK never re-sends (RFC 1123
//!   §4.2.3.1); the timer does.
//! - **One stream per file** (item 5): a request for a file whose group
//!   already carries a stream gets no second stream and no answer (atftp:
//!   "already serving this file"; [`ServerEvent::Ignored`]). The opener
//!   is a listener on that group: it collects the running stream and,
//!   if it still lacks blocks when the stream ends, opens again after
//!   MTFTP_DELAY — and gets a stream of its own. A repeat of the master's
//!   own request while block 1 is unacknowledged re-sends block 1 (its
//!   unicast copy was lost).
//! - **Master loss** (item 7): the server re-sends the outstanding block
//!   to the group on each timeout and stops the stream after
//!   [`ServerConfig::max_retries`] silent timeouts
//!   ([`StopReason::MasterSilent`]); listeners then re-open.
//! - **No rollover** (item 9): a file of more than 65,535 blocks is
//!   refused with an ERROR that says so ([`super::check_size`]).
//! - **Source port** (item 10): the stream speaks from the endpoint the
//!   application gives [`Server::accept`] — SPORT itself (what
//!   Intel-derived ROMs expect) or a fresh port (as atftpd does).
//!
//! # Spoofed requests
//!
//! Until the master acknowledges block 1 (which proves it receives our
//! datagrams), the stream sends block 1 (unicast and to the group) once
//! per request received from the master and never on a timer; a spoofed
//! request draws two 516-byte datagrams and then silence. After that the
//! timer re-sends one block per timeout, at most `max_retries` times.
//!
//! # How to drive it
//!
//! The [engine contract](crate::engine) plus the application's decision
//! on each request, as in the TFTP server ([`crate::tftp::server`]):
//!
//! 1. Feed every datagram received on SPORT or on a stream's port to
//!    [`Server::handle`]. A new request comes back as an [`Incoming`].
//! 2. Look its path up in the MTFTP table: open the file and call
//!    [`Server::accept`] with the file's group and the endpoint the stream
//!    speaks from, or [`Server::refuse`] (ERROR 1 for an unknown file).
//! 3. Drain [`Server::poll_transmit`]: send each datagram from the socket
//!    bound to [`Transmit::local`] to [`Transmit::remote`] — the master,
//!    or the group (a multicast address: the driver sets the TTL and the
//!    interface).
//! 4. Call [`Server::handle_timeout`] at [`Server::poll_timeout`], and
//!    drain [`Server::poll_event`]; [`ServerEvent::Closed`] frees a
//!    stream's slot (a driver with a fresh port per stream closes it).
//!
//! ```
//! use core::net::{Ipv4Addr, SocketAddrV4};
//! use preboot::Instant;
//! use preboot::engine::Datagram;
//! use preboot::fs::{FileSource, MemFile, MemFs};
//! use preboot::mtftp::server::{Server, ServerConfig, Slot};
//!
//! let mut fs = MemFs::new(&[("pxeboot.0", b"boot")]);
//! let mut server = Server::new(ServerConfig::default(), [Slot::<MemFile>::new(), Slot::new()]);
//! let sport = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1759);
//! let group = SocketAddrV4::new(Ipv4Addr::new(239, 239, 239, 2), 1760);
//! let client = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 1760);
//! let now = Instant::ZERO;
//! let mut buf = [0u8; 516];
//!
//! let rrq = Datagram { local: sport, remote: client, payload: b"\x00\x01pxeboot.0\x00octet\x00" };
//! let incoming = server.handle(now, rrq).expect("an open");
//! let file = fs.open(&incoming.path).unwrap();
//! server.accept(now, &incoming, file, group, sport).unwrap();
//! // Block 1 unicast to the opener (the master), then to the group.
//! let t = server.poll_transmit(now, &mut buf)?.unwrap();
//! assert_eq!((&buf[..t.len], t.remote), (&b"\x00\x03\x00\x01boot"[..], client));
//! let t = server.poll_transmit(now, &mut buf)?.unwrap();
//! assert_eq!((t.remote, t.local), (group, Some(sport)));
//! server.handle(now, Datagram { local: sport, remote: client, payload: b"\x00\x04\x00\x01" });
//! assert_eq!(server.active(), 0); // the one block was the last
//! # Ok::<(), preboot::engine::BufferTooSmall>(())
//! ```

use core::net::SocketAddrV4;
use core::time::Duration;

use super::{BLKSIZE, check_size};
use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram, Transmit};
use crate::fs::{PathError, ReadAt, ValidPath};
use crate::wire::tftp::{DATA_HEADER_LEN, ErrorCode, Mode, Repr, emit_data_header};

/// Server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// How long the stream waits for the master's ACK before it re-sends.
    pub timeout: Duration,
    /// Silent timeouts in a row before the stream stops (the master is
    /// gone; listeners re-open after MTFTP_DELAY).
    pub max_retries: u8,
    /// Blocks sent ahead of the master's last ACK (0 counts as 1). 1 is
    /// PXE 2.1's lock-step, which every MTFTP client takes; more keeps
    /// blocks in flight while the master's ACK travels (as RFC 7440's
    /// `windowsize`, but not negotiated: PXE MTFTP has no options), for
    /// clients that keep blocks that come early — EDK2, iPXE, atftp and
    /// ours do; a strict lock-step client still works, and recovers a
    /// lost block only on the timeout.
    pub window: u16,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            timeout: Duration::from_secs(1),
            max_retries: 5,
            window: 1,
        }
    }
}

/// Identifies one stream; stale handles are detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamHandle {
    index: u32,
    generation: u32,
}

impl StreamHandle {
    /// The slot index (stable while the stream lives).
    pub fn index(&self) -> usize {
        self.index as usize
    }
}

/// A valid open request waiting for the application's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming<'a> {
    /// The opener (address and CPORT).
    pub peer: SocketAddrV4,
    /// The endpoint the request arrived on (SPORT).
    pub local: SocketAddrV4,
    /// The validated path (leading `/` stripped).
    pub path: ValidPath<'a>,
    received: Instant,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// Not a request the server can parse.
    Malformed,
    /// A write request: MTFTP only reads.
    Write,
    /// `mail` or `netascii`: MTFTP streams octets.
    Mode,
    /// The path is hostile or invalid.
    Path(PathError),
    /// The file has more than 65,535 blocks.
    TooLarge,
    /// Every stream slot is taken.
    Busy,
    /// The group given to [`Server::accept`] is not a multicast address.
    NotMulticast,
    /// Refused by the application ([`Server::refuse`]).
    Application,
}

/// Why [`Server::accept`] started no stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// A stream already runs on this group: no second stream, no answer
    /// (the opener listens to the running one).
    #[error("a stream already runs on this group")]
    AlreadyServing(StreamHandle),
    /// Refused; an ERROR is queued to the opener.
    #[error("refused: {0:?}")]
    Refused(RefuseReason),
}

/// Why a stream stopped before its last block was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The master did not acknowledge for `max_retries` timeouts.
    MasterSilent,
    /// The master sent an ERROR.
    PeerError(ErrorCode),
    /// Reading the file failed (or it changed size); the master got this
    /// ERROR code.
    File(ErrorCode),
}

/// What happened, for logs and metrics ([`Server::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A stream opened: `master` gets block 1.
    Started {
        /// Which stream.
        stream: StreamHandle,
        /// The file's group and CPORT.
        group: SocketAddrV4,
        /// The opener.
        master: SocketAddrV4,
        /// Blocks in the file.
        blocks: u16,
    },
    /// A request for a file already being sent: not answered.
    Ignored {
        /// The requester.
        peer: SocketAddrV4,
        /// The running stream.
        stream: StreamHandle,
    },
    /// The master acknowledged the last block.
    Completed {
        /// Which stream.
        stream: StreamHandle,
        /// Its group.
        group: SocketAddrV4,
        /// Its master.
        master: SocketAddrV4,
        /// File bytes sent.
        bytes: u64,
        /// From the request to the last ACK.
        duration: Duration,
    },
    /// The stream stopped early.
    Stopped {
        /// Which stream.
        stream: StreamHandle,
        /// Its group.
        group: SocketAddrV4,
        /// Its master.
        master: SocketAddrV4,
        /// The last block the master acknowledged (0: none).
        acked: u16,
        /// Why.
        reason: StopReason,
    },
    /// The stream's last event was polled: its slot is free and its
    /// handle stale; a driver with a port per stream closes `local`.
    Closed {
        /// Which stream.
        stream: StreamHandle,
        /// Its group.
        group: SocketAddrV4,
        /// The endpoint it spoke from.
        local: SocketAddrV4,
    },
    /// A request was refused; the ERROR is queued.
    Refused {
        /// The requester.
        peer: SocketAddrV4,
        /// The code sent.
        code: ErrorCode,
        /// Why.
        reason: RefuseReason,
    },
}

/// The message of the ERROR that refuses a file over 65,535 blocks.
pub const TOO_LARGE_MESSAGE: &str = "file too large for MTFTP (over 65535 blocks)";

/// One slot of stream storage; give [`Server::new`] an array or a `Vec`
/// (its length caps concurrent streams — one per MTFTP file at most).
pub struct Slot<F> {
    generation: u32,
    stream: Option<Stream<F>>,
}

impl<F> Slot<F> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot {
            generation: 0,
            stream: None,
        }
    }
}

impl<F> Default for Slot<F> {
    fn default() -> Self {
        Slot::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Sending,
    /// Ended; `end` holds the event until polled, then `Closed`.
    Ended,
}

struct Stream<F> {
    file: F,
    size: u64,
    group: SocketAddrV4,
    local: SocketAddrV4,
    master: SocketAddrV4,
    /// Number of the last block.
    blocks: u16,
    /// The last block the master acknowledged (0: none). ACKs are
    /// cumulative: the master ACKs blocks in order.
    acked: u16,
    /// The next block to send to the group, while `send_next <= send_end`
    /// (32 bits: past block 65,535 it must not wrap).
    send_next: u32,
    /// The last block the window allows now.
    send_end: u32,
    /// The highest block sent so far (an ACK beyond it is stray).
    sent_max: u16,
    /// Blocks in flight past `acked` ([`ServerConfig::window`], ≥ 1).
    window: u16,
    /// Block 1's unicast copy to the master is due.
    unicast_due: bool,
    /// The master acknowledged something.
    validated: bool,
    deadline: Option<Instant>,
    retries: u8,
    start: Instant,
    phase: Phase,
    error_due: Option<ErrorCode>,
    started_due: bool,
    end: Option<ServerEvent>,
}

impl<F: ReadAt> Stream<F> {
    fn acked(&self) -> u16 {
        self.acked
    }

    fn group_due(&self) -> bool {
        self.send_next <= self.send_end
    }

    /// Sends the window from the block after the last acknowledged one:
    /// after an ACK (what it newly allows) or a timeout (go-back-N).
    fn open_window(&mut self) {
        let acked = u32::from(self.acked);
        self.send_end = (acked + u32::from(self.window)).min(u32::from(self.blocks));
        if self.send_next <= acked {
            self.send_next = acked + 1;
        }
    }

    fn stop(&mut self, handle: StreamHandle, reason: StopReason, error: Option<ErrorCode>) {
        if self.phase == Phase::Ended {
            return;
        }
        let acked = self.acked;
        self.phase = Phase::Ended;
        self.deadline = None;
        self.unicast_due = false;
        self.send_end = 0;
        self.error_due = error;
        self.end = Some(ServerEvent::Stopped {
            stream: handle,
            group: self.group,
            master: self.master,
            acked,
            reason,
        });
    }

    fn on_ack(&mut self, handle: StreamHandle, now: Instant, block: u16, timeout: Duration) {
        if self.phase != Phase::Sending || block <= self.acked || block > self.sent_max {
            // Duplicate or stray: never re-send on it (RFC 1123 §4.2.3.1).
            return;
        }
        self.validated = true;
        self.retries = 0;
        self.unicast_due = false;
        self.acked = block;
        if block == self.blocks {
            self.phase = Phase::Ended;
            self.deadline = None;
            self.end = Some(ServerEvent::Completed {
                stream: handle,
                group: self.group,
                master: self.master,
                bytes: self.size,
                duration: now - self.start,
            });
            return;
        }
        // Later blocks: the group only (item 3).
        self.open_window();
        self.deadline = Some(now + timeout);
    }

    fn on_timeout(&mut self, handle: StreamHandle, now: Instant, config: &ServerConfig) {
        if self.phase != Phase::Sending || self.deadline.is_none_or(|d| now < d) {
            return;
        }
        self.retries = self.retries.saturating_add(1);
        if self.retries > config.max_retries {
            self.stop(handle, StopReason::MasterSilent, None);
            return;
        }
        self.deadline = Some(now + config.timeout);
        if self.validated {
            // The first unacknowledged block again, alone (item 7: the
            // listeners hear it too); the master's cumulative ACK then
            // says how much of the window it holds, and the window opens
            // from there.
            self.send_next = u32::from(self.acked) + 1;
            self.send_end = self.send_next;
        }
    }

    /// Block `block` into `buf`; its length.
    fn write_block(&mut self, block: u16, buf: &mut [u8]) -> Result<usize, ErrorCode> {
        let off = u64::from(block - 1) * u64::from(BLKSIZE);
        let want = self.size.saturating_sub(off).min(u64::from(BLKSIZE)) as usize;
        let payload = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + want];
        match self.file.read_full_at(off, payload) {
            Ok(n) if n == want => {}
            Ok(_) => return Err(ErrorCode::NotDefined),
            Err(e) => return Err(e.error_code()),
        }
        emit_data_header(block, buf).map_err(|_| ErrorCode::NotDefined)?;
        Ok(DATA_HEADER_LEN + want)
    }
}

/// Queued ERRORs to requests and events about requests (bounded: when
/// full, a request goes unanswered and its sender retries).
const REQUEST_QUEUE: usize = 16;

/// (from, to, code, message).
type Refusal = (SocketAddrV4, SocketAddrV4, ErrorCode, &'static str);

/// The MTFTP server engine; see the module docs.
pub struct Server<F, S> {
    config: ServerConfig,
    slots: S,
    refusals: [Option<Refusal>; REQUEST_QUEUE],
    notes: [Option<ServerEvent>; REQUEST_QUEUE],
    _marker: core::marker::PhantomData<F>,
}

impl<F: ReadAt, S: AsRef<[Slot<F>]> + AsMut<[Slot<F>]>> Server<F, S> {
    /// The largest datagram the engine sends: DATA of 512 bytes (ERRORs
    /// are shorter).
    pub const MAX_DATAGRAM: usize = DATA_HEADER_LEN + BLKSIZE as usize;

    /// A server with these settings and stream slots.
    pub fn new(config: ServerConfig, mut slots: S) -> Self {
        for s in slots.as_mut() {
            *s = Slot::new();
        }
        Server {
            config,
            slots,
            refusals: [None; REQUEST_QUEUE],
            notes: [None; REQUEST_QUEUE],
            _marker: core::marker::PhantomData,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Streams running (not yet ended).
    pub fn active(&self) -> usize {
        self.streams()
            .filter(|(_, s)| s.phase == Phase::Sending)
            .count()
    }

    fn streams(&self) -> impl Iterator<Item = (usize, &Stream<F>)> {
        self.slots
            .as_ref()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.stream.as_ref().map(|st| (i, st)))
    }

    fn handle_of(&self, i: usize) -> StreamHandle {
        StreamHandle {
            index: i as u32,
            generation: self.slots.as_ref()[i].generation,
        }
    }

    fn note(&mut self, ev: ServerEvent) {
        if let Some(slot) = self.notes.iter_mut().find(|s| s.is_none()) {
            *slot = Some(ev);
        }
    }

    fn refuse_raw(
        &mut self,
        local: SocketAddrV4,
        peer: SocketAddrV4,
        code: ErrorCode,
        message: &'static str,
        reason: RefuseReason,
    ) {
        if let Some(slot) = self.refusals.iter_mut().find(|s| s.is_none()) {
            *slot = Some((local, peer, code, message));
        }
        self.note(ServerEvent::Refused { peer, code, reason });
    }

    /// Feeds one received datagram ([engine contract](crate::engine)).
    ///
    /// From a stream's master to that stream's endpoint: an ACK moves the
    /// stream, an ERROR stops it, a repeated request re-sends block 1 if
    /// it is still unacknowledged. Any other read request is returned as
    /// an [`Incoming`] (an invalid one is refused here: ERROR queued,
    /// [`ServerEvent::Refused`]). Everything else is ignored.
    pub fn handle<'a>(&mut self, now: Instant, dg: Datagram<'a>) -> Option<Incoming<'a>> {
        let repr = Repr::parse_bytes(dg.payload);
        let from_master = self
            .streams()
            .find(|(_, s)| s.phase == Phase::Sending && s.master == dg.remote)
            .map(|(i, s)| (i, s.local == dg.local));
        if let Some((i, at_stream_port)) = from_master {
            let handle = self.handle_of(i);
            let timeout = self.config.timeout;
            if let Some(s) = self.slots.as_mut()[i].stream.as_mut() {
                match repr {
                    Ok(Repr::Ack { block }) if at_stream_port => {
                        s.on_ack(handle, now, block, timeout);
                        return None;
                    }
                    Ok(Repr::Error { code, .. }) if at_stream_port => {
                        s.stop(handle, StopReason::PeerError(code), None);
                        return None;
                    }
                    Ok(Repr::Rrq(_)) if !s.validated => {
                        // The master's request again: its DATA 1 was lost.
                        // Paid for by this request (see the module docs).
                        s.unicast_due = true;
                        s.send_next = 1;
                        return None;
                    }
                    _ => {}
                }
            }
        }
        let req = match repr {
            Ok(Repr::Rrq(r)) => r,
            Ok(Repr::Wrq(_)) => {
                self.refuse_raw(
                    dg.local,
                    dg.remote,
                    ErrorCode::AccessViolation,
                    "MTFTP serves reads only",
                    RefuseReason::Write,
                );
                return None;
            }
            // ACKs from listeners, stray DATA, ERRORs: never answered.
            Ok(_) => return None,
            Err(_) => {
                self.refuse_raw(
                    dg.local,
                    dg.remote,
                    ErrorCode::IllegalOperation,
                    ErrorCode::IllegalOperation.default_message(),
                    RefuseReason::Malformed,
                );
                return None;
            }
        };
        if req.mode != Mode::Octet {
            self.refuse_raw(
                dg.local,
                dg.remote,
                ErrorCode::IllegalOperation,
                "MTFTP sends octet mode only",
                RefuseReason::Mode,
            );
            return None;
        }
        let path = match ValidPath::new(req.filename) {
            Ok(p) => p,
            Err(e) => {
                self.refuse_raw(
                    dg.local,
                    dg.remote,
                    ErrorCode::AccessViolation,
                    ErrorCode::AccessViolation.default_message(),
                    RefuseReason::Path(e),
                );
                return None;
            }
        };
        Some(Incoming {
            peer: dg.remote,
            local: dg.local,
            path,
            received: now,
        })
    }

    /// The stream running on `group`, if any.
    pub fn serving(&self, group: SocketAddrV4) -> Option<StreamHandle> {
        self.streams()
            .find(|(_, s)| s.phase == Phase::Sending && s.group == group)
            .map(|(i, _)| self.handle_of(i))
    }

    /// Starts the stream of `file` on `group` (the file's multicast
    /// address and CPORT), speaking from `local` (SPORT, or a fresh
    /// port). No second stream on a group that already carries one
    /// ([`AcceptError::AlreadyServing`], nothing sent). A file over
    /// 65,535 blocks, a group that is not multicast, or no free slot:
    /// refused with an ERROR to the opener.
    pub fn accept(
        &mut self,
        now: Instant,
        incoming: &Incoming<'_>,
        file: F,
        group: SocketAddrV4,
        local: SocketAddrV4,
    ) -> Result<StreamHandle, AcceptError> {
        let peer = incoming.peer;
        if let Some(stream) = self.serving(group) {
            self.note(ServerEvent::Ignored { peer, stream });
            return Err(AcceptError::AlreadyServing(stream));
        }
        let refuse = |me: &mut Self, code, message, reason| {
            me.refuse_raw(incoming.local, peer, code, message, reason);
            Err(AcceptError::Refused(reason))
        };
        if !group.ip().is_multicast() {
            return refuse(
                self,
                ErrorCode::NotDefined,
                "MTFTP group is not multicast",
                RefuseReason::NotMulticast,
            );
        }
        let size = file.size();
        let Ok(blocks) = check_size(size) else {
            return refuse(
                self,
                ErrorCode::NotDefined,
                TOO_LARGE_MESSAGE,
                RefuseReason::TooLarge,
            );
        };
        // A free slot, or one whose stream ended and whose events were
        // polled (Closed frees it; an unpolled one is kept).
        let Some(i) = self.slots.as_ref().iter().position(|s| s.stream.is_none()) else {
            return refuse(
                self,
                ErrorCode::NotDefined,
                "MTFTP server busy",
                RefuseReason::Busy,
            );
        };
        let slot = &mut self.slots.as_mut()[i];
        slot.generation = slot.generation.wrapping_add(1);
        slot.stream = Some(Stream {
            file,
            size,
            group,
            local,
            master: peer,
            blocks,
            acked: 0,
            // Block 1: unicast to the opener and to the group (item 3);
            // the window opens once the master acknowledged it (spoofed
            // requests draw block 1 only).
            send_next: 1,
            send_end: 1,
            sent_max: 1,
            window: self.config.window.max(1),
            unicast_due: true,
            validated: false,
            deadline: Some(now + self.config.timeout),
            retries: 0,
            start: incoming.received.min(now),
            phase: Phase::Sending,
            error_due: None,
            started_due: true,
            end: None,
        });
        Ok(self.handle_of(i))
    }

    /// Refuses a request: ERROR `code` to the opener, from where the
    /// request arrived (ERROR 1 for a file not in the MTFTP table).
    pub fn refuse(&mut self, incoming: &Incoming<'_>, code: ErrorCode) {
        self.refuse_raw(
            incoming.local,
            incoming.peer,
            code,
            code.default_message(),
            RefuseReason::Application,
        );
    }

    /// The next datagram into `buf` ([engine contract](crate::engine)):
    /// refusals first, then each stream's block (unicast copy before the
    /// group's). Needs [`Self::MAX_DATAGRAM`] bytes; with fewer,
    /// [`BufferTooSmall`] and nothing is lost.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        if buf.len() < Self::MAX_DATAGRAM {
            let pending = self.refusals.iter().any(Option::is_some)
                || self
                    .streams()
                    .any(|(_, s)| s.error_due.is_some() || s.unicast_due || s.group_due());
            if pending {
                return Err(BufferTooSmall {
                    needed: Self::MAX_DATAGRAM,
                });
            }
            return Ok(None);
        }
        let send = |local, remote, len| Transmit {
            local: Some(local),
            remote,
            len,
            broadcast: false,
            after_sync: false,
        };
        for slot in self.refusals.iter_mut() {
            let Some((local, peer, code, message)) = slot.take() else {
                continue;
            };
            let repr = Repr::Error {
                code,
                message: message.as_bytes(),
            };
            if let Ok(len) = repr.emit(buf) {
                return Ok(Some(send(local, peer, len)));
            }
        }
        for i in 0..self.slots.as_ref().len() {
            let handle = self.handle_of(i);
            let timeout = self.config.timeout;
            let Some(s) = self.slots.as_mut()[i].stream.as_mut() else {
                continue;
            };
            if let Some(code) = s.error_due.take() {
                if let Ok(len) = Repr::error(code).emit(buf) {
                    return Ok(Some(send(s.local, s.master, len)));
                }
            }
            if s.phase != Phase::Sending || !(s.unicast_due || s.group_due()) {
                continue;
            }
            // send_next <= send_end <= blocks: it fits in 16 bits.
            let block = if s.unicast_due { 1 } else { s.send_next as u16 };
            let len = match s.write_block(block, buf) {
                Ok(len) => len,
                Err(code) => {
                    s.stop(handle, StopReason::File(code), Some(code));
                    if let Some(code) = s.error_due.take() {
                        if let Ok(len) = Repr::error(code).emit(buf) {
                            return Ok(Some(send(s.local, s.master, len)));
                        }
                    }
                    continue;
                }
            };
            let to = if s.unicast_due {
                s.unicast_due = false;
                s.master
            } else {
                s.send_next += 1;
                s.sent_max = s.sent_max.max(block);
                s.group
            };
            s.deadline = Some(now + timeout);
            return Ok(Some(send(s.local, to, len)));
        }
        Ok(None)
    }

    /// When [`Server::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.streams()
            .filter(|(_, s)| s.phase == Phase::Sending)
            .filter_map(|(_, s)| s.deadline)
            .min()
    }

    /// Lets due timers act: re-send the outstanding block to the group,
    /// or stop a stream whose master stayed silent. Spurious calls are
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let config = self.config;
        for i in 0..self.slots.as_ref().len() {
            let handle = self.handle_of(i);
            if let Some(s) = self.slots.as_mut()[i].stream.as_mut() {
                s.on_timeout(handle, now, &config);
            }
        }
    }

    /// The next event ([engine contract](crate::engine)). A stream's last
    /// event is followed by [`ServerEvent::Closed`], which frees its slot:
    /// drain this, or ended streams keep their slots.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        if let Some(ev) = self.notes.iter_mut().find_map(Option::take) {
            return Some(ev);
        }
        for i in 0..self.slots.as_ref().len() {
            let handle = self.handle_of(i);
            let slot = &mut self.slots.as_mut()[i];
            let Some(s) = slot.stream.as_mut() else {
                continue;
            };
            if core::mem::take(&mut s.started_due) {
                return Some(ServerEvent::Started {
                    stream: handle,
                    group: s.group,
                    master: s.master,
                    blocks: s.blocks,
                });
            }
            if s.phase == Phase::Ended && s.error_due.is_none() {
                if let Some(ev) = s.end.take() {
                    return Some(ev);
                }
                let (group, local) = (s.group, s.local);
                slot.stream = None;
                return Some(ServerEvent::Closed {
                    stream: handle,
                    group,
                    local,
                });
            }
        }
        None
    }

    /// The last block the master of `h` acknowledged (`None`: stale).
    pub fn acked(&self, h: StreamHandle) -> Option<u16> {
        let slot = self.slots.as_ref().get(h.index as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.stream.as_ref().map(Stream::acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FileSource, MemFile, MemFs};
    use core::net::Ipv4Addr;

    const SPORT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1759);
    const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 239, 239, 2), 1760);
    const A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 1760);
    const B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), 1760);

    fn dg<'a>(remote: SocketAddrV4, payload: &'a [u8]) -> Datagram<'a> {
        Datagram {
            local: SPORT,
            remote,
            payload,
        }
    }

    type Srv<'a> = Server<MemFile<'a>, [Slot<MemFile<'a>>; 2]>;

    fn drain(s: &mut Srv<'_>, now: Instant) -> std::vec::Vec<(SocketAddrV4, std::vec::Vec<u8>)> {
        let mut buf = [0u8; 516];
        let mut out = std::vec::Vec::new();
        while let Some(t) = s.poll_transmit(now, &mut buf).unwrap() {
            out.push((t.remote, buf[..t.len].to_vec()));
        }
        out
    }

    fn open<'a>(
        s: &mut Srv<'a>,
        fs: &mut MemFs<'a>,
        from: SocketAddrV4,
    ) -> Result<StreamHandle, AcceptError> {
        let rrq = b"\x00\x01file\x00octet\x00";
        let inc = s.handle(Instant::ZERO, dg(from, rrq)).expect("incoming");
        let f = fs.open(&inc.path).unwrap();
        s.accept(Instant::ZERO, &inc, f, GROUP, SPORT)
    }

    // Notes §2.5 items 3–5: block 1 unicast and to the group, later blocks
    // to the group only, only the master's ACK counts, a second opener gets
    // no second stream.
    #[test]
    fn master_lock_step_and_second_opener() {
        let data = [7u8; 1000];
        let files = [("file", &data[..])];
        let mut fs = MemFs::new(&files);
        let mut s: Srv<'_> = Server::new(ServerConfig::default(), [Slot::new(), Slot::new()]);
        let h = open(&mut s, &mut fs, A).unwrap();
        let out = drain(&mut s, Instant::ZERO);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[1].0), (A, GROUP));
        assert_eq!(&out[0].1[..4], b"\x00\x03\x00\x01");
        assert_eq!(out[0].1, out[1].1);
        assert_eq!(
            open(&mut s, &mut fs, B),
            Err(AcceptError::AlreadyServing(h))
        );
        assert!(drain(&mut s, Instant::ZERO).is_empty());
        // B is not master: its ACK is ignored.
        s.handle(Instant::ZERO, dg(B, b"\x00\x04\x00\x01"));
        assert!(drain(&mut s, Instant::ZERO).is_empty());
        s.handle(Instant::ZERO, dg(A, b"\x00\x04\x00\x01"));
        let out = drain(&mut s, Instant::ZERO);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, GROUP);
        assert_eq!(&out[0].1[..4], b"\x00\x03\x00\x02");
        assert_eq!(out[0].1.len(), 4 + 488);
        // A duplicate ACK 1 sends nothing (RFC 1123 §4.2.3.1).
        s.handle(Instant::ZERO, dg(A, b"\x00\x04\x00\x01"));
        assert!(drain(&mut s, Instant::ZERO).is_empty());
        s.handle(Instant::ZERO, dg(A, b"\x00\x04\x00\x02"));
        let evs: std::vec::Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert!(matches!(evs[0], ServerEvent::Ignored { peer: B, .. }));
        assert!(matches!(
            evs[1],
            ServerEvent::Started {
                master: A,
                blocks: 2,
                ..
            }
        ));
        assert!(matches!(evs[2], ServerEvent::Completed { bytes: 1000, .. }));
        assert!(matches!(evs[3], ServerEvent::Closed { .. }));
        assert_eq!(s.active(), 0);
        // The group is free again: B's next open starts a stream.
        assert!(open(&mut s, &mut fs, B).is_ok());
    }

    // Item 7: a silent master stops the stream after max_retries timeouts;
    // before its first ACK a timeout sends nothing (spoofed requests).
    #[test]
    fn silent_master_stops_the_stream() {
        let data = [1u8; 2000];
        let files = [("file", &data[..])];
        let mut fs = MemFs::new(&files);
        let cfg = ServerConfig {
            timeout: Duration::from_secs(1),
            max_retries: 2,
            window: 1,
        };
        let mut s: Srv<'_> = Server::new(cfg, [Slot::new(), Slot::new()]);
        open(&mut s, &mut fs, A).unwrap();
        assert_eq!(drain(&mut s, Instant::ZERO).len(), 2);
        let t1 = Instant::from_secs(1);
        s.handle_timeout(t1);
        assert!(
            drain(&mut s, t1).is_empty(),
            "unvalidated: no timer re-send"
        );
        // The master's repeated request pays for block 1 again.
        s.handle(t1, dg(A, b"\x00\x01file\x00octet\x00"));
        assert_eq!(drain(&mut s, t1).len(), 2);
        s.handle(t1, dg(A, b"\x00\x04\x00\x01"));
        assert_eq!(drain(&mut s, t1).len(), 1);
        let mut t = t1;
        for _ in 0..2 {
            t += Duration::from_secs(1);
            s.handle_timeout(t);
            let out = drain(&mut s, t);
            assert_eq!(out.len(), 1);
            assert_eq!(
                (out[0].0, &out[0].1[..4]),
                (GROUP, &b"\x00\x03\x00\x02"[..])
            );
        }
        t += Duration::from_secs(1);
        s.handle_timeout(t);
        assert!(drain(&mut s, t).is_empty());
        let evs: std::vec::Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert!(evs.iter().any(|e| matches!(
            e,
            ServerEvent::Stopped {
                acked: 1,
                reason: StopReason::MasterSilent,
                ..
            }
        )));
        assert_eq!(s.poll_timeout(), None);
    }

    // ServerConfig::window: after the master's ACK of block 1 (never
    // before: spoofed requests draw block 1 only), `window` blocks are in
    // flight past its last ACK; ACKs are cumulative; an ACK past what was
    // sent is stray; a timeout re-sends the first unacknowledged block
    // alone; a duplicate ACK re-sends nothing (RFC 1123 §4.2.3.1).
    #[test]
    fn window_sends_ahead_of_the_masters_ack() {
        let data = [3u8; 512 * 9 + 10];
        let files = [("file", &data[..])];
        let mut fs = MemFs::new(&files);
        let cfg = ServerConfig {
            window: 4,
            ..ServerConfig::default()
        };
        let mut s: Srv<'_> = Server::new(cfg, [Slot::new(), Slot::new()]);
        let h = open(&mut s, &mut fs, A).unwrap();
        let blocks = |out: &[(SocketAddrV4, std::vec::Vec<u8>)]| -> std::vec::Vec<u16> {
            out.iter()
                .map(|(to, d)| {
                    assert_eq!(*to, GROUP);
                    u16::from_be_bytes([d[2], d[3]])
                })
                .collect()
        };
        assert_eq!(drain(&mut s, Instant::ZERO).len(), 2, "block 1 only");
        // An ACK for a block not sent yet is stray.
        s.handle(Instant::ZERO, dg(A, b"\x00\x04\x00\x03"));
        assert!(drain(&mut s, Instant::ZERO).is_empty());
        s.handle(Instant::ZERO, dg(A, b"\x00\x04\x00\x01"));
        assert_eq!(blocks(&drain(&mut s, Instant::ZERO)), [2, 3, 4, 5]);
        // Cumulative: ACK 3 lets 6 and 7 go.
        s.handle(Instant::ZERO, dg(A, b"\x00\x04\x00\x03"));
        assert_eq!(blocks(&drain(&mut s, Instant::ZERO)), [6, 7]);
        s.handle(Instant::ZERO, dg(A, b"\x00\x04\x00\x03"));
        assert!(drain(&mut s, Instant::ZERO).is_empty(), "duplicate ACK");
        assert_eq!(s.acked(h), Some(3));
        // Timeout: block 4 alone; the master's ACK 7 then opens the rest.
        let t = Instant::from_secs(1);
        s.handle_timeout(t);
        assert_eq!(blocks(&drain(&mut s, t)), [4]);
        s.handle(t, dg(A, b"\x00\x04\x00\x07"));
        assert_eq!(blocks(&drain(&mut s, t)), [8, 9, 10]);
        s.handle(t, dg(A, b"\x00\x04\x00\x0a"));
        assert_eq!(s.active(), 0);
        let evs: std::vec::Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert!(
            evs.iter()
                .any(|e| matches!(e, ServerEvent::Completed { .. }))
        );
    }

    // Item 9: no rollover — a file over 65,535 blocks is refused with a
    // clear ERROR at open.
    #[test]
    fn file_over_65535_blocks_is_refused() {
        let data = std::vec![0u8; super::super::MAX_FILE_SIZE as usize + 1];
        let files = [("file", &data[..])];
        let mut fs = MemFs::new(&files);
        let mut s: Srv<'_> = Server::new(ServerConfig::default(), [Slot::new(), Slot::new()]);
        assert_eq!(
            open(&mut s, &mut fs, A),
            Err(AcceptError::Refused(RefuseReason::TooLarge))
        );
        let out = drain(&mut s, Instant::ZERO);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].1[..4], b"\x00\x05\x00\x00");
        assert!(
            out[0]
                .1
                .windows(TOO_LARGE_MESSAGE.len())
                .any(|w| w == TOO_LARGE_MESSAGE.as_bytes())
        );
    }
}
