//! tshark as an independent oracle for what the server engine sends: the
//! answers to the real iPXE/OVMF requests (proxy OFFERs, boot server ACKs
//! on 4011, full-mode OFFER/ACK, a NAK) go into a pcap, and tshark must
//! decode every one as DHCP with no malformed or error-level expert info,
//! with the fields the clients need.

use preboot::engine::Datagram;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use preboot::Instant;
use preboot::dhcp::config::{BootEntry, MenuPolicy, MtftpParams, Pool, ServerConfig};
use preboot::dhcp::{BootArch, Server};

mod dhcp_support;
use dhcp_support::vector;

/// The DHCP socket (its bound address).
const DHCP: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 67);
/// The boot server socket (its bound address).
const BOOT: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 4011);

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").output().is_ok()
}

/// Ethernet + IPv4 + UDP around a payload (UDP checksum 0 = none).
fn frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 0xfe]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 8 + payload.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend_from_slice(&ip);
    let ulen = 8 + payload.len();
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&(ulen as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&4u16.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&65535u32.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        p.extend_from_slice(&(i as u32).to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&(f.len() as u32).to_le_bytes());
        p.extend_from_slice(&(f.len() as u32).to_le_bytes());
        p.extend_from_slice(f);
    }
    p
}

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

fn answers() -> Vec<Vec<u8>> {
    let t = Instant::from_secs(10);
    let mut proxy = ServerConfig::proxy(SERVER);
    proxy
        .boot
        .set(BootArch::Bios, BootEntry::tftp("pxelinux.0"));
    proxy.boot.get_mut(BootArch::Bios).unwrap().mtftp = Some(MtftpParams {
        ip: Ipv4Addr::new(239, 239, 239, 2),
        client_port: 1760,
        server_port: 1759,
        timeout_secs: 2,
        delay_secs: 4,
    });
    proxy
        .boot
        .set(BootArch::UefiX64, BootEntry::tftp("grubnetx64.efi"));
    proxy.menu.policy = MenuPolicy::OnKeyPress { timeout_secs: 5 };
    let mut full = proxy.clone();
    full.mode = preboot::dhcp::Mode::Full;
    // Full-mode answers with the file in them, and to a PXE client option
    // 60 "PXEClient" with option 43 (discovery control bit 3 and, BIOS
    // only, MTFTP); with a menu they carry the menu instead of the file,
    // which then comes from 4011.
    full.menu.policy = MenuPolicy::Never;
    full.pools
        .push(Pool {
            subnet: Ipv4Addr::new(192, 168, 77, 0),
            prefix_len: 24,
            start: Ipv4Addr::new(192, 168, 77, 129),
            end: Ipv4Addr::new(192, 168, 77, 200),
            router: Some(SERVER),
            dns: [SERVER].as_slice().try_into().unwrap(),
            lease_time: Duration::from_secs(3600),
        })
        .unwrap();
    let mut p = Server::new(proxy).unwrap();
    let mut f = Server::new(full).unwrap();
    let c68 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
    let mut frames = Vec::new();
    let mut buf = [0u8; 1500];
    let mut run = |s: &mut Server, port, from: SocketAddrV4, req: &[u8]| {
        s.handle(
            t,
            Datagram {
                local: port,
                remote: from,
                payload: req,
            },
        );
        let mut n = 0;
        while let Some(tx) = s.poll_transmit(t, &mut buf).unwrap() {
            let src = SocketAddrV4::new(SERVER, if tx.local == Some(BOOT) { 4011 } else { 67 });
            frames.push(frame(src, tx.remote, &buf[..tx.len]));
            n += 1;
        }
        assert_eq!(n, 1, "one answer");
    };
    run(&mut p, DHCP, c68, &vector("ipxe-bios-discover"));
    run(&mut p, DHCP, c68, &vector("ovmf-uefi-discover"));
    run(
        &mut p,
        BOOT,
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 139), 68),
        &vector("ipxe-bios-request-4011"),
    );
    run(
        &mut p,
        BOOT,
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 145), 4011),
        &vector("ovmf-uefi-request-4011"),
    );
    run(&mut f, DHCP, c68, &vector("ipxe-bios-discover"));
    run(&mut f, DHCP, c68, &vector("ipxe-bios-request"));
    let mut wrong = vector("ovmf-uefi-request");
    let i = wrong
        .windows(6)
        .position(|w| w == [50, 4, 192, 168, 77, 135])
        .unwrap();
    wrong[i + 2..i + 6].copy_from_slice(&[10, 0, 0, 1]);
    run(&mut f, DHCP, c68, &wrong);
    frames
}

