//! Server configuration: mode, boot files per client architecture, the PXE
//! boot menu policy, address pools and reservations.
//!
//! Everything here is plain data with fixed capacities (`heapless`), so the
//! server engine builds without an allocator. The std driver fills it from
//! its own configuration type.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use heapless::{String, Vec};

use super::BootArch;

/// Longest boot file name or URL: the BOOTP `file` field is 128 bytes.
pub const BOOT_FILE_LEN: usize = 127;
/// Longest menu item description or prompt text (PXE 2.1 §2.4.5 limits a
/// sub-option to 255 bytes; descriptions are shown on one 80-column line).
pub const TEXT_LEN: usize = 64;
/// Most boot menu items.
pub const MAX_MENU_ITEMS: usize = 8;
/// Most bytes in one PXE vendor sub-option (PXE 2.1 §2.4.5: a one-byte
/// length). RFC 3396 long options split option 43 itself, never a
/// sub-option inside it.
pub const SUBOPTION_MAX: usize = 255;
/// Default [`ServerConfig::max_declined_percent`].
pub const DEFAULT_MAX_DECLINED_PERCENT: u8 = 10;
/// Most address pools.
pub const MAX_POOLS: usize = 8;
/// Most static reservations.
pub const MAX_RESERVATIONS: usize = 64;
/// Longest client identifier (option 61) a reservation can match.
pub const CLIENT_ID_LEN: usize = 32;

/// A boot file name (BOOTP `file` field) or, for HTTP-boot clients, a URL.
pub type BootFileName = String<BOOT_FILE_LEN>;
/// A short text (menu item description, menu prompt).
pub type Text = String<TEXT_LEN>;

/// What the server does with addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// proxyDHCP (PXE 2.1 §2.2.2): lives beside a DHCP server the user cannot
    /// change, answers only PXE/HTTP-boot clients and never hands out
    /// addresses.
    #[default]
    Proxy,
    /// A full RFC 2131 server: pools, leases, reservations, relays, and the
    /// boot file in the same answer.
    Full,
}

/// PXE MTFTP parameters (option 43 sub-options 1–5, PXE 2.1 §2.4.5): a file
/// fetched by multicast. Never sent to UEFI clients (EDK2 discards offers
/// that carry them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MtftpParams {
    /// Sub-option 1 MTFTP_IP: the multicast group.
    pub ip: Ipv4Addr,
    /// Sub-option 2 MTFTP_CPORT: the client port.
    pub client_port: u16,
    /// Sub-option 3 MTFTP_SPORT: the server port.
    pub server_port: u16,
    /// Sub-option 4 MTFTP_TMOUT: seconds to listen before opening.
    pub timeout_secs: u8,
    /// Sub-option 5 MTFTP_DELAY: seconds to wait before reopening.
    pub delay_secs: u8,
}

/// The boot file for one client architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEntry {
    /// The file name (TFTP) or URL (HTTP boot).
    pub file: BootFileName,
    /// The TFTP server (`siaddr`) for this file; `None` = the server's
    /// [`ServerConfig::tftp_server`].
    pub server: Option<Ipv4Addr>,
    /// Fetch by PXE MTFTP (BIOS clients only).
    pub mtftp: Option<MtftpParams>,
}

impl BootEntry {
    /// A TFTP boot file on the default TFTP server. Names longer than
    /// [`BOOT_FILE_LEN`] bytes are refused.
    pub fn tftp(file: &str) -> Option<Self> {
        Some(BootEntry {
            file: BootFileName::try_from(file).ok()?,
            server: None,
            mtftp: None,
        })
    }
}

/// Most architectures with a boot file of their own in one configuration
/// (the table has 43 boot classes; a server configures a few).
pub const MAX_BOOT_FILES: usize = 16;

