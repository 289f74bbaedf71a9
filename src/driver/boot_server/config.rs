//! The boot server's TOML configuration: one file describes the DHCP /
//! proxyDHCP server (PXE 2.1 §2.2, RFC 2131), the boot files per client
//! architecture (RFC 4578 §2.1), the firmware's PXE boot prompt (PXE 2.1
//! §2.4.5: `[pxe_prompt]`, not the preboot client's menu, which is the
//! policy's), the transaction server with its policy store, and the
//! TFTP server (RFC 1350 with RFC 2347–2349 and RFC 7440 options).
//!
//! `examples/preboot.toml` documents every key. In short:
//!
//! ```toml
//! [server]
//! mode = "proxy"                 # or "full"
//! server_ip = "192.168.1.10"     # option 54 and siaddr
//! # interface = "eth0"           # SO_BINDTODEVICE
//! [ports]
//! dhcp = 67
//! boot = 4011
//! tftp = 69
//! transaction = 4012
//! [boot]
//! bios = "bios/pxelinux.0"
//! uefi_x64 = "efi64/bootx64.efi"
//! [pxe_prompt]                   # the PXE ROM's prompt (option 43), before any preboot client
//! show = "on-key-press"
//! timeout_secs = 5
//! [tftp]
//! root = "/srv/tftp"
//! [transaction]                  # no table: no transaction server
//! advertise = true               # name it in DHCP (option 43 sub-options 128/129)
//! store_file = "policy.toml"     # or the same tables inline: [transaction.store]
//! [transaction.keys]             # docs/transaction-protocol.md §12
//! auto_enrol = false
//! workstation = [ { mac = "52:54:00:12:34:56", public = "<hex or base64>" } ]
//! # server_private = "<hex or base64>", or transaction.server_key_file, or
//! # neither: the server makes <server.state_dir>/transaction.key once
//! [mtftp]                        # PXE MTFTP (multicast); no table: none
//! server_port = 1759             # PXE_MTFTP_SPORT (sub-option 3)
//! listen_secs = 2                # PXE_MTFTP_TMOUT (sub-option 4), 1-255
//! delay_secs = 5                 # PXE_MTFTP_DELAY (sub-option 5), 1-255
//! # timeout_ms = 1000, max_retries = 5: the stream's wait for the master's ACK
//! # window = 1: blocks sent ahead of the master's ACK (1: PXE lock-step)
//! # ttl = 1: multicast TTL (1: this link only)
//! [[mtftp.file]]                 # one per file; a boot file here is
//! file = "bios/pxelinux.0"       # advertised to BIOS clients only
//! group = "239.255.1.1"          # PXE_MTFTP_IP (sub-option 1), a multicast address
//! client_port = 3001             # PXE_MTFTP_CPORT (sub-option 2)
//! ```
//!
//! `[mtftp]` ([`MtftpConfig`]; PXE 2.1 MTFTP, notes §2.2 and §2.5) is
//! checked at start: every group is a multicast address, no port is 0,
//! the server port clashes with no other server port of the file, a client
//! port is neither the server port nor `ports.client`, no group and client
//! port serve two files, and every file is a regular file under
//! `tftp.root` of at most 65,535 blocks ([`crate::mtftp::check_size`]).
//! A reload (`SIGHUP`, [`super::reload`]) checks a new `[mtftp]` the same
//! way before it is put in place.
//!
//! Three stages, and nothing binds before all pass:
//!
//! 1. syntax and types (the `toml` parser; unknown keys are errors);
//! 2. values and their relations ([`parse`]: addresses, lengths, pools
//!    inside their subnets, reservations inside a pool's subnet, ports; the
//!    policy store file and the server key file `[transaction]` names are
//!    read here, as parts of the configuration, with their own
//!    file:line:column errors);
//! 3. the file system ([`BootServerConfig::check_files`]: the TFTP root
//!    exists, every boot file this host serves is in it, the lease file's
//!    directory exists).
//!
//! Every error is a [`ConfigError`] naming the file, line, column and field.
//! Relative paths are relative to the configuration file's directory.

use std::collections::BTreeMap;
use std::format;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::prelude::rust_2024::*;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::dhcp::BootArch;
use crate::dhcp::config::{
    BOOT_FILE_LEN, CLIENT_ID_LEN, MAX_BOOT_FILES, MAX_MENU_ITEMS, MAX_POOLS, MAX_RESERVATIONS,
    TEXT_LEN,
};
pub use crate::driver::config_file::ConfigError;
use crate::driver::config_file::{Cx, parse_cidr, parse_hex_bytes, parse_mac, read};
use crate::driver::dhcp::{
    BootFileConfig, DhcpServerConfig, MenuPolicy, Mode, Pool, RateLimit, Reservation,
    ReservationKey,
};
use crate::driver::policy_store::{self, KeyTable};
use crate::driver::tftp::{MAX_LOOPS, MAX_TRANSFERS, TftpServerConfig};
use crate::policy::MemoryStore;
use crate::transaction::{KeyStore, ServerConfig, StaticKey, WorkstationKeys, parse_key};
use crate::wire::tftp::MAX_BLKSIZE;

/// The transaction server's default port (docs/transaction-protocol.md §1).
pub const TRANSACTION_PORT: u16 = 4012;

/// The name of the server key the boot server makes in `server.state_dir`
/// when none is configured.
pub const SERVER_KEY_FILE: &str = "transaction.key";

/// The name of the task journal in `server.state_dir` when
/// `transaction.journal_file` names none.
pub const TASK_JOURNAL_FILE: &str = "tasks.journal";

pub use crate::driver::pending_keys::PENDING_KEYS_FILE;

/// The transaction server (docs/transaction-protocol.md), from
/// `[transaction]` and `ports.transaction`: its socket, its static key, the
/// policy store it answers from and the workstation keys.
#[derive(Clone, Debug)]
pub struct TransactionConfig {
    /// The socket: `server.listen` and `ports.transaction` (default 4012;
    /// 0 picks a free port).
    pub bind: SocketAddrV4,
    /// The server's static key, or where it is made.
    pub key: ServerKey,
    /// The policy store: workstation objects, workstation and server
    /// policies, imaging rules, multicast sessions.
    pub store: MemoryStore,
    /// Where the store came from: the file `store_file` names, or this
    /// configuration file (`[transaction.store]`).
    pub store_source: PathBuf,
    /// Workstation public keys bound to objects, with the auto-enrol
    /// option (§3.4, §12).
    pub workstation_keys: WorkstationKeys,
    /// The engine's limits and timers (the defaults of §3.5 and §8).
    pub engine: ServerConfig,
    /// The task journal (§4.8): `transaction.journal_file`, else
    /// `<server.state_dir>/tasks.journal`; `None` (tasks kept in memory
    /// only) without either.
    pub journal: Option<PathBuf>,
    /// The workstation keys waiting for an administrator (§3.4), kept in
    /// `<server.state_dir>/pending-keys.toml`
    /// ([`crate::driver::pending_keys`]); `None` (kept in memory only)
    /// without a state directory.
    pub pending_keys: Option<PathBuf>,
    /// Hand-outs of one task before it is held for an administrator
    /// (`transaction.max_handouts`, default 3, §4.8).
    pub max_handouts: u32,
    /// This server's name in the task records it writes: which server
    /// handed a task out, which took its report (`transaction.server_name`,
    /// default `server.server_ip`; docs/policy.md, "Task history").
    pub server_name: String,
    /// Name this server (`server.server_ip`, the bound port, the public
    /// key) to PXE clients in the DHCP answers, option 43 sub-options 128
    /// and 129 (`transaction.advertise`, default true;
    /// docs/transaction-protocol.md, "How the preboot client finds the
    /// transaction server").
    pub advertise: bool,
    /// `server.state_dir`: where registrations and inventories are kept
    /// ([`crate::driver::registry`]); `None`: registrations in memory
    /// only, no inventory.
    pub state_dir: Option<PathBuf>,
}

/// Where the transaction server's static key comes from.
#[derive(Clone, Debug)]
pub enum ServerKey {
    /// `server_private` in a `[keys]` table, or the key file
    /// `transaction.server_key_file` names.
    Given {
        /// The key.
        key: StaticKey,
        /// The file it was read from.
        from: PathBuf,
    },
    /// None configured: the key kept in this file (in `server.state_dir`),
    /// made on the first start ([`crate::driver::transaction::server_key_file`]).
    Kept(PathBuf),
}

