//! The imaging proxy, table-driven: every menu precedence case, every rule
//! condition, rule order, force, multicast sessions, and the TOML store's
//! errors (file, line, field).

use core::net::Ipv4Addr;
use preboot::Instant;
#[cfg(feature = "std")] // the TOML store is std-only
use preboot::driver::policy_store as toml_store;
use preboot::policy::*;
use preboot::transaction::Policy;

/// The object a session's key is bound to (§3.4): in these tests, the
/// first MAC of the information.
fn who(i: &WorkstationInfo<'_>) -> WorkstationId {
    WorkstationId::Mac(i.macs[0])
}
use preboot::wire::image_safe::PendingFlags;
use preboot::wire::transaction::messages::*;
#[cfg(feature = "std")] // the TOML store is std-only
use std::path::Path;
use std::time::Duration;

const M1: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x01];
const M2: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x02];
const M3: [u8; 6] = [0x00, 0x1b, 0x21, 0x00, 0x00, 0x03];
const UNREG: [u8; 6] = [0xaa, 0xbb, 0xcc, 0x00, 0x00, 0x09];
/// Unregistered, in the 52:54 range of the multicast member rule.
const U1: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x01, 0x01];
const U2: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x01, 0x02];

fn rule(name: &str, when: Condition, image: &str, force: bool) -> ImagingRule {
    ImagingRule {
        name: name.into(),
        when,
        image: image.into(),
        force,
        partitions: vec![],
    }
}

fn info(mac: [u8; 6]) -> WorkstationInfo<'static> {
    let mut wi = WorkstationInfo::default();
    wi.macs.push(mac).unwrap();
    wi.arch = Some(7);
    wi.cpu_model = Some("Intel(R) Core(TM) i7-8700");
    wi.cpu_count = Some(12);
    wi.ram_mb = Some(16384);
    wi.disks_mb.push(256_000).unwrap();
    wi.disks_mb.push(512).unwrap();
    wi.pci
        .push(PciId {
            vendor: 0x8086,
            device: 0x15b8,
        })
        .unwrap();
    wi.ip = Some(IpConfig {
        mode: NetMode::Dhcp,
        address: Ipv4Addr::new(10, 1, 2, 3),
        netmask: Ipv4Addr::new(255, 255, 0, 0),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
    });
    wi
}

fn facts<'a>(wi: &'a WorkstationInfo<'a>, base: Option<&'a str>) -> Facts<'a> {
    Facts {
        info: wi,
        base_image: base,
        pending: PendingFlags(0),
    }
}

