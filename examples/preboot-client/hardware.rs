//! What the workstation is made of, read from the kernel's sysfs and procfs
//! (docs/transaction-protocol.md §4.3 `WorkstationInfo`; limits in §8).
//!
//! Everything is read under a root directory: `/` on a real machine, a fake
//! tree in tests and for simulated workstations. Nothing here fails: a file
//! that is missing, unreadable or malformed leaves its field empty (`None`,
//! or no entry), because a workstation with a strange sysfs must still be
//! able to boot. Every read is bounded in size and every directory walk in
//! entries.
//!
//! Sources:
//! - NICs: `sys/class/net/*/address` (`lo` and all-zero addresses skipped),
//!   PCI ids from `sys/class/net/*/device/{vendor,device}` (for virtio,
//!   from the PCI function above the virtio device).
//! - Machine UUID: `sys/class/dmi/id/product_uuid`, converted to the SMBIOS
//!   / option 97 byte order (see [`uuid_from_dmi_text`]).
//! - SMBIOS facts (§4.3 TLVs 20–27: system manufacturer, product, version,
//!   serial, BIOS vendor and version, asset tag, chassis type):
//!   `sys/class/dmi/id/{sys_vendor,product_name,product_version,
//!   product_serial,bios_vendor,bios_version,chassis_asset_tag,
//!   chassis_type}`. `product_serial` is readable by root only: absent
//!   otherwise. Strings are trimmed; empty ones are left out.
//! - CPU model and count: `proc/cpuinfo`. RAM: `proc/meminfo` `MemTotal`.
//! - Disks: `sys/block/*/size` (512-byte sectors), skipping `loop*`,
//!   `ram*`, `zram*`, `dm-*` and empty (size 0) devices.
//! - PCI devices: `sys/bus/pci/devices/*/{vendor,device}`.
//! - Firmware: UEFI if `sys/firmware/efi` exists, otherwise BIOS; with the
//!   CPU architecture this gives the client architecture of RFC 4578 §2.1
//!   (option 93): 0 BIOS x86, 6 UEFI IA32, 7 UEFI x64, 10 UEFI ARM32,
//!   11 UEFI ARM64.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::Path;

use preboot::wire::transaction::messages::{Nic, PciId, Smbios as SmbiosTlvs, WorkstationInfo};
use preboot::wire::transaction::smbios::{MAX_SMBIOS_STRING as MAX_SMBIOS_TLV, chassis_type_name};

/// Largest file read (`/proc/cpuinfo` of a large machine fits).
const MAX_FILE: u64 = 4 << 20;
/// Most entries looked at in one directory.
const MAX_DIR_ENTRIES: usize = 4096;
/// §8: at most 16 MAC addresses / NICs / disks, 64 PCI devices per message.
const MAX_MACS: usize = 16;
const MAX_DISKS: usize = 16;
const MAX_PCI: usize = 64;
/// §4.3 TLV 4: the CPU model is at most 64 bytes.
const MAX_CPU_MODEL: usize = 64;

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetInterface {
    /// Kernel name (`eth0`, `enp3s0`).
    pub name: String,
    /// Hardware address.
    pub mac: [u8; 6],
    /// PCI vendor/device of the interface's device, if it has one (a
    /// virtual interface such as a veth or a bridge has none).
    pub pci: Option<PciId>,
}

/// One block device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (`sda`, `nvme0n1`).
    pub name: String,
    /// Size in MB (2^20 bytes), saturated at `u32::MAX`.
    pub mb: u32,
}

/// Firmware the machine booted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// Legacy BIOS (no `/sys/firmware/efi`).
    Bios,
    /// UEFI.
    Uefi,
}

/// SMBIOS strings (type 0 BIOS, type 1 system), as the kernel shows them;
/// each at most [`MAX_SMBIOS_STRING`] bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Smbios {
    /// System manufacturer (`sys_vendor`).
    pub manufacturer: Option<String>,
    /// System product name (`product_name`).
    pub product: Option<String>,
    /// System version (`product_version`; some vendors put the model
    /// name there).
    pub version: Option<String>,
    /// System serial number (`product_serial`, readable by root only).
    pub serial: Option<String>,
    /// BIOS vendor (`bios_vendor`).
    pub bios_vendor: Option<String>,
    /// BIOS version (`bios_version`).
    pub bios_version: Option<String>,
    /// Chassis asset tag (`chassis_asset_tag`).
    pub asset_tag: Option<String>,
    /// Chassis type (`chassis_type`: SMBIOS type 3, lock bit cleared).
    pub chassis_type: Option<u8>,
}

/// Longest SMBIOS string kept (SMBIOS strings have no limit; §8 strings in
/// tasks are at most 255 bytes).
pub const MAX_SMBIOS_STRING: usize = 255;

