//! Message payloads (docs/transaction-protocol.md §3.2, §3.3, §4): one
//! representation per message, each with `parse(payload)` and [`Payload`]
//! for emitting. Payloads of sealed frames are the plaintexts (§2.4).
//! Lists use fixed-capacity `heapless` vectors sized by the limits of §8;
//! strings borrow from the packet. Parsing accepts TLVs in any order and
//! skips unknown ones; emitting writes the canonical ascending order.

use super::environment_multicast::{
    ENVIRONMENT_MULTICAST_LEN, ENVIRONMENT_MULTICAST_TLV, EnvironmentMulticast,
};
use super::menu_choice::ImageSafeUpdate;
pub use super::smbios::Smbios;
use super::tlv::{Reader, TlvIter, Writer, str8_len};
use super::{EmitError, ParseError, Payload};
use core::net::Ipv4Addr;
use heapless::Vec;

/// Size of the `Hello` nonce `Nh` (§3.2).
pub const NONCE_LEN: usize = 16;
/// Size of an X25519 key (§3.1).
pub const KEY_LEN: usize = 32;
/// Size of the cookie (§3.2).
pub const COOKIE_LEN: usize = 32;
/// Size of the `Hello` payload: `Nh` and 32 zero bytes (§3.2).
pub const HELLO_PAYLOAD_LEN: usize = NONCE_LEN + 32;
/// Size of the accept payload in clear: status and session id (§3.3).
pub const ACCEPT_PLAIN_LEN: usize = 9;
/// AEAD tag size (§2.4).
const TAG: usize = 16;

fn once<T>(slot: &mut Option<T>, v: T, field: u8) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::Duplicate { field });
    }
    *slot = Some(v);
    Ok(())
}

fn push<T, const N: usize>(list: &mut Vec<T, N>, v: T, field: u8) -> Result<(), ParseError> {
    list.push(v).map_err(|_| ParseError::TooMany { field })
}

fn utf8(value: &[u8], max: usize, field: u8) -> Result<&str, ParseError> {
    if value.len() > max {
        return Err(ParseError::BadString { field });
    }
    core::str::from_utf8(value).map_err(|_| ParseError::BadString { field })
}

fn fixed<const N: usize>(value: &[u8], field: u8) -> Result<[u8; N], ParseError> {
    value.try_into().map_err(|_| ParseError::BadField { field })
}

fn check_str(s: &str, max: usize, field: u8) -> Result<(), EmitError> {
    if s.len() > max {
        Err(EmitError::FieldTooLong { field })
    } else {
        Ok(())
    }
}

/// A payload-less message (`MenuQuery`, a part acknowledged,
/// `ReportAck`, and error replies, §4–§5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Empty;

impl Empty {
    /// Accept only an empty payload.
    pub fn parse(payload: &[u8]) -> Result<Self, ParseError> {
        if payload.is_empty() {
            Ok(Empty)
        } else {
            Err(ParseError::BadField { field: 0 })
        }
    }
}

impl Payload for Empty {
    fn buffer_len(&self) -> usize {
        0
    }
    fn emit(&self, _out: &mut [u8]) -> Result<(), EmitError> {
        Ok(())
    }
}

/// `Hello` (§3.2): the nonce `Nh`, padded with 32 zero bytes so that the
/// `Hello` is larger than the `Cookie` that answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// `Nh`.
    pub nonce: [u8; NONCE_LEN],
}

impl Hello {
    /// Parse a `Hello` payload; the padding must be zero.
    pub fn parse(payload: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload, 0);
        let nonce = r.array()?;
        let pad: [u8; 32] = r.array()?;
        r.finish()?;
        if pad != [0; 32] {
            return Err(ParseError::BadField { field: 0 });
        }
        Ok(Hello { nonce })
    }
}

impl Payload for Hello {
    fn buffer_len(&self) -> usize {
        HELLO_PAYLOAD_LEN
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        let mut w = Writer::new(out);
        w.put(&self.nonce)?;
        w.put(&[0; 32])
    }
}

/// `Cookie` (§3.2): the server's stateless cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cookie {
    /// `HMAC(Ck, "PBTX2 cookie" ‖ address ‖ port ‖ hello)`.
    pub cookie: [u8; COOKIE_LEN],
}

impl Cookie {
    /// Parse a `Cookie` payload.
    pub fn parse(payload: &[u8]) -> Result<Self, ParseError> {
        Ok(Cookie {
            cookie: fixed(payload, 0)?,
        })
    }
}