/// Every condition kind, true and false cases; numbers compare as numbers.
#[test]
fn condition_table() {
    use Cmp::*;
    use Condition::*;
    let wi = info(M1);
    let f = facts(&wi, Some("images/a.img"));
    let table: Vec<(Condition, bool)> = vec![
        (RamMb(Ge, 4096), true),
        (RamMb(Lt, 4096), false),
        (RamMb(Gt, 9999), true), // 16384 > 9999 as numbers ("16384" < "9999" as text)
        (RamMb(Eq, 16384), true),
        (RamMb(Ne, 16384), false),
        (RamMb(Le, 16384), true),
        (DiskMb(Ge, 200_000), true), // some disk
        (DiskMb(Lt, 1000), true),    // the small one
        (DiskMb(Gt, 300_000), false),
        (CpuCount(Ge, 8), true),
        (CpuCount(Lt, 8), false),
        (CpuModel("core(tm) i7".into()), true),
        (CpuModel("ryzen".into()), false),
        (MacPrefix(vec![0x52, 0x54, 0x00]), true),
        (MacPrefix(vec![0x00, 0x1b]), false),
        (
            IpSubnet {
                network: Ipv4Addr::new(10, 1, 0, 0),
                prefix: 16,
            },
            true,
        ),
        (
            IpSubnet {
                network: Ipv4Addr::new(10, 2, 0, 0),
                prefix: 16,
            },
            false,
        ),
        (
            IpSubnet {
                network: Ipv4Addr::new(0, 0, 0, 0),
                prefix: 0,
            },
            true,
        ),
        (
            IpSubnet {
                network: Ipv4Addr::new(10, 1, 2, 3),
                prefix: 32,
            },
            true,
        ),
        (
            IpSubnet {
                network: Ipv4Addr::new(10, 1, 2, 4),
                prefix: 32,
            },
            false,
        ),
        (Arch(7), true),
        (Arch(0), false),
        // By boot class of the architecture table: 7 is UEFI x64.
        (BootArch(preboot::dhcp::BootArch::UefiX64), true),
        (BootArch(preboot::dhcp::BootArch::Bios), false),
        (BootArch(preboot::dhcp::BootArch::Http), false),
        (
            Pci {
                vendor: 0x8086,
                device: None,
            },
            true,
        ),
        (
            Pci {
                vendor: 0x8086,
                device: Some(0x15b8),
            },
            true,
        ),
        (
            Pci {
                vendor: 0x8086,
                device: Some(0x1533),
            },
            false,
        ),
        (
            Pci {
                vendor: 0x10ec,
                device: None,
            },
            false,
        ),
        (BaseImage(Some("images/a.img".into())), true),
        (BaseImage(Some("images/b.img".into())), false),
        (BaseImage(None), false),
        (All(vec![]), true),
        (Any(vec![]), false),
        (All(vec![Arch(7), RamMb(Ge, 8192)]), true),
        (All(vec![Arch(7), RamMb(Ge, 32768)]), false),
        (Any(vec![Arch(0), RamMb(Ge, 8192)]), true),
        (Any(vec![Arch(0), RamMb(Ge, 32768)]), false),
        (Not(Box::new(Arch(0))), true),
        (
            Any(vec![All(vec![Arch(7), MacPrefix(vec![0x52])]), Arch(0)]),
            true,
        ),
    ];
    for (i, (c, want)) in table.iter().enumerate() {
        assert_eq!(c.holds(&f), *want, "row {i}: {c:?}");
    }
    // Unknown facts make comparisons false.
    let mut bare = WorkstationInfo::default();
    bare.macs.push(M1).unwrap();
    let f = facts(&bare, None);
    for c in [
        RamMb(Ge, 0),
        DiskMb(Ge, 0),
        CpuCount(Ge, 0),
        Arch(0),
        IpSubnet {
            network: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
        },
    ] {
        assert!(!c.holds(&f), "{c:?}");
    }
    assert!(BaseImage(None).holds(&f));
    assert_eq!(Cmp::parse_expr(">= 4096"), Some((Ge, 4096)));
    assert_eq!(Cmp::parse_expr("512"), Some((Eq, 512)));
    assert_eq!(Cmp::parse_expr("<=  8"), Some((Le, 8)));
    assert_eq!(Cmp::parse_expr("!=1"), Some((Ne, 1)));
    assert_eq!(Cmp::parse_expr(">= lots"), None);
}

fn store() -> MemoryStore {
    let mut o1 = WorkstationObject::new(WorkstationId::Mac(M1), "obj-menu");
    o1.menu = Some(MenuSetting::never());
    o1.policy = Some("lab".into());
    let mut o2 = WorkstationObject::new(WorkstationId::Mac(M2), "policy-menu");
    o2.policy = Some("lab".into());
    let mut o3 = WorkstationObject::new(WorkstationId::Mac(M3), "server-menu");
    o3.policy = Some("plain".into());
    MemoryStore {
        server: ServerPolicy {
            menu: Some(MenuSetting::on_key_press(
                Hotkey {
                    modifiers: Hotkey::ALT,
                    key: b'm',
                },
                5000,
            )),
            rules: vec![
                rule(
                    "server-big",
                    Condition::RamMb(Cmp::Ge, 8192),
                    "images/server-big.img",
                    false,
                ),
                rule(
                    "server-any",
                    Condition::All(vec![]),
                    "images/server-any.img",
                    false,
                ),
            ],
            image_server: Ipv4Addr::new(10, 0, 0, 5),
            ..ServerPolicy::default()
        },
        workstations: vec![o1, o2, o3],
        policies: vec![
            WorkstationPolicy {
                name: "lab".into(),
                menu: Some(MenuSetting::always()),
                rules: vec![
                    rule("lab-efi", Condition::Arch(7), "images/lab-efi.img", false),
                    rule(
                        "lab-also-efi",
                        Condition::Arch(7),
                        "images/never-reached.img",
                        true,
                    ),
                ],
                menu_entries: None,
            },
            WorkstationPolicy {
                name: "plain".into(),
                menu: None,
                rules: vec![],
                menu_entries: None,
            },
        ],
        multicast: vec![],
    }
}

