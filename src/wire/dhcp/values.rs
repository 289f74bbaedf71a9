//! Value types of the typed DHCP options: message type (RFC 2132 §9.6),
//! fixed-size item lists, client identifier (RFC 2132 §9.14, RFC 4361 §6.1),
//! user class (RFC 3004 §4) and relay agent information (RFC 3046 §2.0).

use core::fmt;
use core::net::Ipv4Addr;

use super::EmitError;
use super::data::OptionData;
use super::encode::{OptionValue, Sink, SliceSink};

/// DHCP message type (option 53, RFC 2132 §9.6; 9 is RFC 3203, 10–13 are
/// RFC 4388). Unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// DHCPDISCOVER (1).
    Discover,
    /// DHCPOFFER (2).
    Offer,
    /// DHCPREQUEST (3).
    Request,
    /// DHCPDECLINE (4).
    Decline,
    /// DHCPACK (5).
    Ack,
    /// DHCPNAK (6).
    Nak,
    /// DHCPRELEASE (7).
    Release,
    /// DHCPINFORM (8).
    Inform,
    /// DHCPFORCERENEW (9, RFC 3203).
    ForceRenew,
    /// DHCPLEASEQUERY (10, RFC 4388).
    LeaseQuery,
    /// DHCPLEASEUNASSIGNED (11, RFC 4388).
    LeaseUnassigned,
    /// DHCPLEASEUNKNOWN (12, RFC 4388).
    LeaseUnknown,
    /// DHCPLEASEACTIVE (13, RFC 4388).
    LeaseActive,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(v: u8) -> Self {
        match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            9 => Self::ForceRenew,
            10 => Self::LeaseQuery,
            11 => Self::LeaseUnassigned,
            12 => Self::LeaseUnknown,
            13 => Self::LeaseActive,
            v => Self::Unknown(v),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(m: MessageType) -> u8 {
        match m {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
            MessageType::ForceRenew => 9,
            MessageType::LeaseQuery => 10,
            MessageType::LeaseUnassigned => 11,
            MessageType::LeaseUnknown => 12,
            MessageType::LeaseActive => 13,
            MessageType::Unknown(v) => v,
        }
    }
}

impl OptionValue<'_> for MessageType {
    #[inline(always)]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        u8::decode(data).map(MessageType::from)
    }
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&[u8::from(*self)]);
    }
}

/// A fixed-size item of a list option (an address, an architecture, ...).
pub trait ListItem: Copy + PartialEq + fmt::Debug {
    /// Encoded size in bytes (at most 4).
    const SIZE: usize;
    /// Decodes from exactly `SIZE` bytes.
    fn read(bytes: &[u8]) -> Self;
    /// Encodes into the first `SIZE` bytes of the result.
    fn write(&self) -> [u8; 4];
}

impl ListItem for Ipv4Addr {
    const SIZE: usize = 4;
    fn read(b: &[u8]) -> Self {
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    fn write(&self) -> [u8; 4] {
        self.octets()
    }
}

impl ListItem for u32 {
    const SIZE: usize = 4;
    fn read(b: &[u8]) -> Self {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    fn write(&self) -> [u8; 4] {
        self.to_be_bytes()
    }
}

impl ListItem for u16 {
    const SIZE: usize = 2;
    fn read(b: &[u8]) -> Self {
        u16::from_be_bytes([b[0], b[1]])
    }
    fn write(&self) -> [u8; 4] {
        let [a, b] = self.to_be_bytes();
        [a, b, 0, 0]
    }
}

/// A list of fixed-size items: either parsed bytes (borrowed from the
/// packet) or a slice of items to send. Equality compares the items.
#[derive(Clone, Copy)]
pub enum List<'a, T: ListItem> {
    /// Encoded items, as received.
    Data(OptionData<'a>),
    /// Items to send.
    Items(&'a [T]),
}

/// A list of IPv4 addresses (options 3, 6, 150, ...).
pub type Ipv4List<'a> = List<'a, Ipv4Addr>;

impl<'a, T: ListItem> List<'a, T> {
    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            List::Data(d) => d.len() / T::SIZE,
            List::Items(i) => i.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The item at `index`.
    pub fn get(&self, index: usize) -> Option<T> {
        match self {
            List::Items(i) => i.get(index).copied(),
            List::Data(d) => {
                let start = index.checked_mul(T::SIZE)?;
                let part = d.slice(start, start.checked_add(T::SIZE)?)?;
                let mut buf = [0u8; 4];
                part.copy_to(&mut buf).ok()?;
                Some(T::read(&buf[..T::SIZE]))
            }
        }
    }

    /// The first item.
    pub fn first(&self) -> Option<T> {
        self.get(0)
    }

    /// The items in order.
    pub fn iter(&self) -> ListIter<'a, T> {
        ListIter {
            list: *self,
            index: 0,
        }
    }
}

/// Iterator over a [`List`].
#[derive(Clone)]
pub struct ListIter<'a, T: ListItem> {
    list: List<'a, T>,
    index: usize,
}

impl<T: ListItem> Iterator for ListIter<'_, T> {
    type Item = T;
    #[inline]
    fn next(&mut self) -> Option<T> {
        let item = match &self.list {
            List::Data(d) => match d.as_slice() {
                Some(s) => {
                    let start = self.index * T::SIZE;
                    s.get(start..start + T::SIZE).map(T::read)
                }
                None => self.list.get(self.index),
            },
            List::Items(i) => i.get(self.index).copied(),
        };
        self.index += 1;
        item
    }
}

