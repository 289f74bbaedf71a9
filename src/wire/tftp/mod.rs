//! TFTP packets (RFC 1350) and option extensions (RFC 2347, 2348, 2349, 7440, 2090).
//!
//! Every packet starts with a 2-byte big-endian opcode (RFC 1350 §5):
//!
//! ```text
//! RRQ/WRQ  | 01/02 | filename | 0 | mode | 0 | opt1 | 0 | value1 | 0 | ... |
//! DATA     | 03    | block (2)  | data (0..blksize)                      |
//! ACK      | 04    | block (2)  |
//! ERROR    | 05    | code (2)   | errmsg | 0 |
//! OACK     | 06    | opt1 | 0 | value1 | 0 | ...        (RFC 2347 §3)
//! ```
//!
//! [`Packet`] is a zero-copy view checked once by [`Packet::new_checked`];
//! [`Repr`] is the parsed representation with [`Repr::parse`],
//! [`Repr::emit`] and [`Repr::buffer_len`]. Options are kept as the raw bytes
//! the peer sent ([`Options::Wire`], order and unknown options preserved, so
//! parse → emit is byte-exact) or built from a typed [`OptionSet`].
//!
//! Leniency (documented, deliberate): option names and mode names are
//! case-insensitive; unknown options are ignored by [`OptionSet::parse`];
//! an option whose value is out of range (RFC 2348 `blksize` 8–65464,
//! RFC 2349 `timeout` 1–255, RFC 7440 `windowsize` 1–65535) is ignored, as
//! RFC 2347 §4 allows; a trailing option name without a value is ignored; an
//! ERROR message without its terminating NUL is accepted; bytes after an
//! ACK's block number are ignored.

mod netascii;
mod options;

pub use netascii::{NetasciiDecoder, NetasciiEncoder};
pub use options::{MulticastOption, OptionIter, OptionSet, Options};

/// Largest `blksize` a client may ask for (RFC 2348).
pub const MAX_BLKSIZE: u16 = 65464;
/// Smallest `blksize` a client may ask for (RFC 2348).
pub const MIN_BLKSIZE: u16 = 8;
/// The block size when no `blksize` option is negotiated (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;
/// Length of the DATA header (opcode + block number).
pub const DATA_HEADER_LEN: usize = 4;

/// Errors from parsing a TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The datagram is shorter than the packet type needs.
    #[error("packet truncated: need at least {needed} bytes, got {got}")]
    Truncated {
        /// Bytes the packet type needs at least.
        needed: usize,
        /// Bytes received.
        got: usize,
    },
    /// The opcode is not one of RFC 1350 / RFC 2347.
    #[error("unknown TFTP opcode {0}")]
    UnknownOpcode(u16),
    /// A string field (filename, mode) lacks its terminating NUL.
    #[error("string field is not NUL-terminated")]
    Unterminated,
    /// The request names no file.
    #[error("empty filename")]
    EmptyFilename,
    /// The transfer mode is not `netascii`, `octet` or `mail`.
    #[error("unknown transfer mode")]
    UnknownMode,
}

impl ParseError {
    /// The TFTP error code to answer a peer whose packet failed to parse
    /// (RFC 1350: "Illegal TFTP operation").
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::IllegalOperation
    }
}

/// Errors from emitting a TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The caller's buffer is too small; nothing was written.
    #[error("buffer too small: need {needed} bytes")]
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
    },
    /// A string field contains a NUL byte and cannot be encoded.
    #[error("string field contains a NUL byte")]
    EmbeddedNul,
}

/// TFTP opcodes (RFC 1350 §5, RFC 2347 §3 for OACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// Read request.
    Rrq,
    /// Write request.
    Wrq,
    /// Data block.
    Data,
    /// Acknowledgment.
    Ack,
    /// Error.
    Error,
    /// Option acknowledgment (RFC 2347).
    Oack,
    /// Any other value, kept.
    Unknown(u16),
}

impl From<u16> for Opcode {
    fn from(v: u16) -> Self {
        match v {
            1 => Opcode::Rrq,
            2 => Opcode::Wrq,
            3 => Opcode::Data,
            4 => Opcode::Ack,
            5 => Opcode::Error,
            6 => Opcode::Oack,
            other => Opcode::Unknown(other),
        }
    }
}

impl From<Opcode> for u16 {
    fn from(v: Opcode) -> u16 {
        match v {
            Opcode::Rrq => 1,
            Opcode::Wrq => 2,
            Opcode::Data => 3,
            Opcode::Ack => 4,
            Opcode::Error => 5,
            Opcode::Oack => 6,
            Opcode::Unknown(other) => other,
        }
    }
}

/// TFTP error codes (RFC 1350 appendix; 8 from RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: not defined, see error message.
    NotDefined,
    /// 1: file not found.
    FileNotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTid,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: option negotiation refused (RFC 2347).
    OptionRefused,
    /// Any other value, kept.
    Unknown(u16),
}

