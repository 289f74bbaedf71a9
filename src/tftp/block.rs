//! Block numbers: the engines count blocks with a 64-bit absolute index
//! (block 1 is the first DATA) and map it to the 16-bit wire number, which
//! wraps past 65535 (RFC 1350 leaves this open; RFC 7440 §4 notes it).

/// What follows block 65535 on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rollover {
    /// 65535 → 0 → 1 … (what most clients, including iPXE and tftp-hpa,
    /// expect).
    #[default]
    ToZero,
    /// 65535 → 1 → 2 … (some old clients).
    ToOne,
}

impl Rollover {
    /// The wire number of absolute block `abs` (0 is the OACK's ACK).
    pub fn wire(self, abs: u64) -> u16 {
        match self {
            Rollover::ToZero => abs as u16,
            Rollover::ToOne if abs == 0 => 0,
            Rollover::ToOne => (((abs - 1) % 65535) + 1) as u16,
        }
    }

    /// The smallest absolute block `>= lo` whose wire number is `n`, or
    /// `None` if no block at or after `lo` can carry `n`.
    pub fn abs_at_or_after(self, lo: u64, n: u16) -> Option<u64> {
        match self {
            Rollover::ToZero => {
                let off = n.wrapping_sub(lo as u16);
                lo.checked_add(u64::from(off))
            }
            Rollover::ToOne => {
                if n == 0 {
                    return (lo == 0).then_some(0);
                }
                if lo == 0 {
                    return Some(u64::from(n));
                }
                let cur = i64::from(self.wire(lo));
                let off = (i64::from(n) - cur).rem_euclid(65535) as u64;
                lo.checked_add(off)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_both_ways() {
        let z = Rollover::ToZero;
        assert_eq!(z.wire(65535), 65535);
        assert_eq!(z.wire(65536), 0);
        assert_eq!(z.wire(65537), 1);
        assert_eq!(z.abs_at_or_after(65530, 2), Some(65538));
        assert_eq!(z.abs_at_or_after(65536, 0), Some(65536));
        let o = Rollover::ToOne;
        assert_eq!(o.wire(65535), 65535);
        assert_eq!(o.wire(65536), 1);
        assert_eq!(o.abs_at_or_after(65535, 65535), Some(65535));
        assert_eq!(o.abs_at_or_after(65535, 1), Some(65536));
        assert_eq!(o.abs_at_or_after(0, 0), Some(0));
        assert_eq!(o.abs_at_or_after(1, 0), None);
        for lo in [0u64, 1, 5, 65534, 65535, 65536, 200_000] {
            for r in [z, o] {
                for off in [0u64, 1, 7, 1000] {
                    let abs = lo + off;
                    if r == o && abs == 0 {
                        continue;
                    }
                    assert_eq!(r.abs_at_or_after(lo, r.wire(abs)), Some(abs));
                }
            }
        }
    }
}
