//! The SMBIOS facts of `WorkstationInfo` (docs/transaction-protocol.md
//! §4.3, TLVs 20–27; limits in §8): the strings a workstation's firmware
//! reports about the machine (SMBIOS type 0 BIOS, type 1 system, type 3
//! chassis), which imaging rules compare as text ("Rule attributes").
//!
//! Each string is a TLV of its own, UTF-8, at most [`MAX_SMBIOS_STRING`]
//! bytes, single; the chassis type is one byte. Like every TLV of version
//! 2, each is optional: a receiver that does not know them skips them.

use super::tlv::Writer;
use super::{EmitError, ParseError};

/// Longest SMBIOS string in a TLV, in bytes (§8). A client cuts a longer
/// one at a character boundary.
pub const MAX_SMBIOS_STRING: usize = 64;

/// TLV 20: system manufacturer (SMBIOS type 1 *Manufacturer*).
pub const TLV_SYSTEM_MANUFACTURER: u8 = 20;
/// TLV 21: product name (type 1 *Product Name*).
pub const TLV_PRODUCT_NAME: u8 = 21;
/// TLV 22: system version (type 1 *Version*; some vendors put the model
/// name there).
pub const TLV_SYSTEM_VERSION: u8 = 22;
/// TLV 23: serial number (type 1 *Serial Number*).
pub const TLV_SERIAL_NUMBER: u8 = 23;
/// TLV 24: BIOS vendor (type 0 *Vendor*).
pub const TLV_BIOS_VENDOR: u8 = 24;
/// TLV 25: BIOS version (type 0 *BIOS Version*).
pub const TLV_BIOS_VERSION: u8 = 25;
/// TLV 26: asset tag (type 3 *Asset Tag Number*).
pub const TLV_ASSET_TAG: u8 = 26;
/// TLV 27: chassis type, one byte (type 3 *Type* without the lock bit).
pub const TLV_CHASSIS_TYPE: u8 = 27;

/// The SMBIOS facts of a workstation (§4.3 TLVs 20–27); strings borrow
/// from the packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Smbios<'a> {
    /// TLV 20: system manufacturer.
    pub manufacturer: Option<&'a str>,
    /// TLV 21: product name.
    pub product: Option<&'a str>,
    /// TLV 22: system version.
    pub version: Option<&'a str>,
    /// TLV 23: serial number.
    pub serial: Option<&'a str>,
    /// TLV 24: BIOS vendor.
    pub bios_vendor: Option<&'a str>,
    /// TLV 25: BIOS version.
    pub bios_version: Option<&'a str>,
    /// TLV 26: asset tag.
    pub asset_tag: Option<&'a str>,
    /// TLV 27: chassis type (SMBIOS 3.x §7.4.1 values; see
    /// [`chassis_type_name`]).
    pub chassis_type: Option<u8>,
}

impl<'a> Smbios<'a> {
    /// Is `kind` one of the TLV types of this group?
    pub fn owns(kind: u8) -> bool {
        (TLV_SYSTEM_MANUFACTURER..=TLV_CHASSIS_TYPE).contains(&kind)
    }

    /// The string TLVs, in ascending type order, with their values.
    pub fn strings(&self) -> [(u8, Option<&'a str>); 7] {
        [
            (TLV_SYSTEM_MANUFACTURER, self.manufacturer),
            (TLV_PRODUCT_NAME, self.product),
            (TLV_SYSTEM_VERSION, self.version),
            (TLV_SERIAL_NUMBER, self.serial),
            (TLV_BIOS_VENDOR, self.bios_vendor),
            (TLV_BIOS_VERSION, self.bios_version),
            (TLV_ASSET_TAG, self.asset_tag),
        ]
    }

    fn slot(&mut self, kind: u8) -> Option<&mut Option<&'a str>> {
        Some(match kind {
            TLV_SYSTEM_MANUFACTURER => &mut self.manufacturer,
            TLV_PRODUCT_NAME => &mut self.product,
            TLV_SYSTEM_VERSION => &mut self.version,
            TLV_SERIAL_NUMBER => &mut self.serial,
            TLV_BIOS_VENDOR => &mut self.bios_vendor,
            TLV_BIOS_VERSION => &mut self.bios_version,
            TLV_ASSET_TAG => &mut self.asset_tag,
            _ => return None,
        })
    }

