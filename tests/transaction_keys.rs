//! Per-workstation keys (docs/transaction-protocol.md §3.1): a workstation
//! with its own key authenticates with it; another workstation's key, or
//! the site secret once a workstation has its own key, is refused with the
//! right status and nothing changes. Also the `[keys]` TOML section.

use core::net::{Ipv4Addr, SocketAddrV4};
use preboot::Instant;
#[cfg(feature = "std")] // the TOML store is std-only
use preboot::policy::toml_store;
use preboot::policy::{ImagingProxy, MemoryStore, WorkstationId, WorkstationObject};
use preboot::transaction::{
    Client, ClientConfig, ClientEvent, KeyStore, Policy, Server, ServerConfig, WorkstationKeys,
};
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::{MAX_FRAME_LEN, MessageType, Status};
#[cfg(feature = "std")] // the TOML store is std-only
use std::path::Path;

const SITE: &[u8] = b"the site secret, shared by all";
const KEY_A: &[u8] = b"workstation A's very own key";
const KEY_B: &[u8] = b"workstation B's very own key";
const MAC_A: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0a];
const MAC_B: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0b];
const MAC_C: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x0c]; // no key of its own
const UUID_D: [u8; 16] = [0xd0; 16];
const KEY_D: &[u8] = b"workstation D, keyed by its UUID";

/// Counts the policy calls that a refused request must not cause.
struct Counting {
    inner: ImagingProxy<MemoryStore>,
    calls: u32,
}

impl Policy for Counting {
    fn register<'s>(
        &'s mut self,
        now: Instant,
        i: &WorkstationInfo<'_>,
    ) -> Result<InfoAck<'s>, Status> {
        self.calls += 1;
        self.inner.register(now, i)
    }
    fn menu<'s>(
        &'s mut self,
        now: Instant,
        i: &WorkstationInfo<'_>,
    ) -> Result<MenuReply<'s>, Status> {
        self.calls += 1;
        self.inner.menu(now, i)
    }
    fn tasks<'s>(
        &'s mut self,
        now: Instant,
        i: &WorkstationInfo<'_>,
    ) -> Result<TaskReply<'s>, Status> {
        self.calls += 1;
        self.inner.tasks(now, i)
    }
    fn report(
        &mut self,
        now: Instant,
        i: &WorkstationInfo<'_>,
        r: &TaskReport<'_>,
    ) -> Result<(), Status> {
        self.calls += 1;
        self.inner.report(now, i, r)
    }
}

type Srv = Server<Counting, WorkstationKeys, Box<dyn FnMut(&mut [u8])>>;

fn keys() -> WorkstationKeys {
    let mut k = WorkstationKeys::new(Some((b"site", SITE)));
    k.insert(WorkstationId::Mac(MAC_A), KEY_A).unwrap();
    k.insert(WorkstationId::Mac(MAC_B), KEY_B).unwrap();
    k.insert(WorkstationId::Uuid(UUID_D), KEY_D).unwrap();
    k
}

fn server_with(keys: WorkstationKeys) -> Srv {
    let mut store = MemoryStore::default();
    store
        .workstations
        .push(WorkstationObject::new(WorkstationId::Mac(MAC_A), "ws-a"));
    let mut n = 0u8;
    Server::new(
        ServerConfig::default(),
        keys,
        Counting {
            inner: ImagingProxy::new(store),
            calls: 0,
        },
        Box::new(move |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_add(37);
                *x = n;
            }
        }),
    )
}

fn srv_addr() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4012)
}
fn me() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 50000)
}

/// Run client ↔ server until neither has anything to send; return the
/// client's events.
fn pump(c: &mut Client, s: &mut Srv, now: Instant) -> Vec<ClientEvent> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    for _ in 0..8 {
        let Some(t) = c.poll_transmit(now, &mut buf) else {
            break;
        };
        s.handle(now, me(), &buf[..t.len]);
        while let Some(r) = s.poll_transmit(now, &mut buf) {
            c.handle(now, srv_addr(), &buf[..r.len]);
        }
    }
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn client(key_id: &str, key: &[u8]) -> Client {
    Client::new(
        ClientConfig::new(srv_addr(), key_id.as_bytes(), key).unwrap(),
        [0x42; 16],
        Instant::ZERO,
    )
}

