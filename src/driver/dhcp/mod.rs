//! The std DHCP / proxyDHCP / boot server driver: the
//! [`Server`](crate::dhcp::Server) engine on
//! UDP sockets (port 67 and port 4011), with the lease log.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use preboot::dhcp::BootArch;
//! use preboot::driver::dhcp::{DhcpServer, DhcpServerConfig};
//!
//! let mut config = DhcpServerConfig::proxy(Ipv4Addr::new(192, 168, 77, 1));
//! config.interface = Some("br0".into());
//! config.boot_files.files.insert(BootArch::Bios, "pxelinux.0".into());
//! config.boot_files.files.insert(BootArch::UefiX64, "grubnetx64.efi".into());
//! let server = DhcpServer::bind(config)?;
//! let stop = server.stop_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(60));
//!     stop.stop();
//! });
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Sockets: one bound to [`DhcpServerConfig::dhcp_addr`] (`0.0.0.0:67` by
//! default, so broadcasts arrive) and one to [`DhcpServerConfig::boot_addr`]
//! (`0.0.0.0:4011`). Neither lets another socket share its port
//! (no `SO_REUSEADDR`), except port 67 in proxy mode, which must live beside
//! the network's DHCP server; so no local user can bind `127.0.0.1:4011`
//! and take the boot requests. A second instance with the same lease log
//! or state directory is refused by an exclusive lock
//! ([`DhcpServerConfig::lock_path`], [`InstanceLock`]). Each socket has
//! `SO_BROADCAST` and, when
//! [`DhcpServerConfig::interface`] is set, `SO_BINDTODEVICE`: broadcasts
//! then leave through that interface and the kernel picks that interface's
//! address as the source, which is the right one on a multi-homed host.
//! Both sockets are served by one [`DhcpService`] on an event loop
//! ([`crate::driver::event_loop`]): the engine has no lock, since only the
//! loop's thread calls it, and no thread serves one protocol;
//! [`DhcpServer::run`] is that service alone on a loop of its own, and
//! [`DhcpServer::into_service`] puts it on a loop beside others (the boot
//! server's first loop, beside TFTP).
//!
//! Leases (full mode with [`DhcpServerConfig::lease_file`]): the packet
//! path never touches the disk. It queues each datagram's lease records,
//! with the ACKs that grant them, for a writer thread (into buffers reused
//! from one commit to the next: no allocation per packet), and goes on
//! answering other clients (the writer is background I/O, not a protocol
//! thread: it serves no socket). The writer lets a group gather for
//! [`DhcpServerConfig::lease_commit_window`], appends the records, fsyncs
//! once for all of them (group commit), and only then sends the ACKs — a
//! client never holds a lease that a `kill -9` could lose; then, when the
//! log holds over [`lease_file::COMPACT_FACTOR`] records per live lease,
//! it compacts it (atomic replace). If the disk falls
//! [`MAX_HELD`] ACKs behind, further answers are dropped with their records
//! (clients retry) instead of queueing without bound.
//!
//! Logging: one `tracing` line per step and client (`mac`, `arch`, `step`).
//!
//! Files: this one holds the configuration and its translation into the
//! engine's; `server` the sockets, `service` the packet path on the event
//! loop and the log lines, `lease_writer` the
//! group commit, `lease_file` the log itself, `instance_lock` the lock,
//! `client` the PXE client on a socket.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::string::String;
use std::time::Duration;
use std::vec::Vec;

use crate::dhcp::BootArch;
pub use crate::dhcp::config::TransactionServer;
use crate::dhcp::config::{
    BootEntry, BootFileName, MAX_BOOT_FILES, Menu, MenuItem, ServerConfig, Text,
};
use crate::driver::clients::ClientDirectory;

mod client;
mod instance_lock;
pub mod lease_file;
mod lease_writer;
mod server;
mod service;
pub use client::{DhcpClientConfig, run_client};
pub use instance_lock::InstanceLock;
pub use lease_file::LeaseFile;
pub use lease_writer::MAX_HELD;
pub use server::{DhcpServer, StopHandle, now};
pub use service::DhcpService;

// Re-exported so that a configuration needs only this module.
pub use crate::dhcp::Mode;
pub use crate::dhcp::config::{
    MenuPolicy, MtftpParams, Pool, RateLimit, Reservation, ReservationKey,
};

/// Boot files by client architecture, as names (or URLs for HTTP boot),
/// keyed by the boot classes of the architecture table ([`BootArch`]).
///
/// ```
/// use preboot::dhcp::BootArch;
/// use preboot::driver::dhcp::BootFileConfig;
/// let mut f = BootFileConfig::default();
/// f.files.insert(BootArch::UefiArm32, "arm/bootarm.efi".into());
/// f.files.insert(BootArch::Http, "http://10.0.0.1/bootx64.efi".into());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootFileConfig {
    /// The file (or, for an HTTP-boot class, the URL) of each architecture;
    /// [`BootArch::Http`] (`http_url`) is the URL of HTTP-boot clients
    /// without one of their own. [`BootArch::Other`] is never used.
    pub files: BTreeMap<BootArch, String>,
    /// For clients that already run iPXE (file or script URL).
    pub ipxe: Option<String>,
    /// Per-architecture TFTP server (`siaddr`) when not
    /// [`DhcpServerConfig::tftp_server`].
    pub servers: BTreeMap<BootArch, Ipv4Addr>,
    /// TFTP server of the iPXE file.
    pub ipxe_server: Option<Ipv4Addr>,
}

