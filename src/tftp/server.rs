//! The TFTP server engine (RFC 1350, options RFC 2347/2348/2349/7440).
//!
//! # How to drive it
//!
//! It follows the [engine contract](crate::engine), with one step of its
//! own, the application's decision on each request (as quinn-proto's
//! endpoint hands out incoming connections):
//!
//! 1. Feed every datagram to [`Server::handle`] with the endpoint it
//!    arrived on: the listening socket's for requests, the transfer's
//!    socket's for a transfer's ACKs and DATA. A valid new request comes
//!    back as an [`Incoming`]; invalid ones are refused by the engine.
//! 2. For an [`Incoming`], open the file ([`crate::fs::FileSource`]) and
//!    call [`Server::accept_read`] (or [`Server::accept_write`] with a
//!    sink) with the endpoint the transfer will speak from — a fresh
//!    socket's (a new port, RFC 1350 §4), or the listening one in
//!    single-port mode — or [`Server::refuse`] with an error code (ERROR 1
//!    for a missing file).
//! 3. Drain [`Server::poll_transmit`] and send each datagram from the
//!    socket bound to [`Transmit::local`]; then call
//!    [`Server::read_ahead`]. It tells the files of the transfers that
//!    just sent ([`crate::fs::ReadAt::read_ahead`]) which blocks the next
//!    ACK will ask for (one block in lock-step, RFC 1350 §2; the next
//!    window with windowsize, RFC 7440 §4), so a file that reads ahead
//!    does that read while the DATA and its ACK cross the network.
//! 4. Call [`Server::handle_timeout`] at [`Server::poll_timeout`] (the
//!    earliest deadline of all transfers).
//! 5. Drain [`Server::poll_event`]: what happened, for logs; a
//!    [`ServerEvent::Closed`] says a transfer's slot is free and its socket
//!    may be closed.
//!
//! # Spoofed requests (anti-amplification)
//!
//! A read transfer sends at most one datagram per datagram received from
//! its peer (the request, repeats of it, datagrams fed to the transfer)
//! until the peer acknowledges what was sent on the transfer's own port;
//! the window then flows, a timeout re-sends one block, and timeouts back
//! off. A driver without a port per transfer (single-port mode) sets
//! [`ServerConfig::validate_by_port`] to false: no transfer is then ever
//! validated and `windowsize` is not granted. Limits in
//! [`ServerConfig::max_timeout`] and [`ServerConfig::port_space`]; the
//! rules in `sender.rs`.
//!
//! ```
//! use core::net::{Ipv4Addr, SocketAddrV4};
//! use preboot::Instant;
//! use preboot::engine::Datagram;
//! use preboot::fs::{FileSource, MemFile, MemFs, SliceSink};
//! use preboot::tftp::server::{Server, ServerConfig, ServerEvent, Slot};
//!
//! let mut fs = MemFs::new(&[("hello.txt", b"hi")]);
//! let slots: [Slot<MemFile, SliceSink>; 4] = core::array::from_fn(|_| Slot::new());
//! let mut server = Server::new(ServerConfig::default(), slots);
//! let listener = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 69);
//! let port = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000); // the transfer's socket
//! let client = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 2000);
//! let now = Instant::ZERO;
//! let mut buf = [0u8; 600];
//!
//! let rrq = Datagram { local: listener, remote: client, payload: b"\x00\x01/hello.txt\x00octet\x00" };
//! let incoming = server.handle(now, rrq).expect("a valid read request");
//! let file = fs.open(&incoming.path).unwrap();
//! server.accept_read(now, &incoming, file, port).unwrap();
//! let t = server.poll_transmit(now, &mut buf)?.expect("DATA 1");
//! assert_eq!((&buf[..t.len], t.local, t.remote), (&b"\x00\x03\x00\x01hi"[..], Some(port), client));
//! server.read_ahead(); // after sending; block 1 was the last: no hint
//! server.handle(now, Datagram { local: port, remote: client, payload: b"\x00\x04\x00\x01" }); // ACK 1
//! assert!(server.poll_transmit(now, &mut buf)?.is_none());
//! let mut closed = false;
//! while let Some(ev) = server.poll_event() {
//!     closed |= matches!(ev, ServerEvent::Closed { .. });
//! }
//! assert!(closed && server.active() == 0);
//! # Ok::<(), preboot::engine::BufferTooSmall>(())
//! ```

use core::net::SocketAddrV4;
use core::time::Duration;

use super::deadlines;
use super::receiver::{Receiver, RxState};
use super::sender::{ReadTransfer, SendConfig};
use super::{Event, EventQueue, FailReason, Negotiated, Rollover};
use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram, Transmit};
use crate::fs::{PathError, ReadAt, ValidPath, WriteAt};
use crate::wire::tftp::{DATA_HEADER_LEN, ErrorCode, MAX_BLKSIZE, Mode, OptionSet, Options, Repr};

