//! A PXE 2.1 client engine (PXE 2.1 §2.2.1, RFC 2131 §4.4), for Rust boot
//! tools.
//!
//! ```text
//!  Discovering ── DISCOVER (bcast; 55 57 60 93 94 97), collect OFFERs for the window
//!      │  address offer chosen (prefers one that also carries boot info)
//!  Requesting ── REQUEST (bcast; 50 54) ──► ACK: address bound; NAK: start over
//!      │  boot info in the ACK/OFFER? done : a proxy OFFER names a boot server
//!  BootRequesting ── REQUEST to proxy:4011 (ciaddr; 43/71 when boot servers) ──► ACK
//!      │
//!  Done (Event::Bound)            Failed (Event::Failed) after the last retry
//! ```
//!
//! Retransmission follows PXE 2.1 §2.2.1: DISCOVER and REQUEST after 4, 8,
//! 16 and 32 s; the boot server REQUEST after 1, 2, 3 and 4 s. The offer
//! window closes early as soon as an address offer and boot information are
//! both in hand.
//!
//! # How to drive it
//!
//! The [engine contract](crate::engine). Create it with [`Client::new`]
//! (the transaction id comes from the caller's randomness), then loop:
//! send what [`Client::poll_transmit`] writes (from port 68, its only
//! socket: `local` is `None`; to its `remote`), feed answers to
//! [`Client::handle`], call [`Client::handle_timeout`] at
//! [`Client::poll_timeout`], and read [`Client::poll_event`] until
//! [`Event::Bound`] or [`Event::Failed`].

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use heapless::{String, Vec};

use crate::Instant;

use super::Error;
use super::config::{BOOT_FILE_LEN, MAX_MENU_ITEMS, MtftpParams, TEXT_LEN, TransactionServer};
use super::server::{BOOT_SERVER_PORT, SERVER_PORT};
use crate::engine::{BufferTooSmall, Datagram, Transmit};

/// What the client says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Hardware address (`chaddr`, Ethernet).
    pub mac: [u8; 6],
    /// Client architecture (option 93; 0 BIOS, 7 UEFI x64, …).
    pub arch: u16,
    /// Network interface identifier (option 94): type, major, minor.
    pub ndi: [u8; 3],
    /// Machine UUID (option 97, type 0).
    pub uuid: [u8; 16],
    /// Option 57.
    pub max_message_size: u16,
    /// Retransmission timeouts for DISCOVER and REQUEST.
    pub dhcp_timeouts: Vec<Duration, 8>,
    /// Retransmission timeouts for the boot server REQUEST on 4011.
    pub boot_timeouts: Vec<Duration, 8>,
}

impl ClientConfig {
    /// A client with the PXE 2.1 timeouts.
    pub fn new(mac: [u8; 6], arch: u16, uuid: [u8; 16]) -> Self {
        let mut dhcp_timeouts = Vec::new();
        for s in [4, 8, 16, 32] {
            let _ = dhcp_timeouts.push(Duration::from_secs(s));
        }
        let mut boot_timeouts = Vec::new();
        for s in [1, 2, 3, 4] {
            let _ = boot_timeouts.push(Duration::from_secs(s));
        }
        ClientConfig {
            mac,
            arch,
            ndi: [1, 2, 1],
            uuid,
            max_message_size: 1472,
            dhcp_timeouts,
            boot_timeouts,
        }
    }
}

/// What the client learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// Our address (`yiaddr` of the ACK).
    pub address: Ipv4Addr,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3 (first).
    pub router: Option<Ipv4Addr>,
    /// Option 51.
    pub lease_time: Option<Duration>,
    /// The DHCP server that granted the address (option 54).
    pub dhcp_server: Ipv4Addr,
    /// The proxyDHCP / boot server that gave the boot file, if any.
    pub boot_server: Option<Ipv4Addr>,
    /// The TFTP server (`siaddr`).
    pub tftp_server: Ipv4Addr,
    /// The boot file (or URL).
    pub boot_file: String<BOOT_FILE_LEN>,
    /// MTFTP parameters (option 43 sub-options 1–5).
    pub mtftp: Option<MtftpParams>,
    /// Boot menu (sub-option 9): server type and description.
    pub menu: Vec<(u16, String<TEXT_LEN>), MAX_MENU_ITEMS>,
    /// Menu prompt (sub-option 10): timeout and text.
    pub prompt: Option<(u8, String<TEXT_LEN>)>,
    /// The transaction server the answers name (option 43 sub-option 128,
    /// with the key of sub-option 129 if present;
    /// docs/transaction-protocol.md, "How the preboot client finds the
    /// transaction server"): from the answer that gave the boot file, else
    /// from the other answer of the same server (the proxy OFFER before
    /// its 4011 ACK; the full-mode OFFER before its ACK). `None` when
    /// sub-option 128 is absent (a key alone names no server). A key
    /// learnt here is unauthenticated: one the preboot client pins wins.
    pub transaction: Option<TransactionServer>,
}

