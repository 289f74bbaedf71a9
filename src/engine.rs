//! The one contract every sans-IO engine follows, and how to drive one.
//!
//! An engine ([`dhcp::Server`](crate::dhcp::Server),
//! [`dhcp::Client`](crate::dhcp::Client),
//! [`tftp::server::Server`](crate::tftp::server::Server),
//! [`tftp::client::Client`](crate::tftp::client::Client),
//! [`mtftp::server::Server`](crate::mtftp::server::Server),
//! [`mtftp::client::Client`](crate::mtftp::client::Client),
//! [`transaction::Server`](crate::transaction::Server),
//! [`transaction::Client`](crate::transaction::Client)) owns no socket, no
//! clock and no randomness (files it reads and writes through the
//! [`fs`](crate::fs) traits its driver gives it). It has
//! the same five verbs, with the same arguments in the same order
//! (quinn-proto's shape), so that one loop can host any set of them:
//!
//! | verb | what it does |
//! |------|--------------|
//! | `handle(now, Datagram)` | feed one received [`Datagram`] |
//! | `poll_transmit(now, buf) -> Result<Option<Transmit>, BufferTooSmall>` | write the next datagram to send into `buf` |
//! | `poll_timeout() -> Option<Instant>` | when `handle_timeout` is next due |
//! | `handle_timeout(now)` | let timers fire (a spurious call is harmless) |
//! | `poll_event() -> Option<Event>` | what happened, for logs and metrics |
//!
//! # Time
//!
//! `now` is the crate's [`Instant`]: microseconds since an epoch the
//! driver chooses, from **one monotonic clock** for every engine of a
//! process (the std drivers' `driver::clock::now`: `std::time::Instant`,
//! with the Unix epoch as read at process start as its epoch; a simulation
//! starts at [`Instant::ZERO`]). An engine never reads a clock; where wall
//! time must be stored (the DHCP lease log), the driver converts at that
//! edge.
//!
//! # Buffers
//!
//! One rule, followed by every engine:
//!
//! - Each engine documents its largest datagram as a const `MAX_DATAGRAM`
//!   (e.g. [`dhcp::Server::MAX_DATAGRAM`](crate::dhcp::Server::MAX_DATAGRAM)).
//!   Drivers always offer at least that many bytes to `poll_transmit`.
//! - An item that does not fit a smaller caller buffer **stays queued**:
//!   `poll_transmit` leaves `buf` untouched and returns
//!   [`BufferTooSmall`] naming the size needed; call again with a buffer of
//!   that size.
//! - An item that cannot be encoded at all is **dropped** with an error
//!   event, and the next one is written instead.
//!
//! So nothing ever blocks the queue.
//!
//! The TFTP server adds one step of its own between `handle` and
//! `poll_transmit`, as quinn-proto's endpoint does for new connections: a
//! valid request comes back from `handle` for the application to accept
//! (with the file and the transfer's socket) or refuse. The std drivers
//! host engines on [`driver::event_loop`](crate::driver::event_loop)
//! (one loop per core). `poll_transmit` returns a `Result`
//! (not a bare `Option`) for every engine, even those whose items always fit
//! `MAX_DATAGRAM`, because a too-small buffer must be reported, not
//! silently dropped, and one signature lets one loop host them all.
//!
//! # How to drive an engine
//!
//! 1. For every datagram received, call `handle(now, Datagram { local,
//!    remote, payload })`: `local` is the address of the socket it arrived
//!    on (its bound address), `remote` the sender.
//! 2. Drain `poll_transmit(now, buf)` until `Ok(None)`; send
//!    `buf[..t.len]` from the socket named by [`Transmit::local`] to
//!    [`Transmit::remote`] (honour [`Transmit::broadcast`] and
//!    [`Transmit::after_sync`]).
//! 3. Drain `poll_event()`.
//! 4. Sleep until the next datagram or `poll_timeout()`, whichever comes
//!    first; at the deadline call `handle_timeout(now)` and go to 2.
//!
//! Here the proxyDHCP engine answers a DISCOVER built with the wire layer,
//! with no socket at all:
//!
//! ```
//! use core::net::{Ipv4Addr, SocketAddrV4};
//! use preboot::Instant;
//! use preboot::dhcp::{BootArch, Server, ServerConfig, config::BootEntry};
//! use preboot::engine::Datagram;
//! use preboot::wire::dhcp::{DhcpHeader, DhcpOption, DhcpPacket, List, MessageType, OptionData};
//! use preboot::wire::pxe::ClientArch;
//!
//! let mut config = ServerConfig::proxy(Ipv4Addr::new(192, 168, 1, 10));
//! config.boot.set(BootArch::UefiX64, BootEntry::tftp("efi64/bootx64.efi"));
//! let mut engine = Server::new(config)?;
//!
//! // A UEFI x64 firmware's DISCOVER, broadcast to port 67.
//! let mut discover = [0u8; 576];
//! let hdr = DhcpHeader { op: 1, htype: 1, hlen: 6, xid: 7, ..DhcpHeader::default() };
//! let n = hdr.emit(&[
//!     DhcpOption::MessageType(MessageType::Discover),
//!     DhcpOption::VendorClassIdentifier(OptionData::new(b"PXEClient:Arch:00007:UNDI:003000")),
//!     DhcpOption::ClientSystemArchitecture(List::Items(&[ClientArch::EfiBc])),
//! ], &mut discover)?;
//!
//! let mut now = Instant::ZERO;
//! let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67); // the socket's bound address
//! let remote = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
//! engine.handle(now, Datagram { local, remote, payload: &discover[..n] });
//!
//! let mut buf = [0u8; Server::MAX_DATAGRAM];
//! loop {
//!     // 2. transmits
//!     while let Some(t) = engine.poll_transmit(now, &mut buf)? {
//!         let offer = DhcpPacket::new_checked(&buf[..t.len])?;
//!         assert_eq!(offer.message_type(), Some(MessageType::Offer));
//!         assert_eq!(t.local, Some(local)); // sent from the socket it came in on
//!         assert!(t.broadcast);
//!     }
//!     // 3. events
//!     while let Some(event) = engine.poll_event() {
//!         println!("{event:?}");
//!     }
//!     // 4. timers (this engine has none)
//!     match engine.poll_timeout() {
//!         Some(deadline) => {
//!             now = deadline; // a real loop sleeps (or receives) until then
//!             engine.handle_timeout(now);
//!         }
//!         None => break,
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::net::SocketAddrV4;

