//! The workstation's key record and its first-boot key
//! (docs/transaction-protocol.md §11): the 52-byte record kept in 1 KiB of
//! a 4 KiB sector no image-safe slot shares ([`KeyRecord`]), and the
//! provisioning steps of §11.2 over any storage ([`KeySlot`]) and random
//! source.
//!
//! ```
//! use preboot::transaction::provision::{KeySlot, SlotError, provision, next_handshake};
//!
//! struct Mem([u8; 1024]);
//! impl KeySlot for Mem {
//!     fn read(&mut self, buf: &mut [u8; 1024]) -> Result<(), SlotError> { buf.copy_from_slice(&self.0); Ok(()) }
//!     fn write(&mut self, record: &[u8]) -> Result<(), SlotError> { self.0[..record.len()].copy_from_slice(record); Ok(()) }
//! }
//! let mut disk = Mem([0; 1024]);
//! let mut n = 0u8;
//! let mut rng = |b: &mut [u8]| for x in b { n = n.wrapping_mul(5).wrapping_add(3); *x = n; };
//! let mut rec = provision(&mut disk, &mut rng).unwrap();       // a new key, written
//! let again = provision(&mut disk, &mut rng).unwrap();         // read back next boot
//! assert_eq!(rec.key.public(), again.key.public());
//! let seed = next_handshake(&mut disk, &mut rec, &mut rng).unwrap();
//! assert_eq!(rec.counter, 1);
//! # let _ = seed;
//! ```

use super::client::HandshakeSeed;
use super::keys::{KeyError, StaticKey};
use super::{NoRandomness, Random};
use crate::wire::image_safe::crc32;

/// Byte offset of the key record on the disk (§11.1): 1024 bytes in 4 KiB
/// sector 255, inside the image-safe area and in no image-safe slot's
/// 4 KiB sector (§10.1).
pub const KEY_RECORD_OFFSET: u64 = 1_045_504;

// §10.1/§11.1: the key area is inside the image-safe area (checked free of
// partitions, §10.5), within one 4 KiB sector, and not in a slot's sector;
// it does not overlap the legacy slots it shares sector 255 with.
const _: () = {
    use crate::wire::image_safe::{
        LEGACY_SLOT_A_OFFSET, RESERVED_END, RESERVED_START, SECTOR_ALIGN, SLOT_A_OFFSET,
        SLOT_B_OFFSET,
    };
    let end = KEY_RECORD_OFFSET + KEY_AREA_LEN as u64;
    assert!(KEY_RECORD_OFFSET >= RESERVED_START && end <= RESERVED_END);
    assert!(KEY_RECORD_OFFSET / SECTOR_ALIGN == (end - 1) / SECTOR_ALIGN);
    assert!(KEY_RECORD_OFFSET / SECTOR_ALIGN != SLOT_A_OFFSET / SECTOR_ALIGN);
    assert!(KEY_RECORD_OFFSET / SECTOR_ALIGN != SLOT_B_OFFSET / SECTOR_ALIGN);
    assert!(end <= LEGACY_SLOT_A_OFFSET);
};
/// Size of the record (§11.1).
pub const KEY_RECORD_LEN: usize = 52;
/// Size of the area that holds it.
pub const KEY_AREA_LEN: usize = 1024;
const MAGIC: &[u8; 4] = b"PBKY";

/// Why the key record cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The area is blank (all 0x00 or all 0xFF): no key yet.
    #[error("no key record")]
    Blank,
    /// Present but not valid (magic, version, length or CRC).
    #[error("the key record is corrupt ({0})")]
    Corrupt(&'static str),
    /// The key in it is not usable.
    #[error("the key record holds an unusable key: {0}")]
    Key(KeyError),
}

/// The workstation's key and boot counter (§11.1).
#[derive(Clone, Debug)]
pub struct KeyRecord {
    /// The static key pair.
    pub key: StaticKey,
    /// The boot counter, incremented before every handshake (§3.1).
    pub counter: u64,
}

impl KeyRecord {
    /// Read a record from the start of the key area.
    pub fn parse(area: &[u8]) -> Result<Self, RecordError> {
        let head = area.get(..KEY_RECORD_LEN).ok_or(RecordError::Blank)?;
        if area.iter().all(|&b| b == 0) || area.iter().all(|&b| b == 0xFF) {
            return Err(RecordError::Blank);
        }
        if &head[..4] != MAGIC {
            return Err(RecordError::Corrupt("magic"));
        }
        if head[4] != 1 {
            return Err(RecordError::Corrupt("version"));
        }
        if head[5] != 0 {
            return Err(RecordError::Corrupt(
                "flags: key in a TPM is not supported here",
            ));
        }
        if u16::from_be_bytes([head[6], head[7]]) as usize != KEY_RECORD_LEN {
            return Err(RecordError::Corrupt("length"));
        }
        let crc = u32::from_be_bytes([head[48], head[49], head[50], head[51]]);
        if crc32(&head[..48]) != crc {
            return Err(RecordError::Corrupt("CRC"));
        }
        let mut k = [0u8; 32];
        k.copy_from_slice(&head[8..40]);
        let mut c = [0u8; 8];
        c.copy_from_slice(&head[40..48]);
        Ok(KeyRecord {
            key: StaticKey::from_bytes(k).map_err(RecordError::Key)?,
            counter: u64::from_be_bytes(c),
        })
    }

