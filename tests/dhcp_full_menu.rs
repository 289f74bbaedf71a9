//! The PXE boot menu in full mode (PXE 2.1 §2.4.5): with a menu, the
//! server's own OFFER/ACK carry option 43 (discovery control, boot servers,
//! menu, prompt) and no file, so that the client shows the menu and then
//! asks the boot server (4011) for the item's file — as in proxy mode.
//! Without a menu, the file is in the answer; a PXE client also gets
//! option 60 "PXEClient" and option 43 with discovery control bit 3
//! (PXE 2.1 §2.2.1 step 2, §2.4.5), a plain client neither.

use preboot::engine::Datagram;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{self, Decodable, Decoder, DhcpOption, OptionCode};
use preboot::Instant;
use preboot::dhcp::config::{BootEntry, MenuPolicy, MtftpParams, Pool, ServerConfig};
use preboot::dhcp::{BootArch, Mode, Server};

mod dhcp_support;
use dhcp_support::vector;

/// The DHCP socket (its bound address).
const DHCP: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 67);
/// The boot server socket (its bound address).
const BOOT: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 4011);

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

fn full(menu: MenuPolicy) -> Server {
    let mut c = ServerConfig::full(SERVER);
    c.boot.set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
    c.boot
        .set(BootArch::UefiX64, BootEntry::tftp("bootx64.efi"));
    c.menu.policy = menu;
    c.pools.push(pool()).unwrap();
    Server::new(c).unwrap()
}

fn pool() -> Pool {
    Pool {
        subnet: Ipv4Addr::new(192, 168, 77, 0),
        prefix_len: 24,
        start: Ipv4Addr::new(192, 168, 77, 100),
        end: Ipv4Addr::new(192, 168, 77, 150),
        router: None,
        dns: Default::default(),
        lease_time: Duration::from_secs(600),
    }
}

fn answer(s: &mut Server, port: SocketAddrV4, from: SocketAddrV4, req: &[u8]) -> v4::Message {
    let t0 = Instant::from_secs(1000);
    s.handle(
        t0,
        Datagram {
            local: port,
            remote: from,
            payload: req,
        },
    );
    let mut buf = [0u8; 1500];
    let t = s.poll_transmit(t0, &mut buf).unwrap().expect("an answer");
    v4::Message::decode(&mut Decoder::new(&buf[..t.len])).unwrap()
}

/// PXE sub-option codes of option 43, and sub-option 10 (prompt).
fn pxe43(m: &v4::Message) -> Option<(Vec<u8>, Vec<u8>)> {
    let DhcpOption::VendorExtensions(v) = m.opts().get(OptionCode::VendorExtensions)? else {
        panic!("option 43 not raw");
    };
    let (mut codes, mut prompt, mut i) = (Vec::new(), Vec::new(), 0);
    while i + 1 < v.len() && v[i] != 255 {
        let (c, l) = (v[i], usize::from(v[i + 1]));
        codes.push(c);
        if c == 10 {
            prompt = v[i + 2..i + 2 + l].to_vec();
        }
        i += 2 + l;
    }
    Some((codes, prompt))
}

fn file(m: &v4::Message) -> Vec<u8> {
    m.fname()
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| b != 0)
        .copied()
        .collect()
}

fn from68() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)
}

#[test]
fn full_mode_offer_carries_the_menu_and_no_file() {
    let mut s = full(MenuPolicy::OnKeyPress { timeout_secs: 3 });
    let m = answer(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Offer));
    assert_eq!(m.yiaddr(), Ipv4Addr::new(192, 168, 77, 100), "an address");
    let (codes, prompt) = pxe43(&m).expect("option 43 with a menu");
    assert_eq!(codes, [6, 8, 9, 10]);
    assert_eq!(prompt, [&[3u8][..], b"Press F8 for boot menu"].concat());
    assert!(
        matches!(m.opts().get(OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(c)) if c.as_slice() == b"PXEClient"),
        "option 60 PXEClient, or the client ignores option 43"
    );
    assert!(
        file(&m).is_empty(),
        "the file comes from 4011 after the menu"
    );

    // UEFI: the same, never MTFTP sub-options 1-5.
    let m = answer(&mut s, DHCP, from68(), &vector("ovmf-uefi-discover"));
    assert_eq!(pxe43(&m).unwrap().0, [6, 8, 9, 10]);
    assert!(file(&m).is_empty());

    // The boot server on 4011 then names the BIOS file.
    let ack = answer(
        &mut s,
        BOOT,
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 100), 68),
        &vector("ipxe-bios-request-4011"),
    );
    assert_eq!(ack.opts().msg_type(), Some(v4::MessageType::Ack));
    assert_eq!(file(&ack), b"pxelinux.0");
}