/// The address a DHCPACK granted ([`Client::granted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    /// `yiaddr`.
    pub address: Ipv4Addr,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3 (first).
    pub router: Option<Ipv4Addr>,
}

/// Why the client gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// No usable OFFER after every DISCOVER.
    NoOffer,
    /// No ACK after every REQUEST.
    NoAck,
    /// An address, but no server named a boot file.
    NoBootFile,
    /// The client's own message cannot be encoded (its configuration holds
    /// a value out of range): retrying cannot help.
    Encode,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one event per boot; no need to box
pub enum Event {
    /// Address bound and boot file known.
    Bound(BootInfo),
    /// Gave up.
    Failed(FailReason),
}

/// An answer from a server, as the client sees it.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub xid: u32,
    pub msg_type: u8,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub server_id: Option<Ipv4Addr>,
    pub pxe_class: bool,
    pub file: String<BOOT_FILE_LEN>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub lease_time: Option<Duration>,
    pub mtftp: Option<MtftpParams>,
    /// First boot server type from sub-option 8 (for sub-option 71).
    pub boot_server_type: Option<u16>,
    pub boot_item: Option<(u16, u16)>,
    pub menu: Vec<(u16, String<TEXT_LEN>), MAX_MENU_ITEMS>,
    pub prompt: Option<(u8, String<TEXT_LEN>)>,
    /// Sub-options 128 (and 129).
    pub transaction: Option<TransactionServer>,
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            xid: 0,
            msg_type: 0,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            server_id: None,
            pxe_class: false,
            file: String::new(),
            subnet_mask: None,
            router: None,
            lease_time: None,
            mtftp: None,
            boot_server_type: None,
            boot_item: None,
            menu: Vec::new(),
            prompt: None,
            transaction: None,
        }
    }
}

impl Answer {
    fn has_boot(&self) -> bool {
        !self.file.is_empty()
    }
}

#[derive(Clone, Debug)]
enum State {
    Discovering,
    Requesting,
    BootRequesting,
    Done,
}

/// What the client sends next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    Discover,
    Request {
        server: Ipv4Addr,
        requested: Ipv4Addr,
    },
    BootRequest {
        ciaddr: Ipv4Addr,
        item: Option<(u16, u16)>,
    },
}

/// The PXE client engine. See the [module docs](self).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    xid: u32,
    state: State,
    start: Instant,
    attempt: usize,
    deadline: Option<Instant>,
    send_now: bool,
    address_offer: Option<Answer>,
    boot_offer: Option<Answer>,
    ack: Option<Answer>,
    /// The address came from elsewhere ([`Client::with_address`]): only
    /// boot information is sought.
    known_address: bool,
    events: heapless::Deque<Event, 2>,
}

impl Client {
    /// The largest datagram the client writes ([`super::MAX_DATAGRAM`]):
    /// give [`Client::poll_transmit`] a buffer of at least this size.
    pub const MAX_DATAGRAM: usize = super::MAX_DATAGRAM;

    /// A client about to send its first DISCOVER with transaction id `xid`
    /// (from the caller's randomness).
    pub fn new(now: Instant, config: ClientConfig, xid: u32) -> Self {
        Client {
            config,
            xid,
            state: State::Discovering,
            start: now,
            attempt: 0,
            deadline: None,
            send_now: true,
            address_offer: None,
            boot_offer: None,
            ack: None,
            known_address: false,
            events: heapless::Deque::new(),
        }
    }

