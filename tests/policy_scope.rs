//! When a disk can be overwritten (docs/policy.md, "When can a restore
//! happen?"; issue 15 "Rule scope", "capture before restore", the pending
//! flags, "no re-image loop"; notes §1.3–1.5), through the transaction
//! server's view of the policy ([`Policy::tasks`], [`Policy::report`],
//! [`Policy::menu`]) with image-safe data as the preboot client sends it
//! (a real record, a damaged one, none).

use core::net::Ipv4Addr;
use preboot::Instant;
use preboot::policy::*;
use preboot::transaction::Policy;
use preboot::wire::image_safe::{ImageSafe, PendingFlags, SLOT_LEN};
use preboot::wire::transaction::messages::*;

const REG: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01];
const UNREG: [u8; 6] = [0xaa, 0xbb, 0xcc, 0, 0, 0x09];
const T0: Instant = Instant::from_secs(1_000);

fn id(mac: [u8; 6]) -> WorkstationId {
    WorkstationId::Mac(mac)
}

fn rule(name: &str, when: Condition, image: &str) -> ImagingRule {
    ImagingRule {
        name: name.into(),
        when,
        image: image.into(),
        force: false,
        partitions: vec![],
    }
}

/// No image on the disk (`base_image = ""`): the demo's server rule.
fn no_image() -> Condition {
    Condition::BaseImage(None)
}

/// REG is registered (policy "lab", nothing asked). The lab policy's rule
/// and the server's both match a disk with no image.
fn store() -> MemoryStore {
    let mut o = WorkstationObject::new(id(REG), "pc-01");
    o.policy = Some("lab".into());
    MemoryStore {
        server: ServerPolicy {
            rules: vec![rule("no image yet", no_image(), "images/standard.img")],
            image_server: Ipv4Addr::new(10, 0, 0, 5),
            upload_target: Some("uploads/{name}-{id}.img".into()),
            menu_entries: vec![
                MenuEntrySpec {
                    kind: MenuEntry::AUTOMATIC,
                    label: "Automatic".into(),
                },
                MenuEntrySpec {
                    kind: MenuEntry::DISABLE_IMAGING_PARTITION,
                    label: "Disable the imaging partition".into(),
                },
                MenuEntrySpec {
                    kind: MenuEntry::ENABLE_IMAGING_PARTITION,
                    label: "Enable the imaging partition".into(),
                },
            ],
            ..ServerPolicy::default()
        },
        workstations: vec![o],
        policies: vec![WorkstationPolicy {
            name: "lab".into(),
            menu: None,
            menu_entries: None,
            rules: vec![rule("lab any", Condition::All(vec![]), "images/lab.img")],
        }],
        multicast: vec![],
    }
}

/// The image-safe record as the client sends it (§4.3 TLV 10).
fn record(base: Option<&str>, flags: u32) -> Vec<u8> {
    let rec = ImageSafe {
        base_image: base,
        pending: PendingFlags(flags),
        generation: 3,
        ..ImageSafe::default()
    };
    let mut buf = [0u8; SLOT_LEN];
    let n = rec.emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn info<'a>(mac: [u8; 6], image_safe: Option<&'a [u8]>) -> WorkstationInfo<'a> {
    let mut wi = WorkstationInfo::default();
    wi.macs.push(mac).unwrap();
    wi.arch = Some(7);
    wi.image_safe = image_safe;
    wi
}

/// The tasks handed out, as text.
fn tasks<L: TaskLog>(
    p: &mut ImagingProxy<MemoryStore, L>,
    mac: [u8; 6],
    image_safe: Option<&[u8]>,
) -> Vec<(u32, String)> {
    let wi = info(mac, image_safe);
    let reply = p.tasks(T0, &id(mac), &wi).unwrap();
    reply
        .tasks
        .iter()
        .map(|t| {
            let what = match &t.action {
                TaskAction::RestoreImage { image, .. } => format!("restore {image}"),
                TaskAction::CreateImage { target, .. } => format!("create {target}"),
                TaskAction::JoinMulticast { session, .. } => format!("join {session}"),
                TaskAction::Maintenance { reason } => format!("maintenance: {reason}"),
                other => format!("{other:?}"),
            };
            (t.id, what)
        })
        .collect()
}