impl Payload for Cookie {
    fn buffer_len(&self) -> usize {
        COOKIE_LEN
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        Writer::new(out).put(&self.cookie)
    }
}

/// `Init` (§3.3): the `Hello` nonce and cookie, then Noise IK message 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Init<'a> {
    /// `Nh` of the `Hello`.
    pub nonce: [u8; NONCE_LEN],
    /// The cookie of the `Cookie`.
    pub cookie: [u8; COOKIE_LEN],
    /// The client's ephemeral public key `e_pub`.
    pub ephemeral: [u8; KEY_LEN],
    /// `ENC(s_pub)`: the client's static public key, encrypted, with tag.
    pub encrypted_static: [u8; KEY_LEN + TAG],
    /// `ENC(init payload)`, with tag (at least 16 bytes).
    pub encrypted_payload: &'a [u8],
}

impl<'a> Init<'a> {
    /// Parse an `Init` payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload, 0);
        let init = Init {
            nonce: r.array()?,
            cookie: r.array()?,
            ephemeral: r.array()?,
            encrypted_static: r.array()?,
            encrypted_payload: r.rest(),
        };
        if init.encrypted_payload.len() < TAG {
            return Err(ParseError::BadField { field: 0 });
        }
        Ok(init)
    }
}

impl Payload for Init<'_> {
    fn buffer_len(&self) -> usize {
        NONCE_LEN + COOKIE_LEN + KEY_LEN + KEY_LEN + TAG + self.encrypted_payload.len()
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        let mut w = Writer::new(out);
        w.put(&self.nonce)?;
        w.put(&self.cookie)?;
        w.put(&self.ephemeral)?;
        w.put(&self.encrypted_static)?;
        w.put(self.encrypted_payload)
    }
}

/// The init payload in clear (§3.3): TLVs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitPayload {
    /// TLV 1: the highest protocol version the client speaks.
    pub highest_version: u8,
}

impl InitPayload {
    /// Parse the decrypted init payload.
    pub fn parse(payload: &[u8]) -> Result<Self, ParseError> {
        let mut v = None;
        for tlv in TlvIter::new(payload) {
            let tlv = tlv?;
            if tlv.kind == 1 {
                once(&mut v, fixed::<1>(tlv.value, 1)?[0], 1)?;
            }
        }
        Ok(InitPayload {
            highest_version: v.ok_or(ParseError::Missing { field: 1 })?,
        })
    }
}

impl Payload for InitPayload {
    fn buffer_len(&self) -> usize {
        4
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        Writer::new(out).tlv(1, &[self.highest_version])
    }
}

/// `Accept` (§3.3): Noise IK message 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accept {
    /// The server's ephemeral public key `re_pub`.
    pub ephemeral: [u8; KEY_LEN],
    /// `ENC(accept payload)`, with tag.
    pub encrypted_payload: [u8; ACCEPT_PLAIN_LEN + TAG],
}

impl Accept {
    /// Parse an `Accept` payload.
    pub fn parse(payload: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload, 0);
        let a = Accept {
            ephemeral: r.array()?,
            encrypted_payload: r.array()?,
        };
        r.finish()?;
        Ok(a)
    }
}

impl Payload for Accept {
    fn buffer_len(&self) -> usize {
        KEY_LEN + ACCEPT_PLAIN_LEN + TAG
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        let mut w = Writer::new(out);
        w.put(&self.ephemeral)?;
        w.put(&self.encrypted_payload)
    }
}

/// A network interface in the inventory (§4.3 TLV 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nic {
    /// MAC address.
    pub mac: [u8; 6],
    /// PCI ids of the interface.
    pub pci: PciId,
}

/// A PCI vendor/device id pair (§4.3 TLV 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciId {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
}

/// How the workstation's address is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// By DHCP.
    Dhcp,
    /// Static.
    Static,
    /// A value this version does not know.
    Unknown(u8),
}

impl From<u8> for NetMode {
    fn from(v: u8) -> Self {
        match v {
            0 => NetMode::Dhcp,
            1 => NetMode::Static,
            x => NetMode::Unknown(x),
        }
    }
}
impl From<NetMode> for u8 {
    fn from(v: NetMode) -> u8 {
        match v {
            NetMode::Dhcp => 0,
            NetMode::Static => 1,
            NetMode::Unknown(x) => x,
        }
    }
}

/// Current IP settings (§4.3 TLV 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// DHCP or static.
    pub mode: NetMode,
    /// Address.
    pub address: Ipv4Addr,
    /// Netmask.
    pub netmask: Ipv4Addr,
    /// Default gateway.
    pub gateway: Ipv4Addr,
}

