//! The PXE MTFTP client engine driven by arbitrary operation sequences:
//! DATA from the server (unicast or from the group, any block, any
//! length, from the stream's port or another), ERRORs, raw datagrams from
//! the server or from strangers, time steps and timeouts, small buffers.
//!
//! Checked: no panic; the client sends only to the server's address — a
//! plain RRQ (no options, octet) to SPORT, or an ACK, and ACKs only after
//! a unicast DATA 1 made it master (PXE 2.1 MTFTP: only the master ACKs);
//! nothing once finished; at most two datagrams and five events per step;
//! the sink gets each block at most once, at a 512-byte boundary, at most
//! 512 bytes, never past 65,535 blocks, and is finished once, when
//! `is_complete` holds (a master finishes at the stream's last block).
#![no_main]

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::engine::Datagram;
use preboot::fs::{FsError, WriteAt};
use preboot::mtftp::Channel;
use preboot::mtftp::client::{Client, ClientConfig};
use preboot::wire::tftp::Repr;

#[derive(Arbitrary, Debug)]
enum Op {
    Data { multicast: bool, other_port: bool, block: u16, len: u16, fill: u8 },
    Error { multicast: bool, code: u16 },
    Raw { stranger: bool, multicast: bool, raw: Vec<u8> },
    Advance { ms: u16 },
    Timeout,
    SmallBuffer { len: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    listen_s: u8,
    delay_s: u8,
    max_retries: u8,
    max_silent_opens: u8,
    ops: Vec<Op>,
}

/// Records every write; refuses to overlap or misalign (an engine bug).
#[derive(Default)]
struct CheckSink {
    written: HashSet<u64>,
    finished: u32,
}

impl WriteAt for CheckSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        assert_eq!(offset % 512, 0, "block boundary");
        assert!(data.len() <= 512);
        assert!(offset / 512 < 65535, "past 65,535 blocks");
        assert!(self.written.insert(offset), "block written twice");
        Ok(())
    }
    fn finish(&mut self) -> Result<(), FsError> {
        self.finished += 1;
        Ok(())
    }
}

fuzz_target!(|input: Input| {
    let server = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1759);
    let stream_port = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1759);
    let other_port = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
    let stranger = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 1759);
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 1, 1, 1), 1760);
    let me = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 1760);
    let config = ClientConfig {
        timeout: Duration::from_millis(100),
        max_retries: input.max_retries % 8,
        max_silent_opens: input.max_silent_opens % 4,
        ..ClientConfig::new(Channel {
            group,
            server,
            listen: Duration::from_secs(u64::from(input.listen_s % 8)),
            delay: Duration::from_secs(u64::from(input.delay_s % 8)),
        })
    };
    let mut c = Client::new(Instant::ZERO, b"pxeboot.0", config, CheckSink::default());
    let mut now = Instant::ZERO;
    let mut master_ever = false;
    let mut small = None;
    let mut buf = vec![0u8; 1024];
    for op in input.ops.into_iter().take(4000) {
        let local = |m: bool| if m { group } else { me };
        match op {
            Op::Data { multicast, other_port: o, block, len, fill } => {
                let mut d = vec![fill; 4 + usize::from(len) % 600];
                d[..2].copy_from_slice(&[0, 3]);
                d[2..4].copy_from_slice(&block.to_be_bytes());
                let from = if o { other_port } else { stream_port };
                if !multicast && block == 1 && d.len() <= 516 {
                    master_ever = true;
                }
                c.handle(now, Datagram { local: local(multicast), remote: from, payload: &d });
            }
            Op::Error { multicast, code } => {
                let [a, b] = code.to_be_bytes();
                c.handle(now, Datagram { local: local(multicast), remote: server, payload: &[0, 5, a, b, b'x', 0] });
            }
            Op::Raw { stranger: s, multicast, raw } => {
                if !multicast && raw.len() >= 4 && raw[..4] == [0, 3, 0, 1] && raw.len() <= 516 && !s {
                    master_ever = true;
                }
                let from = if s { stranger } else { stream_port };
                c.handle(now, Datagram { local: local(multicast), remote: from, payload: &raw });
            }
            Op::Advance { ms } => now += Duration::from_millis(u64::from(ms) * 4),
            Op::Timeout => c.handle_timeout(now),
            Op::SmallBuffer { len } => small = Some(usize::from(len) % 32),
        }
        let finished_before = c.is_finished();
        let mut sent = 0;
        loop {
            let b = match small.take() {
                Some(n) => &mut buf[..n],
                None => &mut buf[..],
            };
            let t = match c.poll_transmit(now, b) {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(e) => {
                    assert!(e.needed > b.len() && e.needed <= Client::<CheckSink>::MAX_DATAGRAM);
                    continue;
                }
            };
            assert!(!finished_before, "sent after finishing");
            sent += 1;
            assert!(sent <= 2, "unbounded transmit");
            assert_eq!(t.remote.ip(), server.ip());
            assert!(t.local.is_none() && !t.broadcast && !t.after_sync);
            match Repr::parse_bytes(&buf[..t.len]).expect("well formed") {
                Repr::Rrq(r) => {
                    assert_eq!(t.remote, server);
                    assert!(r.options.is_empty(), "plain RRQ");
                    assert_eq!(r.filename, b"pxeboot.0");
                }
                Repr::Ack { .. } => assert!(master_ever, "ACK from a non-master"),
                other => panic!("client sent {other:?}"),
            }
        }
        let mut ev = 0;
        while c.poll_event().is_some() {
            ev += 1;
            assert!(ev <= 5, "unbounded events");
        }
        assert!(c.sink().finished <= 1);
        // Complete means finished, except for a master still ACKing the
        // stream's tail for the listeners.
        if c.sink().finished == 1 {
            assert!(c.is_complete());
        } else if c.is_complete() {
            assert!(c.is_master(), "complete but not finished");
        }
        assert_eq!(c.sink().written.len() as u32, c.blocks());
    }
});
