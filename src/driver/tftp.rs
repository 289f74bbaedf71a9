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

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::prelude::rust_2024::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::vec;

use mio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};

use super::clients::ClientDirectory;
use super::clock;
use super::event_loop::{self, EventLoop, LoopGroup, Registrar, RunningLoops, Service};
use super::fs::{JailedDir, JailedFile, Upload};
use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram};
use crate::fs::{FsError, ReadAt};
use crate::tftp::server::{Direction, Incoming, Server, ServerConfig, ServerEvent, Slot};
use crate::tftp::{Event, Negotiated, Rollover};
use crate::wire::tftp::{DATA_HEADER_LEN, ErrorCode, MAX_BLKSIZE};

mod batch;

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

/// One transfer's socket and what the logs say about it.
struct Conn {
    /// Its own socket, connected to the client (`None` in single-port
    /// mode: it speaks from the listening socket).
    socket: Option<UdpSocket>,
    /// The endpoint it speaks from (the engine's `local` for it).
    local: SocketAddrV4,
    peer: SocketAddrV4,
    path: String,
    write: bool,
    /// GSO in force on `socket` (windowed reads only).
    gso: Option<batch::Gso>,
    /// Windows of at most [`SMALL_WINDOW`] MTU-sized blocks.
    small_window: bool,
    /// Lock-step (windowsize 1): each ACK is answered at once.
    lock_step: bool,
}

type Engine = Server<JailedFile, Upload, Vec<Slot<JailedFile, Upload>>>;

/// The std TFTP server: [`TftpServerConfig::loops`] event loops
/// ([`crate::driver::event_loop`]) bound to one address, each hosting the
/// TFTP service of its own listening socket. [`TftpServer::run`] runs them
/// until stopped (the first on the calling thread); [`TftpServer::spawn`]
/// runs each on a thread. Other services (the boot server's DHCP) may join
/// a loop: [`TftpServer::event_loops_mut`].
pub struct TftpServer {
    group: LoopGroup,
    local: SocketAddr,
    shared: Arc<Shared>,
}

impl core::fmt::Debug for TftpServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TftpServer")
            .field("local", &self.local)
            .field("loops", &self.group.len())
            .finish()
    }
}

/// Counters of one loop, read by other threads at any time.
#[derive(Debug, Default)]
struct LoopCounters {
    completed: AtomicU64,
    failed: AtomicU64,
    declined: AtomicU64,
    refused: AtomicU64,
    bytes: AtomicU64,
}

