//! Registrations and inventories on disk (issue 15, "Registration and
//! inventory"): the [`Registry`] of the boot server, in
//! `server.state_dir`.
//!
//! - **`registrations.toml`**: the workstation objects the server
//!   registered (the server policy's `register` setting, or "register this
//!   machine" in the menu), as `[[workstation]]` tables of the policy store
//!   format (`mac` or `uuid`, `name`). Rewritten whole at each registration
//!   (a new file, fsync'd, renamed over the old one, directory fsync'd)
//!   before the registration is answered. Loaded with the policy store
//!   ([`merge_registrations`]) at start and at every reload (SIGHUP): the
//!   registered objects join the store's workstations; an object the store
//!   itself names wins over its registration. To change a registered
//!   object, copy it into the store and remove it here.
//! - **`inventory/`**: one file per workstation object, `mac-<12 hex>` or
//!   `uuid-<32 hex>`, replaced at every boot (the same new-file-then-rename
//!   steps, without the directory fsync: a crash loses at most the last
//!   boot's update, never a whole record). It holds the object, the time
//!   of the boot (Unix seconds) and the accepted `WorkstationInfo` payload
//!   (docs/transaction-protocol.md §4.3) in hex: every field the message
//!   carries is kept, including fields added to the message later.
//!   [`read_inventory`] / [`read_inventories`] read them back;
//!   `preboot-server --inventory <state_dir>` prints them.
//! - **`ip-assignments`**: the server policy's IP pool assignments
//!   (`<workstation> <address>` a line), rewritten whole, like the
//!   registrations, before an address is sent: an address stays its
//!   workstation's across restarts.
//!
//! ```text
//! preboot-inventory 1
//! object 52:54:00:00:00:01
//! seen 1764900000
//! info 0100065254000000010600040000100
//! ```

use super::config_file::ConfigError;
use super::policy_store;
use crate::policy::{MemoryStore, Registry, RegistryFailed, WorkstationId, WorkstationObject};
use crate::wire::transaction::messages::WorkstationInfo;
use crate::wire::transaction::{MAX_MESSAGE_LEN, ParseError};
use core::net::Ipv4Addr;
use std::fmt::Write as _;
use std::format;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::string::String;
use std::time::{SystemTime, UNIX_EPOCH};
use std::vec::Vec;

/// The registrations file's name in `server.state_dir`.
pub const REGISTRATIONS_FILE: &str = "registrations.toml";
/// The IP pool's assignment log in `server.state_dir`.
pub const IP_ASSIGNMENTS_FILE: &str = "ip-assignments";
/// The inventory directory's name in `server.state_dir`.
pub const INVENTORY_DIR: &str = "inventory";
/// First line of an inventory file.
const INVENTORY_HEADER: &str = "preboot-inventory 1";

/// Add the objects of the registrations file at `path` (if it exists) to
/// `store`, after its own: an identity the store already names keeps the
/// store's object. Returns how many were added. Errors name the file,
/// line and field, like the store's.
pub fn merge_registrations(store: &mut MemoryStore, path: &Path) -> Result<usize, ConfigError> {
    let Some(text) = read_if_there(path)? else {
        return Ok(0);
    };
    let registered = policy_store::parse(path, &text)?;
    let mut added = 0;
    for w in registered.workstations {
        if !store.workstations.iter().any(|o| o.id == w.id) {
            store.workstations.push(w);
            added += 1;
        }
    }
    Ok(added)
}

/// The text of a state file, `None` when there is none yet; an error that
/// names the file otherwise.
fn read_if_there(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }),
    }
}

/// The registry of the boot server: files in `server.state_dir`.
#[derive(Debug)]
pub struct FileRegistry {
    registrations: PathBuf,
    inventory: PathBuf,
    /// (identity, name) of every registration in the file.
    objects: Vec<(WorkstationId, String)>,
    ip_file: PathBuf,
    ips: Vec<(WorkstationId, Ipv4Addr)>,
}

