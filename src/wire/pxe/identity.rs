//! Client identity: network interface identifier (option 94, RFC 4578
//! §2.2), machine identifier (option 97, RFC 4578 §2.3) and the PXE/HTTP
//! vendor class string (option 60; PXE 2.1 §2.2.5, UEFI 2.x §24.7).

use core::fmt;

use crate::wire::dhcp::encode::{OptionValue, Sink, SliceSink};
use crate::wire::dhcp::{EmitError, OptionData, ParseError};

use super::ClientArch;

/// Client network interface identifier (option 94): interface type
/// (1 = UNDI) and UNDI version.
///
/// ```text
/// +------+------+-------+-------+
/// | 94   | 3    | type  | major | minor |
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ndi {
    /// Interface type (1: UNDI).
    pub interface_type: u8,
    /// UNDI major version.
    pub major: u8,
    /// UNDI minor version.
    pub minor: u8,
}

impl OptionValue<'_> for Ndi {
    #[inline(always)]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 3 {
            return None;
        }
        let [interface_type, major, minor] = data.array::<3>(0)?;
        Some(Ndi {
            interface_type,
            major,
            minor,
        })
    }
    fn encoded_len(&self) -> usize {
        3
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&[self.interface_type, self.major, self.minor]);
    }
}

/// Client machine identifier (option 97): a type (0) and 16 bytes.
///
/// # Byte order: UUID or GUID?
/// RFC 4578 §2.3 says type 0 is followed by a 16-byte "UUID/GUID"
/// without saying how it is laid out. Firmware copies the SMBIOS system
/// UUID, which SMBIOS 2.6+ stores *mixed-endian* (the first three fields
/// little-endian, like an EFI GUID); the same bytes read as an RFC 4122
/// UUID (all big-endian) give a different string. PXELINUX names its
/// per-machine config file with the bytes in wire order (`4e1d7c8b-e0e2-…`
/// for wire bytes `4e 1d 7c 8b e0 e2 …`, see `tests/vectors`), while
/// `dmidecode` on the same machine prints the mixed-endian reading
/// (`8b7c1d4e-e2e0-4c5a-…`). Both renderings are offered:
/// [`MachineId::wire_order`] and [`MachineId::guid_order`]. Compare
/// identities by [`MachineId::bytes`], never by one rendering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MachineId {
    /// Identifier type (0: UUID/GUID; other values are kept).
    pub id_type: u8,
    /// The 16 identifier bytes, as sent.
    pub bytes: [u8; 16],
}

impl MachineId {
    /// A type-0 identifier.
    pub const fn new(bytes: [u8; 16]) -> Self {
        MachineId { id_type: 0, bytes }
    }

    /// The bytes rendered in wire order (RFC 4122 reading; PXELINUX).
    pub fn wire_order(&self) -> UuidDisplay {
        UuidDisplay(self.bytes)
    }

    /// The bytes rendered as a mixed-endian GUID (SMBIOS 2.6+ / EFI
    /// reading; `dmidecode`).
    pub fn guid_order(&self) -> UuidDisplay {
        let b = self.bytes;
        UuidDisplay([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ])
    }
}

/// Formats 16 bytes as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UuidDisplay(pub [u8; 16]);

impl fmt::Display for UuidDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl OptionValue<'_> for MachineId {
    #[inline(always)]
    fn decode(data: OptionData<'_>) -> Option<Self> {
        if data.len() != 17 {
            return None;
        }
        Some(MachineId {
            id_type: data.get(0)?,
            bytes: data.array::<16>(1)?,
        })
    }
    fn encoded_len(&self) -> usize {
        17
    }
    fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&[self.id_type]);
        out.put(&self.bytes);
    }
}

/// Which client a vendor class names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// `PXEClient` (PXE 2.1 §2.2.5).
    Pxe,
    /// `HTTPClient` (UEFI HTTP boot).
    Http,
}

impl ClientKind {
    fn prefix(self) -> &'static str {
        match self {
            ClientKind::Pxe => "PXEClient",
            ClientKind::Http => "HTTPClient",
        }
    }
}

/// UNDI version of a vendor class string (`UNDI:yyyzzz`: major `yyy`,
/// minor `zzz`, three decimal digits each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UndiVersion {
    /// Major version (0..=999).
    pub major: u16,
    /// Minor version (0..=999).
    pub minor: u16,
}

