//! The server engine against the real client requests in `tests/vectors/`
//! (iPXE BIOS and OVMF UEFI, see `PROVENANCE.md`), with the dnsmasq answers
//! those clients booted from as the reference. Answers are decoded with
//! `dhcproto`, an independent parser.

use preboot::engine::{Datagram, Transmit};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{self, Decodable, Decoder, DhcpOption, OptionCode};
use preboot::Instant;
use preboot::dhcp::config::{
    BootEntry, MenuItem, MenuPolicy, MtftpParams, Pool, Reservation, ReservationKey, ServerConfig,
    Text, TransactionServer,
};
use preboot::dhcp::server::{Event, IgnoreReason};
use preboot::dhcp::store::RecordKind;
use preboot::dhcp::{BootArch, Server};
use preboot::wire::dhcp::MessageType;

mod dhcp_support;
use dhcp_support::vector;

/// The DHCP socket (its bound address).
const DHCP: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 67);
/// The boot server socket (its bound address).
const BOOT: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 4011);

fn decode(b: &[u8]) -> v4::Message {
    v4::Message::decode(&mut Decoder::new(b)).expect("dhcproto decodes our answer")
}

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const T0: Instant = Instant::from_secs(1_000);

fn proxy_config() -> ServerConfig {
    let mut c = ServerConfig::proxy(SERVER);
    c.boot.set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
    c.boot
        .set(BootArch::UefiX64, BootEntry::tftp("grubnetx64.efi"));
    c
}

fn full_config() -> ServerConfig {
    let mut c = proxy_config();
    c.mode = preboot::dhcp::Mode::Full;
    c.pools
        .push(Pool {
            subnet: Ipv4Addr::new(192, 168, 77, 0),
            prefix_len: 24,
            start: Ipv4Addr::new(192, 168, 77, 129),
            end: Ipv4Addr::new(192, 168, 77, 200),
            router: Some(SERVER),
            dns: Default::default(),
            lease_time: Duration::from_secs(3600),
        })
        .unwrap();
    c
}

/// Feed one datagram, return every answer.
fn answer(
    s: &mut Server,
    port: SocketAddrV4,
    from: SocketAddrV4,
    req: &[u8],
) -> Vec<(Transmit, Vec<u8>)> {
    s.handle(
        T0,
        Datagram {
            local: port,
            remote: from,
            payload: req,
        },
    );
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    while let Some(t) = s.poll_transmit(T0, &mut buf).unwrap() {
        out.push((t, buf[..t.len].to_vec()));
    }
    out
}

fn one(
    s: &mut Server,
    port: SocketAddrV4,
    from: SocketAddrV4,
    req: &[u8],
) -> (Transmit, v4::Message) {
    let mut a = answer(s, port, from, req);
    assert_eq!(a.len(), 1, "exactly one answer");
    let (t, b) = a.remove(0);
    (t, decode(&b))
}

fn events(s: &mut Server) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn opt(m: &v4::Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

fn opt43(m: &v4::Message) -> Option<Vec<u8>> {
    match opt(m, OptionCode::VendorExtensions)? {
        DhcpOption::VendorExtensions(v) => Some(v.clone()),
        other => panic!("option 43 decoded as {other:?}"),
    }
}

/// PXE sub-options (code, data) of an option 43 payload.
fn subs(v: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() && v[i] != 255 {
        let (c, l) = (v[i], v[i + 1] as usize);
        out.push((c, v[i + 2..i + 2 + l].to_vec()));
        i += 2 + l;
    }
    out
}

/// The `file` field without its NUL padding.
fn fname(m: &v4::Message) -> Vec<u8> {
    let f = m.fname().unwrap_or_default();
    f.iter().take_while(|&&b| b != 0).copied().collect()
}

fn from68() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)
}

#[test]
fn proxy_offer_to_ipxe_bios() {
    // PXE 2.1 §2.2.2: proxy OFFER, yiaddr 0, 54, 60 "PXEClient", 97 echoed.
    let req = vector("ipxe-bios-discover");
    let mut s = Server::new(proxy_config()).unwrap();
    let (t, m) = one(&mut s, DHCP, from68(), &req);
    // RFC 2131 §4.1: no address yet → broadcast to 68.
    assert_eq!(t.remote, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    assert!(t.broadcast);
    assert_eq!(t.local, Some(DHCP));
    let q = decode(&req);
    assert_eq!(m.opcode(), v4::Opcode::BootReply);
    assert_eq!(m.xid(), q.xid());
    assert_eq!(m.chaddr(), q.chaddr());
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.siaddr(), SERVER);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Offer));
    // Same 53/54/60/97 as dnsmasq's proxy offer that iPXE booted from.
    let dnsmasq = decode(&vector("dnsmasq-proxy-offer-bios"));
    for c in [
        OptionCode::MessageType,
        OptionCode::ServerIdentifier,
        OptionCode::ClassIdentifier,
        OptionCode::ClientMachineIdentifier,
    ] {
        assert_eq!(opt(&m, c), opt(&dnsmasq, c), "{c:?}");
    }
    // No menu: no boot file, no option 67 and no option 43 (so no
    // discovery control bit 3, PXE 2.1 §2.4.5) — like dnsmasq's proxy
    // offer, the client must send the proxyDHCP REQUEST to 4011 for its
    // file (PXE 2.1 §2.2.1 steps 4–6).
    assert_eq!(opt43(&m), None);
    assert_eq!(fname(&m), b"");
    assert_eq!(fname(&dnsmasq), b"");
    assert_eq!(opt(&m, OptionCode::BootfileName), None);
    assert!(matches!(
        events(&mut s)[..],
        [
            Event::Received {
                arch: Some(BootArch::Bios),
                pxe: true,
                message: MessageType::Discover,
                ..
            },
            Event::ProxyOffered {
                arch: BootArch::Bios,
                ..
            }
        ]
    ));
}

