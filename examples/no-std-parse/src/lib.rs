//! The README's "no_std" example: read the client architecture (option 93,
//! RFC 4578 §2.1) and vendor class (option 60) of a PXE DISCOVER with
//! `preboot` built without `std` or `alloc`.
//!
//! CI builds this crate for `thumbv7em-none-eabihf`:
//!
//! ```sh
//! cargo build --manifest-path examples/no-std-parse/Cargo.toml --target thumbv7em-none-eabihf
//! ```
#![no_std]
#![forbid(unsafe_code)]

use preboot::wire::dhcp::{DhcpPacket, MessageType, ParseError};
use preboot::wire::pxe::ClientArch;

/// What a boot server needs from a DISCOVER to choose a boot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PxeClient {
    /// The first architecture of option 93, if the client sent one.
    pub arch: Option<ClientArch>,
    /// Whether option 60 starts with `PXEClient` (PXE 2.1 §2.2.1).
    pub pxe: bool,
}

/// Reads `datagram` as a DHCPDISCOVER; `None` for any other message type.
pub fn pxe_client(datagram: &[u8]) -> Result<Option<PxeClient>, ParseError> {
    let p = DhcpPacket::new_checked(datagram)?;
    if p.message_type() != Some(MessageType::Discover) {
        return Ok(None);
    }
    let pxe = p
        .vendor_class()
        .and_then(|v| v.slice(0, 9))
        .is_some_and(|prefix| prefix.eq_bytes(b"PXEClient"));
    Ok(Some(PxeClient {
        arch: p.client_arch(),
        pxe,
    }))
}
