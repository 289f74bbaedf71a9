//! The policy data: workstation objects, workstation policies, the server
//! policy, imaging rules and multicast sessions.

use super::condition::Condition;
use super::multicast::{AfterRun, LateJoin};
use crate::wire::transaction::messages::{Fetch, Hotkey, MenuMode};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

pub use crate::workstation::WorkstationId;

/// A menu setting (§4.4): mode plus hotkey and wait for *on key press*.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MenuSetting {
    /// Never, always or on key press.
    pub mode: MenuMode,
    /// Hotkey (on key press).
    pub hotkey: Hotkey,
    /// How long to wait for the hotkey, in ms.
    pub wait_ms: u32,
}

impl MenuSetting {
    /// The default when nothing is configured: on key press, Ctrl+Alt, 3 s.
    pub const DEFAULT: MenuSetting = MenuSetting::on_key_press(
        Hotkey {
            modifiers: Hotkey::CTRL | Hotkey::ALT,
            key: 0,
        },
        3_000,
    );
    /// Never show the menu.
    pub const fn never() -> Self {
        MenuSetting {
            mode: MenuMode::Never,
            ..Self::DEFAULT
        }
    }
    /// Always show the menu.
    pub const fn always() -> Self {
        MenuSetting {
            mode: MenuMode::Always,
            ..Self::DEFAULT
        }
    }
    /// Show it when `hotkey` is pressed within `wait_ms`.
    pub const fn on_key_press(hotkey: Hotkey, wait_ms: u32) -> Self {
        MenuSetting {
            mode: MenuMode::OnKeyPress,
            hotkey,
            wait_ms,
        }
    }
}

/// A registered workstation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkstationObject {
    /// Identity (MAC or UUID).
    pub id: WorkstationId,
    /// Name.
    pub name: String,
    /// Name of its workstation policy.
    pub policy: Option<String>,
    /// Per-object menu setting (wins over policies).
    pub menu: Option<MenuSetting>,
    /// Attribute "put an image on next boot".
    pub image_next_boot: bool,
    /// The image for "image on next boot" (else the first matching rule's).
    pub image: Option<String>,
    /// Attribute "create an image" with its upload target.
    pub create_image: Option<String>,
    /// Attribute "run maintenance".
    pub maintenance: bool,
    /// Last base image reported applied (state kept by the proxy).
    pub last_image: Option<String>,
    /// Its own menu entries (win over the policies', issue 15).
    pub menu_entries: Option<MenuEntries>,
}

impl WorkstationObject {
    /// A plain object with no attributes.
    pub fn new(id: WorkstationId, name: &str) -> Self {
        WorkstationObject {
            id,
            name: name.into(),
            policy: None,
            menu: None,
            image_next_boot: false,
            image: None,
            create_image: None,
            maintenance: false,
            last_image: None,
            menu_entries: None,
        }
    }
}

/// An imaging rule: first match wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagingRule {
    /// Name (for logs).
    pub name: String,
    /// When it applies.
    pub when: Condition,
    /// The image it puts on the disk.
    pub image: String,
    /// Restore even if the same base image is already on the disk.
    pub force: bool,
    /// Partitions to restore (empty = all).
    pub partitions: Vec<u8>,
}

/// A workstation policy (shared by many objects).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkstationPolicy {
    /// Name the objects refer to.
    pub name: String,
    /// Menu setting.
    pub menu: Option<MenuSetting>,
    /// Imaging rules, in order.
    pub rules: Vec<ImagingRule>,
    /// Menu entries (win over the server policy's, issue 15).
    pub menu_entries: Option<MenuEntries>,
}

/// The boot menu's entries at one level — workstation object,
/// workstation policy, server policy (§4.4 TLVs 6–8): the first level
/// with entries gives them all, with its default and timeout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MenuEntries {
    /// Entries, in display order (≤ 16).
    pub entries: Vec<MenuEntrySpec>,
    /// The entry taken on Enter or at the timeout (0-based; none: the
    /// first).
    pub default: Option<u8>,
    /// How long the menu waits for a choice, in ms.
    pub timeout_ms: Option<u32>,
}