#[test]
fn proxy_offer_to_ovmf_uefi() {
    let req = vector("ovmf-uefi-discover");
    let mut s = Server::new(proxy_config()).unwrap();
    let (t, m) = one(&mut s, DHCP, from68(), &req);
    assert!(t.broadcast);
    let q = decode(&req);
    assert_eq!(m.flags(), q.flags(), "broadcast flag kept (RFC 2131 §4.1)");
    assert_eq!(m.siaddr(), SERVER);
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    // Exactly the options of dnsmasq's UEFI proxy offer, with equal values:
    // 53, 54, 60, 97 and no option 43 (EDK2 then asks on 4011).
    let dnsmasq = decode(&vector("dnsmasq-proxy-offer-uefi"));
    let codes = |m: &v4::Message| {
        let mut c: Vec<u8> = m.opts().iter().map(|(c, _)| u8::from(*c)).collect();
        c.sort();
        c
    };
    assert_eq!(codes(&m), codes(&dnsmasq));
    for (c, o) in dnsmasq.opts().iter() {
        assert_eq!(opt(&m, *c), Some(o), "{c:?}");
    }
    assert_eq!(m.siaddr(), dnsmasq.siaddr());
}

#[test]
fn ipxe_request_on_4011_gets_file_and_boot_item() {
    // PXE 2.1 §2.2.3: boot server REQUEST with sub-option 71 (type 0x8000,
    // layer 0) from port 68 → ACK to that source port, 71 echoed.
    let req = vector("ipxe-bios-request-4011");
    let mut s = Server::new(proxy_config()).unwrap();
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68);
    let (t, m) = one(&mut s, BOOT, from, &req);
    assert_eq!(t.remote, from);
    assert!(!t.broadcast);
    assert_eq!(t.local, Some(BOOT));
    let dnsmasq = decode(&vector("dnsmasq-proxy-ack-4011-bios"));
    assert_eq!(m.xid(), dnsmasq.xid());
    assert_eq!(fname(&m), fname(&dnsmasq));
    assert_eq!(m.siaddr(), dnsmasq.siaddr());
    for c in [
        OptionCode::MessageType,
        OptionCode::ServerIdentifier,
        OptionCode::ClassIdentifier,
        OptionCode::ClientMachineIdentifier,
        OptionCode::VendorExtensions,
    ] {
        assert_eq!(opt(&m, c), opt(&dnsmasq, c), "{c:?}");
    }
    assert_eq!(opt43(&m).unwrap(), [71, 4, 0x80, 0, 0, 0, 255]);
}

/// The engine tells the boot server from DHCP by the port the datagram
/// arrived on (`Datagram::local`) against `ServerConfig::boot_port`: a
/// driver that binds the boot server elsewhere says so, and the answer
/// leaves from the socket the request came in on.
#[test]
fn the_boot_server_port_is_the_configured_one() {
    let req = vector("ipxe-bios-request-4011");
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68);
    let moved = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 1), 14011);
    let mut c = proxy_config();
    c.boot_port = 14011;
    let mut s = Server::new(c).unwrap();
    // On 4011, now an ordinary DHCP port: a proxy does not answer REQUESTs.
    assert!(answer(&mut s, BOOT, from, &req).is_empty());
    let (t, m) = one(&mut s, moved, from, &req);
    assert_eq!(t.local, Some(moved));
    assert_eq!(t.remote, from);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Ack));
    // boot_port 0: no boot server socket, every port is DHCP.
    let mut c = proxy_config();
    c.boot_port = 0;
    let mut s = Server::new(c).unwrap();
    assert!(answer(&mut s, BOOT, from, &req).is_empty());
}

#[test]
fn ovmf_request_on_4011_goes_back_to_port_4011() {
    let req = vector("ovmf-uefi-request-4011");
    let mut s = Server::new(proxy_config()).unwrap();
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 145), 4011);
    let (t, m) = one(&mut s, BOOT, from, &req);
    assert_eq!(t.remote, from);
    let dnsmasq = decode(&vector("dnsmasq-proxy-ack-4011-uefi"));
    assert_eq!(m.xid(), dnsmasq.xid());
    assert_eq!(m.ciaddr(), dnsmasq.ciaddr());
    assert_eq!(fname(&m), fname(&dnsmasq));
    assert_eq!(m.siaddr(), dnsmasq.siaddr());
    for (c, o) in dnsmasq.opts().iter() {
        assert_eq!(opt(&m, *c), Some(o), "{c:?}");
    }
    assert!(opt43(&m).is_none());
}

fn patch(b: &mut [u8], from: &[u8], to: &[u8]) {
    let i = b
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in vector");
    b[i..i + to.len()].copy_from_slice(to);
}

#[test]
fn unknown_boot_item_gets_silence() {
    let mut req = vector("ipxe-bios-request-4011");
    patch(
        &mut req,
        &[43, 7, 71, 4, 0x80, 0x00],
        &[43, 7, 71, 4, 0x81, 0x23],
    );
    let mut s = Server::new(proxy_config()).unwrap();
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68);
    assert!(answer(&mut s, BOOT, from, &req).is_empty());
    assert!(events(&mut s).contains(&Event::Ignored {
        chaddr: preboot::dhcp::HwAddr::new(&[0x52, 0x54, 0, 0xe2, 0xe0, 0x01]),
        reason: IgnoreReason::UnknownBootItem
    }));
    // Layer 1 of a known item: also unknown.
    let mut req = vector("ipxe-bios-request-4011");
    patch(
        &mut req,
        &[71, 4, 0x80, 0x00, 0, 0],
        &[71, 4, 0x80, 0x00, 0, 1],
    );
    assert!(answer(&mut s, BOOT, from, &req).is_empty());
}

