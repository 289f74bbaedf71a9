//! Steps 1–3 of the boot (DESIGN.md): the PXE DHCP exchange on the crate's
//! client engine ([`preboot::dhcp::Client`]), for one workstation or many.
//!
//! Every workstation of the process shares one socket on the DHCP client
//! port (68; the demo's 6868): servers answer to that port, broadcast or
//! unicast, whichever workstation asked. A receiver thread hands each
//! answer to the workstation whose transaction id (`xid`) it carries;
//! answers for nobody are dropped.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use preboot::dhcp::client::{BootInfo, ClientConfig, Event, Granted};
use preboot::driver::clock;
use preboot::engine::Datagram;

/// Where the DHCP conversation goes.
#[derive(Clone, Debug)]
pub struct DhcpTarget {
    /// Where a broadcast goes: `255.255.255.255` on a real network, the
    /// boot server's address on loopback (which cannot broadcast).
    pub broadcast: Ipv4Addr,
    /// The servers' DHCP port (67).
    pub server_port: u16,
    /// The boot server port (4011).
    pub boot_port: u16,
    /// The interface already has an address (each workstation's own,
    /// given to [`DhcpHub::boot_info`]): only boot information is asked
    /// ([`preboot::dhcp::Client::with_address`]).
    pub address_known: bool,
}

/// The shared DHCP client socket and its receiver thread.
pub struct DhcpHub {
    socket: Arc<UdpSocket>,
    waiting: Arc<Waiting>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local: SocketAddrV4,
}

impl DhcpHub {
    /// Take over `socket` (bound to the client port; broadcast allowed).
    pub fn start(socket: UdpSocket) -> io::Result<DhcpHub> {
        let local = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => return Err(io::Error::other("DHCP socket is not IPv4")),
        };
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let socket = Arc::new(socket);
        let waiting: Arc<Waiting> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, waiting, stop) = (socket.clone(), waiting.clone(), stop.clone());
            std::thread::Builder::new()
                .name("dhcp-rx".into())
                .spawn(move || receive(&socket, &waiting, &stop))?
        };
        Ok(DhcpHub {
            socket,
            waiting,
            stop,
            thread: Some(thread),
            local,
        })
    }

    /// Run one workstation's PXE DHCP exchange to its end: what it
    /// learned, or why it gave up. `on_address` runs once the address is
    /// granted, before the boot server on 4011 is asked (to configure it
    /// on the interface: the boot server answers to it by unicast).
    pub fn boot_info(
        &self,
        config: ClientConfig,
        xid: u32,
        target: &DhcpTarget,
        address: Ipv4Addr,
        on_address: &mut dyn FnMut(Granted) -> Result<(), String>,
    ) -> Result<BootInfo, String> {
        let (tx, rx) = mpsc::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(xid, tx);
        }
        let known = target.address_known.then_some(address);
        let r = self.exchange(config, xid, target, known, &rx, on_address);
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&xid);
        }
        r
    }

    fn exchange(
        &self,
        config: ClientConfig,
        xid: u32,
        target: &DhcpTarget,
        known: Option<Ipv4Addr>,
        rx: &Receiver<(SocketAddrV4, Vec<u8>)>,
        on_address: &mut dyn FnMut(Granted) -> Result<(), String>,
    ) -> Result<BootInfo, String> {
        let mut configured = known.is_some();
        let now = clock::now();
        let mut client = match known {
            Some(a) => preboot::dhcp::Client::with_address(now, config, xid, a),
            None => preboot::dhcp::Client::new(now, config, xid),
        };
        let mut buf = [0u8; preboot::dhcp::Client::MAX_DATAGRAM];
        let mut arrived: Vec<(SocketAddrV4, Vec<u8>)> = Vec::new();
        loop {
            // Every answer that came, including those that came while this
            // thread was not running, counts before any timer fires.
            arrived.extend(rx.try_iter());
            for (from, payload) in arrived.drain(..) {
                client.handle(
                    clock::now(),
                    Datagram {
                        local: self.local,
                        remote: from,
                        payload: &payload,
                    },
                );
                if let (false, Some(g)) = (configured, client.granted()) {
                    configured = true;
                    on_address(g)?;
                }
            }
            let now = clock::now();
            client.handle_timeout(now);
            while let Some(t) = client
                .poll_transmit(now, &mut buf)
                .map_err(|e| format!("DHCP: {e}"))?
            {
                let mut to = t.remote;
                match to.port() {
                    67 => to.set_port(target.server_port),
                    4011 => to.set_port(target.boot_port),
                    _ => {}
                }
                if t.broadcast {
                    to.set_ip(target.broadcast);
                }
                tracing::debug!(xid, %to, len = t.len, "dhcp: send");
                self.socket
                    .send_to(&buf[..t.len], to)
                    .map_err(|e| format!("DHCP: send to {to}: {e}"))?;
            }
            match client.poll_event() {
                Some(Event::Bound(info)) => return Ok(info),
                Some(Event::Failed(why)) => return Err(format!("DHCP gave up: {why:?}")),
                None => {}
            }
            let wait = client
                .poll_timeout()
                .map(|d| d.saturating_duration_since(clock::now()))
                .unwrap_or(Duration::from_millis(10))
                .max(Duration::from_millis(1));
            match rx.recv_timeout(wait) {
                Ok(d) => arrived.push(d),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("DHCP: the receiver stopped".into());
                }
            }
        }
    }
}

impl Drop for DhcpHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Who waits for which transaction id.
type Waiting = Mutex<HashMap<u32, Sender<(SocketAddrV4, Vec<u8>)>>>;

fn receive(socket: &UdpSocket, waiting: &Waiting, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => (n, from),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "dhcp: receive failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // BOOTP: op 2 (reply), xid at bytes 4..8.
        if n < 8 || buf[0] != 2 {
            continue;
        }
        let xid = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let to = waiting.lock().ok().and_then(|w| w.get(&xid).cloned());
        if let Some(to) = to {
            let _ = to.send((from, buf[..n].to_vec()));
        }
    }
}