#[test]
#[cfg_attr(preboot_skip_tshark, ignore = "needs tshark (Debian package tshark)")]
fn tshark_decodes_every_answer_cleanly() {
    // Without tshark the build marks this test ignored.
    assert!(
        have("tshark"),
        "tshark not installed (apt-get install tshark)"
    );
    let frames = answers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("answers.pcap");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&pcap(&frames))
        .unwrap();
    let fields = Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-d",
            "udp.port==4011,dhcp",
            "-T",
            "fields",
            "-E",
            "separator=|",
        ])
        .args([
            "-e",
            "dhcp.option.dhcp",
            "-e",
            "dhcp.option.vendor_class_id",
            "-e",
            "dhcp.file",
        ])
        .args([
            "-e",
            "dhcp.ip.server",
            "-e",
            "dhcp.option.dhcp_server_id",
            "-e",
            "_ws.expert.severity",
        ])
        .args(["-e", "_ws.malformed"])
        .output()
        .unwrap();
    assert!(
        fields.status.success(),
        "{}",
        String::from_utf8_lossy(&fields.stderr)
    );
    let out = String::from_utf8(fields.stdout).unwrap();
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), frames.len(), "{out}");
    // Message types: OFFER, OFFER, ACK, ACK, OFFER, ACK, NAK.
    let types: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(types, ["2", "2", "5", "5", "2", "5", "6"], "{out}");
    assert_eq!(rows[0][1], "PXEClient");
    assert_eq!(rows[1][1], "PXEClient");
    assert_eq!(rows[2][2], "pxelinux.0");
    assert_eq!(rows[3][2], "grubnetx64.efi");
    assert_eq!(rows[4][2], "pxelinux.0");
    // Full mode to iPXE: OFFER and ACK say "PXEClient" (PXE 2.1 §2.2.1
    // step 2), the NAK does not.
    assert_eq!(rows[4][1], "PXEClient", "{out}");
    assert_eq!(rows[5][1], "PXEClient", "{out}");
    assert_eq!(rows[5][2], "pxelinux.0", "{out}");
    assert!(rows[6][1].is_empty(), "{out}");
    for r in &rows[..6] {
        assert_eq!(r[3], "192.168.77.1", "siaddr: {out}");
    }
    for r in &rows {
        assert_eq!(r[4], "192.168.77.1", "server id: {out}");
        assert!(r[6].is_empty(), "malformed: {out}");
    }
    // Full verbose decode: no malformed packet, no error-level expert info.
    let v = Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-d",
            "udp.port==4011,dhcp",
            "-V",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(!text.contains("Malformed"), "{text}");
    assert!(!text.contains("Severity level: Error"), "{text}");
    // The PXE sub-options tshark found (proxy OFFERs and the 4011 ACK); the
    // MTFTP ports read back little-endian, as Intel's reference sends them.
    for needle in [
        "(1) PXE mtftp IP",
        "mtftp client port: 1760",
        "mtftp server port: 1759",
        "(6) PXE discovery control",
        "(8) PXE boot servers",
        "(9) PXE boot menu",
        "Timeout: 5",
        "Prompt: Press F8 for boot menu",
        "(71) PXE boot item",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
}
