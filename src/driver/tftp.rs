//! The TFTP server on std UDP sockets: one `mio` event loop on one thread
//! serves thousands of concurrent transfers.
//!
//! Each accepted transfer gets a fresh UDP socket (a new source port, the
//! server's transfer identifier, RFC 1350 §4), connected to the client, so
//! the kernel drops datagrams from other sources; ports come from the
//! ephemeral range or from [`TftpServerConfig::port_range`]. With
//! [`TftpServerConfig::single_port`] every transfer is answered from the
//! listening socket and demultiplexed by client address (for NAT and
//! firewalls that only allow port 69).
//!
//! A window of DATA blocks (RFC 7440) leaves in one system call: on Linux
//! the transfer socket gets UDP generic segmentation offload for the
//! negotiated block size and the window's blocks are sent as one buffer
//! (see `batch`; [`TftpServerConfig::batch_sends`] turns this off).
//! Socket buffers are sized for the negotiated window, so a window never
//! overflows them; a block lost anyway is recovered by the engine rolling
//! back to the client's last in-order ACK.
//!
//! In lock-step (windowsize 1) each ACK is answered before the socket is
//! read again. Right after a DATA (or a window) leaves, the file is told
//! which blocks the next ACK will ask for
//! ([`crate::tftp::server::Server::read_ahead`]); a [`JailedFile`] reads
//! them then (one pread for a whole window of up to 64 KiB), so the read
//! overlaps the round trip instead of following each ACK.
//!
//! Files come from a [`JailedDir`]: read requests are accepted or refused
//! automatically (missing file → ERROR 1 at once, hostile path → ERROR 2).
//! Every transfer is logged with `tracing` (peer, file, options, bytes,
//! duration).
//!
//! ```no_run
//! use preboot::driver::tftp::{TftpServer, TftpServerConfig};
//! let config = TftpServerConfig::new("0.0.0.0:69".parse().unwrap(), "/srv/tftp".into());
//! let server = TftpServer::bind(config)?.spawn()?;
//! println!("serving on {}", server.local_addr());
//! // ... later:
//! server.stop()?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::prelude::rust_2024::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use std::vec;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use super::clients::ClientDirectory;
use super::fs::{JailedDir, JailedFile, Upload};
use crate::Instant;
use crate::fs::FsError;
use crate::tftp::server::{Incoming, RequestOutcome, Server, ServerConfig, Slot, TransferHandle};
use crate::tftp::{Event, Negotiated, Rollover};
use crate::wire::tftp::{DATA_HEADER_LEN, MAX_BLKSIZE};

mod batch;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
/// Longest a poll waits, so a stop flag without a waker is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// The largest [`TftpServerConfig::max_transfers`]: a transfer with its
/// own port needs one of the 65535 UDP ports, and every slot is allocated
/// at start (about 0.5 KiB each, 32 MiB at this maximum).
pub const MAX_TRANSFERS: usize = 65536;

/// File descriptors kept aside from the transfers' for the rest of the
/// process (listening sockets, the poll instance, the lease file, logs).
const RESERVED_FDS: u64 = 64;

/// Settings of the std TFTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpServerConfig {
    /// Listening address (IPv4; port 69 normally, any port for tests).
    pub bind: SocketAddr,
    /// Directory served; nothing outside it is ever read or written.
    pub root: PathBuf,
    /// Source ports for transfers (inclusive); `None`: any free port.
    pub port_range: Option<RangeInclusive<u16>>,
    /// Answer every transfer from the listening port (NAT-friendly).
    pub single_port: bool,
    /// Accept write requests (uploads).
    pub allow_write: bool,
    /// Uploads may replace existing files.
    pub allow_overwrite: bool,
    /// Largest upload, in bytes.
    pub max_write_size: Option<u64>,
    /// Concurrent transfers.
    pub max_transfers: usize,
    /// Concurrent transfers per client IP address.
    pub max_per_client: usize,
    /// Retransmission timeout when the client asks for none.
    pub timeout: Duration,
    /// Largest RFC 2349 `timeout` granted; a client asking for more gets
    /// none in the OACK and [`TftpServerConfig::timeout`] is used.
    pub max_timeout: Duration,
    /// Retransmissions before a transfer gives up.
    pub max_retries: u8,
    /// Largest `blksize` granted.
    pub max_blksize: u16,
    /// Largest `windowsize` granted.
    pub max_windowsize: u16,
    /// Block number after 65535.
    pub rollover: Rollover,
    /// Who is at which address (filled by the DHCP driver): log lines then
    /// carry the client's `mac` and `arch`.
    pub clients: Option<ClientDirectory>,
    /// Send each window of DATA blocks in one system call (UDP GSO on
    /// Linux; elsewhere, or when the kernel refuses, block by block).
    pub batch_sends: bool,
}