    /// A client whose interface already has `address` (configured by the
    /// firmware, an earlier DHCP client or by hand), as a PXE network boot
    /// program or an operating system asks again for boot information:
    /// it sends DISCOVERs and takes the first PXE OFFER that names a boot
    /// file or a boot server (a proxyDHCP OFFER, PXE 2.1 §2.2.1 step 4, or
    /// a full OFFER with PXE information), then asks the boot server on
    /// 4011 with `ciaddr` = `address` when one is named. No REQUEST for an
    /// address is sent; [`BootInfo::address`] is `address` and
    /// [`BootInfo::dhcp_server`] the unspecified address.
    pub fn with_address(now: Instant, config: ClientConfig, xid: u32, address: Ipv4Addr) -> Self {
        let mut c = Client::new(now, config, xid);
        c.known_address = true;
        c.ack = Some(Answer {
            xid,
            msg_type: 5,
            yiaddr: address,
            ..Answer::default()
        });
        c
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// The address the client holds once a DHCPACK granted it (or the one
    /// given to [`Client::with_address`]), with the ACK's subnet mask and
    /// router, before the boot server on 4011 is asked: a driver
    /// configures it on the interface then, so that the boot server's
    /// unicast answer to `ciaddr` is delivered (PXE 2.1 §2.2.1 step 6 is
    /// sent from, and answered to, that address).
    pub fn granted(&self) -> Option<Granted> {
        let ack = self.ack.as_ref()?;
        let held = matches!(self.state, State::BootRequesting | State::Done) || self.known_address;
        held.then_some(Granted {
            address: ack.yiaddr,
            subnet_mask: ack.subnet_mask,
            router: ack.router,
        })
    }

    /// Whether the client finished (bound or failed).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn timeouts(&self) -> &[Duration] {
        match self.state {
            State::BootRequesting => &self.config.boot_timeouts,
            _ => &self.config.dhcp_timeouts,
        }
    }

    fn outgoing(&self) -> Option<Outgoing> {
        match self.state {
            State::Discovering => Some(Outgoing::Discover),
            State::Requesting => {
                let o = self.address_offer.as_ref()?;
                Some(Outgoing::Request {
                    server: o.server_id.unwrap_or(o.siaddr),
                    requested: o.yiaddr,
                })
            }
            State::BootRequesting => {
                let ack = self.ack.as_ref()?;
                let b = self.boot_offer.as_ref()?;
                Some(Outgoing::BootRequest {
                    ciaddr: ack.yiaddr,
                    item: b.boot_server_type.map(|t| (t, 0)),
                })
            }
            State::Done => None,
        }
    }

