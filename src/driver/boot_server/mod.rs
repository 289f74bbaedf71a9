//! The boot server: DHCP / proxyDHCP with the PXE boot server (ports 67 and
//! 4011, [`crate::driver::dhcp`]), TFTP (port 69, [`crate::driver::tftp`])
//! and the transaction server (port 4012, [`crate::driver::transaction`],
//! with its policy store and keys) in one process, from one TOML file
//! ([`config`]), and with `[mtftp]` PXE MTFTP (multicast TFTP on
//! `mtftp.server_port`, [`crate::driver::mtftp_server`], on the first
//! event loop). This is what `examples/preboot-server.rs` runs.
//!
//! ```text
//!  PXE client              this process
//!   DISCOVER ───────────► :67   proxy OFFER (boot server, menu)   [step discover, proxy-offer]
//!   REQUEST ────────────► :4011 ACK (file for the client's arch)  [step request, boot-ack]
//!   RRQ file ───────────► :69   DATA… from a fresh port           [step rrq, transfer-done]
//!  preboot client
//!   Hello … TaskReport ─► :4012 handshake, menu, tasks (protocol v2)
//! ```
//!
//! Nothing serves before everything is ready: [`BootServer::bind`] checks
//! the files ([`config::BootServerConfig::check_files`]), opens the lease
//! log and binds every socket, and any failure drops what was opened. The
//! transaction server binds first: the DHCP answers name its real port and
//! its public key (option 43 sub-options 128 and 129,
//! `transaction.advertise`).
//! [`BootServer::run`] serves until a stop flag is set (a signal handler
//! sets it) or a service fails, then stops them all. DHCP, 4011, TFTP and
//! the transaction server share the event loops, one per core
//! ([`BootServer::run`]). While it runs, [`BootServer::reloader`] puts a
//! new policy store and new workstation keys in place without dropping a
//! transfer, a lease or a session, and a new `[mtftp]` without cutting a
//! stream ([`reload`]; `SIGHUP` in the example).
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use preboot::driver::boot_server::{BootServer, config};
//!
//! let config = config::load("/etc/preboot/preboot.toml".as_ref())?;
//! let server = BootServer::bind(config)?;
//! let stop = AtomicBool::new(false); // set it from a signal handler
//! server.run(&stop)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
mod mtftp_reload;
pub mod reload;

use std::format;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::prelude::rust_2024::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use self::config::{BootServerConfig, ConfigError, ServerKey, TransactionConfig};
use self::mtftp_reload::MtftpSwitch;
pub use self::reload::{ReloadError, Reloaded, Reloader};
use super::clients::ClientDirectory;
use super::dhcp::{DhcpServer, Mode, TransactionServer};
use super::event_loop::{EventLoop, LoopGroup, Service};
use super::mtftp_server::MtftpService;
use super::pending_keys::PendingKeyList;
use super::privileges::{self, Switched};
use super::task_journal::{JournaledProxy, restore_proxy};
use super::tftp::{TftpServer, TftpStats};
use super::transaction::{
    TransactionCounters, TransactionService, TransactionStats, Urandom, server_key_file,
};
use crate::policy::MemoryStore;
use crate::transaction::{Hex, KeyStore, Server, WorkstationKeys};

/// The transaction server as the boot server runs it: the imaging proxy
/// over the configured store, the configured workstation keys,
/// `/dev/urandom`.
type Transaction = TransactionService<JournaledProxy<MemoryStore>, WorkstationKeys, Urandom>;

/// Where the running transaction server's key came from (for people).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Configured: `server_private`, or a key file named in the
    /// configuration.
    Given(PathBuf),
    /// Kept in the state directory from an earlier start.
    Kept(PathBuf),
    /// Made at this start and written to this file.
    Made(PathBuf),
}

