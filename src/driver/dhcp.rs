//! The std DHCP / proxyDHCP / boot server driver: the [`Server`] engine on
//! UDP sockets (port 67 and port 4011), with the lease log.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use preboot::dhcp::BootArch;
//! use preboot::driver::dhcp::{DhcpServer, DhcpServerConfig};
//!
//! let mut config = DhcpServerConfig::proxy(Ipv4Addr::new(192, 168, 77, 1));
//! config.interface = Some("br0".into());
//! config.boot_files.files.insert(BootArch::Bios, "pxelinux.0".into());
//! config.boot_files.files.insert(BootArch::UefiX64, "grubnetx64.efi".into());
//! let server = DhcpServer::bind(config)?;
//! let stop = server.stop_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(60));
//!     stop.stop();
//! });
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Sockets: one bound to [`DhcpServerConfig::dhcp_addr`] (`0.0.0.0:67` by
//! default, so broadcasts arrive) and one to [`DhcpServerConfig::boot_addr`]
//! (`0.0.0.0:4011`). Neither lets another socket share its port
//! (no `SO_REUSEADDR`), except port 67 in proxy mode, which must live beside
//! the network's DHCP server; so no local user can bind `127.0.0.1:4011`
//! and take the boot requests. A second instance with the same lease log
//! or state directory is refused by an exclusive lock
//! ([`DhcpServerConfig::lock_path`], [`InstanceLock`]). Each socket has
//! `SO_BROADCAST` and, when
//! [`DhcpServerConfig::interface`] is set, `SO_BINDTODEVICE`: broadcasts
//! then leave through that interface and the kernel picks that interface's
//! address as the source, which is the right one on a multi-homed host. A
//! thread serves each socket; the engine sits behind a mutex.
//!
//! Leases (full mode with [`DhcpServerConfig::lease_file`]): the packet
//! threads never touch the disk. They queue each datagram's lease records,
//! with the ACKs that grant them, for a writer thread (into buffers reused
//! from one commit to the next: no allocation per packet), and go on
//! answering other clients. The writer lets a group gather for
//! [`DhcpServerConfig::lease_commit_window`], appends the records, fsyncs
//! once for all of them (group commit), and only then sends the ACKs — a
//! client never holds a lease that a `kill -9` could lose; then, when the
//! log holds over [`lease_file::COMPACT_FACTOR`] records per live lease,
//! it compacts it (atomic replace). If the disk falls
//! [`MAX_HELD`] ACKs behind, further answers are dropped with their records
//! (clients retry) instead of queueing without bound.
//!
//! Logging: one `tracing` line per step and client (`mac`, `arch`, `step`).

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::string::String;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use std::vec::Vec;

use socket2::{Domain, Protocol, Socket, Type};

use crate::Instant;
use crate::dhcp::config::{
    BootEntry, BootFileName, MAX_BOOT_FILES, Menu, MenuItem, ServerConfig, Text,
};
use crate::dhcp::server::{Event, IgnoreReason};
use crate::dhcp::store::{LeaseRecord, LeaseStore};
use crate::dhcp::{BootArch, Server, ServerPort};
use crate::driver::clients::ClientDirectory;

mod instance_lock;
pub mod lease_file;
pub use instance_lock::InstanceLock;
pub use lease_file::LeaseFile;

// Re-exported so that a configuration needs only this module.
pub use crate::dhcp::Mode;
pub use crate::dhcp::config::{MenuPolicy, Pool, RateLimit, Reservation, ReservationKey};

/// Boot files by client architecture, as names (or URLs for HTTP boot),
/// keyed by the boot classes of the architecture table ([`BootArch`]).
///
/// ```
/// use preboot::dhcp::BootArch;
/// use preboot::driver::dhcp::BootFileConfig;
/// let mut f = BootFileConfig::default();
/// f.files.insert(BootArch::UefiArm32, "arm/bootarm.efi".into());
/// f.files.insert(BootArch::Http, "http://10.0.0.1/bootx64.efi".into());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootFileConfig {
    /// The file (or, for an HTTP-boot class, the URL) of each architecture;
    /// [`BootArch::Http`] (`http_url`) is the URL of HTTP-boot clients
    /// without one of their own. [`BootArch::Other`] is never used.
    pub files: BTreeMap<BootArch, String>,
    /// For clients that already run iPXE (file or script URL).
    pub ipxe: Option<String>,
    /// Per-architecture TFTP server (`siaddr`) when not
    /// [`DhcpServerConfig::tftp_server`].
    pub servers: BTreeMap<BootArch, Ipv4Addr>,
    /// TFTP server of the iPXE file.
    pub ipxe_server: Option<Ipv4Addr>,
}

