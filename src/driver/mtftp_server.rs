//! The boot server's PXE MTFTP service: the server engine
//! ([`crate::mtftp::server`]) on one UDP socket in an event loop
//! ([`crate::driver::event_loop`]), serving the files of `[mtftp]`
//! ([`MtftpConfig`]).
//!
//! The socket is bound to SPORT (`mtftp.server_port`, on `server.interface`
//! when set, `SO_BINDTODEVICE`; PXE 2.1 MTFTP, notes
//! §2.5 item 10: Intel-derived ROMs expect DATA from SPORT, so every
//! stream speaks from it, with no per-stream port). Datagrams to a group
//! go out of the configured interface (`IP_MULTICAST_IF`: `server.listen`,
//! else `server.server_ip`) with `mtftp.ttl` (`IP_MULTICAST_TTL`, default
//! 1: this link only) and are looped back to listeners on this host
//! (`IP_MULTICAST_LOOP`). A request for a file not in `[[mtftp.file]]`
//! gets ERROR 1; a request for a file whose stream runs is not answered
//! (item 5). Every stream logs when it starts (file, group, master), ends,
//! or stops (why).

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::prelude::rust_2024::*;

use super::boot_server::config::MtftpConfig;
use super::clock;
use super::event_loop::{Registrar, Service, transient};
use super::fs::{JailedDir, JailedFile};
use crate::Instant;
use crate::engine::Datagram;
use crate::mtftp::server::{AcceptError, Server, ServerEvent, Slot, StopReason};
use crate::wire::tftp::ErrorCode;

/// Datagrams read per wake-up before the loop gets a turn (bounded work).
const READ_BURST: usize = 256;

/// The MTFTP service, bound.
pub struct MtftpService {
    socket: mio::net::UdpSocket,
    local: SocketAddrV4,
    config: MtftpConfig,
    dir: JailedDir,
    engine: Server<JailedFile, Vec<Slot<JailedFile>>>,
    /// The file each running stream sends (by slot), for the logs.
    names: BTreeMap<usize, String>,
}

impl core::fmt::Debug for MtftpService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MtftpService")
            .field("local", &self.local)
            .field("files", &self.config.files.len())
            .finish_non_exhaustive()
    }
}

