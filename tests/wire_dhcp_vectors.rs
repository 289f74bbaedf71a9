//! Golden vectors (tests/vectors, see PROVENANCE.md): every captured DHCP
//! datagram parses with the field values PROVENANCE.md lists, and
//! re-emitting its `DhcpRepr` reproduces the bytes (all of them are
//! canonical: one piece per option, END then NUL padding to 300 bytes).

use std::net::Ipv4Addr;

use preboot::wire::dhcp::{
    ClientId, DhcpOption, DhcpPacket, DhcpRepr, MessageType, OptionData, code,
};
use preboot::wire::pxe::{
    BootItem, BootMenuItem, BootServer, ClientArch, ClientKind, DiscoveryControl, MachineId, Ndi,
    PromptTimeout, PxeOption, UndiVersion, VendorClass,
};

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex: String = text.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

const DHCP_VECTORS: &[(&str, usize)] = &[
    ("ipxe-bios-discover", 400),
    ("ipxe-bios-request", 412),
    ("dnsmasq-full-offer", 300),
    ("dnsmasq-full-ack", 300),
    ("ipxe-bios-request-4011", 386),
    ("dnsmasq-proxy-offer-bios", 319),
    ("dnsmasq-proxy-ack-4011-bios", 300),
    ("udhcpd-offer", 300),
    ("ovmf-uefi-discover", 347),
    ("ovmf-uefi-request", 359),
    ("ovmf-uefi-request-4011", 347),
    ("dnsmasq-proxy-offer-uefi", 300),
    ("dnsmasq-proxy-ack-4011-uefi", 300),
];

const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xe2, 0xe0, 0x01];
const OVMF_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xe2, 0xe0, 0x07];
const GUID: [u8; 16] = [
    0x4e, 0x1d, 0x7c, 0x8b, 0xe0, 0xe2, 0x5a, 0x4c, 0x9d, 0x3e, 0, 0, 0, 0, 0, 0xe2,
];
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

/// PROVENANCE.md: every DHCP vector parses, has the listed length and
/// re-emits byte-exact (RFC 2131 §2 layout, RFC 1542 §3.4 300-byte minimum).
#[test]
fn every_dhcp_vector_parses_and_reemits_byte_exact() {
    for &(name, len) in DHCP_VECTORS {
        let bytes = load(name);
        assert_eq!(bytes.len(), len, "{name}: length from PROVENANCE.md");
        let p = DhcpPacket::new_checked(&bytes[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.htype(), 1, "{name}");
        assert_eq!(p.hlen(), 6, "{name}");
        let mac = if name.contains("uefi") {
            OVMF_MAC
        } else {
            CLIENT_MAC
        };
        assert_eq!(p.chaddr(), &mac, "{name}: QEMU MAC 52:54:00:…");
        assert!(!p.raw_options().truncated(), "{name}");
        let repr = DhcpRepr::parse(&p).unwrap();
        assert!(
            repr.options
                .iter()
                .all(|o| !matches!(o, DhcpOption::Malformed { .. })),
            "{name}: {:?}",
            repr.options
        );
        let mut out = vec![0xAA; 1500];
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(n, repr.buffer_len().unwrap());
        assert_eq!(&out[..n], &bytes[..], "{name}: re-emit byte-exact");
    }
}

fn opt<'a>(r: &'a DhcpRepr<'a>, c: u8) -> &'a DhcpOption<'a> {
    r.option(c).unwrap_or_else(|| panic!("option {c} missing"))
}

fn prl(r: &DhcpRepr<'_>) -> Vec<u8> {
    match opt(r, code::PARAMETER_REQUEST_LIST) {
        DhcpOption::ParameterRequestList(d) => d.bytes().collect(),
        o => panic!("{o:?}"),
    }
}

fn vendor_class(r: &DhcpRepr<'_>) -> VendorClass {
    VendorClass::from_option(&r.vendor_class().expect("option 60")).expect("vendor class")
}

