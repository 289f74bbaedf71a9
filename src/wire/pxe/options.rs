//! PXE 2.1 vendor options: the sub-options encapsulated in DHCP option 43
//! when the vendor class is `PXEClient` (PXE 2.1 §2.4, table 2-1).
//!
//! ```text
//! option 43: | code | len | data... | code | len | data... | ... | 255 |
//! ```
//! Code 0 is a one-byte pad, 255 ends the list (the builder always writes
//! it). Unknown sub-options are kept ([`PxeOption::Unknown`]); a known one
//! with the wrong shape is [`PxeOption::Malformed`] (kept as is).
//!
//! # Byte order of the MTFTP ports (sub-options 2 and 3)
//! Everything in PXE is big-endian except these two: Intel's reference
//! implementation writes the UDP ports in host (little-endian x86) order,
//! and Wireshark decodes them that way. [`MtftpPort`] holds the port
//! number and reads/writes it **little-endian**: port 1759 is sent as
//! `df 06`.
//!
//! # The transaction server (sub-options 128 and 129, vendor range)
//! PXE 2.1 table 2-1 leaves codes 128–254 to the vendor (the Intel LCM
//! tags at 179–194 are the only ones known in use; see
//! `../shared/notes/pxe-and-zenworks-facts.md` §2.2). This project uses
//! two of them to name the transaction server
//! (docs/transaction-protocol.md, "How the preboot client finds the
//! transaction server"):
//!
//! ```text
//! 80 06 c0 a8 4d 01 0f ac    128 TransactionServer: 192.168.77.1, UDP 4012 (big-endian)
//! 81 20 <32 bytes>           129 TransactionServerKey: the server's X25519 public key
//! ```

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::wire::dhcp::encode::{OptionValue, Sink, SliceSink};
use crate::wire::dhcp::{EmitError, Ipv4List, List, OptionData, SubOptions};
use crate::wire::option_table::option_table;

/// A UDP port carried little-endian (PXE sub-options 2 and 3; see the
/// module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MtftpPort(pub u16);

impl OptionValue<'_> for MtftpPort {
    #[inline]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 2 {
            return None;
        }
        data.array::<2>(0).map(|b| MtftpPort(u16::from_le_bytes(b)))
    }
    fn encoded_len(&self) -> usize {
        2
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&self.0.to_le_bytes());
    }
}

/// An IPv4 address and a UDP port, 6 bytes: `| address (4) | port (2, BE) |`
/// (sub-option 128, [`PxeOption::TransactionServer`]). Unlike the MTFTP
/// ports, this vendor sub-option is all network byte order.
impl OptionValue<'_> for SocketAddrV4 {
    #[inline]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 6 {
            return None;
        }
        let b = data.array::<6>(0)?;
        Some(SocketAddrV4::new(
            Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            u16::from_be_bytes([b[4], b[5]]),
        ))
    }
    fn encoded_len(&self) -> usize {
        6
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&self.ip().octets());
        out.put(&self.port().to_be_bytes());
    }
}

/// PXE_DISCOVERY_CONTROL bits (sub-option 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DiscoveryControl(pub u8);

impl DiscoveryControl {
    /// Bit 0: do not use broadcast discovery.
    pub const DISABLE_BROADCAST: u8 = 1;
    /// Bit 1: do not use multicast discovery.
    pub const DISABLE_MULTICAST: u8 = 2;
    /// Bit 2: accept only servers listed in PXE_BOOT_SERVERS.
    pub const ONLY_LISTED_SERVERS: u8 = 4;
    /// Bit 3: if a boot file name is in this offer, download it at once
    /// (no prompt, no menu, no discovery).
    pub const DIRECT_BOOT: u8 = 8;

    /// Whether every bit of `bits` is set.
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
}

impl OptionValue<'_> for DiscoveryControl {
    #[inline]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        u8::decode(data).map(DiscoveryControl)
    }
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&[self.0]);
    }
}

