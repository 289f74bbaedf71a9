//! The packet path: the engine on the DHCP (67) and boot server (4011)
//! sockets as one [`Service`] of an event loop, and the log line per
//! client step.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::prelude::rust_2024::*;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::Instant;
use crate::dhcp::Server;
use crate::dhcp::server::{Event, IgnoreReason};
use crate::driver::clients::ClientDirectory;
use crate::driver::event_loop::mio::net::UdpSocket as MioUdpSocket;
use crate::driver::event_loop::{self, Registrar, Service};
use crate::engine::{BufferTooSmall, Datagram};

use super::lease_writer::{Commit, Held, lease_writer};
use super::server::{Route, Sockets, local_v4, now};
use super::{DhcpServerConfig, InstanceLock, LeaseFile};

/// The token of the DHCP (67) socket.
const DHCP: usize = 0;
/// The token of the boot server (4011) socket.
const BOOT: usize = 1;
/// Receive buffer: a DHCP message fits an Ethernet frame.
const RX_LEN: usize = 1500;

/// The DHCP server as a [`Service`] of an
/// [`EventLoop`](crate::driver::event_loop::EventLoop)
/// ([`DhcpServer::into_service`](super::DhcpServer::into_service)): it owns
/// the engine (no lock: only its loop's thread calls it), the sockets of
/// port 67 and 4011, and the hand-off of lease records and the ACKs that
/// grant them to the lease writer thread (which fsyncs, then sends those
/// ACKs). Dropping it lets the writer commit what it holds and joins it.
pub struct DhcpService {
    engine: Server,
    dhcp: MioUdpSocket,
    boot: Option<MioUdpSocket>,
    /// The bound addresses: the `local` of every datagram of each socket.
    dhcp_local: SocketAddrV4,
    boot_local: SocketAddrV4,
    route: Route,
    clients: Option<ClientDirectory>,
    commit: Option<Arc<Commit>>,
    writer: Option<JoinHandle<()>>,
    /// Reused for every datagram: the records and held ACKs of one.
    batch: Held,
    rx: Box<[u8]>,
    /// The engine's largest answer always fits (the engine contract).
    tx: Box<[u8]>,
    /// Held until the service is dropped.
    _lock: Option<InstanceLock>,
}

impl core::fmt::Debug for DhcpService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DhcpService")
            .field("dhcp", &self.dhcp_local)
            .field("boot", &self.boot.as_ref().map(|_| self.boot_local))
            .field("lease_writer", &self.writer.is_some())
            .finish_non_exhaustive()
    }
}

impl DhcpService {
    /// The service on the bound sockets; starts the lease writer thread
    /// when there is a lease log.
    pub(super) fn new(
        engine: Server,
        dhcp: UdpSocket,
        boot: Option<UdpSocket>,
        config: &DhcpServerConfig,
        store: Option<LeaseFile>,
        lock: Option<InstanceLock>,
    ) -> io::Result<DhcpService> {
        let dhcp_local = local_v4(&dhcp)?;
        let boot_local = match &boot {
            Some(b) => local_v4(b)?,
            None => SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
        };
        let route = Route {
            boot_port: boot_local.port(),
            client_port: config.client_port,
            broadcast: config.broadcast_address,
        };
        // The loop reads until a socket would block; the writer's handles
        // are the same sockets, so they are non-blocking too.
        dhcp.set_nonblocking(true)?;
        if let Some(b) = &boot {
            b.set_nonblocking(true)?;
        }
        let (commit, writer) = match store {
            Some(store) => {
                let commit = Arc::new(Commit::default());
                let sockets = Sockets {
                    dhcp: dhcp.try_clone()?,
                    boot: boot.as_ref().map(UdpSocket::try_clone).transpose()?,
                    route,
                };
                let (c, window) = (commit.clone(), config.lease_commit_window);
                let h = std::thread::Builder::new()
                    .name("dhcp-leases".into())
                    .spawn(move || lease_writer(store, &c, &sockets, window))?;
                (Some(commit), Some(h))
            }
            None => (None, None),
        };
        Ok(DhcpService {
            engine,
            dhcp: MioUdpSocket::from_std(dhcp),
            boot: boot.map(MioUdpSocket::from_std),
            dhcp_local,
            boot_local,
            route,
            clients: config.clients.clone(),
            commit,
            writer,
            batch: Held::default(),
            rx: std::vec![0u8; RX_LEN].into_boxed_slice(),
            tx: std::vec![0u8; Server::MAX_DATAGRAM].into_boxed_slice(),
            _lock: lock,
        })
    }