    /// The record's 52 bytes.
    pub fn emit(&self) -> [u8; KEY_RECORD_LEN] {
        let mut out = [0u8; KEY_RECORD_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = 1;
        out[5] = 0;
        out[6..8].copy_from_slice(&(KEY_RECORD_LEN as u16).to_be_bytes());
        out[8..40].copy_from_slice(&self.key.to_private_bytes());
        out[40..48].copy_from_slice(&self.counter.to_be_bytes());
        let crc = crc32(&out[..48]);
        out[48..].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

/// The storage could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("key storage failed")]
pub struct SlotError;

/// Where the key record lives (the disk area of §11.1, a file, NVRAM).
pub trait KeySlot {
    /// Read the whole key area.
    fn read(&mut self, area: &mut [u8; KEY_AREA_LEN]) -> Result<(), SlotError>;
    /// Write `record` at the start of the area and flush it.
    fn write(&mut self, record: &[u8]) -> Result<(), SlotError>;
}

/// Why provisioning stops the boot (§11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// No random source: no key can be made.
    #[error("no random source: cannot create this workstation's key")]
    NoRandomness,
    /// A record is there but unusable; it is not replaced silently.
    #[error("{0}; clear it to make a new key (which must then be bound again)")]
    Record(RecordError),
    /// The storage failed, or did not keep what was written.
    #[error("the key record cannot be stored")]
    Storage,
}

/// §11.2 steps 1–3: the workstation's key record, made and stored on
/// first boot.
pub fn provision<S: KeySlot + ?Sized, R: Random + ?Sized>(
    slot: &mut S,
    random: &mut R,
) -> Result<KeyRecord, ProvisionError> {
    let mut area = [0u8; KEY_AREA_LEN];
    slot.read(&mut area).map_err(|_| ProvisionError::Storage)?;
    match KeyRecord::parse(&area) {
        Ok(r) => return Ok(r),
        Err(RecordError::Blank) => {}
        Err(e) => return Err(ProvisionError::Record(e)),
    }
    let key = StaticKey::generate(random).map_err(|_| ProvisionError::NoRandomness)?;
    let rec = KeyRecord { key, counter: 0 };
    let bytes = rec.emit();
    slot.write(&bytes).map_err(|_| ProvisionError::Storage)?;
    slot.read(&mut area).map_err(|_| ProvisionError::Storage)?;
    if area[..KEY_RECORD_LEN] != bytes {
        return Err(ProvisionError::Storage);
    }
    Ok(rec)
}

/// §11.2 step 4: count this handshake (written back first), then draw the
/// `Hello` nonce and the hedged ephemeral key (§3.1).
pub fn next_handshake<S: KeySlot + ?Sized, R: Random + ?Sized>(
    slot: &mut S,
    record: &mut KeyRecord,
    random: &mut R,
) -> Result<HandshakeSeed, ProvisionError> {
    record.counter = record.counter.wrapping_add(1);
    slot.write(&record.emit())
        .map_err(|_| ProvisionError::Storage)?;
    let mut fresh = [0u8; 48];
    random
        .try_fill(&mut fresh)
        .map_err(|NoRandomness| ProvisionError::NoRandomness)?;
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&fresh[..16]);
    let mut r = [0u8; 32];
    r.copy_from_slice(&fresh[16..]);
    Ok(HandshakeSeed {
        nonce,
        ephemeral: record.key.hedged_ephemeral(&r, record.counter),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem([u8; KEY_AREA_LEN], bool);
    impl KeySlot for Mem {
        fn read(&mut self, a: &mut [u8; KEY_AREA_LEN]) -> Result<(), SlotError> {
            a.copy_from_slice(&self.0);
            Ok(())
        }
        fn write(&mut self, r: &[u8]) -> Result<(), SlotError> {
            if self.1 {
                self.0[..r.len()].copy_from_slice(r);
            }
            Ok(())
        }
    }

    /// §11.2: a corrupt record is not replaced; storage that loses the
    /// write stops the boot; no randomness makes no key.
    #[test]
    fn provisioning_refuses_what_it_cannot_trust() {
        let mut n = 1u8;
        let mut rng = |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_mul(5).wrapping_add(3);
                *x = n;
            }
        };
        let mut disk = Mem([0; KEY_AREA_LEN], true);
        let rec = provision(&mut disk, &mut rng).unwrap();
        disk.0[20] ^= 1;
        assert_eq!(
            provision(&mut disk, &mut rng).unwrap_err(),
            ProvisionError::Record(RecordError::Corrupt("CRC"))
        );
        let mut lossy = Mem([0; KEY_AREA_LEN], false);
        assert_eq!(
            provision(&mut lossy, &mut rng).unwrap_err(),
            ProvisionError::Storage
        );
        let mut zero = |b: &mut [u8]| b.fill(0);
        let mut blank = Mem([0xFF; KEY_AREA_LEN], true);
        assert_eq!(
            provision(&mut blank, &mut zero).unwrap_err(),
            ProvisionError::NoRandomness
        );
        assert_eq!(KeyRecord::parse(&rec.emit()).unwrap().counter, 0);
    }
}