/// A validated boot server configuration: what [`super::BootServer::bind`]
/// needs.
#[derive(Clone, Debug)]
pub struct BootServerConfig {
    /// The file it came from (named in errors).
    pub source: PathBuf,
    /// The DHCP / proxyDHCP / boot server (ports 67 and 4011).
    pub dhcp: DhcpServerConfig,
    /// The TFTP server; `None` when `tftp.enabled = false`.
    pub tftp: Option<TftpServerConfig>,
    /// Boot files this host serves over TFTP, checked by
    /// [`BootServerConfig::check_files`].
    pub boot_files: Vec<BootFileRef>,
    /// Whether [`BootServerConfig::check_files`] looks for the boot files.
    pub check_files: bool,
    /// Things that work but look wrong (logged at start).
    pub warnings: Vec<String>,
    /// The account to switch to after binding when started as root
    /// (`server.user`, default `nobody`; `root` stays root); see
    /// [`super::BootServer::drop_privileges`].
    pub user: String,
    /// Whether the TFTP root may be `/` or a system directory
    /// (`tftp.allow_system_root`, default false).
    pub allow_system_root: bool,
    /// The transaction server; `None` without a `[transaction]` table (or
    /// with `transaction.enabled = false`).
    pub transaction: Option<TransactionConfig>,
    /// PXE MTFTP; `None` without an `[mtftp]` table (or with
    /// `mtftp.enabled = false`).
    pub mtftp: Option<MtftpConfig>,
    lease_dir: Option<(PathBuf, usize, usize)>,
    state_dir: Option<(PathBuf, usize, usize)>,
    root_at: (usize, usize),
    /// The file as TOML values: what a reload compares
    /// ([`super::reload`]).
    pub(crate) table: toml::Table,
}

/// PXE MTFTP (`[mtftp]`): the server port, the delays clients are told,
/// the stream's timers, and the multicast-served files
/// ([`crate::driver::mtftp_server`]).
#[derive(Clone, Debug)]
pub struct MtftpConfig {
    /// The request socket: `server.listen` and `mtftp.server_port`
    /// (PXE_MTFTP_SPORT, default 1759, iPXE's).
    pub bind: SocketAddrV4,
    /// The interface address multicast goes out of (`IP_MULTICAST_IF`):
    /// `server.listen` when set, else `server.server_ip`.
    pub interface: Ipv4Addr,
    /// `server.interface`: the request socket is bound to this device
    /// (`SO_BINDTODEVICE`, as the DHCP sockets are).
    pub device: Option<String>,
    /// PXE_MTFTP_TMOUT (`mtftp.listen_secs`, default 2): seconds a client
    /// listens before it opens.
    pub listen_secs: u8,
    /// PXE_MTFTP_DELAY (`mtftp.delay_secs`, default 5): seconds of silence
    /// before a client re-opens.
    pub delay_secs: u8,
    /// Multicast TTL (`mtftp.ttl`, default 1: this link only).
    pub ttl: u32,
    /// The stream's timers (`mtftp.timeout_ms`, `mtftp.max_retries`).
    pub engine: crate::mtftp::server::ServerConfig,
    /// The directory the files are under (`tftp.root`).
    pub root: PathBuf,
    /// The files, each on its own group and client port.
    pub files: Vec<MtftpFile>,
}

/// One `[[mtftp.file]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtftpFile {
    /// The name under `tftp.root` (what clients ask for).
    pub name: String,
    /// PXE_MTFTP_IP and PXE_MTFTP_CPORT: where its stream goes.
    pub group: SocketAddrV4,
    /// Line of the entry (1-based).
    pub line: usize,
    /// Column of the entry (1-based).
    pub column: usize,
}

impl MtftpConfig {
    /// Option 43 sub-options 1–5 for `file`.
    pub fn params(&self, file: &MtftpFile) -> crate::dhcp::config::MtftpParams {
        crate::dhcp::config::MtftpParams {
            ip: *file.group.ip(),
            client_port: file.group.port(),
            server_port: self.bind.port(),
            timeout_secs: self.listen_secs,
            delay_secs: self.delay_secs,
        }
    }

    /// The file served for a request of `name` (a leading `/` ignored).
    pub fn file(&self, name: &str) -> Option<&MtftpFile> {
        let name = name.trim_start_matches('/');
        self.files
            .iter()
            .find(|f| f.name.trim_start_matches('/') == name)
    }
}

/// A boot file named in the configuration, with where it was named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFileRef {
    /// The field (`boot.bios`, …).
    pub field: String,
    /// The name under the TFTP root.
    pub name: String,
    /// Line of the field (1-based).
    pub line: usize,
    /// Column of the value (1-based).
    pub column: usize,
}

impl BootServerConfig {
    /// The directory the lease file lives in, if there is a lease file.
    pub fn lease_dir(&self) -> Option<&Path> {
        self.lease_dir.as_ref().map(|(d, _, _)| d.as_path())
    }

