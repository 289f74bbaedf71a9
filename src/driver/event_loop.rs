//! The std event loop: one thread, one `mio` poll, any set of
//! [`Service`]s on their sockets with their deadlines.
//!
//! A boot server runs one loop per core ([`LoopGroup`]). Every loop hosts a
//! TFTP service (its own `SO_REUSEPORT` listener and the transfers it
//! accepted); the first also hosts the DHCP service (ports 67 and 4011),
//! whose engine it alone owns. No engine is shared between threads and no
//! thread serves one protocol: a loop sleeps in `epoll_wait` until a socket
//! of one of its services is readable or the earliest of their deadlines
//! ([`Service::poll_timeout`]) is due.
//!
//! A service wraps an engine of the [engine contract](crate::engine): it
//! registers its sockets through the [`Registrar`] it is given (with tokens
//! of its own choosing), reads them when [`Service::ready`] names one, and
//! runs the engine's timers in [`Service::handle_timeout`]. Another thread
//! hands a service something (a reloaded policy store) by waking its loop
//! with the [`Registrar::waker`]; the loop then calls [`Service::woken`].
//!
//! ```
//! use std::net::UdpSocket;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use preboot::Instant;
//! use preboot::driver::event_loop::{EventLoop, LoopGroup, Registrar, Service};
//!
//! /// Echoes every datagram back to its sender.
//! struct Echo {
//!     socket: mio::net::UdpSocket,
//!     stop: Arc<AtomicBool>,
//! }
//!
//! impl Service for Echo {
//!     fn start(&mut self, registrar: Registrar) -> std::io::Result<()> {
//!         registrar.register(&mut self.socket, 0)
//!     }
//!     fn ready(&mut self, _token: usize) -> std::io::Result<()> {
//!         let mut buf = [0u8; 1500];
//!         while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
//!             self.socket.send_to(&buf[..n], from)?;
//!             self.stop.store(true, Ordering::Relaxed);
//!         }
//!         Ok(())
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> {
//!         None
//!     }
//!     fn handle_timeout(&mut self, _now: Instant) -> std::io::Result<()> {
//!         Ok(())
//!     }
//! }
//!
//! let socket = UdpSocket::bind("127.0.0.1:0")?;
//! socket.set_nonblocking(true)?;
//! let addr = socket.local_addr()?;
//! let stop = Arc::new(AtomicBool::new(false));
//! let mut event_loop = EventLoop::new("echo")?;
//! event_loop.add(Box::new(Echo { socket: mio::net::UdpSocket::from_std(socket), stop: stop.clone() }))?;
//! let running = LoopGroup::new(vec![event_loop]).spawn()?;
//!
//! let client = UdpSocket::bind("127.0.0.1:0")?;
//! client.send_to(b"ping", addr)?;
//! let mut buf = [0u8; 16];
//! let (n, _) = client.recv_from(&mut buf)?;
//! assert_eq!(&buf[..n], b"ping");
//! running.stop()?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::prelude::rust_2024::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use mio;
use mio::event::Source;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::clock;
use crate::Instant;

/// How often a loop looks at its stop flag when nothing else wakes it.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

/// Services per loop (the top bits of a `mio` token).
const SERVICE_BITS: u32 = 8;
const TOKEN_BITS: u32 = usize::BITS - SERVICE_BITS;
const WAKER: Token = Token(usize::MAX);

/// Largest token a service may use.
pub const MAX_TOKEN: usize = (1 << TOKEN_BITS) - 2;

/// A receive error that ends nothing: a signal, or an ICMP error that an
/// earlier send caused (port or host unreachable, reported on the next
/// receive). A service reads on after it.
pub fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// One engine (or a few that share sockets) with its sockets, hosted by an
/// [`EventLoop`]. Called only from the loop's thread.
pub trait Service: Send {
    /// Registers the service's sockets; `registrar` may be kept to
    /// register and deregister more later (a TFTP transfer's socket).
    fn start(&mut self, registrar: Registrar) -> io::Result<()>;
    /// The socket registered with `token` is readable: read it until it
    /// would block (the loop is edge-triggered), answer what came.
    fn ready(&mut self, token: usize) -> io::Result<()>;
    /// When [`Service::handle_timeout`] is next due.
    fn poll_timeout(&self) -> Option<Instant>;
    /// A deadline passed (a spurious call is harmless).
    fn handle_timeout(&mut self, now: Instant) -> io::Result<()>;
    /// Another thread woke the loop ([`Registrar::waker`]): look at what
    /// it handed over (e.g. a reloaded policy store). Called on every
    /// service of the loop, between datagrams; a spurious call is
    /// harmless. Does nothing unless the service overrides it.
    fn woken(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Registers a service's sockets with its loop under the service's own
/// tokens.
#[derive(Debug)]
pub struct Registrar {
    registry: Registry,
    service: usize,
    waker: Arc<Waker>,
}

impl Registrar {
    fn token(&self, token: usize) -> io::Result<Token> {
        if token > MAX_TOKEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "event loop token out of range",
            ));
        }
        Ok(Token((self.service << TOKEN_BITS) | token))
    }

    /// Watch `source` for reads; [`Service::ready`] gets `token`.
    pub fn register<S: Source + ?Sized>(&self, source: &mut S, token: usize) -> io::Result<()> {
        self.registry
            .register(source, self.token(token)?, Interest::READABLE)
    }

    /// Stop watching `source` (before it is closed).
    pub fn deregister<S: Source + ?Sized>(&self, source: &mut S) -> io::Result<()> {
        self.registry.deregister(source)
    }

    /// Another registrar for the same service.
    pub fn try_clone(&self) -> io::Result<Registrar> {
        Ok(Registrar {
            registry: self.registry.try_clone()?,
            service: self.service,
            waker: self.waker.clone(),
        })
    }

    /// The loop's waker: another thread that hands the service something
    /// wakes the loop with it, and the loop then calls
    /// [`Service::woken`] on its services.
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }
}

