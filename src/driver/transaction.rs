//! The transaction server on a std UDP socket, with a `/dev/urandom`
//! random source: a [`TransactionService`] for an event loop, and
//! [`UdpTransactionServer`], the same service on a poll of its own for a
//! caller that drives it step by step. The image-safe data on disk is
//! [`super::image_safe_disk`].

use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram};
use crate::transaction::{KeyStore, NoRandomness, Policy, Random, Server, ServerEvent};
use std::boxed::Box;
use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use std::vec::Vec;

use super::event_loop::mio::net::UdpSocket as MioUdpSocket;
use super::event_loop::mio::{Events, Interest, Poll, Token};
use super::event_loop::{self, Registrar, Service};

/// Random bytes from `/dev/urandom`.
#[derive(Debug)]
pub struct Urandom {
    file: File,
}

impl Urandom {
    /// Open `/dev/urandom`.
    pub fn open() -> io::Result<Self> {
        Ok(Urandom {
            file: File::open("/dev/urandom")?,
        })
    }
}

impl Random for Urandom {
    fn fill(&mut self, buf: &mut [u8]) {
        if self.file.read_exact(buf).is_err() {
            // Never hand out predictable nonces: a failing kernel RNG is fatal.
            panic!("/dev/urandom read failed");
        }
    }

    fn try_fill(&mut self, buf: &mut [u8]) -> Result<(), NoRandomness> {
        self.file.read_exact(buf).map_err(|_| NoRandomness)
    }
}

/// The one socket's token.
const SOCKET: usize = 0;

/// The transaction server engine on a UDP socket, as a [`Service`] of an
/// [`EventLoop`](super::event_loop::EventLoop): it owns the engine (only
/// its loop's thread calls it), reads the socket until it would block,
/// answers, runs the engine's session timers, and logs its events with
/// `tracing` (and keeps them for the caller after
/// [`TransactionService::keep_events`]).
pub struct TransactionService<P: Policy, K: KeyStore, R: Random> {
    socket: MioUdpSocket,
    engine: Server<P, K, R>,
    /// The bound address, the `local` of every datagram.
    local: SocketAddrV4,
    rx: Box<[u8]>,
    /// [`Server::MAX_DATAGRAM`] bytes: every reply fits.
    tx: Box<[u8]>,
    /// Events kept for [`TransactionService::take_events`].
    kept: Option<Vec<ServerEvent>>,
}

impl<P: Policy, K: KeyStore, R: Random> core::fmt::Debug for TransactionService<P, K, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TransactionService")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl<P: Policy, K: KeyStore, R: Random> TransactionService<P, K, R> {
    /// Bind `addr` (e.g. `0.0.0.0:4012`, the default port) and serve `engine`.
    pub fn bind(addr: SocketAddr, engine: Server<P, K, R>) -> io::Result<Self> {
        Self::new(std::net::UdpSocket::bind(addr)?, engine)
    }

    /// Serve `engine` on a bound socket (made non-blocking here).
    pub fn new(socket: std::net::UdpSocket, engine: Server<P, K, R>) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let local = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, a.port()),
        };
        Ok(TransactionService {
            socket: MioUdpSocket::from_std(socket),
            engine,
            local,
            // Room for a datagram over the largest frame (the engine
            // refuses it rather than seeing it cut).
            rx: std::vec![0u8; Server::<P, K, R>::MAX_DATAGRAM.max(2048)].into_boxed_slice(),
            tx: std::vec![0u8; Server::<P, K, R>::MAX_DATAGRAM].into_boxed_slice(),
            kept: None,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The engine (for its policy and counters).
    pub fn engine(&self) -> &Server<P, K, R> {
        &self.engine
    }

    /// The engine, mutable (e.g. to reload its policy).
    pub fn engine_mut(&mut self) -> &mut Server<P, K, R> {
        &mut self.engine
    }

    /// Keep every event (besides logging it) until
    /// [`TransactionService::take_events`]; for a caller that drains them.
    pub fn keep_events(&mut self) {
        self.kept.get_or_insert_with(Vec::new);
    }

    /// The events kept since the last call (none unless
    /// [`TransactionService::keep_events`]).
    pub fn take_events(&mut self) -> Vec<ServerEvent> {
        self.kept.as_mut().map(core::mem::take).unwrap_or_default()
    }

    /// Read the socket until it would block, answering each datagram.
    /// IPv6 senders are ignored (the protocol is IPv4, §1).
    fn receive(&mut self) -> io::Result<()> {
        loop {
            let (n, from) = match self.socket.recv_from(&mut self.rx) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if event_loop::transient(&e) => continue,
                Err(e) => return Err(e),
            };
            let SocketAddr::V4(from) = from else { continue };
            let now = super::clock::now();
            self.engine.handle(
                now,
                Datagram {
                    local: self.local,
                    remote: from,
                    payload: &self.rx[..n],
                },
            );
            self.flush(now);
        }
    }

    /// Run the engine's timers and pass on what they caused.
    fn timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        self.flush(now);
    }

    /// Send the engine's replies and take its events.
    fn flush(&mut self, now: Instant) {
        loop {
            match self.engine.poll_transmit(now, &mut self.tx) {
                Ok(Some(t)) => {
                    // A send error to one client must not stop the server.
                    if let Err(e) = self
                        .socket
                        .send_to(&self.tx[..t.len], SocketAddr::V4(t.remote))
                    {
                        tracing::debug!(to = %t.remote, error = %e, "transaction: send failed");
                    }
                }
                Ok(None) => break,
                Err(BufferTooSmall { needed }) => {
                    // Cannot happen (`tx` is `MAX_DATAGRAM` bytes); say so
                    // rather than spin.
                    tracing::error!(needed, "transaction: reply over MAX_DATAGRAM, not sent");
                    break;
                }
            }
        }
        while let Some(ev) = self.engine.poll_event() {
            log_event(&ev);
            if let Some(k) = &mut self.kept {
                k.push(ev);
            }
        }
    }
}