/// A boot menu entry (§4.4 TLV 6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuEntrySpec {
    /// Entry kind (see `MenuEntry` constants).
    pub kind: u8,
    /// Label.
    pub label: String,
}

/// The imaging environment (§4.5 Environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentSpec {
    /// TFTP or MTFTP.
    pub fetch: Fetch,
    /// Kernel file name.
    pub kernel: String,
    /// Initrd file name.
    pub initrd: String,
    /// Loader file name.
    pub loader: String,
}

/// The server policy: what applies to every workstation, and alone to
/// unregistered ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPolicy {
    /// Menu setting (after object and workstation policy).
    pub menu: Option<MenuSetting>,
    /// Menu file name.
    pub menu_file: Option<String>,
    /// How to fetch the menu file.
    pub menu_fetch: Fetch,
    /// Menu entries (after the object's and the workstation policy's).
    pub menu_entries: Vec<MenuEntrySpec>,
    /// The server policy's default entry (0-based index).
    pub menu_default: Option<u8>,
    /// The server policy's menu timeout, in ms.
    pub menu_timeout_ms: Option<u32>,
    /// Imaging rules (after the workstation policy's).
    pub rules: Vec<ImagingRule>,
    /// Server that holds the images.
    pub image_server: Ipv4Addr,
    /// Imaging environment to load when there is work.
    pub environment: Option<EnvironmentSpec>,
    /// Where an image is uploaded when the workstation's image-safe data
    /// asks to create one and no workstation object names a target: a
    /// template, `{id}` replaced by the workstation's identity and
    /// `{name}` by its object's name (docs/policy.md). `None`: such a
    /// request is not honoured (and holds any restore back).
    pub upload_target: Option<String>,
    /// Register unknown workstations (automatically, or from the menu).
    pub register: Option<super::registration::RegisterSetting>,
    /// Static addresses for image-safe data without IP settings.
    pub ip_pool: Option<super::ip_pool::IpPool>,
}

impl Default for ServerPolicy {
    fn default() -> Self {
        ServerPolicy {
            menu: None,
            menu_file: None,
            menu_fetch: Fetch::Tftp,
            menu_entries: Vec::new(),
            menu_default: None,
            menu_timeout_ms: None,
            rules: Vec::new(),
            image_server: Ipv4Addr::UNSPECIFIED,
            environment: None,
            upload_target: None,
            register: None,
            ip_pool: None,
        }
    }
}

/// A multicast imaging session: the imaging proxy runs it in runs that
/// start, run and finish (docs/transaction-protocol.md §4.8.1);
/// [`MulticastSession::new`] has the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MulticastSession {
    /// Name.
    pub name: String,
    /// Disabled sessions are skipped.
    pub enabled: bool,
    /// The image it sends…
    pub image: Option<String>,
    /// …or the master workstation whose disk it sends.
    pub master: Option<WorkstationId>,
    /// Explicit members.
    pub members: Vec<WorkstationId>,
    /// Members by rule.
    pub member_rule: Option<Condition>,
    /// Multicast group.
    pub group: Ipv4Addr,
    /// UDP port.
    pub port: u16,
    /// Start when this many members joined (0: not by count)…
    pub start_members: u16,
    /// …or this many seconds after the last new member joined (0: not by
    /// time).
    pub start_after_secs: u32,
    /// Waiting members ask again after this many seconds (§4.5.1).
    pub poll_secs: u16,
    /// A run not finished this many seconds after its start ends (0:
    /// never).
    pub timeout_secs: u32,
    /// What a run's end does to the session (default: disable).
    pub after: AfterRun,
    /// What happens to a workstation that asks after the start (default:
    /// refused).
    pub late: LateJoin,
}