/// Menu: object → workstation policy → server policy → default.
#[test]
fn menu_precedence_table() {
    let p = ImagingProxy::new(store());
    let ids = |m| identities(&info(m));
    assert_eq!(
        p.menu_setting(&ids(M1)),
        (MenuSetting::never(), MenuSource::Object)
    );
    assert_eq!(
        p.menu_setting(&ids(M2)),
        (MenuSetting::always(), MenuSource::WorkstationPolicy)
    );
    let (s, src) = p.menu_setting(&ids(M3));
    assert_eq!(
        (s.mode, s.hotkey.key, s.wait_ms, src),
        (MenuMode::OnKeyPress, b'm', 5000, MenuSource::ServerPolicy)
    );
    let (_, src) = p.menu_setting(&ids(UNREG));
    assert_eq!(src, MenuSource::ServerPolicy);
    let mut bare = store();
    bare.server.menu = None;
    let p = ImagingProxy::new(bare);
    assert_eq!(
        p.menu_setting(&ids(UNREG)),
        (MenuSetting::DEFAULT, MenuSource::Default)
    );
    assert_eq!(MenuSetting::DEFAULT.mode, MenuMode::OnKeyPress);
    assert_eq!(p.menu_setting(&ids(M3)).1, MenuSource::Default);
    // By UUID as well as by MAC.
    let mut st = store();
    st.workstations.push({
        let mut o = WorkstationObject::new(WorkstationId::Uuid([7; 16]), "by-uuid");
        o.menu = Some(MenuSetting::always());
        o
    });
    let p = ImagingProxy::new(st);
    let mut wi = info(UNREG);
    wi.uuid = Some([7; 16]);
    assert_eq!(
        p.menu_setting(&identities(&wi)),
        (MenuSetting::always(), MenuSource::Object)
    );
}

fn restore(image: &str, forced: bool, rule: Option<&str>) -> Decision {
    Decision::Restore {
        image: image.into(),
        partitions: vec![],
        forced,
        rule: rule.map(Into::into),
    }
}

/// Rules, in ZENworks' scope (docs/policy.md, "When can a restore
/// happen?"; notes §1.5): the server policy's rules for unregistered
/// workstations, the workstation policy's for registered ones flagged
/// "image on next boot"; first match wins, same base image skipped unless
/// forced; a capture comes first.
#[test]
fn rule_table() {
    let p = ImagingProxy::new(store());
    let decide = |p: &ImagingProxy<MemoryStore>, mac, base: Option<&str>, arch: u16| {
        let mut wi = info(mac);
        wi.arch = Some(arch);
        let f = facts(&wi, base);
        p.decide_tasks(&identities(&wi), &f)
    };
    // Registered, not flagged: no rule applies (neither its policy's nor
    // the server's), with or without image-safe data.
    assert_eq!(decide(&p, M1, None, 7), vec![]);
    assert_eq!(decide(&p, M1, None, 0), vec![]);
    assert_eq!(decide(&p, M3, None, 7), vec![]);
    // Unregistered → server rules only, first match wins.
    assert_eq!(
        decide(&p, UNREG, None, 7),
        vec![restore("images/server-big.img", false, Some("server-big"))]
    );
    // Same base image already on the disk → nothing (boot local).
    assert_eq!(decide(&p, UNREG, Some("images/server-big.img"), 7), vec![]);
    // … unless the rule forces it.
    let mut st = store();
    st.server.rules[0].force = true;
    let pf = ImagingProxy::new(st);
    assert_eq!(
        decide(&pf, UNREG, Some("images/server-big.img"), 7),
        vec![restore("images/server-big.img", true, Some("server-big"))]
    );
    // No rule matches at all → nothing.
    let mut st = store();
    st.server.rules.clear();
    let pn = ImagingProxy::new(st);
    assert_eq!(decide(&pn, UNREG, None, 7), vec![]);
    // Image on next boot (object attribute) with the object's image, forced
    // even when already on the disk — but a capture asked as well comes
    // first, alone (with maintenance): the restore waits for its success.
    let mut st = store();
    st.workstations[0].image_next_boot = true;
    st.workstations[0].image = Some("images/obj.img".into());
    st.workstations[0].maintenance = true;
    let po = ImagingProxy::new(st.clone());
    assert_eq!(
        decide(&po, M1, Some("images/obj.img"), 7),
        vec![restore("images/obj.img", true, None), Decision::Maintenance]
    );
    st.workstations[0].create_image = Some("uploads/pc1.img".into());
    let po = ImagingProxy::new(st);
    assert_eq!(
        decide(&po, M1, Some("images/obj.img"), 7),
        vec![
            Decision::Create {
                target: "uploads/pc1.img".into()
            },
            Decision::Maintenance
        ]
    );
    // Image on next boot without an object image → first matching rule of
    // its workstation policy, forced (the second EFI rule is never reached).
    let mut st = store();
    st.workstations[1].image_next_boot = true;
    let po = ImagingProxy::new(st);
    assert_eq!(
        decide(&po, M2, Some("images/lab-efi.img"), 7),
        vec![restore("images/lab-efi.img", true, Some("lab-efi"))]
    );
    // … and when no rule of its policy matches (BIOS), the server policy's
    // rules do not step in: nothing.
    assert_eq!(decide(&po, M2, None, 0), vec![]);
    // The pending flag in the image-safe data works like the attribute.
    let wi = info(UNREG);
    let f = Facts {
        info: &wi,
        base_image: Some("images/server-big.img"),
        pending: PendingFlags(PendingFlags::IMAGE_NEXT_BOOT),
    };
    assert_eq!(
        p.decide_tasks(&identities(&wi), &f),
        vec![restore("images/server-big.img", true, Some("server-big"))]
    );
    let wi = info(M2);
    let f = Facts {
        info: &wi,
        base_image: None,
        pending: PendingFlags(PendingFlags::IMAGE_NEXT_BOOT),
    };
    assert_eq!(
        p.decide_tasks(&identities(&wi), &f),
        vec![restore("images/lab-efi.img", true, Some("lab-efi"))]
    );
}