fn what(t: &[(u32, String)]) -> Vec<&str> {
    t.iter().map(|(_, w)| w.as_str()).collect()
}

fn report<L: TaskLog>(
    p: &mut ImagingProxy<MemoryStore, L>,
    mac: [u8; 6],
    task: u32,
    outcome: Outcome,
) {
    let wi = info(mac, None);
    let r = TaskReport {
        task_id: task,
        outcome,
        percent: None,
        reason: (outcome == Outcome::Failure).then_some("upload refused"),
    };
    p.report(T0, &id(mac), &wi, &r).unwrap();
}

/// Rule scope: a registered workstation that is not flagged gets no
/// restore when its image-safe data is missing, although a rule of its
/// workstation policy and one of the server policy match a disk with no
/// image (before: a restore of `images/lab.img`).
#[test]
fn registered_unflagged_with_image_safe_missing_gets_no_restore() {
    let mut p = ImagingProxy::new(store());
    assert_eq!(what(&tasks(&mut p, REG, None)), Vec::<&str>::new());
    // Nor with a valid record naming another image.
    let rec = record(Some("images/old.img"), 0);
    assert_eq!(what(&tasks(&mut p, REG, Some(&rec))), Vec::<&str>::new());
}

/// Rule scope: damaged image-safe bytes (a torn write: the CRC does not
/// check) read as "no image" — and still no restore for a registered,
/// unflagged workstation (before: a restore).
#[test]
fn registered_unflagged_with_damaged_image_safe_gets_no_restore() {
    let mut p = ImagingProxy::new(store());
    let mut rec = record(Some("images/lab.img"), PendingFlags::IMAGE_NEXT_BOOT);
    let last = rec.len() - 1;
    rec[last] ^= 0x55;
    assert!(ImageSafe::parse(&rec).is_err());
    assert_eq!(what(&tasks(&mut p, REG, Some(&rec))), Vec::<&str>::new());
    // Damaged bytes carry no flag either: the same for a garbage record.
    let garbage = [0x42u8; 64];
    assert_eq!(
        what(&tasks(&mut p, REG, Some(&garbage))),
        Vec::<&str>::new()
    );
}

/// Rule scope: an unregistered workstation gets the server policy's
/// image (how a new machine gets its first image), and never a
/// workstation policy's.
#[test]
fn unregistered_gets_the_server_rule_and_never_a_policy_rule() {
    let mut p = ImagingProxy::new(store());
    assert_eq!(
        what(&tasks(&mut p, UNREG, None)),
        ["restore images/standard.img"]
    );
    // Without server rules, the lab policy's match-everything rule does
    // not reach it.
    let mut st = store();
    st.server.rules.clear();
    let mut p = ImagingProxy::new(st);
    assert_eq!(what(&tasks(&mut p, UNREG, None)), Vec::<&str>::new());
}

/// Rule scope: a registered workstation flagged "image on next boot" with
/// no image of its own gets the first matching rule of its workstation
/// policy — the server policy's rules do not apply to it, even when its
/// policy has none that matches.
#[test]
fn flagged_without_image_gets_its_policy_rule_not_the_servers() {
    let mut st = store();
    st.workstations[0].image_next_boot = true;
    let mut p = ImagingProxy::new(st.clone());
    assert_eq!(what(&tasks(&mut p, REG, None)), ["restore images/lab.img"]);
    // The image-safe flag works like the attribute.
    let mut p = ImagingProxy::new(store());
    let rec = record(Some("images/lab.img"), PendingFlags::IMAGE_NEXT_BOOT);
    assert_eq!(
        what(&tasks(&mut p, REG, Some(&rec))),
        ["restore images/lab.img"]
    );
    // No policy rule matches: nothing (the server rule would).
    st.policies[0].rules[0].when = Condition::Arch(0);
    let mut p = ImagingProxy::new(st);
    assert_eq!(what(&tasks(&mut p, REG, None)), Vec::<&str>::new());
}

