//! The imaging policy ("imaging proxy"): menu settings, imaging rules,
//! multicast sessions (docs/transaction-protocol.md §4.3–§4.6; docs/design.md
//! steps 8–17).
//!
//! Pure logic (no_std with `alloc`). The data lives behind the small
//! [`Store`] trait ([`MemoryStore`] in memory; the std driver
//! `driver::policy_store` loads it from a TOML file with errors that name
//! the file, line and field). [`ImagingProxy`] evaluates it and is
//! what the transaction server calls through
//! [`transaction::Policy`](crate::transaction::Policy).
//!
//! Decisions, in order:
//!
//! - **Menu** ([`ImagingProxy::menu_setting`]): the workstation object's
//!   setting, else its workstation policy's, else the server policy's, else
//!   the default *on key press* (Ctrl+Alt, 3 s).
//! - **Tasks** ([`ImagingProxy::decide_tasks`]), an ordered list, in the
//!   scope ZENworks gave its rules (docs/policy.md, "When can a restore
//!   happen?"):
//!   1. a capture is asked (the object's "create an image", or the
//!      image-safe pending flag with the server policy's `upload_target`):
//!      create (upload) it — and nothing that overwrites the disk on this
//!      boot: the restore waits until the capture succeeded;
//!   2. a registered workstation flagged "image on next boot" (the
//!      object's attribute or the image-safe pending flag): restore the
//!      object's image, or the image of the first matching rule of its
//!      workstation policy — forced, even if already on the disk;
//!   3. the first enabled multicast session the workstation belongs to
//!      (master, explicit member, or — when rules apply to it — member
//!      rule) and that admits it (not closed after a run, not done by it,
//!      not running without it): join it (sessions start, run and finish:
//!      §4.8.1);
//!   4. an unregistered workstation: the server policy's rules, first
//!      match wins; the image is restored unless the same base image is
//!      already on the disk and neither the rule nor the image-safe flag
//!      forces it, and unless a restore of that image to it already
//!      succeeded; not when its imaging partition is disabled;
//!   5. maintenance is asked (the object or the pending flag): run
//!      maintenance (appended).
//!
//!   A registered workstation that is not flagged gets no restore from a
//!   rule or from missing or damaged image-safe data.
//!   An empty list means *boot the local disk*; a non-empty list carries the
//!   imaging environment of the server policy.
//!
//! - **Task life cycle** (§4.8, [`TaskState`]): a task decided again is the
//!   same task (same id) handed out again, a counted retry; after
//!   `max_handouts` it is held; a success clears the request that made it.
//!   Every change goes to a [`TaskLog`] first (the std driver
//!   `driver::task_journal` keeps it in an fsync'd file).

#[cfg(feature = "alloc")]
mod condition;
#[cfg(feature = "alloc")]
mod environment_mtftp;
#[cfg(feature = "alloc")]
mod ip_pool;
#[cfg(feature = "alloc")]
mod model;
#[cfg(feature = "alloc")]
mod multicast;
#[cfg(feature = "alloc")]
mod proxy;
#[cfg(feature = "alloc")]
mod registration;
#[cfg(feature = "alloc")]
mod scope;
#[cfg(feature = "alloc")]
mod store;
#[cfg(feature = "alloc")]
mod task;
#[cfg(feature = "alloc")]
mod text;
#[cfg(feature = "alloc")]
mod token;

#[cfg(feature = "alloc")]
pub use crate::workstation::identities;
#[cfg(feature = "alloc")]
pub use condition::{Cmp, Condition, Facts, TextAttr, TextOp};
#[cfg(feature = "alloc")]
pub use environment_mtftp::MtftpChannels;
#[cfg(feature = "alloc")]
pub use ip_pool::{IpAssignments, IpPool};
#[cfg(feature = "alloc")]
pub use model::{
    EnvironmentSpec, ImagingRule, MenuEntries, MenuEntrySpec, MenuSetting, MulticastSession,
    ServerPolicy, WorkstationId, WorkstationObject, WorkstationPolicy,
};
#[cfg(feature = "alloc")]
pub use multicast::{
    AfterRun, DEFAULT_POLL_SECS, DEFAULT_START_AFTER_SECS, DEFAULT_START_MEMBERS,
    DEFAULT_TIMEOUT_SECS, LateJoin, MAX_MEMBERS, SessionEvent, SessionPhase, SessionStatus,
};
#[cfg(feature = "alloc")]
pub use proxy::{Decision, Forgotten, HISTORY_LEN, ImagingProxy, MenuEntriesRef, MenuSource};
#[cfg(feature = "alloc")]
pub use registration::{
    MAX_NAME_LEN, RegisterSetting, Registry, RegistryFailed, TemplateError, check_template,
    expand_name,
};
#[cfg(feature = "alloc")]
pub use store::{MAX_WORKSTATIONS, MemoryStore, Store};
#[cfg(feature = "alloc")]
pub use task::{
    DEFAULT_MAX_HANDOUTS, Effect, LogFailed, MemoryLog, NoLog, TaskEntry, TaskEvent, TaskLog,
    TaskRecord, TaskState,
};