fn session(
    name: &str,
    enabled: bool,
    members: Vec<WorkstationId>,
    rule: Option<Condition>,
    master: Option<WorkstationId>,
) -> MulticastSession {
    MulticastSession {
        name: name.into(),
        enabled,
        image: master.is_none().then(|| "images/mc.img".into()),
        master,
        members,
        member_rule: rule,
        group: Ipv4Addr::new(239, 0, 0, 1),
        port: 6000,
        start_members: 2,
        start_after_secs: 120,
        poll_secs: 30,
        timeout_secs: 0,
        after: AfterRun::Disable,
        late: LateJoin::Refuse,
    }
}

/// Multicast: disabled sessions skipped, the first enabled one the
/// workstation belongs to wins (explicit, by rule, or master), over rules;
/// start after N members or M seconds.
#[test]
fn multicast_table() {
    let mut st = store();
    st.multicast = vec![
        session("disabled", false, vec![WorkstationId::Mac(M1)], None, None),
        session(
            "by-rule",
            true,
            vec![],
            Some(Condition::MacPrefix(vec![0x52, 0x54])),
            None,
        ),
        session("explicit", true, vec![WorkstationId::Mac(M1)], None, None),
        session("mastered", true, vec![], None, Some(WorkstationId::Mac(M3))),
    ];
    let p = ImagingProxy::new(st);
    let d = |mac| {
        let wi = info(mac);
        p.decide_tasks(&identities(&wi), &facts(&wi, None))
    };
    // A member rule is a rule: it does not apply to a registered
    // workstation that is not flagged (docs/policy.md); an explicit
    // membership does.
    assert_eq!(
        d(M1),
        vec![Decision::Join {
            session: 2,
            master: false
        }]
    );
    assert_eq!(d(M2), vec![]);
    assert_eq!(
        d(U1),
        vec![Decision::Join {
            session: 1,
            master: false
        }]
    );
    assert_eq!(
        d(M3),
        vec![Decision::Join {
            session: 3,
            master: true
        }]
    );
    assert_eq!(
        d(UNREG),
        vec![restore("images/server-big.img", false, Some("server-big"))]
    );

    // Joining through the Policy trait: once per workstation, readiness.
    let mut p = p;
    let t0 = Instant::from_secs(100);
    let w1 = info(U1);
    let reply = p.tasks(t0, &who(&w1), &w1).unwrap();
    match &reply.tasks[0].action {
        TaskAction::JoinMulticast {
            session,
            group,
            port,
            min_members,
            wait_secs,
        } => {
            assert_eq!(
                (*session, *group, *port, *min_members, *wait_secs),
                ("by-rule", Ipv4Addr::new(239, 0, 0, 1), 6000, 2, 120)
            );
        }
        other => panic!("{other:?}"),
    }
    drop(reply);
    p.tasks(t0, &who(&w1), &w1).unwrap();
    assert_eq!(p.joined(1).len(), 1, "the same workstation joins once");
    assert!(!p.session_ready(t0, 1));
    assert!(
        p.session_ready(t0 + Duration::from_secs(120), 1),
        "M seconds after the last join"
    );
    p.tasks(t0, &who(&info(U2)), &info(U2)).unwrap();
    assert!(
        matches!(
            p.session_status(1).unwrap().phase,
            SessionPhase::Running { .. }
        ),
        "N members: started at the join of the N-th"
    );
    let r = p.tasks(t0, &who(&info(M3)), &info(M3)).unwrap();
    assert!(matches!(
        r.tasks[0].action,
        TaskAction::CreateImage {
            target: "multicast:mastered",
            ..
        }
    ));
}