impl<T: ListItem> PartialEq for List<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: ListItem> fmt::Debug for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T: ListItem> OptionValue<'a> for List<'a, T> {
    #[inline(always)]
    fn decode(data: OptionData<'a>) -> Option<Self> {
        (data.len() % T::SIZE == 0).then_some(List::Data(data))
    }
    fn encoded_len(&self) -> usize {
        self.len() * T::SIZE
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        match self {
            List::Data(d) => d.encode(out),
            List::Items(items) => {
                for i in *items {
                    out.put(&i.write()[..T::SIZE]);
                }
            }
        }
    }
}

/// Client identifier (option 61).
///
/// RFC 4361 §6.1: type 255 means an IAID (4 bytes) followed by a DHCPv6
/// DUID; any other type is an RFC 2132 §9.14 identifier (type 1–254 a
/// hardware type, 0 an opaque identifier). A type-255 payload shorter than
/// 5 bytes decodes as [`ClientId::Rfc2132`] with type 255, so decoding and
/// encoding stay byte-exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientId<'a> {
    /// RFC 4361 node-specific identifier.
    Duid {
        /// Identity association identifier.
        iaid: u32,
        /// DHCPv6 DUID (RFC 8415 §11).
        duid: OptionData<'a>,
    },
    /// RFC 2132 identifier: a type and the identifier (often a MAC).
    Rfc2132 {
        /// Hardware type (ARP `htype`), or 0.
        id_type: u8,
        /// The identifier.
        id: OptionData<'a>,
    },
}

impl<'a> OptionValue<'a> for ClientId<'a> {
    #[inline(always)]
    fn decode(data: OptionData<'a>) -> Option<Self> {
        let id_type = data.get(0)?;
        if data.len() < 2 {
            return None;
        }
        if id_type == 255 && data.len() >= 5 {
            let iaid = u32::from_be_bytes(data.array::<4>(1)?);
            return Some(ClientId::Duid {
                iaid,
                duid: data.tail(5),
            });
        }
        Some(ClientId::Rfc2132 {
            id_type,
            id: data.tail(1),
        })
    }
    fn encoded_len(&self) -> usize {
        match self {
            ClientId::Duid { duid, .. } => 5 + duid.len(),
            ClientId::Rfc2132 { id, .. } => 1 + id.len(),
        }
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        match self {
            ClientId::Duid { iaid, duid } => {
                out.put(&[255]);
                out.put(&iaid.to_be_bytes());
                duid.encode(out);
            }
            ClientId::Rfc2132 { id_type, id } => {
                out.put(&[*id_type]);
                id.encode(out);
            }
        }
    }
}