/// Boot files by client architecture (RFC 4578 §2.1 option 93, IANA
/// "Processor Architecture Types"), keyed by the [`BootArch`] of the
/// architecture table: a small map of at most [`MAX_BOOT_FILES`] entries,
/// kept in table order (so that a configuration of a few files stays
/// small without an allocator). An architecture without an entry gets no
/// offer at all, never a wrong file; an HTTP-boot architecture without its
/// own URL gets [`BootArch::Http`]'s (`http_url`).
///
/// ```
/// use preboot::dhcp::BootArch;
/// use preboot::dhcp::config::{BootEntry, BootFiles};
/// let mut files = BootFiles::default();
/// files.set(BootArch::UefiRiscV64, BootEntry::tftp("riscv64/bootriscv64.efi"));
/// assert_eq!(BootArch::from_code(27).entry(&files).unwrap().file.as_str(), "riscv64/bootriscv64.efi");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootFiles {
    files: Vec<(BootArch, BootEntry), MAX_BOOT_FILES>,
    /// Given instead of the architecture's file to a client that is already
    /// iPXE (option 77 `iPXE` or option 175 present), so the chainload ends.
    pub ipxe: Option<BootEntry>,
}

impl BootFiles {
    /// The architecture's own entry (no `http_url` fallback: see
    /// [`BootArch::entry`]).
    pub fn get(&self, arch: BootArch) -> Option<&BootEntry> {
        self.files.iter().find(|(a, _)| *a == arch).map(|(_, e)| e)
    }

    /// The architecture's own entry, to change it in place.
    pub fn get_mut(&mut self, arch: BootArch) -> Option<&mut BootEntry> {
        self.files
            .iter_mut()
            .find(|(a, _)| *a == arch)
            .map(|(_, e)| e)
    }

    /// Set (or with `None` clear) the architecture's entry. Returns `false`
    /// (and changes nothing) for [`BootArch::Other`], which boots nothing,
    /// and for a new architecture beyond [`MAX_BOOT_FILES`].
    pub fn set(&mut self, arch: BootArch, entry: Option<BootEntry>) -> bool {
        if arch.slot().is_none() {
            return false;
        }
        let at = self.files.iter().position(|(a, _)| *a == arch);
        match (at, entry) {
            (Some(i), Some(e)) => self.files[i].1 = e,
            (Some(i), None) => {
                self.files.remove(i);
            }
            (None, Some(e)) => {
                if self.files.push((arch, e)).is_err() {
                    return false;
                }
                self.files.sort_unstable_by_key(|(a, _)| *a);
            }
            (None, None) => {}
        }
        true
    }

    /// The configured architectures and their entries, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (BootArch, &BootEntry)> {
        self.files.iter().map(|(a, e)| (*a, e))
    }
}

/// When the PXE boot menu is shown (option 43 sub-options 9 and 10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MenuPolicy {
    /// No menu: the client boots the file at once.
    #[default]
    Never,
    /// The menu is shown and waits without timeout (prompt timeout 255).
    Always,
    /// A prompt ("Press F8 for boot menu") waits this many seconds (1–254)
    /// for the key; without it the first item boots.
    OnKeyPress {
        /// Seconds the prompt waits.
        timeout_secs: u8,
    },
}

/// One boot menu item (sub-option 9) and its boot server type (sub-option 8
/// and 71).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuItem {
    /// Boot server type (PXE 2.1 Table 2-4; 0 = local boot; 0x8000–0xFFFE
    /// vendor types).
    pub server_type: u16,
    /// Text shown in the menu.
    pub description: Text,
    /// File for this item (layer 0); `None` = the architecture's file.
    pub file: Option<BootFileName>,
}

/// The PXE boot menu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Menu {
    /// When to show it.
    pub policy: MenuPolicy,
    /// The prompt text (sub-option 10).
    pub prompt: Text,
    /// The items; the first is the default.
    pub items: Vec<MenuItem, MAX_MENU_ITEMS>,
}