impl From<u16> for ErrorCode {
    fn from(v: u16) -> Self {
        match v {
            0 => ErrorCode::NotDefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTid,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionRefused,
            other => ErrorCode::Unknown(other),
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(v: ErrorCode) -> u16 {
        match v {
            ErrorCode::NotDefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTid => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionRefused => 8,
            ErrorCode::Unknown(other) => other,
        }
    }
}

impl ErrorCode {
    /// A short default message for this code.
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorCode::NotDefined | ErrorCode::Unknown(_) => "error",
            ErrorCode::FileNotFound => "file not found",
            ErrorCode::AccessViolation => "access violation",
            ErrorCode::DiskFull => "disk full or allocation exceeded",
            ErrorCode::IllegalOperation => "illegal TFTP operation",
            ErrorCode::UnknownTid => "unknown transfer ID",
            ErrorCode::FileExists => "file already exists",
            ErrorCode::NoSuchUser => "no such user",
            ErrorCode::OptionRefused => "option negotiation refused",
        }
    }
}

/// Transfer modes (RFC 1350 §1); names are case-insensitive on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `netascii`: lines end in CR LF, a bare CR is CR NUL.
    Netascii,
    /// `octet`: raw 8-bit bytes.
    Octet,
    /// `mail` (obsolete; parsed, never served).
    Mail,
}

impl Mode {
    /// The canonical lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Netascii => "netascii",
            Mode::Octet => "octet",
            Mode::Mail => "mail",
        }
    }

    fn parse(name: &[u8]) -> Result<Mode, ParseError> {
        [Mode::Octet, Mode::Netascii, Mode::Mail]
            .into_iter()
            .find(|m| m.as_str().as_bytes().eq_ignore_ascii_case(name))
            .ok_or(ParseError::UnknownMode)
    }
}

/// Splits `bytes` at the first NUL: (string, rest after the NUL).
pub(crate) fn split_nul(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let pos = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..pos], &bytes[pos + 1..]))
}

/// A read-only or read-write view of a TFTP datagram.
///
/// After [`Packet::new_checked`] succeeds every accessor is infallible.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checks; accessors may then return garbage
    /// (never panic) — prefer [`Packet::new_checked`].
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking that the packet is well formed enough
    /// for every accessor: a known opcode, the minimum length of its type,
    /// and NUL-terminated filename and mode for requests.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ParseError> {
        let p = Packet { buffer };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), ParseError> {
        let b = self.buffer.as_ref();
        if b.len() < 2 {
            return Err(ParseError::Truncated {
                needed: 2,
                got: b.len(),
            });
        }
        match self.opcode() {
            Opcode::Rrq | Opcode::Wrq => {
                let (name, rest) = split_nul(&b[2..]).ok_or(ParseError::Unterminated)?;
                if name.is_empty() {
                    return Err(ParseError::EmptyFilename);
                }
                let (mode, _) = split_nul(rest).ok_or(ParseError::Unterminated)?;
                Mode::parse(mode)?;
                Ok(())
            }
            Opcode::Data | Opcode::Ack | Opcode::Error if b.len() < 4 => {
                Err(ParseError::Truncated {
                    needed: 4,
                    got: b.len(),
                })
            }
            Opcode::Data | Opcode::Ack | Opcode::Error | Opcode::Oack => Ok(()),
            Opcode::Unknown(v) => Err(ParseError::UnknownOpcode(v)),
        }
    }

    /// The opcode.
    pub fn opcode(&self) -> Opcode {
        let b = self.buffer.as_ref();
        match b {
            [hi, lo, ..] => Opcode::from(u16::from_be_bytes([*hi, *lo])),
            _ => Opcode::Unknown(0),
        }
    }

    /// The block number of a DATA or ACK packet, or the code of an ERROR.
    pub fn block(&self) -> u16 {
        match self.buffer.as_ref() {
            [_, _, hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
            _ => 0,
        }
    }

    /// Bytes after the 4-byte header (DATA payload, ERROR message).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(4..).unwrap_or(&[])
    }

    /// Bytes after the opcode (request fields, OACK options).
    pub fn body(&self) -> &[u8] {
        self.buffer.as_ref().get(2..).unwrap_or(&[])
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// A read or write request (RFC 1350 §5, options per RFC 2347 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The `filename` field, raw bytes as sent (not validated as a path).
    pub filename: &'a [u8],
    /// The transfer `mode`.
    pub mode: Mode,
    /// Requested options.
    pub options: Options<'a>,
}

