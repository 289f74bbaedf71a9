//! The transaction server on a std UDP socket, with a `/dev/urandom`
//! random source: a [`TransactionService`] for an event loop, and
//! [`UdpTransactionServer`], the same service on a poll of its own for a
//! caller that drives it step by step; [`server_key_file`], the server's
//! static key kept in a file (made on first start). The image-safe data on
//! disk is [`super::image_safe_disk`].

use crate::Instant;
use crate::engine::{BufferTooSmall, Datagram};
use crate::transaction::{
    DropReason, Hex, KeyStore, NoRandomness, Policy, Random, Server, ServerEvent, StaticKey,
    parse_key,
};
use std::boxed::Box;
use std::format;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use std::vec::Vec;

use super::event_loop::mio::net::UdpSocket as MioUdpSocket;
use super::event_loop::mio::{Events, Interest, Poll, Token};
use super::event_loop::{self, Registrar, Service};
use super::pending_keys::{PendingKeyList, unix_now};

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

/// The server's static key kept in the file at `path` (64 hex digits, or
/// base64, and a newline: docs/transaction-protocol.md §12): read it, or,
/// when there is no such file, make a key from `random` and write it there
/// first. Returns the key and whether it was made now.
///
/// A new key is written to a temporary file of mode 0600 in the same
/// directory, synced, and only then given its name (a hard link, which
/// fails if another process made the key meanwhile: that key is read
/// instead). A crash never leaves half a key under the name, and a key is
/// never replaced: a file that holds no valid key is an error naming it.
pub fn server_key_file<R: Random + ?Sized>(
    path: &Path,
    random: &mut R,
) -> io::Result<(StaticKey, bool)> {
    if let Some(key) = read_key_file(path)? {
        return Ok((key, false));
    }
    let key = StaticKey::generate(random)
        .map_err(|e| io::Error::other(format!("making a server key: {e}")))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut private = key.to_private_bytes();
        let r = writeln!(f, "{}", Hex(&private));
        zeroize::Zeroize::zeroize(&mut private);
        r?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok((key, true))
        }
        // Another process made it first: use that one.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_key_file(path)? {
            Some(k) => Ok((k, false)),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The key in the file at `path`; `None` when there is no such file.
fn read_key_file(path: &Path) -> io::Result<Option<StaticKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |e: &dyn core::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: {e} (it is not replaced: remove it to make a new key, which every client must then pin)",
                path.display()
            ),
        )
    };
    let bytes = parse_key(&text).map_err(|e| bad(&e))?;
    StaticKey::from_bytes(bytes).map(Some).map_err(|e| bad(&e))
}

/// Counters of a [`TransactionService`], shared with whoever asked for
/// them ([`TransactionService::counters`]); read with
/// [`TransactionCounters::snapshot`].
#[derive(Debug, Default)]
pub struct TransactionCounters {
    established: AtomicU64,
    handshakes_failed: AtomicU64,
    keys_pending: AtomicU64,
    keys_enrolled: AtomicU64,
    tasks_reported: AtomicU64,
    refused: AtomicU64,
    reloads: AtomicU64,
    reloads_refused: AtomicU64,
}

/// What a transaction server did (since it started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransactionStats {
    /// Sessions established (a handshake and a first sealed request).
    pub sessions_established: u64,
    /// Handshakes dropped because they did not decrypt: a client pinning
    /// another server key, or not a client at all.
    pub handshakes_failed: u64,
    /// Handshakes from unknown keys answered `Pending` (§3.4).
    pub keys_pending: u64,
    /// Keys bound by auto-enrolment (§3.4).
    pub keys_enrolled: u64,
    /// Task reports applied.
    pub tasks_reported: u64,
    /// Requests refused with a status.
    pub refused: u64,
    /// Policy store (and key) reloads put in place
    /// ([`crate::driver::boot_server::Reloader`]).
    pub reloads: u64,
    /// Reloads refused: the configuration or the store did not parse (the
    /// old store stayed).
    pub reloads_refused: u64,
}

