//! DHCP, proxyDHCP and PXE boot server discovery engines (sans-IO).
//!
//! Steps 1–3 of a network boot: the workstation's DHCPDISCOVER with PXE
//! extensions, an address from a DHCP server, and the proxyDHCP answer naming
//! the boot server and the boot file.
//!
//! - [`server::Server`]: RFC 2131 server in two [`config::Mode`]s —
//!   *proxy* (PXE 2.1 §2.2.2 proxyDHCP on port 67 plus the boot server on
//!   port 4011; never hands out addresses) and *full* (pools, leases,
//!   reservations, relays, and the boot file in the same answer).
//! - [`client::Client`]: a PXE 2.1 client (DISCOVER with options
//!   55/57/60/93/94/97, offer window, REQUEST, proxyDHCP REQUEST to 4011,
//!   retransmission with backoff).
//!
//! Both engines own no socket, clock, file or randomness and follow the
//! [engine contract](crate::engine): the caller feeds datagrams
//! ([`Datagram`](crate::engine::Datagram)) and time in with `handle` and
//! `handle_timeout`, and drains datagrams
//! ([`Transmit`](crate::engine::Transmit)), deadlines and events out with
//! `poll_transmit`, `poll_timeout` and `poll_event`.
//!
//! ```text
//!  PXE client                proxyDHCP (67)      boot server (4011)
//!   DISCOVER (bcast, 60=PXEClient) ──►
//!   ◄── proxy OFFER (yiaddr 0, 54, 60, 97, siaddr, no file; 43 for a menu
//!       and 43/128-129 naming the transaction server, when configured)
//!   (DHCP server's OFFER/ACK give the address)
//!   REQUEST (unicast, 43/71 boot item) ─────────────────────►
//!   ◄──────────────────── ACK (file, siaddr, 60, 43/71, 43/128-129)
//! ```

pub mod arch;
pub mod client;
pub mod config;
pub mod leases;
pub mod rate;
mod reply;
mod request;
pub mod server;
pub mod store;

pub use arch::BootArch;
pub use client::Client;
pub use config::{Mode, ServerConfig};
pub use server::Server;

/// The largest datagram either DHCP engine writes: the fixed header and
/// magic cookie (240 bytes), option 43 (at most 600 bytes, split into three
/// RFC 3396 fragments: 606), at most 15 other options of at most 255 bytes
/// (257 each with code and length) and the end option. Drivers give
/// `poll_transmit` a buffer of at least this size (the
/// [engine contract](crate::engine)'s buffer rule).
pub const MAX_DATAGRAM: usize = 240 + 606 + 15 * 257 + 1;

/// A client hardware address (`chaddr` as long as `hlen` says, at most 16
/// bytes), displayed as `52:54:00:e2:e0:01`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HwAddr {
    len: u8,
    bytes: [u8; 16],
}

impl HwAddr {
    /// From `chaddr` and `hlen` (clamped to 16).
    pub fn new(chaddr: &[u8]) -> Self {
        let n = chaddr.len().min(16);
        let mut bytes = [0; 16];
        bytes[..n].copy_from_slice(&chaddr[..n]);
        HwAddr {
            len: n as u8,
            bytes,
        }
    }

    /// The address bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl core::fmt::Display for HwAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl core::fmt::Debug for HwAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

/// Errors of the DHCP engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's buffer cannot hold the datagram.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// The message cannot be encoded (a value out of range).
    #[error("cannot encode the message")]
    Encode,
    /// The configuration cannot work (the text says why).
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}
