//! # preboot
//!
//! PXE network boot end to end, as an embeddable library:
//!
//! - [`wire`]: zero-copy views and builders for DHCP/BOOTP with PXE options,
//!   TFTP with its option extensions, the transaction protocol and the
//!   image-safe data record. Never allocates, never panics on any input.
//! - Sans-IO engines ([`dhcp`], [`tftp`], [`transaction`], [`policy`]):
//!   plain state machines that own no socket, no clock and no file. The
//!   caller feeds datagrams and time in (`handle`, `handle_timeout`) and
//!   drains datagrams, deadlines and events out (`poll_transmit`,
//!   `poll_timeout`, `poll_event`).
//! - Drivers ([`driver`], feature `std`): the engines on real UDP sockets
//!   and files.
//!
//! The core (wire + engines) is `#![no_std]` and builds for bare-metal
//! targets with `--no-default-features`. Feature `alloc` enables heap-backed
//! containers with configurable limits; `std` (default) adds the drivers.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod time;
pub mod wire;

pub mod dhcp;
pub mod fs;
pub mod policy;
pub mod tftp;
pub mod transaction;

#[cfg(feature = "std")]
pub mod driver;

pub use time::Instant;
