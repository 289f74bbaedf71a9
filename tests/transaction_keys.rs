//! Keys in configuration and in the key store
//! (docs/transaction-protocol.md §3.4, §12): exactly 32 bytes in hex or
//! base64, never a passphrase; no site secret; one key per object; the
//! `[keys]` section's errors name the file, line and field; a refused
//! `WorkstationInfo` keeps the earlier one.

#[path = "support/transaction.rs"]
mod support;

use preboot::Instant;
#[cfg(feature = "std")] // the TOML store is std-only
use preboot::driver::policy_store as toml_store;
use preboot::policy::WorkstationId;
use preboot::transaction::{ClientEvent, KeyList, KeyStore, ServerConfig, WorkstationKeys};
use preboot::wire::transaction::{MessageType, Status};
#[cfg(feature = "std")] // the TOML store is std-only
use std::path::Path;
use support::*;

#[cfg(feature = "std")]
const KEYS_TOML: &str = r#"
[keys]
server_private = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
auto_enrol = false
workstation = [
  { mac = "52:54:00:00:00:0a", public = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" },
  { uuid = "d0d0d0d0-d0d0-d0d0-d0d0-d0d0d0d0d0d0", public = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100" },
]
"#;

/// §12: the `[keys]` section loads (and the policy loader accepts the file).
#[cfg(feature = "std")]
#[test]
fn keys_from_toml() {
    let k = toml_store::parse_keys(Path::new("keys.toml"), KEYS_TOML).unwrap();
    let a: [u8; 32] = core::array::from_fn(|i| i as u8);
    let d: [u8; 32] = core::array::from_fn(|i| 31 - i as u8);
    assert_eq!(
        k.workstations.object_of_key(&a),
        Some(WorkstationId::Mac([0x52, 0x54, 0, 0, 0, 0x0a]))
    );
    assert_eq!(
        k.workstations.object_of_key(&d),
        Some(WorkstationId::Uuid([0xd0; 16]))
    );
    assert!(!k.workstations.auto_enrol());
    assert_ne!(k.server.public(), [0; 32]);
    assert!(toml_store::parse(Path::new("keys.toml"), KEYS_TOML).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, KEYS_TOML).unwrap();
    assert_eq!(toml_store::load_keys(&path).unwrap().workstations.len(), 2);
}

/// §12, §3.1: passphrases, wrong lengths, a site secret, a repeated byte
/// and duplicates are refused; errors name the file, line and field.
#[cfg(feature = "std")]
#[test]
fn keys_toml_errors() {
    let sp =
        "server_private = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n";
    let pk = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let cases: Vec<(String, usize, &str, &str)> = vec![
        ("[server]\n".into(), 1, "keys", "no [keys]"),
        (
            "[keys]\nauto_enrol = true\n".into(),
            1,
            "keys.server_private",
            "missing",
        ),
        (
            "[keys]\nserver_private = \"correct horse battery staple\"\n".into(),
            2,
            "keys.server_private",
            "passphrases are not accepted",
        ),
        (
            format!("[keys]\nserver_private = \"{}\"\n", "ab".repeat(32)),
            2,
            "keys.server_private",
            "repeated",
        ),
        (
            format!(
                "[keys]\n{sp}site = {{ id = \"site\", secret = \"the site secret, 16+ bytes\" }}\n"
            ),
            3,
            "keys.site",
            "no site-wide secret",
        ),
        (
            format!(
                "[keys]\n{sp}workstation = [\n {{ mac = \"52:54:00:00:00:zz\", public = \"{pk}\" }},\n]\n"
            ),
            4,
            "keys.workstation.mac",
            "MAC address",
        ),
        (
            format!(
                "[keys]\n{sp}workstation = [\n {{ mac = \"52:54:00:00:00:01\", public = \"lab-pc-07's own key\" }},\n]\n"
            ),
            4,
            "keys.workstation.public",
            "exactly 32 bytes",
        ),
        (
            format!("[keys]\n{sp}workstation = [\n {{ public = \"{pk}\" }},\n]\n"),
            4,
            "keys.workstation",
            "exactly one of `mac`",
        ),
        (
            format!(
                "[keys]\n{sp}workstation = [\n {{ mac = \"52:54:00:00:00:01\", public = \"{pk}\" }},\n {{ mac = \"52:54:00:00:00:02\", public = \"{pk}\" }},\n]\n"
            ),
            5,
            "keys.workstation",
            "already in the key store",
        ),
    ];
    for (text, line, field, msg) in &cases {
        let e = toml_store::parse_keys(Path::new("/etc/preboot/keys.toml"), text).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (*line, *field), "{text}\n→ {e}");
        assert!(e.message.contains(msg), "{text}\n→ {e}");
        assert!(e.to_string().starts_with("/etc/preboot/keys.toml:"));
    }
}

/// §12: one key per object, one object per key, in both stores; only
/// auto-enrolment binds at run time.
#[test]
fn one_key_per_object() {
    let a = WorkstationId::Mac(MAC_A);
    let b = WorkstationId::Mac(MAC_B);
    let mut heap = WorkstationKeys::new(false);
    let mut fixed = KeyList::<4>::new(false);
    heap.insert(a, [1; 32]).unwrap();
    fixed.insert(a, [1; 32]).unwrap();
    assert!(heap.insert(a, [2; 32]).is_err());
    assert!(heap.insert(b, [1; 32]).is_err());
    assert!(fixed.insert(a, [2; 32]).is_err());
    assert!(fixed.insert(b, [1; 32]).is_err());
    assert!(!heap.enrol(&[3; 32], b));
    assert!(!fixed.enrol(&[3; 32], b));
    let mut auto = KeyList::<1>::new(true);
    assert!(auto.enrol(&[3; 32], b));
    assert!(!auto.enrol(&[4; 32], a), "full");
    assert_eq!(auto.object_of_key(&[3; 32]), Some(b));
}

/// §3.4: a refused `WorkstationInfo` after an accepted one keeps the
/// accepted one: queries are still answered for the key's own object.
#[test]
fn refusal_keeps_earlier_information() {
    let now = Instant::ZERO;
    let mut s = lab_server(ServerConfig::default());
    let mut a = establish(&mut s, 1, 1, addr(1), now);
    request(&mut a, &mut s, addr(1), now, |c, now| {
        c.send_info(now, &info(&[MAC_A], None)).unwrap()
    });
    let ev = request(&mut a, &mut s, addr(1), now, |c, now| {
        c.send_info(now, &info(&[MAC_A, MAC_B], None)).unwrap()
    });
    assert_eq!(
        ev,
        [ClientEvent::Refused {
            request: MessageType::WorkstationInfo,
            status: Status::IdentityRefused
        }]
    );
    let ev = request(&mut a, &mut s, addr(1), now, |c, now| {
        c.query_tasks(now).unwrap()
    });
    assert!(matches!(ev[..], [ClientEvent::Reply { .. }]));
    for t in &a.task_reply().unwrap().tasks {
        assert!(!matches!(
            t.action,
            preboot::wire::transaction::messages::TaskAction::CreateImage { .. }
        ));
    }
}
