//! Text conditions on the workstation's facts (docs/transaction-protocol.md
//! "Rule attributes", §4.3 TLVs 1, 2, 4, 11, 20–27): every attribute with
//! every operator, ASCII case-insensitivity, a missing fact is false, the
//! attribute names (ours and ZENworks'), the TOML syntax and its errors,
//! and a rule with a text condition that picks an image.

use core::net::Ipv4Addr;
use preboot::policy::*;
use preboot::wire::image_safe::{ImageSafe, PendingFlags};
use preboot::wire::transaction::messages::*;

use TextAttr::*;
use TextOp::*;

const MAC: [u8; 6] = [0x00, 0xc0, 0x4f, 0xdc, 0x2a, 0xb5];
const NIC2: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// TLV 2 bytes; as text in byte order `4e1d7c8b-e0e2-5a4c-9f3b-0123456789ab`,
/// in GUID order (dmidecode) `8b7c1d4e-e2e0-4c5a-9f3b-0123456789ab`.
const UUID: [u8; 16] = [
    0x4e, 0x1d, 0x7c, 0x8b, 0xe0, 0xe2, 0x5a, 0x4c, 0x9f, 0x3b, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
];

/// A Dell desktop with every text fact.
fn full() -> WorkstationInfo<'static> {
    let mut wi = WorkstationInfo::default();
    wi.macs.push(MAC).unwrap();
    wi.nics
        .push(Nic {
            mac: NIC2,
            pci: PciId {
                vendor: 0x8086,
                device: 0x15b8,
            },
        })
        .unwrap();
    wi.uuid = Some(UUID);
    wi.cpu_model = Some("Intel(R) Core(TM) i7-8700");
    wi.ip = Some(IpConfig {
        mode: NetMode::Dhcp,
        address: Ipv4Addr::new(137, 65, 95, 12),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        gateway: Ipv4Addr::new(137, 65, 95, 1),
    });
    wi.image_safe = Some(record(Some("LAB-PC-07")));
    wi.smbios = Smbios {
        manufacturer: Some("Dell Inc."),
        product: Some("OptiPlex 7090"),
        version: Some("Rev A01"),
        serial: Some("4CZ1234"),
        bios_vendor: Some("Dell Inc."),
        bios_version: Some("1.17.0"),
        asset_tag: Some("LAB-0042"),
        chassis_type: Some(3),
    };
    wi
}

/// An image-safe record (§10) naming the workstation, as on disk.
fn record(name: Option<&'static str>) -> &'static [u8] {
    let r = ImageSafe {
        workstation_name: name,
        ..ImageSafe::default()
    };
    let mut buf = vec![0u8; 1024];
    let n = r.emit(&mut buf).unwrap();
    buf.truncate(n);
    Box::leak(buf.into_boxed_slice())
}

/// The same machine with no text fact at all (only its MAC: a
/// `WorkstationInfo` needs one).
fn bare() -> WorkstationInfo<'static> {
    let mut wi = WorkstationInfo::default();
    wi.macs.push(MAC).unwrap();
    wi
}

fn holds(wi: &WorkstationInfo<'_>, attribute: TextAttr, op: TextOp, value: &str) -> bool {
    Condition::Text {
        attribute,
        op,
        value: value.into(),
    }
    .holds(&Facts {
        info: wi,
        base_image: None,
        pending: PendingFlags(0),
    })
}

