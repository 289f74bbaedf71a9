//! Property tests: every `Repr`/typed option round-trips (emit → parse →
//! equal), and a parsed-then-emitted message re-emits to the same bytes.
//! Strategies build owned values; the typed options borrow from them.

use std::net::{Ipv4Addr, SocketAddrV4};

use preboot::wire::dhcp::{
    ClientId, DhcpHeader, DhcpOption, DhcpPacket, DhcpRepr, List, MessageType, OptionData,
    RelayAgentInfo, SubOption, UserClass,
};
use preboot::wire::pxe::{
    BootItem, BootMenuItem, BootServer, ClientArch, ClientKind, DiscoveryControl, Entries,
    MachineId, McastAddrsAlloc, MenuPrompt, MtftpPort, Ndi, PromptTimeout, PxeOption, PxeOptions,
    UndiVersion, VendorClass,
};
use proptest::collection::vec;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Owned {
    Addr(u8, Ipv4Addr),
    Addrs(u8, Vec<Ipv4Addr>),
    Bytes(u8, Vec<u8>),
    U32(u8, u32),
    MaxSize(u16),
    MsgType(u8),
    Duid(u32, Vec<u8>),
    Rfc2132Id(u8, Vec<u8>),
    UserClass(Vec<u8>),
    Relay(Vec<(u8, Vec<u8>)>),
    Archs(Vec<ClientArch>),
    Ndi(u8, u8, u8),
    Machine(u8, [u8; 16]),
    Magic([u8; 4]),
    Unknown(u8, Vec<u8>),
}

fn addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn owned() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (prop::sample::select(vec![1u8, 28, 50, 54]), addr()).prop_map(|(c, a)| Owned::Addr(c, a)),
        (prop::sample::select(vec![3u8, 6, 150]), vec(addr(), 0..80))
            .prop_map(|(c, a)| Owned::Addrs(c, a)),
        (
            prop::sample::select(vec![12u8, 15, 43, 55, 56, 60, 66, 67, 175, 209, 210]),
            vec(any::<u8>(), 0..700)
        )
            .prop_map(|(c, b)| Owned::Bytes(c, b)),
        (prop::sample::select(vec![51u8, 58, 59, 211]), any::<u32>())
            .prop_map(|(c, v)| Owned::U32(c, v)),
        any::<u16>().prop_map(Owned::MaxSize),
        any::<u8>().prop_map(Owned::MsgType),
        (any::<u32>(), vec(any::<u8>(), 0..300)).prop_map(|(i, d)| Owned::Duid(i, d)),
        (0u8..255, vec(any::<u8>(), 1..40)).prop_map(|(t, d)| Owned::Rfc2132Id(t, d)),
        vec(any::<u8>(), 1..300).prop_map(Owned::UserClass),
        vec((any::<u8>(), vec(any::<u8>(), 0..255)), 0..4).prop_map(Owned::Relay),
        vec(any::<u16>().prop_map(ClientArch::from), 0..4).prop_map(Owned::Archs),
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| Owned::Ndi(a, b, c)),
        (any::<u8>(), any::<[u8; 16]>()).prop_map(|(t, b)| Owned::Machine(t, b)),
        any::<[u8; 4]>().prop_map(Owned::Magic),
        (
            any::<u8>().prop_filter("untyped code", |c| *c != 0
                && *c != 255
                && !DhcpOption::is_known(*c)),
            vec(any::<u8>(), 0..400)
        )
            .prop_map(|(c, d)| Owned::Unknown(c, d)),
    ]
}

fn code_of(o: &Owned) -> u8 {
    match o {
        Owned::Addr(c, _) | Owned::Addrs(c, _) | Owned::Bytes(c, _) | Owned::U32(c, _) => *c,
        Owned::MaxSize(_) => 57,
        Owned::MsgType(_) => 53,
        Owned::Duid(..) | Owned::Rfc2132Id(..) => 61,
        Owned::UserClass(_) => 77,
        Owned::Relay(_) => 82,
        Owned::Archs(_) => 93,
        Owned::Ndi(..) => 94,
        Owned::Machine(..) => 97,
        Owned::Magic(_) => 208,
        Owned::Unknown(c, _) => *c,
    }
}

