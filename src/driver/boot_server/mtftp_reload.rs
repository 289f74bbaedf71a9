//! A reloaded `[mtftp]` table (issue 16, `SIGHUP`), taken by the first
//! event loop: the MTFTP service serves new requests from it
//! ([`MtftpService::replace`]: running streams finish on their old
//! channels) and the DHCP engine advertises its channels (option 43
//! sub-options 1–5, PXE 2.1 MTFTP; notes §2.2 and §2.5) in the proxy
//! OFFERs and 4011 ACKs that follow.
//!
//! [`Reloader`](super::Reloader) checks the new table and binds a new
//! server port on its own thread, then hands the table over here; both
//! services hold the handoff slot and take it between two datagrams, when
//! the loop's waker wakes them (or on the loop's next turn: a pending
//! flag makes them due at once). The MTFTP service takes it first; the
//! DHCP engine is told the new channels only once the MTFTP service serves
//! them, so no client is sent to a channel nobody serves yet.

use std::collections::BTreeMap;
use std::io;
use std::prelude::rust_2024::*;
use std::string::String;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::MtftpConfig;
use super::reload::APPLY_WAIT;
use crate::Instant;
use crate::dhcp::BootArch;
use crate::dhcp::config::MtftpParams;
use crate::driver::dhcp::DhcpService;
use crate::driver::event_loop::mio::Waker;
use crate::driver::event_loop::{Registrar, Service};
use crate::driver::mtftp_server::MtftpService;

/// What the loop answers a handoff with: put in place, or why not.
type Done = SyncSender<Result<(), String>>;

/// One value on its way to a service of the first loop.
struct Handoff<T> {
    slot: Mutex<Option<(T, Done)>>,
    /// The slot is full: the service's cheap look, each turn.
    pending: AtomicBool,
}

impl<T> Handoff<T> {
    fn new() -> Self {
        Handoff {
            slot: Mutex::new(None),
            pending: AtomicBool::new(false),
        }
    }

    /// Put `value` in the slot (a value not taken yet is replaced: the
    /// newer table wins); the receiver hears how it went.
    fn put(&self, value: T) -> Receiver<Result<(), String>> {
        let (tx, rx) = sync_channel(1);
        *lock(&self.slot) = Some((value, tx));
        self.pending.store(true, Ordering::Release);
        rx
    }

    fn take(&self) -> Option<(T, Done)> {
        // Cleared first: a handoff made meanwhile sets it again.
        self.pending.store(false, Ordering::Release);
        lock(&self.slot).take()
    }

    fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }
}

/// A poisoned lock still holds a consistent value (every critical section
/// only moves whole values): take it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new table for the MTFTP service: the table (`None`: MTFTP off) and
/// the new server port's socket, when the port changed.
type Table = (Option<MtftpConfig>, Option<std::net::UdpSocket>);

/// The boot files' MTFTP sub-options by file name (`dhcp.mtftp`).
pub(super) type Advert = BTreeMap<String, MtftpParams>;

/// The handoff between a [`Reloader`](super::Reloader) and the first
/// loop's DHCP and MTFTP services.
pub(super) struct MtftpSwitch {
    table: Handoff<Table>,
    advert: Handoff<Advert>,
    /// The first loop's waker, once a service started on it.
    waker: Mutex<Option<Arc<Waker>>>,
}

/// How a handoff went.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// Both services took it.
    Applied,
    /// The loop did not take it within [`APPLY_WAIT`] (not running yet):
    /// it does when it starts.
    Later,
}

impl MtftpSwitch {
    pub(super) fn new() -> Arc<MtftpSwitch> {
        Arc::new(MtftpSwitch {
            table: Handoff::new(),
            advert: Handoff::new(),
            waker: Mutex::new(None),
        })
    }

    fn wake(&self) {
        if let Some(w) = lock(&self.waker).as_ref() {
            if let Err(e) = w.wake() {
                tracing::warn!(
                    "reload: cannot wake the event loop ({e}): it takes the new MTFTP table on its next turn"
                );
            }
        }
    }

