//! Multicast sessions that start, run and finish
//! (docs/transaction-protocol.md §4.5.1, §4.8.1), with simulated members
//! on the imaging proxy and simulated time; the journal is a real file.
//!
//! - 5 members join → the session starts (ZENworks' default count);
//! - 2 join, then 15 minutes after the last new join → it starts;
//! - a late joiner is refused (default), or put in the next run;
//! - the master gets `CreateImage` to `multicast:<name>`;
//! - every member reports → closed (disabled), nobody joins again, also
//!   after a restart from the journal; `delete`, `keep`, a timeout, and a
//!   changed session reopening;
//! - the TOML keys and their defaults.

use core::net::Ipv4Addr;
use preboot::Instant;
use preboot::driver::policy_store as toml_store;
use preboot::driver::task_journal::restore_proxy;
use preboot::policy::*;
use preboot::transaction::Policy;
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::multicast::{MulticastInfo, MulticastRole, MulticastState};
use std::path::Path;
use std::time::Duration;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
const MASTER: [u8; 6] = [0x00, 0x1b, 0x21, 0, 0, 0x42];
const T0: Instant = Instant::from_secs(1_700_000_000);

fn mac(i: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, i]
}

fn info(m: [u8; 6]) -> WorkstationInfo<'static> {
    let mut wi = WorkstationInfo::default();
    wi.macs.push(m).unwrap();
    wi
}

/// A session "room" for every 52:54:… workstation, with the defaults
/// (start at 5 members or 15 minutes, poll 30 s, disable after a run,
/// refuse late joiners).
fn room() -> MulticastSession {
    let mut s = MulticastSession::new("room", "images/room.img", GROUP, 5000);
    s.member_rule = Some(Condition::MacPrefix(vec![0x52, 0x54]));
    s
}

fn store(s: MulticastSession) -> MemoryStore {
    MemoryStore {
        server: ServerPolicy {
            image_server: SERVER,
            ..ServerPolicy::default()
        },
        multicast: vec![s],
        ..MemoryStore::default()
    }
}

/// What one query told a workstation: its task id and action text, and
/// the TLV 4 of that task.
#[derive(Debug, Clone, PartialEq)]
struct Told {
    id: u32,
    action: String,
    state: MulticastState,
    role: MulticastRole,
    run: u32,
    joined: u16,
    poll_secs: u16,
}

fn ask<P: Policy>(p: &mut P, now: Instant, m: [u8; 6]) -> Option<Told> {
    let wi = info(m);
    let r = p.tasks(now, &WorkstationId::Mac(m), &wi).unwrap();
    assert!(r.tasks.len() <= 1, "{r:?}");
    let t = r.tasks.first()?;
    let action = match &t.action {
        TaskAction::JoinMulticast {
            session,
            group,
            port,
            ..
        } => format!("join {session} {group}:{port}"),
        TaskAction::CreateImage { server, target } => format!("create {target} on {server}"),
        other => format!("{other:?}"),
    };
    let mc: &MulticastInfo<'_> = r
        .multicast
        .iter()
        .find(|m| m.task_id == t.id)
        .expect("TLV 4 for the multicast task");
    assert_eq!((mc.group, mc.port, mc.server), (GROUP, 5000, SERVER));
    assert_eq!(mc.session, "room");
    Some(Told {
        id: t.id,
        action,
        state: mc.state,
        role: mc.role,
        run: mc.run,
        joined: mc.joined,
        poll_secs: mc.poll_secs,
    })
}

fn report<P: Policy>(p: &mut P, now: Instant, m: [u8; 6], id: u32, outcome: Outcome) {
    p.report(
        now,
        &WorkstationId::Mac(m),
        &info(m),
        &TaskReport {
            task_id: id,
            outcome,
            percent: None,
            reason: None,
        },
    )
    .unwrap();
}

fn phase<S: Store, L: TaskLog>(p: &ImagingProxy<S, L>) -> SessionPhase {
    p.session_status(0).unwrap().phase
}

