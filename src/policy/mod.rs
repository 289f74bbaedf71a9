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
//! - **Tasks** ([`ImagingProxy::decide_tasks`]), an ordered list:
//!   1. the object asks for "an image on next boot" (or the image-safe data
//!      carries the pending flag): restore the object's image, or the image
//!      of the first matching rule — forced, even if already on the disk;
//!   2. the object asks to create an image: create (upload) it;
//!   3. the first enabled multicast session the workstation belongs to
//!      (explicit member, master, or member rule): join it;
//!   4. otherwise the imaging rules — the workstation policy's, then the
//!      server policy's — first match wins; the image is restored unless the
//!      same base image is already on the disk and the rule does not
//!      `force` it;
//!   5. the object asks for maintenance: run maintenance (appended).
//!
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
mod ip_pool;
#[cfg(feature = "alloc")]
mod model;
#[cfg(feature = "alloc")]
mod proxy;
#[cfg(feature = "alloc")]
mod registration;
#[cfg(feature = "alloc")]
mod store;
#[cfg(feature = "alloc")]
mod task;

#[cfg(feature = "alloc")]
pub use crate::workstation::identities;
#[cfg(feature = "alloc")]
pub use condition::{Cmp, Condition, Facts};
#[cfg(feature = "alloc")]
pub use ip_pool::{IpAssignments, IpPool};
#[cfg(feature = "alloc")]
pub use model::{
    EnvironmentSpec, ImagingRule, MenuEntries, MenuEntrySpec, MenuSetting, MulticastSession,
    ServerPolicy, WorkstationId, WorkstationObject, WorkstationPolicy,
};
#[cfg(feature = "alloc")]
pub use proxy::{Decision, Forgotten, ImagingProxy, MenuEntriesRef, MenuSource};
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
