//! The policy store ([`crate::policy`]) loaded from a TOML file. Every
//! error names the file, the line and column, and the field
//! ([`super::config_file`]).
//!
//! ```toml
//! [server]
//! image_server = "10.0.0.5"
//! menu = { mode = "on-key-press", hotkey = "ctrl+alt", wait_ms = 3000 }
//! menu_file = "preboot/menu.txt"
//! menu_fetch = "tftp"                    # or "mtftp"
//! menu_entry = [ { kind = "automatic", label = "Automatic imaging" },
//!                { kind = "boot-local", label = "Boot the local disk" } ]
//! menu_default = 2                       # 1-based: Enter or the timeout takes it
//! menu_timeout_ms = 10000                # menu_entry / menu_default / menu_timeout_ms
//!                                        # also in [[policy]] and [[workstation]]:
//!                                        # the first level with entries wins
//! # hotkeys: ctrl, alt, shift and one key: a letter, f1..f12 or enter
//! environment = { fetch = "tftp", kernel = "imaging/linux", initrd = "imaging/initrd", loader = "imaging/loader.efi" }
//! upload_target = "uploads/{name}-{id}.img" # captures the image-safe data asks for (docs/policy.md)
//! # register unknown workstations (issue 15): name template with {mac},
//! # {uuid}, {serial}, {n}; automatic = false: only from the menu entry
//! # kind "register"
//! register = { name = "lab-{mac}", automatic = true }
//! # static addresses for image-safe data without IP settings (issue 15)
//! ip_pool = { range = "10.0.0.100-10.0.0.199", netmask = "255.255.255.0", gateway = "10.0.0.1", dns = ["10.0.0.2"] }
//!
//! [[server.rule]]                          # server rules: unregistered workstations only
//! name = "big machines"
//! image = "images/win11.img"
//! when = { all = [ { ram_mb = ">= 8192" }, { arch = "efi-x64" } ] }
//!
//! [[policy]]
//! name = "lab"
//! menu = { mode = "always" }
//! [[policy.rule]]                          # for its flagged workstations with no image
//! image = "images/lab.img"
//! force = true
//! partitions = [1, 2]
//! when = { any = [ { mac_prefix = "52:54:00" }, { ip_subnet = "10.1.0.0/16" } ] }
//!
//! [[workstation]]
//! mac = "52:54:00:12:34:56"                # or uuid = "…"
//! name = "lab-pc-07"
//! policy = "lab"
//! image_next_boot = true                   # optional attributes
//!
//! [[multicast]]
//! name = "monday"
//! image = "images/lab.img"                 # or master = "<mac>"
//! members = ["52:54:00:12:34:56"]
//! member_rule = { pci = "8086:1533" }
//! group = "239.1.1.1"
//! port = 5000
//! start_members = 10                       # default 5 (ZENworks); 0: not by count
//! start_after_secs = 300                   # default 900 = 15 min after the last join; 0: not by time
//! poll_secs = 30                           # waiting members ask again after this (default 30)
//! timeout_secs = 14400                     # a run ends this long after its start (default 4 h; 0: never)
//! after = "disable"                        # after a run: "disable" (default), "delete" or "keep"
//! late = "refuse"                          # asking after the start: "refuse" (default) or "next" (next run)
//! ```
//!
//! The same file (or a separate, more tightly protected one) may hold the
//! transaction keys (docs/transaction-protocol.md §12), read by
//! [`load_keys`]; [`load`] accepts and ignores the section. Every key is
//! exactly 32 bytes, as 64 hex digits or base64 — never a passphrase:
//!
//! ```toml
//! [keys]
//! server_private = "<32 random bytes: head -c 32 /dev/urandom | base64>"
//! auto_enrol = false                       # §3.4, default false
//! workstation = [
//!   { mac = "52:54:00:12:34:56", public = "<the workstation's public key, hex or base64>" },
//!   { uuid = "01234567-89ab-cdef-0123-456789abcdef", public = "<hex or base64>" },
//! ]
//! ```
//!
//! Condition keys: `all`, `any`, `not`, `ram_mb`, `disk_mb`, `cpu_count`
//! (a number, or a string `"<op> <number>"` with `<`, `<=`, `=`, `==`,
//! `!=`, `>=`, `>`), `cpu_model` (substring), `mac_prefix`, `ip_subnet`,
//! `arch` (an IANA number, matched exactly, or a boot class by the names of
//! the architecture table: the `[boot]` keys `bios`, `uefi_x64` (7 and 9),
//! `uefi_arm32`, `uefi_riscv64`, `uboot_arm64`, `http_x64`, `http_url` (any
//! HTTP-boot client), … or their log names `uefi-x64`, …; the older
//! `efi-x64`, `efi-bc`, `efi-arm64-http`, … still work), `pci` (`"vvvv"` or
//! `"vvvv:dddd"`), `base_image` (string, or `""` for "no base image").
//! Exactly one key per condition table, except a text condition:
//! `attribute` (a name of [`TextAttr::names`], ours or ZENworks', e.g.
//! `"System Manufacturer"`, `"bios_version"`) with exactly one of
//! `equals`, `starts_with`, `ends_with`, `contains` (ASCII
//! case-insensitive; docs/transaction-protocol.md "Rule attributes"):
//!
//! ```toml
//! when = { all = [ { attribute = "System Manufacturer", starts_with = "Dell" },
//!                  { attribute = "product_name", contains = "OptiPlex" } ] }
//! ```