/// §4.8.1: members wait (state waiting, ask again after `poll_secs`)
/// until the 5th joins; then every member of the run learns it started.
/// Asking again while waiting is not a retry (the task is never held).
#[test]
fn five_members_join_then_it_starts() {
    let mut p = ImagingProxy::new(store(room()));
    let mut ids = Vec::new();
    for i in 1..=4u8 {
        let t = ask(&mut p, T0, mac(i)).unwrap();
        assert_eq!(t.action, "join room 239.1.1.1:5000");
        assert_eq!(
            (t.state, t.role, t.run, t.joined, t.poll_secs),
            (
                MulticastState::Waiting,
                MulticastRole::Member,
                1,
                u16::from(i),
                30
            )
        );
        ids.push(t.id);
    }
    // Polling members: same task, not counted, still waiting.
    for _ in 0..5 {
        let t = ask(&mut p, T0 + Duration::from_secs(30), mac(1)).unwrap();
        assert_eq!((t.id, t.state), (ids[0], MulticastState::Waiting));
    }
    let e = &p.task_entries(&WorkstationId::Mac(mac(1)))[0];
    assert_eq!((e.handouts, &e.state), (1, &TaskState::HandedOut));
    assert_eq!(phase(&p), SessionPhase::Gathering);
    let t5 = ask(&mut p, T0 + Duration::from_secs(40), mac(5)).unwrap();
    assert_eq!(
        (t5.state, t5.joined, t5.poll_secs),
        (MulticastState::Started, 5, 0)
    );
    assert!(matches!(phase(&p), SessionPhase::Running { .. }));
    for (i, id) in (1..=4u8).zip(&ids) {
        let t = ask(&mut p, T0 + Duration::from_secs(60), mac(i)).unwrap();
        assert_eq!((t.id, t.state, t.run), (*id, MulticastState::Started, 1));
    }
}

/// §4.8.1: 2 members, then 15 minutes after the last *new* join (a member
/// asking again does not restart the clock) → it starts.
#[test]
fn two_members_then_fifteen_minutes_start_it() {
    let mut p = ImagingProxy::new(store(room()));
    ask(&mut p, T0, mac(1)).unwrap();
    let last = T0 + Duration::from_secs(300);
    ask(&mut p, last, mac(2)).unwrap();
    let t = ask(&mut p, last + Duration::from_secs(600), mac(1)).unwrap();
    assert_eq!(
        t.state,
        MulticastState::Waiting,
        "10 min after the last join"
    );
    let t = ask(&mut p, last + Duration::from_secs(899), mac(2)).unwrap();
    assert_eq!(
        t.state,
        MulticastState::Waiting,
        "14:59 after the last join"
    );
    assert!(!p.session_ready(last + Duration::from_secs(899), 0));
    assert!(p.session_ready(last + Duration::from_secs(900), 0));
    let t = ask(&mut p, last + Duration::from_secs(900), mac(1)).unwrap();
    assert_eq!((t.state, t.joined), (MulticastState::Started, 2));
    let t = ask(&mut p, last + Duration::from_secs(901), mac(2)).unwrap();
    assert_eq!(t.state, MulticastState::Started);
}

/// §4.8.1 `late = "refuse"` (the default, as ZENworks): a workstation
/// that asks after the start gets no task from the session; the run is
/// unchanged.
#[test]
fn a_late_joiner_is_refused_by_default() {
    let mut p = ImagingProxy::new(store(room()));
    for i in 1..=5 {
        ask(&mut p, T0, mac(i)).unwrap();
    }
    assert_eq!(ask(&mut p, T0, mac(6)), None, "refused: no task");
    assert_eq!(p.session_status(0).unwrap().joined, 5);
    assert_eq!(
        ask(&mut p, T0, mac(3)).unwrap().state,
        MulticastState::Started
    );
}

/// §4.8.1 `late = "next"`: the late joiner waits for run 2, which gathers
/// when run 1 ends (the session is not closed while someone waits), and
/// starts 15 minutes later; then the session is closed.
#[test]
fn a_late_joiner_goes_to_the_next_run_when_configured() {
    let mut s = room();
    s.late = LateJoin::NextRun;
    let mut p = ImagingProxy::new(store(s));
    let ids: Vec<u32> = (1..=5)
        .map(|i| ask(&mut p, T0, mac(i)).unwrap().id)
        .collect();
    let late = ask(&mut p, T0, mac(6)).unwrap();
    assert_eq!(
        (late.state, late.run, late.joined),
        (MulticastState::Waiting, 2, 1)
    );
    for (i, id) in (1..=5u8).zip(&ids) {
        report(
            &mut p,
            T0 + Duration::from_secs(60),
            mac(i),
            *id,
            Outcome::Success,
        );
    }
    let st = p.session_status(0).unwrap();
    assert_eq!(
        (st.phase, st.run, st.joined),
        (SessionPhase::Gathering, 2, 1)
    );
    assert_eq!(
        ask(&mut p, T0 + Duration::from_secs(61), mac(1)),
        None,
        "done"
    );
    let t = ask(&mut p, T0 + Duration::from_secs(120), mac(6)).unwrap();
    assert_eq!(
        (t.id, t.state, t.run),
        (late.id, MulticastState::Waiting, 2)
    );
    let t = ask(&mut p, T0 + Duration::from_secs(60 + 900), mac(6)).unwrap();
    assert_eq!((t.state, t.run), (MulticastState::Started, 2));
    report(
        &mut p,
        T0 + Duration::from_secs(2000),
        mac(6),
        t.id,
        Outcome::Success,
    );
    assert_eq!(phase(&p), SessionPhase::Closed(AfterRun::Disable));
}

