//! Operation sequences into the DHCP server engine (proxy and full mode):
//! datagrams on either port from any source, time jumps, lease restores.
//! Menus of any size (some over the 255 bytes of their PXE sub-option) and
//! any decline budget. Checks: no panic; `poll_transmit` never fails with
//! a buffer of 1500 bytes and never blocks (an unencodable answer is
//! dropped with an event, and only when the configuration's own
//! `Menu::check` says the menu does not fit); at most one answer per
//! datagram; every answer is a well-formed DHCP message per the wire view;
//! never more leases than the configured pools have addresses; an option
//! 43 naming the transaction server (sub-options 128/129, configured or
//! not) is one option of at most 255 bytes. The bounds
//! come from the configuration built here, not from the engine's
//! constants.
#![no_main]

use preboot::engine::Datagram;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::dhcp::config::{
    BootEntry, MenuItem, MenuPolicy, Pool, ServerConfig, Text, TransactionServer,
};
use preboot::dhcp::server::Event;
use preboot::dhcp::{BootArch, Server};
use preboot::wire::dhcp::{DhcpPacket, code};
use preboot::wire::pxe::{PxeOption, PxeOptions};

/// The DHCP socket.
const DHCP: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 67);
/// The boot server socket.
const BOOT: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 4011);

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

/// The shape of the configuration: mode, menu policy, menu items and their
/// label length, decline budget, transaction server named or not.
#[derive(Arbitrary, Debug)]
struct Shape {
    full: bool,
    transaction: bool,
    menu: u8,
    items: u8,
    label_len: u8,
    declined_percent: u8,
}

fn config(shape: &Shape) -> ServerConfig {
    let (full, menu) = (shape.full, shape.menu);
    let id = Ipv4Addr::new(10, 0, 0, 1);
    let mut c = if full { ServerConfig::full(id) } else { ServerConfig::proxy(id) };
    c.boot.set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
    c.boot.set(BootArch::UefiX64, BootEntry::tftp("x64.efi"));
    // Every kind of row of the architecture table: UEFI, U-Boot, an HTTP
    // architecture with its own URL, and the any-architecture URL.
    c.boot.set(BootArch::UefiArm32, BootEntry::tftp("arm.efi"));
    c.boot.set(BootArch::UefiRiscV64, BootEntry::tftp("riscv64.efi"));
    c.boot.set(BootArch::UbootArm64, BootEntry::tftp("arm64.scr"));
    c.boot.set(BootArch::HttpArm64, BootEntry::tftp("http://10.0.0.1/aa64.efi"));
    c.boot.set(BootArch::Http, BootEntry::tftp("http://10.0.0.1/any.efi"));
    c.boot.ipxe = BootEntry::tftp("boot.ipxe");
    c.menu.policy = match menu % 3 {
        0 => MenuPolicy::Never,
        1 => MenuPolicy::Always,
        _ => MenuPolicy::OnKeyPress { timeout_secs: menu },
    };
    if shape.items > 0 {
        c.menu.items.clear();
        let label = "m".repeat(usize::from(shape.label_len) % 65);
        for n in 0..shape.items % 9 {
            let _ = c.menu.items.push(MenuItem {
                server_type: 0x8000 + u16::from(n),
                description: Text::try_from(label.as_str()).unwrap_or_default(),
                file: None,
            });
        }
    }
    c.max_declined_percent = shape.declined_percent;
    if shape.transaction {
        c.transaction = Some(TransactionServer {
            address: SocketAddrV4::new(id, 4012),
            public_key: Some([0x77; 32]),
        });
    }
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

fuzz_target!(|input: (Shape, Vec<Op>)| {
    let (shape, ops) = input;
    let config = config(&shape);
    let menu_fits = config.menu.check().is_ok();
    let addresses: usize = config
        .pools
        .iter()
        .map(|p| p.size() as usize)
        .sum();
    let Ok(mut s) = Server::new(config) else { return };
    let seed = unhex(SEEDS[0]);
    let mut now = Instant::from_secs(1);
    let mut buf = [0u8; 1500];
    for op in ops.into_iter().take(64) {
        match op {
            Op::Handle { boot_port, from, port, data } => {
                let p = if boot_port { BOOT } else { DHCP };
                s.handle(now, Datagram { local: p, remote: SocketAddrV4::new(from.into(), port), payload: &data });
            }
            Op::Mutated { at, value, boot_port } => {
                let mut d = seed.clone();
                let i = usize::from(at) % d.len();
                d[i] = value;
                let p = if boot_port { BOOT } else { DHCP };
                s.handle(now, Datagram { local: p, remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 50), 68), payload: &d });
            }
            Op::Advance(secs) => now += Duration::from_secs(u64::from(secs)),
        }
        let mut n = 0;
        loop {
            match s.poll_transmit(now, &mut buf) {
                Ok(Some(t)) => {
                    assert!(t.len <= buf.len());
                    let Ok(p) = DhcpPacket::new_checked(&buf[..t.len]) else {
                        panic!("we emitted a bad message");
                    };
                    if let Some(o43) = p.option(code::VENDOR_SPECIFIC) {
                        let names = PxeOptions::new(o43)
                            .any(|o| matches!(o, PxeOption::TransactionServer(_)));
                        assert!(!names || o43.len() <= 255, "option 43 split with 128 in it");
                    }
                    n += 1;
                    assert!(n <= 1, "one answer per datagram at most");
                }
                Ok(None) => break,
                Err(e) => panic!("poll_transmit failed with a 1500-byte buffer: {e}"),
            }
        }
        while s.poll_lease_update().is_some() {}
        while let Some(e) = s.poll_event() {
            if let Event::AnswerDropped { .. } = e {
                assert!(!menu_fits, "an answer was dropped although the menu fits");
            }
        }
        assert!(s.leases().len() <= addresses, "never more leases than pool addresses");
    }
});