/// Server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Retransmission timeout when the client does not ask for one.
    pub timeout: Duration,
    /// Retransmissions before a transfer gives up.
    pub max_retries: u8,
    /// Largest `blksize` granted (RFC 2348; at most 65464).
    pub max_blksize: u16,
    /// Largest `windowsize` granted (RFC 7440). 1 disables windows.
    pub max_windowsize: u16,
    /// Block number after 65535.
    pub rollover: Rollover,
    /// Concurrent transfers; also bounded by the number of slots.
    pub max_transfers: usize,
    /// Concurrent transfers per client IP address.
    pub max_per_client: usize,
    /// Accept write requests (otherwise ERROR 2).
    pub allow_write: bool,
    /// Largest upload announced with `tsize` (the sink enforces the limit
    /// on the data itself).
    pub max_write_size: Option<u64>,
    /// Largest RFC 2349 `timeout` granted. A client asking for more gets
    /// no `timeout` in the OACK (RFC 2349 lets a server only echo or omit
    /// it) and the transfer runs on [`ServerConfig::timeout`]; a silent
    /// client cannot hold a slot for 6 × 255 s.
    pub max_timeout: Duration,
    /// True when each transfer has its own port (RFC 1350 §4), so an ACK
    /// fed to [`Server::handle`] that acknowledges what we sent proves the
    /// peer receives our datagrams (a blind spoofer cannot know the port)
    /// and the window may open. False in single-port mode, where the port
    /// and block numbers are known to a spoofer: every transfer then
    /// stays under the unvalidated rule — one datagram sent per datagram
    /// received, no `windowsize` granted — so a spoofed datagram of `n`
    /// bytes draws at most one datagram of `blksize + 4` bytes.
    pub validate_by_port: bool,
    /// With `validate_by_port`: how many ports a blind spoofer must try to
    /// reach a transfer's port (the size of the driver's port range; the
    /// default is Linux's default ephemeral range, 32768-60999). The
    /// granted `windowsize` is bounded so that what one such spray
    /// (`port_space` ACKs, 32 bytes each on the wire) can draw — a window
    /// and the single-block re-sends of `max_retries` timeouts, each block
    /// `blksize` + 32 bytes on the wire — is at most 30 times the spray:
    /// `windowsize + max_retries ≤ 960 × port_space / (blksize + 32)`.
    /// No bound in practice with the default (408 blocks at blksize
    /// 65464); with a port range of 1000 ports, 9 at blksize 65464 and 635
    /// at 1468. 0: not bounded.
    pub port_space: u32,
    /// Key of the hash that finds a client's transfers in O(1); a driver
    /// sets it at random so that clients cannot choose colliding addresses.
    pub hash_key: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            timeout: Duration::from_secs(1),
            max_retries: 5,
            max_blksize: MAX_BLKSIZE,
            max_windowsize: 64,
            rollover: Rollover::ToZero,
            max_transfers: usize::MAX,
            max_per_client: 16,
            allow_write: false,
            max_write_size: None,
            max_timeout: Duration::from_secs(5),
            validate_by_port: true,
            port_space: 28232,
            hash_key: 0x243f_6a88_85a3_08d3,
        }
    }
}

/// No slot (end of a free list or of a hash chain).
const NONE: u32 = u32::MAX;

/// Bytes a blind spoofer may draw per byte it sends, at most (the RFC 1350
/// answer to a short RRQ, one 516-byte DATA, is about 27 times larger).
const MAX_AMPLIFICATION: u64 = 30;
/// IPv4 and UDP headers: what a datagram costs on the wire beyond its
/// payload.
const HEADERS: u64 = 28;

/// Identifies one transfer inside a [`Server`]. Stale handles (of removed
/// transfers) are detected and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferHandle {
    index: u32,
    generation: u32,
}

impl TransferHandle {
    /// The slot index (stable while the transfer lives; handy as a token).
    pub fn index(&self) -> usize {
        self.index as usize
    }
}

/// Direction of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// RRQ: the client downloads.
    Read,
    /// WRQ: the client uploads.
    Write,
}

/// A validated request waiting for the application's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming<'a> {
    /// The client's address and port (its transfer identifier).
    pub peer: SocketAddrV4,
    /// The endpoint the request arrived on (the listening socket's).
    pub local: SocketAddrV4,
    /// Read or write.
    pub direction: Direction,
    /// The validated path (leading `/` stripped).
    pub path: ValidPath<'a>,
    /// Transfer mode.
    pub mode: Mode,
    /// Options the client asked for (invalid ones already dropped).
    pub options: OptionSet,
    received: Instant,
}

/// Why the engine refused a request by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The datagram did not parse as a request.
    Malformed,
    /// The path is hostile or invalid.
    Path(PathError),
    /// Write requests are disabled.
    WriteDisabled,
    /// The announced upload size exceeds the limit.
    TooLarge,
    /// `mail` mode is not served.
    Mode,
    /// Too many transfers in total.
    Busy,
    /// Too many transfers for this client address.
    ClientBusy,
    /// Refused by the application ([`Server::refuse`]).
    Application,
}

enum Kind<F, W> {
    Read(ReadTransfer<F>),
    Write(WriteTransfer<W>),
}

/// The work lists a slot can be on (bits of [`Slot::queued`]).
const READY: usize = 0;
const HINT: usize = 1;
const EVENTS: usize = 2;
const LISTS: usize = 3;