/// The hardware facts of one workstation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hardware {
    /// Network interfaces with a hardware address: those with a PCI device
    /// first, then virtual ones, each group sorted by name.
    pub nics: Vec<NetInterface>,
    /// Machine UUID in SMBIOS / option 97 order.
    pub uuid: Option<[u8; 16]>,
    /// SMBIOS strings.
    pub smbios: Smbios,
    /// CPU model name.
    pub cpu_model: Option<String>,
    /// Number of logical CPUs.
    pub cpu_count: Option<u16>,
    /// RAM in MB.
    pub ram_mb: Option<u32>,
    /// Disks, sorted by name (`sda` before `sdb` before `sdaa`).
    pub disks: Vec<Disk>,
    /// PCI devices, sorted by bus address.
    pub pci: Vec<PciId>,
    /// Firmware kind.
    pub firmware: Firmware,
    /// Client architecture (RFC 4578 §2.1, DHCP option 93, §4.3 TLV 3).
    pub arch: u16,
}

/// Reads the hardware facts of the machine whose `/` is `root`.
pub fn detect(root: &Path) -> Hardware {
    let firmware = if root.join("sys/firmware/efi").is_dir() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    let cpuinfo = read_text(&root.join("proc/cpuinfo"));
    let (cpu_model, cpu_count) = cpuinfo.as_deref().map_or((None, None), parse_cpuinfo);
    Hardware {
        nics: nics(root),
        uuid: machine_uuid(root),
        smbios: smbios_strings(root),
        cpu_model,
        cpu_count,
        ram_mb: read_text(&root.join("proc/meminfo"))
            .as_deref()
            .and_then(parse_meminfo),
        disks: disks(root),
        pci: pci_devices(root),
        firmware,
        arch: client_arch(firmware, std::env::consts::ARCH),
    }
}

impl Hardware {
    /// A simulated workstation number `index` (for `--workstations N`):
    /// distinct, deterministic MAC (locally administered, `02:50:42:` and
    /// the low 24 bits of the index: distinct below 16,777,216), UUID and
    /// disk size; a BIOS x86 machine with one e1000.
    pub fn simulated(index: u32) -> Hardware {
        let i = index.to_be_bytes();
        let mac = [0x02, 0x50, 0x42, i[1], i[2], i[3]];
        // An RFC 4122 version-4 layout with the index in the last bytes.
        let uuid = [
            0x50, 0x42, 0x4f, 0x4f, 0x54, 0x53, 0x49, 0x4d, 0x80, 0x00, 0x00, 0x00, i[0], i[1],
            i[2], i[3],
        ];
        let e1000 = PciId {
            vendor: 0x8086,
            device: 0x100e,
        };
        Hardware {
            nics: vec![NetInterface {
                name: "eth0".into(),
                mac,
                pci: Some(e1000),
            }],
            uuid: Some(uuid),
            smbios: Smbios {
                manufacturer: Some("preboot".into()),
                product: Some("simulated workstation".into()),
                version: Some("1".into()),
                serial: Some(format!("SIM{index:08}")),
                bios_vendor: Some("preboot".into()),
                bios_version: Some("1".into()),
                asset_tag: Some(format!("SIM-{index}")),
                chassis_type: Some(3),
            },
            cpu_model: Some("Simulated CPU".into()),
            cpu_count: Some(4),
            ram_mb: Some(4096),
            disks: vec![Disk {
                name: "sda".into(),
                mb: 65536u32.saturating_add(index % 1024),
            }],
            pci: vec![
                PciId {
                    vendor: 0x8086,
                    device: 0x1237,
                },
                e1000,
            ],
            firmware: Firmware::Bios,
            arch: 0,
        }
    }

    /// The facts as a `WorkstationInfo` (§4.3). Lists longer than the limits
    /// of §8 are truncated (the first 16 NICs, 16 disks, 64 PCI devices);
    /// the CPU model and the SMBIOS strings are cut to 64 bytes at a
    /// character boundary. The MACs of
    /// TLV 1 are those of the interfaces with a PCI device, or, on a machine
    /// with none (a container, a simulation), of the virtual ones: the
    /// bridges and veths of a host are not the workstation's identity.
    /// Image-safe data, IP settings and DNS are left empty for the caller.
    /// A machine with no NIC gives no MAC, which `WorkstationInfo` refuses
    /// to emit: the caller reports that.
    pub fn to_info(&self) -> WorkstationInfo<'_> {
        let mut info = WorkstationInfo {
            uuid: self.uuid,
            arch: Some(self.arch),
            cpu_model: self
                .cpu_model
                .as_deref()
                .map(|m| truncate(m, MAX_CPU_MODEL)),
            cpu_count: self.cpu_count,
            ram_mb: self.ram_mb,
            smbios: self.smbios.to_tlvs(),
            ..WorkstationInfo::default()
        };
        let physical = self.nics.iter().any(|n| n.pci.is_some());
        for nic in self.nics.iter().filter(|n| n.pci.is_some() || !physical) {
            // Pushes beyond the capacity fail and are dropped: truncation.
            let _ = info.macs.push(nic.mac);
        }
        for nic in self.nics.iter().take(MAX_MACS) {
            let _ = info.nics.push(Nic {
                mac: nic.mac,
                pci: nic.pci.unwrap_or(PciId {
                    vendor: 0,
                    device: 0,
                }),
            });
        }
        for d in self.disks.iter().take(MAX_DISKS) {
            let _ = info.disks_mb.push(d.mb);
        }
        for p in self.pci.iter().take(MAX_PCI) {
            let _ = info.pci.push(*p);
        }
        info
    }
}