/// "Rule attributes": every attribute under every operator, true and
/// false, with the value in another case than the fact.
#[test]
fn every_attribute_with_every_operator() {
    let wi = full();
    // (attribute, equals, starts_with, ends_with, contains, a value that
    // matches none)
    let table: &[(TextAttr, &str, &str, &str, &str, &str)] = &[
        (SystemManufacturer, "DELL INC.", "dell", "INC.", "l i", "HP"),
        (
            ProductName,
            "optiplex 7090",
            "OPTI",
            "7090",
            "plex",
            "Latitude",
        ),
        (SystemVersion, "rev a01", "REV", "A01", "v a", "B02"),
        (SerialNumber, "4cz1234", "4CZ", "234", "z12", "5CZ"),
        (BiosVendor, "dell inc.", "DELL", "inc.", "ll", "AMI"),
        (BiosVersion, "1.17.0", "1.17", ".0", "17", "2.0"),
        (AssetTag, "lab-0042", "LAB-", "0042", "b-00", "OFFICE"),
        (ChassisType, "desktop", "DESK", "top", "skt", "Notebook"),
        (
            CpuModel,
            "intel(r) core(tm) i7-8700",
            "INTEL",
            "8700",
            "i7",
            "Ryzen",
        ),
        (
            Uuid,
            "4E1D7C8B-E0E2-5A4C-9F3B-0123456789AB",
            "4e1d7c8b",
            "456789AB",
            "e0e2",
            "00000000",
        ),
        (
            MacAddress,
            "00C04FDC2AB5",
            "00:c0:4f",
            "2a:b5",
            "4fdc",
            "aa:bb",
        ),
        (
            IpAddress,
            "137.65.95.12",
            "137.65.95.",
            ".12",
            "65.95",
            "10.1.",
        ),
        (WorkstationName, "lab-pc-07", "LAB-", "07", "pc", "OFFICE"),
    ];
    assert_eq!(table.len(), TextAttr::ALL.len());
    for &(a, eq, sw, ew, co, none) in table {
        assert!(holds(&wi, a, Equals, eq), "{a:?} equals {eq}");
        assert!(holds(&wi, a, StartsWith, sw), "{a:?} starts_with {sw}");
        assert!(holds(&wi, a, EndsWith, ew), "{a:?} ends_with {ew}");
        assert!(holds(&wi, a, Contains, co), "{a:?} contains {co}");
        // The operators are not each other: a prefix is not equal, a
        // suffix does not start it, a prefix does not end it.
        assert!(!holds(&wi, a, Equals, sw), "{a:?} equals {sw}");
        assert!(!holds(&wi, a, StartsWith, ew), "{a:?} starts_with {ew}");
        assert!(!holds(&wi, a, EndsWith, sw), "{a:?} ends_with {sw}");
        for op in TextOp::ALL {
            assert!(!holds(&wi, a, op, none), "{a:?} {op:?} {none}");
        }
    }
}

/// "Rule attributes": a fact the workstation did not send makes every
/// operator false, even `contains ""` (which holds for any fact sent).
#[test]
fn missing_fact_is_false() {
    let wi = bare();
    for a in TextAttr::ALL {
        if a == MacAddress {
            continue; // a WorkstationInfo always has a MAC
        }
        for op in TextOp::ALL {
            assert!(!holds(&wi, a, op, ""), "{a:?} {op:?}");
            assert!(!holds(&wi, a, op, "x"), "{a:?} {op:?}");
        }
    }
    let wi = full();
    for a in TextAttr::ALL {
        assert!(holds(&wi, a, Contains, ""), "{a:?}");
    }
}

/// The workstation name comes from a valid image-safe record only: a
/// record without the field, or one whose CRC does not check, has none.
#[test]
fn workstation_name_needs_a_valid_record() {
    let mut wi = bare();
    wi.image_safe = Some(record(None));
    assert!(!holds(&wi, WorkstationName, Contains, ""));
    let mut bad = record(Some("LAB-PC-07")).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1; // the CRC
    wi.image_safe = Some(Box::leak(bad.into_boxed_slice()));
    assert!(!holds(&wi, WorkstationName, Equals, "LAB-PC-07"));
    wi.image_safe = Some(record(Some("LAB-PC-07")));
    assert!(holds(&wi, WorkstationName, Equals, "LAB-PC-07"));
}

/// Case-insensitivity is ASCII only: `É` and `é` differ, `I` and `i`
/// do not.
#[test]
fn ascii_case_insensitive_only() {
    let mut wi = bare();
    wi.smbios.manufacturer = Some("Société Générale IT");
    assert!(holds(&wi, SystemManufacturer, Contains, "SOCIé"));
    assert!(!holds(&wi, SystemManufacturer, Contains, "SOCIÉ"));
    assert!(holds(&wi, SystemManufacturer, EndsWith, "it"));
}