#[test]
fn arch_without_boot_file_gets_no_offer() {
    let mut c = proxy_config();
    c.boot.set(BootArch::UefiX64, None);
    let mut s = Server::new(c).unwrap();
    assert!(answer(&mut s, DHCP, from68(), &vector("ovmf-uefi-discover")).is_empty());
    assert!(matches!(
        events(&mut s)[..],
        [
            Event::Received { .. },
            Event::NoBootFile {
                arch: Some(BootArch::UefiX64),
                ..
            }
        ]
    ));
    // …and no ACK on 4011 either.
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 145), 4011);
    assert!(answer(&mut s, BOOT, from, &vector("ovmf-uefi-request-4011")).is_empty());
}

#[test]
fn ipxe_gets_its_own_file_to_break_the_loop() {
    let mut c = proxy_config();
    c.boot.ipxe = BootEntry::tftp("http://192.168.77.1/boot.ipxe");
    let mut s = Server::new(c).unwrap();
    // iPXE (option 77 "iPXE", option 175).
    let (_, m) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    // The proxy OFFER names no file (PXE 2.1 §2.2.1): the 4011 ACK does.
    assert_eq!(fname(&m), b"");
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68);
    let (_, m) = one(&mut s, BOOT, from, &vector("ipxe-bios-request-4011"));
    assert_eq!(fname(&m), b"http://192.168.77.1/boot.ipxe");
    // OVMF's firmware PXE is not iPXE.
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 145), 4011);
    let (_, m) = one(&mut s, BOOT, from, &vector("ovmf-uefi-request-4011"));
    assert_eq!(fname(&m), b"grubnetx64.efi");
}

#[test]
fn mtftp_suboptions_never_reach_uefi() {
    let mut c = proxy_config();
    let mtftp = Some(MtftpParams {
        ip: Ipv4Addr::new(239, 239, 239, 2),
        client_port: 1760,
        server_port: 1759,
        timeout_secs: 2,
        delay_secs: 4,
    });
    c.boot.get_mut(BootArch::Bios).unwrap().mtftp = mtftp;
    c.boot.get_mut(BootArch::UefiX64).unwrap().mtftp = mtftp;
    c.menu.policy = MenuPolicy::Always;
    let mut s = Server::new(c).unwrap();
    let (_, m) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    let codes: Vec<u8> = subs(&opt43(&m).unwrap()).iter().map(|s| s.0).collect();
    assert_eq!(codes, [1, 2, 3, 4, 5, 6, 8, 9, 10]);
    // PXE 2.1 / Intel reference: the MTFTP ports are little-endian.
    assert_eq!(subs(&opt43(&m).unwrap())[1].1, 1760u16.to_le_bytes());
    let (_, m) = one(&mut s, DHCP, from68(), &vector("ovmf-uefi-discover"));
    let codes: Vec<u8> = subs(&opt43(&m).unwrap()).iter().map(|s| s.0).collect();
    assert_eq!(codes, [6, 8, 9, 10], "EDK2 drops offers with 1-5");
}

/// PXE 2.1 §2.4.5: a BIOS ROM takes the MTFTP parameters of its boot
/// file from the boot server's ACK (4011); UEFI's ACK has none (notes
/// §2.2: EDK2 discards answers with tags 1-5).
#[test]
fn boot_ack_carries_mtftp_for_bios_only() {
    let mut c = proxy_config();
    let mtftp = Some(MtftpParams {
        ip: Ipv4Addr::new(239, 239, 239, 2),
        client_port: 1760,
        server_port: 1759,
        timeout_secs: 2,
        delay_secs: 4,
    });
    c.boot.get_mut(BootArch::Bios).unwrap().mtftp = mtftp;
    c.boot.get_mut(BootArch::UefiX64).unwrap().mtftp = mtftp;
    let mut s = Server::new(c).unwrap();
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68);
    let (_, m) = one(&mut s, BOOT, from, &vector("ipxe-bios-request-4011"));
    let sub = subs(&opt43(&m).expect("option 43 in the BIOS ACK"));
    let get = |c: u8| sub.iter().find(|s| s.0 == c).map(|s| s.1.clone());
    assert_eq!(get(1), Some(vec![239, 239, 239, 2]));
    assert_eq!(get(2), Some(1760u16.to_le_bytes().to_vec()));
    assert_eq!(get(3), Some(1759u16.to_le_bytes().to_vec()));
    assert_eq!((get(4), get(5)), (Some(vec![2]), Some(vec![4])));
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 145), 4011);
    let (_, m) = one(&mut s, BOOT, from, &vector("ovmf-uefi-request-4011"));
    let codes: Vec<u8> = opt43(&m)
        .map(|o| subs(&o).iter().map(|s| s.0).collect())
        .unwrap_or_default();
    assert!(!codes.iter().any(|c| (1..=5).contains(c)), "{codes:?}");
}

#[test]
fn menu_policy_builds_suboptions_like_dnsmasq() {
    // dnsmasq's BIOS offer: 6 = 3, 8 = one 0x8000 server at 192.168.77.1,
    // 9 = 0x8000 "e2e BIOS boot", 10 = timeout 0 "PXE".
    let dnsmasq = decode(&vector("dnsmasq-proxy-offer-bios"));
    let theirs = subs(&opt43(&dnsmasq).unwrap());
    for (policy, timeout) in [
        (MenuPolicy::Always, 255u8),
        (MenuPolicy::OnKeyPress { timeout_secs: 5 }, 5),
    ] {
        let mut c = proxy_config();
        c.menu.policy = policy;
        c.menu.prompt = Text::try_from("PXE").unwrap();
        c.menu.items.clear();
        c.menu
            .items
            .push(MenuItem {
                server_type: 0x8000,
                description: Text::try_from("e2e BIOS boot").unwrap(),
                file: None,
            })
            .unwrap();
        let mut s = Server::new(c).unwrap();
        let (_, m) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
        let ours = subs(&opt43(&m).unwrap());
        let get = |v: &Vec<(u8, Vec<u8>)>, c: u8| v.iter().find(|s| s.0 == c).cloned();
        for code in [6, 8, 9] {
            assert_eq!(get(&ours, code), get(&theirs, code), "sub-option {code}");
        }
        assert_eq!(get(&ours, 10).unwrap().1, [&[timeout][..], b"PXE"].concat());
        // With a menu the client discovers: no file in the offer.
        assert!(fname(&m).is_empty());
    }
}

