//! The server engine driven through its engine contract by arbitrary
//! operation sequences: requests (valid, hostile, to the listening port or
//! to a wrong one), datagrams from a transfer's client to its own port, to
//! another port, or from a stranger; accept / refuse / ignore decisions;
//! time steps, timeouts, read-ahead calls; small buffers; lazy event
//! polling. Each accepted transfer gets its own local endpoint
//! (`40000 + n`), so routing by (local, peer) is exercised.
//!
//! Checked, from a model the target keeps itself (never from the
//! engine's constants):
//!
//! - no panic; every `Transmit` is a well-formed TFTP packet, sent from
//!   `Some(local)`, never broadcast nor after a sync;
//! - routing: a transmit is either a refusal (an ERROR, sent before any
//!   transfer's datagram of the same drain, from the `local` a refused
//!   datagram arrived on, to its sender) or comes from a live transfer:
//!   `local` is that transfer's own endpoint and `remote` its peer; a
//!   finished transfer sends nothing; read transfers send DATA/OACK/ERROR
//!   (DATA no longer than the negotiated `blksize`), write transfers
//!   ACK/OACK/ERROR;
//! - buffers: `BufferTooSmall` only when the buffer is smaller than the
//!   datagram, naming more bytes than offered, at most an RFC 2348
//!   DATA (4 + 65464), and leaving the buffer untouched;
//! - anti-amplification: a read transfer sends, while its peer is not
//!   validated, at most as many datagrams as it received from that peer
//!   (its request included);
//! - bounded output: per drain a transfer sends at most its window plus
//!   two datagrams and has at most three events pending plus `Closed`;
//! - read-ahead hints (`read_ahead()`): none unless something was sent
//!   since the last call, at most one per transfer per call, never in
//!   netascii, never once the last (short) block went out, one window
//!   (`blksize * windowsize`) at a block boundary no further than the end
//!   of the file (RFC 1350 §2, RFC 7440 §4);
//! - events: every `Transfer` event names a live transfer with its peer
//!   and local; at most one end event (Completed/Failed) per transfer and
//!   nothing after it but exactly one `Closed`, which drops the file and
//!   makes the handle stale; after draining transmits then events no
//!   finished transfer is left; `active()` and `handles()` match the
//!   transfers accepted minus closed; `Refused` only for a datagram that
//!   went the request path, `Busy`/`ClientBusy` only at the configured
//!   limits; an octet read that completes reports the file's size;
//! - limits: an `Incoming` only under the limits and never for a client
//!   whose transfer is still running (a repeat); `accept_*` fails only at
//!   the limits; negotiation never grants more than asked nor more than
//!   configured (RFC 2347-2349, 7440);
//! - timers: after `handle_timeout(now)`, and again after draining what it
//!   released, `poll_timeout()` is `None` or later than `now`; a
//!   `handle_timeout` before the earliest deadline sends nothing and
//!   reports nothing; no transfer, no deadline.
#![no_main]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::engine::{BufferTooSmall, Datagram};
use preboot::fs::{FileSource, FsError, MemFile, MemFs, ReadAt, VecSink};
use preboot::tftp::server::{
    Direction, Incoming, RefuseReason, Server, ServerConfig, ServerEvent, Slot, TransferHandle,
};
use preboot::tftp::{Event, Rollover};
use preboot::wire::tftp::{ErrorCode, Mode, Repr};

/// Transfer slots given to the engine.
const SLOTS: usize = 6;
/// The largest TFTP datagram: DATA with RFC 2348's largest blksize.
const RFC_MAX_DATAGRAM: usize = 4 + 65464;
/// RFC 1350's block size, when none is negotiated.
const RFC_BLKSIZE: u16 = 512;
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const LISTEN: SocketAddrV4 = SocketAddrV4::new(SERVER_IP, 69);

type Hints = Rc<RefCell<Vec<(u64, usize)>>>;

/// A [`MemFile`] that records the hints it is given and may fail reads
/// from some offset on.
struct Hinted<'a> {
    inner: MemFile<'a>,
    hints: Hints,
    fail_from: Option<u64>,
}

impl ReadAt for Hinted<'_> {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        if self.fail_from.is_some_and(|f| offset >= f) {
            return Err(FsError::Io);
        }
        self.inner.read_at(offset, buf)
    }
    fn read_ahead(&mut self, offset: u64, len: usize) {
        self.hints.borrow_mut().push((offset, len));
    }
}