/// Everything the DHCP driver needs.
#[derive(Clone, Debug)]
pub struct DhcpServerConfig {
    /// Where the DHCP socket binds (`0.0.0.0:67`).
    pub dhcp_addr: SocketAddrV4,
    /// Where the boot server socket binds (`0.0.0.0:4011`); `None` = none.
    pub boot_addr: Option<SocketAddrV4>,
    /// Bind both sockets to this interface (`SO_BINDTODEVICE`, needs root).
    pub interface: Option<String>,
    /// The port clients listen on (68; tests use another).
    pub client_port: u16,
    /// Where broadcasts go (`255.255.255.255`; loopback tests use
    /// `127.0.0.1`).
    pub broadcast_address: Ipv4Addr,
    /// Proxy (default) or full.
    pub mode: Mode,
    /// Option 54: this server's address on the clients' network.
    pub server_id: Ipv4Addr,
    /// `siaddr`: the TFTP server (`None` = `server_id`).
    pub tftp_server: Option<Ipv4Addr>,
    /// Boot files by architecture.
    pub boot_files: BootFileConfig,
    /// When to show the PXE boot menu.
    pub menu: MenuPolicy,
    /// The menu prompt text.
    pub menu_prompt: String,
    /// Menu items: boot server type and description (the first is the
    /// default); empty = one item, type 0x8000, "preboot".
    pub menu_items: Vec<(u16, String)>,
    /// Address pools (full mode).
    pub pools: Vec<Pool>,
    /// Static reservations (full mode).
    pub reservations: Vec<Reservation>,
    /// The lease log (full mode); `None` = leases live in memory only.
    pub lease_file: Option<PathBuf>,
    /// The state directory: [`DhcpServer::bind`] takes an exclusive lock on
    /// `preboot.lock` in it, so a second instance with the same directory
    /// refuses to start. `None`: the lock is `<lease_file>.lock` (full mode
    /// with a lease log), else one per address and port in the directory
    /// systemd gives the service (`$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY`)
    /// or the user's runtime directory (`$XDG_RUNTIME_DIR`), else none
    /// (then only the ports, which are not shared, tell instances apart).
    /// See [`DhcpServerConfig::lock_path`].
    pub state_dir: Option<PathBuf>,
    /// Per-client rate limit (per hardware address and per client id).
    pub rate_limit: RateLimit,
    /// Where to note which client is at which address (for the TFTP
    /// server's log lines); `None` = nowhere.
    pub clients: Option<ClientDirectory>,
    /// Most addresses of a pool that DECLINEs may put on probation at a
    /// time, in percent of the pool (see
    /// [`ServerConfig::max_declined_percent`]).
    pub max_declined_percent: u8,
    /// Group commit window: once a lease record waits, the lease writer
    /// gathers more for this long before one fsync covers them all (the
    /// ACKs wait that much longer; fewer fsyncs cost less CPU). Zero =
    /// fsync as soon as anything waits.
    pub lease_commit_window: Duration,
}

