//! The server engine driven by arbitrary operation sequences: requests,
//! datagrams into transfers, time steps, timeouts. No panic, bounded
//! output per poll, bounded state.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::fs::{FileSource, MemFile, MemFs, VecSink};
use preboot::tftp::server::{RequestOutcome, Server, ServerConfig, Slot, TransferHandle};

#[derive(Arbitrary, Debug)]
enum Op {
    Request { client: u8, raw: Vec<u8> },
    Rrq { client: u8, file: u8, blksize: u16, windowsize: u8, tsize: bool },
    Wrq { client: u8, blksize: u16 },
    Raw { transfer: u8, raw: Vec<u8> },
    Ack { transfer: u8, block: u16 },
    Data { transfer: u8, block: u16, len: u16 },
    Error { transfer: u8, code: u16 },
    Advance { ms: u16 },
    Timeouts,
    Drain,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sizes: [u16; 3],
    windowsize: u8,
    max_per_client: u8,
    rollover_one: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let blobs: Vec<Vec<u8>> = input.sizes.iter().map(|&s| vec![0x5a; usize::from(s) * 3]).collect();
    let files: Vec<(&str, &[u8])> = vec![("a", &blobs[0]), ("b/c", &blobs[1]), ("d", &blobs[2])];
    let mut fs = MemFs::new(&files);
    let config = ServerConfig {
        max_windowsize: u16::from(input.windowsize).max(1),
        max_per_client: usize::from(input.max_per_client % 8),
        allow_write: true,
        max_write_size: Some(100_000),
        rollover: if input.rollover_one { preboot::tftp::Rollover::ToOne } else { preboot::tftp::Rollover::ToZero },
        timeout: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let mut server: Server<MemFile, VecSink, Vec<Slot<MemFile, VecSink>>> =
        Server::new(config, (0..6).map(|_| Slot::new()).collect());
    let mut handles: Vec<TransferHandle> = Vec::new();
    let mut now = Instant::ZERO;
    let mut buf = vec![0u8; 65536 + 4];
    let peer = |c: u8| SocketAddrV4::new(Ipv4Addr::new(10, 0, c % 3, 1), 1000 + u16::from(c));
    let pick = |handles: &Vec<TransferHandle>, t: u8| handles.get(usize::from(t) % handles.len().max(1)).copied();
    for op in input.ops.into_iter().take(2000) {
        let mut raw_req = Vec::new();
        let req: Option<(u8, &[u8])> = match &op {
            Op::Request { client, raw } => Some((*client, raw)),
            Op::Rrq { client, file, blksize, windowsize, tsize } => {
                raw_req.extend_from_slice(b"\x00\x01");
                raw_req.extend_from_slice(["a", "/b/c", "d", "missing"][usize::from(*file) % 4].as_bytes());
                raw_req.extend_from_slice(b"\x00octet\x00");
                raw_req.extend_from_slice(format!("blksize\x00{blksize}\x00windowsize\x00{windowsize}\x00").as_bytes());
                if *tsize {
                    raw_req.extend_from_slice(b"tsize\x000\x00");
                }
                Some((*client, &raw_req))
            }
            Op::Wrq { client, blksize } => {
                raw_req.extend_from_slice(format!("\x00\x02up\x00octet\x00blksize\x00{blksize}\x00").as_bytes());
                Some((*client, &raw_req))
            }
            _ => None,
        };
        if let Some((client, raw)) = req {
            match server.handle_request(now, peer(client), raw) {
                RequestOutcome::Read(inc) => match fs.open(&inc.path) {
                    Ok(f) => {
                        if let Ok(h) = server.accept_read(now, &inc, f) {
                            handles.push(h);
                        }
                    }
                    Err(e) => server.refuse(&inc, e.error_code()),
                },
                RequestOutcome::Write(inc) => {
                    let sink = VecSink { limit: Some(100_000), ..VecSink::default() };
                    if let Ok(h) = server.accept_write(now, &inc, sink) {
                        handles.push(h);
                    }
                }
                _ => {}
            }
            continue;
        }
        match op {
            Op::Raw { transfer, raw } => {
                if let Some(h) = pick(&handles, transfer) {
                    server.handle(h, now, &raw);
                }
            }
            Op::Ack { transfer, block } => {
                if let Some(h) = pick(&handles, transfer) {
                    let [a, b] = block.to_be_bytes();
                    server.handle(h, now, &[0, 4, a, b]);
                }
            }
            Op::Data { transfer, block, len } => {
                if let Some(h) = pick(&handles, transfer) {
                    let mut d = vec![0u8; 4 + usize::from(len) % 70000];
                    d[1] = 3;
                    d[2..4].copy_from_slice(&block.to_be_bytes());
                    server.handle(h, now, &d);
                }
            }
            Op::Error { transfer, code } => {
                if let Some(h) = pick(&handles, transfer) {
                    let [a, b] = code.to_be_bytes();
                    server.handle(h, now, &[0, 5, a, b, b'x', 0]);
                }
            }
            Op::Advance { ms } => now += Duration::from_millis(u64::from(ms)),
            Op::Timeouts => {
                for &h in &handles {
                    server.handle_timeout(h, now);
                }
            }
            Op::Drain | Op::Request { .. } | Op::Rrq { .. } | Op::Wrq { .. } => {}
        }
        // Drain everything: output per call is bounded by the window.
        let mut n = 0;
        while server.poll_listener_transmit(&mut buf).is_some() {
            n += 1;
            assert!(n <= 64);
        }
        for &h in &handles {
            let mut sent = 0;
            while server.poll_transmit(h, now, &mut buf).is_some() {
                sent += 1;
                assert!(sent <= 256 + 2, "unbounded transmit");
            }
            let mut ev = 0;
            while server.poll_event(h).is_some() {
                ev += 1;
                assert!(ev <= 3, "unbounded events");
            }
            if let Some(t) = server.poll_timeout(h) {
                assert!(t >= now || t <= now, "comparable");
            }
        }
        handles.retain(|&h| {
            if server.is_finished(h) {
                server.remove(h);
                false
            } else {
                true
            }
        });
        assert!(server.active() <= 6);
        assert_eq!(server.active(), handles.len());
    }
});