#[test]
fn proxy_ignores_requests_on_67_and_non_pxe_clients() {
    let mut s = Server::new(proxy_config()).unwrap();
    assert!(answer(&mut s, DHCP, from68(), &vector("ipxe-bios-request")).is_empty());
    let mut plain = vector("ipxe-bios-discover");
    patch(&mut plain, b"PXEClient", b"XYZClient");
    assert!(answer(&mut s, DHCP, from68(), &plain).is_empty());
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        Event::Ignored {
            reason: IgnoreReason::NotPxe,
            ..
        }
    )));
}

#[test]
fn garbage_is_ignored() {
    let mut s = Server::new(proxy_config()).unwrap();
    for bad in [&[][..], &[1, 2, 3], &vector("ipxe-bios-discover")[..240]] {
        assert!(answer(&mut s, DHCP, from68(), bad).is_empty());
    }
    // A BOOTREPLY (someone else's offer) is not a request.
    assert!(answer(&mut s, DHCP, from68(), &vector("udhcpd-offer")).is_empty());
}

#[test]
fn flood_from_one_mac_does_not_starve_others() {
    let mut s = Server::new(proxy_config()).unwrap();
    let ipxe = vector("ipxe-bios-discover");
    let ovmf = vector("ovmf-uefi-discover");
    let n = (0..500)
        .filter(|_| !answer(&mut s, DHCP, from68(), &ipxe).is_empty())
        .count();
    assert_eq!(n, 20, "burst of 20, then limited");
    assert_eq!(answer(&mut s, DHCP, from68(), &ovmf).len(), 1);
}

#[test]
fn small_buffer_names_the_size_and_keeps_the_answer() {
    let mut s = Server::new(proxy_config()).unwrap();
    s.handle(
        T0,
        Datagram {
            local: DHCP,
            remote: from68(),
            payload: &vector("ovmf-uefi-discover"),
        },
    );
    let mut small = [0xAAu8; 100];
    match s.poll_transmit(T0, &mut small) {
        Err(preboot::engine::BufferTooSmall { needed }) => assert_eq!(needed, 300),
        other => panic!("{other:?}"),
    }
    assert!(small.iter().all(|&b| b == 0xAA));
    let mut buf = [0u8; 600];
    assert_eq!(s.poll_transmit(T0, &mut buf).unwrap().unwrap().len, 300);
}

// ---- full mode ----

#[test]
fn full_mode_dora_with_ipxe_matches_dnsmasq() {
    let mut s = Server::new(full_config()).unwrap();
    let (t, offer) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    assert!(t.broadcast);
    assert!(!t.after_sync);
    let dnsmasq = decode(&vector("dnsmasq-full-offer"));
    assert_eq!(offer.yiaddr(), dnsmasq.yiaddr());
    assert_eq!(offer.siaddr(), dnsmasq.siaddr());
    assert_eq!(fname(&offer), b"pxelinux.0");
    for c in [
        OptionCode::MessageType,
        OptionCode::ServerIdentifier,
        OptionCode::AddressLeaseTime,
        OptionCode::SubnetMask,
        OptionCode::BroadcastAddr,
        OptionCode::Router,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ] {
        assert_eq!(opt(&offer, c), opt(&dnsmasq, c), "{c:?}");
    }
    // The iPXE REQUEST names 192.168.77.1 and 192.168.77.129.
    let (t, ack) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-request"));
    assert!(
        t.after_sync,
        "an ACK that grants a lease waits for the store"
    );
    let dnsmasq = decode(&vector("dnsmasq-full-ack"));
    assert_eq!(ack.yiaddr(), dnsmasq.yiaddr());
    assert_eq!(ack.opts().msg_type(), Some(v4::MessageType::Ack));
    let rec = s.poll_lease_update().unwrap();
    assert_eq!(rec.kind, RecordKind::Granted);
    assert_eq!(rec.addr, Ipv4Addr::new(192, 168, 77, 129));
    assert_eq!(rec.expires, T0 + Duration::from_secs(3600));
    assert!(s.poll_lease_update().is_none());
}

#[test]
fn full_mode_request_for_wrong_address_gets_nak() {
    let mut s = Server::new(full_config()).unwrap();
    let mut req = vector("ovmf-uefi-request");
    // Requested 192.168.77.135 with no offer: free and in range → ACK.
    let (_, m) = one(&mut s, DHCP, from68(), &req);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Ack));
    // Another subnet → NAK, broadcast (RFC 2131 §4.3.2).
    patch(&mut req, &[50, 4, 192, 168, 77, 135], &[50, 4, 10, 9, 9, 9]);
    let (t, m) = one(&mut s, DHCP, from68(), &req);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Nak));
    assert!(t.broadcast);
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
}

fn build(f: impl FnOnce(&mut v4::Message)) -> Vec<u8> {
    use dhcproto::Encodable;
    let mut m = v4::Message::default();
    m.set_opcode(v4::Opcode::BootRequest)
        .set_xid(0x1234_5678)
        .set_chaddr(&[0x02, 0, 0, 0, 0, 0x42]);
    f(&mut m);
    m.to_vec().unwrap()
}

