//! The workstation's key record on a disk image (docs/transaction-protocol.md
//! §11): made at first boot, found again at the next, counted before each
//! handshake, and never written where a partition lies.

use preboot::driver::key_record_disk::DiskKeySlot;
use preboot::driver::transaction::Urandom;
use preboot::transaction::provision::{
    KEY_RECORD_LEN, KEY_RECORD_OFFSET, KeyRecord, next_handshake, provision,
};
use std::os::unix::fs::FileExt;

fn disk(len: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    (dir, path)
}

/// §11.1, §11.2 steps 1, 2 and 4: a blank disk gets a key from the random
/// source at offset 1 045 504; the next boot reads the same key; every
/// handshake is counted on the disk first.
#[test]
fn first_boot_makes_a_key_and_later_boots_keep_it() {
    let (_d, path) = disk(2 << 20);
    let mut rng = Urandom::open().unwrap();
    let mut rec = provision(&mut DiskKeySlot::open(&path).unwrap(), &mut rng).unwrap();
    let again = provision(&mut DiskKeySlot::open(&path).unwrap(), &mut rng).unwrap();
    assert_eq!(rec.key.public(), again.key.public());
    let mut slot = DiskKeySlot::open(&path).unwrap();
    next_handshake(&mut slot, &mut rec, &mut rng).unwrap();
    next_handshake(&mut slot, &mut rec, &mut rng).unwrap();
    let mut raw = [0u8; KEY_RECORD_LEN];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut raw, KEY_RECORD_OFFSET)
        .unwrap();
    let stored = KeyRecord::parse(&raw).unwrap();
    assert_eq!(stored.counter, 2);
    assert_eq!(stored.key.public(), rec.key.public());
}

/// §10.1, §11.1: a disk whose first partition starts inside the 1 MiB gap,
/// or a disk below 1 MiB, is refused: the key record is never written
/// over a partition.
#[test]
fn never_over_a_partition() {
    let (_d, path) = disk(2 << 20);
    let mut mbr = [0u8; 512];
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr[446 + 4] = 0x83; // Linux
    mbr[446 + 8..446 + 12].copy_from_slice(&63u32.to_le_bytes());
    // 4000 sectors: up to byte 2 080 256, over the key record (§10.5
    // counts a partition by the sectors it covers; an entry of size 0
    // covers none).
    mbr[446 + 12..446 + 16].copy_from_slice(&4000u32.to_le_bytes());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&mbr, 0)
        .unwrap();
    assert!(DiskKeySlot::open(&path).is_err());
    let (_d2, small) = disk(512 * 1024);
    assert!(DiskKeySlot::open(&small).is_err());
}
