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
    /// A program on `PATH`, and the Debian package that has it.
    Program(&'static str, &'static str),
    /// A file, and the Debian package that installs it.
    File(&'static str, &'static str),
    /// `curl` built with the TFTP protocol.
    CurlTftp,
    /// The standard library of a Rust target (`rustup target add`).
    RustTarget(&'static str),
}

use Need::{CurlTftp, File, Program, Root, RustTarget};

/// Programs every real-firmware boot needs (tests/firmware/boot.sh and
/// prepare.sh), whatever the firmware.
const FIRMWARE_COMMON: &[Need] = &[
    Root,
    Program("ip", "iproute2"),
    Program("qemu-system-x86_64", "qemu-system-x86"),
    Program("dumpcap", "tshark"),
    Program("tshark", "tshark"),
    Program("cpio", "cpio"),
    Program("gzip", "gzip"),
    Program("xxd", "xxd"),
    Program("sha256sum", "coreutils"),
    Program("awk", "mawk"),
    Program("timeout", "coreutils"),
    Program("openssl", "openssl"),
    Program("apt-get", "apt"),
    Program("apt-cache", "apt"),
    Program("dpkg", "dpkg"),
    File("/bin/busybox", "busybox-static"),
];
/// BIOS boots: SeaBIOS with QEMU's iPXE ROM, then pxelinux.
const FIRMWARE_BIOS: &[Need] = &[
    File("/usr/lib/PXELINUX/pxelinux.0", "pxelinux"),
    File(
        "/usr/lib/syslinux/modules/bios/ldlinux.c32",
        "syslinux-common",
    ),
    File("/usr/lib/ipxe/qemu/efi-e1000.rom", "ipxe-qemu"),
];
/// UEFI boots: OVMF, and a unified kernel image built with objcopy from
/// systemd-boot's stub.
const FIRMWARE_UEFI: &[Need] = &[
    File("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
    File("/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf"),
    File(
        "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
        "systemd-boot-efi",
    ),
    Program("objcopy", "binutils"),
];
/// proxyDHCP boots run busybox `udhcpd` beside our server.
const PROXY: &[Need] = &[Program("udhcpd", "udhcpd")];
/// The preboot flow on BIOS (boot.sh --flow): a static `preboot-client`
/// (musl), stripped into the initrd, checked to have no interpreter.
const FLOW: &[Need] = &[
    RustTarget("x86_64-unknown-linux-musl"),
    Program("strip", "binutils"),
    Program("readelf", "binutils"),
];

/// The sets: cfg suffix and the lists of needs it joins.
const SETS: &[(&str, &[&[Need]])] = &[
    ("root", &[&[Root]]),
    ("root_curl", &[&[Root, CurlTftp]]),
    ("root_losetup", &[&[Root, Program("losetup", "mount")]]),
    (
        "partition_tools",
        &[&[Program("sfdisk", "fdisk"), Program("sgdisk", "gdisk")]],
    ),
    (
        "root_losetup_sgdisk",
        &[&[
            Root,
            Program("losetup", "mount"),
            Program("sgdisk", "gdisk"),
        ]],
    ),
    ("curl_tftp", &[&[CurlTftp]]),
    ("tftp_hpa", &[&[Program("tftp", "tftp-hpa")]]),
    ("atftp", &[&[Program("atftp", "atftp")]]),
    ("tshark", &[&[Program("tshark", "tshark")]]),
    ("python3", &[&[Program("python3", "python3")]]),
    (
        "awk_xxd",
        &[&[Program("awk", "mawk"), Program("xxd", "xxd")]],
    ),
    (
        "netns_curl",
        &[&[Root, Program("ip", "iproute2"), CurlTftp]],
    ),
    (
        "netns_curl_udhcpd",
        &[&[
            Root,
            Program("ip", "iproute2"),
            CurlTftp,
            Program("udhcpd", "udhcpd"),
        ]],
    ),
    (
        "netns_dhcp",
        &[&[Root, Program("ip", "iproute2"), Program("udhcpd", "udhcpd")]],
    ),
    (
        "netns_dhclient",
        &[&[
            Root,
            Program("ip", "iproute2"),
            Program("dhclient", "isc-dhcp-client"),
        ]],
    ),
    (
        "netns_tap",
        &[&[
            Root,
            Program("ip", "iproute2"),
            Program("python3", "python3"),
        ]],
    ),
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
    (
        "firmware_bios_flow",
        &[FIRMWARE_COMMON, FIRMWARE_BIOS, PROXY, FLOW],
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
    // What is missing, and the sets it makes ignored (said once, as a
    // build warning, when this probe runs).
    let mut missing: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, lists) in SETS {
        println!("cargo::rustc-check-cfg=cfg(preboot_skip_{name})");
        if ci {
            continue;
        }
        let mut skip = false;
        for need in lists.iter().flat_map(|l| l.iter()) {
            if probe.has(need) {
                continue;
            }
            skip = true;
            let what = describe(need);
            match missing.iter_mut().find(|(w, _)| *w == what) {
                Some((_, sets)) => sets.push(name),
                None => missing.push((what, vec![name])),
            }
        }
        if skip {
            println!("cargo::rustc-cfg=preboot_skip_{name}");
        }
    }
    for (what, sets) in missing {
        println!(
            "cargo::warning=tests ignored here (missing {what}): {}",
            sets.join(", ")
        );
    }
}

/// A missing need, in words.
fn describe(need: &Need) -> String {
    match need {
        Root => "root".into(),
        Program(p, package) => format!("program {p}, Debian package {package}"),
        File(f, package) => format!("{f}, Debian package {package}"),
        CurlTftp => "curl with TFTP, Debian package curl".into(),
        RustTarget(t) => format!("Rust target {t} (rustup target add {t})"),
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
            Program(p, _) => self.has_program(p),
            File(f, _) => Path::new(f).is_file(),
            CurlTftp => curl_has_tftp(),
            RustTarget(t) => has_rust_target(t),
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

/// The standard library of target `t` is installed in the sysroot of the
/// compiler cargo uses.
fn has_rust_target(t: &str) -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && Path::new(String::from_utf8_lossy(&o.stdout).trim())
                    .join("lib/rustlib")
                    .join(t)
                    .join("lib")
                    .is_dir()
        })
}

/// `curl --version` lists `tftp` among its protocols.
fn curl_has_tftp() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("tftp"))
}