    /// The address the DHCP socket is bound to.
    pub fn dhcp_local_addr(&self) -> SocketAddrV4 {
        self.dhcp_local
    }

    /// The address the boot server socket is bound to, if there is one.
    pub fn boot_local_addr(&self) -> Option<SocketAddrV4> {
        self.boot.as_ref().map(|_| self.boot_local)
    }

    /// The engine, to change what it answers between two datagrams (a
    /// reloaded MTFTP table: [`Server::boot_mut`]).
    pub fn engine_mut(&mut self) -> &mut Server {
        &mut self.engine
    }

    /// Feed one datagram (in `rx[..n]`) and pass on what it caused.
    fn answer(&mut self, local: SocketAddrV4, from: SocketAddrV4, n: usize) -> io::Result<()> {
        let t = now();
        self.engine.handle(
            t,
            Datagram {
                local,
                remote: from,
                payload: &self.rx[..n],
            },
        );
        // The `local` port is logged with each line (a configuration may
        // move 67 and 4011).
        self.drain(t, local.port(), from)
    }

    /// Take the engine's lease records, events and answers: events queued
    /// by `handle` are logged before the answers leave, so that the log's
    /// order is the conversation's; answers that grant a lease go to the
    /// lease writer with their records.
    fn drain(&mut self, t: Instant, bound: u16, from: SocketAddrV4) -> io::Result<()> {
        let clients = self.clients.as_ref();
        while let Some(r) = self.engine.poll_lease_update() {
            self.batch.records.push(r);
        }
        while let Some(ev) = self.engine.poll_event() {
            log_event(&ev, bound, from, clients);
        }
        // The engine drops an answer it cannot encode (with an event), and
        // `tx` holds its largest answer: nothing stays stuck at the head.
        loop {
            match self.engine.poll_transmit(t, &mut self.tx) {
                Ok(Some(out)) => {
                    let bytes = &self.tx[..out.len];
                    if out.after_sync && self.commit.is_some() {
                        self.batch.bytes.extend_from_slice(bytes);
                        let end = self.batch.bytes.len();
                        self.batch.sends.push((out.local, out.remote, end));
                    } else {
                        let (boot, to) = self.route.route(out.local, out.remote);
                        let sock = match &self.boot {
                            Some(b) if boot => b,
                            _ => &self.dhcp,
                        };
                        if let Err(e) = sock.send_to(bytes, SocketAddr::V4(to)) {
                            tracing::warn!(%to, error = %e, "dhcp: send failed");
                        }
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
        while let Some(ev) = self.engine.poll_event() {
            log_event(&ev, bound, from, clients);
        }
        match &self.commit {
            Some(c) if !self.batch.is_empty() => c.push(&mut self.batch),
            _ => {
                self.batch.clear();
                Ok(())
            }
        }
    }
}

impl Service for DhcpService {
    fn start(&mut self, registrar: Registrar) -> io::Result<()> {
        registrar.register(&mut self.dhcp, DHCP)?;
        if let Some(b) = &mut self.boot {
            registrar.register(b, BOOT)?;
        }
        Ok(())
    }

    fn ready(&mut self, token: usize) -> io::Result<()> {
        let local = if token == BOOT {
            self.boot_local
        } else {
            self.dhcp_local
        };
        loop {
            let sock = match &self.boot {
                Some(b) if token == BOOT => b,
                None if token == BOOT => return Ok(()),
                _ => &self.dhcp,
            };
            let (n, from) = match sock.recv_from(&mut self.rx) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if event_loop::transient(&e) => continue,
                Err(e) => return Err(e),
            };
            let SocketAddr::V4(from) = from else { continue };
            self.answer(local, from, n)?;
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) -> io::Result<()> {
        self.engine.handle_timeout(now);
        let nobody = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);
        self.drain(now, self.dhcp_local.port(), nobody)
    }
}

impl Drop for DhcpService {
    /// The lease writer commits what it holds (and sends those ACKs), then
    /// ends; the instance lock is released after it.
    fn drop(&mut self) {
        if let Some(c) = &self.commit {
            c.close();
        }
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
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
