//! Test vectors from an independent implementation of
//! docs/transaction-protocol.md: `tests/vectors/transaction/gen.py`
//! (Python standard library only) wrote `conversation.txt` from fixed
//! nonces and keys. preboot's client and server engines, given the same
//! inputs, must send exactly those bytes and accept the other side's.
//!
//! `generator_output_is_committed` reruns gen.py (needs `python3`; without
//! it the test is listed as ignored, build.rs decides) so the committed
//! vectors cannot drift from their generator.

use core::net::{Ipv4Addr, SocketAddrV4};
use preboot::Instant;
use preboot::engine::Datagram;
use preboot::policy::{
    Condition, EnvironmentSpec, ImagingProxy, ImagingRule, MemoryStore, MenuEntrySpec, MenuSetting,
    ServerPolicy, WorkstationId, WorkstationObject,
};
use preboot::transaction::{
    Client, ClientConfig, ClientEvent, Random, Server, ServerConfig, SiteKeys, WorkstationKeys,
};
use preboot::wire::image_safe::{ImageSafe, PendingFlags};
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::{Frame, MAX_FRAME_LEN, MessageType, Status};
use std::collections::HashMap;

/// The receiving socket's address (these engines do not look at it).
const ANY: std::net::SocketAddrV4 = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);

const VECTORS: &str = include_str!("vectors/transaction/conversation.txt");
const KEY: &[u8] = b"preboot test vector site secret!";
const NC: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn vectors() -> HashMap<String, Vec<u8>> {
    VECTORS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, hex) = l.split_once(' ').expect("name hex");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            (name.to_string(), bytes)
        })
        .collect()
}

fn comment(name: &str) -> Vec<u8> {
    let line = VECTORS
        .lines()
        .find(|l| l.starts_with(&format!("# {name} = ")))
        .expect("comment line");
    let hex = line.split(" = ").nth(1).unwrap().trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The server's randomness: exactly `Ns ‖ sid` of the vectors.
struct Fixed([u8; 24]);
impl Fixed {
    fn new(ns: [u8; 16], sid: u64) -> Self {
        let mut src = [0u8; 24];
        src[..16].copy_from_slice(&ns);
        src[16..].copy_from_slice(&sid.to_be_bytes());
        Fixed(src)
    }
}
impl Random for Fixed {
    fn fill(&mut self, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0[..buf.len()]);
    }
}

/// The policy that decides what gen.py's server answers.
fn store() -> MemoryStore {
    let mut w = WorkstationObject::new(WorkstationId::Mac(MAC), "lab-pc-07");
    w.menu = Some(MenuSetting::on_key_press(
        Hotkey {
            modifiers: Hotkey::CTRL | Hotkey::ALT,
            key: b'm',
        },
        5000,
    ));
    w.image_next_boot = true;
    w.create_image = Some("uploads/lab-pc-07.img".into());
    w.maintenance = true;
    let entry = |kind, label: &str| MenuEntrySpec {
        kind,
        label: label.into(),
    };
    MemoryStore {
        server: ServerPolicy {
            menu_file: Some("preboot/menu.txt".into()),
            menu_fetch: Fetch::Mtftp,
            menu_entries: vec![
                entry(MenuEntry::AUTOMATIC, "Automatic imaging"),
                entry(MenuEntry::MAINTENANCE, "Maintenance"),
                entry(MenuEntry::BOOT_LOCAL, "Boot the local disk"),
            ],
            rules: vec![ImagingRule {
                name: "lab".into(),
                when: Condition::All(vec![]),
                image: "images/win11-base.img".into(),
                force: false,
                partitions: vec![1, 2],
            }],
            image_server: Ipv4Addr::new(10, 0, 0, 5),
            environment: Some(EnvironmentSpec {
                fetch: Fetch::Tftp,
                kernel: "imaging/linux".into(),
                initrd: "imaging/initrd.img".into(),
                loader: "imaging/loader.efi".into(),
            }),
            ..ServerPolicy::default()
        },
        workstations: vec![w],
        ..MemoryStore::default()
    }
}

fn record() -> ImageSafe<'static> {
    let mut r = ImageSafe {
        generation: 3,
        base_image: Some("images/win11-base.img"),
        workstation_name: Some("lab-pc-07"),
        directory_id: Some("cn=lab-pc-07,ou=lab"),
        net_mode: NetMode::Static,
        address: Some(Ipv4Addr::new(10, 1, 2, 3)),
        netmask: Some(Ipv4Addr::new(255, 255, 0, 0)),
        gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
        pending: PendingFlags(PendingFlags::IMAGE_NEXT_BOOT),
        ..ImageSafe::default()
    };
    r.add_on_images.push("images/office.img").unwrap();
    r.dns.push(Ipv4Addr::new(10, 1, 0, 53)).unwrap();
    r
}