/// One slot of transfer storage; give [`Server::new`] an array or a `Vec`
/// of them (its length caps concurrent transfers).
pub struct Slot<F, W> {
    generation: u32,
    entry: Option<Entry<F, W>>,
    /// Next free slot (when free) or next slot in the same hash chain.
    link: u32,
    /// First slot of the hash chain of bucket number = this slot's index.
    head: u32,
    /// Next slot on each work list.
    next: [u32; LISTS],
    /// Which work lists the slot is on (bit per list).
    queued: u8,
    /// The timer heap's cell at position = this slot's index.
    heap: u32,
    /// This slot's position in the timer heap.
    heap_pos: u32,
    /// The deadline the heap orders this slot by (never later than the
    /// transfer's own).
    deadline: Instant,
}

impl<F, W> Slot<F, W> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot {
            generation: 0,
            entry: None,
            link: NONE,
            head: NONE,
            next: [NONE; LISTS],
            queued: 0,
            heap: NONE,
            heap_pos: deadlines::ABSENT,
            deadline: Instant::ZERO,
        }
    }
}

impl<F, W> Default for Slot<F, W> {
    fn default() -> Self {
        Slot::new()
    }
}

impl<F, W> deadlines::Cells for [Slot<F, W>] {
    fn at(&self, k: u32) -> u32 {
        self[k as usize].heap
    }
    fn set_at(&mut self, k: u32, slot: u32) {
        self[k as usize].heap = slot;
    }
    fn pos(&self, slot: u32) -> u32 {
        self[slot as usize].heap_pos
    }
    fn set_pos(&mut self, slot: u32, k: u32) {
        self[slot as usize].heap_pos = k;
    }
    fn key(&self, slot: u32) -> Instant {
        self[slot as usize].deadline
    }
    fn set_key(&mut self, slot: u32, at: Instant) {
        self[slot as usize].deadline = at;
    }
}

struct Entry<F, W> {
    peer: SocketAddrV4,
    /// The transfer's own endpoint (its port, RFC 1350 §4; the listening
    /// one in single-port mode).
    local: SocketAddrV4,
    /// Sent something since its file was last given a read-ahead hint.
    sent: bool,
    kind: Kind<F, W>,
}

impl<F: ReadAt, W: WriteAt> Entry<F, W> {
    fn deadline(&self) -> Option<Instant> {
        match &self.kind {
            Kind::Read(t) => t.poll_timeout(),
            Kind::Write(t) => t.rx.deadline,
        }
    }

    fn blksize(&self) -> u16 {
        match &self.kind {
            Kind::Read(t) => t.neg.blksize,
            Kind::Write(t) => t.neg.blksize,
        }
    }

    fn pop_event(&mut self) -> Option<Event> {
        match &mut self.kind {
            Kind::Read(t) => t.events.pop(),
            Kind::Write(t) => t.events.pop(),
        }
    }

    fn has_events(&self) -> bool {
        match &self.kind {
            Kind::Read(t) => !t.events.is_empty(),
            Kind::Write(t) => !t.events.is_empty(),
        }
    }
}

/// What happened, for logs and metrics ([`Server::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// Something happened in a transfer.
    Transfer {
        /// Which transfer.
        transfer: TransferHandle,
        /// Its client.
        peer: SocketAddrV4,
        /// Its own endpoint.
        local: SocketAddrV4,
        /// What happened.
        event: Event,
    },
    /// The transfer ended and its last event was polled: its slot is free
    /// and its handle stale. A driver with a socket per transfer closes
    /// the one bound to `local`.
    Closed {
        /// Which transfer.
        transfer: TransferHandle,
        /// Its client.
        peer: SocketAddrV4,
        /// Its own endpoint.
        local: SocketAddrV4,
    },
    /// The engine refused a request by itself; the ERROR is queued.
    Refused {
        /// The client.
        peer: SocketAddrV4,
        /// The endpoint the request arrived on.
        local: SocketAddrV4,
        /// The code sent.
        code: ErrorCode,
        /// Why.
        reason: RefuseReason,
    },
}

/// A head and a tail of one work list threaded through the slots.
#[derive(Debug, Clone, Copy)]
struct WorkList {
    head: u32,
    tail: u32,
}

const LISTENER_QUEUE: usize = 16;

/// An ERROR queued for a request: (sent from, to, code).
type Refusal = (SocketAddrV4, SocketAddrV4, ErrorCode);

/// The server engine; see the module docs for how to drive it.
pub struct Server<F, W, S> {
    config: ServerConfig,
    slots: S,
    active: usize,
    /// First free slot: finding one is O(1).
    free: u32,
    lists: [WorkList; LISTS],
    timers: deadlines::Heap,
    refusals: [Option<Refusal>; LISTENER_QUEUE],
    refused: [Option<ServerEvent>; LISTENER_QUEUE],
    /// Entries in `refusals` and `refused` (the hot paths skip both when
    /// nothing was refused).
    pending_refusals: u8,
    _marker: core::marker::PhantomData<(F, W)>,
}

impl<F: ReadAt, W: WriteAt, S: AsRef<[Slot<F, W>]> + AsMut<[Slot<F, W>]>> Server<F, W, S> {
    /// The largest datagram the engine sends: a DATA block of the largest
    /// `blksize` (RFC 2348). A transfer needs `4 + max(blksize, 512)`
    /// bytes of buffer (the 512 for its OACK and ERRORs).
    pub const MAX_DATAGRAM: usize = DATA_HEADER_LEN + MAX_BLKSIZE as usize;

