//! The TFTP server's timers: an indexed binary min-heap of transfer
//! deadlines, stored inside the transfer slots themselves (no allocation,
//! no_std), so that the earliest of thousands of deadlines is found in
//! O(1) and a transfer's deadline moves in O(log n).
//!
//! Each slot carries one heap cell (which slot sits at that position of
//! the heap), its own position in the heap and its deadline; the heap has
//! at most as many entries as there are slots.

use crate::Instant;

/// Not in the heap.
pub(crate) const ABSENT: u32 = u32::MAX;

/// What the heap needs from the slots it lives in.
pub(crate) trait Cells {
    /// The slot at heap position `k`.
    fn at(&self, k: u32) -> u32;
    /// Puts `slot` at heap position `k`.
    fn set_at(&mut self, k: u32, slot: u32);
    /// `slot`'s heap position, or [`ABSENT`].
    fn pos(&self, slot: u32) -> u32;
    /// Records `slot`'s heap position.
    fn set_pos(&mut self, slot: u32, k: u32);
    /// `slot`'s deadline.
    fn key(&self, slot: u32) -> Instant;
    /// Sets `slot`'s deadline.
    fn set_key(&mut self, slot: u32, at: Instant);
}

/// The heap's size; its cells live in the slots.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Heap {
    len: u32,
}

impl Heap {
    /// The slot with the earliest deadline, and that deadline.
    pub(crate) fn peek<C: Cells + ?Sized>(&self, cells: &C) -> Option<(Instant, u32)> {
        (self.len > 0).then(|| {
            let s = cells.at(0);
            (cells.key(s), s)
        })
    }

    /// Sets (`Some`) or clears (`None`) `slot`'s deadline.
    pub(crate) fn set<C: Cells + ?Sized>(&mut self, cells: &mut C, slot: u32, at: Option<Instant>) {
        let pos = cells.pos(slot);
        match (at, pos) {
            (None, ABSENT) => {}
            (None, k) => self.remove_at(cells, k),
            (Some(t), ABSENT) => {
                let k = self.len;
                self.len += 1;
                cells.set_key(slot, t);
                cells.set_at(k, slot);
                cells.set_pos(slot, k);
                self.up(cells, k);
            }
            (Some(t), k) => {
                let old = cells.key(slot);
                if old == t {
                    return;
                }
                cells.set_key(slot, t);
                if t < old {
                    self.up(cells, k);
                } else {
                    self.down(cells, k);
                }
            }
        }
    }

    fn remove_at<C: Cells + ?Sized>(&mut self, cells: &mut C, k: u32) {
        let gone = cells.at(k);
        self.len -= 1;
        let last = self.len;
        cells.set_pos(gone, ABSENT);
        if k == last {
            return;
        }
        let moved = cells.at(last);
        cells.set_at(k, moved);
        cells.set_pos(moved, k);
        self.up(cells, k);
        let k = cells.pos(moved);
        self.down(cells, k);
    }

    fn swap<C: Cells + ?Sized>(cells: &mut C, a: u32, b: u32) {
        let (sa, sb) = (cells.at(a), cells.at(b));
        cells.set_at(a, sb);
        cells.set_pos(sb, a);
        cells.set_at(b, sa);
        cells.set_pos(sa, b);
    }

    fn up<C: Cells + ?Sized>(&self, cells: &mut C, mut k: u32) {
        while k > 0 {
            let parent = (k - 1) / 2;
            if cells.key(cells.at(parent)) <= cells.key(cells.at(k)) {
                break;
            }
            Self::swap(cells, parent, k);
            k = parent;
        }
    }

    fn down<C: Cells + ?Sized>(&self, cells: &mut C, mut k: u32) {
        loop {
            let (l, r) = (2 * k + 1, 2 * k + 2);
            let mut least = k;
            if l < self.len && cells.key(cells.at(l)) < cells.key(cells.at(least)) {
                least = l;
            }
            if r < self.len && cells.key(cells.at(r)) < cells.key(cells.at(least)) {
                least = r;
            }
            if least == k {
                break;
            }
            Self::swap(cells, k, least);
            k = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain arrays as cells.
    struct Arrays {
        at: [u32; 64],
        pos: [u32; 64],
        key: [Instant; 64],
    }

    impl Cells for Arrays {
        fn at(&self, k: u32) -> u32 {
            self.at[k as usize]
        }
        fn set_at(&mut self, k: u32, slot: u32) {
            self.at[k as usize] = slot;
        }
        fn pos(&self, slot: u32) -> u32 {
            self.pos[slot as usize]
        }
        fn set_pos(&mut self, slot: u32, k: u32) {
            self.pos[slot as usize] = k;
        }
        fn key(&self, slot: u32) -> Instant {
            self.key[slot as usize]
        }
        fn set_key(&mut self, slot: u32, at: Instant) {
            self.key[slot as usize] = at;
        }
    }

    #[test]
    fn earliest_first_through_inserts_moves_and_removals() {
        let mut c = Arrays {
            at: [0; 64],
            pos: [ABSENT; 64],
            key: [Instant::ZERO; 64],
        };
        let mut h = Heap::default();
        let mut model: [Option<u64>; 64] = [None; 64];
        // A deterministic shuffle of operations, checked against a model.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = (x % 64) as u32;
            let at = if x >> 60 == 0 {
                None
            } else {
                Some((x >> 8) % 1000)
            };
            h.set(&mut c, slot, at.map(Instant::from_micros));
            model[slot as usize] = at;
            let want = model
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (t, i)))
                .min()
                .map(|(t, _)| t);
            assert_eq!(h.peek(&c).map(|(t, _)| t.as_micros()), want);
            if let Some((t, s)) = h.peek(&c) {
                assert_eq!(model[s as usize], Some(t.as_micros()));
            }
        }
    }
}