/// Everything the DHCP driver needs.
#[derive(Clone, Debug)]
pub struct DhcpServerConfig {
    /// Where the DHCP socket binds (`0.0.0.0:67`).
    pub dhcp_addr: SocketAddrV4,
    /// Where the boot server socket binds (`0.0.0.0:4011`); `None` = none.
    pub boot_addr: Option<SocketAddrV4>,
    /// Bind both sockets to this interface (`SO_BINDTODEVICE`, needs root).
    pub interface: Option<String>,
    /// The port clients listen on (68; tests use another).
    pub client_port: u16,
    /// Where broadcasts go (`255.255.255.255`; loopback tests use
    /// `127.0.0.1`).
    pub broadcast_address: Ipv4Addr,
    /// Proxy (default) or full.
    pub mode: Mode,
    /// Option 54: this server's address on the clients' network.
    pub server_id: Ipv4Addr,
    /// `siaddr`: the TFTP server (`None` = `server_id`).
    pub tftp_server: Option<Ipv4Addr>,
    /// Boot files by architecture.
    pub boot_files: BootFileConfig,
    /// Boot files served by PXE MTFTP, by file name: their option 43
    /// sub-options 1–5, given only to architectures that take them
    /// ([`BootArch::mtftp`]: BIOS; EDK2 discards UEFI offers carrying
    /// them). Empty: every file by TFTP.
    pub mtftp: BTreeMap<String, MtftpParams>,
    /// When to show the PXE boot menu.
    pub menu: MenuPolicy,
    /// The menu prompt text.
    pub menu_prompt: String,
    /// Menu items: boot server type and description (the first is the
    /// default); empty = one item, type 0x8000, "preboot".
    pub menu_items: Vec<(u16, String)>,
    /// Address pools (full mode).
    pub pools: Vec<Pool>,
    /// Static reservations (full mode).
    pub reservations: Vec<Reservation>,
    /// The lease log (full mode); `None` = leases live in memory only.
    pub lease_file: Option<PathBuf>,
    /// The state directory: [`DhcpServer::bind`] takes an exclusive lock on
    /// `preboot.lock` in it, so a second instance with the same directory
    /// refuses to start. `None`: the lock is `<lease_file>.lock` (full mode
    /// with a lease log), else one per address and port in the directory
    /// systemd gives the service (`$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY`)
    /// or the user's runtime directory (`$XDG_RUNTIME_DIR`), else none
    /// (then only the ports, which are not shared, tell instances apart).
    /// See [`DhcpServerConfig::lock_path`].
    pub state_dir: Option<PathBuf>,
    /// Per-client rate limit (per hardware address and per client id).
    pub rate_limit: RateLimit,
    /// Where to note which client is at which address (for the TFTP
    /// server's log lines); `None` = nowhere.
    pub clients: Option<ClientDirectory>,
    /// Most addresses of a pool that DECLINEs may put on probation at a
    /// time, in percent of the pool (see
    /// [`ServerConfig::max_declined_percent`]).
    pub max_declined_percent: u8,
    /// Group commit window: once a lease record waits, the lease writer
    /// gathers more for this long before one fsync covers them all (the
    /// ACKs wait that much longer; fewer fsyncs cost less CPU). Zero =
    /// fsync as soon as anything waits.
    pub lease_commit_window: Duration,
    /// The transaction server named to PXE clients in option 43
    /// sub-options 128 and 129 (see
    /// [`ServerConfig::transaction`]); `None` = none. The boot server sets
    /// it from its running transaction server (`transaction.advertise`).
    pub transaction: Option<TransactionServer>,
}

