//! TEMPORARY stand-in (replaced by the sysfs detector): the host's MACs only.
#![allow(dead_code)]
use preboot::wire::transaction::messages::WorkstationInfo;
use std::path::Path;

#[derive(Clone, Debug, Default)]
pub struct Hardware {
    pub macs: Vec<[u8; 6]>,
    pub uuid: Option<[u8; 16]>,
    pub arch: u16,
    pub cpu_model: Option<String>,
    pub cpu_count: Option<u16>,
    pub ram_mb: Option<u32>,
    pub disks_mb: Vec<u32>,
}

pub fn detect(_root: &Path) -> Hardware {
    Hardware::default()
}

impl Hardware {
    pub fn to_info(&self) -> WorkstationInfo<'_> {
        let mut i = WorkstationInfo::default();
        for m in self.macs.iter().take(16) {
            let _ = i.macs.push(*m);
        }
        i.uuid = self.uuid;
        i.arch = Some(self.arch);
        i
    }
}