    /// A server with these settings and transfer slots (at most
    /// `u32::MAX - 1` are used). Finding a free slot and a client's
    /// transfers takes O(1) (a free list and a hash on the client address
    /// threaded through the slots), however many slots there are; the
    /// earliest deadline is found in O(1) too (a heap in the slots).
    pub fn new(config: ServerConfig, mut slots: S) -> Self {
        let all = slots.as_mut();
        let n = all.len().min(NONE as usize - 1);
        let mut free = NONE;
        for i in (0..n).rev() {
            all[i] = Slot::new();
            all[i].link = free;
            free = i as u32;
        }
        Server {
            config,
            slots,
            active: 0,
            free,
            lists: [WorkList {
                head: NONE,
                tail: NONE,
            }; LISTS],
            timers: deadlines::Heap::default(),
            refusals: [None; LISTENER_QUEUE],
            refused: [None; LISTENER_QUEUE],
            pending_refusals: 0,
            _marker: core::marker::PhantomData,
        }
    }

    /// The number of hash buckets (one per usable slot).
    fn buckets(&self) -> usize {
        self.slots.as_ref().len().min(NONE as usize - 1)
    }

    /// The bucket of a client address (keyed: see [`ServerConfig::hash_key`]).
    fn bucket(&self, ip: core::net::Ipv4Addr) -> usize {
        // splitmix64's finaliser over the keyed address.
        let mut z = u64::from(u32::from(ip)) ^ self.config.hash_key;
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % self.buckets().max(1) as u64) as usize
    }

    /// Threads slot `index` into the hash chain of `peer`'s address.
    fn link(&mut self, index: u32, peer: SocketAddrV4) {
        let b = self.bucket(*peer.ip());
        let slots = self.slots.as_mut();
        slots[index as usize].link = slots[b].head;
        slots[b].head = index;
    }

    /// Takes slot `index` out of the hash chain of `peer`'s address.
    fn unlink(&mut self, index: u32, peer: SocketAddrV4) {
        let b = self.bucket(*peer.ip());
        let slots = self.slots.as_mut();
        let next = slots[index as usize].link;
        if slots[b].head == index {
            slots[b].head = next;
            return;
        }
        let mut at = slots[b].head;
        while at != NONE {
            let link = slots[at as usize].link;
            if link == index {
                slots[at as usize].link = next;
                return;
            }
            at = link;
        }
    }

    /// The slots in use by clients hashed like `ip` (all of `ip`'s).
    fn chain(&self, ip: core::net::Ipv4Addr) -> impl Iterator<Item = (u32, &Entry<F, W>)> + '_ {
        let slots = self.slots.as_ref();
        let mut at = if slots.is_empty() {
            NONE
        } else {
            slots[self.bucket(ip)].head
        };
        core::iter::from_fn(move || {
            while at != NONE {
                let i = at;
                let slot = &slots[i as usize];
                at = slot.link;
                if let Some(e) = slot.entry.as_ref() {
                    return Some((i, e));
                }
            }
            None
        })
    }

    /// Appends slot `i` to work list `list` (once).
    fn push(&mut self, list: usize, i: u32) {
        let bit = 1u8 << list;
        let slots = self.slots.as_mut();
        if slots[i as usize].queued & bit != 0 {
            return;
        }
        slots[i as usize].queued |= bit;
        slots[i as usize].next[list] = NONE;
        let l = &mut self.lists[list];
        if l.tail == NONE {
            l.head = i;
        } else {
            slots[l.tail as usize].next[list] = i;
        }
        l.tail = i;
    }

    /// Takes the first slot off work list `list`.
    fn pop(&mut self, list: usize) -> Option<u32> {
        let i = self.lists[list].head;
        if i == NONE {
            return None;
        }
        let slot = &mut self.slots.as_mut()[i as usize];
        slot.queued &= !(1u8 << list);
        let next = slot.next[list];
        let l = &mut self.lists[list];
        l.head = next;
        if next == NONE {
            l.tail = NONE;
        }
        Some(i)
    }

    /// After slot `i`'s transfer changed: its deadline moves in the
    /// heap; its events or its end are to be polled.
    fn touch(&mut self, i: u32) {
        let Some(e) = self.slots.as_ref()[i as usize].entry.as_ref() else {
            return;
        };
        let done = entry_done(e);
        let report = done || e.has_events();
        let deadline = if done { None } else { e.deadline() };
        self.timers.set(self.slots.as_mut(), i, deadline);
        if report {
            self.push(EVENTS, i);
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Transfers in progress.
    pub fn active(&self) -> usize {
        self.active
    }

    fn queue_refusal(&mut self, local: SocketAddrV4, peer: SocketAddrV4, code: ErrorCode) {
        // Bounded: when full the request goes unanswered and the client
        // retries.
        if let Some(slot) = self.refusals.iter_mut().find(|s| s.is_none()) {
            *slot = Some((local, peer, code));
            self.pending_refusals += 1;
        }
    }

    fn refused<'a>(
        &mut self,
        dg: &Datagram<'_>,
        code: ErrorCode,
        reason: RefuseReason,
    ) -> Option<Incoming<'a>> {
        self.queue_refusal(dg.local, dg.remote, code);
        if let Some(slot) = self.refused.iter_mut().find(|s| s.is_none()) {
            self.pending_refusals += 1;
            *slot = Some(ServerEvent::Refused {
                peer: dg.remote,
                local: dg.local,
                code,
                reason,
            });
        }
        None
    }

    /// Feeds one received datagram ([engine contract](crate::engine)).
    ///
    /// A datagram from a transfer's client to that transfer's endpoint
    /// (`local`) goes to the transfer. Anything else is taken as a request
    /// that arrived at `local` (the listening port): a new, valid read or
    /// write request is returned for the application to
    /// [accept](Server::accept_read) or [refuse](Server::refuse); an
    /// invalid one is refused here (an ERROR is queued, and a
    /// [`ServerEvent::Refused`] says why); a repeat of a request being
    /// served, and datagrams that are not requests, are ignored.
    pub fn handle<'a>(&mut self, now: Instant, dg: Datagram<'a>) -> Option<Incoming<'a>> {
        let found = self
            .chain(*dg.remote.ip())
            .find(|(_, e)| e.peer == dg.remote && e.local == dg.local)
            .map(|(i, _)| i);
        match found {
            Some(i) => {
                self.feed(i, now, dg.payload);
                None
            }
            None => self.request(now, dg),
        }
    }

    fn feed(&mut self, i: u32, now: Instant, datagram: &[u8]) {
        let Some(e) = self.slots.as_mut()[i as usize].entry.as_mut() else {
            return;
        };
        let Ok(repr) = Repr::parse_bytes(datagram) else {
            return;
        };
        if let Kind::Read(t) = &mut e.kind {
            // From the peer (or a spoofer): pays for one datagram while the
            // peer is unvalidated.
            t.on_datagram();
        }
        match (&mut e.kind, repr) {
            (Kind::Read(t), Repr::Ack { block }) => t.on_ack(now, block),
            (Kind::Read(t), Repr::Error { code, .. }) => t.on_error(code),
            (Kind::Write(t), Repr::Data { block, data }) => t.on_data(now, block, data),
            (Kind::Write(t), Repr::Error { code, .. }) => t.on_error(code),
            _ => {}
        }
        self.push(READY, i);
        self.touch(i);
    }

    fn request<'a>(&mut self, now: Instant, dg: Datagram<'a>) -> Option<Incoming<'a>> {
        let from = dg.remote;
        let (direction, req) = match Repr::parse_bytes(dg.payload) {
            Ok(Repr::Rrq(r)) => (Direction::Read, r),
            Ok(Repr::Wrq(r)) => (Direction::Write, r),
            // ERRORs are never answered (RFC 1350 §7); stray DATA/ACK/OACK
            // (a client answering a refusal sent from this port) neither:
            // answering could start an error ping-pong.
            Ok(_) => return None,
            Err(_) => {
                return self.refused(&dg, ErrorCode::IllegalOperation, RefuseReason::Malformed);
            }
        };
        let repeat = self
            .chain(*from.ip())
            .find(|(_, e)| e.peer == from && !entry_done(e))
            .map(|(i, _)| i);
        if let Some(i) = repeat {
            // A retransmitted request: the transfer already answers it. The
            // datagram pays for one re-send to a peer not yet validated,
            // which may leave now.
            if let Some(Entry {
                kind: Kind::Read(t),
                ..
            }) = self.slots.as_mut()[i as usize].entry.as_mut()
            {
                t.on_datagram();
                self.push(READY, i);
            }
            return None;
        }
        let path = match ValidPath::new(req.filename) {
            Ok(p) => p,
            Err(e) => {
                return self.refused(&dg, ErrorCode::AccessViolation, RefuseReason::Path(e));
            }
        };
        if req.mode == Mode::Mail {
            return self.refused(&dg, ErrorCode::IllegalOperation, RefuseReason::Mode);
        }
        let options = req.options.to_set();
        if direction == Direction::Write {
            if !self.config.allow_write {
                return self.refused(&dg, ErrorCode::AccessViolation, RefuseReason::WriteDisabled);
            }
            if let (Some(limit), Some(size)) = (self.config.max_write_size, options.tsize) {
                if size > limit {
                    return self.refused(&dg, ErrorCode::DiskFull, RefuseReason::TooLarge);
                }
            }
        }
        if let Err(reason) = self.check_limits(from) {
            return self.refused(&dg, ErrorCode::NotDefined, reason);
        }
        Some(Incoming {
            peer: from,
            local: dg.local,
            direction,
            path,
            mode: req.mode,
            options,
            received: now,
        })
    }

    fn check_limits(&self, from: SocketAddrV4) -> Result<usize, RefuseReason> {
        if self.active >= self.config.max_transfers {
            return Err(RefuseReason::Busy);
        }
        let per_client = self
            .chain(*from.ip())
            .filter(|(_, e)| e.peer.ip() == from.ip())
            .take(self.config.max_per_client)
            .count();
        if per_client >= self.config.max_per_client {
            return Err(RefuseReason::ClientBusy);
        }
        if self.free == NONE {
            return Err(RefuseReason::Busy);
        }
        Ok(self.free as usize)
    }

    fn negotiate(
        &self,
        incoming: &Incoming<'_>,
        size: Option<u64>,
    ) -> (Negotiated, Option<OptionSet>) {
        let req = incoming.options;
        let mut grant = OptionSet::default();
        let mut neg = Negotiated {
            timeout: self.config.timeout,
            ..Negotiated::default()
        };
        if let Some(b) = req.blksize {
            let b = b.min(self.config.max_blksize).max(8);
            grant.blksize = Some(b);
            neg.blksize = b;
        }
        if let Some(t) = req.timeout {
            let asked = Duration::from_secs(u64::from(t));
            // Above the cap: omitted from the OACK, our own timeout runs.
            if asked <= self.config.max_timeout {
                grant.timeout = Some(t);
                neg.timeout = asked;
            }
        }
        if let Some(ts) = req.tsize {
            match incoming.direction {
                // netascii sizes differ on the wire; not offered.
                Direction::Read if incoming.mode == Mode::Octet => {
                    grant.tsize = size;
                    neg.tsize = size;
                }
                Direction::Read => {}
                Direction::Write => {
                    grant.tsize = Some(ts);
                    neg.tsize = Some(ts);
                }
            }
        }
        if let Some(w) = req.windowsize {
            // Without validation a window could never be sent (one datagram
            // per datagram received): not granted.
            let windows = self.config.max_windowsize > 1 && self.config.validate_by_port;
            if incoming.mode == Mode::Octet && windows {
                // Keep ACK numbers unambiguous across a wrap.
                let w = w
                    .min(self.config.max_windowsize)
                    .min(32768)
                    .min(self.spray_window(neg.blksize));
                grant.windowsize = Some(w);
                neg.windowsize = w;
            }
        }
        neg.oack = !grant.is_empty();
        (neg, neg.oack.then_some(grant))
    }

    /// The largest window a port-spraying spoofer may open (see
    /// [`ServerConfig::port_space`]).
    fn spray_window(&self, blksize: u16) -> u16 {
        if self.config.port_space == 0 {
            return u16::MAX;
        }
        let spray = MAX_AMPLIFICATION * (4 + HEADERS) * u64::from(self.config.port_space);
        let blocks = spray / (u64::from(blksize) + 4 + HEADERS);
        blocks
            .saturating_sub(u64::from(self.config.max_retries))
            .clamp(1, u64::from(u16::MAX)) as u16
    }

    fn insert(
        &mut self,
        incoming: &Incoming<'_>,
        local: SocketAddrV4,
        kind: Kind<F, W>,
    ) -> Result<TransferHandle, ErrorCode> {
        let peer = incoming.peer;
        let index = match self.check_limits(peer) {
            Ok(i) => i,
            Err(_) => {
                self.queue_refusal(incoming.local, peer, ErrorCode::NotDefined);
                return Err(ErrorCode::NotDefined);
            }
        };
        let slot = &mut self.slots.as_mut()[index];
        self.free = slot.link;
        slot.generation = slot.generation.wrapping_add(1);
        slot.entry = Some(Entry {
            peer,
            local,
            sent: false,
            kind,
        });
        let generation = slot.generation;
        self.link(index as u32, peer);
        self.active += 1;
        self.push(READY, index as u32);
        self.touch(index as u32);
        Ok(TransferHandle {
            index: index as u32,
            generation,
        })
    }

    /// Accepts a read request with the opened `file`; the transfer speaks
    /// from `local` (the address of the socket the driver gave it — a new
    /// port, RFC 1350 §4 — or the listening one in single-port mode).
    /// Fails (and queues an ERROR) only if the limits were reached since
    /// the request arrived.
    pub fn accept_read(
        &mut self,
        now: Instant,
        incoming: &Incoming<'_>,
        file: F,
        local: SocketAddrV4,
    ) -> Result<TransferHandle, ErrorCode> {
        let (neg, oack) = self.negotiate(incoming, Some(file.size()));
        let start = incoming.received.min(now);
        let t = ReadTransfer::new(
            start,
            file,
            neg,
            oack,
            incoming.mode == Mode::Netascii,
            SendConfig {
                rollover: self.config.rollover,
                max_retries: self.config.max_retries,
                validate_by_port: self.config.validate_by_port,
                server_timeout: self.config.timeout,
            },
        );
        self.insert(incoming, local, Kind::Read(t))
    }

    /// Accepts a write request into `sink`, speaking from `local` (see
    /// [`Server::accept_read`]).
    pub fn accept_write(
        &mut self,
        now: Instant,
        incoming: &Incoming<'_>,
        sink: W,
        local: SocketAddrV4,
    ) -> Result<TransferHandle, ErrorCode> {
        let (neg, oack) = self.negotiate(incoming, None);
        let t = WriteTransfer::new(
            now,
            sink,
            neg,
            oack,
            &self.config,
            incoming.mode == Mode::Netascii,
        );
        self.insert(incoming, local, Kind::Write(t))
    }

    /// Refuses a request: queues ERROR `code` to the client, sent from
    /// where the request arrived.
    pub fn refuse(&mut self, incoming: &Incoming<'_>, code: ErrorCode) {
        self.queue_refusal(incoming.local, incoming.peer, code);
    }

    /// The options a request would be granted, before it is accepted (a
    /// driver sizes the transfer's socket buffers by them); `size` is the
    /// file's for a read.
    pub fn would_negotiate(&self, incoming: &Incoming<'_>, size: Option<u64>) -> Negotiated {
        self.negotiate(incoming, size).0
    }

    fn entry(&self, h: TransferHandle) -> Option<&Entry<F, W>> {
        let slot = self.slots.as_ref().get(h.index as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    /// The client of a transfer.
    pub fn peer(&self, h: TransferHandle) -> Option<SocketAddrV4> {
        self.entry(h).map(|e| e.peer)
    }

    /// The endpoint a transfer speaks from.
    pub fn local(&self, h: TransferHandle) -> Option<SocketAddrV4> {
        self.entry(h).map(|e| e.local)
    }

    /// The options in force for a transfer.
    pub fn negotiated(&self, h: TransferHandle) -> Option<Negotiated> {
        self.entry(h).map(|e| match &e.kind {
            Kind::Read(t) => t.neg,
            Kind::Write(t) => t.neg,
        })
    }

    /// Writes the next datagram to send into `buf` ([engine
    /// contract](crate::engine)): refusals first (from the port the request
    /// came to), then the transfers with something to send, each drained
    /// before the next (so a window's blocks come one after another, from
    /// one `local`, ready to be sent as one batch). A transfer needs
    /// `4 + max(blksize, 512)` bytes; with less, [`BufferTooSmall`] and
    /// nothing is lost. After sending what it gave, call
    /// [`Server::read_ahead`].
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        if let Some(t) = self.poll_refusal(buf)? {
            return Ok(Some(t));
        }
        loop {
            let i = self.lists[READY].head;
            if i == NONE {
                return Ok(None);
            }
            let Some(e) = self.slots.as_mut()[i as usize].entry.as_mut() else {
                self.pop(READY);
                continue;
            };
            let needed = DATA_HEADER_LEN + usize::from(e.blksize().max(512));
            if buf.len() < needed {
                return Err(BufferTooSmall { needed });
            }
            let sent = match &mut e.kind {
                Kind::Read(t) => t.poll_transmit(now, buf),
                Kind::Write(t) => t.poll_transmit(now, buf),
            };
            match sent {
                Some(len) => {
                    e.sent = true;
                    let (local, remote) = (e.local, e.peer);
                    self.touch(i);
                    return Ok(Some(Transmit {
                        local: Some(local),
                        remote,
                        len,
                        broadcast: false,
                        after_sync: false,
                    }));
                }
                None => {
                    let hint = core::mem::take(&mut e.sent);
                    self.pop(READY);
                    if hint {
                        self.push(HINT, i);
                    }
                    self.touch(i);
                }
            }
        }
    }

    fn poll_refusal(&mut self, buf: &mut [u8]) -> Result<Option<Transmit>, BufferTooSmall> {
        if self.pending_refusals == 0 {
            return Ok(None);
        }
        for slot in self.refusals.iter_mut() {
            let Some((local, peer, code)) = *slot else {
                continue;
            };
            let repr = Repr::error(code);
            let needed = repr.buffer_len();
            if buf.len() < needed {
                return Err(BufferTooSmall { needed });
            }
            *slot = None;
            self.pending_refusals -= 1;
            if let Ok(len) = repr.emit(buf) {
                return Ok(Some(Transmit {
                    local: Some(local),
                    remote: peer,
                    len,
                    broadcast: false,
                    after_sync: false,
                }));
            }
        }
        Ok(None)
    }

    /// Tells the files of the transfers that just sent which bytes they
    /// will probably be asked for next ([`ReadAt::read_ahead`]); call it
    /// after sending what [`Server::poll_transmit`] gave.
    ///
    /// Hints only in octet read transfers, and only while a next block
    /// exists: the window after the one just sent, `windowsize * blksize`
    /// bytes at `(block - 1) * blksize`; in lock-step that is one block.
    /// Never after the last (short) block has been sent, never in netascii
    /// (the block's file offset depends on the encoding of the one
    /// before). Calling it at any other time, or not at all, is harmless:
    /// it only gives hints.
    pub fn read_ahead(&mut self) {
        while let Some(i) = self.pop(HINT) {
            if let Some(Entry {
                kind: Kind::Read(t),
                ..
            }) = self.slots.as_mut()[i as usize].entry.as_mut()
            {
                if let Some((offset, len)) = t.next_read() {
                    t.file.read_ahead(offset, len);
                }
            }
        }
    }

    /// When [`Server::handle_timeout`] is next due: the earliest
    /// deadline of all transfers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek(self.slots.as_ref()).map(|(t, _)| t)
    }

    /// Lets the transfers whose timers are due act (retransmit or give
    /// up); a spurious call is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Each transfer fires at most once per call (a timer re-arms in
        // the future; the bound only guards that).
        for _ in 0..self.buckets() {
            let Some((at, i)) = self.timers.peek(self.slots.as_ref()) else {
                return;
            };
            if at > now {
                return;
            }
            if let Some(e) = self.slots.as_mut()[i as usize].entry.as_mut() {
                match &mut e.kind {
                    Kind::Read(t) => t.handle_timeout(now),
                    Kind::Write(t) => t.handle_timeout(now),
                }
            }
            self.push(READY, i);
            self.touch(i);
            if self.timers.peek(self.slots.as_ref()) == Some((at, i)) {
                // Did not move: leave it to the next call.
                self.timers.set(self.slots.as_mut(), i, None);
            }
        }
    }

    /// The next event ([engine contract](crate::engine)). A transfer's
    /// last event is followed by [`ServerEvent::Closed`], which frees its
    /// slot: drain this, or ended transfers keep their slots.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        if self.pending_refusals > 0 {
            if let Some(ev) = self.refused.iter_mut().find_map(Option::take) {
                self.pending_refusals -= 1;
                return Some(ev);
            }
        }
        loop {
            let i = self.lists[EVENTS].head;
            if i == NONE {
                return None;
            }
            let generation = self.slots.as_ref()[i as usize].generation;
            let Some(e) = self.slots.as_mut()[i as usize].entry.as_mut() else {
                self.pop(EVENTS);
                continue;
            };
            let transfer = TransferHandle {
                index: i,
                generation,
            };
            let (peer, local) = (e.peer, e.local);
            if let Some(event) = e.pop_event() {
                return Some(ServerEvent::Transfer {
                    transfer,
                    peer,
                    local,
                    event,
                });
            }
            let done = entry_done(e);
            self.pop(EVENTS);
            if done {
                self.free_slot(i);
                return Some(ServerEvent::Closed {
                    transfer,
                    peer,
                    local,
                });
            }
        }
    }

    /// True when the transfer has nothing left to send or wait for (its
    /// final events may still be pending); stale handles count as finished.
    pub fn is_finished(&self, h: TransferHandle) -> bool {
        self.entry(h).is_none_or(entry_done)
    }

    /// True once the transfer's peer proved it receives our datagrams
    /// (see [`ServerConfig::validate_by_port`]); write transfers, whose
    /// answers are no larger than what they answer, count as validated.
    pub fn validated(&self, h: TransferHandle) -> bool {
        self.entry(h).is_some_and(|e| match &e.kind {
            Kind::Read(t) => t.validated(),
            Kind::Write(_) => true,
        })
    }

    /// Frees slot `index` (dropping its file or sink). Work lists may
    /// still name it: they skip empty slots, and a slot reused meanwhile
    /// is only looked at once more than needed.
    fn free_slot(&mut self, index: u32) {
        let Some(entry) = self.slots.as_mut()[index as usize].entry.take() else {
            return;
        };
        self.timers.set(self.slots.as_mut(), index, None);
        self.unlink(index, entry.peer);
        let free = self.free;
        self.slots.as_mut()[index as usize].link = free;
        self.free = index;
        self.active -= 1;
    }

    /// Handles of all transfers.
    pub fn handles(&self) -> impl Iterator<Item = TransferHandle> + '_ {
        self.slots
            .as_ref()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.entry.is_some())
            .map(|(i, s)| TransferHandle {
                index: i as u32,
                generation: s.generation,
            })
    }
}

