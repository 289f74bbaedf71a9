//! The checked view [`DhcpPacket`] over a received (or to-be-sent) datagram.

use core::net::Ipv4Addr;

use super::ParseError;
use super::data::OptionData;
use super::layout::*;
use super::options::{Options, RawOptions, Scan};
use super::typed::{ClientArchList, DhcpOption, code};
use super::values::{ClientId, MessageType, UserClass};
use crate::wire::pxe::{ClientArch, MachineId, Ndi, PxeOptions, VendorClass};

/// The broadcast bit of `flags` (RFC 2131 §2, figure 2).
pub const FLAG_BROADCAST: u16 = 0x8000;

/// BOOTP `op`: a request from a client (RFC 951).
pub const BOOTREQUEST: u8 = 1;
/// BOOTP `op`: a reply from a server (RFC 951).
pub const BOOTREPLY: u8 = 2;

/// Length of the fixed header including the magic cookie.
pub const HEADER_LEN: usize = OPTIONS;

/// A DHCP/BOOTP message: a view over bytes.
///
/// [`new_checked`](Self::new_checked) verifies once that the buffer holds
/// the 236-byte BOOTP header and the DHCP magic cookie; after that no
/// accessor can fail or panic. Any `htype` is accepted (Ethernet,
/// InfiniBand (32, where `hlen` is 0 and `chaddr` is empty), ...).
///
/// `hlen` above 16 is not an error: [`hlen`](Self::hlen) reports it as
/// sent and [`chaddr`](Self::chaddr) is clamped to the 16 bytes of the
/// field.
///
/// [`new_checked`](Self::new_checked) also scans the option areas once
/// (option 52, repeated codes); [`options`](Self::options),
/// [`file`](Self::file), [`sname`](Self::sname) and the other option
/// accessors reuse that scan instead of walking the options again.
/// Equality compares the bytes.
#[derive(Debug, Clone, Copy)]
pub struct DhcpPacket<T: AsRef<[u8]>> {
    buffer: T,
    /// The option scan of `buffer`, once computed (by `new_checked`);
    /// cleared by the setters that change an option area.
    scan: Option<Scan>,
}

impl<T: AsRef<[u8]>> PartialEq for DhcpPacket<T> {
    fn eq(&self, other: &Self) -> bool {
        self.buffer.as_ref() == other.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]>> Eq for DhcpPacket<T> {}

impl<T: AsRef<[u8]>> DhcpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic until
    /// [`check_len`](Self::check_len) succeeds.
    pub const fn new_unchecked(buffer: T) -> Self {
        DhcpPacket { buffer, scan: None }
    }