/// PXE_MENU_PROMPT timeout (sub-option 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PromptTimeout {
    /// 0: do not wait; the first menu item is chosen at once.
    Immediate,
    /// 1..=254 seconds (a key press shows the menu).
    Seconds(u8),
    /// 255: show the prompt/menu and wait for the user.
    Forever,
}

impl From<u8> for PromptTimeout {
    fn from(v: u8) -> Self {
        match v {
            0 => Self::Immediate,
            255 => Self::Forever,
            s => Self::Seconds(s),
        }
    }
}

impl From<PromptTimeout> for u8 {
    fn from(t: PromptTimeout) -> u8 {
        match t {
            PromptTimeout::Immediate => 0,
            PromptTimeout::Forever => 255,
            PromptTimeout::Seconds(s) => s,
        }
    }
}

/// PXE_MENU_PROMPT (sub-option 10): timeout and prompt text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MenuPrompt<'a> {
    /// How long to wait.
    pub timeout: PromptTimeout,
    /// Prompt text.
    pub prompt: OptionData<'a>,
}

impl<'a> OptionValue<'a> for MenuPrompt<'a> {
    #[inline]
    fn decode(data: OptionData<'a>) -> Option<Self> {
        Some(MenuPrompt {
            timeout: PromptTimeout::from(data.get(0)?),
            prompt: data.tail(1),
        })
    }
    fn encoded_len(&self) -> usize {
        1 + self.prompt.len()
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&[u8::from(self.timeout)]);
        self.prompt.encode(out);
    }
}

/// PXE_MCAST_ADDRS_ALLOC (sub-option 11): an 8-byte multicast address
/// allocation (base address and two 16-bit counts, named as in the
/// reference headers). PXE clients do not use it; it is carried for
/// completeness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct McastAddrsAlloc {
    /// Base multicast address.
    pub base: Ipv4Addr,
    /// First count (`t-num`).
    pub t_num: u16,
    /// Second count (`m-num`).
    pub m_num: u16,
}

impl OptionValue<'_> for McastAddrsAlloc {
    #[inline]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 8 {
            return None;
        }
        let b = data.array::<8>(0)?;
        Some(McastAddrsAlloc {
            base: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            t_num: u16::from_be_bytes([b[4], b[5]]),
            m_num: u16::from_be_bytes([b[6], b[7]]),
        })
    }
    fn encoded_len(&self) -> usize {
        8
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&self.base.octets());
        out.put(&self.t_num.to_be_bytes());
        out.put(&self.m_num.to_be_bytes());
    }
}

/// PXE_BOOT_ITEM (sub-option 71): boot server type and layer.
///
/// ```text
/// | type (2, BE) | C | layer (15 bits) |   C = credentials requested
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootItem {
    /// Boot server type (0: PXE bootstrap server; 0x8000.. vendor types).
    pub item_type: u16,
    /// Layer (0..=0x7FFF).
    pub layer: u16,
    /// Bit 15 of the layer field: credentials requested.
    pub credentials: bool,
}

impl OptionValue<'_> for BootItem {
    #[inline]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 4 {
            return None;
        }
        let b = data.array::<4>(0)?;
        let layer = u16::from_be_bytes([b[2], b[3]]);
        Some(BootItem {
            item_type: u16::from_be_bytes([b[0], b[1]]),
            layer: layer & 0x7FFF,
            credentials: layer & 0x8000 != 0,
        })
    }
    fn encoded_len(&self) -> usize {
        4
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&self.item_type.to_be_bytes());
        let layer = (self.layer & 0x7FFF) | if self.credentials { 0x8000 } else { 0 };
        out.put(&layer.to_be_bytes());
    }
    fn check(&self, code: u8) -> Result<(), EmitError> {
        if self.layer > 0x7FFF {
            return Err(EmitError::InvalidValue { code });
        }
        Ok(())
    }
}

