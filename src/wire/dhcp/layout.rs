//! Field offsets of the BOOTP/DHCP message (RFC 2131 §2, figure 1) and the
//! raw option scanner shared by the view, the iterator and [`OptionData`].
//!
//! [`OptionData`]: super::OptionData

use core::ops::Range;

pub(crate) const OP: usize = 0;
pub(crate) const HTYPE: usize = 1;
pub(crate) const HLEN: usize = 2;
pub(crate) const HOPS: usize = 3;
pub(crate) const XID: Range<usize> = 4..8;
pub(crate) const SECS: Range<usize> = 8..10;
pub(crate) const FLAGS: Range<usize> = 10..12;
pub(crate) const CIADDR: Range<usize> = 12..16;
pub(crate) const YIADDR: Range<usize> = 16..20;
pub(crate) const SIADDR: Range<usize> = 20..24;
pub(crate) const GIADDR: Range<usize> = 24..28;
pub(crate) const CHADDR: Range<usize> = 28..44;
pub(crate) const SNAME: Range<usize> = 44..108;
pub(crate) const FILE: Range<usize> = 108..236;
pub(crate) const COOKIE: Range<usize> = 236..240;
pub(crate) const OPTIONS: usize = 240;

/// The magic cookie 99.130.83.99 (RFC 2131 §3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Option area `area` (0 options field, 1 `file`, 2 `sname`: RFC 3396 order)
/// of a packet of `len` bytes, if it carries options under `overload`.
#[inline]
pub(crate) fn area_bounds(area: u8, overload: u8, len: usize) -> Option<(usize, usize)> {
    match area {
        0 => Some((OPTIONS.min(len), len)),
        1 if overload & 1 != 0 => Some((FILE.start, FILE.end)),
        2 if overload & 2 != 0 => Some((SNAME.start, SNAME.end)),
        _ => None,
    }
}

/// One step of the raw option scanner.
pub(crate) enum RawStep {
    /// A pad byte (code 0).
    Pad,
    /// The end option (code 255), or the end of the area.
    End,
    /// An option whose length runs past the end of its area.
    Truncated,
    /// An option: its code, and where its payload lies.
    Option { code: u8, start: usize, len: usize },
}

/// Reads the option header at `pos` of an area ending at `end`.
#[inline]
pub(crate) fn raw_step(p: &[u8], pos: usize, end: usize) -> RawStep {
    let end = end.min(p.len());
    if pos >= end {
        return RawStep::End;
    }
    match p[pos] {
        0 => RawStep::Pad,
        255 => RawStep::End,
        code => {
            if pos + 1 >= end {
                return RawStep::Truncated;
            }
            let len = p[pos + 1] as usize;
            let start = pos + 2;
            if start + len > end {
                return RawStep::Truncated;
            }
            RawStep::Option { code, start, len }
        }
    }
}