fn info(macs: &[[u8; 6]], uuid: Option<[u8; 16]>) -> WorkstationInfo<'static> {
    let mut i = WorkstationInfo::default();
    for m in macs {
        i.macs.push(*m).unwrap();
    }
    i.uuid = uuid;
    i
}

fn established(s: &mut Srv, key_id: &str, key: &[u8]) -> Client {
    let mut c = client(key_id, key);
    let ev = pump(&mut c, s, Instant::ZERO);
    assert!(
        matches!(ev[..], [ClientEvent::Established { .. }]),
        "{key_id}: {ev:?}"
    );
    c
}

/// Everything a refused `WorkstationInfo` must leave as it was.
fn snapshot(s: &Srv) -> (u32, usize, usize) {
    (s.policy().calls, s.session_count(), s.established_count())
}

/// Send `wi` on an established session and expect the §3.1 refusal:
/// `AuthFailed`, MAC'd, no policy call; the session then still has no
/// workstation information (queries are `OutOfOrder`).
fn refused(s: &mut Srv, c: &mut Client, wi: &WorkstationInfo<'_>) {
    let before = snapshot(s);
    c.send_info(Instant::ZERO, wi).unwrap();
    let ev = pump(c, s, Instant::ZERO);
    assert_eq!(
        ev,
        vec![ClientEvent::Refused {
            request: MessageType::WorkstationInfo,
            status: Status::AuthFailed,
            authenticated: true,
        }]
    );
    assert_eq!(
        snapshot(s),
        before,
        "a refused WorkstationInfo changed state"
    );
    c.query_menu(Instant::ZERO).unwrap();
    let ev = pump(c, s, Instant::ZERO);
    assert!(
        matches!(
            ev[..],
            [ClientEvent::Refused {
                status: Status::OutOfOrder,
                ..
            }]
        ),
        "{ev:?}"
    );
    assert_eq!(snapshot(s).0, before.0, "the policy was asked anyway");
}

/// Send `wi` and a menu query, both answered; returns the name in the
/// `InfoAck`.
fn accepted(s: &mut Srv, c: &mut Client, wi: &WorkstationInfo<'_>) -> Option<String> {
    c.send_info(Instant::ZERO, wi).unwrap();
    let ev = pump(c, s, Instant::ZERO);
    assert_eq!(
        ev,
        vec![ClientEvent::Reply {
            message_type: MessageType::InfoAck
        }]
    );
    let name = c.info_ack().unwrap().name.map(String::from);
    c.query_menu(Instant::ZERO).unwrap();
    let ev = pump(c, s, Instant::ZERO);
    assert_eq!(
        ev,
        vec![ClientEvent::Reply {
            message_type: MessageType::MenuReply
        }]
    );
    assert!(c.menu_reply().is_some());
    name
}

/// §3.1: a workstation authenticates with its own key (key id = its MAC
/// or its UUID) and is served.
#[test]
fn own_key_authenticates() {
    let mut s = server_with(keys());
    let mut a = established(&mut s, "52:54:00:00:00:0a", KEY_A);
    assert_eq!(
        accepted(&mut s, &mut a, &info(&[MAC_A], None)).as_deref(),
        Some("ws-a")
    );
    let mut d = established(&mut s, "d0d0d0d0-d0d0-d0d0-d0d0-d0d0d0d0d0d0", KEY_D);
    accepted(&mut s, &mut d, &info(&[MAC_C], Some(UUID_D)));
    // A workstation without a key of its own still uses the site secret.
    let mut c = established(&mut s, "site", SITE);
    accepted(&mut s, &mut c, &info(&[MAC_C], None));
}