#[test]
fn full_mode_relay_reservation_release_decline_inform() {
    let mut c = full_config();
    c.pools
        .push(Pool {
            subnet: Ipv4Addr::new(10, 1, 0, 0),
            prefix_len: 16,
            start: Ipv4Addr::new(10, 1, 0, 10),
            end: Ipv4Addr::new(10, 1, 0, 20),
            router: Some(Ipv4Addr::new(10, 1, 0, 1)),
            dns: Default::default(),
            lease_time: Duration::from_secs(600),
        })
        .unwrap();
    c.reservations
        .push(Reservation {
            key: ReservationKey::Mac([0x02, 0, 0, 0, 0, 0x43]),
            address: Ipv4Addr::new(10, 1, 0, 15),
        })
        .unwrap();
    let mut s = Server::new(c).unwrap();
    let relay = Ipv4Addr::new(10, 1, 0, 1);
    let relayed = |mt, chaddr: [u8; 6]| {
        build(|m| {
            m.set_giaddr(relay).set_chaddr(&chaddr);
            m.opts_mut().insert(DhcpOption::MessageType(mt));
            let mut info = v4::relay::RelayAgentInformation::default();
            info.insert(v4::relay::RelayInfo::AgentCircuitId(b"port7".to_vec()));
            m.opts_mut().insert(DhcpOption::RelayAgentInformation(info));
        })
    };
    // Relayed DISCOVER: pool by giaddr, reply to the relay on 67, 82 echoed
    // (RFC 3046 §2.2).
    let from_relay = SocketAddrV4::new(relay, 67);
    let (t, m) = one(
        &mut s,
        DHCP,
        from_relay,
        &relayed(v4::MessageType::Discover, [2, 0, 0, 0, 0, 0x42]),
    );
    assert_eq!(t.remote, SocketAddrV4::new(relay, 67));
    assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 1, 0, 10));
    let sent = decode(&relayed(v4::MessageType::Discover, [2, 0, 0, 0, 0, 0x42]));
    assert_eq!(
        opt(&m, OptionCode::RelayAgentInformation),
        opt(&sent, OptionCode::RelayAgentInformation)
    );
    // The reserved client gets its address; nobody else does.
    let (_, m) = one(
        &mut s,
        DHCP,
        from_relay,
        &relayed(v4::MessageType::Discover, [2, 0, 0, 0, 0, 0x43]),
    );
    assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 1, 0, 15));
    for n in 0..10u8 {
        s.handle(
            T0,
            Datagram {
                local: DHCP,
                remote: from_relay,
                payload: &relayed(v4::MessageType::Discover, [2, 0, 0, 1, 0, n]),
            },
        );
    }
    let mut buf = [0u8; 1500];
    let mut given = Vec::new();
    while let Some(t) = s.poll_transmit(T0, &mut buf).unwrap() {
        given.push(decode(&buf[..t.len]).yiaddr());
    }
    assert!(!given.contains(&Ipv4Addr::new(10, 1, 0, 15)));
    // REQUEST (SELECTING) for the offer, then RELEASE, then DECLINE.
    let req = build(|m| {
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Request));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 168, 77, 129,
            )));
    });
    let (t, m) = one(&mut s, DHCP, from68(), &req);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Ack));
    assert!(t.after_sync);
    let _ = s.poll_lease_update();
    let rel = build(|m| {
        m.set_ciaddr(Ipv4Addr::new(192, 168, 77, 129));
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Release));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    });
    assert!(answer(&mut s, DHCP, from68(), &rel).is_empty());
    assert_eq!(s.poll_lease_update().unwrap().kind, RecordKind::Released);
    assert!(
        s.leases()
            .by_addr(Ipv4Addr::new(192, 168, 77, 129))
            .is_none()
    );
    // Re-acquire, then DECLINE: the address goes on probation and the next
    // client does not get it.
    let (_, m) = one(&mut s, DHCP, from68(), &req);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Ack));
    let dec = build(|m| {
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Decline));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 168, 77, 129,
            )));
    });
    assert!(answer(&mut s, DHCP, from68(), &dec).is_empty());
    let other = build(|m| {
        m.set_chaddr(&[2, 0, 0, 0, 0, 0x99]);
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Discover));
    });
    let (_, m) = one(&mut s, DHCP, from68(), &other);
    assert_ne!(m.yiaddr(), Ipv4Addr::new(192, 168, 77, 129));
    // INFORM: unicast to ciaddr, no lease time, no yiaddr (RFC 2131 §4.3.5).
    let inf = build(|m| {
        m.set_ciaddr(Ipv4Addr::new(192, 168, 77, 50));
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Inform));
    });
    let (t, m) = one(
        &mut s,
        DHCP,
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 50), 68),
        &inf,
    );
    assert_eq!(
        t.remote,
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 50), 68)
    );
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(opt(&m, OptionCode::AddressLeaseTime).is_none());
    assert!(opt(&m, OptionCode::SubnetMask).is_some());
}

#[test]
fn full_mode_renew_and_client_choosing_another_server() {
    let mut s = Server::new(full_config()).unwrap();
    let disc = build(|m| {
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Discover));
    });
    let (_, offer) = one(&mut s, DHCP, from68(), &disc);
    let addr = offer.yiaddr();
    // The client picks another server: our hold is dropped.
    let other = build(|m| {
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Request));
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 77, 2)));
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 168, 77, 140,
            )));
    });
    assert!(answer(&mut s, DHCP, from68(), &other).is_empty());
    assert!(s.leases().by_addr(addr).is_none());
    // RENEWING: ciaddr set, unicast answer to ciaddr.
    let renew = build(|m| {
        m.set_ciaddr(addr);
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Request));
    });
    let (t, m) = one(&mut s, DHCP, SocketAddrV4::new(addr, 68), &renew);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Ack));
    assert_eq!(t.remote, SocketAddrV4::new(addr, 68));
    assert_eq!(m.ciaddr(), addr);
    // Someone else renewing that address: NAK.
    let thief = build(|m| {
        m.set_ciaddr(addr).set_chaddr(&[2, 0, 0, 0, 0, 0x77]);
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Request));
    });
    let (_, m) = one(&mut s, DHCP, SocketAddrV4::new(addr, 68), &thief);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Nak));
}

