//! The DHCP server as the caller builds it: the sockets for DHCP (67) and
//! the boot server (4011), bound with the lease log restored, then served
//! by a [`DhcpService`] on an event loop.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::prelude::rust_2024::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::Instant;
use crate::dhcp::Server;
use crate::driver::event_loop::mio::Waker;
use crate::driver::event_loop::{EventLoop, LoopGroup};

use super::service::DhcpService;
use super::{DhcpServerConfig, InstanceLock, LeaseFile, Mode};

/// Stops a running [`DhcpServer`]: usable from any thread; the loop wakes
/// at once (at the latest within [`MAX_WAIT`](crate::driver::event_loop::MAX_WAIT)).
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<StopState>);

#[derive(Debug, Default)]
struct StopState {
    stop: AtomicBool,
    /// The running loop's waker, once [`DhcpServer::run`] made it.
    waker: OnceLock<Arc<Waker>>,
}

impl StopHandle {
    /// Ask the server to stop.
    pub fn stop(&self) {
        self.0.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.0.waker.get() {
            let _ = w.wake();
        }
    }
}

/// The DHCP server, bound and not yet serving.
#[derive(Debug)]
pub struct DhcpServer {
    engine: Server,
    dhcp: UdpSocket,
    boot: Option<UdpSocket>,
    config: DhcpServerConfig,
    stop: StopHandle,
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
pub(super) fn local_v4(sock: &UdpSocket) -> io::Result<SocketAddrV4> {
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
            engine,
            dhcp,
            boot,
            config,
            stop: StopHandle::default(),
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
        self.stop.clone()
    }

    /// The server as a [`Service`](crate::driver::event_loop::Service) for
    /// an [`EventLoop`] that hosts it among others (the boot server puts it
    /// on its first loop). The lease writer thread starts now; it flushes
    /// and ends when the service is dropped. The instance lock moves into
    /// the service. The [`StopHandle`] does not apply: the loop's owner
    /// stops it.
    ///
    /// ```
    /// use std::net::{Ipv4Addr, SocketAddrV4};
    /// use preboot::driver::dhcp::{DhcpServer, DhcpServerConfig};
    /// use preboot::driver::event_loop::{EventLoop, LoopGroup};
    ///
    /// let mut config = DhcpServerConfig::proxy(Ipv4Addr::new(192, 168, 77, 1));
    /// config.dhcp_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    /// config.boot_addr = Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    /// let dhcp = DhcpServer::bind(config)?.into_service()?;
    /// let mut event_loop = EventLoop::new("preboot-0")?;
    /// event_loop.add(Box::new(dhcp))?;
    /// // … and the loop's other services (TFTP) …
    /// let running = LoopGroup::new(vec![event_loop]).spawn()?;
    /// running.stop()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_service(self) -> io::Result<DhcpService> {
        let DhcpServer {
            engine,
            dhcp,
            boot,
            config,
            stop: _,
            store,
            lock,
        } = self;
        DhcpService::new(engine, dhcp, boot, &config, store, lock)
    }

    /// Serve on the calling thread, on an event loop of its own
    /// (`preboot-dhcp`), until the [`StopHandle`] is used. A lease log
    /// gets everything queued written and synced before this returns.
    pub fn run(self) -> io::Result<()> {
        let stop = self.stop.clone();
        let mut event_loop = EventLoop::new("preboot-dhcp")?;
        let _ = stop.0.waker.set(event_loop.waker());
        event_loop.add(Box::new(self.into_service()?))?;
        let mut group = LoopGroup::new(std::vec![event_loop]);
        let r = group.run(&stop.0.stop);
        // Dropping the service closes the lease writer and joins it.
        drop(group);
        r
    }
}

/// Where the engine's transmits go: the engine speaks standard ports;
/// tests move the client port and the broadcast address.
#[derive(Clone, Copy, Debug)]
pub(super) struct Route {
    /// The port the boot server socket is bound to (0: none).
    pub(super) boot_port: u16,
    pub(super) client_port: u16,
    pub(super) broadcast: Ipv4Addr,
}

impl Route {
    /// The destination of a transmit from `from` (its
    /// [`Transmit::local`](crate::engine::Transmit::local)) to `to`, and
    /// whether it leaves from the boot server socket (its port is
    /// `from`'s) rather than the DHCP socket.
    pub(super) fn route(
        &self,
        from: Option<SocketAddrV4>,
        to: SocketAddrV4,
    ) -> (bool, SocketAddrV4) {
        let mut to = to;
        if to.port() == crate::dhcp::server::CLIENT_PORT {
            to.set_port(self.client_port);
        }
        if *to.ip() == Ipv4Addr::BROADCAST {
            to.set_ip(self.broadcast);
        }
        let boot = self.boot_port != 0 && from.is_some_and(|f| f.port() == self.boot_port);
        (boot, to)
    }
}

/// The lease writer's handles on the service's sockets (the same sockets:
/// non-blocking, as the loop needs them).
#[derive(Debug)]
pub(super) struct Sockets {
    pub(super) dhcp: UdpSocket,
    pub(super) boot: Option<UdpSocket>,
    pub(super) route: Route,
}

impl Sockets {
    /// Send `bytes` as the engine asked (see [`Route::route`]). The
    /// sockets are non-blocking: a full send buffer is waited out (briefly;
    /// this runs on the lease writer's thread, off the packet path).
    pub(super) fn send(&self, from: Option<SocketAddrV4>, to: SocketAddrV4, bytes: &[u8]) {
        let (boot, to) = self.route.route(from, to);
        let sock = match &self.boot {
            Some(b) if boot => b,
            _ => &self.dhcp,
        };
        let mut tries = 0;
        loop {
            match sock.send_to(bytes, to) {
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    tracing::warn!(%to, error = %e, "dhcp: send failed");
                    return;
                }
            }
        }
    }
}

/// A receive that timed out or was interrupted: nothing arrived, try again.
pub(super) fn no_datagram_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
