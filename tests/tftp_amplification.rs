//! Issue 11, item 3: a spoofer makes the server send to a victim's address.
//! The server engine is driven directly: every datagram "from" the victim
//! is the spoofer's, every Transmit to the victim is counted, and the
//! ratio of bytes (UDP payload; `wire` adds 28 bytes of IPv4 + UDP header
//! per datagram) is checked against the bound the server promises:
//!
//! - default mode (a port per transfer): ≤ 30× for a blind spoofer, who
//!   cannot know the transfer's port (one datagram per datagram: the RFC
//!   1350 answer to a 19-byte RRQ, 516 bytes, 27×, is the worst); and for
//!   one that sprays its ACKs over every port the transfer may have
//!   (Linux's ephemeral range, 28232 ports, or a configured port range),
//!   ≤ 30× on the wire per spray;
//! - single-port mode (the spoofer knows port and block numbers): at most
//!   one datagram sent per datagram received, each ≤ blksize + 4 bytes.
//!
//! The issue's own figures are on the wire (its 784x for a spray of ACK 0
//! over a port range is this file's 1000-port spray before the fix).
//! `single_port_driver_five_spoofed_datagrams` replays its single-port
//! attack on the std server over loopback. Run with `--nocapture` to see
//! the figures.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use preboot::Instant;
use preboot::engine::Datagram;
use preboot::fs::{FileSource, MemFile, MemFs, VecSink};
use preboot::tftp::server::{Server, ServerConfig, ServerEvent, Slot, TransferHandle};
use preboot::wire::tftp::Repr;

type Srv = Server<MemFile<'static>, VecSink, Vec<Slot<MemFile<'static>, VecSink>>>;

const VICTIM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 8, 7), 4444);
/// The server's listening endpoint, and the port it gives the transfer.
const LISTEN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 69);
const PORT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
/// UDP + IPv4 headers, for the on-the-wire figures.
const HEADERS: u64 = 28;
/// Linux's default ephemeral port range, 32768-60999.
const EPHEMERAL: u64 = 28232;

fn image() -> &'static [u8] {
    static IMAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| (0..(64u32 << 20)).map(|i| (i % 251) as u8).collect())
}