impl fmt::Display for Hardware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fw = match self.firmware {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
        };
        writeln!(f, "firmware: {fw}, client arch {}", self.arch)?;
        match &self.uuid {
            Some(u) => {
                let id = preboot::wire::pxe::MachineId::new(*u);
                writeln!(
                    f,
                    "uuid: {} (option 97 bytes {})",
                    id.guid_order(),
                    id.wire_order()
                )?
            }
            None => writeln!(f, "uuid: none")?,
        }
        let sm = &self.smbios;
        for (name, v) in [
            ("manufacturer", &sm.manufacturer),
            ("product", &sm.product),
            ("version", &sm.version),
            ("serial", &sm.serial),
            ("bios vendor", &sm.bios_vendor),
            ("bios version", &sm.bios_version),
            ("asset tag", &sm.asset_tag),
        ] {
            if let Some(v) = v {
                writeln!(f, "{name}: {v}")?;
            }
        }
        if let Some(t) = sm.chassis_type {
            writeln!(
                f,
                "chassis: {} ({t})",
                chassis_type_name(t).unwrap_or("not in SMBIOS 3.x")
            )?;
        }
        writeln!(
            f,
            "cpu: {} x {}",
            self.cpu_count.map_or("?".to_string(), |c| c.to_string()),
            self.cpu_model.as_deref().unwrap_or("?")
        )?;
        match self.ram_mb {
            Some(r) => writeln!(f, "ram: {r} MB")?,
            None => writeln!(f, "ram: ?")?,
        }
        for n in &self.nics {
            let m = n.mac;
            write!(
                f,
                "nic: {} {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                n.name, m[0], m[1], m[2], m[3], m[4], m[5]
            )?;
            match n.pci {
                Some(p) => writeln!(f, " pci {:04x}:{:04x}", p.vendor, p.device)?,
                None => writeln!(f, " virtual")?,
            }
        }
        for d in &self.disks {
            writeln!(f, "disk: {} {} MB", d.name, d.mb)?;
        }
        write!(f, "pci devices: {}", self.pci.len())?;
        for p in &self.pci {
            write!(f, " {:04x}:{:04x}", p.vendor, p.device)?;
        }
        writeln!(f)
    }
}

/// RFC 4578 §2.1 client architecture for a firmware and a Rust target
/// architecture (`std::env::consts::ARCH`).
pub fn client_arch(firmware: Firmware, target_arch: &str) -> u16 {
    match (firmware, target_arch) {
        (Firmware::Uefi, "x86_64") => 7,
        (Firmware::Uefi, "x86") => 6,
        (Firmware::Uefi, "aarch64") => 11,
        (Firmware::Uefi, "arm") => 10,
        // BIOS x86, and the fallback for anything this table lacks.
        _ => 0,
    }
}

/// The machine UUID as the kernel shows it in `product_uuid`, in the byte
/// order firmware sends in option 97 (RFC 4578 §2.3) and §4.3 TLV 2 carries:
/// the raw SMBIOS bytes.
///
/// SMBIOS 2.6 and later store the first three fields little-endian; Linux
/// prints such a UUID with those fields swapped back (`%pUl`, the
/// `dmidecode` reading), and older tables as stored (`%pUb`). The version is
/// read from `sys/firmware/dmi/tables/smbios_entry_point` when readable
/// (root only); otherwise 2.6+ is assumed (every machine since 2009, QEMU,
/// OVMF). All-zero and all-0xff UUIDs mean "not set" in SMBIOS: `None`.
fn machine_uuid(root: &Path) -> Option<[u8; 16]> {
    let text = read_text(&root.join("sys/class/dmi/id/product_uuid"))?;
    let entry = read_bytes(&root.join("sys/firmware/dmi/tables/smbios_entry_point"), 64);
    let mixed_endian = entry
        .as_deref()
        .and_then(smbios_version)
        .is_none_or(|v| v >= (2, 6));
    let bytes = uuid_from_dmi_text(text.trim(), mixed_endian)?;
    if bytes == [0; 16] || bytes == [0xff; 16] {
        return None;
    }
    Some(bytes)
}

fn smbios_strings(root: &Path) -> Smbios {
    let dir = root.join("sys/class/dmi/id");
    let read = |f: &str| {
        let t = read_text(&dir.join(f))?;
        let t = truncate(t.trim(), MAX_SMBIOS_STRING);
        (!t.is_empty()).then(|| t.to_string())
    };
    Smbios {
        manufacturer: read("sys_vendor"),
        product: read("product_name"),
        version: read("product_version"),
        serial: read("product_serial"),
        bios_vendor: read("bios_vendor"),
        bios_version: read("bios_version"),
        asset_tag: read("chassis_asset_tag"),
        // Linux prints the type as a decimal number, lock bit cleared.
        chassis_type: read("chassis_type").and_then(|t| t.parse::<u8>().ok()),
    }
}

