//! Multicast imaging sessions that start, run and finish
//! (docs/transaction-protocol.md §4.5.1 and §4.8.1; ZENworks' multicast
//! session settings, notes §1.6).
//!
//! A session (one [`MulticastSession`] of the store) goes through *runs*:
//!
//! ```text
//!  gathering ──(start_members joined, or start_after_secs since the last
//!     ▲          new join; and the master, if any, joined)──► running
//!     │                                                          │
//!     └── after = "keep", or late joiners wait ◄── run ends ◄────┘
//!                                                   (every member and the master
//!                                                    reported, or timeout_secs)
//!                          after = "disable" / "delete" ──► closed
//! ```
//!
//! - **Gathering.** Members that ask (`TaskQuery`) join and are told to
//!   wait and ask again after `poll_secs` (TLV 4 `Multicast`, state
//!   *waiting*). The server decides the start, lazily: when a query or
//!   report of the session's members comes in (members poll, so a start
//!   is seen within one poll interval).
//! - **Running.** The run's members and master learn it at their next
//!   query (state *started*). A workstation that asks after the start is
//!   *refused* (`late = "refuse"`, the default, as ZENworks: it gets no
//!   task from this session) or put in the *next run* (`late = "next"`:
//!   it waits, and the next run gathers as soon as this one ends).
//! - **End of a run.** When every member of the run and its master have
//!   reported success or failure, or `timeout_secs` after the start, the
//!   run ends: with `after = "disable"` (the default, as ZENworks) the
//!   session is closed while its settings stay the same; with `"delete"`
//!   it is closed while a session of that name is in the store; with
//!   `"keep"` (or late joiners waiting) the next run gathers. A member
//!   that reported success never joins the session again while its
//!   settings stay the same (no re-imaging loop on every boot).
//!
//! What survives a restart (the task journal, [`SessionEvent`]): closed
//! sessions, the members done, the run numbers. What does not: who is
//! gathering and whether a run is running (members ask again).

use super::model::{MulticastSession, WorkstationId};
use super::task::{Fnv, TaskEvent, TaskRecord};
use crate::Instant;
use crate::wire::transaction::multicast::MulticastState;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

/// ZENworks' default: start as soon as 5 members have joined (notes §1.6).
pub const DEFAULT_START_MEMBERS: u16 = 5;
/// ZENworks' default: …or 15 minutes after the last new member joined.
pub const DEFAULT_START_AFTER_SECS: u32 = 15 * 60;
/// Waiting members ask again after this many seconds, by default (below
/// the transaction server's 60 s session expiry, §3.5).
pub const DEFAULT_POLL_SECS: u16 = 30;
/// A run not finished this long after its start ends, by default (4 h).
pub const DEFAULT_TIMEOUT_SECS: u32 = 4 * 3600;
/// Members of one run (and late joiners waiting for the next): more are
/// refused (bounded memory).
pub const MAX_MEMBERS: usize = 1024;

/// What happens to a session when a run ends (`after`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AfterRun {
    /// Closed while its settings stay the same (ZENworks: "disabled and
    /// kept"). The default.
    #[default]
    Disable,
    /// Closed while a session of that name is in the store (ZENworks:
    /// "delete session information after completion").
    Delete,
    /// The next run gathers; members done do not join again.
    Keep,
}

impl AfterRun {
    /// The configuration and journal name.
    pub fn name(self) -> &'static str {
        match self {
            AfterRun::Disable => "disable",
            AfterRun::Delete => "delete",
            AfterRun::Keep => "keep",
        }
    }
    /// By configuration or journal name.
    pub fn from_name(s: &str) -> Option<AfterRun> {
        match s {
            "disable" => Some(AfterRun::Disable),
            "delete" => Some(AfterRun::Delete),
            "keep" => Some(AfterRun::Keep),
            _ => None,
        }
    }
}

/// What happens to a workstation that asks after a run started (`late`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LateJoin {
    /// It gets no task from this session (ZENworks: "once imaging starts,
    /// late registrants are refused"). The default.
    #[default]
    Refuse,
    /// It waits for the next run, which gathers when this one ends.
    NextRun,
}

impl LateJoin {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            LateJoin::Refuse => "refuse",
            LateJoin::NextRun => "next",
        }
    }
    /// By configuration name.
    pub fn from_name(s: &str) -> Option<LateJoin> {
        match s {
            "refuse" => Some(LateJoin::Refuse),
            "next" => Some(LateJoin::NextRun),
            _ => None,
        }
    }
}

