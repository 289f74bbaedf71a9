//! Text conditions: string operators on the workstation's text facts
//! (docs/transaction-protocol.md "Rule attributes"; the ZENworks image
//! selection rules compared most attributes as strings with *Equal To*,
//! *Starts With* and *Contains*, notes §1.5).
//!
//! A [`TextAttr`] names a fact of the last `WorkstationInfo` (§4.3) seen
//! as text; a [`TextOp`] compares it with the rule's value, ASCII
//! case-insensitively. A fact the workstation did not send makes the
//! comparison false. Attributes with several values (MAC addresses) hold
//! when any value does; the machine UUID and the chassis type have two
//! spellings each, and either may match.

use crate::wire::image_safe::ImageSafe;
use crate::wire::pxe::MachineId;
use crate::wire::transaction::messages::WorkstationInfo;
use crate::wire::transaction::smbios::chassis_type_name;
use core::fmt::Write;

/// A text fact of the workstation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextAttr {
    /// SMBIOS system manufacturer (§4.3 TLV 20).
    SystemManufacturer,
    /// SMBIOS product name (TLV 21).
    ProductName,
    /// SMBIOS system version (TLV 22).
    SystemVersion,
    /// SMBIOS serial number (TLV 23).
    SerialNumber,
    /// SMBIOS BIOS vendor (TLV 24).
    BiosVendor,
    /// SMBIOS BIOS version (TLV 25).
    BiosVersion,
    /// SMBIOS asset tag (TLV 26).
    AssetTag,
    /// SMBIOS chassis type (TLV 27): its name (`Notebook`) or its number
    /// (`10`).
    ChassisType,
    /// CPU model (TLV 4).
    CpuModel,
    /// Machine UUID (TLV 2) as 32 hex digits, in byte order (as
    /// `[[workstation]] uuid` writes it) or in GUID order (as `dmidecode`
    /// and Linux's `product_uuid` show it). Dashes are ignored.
    Uuid,
    /// Any MAC address (TLVs 1 and 8) as 12 hex digits (ZENworks wrote
    /// `00C04FDC2AB5`). Separators `:` `-` `.` are ignored.
    MacAddress,
    /// The current IPv4 address (TLV 11) in dotted decimal (ZENworks:
    /// "IP address begins with 137.65.95").
    IpAddress,
    /// The workstation name in the image-safe record (TLV 10, §10 field
    /// 3): the computer name the last imaging wrote to the disk. A record
    /// that does not parse (bad CRC, …) has none.
    WorkstationName,
}

impl TextAttr {
    /// Every attribute, in the order of the documentation.
    pub const ALL: [TextAttr; 13] = [
        TextAttr::SystemManufacturer,
        TextAttr::ProductName,
        TextAttr::SystemVersion,
        TextAttr::SerialNumber,
        TextAttr::BiosVendor,
        TextAttr::BiosVersion,
        TextAttr::AssetTag,
        TextAttr::ChassisType,
        TextAttr::CpuModel,
        TextAttr::Uuid,
        TextAttr::MacAddress,
        TextAttr::IpAddress,
        TextAttr::WorkstationName,
    ];