/// Task ids: reports are applied once; progress keeps the task open; a
/// foreign workstation cannot report another's task.
#[test]
fn reports_apply_once() {
    let mut st = store();
    st.workstations[0].image_next_boot = true;
    let mut p = ImagingProxy::new(st);
    let w1 = info(M1);
    let id = p.tasks(Instant::ZERO, &who(&w1), &w1).unwrap().tasks[0].id;
    let rep = |outcome| TaskReport {
        task_id: id,
        outcome,
        percent: None,
        reason: None,
    };
    assert_eq!(
        p.report(
            Instant::ZERO,
            &who(&info(M2)),
            &info(M2),
            &rep(Outcome::Success)
        ),
        Err(preboot::wire::transaction::Status::UnknownTask)
    );
    p.report(Instant::ZERO, &who(&w1), &w1, &rep(Outcome::Progress))
        .unwrap();
    assert_eq!(p.reports_applied(), 0);
    p.report(Instant::ZERO, &who(&w1), &w1, &rep(Outcome::Success))
        .unwrap();
    assert_eq!(p.reports_applied(), 1);
    assert!(!p.store().workstations[0].image_next_boot);
    assert_eq!(
        p.store().workstations[0].last_image.as_deref(),
        Some("images/lab-efi.img")
    );
    assert!(
        p.report(Instant::ZERO, &who(&w1), &w1, &rep(Outcome::Success))
            .is_err()
    );
    assert_eq!(p.reports_applied(), 1);
    // Nothing to do → empty list and no environment.
    let r = p.tasks(
        Instant::ZERO,
        &who(&{
            let mut w = info(M1);
            w.image_safe = None;
            w
        }),
        &{
            let mut w = info(M1);
            w.image_safe = None;
            w
        },
    );
    assert!(r.is_ok());
}

#[cfg(feature = "std")] // the TOML store is std-only
const GOOD: &str = r#"
[server]
image_server = "10.0.0.5"
menu = { mode = "on-key-press", hotkey = "ctrl+alt", wait_ms = 3000 }
menu_file = "preboot/menu.txt"
menu_fetch = "mtftp"
menu_entry = [ { kind = "automatic", label = "Automatic imaging" },
               { kind = "boot-local", label = "Boot the local disk" } ]
environment = { fetch = "tftp", kernel = "imaging/linux", initrd = "imaging/initrd", loader = "imaging/loader.efi" }

[[server.rule]]
name = "big machines"
image = "images/win11.img"
when = { all = [ { ram_mb = ">= 8192" }, { arch = "efi-x64" } ] }

[[policy]]
name = "lab"
menu = { mode = "always" }
[[policy.rule]]
image = "images/lab.img"
force = true
partitions = [1, 2]
when = { any = [ { mac_prefix = "52:54:00" }, { ip_subnet = "10.1.0.0/16" }, { not = { pci = "8086:1533" } } ] }

[[workstation]]
mac = "52:54:00:00:00:01"
name = "lab-pc-01"
policy = "lab"
image_next_boot = true

[[workstation]]
uuid = "01234567-89ab-cdef-0123-456789abcdef"
name = "by-uuid"

[[multicast]]
name = "monday"
image = "images/lab.img"
members = ["52:54:00:00:00:01"]
member_rule = { cpu_count = 4 }
group = "239.1.1.1"
port = 5000
start_members = 10
start_after_secs = 300
"#;

/// §4.4 Hotkey: function keys load as 0x81..0x8C (F8 = 0x88), with
/// modifiers; a key past F12 or two keys are refused with the field.
#[cfg(feature = "std")] // the TOML store is std-only
#[test]
fn toml_store_function_key_hotkeys() {
    let with = |hk: &str| GOOD.replace("hotkey = \"ctrl+alt\"", &format!("hotkey = \"{hk}\""));
    let s = toml_store::parse(Path::new("policy.toml"), &with("f8")).unwrap();
    let h = s.server.menu.unwrap().hotkey;
    assert_eq!((h.modifiers, h.key), (0, 0x88));
    let s = toml_store::parse(Path::new("policy.toml"), &with("shift+F12")).unwrap();
    let h = s.server.menu.unwrap().hotkey;
    assert_eq!((h.modifiers, h.key), (Hotkey::SHIFT, Hotkey::F12));
    for bad in ["f13", "f0", "f8+m", "fx"] {
        let e = toml_store::parse(Path::new("policy.toml"), &with(bad)).unwrap_err();
        assert!(e.to_string().contains("hotkey"), "{bad}: {e}");
    }
}

