//! The option iterator: order kept, unknown options kept, pad/end handled,
//! RFC 3396 long options concatenated, RFC 2132 §9.3 option overload
//! (option 52) followed.
//!
//! # Order and concatenation (RFC 3396 §7)
//! Options are read from the options field, then from `file` (if option 52
//! says so), then from `sname`. Each option code is yielded once, at the
//! place of its *first* occurrence, with the payloads of *all* its
//! occurrences concatenated (an [`OptionData`] of several fragments; nothing
//! is copied). Later occurrences of the same code are not yielded again.
//!
//! # Leniency
//! - Pad bytes (code 0) are skipped anywhere; a missing end option (255) is
//!   accepted: each area ends at its last byte.
//! - An option whose length runs past the end of its area (a truncated
//!   last option) is dropped, and the scan of that area stops there;
//!   [`RawOptions::truncated`] reports it. The rest of the packet is kept.
//! - Bytes after the end option are ignored (they are padding).
//! - Option 52 is read from the options field only (RFC 2131 §4.1); its
//!   value's two low bits select `file` (1) and `sname` (2); other bits are
//!   ignored.
//! - Option 52 is followed only when it is well-formed: its payload (all
//!   its occurrences in the options field joined, RFC 3396 §7) is exactly
//!   one byte (RFC 2132 §9.3: "its length is 1"). Any other length makes it
//!   [`DhcpOption::Malformed`] and `file`/`sname` stay names. The typed
//!   decoder applies the same length test, so parse and emit agree: a
//!   message re-emitted from its typed options (the builder writes them all
//!   into the options field) follows `file`/`sname` exactly when the
//!   original did, and when it does those fields are empty in both.

use super::data::OptionData;
use super::layout::{OPTIONS, area_bounds};
use super::typed::DhcpOption;
use super::typed::code::OPTION_OVERLOAD;

/// A set of option codes (256 bits, no allocation).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct CodeSet([u64; 4]);

impl CodeSet {
    #[inline]
    pub(crate) fn insert(&mut self, code: u8) -> bool {
        let (w, b) = ((code >> 6) as usize, code & 63);
        let had = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        !had
    }
    /// Inserts `code`; if it was already there, inserts it into `repeated`
    /// too (branch-free).
    #[inline]
    fn insert_noting_repeat(&mut self, code: u8, repeated: &mut CodeSet) {
        let (w, bit) = ((code >> 6) as usize, 1u64 << (code & 63));
        repeated.0[w] |= self.0[w] & bit;
        self.0[w] |= bit;
    }
    #[inline]
    pub(crate) fn contains(&self, code: u8) -> bool {
        self.0[(code >> 6) as usize] & (1 << (code & 63)) != 0
    }
    #[inline]
    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

/// One option as found in the packet: its code and its (possibly
/// concatenated) payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawOption<'a> {
    /// The option code (never 0 or 255).
    pub code: u8,
    /// The payload, all fragments concatenated.
    pub data: OptionData<'a>,
}

impl<'a> RawOption<'a> {
    /// The typed option.
    #[inline]
    pub fn decode(&self) -> DhcpOption<'a> {
        DhcpOption::decode(self.code, self.data)
    }
}

/// Iterator over the raw options of a DHCP message (see the module docs
/// for order, concatenation and leniency).
#[derive(Clone)]
pub struct RawOptions<'a> {
    packet: &'a [u8],
    overload: u8,
    area: u8,
    pos: usize,
    end: usize,
    /// Codes that occur more than once (long options).
    dup: CodeSet,
    /// Whether `dup` is not empty (never, in real client messages: the
    /// walk then skips the per-option look-up).
    any_dup: bool,
    /// Long-option codes already yielded.
    done: CodeSet,
    truncated: bool,
}

/// What one pass over a message's option areas finds: the overload in
/// force, the codes that occur more than once, and whether an option ran
/// past its area. [`DhcpPacket::new_checked`](super::DhcpPacket::new_checked)
/// computes it once; every later option walk reuses it.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Scan {
    pub(crate) overload: u8,
    pub(crate) dup: CodeSet,
    pub(crate) truncated: bool,
}

impl Scan {
    /// Scans the options of a whole DHCP message (`packet` starts with the
    /// BOOTP header): option 52 (see the module docs) and repeated codes.
    pub(crate) fn of(packet: &[u8]) -> Scan {
        let mut seen = CodeSet::default();
        let mut dup = CodeSet::default();
        // The options field: one tight pass (the common case has nothing
        // else to scan); option 52 is read after it (`overload_of`).
        let opts = packet.get(OPTIONS..).unwrap_or(&[]);
        let mut truncated = note_codes(opts, 0, &mut seen, &mut dup);
        // Option 52 (rare) is read in a second, cold pass, so the walk
        // above does nothing per option but the code sets.
        let overload = if seen.contains(OPTION_OVERLOAD) {
            overload_of(opts)
        } else {
            0
        };
        // `file`, then `sname`, when option 52 says they carry options.
        for area in 1..=2u8 {
            if let Some((pos, end)) = area_bounds(area, overload, packet.len()) {
                let bytes = packet.get(..end).unwrap_or(&[]);
                truncated |= note_codes(bytes, pos, &mut seen, &mut dup);
            }
        }
        Scan {
            overload,
            dup,
            truncated,
        }
    }
}