impl MulticastSession {
    /// A session sending `image` to `group`:`port`, no members yet, with
    /// the defaults: start at 5 members or 15 minutes after the last join,
    /// poll every 30 s, end a run after 4 h, disable after a run, refuse
    /// late joiners.
    pub fn new(name: &str, image: &str, group: core::net::Ipv4Addr, port: u16) -> Self {
        MulticastSession {
            name: name.into(),
            enabled: true,
            image: Some(image.into()),
            master: None,
            members: Vec::new(),
            member_rule: None,
            group,
            port,
            start_members: DEFAULT_START_MEMBERS,
            start_after_secs: DEFAULT_START_AFTER_SECS,
            poll_secs: DEFAULT_POLL_SECS,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            after: AfterRun::Disable,
            late: LateJoin::Refuse,
        }
    }

    /// What the master uploads and the members receive when a master
    /// workstation sends its disk: `multicast:<name>` (§4.5.1).
    pub fn upload_target(&self) -> String {
        format!("multicast:{}", self.name)
    }

    /// A fingerprint of the settings that make the session what it is
    /// (FNV-1a, 64 bits): a closure or a member done holds while it is
    /// the same (§4.8.1). Poll interval and timeout are not part of it.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::new();
        h.opt(Some(&self.name));
        h.byte(u8::from(self.enabled));
        h.opt(self.image.as_deref());
        h.opt(self.master.map(|m| format!("{m}")).as_deref());
        for m in &self.members {
            h.opt(Some(&format!("{m}")));
        }
        h.byte(0xff);
        h.opt(
            self.member_rule
                .as_ref()
                .map(|c| format!("{c:?}"))
                .as_deref(),
        );
        self.group.octets().iter().for_each(|&b| h.byte(b));
        self.port.to_be_bytes().iter().for_each(|&b| h.byte(b));
        self.start_members
            .to_be_bytes()
            .iter()
            .for_each(|&b| h.byte(b));
        self.start_after_secs
            .to_be_bytes()
            .iter()
            .for_each(|&b| h.byte(b));
        h.opt(Some(self.after.name()));
        h.opt(Some(self.late.name()));
        h.0
    }
}

/// A change of a session that the task journal keeps (§4.8.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// Run `run` of `session` ended (every member reported, or its
    /// timeout): `after` is what happened — [`AfterRun::Keep`] when the
    /// next run gathers (configured so, or late joiners wait).
    RunEnded {
        /// Session name.
        session: String,
        /// The run that ended.
        run: u32,
        /// Closed (disable, delete) or the next run gathers (keep).
        after: AfterRun,
        /// [`MulticastSession::fingerprint`] of the session then.
        fingerprint: u64,
    },
    /// The record's object reported success in run `run` of `session`: it
    /// does not join the session again while its fingerprint is the same.
    MemberDone {
        /// Session name.
        session: String,
        /// The run.
        run: u32,
        /// [`MulticastSession::fingerprint`] of the session then.
        fingerprint: u64,
    },
    /// The session's settings changed in the store (or it left it) since
    /// it was closed: closure and members done are forgotten; it runs
    /// again from run 1.
    Reopened {
        /// Session name.
        session: String,
    },
}

/// Where a session is (for logs, administrators and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionPhase {
    /// Members join and wait.
    Gathering,
    /// Started at `since`.
    Running {
        /// When the run started.
        since: Instant,
    },
    /// Closed after a run (`Disable` or `Delete`).
    Closed(AfterRun),
}

/// A session's state now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// Where it is.
    pub phase: SessionPhase,
    /// The run gathering or running (the last one when closed); 1 first.
    pub run: u32,
    /// Members of that run.
    pub joined: usize,
    /// Late joiners waiting for the next run.
    pub next: usize,
    /// Members done (they do not join again).
    pub done: usize,
}

#[derive(Clone, Debug)]
struct Closure {
    after: AfterRun,
    fingerprint: u64,
    by: WorkstationId,
    at: Instant,
    run: u32,
}

#[derive(Clone, Debug)]
struct Done {
    who: WorkstationId,
    fingerprint: u64,
    run: u32,
    at: Instant,
}

/// One session's runtime state, by name.
#[derive(Clone, Debug)]
struct State {
    name: String,
    /// `multicast:<name>` (borrowed by replies).
    target: String,
    run: u32,
    started: Option<Instant>,
    members: Vec<WorkstationId>,
    master_joined: bool,
    reported: Vec<(WorkstationId, bool)>,
    last_join: Option<Instant>,
    next: Vec<WorkstationId>,
    closed: Option<Closure>,
    done: Vec<Done>,
}

