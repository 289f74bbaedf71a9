//! The PXE boot menu in full mode (PXE 2.1 §2.4.5): with a menu, the
//! server's own OFFER/ACK carry option 43 (discovery control, boot servers,
//! menu, prompt) and no file, so that the client shows the menu and then
//! asks the boot server (4011) for the item's file — as in proxy mode.
//! Without a menu, the file is in the answer and there is no option 43.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{self, Decodable, Decoder, DhcpOption, OptionCode};
use preboot::Instant;
use preboot::dhcp::config::{BootEntry, MenuPolicy, Pool, ServerConfig};
use preboot::dhcp::{Mode, Server, ServerPort};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let hex: String = std::fs::read_to_string(path)
        .unwrap()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn full(menu: MenuPolicy) -> Server {
    let mut c = ServerConfig::full(SERVER);
    c.boot.bios = BootEntry::tftp("pxelinux.0");
    c.boot.uefi_x64 = BootEntry::tftp("bootx64.efi");
    c.menu.policy = menu;
    c.pools
        .push(Pool {
            subnet: Ipv4Addr::new(192, 168, 77, 0),
            prefix_len: 24,
            start: Ipv4Addr::new(192, 168, 77, 100),
            end: Ipv4Addr::new(192, 168, 77, 150),
            router: None,
            dns: Default::default(),
            lease_time: Duration::from_secs(600),
        })
        .unwrap();
    Server::new(c).unwrap()
}

fn answer(s: &mut Server, port: ServerPort, from: SocketAddrV4, req: &[u8]) -> v4::Message {
    let t0 = Instant::from_secs(1000);
    s.handle(t0, port, from, req);
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
    let m = answer(
        &mut s,
        ServerPort::Dhcp,
        from68(),
        &vector("ipxe-bios-discover"),
    );
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
    let m = answer(
        &mut s,
        ServerPort::Dhcp,
        from68(),
        &vector("ovmf-uefi-discover"),
    );
    assert_eq!(pxe43(&m).unwrap().0, [6, 8, 9, 10]);
    assert!(file(&m).is_empty());

    // The boot server on 4011 then names the BIOS file.
    let ack = answer(
        &mut s,
        ServerPort::BootServer,
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 100), 68),
        &vector("ipxe-bios-request-4011"),
    );
    assert_eq!(ack.opts().msg_type(), Some(v4::MessageType::Ack));
    assert_eq!(file(&ack), b"pxelinux.0");
}

#[test]
fn full_mode_without_menu_gives_the_file_and_no_option_43() {
    let mut s = full(MenuPolicy::Never);
    let m = answer(
        &mut s,
        ServerPort::Dhcp,
        from68(),
        &vector("ipxe-bios-discover"),
    );
    assert_eq!(m.opts().msg_type(), Some(v4::MessageType::Offer));
    assert!(pxe43(&m).is_none());
    assert_eq!(file(&m), b"pxelinux.0");
    let mut s = full(MenuPolicy::Always);
    let m = answer(
        &mut s,
        ServerPort::Dhcp,
        from68(),
        &vector("ipxe-bios-discover"),
    );
    assert_eq!(pxe43(&m).unwrap().1[0], 255, "always: prompt timeout 255");
    let _ = Mode::Full;
}