pub use super::config_file::ConfigError;
use super::config_file::{Cx, parse_cidr, parse_hex_bytes, parse_mac, read};
use crate::dhcp::BootArch;
use crate::policy::{
    AfterRun, Cmp, Condition, EnvironmentSpec, ImagingRule, LateJoin, MemoryStore, MenuEntries,
    MenuEntrySpec, MenuSetting, MulticastSession, TextAttr, TextOp, WorkstationId,
    WorkstationObject, WorkstationPolicy,
};
use crate::transaction::{StaticKey, WorkstationKeys, parse_key};
use crate::wire::transaction::messages::{Fetch, Hotkey, MenuEntry, MenuMode};
use core::net::Ipv4Addr;
use serde::Deserialize;
use std::boxed::Box;
use std::format;
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;
use toml::Spanned;

/// Load the policy store from the TOML file at `path`.
pub fn load(path: &Path) -> Result<MemoryStore, ConfigError> {
    let text = read(path)?;
    parse(path, &text)
}

/// The transaction server's keys (docs/transaction-protocol.md §12): its
/// own static key and the workstation keys bound to objects.
#[derive(Debug)]
pub struct ServerKeys {
    /// The server's static key (clients pin its public half).
    pub server: StaticKey,
    /// Workstation public keys, by object, with the auto-enrol option.
    pub workstations: WorkstationKeys,
}

/// Load the transaction keys (`[keys]`, docs/transaction-protocol.md
/// §12) from the TOML file at `path`. A file without `[keys]` or without
/// `server_private` is an error: a server without a key can prove nothing.
pub fn load_keys(path: &Path) -> Result<ServerKeys, ConfigError> {
    let text = read(path)?;
    parse_keys(path, &text)
}

/// Parse the `[keys]` section of TOML `text`; `file` names it in errors.
/// Other sections are ignored (the policy loader checks them).
pub fn parse_keys(file: &Path, text: &str) -> Result<ServerKeys, ConfigError> {
    let cx = Cx { file, text };
    let raw: RawKeyFile = cx.deserialize()?;
    let Some(keys) = raw.keys else {
        return Err(cx.err(0..0, "keys", "no [keys] section"));
    };
    cx.keys(keys)
}

/// Parse policy TOML `text`; `file` names it in errors.
pub fn parse(file: &Path, text: &str) -> Result<MemoryStore, ConfigError> {
    let cx = Cx { file, text };
    let raw: Raw = cx.deserialize()?;
    cx.convert(raw)
}

/// A `[keys]` table (docs/transaction-protocol.md §12) where the server's
/// own key may be left out: the boot server can take it from a key file of
/// its own or make one ([`load_with_keys`]).
#[derive(Clone, Debug)]
pub struct KeyTable {
    /// `server_private`, if given.
    pub server: Option<StaticKey>,
    /// Workstation public keys, by object, with the auto-enrol option.
    pub workstations: WorkstationKeys,
}

/// Load the policy store at `path` and its `[keys]` table, if it has one
/// (§12: the keys may live in the policy file). Unlike [`load_keys`],
/// `server_private` may be left out.
pub fn load_with_keys(path: &Path) -> Result<(MemoryStore, Option<KeyTable>), ConfigError> {
    let text = read(path)?;
    let cx = Cx {
        file: path,
        text: &text,
    };
    let raw: Raw = cx.deserialize()?;
    let store = cx.convert(raw)?;
    let keys: RawKeyFile = cx.deserialize()?;
    let keys = keys.keys.map(|k| cx.key_table(&k, "keys")).transpose()?;
    Ok((store, keys))
}

/// A policy store file's tables; the boot server's configuration holds the
/// same tables inline (`[transaction.store]`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    policy: Vec<RawPolicy>,
    #[serde(default)]
    workstation: Vec<RawWorkstation>,
    #[serde(default)]
    multicast: Vec<RawMulticast>,
    /// Read by [`load_keys`]; checked there, not here.
    #[serde(default)]
    pub(crate) keys: Option<Spanned<toml::Value>>,
}

/// The file as [`load_keys`] sees it: only `[keys]`.
#[derive(Deserialize)]
struct RawKeyFile {
    keys: Option<RawKeys>,
}

