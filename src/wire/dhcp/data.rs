//! Option payloads that may be split across several places of a datagram.
//!
//! RFC 3396 §7: when the same option code appears more than once, the
//! payloads are concatenated, in the order options field → `file` → `sname`
//! (the latter two only when option 52 says they carry options). Instead of
//! copying the pieces into a heap buffer, [`OptionData`] is a *sequence of
//! borrowed fragments*: one slice in the common case, or a lazily walked list
//! of the option's fragments inside the packet. It knows its total length,
//! copies itself into a caller buffer, and hands out a contiguous slice
//! without copying whenever it is one fragment.

use core::fmt;

use super::EmitError;
use super::layout::{RawStep, area_bounds, raw_step};

/// The payload of one (possibly long, RFC 3396) option: a sequence of
/// borrowed fragments, never an allocation.
///
/// Equality compares the bytes, not where they live: a payload parsed from
/// three fragments equals the same bytes given as one slice.
#[derive(Clone, Copy)]
pub struct OptionData<'a> {
    /// One fragment: the payload itself. Split: the whole packet.
    bytes: &'a [u8],
    /// All zero for one fragment; else where in `bytes` the split payload
    /// lies.
    split: SplitAt,
}

/// Where a split payload lies: every occurrence of `code` in the packet,
/// from the first one at (`area`, `pos`) on, concatenated; then bytes
/// `skip..skip + len` of that.
///
/// Four `u32` words, all zero for a one-fragment payload: an
/// [`OptionData`] is moved by value on every option of a walk, and
/// word-sized fields copy without the partial-store stalls that packed
/// byte fields (an enum of a slice and a split descriptor) caused there.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct SplitAt {
    pos: u32,
    skip: u32,
    len: u32,
    /// `code | overload << 8 | area << 16`; 0 for one fragment (a split
    /// payload's code is never 0).
    meta: u32,
}

impl SplitAt {
    #[inline]
    fn code(&self) -> u8 {
        self.meta as u8
    }
    #[inline]
    fn overload(&self) -> u8 {
        (self.meta >> 8) as u8
    }
    #[inline]
    fn area(&self) -> u8 {
        (self.meta >> 16) as u8
    }
}

