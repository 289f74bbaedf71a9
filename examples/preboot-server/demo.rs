//! The demo boot tree: the embedded default configuration and a small TFTP
//! root with a boot file per architecture, a menu file and a placeholder
//! imaging environment (kernel and initrd), created in a new
//! directory so that the boot server runs on a fresh machine without root.
//!
//! The boot files are placeholders with the right names and plausible
//! headers (a PE `MZ` stub for the EFI files), not programs: enough to
//! watch a PXE conversation and fetch files, not to boot a machine.
//!
//! Part of the `preboot-server` example; the tests that check the demo
//! include this file (`#[path]`) to know what it serves.

#![allow(dead_code)] // each includer uses a part

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The embedded default configuration (loopback, unprivileged ports).
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// The files of the demo tree: path under the TFTP root and size in bytes.
pub const DEMO_FILES: [(&str, usize); 4] = [
    ("bios/pxelinux.0", 42_489),
    ("efi64/bootx64.efi", 65_536 + 311),
    ("efi32/bootia32.efi", 49_152 + 77),
    ("arm64/bootaa64.efi", 57_344 + 5),
];

/// The demo imaging environment (the transaction server's demo policy
/// names it in its task replies): placeholders, path under the TFTP root
/// and size in bytes.
pub const DEMO_IMAGING: [(&str, usize); 2] = [
    ("imaging/linux", 96 * 1024 + 17),
    ("imaging/initrd", 160 * 1024 + 3),
];

const PXELINUX_MENU: &str = "\
# pxelinux menu served by the preboot demo
DEFAULT menu.c32
PROMPT 0
TIMEOUT 50
MENU TITLE preboot demo
LABEL preboot
  MENU LABEL Network boot (preboot demo)
  KERNEL vmlinuz
  APPEND initrd=initrd.img console=ttyS0
LABEL local
  MENU LABEL Boot from local disk
  LOCALBOOT 0
";

const IPXE_SCRIPT: &str = "\
#!ipxe
# iPXE script served by the preboot demo to clients already running iPXE
echo preboot demo: ${net0/mac} on ${net0/ip}
menu preboot demo
item local Boot from local disk
item shell iPXE shell
choose target && goto ${target}
:local
exit
:shell
shell
";

/// A demo boot tree on disk; removed when dropped.
#[derive(Debug)]
pub struct DemoTree {
    dir: PathBuf,
    config: PathBuf,
}

impl DemoTree {
    /// Create `preboot-demo-<pid>[-n]` under `parent` with `preboot.toml`
    /// (the [`DEFAULT_CONFIG`]) and `tftp/` (the [`DEMO_FILES`], the
    /// [`DEMO_IMAGING`] environment, the
    /// pxelinux menu `bios/pxelinux.cfg/default` and `boot.ipxe`).
    pub fn create(parent: &Path) -> io::Result<DemoTree> {
        let mut dir = parent.join(format!("preboot-demo-{}", std::process::id()));
        let mut n = 0;
        loop {
            match fs::create_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => {
                    n += 1;
                    dir = parent.join(format!("preboot-demo-{}-{n}", std::process::id()));
                }
                Err(e) => return Err(e),
            }
        }
        // From here on the directory is ours: drop removes it on error.
        let tree = DemoTree {
            config: dir.join("preboot.toml"),
            dir,
        };
        let root = tree.root();
        for (name, size) in DEMO_FILES.into_iter().chain(DEMO_IMAGING) {
            let path = root.join(name);
            if let Some(p) = path.parent() {
                fs::create_dir_all(p)?;
            }
            fs::write(&path, demo_file(name, size))?;
        }
        fs::create_dir_all(root.join("bios/pxelinux.cfg"))?;
        fs::write(root.join("bios/pxelinux.cfg/default"), PXELINUX_MENU)?;
        fs::write(root.join("boot.ipxe"), IPXE_SCRIPT)?;
        fs::write(&tree.config, DEFAULT_CONFIG)?;
        Ok(tree)
    }

    /// The directory holding everything.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The TFTP root.
    pub fn root(&self) -> PathBuf {
        self.dir.join("tftp")
    }
}

impl Drop for DemoTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The content of a demo boot file: a header naming it, then bytes from a
/// generator seeded by the name (deterministic, incompressible-looking).
pub fn demo_file(name: &str, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    if name.ends_with(".efi") {
        // DOS stub with e_lfanew = 0x80 and a PE signature there.
        out.extend_from_slice(b"MZ");
        out.resize(0x3c, 0);
        out.extend_from_slice(&0x80u32.to_le_bytes());
        out.extend_from_slice(b"preboot demo placeholder, not an EFI program\0");
        out.resize(0x80, 0);
        out.extend_from_slice(b"PE\0\0");
    } else {
        out.extend_from_slice(b"preboot demo placeholder for ");
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    // xorshift64*, seeded from FNV-1a of the name.
    let mut x = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    while out.len() < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(size);
    out
}