impl Smbios {
    /// The facts as §4.3 TLVs 20–27: each string cut to 64 bytes at a
    /// character boundary.
    pub fn to_tlvs(&self) -> SmbiosTlvs<'_> {
        fn s(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(|v| truncate(v, MAX_SMBIOS_TLV))
        }
        SmbiosTlvs {
            manufacturer: s(&self.manufacturer),
            product: s(&self.product),
            version: s(&self.version),
            serial: s(&self.serial),
            bios_vendor: s(&self.bios_vendor),
            bios_version: s(&self.bios_version),
            asset_tag: s(&self.asset_tag),
            chassis_type: self.chassis_type,
        }
    }
}

/// Parses the text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (any case)
/// into raw SMBIOS bytes: with `mixed_endian` (SMBIOS 2.6+) the first three
/// fields are stored little-endian, so they are swapped; the result
/// rendered by `MachineId::guid_order` gives the text back.
pub fn uuid_from_dmi_text(text: &str, mixed_endian: bool) -> Option<[u8; 16]> {
    let t = text.as_bytes();
    if t.len() != 36 {
        return None;
    }
    let mut b = [0u8; 16];
    let mut i = 0;
    let mut pos = 0;
    while pos < 36 {
        if matches!(pos, 8 | 13 | 18 | 23) {
            if t[pos] != b'-' {
                return None;
            }
            pos += 1;
            continue;
        }
        let hi = hex(t[pos])?;
        let lo = hex(*t.get(pos + 1)?)?;
        *b.get_mut(i)? = hi << 4 | lo;
        i += 1;
        pos += 2;
    }
    if mixed_endian {
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
    }
    Some(b)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// SMBIOS version (major, minor) from an entry point structure: `_SM_`
/// (2.x, version at offsets 6 and 7) or `_SM3_` (3.x, offsets 7 and 8).
fn smbios_version(entry: &[u8]) -> Option<(u8, u8)> {
    if entry.starts_with(b"_SM3_") {
        Some((*entry.get(7)?, *entry.get(8)?))
    } else if entry.starts_with(b"_SM_") {
        Some((*entry.get(6)?, *entry.get(7)?))
    } else {
        None
    }
}

/// CPU model (first `model name`, or `Hardware`/`Processor` on ARM) and
/// the number of `processor` entries.
fn parse_cpuinfo(text: &str) -> (Option<String>, Option<u16>) {
    let mut model = None;
    let mut fallback = None;
    let mut count: u32 = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => count = count.saturating_add(1),
            "model name" if model.is_none() && !value.is_empty() => model = Some(value.to_string()),
            "Hardware" | "Processor" if fallback.is_none() && !value.is_empty() => {
                fallback = Some(value.to_string())
            }
            _ => {}
        }
    }
    let count = (count > 0).then(|| u16::try_from(count).unwrap_or(u16::MAX));
    (model.or(fallback), count)
}

/// `MemTotal:  16318480 kB` -> MB.
fn parse_meminfo(text: &str) -> Option<u32> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    let kb = match words.next() {
        Some("kB") | None => n,
        _ => return None,
    };
    Some(u32::try_from(kb / 1024).unwrap_or(u32::MAX))
}

fn nics(root: &Path) -> Vec<NetInterface> {
    let dir = root.join("sys/class/net");
    let mut out: Vec<NetInterface> = Vec::new();
    for name in dir_names(&dir) {
        if name == "lo" {
            continue;
        }
        let Some(mac) = read_text(&dir.join(&name).join("address"))
            .as_deref()
            .and_then(|t| parse_mac(t.trim()))
        else {
            continue;
        };
        if mac == [0; 6] {
            continue;
        }
        let mut device = dir.join(&name).join("device");
        // A virtio NIC's device is the virtio device (ids of the virtio
        // spec); its parent is the PCI function.
        if fs::read_link(device.join("subsystem"))
            .is_ok_and(|l| l.file_name().is_some_and(|n| n == "virtio"))
        {
            device = device.join("..");
        }
        let pci = pci_id(&device);
        out.push(NetInterface { name, mac, pci });
    }
    // Physical first, then by name (dir_names is sorted; the sort is stable).
    out.sort_by_key(|n| n.pci.is_none());
    out
}

/// `52:54:00:12:34:56` -> bytes; anything else (InfiniBand's 20-byte
/// addresses, garbage) -> `None`.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// PCI ids from a device directory's `vendor` and `device` (`0x8086`).
fn pci_id(device: &Path) -> Option<PciId> {
    let read = |f: &str| {
        let t = read_text(&device.join(f))?;
        let t = t.trim();
        let t = t.strip_prefix("0x").unwrap_or(t);
        u16::from_str_radix(t, 16).ok()
    };
    Some(PciId {
        vendor: read("vendor")?,
        device: read("device")?,
    })
}