    /// Wraps a received datagram: checks the length and the magic cookie,
    /// and scans the option areas once (see the type docs).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let mut p = Self::new_unchecked(buffer);
        p.check_len()?;
        // Compared as one word (a 4-byte slice comparison is a memcmp call).
        if p.magic_cookie() != MAGIC_COOKIE {
            return Err(ParseError::BadMagicCookie);
        }
        p.scan = Some(Scan::of(p.buffer.as_ref()));
        Ok(p)
    }

    /// Checks that the buffer holds the fixed header and cookie.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated {
                len,
                needed: HEADER_LEN,
            });
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn addr(&self, r: core::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.b()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// `op`: 1 BOOTREQUEST, 2 BOOTREPLY.
    pub fn op(&self) -> u8 {
        self.b()[OP]
    }
    /// `htype`: hardware address type (ARP: 1 Ethernet, 32 InfiniBand...).
    pub fn htype(&self) -> u8 {
        self.b()[HTYPE]
    }
    /// `hlen`: hardware address length, as sent (may exceed 16).
    pub fn hlen(&self) -> u8 {
        self.b()[HLEN]
    }
    /// `hops`: relay hop count.
    pub fn hops(&self) -> u8 {
        self.b()[HOPS]
    }
    /// `xid`: transaction ID.
    pub fn xid(&self) -> u32 {
        let b = &self.b()[XID];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// `secs`: seconds since the client began.
    pub fn secs(&self) -> u16 {
        let b = &self.b()[SECS];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// `flags` (all 16 bits).
    pub fn flags(&self) -> u16 {
        let b = &self.b()[FLAGS];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// Whether the broadcast bit of `flags` is set.
    pub fn broadcast(&self) -> bool {
        self.flags() & FLAG_BROADCAST != 0
    }
    /// `ciaddr`: client IP address.
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.addr(CIADDR)
    }
    /// `yiaddr`: "your" (client) address.
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.addr(YIADDR)
    }
    /// `siaddr`: next server address.
    pub fn siaddr(&self) -> Ipv4Addr {
        self.addr(SIADDR)
    }
    /// `giaddr`: relay agent address.
    pub fn giaddr(&self) -> Ipv4Addr {
        self.addr(GIADDR)
    }
    /// The client hardware address: the first `hlen` bytes of `chaddr`
    /// (clamped to 16).
    pub fn chaddr(&self) -> &[u8] {
        let n = (self.hlen() as usize).min(16);
        &self.b()[CHADDR.start..CHADDR.start + n]
    }
    /// The whole 16-byte `chaddr` field.
    pub fn chaddr_field(&self) -> &[u8; 16] {
        let mut out = &[0u8; 16];
        if let Ok(a) = <&[u8; 16]>::try_from(&self.b()[CHADDR]) {
            out = a;
        }
        out
    }
    /// The raw 64-byte `sname` field.
    pub fn sname_field(&self) -> &[u8] {
        &self.b()[SNAME]
    }
    /// The raw 128-byte `file` field.
    pub fn file_field(&self) -> &[u8] {
        &self.b()[FILE]
    }
    /// The server host name: `sname` up to its first NUL, or empty if
    /// `sname` carries options (option 52).
    pub fn sname(&self) -> &[u8] {
        if self.overload() & 2 != 0 {
            return &[];
        }
        until_nul(self.sname_field())
    }
    /// The boot file name: `file` up to its first NUL, or empty if `file`
    /// carries options (option 52).
    pub fn file(&self) -> &[u8] {
        if self.overload() & 1 != 0 {
            return &[];
        }
        until_nul(self.file_field())
    }
    /// The magic cookie (checked by [`new_checked`](Self::new_checked)).
    pub fn magic_cookie(&self) -> [u8; 4] {
        let b = &self.b()[COOKIE];
        [b[0], b[1], b[2], b[3]]
    }

    /// The option-overload value (option 52): bit 0 `file`, bit 1 `sname`
    /// carry options; 0 if absent.
    pub fn overload(&self) -> u8 {
        match self.scan {
            Some(s) => s.overload,
            None => Scan::of(self.b()).overload,
        }
    }

    /// The options, raw (code + concatenated payload), in order.
    #[inline]
    pub fn raw_options(&self) -> RawOptions<'_> {
        match self.scan {
            Some(s) => RawOptions::with_scan(self.b(), s),
            None => RawOptions::new(self.b()),
        }
    }

    /// The options, typed, in order (see [`RawOptions`] for order,
    /// concatenation and leniency).
    pub fn options(&self) -> Options<'_> {
        Options::new(self.raw_options())
    }

    /// The payload of option `code` (all fragments), if present.
    pub fn option(&self, code: u8) -> Option<OptionData<'_>> {
        self.raw_options().find(|o| o.code == code).map(|o| o.data)
    }

    /// Option `code`, decoded to its type ([`DhcpOption::Malformed`] when
    /// its payload does not have the type's shape), if present.
    pub fn typed_option(&self, code: u8) -> Option<DhcpOption<'_>> {
        Some(DhcpOption::decode(code, self.option(code)?))
    }
}

