//! A bounded cache of the static-static DH (`ss` of
//! docs/transaction-protocol.md §3.3) per bound workstation key: `DH(S,
//! s_pub)` is the same for every handshake of a key, so the server computes
//! it once. Only keys bound to an object are cached (a stranger cannot
//! churn it); the cache holds nothing an attacker could use that the
//! server's own static key does not already give.

#[cfg(feature = "alloc")]
const CAPACITY: usize = 4096;
#[cfg(not(feature = "alloc"))]
const CAPACITY: usize = 16;

/// `client static public key → DH(S, s_pub)`, at most `CAPACITY` entries;
/// when full it starts again empty.
#[derive(Default)]
pub(crate) struct DhCache {
    #[cfg(feature = "alloc")]
    map: alloc::collections::BTreeMap<[u8; 32], [u8; 32]>,
    #[cfg(not(feature = "alloc"))]
    map: heapless::Vec<([u8; 32], [u8; 32]), CAPACITY>,
}

impl DhCache {
    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<[u8; 32]> {
        #[cfg(feature = "alloc")]
        return self.map.get(key).copied();
        #[cfg(not(feature = "alloc"))]
        return self.map.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    }

    pub(crate) fn insert(&mut self, key: [u8; 32], ss: [u8; 32]) {
        if self.map.len() >= CAPACITY {
            self.map.clear();
        }
        #[cfg(feature = "alloc")]
        self.map.insert(key, ss);
        #[cfg(not(feature = "alloc"))]
        let _ = self.map.push((key, ss));
    }
}