type Srv<'a> = Server<Hinted<'a>, VecSink, Vec<Slot<Hinted<'a>, VecSink>>>;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Dest {
    Listener,
    /// Port `40000 + k` modulo the ports handed out so far (+2): a live
    /// transfer's, a closed one's, or one never used.
    Port(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Route {
    /// From the transfer's client to the transfer's endpoint.
    Own,
    /// From the transfer's client to another endpoint.
    WrongLocal(Dest),
    /// From another client (maybe the same one) to the transfer's endpoint.
    Stranger(u8),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    /// ACK of this block, or (`None`) of the last block the transfer
    /// sent (0 after an OACK): what a client following along sends.
    Ack(Option<u16>),
    /// DATA of this block, or (`None`) of the one after the transfer's
    /// last ACK; `len` bytes, at most `blksize` unless `oversize`.
    Data {
        block: Option<u16>,
        len: u16,
        oversize: bool,
    },
    Error(u16),
    Raw(Vec<u8>),
    /// A (repeated) read request, to the listening port unless routed
    /// elsewhere.
    Rerequest,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Rrq {
        client: u8,
        to: Dest,
        file: u8,
        blksize: Option<u16>,
        windowsize: Option<u16>,
        timeout: Option<u8>,
        tsize: bool,
        netascii: bool,
        decide: u8,
    },
    Wrq {
        client: u8,
        to: Dest,
        blksize: Option<u16>,
        windowsize: Option<u16>,
        tsize: Option<u32>,
        netascii: bool,
        decide: u8,
    },
    RawRequest {
        client: u8,
        to: Dest,
        raw: Vec<u8>,
        decide: u8,
    },
    /// Two read requests handled before either is accepted.
    Two {
        a: u8,
        b: u8,
        file: u8,
        decide: u8,
    },
    Feed {
        transfer: u8,
        route: Route,
        payload: Payload,
        decide: u8,
    },
    Advance {
        ms: u16,
    },
    Timeouts,
    /// Jump to the earliest deadline and handle it (what a loop does).
    Deadline,
    ReadAhead,
    /// Move to `1 + us` µs before the earliest deadline and call
    /// `handle_timeout` there: nothing may fire yet.
    JustBefore {
        us: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Step {
    op: Op,
    /// Bit 0: skip `read_ahead` after sending; bit 1: leave events queued;
    /// bit 2: drain events before transmits too; bits 3-5: a small first
    /// buffer (5, 6, 7).
    flags: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sizes: [u16; 3],
    windowsize: u8,
    max_blksize: u16,
    max_per_client: u8,
    max_transfers: u8,
    timeout_ms: u16,
    max_retries: u8,
    max_timeout_s: u8,
    allow_write: bool,
    write_limit: Option<u32>,
    rollover_one: bool,
    validate_by_port: bool,
    port_space: u16,
    hash_key: u64,
    steps: Vec<Step>,
}

/// What a read transfer may be hinted.
struct ReadInfo {
    hints: Hints,
    size: u64,
    netascii: bool,
}

/// The target's model of one accepted, not yet closed transfer.
struct Live {
    peer: SocketAddrV4,
    local: SocketAddrV4,
    read: Option<ReadInfo>,
    /// Datagrams from the peer that may have paid for a send (the request,
    /// datagrams to the transfer, datagrams from the peer that went the
    /// request path): an over-count, never an under-count.
    received: u64,
    /// Datagrams sent while the peer was not validated.
    sent_unvalidated: u64,
    /// A Completed or Failed event was polled.
    ended: bool,
    /// A short DATA block (the last) went out.
    last_sent: bool,
    /// The block number of the last DATA (read) or ACK (write) sent; 0
    /// after an OACK.
    last_block: Option<u16>,
    sent_this_drain: u64,
    events_this_drain: u64,
}

/// A datagram that went the request path: the engine may refuse it.
struct MayRefuse {
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// Busy / ClientBusy were possible when it arrived.
    busy: bool,
    client_busy: bool,
}

struct Harness<'a> {
    server: Srv<'a>,
    fs: MemFs<'a>,
    config: ServerConfig,
    live: BTreeMap<TransferHandle, Live>,
    /// ERRORs the engine may send from the listening side: (local, remote).
    refusal_credits: Vec<(SocketAddrV4, SocketAddrV4)>,
    /// `Refused` events the engine may report.
    refused_credits: Vec<MayRefuse>,
    next_port: u16,
    now: Instant,
    buf: Vec<u8>,
    transmits_since_read_ahead: u64,
    /// Nothing is queued: transmits then events were drained.
    quiet: bool,
}

fn client(c: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, c % 3, 1), 1000 + u16::from(c))
}

