//! The transaction server on a std UDP socket, with a `/dev/urandom`
//! random source. The image-safe data on disk is
//! [`super::image_safe_disk`].

use crate::engine::Datagram;
use crate::transaction::{KeyStore, NoRandomness, Policy, Random, Server, ServerEvent};
use crate::wire::transaction::MAX_FRAME_LEN;
use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;
use std::vec::Vec;

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

/// The transaction server engine on a UDP socket.
pub struct UdpTransactionServer<P: Policy, K: KeyStore, R: Random> {
    socket: UdpSocket,
    engine: Server<P, K, R>,
    /// The bound address, the `local` of every datagram.
    local: SocketAddrV4,
}

impl<P: Policy, K: KeyStore, R: Random> UdpTransactionServer<P, K, R> {
    /// Bind `addr` (e.g. `0.0.0.0:4012`, the default port) and serve `engine`.
    pub fn bind(addr: SocketAddr, engine: Server<P, K, R>) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        let local = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, a.port()),
        };
        Ok(UdpTransactionServer {
            socket,
            engine,
            local,
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

    /// The drivers' one monotonic clock.
    fn now(&self) -> crate::Instant {
        super::clock::now()
    }

    /// Wait up to `max_wait` for one datagram, feed it, send the replies,
    /// run timers, and return the events that happened. IPv6 senders are
    /// ignored (the protocol is IPv4, §1).
    pub fn poll_once(&mut self, max_wait: Duration) -> io::Result<Vec<ServerEvent>> {
        let now = self.now();
        let wait = match self.engine.poll_timeout() {
            Some(t) => {
                let until =
                    std::time::Duration::from_micros(t.as_micros().saturating_sub(now.as_micros()));
                until.min(max_wait)
            }
            None => max_wait,
        };
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let mut buf = [0u8; 2048];
        match self.socket.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => {
                let now = self.now();
                self.engine.handle(
                    now,
                    Datagram {
                        local: self.local,
                        remote: from,
                        payload: &buf[..n],
                    },
                );
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
        let now = self.now();
        self.engine.handle_timeout(now);
        // `Server::MAX_DATAGRAM` bytes: every reply fits, `poll_transmit` never
        // reports a too-small buffer.
        let mut out = [0u8; MAX_FRAME_LEN];
        while let Ok(Some(t)) = self.engine.poll_transmit(now, &mut out) {
            // A send error to one client must not stop the server.
            let _ = self.socket.send_to(&out[..t.len], t.remote);
        }
        let mut events = Vec::new();
        while let Some(e) = self.engine.poll_event() {
            events.push(e);
        }
        Ok(events)
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
