//! Reloading the policy store and the workstation keys of a running boot
//! server (issue 14: `SIGHUP`), without dropping a TFTP transfer, a DHCP
//! lease or a transaction session.
//!
//! [`Reloader::reload`] reads the configuration file again, on the
//! caller's thread (a signal thread, an admin API): a file that does not
//! parse, or a policy store file that does not, is refused with its
//! `file:line:column` error, logged and counted, and the running store
//! stays. A new configuration that parses is handed to the first event
//! loop, which owns the transaction engine: the handoff is a slot and the
//! loop's waker ([`Registrar::waker`], [`Service::woken`]; should a
//! wake-up be lost, a pending flag makes the service due on the loop's
//! next turn), and the loop puts the new store and keys in place between
//! two datagrams. [`Reloader::reload`] waits for that (at most
//! [`APPLY_WAIT`]) and says so in [`Reloaded::applied`].
//!
//! What a reload changes: the policy store (`[transaction.store]` or the
//! file `transaction.store_file` names; docs/transaction-protocol.md §4)
//! and the workstation keys with the auto-enrol option
//! (`[transaction.keys]` or the store file's `[keys]`, §3.4, §12). What it
//! keeps:
//! - sessions: an established session goes on with the keys it was
//!   established with (§3.3), even if a reload removed its workstation's
//!   key (the next handshake then finds the new bindings);
//! - live tasks and their ids (a report for a task handed out before the
//!   reload is applied, §4.5) and multicast joins
//!   ([`ImagingProxy::replace_store`](crate::policy::ImagingProxy::replace_store));
//! - what reports changed in a workstation object (a restore done clears
//!   its `image_next_boot`), unless the new file changes that
//!   workstation's entry, which is then taken as written;
//! - keys bound by auto-enrolment since the start (§3.4), unless the new
//!   configuration binds that key or that workstation otherwise;
//! - everything else in the file (ports, addresses, the TFTP root, DHCP,
//!   the PXE prompt, the server key): a change there is logged as needing
//!   a restart, and the running value stays.
//!
//! `[mtftp]` (issue 16) is reloaded too, with or without a transaction
//! server: files added or removed, a file's group or client port, the
//! server port, the delays, the timers, `enabled`. The new table is checked
//! as at start (values, and every file under the running `tftp.root`
//! within 65,535 blocks: `file:line` errors) and a new server port is
//! bound, on the caller's thread; any failure refuses the whole reload and
//! the running table stays. Then the first loop takes it
//! (`boot_server::mtftp_reload`): new requests use the new
//! table, a stream running keeps its channel to its end (its file removed
//! or its channel changed alike), and the proxy OFFERs and 4011 ACKs that
//! follow advertise the new channels (option 43 sub-options 1–5), as does
//! the transaction server for the imaging environment (§4.5.2 TLV 6).
//! The addresses MTFTP takes from `[server]` and its root (`tftp.root`)
//! stay as they run.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use preboot::driver::boot_server::{BootServer, config};
//!
//! let server = BootServer::bind(config::load("/etc/preboot/preboot.toml".as_ref())?)?;
//! let reloader = server.reloader().expect("a [transaction] table");
//! std::thread::spawn(move || {
//!     // On SIGHUP, an admin request, a file watcher…
//!     match reloader.reload() {
//!         Ok(r) => println!("policy reloaded (applied: {})", r.applied),
//!         Err(e) => eprintln!("reload refused, the old policy stays: {e}"),
//!     }
//! });
//! server.run(&AtomicBool::new(false))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::format;
use std::io;
use std::path::PathBuf;
use std::prelude::rust_2024::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Transaction;
use super::config::{self, BootServerConfig, ConfigError, MtftpConfig, ServerKey};
use super::mtftp_reload::{Advert, MtftpSwitch, Taken};
use crate::Instant;
use crate::driver::event_loop::mio::Waker;
use crate::driver::event_loop::{Registrar, Service};
use crate::driver::transaction::TransactionCounters;
use crate::policy::MemoryStore;
use crate::transaction::{KeyStore, WorkstationKeys};

/// How long [`Reloader::reload`] waits for the event loop to put the new
/// store in place (it does so between two datagrams: far less, unless the
/// loop is not running).
pub const APPLY_WAIT: Duration = Duration::from_secs(2);

/// At most this many changed keys are named in [`Reloaded::restart_needed`].
const MAX_CHANGES_NAMED: usize = 32;