impl LoopCounters {
    fn snapshot(&self) -> TftpStats {
        TftpStats {
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            declined: self.declined.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// What the loops share: the server-wide limits and the counters.
/// Touched when a transfer is accepted or ends, never per datagram; no
/// engine is in it.
struct Shared {
    max_transfers: usize,
    max_per_client: usize,
    /// Transfers in progress on all loops.
    active: AtomicUsize,
    /// Transfers in progress per client address, over all loops; sharded
    /// by address so that loops accepting at once rarely meet.
    per_client: Vec<Mutex<HashMap<Ipv4Addr, usize>>>,
    /// One per loop.
    counters: Vec<LoopCounters>,
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
}

/// The listening socket's token; transfers use their slot number.
const LISTENER: usize = event_loop::MAX_TOKEN;
/// No transfer (in [`TftpLoop::by_port`]).
const NO_CONN: u32 = u32::MAX;

/// One loop's TFTP service: its listening socket, its engine and the
/// transfers it accepted. Lives on one thread.
struct TftpLoop {
    shared: Arc<Shared>,
    /// This loop's number (its counters).
    number: usize,
    config: TftpServerConfig,
    registrar: Option<Registrar>,
    listener: UdpSocket,
    /// The listening socket's address (the `local` of requests).
    listen: SocketAddrV4,
    dir: JailedDir,
    engine: Engine,
    conns: Vec<Option<Conn>>,
    free_conns: Vec<usize>,
    /// Transfer socket port → its conn (a port per transfer).
    by_port: Vec<u32>,
    /// Client → its conn (single-port mode).
    by_peer: HashMap<SocketAddrV4, usize>,
    buf: Vec<u8>,
    /// A window of blocks laid end to end for one batched send.
    batch: Vec<u8>,
    rx: Vec<u8>,
    next_port: u32,
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
/// `TftpLoop::flush`).
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
        let listen = v4(local)?;
        let shared = Arc::new(Shared {
            max_transfers: config.max_transfers,
            max_per_client: config.max_per_client,
            active: AtomicUsize::new(0),
            per_client: (0..CLIENT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            counters: (0..n).map(|_| LoopCounters::default()).collect(),
        });
        let slots = config.slots_per_loop();
        let mut loops = Vec::with_capacity(n);
        for (number, socket) in sockets.into_iter().enumerate() {
            let engine = Server::new(
                config.engine(slots),
                (0..slots).map(|_| Slot::new()).collect(),
            );
            let service = TftpLoop {
                shared: shared.clone(),
                number,
                engine,
                conns: Vec::new(),
                free_conns: Vec::new(),
                by_port: Vec::new(),
                config: config.clone(),
                registrar: None,
                listener: UdpSocket::from_std(socket),
                listen,
                dir: dir.clone(),
                by_peer: HashMap::new(),
                buf: vec![0u8; Engine::MAX_DATAGRAM],
                batch: Vec::new(),
                rx: vec![0u8; 65536],
                next_port: 0,
                refusal_log: RefusalLog::new(),
            };
            let mut l = EventLoop::new(&format!("preboot-tftp-{number}"))?;
            l.add(Box::new(service))?;
            loops.push(l);
        }
        Ok(TftpServer {
            group: LoopGroup::new(loops),
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
        self.group.len()
    }

    /// The event loops, one per [`TftpServerConfig::loops`], each hosting
    /// its TFTP service: other services may be added before the server
    /// runs (the boot server puts DHCP on the first).
    pub fn event_loops_mut(&mut self) -> &mut [EventLoop] {
        self.group.loops_mut()
    }

    /// Counters so far, summed over the loops.
    pub fn stats(&self) -> TftpStats {
        self.loop_stats().into_iter().sum()
    }

    /// Counters so far, one per loop.
    pub fn loop_stats(&self) -> Vec<TftpStats> {
        self.shared
            .counters
            .iter()
            .map(LoopCounters::snapshot)
            .collect()
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
        self.group.run(stop)
    }

    /// Runs each event loop on a thread of its own (`preboot-tftp-N`).
    pub fn spawn(self) -> io::Result<TftpServerHandle> {
        let loops = self.group.len();
        Ok(TftpServerHandle {
            local: self.local,
            shared: self.shared,
            loops,
            running: Some(self.group.spawn()?),
        })
    }
}

impl TftpLoop {
    fn registrar(&self) -> io::Result<&Registrar> {
        self.registrar
            .as_ref()
            .ok_or_else(|| io::Error::other("TFTP service not started"))
    }

    fn counters(&self) -> &LoopCounters {
        &self.shared.counters[self.number]
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
            let now = clock::now();
            let rx = std::mem::take(&mut self.rx);
            let dg = Datagram {
                local: self.listen,
                remote: from,
                payload: &rx[..n],
            };
            if let Some(inc) = self.engine.handle(now, dg) {
                self.on_request(now, &inc);
            }
            self.rx = rx;
            self.flush(clock::now());
        }
    }

    fn on_request(&mut self, now: Instant, inc: &Incoming<'_>) {
        let ip = *inc.peer.ip();
        if let Err(full) = self.shared.acquire(ip) {
            self.engine.refuse(inc, ErrorCode::NotDefined);
            self.refused(
                inc,
                match full {
                    Full::Server => "limit reached (max_transfers)",
                    Full::Client => "limit reached (max_per_client)",
                },
            );
            return;
        }
        let write = inc.direction == Direction::Write;
        let opened = if write {
            self.dir.create(&inc.path).map(Opened::Upload)
        } else {
            self.dir.open_file(&inc.path).map(Opened::File)
        };
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                self.shared.release(ip);
                self.engine.refuse(inc, e.error_code());
                bump(&self.counters().refused, 1);
                self.log_open_error(inc, e);
                return;
            }
        };
        let size = match &opened {
            Opened::File(f) => Some(f.size()),
            Opened::Upload(_) => None,
        };
        let neg = self.engine.would_negotiate(inc, size);
        let conn = match self.open_conn(inc, neg, write) {
            Ok(c) => c,
            Err(e) => {
                self.shared.release(ip);
                self.engine.refuse(inc, ErrorCode::NotDefined);
                bump(&self.counters().refused, 1);
                if out_of_fds(&e) {
                    tracing::error!(peer = %inc.peer, file = inc.path.as_str(), active = self.engine.active(), error = %e, "tftp: no transfer socket: too many open files (EMFILE/ENFILE): raise RLIMIT_NOFILE or lower max_transfers");
                } else {
                    tracing::error!(peer = %inc.peer, file = inc.path.as_str(), error = %e, "tftp: no transfer socket");
                }
                return;
            }
        };
        let local = self.conns[conn].as_ref().map_or(self.listen, |c| c.local);
        let accepted = match opened {
            Opened::File(f) => self.engine.accept_read(now, inc, f, local),
            Opened::Upload(u) => self.engine.accept_write(now, inc, u, local),
        };
        if accepted.is_err() {
            // The engine queued ERROR 0.
            self.close_conn(conn);
            self.shared.release(ip);
            self.refused(inc, "limit reached (this loop's slots)");
            return;
        }
        tracing::debug!(
            peer = %inc.peer,
            file = inc.path.as_str(),
            write,
            options = ?inc.options,
            "tftp: request accepted"
        );
    }

    fn log_open_error(&mut self, inc: &Incoming<'_>, e: FsError) {
        let (peer, file) = (inc.peer, inc.path.as_str());
        if inc.direction == Direction::Write {
            tracing::warn!(peer = %peer, file, error = %e, "tftp: write refused");
            return;
        }
        if !self.refusal_log.allow() {
            return;
        }
        if e == FsError::NotFound {
            // pxelinux probes many names: routine, not a warning, but an
            // operator looking for a misnamed boot file must see it.
            tracing::info!(peer = %peer, file, "tftp: file not found");
        } else if e == FsError::TooManyOpenFiles {
            tracing::error!(peer = %peer, file, active = self.engine.active(), "tftp: read refused: too many open files (EMFILE/ENFILE): raise RLIMIT_NOFILE or lower max_transfers");
        } else {
            tracing::warn!(peer = %peer, file, error = %e, "tftp: read refused");
        }
    }

    fn refused(&mut self, inc: &Incoming<'_>, why: &str) {
        bump(&self.counters().refused, 1);
        if self.refusal_log.allow() {
            tracing::warn!(peer = %inc.peer, file = inc.path.as_str(), why, "tftp: request refused");
        }
    }

    fn bind_transfer_socket(&mut self, neg: Negotiated) -> io::Result<std::net::UdpSocket> {
        let ip = *self.listen.ip();
        let window = usize::from(neg.windowsize) * (usize::from(neg.blksize) + 64);
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

    /// A conn for a transfer about to be accepted: its own socket,
    /// connected and registered (or, in single-port mode, none).
    fn open_conn(&mut self, inc: &Incoming<'_>, neg: Negotiated, write: bool) -> io::Result<usize> {
        let index = match self.free_conns.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let socket = if self.config.single_port {
            None
        } else {
            let made = self.bind_transfer_socket(neg).and_then(|s| {
                s.connect(inc.peer)?;
                let mut s = UdpSocket::from_std(s);
                self.registrar()?.register(&mut s, index)?;
                Ok(s)
            });
            match made {
                Ok(s) => Some(s),
                Err(e) => {
                    self.free_conns.push(index);
                    return Err(e);
                }
            }
        };
        let local = match &socket {
            Some(s) => v4(s.local_addr()?)?,
            None => self.listen,
        };
        // Batching pays only for windows of at least two full-size blocks.
        let gso = match &socket {
            Some(s) if self.config.batch_sends && !write && neg.windowsize > 1 => {
                let segment = DATA_HEADER_LEN + usize::from(neg.blksize);
                // Smaller segments could not carry an ERROR or OACK.
                (neg.blksize >= 512)
                    .then(|| batch::enable(s, segment))
                    .flatten()
            }
            _ => None,
        };
        if gso.is_some() && self.batch.is_empty() {
            self.batch = vec![0u8; batch::MAX_BATCH];
        }
        if socket.is_some() {
            if self.by_port.is_empty() {
                self.by_port = vec![NO_CONN; 1 << 16];
            }
            self.by_port[usize::from(local.port())] = index as u32;
        } else {
            self.by_peer.insert(inc.peer, index);
        }
        self.conns[index] = Some(Conn {
            socket,
            local,
            peer: inc.peer,
            path: inc.path.as_str().to_owned(),
            write,
            gso,
            small_window: neg.windowsize <= SMALL_WINDOW
                && DATA_HEADER_LEN + usize::from(neg.blksize) <= MTU_DATAGRAM,
            lock_step: neg.windowsize <= 1,
        });
        Ok(index)
    }

    /// The conn that speaks from `local` to `peer`.
    fn conn_of(&self, local: SocketAddrV4, peer: SocketAddrV4) -> Option<usize> {
        if local == self.listen {
            return self.by_peer.get(&peer).copied();
        }
        let i = *self.by_port.get(usize::from(local.port()))?;
        (i != NO_CONN).then_some(i as usize)
    }

    fn close_conn(&mut self, index: usize) {
        let Some(mut conn) = self.conns.get_mut(index).and_then(Option::take) else {
            return;
        };
        match conn.socket.as_mut() {
            Some(s) => {
                if let Ok(r) = self.registrar() {
                    let _ = r.deregister(s);
                }
                if let Some(slot) = self.by_port.get_mut(usize::from(conn.local.port())) {
                    if *slot == index as u32 {
                        *slot = NO_CONN;
                    }
                }
            }
            None => {
                if self.by_peer.get(&conn.peer) == Some(&index) {
                    self.by_peer.remove(&conn.peer);
                }
            }
        }
        self.free_conns.push(index);
    }

    fn on_transfer(&mut self, index: usize) {
        let Some((local, peer, lock_step)) = self
            .conns
            .get(index)
            .and_then(|c| c.as_ref())
            .map(|c| (c.local, c.peer, c.lock_step))
        else {
            return;
        };
        // Lock-step transfers answer each datagram at once; windowed ones
        // read every queued ACK first and answer the newest (an answer per
        // ACK would start a window for each of them).
        let mut answered = false;
        loop {
            // `flush` may have closed the transfer.
            let Some(sock) = self.conns[index]
                .as_ref()
                .filter(|c| c.local == local && c.peer == peer)
                .and_then(|c| c.socket.as_ref())
            else {
                return;
            };
            match sock.recv(&mut self.rx) {
                Ok(n) => {
                    let now = clock::now();
                    let dg = Datagram {
                        local,
                        remote: peer,
                        payload: &self.rx[..n],
                    };
                    // Not a request: nothing comes back.
                    let _ = self.engine.handle(now, dg);
                    // Answer before reading the socket again: in lock-step
                    // the next DATA leaves without waiting for the recv
                    // (usually EAGAIN) that ends the drain.
                    if lock_step {
                        self.flush(now);
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
            self.flush(clock::now());
        }
    }

    /// Sends one datagram from the socket of `local`; `conn` is the
    /// transfer that speaks from it, looked up once by the caller
    /// ([`TftpLoop::conn_of`]).
    fn send_one(
        &self,
        conn: Option<usize>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        bytes: &[u8],
    ) {
        let res = match conn.and_then(|i| self.conns[i].as_ref()) {
            Some(Conn {
                socket: Some(s), ..
            }) => s.send(bytes),
            _ if local == self.listen => self.listener.send_to(bytes, SocketAddr::V4(remote)),
            // Its transfer just closed: nothing to send it from.
            _ => return,
        };
        if let Err(e) = res {
            // A full send buffer drops the datagram: the sender's timeout
            // and window rollback recover, as for loss.
            tracing::trace!(error = %e, "tftp: send failed");
        }
    }

    /// Sends what the engine has to send (a window in one GSO send where
    /// the transfer batches), gives the files their read-ahead hints, and
    /// handles the engine's events.
    fn flush(&mut self, now: Instant) {
        // A transfer alone on its loop with small windows of MTU-sized
        // blocks sends block by block: the client starts on each datagram
        // as it arrives, where one GSO send hands it the whole window at its
        // end; the loop's core has CPU to spare. With other transfers running,
        // batching's lower CPU per byte wins (benches/tftp-peers.sh, across
        // vCPUs, 1468 / window 16, one transfer: 340 MB/s block by block vs
        // 307 batched, raw UDP 283-350; 256 transfers: 576 vs 1290).
        let alone = self.engine.active() <= 1;
        let mut pending: Option<Pending> = None;
        loop {
            let polled = match &pending {
                Some(p) if p.count < p.gso.max_segments => {
                    let end = p.len + p.gso.segment;
                    self.engine.poll_transmit(now, &mut self.batch[p.len..end])
                }
                Some(_) => {
                    self.send_batch(pending.take());
                    continue;
                }
                None => self.engine.poll_transmit(now, &mut self.buf),
            };
            let t = match polled {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(_) if pending.is_some() => {
                    // Another transfer's larger block: send the batch and
                    // poll it into the full buffer.
                    self.send_batch(pending.take());
                    continue;
                }
                Err(BufferTooSmall { needed }) => {
                    // Cannot happen (`buf` holds MAX_DATAGRAM); say so
                    // rather than spin.
                    tracing::error!(needed, "tftp: datagram over MAX_DATAGRAM, not sent");
                    break;
                }
            };
            let Some(local) = t.local else { continue };
            if let Some(p) = pending.as_mut() {
                if p.local == local {
                    p.len += t.len;
                    p.count += 1;
                    if t.len != p.gso.segment {
                        // A shorter datagram (last block, ERROR) ends a batch.
                        self.send_batch(pending.take());
                    }
                    continue;
                }
                // Another transfer's datagram, written after the batch.
                let (start, p) = (p.len, pending.take());
                self.send_batch(p);
                let conn = self.conn_of(local, t.remote);
                let bytes = &self.batch[start..start + t.len];
                self.send_one(conn, local, t.remote, bytes);
                continue;
            }
            // One lookup per datagram, for the batching decision and the send.
            let conn = self.conn_of(local, t.remote);
            let batching = conn
                .and_then(|i| self.conns[i].as_ref().map(|c| (i, c)))
                .and_then(|(i, c)| {
                    let gso = c.gso.filter(|_| !(c.small_window && alone))?;
                    (t.len == gso.segment).then_some((i, gso))
                });
            match batching {
                Some((conn, gso)) => {
                    self.batch[..t.len].copy_from_slice(&self.buf[..t.len]);
                    pending = Some(Pending {
                        conn,
                        local,
                        gso,
                        len: t.len,
                        count: 1,
                    });
                }
                None => self.send_one(conn, local, t.remote, &self.buf[..t.len]),
            }
        }
        self.send_batch(pending);
        // The files read the blocks the next ACKs will ask for now, while
        // these and their ACKs cross the network.
        self.engine.read_ahead();
        while let Some(ev) = self.engine.poll_event() {
            self.on_event(ev);
        }
    }

    /// Sends a batch of one transfer's blocks in one system call. If the
    /// kernel refuses GSO, turns it off for the transfer and sends the
    /// batch block by block.
    fn send_batch(&mut self, p: Option<Pending>) {
        let Some(p) = p else { return };
        let Some(conn) = self.conns[p.conn].as_mut() else {
            return;
        };
        let Some(sock) = conn.socket.as_ref() else {
            return;
        };
        let bytes = &self.batch[..p.len];
        match sock.send(bytes) {
            Ok(_) => {}
            Err(e) if batch::refused(&e) => {
                tracing::debug!(peer = %conn.peer, error = %e, "tftp: no UDP GSO, sending block by block");
                batch::disable(sock);
                conn.gso = None;
                for datagram in bytes.chunks(p.gso.segment) {
                    let _ = sock.send(datagram);
                }
            }
            // A full send buffer drops the batch: the engine's timeout and
            // rollback recover, as for loss.
            Err(e) => tracing::trace!(error = %e, "tftp: batched send failed"),
        }
    }

    fn on_event(&mut self, ev: ServerEvent) {
        match ev {
            ServerEvent::Transfer {
                local, peer, event, ..
            } => {
                if let Some(i) = self.conn_of(local, peer) {
                    self.log_event(i, event);
                }
            }
            ServerEvent::Closed { local, peer, .. } => {
                if let Some(i) = self.conn_of(local, peer) {
                    self.close_conn(i);
                }
                self.shared.release(*peer.ip());
            }
            ServerEvent::Refused {
                peer, code, reason, ..
            } => {
                bump(&self.counters().refused, 1);
                tracing::warn!(peer = %peer, code = u16::from(code), reason = ?reason, "tftp: request refused");
            }
        }
    }

    fn log_event(&self, index: usize, ev: Event) {
        let Some(conn) = self.conns[index].as_ref() else {
            return;
        };
        let (peer, file, write) = (conn.peer, conn.path.as_str(), conn.write);
        if let Event::Progress { bytes } = ev {
            // One per ACK: nothing else to look up for a trace line.
            tracing::trace!(peer = %peer, file, bytes, "tftp: progress");
            return;
        }
        let who = self
            .config
            .clients
            .as_ref()
            .and_then(|c| c.lookup(*peer.ip()));
        let mac = who.map(|c| tracing::field::display(c.mac));
        let arch = who.and_then(|c| c.arch).map(tracing::field::display);
        let counters = self.counters();
        match ev {
            Event::Started(n) => tracing::info!(
                peer = %peer, mac, arch, file, write, step = if write { "wrq" } else { "rrq" },
                blksize = n.blksize, windowsize = n.windowsize, tsize = n.tsize,
                timeout_ms = n.timeout.as_millis() as u64, oack = n.oack,
                "tftp: transfer started"
            ),
            Event::Progress { .. } => {}
            Event::Completed { bytes, duration } => {
                bump(&counters.completed, 1);
                bump(&counters.bytes, bytes);
                tracing::info!(
                    peer = %peer, mac, arch, file, write, bytes, step = "transfer-done",
                    duration_ms = (duration.as_secs_f64() * 1e4).round() / 10.0,
                    "tftp: transfer completed"
                );
            }
            Event::Failed { reason, bytes } if !reason.is_error() => {
                bump(&counters.declined, 1);
                tracing::debug!(peer = %peer, file, bytes, reason = ?reason, "tftp: options probe ended by client");
            }
            Event::Failed { reason, bytes } => {
                bump(&counters.failed, 1);
                tracing::warn!(peer = %peer, mac, arch, file, write, bytes, reason = ?reason, step = "transfer-failed", "tftp: transfer failed");
            }
        }
    }
}

/// A file opened for a read request or a sink for a write request.
enum Opened {
    File(JailedFile),
    Upload(Upload),
}

/// Blocks of one transfer laid end to end in [`TftpLoop::batch`].
struct Pending {
    conn: usize,
    local: SocketAddrV4,
    gso: batch::Gso,
    len: usize,
    count: usize,
}

impl Service for TftpLoop {
    fn start(&mut self, registrar: Registrar) -> io::Result<()> {
        registrar.register(&mut self.listener, LISTENER)?;
        self.registrar = Some(registrar);
        Ok(())
    }

    fn ready(&mut self, token: usize) -> io::Result<()> {
        if token == LISTENER {
            self.on_listener();
        } else {
            self.on_transfer(token);
        }
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) -> io::Result<()> {
        self.engine.handle_timeout(now);
        self.flush(now);
        Ok(())
    }
}

/// A server whose loops run on threads of their own. Dropped, it stops
/// them and waits for them (at most [`event_loop::MAX_WAIT`]).
pub struct TftpServerHandle {
    local: SocketAddr,
    shared: Arc<Shared>,
    loops: usize,
    running: Option<RunningLoops>,
}

impl TftpServerHandle {
    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The number of event loops.
    pub fn loops(&self) -> usize {
        self.loops
    }

    /// Transfers in progress, over all loops.
    pub fn active_transfers(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Counters so far, summed over the loops.
    pub fn stats(&self) -> TftpStats {
        self.shared
            .counters
            .iter()
            .map(LoopCounters::snapshot)
            .sum()
    }

    /// Asks every loop to stop without waiting.
    pub fn signal_stop(&self) {
        if let Some(r) = &self.running {
            r.signal_stop();
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
        if let Some(r) = self.running.take() {
            r.stop()?;
        }
        Ok(self
            .shared
            .counters
            .iter()
            .map(LoopCounters::snapshot)
            .collect())
    }
}
