//! Wire round trips for every transaction message (docs/transaction-protocol.md
//! §2–§4): proptest generators for each representation, parse(emit(x)) == x
//! and emit(parse(bytes)) == bytes; the limits of §8 and TLV rules of §2.3.

use core::net::Ipv4Addr;
use preboot::wire::image_safe::{ImageSafe, PendingFlags};
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn emit<P: Payload>(p: &P) -> Vec<u8> {
    let mut b = vec![0u8; p.buffer_len()];
    p.emit(&mut b).unwrap();
    b
}

fn s(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9/._ é-]{{0,{max}}}"))
        .unwrap()
        .prop_filter("byte limit", move |x| x.len() <= max)
}

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

#[derive(Debug, Clone)]
struct InfoOwned {
    macs: Vec<[u8; 6]>,
    uuid: Option<[u8; 16]>,
    arch: Option<u16>,
    cpu: Option<String>,
    cpus: Option<u16>,
    ram: Option<u32>,
    disks: Vec<u32>,
    nics: Vec<([u8; 6], u16, u16)>,
    pci: Vec<(u16, u16)>,
    is: Option<Vec<u8>>,
    ipc: Option<(u8, Ipv4Addr, Ipv4Addr, Ipv4Addr)>,
    dns: Vec<Ipv4Addr>,
    /// TLVs 20–26 (strings) and 27 (chassis type).
    smbios: (Vec<Option<String>>, Option<u8>),
}

fn info_owned() -> impl Strategy<Value = InfoOwned> {
    (
        vec(any::<[u8; 6]>(), 1..=16),
        any::<Option<[u8; 16]>>(),
        any::<Option<u16>>(),
        proptest::option::of(s(64)),
        any::<Option<u16>>(),
        any::<Option<u32>>(),
        vec(any::<u32>(), 0..=16),
        vec(any::<([u8; 6], u16, u16)>(), 0..=16),
        vec(any::<(u16, u16)>(), 0..=64),
        proptest::option::of(vec(any::<u8>(), 0..=200)),
        proptest::option::of((0u8..3, ip(), ip(), ip())),
        vec(ip(), 0..=4),
    )
        .prop_flat_map(|t| {
            (
                Just(t),
                vec(proptest::option::of(s(64)), 7),
                any::<Option<u8>>(),
            )
        })
        .prop_map(
            |((macs, uuid, arch, cpu, cpus, ram, disks, nics, pci, is, ipc, dns), sm, chassis)| {
                InfoOwned {
                    macs,
                    uuid,
                    arch,
                    cpu,
                    cpus,
                    ram,
                    disks,
                    nics,
                    pci,
                    is,
                    ipc,
                    dns,
                    smbios: (sm, chassis),
                }
            },
        )
}

impl InfoOwned {
    fn view(&self) -> WorkstationInfo<'_> {
        WorkstationInfo {
            macs: heapless::Vec::from_slice(&self.macs).unwrap(),
            uuid: self.uuid,
            arch: self.arch,
            cpu_model: self.cpu.as_deref(),
            cpu_count: self.cpus,
            ram_mb: self.ram,
            disks_mb: heapless::Vec::from_slice(&self.disks).unwrap(),
            nics: self
                .nics
                .iter()
                .map(|(m, v, d)| Nic {
                    mac: *m,
                    pci: PciId {
                        vendor: *v,
                        device: *d,
                    },
                })
                .collect(),
            pci: self
                .pci
                .iter()
                .map(|(v, d)| PciId {
                    vendor: *v,
                    device: *d,
                })
                .collect(),
            image_safe: self.is.as_deref(),
            ip: self.ipc.map(|(m, a, n, g)| IpConfig {
                mode: m.into(),
                address: a,
                netmask: n,
                gateway: g,
            }),
            dns: heapless::Vec::from_slice(&self.dns).unwrap(),
            smbios: {
                let s = |i: usize| self.smbios.0[i].as_deref();
                Smbios {
                    manufacturer: s(0),
                    product: s(1),
                    version: s(2),
                    serial: s(3),
                    bios_vendor: s(4),
                    bios_version: s(5),
                    asset_tag: s(6),
                    chassis_type: self.smbios.1,
                }
            },
        }
    }
}