/// §4.5.1: the master gets `CreateImage` with target
/// `multicast:<session name>` (role master; the members' image is that
/// target too), and the run does not start before the master joined.
#[test]
fn the_master_uploads_to_multicast_name_and_the_run_waits_for_it() {
    let mut s = room();
    s.image = None;
    s.master = Some(WorkstationId::Mac(MASTER));
    let mut p = ImagingProxy::new(store(s));
    for i in 1..=5 {
        ask(&mut p, T0, mac(i)).unwrap();
    }
    assert_eq!(phase(&p), SessionPhase::Gathering, "no master yet");
    let wi = info(MASTER);
    let r = p.tasks(T0, &WorkstationId::Mac(MASTER), &wi).unwrap();
    assert_eq!(
        r.tasks[0].action,
        TaskAction::CreateImage {
            server: SERVER,
            target: "multicast:room"
        }
    );
    assert_eq!(r.multicast[0].role, MulticastRole::Master);
    assert_eq!(r.multicast[0].image, "multicast:room");
    assert_eq!(r.multicast[0].state, MulticastState::Started);
    drop(r);
    let wi = info(mac(1));
    let r = p.tasks(T0, &WorkstationId::Mac(mac(1)), &wi).unwrap();
    assert_eq!(r.multicast[0].image, "multicast:room");
    assert_eq!(r.multicast[0].state, MulticastState::Started);
}

/// §4.8.1: every member reports (success or failure) → the run ends and
/// the session is disabled; nobody joins it again on the next query, and
/// after a restart from the journal (a real file) it is still disabled.
#[test]
fn all_report_then_disabled_and_nobody_rejoins_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("tasks.journal");
    let mut p = restore_proxy(store(room()), Some(&journal), 3).unwrap();
    let ids: Vec<u32> = (1..=5)
        .map(|i| ask(&mut p, T0, mac(i)).unwrap().id)
        .collect();
    for (i, id) in (1..=5u8).zip(&ids) {
        assert_ne!(phase(&p), SessionPhase::Closed(AfterRun::Disable));
        let outcome = if i == 5 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        report(&mut p, T0 + Duration::from_secs(600), mac(i), *id, outcome);
    }
    assert_eq!(phase(&p), SessionPhase::Closed(AfterRun::Disable));
    for i in 1..=6 {
        assert_eq!(
            ask(&mut p, T0 + Duration::from_secs(700), mac(i)),
            None,
            "{i}"
        );
    }
    drop(p);
    let mut p = restore_proxy(store(room()), Some(&journal), 3).unwrap();
    assert_eq!(phase(&p), SessionPhase::Closed(AfterRun::Disable));
    for i in 1..=6 {
        assert_eq!(
            ask(&mut p, T0 + Duration::from_secs(800), mac(i)),
            None,
            "{i}"
        );
    }
    // Compacted at the restart: still closed after a second one.
    drop(p);
    let p = restore_proxy(store(room()), Some(&journal), 3).unwrap();
    assert_eq!(phase(&p), SessionPhase::Closed(AfterRun::Disable));
}

/// §4.8.1 `after = "disable"`: a closed session runs again once its
/// settings change (here: disabled and enabled again, over two reloads).
#[test]
fn a_disabled_session_runs_again_when_its_settings_change() {
    let mut p = ImagingProxy::new(store(room()));
    let ids: Vec<u32> = (1..=5)
        .map(|i| ask(&mut p, T0, mac(i)).unwrap().id)
        .collect();
    for (i, id) in (1..=5u8).zip(&ids) {
        report(&mut p, T0, mac(i), *id, Outcome::Success);
    }
    assert_eq!(phase(&p), SessionPhase::Closed(AfterRun::Disable));
    p.replace_store(T0, store(room())).unwrap();
    assert_eq!(
        phase(&p),
        SessionPhase::Closed(AfterRun::Disable),
        "same settings"
    );
    let mut off = room();
    off.enabled = false;
    p.replace_store(T0, store(off)).unwrap();
    p.replace_store(T0, store(room())).unwrap();
    assert_eq!(phase(&p), SessionPhase::Gathering);
    let t = ask(&mut p, T0, mac(1)).unwrap();
    assert_eq!((t.state, t.run), (MulticastState::Waiting, 1));
}