/// An entry of a variable-length entry list (boot servers, boot menu).
pub trait Entry<'a>: Copy + PartialEq + core::fmt::Debug {
    /// Reads one entry at `at`; returns it and the offset after it.
    fn read(data: &OptionData<'a>, at: usize) -> Option<(Self, usize)>;
    /// Encoded length.
    fn encoded_len(&self) -> usize;
    /// Whether it can be encoded.
    fn valid(&self) -> bool;
    /// Encodes into a sink (crate-internal).
    #[doc(hidden)]
    fn put_into(&self, out: &mut dyn FnMut(&[u8]));
}

/// A list of entries: parsed bytes, or a slice of entries to send.
/// Equality compares the entries.
#[derive(Clone, Copy)]
pub enum Entries<'a, E: Entry<'a>> {
    /// As received (checked well-formed when decoded).
    Data(OptionData<'a>),
    /// Entries to send.
    Items(&'a [E]),
}

impl<'a, E: Entry<'a>> Entries<'a, E> {
    /// The entries in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = E> + 'a {
        let (data, items) = match *self {
            Entries::Data(d) => (Some(d), None),
            Entries::Items(i) => (None, Some(i.iter().copied())),
        };
        let mut at = 0;
        let parsed = core::iter::from_fn(move || {
            let d = data?;
            let (e, next) = E::read(&d, at)?;
            at = next;
            Some(e)
        });
        parsed.chain(items.into_iter().flatten())
    }
}

impl<'a, E: Entry<'a>> PartialEq for Entries<'a, E> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<'a, E: Entry<'a>> core::fmt::Debug for Entries<'a, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, E: Entry<'a>> OptionValue<'a> for Entries<'a, E> {
    #[inline]
    fn decode(data: OptionData<'a>) -> Option<Self> {
        let mut at = 0;
        while at < data.len() {
            let (_, next) = E::read(&data, at)?;
            at = next;
        }
        Some(Entries::Data(data))
    }
    fn encoded_len(&self) -> usize {
        match self {
            Entries::Data(d) => d.len(),
            Entries::Items(i) => i.iter().map(|e| e.encoded_len()).sum(),
        }
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        match self {
            Entries::Data(d) => d.encode(out),
            Entries::Items(items) => {
                for e in *items {
                    e.put_into(&mut |b| out.put(b));
                }
            }
        }
    }
    fn check(&self, code: u8) -> Result<(), EmitError> {
        match self {
            Entries::Items(i) if !i.iter().all(|e| e.valid()) => {
                Err(EmitError::InvalidValue { code })
            }
            _ => Ok(()),
        }
    }
}

/// One PXE_BOOT_SERVERS entry: a boot server type and its addresses.
///
/// ```text
/// | type (2, BE) | count (1) | address (4) × count |
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BootServer<'a> {
    /// Boot server type.
    pub server_type: u16,
    /// Its IP addresses (at most 255).
    pub addrs: Ipv4List<'a>,
}

impl<'a> Entry<'a> for BootServer<'a> {
    #[inline]
    fn read(data: &OptionData<'a>, at: usize) -> Option<(Self, usize)> {
        let t = data.array::<2>(at)?;
        let n = data.get(at + 2)? as usize;
        let start = at + 3;
        let addrs = data.slice(start, start + 4 * n)?;
        Some((
            BootServer {
                server_type: u16::from_be_bytes(t),
                addrs: List::Data(addrs),
            },
            start + 4 * n,
        ))
    }
    fn encoded_len(&self) -> usize {
        3 + 4 * self.addrs.len()
    }
    fn valid(&self) -> bool {
        self.addrs.len() <= 255
    }
    fn put_into(&self, out: &mut dyn FnMut(&[u8])) {
        out(&self.server_type.to_be_bytes());
        out(&[self.addrs.len() as u8]);
        for a in self.addrs.iter() {
            out(&a.octets());
        }
    }
}

