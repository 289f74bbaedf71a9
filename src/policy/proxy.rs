//! The imaging proxy: evaluates the store for one workstation and keeps
//! the runtime state (each object's live tasks, multicast joins).
//!
//! Task ids are per workstation object (docs/transaction-protocol.md §4.5):
//! a repeated `TaskQuery` gets the same live tasks with the same ids, and
//! nothing one workstation sends can evict another's.

use super::condition::Facts;
use super::model::{ImagingRule, MenuSetting, WorkstationId, WorkstationObject};
use super::store::Store;
use crate::Instant;
use crate::transaction::Policy;
use crate::wire::image_safe::{ImageSafe, PendingFlags};
use crate::wire::transaction::messages::{
    Environment, InfoAck, MenuEntry, MenuReply, Outcome, Task, TaskAction, TaskReply, TaskReport,
    WorkstationInfo,
};
use crate::wire::transaction::{MAX_PAYLOAD_LEN, Status};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

const MAINTENANCE_REASON: &str = "requested by the workstation object";

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

/// A task handed out and not yet reported done or failed (§4.5).
#[derive(Clone, Debug)]
struct Live {
    id: u32,
    decision: Decision,
}

/// Live tasks per object: at most one reply's worth (§8).
const MAX_LIVE_PER_WORKSTATION: usize = 8;

#[derive(Clone, Debug, Default)]
struct JoinState {
    members: Vec<WorkstationId>,
    last_join: Option<Instant>,
}

/// The imaging proxy over a [`Store`].
#[derive(Debug)]
pub struct ImagingProxy<S: Store> {
    store: S,
    next_task_id: u32,
    live: BTreeMap<WorkstationId, Vec<Live>>,
    joins: Vec<JoinState>,
    applied: u64,
    tasks_built: usize,
}

