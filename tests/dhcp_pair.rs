//! Pair simulation: the client engine against the server engines through an
//! in-memory link that drops datagrams (seeded), in simulated time — no
//! sockets, no sleeping. Full mode (one server gives address and file) and
//! proxy mode (another DHCP server gives the address, our proxy the file,
//! PXE 2.1 §2.2.2).

use preboot::engine::Datagram;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use preboot::Instant;
use preboot::dhcp::client::{BootInfo, ClientConfig, Event};
use preboot::dhcp::config::{
    BootEntry, MenuItem, MenuPolicy, Pool, ServerConfig, Text, TransactionServer,
};
use preboot::dhcp::{BootArch, Client, Mode, Server};

/// The DHCP socket (its bound address).
const DHCP_SOCK: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 67);
/// The boot server socket (its bound address).
const BOOT: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 4011);
/// The client socket (its bound address).
const CLIENT: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 68);

const PROXY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DHCP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn pool() -> Pool {
    Pool {
        subnet: Ipv4Addr::new(10, 0, 0, 0),
        prefix_len: 24,
        start: Ipv4Addr::new(10, 0, 0, 100),
        end: Ipv4Addr::new(10, 0, 0, 199),
        router: Some(DHCP),
        dns: Default::default(),
        lease_time: Duration::from_secs(3600),
    }
}

/// A small deterministic RNG (xorshift).
struct Rng(u64);
impl Rng {
    fn chance(&mut self, percent: u64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 100 < percent
    }
}

struct Node {
    server: Server,
    ip: Ipv4Addr,
}

struct Outcome {
    event: Option<Event>,
    dropped: usize,
    sent: usize,
}

/// Run one client against `nodes` until it finishes (bounded steps).
fn simulate(mut client: Client, nodes: &mut [Node], loss: u64, seed: u64) -> Outcome {
    let mut rng = Rng(seed | 1);
    let mut now = Instant::from_secs(0);
    let mut buf = [0u8; 1500];
    let mut sbuf = [0u8; 1500];
    let (mut dropped, mut sent) = (0, 0);
    for _ in 0..10_000 {
        while let Some(t) = client.poll_transmit(now, &mut buf).unwrap() {
            sent += 1;
            let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
            for n in nodes.iter_mut() {
                let port = match t.remote.port() {
                    67 if t.broadcast => DHCP_SOCK,
                    4011 if *t.remote.ip() == n.ip => BOOT,
                    _ => continue,
                };
                if rng.chance(loss) {
                    dropped += 1;
                    continue;
                }
                // Once bound, the client speaks from its address.
                let from = if port == BOOT {
                    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 68)
                } else {
                    from
                };
                n.server.handle(
                    now,
                    Datagram {
                        local: port,
                        remote: from,
                        payload: &buf[..t.len],
                    },
                );
            }
        }
        for n in nodes.iter_mut() {
            while let Some(t) = n.server.poll_transmit(now, &mut sbuf).unwrap() {
                if rng.chance(loss) {
                    dropped += 1;
                    continue;
                }
                client.handle(
                    now,
                    Datagram {
                        local: CLIENT,
                        remote: SocketAddrV4::new(n.ip, 67),
                        payload: &sbuf[..t.len],
                    },
                );
            }
            while n.server.poll_lease_update().is_some() {}
            while n.server.poll_event().is_some() {}
        }
        if let Some(e) = client.poll_event() {
            return Outcome {
                event: Some(e),
                dropped,
                sent,
            };
        }
        // No deadline: something to send right away.
        if let Some(t) = client.poll_timeout() {
            now = t.max(now);
            client.handle_timeout(now);
        }
    }
    Outcome {
        event: None,
        dropped,
        sent,
    }
}

fn patient(arch: u16, mac_last: u8) -> ClientConfig {
    let mut c = ClientConfig::new([0x52, 0x54, 0, 0, 0, mac_last], arch, [7; 16]);
    // More attempts than PXE's four, so a lossy link still converges; the
    // backoff stays exponential.
    c.dhcp_timeouts.clear();
    c.boot_timeouts.clear();
    for i in 0..8 {
        c.dhcp_timeouts
            .push(Duration::from_secs(4 << i.min(3)))
            .unwrap();
        c.boot_timeouts.push(Duration::from_secs(1 + i)).unwrap();
    }
    c
}