fn typed<'a>(o: &'a Owned, subs: &'a [SubOption<'a>]) -> DhcpOption<'a> {
    match o {
        Owned::Addr(c, a) => match c {
            1 => DhcpOption::SubnetMask(*a),
            28 => DhcpOption::BroadcastAddress(*a),
            50 => DhcpOption::RequestedIpAddress(*a),
            _ => DhcpOption::ServerIdentifier(*a),
        },
        Owned::Addrs(c, a) => match c {
            3 => DhcpOption::Router(List::Items(a)),
            6 => DhcpOption::DomainNameServer(List::Items(a)),
            _ => DhcpOption::TftpServerAddress(List::Items(a)),
        },
        Owned::Bytes(c, b) => {
            let d = OptionData::new(b);
            match c {
                12 => DhcpOption::HostName(d),
                15 => DhcpOption::DomainName(d),
                43 => DhcpOption::VendorSpecific(d),
                55 => DhcpOption::ParameterRequestList(d),
                56 => DhcpOption::Message(d),
                60 => DhcpOption::VendorClassIdentifier(d),
                66 => DhcpOption::TftpServerName(d),
                67 => DhcpOption::BootFileName(d),
                175 => DhcpOption::IpxeEncapsulated(d),
                209 => DhcpOption::PxelinuxConfigFile(d),
                _ => DhcpOption::PxelinuxPathPrefix(d),
            }
        }
        Owned::U32(c, v) => match c {
            51 => DhcpOption::IpAddressLeaseTime(*v),
            58 => DhcpOption::RenewalTime(*v),
            59 => DhcpOption::RebindingTime(*v),
            _ => DhcpOption::PxelinuxRebootTime(*v),
        },
        Owned::MaxSize(v) => DhcpOption::MaximumMessageSize(*v),
        Owned::MsgType(v) => DhcpOption::MessageType(MessageType::from(*v)),
        Owned::Duid(iaid, d) => DhcpOption::ClientIdentifier(ClientId::Duid {
            iaid: *iaid,
            duid: OptionData::new(d),
        }),
        Owned::Rfc2132Id(t, d) => DhcpOption::ClientIdentifier(ClientId::Rfc2132 {
            id_type: *t,
            id: OptionData::new(d),
        }),
        Owned::UserClass(d) => DhcpOption::UserClass(UserClass(OptionData::new(d))),
        Owned::Relay(_) => DhcpOption::RelayAgentInformation(RelayAgentInfo::Items(subs)),
        Owned::Archs(a) => DhcpOption::ClientSystemArchitecture(List::Items(a)),
        Owned::Ndi(a, b, c) => DhcpOption::ClientNetworkInterface(Ndi {
            interface_type: *a,
            major: *b,
            minor: *c,
        }),
        Owned::Machine(t, b) => DhcpOption::ClientMachineIdentifier(MachineId {
            id_type: *t,
            bytes: *b,
        }),
        Owned::Magic(m) => DhcpOption::PxelinuxMagic(*m),
        Owned::Unknown(c, d) => DhcpOption::Unknown {
            code: *c,
            data: OptionData::new(d),
        },
    }
}

#[derive(Debug, Clone)]
struct OwnedHeader {
    fixed: (u8, u8, u8, u8, u32, u16, u16),
    addrs: [Ipv4Addr; 4],
    chaddr: [u8; 16],
    sname: Vec<u8>,
    file: Vec<u8>,
}

fn header() -> impl Strategy<Value = OwnedHeader> {
    (
        any::<(u8, u8, u8, u8, u32, u16, u16)>(),
        [addr(), addr(), addr(), addr()],
        any::<[u8; 16]>(),
        vec(1u8..=255, 0..=64),
        vec(1u8..=255, 0..=128),
    )
        .prop_map(|(fixed, addrs, chaddr, sname, file)| OwnedHeader {
            fixed,
            addrs,
            chaddr,
            sname,
            file,
        })
}

