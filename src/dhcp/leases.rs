//! The lease table (full mode): who holds which address until when.
//!
//! Two indexes, by client and by address: O(1) hash maps with feature
//! `std` (SipHash with a random key, so clients cannot choose colliding
//! keys), O(log n) `BTreeMap`s with `alloc` alone, and fixed-capacity
//! `heapless` index maps of [`NO_ALLOC_CAPACITY`] entries without an
//! allocator. The table never holds more entries than the pools have
//! addresses, so its size is bounded by the configuration.
//!
//! With an allocator the table also keeps, for each pool range registered
//! with [`LeaseTable::track_range`], a bitmap of the addresses that have an
//! entry, so that [`PoolCursor::find`] reaches the next never-used address
//! by skipping 64 held addresses a step (O(1) amortised) instead of looking
//! each one up. Expired leases are not swept by a timer: the allocator
//! reuses them when the range has no unused address left, and a returning
//! client finds its old address again while nobody else took it (RFC 2131
//! §4.3.1 "the client's previous address").

use core::net::Ipv4Addr;

use crate::Instant;

/// Capacity of each index without an allocator.
pub const NO_ALLOC_CAPACITY: usize = 64;
/// Longest client key (option 61 value, or htype + chaddr).
pub const KEY_LEN: usize = 32;

/// How a client is identified (RFC 2131 §4.2, RFC 4361 §6.1): its client
/// identifier (option 61) if it sent one, else its hardware type and
/// address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientKey {
    len: u8,
    bytes: [u8; KEY_LEN],
}

// Only the key's bytes (the rest is always zero), so hashing costs what the
// key is long; equal keys have equal bytes, as `Eq` needs.
impl core::hash::Hash for ClientKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
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

#[cfg(feature = "std")]
type Map<K, V> = std::collections::HashMap<K, V>;
#[cfg(all(feature = "alloc", not(feature = "std")))]
type Map<K, V> = alloc::collections::BTreeMap<K, V>;
#[cfg(not(feature = "alloc"))]
type Map<K, V> = heapless::index_map::FnvIndexMap<K, V, NO_ALLOC_CAPACITY>;

#[cfg(feature = "std")]
fn rm<K: core::hash::Hash + Eq, V>(m: &mut Map<K, V>, k: &K) -> Option<V> {
    m.remove(k)
}
#[cfg(all(feature = "alloc", not(feature = "std")))]
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

/// Largest range [`LeaseTable::track_range`] keeps a bitmap for (a /8:
/// 2 MiB of bits).
pub const MAX_TRACKED_RANGE: u32 = 1 << 24;

/// Which addresses of one range have a table entry (bit set).
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
struct Occupancy {
    start: u32,
    end: u32,
    words: alloc::vec::Vec<u64>,
}

#[cfg(feature = "alloc")]
impl Occupancy {
    fn new(start: u32, end: u32) -> Self {
        let n = (end - start) as usize / 64 + 1;
        Occupancy {
            start,
            end,
            words: alloc::vec![0; n],
        }
    }

