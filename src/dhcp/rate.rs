//! Per-MAC rate limiting: a fixed table of token buckets.
//!
//! A flood of DISCOVERs from one hardware address drains only that
//! address's bucket, so other clients keep being answered. The table has a
//! fixed number of slots (no allocation, bounded memory); a slot is chosen by
//! hashing the MAC, and two MACs that share a slot share a bucket (with
//! [`SLOTS`] slots, a flood from one MAC slows about 1/[`SLOTS`] of the
//! others).

use crate::Instant;

use super::config::RateLimit;

/// Number of buckets.
pub const SLOTS: usize = 512;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens × 1000 (so fractional refills add up).
    milli_tokens: u64,
    last: Instant,
}

/// Token buckets keyed by client hardware address.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    slots: [Option<Bucket>; SLOTS],
}

impl RateLimiter {
    /// A limiter with every bucket full.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            slots: [None; SLOTS],
        }
    }

    /// Take one token for `mac` at `now`; `false` = over the limit, drop.
    pub fn allow(&mut self, now: Instant, mac: &[u8]) -> bool {
        if self.limit.per_second == 0 {
            return true;
        }
        let burst = u64::from(self.limit.burst.max(1)) * 1000;
        let slot = &mut self.slots[slot_of(mac)];
        let b = slot.get_or_insert(Bucket {
            milli_tokens: burst,
            last: now,
        });
        let elapsed_us =
            u64::try_from(now.saturating_duration_since(b.last).as_micros()).unwrap_or(u64::MAX);
        // per_second tokens per 1e6 µs = per_second milli-tokens per 1000 µs.
        let refill = elapsed_us.saturating_mul(u64::from(self.limit.per_second)) / 1000;
        if refill > 0 {
            b.milli_tokens = b.milli_tokens.saturating_add(refill).min(burst);
            b.last = now;
        }
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

fn slot_of(mac: &[u8]) -> usize {
    // FNV-1a, 64 bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in mac {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
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
        assert_ne!(slot_of(&flood), slot_of(&other));
        let allowed = (0..1000).filter(|_| r.allow(t, &flood)).count();
        assert_eq!(allowed, 20);
        assert!(r.allow(t, &other));
        // 100 ms later one token is back.
        let t2 = t + Duration::from_millis(100);
        assert!(r.allow(t2, &flood));
        assert!(!r.allow(t2, &flood));
    }

    #[test]
    fn zero_rate_disables() {
        let mut r = RateLimiter::new(RateLimit {
            per_second: 0,
            burst: 0,
        });
        assert!((0..100).all(|_| r.allow(Instant::ZERO, &[1])));
    }
}
