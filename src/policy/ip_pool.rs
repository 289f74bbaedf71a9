//! The server policy's IP pool (ZENworks' Imaging Server policy "IP
//! configuration", notes §1.3): when a workstation's image-safe data has
//! no IP settings, the server assigns a free address of the pool, keeps
//! the assignment (stable for that workstation, persisted by the
//! [`Registry`](super::Registry)) and sends it in the `TaskReply`'s
//! `ImageSafeUpdate` (docs/transaction-protocol.md §4.5 TLV 5) for the
//! client to write.

use super::model::WorkstationId;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// A pool of static addresses with their settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPool {
    /// First address of the range.
    pub first: Ipv4Addr,
    /// Last address of the range (inclusive, ≥ `first`).
    pub last: Ipv4Addr,
    /// Netmask.
    pub netmask: Ipv4Addr,
    /// Default gateway.
    pub gateway: Ipv4Addr,
    /// DNS servers (≤ 4).
    pub dns: Vec<Ipv4Addr>,
}

impl IpPool {
    /// Is `a` in the range?
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(a))
    }
}

/// Addresses given out, per workstation object (the "IP assignment log").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpAssignments {
    by_object: BTreeMap<WorkstationId, Ipv4Addr>,
}

impl IpAssignments {
    /// From the assignments kept (duplicate objects or addresses: the
    /// first wins).
    pub fn from_list(list: &[(WorkstationId, Ipv4Addr)]) -> Self {
        let mut a = IpAssignments::default();
        for (w, ip) in list {
            if !a.by_object.contains_key(w) && !a.by_object.values().any(|x| x == ip) {
                a.by_object.insert(*w, *ip);
            }
        }
        a
    }

    /// The address of `who`, if one was given.
    pub fn get(&self, who: &WorkstationId) -> Option<Ipv4Addr> {
        self.by_object.get(who).copied()
    }

    /// Every assignment.
    pub fn iter(&self) -> impl Iterator<Item = (&WorkstationId, &Ipv4Addr)> {
        self.by_object.iter()
    }

    /// The address `who` has in `pool` (its earlier one, if still in the
    /// range), else the lowest free address of the range (not yet
    /// recorded: see [`IpAssignments::record`]); `None` when the pool is
    /// used up. Never an address outside the range.
    pub fn choose(&self, pool: &IpPool, who: &WorkstationId) -> Option<(Ipv4Addr, bool)> {
        if let Some(a) = self.get(who).filter(|a| pool.contains(*a)) {
            return Some((a, false));
        }
        let (lo, hi) = (u32::from(pool.first), u32::from(pool.last));
        if lo > hi {
            return None;
        }
        let used: Vec<u32> = self.by_object.values().map(|a| u32::from(*a)).collect();
        // Bounded by the number of assignments: at most used.len() + 1 probes.
        let mut candidate = lo;
        let mut sorted = used;
        sorted.sort_unstable();
        for u in sorted {
            if u < candidate {
                continue;
            }
            if u == candidate {
                candidate = candidate.checked_add(1)?;
            } else {
                break;
            }
        }
        (candidate <= hi).then(|| (Ipv4Addr::from(candidate), true))
    }

    /// Record `who` → `a`.
    pub fn record(&mut self, who: WorkstationId, a: Ipv4Addr) {
        self.by_object.insert(who, a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct, stable, never outside the range; a full pool gives none.
    #[test]
    fn pool_assigns_distinct_stable_addresses_in_range() {
        let pool = IpPool {
            first: Ipv4Addr::new(10, 0, 0, 10),
            last: Ipv4Addr::new(10, 0, 0, 12),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            dns: Vec::new(),
        };
        let mut a =
            IpAssignments::from_list(&[(WorkstationId::Mac([9; 6]), Ipv4Addr::new(10, 0, 0, 11))]);
        let mut got = Vec::new();
        for n in 0..4u8 {
            let w = WorkstationId::Mac([n; 6]);
            match a.choose(&pool, &w) {
                Some((ip, new)) => {
                    assert!(new && pool.contains(ip));
                    a.record(w, ip);
                    got.push(ip);
                }
                None => got.push(Ipv4Addr::UNSPECIFIED),
            }
        }
        assert_eq!(
            got,
            [
                Ipv4Addr::new(10, 0, 0, 10),
                Ipv4Addr::new(10, 0, 0, 12),
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED
            ]
        );
        assert_eq!(
            a.choose(&pool, &WorkstationId::Mac([0; 6])),
            Some((Ipv4Addr::new(10, 0, 0, 10), false))
        );
    }
}