/// Why a reload was refused (the running store and keys stay).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The configuration file, or the policy store file it names, does not
    /// parse: `file:line:column: field: message`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new configuration runs no transaction server (`[transaction]`
    /// removed or disabled): that takes a restart.
    #[error(
        "{}: the new configuration runs no transaction server ([transaction] removed or disabled): restart the server for that", .0.display()
    )]
    NoTransaction(PathBuf),
    /// The new `[mtftp]` cannot be served: its server port cannot be
    /// bound, MTFTP had no TFTP root at start, or the running MTFTP
    /// service refused it (the running table stays).
    #[error("{}: [mtftp]: {message}", .file.display())]
    Mtftp {
        /// The configuration file.
        file: PathBuf,
        /// Why.
        message: String,
    },
}

/// A reload that was accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The event loop put the new store in place before
    /// [`Reloader::reload`] returned (false: the loop is not running; it
    /// puts it in place when it starts).
    pub applied: bool,
    /// Where the new store came from.
    pub store_source: PathBuf,
    /// Workstation objects in the new store.
    pub workstations: usize,
    /// Workstation policies in the new store.
    pub policies: usize,
    /// Workstation keys the configuration binds.
    pub keys: usize,
    /// Keys bound by auto-enrolment since the start, kept (known once
    /// applied).
    pub enrolled_kept: usize,
    /// Keys (dotted, e.g. `ports.tftp`) that changed in the file but are
    /// not reloaded: they take a restart (the running values stay).
    pub restart_needed: Vec<String>,
    /// `[mtftp]` changed: `Some(true)` once the MTFTP service and the
    /// DHCP engine serve the new table, `Some(false)` if the loop had not
    /// taken it yet (it does when it runs); `None`: unchanged.
    pub mtftp_applied: Option<bool>,
}

/// Reloads the policy store and the workstation keys of a running
/// [`BootServer`](super::BootServer) ([`BootServer::reloader`](super::BootServer::reloader));
/// cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never wait for a reload in progress to show the handle.
        let mut d = f.debug_struct("Reloader");
        if let Ok(c) = self.shared.current.try_lock() {
            d.field("source", &c.source);
        }
        d.finish_non_exhaustive()
    }
}

/// What the reloader and the event loop share.
struct Shared {
    /// The configuration the server started with (what runs of the parts
    /// a reload does not change); held for a whole reload, so reloads run
    /// one at a time.
    current: Mutex<Current>,
    /// A new store and keys for the loop; a later reload replaces one the
    /// loop has not taken yet.
    slot: Mutex<Option<Handoff>>,
    /// The slot is full: the loop's cheap look, each turn, in case the
    /// wake-up was lost.
    pending: AtomicBool,
    /// The first loop's waker, once the service started on it.
    waker: Mutex<Option<Arc<Waker>>>,
    counters: Arc<TransactionCounters>,
    /// A transaction server runs (its store and keys are reloaded).
    transaction: bool,
    /// The way to the MTFTP and DHCP services.
    mtftp: Arc<MtftpSwitch>,
}

/// The configuration in force.
struct Current {
    /// The configuration file.
    source: PathBuf,
    /// The file as TOML values, for what a reload does not change.
    table: toml::Table,
    /// The running server key's public half.
    server_public: [u8; 32],
    /// The `[mtftp]` in force (as configured); `None`: MTFTP off.
    mtftp: Option<MtftpConfig>,
    /// The TFTP root MTFTP serves from (canonical); `None`: no MTFTP
    /// service runs (no `[tftp]` at start), so none can be enabled.
    mtftp_root: Option<PathBuf>,
}

/// A checked new `[mtftp]` ready for the loop.
struct MtftpChange {
    config: Option<MtftpConfig>,
    socket: Option<std::net::UdpSocket>,
    advert: Advert,
    /// The file's `[mtftp]` table, kept as the one in force.
    table: Option<toml::Value>,
}

/// A new store and keys on their way to the event loop.
struct Handoff {
    store: MemoryStore,
    store_source: PathBuf,
    keys: WorkstationKeys,
    /// The imaging environment's MTFTP channels, when `[mtftp]` changed.
    mtftp_channels: Option<crate::policy::MtftpChannels>,
    /// Told how many enrolled keys were kept, once in place.
    done: SyncSender<usize>,
}