/// `WorkstationInfo` (§4.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkstationInfo<'a> {
    /// TLV 1: MAC addresses (at least one).
    pub macs: Vec<[u8; 6], 16>,
    /// TLV 2: machine UUID.
    pub uuid: Option<[u8; 16]>,
    /// TLV 3: client architecture (RFC 4578).
    pub arch: Option<u16>,
    /// TLV 4: CPU model.
    pub cpu_model: Option<&'a str>,
    /// TLV 5: CPU count.
    pub cpu_count: Option<u16>,
    /// TLV 6: RAM in MB.
    pub ram_mb: Option<u32>,
    /// TLV 7: disk sizes in MB, in disk order.
    pub disks_mb: Vec<u32, 16>,
    /// TLV 8: network interfaces.
    pub nics: Vec<Nic, 16>,
    /// TLV 9: PCI devices.
    pub pci: Vec<PciId, 64>,
    /// TLV 10: the image-safe data record as on disk (§10).
    pub image_safe: Option<&'a [u8]>,
    /// TLV 11: current IP settings.
    pub ip: Option<IpConfig>,
    /// TLV 12: DNS servers.
    pub dns: Vec<Ipv4Addr, 4>,
    /// TLVs 20–27: SMBIOS strings and chassis type.
    pub smbios: Smbios<'a>,
}

impl<'a> WorkstationInfo<'a> {
    /// Parse a `WorkstationInfo` payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ParseError> {
        let mut w = WorkstationInfo::default();
        for tlv in TlvIter::new(payload) {
            let tlv = tlv?;
            let (k, v) = (tlv.kind, tlv.value);
            match k {
                1 => push(&mut w.macs, fixed(v, k)?, k)?,
                2 => once(&mut w.uuid, fixed(v, k)?, k)?,
                3 => once(&mut w.arch, u16::from_be_bytes(fixed(v, k)?), k)?,
                4 => once(&mut w.cpu_model, utf8(v, 64, k)?, k)?,
                5 => once(&mut w.cpu_count, u16::from_be_bytes(fixed(v, k)?), k)?,
                6 => once(&mut w.ram_mb, u32::from_be_bytes(fixed(v, k)?), k)?,
                7 => push(&mut w.disks_mb, u32::from_be_bytes(fixed(v, k)?), k)?,
                8 => {
                    let mut r = Reader::new(v, k);
                    let nic = Nic {
                        mac: r.array()?,
                        pci: PciId {
                            vendor: r.u16()?,
                            device: r.u16()?,
                        },
                    };
                    r.finish()?;
                    push(&mut w.nics, nic, k)?
                }
                9 => {
                    let mut r = Reader::new(v, k);
                    let id = PciId {
                        vendor: r.u16()?,
                        device: r.u16()?,
                    };
                    r.finish()?;
                    push(&mut w.pci, id, k)?
                }
                10 => {
                    if v.len() > 1024 {
                        return Err(ParseError::BadField { field: k });
                    }
                    once(&mut w.image_safe, v, k)?
                }
                11 => {
                    let mut r = Reader::new(v, k);
                    let ip = IpConfig {
                        mode: r.u8()?.into(),
                        address: r.ipv4()?,
                        netmask: r.ipv4()?,
                        gateway: r.ipv4()?,
                    };
                    r.finish()?;
                    once(&mut w.ip, ip, k)?
                }
                12 => push(&mut w.dns, Ipv4Addr::from(fixed::<4>(v, k)?), k)?,
                k if Smbios::owns(k) => w.smbios.parse_tlv(k, v)?,
                _ => {}
            }
        }
        if w.macs.is_empty() {
            return Err(ParseError::Missing { field: 1 });
        }
        Ok(w)
    }
}