fn rrq(
    file: u8,
    blksize: Option<u16>,
    windowsize: Option<u16>,
    timeout: Option<u8>,
    tsize: bool,
    netascii: bool,
) -> Vec<u8> {
    let mut v = b"\x00\x01".to_vec();
    v.extend_from_slice(
        ["a", "/b/c", "d", "missing", "../etc/passwd"][usize::from(file) % 5].as_bytes(),
    );
    v.extend_from_slice(if netascii {
        b"\x00netascii\x00"
    } else {
        b"\x00octet\x00"
    });
    if let Some(b) = blksize {
        v.extend_from_slice(format!("blksize\x00{b}\x00").as_bytes());
    }
    if let Some(w) = windowsize {
        v.extend_from_slice(format!("windowsize\x00{w}\x00").as_bytes());
    }
    if let Some(t) = timeout {
        v.extend_from_slice(format!("timeout\x00{t}\x00").as_bytes());
    }
    if tsize {
        v.extend_from_slice(b"tsize\x000\x00");
    }
    v
}

impl Harness<'_> {
    fn dest(&self, d: Dest) -> SocketAddrV4 {
        match d {
            Dest::Listener => LISTEN,
            Dest::Port(k) => {
                SocketAddrV4::new(SERVER_IP, 40000 + u16::from(k) % (self.next_port + 2))
            }
        }
    }

    fn per_ip(&self, ip: &Ipv4Addr) -> usize {
        self.live.values().filter(|l| l.peer.ip() == ip).count()
    }

    fn at_total_limit(&self) -> bool {
        self.live.len() >= SLOTS.min(self.config.max_transfers)
    }

    fn at_client_limit(&self, ip: &Ipv4Addr) -> bool {
        self.per_ip(ip) >= self.config.max_per_client
    }

    /// Feeds one datagram, keeping the model's books; returns the request
    /// it made, if any.
    fn feed<'p>(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        payload: &'p [u8],
    ) -> Option<Incoming<'p>> {
        let routed = self
            .live
            .values()
            .position(|l| l.local == local && l.peer == remote);
        match routed {
            Some(i) => self.live.values_mut().nth(i).unwrap().received += 1,
            None => {
                // Maybe a repeat of a running transfer's request.
                for l in self.live.values_mut().filter(|l| l.peer == remote) {
                    l.received += 1;
                }
                self.refusal_credits.push((local, remote));
                self.refused_credits.push(MayRefuse {
                    local,
                    remote,
                    busy: self.at_total_limit(),
                    client_busy: self.at_client_limit(remote.ip()),
                });
            }
        }
        let running = self
            .live
            .iter()
            .any(|(&h, l)| l.peer == remote && !self.server.is_finished(h));
        let limits = self.at_total_limit() || self.at_client_limit(remote.ip());
        let inc = self.server.handle(
            self.now,
            Datagram {
                local,
                remote,
                payload,
            },
        )?;
        assert!(
            routed.is_none(),
            "a datagram to a transfer came back as a request"
        );
        assert_eq!(
            (inc.local, inc.peer),
            (local, remote),
            "Incoming names another datagram"
        );
        assert!(
            !running,
            "a repeat of a running transfer's request came back as new"
        );
        assert!(!limits, "a request handed out at the limits");
        // Handed out, so not refused by the engine as well.
        self.refusal_credits.pop();
        self.refused_credits.pop();
        Some(inc)
    }

    fn fresh_local(&mut self) -> SocketAddrV4 {
        let p = SocketAddrV4::new(SERVER_IP, 40000 + self.next_port);
        self.next_port += 1;
        p
    }

    /// The application's decision on a request: 0 refuse, 1 ignore,
    /// otherwise accept (refuse a file that does not open); bit 7 makes
    /// the file fail its reads from some offset on.
    fn decide(&mut self, inc: &Incoming<'_>, decide: u8) {
        let asked = inc.options;
        match decide % 8 {
            0 => {
                self.server.refuse(inc, ErrorCode::AccessViolation);
                self.refusal_credits.push((inc.local, inc.peer));
                return;
            }
            1 => return,
            _ => {}
        }
        let limits = self.at_total_limit() || self.at_client_limit(inc.peer.ip());
        let local = self.fresh_local();
        let (result, read) = match inc.direction {
            Direction::Read => {
                let f = match self.fs.open(&inc.path) {
                    Ok(f) => f,
                    Err(e) => {
                        self.server.refuse(inc, e.error_code());
                        self.refusal_credits.push((inc.local, inc.peer));
                        return;
                    }
                };
                let size = f.size();
                let fail_from =
                    (decide & 0x80 != 0).then(|| u64::from(decide & 0x70) * 97 % (size + 1));
                let hints = Hints::default();
                let info = ReadInfo {
                    hints: hints.clone(),
                    size,
                    netascii: inc.mode == Mode::Netascii,
                };
                let file = Hinted {
                    inner: f,
                    hints,
                    fail_from,
                };
                (
                    self.server.accept_read(self.now, inc, file, local),
                    Some(info),
                )
            }
            Direction::Write => {
                let sink = VecSink {
                    limit: Some(u64::from(decide) * 1000),
                    ..VecSink::default()
                };
                (self.server.accept_write(self.now, inc, sink, local), None)
            }
        };
        let h = match result {
            Ok(h) => h,
            Err(_) => {
                assert!(limits, "accept failed under the limits");
                self.refusal_credits.push((inc.local, inc.peer));
                return;
            }
        };
        assert!(
            !self.live.contains_key(&h),
            "a live handle handed out again"
        );
        assert_eq!(self.server.peer(h), Some(inc.peer));
        assert_eq!(self.server.local(h), Some(local));
        // Negotiation: never more than asked, nor than configured.
        let neg = self.server.negotiated(h).expect("accepted transfer");
        match asked.blksize {
            Some(b) => {
                assert!(neg.blksize <= b, "blksize {} granted for {b}", neg.blksize);
                assert!(
                    neg.blksize <= self.config.max_blksize.max(8),
                    "blksize over the configured maximum"
                );
            }
            None => assert_eq!(neg.blksize, RFC_BLKSIZE, "blksize not asked for"),
        }
        assert!(neg.windowsize >= 1);
        assert!(
            neg.windowsize <= asked.windowsize.unwrap_or(1),
            "windowsize beyond the request"
        );
        assert!(
            neg.windowsize <= self.config.max_windowsize.max(1),
            "windowsize beyond the configured maximum"
        );
        if inc.mode == Mode::Netascii || !self.config.validate_by_port {
            assert_eq!(
                neg.windowsize, 1,
                "window without per-port validation or in netascii"
            );
        }
        let granted_timeout = asked
            .timeout
            .map(|t| Duration::from_secs(u64::from(t)))
            .filter(|&t| t <= self.config.max_timeout);
        assert!(
            neg.timeout == self.config.timeout || Some(neg.timeout) == granted_timeout,
            "timeout {:?} neither ours nor the (allowed) one asked",
            neg.timeout
        );
        if let Some(info) = &read {
            let want = (asked.tsize.is_some() && !info.netascii).then_some(info.size);
            assert_eq!(neg.tsize, want, "tsize of a read");
        }
        self.live.insert(
            h,
            Live {
                peer: inc.peer,
                local,
                read,
                received: 1,
                sent_unvalidated: 0,
                ended: false,
                last_sent: false,
                last_block: None,
                sent_this_drain: 0,
                events_this_drain: 0,
            },
        );
        assert_eq!(self.server.active(), self.live.len());
    }

    fn request(&mut self, local: SocketAddrV4, remote: SocketAddrV4, payload: &[u8], decide: u8) {
        if let Some(inc) = self.feed(local, remote, payload) {
            self.decide(&inc, decide);
        }
    }

    /// `read_ahead()` and the hints it gave.
    fn read_ahead(&mut self) {
        let before: Vec<usize> = self
            .live
            .values()
            .map(|l| l.read.as_ref().map_or(0, |r| r.hints.borrow().len()))
            .collect();
        self.server.read_ahead();
        for ((&h, l), before) in self.live.iter().zip(before) {
            let Some(info) = &l.read else { continue };
            let hints = info.hints.borrow();
            assert!(hints.len() <= before + 1, "more than one hint per call");
            let Some(&(offset, len)) = hints.get(before) else {
                continue;
            };
            assert!(
                self.transmits_since_read_ahead > 0,
                "a hint though nothing was sent"
            );
            assert!(!info.netascii, "hint in netascii");
            assert!(!l.last_sent, "hint after the last block");
            let neg = self.server.negotiated(h).expect("a live read transfer");
            let blksize = u64::from(neg.blksize);
            assert_eq!(
                len as u64,
                blksize * u64::from(neg.windowsize.max(1)),
                "hint is not one window"
            );
            assert_eq!(offset % blksize, 0, "hint off a block boundary");
            assert!(offset <= info.size, "hint past the end of the file");
        }
        self.transmits_since_read_ahead = 0;
    }

    /// Drains `poll_transmit`, starting with a buffer of `first` bytes.
    fn drain_transmits(&mut self, first: usize, expect_none: bool) {
        let finished: BTreeSet<TransferHandle> = self
            .live
            .keys()
            .copied()
            .filter(|&h| self.server.is_finished(h))
            .collect();
        for l in self.live.values_mut() {
            l.sent_this_drain = 0;
        }
        let mut len = first;
        let mut refusals_done = false;
        let mut n = 0u64;
        loop {
            if len < self.buf.len() {
                self.buf[..len].fill(0xee);
            }
            let t = match self.server.poll_transmit(self.now, &mut self.buf[..len]) {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(BufferTooSmall { needed }) => {
                    assert!(
                        needed > len,
                        "BufferTooSmall({needed}) for a buffer of {len}"
                    );
                    assert!(needed <= RFC_MAX_DATAGRAM, "{needed} bytes needed");
                    assert!(
                        self.buf[..len].iter().all(|&b| b == 0xee),
                        "BufferTooSmall wrote to the buffer"
                    );
                    len = needed;
                    continue;
                }
            };
            assert!(
                !expect_none,
                "sent {t:?} after a timeout call before any deadline"
            );
            n += 1;
            self.transmits_since_read_ahead += 1;
            assert!(t.len <= len && !t.broadcast && !t.after_sync, "{t:?}");
            let local = t.local.expect("a server transmit names its socket");
            let packet = Repr::parse_bytes(&self.buf[..t.len]).unwrap_or_else(|e| {
                panic!("malformed datagram sent ({e:?}): {:?}", &self.buf[..t.len])
            });
            let is_error = matches!(packet, Repr::Error { .. });
            let refusal = (!refusals_done && is_error)
                .then(|| {
                    self.refusal_credits
                        .iter()
                        .position(|&c| c == (local, t.remote))
                })
                .flatten();
            if let Some(i) = refusal {
                self.refusal_credits.swap_remove(i);
                continue;
            }
            refusals_done = true;
            let Some((&h, l)) = self
                .live
                .iter_mut()
                .find(|(_, l)| l.local == local && l.peer == t.remote)
            else {
                panic!("{t:?} ({packet:?}) is neither a refusal nor a live transfer's");
            };
            assert!(
                !finished.contains(&h),
                "a finished transfer sent {packet:?}"
            );
            let neg = self.server.negotiated(h).expect("a live transfer");
            l.sent_this_drain += 1;
            assert!(
                l.sent_this_drain <= u64::from(neg.windowsize) + 2,
                "{} datagrams in one drain with windowsize {}",
                l.sent_this_drain,
                neg.windowsize
            );
            match (&l.read, packet) {
                (Some(_), Repr::Data { block, data }) => {
                    assert!(
                        data.len() <= usize::from(neg.blksize),
                        "DATA longer than blksize"
                    );
                    l.last_sent |= data.len() < usize::from(neg.blksize);
                    l.last_block = Some(block);
                }
                (None, Repr::Ack { block }) => l.last_block = Some(block),
                (_, Repr::Oack { .. }) => l.last_block = Some(0),
                (_, Repr::Error { .. }) => {}
                (_, p) => panic!("transfer sent {p:?}"),
            }
            if l.read.is_some() && !self.server.validated(h) {
                l.sent_unvalidated += 1;
                assert!(
                    l.sent_unvalidated <= l.received,
                    "amplification: {} sent unvalidated for {} received",
                    l.sent_unvalidated,
                    l.received
                );
            }
            // A bound far above any window (the windowsize is a u8 here).
            assert!(n <= (SLOTS as u64) * (256 + 2) + 64, "unbounded transmits");
        }
        // Every queued refusal has gone; the rest were never queued.
        self.refusal_credits.clear();
    }

    fn drain_events(&mut self, expect_none: bool) {
        for l in self.live.values_mut() {
            l.events_this_drain = 0;
        }
        let bound = 4 * self.live.len() + self.refused_credits.len();
        let mut n = 0;
        while let Some(ev) = self.server.poll_event() {
            assert!(
                !expect_none,
                "event {ev:?} after a timeout call before any deadline"
            );
            n += 1;
            assert!(n <= bound, "unbounded events");
            match ev {
                ServerEvent::Refused {
                    peer,
                    local,
                    reason,
                    ..
                } => {
                    let i = self
                        .refused_credits
                        .iter()
                        .position(|c| {
                            (c.local, c.remote) == (local, peer)
                                && match reason {
                                    RefuseReason::Busy => c.busy,
                                    RefuseReason::ClientBusy => c.client_busy,
                                    RefuseReason::WriteDisabled => !self.config.allow_write,
                                    _ => true,
                                }
                        })
                        .unwrap_or_else(|| {
                            panic!("{ev:?} for no such datagram (or not at the limits)")
                        });
                    // In arrival order: the earliest datagram that may
                    // have drawn this refusal.
                    self.refused_credits.remove(i);
                }
                ServerEvent::Transfer {
                    transfer,
                    peer,
                    local,
                    event,
                } => {
                    let neg = self.server.negotiated(transfer);
                    let l = self
                        .live
                        .get_mut(&transfer)
                        .unwrap_or_else(|| panic!("{ev:?} of no live transfer"));
                    assert_eq!((l.peer, l.local), (peer, local), "{ev:?}");
                    assert!(!l.ended, "{ev:?} after the transfer ended");
                    l.events_this_drain += 1;
                    assert!(l.events_this_drain <= 3, "more than three events pending");
                    let octet_size = l.read.as_ref().filter(|r| !r.netascii).map(|r| r.size);
                    match event {
                        Event::Started(n) => assert_eq!(Some(n), neg, "Started with other options"),
                        Event::Progress { bytes } => {
                            if let Some(size) = octet_size {
                                assert!(bytes <= size, "progress {bytes} past the file's {size}");
                            }
                        }
                        Event::Completed { bytes, .. } => {
                            l.ended = true;
                            if let Some(size) = octet_size {
                                assert_eq!(bytes, size, "a completed read did not send the file");
                            }
                        }
                        Event::Failed { .. } => l.ended = true,
                        _ => {}
                    }
                }
                ServerEvent::Closed {
                    transfer,
                    peer,
                    local,
                } => {
                    let l = self
                        .live
                        .remove(&transfer)
                        .unwrap_or_else(|| panic!("{ev:?} of no live transfer"));
                    assert_eq!((l.peer, l.local), (peer, local), "{ev:?}");
                    assert!(l.ended, "Closed without Completed or Failed");
                    assert!(
                        self.server.is_finished(transfer),
                        "stale handle not finished"
                    );
                    assert_eq!(
                        self.server.peer(transfer),
                        None,
                        "a closed transfer's handle is not stale"
                    );
                    assert_eq!(self.server.local(transfer), None);
                    assert_eq!(self.server.negotiated(transfer), None);
                    assert!(!self.server.validated(transfer));
                    if let Some(r) = &l.read {
                        assert_eq!(Rc::strong_count(&r.hints), 1, "Closed kept the file");
                    }
                }
                _ => {}
            }
            assert_eq!(
                self.server.active(),
                self.live.len(),
                "active() after {ev:?}"
            );
        }
        // Nothing polled: nothing can be pending any more.
        self.refused_credits.clear();
    }

    fn check_state(&self) {
        assert_eq!(self.server.active(), self.live.len(), "active()");
        assert!(self.live.len() <= SLOTS.min(self.config.max_transfers));
        let handles: BTreeSet<TransferHandle> = self.server.handles().collect();
        assert!(
            handles.iter().eq(self.live.keys()),
            "handles() is not the live transfers"
        );
        for (&h, l) in &self.live {
            assert_eq!(self.server.peer(h), Some(l.peer));
            assert_eq!(self.server.local(h), Some(l.local));
            assert!(
                self.per_ip(l.peer.ip()) <= self.config.max_per_client,
                "per-client limit"
            );
        }
        if self.live.is_empty() {
            assert_eq!(
                self.server.poll_timeout(),
                None,
                "a deadline without transfers"
            );
        }
    }

    /// `handle_timeout(now)`; returns true when nothing was due.
    fn timeouts(&mut self) -> bool {
        let due = self.server.poll_timeout().is_some_and(|t| t <= self.now);
        self.server.handle_timeout(self.now);
        if let Some(t) = self.server.poll_timeout() {
            assert!(
                t > self.now,
                "deadline {t:?} not after {:?} once handled",
                self.now
            );
        }
        !due
    }

    /// The driver's half of a step: transmits, read-ahead, events; then
    /// the model and the engine must agree.
    fn step_end(&mut self, flags: u8, nothing_due: bool, timed: bool) {
        // A timeout call before any deadline, in a quiet engine: nothing.
        let expect_none = nothing_due && self.quiet;
        if flags & 4 != 0 {
            self.drain_events(expect_none);
        }
        let first = match (flags >> 3) & 7 {
            5 => 0,
            6 => 100,
            7 => 600,
            _ => RFC_MAX_DATAGRAM,
        };
        self.drain_transmits(first, expect_none);
        if flags & 1 == 0 {
            self.read_ahead();
        }
        if timed {
            // What the timers released has gone: the next deadline is
            // later (a driver never spins on it).
            if let Some(t) = self.server.poll_timeout() {
                assert!(
                    t > self.now,
                    "deadline {t:?} not after {:?} once handled and drained",
                    self.now
                );
            }
        }
        self.quiet = flags & 2 == 0;
        if self.quiet {
            self.drain_events(expect_none);
            for &h in self.live.keys() {
                assert!(
                    !self.server.is_finished(h),
                    "an ended transfer was not closed"
                );
            }
        }
        self.check_state();
    }
}