/// PROVENANCE.md "iPXE (BIOS)": 55, 57 = 1472, 60, 93 = 0, 94 = 01 02 01,
/// 97 = 00 + GUID, 77 `iPXE`, 175, 61; broadcast flag not set.
#[test]
fn ipxe_bios_discover_fields() {
    let bytes = load("ipxe-bios-discover");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    assert_eq!(p.op(), 1);
    assert!(!p.broadcast());
    assert_eq!(r.message_type(), Some(MessageType::Discover));
    let mut expected_prl = vec![1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119];
    expected_prl.extend(128..=135);
    expected_prl.extend([175, 203]);
    assert_eq!(prl(&r), expected_prl);
    assert_eq!(opt(&r, 57), &DhcpOption::MaximumMessageSize(1472));
    assert_eq!(
        vendor_class(&r),
        VendorClass {
            kind: ClientKind::Pxe,
            arch: Some(ClientArch::X86Bios),
            undi: Some(UndiVersion { major: 2, minor: 1 }),
        }
    );
    match opt(&r, 93) {
        DhcpOption::ClientSystemArchitecture(l) => {
            assert_eq!(l.iter().collect::<Vec<_>>(), [ClientArch::X86Bios])
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(
        opt(&r, 94),
        &DhcpOption::ClientNetworkInterface(Ndi {
            interface_type: 1,
            major: 2,
            minor: 1
        })
    );
    assert_eq!(
        opt(&r, 97),
        &DhcpOption::ClientMachineIdentifier(MachineId::new(GUID))
    );
    match opt(&r, 77) {
        DhcpOption::UserClass(u) => {
            assert!(u.data().eq_bytes(b"iPXE"));
            // RFC 3004 would need a length prefix: iPXE sends a bare string.
            assert!(u.classes().is_none());
        }
        o => panic!("{o:?}"),
    }
    assert!(matches!(opt(&r, 175), DhcpOption::IpxeEncapsulated(d) if d.len() == 48));
    assert_eq!(
        opt(&r, 61),
        &DhcpOption::ClientIdentifier(ClientId::Rfc2132 {
            id_type: 1,
            id: OptionData::new(&CLIENT_MAC)
        })
    );
    // Option order is kept.
    let codes: Vec<u8> = r.options.iter().map(|o| o.code()).collect();
    assert_eq!(codes, [53, 57, 93, 94, 60, 77, 55, 175, 61, 97]);
}

/// PROVENANCE.md: the iPXE REQUEST after a full-DHCP offer names the server
/// and the offered address.
#[test]
fn ipxe_bios_request_fields() {
    let bytes = load("ipxe-bios-request");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    assert_eq!(r.message_type(), Some(MessageType::Request));
    assert!(!p.broadcast());
    assert_eq!(opt(&r, 54), &DhcpOption::ServerIdentifier(SERVER));
    assert_eq!(
        opt(&r, 50),
        &DhcpOption::RequestedIpAddress(Ipv4Addr::new(192, 168, 77, 129))
    );
}

/// PROVENANCE.md: iPXE REQUEST to the proxy on 4011 carries option 43 with
/// PXE_BOOT_ITEM (type 0x8000, layer 0) and the short vendor class.
#[test]
fn ipxe_bios_request_4011_fields() {
    let bytes = load("ipxe-bios-request-4011");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    assert_eq!(r.message_type(), Some(MessageType::Request));
    assert!(p.broadcast());
    assert_eq!(vendor_class(&r).arch, None);
    let pxe: Vec<_> = opt(&r, 43).pxe_options().unwrap().collect();
    assert_eq!(
        pxe,
        [PxeOption::BootItem(BootItem {
            item_type: 0x8000,
            layer: 0,
            credentials: false
        })]
    );
}

/// PROVENANCE.md "OVMF (UEFI x64)": 55, 57 = 1472 (DISCOVER), 60 Arch 7
/// UNDI 003000, 93 = 7, 94 = 01 03 00, 97; no 61, no 77; broadcast set.
#[test]
fn ovmf_uefi_discover_fields() {
    let bytes = load("ovmf-uefi-discover");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    assert!(p.broadcast());
    assert_eq!(r.message_type(), Some(MessageType::Discover));
    let mut expected_prl = vec![
        1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60,
        66, 67, 97,
    ];
    expected_prl.extend(128..=135);
    assert_eq!(prl(&r), expected_prl);
    assert_eq!(opt(&r, 57), &DhcpOption::MaximumMessageSize(1472));
    let vc = vendor_class(&r);
    assert_eq!(vc.arch, Some(ClientArch::EfiBc));
    assert_eq!(vc.undi, Some(UndiVersion { major: 3, minor: 0 }));
    assert_eq!(vc.to_string(), "PXEClient:Arch:00007:UNDI:003000");
    assert!(
        matches!(opt(&r, 93), DhcpOption::ClientSystemArchitecture(l) if l.first() == Some(ClientArch::EfiBc))
    );
    assert_eq!(
        opt(&r, 94),
        &DhcpOption::ClientNetworkInterface(Ndi {
            interface_type: 1,
            major: 3,
            minor: 0
        })
    );
    assert_eq!(
        opt(&r, 97),
        &DhcpOption::ClientMachineIdentifier(MachineId::new(GUID))
    );
    assert!(r.option(61).is_none());
    assert!(r.option(77).is_none());
}

/// PROVENANCE.md: OVMF REQUEST has 57 = 65280; the 4011 REQUEST has no
/// broadcast flag.
#[test]
fn ovmf_requests_fields() {
    let bytes = load("ovmf-uefi-request");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    assert!(p.broadcast());
    assert_eq!(r.message_type(), Some(MessageType::Request));
    assert_eq!(opt(&r, 57), &DhcpOption::MaximumMessageSize(65280));
    assert_eq!(
        opt(&r, 50),
        &DhcpOption::RequestedIpAddress(Ipv4Addr::new(192, 168, 77, 135))
    );
    let bytes = load("ovmf-uefi-request-4011");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    assert!(!p.broadcast());
    assert_eq!(p.message_type(), Some(MessageType::Request));
}

/// dnsmasq full-mode OFFER/ACK: yiaddr, lease 3600 s, T1/T2, mask,
/// broadcast, router, boot file `pxelinux.0` (NUL-terminated in option 67).
#[test]
fn dnsmasq_full_offer_ack_fields() {
    for (name, mt) in [
        ("dnsmasq-full-offer", MessageType::Offer),
        ("dnsmasq-full-ack", MessageType::Ack),
    ] {
        let bytes = load(name);
        let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
        let r = DhcpRepr::parse(&p).unwrap();
        assert_eq!(p.op(), 2);
        assert_eq!(r.message_type(), Some(mt));
        assert_eq!(p.yiaddr(), Ipv4Addr::new(192, 168, 77, 129), "{name}");
        assert_eq!(opt(&r, 54), &DhcpOption::ServerIdentifier(SERVER));
        assert_eq!(opt(&r, 51), &DhcpOption::IpAddressLeaseTime(3600));
        assert_eq!(opt(&r, 58), &DhcpOption::RenewalTime(1800));
        assert_eq!(opt(&r, 59), &DhcpOption::RebindingTime(3150));
        assert_eq!(
            opt(&r, 1),
            &DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0))
        );
        assert_eq!(
            opt(&r, 28),
            &DhcpOption::BroadcastAddress(Ipv4Addr::new(192, 168, 77, 255))
        );
        assert!(matches!(opt(&r, 3), DhcpOption::Router(l) if l.iter().eq([SERVER])));
        match opt(&r, 67) {
            DhcpOption::BootFileName(d) => assert_eq!(d.as_str(), Some("pxelinux.0")),
            o => panic!("{o:?}"),
        }
    }
}

