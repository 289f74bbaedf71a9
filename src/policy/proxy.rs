//! The imaging proxy: evaluates the store for one workstation and keeps
//! the runtime state (each object's live tasks, multicast joins).
//!
//! Task ids are per workstation object (docs/transaction-protocol.md §4.5):
//! a repeated `TaskQuery` gets the same live tasks with the same ids, and
//! nothing one workstation sends can evict another's.
//!
//! Each task has a life cycle (§4.8, [`super::task`]): handed out (a later
//! hand-out of the same task is a counted retry), running, succeeded (the
//! object's request is cleared and stays cleared while the store states
//! the same request), failed (handed out again), held after
//! `max_handouts`. Every change is a [`TaskRecord`] written to the
//! [`TaskLog`] and synced before it is applied and answered;
//! [`ImagingProxy::restore`] replays them after a restart.

use super::condition::Facts;
use super::environment_mtftp::MtftpChannels;
use super::ip_pool::IpAssignments;
use super::model::{ImagingRule, MenuSetting, WorkstationId, WorkstationObject};
use super::multicast::{SessionEvent, SessionStatus, Sessions};
use super::registration::{RegisterSetting, Registry};
use super::scope::{Scope, upload_target};
use super::store::Store;
use super::task::{
    DEFAULT_MAX_HANDOUTS, Effect, NoLog, TaskEntry, TaskEvent, TaskLog, TaskRecord, TaskState,
};
use super::token::TokenSecret;
use crate::Instant;
use crate::transaction::Policy;
use crate::wire::image_safe::{ImageSafe, PendingFlags};
use crate::wire::transaction::environment_multicast::ENVIRONMENT_MULTICAST_LEN;
use crate::wire::transaction::menu_choice::{ImageSafeUpdate, TaskQuery};
use crate::wire::transaction::messages::{
    Environment, InfoAck, MenuEntry, MenuReply, Outcome, Task, TaskAction, TaskReply, TaskReport,
    TaskToken, WorkstationInfo,
};
use crate::wire::transaction::multicast::{
    MULTICAST_FIXED_LEN, MulticastInfo, MulticastRole, MulticastState,
};
use crate::wire::transaction::{MAX_PAYLOAD_LEN, Payload, Status};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

const MAINTENANCE_REASON: &str = "requested by the workstation object";
/// Maintenance asked by the image-safe pending flag alone (docs/policy.md).
const MAINTENANCE_FLAG_REASON: &str = "requested by the workstation's image-safe data";
const MAINTENANCE_CHOSEN: &str = "chosen in the boot menu";

/// Where a menu setting came from (precedence, highest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MenuSource {
    /// The workstation object.
    Object,
    /// The object's workstation policy.
    WorkstationPolicy,
    /// The server policy.
    ServerPolicy,
    /// Nothing configured: on key press.
    Default,
}

/// One decided task (before a task id is assigned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Restore `image`.
    Restore {
        /// Image path.
        image: String,
        /// Partitions (empty = all).
        partitions: Vec<u8>,
        /// Restored even though it may already be on the disk.
        forced: bool,
        /// The rule that chose it (`None` = the object's own image).
        rule: Option<String>,
    },
    /// Create (upload) an image to `target`.
    Create {
        /// Upload target.
        target: String,
    },
    /// Join the multicast session at this index of the store's list; the
    /// session's master instead uploads its disk (task `CreateImage` with
    /// target `multicast:<session name>`).
    Join {
        /// Index into [`Store::multicast_sessions`].
        session: usize,
        /// This workstation is the session's master.
        master: bool,
    },
    /// Run maintenance.
    Maintenance,
}

/// Successes forgotten because the object's request changed in the store
/// since (§4.8): the object and the effect.
pub type Forgotten = Vec<(WorkstationId, Effect)>;

mod registry;
pub use registry::MenuEntriesRef;

/// Tasks per object: at most one reply's worth (§8).
const MAX_LIVE_PER_WORKSTATION: usize = 8;

/// A success that cleared a request of an object (§4.8), kept while the
/// object's configured request is the one it cleared.
#[derive(Clone, Debug)]
struct Done {
    task: u32,
    at: Instant,
    effect: Effect,
    baseline: u64,
    server: Option<String>,
}

/// The object named by records no workstation caused (a session reopened
/// by a store reload).
const NO_OBJECT: WorkstationId = WorkstationId::Mac([0; 6]);

/// The imaging proxy over a [`Store`], writing its task records to a
/// [`TaskLog`] (§4.8; [`NoLog`] by default).
#[derive(Debug)]
pub struct ImagingProxy<S: Store, L: TaskLog = NoLog> {
    store: S,
    log: L,
    max_handouts: u32,
    next_task_id: u32,
    tasks: BTreeMap<WorkstationId, Vec<TaskEntry>>,
    done: BTreeMap<WorkstationId, Vec<Done>>,
    multicast: Sessions,
    applied: u64,
    tasks_built: usize,
    server_name: Option<String>,
    history: VecDeque<TaskRecord>,
    registry: Option<Box<dyn Registry>>,
    ips: IpAssignments,
    tokens: Option<TokenSecret>,
    mtftp: MtftpChannels,
}

/// Records kept for [`ImagingProxy::history`]: the latest, at most this
/// many (bounded memory; the journal has the rest since its last
/// compaction).
pub const HISTORY_LEN: usize = 1024;

impl<S: Store> ImagingProxy<S> {
    /// A proxy over `store`, no tasks, keeping no records, holding a task
    /// after [`DEFAULT_MAX_HANDOUTS`] hand-outs.
    pub fn new(store: S) -> Self {
        ImagingProxy::with_log(store, NoLog, DEFAULT_MAX_HANDOUTS)
    }
}

