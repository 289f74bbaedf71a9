//! Transaction protocol frames (docs/transaction-protocol.md, version 2).
//!
//! A frame is a 24-byte header, a payload and, in sealed frames, a 16-byte
//! AEAD tag (§2):
//!
//! ```text
//!  0      4         5      6        7       8            12           20         22         24
//! +------+---------+------+--------+-------+------------+------------+----------+----------+---------+-----+
//! |"PBTX"| version | type | status | flags | request id | session id | pay. len | tag len  | payload | tag |
//! +------+---------+------+--------+-------+------------+------------+----------+----------+---------+-----+
//! ```
//!
//! [`Frame`] is the zero-copy view (all length checks of §2.2 happen once in
//! [`Frame::new_checked`]); [`Header`] is its representation and
//! [`emit_frame`] the builder. The payloads of each message live in
//! [`messages`]; their TLV encoding (§2.3) in [`tlv`]. This layer holds no
//! cryptography: the builder reserves the tag bytes of a sealed frame and
//! the engine encrypts the payload in place and fills the tag (§2.4, see
//! `preboot::transaction`).
//!
//! ```
//! use preboot::wire::transaction::{emit_frame, Frame, Header, MessageType, Status};
//! use preboot::wire::transaction::messages::Cookie;
//!
//! let header = Header {
//!     message_type: MessageType::Cookie,
//!     status: Status::Ok,
//!     flags: 0,
//!     request_id: 1,
//!     session_id: 0,
//! };
//! let mut buf = [0u8; 128];
//! let len = emit_frame(&header, &Cookie { cookie: [7; 32] }, false, &mut buf).unwrap();
//! assert_eq!(len, 24 + 32);
//! let frame = Frame::new_checked(&buf[..len]).unwrap();
//! assert_eq!(frame.header(), header);
//! assert_eq!(Cookie::parse(frame.payload()).unwrap().cookie, [7; 32]);
//! ```

pub mod environment_multicast;
pub mod menu_choice;
pub mod messages;
pub mod multicast;
pub mod smbios;
pub mod tlv;

/// The four magic bytes `PBTX` (§2.1).
pub const MAGIC: [u8; 4] = *b"PBTX";
/// The protocol version this crate speaks (§9).
pub const VERSION: u8 = 2;
/// Size of the fixed header (§2).
pub const HEADER_LEN: usize = 24;
/// Size of the AEAD tag of a sealed frame (§2.4).
pub const TAG_LEN: usize = 16;
/// Largest datagram/frame (§1, §8).
pub const MAX_FRAME_LEN: usize = 1472;
/// Largest plaintext of one sealed frame (§8): the frame limit minus
/// header and tag.
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN - HEADER_LEN - TAG_LEN;
/// Largest message sent in parts (§4.7).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Flag bit 0: a part of a longer message follows (§4.7).
pub const FLAG_MORE: u8 = 0x01;
/// The documented default UDP port of the transaction server (§1).
pub const DEFAULT_PORT: u16 = 4012;

/// Why bytes are not a valid frame or payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Shorter than the 24-byte header or wrong magic: dropped silently
    /// (§2.2 rule 1).
    #[error("not a transaction-protocol frame (shorter than 24 bytes or no PBTX magic)")]
    NotThisProtocol,
    /// Longer than 1472 bytes (§2.2 rule 2).
    #[error("frame of {len} bytes exceeds the 1472-byte limit")]
    TooLarge {
        /// Datagram length.
        len: usize,
    },
    /// Version other than 2 (§2.2 rule 3).
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// Tag length other than 0 or 16 (§2.2 rule 4).
    #[error("tag length {0} is neither 0 nor 16")]
    BadTagLength(u16),
    /// Header lengths do not add up to the datagram length (§2.2 rule 5).
    #[error("declared frame length {declared} differs from datagram length {actual}")]
    LengthMismatch {
        /// 24 + payload length + tag length.
        declared: usize,
        /// Datagram length.
        actual: usize,
    },
    /// A TLV runs past the end of the payload (§2.3).
    #[error("TLV at payload offset {offset} runs past the payload")]
    TlvOverrun {
        /// Offset of the TLV header inside the payload.
        offset: usize,
    },
    /// A field has the wrong size or an invalid value.
    #[error("field {field} has a bad size or value")]
    BadField {
        /// Field (TLV type) number, or 0 for fixed-layout payloads.
        field: u8,
    },
    /// A single-occurrence field appears twice.
    #[error("field {field} appears twice")]
    Duplicate {
        /// Field (TLV type) number.
        field: u8,
    },
    /// More repetitions of a field than §8 allows.
    #[error("field {field} repeated more often than allowed")]
    TooMany {
        /// Field (TLV type) number.
        field: u8,
    },
    /// A string is not UTF-8 or longer than its limit.
    #[error("field {field} is not valid UTF-8 or too long")]
    BadString {
        /// Field (TLV type) number.
        field: u8,
    },
    /// A required field is missing.
    #[error("required field {field} is missing")]
    Missing {
        /// Field (TLV type) number.
        field: u8,
    },
}