/// A `[keys]` table as written (§12).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeys {
    server_private: Option<Spanned<String>>,
    #[serde(default)]
    auto_enrol: bool,
    /// Version 1's site secret: refused with a message (§3.1).
    site: Option<Spanned<toml::Value>>,
    #[serde(default)]
    workstation: Vec<Spanned<RawWorkstationKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkstationKey {
    mac: Option<Spanned<String>>,
    uuid: Option<Spanned<String>>,
    public: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    image_server: Option<Spanned<String>>,
    menu: Option<Spanned<RawMenu>>,
    menu_file: Option<Spanned<String>>,
    menu_fetch: Option<Spanned<String>>,
    #[serde(default)]
    menu_entry: Vec<RawEntry>,
    menu_default: Option<Spanned<u32>>,
    menu_timeout_ms: Option<u32>,
    #[serde(default)]
    rule: Vec<RawRule>,
    environment: Option<RawEnv>,
    upload_target: Option<Spanned<String>>,
    register: Option<RawRegister>,
    ip_pool: Option<Spanned<RawIpPool>>,
}

/// `server.ip_pool` (issue 15; ZENworks' server policy IP configuration).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIpPool {
    range: Spanned<String>,
    netmask: Spanned<String>,
    gateway: Spanned<String>,
    #[serde(default)]
    dns: Vec<Spanned<String>>,
}

