//! One log line per accepted `WorkstationInfo` (docs/transaction-protocol.md
//! §4.3): what the workstation says it is — its MACs, UUID, architecture,
//! CPU, RAM, disks and SMBIOS facts (TLVs 20–27) — so that an administrator
//! can read what the rules ("Rule attributes") see and write them.
//!
//! The strings come from the workstation: they are written quoted and
//! escaped (`{:?}`), so a string cannot forge another log line.

use crate::wire::pxe::MachineId;
use crate::wire::transaction::messages::WorkstationInfo;
use crate::wire::transaction::smbios::chassis_type_name;
use crate::workstation::WorkstationId;
use core::fmt;

/// The facts of a `WorkstationInfo` as `key=value` pairs, only those it
/// carries.
pub struct Facts<'a>(pub &'a WorkstationInfo<'a>);

impl fmt::Display for Facts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.0;
        f.write_str("macs=")?;
        for (n, m) in i.macs.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", WorkstationId::Mac(*m))?;
        }
        if let Some(u) = i.uuid {
            write!(f, " uuid={}", MachineId::new(u).wire_order())?;
        }
        if let Some(a) = i.arch {
            write!(f, " arch={a}")?;
        }
        if let Some(c) = i.cpu_model {
            write!(f, " cpu_model={c:?}")?;
        }
        if let Some(c) = i.cpu_count {
            write!(f, " cpu_count={c}")?;
        }
        if let Some(r) = i.ram_mb {
            write!(f, " ram_mb={r}")?;
        }
        if !i.disks_mb.is_empty() {
            write!(f, " disk_mb={:?}", i.disks_mb.as_slice())?;
        }
        if let Some(ip) = i.ip {
            write!(f, " ip_address={}", ip.address)?;
        }
        let sm = &i.smbios;
        for (name, v) in [
            ("system_manufacturer", sm.manufacturer),
            ("product_name", sm.product),
            ("system_version", sm.version),
            ("serial_number", sm.serial),
            ("bios_vendor", sm.bios_vendor),
            ("bios_version", sm.bios_version),
            ("asset_tag", sm.asset_tag),
        ] {
            if let Some(v) = v {
                write!(f, " {name}={v:?}")?;
            }
        }
        if let Some(t) = sm.chassis_type {
            match chassis_type_name(t) {
                Some(n) => write!(f, " chassis_type={n:?}({})", t & 0x7f)?,
                None => write!(f, " chassis_type={}", t & 0x7f)?,
            }
        }
        Ok(())
    }
}

/// Log the facts of the `WorkstationInfo` accepted for `workstation` (at
/// info; `None` when the session is gone before the line is written).
pub(crate) fn log(workstation: &WorkstationId, info: Option<&WorkstationInfo<'_>>) {
    match info {
        Some(i) => tracing::info!(%workstation, facts = %Facts(i), "workstation info"),
        None => tracing::info!(%workstation, "workstation info"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::transaction::messages::Smbios;
    use std::string::ToString;

    /// §4.3: every fact sent is in the line, names as in "Rule
    /// attributes"; strings are quoted and escaped (a newline in a
    /// manufacturer does not start a line).
    #[test]
    fn line_has_every_fact_and_escapes_strings() {
        let mut i = WorkstationInfo::default();
        i.macs.push([0x52, 0x54, 0, 0x12, 0x34, 0x56]).unwrap();
        i.macs.push([0, 0xc0, 0x4f, 0xdc, 0x2a, 0xb5]).unwrap();
        i.uuid = Some([0x11; 16]);
        i.cpu_model = Some("Intel(R) Core(TM) i7-8700");
        i.ram_mb = Some(16384);
        i.smbios = Smbios {
            manufacturer: Some("Dell Inc.\nINFO forged"),
            product: Some("OptiPlex 7090"),
            bios_version: Some("1.17.0"),
            chassis_type: Some(3),
            ..Smbios::default()
        };
        let line = Facts(&i).to_string();
        assert!(!line.contains('\n'), "{line}");
        for part in [
            "macs=52:54:00:12:34:56,00:c0:4f:dc:2a:b5",
            "uuid=11111111-1111-1111-1111-111111111111",
            "cpu_model=\"Intel(R) Core(TM) i7-8700\"",
            "ram_mb=16384",
            "system_manufacturer=\"Dell Inc.\\nINFO forged\"",
            "product_name=\"OptiPlex 7090\"",
            "bios_version=\"1.17.0\"",
            "chassis_type=\"Desktop\"(3)",
        ] {
            assert!(line.contains(part), "{part} not in {line}");
        }
        assert!(!line.contains("serial_number"), "{line}");
    }
}
