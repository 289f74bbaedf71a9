//! TFTP server and client engines (sans-IO).
//!
//! The engines own no socket, no clock and no file: the caller feeds
//! datagrams and time in and drains datagrams, deadlines and events out
//! (`handle`, `poll_transmit`, `poll_timeout`, `handle_timeout`,
//! `poll_event`). Files are read and written through [`crate::fs`] traits.
//!
//! - [`server::Server`]: answers requests arriving on the listening port and
//!   runs any number of transfers, each identified by a
//!   [`server::TransferHandle`]; the driver gives each transfer its own
//!   socket (RFC 1350 §4 transfer identifiers) or demultiplexes by peer
//!   address in single-port mode.
//! - [`client::Client`]: one read request (RFC 1350) with options
//!   (RFC 2347/2348/2349/7440), writing what arrives into a sink.
//!
//! Both sides implement RFC 7440 windows (the sender re-sends only on
//! timeout, never because a duplicate ACK arrived — RFC 1123 §4.2.3.1, the
//! "sorcerer's apprentice" rule), block-number rollover past 65535, and
//! bounded retransmission. Memory per transfer is O(1): blocks are re-read
//! from the file when they must be re-sent.

use core::time::Duration;

use crate::wire::tftp::ErrorCode;

mod block;
pub mod client;
mod deadlines;
mod receiver;
mod sender;
pub mod server;

pub use block::Rollover;

/// Options in force for a transfer, after negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Data bytes per block.
    pub blksize: u16,
    /// Blocks sent before waiting for an ACK (RFC 7440).
    pub windowsize: u16,
    /// Retransmission timeout.
    pub timeout: Duration,
    /// Transfer size, when known (RFC 2349).
    pub tsize: Option<u64>,
    /// True when options were acknowledged with an OACK.
    pub oack: bool,
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated {
            blksize: crate::wire::tftp::DEFAULT_BLKSIZE,
            windowsize: 1,
            timeout: Duration::from_secs(1),
            tsize: None,
            oack: false,
        }
    }
}

/// Why a transfer ended without completing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// The peer answered our OACK with ERROR 8 (RFC 2347): it only wanted
    /// the options (OVMF probes `tsize` this way, then reads again). A
    /// normal end, not an error; see [`FailReason::is_error`].
    Declined,
    /// The peer sent an ERROR packet.
    PeerError(ErrorCode),
    /// No answer after the configured number of retransmissions.
    TimedOut,
    /// Reading or writing the file failed; the peer got this ERROR code.
    File(ErrorCode),
    /// The peer broke the protocol (e.g. an OACK with options we did not
    /// ask for, a block larger than `blksize`); it got ERROR `code`.
    Protocol(ErrorCode),
}

impl FailReason {
    /// False for a normal abort ([`FailReason::Declined`]); true otherwise.
    pub fn is_error(&self) -> bool {
        !matches!(self, FailReason::Declined)
    }
}

/// What happened to a transfer, for logs, progress bars and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Options are settled and data starts to flow.
    Started(Negotiated),
    /// Bytes acknowledged (sender) or received (receiver) so far.
    /// Coalesced: polled events report the latest count.
    Progress {
        /// Bytes so far.
        bytes: u64,
    },
    /// The transfer finished.
    Completed {
        /// Bytes transferred (on the wire: netascii counts CR LF as two).
        bytes: u64,
        /// From the request to the last block.
        duration: Duration,
    },
    /// The transfer ended early.
    Failed {
        /// Why.
        reason: FailReason,
        /// Bytes transferred before it ended.
        bytes: u64,
    },
}

/// Coalesced pending events: O(1) memory however many blocks go by.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EventQueue {
    started: Option<Negotiated>,
    progress: Option<u64>,
    end: Option<Event>,
}

impl EventQueue {
    pub(crate) fn started(&mut self, n: Negotiated) {
        self.started = Some(n);
    }
    pub(crate) fn progress(&mut self, bytes: u64) {
        self.progress = Some(bytes);
    }
    pub(crate) fn end(&mut self, e: Event) {
        if self.end.is_none() {
            self.end = Some(e);
        }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.started.is_none() && self.progress.is_none() && self.end.is_none()
    }
    pub(crate) fn pop(&mut self) -> Option<Event> {
        if let Some(n) = self.started.take() {
            return Some(Event::Started(n));
        }
        if let Some(bytes) = self.progress.take() {
            return Some(Event::Progress { bytes });
        }
        self.end.take()
    }
}