/// What can stop the boot server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootServerError {
    /// The configuration is wrong (file, line, field and why).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket, the lease log or the transaction server's key file could
    /// not be opened (or the key file holds no key).
    #[error("{what}: {source}")]
    Bind {
        /// What was being opened, with its address.
        what: String,
        /// Why not.
        source: io::Error,
    },
    /// A server failed while running.
    #[error("{what} failed: {source}")]
    Run {
        /// Which server.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// The boot server with every socket bound, ready to [`BootServer::run`].
pub struct BootServer {
    config: BootServerConfig,
    dhcp: DhcpServer,
    tftp: Option<TftpServer>,
    dhcp_addr: SocketAddr,
    boot_addr: Option<SocketAddr>,
    tftp_addr: Option<SocketAddr>,
    transaction: Option<BoundTransaction>,
    mtftp: Option<MtftpService>,
    /// Reloads the policy store, the keys and `[mtftp]` ([`reload`]).
    reloader: Reloader,
    /// The way a reloaded `[mtftp]` reaches the first loop.
    mtftp_switch: Arc<MtftpSwitch>,
}

/// The transaction service, bound, with what people are told about it.
struct BoundTransaction {
    service: Transaction,
    addr: SocketAddr,
    public_key: [u8; 32],
    origin: KeyOrigin,
    counters: Arc<TransactionCounters>,
    /// The workstation keys the configuration binds.
    configured_keys: WorkstationKeys,
}

impl core::fmt::Debug for BootServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BootServer")
            .field("dhcp", &self.dhcp_addr)
            .field("boot", &self.boot_addr)
            .field("tftp", &self.tftp_addr)
            .field("transaction", &self.transaction_addr())
            .finish_non_exhaustive()
    }
}

/// Counters after a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// The TFTP server's counters (zero when TFTP is disabled).
    pub tftp: TftpStats,
    /// The same, per event loop (empty when TFTP is disabled).
    pub tftp_loops: Vec<TftpStats>,
    /// The transaction server's counters (zero when it is disabled).
    pub transaction: TransactionStats,
}

impl BootServer {
    /// When the process is root, switch to the configured unprivileged
    /// account (`server.user`, default `nobody`; `root` keeps root), then
    /// check that it can still read the TFTP root and write the lease
    /// file's directory ([`crate::driver::privileges`]). Call it after
    /// [`bind`](Self::bind) (the privileged ports are bound) and before
    /// [`run`](Self::run) (no thread is running yet). The library never
    /// calls it by itself: a process that embeds the server decides.
    pub fn drop_privileges(&self) -> Result<Switched, BootServerError> {
        let user = self.config.user.as_str();
        let fail = |source: io::Error| BootServerError::Bind {
            what: format!("server.user = {user:?}"),
            source,
        };
        let switched = privileges::switch_user(user).map_err(fail)?;
        if let Switched::To { .. } = switched {
            if let Some(t) = &self.config.tftp {
                privileges::check_readable_dir(&t.root, "tftp.root", user).map_err(fail)?;
            }
            if let Some(dir) = self.config.lease_dir() {
                privileges::check_writable_dir(dir, "the directory of dhcp.lease_file", user)
                    .map_err(fail)?;
            }
            let t = self.config.transaction.as_ref();
            for (file, what) in [
                (
                    t.and_then(|t| t.journal.as_ref()),
                    "the task journal's directory",
                ),
                (
                    t.and_then(|t| t.pending_keys.as_ref()),
                    "the pending keys' directory",
                ),
            ] {
                if let Some(dir) = file.and_then(|f| f.parent()) {
                    privileges::check_writable_dir(dir, what, user).map_err(fail)?;
                }
            }
        }
        Ok(switched)
    }