fn disks(root: &Path) -> Vec<Disk> {
    let dir = root.join("sys/block");
    let mut out = Vec::new();
    for name in dir_names(&dir) {
        if ["loop", "ram", "zram", "dm-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let Some(sectors) =
            read_text(&dir.join(&name).join("size")).and_then(|t| t.trim().parse::<u64>().ok())
        else {
            continue;
        };
        if sectors == 0 {
            continue;
        }
        let mb = sectors / 2048; // 512-byte sectors -> 2^20 bytes
        out.push(Disk {
            name,
            mb: u32::try_from(mb).unwrap_or(u32::MAX),
        });
    }
    // `sdz` before `sdaa`: shorter names first, then by name.
    out.sort_by(|a, b| (a.name.len(), &a.name).cmp(&(b.name.len(), &b.name)));
    out
}

fn pci_devices(root: &Path) -> Vec<PciId> {
    let dir = root.join("sys/bus/pci/devices");
    dir_names(&dir)
        .into_iter()
        .filter_map(|name| pci_id(&dir.join(name)))
        .collect()
}

/// Sorted UTF-8 names in a directory (at most `MAX_DIR_ENTRIES`); empty if
/// the directory cannot be read.
fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .take(MAX_DIR_ENTRIES)
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

fn read_bytes(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(limit)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

fn read_text(path: &Path) -> Option<String> {
    String::from_utf8(read_bytes(path, MAX_FILE)?).ok()
}

/// The longest prefix of `s` of at most `max` bytes ending on a character
/// boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use preboot::wire::pxe::MachineId;
    use preboot::wire::transaction::Payload;
    use std::path::PathBuf;

    /// A fake `/` in a temporary directory.
    struct Tree(tempfile::TempDir);

    impl Tree {
        fn new() -> Self {
            Tree(tempfile::tempdir().expect("tempdir"))
        }
        fn root(&self) -> &Path {
            self.0.path()
        }
        fn file(&self, rel: &str, text: &str) -> &Self {
            let p: PathBuf = self.root().join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, text).expect("write");
            self
        }
        fn dir(&self, rel: &str) -> &Self {
            fs::create_dir_all(self.root().join(rel)).expect("mkdir");
            self
        }
        fn nic(&self, name: &str, mac: &str, pci: Option<(&str, &str)>) -> &Self {
            self.file(
                &format!("sys/class/net/{name}/address"),
                &format!("{mac}\n"),
            );
            if let Some((v, d)) = pci {
                self.file(&format!("sys/class/net/{name}/device/vendor"), v);
                self.file(&format!("sys/class/net/{name}/device/device"), d);
            }
            self
        }
    }

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz\nflags\t\t: fpu vme\n\nprocessor\t: 1\nmodel name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz\n\n";

    /// A QEMU-like machine: one e1000, one veth, lo, a disk, loops, a
    /// UUID given as `-smbios type=1,uuid=…`.
    fn qemu_like() -> Tree {
        let t = Tree::new();
        t.nic("lo", "00:00:00:00:00:00", None)
            .nic("veth9", "ae:01:02:03:04:05", None)
            .nic("ens3", "52:54:00:12:34:56", Some(("0x8086\n", "0x100e\n")))
            .nic("dummy0", "00:00:00:00:00:00", None)
            .file(
                "sys/class/dmi/id/product_uuid",
                "8b7c1d4e-e2e0-4c5a-9f3b-0123456789ab\n",
            )
            .file("sys/class/dmi/id/sys_vendor", "QEMU\n")
            .file(
                "sys/class/dmi/id/product_name",
                "Standard PC (i440FX + PIIX, 1996)\n",
            )
            .file("sys/class/dmi/id/product_serial", "   \n")
            .file("sys/class/dmi/id/bios_version", "1.16.3-debian-1.16.3-2\n")
            .file("sys/class/dmi/id/product_version", "pc-i440fx-8.2\n")
            .file("sys/class/dmi/id/chassis_type", "1\n")
            .file("proc/cpuinfo", CPUINFO)
            .file(
                "proc/meminfo",
                "MemTotal:        2030440 kB\nMemFree:          1000 kB\n",
            )
            .file("sys/block/sda/size", "41943040\n")
            .file("sys/block/loop0/size", "2048\n")
            .file("sys/block/ram0/size", "8192\n")
            .file("sys/block/zram0/size", "8192\n")
            .file("sys/block/dm-0/size", "8192\n")
            .file("sys/block/sr0/size", "0\n")
            .file("sys/block/vdb/size", "2097152\n")
            .file("sys/bus/pci/devices/0000:00:00.0/vendor", "0x8086\n")
            .file("sys/bus/pci/devices/0000:00:00.0/device", "0x1237\n")
            .file("sys/bus/pci/devices/0000:00:03.0/vendor", "0x8086\n")
            .file("sys/bus/pci/devices/0000:00:03.0/device", "0x100e\n");
        t
    }

    /// §4.3: every field read from its file; lo, all-zero MACs, loop/ram/
    /// zram/dm and empty disks skipped; physical NICs first.
    #[test]
    fn detects_a_fake_machine() {
        let t = qemu_like();
        let hw = detect(t.root());
        let names: Vec<_> = hw.nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["ens3", "veth9"]);
        assert_eq!(hw.nics[0].mac, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(
            hw.nics[0].pci,
            Some(PciId {
                vendor: 0x8086,
                device: 0x100e
            })
        );
        assert_eq!(hw.nics[1].pci, None);
        assert_eq!(
            hw.cpu_model.as_deref(),
            Some("Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz")
        );
        assert_eq!(hw.cpu_count, Some(2));
        assert_eq!(hw.ram_mb, Some(1982));
        assert_eq!(
            hw.disks,
            [
                Disk {
                    name: "sda".into(),
                    mb: 20480
                },
                Disk {
                    name: "vdb".into(),
                    mb: 1024
                }
            ]
        );
        assert_eq!(
            hw.pci,
            [
                PciId {
                    vendor: 0x8086,
                    device: 0x1237
                },
                PciId {
                    vendor: 0x8086,
                    device: 0x100e
                }
            ]
        );
        assert_eq!(hw.firmware, Firmware::Bios);
        assert_eq!(hw.arch, 0);
        assert_eq!(
            hw.smbios,
            Smbios {
                manufacturer: Some("QEMU".into()),
                product: Some("Standard PC (i440FX + PIIX, 1996)".into()),
                version: Some("pc-i440fx-8.2".into()),
                serial: None,
                bios_vendor: None,
                bios_version: Some("1.16.3-debian-1.16.3-2".into()),
                asset_tag: None,
                chassis_type: Some(1),
            }
        );
    }

    /// Simulated workstations differ in MAC, UUID and disk, and convert to
    /// a `WorkstationInfo` that emits.
    #[test]
    fn simulated_workstations_are_distinct() {
        let a = Hardware::simulated(1);
        let b = Hardware::simulated(2);
        let c = Hardware::simulated(0x0100_0001);
        assert_ne!(a.nics[0].mac, b.nics[0].mac);
        assert_ne!(a.uuid, b.uuid);
        assert_ne!(a.uuid, c.uuid);
        assert_ne!(a.disks, b.disks);
        let info = a.to_info();
        assert_eq!(info.macs.as_slice(), [a.nics[0].mac]);
        let mut buf = vec![0u8; info.buffer_len()];
        info.emit(&mut buf).expect("emit");
        assert_eq!(WorkstationInfo::parse(&buf).expect("parse"), info);
    }

    /// §4.3 TLV 2 "SMBIOS/option 97 order": the kernel prints an SMBIOS
    /// 2.6+ UUID with its first three fields swapped (as dmidecode does);
    /// the bytes sent are the raw SMBIOS bytes, whose GUID rendering is the
    /// text again.
    #[test]
    fn uuid_in_smbios_order() {
        let hw = detect(qemu_like().root());
        let u = hw.uuid.expect("uuid");
        assert_eq!(
            u,
            [
                0x4e, 0x1d, 0x7c, 0x8b, 0xe0, 0xe2, 0x5a, 0x4c, 0x9f, 0x3b, 0x01, 0x23, 0x45, 0x67,
                0x89, 0xab
            ]
        );
        assert_eq!(
            MachineId::new(u).guid_order().to_string(),
            "8b7c1d4e-e2e0-4c5a-9f3b-0123456789ab"
        );
    }

    /// SMBIOS before 2.6 stores the UUID as printed (no swap); the version
    /// comes from the entry point when it is readable.
    #[test]
    fn uuid_of_old_smbios_is_not_swapped() {
        let t = qemu_like();
        let mut ep = b"_SM_\0\x1f\x02\x05".to_vec(); // SMBIOS 2.5
        ep.resize(31, 0);
        fs::create_dir_all(t.root().join("sys/firmware/dmi/tables")).expect("mkdir");
        fs::write(
            t.root().join("sys/firmware/dmi/tables/smbios_entry_point"),
            &ep,
        )
        .expect("write");
        let u = detect(t.root()).uuid.expect("uuid");
        assert_eq!(
            MachineId::new(u).wire_order().to_string(),
            "8b7c1d4e-e2e0-4c5a-9f3b-0123456789ab"
        );
        // SMBIOS 3.0 entry point: swapped again.
        let mut ep3 = b"_SM3_\0\x18\x03\x00".to_vec();
        ep3.resize(24, 0);
        fs::write(
            t.root().join("sys/firmware/dmi/tables/smbios_entry_point"),
            &ep3,
        )
        .expect("write");
        let u = detect(t.root()).uuid.expect("uuid");
        assert_eq!(u[0], 0x4e);
    }

    /// Absent, unreadable, malformed, all-zero or all-ff UUID: `None`.
    #[test]
    fn uuid_absent_or_bad_is_none() {
        let t = Tree::new();
        assert_eq!(detect(t.root()).uuid, None);
        for bad in [
            "",
            "not-a-uuid",
            "8b7c1d4e-e2e0-4c5a-9f3b-0123456789a",
            "8b7c1d4e+e2e0-4c5a-9f3b-0123456789ab",
            "8b7c1d4e-e2e0-4c5a-9f3b-0123456789ag",
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "8b7c1d4e-e2e0-4c5a-9f3b-0123456789abé",
        ] {
            t.file("sys/class/dmi/id/product_uuid", bad);
            assert_eq!(detect(t.root()).uuid, None, "{bad:?}");
        }
        // A directory where the file should be: unreadable, no panic.
        fs::remove_file(t.root().join("sys/class/dmi/id/product_uuid")).expect("rm");
        t.dir("sys/class/dmi/id/product_uuid");
        assert_eq!(detect(t.root()).uuid, None);
        // Upper case is accepted.
        fs::remove_dir(t.root().join("sys/class/dmi/id/product_uuid")).expect("rmdir");
        t.file(
            "sys/class/dmi/id/product_uuid",
            "8B7C1D4E-E2E0-4C5A-9F3B-0123456789AB\n",
        );
        assert_eq!(detect(t.root()).uuid.map(|u| u[0]), Some(0x4e));
    }

    /// RFC 4578 §2.1: UEFI (sys/firmware/efi) x64 is 7, ARM64 11, BIOS 0.
    #[test]
    fn firmware_gives_client_arch() {
        let t = qemu_like();
        t.dir("sys/firmware/efi");
        let hw = detect(t.root());
        assert_eq!(hw.firmware, Firmware::Uefi);
        assert_eq!(hw.arch, client_arch(Firmware::Uefi, std::env::consts::ARCH));
        assert_eq!(client_arch(Firmware::Uefi, "x86_64"), 7);
        assert_eq!(client_arch(Firmware::Uefi, "aarch64"), 11);
        assert_eq!(client_arch(Firmware::Bios, "x86_64"), 0);
    }

    /// An empty tree (no sysfs, no procfs): everything empty, no panic.
    #[test]
    fn empty_tree() {
        let hw = detect(Tree::new().root());
        assert!(hw.nics.is_empty() && hw.disks.is_empty() && hw.pci.is_empty());
        assert_eq!((hw.cpu_model, hw.cpu_count, hw.ram_mb), (None, None, None));
    }

    /// A virtio NIC: the PCI ids are those of the PCI function above the
    /// virtio device (`device/..`), not the virtio ids.
    #[test]
    fn virtio_nic_takes_the_pci_function_ids() {
        let t = Tree::new();
        let pci = "sys/devices/pci0000:00/0000:00:03.0";
        t.file(&format!("{pci}/vendor"), "0x1af4\n")
            .file(&format!("{pci}/device"), "0x1041\n")
            .file(&format!("{pci}/virtio0/vendor"), "0x1af4\n")
            .file(&format!("{pci}/virtio0/device"), "0x0001\n")
            .dir("sys/bus/virtio")
            .dir("sys/class/net/eth0")
            .file("sys/class/net/eth0/address", "02:fc:00:00:00:01\n");
        let r = t.root();
        std::os::unix::fs::symlink(
            r.join("sys/bus/virtio"),
            r.join(pci).join("virtio0/subsystem"),
        )
        .expect("symlink");
        std::os::unix::fs::symlink(
            r.join(pci).join("virtio0"),
            r.join("sys/class/net/eth0/device"),
        )
        .expect("symlink");
        let hw = detect(r);
        assert_eq!(
            hw.nics[0].pci,
            Some(PciId {
                vendor: 0x1af4,
                device: 0x1041
            })
        );
    }

    /// Malformed files are skipped field by field.
    #[test]
    fn malformed_files_are_skipped() {
        let t = Tree::new();
        t.nic("eth0", "52:54:00:12:34", None)
            .nic(
                "ib0",
                "80:00:00:48:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:bc:de",
                None,
            )
            .nic("eth1", "zz:54:00:12:34:56", None)
            .nic("eth2", "52:54:00:12:34:57", Some(("0xnope", "0x100e")))
            .file("proc/meminfo", "MemTotal: lots kB\n")
            .file("proc/cpuinfo", "garbage\n\u{0}\n")
            .file("sys/block/sda/size", "-5\n")
            .file("sys/block/sdb/size", "99999999999999999999999\n")
            .file("sys/bus/pci/devices/0000:00:00.0/vendor", "0x8086\n");
        let hw = detect(t.root());
        assert_eq!(hw.nics.len(), 1);
        assert_eq!(hw.nics[0].name, "eth2");
        assert_eq!(hw.nics[0].pci, None);
        assert_eq!((hw.cpu_model, hw.cpu_count, hw.ram_mb), (None, None, None));
        assert!(hw.disks.is_empty());
        assert!(hw.pci.is_empty());
    }

    /// A huge disk saturates at u32::MAX MB instead of wrapping.
    #[test]
    fn huge_disk_saturates() {
        let t = Tree::new();
        t.file("sys/block/sda/size", &format!("{}\n", u64::MAX));
        assert_eq!(detect(t.root()).disks[0].mb, u32::MAX);
    }

    /// `sdz` comes before `sdaa` (kernel probe order), not after.
    #[test]
    fn disk_order() {
        let t = Tree::new();
        for n in ["sdaa", "sdb", "sda", "nvme0n1"] {
            t.file(&format!("sys/block/{n}/size"), "2048\n");
        }
        let names: Vec<_> = detect(t.root()).disks.into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["sda", "sdb", "sdaa", "nvme0n1"]);
    }

    /// §4.3 / §8: the conversion fills every TLV and truncates the lists to
    /// 16 MACs, 16 NICs, 16 disks, 64 PCI devices and the CPU model to 64
    /// bytes (at a char boundary); the result emits and parses back.
    #[test]
    fn to_info_truncates_to_the_limits() {
        let t = Tree::new();
        for i in 0..20 {
            t.nic(
                &format!("eth{i:02}"),
                &format!("52:54:00:00:00:{i:02x}"),
                Some(("0x8086", "0x100e")),
            );
            t.file(
                &format!("sys/block/sd{}/size", (b'a' + i) as char),
                "2048\n",
            );
        }
        for i in 0..70 {
            t.file(
                &format!("sys/bus/pci/devices/0000:00:{i:02x}.0/vendor"),
                "0x1af4",
            );
            t.file(
                &format!("sys/bus/pci/devices/0000:00:{i:02x}.0/device"),
                "0x1000",
            );
        }
        let model = format!("{}é{}", "x".repeat(63), "y".repeat(30));
        t.file(
            "proc/cpuinfo",
            &format!("processor : 0\nmodel name : {model}\n"),
        );
        t.file(
            "sys/class/dmi/id/product_uuid",
            "8b7c1d4e-e2e0-4c5a-9f3b-0123456789ab",
        );
        let hw = detect(t.root());
        assert_eq!((hw.nics.len(), hw.disks.len(), hw.pci.len()), (20, 20, 70));
        let info = hw.to_info();
        assert_eq!(info.macs.len(), 16);
        assert_eq!(info.nics.len(), 16);
        assert_eq!(info.disks_mb.len(), 16);
        assert_eq!(info.pci.len(), 64);
        assert_eq!(info.cpu_model, Some("x".repeat(63).as_str()));
        assert_eq!(info.uuid, hw.uuid);
        assert_eq!(info.arch, Some(hw.arch));
        let mut buf = vec![0u8; info.buffer_len()];
        info.emit(&mut buf).expect("emit");
        assert_eq!(WorkstationInfo::parse(&buf).expect("parse"), info);
    }

    /// §4.3 TLVs 20–27: the SMBIOS facts read from sysfs go into
    /// `WorkstationInfo`, strings trimmed and cut to 64 bytes at a character
    /// boundary; an empty string, a serial unreadable to non-root (absent
    /// file) and a chassis type that is not a number are left out; the
    /// result emits and parses back.
    #[test]
    fn smbios_facts_into_info() {
        let t = qemu_like();
        let long = format!("{}é{}", "v".repeat(63), "w".repeat(20));
        t.file("sys/class/dmi/id/bios_vendor", &format!("  {long}  \n"))
            .file("sys/class/dmi/id/chassis_asset_tag", "LAB-0042\n")
            .file("sys/class/dmi/id/chassis_type", "10\n");
        let hw = detect(t.root());
        let info = hw.to_info();
        let sm = info.smbios;
        assert_eq!(sm.manufacturer, Some("QEMU"));
        assert_eq!(sm.product, Some("Standard PC (i440FX + PIIX, 1996)"));
        assert_eq!(sm.version, Some("pc-i440fx-8.2"));
        assert_eq!(sm.serial, None); // "   " in the tree
        assert_eq!(sm.bios_vendor, Some("v".repeat(63).as_str()));
        assert_eq!(sm.bios_version, Some("1.16.3-debian-1.16.3-2"));
        assert_eq!(sm.asset_tag, Some("LAB-0042"));
        assert_eq!(sm.chassis_type, Some(10));
        assert!(hw.to_string().contains("chassis: Notebook (10)"));
        let mut buf = vec![0u8; info.buffer_len()];
        info.emit(&mut buf).expect("emit");
        assert_eq!(WorkstationInfo::parse(&buf).expect("parse"), info);

        for bad in ["", "notebook", "300", "-1"] {
            t.file("sys/class/dmi/id/chassis_type", bad);
            assert_eq!(detect(t.root()).smbios.chassis_type, None, "{bad:?}");
        }
        fs::remove_file(t.root().join("sys/class/dmi/id/product_serial")).expect("rm");
        assert_eq!(detect(t.root()).to_info().smbios.serial, None);
    }

    /// TLV 1 carries the physical NICs' MACs when there are any, the
    /// virtual ones otherwise; TLV 8 lists all (virtual with PCI 0:0).
    #[test]
    fn to_info_identity_macs() {
        let hw = detect(qemu_like().root());
        let info = hw.to_info();
        assert_eq!(info.macs.as_slice(), [[0x52, 0x54, 0, 0x12, 0x34, 0x56]]);
        assert_eq!(info.nics.len(), 2);
        assert_eq!(
            info.nics[1].pci,
            PciId {
                vendor: 0,
                device: 0
            }
        );

        let t = Tree::new();
        t.nic("veth0", "ae:01:02:03:04:05", None);
        let hw = detect(t.root());
        assert_eq!(hw.to_info().macs.as_slice(), [[0xae, 1, 2, 3, 4, 5]]);
    }

    /// The real machine this runs on: no panic, and what is there is sane.
    #[test]
    fn real_machine() {
        let hw = detect(Path::new("/"));
        if Path::new("/proc/meminfo").exists() {
            assert!(hw.ram_mb.is_some_and(|r| r > 0));
        }
        let _ = hw.to_info();
        let _ = hw.to_string();
    }
}