/// User class (option 77).
///
/// RFC 3004 §4 defines a list of length-prefixed class names, but several
/// clients (iPXE sends `iPXE`) put a bare string in it. The payload is
/// therefore kept as received; [`UserClass::classes`] reads it as an RFC
/// 3004 list when it is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserClass<'a>(pub OptionData<'a>);

impl<'a> UserClass<'a> {
    /// The payload as received.
    pub fn data(&self) -> OptionData<'a> {
        self.0
    }

    /// Whether the payload is a well-formed RFC 3004 list (every class
    /// non-empty, lengths adding up exactly).
    pub fn is_rfc3004(&self) -> bool {
        let mut at = 0;
        let len = self.0.len();
        while at < len {
            match self.0.get(at) {
                Some(0) | None => return false,
                Some(n) => at += 1 + n as usize,
            }
        }
        at == len && len > 0
    }

    /// The class names of an RFC 3004 list, or `None` if the payload is not
    /// one (then [`data`](Self::data) is the opaque class).
    pub fn classes(&self) -> Option<impl Iterator<Item = OptionData<'a>> + 'a> {
        if !self.is_rfc3004() {
            return None;
        }
        let data = self.0;
        let mut at = 0;
        Some(core::iter::from_fn(move || {
            let n = data.get(at)? as usize;
            let item = data.slice(at + 1, at + 1 + n)?;
            at += 1 + n;
            Some(item)
        }))
    }

    /// Writes `classes` as an RFC 3004 list into `out` and returns the
    /// length (to wrap with [`OptionData::new`]). `out` is left untouched
    /// on error.
    pub fn encode_list(classes: &[&[u8]], out: &mut [u8]) -> Result<usize, EmitError> {
        let mut needed = 0;
        for c in classes {
            if c.is_empty() || c.len() > 255 {
                return Err(EmitError::InvalidValue { code: 77 });
            }
            needed += 1 + c.len();
        }
        if out.len() < needed {
            return Err(EmitError::BufferTooSmall { needed });
        }
        let mut s = SliceSink::new(out, 0);
        for c in classes {
            s.put(&[c.len() as u8]);
            s.put(c);
        }
        Ok(s.pos)
    }
}

impl<'a> OptionValue<'a> for UserClass<'a> {
    #[inline(always)]
    fn decode(data: OptionData<'a>) -> Option<Self> {
        (!data.is_empty()).then_some(UserClass(data))
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        self.0.encode(out)
    }
}

/// A code/length/value sub-option (RFC 3046 §2.0, PXE option 43).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubOption<'a> {
    /// Sub-option code.
    pub code: u8,
    /// Sub-option payload (at most 255 bytes).
    pub data: OptionData<'a>,
}

/// Iterator over code/length/value sub-options. With `pad_end`, code 0 is a
/// one-byte pad and 255 ends the list (PXE option 43); without, every code
/// is a sub-option (RFC 3046). Stops at a sub-option that runs past the
/// end; [`SubOptions::malformed`] then reports it.
#[derive(Clone)]
pub struct SubOptions<'a> {
    data: OptionData<'a>,
    /// `data` as one slice, when it is one fragment (the common case):
    /// then the walk reads the slice directly.
    slice: Option<&'a [u8]>,
    at: usize,
    pad_end: bool,
    malformed: bool,
}

impl<'a> SubOptions<'a> {
    #[inline]
    pub(crate) fn new(data: OptionData<'a>, pad_end: bool) -> Self {
        SubOptions {
            data,
            slice: data.as_slice(),
            at: 0,
            pad_end,
            malformed: false,
        }
    }

    /// Pad (0) and end (255) where they count: `Some(true)` steps over a
    /// pad, `None` ends the walk, `Some(false)` is a sub-option's code.
    #[inline]
    fn skip(&mut self, code: u8) -> Option<bool> {
        match code {
            0 if self.pad_end => {
                self.at += 1;
                Some(true)
            }
            255 if self.pad_end => {
                self.at = usize::MAX;
                None
            }
            _ => Some(false),
        }
    }