proptest! {
    /// §4.3 round trip (payloads larger than a frame are still valid TLV).
    #[test]
    fn workstation_info_round_trip(o in info_owned()) {
        let v = o.view();
        let bytes = emit(&v);
        prop_assert_eq!(bytes.len(), v.buffer_len());
        let back = WorkstationInfo::parse(&bytes).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(&emit(&back), &bytes);
    }

    /// §4.4 round trip.
    #[test]
    fn menu_reply_round_trip(
        mode in any::<u8>(), hk in any::<Option<(u8, u8)>>(), wait in any::<Option<u32>>(),
        file in proptest::option::of(s(128)), fetch in any::<Option<u8>>(),
        entries in vec((any::<u8>(), s(64)), 0..=16)
    ) {
        let m = MenuReply {
            mode: mode.into(),
            hotkey: hk.map(|(modifiers, key)| Hotkey { modifiers, key }),
            wait_ms: wait,
            menu_file: file.as_deref(),
            fetch: fetch.map(Into::into),
            entries: entries.iter().map(|(k, l)| MenuEntry { kind: *k, label: l }).collect(),
            default_entry: wait.map(|w| w as u8),
            choice_timeout_ms: wait.map(|w| w / 3),
        };
        let bytes = emit(&m);
        let back = MenuReply::parse(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(&emit(&back), &bytes);
    }

    /// §4.5 round trip, every task kind.
    #[test]
    fn task_reply_round_trip(
        tasks in vec((any::<u32>(), 0u8..6, ip(), s(60), vec(any::<u8>(), 0..=16), any::<(u16, u16, u32)>()), 0..=8),
        env in proptest::option::of((any::<u8>(), s(40), s(40), s(40))),
        env_mc in vec((any::<u8>(), any::<[u8; 4]>(), any::<[u8; 4]>(), any::<(u16, u16, u8, u8)>()), 0..=3)
    ) {
        let t = TaskReply {
            tasks: tasks.iter().map(|(id, k, ip, st, parts, (port, n, w))| Task {
                id: *id,
                action: match k {
                    0 => TaskAction::BootLocal,
                    1 => TaskAction::RestoreImage { server: *ip, image: st, partitions: heapless::Vec::from_slice(parts).unwrap() },
                    2 => TaskAction::CreateImage { server: *ip, target: st },
                    3 => TaskAction::JoinMulticast { session: st, group: *ip, port: *port, min_members: *n, wait_secs: *w },
                    4 => TaskAction::Maintenance { reason: st },
                    _ => TaskAction::Unknown { kind: 200, body: parts },
                },
            }).collect(),
            environment: env.as_ref().map(|(f, k, i, l)| Environment { fetch: (*f).into(), kernel: k, initrd: i, loader: l }),
            tokens: tasks.iter().take(8).map(|(id, ..)| TaskToken { task_id: *id, token: [id.to_le_bytes()[0]; 32] }).collect(),
            // §4.5.1: TLV 4, one per multicast task.
            multicast: tasks.iter().filter(|t| t.1 == 3 || t.1 == 2).map(|(id, k, ip, st, parts, (port, n, w))| preboot::wire::transaction::multicast::MulticastInfo {
                task_id: *id,
                role: (k - 2).into(),
                state: (*n as u8).into(),
                run: *w,
                joined: *n,
                poll_secs: *port,
                server: *ip,
                group: Ipv4Addr::new(239, 1, 2, parts.len() as u8),
                port: *port,
                session: st,
                image: if parts.is_empty() { "" } else { st },
            }).collect(),
            image_safe: None,
            // §4.5.2: TLV 6, up to one per environment file.
            environment_multicast: env_mc.iter().map(|(f, sv, g, (cp, sp, l, d))| preboot::wire::transaction::environment_multicast::EnvironmentMulticast {
                file: (*f).into(),
                server: Ipv4Addr::from(*sv),
                group: Ipv4Addr::from(*g),
                client_port: *cp,
                server_port: *sp,
                listen_secs: *l,
                delay_secs: *d,
            }).collect(),
        };
        let bytes = emit(&t);
        let back = TaskReply::parse(&bytes).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(&emit(&back), &bytes);
    }

    /// §4.6 round trip.
    #[test]
    fn task_report_round_trip(id in any::<u32>(), o in any::<u8>(), p in proptest::option::of(0u8..=100), r in proptest::option::of(s(128))) {
        let t = TaskReport { task_id: id, outcome: o.into(), percent: p, reason: r.as_deref() };
        let bytes = emit(&t);
        prop_assert_eq!(TaskReport::parse(&bytes).unwrap(), t);
    }

    /// §3.2, §3.3 fixed layouts and §4.3 InfoAck.
    #[test]
    fn handshake_round_trip(nc in any::<[u8; 16]>(), ck in any::<[u8; 32]>(), e in any::<[u8; 32]>(), es in vec(any::<u8>(), 48), ep in vec(any::<u8>(), 16..64), acc in vec(any::<u8>(), 25), reg in any::<bool>(), name in proptest::option::of(s(64))) {
        let h = Hello { nonce: nc };
        let hb = emit(&h);
        prop_assert_eq!(hb.len(), 48);
        prop_assert_eq!(Hello::parse(&hb).unwrap(), h);
        let c = Cookie { cookie: ck };
        prop_assert_eq!(Cookie::parse(&emit(&c)).unwrap(), c);
        let i = Init { nonce: nc, cookie: ck, ephemeral: e, encrypted_static: es.clone().try_into().unwrap(), encrypted_payload: &ep };
        let ib = emit(&i);
        prop_assert_eq!(Init::parse(&ib).unwrap(), i);
        let a = Accept { ephemeral: e, encrypted_payload: acc.clone().try_into().unwrap() };
        prop_assert_eq!(Accept::parse(&emit(&a)).unwrap(), a);
        let ip = InitPayload { highest_version: nc[0] };
        prop_assert_eq!(InitPayload::parse(&emit(&ip)).unwrap(), ip);
        let a = InfoAck { registered: reg, name: name.as_deref() };
        let ab = emit(&a);
        prop_assert_eq!(InfoAck::parse(&ab).unwrap(), a);
    }

    /// §2: frame round trip for any header and payload size.
    #[test]
    fn frame_round_trip(t in any::<u8>(), st in any::<u8>(), fl in any::<u8>(), rid in any::<u32>(), sid in any::<u64>(), n in 0usize..=MAX_PAYLOAD_LEN, sealed in any::<bool>()) {
        struct Blob(usize);
        impl Payload for Blob {
            fn buffer_len(&self) -> usize { self.0 }
            fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> { out.fill(0xA5); Ok(()) }
        }
        let h = Header { message_type: t.into(), status: st.into(), flags: fl, request_id: rid, session_id: sid };
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let len = emit_frame(&h, &Blob(n), sealed, &mut buf).unwrap();
        let f = Frame::new_checked(&buf[..len]).unwrap();
        prop_assert_eq!(f.header(), h);
        prop_assert_eq!(f.payload().len(), n);
        prop_assert_eq!(f.tag().is_some(), sealed);
    }

    /// No parser panics on arbitrary bytes (the fuzz targets go further).
    #[test]
    fn parsers_never_panic(b in vec(any::<u8>(), 0..1600)) {
        let _ = Frame::new_checked(&b[..]);
        let _ = WorkstationInfo::parse(&b);
        let _ = MenuReply::parse(&b);
        let _ = TaskReply::parse(&b);
        let _ = TaskReport::parse(&b);
        let _ = InfoAck::parse(&b);
        let _ = Hello::parse(&b);
        let _ = Init::parse(&b);
        let _ = Accept::parse(&b);
        let _ = InitPayload::parse(&b);
        let _ = ImageSafe::parse(&b);
    }

    /// §10.2 round trip.
    #[test]
    fn image_safe_round_trip(base in proptest::option::of(s(200)), addons in vec(s(60), 0..=8), name in proptest::option::of(s(60)), a in proptest::option::of(ip()), dns in vec(ip(), 0..=4), flags in any::<u32>(), generation in any::<u32>()) {
        let r = ImageSafe {
            generation,
            base_image: base.as_deref(),
            add_on_images: addons.iter().map(|x| x.as_str()).collect(),
            workstation_name: name.as_deref(),
            address: a,
            dns: heapless::Vec::from_slice(&dns).unwrap(),
            pending: PendingFlags(flags),
            ..ImageSafe::default()
        };
        let mut buf = [0u8; 1024];
        let n = r.emit(&mut buf).unwrap();
        prop_assert_eq!(ImageSafe::parse(&buf[..n]).unwrap(), r);
    }
}

/// §2.3: duplicates of single TLVs, over-long repetitions, bad sizes and
/// non-UTF-8 strings are refused; unknown TLVs are skipped.
#[test]
fn tlv_rules() {
    let mac = [1u8, 0, 6, 1, 2, 3, 4, 5, 6];
    let mut ok = mac.to_vec();
    ok.extend_from_slice(&[0x7F, 0, 2, 9, 9]); // unknown TLV: skipped
    assert!(WorkstationInfo::parse(&ok).is_ok());
    let mut dup = mac.to_vec();
    dup.extend_from_slice(&[6, 0, 4, 0, 0, 0, 1, 6, 0, 4, 0, 0, 0, 2]);
    assert_eq!(
        WorkstationInfo::parse(&dup),
        Err(ParseError::Duplicate { field: 6 })
    );
    let mut many = Vec::new();
    for _ in 0..17 {
        many.extend_from_slice(&mac);
    }
    assert_eq!(
        WorkstationInfo::parse(&many),
        Err(ParseError::TooMany { field: 1 })
    );
    let mut size = mac.to_vec();
    size.extend_from_slice(&[6, 0, 3, 0, 0, 1]);
    assert_eq!(
        WorkstationInfo::parse(&size),
        Err(ParseError::BadField { field: 6 })
    );
    let mut utf = mac.to_vec();
    utf.extend_from_slice(&[4, 0, 2, 0xC3, 0x28]);
    assert_eq!(
        WorkstationInfo::parse(&utf),
        Err(ParseError::BadString { field: 4 })
    );
    assert_eq!(
        WorkstationInfo::parse(&[]),
        Err(ParseError::Missing { field: 1 })
    );
    assert_eq!(MenuReply::parse(&[]), Err(ParseError::Missing { field: 1 }));
    // Task body length must match its kind exactly (§4.5).
    let task = [1u8, 0, 6, 0, 0, 0, 1, 0, 0xFF];
    assert_eq!(
        TaskReply::parse(&task),
        Err(ParseError::BadField { field: 1 })
    );
    // Percent above 100 (§4.6).
    assert_eq!(
        TaskReport::parse(&[1, 0, 4, 0, 0, 0, 1, 2, 0, 1, 1, 3, 0, 1, 101]),
        Err(ParseError::BadField { field: 3 })
    );
    // Hello: exactly 48 bytes, padding zero (§3.2).
    let mut h = vec![0u8; 48];
    assert!(Hello::parse(&h).is_ok());
    h[47] = 1;
    assert!(Hello::parse(&h).is_err());
    assert!(Hello::parse(&h[..47]).is_err());
    // Init: the encrypted payload carries at least its tag (§3.3).
    assert!(Init::parse(&[0u8; 143]).is_err());
    assert!(Init::parse(&[0u8; 144]).is_ok());
}

/// §8: a payload over the limit is refused by the builder.
#[test]
fn oversized_payload_is_refused() {
    let mut o = WorkstationInfo::default();
    o.macs.push([1; 6]).unwrap();
    let big = [7u8; 1024];
    o.image_safe = Some(&big);
    for _ in 0..64 {
        o.pci
            .push(PciId {
                vendor: 1,
                device: 2,
            })
            .unwrap();
    }
    let h = Header {
        message_type: MessageType::WorkstationInfo,
        status: Status::Ok,
        flags: 0,
        request_id: 1,
        session_id: 1,
    };
    let mut buf = [0u8; 4096];
    assert!(matches!(
        emit_frame(&h, &o, true, &mut buf),
        Err(EmitError::TooLarge { .. })
    ));
}
