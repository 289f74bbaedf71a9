//! [`preboot::driver::mtftp::fetch`] for many workstations in one process
//! (issue 16, the boot storm in MTFTP mode): the same loop over the same
//! MTFTP client engine (PXE 2.1 MTFTP) and the same two sockets on CPORT
//! ([`client_sockets`]), with their receive buffers raised to
//! [`RECV_BUFFER`].
//!
//! Why: a real workstation has a CPU of its own for its one stream; here
//! every block sent to the group is queued on each workstation's group
//! socket and each thread must be scheduled to read it. In the boot storm
//! at N = 100 on two cores the threads were starved long enough for the
//! default buffer (`net.core.rmem_default`, 208 KiB: about 160 blocks) to
//! fill: 93,101 datagrams were dropped (Udp RcvbufErrors), listeners
//! missed blocks and re-opened, and every file took a second round (2.19 ×
//! the files on the wire instead of 1.09 ×). The buffer is a property of
//! this load generator, not of the protocol, so the fix is here.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use preboot::driver::clock;
use preboot::driver::mtftp::{FetchError, FetchOutcome, client_sockets};
use preboot::engine::Datagram;
use preboot::fs::WriteAt;
use preboot::mtftp::Channel;
use preboot::mtftp::client::{Client, ClientConfig, ClientEvent, MAX_DATAGRAM};

/// Receive buffer asked for on both sockets (the kernel doubles it for
/// its bookkeeping): thousands of 512-byte blocks, seconds of the stream.
pub const RECV_BUFFER: usize = 4 << 20;

/// The two sockets of [`client_sockets`], receive buffers raised: with
/// SO_RCVBUFFORCE when the process may (CAP_NET_ADMIN: the benchmark runs
/// as root), which passes `net.core.rmem_max` (208 KiB on a stock
/// kernel); else SO_RCVBUF, capped at it.
pub fn sockets(channel: &Channel, local: Ipv4Addr) -> io::Result<(UdpSocket, UdpSocket)> {
    let (unicast, group) = client_sockets(channel, local)?;
    for s in [&unicast, &group] {
        if force_recv_buffer(s, RECV_BUFFER).is_err() {
            socket2::SockRef::from(s).set_recv_buffer_size(RECV_BUFFER)?;
        }
    }
    Ok((unicast, group))
}

fn force_recv_buffer(s: &UdpSocket, size: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(size).map_err(io::Error::other)?;
    // SAFETY: setsockopt on an open socket with a pointer to a local int
    // and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// As [`preboot::driver::mtftp::fetch`], on [`sockets`].
pub fn fetch<W: WriteAt>(
    channel: Channel,
    local: Ipv4Addr,
    filename: &[u8],
    config: ClientConfig,
    sink: W,
    limit: Duration,
) -> Result<(FetchOutcome, W), FetchError> {
    let (unicast, group) = sockets(&channel, local)?;
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
    let mut out = [0u8; MAX_DATAGRAM];
    let mut master = false;
    let mut done = None;
    loop {
        let now = clock::now();
        while let Some(t) = client
            .poll_transmit(now, &mut out)
            .map_err(io::Error::other)?
        {
            // A lost datagram is the protocol's to recover; a full socket
            // buffer is the same as a loss.
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
        for (sock, at) in [(&unicast, local_addr), (&group, channel.group)] {
            // Bounded: at most 256 datagrams per socket per wake-up.
            for _ in 0..256 {
                match sock.recv_from(&mut buf) {
                    Ok((n, SocketAddr::V4(from))) => client.handle(
                        now,
                        Datagram {
                            local: at,
                            remote: from,
                            payload: &buf[..n],
                        },
                    ),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        client.handle_timeout(clock::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boot storm at N = 100 (docs/performance.md, "Boot storm in
    /// MTFTP mode") lost blocks to full receive buffers: a workstation's
    /// socket must queue seconds of the stream (2,000 blocks of 512 bytes,
    /// about a second at the storm's rate) unread, not the ~160 the
    /// default buffer holds. Loopback, a group joined on it.
    #[test]
    fn client_sockets_queue_seconds_of_blocks() {
        let channel = Channel {
            group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 97, 99), 39_717),
            server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 39_718),
            listen: Duration::from_secs(1),
            delay: Duration::from_secs(1),
        };
        let (unicast, _group) = sockets(&channel, Ipv4Addr::LOCALHOST).unwrap();
        unicast.set_nonblocking(true).unwrap();
        let to = unicast.local_addr().unwrap();
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        // A DATA datagram's size: 4 bytes of header, 512 of block.
        let block = [0u8; 516];
        const SENT: usize = 2_000;
        for _ in 0..SENT {
            tx.send_to(&block, to).unwrap();
        }
        let mut buf = [0u8; 600];
        let mut got = 0;
        while got < SENT + 1 {
            match unicast.recv_from(&mut buf) {
                Ok(_) => got += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(got, SENT, "blocks queued unread");
    }
}
