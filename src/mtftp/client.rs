//! The PXE MTFTP client engine: listen, open, receive as master or as a
//! listener, re-open for what is missing, or fall back to TFTP (PXE 2.1
//! MTFTP, as EDK1's `MtftpListen`/`MtftpOpen`/`MtftpDownload` do it;
//! notes §2.5).
//!
//! # The state machine
//!
//! - **Listen** (item 1): the client's socket is bound to CPORT and joined
//!   to the group. For MTFTP_TMOUT ([`Channel::listen`]) it only listens.
//!   Every DATA it hears from the server — any block, in any order, also
//!   mid-file — is kept (written to the sink at its offset, marked in a
//!   bitmap of at most 65,535 blocks). While blocks keep coming the client
//!   keeps listening; once it has every block (the short block says how
//!   many there are) it is done.
//! - **Open** (item 2): after MTFTP_TMOUT of silence at the start, or
//!   MTFTP_DELAY ([`Channel::delay`]) of silence later (the stream ended or
//!   stopped with blocks still missing; items 6, 7), the client sends a
//!   plain RRQ — no options, octet, 512-byte blocks — to the server port,
//!   and repeats it every [`ClientConfig::timeout`] up to
//!   [`ClientConfig::max_retries`] times.
//! - **Master** (items 3, 4): DATA block 1 received *unicast* makes the
//!   client the master: it ACKs the stream's blocks in order, to the
//!   port the stream speaks from — cumulatively: the ACK of the block it
//!   waited for also covers the later blocks *this stream* already
//!   brought (a server that sends ahead, a link that reorders) — re-states
//!   how far it is on a repeated block and, when its timer fires, the
//!   last one (the server may have lost it); the blocks it had from
//!   before it opened are acknowledged like the others, so listeners get
//!   the whole stream. After `max_retries` silent timeouts the stream is
//!   gone: back to listening, re-open after MTFTP_DELAY. After the last
//!   block it dallies (re-ACKs a repeated last block) for two timeouts
//!   (RFC 1350 §6).
//! - **Listener**: a client that is not master never ACKs. Hearing blocks
//!   past block 1 while opening means another client is master (the
//!   server ignored our request, item 5): the client listens.
//! - **Fall back** (item 8): an open in which nothing at all was heard
//!   from the server counts as silent; after
//!   [`ClientConfig::max_silent_opens`] silent opens in a row, or an
//!   ERROR from the server in answer to our request, the client ends with
//!   [`ClientEvent::FallBack`]: the driver fetches the file by plain TFTP.
//!
//! Datagrams count as *multicast* when [`Datagram::local`] is a multicast
//! address (the group): the driver reports the datagram's destination
//! address there (`IP_PKTINFO`, or a socket bound to the group), and its
//! own unicast address (or the wildcard) otherwise. Only DATA and ERROR
//! from the server's address are looked at.
//!
//! Memory is O(1): an 8 KiB bitmap, no allocation. The sink
//! ([`WriteAt`]) receives each block once, at its offset, in any order;
//! [`WriteAt::finish`] is called once every block is there.
//!
//! ```
//! use core::net::{Ipv4Addr, SocketAddrV4};
//! use core::time::Duration;
//! use preboot::Instant;
//! use preboot::engine::Datagram;
//! use preboot::fs::SliceSink;
//! use preboot::mtftp::Channel;
//! use preboot::mtftp::client::{Client, ClientConfig, ClientEvent};
//!
//! let channel = Channel {
//!     group: SocketAddrV4::new(Ipv4Addr::new(239, 239, 239, 2), 1760),
//!     server: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1759),
//!     listen: Duration::from_secs(2),
//!     delay: Duration::from_secs(1),
//! };
//! let mut store = [0u8; 16];
//! let mut c = Client::new(Instant::ZERO, b"pxeboot.0", ClientConfig::new(channel), SliceSink::new(&mut store));
//! let mut buf = [0u8; 516];
//! // Nothing heard for MTFTP_TMOUT: open with a plain RRQ to SPORT.
//! let t = c.poll_timeout().unwrap();
//! c.handle_timeout(t);
//! let tx = c.poll_transmit(t, &mut buf)?.unwrap();
//! assert_eq!((&buf[..tx.len], tx.remote), (&b"\x00\x01pxeboot.0\x00octet\x00"[..], channel.server));
//! // Block 1 arrives unicast: this client is the master and ACKs it.
//! let me = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 1760);
//! c.handle(t, Datagram { local: me, remote: channel.server, payload: b"\x00\x03\x00\x01boot" });
//! let tx = c.poll_transmit(t, &mut buf)?.unwrap();
//! assert_eq!((&buf[..tx.len], tx.remote), (&b"\x00\x04\x00\x01"[..], channel.server));
//! assert_eq!(c.sink().data(), b"boot");
//! assert!(core::iter::from_fn(|| c.poll_event()).any(|e| matches!(e, ClientEvent::Completed { bytes: 4, .. })));
//! # Ok::<(), preboot::engine::BufferTooSmall>(())
//! ```