impl Payload for WorkstationInfo<'_> {
    fn buffer_len(&self) -> usize {
        let opt = |present: bool, n: usize| if present { 3 + n } else { 0 };
        self.macs.len() * 9
            + opt(self.uuid.is_some(), 16)
            + opt(self.arch.is_some(), 2)
            + self.cpu_model.map_or(0, |s| 3 + s.len())
            + opt(self.cpu_count.is_some(), 2)
            + opt(self.ram_mb.is_some(), 4)
            + self.disks_mb.len() * 7
            + self.nics.len() * 13
            + self.pci.len() * 7
            + self.image_safe.map_or(0, |s| 3 + s.len())
            + opt(self.ip.is_some(), 13)
            + self.dns.len() * 7
            + self.smbios.buffer_len()
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        if self.macs.is_empty() {
            return Err(EmitError::FieldTooLong { field: 1 });
        }
        if let Some(m) = self.cpu_model {
            check_str(m, 64, 4)?;
        }
        if self.image_safe.is_some_and(|s| s.len() > 1024) {
            return Err(EmitError::FieldTooLong { field: 10 });
        }
        self.smbios.check()?;
        let mut w = Writer::new(out);
        for m in &self.macs {
            w.tlv(1, m)?;
        }
        if let Some(u) = &self.uuid {
            w.tlv(2, u)?;
        }
        if let Some(a) = self.arch {
            w.tlv(3, &a.to_be_bytes())?;
        }
        if let Some(m) = self.cpu_model {
            w.tlv(4, m.as_bytes())?;
        }
        if let Some(c) = self.cpu_count {
            w.tlv(5, &c.to_be_bytes())?;
        }
        if let Some(r) = self.ram_mb {
            w.tlv(6, &r.to_be_bytes())?;
        }
        for d in &self.disks_mb {
            w.tlv(7, &d.to_be_bytes())?;
        }
        for n in &self.nics {
            w.tlv_header(8, 10)?;
            w.put(&n.mac)?;
            w.u16(n.pci.vendor)?;
            w.u16(n.pci.device)?;
        }
        for p in &self.pci {
            w.tlv_header(9, 4)?;
            w.u16(p.vendor)?;
            w.u16(p.device)?;
        }
        if let Some(s) = self.image_safe {
            w.tlv(10, s)?;
        }
        if let Some(ip) = &self.ip {
            w.tlv_header(11, 13)?;
            w.u8(ip.mode.into())?;
            w.put(&ip.address.octets())?;
            w.put(&ip.netmask.octets())?;
            w.put(&ip.gateway.octets())?;
        }
        for d in &self.dns {
            w.tlv(12, &d.octets())?;
        }
        self.smbios.emit(&mut w)?;
        Ok(())
    }
}

/// `InfoAck` (§4.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InfoAck<'a> {
    /// TLV 1: the server knows the workstation as an object.
    pub registered: bool,
    /// TLV 2: the workstation's name on the server.
    pub name: Option<&'a str>,
}

impl<'a> InfoAck<'a> {
    /// Parse an `InfoAck` payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ParseError> {
        let mut registered = None;
        let mut name = None;
        for tlv in TlvIter::new(payload) {
            let tlv = tlv?;
            match tlv.kind {
                1 => once(&mut registered, fixed::<1>(tlv.value, 1)?[0] != 0, 1)?,
                2 => once(&mut name, utf8(tlv.value, 64, 2)?, 2)?,
                _ => {}
            }
        }
        Ok(InfoAck {
            registered: registered.ok_or(ParseError::Missing { field: 1 })?,
            name,
        })
    }
}

impl Payload for InfoAck<'_> {
    fn buffer_len(&self) -> usize {
        4 + self.name.map_or(0, |n| 3 + n.len())
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        let mut w = Writer::new(out);
        w.tlv(1, &[u8::from(self.registered)])?;
        if let Some(n) = self.name {
            check_str(n, 64, 2)?;
            w.tlv(2, n.as_bytes())?;
        }
        Ok(())
    }
}

/// Menu setting (§4.4 TLV 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MenuMode {
    /// Never show the menu.
    Never,
    /// Always show the menu.
    Always,
    /// Show it when the hotkey is pressed during boot.
    OnKeyPress,
    /// A value this version does not know.
    Unknown(u8),
}

impl From<u8> for MenuMode {
    fn from(v: u8) -> Self {
        match v {
            0 => MenuMode::Never,
            1 => MenuMode::Always,
            2 => MenuMode::OnKeyPress,
            x => MenuMode::Unknown(x),
        }
    }
}
impl From<MenuMode> for u8 {
    fn from(v: MenuMode) -> u8 {
        match v {
            MenuMode::Never => 0,
            MenuMode::Always => 1,
            MenuMode::OnKeyPress => 2,
            MenuMode::Unknown(x) => x,
        }
    }
}

/// Hotkey (§4.4 TLV 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hotkey {
    /// Modifier bits: 1 Ctrl, 2 Alt, 4 Shift.
    pub modifiers: u8,
    /// ASCII key (0x20..0x7E), a function key ([`Hotkey::F1`] ..
    /// [`Hotkey::F12`]), [`Hotkey::ENTER`], 0 = modifiers only.
    pub key: u8,
}

