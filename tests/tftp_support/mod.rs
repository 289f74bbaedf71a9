//! Helpers shared by the TFTP tests that fetch from the std server over a
//! real loopback socket with this crate's client engine.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant as StdInstant};

use preboot::Instant;
use preboot::engine::Datagram;
use preboot::fs::VecSink;
use preboot::tftp::client::{Client, ClientConfig};

/// `size` bytes of a fixed pseudo-random pattern.
#[allow(dead_code)] // not every test that includes this module uses it
pub fn content(size: usize) -> Vec<u8> {
    content_seeded(size, 0x9e37_79b9_7f4a_7c15)
}

/// `size` bytes of the xorshift pattern that starts from `seed`.
pub fn content_seeded(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
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
pub fn fetch(server: SocketAddr, name: &str, blksize: u16, windowsize: u16) -> (Vec<u8>, u16) {
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
    let SocketAddr::V4(local) = sock.local_addr().unwrap() else {
        panic!("IPv4 socket")
    };
    let mut client = Client::new(now(), server, name.as_bytes(), config, VecSink::default());
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; 600];
    while !client.is_finished() && epoch.elapsed() < Duration::from_secs(30) {
        while let Some(t) = client.poll_transmit(now(), &mut out).unwrap() {
            sock.send_to(&out[..t.len], t.remote).unwrap();
        }
        if client.sink().finished {
            break;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => client.handle(
                now(),
                Datagram {
                    local,
                    remote: from,
                    payload: &buf[..n],
                },
            ),
            Ok(_) => {}
            Err(_) => client.handle_timeout(now()),
        }
    }
    // Send the final ACK.
    while let Some(t) = client.poll_transmit(now(), &mut out).unwrap() {
        sock.send_to(&out[..t.len], t.remote).unwrap();
    }
    let windowsize = client.negotiated().windowsize;
    let sink = client.into_sink();
    assert!(
        sink.finished,
        "{name} blksize {blksize} window {windowsize}: unfinished"
    );
    (sink.data, windowsize)
}
