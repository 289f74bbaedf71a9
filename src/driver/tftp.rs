//! The TFTP server on std UDP sockets: one `mio` event loop per core
//! ([`TftpServerConfig::loops`]), each on its own thread with its own
//! engine, serves thousands of concurrent transfers.
//!
//! Each accepted transfer gets a fresh UDP socket (a new source port, the
//! server's transfer identifier, RFC 1350 §4), connected to the client, so
//! the kernel drops datagrams from other sources; ports come from the
//! ephemeral range or from [`TftpServerConfig::port_range`]. With
//! [`TftpServerConfig::single_port`] every transfer is answered from the
//! listening socket and demultiplexed by client address (for NAT and
//! firewalls that only allow port 69).
//!
//! # Loops
//!
//! Every loop has a listening socket of its own, all bound to the same
//! address with `SO_REUSEPORT`: the kernel spreads the requests over them
//! by a hash of the client's address and port, the server's address and
//! port (the 4-tuple). A loop runs the transfers it accepted until they
//! end: their sockets, timers, files and engine state never leave it; no
//! engine is shared between threads and nothing is locked per datagram.
//!
//! In single-port mode a transfer's ACKs come to the listening port, so
//! they must reach the loop that owns the transfer. They do: for a UDP
//! `SO_REUSEPORT` group without a BPF program, Linux picks the socket by
//! that 4-tuple hash modulo the group's size (`udp_ehashfn`,
//! `reuseport_select_sock`), so datagrams from one client address and port
//! always reach the same socket while the group is unchanged — and the
//! group is fixed for the server's life (all sockets bound at
//! [`TftpServer::bind`], closed together at the end). A datagram that
//! reached another loop anyway would be ignored there (not a request) and
//! the transfer would recover by its timeout.
//!
//! `SO_REUSEPORT` lets only sockets of the same owner (the user that
//! created them: root when the boot server binds port 69 before dropping
//! privileges) join the group: once the server runs, another process of
//! that user could bind the port too and take a share of the requests.
//! Before that, [`TftpServer::bind`] refuses a port someone already holds,
//! as with one loop (which sets no `SO_REUSEPORT`).
//!
//! The limits hold for the whole server, not per loop:
//! [`TftpServerConfig::max_transfers`] is one atomic counter shared by the
//! loops, and [`TftpServerConfig::max_per_client`] a table of per-address
//! counts (sharded, each shard behind a lock taken when a transfer is
//! accepted and when it ends, never per datagram). Each loop's engine has
//! room for about twice its share of `max_transfers` (at most all of it):
//! the kernel's hash spreads transfers evenly enough that a loop full
//! before the server is only a theoretical case (it then refuses with
//! ERROR 0, as when the server is full). Counters ([`TftpStats`]) are kept
//! per loop and summed ([`TftpServerHandle::stop_loops`] gives them one by
//! one).
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
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::prelude::rust_2024::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
/// File descriptors of one event loop: listening socket, epoll, waker.
const LOOP_FDS: u64 = 3;

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
    /// Event loops (1 to [`MAX_LOOPS`]), each a thread with its own
    /// listening socket, poll instance and engine; transfers stay on the
    /// loop that accepted them (see the module docs). Default: one per CPU
    /// this process may run on ([`default_loops`]). With 1 the server is a
    /// single loop on a single socket, without `SO_REUSEPORT`.
    pub loops: usize,
}

/// The largest [`TftpServerConfig::loops`].
pub const MAX_LOOPS: usize = 1024;

