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
//! exactly the bytes of the file in the tree. The negative tests make the
//! server serve a truncated or altered file, or the other architecture's
//! file, and check that the harness fails for that reason.
//!
//! Needs root, QEMU, OVMF, iPXE ROMs, pxelinux, systemd-boot-efi, tshark,
//! udhcpd, cpio and network access to the Debian archive once (the kernel
//! is fetched with `apt-get download` into `target/firmware/cache`).
//! Without `PREBOOT_CI=1` it skips when those are missing; with it, it
//! fails. The boots run one at a time (they share two CPUs under TCG).

mod boot_server_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use boot_server_support::{example, skip};

/// One boot at a time, across the tests of this binary.
static BOOTS: Mutex<()> = Mutex::new(());

/// Hard limit for a boot that must reach the marker (TCG on 2 shared CPUs:
/// BIOS ≈ 25–45 s, UEFI ≈ 15–35 s measured).
const BOOT_LIMIT_SECS: u32 = 240;
/// Hard limit for a boot that must fail; the harness stops the guest as soon
/// as the firmware reports that the boot failed, well before this.
const FAULT_LIMIT_SECS: u32 = 150;

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

/// What is missing to run a boot, if anything.
fn missing() -> Option<String> {
    if !is_root() {
        return Some("not root (network namespaces and tap need it)".into());
    }
    for cmd in [
        "ip",
        "qemu-system-x86_64",
        "dumpcap",
        "tshark",
        "udhcpd",
        "cpio",
        "gzip",
        "objcopy",
        "xxd",
        "apt-get",
        "dpkg",
    ] {
        if !have(cmd) {
            return Some(format!("{cmd} not installed"));
        }
    }
    for (file, package) in [
        ("/usr/lib/PXELINUX/pxelinux.0", "pxelinux"),
        (
            "/usr/lib/syslinux/modules/bios/ldlinux.c32",
            "syslinux-common",
        ),
        (
            "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
            "systemd-boot-efi",
        ),
        ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
        ("/usr/lib/ipxe/qemu/efi-e1000.rom", "ipxe-qemu"),
        ("/bin/busybox", "busybox-static"),
    ] {
        if !Path::new(file).is_file() {
            return Some(format!("{file} missing (Debian package {package})"));
        }
    }
    None
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

/// Run one boot with our server; `None` when skipped.
fn boot(args: &[&str], limit_secs: u32) -> Option<Verdict> {
    let _one = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = missing() {
        skip(&why);
        return None;
    }
    let server: PathBuf = example();
    let limit = limit_secs.to_string();
    let out = Command::new("bash")
        .arg(repo().join("tests/firmware/boot.sh"))
        .args(args)
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
    Some(Verdict {
        code: out.status.code().unwrap_or(-1),
        result,
        log,
    })
}

fn assert_pass(args: &[&str]) {
    let Some(v) = boot(args, BOOT_LIMIT_SECS) else {
        return;
    };
    assert!(
        v.code == 0 && v.result.starts_with("RESULT PASS "),
        "boot {args:?} did not pass: {}\n{}",
        v.result,
        v.log
    );
}

/// The harness must report FAIL (not a harness error), with `reason`.
fn assert_fail(args: &[&str], reason: &str) {
    let Some(v) = boot(args, FAULT_LIMIT_SECS) else {
        return;
    };
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
fn bios_full_dhcp_boots() {
    assert_pass(&["--firmware", "bios", "--mode", "full"]);
}

/// PXE 2.1 §2.2.2 proxyDHCP beside udhcpd, menu policy "never": the proxy
/// OFFER carries the file with discovery control bit 3 (§2.4.5), which
/// iPXE boots directly.
#[test]
fn bios_proxy_boots() {
    assert_pass(&["--firmware", "bios", "--mode", "proxy"]);
}

/// Menu policy "on key press" (PXE 2.1 §2.4.5 sub-options 8–10): iPXE shows
/// our prompt text on the console, waits its timeout, then boot server
/// discovery on port 4011 gets the file.
#[test]
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
fn bios_proxy_menu_always_waits_for_a_key() {
    assert_pass(&["--firmware", "bios", "--mode", "proxy", "--menu", "always"]);
}

/// Menu policy "on key press" in full mode: our OFFER/ACK carry the menu
/// (option 43), iPXE shows the prompt, then asks the boot server on 4011.
#[test]
fn bios_full_menu_prompt_reaches_ipxe() {
    assert_pass(&["--firmware", "bios", "--mode", "full", "--menu", "keypress"]);
}

/// Full DHCP for EDK2's PXE (arch 7, RFC 4578 §2.1), TFTP with its tsize
/// probe (RFC 2349) and windowsize (RFC 7440).
#[test]
fn uefi_full_dhcp_boots() {
    assert_pass(&["--firmware", "uefi", "--mode", "full"]);
}

/// proxyDHCP beside udhcpd for EDK2: the REQUEST from port 4011 to port
/// 4011 gets the file (PXE 2.1 §2.2.2).
#[test]
fn uefi_proxy_boots() {
    assert_pass(&["--firmware", "uefi", "--mode", "proxy"]);
}

/// The harness catches a served file cut short.
#[test]
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
fn harness_fails_on_wrong_file() {
    assert_fail(
        &["--firmware", "uefi", "--mode", "full", "--fault", "wrong"],
        "TFTP: preboot-x64.efi received",
    );
}

/// The harness catches the other architecture's boot file.
#[test]
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