/// One PXE_BOOT_MENU entry: a boot server type and a description.
///
/// ```text
/// | type (2, BE) | desc len (1) | description |
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootMenuItem<'a> {
    /// Boot server type this item selects.
    pub server_type: u16,
    /// Text shown in the menu (at most 255 bytes).
    pub description: OptionData<'a>,
}

impl<'a> Entry<'a> for BootMenuItem<'a> {
    #[inline]
    fn read(data: &OptionData<'a>, at: usize) -> Option<(Self, usize)> {
        let t = data.array::<2>(at)?;
        let n = data.get(at + 2)? as usize;
        let start = at + 3;
        let description = data.slice(start, start + n)?;
        Some((
            BootMenuItem {
                server_type: u16::from_be_bytes(t),
                description,
            },
            start + n,
        ))
    }
    fn encoded_len(&self) -> usize {
        3 + self.description.len()
    }
    fn valid(&self) -> bool {
        self.description.len() <= 255
    }
    fn put_into(&self, out: &mut dyn FnMut(&[u8])) {
        out(&self.server_type.to_be_bytes());
        out(&[self.description.len() as u8]);
        for f in self.description.fragments() {
            out(f);
        }
    }
}

/// PXE_BOOT_SERVERS (sub-option 8).
pub type BootServers<'a> = Entries<'a, BootServer<'a>>;
/// PXE_BOOT_MENU (sub-option 9).
pub type BootMenu<'a> = Entries<'a, BootMenuItem<'a>>;
/// PXE_CREDENTIAL_TYPES (sub-option 12): 4-byte credential types.
pub type CredentialTypes<'a> = List<'a, u32>;