/// MAC addresses: every MAC of TLV 1 and TLV 8 is tried; separators are
/// ignored on both sides, so ZENworks' `00C04FDC2AB5` and our
/// `00:c0:4f:dc:2a:b5` are the same value.
#[test]
fn mac_address_forms_and_every_nic() {
    let wi = full();
    for v in ["00C04FDC2AB5", "00:c0:4f:dc:2a:b5", "00-C0-4F-DC-2A-B5"] {
        assert!(holds(&wi, MacAddress, Equals, v), "{v}");
    }
    // The second interface's MAC (TLV 8 only).
    assert!(holds(&wi, MacAddress, StartsWith, "52:54:00"));
    assert!(holds(&wi, MacAddress, Equals, "525400123456"));
    // Longer than any MAC: no match, no panic.
    assert!(!holds(&wi, MacAddress, Contains, &"0".repeat(100)));
}

/// The UUID matches in byte order (as `[[workstation]] uuid` writes it)
/// and in GUID order (dmidecode, `product_uuid`), dashes optional.
#[test]
fn uuid_in_both_orders() {
    let wi = full();
    for v in [
        "4e1d7c8b-e0e2-5a4c-9f3b-0123456789ab",
        "8b7c1d4e-e2e0-4c5a-9f3b-0123456789ab",
        "8B7C1D4EE2E04C5A9F3B0123456789AB",
    ] {
        assert!(holds(&wi, Uuid, Equals, v), "{v}");
    }
    assert!(holds(&wi, Uuid, StartsWith, "8b7c1d4e-e2e0"));
    assert!(!holds(&wi, Uuid, Equals, "8b7c1d4e"));
}

/// The chassis type matches by its SMBIOS name or its number; a number
/// without a name (0, or past the table) matches by number only.
#[test]
fn chassis_type_by_name_or_number() {
    let mut wi = full();
    wi.smbios.chassis_type = Some(10);
    assert!(holds(&wi, ChassisType, Equals, "notebook"));
    assert!(holds(&wi, ChassisType, Equals, "10"));
    assert!(!holds(&wi, ChassisType, Equals, "1"));
    wi.smbios.chassis_type = Some(0x80 | 9); // lock bit set
    assert!(holds(&wi, ChassisType, Equals, "Laptop"));
    assert!(holds(&wi, ChassisType, Equals, "9"));
    wi.smbios.chassis_type = Some(99);
    assert!(holds(&wi, ChassisType, Equals, "99"));
    assert!(!holds(&wi, ChassisType, Contains, "a"));
}

/// The old `cpu_model` condition is `contains` on the CPU model.
#[test]
fn cpu_model_is_contains() {
    let wi = full();
    for v in ["core(TM) I7", "ryzen", ""] {
        let old = Condition::CpuModel(v.into()).holds(&Facts {
            info: &wi,
            base_image: None,
            pending: PendingFlags(0),
        });
        assert_eq!(old, holds(&wi, CpuModel, Contains, v), "{v}");
    }
}

/// Attribute names: ours (snake_case) and the ZENworks names, any case,
/// space, `-` and `_` alike; anything else is unknown.
#[test]
fn attribute_names() {
    for (name, a) in [
        ("System Manufacturer", SystemManufacturer),
        ("system_manufacturer", SystemManufacturer),
        ("SYSTEM-MANUFACTURER", SystemManufacturer),
        ("Model", ProductName),
        ("Product Name", ProductName),
        ("Serial Number", SerialNumber),
        ("BIOS Vendor", BiosVendor),
        ("BIOS Version", BiosVersion),
        ("Asset Tag", AssetTag),
        ("Chassis Type", ChassisType),
        ("CPU Model", CpuModel),
        ("UUID", Uuid),
        ("MAC Address", MacAddress),
        ("IP Address", IpAddress),
        ("system version", SystemVersion),
        ("Computer Name", WorkstationName),
        ("hostname", WorkstationName),
    ] {
        assert_eq!(TextAttr::from_name(name), Some(a), "{name}");
    }
    for a in TextAttr::ALL {
        assert_eq!(TextAttr::from_name(a.name()), Some(a));
    }
    for bad in ["", "Manufacturer Name", "sound card", "bios", "ram_mb"] {
        assert_eq!(TextAttr::from_name(bad), None, "{bad}");
    }
}