/// The documented TOML format loads into the expected store.
#[cfg(feature = "std")] // the TOML store is std-only
#[test]
fn toml_store_loads() {
    let s = toml_store::parse(Path::new("policy.toml"), GOOD).unwrap();
    assert_eq!(s.server.image_server, Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(
        s.server.menu.unwrap().hotkey.modifiers,
        Hotkey::CTRL | Hotkey::ALT
    );
    assert_eq!(s.server.menu_fetch, Fetch::Mtftp);
    assert_eq!(s.server.menu_entries.len(), 2);
    assert_eq!(
        s.server.rules[0].when,
        Condition::All(vec![
            Condition::RamMb(Cmp::Ge, 8192),
            Condition::BootArch(preboot::dhcp::BootArch::UefiX64)
        ])
    );
    assert_eq!(s.policies[0].rules[0].partitions, vec![1, 2]);
    assert!(matches!(&s.policies[0].rules[0].when, Condition::Any(v) if v.len() == 3));
    assert_eq!(s.workstations[0].id, WorkstationId::Mac(M1));
    assert!(s.workstations[0].image_next_boot);
    assert!(
        matches!(s.workstations[1].id, WorkstationId::Uuid(u) if u[0] == 0x01 && u[15] == 0xef)
    );
    assert_eq!(
        s.multicast[0].member_rule,
        Some(Condition::CpuCount(Cmp::Eq, 4))
    );
    // And a file on disk loads too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, GOOD).unwrap();
    assert_eq!(toml_store::load(&path).unwrap(), s);
}

/// Errors name the file, the line and the field.
#[cfg(feature = "std")] // the TOML store is std-only
#[test]
fn toml_errors_name_file_line_field() {
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "[[workstation]]\nmac = \"52:54:00:zz:00:01\"\nname = \"x\"\n",
            2,
            "workstation.mac",
            "MAC address",
        ),
        (
            "[server]\nimage_server = \"10.0.0\"\n",
            2,
            "server.image_server",
            "IPv4",
        ),
        (
            "[[server.rule]]\nimage = \"a\"\nwhen = { ram_mb = \">= lots\" }\n",
            3,
            "server.rule.when.ram_mb",
            "number",
        ),
        (
            "[[server.rule]]\nimage = \"a\"\nwhen = { ram_mb = 1, arch = 7 }\n",
            3,
            "server.rule.when",
            "exactly one key",
        ),
        (
            "[[server.rule]]\nimage = \"a\"\n\nwhen = { rma_mb = 1 }\n",
            4,
            "server.rule.when.rma_mb",
            "unknown key `rma_mb`",
        ),
        (
            "[[server.rule]]\nname = \"no image\"\nwhen = { arch = 7 }\n",
            1,
            "server.rule.image",
            "missing key `image`",
        ),
        (
            "[[workstation]]\nmac = \"52:54:00:00:00:01\"\nname = \"x\"\npolicy = \"nope\"\n",
            4,
            "workstation.policy",
            "no [[policy]]",
        ),
        (
            "[server]\nmenu = { mode = \"sometimes\" }\n",
            2,
            "server.menu.mode",
            "never",
        ),
        (
            "[[multicast]]\nname = \"m\"\nimage = \"i\"\ngroup = \"10.0.0.1\"\nport = 1\n",
            4,
            "multicast.group",
            "multicast",
        ),
        (
            "[server]\nmenu_fetch = \"ftp\"\n",
            2,
            "server.menu_fetch",
            "tftp",
        ),
        (
            "[[policy]]\nname = \"p\"\n[[policy.rule]]\nimage = \"i\"\nwhen = { ip_subnet = \"10.0.0.0/33\" }\n",
            5,
            "policy.rule.when.ip_subnet",
            "a.b.c.d/len",
        ),
        ("[server\n", 1, "server", "unclosed table"),
    ];
    for (text, line, field, msg) in cases {
        let e = toml_store::parse(Path::new("/etc/preboot/policy.toml"), text).unwrap_err();
        assert_eq!(e.file, Path::new("/etc/preboot/policy.toml"));
        assert_eq!((e.line, e.field.as_str()), (*line, *field), "{text}\n→ {e}");
        assert!(e.message.contains(msg), "{text}\n→ {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("/etc/preboot/policy.toml:{line}:")),
            "{shown}"
        );
    }
    let e = toml_store::load(Path::new("/nonexistent/policy.toml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot read /nonexistent/policy.toml: No such file or directory"
    );
}

