//! DHCP/BOOTP messages (RFC 2131, RFC 2132, RFC 3396).
//!
//! # Layout (RFC 2131 §2, figure 1)
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------+---------------+---------------+---------------+
//! |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |
//! +---------------+---------------+---------------+---------------+
//! |                            xid (4)                            |
//! +-------------------------------+-------------------------------+
//! |           secs (2)            |           flags (2)           |  B = bit 15 of flags
//! +-------------------------------+-------------------------------+
//! |                          ciaddr  (4)                          |
//! |                          yiaddr  (4)                          |
//! |                          siaddr  (4)                          |
//! |                          giaddr  (4)                          |
//! +---------------------------------------------------------------+
//! |                          chaddr  (16)   hlen bytes used       |  offset 28
//! |                          sname   (64)                         |  offset 44
//! |                          file    (128)                        |  offset 108
//! |                 magic cookie 99.130.83.99 (4)                 |  offset 236
//! |                          options (variable)                   |  offset 240
//! +---------------------------------------------------------------+
//! ```
//! Options are `code, len, data[len]`; 0 is a one-byte pad, 255 ends them.
//! RFC 3396: an option longer than 255 bytes is sent as several options of
//! the same code, concatenated by the receiver. RFC 2132 §9.3: option 52
//! lets `file` and `sname` carry more options.
//!
//! # Pieces
//! - [`DhcpPacket`]: checked zero-copy view (header accessors, setters).
//! - [`RawOptions`] / [`Options`]: the option iterator (order and unknown
//!   options kept, long options joined without copying into an
//!   [`OptionData`], overload followed; leniency documented there).
//! - [`DhcpOption`]: typed options from one table; [`code`] has the codes.
//! - [`DhcpHeader`] / [`DhcpRepr`]: typed message with `parse`,
//!   `buffer_len`, `emit` (the builder into `&mut [u8]`).
//!
//! Nothing here allocates or panics on any input.
//!
//! ```
//! use preboot::wire::dhcp::{DhcpHeader, DhcpOption, DhcpPacket, MessageType, OptionData};
//! let hdr = DhcpHeader { op: 1, xid: 0x1234, ..DhcpHeader::default() };
//! let opts = [
//!     DhcpOption::MessageType(MessageType::Discover),
//!     DhcpOption::VendorClassIdentifier(OptionData::new(b"PXEClient")),
//! ];
//! let mut buf = [0u8; 576];
//! let n = hdr.emit(&opts, &mut buf).unwrap();
//! assert_eq!(n, 300);
//! let p = DhcpPacket::new_checked(&buf[..n]).unwrap();
//! assert_eq!(p.xid(), 0x1234);
//! assert_eq!(p.message_type(), Some(MessageType::Discover));
//! assert!(p.options().eq(opts));
//! ```

mod data;
pub(crate) mod encode;
mod layout;
mod options;
mod packet;
mod repr;
mod typed;
mod values;

pub use data::{Fragments, OptionData};
pub use layout::MAGIC_COOKIE;
pub use options::{Options, RawOption, RawOptions};
pub use packet::{BOOTREPLY, BOOTREQUEST, DhcpPacket, FLAG_BROADCAST, HEADER_LEN};
pub use repr::{DhcpHeader, DhcpRepr, MAX_OPTIONS, MIN_MESSAGE_LEN, OptionList, trim_nul};
pub use typed::{ClientArchList, DhcpOption, code};
pub use values::{
    ClientId, Ipv4List, List, ListItem, ListIter, MessageType, RelayAgentInfo, SubOption,
    SubOptions, UserClass,
};

/// Why bytes could not be read as a DHCP message (or PXE structure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The datagram is shorter than the fixed header.
    #[error("truncated: {len} bytes, need at least {needed}")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes required.
        needed: usize,
    },
    /// The magic cookie is not 99.130.83.99.
    #[error("bad DHCP magic cookie")]
    BadMagicCookie,
    /// A known option's payload does not fit its type.
    #[error("malformed option {code}")]
    BadOption {
        /// Option code.
        code: u8,
    },
    /// More distinct options than a [`DhcpRepr`] can hold.
    #[error("more than {} options", MAX_OPTIONS)]
    TooManyOptions,
    /// A vendor class string is not in the PXE/HTTP client form.
    #[error("not a PXEClient/HTTPClient vendor class")]
    BadVendorClass,
}

/// Why a message could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The buffer is too small; nothing was written.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// `sname` or `file` is longer than its field.
    #[error("{field} longer than {max} bytes")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Field size.
        max: usize,
    },
    /// Code 0, 255, or a typed code given as `Unknown`.
    #[error("option code {0} cannot be sent this way")]
    InvalidCode(u8),
    /// The same option code twice (RFC 3396 would join them).
    #[error("option {0} given twice")]
    DuplicateOption(u8),
    /// A value that cannot be encoded (e.g. a sub-option over 255 bytes).
    #[error("option {code}: value cannot be encoded")]
    InvalidValue {
        /// Option (or sub-option) code.
        code: u8,
    },
    /// An encoder wrote a different length than it announced (a bug).
    #[error("internal encoder length mismatch")]
    Internal,
}