/// A PXE/HTTP vendor class identifier (option 60), in parts.
///
/// Accepted forms (exact digit counts, as firmware sends them):
/// - `PXEClient` / `HTTPClient` (servers echo this in their replies),
/// - `PXEClient:Arch:xxxxx` (5 decimal digits, 0..=65535),
/// - `PXEClient:Arch:xxxxx:UNDI:yyyzzz` (3 + 3 decimal digits).
///
/// Anything else is [`ParseError::BadVendorClass`]. Emitting a parsed
/// value reproduces the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VendorClass {
    /// `PXEClient` or `HTTPClient`.
    pub kind: ClientKind,
    /// The `Arch:` part, if present.
    pub arch: Option<ClientArch>,
    /// The `UNDI:` part, if present (only after `Arch:`).
    pub undi: Option<UndiVersion>,
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')))
}

impl VendorClass {
    /// Longest emitted form: `HTTPClient:Arch:xxxxx:UNDI:yyyzzz`.
    pub const MAX_LEN: usize = 33;

    /// Parses a vendor class string.
    pub fn parse(s: &[u8]) -> Result<Self, ParseError> {
        let bad = ParseError::BadVendorClass;
        let (kind, rest) = if let Some(r) = s.strip_prefix(b"PXEClient") {
            (ClientKind::Pxe, r)
        } else if let Some(r) = s.strip_prefix(b"HTTPClient") {
            (ClientKind::Http, r)
        } else {
            return Err(bad);
        };
        let mut vc = VendorClass {
            kind,
            arch: None,
            undi: None,
        };
        if rest.is_empty() {
            return Ok(vc);
        }
        let rest = rest.strip_prefix(b":Arch:").ok_or(bad)?;
        if rest.len() < 5 {
            return Err(bad);
        }
        let (a, rest) = rest.split_at(5);
        let a = digits(a).filter(|&a| a <= 0xFFFF).ok_or(bad)?;
        vc.arch = Some(ClientArch::from(a as u16));
        if rest.is_empty() {
            return Ok(vc);
        }
        let rest = rest.strip_prefix(b":UNDI:").ok_or(bad)?;
        if rest.len() != 6 {
            return Err(bad);
        }
        let major = digits(&rest[..3]).ok_or(bad)? as u16;
        let minor = digits(&rest[3..]).ok_or(bad)? as u16;
        vc.undi = Some(UndiVersion { major, minor });
        Ok(vc)
    }

    /// Parses the payload of option 60 (copying into a stack buffer only
    /// if it arrived in several fragments).
    pub fn from_option(data: &OptionData<'_>) -> Result<Self, ParseError> {
        let mut scratch = [0u8; 64];
        let s = data
            .contiguous(&mut scratch)
            .map_err(|_| ParseError::BadVendorClass)?;
        Self::parse(s)
    }

    /// Whether [`write`](Self::write) can encode this value (digits in
    /// range; `UNDI:` only after `Arch:`).
    fn valid(&self) -> bool {
        match (self.arch, self.undi) {
            (None, Some(_)) => false,
            (_, Some(u)) => u.major <= 999 && u.minor <= 999,
            _ => true,
        }
    }

    /// Length of the encoded string.
    pub fn encoded_len(&self) -> usize {
        self.kind.prefix().len()
            + if self.arch.is_some() { 11 } else { 0 }
            + if self.undi.is_some() { 12 } else { 0 }
    }

    /// Writes the string at the front of `out`; returns its length. `out`
    /// is untouched on error.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        if !self.valid() {
            return Err(EmitError::InvalidValue { code: 60 });
        }
        let needed = self.encoded_len();
        if out.len() < needed {
            return Err(EmitError::BufferTooSmall { needed });
        }
        let mut s = SliceSink::new(out, 0);
        s.put(self.kind.prefix().as_bytes());
        if let Some(a) = self.arch {
            s.put(b":Arch:");
            put_digits(&mut s, u32::from(u16::from(a)), 5);
            if let Some(u) = self.undi {
                s.put(b":UNDI:");
                put_digits(&mut s, u32::from(u.major), 3);
                put_digits(&mut s, u32::from(u.minor), 3);
            }
        }
        Ok(s.pos)
    }
}

fn put_digits(s: &mut SliceSink<'_>, mut v: u32, width: usize) {
    let mut d = [b'0'; 5];
    for i in (0..width).rev() {
        d[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    s.put(&d[..width]);
}

impl fmt::Display for VendorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; Self::MAX_LEN];
        let n = self.write(&mut buf).map_err(|_| fmt::Error)?;
        f.write_str(core::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}