use core::net::SocketAddrV4;
use core::time::Duration;

use super::bitmap::Bitmap;
use super::{BLKSIZE, Channel};
use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram, Transmit};
use crate::fs::{FsError, WriteAt};
use crate::wire::tftp::{DATA_HEADER_LEN, ErrorCode, Mode, Options, Repr, Request};

/// Client settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// The file's group, CPORT, server, SPORT and delays (option 43
    /// sub-options 1–5).
    pub channel: Channel,
    /// RRQ and ACK retransmission timeout.
    pub timeout: Duration,
    /// RRQ repeats per open; the master's silent timeouts before it
    /// drops the stream.
    pub max_retries: u8,
    /// Opens in a row that hear nothing from the server before the client
    /// falls back to TFTP.
    pub max_silent_opens: u8,
}

impl ClientConfig {
    /// Defaults for `channel`: 1 s timeout, 4 retries, 2 silent opens.
    pub fn new(channel: Channel) -> Self {
        ClientConfig {
            channel,
            timeout: Duration::from_secs(1),
            max_retries: 4,
            max_silent_opens: 2,
        }
    }
}

/// Why the client gave MTFTP up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FallBackReason {
    /// Nothing heard from the server through `max_silent_opens` opens.
    NoAnswer,
    /// The server answered our request with an ERROR (no such file in its
    /// MTFTP table, file too large, busy).
    PeerError(ErrorCode),
}

/// What happened, for logs and progress ([`Client::poll_event`]).
/// Coalesced: at most one of each kind is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// An open began (an RRQ is going out); `opens` counts them.
    Opened {
        /// Opens so far.
        opens: u16,
    },
    /// Block 1 came unicast: this client is the master of the stream.
    Master,
    /// Blocks held so far, and the total once the last block was seen.
    Progress {
        /// Blocks held.
        blocks: u32,
        /// Blocks in the file, when known.
        total: Option<u16>,
    },
    /// Every block is in the sink (and [`WriteAt::finish`] was called).
    Completed {
        /// File bytes.
        bytes: u64,
        /// From the start of listening to the last block.
        duration: Duration,
        /// Opens it took (0: heard it all from others' streams).
        opens: u16,
    },
    /// MTFTP gave up: fetch the file by plain TFTP instead.
    FallBack {
        /// Why.
        reason: FallBackReason,
    },
    /// The sink refused a block; the transfer ended.
    Failed {
        /// The sink's error.
        error: FsError,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Events {
    opened: Option<u16>,
    master: bool,
    progress: Option<(u32, Option<u16>)>,
    end: Option<ClientEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Listen,
    Opening,
    Master,
    Dally,
    Ended,
}

/// What a DATA block meant to the bitmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rec {
    New,
    Dup,
    /// Inconsistent with what we hold (size, past the end): dropped.
    Invalid,
}

/// The largest datagram the client sends (an RRQ; a longer name ends the
/// client with [`FallBackReason::NoAnswer`] at once, no server could be
/// asked); also [`Client::MAX_DATAGRAM`].
pub const MAX_DATAGRAM: usize = DATA_HEADER_LEN + BLKSIZE as usize;