/// Order: with both "create an image" and "image on next boot", the
/// capture is handed out alone; a failed capture is retried and the
/// restore still waits; only after the capture succeeded is the restore
/// handed out (never `[Restore, Create]`, before: restore first).
#[test]
fn capture_comes_before_restore_and_only_a_success_lets_it_run() {
    let mut st = store();
    st.workstations[0].image_next_boot = true;
    st.workstations[0].image = Some("images/new.img".into());
    st.workstations[0].create_image = Some("uploads/pc-01-before.img".into());
    let mut p = ImagingProxy::new(st);
    let t = tasks(&mut p, REG, None);
    assert_eq!(what(&t), ["create uploads/pc-01-before.img"]);
    report(&mut p, REG, t[0].0, Outcome::Failure);
    let again = tasks(&mut p, REG, None);
    assert_eq!(again, t, "the same capture, retried; no restore");
    report(&mut p, REG, t[0].0, Outcome::Success);
    let next = tasks(&mut p, REG, None);
    assert_eq!(what(&next), ["restore images/new.img"]);
    assert_ne!(next[0].0, t[0].0);
}

/// The pending flags of the image-safe data (§10.2 field 10): create →
/// a capture to the server policy's `upload_target`; maintenance →
/// maintenance; imaging partition disabled → no image from a rule alone,
/// and the menu offers to enable it (not to disable it again).
#[test]
fn pending_flags_are_honoured() {
    let mut p = ImagingProxy::new(store());
    // Create, for a registered and an unregistered workstation: the
    // template filled in; the restore an unregistered one would get waits.
    let create = record(Some("images/x.img"), PendingFlags::CREATE_IMAGE);
    assert_eq!(
        what(&tasks(&mut p, REG, Some(&create))),
        ["create uploads/pc-01-525400000001.img"]
    );
    let create_blank = record(None, PendingFlags::CREATE_IMAGE);
    assert_eq!(
        what(&tasks(&mut p, UNREG, Some(&create_blank))),
        ["create uploads/aabbcc000009-aabbcc000009.img"]
    );
    // Without an upload target the capture cannot be honoured — and the
    // restore is held back all the same.
    let mut st = store();
    st.server.upload_target = None;
    let mut q = ImagingProxy::new(st);
    assert_eq!(
        what(&tasks(&mut q, UNREG, Some(&create_blank))),
        Vec::<&str>::new()
    );
    // Maintenance.
    let maint = record(Some("images/x.img"), PendingFlags::MAINTENANCE);
    assert_eq!(
        what(&tasks(&mut p, REG, Some(&maint))),
        ["maintenance: requested by the workstation's image-safe data"]
    );
    // Imaging partition disabled: an unregistered workstation is not
    // imaged by the server rule…
    let off = record(None, PendingFlags::IMAGING_PARTITION_DISABLED);
    let mut p = ImagingProxy::new(store());
    assert_eq!(what(&tasks(&mut p, UNREG, Some(&off))), Vec::<&str>::new());
    // … unless it asks itself (image on next boot).
    let off_asked = record(
        None,
        PendingFlags::IMAGING_PARTITION_DISABLED | PendingFlags::IMAGE_NEXT_BOOT,
    );
    assert_eq!(
        what(&tasks(&mut p, UNREG, Some(&off_asked))),
        ["restore images/standard.img"]
    );
    // The menu offers the switch the way it can go.
    let kinds = |p: &mut ImagingProxy<MemoryStore>, isd: Option<&[u8]>| -> Vec<u8> {
        let wi = info(UNREG, isd);
        let m = p.menu(T0, &id(UNREG), &wi).unwrap();
        m.entries.iter().map(|e| e.kind).collect()
    };
    assert_eq!(
        kinds(&mut p, Some(&off)),
        [MenuEntry::AUTOMATIC, MenuEntry::ENABLE_IMAGING_PARTITION]
    );
    assert_eq!(
        kinds(&mut p, None),
        [MenuEntry::AUTOMATIC, MenuEntry::DISABLE_IMAGING_PARTITION]
    );
}

