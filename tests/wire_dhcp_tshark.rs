//! tshark as an independent oracle: our emitted OFFER, ACK and proxy
//! OFFERs (option 43 with menu, prompt, boot servers; MTFTP sub-options
//! with their little-endian ports) are written into a pcap (Ethernet /
//! IPv4 / UDP framing built here) and decoded by `tshark -V`; the decoded
//! fields must match and tshark must report nothing malformed and no
//! expert warnings or errors.
//!
//! Needs `tshark` (Debian package `tshark`). Without it the test is listed
//! as ignored (build.rs decides) unless `PREBOOT_CI=1`, where it fails.

use std::net::Ipv4Addr;
use std::process::Command;

use preboot::wire::dhcp::{
    ClientId, DhcpHeader, DhcpOption, FLAG_BROADCAST, List, MessageType, OptionData,
    RelayAgentInfo, SubOption,
};
use preboot::wire::pxe::{
    BootItem, BootMenuItem, BootServer, DiscoveryControl, Entries, MachineId, MenuPrompt,
    MtftpPort, PromptTimeout, PxeOption, PxeOptions,
};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 129);
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const GUID: [u8; 16] = [
    0x4e, 0x1d, 0x7c, 0x8b, 0xe0, 0xe2, 0x5a, 0x4c, 0x9d, 0x3e, 0, 0, 0, 0, 0, 0xe2,
];

fn chaddr() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..6].copy_from_slice(&MAC);
    c
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Ethernet II + IPv4 + UDP (checksum 0: "none", RFC 768) around `payload`.
fn frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 8 + payload.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let ulen = (8 + payload.len()) as u16;
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&ulen.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A classic pcap file (LINKTYPE_ETHERNET) holding `frames`.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&4u16.to_le_bytes());
    p.extend_from_slice(&0i32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&65535u32.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        p.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&(f.len() as u32).to_le_bytes());
        p.extend_from_slice(&(f.len() as u32).to_le_bytes());
        p.extend_from_slice(f);
    }
    p
}

