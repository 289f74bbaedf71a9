//! Real PXE firmware boots from the example boot server (issue 6).
//!
//! Each test runs `tests/firmware/boot.sh` (read its header for the whole
//! procedure): a network namespace of its own with a bridge and a tap, the
//! `preboot-server` example on the standard ports (67, 4011, 69), busybox
//! `udhcpd` beside it in proxy mode, a dumpcap capture of the bridge, and
//! QEMU booting with `-boot n`:
//!
//! - BIOS: SeaBIOS + QEMU's iPXE ROM on e1000 → `pxelinux.0` → Debian kernel
//!   and a busybox initrd;
//! - UEFI x64: OVMF on q35, virtio-net without option ROM (EDK2's PXE) → a
//!   unified kernel image of the same kernel and initrd.
//!
//! A boot passes only when the serial console shows the marker with this
//! run's nonce and the capture shows the PXE exchange (DISCOVER with option
//! 60 and option 93, our OFFER, REQUEST/ACK, the 4011 exchange in proxy
//! mode — PXE 2.1 §2.2), the boot file of the client's architecture
//! (RFC 4578 §2.1), and every TFTP transfer (RFC 1350 §6) complete with
//! exactly the bytes of the file in the tree. Our server runs its
//! transaction server too, and its OFFER and ACK must carry option 43
//! sub-options 128 and 129 naming it (address, port, and the public key
//! that boot.sh derives with openssl; docs/transaction-protocol.md): a pass
//! shows that iPXE and EDK2 boot from answers that carry them. The
//! negative tests make the
//! server serve a truncated or altered file, or the other architecture's
//! file, and check that the harness fails for that reason.
//!
//! Needs root, QEMU, tshark, openssl, busybox-static, cpio and network access to
//! the Debian archive once (the kernel is fetched with `apt-get download`
//! into `target/firmware/cache`); BIOS cases also pxelinux, syslinux-common
//! and ipxe-qemu, UEFI cases ovmf, systemd-boot-efi and binutils, proxy
//! cases udhcpd. A case whose prerequisites are missing is listed as
//! *ignored* with the reason (build.rs decides, before compiling); with
//! `PREBOOT_CI=1` nothing is ignored and a missing prerequisite fails. The
//! boots run one at a time (they share two CPUs under TCG).
//!
//! The MTFTP cases (issue 16, "iPXE (BIOS) and OVMF still boot with MTFTP
//! configured") run the full-DHCP boots with `boot.sh --mtftp`: the
//! server's `[mtftp]` lists both boot files, the firmware still boots by
//! TFTP, and the capture must show option 43 sub-options 1–5 with the
//! configured values in the OFFER to iPXE (BIOS) and none in any answer to
//! OVMF (UEFI).
//!
//! The flow cases (issue 14, "Real firmware runs the flow") go on from the
//! BIOS boot into the preboot flow (DESIGN.md steps 5–19): the initrd's
//! init runs a static `preboot-client` (built here for
//! `x86_64-unknown-linux-musl`) on the VM's e1000 and its own virtio disk,
//! against the boot server's transaction server (protocol v2,
//! docs/transaction-protocol.md). This file makes the flow kit boot.sh
//! needs: the VM's disk image with its key record provisioned by the
//! library's own §11.2 code, the server's key pair, and the workstation's
//! public key, which boot.sh binds to the VM's MAC (no auto-enrolment).
//! boot.sh's header says what a flow PASS needs (markers, DHCP and 4011
//! twice, TFTP, the transaction frames by §2's header layout, the server
//! log).

mod boot_server_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use boot_server_support::{example, unavailable};
use preboot::driver::key_record_disk::DiskKeySlot;
use preboot::driver::transaction::Urandom;
use preboot::transaction::provision::provision;
use preboot::transaction::{Hex, StaticKey};

/// One boot at a time, across the tests of this binary.
static BOOTS: Mutex<()> = Mutex::new(());