impl DhcpServerConfig {
    /// A proxyDHCP server on the standard ports.
    pub fn proxy(server_id: Ipv4Addr) -> Self {
        DhcpServerConfig {
            dhcp_addr: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67),
            boot_addr: Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4011)),
            interface: None,
            client_port: 68,
            broadcast_address: Ipv4Addr::BROADCAST,
            mode: Mode::Proxy,
            server_id,
            tftp_server: None,
            boot_files: BootFileConfig::default(),
            menu: MenuPolicy::Never,
            menu_prompt: "Press F8 for boot menu".into(),
            menu_items: Vec::new(),
            pools: Vec::new(),
            reservations: Vec::new(),
            lease_file: None,
            state_dir: None,
            rate_limit: RateLimit::default(),
            max_declined_percent: crate::dhcp::config::DEFAULT_MAX_DECLINED_PERCENT,
            clients: None,
            lease_commit_window: Duration::from_millis(4),
        }
    }

    /// A full DHCP server with one pool.
    pub fn full(server_id: Ipv4Addr, pool: Pool) -> Self {
        DhcpServerConfig {
            mode: Mode::Full,
            pools: std::vec![pool],
            ..DhcpServerConfig::proxy(server_id)
        }
    }

    /// The lock file [`DhcpServer::bind`] takes (see
    /// [`DhcpServerConfig::state_dir`]).
    pub fn lock_path(&self) -> Option<PathBuf> {
        if let Some(d) = &self.state_dir {
            return Some(d.join("preboot.lock"));
        }
        if let (Some(f), Mode::Full) = (&self.lease_file, self.mode) {
            let mut name = f.file_name()?.to_os_string();
            name.push(".lock");
            return Some(f.with_file_name(name));
        }
        let runtime = ["STATE_DIRECTORY", "RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
            .iter()
            .filter_map(std::env::var_os)
            .map(PathBuf::from)
            .find(|d| d.is_absolute() && d.is_dir())?;
        let iface = self
            .interface
            .as_deref()
            .map(|i| std::format!("-{i}"))
            .unwrap_or_default();
        Some(runtime.join(std::format!(
            "preboot-{}-{}{iface}.lock",
            self.dhcp_addr.ip(),
            self.dhcp_addr.port()
        )))
    }

    /// The engine configuration this describes.
    pub fn engine_config(&self) -> io::Result<ServerConfig> {
        fn invalid(what: &str) -> io::Error {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                std::format!("dhcp config: {what}"),
            )
        }
        fn entry(f: Option<&String>, server: Option<Ipv4Addr>) -> io::Result<Option<BootEntry>> {
            f.map(String::as_str)
                .map(|f| {
                    BootEntry::tftp(f)
                        .map(|e| BootEntry { server, ..e })
                        .ok_or_else(|| invalid("boot file name over 127 bytes"))
                })
                .transpose()
        }
        let mut c = ServerConfig::proxy(self.server_id);
        c.mode = self.mode;
        c.tftp_server = self.tftp_server.unwrap_or(self.server_id);
        let f = &self.boot_files;
        for (&arch, file) in &f.files {
            let server = f.servers.get(&arch).copied();
            if !c.boot.set(arch, entry(Some(file), server)?) {
                return Err(invalid(&std::format!(
                    "boot file for {arch}: not an architecture of the table, or more than {MAX_BOOT_FILES} architectures"
                )));
            }
        }
        c.boot.ipxe = entry(f.ipxe.as_ref(), f.ipxe_server)?;
        let mut menu = Menu {
            policy: self.menu,
            prompt: Text::try_from(self.menu_prompt.as_str())
                .map_err(|_| invalid("menu prompt over 64 bytes"))?,
            ..Menu::default()
        };
        if !self.menu_items.is_empty() {
            menu.items.clear();
            for (ty, d) in &self.menu_items {
                menu.items
                    .push(MenuItem {
                        server_type: *ty,
                        description: Text::try_from(d.as_str())
                            .map_err(|_| invalid("menu item over 64 bytes"))?,
                        file: None::<BootFileName>,
                    })
                    .map_err(|_| invalid("more than 8 menu items"))?;
            }
        }
        menu.check()
            .map_err(|e| invalid(&std::format!("menu: {e}")))?;
        c.menu = menu;
        for p in &self.pools {
            c.pools
                .push(p.clone())
                .map_err(|_| invalid("more than 8 pools"))?;
        }
        for r in &self.reservations {
            c.reservations
                .push(r.clone())
                .map_err(|_| invalid("more than 64 reservations"))?;
        }
        c.rate_limit = self.rate_limit;
        c.max_declined_percent = self.max_declined_percent;
        Ok(c)
    }
}

/// Stops a running [`DhcpServer`] (within ~100 ms).
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Ask the server to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// ACKs waiting until the lease records that they grant are durable,
/// handed from the packet threads to the lease writer. The buffers keep
/// their capacity from one group commit to the next, so the packet path
/// does not allocate.
#[derive(Debug, Default)]
struct Held {
    records: Vec<LeaseRecord>,
    /// The held datagrams, back to back.
    bytes: Vec<u8>,
    /// Per datagram: socket, destination, end offset in `bytes`.
    sends: Vec<(ServerPort, SocketAddrV4, usize)>,
    /// The writer sleeps on the condition variable (a packet thread must
    /// wake it).
    writer_waiting: bool,
    /// No more batches: the writer commits what it has and ends.
    closed: bool,
    /// Over [`MAX_HELD`]: answers are being dropped (logged once per
    /// episode).
    overflowing: bool,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.sends.is_empty()
    }

    fn clear(&mut self) {
        self.records.clear();
        self.bytes.clear();
        self.sends.clear();
    }

    /// Move everything from `from` to the end of `self`.
    fn take_from(&mut self, from: &mut Held) {
        self.records.extend_from_slice(&from.records);
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&from.bytes);
        self.sends
            .extend(from.sends.iter().map(|&(p, to, end)| (p, to, base + end)));
        from.clear();
    }
}

/// Most ACKs held for the writer; beyond, answers are dropped (with their
/// records, so no client holds an unlogged lease) until the disk catches
/// up, and clients retry.
pub const MAX_HELD: usize = 65_536;