    /// One step over a contiguous payload.
    #[inline]
    fn next_in(&mut self, s: &'a [u8]) -> Option<SubOption<'a>> {
        loop {
            let code = *s.get(self.at)?;
            if self.skip(code)? {
                continue;
            }
            let start = self.at + 2;
            let Some(data) = s
                .get(self.at + 1)
                .and_then(|&len| s.get(start..start + len as usize))
            else {
                self.malformed = true;
                self.at = usize::MAX;
                return None;
            };
            self.at = start + data.len();
            return Some(SubOption {
                code,
                data: OptionData::new(data),
            });
        }
    }

    /// Whether the walk stopped at a sub-option running past the end.
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    /// Walks `data` to the end and tells whether it is well-formed.
    pub(crate) fn well_formed(data: OptionData<'a>, pad_end: bool) -> bool {
        let mut it = SubOptions::new(data, pad_end);
        for _ in it.by_ref() {}
        !it.malformed
    }
}

impl<'a> Iterator for SubOptions<'a> {
    type Item = SubOption<'a>;
    #[inline]
    fn next(&mut self) -> Option<SubOption<'a>> {
        if let Some(s) = self.slice {
            return self.next_in(s);
        }
        loop {
            let code = self.data.get(self.at)?;
            if self.skip(code)? {
                continue;
            }
            let Some(len) = self.data.get(self.at + 1) else {
                self.malformed = true;
                self.at = usize::MAX;
                return None;
            };
            let start = self.at + 2;
            let Some(data) = self.data.slice(start, start + len as usize) else {
                self.malformed = true;
                self.at = usize::MAX;
                return None;
            };
            self.at = start + len as usize;
            return Some(SubOption { code, data });
        }
    }
}

/// Relay agent information (option 82, RFC 3046): sub-options such as
/// circuit ID (1) and remote ID (2), kept in order, unknown ones included.
#[derive(Clone, Copy)]
pub enum RelayAgentInfo<'a> {
    /// As received (well-formed: checked when decoded).
    Data(OptionData<'a>),
    /// Sub-options to send.
    Items(&'a [SubOption<'a>]),
}

impl<'a> RelayAgentInfo<'a> {
    /// Agent circuit ID sub-option code (RFC 3046 §3.1).
    pub const CIRCUIT_ID: u8 = 1;
    /// Agent remote ID sub-option code (RFC 3046 §3.2).
    pub const REMOTE_ID: u8 = 2;

    /// The sub-options in order.
    pub fn sub_options(&self) -> impl Iterator<Item = SubOption<'a>> + 'a {
        let (data, items) = match *self {
            RelayAgentInfo::Data(d) => (Some(SubOptions::new(d, false)), None),
            RelayAgentInfo::Items(i) => (None, Some(i.iter().copied())),
        };
        data.into_iter()
            .flatten()
            .chain(items.into_iter().flatten())
    }

    /// The payload of the first sub-option `code`.
    pub fn get(&self, code: u8) -> Option<OptionData<'a>> {
        self.sub_options().find(|s| s.code == code).map(|s| s.data)
    }
}

impl PartialEq for RelayAgentInfo<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.sub_options().eq(other.sub_options())
    }
}

impl fmt::Debug for RelayAgentInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.sub_options()).finish()
    }
}

impl<'a> OptionValue<'a> for RelayAgentInfo<'a> {
    #[inline(always)]
    fn decode(data: OptionData<'a>) -> Option<Self> {
        SubOptions::well_formed(data, false).then_some(RelayAgentInfo::Data(data))
    }
    fn encoded_len(&self) -> usize {
        match self {
            RelayAgentInfo::Data(d) => d.len(),
            RelayAgentInfo::Items(i) => i.iter().map(|s| 2 + s.data.len()).sum(),
        }
    }
    fn check(&self, code: u8) -> Result<(), EmitError> {
        match self {
            RelayAgentInfo::Items(items) if items.iter().any(|s| s.data.len() > 255) => {
                Err(EmitError::InvalidValue { code })
            }
            _ => Ok(()),
        }
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        match self {
            RelayAgentInfo::Data(d) => d.encode(out),
            RelayAgentInfo::Items(items) => {
                for s in *items {
                    out.put(&[s.code, s.data.len().min(255) as u8]);
                    s.data.encode(out);
                }
            }
        }
    }
}

impl<T: ListItem> Eq for List<'_, T> {}
impl Eq for RelayAgentInfo<'_> {}
