//! The policy store loaded from a TOML file (feature `std`). Every error
//! names the file, the line and column, and the field.
//!
//! ```toml
//! [server]
//! image_server = "10.0.0.5"
//! menu = { mode = "on-key-press", hotkey = "ctrl+alt", wait_ms = 3000 }
//! menu_file = "preboot/menu.txt"
//! menu_fetch = "tftp"                    # or "mtftp"
//! menu_entry = [ { kind = "automatic", label = "Automatic imaging" },
//!                { kind = "boot-local", label = "Boot the local disk" } ]
//! environment = { fetch = "tftp", kernel = "imaging/linux", initrd = "imaging/initrd", loader = "imaging/loader.efi" }
//!
//! [[server.rule]]                          # server rules: after policy rules
//! name = "big machines"
//! image = "images/win11.img"
//! when = { all = [ { ram_mb = ">= 8192" }, { arch = "efi-x64" } ] }
//!
//! [[policy]]
//! name = "lab"
//! menu = { mode = "always" }
//! [[policy.rule]]
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
//! start_members = 10
//! start_after_secs = 300
//! ```
//!
//! The same file (or a separate, more tightly protected one) may hold the
//! transaction keys (docs/transaction-protocol.md §3.1), read by
//! [`load_keys`]; [`load`] accepts and ignores the section:
//!
//! ```toml
//! [keys]
//! site = { id = "site", secret = "the site secret, 16-64 bytes" }   # optional
//! workstation = [
//!   { mac = "52:54:00:12:34:56", secret = "lab-pc-07's own key" },
//!   { uuid = "01234567-89ab-cdef-0123-456789abcdef", secret_hex = "00112233445566778899aabbccddeeff" },
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
//! Exactly one key per condition table.

use super::condition::{Cmp, Condition};
use super::model::{
    EnvironmentSpec, ImagingRule, MenuEntrySpec, MenuSetting, MulticastSession, WorkstationId,
    WorkstationObject, WorkstationPolicy,
};
use super::store::MemoryStore;
use crate::dhcp::BootArch;
use crate::transaction::WorkstationKeys;
use crate::wire::transaction::messages::{Fetch, Hotkey, MenuEntry, MenuMode};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::ops::Range;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration file error: file, line, column, field and what is
/// wrong, shown as `file:line:column: field: message` (`file: message` when
/// the file could not be read, `file: field: message` for a fault of the
/// whole file). The field is the full dotted path (`tftp.timeout_ms`,
/// `dhcp.pool.start`) and the message is written for the file's author,
/// without the parser's type names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field (key) at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let file = self.file.display();
        match (self.line, self.field.is_empty()) {
            (0, true) => write!(f, "{}", self.message),
            (0, false) => write!(f, "{file}: {}: {}", self.field, self.message),
            (line, _) => write!(
                f,
                "{file}:{line}:{}: {}: {}",
                self.column, self.field, self.message
            ),
        }
    }
}

/// Load the policy store from the TOML file at `path`.
pub fn load(path: &Path) -> Result<MemoryStore, ConfigError> {
    let text = read(path)?;
    parse(path, &text)
}

/// Load the transaction keys (`[keys]`, docs/transaction-protocol.md
/// §3.1) from the TOML file at `path`. A file without `[keys]` is an
/// error: a server without keys could authenticate nobody.
pub fn load_keys(path: &Path) -> Result<WorkstationKeys, ConfigError> {
    let text = read(path)?;
    parse_keys(path, &text)
}

/// Parse the `[keys]` section of TOML `text`; `file` names it in errors.
/// Other sections are ignored (the policy loader checks them).
pub fn parse_keys(file: &Path, text: &str) -> Result<WorkstationKeys, ConfigError> {
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

/// Read the file at `path`; an unreadable file is an error at line 0 whose
/// message is the whole story: `cannot read /x.toml: No such file or
/// directory` (shared with the boot server's TOML file).
pub(crate) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        // io::Error shows "... (os error 2)": the number says nothing more.
        let shown = e.to_string();
        let why = match shown.rfind(" (os error ") {
            Some(i) if shown.ends_with(')') => &shown[..i],
            _ => shown.as_str(),
        };
        ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read {}: {why}", path.display()),
        }
    })
}