impl<S: Store> ImagingProxy<S> {
    /// A proxy over `store`, no live tasks.
    pub fn new(store: S) -> Self {
        ImagingProxy {
            store,
            next_task_id: 1,
            live: BTreeMap::new(),
            joins: Vec::new(),
            applied: 0,
            tasks_built: 0,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Put `store` in place of the current store (a reload) and return the
    /// old one. The runtime state stays: live tasks keep their ids (a
    /// report for a task handed out before the reload is still applied,
    /// §4.5) and task ids go on counting; multicast joins follow their
    /// session by name (a session the new store no longer has loses its
    /// joins; a live task that joins it can still be reported).
    pub fn replace_store(&mut self, store: S) -> S {
        let old = core::mem::replace(&mut self.store, store);
        let sessions = self.store.multicast_sessions();
        let moved = |i: usize| {
            old.multicast_sessions()
                .get(i)
                .and_then(|o| sessions.iter().position(|s| s.name == o.name))
        };
        for live in self.live.values_mut().flat_map(|l| l.iter_mut()) {
            if let Decision::Join { session, .. } = &mut live.decision {
                // Gone: an index no decision has, so a new query decides anew.
                *session = moved(*session).unwrap_or(usize::MAX);
            }
        }
        let mut joins = Vec::new();
        for s in self.store.multicast_sessions() {
            let before = old
                .multicast_sessions()
                .iter()
                .position(|o| o.name == s.name)
                .and_then(|i| self.joins.get_mut(i))
                .map(core::mem::take)
                .unwrap_or_default();
            joins.push(before);
        }
        self.joins = joins;
        old
    }

    /// The live task ids of workstation `who`, in order (§4.5).
    pub fn live_tasks(&self, who: &WorkstationId) -> Vec<u32> {
        self.live
            .get(who)
            .map(|l| l.iter().map(|t| t.id).collect())
            .unwrap_or_default()
    }

    /// How many task outcomes (success/failure) have been applied.
    pub fn reports_applied(&self) -> u64 {
        self.applied
    }

    /// Members joined to the multicast session at `index`.
    pub fn joined(&self, index: usize) -> &[WorkstationId] {
        self.joins.get(index).map_or(&[], |j| &j.members[..])
    }

    /// Should the session at `index` start now: `start_members` joined, or
    /// `start_after_secs` elapsed since the last join?
    pub fn session_ready(&self, now: Instant, index: usize) -> bool {
        let (Some(s), Some(j)) = (
            self.store.multicast_sessions().get(index),
            self.joins.get(index),
        ) else {
            return false;
        };
        let Some(last) = j.last_join else {
            return false;
        };
        j.members.len() >= usize::from(s.start_members.max(1))
            || now.saturating_duration_since(last) >= Duration::from_secs(s.start_after_secs.into())
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

    /// The first matching imaging rule: the workstation policy's rules,
    /// then the server policy's.
    pub fn first_matching_rule(
        &self,
        ids: &[WorkstationId],
        facts: &Facts<'_>,
    ) -> Option<&ImagingRule> {
        let pol = self
            .object(ids)
            .and_then(|o| o.policy.as_deref())
            .and_then(|n| self.store.workstation_policy(n));
        pol.map(|p| &p.rules[..])
            .unwrap_or(&[])
            .iter()
            .chain(self.store.server_policy().rules.iter())
            .find(|r| r.when.holds(facts))
    }

    /// Decide the ordered task list (pure: changes nothing). See the
    /// module docs for the order.
    pub fn decide_tasks(&self, ids: &[WorkstationId], facts: &Facts<'_>) -> Vec<Decision> {
        let obj = self.object(ids);
        let rule = self.first_matching_rule(ids, facts);
        let mut out = Vec::new();
        let mut imaging = false;
        let next_boot = obj.is_some_and(|o| o.image_next_boot)
            || facts.pending.has(PendingFlags::IMAGE_NEXT_BOOT);
        if next_boot {
            let chosen = match obj.and_then(|o| o.image.clone()) {
                Some(image) => Some((image, Vec::new(), None)),
                None => rule.map(|r| (r.image.clone(), r.partitions.clone(), Some(r.name.clone()))),
            };
            if let Some((image, partitions, rule)) = chosen {
                out.push(Decision::Restore {
                    image,
                    partitions,
                    forced: true,
                    rule,
                });
                imaging = true;
            }
        }
        if let Some(target) = obj.and_then(|o| o.create_image.clone()) {
            out.push(Decision::Create { target });
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
                            || s.member_rule.as_ref().is_some_and(|c| c.holds(facts)))
                });
            if let Some((i, s)) = session {
                let master = s.master.is_some_and(|m| ids.contains(&m));
                out.push(Decision::Join { session: i, master });
                imaging = true;
            }
        }
        if !imaging {
            if let Some(r) = rule {
                if r.force || facts.base_image != Some(r.image.as_str()) {
                    out.push(Decision::Restore {
                        image: r.image.clone(),
                        partitions: r.partitions.clone(),
                        forced: r.force,
                        rule: Some(r.name.clone()),
                    });
                }
            }
        }
        if obj.is_some_and(|o| o.maintenance) {
            out.push(Decision::Maintenance);
        }
        out
    }

    fn join(&mut self, now: Instant, session: usize, ids: &[WorkstationId]) {
        if self.joins.len() <= session {
            self.joins.resize_with(session + 1, JoinState::default);
        }
        let j = &mut self.joins[session];
        if !ids.iter().any(|id| j.members.contains(id)) {
            if let Some(first) = ids.first() {
                j.members.push(*first);
            }
        }
        j.last_join = Some(now);
    }
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

impl<S: Store> Policy for ImagingProxy<S> {
    fn object_of(&self, id: &WorkstationId) -> Option<WorkstationId> {
        self.store
            .find_workstation(core::slice::from_ref(id))
            .map(|w| w.id)
    }

