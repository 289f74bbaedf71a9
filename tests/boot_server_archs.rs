//! The boot server answers every architecture of the architecture table
//! with its own file, through its real sockets (loopback, unprivileged
//! ports): a PXE DISCOVER with option 93 and the `Arch:` field of option 60
//! on the DHCP port, then the proxyDHCP REQUEST on the boot server port
//! (4011 in production), whose ACK names the file (PXE 2.1 §2.2.1).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use preboot::driver::boot_server::{BootServer, config};
use preboot::wire::dhcp::{DhcpHeader, DhcpOption, DhcpPacket, List, MessageType, OptionData};
use preboot::wire::pxe::ClientArch;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A running boot server with this `[boot]` table and no TFTP; stopped on
/// drop.
struct Running {
    dhcp: SocketAddr,
    boot: SocketAddr,
    client: UdpSocket,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(boot_table: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let client = UdpSocket::bind((LO, 0)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let client_port = client.local_addr().unwrap().port();
    // A port that was free a moment ago (0 would mean no boot socket).
    let boot_port = UdpSocket::bind((LO, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\n\
         [ports]\ndhcp = 0\nboot = {boot_port}\ntftp = 0\nclient = {client_port}\n\
         [boot]\n{boot_table}\n[tftp]\nenabled = false\n"
    );
    let c = config::parse(&dir.path().join("p.toml"), &text).unwrap();
    let server = BootServer::bind(c).unwrap();
    let dhcp = server.dhcp_addr();
    let boot = server.boot_addr().expect("a boot server socket");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        server.run(&flag).unwrap();
    });
    Running {
        dhcp,
        boot,
        client,
        stop,
        thread: Some(thread),
    }
}

/// A firmware message of architecture `code` (option 93 and the vendor
/// class `<class>:Arch:000NN:UNDI:003000`).
fn message(kind: MessageType, code: u16, class: &str) -> Vec<u8> {
    let vc = format!("{class}:Arch:{code:05}:UNDI:003000");
    let hdr = DhcpHeader {
        op: 1,
        htype: 1,
        hlen: 6,
        xid: 0x5eed_0000 | u32::from(code),
        chaddr: [
            0x52, 0x54, 0, 0x12, 0x34, code as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        ..DhcpHeader::default()
    };
    let mut buf = [0u8; 576];
    let n = hdr
        .emit(
            &[
                DhcpOption::MessageType(kind),
                DhcpOption::VendorClassIdentifier(OptionData::new(vc.as_bytes())),
                DhcpOption::ClientSystemArchitecture(List::Items(&[ClientArch::from(code)])),
            ],
            &mut buf,
        )
        .unwrap();
    buf[..n].to_vec()
}

fn exchange(s: &Running, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    s.client.send_to(msg, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = s.client.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// DISCOVER on the DHCP port, REQUEST on the boot port: the file the ACK
/// names, and whether the answers carry option 43 MTFTP sub-options.
fn boot_file(s: &Running, code: u16, class: &str) -> String {
    let offer = exchange(s, s.dhcp, &message(MessageType::Discover, code, class))
        .unwrap_or_else(|| panic!("arch {code}: no OFFER within 5 s"));
    let p = DhcpPacket::new_checked(&offer[..]).unwrap();
    assert_eq!(p.message_type(), Some(MessageType::Offer), "arch {code}");
    assert_eq!(
        p.yiaddr(),
        Ipv4Addr::UNSPECIFIED,
        "proxyDHCP gives no address"
    );
    let mut vc = [0u8; 64];
    let n = p.vendor_class().and_then(|v| v.copy_to(&mut vc).ok());
    assert!(
        n.is_some_and(|n| vc[..n].starts_with(class.as_bytes())),
        "arch {code}: answered as {class}"
    );
    let ack = exchange(s, s.boot, &message(MessageType::Request, code, class))
        .unwrap_or_else(|| panic!("arch {code}: no ACK from the boot port within 5 s"));
    let p = DhcpPacket::new_checked(&ack[..]).unwrap();
    assert_eq!(p.message_type(), Some(MessageType::Ack), "arch {code}");
    String::from_utf8(p.file().to_vec()).unwrap()
}

/// Every architecture gets the file of its own key, never another's.
const TABLE: &str = r#"bios = "bios/pxelinux.0"
uefi_x64 = "efi64/bootx64.efi"
uefi_arm32 = "arm/bootarm.efi"
uefi_arm64 = "arm64/bootaa64.efi"
uefi_riscv32 = "riscv32/bootriscv32.efi"
uefi_riscv64 = "riscv64/bootriscv64.efi"
uefi_riscv128 = "riscv128/bootriscv128.efi"
uefi_loongarch64 = "la64/bootloongarch64.efi"
uboot_arm32 = "uboot/arm32.scr"
uboot_arm64 = "uboot/arm64.scr"
http_arm64 = "http://127.0.0.1/aa64.efi"
http_url = "http://127.0.0.1/any.efi"
"#;

fn serves(code: u16, class: &str, file: &str) {
    let s = start(TABLE);
    assert_eq!(boot_file(&s, code, class), file, "arch {code}");
}

#[test]
fn serves_arm32_uefi() {
    serves(10, "PXEClient", "arm/bootarm.efi");
}

#[test]
fn serves_riscv32_uefi() {
    serves(25, "PXEClient", "riscv32/bootriscv32.efi");
}

#[test]
fn serves_riscv64_uefi() {
    serves(27, "PXEClient", "riscv64/bootriscv64.efi");
}

#[test]
fn serves_riscv128_uefi() {
    serves(29, "PXEClient", "riscv128/bootriscv128.efi");
}

#[test]
fn serves_loongarch64_uefi() {
    serves(39, "PXEClient", "la64/bootloongarch64.efi");
}

#[test]
fn serves_arm32_uboot_its_tftp_file() {
    // 21 is ARM 32-bit U-Boot: a TFTP client, not HTTP boot.
    serves(21, "PXEClient", "uboot/arm32.scr");
}

#[test]
fn serves_arm64_uboot() {
    serves(22, "PXEClient", "uboot/arm64.scr");
}

#[test]
fn serves_x64_uefi_for_7_and_9() {
    serves(7, "PXEClient", "efi64/bootx64.efi");
    serves(9, "PXEClient", "efi64/bootx64.efi");
}

#[test]
fn serves_http_arm64_its_own_url() {
    serves(19, "HTTPClient", "http://127.0.0.1/aa64.efi");
}

#[test]
fn serves_http_riscv64_the_any_arch_url() {
    // No http_riscv64: http_url is the fallback of every HTTP architecture.
    serves(28, "HTTPClient", "http://127.0.0.1/any.efi");
}

#[test]
fn an_architecture_without_a_file_gets_no_offer() {
    // Only HTTP URLs: ARM32 U-Boot (21, not HTTP) must not get one.
    let s = start("http_url = \"http://127.0.0.1/any.efi\"");
    s.client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(exchange(&s, s.dhcp, &message(MessageType::Discover, 21, "PXEClient")).is_none());
}