/// §3, §3.1: the wrong key under a workstation's key id fails the
/// handshake — the client sees the server proof fail, the server refuses
/// the Proof with `AuthFailed` and keeps the session half-open.
#[test]
fn another_workstations_key_fails_the_handshake() {
    let mut s = server_with(keys());
    // B presents A's key id with B's key.
    let mut c = client("52:54:00:00:00:0a", KEY_B);
    let ev = pump(&mut c, &mut s, Instant::ZERO);
    assert_eq!(ev, vec![ClientEvent::ServerNotAuthentic]);
    assert_eq!(s.established_count(), 0);
    assert_eq!(s.policy().calls, 0);
    // The site secret under A's key id is just as wrong.
    let mut c = client("52:54:00:00:00:0a", SITE);
    assert_eq!(
        pump(&mut c, &mut s, Instant::ZERO),
        vec![ClientEvent::ServerNotAuthentic]
    );
    // An unknown key id (a MAC without a key, and no such site id).
    let mut c = client("52:54:00:00:00:0c", KEY_A);
    let ev = pump(&mut c, &mut s, Instant::ZERO);
    assert!(
        matches!(
            ev[..],
            [ClientEvent::Refused {
                status: Status::UnknownKey,
                ..
            }]
        ),
        "{ev:?}"
    );
    assert_eq!(s.established_count(), 0);
    assert_eq!(s.policy().calls, 0);
}

/// §3.1: a key speaks only for its workstation — B's key (even when
/// authentic) cannot send A's information, nor information that mixes A's
/// identity in; then the right information still works.
#[test]
fn a_key_speaks_only_for_its_workstation() {
    let mut s = server_with(keys());
    let mut b = established(&mut s, "52:54:00:00:00:0b", KEY_B);
    refused(&mut s, &mut b, &info(&[MAC_A], None));
    refused(&mut s, &mut b, &info(&[MAC_B, MAC_A], None));
    refused(&mut s, &mut b, &info(&[MAC_C], None));
    refused(&mut s, &mut b, &info(&[MAC_B], Some(UUID_D)));
    accepted(&mut s, &mut b, &info(&[MAC_B, MAC_C], None));
}

/// §3.1: once a workstation has its own key, the site secret no longer
/// speaks for it (by MAC or by UUID).
#[test]
fn site_key_refused_for_keyed_workstation() {
    let mut s = server_with(keys());
    let mut c = established(&mut s, "site", SITE);
    refused(&mut s, &mut c, &info(&[MAC_A], None));
    refused(&mut s, &mut c, &info(&[MAC_C, MAC_B], None));
    refused(&mut s, &mut c, &info(&[MAC_C], Some(UUID_D)));
    accepted(&mut s, &mut c, &info(&[MAC_C], None));
}

/// Without a site secret only keyed workstations can authenticate.
#[test]
fn no_site_secret() {
    let mut k = WorkstationKeys::new(None);
    k.insert(WorkstationId::Mac(MAC_A), KEY_A).unwrap();
    assert!(k.key(b"site").is_none());
    let mut s = server_with(k);
    let mut c = client("site", SITE);
    let ev = pump(&mut c, &mut s, Instant::ZERO);
    assert!(
        matches!(
            ev[..],
            [ClientEvent::Refused {
                status: Status::UnknownKey,
                ..
            }]
        ),
        "{ev:?}"
    );
    let mut a = established(&mut s, "52:54:00:00:00:0a", KEY_A);
    accepted(&mut s, &mut a, &info(&[MAC_A], None));
}

/// Keys are 16–64 bytes; one key per workstation; no clash with the site
/// key id.
#[test]
fn insert_checks() {
    let mut k = WorkstationKeys::new(Some((b"52:54:00:00:00:0a", SITE)));
    assert!(k.insert(WorkstationId::Mac(MAC_B), b"short").is_err());
    assert!(k.insert(WorkstationId::Mac(MAC_B), &[7; 65]).is_err());
    k.insert(WorkstationId::Mac(MAC_B), &[7; 64]).unwrap();
    assert!(k.insert(WorkstationId::Mac(MAC_B), &[8; 16]).is_err());
    assert!(k.insert(WorkstationId::Mac(MAC_A), &[8; 16]).is_err());
    assert_eq!(k.len(), 1);
    assert!(
        !format!("{k:?}").contains("7, 7"),
        "Debug must not print keys"
    );
}

#[cfg(feature = "std")] // the TOML store is std-only
const KEYS_TOML: &str = r#"
[server]
image_server = "10.0.0.5"