fuzz_target!(|input: Input| {
    // Contents with CR and LF, so netascii has something to encode.
    static CONTENT: OnceLock<Vec<u8>> = OnceLock::new();
    let content = CONTENT.get_or_init(|| (0..3 * 65536).map(|j| b"x\n\ryz"[j * 7 % 5]).collect());
    let [a, b, d] = input.sizes.map(usize::from);
    let files: Vec<(&str, &[u8])> = vec![
        ("a", &content[..a]),
        ("b/c", &content[1..1 + b * 3]),
        ("d", &content[2..2 + d % 1024]),
    ];
    let config = ServerConfig {
        timeout: Duration::from_millis(1 + u64::from(input.timeout_ms % 3000)),
        max_retries: input.max_retries % 8,
        max_blksize: 8 + input.max_blksize % (65464 - 7),
        max_windowsize: u16::from(input.windowsize).max(1),
        rollover: if input.rollover_one {
            Rollover::ToOne
        } else {
            Rollover::ToZero
        },
        max_transfers: match input.max_transfers % 8 {
            0 => usize::MAX,
            n => usize::from(n),
        },
        max_per_client: usize::from(input.max_per_client % 8),
        allow_write: input.allow_write,
        max_write_size: input.write_limit.map(u64::from),
        max_timeout: Duration::from_secs(u64::from(input.max_timeout_s % 10)),
        validate_by_port: input.validate_by_port,
        port_space: u32::from(input.port_space),
        hash_key: input.hash_key,
    };
    let mut h = Harness {
        server: Server::new(config, (0..SLOTS).map(|_| Slot::new()).collect()),
        fs: MemFs::new(&files),
        config,
        live: BTreeMap::new(),
        refusal_credits: Vec::new(),
        refused_credits: Vec::new(),
        next_port: 0,
        now: Instant::ZERO,
        buf: vec![0u8; RFC_MAX_DATAGRAM],
        transmits_since_read_ahead: 0,
        quiet: true,
    };
    for step in input.steps.into_iter().take(2000) {
        let mut nothing_due = false;
        let mut timed = false;
        match step.op {
            Op::Rrq {
                client: c,
                to,
                file,
                blksize,
                windowsize,
                timeout,
                tsize,
                netascii,
                decide,
            } => {
                let raw = rrq(file, blksize, windowsize, timeout, tsize, netascii);
                let to = h.dest(to);
                h.request(to, client(c), &raw, decide);
            }
            Op::Wrq {
                client: c,
                to,
                blksize,
                windowsize,
                tsize,
                netascii,
                decide,
            } => {
                let mut raw = b"\x00\x02up".to_vec();
                raw.extend_from_slice(if netascii {
                    b"\x00netascii\x00"
                } else {
                    b"\x00octet\x00"
                });
                if let Some(b) = blksize {
                    raw.extend_from_slice(format!("blksize\x00{b}\x00").as_bytes());
                }
                if let Some(w) = windowsize {
                    raw.extend_from_slice(format!("windowsize\x00{w}\x00").as_bytes());
                }
                if let Some(t) = tsize {
                    raw.extend_from_slice(format!("tsize\x00{t}\x00").as_bytes());
                }
                let to = h.dest(to);
                h.request(to, client(c), &raw, decide);
            }
            Op::RawRequest {
                client: c,
                to,
                raw,
                decide,
            } => {
                let to = h.dest(to);
                h.request(to, client(c), &raw, decide);
            }
            Op::Two { a, b, file, decide } => {
                let ra = rrq(file, None, None, None, false, false);
                let rb = rrq(file.wrapping_add(1), Some(1024), Some(4), None, true, false);
                let ia = h.feed(LISTEN, client(a), &ra);
                let ib = if client(a) != client(b) {
                    h.feed(LISTEN, client(b), &rb)
                } else {
                    None
                };
                for inc in [ia, ib].iter().flatten() {
                    h.decide(inc, decide | 2);
                }
            }
            Op::Feed {
                transfer,
                route,
                payload,
                decide,
            } => {
                let picked = h
                    .live
                    .iter()
                    .nth(usize::from(transfer) % h.live.len().max(1));
                // No transfer: from a client to the listening port.
                let (peer, own) =
                    picked.map_or((client(transfer), LISTEN), |(_, l)| (l.peer, l.local));
                let last_block = picked.and_then(|(_, l)| l.last_block).unwrap_or(0);
                let blksize = picked
                    .and_then(|(&t, _)| h.server.negotiated(t))
                    .map_or(RFC_BLKSIZE, |n| n.blksize);
                let rerequest = matches!(payload, Payload::Rerequest);
                let (local, remote) = match route {
                    Route::Own if rerequest => (LISTEN, peer),
                    Route::Own => (own, peer),
                    Route::WrongLocal(d) => (h.dest(d), peer),
                    Route::Stranger(s) => (own, client(s)),
                };
                let bytes = match payload {
                    Payload::Ack(block) => {
                        let block = block.unwrap_or(last_block);
                        let [a, b] = block.to_be_bytes();
                        vec![0, 4, a, b]
                    }
                    Payload::Data {
                        block,
                        len,
                        oversize,
                    } => {
                        let block = block.unwrap_or(last_block.wrapping_add(1));
                        let len = if oversize {
                            usize::from(len) % 70000
                        } else {
                            usize::from(len) % (usize::from(blksize) + 1)
                        };
                        let mut d = vec![0x41u8; 4 + len];
                        d[..2].copy_from_slice(&[0, 3]);
                        d[2..4].copy_from_slice(&block.to_be_bytes());
                        d
                    }
                    Payload::Error(code) => {
                        let [a, b] = code.to_be_bytes();
                        vec![0, 5, a, b, b'x', 0]
                    }
                    Payload::Raw(raw) => raw,
                    Payload::Rerequest => b"\x00\x01a\x00octet\x00".to_vec(),
                };
                h.request(local, remote, &bytes, decide);
            }
            Op::Advance { ms } => h.now += Duration::from_millis(u64::from(ms)),
            Op::Timeouts => {
                nothing_due = h.timeouts();
                timed = true;
            }
            Op::Deadline => {
                if let Some(t) = h.server.poll_timeout() {
                    h.now = h.now.max(t);
                }
                nothing_due = h.timeouts();
                timed = true;
            }
            Op::ReadAhead => h.read_ahead(),
            Op::JustBefore { us } => {
                if let Some(t) = h.server.poll_timeout() {
                    let gap = Duration::from_micros(1 + u64::from(us));
                    let wait = t.saturating_duration_since(h.now);
                    if wait > gap {
                        h.now += wait - gap;
                    }
                }
                nothing_due = h.timeouts();
                timed = true;
            }
        }
        h.step_end(step.flags, nothing_due, timed);
    }
});