/// One thread's loop: a `mio` poll and the services on it.
pub struct EventLoop {
    name: String,
    poll: Poll,
    waker: Arc<Waker>,
    services: Vec<Box<dyn Service>>,
}

impl core::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventLoop")
            .field("name", &self.name)
            .field("services", &self.services.len())
            .finish()
    }
}

impl EventLoop {
    /// An empty loop; `name` names its thread.
    pub fn new(name: &str) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(EventLoop {
            name: name.to_owned(),
            poll,
            waker,
            services: Vec::new(),
        })
    }

    /// The loop's name (its thread's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hosts `service`: it registers its sockets now.
    pub fn add(&mut self, mut service: Box<dyn Service>) -> io::Result<()> {
        let index = self.services.len();
        if index >= (1 << SERVICE_BITS) - 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many services on one event loop",
            ));
        }
        service.start(Registrar {
            registry: self.poll.registry().try_clone()?,
            service: index,
            waker: self.waker.clone(),
        })?;
        self.services.push(service);
        Ok(())
    }

    /// Wakes the loop from another thread (it then looks at its stop flag
    /// and calls [`Service::woken`] on its services).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Runs until `stop` or `failed` is set (looked at least every
    /// [`MAX_WAIT`]), or a service fails.
    fn run(&mut self, stop: &AtomicBool, failed: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !stop.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed) {
            let now = clock::now();
            let wait = self
                .services
                .iter()
                .filter_map(|s| s.poll_timeout())
                .min()
                .map_or(MAX_WAIT, |t| t.saturating_duration_since(now))
                .min(MAX_WAIT);
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut woken = false;
            for ev in events.iter() {
                if ev.token() == WAKER {
                    woken = true;
                    continue;
                }
                let Token(t) = ev.token();
                if let Some(s) = self.services.get_mut(t >> TOKEN_BITS) {
                    s.ready(t & ((1 << TOKEN_BITS) - 1))?;
                }
            }
            if woken && !stop.load(Ordering::Relaxed) {
                for s in &mut self.services {
                    s.woken()?;
                }
            }
            let now = clock::now();
            for s in &mut self.services {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now)?;
                }
            }
        }
        Ok(())
    }
}

