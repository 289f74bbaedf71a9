//! PXE MTFTP against the atftp 0.8.0 ↔ atftpd 0.8.0 capture in
//! `tests/vectors/` (PROVENANCE.md): our server answers atftp's request
//! with the same DATA block 1, byte for byte, unicast and to the group;
//! our client answers atftpd's unicast block 1 with the same ACK as
//! atftp's master (PXE 2.1 MTFTP; notes §2.5 items 2–4).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use preboot::Instant;
use preboot::engine::Datagram;
use preboot::fs::{FileSource, MemFs, SliceSink};
use preboot::mtftp::Channel;
use preboot::mtftp::client::{Client, ClientConfig, ClientEvent};
use preboot::mtftp::server::{Server, ServerConfig, Slot};
use preboot::wire::tftp::Repr;

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("vector");
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

// The capture's endpoints (PROVENANCE.md: group 239.239.239.2:1760,
// server port 1759).
const SPORT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 1), 1759);
const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 239, 239, 2), 1760);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 50), 1760);

#[test]
fn server_answers_atftp_like_atftpd() {
    let rrq = vector("mtftp-rrq-atftp.hex");
    let data1 = vector("mtftp-data1-unicast-atftpd.hex");
    assert_eq!(data1, vector("mtftp-data1-multicast-atftpd.hex"));
    // A file whose first block is the captured one, and more after it.
    let mut file = data1[4..].to_vec();
    file.extend_from_slice(b"rest of the file");
    let files = [("big.bin", &file[..])];
    let mut fs = MemFs::new(&files);
    let mut server = Server::new(ServerConfig::default(), [Slot::new()]);
    let now = Instant::ZERO;
    let inc = server
        .handle(
            now,
            Datagram {
                local: SPORT,
                remote: CLIENT,
                payload: &rrq,
            },
        )
        .expect("atftp's plain RRQ is an open (item 2)");
    assert_eq!(inc.path.as_str(), "big.bin");
    let f = fs.open(&inc.path).unwrap();
    server.accept(now, &inc, f, GROUP, SPORT).unwrap();
    let mut buf = [0u8; 516];
    let t = server.poll_transmit(now, &mut buf).unwrap().unwrap();
    assert_eq!(
        (t.remote, &buf[..t.len]),
        (CLIENT, &data1[..]),
        "unicast block 1 (item 3)"
    );
    let t = server.poll_transmit(now, &mut buf).unwrap().unwrap();
    assert_eq!(
        (t.remote, &buf[..t.len]),
        (GROUP, &data1[..]),
        "block 1 to the group (item 3)"
    );
    assert!(server.poll_transmit(now, &mut buf).unwrap().is_none());
    // atftp's master ACK moves the stream: block 2 to the group only.
    let ack = vector("mtftp-ack1-atftp.hex");
    server.handle(
        now,
        Datagram {
            local: SPORT,
            remote: CLIENT,
            payload: &ack,
        },
    );
    let t = server.poll_transmit(now, &mut buf).unwrap().unwrap();
    assert_eq!(t.remote, GROUP);
    assert_eq!(&buf[..t.len], b"\x00\x03\x00\x02rest of the file");
}

#[test]
fn client_opens_and_acks_like_atftp() {
    let channel = Channel {
        group: GROUP,
        server: SPORT,
        listen: Duration::from_secs(2),
        delay: Duration::from_secs(2),
    };
    let mut store = vec![0u8; 4096];
    let mut c = Client::new(
        Instant::ZERO,
        b"big.bin",
        ClientConfig::new(channel),
        SliceSink::new(&mut store),
    );
    let mut buf = [0u8; 516];
    // Listens 2 s first (item 1), then the same plain RRQ atftp sent.
    assert_eq!(c.poll_timeout(), Some(Instant::from_secs(2)));
    assert!(c.poll_transmit(Instant::ZERO, &mut buf).unwrap().is_none());
    let t0 = Instant::from_secs(2);
    c.handle_timeout(t0);
    let t = c.poll_transmit(t0, &mut buf).unwrap().unwrap();
    assert_eq!(
        (t.remote, &buf[..t.len]),
        (SPORT, &vector("mtftp-rrq-atftp.hex")[..])
    );
    assert!(matches!(Repr::parse_bytes(&buf[..t.len]), Ok(Repr::Rrq(r)) if r.options.is_empty()));
    // atftpd's unicast block 1 (from its fresh port) makes us master; we
    // ACK to that port with atftp's bytes.
    let atftpd = SocketAddrV4::new(*SPORT.ip(), 48123);
    let data1 = vector("mtftp-data1-unicast-atftpd.hex");
    c.handle(
        t0,
        Datagram {
            local: CLIENT,
            remote: atftpd,
            payload: &data1,
        },
    );
    let t = c.poll_transmit(t0, &mut buf).unwrap().unwrap();
    assert_eq!(
        (t.remote, &buf[..t.len]),
        (atftpd, &vector("mtftp-ack1-atftp.hex")[..])
    );
    assert!(std::iter::from_fn(|| c.poll_event()).any(|e| e == ClientEvent::Master));
    assert_eq!(&c.sink().data()[..512], &data1[4..]);
}