impl Hotkey {
    /// Key code of F1; F2..F12 follow (0x82..0x8C).
    pub const F1: u8 = 0x81;
    /// Key code of F12.
    pub const F12: u8 = 0x8C;
    /// Key code of Enter (carriage return, as a console sends it).
    pub const ENTER: u8 = 0x0D;
    /// Ctrl modifier bit.
    pub const CTRL: u8 = 1;
    /// Alt modifier bit.
    pub const ALT: u8 = 2;
    /// Shift modifier bit.
    pub const SHIFT: u8 = 4;
}

/// How to fetch a file (§4.4 TLV 5, §4.5 Environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// TFTP (unicast).
    Tftp,
    /// PXE MTFTP (multicast).
    Mtftp,
    /// A value this version does not know.
    Unknown(u8),
}

impl From<u8> for Fetch {
    fn from(v: u8) -> Self {
        match v {
            0 => Fetch::Tftp,
            1 => Fetch::Mtftp,
            x => Fetch::Unknown(x),
        }
    }
}
impl From<Fetch> for u8 {
    fn from(v: Fetch) -> u8 {
        match v {
            Fetch::Tftp => 0,
            Fetch::Mtftp => 1,
            Fetch::Unknown(x) => x,
        }
    }
}

/// A boot menu entry (§4.4 TLV 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MenuEntry<'a> {
    /// 1 automatic imaging, 2 maintenance, 3 disable imaging partition,
    /// 4 enable imaging partition, 5 exit/boot local disk; others kept.
    pub kind: u8,
    /// Label shown to the user (≤ 64 bytes).
    pub label: &'a str,
}

impl MenuEntry<'_> {
    /// Automatic imaging.
    pub const AUTOMATIC: u8 = 1;
    /// Maintenance/diagnostic mode.
    pub const MAINTENANCE: u8 = 2;
    /// Disable the imaging partition.
    pub const DISABLE_IMAGING_PARTITION: u8 = 3;
    /// Enable the imaging partition.
    pub const ENABLE_IMAGING_PARTITION: u8 = 4;
    /// Exit and boot the local disk.
    pub const BOOT_LOCAL: u8 = 5;
    /// Register this machine as a workstation object (§4.5).
    pub const REGISTER: u8 = 6;
}

/// `MenuReply` (§4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuReply<'a> {
    /// TLV 1: never / always / on key press.
    pub mode: MenuMode,
    /// TLV 2: the hotkey (for on key press).
    pub hotkey: Option<Hotkey>,
    /// TLV 3: how long to wait for the hotkey, in ms.
    pub wait_ms: Option<u32>,
    /// TLV 4: menu file name.
    pub menu_file: Option<&'a str>,
    /// TLV 5: how to fetch the menu file.
    pub fetch: Option<Fetch>,
    /// TLV 6: entries, in display order.
    pub entries: Vec<MenuEntry<'a>, 16>,
    /// TLV 7: the entry taken on Enter or when the choice times out
    /// (0-based index into `entries`; none: the first).
    pub default_entry: Option<u8>,
    /// TLV 8: how long the menu waits for a choice, in ms, before it takes
    /// the default entry.
    pub choice_timeout_ms: Option<u32>,
}

impl<'a> MenuReply<'a> {
    /// Parse a `MenuReply` payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ParseError> {
        let mut mode = None;
        let mut m = MenuReply {
            mode: MenuMode::Never,
            hotkey: None,
            wait_ms: None,
            menu_file: None,
            fetch: None,
            entries: Vec::new(),
            default_entry: None,
            choice_timeout_ms: None,
        };
        for tlv in TlvIter::new(payload) {
            let tlv = tlv?;
            let (k, v) = (tlv.kind, tlv.value);
            match k {
                1 => once(&mut mode, MenuMode::from(fixed::<1>(v, k)?[0]), k)?,
                2 => {
                    let [modifiers, key] = fixed(v, k)?;
                    once(&mut m.hotkey, Hotkey { modifiers, key }, k)?
                }
                3 => once(&mut m.wait_ms, u32::from_be_bytes(fixed(v, k)?), k)?,
                4 => once(&mut m.menu_file, utf8(v, 128, k)?, k)?,
                5 => once(&mut m.fetch, Fetch::from(fixed::<1>(v, k)?[0]), k)?,
                6 => {
                    let (&kind, label) =
                        v.split_first().ok_or(ParseError::BadField { field: k })?;
                    let label = utf8(label, 64, k)?;
                    push(&mut m.entries, MenuEntry { kind, label }, k)?
                }
                7 => once(&mut m.default_entry, fixed::<1>(v, k)?[0], k)?,
                8 => once(
                    &mut m.choice_timeout_ms,
                    u32::from_be_bytes(fixed(v, k)?),
                    k,
                )?,
                _ => {}
            }
        }
        m.mode = mode.ok_or(ParseError::Missing { field: 1 })?;
        Ok(m)
    }
}

