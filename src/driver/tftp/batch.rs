//! Batched sends of a window's DATA datagrams with UDP generic segmentation
//! offload (GSO, Linux `UDP_SEGMENT`, kernel 4.18 and later).
//!
//! A window of RFC 7440 DATA blocks goes to one peer in equal-sized
//! datagrams (4-byte header + `blksize`, RFC 1350 §5; only the last block
//! of the file is shorter), which is exactly what GSO takes: the blocks are
//! laid end to end in one buffer and handed to the kernel in one `send`,
//! which cuts them into datagrams of the socket's segment size (a shorter
//! trailing piece becomes a shorter last datagram). One system call and one
//! pass through the UDP/IP stack per window instead of one per block.
//!
//! The segment size is set once per transfer socket with the `UDP_SEGMENT`
//! socket option, so sends no larger than one segment (OACK, ERROR, single
//! blocks) go out unchanged. When the kernel refuses a batch (no GSO, or a
//! segment larger than the path MTU: the kernel segments without IP
//! fragmentation), the driver turns GSO off for that socket and sends one
//! datagram per block, as without batching.

use std::io;
use std::prelude::rust_2024::*;

use mio::net::UdpSocket;

/// Largest UDP payload in one IPv4 datagram (65535 − 20 − 8): the limit on
/// a whole batch, which the kernel builds as one datagram first.
pub(super) const MAX_BATCH: usize = 65_507;
/// Segments per send the kernel accepts (`UDP_MAX_SEGMENTS` on every
/// kernel with `UDP_SEGMENT`).
const MAX_SEGMENTS: usize = 64;

/// GSO in force on a transfer socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gso {
    /// Bytes per datagram (DATA header + blksize).
    pub(super) segment: usize,
    /// Datagrams per send.
    pub(super) max_segments: usize,
}

/// Turns GSO on for `segment`-byte datagrams on `socket`, if at least two
/// fit in one batch and the kernel supports it.
pub(super) fn enable(socket: &UdpSocket, segment: usize) -> Option<Gso> {
    let max_segments = (MAX_BATCH / segment.max(1)).min(MAX_SEGMENTS);
    if max_segments < 2 {
        return None;
    }
    set_segment(socket, segment).ok()?;
    Some(Gso {
        segment,
        max_segments,
    })
}

/// Turns GSO off again (every send is one datagram).
pub(super) fn disable(socket: &UdpSocket) {
    let _ = set_segment(socket, 0);
}

/// True when a failed batched send means "no GSO here" rather than a
/// transient condition: the caller then sends block by block.
pub(super) fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

#[cfg(target_os = "linux")]
fn set_segment(socket: &UdpSocket, segment: usize) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::UdpGsoSegment};
    let size = i32::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    setsockopt(socket, UdpGsoSegment, &size).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn set_segment(_socket: &UdpSocket, _segment: usize) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{eprintln, vec};

    /// `PREBOOT_CI=1`, the one meaning the tests give it (see build.rs).
    fn ci() -> bool {
        std::env::var("PREBOOT_CI").is_ok_and(|v| v == "1")
    }

    #[test]
    fn batch_limits_follow_the_segment_size() {
        let sock = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        // One 65464-byte block per datagram: nothing to batch.
        assert_eq!(enable(&sock, 4 + 65464), None);
        // A kernel without UDP_SEGMENT gives None; CI's kernel has it, so
        // there the limits must be checked, not skipped.
        let required = cfg!(target_os = "linux") && ci();
        match enable(&sock, 4 + 1468) {
            Some(g) => {
                assert_eq!(g.max_segments, 44);
                assert!(g.segment * g.max_segments <= MAX_BATCH);
            }
            None => assert!(!required, "PREBOOT_CI: no UDP_SEGMENT for blksize 1468"),
        }
        match enable(&sock, 4 + 512) {
            Some(g) => assert_eq!(g.max_segments, MAX_SEGMENTS),
            None => assert!(!required, "PREBOOT_CI: no UDP_SEGMENT for blksize 512"),
        }
    }

    /// A window sent as one buffer arrives as separate datagrams of the
    /// segment size, the shorter last block included.
    #[cfg(target_os = "linux")]
    #[test]
    fn one_send_arrives_as_separate_datagrams() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let Some(g) = enable(&tx, 516) else {
            // A kernel without UDP_SEGMENT: the driver falls back. CI's
            // kernel has it, so there this must not be skipped.
            assert!(!ci(), "PREBOOT_CI: no UDP_SEGMENT on this kernel");
            eprintln!("skipped: no UDP_SEGMENT on this kernel");
            return;
        };
        let mut batch = vec![0u8; 3 * 516 + 100];
        for (i, chunk) in batch.chunks_mut(516).enumerate() {
            chunk.fill(i as u8 + 1);
        }
        assert_eq!(tx.send(&batch).unwrap(), batch.len());
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for (i, want) in [516, 516, 516, 100].into_iter().enumerate() {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(n, want);
            assert!(buf[..n].iter().all(|&b| b == i as u8 + 1));
        }
        assert_eq!(g.segment, 516);
        disable(&tx);
        assert_eq!(tx.send(&batch[..1000]).unwrap(), 1000);
        assert_eq!(rx.recv(&mut buf).unwrap(), 1000);
    }
}