#[test]
fn pool_exhaustion_is_reported_not_looping() {
    let mut c = full_config();
    c.pools[0].start = Ipv4Addr::new(192, 168, 77, 10);
    c.pools[0].end = Ipv4Addr::new(192, 168, 77, 11);
    c.rate_limit.per_second = 0;
    let mut s = Server::new(c).unwrap();
    let mut got = 0;
    for n in 0..5u8 {
        let d = build(|m| {
            m.set_chaddr(&[2, 0, 0, 0, 1, n]);
            m.opts_mut()
                .insert(DhcpOption::MessageType(v4::MessageType::Discover));
        });
        got += answer(&mut s, DHCP, from68(), &d).len();
    }
    assert_eq!(got, 2);
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        Event::Ignored {
            reason: IgnoreReason::PoolExhausted,
            ..
        }
    )));
    // Offers expire after the hold: the pool is usable again.
    let later = T0 + Duration::from_secs(31);
    let d = build(|m| {
        m.set_chaddr(&[2, 0, 0, 0, 1, 99]);
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Discover));
    });
    s.handle(
        later,
        Datagram {
            local: DHCP,
            remote: from68(),
            payload: &d,
        },
    );
    let mut buf = [0u8; 1500];
    assert!(s.poll_transmit(later, &mut buf).unwrap().is_some());
}

/// Issue 11 item 1: a boot menu over the 255 bytes of its PXE sub-option
/// (8 items of 30-byte labels: 8 × 33 = 264) cannot be encoded. The answer
/// that carries it is dropped with an event, and never blocks the queue:
/// more failed offers than the queue holds, then another client's 4011
/// request is answered.
#[test]
fn an_answer_that_cannot_be_encoded_does_not_freeze_the_server() {
    let mut c = proxy_config();
    c.menu.policy = MenuPolicy::OnKeyPress { timeout_secs: 5 };
    c.menu.items.clear();
    for n in 0..8u16 {
        c.menu
            .items
            .push(MenuItem {
                server_type: 0x8000 + n,
                description: Text::try_from(format!("Boot item number {n:02} for lab PC").as_str())
                    .unwrap(),
                file: None,
            })
            .unwrap();
    }
    assert_eq!(c.menu.boot_menu_len(), 8 * 33);
    assert_eq!(
        c.menu.check().map_err(|e| e.bytes),
        Err(264),
        "the check refuses it"
    );
    let mut s = Server::new(c).unwrap();
    for _ in 0..6 {
        assert!(answer(&mut s, DHCP, from68(), &vector("ipxe-bios-discover")).is_empty());
        let ev = events(&mut s);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::AnswerDropped {
                    error: preboot::dhcp::Error::Encode,
                    ..
                }
            )),
            "{ev:?}"
        );
    }
    // The 4011 ACK carries no menu: it goes out.
    let (_, ack) = one(&mut s, BOOT, from68(), &vector("ipxe-bios-request-4011"));
    assert_eq!(ack.opts().msg_type(), Some(v4::MessageType::Ack));
    assert!(!events(&mut s).iter().any(|e| matches!(
        e,
        Event::Ignored {
            reason: IgnoreReason::Busy,
            ..
        }
    )));
}

/// A menu of exactly 255 bytes still goes out whole.
#[test]
fn a_menu_at_the_sub_option_limit_is_sent() {
    let mut c = proxy_config();
    c.menu.policy = MenuPolicy::Always;
    c.menu.items.clear();
    // 4 × (3 + 60) + (3 + 0) = 255.
    for n in 0..4u16 {
        c.menu
            .items
            .push(MenuItem {
                server_type: 0x8000 + n,
                description: Text::try_from("x".repeat(60).as_str()).unwrap(),
                file: None,
            })
            .unwrap();
    }
    c.menu
        .items
        .push(MenuItem {
            server_type: 0,
            description: Text::new(),
            file: None,
        })
        .unwrap();
    assert_eq!(c.menu.boot_menu_len(), 255);
    c.menu.check().unwrap();
    let mut s = Server::new(c).unwrap();
    let (_, m) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    let menu = subs(&opt43(&m).unwrap())
        .into_iter()
        .find(|s| s.0 == 9)
        .unwrap();
    assert_eq!(menu.1.len(), 255);
}

fn with_client_id(chaddr: &[u8], id: &[u8], msg: v4::MessageType) -> Vec<u8> {
    build(|m| {
        m.set_chaddr(chaddr);
        m.opts_mut().insert(DhcpOption::MessageType(msg));
        m.opts_mut()
            .insert(DhcpOption::ClientIdentifier(id.to_vec()));
    })
}

/// Issue 11 item 10: clients with `hlen` = 0 (InfiniBand, RFC 4390) are
/// told apart by their client identifier, so one flooding does not starve
/// the others (they used to share the bucket of the empty `chaddr`).
#[test]
fn hlen_zero_clients_are_limited_by_client_id() {
    let mut s = Server::new(full_config()).unwrap();
    let flood = with_client_id(&[], b"\xffIB-flooder", v4::MessageType::Discover);
    assert_eq!(decode(&flood).hlen(), 0);
    let n = (0..200)
        .filter(|_| !answer(&mut s, DHCP, from68(), &flood).is_empty())
        .count();
    assert_eq!(n, 20, "the flooder gets its burst, then is limited");
    let other = with_client_id(&[], b"\xffIB-honest", v4::MessageType::Discover);
    let (_, m) = one(&mut s, DHCP, from68(), &other);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Offer));
}

