//! The menu choice reaching the server and the image-safe change coming
//! back (docs/transaction-protocol.md §4.5): the `TaskQuery` payload
//! (TLV 1 `MenuChoice`) and the `TaskReply` TLV 5 `ImageSafeUpdate`.
//!
//! A menu-chosen maintenance boot must learn which kernel to load, and a
//! "disable the imaging partition" choice is a change of the image-safe
//! data the client writes: both are answers to a `TaskQuery` that says
//! what was chosen.

use super::tlv::{Reader, TlvIter, Writer};
use super::{EmitError, ParseError, Payload};
use core::net::Ipv4Addr;
use heapless::Vec;

/// `TaskQuery` (§4.5): empty, or the menu entry the user chose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// TLV 1 `MenuChoice`: the kind of the chosen entry
    /// ([`MenuEntry`](super::messages::MenuEntry) constants); `None` when
    /// no menu was shown.
    pub choice: Option<u8>,
}

impl TaskQuery {
    /// Parse a `TaskQuery` payload (an empty one is no choice).
    pub fn parse(payload: &[u8]) -> Result<Self, ParseError> {
        let mut q = TaskQuery::default();
        for tlv in TlvIter::new(payload) {
            let tlv = tlv?;
            if tlv.kind == 1 {
                let [kind] = tlv
                    .value
                    .try_into()
                    .map_err(|_| ParseError::BadField { field: 1 })?;
                if q.choice.replace(kind).is_some() {
                    return Err(ParseError::Duplicate { field: 1 });
                }
            }
        }
        Ok(q)
    }
}

impl Payload for TaskQuery {
    fn buffer_len(&self) -> usize {
        self.choice.map_or(0, |_| 4)
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        match self.choice {
            Some(k) => Writer::new(out).tlv(1, &[k]),
            None => Ok(()),
        }
    }
}

/// IP settings the server assigned from its pool for the image-safe data
/// (§4.5 TLV 5, §10.2 fields 5–9: static).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignedIp {
    /// Address.
    pub address: Ipv4Addr,
    /// Netmask.
    pub netmask: Ipv4Addr,
    /// Default gateway.
    pub gateway: Ipv4Addr,
    /// DNS servers (≤ 4).
    pub dns: Vec<Ipv4Addr, 4>,
}

/// `TaskReply` TLV 5 `ImageSafeUpdate` (§4.5): what the client writes into
/// its image-safe data (§10) before it goes on: pending flags to set and to
/// clear, and optionally static IP settings.
///
/// Value: set u32 ‖ clear u32 [‖ address (4) ‖ netmask (4) ‖ gateway (4)
/// ‖ DNS servers (4 each, 0–4)]: 8, 20, 24, 28, 32 or 36 bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSafeUpdate {
    /// Pending-flag bits to set (`PendingFlags` constants).
    pub set: u32,
    /// Pending-flag bits to clear (applied after `set`).
    pub clear: u32,
    /// Static IP settings to write (net mode becomes static).
    pub ip: Option<AssignedIp>,
}

impl ImageSafeUpdate {
    /// The TLV type in `TaskReply`.
    pub const TLV: u8 = 5;

    /// Parse the value of TLV 5.
    pub fn parse(v: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(v, Self::TLV);
        let set = r.u32()?;
        let clear = r.u32()?;
        let rest = r.rest();
        let ip = if rest.is_empty() {
            None
        } else {
            if rest.len() < 12 || rest.len() % 4 != 0 || rest.len() > 28 {
                return Err(ParseError::BadField { field: Self::TLV });
            }
            let mut r = Reader::new(rest, Self::TLV);
            let address = r.ipv4()?;
            let netmask = r.ipv4()?;
            let gateway = r.ipv4()?;
            let mut dns = Vec::new();
            for d in r.rest().chunks_exact(4) {
                let d: [u8; 4] = d
                    .try_into()
                    .map_err(|_| ParseError::BadField { field: Self::TLV })?;
                dns.push(Ipv4Addr::from(d))
                    .map_err(|_| ParseError::TooMany { field: Self::TLV })?;
            }
            Some(AssignedIp {
                address,
                netmask,
                gateway,
                dns,
            })
        };
        Ok(ImageSafeUpdate { set, clear, ip })
    }

    /// Length of the TLV value.
    pub fn value_len(&self) -> usize {
        8 + self.ip.as_ref().map_or(0, |ip| 12 + 4 * ip.dns.len())
    }

    /// Write TLV 5 (header and value).
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.tlv_header(Self::TLV, self.value_len())?;
        w.u32(self.set)?;
        w.u32(self.clear)?;
        if let Some(ip) = &self.ip {
            w.put(&ip.address.octets())?;
            w.put(&ip.netmask.octets())?;
            w.put(&ip.gateway.octets())?;
            for d in &ip.dns {
                w.put(&d.octets())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::transaction::messages::{MenuEntry, TaskReply};

    /// §4.5 TLV 1: a choice round-trips; an empty payload is no choice.
    #[test]
    fn task_query_choice_round_trip() {
        for choice in [
            None,
            Some(MenuEntry::MAINTENANCE),
            Some(MenuEntry::REGISTER),
            Some(200),
        ] {
            let q = TaskQuery { choice };
            let mut buf = [0u8; 8];
            let n = q.buffer_len();
            q.emit(&mut buf[..n]).unwrap();
            assert_eq!(TaskQuery::parse(&buf[..n]).unwrap(), q);
        }
        assert_eq!(
            TaskQuery::parse(&[1, 0, 1, 2, 1, 0, 1, 3]),
            Err(ParseError::Duplicate { field: 1 })
        );
        assert!(TaskQuery::parse(&[1, 0, 2, 2, 2]).is_err());
        // Unknown TLVs are skipped (§2.3).
        assert_eq!(
            TaskQuery::parse(&[9, 0, 1, 7]).unwrap(),
            TaskQuery::default()
        );
    }

    /// §4.5 TLV 5: flags alone and flags with IP settings round-trip in a
    /// `TaskReply`; a value of a length outside the list is refused.
    #[test]
    fn image_safe_update_round_trip() {
        let updates = [
            ImageSafeUpdate {
                set: 8,
                clear: 0,
                ip: None,
            },
            ImageSafeUpdate {
                set: 0,
                clear: 8,
                ip: Some(AssignedIp {
                    address: Ipv4Addr::new(10, 0, 0, 50),
                    netmask: Ipv4Addr::new(255, 255, 255, 0),
                    gateway: Ipv4Addr::new(10, 0, 0, 1),
                    dns: Vec::from_slice(&[Ipv4Addr::new(10, 0, 0, 2)]).unwrap(),
                }),
            },
        ];
        for u in updates {
            let t = TaskReply {
                image_safe: Some(u.clone()),
                ..TaskReply::default()
            };
            let mut buf = [0u8; 64];
            let n = t.buffer_len();
            t.emit(&mut buf[..n]).unwrap();
            assert_eq!(TaskReply::parse(&buf[..n]).unwrap().image_safe, Some(u));
        }
        for len in [0usize, 4, 12, 16, 21, 40] {
            let v = [0u8; 40];
            assert!(ImageSafeUpdate::parse(&v[..len]).is_err(), "{len}");
        }
    }
}