/// A PXE MTFTP download (client side); see the module docs.
#[derive(Debug)]
pub struct Client<'n, W> {
    config: ClientConfig,
    filename: &'n [u8],
    sink: W,
    have: Bitmap,
    /// The last block's number and length, once heard.
    last: Option<(u16, u16)>,
    phase: Phase,
    deadline: Option<Instant>,
    retries: u8,
    rrq_due: bool,
    ack_due: Option<u16>,
    /// Where the master's ACKs go: the server's address, the stream's port.
    ack_to: SocketAddrV4,
    /// Master: the next block of the stream.
    next: u16,
    /// As master: the highest block this stream brought. The server sends
    /// in order, so every block up to it went to the group in this
    /// stream: the master's ACK may pass over the ones it holds.
    stream_max: u16,
    /// Heard the server since this open began.
    heard: bool,
    silent_opens: u8,
    opens: u16,
    start: Instant,
    events: Events,
}

impl<'n, W: WriteAt> Client<'n, W> {
    /// The largest datagram this client sends.
    pub const MAX_DATAGRAM: usize = MAX_DATAGRAM;

    /// Starts listening for `filename` on the channel (the socket is bound
    /// to CPORT and joined to the group by the driver).
    pub fn new(now: Instant, filename: &'n [u8], config: ClientConfig, sink: W) -> Self {
        Client {
            config,
            filename,
            sink,
            have: Bitmap::new(),
            last: None,
            phase: Phase::Listen,
            deadline: Some(now + config.channel.listen),
            retries: 0,
            rrq_due: false,
            ack_due: None,
            ack_to: config.channel.server,
            next: 1,
            stream_max: 0,
            heard: false,
            silent_opens: 0,
            opens: 0,
            start: now,
            events: Events::default(),
        }
    }

    /// The sink.
    pub fn sink(&self) -> &W {
        &self.sink
    }

    /// Consumes the client, returning the sink.
    pub fn into_sink(self) -> W {
        self.sink
    }

    /// Blocks held so far.
    pub fn blocks(&self) -> u32 {
        self.have.count()
    }

    /// True once every block is in the sink.
    pub fn is_complete(&self) -> bool {
        self.last
            .is_some_and(|(l, _)| self.have.count() == u32::from(l))
    }

    /// True while this client is the stream's master.
    pub fn is_master(&self) -> bool {
        self.phase == Phase::Master
    }

    /// Opens (RRQs begun) so far.
    pub fn opens(&self) -> u16 {
        self.opens
    }