/// A menu whose boot menu sub-option (9) would not fit in 255 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the boot menu (PXE option 43 sub-option 9) would be {bytes} bytes: a sub-option holds at most {SUBOPTION_MAX} (3 bytes per item plus its label); shorten the labels or use fewer items"
)]
pub struct MenuTooLong {
    /// Bytes the sub-option would need.
    pub bytes: usize,
}

impl Menu {
    /// Bytes of the boot menu sub-option (9) this menu makes: per item a
    /// 2-byte type, a 1-byte length and the description (PXE 2.1 §2.4.5).
    /// The other sub-options beside it (8 boot servers: 7 bytes per item;
    /// 10 prompt: 1 + [`TEXT_LEN`]) always fit by construction.
    pub fn boot_menu_len(&self) -> usize {
        self.items.iter().map(|i| 3 + i.description.len()).sum()
    }

    /// Whether the menu fits in its sub-option. A menu that does not would
    /// make every answer carrying it fail to encode; configuration layers
    /// refuse it at load.
    pub fn check(&self) -> Result<(), MenuTooLong> {
        match self.boot_menu_len() {
            bytes if bytes > SUBOPTION_MAX => Err(MenuTooLong { bytes }),
            _ => Ok(()),
        }
    }
}

impl Default for Menu {
    fn default() -> Self {
        let mut items = Vec::new();
        // A single vendor-type item: the boot file for the client's arch.
        let _ = items.push(MenuItem {
            server_type: 0x8000,
            description: Text::try_from("preboot").unwrap_or_default(),
            file: None,
        });
        Menu {
            policy: MenuPolicy::Never,
            prompt: Text::try_from("Press F8 for boot menu").unwrap_or_default(),
            items,
        }
    }
}

/// An address pool for one subnet (full mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// The subnet's network address.
    pub subnet: Ipv4Addr,
    /// The subnet's prefix length (option 1 is derived from it).
    pub prefix_len: u8,
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out (inclusive).
    pub end: Ipv4Addr,
    /// Option 3.
    pub router: Option<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr, 3>,
    /// Option 51.
    pub lease_time: Duration,
}

impl Pool {
    /// The subnet mask (option 1).
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }

    /// Whether `addr` is inside this pool's subnet.
    pub fn subnet_contains(&self, addr: Ipv4Addr) -> bool {
        let m = prefix_mask(self.prefix_len);
        u32::from(addr) & m == u32::from(self.subnet) & m
    }

    /// Addresses in the handed-out range.
    pub fn size(&self) -> u32 {
        (u32::from(self.end).saturating_sub(u32::from(self.start))).saturating_add(1)
    }

    /// Whether `addr` is inside the handed-out range.
    pub fn range_contains(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        a >= u32::from(self.start) && a <= u32::from(self.end)
    }

    /// The subnet's broadcast address (option 28).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) | !prefix_mask(self.prefix_len))
    }
}

fn prefix_mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n if n >= 32 => u32::MAX,
        n => u32::MAX << (32 - u32::from(n)),
    }
}

/// Who a reservation is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReservationKey {
    /// The client hardware address (`chaddr`, 6 bytes).
    Mac([u8; 6]),
    /// The client identifier (option 61, RFC 4361), type byte included.
    ClientId(Vec<u8, CLIENT_ID_LEN>),
}

/// A static address for one client (full mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Who.
    pub key: ReservationKey,
    /// The address; it must lie in a pool's subnet (it may lie outside the
    /// pool's range).
    pub address: Ipv4Addr,
}

/// Per-client rate limit: a token bucket per client hardware address and
/// one per client identifier (option 61); see [`super::rate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained packets per second per MAC.
    pub per_second: u32,
    /// Burst size per MAC.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 10,
            burst: 20,
        }
    }
}

