//! [`preboot::driver::mtftp::fetch`] for many workstations in one process
//! (issue 16, the boot storm in MTFTP mode): the library's loop
//! ([`fetch_on`]) on the same two sockets on CPORT ([`client_sockets`]),
//! with their receive buffers raised to [`RECV_BUFFER`].
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
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use preboot::driver::mtftp::{FetchError, FetchOutcome, client_sockets, fetch_on};
use preboot::fs::WriteAt;
use preboot::mtftp::Channel;
use preboot::mtftp::client::ClientConfig;

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
    let sockets = sockets(&channel, local)?;
    fetch_on(sockets, channel, local, filename, config, sink, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

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