impl MtftpService {
    /// Binds SPORT and sets the socket's multicast interface, TTL and
    /// loopback; one stream slot per configured file.
    pub fn bind(config: MtftpConfig) -> io::Result<MtftpService> {
        let dir = JailedDir::new(&config.root)?;
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if let Some(d) = &config.device {
            s.bind_device(Some(d.as_bytes()))?;
        }
        s.bind(&SocketAddr::V4(config.bind).into())?;
        if !config.interface.is_unspecified() {
            s.set_multicast_if_v4(&config.interface)?;
        }
        s.set_multicast_ttl_v4(config.ttl)?;
        s.set_multicast_loop_v4(true)?;
        s.set_nonblocking(true)?;
        let socket: std::net::UdpSocket = s.into();
        let local = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => return Err(io::Error::other("MTFTP socket is not IPv4")),
        };
        let slots = (0..config.files.len().max(1))
            .map(|_| Slot::new())
            .collect();
        Ok(MtftpService {
            socket: mio::net::UdpSocket::from_std(socket),
            local,
            engine: Server::new(config.engine, slots),
            config,
            dir,
            names: BTreeMap::new(),
        })
    }

    /// The request socket's address (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    fn receive(&mut self, now: Instant) -> io::Result<()> {
        let mut buf = [0u8; 1500];
        for _ in 0..READ_BURST {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(e),
            };
            let SocketAddr::V4(remote) = from else {
                continue;
            };
            let dg = Datagram {
                local: self.local,
                remote,
                payload: &buf[..n],
            };
            let Some(incoming) = self.engine.handle(now, dg) else {
                continue;
            };
            let Some(entry) = self.config.file(incoming.path.as_str()) else {
                tracing::info!(peer = %remote, file = incoming.path.as_str(), "mtftp: refused: not an MTFTP file");
                self.engine.refuse(&incoming, ErrorCode::FileNotFound);
                continue;
            };
            let group = entry.group;
            let name = entry.name.clone();
            let file = match self.dir.open_file(&incoming.path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(peer = %remote, file = %name, error = ?e, "mtftp: refused: cannot open");
                    self.engine.refuse(&incoming, e.error_code());
                    continue;
                }
            };
            match self.engine.accept(now, &incoming, file, group, self.local) {
                Ok(h) => {
                    self.names.insert(h.index(), name);
                }
                Err(AcceptError::AlreadyServing(_)) => {}
                Err(AcceptError::Refused(_)) => {}
            }
        }
        Ok(())
    }

    fn flush(&mut self, now: Instant) -> io::Result<()> {
        let mut out = [0u8; Server::<JailedFile, Vec<Slot<JailedFile>>>::MAX_DATAGRAM];
        // Bounded: each stream has at most two datagrams due at a time,
        // plus the queued refusals (the engine's queue is bounded too).
        for _ in 0..(4 * self.config.files.len() + 1024) {
            let Some(t) = self
                .engine
                .poll_transmit(now, &mut out)
                .map_err(io::Error::other)?
            else {
                break;
            };
            match self.socket.send_to(&out[..t.len], SocketAddr::V4(t.remote)) {
                Ok(_) => {}
                // A full buffer is a loss: the stream's timer recovers.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if transient(&e) => {}
                Err(e) => return Err(e),
            }
        }
        while let Some(ev) = self.engine.poll_event() {
            self.log(ev);
        }
        Ok(())
    }

    fn name(&self, index: usize) -> &str {
        self.names.get(&index).map_or("?", String::as_str)
    }

    fn log(&mut self, ev: ServerEvent) {
        match ev {
            ServerEvent::Started {
                stream,
                group,
                master,
                blocks,
            } => tracing::info!(
                file = self.name(stream.index()),
                %group, %master, blocks,
                "mtftp: stream started"
            ),
            ServerEvent::Ignored { peer, stream } => tracing::debug!(
                %peer,
                file = self.name(stream.index()),
                "mtftp: request for a file already streaming: not answered (the requester listens)"
            ),
            ServerEvent::Completed {
                stream,
                group,
                master,
                bytes,
                duration,
            } => tracing::info!(
                file = self.name(stream.index()),
                %group, %master, bytes,
                ms = duration.as_millis() as u64,
                "mtftp: stream completed"
            ),
            ServerEvent::Stopped {
                stream,
                group,
                master,
                acked,
                reason,
            } => {
                let why = match reason {
                    StopReason::MasterSilent => "the master stopped acknowledging".to_string(),
                    StopReason::PeerError(c) => format!("the master sent ERROR {c:?}"),
                    StopReason::File(c) => format!("reading the file failed ({c:?})"),
                };
                tracing::warn!(
                    file = self.name(stream.index()),
                    %group, %master, acked,
                    "mtftp: stream stopped: {why}"
                );
            }
            ServerEvent::Closed { stream, .. } => {
                self.names.remove(&stream.index());
            }
            ServerEvent::Refused { peer, code, reason } => tracing::info!(
                %peer, ?code, ?reason,
                "mtftp: request refused"
            ),
        }
    }
}

impl Service for MtftpService {
    fn start(&mut self, registrar: Registrar) -> io::Result<()> {
        registrar.register(&mut self.socket, 0)?;
        for f in &self.config.files {
            tracing::info!(
                file = %f.name,
                group = %f.group,
                server = %self.local,
                "mtftp: serving by multicast"
            );
        }
        Ok(())
    }

    fn ready(&mut self, _token: usize) -> io::Result<()> {
        let now = clock::now();
        self.receive(now)?;
        self.flush(clock::now())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) -> io::Result<()> {
        self.engine.handle_timeout(now);
        self.flush(now)
    }
}