    /// True when the client has nothing left to do: complete (after the
    /// master's dally), fallen back, or failed.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Ended && self.ack_due.is_none()
    }

    fn end(&mut self, ev: ClientEvent) {
        self.phase = Phase::Ended;
        self.deadline = None;
        self.rrq_due = false;
        if self.events.end.is_none() {
            self.events.end = Some(ev);
        }
    }

    fn listen(&mut self, now: Instant) {
        self.phase = Phase::Listen;
        self.rrq_due = false;
        self.deadline = Some(now + self.config.channel.delay);
    }

    fn record(&mut self, block: u16, data: &[u8]) -> Result<Rec, FsError> {
        let blk = usize::from(BLKSIZE);
        let short = data.len() < blk;
        if block == 0 || data.len() > blk || (block == u16::MAX && !short) {
            return Ok(Rec::Invalid);
        }
        match self.last {
            Some((l, len)) => {
                if block > l
                    || (block == l && data.len() != usize::from(len))
                    || (block < l && short)
                {
                    return Ok(Rec::Invalid);
                }
            }
            None => {
                if short && self.have.any_above(block) {
                    return Ok(Rec::Invalid);
                }
            }
        }
        if self.have.contains(block) {
            return Ok(Rec::Dup);
        }
        let offset = u64::from(block - 1) * u64::from(BLKSIZE);
        self.sink.write_at(offset, data)?;
        self.have.insert(block);
        if short {
            self.last = Some((block, data.len() as u16));
        }
        Ok(Rec::New)
    }

    /// Feeds a datagram received on the client's socket (CPORT, unicast or
    /// from the group; see the module docs).
    pub fn handle(&mut self, now: Instant, dg: Datagram<'_>) {
        if dg.remote.ip() != self.config.channel.server.ip() {
            return;
        }
        let multicast = dg.local.ip().is_multicast();
        let Ok(repr) = Repr::parse_bytes(dg.payload) else {
            return;
        };
        match repr {
            Repr::Data { block, data } => self.on_data(now, dg.remote, multicast, block, data),
            Repr::Error { code, .. } if !multicast => {
                // The answer to our request, or our stream's end.
                if self.phase == Phase::Master && self.is_complete() {
                    // It stopped, but we hold every block already.
                    self.phase = Phase::Listen;
                    self.complete(now);
                } else if matches!(self.phase, Phase::Opening | Phase::Master) {
                    self.end(ClientEvent::FallBack {
                        reason: FallBackReason::PeerError(code),
                    });
                }
            }
            _ => {}
        }
    }

    fn on_data(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        multicast: bool,
        block: u16,
        data: &[u8],
    ) {
        match self.phase {
            Phase::Ended => return,
            Phase::Dally => {
                // Our last ACK was lost: the server repeats the last block.
                if from == self.ack_to && block == self.next.wrapping_sub(1) {
                    self.ack_due = Some(block);
                }
                return;
            }
            _ => {}
        }
        self.heard = true;
        self.silent_opens = 0;
        let rec = match self.record(block, data) {
            Ok(r) => r,
            Err(error) => {
                self.end(ClientEvent::Failed { error });
                return;
            }
        };
        if rec == Rec::New {
            self.events.progress = Some((self.have.count(), self.last.map(|(l, _)| l)));
        }
        let stream_last = self.last.is_some_and(|(l, _)| l == block);
        match self.phase {
            _ if rec == Rec::Invalid => {}
            Phase::Listen | Phase::Opening if !multicast && block == 1 => {
                // Unicast block 1: we are the master (item 3).
                self.phase = Phase::Master;
                self.rrq_due = false;
                self.ack_to = from;
                self.next = 2;
                self.stream_max = 1;
                self.retries = 0;
                self.ack_due = Some(1);
                self.deadline = Some(now + self.config.timeout);
                self.events.master = true;
                if stream_last {
                    self.stream_ended(now);
                }
            }
            Phase::Master if from == self.ack_to => {
                self.stream_max = self.stream_max.max(block);
                if block == self.next {
                    // ACKs are cumulative: pass over the blocks this
                    // stream already brought (a server sending ahead, a
                    // reordered link), never over ones it did not send
                    // yet (listeners need the whole stream).
                    let mut acked = block;
                    while acked < self.stream_max && self.have.contains(acked + 1) {
                        acked += 1;
                    }
                    self.ack_due = Some(acked);
                    self.next = acked.saturating_add(1);
                    self.retries = 0;
                    self.deadline = Some(now + self.config.timeout);
                    if self.last.is_some_and(|(l, _)| l == acked) {
                        self.stream_ended(now);
                    }
                } else if block < self.next {
                    // A repeat: our ACK was lost; say again how far we are.
                    self.ack_due = Some(self.next - 1);
                }
            }
            Phase::Master => {}
            Phase::Opening if block >= 2 => {
                // Blocks flow past 1: someone else is master (item 5).
                self.listen(now);
            }
            Phase::Opening => {}
            _ => {
                // Listening: the stream is alive; wait for its silence.
                self.deadline = Some(now + self.config.channel.delay);
            }
        }
        // A master completes at the stream's last block (above): it ACKs
        // the whole stream for the listeners, even blocks it already had.
        if self.is_complete() && matches!(self.phase, Phase::Listen | Phase::Opening) {
            self.complete(now);
        }
    }

    /// The master saw the stream's last block.
    fn stream_ended(&mut self, now: Instant) {
        if self.is_complete() {
            self.complete(now);
        } else {
            self.listen(now);
        }
    }

    fn complete(&mut self, now: Instant) {
        if let Err(error) = self.sink.finish() {
            self.end(ClientEvent::Failed { error });
            return;
        }
        let bytes = self.last.map_or(0, |(l, len)| {
            u64::from(l - 1) * u64::from(BLKSIZE) + u64::from(len)
        });
        self.events.end = Some(ClientEvent::Completed {
            bytes,
            duration: now - self.start,
            opens: self.opens,
        });
        if self.phase == Phase::Master {
            self.phase = Phase::Dally;
            // Two of our timeouts: the server re-sends the last block
            // after its own timeout if our ACK was lost, and our re-ACK
            // reaches it within the next. Longer would only hold the
            // workstation back (every listener has the file already; a
            // server whose last ACK never came stops the stream, harmless).
            self.deadline = Some(now + self.config.timeout.saturating_mul(2));
        } else {
            self.phase = Phase::Ended;
            self.deadline = None;
            self.rrq_due = false;
        }
    }

    /// When the client's timer fires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Lets the timer act (open, repeat, re-ACK, give up); spurious calls
    /// are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        let timeout = self.config.timeout;
        match self.phase {
            Phase::Listen => {
                self.phase = Phase::Opening;
                self.opens = self.opens.saturating_add(1);
                self.events.opened = Some(self.opens);
                self.heard = false;
                self.retries = 0;
                self.rrq_due = true;
                self.deadline = Some(now + timeout);
            }
            Phase::Opening => {
                self.retries = self.retries.saturating_add(1);
                if self.retries <= self.config.max_retries {
                    self.rrq_due = true;
                    self.deadline = Some(now + timeout);
                    return;
                }
                if !self.heard {
                    self.silent_opens = self.silent_opens.saturating_add(1);
                    if self.silent_opens >= self.config.max_silent_opens.max(1) {
                        self.end(ClientEvent::FallBack {
                            reason: FallBackReason::NoAnswer,
                        });
                        return;
                    }
                }
                self.listen(now);
            }
            Phase::Master => {
                self.retries = self.retries.saturating_add(1);
                if self.retries > self.config.max_retries {
                    // The stream is gone (item 7): done if it brought the
                    // rest; else listen and re-open later.
                    self.stream_ended(now);
                    return;
                }
                self.ack_due = Some(self.next - 1);
                self.deadline = Some(now + timeout);
            }
            Phase::Dally => {
                self.phase = Phase::Ended;
                self.deadline = None;
            }
            Phase::Ended => self.deadline = None,
        }
    }

    /// The next datagram to send, written into `buf`; one that does not
    /// fit stays queued ([`BufferTooSmall`], the
    /// [engine contract](crate::engine)).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        let send = |remote, len| Transmit {
            local: None,
            remote,
            len,
            broadcast: false,
            after_sync: false,
        };
        if let Some(block) = self.ack_due {
            let repr = Repr::Ack { block };
            let len = repr.emit(buf).map_err(|_| BufferTooSmall { needed: 4 })?;
            self.ack_due = None;
            return Ok(Some(send(self.ack_to, len)));
        }
        if self.phase == Phase::Opening && self.rrq_due {
            // Plain RFC 1350: no options, so no OACK and 512-byte blocks.
            let repr = Repr::Rrq(Request {
                filename: self.filename,
                mode: Mode::Octet,
                options: Options::NONE,
            });
            let needed = repr.buffer_len();
            if needed > MAX_DATAGRAM || self.filename.contains(&0) {
                self.end(ClientEvent::FallBack {
                    reason: FallBackReason::NoAnswer,
                });
                return Ok(None);
            }
            let Ok(len) = repr.emit(buf) else {
                return Err(BufferTooSmall { needed });
            };
            self.rrq_due = false;
            self.deadline = Some(now + self.config.timeout);
            return Ok(Some(send(self.config.channel.server, len)));
        }
        Ok(None)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if let Some(opens) = self.events.opened.take() {
            return Some(ClientEvent::Opened { opens });
        }
        if core::mem::take(&mut self.events.master) {
            return Some(ClientEvent::Master);
        }
        if let Some((blocks, total)) = self.events.progress.take() {
            return Some(ClientEvent::Progress { blocks, total });
        }
        self.events.end.take()
    }
}

