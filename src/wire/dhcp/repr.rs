//! The typed message: [`DhcpHeader`] (the BOOTP fields) plus options, with
//! `parse`, `buffer_len` and `emit` (the builder).
//!
//! # What the builder writes (RFC 2131 §2, RFC 3396 §6, RFC 1542 §3.4)
//! The 236-byte header, the magic cookie, every option in the order given
//! (an option longer than 255 bytes is split into consecutive pieces with
//! the same code), the end option, then zero padding up to
//! [`MIN_MESSAGE_LEN`] (300) bytes, the minimum BOOTP relays and old
//! clients expect. The length is computed first: a short buffer is an
//! error naming the needed size, and the buffer is left untouched.
//! Every option goes into the options field; an option 52 that claims
//! `file` or `sname` for options while that field carries a name is
//! refused ([`EmitError::InvalidValue`]), since the receiver would read the
//! name as options (RFC 2132 §9.3).
//!
//! Parse → emit reproduces the bytes of every message whose encoding is
//! canonical: options in one piece each (or split exactly at 255 bytes),
//! no pad options, no option overload, NUL padding after `sname`/`file`
//! and after the end option up to 300 bytes (all the golden vectors).

use core::net::Ipv4Addr;

use super::data::OptionData;
use super::encode::SliceSink;
use super::layout::*;
use super::options::CodeSet;
use super::packet::{BOOTREPLY, DhcpPacket, FLAG_BROADCAST, until_nul};
use super::typed::DhcpOption;
use super::values::MessageType;
use super::{EmitError, ParseError};

/// Minimum length of an emitted message (RFC 1542 §3.4: BOOTP's 300 bytes).
pub const MIN_MESSAGE_LEN: usize = 300;

/// Most options a [`DhcpRepr`] holds (distinct codes after RFC 3396
/// concatenation); more is [`ParseError::TooManyOptions`].
pub const MAX_OPTIONS: usize = 48;

/// The options of a [`DhcpRepr`], in packet order (bounded, no heap).
pub type OptionList<'a> = heapless::Vec<DhcpOption<'a>, MAX_OPTIONS>;

/// The fixed BOOTP fields of a DHCP message (RFC 2131 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpHeader<'a> {
    /// 1 BOOTREQUEST, 2 BOOTREPLY.
    pub op: u8,
    /// Hardware address type (any value is accepted).
    pub htype: u8,
    /// Hardware address length, as sent (0..=16 meaningful; kept as is).
    pub hlen: u8,
    /// Relay hop count.
    pub hops: u8,
    /// Transaction ID.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags; bit 15 is broadcast ([`FLAG_BROADCAST`]).
    pub flags: u16,
    /// Client IP address.
    pub ciaddr: Ipv4Addr,
    /// "Your" (client) IP address.
    pub yiaddr: Ipv4Addr,
    /// Next server IP address.
    pub siaddr: Ipv4Addr,
    /// Relay agent IP address.
    pub giaddr: Ipv4Addr,
    /// The whole 16-byte `chaddr` field (see [`client_hardware_address`](Self::client_hardware_address)).
    pub chaddr: [u8; 16],
    /// Server host name, without NUL padding (at most 64 bytes).
    pub sname: &'a [u8],
    /// Boot file name, without NUL padding (at most 128 bytes).
    pub file: &'a [u8],
}

impl Default for DhcpHeader<'_> {
    fn default() -> Self {
        DhcpHeader {
            op: BOOTREPLY,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid: 0,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [0; 16],
            sname: &[],
            file: &[],
        }
    }
}

impl<'a> DhcpHeader<'a> {
    /// Reads the header fields of a checked packet. `sname`/`file` are
    /// empty when they carry options (option 52).
    pub fn parse<T: AsRef<[u8]>>(p: &'a DhcpPacket<T>) -> Self {
        DhcpHeader {
            op: p.op(),
            htype: p.htype(),
            hlen: p.hlen(),
            hops: p.hops(),
            xid: p.xid(),
            secs: p.secs(),
            flags: p.flags(),
            ciaddr: p.ciaddr(),
            yiaddr: p.yiaddr(),
            siaddr: p.siaddr(),
            giaddr: p.giaddr(),
            chaddr: *p.chaddr_field(),
            sname: p.sname(),
            file: p.file(),
        }
    }

    /// A BOOTREPLY header answering `request`: same `htype`, `hlen`,
    /// `xid`, `flags`, `giaddr` and `chaddr` (RFC 2131 §4.3.1, table 3);
    /// everything else zero/empty.
    pub fn reply_to(request: &DhcpHeader<'_>) -> Self {
        DhcpHeader {
            op: BOOTREPLY,
            htype: request.htype,
            hlen: request.hlen,
            xid: request.xid,
            flags: request.flags,
            giaddr: request.giaddr,
            chaddr: request.chaddr,
            ..DhcpHeader::default()
        }
    }