fn bound(o: &Outcome) -> &BootInfo {
    match &o.event {
        Some(Event::Bound(b)) => b,
        other => panic!("not bound: {other:?}"),
    }
}

fn full_server() -> Server {
    let mut c = ServerConfig::full(DHCP);
    c.boot.set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
    c.boot
        .set(BootArch::UefiX64, BootEntry::tftp("grubx64.efi"));
    c.pools.push(pool()).unwrap();
    Server::new(c).unwrap()
}

fn proxy_pair() -> Vec<Node> {
    // The site's DHCP server: addresses only, no boot files.
    let mut site = ServerConfig::full(DHCP);
    site.pools.push(pool()).unwrap();
    let mut proxy = ServerConfig::proxy(PROXY);
    proxy
        .boot
        .set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
    proxy
        .boot
        .set(BootArch::UefiX64, BootEntry::tftp("grubx64.efi"));
    proxy.menu.policy = MenuPolicy::OnKeyPress { timeout_secs: 3 };
    vec![
        Node {
            server: Server::new(site).unwrap(),
            ip: DHCP,
        },
        Node {
            server: Server::new(proxy).unwrap(),
            ip: PROXY,
        },
    ]
}

#[test]
fn full_mode_without_loss() {
    let mut nodes = [Node {
        server: full_server(),
        ip: DHCP,
    }];
    let c = Client::new(
        Instant::ZERO,
        ClientConfig::new([0x52, 0x54, 0, 0, 0, 1], 7, [1; 16]),
        42,
    );
    let o = simulate(c, &mut nodes, 0, 1);
    let b = bound(&o);
    assert_eq!(b.address, Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(b.boot_file.as_str(), "grubx64.efi");
    assert_eq!(b.tftp_server, DHCP);
    assert_eq!(b.router, Some(DHCP));
    assert_eq!(b.lease_time, Some(Duration::from_secs(3600)));
    assert_eq!(o.sent, 2, "DISCOVER, REQUEST");
}

#[test]
fn proxy_mode_without_loss() {
    let mut nodes = proxy_pair();
    let c = Client::new(
        Instant::ZERO,
        ClientConfig::new([0x52, 0x54, 0, 0, 0, 2], 0, [2; 16]),
        43,
    );
    let o = simulate(c, &mut nodes, 0, 1);
    let b = bound(&o);
    assert_eq!(b.address, Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(b.dhcp_server, DHCP);
    assert_eq!(b.boot_server, Some(PROXY));
    assert_eq!(b.boot_file.as_str(), "pxelinux.0");
    assert_eq!(b.tftp_server, PROXY);
    // The menu and prompt came from the proxy OFFER's option 43.
    assert_eq!(b.menu.len(), 1);
    assert_eq!(b.prompt.as_ref().map(|p| p.0), Some(3));
    assert_eq!(o.sent, 3, "DISCOVER, REQUEST, boot server REQUEST");
}

/// Menu policy "never": the proxy OFFER names no file (PXE 2.1 §2.2.1
/// step 4, no discovery control bit 3 of §2.4.5), so the client engine
/// must send the proxyDHCP REQUEST to 4011 and take the file from that
/// ACK, for BIOS and UEFI alike.
#[test]
fn proxy_mode_menu_never_gets_the_file_from_4011() {
    for (arch, file) in [(0, "pxelinux.0"), (7, "grubx64.efi")] {
        let mut nodes = proxy_pair();
        let mut proxy = ServerConfig::proxy(PROXY);
        proxy
            .boot
            .set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
        proxy
            .boot
            .set(BootArch::UefiX64, BootEntry::tftp("grubx64.efi"));
        proxy.menu.policy = MenuPolicy::Never;
        nodes[1].server = Server::new(proxy).unwrap();
        let c = Client::new(
            Instant::ZERO,
            ClientConfig::new([0x52, 0x54, 0, 0, 0, 3], arch, [3; 16]),
            44,
        );
        let o = simulate(c, &mut nodes, 0, 1);
        let b = bound(&o);
        assert_eq!(b.boot_server, Some(PROXY), "arch {arch}: file from 4011");
        assert_eq!(b.boot_file.as_str(), file);
        assert_eq!(b.tftp_server, PROXY);
        assert!(b.menu.is_empty());
        assert_eq!(o.sent, 3, "DISCOVER, REQUEST, proxyDHCP REQUEST to 4011");
    }
}

#[test]
fn both_modes_converge_over_a_lossy_link() {
    for seed in 1..=40u64 {
        for proxy in [false, true] {
            let mut nodes = if proxy {
                proxy_pair()
            } else {
                vec![Node {
                    server: full_server(),
                    ip: DHCP,
                }]
            };
            let arch = if seed % 2 == 0 { 0 } else { 7 };
            let c = Client::new(Instant::ZERO, patient(arch, seed as u8), seed as u32);
            let o = simulate(c, &mut nodes, 30, seed);
            let b = bound(&o);
            assert_eq!(
                b.boot_file.as_str(),
                if arch == 0 {
                    "pxelinux.0"
                } else {
                    "grubx64.efi"
                }
            );
            assert!(pool().range_contains(b.address));
            if seed == 1 {
                assert!(o.dropped > 0);
            }
        }
    }
}

#[test]
fn gives_up_cleanly_when_nobody_answers() {
    let c = Client::new(
        Instant::ZERO,
        ClientConfig::new([2, 0, 0, 0, 0, 9], 0, [0; 16]),
        7,
    );
    let o = simulate(c, &mut [], 0, 1);
    assert_eq!(
        o.event,
        Some(Event::Failed(preboot::dhcp::client::FailReason::NoOffer))
    );
    assert_eq!(o.sent, 4, "PXE 2.1: four DISCOVERs (4, 8, 16, 32 s)");
}

#[test]
fn client_without_boot_server_fails_with_no_boot_file() {
    // Only a plain DHCP server: an address but no file.
    let mut site = ServerConfig::full(DHCP);
    site.pools.push(pool()).unwrap();
    assert_eq!(site.mode, Mode::Full);
    let mut nodes = [Node {
        server: Server::new(site).unwrap(),
        ip: DHCP,
    }];
    let c = Client::new(
        Instant::ZERO,
        ClientConfig::new([2, 0, 0, 0, 0, 8], 0, [0; 16]),
        8,
    );
    let o = simulate(c, &mut nodes, 0, 1);
    assert_eq!(
        o.event,
        Some(Event::Failed(preboot::dhcp::client::FailReason::NoBootFile))
    );
}

/// PXE 2.1 §2.2.1 step 4 from a client that already has an address (an
/// operating system or a network boot program asking again for boot
/// information, [`Client::with_address`]): only the proxy answers it, the
/// site's address OFFER is ignored, no REQUEST for an address goes out,
/// and the boot file comes from the boot server on 4011 — with loss too.
#[test]
fn known_address_asks_only_for_boot_information() {
    for (loss, seed) in [(0, 1), (30, 7), (30, 8)] {
        let mut nodes = proxy_pair();
        let here = Ipv4Addr::new(10, 0, 0, 100);
        let c = Client::with_address(Instant::ZERO, patient(0, 9), 45, here);
        let o = simulate(c, &mut nodes, loss, seed);
        let b = bound(&o);
        assert_eq!(b.address, here, "loss {loss}");
        assert_eq!(b.dhcp_server, Ipv4Addr::UNSPECIFIED);
        assert_eq!(b.boot_server, Some(PROXY));
        assert_eq!(b.boot_file.as_str(), "pxelinux.0");
        assert_eq!(b.tftp_server, PROXY);
        if loss == 0 {
            assert_eq!(o.sent, 2, "DISCOVER, boot server REQUEST");
        }
    }
    // Nobody answers with boot information: the client gives up.
    let mut site = ServerConfig::full(DHCP);
    site.pools.push(pool()).unwrap();
    let mut nodes = [Node {
        server: Server::new(site).unwrap(),
        ip: DHCP,
    }];
    let c = Client::with_address(
        Instant::ZERO,
        ClientConfig::new([0x52, 0x54, 0, 0, 0, 10], 0, [9; 16]),
        46,
        Ipv4Addr::new(10, 0, 0, 101),
    );
    let o = simulate(c, &mut nodes, 0, 1);
    assert!(
        matches!(o.event, Some(Event::Failed(_))),
        "no boot information: {:?}",
        o.event
    );
}

// ---- the transaction server named by option 43 sub-options 128 and 129
// (docs/transaction-protocol.md, "How the preboot client finds the
// transaction server") ----

fn tx(ip: Ipv4Addr) -> TransactionServer {
    TransactionServer {
        address: SocketAddrV4::new(ip, 4012),
        public_key: Some([0x42; 32]),
    }
}

/// Full mode: `BootInfo::transaction` is what the server's OFFER and ACK
/// name, key included; without a transaction server it is `None`.
#[test]
fn full_mode_learns_the_transaction_server() {
    for (advertised, arch) in [(Some(tx(DHCP)), 0), (Some(tx(DHCP)), 7), (None, 0)] {
        let mut c = ServerConfig::full(DHCP);
        c.boot.set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
        c.boot
            .set(BootArch::UefiX64, BootEntry::tftp("grubx64.efi"));
        c.pools.push(pool()).unwrap();
        c.transaction = advertised;
        let mut nodes = [Node {
            server: Server::new(c).unwrap(),
            ip: DHCP,
        }];
        let client = Client::new(
            Instant::ZERO,
            ClientConfig::new([0x52, 0x54, 0, 0, 0, 0x21], arch, [1; 16]),
            0x21,
        );
        let o = simulate(client, &mut nodes, 0, 1);
        assert_eq!(bound(&o).transaction, advertised, "arch {arch}");
    }
}

/// Proxy mode: the proxy's answers name it (the site's DHCP server does
/// not), for BIOS and UEFI, with and without a menu.
#[test]
fn proxy_mode_learns_the_transaction_server() {
    for (arch, policy) in [
        (0, MenuPolicy::Never),
        (7, MenuPolicy::Never),
        (0, MenuPolicy::OnKeyPress { timeout_secs: 3 }),
    ] {
        let mut nodes = proxy_pair();
        let mut proxy = ServerConfig::proxy(PROXY);
        proxy
            .boot
            .set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
        proxy
            .boot
            .set(BootArch::UefiX64, BootEntry::tftp("grubx64.efi"));
        proxy.menu.policy = policy;
        proxy.transaction = Some(tx(PROXY));
        nodes[1].server = Server::new(proxy).unwrap();
        let c = Client::new(
            Instant::ZERO,
            ClientConfig::new([0x52, 0x54, 0, 0, 0, 0x22], arch, [2; 16]),
            0x22,
        );
        let o = simulate(c, &mut nodes, 0, 1);
        let b = bound(&o);
        assert_eq!(b.boot_server, Some(PROXY));
        assert_eq!(b.transaction, Some(tx(PROXY)), "arch {arch} {policy:?}");
    }
}

/// The answer that gave the boot file counts: a menu that fills the proxy
/// OFFER's option 43 leaves no room for 128/129 there, and the client takes
/// them from the 4011 ACK.
#[test]
fn the_4011_ack_names_it_when_the_proxy_offer_has_no_room() {
    let mut nodes = proxy_pair();
    let mut proxy = ServerConfig::proxy(PROXY);
    proxy
        .boot
        .set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
    proxy.menu.policy = MenuPolicy::OnKeyPress { timeout_secs: 3 };
    proxy.menu.items.clear();
    for n in 0..4u16 {
        proxy
            .menu
            .items
            .push(MenuItem {
                server_type: 0x8000 + n,
                description: Text::try_from("y".repeat(40).as_str()).unwrap(),
                file: None,
            })
            .unwrap();
    }
    proxy.transaction = Some(tx(PROXY));
    nodes[1].server = Server::new(proxy).unwrap();
    let c = Client::new(
        Instant::ZERO,
        ClientConfig::new([0x52, 0x54, 0, 0, 0, 0x23], 0, [3; 16]),
        0x23,
    );
    let o = simulate(c, &mut nodes, 0, 1);
    let b = bound(&o);
    assert_eq!(b.menu.len(), 4, "the menu came whole");
    assert_eq!(b.transaction, Some(tx(PROXY)));
}
