//! The packet path: the engine on the DHCP (67) and boot server (4011)
//! sockets, a thread per socket, and the log line per client step.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::Instant;
use crate::dhcp::Server;
use crate::dhcp::server::{Event, IgnoreReason};
use crate::driver::clients::ClientDirectory;
use crate::engine::{BufferTooSmall, Datagram};

use super::lease_writer::{Commit, Held, lease_writer};
use super::{DhcpServerConfig, InstanceLock, LeaseFile, Mode};

/// Stops a running [`DhcpServer`] (within ~100 ms).
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Ask the server to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
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

/// The driver's clock: [`crate::driver::clock::now`], monotonic, the one
/// every driver feeds its engines (lease expiry times reach the lease log as
/// wall-clock times through [`crate::driver::clock::to_unix_micros`]).
pub fn now() -> Instant {
    crate::driver::clock::now()
}

/// The IPv4 address a socket is bound to (the `local` of its datagrams).
fn local_v4(sock: &UdpSocket) -> io::Result<SocketAddrV4> {
    match sock.local_addr()? {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(io::Error::other("dhcp: socket not IPv4")),
    }
}

/// A UDP socket bound to `addr`. `reuse` sets `SO_REUSEADDR`, which lets
/// any other socket that sets it too bind the same port (on Linux, for
/// UDP, even a more specific address such as `127.0.0.1:4011` beside our
/// `0.0.0.0:4011`, and then it gets the unicast requests): only the proxy
/// server's port 67, which must live beside the network's DHCP server,
/// sets it.
pub(super) fn udp_socket(
    addr: SocketAddrV4,
    interface: Option<&str>,
    reuse: bool,
) -> io::Result<UdpSocket> {
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
        let mut engine_config = config.engine_config()?;
        // A configuration that cannot work is reported before anything is
        // opened.
        Server::new(engine_config.clone())
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
        let iface = config.interface.as_deref();
        // Port 67 is shared only in proxy mode (beside the network's DHCP
        // server on the same host); 4011 and full mode's 67 never.
        let dhcp = udp_socket(config.dhcp_addr, iface, config.mode == Mode::Proxy)?;
        let boot = config
            .boot_addr
            .map(|a| udp_socket(a, iface, false))
            .transpose()?;
        // The engine tells 4011 from 67 by the port a datagram arrived on:
        // the one really bound (port 0 in the config picks one).
        engine_config.boot_port = match &boot {
            Some(b) => local_v4(b)?.port(),
            None => 0,
        };
        let mut engine = Server::new(engine_config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
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
            boot_port: boot
                .as_ref()
                .map(local_v4)
                .transpose()?
                .map_or(0, |a| a.port()),
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
                        .spawn(move || serve(b, &e, &st, &s, c.as_deref(), dir.as_ref()))?,
                )
            }
            None => None,
        };
        let r = serve(
            dhcp,
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

pub(super) struct Sockets {
    dhcp: UdpSocket,
    boot: Option<UdpSocket>,
    /// The port `boot` is bound to.
    boot_port: u16,
    client_port: u16,
    broadcast: Ipv4Addr,
}

impl Sockets {
    fn try_clone(&self) -> io::Result<Sockets> {
        Ok(Sockets {
            dhcp: self.dhcp.try_clone()?,
            boot: self.boot.as_ref().map(UdpSocket::try_clone).transpose()?,
            boot_port: self.boot_port,
            client_port: self.client_port,
            broadcast: self.broadcast,
        })
    }

    /// Send `bytes` from the socket bound to `from` (the `local` of a
    /// [`Transmit`](crate::engine::Transmit): the boot server socket when
    /// its port is that one's, else the DHCP socket).
    pub(super) fn send(&self, from: Option<SocketAddrV4>, to: SocketAddrV4, bytes: &[u8]) {
        // The engine speaks standard ports; tests move the client port and
        // the broadcast address.
        let mut to = to;
        if to.port() == crate::dhcp::server::CLIENT_PORT {
            to.set_port(self.client_port);
        }
        if *to.ip() == Ipv4Addr::BROADCAST {
            to.set_ip(self.broadcast);
        }
        let sock = match &self.boot {
            Some(boot) if from.is_some_and(|f| f.port() == self.boot_port) => boot,
            _ => &self.dhcp,
        };
        if let Err(e) = sock.send_to(bytes, to) {
            tracing::warn!(%to, error = %e, "dhcp: send failed");
        }
    }
}

fn serve(
    sock: UdpSocket,
    engine: &Mutex<Server>,
    stop: &AtomicBool,
    sockets: &Sockets,
    commit: Option<&Commit>,
    clients: Option<&ClientDirectory>,
) -> io::Result<()> {
    let mut rx = [0u8; 1500];
    // The engine's largest answer always fits (the engine contract).
    let mut tx = [0u8; Server::MAX_DATAGRAM];
    // Reused for every datagram: the records and held ACKs of one.
    let mut batch = Held::default();
    // The `local` of every datagram; its port is logged with each (a
    // configuration may move 67 and 4011).
    let local = local_v4(&sock)?;
    let bound = local.port();
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut rx) {
            Ok(v) => v,
            Err(e) if no_datagram_yet(&e) => continue,
            Err(e) => return Err(e),
        };
        let SocketAddr::V4(from) = from else { continue };
        let Ok(mut e) = engine.lock() else {
            return Err(io::Error::other("dhcp engine lock poisoned"));
        };
        let t = now();
        e.handle(
            t,
            Datagram {
                local,
                remote: from,
                payload: &rx[..n],
            },
        );
        while let Some(r) = e.poll_lease_update() {
            batch.records.push(r);
        }
        // Events are queued by `handle`: log them before the answers leave,
        // so that the log's order is the conversation's.
        while let Some(ev) = e.poll_event() {
            log_event(&ev, bound, from, clients);
        }
        // The engine drops an answer it cannot encode (with an event), and
        // `tx` holds its largest answer: nothing stays stuck at the head.
        loop {
            match e.poll_transmit(t, &mut tx) {
                Ok(Some(out)) => {
                    let bytes = &tx[..out.len];
                    if out.after_sync && commit.is_some() {
                        batch.bytes.extend_from_slice(bytes);
                        batch.sends.push((out.local, out.remote, batch.bytes.len()));
                    } else {
                        sockets.send(out.local, out.remote, bytes);
                    }
                }
                Ok(None) => break,
                Err(BufferTooSmall { needed }) => {
                    // Cannot happen (`tx` is `MAX_DATAGRAM` bytes); say so
                    // rather than spin.
                    tracing::error!(needed, "dhcp: answer over MAX_DATAGRAM, not sent");
                    break;
                }
            }
        }
        while let Some(ev) = e.poll_event() {
            log_event(&ev, bound, from, clients);
        }
        drop(e);
        match commit {
            Some(c) if !batch.is_empty() => c.push(&mut batch)?,
            _ => batch.clear(),
        }
    }
    Ok(())
}