fn info(image_safe: &[u8]) -> WorkstationInfo<'_> {
    let mut i = WorkstationInfo::default();
    i.macs.push(MAC).unwrap();
    i.uuid = Some([
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ]);
    i.arch = Some(7);
    i.cpu_model = Some("Intel(R) Xeon(R) E-2234");
    i.cpu_count = Some(4);
    i.ram_mb = Some(16384);
    i.disks_mb.push(512_000).unwrap();
    i.disks_mb.push(1024).unwrap();
    let pci = PciId {
        vendor: 0x8086,
        device: 0x15b8,
    };
    i.nics.push(Nic { mac: MAC, pci }).unwrap();
    i.pci.push(pci).unwrap();
    i.pci
        .push(PciId {
            vendor: 0x10de,
            device: 0x1eb8,
        })
        .unwrap();
    i.image_safe = Some(image_safe);
    i.ip = Some(IpConfig {
        mode: NetMode::Static,
        address: Ipv4Addr::new(10, 1, 2, 3),
        netmask: Ipv4Addr::new(255, 255, 0, 0),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
    });
    i.dns.push(Ipv4Addr::new(10, 1, 0, 53)).unwrap();
    i
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// §10.2: our record emitter writes gen.py's record byte for byte, and
/// parses it back.
#[test]
fn image_safe_record_matches() {
    let want = comment("image-safe record");
    let mut buf = [0u8; 1024];
    let n = record().emit(&mut buf).unwrap();
    assert_eq!(hex(&buf[..n]), hex(&want));
    assert_eq!(ImageSafe::parse(&want).unwrap(), record());
}

/// §2–§6: the whole conversation, byte for byte in both directions.
#[test]
fn conversation_matches_independent_implementation() {
    let v = vectors();
    let srv = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4012);
    let me = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 49152);
    let now = Instant::ZERO;
    let mut server = Server::new(
        ServerConfig::default(),
        SiteKeys::new(b"site", KEY),
        ImagingProxy::new(store()),
        Fixed::new(
            core::array::from_fn(|i| 0xA0 + i as u8),
            0x0123_4567_89AB_CDEF,
        ),
    );
    let mut client = Client::new(ClientConfig::new(srv, b"site", KEY).unwrap(), NC, now);
    let mut buf = [0u8; MAX_FRAME_LEN];

    // One request/reply step: the client sends `req`, the server answers `rep`.
    let mut step = |client: &mut Client, req: &str, rep: &str| {
        let t = client
            .poll_transmit(now, &mut buf)
            .unwrap()
            .expect("client sends");
        assert_eq!(hex(&buf[..t.len]), hex(&v[req]), "{req}");
        // The independent frame parses with our parser, too.
        Frame::new_checked(&v[req][..]).unwrap();
        server.handle(
            now,
            Datagram {
                local: ANY,
                remote: me,
                payload: &v[req],
            },
        );
        let r = server
            .poll_transmit(now, &mut buf)
            .unwrap()
            .expect("server answers");
        assert_eq!(hex(&buf[..r.len]), hex(&v[rep]), "{rep}");
        client.handle(
            now,
            Datagram {
                local: ANY,
                remote: srv,
                payload: &v[rep],
            },
        );
    };

    step(&mut client, "hello", "challenge");
    step(&mut client, "proof", "proof_ack");
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Established {
            session_id: 0x0123_4567_89AB_CDEF
        })
    );

    let mut rec = [0u8; 1024];
    let n = record().emit(&mut rec).unwrap();
    client.send_info(now, &info(&rec[..n])).unwrap();
    step(&mut client, "workstation_info", "info_ack");
    assert_eq!(
        client.info_ack(),
        Some(InfoAck {
            registered: true,
            name: Some("lab-pc-07")
        })
    );

    client.query_menu(now).unwrap();
    step(&mut client, "menu_query", "menu_reply");
    {
        let m = client.menu_reply().unwrap();
        assert_eq!(m.mode, MenuMode::OnKeyPress);
        assert_eq!(m.entries.len(), 3);
    }

    client.query_tasks(now).unwrap();
    step(&mut client, "task_query", "task_reply");
    {
        let t = client.task_reply().unwrap();
        assert_eq!(t.tasks.len(), 3);
        assert!(matches!(
            &t.tasks[0].action,
            TaskAction::RestoreImage { image: "images/win11-base.img", partitions, .. } if partitions[..] == [1, 2]
        ));
    }

    client
        .report(
            now,
            &TaskReport {
                task_id: 1,
                outcome: Outcome::Success,
                percent: Some(100),
                reason: None,
            },
        )
        .unwrap();
    step(&mut client, "task_report", "report_ack");
    assert_eq!(server.policy().reports_applied(), 1);
    while client.poll_event().is_some() {}

    // §2.4, §5: gen.py's tampered frame is refused with its AuthFailed reply.
    server.handle(
        now,
        Datagram {
            local: ANY,
            remote: me,
            payload: &v["tampered_menu_query"],
        },
    );
    let r = server.poll_transmit(now, &mut buf).unwrap().unwrap();
    assert_eq!(hex(&buf[..r.len]), hex(&v["auth_failed"]));
    let f = Frame::new_checked(&v["auth_failed"][..]).unwrap();
    assert_eq!(f.status(), Status::AuthFailed);
    assert_eq!(f.message_type(), MessageType::MenuReply);
}