    /// The attribute's name in the policy file (snake_case).
    pub fn name(self) -> &'static str {
        self.names()[0]
    }

    /// The names the policy file accepts, ours first, then the ZENworks
    /// names and other spellings. Compared ASCII case-insensitively, with
    /// space, `-` and `_` alike ([`TextAttr::from_name`]).
    pub fn names(self) -> &'static [&'static str] {
        match self {
            TextAttr::SystemManufacturer => &["system_manufacturer", "manufacturer"],
            TextAttr::ProductName => &["product_name", "model", "product"],
            TextAttr::SystemVersion => &["system_version"],
            TextAttr::SerialNumber => &["serial_number", "serial"],
            TextAttr::BiosVendor => &["bios_vendor"],
            TextAttr::BiosVersion => &["bios_version"],
            TextAttr::AssetTag => &["asset_tag"],
            TextAttr::ChassisType => &["chassis_type", "chassis"],
            TextAttr::CpuModel => &["cpu_model", "processor", "cpu"],
            TextAttr::Uuid => &["uuid", "machine_uuid", "system_uuid"],
            TextAttr::MacAddress => &["mac_address", "mac"],
            TextAttr::IpAddress => &["ip_address", "ip"],
            TextAttr::WorkstationName => &["workstation_name", "computer_name", "hostname"],
        }
    }

    /// The attribute a name means: any of [`TextAttr::names`], ASCII
    /// case-insensitive, with space, `-` and `_` alike ("System
    /// Manufacturer", "system_manufacturer" and "SYSTEM-MANUFACTURER" are
    /// one attribute).
    pub fn from_name(name: &str) -> Option<TextAttr> {
        let name = name.trim();
        TextAttr::ALL
            .into_iter()
            .find(|a| a.names().iter().any(|n| same_name(name, n)))
    }

    /// Does `op value` hold for this attribute of `info`?
    pub fn holds(self, op: TextOp, value: &str, info: &WorkstationInfo<'_>) -> bool {
        let sm = &info.smbios;
        let text = |s: Option<&str>| s.is_some_and(|s| op.holds(s, value));
        match self {
            TextAttr::SystemManufacturer => text(sm.manufacturer),
            TextAttr::ProductName => text(sm.product),
            TextAttr::SystemVersion => text(sm.version),
            TextAttr::SerialNumber => text(sm.serial),
            TextAttr::BiosVendor => text(sm.bios_vendor),
            TextAttr::BiosVersion => text(sm.bios_version),
            TextAttr::AssetTag => text(sm.asset_tag),
            TextAttr::CpuModel => text(info.cpu_model),
            TextAttr::WorkstationName => text(
                info.image_safe
                    .and_then(|b| ImageSafe::parse(b).ok())
                    .and_then(|r| r.workstation_name),
            ),
            TextAttr::ChassisType => sm.chassis_type.is_some_and(|t| {
                let mut n = Buf::<4>::new();
                let _ = write!(n, "{}", t & 0x7f);
                text(chassis_type_name(t)) || op.holds(n.as_str(), value)
            }),
            TextAttr::IpAddress => info.ip.is_some_and(|ip| {
                let mut b = Buf::<16>::new();
                let _ = write!(b, "{}", ip.address);
                op.holds(b.as_str(), value)
            }),
            TextAttr::Uuid => info.uuid.is_some_and(|u| {
                let id = MachineId::new(u);
                [id.wire_order(), id.guid_order()].iter().any(|d| {
                    let mut b = Buf::<40>::new();
                    let _ = write!(b, "{d}");
                    hex_holds(op, b.as_str(), value)
                })
            }),
            TextAttr::MacAddress => info
                .macs
                .iter()
                .chain(info.nics.iter().map(|n| &n.mac))
                .any(|m| {
                    let mut b = Buf::<12>::new();
                    for x in m {
                        let _ = write!(b, "{x:02x}");
                    }
                    hex_holds(op, b.as_str(), value)
                }),
        }
    }
}

/// A string operator; every one compares ASCII case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextOp {
    /// The whole fact equals the value (ZENworks *Equal To*).
    Equals,
    /// The fact starts with the value (*Starts With*).
    StartsWith,
    /// The fact ends with the value.
    EndsWith,
    /// The value occurs in the fact (*Contains*; an empty value always
    /// does).
    Contains,
}

impl TextOp {
    /// Every operator.
    pub const ALL: [TextOp; 4] = [
        TextOp::Equals,
        TextOp::StartsWith,
        TextOp::EndsWith,
        TextOp::Contains,
    ];

    /// The operator's key in the policy file.
    pub fn name(self) -> &'static str {
        match self {
            TextOp::Equals => "equals",
            TextOp::StartsWith => "starts_with",
            TextOp::EndsWith => "ends_with",
            TextOp::Contains => "contains",
        }
    }

    /// `fact <op> value`, ASCII case-insensitive (other characters must
    /// be equal byte for byte).
    pub fn holds(self, fact: &str, value: &str) -> bool {
        let (f, v) = (fact.as_bytes(), value.as_bytes());
        match self {
            TextOp::Equals => f.eq_ignore_ascii_case(v),
            TextOp::StartsWith => f.get(..v.len()).is_some_and(|p| p.eq_ignore_ascii_case(v)),
            TextOp::EndsWith => f
                .len()
                .checked_sub(v.len())
                .is_some_and(|i| f[i..].eq_ignore_ascii_case(v)),
            TextOp::Contains => {
                v.is_empty() || f.windows(v.len()).any(|w| w.eq_ignore_ascii_case(v))
            }
        }
    }
}

/// Names compare ASCII case-insensitively with space, `-` and `_` alike.
fn same_name(a: &str, b: &str) -> bool {
    let norm = |c: u8| match c {
        b' ' | b'-' => b'_',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

/// `op` on hex text (a MAC or a UUID) with the separators `:` `-` `.`
/// left out of both sides. A value longer than any fact cannot match.
fn hex_holds(op: TextOp, fact: &str, value: &str) -> bool {
    let strip = |s: &str, out: &mut Buf<40>| -> bool {
        s.chars()
            .filter(|c| !matches!(c, ':' | '-' | '.'))
            .all(|c| out.write_char(c).is_ok())
    };
    let (mut f, mut v) = (Buf::<40>::new(), Buf::<40>::new());
    strip(fact, &mut f) && strip(value, &mut v) && op.holds(f.as_str(), v.as_str())
}

/// A string of at most `N` bytes on the stack: writes that do not fit
/// fail and leave it unchanged.
struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    fn new() -> Self {
        Buf {
            bytes: [0; N],
            len: 0,
        }
    }
    fn as_str(&self) -> &str {
        // Only whole `str`s are ever written.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let dst = self.bytes.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
