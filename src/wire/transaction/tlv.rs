//! TLV payload encoding (docs/transaction-protocol.md §2.3) and the small
//! cursor types the message codecs are built from.
//!
//! ```text
//! +--------+----------------+----------------------------+
//! | type 8 | length 16 (BE) | value (length bytes)       |
//! +--------+----------------+----------------------------+
//! ```

use super::{EmitError, ParseError};
use core::net::Ipv4Addr;

/// Size of a TLV header.
pub const TLV_HEADER_LEN: usize = 3;

/// One TLV borrowed from a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// TLV type.
    pub kind: u8,
    /// Value bytes.
    pub value: &'a [u8],
}

/// Iterates the TLVs of a payload; yields one error and stops when a TLV
/// runs past the payload.
#[derive(Clone, Debug)]
pub struct TlvIter<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> TlvIter<'a> {
    /// Iterate `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        TlvIter {
            data: payload,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Tlv<'a>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let offset = self.pos;
        let parsed = (|| {
            let h = self.data.get(offset..offset + TLV_HEADER_LEN)?;
            let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
            let start = offset + TLV_HEADER_LEN;
            let value = self.data.get(start..start + len)?;
            Some((h[0], value, start + len))
        })();
        match parsed {
            Some((kind, value, next)) => {
                self.pos = next;
                Some(Ok(Tlv { kind, value }))
            }
            None => {
                self.failed = true;
                Some(Err(ParseError::TlvOverrun { offset }))
            }
        }
    }
}

/// Reads fixed-layout values field by field; every read is bounds checked.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    field: u8,
}

impl<'a> Reader<'a> {
    /// Read `data`; errors name `field`.
    pub fn new(data: &'a [u8], field: u8) -> Self {
        Reader {
            data,
            pos: 0,
            field,
        }
    }
    fn err(&self) -> ParseError {
        ParseError::BadField { field: self.field }
    }
    /// Next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let s = self
            .data
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or(self.err())?;
        self.pos += n;
        Ok(s)
    }
    /// Next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    /// A u8.
    pub fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.array::<1>()?[0])
    }
    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// An IPv4 address.
    pub fn ipv4(&mut self) -> Result<Ipv4Addr, ParseError> {
        Ok(Ipv4Addr::from(self.array::<4>()?))
    }
    /// A `len:u8` ‖ UTF-8 string.
    pub fn str8(&mut self) -> Result<&'a str, ParseError> {
        let n = usize::from(self.u8()?);
        let b = self.bytes(n)?;
        core::str::from_utf8(b).map_err(|_| ParseError::BadString { field: self.field })
    }
    /// The rest of the data.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.data.get(self.pos..).unwrap_or(&[]);
        self.pos = self.data.len();
        r
    }
    /// Succeeds only if every byte was consumed.
    pub fn finish(&self) -> Result<(), ParseError> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err(self.err())
        }
    }
}

/// Writes into a caller buffer; every write is bounds checked.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    /// Write into `buf` from offset 0.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }
    /// Bytes written so far.
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Append raw bytes.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        let end = self.pos + bytes.len();
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EmitError::BufferTooSmall { needed: end })?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
    /// Append a u8.
    pub fn u8(&mut self, v: u8) -> Result<(), EmitError> {
        self.put(&[v])
    }
    /// Append a big-endian u16.
    pub fn u16(&mut self, v: u16) -> Result<(), EmitError> {
        self.put(&v.to_be_bytes())
    }
    /// Append a big-endian u32.
    pub fn u32(&mut self, v: u32) -> Result<(), EmitError> {
        self.put(&v.to_be_bytes())
    }
    /// Append a `len:u8` ‖ UTF-8 string (`field` names the error).
    pub fn str8(&mut self, s: &str, field: u8) -> Result<(), EmitError> {
        let n = u8::try_from(s.len()).map_err(|_| EmitError::FieldTooLong { field })?;
        self.u8(n)?;
        self.put(s.as_bytes())
    }
    /// Append a TLV header for a value of `len` bytes.
    pub fn tlv_header(&mut self, kind: u8, len: usize) -> Result<(), EmitError> {
        let n = u16::try_from(len).map_err(|_| EmitError::FieldTooLong { field: kind })?;
        self.u8(kind)?;
        self.u16(n)
    }
    /// Append a whole TLV.
    pub fn tlv(&mut self, kind: u8, value: &[u8]) -> Result<(), EmitError> {
        self.tlv_header(kind, value.len())?;
        self.put(value)
    }
}

/// Encoded size of a `len:u8` string.
pub fn str8_len(s: &str) -> usize {
    1 + s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §2.3: TLVs iterate in order; an overrun is one error, then the end.
    #[test]
    fn iterates_and_detects_overrun() {
        let data = [1, 0, 2, 0xAA, 0xBB, 9, 0, 0, 7, 0, 5, 1];
        let mut it = TlvIter::new(&data);
        assert_eq!(
            it.next(),
            Some(Ok(Tlv {
                kind: 1,
                value: &[0xAA, 0xBB]
            }))
        );
        assert_eq!(
            it.next(),
            Some(Ok(Tlv {
                kind: 9,
                value: &[]
            }))
        );
        assert_eq!(it.next(), Some(Err(ParseError::TlvOverrun { offset: 8 })));
        assert_eq!(it.next(), None);
        assert_eq!(
            TlvIter::new(&[1, 0]).next(),
            Some(Err(ParseError::TlvOverrun { offset: 0 }))
        );
    }

    #[test]
    fn reader_checks_bounds_and_utf8() {
        let mut r = Reader::new(&[3, b'a', b'b'], 4);
        assert_eq!(r.str8(), Err(ParseError::BadField { field: 4 }));
        let mut r = Reader::new(&[1, 0xFF], 4);
        assert_eq!(r.str8(), Err(ParseError::BadString { field: 4 }));
        let mut r = Reader::new(&[0, 1, 2], 5);
        assert_eq!(r.u16(), Ok(1));
        assert!(r.finish().is_err());
    }
}