/// The hand-over point between the packet threads and the lease writer.
#[derive(Debug, Default)]
struct Commit {
    held: Mutex<Held>,
    wake: Condvar,
}

impl Commit {
    /// Queue a batch; wakes the writer if it sleeps.
    fn push(&self, batch: &mut Held) -> io::Result<()> {
        let Ok(mut h) = self.held.lock() else {
            return Err(io::Error::other("dhcp lease writer lock poisoned"));
        };
        if h.closed {
            return Err(io::Error::other("dhcp lease writer stopped"));
        }
        if h.sends.len() >= MAX_HELD {
            if !h.overflowing {
                h.overflowing = true;
                tracing::warn!(
                    held = h.sends.len(),
                    "dhcp: lease log behind, answers dropped until it catches up"
                );
            }
            batch.clear();
            return Ok(());
        }
        h.overflowing = false;
        h.take_from(batch);
        if h.writer_waiting {
            h.writer_waiting = false;
            self.wake.notify_one();
        }
        Ok(())
    }

    fn close(&self) {
        if let Ok(mut h) = self.held.lock() {
            h.closed = true;
            self.wake.notify_one();
        }
    }
}

/// The running DHCP server.
#[derive(Debug)]
pub struct DhcpServer {
    engine: Arc<Mutex<Server>>,
    dhcp: UdpSocket,
    boot: Option<UdpSocket>,
    config: DhcpServerConfig,
    stop: Arc<AtomicBool>,
    store: Option<LeaseFile>,
    lock: Option<InstanceLock>,
}

/// The driver's clock: engine time is microseconds since the Unix epoch, so
/// lease expiry times in the log are wall-clock times.
pub fn now() -> Instant {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Instant::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A UDP socket bound to `addr`. `reuse` sets `SO_REUSEADDR`, which lets
/// any other socket that sets it too bind the same port (on Linux, for
/// UDP, even a more specific address such as `127.0.0.1:4011` beside our
/// `0.0.0.0:4011`, and then it gets the unicast requests): only the proxy
/// server's port 67, which must live beside the network's DHCP server,
/// sets it.
fn udp_socket(addr: SocketAddrV4, interface: Option<&str>, reuse: bool) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(reuse)?;
    s.set_broadcast(true)?;
    if let Some(i) = interface {
        s.bind_device(Some(i.as_bytes()))?;
    }
    // Room for bursts of DISCOVERs while the engine is busy.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&SocketAddr::V4(addr).into())?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(s.into())
}

impl DhcpServer {
    /// Open the sockets (and the lease log, restoring its leases).
    pub fn bind(config: DhcpServerConfig) -> io::Result<DhcpServer> {
        let engine_config = config.engine_config()?;
        let mut engine = Server::new(engine_config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // Before the lease log: a second instance must not compact it.
        // Port 0 (tests, "pick one") names no instance: no runtime lock.
        let lock = match config.lock_path() {
            Some(p)
                if config.state_dir.is_some()
                    || config.lease_file.is_some()
                    || config.dhcp_addr.port() != 0 =>
            {
                Some(InstanceLock::acquire(&p)?)
            }
            _ => None,
        };
        let store = match (&config.lease_file, config.mode) {
            (Some(path), Mode::Full) => {
                let (file, live) = LeaseFile::open(path)?;
                for r in &live {
                    engine.restore(r);
                }
                tracing::info!(leases = live.len(), file = %path.display(), "dhcp: leases restored");
                Some(file)
            }
            _ => None,
        };
        let iface = config.interface.as_deref();
        // Port 67 is shared only in proxy mode (beside the network's DHCP
        // server on the same host); 4011 and full mode's 67 never.
        let dhcp = udp_socket(config.dhcp_addr, iface, config.mode == Mode::Proxy)?;
        let boot = config
            .boot_addr
            .map(|a| udp_socket(a, iface, false))
            .transpose()?;
        Ok(DhcpServer {
            engine: Arc::new(Mutex::new(engine)),
            dhcp,
            boot,
            config,
            stop: Arc::new(AtomicBool::new(false)),
            store,
            lock,
        })
    }

    /// The address the DHCP socket is bound to (port 0 in the config picks
    /// a free port).
    pub fn dhcp_local_addr(&self) -> io::Result<SocketAddr> {
        self.dhcp.local_addr()
    }

    /// The address the boot server socket is bound to.
    pub fn boot_local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.boot.as_ref().map(UdpSocket::local_addr)
    }