impl TftpServerConfig {
    /// Defaults: no uploads, 1024 transfers, 64 per client, 1 s timeout
    /// (clients may ask for up to 5 s), 5 retries, blksize up to 65464,
    /// windowsize up to 64.
    pub fn new(bind: SocketAddr, root: PathBuf) -> Self {
        TftpServerConfig {
            bind,
            root,
            port_range: None,
            single_port: false,
            allow_write: false,
            allow_overwrite: false,
            max_write_size: None,
            max_transfers: 1024,
            max_per_client: 64,
            timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(5),
            max_retries: 5,
            max_blksize: MAX_BLKSIZE,
            max_windowsize: 64,
            rollover: Rollover::ToZero,
            clients: None,
            batch_sends: true,
        }
    }

    fn engine(&self) -> ServerConfig {
        ServerConfig {
            timeout: self.timeout,
            max_retries: self.max_retries,
            max_blksize: self.max_blksize.clamp(8, MAX_BLKSIZE),
            max_windowsize: self.max_windowsize.max(1),
            rollover: self.rollover,
            max_transfers: self.max_transfers,
            max_per_client: self.max_per_client,
            allow_write: self.allow_write,
            max_write_size: self.max_write_size,
            max_timeout: self.max_timeout,
            // A transfer's own port is the secret that validates its peer;
            // one shared port is no secret.
            validate_by_port: !self.single_port,
            port_space: self.port_space(),
            hash_key: {
                use std::hash::BuildHasher;
                std::collections::hash_map::RandomState::new().hash_one(0x7466_7470u64)
            },
        }
    }

    /// How many ports a spoofer must try to find a transfer's: the port
    /// range, or the kernel's ephemeral range.
    fn port_space(&self) -> u32 {
        if let Some(r) = &self.port_range {
            return u32::from(*r.end()).saturating_sub(u32::from(*r.start())) + 1;
        }
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
                let (lo, hi) = (it.next()??, it.next()??);
                hi.checked_sub(lo).map(|d| d + 1)
            })
            .unwrap_or(ServerConfig::default().port_space)
    }

    /// File descriptors the transfers can hold: per transfer its file, and
    /// its socket unless in single-port mode.
    fn fds_needed(&self) -> u64 {
        let per = if self.single_port { 1 } else { 2 };
        self.max_transfers as u64 * per + RESERVED_FDS
    }
}

/// Makes sure the process may open the descriptors `config` needs: raises
/// the soft `RLIMIT_NOFILE` to the hard limit if needed, and refuses, with
/// the numbers, when even that is too low. Without this, transfers past
/// the limit would fail one by one with EMFILE.
#[cfg(target_os = "linux")]
fn check_fd_limit(config: &TftpServerConfig) -> io::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need = config.fds_needed();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft >= need {
        return Ok(());
    }
    if hard >= need && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        tracing::info!(
            from = soft,
            to = hard,
            need,
            "tftp: raised the open-file limit (RLIMIT_NOFILE)"
        );
        return Ok(());
    }
    let per = if config.single_port {
        "its file"
    } else {
        "a socket and its file"
    };
    Err(io::Error::other(format!(
        "max_transfers = {} needs {need} file descriptors ({per} per transfer, {RESERVED_FDS} kept for the rest) but RLIMIT_NOFILE allows {soft} (hard limit {hard}): raise the limit (ulimit -n, systemd LimitNOFILE=) or lower max_transfers",
        config.max_transfers
    )))
}

#[cfg(not(target_os = "linux"))]
fn check_fd_limit(_config: &TftpServerConfig) -> io::Result<()> {
    Ok(())
}

