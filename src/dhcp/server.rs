//! The DHCP / proxyDHCP / PXE boot server engine.
//!
//! RFC 2131 §4.3 (server behaviour), PXE 2.1 §2.2 (proxyDHCP and boot server
//! discovery), RFC 4578 (client architecture), RFC 3046 (relay agent
//! information), RFC 4361 (client identifier).
//!
//! # How to drive it
//!
//! The [engine contract](crate::engine):
//!
//! 1. For every datagram received on port 67 or 4011, call
//!    [`Server::handle`] with the time and the [`Datagram`]: its `local`
//!    (the receiving socket's bound address) tells the boot server port
//!    ([`ServerConfig::boot_port`], 4011) from the DHCP port (any other).
//! 2. Drain [`Server::poll_lease_update`] into the lease store (full mode),
//!    then [`Server::poll_transmit`] (a buffer of [`Server::MAX_DATAGRAM`]
//!    bytes) into the sockets: each [`Transmit`] leaves from the socket
//!    whose address is its `local` (the one the request came in on); one
//!    with [`Transmit::after_sync`] goes out only after the store synced.
//! 3. Drain [`Server::poll_event`] for logs and metrics.
//!
//! The server has no timers (leases expire lazily: an expired address is
//! reused when the allocator meets it), so [`Server::poll_timeout`] is always
//! `None`; calling [`Server::handle_timeout`] is harmless.
//!
//! Per-client state is bounded: proxy mode keeps none at all, full mode one
//! table entry per pool address, and per-client token buckets (on the
//! hardware address and on the client identifier, [`super::rate`]) stop
//! one client's flood from starving the others.
//!
//! Where answers go (RFC 2131 §4.1, PXE 2.1 §2.2.2): to `giaddr`:67 when
//! relayed; to `ciaddr`:68 when the client has an address; else broadcast
//! (a userspace UDP server cannot address a client by MAC before it has an
//! address, so the "unicast to yiaddr" case is sent as broadcast, which
//! every client accepts); a NAK without relay is always broadcast; an answer
//! on port 4011 goes back to the request's source address and port (iPXE
//! sends from 68, OVMF from 4011).

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use heapless::Deque;

use crate::Instant;

use super::arch::{BootArch, ClientKind};
use super::config::{
    BootEntry, BootFileName, MenuPolicy, Mode, Pool, ReservationKey, ServerConfig,
};
use super::leases::{ClientKey, Lease, LeaseState, LeaseTable, PoolCursor};
use super::rate::RateLimiter;
use super::request::Request;
use super::store::{LeaseRecord, RecordKind};
use super::{Error, HwAddr};
use crate::engine::{BufferTooSmall, Datagram, Transmit};
use crate::wire::dhcp::MessageType;

/// The DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// The DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// The PXE boot server port.
pub const BOOT_SERVER_PORT: u16 = 4011;

/// Answers waiting for `poll_transmit`.
const PENDING: usize = 4;
/// Events waiting for `poll_event`.
const EVENTS: usize = 32;
/// Lease records waiting for `poll_lease_update`.
const UPDATES: usize = 16;

/// Why a message got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IgnoreReason {
    /// Not a well-formed DHCP/BOOTP request.
    Malformed,
    /// A message type this mode does not answer (e.g. REQUEST on 67 in proxy
    /// mode).
    NotForUs,
    /// Not a PXE or HTTP-boot client (proxy mode answers only those).
    NotPxe,
    /// Over the per-client rate limit (per hardware address and per client
    /// identifier).
    RateLimited,
    /// Boot server discovery for a boot item type or layer we do not serve.
    UnknownBootItem,
    /// The client chose another server's offer.
    OtherServer,
    /// No pool serves the client's network.
    NoPool,
    /// The pool has no free address.
    PoolExhausted,
    /// The lease update queue is full (the driver does not drain it).
    StoreBusy,
    /// The answer queue is full (the driver does not drain it).
    Busy,
}

