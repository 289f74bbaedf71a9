//! The imaging policy (docs/transaction-protocol.md §4.3–§4.6, the
//! "imaging proxy") on arbitrary workstation information, stores and
//! rules: evaluation never panics, and its results are consistent —
//! the menu setting comes from the source it names (object → workstation
//! policy → server policy → default), the matching rule is the first that
//! holds, decisions are deterministic, never restore an image already on
//! the disk unless forced, join only enabled sessions the workstation
//! belongs to, and the task reply always fits a frame.
#![no_main]

use std::net::Ipv4Addr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use preboot::Instant;
use preboot::policy::{
    Cmp, Condition, Decision, EnvironmentSpec, Facts, MenuEntrySpec, ImagingProxy, ImagingRule, MemoryStore, MenuSetting,
    MenuSource, MulticastSession, AfterRun, LateJoin, TextAttr, TextOp, WorkstationId, WorkstationObject, WorkstationPolicy, identities,
};
use preboot::transaction::Policy;
use preboot::wire::image_safe::{ImageSafe, PendingFlags};
use preboot::wire::transaction::messages::{
    Fetch, Hotkey, IpConfig, MenuMode, NetMode, Nic, Outcome, PciId, Smbios, TaskAction, TaskReport,
    WorkstationInfo,
};
use preboot::wire::transaction::{Header, MAX_FRAME_LEN, MessageType, Status, emit_frame};

#[derive(Arbitrary, Debug, Clone)]
enum ACond {
    All(Vec<ACond>),
    Any(Vec<ACond>),
    Not(Box<ACond>),
    Ram(u8, u64),
    Disk(u8, u64),
    Cpu(u8, u64),
    Model(String),
    Mac(Vec<u8>),
    Subnet([u8; 4], u8),
    Arch(u16),
    Pci(u16, Option<u16>),
    Base(Option<u8>),
    Text(u8, u8, String),
}

const IMAGES: [&str; 4] = ["images/a.img", "images/b.img", "images/c.img", ""];

fn cmp(c: u8) -> Cmp {
    [Cmp::Lt, Cmp::Le, Cmp::Eq, Cmp::Ne, Cmp::Ge, Cmp::Gt][usize::from(c) % 6]
}

fn cond(c: &ACond, depth: usize) -> Condition {
    if depth > 12 {
        return Condition::All(Vec::new());
    }
    let list = |v: &Vec<ACond>| v.iter().take(8).map(|c| cond(c, depth + 1)).collect();
    match c {
        ACond::All(v) => Condition::All(list(v)),
        ACond::Any(v) => Condition::Any(list(v)),
        ACond::Not(c) => Condition::Not(Box::new(cond(c, depth + 1))),
        ACond::Ram(o, n) => Condition::RamMb(cmp(*o), *n),
        ACond::Disk(o, n) => Condition::DiskMb(cmp(*o), *n),
        ACond::Cpu(o, n) => Condition::CpuCount(cmp(*o), *n),
        ACond::Model(s) => Condition::CpuModel(s.clone()),
        ACond::Mac(p) => Condition::MacPrefix(p.iter().take(6).copied().collect()),
        ACond::Subnet(a, p) => Condition::IpSubnet { network: Ipv4Addr::from(*a), prefix: *p },
        ACond::Arch(a) => Condition::Arch(*a),
        ACond::Pci(v, d) => Condition::Pci { vendor: *v, device: *d },
        ACond::Base(b) => Condition::BaseImage(b.map(|i| IMAGES[usize::from(i) % 3].to_string())),
        ACond::Text(a, o, v) => Condition::Text {
            attribute: TextAttr::ALL[usize::from(*a) % TextAttr::ALL.len()],
            op: TextOp::ALL[usize::from(*o) % TextOp::ALL.len()],
            value: v.clone(),
        },
    }
}

/// An image name: one of a few (so rules and the disk's base image
/// meet), or any string (also longer than a task string may be).
#[derive(Arbitrary, Debug, Clone)]
enum AName {
    Known(u8),
    Any(String),
}