impl Payload for MenuReply<'_> {
    fn buffer_len(&self) -> usize {
        4 + self.hotkey.map_or(0, |_| 5)
            + self.wait_ms.map_or(0, |_| 7)
            + self.menu_file.map_or(0, |f| 3 + f.len())
            + self.fetch.map_or(0, |_| 4)
            + self
                .entries
                .iter()
                .map(|e| 4 + e.label.len())
                .sum::<usize>()
            + self.default_entry.map_or(0, |_| 4)
            + self.choice_timeout_ms.map_or(0, |_| 7)
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        if let Some(f) = self.menu_file {
            check_str(f, 128, 4)?;
        }
        for e in &self.entries {
            check_str(e.label, 64, 6)?;
        }
        let mut w = Writer::new(out);
        w.tlv(1, &[self.mode.into()])?;
        if let Some(h) = self.hotkey {
            w.tlv(2, &[h.modifiers, h.key])?;
        }
        if let Some(ms) = self.wait_ms {
            w.tlv(3, &ms.to_be_bytes())?;
        }
        if let Some(f) = self.menu_file {
            w.tlv(4, f.as_bytes())?;
        }
        if let Some(f) = self.fetch {
            w.tlv(5, &[f.into()])?;
        }
        for e in &self.entries {
            w.tlv_header(6, 1 + e.label.len())?;
            w.u8(e.kind)?;
            w.put(e.label.as_bytes())?;
        }
        if let Some(d) = self.default_entry {
            w.tlv(7, &[d])?;
        }
        if let Some(t) = self.choice_timeout_ms {
            w.tlv(8, &t.to_be_bytes())?;
        }
        Ok(())
    }
}

/// What a task asks the workstation to do (§4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskAction<'a> {
    /// Kind 0: boot the local disk.
    BootLocal,
    /// Kind 1: restore an image.
    RestoreImage {
        /// Image server.
        server: Ipv4Addr,
        /// Image path on the server.
        image: &'a str,
        /// Partition numbers to restore (empty = all).
        partitions: Vec<u8, 16>,
    },
    /// Kind 2: create (upload) an image.
    CreateImage {
        /// Image server.
        server: Ipv4Addr,
        /// Upload target path.
        target: &'a str,
    },
    /// Kind 3: join a multicast imaging session.
    JoinMulticast {
        /// Session name.
        session: &'a str,
        /// Multicast group.
        group: Ipv4Addr,
        /// UDP port.
        port: u16,
        /// Start when this many members have joined…
        min_members: u16,
        /// …or this many seconds after the last join.
        wait_secs: u32,
    },
    /// Kind 4: run maintenance.
    Maintenance {
        /// Why / what to do.
        reason: &'a str,
    },
    /// A kind this version does not know: kept as raw body bytes.
    Unknown {
        /// Kind number.
        kind: u8,
        /// Body bytes.
        body: &'a [u8],
    },
}

/// One task (§4.5 TLV 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task<'a> {
    /// Task id (echoed by `TaskReport`).
    pub id: u32,
    /// What to do.
    pub action: TaskAction<'a>,
}

impl<'a> Task<'a> {
    fn parse(v: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(v, 1);
        let id = r.u32()?;
        let kind = r.u8()?;
        let action = match kind {
            0 => TaskAction::BootLocal,
            1 => {
                let server = r.ipv4()?;
                let image = r.str8()?;
                let n = usize::from(r.u8()?);
                let parts = r.bytes(n)?;
                let partitions =
                    Vec::from_slice(parts).map_err(|_| ParseError::TooMany { field: 1 })?;
                TaskAction::RestoreImage {
                    server,
                    image,
                    partitions,
                }
            }
            2 => TaskAction::CreateImage {
                server: r.ipv4()?,
                target: r.str8()?,
            },
            3 => TaskAction::JoinMulticast {
                session: r.str8()?,
                group: r.ipv4()?,
                port: r.u16()?,
                min_members: r.u16()?,
                wait_secs: r.u32()?,
            },
            4 => TaskAction::Maintenance { reason: r.str8()? },
            kind => TaskAction::Unknown {
                kind,
                body: r.rest(),
            },
        };
        r.finish()?;
        Ok(Task { id, action })
    }