/// Hard limit for a boot that must reach the marker (TCG on 2 shared CPUs:
/// BIOS ≈ 25–45 s, UEFI ≈ 15–35 s measured).
const BOOT_LIMIT_SECS: u32 = 240;
/// Hard limit for a boot that must fail; the harness stops the guest as soon
/// as the firmware reports that the boot failed, well before this.
const FAULT_LIMIT_SECS: u32 = 150;
/// Hard limit for a flow boot (two kernels for a restore; the client's own
/// steps give up after 40 s each): 34–55 s measured on a quiet machine,
/// 124–321 s for a restore at load average 8–14 on the two CPUs.
const FLOW_LIMIT_SECS: u32 = 600;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// What is missing to run the boot of boot.sh `args`, if anything: each
/// case needs only its own firmware's files, and the wrong-arch fault the
/// other firmware's too (build.rs marks the cases ignored by the same
/// lists).
fn missing(args: &[&str]) -> Option<String> {
    let (mode, both) = (arg(args, "--mode"), arg(args, "--fault") == "wrong-arch");
    if !is_root() {
        return Some("not root (network namespaces and tap need it)".into());
    }
    let mut cmds = vec![
        "ip",
        "qemu-system-x86_64",
        "dumpcap",
        "tshark",
        "cpio",
        "gzip",
        "xxd",
        "sha256sum",
        "awk",
        "timeout",
        "openssl",
        "apt-get",
        "apt-cache",
        "dpkg",
    ];
    let mut files = vec![("/bin/busybox", "busybox-static")];
    if arg(args, "--firmware") == "bios" || both {
        files.extend([
            ("/usr/lib/PXELINUX/pxelinux.0", "pxelinux"),
            (
                "/usr/lib/syslinux/modules/bios/ldlinux.c32",
                "syslinux-common",
            ),
            ("/usr/lib/ipxe/qemu/efi-e1000.rom", "ipxe-qemu"),
        ]);
    }
    if arg(args, "--firmware") == "uefi" || both {
        cmds.push("objcopy");
        files.extend([
            ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
            ("/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf"),
            (
                "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
                "systemd-boot-efi",
            ),
        ]);
    }
    if mode == "proxy" {
        cmds.push("udhcpd");
    }
    if !arg(args, "--flow").is_empty() {
        cmds.extend(["strip", "readelf"]);
    }
    if let Some(cmd) = cmds.into_iter().find(|c| !have(c)) {
        return Some(format!("{cmd} not installed"));
    }
    files
        .into_iter()
        .find(|(file, _)| !Path::new(file).is_file())
        .map(|(file, package)| format!("{file} missing (Debian package {package})"))
}

/// The value of `--flag` in `args`.
fn arg<'a>(args: &[&'a str], flag: &str) -> &'a str {
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1))
        .copied()
        .unwrap_or("")
}

/// The harness's verdict on one boot.
#[derive(Debug)]
struct Verdict {
    /// Exit status of boot.sh: 0 PASS, 1 FAIL, 2 harness error.
    code: i32,
    /// The `RESULT …` line.
    result: String,
    /// Everything boot.sh printed on stderr.
    log: String,
}

/// Run one boot with our server; fails when a prerequisite is missing
/// (without one, the build marks the case ignored).
fn boot(args: &[&str], limit_secs: u32) -> Verdict {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = missing(args) {
        unavailable(&why);
    }
    let server: PathBuf = example();
    let limit = limit_secs.to_string();
    let mut flow: Vec<String> = Vec::new();
    // The kit lives as long as this boot.
    let mut _kit = None;
    if !arg(args, "--flow").is_empty() {
        let client = static_client();
        let kit = FlowKit::create();
        flow.extend(["--flow-kit".into(), kit.dir.display().to_string()]);
        flow.extend(["--client-bin".into(), client.display().to_string()]);
        _kit = Some(kit);
    }
    let out = Command::new("bash")
        .arg(repo().join("tests/firmware/boot.sh"))
        .args(args)
        .args(&flow)
        .args(["--server", "ours", "--timeout", &limit])
        .arg("--server-bin")
        .arg(&server)
        .output()
        .expect("run tests/firmware/boot.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let result = stdout
        .lines()
        .rfind(|l| l.starts_with("RESULT "))
        .unwrap_or("")
        .to_string();
    eprintln!("{log}{result}");
    Verdict {
        code: out.status.code().unwrap_or(-1),
        result,
        log,
    }
}

fn assert_pass(args: &[&str]) {
    let limit = if arg(args, "--flow").is_empty() {
        BOOT_LIMIT_SECS
    } else {
        FLOW_LIMIT_SECS
    };
    let v = boot(args, limit);
    assert!(
        v.code == 0 && v.result.starts_with("RESULT PASS "),
        "boot {args:?} did not pass: {}\n{}",
        v.result,
        v.log
    );
}

/// The harness must report FAIL (not a harness error), with `reason`.
fn assert_fail(args: &[&str], reason: &str) {
    let limit = if arg(args, "--flow").is_empty() {
        FAULT_LIMIT_SECS
    } else {
        FLOW_LIMIT_SECS
    };
    let v = boot(args, limit);
    assert!(
        v.code == 1 && v.result.starts_with("RESULT FAIL "),
        "boot {args:?} should FAIL: {}\n{}",
        v.result,
        v.log
    );
    assert!(
        v.result.contains(reason),
        "boot {args:?} failed, but not with {reason:?}: {}",
        v.result
    );
}

/// PXE 2.1 §2.2 full-DHCP boot of a BIOS client (iPXE ROM): OFFER/ACK with
/// pxelinux.0, then pxelinux's own TFTP reads.
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_full,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu"
)]
fn bios_full_dhcp_boots() {
    assert_pass(&["--firmware", "bios", "--mode", "full"]);
}

