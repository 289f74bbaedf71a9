//! The std server's windowed sends (RFC 7440) on loopback, fetched by this
//! crate's client engine over a real UDP socket: with window batching (UDP
//! GSO, one send per window) and without, every block arrives in order and
//! the file is byte-exact, including a short last block and block sizes for
//! which a window needs several batches.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant as StdInstant};

use preboot::Instant;
use preboot::driver::tftp::{TftpServer, TftpServerConfig};
use preboot::fs::VecSink;
use preboot::tftp::client::{Client, ClientConfig};

fn content(size: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Downloads `name` from `server`; bounded by 30 s.
fn fetch(server: SocketAddr, name: &str, blksize: u16, windowsize: u16) -> (Vec<u8>, u16) {
    let SocketAddr::V4(server) = server else {
        panic!("IPv4 server")
    };
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let config = ClientConfig {
        blksize: Some(blksize),
        windowsize: Some(windowsize),
        tsize: true,
        ..ClientConfig::default()
    };
    let epoch = StdInstant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut client = Client::new(now(), server, name.as_bytes(), config, VecSink::default());
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; 600];
    while !client.is_finished() && epoch.elapsed() < Duration::from_secs(30) {
        while let Some(t) = client.poll_transmit(now(), &mut out) {
            sock.send_to(&out[..t.len], t.destination).unwrap();
        }
        if client.sink().finished {
            break;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => client.handle(now(), from, &buf[..n]),
            Ok(_) => {}
            Err(_) => client.handle_timeout(now()),
        }
    }
    // Send the final ACK.
    while let Some(t) = client.poll_transmit(now(), &mut out) {
        sock.send_to(&out[..t.len], t.destination).unwrap();
    }
    let windowsize = client.negotiated().windowsize;
    let sink = client.into_sink();
    assert!(
        sink.finished,
        "{name} blksize {blksize} window {windowsize}: unfinished"
    );
    (sink.data, windowsize)
}

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
