//! TFTP options (RFC 2347): `name NUL value NUL` pairs after a request's
//! mode or an OACK's opcode.
//!
//! ```text
//! | opt1 | 0 | value1 | 0 | opt2 | 0 | value2 | 0 | ...
//! ```
//!
//! Typed options: `blksize` 8–65464 (RFC 2348), `timeout` 1–255 seconds and
//! `tsize` (RFC 2349), `windowsize` 1–65535 (RFC 7440), `multicast`
//! (RFC 2090, value `addr,port,mc` in an OACK, empty in a request).

use core::net::Ipv4Addr;

use super::{EmitError, MAX_BLKSIZE, MIN_BLKSIZE, split_nul};

/// The options of a request or OACK: the raw bytes received (order and
/// unknown options kept), or a typed set to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Options<'a> {
    /// Options exactly as received.
    Wire(&'a [u8]),
    /// A typed set, emitted in the order blksize, timeout, tsize,
    /// windowsize, multicast.
    Set(OptionSet),
}

impl<'a> Options<'a> {
    /// No options.
    pub const NONE: Options<'static> = Options::Wire(&[]);

    /// The typed options (unknown and out-of-range ones ignored).
    pub fn to_set(&self) -> OptionSet {
        match self {
            Options::Wire(raw) => OptionSet::parse(raw),
            Options::Set(s) => *s,
        }
    }

    /// Iterates raw `(name, value)` pairs of received options. Empty for
    /// [`Options::Set`].
    pub fn iter(&self) -> OptionIter<'a> {
        match self {
            Options::Wire(raw) => OptionIter { rest: raw },
            Options::Set(_) => OptionIter { rest: &[] },
        }
    }

    /// True when no option is present.
    pub fn is_empty(&self) -> bool {
        match self {
            Options::Wire(raw) => raw.is_empty(),
            Options::Set(s) => s.is_empty(),
        }
    }

    /// Bytes [`Options::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Options::Wire(raw) => raw.len(),
            Options::Set(s) => s.buffer_len(),
        }
    }

    /// Writes the options into `buf`; returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        match self {
            Options::Wire(raw) => {
                let dst = buf
                    .get_mut(..raw.len())
                    .ok_or(EmitError::BufferTooSmall { needed: raw.len() })?;
                dst.copy_from_slice(raw);
                Ok(raw.len())
            }
            Options::Set(s) => s.emit(buf),
        }
    }
}

/// Iterator over raw `(name, value)` option pairs. Stops at the first
/// incomplete pair (a name without a terminated value).
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (name, rest) = split_nul(self.rest)?;
        let (value, rest) = split_nul(rest)?;
        self.rest = rest;
        Some((name, value))
    }
}

/// RFC 2090 `multicast` option. In a request all fields are `None` (empty
/// value); in an OACK they carry `addr,port,mc` (each may be empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MulticastOption {
    /// Multicast group address.
    pub addr: Option<Ipv4Addr>,
    /// Multicast port.
    pub port: Option<u16>,
    /// `mc`: true when this client is the master client.
    pub master: Option<bool>,
}