fn class(m: &v4::Message) -> Option<Vec<u8>> {
    match m.opts().get(OptionCode::ClassIdentifier)? {
        DhcpOption::ClassIdentifier(c) => Some(c.clone()),
        other => panic!("option 60 decoded as {other:?}"),
    }
}

/// Option 43 sub-option 6 (discovery control), if present.
fn discovery_control(m: &v4::Message) -> Option<u8> {
    let DhcpOption::VendorExtensions(v) = m.opts().get(OptionCode::VendorExtensions)? else {
        panic!("option 43 not raw");
    };
    let mut i = 0;
    while i + 2 < v.len() && v[i] != 255 {
        if v[i] == 6 {
            return Some(v[i + 2]);
        }
        i += 2 + usize::from(v[i + 1]);
    }
    None
}

/// PXE 2.1 §2.2.1 (step 2, Table 2-1) and §2.4.5: a DHCP server that
/// provides the PXE service itself answers a PXE client with option 60
/// "PXEClient" (so the client stops waiting for a proxyDHCP offer: iPXE
/// leaves discovery at once, src/net/udp/dhcp.c `dhcp_discovery_rx`) and
/// option 43 with discovery control bit 3 ("boot the file in this offer"),
/// so EDK2 takes it as a PXE 1.0 offer and boots the file without a 4011
/// step (PxeBcSelectBootPrompt). The file stays in the answer.
#[test]
fn full_mode_without_menu_answers_pxe_clients_as_their_pxe_server() {
    let mut s = full(MenuPolicy::Never);
    for (discover, want) in [
        ("ipxe-bios-discover", &b"pxelinux.0"[..]),
        ("ovmf-uefi-discover", &b"bootx64.efi"[..]),
    ] {
        let m = answer(&mut s, DHCP, from68(), &vector(discover));
        assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Offer));
        assert_ne!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "{discover}: an address");
        assert_eq!(class(&m).as_deref(), Some(&b"PXEClient"[..]), "{discover}");
        assert_eq!(
            pxe43(&m).unwrap().0,
            [6],
            "{discover}: only discovery control"
        );
        assert_eq!(discovery_control(&m), Some(8), "{discover}: bit 3");
        assert_eq!(file(&m), want, "{discover}");
        assert_eq!(m.siaddr(), SERVER, "{discover}");
    }
    // The ACK says the same (EDK2 reads its boot information from the ACK).
    for (request, want) in [
        ("ipxe-bios-request", &b"pxelinux.0"[..]),
        ("ovmf-uefi-request", &b"bootx64.efi"[..]),
    ] {
        let m = answer(&mut s, DHCP, from68(), &vector(request));
        assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Ack), "{request}");
        assert_eq!(class(&m).as_deref(), Some(&b"PXEClient"[..]), "{request}");
        assert_eq!(discovery_control(&m), Some(8), "{request}");
        assert_eq!(file(&m), want, "{request}");
    }
}

