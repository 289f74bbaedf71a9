//! Per-client rate limiting: a fixed table of token buckets.
//!
//! The server keys a bucket on each thing that names the client: its
//! hardware address (`chaddr`, when `hlen` > 0) and its client identifier
//! (option 61, when sent; RFC 4361 / RFC 4390 clients such as InfiniBand
//! send `hlen` = 0 and only that). A message takes a token from each of
//! its buckets, so neither random `chaddr`s under one client identifier
//! (whose lease the log records at every REQUEST) nor random identifiers
//! under one `chaddr` escape the limit, and clients with `hlen` = 0 do not
//! share one bucket.
//!
//! A flood of DISCOVERs from one hardware address drains only that
//! address's bucket, so other clients keep being answered. The table has a
//! fixed number of slots ([`SLOTS`]; bounded memory, O(1) per packet); a
//! slot is chosen by hashing the MAC and remembers whose bucket it holds (a
//! 64-bit hash of the MAC). A client that hashes to a slot held by another
//! MAC takes the slot over, with the tokens in it, when the holder's bucket
//! is at least half full (an ordinary client between exchanges: forgetting
//! it costs nothing), and
//! shares the holder's bucket when it is not (a flooder keeps its slot, and
//! only the clients that share it with it are slowed). So many distinct
//! clients at a high total rate do not limit each other, while a flood from
//! one MAC stays limited.

use crate::Instant;

use super::config::RateLimit;

/// Number of buckets: 8192 with an allocator (on the heap, 256 KiB), 512
/// without.
#[cfg(feature = "alloc")]
pub const SLOTS: usize = 8192;
/// Number of buckets: 8192 with an allocator (on the heap, 256 KiB), 512
/// without.
#[cfg(not(feature = "alloc"))]
pub const SLOTS: usize = 512;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Hash of the MAC this bucket belongs to.
    tag: u64,
    /// Tokens × 1000 (so fractional refills add up).
    milli_tokens: u64,
    last: Instant,
}

#[cfg(feature = "alloc")]
type Slots = alloc::boxed::Box<[Option<Bucket>]>;
#[cfg(not(feature = "alloc"))]
type Slots = [Option<Bucket>; SLOTS];

/// Token buckets keyed by client hardware address.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    slots: Slots,
}

impl RateLimiter {
    /// A limiter with every bucket full.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            #[cfg(feature = "alloc")]
            slots: alloc::vec![None; SLOTS].into_boxed_slice(),
            #[cfg(not(feature = "alloc"))]
            slots: [None; SLOTS],
        }
    }

    /// Take one token for `mac` at `now`; `false` = over the limit, drop.
    pub fn allow(&mut self, now: Instant, mac: &[u8]) -> bool {
        self.allow_key(now, hash(mac))
    }

    /// Take one token for the bucket of `key` (from [`key`]) at `now`;
    /// `false` = over the limit, drop.
    pub fn allow_key(&mut self, now: Instant, key: u64) -> bool {
        if self.limit.per_second == 0 {
            return true;
        }
        let burst = u64::from(self.limit.burst.max(1)) * 1000;
        let per_second = u64::from(self.limit.per_second);
        let tag = key;
        let Some(slot) = self.slots.get_mut(slot_of(tag)) else {
            return true;
        };
        let fresh = Bucket {
            tag,
            milli_tokens: burst,
            last: now,
        };
        let b = slot.get_or_insert(fresh);
        let elapsed_us =
            u64::try_from(now.saturating_duration_since(b.last).as_micros()).unwrap_or(u64::MAX);
        // per_second tokens per 1e6 µs = per_second milli-tokens per 1000 µs.
        let refill = elapsed_us.saturating_mul(per_second) / 1000;
        if refill > 0 {
            b.milli_tokens = b.milli_tokens.saturating_add(refill).min(burst);
            b.last = now;
        }
        if b.tag != tag && b.milli_tokens * 2 >= burst {
            // Take the slot over with the tokens it has (at least half a
            // burst): a fresh bucket would let two keys that share a slot,
            // both the attacker's, refill each other for ever.
            b.tag = tag;
        }
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// What a bucket is keyed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A hardware address (`chaddr[..hlen]`).
    HwAddr,
    /// A client identifier (option 61, whole).
    ClientId,
}

