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
    /// Number of codes in the set.
    #[inline]
    fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
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
    /// The current area, cut once from `packet` (options field: from the
    /// header to the end of the datagram; `file`; `sname`).
    area: &'a [u8],
    /// Position of the next option header inside `area`.
    pos: usize,
    /// Which area `area` is (0 options, 1 `file`, 2 `sname`).
    area_index: u8,
    overload: u8,
    /// Codes that occur more than once (long options); computed only when
    /// the scan found a repeat, else empty.
    dup: CodeSet,
    /// Whether some code occurs more than once (never, in real client
    /// messages: the walk then does no per-option look-up).
    any_dup: bool,
    /// Long-option codes already yielded.
    done: CodeSet,
    truncated: bool,
}

/// What one pass over a message's option areas finds: the overload in
/// force, whether some code occurs more than once, and whether an option
/// ran past its area. [`DhcpPacket::new_checked`](super::DhcpPacket::new_checked)
/// computes it once; every later option walk reuses it. Three bytes: the
/// view that carries it is moved by value, and the set of repeated codes
/// (32 bytes) is rebuilt only for the rare message with long options.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Scan {
    pub(crate) overload: u8,
    pub(crate) any_dup: bool,
    pub(crate) truncated: bool,
}

impl Scan {
    /// Scans the options of a whole DHCP message (`packet` starts with the
    /// BOOTP header): option 52 (see the module docs) and repeated codes.
    pub(crate) fn of(packet: &[u8]) -> Scan {
        let mut seen = CodeSet::default();
        // The options field: one tight pass (the common case has nothing
        // else to scan); option 52 is read after it (`overload_of`).
        let opts = packet.get(OPTIONS..).unwrap_or(&[]);
        let (mut count, mut truncated) = note_codes(opts, &mut seen);
        // Option 52 (rare) is read in a second, cold pass, so the walk
        // above does nothing per option but note its code.
        let overload = if seen.contains(OPTION_OVERLOAD) {
            overload_of(opts)
        } else {
            0
        };
        // `file`, then `sname`, when option 52 says they carry options.
        for area in 1..=2u8 {
            if let Some((pos, end)) = area_bounds(area, overload, packet.len()) {
                let bytes = packet.get(pos..end).unwrap_or(&[]);
                let (n, t) = note_codes(bytes, &mut seen);
                count += n;
                truncated |= t;
            }
        }
        Scan {
            overload,
            // More options than distinct codes: some code repeats.
            any_dup: count != seen.len(),
            truncated,
        }
    }
}

/// Walks one option area: pad skipped, end option stops; calls `f` with
/// each option's code. Returns how many options it found and whether an
/// option ran past the area. Inlined into each caller, so the hot scan
/// pays nothing for the closure.
#[inline(always)]
fn walk_codes(area: &[u8], mut f: impl FnMut(u8)) -> (u32, bool) {
    let mut pos = 0;
    let mut count = 0;
    while let Some(&code) = area.get(pos) {
        if code == 0 {
            pos += 1;
            continue;
        }
        if code == 255 {
            break;
        }
        let Some(&len) = area.get(pos + 1) else {
            return (count, true);
        };
        let next = pos + 2 + len as usize;
        if next > area.len() {
            return (count, true);
        }
        f(code);
        count += 1;
        pos = next;
    }
    (count, false)
}

/// [`walk_codes`] noting each code in `seen` (the scan's hot loop).
#[inline]
fn note_codes(area: &[u8], seen: &mut CodeSet) -> (u32, bool) {
    walk_codes(area, |code| {
        seen.0[(code >> 6) as usize] |= 1 << (code & 63)
    })
}

/// The codes that occur more than once in the areas in force (the cold
/// path of a message with RFC 3396 long options).
#[cold]
#[inline(never)]
fn repeated_codes(packet: &[u8], overload: u8) -> CodeSet {
    let mut seen = CodeSet::default();
    let mut dup = CodeSet::default();
    for area in 0..=2u8 {
        if let Some((pos, end)) = area_bounds(area, overload, packet.len()) {
            let bytes = packet.get(pos..end).unwrap_or(&[]);
            walk_codes(bytes, |code| seen.insert_noting_repeat(code, &mut dup));
        }
    }
    dup
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
        RawOptions {
            packet,
            area: packet.get(OPTIONS..).unwrap_or(&[]),
            pos: 0,
            area_index: 0,
            overload: scan.overload,
            dup: if scan.any_dup {
                repeated_codes(packet, scan.overload)
            } else {
                CodeSet::default()
            },
            any_dup: scan.any_dup,
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
        self.any_dup
    }
}

impl<'a> Iterator for RawOptions<'a> {
    type Item = RawOption<'a>;

    #[inline]
    fn next(&mut self) -> Option<RawOption<'a>> {
        loop {
            // One pass over the current area slice: pad skipped, the end
            // option or a truncated option ends the area.
            let area = self.area;
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
    /// A repeated code at `at` (inside the current area): the joined
    /// option the first time, `None` for its later fragments (kept out of
    /// the hot loop).
    #[cold]
    #[inline(never)]
    fn joined(&mut self, code: u8, at: usize) -> Option<RawOption<'a>> {
        let base =
            area_bounds(self.area_index, self.overload, self.packet.len()).map_or(0, |b| b.0);
        self.done.insert(code).then(|| RawOption {
            code,
            data: OptionData::split(self.packet, self.overload, code, self.area_index, base + at),
        })
    }

    /// Moves to the next area that carries options; `false` at the end.
    #[cold]
    #[inline(never)]
    fn next_area(&mut self) -> bool {
        loop {
            self.area_index = self.area_index.saturating_add(1);
            if self.area_index > 2 {
                self.area = &[];
                self.pos = 0;
                return false;
            }
            if let Some((s, e)) = area_bounds(self.area_index, self.overload, self.packet.len()) {
                self.area = self.packet.get(s..e).unwrap_or(&[]);
                self.pos = 0;
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
