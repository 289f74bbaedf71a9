//! The image-safe data record (docs/transaction-protocol.md §10) on
//! arbitrary bytes: no panic; a parsed record re-emits to a record that
//! parses to the same value; slot selection never panics and agrees with
//! the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preboot::wire::image_safe::{ImageSafe, ImageSafeError, MIN_LEN, SLOT_LEN, Slot, crc32, select};

/// Most random bytes fail the CRC; when the first input byte is odd, the
/// rest is given a valid header and CRC so the field parser is reached.
fn with_valid_crc(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    if d.len() >= MIN_LEN {
        d[..4].copy_from_slice(b"PBIS");
        d[4] = 1;
        let len = (usize::from(u16::from_be_bytes([d[6], d[7]])) % (d.len() + 1)).max(MIN_LEN);
        d[6..8].copy_from_slice(&(len as u16).to_be_bytes());
        let crc = crc32(&d[..len - 4]);
        d[len - 4..len].copy_from_slice(&crc.to_be_bytes());
    }
    d
}

fuzz_target!(|input: &[u8]| {
    let fixed;
    let data = match input.split_first() {
        Some((flag, rest)) if flag & 1 == 1 => {
            fixed = with_valid_crc(rest);
            &fixed[..]
        }
        Some((_, rest)) => rest,
        None => input,
    };
    if let Ok(rec) = ImageSafe::parse(data) {
        let mut out = [0u8; SLOT_LEN];
        match rec.emit(&mut out) {
            Ok(n) => {
                assert_eq!(n, rec.buffer_len());
                let again = ImageSafe::parse(&out[..n]).expect("emitted record parses");
                assert_eq!(rec, again);
                // Canonical form is a fixed point.
                let mut out2 = [0u8; SLOT_LEN];
                let n2 = again.emit(&mut out2).expect("canonical emit");
                assert_eq!(&out[..n], &out2[..n2]);
            }
            // The emitter always writes the net-mode and pending-flags
            // fields (9 bytes); a full record without them cannot grow
            // past the slot by more than that.
            Err(ImageSafeError::TooLarge { needed }) => {
                let len = usize::from(u16::from_be_bytes([data[6], data[7]]));
                assert!(needed > SLOT_LEN && needed <= len + 9, "needed {needed}, len {len}");
            }
            Err(e) => panic!("a parsed record must emit: {e}"),
        }
    }
    // Two slots out of the input: selection agrees with the parser.
    let mid = data.len() / 2;
    let (a, b) = data.split_at(mid);
    let loaded = select(a, b);
    let (pa, pb) = (ImageSafe::parse(a), ImageSafe::parse(b));
    match loaded.slot {
        Some(Slot::A) => assert_eq!(Ok(&loaded.record), pa.as_ref()),
        Some(Slot::B) => assert_eq!(Ok(&loaded.record), pb.as_ref()),
        None => {
            assert!(pa.is_err() && pb.is_err());
            assert!(loaded.problem.is_some());
            assert_eq!(loaded.record, ImageSafe::default());
        }
    }
});