/// Issue 11 item 5: REQUESTs under one client identifier (the lease's key)
/// with a fresh random `chaddr` each are limited like one client, so they
/// cannot write a lease record each (38,350 fsynced lines in 8 s before).
#[test]
fn random_chaddr_under_one_client_id_is_limited() {
    let mut s = Server::new(full_config()).unwrap();
    let mut acks = 0;
    let mut records = 0;
    for n in 0..500u32 {
        let b = n.to_be_bytes();
        let mut req = with_client_id(
            &[2, 0, b[0], b[1], b[2], b[3]],
            b"\x01same",
            v4::MessageType::Request,
        );
        let mut m = decode(&req);
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 168, 77, 150,
            )));
        req = dhcproto::Encodable::to_vec(&m).unwrap();
        acks += answer(&mut s, DHCP, from68(), &req).len();
        records += std::iter::from_fn(|| s.poll_lease_update()).count();
    }
    assert_eq!(acks, 20);
    assert_eq!(records, 20);
    // Random client identifiers under one chaddr are limited too.
    let mut s = Server::new(full_config()).unwrap();
    let n = (0..200u32)
        .filter(|n| {
            let req = with_client_id(
                &[2, 0, 0, 0, 0, 7],
                &n.to_be_bytes(),
                v4::MessageType::Discover,
            );
            !answer(&mut s, DHCP, from68(), &req).is_empty()
        })
        .count();
    assert_eq!(n, 20);
}

/// Issue 11 item 6: 60 clients that DISCOVER and then DECLINE their offer
/// put at most 10 % of the pool (72 addresses: 7) on probation; the other
/// declines are ignored with an event and their addresses stay in use, so
/// a new client still gets an address. Once the probation time has passed
/// the budget is back.
// 125 clients on a 72-address pool: more leases than the table holds
// without alloc (NO_ALLOC_CAPACITY, 64).
#[cfg(feature = "alloc")]
#[test]
fn declines_take_at_most_a_tenth_of_the_pool() {
    let mut s = Server::new(full_config()).unwrap();
    let mut ev = Vec::new();
    for n in 0..60u8 {
        let mac = [2, 0xde, 0xc1, 0, 0, n];
        let d = build(|m| {
            m.set_chaddr(&mac);
            m.opts_mut()
                .insert(DhcpOption::MessageType(v4::MessageType::Discover));
        });
        let (_, offer) = one(&mut s, DHCP, from68(), &d);
        let dec = build(|m| {
            m.set_chaddr(&mac);
            m.opts_mut()
                .insert(DhcpOption::MessageType(v4::MessageType::Decline));
            m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
            m.opts_mut()
                .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        });
        assert!(answer(&mut s, DHCP, from68(), &dec).is_empty());
        ev.extend(events(&mut s));
    }
    let accepted = ev
        .iter()
        .filter(|e| matches!(e, Event::Declined { .. }))
        .count();
    let ignored: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::DeclineIgnored {
                on_probation,
                limit,
                ..
            } => Some((*on_probation, *limit)),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, 7);
    assert_eq!(ignored.len(), 53);
    assert!(ignored.iter().all(|&x| x == (7, 7)), "{ignored:?}");
    let probation = s
        .leases()
        .iter()
        .filter(|l| l.state == preboot::dhcp::leases::LeaseState::Probation)
        .count();
    assert_eq!(probation, 7);
    // 72 addresses, 7 on probation: new clients get the other 65.
    let mut got = std::collections::HashSet::new();
    for n in 0..65u8 {
        let d = build(|m| {
            m.set_chaddr(&[2, 0x0e, 0x3e, 0, 0, n]);
            m.opts_mut()
                .insert(DhcpOption::MessageType(v4::MessageType::Discover));
        });
        let (_, offer) = one(&mut s, DHCP, from68(), &d);
        assert!(got.insert(offer.yiaddr()));
    }
    // After the probation time (600 s, counted in slots of 600/7 s) the
    // budget is back.
    let later = T0 + Duration::from_secs(600 + 600 / 7 + 1);
    let mac = [2, 0xde, 0xc1, 1, 0, 0];
    let d = build(|m| {
        m.set_chaddr(&mac);
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Discover));
    });
    s.handle(
        later,
        Datagram {
            local: DHCP,
            remote: from68(),
            payload: &d,
        },
    );
    let mut buf = [0u8; 1500];
    let t = s.poll_transmit(later, &mut buf).unwrap().unwrap();
    let offer = decode(&buf[..t.len]);
    let dec = build(|m| {
        m.set_chaddr(&mac);
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Decline));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    });
    events(&mut s);
    s.handle(
        later,
        Datagram {
            local: DHCP,
            remote: from68(),
            payload: &dec,
        },
    );
    assert!(
        events(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Declined { .. })),
        "the budget is back"
    );
}

/// Each message that passes the rate limit is reported once, with what the
/// driver logs and what the client directory records, from the engine's
/// one parse: the client's address is the unicast source (the 4011 REQUEST,
/// PXE 2.1 §2.2.3), else the address a REQUEST asks for (RFC 2131 §4.3.2
/// option 50), never 0.0.0.0.
#[test]
fn received_event_carries_the_client_and_its_address() {
    let mut s = Server::new(proxy_config()).unwrap();
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68);
    answer(&mut s, BOOT, from, &vector("ipxe-bios-request-4011"));
    let first = events(&mut s).into_iter().next();
    assert!(
        matches!(
            first,
            Some(Event::Received {
                arch: Some(BootArch::Bios),
                pxe: true,
                message: MessageType::Request,
                client_ip: Some(ip),
                ..
            }) if ip == *from.ip()
        ),
        "{first:?}"
    );

    let req = vector("ipxe-bios-request");
    let requested = preboot::wire::dhcp::DhcpPacket::new_checked(&req[..])
        .unwrap()
        .requested_ip()
        .expect("the vector asks for an address");
    answer(&mut s, DHCP, from68(), &req);
    let first = events(&mut s).into_iter().next();
    assert!(
        matches!(first, Some(Event::Received { client_ip: Some(ip), .. }) if ip == requested),
        "{first:?}"
    );

    // A DISCOVER from 0.0.0.0 shows no address.
    answer(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    let first = events(&mut s).into_iter().next();
    assert!(
        matches!(
            first,
            Some(Event::Received {
                client_ip: None,
                message: MessageType::Discover,
                ..
            })
        ),
        "{first:?}"
    );
}