/// Read the assignment log: `<identity> <address>` a line (`#` comments).
fn read_ip_assignments(path: &Path) -> Result<Vec<(WorkstationId, Ipv4Addr)>, ConfigError> {
    let Some(text) = read_if_there(path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || ConfigError {
            file: path.to_path_buf(),
            line: n + 1,
            column: 1,
            field: "ip-assignment".into(),
            message: "expected \"<mac or uuid> <IPv4 address>\"".into(),
        };
        let (id, ip) = line.split_once(' ').ok_or_else(bad)?;
        let id = super::config_file::parse_mac(id)
            .map(WorkstationId::Mac)
            .or_else(|| super::config_file::parse_uuid(id).map(WorkstationId::Uuid))
            .ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.trim().parse().map_err(|_| bad())?;
        out.push((id, ip));
    }
    Ok(out)
}

impl FileRegistry {
    /// The registry in `state_dir` (its registrations file read, its
    /// inventory directory made if missing).
    pub fn open(state_dir: &Path) -> Result<FileRegistry, ConfigError> {
        let registrations = state_dir.join(REGISTRATIONS_FILE);
        let mut store = MemoryStore::default();
        merge_registrations(&mut store, &registrations)?;
        let inventory = state_dir.join(INVENTORY_DIR);
        if let Err(e) = std::fs::create_dir_all(&inventory) {
            tracing::warn!(dir = %inventory.display(), error = %e, "inventory: cannot make the directory; no inventory is kept");
        }
        let ip_file = state_dir.join(IP_ASSIGNMENTS_FILE);
        let ips = read_ip_assignments(&ip_file)?;
        Ok(FileRegistry {
            registrations,
            inventory,
            ip_file,
            ips,
            objects: store
                .workstations
                .into_iter()
                .map(|w| (w.id, w.name))
                .collect(),
        })
    }

    /// The registrations file.
    pub fn registrations_file(&self) -> &Path {
        &self.registrations
    }

    /// The inventory file of `object`.
    pub fn inventory_file(&self, object: &WorkstationId) -> PathBuf {
        self.inventory.join(inventory_name(object))
    }
}