impl<S: Store, L: TaskLog> ImagingProxy<S, L> {
    /// A proxy over `store`, no tasks, writing its records to `log`; a task
    /// handed out `max_handouts` times without success is held (§4.8; at
    /// least 1).
    pub fn with_log(store: S, log: L, max_handouts: u32) -> Self {
        ImagingProxy {
            store,
            log,
            max_handouts: max_handouts.max(1),
            next_task_id: 1,
            tasks: BTreeMap::new(),
            done: BTreeMap::new(),
            multicast: Sessions::default(),
            applied: 0,
            tasks_built: 0,
            server_name: None,
            history: VecDeque::new(),
            registry: None,
            ips: IpAssignments::default(),
            tokens: None,
            mtftp: MtftpChannels::default(),
        }
    }

    /// A proxy over `store` in the state `records` leave (a journal
    /// replayed at start, §4.8), task ids continuing from `next_id` (or
    /// past the largest id in `records`). Records that name nothing (a task
    /// not in the table, a session no longer in the store) are skipped;
    /// successes whose request changed in the store since are forgotten.
    /// Then `log` is compacted to the state (one record per task and per
    /// success still holding). Returns the proxy and the successes
    /// forgotten, for the log.
    pub fn restore(
        store: S,
        mut log: L,
        max_handouts: u32,
        next_id: u32,
        records: &[TaskRecord],
    ) -> Result<(Self, Forgotten), L::Error> {
        let mut top = next_id;
        for r in records {
            top = top.max(r.task.saturating_add(1));
        }
        let mut p = ImagingProxy::with_log(store, NoLog, max_handouts);
        for r in records {
            p.apply(r);
        }
        p.next_task_id = top.max(1);
        let forgotten = p.settle();
        // Compacted right after: the reopenings need no record.
        let sessions = p.store.multicast_sessions();
        let _ = p.multicast.settle(Instant::ZERO, sessions, NO_OBJECT);
        let (next, snapshot) = p.snapshot();
        log.compact(next, &snapshot)?;
        let ImagingProxy {
            store,
            max_handouts,
            next_task_id,
            tasks,
            done,
            multicast,
            applied,
            tasks_built,
            server_name,
            history,
            registry,
            ips,
            tokens,
            mtftp,
            ..
        } = p;
        Ok((
            ImagingProxy {
                store,
                log,
                max_handouts,
                next_task_id,
                tasks,
                done,
                multicast,
                applied,
                tasks_built,
                server_name,
                history,
                registry,
                ips,
                tokens,
                mtftp,
            },
            forgotten,
        ))
    }

    /// Name this server in the records it writes from now on: which
    /// server handed a task out, which took its report (`[transaction]
    /// server_name`; docs/policy.md, "Task history"). At most 64 bytes
    /// (longer names are cut at a character boundary); empty: no name.
    pub fn set_server_name(&mut self, name: &str) {
        let mut end = name.len().min(64);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        self.server_name = (end > 0).then(|| name[..end].into());
    }

    /// The MTFTP channels of the files the boot server sends by multicast
    /// (`[[mtftp.file]]`): an `Environment` with `fetch = MTFTP` names
    /// those of its files in `TaskReply` TLV 6 (§4.5.2).
    pub fn set_mtftp_channels(&mut self, channels: MtftpChannels) {
        self.mtftp = channels;
    }

    /// The name this server writes into its records, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The task history, oldest first: the latest [`HISTORY_LEN`] records
    /// this proxy applied — replayed from the journal at start, then
    /// written while running — each with its time, workstation, task,
    /// event and server (docs/policy.md, "Task history").
    pub fn history(&self) -> impl Iterator<Item = &TaskRecord> {
        self.history.iter()
    }

