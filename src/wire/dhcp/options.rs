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
use super::layout::{RawStep, area_bounds, raw_step};
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
    /// Long-option codes already yielded.
    done: CodeSet,
    truncated: bool,
}

impl<'a> RawOptions<'a> {
    /// Scans the options of a whole DHCP message (`packet` starts with the
    /// BOOTP header). One quick pass finds option 52 and repeated codes;
    /// iteration then yields each option once.
    pub(crate) fn new(packet: &'a [u8]) -> Self {
        let mut seen = CodeSet::default();
        let mut dup = CodeSet::default();
        let mut overload = 0u8;
        // Option 52 in the options field: its joined length and the value
        // of its one-byte fragment (RFC 3396 §7 joins before processing).
        let mut overload_len = 0usize;
        let mut overload_value = 0u8;
        let mut truncated = false;
        let mut area = 0u8;
        while area <= 2 {
            if let Some((mut pos, end)) = area_bounds(area, overload, packet.len()) {
                loop {
                    match raw_step(packet, pos, end) {
                        RawStep::Pad => pos += 1,
                        RawStep::End => break,
                        RawStep::Truncated => {
                            truncated = true;
                            break;
                        }
                        RawStep::Option { code, start, len } => {
                            if !seen.insert(code) {
                                dup.insert(code);
                            }
                            if code == OPTION_OVERLOAD && area == 0 {
                                overload_len += len;
                                if len == 1 {
                                    overload_value = packet[start];
                                }
                            }
                            pos = start + len;
                        }
                    }
                }
            }
            if area == 0 && overload_len == 1 {
                overload = overload_value & 3;
            }
            area += 1;
        }
        let (pos, end) = area_bounds(0, overload, packet.len()).unwrap_or((0, 0));
        RawOptions {
            packet,
            overload,
            area: 0,
            pos,
            end,
            dup,
            done: CodeSet::default(),
            truncated,
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
            match raw_step(self.packet, self.pos, self.end) {
                RawStep::Pad => self.pos += 1,
                RawStep::Option { code, start, len } => {
                    let at = self.pos;
                    self.pos = start + len;
                    if !self.dup.contains(code) {
                        return Some(RawOption {
                            code,
                            data: OptionData::new(&self.packet[start..start + len]),
                        });
                    }
                    if self.done.insert(code) {
                        return Some(RawOption {
                            code,
                            data: OptionData::split(
                                self.packet,
                                self.overload,
                                code,
                                self.area,
                                at,
                            ),
                        });
                    }
                }
                RawStep::End | RawStep::Truncated => loop {
                    self.area = self.area.saturating_add(1);
                    if self.area > 2 {
                        self.pos = 0;
                        self.end = 0;
                        return None;
                    }
                    if let Some((s, e)) = area_bounds(self.area, self.overload, self.packet.len()) {
                        self.pos = s;
                        self.end = e;
                        break;
                    }
                },
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
