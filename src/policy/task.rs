//! The life cycle of an imaging task (docs/transaction-protocol.md §4.5,
//! §4.6, §4.8) and the records that make it survive a restart.
//!
//! ```text
//!  decided ──► handed out (n = 1) ──► running (percent) ──► succeeded (ends it)
//!                 ▲      │                  │
//!                 │      └──── failed ◄─────┘
//!                 │               │ (reason)
//!                 └── handed out again: n + 1 (a retry) ── n > max ──► held
//! ```
//!
//! Every change is one [`TaskRecord`], given to a [`TaskLog`] *before* the
//! state changes and the reply leaves; replaying the records in order
//! rebuilds the same state (the imaging proxy's `restore`). The std driver
//! `driver::task_journal` keeps them in an fsync'd file; [`NoLog`] keeps
//! nothing, [`MemoryLog`] keeps them in memory (no_std, tests).

use super::model::{WorkstationId, WorkstationObject};
use super::multicast::SessionEvent;
use super::proxy::Decision;
use crate::Instant;
use alloc::string::String;
use alloc::vec::Vec;

/// Hand-outs of one task before it is held (§4.8), by default.
pub const DEFAULT_MAX_HANDOUTS: u32 = 3;

/// Where a task is in its life cycle (§4.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Handed out; no report yet.
    HandedOut,
    /// Progress reported.
    Running {
        /// Percent done (0–100).
        percent: u8,
    },
    /// The workstation reported a failure: the task is handed out again
    /// (a retry) while the policy still decides it.
    Failed {
        /// Why, as the workstation said (at most 128 bytes, §4.6).
        reason: String,
    },
    /// Handed out the maximum number of times without success: not handed
    /// out again until an administrator changes the request.
    Held,
}

/// One task of a workstation object: a success ends it (it leaves the
/// table), anything else keeps it, with the same id, while the policy
/// still decides the same work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEntry {
    /// The task id (per object, §4.5).
    pub id: u32,
    /// What the task does.
    pub decision: Decision,
    /// Where it is.
    pub state: TaskState,
    /// How many times it was handed out (1 = once; more = retries).
    pub handouts: u32,
    /// When it was last handed out (or held).
    pub last: Instant,
    /// The server that last handed it out (by name), if it has one.
    pub server: Option<String>,
}

impl TaskEntry {
    /// A report for it is accepted (§4.6): handed out or running.
    pub fn is_live(&self) -> bool {
        matches!(self.state, TaskState::HandedOut | TaskState::Running { .. })
    }
}

/// What a task's success did to its workstation object: cleared the
/// request that made it (§4.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// An image was restored: "image on next boot" cleared, the image kept
    /// as the last one applied.
    Restored {
        /// The image.
        image: String,
    },
    /// A multicast session was joined: "image on next boot" cleared.
    Joined,
    /// An image was created: the "create an image" request cleared.
    Created,
    /// Maintenance ran: the "run maintenance" request cleared.
    Maintained,
}

impl Effect {
    /// The effect of `decision` succeeding.
    pub fn of(decision: &Decision) -> Effect {
        match decision {
            Decision::Restore { image, .. } => Effect::Restored {
                image: image.clone(),
            },
            Decision::Join { .. } => Effect::Joined,
            Decision::Create { .. } => Effect::Created,
            Decision::Maintenance => Effect::Maintained,
        }
    }

    /// Effects of one class clear the same request: a later one replaces
    /// an earlier one.
    pub(crate) fn class(&self) -> u8 {
        match self {
            Effect::Restored { .. } | Effect::Joined => 0,
            Effect::Created => 1,
            Effect::Maintained => 2,
        }
    }

    /// A fingerprint of the request this effect clears, as the object
    /// states it (FNV-1a, 64 bits, over a fixed encoding): the effect
    /// holds while the configured request is the same, and a changed
    /// request (another image, the flag set again after it was cleared in
    /// the store) asks anew (§4.8).
    pub fn baseline(&self, w: &WorkstationObject) -> u64 {
        let mut h = Fnv::new();
        h.byte(self.class());
        match self.class() {
            0 => {
                h.byte(u8::from(w.image_next_boot));
                h.opt(w.image.as_deref());
            }
            1 => h.opt(w.create_image.as_deref()),
            _ => h.byte(u8::from(w.maintenance)),
        }
        h.0
    }

    /// Clear the request on `w`.
    pub fn apply(&self, w: &mut WorkstationObject) {
        match self {
            Effect::Restored { image } => {
                w.last_image = Some(image.clone());
                w.image_next_boot = false;
            }
            Effect::Joined => w.image_next_boot = false,
            Effect::Created => w.create_image = None,
            Effect::Maintained => w.maintenance = false,
        }
    }
}

pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn byte(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    pub(crate) fn opt(&mut self, s: Option<&str>) {
        match s {
            None => self.byte(0),
            Some(s) => {
                self.byte(1);
                let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
                n.to_le_bytes().iter().for_each(|&b| self.byte(b));
                s.bytes().for_each(|b| self.byte(b));
            }
        }
    }
}