/// The transaction server named to PXE clients (option 43 sub-options 128
/// and 129, vendor range; docs/transaction-protocol.md, "How the preboot
/// client finds the transaction server"), and what a client learnt from
/// them ([`BootInfo::transaction`](super::client::BootInfo::transaction)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransactionServer {
    /// Sub-option 128: its IPv4 address and UDP port.
    pub address: SocketAddrV4,
    /// Sub-option 129: its static X25519 public key, if given. Learnt over
    /// unauthenticated DHCP: trust on first use at best; a key the preboot
    /// client pins wins (docs/security.md).
    pub public_key: Option<[u8; 32]>,
}

/// Everything the server engine needs to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Proxy (default) or full mode.
    pub mode: Mode,
    /// Option 54, the server's address on the client's network.
    pub server_id: Ipv4Addr,
    /// `siaddr`: the TFTP ("next") server, unless a [`BootEntry`] names one.
    pub tftp_server: Ipv4Addr,
    /// Boot files by architecture.
    pub boot: BootFiles,
    /// The PXE boot menu.
    pub menu: Menu,
    /// Address pools (full mode); the first whose subnet holds `giaddr` (or,
    /// without relay, `server_id`) serves the client.
    pub pools: Vec<Pool, MAX_POOLS>,
    /// Static reservations (full mode).
    pub reservations: Vec<Reservation, MAX_RESERVATIONS>,
    /// How long an offered address stays held for the client.
    pub offer_hold: Duration,
    /// How long a declined address stays out of use (RFC 2131 §4.3.3).
    pub decline_probation: Duration,
    /// Per-client rate limit (per hardware address and per client id).
    pub rate_limit: RateLimit,
    /// Most addresses of one pool that DECLINEs may put on probation at a
    /// time, in percent of the pool's range (at least one address when not
    /// 0). Beyond it a DECLINE is ignored (with
    /// [`Event::DeclineIgnored`](super::server::Event::DeclineIgnored)) and
    /// the address stays in use, so hostile clients cannot empty the pool
    /// by declining every address. Pools are chosen by relay (`giaddr`) or
    /// by the server's own subnet, so this is a budget per relay or
    /// interface. 0 = declines never take an address out of use; 100 = no
    /// limit.
    pub max_declined_percent: u8,
    /// Also answer (proxy mode) or serve boot files to (full mode) clients
    /// that are not PXE clients? Full mode always gives addresses to anyone;
    /// this only adds boot information for non-PXE clients.
    pub boot_non_pxe: bool,
    /// The local port of the boot server socket (default 4011): a
    /// datagram whose `local` port is this one is a boot server request,
    /// any other a DHCP one (67). 0: no boot server socket. A driver that
    /// binds the boot server to another port (or lets the system pick one)
    /// sets the port it got.
    pub boot_port: u16,
    /// The transaction server to name in answers to PXE clients (option 43
    /// sub-options 128 and 129: proxy OFFERs, 4011 ACKs, full-mode
    /// OFFERs and ACKs); `None` = none named. They go after the standard
    /// sub-options, and only when option 43 then still fits one 255-byte
    /// option (firmware reads the first instance of a split option 43
    /// only, and EDK2 walks it with an 8-bit offset).
    pub transaction: Option<TransactionServer>,
}

impl ServerConfig {
    /// A proxy-mode configuration with no boot files yet.
    pub fn proxy(server_id: Ipv4Addr) -> Self {
        ServerConfig {
            mode: Mode::Proxy,
            server_id,
            tftp_server: server_id,
            boot: BootFiles::default(),
            menu: Menu::default(),
            pools: Vec::new(),
            reservations: Vec::new(),
            offer_hold: Duration::from_secs(30),
            decline_probation: Duration::from_secs(600),
            rate_limit: RateLimit::default(),
            max_declined_percent: DEFAULT_MAX_DECLINED_PERCENT,
            boot_non_pxe: false,
            boot_port: super::server::BOOT_SERVER_PORT,
            transaction: None,
        }
    }

    /// A full-mode configuration with no pool and no boot files yet.
    pub fn full(server_id: Ipv4Addr) -> Self {
        ServerConfig {
            mode: Mode::Full,
            ..ServerConfig::proxy(server_id)
        }
    }
}