fn dedup(mut v: Vec<Owned>) -> Vec<Owned> {
    let mut seen = [false; 256];
    v.retain(|o| !std::mem::replace(&mut seen[code_of(o) as usize], true));
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// RFC 2131 message + RFC 3396 splitting: emit → parse → equal, and
    /// parse → emit is byte-exact.
    #[test]
    fn dhcp_repr_round_trips(h in header(), opts in vec(owned(), 0..24).prop_map(dedup)) {
        let relay: Vec<Vec<SubOption>> = opts.iter().map(|o| match o {
            Owned::Relay(s) => s.iter().map(|(c, d)| SubOption { code: *c, data: OptionData::new(d) }).collect(),
            _ => Vec::new(),
        }).collect();
        let options: Vec<DhcpOption> = opts.iter().zip(&relay).map(|(o, s)| typed(o, s)).collect();
        let (op, htype, hlen, hops, xid, secs, flags) = h.fixed;
        let header = DhcpHeader {
            op, htype, hlen, hops, xid, secs, flags,
            ciaddr: h.addrs[0], yiaddr: h.addrs[1], siaddr: h.addrs[2], giaddr: h.addrs[3],
            chaddr: h.chaddr, sname: &h.sname, file: &h.file,
        };
        let len = header.buffer_len(&options).unwrap();
        let mut buf = vec![0u8; len];
        prop_assert_eq!(header.emit(&options, &mut buf), Ok(len));
        let p = DhcpPacket::new_checked(&buf[..]).unwrap();
        let repr = DhcpRepr::parse(&p).unwrap();
        prop_assert_eq!(&repr.header, &header);
        prop_assert_eq!(&repr.options[..], &options[..]);
        let mut again = vec![0u8; len];
        prop_assert_eq!(repr.emit(&mut again), Ok(len));
        prop_assert_eq!(&again, &buf);
    }

    /// PXE 2.1 option 43: emit → parse → equal for every sub-option type
    /// (with the vendor-range transaction sub-options 128 and 129).
    #[test]
    fn pxe_options_round_trip(
        v in vec(pxe_owned(), 0..8),
    ) {
        let servers: Vec<Vec<BootServer>> = v.iter().map(|o| match o {
            PxeOwned::Servers(s) => s.iter().map(|(t, a)| BootServer { server_type: *t, addrs: List::Items(a) }).collect(),
            _ => Vec::new(),
        }).collect();
        let menus: Vec<Vec<BootMenuItem>> = v.iter().map(|o| match o {
            PxeOwned::Menu(s) => s.iter().map(|(t, d)| BootMenuItem { server_type: *t, description: OptionData::new(d) }).collect(),
            _ => Vec::new(),
        }).collect();
        let opts: Vec<PxeOption> = v.iter().enumerate().map(|(i, o)| pxe_typed(o, &servers[i], &menus[i])).collect();
        let len = PxeOptions::buffer_len(&opts).unwrap();
        let mut buf = vec![0u8; len];
        prop_assert_eq!(PxeOptions::emit(&opts, &mut buf), Ok(len));
        let back: Vec<PxeOption> = PxeOptions::new(OptionData::new(&buf)).collect();
        prop_assert_eq!(&back, &opts);
        // And inside a DHCP option 43.
        let o43 = DhcpOption::VendorSpecific(OptionData::new(&buf));
        let back: Vec<PxeOption> = o43.pxe_options().unwrap().collect();
        prop_assert_eq!(&back, &opts);
    }

    /// Vendor class strings (PXE 2.1 §2.2.5): write → parse → equal.
    #[test]
    fn vendor_class_round_trips(http in any::<bool>(), arch in proptest::option::of(any::<u16>()), undi in proptest::option::of((0u16..1000, 0u16..1000))) {
        let vc = VendorClass {
            kind: if http { ClientKind::Http } else { ClientKind::Pxe },
            arch: arch.map(ClientArch::from),
            undi: arch.and(undi).map(|(major, minor)| UndiVersion { major, minor }),
        };
        let mut buf = [0u8; VendorClass::MAX_LEN];
        let n = vc.write(&mut buf).unwrap();
        prop_assert_eq!(n, vc.encoded_len());
        prop_assert_eq!(VendorClass::parse(&buf[..n]), Ok(vc));
        let text = vc.to_string();
        prop_assert_eq!(text.as_bytes(), &buf[..n]);
    }

    /// Arbitrary bytes never panic the parsers, and whatever parses
    /// re-parses equal after emitting.
    #[test]
    fn arbitrary_bytes_parse_or_fail_cleanly(mut bytes in vec(any::<u8>(), 0..700), cookie in any::<bool>()) {
        if cookie && bytes.len() >= 240 {
            bytes[236..240].copy_from_slice(&[99, 130, 83, 99]);
        }
        if let Ok(p) = DhcpPacket::new_checked(&bytes[..]) {
            if let Ok(r) = DhcpRepr::parse(&p) {
                if let Ok(len) = r.buffer_len() {
                    let mut out = vec![0u8; len];
                    r.emit(&mut out).unwrap();
                    let p2 = DhcpPacket::new_checked(&out[..]).unwrap();
                    let r2 = DhcpRepr::parse(&p2).unwrap();
                    prop_assert_eq!(r2.options, r.options);
                }
            }
        }
        let _ = VendorClass::parse(&bytes);
        let _ = PxeOptions::new(OptionData::new(&bytes)).count();
    }
}

#[derive(Debug, Clone)]
enum PxeOwned {
    Ip(u8, Ipv4Addr),
    Port(u8, u16),
    Byte(u8, u8),
    Servers(Vec<(u16, Vec<Ipv4Addr>)>),
    Menu(Vec<(u16, Vec<u8>)>),
    Prompt(u8, Vec<u8>),
    Alloc(Ipv4Addr, u16, u16),
    Creds(Vec<u32>),
    Item(u16, u16, bool),
    Transaction(Ipv4Addr, u16),
    Key([u8; 32]),
    Unknown(u8, Vec<u8>),
}

