//! The lease table (full mode): who holds which address until when.
//!
//! Two indexes, by client and by address, each O(log n) (`BTreeMap` with
//! feature `alloc`) or O(1) (a fixed-capacity `heapless` index map of
//! [`NO_ALLOC_CAPACITY`] entries without it). The table never holds more
//! entries than the pools have addresses, so its size is bounded by the
//! configuration. Expired leases are not swept by a timer: the allocator
//! reuses them when it meets them, and a returning client finds its old
//! address again while nobody else took it (RFC 2131 §4.3.1 "the client's
//! previous address").

use core::net::Ipv4Addr;

use crate::Instant;

/// Capacity of each index without an allocator.
pub const NO_ALLOC_CAPACITY: usize = 64;
/// Longest client key (option 61 value, or htype + chaddr).
pub const KEY_LEN: usize = 32;

/// How a client is identified (RFC 2131 §4.2, RFC 4361 §6.1): its client
/// identifier (option 61) if it sent one, else its hardware type and
/// address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientKey {
    len: u8,
    bytes: [u8; KEY_LEN],
}

impl core::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl ClientKey {
    /// The key of a client: `0x00`-tagged `htype ‖ chaddr`, or
    /// `0x01`-tagged client identifier. Identifiers longer than
    /// [`KEY_LEN`]` - 1` bytes fall back to the hardware address.
    pub fn new(client_id: Option<&[u8]>, htype: u8, chaddr: &[u8]) -> Self {
        let mut k = ClientKey {
            len: 0,
            bytes: [0; KEY_LEN],
        };
        match client_id {
            Some(id) if !id.is_empty() && id.len() < KEY_LEN => {
                k.bytes[0] = 1;
                k.bytes[1..=id.len()].copy_from_slice(id);
                k.len = id.len() as u8 + 1;
            }
            _ => {
                let hw = &chaddr[..chaddr.len().min(KEY_LEN - 2)];
                k.bytes[0] = 0;
                k.bytes[1] = htype;
                k.bytes[2..2 + hw.len()].copy_from_slice(hw);
                k.len = hw.len() as u8 + 2;
            }
        }
        k
    }

    /// Rebuild a key from [`ClientKey::as_bytes`] (lease files).
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < 2 || b.len() > KEY_LEN || b[0] > 1 {
            return None;
        }
        let mut k = ClientKey {
            len: b.len() as u8,
            bytes: [0; KEY_LEN],
        };
        k.bytes[..b.len()].copy_from_slice(b);
        Some(k)
    }

    /// The tagged key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// What a table entry means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Offered, held until `expires` for the client's REQUEST.
    Offered,
    /// Granted by an ACK.
    Bound,
    /// Declined by a client (address in use on the wire); out of use until
    /// `expires`.
    Probation,
}

/// One address binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub addr: Ipv4Addr,
    /// The holder.
    pub client: ClientKey,
    /// When it ends.
    pub expires: Instant,
    /// What it is.
    pub state: LeaseState,
}

#[cfg(feature = "alloc")]
type Map<K, V> = alloc::collections::BTreeMap<K, V>;
#[cfg(not(feature = "alloc"))]
type Map<K, V> = heapless::index_map::FnvIndexMap<K, V, NO_ALLOC_CAPACITY>;

#[cfg(feature = "alloc")]
fn rm<K: Ord, V>(m: &mut Map<K, V>, k: &K) -> Option<V> {
    m.remove(k)
}
#[cfg(not(feature = "alloc"))]
fn rm<K: core::hash::Hash + Eq, V>(m: &mut Map<K, V>, k: &K) -> Option<V> {
    m.swap_remove(k)
}

/// The table is full (only without an allocator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// Leases indexed by client and by address.
#[derive(Debug, Default)]
pub struct LeaseTable {
    by_addr: Map<u32, Lease>,
    by_client: Map<ClientKey, u32>,
}

impl LeaseTable {
    /// An empty table.
    pub fn new() -> Self {
        LeaseTable::default()
    }

    /// Number of entries (any state, expired included).
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// The entry for `addr`.
    pub fn by_addr(&self, addr: Ipv4Addr) -> Option<&Lease> {
        self.by_addr.get(&u32::from(addr))
    }

    /// The entry held by `client`.
    pub fn by_client(&self, client: &ClientKey) -> Option<&Lease> {
        let a = self.by_client.get(client)?;
        self.by_addr.get(a)
    }