    /// Take one TLV of this group (§2.3: a second copy of a single TLV,
    /// a string over [`MAX_SMBIOS_STRING`] bytes or not UTF-8, or a chassis
    /// type that is not one byte is `BadPayload`). Other types are ignored.
    pub fn parse_tlv(&mut self, kind: u8, value: &'a [u8]) -> Result<(), ParseError> {
        if kind == TLV_CHASSIS_TYPE {
            let [t] =
                <[u8; 1]>::try_from(value).map_err(|_| ParseError::BadField { field: kind })?;
            if self.chassis_type.replace(t).is_some() {
                return Err(ParseError::Duplicate { field: kind });
            }
            return Ok(());
        }
        let Some(slot) = self.slot(kind) else {
            return Ok(());
        };
        if value.len() > MAX_SMBIOS_STRING {
            return Err(ParseError::BadString { field: kind });
        }
        let s = core::str::from_utf8(value).map_err(|_| ParseError::BadString { field: kind })?;
        if slot.replace(s).is_some() {
            return Err(ParseError::Duplicate { field: kind });
        }
        Ok(())
    }

    /// Bytes the group takes in a payload.
    pub fn buffer_len(&self) -> usize {
        self.strings()
            .iter()
            .filter_map(|(_, s)| s.map(|s| 3 + s.len()))
            .sum::<usize>()
            + self.chassis_type.map_or(0, |_| 4)
    }

    /// Refuse strings over [`MAX_SMBIOS_STRING`] bytes (before anything
    /// is written).
    pub fn check(&self) -> Result<(), EmitError> {
        for (kind, s) in self.strings() {
            if s.is_some_and(|s| s.len() > MAX_SMBIOS_STRING) {
                return Err(EmitError::FieldTooLong { field: kind });
            }
        }
        Ok(())
    }

    /// Write the group's TLVs in ascending type order.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        for (kind, s) in self.strings() {
            if let Some(s) = s {
                w.tlv(kind, s.as_bytes())?;
            }
        }
        if let Some(t) = self.chassis_type {
            w.tlv(TLV_CHASSIS_TYPE, &[t])?;
        }
        Ok(())
    }
}

/// The name of an SMBIOS chassis type (SMBIOS 3.x §7.4.1, as `dmidecode`
/// prints it), for the values 1–36; `None` for others. Bit 7 (the chassis
/// lock) is ignored, as Linux does for `chassis_type`.
pub fn chassis_type_name(code: u8) -> Option<&'static str> {
    const NAMES: [&str; 36] = [
        "Other",
        "Unknown",
        "Desktop",
        "Low Profile Desktop",
        "Pizza Box",
        "Mini Tower",
        "Tower",
        "Portable",
        "Laptop",
        "Notebook",
        "Hand Held",
        "Docking Station",
        "All In One",
        "Sub Notebook",
        "Space-saving",
        "Lunch Box",
        "Main Server Chassis",
        "Expansion Chassis",
        "Sub Chassis",
        "Bus Expansion Chassis",
        "Peripheral Chassis",
        "RAID Chassis",
        "Rack Mount Chassis",
        "Sealed-case PC",
        "Multi-system",
        "CompactPCI",
        "AdvancedTCA",
        "Blade",
        "Blade Enclosing",
        "Tablet",
        "Convertible",
        "Detachable",
        "IoT Gateway",
        "Embedded PC",
        "Mini PC",
        "Stick PC",
    ];
    let i = usize::from(code & 0x7f).checked_sub(1)?;
    NAMES.get(i).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §7.4.1 names at both ends of the table; 0 and 37 have none; the
    /// lock bit does not change the type.
    #[test]
    fn chassis_names() {
        assert_eq!(chassis_type_name(1), Some("Other"));
        assert_eq!(chassis_type_name(10), Some("Notebook"));
        assert_eq!(chassis_type_name(0x80 | 3), Some("Desktop"));
        assert_eq!(chassis_type_name(36), Some("Stick PC"));
        assert_eq!(chassis_type_name(0), None);
        assert_eq!(chassis_type_name(37), None);
        assert_eq!(chassis_type_name(0xff), None);
    }
}