/// Loops that run together (one per core) and stop together: when one
/// fails the others stop too.
#[derive(Debug)]
pub struct LoopGroup {
    loops: Vec<EventLoop>,
    failed: Arc<AtomicBool>,
}

impl LoopGroup {
    /// A group of `loops`.
    pub fn new(loops: Vec<EventLoop>) -> LoopGroup {
        LoopGroup {
            loops,
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The loops, to add services to before running.
    pub fn loops_mut(&mut self) -> &mut [EventLoop] {
        &mut self.loops
    }

    /// Number of loops.
    pub fn len(&self) -> usize {
        self.loops.len()
    }

    /// True with no loop at all.
    pub fn is_empty(&self) -> bool {
        self.loops.is_empty()
    }

    fn wake_all(failed: &AtomicBool, wakers: &[Arc<Waker>]) {
        failed.store(true, Ordering::Relaxed);
        for w in wakers {
            let _ = w.wake();
        }
    }

    /// Runs every loop until `stop` is set: the first on the calling
    /// thread, the others on threads of their own, all joined before it
    /// returns. The first error of any loop is returned (and stops all).
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let wakers: Vec<_> = self.loops.iter().map(EventLoop::waker).collect();
        let failed = &*self.failed;
        let Some((first, rest)) = self.loops.split_first_mut() else {
            return Ok(());
        };
        std::thread::scope(|scope| {
            let mut threads = Vec::with_capacity(rest.len());
            for l in rest.iter_mut() {
                let wakers = &wakers;
                let t = std::thread::Builder::new()
                    .name(l.name.clone())
                    .spawn_scoped(scope, move || {
                        let r = l.run(stop, failed);
                        if r.is_err() {
                            Self::wake_all(failed, wakers);
                        }
                        r
                    });
                match t {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        Self::wake_all(failed, wakers);
                        return Err(e);
                    }
                }
            }
            let mut result = first.run(stop, failed);
            if result.is_err() {
                Self::wake_all(failed, &wakers);
            }
            for t in threads {
                let r = t
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("event loop thread panicked")));
                result = result.and(r);
            }
            result
        })
    }

    /// Runs each loop on a thread of its own; stop them with the handle.
    pub fn spawn(self) -> io::Result<RunningLoops> {
        let wakers: Vec<_> = self.loops.iter().map(EventLoop::waker).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut running = RunningLoops {
            stop,
            failed: self.failed.clone(),
            wakers: wakers.clone(),
            threads: Vec::with_capacity(self.loops.len()),
        };
        for mut l in self.loops {
            let (stop, failed, wakers) =
                (running.stop.clone(), self.failed.clone(), wakers.clone());
            let t = std::thread::Builder::new()
                .name(l.name.clone())
                .spawn(move || {
                    let r = l.run(&stop, &failed);
                    if r.is_err() {
                        Self::wake_all(&failed, &wakers);
                    }
                    r
                });
            match t {
                Ok(t) => running.threads.push(t),
                Err(e) => {
                    let _ = running.stop();
                    return Err(e);
                }
            }
        }
        Ok(running)
    }
}

/// Loops running on their threads ([`LoopGroup::spawn`]).
#[derive(Debug)]
pub struct RunningLoops {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl RunningLoops {
    /// Asks every loop to stop, without waiting.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    /// True once a loop failed (all stop then).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// True while any loop thread still runs.
    pub fn is_running(&self) -> bool {
        self.threads.iter().any(|t| !t.is_finished())
    }

    /// Stops every loop and waits for them; the first error of any.
    pub fn stop(mut self) -> io::Result<()> {
        self.join_all()
    }

    fn join_all(&mut self) -> io::Result<()> {
        self.signal_stop();
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("event loop thread panicked")));
            result = result.and(r);
        }
        result
    }
}

impl Drop for RunningLoops {
    fn drop(&mut self) {
        let _ = self.join_all();
    }
}