impl TransactionCounters {
    /// The counters now.
    pub fn snapshot(&self) -> TransactionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransactionStats {
            sessions_established: get(&self.established),
            handshakes_failed: get(&self.handshakes_failed),
            keys_pending: get(&self.keys_pending),
            keys_enrolled: get(&self.keys_enrolled),
            tasks_reported: get(&self.tasks_reported),
            refused: get(&self.refused),
            reloads: get(&self.reloads),
            reloads_refused: get(&self.reloads_refused),
        }
    }

    /// Count a reload: put in place (`accepted`) or refused.
    pub(crate) fn count_reload(&self, accepted: bool) {
        let c = if accepted {
            &self.reloads
        } else {
            &self.reloads_refused
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self, ev: &ServerEvent) {
        let c = match ev {
            ServerEvent::SessionEstablished { .. } => &self.established,
            ServerEvent::Dropped {
                reason: DropReason::HandshakeFailed,
                ..
            } => &self.handshakes_failed,
            ServerEvent::KeyPending { .. } => &self.keys_pending,
            ServerEvent::KeyEnrolled { .. } => &self.keys_enrolled,
            ServerEvent::TaskReported { .. } => &self.tasks_reported,
            ServerEvent::Refused { .. } => &self.refused,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
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
    counters: Arc<TransactionCounters>,
    /// The pending keys' file, kept with the engine's pending keys.
    pending_keys: Option<PendingKeyList>,
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

    /// Serve `engine` on a bound socket (made non-blocking here, with a
    /// receive buffer of 4 MiB where the system allows: room for a boot
    /// storm's handshakes while the loop is busy with TFTP).
    pub fn new(socket: std::net::UdpSocket, engine: Server<P, K, R>) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let socket = {
            let s = socket2::Socket::from(socket);
            let _ = s.set_recv_buffer_size(4 << 20);
            std::net::UdpSocket::from(s)
        };
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
            counters: Arc::default(),
            pending_keys: None,
        })
    }

    /// Keep the keys the engine records as pending (§3.4) in `list`, with
    /// wall-clock times, for an administrator and across restarts; the
    /// keys the engine's key store binds now leave it at once.
    pub fn keep_pending_keys(&mut self, list: PendingKeyList) {
        self.pending_keys = Some(list);
        self.pending_keys_bound();
    }

    /// The pending keys' file, if kept.
    pub fn pending_key_list(&self) -> Option<&PendingKeyList> {
        self.pending_keys.as_ref()
    }

    /// The key store changed (a reload): the keys it binds now leave the
    /// pending keys' file.
    pub fn pending_keys_bound(&mut self) {
        let keys = self.engine.keys();
        if let Some(l) = &mut self.pending_keys {
            l.forget_bound(|k| keys.object_of_key(k).is_some());
            write_pending(l);
        }
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

    /// The service's counters, shared: they go on counting while the
    /// service runs on its loop.
    pub fn counters(&self) -> Arc<TransactionCounters> {
        self.counters.clone()
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

    /// Read the socket until it would block, answering the datagrams in
    /// batches of at most [`BATCH`]: each batch is handled, the policy's
    /// records are made durable once (group commit, [`Policy::commit`]),
    /// then its answers go out. IPv6 senders are ignored (the protocol is
    /// IPv4, §1).
    fn receive(&mut self) -> io::Result<()> {
        loop {
            let mut handled = 0;
            let mut drained = false;
            while handled < BATCH {
                let (n, from) = match self.socket.recv_from(&mut self.rx) {
                    Ok(v) => v,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(e) if event_loop::transient(&e) => continue,
                    Err(e) => {
                        let now = super::clock::now();
                        self.flush(now);
                        return Err(e);
                    }
                };
                let SocketAddr::V4(from) = from else { continue };
                self.engine.handle(
                    super::clock::now(),
                    Datagram {
                        local: self.local,
                        remote: from,
                        payload: &self.rx[..n],
                    },
                );
                handled += 1;
            }
            self.flush(super::clock::now());
            if drained {
                return Ok(());
            }
        }
    }

    /// Run the engine's timers and pass on what they caused.
    fn timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        self.flush(now);
    }

    /// Make the policy's records durable, then send the engine's replies
    /// and take its events. When the records cannot be made durable the
    /// replies are dropped, not sent (the clients retransmit; the policy
    /// refuses while its journal is broken).
    fn flush(&mut self, now: Instant) {
        if self.engine.policy_mut().commit().is_err() {
            let mut dropped = 0;
            while let Ok(Some(_)) = self.engine.poll_transmit(now, &mut self.tx) {
                dropped += 1;
            }
            tracing::error!(
                dropped,
                "transaction: the task journal failed; answers not sent"
            );
        }
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
        let mut keys_changed = false;
        while let Some(ev) = self.engine.poll_event() {
            log_event(&ev);
            if let ServerEvent::InfoAccepted {
                session_id,
                workstation,
            } = &ev
            {
                let info = self.engine.session_info(*session_id);
                super::workstation_facts::log(workstation, info.as_ref());
            }
            self.counters.count(&ev);
            if let Some(l) = &mut self.pending_keys {
                match &ev {
                    ServerEvent::KeyPending { key, peer } => {
                        keys_changed |= l.note(*key, *peer, unix_now());
                    }
                    ServerEvent::KeyEnrolled { key, .. } => {
                        keys_changed |= l.forget_bound(|k| k == key);
                    }
                    _ => {}
                }
            }
            if let Some(k) = &mut self.kept {
                k.push(ev);
            }
        }
        if keys_changed {
            if let Some(l) = &mut self.pending_keys {
                write_pending(l);
            }
        }
    }
}

/// Write the pending keys' file; a failure is logged (the keys stay in
/// memory and the next change writes again).
fn write_pending(l: &mut PendingKeyList) {
    if let Err(e) = l.write_if_changed() {
        tracing::warn!(file = %l.path().display(), error = %e, "transaction: could not write the pending workstation keys");
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

/// Datagrams handled before their answers go out (and the policy's
/// records are committed once for all of them): no more than the engine
/// holds replies for, or the last ones would be dropped.
const BATCH: usize = crate::transaction::QUEUED;

/// One line per event: the steps of a session at info, the routine ones
/// (a session opened or expired, a retransmission) at debug.
fn log_event(ev: &ServerEvent) {
    match ev {
        ServerEvent::SessionOpened { .. }
        | ServerEvent::SessionExpired { .. }
        | ServerEvent::Retransmission { .. }
        // Its facts have a line of their own, at info.
        | ServerEvent::InfoAccepted { .. } => {
            tracing::debug!(event = ?ev, "transaction")
        }
        ServerEvent::KeyPending { key, peer } => tracing::info!(
            public = %Hex(key),
            from = %peer,
            "transaction: a workstation key no one has bound: pending until an administrator binds it ([transaction.keys] workstation = [...], then SIGHUP)"
        ),
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