/// An offset inside a datagram as `u32` (datagrams are far shorter; a
/// larger value saturates, which reads as "past the end").
#[inline]
fn offset(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl<'a> OptionData<'a> {
    /// A payload made of one slice.
    pub const fn new(bytes: &'a [u8]) -> Self {
        OptionData {
            bytes,
            split: SplitAt {
                pos: 0,
                skip: 0,
                len: 0,
                meta: 0,
            },
        }
    }

    /// Whether the payload is split (several fragments in a packet).
    #[inline]
    fn is_split(&self) -> bool {
        self.split.meta != 0
    }

    /// The concatenation of every `code` option in `packet` from the raw
    /// option header at `pos` of area `area` on.
    pub(crate) fn split(packet: &'a [u8], overload: u8, code: u8, area: u8, pos: usize) -> Self {
        if code == 0 {
            // Never asked for (pad is not an option); an empty payload.
            return OptionData::new(&[]);
        }
        let mut d = OptionData {
            bytes: packet,
            split: SplitAt {
                pos: offset(pos),
                skip: 0,
                len: u32::MAX,
                meta: u32::from(code) | u32::from(overload & 3) << 8 | u32::from(area.min(2)) << 16,
            },
        };
        let total: usize = d.fragments().map(<[u8]>::len).sum();
        d.split.len = offset(total);
        d
    }

    /// Total number of payload bytes.
    #[inline]
    pub fn len(&self) -> usize {
        if self.is_split() {
            self.split.len as usize
        } else {
            self.bytes.len()
        }
    }

    /// Whether the payload is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as one slice, if it is stored in one piece (always the
    /// case for options of at most 255 bytes sent once).
    #[inline]
    pub fn as_slice(&self) -> Option<&'a [u8]> {
        if !self.is_split() {
            return Some(self.bytes);
        }
        let mut it = self.fragments();
        let first = it.next().unwrap_or(&[]);
        match it.next() {
            None => Some(first),
            Some(_) => None,
        }
    }

    /// The payload if it is stored as one slice (no fragment walk).
    #[inline]
    pub(crate) fn single(&self) -> Option<&'a [u8]> {
        (!self.is_split()).then_some(self.bytes)
    }

    /// The borrowed fragments, in RFC 3396 order (empty fragments skipped).
    #[inline]
    pub fn fragments(&self) -> Fragments<'a> {
        if !self.is_split() {
            return Fragments {
                state: FragState::Slice(Some(self.bytes)),
            };
        }
        let (packet, at) = (self.bytes, self.split);
        Fragments {
            state: FragState::Split {
                packet,
                overload: at.overload(),
                code: at.code(),
                area: at.area(),
                pos: at.pos as usize,
                end: area_bounds(at.area(), at.overload(), packet.len()).map_or(0, |b| b.1),
                skip: at.skip as usize,
                left: at.len as usize,
            },
        }
    }

    /// The payload bytes one by one.
    #[inline]
    pub fn bytes(&self) -> impl Iterator<Item = u8> + 'a {
        if self.is_split() {
            Bytes {
                current: [].iter(),
                rest: self.fragments(),
            }
        } else {
            Bytes {
                current: self.bytes.iter(),
                rest: Fragments {
                    state: FragState::Slice(None),
                },
            }
        }
    }

    /// Copies the payload to the front of `out` and returns its length, or
    /// fails (leaving `out` untouched) if `out` is shorter than [`len`](Self::len).
    pub fn copy_to(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        let needed = self.len();
        if out.len() < needed {
            return Err(EmitError::BufferTooSmall { needed });
        }
        let mut at = 0;
        for f in self.fragments() {
            out[at..at + f.len()].copy_from_slice(f);
            at += f.len();
        }
        Ok(at)
    }

    /// The payload as one slice: borrowed from the packet when it is one
    /// fragment, otherwise copied into `scratch` (a bounded stack buffer of
    /// the caller). Fails only if it is fragmented and `scratch` is too short.
    pub fn contiguous<'b>(&self, scratch: &'b mut [u8]) -> Result<&'b [u8], EmitError>
    where
        'a: 'b,
    {
        if let Some(s) = self.as_slice() {
            return Ok(s);
        }
        let n = self.copy_to(scratch)?;
        Ok(&scratch[..n])
    }

    /// Bytes `start..end` of the payload, or `None` if out of range.
    #[inline]
    pub fn slice(&self, start: usize, end: usize) -> Option<Self> {
        if start > end || end > self.len() {
            return None;
        }
        if !self.is_split() {
            return Some(OptionData::new(&self.bytes[start..end]));
        }
        let mut split = self.split;
        split.skip = split.skip.saturating_add(offset(start));
        split.len = offset(end - start);
        Some(OptionData {
            bytes: self.bytes,
            split,
        })
    }

    /// The payload from `start` on (empty if `start` is past the end).
    #[inline]
    pub fn tail(&self, start: usize) -> Self {
        let len = self.len();
        self.slice(start.min(len), len)
            .unwrap_or(OptionData::new(&[]))
    }

    /// The byte at `index`.
    #[inline]
    pub fn get(&self, index: usize) -> Option<u8> {
        if self.is_split() {
            self.bytes().nth(index)
        } else {
            self.bytes.get(index).copied()
        }
    }

    /// `N` bytes from `offset`, or `None` if the payload is too short.
    #[inline]
    pub fn array<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        if self.is_split() {
            let part = self.slice(offset, offset.checked_add(N)?)?;
            part.copy_to(&mut out).ok()?;
        } else {
            out.copy_from_slice(self.bytes.get(offset..offset.checked_add(N)?)?);
        }
        Some(out)
    }

    /// Whether the payload equals `bytes`.
    #[inline]
    pub fn eq_bytes(&self, bytes: &[u8]) -> bool {
        if self.is_split() {
            self.len() == bytes.len() && self.bytes().eq(bytes.iter().copied())
        } else {
            self.bytes == bytes
        }
    }

    /// The payload as UTF-8 text, if it is one fragment and valid UTF-8.
    /// Trailing NUL bytes (some servers terminate strings) are not included.
    #[inline]
    pub fn as_str(&self) -> Option<&'a str> {
        let s = self.as_slice()?;
        let end = s.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        core::str::from_utf8(&s[..end]).ok()
    }
}

