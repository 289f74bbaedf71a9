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
//!
//! # A new table while streams run (a reload, `SIGHUP`)
//!
//! [`MtftpService::replace`] puts a new `[mtftp]` in place between two
//! datagrams. The table in force and the engine that serves it are one
//! *generation*; a new table starts a new generation for new requests,
//! and the one before it *drains*: its running streams go on to their
//! end on the channel (group, client port, server port) they started on,
//! whatever the new table says of their file — a transfer is never cut
//! mid-way — and it is dropped when its last stream ended. A datagram on
//! a socket goes to the draining generation whose stream has that sender
//! as master (its ACKs, its ERROR, its repeated request), anything else
//! to the generation in force; a request for a file whose group still
//! carries a draining stream is not answered either (item 5: the
//! requester listens to it). A new server port (SPORT) comes with a new
//! socket, bound by the caller ([`MtftpService::open_socket`]); the old
//! one stays open until the streams that speak from it ended, and takes
//! no new requests. At most [`MAX_DRAINING`] generations drain at once.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
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

/// Generations whose streams still run after newer tables were put in
/// place (a reload beyond that is refused until one ends).
pub const MAX_DRAINING: usize = 4;

type Engine = Server<JailedFile, Vec<Slot<JailedFile>>>;

/// A bound request socket (SPORT), and the token it is registered with.
struct Bound {
    local: SocketAddrV4,
    socket: mio::net::UdpSocket,
    token: usize,
    registered: bool,
}

/// A running stream of a generation, for the logs and the routing.
struct StreamInfo {
    name: String,
    master: SocketAddrV4,
    /// Not yet completed or stopped: its master's datagrams go to it.
    running: bool,
}

/// One `[mtftp]` table and the engine serving it.
struct Generation {
    /// The socket its streams speak from (SPORT).
    local: SocketAddrV4,
    config: MtftpConfig,
    engine: Engine,
    /// The file and master of each stream (by slot).
    streams: BTreeMap<usize, StreamInfo>,
}

impl Generation {
    fn new(local: SocketAddrV4, config: MtftpConfig) -> Generation {
        let slots = (0..config.files.len().max(1))
            .map(|_| Slot::new())
            .collect();
        Generation {
            local,
            engine: Server::new(config.engine, slots),
            config,
            streams: BTreeMap::new(),
        }
    }

    /// A stream of this generation runs with `peer` as its master.
    fn is_master(&self, peer: SocketAddrV4) -> bool {
        self.streams.values().any(|s| s.running && s.master == peer)
    }
}

/// The MTFTP service, bound.
pub struct MtftpService {
    dir: JailedDir,
    sockets: Vec<Bound>,
    /// The table in force; `None`: MTFTP disabled (`mtftp.enabled =
    /// false`, or no `[mtftp]`), nothing takes requests.
    current: Option<Generation>,
    /// Older tables whose streams still run.
    draining: Vec<Generation>,
    next_token: usize,
    /// Kept from [`Service::start`] to register sockets of later tables.
    registrar: Option<Registrar>,
}

impl core::fmt::Debug for MtftpService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MtftpService")
            .field("local", &self.current.as_ref().map(|g| g.local))
            .field(
                "files",
                &self.current.as_ref().map_or(0, |g| g.config.files.len()),
            )
            .field("draining", &self.draining.len())
            .finish_non_exhaustive()
    }
}

impl MtftpService {
    /// Binds SPORT and sets the socket's multicast interface, TTL and
    /// loopback; one stream slot per configured file.
    pub fn bind(config: MtftpConfig) -> io::Result<MtftpService> {
        let socket = Self::open_socket(&config)?;
        let mut s = Self::idle(&config.root)?;
        s.replace(Some(config), Some(socket))?;
        Ok(s)
    }

    /// A service serving no file under `root` yet (MTFTP disabled): a
    /// later [`replace`](Self::replace) may enable it.
    pub fn idle(root: &Path) -> io::Result<MtftpService> {
        Ok(MtftpService {
            dir: JailedDir::new(root)?,
            sockets: Vec::new(),
            current: None,
            draining: Vec::new(),
            next_token: 0,
            registrar: None,
        })
    }

    /// The request socket of `config`: bound to SPORT (on its device),
    /// multicast interface, TTL and loopback set, non-blocking.
    pub fn open_socket(config: &MtftpConfig) -> io::Result<std::net::UdpSocket> {
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
        Ok(s.into())
    }

