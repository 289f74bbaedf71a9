//! Typed DHCP options: ONE table ([`dhcp_options!`](crate) below) gives
//! each option its code, constant name, variant and value type. Adding an
//! option is one line of the table.
//!
//! Codes 0 (pad) and 255 (end) are structure, not options: the iterator
//! skips them and the builder writes them ([`code::PAD`], [`code::END`]).
//!
//! A known option whose payload does not have its type's shape (say a
//! 3-byte option 1) decodes as [`DhcpOption::Malformed`], carrying the
//! payload unchanged: nothing is dropped and re-emitting is byte-exact.
//! Codes not in the table decode as [`DhcpOption::Unknown`].

use core::net::Ipv4Addr;

use super::data::OptionData;
use super::encode::{OptionValue, Sink, SliceSink, SplitSink, split_wire_len};
use super::values::{ClientId, Ipv4List, List, MessageType, RelayAgentInfo, UserClass};
use super::{EmitError, ParseError};
use crate::wire::pxe::{ClientArch, MachineId, Ndi, PxeOptions};

/// A list of client architectures (option 93, RFC 4578 §2.1).
pub type ClientArchList<'a> = List<'a, ClientArch>;

macro_rules! dhcp_options {
    ($(
        $(#[$doc:meta])*
        $code:literal $konst:ident => $variant:ident($ty:ty),
    )*) => {
        /// Option codes (RFC 2132 and the RFCs named on each variant of
        /// [`DhcpOption`]).
        pub mod code {
            /// Pad (0): one byte of padding, no length.
            pub const PAD: u8 = 0;
            /// End (255): end of the options of an area.
            pub const END: u8 = 255;
            $(
                #[doc = concat!("Code of [`DhcpOption::", stringify!($variant), "`](super::DhcpOption::", stringify!($variant), ").")]
                pub const $konst: u8 = $code;
            )*
        }

        /// A typed DHCP option.
        #[derive(Clone, Copy, Debug, PartialEq)]
        #[non_exhaustive]
        // A 4-byte tag: small payloads (u8, u16, addresses, NDI) then start
        // at offset 4, so moving an option (every option of a walk is
        // moved out of the iterator) no longer reads a word that spans the
        // tag byte and a narrower payload store, which stalled store
        // forwarding (`cargo bench --bench dhcp`: 86 -> 69 ns for the iPXE
        // DISCOVER; a u64 tag measured slower).
        #[repr(u32)]
        pub enum DhcpOption<'a> {
            $( $(#[$doc])* $variant($ty), )*
            /// A known code whose payload does not fit its type (kept as is).
            Malformed {
                /// Option code.
                code: u8,
                /// Payload as received.
                data: OptionData<'a>,
            },
            /// A code this table does not type.
            Unknown {
                /// Option code.
                code: u8,
                /// Payload.
                data: OptionData<'a>,
            },
        }

        impl<'a> DhcpOption<'a> {
            /// The option code.
            #[inline]
            pub fn code(&self) -> u8 {
                match self {
                    $( Self::$variant(_) => $code, )*
                    Self::Malformed { code, .. } | Self::Unknown { code, .. } => *code,
                }
            }

            /// Whether `code` has a typed variant.
            pub fn is_known(code: u8) -> bool {
                matches!(code, $($code)|*)
            }

            /// Decodes the payload of option `code`.
            #[inline(always)]
            pub fn decode(code: u8, data: OptionData<'a>) -> Self {
                match code {
                    $( $code => match <$ty as OptionValue>::decode(data) {
                        Some(v) => Self::$variant(v),
                        None => Self::Malformed { code, data },
                    }, )*
                    _ => Self::Unknown { code, data },
                }
            }

            /// Length of the payload (before any RFC 3396 split).
            #[inline]
            pub fn payload_len(&self) -> usize {
                match self {
                    $( Self::$variant(v) => v.encoded_len(), )*
                    Self::Malformed { data, .. } | Self::Unknown { data, .. } => data.len(),
                }
            }

            fn check_value(&self) -> Result<(), EmitError> {
                match self {
                    $( Self::$variant(v) => v.check($code), )*
                    Self::Malformed { .. } => Ok(()),
                    Self::Unknown { code, .. } => {
                        if *code == code::PAD || *code == code::END || Self::is_known(*code) {
                            Err(EmitError::InvalidCode(*code))
                        } else {
                            Ok(())
                        }
                    }
                }
            }

            /// [`check_value`](Self::check_value) and
            /// [`payload_len`](Self::payload_len) in one match (the
            /// builders' sizing pass).
            #[inline]
            fn checked_payload_len(&self) -> Result<usize, EmitError> {
                match self {
                    $( Self::$variant(v) => v.check($code).map(|()| v.encoded_len()), )*
                    Self::Malformed { data, .. } => Ok(data.len()),
                    Self::Unknown { .. } => self.check_value().map(|()| self.payload_len()),
                }
            }

            fn write_payload<S: Sink>(&self, out: &mut S) {
                match self {
                    $( Self::$variant(v) => v.encode(out), )*
                    Self::Malformed { data, .. } | Self::Unknown { data, .. } => data.encode(out),
                }
            }
        }
    };
}

dhcp_options! {
    /// Subnet mask (1, RFC 2132 §3.3).
    1 SUBNET_MASK => SubnetMask(Ipv4Addr),
    /// Routers (3, RFC 2132 §3.5).
    3 ROUTER => Router(Ipv4List<'a>),
    /// DNS servers (6, RFC 2132 §3.8).
    6 DOMAIN_NAME_SERVER => DomainNameServer(Ipv4List<'a>),
    /// Host name (12, RFC 2132 §3.14).
    12 HOST_NAME => HostName(OptionData<'a>),
    /// Domain name (15, RFC 2132 §3.17).
    15 DOMAIN_NAME => DomainName(OptionData<'a>),
    /// Broadcast address (28, RFC 2132 §5.3).
    28 BROADCAST_ADDRESS => BroadcastAddress(Ipv4Addr),
    /// Vendor-specific information (43, RFC 2132 §8.4); PXE sub-options
    /// when the vendor class is `PXEClient` (see [`DhcpOption::pxe_options`]).
    43 VENDOR_SPECIFIC => VendorSpecific(OptionData<'a>),
    /// Requested IP address (50, RFC 2132 §9.1).
    50 REQUESTED_IP_ADDRESS => RequestedIpAddress(Ipv4Addr),
    /// IP address lease time in seconds (51, RFC 2132 §9.2).
    51 IP_ADDRESS_LEASE_TIME => IpAddressLeaseTime(u32),
    /// Option overload (52, RFC 2132 §9.3): 1 `file`, 2 `sname`, 3 both
    /// carry options.
    52 OPTION_OVERLOAD => OptionOverload(u8),
    /// DHCP message type (53, RFC 2132 §9.6).
    53 MESSAGE_TYPE => MessageType(MessageType),
    /// Server identifier (54, RFC 2132 §9.7).
    54 SERVER_IDENTIFIER => ServerIdentifier(Ipv4Addr),
    /// Parameter request list (55, RFC 2132 §9.8): option codes, in the
    /// client's order.
    55 PARAMETER_REQUEST_LIST => ParameterRequestList(OptionData<'a>),
    /// Message (56, RFC 2132 §9.9): an error text, e.g. in a DHCPNAK.
    56 MESSAGE => Message(OptionData<'a>),
    /// Maximum DHCP message size (57, RFC 2132 §9.10).
    57 MAXIMUM_MESSAGE_SIZE => MaximumMessageSize(u16),
    /// Renewal (T1) time in seconds (58, RFC 2132 §9.11).
    58 RENEWAL_TIME => RenewalTime(u32),
    /// Rebinding (T2) time in seconds (59, RFC 2132 §9.12).
    59 REBINDING_TIME => RebindingTime(u32),
    /// Vendor class identifier (60, RFC 2132 §9.13), e.g.
    /// `PXEClient:Arch:00000:UNDI:002001` (see [`crate::wire::pxe::VendorClass`]).
    60 VENDOR_CLASS_IDENTIFIER => VendorClassIdentifier(OptionData<'a>),
    /// Client identifier (61, RFC 2132 §9.14, RFC 4361 §6.1).
    61 CLIENT_IDENTIFIER => ClientIdentifier(ClientId<'a>),
    /// TFTP server name (66, RFC 2132 §9.4).
    66 TFTP_SERVER_NAME => TftpServerName(OptionData<'a>),
    /// Boot file name (67, RFC 2132 §9.5).
    67 BOOTFILE_NAME => BootFileName(OptionData<'a>),
    /// User class (77, RFC 3004).
    77 USER_CLASS => UserClass(UserClass<'a>),
    /// Relay agent information (82, RFC 3046).
    82 RELAY_AGENT_INFORMATION => RelayAgentInformation(RelayAgentInfo<'a>),
    /// Client system architecture types (93, RFC 4578 §2.1).
    93 CLIENT_SYSTEM_ARCHITECTURE => ClientSystemArchitecture(ClientArchList<'a>),
    /// Client network interface identifier (94, RFC 4578 §2.2).
    94 CLIENT_NETWORK_INTERFACE => ClientNetworkInterface(Ndi),
    /// Client machine identifier (97, RFC 4578 §2.3).
    97 CLIENT_MACHINE_IDENTIFIER => ClientMachineIdentifier(MachineId),
    /// TFTP server addresses (150, RFC 5859).
    150 TFTP_SERVER_ADDRESS => TftpServerAddress(Ipv4List<'a>),
    /// iPXE encapsulated options (175), kept opaque.
    175 IPXE_ENCAPSULATED => IpxeEncapsulated(OptionData<'a>),
    /// PXELINUX magic (208, RFC 5071 §4): F1:00:74:7E.
    208 PXELINUX_MAGIC => PxelinuxMagic([u8; 4]),
    /// PXELINUX configuration file (209, RFC 5071 §5).
    209 PXELINUX_CONFIG_FILE => PxelinuxConfigFile(OptionData<'a>),
    /// PXELINUX path prefix (210, RFC 5071 §6).
    210 PXELINUX_PATH_PREFIX => PxelinuxPathPrefix(OptionData<'a>),
    /// PXELINUX reboot time in seconds (211, RFC 5071 §7).
    211 PXELINUX_REBOOT_TIME => PxelinuxRebootTime(u32),
}

impl Eq for DhcpOption<'_> {}

impl<'a> DhcpOption<'a> {
    /// The PXELINUX magic value of option 208 (RFC 5071 §4).
    pub const PXELINUX_MAGIC: [u8; 4] = [0xF1, 0x00, 0x74, 0x7E];

    /// The PXE sub-options of a [`VendorSpecific`](Self::VendorSpecific)
    /// option (option 43 when the vendor class is `PXEClient`).
    pub fn pxe_options(&self) -> Option<PxeOptions<'a>> {
        match self {
            Self::VendorSpecific(d) => Some(PxeOptions::new(*d)),
            _ => None,
        }
    }

    /// Bytes this option takes on the wire, including the code/length
    /// headers of every 255-byte piece (RFC 3396 §6).
    pub fn wire_len(&self) -> usize {
        split_wire_len(self.payload_len())
    }

    /// Checks that the option can be emitted (codes 0, 255 and typed codes
    /// cannot be sent as `Unknown`; nested lengths fit).
    pub fn check(&self) -> Result<(), EmitError> {
        self.check_value()
    }

    /// [`check`](Self::check), then [`wire_len`](Self::wire_len), in one
    /// pass over the value (crate-internal: the builders' sizing pass).
    #[inline]
    pub(crate) fn checked_wire_len(&self) -> Result<usize, EmitError> {
        self.checked_payload_len().map(split_wire_len)
    }

    /// Writes the option (split into 255-byte pieces if needed) at the
    /// front of `buf`; returns the bytes written. `buf` is untouched on
    /// error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        self.check()?;
        let needed = self.wire_len();
        if buf.len() < needed {
            return Err(EmitError::BufferTooSmall { needed });
        }
        let mut s = SliceSink::new(buf, 0);
        self.emit_into(&mut s)?;
        Ok(s.pos)
    }

    /// Writes into a sink whose room was checked (crate-internal).
    #[inline]
    pub(crate) fn emit_into(&self, s: &mut SliceSink<'_>) -> Result<(), EmitError> {
        // One piece (the common case): the payload is written straight
        // after a two-byte header whose length byte is filled in from what
        // was written, so the payload length is not computed again. A
        // payload over 255 bytes is rewound and split (cold): its split
        // form is longer, so the one-piece attempt stayed within the room
        // the caller checked.
        let at = s.pos;
        s.put(&[self.code(), 0]);
        self.write_payload(s);
        if s.overflow {
            return Err(EmitError::Internal);
        }
        let len = s.pos - at - 2;
        match (u8::try_from(len), s.buf.get_mut(at + 1)) {
            (Ok(l), Some(b)) => {
                *b = l;
                Ok(())
            }
            _ => self.emit_split(s, at, len),
        }
    }

    /// [`emit_into`](Self::emit_into) of a payload over 255 bytes: rewinds
    /// to `at` and writes it in 255-byte pieces (RFC 3396 §6).
    #[cold]
    #[inline(never)]
    fn emit_split(&self, s: &mut SliceSink<'_>, at: usize, len: usize) -> Result<(), EmitError> {
        s.pos = at;
        let mut w = SplitSink::new(s, self.code(), len);
        self.write_payload(&mut w);
        let ok = w.finished();
        if !ok || s.overflow {
            return Err(EmitError::Internal);
        }
        Ok(())
    }

    /// Decodes a raw payload and fails (instead of returning
    /// [`Malformed`](Self::Malformed)) when it does not fit the type.
    pub fn decode_strict(code: u8, data: OptionData<'a>) -> Result<Self, ParseError> {
        match Self::decode(code, data) {
            Self::Malformed { code, .. } => Err(ParseError::BadOption { code }),
            o => Ok(o),
        }
    }
}