impl State {
    fn new(name: &str) -> Self {
        State {
            name: name.into(),
            target: format!("multicast:{name}"),
            run: 1,
            started: None,
            members: Vec::new(),
            master_joined: false,
            reported: Vec::new(),
            last_join: None,
            next: Vec::new(),
            closed: None,
            done: Vec::new(),
        }
    }

    fn is_done(&self, s: &MulticastSession, ids: &[WorkstationId]) -> bool {
        let fp = s.fingerprint();
        self.done
            .iter()
            .any(|d| d.fingerprint == fp && ids.contains(&d.who))
    }

    fn in_run(&self, s: &MulticastSession, ids: &[WorkstationId]) -> bool {
        self.members.iter().any(|m| ids.contains(m))
            || (self.master_joined && s.master.is_some_and(|m| ids.contains(&m)))
    }

    /// The run's participants have all reported.
    fn all_reported(&self, s: &MulticastSession) -> bool {
        let has = |id: &WorkstationId| self.reported.iter().any(|(w, _)| w == id);
        self.members.iter().all(has) && (!self.master_joined || s.master.as_ref().is_none_or(has))
    }

    /// Start the next run with the late joiners.
    fn next_run(&mut self, at: Instant, ended: u32) {
        self.run = ended.saturating_add(1);
        self.started = None;
        self.members = core::mem::take(&mut self.next);
        self.master_joined = false;
        self.reported.clear();
        self.last_join = (!self.members.is_empty()).then_some(at);
    }
}

/// The runtime state of every session, by name (it follows a session
/// across store reloads).
#[derive(Clone, Debug, Default)]
pub(crate) struct Sessions {
    list: Vec<State>,
}

impl Sessions {
    fn get(&self, name: &str) -> Option<&State> {
        self.list.iter().find(|s| s.name == name)
    }

    fn get_mut(&mut self, name: &str) -> &mut State {
        match self.list.iter().position(|s| s.name == name) {
            Some(i) => &mut self.list[i],
            None => {
                self.list.push(State::new(name));
                let last = self.list.len() - 1;
                &mut self.list[last]
            }
        }
    }

    /// May `ids` be sent into `s` now: not closed, not done, and the
    /// session gathering, or running with them in the run, or taking late
    /// joiners for the next run (with room).
    pub(crate) fn admits(&self, s: &MulticastSession, ids: &[WorkstationId]) -> bool {
        let Some(st) = self.get(&s.name) else {
            return true;
        };
        if st.closed.is_some() || st.is_done(s, ids) {
            return false;
        }
        let master = s.master.is_some_and(|m| ids.contains(&m));
        if st.started.is_none() {
            return master || st.in_run(s, ids) || st.members.len() < MAX_MEMBERS;
        }
        st.in_run(s, ids)
            || st.next.iter().any(|n| ids.contains(n))
            || (s.late == LateJoin::NextRun && (master || st.next.len() < MAX_MEMBERS))
    }

    /// `who` asks for its task of `s` (a member, or the master): it joins
    /// the gathering run, or the next one when late (if admitted).
    pub(crate) fn join(
        &mut self,
        now: Instant,
        s: &MulticastSession,
        who: WorkstationId,
        master: bool,
    ) {
        let st = self.get_mut(&s.name);
        if st.closed.is_some() {
            return;
        }
        let ids = [who];
        if master {
            // The master of a running run that has not joined it waits for
            // the next one (it is then late like a member).
            if st.started.is_none() {
                st.master_joined = true;
            }
            return;
        }
        if st.in_run(s, &ids) || st.next.contains(&who) {
            return;
        }
        if st.started.is_none() {
            if st.members.len() < MAX_MEMBERS {
                st.members.push(who);
                st.last_join = Some(now);
            }
        } else if s.late == LateJoin::NextRun && st.next.len() < MAX_MEMBERS {
            st.next.push(who);
        }
    }

    /// Should the gathering run of `s` start at `now`?
    pub(crate) fn ready(&self, now: Instant, s: &MulticastSession) -> bool {
        let Some(st) = self.get(&s.name) else {
            return false;
        };
        if st.closed.is_some() || st.started.is_some() || st.members.is_empty() {
            return false;
        }
        if s.master.is_some() && !st.master_joined {
            return false;
        }
        let by_count = s.start_members > 0 && st.members.len() >= usize::from(s.start_members);
        let by_time = s.start_after_secs > 0
            && st.last_join.is_some_and(|last| {
                now.saturating_duration_since(last)
                    >= Duration::from_secs(s.start_after_secs.into())
            });
        by_count || by_time
    }