impl AName {
    fn get(&self) -> String {
        match self {
            AName::Known(i) => IMAGES[usize::from(*i) % 3].to_string(),
            AName::Any(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct ARule {
    when: ACond,
    image: AName,
    force: bool,
    partitions: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct AMenu {
    mode: u8,
    modifiers: u8,
    key: u8,
    wait_ms: u32,
}

#[derive(Arbitrary, Debug)]
struct AObject {
    mac_last: u8,
    by_uuid: bool,
    policy: Option<u8>,
    menu: Option<AMenu>,
    image_next_boot: bool,
    image: Option<AName>,
    create: Option<AName>,
    maintenance: bool,
}

#[derive(Arbitrary, Debug)]
struct ASession {
    name: AName,
    enabled: bool,
    master: Option<u8>,
    members: Vec<u8>,
    rule: Option<ACond>,
    start_members: u16,
    start_after_secs: u32,
}

#[derive(Arbitrary, Debug)]
struct AInfo {
    macs: Vec<u8>,
    uuid: Option<[u8; 16]>,
    arch: Option<u16>,
    cpu_model: Option<String>,
    cpu_count: Option<u16>,
    ram_mb: Option<u32>,
    disks: Vec<u32>,
    nics: Vec<(u8, u16, u16)>,
    pci: Vec<(u16, u16)>,
    ip: Option<[u8; 4]>,
    base_image: Option<u8>,
    pending: u32,
    with_record: bool,
    /// SMBIOS strings (TLVs 20–26) and chassis type (27).
    smbios: [Option<String>; 7],
    chassis_type: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    server_menu: Option<AMenu>,
    menu_file: Option<String>,
    menu_entries: Vec<(u8, String)>,
    environment: Option<(u8, String, String, String)>,
    server_rules: Vec<ARule>,
    policies: Vec<(Option<AMenu>, Vec<ARule>)>,
    objects: Vec<AObject>,
    sessions: Vec<ASession>,
    info: AInfo,
    reports: Vec<(u8, u8)>,
    /// The menu choice of the `TaskQuery` (§4.5 TLV 1).
    choice: Option<u8>,
    /// An IP pool: last octets of 10.0.0.x, first and last.
    pool: Option<(u8, u8)>,
}

const UUID: [u8; 16] = [0xAB; 16];

fn mac(last: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, last % 6]
}

fn menu(m: &AMenu) -> MenuSetting {
    MenuSetting {
        mode: MenuMode::from(m.mode % 4),
        hotkey: Hotkey { modifiers: m.modifiers, key: m.key },
        wait_ms: m.wait_ms,
    }
}

fn rules(v: &[ARule], tag: &str) -> Vec<ImagingRule> {
    v.iter()
        .take(8)
        .enumerate()
        .map(|(i, r)| ImagingRule {
            name: format!("{tag}{i}"),
            when: cond(&r.when, 0),
            image: r.image.get(),
            force: r.force,
            partitions: r.partitions.iter().take(16).copied().collect(),
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let mut store = MemoryStore::default();
    store.server.menu = input.server_menu.as_ref().map(menu);
    store.server.rules = rules(&input.server_rules, "server");
    store.server.image_server = Ipv4Addr::new(10, 0, 0, 5);
    store.server.ip_pool = input.pool.map(|(a, b)| preboot::policy::IpPool {
        first: Ipv4Addr::new(10, 0, 0, a),
        last: Ipv4Addr::new(10, 0, 0, b),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        dns: Vec::new(),
    });
    store.server.menu_file = input.menu_file.clone();
    store.server.menu_entries = input
        .menu_entries
        .iter()
        .take(20)
        .map(|(k, l)| MenuEntrySpec { kind: *k, label: l.clone() })
        .collect();
    store.server.environment = input.environment.as_ref().map(|(f, k, i, l)| EnvironmentSpec {
        fetch: Fetch::from(*f % 3),
        kernel: k.clone(),
        initrd: i.clone(),
        loader: l.clone(),
    });
    for (i, (m, r)) in input.policies.iter().take(4).enumerate() {
        store.policies.push(WorkstationPolicy {
            name: format!("p{i}"),
            menu: m.as_ref().map(menu),
            rules: rules(r, &format!("p{i}.")),
            menu_entries: None,
        });
    }
    for o in input.objects.iter().take(8) {
        let id = if o.by_uuid { WorkstationId::Uuid(UUID) } else { WorkstationId::Mac(mac(o.mac_last)) };
        if store.workstations.iter().any(|w| w.id == id) {
            continue;
        }
        let mut w = WorkstationObject::new(id, "ws");
        // A dangling policy name (no such policy) must be tolerated.
        w.policy = o.policy.map(|p| format!("p{}", p % 6));
        w.menu = o.menu.as_ref().map(menu);
        w.image_next_boot = o.image_next_boot;
        w.image = o.image.as_ref().map(AName::get);
        w.create_image = o.create.as_ref().map(AName::get);
        w.maintenance = o.maintenance;
        store.workstations.push(w);
    }
    for (i, s) in input.sessions.iter().take(4).enumerate() {
        store.multicast.push(MulticastSession {
            name: match &s.name {
                AName::Known(_) => format!("s{i}"),
                n => n.get(),
            },
            enabled: s.enabled,
            image: s.master.is_none().then(|| IMAGES[0].to_string()),
            master: s.master.map(|m| WorkstationId::Mac(mac(m))),
            members: s.members.iter().take(8).map(|m| WorkstationId::Mac(mac(*m))).collect(),
            member_rule: s.rule.as_ref().map(|c| cond(c, 0)),
            group: Ipv4Addr::new(239, 1, 1, 1),
            port: 5000,
            start_members: s.start_members,
            start_after_secs: s.start_after_secs,
            poll_secs: 30,
            timeout_secs: s.start_after_secs / 2,
            after: [AfterRun::Disable, AfterRun::Delete, AfterRun::Keep][usize::from(s.start_members % 3)],
            late: if s.enabled && s.start_members % 2 == 0 { LateJoin::NextRun } else { LateJoin::Refuse },
        });
    }

    // The workstation information, with its image-safe record.
    let a = &input.info;
    let mut record = ImageSafe::default();
    record.base_image = a.base_image.map(|i| IMAGES[usize::from(i) % 4]);
    record.pending = PendingFlags(a.pending);
    let mut slot = [0u8; 1024];
    let rec_len = record.emit(&mut slot).expect("small record");
    let mut info = WorkstationInfo::default();
    for m in a.macs.iter().take(16) {
        let _ = info.macs.push(mac(*m));
    }
    if info.macs.is_empty() {
        let _ = info.macs.push(mac(0));
    }
    info.uuid = a.uuid.map(|u| if u[0] & 1 == 0 { UUID } else { u });
    info.arch = a.arch;
    info.cpu_model = a.cpu_model.as_deref().filter(|s| s.len() <= 64);
    let sm = |i: usize| a.smbios[i].as_deref().filter(|s| s.len() <= 64);
    info.smbios = Smbios {
        manufacturer: sm(0),
        product: sm(1),
        version: sm(2),
        serial: sm(3),
        bios_vendor: sm(4),
        bios_version: sm(5),
        asset_tag: sm(6),
        chassis_type: a.chassis_type,
    };
    info.cpu_count = a.cpu_count;
    info.ram_mb = a.ram_mb;
    for d in a.disks.iter().take(16) {
        let _ = info.disks_mb.push(*d);
    }
    for (m, v, d) in a.nics.iter().take(16) {
        let _ = info.nics.push(Nic { mac: mac(*m), pci: PciId { vendor: *v, device: *d } });
    }
    for (v, d) in a.pci.iter().take(64) {
        let _ = info.pci.push(PciId { vendor: *v, device: *d });
    }
    info.ip = a.ip.map(|ip| IpConfig {
        mode: NetMode::Dhcp,
        address: Ipv4Addr::from(ip),
        netmask: Ipv4Addr::new(255, 255, 0, 0),
        gateway: Ipv4Addr::UNSPECIFIED,
    });
    if a.with_record {
        info.image_safe = Some(&slot[..rec_len]);
    }

    let mut proxy = ImagingProxy::new(store.clone());
    let ids = identities(&info);
    let parsed = info.image_safe.and_then(|b| ImageSafe::parse(b).ok());
    let facts = Facts {
        info: &info,
        base_image: parsed.as_ref().and_then(|r| r.base_image),
        pending: parsed.as_ref().map(|r| r.pending).unwrap_or_default(),
    };

    // Menu precedence: the setting comes from the source it names.
    let obj = store.find_workstation_for_fuzz(&ids);
    let pol = obj.and_then(|o| o.policy.as_deref()).and_then(|n| store.policies.iter().find(|p| p.name == n));
    let (setting, source) = proxy.menu_setting(&ids);
    let want = match (obj.and_then(|o| o.menu), pol.and_then(|p| p.menu), store.server.menu) {
        (Some(m), _, _) => (m, MenuSource::Object),
        (None, Some(m), _) => (m, MenuSource::WorkstationPolicy),
        (None, None, Some(m)) => (m, MenuSource::ServerPolicy),
        (None, None, None) => (MenuSetting::DEFAULT, MenuSource::Default),
    };
    assert_eq!((setting, source), want);

    // First match wins, in the workstation's scope (docs/policy.md): a
    // registered workstation's policy rules, an unregistered one's server
    // rules.
    let all: Vec<&ImagingRule> = match obj {
        Some(_) => pol.map(|p| p.rules.iter().collect::<Vec<_>>()).unwrap_or_default(),
        None => store.server.rules.iter().collect(),
    };
    let first = all.iter().position(|r| r.when.holds(&facts));
    let rule = proxy.first_matching_rule(&ids, &facts);
    assert_eq!(rule.map(|r| &r.name), first.map(|i| &all[i].name));
    for r in &all {
        // NOT is a negation; evaluation is deterministic.
        assert_eq!(Condition::Not(Box::new(r.when.clone())).holds(&facts), !r.when.holds(&facts));
    }

    let decisions = proxy.decide_tasks(&ids, &facts);
    assert_eq!(decisions, proxy.decide_tasks(&ids, &facts), "decisions are pure");
    // docs/policy.md, "When can a restore happen?".
    let flagged = obj.is_some_and(|o| o.image_next_boot) || facts.pending.has(PendingFlags::IMAGE_NEXT_BOOT);
    let capture = obj.is_some_and(|o| o.create_image.is_some()) || facts.pending.has(PendingFlags::CREATE_IMAGE);
    let rules_apply = if obj.is_some() {
        flagged
    } else {
        flagged || !facts.pending.has(PendingFlags::IMAGING_PARTITION_DISABLED)
    };
    let belongs = |s: &preboot::policy::MulticastSession| {
        s.enabled
            && (s.master.is_some_and(|m| ids.contains(&m))
                || s.members.iter().any(|m| ids.contains(m))
                || (rules_apply && s.member_rule.as_ref().is_some_and(|c| c.holds(&facts))))
    };
    for d in &decisions {
        let destructive = match d {
            Decision::Restore { .. } => true,
            Decision::Join { master, .. } => !*master,
            _ => false,
        };
        assert!(!(destructive && capture), "overwrites the disk while a capture is asked");
        if let Decision::Restore { .. } = d {
            assert!(obj.is_none() || flagged, "restores a registered workstation that is not flagged");
        }
    }
    for d in &decisions {
        match d {
            Decision::Restore { image, forced, .. } => {
                assert!(*forced || facts.base_image != Some(image.as_str()), "restores the image already on the disk");
            }
            Decision::Join { session, master } => {
                let s = &store.multicast[*session];
                assert!(s.enabled);
                assert_eq!(*master, s.master.is_some_and(|m| ids.contains(&m)));
                assert!(belongs(s));
                // First enabled session wins.
                assert!(!store.multicast[..*session].iter().any(|s| belongs(s)));
            }
            Decision::Create { .. } => assert!(capture),
            Decision::Maintenance => {
                assert!(obj.is_some_and(|o| o.maintenance) || facts.pending.has(PendingFlags::MAINTENANCE))
            }
        }
    }

    // The trait methods, for the object a session key would be bound to
    // (docs/transaction-protocol.md §3.4: the object, else the first
    // identity): replies fit a frame; reports apply at most once.
    let Some(who) = obj.map(|o| o.id).or_else(|| ids.first().copied()) else {
        return;
    };
    let decisions = proxy.decide_tasks(&[who], &facts);
    let now = Instant::from_secs(1);
    let mut frame = [0u8; MAX_FRAME_LEN];
    let h = |t| Header { message_type: t, status: Status::Ok, flags: 0, request_id: 1, session_id: 1 };
    let ack = proxy.register(now, &who, &info).expect("register never fails");
    assert_eq!(ack.registered, obj.is_some());
    emit_frame(&h(MessageType::InfoAck), &ack, true, &mut frame).expect("InfoAck fits a frame");
    let menu_ok = match proxy.menu(now, &who, &info) {
        Ok(m) => {
            assert_eq!(m.mode, setting.mode);
            // What the proxy answers, the wire can carry.
            emit_frame(&h(MessageType::MenuReply), &m, true, &mut frame).expect("MenuReply fits a frame");
            true
        }
        Err(e) => {
            assert_eq!(e, Status::ServerError);
            false
        }
    };
    // Only an unencodable store makes the menu fail.
    assert_eq!(
        menu_ok,
        store.server.menu_file.as_ref().is_none_or(|f| f.len() <= 128)
            && store.server.menu_entries.iter().take(16).all(|e| e.label.len() <= 64)
    );
    let joined_before: Vec<usize> = (0..store.multicast.len()).map(|i| proxy.joined(i).len()).collect();
    // §4.5 MenuChoice: maintenance replaces the decisions; the partition
    // choices and boot-local hand out nothing; register may add the object.
    let decisions = match input.choice {
        Some(2) => vec![Decision::Maintenance],
        Some(3..=5) => Vec::new(),
        Some(6) if obj.is_none() => Vec::new(),
        _ => decisions,
    };
    let query = preboot::wire::transaction::menu_choice::TaskQuery { choice: input.choice };
    let ids_handed: Vec<u32> = match proxy.tasks_for(now, &who, &info, &query) {
        Err(e) => {
            // Refused: nothing handed out, nobody joined (§5).
            assert_eq!(e, Status::ServerError);
            Vec::new()
        }
        Ok(t) => {
        emit_frame(&h(MessageType::TaskReply), &t, true, &mut frame).expect("TaskReply fits a frame");
        // A pool address is never outside the range.
        if let (Some(ip), Some(pool)) = (t.image_safe.as_ref().and_then(|u| u.ip.as_ref()), &store.server.ip_pool) {
            assert!(pool.contains(ip.address), "{} outside the pool", ip.address);
        }
        if input.choice == Some(6) && obj.is_none() {
            // Registered just now: the decisions are the new object's.
            return;
        }
        assert!(t.tasks.len() <= decisions.len());
        for (task, d) in t.tasks.iter().zip(&decisions) {
            match (&task.action, d) {
                (TaskAction::RestoreImage { image, .. }, Decision::Restore { image: i, .. }) => assert_eq!(image, i),
                (TaskAction::CreateImage { .. }, Decision::Create { .. } | Decision::Join { master: true, .. }) => {}
                (TaskAction::JoinMulticast { .. }, Decision::Join { master: false, .. }) => {}
                (TaskAction::Maintenance { .. }, Decision::Maintenance) => {}
                (a, d) => panic!("task {a:?} does not match decision {d:?}"),
            }
        }
        // §4.5.1: every multicast task carries its TLV 4.
        for task in &t.tasks {
            if matches!(task.action, TaskAction::JoinMulticast { .. }) {
                assert!(t.multicast.iter().any(|m| m.task_id == task.id), "no TLV 4 for {task:?}");
            }
        }
        t.tasks.iter().map(|t| t.id).collect()
        }
    };
    if ids_handed.is_empty() {
        let joined_after: Vec<usize> = (0..store.multicast.len()).map(|i| proxy.joined(i).len()).collect();
        assert_eq!(joined_before, joined_after, "no task handed out, yet someone joined");
    }
    let mut applied = std::collections::HashSet::new();
    for (pick, outcome) in input.reports.iter().take(16) {
        let id = ids_handed.get(usize::from(*pick) % ids_handed.len().max(1)).copied().unwrap_or(u32::from(*pick));
        let outcome = Outcome::from(outcome % 4);
        let before = proxy.reports_applied();
        let r = proxy.report(now, &who, &info, &TaskReport { task_id: id, outcome, percent: None, reason: None });
        let after = proxy.reports_applied();
        if r.is_err() || outcome == Outcome::Progress {
            assert_eq!(before, after, "a refused or progress report changed state");
        } else {
            assert!(applied.insert(id), "task {id} applied twice");
            assert_eq!(after, before + 1);
        }
        if !ids_handed.contains(&id) {
            assert_eq!(r, Err(Status::UnknownTask));
        }
    }
});

trait FindForFuzz {
    fn find_workstation_for_fuzz(&self, ids: &[WorkstationId]) -> Option<&WorkstationObject>;
}
impl FindForFuzz for MemoryStore {
    /// The store's own lookup rule, restated: first id with an object.
    fn find_workstation_for_fuzz(&self, ids: &[WorkstationId]) -> Option<&WorkstationObject> {
        ids.iter().find_map(|id| self.workstations.iter().find(|w| w.id == *id))
    }
}
