//! PXE MTFTP on real sockets, with real multicast, inside a network
//! namespace this test creates (never on the host's interfaces): the
//! server engine on SPORT and 8 client engines ([`driver::mtftp::fetch`])
//! started at staggered times, each from its own address on the
//! namespace's loopback (two sockets on CPORT each, one joined to the
//! group); every client ends with the file, sha256 checked (PXE 2.1
//! MTFTP; notes §2.5 items 1–6).
//!
//! Needs root and `ip`; without them the test says so and passes, unless
//! `PREBOOT_CI=1`, where it fails. The clients and the server run in a
//! child process (`ip netns exec` on this test binary; the test
//! `mtftp_netns_child` acts only with `PREBOOT_MTFTP_CHILD` set).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use preboot::driver::clock;
use preboot::driver::mtftp::{FetchOutcome, fetch, server_socket};
use preboot::engine::Datagram;
use preboot::fs::{FileSource, MemFile, MemFs, VecSink};
use preboot::mtftp::Channel;
use preboot::mtftp::client::ClientConfig;
use preboot::mtftp::server::{Server, ServerConfig, ServerEvent, Slot};
use sha2::{Digest, Sha256};

#[path = "support/netns.rs"]
mod netns;
use netns::run_child_in_namespace;

const SPORT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 1759);
const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 1, 1), 3001);
const CLIENTS: usize = 8;
const CHILD_ENV: &str = "PREBOOT_MTFTP_CHILD";

#[test]
fn mtftp_eight_clients_in_a_namespace() {
    run_child_in_namespace(
        "pbmtftp",
        "mtftp_netns_child",
        &[(CHILD_ENV, "1".as_ref())],
        "MTFTP OK",
    );
}

#[test]
fn mtftp_netns_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let data: &'static [u8] = Vec::leak(
        (0..(3 << 20) + 123)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect(),
    );
    let want = Sha256::digest(data);
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || serve(data, &stop))
    };
    let channel = Channel {
        group: GROUP,
        server: SPORT,
        listen: Duration::from_secs(1),
        delay: Duration::from_millis(500),
    };
    let config = ClientConfig {
        timeout: Duration::from_millis(200),
        ..ClientConfig::new(channel)
    };
    // Before the start, together, during the listen time, and later
    // (mid-stream or after it, depending on the machine's speed).
    let starts_ms = [0u64, 0, 50, 300, 900, 1_300, 1_600, 4_000];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let start = Duration::from_millis(starts_ms[i]);
            std::thread::spawn(move || {
                std::thread::sleep(start);
                let local = Ipv4Addr::new(127, 0, 0, 10 + i as u8);
                let sink = VecSink {
                    limit: Some(64 << 20),
                    ..VecSink::default()
                };
                fetch(
                    channel,
                    local,
                    b"images/big.bin",
                    config,
                    sink,
                    Duration::from_secs(60),
                )
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let (outcome, sink) = c
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        eprintln!("client {i}: {outcome:?}");
        assert!(
            matches!(outcome, FetchOutcome::Completed { .. }),
            "client {i}: {outcome:?}"
        );
        assert_eq!(Sha256::digest(&sink.data), want, "client {i}: sha256");
    }
    stop.store(true, Ordering::Relaxed);
    let (streams, bytes) = server.join().unwrap();
    eprintln!(
        "MTFTP OK: {CLIENTS} clients, {} B file, {streams} streams, server sent {bytes} B ({:.2} x the file)",
        data.len(),
        bytes as f64 / data.len() as f64
    );
}

/// The server engine on a real socket until `stop`: (streams, bytes sent).
fn serve(data: &'static [u8], stop: &AtomicBool) -> (u32, u64) {
    let files: &'static [(&'static str, &'static [u8])] = Vec::leak(vec![("images/big.bin", data)]);
    let mut fs = MemFs::new(files);
    let sock = server_socket(SPORT, 1).expect("server socket");
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let slots: Vec<Slot<MemFile<'static>>> = vec![Slot::new()];
    let mut server = Server::new(
        ServerConfig {
            timeout: Duration::from_millis(200),
            max_retries: 5,
            window: 1,
        },
        slots,
    );
    let (mut streams, mut bytes) = (0u32, 0u64);
    let mut buf = [0u8; 2048];
    let started = StdInstant::now();
    while !(stop.load(Ordering::Relaxed) && server.active() == 0) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "server ran too long"
        );
        let now = clock::now();
        while let Some(t) = server.poll_transmit(now, &mut buf).unwrap() {
            bytes += t.len as u64;
            let _ = sock.send_to(&buf[..t.len], SocketAddr::V4(t.remote));
        }
        while let Some(e) = server.poll_event() {
            if matches!(e, ServerEvent::Started { .. }) {
                streams += 1;
            }
        }
        if let Ok((n, SocketAddr::V4(from))) = sock.recv_from(&mut buf) {
            let now = clock::now();
            let payload = buf[..n].to_vec();
            if let Some(inc) = server.handle(
                now,
                Datagram {
                    local: SPORT,
                    remote: from,
                    payload: &payload,
                },
            ) {
                match fs.open(&inc.path) {
                    Ok(f) => {
                        let _ = server.accept(now, &inc, f, GROUP, SPORT);
                    }
                    Err(_) => server.refuse(&inc, preboot::wire::tftp::ErrorCode::FileNotFound),
                }
            }
        }
        server.handle_timeout(clock::now());
    }
    (streams, bytes)
}