/// One loop per CPU this process may run on
/// ([`std::thread::available_parallelism`], which follows the CPU affinity
/// mask and cgroup quota), 1 if that is unknown.
pub fn default_loops() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
            loops: default_loops(),
        }
    }

    /// The engine settings of one loop with room for `slots` transfers.
    fn engine(&self, slots: usize) -> ServerConfig {
        ServerConfig {
            timeout: self.timeout,
            max_retries: self.max_retries,
            max_blksize: self.max_blksize.clamp(8, MAX_BLKSIZE),
            max_windowsize: self.max_windowsize.max(1),
            rollover: self.rollover,
            // The server-wide limits are checked by the driver (`Shared`);
            // a loop's share can never pass them first.
            max_transfers: slots,
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

    /// File descriptors the server can hold: per transfer its file, and
    /// its socket unless in single-port mode; beyond the first loop (whose
    /// are in [`RESERVED_FDS`]), per loop its listening socket, poll
    /// instance and waker.
    fn fds_needed(&self) -> u64 {
        let per = if self.single_port { 1 } else { 2 };
        self.max_transfers as u64 * per
            + RESERVED_FDS
            + LOOP_FDS * self.loops.saturating_sub(1) as u64
    }

    /// Transfer slots of one loop: about twice its share of
    /// `max_transfers` (the kernel's hash is not an exact split), at most
    /// all of it, so memory does not grow with the number of loops.
    fn slots_per_loop(&self) -> usize {
        let total = self.max_transfers.clamp(1, MAX_TRANSFERS);
        let loops = self.loops.max(1);
        total.min(2 * total.div_ceil(loops) + 64)
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
    let loops = match config.loops {
        0 | 1 => String::new(),
        n => format!(", {LOOP_FDS} per event loop after the first ({n} loops)"),
    };
    Err(io::Error::other(format!(
        "max_transfers = {} needs {need} file descriptors ({per} per transfer{loops}, {RESERVED_FDS} kept for the rest) but RLIMIT_NOFILE allows {soft} (hard limit {hard}): raise the limit (ulimit -n, systemd LimitNOFILE=) or lower max_transfers",
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

impl core::ops::Add for TftpStats {
    type Output = TftpStats;
    fn add(self, o: TftpStats) -> TftpStats {
        TftpStats {
            completed: self.completed + o.completed,
            failed: self.failed + o.failed,
            declined: self.declined + o.declined,
            refused: self.refused + o.refused,
            bytes: self.bytes + o.bytes,
        }
    }
}

impl core::iter::Sum for TftpStats {
    fn sum<I: Iterator<Item = TftpStats>>(iter: I) -> TftpStats {
        iter.fold(TftpStats::default(), |a, b| a + b)
    }
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

/// The std TFTP server: [`TftpServerConfig::loops`] event loops bound
/// to one address. [`TftpServer::run`] runs them until stopped (the first
/// on the calling thread); [`TftpServer::spawn`] runs each on a thread.
pub struct TftpServer {
    loops: Vec<Loop>,
    local: SocketAddr,
    shared: Arc<Shared>,
}

/// What the loops share: the server-wide limits and the means to stop
/// them all. Touched when a transfer is accepted or ends, never per
/// datagram; no engine is in it.
struct Shared {
    max_transfers: usize,
    max_per_client: usize,
    /// Transfers in progress on all loops.
    active: AtomicUsize,
    /// Transfers in progress per client address, over all loops; sharded
    /// by address so that loops accepting at once rarely meet.
    per_client: Vec<Mutex<HashMap<Ipv4Addr, usize>>>,
    /// Set when a loop fails: the others stop too.
    failed: AtomicBool,
    wakers: Vec<Arc<Waker>>,
}

/// Shards of [`Shared::per_client`].
const CLIENT_SHARDS: usize = 16;

/// Why [`Shared::acquire`] refused a transfer.
#[derive(Debug, Clone, Copy)]
enum Full {
    Server,
    Client,
}

impl Shared {
    fn shard(&self, ip: Ipv4Addr) -> &Mutex<HashMap<Ipv4Addr, usize>> {
        let h = u32::from(ip).wrapping_mul(0x9e37_79b1);
        &self.per_client[(h >> 16) as usize % self.per_client.len()]
    }

    /// Counts a transfer for `ip` if both limits allow it; undo with
    /// [`Shared::release`].
    fn acquire(&self, ip: Ipv4Addr) -> Result<(), Full> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_transfers).then_some(n + 1)
            })
            .map_err(|_| Full::Server)?;
        let mut map = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_client {
            if *n == 0 {
                map.remove(&ip);
            }
            drop(map);
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Client);
        }
        *n += 1;
        Ok(())
    }

    /// Uncounts a transfer counted by [`Shared::acquire`].
    fn release(&self, ip: Ipv4Addr) {
        let mut map = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
        drop(map);
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    fn stop_all(&self) {
        self.failed.store(true, Ordering::Relaxed);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

/// One event loop: its listening socket, its engine and the transfers it
/// accepted. Lives on one thread.
struct Loop {
    shared: Arc<Shared>,
    config: TftpServerConfig,
    poll: Poll,
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

/// Lines about refused requests are rate-limited, per loop: at most
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

/// A transfer alone on its loop with windows of at most this many
/// blocks of at most [`MTU_DATAGRAM`] bytes sends them block by block (see
/// `Loop::service`).
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

/// Binds `addr` for the listening socket of one of `loops` loops: with
/// more than one, every socket of the group sets `SO_REUSEPORT` before
/// binding.
fn listening_socket(addr: SocketAddrV4, loops: usize) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    let _ = s.set_send_buffer_size(4 << 20);
    let _ = s.set_recv_buffer_size(4 << 20);
    if loops > 1 {
        s.set_reuse_port(true)?;
    }
    s.bind(&SocketAddr::V4(addr).into())?;
    Ok(s.into())
}

impl TftpServer {
    /// Opens the root and binds the listening sockets, one per loop.
    /// Refuses `loops` outside 1..=[`MAX_LOOPS`], a `max_transfers` above
    /// [`MAX_TRANSFERS`] or one the open-file limit cannot hold (after
    /// raising the soft limit to the hard one).
    ///
    /// With several loops the address is first bound alone, without
    /// `SO_REUSEPORT`, and released: a port already in use (by another
    /// server, even one with `SO_REUSEPORT`) is refused as with one loop,
    /// and port 0 picks a free port for the whole group.
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
        if !(1..=MAX_LOOPS).contains(&config.loops) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("loops = {} is not in 1-{MAX_LOOPS}", config.loops),
            ));
        }
        check_fd_limit(&config)?;
        let dir = JailedDir::new(&config.root)?
            .with_uploads(config.allow_overwrite, config.max_write_size);
        let mut bind = v4(config.bind)?;
        let n = config.loops;
        if n > 1 {
            // Alone first: AddrInUse if taken; the port for port 0.
            let probe = listening_socket(bind, 1)?;
            bind = v4(probe.local_addr()?)?;
        }
        let mut sockets = Vec::with_capacity(n);
        for _ in 0..n {
            sockets.push(listening_socket(bind, n)?);
        }
        let local = sockets[0].local_addr()?;
        let mut polls = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            polls.push(poll);
        }
        let shared = Arc::new(Shared {
            max_transfers: config.max_transfers,
            max_per_client: config.max_per_client,
            active: AtomicUsize::new(0),
            per_client: (0..CLIENT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            failed: AtomicBool::new(false),
            wakers,
        });
        let slots = config.slots_per_loop();
        let epoch = std::time::Instant::now();
        let mut loops = Vec::with_capacity(n);
        for (socket, poll) in sockets.into_iter().zip(polls) {
            let mut listener = UdpSocket::from_std(socket);
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)?;
            let engine = Server::new(
                config.engine(slots),
                (0..slots).map(|_| Slot::new()).collect(),
            );
            loops.push(Loop {
                shared: shared.clone(),
                engine,
                conns: (0..slots).map(|_| None).collect(),
                config: config.clone(),
                poll,
                listener,
                local,
                dir: dir.clone(),
                by_peer: HashMap::new(),
                timers: BinaryHeap::new(),
                epoch,
                buf: vec![0u8; 4 + usize::from(MAX_BLKSIZE)],
                batch: Vec::new(),
                rx: vec![0u8; 65536],
                next_port: 0,
                stats: TftpStats::default(),
                refusal_log: RefusalLog::new(),
            });
        }
        Ok(TftpServer {
            loops,
            local,
            shared,
        })
    }

    /// The listening address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The number of event loops.
    pub fn loops(&self) -> usize {
        self.loops.len()
    }

    /// Counters so far, summed over the loops.
    pub fn stats(&self) -> TftpStats {
        self.loop_stats().into_iter().sum()
    }

    /// Counters so far, one per loop.
    pub fn loop_stats(&self) -> Vec<TftpStats> {
        self.loops.iter().map(|l| l.stats).collect()
    }

    /// Transfers in progress.
    pub fn active_transfers(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Runs the event loops until `stop` is set (checked at least every
    /// 100 ms): the first on the calling thread, the others on threads of
    /// their own, all joined before it returns. Returns an error only if
    /// polling itself fails (a failing loop stops the others).
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let (first, rest) = self
            .loops
            .split_first_mut()
            .expect("bind makes at least one loop");
        let shared = &self.shared;
        std::thread::scope(|scope| {
            let mut threads = Vec::with_capacity(rest.len());
            for (i, l) in rest.iter_mut().enumerate() {
                let t = std::thread::Builder::new()
                    .name(format!("preboot-tftp-{}", i + 1))
                    .spawn_scoped(scope, move || l.run(stop));
                match t {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        shared.stop_all();
                        return Err(e);
                    }
                }
            }
            let mut result = first.run(stop);
            for t in threads {
                let r = t
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("TFTP loop thread panicked")));
                result = result.and(r);
            }
            result
        })
    }

    /// Runs each event loop on a thread of its own (`preboot-tftp-N`).
    pub fn spawn(self) -> io::Result<TftpServerHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handle = TftpServerHandle {
            local: self.local,
            stop,
            shared: self.shared.clone(),
            threads: Vec::with_capacity(self.loops.len()),
        };
        for (i, mut l) in self.loops.into_iter().enumerate() {
            let flag = handle.stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("preboot-tftp-{i}"))
                .spawn(move || l.run(&flag).map(|()| l.stats));
            match t {
                Ok(t) => handle.threads.push(t),
                Err(e) => {
                    let _ = handle.stop_loops();
                    return Err(e);
                }
            }
        }
        Ok(handle)
    }
}