/// PXE 2.1 §2.2.2 proxyDHCP beside udhcpd, menu policy "never": the proxy
/// OFFER names no file and has no discovery control bit 3 (§2.4.5), so
/// iPXE asks on 4011 and boots the file of our 4011 ACK (§2.2.1); the
/// harness requires that exchange.
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_proxy,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu, udhcpd"
)]
fn bios_proxy_boots() {
    assert_pass(&["--firmware", "bios", "--mode", "proxy"]);
}

/// Menu policy "on key press" (PXE 2.1 §2.4.5 sub-options 8–10): iPXE shows
/// our prompt text on the console, waits its timeout, then boot server
/// discovery on port 4011 gets the file.
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_proxy,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu, udhcpd"
)]
fn bios_proxy_menu_prompt_reaches_ipxe() {
    assert_pass(&[
        "--firmware",
        "bios",
        "--mode",
        "proxy",
        "--menu",
        "keypress",
    ]);
}

/// Menu policy "always" (prompt timeout 255, PXE 2.1 §2.4.5): iPXE shows
/// our menu and waits; the harness types Enter on the serial console once
/// our prompt is there, and the default item boots through 4011.
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_proxy,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu, udhcpd"
)]
fn bios_proxy_menu_always_waits_for_a_key() {
    assert_pass(&["--firmware", "bios", "--mode", "proxy", "--menu", "always"]);
}

/// Menu policy "on key press" in full mode: our OFFER/ACK carry the menu
/// (option 43), iPXE shows the prompt, then asks the boot server on 4011.
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_full,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu"
)]
fn bios_full_menu_prompt_reaches_ipxe() {
    assert_pass(&["--firmware", "bios", "--mode", "full", "--menu", "keypress"]);
}

/// Full DHCP for EDK2's PXE (arch 7, RFC 4578 §2.1), TFTP with its tsize
/// probe (RFC 2349) and windowsize (RFC 7440).
#[test]
#[cfg_attr(
    preboot_skip_firmware_uefi_full,
    ignore = "needs root, QEMU, tshark, busybox-static, ovmf, systemd-boot-efi, binutils"
)]
fn uefi_full_dhcp_boots() {
    assert_pass(&["--firmware", "uefi", "--mode", "full"]);
}

/// proxyDHCP beside udhcpd for EDK2: the REQUEST from port 4011 to port
/// 4011 gets the file (PXE 2.1 §2.2.2).
#[test]
#[cfg_attr(
    preboot_skip_firmware_uefi_proxy,
    ignore = "needs root, QEMU, tshark, busybox-static, ovmf, systemd-boot-efi, binutils, udhcpd"
)]
fn uefi_proxy_boots() {
    assert_pass(&["--firmware", "uefi", "--mode", "proxy"]);
}

/// Issue 16, "iPXE (BIOS) and OVMF still boot with MTFTP configured": the
/// boot server's `[mtftp]` serves both boot files (groups on the
/// namespace's bridge only). The BIOS OFFER carries option 43 sub-options
/// 1–5 (PXE 2.1 §2.4.5) as tshark decodes them — group, client port,
/// server port 1759, timeout, delay — and iPXE still boots by TFTP (QEMU's
/// iPXE does not use MTFTP).
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_full,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu"
)]
fn bios_full_boots_with_mtftp_advertised() {
    assert_pass(&["--firmware", "bios", "--mode", "full", "--mtftp"]);
}

