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
//!
//! # Anti-amplification
//!
//! A request's source address can be spoofed, so the sender treats its
//! peer as unproven until it shows it receives our datagrams (in the
//! spirit of QUIC before address validation, RFC 9000 §8.1):
//!
//! - *Unvalidated*, the sender sends at most one datagram per datagram
//!   received from the peer (`credit`, at most one owed): the request pays
//!   for the first OACK or DATA; a timer that fires re-sends only with a
//!   credit left by a datagram that arrived since (the client's own
//!   retransmission of its request or ACK), so a timeout alone never sends.
//! - *Validated* by an ACK that acknowledges something we sent and arrived
//!   on the transfer's own port (only a receiver of our datagrams knows
//!   it; the server says so with `validate_by_port`), the negotiated
//!   window flows. The window is not grown from one block: firmware
//!   receivers (EDK2's, and the OVMF-like guest of `tests/tftp_gso_bridge`)
//!   acknowledge at multiples of `windowsize` only, so a window cut short
//!   stalls them for a whole timeout. The server bounds the window at
//!   negotiation instead ([`crate::tftp::server::ServerConfig::port_space`]).
//! - A timeout re-sends only the first unacknowledged block, not the
//!   window; the next ACK opens the window again. Consecutive timeouts back
//!   off exponentially (1, 2, 4, 8, 8, … times the timeout). A transfer
//!   whose peer never acknowledged anything (half-open) is timed on the
//!   server's own timeout, without back-off, whatever `timeout` the client
//!   asked for.

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
    /// One past the highest block ever sent: after a timeout rolls `next`
    /// back, an ACK of a block sent before still counts.
    high: u64,
    last: Option<(u64, usize)>,
    phase: Phase,
    oack_due: bool,
    error_due: Option<ErrorCode>,
    deadline: Option<Instant>,
    retries: u8,
    start: Instant,
    /// The peer proved it receives our datagrams (see the module docs).
    validated: bool,
    /// An ACK on the transfer's port validates the peer.
    validate_by_port: bool,
    /// The peer acknowledged something (the transfer is not half-open).
    acked: bool,
    /// Datagrams that may still be sent while unvalidated.
    credit: u8,
    /// A timeout fired since the last ACK: one block at a time.
    resending: bool,
    /// The server's own timeout (half-open transfers).
    server_timeout: core::time::Duration,
    pub(crate) events: EventQueue,
}

/// The server's settings a read transfer runs by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendConfig {
    pub(crate) rollover: Rollover,
    pub(crate) max_retries: u8,
    /// See [`crate::tftp::server::ServerConfig::validate_by_port`].
    pub(crate) validate_by_port: bool,
    /// The server's own timeout (half-open transfers).
    pub(crate) server_timeout: core::time::Duration,
}

/// Back-off doubles the timeout up to this many times.
const MAX_BACKOFF_SHIFT: u8 = 3;

impl<F: ReadAt> ReadTransfer<F> {
    pub(crate) fn new(
        now: Instant,
        file: F,
        neg: Negotiated,
        oack: Option<OptionSet>,
        netascii: bool,
        config: SendConfig,
    ) -> Self {
        let mut t = ReadTransfer {
            file,
            neg,
            oack,
            rollover: config.rollover,
            max_retries: config.max_retries,
            ascii: netascii.then_some(AsciiPos {
                base: (0, NetasciiEncoder::new()),
                after: None,
            }),
            base: 1,
            next: 1,
            high: 1,
            last: None,
            phase: Phase::Data,
            oack_due: false,
            error_due: None,
            deadline: None,
            retries: 0,
            start: now,
            validated: false,
            validate_by_port: config.validate_by_port,
            acked: false,
            // The request pays for the first answer.
            credit: 1,
            resending: false,
            server_timeout: config.server_timeout,
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

    /// True once the peer proved it receives our datagrams.
    pub(crate) fn validated(&self) -> bool {
        self.validated
    }

    /// A datagram arrived from the peer: it pays for one datagram while
    /// the peer is unvalidated. Credits do not accumulate beyond one.
    pub(crate) fn on_datagram(&mut self) {
        self.credit = 1;
    }

    /// The retransmission timeout after `retries` consecutive timeouts.
    fn rto(&self) -> core::time::Duration {
        if !self.acked {
            // Half-open: the server's schedule, not the client's.
            return self.server_timeout;
        }
        let shift = self.retries.min(MAX_BACKOFF_SHIFT);
        self.neg.timeout.saturating_mul(1u32 << shift)
    }

    /// Blocks the sender may have in flight past `base`.
    fn window(&self) -> u64 {
        if self.resending {
            1
        } else {
            u64::from(self.neg.windowsize.max(1))
        }
    }

    /// May a datagram go now? Unvalidated: one per datagram received;
    /// validated: as the window allows.
    fn may_send(&self) -> bool {
        self.validated || self.credit > 0
    }

    /// Accounts for a datagram sent (after [`Self::may_send`]).
    fn spend(&mut self) {
        if !self.validated {
            self.credit = self.credit.saturating_sub(1);
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
                    self.acked = true;
                    self.validated |= self.validate_by_port;
                    if self.validated {
                        // The window is paid by validation, not by credit.
                        self.credit = 0;
                    }
                    self.events.started(self.neg);
                }
            }
            Phase::Data => {
                let lo = self.base - 1;
                let Some(abs) = self.rollover.abs_at_or_after(lo, block) else {
                    return;
                };
                // Netascii positions are known only up to `next`.
                let sent = if self.ascii.is_some() {
                    self.next
                } else {
                    self.high
                };
                if abs == lo || abs >= sent {
                    // Duplicate, old, or not yet sent: never re-send on it.
                    return;
                }
                if let Some(a) = &mut self.ascii {
                    // windowsize 1: `abs` is `base`.
                    if let Some(after) = a.after.take() {
                        a.base = after;
                    }
                }
                self.acked = true;
                self.validated |= self.validate_by_port;
                if self.validated {
                    self.credit = 0;
                }
                self.resending = false;
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
        // Re-armed now: if nothing may be sent (no credit), the timer still
        // counts the retries that end a silent transfer.
        self.deadline = Some(now + self.rto());
        self.resending = true;
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
            return Repr::error(code).emit(buf).ok();
        }
        match self.phase {
            Phase::Done => None,
            Phase::Oack => {
                if !self.oack_due {
                    return None;
                }
                let set = self.oack?;
                if !self.may_send() {
                    return None;
                }
                self.spend();
                let n = Repr::Oack {
                    options: Options::Set(set),
                }
                .emit(buf)
                .ok()?;
                self.oack_due = false;
                self.deadline = Some(now + self.rto());
                Some(n)
            }
            Phase::Data => {
                let window_end = self.base + self.window();
                if self.next >= window_end || self.last.is_some_and(|(l, _)| self.next > l) {
                    return None;
                }
                if !self.may_send() {
                    // Nothing more until the peer sends again.
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
                self.spend();
                emit_data_header(self.rollover.wire(self.next), buf).ok()?;
                if n < blksize {
                    self.last = Some((self.next, n));
                }
                self.next += 1;
                self.high = self.high.max(self.next);
                self.deadline = Some(now + self.rto());
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