/// A parsed TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    /// Read request.
    Rrq(Request<'a>),
    /// Write request.
    Wrq(Request<'a>),
    /// DATA: `block` and up to `blksize` bytes of `data`.
    Data {
        /// Block number (wraps; see the engines).
        block: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// ACK of `block`.
    Ack {
        /// Block number acknowledged.
        block: u16,
    },
    /// ERROR with `code` and `message` (bytes as sent, NUL excluded).
    Error {
        /// Error code.
        code: ErrorCode,
        /// Message, usually ASCII.
        message: &'a [u8],
    },
    /// Option acknowledgment (RFC 2347 §3).
    Oack {
        /// Options granted.
        options: Options<'a>,
    },
}

impl<'a> Repr<'a> {
    /// Parses a checked packet view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &'a Packet<&'a T>,
    ) -> Result<Repr<'a>, ParseError> {
        Self::parse_bytes(packet.buffer.as_ref())
    }

    /// Checks and parses raw datagram bytes.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Repr<'a>, ParseError> {
        let packet = Packet::new_checked(bytes)?;
        let body = &bytes[2..];
        Ok(match packet.opcode() {
            op @ (Opcode::Rrq | Opcode::Wrq) => {
                let (filename, rest) = split_nul(body).ok_or(ParseError::Unterminated)?;
                let (mode, options) = split_nul(rest).ok_or(ParseError::Unterminated)?;
                let req = Request {
                    filename,
                    mode: Mode::parse(mode)?,
                    options: Options::Wire(options),
                };
                if op == Opcode::Rrq {
                    Repr::Rrq(req)
                } else {
                    Repr::Wrq(req)
                }
            }
            Opcode::Data => Repr::Data {
                block: packet.block(),
                data: &bytes[4..],
            },
            Opcode::Ack => Repr::Ack {
                block: packet.block(),
            },
            Opcode::Error => {
                let raw = &bytes[4..];
                let message = split_nul(raw).map(|(m, _)| m).unwrap_or(raw);
                Repr::Error {
                    code: ErrorCode::from(packet.block()),
                    message,
                }
            }
            Opcode::Oack => Repr::Oack {
                options: Options::Wire(body),
            },
            Opcode::Unknown(v) => return Err(ParseError::UnknownOpcode(v)),
        })
    }

    /// ERROR `code` with the code's standard text (RFC 1350 §5).
    pub fn error(code: ErrorCode) -> Repr<'static> {
        Repr::Error {
            code,
            message: code.default_message().as_bytes(),
        }
    }

    /// Bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::Rrq(r) | Repr::Wrq(r) => {
                2 + r.filename.len() + 1 + r.mode.as_str().len() + 1 + r.options.buffer_len()
            }
            Repr::Data { data, .. } => 4 + data.len(),
            Repr::Ack { .. } => 4,
            Repr::Error { message, .. } => 4 + message.len() + 1,
            Repr::Oack { options } => 2 + options.buffer_len(),
        }
    }

    /// Writes the packet into `buf`, returning the length written. A buffer
    /// that is too small is left untouched.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let needed = self.buffer_len();
        if buf.len() < needed {
            return Err(EmitError::BufferTooSmall { needed });
        }
        match self {
            Repr::Rrq(r) | Repr::Wrq(r) if r.filename.contains(&0) => {
                return Err(EmitError::EmbeddedNul);
            }
            Repr::Error { message, .. } if message.contains(&0) => {
                return Err(EmitError::EmbeddedNul);
            }
            _ => {}
        }
        let op = match self {
            Repr::Rrq(_) => Opcode::Rrq,
            Repr::Wrq(_) => Opcode::Wrq,
            Repr::Data { .. } => Opcode::Data,
            Repr::Ack { .. } => Opcode::Ack,
            Repr::Error { .. } => Opcode::Error,
            Repr::Oack { .. } => Opcode::Oack,
        };
        buf[..2].copy_from_slice(&u16::from(op).to_be_bytes());
        let mut w = Writer { buf, pos: 2 };
        match self {
            Repr::Rrq(r) | Repr::Wrq(r) => {
                w.put(r.filename);
                w.put(&[0]);
                w.put(r.mode.as_str().as_bytes());
                w.put(&[0]);
                let pos = w.pos;
                w.pos += r.options.emit(&mut w.buf[pos..])?;
            }
            Repr::Data { block, data } => {
                w.put(&block.to_be_bytes());
                w.put(data);
            }
            Repr::Ack { block } => w.put(&block.to_be_bytes()),
            Repr::Error { code, message } => {
                w.put(&u16::from(*code).to_be_bytes());
                w.put(message);
                w.put(&[0]);
            }
            Repr::Oack { options } => {
                let pos = w.pos;
                w.pos += options.emit(&mut w.buf[pos..])?;
            }
        }
        Ok(w.pos)
    }
}

/// Writes the 4-byte DATA header for `block` into `buf[..4]`; the caller
/// fills the payload after it (zero-copy send path of the engines).
pub fn emit_data_header(block: u16, buf: &mut [u8]) -> Result<(), EmitError> {
    let hdr = buf
        .get_mut(..DATA_HEADER_LEN)
        .ok_or(EmitError::BufferTooSmall {
            needed: DATA_HEADER_LEN,
        })?;
    hdr[..2].copy_from_slice(&u16::from(Opcode::Data).to_be_bytes());
    hdr[2..].copy_from_slice(&block.to_be_bytes());
    Ok(())
}

pub(crate) struct Writer<'b> {
    pub(crate) buf: &'b mut [u8],
    pub(crate) pos: usize,
}

impl Writer<'_> {
    /// Callers check capacity first (buffer_len).
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        self.buf[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
    }
}

#[cfg(test)]
mod tests;