/// What happened to one task (§4.8): the unit of the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEvent {
    /// Handed out (again): `handouts` is the count including this one.
    HandedOut {
        /// What the task does.
        decision: Decision,
        /// Hand-outs so far, this one included (2 and more: retries).
        handouts: u32,
    },
    /// Progress reported.
    Progress {
        /// Percent done.
        percent: u8,
    },
    /// Success reported: the task ends, its effect is applied to the
    /// object.
    Succeeded {
        /// What the success changed on the object.
        effect: Effect,
        /// [`Effect::baseline`] of the object before it changed.
        baseline: u64,
    },
    /// Failure reported.
    Failed {
        /// Why.
        reason: String,
    },
    /// Decided again after `handouts` hand-outs, the maximum: held, not
    /// handed out.
    Held {
        /// Hand-outs it had.
        handouts: u32,
    },
    /// No longer decided by the policy (the request changed): removed.
    Dropped,
    /// The object's request changed in the store since the success that
    /// cleared it: that success no longer holds (the store was replaced).
    Forgotten {
        /// The effect forgotten.
        effect: Effect,
    },
    /// A multicast session changed (§4.8.1): a run ended, a member is
    /// done, a closure forgotten. `task` is 0, or the member's task.
    Session(SessionEvent),
}

/// One journal record: what happened to task `task` of object `object`,
/// and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// The workstation object.
    pub object: WorkstationId,
    /// The task id (0 in [`TaskEvent::Forgotten`]).
    pub task: u32,
    /// When (engine time; the std journal stores it as Unix time).
    pub at: Instant,
    /// The server that wrote it — handed the task out, took the report —
    /// by its name (`[transaction] server_name`; docs/policy.md, "Task
    /// history"); `None` from a server without one (and in journals
    /// written before names were kept).
    pub server: Option<String>,
    /// What.
    pub event: TaskEvent,
}

/// Where the imaging proxy writes its task records (§4.8). The proxy calls
/// [`TaskLog::record`] for every change before it makes it, then
/// [`TaskLog::sync`] once before it answers: a record synced is never
/// lost, and a reply never claims more than the log holds. Errors make
/// the request fail with `ServerError` (§5).
pub trait TaskLog {
    /// Why a record could not be kept.
    type Error: core::fmt::Debug;
    /// Keep `record` (it may be buffered until [`TaskLog::sync`]).
    fn record(&mut self, record: &TaskRecord) -> Result<(), Self::Error>;
    /// Make every record kept so far durable — or, in a log whose driver
    /// commits for it ([`TaskLog::commit`], group commit), ready to be made
    /// durable by the next commit, which comes before any answer that
    /// depends on it is sent.
    fn sync(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Make every record synced so far durable: the driver calls it once
    /// for a batch of requests, before it sends their answers (group
    /// commit: one flush to the disk for many reports). An error means
    /// the answers must not be sent. A log without group commit is
    /// durable at [`TaskLog::sync`] already; the default does nothing.
    fn commit(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Would the log rather be rewritten from a snapshot of
    /// `snapshot_len` records?
    fn should_compact(&self, _snapshot_len: usize) -> bool {
        false
    }
    /// Replace everything kept by `snapshot` (the records that rebuild the
    /// current state), with task ids continuing from `next_id`.
    fn compact(&mut self, _next_id: u32, _snapshot: &[TaskRecord]) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Keeps nothing: the state lives as long as the proxy.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLog;

impl TaskLog for NoLog {
    type Error = core::convert::Infallible;
    fn record(&mut self, _: &TaskRecord) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// `None` keeps nothing; `Some(log)` is `log`.
impl<L: TaskLog> TaskLog for Option<L> {
    type Error = L::Error;
    fn record(&mut self, record: &TaskRecord) -> Result<(), Self::Error> {
        self.as_mut().map_or(Ok(()), |l| l.record(record))
    }
    fn sync(&mut self) -> Result<(), Self::Error> {
        self.as_mut().map_or(Ok(()), |l| l.sync())
    }
    fn commit(&mut self) -> Result<(), Self::Error> {
        self.as_mut().map_or(Ok(()), |l| l.commit())
    }
    fn should_compact(&self, n: usize) -> bool {
        self.as_ref().is_some_and(|l| l.should_compact(n))
    }
    fn compact(&mut self, next_id: u32, snapshot: &[TaskRecord]) -> Result<(), Self::Error> {
        self.as_mut()
            .map_or(Ok(()), |l| l.compact(next_id, snapshot))
    }
}

/// Keeps every record in memory (tests, and a no_std host that persists
/// them its own way); compacts when asked to past `compact_above` records.
#[derive(Clone, Debug, Default)]
pub struct MemoryLog {
    /// The records, oldest first (after a compaction: the snapshot).
    pub records: Vec<TaskRecord>,
    /// Next task id written by the last compaction.
    pub next_id: u32,
    /// Records synced ([`TaskLog::sync`] calls that found new records).
    pub synced: usize,
    /// Compact when more records than this are kept (0: never).
    pub compact_above: usize,
    /// Fail every call (to test that a failing log changes nothing).
    pub fail: bool,
}

/// [`MemoryLog`] was told to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogFailed;

impl TaskLog for MemoryLog {
    type Error = LogFailed;
    fn record(&mut self, record: &TaskRecord) -> Result<(), LogFailed> {
        if self.fail {
            return Err(LogFailed);
        }
        self.records.push(record.clone());
        Ok(())
    }
    fn sync(&mut self) -> Result<(), LogFailed> {
        if self.fail {
            return Err(LogFailed);
        }
        self.synced = self.records.len();
        Ok(())
    }
    fn should_compact(&self, snapshot_len: usize) -> bool {
        self.compact_above != 0 && self.records.len() > self.compact_above.max(snapshot_len)
    }
    fn compact(&mut self, next_id: u32, snapshot: &[TaskRecord]) -> Result<(), LogFailed> {
        if self.fail {
            return Err(LogFailed);
        }
        self.records = snapshot.to_vec();
        self.next_id = next_id;
        self.synced = self.records.len();
        Ok(())
    }
}
