//! The SMBIOS facts of `WorkstationInfo` (docs/transaction-protocol.md §4.3
//! TLVs 20–27, limits in §8, TLV rules in §2.3): exact bytes, round trip,
//! the 64-byte string limit on both sides, single TLVs, the chassis type's
//! size, any order accepted.

use preboot::wire::transaction::messages::{Smbios, WorkstationInfo};
use preboot::wire::transaction::smbios::MAX_SMBIOS_STRING;
use preboot::wire::transaction::{EmitError, ParseError, Payload};

const MAC_TLV: [u8; 9] = [1, 0, 6, 0x52, 0x54, 0, 0x12, 0x34, 0x56];

fn info(smbios: Smbios<'_>) -> WorkstationInfo<'_> {
    let mut i = WorkstationInfo {
        smbios,
        ..WorkstationInfo::default()
    };
    i.macs.push([0x52, 0x54, 0, 0x12, 0x34, 0x56]).unwrap();
    i
}

fn emit(i: &WorkstationInfo<'_>) -> Result<Vec<u8>, EmitError> {
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b)?;
    Ok(b)
}

fn with(tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = MAC_TLV.to_vec();
    for (k, v) in tlvs {
        b.push(*k);
        b.extend_from_slice(&(v.len() as u16).to_be_bytes());
        b.extend_from_slice(v);
    }
    b
}

/// §4.3: every SMBIOS TLV, its type number and its bytes, after the MAC
/// in canonical (ascending) order; parsed back equal.
#[test]
fn smbios_tlvs_exact_bytes_and_round_trip() {
    let i = info(Smbios {
        manufacturer: Some("Dell Inc."),
        product: Some("OptiPlex 7090"),
        version: Some("1.0"),
        serial: Some("4CZ1234"),
        bios_vendor: Some("Dell Inc."),
        bios_version: Some("1.17.0"),
        asset_tag: Some("LAB-0042"),
        chassis_type: Some(3),
    });
    let bytes = emit(&i).unwrap();
    let expected = with(&[
        (20, b"Dell Inc."),
        (21, b"OptiPlex 7090"),
        (22, b"1.0"),
        (23, b"4CZ1234"),
        (24, b"Dell Inc."),
        (25, b"1.17.0"),
        (26, b"LAB-0042"),
        (27, &[3]),
    ]);
    assert_eq!(bytes, expected);
    assert_eq!(bytes.len(), i.buffer_len());
    assert_eq!(WorkstationInfo::parse(&bytes).unwrap(), i);
}

/// §2.3: receivers accept any order; an absent TLV stays `None`.
#[test]
fn any_order_and_absent_fields() {
    let b = with(&[(27, &[10]), (25, b"N1EET90W"), (20, b"LENOVO")]);
    let i = WorkstationInfo::parse(&b).unwrap();
    assert_eq!(i.smbios.manufacturer, Some("LENOVO"));
    assert_eq!(i.smbios.bios_version, Some("N1EET90W"));
    assert_eq!(i.smbios.chassis_type, Some(10));
    assert_eq!(i.smbios.product, None);
    assert_eq!(i.smbios.serial, None);
    // Emitting gives the canonical order.
    assert_eq!(
        emit(&i).unwrap(),
        with(&[(20, b"LENOVO"), (25, b"N1EET90W"), (27, &[10])])
    );
}

/// §8: an SMBIOS string is at most 64 bytes: 64 passes both ways, 65 is
/// `BadPayload` (BadString) when parsed and refused by the builder.
#[test]
fn string_limit_is_64_bytes() {
    assert_eq!(MAX_SMBIOS_STRING, 64);
    let ok = "s".repeat(64);
    let long = "s".repeat(65);
    for kind in 20u8..=26 {
        let b = with(&[(kind, ok.as_bytes())]);
        assert!(WorkstationInfo::parse(&b).is_ok(), "tlv {kind}");
        let b = with(&[(kind, long.as_bytes())]);
        assert_eq!(
            WorkstationInfo::parse(&b),
            Err(ParseError::BadString { field: kind })
        );
    }
    let i = info(Smbios {
        bios_version: Some(&long),
        ..Smbios::default()
    });
    assert_eq!(emit(&i), Err(EmitError::FieldTooLong { field: 25 }));
    let i = info(Smbios {
        serial: Some(&ok),
        ..Smbios::default()
    });
    assert!(emit(&i).is_ok());
}

/// §2.3: each SMBIOS TLV is single; a string that is not UTF-8 and a
/// chassis type that is not one byte are refused.
#[test]
fn single_utf8_and_sizes() {
    for kind in 20u8..=27 {
        let v: &[u8] = if kind == 27 { &[1] } else { b"x" };
        assert_eq!(
            WorkstationInfo::parse(&with(&[(kind, v), (kind, v)])),
            Err(ParseError::Duplicate { field: kind })
        );
    }
    assert_eq!(
        WorkstationInfo::parse(&with(&[(21, &[0xC3, 0x28])])),
        Err(ParseError::BadString { field: 21 })
    );
    for bad in [&[][..], &[1, 2][..]] {
        assert_eq!(
            WorkstationInfo::parse(&with(&[(27, bad)])),
            Err(ParseError::BadField { field: 27 })
        );
    }
    // An empty string is a string (a firmware that reports "").
    let b = with(&[(23, b"")]);
    let i = WorkstationInfo::parse(&b).unwrap();
    assert_eq!(i.smbios.serial, Some(""));
}

/// §4.3 / §8: all SMBIOS TLVs at their limits take 7 × 67 + 4 = 473
/// bytes, and round-trip.
#[test]
fn full_smbios_size() {
    let s = "m".repeat(64);
    let i = info(Smbios {
        manufacturer: Some(&s),
        product: Some(&s),
        version: Some(&s),
        serial: Some(&s),
        bios_vendor: Some(&s),
        bios_version: Some(&s),
        asset_tag: Some(&s),
        chassis_type: Some(0xff),
    });
    assert_eq!(i.buffer_len(), 9 + 7 * 67 + 4);
    let b = emit(&i).unwrap();
    assert_eq!(WorkstationInfo::parse(&b).unwrap(), i);
}