/// `server.register` (issue 15): register unknown workstations.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    name: Spanned<String>,
    #[serde(default = "yes")]
    automatic: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMenu {
    mode: Spanned<String>,
    hotkey: Option<Spanned<String>>,
    wait_ms: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    kind: Spanned<String>,
    label: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    fetch: Option<Spanned<String>>,
    kernel: String,
    initrd: String,
    loader: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    image: Spanned<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    partitions: Vec<u8>,
    when: Spanned<RawCond>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawNum {
    Int(u64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawArch {
    Int(u16),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCond {
    all: Option<Vec<Spanned<RawCond>>>,
    any: Option<Vec<Spanned<RawCond>>>,
    not: Option<Box<Spanned<RawCond>>>,
    ram_mb: Option<Spanned<RawNum>>,
    disk_mb: Option<Spanned<RawNum>>,
    cpu_count: Option<Spanned<RawNum>>,
    cpu_model: Option<String>,
    mac_prefix: Option<Spanned<String>>,
    ip_subnet: Option<Spanned<String>>,
    arch: Option<Spanned<RawArch>>,
    pci: Option<Spanned<String>>,
    base_image: Option<String>,
    /// A text condition (docs/transaction-protocol.md "Rule attributes"):
    /// the attribute, with exactly one of the four operators below.
    attribute: Option<Spanned<String>>,
    equals: Option<String>,
    starts_with: Option<String>,
    ends_with: Option<String>,
    contains: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    menu: Option<Spanned<RawMenu>>,
    #[serde(default)]
    menu_entry: Vec<RawEntry>,
    menu_default: Option<Spanned<u32>>,
    menu_timeout_ms: Option<u32>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkstation {
    mac: Option<Spanned<String>>,
    uuid: Option<Spanned<String>>,
    name: Spanned<String>,
    policy: Option<Spanned<String>>,
    menu: Option<Spanned<RawMenu>>,
    #[serde(default)]
    menu_entry: Vec<RawEntry>,
    menu_default: Option<Spanned<u32>>,
    menu_timeout_ms: Option<u32>,
    #[serde(default)]
    image_next_boot: bool,
    image: Option<String>,
    create_image: Option<String>,
    #[serde(default)]
    maintenance: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMulticast {
    name: Spanned<String>,
    #[serde(default = "yes")]
    enabled: bool,
    image: Option<String>,
    master: Option<Spanned<String>>,
    #[serde(default)]
    members: Vec<Spanned<String>>,
    member_rule: Option<Spanned<RawCond>>,
    group: Spanned<String>,
    port: u16,
    #[serde(default = "default_start_members")]
    start_members: u16,
    #[serde(default = "default_start_after_secs")]
    start_after_secs: u32,
    #[serde(default = "default_poll_secs")]
    poll_secs: Spanned<u16>,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u32,
    after: Option<Spanned<String>>,
    late: Option<Spanned<String>>,
}

// §4.8.1: ZENworks' defaults (notes §1.6): 5 members or 15 minutes.
fn default_start_members() -> u16 {
    crate::policy::DEFAULT_START_MEMBERS
}
fn default_start_after_secs() -> u32 {
    crate::policy::DEFAULT_START_AFTER_SECS
}
fn default_poll_secs() -> Spanned<u16> {
    Spanned::new(0..0, crate::policy::DEFAULT_POLL_SECS)
}
fn default_timeout_secs() -> u32 {
    crate::policy::DEFAULT_TIMEOUT_SECS
}

/// An architecture condition by name: a `[boot]` key or log name of the
/// architecture table (`uefi_x64`, `uefi-x64`, `uboot_arm64`, …), or one of
/// the names this loader accepted before the table (`x86-bios`, `efi-ia32`,
/// `efi-x64`, `efi-bc`, `efi-arm32`, `efi-arm64`, `efi-x64-http`,
/// `efi-arm64-http`).
fn arch_by_name(s: &str) -> Option<BootArch> {
    if let Some(b) = BootArch::from_name(s) {
        return Some(b);
    }
    Some(match s {
        "x86-bios" => BootArch::Bios,
        "efi-ia32" => BootArch::UefiIa32,
        "efi-x64" | "efi-bc" => BootArch::UefiX64,
        "efi-arm32" => BootArch::UefiArm32,
        "efi-arm64" => BootArch::UefiArm64,
        "efi-x64-http" => BootArch::HttpX64,
        "efi-arm64-http" => BootArch::HttpArm64,
        _ => return None,
    })
}

fn fetch_by_name(s: &str) -> Option<Fetch> {
    match s {
        "tftp" => Some(Fetch::Tftp),
        "mtftp" => Some(Fetch::Mtftp),
        _ => None,
    }
}

impl Cx<'_> {
    /// Stage 2 of a policy store: its tables, as read, into a store.
    pub(crate) fn convert(&self, raw: Raw) -> Result<MemoryStore, ConfigError> {
        let mut store = MemoryStore::default();
        let s = raw.server;
        let server = &mut store.server;
        if let Some(ip) = &s.image_server {
            server.image_server = ip
                .get_ref()
                .parse()
                .map_err(|_| self.at(ip, "server.image_server", "not an IPv4 address"))?;
        }
        if let Some(m) = &s.menu {
            server.menu = Some(self.menu(m, "server.menu")?);
        }
        if let Some(f) = &s.menu_file {
            if f.get_ref().len() > 128 {
                return Err(self.at(f, "server.menu_file", "longer than 128 bytes"));
            }
            server.menu_file = Some(f.get_ref().clone());
        }
        if let Some(f) = &s.menu_fetch {
            server.menu_fetch = fetch_by_name(f.get_ref())
                .ok_or_else(|| self.at(f, "server.menu_fetch", "expected \"tftp\" or \"mtftp\""))?;
        }
        let list = self.menu_entries(
            &s.menu_entry,
            s.menu_default.as_ref(),
            s.menu_timeout_ms,
            "server",
        )?;
        server.menu_entries = list.entries;
        server.menu_default = list.default;
        server.menu_timeout_ms = list.timeout_ms;
        server.rules = self.rules(&s.rule, "server.rule")?;
        if let Some(p) = &s.ip_pool {
            let r = p.get_ref();
            let ip = |v: &Spanned<String>, f: &str| -> Result<Ipv4Addr, ConfigError> {
                v.get_ref()
                    .trim()
                    .parse()
                    .map_err(|_| self.at(v, &format!("server.ip_pool.{f}"), "not an IPv4 address"))
            };
            let (a, b) = r.range.get_ref().split_once('-').ok_or_else(|| {
                self.at(
                    &r.range,
                    "server.ip_pool.range",
                    "expected \"first-last\", like \"10.0.0.100-10.0.0.199\"",
                )
            })?;
            let parse = |x: &str| -> Result<Ipv4Addr, ConfigError> {
                x.trim().parse().map_err(|_| {
                    self.at(
                        &r.range,
                        "server.ip_pool.range",
                        "not an IPv4 address range",
                    )
                })
            };
            let (first, last) = (parse(a)?, parse(b)?);
            if u32::from(first) > u32::from(last) {
                return Err(self.at(
                    &r.range,
                    "server.ip_pool.range",
                    "the first address is after the last",
                ));
            }
            if r.dns.len() > 4 {
                return Err(self.at(p, "server.ip_pool.dns", "more than 4 DNS servers"));
            }
            server.ip_pool = Some(crate::policy::IpPool {
                first,
                last,
                netmask: ip(&r.netmask, "netmask")?,
                gateway: ip(&r.gateway, "gateway")?,
                dns: r
                    .dns
                    .iter()
                    .map(|d| ip(d, "dns"))
                    .collect::<Result<_, _>>()?,
            });
        }
        if let Some(r) = &s.register {
            crate::policy::check_template(r.name.get_ref())
                .map_err(|e| self.at(&r.name, "server.register.name", e.to_string()))?;
            server.register = Some(crate::policy::RegisterSetting {
                automatic: r.automatic,
                name: r.name.get_ref().clone(),
            });
        }
        if let Some(t) = &s.upload_target {
            // Filled in, `{id}` is at most 32 bytes and `{name}` the
            // object's name: the task string must stay within 255 (§4.5).
            if t.get_ref().is_empty() || t.get_ref().len() > 128 {
                return Err(self.at(t, "server.upload_target", "empty or longer than 128 bytes"));
            }
            server.upload_target = Some(t.get_ref().clone());
        }
        if let Some(env) = &s.environment {
            let fetch = match &env.fetch {
                Some(f) => fetch_by_name(f.get_ref()).ok_or_else(|| {
                    self.at(
                        f,
                        "server.environment.fetch",
                        "expected \"tftp\" or \"mtftp\"",
                    )
                })?,
                None => Fetch::Tftp,
            };
            for (n, v) in [
                ("kernel", &env.kernel),
                ("initrd", &env.initrd),
                ("loader", &env.loader),
            ] {
                if v.len() > 255 {
                    return Err(self.err(
                        0..0,
                        &format!("server.environment.{n}"),
                        "longer than 255 bytes",
                    ));
                }
            }
            server.environment = Some(EnvironmentSpec {
                fetch,
                kernel: env.kernel.clone(),
                initrd: env.initrd.clone(),
                loader: env.loader.clone(),
            });
        }
        for p in &raw.policy {
            if store.policies.iter().any(|q| q.name == *p.name.get_ref()) {
                return Err(self.at(&p.name, "policy.name", "duplicate policy name"));
            }
            store.policies.push(WorkstationPolicy {
                name: p.name.get_ref().clone(),
                menu: p
                    .menu
                    .as_ref()
                    .map(|m| self.menu(m, "policy.menu"))
                    .transpose()?,
                rules: self.rules(&p.rule, "policy.rule")?,
                menu_entries: Some(self.menu_entries(
                    &p.menu_entry,
                    p.menu_default.as_ref(),
                    p.menu_timeout_ms,
                    "policy",
                )?)
                .filter(|m| !m.entries.is_empty()),
            });
        }
        for w in &raw.workstation {
            let id = match (&w.mac, &w.uuid) {
                (Some(m), None) => self.mac(m, "workstation.mac")?,
                (None, Some(u)) => WorkstationId::Uuid(
                    super::config_file::parse_uuid(u.get_ref())
                        .ok_or_else(|| self.at(u, "workstation.uuid", "expected 32 hex digits"))?,
                ),
                _ => {
                    return Err(self.at(
                        &w.name,
                        "workstation",
                        "needs exactly one of `mac` or `uuid`",
                    ));
                }
            };
            if store.workstations.iter().any(|o| o.id == id) {
                return Err(self.at(
                    &w.name,
                    "workstation",
                    format!("duplicate workstation {id}"),
                ));
            }
            if let Some(p) = &w.policy {
                if !store.policies.iter().any(|q| q.name == *p.get_ref()) {
                    return Err(self.at(p, "workstation.policy", "no [[policy]] has this name"));
                }
            }
            store.workstations.push(WorkstationObject {
                id,
                name: w.name.get_ref().clone(),
                policy: w.policy.as_ref().map(|p| p.get_ref().clone()),
                menu: w
                    .menu
                    .as_ref()
                    .map(|m| self.menu(m, "workstation.menu"))
                    .transpose()?,
                image_next_boot: w.image_next_boot,
                image: w.image.clone(),
                create_image: w.create_image.clone(),
                maintenance: w.maintenance,
                last_image: None,
                menu_entries: Some(self.menu_entries(
                    &w.menu_entry,
                    w.menu_default.as_ref(),
                    w.menu_timeout_ms,
                    "workstation",
                )?)
                .filter(|m| !m.entries.is_empty()),
            });
        }
        for m in &raw.multicast {
            if m.image.is_some() == m.master.is_some() {
                return Err(self.at(
                    &m.name,
                    "multicast",
                    "needs exactly one of `image` or `master`",
                ));
            }
            let group: Ipv4Addr = m
                .group
                .get_ref()
                .parse()
                .ok()
                .filter(|g: &Ipv4Addr| g.is_multicast())
                .ok_or_else(|| {
                    self.at(&m.group, "multicast.group", "not an IPv4 multicast address")
                })?;
            if m.start_members == 0 && m.start_after_secs == 0 {
                return Err(self.at(
                    &m.name,
                    "multicast",
                    "start_members and start_after_secs are both 0: the session would never start",
                ));
            }
            if *m.poll_secs.get_ref() == 0 {
                return Err(self.at(&m.poll_secs, "multicast.poll_secs", "must be at least 1"));
            }
            let after = match &m.after {
                None => AfterRun::default(),
                Some(a) => AfterRun::from_name(a.get_ref()).ok_or_else(|| {
                    self.at(
                        a,
                        "multicast.after",
                        "expected \"disable\", \"delete\" or \"keep\"",
                    )
                })?,
            };
            let late = match &m.late {
                None => LateJoin::default(),
                Some(l) => LateJoin::from_name(l.get_ref()).ok_or_else(|| {
                    self.at(l, "multicast.late", "expected \"refuse\" or \"next\"")
                })?,
            };
            store.multicast.push(MulticastSession {
                name: m.name.get_ref().clone(),
                enabled: m.enabled,
                image: m.image.clone(),
                master: m
                    .master
                    .as_ref()
                    .map(|x| self.mac(x, "multicast.master"))
                    .transpose()?,
                members: m
                    .members
                    .iter()
                    .map(|x| self.mac(x, "multicast.members"))
                    .collect::<Result<_, _>>()?,
                member_rule: m
                    .member_rule
                    .as_ref()
                    .map(|c| self.cond(c, "multicast.member_rule", 0))
                    .transpose()?,
                group,
                port: m.port,
                start_members: m.start_members,
                start_after_secs: m.start_after_secs,
                poll_secs: *m.poll_secs.get_ref(),
                timeout_secs: m.timeout_secs,
                after,
                late,
            });
        }
        Ok(store)
    }

    /// A key: exactly 32 bytes, hex or base64 (§12).
    fn key32(&self, v: &Spanned<String>, field: &str) -> Result<[u8; 32], ConfigError> {
        parse_key(v.get_ref()).map_err(|e| self.at(v, field, e.to_string()))
    }

    fn keys(&self, raw: RawKeys) -> Result<ServerKeys, ConfigError> {
        if raw.site.is_none() && raw.server_private.is_none() {
            return Err(self.err(
                0..0,
                "keys.server_private",
                "missing: the server's own key (32 random bytes, hex or base64)",
            ));
        }
        let table = self.key_table(&raw, "keys")?;
        let Some(server) = table.server else {
            return Err(self.err(0..0, "keys.server_private", "missing"));
        };
        Ok(ServerKeys {
            server,
            workstations: table.workstations,
        })
    }

    /// A `[keys]` table (§12) whose fields are named `<table>.…` in errors;
    /// `server_private` may be absent.
    pub(crate) fn key_table(&self, raw: &RawKeys, table: &str) -> Result<KeyTable, ConfigError> {
        if let Some(site) = &raw.site {
            return Err(self.at(
                site,
                &format!("{table}.site"),
                "protocol version 2 has no site-wide secret: give each workstation its own key (`workstation = [{ mac = …, public = … }]`) or set `auto_enrol = true`",
            ));
        }
        let server = match &raw.server_private {
            Some(sp) => {
                let field = format!("{table}.server_private");
                Some(
                    StaticKey::from_bytes(self.key32(sp, &field)?)
                        .map_err(|e| self.at(sp, &field, e.to_string()))?,
                )
            }
            None => None,
        };
        let mut keys = WorkstationKeys::new(raw.auto_enrol);
        let field = format!("{table}.workstation");
        for w in &raw.workstation {
            let r = w.get_ref();
            let id = match (&r.mac, &r.uuid) {
                (Some(m), None) => self.mac(m, &format!("{field}.mac"))?,
                (None, Some(u)) => {
                    WorkstationId::Uuid(super::config_file::parse_uuid(u.get_ref()).ok_or_else(
                        || self.at(u, &format!("{field}.uuid"), "expected 32 hex digits"),
                    )?)
                }
                _ => return Err(self.at(w, &field, "needs exactly one of `mac` or `uuid`")),
            };
            let public = self.key32(&r.public, &format!("{field}.public"))?;
            keys.insert(id, public)
                .map_err(|e| self.at(w, &field, e.to_string()))?;
        }
        Ok(KeyTable {
            server,
            workstations: keys,
        })
    }

    fn mac(&self, s: &Spanned<String>, field: &str) -> Result<WorkstationId, ConfigError> {
        parse_mac(s.get_ref())
            .map(WorkstationId::Mac)
            .ok_or_else(|| self.at(s, field, "expected a MAC address like 52:54:00:12:34:56"))
    }

    /// `<level>.menu_entry`, `menu_default` (1-based, as the menu shows
    /// the entries) and `menu_timeout_ms` (issue 15).
    fn menu_entries(
        &self,
        list: &[RawEntry],
        default: Option<&Spanned<u32>>,
        timeout_ms: Option<u32>,
        level: &str,
    ) -> Result<MenuEntries, ConfigError> {
        if list.len() > 16 {
            return Err(self.err(
                0..0,
                &format!("{level}.menu_entry"),
                "more than 16 menu entries",
            ));
        }
        let mut entries = Vec::new();
        for e in list {
            let kind = match e.kind.get_ref().as_str() {
                "automatic" => MenuEntry::AUTOMATIC,
                "maintenance" => MenuEntry::MAINTENANCE,
                "disable-imaging-partition" => MenuEntry::DISABLE_IMAGING_PARTITION,
                "enable-imaging-partition" => MenuEntry::ENABLE_IMAGING_PARTITION,
                "boot-local" => MenuEntry::BOOT_LOCAL,
                "register" => MenuEntry::REGISTER,
                _ => {
                    return Err(self.at(
                        &e.kind,
                        &format!("{level}.menu_entry.kind"),
                        "expected automatic, maintenance, disable-imaging-partition, enable-imaging-partition, boot-local or register",
                    ));
                }
            };
            if e.label.get_ref().len() > 64 {
                return Err(self.at(
                    &e.label,
                    &format!("{level}.menu_entry.label"),
                    "longer than 64 bytes",
                ));
            }
            entries.push(MenuEntrySpec {
                kind,
                label: e.label.get_ref().clone(),
            });
        }
        let default = match default {
            Some(d) => {
                let n = *d.get_ref();
                if n == 0 || n as usize > entries.len() {
                    return Err(self.at(
                        d,
                        &format!("{level}.menu_default"),
                        format!("expected 1 to {} (an entry of menu_entry)", entries.len()),
                    ));
                }
                Some((n - 1) as u8)
            }
            None => None,
        };
        Ok(MenuEntries {
            entries,
            default,
            timeout_ms,
        })
    }

    fn menu(&self, m: &Spanned<RawMenu>, field: &str) -> Result<MenuSetting, ConfigError> {
        let r = m.get_ref();
        let mode = match r.mode.get_ref().as_str() {
            "never" => MenuMode::Never,
            "always" => MenuMode::Always,
            "on-key-press" => MenuMode::OnKeyPress,
            _ => {
                return Err(self.at(
                    &r.mode,
                    &format!("{field}.mode"),
                    "expected \"never\", \"always\" or \"on-key-press\"",
                ));
            }
        };
        let mut setting = MenuSetting {
            mode,
            ..MenuSetting::DEFAULT
        };
        if let Some(h) = &r.hotkey {
            let mut hk = Hotkey {
                modifiers: 0,
                key: 0,
            };
            for part in h.get_ref().split('+') {
                match part.trim().to_ascii_lowercase().as_str() {
                    "ctrl" => hk.modifiers |= Hotkey::CTRL,
                    "alt" => hk.modifiers |= Hotkey::ALT,
                    "shift" => hk.modifiers |= Hotkey::SHIFT,
                    "enter" if hk.key == 0 => hk.key = Hotkey::ENTER,
                    k if k.len() == 1 && k.is_ascii() && hk.key == 0 => hk.key = k.as_bytes()[0],
                    k if hk.key == 0 && function_key(k).is_some() => {
                        hk.key = function_key(k).unwrap_or(0);
                    }
                    _ => {
                        return Err(self.at(
                            h,
                            &format!("{field}.hotkey"),
                            "expected modifiers and one key, like \"ctrl+alt\", \"alt+m\", \"f8\" or \"enter\"",
                        ));
                    }
                }
            }
            setting.hotkey = hk;
        }
        if let Some(w) = r.wait_ms {
            setting.wait_ms = w;
        }
        Ok(setting)
    }

    fn rules(&self, raw: &[RawRule], field: &str) -> Result<Vec<ImagingRule>, ConfigError> {
        raw.iter()
            .enumerate()
            .map(|(i, r)| {
                if r.image.get_ref().is_empty() || r.image.get_ref().len() > 255 {
                    return Err(self.at(
                        &r.image,
                        &format!("{field}.image"),
                        "must be 1–255 bytes",
                    ));
                }
                if r.partitions.len() > 16 {
                    return Err(self.at(&r.image, &format!("{field}.partitions"), "more than 16"));
                }
                Ok(ImagingRule {
                    name: r.name.clone().unwrap_or_else(|| format!("{field}[{i}]")),
                    when: self.cond(&r.when, &format!("{field}.when"), 0)?,
                    image: r.image.get_ref().clone(),
                    force: r.force,
                    partitions: r.partitions.clone(),
                })
            })
            .collect()
    }

    fn num(&self, n: &Spanned<RawNum>, field: &str) -> Result<(Cmp, u64), ConfigError> {
        match n.get_ref() {
            RawNum::Int(v) => Ok((Cmp::Eq, *v)),
            RawNum::Str(s) => Cmp::parse_expr(s).ok_or_else(|| {
                self.at(
                    n,
                    field,
                    "expected a number or \"<op> <number>\" (op: < <= = != >= >)",
                )
            }),
        }
    }

    fn cond(
        &self,
        c: &Spanned<RawCond>,
        field: &str,
        depth: usize,
    ) -> Result<Condition, ConfigError> {
        if depth > 16 {
            return Err(self.at(c, field, "conditions nested deeper than 16"));
        }
        let r = c.get_ref();
        let set = [
            r.all.is_some(),
            r.any.is_some(),
            r.not.is_some(),
            r.ram_mb.is_some(),
            r.disk_mb.is_some(),
            r.cpu_count.is_some(),
            r.cpu_model.is_some(),
            r.mac_prefix.is_some(),
            r.ip_subnet.is_some(),
            r.arch.is_some(),
            r.pci.is_some(),
            r.base_image.is_some(),
            r.attribute.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        let ops = [
            (TextOp::Equals, &r.equals),
            (TextOp::StartsWith, &r.starts_with),
            (TextOp::EndsWith, &r.ends_with),
            (TextOp::Contains, &r.contains),
        ];
        let mut op = ops
            .iter()
            .filter_map(|(op, v)| v.as_ref().map(|v| (*op, v)));
        let (first_op, second_op) = (op.next(), op.next());
        if let (None, Some((op, _))) = (&r.attribute, first_op) {
            return Err(self.at(
                c,
                &format!("{field}.{}", op.name()),
                "an operator needs `attribute = \"…\"` beside it (e.g. { attribute = \"System Manufacturer\", starts_with = \"Dell\" })",
            ));
        }
        if set != 1 {
            return Err(self.at(
                c,
                field,
                "a condition table needs exactly one key (all, any, not, ram_mb, disk_mb, cpu_count, cpu_model, mac_prefix, ip_subnet, arch, pci, base_image), or `attribute` with one of equals, starts_with, ends_with, contains",
            ));
        }
        if let Some(a) = &r.attribute {
            let attribute = TextAttr::from_name(a.get_ref()).ok_or_else(|| {
                self.at(
                    a,
                    &format!("{field}.attribute"),
                    format!(
                        "unknown attribute {:?} (expected one of {}, or a ZENworks name such as \"System Manufacturer\": docs/transaction-protocol.md, Rule attributes)",
                        a.get_ref(),
                        TextAttr::ALL.map(TextAttr::name).join(", ")
                    ),
                )
            })?;
            let (Some((op, value)), None) = (first_op, second_op) else {
                return Err(self.at(
                    c,
                    field,
                    "a text condition needs exactly one operator: equals, starts_with, ends_with or contains",
                ));
            };
            if value.len() > 255 {
                return Err(self.at(
                    c,
                    &format!("{field}.{}", op.name()),
                    "longer than 255 bytes",
                ));
            }
            return Ok(Condition::Text {
                attribute,
                op,
                value: value.clone(),
            });
        }
        let list = |v: &Vec<Spanned<RawCond>>, f: &str| -> Result<Vec<Condition>, ConfigError> {
            v.iter()
                .map(|c| self.cond(c, &format!("{field}.{f}"), depth + 1))
                .collect()
        };
        Ok(if let Some(v) = &r.all {
            Condition::All(list(v, "all")?)
        } else if let Some(v) = &r.any {
            Condition::Any(list(v, "any")?)
        } else if let Some(v) = &r.not {
            Condition::Not(Box::new(self.cond(
                v,
                &format!("{field}.not"),
                depth + 1,
            )?))
        } else if let Some(n) = &r.ram_mb {
            let (op, v) = self.num(n, &format!("{field}.ram_mb"))?;
            Condition::RamMb(op, v)
        } else if let Some(n) = &r.disk_mb {
            let (op, v) = self.num(n, &format!("{field}.disk_mb"))?;
            Condition::DiskMb(op, v)
        } else if let Some(n) = &r.cpu_count {
            let (op, v) = self.num(n, &format!("{field}.cpu_count"))?;
            Condition::CpuCount(op, v)
        } else if let Some(s) = &r.cpu_model {
            Condition::CpuModel(s.clone())
        } else if let Some(s) = &r.mac_prefix {
            Condition::MacPrefix(parse_hex_bytes(s.get_ref(), 6).ok_or_else(|| {
                self.at(
                    s,
                    &format!("{field}.mac_prefix"),
                    "expected 1–6 hex bytes like 52:54:00",
                )
            })?)
        } else if let Some(s) = &r.ip_subnet {
            let bad = || self.at(s, &format!("{field}.ip_subnet"), "expected a.b.c.d/len");
            let (network, prefix) = parse_cidr(s.get_ref()).ok_or_else(bad)?;
            Condition::IpSubnet { network, prefix }
        } else if let Some(a) = &r.arch {
            match a.get_ref() {
                RawArch::Int(n) => Condition::Arch(*n),
                RawArch::Name(n) => Condition::BootArch(arch_by_name(n).ok_or_else(|| {
                    self.at(
                        a,
                        &format!("{field}.arch"),
                        "unknown architecture name (expected a key of [boot] such as uefi_x64, or an IANA number)",
                    )
                })?),
            }
        } else if let Some(p) = &r.pci {
            let bad = || {
                self.at(
                    p,
                    &format!("{field}.pci"),
                    "expected \"vvvv\" or \"vvvv:dddd\" (hex)",
                )
            };
            let (v, d) = match p.get_ref().split_once(':') {
                Some((v, d)) => (v, Some(d)),
                None => (p.get_ref().as_str(), None),
            };
            let hex16 = |s: &str| {
                (s.len() == 4)
                    .then(|| u16::from_str_radix(s, 16).ok())
                    .flatten()
            };
            Condition::Pci {
                vendor: hex16(v).ok_or_else(bad)?,
                device: match d {
                    Some(d) => Some(hex16(d).ok_or_else(bad)?),
                    None => None,
                },
            }
        } else if let Some(b) = &r.base_image {
            Condition::BaseImage((!b.is_empty()).then(|| b.clone()))
        } else {
            return Err(self.at(c, field, "empty condition"));
        })
    }
}

/// `f1`..`f12` as the protocol's function-key codes (docs/transaction-protocol.md
/// §4.4 Hotkey: 0x81..0x8C).
fn function_key(k: &str) -> Option<u8> {
    let n: u8 = k.strip_prefix('f')?.parse().ok()?;
    (1..=12).contains(&n).then(|| Hotkey::F1 + n - 1)
}