option_table! {
    /// PXE sub-option codes (PXE 2.1 table 2-1).
    mod code {
        pad: "Pad (0).",
        end: "PXE_END (255).",
    }
    /// A typed PXE sub-option of option 43.
    enum PxeOption { what: "sub-option" }
    #[inline]
    fn decode;
    /// PXE_MTFTP_IP (1): multicast group of MTFTP transfers.
    1 MTFTP_IP => MtftpIp(Ipv4Addr),
    /// PXE_MTFTP_CPORT (2): client UDP port of MTFTP (little-endian!).
    2 MTFTP_CPORT => MtftpClientPort(MtftpPort),
    /// PXE_MTFTP_SPORT (3): server UDP port of MTFTP (little-endian!).
    3 MTFTP_SPORT => MtftpServerPort(MtftpPort),
    /// PXE_MTFTP_TMOUT (4): seconds to listen before opening a transfer.
    4 MTFTP_TMOUT => MtftpTimeout(u8),
    /// PXE_MTFTP_DELAY (5): seconds to wait before reopening.
    5 MTFTP_DELAY => MtftpDelay(u8),
    /// PXE_DISCOVERY_CONTROL (6).
    6 DISCOVERY_CONTROL => DiscoveryControl(DiscoveryControl),
    /// PXE_DISCOVERY_MCAST_ADDR (7): multicast address of boot server
    /// discovery.
    7 DISCOVERY_MCAST_ADDR => DiscoveryMcastAddr(Ipv4Addr),
    /// PXE_BOOT_SERVERS (8).
    8 BOOT_SERVERS => BootServers(BootServers<'a>),
    /// PXE_BOOT_MENU (9).
    9 BOOT_MENU => BootMenu(BootMenu<'a>),
    /// PXE_MENU_PROMPT (10).
    10 MENU_PROMPT => MenuPrompt(MenuPrompt<'a>),
    /// PXE_MCAST_ADDRS_ALLOC (11).
    11 MCAST_ADDRS_ALLOC => McastAddrsAlloc(McastAddrsAlloc),
    /// PXE_CREDENTIAL_TYPES (12).
    12 CREDENTIAL_TYPES => CredentialTypes(CredentialTypes<'a>),
    /// PXE_BOOT_ITEM (71).
    71 BOOT_ITEM => BootItem(BootItem),
    /// TransactionServer (128, vendor range; this project's): the
    /// transaction server's IPv4 address and UDP port (6 bytes, port
    /// big-endian; docs/transaction-protocol.md).
    128 TRANSACTION_SERVER => TransactionServer(SocketAddrV4),
    /// TransactionServerKey (129, vendor range; this project's): the
    /// transaction server's static X25519 public key (32 bytes;
    /// docs/transaction-protocol.md §3.1). DHCP is unauthenticated: a key
    /// learnt here is trust on first use at best, and a key the preboot
    /// client pins wins (docs/security.md).
    129 TRANSACTION_SERVER_KEY => TransactionServerKey([u8; 32]),
}

impl PxeOption<'_> {
    /// Checks that the sub-option can be emitted: payload at most 255
    /// bytes (a sub-option is never split), code not 0/255, typed codes not
    /// given as `Unknown`.
    pub fn check(&self) -> Result<(), EmitError> {
        if self.payload_len() > 255 {
            return Err(EmitError::InvalidValue { code: self.code() });
        }
        self.check_value()
    }
}

impl Eq for PxeOption<'_> {}

/// Iterator over the typed PXE sub-options of an option 43 payload (stops
/// at PXE_END; [`PxeOptions::malformed`] reports a sub-option running
/// past the end, which is dropped).
#[derive(Clone)]
pub struct PxeOptions<'a> {
    inner: SubOptions<'a>,
}

impl<'a> PxeOptions<'a> {
    /// Walks the sub-options of `data` (the option 43 payload).
    #[inline]
    pub fn new(data: OptionData<'a>) -> Self {
        PxeOptions {
            inner: SubOptions::new(data, true),
        }
    }

    /// Whether the walk stopped at a truncated sub-option.
    pub fn malformed(&self) -> bool {
        self.inner.malformed()
    }

    /// Bytes needed to emit `options` (sub-options + PXE_END).
    pub fn buffer_len(options: &[PxeOption<'_>]) -> Result<usize, EmitError> {
        let mut len = 1;
        for o in options {
            o.check()?;
            len += 2 + o.payload_len();
        }
        Ok(len)
    }

    /// Writes `options` and PXE_END at the front of `buf` (the payload of
    /// option 43; wrap it with [`OptionData::new`]); returns the length.
    /// `buf` is untouched on error.
    pub fn emit(options: &[PxeOption<'_>], buf: &mut [u8]) -> Result<usize, EmitError> {
        let needed = Self::buffer_len(options)?;
        if buf.len() < needed {
            return Err(EmitError::BufferTooSmall { needed });
        }
        let mut s = SliceSink::new(buf, 0);
        for o in options {
            s.put(&[o.code(), o.payload_len() as u8]);
            o.write_payload(&mut s);
        }
        s.put(&[code::END]);
        if s.overflow || s.pos != needed {
            return Err(EmitError::Internal);
        }
        Ok(needed)
    }
}

impl<'a> Iterator for PxeOptions<'a> {
    type Item = PxeOption<'a>;
    #[inline]
    fn next(&mut self) -> Option<PxeOption<'a>> {
        self.inner.next().map(|s| PxeOption::decode(s.code, s.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> heapless::Vec<PxeOption<'_>, 8> {
        PxeOptions::new(OptionData::new(bytes)).collect()
    }

    /// Sub-option 128 (vendor range, PXE 2.1 table 2-1): address then port,
    /// both network order; the builder writes the bytes the view reads.
    #[test]
    fn transaction_server_round_trips() {
        let addr = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 1), 4012);
        let opts = [PxeOption::TransactionServer(addr)];
        let mut buf = [0u8; 16];
        let n = PxeOptions::emit(&opts, &mut buf).unwrap();
        assert_eq!(&buf[..n], &[128, 6, 192, 168, 77, 1, 0x0f, 0xac, 255]);
        assert_eq!(parse(&buf[..n]).as_slice(), &opts);
        assert_eq!(opts[0].code(), code::TRANSACTION_SERVER);
    }

    /// Sub-option 129: the 32-byte X25519 public key as is.
    #[test]
    fn transaction_server_key_round_trips() {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8 ^ 0xa5;
        }
        let opts = [PxeOption::TransactionServerKey(key)];
        let mut buf = [0u8; 40];
        let n = PxeOptions::emit(&opts, &mut buf).unwrap();
        assert_eq!(n, 2 + 32 + 1);
        assert_eq!(&buf[..2], &[129, 32]);
        assert_eq!(&buf[2..34], &key);
        assert_eq!(buf[34], 255);
        assert_eq!(parse(&buf[..n]).as_slice(), &opts);
        assert_eq!(opts[0].code(), code::TRANSACTION_SERVER_KEY);
    }

    /// Both after the standard sub-options of a proxy answer (the order the
    /// server writes them), and read back in order.
    #[test]
    fn transaction_sub_options_follow_the_standard_ones() {
        let key = [7u8; 32];
        let addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40_000);
        let opts = [
            PxeOption::DiscoveryControl(DiscoveryControl(DiscoveryControl::DIRECT_BOOT)),
            PxeOption::BootItem(BootItem {
                item_type: 0x8000,
                layer: 0,
                credentials: false,
            }),
            PxeOption::TransactionServer(addr),
            PxeOption::TransactionServerKey(key),
        ];
        let len = PxeOptions::buffer_len(&opts).unwrap();
        assert_eq!(len, 3 + 6 + 8 + 34 + 1);
        let mut buf = [0u8; 64];
        assert_eq!(PxeOptions::emit(&opts, &mut buf), Ok(len));
        assert_eq!(&buf[9..17], &[128, 6, 10, 0, 0, 1, 0x9c, 0x40]);
        assert_eq!(parse(&buf[..len]).as_slice(), &opts);
    }

    /// A wrong length is `Malformed` (kept as received, re-emitted as is),
    /// never a wrong address or a short key.
    #[test]
    fn wrong_lengths_are_malformed() {
        for bytes in [
            &[128u8, 5, 1, 2, 3, 4, 5, 255][..],
            &[128, 7, 1, 2, 3, 4, 5, 6, 7, 255],
            &[128, 0, 255],
        ] {
            let got = parse(bytes);
            assert!(
                matches!(got[..], [PxeOption::Malformed { code: 128, .. }]),
                "{bytes:?}: {got:?}"
            );
        }
        let mut long = [0u8; 36];
        long[..2].copy_from_slice(&[129, 33]);
        long[35] = 255;
        let mut short = [0u8; 34];
        short[..2].copy_from_slice(&[129, 31]);
        short[33] = 255;
        for bytes in [&long[..], &short[..]] {
            let got = parse(bytes);
            assert!(
                matches!(got[..], [PxeOption::Malformed { code: 129, .. }]),
                "{got:?}"
            );
            // Kept byte for byte.
            let mut out = [0u8; 40];
            let n = PxeOptions::emit(&got, &mut out).unwrap();
            assert_eq!(&out[..n], bytes);
        }
    }

    /// The codes are typed now: an `Unknown` 128 or 129 is refused by the
    /// builder (it would shadow the typed variant).
    #[test]
    fn typed_codes_cannot_be_sent_as_unknown() {
        for code in [128u8, 129] {
            assert!(PxeOption::is_known(code));
            let o = PxeOption::Unknown {
                code,
                data: OptionData::new(&[0; 6]),
            };
            assert_eq!(o.check(), Err(EmitError::InvalidCode(code)));
        }
        assert!(!PxeOption::is_known(130));
    }

    /// A sub-option 129 running past the end of option 43 is dropped and
    /// reported, not read short.
    #[test]
    fn truncated_key_is_reported() {
        let bytes = [129u8, 32, 1, 2, 3];
        let mut it = PxeOptions::new(OptionData::new(&bytes));
        assert_eq!(it.by_ref().count(), 0);
        assert!(it.malformed());
    }
}