/// Issue 16: with the same `[mtftp]` table (the UEFI boot file listed
/// too), no answer to OVMF carries sub-options 1–5 (EDK2 discards offers
/// that do), and OVMF boots.
#[test]
#[cfg_attr(
    preboot_skip_firmware_uefi_full,
    ignore = "needs root, QEMU, tshark, busybox-static, ovmf, systemd-boot-efi, binutils"
)]
fn uefi_full_boots_with_mtftp_configured() {
    assert_pass(&["--firmware", "uefi", "--mode", "full", "--mtftp"]);
}

/// The harness catches a served file cut short.
#[test]
#[cfg_attr(
    preboot_skip_firmware_uefi_full,
    ignore = "needs root, QEMU, tshark, busybox-static, ovmf, systemd-boot-efi, binutils"
)]
fn harness_fails_on_truncated_file() {
    assert_fail(
        &[
            "--firmware",
            "uefi",
            "--mode",
            "full",
            "--fault",
            "truncate",
        ],
        "TFTP: preboot-x64.efi received",
    );
}

/// The harness catches a served file with altered bytes.
#[test]
#[cfg_attr(
    preboot_skip_firmware_uefi_full,
    ignore = "needs root, QEMU, tshark, busybox-static, ovmf, systemd-boot-efi, binutils"
)]
fn harness_fails_on_wrong_file() {
    assert_fail(
        &["--firmware", "uefi", "--mode", "full", "--fault", "wrong"],
        "TFTP: preboot-x64.efi received",
    );
}

/// The harness catches the other architecture's boot file.
#[test]
#[cfg_attr(
    preboot_skip_firmware_wrong_arch,
    ignore = "needs root, QEMU, tshark, busybox-static, ovmf, systemd-boot-efi, binutils, pxelinux, syslinux-common, ipxe-qemu, udhcpd"
)]
fn harness_fails_on_wrong_architecture_file() {
    assert_fail(
        &[
            "--firmware",
            "uefi",
            "--mode",
            "proxy",
            "--fault",
            "wrong-arch",
        ],
        "boot file for the architecture: got pxelinux.0, want preboot-x64.efi",
    );
}

/// The static `preboot-client` for the flow's initrd: built for
/// `x86_64-unknown-linux-musl` in release mode (incremental after the
/// first build); its path. `PREBOOT_FIRMWARE_CLIENT=PATH` boots that
/// build instead (another branch's client; boot.sh still refuses one that
/// is not static).
fn static_client() -> PathBuf {
    const TARGET: &str = "x86_64-unknown-linux-musl";
    if let Some(bin) = std::env::var_os("PREBOOT_FIRMWARE_CLIENT") {
        return PathBuf::from(bin);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo())
        .args([
            "build",
            "--quiet",
            "--release",
            "--example",
            "preboot-client",
        ])
        .args(["--target", TARGET])
        .output()
        .expect("run cargo build");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("may not be installed") || err.contains("can't find crate for `core`") {
            unavailable(&format!(
                "Rust target {TARGET} missing (rustup target add {TARGET})"
            ));
        }
        panic!("cargo build --example preboot-client --target {TARGET}: {err}");
    }
    let bin = repo().join(format!("target/{TARGET}/release/examples/preboot-client"));
    assert!(bin.is_file(), "{} missing", bin.display());
    bin
}

/// What boot.sh --flow needs (`--flow-kit`), in a directory of its own
/// removed on drop: `disk.img`, the VM's raw disk (8 MiB, blank but for the
/// workstation's key record, §11.1, written by the library's provisioning
/// of §11.2), and `kit.env` with the transaction server's key pair and
/// that workstation's public key (hex).
struct FlowKit {
    dir: PathBuf,
}

impl FlowKit {
    fn create() -> FlowKit {
        let dir = repo().join(format!("target/firmware/flow-kit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the flow kit directory");
        let disk = dir.join("disk.img");
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(8 << 20))
            .expect("create disk.img");
        let mut random = Urandom::open().expect("/dev/urandom");
        let mut slot = DiskKeySlot::open(&disk).expect("open disk.img as a key slot");
        let workstation = provision(&mut slot, &mut random).expect("provision the key record");
        // Read back from the file as the VM will: the same key.
        let mut again = DiskKeySlot::open(&disk).expect("reopen disk.img");
        let read = provision(&mut again, &mut random).expect("read the key record");
        assert_eq!(read.key.public(), workstation.key.public());
        let server = StaticKey::generate(&mut random).expect("server key");
        let env = format!(
            "SERVER_PRIVATE={}\nSERVER_PUBLIC={}\nWORKSTATION_PUBLIC={}\n",
            Hex(&server.to_private_bytes()),
            Hex(&server.public()),
            Hex(&workstation.key.public())
        );
        std::fs::write(dir.join("kit.env"), env).expect("write kit.env");
        FlowKit { dir }
    }
}