    /// Check the files, open the lease log and bind every socket. Either
    /// all of it succeeds or nothing stays open.
    pub fn bind(config: BootServerConfig) -> Result<BootServer, BootServerError> {
        config.check_files()?;
        let d = &config.dhcp;
        let on = d
            .interface
            .as_deref()
            .map(|i| format!(" on {i}"))
            .unwrap_or_default();
        let what = match d.boot_addr {
            Some(b) => format!("DHCP {} / boot server {b}{on}", d.dhcp_addr),
            None => format!("DHCP {}{on}", d.dhcp_addr),
        };
        let bind_err = |what: String| move |source| BootServerError::Bind { what, source };
        // The transaction server first: the DHCP answers name its real
        // port and its public key (option 43 sub-options 128 and 129).
        let transaction = config
            .transaction
            .as_ref()
            .map(|t| bind_transaction(&config, t))
            .transpose()?;
        // One directory: TFTP lines name the client the DHCP side saw.
        let clients = ClientDirectory::new();
        let mut dc = d.clone();
        dc.clients = Some(clients.clone());
        dc.transaction = advertised(&config, transaction.as_ref());
        let dhcp = DhcpServer::bind(dc).map_err(bind_err(what.clone()))?;
        let dhcp_addr = dhcp.dhcp_local_addr().map_err(bind_err(what.clone()))?;
        let boot_addr = dhcp.boot_local_addr().transpose().map_err(bind_err(what))?;
        let tftp = match &config.tftp {
            Some(t) => {
                let mut tc = t.clone();
                tc.clients = Some(clients);
                let what = format!("TFTP {} (root {})", t.bind, t.root.display());
                Some(TftpServer::bind(tc).map_err(bind_err(what))?)
            }
            None => None,
        };
        let tftp_addr = tftp.as_ref().map(TftpServer::local_addr);
        let mtftp = match &config.mtftp {
            Some(m) => {
                let what = format!("MTFTP {} (multicast out of {})", m.bind, m.interface);
                Some(MtftpService::bind(m.clone()).map_err(bind_err(what))?)
            }
            None => None,
        };
        let mtftp_switch = MtftpSwitch::new();
        let reloader = Reloader::new(
            &config,
            transaction
                .as_ref()
                .map(|t| (t.public_key, t.counters.clone())),
            mtftp_switch.clone(),
        );
        Ok(BootServer {
            config,
            dhcp,
            tftp,
            dhcp_addr,
            boot_addr,
            tftp_addr,
            transaction,
            mtftp,
            reloader,
            mtftp_switch,
        })
    }

    /// The MTFTP request socket's address (SPORT); `None` without
    /// `[mtftp]`.
    pub fn mtftp_addr(&self) -> Option<SocketAddrV4> {
        self.mtftp.as_ref().map(MtftpService::local_addr)
    }

    /// The transaction server socket's address (the real port when the
    /// config said 0); `None` when it does not run.
    pub fn transaction_addr(&self) -> Option<SocketAddr> {
        self.transaction.as_ref().map(|t| t.addr)
    }

    /// The transaction server's public key: the one preboot clients pin
    /// (docs/transaction-protocol.md §3.1).
    pub fn transaction_public_key(&self) -> Option<[u8; 32]> {
        self.transaction.as_ref().map(|t| t.public_key)
    }

    /// Where the transaction server's key came from.
    pub fn transaction_key_origin(&self) -> Option<&KeyOrigin> {
        self.transaction.as_ref().map(|t| &t.origin)
    }

    /// Reloads the policy store and the workstation keys (when a
    /// transaction server runs) and `[mtftp]` while the server runs (what
    /// `SIGHUP` does in `preboot-server`; [`reload`]). Take it before
    /// [`run`](Self::run); always `Some` (an `Option` for the callers
    /// written when it needed a transaction server).
    pub fn reloader(&self) -> Option<Reloader> {
        Some(self.reloader.clone())
    }

    /// The transaction server's counters, live while it runs.
    pub fn transaction_counters(&self) -> Option<Arc<TransactionCounters>> {
        self.transaction.as_ref().map(|t| t.counters.clone())
    }

    /// The DHCP socket's address (the real port when the config said 0).
    pub fn dhcp_addr(&self) -> SocketAddr {
        self.dhcp_addr
    }

    /// The boot server (4011) socket's address.
    pub fn boot_addr(&self) -> Option<SocketAddr> {
        self.boot_addr
    }

    /// The TFTP socket's address.
    pub fn tftp_addr(&self) -> Option<SocketAddr> {
        self.tftp_addr
    }