fn entry_done<F: ReadAt, W: WriteAt>(e: &Entry<F, W>) -> bool {
    match &e.kind {
        Kind::Read(t) => t.is_done(),
        Kind::Write(t) => t.is_done(),
    }
}

/// A server write transfer (WRQ): the shared receiver plus the OACK and
/// ACK 0 that start it.
struct WriteTransfer<W> {
    sink: W,
    neg: Negotiated,
    oack: Option<OptionSet>,
    rx: Receiver,
    error_due: Option<ErrorCode>,
    failed: bool,
    start: Instant,
    events: EventQueue,
}

impl<W: WriteAt> WriteTransfer<W> {
    fn new(
        now: Instant,
        sink: W,
        neg: Negotiated,
        oack: Option<OptionSet>,
        config: &ServerConfig,
        netascii: bool,
    ) -> Self {
        let mut rx = Receiver::new(
            neg.blksize,
            neg.windowsize,
            config.rollover,
            neg.timeout,
            config.max_retries,
            netascii,
        );
        // The first "ACK" (ACK 0 or the OACK) starts the upload.
        rx.ack_due = true;
        let mut events = EventQueue::default();
        events.started(neg);
        WriteTransfer {
            sink,
            neg,
            oack,
            rx,
            error_due: None,
            failed: false,
            start: now,
            events,
        }
    }