    fn body_len(&self) -> usize {
        5 + match &self.action {
            TaskAction::BootLocal => 0,
            TaskAction::RestoreImage {
                image, partitions, ..
            } => 4 + str8_len(image) + 1 + partitions.len(),
            TaskAction::CreateImage { target, .. } => 4 + str8_len(target),
            TaskAction::JoinMulticast { session, .. } => str8_len(session) + 12,
            TaskAction::Maintenance { reason } => str8_len(reason),
            TaskAction::Unknown { body, .. } => body.len(),
        }
    }

    fn kind(&self) -> u8 {
        match &self.action {
            TaskAction::BootLocal => 0,
            TaskAction::RestoreImage { .. } => 1,
            TaskAction::CreateImage { .. } => 2,
            TaskAction::JoinMulticast { .. } => 3,
            TaskAction::Maintenance { .. } => 4,
            TaskAction::Unknown { kind, .. } => *kind,
        }
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.tlv_header(1, self.body_len())?;
        w.u32(self.id)?;
        w.u8(self.kind())?;
        match &self.action {
            TaskAction::BootLocal => Ok(()),
            TaskAction::RestoreImage {
                server,
                image,
                partitions,
            } => {
                w.put(&server.octets())?;
                w.str8(image, 1)?;
                w.u8(partitions.len() as u8)?;
                w.put(partitions)
            }
            TaskAction::CreateImage { server, target } => {
                w.put(&server.octets())?;
                w.str8(target, 1)
            }
            TaskAction::JoinMulticast {
                session,
                group,
                port,
                min_members,
                wait_secs,
            } => {
                w.str8(session, 1)?;
                w.put(&group.octets())?;
                w.u16(*port)?;
                w.u16(*min_members)?;
                w.u32(*wait_secs)
            }
            TaskAction::Maintenance { reason } => w.str8(reason, 1),
            TaskAction::Unknown { body, .. } => w.put(body),
        }
    }
}

/// The imaging environment to load next (§4.5 TLV 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Environment<'a> {
    /// TFTP or MTFTP.
    pub fetch: Fetch,
    /// Kernel file name.
    pub kernel: &'a str,
    /// Initrd file name.
    pub initrd: &'a str,
    /// Loader file name.
    pub loader: &'a str,
}

/// A per-task credential for an image store (§4.5 TLV 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskToken {
    /// The task it belongs to.
    pub task_id: u32,
    /// 32 random bytes.
    pub token: [u8; 32],
}

/// `TaskReply` (§4.5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskReply<'a> {
    /// Tasks in execution order; empty = boot the local disk.
    pub tasks: Vec<Task<'a>, 8>,
    /// The imaging environment to load.
    pub environment: Option<Environment<'a>>,
    /// TLV 3: per-task tokens.
    pub tokens: Vec<TaskToken, 8>,
    /// TLV 4: multicast session details, per task (§4.5.1).
    pub multicast: Vec<super::multicast::MulticastInfo<'a>, 8>,
    /// TLV 5: a change the client writes into its image-safe data.
    pub image_safe: Option<ImageSafeUpdate>,
    /// TLV 6: the environment's files by MTFTP, one per file (§4.5.2).
    pub environment_multicast: Vec<EnvironmentMulticast, 3>,
}

impl<'a> TaskReply<'a> {
    /// Parse a `TaskReply` payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ParseError> {
        let mut t = TaskReply::default();
        for tlv in TlvIter::new(payload) {
            let tlv = tlv?;
            match tlv.kind {
                1 => push(&mut t.tasks, Task::parse(tlv.value)?, 1)?,
                2 => {
                    let mut r = Reader::new(tlv.value, 2);
                    let env = Environment {
                        fetch: r.u8()?.into(),
                        kernel: r.str8()?,
                        initrd: r.str8()?,
                        loader: r.str8()?,
                    };
                    r.finish()?;
                    once(&mut t.environment, env, 2)?
                }
                3 => {
                    let mut r = Reader::new(tlv.value, 3);
                    let tok = TaskToken {
                        task_id: r.u32()?,
                        token: r.array()?,
                    };
                    r.finish()?;
                    push(&mut t.tokens, tok, 3)?
                }
                4 => push(
                    &mut t.multicast,
                    super::multicast::MulticastInfo::parse(tlv.value)?,
                    4,
                )?,
                ImageSafeUpdate::TLV => {
                    once(&mut t.image_safe, ImageSafeUpdate::parse(tlv.value)?, 5)?
                }
                ENVIRONMENT_MULTICAST_TLV => push(
                    &mut t.environment_multicast,
                    EnvironmentMulticast::parse(tlv.value)?,
                    ENVIRONMENT_MULTICAST_TLV,
                )?,
                _ => {}
            }
        }
        Ok(t)
    }
}