/// A poisoned lock still holds a consistent value here (every critical
/// section only moves whole values): take it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reloader {
    /// A reloader for the server configured by `config`, whose
    /// transaction engine, if one runs, has the server key whose public
    /// half is the first of `transaction` and counts into its second; the
    /// MTFTP table goes through `mtftp`.
    pub(super) fn new(
        config: &BootServerConfig,
        transaction: Option<([u8; 32], Arc<TransactionCounters>)>,
        mtftp: Arc<MtftpSwitch>,
    ) -> Reloader {
        let runs = transaction.is_some();
        let (server_public, counters) = transaction.unwrap_or_default();
        let mtftp_root = config
            .tftp
            .as_ref()
            .and_then(|t| t.root.canonicalize().ok());
        Reloader {
            shared: Arc::new(Shared {
                current: Mutex::new(Current {
                    source: config.source.clone(),
                    table: config.table.clone(),
                    server_public,
                    mtftp: config.mtftp.clone(),
                    mtftp_root,
                }),
                slot: Mutex::new(None),
                pending: AtomicBool::new(false),
                waker: Mutex::new(None),
                counters,
                transaction: runs,
                mtftp,
            }),
        }
    }

    /// `service` as the first loop runs it: it takes this reloader's
    /// handoffs between datagrams.
    pub(super) fn service(
        &self,
        service: Transaction,
        configured: WorkstationKeys,
    ) -> ReloadingTransaction {
        ReloadingTransaction {
            inner: service,
            shared: self.shared.clone(),
            configured,
        }
    }

    /// Read the configuration file again and put its policy store and
    /// workstation keys in place (see the [module docs](self)). Logs the
    /// outcome; a refusal is counted in
    /// [`TransactionStats::reloads_refused`](crate::driver::transaction::TransactionStats::reloads_refused),
    /// a store put in place in `reloads`.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let mut current = lock(&self.shared.current);
        let source = current.source.clone();
        let result = config::load(&source)
            .map_err(ReloadError::from)
            .and_then(|c| self.put_in_place(&mut current, c));
        self.outcome(result)
    }

    /// Put the policy store and the workstation keys of `config` (parsed
    /// by the caller, e.g. [`config::parse`]) in place, as
    /// [`reload`](Self::reload) does with the file.
    pub fn reload_with(&self, config: BootServerConfig) -> Result<Reloaded, ReloadError> {
        let mut current = lock(&self.shared.current);
        let result = self.put_in_place(&mut current, config);
        self.outcome(result)
    }

    /// Log and count a refusal.
    fn outcome(&self, result: Result<Reloaded, ReloadError>) -> Result<Reloaded, ReloadError> {
        if let Err(e) = &result {
            self.shared.counters.count_reload(false);
            tracing::error!(
                "reload refused, the running policy store and keys stay, as does the MTFTP table: {e}"
            );
        }
        result
    }

    fn put_in_place(
        &self,
        current: &mut Current,
        mut config: BootServerConfig,
    ) -> Result<Reloaded, ReloadError> {
        if self.shared.transaction && config.transaction.is_none() {
            return Err(ReloadError::NoTransaction(config.source));
        }
        // Checked (and a new port bound) before anything is put in place.
        let mtftp = self.check_mtftp(current, &config)?;
        let mut restart_needed = fixed_changes(&current.table, &config.table);
        // The imaging environment's MTFTP channels (§4.5.2 TLV 6) follow
        // a new [mtftp].
        let mtftp_channels = mtftp.as_ref().map(|m| {
            crate::policy::MtftpChannels(
                m.config
                    .iter()
                    .flat_map(|c| {
                        c.files.iter().map(|f| {
                            let ch = crate::mtftp::Channel::from_params(c.interface, &c.params(f));
                            (f.name.clone(), ch)
                        })
                    })
                    .collect(),
            )
        });
        // The MTFTP table first: should the loop refuse it, nothing else
        // was put in place either.
        let mtftp_applied = self.hand_over_mtftp(current, &config.source, mtftp)?;
        let transaction = config
            .transaction
            .take()
            .filter(|_| self.shared.transaction);
        let Some(t) = transaction else {
            // No transaction server runs: [mtftp] only.
            warn_restart(&restart_needed, &config.source);
            self.shared.counters.count_reload(true);
            return Ok(Reloaded {
                applied: true,
                store_source: PathBuf::new(),
                workstations: 0,
                policies: 0,
                keys: 0,
                enrolled_kept: 0,
                restart_needed,
                mtftp_applied,
            });
        };
        if let ServerKey::Given { key, from } = &t.key {
            if key.public() != current.server_public {
                restart_needed.push(format!("the server key ({})", from.display()));
            }
        }
        warn_restart(&restart_needed, &config.source);
        let (tx, rx) = sync_channel(1);
        let mut reloaded = Reloaded {
            applied: false,
            store_source: t.store_source.clone(),
            workstations: t.store.workstations.len(),
            policies: t.store.policies.len(),
            keys: t.workstation_keys.len(),
            enrolled_kept: 0,
            restart_needed,
            mtftp_applied,
        };
        // A handoff the loop has not taken yet is replaced: the newer
        // file wins.
        *lock(&self.shared.slot) = Some(Handoff {
            store: t.store,
            store_source: t.store_source,
            keys: t.workstation_keys,
            mtftp_channels,
            done: tx,
        });
        self.shared.pending.store(true, Ordering::Release);
        // `current.table` stays: it holds what runs, so a key that takes a
        // restart is named again at every reload until the restart.
        if let Some(w) = lock(&self.shared.waker).as_ref() {
            if let Err(e) = w.wake() {
                tracing::warn!(
                    "reload: cannot wake the event loop ({e}): it takes the new store on its next turn (within {} ms)",
                    crate::driver::event_loop::MAX_WAIT.as_millis()
                );
            }
        }
        if let Some(kept) = wait(&rx) {
            reloaded.applied = true;
            reloaded.enrolled_kept = kept;
        }
        Ok(reloaded)
    }

    /// The new `[mtftp]`, if it differs from the one in force: checked as
    /// at start (stage 2 passed in the parse; the files here, under the
    /// running root), with its server port bound when that changed.
    fn check_mtftp(
        &self,
        current: &Current,
        config: &BootServerConfig,
    ) -> Result<Option<MtftpChange>, ReloadError> {
        let table = config.table.get("mtftp").cloned();
        if current.table.get("mtftp") == table.as_ref() {
            return Ok(None);
        }
        let refuse = |message: String| ReloadError::Mtftp {
            file: config.source.clone(),
            message,
        };
        let mut new = config.mtftp.clone();
        let socket = match (&mut new, &current.mtftp_root) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(refuse(
                    "no MTFTP service runs (no [tftp] at start): restart the server for it".into(),
                ));
            }
            (Some(m), Some(root)) => {
                config.check_mtftp_files(root)?;
                // What MTFTP takes from [server] and [tftp] stays as it
                // runs (those keys take a restart).
                m.root.clone_from(root);
                if let Some(old) = &current.mtftp {
                    m.device.clone_from(&old.device);
                    m.interface = old.interface;
                    m.bind.set_ip(*old.bind.ip());
                }
                match &current.mtftp {
                    Some(old) if old.bind == m.bind => None,
                    _ => Some(
                        crate::driver::mtftp_server::MtftpService::open_socket(m)
                            .map_err(|e| refuse(format!("server port {}: {e}", m.bind)))?,
                    ),
                }
            }
        };
        let advert = new
            .iter()
            .flat_map(|m| m.files.iter().map(|f| (f.name.clone(), m.params(f))))
            .collect();
        Ok(Some(MtftpChange {
            config: new,
            socket,
            advert,
            table,
        }))
    }

    /// Hand a checked `[mtftp]` to the loop; on success it is the one in
    /// force.
    fn hand_over_mtftp(
        &self,
        current: &mut Current,
        source: &std::path::Path,
        change: Option<MtftpChange>,
    ) -> Result<Option<bool>, ReloadError> {
        let Some(c) = change else {
            return Ok(None);
        };
        let taken = self
            .shared
            .mtftp
            .hand_over(c.config.clone(), c.socket, c.advert)
            .map_err(|message| ReloadError::Mtftp {
                file: source.to_path_buf(),
                message,
            })?;
        current.mtftp = c.config;
        match c.table {
            Some(t) => current.table.insert("mtftp".into(), t),
            None => current.table.remove("mtftp"),
        };
        Ok(Some(taken == Taken::Applied))
    }
}