impl Drop for FlowKit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Issue 14 (a): a pending restore task. The VM's workstation object has
/// "image on next boot" (policy precedence, DESIGN.md steps 13–17); the
/// client authenticates with the key on its own disk (§3.3, §11), gets the
/// task and the imaging environment (§4.5), fetches both files by TFTP
/// and kexecs into them; the environment's init finds the task id and the
/// run's nonce on its command line.
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_flow,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu, udhcpd, binutils, rust target x86_64-unknown-linux-musl"
)]
fn bios_flow_restore_kexecs_into_the_imaging_environment() {
    assert_pass(&["--firmware", "bios", "--mode", "proxy", "--flow", "restore"]);
}

/// Issue 14 (b): a registered workstation with no task and no matching
/// rule: the empty task list means "boot the local disk" (§4.5).
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_flow,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu, udhcpd, binutils, rust target x86_64-unknown-linux-musl"
)]
fn bios_flow_no_task_boots_the_local_disk() {
    assert_pass(&["--firmware", "bios", "--mode", "proxy", "--flow", "local"]);
}

/// Issue 14 (c): the server policy's menu on a hotkey (§4.4, F8 = 0x88):
/// the harness types F8's escape sequence on the serial console while the
/// client waits, the client shows the policy's menu entries, and the
/// entry typed on the console (3, boot the local disk; not the default)
/// is the one taken.
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_flow,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu, udhcpd, binutils, rust target x86_64-unknown-linux-musl"
)]
fn bios_flow_menu_shows_on_f8() {
    assert_pass(&["--firmware", "bios", "--mode", "proxy", "--flow", "menu"]);
}

/// The flow checks can fail: with another key bound to the VM's MAC the
/// server answers the handshake `Pending` (§3.4) and no session is ever
/// established; the harness says so.
#[test]
#[cfg_attr(
    preboot_skip_firmware_bios_flow,
    ignore = "needs root, QEMU, tshark, busybox-static, pxelinux, syslinux-common, ipxe-qemu, udhcpd, binutils, rust target x86_64-unknown-linux-musl"
)]
fn harness_fails_on_unbound_workstation_key() {
    assert_fail(
        &[
            "--firmware",
            "bios",
            "--mode",
            "proxy",
            "--flow",
            "local",
            "--fault",
            "unbound-key",
        ],
        "the server log shows no session established",
    );
}

/// Hex of `bytes`, as tshark prints `udp.payload`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TFTP DATA datagram (RFC 1350 §5): opcode 3, block, data.
fn data(block: u16, bytes: &[u8]) -> Vec<u8> {
    let mut d = vec![0, 3];
    d.extend_from_slice(&block.to_be_bytes());
    d.extend_from_slice(bytes);
    d
}