/// §4.8.1 `after = "delete"`: closed while a session of that name is in
/// the store, whatever its settings; removed from the store and added
/// again, it runs again.
#[test]
fn a_deleted_session_stays_closed_while_its_name_is_there() {
    let mut s = room();
    s.after = AfterRun::Delete;
    s.start_members = 1;
    let mut p = ImagingProxy::new(store(s.clone()));
    let t = ask(&mut p, T0, mac(1)).unwrap();
    report(&mut p, T0, mac(1), t.id, Outcome::Success);
    assert_eq!(phase(&p), SessionPhase::Closed(AfterRun::Delete));
    let mut changed = s.clone();
    changed.port = 5001;
    p.replace_store(T0, store(changed)).unwrap();
    assert_eq!(ask(&mut p, T0, mac(2)), None);
    p.replace_store(T0, MemoryStore::default()).unwrap();
    p.replace_store(T0, store(s)).unwrap();
    assert_eq!(
        ask(&mut p, T0, mac(2)).unwrap().state,
        MulticastState::Started
    );
}

/// §4.8.1 `after = "keep"`: the next run gathers; members that reported
/// success never join again, a member that failed does.
#[test]
fn a_kept_session_gathers_again_without_the_members_done() {
    let mut s = room();
    s.after = AfterRun::Keep;
    s.start_members = 2;
    let mut p = ImagingProxy::new(store(s));
    let a = ask(&mut p, T0, mac(1)).unwrap();
    let b = ask(&mut p, T0, mac(2)).unwrap();
    assert_eq!(b.state, MulticastState::Started);
    report(&mut p, T0, mac(1), a.id, Outcome::Success);
    report(&mut p, T0, mac(2), b.id, Outcome::Failure);
    let st = p.session_status(0).unwrap();
    assert_eq!((st.phase, st.run, st.done), (SessionPhase::Gathering, 2, 1));
    assert_eq!(ask(&mut p, T0, mac(1)), None, "done");
    let again = ask(&mut p, T0, mac(2)).unwrap();
    assert_eq!(
        (again.state, again.run, again.joined),
        (MulticastState::Waiting, 2, 1)
    );
}

/// §4.8.1 `timeout_secs`: a run that is not finished that long after its
/// start ends at the next query (members that did not report are done
/// with it: their tasks are dropped).
#[test]
fn a_run_past_its_timeout_ends() {
    let mut s = room();
    s.start_members = 2;
    s.timeout_secs = 3600;
    let mut p = ImagingProxy::new(store(s));
    let a = ask(&mut p, T0, mac(1)).unwrap();
    ask(&mut p, T0, mac(2)).unwrap();
    report(&mut p, T0, mac(1), a.id, Outcome::Success);
    assert!(ask(&mut p, T0 + Duration::from_secs(3599), mac(2)).is_some());
    assert_eq!(ask(&mut p, T0 + Duration::from_secs(3600), mac(2)), None);
    assert_eq!(phase(&p), SessionPhase::Closed(AfterRun::Disable));
    assert!(p.live_tasks(&WorkstationId::Mac(mac(2))).is_empty());
}

/// §4.8.1 the TOML keys: ZENworks' defaults (5 members, 15 minutes) when
/// absent, `after` and `late` by name, and refusals naming the field.
#[test]
fn toml_keys_and_defaults() {
    let base =
        "[[multicast]]\nname = \"room\"\nimage = \"i.img\"\ngroup = \"239.1.1.1\"\nport = 5000\n";
    let s = toml_store::parse(Path::new("p.toml"), base).unwrap();
    let m = &s.multicast[0];
    assert_eq!(
        (
            m.start_members,
            m.start_after_secs,
            m.poll_secs,
            m.timeout_secs,
            m.after,
            m.late
        ),
        (5, 900, 30, 14_400, AfterRun::Disable, LateJoin::Refuse)
    );
    let s = toml_store::parse(
        Path::new("p.toml"),
        &format!("{base}after = \"keep\"\nlate = \"next\"\npoll_secs = 5\ntimeout_secs = 0\n"),
    )
    .unwrap();
    let m = &s.multicast[0];
    assert_eq!(
        (m.after, m.late, m.poll_secs, m.timeout_secs),
        (AfterRun::Keep, LateJoin::NextRun, 5, 0)
    );
    for (extra, field) in [
        ("after = \"forever\"\n", "multicast.after"),
        ("late = \"maybe\"\n", "multicast.late"),
        ("poll_secs = 0\n", "multicast.poll_secs"),
        ("start_members = 0\nstart_after_secs = 0\n", "never start"),
    ] {
        let e = toml_store::parse(Path::new("p.toml"), &format!("{base}{extra}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.toml:") && e.contains(field), "{extra}: {e}");
    }
}