#[allow(unused_imports)] // for the docs
use crate::Instant;

/// One received datagram, as an engine sees it: a borrowed view (no copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The local endpoint it arrived on: the receiving socket's bound
    /// address (DHCP tells port 67 from 4011 by it).
    pub local: SocketAddrV4,
    /// The sender.
    pub remote: SocketAddrV4,
    /// The bytes.
    pub payload: &'a [u8],
}

/// A datagram an engine wants sent; its bytes are the first
/// [`Transmit::len`] bytes of the buffer given to `poll_transmit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Which socket sends it: normally the `local` of the [`Datagram`]
    /// that caused it. `None`: the engine's only socket (a client).
    pub local: Option<SocketAddrV4>,
    /// Where to send it. The limited broadcast address
    /// (`255.255.255.255`) when [`Transmit::broadcast`] is set.
    pub remote: SocketAddrV4,
    /// Bytes written at the start of the buffer.
    pub len: usize,
    /// The destination is the limited broadcast address (the socket needs
    /// `SO_BROADCAST`; a driver may map it to an interface's broadcast).
    pub broadcast: bool,
    /// Send only after the engine's store synced every record polled so
    /// far (a DHCP ACK that grants a lease: the ACK leaves after fsync).
    pub after_sync: bool,
}

/// The caller's buffer cannot hold the next datagram; it stays queued and
/// the buffer is untouched. Call `poll_transmit` again with `needed` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("buffer too small: {needed} bytes needed")]
pub struct BufferTooSmall {
    /// Bytes needed.
    pub needed: usize,
}