    /// Start the gathering run of `s` if it is ready; true if it started.
    pub(crate) fn start_if_ready(&mut self, now: Instant, s: &MulticastSession) -> bool {
        if !self.ready(now, s) {
            return false;
        }
        self.get_mut(&s.name).started = Some(now);
        true
    }

    /// What `who` is told about `s`: waiting or started, its run, and how
    /// many members that run has.
    pub(crate) fn view(
        &self,
        s: &MulticastSession,
        who: WorkstationId,
    ) -> (MulticastState, u32, u16) {
        let Some(st) = self.get(&s.name) else {
            return (MulticastState::Waiting, 1, 0);
        };
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        if st.next.contains(&who) {
            return (
                MulticastState::Waiting,
                st.run.saturating_add(1),
                count(st.next.len()),
            );
        }
        let state = if st.started.is_some() && st.in_run(s, &[who]) {
            MulticastState::Started
        } else {
            MulticastState::Waiting
        };
        (state, st.run, count(st.members.len()))
    }

    /// `multicast:<name>` for `s` (kept here so a reply can borrow it).
    pub(crate) fn target(&self, s: &MulticastSession) -> Option<&str> {
        self.get(&s.name).map(|st| st.target.as_str())
    }

    /// Make sure `s` has a state (so that [`Sessions::target`] answers).
    pub(crate) fn touch(&mut self, s: &MulticastSession) {
        let _ = self.get_mut(&s.name);
    }

    /// The records a success or failure of `who` in `s` makes (nothing is
    /// changed here): a member done, and the end of the run when it was
    /// the last one to report.
    pub(crate) fn on_report(
        &self,
        now: Instant,
        s: &MulticastSession,
        who: WorkstationId,
        task: u32,
        success: bool,
    ) -> Vec<TaskRecord> {
        let mut out = Vec::new();
        let st = self.get(&s.name);
        let run = st.map_or(1, |st| st.run);
        if success {
            out.push(TaskRecord {
                object: who,
                task,
                at: now,
                server: None,
                event: TaskEvent::Session(SessionEvent::MemberDone {
                    session: s.name.clone(),
                    run,
                    fingerprint: s.fingerprint(),
                }),
            });
        }
        if let Some(st) = st.filter(|st| st.started.is_some() && st.in_run(s, &[who])) {
            let mut after = st.clone();
            after.reported.retain(|(w, _)| *w != who);
            after.reported.push((who, success));
            if after.all_reported(s) {
                out.push(end_of_run(now, s, st, who));
            }
        }
        out
    }

    /// `who` reported (after the records of [`Sessions::on_report`] were
    /// applied): remembered for the end of the run.
    pub(crate) fn reported(&mut self, s: &MulticastSession, who: WorkstationId, success: bool) {
        let st = self.get_mut(&s.name);
        if st.in_run(s, &[who]) {
            st.reported.retain(|(w, _)| *w != who);
            st.reported.push((who, success));
        }
    }

    /// The ends of runs that passed their timeout at `now` (nothing is
    /// changed here); `by` is the workstation whose request noticed.
    pub(crate) fn timeouts(
        &self,
        now: Instant,
        sessions: &[MulticastSession],
        by: WorkstationId,
    ) -> Vec<TaskRecord> {
        sessions
            .iter()
            .filter_map(|s| {
                let st = self.get(&s.name)?;
                let since = st.started?;
                (st.closed.is_none()
                    && s.timeout_secs > 0
                    && now.saturating_duration_since(since)
                        >= Duration::from_secs(s.timeout_secs.into()))
                .then(|| end_of_run(now, s, st, by))
            })
            .collect()
    }

    /// Change the state as a journal record says (live, after it was
    /// logged; and when a journal is replayed).
    pub(crate) fn apply(&mut self, at: Instant, object: WorkstationId, e: &SessionEvent) {
        match e {
            SessionEvent::RunEnded {
                session,
                run,
                after,
                fingerprint,
            } => {
                let st = self.get_mut(session);
                match after {
                    AfterRun::Keep => st.next_run(at, *run),
                    closed => {
                        st.run = st.run.max(*run);
                        st.started = None;
                        st.closed = Some(Closure {
                            after: *closed,
                            fingerprint: *fingerprint,
                            by: object,
                            at,
                            run: *run,
                        });
                    }
                }
            }
            SessionEvent::MemberDone {
                session,
                run,
                fingerprint,
            } => {
                let st = self.get_mut(session);
                if st.started.is_none() && st.closed.is_none() {
                    // Replayed: the run it was done in is over.
                    st.run = st.run.max(*run);
                }
                st.done.retain(|d| d.who != object);
                if st.done.len() < MAX_MEMBERS * 4 {
                    st.done.push(Done {
                        who: object,
                        fingerprint: *fingerprint,
                        run: *run,
                        at,
                    });
                }
            }
            SessionEvent::Reopened { session } => {
                // A new session as far as anyone can tell: run 1, empty.
                *self.get_mut(session) = State::new(session);
            }
        }
    }