// VecSink needs `alloc`.
#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::fs::VecSink;
    use core::net::Ipv4Addr;

    const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1759);
    const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 1, 1, 1), 1760);
    const ME: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 1760);

    fn client() -> Client<'static, VecSink> {
        let channel = Channel {
            group: GROUP,
            server: SERVER,
            listen: Duration::from_secs(1),
            delay: Duration::from_secs(1),
        };
        Client::new(
            Instant::ZERO,
            b"f",
            ClientConfig::new(channel),
            VecSink::default(),
        )
    }

    fn data(c: &mut Client<'_, VecSink>, now: Instant, multicast: bool, block: u16, len: usize) {
        let mut d = std::vec![block as u8; 4 + len];
        d[..4].copy_from_slice(&[0, 3, (block >> 8) as u8, block as u8]);
        let local = if multicast { GROUP } else { ME };
        c.handle(
            now,
            Datagram {
                local,
                remote: SERVER,
                payload: &d,
            },
        );
    }

    fn events(c: &mut Client<'_, VecSink>) -> std::vec::Vec<ClientEvent> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    /// A late joiner holds the tail (block 2, short) and becomes master of
    /// the next stream with block 1: it holds everything but ACKs on to
    /// the stream's end for the listeners (notes §2.5 item 6).
    fn master_with_everything() -> Client<'static, VecSink> {
        let mut c = client();
        data(&mut c, Instant::ZERO, true, 2, 10);
        data(&mut c, Instant::ZERO, false, 1, 512);
        assert!(c.is_master() && c.is_complete());
        assert!(!c.sink().finished, "a master finishes at the stream's end");
        c
    }

    // Found by fuzz/mtftp_client_engine: a master holding every block
    // whose stream went silent re-opened instead of completing.
    #[test]
    fn complete_master_whose_stream_stops_completes() {
        let mut c = master_with_everything();
        let mut buf = [0u8; 516];
        while c.poll_transmit(Instant::ZERO, &mut buf).unwrap().is_some() {}
        for _ in 0..20 {
            let Some(t) = c.poll_timeout() else { break };
            c.handle_timeout(t);
            while let Some(tx) = c.poll_transmit(t, &mut buf).unwrap() {
                assert_eq!(&buf[..2], b"\x00\x04", "only ACKs, no re-open: {tx:?}");
            }
        }
        assert!(c.is_finished() && c.sink().finished);
        assert!(
            events(&mut c)
                .iter()
                .any(|e| matches!(e, ClientEvent::Completed { bytes: 522, .. }))
        );
    }

    // Found by fuzz/mtftp_client_engine: an ERROR that ends the stream of
    // a master holding every block made it fall back to TFTP.
    #[test]
    fn complete_master_told_error_completes() {
        let mut c = master_with_everything();
        let mut buf = [0u8; 516];
        while c.poll_transmit(Instant::ZERO, &mut buf).unwrap().is_some() {}
        c.handle(
            Instant::ZERO,
            Datagram {
                local: ME,
                remote: SERVER,
                payload: b"\x00\x05\x00\x00x\x00",
            },
        );
        assert!(c.is_finished() && c.sink().finished);
        let evs = events(&mut c);
        assert!(
            evs.iter()
                .any(|e| matches!(e, ClientEvent::Completed { .. })),
            "{evs:?}"
        );
        assert!(
            !evs.iter()
                .any(|e| matches!(e, ClientEvent::FallBack { .. }))
        );
    }

    // Only the master ACKs (item 4): blocks heard on the group are kept
    // in any order without a word; a short block tells the count.
    #[test]
    fn listener_never_acks_and_keeps_any_order() {
        let mut c = client();
        let mut buf = [0u8; 516];
        for b in [3u16, 1, 2] {
            data(&mut c, Instant::ZERO, true, b, if b == 3 { 0 } else { 512 });
            assert!(c.poll_transmit(Instant::ZERO, &mut buf).unwrap().is_none());
        }
        assert!(c.is_finished() && c.is_complete());
        assert_eq!(c.sink().data.len(), 1024);
        assert_eq!(c.opens(), 0);
    }
}