/// The parser's message (serde and toml wording, with Rust type names) in
/// the words of the file's author.
fn plain_message(msg: &str) -> String {
    let msg = msg.trim();
    let tick = |s: &str| -> Vec<String> {
        s.split('`')
            .skip(1)
            .step_by(2)
            .map(|k| format!("`{k}`"))
            .collect()
    };
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (key, allowed) = rest.split_once(", ").unwrap_or((rest, ""));
        let allowed_keys = tick(allowed);
        return match (allowed.starts_with("expected one of"), allowed_keys.len()) {
            (_, 0) => format!("unknown key {key}; no keys are allowed here"),
            (false, 1) => format!(
                "unknown key {key}; the only key allowed here is {}",
                allowed_keys[0]
            ),
            _ => format!(
                "unknown key {key}; the keys allowed here are {}",
                allowed_keys.join(", ")
            ),
        };
    }
    if let Some(key) = msg.strip_prefix("missing field ") {
        return format!("missing key {key}");
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.rsplit_once(", expected ") {
                return format!(
                    "expected {}, found {}",
                    plain_expected(expected),
                    plain_found(found)
                );
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid length ") {
        if let Some((n, expected)) = rest.split_once(", expected ") {
            return format!("expected {}, found {n} values", plain_expected(expected));
        }
    }
    msg.to_string()
}

/// What serde expected, in words.
fn plain_expected(e: &str) -> String {
    match e.trim() {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "f32" | "f64" => "a number".into(),
        "a string" | "a borrowed string" | "a character" => "a string (in quotes)".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "an array [ ... ]".into(),
        "a map" => "a table".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table".into(),
        e if e.starts_with("an array of length ") => {
            format!("an array of {} values", &e["an array of length ".len()..])
        }
        e if e.starts_with("a tuple of size ") => {
            format!("an array of {} values", &e["a tuple of size ".len()..])
        }
        e => e.replace('`', ""),
    }
}

/// What serde found, in words.
fn plain_found(f: &str) -> String {
    let f = f.trim();
    let inner = |p: &str| f.strip_prefix(p).map(|v| v.trim_matches('`'));
    if let Some(v) = inner("integer ") {
        return format!("the whole number {v}");
    }
    if let Some(v) = inner("floating point ") {
        return format!("the number {v}");
    }
    if let Some(v) = inner("boolean ") {
        return v.to_string();
    }
    if let Some(v) = f.strip_prefix("string ") {
        return format!("the string {v}");
    }
    match f {
        "map" => "a table".into(),
        "sequence" => "an array".into(),
        "string" => "a string".into(),
        f => f.replace('`', ""),
    }
}

/// Source positions for errors (shared with the boot server's TOML file).
pub(crate) struct Cx<'t> {
    pub(crate) file: &'t Path,
    pub(crate) text: &'t str,
}