/// dnsmasq proxy OFFER (BIOS): yiaddr 0, broadcast, option 60 `PXEClient`,
/// 97 echoed, option 43 with discovery control 3, prompt (timeout 0,
/// "PXE"), boot server 0x8000 at 192.168.77.1, menu item "e2e BIOS boot".
#[test]
fn dnsmasq_proxy_offer_bios_fields() {
    let bytes = load("dnsmasq-proxy-offer-bios");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    assert_eq!(r.message_type(), Some(MessageType::Offer));
    assert_eq!(p.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(p.broadcast());
    assert_eq!(
        vendor_class(&r),
        VendorClass {
            kind: ClientKind::Pxe,
            arch: None,
            undi: None
        }
    );
    assert_eq!(
        opt(&r, 97),
        &DhcpOption::ClientMachineIdentifier(MachineId::new(GUID))
    );
    let pxe: Vec<_> = opt(&r, 43).pxe_options().unwrap().collect();
    assert_eq!(pxe.len(), 4);
    assert_eq!(pxe[0], PxeOption::DiscoveryControl(DiscoveryControl(3)));
    let DiscoveryControl(bits) = match pxe[0] {
        PxeOption::DiscoveryControl(d) => d,
        _ => unreachable!(),
    };
    assert!(
        DiscoveryControl(bits)
            .has(DiscoveryControl::DISABLE_BROADCAST | DiscoveryControl::DISABLE_MULTICAST)
    );
    match &pxe[1] {
        PxeOption::MenuPrompt(m) => {
            assert_eq!(m.timeout, PromptTimeout::Immediate);
            assert!(m.prompt.eq_bytes(b"PXE"));
        }
        o => panic!("{o:?}"),
    }
    match &pxe[2] {
        PxeOption::BootServers(b) => {
            let v: Vec<BootServer> = b.iter().collect();
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].server_type, 0x8000);
            assert_eq!(v[0].addrs.iter().collect::<Vec<_>>(), [SERVER]);
        }
        o => panic!("{o:?}"),
    }
    match &pxe[3] {
        PxeOption::BootMenu(b) => {
            let v: Vec<BootMenuItem> = b.iter().collect();
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].server_type, 0x8000);
            assert!(v[0].description.eq_bytes(b"e2e BIOS boot"));
        }
        o => panic!("{o:?}"),
    }
}