    /// After a restart or a store swap: closures and members done that no
    /// longer hold in `sessions` (a session gone, or its settings changed;
    /// a `delete` closure holds while the name is there) are forgotten —
    /// returned as records (by `by`, for the log). Runtime state of
    /// sessions no longer in the store is dropped.
    pub(crate) fn settle(
        &mut self,
        now: Instant,
        sessions: &[MulticastSession],
        by: WorkstationId,
    ) -> Vec<TaskRecord> {
        let mut out = Vec::new();
        for st in &mut self.list {
            let s = sessions.iter().find(|s| s.name == st.name);
            let holds = |fp: u64| s.is_some_and(|s| s.fingerprint() == fp);
            let closure_holds = match &st.closed {
                None => true,
                Some(c) if c.after == AfterRun::Delete => s.is_some(),
                Some(c) => holds(c.fingerprint),
            };
            let done_holds = st.done.iter().all(|d| holds(d.fingerprint));
            if !closure_holds || (st.closed.is_none() && !done_holds) {
                *st = State::new(&st.name);
                out.push(TaskRecord {
                    object: by,
                    task: 0,
                    at: now,
                    server: None,
                    event: TaskEvent::Session(SessionEvent::Reopened {
                        session: st.name.clone(),
                    }),
                });
            }
            if s.is_none() {
                // Gone from the store: nobody gathers or runs in it.
                st.started = None;
                st.members.clear();
                st.next.clear();
                st.reported.clear();
                st.master_joined = false;
                st.last_join = None;
            }
        }
        self.list.retain(|st| {
            sessions.iter().any(|s| s.name == st.name) || st.closed.is_some() || !st.done.is_empty()
        });
        out
    }

    /// The records that rebuild what survives a restart (§4.8.1).
    pub(crate) fn snapshot(&self, out: &mut Vec<TaskRecord>) {
        for st in &self.list {
            for d in &st.done {
                out.push(TaskRecord {
                    object: d.who,
                    task: 0,
                    at: d.at,
                    server: None,
                    event: TaskEvent::Session(SessionEvent::MemberDone {
                        session: st.name.clone(),
                        run: d.run,
                        fingerprint: d.fingerprint,
                    }),
                });
            }
            if let Some(c) = &st.closed {
                out.push(TaskRecord {
                    object: c.by,
                    task: 0,
                    at: c.at,
                    server: None,
                    event: TaskEvent::Session(SessionEvent::RunEnded {
                        session: st.name.clone(),
                        run: c.run,
                        after: c.after,
                        fingerprint: c.fingerprint,
                    }),
                });
            }
        }
    }

    /// `snapshot`'s length, without building it.
    pub(crate) fn snapshot_len(&self) -> usize {
        self.list
            .iter()
            .map(|st| st.done.len() + usize::from(st.closed.is_some()))
            .sum()
    }

    /// Members of the run of `name` gathering or running (the last one
    /// when closed).
    pub(crate) fn joined(&self, name: &str) -> &[WorkstationId] {
        self.get(name).map_or(&[], |st| &st.members[..])
    }

    /// The state of session `name`.
    pub(crate) fn status(&self, name: &str) -> SessionStatus {
        match self.get(name) {
            None => SessionStatus {
                phase: SessionPhase::Gathering,
                run: 1,
                joined: 0,
                next: 0,
                done: 0,
            },
            Some(st) => SessionStatus {
                phase: match (&st.closed, st.started) {
                    (Some(c), _) => SessionPhase::Closed(c.after),
                    (None, Some(since)) => SessionPhase::Running { since },
                    (None, None) => SessionPhase::Gathering,
                },
                run: st.run,
                joined: st.members.len(),
                next: st.next.len(),
                done: st.done.len(),
            },
        }
    }
}

/// The record that ends the running run of `s` (`st`).
fn end_of_run(now: Instant, s: &MulticastSession, st: &State, by: WorkstationId) -> TaskRecord {
    let after = if st.next.is_empty() {
        s.after
    } else {
        AfterRun::Keep
    };
    TaskRecord {
        object: by,
        task: 0,
        at: now,
        server: None,
        event: TaskEvent::Session(SessionEvent::RunEnded {
            session: s.name.clone(),
            run: st.run,
            after,
            fingerprint: s.fingerprint(),
        }),
    }
}
