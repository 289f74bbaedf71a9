//! PXE MTFTP on std UDP sockets: the client engine
//! ([`crate::mtftp::client`]) run to the end, and the sockets both sides
//! need (group membership, multicast TTL, interface and loopback).
//!
//! A client uses **two sockets on CPORT** (`SO_REUSEADDR`): one bound to
//! its own unicast address — it receives the server's unicast block 1 and
//! sends the RRQ and ACKs, so the server sees `address:CPORT` (PXE 2.1
//! MTFTP: the open goes from CPORT) — and one bound to the group address
//! and joined to the group (`IP_ADD_MEMBERSHIP` on the interface of the
//! unicast address), which receives only the group's datagrams. Each
//! datagram is fed with the bound address of the socket it came in on,
//! which tells the engine unicast from multicast, with no `IP_PKTINFO`;
//! several clients on one host (a test, a load generator) each get their
//! own unicast address.
//!
//! A listener does not need each block the moment it lands: while a
//! stream flows and the client is not master, [`fetch`] drains its group
//! socket at most every [`LISTENER_BATCH`] (the socket's buffer, enlarged
//! to [`GROUP_RCVBUF`], holds what comes meanwhile) instead of waking for
//! every datagram. A room of listeners on one host — or one listener on a
//! slow CPU — then costs a wake-up per batch, not per block; the master
//! still answers each datagram at once, as its ACKs pace the stream.
//!
//! The server sends its stream from one socket ([`server_socket`]): bound
//! to SPORT on the interface's address, with the multicast interface and
//! TTL set; its datagrams to the group stay on that link.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::driver::clock;
use crate::engine::Datagram;
use crate::fs::WriteAt;
use crate::mtftp::Channel;
use crate::mtftp::client::{Client, ClientConfig, ClientEvent, FallBackReason};

/// How a [`fetch`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Every block is in the sink.
    Completed {
        /// File bytes.
        bytes: u64,
        /// Opens this client made (0: it only listened).
        opens: u16,
        /// It was master of a stream at some point.
        master: bool,
        /// From the start of listening to the last block (a master's
        /// dally after it is not counted).
        duration: Duration,
    },
    /// MTFTP gave up: fetch the file by plain TFTP.
    FallBack(FallBackReason),
}

/// Why [`fetch`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A socket call failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The sink refused a block.
    #[error("sink: {0}")]
    Sink(crate::fs::FsError),
    /// The time limit passed first.
    #[error("MTFTP fetch did not end within {0:?}")]
    TimedOut(Duration),
}

/// How long a listener lets its group socket fill before it drains it
/// (see the module docs): 4 ms is 24 blocks at 6,000 blocks/s.
pub const LISTENER_BATCH: Duration = Duration::from_millis(4);

/// The receive buffer asked for on the group socket (the kernel may cap
/// it at `net.core.rmem_max`): room for several batches of blocks.
pub const GROUP_RCVBUF: usize = 1 << 20;

fn reuse_socket() -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    Ok(s)
}

/// The two client sockets on CPORT (see the module docs): `(unicast,
/// group)`. `local` is the client's own address on the link the group is
/// joined on.
pub fn client_sockets(channel: &Channel, local: Ipv4Addr) -> io::Result<(UdpSocket, UdpSocket)> {
    let port = channel.group.port();
    let unicast = reuse_socket()?;
    unicast.bind(&SocketAddr::V4(SocketAddrV4::new(local, port)).into())?;
    let group = reuse_socket()?;
    // Best effort: a smaller buffer only means a batch may overflow.
    let _ = group.set_recv_buffer_size(GROUP_RCVBUF);
    group.bind(&SocketAddr::V4(channel.group).into())?;
    group.join_multicast_v4(channel.group.ip(), &local)?;
    Ok((unicast.into(), group.into()))
}

/// The server's socket: bound to `sport` (SPORT on the interface's
/// address), sending to groups out of that interface with `ttl` (1: this
/// link only), looping its group datagrams back to local listeners (a
/// client on the same host).
pub fn server_socket(sport: SocketAddrV4, ttl: u32) -> io::Result<UdpSocket> {
    let s = reuse_socket()?;
    s.bind(&SocketAddr::V4(sport).into())?;
    if !sport.ip().is_unspecified() {
        s.set_multicast_if_v4(sport.ip())?;
    }
    s.set_multicast_ttl_v4(ttl)?;
    s.set_multicast_loop_v4(true)?;
    Ok(s.into())
}

