//! # preboot
//!
//! PXE network boot end to end, as an embeddable library:
//!
//! - [`wire`]: zero-copy views and builders for DHCP/BOOTP with PXE options,
//!   TFTP with its option extensions, the transaction protocol and the
//!   image-safe data record. Never allocates, never panics on any input.
//! - Sans-IO engines ([`dhcp`], [`tftp`], [`mtftp`], [`transaction`], [`policy`]):
//!   plain state machines that own no socket, no clock and no file. The
//!   caller feeds datagrams and time in (`handle`, `handle_timeout`) and
//!   drains datagrams, deadlines and events out (`poll_transmit`,
//!   `poll_timeout`, `poll_event`): one contract, written once in
//!   [`engine`] with how to drive an engine.
//! - Drivers ([`driver`], feature `std`): the engines on real UDP sockets
//!   and files.
//!
//! The core (wire + engines) is `#![no_std]` and builds for bare-metal
//! targets with `--no-default-features`. Feature `alloc` enables heap-backed
//! containers with configurable limits; `std` (default) adds the drivers.
//!
//! # Quick start
//!
//! Read a PXE client's DISCOVER (RFC 2131 with the PXE options of RFC 4578):
//! the view borrows the datagram, typed accessors read the options a boot
//! server needs. Here the DISCOVER is built with the same wire layer, as a
//! UEFI x64 firmware sends it:
//!
//! ```
//! use preboot::wire::dhcp::{DhcpHeader, DhcpOption, DhcpPacket, List, MessageType, OptionData};
//! use preboot::wire::pxe::ClientArch;
//!
//! let mut datagram = [0u8; 576];
//! let hdr = DhcpHeader { op: 1, htype: 1, hlen: 6, xid: 0x2a, ..DhcpHeader::default() };
//! let n = hdr.emit(&[
//!     DhcpOption::MessageType(MessageType::Discover),
//!     DhcpOption::VendorClassIdentifier(OptionData::new(b"PXEClient:Arch:00007:UNDI:003000")),
//!     DhcpOption::ClientSystemArchitecture(List::Items(&[ClientArch::EfiBc])),
//! ], &mut datagram)?;
//!
//! let discover = DhcpPacket::new_checked(&datagram[..n])?;
//! assert_eq!(discover.message_type(), Some(MessageType::Discover));
//! assert_eq!(discover.client_arch(), Some(ClientArch::EfiBc)); // option 93
//! assert_eq!(discover.pxe_vendor_class().and_then(|v| v.arch), Some(ClientArch::EfiBc));
//! println!("{:?}", discover.vendor_class()); // Some(OptionData("PXEClient:Arch:00007:UNDI:003000"))
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Answer it with the proxyDHCP engine (PXE 2.1 §2.2.2): no socket, no
//! clock — feed the datagram and the time in, drain the answer out (every
//! engine is driven the same way: see [`engine`]). The
//! proxy OFFER names the boot server; the client then asks it on port 4011
//! for the file of its architecture:
//!
//! ```
//! use std::net::{Ipv4Addr, SocketAddrV4};
//! use preboot::Instant;
//! use preboot::dhcp::{BootArch, Server, ServerConfig, config::BootEntry};
//! use preboot::engine::Datagram;
//! use preboot::wire::dhcp::{DhcpHeader, DhcpOption, DhcpPacket, List, MessageType, OptionData};
//! use preboot::wire::pxe::ClientArch;
//!
//! let mut config = ServerConfig::proxy(Ipv4Addr::new(192, 168, 1, 10));
//! config.boot.set(BootArch::UefiX64, BootEntry::tftp("efi64/bootx64.efi"));
//! let mut server = Server::new(config)?;
//!
//! // A UEFI x64 client: DISCOVER on 67, then REQUEST on 4011.
//! let client = |kind, buf: &mut [u8]| {
//!     let hdr = DhcpHeader { op: 1, htype: 1, hlen: 6, xid: 7, ..DhcpHeader::default() };
//!     hdr.emit(&[
//!         DhcpOption::MessageType(kind),
//!         DhcpOption::VendorClassIdentifier(OptionData::new(b"PXEClient:Arch:00007:UNDI:003000")),
//!         DhcpOption::ClientSystemArchitecture(List::Items(&[ClientArch::EfiBc])),
//!     ], buf)
//! };
//! let (mut request, mut answer) = ([0u8; 576], [0u8; Server::MAX_DATAGRAM]);
//! // The server's sockets, as bound: the datagram's `local` says which.
//! let port67 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67);
//! let port4011 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4011);
//! let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
//! let now = Instant::from_millis(0);
//!
//! let n = client(MessageType::Discover, &mut request)?;
//! server.handle(now, Datagram { local: port67, remote: from, payload: &request[..n] });
//! let offer = server.poll_transmit(now, &mut answer)?.expect("a proxy OFFER");
//! let p = DhcpPacket::new_checked(&answer[..offer.len])?;
//! assert_eq!(p.message_type(), Some(MessageType::Offer));
//! assert_eq!(p.yiaddr(), Ipv4Addr::UNSPECIFIED); // proxyDHCP gives no address
//!
//! let n = client(MessageType::Request, &mut request)?;
//! let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 77), 68);
//! server.handle(now, Datagram { local: port4011, remote: from, payload: &request[..n] });
//! let ack = server.poll_transmit(now, &mut answer)?.expect("an ACK from 4011");
//! let p = DhcpPacket::new_checked(&answer[..ack.len])?;
//! assert_eq!(p.message_type(), Some(MessageType::Ack));
//! assert_eq!(p.file(), b"efi64/bootx64.efi");
//! assert_eq!(ack.remote, from);
//! assert_eq!(ack.local, Some(port4011)); // sent from the 4011 socket
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// The driver exists only with `std`: without it this example (and its
// doctest) is left out.
#![cfg_attr(
    feature = "std",
    doc = r#"
Serve a directory over TFTP (RFC 1350 with blksize, tsize, timeout and
windowsize) with the std driver: one event loop per core, each on its
own thread, a fresh port per transfer, paths jailed to the root:

```
use preboot::driver::tftp::{TftpServer, TftpServerConfig};

let root = std::env::temp_dir().join(format!("preboot-doc-{}", std::process::id()));
std::fs::create_dir_all(&root)?;
std::fs::write(root.join("pxelinux.0"), b"boot me")?;
let config = TftpServerConfig::new("127.0.0.1:0".parse()?, root.clone());
let server = TftpServer::bind(config)?.spawn()?;
println!("try: curl tftp://{}/pxelinux.0", server.local_addr());
server.stop()?;
std::fs::remove_dir_all(&root)?;
# Ok::<(), Box<dyn std::error::Error>>(())
```
"#
)]
//!
//! The first example needs neither `std` nor `alloc`: with
//! `default-features = false` the same calls build for a bare-metal target
//! (`examples/no-std-parse` is that crate, built for
//! `thumbv7em-none-eabihf` by CI). The whole boot server is
//! [`driver::boot_server`]; the `preboot-server` example runs it from a TOML
//! file.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
// Unit tests use std for their scaffolding (collections, formatting) in
// every feature set, so that `cargo test --no-default-features` runs the
// no-alloc code paths; the library itself sees std only with `std` (the
// bare-metal builds in CI check it never needs more).
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod time;
pub mod wire;

pub mod dhcp;
pub mod engine;
pub mod fs;
pub mod mtftp;
pub mod policy;
pub mod tftp;
pub mod transaction;
pub mod workstation;

#[cfg(feature = "std")]
pub mod driver;

pub use time::Instant;

// The README's Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
