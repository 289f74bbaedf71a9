//! The client engine driven by arbitrary operation sequences: OACKs, DATA,
//! ERRORs and raw datagrams from the server or from strangers, time steps.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::engine::Datagram;
use preboot::fs::VecSink;
use preboot::tftp::client::{Client, ClientConfig};
use preboot::wire::tftp::Mode;

#[derive(Arbitrary, Debug)]
enum Op {
    Raw { stranger: bool, raw: Vec<u8> },
    Oack { blksize: u16, windowsize: u16, tsize: u64 },
    Data { block: u16, len: u16, fill: u8 },
    Error { code: u16 },
    Advance { ms: u16 },
    Timeout,
}

#[derive(Arbitrary, Debug)]
struct Input {
    blksize: Option<u16>,
    windowsize: Option<u16>,
    tsize: bool,
    netascii: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 69);
    let tid = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000);
    let stranger = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4001);
    let config = ClientConfig {
        blksize: input.blksize,
        windowsize: input.windowsize,
        tsize: input.tsize,
        mode: if input.netascii { Mode::Netascii } else { Mode::Octet },
        timeout: Duration::from_millis(100),
        ..ClientConfig::default()
    };
    let sink = VecSink { limit: Some(1 << 20), ..VecSink::default() };
    let mut c = Client::new(Instant::ZERO, server, b"boot.efi", config, sink);
    let mut now = Instant::ZERO;
    let local = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 2000);
    let mut buf = vec![0u8; 70000];
    for op in input.ops.into_iter().take(3000) {
        match op {
            Op::Raw { stranger: s, raw } => c.handle(now, dg(local, if s { stranger } else { tid }, &raw)),
            Op::Oack { blksize, windowsize, tsize } => {
                let o = format!("\x00\x06blksize\x00{blksize}\x00windowsize\x00{windowsize}\x00tsize\x00{tsize}\x00");
                c.handle(now, dg(local, tid, o.as_bytes()));
            }
            Op::Data { block, len, fill } => {
                let mut d = vec![fill; 4 + usize::from(len) % 66000];
                d[..2].copy_from_slice(&[0, 3]);
                d[2..4].copy_from_slice(&block.to_be_bytes());
                c.handle(now, dg(local, tid, &d));
            }
            Op::Error { code } => {
                let [a, b] = code.to_be_bytes();
                c.handle(now, dg(local, tid, &[0, 5, a, b, 0]));
            }
            Op::Advance { ms } => now += Duration::from_millis(u64::from(ms)),
            Op::Timeout => c.handle_timeout(now),
        }
        let mut sent = 0;
        while let Ok(Some(_)) = c.poll_transmit(now, &mut buf) {
            sent += 1;
            assert!(sent <= 3, "unbounded transmit");
        }
        let mut ev = 0;
        while c.poll_event().is_some() {
            ev += 1;
            assert!(ev <= 3, "unbounded events");
        }
        assert!(c.sink().data.len() <= 1 << 20);
    }
});

/// One datagram from `remote` to the client's socket at `local`.
fn dg(local: SocketAddrV4, remote: SocketAddrV4, payload: &[u8]) -> Datagram<'_> {
    Datagram { local, remote, payload }
}