    /// Whether the broadcast flag is set.
    pub fn broadcast(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }

    /// The client hardware address: `hlen` bytes of `chaddr` (clamped to 16).
    pub fn client_hardware_address(&self) -> &[u8] {
        &self.chaddr[..(self.hlen as usize).min(16)]
    }

    /// Bytes needed to emit this header with `options`.
    pub fn buffer_len(&self, options: &[DhcpOption<'_>]) -> Result<usize, EmitError> {
        if self.sname.len() > SNAME.len() {
            return Err(EmitError::FieldTooLong {
                field: "sname",
                max: SNAME.len(),
            });
        }
        if self.file.len() > FILE.len() {
            return Err(EmitError::FieldTooLong {
                field: "file",
                max: FILE.len(),
            });
        }
        let mut seen = CodeSet::default();
        let mut len = OPTIONS + 1;
        for o in options {
            let wire_len = o.checked_wire_len()?;
            if !seen.insert(o.code()) {
                return Err(EmitError::DuplicateOption(o.code()));
            }
            // RFC 2132 §9.3: a field that option 52 says carries options
            // cannot also carry a name (the receiver would read the name
            // as options).
            if let DhcpOption::OptionOverload(v) = o {
                if (v & 1 != 0 && !self.file.is_empty()) || (v & 2 != 0 && !self.sname.is_empty()) {
                    return Err(EmitError::InvalidValue {
                        code: super::typed::code::OPTION_OVERLOAD,
                    });
                }
            }
            len += wire_len;
        }
        Ok(len.max(MIN_MESSAGE_LEN))
    }

    /// Writes the message (this header + `options` + end + padding) at the
    /// front of `buf`, returning its length. On error `buf` is untouched.
    pub fn emit(&self, options: &[DhcpOption<'_>], buf: &mut [u8]) -> Result<usize, EmitError> {
        let len = self.buffer_len(options)?;
        if buf.len() < len {
            return Err(EmitError::BufferTooSmall { needed: len });
        }
        let buf = &mut buf[..len];
        {
            let mut p = DhcpPacket::new_unchecked(&mut *buf);
            p.set_op(self.op);
            p.set_htype(self.htype);
            p.set_hlen(self.hlen);
            p.set_hops(self.hops);
            p.set_xid(self.xid);
            p.set_secs(self.secs);
            p.set_flags(self.flags);
            p.set_ciaddr(self.ciaddr);
            p.set_yiaddr(self.yiaddr);
            p.set_siaddr(self.siaddr);
            p.set_giaddr(self.giaddr);
            p.set_chaddr_field(&self.chaddr);
            p.set_sname(self.sname);
            p.set_file(self.file);
            p.set_magic_cookie();
        }
        let mut s = SliceSink::new(buf, OPTIONS);
        for o in options {
            o.emit_into(&mut s)?;
        }
        let end = s.pos;
        buf[end] = super::typed::code::END;
        buf[end + 1..].fill(0);
        Ok(len)
    }
}

/// A whole DHCP message, typed: header and options in packet order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpRepr<'a> {
    /// The BOOTP fields.
    pub header: DhcpHeader<'a>,
    /// The options, in packet order (RFC 3396 fragments joined).
    pub options: OptionList<'a>,
}

impl<'a> DhcpRepr<'a> {
    /// Parses a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &'a DhcpPacket<T>) -> Result<Self, ParseError> {
        let mut options = OptionList::new();
        for o in p.options() {
            options.push(o).map_err(|_| ParseError::TooManyOptions)?;
        }
        Ok(DhcpRepr {
            header: DhcpHeader::parse(p),
            options,
        })
    }

    /// Bytes needed by [`emit`](Self::emit).
    pub fn buffer_len(&self) -> Result<usize, EmitError> {
        self.header.buffer_len(&self.options)
    }

    /// Writes the message at the front of `buf`; returns its length. On
    /// error `buf` is untouched.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        self.header.emit(&self.options, buf)
    }

    /// The first option with `code`.
    pub fn option(&self, code: u8) -> Option<&DhcpOption<'a>> {
        self.options.iter().find(|o| o.code() == code)
    }

    /// The message type (option 53), if present.
    pub fn message_type(&self) -> Option<MessageType> {
        self.options.iter().find_map(|o| match o {
            DhcpOption::MessageType(m) => Some(*m),
            _ => None,
        })
    }

    /// The payload of the vendor class identifier (option 60), if present.
    pub fn vendor_class(&self) -> Option<OptionData<'a>> {
        self.options.iter().find_map(|o| match o {
            DhcpOption::VendorClassIdentifier(d) => Some(*d),
            _ => None,
        })
    }
}

/// `b` up to its first NUL (re-exported helper for `sname`/`file` bytes).
pub fn trim_nul(b: &[u8]) -> &[u8] {
    until_nul(b)
}