/// dnsmasq proxy ACKs on 4011: BIOS gets `file` = pxelinux.0 and boot item
/// 0x8000/0; UEFI gets `file` = grubnetx64.efi and `sname` = 192.168.77.1.
#[test]
fn dnsmasq_proxy_acks_fields() {
    let bytes = load("dnsmasq-proxy-ack-4011-bios");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    assert_eq!(r.message_type(), Some(MessageType::Ack));
    assert!(p.broadcast());
    assert_eq!(p.file(), b"pxelinux.0");
    assert_eq!(r.header.file, b"pxelinux.0");
    assert_eq!(p.sname(), b"");
    let pxe: Vec<_> = opt(&r, 43).pxe_options().unwrap().collect();
    assert_eq!(
        pxe,
        [PxeOption::BootItem(BootItem {
            item_type: 0x8000,
            layer: 0,
            credentials: false
        })]
    );

    let bytes = load("dnsmasq-proxy-ack-4011-uefi");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    assert!(!p.broadcast());
    assert_eq!(p.message_type(), Some(MessageType::Ack));
    assert_eq!(p.file(), b"grubnetx64.efi");
    assert_eq!(p.sname(), b"192.168.77.1");
    assert!(p.option(43).is_none());

    let bytes = load("dnsmasq-proxy-offer-uefi");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    assert!(p.broadcast());
    assert_eq!(p.message_type(), Some(MessageType::Offer));
    assert!(p.option(43).is_none(), "no option 43 for UEFI");
}