    /// A handle that stops [`DhcpServer::run`].
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Serve until stopped.
    pub fn run(self) -> io::Result<()> {
        let DhcpServer {
            engine,
            dhcp,
            boot,
            config,
            stop,
            store,
            lock,
        } = self;
        // Held until the server stops.
        let _lock = lock;
        let sockets = Sockets {
            dhcp: dhcp.try_clone()?,
            boot: boot.as_ref().map(UdpSocket::try_clone).transpose()?,
            client_port: config.client_port,
            broadcast: config.broadcast_address,
        };
        let window = config.lease_commit_window;
        let (commit, writer) = match store {
            Some(store) => {
                let commit = Arc::new(Commit::default());
                let (c, s) = (commit.clone(), sockets.try_clone()?);
                let h = std::thread::Builder::new()
                    .name("dhcp-leases".into())
                    .spawn(move || lease_writer(store, &c, &s, window))?;
                (Some(commit), Some(h))
            }
            None => (None, None),
        };
        let boot_thread = match boot {
            Some(b) => {
                let (e, st, s, c, dir) = (
                    engine.clone(),
                    stop.clone(),
                    sockets.try_clone()?,
                    commit.clone(),
                    config.clients.clone(),
                );
                Some(
                    std::thread::Builder::new()
                        .name("dhcp-4011".into())
                        .spawn(move || {
                            serve(
                                b,
                                ServerPort::BootServer,
                                &e,
                                &st,
                                &s,
                                c.as_deref(),
                                dir.as_ref(),
                            )
                        })?,
                )
            }
            None => None,
        };
        let r = serve(
            dhcp,
            ServerPort::Dhcp,
            &engine,
            &stop,
            &sockets,
            commit.as_deref(),
            config.clients.as_ref(),
        );
        stop.store(true, Ordering::SeqCst);
        if let Some(h) = boot_thread {
            let _ = h.join();
        }
        if let Some(c) = &commit {
            c.close();
        }
        if let Some(h) = writer {
            let _ = h.join();
        }
        r
    }
}

struct Sockets {
    dhcp: UdpSocket,
    boot: Option<UdpSocket>,
    client_port: u16,
    broadcast: Ipv4Addr,
}

impl Sockets {
    fn try_clone(&self) -> io::Result<Sockets> {
        Ok(Sockets {
            dhcp: self.dhcp.try_clone()?,
            boot: self.boot.as_ref().map(UdpSocket::try_clone).transpose()?,
            client_port: self.client_port,
            broadcast: self.broadcast,
        })
    }

    fn send(&self, from: ServerPort, to: SocketAddrV4, bytes: &[u8]) {
        // The engine speaks standard ports; tests move the client port and
        // the broadcast address.
        let mut to = to;
        if to.port() == crate::dhcp::server::CLIENT_PORT {
            to.set_port(self.client_port);
        }
        if *to.ip() == Ipv4Addr::BROADCAST {
            to.set_ip(self.broadcast);
        }
        let sock = match from {
            ServerPort::BootServer => self.boot.as_ref().unwrap_or(&self.dhcp),
            ServerPort::Dhcp => &self.dhcp,
        };
        if let Err(e) = sock.send_to(bytes, to) {
            tracing::warn!(%to, error = %e, "dhcp: send failed");
        }
    }
}

fn serve(
    sock: UdpSocket,
    port: ServerPort,
    engine: &Mutex<Server>,
    stop: &AtomicBool,
    sockets: &Sockets,
    commit: Option<&Commit>,
    clients: Option<&ClientDirectory>,
) -> io::Result<()> {
    let mut rx = [0u8; 1500];
    let mut tx = [0u8; 1500];
    // Reused for every datagram: the records and held ACKs of one.
    let mut batch = Held::default();
    // Logged with each datagram: the port really bound (a configuration
    // may move 67 and 4011).
    let bound = sock.local_addr().map_or(0, |a| a.port());
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut rx) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        let SocketAddr::V4(from) = from else { continue };
        observe(bound, from, &rx[..n], clients);
        let Ok(mut e) = engine.lock() else {
            return Err(io::Error::other("dhcp engine lock poisoned"));
        };
        let t = now();
        e.handle(t, port, from, &rx[..n]);
        while let Some(r) = e.poll_lease_update() {
            batch.records.push(r);
        }
        // Events are queued by `handle`: log them before the answers leave,
        // so that the log's order is the conversation's.
        while let Some(ev) = e.poll_event() {
            log_event(&ev);
        }
        // The engine drops an answer it cannot encode (with an event) and
        // keeps one that needs a larger buffer: that one gets a buffer of
        // the size it names, so nothing stays stuck at the head.
        let mut big = Vec::new();
        loop {
            let polled = match e.poll_transmit(t, &mut tx) {
                Err(crate::dhcp::Error::BufferTooSmall { needed }) => {
                    big.resize(needed, 0);
                    e.poll_transmit(t, &mut big)
                        .map(|o| o.map(|o| (o, &big[..])))
                }
                other => other.map(|o| o.map(|o| (o, &tx[..]))),
            };
            match polled {
                Ok(Some((out, buf))) => {
                    let bytes = &buf[..out.len];
                    if out.after_sync && commit.is_some() {
                        batch.bytes.extend_from_slice(bytes);
                        batch
                            .sends
                            .push((out.source, out.destination, batch.bytes.len()));
                    } else {
                        sockets.send(out.source, out.destination, bytes);
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::error!(error = %err, "dhcp: cannot write answer");
                    break;
                }
            }
        }
        while let Some(ev) = e.poll_event() {
            log_event(&ev);
        }
        drop(e);
        match commit {
            Some(c) if !batch.is_empty() => c.push(&mut batch)?,
            _ => batch.clear(),
        }
    }
    Ok(())
}