    /// The configuration.
    pub fn config(&self) -> &BootServerConfig {
        &self.config
    }

    /// What this server serves, one line each, for people: addresses,
    /// mode, pools and boot files per architecture.
    pub fn describe(&self) -> Vec<String> {
        let c = &self.config;
        let d = &c.dhcp;
        let mut out = Vec::new();
        out.push(format!("config:      {}", c.source.display()));
        out.push(format!(
            "mode:        {} (server {}{})",
            match d.mode {
                Mode::Proxy => "proxyDHCP",
                Mode::Full => "full DHCP",
            },
            d.server_id,
            d.interface
                .as_deref()
                .map(|i| format!(", interface {i}"))
                .unwrap_or_default()
        ));
        out.push(format!("dhcp:        udp {}", self.dhcp_addr));
        if let Some(b) = self.boot_addr {
            out.push(format!("boot server: udp {b}"));
        }
        if let (Some(t), Some(tc)) = (self.tftp_addr, &c.tftp) {
            out.push(format!(
                "tftp:        udp {t} ({} event loops), root {}",
                tc.loops,
                tc.root.display()
            ));
        }
        if let (Some(a), Some(m)) = (self.mtftp_addr(), &c.mtftp) {
            out.push(format!(
                "mtftp:       udp {a}, multicast out of {} (ttl {}), listen {} s, delay {} s",
                m.interface, m.ttl, m.listen_secs, m.delay_secs
            ));
            for f in &m.files {
                out.push(format!("mtftp file   {} on {}", f.name, f.group));
            }
        }
        for p in &d.pools {
            out.push(format!(
                "pool:        {}/{} {}-{}",
                p.subnet, p.prefix_len, p.start, p.end
            ));
        }
        let f = &d.boot_files;
        let archs = f
            .files
            .iter()
            .map(|(a, file)| (a.key().unwrap_or_default(), file));
        for (key, file) in archs.chain(f.ipxe.iter().map(|file| ("ipxe", file))) {
            out.push(format!("boot {key:<11} {file}"));
        }
        if let (Some(t), Some(tc)) = (&self.transaction, &c.transaction) {
            out.push(format!(
                "transaction: udp {} (protocol v2), {}",
                t.addr,
                if tc.advertise {
                    format!(
                        "named to PXE clients as {}:{} (DHCP option 43 sub-options 128/129)",
                        d.server_id,
                        t.addr.port()
                    )
                } else {
                    "not named in DHCP answers (transaction.advertise = false)".into()
                }
            ));
            let origin = match &t.origin {
                KeyOrigin::Given(f) => format!("from {}", f.display()),
                KeyOrigin::Kept(f) => format!("kept in {}", f.display()),
                KeyOrigin::Made(f) => format!("made now, kept in {}", f.display()),
            };
            out.push(format!(
                "server key:  {} (public; clients pin it), {origin}",
                Hex(&t.public_key)
            ));
            let s = &tc.store;
            let keys = &tc.workstation_keys;
            out.push(format!(
                "policy:      {}: {} workstations, {} workstation policies, {} multicast sessions; {} workstation keys, auto-enrol {}",
                tc.store_source.display(),
                s.workstations.len(),
                s.policies.len(),
                s.multicast.len(),
                keys.len(),
                if keys.auto_enrol() { "on" } else { "off" },
            ));
        }
        out
    }