/// Typed TFTP options; `None` means absent (or invalid, hence ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptionSet {
    /// `blksize` (RFC 2348), 8–65464.
    pub blksize: Option<u16>,
    /// `timeout` in seconds (RFC 2349), 1–255.
    pub timeout: Option<u8>,
    /// `tsize` in bytes (RFC 2349); 0 in a read request asks for the size.
    pub tsize: Option<u64>,
    /// `windowsize` (RFC 7440), 1–65535.
    pub windowsize: Option<u16>,
    /// `multicast` (RFC 2090).
    pub multicast: Option<MulticastOption>,
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &c| {
        if c.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

fn parse_multicast(v: &[u8]) -> Option<MulticastOption> {
    if v.is_empty() {
        return Some(MulticastOption::default());
    }
    let mut parts = v.split(|&c| c == b',');
    let addr = parts.next()?;
    let port = parts.next()?;
    let mc = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let addr = if addr.is_empty() {
        None
    } else {
        Some(core::str::from_utf8(addr).ok()?.parse::<Ipv4Addr>().ok()?)
    };
    let port = if port.is_empty() {
        None
    } else {
        Some(u16::try_from(parse_decimal(port)?).ok()?)
    };
    let master = match mc {
        b"" => None,
        b"0" => Some(false),
        b"1" => Some(true),
        _ => return None,
    };
    Some(MulticastOption { addr, port, master })
}

impl OptionSet {
    /// Parses raw option bytes. Names are case-insensitive; unknown names,
    /// out-of-range values and repeats of an option already seen are
    /// ignored (the first valid occurrence wins).
    pub fn parse(raw: &[u8]) -> OptionSet {
        let mut set = OptionSet::default();
        for (name, value) in (OptionIter { rest: raw }) {
            let num = || parse_decimal(value);
            if name.eq_ignore_ascii_case(b"blksize") {
                if set.blksize.is_none() {
                    set.blksize = num()
                        .filter(|v| (u64::from(MIN_BLKSIZE)..=u64::from(MAX_BLKSIZE)).contains(v))
                        .and_then(|v| u16::try_from(v).ok());
                }
            } else if name.eq_ignore_ascii_case(b"timeout") {
                if set.timeout.is_none() {
                    set.timeout = num()
                        .filter(|v| (1..=255).contains(v))
                        .and_then(|v| u8::try_from(v).ok());
                }
            } else if name.eq_ignore_ascii_case(b"tsize") {
                if set.tsize.is_none() {
                    set.tsize = num();
                }
            } else if name.eq_ignore_ascii_case(b"windowsize") {
                if set.windowsize.is_none() {
                    set.windowsize = num()
                        .filter(|v| (1..=65535).contains(v))
                        .and_then(|v| u16::try_from(v).ok());
                }
            } else if name.eq_ignore_ascii_case(b"multicast") && set.multicast.is_none() {
                set.multicast = parse_multicast(value);
            }
        }
        set
    }

    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        *self == OptionSet::default()
    }

    fn for_each_pair(&self, mut f: impl FnMut(&[u8], &[u8])) {
        let mut num = NumBuf::default();
        if let Some(v) = self.blksize {
            f(b"blksize", num.format(u64::from(v)));
        }
        if let Some(v) = self.timeout {
            f(b"timeout", num.format(u64::from(v)));
        }
        if let Some(v) = self.tsize {
            f(b"tsize", num.format(v));
        }
        if let Some(v) = self.windowsize {
            f(b"windowsize", num.format(u64::from(v)));
        }
        if let Some(m) = self.multicast {
            // "255.255.255.255,65535,1" is at most 23 bytes.
            let mut out = [0u8; 24];
            let mut len = 0;
            let mut push = |bytes: &[u8]| {
                out[len..len + bytes.len()].copy_from_slice(bytes);
                len += bytes.len();
            };
            if let Some(a) = m.addr {
                for (i, o) in a.octets().iter().enumerate() {
                    if i > 0 {
                        push(b".");
                    }
                    push(NumBuf::default().format(u64::from(*o)));
                }
            }
            if m.addr.is_some() || m.port.is_some() || m.master.is_some() {
                push(b",");
                if let Some(p) = m.port {
                    push(NumBuf::default().format(u64::from(p)));
                }
                push(b",");
                match m.master {
                    Some(true) => push(b"1"),
                    Some(false) => push(b"0"),
                    None => {}
                }
            }
            f(b"multicast", &out[..len]);
        }
    }

    /// Bytes [`OptionSet::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let mut n = 0;
        self.for_each_pair(|k, v| n += k.len() + v.len() + 2);
        n
    }

    /// Writes the options as `name NUL value NUL` pairs; returns the length.
    /// A too-small buffer is left untouched.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let needed = self.buffer_len();
        if buf.len() < needed {
            return Err(EmitError::BufferTooSmall { needed });
        }
        let mut pos = 0;
        self.for_each_pair(|k, v| {
            for part in [k, &[0], v, &[0]] {
                buf[pos..pos + part.len()].copy_from_slice(part);
                pos += part.len();
            }
        });
        Ok(pos)
    }
}

/// Formats a u64 in decimal without allocation.
#[derive(Default)]
struct NumBuf {
    buf: [u8; 20],
}

impl NumBuf {
    fn format(&mut self, mut v: u64) -> &[u8] {
        let mut i = self.buf.len();
        loop {
            i -= 1;
            self.buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        &self.buf[i..]
    }
}