/// Fetches `filename` by PXE MTFTP on `channel` from the client address
/// `local`, into `sink`: listens, opens, receives as master or listener,
/// re-opens, until the engine completes or says to fall back to TFTP
/// (returned, not done here). Blocks the calling thread; gives up after
/// `limit`. The group is left when the sockets close.
pub fn fetch<W: WriteAt>(
    channel: Channel,
    local: Ipv4Addr,
    filename: &[u8],
    config: ClientConfig,
    sink: W,
    limit: Duration,
) -> Result<(FetchOutcome, W), FetchError> {
    let sockets = client_sockets(&channel, local)?;
    fetch_on(sockets, channel, local, filename, config, sink, limit)
}

/// [`fetch`] on sockets the caller made with [`client_sockets`] and
/// adjusted (a larger receive buffer, say, for a process that plays many
/// workstations on few cores).
pub fn fetch_on<W: WriteAt>(
    (unicast, group): (UdpSocket, UdpSocket),
    channel: Channel,
    local: Ipv4Addr,
    filename: &[u8],
    config: ClientConfig,
    sink: W,
    limit: Duration,
) -> Result<(FetchOutcome, W), FetchError> {
    let local_addr = SocketAddrV4::new(local, channel.group.port());
    unicast.set_nonblocking(true)?;
    group.set_nonblocking(true)?;
    let mut unicast = mio::net::UdpSocket::from_std(unicast);
    let mut group = mio::net::UdpSocket::from_std(group);
    let mut poll = Poll::new()?;
    const UNICAST: Token = Token(0);
    const GROUP: Token = Token(1);
    poll.registry()
        .register(&mut unicast, UNICAST, Interest::READABLE)?;
    poll.registry()
        .register(&mut group, GROUP, Interest::READABLE)?;
    let mut events = Events::with_capacity(16);
    let start = clock::now();
    let end = start + limit;
    let config = ClientConfig { channel, ..config };
    let mut client = Client::new(start, filename, config, sink);
    let mut buf = [0u8; 2048];
    let mut out = [0u8; crate::mtftp::client::MAX_DATAGRAM];
    let mut master = false;
    let mut done = None;
    loop {
        let now = clock::now();
        while let Some(t) = client
            .poll_transmit(now, &mut out)
            .map_err(io::Error::other)?
        {
            // A lost datagram is the protocol's to recover; a full
            // socket buffer is the same as a loss.
            match unicast.send_to(&out[..t.len], SocketAddr::V4(t.remote)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        while let Some(e) = client.poll_event() {
            match e {
                ClientEvent::Master => master = true,
                ClientEvent::Completed {
                    bytes,
                    opens,
                    duration,
                } => {
                    done = Some(FetchOutcome::Completed {
                        bytes,
                        opens,
                        master,
                        duration,
                    });
                }
                ClientEvent::FallBack { reason } => done = Some(FetchOutcome::FallBack(reason)),
                ClientEvent::Failed { error } => return Err(FetchError::Sink(error)),
                _ => {}
            }
        }
        // A master that completed dallies to re-ACK a repeated last block
        // (RFC 1350 §6) before the engine is finished.
        if let Some(outcome) = done.filter(|_| client.is_finished()) {
            return Ok((outcome, client.into_sink()));
        }
        if now >= end {
            return Err(FetchError::TimedOut(limit));
        }
        let wake = client.poll_timeout().unwrap_or(end).min(end);
        let wait = wake.saturating_duration_since(now);
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        let now = clock::now();
        let mut heard = false;
        for (sock, at) in [(&unicast, local_addr), (&group, channel.group)] {
            // Bounded: at most 256 datagrams per socket per wake-up.
            for _ in 0..256 {
                match sock.recv_from(&mut buf) {
                    Ok((n, SocketAddr::V4(from))) => {
                        heard = true;
                        client.handle(
                            now,
                            Datagram {
                                local: at,
                                remote: from,
                                payload: &buf[..n],
                            },
                        )
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        client.handle_timeout(clock::now());
        if heard && !client.is_master() && !client.is_finished() {
            // A listener in a flowing stream: let a batch gather.
            let until = client.poll_timeout().unwrap_or(end).min(end);
            let nap = LISTENER_BATCH.min(until.saturating_duration_since(clock::now()));
            std::thread::sleep(nap);
        }
    }
}