    /// Write the next datagram into `buf` (give it
    /// [`Client::MAX_DATAGRAM`] bytes). A too-small buffer leaves it due and
    /// `buf` untouched, with the size needed in the error. A message that
    /// cannot be encoded ends the run with
    /// [`Event::Failed`]`(`[`FailReason::Encode`]`)`.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        if !self.send_now {
            return Ok(None);
        }
        let Some(out) = self.outgoing() else {
            return Ok(None);
        };
        let secs =
            u16::try_from(now.saturating_duration_since(self.start).as_secs()).unwrap_or(u16::MAX);
        let len = match super::reply::emit_client(&self.config, self.xid, secs, out, buf) {
            Ok(len) => len,
            // The caller's buffer: nothing changed, call again with more.
            Err(Error::BufferTooSmall { needed }) => return Err(BufferTooSmall { needed }),
            // Every retry would fail the same way: give up now (with the
            // event) rather than leave the message at the head for ever.
            Err(_) => {
                self.finish(Event::Failed(FailReason::Encode));
                return Ok(None);
            }
        };
        let (destination, broadcast) = match out {
            Outgoing::BootRequest { .. } => {
                let b = self.boot_offer.as_ref();
                let server = b.and_then(|b| b.server_id).unwrap_or(Ipv4Addr::BROADCAST);
                (
                    SocketAddrV4::new(server, BOOT_SERVER_PORT),
                    server == Ipv4Addr::BROADCAST,
                )
            }
            _ => (SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT), true),
        };
        self.send_now = false;
        let t = self
            .timeouts()
            .get(self.attempt)
            .copied()
            .unwrap_or(Duration::from_secs(4));
        self.deadline = Some(now + t);
        Ok(Some(Transmit {
            local: None,
            remote: destination,
            len,
            broadcast,
            after_sync: false,
        }))
    }

    /// When [`Client::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.send_now {
            return None;
        }
        self.deadline
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn finish(&mut self, e: Event) {
        self.state = State::Done;
        self.deadline = None;
        self.send_now = false;
        let _ = self.events.push_back(e);
    }

    fn enter(&mut self, s: State) {
        self.state = s;
        self.attempt = 0;
        self.send_now = true;
        self.deadline = None;
    }

    /// Time passed; retransmit or move on. Harmless when early.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(d) = self.deadline else { return };
        if now < d || self.send_now {
            return;
        }
        let last = self.attempt + 1 >= self.timeouts().len();
        match self.state {
            State::Discovering => {
                if self.address_offer.is_some() && (self.boot_offer.is_some() || last) {
                    // The window closed: take what we have.
                    self.enter(State::Requesting);
                } else if last {
                    self.finish(Event::Failed(FailReason::NoOffer));
                } else {
                    self.attempt += 1;
                    self.send_now = true;
                }
            }
            State::Requesting => {
                if last {
                    self.finish(Event::Failed(FailReason::NoAck));
                } else {
                    self.attempt += 1;
                    self.send_now = true;
                }
            }
            State::BootRequesting => {
                if last {
                    // No boot server answer: a proxy OFFER with a file still
                    // boots (PXE 2.1 §2.2.2 without discovery).
                    let b = self.boot_offer.clone();
                    match b {
                        Some(b) if b.has_boot() => self.bound(Some(&b)),
                        _ => self.finish(Event::Failed(FailReason::NoBootFile)),
                    }
                } else {
                    self.attempt += 1;
                    self.send_now = true;
                }
            }
            State::Done => {}
        }
    }

    fn bound(&mut self, boot: Option<&Answer>) {
        let Some(ack) = self.ack.clone() else { return };
        let src = boot.unwrap_or(&ack);
        let offer = self.boot_offer.as_ref();
        let info = BootInfo {
            address: ack.yiaddr,
            subnet_mask: ack.subnet_mask,
            router: ack.router,
            lease_time: ack.lease_time,
            dhcp_server: ack.server_id.unwrap_or(Ipv4Addr::UNSPECIFIED),
            boot_server: boot.and_then(|b| b.server_id),
            tftp_server: src.siaddr,
            boot_file: src.file.clone(),
            mtftp: src.mtftp.or(offer.and_then(|o| o.mtftp)),
            menu: offer.map(|o| o.menu.clone()).unwrap_or_default(),
            prompt: offer.and_then(|o| o.prompt.clone()),
            transaction: src.transaction.or_else(|| match boot {
                Some(_) => offer.and_then(|o| o.transaction),
                None => self.address_offer.as_ref().and_then(|o| o.transaction),
            }),
        };
        self.finish(Event::Bound(info));
    }

    /// Feed one datagram received on the client port (68) or as the answer
    /// to the boot server REQUEST.
    pub fn handle(&mut self, now: Instant, datagram: Datagram<'_>) {
        let Some(a) = super::reply::parse_answer(datagram.payload, &self.config.mac) else {
            return;
        };
        if a.xid != self.xid {
            return;
        }
        match (&self.state, a.msg_type) {
            (State::Discovering, 2) if self.known_address => {
                if !a.pxe_class || (!a.has_boot() && a.server_id.is_none()) {
                    return;
                }
                if let Some(ack) = &mut self.ack {
                    ack.subnet_mask = a.subnet_mask.or(ack.subnet_mask);
                    ack.router = a.router.or(ack.router);
                    ack.siaddr = a.siaddr;
                    ack.file = a.file.clone();
                }
                let ask_boot_server = a.server_id.is_some();
                self.boot_offer = Some(a);
                if ask_boot_server {
                    self.enter(State::BootRequesting);
                } else {
                    let b = self.boot_offer.clone();
                    self.bound(b.as_ref());
                }
            }
            (State::Discovering, 2) => {
                let is_proxy = a.yiaddr.is_unspecified();
                if is_proxy {
                    if a.pxe_class && self.boot_offer.is_none() {
                        self.boot_offer = Some(a);
                    }
                } else {
                    // Prefer an address offer that also names a boot file.
                    let better = match &self.address_offer {
                        None => true,
                        Some(o) => !o.has_boot() && a.has_boot(),
                    };
                    if better {
                        if a.has_boot() {
                            self.boot_offer = None;
                        }
                        self.address_offer = Some(a);
                    }
                }
                let addr_boot = self.address_offer.as_ref().is_some_and(Answer::has_boot);
                if self.address_offer.is_some() && (addr_boot || self.boot_offer.is_some()) {
                    self.enter(State::Requesting);
                }
            }
            (State::Requesting, 5) => {
                let Some(o) = &self.address_offer else { return };
                if a.yiaddr != o.yiaddr {
                    return;
                }
                let has_boot = o.has_boot() || a.has_boot();
                let mut ack = a;
                if ack.file.is_empty() {
                    ack.file = o.file.clone();
                    if ack.siaddr.is_unspecified() {
                        ack.siaddr = o.siaddr;
                    }
                }
                self.ack = Some(ack);
                if has_boot && self.boot_offer.is_none() {
                    self.bound(None);
                } else if self.boot_offer.is_some() {
                    self.enter(State::BootRequesting);
                } else {
                    self.finish(Event::Failed(FailReason::NoBootFile));
                }
            }
            (State::Requesting, 6) => {
                // NAK: start over (RFC 2131 §4.4.1).
                self.address_offer = None;
                self.boot_offer = None;
                self.start = now;
                self.enter(State::Discovering);
            }
            (State::BootRequesting, 5) if a.has_boot() => self.bound(Some(&a)),
            _ => {}
        }
    }
}