    fn set(&mut self, a: u32, on: bool) {
        if a < self.start || a > self.end {
            return;
        }
        let i = (a - self.start) as usize;
        if let Some(w) = self.words.get_mut(i / 64) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// The first address in `from..=to` (inside the range) without an
    /// entry.
    fn next_clear(&self, from: u32, to: u32) -> Option<u32> {
        if from > to {
            return None;
        }
        let (mut i, last) = ((from - self.start) as usize, (to - self.start) as usize);
        while i <= last {
            let w = *self.words.get(i / 64)?;
            // Bits at and above i % 64 that are clear.
            let free = !w & (u64::MAX << (i % 64));
            if free != 0 {
                let at = (i / 64) * 64 + free.trailing_zeros() as usize;
                return if at <= last {
                    Some(self.start + at as u32)
                } else {
                    None
                };
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }
}

/// Leases indexed by client and by address.
#[derive(Debug, Default)]
pub struct LeaseTable {
    by_addr: Map<u32, Lease>,
    by_client: Map<ClientKey, u32>,
    #[cfg(feature = "alloc")]
    ranges: alloc::vec::Vec<Occupancy>,
}

impl LeaseTable {
    /// An empty table.
    pub fn new() -> Self {
        LeaseTable::default()
    }

    /// Keep a bitmap of used addresses in `start..=end` (a pool's range),
    /// for [`PoolCursor::find`]. Without an allocator, and for ranges over
    /// [`MAX_TRACKED_RANGE`] addresses, this does nothing (the cursor then
    /// looks addresses up one by one).
    pub fn track_range(&mut self, start: Ipv4Addr, end: Ipv4Addr) {
        #[cfg(feature = "alloc")]
        {
            let (s, e) = (u32::from(start), u32::from(end));
            if e < s || e - s >= MAX_TRACKED_RANGE || self.range(start, end).is_some() {
                return;
            }
            let mut o = Occupancy::new(s, e);
            for &a in self.by_addr.keys() {
                o.set(a, true);
            }
            self.ranges.push(o);
        }
        #[cfg(not(feature = "alloc"))]
        let _ = (start, end);
    }

    #[cfg(feature = "alloc")]
    fn range(&self, start: Ipv4Addr, end: Ipv4Addr) -> Option<&Occupancy> {
        let (s, e) = (u32::from(start), u32::from(end));
        self.ranges.iter().find(|r| r.start == s && r.end == e)
    }

    fn mark(&mut self, a: u32, on: bool) {
        #[cfg(feature = "alloc")]
        for r in &mut self.ranges {
            r.set(a, on);
        }
        #[cfg(not(feature = "alloc"))]
        let _ = (a, on);
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
            if old_addr != a && rm(&mut self.by_addr, &old_addr).is_some() {
                self.mark(old_addr, false);
            }
        }
        #[cfg(feature = "alloc")]
        {
            self.by_addr.insert(a, lease);
            self.mark(a, true);
            if lease.state != LeaseState::Probation {
                self.by_client.insert(lease.client, a);
            }
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        {
            if self.by_addr.insert(a, lease).is_err() {
                self.mark(a, false);
                return Err(TableFull);
            }
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
        self.mark(a, false);
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
    /// which `excluded` says yes. Round robin from where the last search
    /// stopped: first an address that has no entry at all (by the range's
    /// bitmap, when [`LeaseTable::track_range`] registered it), then, if
    /// none is left, one whose entry has expired or is the client's own (at
    /// most one pass over the range).
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
        if self.next < s || self.next > e {
            self.next = s;
        }
        #[cfg(feature = "alloc")]
        if let Some(r) = table.range(start, end) {
            let from = self.next;
            // [from, e], then [s, from - 1].
            let halves = [(from, e), (s, from.saturating_sub(1))];
            for (lo, hi) in halves {
                if lo > hi || hi < s {
                    continue;
                }
                let mut at = lo;
                while let Some(a) = r.next_clear(at, hi) {
                    if !excluded(Ipv4Addr::from(a)) {
                        self.next = if a >= e { s } else { a + 1 };
                        return Some(Ipv4Addr::from(a));
                    }
                    if a >= hi {
                        break;
                    }
                    at = a + 1;
                }
            }
        }
        let size = u64::from(e - s) + 1;
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

    fn bound(a: Ipv4Addr, n: u8, expires: Instant) -> Lease {
        Lease {
            addr: a,
            client: key(n),
            expires,
            state: LeaseState::Bound,
        }
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn bitmap_finds_clear_bits_across_words() {
        let mut o = Occupancy::new(1000, 1000 + 199);
        for a in 1000..1000 + 150 {
            o.set(a, true);
        }
        assert_eq!(o.next_clear(1000, 1199), Some(1150));
        assert_eq!(o.next_clear(1000, 1149), None);
        o.set(1063, false);
        o.set(1064, false);
        assert_eq!(o.next_clear(1000, 1199), Some(1063));
        assert_eq!(o.next_clear(1064, 1199), Some(1064));
        o.set(1064, true);
        assert_eq!(o.next_clear(1064, 1199), Some(1150));
        for a in 1150..1200 {
            o.set(a, true);
        }
        assert_eq!(o.next_clear(1064, 1199), None);
        // Outside the range: ignored.
        o.set(999, true);
        o.set(1200, true);
        assert_eq!(o.next_clear(1000, 1199), Some(1063));
    }

    /// The tracked cursor (bitmap) and the plain cursor agree on what is
    /// free, over a random sequence of grants, releases and expiries.
    #[test]
    fn tracked_and_untracked_cursors_give_free_addresses() {
        // 298 addresses (.7 excluded), or 59 without alloc, where the table
        // holds NO_ALLOC_CAPACITY entries; `min_live`: all but 8 of them.
        #[cfg(feature = "alloc")]
        let (e, min_live) = (Ipv4Addr::new(10, 0, 1, 44), 290);
        #[cfg(not(feature = "alloc"))]
        let (e, min_live) = (Ipv4Addr::new(10, 0, 0, 60), 51);
        let s = Ipv4Addr::new(10, 0, 0, 1);
        let mut tracked = LeaseTable::new();
        tracked.track_range(s, e);
        let mut plain = LeaseTable::new();
        let (mut ct, mut cp) = (PoolCursor::default(), PoolCursor::default());
        let mut rng: u32 = 12345;
        let mut next = || {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
            rng >> 8
        };
        let excluded = |a: Ipv4Addr| a.octets()[3] == 7;
        let mut now = Instant::from_secs(1000);
        for step in 0..5000u32 {
            let n = (next() % 250) as u8;
            now += Duration::from_millis(u64::from(next() % 50));
            match next() % 4 {
                0 | 1 => {
                    for (t, c) in [(&mut tracked, &mut ct), (&mut plain, &mut cp)] {
                        if let Some(a) = c.find(t, s, e, &key(n), now, excluded) {
                            assert!(!excluded(a), "step {step}");
                            assert!(t.is_free_for(a, &key(n), now), "step {step}: {a}");
                            t.put(bound(a, n, now + Duration::from_secs(2))).unwrap();
                        } else {
                            // Nothing free: every address is held and live.
                            let live = t.iter().filter(|l| l.expires > now).count();
                            assert!(live >= min_live, "step {step}: {live} live");
                        }
                    }
                }
                2 => {
                    for t in [&mut tracked, &mut plain] {
                        if let Some(a) = t.by_client(&key(n)).map(|l| l.addr) {
                            t.remove(a);
                        }
                    }
                }
                _ => {}
            }
            // The bitmap says exactly which addresses have an entry.
            #[cfg(feature = "alloc")]
            if let Some(r) = tracked.range(s, e) {
                for a in u32::from(s)..=u32::from(e) {
                    let clear = r.next_clear(a, a) == Some(a);
                    let held = tracked.by_addr(Ipv4Addr::from(a)).is_some();
                    assert_eq!(clear, !held, "step {step}: {}", Ipv4Addr::from(a));
                }
            }
        }
    }

    #[test]
    fn unused_addresses_go_before_expired_ones() {
        let mut t = LeaseTable::new();
        let (s, e) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 4));
        t.track_range(s, e);
        let now = Instant::from_secs(100);
        // .1 expired, .2 live.
        t.put(bound(s, 1, Instant::from_secs(50))).unwrap();
        t.put(bound(
            Ipv4Addr::new(10, 0, 0, 2),
            2,
            Instant::from_secs(500),
        ))
        .unwrap();
        let mut c = PoolCursor::default();
        let got = c.find(&t, s, e, &key(9), now, |_| false);
        if cfg!(feature = "alloc") {
            assert_eq!(got, Some(Ipv4Addr::new(10, 0, 0, 3)));
        } else {
            assert_eq!(got, Some(s));
        }
        t.put(bound(
            Ipv4Addr::new(10, 0, 0, 3),
            3,
            Instant::from_secs(500),
        ))
        .unwrap();
        t.put(bound(e, 4, Instant::from_secs(500))).unwrap();
        // No unused address left: the expired one.
        assert_eq!(c.find(&t, s, e, &key(9), now, |_| false), Some(s));
        t.remove(Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(
            c.find(&t, s, e, &key(9), now, |_| false),
            Some(Ipv4Addr::new(10, 0, 0, 3))
        );
    }
}