    /// Insert or replace the binding for `lease.addr` and `lease.client`,
    /// dropping whatever either held before.
    pub fn put(&mut self, lease: Lease) -> Result<(), TableFull> {
        let a = u32::from(lease.addr);
        if let Some(old) = rm(&mut self.by_addr, &a) {
            if self.by_client.get(&old.client) == Some(&a) {
                rm(&mut self.by_client, &old.client);
            }
        }
        if let Some(old_addr) = rm(&mut self.by_client, &lease.client) {
            rm(&mut self.by_addr, &old_addr);
        }
        #[cfg(feature = "alloc")]
        {
            self.by_addr.insert(a, lease);
            if lease.state != LeaseState::Probation {
                self.by_client.insert(lease.client, a);
            }
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        {
            self.by_addr.insert(a, lease).map_err(|_| TableFull)?;
            if lease.state != LeaseState::Probation
                && self.by_client.insert(lease.client, a).is_err()
            {
                rm(&mut self.by_addr, &a);
                return Err(TableFull);
            }
            Ok(())
        }
    }

    /// Remove the entry for `addr`.
    pub fn remove(&mut self, addr: Ipv4Addr) -> Option<Lease> {
        let a = u32::from(addr);
        let old = rm(&mut self.by_addr, &a)?;
        if self.by_client.get(&old.client) == Some(&a) {
            rm(&mut self.by_client, &old.client);
        }
        Some(old)
    }

    /// Whether `addr` can be given to `client` at `now`: nobody holds it,
    /// the client itself holds it, or the holder's entry has expired.
    pub fn is_free_for(&self, addr: Ipv4Addr, client: &ClientKey, now: Instant) -> bool {
        match self.by_addr(addr) {
            None => true,
            Some(l) if l.state == LeaseState::Probation => l.expires <= now,
            Some(l) => &l.client == client || l.expires <= now,
        }
    }

    /// Iterate over all entries (lease file compaction, tests).
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_addr.values()
    }
}

/// A round-robin cursor over one pool's range, so consecutive clients get
/// consecutive addresses and a search starts where the last one stopped
/// (O(1) amortised while the pool has room).
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolCursor {
    next: u32,
}

impl PoolCursor {
    /// Find a free address in `start..=end` for `client`, skipping any for
    /// which `excluded` says yes; at most one pass over the range.
    pub fn find(
        &mut self,
        table: &LeaseTable,
        start: Ipv4Addr,
        end: Ipv4Addr,
        client: &ClientKey,
        now: Instant,
        mut excluded: impl FnMut(Ipv4Addr) -> bool,
    ) -> Option<Ipv4Addr> {
        let (s, e) = (u32::from(start), u32::from(end));
        if e < s {
            return None;
        }
        let size = u64::from(e - s) + 1;
        if self.next < s || self.next > e {
            self.next = s;
        }
        for _ in 0..size {
            let a = Ipv4Addr::from(self.next);
            self.next = if self.next >= e { s } else { self.next + 1 };
            if !excluded(a) && table.is_free_for(a, client, now) {
                return Some(a);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn key(n: u8) -> ClientKey {
        ClientKey::new(None, 1, &[0x52, 0x54, 0, 0, 0, n])
    }

    #[test]
    fn client_id_and_hardware_keys_differ() {
        let hw = ClientKey::new(None, 1, &[1, 2, 3, 4, 5, 6]);
        let id = ClientKey::new(Some(&[1, 1, 2, 3, 4, 5, 6]), 1, &[1, 2, 3, 4, 5, 6]);
        assert_ne!(hw, id);
        assert_eq!(ClientKey::from_bytes(id.as_bytes()), Some(id));
        assert_eq!(ClientKey::from_bytes(&[7, 1]), None);
    }

    #[test]
    fn rebinding_moves_both_indexes() {
        let mut t = LeaseTable::new();
        let a1 = Ipv4Addr::new(10, 0, 0, 10);
        let a2 = Ipv4Addr::new(10, 0, 0, 11);
        let l = Lease {
            addr: a1,
            client: key(1),
            expires: Instant::from_secs(10),
            state: LeaseState::Bound,
        };
        t.put(l).unwrap();
        t.put(Lease { addr: a2, ..l }).unwrap();
        assert_eq!(t.len(), 1);
        assert!(t.by_addr(a1).is_none());
        assert_eq!(t.by_client(&key(1)).map(|l| l.addr), Some(a2));
        assert!(t.remove(a2).is_some());
        assert!(t.by_client(&key(1)).is_none());
    }

    #[test]
    fn cursor_skips_held_and_reuses_expired() {
        let mut t = LeaseTable::new();
        let now = Instant::from_secs(100);
        let (s, e) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3));
        let mut c = PoolCursor::default();
        for n in 1..=3 {
            let a = c.find(&t, s, e, &key(n), now, |_| false).unwrap();
            t.put(Lease {
                addr: a,
                client: key(n),
                expires: now + Duration::from_secs(n.into()),
                state: LeaseState::Bound,
            })
            .unwrap();
        }
        assert_eq!(c.find(&t, s, e, &key(9), now, |_| false), None);
        // Client 1's lease ends at 101 s.
        let later = now + Duration::from_secs(1);
        assert_eq!(
            c.find(&t, s, e, &key(9), later, |_| false),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
    }
}
