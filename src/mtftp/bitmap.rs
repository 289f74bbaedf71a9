//! Which blocks an MTFTP client holds: one bit per block number 1–65,535,
//! 8 KiB inline (no allocation), so a client keeps what it heard in any
//! order (PXE 2.1 MTFTP: late joiners keep the blocks they hear).

/// A set of block numbers.
#[derive(Clone)]
pub(crate) struct Bitmap {
    words: [u64; 1024],
    count: u32,
}

impl Bitmap {
    pub(crate) const fn new() -> Self {
        Bitmap {
            words: [0; 1024],
            count: 0,
        }
    }

    pub(crate) fn contains(&self, block: u16) -> bool {
        self.words[usize::from(block >> 6)] & (1 << (block & 63)) != 0
    }

    /// Adds `block`; false if it was there.
    pub(crate) fn insert(&mut self, block: u16) -> bool {
        let w = &mut self.words[usize::from(block >> 6)];
        let bit = 1u64 << (block & 63);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.count += 1;
        true
    }

    /// How many blocks are held.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// True if some block above `block` is held.
    pub(crate) fn any_above(&self, block: u16) -> bool {
        let first = usize::from(block >> 6);
        let shift = (block & 63) + 1;
        let above = if shift == 64 {
            0
        } else {
            self.words[first] >> shift
        };
        above != 0 || self.words[first + 1..].iter().any(|&w| w != 0)
    }
}

impl core::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bitmap")
            .field("count", &self.count)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_count_and_above() {
        let mut b = Bitmap::new();
        assert!(!b.any_above(0));
        assert!(b.insert(65535));
        assert!(!b.insert(65535));
        assert!(b.contains(65535) && !b.contains(1));
        assert!(b.any_above(65534) && !b.any_above(65535));
        assert!(b.insert(63) && b.insert(64));
        assert!(b.any_above(63) && b.any_above(62));
        assert_eq!(b.count(), 3);
    }
}
