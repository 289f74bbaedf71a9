//! Crate-internal plumbing shared by the typed DHCP options and the PXE
//! sub-options: a value type knows its encoded length and writes itself
//! into a [`Sink`]; sinks never panic (a write past the end only sets a
//! flag, which the callers turn into an error — it cannot happen when the
//! length was computed first, as every builder does).

use super::data::OptionData;

/// Somewhere payload bytes go.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// A typed option payload: decoded from an [`OptionData`], encoded into a
/// [`Sink`].
pub(crate) trait OptionValue<'a>: Sized {
    /// `None` if the payload does not have this type's shape.
    fn decode(data: OptionData<'a>) -> Option<Self>;
    /// Length of the encoded payload.
    fn encoded_len(&self) -> usize;
    /// Writes exactly `encoded_len()` bytes.
    fn encode<S: Sink>(&self, out: &mut S);
    /// Whether the value can be encoded (e.g. no sub-option over 255
    /// bytes); checked by the builders before anything is written.
    fn check(&self, _code: u8) -> Result<(), super::EmitError> {
        Ok(())
    }
}

/// A sink over a byte slice.
pub(crate) struct SliceSink<'b> {
    pub(crate) buf: &'b mut [u8],
    pub(crate) pos: usize,
    pub(crate) overflow: bool,
}

impl<'b> SliceSink<'b> {
    pub(crate) fn new(buf: &'b mut [u8], pos: usize) -> Self {
        SliceSink {
            buf,
            pos,
            overflow: false,
        }
    }
}

impl Sink for SliceSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.pos += bytes.len();
            }
            None => self.overflow = true,
        }
    }
}

/// Writes one DHCP option, splitting its payload into 255-byte pieces with
/// the same code (RFC 3396 §6).
pub(crate) struct SplitSink<'s, 'b> {
    out: &'s mut SliceSink<'b>,
    code: u8,
    chunk_left: usize,
    total_left: usize,
}

impl<'s, 'b> SplitSink<'s, 'b> {
    /// Starts an option of `code` with a payload of `len` bytes. An empty
    /// payload is written as `code, 0` at once.
    pub(crate) fn new(out: &'s mut SliceSink<'b>, code: u8, len: usize) -> Self {
        if len == 0 {
            out.put(&[code, 0]);
        }
        SplitSink {
            out,
            code,
            chunk_left: 0,
            total_left: len,
        }
    }

    /// Whether the payload written so far matches the announced length.
    pub(crate) fn finished(&self) -> bool {
        self.total_left == 0 && self.chunk_left == 0
    }
}

impl Sink for SplitSink<'_, '_> {
    fn put(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.chunk_left == 0 {
                if self.total_left == 0 {
                    self.out.overflow = true;
                    return;
                }
                let n = self.total_left.min(255);
                self.out.put(&[self.code, n as u8]);
                self.chunk_left = n;
                self.total_left -= n;
            }
            let n = self.chunk_left.min(bytes.len());
            self.out.put(&bytes[..n]);
            self.chunk_left -= n;
            bytes = &bytes[n..];
        }
    }
}

/// Bytes on the wire of an option with a payload of `len` bytes, split
/// into 255-byte pieces.
#[inline]
pub(crate) fn split_wire_len(len: usize) -> usize {
    if len <= 255 {
        len + 2
    } else {
        len + 2 * len.div_ceil(255)
    }
}

// ---- implementations for plain types ----

impl<'a> OptionValue<'a> for OptionData<'a> {
    #[inline(always)]
    fn decode(data: OptionData<'a>) -> Option<Self> {
        Some(data)
    }
    fn encoded_len(&self) -> usize {
        self.len()
    }
    #[inline]
    fn encode<S: Sink>(&self, out: &mut S) {
        match self.single() {
            Some(s) => out.put(s),
            None => {
                for f in self.fragments() {
                    out.put(f);
                }
            }
        }
    }
}

impl OptionValue<'_> for core::net::Ipv4Addr {
    #[inline(always)]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 4 {
            return None;
        }
        data.array::<4>(0).map(core::net::Ipv4Addr::from)
    }
    fn encoded_len(&self) -> usize {
        4
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&self.octets());
    }
}

impl OptionValue<'_> for u32 {
    #[inline(always)]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 4 {
            return None;
        }
        data.array::<4>(0).map(u32::from_be_bytes)
    }
    fn encoded_len(&self) -> usize {
        4
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&self.to_be_bytes());
    }
}

impl OptionValue<'_> for u16 {
    #[inline(always)]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 2 {
            return None;
        }
        data.array::<2>(0).map(u16::from_be_bytes)
    }
    fn encoded_len(&self) -> usize {
        2
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&self.to_be_bytes());
    }
}

impl OptionValue<'_> for u8 {
    #[inline(always)]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 1 {
            return None;
        }
        data.get(0)
    }
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&[*self]);
    }
}

impl<const N: usize> OptionValue<'_> for [u8; N] {
    #[inline(always)]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != N {
            return None;
        }
        data.array::<N>(0)
    }
    fn encoded_len(&self) -> usize {
        N
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(self);
    }
}