/// EDK2 drops offers with MTFTP sub-options 1–5 (PxeBcParseDhcp4Packet):
/// in full mode too, only a BIOS client gets them.
#[test]
fn full_mode_mtftp_suboptions_only_for_bios() {
    let mut c = ServerConfig::full(SERVER);
    let mtftp = Some(MtftpParams {
        ip: Ipv4Addr::new(239, 239, 239, 2),
        client_port: 1760,
        server_port: 1759,
        timeout_secs: 2,
        delay_secs: 4,
    });
    c.boot.set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
    c.boot
        .set(BootArch::UefiX64, BootEntry::tftp("bootx64.efi"));
    c.boot.get_mut(BootArch::Bios).unwrap().mtftp = mtftp;
    c.boot.get_mut(BootArch::UefiX64).unwrap().mtftp = mtftp;
    c.pools.push(pool()).unwrap();
    let mut s = Server::new(c).unwrap();
    let m = answer(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    assert_eq!(pxe43(&m).unwrap().0, [1, 2, 3, 4, 5, 6]);
    let m = answer(&mut s, DHCP, from68(), &vector("ovmf-uefi-discover"));
    assert_eq!(pxe43(&m).unwrap().0, [6], "no 1-5 for UEFI");
    assert_eq!(file(&m), b"bootx64.efi");
}

/// A client without option 60 "PXEClient" (dhclient, udhcpc) is no PXE
/// client: no option 60 and no option 43 in its answer, with or without a
/// boot file for it (`boot_non_pxe`).
#[test]
fn full_mode_plain_client_gets_no_option_60() {
    let mut plain = vector("ipxe-bios-discover");
    let at = plain
        .windows(9)
        .position(|w| w == b"PXEClient")
        .expect("vector has option 60");
    plain[at..at + 9].copy_from_slice(b"XYZClient");
    for boot_non_pxe in [false, true] {
        let mut c = ServerConfig::full(SERVER);
        c.boot.set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
        c.boot_non_pxe = boot_non_pxe;
        c.pools.push(pool()).unwrap();
        let mut s = Server::new(c).unwrap();
        let m = answer(&mut s, DHCP, from68(), &plain);
        assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Offer));
        assert_eq!(class(&m), None, "boot_non_pxe {boot_non_pxe}");
        assert!(pxe43(&m).is_none(), "boot_non_pxe {boot_non_pxe}");
        let want: &[u8] = if boot_non_pxe { b"pxelinux.0" } else { b"" };
        assert_eq!(file(&m), want);
    }
    // Without option 60 at all (dhclient's DISCOVER).
    let mut s = full(MenuPolicy::Always);
    let m = answer(&mut s, DHCP, from68(), &dhclient_discover());
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Offer));
    assert_eq!(class(&m), None);
    assert!(pxe43(&m).is_none());
}

fn dhclient_discover() -> Vec<u8> {
    use dhcproto::Encodable;
    let mut m = v4::Message::default();
    m.set_opcode(v4::Opcode::BootRequest)
        .set_xid(0x1234_5678)
        .set_chaddr(&[0x02, 0, 0, 0, 0, 0x42]);
    m.opts_mut()
        .insert(DhcpOption::MessageType(v4::MessageType::Discover));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
    ]));
    m.to_vec().unwrap()
}

