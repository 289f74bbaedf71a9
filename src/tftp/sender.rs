//! The sending half of a server read transfer (RFC 1350 §6, RFC 7440 §4).
//!
//! State is a handful of counters: `base` (first block not yet
//! acknowledged) and `next` (next block to send). Blocks are read from the
//! file when sent, so re-sending after a timeout re-reads them: O(1) memory
//! per transfer. The file may be told which blocks come next (the next
//! block in lock-step, the next window with windowsize:
//! [`crate::fs::ReadAt::read_ahead`]) so it can read them during the round
//! trip; each block is still asked for with `read_at` when it is sent. An
//! ACK for a block in `base..next` advances `base` and starts the next
//! window right after it; an ACK for `base - 1` (a
//! duplicate) or anything older is ignored — the sender re-sends only when
//! its timer fires (RFC 1123 §4.2.3.1).

use super::{EventQueue, FailReason, Negotiated, Rollover};
use crate::Instant;
use crate::fs::ReadAt;
use crate::wire::tftp::{
    DATA_HEADER_LEN, ErrorCode, NetasciiEncoder, OptionSet, Options, Repr, emit_data_header,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// OACK sent, waiting for ACK 0.
    Oack,
    Data,
    Done,
}

/// Netascii read position at the start of the unacknowledged block and
/// after it (windowsize is 1 in netascii).
#[derive(Debug, Clone, Copy)]
struct AsciiPos {
    base: (u64, NetasciiEncoder),
    after: Option<(u64, NetasciiEncoder)>,
}

#[derive(Debug)]
pub(crate) struct ReadTransfer<F> {
    pub(crate) file: F,
    pub(crate) neg: Negotiated,
    oack: Option<OptionSet>,
    rollover: Rollover,
    max_retries: u8,
    ascii: Option<AsciiPos>,
    base: u64,
    next: u64,
    last: Option<(u64, usize)>,
    phase: Phase,
    oack_due: bool,
    error_due: Option<ErrorCode>,
    deadline: Option<Instant>,
    retries: u8,
    start: Instant,
    pub(crate) events: EventQueue,
}

impl<F: ReadAt> ReadTransfer<F> {
    pub(crate) fn new(
        now: Instant,
        file: F,
        neg: Negotiated,
        oack: Option<OptionSet>,
        rollover: Rollover,
        max_retries: u8,
        netascii: bool,
    ) -> Self {
        let mut t = ReadTransfer {
            file,
            neg,
            oack,
            rollover,
            max_retries,
            ascii: netascii.then_some(AsciiPos {
                base: (0, NetasciiEncoder::new()),
                after: None,
            }),
            base: 1,
            next: 1,
            last: None,
            phase: Phase::Data,
            oack_due: false,
            error_due: None,
            deadline: None,
            retries: 0,
            start: now,
            events: EventQueue::default(),
        };
        if t.oack.is_some() {
            t.phase = Phase::Oack;
            t.oack_due = true;
        } else {
            t.events.started(neg);
        }
        t
    }

    pub(crate) fn is_done(&self) -> bool {
        self.phase == Phase::Done && self.error_due.is_none()
    }

    fn acked_bytes(&self, abs: u64) -> u64 {
        let blk = u64::from(self.neg.blksize);
        match self.last {
            Some((last, len)) if abs >= last => (last - 1) * blk + len as u64,
            _ => abs * blk,
        }
    }

    fn fail(&mut self, reason: FailReason, send: Option<ErrorCode>) {
        if self.phase == Phase::Done {
            return;
        }
        let bytes = self.acked_bytes(self.base - 1);
        self.phase = Phase::Done;
        self.deadline = None;
        self.error_due = send;
        self.events.end(super::Event::Failed { reason, bytes });
    }

    pub(crate) fn on_ack(&mut self, now: Instant, block: u16) {
        match self.phase {
            Phase::Oack => {
                if block == 0 {
                    self.phase = Phase::Data;
                    self.retries = 0;
                    self.deadline = None;
                    self.events.started(self.neg);
                }
            }
            Phase::Data => {
                let lo = self.base - 1;
                let Some(abs) = self.rollover.abs_at_or_after(lo, block) else {
                    return;
                };
                if abs == lo || abs >= self.next {
                    // Duplicate, old, or not yet sent: never re-send on it.
                    return;
                }
                if let Some(a) = &mut self.ascii {
                    // windowsize 1: `abs` is `base`.
                    if let Some(after) = a.after.take() {
                        a.base = after;
                    }
                }
                self.base = abs + 1;
                self.next = self.base;
                self.retries = 0;
                self.deadline = None;
                let bytes = self.acked_bytes(abs);
                if self.last.is_some_and(|(l, _)| abs >= l) {
                    self.phase = Phase::Done;
                    self.events.end(super::Event::Completed {
                        bytes,
                        duration: now - self.start,
                    });
                } else {
                    self.events.progress(bytes);
                }
            }
            Phase::Done => {}
        }
    }