    /// An error at `line`:`column` of this configuration's file, in `field`.
    fn error_at(&self, line: usize, column: usize, field: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.source.clone(),
            line,
            column,
            field: field.into(),
            message,
        }
    }

    /// Stage 3 for `[[mtftp.file]]`: every file is a regular file under
    /// `root` (the canonical TFTP root) of at most 65,535 blocks
    /// ([`crate::mtftp::check_size`]); at start
    /// ([`check_files`](Self::check_files)) and at a reload
    /// ([`super::reload`]), which serves the new table from the running
    /// root.
    pub fn check_mtftp_files(&self, root: &Path) -> Result<(), ConfigError> {
        let err = |line, column, field: &str, message| self.error_at(line, column, field, message);
        if let Some(m) = &self.mtftp {
            for f in &m.files {
                let field = "mtftp.file.file";
                let path = root.join(f.name.trim_start_matches('/'));
                let meta = path
                    .canonicalize()
                    .and_then(|p| Ok((p.starts_with(root), std::fs::metadata(&p)?)));
                match meta {
                    Ok((true, meta)) if meta.is_file() => {
                        if let Err(e) = crate::mtftp::check_size(meta.len()) {
                            return Err(err(
                                f.line,
                                f.column,
                                field,
                                format!("{}: {e}", path.display()),
                            ));
                        }
                    }
                    Ok(_) => {
                        return Err(err(
                            f.line,
                            f.column,
                            field,
                            format!(
                                "{} is not a regular file inside the TFTP root",
                                path.display()
                            ),
                        ));
                    }
                    Err(e) => {
                        return Err(err(
                            f.line,
                            f.column,
                            field,
                            format!("{}: {e}", path.display()),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Stage 3: the TFTP root exists, is a directory, is not a symbolic
    /// link and is not `/` or a system directory (unless
    /// `tftp.allow_system_root`); every boot file this host serves is a
    /// file inside it with no other hard link (when `boot.check_files`);
    /// the lease file's directory exists and the lease file, if present,
    /// is a lease log (not a link, empty or with its header line). Touches
    /// nothing.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let err = |line, column, field: &str, message| self.error_at(line, column, field, message);
        if let Some((dir, line, column)) = &self.state_dir {
            if !dir.is_dir() {
                return Err(err(
                    *line,
                    *column,
                    "server.state_dir",
                    format!("directory {} does not exist", dir.display()),
                ));
            }
        }
        if let Some((dir, line, column)) = &self.lease_dir {
            if !dir.is_dir() {
                return Err(err(
                    *line,
                    *column,
                    "dhcp.lease_file",
                    format!("directory {} does not exist", dir.display()),
                ));
            }
            // A file that is not a lease log would be truncated at start.
            if let Some(path) = &self.dhcp.lease_file {
                if let Err(e) = crate::driver::dhcp::LeaseFile::check(path) {
                    return Err(err(*line, *column, "dhcp.lease_file", e.to_string()));
                }
            }
        }
        let Some(tftp) = &self.tftp else {
            return Ok(());
        };
        let (line, column) = self.root_at;
        let root = match tftp.root.canonicalize() {
            Ok(r) if r.is_dir() => r,
            Ok(_) => {
                return Err(err(
                    line,
                    column,
                    "tftp.root",
                    format!("{} is not a directory", tftp.root.display()),
                ));
            }
            Err(e) => {
                return Err(err(
                    line,
                    column,
                    "tftp.root",
                    format!("{}: {e}", tftp.root.display()),
                ));
            }
        };
        // Checked whatever boot.check_files says: these are about what the
        // whole network can read, not about the boot files.
        if std::fs::symlink_metadata(&tftp.root).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(err(
                line,
                column,
                "tftp.root",
                format!(
                    "{} is a symbolic link to {}: name the directory itself (a link can be re-pointed without touching this file)",
                    tftp.root.display(),
                    root.display()
                ),
            ));
        }
        if !self.allow_system_root {
            if let Some(why) = system_directory(&root) {
                return Err(err(
                    line,
                    column,
                    "tftp.root",
                    format!(
                        "{} is {why}: anyone on the network could read every file under it; serve a directory of boot files only (such as /srv/tftp), or set tftp.allow_system_root = true",
                        root.display()
                    ),
                ));
            }
        }
        self.check_mtftp_files(&root)?;
        if !self.check_files {
            return Ok(());
        }
        for f in &self.boot_files {
            let path = root.join(f.name.trim_start_matches('/'));
            let inside = path
                .canonicalize()
                .map(|p| p.starts_with(&root) && p.is_file());
            match inside {
                Ok(true) => {
                    // A second name outside the root would let whoever can
                    // write there change what clients boot.
                    use std::os::unix::fs::MetadataExt;
                    let links = std::fs::metadata(&path).map_or(1, |m| m.nlink());
                    if links > 1 {
                        return Err(err(
                            f.line,
                            f.column,
                            &f.field,
                            format!(
                                "boot file {} has {links} hard links: another name, possibly outside the TFTP root, can change what clients boot; copy the file instead of linking it",
                                path.display()
                            ),
                        ));
                    }
                }
                Ok(false) => {
                    return Err(err(
                        f.line,
                        f.column,
                        &f.field,
                        format!(
                            "boot file {} is not a regular file inside the TFTP root",
                            path.display()
                        ),
                    ));
                }
                Err(e) => {
                    return Err(err(
                        f.line,
                        f.column,
                        &f.field,
                        format!("boot file {}: {e}", path.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Directories that must never be a TFTP root: `/` and the directories
/// that hold the system, its secrets or its state, and anything under the
/// ones that hold secrets or kernel interfaces. `None` for anything else
/// (`/srv/tftp`, `/var/lib/tftpboot`, a directory of the user's).
fn system_directory(root: &Path) -> Option<&'static str> {
    const HOLDS_SYSTEM: &[&str] = &[
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/opt", "/proc",
        "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/log",
        "/var/tmp",
    ];
    const SECRETS_BELOW: &[&str] = &["/boot", "/dev", "/etc", "/proc", "/root", "/run", "/sys"];
    if root == Path::new("/") {
        return Some("the whole file system");
    }
    if HOLDS_SYSTEM.iter().any(|d| root == Path::new(d)) {
        return Some("a system directory");
    }
    if SECRETS_BELOW.iter().any(|d| root.starts_with(d)) {
        return Some("inside a system directory");
    }
    None
}

/// Read and validate (stages 1 and 2) the configuration file at `path`.
pub fn load(path: &Path) -> Result<BootServerConfig, ConfigError> {
    parse(path, &read(path)?)
}

/// Validate (stages 1 and 2) configuration `text`; `file` names it in
/// errors and its directory anchors relative paths.
pub fn parse(file: &Path, text: &str) -> Result<BootServerConfig, ConfigError> {
    let cx = Cx { file, text };
    let raw: Raw = cx.deserialize()?;
    let table: toml::Table = cx.deserialize()?;
    let mut config = Conv {
        cx,
        base: base_dir(file),
        warnings: Vec::new(),
    }
    .convert(raw)?;
    config.table = table;
    Ok(config)
}

/// The directory relative paths in `file` are resolved against: the file's
/// own directory, whatever form its path has (`preboot.toml`, `./x.toml`,
/// `../etc/x.toml`, `/etc/x.toml`). A bare name's parent is the empty path,
/// which is the current directory.
fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

type S<T> = Spanned<T>;

/// Why an old `[menu]` table is refused: it was renamed, and the new name
/// says which of the two menus it is.
const OLD_MENU: &str = "[menu] is now [pxe_prompt] (the firmware's PXE boot prompt, option 43, shown before any preboot client runs; the preboot client's menu is the policy's: transaction.store.server.menu, or menu in a [[transaction.store.policy]] or [[transaction.store.workstation]])";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: S<RawServer>,
    #[serde(default)]
    ports: RawPorts,
    boot: S<RawBoot>,
    #[serde(default)]
    pxe_prompt: RawPxePrompt,
    /// The old name of `[pxe_prompt]`: refused, naming the new key.
    menu: Option<S<toml::Value>>,
    #[serde(default)]
    dhcp: RawDhcp,
    tftp: Option<S<RawTftp>>,
    transaction: Option<S<RawTransaction>>,
    mtftp: Option<S<RawMtftp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtftp {
    enabled: Option<bool>,
    server_port: Option<S<i64>>,
    listen_secs: Option<S<i64>>,
    delay_secs: Option<S<i64>>,
    timeout_ms: Option<S<i64>>,
    max_retries: Option<S<i64>>,
    window: Option<S<i64>>,
    ttl: Option<S<i64>>,
    #[serde(default)]
    file: Vec<S<RawMtftpFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtftpFile {
    file: S<String>,
    group: S<String>,
    client_port: S<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransaction {
    enabled: Option<bool>,
    advertise: Option<bool>,
    server_key_file: Option<S<String>>,
    journal_file: Option<S<String>>,
    max_handouts: Option<S<i64>>,
    server_name: Option<S<String>>,
    store_file: Option<S<String>>,
    store: Option<S<policy_store::Raw>>,
    keys: Option<S<policy_store::RawKeys>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    mode: Option<S<String>>,
    server_ip: S<String>,
    tftp_server: Option<S<String>>,
    interface: Option<S<String>>,
    listen: Option<S<String>>,
    broadcast_address: Option<S<String>>,
    user: Option<S<String>>,
    state_dir: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPorts {
    dhcp: Option<S<u16>>,
    boot: Option<S<u16>>,
    tftp: Option<S<u16>>,
    client: Option<S<u16>>,
    transaction: Option<S<u16>>,
}

/// `[boot]`: one key per boot class of the architecture table
/// ([`BootArch::key`]), plus `ipxe`, `check_files` and `[boot.servers]`.
/// Deserialized by hand because its keys come from the table.
#[derive(Default)]
struct RawBoot {
    files: BTreeMap<BootArch, S<String>>,
    ipxe: Option<S<String>>,
    check_files: Option<bool>,
    servers: RawServers,
}

/// `[boot.servers]`: the keys of `[boot]` that name a TFTP file (not the
/// HTTP-boot URLs), plus `ipxe`.
#[derive(Default)]
struct RawServers {
    archs: BTreeMap<BootArch, S<String>>,
    ipxe: Option<S<String>>,
}

/// A key of `[boot]` or `[boot.servers]`.
enum BootKey {
    Arch(BootArch),
    Ipxe,
    CheckFiles,
    Servers,
}

/// The keys allowed in `[boot]` (`servers == false`) or `[boot.servers]`.
fn boot_keys(servers: bool) -> impl Iterator<Item = &'static str> {
    BootArch::ALL
        .iter()
        .filter(move |a| !(servers && a.is_http()))
        .filter_map(|a| a.key())
        .chain(["ipxe"])
        .chain(
            if servers {
                &[][..]
            } else {
                &["check_files", "servers"][..]
            }
            .iter()
            .copied(),
        )
}

impl BootKey {
    fn parse<E: serde::de::Error>(v: &str, servers: bool) -> Result<Self, E> {
        if boot_keys(servers).any(|k| k == v) {
            return Ok(match v {
                "ipxe" => BootKey::Ipxe,
                "check_files" => BootKey::CheckFiles,
                "servers" => BootKey::Servers,
                _ => match BootArch::from_key(v) {
                    Some(a) => BootKey::Arch(a),
                    None => return Err(E::custom("unreachable")),
                },
            });
        }
        // serde's wording, so that the message lists the allowed keys.
        let list: Vec<String> = boot_keys(servers).map(|k| format!("`{k}`")).collect();
        Err(E::custom(format!(
            "unknown field `{v}`, expected one of {}",
            list.join(", ")
        )))
    }
}

/// A key of `[boot]` (`SERVERS == false`) or `[boot.servers]`.
struct Key<const SERVERS: bool>(BootKey);

impl<'de, const SERVERS: bool> Deserialize<'de> for Key<SERVERS> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const SERVERS: bool>;
        impl<const SERVERS: bool> serde::de::Visitor<'_> for V<SERVERS> {
            type Value = Key<SERVERS>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<SERVERS>, E> {
                BootKey::parse(v, SERVERS).map(Key)
            }
        }
        d.deserialize_identifier(V::<SERVERS>)
    }
}

impl<'de> Deserialize<'de> for RawBoot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawBoot;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a table of boot files")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<RawBoot, A::Error> {
                let mut out = RawBoot::default();
                while let Some(Key::<false>(k)) = m.next_key()? {
                    match k {
                        BootKey::Arch(a) => _ = out.files.insert(a, m.next_value()?),
                        BootKey::Ipxe => out.ipxe = Some(m.next_value()?),
                        BootKey::CheckFiles => out.check_files = Some(m.next_value()?),
                        BootKey::Servers => out.servers = m.next_value()?,
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for RawServers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawServers;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a table of TFTP server addresses")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<RawServers, A::Error> {
                let mut out = RawServers::default();
                while let Some(Key::<true>(k)) = m.next_key()? {
                    match k {
                        BootKey::Arch(a) => _ = out.archs.insert(a, m.next_value()?),
                        _ => out.ipxe = Some(m.next_value()?),
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// `[pxe_prompt]`: the firmware's own PXE boot prompt and menu (PXE 2.1
/// §2.4.5, option 43 sub-options 9 and 10), shown by the PXE ROM before any
/// preboot client runs. Not the preboot client's menu, which is the
/// policy's (`menu` in `[transaction.store]`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPxePrompt {
    show: Option<S<String>>,
    prompt: Option<S<String>>,
    timeout_secs: Option<S<i64>>,
    #[serde(default)]
    item: Vec<S<RawItem>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    #[serde(rename = "type")]
    server_type: S<i64>,
    label: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDhcp {
    lease_file: Option<S<String>>,
    rate_limit: Option<RawRate>,
    max_declined_percent: Option<S<i64>>,
    #[serde(default)]
    pool: Vec<S<RawPool>>,
    #[serde(default)]
    reservation: Vec<S<RawReservation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    per_second: u32,
    burst: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    subnet: S<String>,
    mask: Option<S<String>>,
    start: S<String>,
    end: S<String>,
    router: Option<S<String>>,
    #[serde(default)]
    dns: Vec<S<String>>,
    lease_time_secs: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReservation {
    mac: Option<S<String>>,
    client_id: Option<S<String>>,
    address: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTftp {
    enabled: Option<bool>,
    root: Option<S<String>>,
    listen: Option<S<String>>,
    max_transfers: Option<S<i64>>,
    max_per_client: Option<S<i64>>,
    max_blksize: Option<S<i64>>,
    max_windowsize: Option<S<i64>>,
    timeout_ms: Option<S<i64>>,
    max_timeout_secs: Option<S<i64>>,
    max_retries: Option<S<i64>>,
    single_port: Option<bool>,
    port_range: Option<S<[u16; 2]>>,
    allow_write: Option<bool>,
    allow_overwrite: Option<bool>,
    max_write_size: Option<S<u64>>,
    allow_system_root: Option<bool>,
    loops: Option<S<i64>>,
}

/// `a` is in the pool's subnet and is neither its network nor its
/// broadcast address.
fn is_host_address(pool: &Pool, a: Ipv4Addr) -> bool {
    pool.subnet_contains(a) && a != pool.subnet && a != pool.broadcast()
}

struct Conv<'t> {
    cx: Cx<'t>,
    base: PathBuf,
    warnings: Vec<String>,
}

impl Conv<'_> {
    fn ip(&self, s: &S<String>, field: &str) -> Result<Ipv4Addr, ConfigError> {
        s.get_ref().parse().map_err(|_| {
            self.cx
                .at(s, field, "expected an IPv4 address like 192.168.1.10")
        })
    }

    fn opt_ip(&self, s: &Option<S<String>>, field: &str) -> Result<Option<Ipv4Addr>, ConfigError> {
        s.as_ref().map(|s| self.ip(s, field)).transpose()
    }

    /// A retransmission timeout in milliseconds, 100 ms to 255 s (the
    /// TFTP `timeout` option's range, RFC 2349), for `tftp.timeout_ms` and
    /// `mtftp.timeout_ms`.
    fn timeout_ms(&self, s: &S<i64>, field: &str) -> Result<Duration, ConfigError> {
        let ms: u32 = self.int(s, field, |v| (100..=255_000).contains(v), "100-255000")?;
        Ok(Duration::from_millis(u64::from(ms)))
    }

    fn int<T: TryFrom<i64>>(
        &self,
        s: &S<i64>,
        field: &str,
        ok: impl Fn(&T) -> bool,
        range: &str,
    ) -> Result<T, ConfigError> {
        T::try_from(*s.get_ref())
            .ok()
            .filter(|v| ok(v))
            .ok_or_else(|| self.cx.at(s, field, format!("expected {range}")))
    }

    fn path(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn position<T>(&self, s: &S<T>) -> (usize, usize) {
        self.cx.line_col(s.span().start)
    }

    fn convert(mut self, mut raw: Raw) -> Result<BootServerConfig, ConfigError> {
        if let Some(m) = &raw.menu {
            return Err(self.cx.at(m, "menu", OLD_MENU));
        }
        let transaction = raw.transaction.take();
        let srv = raw.server.get_ref();
        let server_ip = self.ip(&srv.server_ip, "server.server_ip")?;
        if server_ip.is_unspecified() || server_ip.is_broadcast() || server_ip.is_multicast() {
            return Err(self.cx.at(
                &srv.server_ip,
                "server.server_ip",
                "must be this host's unicast address on the clients' network",
            ));
        }
        let mode = match srv.mode.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("proxy") => Mode::Proxy,
            Some("full") => Mode::Full,
            Some(_) => {
                let at = srv.mode.as_ref().unwrap_or(&srv.server_ip);
                return Err(self
                    .cx
                    .at(at, "server.mode", "expected \"proxy\" or \"full\""));
            }
        };
        let listen = self
            .opt_ip(&srv.listen, "server.listen")?
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        if !listen.is_unspecified() && !listen.is_loopback() {
            self.warnings.push(format!(
                "server.listen = {listen}: a socket bound to a unicast address does not receive broadcast DISCOVERs; use 0.0.0.0 (with server.interface to pick the network)"
            ));
        }
        let p = &raw.ports;
        let port = |s: &Option<S<u16>>, d: u16| s.as_ref().map_or(d, |s| *s.get_ref());
        let (dhcp_port, boot_port, tftp_port, client_port, tx_port) = (
            port(&p.dhcp, 67),
            port(&p.boot, 4011),
            port(&p.tftp, 69),
            port(&p.client, 68),
            port(&p.transaction, TRANSACTION_PORT),
        );
        let tx_enabled = transaction
            .as_ref()
            .is_some_and(|t| t.get_ref().enabled != Some(false));
        if let (Some(t), false) = (&p.transaction, tx_enabled) {
            self.warnings.push(format!(
                "ports.transaction = {} but no transaction server runs (no [transaction] table, or transaction.enabled = false)",
                t.get_ref()
            ));
        }
        // A proxy OFFER names no boot file: PXE clients get it from the boot
        // server on 4011 (PXE 2.1 §2.2.1 steps 4-6), so proxy mode without
        // that socket could boot nobody.
        if mode == Mode::Proxy && boot_port == 0 {
            let msg =
                "proxy mode needs the boot server port (clients fetch the boot file name there)";
            return Err(match &p.boot {
                Some(b) => self.cx.at(b, "ports.boot", msg),
                None => self.cx.at(&srv.server_ip, "ports.boot", msg),
            });
        }
        // Two sockets on one port: the later bind would fail (or, with
        // SO_REUSEADDR, take the other's datagrams).
        let mut ports = std::vec![
            ("ports.dhcp", dhcp_port, &p.dhcp),
            ("ports.boot", boot_port, &p.boot),
            ("ports.tftp", tftp_port, &p.tftp),
        ];
        if tx_enabled {
            ports.push(("ports.transaction", tx_port, &p.transaction));
        }
        for (i, (name, port, at)) in ports.iter().enumerate() {
            for (other, other_port, other_at) in &ports[..i] {
                if port != other_port || *port == 0 {
                    continue;
                }
                let (field, span) = match (at, other_at) {
                    (Some(s), _) => (*name, s),
                    (None, Some(s)) => (*other, s),
                    (None, None) => continue,
                };
                return Err(self.cx.at(
                    span,
                    field,
                    format!("port {port} is used by both {other} and {name}"),
                ));
            }
        }
        if dhcp_port == 0 && p.dhcp.is_some() && listen.is_unspecified() {
            self.warnings
                .push("ports.dhcp = 0 picks a random port: no client will find it".into());
        }
        if let Some(c) = &p.client {
            if *c.get_ref() == 0 {
                return Err(self.cx.at(c, "ports.client", "expected 1-65535"));
            }
        }
        // Answers go to the client port: on the server's own DHCP port they
        // would come back to the server as requests (and a client could not
        // bind it beside the server).
        if client_port == dhcp_port {
            let msg = format!(
                "ports.client and ports.dhcp are both {client_port}: clients listen on another port than the server (68 and 67)"
            );
            return Err(match (&p.client, &p.dhcp) {
                (Some(c), _) => self.cx.at(c, "ports.client", msg),
                (None, Some(d)) => self.cx.at(d, "ports.dhcp", msg),
                (None, None) => self.cx.at(&srv.server_ip, "ports.client", msg),
            });
        }

        let mut dhcp = DhcpServerConfig::proxy(server_ip);
        dhcp.mode = mode;
        dhcp.dhcp_addr = SocketAddrV4::new(listen, dhcp_port);
        // ports.boot = 0: no boot server socket (4011 requests go unanswered).
        dhcp.boot_addr = (boot_port != 0).then(|| SocketAddrV4::new(listen, boot_port));
        dhcp.client_port = client_port;
        dhcp.tftp_server = self.opt_ip(&srv.tftp_server, "server.tftp_server")?;
        dhcp.broadcast_address = self
            .opt_ip(&srv.broadcast_address, "server.broadcast_address")?
            .unwrap_or(Ipv4Addr::BROADCAST);
        if let Some(i) = &srv.interface {
            let name = i.get_ref();
            // IFNAMSIZ is 16 with the NUL.
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
                return Err(self.cx.at(i, "server.interface", "not an interface name"));
            }
            dhcp.interface = Some(name.clone());
        }

        let state_dir = match &srv.state_dir {
            Some(d) if d.get_ref().is_empty() => {
                return Err(self.cx.at(d, "server.state_dir", "empty path"));
            }
            Some(d) => {
                let path = self.path(d.get_ref());
                dhcp.state_dir = Some(path.clone());
                let (line, column) = self.position(d);
                Some((path, line, column))
            }
            None => None,
        };

        // [tftp] first: boot files are checked against what it serves.
        let tftp = self.tftp(raw.tftp.as_ref(), listen, tftp_port)?;
        let (root_at, tftp) = match tftp {
            Some((at, t)) => (at, Some(t)),
            None => ((0, 0), None),
        };
        let (boot_files, files, check_files) = self.boot(&raw.boot, server_ip, tftp.is_some())?;
        dhcp.boot_files = boot_files;
        self.pxe_prompt(&raw.pxe_prompt, &mut dhcp)?;
        let lease_dir = self.dhcp(&raw.dhcp, mode, server_ip, &mut dhcp)?;
        let user = match &srv.user {
            Some(u) => {
                let name = u.get_ref();
                let valid = !name.is_empty()
                    && name.len() <= 32
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                if !valid {
                    return Err(self.cx.at(u, "server.user", "not an account name"));
                }
                name.clone()
            }
            None => super::super::privileges::DEFAULT_USER.into(),
        };
        let allow_system_root = raw
            .tftp
            .as_ref()
            .and_then(|t| t.get_ref().allow_system_root)
            .unwrap_or(false);
        let transaction = self.transaction(
            transaction,
            SocketAddrV4::new(listen, tx_port),
            server_ip,
            state_dir.as_ref().map(|(d, _, _)| d.as_path()),
        )?;
        let mut mtftp = self.mtftp(
            raw.mtftp.as_ref(),
            (listen, server_ip),
            tftp.as_ref().map(|t| t.root.clone()),
            &ports,
            client_port,
        )?;
        if let Some(m) = &mut mtftp {
            m.device = dhcp.interface.clone();
            for f in &m.files {
                dhcp.mtftp.insert(f.name.clone(), m.params(f));
            }
        }
        if mode == Mode::Proxy && !raw.dhcp.pool.is_empty() {
            self.warnings
                .push("dhcp.pool is used in full mode only (server.mode = \"proxy\")".into());
        }
        Ok(BootServerConfig {
            source: self.cx.file.to_path_buf(),
            dhcp,
            tftp,
            boot_files: files,
            check_files,
            warnings: self.warnings,
            user,
            allow_system_root,
            transaction,
            mtftp,
            lease_dir,
            state_dir,
            root_at,
            table: toml::Table::new(),
        })
    }

    /// `[transaction]`: the store (inline or a file), the keys (inline, or
    /// the store file's `[keys]`), the server key (given, a key file, or
    /// kept in the state directory).
    fn transaction(
        &mut self,
        raw: Option<S<RawTransaction>>,
        bind: SocketAddrV4,
        server_ip: Ipv4Addr,
        state_dir: Option<&Path>,
    ) -> Result<Option<TransactionConfig>, ConfigError> {
        let Some(t) = raw else {
            return Ok(None);
        };
        let span = t.span();
        let t = t.into_inner();
        if t.enabled == Some(false) {
            return Ok(None);
        }
        let here = self.cx.file.to_path_buf();
        let (store, file_keys, store_source) = match (t.store, &t.store_file) {
            (Some(_), Some(f)) => {
                return Err(self.cx.at(
                    f,
                    "transaction.store_file",
                    "the policy store is given twice, in [transaction.store] and in this file: keep one",
                ));
            }
            (Some(st), None) => {
                let st = st.into_inner();
                if let Some(k) = &st.keys {
                    return Err(self.cx.at(
                        k,
                        "transaction.store.keys",
                        "the keys go in [transaction.keys]",
                    ));
                }
                let store = self.cx.convert(st).map_err(|mut e| {
                    e.field = format!("transaction.store.{}", e.field);
                    e
                })?;
                (store, None, here.clone())
            }
            (None, Some(f)) => {
                if f.get_ref().is_empty() {
                    return Err(self.cx.at(f, "transaction.store_file", "empty path"));
                }
                let path = self.path(f.get_ref());
                // Its errors name that file, line and field.
                let (store, keys) = policy_store::load_with_keys(&path)?;
                (store, keys.map(|k| (k, path.clone())), path)
            }
            (None, None) => {
                self.warnings.push(
                    "[transaction] names no policy store (store_file or [transaction.store]): every workstation gets the defaults (menu on Ctrl+Alt, no tasks)"
                        .into(),
                );
                (MemoryStore::default(), None, here.clone())
            }
        };
        // Issue 15: the objects the server registered join the store's
        // (at start and at every reload).
        let mut store = store;
        if let Some(d) = state_dir {
            crate::driver::registry::merge_registrations(
                &mut store,
                &d.join(crate::driver::registry::REGISTRATIONS_FILE),
            )?;
        }
        let inline_keys = match &t.keys {
            Some(k) => Some((self.cx.key_table(k.get_ref(), "transaction.keys")?, k)),
            None => None,
        };
        let (table, keys_from) = match (inline_keys, file_keys) {
            (Some((_, at)), Some((_, path))) => {
                return Err(self.cx.at(
                    at,
                    "transaction.keys",
                    format!(
                        "the keys are given twice, here and in the [keys] table of {}: keep one",
                        path.display()
                    ),
                ));
            }
            (Some((k, _)), None) => (Some(k), here.clone()),
            (None, Some((k, path))) => (Some(k), path),
            (None, None) => (None, here.clone()),
        };
        let (server, workstation_keys) = match table {
            Some(KeyTable {
                server,
                workstations,
            }) => (server, workstations),
            None => (None, WorkstationKeys::new(false)),
        };
        let key = match (server, &t.server_key_file) {
            (Some(_), Some(f)) => {
                return Err(self.cx.at(
                    f,
                    "transaction.server_key_file",
                    format!(
                        "the server key is given twice, as server_private in {} and in this file: keep one",
                        keys_from.display()
                    ),
                ));
            }
            (Some(key), None) => ServerKey::Given {
                key,
                from: keys_from,
            },
            (None, Some(f)) => {
                let field = "transaction.server_key_file";
                if f.get_ref().is_empty() {
                    return Err(self.cx.at(f, field, "empty path"));
                }
                let path = self.path(f.get_ref());
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| self.cx.at(f, field, format!("{}: {e}", path.display())))?;
                let key = parse_key(&text)
                    .and_then(StaticKey::from_bytes)
                    .map_err(|e| self.cx.at(f, field, format!("{}: {e}", path.display())))?;
                use std::os::unix::fs::PermissionsExt;
                if std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                    self.warnings.push(format!(
                        "{field}: {} can be read by other accounts than its owner: whoever reads it can act as this server (chmod 600)",
                        path.display()
                    ));
                }
                ServerKey::Given { key, from: path }
            }
            (None, None) => match state_dir {
                Some(d) => ServerKey::Kept(d.join(SERVER_KEY_FILE)),
                None => {
                    return Err(self.cx.err(
                        span,
                        "transaction",
                        "no server key: set server_private in [transaction.keys], name a key file with transaction.server_key_file, or set server.state_dir (the server then makes its key there on the first start and keeps it)",
                    ));
                }
            },
        };
        let journal = match (&t.journal_file, state_dir) {
            (Some(f), _) if f.get_ref().is_empty() => {
                return Err(self.cx.at(f, "transaction.journal_file", "empty path"));
            }
            (Some(f), _) => Some(self.path(f.get_ref())),
            (None, Some(d)) => Some(d.join(TASK_JOURNAL_FILE)),
            (None, None) => {
                self.warnings.push(
                    "no task journal (set server.state_dir or transaction.journal_file): task hand-outs and reports are kept in memory only, and a restart forgets them"
                        .into(),
                );
                None
            }
        };
        let max_handouts = match &t.max_handouts {
            Some(m) => self.int(
                m,
                "transaction.max_handouts",
                |v: &u32| (1..=1000).contains(v),
                "1 to 1000",
            )?,
            None => crate::policy::DEFAULT_MAX_HANDOUTS,
        };
        let server_name = match &t.server_name {
            Some(n) => {
                let v = n.get_ref();
                if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
                    return Err(self.cx.at(
                        n,
                        "transaction.server_name",
                        "1 to 64 bytes, no control characters",
                    ));
                }
                v.clone()
            }
            None => server_ip.to_string(),
        };
        if workstation_keys.is_empty() && !workstation_keys.auto_enrol() {
            self.warnings.push(
                "the transaction server has no workstation keys and transaction.keys.auto_enrol is off: every workstation waits as pending until its key is bound"
                    .into(),
            );
        }
        Ok(Some(TransactionConfig {
            bind,
            key,
            store,
            store_source,
            workstation_keys,
            engine: ServerConfig::default(),
            journal,
            pending_keys: state_dir.map(|d| d.join(PENDING_KEYS_FILE)),
            max_handouts,
            server_name,
            advertise: t.advertise.unwrap_or(true),
            state_dir: state_dir.map(Path::to_path_buf),
        }))
    }

    #[allow(clippy::type_complexity)]
    fn boot(
        &self,
        raw: &S<RawBoot>,
        server_ip: Ipv4Addr,
        tftp_here: bool,
    ) -> Result<(BootFileConfig, Vec<BootFileRef>, bool), ConfigError> {
        let b = raw.get_ref();
        let mut out = BootFileConfig::default();
        let mut files = Vec::new();
        // The server of an architecture's file (`None`: iPXE's).
        let server_of = |arch: Option<BootArch>| match arch {
            Some(a) => b.servers.archs.get(&a),
            None => b.servers.ipxe.as_ref(),
        };
        // The architectures' files (in table order), then iPXE's.
        let archs = b.files.iter().map(|(a, f)| (Some(*a), f));
        for (arch, file) in archs.chain(b.ipxe.iter().map(|f| (None, f))) {
            let key = arch.and_then(BootArch::key).unwrap_or("ipxe");
            let field = format!("boot.{key}");
            self.file_name(file, &field)?;
            let name = file.get_ref();
            if arch.is_some_and(BootArch::is_http) {
                if !(name.starts_with("http://") || name.starts_with("https://")) {
                    return Err(self
                        .cx
                        .at(file, &field, "expected an http:// or https:// URL"));
                }
                if let Some(a) = arch {
                    out.files.insert(a, name.clone());
                }
                continue;
            }
            let server = server_of(arch)
                .map(|s| self.ip(s, &format!("boot.servers.{key}")))
                .transpose()?;
            let url = name.contains("://");
            // A file on another host ([boot.servers]) is not checked here.
            if !url && tftp_here && server.is_none_or(|s| s == server_ip) {
                let (line, column) = self.position(file);
                files.push(BootFileRef {
                    field: field.clone(),
                    name: name.clone(),
                    line,
                    column,
                });
            }
            match arch {
                Some(a) => {
                    out.files.insert(a, name.clone());
                    if let Some(s) = server {
                        out.servers.insert(a, s);
                    }
                }
                None => {
                    out.ipxe = Some(name.clone());
                    out.ipxe_server = server;
                }
            }
        }
        // A server for an architecture without a file is still checked.
        for (a, s) in &b.servers.archs {
            if !out.files.contains_key(a) {
                self.ip(s, &format!("boot.servers.{}", a.key().unwrap_or_default()))?;
            }
        }
        if let (None, Some(s)) = (&b.ipxe, &b.servers.ipxe) {
            self.ip(s, "boot.servers.ipxe")?;
        }
        if out.files.len() > MAX_BOOT_FILES {
            return Err(self.cx.at(
                raw,
                "boot",
                format!(
                    "boot files for {} architectures: at most {MAX_BOOT_FILES}",
                    out.files.len()
                ),
            ));
        }
        if out.files.is_empty() {
            return Err(self.cx.at(
                raw,
                "boot",
                "no boot file for any architecture: set at least one of bios, uefi_x64, uefi_ia32, uefi_arm64, http_url, … (the keys of [boot] in examples/preboot.toml)",
            ));
        }
        Ok((out, files, b.check_files.unwrap_or(true)))
    }

    fn file_name(&self, s: &S<String>, field: &str) -> Result<(), ConfigError> {
        let n = s.get_ref();
        if n.is_empty() {
            return Err(self.cx.at(s, field, "empty file name"));
        }
        if n.len() > BOOT_FILE_LEN {
            return Err(self.cx.at(
                s,
                field,
                format!(
                    "{} bytes: the BOOTP file field holds at most {BOOT_FILE_LEN}",
                    n.len()
                ),
            ));
        }
        if !n.contains("://") && (n.split('/').any(|c| c == "..") || n.contains(['\\', '\0'])) {
            return Err(self.cx.at(
                s,
                field,
                "a boot file is a path inside the TFTP root (no `..`, no backslash)",
            ));
        }
        Ok(())
    }

    fn text(&self, s: &S<String>, field: &str) -> Result<String, ConfigError> {
        let t = s.get_ref();
        if t.len() > TEXT_LEN {
            return Err(self
                .cx
                .at(s, field, format!("{} bytes: at most {TEXT_LEN}", t.len())));
        }
        Ok(t.clone())
    }

    fn pxe_prompt(&self, m: &RawPxePrompt, dhcp: &mut DhcpServerConfig) -> Result<(), ConfigError> {
        let timeout = match &m.timeout_secs {
            Some(t) => self.int::<u8>(
                t,
                "pxe_prompt.timeout_secs",
                |v| (1..=254).contains(v),
                "1-254",
            )?,
            None => 5,
        };
        dhcp.menu = match m.show.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "never")) => MenuPolicy::Never,
            Some((_, "always")) => MenuPolicy::Always,
            Some((_, "on-key-press")) => MenuPolicy::OnKeyPress {
                timeout_secs: timeout,
            },
            Some((s, _)) => {
                return Err(self.cx.at(
                    s,
                    "pxe_prompt.show",
                    "expected \"never\", \"always\" or \"on-key-press\"",
                ));
            }
        };
        if let Some(p) = &m.prompt {
            dhcp.menu_prompt = self.text(p, "pxe_prompt.prompt")?;
        }
        if m.item.len() > MAX_MENU_ITEMS {
            return Err(self.cx.at(
                &m.item[MAX_MENU_ITEMS],
                "pxe_prompt.item",
                format!("at most {MAX_MENU_ITEMS} prompt items"),
            ));
        }
        for it in &m.item {
            let i = it.get_ref();
            let ty = self.int::<u16>(
                &i.server_type,
                "pxe_prompt.item.type",
                |_| true,
                "a boot server type 0-65535",
            )?;
            dhcp.menu_items
                .push((ty, self.text(&i.label, "pxe_prompt.item.label")?));
        }
        // The labels share one PXE sub-option of 255 bytes: a menu over it
        // would make every answer that carries it fail to encode.
        // The error points at the item that crosses the limit and counts
        // the whole menu.
        let mut menu = crate::dhcp::config::Menu::default();
        menu.items.clear();
        let mut crossing = None;
        for ((ty, label), raw) in dhcp.menu_items.iter().zip(&m.item) {
            let _ = menu.items.push(crate::dhcp::config::MenuItem {
                server_type: *ty,
                description: crate::dhcp::config::Text::try_from(label.as_str())
                    .unwrap_or_default(),
                file: None,
            });
            if crossing.is_none() && menu.check().is_err() {
                crossing = Some(raw);
            }
        }
        if let (Err(e), Some(at)) = (menu.check(), crossing) {
            return Err(self.cx.at(at, "pxe_prompt.item", e.to_string()));
        }
        Ok(())
    }

    fn dhcp(
        &mut self,
        d: &RawDhcp,
        mode: Mode,
        server_ip: Ipv4Addr,
        dhcp: &mut DhcpServerConfig,
    ) -> Result<Option<(PathBuf, usize, usize)>, ConfigError> {
        if let Some(r) = &d.rate_limit {
            dhcp.rate_limit = RateLimit {
                per_second: r.per_second,
                burst: r.burst,
            };
        }
        if let Some(p) = &d.max_declined_percent {
            dhcp.max_declined_percent =
                self.int(p, "dhcp.max_declined_percent", |v| *v <= 100, "0-100")?;
        }
        if d.pool.len() > MAX_POOLS {
            return Err(self.cx.at(
                &d.pool[MAX_POOLS],
                "dhcp.pool",
                format!("at most {MAX_POOLS} pools"),
            ));
        }
        for p in &d.pool {
            let pool = self.pool(p)?;
            dhcp.pools.push(pool);
        }
        if d.reservation.len() > MAX_RESERVATIONS {
            return Err(self.cx.at(
                &d.reservation[MAX_RESERVATIONS],
                "dhcp.reservation",
                format!("at most {MAX_RESERVATIONS} reservations"),
            ));
        }
        for r in &d.reservation {
            let res = self.reservation(r, &dhcp.pools)?;
            if dhcp.reservations.iter().any(|o| o.key == res.key) {
                return Err(self.cx.at(
                    r,
                    "dhcp.reservation",
                    "a second reservation for the same client",
                ));
            }
            if dhcp.reservations.iter().any(|o| o.address == res.address) {
                return Err(self.cx.at(
                    &r.get_ref().address,
                    "dhcp.reservation.address",
                    "address reserved twice",
                ));
            }
            dhcp.reservations.push(res);
        }
        if mode == Mode::Full {
            if dhcp.pools.is_empty() {
                return Err(ConfigError {
                    file: self.cx.file.to_path_buf(),
                    line: 0,
                    column: 0,
                    field: "dhcp.pool".into(),
                    message: "server.mode = \"full\" needs at least one [[dhcp.pool]]".into(),
                });
            }
            if !dhcp.pools.iter().any(|p| p.subnet_contains(server_ip)) {
                self.warnings.push(format!(
                    "server.server_ip {server_ip} is in no pool's subnet: only relayed clients (giaddr) get addresses"
                ));
            }
        }
        let Some(lf) = &d.lease_file else {
            return Ok(None);
        };
        if lf.get_ref().is_empty() {
            return Err(self.cx.at(lf, "dhcp.lease_file", "empty path"));
        }
        let path = self.path(lf.get_ref());
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let (line, column) = self.position(lf);
        dhcp.lease_file = Some(path);
        Ok((mode == Mode::Full).then_some((dir, line, column)))
    }

    fn pool(&self, p: &S<RawPool>) -> Result<Pool, ConfigError> {
        let r = p.get_ref();
        let (net, prefix) = match (r.subnet.get_ref().split_once('/'), &r.mask) {
            (Some(_), None) => parse_cidr(r.subnet.get_ref()).ok_or_else(|| {
                self.cx.at(
                    &r.subnet,
                    "dhcp.pool.subnet",
                    "expected a subnet like 192.168.1.0/24",
                )
            })?,
            (None, Some(m)) => {
                let ip = self.ip(&r.subnet, "dhcp.pool.subnet")?;
                let mask = u32::from(self.ip(m, "dhcp.pool.mask")?);
                if mask.leading_ones() + mask.trailing_zeros() != 32 {
                    return Err(self.cx.at(m, "dhcp.pool.mask", "not a contiguous netmask"));
                }
                (ip, mask.leading_ones() as u8)
            }
            (Some(_), Some(m)) => {
                return Err(self.cx.at(
                    m,
                    "dhcp.pool.mask",
                    "give the prefix length in subnet or a mask, not both",
                ));
            }
            (None, None) => {
                return Err(self.cx.at(
                    &r.subnet,
                    "dhcp.pool.subnet",
                    "expected a subnet like 192.168.1.0/24 (or set mask)",
                ));
            }
        };
        if !(8..=30).contains(&prefix) {
            return Err(self
                .cx
                .at(&r.subnet, "dhcp.pool.subnet", "prefix length must be 8-30"));
        }
        let mut pool = Pool {
            subnet: net,
            prefix_len: prefix,
            start: self.ip(&r.start, "dhcp.pool.start")?,
            end: self.ip(&r.end, "dhcp.pool.end")?,
            router: self.opt_ip(&r.router, "dhcp.pool.router")?,
            dns: Default::default(),
            lease_time: Duration::from_secs(3600),
        };
        if u32::from(net) & !u32::from(pool.mask()) != 0 {
            return Err(self.cx.at(
                &r.subnet,
                "dhcp.pool.subnet",
                format!(
                    "host bits set: the network address is {}",
                    Ipv4Addr::from(u32::from(net) & u32::from(pool.mask()))
                ),
            ));
        }
        let usable = |a| is_host_address(&pool, a);
        if !usable(pool.start) {
            return Err(self.cx.at(
                &r.start,
                "dhcp.pool.start",
                format!(
                    "outside the subnet's host addresses ({}/{prefix})",
                    pool.subnet
                ),
            ));
        }
        if !usable(pool.end) {
            return Err(self.cx.at(
                &r.end,
                "dhcp.pool.end",
                format!(
                    "outside the subnet's host addresses ({}/{prefix})",
                    pool.subnet
                ),
            ));
        }
        if u32::from(pool.end) < u32::from(pool.start) {
            return Err(self.cx.at(&r.end, "dhcp.pool.end", "before start"));
        }
        if let (Some(router), Some(s)) = (pool.router, &r.router) {
            if !usable(router) {
                return Err(self.cx.at(s, "dhcp.pool.router", "outside the subnet"));
            }
        }
        if r.dns.len() > 3 {
            return Err(self
                .cx
                .at(&r.dns[3], "dhcp.pool.dns", "at most 3 DNS servers"));
        }
        for d in &r.dns {
            let _ = pool.dns.push(self.ip(d, "dhcp.pool.dns")?);
        }
        if let Some(t) = &r.lease_time_secs {
            let secs = self.int::<u32>(
                t,
                "dhcp.pool.lease_time_secs",
                |v| *v >= 60,
                "at least 60 seconds",
            )?;
            pool.lease_time = Duration::from_secs(u64::from(secs));
        }
        Ok(pool)
    }

    fn reservation(
        &self,
        r: &S<RawReservation>,
        pools: &[Pool],
    ) -> Result<Reservation, ConfigError> {
        let x = r.get_ref();
        let key = match (&x.mac, &x.client_id) {
            (Some(m), None) => {
                let bytes = parse_mac(m.get_ref()).ok_or_else(|| {
                    self.cx.at(
                        m,
                        "dhcp.reservation.mac",
                        "expected a MAC address like 52:54:00:12:34:56",
                    )
                })?;
                ReservationKey::Mac(bytes)
            }
            (None, Some(c)) => {
                let bytes = parse_hex_bytes(c.get_ref(), CLIENT_ID_LEN)
                    .filter(|b| b.len() >= 2)
                    .ok_or_else(|| {
                        self.cx.at(
                            c,
                            "dhcp.reservation.client_id",
                            format!(
                                "expected 2-{CLIENT_ID_LEN} hex bytes like 01:52:54:00:12:34:56"
                            ),
                        )
                    })?;
                let mut v = heapless::Vec::new();
                let _ = v.extend_from_slice(&bytes);
                ReservationKey::ClientId(v)
            }
            _ => {
                return Err(self.cx.at(
                    r,
                    "dhcp.reservation",
                    "set exactly one of mac and client_id",
                ));
            }
        };
        let address = self.ip(&x.address, "dhcp.reservation.address")?;
        if !pools.iter().any(|p| is_host_address(p, address)) {
            return Err(self.cx.at(
                &x.address,
                "dhcp.reservation.address",
                "in no pool's subnet",
            ));
        }
        Ok(Reservation { key, address })
    }

    /// `[mtftp]`: stage 2 (values, ports, groups); the files are checked
    /// in stage 3 ([`BootServerConfig::check_files`]).
    fn mtftp(
        &self,
        raw: Option<&S<RawMtftp>>,
        (listen, server_ip): (Ipv4Addr, Ipv4Addr),
        root: Option<PathBuf>,
        ports: &[(&str, u16, &Option<S<u16>>)],
        dhcp_client_port: u16,
    ) -> Result<Option<MtftpConfig>, ConfigError> {
        let Some(ms) = raw else {
            return Ok(None);
        };
        let m = ms.get_ref();
        if m.enabled == Some(false) {
            return Ok(None);
        }
        let Some(root) = root else {
            return Err(self.cx.at(
                ms,
                "mtftp",
                "MTFTP serves files under tftp.root: enable [tftp] (or set mtftp.enabled = false)",
            ));
        };
        let port = |v: &S<i64>, field: &str| -> Result<u16, ConfigError> {
            self.int(v, field, |p: &u16| *p != 0, "a port 1-65535")
        };
        let server_port = match &m.server_port {
            Some(v) => {
                let p = port(v, "mtftp.server_port")?;
                if let Some((other, _, _)) = ports.iter().find(|(_, o, _)| *o == p) {
                    return Err(self.cx.at(
                        v,
                        "mtftp.server_port",
                        format!("port {p} is used by both {other} and mtftp.server_port"),
                    ));
                }
                p
            }
            None => 1759,
        };
        if let Some((other, _, at)) = ports.iter().find(|(_, o, _)| *o == server_port) {
            let at = at.as_ref().map(|a| a.span()).unwrap_or(ms.span());
            return Err(self.cx.err(
                at,
                "mtftp.server_port",
                format!(
                    "the default MTFTP server port {server_port} is used by {other}: set mtftp.server_port"
                ),
            ));
        }
        let secs = |v: &Option<S<i64>>, field: &str, default: u8| -> Result<u8, ConfigError> {
            v.as_ref().map_or(Ok(default), |v| {
                self.int(v, field, |s: &u8| *s >= 1, "1-255 seconds")
            })
        };
        let listen_secs = secs(&m.listen_secs, "mtftp.listen_secs", 2)?;
        let delay_secs = secs(&m.delay_secs, "mtftp.delay_secs", 5)?;
        let mut engine = crate::mtftp::server::ServerConfig::default();
        if let Some(v) = &m.timeout_ms {
            engine.timeout = self.timeout_ms(v, "mtftp.timeout_ms")?;
        }
        if let Some(v) = &m.max_retries {
            engine.max_retries = self.int(v, "mtftp.max_retries", |v| *v >= 1, "1-255")?;
        }
        if let Some(v) = &m.window {
            // A socket buffer holds far more than 64 blocks of 512 bytes.
            engine.window = self.int(v, "mtftp.window", |v| (1..=64).contains(v), "1-64")?;
        }
        let ttl = match &m.ttl {
            Some(v) => self.int(v, "mtftp.ttl", |v: &u32| (1..=255).contains(v), "1-255")?,
            None => 1,
        };
        let mut files: Vec<MtftpFile> = Vec::new();
        for f in &m.file {
            let raw = f.get_ref();
            let name = raw.file.get_ref();
            if name.trim_start_matches('/').is_empty()
                || crate::fs::ValidPath::new(name.as_bytes()).is_err()
            {
                return Err(self.cx.at(
                    &raw.file,
                    "mtftp.file.file",
                    "not a file name under tftp.root",
                ));
            }
            let ip = self.ip(&raw.group, "mtftp.file.group")?;
            if !ip.is_multicast() {
                return Err(self.cx.at(
                    &raw.group,
                    "mtftp.file.group",
                    format!("{ip} is not a multicast address (224.0.0.0/4; 239.0.0.0/8 is for local use)"),
                ));
            }
            let cport = port(&raw.client_port, "mtftp.file.client_port")?;
            if cport == server_port {
                return Err(self.cx.at(
                    &raw.client_port,
                    "mtftp.file.client_port",
                    format!("port {cport} is also mtftp.server_port: clients listen on another port than the server takes requests on"),
                ));
            }
            if cport == dhcp_client_port {
                return Err(self.cx.at(
                    &raw.client_port,
                    "mtftp.file.client_port",
                    format!("port {cport} is the DHCP client port (ports.client)"),
                ));
            }
            let group = SocketAddrV4::new(ip, cport);
            if let Some(o) = files.iter().find(|o| o.group == group) {
                return Err(self.cx.at(
                    f,
                    "mtftp.file",
                    format!(
                        "group {group} already serves {} (line {}): give each file its own group or client port",
                        o.name, o.line
                    ),
                ));
            }
            if let Some(o) = files
                .iter()
                .find(|o| o.name.trim_start_matches('/') == name.trim_start_matches('/'))
            {
                return Err(self.cx.at(
                    &raw.file,
                    "mtftp.file.file",
                    format!("{name} is already served on {} (line {})", o.group, o.line),
                ));
            }
            let (line, column) = self.position(f);
            files.push(MtftpFile {
                name: name.clone(),
                group,
                line,
                column,
            });
        }
        Ok(Some(MtftpConfig {
            bind: SocketAddrV4::new(listen, server_port),
            interface: if listen.is_unspecified() {
                server_ip
            } else {
                listen
            },
            device: None,
            listen_secs,
            delay_secs,
            ttl,
            engine,
            root,
            files,
        }))
    }

    #[allow(clippy::type_complexity)]
    fn tftp(
        &self,
        t: Option<&S<RawTftp>>,
        listen: Ipv4Addr,
        port: u16,
    ) -> Result<Option<((usize, usize), TftpServerConfig)>, ConfigError> {
        let Some(ts) = t else {
            return Err(ConfigError {
                file: self.cx.file.to_path_buf(),
                line: 0,
                column: 0,
                field: "tftp".into(),
                message: "missing [tftp] table (set root, or enabled = false)".into(),
            });
        };
        let t = ts.get_ref();
        if t.enabled == Some(false) {
            return Ok(None);
        }
        let Some(root) = &t.root else {
            return Err(self.cx.at(
                ts,
                "tftp.root",
                "missing: the directory served (or enabled = false)",
            ));
        };
        let listen = self.opt_ip(&t.listen, "tftp.listen")?.unwrap_or(listen);
        let mut c = TftpServerConfig::new(
            SocketAddr::V4(SocketAddrV4::new(listen, port)),
            self.path(root.get_ref()),
        );
        if let Some(v) = &t.max_transfers {
            c.max_transfers = self.int(
                v,
                "tftp.max_transfers",
                |v: &usize| (1..=MAX_TRANSFERS).contains(v),
                "1-65536",
            )?;
        }
        if let Some(v) = &t.max_per_client {
            c.max_per_client = self.int(v, "tftp.max_per_client", |v| *v >= 1, "at least 1")?;
        }
        if let Some(v) = &t.loops {
            c.loops = self.int(
                v,
                "tftp.loops",
                |v: &usize| (1..=MAX_LOOPS).contains(v),
                "1-1024",
            )?;
        }
        if let Some(v) = &t.max_blksize {
            c.max_blksize = self.int(
                v,
                "tftp.max_blksize",
                |v| (512..=MAX_BLKSIZE).contains(v),
                "512-65464 (RFC 2348)",
            )?;
        }
        if let Some(v) = &t.max_windowsize {
            c.max_windowsize = self.int(
                v,
                "tftp.max_windowsize",
                |v| (1..=65535).contains(v),
                "1-65535 (RFC 7440)",
            )?;
        }
        if let Some(v) = &t.timeout_ms {
            c.timeout = self.timeout_ms(v, "tftp.timeout_ms")?;
        }
        if let Some(v) = &t.max_timeout_secs {
            let secs: u8 = self.int(
                v,
                "tftp.max_timeout_secs",
                |v| (1..=255).contains(v),
                "1-255",
            )?;
            c.max_timeout = Duration::from_secs(u64::from(secs));
        }
        if let Some(v) = &t.max_retries {
            c.max_retries = self.int(v, "tftp.max_retries", |v| *v >= 1, "1-255")?;
        }
        if let Some(r) = &t.port_range {
            let [lo, hi] = *r.get_ref();
            if lo == 0 || lo > hi {
                return Err(self.cx.at(
                    r,
                    "tftp.port_range",
                    "expected [first, last] with 0 < first <= last",
                ));
            }
            c.port_range = Some(lo..=hi);
        }
        c.single_port = t.single_port.unwrap_or(false);
        c.allow_write = t.allow_write.unwrap_or(false);
        c.allow_overwrite = t.allow_overwrite.unwrap_or(false);
        c.max_write_size = t.max_write_size.as_ref().map(|s| *s.get_ref());
        Ok(Some((self.position(root), c)))
    }
}