/// Group commit: take everything queued, append it, fsync once, then send
/// the held ACKs; meanwhile the packet threads go on queueing.
fn lease_writer(mut store: LeaseFile, commit: &Commit, sockets: &Sockets, window: Duration) {
    let mut mine = Held::default();
    loop {
        {
            let Ok(mut h) = commit.held.lock() else {
                return;
            };
            while h.is_empty() && !h.closed {
                h.writer_waiting = true;
                h = match commit.wake.wait(h) {
                    Ok(h) => h,
                    Err(_) => return,
                };
            }
            h.writer_waiting = false;
            if h.is_empty() && h.closed {
                return;
            }
            if !window.is_zero() && !h.closed {
                // Let the group grow; packet threads queue meanwhile
                // (writer_waiting is false: they need not wake us).
                drop(h);
                std::thread::sleep(window);
                h = match commit.held.lock() {
                    Ok(h) => h,
                    Err(_) => return,
                };
            }
            core::mem::swap(&mut mine.records, &mut h.records);
            core::mem::swap(&mut mine.bytes, &mut h.bytes);
            core::mem::swap(&mut mine.sends, &mut h.sends);
        }
        let mut ok = true;
        for r in &mine.records {
            if let Err(e) = store.append(r) {
                tracing::error!(error = %e, "dhcp: lease log append failed");
                ok = false;
            }
        }
        if let Err(e) = store.sync() {
            tracing::error!(error = %e, "dhcp: lease log sync failed");
            ok = false;
        }
        // Not durable: do not acknowledge; clients will retry.
        if ok {
            let mut start = 0;
            for &(from, to, end) in &mine.sends {
                if let Some(bytes) = mine.bytes.get(start..end) {
                    sockets.send(from, to, bytes);
                }
                start = end;
            }
            // Bounded size: rewrite the live leases once the log holds
            // COMPACT_FACTOR records per lease (after the ACKs left: a
            // compaction does not delay them).
            match store.maybe_compact() {
                Ok(true) => tracing::debug!(leases = store.live(), "dhcp: lease log compacted"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "dhcp: lease log compaction failed"),
            }
        }
        mine.clear();
    }
}

/// One line per client message: `mac`, `arch` (option 93, else the vendor
/// class; absent when neither says), `step` (`discover`, `request`, …) and
/// `port` (the port the socket is bound to: 67 or 4011 unless configured
/// otherwise); and the client's address, when the message shows it, into
/// `clients`.
fn observe(bound: u16, from: SocketAddrV4, bytes: &[u8], clients: Option<&ClientDirectory>) {
    use crate::wire::dhcp::{BOOTREQUEST, DhcpPacket, MessageType};
    if clients.is_none() && !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let Ok(p) = DhcpPacket::new_checked(bytes) else {
        return;
    };
    if p.op() != BOOTREQUEST {
        return;
    }
    let mac = crate::dhcp::HwAddr::new(p.chaddr());
    let arch93 = p
        .option(93)
        .and_then(|d| Some(u16::from_be_bytes([d.get(0)?, d.get(1)?])));
    let mut vc = [0u8; 64];
    let class = p
        .option(60)
        .and_then(|d| d.copy_to(&mut vc).ok().and_then(|n| vc.get(..n)));
    let arch = crate::dhcp::arch::classify(arch93, class);
    let pxe = class.is_some_and(|c| c.starts_with(b"PXEClient") || c.starts_with(b"HTTPClient"));
    if let Some(dir) = clients {
        // The source is the client unless a relay forwarded it (giaddr).
        let requested = p
            .option(50)
            .and_then(|d| Some(Ipv4Addr::new(d.get(0)?, d.get(1)?, d.get(2)?, d.get(3)?)));
        let ip = [
            Some(*from.ip()).filter(|_| p.giaddr().is_unspecified()),
            Some(p.ciaddr()),
            requested.filter(|_| p.message_type() == Some(MessageType::Request)),
        ]
        .into_iter()
        .flatten()
        .find(|ip| !ip.is_unspecified());
        if let Some(ip) = ip {
            dir.record(ip, mac, arch);
        }
    }
    let step = match p.message_type() {
        Some(MessageType::Discover) => "discover",
        Some(MessageType::Request) => "request",
        Some(MessageType::Inform) => "inform",
        Some(MessageType::Release) => "release",
        Some(MessageType::Decline) => "decline",
        _ => "other",
    };
    let arch = arch.map(tracing::field::display);
    tracing::info!(mac = %mac, arch, pxe, %from, step, port = bound, xid = p.xid(), "dhcp: received");
}