/// Runs `tests/firmware/tftp.awk` over `frames` (source, destination,
/// payload, as the capture shows them): its one output line and the bytes
/// it reassembled.
fn reassemble(case: &str, frames: &[(&str, &str, Vec<u8>)]) -> (String, Vec<u8>) {
    for cmd in ["awk", "xxd"] {
        if !have(cmd) {
            unavailable(&format!("{cmd} not installed"));
        }
    }
    let dir = std::env::temp_dir().join(format!("preboot-tftp-awk-{case}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("received")).unwrap();
    let mut tsv = String::new();
    for (n, (src, dst, payload)) in frames.iter().enumerate() {
        let (sa, sp) = src.split_once(':').unwrap();
        let (da, dp) = dst.split_once(':').unwrap();
        tsv += &format!(
            "{}|{sa}|{sp}|{da}|{dp}|{}|{}.0\n",
            n + 1,
            hex(payload),
            1000 + n
        );
    }
    std::fs::write(dir.join("udp.tsv"), tsv).unwrap();
    let out = Command::new("awk")
        .arg("-F|")
        .arg("-v")
        .arg(format!("dir={}", dir.join("received").display()))
        .arg("-v")
        .arg(format!("turn={}", dir.join("turnaround").display()))
        .arg("-f")
        .arg(repo().join("tests/firmware/tftp.awk"))
        .arg(dir.join("udp.tsv"))
        .output()
        .expect("run awk");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let got = std::fs::read(dir.join("received/1")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (line, got)
}

/// The transfer the reassembly tests replay: RRQ with blksize 512
/// (RFC 2348) and windowsize 2 (RFC 7440), OACK, then blocks 1–2 in `window`
/// and the short block 3 alone, each window acknowledged by its last block.
fn windowed_transfer(window: Vec<u8>, file: &[u8]) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let (c, s69, s) = ("10.0.0.2:1308", "10.0.0.1:69", "10.0.0.1:40000");
    let rrq = b"\x00\x01f.efi\x00octet\x00blksize\x00512\x00windowsize\x002\x00".to_vec();
    let oack = b"\x00\x06blksize\x00512\x00windowsize\x002\x00".to_vec();
    vec![
        (c, s69, rrq),
        (s, c, oack),
        (c, s, vec![0, 4, 0, 0]),
        (s, c, window),
        (c, s, vec![0, 4, 0, 2]),
        (s, c, data(3, &file[1024..])),
        (c, s, vec![0, 4, 0, 3]),
    ]
}

/// A window sent with UDP GSO crosses the captured bridge as one frame when
/// a bridge port offers UDP segmentation (proxy mode's veth does); the tap
/// cuts it into DATA datagrams of 4 + blksize bytes (RFC 1350 §5). The
/// harness must cut it the same way: before it did, the proxy-mode UEFI boot
/// failed with "transfer … incomplete" although the guest had every block.
#[test]
#[cfg_attr(preboot_skip_awk_xxd, ignore = "needs awk and xxd")]
fn harness_reassembles_gso_windows() {
    let file: Vec<u8> = (0..1124u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut window = data(1, &file[..512]);
    window.extend(data(2, &file[512..1024]));
    let (line, got) = reassemble("gso", &windowed_transfer(window, &file));
    assert!(line.contains("|complete|"), "{line}");
    assert_eq!(got, file);
}

/// A frame longer than one datagram whose later piece is no DATA datagram
/// is not a GSO window: the transfer is reported, not silently accepted.
#[test]
#[cfg_attr(preboot_skip_awk_xxd, ignore = "needs awk and xxd")]
fn harness_rejects_malformed_gso_windows() {
    let file: Vec<u8> = (0..1124u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut window = data(1, &file[..512]);
    window.extend([0, 5, 0, 0, 0]);
    window.extend_from_slice(&file[..511]);
    let (line, _) = reassemble("malformed", &windowed_transfer(window, &file));
    assert!(line.contains("|malformed-segmented-window"), "{line}");
}

/// One frame of docs/transaction-protocol.md §2: the 24-byte header
/// ("PBTX", version 2, type, status, flags 0, request id, session id,
/// payload length, tag length), then `payload` zero bytes and `tag` bytes.
fn tx_frame(kind: u8, status: u8, request: u32, session: u64, payload: u16, tag: u16) -> Vec<u8> {
    let mut f = b"PBTX".to_vec();
    f.extend([2, kind, status, 0]);
    f.extend(request.to_be_bytes());
    f.extend(session.to_be_bytes());
    f.extend(payload.to_be_bytes());
    f.extend(tag.to_be_bytes());
    f.resize(24 + usize::from(payload) + usize::from(tag), 0xa5);
    f
}

/// Runs `tests/firmware/transaction.awk` over `frames` (client → server
/// when the flag is true), as boot.sh does; its output.
fn transaction_check(case: &str, frames: &[(bool, Vec<u8>)]) -> String {
    for cmd in ["awk"] {
        if !have(cmd) {
            unavailable(&format!("{cmd} not installed"));
        }
    }
    let dir = std::env::temp_dir().join(format!("preboot-tx-awk-{case}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (vm, client, server) = (
        "52:54:00:7e:57:01",
        "192.168.77.100|40000",
        "192.168.77.1|4012",
    );
    let mut tsv = String::new();
    for (n, (up, bytes)) in frames.iter().enumerate() {
        let (eth, src, dst) = if *up {
            (vm, client, server)
        } else {
            ("02:00:00:00:00:01", server, client)
        };
        tsv += &format!("{}|{eth}|{src}|{dst}|{}\n", n + 1, hex(bytes));
    }
    std::fs::write(dir.join("tx.tsv"), tsv).unwrap();
    let out = Command::new("awk")
        .args(["-F|", "-v", "srv=192.168.77.1", "-v", "port=4012"])
        .args(["-v", &format!("mac={vm}"), "-f"])
        .arg(repo().join("tests/firmware/transaction.awk"))
        .arg(dir.join("tx.tsv"))
        .output()
        .expect("run awk");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A whole session as §4 lays it out: Hello/Cookie, Init/Accept (which
/// names session 0x1122…), then WorkstationInfo, MenuQuery and TaskQuery
/// sealed both ways (tag length 16, §2.4).
fn good_session() -> Vec<(bool, Vec<u8>)> {
    let s = 0x1122_3344_5566_7788;
    vec![
        (true, tx_frame(0x01, 0, 1, 0, 48, 0)),
        (false, tx_frame(0x81, 0, 1, 0, 32, 0)),
        (true, tx_frame(0x02, 0, 2, 0, 148, 0)),
        (false, tx_frame(0x82, 0, 2, s, 57, 0)),
        (true, tx_frame(0x03, 0, 3, s, 40, 16)),
        (false, tx_frame(0x83, 0, 3, s, 12, 16)),
        (true, tx_frame(0x04, 0, 4, s, 0, 16)),
        (false, tx_frame(0x84, 0, 4, s, 20, 16)),
        (true, tx_frame(0x05, 0, 5, s, 0, 16)),
        (false, tx_frame(0x85, 0, 5, s, 30, 16)),
    ]
}

/// The flow's transaction check passes a well-formed session and names it.
#[test]
#[cfg_attr(preboot_skip_awk_xxd, ignore = "needs awk and xxd")]
fn harness_reads_transaction_frames() {
    let out = transaction_check("good", &good_session());
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.contains("SESSION 1122334455667788 192.168.77.100:40000"),
        "{out}"
    );
    assert!(
        out.contains("WorkstationInfo=1/1 MenuQuery=1/1 TaskQuery=1/1"),
        "{out}"
    );
}

/// The check fails a session request sent in the clear (§2.4), one in a
/// session that was never accepted (§3.5), a frame whose length fields do
/// not add up (§2.2), and a missing TaskQuery.
#[test]
#[cfg_attr(preboot_skip_awk_xxd, ignore = "needs awk and xxd")]
fn harness_rejects_bad_transaction_frames() {
    let mut frames = good_session();
    frames[6] = (true, tx_frame(0x04, 0, 4, 0x1122_3344_5566_7788, 16, 0));
    frames[8] = (true, tx_frame(0x05, 0, 5, 0xdead_beef, 0, 16));
    let mut short = tx_frame(0x85, 0, 5, 0x1122_3344_5566_7788, 30, 16);
    short.truncate(60);
    frames[9] = (false, short);
    let out = transaction_check("bad", &frames);
    assert!(out.contains("MenuQuery (type 4) is not sealed"), "{out}");
    assert!(
        out.contains("session 00000000deadbeef was not accepted for 192.168.77.100:40000"),
        "{out}"
    );
    assert!(
        out.contains("24 + payload 30 + tag 16 != 60 bytes"),
        "{out}"
    );
    assert!(
        out.contains("no sealed TaskQuery reply with status 0"),
        "{out}"
    );
}

/// A client whose timer runs out before the first answer sends its RRQ
/// again from the same port (RFC 1350 §2; pxelinux did, 59 ms apart, under
/// load): one transfer, not a second one with "no answer" (which failed a
/// boot that had received every byte).
#[test]
#[cfg_attr(preboot_skip_awk_xxd, ignore = "needs awk and xxd")]
fn harness_takes_a_repeated_request_for_a_retransmission() {
    let file: Vec<u8> = (0..1124u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut window = data(1, &file[..512]);
    window.extend(data(2, &file[512..1024]));
    let mut frames = windowed_transfer(window, &file);
    let rrq = frames[0].clone();
    frames.insert(1, rrq);
    let (out, got) = reassemble("rrq-again", &frames);
    assert!(!out.contains("nodata"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("|complete|"), "{out}");
    assert_eq!(got, file);
}
