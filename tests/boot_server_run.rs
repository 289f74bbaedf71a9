//! `BootServer::run` in-process: it serves DHCP and TFTP together, says
//! what it serves, and stops when the flag is set, with its counters.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use preboot::driver::boot_server::{BootServer, config};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// RFC 1350 §5: RRQ in octet mode; the file fits one DATA block.
fn tftp_get_small(server: SocketAddr, file: &str) -> Vec<u8> {
    let s = UdpSocket::bind((LO, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rrq = vec![0, 1];
    rrq.extend_from_slice(file.as_bytes());
    rrq.push(0);
    rrq.extend_from_slice(b"octet\0");
    s.send_to(&rrq, server).unwrap();
    let mut buf = [0u8; 600];
    let (n, from) = s.recv_from(&mut buf).expect("DATA within 5 s");
    assert_ne!(from, server, "a transfer answers from a fresh port (TID)");
    assert_eq!(&buf[..4], &[0, 3, 0, 1], "DATA block 1");
    s.send_to(&[0, 4, 0, 1], from).unwrap();
    // The transfer is over when its port is closed: a repeated ACK then
    // draws ICMP port unreachable (bounded wait).
    s.connect(from).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut closed = false;
    for _ in 0..100 {
        let _ = s.send(&[0, 4, 0, 1]);
        if let Err(e) = s.recv(&mut [0u8; 600]) {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the transfer's port never closed");
    buf[4..n].to_vec()
}

/// The DHCP socket answers a PXE DISCOVER with a proxy OFFER naming the
/// BIOS file.
fn proxy_offer(dhcp: SocketAddr, client: &UdpSocket) -> Vec<u8> {
    let hex = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/ipxe-bios-discover.hex"),
    )
    .unwrap();
    let hex: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let discover: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    client.send_to(&discover, dhcp).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = client.recv_from(&mut buf).expect("an OFFER within 5 s");
    buf[..n].to_vec()
}

#[test]
fn serves_dhcp_and_tftp_together_and_stops_on_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tftp")).unwrap();
    std::fs::write(dir.path().join("tftp/pxelinux.0"), b"tiny pxe loader").unwrap();
    let client = UdpSocket::bind((LO, 0)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let client_port = client.local_addr().unwrap().port();
    // Proxy mode needs its boot server socket (0 would mean none): a port
    // that was free a moment ago.
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
    assert_ne!(dhcp.port(), 0);
    assert_eq!(server.boot_addr().map(|a| a.port()), Some(boot_port));
    let lines = server.describe();
    assert!(lines.iter().any(|l| l.contains("proxyDHCP")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("pxelinux.0")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains(&format!("udp {tftp}"))),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("(2 event loops)")),
        "{lines:?}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let running = std::thread::spawn(move || server.run(&flag));

    let offer = proxy_offer(dhcp, &client);
    assert_eq!(offer[0], 2, "BOOTREPLY");
    assert!(
        offer.windows(9).any(|w| w == b"PXEClient"),
        "a proxy OFFER (option 60 PXEClient)"
    );
    // No file in the proxy OFFER: it comes from the 4011 ACK (PXE 2.1
    // §2.2.1), not bound in this configuration.
    assert!(
        !offer.windows(10).any(|w| w == b"pxelinux.0"),
        "the proxy OFFER names no file"
    );
    // TFTP runs on two event loops: clients (fresh ports) hash over both.
    for _ in 0..8 {
        assert_eq!(tftp_get_small(tftp, "pxelinux.0"), b"tiny pxe loader");
    }
    stop.store(true, Ordering::Relaxed);
    let summary = running.join().unwrap().unwrap();
    assert_eq!(summary.tftp.completed, 8);
    assert_eq!(summary.tftp.bytes, 8 * 15);
    // Everything is closed again (both loops' sockets: the port binds
    // without SO_REUSEPORT).
    UdpSocket::bind(dhcp).expect("DHCP port released");
    UdpSocket::bind(tftp).expect("TFTP port released");
}