impl ParseError {
    /// The status a server answers with (§5), or `None` when the datagram
    /// must be dropped silently.
    pub fn status(&self) -> Option<Status> {
        Some(match self {
            ParseError::NotThisProtocol => return None,
            ParseError::BadTagLength(_) | ParseError::LengthMismatch { .. } => Status::BadFrame,
            ParseError::TooLarge { .. } => Status::TooLarge,
            ParseError::UnsupportedVersion(_) => Status::UnsupportedVersion,
            _ => Status::BadPayload,
        })
    }
}

/// Why a frame or payload could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The caller's buffer is too small; it was left untouched.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
    },
    /// The payload exceeds what a frame may carry (§8).
    #[error("payload of {len} bytes exceeds the limit")]
    TooLarge {
        /// Payload length.
        len: usize,
    },
    /// A string or list is longer than its field allows (§8).
    #[error("field {field} exceeds its limit")]
    FieldTooLong {
        /// Field (TLV type) number.
        field: u8,
    },
}

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident : $ty:ty { $($(#[$vm:meta])* $v:ident = $n:expr,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)*
            /// A value this version does not know, kept as is.
            Unknown($ty),
        }
        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                match v { $($n => $name::$v,)* other => $name::Unknown(other) }
            }
        }
        impl From<$name> for $ty {
            fn from(v: $name) -> $ty {
                match v { $($name::$v => $n,)* $name::Unknown(other) => other }
            }
        }
    };
}

code_enum! {
    /// Message type (§4). Replies are the request type with the high bit set.
    MessageType: u8 {
        /// Client hello: a nonce, padded (§3.2).
        Hello = 0x01,
        /// The server's stateless cookie (§3.2).
        Cookie = 0x81,
        /// Noise IK message 1 with the cookie (§3.3).
        Init = 0x02,
        /// Noise IK message 2 (§3.3).
        Accept = 0x82,
        /// Workstation information (§4.3).
        WorkstationInfo = 0x03,
        /// Acknowledges workstation information (§4.3).
        InfoAck = 0x83,
        /// Should the boot menu be shown? (§4.4)
        MenuQuery = 0x04,
        /// Menu setting and entries (§4.4).
        MenuReply = 0x84,
        /// Which imaging tasks are pending? (§4.5)
        TaskQuery = 0x05,
        /// Ordered task list and imaging environment (§4.5).
        TaskReply = 0x85,
        /// Task progress/outcome (§4.6).
        TaskReport = 0x06,
        /// Acknowledges a task report (§4.6).
        ReportAck = 0x86,
    }
}

impl MessageType {
    /// True for replies (high bit set).
    pub fn is_reply(self) -> bool {
        u8::from(self) & 0x80 != 0
    }
    /// The reply type that answers this request type (`type | 0x80`).
    pub fn reply(self) -> MessageType {
        MessageType::from(u8::from(self) | 0x80)
    }
}

code_enum! {
    /// Status codes (§5).
    Status: u8 {
        /// Done.
        Ok = 0,
        /// Length mismatch, bad tag length, malformed request header.
        BadFrame = 1,
        /// Payload does not follow §4.
        BadPayload = 2,
        /// Version other than 2.
        UnsupportedVersion = 3,
        /// Request type not in §4.
        UnknownType = 4,
        /// Datagram larger than 1472 bytes, or a message in parts over 4096.
        TooLarge = 5,
        /// The client's key is not bound to a workstation yet (§3.4).
        Pending = 6,
        /// The `WorkstationInfo` names another object's identity (§3.4).
        IdentityRefused = 7,
        /// Session id unknown or expired.
        UnknownSession = 8,
        /// Message not allowed in the session's state.
        OutOfOrder = 10,
        /// Established-session table full (§3.5).
        Busy = 11,
        /// Report for a task id that is not a live task of the object.
        UnknownTask = 12,
        /// The policy layer failed.
        ServerError = 13,
    }
}