// ---- the transaction server in option 43 (sub-options 128 and 129,
// vendor range; docs/transaction-protocol.md, "How the preboot client finds
// the transaction server") ----

const TX_KEY: [u8; 32] = [0x5a; 32];

fn tx() -> TransactionServer {
    TransactionServer {
        address: SocketAddrV4::new(SERVER, 4012),
        public_key: Some(TX_KEY),
    }
}

/// 128 = address ‖ port (big-endian), 129 = the 32-byte key.
fn tx_subs() -> [(u8, Vec<u8>); 2] {
    [
        (128, vec![192, 168, 77, 1, 0x0f, 0xac]),
        (129, TX_KEY.to_vec()),
    ]
}

/// Proxy mode, menu "never": the proxy OFFER (BIOS and UEFI) carries an
/// option 43 of only 128 and 129 — still no file and no discovery control
/// (PXE 2.1 §2.2.1 step 4), so both firmwares still ask on 4011 — and the
/// 4011 ACK carries them after the echoed boot item (§2.2.3).
#[test]
fn proxy_answers_name_the_transaction_server() {
    let mut c = proxy_config();
    c.transaction = Some(tx());
    let mut s = Server::new(c).unwrap();
    for discover in ["ipxe-bios-discover", "ovmf-uefi-discover"] {
        let (_, m) = one(&mut s, DHCP, from68(), &vector(discover));
        assert_eq!(subs(&opt43(&m).unwrap()), tx_subs(), "{discover}");
        assert_eq!(fname(&m), b"");
    }
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68);
    let (_, m) = one(&mut s, BOOT, from, &vector("ipxe-bios-request-4011"));
    let got = subs(&opt43(&m).unwrap());
    assert_eq!(got[0], (71, vec![0x80, 0, 0, 0]));
    assert_eq!(got[1..], tx_subs());
    assert_eq!(fname(&m), b"pxelinux.0");
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 145), 4011);
    let (_, m) = one(&mut s, BOOT, from, &vector("ovmf-uefi-request-4011"));
    assert_eq!(subs(&opt43(&m).unwrap()), tx_subs());
    assert_eq!(fname(&m), b"grubnetx64.efi");
}

/// Full mode: the OFFER and the ACK to a PXE client carry 128 and 129
/// after discovery control (bit 3, boot the file in this answer).
#[test]
fn full_mode_answers_name_the_transaction_server() {
    let mut c = full_config();
    c.transaction = Some(tx());
    let mut s = Server::new(c).unwrap();
    let (_, offer) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    let (_, ack) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-request"));
    for m in [offer, ack] {
        let got = subs(&opt43(&m).unwrap());
        assert_eq!(got[0], (6, vec![8]));
        assert_eq!(got[1..], tx_subs());
        assert_eq!(fname(&m), b"pxelinux.0");
    }
}

/// Without a key (none configured) only 128 goes; without a transaction
/// server nothing changes (no option 43 in a menu-less proxy OFFER).
#[test]
fn transaction_key_is_optional_and_the_default_names_nothing() {
    let mut c = proxy_config();
    c.transaction = Some(TransactionServer {
        public_key: None,
        ..tx()
    });
    let mut s = Server::new(c).unwrap();
    let (_, m) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    assert_eq!(subs(&opt43(&m).unwrap()), tx_subs()[..1]);
    let mut s = Server::new(proxy_config()).unwrap();
    let (_, m) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    assert_eq!(opt43(&m), None);
}

/// A client that is not a PXE client (full mode with `boot_non_pxe`) gets
/// no option 43 at all: the sub-options are PXE vendor options
/// (PXE 2.1 §2.4: option 43 means them only under option 60 PXEClient).
#[test]
fn non_pxe_clients_get_no_transaction_sub_options() {
    let mut c = full_config();
    c.transaction = Some(tx());
    c.boot_non_pxe = true;
    let mut s = Server::new(c).unwrap();
    let req = build(|m| {
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Discover));
    });
    let (_, m) = one(&mut s, DHCP, from68(), &req);
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Offer));
    assert_eq!(opt43(&m), None);
}

/// Option 43 stays one option (≤ 255 bytes, RFC 2132 §2): with a menu
/// that fills it, the transaction sub-options are left out of the OFFER
/// and the menu goes intact; the 4011 ACK (boot item only) still carries
/// them.
#[test]
fn transaction_sub_options_never_split_option_43() {
    let mut c = proxy_config();
    c.transaction = Some(tx());
    c.menu.policy = MenuPolicy::Always;
    c.menu.items.clear();
    for n in 0..4u16 {
        c.menu
            .items
            .push(MenuItem {
                server_type: 0x8000 + n,
                description: Text::try_from("x".repeat(40).as_str()).unwrap(),
                file: None,
            })
            .unwrap();
    }
    let mut s = Server::new(c.clone()).unwrap();
    let (_, m) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    let o43 = opt43(&m).unwrap();
    assert!(o43.len() <= 255, "{} bytes", o43.len());
    let codes: Vec<u8> = subs(&o43).iter().map(|s| s.0).collect();
    assert_eq!(codes, [6, 8, 9, 10], "no room for 128 and 129");
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68);
    let (_, m) = one(&mut s, BOOT, from, &vector("ipxe-bios-request-4011"));
    assert_eq!(subs(&opt43(&m).unwrap())[1..], tx_subs());
    // A short menu leaves room: all of it, 128 and 129 last.
    c.menu.items.truncate(1);
    let mut s = Server::new(c).unwrap();
    let (_, m) = one(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    let got = subs(&opt43(&m).unwrap());
    let codes: Vec<u8> = got.iter().map(|s| s.0).collect();
    assert_eq!(codes, [6, 8, 9, 10, 128, 129]);
    assert_eq!(got[4..], tx_subs());
}