impl Payload for TaskReply<'_> {
    fn buffer_len(&self) -> usize {
        self.tasks.iter().map(|t| 3 + t.body_len()).sum::<usize>()
            + self.environment.map_or(0, |e| {
                4 + str8_len(e.kernel) + str8_len(e.initrd) + str8_len(e.loader)
            })
            + self.tokens.len() * 39
            + self
                .multicast
                .iter()
                .map(|m| 3 + m.value_len())
                .sum::<usize>()
            + self.image_safe.as_ref().map_or(0, |u| 3 + u.value_len())
            + self.environment_multicast.len() * (3 + ENVIRONMENT_MULTICAST_LEN)
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        let mut w = Writer::new(out);
        for t in &self.tasks {
            t.emit(&mut w)?;
        }
        if let Some(e) = &self.environment {
            let len = 1 + str8_len(e.kernel) + str8_len(e.initrd) + str8_len(e.loader);
            w.tlv_header(2, len)?;
            w.u8(e.fetch.into())?;
            w.str8(e.kernel, 2)?;
            w.str8(e.initrd, 2)?;
            w.str8(e.loader, 2)?;
        }
        for t in &self.tokens {
            w.tlv_header(3, 36)?;
            w.u32(t.task_id)?;
            w.put(&t.token)?;
        }
        for m in &self.multicast {
            m.emit(&mut w)?;
        }
        if let Some(u) = &self.image_safe {
            u.emit(&mut w)?;
        }
        for m in &self.environment_multicast {
            m.emit(&mut w)?;
        }
        Ok(())
    }
}

/// Outcome of a task (§4.6 TLV 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still running.
    Progress,
    /// Done.
    Success,
    /// Failed (see the reason).
    Failure,
    /// A value this version does not know.
    Unknown(u8),
}

impl From<u8> for Outcome {
    fn from(v: u8) -> Self {
        match v {
            0 => Outcome::Progress,
            1 => Outcome::Success,
            2 => Outcome::Failure,
            x => Outcome::Unknown(x),
        }
    }
}
impl From<Outcome> for u8 {
    fn from(v: Outcome) -> u8 {
        match v {
            Outcome::Progress => 0,
            Outcome::Success => 1,
            Outcome::Failure => 2,
            Outcome::Unknown(x) => x,
        }
    }
}

/// `TaskReport` (§4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskReport<'a> {
    /// TLV 1: the task id from `TaskReply`.
    pub task_id: u32,
    /// TLV 2: progress, success or failure.
    pub outcome: Outcome,
    /// TLV 3: percent done (0–100).
    pub percent: Option<u8>,
    /// TLV 4: reason (≤ 128 bytes).
    pub reason: Option<&'a str>,
}

impl<'a> TaskReport<'a> {
    /// Parse a `TaskReport` payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ParseError> {
        let (mut id, mut outcome, mut percent, mut reason) = (None, None, None, None);
        for tlv in TlvIter::new(payload) {
            let tlv = tlv?;
            let (k, v) = (tlv.kind, tlv.value);
            match k {
                1 => once(&mut id, u32::from_be_bytes(fixed(v, k)?), k)?,
                2 => once(&mut outcome, Outcome::from(fixed::<1>(v, k)?[0]), k)?,
                3 => {
                    let p = fixed::<1>(v, k)?[0];
                    if p > 100 {
                        return Err(ParseError::BadField { field: k });
                    }
                    once(&mut percent, p, k)?
                }
                4 => once(&mut reason, utf8(v, 128, k)?, k)?,
                _ => {}
            }
        }
        Ok(TaskReport {
            task_id: id.ok_or(ParseError::Missing { field: 1 })?,
            outcome: outcome.ok_or(ParseError::Missing { field: 2 })?,
            percent,
            reason,
        })
    }
}

impl Payload for TaskReport<'_> {
    fn buffer_len(&self) -> usize {
        7 + 4 + self.percent.map_or(0, |_| 4) + self.reason.map_or(0, |r| 3 + r.len())
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        if let Some(r) = self.reason {
            check_str(r, 128, 4)?;
        }
        let mut w = Writer::new(out);
        w.tlv(1, &self.task_id.to_be_bytes())?;
        w.tlv(2, &[self.outcome.into()])?;
        if let Some(p) = self.percent {
            w.tlv(3, &[p])?;
        }
        if let Some(r) = self.reason {
            w.tlv(4, r.as_bytes())?;
        }
        Ok(())
    }
}
