//! Issue 12, item 2 (TFTP): the std server runs one event loop per core.
//! Transfers spread over the loops and stay on the loop that accepted them
//! (also in single-port mode, where a client's ACKs must reach the loop
//! that owns its transfer through the `SO_REUSEPORT` hash); the limits hold
//! for the whole server; `loops = 1` is the single loop of before.
//!
//! Every server listens on 127.0.0.1 (or another 127/8 address); every
//! download is bounded by the client helper's 30 s; every wait is bounded.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use preboot::driver::tftp::{TftpServer, TftpServerConfig, TftpServerHandle, TftpStats};
use preboot::wire::tftp::Repr;

mod tftp_support;
use tftp_support::{content, fetch};

fn config(dir: &std::path::Path, loops: usize) -> TftpServerConfig {
    let mut c = TftpServerConfig::new(
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
        dir.into(),
    );
    c.loops = loops;
    c
}

/// `n` concurrent downloads of `image` (`data`) from `addr`, each checked
/// byte for byte.
fn download_all(addr: SocketAddr, n: usize, data: &[u8], windowsize: u16) {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..n)
            .map(|_| s.spawn(move || fetch(addr, "image", 1468, windowsize).0))
            .collect();
        for t in threads {
            let got = t.join().expect("client thread");
            assert!(
                got == data,
                "{} of {} bytes, content differs",
                got.len(),
                data.len()
            );
        }
    });
}

/// Waits (at most 5 s) until no transfer is counted.
fn idle(server: &TftpServerHandle) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.active_transfers() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.active_transfers(), 0);
}

/// The final ACK of a transfer may still be in flight when `fetch`
/// returns: waits (bounded) until the server has counted `n` completions.
fn stop_after(server: TftpServerHandle, n: u64) -> Vec<TftpStats> {
    idle(&server);
    let per_loop = server.stop_loops().expect("loops stop cleanly");
    let total: TftpStats = per_loop.iter().copied().sum();
    assert_eq!(total.completed, n, "{per_loop:?}");
    assert_eq!(total.failed, 0, "{per_loop:?}");
    per_loop
}

fn spread(loops: usize, single_port: bool, windowsize: u16) {
    let dir = tempfile::tempdir().unwrap();
    let data = content(200_000);
    std::fs::write(dir.path().join("image"), &data).unwrap();
    let mut c = config(dir.path(), loops);
    c.single_port = single_port;
    let server = TftpServer::bind(c).unwrap().spawn().unwrap();
    assert_eq!(server.loops(), loops);
    download_all(server.local_addr(), 32, &data, windowsize);
    let per_loop = stop_after(server, 32);
    assert_eq!(per_loop.len(), loops);
    // 32 clients hashed over the loops: all on one has odds 2^-31 with two.
    let busy = per_loop.iter().filter(|s| s.completed > 0).count();
    assert!(busy > 1, "every transfer on one loop: {per_loop:?}");
    println!(
        "completed per loop: {:?}",
        per_loop.iter().map(|s| s.completed).collect::<Vec<_>>()
    );
}

#[test]
fn transfers_spread_over_the_loops() {
    spread(2, false, 1);
}

#[test]
fn windowed_transfers_spread_over_four_loops() {
    spread(4, false, 16);
}

/// In single-port mode every ACK comes to the shared port: the kernel's
/// 4-tuple hash must bring it to the loop that accepted the transfer, or
/// the transfer would stall and fail.
#[test]
fn single_port_transfers_stay_on_their_loop() {
    spread(2, true, 1);
}

#[test]
fn one_loop_serves_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(200_000);
    std::fs::write(dir.path().join("image"), &data).unwrap();
    let server = TftpServer::bind(config(dir.path(), 1)).unwrap();
    assert_eq!(server.loops(), 1);
    let addr = server.local_addr();
    // One socket without SO_REUSEPORT: the port is exclusive.
    let mut again = config(dir.path(), 1);
    again.bind = addr;
    let e = TftpServer::bind(again).expect_err("port in use");
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    let server = server.spawn().unwrap();
    download_all(addr, 8, &data, 1);
    download_all(addr, 4, &data, 16);
    let per_loop = stop_after(server, 12);
    assert_eq!(per_loop.len(), 1);
}

