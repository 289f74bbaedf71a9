//! Engine-only TFTP throughput: the server engine (RFC 1350 read transfer,
//! RFC 2348 blksize, RFC 7440 windowsize) sends a file held in memory to
//! the client engine, which writes it into a memory sink; datagrams pass
//! between them by function call (no sockets, no clock). Reported as bytes
//! of file per second for blksize 1468 (an Ethernet frame) and 65464 (the
//! largest), in lock-step and with a window of 16.
//!
//! ```text
//! cargo bench --bench tftp
//! ```

use core::net::{Ipv4Addr, SocketAddrV4};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use preboot::Instant;
use preboot::engine::Datagram;
use preboot::fs::{FsError, MemFile, SliceSink, WriteAt};
use preboot::tftp::client::{Client, ClientConfig};
use preboot::tftp::server::{Server, ServerConfig, Slot};

const FILE_SIZE: usize = 16 << 20;

/// Uploads are not part of this benchmark.
struct NoUploads;

impl WriteAt for NoUploads {
    fn write_at(&mut self, _offset: u64, _data: &[u8]) -> Result<(), FsError> {
        Err(FsError::Io)
    }
}

/// One whole read transfer; returns the bytes the client received.
fn transfer(file: &[u8], out: &mut [u8], blksize: u16, windowsize: u16) -> u64 {
    let server_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 69);
    let client_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50_000);
    let tid = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40_000);
    let now = Instant::ZERO;
    let mut server: Server<MemFile<'_>, NoUploads, [Slot<MemFile<'_>, NoUploads>; 1]> =
        Server::new(ServerConfig::default(), [Slot::new()]);
    let config = ClientConfig {
        blksize: Some(blksize),
        windowsize: Some(windowsize),
        tsize: true,
        ..ClientConfig::default()
    };
    let mut client = Client::new(now, server_addr, b"boot.img", config, SliceSink::new(out));
    let mut to_client = vec![0u8; 4 + usize::from(blksize).max(512)];
    let mut to_server = [0u8; 1024];
    let Ok(Some(rrq)) = client.poll_transmit(now, &mut to_server) else {
        return 0;
    };
    let request = Datagram {
        local: server_addr,
        remote: client_addr,
        payload: &to_server[..rrq.len],
    };
    let Some(inc) = server.handle(now, request) else {
        return 0;
    };
    if server
        .accept_read(now, &inc, MemFile::new(file), tid)
        .is_err()
    {
        return 0;
    }
    // Bounded: at most one round per block, plus the option exchange.
    let rounds = file.len() / usize::from(blksize) + 8;
    for _ in 0..rounds {
        while let Ok(Some(t)) = server.poll_transmit(now, &mut to_client) {
            let dg = Datagram {
                local: client_addr,
                remote: tid,
                payload: &to_client[..t.len],
            };
            client.handle(now, dg);
        }
        server.read_ahead();
        while server.poll_event().is_some() {}
        let mut acked = false;
        while let Ok(Some(t)) = client.poll_transmit(now, &mut to_server) {
            let dg = Datagram {
                local: tid,
                remote: client_addr,
                payload: &to_server[..t.len],
            };
            server.handle(now, dg);
            acked = true;
        }
        if !acked {
            break;
        }
    }
    client.bytes()
}

fn engines(c: &mut Criterion) {
    let file: Vec<u8> = (0..FILE_SIZE).map(|i| (i * 7 + i / 4099) as u8).collect();
    let mut out = vec![0u8; FILE_SIZE];
    let mut group = c.benchmark_group("tftp_engines");
    group.throughput(Throughput::Bytes(FILE_SIZE as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for blksize in [1468u16, 65464] {
        for windowsize in [1u16, 16] {
            // Not timed: the transfer must be complete and byte-exact.
            out.fill(0);
            assert_eq!(
                transfer(&file, &mut out, blksize, windowsize),
                FILE_SIZE as u64
            );
            assert!(
                out == file,
                "blksize {blksize} windowsize {windowsize}: corrupt"
            );
            group.bench_with_input(
                BenchmarkId::new(format!("blksize_{blksize}"), format!("window_{windowsize}")),
                &(blksize, windowsize),
                |b, &(blksize, windowsize)| {
                    b.iter(|| transfer(black_box(&file), &mut out, blksize, windowsize))
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
