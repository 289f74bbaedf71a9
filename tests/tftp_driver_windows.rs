//! The std server's windowed sends (RFC 7440) on loopback, fetched by this
//! crate's client engine over a real UDP socket: with window batching (UDP
//! GSO, one send per window) and without, every block arrives in order and
//! the file is byte-exact, including a short last block and block sizes for
//! which a window needs several batches.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use preboot::driver::tftp::{TftpServer, TftpServerConfig};

mod tftp_support;
use tftp_support::{content, fetch};

fn check(batch_sends: bool) {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB + 123 bytes: a short last block at every block size below.
    let data = content((1 << 20) + 123);
    std::fs::write(dir.path().join("image"), &data).unwrap();
    let mut config = TftpServerConfig::new(
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
        dir.path().into(),
    );
    config.batch_sends = batch_sends;
    let server = TftpServer::bind(config).unwrap().spawn().unwrap();
    let addr = server.local_addr();
    for blksize in [512u16, 1468, 8192, 65464] {
        for windowsize in [1u16, 16, 64] {
            let (got, granted) = fetch(addr, "image", blksize, windowsize);
            assert_eq!(granted, windowsize);
            assert!(
                got == data,
                "batch {batch_sends}, blksize {blksize}, window {windowsize}: {} of {} bytes, content differs",
                got.len(),
                data.len()
            );
        }
    }
    let stats = server.stop().unwrap();
    // The last transfer's final ACK may still be in flight at stop.
    assert!(stats.completed >= 11, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
}

#[test]
fn windows_arrive_byte_exact_with_batched_sends() {
    check(true);
}

#[test]
fn windows_arrive_byte_exact_block_by_block() {
    check(false);
}