fn pxe_owned() -> impl Strategy<Value = PxeOwned> {
    prop_oneof![
        (prop::sample::select(vec![1u8, 7]), addr()).prop_map(|(c, a)| PxeOwned::Ip(c, a)),
        (2u8..=3, any::<u16>()).prop_map(|(c, p)| PxeOwned::Port(c, p)),
        (prop::sample::select(vec![4u8, 5, 6]), any::<u8>())
            .prop_map(|(c, b)| PxeOwned::Byte(c, b)),
        vec((any::<u16>(), vec(addr(), 0..6)), 0..5).prop_map(PxeOwned::Servers),
        vec((any::<u16>(), vec(any::<u8>(), 0..40)), 0..5).prop_map(PxeOwned::Menu),
        (any::<u8>(), vec(any::<u8>(), 0..200)).prop_map(|(t, p)| PxeOwned::Prompt(t, p)),
        (addr(), any::<u16>(), any::<u16>()).prop_map(|(a, t, m)| PxeOwned::Alloc(a, t, m)),
        vec(any::<u32>(), 0..30).prop_map(PxeOwned::Creds),
        (any::<u16>(), 0u16..0x8000, any::<bool>()).prop_map(|(t, l, c)| PxeOwned::Item(t, l, c)),
        (addr(), any::<u16>()).prop_map(|(a, p)| PxeOwned::Transaction(a, p)),
        any::<[u8; 32]>().prop_map(PxeOwned::Key),
        (
            any::<u8>().prop_filter("untyped", |c| *c != 0
                && *c != 255
                && !PxeOption::is_known(*c)),
            vec(any::<u8>(), 0..255)
        )
            .prop_map(|(c, d)| PxeOwned::Unknown(c, d)),
    ]
}

fn pxe_typed<'a>(
    o: &'a PxeOwned,
    servers: &'a [BootServer<'a>],
    menu: &'a [BootMenuItem<'a>],
) -> PxeOption<'a> {
    match o {
        PxeOwned::Ip(1, a) => PxeOption::MtftpIp(*a),
        PxeOwned::Ip(_, a) => PxeOption::DiscoveryMcastAddr(*a),
        PxeOwned::Port(2, p) => PxeOption::MtftpClientPort(MtftpPort(*p)),
        PxeOwned::Port(_, p) => PxeOption::MtftpServerPort(MtftpPort(*p)),
        PxeOwned::Byte(4, b) => PxeOption::MtftpTimeout(*b),
        PxeOwned::Byte(5, b) => PxeOption::MtftpDelay(*b),
        PxeOwned::Byte(_, b) => PxeOption::DiscoveryControl(DiscoveryControl(*b)),
        PxeOwned::Servers(_) => PxeOption::BootServers(Entries::Items(servers)),
        PxeOwned::Menu(_) => PxeOption::BootMenu(Entries::Items(menu)),
        PxeOwned::Prompt(t, p) => PxeOption::MenuPrompt(MenuPrompt {
            timeout: PromptTimeout::from(*t),
            prompt: OptionData::new(p),
        }),
        PxeOwned::Alloc(a, t, m) => PxeOption::McastAddrsAlloc(McastAddrsAlloc {
            base: *a,
            t_num: *t,
            m_num: *m,
        }),
        PxeOwned::Creds(c) => PxeOption::CredentialTypes(List::Items(c)),
        PxeOwned::Item(t, l, c) => PxeOption::BootItem(BootItem {
            item_type: *t,
            layer: *l,
            credentials: *c,
        }),
        PxeOwned::Transaction(a, p) => PxeOption::TransactionServer(SocketAddrV4::new(*a, *p)),
        PxeOwned::Key(k) => PxeOption::TransactionServerKey(*k),
        PxeOwned::Unknown(c, d) => PxeOption::Unknown {
            code: *c,
            data: OptionData::new(d),
        },
    }
}

/// IANA arch registry: every u16 maps to a variant and back.
#[test]
fn client_arch_values_round_trip() {
    for v in 0..=u16::MAX {
        assert_eq!(u16::from(ClientArch::from(v)), v);
    }
    assert_eq!(ClientArch::from(0), ClientArch::X86Bios);
    assert_eq!(ClientArch::from(6), ClientArch::EfiIa32);
    assert_eq!(ClientArch::from(7), ClientArch::EfiBc);
    assert_eq!(ClientArch::from(9), ClientArch::EfiX64);
    assert_eq!(ClientArch::from(10), ClientArch::Arm32Uefi);
    assert_eq!(ClientArch::from(11), ClientArch::Arm64Uefi);
    assert_eq!(ClientArch::from(15), ClientArch::X86UefiHttp);
    assert_eq!(ClientArch::from(16), ClientArch::X64UefiHttp);
    assert_eq!(ClientArch::from(999), ClientArch::Unknown(999));
    assert!(ClientArch::X64UefiHttp.is_http() && ClientArch::X64UefiHttp.is_uefi());
    assert!(!ClientArch::X86Bios.is_uefi());
}