fn log_event(ev: &Event) {
    match ev {
        Event::ProxyOffered { chaddr, arch } => {
            tracing::info!(mac = %chaddr, arch = %arch, step = "proxy-offer", "dhcp")
        }
        Event::BootAcked { chaddr, arch, item } => {
            tracing::info!(mac = %chaddr, arch = %arch, item = ?item, step = "boot-ack", "dhcp")
        }
        Event::Offered { chaddr, yiaddr } => {
            tracing::info!(mac = %chaddr, %yiaddr, step = "offer", "dhcp")
        }
        Event::Acked { chaddr, yiaddr } => {
            tracing::info!(mac = %chaddr, %yiaddr, step = "ack", "dhcp")
        }
        Event::Informed { chaddr } => tracing::info!(mac = %chaddr, step = "inform", "dhcp"),
        Event::Nak { chaddr, requested } => {
            tracing::info!(mac = %chaddr, %requested, step = "nak", "dhcp")
        }
        Event::Released { chaddr, addr } => {
            tracing::info!(mac = %chaddr, %addr, step = "release", "dhcp")
        }
        Event::Declined { chaddr, addr } => {
            tracing::warn!(mac = %chaddr, %addr, step = "decline", "dhcp")
        }
        Event::AnswerDropped { chaddr, error } => tracing::error!(
            mac = %chaddr,
            error = %error,
            step = "answer-dropped",
            "dhcp: answer cannot be encoded, dropped"
        ),
        Event::DeclineIgnored {
            chaddr,
            addr,
            on_probation,
            limit,
        } => tracing::warn!(
            mac = %chaddr,
            %addr,
            on_probation,
            limit,
            step = "decline-ignored",
            "dhcp: decline ignored, the pool's probation budget is spent (the address stays in use)"
        ),
        Event::NoBootFile { chaddr, arch } => tracing::warn!(
            mac = %chaddr,
            arch = arch.map(tracing::field::display),
            step = "no-boot-file",
            "dhcp: no boot file for this client architecture, no offer"
        ),
        Event::Ignored { chaddr, reason } => match reason {
            // A datagram too short to hold chaddr names no client.
            IgnoreReason::Malformed if chaddr.as_bytes().is_empty() => {
                tracing::warn!(mac = %"unknown", reason = ?reason, step = "ignored", "dhcp")
            }
            IgnoreReason::Malformed
            | IgnoreReason::RateLimited
            | IgnoreReason::PoolExhausted
            | IgnoreReason::Busy
            | IgnoreReason::StoreBusy => {
                tracing::warn!(mac = %chaddr, reason = ?reason, step = "ignored", "dhcp")
            }
            _ => tracing::debug!(mac = %chaddr, reason = ?reason, step = "ignored", "dhcp"),
        },
    }
}

/// Where and how [`run_client`] talks.
#[derive(Clone, Debug)]
pub struct DhcpClientConfig {
    /// What the client says about itself, and its timeouts.
    pub client: crate::dhcp::client::ClientConfig,
    /// Transaction id (pass randomness in).
    pub xid: u32,
    /// Local socket (`0.0.0.0:68`).
    pub bind: SocketAddrV4,
    /// Bind to this interface (`SO_BINDTODEVICE`, needs root).
    pub interface: Option<String>,
    /// The servers' DHCP port (67; tests use another).
    pub server_port: u16,
    /// The boot servers' port (4011).
    pub boot_port: u16,
    /// Where broadcasts go (`255.255.255.255`).
    pub broadcast_address: Ipv4Addr,
}

impl DhcpClientConfig {
    /// A PXE client on the standard ports.
    pub fn new(client: crate::dhcp::client::ClientConfig, xid: u32) -> Self {
        DhcpClientConfig {
            client,
            xid,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
            interface: None,
            server_port: 67,
            boot_port: 4011,
            broadcast_address: Ipv4Addr::BROADCAST,
        }
    }
}