fn warn_restart(restart_needed: &[String], source: &std::path::Path) {
    for key in restart_needed {
        tracing::warn!(
            "reload: {key} changed in {}: not reloaded, the running value stays; restart the server for it",
            source.display()
        );
    }
}

/// The loop's answer, if it comes within [`APPLY_WAIT`].
fn wait(rx: &Receiver<usize>) -> Option<usize> {
    rx.recv_timeout(APPLY_WAIT).ok()
}

/// The keys of `[transaction]` a reload puts in place; everything else in
/// the file takes a restart, but `[mtftp]`.
const RELOADED: &[&str] = &["store", "store_file", "keys"];

/// The dotted keys that differ between `old` and `new`, leaving out what a
/// reload puts in place ([`RELOADED`] under `transaction`, and `mtftp`).
fn fixed_changes(old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let strip = |t: &toml::Table| {
        let mut t = t.clone();
        t.remove("mtftp");
        if let Some(toml::Value::Table(tx)) = t.get_mut("transaction") {
            for k in RELOADED {
                tx.remove(*k);
            }
        }
        t
    };
    let mut out = Vec::new();
    diff(&strip(old), &strip(new), "", &mut out);
    out
}

fn diff(old: &toml::Table, new: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    let keys = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)));
    for k in keys {
        if out.len() >= MAX_CHANGES_NAMED {
            return;
        }
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (old.get(k), new.get(k)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => diff(a, b, &name, out),
            (a, b) if a == b => {}
            _ => out.push(name),
        }
    }
}