/// The header fields a sender chooses (§2.1). Version and lengths are
/// derived by the builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub message_type: MessageType,
    /// Status (0 in requests).
    pub status: Status,
    /// Flags (bit 0: more parts follow, §4.7).
    pub flags: u8,
    /// Request id chosen by the client.
    pub request_id: u32,
    /// Session id (0 in `Hello`).
    pub session_id: u64,
}

/// A zero-copy view of a frame. After [`Frame::new_checked`] no accessor
/// can fail or panic.
#[derive(Clone, Copy, Debug)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}
fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b_, c, d]) => u32::from_be_bytes([a, b_, c, d]),
        _ => 0,
    }
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    u64::from_be_bytes(x)
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap bytes without checks (accessors then return zeros/empties for
    /// missing bytes rather than panic).
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wrap bytes, applying every length rule of §2.2.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN || b[..4] != MAGIC {
            return Err(ParseError::NotThisProtocol);
        }
        if b.len() > MAX_FRAME_LEN {
            return Err(ParseError::TooLarge { len: b.len() });
        }
        if b[4] != VERSION {
            return Err(ParseError::UnsupportedVersion(b[4]));
        }
        let tag_len = be16(b, 22);
        if tag_len != 0 && usize::from(tag_len) != TAG_LEN {
            return Err(ParseError::BadTagLength(tag_len));
        }
        let declared = HEADER_LEN + usize::from(be16(b, 20)) + usize::from(tag_len);
        if declared != b.len() {
            return Err(ParseError::LengthMismatch {
                declared,
                actual: b.len(),
            });
        }
        Ok(Frame { buffer })
    }

    /// The version byte.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref().get(4).copied().unwrap_or(0)
    }
    /// The message type.
    pub fn message_type(&self) -> MessageType {
        MessageType::from(self.buffer.as_ref().get(5).copied().unwrap_or(0))
    }
    /// The status.
    pub fn status(&self) -> Status {
        Status::from(self.buffer.as_ref().get(6).copied().unwrap_or(0))
    }
    /// The flags.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref().get(7).copied().unwrap_or(0)
    }
    /// The request id.
    pub fn request_id(&self) -> u32 {
        be32(self.buffer.as_ref(), 8)
    }
    /// The session id.
    pub fn session_id(&self) -> u64 {
        be64(self.buffer.as_ref(), 12)
    }
    /// The header as a [`Header`].
    pub fn header(&self) -> Header {
        Header {
            message_type: self.message_type(),
            status: self.status(),
            flags: self.flags(),
            request_id: self.request_id(),
            session_id: self.session_id(),
        }
    }
    fn payload_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), 20))
    }
    /// The payload bytes (ciphertext in a sealed frame).
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + self.payload_len();
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }
    /// The AEAD tag, if the frame is sealed (§2.4).
    pub fn tag(&self) -> Option<&[u8]> {
        if usize::from(be16(self.buffer.as_ref(), 22)) != TAG_LEN {
            return None;
        }
        let start = HEADER_LEN + self.payload_len();
        self.buffer.as_ref().get(start..start + TAG_LEN)
    }
    /// Is the frame sealed (tag length 16)?
    pub fn is_sealed(&self) -> bool {
        self.tag().is_some()
    }
    /// The header bytes: the associated data of a sealed frame (§2.4).
    pub fn header_bytes(&self) -> &[u8] {
        self.buffer.as_ref().get(..HEADER_LEN).unwrap_or(&[])
    }
    /// The whole frame.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Give the bytes back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// A message payload: knows its encoded size and writes itself.
pub trait Payload {
    /// Encoded size in bytes.
    fn buffer_len(&self) -> usize;
    /// Write exactly `buffer_len()` bytes into `out` (which has that length).
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError>;
}