/// A rule with a text condition picks its image: an unregistered Dell
/// (server policy rules, notes §1.5) gets the Dell image, a Lenovo the
/// Lenovo one (found by BIOS version), a machine with no SMBIOS facts
/// the fallback — through the transaction server's `Policy::tasks`.
#[cfg(feature = "std")] // the TOML store is std-only
#[test]
fn toml_text_rule_picks_the_image() {
    use preboot::Instant;
    use preboot::transaction::Policy;
    let toml = r#"
[server]
image_server = "10.0.0.5"

[[server.rule]]
name = "dell desktops"
image = "images/dell.img"
when = { all = [ { attribute = "System Manufacturer", starts_with = "dell" },
                 { attribute = "chassis_type", equals = "Desktop" } ] }

[[server.rule]]
name = "lenovo by bios"
image = "images/lenovo.img"
when = { attribute = "BIOS Version", starts_with = "N1EET" }

[[server.rule]]
name = "others"
image = "images/generic.img"
when = { not = { attribute = "asset_tag", contains = "" } }
"#;
    let store = preboot::driver::policy_store::parse(std::path::Path::new("p.toml"), toml).unwrap();
    assert_eq!(
        store.server.rules[1].when,
        Condition::Text {
            attribute: BiosVersion,
            op: StartsWith,
            value: "N1EET".into()
        }
    );
    let mut proxy = ImagingProxy::new(store);
    let mut image_for = |wi: &WorkstationInfo<'_>| -> Option<String> {
        let who = WorkstationId::Mac(wi.macs[0]);
        let reply = proxy.tasks(Instant::ZERO, &who, wi).unwrap();
        reply.tasks.iter().find_map(|t| match &t.action {
            TaskAction::RestoreImage { image, .. } => Some(image.to_string()),
            _ => None,
        })
    };
    assert_eq!(image_for(&full()).as_deref(), Some("images/dell.img"));
    let mut lenovo = bare();
    lenovo.macs[0] = NIC2;
    lenovo.smbios.manufacturer = Some("LENOVO");
    lenovo.smbios.bios_version = Some("N1EET90W (1.65 )");
    assert_eq!(image_for(&lenovo).as_deref(), Some("images/lenovo.img"));
    let mut other = bare();
    other.macs[0] = [2, 0, 0, 0, 0, 9];
    assert_eq!(image_for(&other).as_deref(), Some("images/generic.img"));
}

/// The loader's errors name the field: an unknown attribute (listing the
/// known ones), no operator, two operators, an operator without an
/// attribute, an unknown operator key.
#[cfg(feature = "std")] // the TOML store is std-only
#[test]
fn toml_text_condition_errors() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{ attribute = "Sound Card", equals = "x" }"#,
            "server.rule.when.attribute",
            "unknown attribute \"Sound Card\" (expected one of system_manufacturer, product_name",
        ),
        (
            r#"{ attribute = "BIOS Version" }"#,
            "server.rule.when",
            "exactly one operator",
        ),
        (
            r#"{ attribute = "BIOS Version", equals = "a", contains = "b" }"#,
            "server.rule.when",
            "exactly one operator",
        ),
        (
            r#"{ starts_with = "Dell" }"#,
            "server.rule.when.starts_with",
            "needs `attribute",
        ),
        (
            r#"{ attribute = "BIOS Version", begins_with = "A" }"#,
            "begins_with",
            "unknown",
        ),
        (
            r#"{ attribute = "BIOS Version", equals = "a", ram_mb = 1 }"#,
            "server.rule.when",
            "exactly one key",
        ),
    ];
    for (when, field, msg) in cases {
        let toml = format!("[[server.rule]]\nimage = \"a\"\nwhen = {when}\n");
        let e = preboot::driver::policy_store::parse(std::path::Path::new("p.toml"), &toml)
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.toml:3"), "{when}: {e}");
        assert!(e.contains(field), "{when}: {e}");
        assert!(e.contains(msg), "{when}: {e}");
    }
    let long = format!(
        "[[server.rule]]\nimage = \"a\"\nwhen = {{ attribute = \"uuid\", equals = \"{}\" }}\n",
        "a".repeat(256)
    );
    let e = preboot::driver::policy_store::parse(std::path::Path::new("p.toml"), &long)
        .unwrap_err()
        .to_string();
    assert!(e.contains("255"), "{e}");
}