    /// The request socket's address (the real port when the config said
    /// 0); `0.0.0.0:0` while MTFTP is disabled.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.current
            .as_ref()
            .map_or(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0), |g| {
                g.local
            })
    }

    /// Streams still running on tables that were replaced.
    pub fn draining(&self) -> usize {
        self.draining.iter().map(|g| g.engine.active()).sum()
    }

    /// Puts a new table in place for new requests (`None`: serve no more;
    /// see the [module docs](self)): `socket` is the new SPORT socket
    /// ([`open_socket`](Self::open_socket)) when the server port changed,
    /// else `None` and the socket in force stays (its TTL set to the new
    /// `mtftp.ttl`). The streams running go on to their end. Refused,
    /// with nothing changed, when [`MAX_DRAINING`] tables still drain or
    /// a new table comes without a socket to serve it on.
    pub fn replace(
        &mut self,
        config: Option<MtftpConfig>,
        socket: Option<std::net::UdpSocket>,
    ) -> io::Result<()> {
        let busy = self.current.as_ref().is_some_and(|g| g.engine.active() > 0);
        if busy && self.draining.len() >= MAX_DRAINING {
            return Err(io::Error::other(format!(
                "{MAX_DRAINING} earlier MTFTP tables still have streams running: try again when one ended"
            )));
        }
        let local = match (&socket, &self.current) {
            (Some(s), _) => match s.local_addr()? {
                SocketAddr::V4(a) => Some(a),
                SocketAddr::V6(_) => return Err(io::Error::other("MTFTP socket is not IPv4")),
            },
            (None, Some(g)) => Some(g.local),
            (None, None) => None,
        };
        if config.is_some() && local.is_none() {
            return Err(io::Error::other("a new MTFTP table needs its socket"));
        }
        if let (Some(socket), Some(local)) = (socket, local) {
            let mut b = Bound {
                local,
                socket: mio::net::UdpSocket::from_std(socket),
                token: self.next_token,
                registered: false,
            };
            if let Some(r) = &self.registrar {
                r.register(&mut b.socket, b.token)?;
                b.registered = true;
            }
            self.next_token += 1;
            self.sockets.push(b);
        }
        if let (Some(c), Some(local)) = (&config, local) {
            if let Some(b) = self.sockets.iter().find(|b| b.local == local) {
                b.socket.set_multicast_ttl_v4(c.ttl)?;
            }
        }
        let next = config.zip(local).map(|(c, l)| Generation::new(l, c));
        if let Some(old) = std::mem::replace(&mut self.current, next) {
            if old.engine.active() > 0 {
                tracing::info!(
                    streams = old.engine.active(),
                    "mtftp: new table in place; running streams finish on their channels"
                );
                self.draining.push(old);
            }
        }
        self.log_table();
        self.close_unused();
        Ok(())
    }

    fn log_table(&self) {
        let Some(g) = &self.current else {
            tracing::info!("mtftp: disabled: no file is served by multicast");
            return;
        };
        for f in &g.config.files {
            tracing::info!(
                file = %f.name,
                group = %f.group,
                server = %g.local,
                "mtftp: serving by multicast"
            );
        }
    }

    /// Drop the generations whose streams all ended and the sockets no
    /// generation speaks from.
    fn close_unused(&mut self) {
        self.draining.retain(|g| g.engine.active() > 0);
        let in_use = |l: SocketAddrV4| {
            self.current
                .iter()
                .chain(&self.draining)
                .any(|g| g.local == l)
        };
        let (keep, drop): (Vec<Bound>, Vec<Bound>) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|b| in_use(b.local));
        self.sockets = keep;
        for mut b in drop {
            if let (true, Some(r)) = (b.registered, &self.registrar) {
                let _ = r.deregister(&mut b.socket);
            }
            tracing::info!(server = %b.local, "mtftp: request socket closed");
        }
    }

    fn receive(&mut self, now: Instant, token: usize) -> io::Result<()> {
        let mut buf = [0u8; 1500];
        let Some(at) = self.sockets.iter().position(|b| b.token == token) else {
            return Ok(());
        };
        let local = self.sockets[at].local;
        for _ in 0..READ_BURST {
            let (n, from) = match self.sockets[at].socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(e),
            };
            let SocketAddr::V4(remote) = from else {
                continue;
            };
            let dg = Datagram {
                local,
                remote,
                payload: &buf[..n],
            };
            // A master of a stream of an earlier table: its stream takes
            // it (an ACK, an ERROR, its request again).
            if let Some(g) = self
                .draining
                .iter_mut()
                .find(|g| g.local == local && g.is_master(remote))
            {
                if g.engine.handle(now, dg).is_none() {
                    continue;
                }
                // A request for another file: the table in force answers.
            }
            let Some(g) = self.current.as_mut().filter(|g| g.local == local) else {
                tracing::debug!(peer = %remote, server = %local, "mtftp: datagram to a server port no longer in the table: not answered");
                continue;
            };
            let Some(incoming) = g.engine.handle(now, dg) else {
                continue;
            };
            let Some(entry) = g.config.file(incoming.path.as_str()) else {
                tracing::info!(peer = %remote, file = incoming.path.as_str(), "mtftp: refused: not an MTFTP file");
                g.engine.refuse(&incoming, ErrorCode::FileNotFound);
                continue;
            };
            let group = entry.group;
            let name = entry.name.clone();
            // Item 5 across tables: the group still carries a stream of an
            // earlier table; the requester listens to it.
            if self
                .draining
                .iter()
                .any(|d| d.local == local && d.engine.serving(group).is_some())
            {
                tracing::debug!(peer = %remote, file = %name, %group, "mtftp: request for a file already streaming: not answered (the requester listens)");
                continue;
            }
            let file = match self.dir.open_file(&incoming.path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(peer = %remote, file = %name, error = ?e, "mtftp: refused: cannot open");
                    g.engine.refuse(&incoming, e.error_code());
                    continue;
                }
            };
            match g.engine.accept(now, &incoming, file, group, local) {
                Ok(h) => {
                    g.streams.insert(
                        h.index(),
                        StreamInfo {
                            name,
                            master: remote,
                            running: true,
                        },
                    );
                }
                Err(AcceptError::AlreadyServing(_)) => {}
                Err(AcceptError::Refused(_)) => {}
            }
        }
        Ok(())
    }

    fn flush(&mut self, now: Instant) -> io::Result<()> {
        let sockets = &self.sockets;
        for g in self.current.iter_mut().chain(self.draining.iter_mut()) {
            flush_generation(g, sockets, now)?;
        }
        if !self.draining.is_empty() {
            self.close_unused();
        }
        Ok(())
    }
}