/// Write a frame: header, `payload` (as plaintext), and (if `sealed`) 16
/// zero bytes reserved for the tag; the caller then encrypts the payload in
/// place and fills the tag (§2.4). Returns the frame length. A too-small
/// buffer is an error naming the size needed, and the buffer is left
/// untouched.
pub fn emit_frame<P: Payload + ?Sized>(
    header: &Header,
    payload: &P,
    sealed: bool,
    buf: &mut [u8],
) -> Result<usize, EmitError> {
    let plen = payload.buffer_len();
    let limit = if sealed {
        MAX_PAYLOAD_LEN
    } else {
        MAX_FRAME_LEN - HEADER_LEN
    };
    if plen > limit {
        return Err(EmitError::TooLarge { len: plen });
    }
    let tag_len = if sealed { TAG_LEN } else { 0 };
    let total = HEADER_LEN + plen + tag_len;
    let Some(out) = buf.get_mut(..total) else {
        return Err(EmitError::BufferTooSmall { needed: total });
    };
    // Payload first: if it fails, the header bytes are not yet written.
    payload.emit(&mut out[HEADER_LEN..HEADER_LEN + plen])?;
    out[..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = header.message_type.into();
    out[6] = header.status.into();
    out[7] = header.flags;
    out[8..12].copy_from_slice(&header.request_id.to_be_bytes());
    out[12..20].copy_from_slice(&header.session_id.to_be_bytes());
    // plen ≤ 1448 fits in u16.
    out[20..22].copy_from_slice(&(plen as u16).to_be_bytes());
    out[22..24].copy_from_slice(&(tag_len as u16).to_be_bytes());
    out[HEADER_LEN + plen..].fill(0);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::messages::{Cookie, Empty};
    use super::*;

    fn header() -> Header {
        Header {
            message_type: MessageType::MenuQuery,
            status: Status::Ok,
            flags: FLAG_MORE,
            request_id: 0x0102_0304,
            session_id: 0x1112_1314_1516_1718,
        }
    }

    /// §2 layout, byte for byte.
    #[test]
    fn header_layout_is_big_endian() {
        let mut buf = [0xEE; 64];
        let n = emit_frame(&header(), &Empty, true, &mut buf).unwrap();
        assert_eq!(n, 40);
        assert_eq!(
            &buf[..24],
            &[
                b'P', b'B', b'T', b'X', 2, 0x04, 0, 1, 1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14, 0x15,
                0x16, 0x17, 0x18, 0, 0, 0, 16
            ]
        );
        let f = Frame::new_checked(&buf[..n]).unwrap();
        assert_eq!(f.header(), header());
        assert_eq!(f.tag(), Some(&[0u8; 16][..]));
        assert_eq!(f.header_bytes().len(), 24);
    }

    /// §2.2 rules 1–5, each refused with the matching status; below the
    /// minimum frame nothing is answered.
    #[test]
    fn every_length_rule_is_checked() {
        let mut buf = [0u8; 1600];
        let n = emit_frame(&header(), &Cookie { cookie: [1; 32] }, true, &mut buf).unwrap();
        let ok = &buf[..n];
        assert!(Frame::new_checked(ok).is_ok());
        assert_eq!(Frame::new_checked(&ok[..23]).unwrap_err().status(), None);
        let mut bad = [0u8; 72];
        bad.copy_from_slice(ok);
        bad[0] = b'X';
        assert_eq!(Frame::new_checked(&bad[..]).unwrap_err().status(), None);
        assert_eq!(
            Frame::new_checked(&ok[..n - 1]).unwrap_err(),
            ParseError::LengthMismatch {
                declared: n,
                actual: n - 1
            }
        );
        bad.copy_from_slice(ok);
        bad[4] = 1;
        assert_eq!(
            Frame::new_checked(&bad[..]).unwrap_err(),
            ParseError::UnsupportedVersion(1)
        );
        bad.copy_from_slice(ok);
        bad[23] = 32;
        assert_eq!(
            Frame::new_checked(&bad[..]).unwrap_err(),
            ParseError::BadTagLength(32)
        );
        buf[..4].copy_from_slice(&MAGIC);
        buf[4] = VERSION;
        assert_eq!(
            Frame::new_checked(&buf[..1473]).unwrap_err().status(),
            Some(Status::TooLarge)
        );
    }

    #[test]
    fn small_buffer_is_untouched_and_names_size() {
        let mut buf = [0xAB; 40];
        assert_eq!(
            emit_frame(&header(), &Cookie { cookie: [0; 32] }, false, &mut buf),
            Err(EmitError::BufferTooSmall { needed: 56 })
        );
        assert!(buf.iter().all(|&b| b == 0xAB));
    }

    #[test]
    fn codes_keep_unknown_values() {
        assert_eq!(MessageType::from(0x42), MessageType::Unknown(0x42));
        assert_eq!(u8::from(MessageType::Unknown(0x42)), 0x42);
        assert_eq!(MessageType::TaskQuery.reply(), MessageType::TaskReply);
        assert_eq!(Status::from(200), Status::Unknown(200));
        assert_eq!(Status::from(9), Status::Unknown(9));
        for v in 0..=255u8 {
            assert_eq!(u8::from(Status::from(v)), v);
            assert_eq!(u8::from(MessageType::from(v)), v);
        }
    }
}
