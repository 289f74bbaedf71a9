//! Decides, before the tests are compiled, which tests cannot run on this
//! machine, so that `cargo test` lists them as *ignored, with the reason*
//! instead of reporting a test that did nothing as `ok`.
//!
//! Each set below names what a group of tests needs (root, programs, files
//! of Debian packages). When something of a set is missing, the build sets
//! `cfg(preboot_skip_<set>)`, and the tests of that set carry
//! `#[cfg_attr(preboot_skip_<set>, ignore = "…")]`. The library itself never
//! reads these flags.
//!
//! With `PREBOOT_CI=1` no set is skipped: the tests run, and a missing
//! prerequisite fails them (CI installs everything, `.ci/run`).
//!
//! The probe is redone when the installed packages change (dpkg's status
//! file), when a directory of `PATH` changes, or when the user, `PATH` or
//! `PREBOOT_CI` change.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One prerequisite of a test.
enum Need {
    /// The tests run as root (network namespaces, tap devices).
    Root,
    /// A program on `PATH`.
    Program(&'static str),
    /// A file that a Debian package installs.
    File(&'static str),
    /// `curl` built with the TFTP protocol.
    CurlTftp,
}

use Need::{CurlTftp, File, Program, Root};

/// Programs every real-firmware boot needs (tests/firmware/boot.sh and
/// prepare.sh), whatever the firmware.
const FIRMWARE_COMMON: &[Need] = &[
    Root,
    Program("ip"),
    Program("qemu-system-x86_64"),
    Program("dumpcap"),
    Program("tshark"),
    Program("cpio"),
    Program("gzip"),
    Program("xxd"),
    Program("sha256sum"),
    Program("awk"),
    Program("timeout"),
    Program("apt-get"),
    Program("apt-cache"),
    Program("dpkg"),
    File("/bin/busybox"),
];
/// BIOS boots: SeaBIOS with QEMU's iPXE ROM, then pxelinux.
const FIRMWARE_BIOS: &[Need] = &[
    File("/usr/lib/PXELINUX/pxelinux.0"),
    File("/usr/lib/syslinux/modules/bios/ldlinux.c32"),
    File("/usr/lib/ipxe/qemu/efi-e1000.rom"),
];
/// UEFI boots: OVMF, and a unified kernel image built with objcopy from
/// systemd-boot's stub.
const FIRMWARE_UEFI: &[Need] = &[
    File("/usr/share/OVMF/OVMF_CODE_4M.fd"),
    File("/usr/share/OVMF/OVMF_VARS_4M.fd"),
    File("/usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
    Program("objcopy"),
];
/// proxyDHCP boots run busybox `udhcpd` beside our server.
const PROXY: &[Need] = &[Program("udhcpd")];

/// The sets: cfg suffix and the lists of needs it joins.
const SETS: &[(&str, &[&[Need]])] = &[
    ("curl_tftp", &[&[CurlTftp]]),
    ("tftp_hpa", &[&[Program("tftp")]]),
    ("atftp", &[&[Program("atftp")]]),
    ("tshark", &[&[Program("tshark")]]),
    ("python3", &[&[Program("python3")]]),
    ("awk_xxd", &[&[Program("awk"), Program("xxd")]]),
    ("netns_curl", &[&[Root, Program("ip"), CurlTftp]]),
    (
        "netns_curl_udhcpd",
        &[&[Root, Program("ip"), CurlTftp, Program("udhcpd")]],
    ),
    ("netns_dhcp", &[&[Root, Program("ip"), Program("udhcpd")]]),
    (
        "netns_dhclient",
        &[&[Root, Program("ip"), Program("dhclient")]],
    ),
    ("netns_tap", &[&[Root, Program("ip"), Program("python3")]]),
    ("firmware_bios_full", &[FIRMWARE_COMMON, FIRMWARE_BIOS]),
    (
        "firmware_bios_proxy",
        &[FIRMWARE_COMMON, FIRMWARE_BIOS, PROXY],
    ),
    ("firmware_uefi_full", &[FIRMWARE_COMMON, FIRMWARE_UEFI]),
    (
        "firmware_uefi_proxy",
        &[FIRMWARE_COMMON, FIRMWARE_UEFI, PROXY],
    ),
    // The UEFI client is given the BIOS file.
    (
        "firmware_wrong_arch",
        &[FIRMWARE_COMMON, FIRMWARE_UEFI, FIRMWARE_BIOS, PROXY],
    ),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["PATH", "USER", "SUDO_UID", "PREBOOT_CI"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    // An install or removal of a Debian package rewrites this file.
    let dpkg_status = Path::new("/var/lib/dpkg/status");
    if dpkg_status.is_file() {
        println!("cargo::rerun-if-changed={}", dpkg_status.display());
    }
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for dir in path_dirs.iter().filter(|d| d.is_absolute() && d.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let ci = std::env::var("PREBOOT_CI").is_ok_and(|v| v == "1");
    let probe = Probe { path_dirs };
    for (name, lists) in SETS {
        println!("cargo::rustc-check-cfg=cfg(preboot_skip_{name})");
        if ci {
            continue;
        }
        if lists.iter().flat_map(|l| l.iter()).any(|n| !probe.has(n)) {
            println!("cargo::rustc-cfg=preboot_skip_{name}");
        }
    }
}

struct Probe {
    path_dirs: Vec<PathBuf>,
}

impl Probe {
    /// `need` is there.
    fn has(&self, need: &Need) -> bool {
        match need {
            Root => is_root(),
            Program(p) => self.has_program(p),
            File(f) => Path::new(f).is_file(),
            CurlTftp => curl_has_tftp(),
        }
    }

    fn has_program(&self, name: &str) -> bool {
        self.path_dirs.iter().any(|d| is_executable(&d.join(name)))
    }
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// Effective user id 0, from `/proc/self/status` (Linux); elsewhere the
/// root-only tests are skipped.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// `curl --version` lists `tftp` among its protocols.
fn curl_has_tftp() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("tftp"))
}