impl<'a> From<&'a [u8]> for OptionData<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        OptionData::new(bytes)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for OptionData<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        OptionData::new(bytes)
    }
}

impl<'a> From<&'a str> for OptionData<'a> {
    fn from(s: &'a str) -> Self {
        OptionData::new(s.as_bytes())
    }
}

impl PartialEq for OptionData<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self.as_slice(), other.as_slice()) {
            (Some(a), Some(b)) => a == b,
            _ => self.len() == other.len() && self.bytes().eq(other.bytes()),
        }
    }
}

impl Eq for OptionData<'_> {}

impl PartialEq<[u8]> for OptionData<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        self.eq_bytes(other)
    }
}

impl PartialEq<&[u8]> for OptionData<'_> {
    fn eq(&self, other: &&[u8]) -> bool {
        self.eq_bytes(other)
    }
}

/// Text when the payload is printable ASCII (`OptionData("PXEClient")`),
/// hex otherwise (`OptionData(01525400e2e001)`).
impl fmt::Debug for OptionData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = !self.is_empty() && self.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
        f.write_str("OptionData(")?;
        if text {
            f.write_str("\"")?;
            for b in self.bytes() {
                match b {
                    b'"' | b'\\' => write!(f, "\\{}", char::from(b))?,
                    _ => write!(f, "{}", char::from(b))?,
                }
            }
            f.write_str("\"")?;
        } else {
            for b in self.bytes() {
                write!(f, "{b:02x}")?;
            }
        }
        f.write_str(")")
    }
}

/// The bytes of the fragments, one by one (a plain slice walk while in a
/// fragment).
struct Bytes<'a> {
    current: core::slice::Iter<'a, u8>,
    rest: Fragments<'a>,
}

impl Iterator for Bytes<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        loop {
            if let Some(&b) = self.current.next() {
                return Some(b);
            }
            self.current = self.rest.next()?.iter();
        }
    }

    #[inline]
    fn fold<B, F: FnMut(B, u8) -> B>(self, init: B, mut f: F) -> B {
        let mut acc = self.current.copied().fold(init, &mut f);
        for frag in self.rest {
            acc = frag.iter().copied().fold(acc, &mut f);
        }
        acc
    }
}

/// Iterator over the borrowed fragments of an [`OptionData`].
#[derive(Clone)]
pub struct Fragments<'a> {
    state: FragState<'a>,
}

#[derive(Clone)]
enum FragState<'a> {
    Slice(Option<&'a [u8]>),
    Split {
        packet: &'a [u8],
        overload: u8,
        code: u8,
        area: u8,
        pos: usize,
        end: usize,
        skip: usize,
        left: usize,
    },
}

impl<'a> Iterator for Fragments<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        match &mut self.state {
            FragState::Slice(s) => s.take().filter(|s| !s.is_empty()),
            FragState::Split {
                packet,
                overload,
                code,
                area,
                pos,
                end,
                skip,
                left,
            } => loop {
                if *left == 0 {
                    return None;
                }
                match raw_step(packet, *pos, *end) {
                    RawStep::Option {
                        code: c,
                        start,
                        len,
                    } => {
                        *pos = start + len;
                        if c != *code {
                            continue;
                        }
                        let mut frag = &packet[start..start + len];
                        if *skip >= frag.len() {
                            *skip -= frag.len();
                            continue;
                        }
                        frag = &frag[*skip..];
                        *skip = 0;
                        let take = frag.len().min(*left);
                        *left -= take;
                        if take == 0 {
                            continue;
                        }
                        return Some(&frag[..take]);
                    }
                    RawStep::Pad => *pos += 1,
                    RawStep::End | RawStep::Truncated => {
                        // Next area, if any.
                        let mut next = *area + 1;
                        loop {
                            if next > 2 {
                                *left = 0;
                                return None;
                            }
                            if let Some((s, e)) = area_bounds(next, *overload, packet.len()) {
                                *area = next;
                                *pos = s;
                                *end = e;
                                break;
                            }
                            next += 1;
                        }
                    }
                }
            },
        }
    }
}