/// Send what `g`'s engine has to send and log its events.
fn flush_generation(g: &mut Generation, sockets: &[Bound], now: Instant) -> io::Result<()> {
    let mut out = [0u8; Engine::MAX_DATAGRAM];
    // Bounded: each stream has at most two datagrams due at a time,
    // plus the queued refusals (the engine's queue is bounded too).
    for _ in 0..(4 * g.config.files.len() + 1024) {
        let Some(t) = g
            .engine
            .poll_transmit(now, &mut out)
            .map_err(io::Error::other)?
        else {
            break;
        };
        let from = t.local.unwrap_or(g.local);
        let Some(b) = sockets.iter().find(|b| b.local == from) else {
            continue;
        };
        match b.socket.send_to(&out[..t.len], SocketAddr::V4(t.remote)) {
            Ok(_) => {}
            // A full buffer is a loss: the stream's timer recovers.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
    while let Some(ev) = g.engine.poll_event() {
        log(&mut g.streams, ev);
    }
    Ok(())
}

fn log(streams: &mut BTreeMap<usize, StreamInfo>, ev: ServerEvent) {
    let name = |streams: &BTreeMap<usize, StreamInfo>, i: usize| {
        streams.get(&i).map_or("?", |s| s.name.as_str()).to_string()
    };
    let ended = |streams: &mut BTreeMap<usize, StreamInfo>, i: usize| {
        if let Some(s) = streams.get_mut(&i) {
            s.running = false;
        }
    };
    match ev {
        ServerEvent::Started {
            stream,
            group,
            master,
            blocks,
        } => tracing::info!(
            file = name(streams, stream.index()),
            %group, %master, blocks,
            "mtftp: stream started"
        ),
        ServerEvent::Ignored { peer, stream } => tracing::debug!(
            %peer,
            file = name(streams, stream.index()),
            "mtftp: request for a file already streaming: not answered (the requester listens)"
        ),
        ServerEvent::Completed {
            stream,
            group,
            master,
            bytes,
            duration,
        } => {
            ended(streams, stream.index());
            tracing::info!(
                file = name(streams, stream.index()),
                %group, %master, bytes,
                ms = duration.as_millis() as u64,
                "mtftp: stream completed"
            )
        }
        ServerEvent::Stopped {
            stream,
            group,
            master,
            acked,
            reason,
        } => {
            ended(streams, stream.index());
            let why = match reason {
                StopReason::MasterSilent => "the master stopped acknowledging".to_string(),
                StopReason::PeerError(c) => format!("the master sent ERROR {c:?}"),
                StopReason::File(c) => format!("reading the file failed ({c:?})"),
            };
            tracing::warn!(
                file = name(streams, stream.index()),
                %group, %master, acked,
                "mtftp: stream stopped: {why}"
            );
        }
        ServerEvent::Closed { stream, .. } => {
            streams.remove(&stream.index());
        }
        ServerEvent::Refused { peer, code, reason } => tracing::info!(
            %peer, ?code, ?reason,
            "mtftp: request refused"
        ),
    }
}

impl Service for MtftpService {
    fn start(&mut self, registrar: Registrar) -> io::Result<()> {
        for b in &mut self.sockets {
            if !b.registered {
                registrar.register(&mut b.socket, b.token)?;
                b.registered = true;
            }
        }
        self.registrar = Some(registrar);
        Ok(())
    }

    fn ready(&mut self, token: usize) -> io::Result<()> {
        let now = clock::now();
        self.receive(now, token)?;
        self.flush(clock::now())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.current
            .iter()
            .chain(&self.draining)
            .filter_map(|g| g.engine.poll_timeout())
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) -> io::Result<()> {
        for g in self.current.iter_mut().chain(self.draining.iter_mut()) {
            g.engine.handle_timeout(now);
        }
        self.flush(now)
    }
}
