//! Rule conditions: comparisons on hardware, addresses and identity,
//! combined with AND/OR/NOT. Numbers compare as numbers; text facts with
//! the string operators of [`super::text`].

pub use super::text::{TextAttr, TextOp};
use crate::dhcp::BootArch;
use crate::wire::image_safe::PendingFlags;
use crate::wire::transaction::messages::{PciId, WorkstationInfo};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// A numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl Cmp {
    /// `lhs <op> rhs`, as numbers.
    pub fn holds(self, lhs: u64, rhs: u64) -> bool {
        match self {
            Cmp::Lt => lhs < rhs,
            Cmp::Le => lhs <= rhs,
            Cmp::Eq => lhs == rhs,
            Cmp::Ne => lhs != rhs,
            Cmp::Ge => lhs >= rhs,
            Cmp::Gt => lhs > rhs,
        }
    }

    /// Parse `">= 4096"`, `"<512"`, `"4096"` (= equality) into an operator
    /// and a number.
    pub fn parse_expr(s: &str) -> Option<(Cmp, u64)> {
        let s = s.trim();
        let (op, rest) = [
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("==", Cmp::Eq),
            ("!=", Cmp::Ne),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
            ("=", Cmp::Eq),
        ]
        .iter()
        .find_map(|(p, op)| s.strip_prefix(p).map(|r| (*op, r)))
        .unwrap_or((Cmp::Eq, s));
        rest.trim().parse().ok().map(|n| (op, n))
    }
}

/// A rule condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Every sub-condition holds (empty = true).
    All(Vec<Condition>),
    /// At least one holds (empty = false).
    Any(Vec<Condition>),
    /// The sub-condition does not hold.
    Not(Box<Condition>),
    /// RAM in MB.
    RamMb(Cmp, u64),
    /// Some disk's size in MB.
    DiskMb(Cmp, u64),
    /// CPU count.
    CpuCount(Cmp, u64),
    /// CPU model contains this text (ASCII case-insensitive): the same as
    /// `Text { attribute: CpuModel, op: Contains, .. }`.
    CpuModel(String),
    /// A text fact compared with a string operator, ASCII
    /// case-insensitive; false when the workstation did not send the fact.
    Text {
        /// Which fact.
        attribute: TextAttr,
        /// How it is compared.
        op: TextOp,
        /// With what.
        value: String,
    },
    /// Some MAC address starts with these bytes.
    MacPrefix(Vec<u8>),
    /// The current IP address is inside `network/prefix`.
    IpSubnet {
        /// Network address.
        network: Ipv4Addr,
        /// Prefix length 0–32.
        prefix: u8,
    },
    /// Client architecture (RFC 4578): this exact IANA number.
    Arch(u16),
    /// Client architecture by boot class of the architecture table (a
    /// `[boot]` key such as `uefi_x64`, which 7 and 9 both are;
    /// [`BootArch::Http`] holds for every HTTP-boot architecture).
    BootArch(BootArch),
    /// A PCI device is present (device `None` = any device of the vendor).
    Pci {
        /// Vendor id.
        vendor: u16,
        /// Device id.
        device: Option<u16>,
    },
    /// The base image on the disk (image-safe data) is this one
    /// (`None` = the disk has no base image).
    BaseImage(Option<String>),
}

/// What conditions look at: the workstation information and the base
/// image from its image-safe data.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The workstation information.
    pub info: &'a WorkstationInfo<'a>,
    /// Base image currently on the disk.
    pub base_image: Option<&'a str>,
    /// Pending-task flags from the image-safe data.
    pub pending: PendingFlags,
}

impl Condition {
    /// Does the condition hold? Unknown facts (e.g. no RAM reported) make
    /// a comparison false.
    pub fn holds(&self, f: &Facts<'_>) -> bool {
        self.holds_depth(f, 0)
    }

    fn holds_depth(&self, f: &Facts<'_>, depth: usize) -> bool {
        // Nesting is bounded by the loader; guard anyway against stack abuse.
        if depth > 64 {
            return false;
        }
        let i = f.info;
        match self {
            Condition::All(cs) => cs.iter().all(|c| c.holds_depth(f, depth + 1)),
            Condition::Any(cs) => cs.iter().any(|c| c.holds_depth(f, depth + 1)),
            Condition::Not(c) => !c.holds_depth(f, depth + 1),
            Condition::RamMb(op, n) => i.ram_mb.is_some_and(|r| op.holds(r.into(), *n)),
            Condition::DiskMb(op, n) => i.disks_mb.iter().any(|d| op.holds((*d).into(), *n)),
            Condition::CpuCount(op, n) => i.cpu_count.is_some_and(|c| op.holds(c.into(), *n)),
            Condition::CpuModel(s) => TextAttr::CpuModel.holds(TextOp::Contains, s, i),
            Condition::Text {
                attribute,
                op,
                value,
            } => attribute.holds(*op, value, i),
            Condition::MacPrefix(p) => i
                .macs
                .iter()
                .chain(i.nics.iter().map(|n| &n.mac))
                .any(|m| m.starts_with(p)),
            Condition::IpSubnet { network, prefix } => i.ip.is_some_and(|ip| {
                let mask = if *prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from((*prefix).min(32)))
                };
                u32::from(ip.address) & mask == u32::from(*network) & mask
            }),
            Condition::Arch(a) => i.arch == Some(*a),
            Condition::BootArch(b) => i
                .arch
                .map(BootArch::from_code)
                .is_some_and(|a| a == *b || (*b == BootArch::Http && a.is_http())),
            Condition::Pci { vendor, device } => i
                .pci
                .iter()
                .chain(i.nics.iter().map(|n| &n.pci))
                .any(|p: &PciId| p.vendor == *vendor && device.is_none_or(|d| p.device == d)),
            Condition::BaseImage(want) => want.as_deref() == f.base_image,
        }
    }
}
