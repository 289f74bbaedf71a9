//! Transaction protocol server and client engines (sans-IO),
//! docs/transaction-protocol.md.
//!
//! - [`Server`]: answers `Hello`, verifies proofs and MACs, keeps one
//!   cached reply per session (§6) and asks the [`Policy`] layer.
//! - [`Client`]: runs the handshake, sends one request at a time and
//!   retransmits with exponential backoff (§6).
//!
//! Neither owns a socket, a clock or a random source: time is an argument
//! of every call, randomness comes from a [`Random`] (server) or is passed
//! as a nonce (client). Both follow the [engine contract](crate::engine):
//! `handle(now, Datagram)`, `poll_transmit(now, buf)` into a buffer of at
//! least [`MAX_FRAME_LEN`](crate::wire::transaction::MAX_FRAME_LEN) bytes
//! (their `MAX_DATAGRAM`), `poll_timeout`, `handle_timeout`, `poll_event`.

mod client;
mod crypto;
mod keys;
mod policy;
mod server;

pub use client::{Client, ClientConfig, ClientError, ClientEvent};
#[cfg(feature = "alloc")]
pub use keys::{KeyError, WorkstationKeys};
pub use keys::{KeyStore, SiteKeys};
pub use policy::Policy;
pub use server::{Server, ServerConfig, ServerEvent};

/// A cryptographic random source, supplied by the driver (the engines never
/// take randomness themselves). The std driver reads `/dev/urandom`.
pub trait Random {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> Random for F {
    fn fill(&mut self, buf: &mut [u8]) {
        self(buf)
    }
}