/// Walks one option area (`bytes` from `pos` to its end): pad skipped, end
/// option stops; notes each code in `seen`, repeats in `dup`. Returns
/// whether an option ran past the area.
#[inline]
fn note_codes(bytes: &[u8], mut pos: usize, seen: &mut CodeSet, dup: &mut CodeSet) -> bool {
    while let Some(&code) = bytes.get(pos) {
        if code == 0 {
            pos += 1;
            continue;
        }
        if code == 255 {
            break;
        }
        let Some(&len) = bytes.get(pos + 1) else {
            return true;
        };
        let next = pos + 2 + len as usize;
        if next > bytes.len() {
            return true;
        }
        seen.insert_noting_repeat(code, dup);
        pos = next;
    }
    false
}

/// The overload in force from the options field `opts` (option 52 present):
/// its fragments joined (RFC 3396 §7), it counts only if one byte long
/// (RFC 2132 §9.3); its two low bits.
#[cold]
#[inline(never)]
fn overload_of(opts: &[u8]) -> u8 {
    let mut overload_len = 0usize;
    let mut overload_value = 0u8;
    let mut i = 0;
    while let Some(&code) = opts.get(i) {
        if code == 0 {
            i += 1;
            continue;
        }
        if code == 255 {
            break;
        }
        let start = i + 2;
        let Some(data) = opts
            .get(i + 1)
            .and_then(|&len| opts.get(start..start + len as usize))
        else {
            break;
        };
        if code == OPTION_OVERLOAD {
            overload_len += data.len();
            if let [v] = data {
                overload_value = *v;
            }
        }
        i = start + data.len();
    }
    if overload_len == 1 {
        overload_value & 3
    } else {
        0
    }
}

impl<'a> RawOptions<'a> {
    /// Scans the options of a whole DHCP message (`packet` starts with the
    /// BOOTP header). One quick pass finds option 52 and repeated codes;
    /// iteration then yields each option once.
    pub(crate) fn new(packet: &'a [u8]) -> Self {
        Self::with_scan(packet, Scan::of(packet))
    }

    /// Iterates with the result of an earlier [`Scan::of`] of `packet`.
    #[inline]
    pub(crate) fn with_scan(packet: &'a [u8], scan: Scan) -> Self {
        let (pos, end) = area_bounds(0, scan.overload, packet.len()).unwrap_or((0, 0));
        RawOptions {
            packet,
            overload: scan.overload,
            area: 0,
            pos,
            end,
            dup: scan.dup,
            any_dup: !scan.dup.is_empty(),
            done: CodeSet::default(),
            truncated: scan.truncated,
        }
    }

    /// Whether an option ran past the end of its area and was dropped.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The option-overload value in force (0 none, 1 `file`, 2 `sname`,
    /// 3 both).
    pub fn overload(&self) -> u8 {
        self.overload
    }

    /// Whether some option code occurs more than once (an RFC 3396 long
    /// option).
    pub fn has_long_options(&self) -> bool {
        !self.dup.is_empty()
    }
}

impl<'a> Iterator for RawOptions<'a> {
    type Item = RawOption<'a>;

    #[inline]
    fn next(&mut self) -> Option<RawOption<'a>> {
        loop {
            // One pass over the current area, read as a slice: pad skipped,
            // end option or a truncated option ends the area (as
            // `raw_step` does, without its per-step re-checks).
            let area = self.packet.get(..self.end).unwrap_or(&[]);
            while let Some(&code) = area.get(self.pos) {
                if code == 0 {
                    self.pos += 1;
                    continue;
                }
                if code == 255 {
                    break;
                }
                let start = self.pos + 2;
                let Some(data) = area
                    .get(self.pos + 1)
                    .and_then(|&len| area.get(start..start + len as usize))
                else {
                    break;
                };
                let at = self.pos;
                self.pos = start + data.len();
                if !self.any_dup || !self.dup.contains(code) {
                    return Some(RawOption {
                        code,
                        data: OptionData::new(data),
                    });
                }
                if let Some(o) = self.joined(code, at) {
                    return Some(o);
                }
            }
            if !self.next_area() {
                return None;
            }
        }
    }
}

impl<'a> RawOptions<'a> {
    /// A repeated code at `at`: the joined option the first time, `None`
    /// for its later fragments (kept out of the hot loop).
    #[cold]
    #[inline(never)]
    fn joined(&mut self, code: u8, at: usize) -> Option<RawOption<'a>> {
        self.done.insert(code).then(|| RawOption {
            code,
            data: OptionData::split(self.packet, self.overload, code, self.area, at),
        })
    }

    /// Moves to the next area that carries options; `false` at the end.
    #[cold]
    #[inline(never)]
    fn next_area(&mut self) -> bool {
        loop {
            self.area = self.area.saturating_add(1);
            if self.area > 2 {
                self.pos = 0;
                self.end = 0;
                return false;
            }
            if let Some((s, e)) = area_bounds(self.area, self.overload, self.packet.len()) {
                self.pos = s;
                self.end = e;
                return true;
            }
        }
    }
}

/// Iterator over the typed options of a DHCP message: [`RawOptions`] with
/// each option decoded by [`DhcpOption::decode`].
#[derive(Clone)]
pub struct Options<'a> {
    raw: RawOptions<'a>,
}

impl<'a> Options<'a> {
    pub(crate) fn new(raw: RawOptions<'a>) -> Self {
        Options { raw }
    }

    /// Whether an option ran past the end of its area and was dropped.
    pub fn truncated(&self) -> bool {
        self.raw.truncated()
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = DhcpOption<'a>;

    #[inline]
    fn next(&mut self) -> Option<DhcpOption<'a>> {
        self.raw.next().map(|r| r.decode())
    }
}