#[test]
fn full_mode_menu_policy_always_prompts_forever() {
    let mut s = full(MenuPolicy::Always);
    let m = answer(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
    assert_eq!(pxe43(&m).unwrap().1[0], 255, "always: prompt timeout 255");
    let _ = Mode::Full;
}

/// The PXE boot menu with a file served by PXE MTFTP, through the boot
/// server's own configuration (`[pxe_prompt]` items, `[[mtftp.file]]`):
/// boot server discovery on 4011 for a menu item (PXE 2.1 §2.2.3,
/// option 43 sub-option 71) gets the item's file — the architecture's —
/// and, since that file is in the MTFTP table, sub-options 1–5 for it
/// (notes §2.4 step 4: the client fetches "by MTFTP if the ACK carries
/// tags 1–5"), for a BIOS client only (EDK2 discards answers carrying
/// them, notes §2.2); the menu OFFER carries them as well, in full and in
/// proxy mode.
#[cfg(feature = "std")]
#[test]
fn menu_item_ack_carries_mtftp_suboptions_for_bios() {
    use preboot::driver::boot_server::config;
    let patch = |b: &mut [u8], from: &[u8], to: &[u8]| {
        let i = b
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern in vector");
        b[i..i + to.len()].copy_from_slice(to);
    };
    for mode in ["full", "proxy"] {
        let text = format!(
            "[server]\nmode = \"{mode}\"\nserver_ip = \"192.168.77.1\"\n\
             [boot]\nbios = \"pxelinux.0\"\nuefi_x64 = \"bootx64.efi\"\n\
             [pxe_prompt]\nshow = \"on-key-press\"\ntimeout_secs = 3\n\
             [[pxe_prompt.item]]\ntype = 0x8000\nlabel = \"Network boot\"\n\
             [[pxe_prompt.item]]\ntype = 0x8001\nlabel = \"Maintenance\"\n\
             [tftp]\nroot = \"tftp\"\n\
             [mtftp]\nserver_port = 1759\nlisten_secs = 2\ndelay_secs = 4\n\
             [[mtftp.file]]\nfile = \"pxelinux.0\"\ngroup = \"239.239.239.2\"\nclient_port = 1760\n\
             {}",
            if mode == "full" {
                "[[dhcp.pool]]\nsubnet = \"192.168.77.0/24\"\nstart = \"192.168.77.100\"\nend = \"192.168.77.150\"\n"
            } else {
                ""
            }
        );
        let c = config::parse(std::path::Path::new("/etc/preboot/p.toml"), &text)
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let mut s = Server::new(c.dhcp.engine_config().unwrap()).unwrap();
        let want = MtftpParams {
            ip: Ipv4Addr::new(239, 239, 239, 2),
            client_port: 1760,
            server_port: 1759,
            timeout_secs: 2,
            delay_secs: 4,
        };
        let bios_offer = answer(&mut s, DHCP, from68(), &vector("ipxe-bios-discover"));
        assert_eq!(
            pxe43(&bios_offer).unwrap().0,
            [1, 2, 3, 4, 5, 6, 8, 9, 10],
            "{mode}: the menu OFFER to BIOS"
        );
        let uefi_offer = answer(&mut s, DHCP, from68(), &vector("ovmf-uefi-discover"));
        assert_eq!(
            pxe43(&uefi_offer).unwrap().0,
            [6, 8, 9, 10],
            "{mode}: no 1-5 for UEFI"
        );
        // Each item, chosen from the menu and asked for on 4011.
        let client = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 100), 68);
        for (item, hi, lo) in [(0x8000u16, 0x80u8, 0x00u8), (0x8001, 0x80, 0x01)] {
            let mut req = vector("ipxe-bios-request-4011");
            patch(
                &mut req,
                &[43, 7, 71, 4, 0x80, 0x00],
                &[43, 7, 71, 4, hi, lo],
            );
            let ack = answer(&mut s, BOOT, client, &req);
            assert_eq!(ack.opts().msg_type(), Some(v4::MessageType::Ack));
            assert_eq!(file(&ack), b"pxelinux.0", "{mode} item {item:#x}");
            let (codes, _) = pxe43(&ack).unwrap();
            assert_eq!(
                codes,
                [71, 1, 2, 3, 4, 5],
                "{mode} item {item:#x}: the item echoed and sub-options 1-5"
            );
            assert_eq!(mtftp_of(&ack), Some(want), "{mode} item {item:#x}");
        }
        // UEFI: its own file, no sub-options 1-5 in the 4011 ACK.
        let ack = answer(
            &mut s,
            BOOT,
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 101), 4011),
            &vector("ovmf-uefi-request-4011"),
        );
        assert_eq!(file(&ack), b"bootx64.efi");
        assert_eq!(mtftp_of(&ack), None, "{mode}: no 1-5 for UEFI");
    }
}

/// Option 43 sub-options 1–5 of `m` (ports little-endian, notes §2.2).
#[cfg(feature = "std")]
fn mtftp_of(m: &v4::Message) -> Option<MtftpParams> {
    let DhcpOption::VendorExtensions(v) = m.opts().get(OptionCode::VendorExtensions)? else {
        panic!("option 43 not raw");
    };
    let (mut ip, mut cport, mut sport, mut tmout, mut delay) = (None, None, None, None, None);
    let mut i = 0;
    while i + 1 < v.len() && v[i] != 255 {
        let (c, l) = (v[i], usize::from(v[i + 1]));
        let d = &v[i + 2..i + 2 + l];
        match c {
            1 => ip = Some(Ipv4Addr::new(d[0], d[1], d[2], d[3])),
            2 => cport = Some(u16::from_le_bytes([d[0], d[1]])),
            3 => sport = Some(u16::from_le_bytes([d[0], d[1]])),
            4 => tmout = Some(d[0]),
            5 => delay = Some(d[0]),
            _ => {}
        }
        i += 2 + l;
    }
    Some(MtftpParams {
        ip: ip?,
        client_port: cport?,
        server_port: sport?,
        timeout_secs: tmout?,
        delay_secs: delay?,
    })
}