/// §4.5: task ids are per workstation object and stable: 5,000 queries
/// from one workstation (with no hand-out limit) keep its same live ids
/// (nothing grows), and another
/// workstation's live task keeps its id and is still reported.
#[test]
fn live_task_ids_are_per_workstation_and_stable() {
    let mut st = store();
    st.workstations[0].image_next_boot = true;
    st.workstations[1].image_next_boot = true;
    // Every query hands the same tasks out again (a retry, §4.8): no
    // hand-out limit here, so that they stay live through 5,000 queries
    // (tests/task_journal.rs checks the limit).
    let mut p = ImagingProxy::with_log(st, NoLog, u32::MAX);
    let (w1, w2) = (info(M1), info(M2));
    let other: Vec<u32> = p
        .tasks(Instant::ZERO, &who(&w2), &w2)
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.id)
        .collect();
    assert!(!other.is_empty());
    let first: Vec<u32> = p
        .tasks(Instant::ZERO, &who(&w1), &w1)
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.id)
        .collect();
    for _ in 0..5000 {
        let ids: Vec<u32> = p
            .tasks(Instant::ZERO, &who(&w1), &w1)
            .unwrap()
            .tasks
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, first);
    }
    assert_eq!(p.live_tasks(&who(&w1)), first);
    assert_eq!(p.live_tasks(&who(&w2)), other);
    let rep = |task_id| TaskReport {
        task_id,
        outcome: Outcome::Success,
        percent: None,
        reason: None,
    };
    // M1 cannot report M2's task; M2 can.
    assert_eq!(
        p.report(Instant::ZERO, &who(&w1), &w1, &rep(other[0])),
        Err(preboot::wire::transaction::Status::UnknownTask)
    );
    p.report(Instant::ZERO, &who(&w2), &w2, &rep(other[0]))
        .unwrap();
    assert_eq!(p.reports_applied(), 1);
}

/// §4.4, §4.5, §5: a store the wire cannot carry (a task string over 255
/// bytes, a menu label over 64, a menu file over 128) is answered with
/// `ServerError` before anything changes — no task id handed out, no
/// multicast join. (The `policy_evaluate` fuzz target checks the same
/// oracle — "what the proxy answers, the wire can carry" — on arbitrary
/// stores.)
#[test]
fn unencodable_store_fails_before_state_changes() {
    let long = "x".repeat(256);
    let w1 = info(M1);
    // A multicast session with a too-long name.
    let mut st = store();
    st.multicast = vec![session(
        &long,
        true,
        vec![WorkstationId::Mac(M1)],
        None,
        None,
    )];
    let mut p = ImagingProxy::new(st);
    assert_eq!(
        p.tasks(Instant::ZERO, &who(&w1), &w1).err(),
        Some(preboot::wire::transaction::Status::ServerError)
    );
    assert!(p.joined(0).is_empty(), "joined although refused");
    // A too-long image name in the first matching rule (of a flagged
    // workstation: rules apply to it).
    let mut st = store();
    st.workstations[0].image_next_boot = true;
    st.policies[0].rules[0].image = long.clone();
    let mut p = ImagingProxy::new(st.clone());
    assert!(p.tasks(Instant::ZERO, &who(&w1), &w1).is_err());
    // Fix the store: the first task id handed out is still 1 (none was
    // spent on the refused request).
    st.policies[0].rules[0].image = "images/ok.img".into();
    let mut p2 = ImagingProxy::new(st);
    let id = p2.tasks(Instant::ZERO, &who(&w1), &w1).unwrap().tasks[0].id;
    assert_eq!(id, 1);
    // A too-long environment file name.
    let mut st = store();
    st.server.environment = Some(EnvironmentSpec {
        fetch: Fetch::Tftp,
        kernel: long.clone(),
        initrd: "i".into(),
        loader: "l".into(),
    });
    assert!(
        ImagingProxy::new(st)
            .tasks(Instant::ZERO, &who(&w1), &w1)
            .is_err()
    );
    // Menu limits.
    let mut st = store();
    st.server.menu_entries = vec![MenuEntrySpec {
        kind: MenuEntry::AUTOMATIC,
        label: "y".repeat(65),
    }];
    assert!(
        ImagingProxy::new(st.clone())
            .menu(Instant::ZERO, &who(&w1), &w1)
            .is_err()
    );
    st.server.menu_entries[0].label = "y".repeat(64);
    assert!(
        ImagingProxy::new(st.clone())
            .menu(Instant::ZERO, &who(&w1), &w1)
            .is_ok()
    );
    st.server.menu_file = Some("f".repeat(129));
    assert!(
        ImagingProxy::new(st)
            .menu(Instant::ZERO, &who(&w1), &w1)
            .is_err()
    );
}

