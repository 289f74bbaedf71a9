//! A workstation's identity: the hardware addresses and the machine UUID
//! it presents in `WorkstationInfo` (docs/transaction-protocol.md §3.4:
//! version 2 checks them against the object the session's key is bound to).
//!
//! Shared by the transaction engines (which key belongs to whom) and the
//! policy layer (which workstation object applies), below both, so neither
//! depends on the other for it.

use core::fmt;

#[cfg(feature = "alloc")]
use crate::wire::transaction::messages::WorkstationInfo;
#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// How a workstation object is identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkstationId {
    /// By a MAC address.
    Mac([u8; 6]),
    /// By the machine UUID.
    Uuid([u8; 16]),
}

impl fmt::Display for WorkstationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkstationId::Mac(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            WorkstationId::Uuid(u) => {
                for (i, b) in u.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(feature = "alloc")]
/// The identities a workstation presents: its MACs and its UUID.
pub fn identities(info: &WorkstationInfo<'_>) -> Vec<WorkstationId> {
    info.macs
        .iter()
        .map(|m| WorkstationId::Mac(*m))
        .chain(info.uuid.map(WorkstationId::Uuid))
        .collect()
}