/// A second server on the port of a multi-loop one is refused, as with
/// one loop: the group's `SO_REUSEPORT` does not let it in.
#[test]
fn a_second_server_cannot_join_the_loops_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = TftpServer::bind(config(dir.path(), 2)).unwrap();
    for loops in [1, 2] {
        let mut again = config(dir.path(), loops);
        again.bind = server.local_addr();
        let e = TftpServer::bind(again).expect_err("port in use");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    }
}

#[test]
fn zero_loops_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = TftpServer::bind(config(dir.path(), 0)).expect_err("refused");
    assert!(e.to_string().contains("loops = 0"), "{e}");
}

/// Sends an RRQ from each socket and returns what came back first to each:
/// `true` for a transfer started (DATA or OACK), `false` for an ERROR.
/// The clients never ACK: accepted transfers stay open until their timeout.
fn requests(server: SocketAddr, from: &[UdpSocket]) -> Vec<bool> {
    for s in from {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"\x00\x01image\x00octet\x00", server).unwrap();
    }
    let mut buf = [0u8; 2048];
    from.iter()
        .map(|s| {
            let (n, _) = s.recv_from(&mut buf).expect("an answer within 3 s");
            match Repr::parse_bytes(&buf[..n]).expect("parses") {
                Repr::Data { .. } | Repr::Oack { .. } => true,
                Repr::Error { .. } => false,
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

fn sockets(ip: Ipv4Addr, n: usize) -> Vec<UdpSocket> {
    (0..n).map(|_| UdpSocket::bind((ip, 0)).unwrap()).collect()
}

/// `max_per_client` and `max_transfers` count the transfers of every loop:
/// with four loops, each with slots of its own, a client still gets
/// `max_per_client` transfers in all and the server `max_transfers`.
#[test]
fn limits_hold_over_all_loops() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("image"), content(100_000)).unwrap();
    let mut c = config(dir.path(), 4);
    c.max_per_client = 2;
    c.max_transfers = 5;
    c.timeout = Duration::from_secs(5);
    let server = TftpServer::bind(c).unwrap().spawn().unwrap();
    let addr = server.local_addr();

    // One client address, 12 ports (hashed over the four loops): two pass.
    let one = sockets(Ipv4Addr::LOCALHOST, 12);
    let got = requests(addr, &one);
    assert_eq!(got.iter().filter(|&&ok| ok).count(), 2, "{got:?}");
    assert_eq!(server.active_transfers(), 2);

    // Other client addresses (127.0.0.2-7), two ports each: three more
    // pass, then the server is full.
    let others: Vec<UdpSocket> = (2..8)
        .flat_map(|i| sockets(Ipv4Addr::new(127, 0, 0, i), 2))
        .collect();
    let got = requests(addr, &others);
    assert_eq!(got.iter().filter(|&&ok| ok).count(), 3, "{got:?}");
    assert_eq!(server.active_transfers(), 5);

    let stats = server.stop().unwrap();
    assert_eq!(stats.refused, 10 + 9, "{stats:?}");
}

/// Transfers that end give their places back on every loop: after a
/// round of completed downloads nothing is counted.
#[test]
fn ended_transfers_are_uncounted() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(50_000);
    std::fs::write(dir.path().join("image"), &data).unwrap();
    let mut c = config(dir.path(), 3);
    c.max_per_client = 4;
    let server = TftpServer::bind(c).unwrap().spawn().unwrap();
    let addr = server.local_addr();
    for _ in 0..3 {
        download_all(addr, 4, &data, 1);
        idle(&server);
    }
    stop_after(server, 12);
}