/// Typed accessors for the options a boot server reads most: each is
/// `None` when the option is absent or does not have its type's shape
/// (it is then still in [`DhcpPacket::options`], as
/// [`DhcpOption::Malformed`]).
macro_rules! typed_accessors {
    ($( $(#[$doc:meta])* $name:ident -> $ty:ty = $konst:ident / $variant:ident; )*) => {
        impl<T: AsRef<[u8]>> DhcpPacket<T> {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> Option<$ty> {
                    match self.typed_option(code::$konst)? {
                        DhcpOption::$variant(v) => Some(v),
                        _ => None,
                    }
                }
            )*
        }
    };
}

typed_accessors! {
    /// The DHCP message type (option 53, RFC 2132 §9.6).
    message_type -> MessageType = MESSAGE_TYPE / MessageType;
    /// Every client architecture the client listed (option 93, RFC 4578
    /// §2.1), in its order; [`client_arch`](Self::client_arch) is the first.
    client_archs -> ClientArchList<'_> = CLIENT_SYSTEM_ARCHITECTURE / ClientSystemArchitecture;
    /// The vendor class identifier (option 60, RFC 2132 §9.13) as sent; see
    /// [`pxe_vendor_class`](Self::pxe_vendor_class) for its PXE parts.
    vendor_class -> OptionData<'_> = VENDOR_CLASS_IDENTIFIER / VendorClassIdentifier;
    /// The client identifier (option 61, RFC 2132 §9.14).
    client_id -> ClientId<'_> = CLIENT_IDENTIFIER / ClientIdentifier;
    /// The client's network interface identifier (option 94, RFC 4578 §2.2).
    client_ndi -> Ndi = CLIENT_NETWORK_INTERFACE / ClientNetworkInterface;
    /// The client machine identifier, the UUID/GUID (option 97, RFC 4578 §2.3).
    machine_id -> MachineId = CLIENT_MACHINE_IDENTIFIER / ClientMachineIdentifier;
    /// The address the client asks for (option 50, RFC 2132 §9.1).
    requested_ip -> Ipv4Addr = REQUESTED_IP_ADDRESS / RequestedIpAddress;
    /// The server the client chose (option 54, RFC 2132 §9.7).
    server_identifier -> Ipv4Addr = SERVER_IDENTIFIER / ServerIdentifier;
    /// The option codes the client asks for (option 55, RFC 2132 §9.8).
    parameter_request_list -> OptionData<'_> = PARAMETER_REQUEST_LIST / ParameterRequestList;
    /// The largest message the client accepts (option 57, RFC 2132 §9.10).
    max_message_size -> u16 = MAXIMUM_MESSAGE_SIZE / MaximumMessageSize;
    /// The user class (option 77, RFC 3004); iPXE sends `iPXE`.
    user_class -> UserClass<'_> = USER_CLASS / UserClass;
    /// The boot file name option (option 67, RFC 2132 §9.5); the `file`
    /// header field is [`file`](Self::file).
    boot_file_name -> OptionData<'_> = BOOTFILE_NAME / BootFileName;
    /// The host name (option 12, RFC 2132 §3.14).
    host_name -> OptionData<'_> = HOST_NAME / HostName;
}

impl<T: AsRef<[u8]>> DhcpPacket<T> {
    /// The client's architecture: the first value of option 93 (RFC 4578
    /// §2.1), the one firmware uses to choose its boot file.
    pub fn client_arch(&self) -> Option<ClientArch> {
        self.client_archs()?.first()
    }

    /// Option 60 read as a PXE 2.1 / UEFI HTTP boot vendor class
    /// (`PXEClient:Arch:xxxxx:UNDI:yyyzzz`), if it is one.
    pub fn pxe_vendor_class(&self) -> Option<VendorClass> {
        VendorClass::from_option(&self.vendor_class()?).ok()
    }

    /// The PXE sub-options of option 43 (PXE 2.1 §2.4), if option 43 is
    /// present. Meaningful when the vendor class is `PXEClient`.
    pub fn pxe_options(&self) -> Option<PxeOptions<'_>> {
        self.option(code::VENDOR_SPECIFIC).map(PxeOptions::new)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DhcpPacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets `op`.
    pub fn set_op(&mut self, v: u8) {
        self.bm()[OP] = v;
    }
    /// Sets `htype`.
    pub fn set_htype(&mut self, v: u8) {
        self.bm()[HTYPE] = v;
    }
    /// Sets `hlen`.
    pub fn set_hlen(&mut self, v: u8) {
        self.bm()[HLEN] = v;
    }
    /// Sets `hops`.
    pub fn set_hops(&mut self, v: u8) {
        self.bm()[HOPS] = v;
    }
    /// Sets `xid`.
    pub fn set_xid(&mut self, v: u32) {
        self.bm()[XID].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets `secs`.
    pub fn set_secs(&mut self, v: u16) {
        self.bm()[SECS].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets `flags`.
    pub fn set_flags(&mut self, v: u16) {
        self.bm()[FLAGS].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets `ciaddr`.
    pub fn set_ciaddr(&mut self, a: Ipv4Addr) {
        self.bm()[CIADDR].copy_from_slice(&a.octets());
    }
    /// Sets `yiaddr`.
    pub fn set_yiaddr(&mut self, a: Ipv4Addr) {
        self.bm()[YIADDR].copy_from_slice(&a.octets());
    }
    /// Sets `siaddr`.
    pub fn set_siaddr(&mut self, a: Ipv4Addr) {
        self.bm()[SIADDR].copy_from_slice(&a.octets());
    }
    /// Sets `giaddr`.
    pub fn set_giaddr(&mut self, a: Ipv4Addr) {
        self.bm()[GIADDR].copy_from_slice(&a.octets());
    }
    /// Sets the whole 16-byte `chaddr` field.
    pub fn set_chaddr_field(&mut self, v: &[u8; 16]) {
        self.bm()[CHADDR].copy_from_slice(v);
    }
    /// Sets `sname` (NUL-padded; longer than 64 bytes is truncated).
    pub fn set_sname(&mut self, v: &[u8]) {
        set_padded(&mut self.bm()[SNAME], v);
        self.scan = None;
    }
    /// Sets `file` (NUL-padded; longer than 128 bytes is truncated).
    pub fn set_file(&mut self, v: &[u8]) {
        set_padded(&mut self.bm()[FILE], v);
        self.scan = None;
    }
    /// Writes the magic cookie.
    pub fn set_magic_cookie(&mut self) {
        self.bm()[COOKIE].copy_from_slice(&MAGIC_COOKIE);
    }
}

fn set_padded(dst: &mut [u8], v: &[u8]) {
    let n = v.len().min(dst.len());
    dst[..n].copy_from_slice(&v[..n]);
    dst[n..].fill(0);
}

pub(crate) fn until_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}
