//! The drivers' one clock: the [`Instant`] every engine is fed.
//!
//! Monotonic (it counts with `std::time::Instant`, so a wall-clock step —
//! NTP, an administrator's `date` — never moves engine time), and its epoch
//! is the Unix epoch as the wall clock read it when the process first asked
//! for the time. So an engine time is also a Unix time in microseconds,
//! exact at start and off by no more than the wall-clock steps since: what
//! lets the DHCP lease log store lease expiry as wall-clock time
//! ([`to_unix_micros`], [`from_unix_micros`]) and a restarted server read
//! the leases a previous process granted.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Instant;

/// (monotonic start, Unix time at start in µs).
fn anchor() -> &'static (std::time::Instant, u64) {
    static ANCHOR: OnceLock<(std::time::Instant, u64)> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (
            std::time::Instant::now(),
            u64::try_from(wall.as_micros()).unwrap_or(u64::MAX),
        )
    })
}

/// Now, on the drivers' monotonic clock.
pub fn now() -> Instant {
    let (start, wall) = anchor();
    let elapsed = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    Instant::from_micros(wall.saturating_add(elapsed))
}

/// An engine time as µs since the Unix epoch (for what is stored on disk).
/// The clock's epoch is the Unix epoch as seen at start, so this is the
/// identity; stored values go through it so that the edge is one place.
pub fn to_unix_micros(t: Instant) -> u64 {
    t.as_micros()
}

/// A stored Unix time (µs) as an engine time; see [`to_unix_micros`].
pub fn from_unix_micros(micros: u64) -> Instant {
    Instant::from_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_near_the_wall_clock() {
        let a = now();
        let b = now();
        assert!(b >= a);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        // Within a minute of the wall clock (no step in a unit test).
        assert!(wall.abs_diff(b.as_micros()) < 60_000_000);
        let t = Instant::from_secs(1_700_000_000);
        assert_eq!(from_unix_micros(to_unix_micros(t)), t);
    }
}