/// Run the PXE client engine on a UDP socket until it binds (returning
/// what it learned) or gives up (an error saying why).
///
/// The address is not configured on the interface: that is the caller's
/// business (a boot tool's own stack, or `ip addr`).
pub fn run_client(config: DhcpClientConfig) -> io::Result<crate::dhcp::client::BootInfo> {
    use crate::dhcp::client::Event as ClientEvent;
    // Port 68 beside the host's own DHCP client.
    let sock = udp_socket(config.bind, config.interface.as_deref(), true)?;
    let start = std::time::Instant::now();
    let clock = |s: std::time::Instant| {
        Instant::from_micros(u64::try_from(s.elapsed().as_micros()).unwrap_or(u64::MAX))
    };
    let mut client = crate::dhcp::Client::new(clock(start), config.client.clone(), config.xid);
    let mut buf = [0u8; 1500];
    let mut rx = [0u8; 1500];
    loop {
        let now = clock(start);
        client.handle_timeout(now);
        while let Some(t) = client
            .poll_transmit(now, &mut buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            let mut to = t.destination;
            match to.port() {
                crate::dhcp::server::SERVER_PORT => to.set_port(config.server_port),
                crate::dhcp::server::BOOT_SERVER_PORT => to.set_port(config.boot_port),
                _ => {}
            }
            if t.broadcast {
                to.set_ip(config.broadcast_address);
            }
            tracing::debug!(%to, len = t.len, "dhcp client: send");
            sock.send_to(&buf[..t.len], to)?;
        }
        match client.poll_event() {
            Some(ClientEvent::Bound(info)) => return Ok(info),
            Some(ClientEvent::Failed(why)) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    std::format!("dhcp client gave up: {why:?}"),
                ));
            }
            None => {}
        }
        let wait = client
            .poll_timeout()
            .map(|d| d.saturating_duration_since(clock(start)))
            .unwrap_or(Duration::from_millis(10))
            .clamp(Duration::from_millis(1), Duration::from_millis(500));
        sock.set_read_timeout(Some(wait))?;
        match sock.recv_from(&mut rx) {
            Ok((n, SocketAddr::V4(from))) => client.handle(clock(start), from, &rx[..n]),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::leases::ClientKey;
    use crate::dhcp::store::RecordKind;

    fn batch(n: u8, datagrams: &[&[u8]]) -> Held {
        let mut b = Held::default();
        b.records.push(LeaseRecord {
            kind: RecordKind::Granted,
            addr: Ipv4Addr::new(10, 0, 0, n),
            client: ClientKey::new(None, 1, &[2, 0, 0, 0, 0, n]),
            expires: Instant::from_secs(100),
        });
        for d in datagrams {
            b.bytes.extend_from_slice(d);
            b.sends.push((
                ServerPort::Dhcp,
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), 68),
                b.bytes.len(),
            ));
        }
        b
    }

    /// Batches from the packet threads join into one group with each
    /// datagram's bytes intact (the writer sends exactly what the engine
    /// wrote, after the group's fsync).
    #[test]
    fn held_batches_join_with_their_datagrams_intact() {
        let mut group = Held::default();
        let mut a = batch(1, &[b"ack-one", b"ack-two!"]);
        let mut b = batch(2, &[b"ack-three"]);
        group.take_from(&mut a);
        group.take_from(&mut b);
        assert!(a.is_empty() && b.is_empty() && a.bytes.is_empty());
        assert_eq!(group.records.len(), 2);
        let mut start = 0;
        let mut got = Vec::new();
        for &(_, to, end) in &group.sends {
            got.push((to.ip().octets()[3], &group.bytes[start..end]));
            start = end;
        }
        assert_eq!(
            got,
            [
                (1, &b"ack-one"[..]),
                (1, &b"ack-two!"[..]),
                (2, &b"ack-three"[..])
            ]
        );
    }

    /// Over the bound the batch is dropped whole (records and answers), so
    /// no client is told of a lease that is not logged.
    #[test]
    fn a_full_queue_drops_records_with_their_answers() {
        let c = Commit::default();
        {
            let mut h = c.held.lock().unwrap();
            h.sends = std::vec![(ServerPort::Dhcp, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 68), 0); MAX_HELD];
        }
        let mut b = batch(3, &[b"ack"]);
        c.push(&mut b).unwrap();
        assert!(b.is_empty());
        let h = c.held.lock().unwrap();
        assert!(h.records.is_empty());
        assert_eq!(h.sends.len(), MAX_HELD);
        assert!(h.overflowing);
    }
}