/// `mac-525400000001` / `uuid-<32 hex>`.
fn inventory_name(object: &WorkstationId) -> String {
    let (kind, bytes): (&str, &[u8]) = match object {
        WorkstationId::Mac(m) => ("mac", m),
        WorkstationId::Uuid(u) => ("uuid", u),
    };
    let mut s = String::from(kind);
    s.push('-');
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Write `bytes` as the whole new `path` (temporary file, fsync, rename;
/// the directory fsync'd when `sync_dir`).
fn replace_file(path: &Path, bytes: &[u8], sync_dir: bool) -> io::Result<()> {
    let (_, dir_synced) = super::atomic_file::replace_then(path, sync_dir, |w| w.write_all(bytes))?;
    if sync_dir && !dir_synced {
        // The rename is in place; retry the directory fsync once so the
        // caller learns whether it is durable.
        super::atomic_file::sync_dir(path)?;
    }
    Ok(())
}

impl Registry for FileRegistry {
    fn registered(&mut self, object: &WorkstationObject) -> Result<(), RegistryFailed> {
        let mut objects = self.objects.clone();
        objects.retain(|(id, _)| *id != object.id);
        objects.push((object.id, object.name.clone()));
        let mut text = String::from(
            "# Workstation objects registered by preboot-server (issue 15).\n# Rewritten by the server: to change one, copy it into the policy store.\n",
        );
        for (id, name) in &objects {
            let key = match id {
                WorkstationId::Mac(_) => "mac",
                WorkstationId::Uuid(_) => "uuid",
            };
            let _ = write!(
                text,
                "\n[[workstation]]\n{key} = \"{id}\"\nname = {}\n",
                toml_string(name)
            );
        }
        match replace_file(&self.registrations, text.as_bytes(), true) {
            Ok(()) => {
                tracing::info!(object = %object.id, name = %object.name, file = %self.registrations.display(), "workstation registered");
                self.objects = objects;
                Ok(())
            }
            Err(e) => {
                tracing::error!(object = %object.id, file = %self.registrations.display(), error = %e, "registration could not be written: refused");
                Err(RegistryFailed)
            }
        }
    }

    fn ip_assignments(&self) -> Vec<(WorkstationId, Ipv4Addr)> {
        self.ips.clone()
    }

    fn ip_assigned(
        &mut self,
        object: &WorkstationId,
        address: Ipv4Addr,
    ) -> Result<(), RegistryFailed> {
        let mut ips = self.ips.clone();
        ips.retain(|(w, _)| w != object);
        ips.push((*object, address));
        let mut text = String::from(
            "# IP pool assignments (issue 15): <workstation> <address>, kept by preboot-server.\n",
        );
        for (w, a) in &ips {
            let _ = writeln!(text, "{w} {a}");
        }
        match replace_file(&self.ip_file, text.as_bytes(), true) {
            Ok(()) => {
                tracing::info!(%object, %address, "IP pool: address assigned");
                self.ips = ips;
                Ok(())
            }
            Err(e) => {
                tracing::error!(%object, file = %self.ip_file.display(), error = %e, "IP pool: the assignment could not be written; none sent");
                Err(RegistryFailed)
            }
        }
    }

    fn inventory(&mut self, object: &WorkstationId, info: &[u8]) -> Result<(), RegistryFailed> {
        if info.len() > MAX_MESSAGE_LEN {
            return Err(RegistryFailed);
        }
        let seen = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut text = format!("{INVENTORY_HEADER}\nobject {object}\nseen {seen}\ninfo ");
        for b in info {
            let _ = write!(text, "{b:02x}");
        }
        text.push('\n');
        let path = self.inventory_file(object);
        replace_file(&path, text.as_bytes(), false).map_err(|e| {
            tracing::warn!(%object, file = %path.display(), error = %e, "inventory could not be written");
            RegistryFailed
        })
    }
}

/// One inventory record, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryRecord {
    /// The workstation object (its identity, as text).
    pub object: String,
    /// When it booted last (Unix seconds).
    pub seen: u64,
    /// The `WorkstationInfo` payload of that boot (§4.3).
    pub info: Vec<u8>,
}

impl InventoryRecord {
    /// The hardware facts.
    pub fn info(&self) -> Result<WorkstationInfo<'_>, ParseError> {
        WorkstationInfo::parse(&self.info)
    }
}

/// An inventory file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Reading failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not an inventory file, or damaged.
    #[error("{}: line {line}: {what}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// Read one inventory file.
pub fn read_inventory(path: &Path) -> Result<InventoryRecord, InventoryError> {
    let bad = |line, what| InventoryError::Bad {
        path: path.to_path_buf(),
        line,
        what,
    };
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines();
    if lines.next() != Some(INVENTORY_HEADER) {
        return Err(bad(1, "not a preboot inventory file"));
    }
    let mut field = |n: usize, key: &str| -> Result<String, InventoryError> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(key))
            .and_then(|l| l.strip_prefix(' '))
            .map(String::from)
            .ok_or(bad(n, "missing field"))
    };
    let object = field(2, "object")?;
    let seen = field(3, "seen")?.parse().map_err(|_| bad(3, "bad time"))?;
    let hex = field(4, "info")?;
    if hex.len() % 2 != 0 || hex.len() > 2 * MAX_MESSAGE_LEN {
        return Err(bad(4, "bad info"));
    }
    let info = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad(4, "bad info"))?;
    Ok(InventoryRecord { object, seen, info })
}

/// Read every inventory file of `dir` (a state directory or its
/// `inventory/`), in name order; unreadable ones as errors beside them.
pub fn read_inventories(dir: &Path) -> io::Result<Vec<Result<InventoryRecord, InventoryError>>> {
    let dir = if dir.join(INVENTORY_DIR).is_dir() {
        dir.join(INVENTORY_DIR)
    } else {
        dir.to_path_buf()
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                (n.starts_with("mac-") || n.starts_with("uuid-")) && !n.ends_with(".tmp")
            })
        })
        .collect();
    names.sort();
    Ok(names.iter().map(|p| read_inventory(p)).collect())
}