/// The transaction service as the first event loop hosts it: the service
/// itself, plus the reloads it takes between datagrams.
pub(super) struct ReloadingTransaction {
    inner: Transaction,
    shared: Arc<Shared>,
    /// The workstation keys the configuration in force binds (the others
    /// in the engine's key store were bound by auto-enrolment).
    configured: WorkstationKeys,
}

impl ReloadingTransaction {
    /// Put a handed-over store and keys in place, if there is one.
    fn take(&mut self) {
        // Cleared first: a handoff made meanwhile sets it again.
        self.shared.pending.store(false, Ordering::Release);
        let Some(h) = lock(&self.shared.slot).take() else {
            return;
        };
        let engine = self.inner.engine_mut();
        // Task reports stay applied while the new file states the same
        // request (the policy layer's record of successes, §4.8); an entry
        // the file changed is taken as written.
        if let Err(e) = engine
            .policy_mut()
            .replace_store(crate::driver::clock::now(), h.store.clone())
        {
            tracing::error!(error = %e, "reload: the task journal failed; tasks stay as they were");
        }
        if let Some(channels) = h.mtftp_channels {
            engine.policy_mut().set_mtftp_channels(channels);
        }
        // Keys bound by auto-enrolment stay, unless the new configuration
        // binds that key or that workstation.
        let mut keys = h.keys.clone();
        let mut kept = 0;
        for (id, public) in engine.keys().iter() {
            if self.configured.key_of_object(id).is_none() && keys.insert(*id, *public).is_ok() {
                kept += 1;
            }
        }
        for (_, public) in keys.iter() {
            engine.prepare_key(public);
        }
        let (n_keys, auto) = (keys.len(), keys.auto_enrol());
        *engine.keys_mut() = keys;
        self.configured = h.keys;
        let store = engine.policy().store();
        tracing::info!(
            source = %h.store_source.display(),
            workstations = store.workstations.len(),
            policies = store.policies.len(),
            multicast = store.multicast.len(),
            keys = n_keys,
            enrolled_kept = kept,
            auto_enrol = auto,
            sessions = engine.session_count(),
            "reload: policy store and workstation keys put in place"
        );
        // Keys the new configuration binds leave the pending list.
        self.inner.pending_keys_bound();
        self.shared.counters.count_reload(true);
        let _ = h.done.try_send(kept);
    }
}

impl Service for ReloadingTransaction {
    fn start(&mut self, registrar: Registrar) -> io::Result<()> {
        *lock(&self.shared.waker) = Some(registrar.waker());
        self.inner.start(registrar)?;
        // A reload made before the loop ran.
        self.take();
        Ok(())
    }

    fn ready(&mut self, token: usize) -> io::Result<()> {
        self.inner.ready(token)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.shared.pending.load(Ordering::Acquire) {
            // Due now: `handle_timeout` takes it.
            return Some(Instant::ZERO);
        }
        self.inner.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) -> io::Result<()> {
        self.take();
        self.inner.handle_timeout(now)
    }

    fn woken(&mut self) -> io::Result<()> {
        self.take();
        Ok(())
    }
}