/// No re-image loop: an unregistered workstation restored by a server
/// rule, whose client did not record the image in its image-safe data
/// (still none), is not handed the same restore on the next boot — nor
/// after a restart from the records (before: restored on every boot).
/// Even a forced rule restores once; another image is a new request.
#[test]
fn no_reimage_loop_after_a_rule_restore() {
    for force in [false, true] {
        let mut st = store();
        st.server.rules[0].force = force;
        let mut p = ImagingProxy::with_log(st.clone(), MemoryLog::default(), 3);
        let t = tasks(&mut p, UNREG, None);
        assert_eq!(what(&t), ["restore images/standard.img"]);
        report(&mut p, UNREG, t[0].0, Outcome::Success);
        assert_eq!(
            what(&tasks(&mut p, UNREG, None)),
            Vec::<&str>::new(),
            "force {force}"
        );
        // A restart: the success still holds (no object to clear).
        let records = p.log().records.clone();
        let (mut q, forgotten) =
            ImagingProxy::restore(st.clone(), MemoryLog::default(), 3, 1, &records).unwrap();
        assert!(forgotten.is_empty(), "{forgotten:?}");
        assert_eq!(what(&tasks(&mut q, UNREG, None)), Vec::<&str>::new());
        // The server rule names another image: a new request.
        let mut other = st.clone();
        other.server.rules[0].image = "images/standard-v2.img".into();
        q.replace_store(T0, other).unwrap();
        assert_eq!(
            what(&tasks(&mut q, UNREG, None)),
            ["restore images/standard-v2.img"]
        );
    }
}

/// Task history: every record names the server that wrote it; the
/// proxy's history lists them, per workstation too, and survives a
/// restart from the records.
#[test]
fn history_names_the_server() {
    let mut st = store();
    st.workstations[0].image_next_boot = true;
    let mut p = ImagingProxy::with_log(st.clone(), MemoryLog::default(), 3);
    p.set_server_name("imaging-1");
    let t = tasks(&mut p, REG, None);
    report(&mut p, REG, t[0].0, Outcome::Progress);
    p.set_server_name("imaging-2");
    report(&mut p, REG, t[0].0, Outcome::Success);
    tasks(&mut p, UNREG, None);
    let h: Vec<(WorkstationId, u32, Option<&str>)> = p
        .history()
        .map(|r| (r.object, r.task, r.server.as_deref()))
        .collect();
    assert_eq!(
        h,
        [
            (id(REG), t[0].0, Some("imaging-1")),
            (id(REG), t[0].0, Some("imaging-1")),
            (id(REG), t[0].0, Some("imaging-2")),
            (id(UNREG), t[0].0 + 1, Some("imaging-2")),
        ]
    );
    assert_eq!(p.history_of(&id(REG)).count(), 3);
    assert!(matches!(
        p.history_of(&id(REG)).last().map(|r| &r.event),
        Some(TaskEvent::Succeeded { .. })
    ));
    let records = p.log().records.clone();
    let (q, _) = ImagingProxy::restore(st, MemoryLog::default(), 3, 1, &records).unwrap();
    assert_eq!(q.history().count(), 4);
    assert_eq!(
        q.task_entries(&id(UNREG))[0].server.as_deref(),
        Some("imaging-2")
    );
}