/// What the server did, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A client message passed the rate limit and is being answered (or
    /// ignored, with an [`Event::Ignored`] after it): what a log line and a
    /// directory of clients need, read by the engine's one parse.
    Received {
        /// Client.
        chaddr: HwAddr,
        /// Its architecture (option 93, else the vendor class), if known.
        arch: Option<BootArch>,
        /// A PXE or HTTP-boot client (vendor class `PXEClient`/`HTTPClient`).
        pxe: bool,
        /// The DHCP message type.
        message: MessageType,
        /// Transaction id.
        xid: u32,
        /// The client's own address, when the message shows it: the source
        /// (unless a relay forwarded it), else `ciaddr`, else the address a
        /// REQUEST asks for.
        client_ip: Option<Ipv4Addr>,
    },
    /// A proxy OFFER (proxy mode) on port 67.
    ProxyOffered {
        /// Client.
        chaddr: HwAddr,
        /// Its architecture.
        arch: BootArch,
    },
    /// An ACK from the boot server on port 4011.
    BootAcked {
        /// Client.
        chaddr: HwAddr,
        /// Its architecture.
        arch: BootArch,
        /// Boot item type asked for (option 43 sub-option 71), if any.
        item: Option<u16>,
    },
    /// An address offered (full mode).
    Offered {
        /// Client.
        chaddr: HwAddr,
        /// Address.
        yiaddr: Ipv4Addr,
    },
    /// A lease granted or extended (full mode).
    Acked {
        /// Client.
        chaddr: HwAddr,
        /// Address.
        yiaddr: Ipv4Addr,
    },
    /// An INFORM answered (full mode).
    Informed {
        /// Client.
        chaddr: HwAddr,
    },
    /// A REQUEST refused with NAK (full mode).
    Nak {
        /// Client.
        chaddr: HwAddr,
        /// The address the client wanted.
        requested: Ipv4Addr,
    },
    /// A lease given back (full mode).
    Released {
        /// Client.
        chaddr: HwAddr,
        /// Address.
        addr: Ipv4Addr,
    },
    /// An address declined, put on probation (full mode).
    Declined {
        /// Client.
        chaddr: HwAddr,
        /// Address.
        addr: Ipv4Addr,
    },
    /// A DECLINE ignored: the pool's probation budget
    /// ([`ServerConfig::max_declined_percent`]) is spent. The client's
    /// binding is dropped and the address stays in use for others.
    DeclineIgnored {
        /// Client.
        chaddr: HwAddr,
        /// The address it declined.
        addr: Ipv4Addr,
        /// Addresses of the pool declined within the probation time.
        on_probation: u32,
        /// The budget.
        limit: u32,
    },
    /// A PXE client whose architecture has no boot file: no offer.
    NoBootFile {
        /// Client.
        chaddr: HwAddr,
        /// Its architecture (`None`: it sent none).
        arch: Option<BootArch>,
    },
    /// An answer that cannot be encoded (e.g. a boot menu over the 255
    /// bytes of its PXE sub-option) was dropped; the answers behind it go
    /// out as usual.
    AnswerDropped {
        /// Client.
        chaddr: HwAddr,
        /// Why it cannot be encoded.
        error: Error,
    },
    /// A message dropped without answer.
    Ignored {
        /// Client (all zero when malformed).
        chaddr: HwAddr,
        /// Why.
        reason: IgnoreReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    /// Full-mode OFFER / ACK / NAK / INFORM-ACK.
    Offer,
    Ack,
    Nak,
    InformAck,
    /// proxyDHCP OFFER on 67.
    ProxyOffer,
    /// Boot server ACK on 4011.
    BootAck,
}

/// Everything needed to write one answer.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub req: Request,
    pub kind: ReplyKind,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub file: Option<BootFileName>,
    /// Full mode: the pool whose options go along, and the lease time.
    pub pool: Option<usize>,
    pub lease_time: Option<Duration>,
    /// PXE part: option 60 answer class and option 43 content selector.
    pub pxe_class: Option<ClientKind>,
    pub pxe43: Pxe43,
    pub arch: Option<BootArch>,
    pub mtftp: Option<super::config::MtftpParams>,
    pub destination: SocketAddrV4,
    pub broadcast: bool,
    /// The socket that sends it: the `local` of the request.
    pub local: SocketAddrV4,
    pub after_sync: bool,
}

/// Which option 43 the answer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pxe43 {
    None,
    /// Proxy OFFER: discovery control, boot servers, menu, prompt, MTFTP.
    Offer,
    /// Boot server ACK: sub-option 71 echoed.
    BootItem(u16, u16),
}

/// Time slots over which declines are counted per pool.
const PROBATION_SLOTS: usize = 8;

/// Addresses put on probation in one pool, counted in
/// [`PROBATION_SLOTS`] slots of a seventh of the probation time each: the
/// slots cover more than one probation time, so every address still on
/// probation is counted (an address whose probation ended less than a
/// slot ago may be counted too: the count errs on the safe side).
#[derive(Clone, Copy, Debug, Default)]
struct Probations {
    /// (slot number, declines in it).
    slots: [(u64, u32); PROBATION_SLOTS],
}