    /// The task history of workstation `who`, oldest first.
    pub fn history_of<'a>(
        &'a self,
        who: &'a WorkstationId,
    ) -> impl Iterator<Item = &'a TaskRecord> {
        self.history.iter().filter(move |r| r.object == *who)
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The task log.
    pub fn log(&self) -> &L {
        &self.log
    }

    /// The task log, mutable.
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    /// Replace the store (a reload): the successes recorded for requests
    /// the new store still states stay applied; the others are forgotten
    /// (recorded, and returned). Tasks the new store no longer decides are
    /// dropped at their object's next query (§4.5). Live tasks keep their
    /// ids and task ids go on counting; multicast joins follow their
    /// session by name (a session the new store no longer has loses its
    /// joins; a live task that joins it can still be reported).
    pub fn replace_store(&mut self, now: Instant, store: S) -> Result<Forgotten, L::Error> {
        let old = core::mem::replace(&mut self.store, store);
        self.follow_sessions(&old);
        let forgotten = self.settle();
        let sessions = self.store.multicast_sessions();
        let reopened = self.multicast.settle(now, sessions, NO_OBJECT);
        for r in &reopened {
            self.log.record(r)?;
        }
        for (object, effect) in &forgotten {
            self.log.record(&TaskRecord {
                object: *object,
                task: 0,
                at: now,
                server: self.server_name.clone(),
                event: TaskEvent::Forgotten {
                    effect: effect.clone(),
                },
            })?;
        }
        if !forgotten.is_empty() || !reopened.is_empty() {
            self.log.sync()?;
        }
        Ok(forgotten)
    }

    /// After a store swap: the live tasks that join the multicast sessions
    /// of `old` follow them (by name) to their place in the new store (the
    /// sessions' state is kept by name).
    fn follow_sessions(&mut self, old: &S) {
        let sessions = self.store.multicast_sessions();
        let moved = |i: usize| {
            old.multicast_sessions()
                .get(i)
                .and_then(|o| sessions.iter().position(|s| s.name == o.name))
        };
        for entry in self.tasks.values_mut().flat_map(|l| l.iter_mut()) {
            if let Decision::Join { session, .. } = &mut entry.decision {
                // Gone: an index no decision has, so a new query decides anew.
                *session = moved(*session).unwrap_or(usize::MAX);
            }
        }
    }

    /// The live task ids of workstation `who` (handed out or running), in
    /// order (§4.5).
    pub fn live_tasks(&self, who: &WorkstationId) -> Vec<u32> {
        self.tasks
            .get(who)
            .map(|l| l.iter().filter(|t| t.is_live()).map(|t| t.id).collect())
            .unwrap_or_default()
    }

    /// Every task of workstation `who` that has not succeeded (live,
    /// failed or held), in order (§4.8).
    pub fn task_entries(&self, who: &WorkstationId) -> &[TaskEntry] {
        self.tasks.get(who).map_or(&[], |l| &l[..])
    }

    /// Every held task: (object, task), for an administrator (§4.8).
    pub fn held(&self) -> Vec<(WorkstationId, &TaskEntry)> {
        self.tasks
            .iter()
            .flat_map(|(w, l)| l.iter().map(move |t| (*w, t)))
            .filter(|(_, t)| t.state == TaskState::Held)
            .collect()
    }

    /// Issue a token with every restore, capture and multicast task
    /// (§4.5 TLV 3), made with a secret derived from `server_key` (the
    /// server's static private key: tokens then survive a restart).
    pub fn issue_task_tokens(&mut self, server_key: &[u8; 32]) {
        self.tokens = Some(TokenSecret::derive(server_key));
    }

    /// Does `token` stand for task `task` of workstation `who`, live now
    /// and at its latest hand-out (§4.5 TLV 3)? What an image store asks
    /// before it serves or takes an image; `false` when no tokens are
    /// issued.
    pub fn check_token(&self, who: &WorkstationId, task: u32, token: &[u8; 32]) -> bool {
        let (Some(secret), Some(t)) = (
            &self.tokens,
            self.tasks
                .get(who)
                .and_then(|l| l.iter().find(|t| t.id == task)),
        ) else {
            return false;
        };
        t.is_live() && secret.holds(who, task, t.handouts, token)
    }

    /// How many task outcomes (success/failure) have been applied.
    pub fn reports_applied(&self) -> u64 {
        self.applied
    }

    /// Members of the run (gathering or running) of the multicast session
    /// at `index` of the store's list.
    pub fn joined(&self, index: usize) -> &[WorkstationId] {
        self.store
            .multicast_sessions()
            .get(index)
            .map_or(&[], |s| self.multicast.joined(&s.name))
    }

    /// Would the gathering run of the session at `index` start at `now`:
    /// `start_members` joined, or `start_after_secs` elapsed since the last
    /// new member joined, and its master (if any) joined (§4.8.1)? It
    /// starts at the next query of one of its members.
    pub fn session_ready(&self, now: Instant, index: usize) -> bool {
        self.store
            .multicast_sessions()
            .get(index)
            .is_some_and(|s| self.multicast.ready(now, s))
    }

    /// Where the multicast session at `index` is: gathering, running,
    /// closed; its run and members (§4.8.1).
    pub fn session_status(&self, index: usize) -> Option<SessionStatus> {
        self.store
            .multicast_sessions()
            .get(index)
            .map(|s| self.multicast.status(&s.name))
    }

    fn object(&self, ids: &[WorkstationId]) -> Option<&WorkstationObject> {
        self.store.find_workstation(ids)
    }

    /// Resolve the menu setting: object → workstation policy → server
    /// policy → default (on key press).
    pub fn menu_setting(&self, ids: &[WorkstationId]) -> (MenuSetting, MenuSource) {
        let obj = self.object(ids);
        if let Some(m) = obj.and_then(|o| o.menu) {
            return (m, MenuSource::Object);
        }
        let pol = obj
            .and_then(|o| o.policy.as_deref())
            .and_then(|n| self.store.workstation_policy(n));
        if let Some(m) = pol.and_then(|p| p.menu) {
            return (m, MenuSource::WorkstationPolicy);
        }
        if let Some(m) = self.store.server_policy().menu {
            return (m, MenuSource::ServerPolicy);
        }
        (MenuSetting::DEFAULT, MenuSource::Default)
    }

    /// The first matching imaging rule in the workstation's scope
    /// (docs/policy.md): a registered workstation's workstation-policy
    /// rules, an unregistered workstation's server-policy rules. (Whether
    /// a rule may act at all is [`ImagingProxy::decide_tasks`]' part.)
    pub fn first_matching_rule(
        &self,
        ids: &[WorkstationId],
        facts: &Facts<'_>,
    ) -> Option<&ImagingRule> {
        let rules = match self.object(ids) {
            Some(o) => o
                .policy
                .as_deref()
                .and_then(|n| self.store.workstation_policy(n))
                .map_or(&[][..], |p| &p.rules[..]),
            None => &self.store.server_policy().rules[..],
        };
        rules.iter().find(|r| r.when.holds(facts))
    }

    /// Decide the ordered task list (pure: changes nothing). See the
    /// module docs for the order and docs/policy.md for exactly when a
    /// disk is overwritten.
    pub fn decide_tasks(&self, ids: &[WorkstationId], facts: &Facts<'_>) -> Vec<Decision> {
        let obj = self.object(ids);
        let scope = Scope::of(obj, facts);
        let mut out = Vec::new();
        // A capture first, alone with maintenance: a restore or a join as
        // a member only after it succeeded (a later query), never on the
        // boot that captures (docs/policy.md, "Capture before restore").
        if scope.capture {
            let id = obj.map(|o| o.id).or_else(|| ids.first().copied());
            if let Some(target) =
                id.and_then(|id| upload_target(self.store.server_policy(), obj, &id))
            {
                out.push(Decision::Create { target });
            }
        }
        let mut imaging = !scope.destructive_allowed();
        let rule = if scope.rules_apply() {
            self.first_matching_rule(ids, facts)
        } else {
            None
        };
        if !imaging && scope.registered && scope.flagged() {
            // The object's image, else the first matching rule of its
            // workstation policy; forced: the flag asks for it.
            let chosen = match obj.and_then(|o| o.image.clone()) {
                Some(image) => Some((image, Vec::new(), None)),
                None => rule.map(|r| (r.image.clone(), r.partitions.clone(), Some(r.name.clone()))),
            };
            if let Some((image, partitions, rule)) = chosen {
                if scope.object_flag || !self.restored(ids, &image) {
                    out.push(Decision::Restore {
                        image,
                        partitions,
                        forced: true,
                        rule,
                    });
                    imaging = true;
                }
            }
        }
        if !imaging {
            let session = self
                .store
                .multicast_sessions()
                .iter()
                .enumerate()
                .find(|(_, s)| {
                    s.enabled
                        && (s.master.is_some_and(|m| ids.contains(&m))
                            || s.members.iter().any(|m| ids.contains(m))
                            || (scope.rules_apply()
                                && s.member_rule.as_ref().is_some_and(|c| c.holds(facts))))
                        && self.multicast.admits(s, ids)
                });
            if let Some((i, s)) = session {
                let master = s.master.is_some_and(|m| ids.contains(&m));
                out.push(Decision::Join { session: i, master });
                imaging = true;
            }
        }
        if !imaging && !scope.registered {
            if let Some(r) = rule {
                let forced = r.force || scope.image_safe_flag;
                if (forced || facts.base_image != Some(r.image.as_str()))
                    && !self.restored(ids, &r.image)
                {
                    out.push(Decision::Restore {
                        image: r.image.clone(),
                        partitions: r.partitions.clone(),
                        forced,
                        rule: Some(r.name.clone()),
                    });
                }
            }
        }
        if scope.maintenance {
            out.push(Decision::Maintenance);
        }
        out
    }

    /// A restore of `image` to this workstation succeeded and the success
    /// still holds (§4.8): a rule or the image-safe flag alone does not
    /// put the same image down again (docs/policy.md, "No re-image
    /// loop"), even if the workstation did not record it in its
    /// image-safe data.
    fn restored(&self, ids: &[WorkstationId], image: &str) -> bool {
        ids.iter()
            .filter_map(|id| self.done.get(id))
            .flatten()
            .any(|d| matches!(&d.effect, Effect::Restored { image: i } if i == image))
    }

    /// Change the state as `r` says (live, after `r` was logged; and when
    /// replaying a journal). Never fails: a record that names nothing
    /// known changes nothing.
    fn apply(&mut self, r: &TaskRecord) {
        if self.history.len() >= HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(r.clone());
        let who = r.object;
        let list = self.tasks.entry(who).or_default();
        let pos = list.iter().position(|t| t.id == r.task);
        match (&r.event, pos) {
            (TaskEvent::HandedOut { decision, handouts }, Some(i)) => {
                let t = &mut list[i];
                t.decision = decision.clone();
                t.handouts = *handouts;
                t.state = TaskState::HandedOut;
                t.last = r.at;
                t.server = r.server.clone();
            }
            (TaskEvent::HandedOut { decision, handouts }, None) => {
                let known = match decision {
                    Decision::Join { session, .. } => {
                        *session < self.store.multicast_sessions().len()
                    }
                    _ => true,
                };
                if known && list.len() < MAX_LIVE_PER_WORKSTATION {
                    list.push(TaskEntry {
                        id: r.task,
                        decision: decision.clone(),
                        state: TaskState::HandedOut,
                        handouts: *handouts,
                        last: r.at,
                        server: r.server.clone(),
                    });
                }
            }
            (TaskEvent::Progress { percent }, Some(i)) => {
                list[i].state = TaskState::Running {
                    percent: (*percent).min(100),
                };
            }
            (TaskEvent::Failed { reason }, Some(i)) => {
                list[i].state = TaskState::Failed {
                    reason: reason.clone(),
                };
                self.applied += 1;
            }
            (TaskEvent::Held { handouts }, Some(i)) => {
                list[i].state = TaskState::Held;
                list[i].handouts = *handouts;
                list[i].last = r.at;
            }
            (TaskEvent::Dropped, Some(i)) => {
                list.remove(i);
            }
            (TaskEvent::Succeeded { effect, baseline }, pos) => {
                if let Some(i) = pos {
                    list.remove(i);
                    self.applied += 1;
                }
                let done = self.done.entry(who).or_default();
                let d = Done {
                    task: r.task,
                    at: r.at,
                    effect: effect.clone(),
                    baseline: *baseline,
                    server: r.server.clone(),
                };
                // One per class: a later success of the class keeps the
                // baseline of the request as configured.
                match done.iter_mut().find(|d| d.effect.class() == effect.class()) {
                    Some(old) => {
                        old.task = d.task;
                        old.at = d.at;
                        old.effect = d.effect;
                        old.server = d.server;
                    }
                    None => done.push(d),
                }
            }
            (TaskEvent::Session(e), _) => self.multicast.apply(r.at, who, e),
            (TaskEvent::Forgotten { effect }, _) => {
                if let Some(done) = self.done.get_mut(&who) {
                    done.retain(|d| d.effect.class() != effect.class());
                }
            }
            (_, None) => {}
        }
        if self.tasks.get(&who).is_some_and(Vec::is_empty) {
            self.tasks.remove(&who);
        }
        if self.done.get(&who).is_some_and(Vec::is_empty) {
            self.done.remove(&who);
        }
    }

    /// Apply the kept successes to the store as it is now: those whose
    /// object still states the request they cleared; forget the others
    /// (returned).
    fn settle(&mut self) -> Forgotten {
        let mut forgotten = Vec::new();
        let done = core::mem::take(&mut self.done);
        for (who, list) in done {
            let mut kept = Vec::new();
            for d in list {
                match self.store.workstation_mut(&who) {
                    Some(w) if d.effect.baseline(w) == d.baseline => {
                        d.effect.apply(w);
                        kept.push(d);
                    }
                    // No object to clear: a restore by rule of an
                    // unregistered workstation holds while the server
                    // keeps it (docs/policy.md, "No re-image loop").
                    None if d.effect.class() == 0 => kept.push(d),
                    _ => forgotten.push((who, d.effect)),
                }
            }
            if !kept.is_empty() {
                self.done.insert(who, kept);
            }
        }
        forgotten
    }

    /// The records that rebuild the state now (for a compaction), and the
    /// next task id.
    pub fn snapshot(&self) -> (u32, Vec<TaskRecord>) {
        let mut out = Vec::new();
        for (who, list) in &self.done {
            for d in list {
                out.push(TaskRecord {
                    object: *who,
                    task: d.task,
                    at: d.at,
                    server: d.server.clone(),
                    event: TaskEvent::Succeeded {
                        effect: d.effect.clone(),
                        baseline: d.baseline,
                    },
                });
            }
        }
        for (who, list) in &self.tasks {
            for t in list {
                let rec = |event| TaskRecord {
                    object: *who,
                    task: t.id,
                    at: t.last,
                    server: t.server.clone(),
                    event,
                };
                out.push(rec(TaskEvent::HandedOut {
                    decision: t.decision.clone(),
                    handouts: t.handouts,
                }));
                match &t.state {
                    TaskState::HandedOut => {}
                    TaskState::Running { percent } => {
                        out.push(rec(TaskEvent::Progress { percent: *percent }))
                    }
                    TaskState::Failed { reason } => out.push(rec(TaskEvent::Failed {
                        reason: reason.clone(),
                    })),
                    TaskState::Held => out.push(rec(TaskEvent::Held {
                        handouts: t.handouts,
                    })),
                }
            }
        }
        self.multicast.snapshot(&mut out);
        (self.next_task_id, out)
    }

    /// Log `records`, sync, and only then apply them: the state never runs
    /// ahead of the log, nothing is answered before the log holds it, and
    /// a log that fails changes nothing here.
    fn commit(&mut self, records: &[TaskRecord]) -> Result<(), Status> {
        if records.is_empty() {
            return Ok(());
        }
        // Records made without a server's name (the multicast sessions')
        // are this server's.
        let named: Vec<TaskRecord>;
        let records = if self.server_name.is_some() && records.iter().any(|r| r.server.is_none()) {
            named = records
                .iter()
                .map(|r| TaskRecord {
                    server: r.server.clone().or_else(|| self.server_name.clone()),
                    ..r.clone()
                })
                .collect();
            &named[..]
        } else {
            records
        };
        for r in records {
            self.log.record(r).map_err(|_| Status::ServerError)?;
        }
        self.log.sync().map_err(|_| Status::ServerError)?;
        for r in records {
            self.apply(r);
        }
        // Bounded: rewrite the log from the state when it grew past it. A
        // failed compaction loses nothing (the records are synced).
        if self.log.should_compact(self.snapshot_len()) {
            let (next, snapshot) = self.snapshot();
            let _ = self.log.compact(next, &snapshot);
        }
        Ok(())
    }

    /// `self.snapshot().1.len()`, without building it.
    fn snapshot_len(&self) -> usize {
        let done: usize = self.done.values().map(Vec::len).sum();
        let tasks: usize = self
            .tasks
            .values()
            .flat_map(|l| l.iter())
            .map(|t| {
                if t.state == TaskState::HandedOut {
                    1
                } else {
                    2
                }
            })
            .sum();
        done + tasks + self.multicast.snapshot_len()
    }
}