/// True for "no descriptor left" (EMFILE in the process, ENFILE in the
/// system), which the logs name as such.
fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Counters since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TftpStats {
    /// Transfers that completed.
    pub completed: u64,
    /// Transfers that failed (not counting declined option probes).
    pub failed: u64,
    /// Option probes the client ended with ERROR 8 (normal).
    pub declined: u64,
    /// Requests refused with an ERROR.
    pub refused: u64,
    /// Bytes sent or received in completed transfers.
    pub bytes: u64,
}

struct Conn {
    handle: TransferHandle,
    socket: Option<UdpSocket>,
    peer: SocketAddrV4,
    path: String,
    write: bool,
    armed: Option<Instant>,
    /// GSO in force on `socket` (windowed reads only).
    gso: Option<batch::Gso>,
    /// Windows of at most [`SMALL_WINDOW`] MTU-sized blocks.
    small_window: bool,
}

type Engine = Server<JailedFile, Upload, Vec<Slot<JailedFile, Upload>>>;

/// The std TFTP server. [`TftpServer::run`] is the blocking event loop;
/// [`TftpServer::spawn`] runs it on a thread.
pub struct TftpServer {
    config: TftpServerConfig,
    poll: Poll,
    waker: Arc<Waker>,
    listener: UdpSocket,
    local: SocketAddr,
    dir: JailedDir,
    engine: Engine,
    conns: Vec<Option<Conn>>,
    by_peer: HashMap<SocketAddrV4, TransferHandle>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    epoch: std::time::Instant,
    buf: Vec<u8>,
    /// A window of blocks laid end to end for one batched send.
    batch: Vec<u8>,
    rx: Vec<u8>,
    next_port: u32,
    stats: TftpStats,
    refusal_log: RefusalLog,
}

/// Lines about refused requests are rate-limited: at most
/// [`RefusalLog::PER_SECOND`] a second, then one line saying how many were
/// not logged (written with the next refusal after the second). A client
/// probing names (pxelinux) or a flood cannot fill the log; the state is a
/// start time and two counters.
struct RefusalLog {
    window: std::time::Instant,
    logged: u32,
    suppressed: u64,
}

impl RefusalLog {
    const PER_SECOND: u32 = 20;

    fn new() -> Self {
        RefusalLog {
            window: std::time::Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Whether this refusal may be logged now.
    fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        if now.duration_since(self.window) >= std::time::Duration::from_secs(1) {
            if self.suppressed > 0 {
                tracing::info!(
                    suppressed = self.suppressed,
                    per_second = Self::PER_SECOND,
                    "tftp: refused requests not logged (rate limit)"
                );
            }
            *self = RefusalLog {
                window: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if self.logged < Self::PER_SECOND {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// A transfer alone on the server with windows of at most this many
/// blocks of at most [`MTU_DATAGRAM`] bytes sends them block by block (see
/// `TftpServer::service`).
const SMALL_WINDOW: u16 = 16;
/// A DATA datagram of an Ethernet-MTU block (1468 + 4 bytes).
const MTU_DATAGRAM: usize = 1472;

fn v4(addr: SocketAddr) -> io::Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(ip) => Ok(SocketAddrV4::new(ip, a.port())),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TFTP server is IPv4 only",
            )),
        },
    }
}

fn udp_socket(addr: SocketAddrV4, buffer: usize) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    // Sized for a window of large blocks; the kernel caps at rmem/wmem_max.
    let _ = s.set_send_buffer_size(buffer);
    let _ = s.set_recv_buffer_size(buffer);
    s.bind(&SocketAddr::V4(addr).into())?;
    Ok(s.into())
}