impl DhcpServerConfig {
    /// A proxyDHCP server on the standard ports.
    pub fn proxy(server_id: Ipv4Addr) -> Self {
        DhcpServerConfig {
            dhcp_addr: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67),
            boot_addr: Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4011)),
            interface: None,
            client_port: 68,
            broadcast_address: Ipv4Addr::BROADCAST,
            mode: Mode::Proxy,
            server_id,
            tftp_server: None,
            boot_files: BootFileConfig::default(),
            mtftp: BTreeMap::new(),
            menu: MenuPolicy::Never,
            menu_prompt: "Press F8 for boot menu".into(),
            menu_items: Vec::new(),
            pools: Vec::new(),
            reservations: Vec::new(),
            lease_file: None,
            state_dir: None,
            rate_limit: RateLimit::default(),
            max_declined_percent: crate::dhcp::config::DEFAULT_MAX_DECLINED_PERCENT,
            clients: None,
            lease_commit_window: Duration::from_millis(4),
            transaction: None,
        }
    }

    /// A full DHCP server with one pool.
    pub fn full(server_id: Ipv4Addr, pool: Pool) -> Self {
        DhcpServerConfig {
            mode: Mode::Full,
            pools: std::vec![pool],
            ..DhcpServerConfig::proxy(server_id)
        }
    }

    /// The lock file [`DhcpServer::bind`] takes (see
    /// [`DhcpServerConfig::state_dir`]).
    pub fn lock_path(&self) -> Option<PathBuf> {
        if let Some(d) = &self.state_dir {
            return Some(d.join("preboot.lock"));
        }
        if let (Some(f), Mode::Full) = (&self.lease_file, self.mode) {
            let mut name = f.file_name()?.to_os_string();
            name.push(".lock");
            return Some(f.with_file_name(name));
        }
        let runtime = ["STATE_DIRECTORY", "RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
            .iter()
            .filter_map(std::env::var_os)
            .map(PathBuf::from)
            .find(|d| d.is_absolute() && d.is_dir())?;
        let iface = self
            .interface
            .as_deref()
            .map(|i| std::format!("-{i}"))
            .unwrap_or_default();
        Some(runtime.join(std::format!(
            "preboot-{}-{}{iface}.lock",
            self.dhcp_addr.ip(),
            self.dhcp_addr.port()
        )))
    }

    /// The engine configuration this describes.
    pub fn engine_config(&self) -> io::Result<ServerConfig> {
        fn invalid(what: &str) -> io::Error {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                std::format!("dhcp config: {what}"),
            )
        }
        fn entry(f: Option<&String>, server: Option<Ipv4Addr>) -> io::Result<Option<BootEntry>> {
            f.map(String::as_str)
                .map(|f| {
                    BootEntry::tftp(f)
                        .map(|e| BootEntry { server, ..e })
                        .ok_or_else(|| invalid("boot file name over 127 bytes"))
                })
                .transpose()
        }
        let mut c = ServerConfig::proxy(self.server_id);
        c.mode = self.mode;
        // The port configured; the driver sets the one really bound.
        c.boot_port = self.boot_addr.map_or(0, |a| a.port());
        c.tftp_server = self.tftp_server.unwrap_or(self.server_id);
        let f = &self.boot_files;
        for (&arch, file) in &f.files {
            let server = f.servers.get(&arch).copied();
            if !c.boot.set(arch, entry(Some(file), server)?) {
                return Err(invalid(&std::format!(
                    "boot file for {arch}: not an architecture of the table, or more than {MAX_BOOT_FILES} architectures"
                )));
            }
        }
        c.boot.ipxe = entry(f.ipxe.as_ref(), f.ipxe_server)?;
        // PXE MTFTP files: the engine sends sub-options 1–5 only to
        // architectures that take them (BIOS).
        for (&arch, file) in &f.files {
            if let (Some(m), Some(e)) = (self.mtftp.get(file), c.boot.get_mut(arch)) {
                e.mtftp = Some(*m);
            }
        }
        let mut menu = Menu {
            policy: self.menu,
            prompt: Text::try_from(self.menu_prompt.as_str())
                .map_err(|_| invalid("menu prompt over 64 bytes"))?,
            ..Menu::default()
        };
        if !self.menu_items.is_empty() {
            menu.items.clear();
            for (ty, d) in &self.menu_items {
                menu.items
                    .push(MenuItem {
                        server_type: *ty,
                        description: Text::try_from(d.as_str())
                            .map_err(|_| invalid("menu item over 64 bytes"))?,
                        file: None::<BootFileName>,
                    })
                    .map_err(|_| invalid("more than 8 menu items"))?;
            }
        }
        menu.check()
            .map_err(|e| invalid(&std::format!("menu: {e}")))?;
        c.menu = menu;
        for p in &self.pools {
            c.pools
                .push(p.clone())
                .map_err(|_| invalid("more than 8 pools"))?;
        }
        for r in &self.reservations {
            c.reservations
                .push(r.clone())
                .map_err(|_| invalid("more than 64 reservations"))?;
        }
        c.rate_limit = self.rate_limit;
        c.max_declined_percent = self.max_declined_percent;
        c.transaction = self.transaction;
        Ok(c)
    }
}