/// `arch` conditions name boot classes by the architecture table's names
/// (the `[boot]` keys and the log names), older names still work, numbers
/// stay exact, and an unknown name is an error at its line.
#[cfg(feature = "std")] // the TOML store is std-only
#[test]
fn toml_arch_names_come_from_the_table() {
    use preboot::dhcp::BootArch as B;
    for (name, want) in [
        ("uefi_x64", Condition::BootArch(B::UefiX64)),
        ("uefi-x64", Condition::BootArch(B::UefiX64)),
        ("efi-x64", Condition::BootArch(B::UefiX64)),
        ("efi-bc", Condition::BootArch(B::UefiX64)),
        ("uefi_arm32", Condition::BootArch(B::UefiArm32)),
        ("uefi_riscv64", Condition::BootArch(B::UefiRiscV64)),
        ("uboot-arm64", Condition::BootArch(B::UbootArm64)),
        ("http_url", Condition::BootArch(B::Http)),
        ("efi-arm64-http", Condition::BootArch(B::HttpArm64)),
    ] {
        let text = GOOD.replace(
            "{ arch = \"efi-x64\" }",
            &format!("{{ arch = \"{name}\" }}"),
        );
        let s = toml_store::parse(Path::new("policy.toml"), &text).unwrap();
        assert_eq!(
            s.server.rules[0].when,
            Condition::All(vec![Condition::RamMb(Cmp::Ge, 8192), want]),
            "{name}"
        );
    }
    let text = GOOD.replace("{ arch = \"efi-x64\" }", "{ arch = 27 }");
    let s = toml_store::parse(Path::new("policy.toml"), &text).unwrap();
    assert_eq!(
        s.server.rules[0].when,
        Condition::All(vec![Condition::RamMb(Cmp::Ge, 8192), Condition::Arch(27)])
    );
    let text = GOOD.replace("{ arch = \"efi-x64\" }", "{ arch = \"riscv\" }");
    let e = toml_store::parse(Path::new("policy.toml"), &text).unwrap_err();
    assert!(e.message.contains("unknown architecture name"), "{e}");
}

/// §4.5 TLV 3: a restore comes with a token that stands for that task of
/// that workstation at its latest hand-out; another workstation, another
/// task, a wrong token, an earlier hand-out, a reported task and a
/// proxy that issues no tokens all say no; maintenance carries none.
#[test]
fn task_tokens_stand_for_one_live_task_at_its_latest_hand_out() {
    let mut st = store();
    st.workstations[0].image_next_boot = true;
    st.workstations[0].maintenance = true;
    let mut plain = ImagingProxy::new(st.clone());
    let w1 = info(M1);
    let id = {
        let r = plain.tasks(Instant::ZERO, &who(&w1), &w1).unwrap();
        assert!(r.tokens.is_empty(), "no tokens unless issued");
        r.tasks[0].id
    };
    assert!(!plain.check_token(&who(&w1), id, &[0; 32]));

    let mut p = ImagingProxy::new(st);
    p.issue_task_tokens(&[7; 32]);
    let (id, maint, first) = {
        let r = p.tasks(Instant::ZERO, &who(&w1), &w1).unwrap();
        let kinds: Vec<_> = r
            .tasks
            .iter()
            .map(|t| matches!(t.action, TaskAction::Maintenance { .. }))
            .collect();
        assert_eq!(kinds, vec![false, true], "{:?}", r.tasks);
        assert_eq!(r.tokens.len(), 1, "maintenance has no token");
        assert_eq!(r.tokens[0].task_id, r.tasks[0].id);
        (r.tasks[0].id, r.tasks[1].id, r.tokens[0].token)
    };
    assert!(p.check_token(&who(&w1), id, &first));
    assert!(!p.check_token(&who(&info(M2)), id, &first));
    assert!(!p.check_token(&who(&w1), maint, &first));
    let mut wrong = first;
    wrong[31] ^= 1;
    assert!(!p.check_token(&who(&w1), id, &wrong));
    // A second key makes other tokens.
    let mut other = ImagingProxy::new(store());
    other.issue_task_tokens(&[8; 32]);
    assert!(!other.check_token(&who(&w1), id, &first));

    // Handed out again: the same task, a new token; the old one is dead.
    let second = {
        let r = p.tasks(Instant::ZERO, &who(&w1), &w1).unwrap();
        assert_eq!(r.tasks[0].id, id);
        r.tokens[0].token
    };
    assert_ne!(second, first);
    assert!(!p.check_token(&who(&w1), id, &first));
    assert!(p.check_token(&who(&w1), id, &second));

    // Reported: no longer live, so no longer valid.
    let done = TaskReport {
        task_id: id,
        outcome: Outcome::Success,
        percent: None,
        reason: None,
    };
    p.report(Instant::ZERO, &who(&w1), &w1, &done).unwrap();
    assert!(!p.check_token(&who(&w1), id, &second));
}