    fn register<'s>(
        &'s mut self,
        _now: Instant,
        who: &WorkstationId,
        _info: &WorkstationInfo<'_>,
    ) -> Result<InfoAck<'s>, Status> {
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
        _info: &WorkstationInfo<'_>,
    ) -> Result<MenuReply<'s>, Status> {
        let (setting, _) = self.menu_setting(core::slice::from_ref(who));
        let server = self.store.server_policy();
        // §4.4 limits: a store breaking them cannot be answered.
        if server.menu_file.as_ref().is_some_and(|f| f.len() > 128)
            || server
                .menu_entries
                .iter()
                .take(16)
                .any(|e| e.label.len() > 64)
        {
            return Err(Status::ServerError);
        }
        let mut entries = heapless::Vec::new();
        for e in server.menu_entries.iter().take(16) {
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
            entries,
        })
    }

    fn tasks<'s>(
        &'s mut self,
        now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
    ) -> Result<TaskReply<'s>, Status> {
        let ids = [*who];
        let is = image_safe_of(info);
        let decisions = self.decide_tasks(&ids, &facts_of(info, &is));
        // Keep only what fits one reply (§8), before any state changes.
        let server = self.store.server_policy();
        let sessions = self.store.multicast_sessions();
        let mut size = server.environment.as_ref().map_or(0, |e| {
            4 + 3 + e.kernel.len() + e.initrd.len() + e.loader.len()
        });
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
                Decision::Join { session, .. } => {
                    sessions.get(*session).is_none_or(|s| too_long(&s.name))
                }
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
                Decision::Join { session, .. } => {
                    13 + sessions.get(*session).map_or(0, |s| s.name.len())
                }
                Decision::Maintenance => 1 + MAINTENANCE_REASON.len(),
            };
            if size + n > MAX_PAYLOAD_LEN {
                break;
            }
            size += n;
            fitting.push(d);
        }
        // §4.5: a task still decided keeps its id; a new one gets a new id
        // (and only then joins a multicast session); a live task no longer
        // decided is dropped. Only this object's list changes.
        let previous = self.live.remove(who).unwrap_or_default();
        let mut live = Vec::new();
        for d in fitting.into_iter().take(MAX_LIVE_PER_WORKSTATION) {
            let id = match previous.iter().find(|l| l.decision == d) {
                Some(l) => l.id,
                None => {
                    if let Decision::Join { session, .. } = d {
                        self.join(now, session, &ids);
                    }
                    let id = self.next_task_id;
                    self.next_task_id = self.next_task_id.wrapping_add(1).max(1);
                    id
                }
            };
            live.push(Live { id, decision: d });
        }
        self.tasks_built += 1;
        if !live.is_empty() {
            self.live.insert(*who, live);
        }
        let live: &[Live] = self.live.get(who).map_or(&[], |l| &l[..]);
        let server = self.store.server_policy();
        let sessions = self.store.multicast_sessions();
        let mut reply = TaskReply::default();
        for o in live {
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
                    if *master {
                        TaskAction::CreateImage {
                            server: server.image_server,
                            target: &s.name,
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
                    reason: MAINTENANCE_REASON,
                },
            };
            let _ = reply.tasks.push(Task { id: o.id, action });
        }
        if !live.is_empty() {
            reply.environment = server.environment.as_ref().map(|e| Environment {
                fetch: e.fetch,
                kernel: &e.kernel,
                initrd: &e.initrd,
                loader: &e.loader,
            });
        }
        Ok(reply)
    }

    fn report(
        &mut self,
        _now: Instant,
        who: &WorkstationId,
        _info: &WorkstationInfo<'_>,
        report: &TaskReport<'_>,
    ) -> Result<(), Status> {
        let list = self.live.get_mut(who).ok_or(Status::UnknownTask)?;
        let pos = list
            .iter()
            .position(|l| l.id == report.task_id)
            .ok_or(Status::UnknownTask)?;
        match report.outcome {
            Outcome::Progress => return Ok(()),
            Outcome::Success | Outcome::Failure => {}
            Outcome::Unknown(_) => return Err(Status::UnknownTask),
        }
        let done = list.remove(pos);
        if list.is_empty() {
            self.live.remove(who);
        }
        self.applied += 1;
        if report.outcome == Outcome::Success {
            if let Some(w) = self.store.workstation_mut(who) {
                match done.decision {
                    Decision::Restore { image, .. } => {
                        w.last_image = Some(image);
                        w.image_next_boot = false;
                    }
                    Decision::Create { .. } => w.create_image = None,
                    Decision::Maintenance => w.maintenance = false,
                    Decision::Join { .. } => w.image_next_boot = false,
                }
            }
        }
        Ok(())
    }
}
