//! Operation sequences into the PXE client engine: arbitrary datagrams,
//! mutated server answers (from a real server engine answering the client),
//! and timeouts. Checks: no panic, the client always ends (bounded
//! retransmissions), every datagram it sends is well formed.
#![no_main]

use preboot::engine::Datagram;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::dhcp::client::ClientConfig;
use preboot::dhcp::config::{BootEntry, Pool, ServerConfig};
use preboot::dhcp::{BootArch, Client, Server};
use preboot::wire::dhcp::DhcpPacket;

/// The DHCP socket.
const DHCP: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 67);
/// The boot server socket.
const BOOT: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 4011);
/// The client socket.
const CLIENT: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 68);

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes to the client.
    Raw(Vec<u8>),
    /// Deliver the client's pending datagram to the server; hand the
    /// server's answer back, with one byte changed.
    Exchange { at: u16, value: u8, mutate: bool },
    /// Let time pass to the next deadline.
    Timeout,
}

fuzz_target!(|input: (u16, u32, Vec<Op>)| {
    let (arch, xid, ops) = input;
    let id = Ipv4Addr::new(10, 0, 0, 1);
    let mut sc = ServerConfig::full(id);
    sc.boot.set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
    sc.boot.set(BootArch::UefiX64, BootEntry::tftp("x64.efi"));
    let _ = sc.pools.push(Pool {
        subnet: Ipv4Addr::new(10, 0, 0, 0),
        prefix_len: 24,
        start: Ipv4Addr::new(10, 0, 0, 10),
        end: Ipv4Addr::new(10, 0, 0, 20),
        router: None,
        dns: Default::default(),
        lease_time: Duration::from_secs(60),
    });
    sc.rate_limit.per_second = 0;
    let Ok(mut server) = Server::new(sc) else { return };
    let mut now = Instant::ZERO;
    let mut c = Client::new(now, ClientConfig::new([2, 0, 0, 0, 0, 1], arch, [3; 16]), xid);
    let mut buf = [0u8; 1500];
    let mut sbuf = [0u8; 1500];
    let from = SocketAddrV4::new(id, 67);
    let mut last: Option<(u16, Vec<u8>)> = None;
    for op in ops.into_iter().take(64) {
        if let Ok(Some(t)) = c.poll_transmit(now, &mut buf) {
            assert!(DhcpPacket::new_checked(&buf[..t.len]).is_ok());
            last = Some((t.remote.port(), buf[..t.len].to_vec()));
        }
        match op {
            Op::Raw(d) => c.handle(now, Datagram { local: CLIENT, remote: from, payload: &d }),
            Op::Exchange { at, value, mutate } => {
                if let Some((to, d)) = last.take() {
                    let port = if to == 4011 {
                        BOOT
                    } else {
                        DHCP
                    };
                    server.handle(now, Datagram { local: port, remote: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68), payload: &d });
                    while let Ok(Some(t)) = server.poll_transmit(now, &mut sbuf) {
                        let mut a = sbuf[..t.len].to_vec();
                        if mutate && !a.is_empty() {
                            let i = usize::from(at) % a.len();
                            a[i] = value;
                        }
                        c.handle(now, Datagram { local: CLIENT, remote: from, payload: &a });
                    }
                    while server.poll_lease_update().is_some() {}
                    while server.poll_event().is_some() {}
                }
            }
            Op::Timeout => {
                if let Some(t) = c.poll_timeout() {
                    now = t.max(now);
                    c.handle_timeout(now);
                }
            }
        }
        let _ = c.poll_event();
    }
    // Whatever happened, the client ends within its retry budget.
    for _ in 0..64 {
        if c.is_done() {
            break;
        }
        let _ = c.poll_transmit(now, &mut buf);
        if let Some(t) = c.poll_timeout() {
            now = t.max(now) + Duration::from_millis(1);
            c.handle_timeout(now);
        }
    }
    assert!(c.is_done(), "client must finish after its retries");
});