/// Log an engine event. [`Event::Received`] is one line per client
/// message: `mac`, `arch` (option 93, else the vendor class; absent when
/// neither says), `step` (`discover`, `request`, …) and `port` (the port
/// the socket is bound to: 67 or 4011 unless configured otherwise); it also
/// puts the client's address, when the message shows it, into `clients`,
/// so that TFTP lines can name the client.
fn log_event(ev: &Event, bound: u16, from: SocketAddrV4, clients: Option<&ClientDirectory>) {
    use crate::wire::dhcp::MessageType;
    match ev {
        Event::Received {
            chaddr,
            arch,
            pxe,
            message,
            xid,
            client_ip,
        } => {
            if let (Some(dir), Some(ip)) = (clients, client_ip) {
                dir.record(*ip, *chaddr, *arch);
            }
            let step = match message {
                MessageType::Discover => "discover",
                MessageType::Request => "request",
                MessageType::Inform => "inform",
                MessageType::Release => "release",
                MessageType::Decline => "decline",
                _ => "other",
            };
            let arch = arch.map(tracing::field::display);
            tracing::info!(mac = %chaddr, arch, pxe, %from, step, port = bound, xid, "dhcp: received");
        }
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

/// A receive that timed out or was interrupted: nothing arrived, try again.
pub(super) fn no_datagram_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