impl TftpServer {
    /// Opens the root and binds the listening socket. Refuses a
    /// `max_transfers` above [`MAX_TRANSFERS`] or one the open-file limit
    /// cannot hold (after raising the soft limit to the hard one).
    pub fn bind(config: TftpServerConfig) -> io::Result<TftpServer> {
        if config.max_transfers > MAX_TRANSFERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "max_transfers = {} is above the maximum {MAX_TRANSFERS}",
                    config.max_transfers
                ),
            ));
        }
        check_fd_limit(&config)?;
        let dir = JailedDir::new(&config.root)?
            .with_uploads(config.allow_overwrite, config.max_write_size);
        let bind = v4(config.bind)?;
        let listener = UdpSocket::from_std(udp_socket(bind, 4 << 20)?);
        let local = listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listener = listener;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let slots = config.max_transfers.clamp(1, MAX_TRANSFERS);
        let engine = Server::new(config.engine(), (0..slots).map(|_| Slot::new()).collect());
        Ok(TftpServer {
            engine,
            conns: (0..slots).map(|_| None).collect(),
            config,
            poll,
            waker,
            listener,
            local,
            dir,
            by_peer: HashMap::new(),
            timers: BinaryHeap::new(),
            epoch: std::time::Instant::now(),
            buf: vec![0u8; 4 + usize::from(MAX_BLKSIZE)],
            batch: Vec::new(),
            rx: vec![0u8; 65536],
            next_port: 0,
            stats: TftpStats::default(),
            refusal_log: RefusalLog::new(),
        })
    }

    /// The listening address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Counters so far.
    pub fn stats(&self) -> TftpStats {
        self.stats
    }

    /// Transfers in progress.
    pub fn active_transfers(&self) -> usize {
        self.engine.active()
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Runs the event loop until `stop` is set (checked at least every
    /// 100 ms). Returns an error only if polling itself fails.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !stop.load(Ordering::Relaxed) {
            let now = self.now();
            let wait = self
                .timers
                .peek()
                .map(|Reverse((t, _))| t.saturating_duration_since(now))
                .unwrap_or(MAX_WAIT)
                .min(MAX_WAIT);
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.on_listener(),
                    WAKER => {}
                    Token(i) => self.on_transfer(i),
                }
            }
            self.fire_timers();
        }
        Ok(())
    }

    /// Runs the event loop on a new thread.
    pub fn spawn(mut self) -> io::Result<TftpServerHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let waker = self.waker.clone();
        let local = self.local;
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("preboot-tftp".into())
            .spawn(move || self.run(&flag).map(|()| self.stats))?;
        Ok(TftpServerHandle {
            local,
            stop,
            waker,
            thread,
        })
    }

    fn on_listener(&mut self) {
        loop {
            let (n, from) = match self.listener.recv_from(&mut self.rx) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors (ECONNREFUSED) and the like: keep serving.
                Err(_) => continue,
            };
            let Ok(from) = v4(from) else { continue };
            if self.config.single_port {
                if let Some(&h) = self.by_peer.get(&from) {
                    let now = self.now();
                    self.engine.handle(h, now, &self.rx[..n]);
                    self.service(h);
                    continue;
                }
            }
            self.on_request(from, n);
        }
        self.flush_listener();
    }

    fn on_request(&mut self, from: SocketAddrV4, n: usize) {
        let now = self.now();
        let datagram = std::mem::take(&mut self.rx);
        let outcome = self.engine.handle_request(now, from, &datagram[..n]);
        match outcome {
            RequestOutcome::Read(inc) => match self.dir.open_file(&inc.path) {
                Ok(file) => match self.engine.accept_read(now, &inc, file) {
                    Ok(h) => self.start(h, &inc, false),
                    Err(_) => self.refused(&inc, "limit reached"),
                },
                Err(e) => {
                    self.engine.refuse(&inc, e.error_code());
                    self.stats.refused += 1;
                    if self.refusal_log.allow() {
                        if e == FsError::NotFound {
                            // pxelinux probes many names: routine, not a
                            // warning, but an operator looking for a
                            // misnamed boot file must see it.
                            tracing::info!(peer = %from, file = inc.path.as_str(), "tftp: file not found");
                        } else if e == FsError::TooManyOpenFiles {
                            tracing::error!(peer = %from, file = inc.path.as_str(), active = self.engine.active(), "tftp: read refused: too many open files (EMFILE/ENFILE): raise RLIMIT_NOFILE or lower max_transfers");
                        } else {
                            tracing::warn!(peer = %from, file = inc.path.as_str(), error = %e, "tftp: read refused");
                        }
                    }
                }
            },
            RequestOutcome::Write(inc) => match self.dir.create(&inc.path) {
                Ok(up) => match self.engine.accept_write(now, &inc, up) {
                    Ok(h) => self.start(h, &inc, true),
                    Err(_) => self.refused(&inc, "limit reached"),
                },
                Err(e) => {
                    self.engine.refuse(&inc, e.error_code());
                    self.stats.refused += 1;
                    tracing::warn!(peer = %from, file = inc.path.as_str(), error = %e, "tftp: write refused");
                }
            },
            RequestOutcome::Refused { peer, code, reason } => {
                self.stats.refused += 1;
                tracing::warn!(peer = %peer, code = u16::from(code), reason = ?reason, "tftp: request refused");
            }
            RequestOutcome::Ignored => {}
        }
        self.rx = datagram;
    }

    fn refused(&mut self, inc: &Incoming<'_>, why: &str) {
        self.stats.refused += 1;
        if self.refusal_log.allow() {
            tracing::warn!(peer = %inc.peer, file = inc.path.as_str(), why, "tftp: request refused");
        }
    }

    fn bind_transfer_socket(&mut self, neg: Option<Negotiated>) -> io::Result<std::net::UdpSocket> {
        let ip = *v4(self.local)?.ip();
        let window = neg.map_or(1, |n| {
            usize::from(n.windowsize) * (usize::from(n.blksize) + 64)
        });
        let buffer = (2 * window).clamp(256 << 10, 8 << 20);
        match &self.config.port_range {
            None => udp_socket(SocketAddrV4::new(ip, 0), buffer),
            Some(range) => {
                let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
                if lo > hi {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "empty port range",
                    ));
                }
                let span = hi - lo + 1;
                for i in 0..span {
                    let port = lo + (self.next_port + i) % span;
                    match udp_socket(SocketAddrV4::new(ip, port as u16), buffer) {
                        Ok(s) => {
                            self.next_port = (self.next_port + i + 1) % span;
                            return Ok(s);
                        }
                        Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "no free port in range",
                ))
            }
        }
    }

    fn start(&mut self, h: TransferHandle, inc: &Incoming<'_>, write: bool) {
        let neg = self.engine.negotiated(h);
        let socket = if self.config.single_port {
            self.by_peer.insert(inc.peer, h);
            None
        } else {
            let sock = self.bind_transfer_socket(neg).and_then(|s| {
                s.connect(inc.peer)?;
                let mut s = UdpSocket::from_std(s);
                self.poll
                    .registry()
                    .register(&mut s, Token(h.index()), Interest::READABLE)?;
                Ok(s)
            });
            match sock {
                Ok(s) => Some(s),
                Err(e) => {
                    self.engine.remove(h);
                    self.engine
                        .refuse(inc, crate::wire::tftp::ErrorCode::NotDefined);
                    self.stats.refused += 1;
                    if out_of_fds(&e) {
                        tracing::error!(peer = %inc.peer, file = inc.path.as_str(), active = self.engine.active(), error = %e, "tftp: no transfer socket: too many open files (EMFILE/ENFILE): raise RLIMIT_NOFILE or lower max_transfers");
                    } else {
                        tracing::error!(peer = %inc.peer, file = inc.path.as_str(), error = %e, "tftp: no transfer socket");
                    }
                    return;
                }
            }
        };
        tracing::debug!(
            peer = %inc.peer,
            file = inc.path.as_str(),
            write,
            options = ?inc.options,
            "tftp: request accepted"
        );
        // Batching pays only for windows of at least two full-size blocks.
        let gso = match (&socket, neg) {
            (Some(s), Some(n)) if self.config.batch_sends && !write && n.windowsize > 1 => {
                let segment = DATA_HEADER_LEN + usize::from(n.blksize);
                // Smaller segments could not carry an ERROR or OACK.
                (n.blksize >= 512)
                    .then(|| batch::enable(s, segment))
                    .flatten()
            }
            _ => None,
        };
        if gso.is_some() && self.batch.is_empty() {
            self.batch = vec![0u8; batch::MAX_BATCH];
        }
        let small_window = neg.is_some_and(|n| {
            n.windowsize <= SMALL_WINDOW && DATA_HEADER_LEN + usize::from(n.blksize) <= MTU_DATAGRAM
        });
        self.conns[h.index()] = Some(Conn {
            handle: h,
            socket,
            peer: inc.peer,
            path: inc.path.as_str().to_owned(),
            write,
            armed: None,
            gso,
            small_window,
        });
        self.service(h);
    }

    fn on_transfer(&mut self, index: usize) {
        let Some(h) = self
            .conns
            .get(index)
            .and_then(|c| c.as_ref())
            .map(|c| c.handle)
        else {
            return;
        };
        // Lock-step transfers answer each datagram at once; windowed ones
        // read every queued ACK first and answer the newest (an answer per
        // ACK would start a window for each of them).
        let lock_step = self.engine.negotiated(h).is_none_or(|n| n.windowsize <= 1);
        let mut answered = false;
        loop {
            // `service` may have closed the transfer.
            let Some(sock) = self.conns[index]
                .as_ref()
                .filter(|c| c.handle == h)
                .and_then(|c| c.socket.as_ref())
            else {
                return;
            };
            match sock.recv(&mut self.rx) {
                Ok(n) => {
                    let now = self.now();
                    self.engine.handle(h, now, &self.rx[..n]);
                    // Answer before reading the socket again: in lock-step
                    // the next DATA leaves without waiting for the recv
                    // (usually EAGAIN) that ends the drain.
                    if lock_step {
                        self.service(h);
                        answered = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ECONNREFUSED from an ICMP port unreachable: the client is
                // gone; the timeout will end the transfer.
                Err(_) => break,
            }
        }
        if !answered {
            self.service(h);
        }
    }

    fn flush_listener(&mut self) {
        while let Some((to, n)) = self.engine.poll_listener_transmit(&mut self.buf) {
            let _ = self.listener.send_to(&self.buf[..n], SocketAddr::V4(to));
        }
    }

    /// Sends what the transfer has to send, lets its file read ahead, logs
    /// its events, re-arms its timer, and closes it when finished.
    fn service(&mut self, h: TransferHandle) {
        let index = h.index();
        let now = self.now();
        // A transfer alone on the server with small windows of MTU-sized
        // blocks sends block by block: the client starts on each datagram
        // as it arrives, where one GSO send hands it the whole window at its
        // end; the server has CPU to spare. With other transfers running,
        // batching's lower CPU per byte wins (benches/tftp-peers.sh, across
        // vCPUs, 1468 / window 16, one transfer: 340 MB/s block by block vs
        // 307 batched, raw UDP 283-350; 256 transfers: 576 vs 1290).
        let alone = self.engine.active() <= 1;
        if let Some(gso) = self.conns[index]
            .as_ref()
            .filter(|c| !(c.small_window && alone))
            .and_then(|c| c.gso)
        {
            self.send_batched(h, gso, now);
        }
        while let Some(n) = self.engine.poll_transmit(h, now, &mut self.buf) {
            let Some(conn) = self.conns[index].as_ref() else {
                break;
            };
            let res = match &conn.socket {
                Some(s) => s.send(&self.buf[..n]),
                None => self
                    .listener
                    .send_to(&self.buf[..n], SocketAddr::V4(conn.peer)),
            };
            if let Err(e) = res {
                // A full send buffer drops the datagram: the sender's
                // timeout and window rollback recover, as for loss.
                tracing::trace!(error = %e, "tftp: send failed");
            }
        }
        // The file reads the blocks the next ACK will ask for now, while
        // these and their ACK cross the network.
        self.engine.read_ahead(h);
        self.flush_listener();
        while let Some(ev) = self.engine.poll_event(h) {
            self.log_event(index, ev);
        }
        if self.engine.is_finished(h) {
            self.close(h);
            return;
        }
        if let (Some(deadline), Some(conn)) =
            (self.engine.poll_timeout(h), self.conns[index].as_mut())
        {
            if conn.armed.is_none_or(|a| deadline < a) {
                conn.armed = Some(deadline);
                self.timers.push(Reverse((deadline, index)));
            }
        }
    }

    /// Sends the transfer's datagrams a batch (up to a window) at a time.
    /// If the kernel refuses GSO, turns it off for this transfer, sends the
    /// batch block by block and leaves the rest to the per-datagram path.
    fn send_batched(&mut self, h: TransferHandle, gso: batch::Gso, now: Instant) {
        let index = h.index();
        let seg = gso.segment;
        loop {
            let (mut len, mut count) = (0, 0);
            while count < gso.max_segments {
                let Some(n) = self
                    .engine
                    .poll_transmit(h, now, &mut self.batch[len..len + seg])
                else {
                    break;
                };
                len += n;
                count += 1;
                if n != seg {
                    // A shorter datagram (last block, ERROR) ends a batch.
                    break;
                }
            }
            if count == 0 {
                return;
            }
            let Some(conn) = self.conns[index].as_mut() else {
                return;
            };
            let Some(sock) = conn.socket.as_ref() else {
                return;
            };
            match sock.send(&self.batch[..len]) {
                Ok(_) => {}
                Err(e) if batch::refused(&e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "tftp: no UDP GSO, sending block by block");
                    batch::disable(sock);
                    conn.gso = None;
                    for datagram in self.batch[..len].chunks(seg) {
                        let _ = sock.send(datagram);
                    }
                    return;
                }
                // A full send buffer drops the batch: the engine's timeout
                // and rollback recover, as for loss.
                Err(e) => tracing::trace!(error = %e, "tftp: batched send failed"),
            }
        }
    }

    fn log_event(&mut self, index: usize, ev: Event) {
        let Some(conn) = self.conns[index].as_ref() else {
            return;
        };
        let (peer, file, write) = (conn.peer, conn.path.as_str(), conn.write);
        let who = self
            .config
            .clients
            .as_ref()
            .and_then(|c| c.lookup(*peer.ip()));
        let mac = who.map(|c| tracing::field::display(c.mac));
        let arch = who.and_then(|c| c.arch).map(tracing::field::display);
        match ev {
            Event::Started(n) => tracing::info!(
                peer = %peer, mac, arch, file, write, step = if write { "wrq" } else { "rrq" },
                blksize = n.blksize, windowsize = n.windowsize, tsize = n.tsize,
                timeout_ms = n.timeout.as_millis() as u64, oack = n.oack,
                "tftp: transfer started"
            ),
            Event::Progress { bytes } => {
                tracing::trace!(peer = %peer, file, bytes, "tftp: progress")
            }
            Event::Completed { bytes, duration } => {
                self.stats.completed += 1;
                self.stats.bytes += bytes;
                tracing::info!(
                    peer = %peer, mac, arch, file, write, bytes, step = "transfer-done",
                    duration_ms = (duration.as_secs_f64() * 1e4).round() / 10.0,
                    "tftp: transfer completed"
                );
            }
            Event::Failed { reason, bytes } if !reason.is_error() => {
                self.stats.declined += 1;
                tracing::debug!(peer = %peer, file, bytes, reason = ?reason, "tftp: options probe ended by client");
            }
            Event::Failed { reason, bytes } => {
                self.stats.failed += 1;
                tracing::warn!(peer = %peer, mac, arch, file, write, bytes, reason = ?reason, step = "transfer-failed", "tftp: transfer failed");
            }
        }
    }

    fn close(&mut self, h: TransferHandle) {
        let index = h.index();
        self.engine.remove(h);
        if let Some(mut conn) = self.conns[index].take() {
            if let Some(s) = conn.socket.as_mut() {
                let _ = self.poll.registry().deregister(s);
            }
            if self.by_peer.get(&conn.peer) == Some(&h) {
                self.by_peer.remove(&conn.peer);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now();
        while let Some(&Reverse((t, index))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns[index].as_mut() else {
                continue;
            };
            if conn.armed != Some(t) {
                continue;
            }
            conn.armed = None;
            let h = conn.handle;
            match self.engine.poll_timeout(h) {
                Some(d) if d <= now => {
                    self.engine.handle_timeout(h, now);
                    self.service(h);
                }
                Some(d) => {
                    if let Some(conn) = self.conns[index].as_mut() {
                        conn.armed = Some(d);
                    }
                    self.timers.push(Reverse((d, index)));
                }
                None => self.service(h),
            }
        }
    }
}

/// A server running on its own thread.
pub struct TftpServerHandle {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: JoinHandle<io::Result<TftpStats>>,
}

impl TftpServerHandle {
    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Asks the loop to stop without waiting.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
    }

    /// Stops the loop and waits for the thread; returns the final counters.
    pub fn stop(self) -> io::Result<TftpStats> {
        self.signal_stop();
        self.thread
            .join()
            .map_err(|_| io::Error::other("TFTP server thread panicked"))?
    }
}
