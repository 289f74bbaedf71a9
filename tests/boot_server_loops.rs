//! Issue 12: DHCP (port 67), the boot server (4011) and TFTP share the
//! event loops. While large transfers keep every loop busy, each kind of
//! request is still answered: a proxy OFFER, a 4011 ACK, a small file.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use preboot::driver::boot_server::{BootServer, config};

mod tftp_support;
use tftp_support::{content_seeded, fetch};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// The large file: 64 MiB.
const BIG: usize = 64 << 20;
/// Concurrent large transfers: the kernel spreads them over the loops by a
/// hash of the client's port; with 12 the chance that one of two loops
/// gets none is 2 × 2⁻¹² (and the test says so if it happens).
const TRANSFERS: usize = 12;

fn vector(name: &str) -> Vec<u8> {
    let hex = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors")
            .join(name),
    )
    .unwrap();
    let hex: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Sends `request` to `to` from `client` and waits (bounded) for one
/// answer; returns it and how long it took.
fn ask(client: &UdpSocket, to: SocketAddr, request: &[u8]) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    client.send_to(request, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = client.recv_from(&mut buf).expect("an answer within 5 s");
    (buf[..n].to_vec(), start.elapsed())
}

#[test]
fn dhcp_4011_and_tftp_answered_while_64_mib_transfers_run_on_every_loop() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tftp");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("pxelinux.0"), b"tiny pxe loader").unwrap();
    let big = content_seeded(BIG, 0x5eed);
    std::fs::write(root.join("big.img"), &big).unwrap();
    let client = UdpSocket::bind((LO, 0)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let client_port = client.local_addr().unwrap().port();
    let boot_port = UdpSocket::bind((LO, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\n\
         [ports]\ndhcp = 0\nboot = {boot_port}\ntftp = 0\nclient = {client_port}\n\
         [boot]\nbios = \"pxelinux.0\"\n[tftp]\nroot = \"tftp\"\nloops = 2\n"
    );
    let c = config::parse(&dir.path().join("p.toml"), &text).unwrap();
    let server = BootServer::bind(c).unwrap();
    let (dhcp, tftp) = (server.dhcp_addr(), server.tftp_addr().unwrap());
    let boot = server.boot_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let running = std::thread::spawn(move || server.run(&flag));

    // The large transfers: windows of 16 blocks of 8 KiB.
    let transfers: Vec<_> = (0..TRANSFERS)
        .map(|_| std::thread::spawn(move || fetch(tftp, "big.img", 8192, 16).0))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let discover = vector("ipxe-bios-discover.hex");
    let request_4011 = vector("ipxe-bios-request-4011.hex");
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        // PXE 2.1 §2.2.1: a DISCOVER to 67 draws the proxy OFFER.
        let (offer, took) = ask(&client, dhcp, &discover);
        assert_eq!(offer[0], 2, "round {round}: a BOOTREPLY");
        assert!(offer.windows(9).any(|w| w == b"PXEClient"));
        slowest = slowest.max(took);
        // §2.2.2: the REQUEST to 4011 draws the ACK with the boot file.
        let (ack, took) = ask(&client, boot, &request_4011);
        assert!(
            ack.windows(10).any(|w| w == b"pxelinux.0"),
            "round {round}: the 4011 ACK names the file"
        );
        slowest = slowest.max(took);
        // RFC 1350: a small file, from a fresh transfer.
        let start = Instant::now();
        let (small, _) = fetch(tftp, "pxelinux.0", 1468, 1);
        assert_eq!(small, b"tiny pxe loader");
        slowest = slowest.max(start.elapsed());
    }
    let busy = transfers.iter().filter(|t| !t.is_finished()).count();
    println!(
        "slowest answer {slowest:?} with {busy} of {TRANSFERS} 64 MiB transfers still running"
    );
    assert!(
        busy > 0,
        "the large transfers ended before the probes: nothing was measured under load"
    );
    for t in transfers {
        assert!(t.join().unwrap() == big, "a 64 MiB transfer arrived intact");
    }
    stop.store(true, Ordering::Relaxed);
    let summary = running.join().unwrap().unwrap();
    assert_eq!(summary.tftp.completed, (TRANSFERS + 5) as u64);
    assert_eq!(summary.tftp_loops.len(), 2);
    for (i, l) in summary.tftp_loops.iter().enumerate() {
        assert!(
            l.bytes >= BIG as u64,
            "loop {i} served no large transfer ({:?}): the kernel's hash put all {TRANSFERS} on one loop",
            summary.tftp_loops
        );
    }
}
