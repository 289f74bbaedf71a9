//! Lease persistence: what the engine asks to be written, and the trait a
//! store implements.
//!
//! The engine never writes itself. Every change to a granted lease comes out
//! of [`Server::poll_lease_update`](super::server::Server::poll_lease_update)
//! as a [`LeaseRecord`]; the driver hands them to a [`LeaseStore`]. The ACK
//! that grants a lease is marked [`Transmit::after_sync`](crate::engine::Transmit::after_sync):
//! a driver that must survive `kill -9` sends it only once the store has
//! synced the record, so no client ever holds a lease the store could lose.
//! On start the driver replays the stored records into
//! [`Server::restore`](super::server::Server::restore).

use core::net::Ipv4Addr;

use crate::Instant;

use super::leases::ClientKey;

/// What happened to a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Granted or extended (ACK).
    Granted,
    /// Given back (RELEASE), declined, or taken away.
    Released,
}

/// One change to persist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Granted or released.
    pub kind: RecordKind,
    /// The address.
    pub addr: Ipv4Addr,
    /// The holder.
    pub client: ClientKey,
    /// When the lease ends (engine time; the std driver's epoch is the Unix
    /// epoch, so this is wall-clock time there).
    pub expires: Instant,
}

/// Somewhere lease records survive the process.
pub trait LeaseStore {
    /// The store's error.
    type Error;
    /// Append one record (may be buffered until [`LeaseStore::sync`]).
    fn append(&mut self, record: &LeaseRecord) -> Result<(), Self::Error>;
    /// Make every appended record durable.
    fn sync(&mut self) -> Result<(), Self::Error>;
    /// Replay the stored state, oldest first.
    fn load(&mut self, each: &mut dyn FnMut(LeaseRecord)) -> Result<(), Self::Error>;
}

/// A store in memory (tests, and devices that keep no leases).
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Records appended, in order.
    pub records: alloc::vec::Vec<LeaseRecord>,
    /// How many records were durable at the last sync.
    pub synced: usize,
}

#[cfg(feature = "alloc")]
impl LeaseStore for MemoryStore {
    type Error = core::convert::Infallible;
    fn append(&mut self, record: &LeaseRecord) -> Result<(), Self::Error> {
        self.records.push(*record);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), Self::Error> {
        self.synced = self.records.len();
        Ok(())
    }
    fn load(&mut self, each: &mut dyn FnMut(LeaseRecord)) -> Result<(), Self::Error> {
        self.records[..self.synced].iter().for_each(|r| each(*r));
        Ok(())
    }
}