/// busybox udhcpd OFFER: server 192.168.77.2, lease 3600, mask.
#[test]
fn udhcpd_offer_fields() {
    let bytes = load("udhcpd-offer");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    assert_eq!(r.message_type(), Some(MessageType::Offer));
    assert_eq!(
        opt(&r, 54),
        &DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 77, 2))
    );
    assert_eq!(opt(&r, 51), &DhcpOption::IpAddressLeaseTime(3600));
    assert_eq!(r.options.len(), 4);
}

/// RFC 4578 §2.3 / PXELINUX: the per-UUID config name in the captured
/// pxelinux RRQ is the wire-order rendering of option 97.
#[test]
fn machine_id_renderings() {
    let m = MachineId::new(GUID);
    assert_eq!(
        m.wire_order().to_string(),
        "4e1d7c8b-e0e2-5a4c-9d3e-0000000000e2"
    );
    assert_eq!(
        m.guid_order().to_string(),
        "8b7c1d4e-e2e0-4c5a-9d3e-0000000000e2"
    );
}

/// The view's typed accessors read the same values as the typed walk
/// (RFC 4578 §2.1–2.3 for 93/94/97, RFC 2132 §9.13 for 60), from the iPXE
/// and OVMF DISCOVERs; an absent option is `None`.
#[test]
fn packet_typed_accessors_match_the_walk() {
    let bytes = load("ipxe-bios-discover");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    assert_eq!(p.message_type(), Some(MessageType::Discover));
    assert_eq!(p.client_arch(), Some(ClientArch::X86Bios));
    assert_eq!(p.client_archs().map(|l| l.len()), Some(1));
    assert!(
        p.vendor_class()
            .unwrap()
            .eq_bytes(b"PXEClient:Arch:00000:UNDI:002001")
    );
    assert_eq!(
        p.pxe_vendor_class().map(|v| v.undi),
        Some(Some(UndiVersion { major: 2, minor: 1 }))
    );
    assert_eq!(p.machine_id(), Some(MachineId::new(GUID)));
    assert_eq!(p.client_ndi().map(|n| n.major), Some(2));
    assert_eq!(p.max_message_size(), Some(1472));
    assert!(p.user_class().unwrap().data().eq_bytes(b"iPXE"));
    assert_eq!(
        p.client_id(),
        Some(ClientId::Rfc2132 {
            id_type: 1,
            id: OptionData::new(&CLIENT_MAC)
        })
    );
    assert_eq!(p.requested_ip(), None);
    assert_eq!(p.server_identifier(), None);
    assert!(p.pxe_options().is_none());

    let bytes = load("ovmf-uefi-discover");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    assert_eq!(p.client_arch(), Some(ClientArch::EfiBc));
    assert_eq!(
        p.pxe_vendor_class().map(|v| v.to_string()).as_deref(),
        Some("PXEClient:Arch:00007:UNDI:003000")
    );

    // A proxy OFFER carries PXE sub-options in 43.
    let bytes = load("dnsmasq-proxy-offer-bios");
    let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
    assert!(p.pxe_options().unwrap().count() > 0);
    assert_eq!(p.server_identifier(), Some(Ipv4Addr::new(192, 168, 77, 1)));
}

/// `Debug` of an option payload shows text when it is printable ASCII, hex
/// otherwise, so logs of a vendor class read as the client sent it.
#[test]
fn option_data_debug_shows_text_or_hex() {
    assert_eq!(
        format!("{:?}", OptionData::new(b"PXEClient:Arch:00000")),
        r#"OptionData("PXEClient:Arch:00000")"#
    );
    assert_eq!(
        format!("{:?}", OptionData::new(br#"a "quoted" \ b"#)),
        r#"OptionData("a \"quoted\" \\ b")"#
    );
    assert_eq!(
        format!("{:?}", OptionData::new(&[1, 0x52, 0x54, 0x00])),
        "OptionData(01525400)"
    );
    assert_eq!(format!("{:?}", OptionData::new(b"")), "OptionData()");
}