impl Loop {
    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Runs this loop until `stop` is set or another loop failed.
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let result = self.serve(stop);
        if result.is_err() {
            self.shared.stop_all();
        }
        result
    }

    fn serve(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !stop.load(Ordering::Relaxed) && !self.shared.failed.load(Ordering::Relaxed) {
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
            RequestOutcome::Read(inc) if !self.acquire(&inc) => {}
            RequestOutcome::Write(inc) if !self.acquire(&inc) => {}
            RequestOutcome::Read(inc) => match self.dir.open_file(&inc.path) {
                Ok(file) => match self.engine.accept_read(now, &inc, file) {
                    Ok(h) => self.start(h, &inc, false),
                    Err(_) => {
                        self.shared.release(*inc.peer.ip());
                        self.refused(&inc, "limit reached (this loop's slots)");
                    }
                },
                Err(e) => {
                    self.shared.release(*inc.peer.ip());
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
                    Err(_) => {
                        self.shared.release(*inc.peer.ip());
                        self.refused(&inc, "limit reached (this loop's slots)");
                    }
                },
                Err(e) => {
                    self.shared.release(*inc.peer.ip());
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

    /// Counts a transfer for `inc`'s client against the server-wide
    /// limits, or refuses it (ERROR 0) and returns false.
    fn acquire(&mut self, inc: &Incoming<'_>) -> bool {
        match self.shared.acquire(*inc.peer.ip()) {
            Ok(()) => true,
            Err(full) => {
                self.engine
                    .refuse(inc, crate::wire::tftp::ErrorCode::NotDefined);
                self.refused(
                    inc,
                    match full {
                        Full::Server => "limit reached (max_transfers)",
                        Full::Client => "limit reached (max_per_client)",
                    },
                );
                false
            }
        }
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
                    self.shared.release(*inc.peer.ip());
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
        // A transfer alone on its loop with small windows of MTU-sized
        // blocks sends block by block: the client starts on each datagram
        // as it arrives, where one GSO send hands it the whole window at its
        // end; the loop's core has CPU to spare. With other transfers running,
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
            self.shared.release(*conn.peer.ip());
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

/// A server whose loops run on threads of their own.
pub struct TftpServerHandle {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<io::Result<TftpStats>>>,
}

impl TftpServerHandle {
    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The number of event loops.
    pub fn loops(&self) -> usize {
        self.threads.len()
    }

    /// Transfers in progress, over all loops.
    pub fn active_transfers(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Asks every loop to stop without waiting.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.shared.wakers {
            let _ = w.wake();
        }
    }

    /// Stops the loops and waits for their threads; returns the final
    /// counters, summed over the loops.
    pub fn stop(self) -> io::Result<TftpStats> {
        Ok(self.stop_loops()?.into_iter().sum())
    }

    /// Stops the loops and waits for their threads; returns each loop's
    /// final counters (in loop order), or the first loop's error.
    pub fn stop_loops(mut self) -> io::Result<Vec<TftpStats>> {
        self.signal_stop();
        let mut out = Vec::with_capacity(self.threads.len());
        let mut error = None;
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(s)) => out.push(s),
                Ok(Err(e)) => {
                    error.get_or_insert(e);
                }
                Err(_) => {
                    error.get_or_insert(io::Error::other("TFTP server thread panicked"));
                }
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

impl Drop for TftpServerHandle {
    /// A handle dropped without [`TftpServerHandle::stop`] stops the loops
    /// (without waiting for them).
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.signal_stop();
        }
    }
}