fn rrq(options: &[(&str, &str)]) -> Vec<u8> {
    let mut v = b"\x00\x01pxelinux.0\x00octet\x00".to_vec();
    for (k, val) in options {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

const BIG: &[(&str, &str)] = &[("blksize", "65464"), ("windowsize", "64"), ("tsize", "0")];

#[derive(Default, Debug)]
struct Tally {
    /// Datagrams and payload bytes from the spoofer (counting every ACK of
    /// a spray, also those that hit no transfer).
    rx_datagrams: u64,
    rx_bytes: u64,
    /// Datagrams and payload bytes the server sent to the victim.
    tx_datagrams: u64,
    tx_bytes: u64,
}

impl Tally {
    fn received(&mut self, datagrams: u64, bytes: u64) {
        self.rx_datagrams += datagrams;
        self.rx_bytes += bytes;
    }
    fn ratio(&self) -> f64 {
        self.tx_bytes as f64 / self.rx_bytes as f64
    }
    fn wire_ratio(&self) -> f64 {
        (self.tx_bytes + HEADERS * self.tx_datagrams) as f64
            / (self.rx_bytes + HEADERS * self.rx_datagrams) as f64
    }
    fn report(&self, name: &str) {
        println!(
            "{name}: {} datagrams / {} bytes in, {} datagrams / {} bytes out: {:.1}x payload, {:.1}x on the wire",
            self.rx_datagrams,
            self.rx_bytes,
            self.tx_datagrams,
            self.tx_bytes,
            self.ratio(),
            self.wire_ratio()
        );
    }
}

/// What the spoofer does after its request.
#[derive(Clone, Copy)]
enum Spoofer {
    /// The request and nothing else.
    Silent,
    /// Every 300 ms, the request again and an ACK 0 to the listening port:
    /// it does not know the transfer's port.
    Blind,
    /// Sprays an ACK over `ports` ports, one of which is the transfer's,
    /// each time the server sent something (it knows the algorithm, so it
    /// knows which block number to acknowledge): every spray costs `ports`
    /// ACKs. `rounds` sprays at most.
    Spray { ports: u64, rounds: u32 },
}

struct Attack {
    server: Srv,
    h: Option<TransferHandle>,
    tally: Tally,
    now: Instant,
    buf: Vec<u8>,
    /// The highest block sent so far (the spoofer predicts it).
    high: Option<u16>,
    fresh: bool,
}

impl Attack {
    fn new(config: ServerConfig) -> Attack {
        Attack {
            server: Server::new(config, (0..4).map(|_| Slot::new()).collect()),
            h: None,
            tally: Tally::default(),
            now: Instant::ZERO,
            buf: vec![0u8; 65536 + 4],
            high: None,
            fresh: false,
        }
    }

    fn request(&mut self, rrq: &[u8]) {
        self.tally.received(1, rrq.len() as u64);
        let files: &'static [(&str, &[u8])] = Box::leak(Box::new([("pxelinux.0", image())]));
        let mut fs = MemFs::new(files);
        let dg = Datagram {
            local: LISTEN,
            remote: VICTIM,
            payload: rrq,
        };
        if let Some(inc) = self.server.handle(self.now, dg) {
            let file = fs.open(&inc.path).expect("file");
            self.h = Some(
                self.server
                    .accept_read(self.now, &inc, file, PORT)
                    .expect("accepted"),
            );
        }
        while let Some(ev) = self.server.poll_event() {
            assert!(!matches!(ev, ServerEvent::Refused { .. }), "{ev:?}");
        }
    }

    /// A datagram that reached the transfer's port.
    fn reach_transfer(&mut self, datagram: &[u8]) {
        if let Some(h) = self.h {
            let local = self.server.local(h).expect("live transfer");
            let dg = Datagram {
                local,
                remote: VICTIM,
                payload: datagram,
            };
            assert!(self.server.handle(self.now, dg).is_none());
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf).unwrap() {
            assert_eq!(t.remote, VICTIM);
            let n = t.len;
            self.tally.tx_datagrams += 1;
            self.tally.tx_bytes += n as u64;
            if let Ok(Repr::Data { block, .. }) = Repr::parse_bytes(&self.buf[..n]) {
                self.high = Some(self.high.map_or(block, |b| b.max(block)));
            }
            self.fresh = true;
        }
        self.server.read_ahead();
        while let Some(ev) = self.server.poll_event() {
            if matches!(ev, ServerEvent::Closed { .. }) {
                self.h = None;
            }
        }
    }

    fn run(mut self, rrq: &[u8], spoofer: Spoofer) -> Tally {
        self.request(rrq);
        self.drain();
        let mut sprays = 0;
        let mut next_blind = self.now + Duration::from_millis(300);
        // Bounded: 10 minutes of virtual time, 100,000 steps.
        let end = self.now + Duration::from_secs(600);
        for _ in 0..100_000 {
            if self.h.is_none() || self.now >= end {
                break;
            }
            match spoofer {
                Spoofer::Silent => {}
                Spoofer::Blind => {
                    if self.now >= next_blind {
                        self.request(rrq);
                        // ACK 0 to the listening port: ignored there.
                        self.tally.received(1, 4);
                        let ack0 = Datagram {
                            local: LISTEN,
                            remote: VICTIM,
                            payload: b"\x00\x04\x00\x00",
                        };
                        assert_eq!(self.server.handle(self.now, ack0), None);
                        next_blind = self.now + Duration::from_millis(300);
                    }
                }
                Spoofer::Spray { ports, rounds } => {
                    if self.fresh && sprays < rounds {
                        self.fresh = false;
                        sprays += 1;
                        self.tally.received(ports, 4 * ports);
                        let block = self.high.unwrap_or(0);
                        self.reach_transfer(&[0, 4, (block >> 8) as u8, block as u8]);
                    }
                }
            }
            self.drain();
            let timer = self.server.poll_timeout();
            let mut next = timer.unwrap_or(end);
            if matches!(spoofer, Spoofer::Blind) {
                next = next.min(next_blind);
            }
            if let Spoofer::Spray { rounds, .. } = spoofer {
                if self.fresh && sprays < rounds {
                    next = self.now;
                }
            }
            self.now = self.now.max(next);
            self.server.handle_timeout(self.now);
            self.drain();
        }
        self.tally
    }
}

fn single_port() -> ServerConfig {
    ServerConfig {
        validate_by_port: false,
        ..ServerConfig::default()
    }
}

#[test]
fn one_spoofed_request_within_30x() {
    // One datagram: the answer it pays for, and no re-send on timeouts.
    let t = Attack::new(ServerConfig::default()).run(&rrq(BIG), Spoofer::Silent);
    t.report("one request, options");
    assert!(t.ratio() <= 30.0, "{t:?}");
    assert_eq!(t.tx_datagrams, 1);
    // RFC 1350: one 516-byte DATA to a 19-byte RRQ, 27x (the floor).
    let t = Attack::new(ServerConfig::default()).run(&rrq(&[]), Spoofer::Silent);
    t.report("one request, RFC 1350");
    assert!(t.ratio() <= 30.0, "{t:?}");
    assert_eq!(t.tx_datagrams, 1);
}

#[test]
fn blind_spoofer_default_mode_within_30x() {
    // With options: the OACK, then nothing the spoofer can reach.
    let t = Attack::new(ServerConfig::default()).run(&rrq(BIG), Spoofer::Blind);
    t.report("blind, options");
    assert!(t.ratio() <= 30.0, "{t:?}");
    assert!(t.tx_datagrams <= t.rx_datagrams);
    // RFC 1350, no options: one 516-byte DATA per request (the floor).
    let t = Attack::new(ServerConfig::default()).run(&rrq(&[]), Spoofer::Blind);
    t.report("blind, RFC 1350");
    assert!(t.ratio() <= 30.0, "{t:?}");
    assert!(t.tx_datagrams <= t.rx_datagrams);
}

#[test]
fn port_spray_default_mode_within_30x_on_the_wire() {
    // One spray of ACK 0 over the ephemeral range: a first window, the
    // timeouts' single-block re-sends. Then 40 sprays, each acknowledging
    // the highest block sent.
    for rounds in [1, 40] {
        let spoofer = Spoofer::Spray {
            ports: EPHEMERAL,
            rounds,
        };
        let t = Attack::new(ServerConfig::default()).run(&rrq(BIG), spoofer);
        t.report(&format!("spray over {EPHEMERAL} ports, {rounds} sprays"));
        assert!(t.wire_ratio() <= 30.0, "{t:?}");
        assert!(t.ratio() <= 40.0, "{t:?}");
    }
}

#[test]
fn port_spray_over_a_small_port_range_is_bounded_by_the_window() {
    // A port range of 1000 ports: the granted window shrinks (9 blocks at
    // blksize 65464) so that one spray draws at most 30 times its bytes
    // on the wire.
    let config = ServerConfig {
        port_space: 1000,
        ..ServerConfig::default()
    };
    for rounds in [1, 40] {
        let spoofer = Spoofer::Spray {
            ports: 1000,
            rounds,
        };
        let t = Attack::new(config).run(&rrq(BIG), spoofer);
        t.report(&format!("spray over 1000 ports, {rounds} sprays"));
        assert!(t.wire_ratio() <= 30.0, "{t:?}");
    }
}

#[test]
fn single_port_one_datagram_per_datagram() {
    // The spoofer knows the port and every block number: it acknowledges
    // each block. Windowsize is not granted; each ACK draws one DATA, and
    // timeouts re-send nothing unpaid.
    let spoofer = Spoofer::Spray {
        ports: 1,
        rounds: 40,
    };
    let t = Attack::new(single_port()).run(&rrq(BIG), spoofer);
    t.report("single port, 40 ACKs");
    assert!(t.tx_datagrams <= t.rx_datagrams, "{t:?}");
    assert!(t.tx_bytes <= t.rx_datagrams * (65464 + 4), "{t:?}");
    // Blind (no ACK at all): only the OACKs the requests pay for.
    let t = Attack::new(single_port()).run(&rrq(BIG), Spoofer::Blind);
    t.report("single port, blind");
    assert!(t.tx_datagrams <= t.rx_datagrams, "{t:?}");
}

/// The attack of issue 11 on the std server in single-port mode, on
/// loopback: 5 datagrams (a request for blksize 65464 and windowsize 64,
/// then ACKs 0, 64, 128, 192 as a blind spoofer would predict them) drew
/// 41.9 MB. The "victim" socket sends them; another thread counts what
/// arrives there for 3.5 s, which covers the first timeouts.
#[test]
fn single_port_driver_five_spoofed_datagrams() {
    use preboot::driver::tftp::{TftpServer, TftpServerConfig};
    use std::net::{SocketAddr, UdpSocket};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pxelinux.0"), &image()[..32 << 20]).unwrap();
    let mut config = TftpServerConfig::new(
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
        dir.path().into(),
    );
    config.single_port = true;
    let server = TftpServer::bind(config).unwrap().spawn().unwrap();
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    let counter = victim.try_clone().unwrap();
    counter
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let count = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let (mut datagrams, mut bytes) = (0u64, 0u64);
        let end = std::time::Instant::now() + Duration::from_millis(3500);
        while std::time::Instant::now() < end {
            if let Ok(n) = counter.recv(&mut buf) {
                datagrams += 1;
                bytes += n as u64;
            }
        }
        (datagrams, bytes)
    });
    let to = server.local_addr();
    let mut sent = Vec::new();
    sent.push(rrq(BIG));
    for block in [0u16, 64, 128, 192] {
        sent.push(vec![0, 4, (block >> 8) as u8, block as u8]);
    }
    for d in &sent {
        victim.send_to(d, to).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let (datagrams, bytes) = count.join().unwrap();
    server.stop().unwrap();
    let t = Tally {
        rx_datagrams: sent.len() as u64,
        rx_bytes: sent.iter().map(|d| d.len() as u64).sum(),
        tx_datagrams: datagrams,
        tx_bytes: bytes,
    };
    t.report("std server, single port, 5 spoofed datagrams");
    // The OACK (no windowsize granted), one DATA for ACK 0, and at the
    // first timeout one re-send paid by the later ACKs: one datagram per
    // datagram, each at most blksize + 4 bytes.
    assert!(t.tx_datagrams <= t.rx_datagrams, "{t:?}");
    assert!(t.tx_bytes <= t.rx_datagrams * (65464 + 4), "{t:?}");
}