impl Probations {
    fn slot(now: Instant, probation: Duration) -> u64 {
        let len = u64::try_from(probation.as_micros() / (PROBATION_SLOTS as u128 - 1))
            .unwrap_or(u64::MAX)
            .max(1);
        now.as_micros() / len
    }

    fn live(&self, now: Instant, probation: Duration) -> u32 {
        let at = Self::slot(now, probation);
        self.slots
            .iter()
            .filter(|(s, n)| *n > 0 && *s <= at && at - s < PROBATION_SLOTS as u64)
            .map(|(_, n)| *n)
            .fold(0u32, u32::saturating_add)
    }

    fn add(&mut self, now: Instant, probation: Duration) {
        let at = Self::slot(now, probation);
        let e = &mut self.slots[(at % PROBATION_SLOTS as u64) as usize];
        if e.0 != at {
            *e = (at, 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

/// The server engine. See the [module docs](self) for how to drive it.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    leases: LeaseTable,
    cursors: [PoolCursor; super::config::MAX_POOLS],
    rate: RateLimiter,
    probations: [Probations; super::config::MAX_POOLS],
    pending: Deque<Pending, PENDING>,
    events: Deque<Event, EVENTS>,
    updates: Deque<LeaseRecord, UPDATES>,
    events_dropped: u64,
    /// The `local` of the datagram being handled.
    local: SocketAddrV4,
}

impl Server {
    /// The largest datagram the server writes ([`super::MAX_DATAGRAM`]):
    /// give [`Server::poll_transmit`] a buffer of at least this size.
    pub const MAX_DATAGRAM: usize = super::MAX_DATAGRAM;

    /// A server with this configuration; checks that it can work.
    pub fn new(config: ServerConfig) -> Result<Self, Error> {
        if config.mode == Mode::Full {
            if config.pools.is_empty() {
                return Err(Error::Config("full mode needs at least one pool"));
            }
            for p in &config.pools {
                if p.prefix_len > 32 {
                    return Err(Error::Config("pool prefix length over 32"));
                }
                if !p.subnet_contains(p.start) || !p.subnet_contains(p.end) {
                    return Err(Error::Config("pool range outside its subnet"));
                }
                if u32::from(p.end) < u32::from(p.start) {
                    return Err(Error::Config("pool range ends before it starts"));
                }
                if p.lease_time.as_secs() == 0 {
                    return Err(Error::Config("pool lease time is zero"));
                }
            }
        }
        if config.server_id.is_unspecified() {
            return Err(Error::Config("server identifier 0.0.0.0"));
        }
        let mut leases = LeaseTable::new();
        if config.mode == Mode::Full {
            for p in &config.pools {
                leases.track_range(p.start, p.end);
            }
        }
        Ok(Server {
            rate: RateLimiter::new(config.rate_limit),
            config,
            leases,
            cursors: [PoolCursor::default(); super::config::MAX_POOLS],
            probations: [Probations::default(); super::config::MAX_POOLS],
            pending: Deque::new(),
            events: Deque::new(),
            updates: Deque::new(),
            events_dropped: 0,
            local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The boot files, to change an entry while the server runs: a
    /// reloaded PXE MTFTP table gives new option 43 sub-options 1–5
    /// ([`BootEntry::mtftp`](super::config::BootEntry::mtftp)) to the
    /// answers that follow.
    pub fn boot_mut(&mut self) -> &mut super::config::BootFiles {
        &mut self.config.boot
    }

    /// The lease table (full mode).
    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    /// Events dropped because nobody drained [`Server::poll_event`].
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Replay one stored lease record (on start, oldest first).
    pub fn restore(&mut self, record: &LeaseRecord) {
        match record.kind {
            RecordKind::Granted => {
                let _ = self.leases.put(Lease {
                    addr: record.addr,
                    client: record.client,
                    expires: record.expires,
                    state: LeaseState::Bound,
                });
            }
            RecordKind::Released => {
                if self
                    .leases
                    .by_addr(record.addr)
                    .is_some_and(|l| l.client == record.client)
                {
                    self.leases.remove(record.addr);
                }
            }
        }
    }

    /// Feed one received datagram. Its `local` port picks the service:
    /// [`ServerConfig::boot_port`] is the boot server, any other DHCP.
    pub fn handle(&mut self, now: Instant, datagram: Datagram<'_>) {
        let from = datagram.remote;
        self.local = datagram.local;
        let boot = datagram.local.port() == self.config.boot_port && self.config.boot_port != 0;
        let Some(req) = super::request::parse(datagram.payload) else {
            self.event(Event::Ignored {
                chaddr: HwAddr::new(&[]),
                reason: IgnoreReason::Malformed,
            });
            return;
        };
        if !self.rate_allows(now, &req) {
            self.ignore(&req, IgnoreReason::RateLimited);
            return;
        }
        let client_ip = [
            Some(*from.ip()).filter(|_| req.giaddr.is_unspecified()),
            Some(req.ciaddr),
            req.requested_ip
                .filter(|_| req.msg_type == MessageType::Request),
        ]
        .into_iter()
        .flatten()
        .find(|ip| !ip.is_unspecified());
        self.event(Event::Received {
            chaddr: req.hw(),
            arch: req.arch,
            pxe: req.kind != ClientKind::Plain,
            message: req.msg_type,
            xid: req.xid,
            client_ip,
        });
        match (boot, self.config.mode, req.msg_type) {
            (true, _, MessageType::Request | MessageType::Inform) => self.boot_request(req, from),
            (false, Mode::Proxy, MessageType::Discover) => self.proxy_discover(req),
            (false, Mode::Full, MessageType::Discover) => self.discover(now, req),
            (false, Mode::Full, MessageType::Request) => self.request(now, req),
            (false, Mode::Full, MessageType::Decline) => self.decline(now, req),
            (false, Mode::Full, MessageType::Release) => self.release(now, req),
            (false, Mode::Full, MessageType::Inform) => self.inform(req, from),
            _ => self.ignore(&req, IgnoreReason::NotForUs),
        }
    }

    /// Write the next answer into `buf` (give it [`Server::MAX_DATAGRAM`]
    /// bytes).
    ///
    /// A too-small buffer leaves the answer queued and `buf` untouched and
    /// returns the error with the size needed. An answer that cannot be
    /// encoded at all is dropped with [`Event::AnswerDropped`] and the next
    /// one is written instead: one bad answer never blocks the queue.
    pub fn poll_transmit(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        while let Some(p) = self.pending.front() {
            match super::reply::emit(&self.config, p, buf) {
                Ok(len) => {
                    let t = Transmit {
                        local: Some(p.local),
                        remote: p.destination,
                        len,
                        broadcast: p.broadcast,
                        after_sync: p.after_sync,
                    };
                    self.pending.pop_front();
                    return Ok(Some(t));
                }
                Err(Error::BufferTooSmall { needed }) => return Err(BufferTooSmall { needed }),
                Err(error) => {
                    let chaddr = p.req.hw();
                    self.pending.pop_front();
                    self.event(Event::AnswerDropped { chaddr, error });
                }
            }
        }
        Ok(None)
    }

    /// The next lease record to persist (full mode).
    pub fn poll_lease_update(&mut self) -> Option<LeaseRecord> {
        self.updates.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The server has no timers: always `None`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Nothing to do (the server has no timers); harmless to call.
    pub fn handle_timeout(&mut self, _now: Instant) {}

    // ---- helpers ----

    /// A token from each bucket that names the client: its hardware
    /// address and its client identifier (the lease's key, so random
    /// `chaddr`s under one identifier stay limited). With `hlen` = 0
    /// (InfiniBand, RFC 4390) only the identifier; with neither, one
    /// bucket shared by all such clients.
    fn rate_allows(&mut self, now: Instant, req: &Request) -> bool {
        use super::rate::{KeyKind, key};
        let hw = req.hw();
        let by_hw = !hw.as_bytes().is_empty() || req.client_id_key.is_none();
        (!by_hw
            || self
                .rate
                .allow_key(now, key(KeyKind::HwAddr, hw.as_bytes())))
            && req
                .client_id_key
                .is_none_or(|k| self.rate.allow_key(now, k))
    }

    fn event(&mut self, e: Event) {
        if self.events.push_back(e).is_err() {
            self.events_dropped += 1;
        }
    }

    fn ignore(&mut self, req: &Request, reason: IgnoreReason) {
        self.event(Event::Ignored {
            chaddr: req.hw(),
            reason,
        });
    }

    fn queue(&mut self, p: Pending) -> bool {
        if self.pending.is_full() {
            self.ignore(&p.req, IgnoreReason::Busy);
            return false;
        }
        let _ = self.pending.push_back(p);
        true
    }

    /// The boot entry for this client, or `None` (with an event) if its
    /// architecture has no file.
    fn boot_entry(&mut self, req: &Request) -> Option<(BootArch, BootEntry)> {
        let entry = req.arch.and_then(|a| {
            if req.is_ipxe {
                if let Some(e) = &self.config.boot.ipxe {
                    return Some((a, e.clone()));
                }
            }
            a.entry(&self.config.boot).map(|e| (a, e.clone()))
        });
        if entry.is_none() {
            self.event(Event::NoBootFile {
                chaddr: req.hw(),
                arch: req.arch,
            });
        }
        entry
    }

    /// Where a port-67 answer goes (RFC 2131 §4.1).
    fn dhcp_destination(req: &Request, kind: ReplyKind) -> (SocketAddrV4, bool) {
        if !req.giaddr.is_unspecified() {
            return (SocketAddrV4::new(req.giaddr, SERVER_PORT), false);
        }
        if kind != ReplyKind::Nak && !req.ciaddr.is_unspecified() {
            return (SocketAddrV4::new(req.ciaddr, CLIENT_PORT), false);
        }
        (SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT), true)
    }

    fn base(&self, req: Request, kind: ReplyKind) -> Pending {
        let (destination, broadcast) = Self::dhcp_destination(&req, kind);
        Pending {
            req,
            kind,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            file: None,
            pool: None,
            lease_time: None,
            pxe_class: None,
            pxe43: Pxe43::None,
            arch: None,
            mtftp: None,
            destination,
            broadcast,
            local: self.local,
            after_sync: false,
        }
    }

    // ---- proxy mode (PXE 2.1 §2.2.2) ----

    fn proxy_discover(&mut self, req: Request) {
        if req.kind == ClientKind::Plain && !self.config.boot_non_pxe {
            self.ignore(&req, IgnoreReason::NotPxe);
            return;
        }
        let Some((arch, entry)) = self.boot_entry(&req) else {
            return;
        };
        let chaddr = req.hw();
        let mut p = self.base(req, ReplyKind::ProxyOffer);
        p.siaddr = entry.server.unwrap_or(self.config.tftp_server);
        p.pxe_class = Some(if arch.is_http() {
            ClientKind::Http
        } else {
            ClientKind::Pxe
        });
        p.arch = Some(arch);
        // The proxy OFFER carries no boot file and no discovery control bit
        // 3: the client gets its file from the proxyDHCP REQUEST on 4011
        // (PXE 2.1 §2.2.1 steps 4–6: the proxy OFFER gives option 60
        // "PXEClient" and the PXE options, the file comes in the ACK to
        // the 4011 REQUEST). A file here lets iPXE boot without that
        // exchange (it sends the ProxyDHCP REQUEST only for an offer with
        // neither file nor menu), while EDK2 goes to 4011 in any case; so
        // both take the same path, as with dnsmasq's proxy offers. Option 43
        // only when the client needs it: the menu and prompt (§2.4.5) when
        // a menu is configured, MTFTP sub-options 1–5 (BIOS only: EDK2
        // discards offers carrying them), and the transaction server
        // (vendor sub-options 128/129, `ServerConfig::transaction`, added
        // by `reply::emit` to every answer to a PXE client).
        let menu = self.config.menu.policy != MenuPolicy::Never;
        if arch.mtftp() {
            p.mtftp = entry.mtftp;
        }
        if menu || p.mtftp.is_some() {
            p.pxe43 = Pxe43::Offer;
        }
        if self.queue(p) {
            self.event(Event::ProxyOffered { chaddr, arch });
        }
    }

    /// REQUEST (or INFORM) on 4011: proxyDHCP REQUEST and boot server
    /// discovery (PXE 2.1 §2.2.3).
    fn boot_request(&mut self, req: Request, from: SocketAddrV4) {
        if req.kind == ClientKind::Plain && !self.config.boot_non_pxe {
            self.ignore(&req, IgnoreReason::NotPxe);
            return;
        }
        // A server identifier naming another server: not ours.
        if req.server_id.is_some_and(|s| s != self.config.server_id) {
            self.ignore(&req, IgnoreReason::OtherServer);
            return;
        }
        let Some((arch, mut entry)) = self.boot_entry(&req) else {
            return;
        };
        let mut item = None;
        // The MTFTP sub-options belong to the architecture's own file.
        let mut mtftp = entry.mtftp.filter(|_| arch.mtftp());
        if let Some((ty, layer)) = req.boot_item {
            // Layer bit 15 asks for credentials, which we do not serve;
            // only layer 0 (the boot file itself) exists.
            let known = self
                .config
                .menu
                .items
                .iter()
                .find(|i| i.server_type == ty && ty != 0);
            match known {
                Some(i) if layer == 0 => {
                    if let Some(f) = &i.file {
                        entry.file = f.clone();
                        mtftp = None;
                    }
                    item = Some(ty);
                }
                _ => {
                    self.ignore(&req, IgnoreReason::UnknownBootItem);
                    return;
                }
            }
        }
        let chaddr = req.hw();
        let boot_item = req.boot_item;
        let mut p = self.base(req, ReplyKind::BootAck);
        // Back to the source address and port of the request; a client
        // without an address yet gets a broadcast to that port.
        if from.ip().is_unspecified() {
            p.destination = SocketAddrV4::new(Ipv4Addr::BROADCAST, from.port());
            p.broadcast = true;
        } else {
            p.destination = from;
            p.broadcast = false;
        }
        p.siaddr = entry.server.unwrap_or(self.config.tftp_server);
        p.file = Some(entry.file);
        p.arch = Some(arch);
        p.mtftp = mtftp;
        p.pxe_class = Some(if arch.is_http() {
            ClientKind::Http
        } else {
            ClientKind::Pxe
        });
        if let Some((ty, layer)) = boot_item {
            p.pxe43 = Pxe43::BootItem(ty, layer);
        }
        if self.queue(p) {
            self.event(Event::BootAcked { chaddr, arch, item });
        }
    }

    // ---- full mode (RFC 2131 §4.3) ----

    /// The pool serving this client: by `giaddr` when relayed, else the one
    /// on the server's own subnet (RFC 2131 §4.3.1).
    fn pool_for(&self, req: &Request) -> Option<usize> {
        let net = if req.giaddr.is_unspecified() {
            self.config.server_id
        } else {
            req.giaddr
        };
        self.config
            .pools
            .iter()
            .position(|p| p.subnet_contains(net))
            .or(
                if req.giaddr.is_unspecified() && self.config.pools.len() == 1 {
                    Some(0)
                } else {
                    None
                },
            )
    }

    fn reservation(&self, req: &Request) -> Option<Ipv4Addr> {
        let mac = req.hw();
        let id = match req.client.as_bytes() {
            [1, rest @ ..] => Some(rest),
            _ => None,
        };
        self.config
            .reservations
            .iter()
            .find(|r| match &r.key {
                ReservationKey::Mac(m) => mac.as_bytes() == m,
                ReservationKey::ClientId(c) => id == Some(c.as_slice()),
            })
            .map(|r| r.address)
    }

    /// Addresses never handed out dynamically: the server's own, pool
    /// routers, and other clients' reservations.
    fn excluded(&self, a: Ipv4Addr, pool: &Pool) -> bool {
        a == self.config.server_id
            || pool.router == Some(a)
            || a == pool.subnet
            || a == pool.broadcast()
            || self.config.reservations.iter().any(|r| r.address == a)
    }

    /// The address for this client in pool `pi`, if any.
    fn choose(&mut self, now: Instant, req: &Request, pi: usize) -> Option<Ipv4Addr> {
        let pool = &self.config.pools[pi];
        if let Some(r) = self.reservation(req) {
            if pool.subnet_contains(r) {
                return Some(r);
            }
        }
        if let Some(l) = self.leases.by_client(&req.client) {
            if l.state != LeaseState::Probation && pool.range_contains(l.addr) {
                return Some(l.addr);
            }
        }
        if let Some(r) = req.requested_ip {
            if pool.range_contains(r)
                && !self.excluded(r, pool)
                && self.leases.is_free_for(r, &req.client, now)
            {
                return Some(r);
            }
        }
        let pool = &self.config.pools[pi];
        let mut cursor = self.cursors[pi];
        let found = cursor.find(&self.leases, pool.start, pool.end, &req.client, now, |a| {
            self.excluded(a, pool)
        });
        self.cursors[pi] = cursor;
        found
    }

    /// Boot information for a full-mode answer.
    fn add_boot(&mut self, p: &mut Pending) {
        if p.req.kind == ClientKind::Plain && !self.config.boot_non_pxe {
            return;
        }
        let req = p.req.clone();
        if let Some((arch, entry)) = self.boot_entry(&req) {
            p.siaddr = entry.server.unwrap_or(self.config.tftp_server);
            p.arch = Some(arch);
            // This server is the client's PXE server too, so a PXE client
            // gets the "extended DHCPOFFER" of PXE 2.1 §2.2.1 (step 2,
            // Table 2-1): option 60 "PXEClient" and the PXE options (43).
            // Without option 60 the client takes the answer for plain DHCP
            // and waits for a proxyDHCP offer (iPXE: ~3 s before its
            // REQUEST). Option 43 carries discovery control (§2.4.5): with
            // no menu, bit 3 "boot the file in this offer" — so EDK2 takes
            // it as a PXE 1.0 offer and boots the file without a 4011 step,
            // where 60 alone would make it a BINL offer that must ask 4011
            // — and with a menu, the menu, the file then coming from the
            // boot server (4011). MTFTP sub-options 1–5 never go to UEFI
            // clients (EDK2 discards offers carrying them).
            let pxe = req.kind == ClientKind::Pxe && !arch.is_http();
            if pxe {
                p.pxe_class = Some(ClientKind::Pxe);
                p.pxe43 = Pxe43::Offer;
                if arch.mtftp() {
                    p.mtftp = entry.mtftp;
                }
            }
            if !(pxe && self.config.menu.policy != MenuPolicy::Never) {
                p.file = Some(entry.file);
            }
            // HTTP boot needs option 60 "HTTPClient" in the answer (UEFI
            // 2.5 §24.7.2), and no PXE options.
            if arch.is_http() {
                p.pxe_class = Some(ClientKind::Http);
            }
        }
    }

    fn discover(&mut self, now: Instant, req: Request) {
        let Some(pi) = self.pool_for(&req) else {
            self.ignore(&req, IgnoreReason::NoPool);
            return;
        };
        let Some(addr) = self.choose(now, &req, pi) else {
            self.ignore(&req, IgnoreReason::PoolExhausted);
            return;
        };
        let lease_time = self.config.pools[pi].lease_time;
        // Hold the address for the client, without downgrading a binding.
        let bound = self.leases.by_addr(addr).is_some_and(|l| {
            l.client == req.client && l.state == LeaseState::Bound && l.expires > now
        });
        if !bound {
            let hold = Lease {
                addr,
                client: req.client,
                expires: now + self.config.offer_hold,
                state: LeaseState::Offered,
            };
            if self.leases.put(hold).is_err() {
                self.ignore(&req, IgnoreReason::PoolExhausted);
                return;
            }
        }
        let chaddr = req.hw();
        let mut p = self.base(req, ReplyKind::Offer);
        p.yiaddr = addr;
        p.pool = Some(pi);
        p.lease_time = Some(lease_time);
        self.add_boot(&mut p);
        if self.queue(p) {
            self.event(Event::Offered {
                chaddr,
                yiaddr: addr,
            });
        }
    }

    fn nak(&mut self, req: Request, requested: Ipv4Addr) {
        let chaddr = req.hw();
        let mut p = self.base(req, ReplyKind::Nak);
        if !p.req.giaddr.is_unspecified() {
            // RFC 2131 §4.3.2: the relay must broadcast the NAK.
            p.req.flags |= 0x8000;
        }
        if self.queue(p) {
            self.event(Event::Nak { chaddr, requested });
        }
    }

    fn request(&mut self, now: Instant, req: Request) {
        // SELECTING: the client names the server it chose.
        if let Some(sid) = req.server_id {
            if sid != self.config.server_id {
                // It chose another server: drop our hold.
                if let Some(l) = self.leases.by_client(&req.client) {
                    if l.state == LeaseState::Offered {
                        let a = l.addr;
                        self.leases.remove(a);
                    }
                }
                self.ignore(&req, IgnoreReason::OtherServer);
                return;
            }
        }
        let wanted = match (req.requested_ip, req.ciaddr) {
            (Some(r), _) => r,
            (None, c) if !c.is_unspecified() => c,
            _ => {
                self.ignore(&req, IgnoreReason::Malformed);
                return;
            }
        };
        let Some(pi) = self.pool_for(&req) else {
            self.ignore(&req, IgnoreReason::NoPool);
            return;
        };
        let pool = &self.config.pools[pi];
        if !pool.subnet_contains(wanted) {
            // INIT-REBOOT on a wrong network (§4.3.2): NAK.
            self.nak(req, wanted);
            return;
        }
        let reserved = self.reservation(&req);
        let ok = match reserved {
            Some(r) => r == wanted,
            None => {
                let mine = self
                    .leases
                    .by_addr(wanted)
                    .is_some_and(|l| l.client == req.client && l.state != LeaseState::Probation);
                let other_reserved = self.config.reservations.iter().any(|r| r.address == wanted);
                mine || (!other_reserved
                    && pool.range_contains(wanted)
                    && !self.excluded(wanted, pool)
                    && self.leases.is_free_for(wanted, &req.client, now))
            }
        };
        if !ok {
            self.nak(req, wanted);
            return;
        }
        if self.updates.is_full() {
            self.ignore(&req, IgnoreReason::StoreBusy);
            return;
        }
        let lease_time = pool.lease_time;
        let lease = Lease {
            addr: wanted,
            client: req.client,
            expires: now + lease_time,
            state: LeaseState::Bound,
        };
        if self.leases.put(lease).is_err() {
            self.ignore(&req, IgnoreReason::PoolExhausted);
            return;
        }
        let _ = self.updates.push_back(LeaseRecord {
            kind: RecordKind::Granted,
            addr: wanted,
            client: req.client,
            expires: lease.expires,
        });
        let chaddr = req.hw();
        let mut p = self.base(req, ReplyKind::Ack);
        p.yiaddr = wanted;
        p.pool = Some(pi);
        p.lease_time = Some(lease_time);
        p.after_sync = true;
        self.add_boot(&mut p);
        if self.queue(p) {
            self.event(Event::Acked {
                chaddr,
                yiaddr: wanted,
            });
        }
    }

    fn decline(&mut self, now: Instant, req: Request) {
        if req.server_id.is_some_and(|s| s != self.config.server_id) {
            return self.ignore(&req, IgnoreReason::OtherServer);
        }
        let Some(addr) = req.requested_ip else {
            return self.ignore(&req, IgnoreReason::Malformed);
        };
        if self
            .leases
            .by_addr(addr)
            .is_none_or(|l| l.client != req.client)
        {
            return self.ignore(&req, IgnoreReason::NotForUs);
        }
        // Probation budget of the address's pool (one per relay/interface).
        let probation = self.config.decline_probation;
        let budget = self
            .config
            .pools
            .iter()
            .position(|p| p.range_contains(addr))
            .or_else(|| {
                self.config
                    .pools
                    .iter()
                    .position(|p| p.subnet_contains(addr))
            })
            .and_then(|pi| {
                let pool = &self.config.pools[pi];
                let limit = match u64::from(self.config.max_declined_percent.min(100)) {
                    0 => 0,
                    pct => (u64::from(pool.size()) * pct / 100).max(1),
                };
                let limit = u32::try_from(limit).unwrap_or(u32::MAX);
                let on = self.probations.get_mut(pi)?;
                Some((on, limit))
            });
        if let Some((on, limit)) = budget {
            let on_probation = on.live(now, probation);
            if on_probation >= limit {
                // The address stays in use: drop the client's binding as a
                // RELEASE would.
                self.leases.remove(addr);
                self.record_released(now, addr, req.client);
                self.event(Event::DeclineIgnored {
                    chaddr: req.hw(),
                    addr,
                    on_probation,
                    limit,
                });
                return;
            }
            on.add(now, probation);
        }
        let _ = self.leases.put(Lease {
            addr,
            client: req.client,
            expires: now + probation,
            state: LeaseState::Probation,
        });
        self.record_released(now, addr, req.client);
        self.event(Event::Declined {
            chaddr: req.hw(),
            addr,
        });
    }

    /// Queue the lease record that ends `client`'s binding of `addr`.
    fn record_released(&mut self, now: Instant, addr: Ipv4Addr, client: ClientKey) {
        let _ = self.updates.push_back(LeaseRecord {
            kind: RecordKind::Released,
            addr,
            client,
            expires: now,
        });
    }

    fn release(&mut self, now: Instant, req: Request) {
        let addr = req.ciaddr;
        if !self
            .leases
            .by_addr(addr)
            .is_some_and(|l| l.client == req.client && l.state == LeaseState::Bound)
        {
            return self.ignore(&req, IgnoreReason::NotForUs);
        }
        self.leases.remove(addr);
        self.record_released(now, addr, req.client);
        self.event(Event::Released {
            chaddr: req.hw(),
            addr,
        });
    }

    fn inform(&mut self, req: Request, from: SocketAddrV4) {
        let pool_net = if req.ciaddr.is_unspecified() {
            *from.ip()
        } else {
            req.ciaddr
        };
        let pi = if req.giaddr.is_unspecified() {
            self.config
                .pools
                .iter()
                .position(|p| p.subnet_contains(pool_net))
        } else {
            self.pool_for(&req)
        };
        let chaddr = req.hw();
        let mut p = self.base(req, ReplyKind::InformAck);
        // RFC 2131 §4.3.5: unicast to ciaddr (or the relay).
        if p.req.giaddr.is_unspecified() && !p.req.ciaddr.is_unspecified() {
            p.destination = SocketAddrV4::new(p.req.ciaddr, CLIENT_PORT);
            p.broadcast = false;
        }
        p.pool = pi;
        self.add_boot(&mut p);
        if self.queue(p) {
            self.event(Event::Informed { chaddr });
        }
    }
}

/// The client key of a request (for tests and tools): option 61 or
/// htype + chaddr.
pub fn client_key(client_id: Option<&[u8]>, htype: u8, chaddr: &[u8]) -> ClientKey {
    ClientKey::new(client_id, htype, chaddr)
}