/// §3.1: a per-workstation key under its canonical key id (the MAC as
/// text); the workstation's own MAC is accepted, another one is refused
/// with a MAC'd `AuthFailed` — byte for byte as gen.py wrote them.
#[test]
fn per_workstation_key_matches_independent_implementation() {
    let v = vectors();
    let ws_key: &[u8] = b"lab-pc-07's own key, not the site's";
    let srv = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4012);
    let me = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 49152);
    let now = Instant::ZERO;
    let mut keys = WorkstationKeys::new(Some((b"site", KEY)));
    keys.insert(WorkstationId::Mac(MAC), ws_key).unwrap();
    let kid = WorkstationKeys::key_id_of(&WorkstationId::Mac(MAC));
    assert_eq!(kid, "52:54:00:12:34:56");
    let mut server = Server::new(
        ServerConfig::default(),
        keys,
        ImagingProxy::new(store()),
        Fixed::new([0x22; 16], 0x1122_3344_5566_7788),
    );
    let mut client = Client::new(
        ClientConfig::new(srv, kid.as_bytes(), ws_key).unwrap(),
        [0x11; 16],
        now,
    );
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut step = |client: &mut Client, req: &str, rep: &str| {
        let t = client
            .poll_transmit(now, &mut buf)
            .unwrap()
            .expect("client sends");
        assert_eq!(hex(&buf[..t.len]), hex(&v[req]), "{req}");
        server.handle(
            now,
            Datagram {
                local: ANY,
                remote: me,
                payload: &v[req],
            },
        );
        let r = server
            .poll_transmit(now, &mut buf)
            .unwrap()
            .expect("server answers");
        assert_eq!(hex(&buf[..r.len]), hex(&v[rep]), "{rep}");
        client.handle(
            now,
            Datagram {
                local: ANY,
                remote: srv,
                payload: &v[rep],
            },
        );
    };
    step(&mut client, "ws_hello", "ws_challenge");
    step(&mut client, "ws_proof", "ws_proof_ack");
    assert!(client.is_established());
    let mut mine = WorkstationInfo::default();
    mine.macs.push(MAC).unwrap();
    client.send_info(now, &mine).unwrap();
    step(&mut client, "ws_info", "ws_info_ack");
    let mut other = WorkstationInfo::default();
    other
        .macs
        .push([0x52, 0x54, 0x00, 0x12, 0x34, 0x57])
        .unwrap();
    client.send_info(now, &other).unwrap();
    step(&mut client, "ws_other_info", "ws_other_auth_failed");
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Refused {
            request: MessageType::WorkstationInfo,
            status: Status::AuthFailed,
            authenticated: true,
        })
    );
}

/// The committed vectors are exactly what gen.py prints.
#[test]
#[cfg_attr(preboot_skip_python3, ignore = "needs python3")]
fn generator_output_is_committed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/transaction");
    let out = match std::process::Command::new("python3")
        .arg(format!("{dir}/gen.py"))
        .output()
    {
        Ok(o) => o,
        // Without python3 the build marks this test ignored.
        Err(e) => panic!("python3 cannot run: {e}"),
    };
    assert!(
        out.status.success(),
        "gen.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        VECTORS,
        "conversation.txt is stale: rerun gen.py"
    );
}