    fn is_done(&self) -> bool {
        self.error_due.is_none() && (self.failed || self.rx.state == RxState::Done)
    }

    fn fail(&mut self, reason: FailReason, send: Option<ErrorCode>) {
        if self.failed {
            return;
        }
        self.failed = true;
        self.error_due = send;
        self.rx.state = RxState::Done;
        self.rx.deadline = None;
        self.events.end(Event::Failed {
            reason,
            bytes: self.rx.bytes,
        });
    }

    fn on_data(&mut self, now: Instant, block: u16, data: &[u8]) {
        if self.failed {
            return;
        }
        let outcome = self.rx.on_data(now, block, data, &mut self.sink);
        if let Some((reason, send)) =
            outcome.record(self.rx.bytes, self.start, now, &mut self.events)
        {
            self.fail(reason, send);
        }
    }

    fn on_error(&mut self, code: ErrorCode) {
        if self.rx.state == RxState::Receiving {
            self.fail(FailReason::PeerError(code), None);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if !self.failed && !self.rx.on_timeout(now) {
            self.fail(FailReason::TimedOut, None);
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some(code) = self.error_due.take() {
            return Repr::error(code).emit(buf).ok();
        }
        let block = self.rx.poll_ack(now)?;
        let repr = match (self.rx.next, self.oack) {
            (1, Some(set)) => Repr::Oack {
                options: Options::Set(set),
            },
            _ => Repr::Ack { block },
        };
        repr.emit(buf).ok()
    }
}
