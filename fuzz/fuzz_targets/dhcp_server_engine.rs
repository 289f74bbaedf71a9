//! Operation sequences into the DHCP server engine (proxy and full mode):
//! datagrams on either port from any source, time jumps, lease restores.
//! Checks: no panic, bounded queues, every answer is a well-formed DHCP
//! message per the wire view.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::dhcp::config::{BootEntry, MenuPolicy, Pool, ServerConfig};
use preboot::dhcp::{Server, ServerPort};
use preboot::wire::dhcp::DhcpPacket;

#[derive(Arbitrary, Debug)]
enum Op {
    Handle {
        boot_port: bool,
        from: [u8; 4],
        port: u16,
        data: Vec<u8>,
    },
    /// A mutated real request: flip one byte of a seed.
    Mutated { at: u16, value: u8, boot_port: bool },
    Advance(u16),
}

const SEEDS: [&[u8]; 1] = [include_bytes!("../../tests/vectors/ovmf-uefi-discover.hex")];

fn unhex(h: &[u8]) -> Vec<u8> {
    let d: Vec<u8> = h.iter().copied().filter(u8::is_ascii_hexdigit).collect();
    d.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0))
        .collect()
}

fn config(full: bool, menu: u8) -> ServerConfig {
    let id = Ipv4Addr::new(10, 0, 0, 1);
    let mut c = if full { ServerConfig::full(id) } else { ServerConfig::proxy(id) };
    c.boot.bios = BootEntry::tftp("pxelinux.0");
    c.boot.uefi_x64 = BootEntry::tftp("x64.efi");
    c.boot.ipxe = BootEntry::tftp("boot.ipxe");
    c.menu.policy = match menu % 3 {
        0 => MenuPolicy::Never,
        1 => MenuPolicy::Always,
        _ => MenuPolicy::OnKeyPress { timeout_secs: menu },
    };
    let _ = c.pools.push(Pool {
        subnet: Ipv4Addr::new(10, 0, 0, 0),
        prefix_len: 24,
        start: Ipv4Addr::new(10, 0, 0, 10),
        end: Ipv4Addr::new(10, 0, 0, 20),
        router: Some(id),
        dns: Default::default(),
        lease_time: Duration::from_secs(60),
    });
    c
}

fuzz_target!(|input: (bool, u8, Vec<Op>)| {
    let (full, menu, ops) = input;
    let Ok(mut s) = Server::new(config(full, menu)) else { return };
    let seed = unhex(SEEDS[0]);
    let mut now = Instant::from_secs(1);
    let mut buf = [0u8; 1500];
    for op in ops.into_iter().take(64) {
        match op {
            Op::Handle { boot_port, from, port, data } => {
                let p = if boot_port { ServerPort::BootServer } else { ServerPort::Dhcp };
                s.handle(now, p, SocketAddrV4::new(from.into(), port), &data);
            }
            Op::Mutated { at, value, boot_port } => {
                let mut d = seed.clone();
                let i = usize::from(at) % d.len();
                d[i] = value;
                let p = if boot_port { ServerPort::BootServer } else { ServerPort::Dhcp };
                s.handle(now, p, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 50), 68), &d);
            }
            Op::Advance(secs) => now += Duration::from_secs(u64::from(secs)),
        }
        let mut n = 0;
        while let Ok(Some(t)) = s.poll_transmit(now, &mut buf) {
            assert!(t.len <= buf.len());
            assert!(DhcpPacket::new_checked(&buf[..t.len]).is_ok(), "we emitted a bad message");
            n += 1;
            assert!(n <= 4, "answer queue is bounded");
        }
        while s.poll_lease_update().is_some() {}
        while s.poll_event().is_some() {}
        assert!(s.leases().len() <= 11, "never more leases than pool addresses");
    }
});