    /// Serve until `stop` is set or a service fails; then stop every loop
    /// (within ~100 ms) and return the counters.
    ///
    /// One event loop per [`tftp.loops`](super::tftp::TftpServerConfig::loops)
    /// ([`crate::driver::event_loop`]): each hosts a TFTP listener and the
    /// transfers it accepted; the first also hosts DHCP (67 and 4011),
    /// whose engine it alone owns, the transaction server (with the
    /// policy store and the keys), whose engine it alone owns too, and the
    /// MTFTP server (`[mtftp]`: one stream per file, so one engine). The
    /// first loop runs on the calling thread. Without TFTP, DHCP and the
    /// transaction server run on one loop.
    pub fn run(self, stop: &AtomicBool) -> Result<RunSummary, BootServerError> {
        let BootServer {
            dhcp,
            tftp,
            config,
            transaction,
            mtftp,
            reloader,
            mtftp_switch,
            ..
        } = self;
        for w in &config.warnings {
            tracing::warn!("config: {w}");
        }
        let run_err = |what| move |source| BootServerError::Run { what, source };
        let dhcp = dhcp.into_service().map_err(run_err("DHCP server"))?;
        // The services with global state, on the first loop.
        let mut first: Vec<(&'static str, Box<dyn Service>)> = Vec::new();
        first.push(("DHCP server", Box::new(mtftp_switch.dhcp(dhcp))));
        let counters = transaction.map(|t| {
            tracing::info!(
                addr = %t.addr,
                public_key = %Hex(&t.public_key),
                "transaction server (protocol v2)"
            );
            if config
                .transaction
                .as_ref()
                .is_some_and(|c| c.workstation_keys.auto_enrol())
            {
                tracing::warn!(
                    "transaction: auto-enrolment is on: a key nobody bound is bound to the identity it first claims (trust on first use, protocol §3.4); use it only where that is acceptable"
                );
            }
            let service = reloader.service(t.service, t.configured_keys);
            first.push(("transaction server", Box::new(service)));
            t.counters
        });
        // With a TFTP root, an MTFTP service runs even with MTFTP off, so
        // that a reload can turn it on.
        let mtftp = match (mtftp, &config.tftp) {
            (Some(m), _) => Some(m),
            (None, Some(t)) => MtftpService::idle(&t.root)
                .inspect_err(|e| {
                    tracing::warn!(
                        "mtftp: {}: {e}: a reload cannot turn MTFTP on",
                        t.root.display()
                    )
                })
                .ok(),
            (None, None) => None,
        };
        if let Some(m) = mtftp {
            first.push(("MTFTP server", Box::new(mtftp_switch.mtftp(m))));
        }
        let (result, stats) = match tftp {
            Some(mut t) => {
                for (what, s) in first {
                    t.event_loops_mut()[0].add(s).map_err(run_err(what))?;
                }
                tracing::info!(loops = t.loops(), "boot server running");
                let result = t.run(stop);
                (result, t.loop_stats())
            }
            None => {
                let mut l = EventLoop::new("preboot-dhcp").map_err(run_err("DHCP server"))?;
                for (what, s) in first {
                    l.add(s).map_err(run_err(what))?;
                }
                tracing::info!(loops = 1, "boot server running");
                (LoopGroup::new(vec![l]).run(stop), Vec::new())
            }
        };
        let transaction = counters.map(|c| c.snapshot()).unwrap_or_default();
        if stop.load(Ordering::Relaxed) || result.is_ok() {
            tracing::info!("shutting down");
        } else {
            tracing::error!("a service failed: shutting down");
        }
        result.map_err(run_err("boot server"))?;
        let tftp: TftpStats = stats.iter().copied().sum();
        tracing::info!(
            transfers = tftp.completed,
            failed = tftp.failed,
            refused = tftp.refused,
            bytes = tftp.bytes,
            sessions = transaction.sessions_established,
            reloads = transaction.reloads,
            reloads_refused = transaction.reloads_refused,
            "stopped"
        );
        Ok(RunSummary {
            tftp,
            tftp_loops: stats,
            transaction,
        })
    }
}

/// What the DHCP answers name as the transaction server: `server.server_ip`
/// (the address clients reach this host at, option 54) with the port the
/// transaction socket really got, and its public key — unless
/// `transaction.advertise = false` or it does not run.
fn advertised(
    config: &BootServerConfig,
    bound: Option<&BoundTransaction>,
) -> Option<TransactionServer> {
    let t = bound?;
    if !config.transaction.as_ref()?.advertise {
        return None;
    }
    Some(TransactionServer {
        address: SocketAddrV4::new(config.dhcp.server_id, t.addr.port()),
        public_key: Some(t.public_key),
    })
}

/// The transaction server's key (read, or made in the state directory),
/// engine and socket.
fn bind_transaction(
    config: &BootServerConfig,
    t: &TransactionConfig,
) -> Result<BoundTransaction, BootServerError> {
    let mut random = Urandom::open().map_err(|source| BootServerError::Bind {
        what: "/dev/urandom (transaction server)".into(),
        source,
    })?;
    let (key, origin) = match &t.key {
        ServerKey::Given { key, from } => (key.clone(), KeyOrigin::Given(from.clone())),
        ServerKey::Kept(path) => {
            let (key, made) =
                server_key_file(path, &mut random).map_err(|source| BootServerError::Bind {
                    what: format!("transaction server key {}", path.display()),
                    source,
                })?;
            if made {
                tracing::warn!(
                    file = %path.display(),
                    public_key = %Hex(&key.public()),
                    "transaction: no server key was configured: made one and kept it; preboot clients must pin this public key"
                );
                (key, KeyOrigin::Made(path.clone()))
            } else {
                (key, KeyOrigin::Kept(path.clone()))
            }
        }
    };
    let public_key = key.public();
    let mut proxy =
        restore_proxy(t.store.clone(), t.journal.as_deref(), t.max_handouts).map_err(|e| {
            BootServerError::Bind {
                what: "task journal".into(),
                source: io::Error::other(e),
            }
        })?;
    proxy.set_server_name(&t.server_name);
    // The imaging environment by MTFTP (§4.5.2 TLV 6): the channels of
    // the `[[mtftp.file]]` entries, by name.
    if let Some(m) = &config.mtftp {
        let channels = m
            .files
            .iter()
            .map(|f| {
                let ch = crate::mtftp::Channel::from_params(m.interface, &m.params(f));
                (f.name.clone(), ch)
            })
            .collect();
        proxy.set_mtftp_channels(crate::policy::MtftpChannels(channels));
    }
    // A token with each imaging task (§4.5 TLV 3), from the server key.
    proxy.issue_task_tokens(&key.to_private_bytes());
    // The transaction service commits the journal once per batch of
    // requests, before it sends their answers.
    if let Some(j) = proxy.log_mut() {
        j.group_commit(true);
    }
    // Registrations and inventories (issue 15) in the state directory.
    if let Some(dir) = &t.state_dir {
        let registry = crate::driver::registry::FileRegistry::open(dir).map_err(|e| {
            BootServerError::Bind {
                what: "registrations".into(),
                source: io::Error::other(e),
            }
        })?;
        proxy.set_registry(Box::new(registry));
    }
    let mut engine = Server::new(t.engine, key, t.workstation_keys.clone(), proxy, random);
    // A boot storm of bound workstations then costs three X25519
    // operations per handshake instead of four (§3.5).
    for (_, k) in t.workstation_keys.iter() {
        engine.prepare_key(k);
    }
    let mut service =
        TransactionService::bind(SocketAddr::V4(t.bind), engine).map_err(|source| {
            BootServerError::Bind {
                what: format!("transaction server {}", t.bind),
                source,
            }
        })?;
    if let Some(path) = &t.pending_keys {
        let list = PendingKeyList::open(path).map_err(|source| BootServerError::Bind {
            what: format!("pending workstation keys {}", path.display()),
            source,
        })?;
        if !list.is_empty() {
            tracing::info!(
                file = %path.display(),
                keys = list.len(),
                "transaction: workstation keys wait for an administrator (bind them in [transaction.keys])"
            );
        }
        service.keep_pending_keys(list);
    }
    let addr = service
        .local_addr()
        .map_err(|source| BootServerError::Bind {
            what: format!("transaction server {}", t.bind),
            source,
        })?;
    let counters = service.counters();
    Ok(BoundTransaction {
        service,
        addr,
        public_key,
        origin,
        counters,
        configured_keys: t.workstation_keys.clone(),
    })
}
