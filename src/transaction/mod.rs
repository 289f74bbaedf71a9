//! Transaction protocol server and client engines (sans-IO),
//! docs/transaction-protocol.md version 2.
//!
//! - [`Server`]: answers `Hello` with a stateless cookie (§3.2), runs the
//!   responder side of the Noise `IK` handshake (§3.3), resolves the
//!   client's key to its workstation object (§3.4), keeps bounded sessions
//!   (§3.5) with one cached reply each (§6) and asks the [`Policy`] layer.
//! - [`Client`]: the preboot client's side: pins the server's key, runs the
//!   handshake, sends one sealed request at a time (in parts when long,
//!   §4.7) and retransmits with exponential backoff (§6).
//! - [`StaticKey`], [`KeyStore`], [`parse_key`]: keys (§3.1, §12);
//!   [`provision`]: the workstation's key record and first-boot key
//!   (§11).
//!
//! Neither engine owns a socket, a clock or a random source: time is an
//! argument of every call, randomness comes from a [`Random`] (server) or
//! is passed in (client). Both follow the [engine contract](crate::engine):
//! `handle(now, Datagram)`, `poll_transmit(now, buf)` into a buffer of at
//! least [`MAX_FRAME_LEN`](crate::wire::transaction::MAX_FRAME_LEN) bytes
//! (their `MAX_DATAGRAM`), `poll_timeout`, `handle_timeout`, `poll_event`.

mod client;
mod cookie;
pub(crate) mod crypto;
mod dh_cache;
mod handshake;
mod keys;
mod policy;
pub mod provision;
mod server;

pub use client::{Client, ClientConfig, ClientError, ClientEvent, HandshakeSeed};
#[cfg(feature = "alloc")]
pub use keys::WorkstationKeys;
pub use keys::{Hex, KeyError, KeyList, KeyStore, StaticKey, parse_key};
pub use policy::{CommitFailed, Policy};
pub use server::{DropReason, PendingKey, QUEUED, Server, ServerConfig, ServerEvent};

/// The random source gave no bytes (§11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no random source")]
pub struct NoRandomness;

/// A cryptographic random source, supplied by the driver (the engines never
/// take randomness themselves). The std driver reads `/dev/urandom`.
pub trait Random {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);

    /// Fill `buf`, or say that there is no random source (§11.2). The
    /// default calls [`Random::fill`]; a source that can fail overrides it.
    fn try_fill(&mut self, buf: &mut [u8]) -> Result<(), NoRandomness> {
        self.fill(buf);
        Ok(())
    }
}

impl<F: FnMut(&mut [u8])> Random for F {
    fn fill(&mut self, buf: &mut [u8]) {
        self(buf)
    }
}