impl Cx<'_> {
    /// Stage 1: deserialize the text; a syntax or type error names the key
    /// on its line.
    pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim();
            let mut field = if span.is_empty() && span.start == 0 {
                String::new() // the whole file (a missing top-level table)
            } else {
                self.path_at(span.start)
            };
            if let Some(key) = message.strip_prefix("missing field ") {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key.trim_matches('`'));
            }
            self.err(span, &field, plain_message(message))
        })
    }

    /// The full dotted path of the key at `at` (`tftp.timeout_ms`,
    /// `dhcp.rate_limit.burst`): the table header above it, the key on its
    /// line and, inside an inline table, the key within it. At a header, the
    /// header's table.
    pub(crate) fn path_at(&self, at: usize) -> String {
        let at = at.min(self.text.len());
        let start = self
            .text
            .get(..at)
            .and_then(|b| b.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line = self
            .text
            .get(start..)
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        let header = |l: &str| l.trim().trim_matches(['[', ']']).trim().to_string();
        if line.trim_start().starts_with('[') {
            return header(line);
        }
        let before = self.text.get(..start).unwrap_or("");
        let table = before
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('['))
            .map(header)
            .unwrap_or_default();
        // The key of this line, or (inside a multi-line array) of the line
        // that opened the array.
        let key_of = |l: &str| {
            l.split_once('=')
                .map(|(k, _)| k.trim().to_string())
                .filter(|k| !k.is_empty() && !k.contains(['{', '}', ',', '[', ']']))
        };
        let outer = key_of(line)
            .or_else(|| before.lines().rev().find_map(key_of))
            .unwrap_or_default();
        let prefix = line.get(..at - start).unwrap_or("");
        let inner = prefix.rfind('{').map(|open| {
            let segment = &prefix[open + 1..];
            let segment = segment.rsplit(',').next().unwrap_or(segment);
            match segment.split_once('=') {
                Some((k, _)) => k.trim().to_string(),
                None => line[at - start..]
                    .split(|c: char| c == '=' || c.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .to_string(),
            }
        });
        [table, outer, inner.unwrap_or_default()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    }

    pub(crate) fn line_col(&self, at: usize) -> (usize, usize) {
        let at = at.min(self.text.len());
        let before = self.text.get(..at).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    pub(crate) fn err(
        &self,
        span: Range<usize>,
        field: &str,
        msg: impl core::fmt::Display,
    ) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: msg.to_string(),
        }
    }

    pub(crate) fn at<T>(
        &self,
        s: &Spanned<T>,
        field: &str,
        msg: impl core::fmt::Display,
    ) -> ConfigError {
        self.err(s.span(), field, msg)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
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
    #[allow(dead_code)]
    keys: Option<toml::Value>,
}

/// The file as [`load_keys`] sees it: only `[keys]`.
#[derive(Deserialize)]
struct RawKeyFile {
    keys: Option<RawKeys>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    site: Option<Spanned<RawSiteKey>>,
    #[serde(default)]
    workstation: Vec<Spanned<RawWorkstationKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSiteKey {
    id: Spanned<String>,
    secret: Option<Spanned<String>>,
    secret_hex: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkstationKey {
    mac: Option<Spanned<String>>,
    uuid: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    secret_hex: Option<Spanned<String>>,
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
    #[serde(default)]
    rule: Vec<RawRule>,
    environment: Option<RawEnv>,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    menu: Option<Spanned<RawMenu>>,
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
    #[serde(default)]
    start_members: u16,
    #[serde(default)]
    start_after_secs: u32,
}

/// Parse `aa:bb:cc…` (or `-` separated) hex bytes, 1..=max of them.
pub(crate) fn parse_hex_bytes(s: &str, max: usize) -> Option<Vec<u8>> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.is_empty() || parts.len() > max {
        return None;
    }
    parts
        .iter()
        .map(|p| {
            if p.len() == 2 {
                u8::from_str_radix(p, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

/// Parse a MAC address `52:54:00:12:34:56` (or `-` separated).
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    parse_hex_bytes(s, 6).and_then(|b| <[u8; 6]>::try_from(b).ok())
}

/// Parse a subnet `a.b.c.d/len` (len 0-32; host bits not checked).
pub(crate) fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (net, len) = s.split_once('/')?;
    let network = net.trim().parse().ok()?;
    let prefix = len.trim().parse().ok().filter(|p| *p <= 32)?;
    Some((network, prefix))
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
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
    fn convert(&self, raw: Raw) -> Result<MemoryStore, ConfigError> {
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
        if s.menu_entry.len() > 16 {
            return Err(self.err(0..0, "server.menu_entry", "more than 16 menu entries"));
        }
        for e in &s.menu_entry {
            let kind = match e.kind.get_ref().as_str() {
                "automatic" => MenuEntry::AUTOMATIC,
                "maintenance" => MenuEntry::MAINTENANCE,
                "disable-imaging-partition" => MenuEntry::DISABLE_IMAGING_PARTITION,
                "enable-imaging-partition" => MenuEntry::ENABLE_IMAGING_PARTITION,
                "boot-local" => MenuEntry::BOOT_LOCAL,
                _ => {
                    return Err(self.at(
                        &e.kind,
                        "server.menu_entry.kind",
                        "expected automatic, maintenance, disable-imaging-partition, enable-imaging-partition or boot-local",
                    ));
                }
            };
            if e.label.get_ref().len() > 64 {
                return Err(self.at(&e.label, "server.menu_entry.label", "longer than 64 bytes"));
            }
            server.menu_entries.push(MenuEntrySpec {
                kind,
                label: e.label.get_ref().clone(),
            });
        }
        server.rules = self.rules(&s.rule, "server.rule")?;
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
            });
        }
        for w in &raw.workstation {
            let id = match (&w.mac, &w.uuid) {
                (Some(m), None) => self.mac(m, "workstation.mac")?,
                (None, Some(u)) => WorkstationId::Uuid(
                    parse_uuid(u.get_ref())
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
            });
        }
        Ok(store)
    }

    fn secret(
        &self,
        at: Range<usize>,
        plain: &Option<Spanned<String>>,
        hex: &Option<Spanned<String>>,
        field: &str,
    ) -> Result<Vec<u8>, ConfigError> {
        let (bytes, span, name) = match (plain, hex) {
            (Some(p), None) => (p.get_ref().as_bytes().to_vec(), p.span(), "secret"),
            (None, Some(h)) => {
                let t = h.get_ref();
                let bytes = (t.len() % 2 == 0 && t.is_ascii())
                    .then(|| {
                        (0..t.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
                            .collect::<Option<Vec<u8>>>()
                    })
                    .flatten()
                    .ok_or_else(|| {
                        self.at(h, &format!("{field}.secret_hex"), "expected hex digits")
                    })?;
                (bytes, h.span(), "secret_hex")
            }
            _ => {
                return Err(self.err(at, field, "needs exactly one of `secret` or `secret_hex`"));
            }
        };
        if !(16..=64).contains(&bytes.len()) {
            return Err(self.err(
                span,
                &format!("{field}.{name}"),
                format!("a key is 16-64 bytes, this one is {}", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    fn keys(&self, raw: RawKeys) -> Result<WorkstationKeys, ConfigError> {
        let site = match &raw.site {
            Some(s) => {
                let r = s.get_ref();
                let id = r.id.get_ref();
                if id.is_empty() || id.len() > 64 {
                    return Err(self.at(&r.id, "keys.site.id", "a key id is 1-64 bytes"));
                }
                let key = self.secret(s.span(), &r.secret, &r.secret_hex, "keys.site")?;
                Some((id.as_bytes().to_vec(), key))
            }
            None => None,
        };
        let mut keys = WorkstationKeys::new(site.as_ref().map(|(i, k)| (&i[..], &k[..])));
        for w in &raw.workstation {
            let r = w.get_ref();
            let field = "keys.workstation";
            let id = match (&r.mac, &r.uuid) {
                (Some(m), None) => self.mac(m, "keys.workstation.mac")?,
                (None, Some(u)) => {
                    WorkstationId::Uuid(parse_uuid(u.get_ref()).ok_or_else(|| {
                        self.at(u, "keys.workstation.uuid", "expected 32 hex digits")
                    })?)
                }
                _ => return Err(self.at(w, field, "needs exactly one of `mac` or `uuid`")),
            };
            let key = self.secret(w.span(), &r.secret, &r.secret_hex, field)?;
            keys.insert(id, &key)
                .map_err(|e| self.at(w, field, e.to_string()))?;
        }
        Ok(keys)
    }

    fn mac(&self, s: &Spanned<String>, field: &str) -> Result<WorkstationId, ConfigError> {
        parse_mac(s.get_ref())
            .map(WorkstationId::Mac)
            .ok_or_else(|| self.at(s, field, "expected a MAC address like 52:54:00:12:34:56"))
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
                    k if k.len() == 1 && k.is_ascii() && hk.key == 0 => hk.key = k.as_bytes()[0],
                    _ => {
                        return Err(self.at(
                            h,
                            &format!("{field}.hotkey"),
                            "expected modifiers and one key, like \"ctrl+alt\" or \"alt+m\"",
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
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            return Err(self.at(
                c,
                field,
                "a condition table needs exactly one key (all, any, not, ram_mb, disk_mb, cpu_count, cpu_model, mac_prefix, ip_subnet, arch, pci, base_image)",
            ));
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
