//! The receiving half shared by the client (downloads) and the server's
//! write transfers (uploads): in-order delivery to a sink, RFC 7440 window
//! ACKs, one ACK per gap, and a dally period after the last block so a lost
//! final ACK can be repeated (RFC 1350 §6).

use core::time::Duration;

use super::{Event, EventQueue, FailReason, Rollover};
use crate::Instant;
use crate::fs::{FsError, WriteAt};
use crate::wire::tftp::{ErrorCode, NetasciiDecoder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RxState {
    Receiving,
    Dally { until: Instant },
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RxOutcome {
    /// In-order block accepted; `last` when it was the final one.
    Accepted { last: bool },
    /// Duplicate, old or out-of-order block (maybe an ACK is due).
    Ignored,
    /// The block is larger than `blksize`.
    Oversized,
    /// The sink refused the data.
    Sink(FsError),
}

impl RxOutcome {
    /// Records what a DATA block meant for a transfer that started at
    /// `start` and has `bytes` so far (its last block: completed; another:
    /// progress); a block that ends it badly comes back as the failure
    /// and the ERROR to send (RFC 1350 §7: oversized → 4, sink → its code).
    pub(crate) fn record(
        self,
        bytes: u64,
        start: Instant,
        now: Instant,
        events: &mut EventQueue,
    ) -> Option<(FailReason, Option<ErrorCode>)> {
        match self {
            RxOutcome::Accepted { last: true } => {
                events.end(Event::Completed {
                    bytes,
                    duration: now - start,
                });
                None
            }
            RxOutcome::Accepted { last: false } => {
                events.progress(bytes);
                None
            }
            RxOutcome::Ignored => None,
            RxOutcome::Oversized => Some((
                FailReason::Protocol(ErrorCode::IllegalOperation),
                Some(ErrorCode::IllegalOperation),
            )),
            RxOutcome::Sink(e) => Some((FailReason::File(e.error_code()), Some(e.error_code()))),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    pub(crate) blksize: u16,
    pub(crate) window: u16,
    pub(crate) rollover: Rollover,
    pub(crate) timeout: Duration,
    pub(crate) max_retries: u8,
    /// Next expected absolute block.
    pub(crate) next: u64,
    in_window: u16,
    pub(crate) ack_due: bool,
    gap_acked: bool,
    /// Wire bytes received in order.
    pub(crate) bytes: u64,
    /// File bytes written (differs from `bytes` in netascii).
    written: u64,
    decoder: Option<NetasciiDecoder>,
    pub(crate) state: RxState,
    pub(crate) deadline: Option<Instant>,
    retries: u8,
}

impl Receiver {
    pub(crate) fn new(
        blksize: u16,
        window: u16,
        rollover: Rollover,
        timeout: Duration,
        max_retries: u8,
        netascii: bool,
    ) -> Self {
        Receiver {
            blksize,
            window: window.max(1),
            rollover,
            timeout,
            max_retries,
            next: 1,
            in_window: 0,
            ack_due: false,
            gap_acked: false,
            bytes: 0,
            written: 0,
            decoder: netascii.then(NetasciiDecoder::new),
            state: RxState::Receiving,
            deadline: None,
            retries: 0,
        }
    }

    fn write(&mut self, data: &[u8], sink: &mut impl WriteAt) -> Result<(), FsError> {
        match &mut self.decoder {
            None => {
                sink.write_at(self.written, data)?;
                self.written += data.len() as u64;
            }
            Some(dec) => {
                let mut out = [0u8; 257];
                for chunk in data.chunks(256) {
                    let n = dec.decode(chunk, &mut out).ok_or(FsError::Io)?;
                    sink.write_at(self.written, &out[..n])?;
                    self.written += n as u64;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, sink: &mut impl WriteAt) -> Result<(), FsError> {
        if let Some(cr) = self.decoder.as_mut().and_then(|d| d.finish()) {
            sink.write_at(self.written, &[cr])?;
            self.written += 1;
        }
        sink.finish()
    }

    pub(crate) fn on_data(
        &mut self,
        now: Instant,
        block: u16,
        data: &[u8],
        sink: &mut impl WriteAt,
    ) -> RxOutcome {
        match self.state {
            RxState::Done => return RxOutcome::Ignored,
            RxState::Dally { .. } => {
                // Our final ACK was lost: the sender repeats the last block.
                if block == self.rollover.wire(self.next - 1) {
                    self.ack_due = true;
                }
                return RxOutcome::Ignored;
            }
            RxState::Receiving => {}
        }
        if data.len() > usize::from(self.blksize) {
            return RxOutcome::Oversized;
        }
        if block != self.rollover.wire(self.next) {
            // RFC 7440 §4: on a gap or a repeat, acknowledge the last block
            // received in order — once, so a window of stragglers does not
            // turn into a window of ACKs.
            if !self.gap_acked {
                self.gap_acked = true;
                self.ack_due = true;
                self.in_window = 0;
            }
            return RxOutcome::Ignored;
        }
        if let Err(e) = self.write(data, sink) {
            return RxOutcome::Sink(e);
        }
        self.next += 1;
        self.bytes += data.len() as u64;
        self.gap_acked = false;
        self.retries = 0;
        self.in_window += 1;
        if data.len() < usize::from(self.blksize) {
            if let Err(e) = self.finish(sink) {
                return RxOutcome::Sink(e);
            }
            self.ack_due = true;
            let dally = self.timeout.saturating_mul(u32::from(self.max_retries) + 1);
            let until = now + dally;
            self.state = RxState::Dally { until };
            self.deadline = Some(until);
            return RxOutcome::Accepted { last: true };
        }
        if self.in_window >= self.window {
            self.in_window = 0;
            self.ack_due = true;
        }
        self.deadline = Some(now + self.timeout);
        RxOutcome::Accepted { last: false }
    }

    /// Returns false when retries are exhausted.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> bool {
        match self.state {
            RxState::Done => true,
            RxState::Dally { until } => {
                if now >= until {
                    self.state = RxState::Done;
                    self.deadline = None;
                }
                true
            }
            RxState::Receiving => {
                if self.deadline.is_none_or(|d| now < d) {
                    return true;
                }
                self.retries = self.retries.saturating_add(1);
                if self.retries > self.max_retries {
                    self.state = RxState::Done;
                    self.deadline = None;
                    return false;
                }
                self.ack_due = true;
                self.in_window = 0;
                self.gap_acked = false;
                self.deadline = None;
                true
            }
        }
    }

    /// The wire number of the ACK to send, if one is due.
    pub(crate) fn poll_ack(&mut self, now: Instant) -> Option<u16> {
        if !self.ack_due {
            return None;
        }
        self.ack_due = false;
        if self.state == RxState::Receiving {
            self.deadline = Some(now + self.timeout);
        }
        Some(self.rollover.wire(self.next - 1))
    }
}