/// Tasks that read or write an image store get a token (§4.5 TLV 3).
fn needs_token(d: &Decision) -> bool {
    !matches!(d, Decision::Maintenance)
}

fn facts_of<'a>(info: &'a WorkstationInfo<'a>, is: &'a Option<ImageSafe<'a>>) -> Facts<'a> {
    Facts {
        info,
        base_image: is.as_ref().and_then(|r| r.base_image),
        pending: is.as_ref().map(|r| r.pending).unwrap_or_default(),
    }
}

fn image_safe_of<'a>(info: &WorkstationInfo<'a>) -> Option<ImageSafe<'a>> {
    info.image_safe.and_then(|b| ImageSafe::parse(b).ok())
}

impl<S: Store, L: TaskLog> Policy for ImagingProxy<S, L> {
    fn commit(&mut self) -> Result<(), crate::transaction::CommitFailed> {
        self.log
            .commit()
            .map_err(|_| crate::transaction::CommitFailed)
    }

    fn object_of(&self, id: &WorkstationId) -> Option<WorkstationId> {
        self.store
            .find_workstation(core::slice::from_ref(id))
            .map(|w| w.id)
    }

    fn register<'s>(
        &'s mut self,
        _now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
    ) -> Result<InfoAck<'s>, Status> {
        // Issue 15: unknown workstations registered when the server
        // policy says so; the inventory of every boot kept.
        let auto = (self.store.server_policy().register.as_ref())
            .filter(|r| r.automatic)
            .map(|r| r.name.clone());
        if let Some(template) = auto {
            self.register_new(who, info, &template)?;
        }
        if let Some(r) = self.registry.as_mut() {
            let mut bytes = alloc::vec![0u8; info.buffer_len()];
            if info.emit(&mut bytes).is_ok() {
                // Not fatal: the registry says why it could not keep it.
                let _ = r.inventory(who, &bytes);
            }
        }
        let obj = self.store.find_workstation(core::slice::from_ref(who));
        Ok(InfoAck {
            registered: obj.is_some(),
            name: obj.map(|o| o.name.as_str()).filter(|n| n.len() <= 64),
        })
    }

    fn menu<'s>(
        &'s mut self,
        _now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
    ) -> Result<MenuReply<'s>, Status> {
        // The imaging partition's switch offers the way it can go: "enable"
        // when the image-safe data says disabled, else "disable"
        // (docs/policy.md, "Imaging partition disabled").
        let hidden = if image_safe_of(info)
            .is_some_and(|r| r.pending.has(PendingFlags::IMAGING_PARTITION_DISABLED))
        {
            MenuEntry::DISABLE_IMAGING_PARTITION
        } else {
            MenuEntry::ENABLE_IMAGING_PARTITION
        };
        let (setting, _) = self.menu_setting(core::slice::from_ref(who));
        let (list, _) = self.menu_entries(core::slice::from_ref(who));
        let server = self.store.server_policy();
        // §4.4 limits: a store breaking them cannot be answered.
        if server.menu_file.as_ref().is_some_and(|f| f.len() > 128)
            || list.entries.iter().take(16).any(|e| e.label.len() > 64)
        {
            return Err(Status::ServerError);
        }
        let mut entries = heapless::Vec::new();
        for e in list.entries.iter().take(16).filter(|e| e.kind != hidden) {
            let _ = entries.push(MenuEntry {
                kind: e.kind,
                label: e.label.as_str(),
            });
        }
        Ok(MenuReply {
            mode: setting.mode,
            hotkey: Some(setting.hotkey),
            wait_ms: Some(setting.wait_ms),
            menu_file: server.menu_file.as_deref(),
            fetch: Some(server.menu_fetch),
            default_entry: list.default.filter(|d| usize::from(*d) < entries.len()),
            choice_timeout_ms: list.timeout_ms,
            entries,
        })
    }

    fn tasks<'s>(
        &'s mut self,
        now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
    ) -> Result<TaskReply<'s>, Status> {
        self.tasks_for(now, who, info, &TaskQuery::default())
    }

    fn tasks_for<'s>(
        &'s mut self,
        now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
        query: &TaskQuery,
    ) -> Result<TaskReply<'s>, Status> {
        // §4.5 MenuChoice: what the entry chosen asks for.
        let chosen_maintenance = match query.choice {
            Some(MenuEntry::BOOT_LOCAL) => return Ok(TaskReply::default()),
            Some(
                k @ (MenuEntry::DISABLE_IMAGING_PARTITION | MenuEntry::ENABLE_IMAGING_PARTITION),
            ) => {
                let bit = PendingFlags::IMAGING_PARTITION_DISABLED;
                let disable = k == MenuEntry::DISABLE_IMAGING_PARTITION;
                return Ok(TaskReply {
                    image_safe: Some(ImageSafeUpdate {
                        set: if disable { bit } else { 0 },
                        clear: if disable { 0 } else { bit },
                        ip: None,
                    }),
                    ..TaskReply::default()
                });
            }
            Some(MenuEntry::MAINTENANCE) => true,
            Some(MenuEntry::REGISTER) => {
                let template = (self.store.server_policy().register.as_ref())
                    .map_or(RegisterSetting::DEFAULT_TEMPLATE.into(), |r| r.name.clone());
                self.register_new(who, info, &template)?;
                false
            }
            _ => false,
        };
        let ids = [*who];
        // §4.8.1: multicast runs past their timeout end first (durably),
        // so that the decision below sees them closed.
        let ended = self
            .multicast
            .timeouts(now, self.store.multicast_sessions(), *who);
        self.commit(&ended)?;
        let is = image_safe_of(info);
        // Maintenance chosen in the menu replaces the automatic work of
        // this boot (the live tasks not decided now are dropped and decided
        // anew at the next automatic boot).
        // ZENworks' server policy IP pool (notes §1.3): sent back for the
        // image-safe data.
        let assigned = self.pool_address(who, is.as_ref())?;
        let decisions = if chosen_maintenance {
            alloc::vec![Decision::Maintenance]
        } else {
            self.decide_tasks(&ids, &facts_of(info, &is))
        };
        let maintenance_reason = if chosen_maintenance {
            MAINTENANCE_CHOSEN
        } else if self.object(&ids).is_some_and(|o| o.maintenance) {
            MAINTENANCE_REASON
        } else {
            MAINTENANCE_FLAG_REASON
        };
        // Keep only what fits one reply (§8), before any state changes.
        let server = self.store.server_policy();
        let sessions = self.store.multicast_sessions();
        let mut size = server.environment.as_ref().map_or(0, |e| {
            4 + 3 + e.kernel.len() + e.initrd.len() + e.loader.len()
        }) + assigned.as_ref().map_or(0, |_| 3 + 36)
            // §4.5.2 TLV 6: at most one per environment file, only with
            // MTFTP and channels to name.
            + if server
                .environment
                .as_ref()
                .is_some_and(|e| e.fetch == crate::wire::transaction::messages::Fetch::Mtftp)
                && !self.mtftp.0.is_empty()
            {
                3 * (3 + ENVIRONMENT_MULTICAST_LEN)
            } else {
                0
            };
        // Strings in tasks are `len:u8` (§4.5): a store holding a longer one
        // cannot be answered. Fail before any state changes (no task id
        // handed out, no multicast join).
        let too_long = |s: &str| s.len() > 255;
        if server
            .environment
            .as_ref()
            .is_some_and(|e| too_long(&e.kernel) || too_long(&e.initrd) || too_long(&e.loader))
        {
            return Err(Status::ServerError);
        }
        let mut fitting = Vec::new();
        for d in decisions.into_iter().take(8) {
            let unencodable = match &d {
                Decision::Restore { image, .. } => too_long(image),
                Decision::Create { target } => too_long(target),
                // §4.5.1: the master's target is `multicast:<name>`.
                Decision::Join { session, .. } => sessions.get(*session).is_none_or(|s| {
                    too_long(&s.name)
                        || s.name.len() + 10 > 255
                        || s.image.as_deref().is_some_and(too_long)
                }),
                Decision::Maintenance => false,
            };
            if unencodable {
                return Err(Status::ServerError);
            }
            let n = 8 + match &d {
                Decision::Restore {
                    image, partitions, ..
                } => 4 + 1 + image.len() + 1 + partitions.len().min(16),
                Decision::Create { target } => 4 + 1 + target.len(),
                // The task (a JoinMulticast, or the master's CreateImage)
                // and its TLV 4 (§4.5.1).
                Decision::Join { session, master } => sessions.get(*session).map_or(0, |s| {
                    let image = s.image.as_ref().map_or(10 + s.name.len(), String::len);
                    let task = if *master {
                        4 + 1 + 10 + s.name.len()
                    } else {
                        13 + s.name.len()
                    };
                    task + 3 + MULTICAST_FIXED_LEN + s.name.len() + image
                }),
                Decision::Maintenance => 1 + maintenance_reason.len(),
            };
            // Its token (§4.5 TLV 3), when tokens are issued.
            let n = n + if self.tokens.is_some() && needs_token(&d) {
                3 + 36
            } else {
                0
            };
            if size + n > MAX_PAYLOAD_LEN {
                break;
            }
            size += n;
            fitting.push(d);
        }
        // §4.5, §4.8: a task still decided keeps its id and is handed out
        // again (a retry), or held after `max_handouts`; a new one gets a
        // new id (and only then joins a multicast session); a task no
        // longer decided is dropped. Only this object's list changes, and
        // only through records the log holds before the reply leaves.
        let previous: &[TaskEntry] = self.tasks.get(who).map_or(&[], |l| &l[..]);
        let fitting: Vec<Decision> = fitting.into_iter().take(MAX_LIVE_PER_WORKSTATION).collect();
        let server_name = self.server_name.clone();
        let rec = |task, event| TaskRecord {
            object: *who,
            task,
            at: now,
            server: server_name.clone(),
            event,
        };
        // Dropped first: the list never holds more than one reply's worth.
        let mut records: Vec<TaskRecord> = previous
            .iter()
            .filter(|t| !fitting.contains(&t.decision))
            .map(|t| rec(t.id, TaskEvent::Dropped))
            .collect();
        let mut handed = Vec::new();
        let mut next_id = self.next_task_id;
        for d in fitting {
            match previous.iter().find(|t| t.decision == d) {
                Some(t) if t.state == TaskState::Held => {}
                // §4.5.1: a member asking again while it waits for its
                // session (or takes part) is not a retry: no record.
                Some(t) if t.is_live() && matches!(d, Decision::Join { .. }) => {
                    handed.push(t.id);
                }
                Some(t) if t.handouts >= self.max_handouts => {
                    records.push(rec(
                        t.id,
                        TaskEvent::Held {
                            handouts: t.handouts,
                        },
                    ));
                }
                Some(t) => {
                    handed.push(t.id);
                    let handouts = t.handouts.saturating_add(1);
                    records.push(rec(
                        t.id,
                        TaskEvent::HandedOut {
                            decision: d,
                            handouts,
                        },
                    ));
                }
                None => {
                    let id = next_id;
                    next_id = next_id.wrapping_add(1).max(1);
                    handed.push(id);
                    records.push(rec(
                        id,
                        TaskEvent::HandedOut {
                            decision: d,
                            handouts: 1,
                        },
                    ));
                }
            }
        }
        self.commit(&records)?;
        self.next_task_id = next_id;
        // §4.8.1: join (or stay), then the server decides the start.
        let joins: Vec<(usize, bool)> = self.tasks.get(who).map_or(Vec::new(), |l| {
            l.iter()
                .filter(|t| handed.contains(&t.id))
                .filter_map(|t| match t.decision {
                    Decision::Join { session, master } => Some((session, master)),
                    _ => None,
                })
                .collect()
        });
        for (session, master) in joins {
            if let Some(s) = self.store.multicast_sessions().get(session) {
                self.multicast.touch(s);
                self.multicast.join(now, s, *who, master);
                self.multicast.start_if_ready(now, s);
            }
        }
        self.tasks_built += 1;
        let list: &[TaskEntry] = self.tasks.get(who).map_or(&[], |l| &l[..]);
        let live: Vec<&TaskEntry> = handed
            .iter()
            .filter_map(|id| list.iter().find(|t| t.id == *id))
            .collect();
        let server = self.store.server_policy();
        let sessions = self.store.multicast_sessions();
        let mut reply = TaskReply::default();
        let multicast = &self.multicast;
        for o in &live {
            let action = match &o.decision {
                Decision::Restore {
                    image, partitions, ..
                } => TaskAction::RestoreImage {
                    server: server.image_server,
                    image,
                    partitions: heapless::Vec::from_slice(&partitions[..partitions.len().min(16)])
                        .unwrap_or_default(),
                },
                Decision::Create { target } => TaskAction::CreateImage {
                    server: server.image_server,
                    target,
                },
                Decision::Join { session, master } => {
                    let Some(s) = sessions.get(*session) else {
                        return Err(Status::ServerError);
                    };
                    let Some(target) = multicast.target(s) else {
                        return Err(Status::ServerError);
                    };
                    let (state, run, joined) = multicast.view(s, *who);
                    let _ = reply.multicast.push(MulticastInfo {
                        task_id: o.id,
                        role: if *master {
                            MulticastRole::Master
                        } else {
                            MulticastRole::Member
                        },
                        state,
                        run,
                        joined,
                        poll_secs: if state == MulticastState::Started {
                            0
                        } else {
                            s.poll_secs.max(1)
                        },
                        server: server.image_server,
                        group: s.group,
                        port: s.port,
                        session: &s.name,
                        image: s.image.as_deref().unwrap_or(target),
                    });
                    if *master {
                        TaskAction::CreateImage {
                            server: server.image_server,
                            target,
                        }
                    } else {
                        TaskAction::JoinMulticast {
                            session: &s.name,
                            group: s.group,
                            port: s.port,
                            min_members: s.start_members,
                            wait_secs: s.start_after_secs,
                        }
                    }
                }
                Decision::Maintenance => TaskAction::Maintenance {
                    reason: maintenance_reason,
                },
            };
            let _ = reply.tasks.push(Task { id: o.id, action });
            if let Some(secret) = self.tokens.as_ref().filter(|_| needs_token(&o.decision)) {
                let _ = reply.tokens.push(TaskToken {
                    task_id: o.id,
                    token: secret.token(who, o.id, o.handouts),
                });
            }
        }
        reply.image_safe = assigned.map(|ip| ImageSafeUpdate {
            set: 0,
            clear: 0,
            ip: Some(ip),
        });
        if !live.is_empty() {
            reply.environment = server.environment.as_ref().map(|e| Environment {
                fetch: e.fetch,
                kernel: &e.kernel,
                initrd: &e.initrd,
                loader: &e.loader,
            });
            if let Some(e) = &reply.environment {
                reply.environment_multicast = self.mtftp.for_environment(e);
            }
        }
        Ok(reply)
    }

    fn report(
        &mut self,
        now: Instant,
        who: &WorkstationId,
        _info: &WorkstationInfo<'_>,
        report: &TaskReport<'_>,
    ) -> Result<(), Status> {
        // §4.6: only a live task of the session's object.
        let task = self
            .tasks
            .get(who)
            .and_then(|l| l.iter().find(|t| t.id == report.task_id))
            .filter(|t| t.is_live())
            .ok_or(Status::UnknownTask)?;
        let event = match report.outcome {
            Outcome::Progress => TaskEvent::Progress {
                percent: report.percent.map_or(
                    match task.state {
                        TaskState::Running { percent } => percent,
                        _ => 0,
                    },
                    |p| p.min(100),
                ),
            },
            Outcome::Success => {
                let effect = Effect::of(&task.decision);
                // The request as the store states it now (before this
                // success changes it), unless an earlier success of the
                // same class already changed it: then that one's.
                let earlier = self
                    .done
                    .get(who)
                    .and_then(|l| l.iter().find(|d| d.effect.class() == effect.class()));
                let baseline = match earlier {
                    Some(d) => d.baseline,
                    None => self
                        .store
                        .find_workstation(core::slice::from_ref(who))
                        .map_or(0, |w| effect.baseline(w)),
                };
                TaskEvent::Succeeded { effect, baseline }
            }
            Outcome::Failure => TaskEvent::Failed {
                reason: report.reason.unwrap_or("").into(),
            },
            Outcome::Unknown(_) => return Err(Status::UnknownTask),
        };
        // §4.8.1: a member's (or the master's) outcome may end its run; a
        // success keeps it out of the session from now on.
        let outcome = match (&task.decision, &event) {
            (Decision::Join { session, .. }, TaskEvent::Succeeded { .. }) => Some((*session, true)),
            (Decision::Join { session, .. }, TaskEvent::Failed { .. }) => Some((*session, false)),
            _ => None,
        };
        let mut records = alloc::vec![TaskRecord {
            object: *who,
            task: report.task_id,
            at: now,
            server: self.server_name.clone(),
            event: event.clone(),
        }];
        let session =
            outcome.and_then(|(i, ok)| Some((self.store.multicast_sessions().get(i)?, ok)));
        if let Some((s, ok)) = session {
            records.extend(self.multicast.on_report(now, s, *who, report.task_id, ok));
        }
        let run_ended = records
            .iter()
            .any(|r| matches!(r.event, TaskEvent::Session(SessionEvent::RunEnded { .. })));
        self.commit(&records)?;
        if let Some((i, ok)) = outcome.filter(|_| !run_ended) {
            if let Some(s) = self.store.multicast_sessions().get(i) {
                self.multicast.reported(s, *who, ok);
            }
        }
        if let TaskEvent::Succeeded { effect, .. } = event {
            if let Some(w) = self.store.workstation_mut(who) {
                effect.apply(w);
            }
        }
        Ok(())
    }
}