[keys]
site = { id = "site", secret = "the site secret, shared by all" }
workstation = [
  { mac = "52:54:00:00:00:0a", secret = "workstation A's very own key" },
  { uuid = "d0d0d0d0-d0d0-d0d0-d0d0-d0d0d0d0d0d0", secret_hex = "776f726b73746174696f6e20442c206b65796564206279206974732055554944" },
]
"#;

/// The `[keys]` section loads (and the policy loader accepts the file).
#[cfg(feature = "std")] // the TOML store is std-only
#[test]
fn keys_from_toml() {
    let k = toml_store::parse_keys(Path::new("keys.toml"), KEYS_TOML).unwrap();
    assert_eq!(k.key(b"site"), Some(SITE));
    assert_eq!(k.key(b"52:54:00:00:00:0a"), Some(KEY_A));
    assert_eq!(k.key(b"d0d0d0d0-d0d0-d0d0-d0d0-d0d0d0d0d0d0"), Some(KEY_D));
    assert!(k.key(b"52:54:00:00:00:0b").is_none());
    assert!(toml_store::parse(Path::new("keys.toml"), KEYS_TOML).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, KEYS_TOML).unwrap();
    assert_eq!(toml_store::load_keys(&path).unwrap().len(), 2);
}

/// `[keys]` errors name the file, line and field.
#[cfg(feature = "std")] // the TOML store is std-only
#[test]
fn keys_toml_errors() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("[server]\n", 1, "keys", "no [keys]"),
        (
            "[keys]\nsite = { id = \"site\", secret = \"short\" }\n",
            2,
            "keys.site.secret",
            "16-64 bytes",
        ),
        (
            "[keys]\nworkstation = [\n { mac = \"52:54:00:00:00:zz\", secret = \"0123456789abcdef\" },\n]\n",
            3,
            "keys.workstation.mac",
            "MAC address",
        ),
        (
            "[keys]\nworkstation = [\n { mac = \"52:54:00:00:00:01\", secret_hex = \"0g\" },\n]\n",
            3,
            "keys.workstation.secret_hex",
            "hex",
        ),
        (
            "[keys]\nworkstation = [\n { mac = \"52:54:00:00:00:01\" },\n]\n",
            3,
            "keys.workstation",
            "exactly one of `secret`",
        ),
        (
            "[keys]\nworkstation = [\n { mac = \"52:54:00:00:00:01\", secret = \"0123456789abcdef\" },\n { mac = \"52:54:00:00:00:01\", secret = \"0123456789abcdef\" },\n]\n",
            4,
            "keys.workstation",
            "already has a key",
        ),
    ];
    for (text, line, field, msg) in cases {
        let e = toml_store::parse_keys(Path::new("/etc/preboot/keys.toml"), text).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (*line, *field), "{text}\n→ {e}");
        assert!(e.message.contains(msg), "{text}\n→ {e}");
        assert!(e.to_string().starts_with("/etc/preboot/keys.toml:"));
    }
}

/// §3.1: a refused `WorkstationInfo` after an accepted one keeps the
/// accepted one — queries are still answered for the workstation the key
/// belongs to, and the policy sees nothing of the refused one.
#[test]
fn refusal_keeps_earlier_information() {
    let mut s = server_with(keys());
    let mut a = established(&mut s, "52:54:00:00:00:0a", KEY_A);
    assert_eq!(
        accepted(&mut s, &mut a, &info(&[MAC_A], None)).as_deref(),
        Some("ws-a")
    );
    let calls = s.policy().calls;
    a.send_info(Instant::ZERO, &info(&[MAC_B], None)).unwrap();
    let ev = pump(&mut a, &mut s, Instant::ZERO);
    assert_eq!(
        ev,
        vec![ClientEvent::Refused {
            request: MessageType::WorkstationInfo,
            status: Status::AuthFailed,
            authenticated: true,
        }]
    );
    assert_eq!(s.policy().calls, calls);
    a.query_menu(Instant::ZERO).unwrap();
    assert_eq!(
        pump(&mut a, &mut s, Instant::ZERO),
        vec![ClientEvent::Reply {
            message_type: MessageType::MenuReply
        }]
    );
    assert_eq!(s.policy().calls, calls + 1);
}