    pub(crate) fn on_error(&mut self, code: ErrorCode) {
        let reason = if self.phase == Phase::Oack && code == ErrorCode::OptionRefused {
            FailReason::Declined
        } else {
            FailReason::PeerError(code)
        };
        self.fail(reason, None);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            None
        } else {
            self.deadline
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Done || self.deadline.is_none_or(|d| now < d) {
            return;
        }
        self.deadline = None;
        self.retries = self.retries.saturating_add(1);
        if self.retries > self.max_retries {
            self.fail(FailReason::TimedOut, None);
            return;
        }
        match self.phase {
            Phase::Oack => self.oack_due = true,
            Phase::Data => {
                // Roll back to the first unacknowledged block.
                self.next = self.base;
                if let Some(a) = &mut self.ascii {
                    a.after = None;
                }
            }
            Phase::Done => {}
        }
    }

    /// The byte range (offset, length) this transfer will read next, when
    /// it is worth reading ahead: octet transfers only, and only while the
    /// last block has not been sent. That is the window that starts at
    /// `next` (`windowsize` blocks): after a window has left, the client's
    /// ACK of its last block starts the next one there (RFC 7440 §4); in
    /// lock-step (windowsize 1, RFC 1350 §2) it is the one block after
    /// `base`, or `base` itself before it is (re)sent. A rollback after a
    /// loss reads from before `next`, outside the hint, as it would
    /// without one. Netascii positions depend on the encoding of the block
    /// before.
    pub(crate) fn next_read(&self) -> Option<(u64, usize)> {
        let running = matches!(self.phase, Phase::Oack | Phase::Data);
        if !running || self.ascii.is_some() || self.last.is_some() {
            return None;
        }
        let blksize = usize::from(self.neg.blksize);
        let offset = (self.next - 1).checked_mul(blksize as u64)?;
        let window = usize::from(self.neg.windowsize.max(1));
        Some((offset, blksize.saturating_mul(window)))
    }

    /// Writes the next datagram into `buf`.
    pub(crate) fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some(code) = self.error_due.take() {
            return Repr::Error {
                code,
                message: code.default_message().as_bytes(),
            }
            .emit(buf)
            .ok();
        }
        match self.phase {
            Phase::Done => None,
            Phase::Oack => {
                if !self.oack_due {
                    return None;
                }
                let set = self.oack?;
                let n = Repr::Oack {
                    options: Options::Set(set),
                }
                .emit(buf)
                .ok()?;
                self.oack_due = false;
                self.deadline = Some(now + self.neg.timeout);
                Some(n)
            }
            Phase::Data => {
                let window_end = self.base + u64::from(self.neg.windowsize.max(1));
                if self.next >= window_end || self.last.is_some_and(|(l, _)| self.next > l) {
                    return None;
                }
                let blksize = usize::from(self.neg.blksize);
                if buf.len() < DATA_HEADER_LEN + blksize {
                    // The driver's buffer is smaller than negotiated: a bug
                    // in the caller; end the transfer instead of stalling.
                    self.fail(
                        FailReason::File(ErrorCode::NotDefined),
                        Some(ErrorCode::NotDefined),
                    );
                    return self.poll_transmit(now, buf);
                }
                let payload = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + blksize];
                let read = match &mut self.ascii {
                    None => {
                        let off = (self.next - 1) * blksize as u64;
                        self.file.read_full_at(off, payload)
                    }
                    Some(a) => read_netascii(&mut self.file, a, payload),
                };
                let n = match read {
                    Ok(n) => n,
                    Err(e) => {
                        self.fail(FailReason::File(e.error_code()), Some(e.error_code()));
                        return self.poll_transmit(now, buf);
                    }
                };
                emit_data_header(self.rollover.wire(self.next), buf).ok()?;
                if n < blksize {
                    self.last = Some((self.next, n));
                }
                self.next += 1;
                self.deadline = Some(now + self.neg.timeout);
                Some(DATA_HEADER_LEN + n)
            }
        }
    }
}

/// Fills `out` with netascii from the position at `a.base`; records the
/// position after the block in `a.after`.
fn read_netascii<F: ReadAt>(
    file: &mut F,
    a: &mut AsciiPos,
    out: &mut [u8],
) -> Result<usize, crate::fs::FsError> {
    let (mut off, mut enc) = a.base;
    let mut w = 0;
    let mut chunk = [0u8; 256];
    while w < out.len() {
        let want = chunk.len().min(out.len() - w);
        let got = file.read_at(off, &mut chunk[..want])?;
        if got == 0 {
            // End of file: flush a pending second byte, if any.
            let (_, n) = enc.encode(&[], &mut out[w..]);
            w += n;
            break;
        }
        let (c, n) = enc.encode(&chunk[..got], &mut out[w..]);
        off += c as u64;
        w += n;
    }
    a.after = Some((off, enc));
    Ok(w)
}