impl<P, K, R> Service for TransactionService<P, K, R>
where
    P: Policy + Send,
    K: KeyStore + Send,
    R: Random + Send,
{
    fn start(&mut self, registrar: Registrar) -> io::Result<()> {
        registrar.register(&mut self.socket, SOCKET)
    }

    fn ready(&mut self, _token: usize) -> io::Result<()> {
        self.receive()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) -> io::Result<()> {
        self.timeout(now);
        Ok(())
    }
}

/// One line per event: the steps of a session at info, the routine ones
/// (a session opened or expired, a retransmission) at debug.
fn log_event(ev: &ServerEvent) {
    match ev {
        ServerEvent::SessionOpened { .. }
        | ServerEvent::SessionExpired { .. }
        | ServerEvent::Retransmission { .. } => {
            tracing::debug!(event = ?ev, "transaction")
        }
        _ => tracing::info!(event = ?ev, "transaction"),
    }
}

/// A [`TransactionService`] on a poll of its own, driven by the caller one
/// step at a time ([`UdpTransactionServer::poll_once`]): for tests, benches
/// and tools. A server hosts the service on an event loop instead.
pub struct UdpTransactionServer<P: Policy, K: KeyStore, R: Random> {
    service: TransactionService<P, K, R>,
    poll: Poll,
    events: Events,
}

impl<P: Policy, K: KeyStore, R: Random> UdpTransactionServer<P, K, R> {
    /// Bind `addr` (e.g. `0.0.0.0:4012`, the default port) and serve `engine`.
    pub fn bind(addr: SocketAddr, engine: Server<P, K, R>) -> io::Result<Self> {
        let mut service = TransactionService::bind(addr, engine)?;
        service.keep_events();
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut service.socket, Token(SOCKET), Interest::READABLE)?;
        Ok(UdpTransactionServer {
            service,
            poll,
            events: Events::with_capacity(4),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.service.local_addr()
    }

    /// The engine (for its policy and counters).
    pub fn engine(&self) -> &Server<P, K, R> {
        self.service.engine()
    }

    /// Wait up to `max_wait` (or until the engine's next deadline) for
    /// datagrams, answer every one that came, run timers that are due, and
    /// return the events that happened.
    pub fn poll_once(&mut self, max_wait: Duration) -> io::Result<Vec<ServerEvent>> {
        let now = super::clock::now();
        let wait = self
            .service
            .engine
            .poll_timeout()
            .map_or(max_wait, |t| t.saturating_duration_since(now).min(max_wait));
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        // Edge-triggered: read until the socket would block (at once when
        // nothing came).
        self.service.receive()?;
        let now = super::clock::now();
        if self.service.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.service.timeout(now);
        }
        Ok(self.service.take_events())
    }

    /// Serve until `stop` returns true (checked at least every 100 ms).
    pub fn serve(&mut self, mut stop: impl FnMut(&[ServerEvent]) -> bool) -> io::Result<()> {
        loop {
            let ev = self.poll_once(Duration::from_millis(100))?;
            if stop(&ev) {
                return Ok(());
            }
        }
    }
}