fn emit(h: &DhcpHeader<'_>, opts: &[DhcpOption<'_>]) -> Vec<u8> {
    let mut buf = vec![0u8; h.buffer_len(opts).unwrap()];
    let n = h.emit(opts, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn full_offer() -> Vec<u8> {
    let h = DhcpHeader {
        op: 2,
        xid: 0x1122_3344,
        yiaddr: CLIENT,
        siaddr: SERVER,
        chaddr: chaddr(),
        file: b"pxelinux.0",
        ..DhcpHeader::default()
    };
    let dns = [SERVER, Ipv4Addr::new(9, 9, 9, 9)];
    let routers = [SERVER];
    emit(
        &h,
        &[
            DhcpOption::MessageType(MessageType::Offer),
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::IpAddressLeaseTime(3600),
            DhcpOption::RenewalTime(1800),
            DhcpOption::RebindingTime(3150),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(List::Items(&routers)),
            DhcpOption::DomainNameServer(List::Items(&dns)),
            DhcpOption::DomainName(OptionData::new(b"lab.example")),
            DhcpOption::TftpServerName(OptionData::new(b"192.168.77.1")),
            DhcpOption::BootFileName(OptionData::new(b"pxelinux.0")),
            DhcpOption::TftpServerAddress(List::Items(&routers)),
        ],
    )
}

fn full_ack() -> Vec<u8> {
    let h = DhcpHeader {
        op: 2,
        xid: 0x1122_3345,
        yiaddr: CLIENT,
        giaddr: Ipv4Addr::new(192, 168, 77, 254),
        chaddr: chaddr(),
        ..DhcpHeader::default()
    };
    let subs = [
        SubOption {
            code: RelayAgentInfo::CIRCUIT_ID,
            data: OptionData::new(b"port7"),
        },
        SubOption {
            code: RelayAgentInfo::REMOTE_ID,
            data: OptionData::new(b"switch1"),
        },
    ];
    emit(
        &h,
        &[
            DhcpOption::MessageType(MessageType::Ack),
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::IpAddressLeaseTime(7200),
            DhcpOption::HostName(OptionData::new(b"ws-017")),
            DhcpOption::ClientIdentifier(ClientId::Rfc2132 {
                id_type: 1,
                id: OptionData::new(&MAC),
            }),
            DhcpOption::PxelinuxMagic(DhcpOption::PXELINUX_MAGIC),
            DhcpOption::PxelinuxConfigFile(OptionData::new(b"pxelinux.cfg/default")),
            DhcpOption::PxelinuxPathPrefix(OptionData::new(b"/boot/")),
            DhcpOption::PxelinuxRebootTime(300),
            DhcpOption::RelayAgentInformation(RelayAgentInfo::Items(&subs)),
        ],
    )
}

fn proxy_offer(vendor: &[PxeOption<'_>], xid: u32) -> Vec<u8> {
    let mut o43 = [0u8; 255];
    let n = PxeOptions::emit(vendor, &mut o43).unwrap();
    let h = DhcpHeader {
        op: 2,
        xid,
        flags: FLAG_BROADCAST,
        siaddr: SERVER,
        chaddr: chaddr(),
        ..DhcpHeader::default()
    };
    emit(
        &h,
        &[
            DhcpOption::MessageType(MessageType::Offer),
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::VendorClassIdentifier(OptionData::new(b"PXEClient")),
            DhcpOption::ClientMachineIdentifier(MachineId::new(GUID)),
            DhcpOption::VendorSpecific(OptionData::new(&o43[..n])),
        ],
    )
}

fn proxy_offer_menu() -> Vec<u8> {
    let servers_addrs = [SERVER, Ipv4Addr::new(192, 168, 77, 2)];
    let servers = [BootServer {
        server_type: 0x8000,
        addrs: List::Items(&servers_addrs),
    }];
    let menu = [
        BootMenuItem {
            server_type: 0x8000,
            description: OptionData::new(b"Imaging"),
        },
        BootMenuItem {
            server_type: 0,
            description: OptionData::new(b"Local boot"),
        },
    ];
    proxy_offer(
        &[
            PxeOption::DiscoveryControl(DiscoveryControl(DiscoveryControl::DISABLE_MULTICAST)),
            PxeOption::BootServers(Entries::Items(&servers)),
            PxeOption::BootMenu(Entries::Items(&menu)),
            PxeOption::MenuPrompt(MenuPrompt {
                timeout: PromptTimeout::Seconds(5),
                prompt: OptionData::new(b"Press F8 for menu"),
            }),
        ],
        0x5566_7788,
    )
}

fn proxy_offer_mtftp() -> Vec<u8> {
    proxy_offer(
        &[
            PxeOption::MtftpIp(Ipv4Addr::new(239, 239, 239, 2)),
            PxeOption::MtftpClientPort(MtftpPort(1760)),
            PxeOption::MtftpServerPort(MtftpPort(1759)),
            PxeOption::MtftpTimeout(2),
            PxeOption::MtftpDelay(4),
            PxeOption::BootItem(BootItem {
                item_type: 0x8000,
                layer: 3,
                credentials: false,
            }),
        ],
        0x5566_7789,
    )
}

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// RFC 2131/2132, RFC 3046, RFC 5071, RFC 4578 and PXE 2.1 table 2-1, as
/// Wireshark's DHCP dissector reads them.
#[test]
#[cfg_attr(preboot_skip_tshark, ignore = "needs tshark (Debian package tshark)")]
fn tshark_decodes_our_messages() {
    // Without tshark the build marks this test ignored.
    assert!(
        tshark_available(),
        "tshark not installed (apt-get install tshark)"
    );
    let frames = [
        frame(SERVER, CLIENT, 67, 68, &full_offer()),
        frame(SERVER, CLIENT, 67, 68, &full_ack()),
        frame(SERVER, Ipv4Addr::BROADCAST, 67, 68, &proxy_offer_menu()),
        frame(SERVER, Ipv4Addr::BROADCAST, 67, 68, &proxy_offer_mtftp()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wire_dhcp.pcap");
    std::fs::write(&path, pcap(&frames)).unwrap();

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .arg("-V")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let per_frame: Vec<&str> = text.split("\nFrame ").collect();
    assert_eq!(per_frame.len(), 4, "{text}");

    let expect = |i: usize, lines: &[&str]| {
        for l in lines {
            assert!(
                per_frame[i].lines().any(|x| x.trim() == *l),
                "frame {}: missing {l:?} in\n{}",
                i + 1,
                per_frame[i]
            );
        }
    };
    expect(
        0,
        &[
            "DHCP: Offer (2)",
            "Transaction ID: 0x11223344",
            "Your (client) IP address: 192.168.77.129",
            "Next server IP address: 192.168.77.1",
            "Client MAC address: RealtekU_12:34:56 (52:54:00:12:34:56)",
            "Boot file name: pxelinux.0",
            "DHCP Server Identifier: 192.168.77.1",
            "IP Address Lease Time: (3600s) 1 hour",
            "Renewal Time Value: (1800s) 30 minutes",
            "Rebinding Time Value: (3150s) 52 minutes, 30 seconds",
            "Subnet Mask: 255.255.255.0",
            "Router: 192.168.77.1",
            "Domain Name Server: 192.168.77.1",
            "Domain Name Server: 9.9.9.9",
            "Domain Name: lab.example",
            "TFTP Server Name: 192.168.77.1",
            "Bootfile name: pxelinux.0",
            "TFTP Server Address: 192.168.77.1",
        ],
    );
    expect(
        1,
        &[
            "DHCP: ACK (5)",
            "Relay agent IP address: 192.168.77.254",
            "IP Address Lease Time: (7200s) 2 hours",
            "Host Name: ws-017",
            "Client MAC address: RealtekU_12:34:56 (52:54:00:12:34:56)",
            "Agent Circuit ID: 706f727437",
            "Agent Remote ID: 73776974636831",
            "Option: (208) PXELINUX Magic",
            "Value: f100747e",
            "PXELINUX configuration file: pxelinux.cfg/default",
            "PXELINUX path prefix: /boot/",
            "Value: 0000012c",
        ],
    );
    expect(
        2,
        &[
            "DHCP: Offer (2)",
            "1... .... .... .... = Broadcast flag: Broadcast",
            "Vendor class identifier: PXEClient",
            // Wireshark renders option 97 in the mixed-endian GUID order.
            &format!(
                "Client Identifier (UUID): {}",
                MachineId::new(GUID).guid_order()
            ),
            "Option: (43) Vendor-Specific Information (PXEClient)",
            ".... ..1. = Disable Multicast: Set",
            "IP count: 2",
            "IP: 192.168.77.1",
            "IP: 192.168.77.2",
            "Description: Imaging",
            "Description: Local boot",
            "Timeout: 5",
            "Prompt: Press F8 for menu",
            "PXE Client End: 255",
        ],
    );
    expect(
        3,
        &[
            "mtftp IP: 239.239.239.2",
            // Little-endian on the wire (module docs of wire::pxe).
            "mtftp client port: 1760",
            "mtftp server port: 1759",
            "mtftp timeout: 2",
            "mtftp delay: 4",
            "boot item: 80000003",
        ],
    );
    assert!(!text.contains("Malformed"), "{text}");
    assert!(!text.contains("Expert Info"), "{text}");

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-q", "-z", "expert,warn"])
        .output()
        .unwrap();
    let expert = String::from_utf8_lossy(&out.stdout);
    assert!(!expert.contains("Errors ("), "{expert}");
    assert!(!expert.contains("Warns ("), "{expert}");
}