/// The bucket key of `bytes` of this kind (kinds never share a key, so a
/// crafted `chaddr` cannot drain a client identifier's bucket).
pub fn key(kind: KeyKind, bytes: &[u8]) -> u64 {
    let tag = match kind {
        KeyKind::HwAddr => 0,
        KeyKind::ClientId => 1,
    };
    fnv(fnv(OFFSET, &[tag]), bytes)
}

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    // FNV-1a, 64 bit.
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn hash(mac: &[u8]) -> u64 {
    fnv(OFFSET, mac)
}

fn slot_of(tag: u64) -> usize {
    // FNV-1a alone spreads similar keys badly (100,000 MACs that differ in
    // their last 4 bytes fell into 16 of 4096 slots): finish with
    // MurmurHash3's fmix64 so every bit of the key moves the slot.
    let mut h = tag;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn flood_from_one_mac_does_not_starve_another() {
        let mut r = RateLimiter::new(RateLimit {
            per_second: 10,
            burst: 20,
        });
        let t = Instant::from_secs(100);
        let flood = [0x52, 0x54, 0, 0, 0, 1];
        let other = [0x52, 0x54, 0, 0, 0, 2];
        assert_ne!(slot_of(hash(&flood)), slot_of(hash(&other)));
        let allowed = (0..1000).filter(|_| r.allow(t, &flood)).count();
        assert_eq!(allowed, 20);
        assert!(r.allow(t, &other));
        // 100 ms later one token is back.
        let t2 = t + Duration::from_millis(100);
        assert!(r.allow(t2, &flood));
        assert!(!r.allow(t2, &flood));
    }

    /// Two keys of one attacker that share a slot (a crafted `chaddr` and
    /// the client identifier it floods under) share one bucket: taking the
    /// slot over keeps its tokens, so they cannot refill each other.
    #[test]
    fn keys_sharing_a_slot_do_not_refill_each_other() {
        let mut r = RateLimiter::new(RateLimit::default());
        let id = key(KeyKind::ClientId, b"\x01victim");
        let crafted: std::vec::Vec<u64> = (0..2_000_000u32)
            .map(|n| key(KeyKind::HwAddr, &n.to_be_bytes()))
            .filter(|k| slot_of(*k) == slot_of(id))
            .take(100)
            .collect();
        assert_eq!(crafted.len(), 100);
        let t = Instant::from_secs(100);
        let allowed = crafted
            .iter()
            .filter(|&&hw| r.allow_key(t, hw) && r.allow_key(t, id))
            .count();
        assert!(allowed <= 10, "{allowed} got through");
    }

    #[test]
    fn zero_rate_disables() {
        let mut r = RateLimiter::new(RateLimit {
            per_second: 0,
            burst: 0,
        });
        assert!((0..100).all(|_| r.allow(Instant::ZERO, &[1])));
    }

    fn mac(n: u32) -> [u8; 6] {
        let b = n.to_be_bytes();
        [0x00, 0x0c, b[0], b[1], b[2], b[3]]
    }

    #[test]
    fn many_distinct_clients_at_a_high_rate_are_not_limited() {
        // 100,000 clients, one DORA each (2 packets 1 ms apart), 40,000
        // packets a second in total, with the default 10/s, burst 20; the
        // same load per slot (1/16 of it) on the 512 slots without alloc.
        let gap_us = 50 * (8192 / SLOTS as u64);
        let mut r = RateLimiter::new(RateLimit::default());
        let mut refused = 0;
        for n in 0..100_000u32 {
            let t = Instant::from_micros(1_000_000 + u64::from(n) * gap_us);
            for dt in [0, 1000] {
                if !r.allow(t + Duration::from_micros(dt), &mac(n)) {
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, 0);
    }

    #[test]
    fn a_flooder_keeps_its_slot_against_clients_that_share_it() {
        let limit = RateLimit {
            per_second: 10,
            burst: 20,
        };
        let mut r = RateLimiter::new(limit);
        let flood = mac(0);
        let sharing: std::vec::Vec<[u8; 6]> = (1..2_000_000u32)
            .map(mac)
            .filter(|m| slot_of(hash(m)) == slot_of(hash(&flood)))
            .take(50)
            .collect();
        assert_eq!(sharing.len(), 50);
        let t = Instant::from_secs(100);
        let mut flood_allowed = 0;
        for (i, other) in sharing.iter().enumerate() {
            let now = t + Duration::from_micros(i as u64);
            flood_allowed += (0..100).filter(|_| r.allow(now, &flood)).count();
            // The sharing client does not reset the flooder's bucket.
            r.allow(now, other);
        }
        assert!(flood_allowed <= 20, "flood got {flood_allowed} through");
    }
}