    /// Hand a new table to the MTFTP service, then (once it serves it)
    /// its channels to the DHCP engine; waits at most [`APPLY_WAIT`] for
    /// each. `Err`: the MTFTP service could not put it in place (the old
    /// table stays, and the DHCP engine is not told).
    pub(super) fn hand_over(
        &self,
        config: Option<MtftpConfig>,
        socket: Option<std::net::UdpSocket>,
        advert: Advert,
    ) -> Result<Taken, String> {
        let mut taken = Taken::Applied;
        let rx = self.table.put((config, socket));
        self.wake();
        match rx.recv_timeout(APPLY_WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => taken = Taken::Later,
        }
        let rx = self.advert.put(advert);
        self.wake();
        if rx.recv_timeout(APPLY_WAIT).is_err() {
            taken = Taken::Later;
        }
        Ok(taken)
    }

    /// The DHCP service as the first loop runs it: it takes new MTFTP
    /// channels between datagrams.
    pub(super) fn dhcp(self: &Arc<Self>, inner: DhcpService) -> AdvertisingDhcp {
        AdvertisingDhcp {
            inner,
            switch: self.clone(),
        }
    }

    /// The MTFTP service as the first loop runs it: it takes new tables
    /// between datagrams.
    pub(super) fn mtftp(self: &Arc<Self>, inner: MtftpService) -> ReloadingMtftp {
        ReloadingMtftp {
            inner,
            switch: self.clone(),
        }
    }

    fn keep_waker(&self, registrar: &Registrar) {
        let mut w = lock(&self.waker);
        if w.is_none() {
            *w = Some(registrar.waker());
        }
    }
}

/// The DHCP service of the boot server, plus the MTFTP channels a reload
/// hands it.
pub(super) struct AdvertisingDhcp {
    inner: DhcpService,
    switch: Arc<MtftpSwitch>,
}

impl AdvertisingDhcp {
    fn take(&mut self) {
        let Some((advert, done)) = self.switch.advert.take() else {
            return;
        };
        let boot = self.inner.engine_mut().boot_mut();
        let files: Vec<(BootArch, String)> = boot
            .iter()
            .map(|(a, e)| (a, String::from(e.file.as_str())))
            .collect();
        let mut advertised = 0;
        for (arch, file) in files {
            if let Some(e) = boot.get_mut(arch) {
                // The engine gives them only to architectures that take
                // them (BIOS), as at start.
                e.mtftp = advert.get(&file).copied();
                advertised += usize::from(e.mtftp.is_some());
            }
        }
        tracing::info!(
            boot_files = advertised,
            "reload: DHCP answers advertise the new MTFTP channels (option 43 sub-options 1-5)"
        );
        let _ = done.try_send(Ok(()));
    }
}

/// The MTFTP service of the boot server, plus the tables a reload hands
/// it.
pub(super) struct ReloadingMtftp {
    inner: MtftpService,
    switch: Arc<MtftpSwitch>,
}

impl ReloadingMtftp {
    fn take(&mut self) {
        let Some(((config, socket), done)) = self.switch.table.take() else {
            return;
        };
        let files = config.as_ref().map(|c| c.files.len());
        let result = self
            .inner
            .replace(config, socket)
            .map_err(|e| e.to_string());
        match &result {
            Ok(()) => tracing::info!(
                files,
                server = %self.inner.local_addr(),
                draining = self.inner.draining(),
                "reload: MTFTP table put in place"
            ),
            Err(e) => tracing::error!(
                "reload: the new MTFTP table is not in place, the running one stays: {e}"
            ),
        }
        let _ = done.try_send(result);
    }
}

/// The [`Service`] of a wrapper that takes what a reload handed it (the
/// `$field` hand-off of its switch) at start, when due and on a wake-up,
/// then lets the inner service run: the same for the DHCP service's
/// adverts and the MTFTP service's tables.
macro_rules! takes_hand_offs {
    ($wrapper:ty, $field:ident) => {
        impl Service for $wrapper {
            fn start(&mut self, registrar: Registrar) -> io::Result<()> {
                self.switch.keep_waker(&registrar);
                self.inner.start(registrar)?;
                self.take();
                Ok(())
            }

            fn ready(&mut self, token: usize) -> io::Result<()> {
                self.inner.ready(token)
            }

            fn poll_timeout(&self) -> Option<Instant> {
                if self.switch.$field.pending() {
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
                self.inner.woken()
            }
        }
    };
}

takes_hand_offs!(AdvertisingDhcp, advert);
takes_hand_offs!(ReloadingMtftp, table);
