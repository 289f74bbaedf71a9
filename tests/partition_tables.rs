//! The image-safe area is never written over a partition
//! (docs/transaction-protocol.md §10.5, §11.1), checked on disk images made
//! by the real partitioning tools: `sfdisk` (util-linux, Debian `fdisk`)
//! for MBR disks, `sgdisk` (Debian `gdisk`) for GPT disks, and `sgdisk` on
//! a loop device with 4096-byte logical sectors for a 4Kn disk.
//!
//! Every refused write is checked to have left the disk's bytes unchanged;
//! every allowed one to have left the partition's bytes unchanged.
//! Without the tools the tests are listed as ignored, with the reason
//! (build.rs); with `PREBOOT_CI=1` they run and fail.

use preboot::driver::image_safe_disk::{
    ImageSafeDiskError, check_image_safe_area, read_image_safe, write_image_safe,
};
use preboot::driver::key_record_disk::DiskKeySlot;
use preboot::wire::disk_scan::{Conflict, Refusal, Scheme, TableKind};
use preboot::wire::image_safe::{ImageSafe, RESERVED_END, RESERVED_START, Slot};
use preboot::wire::partition_table::TableError;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn image(size: u64) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(size).unwrap();
    f
}

fn run(prog: &str, args: &[&str], stdin: &str) {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {prog}: {e} (Debian packages fdisk, gdisk)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An MBR disk image of 16 MiB made by sfdisk from `script`.
fn sfdisk_image(script: &str) -> tempfile::NamedTempFile {
    let d = image(16 << 20);
    run("sfdisk", &["-q", d.path().to_str().unwrap()], script);
    d
}

/// A GPT disk image of 16 MiB made by sgdisk with `args`.
fn sgdisk_image(args: &[&str]) -> tempfile::NamedTempFile {
    let d = image(16 << 20);
    let mut all = args.to_vec();
    all.push(d.path().to_str().unwrap());
    run("sgdisk", &all, "");
    d
}

fn record() -> ImageSafe<'static> {
    ImageSafe {
        base_image: Some("images/win11.img"),
        ..ImageSafe::default()
    }
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Writing is refused with an overlap, the disk is left as it was, and
/// the message names the partition.
fn refused(path: &Path) -> (Conflict, String) {
    let before = bytes(path);
    let err = write_image_safe(path, &record()).expect_err("write must be refused");
    let msg = err.to_string();
    let key = DiskKeySlot::open(path).expect_err("the key record must be refused too");
    assert_eq!(key.to_string(), msg);
    assert_eq!(bytes(path), before, "a refused write changed the disk");
    match err {
        ImageSafeDiskError::Refused(Refusal::Overlap {
            conflict,
            start,
            end,
        }) => {
            assert_eq!((start, end), (RESERVED_START, RESERVED_END));
            (conflict, msg)
        }
        other => panic!("expected an overlap, got {other:?}"),
    }
}

/// Writing is allowed: both slots and the key record land, and no byte
/// outside the image-safe area (tables, partitions) is touched.
fn allowed(path: &Path) {
    let before = bytes(path);
    assert_eq!(write_image_safe(path, &record()).unwrap(), Slot::A);
    assert_eq!(write_image_safe(path, &record()).unwrap(), Slot::B);
    let slots = read_image_safe(path).unwrap();
    assert_eq!(slots.loaded().record.base_image, Some("images/win11.img"));
    let mut key = DiskKeySlot::open(path).unwrap();
    let mut rng = preboot::driver::transaction::Urandom::open().unwrap();
    preboot::transaction::provision::provision(&mut key, &mut rng).unwrap();
    let after = bytes(path);
    let (s, e) = (RESERVED_START as usize, RESERVED_END as usize);
    assert!(
        after[..s] == before[..s],
        "a write touched bytes below the image-safe area"
    );
    assert!(
        after[e..] == before[e..],
        "a write touched bytes above 1 MiB"
    );
    assert!(after[s..e] != before[s..e]);
}

fn gpt_partition(c: &Conflict) -> &preboot::wire::disk_scan::Partition {
    match c {
        Conflict::Partition(p) if p.table == TableKind::Gpt => p,
        other => panic!("expected a GPT partition, got {other:?}"),
    }
}

/// §10.5: an MBR disk with its first partition at 1 MiB (sfdisk's default
/// alignment) may hold the image-safe data.
#[test]
#[cfg_attr(
    preboot_skip_partition_tools,
    ignore = "needs sfdisk (fdisk) and sgdisk (gdisk)"
)]
fn mbr_first_partition_at_1_mib_is_allowed() {
    let d = sfdisk_image("label: dos\nstart=2048, size=8192, type=83\nsize=4096, type=7\n");
    let scan = check_image_safe_area(d.path()).unwrap();
    assert_eq!((scan.scheme, scan.partitions), (Scheme::Mbr, 2));
    allowed(d.path());
}

/// §10.5: an MBR partition at sector 63 (old DOS alignment) covers the
/// area: refused, the partition named with its range.
#[test]
#[cfg_attr(
    preboot_skip_partition_tools,
    ignore = "needs sfdisk (fdisk) and sgdisk (gdisk)"
)]
fn mbr_partition_at_sector_63_is_refused() {
    let d = sfdisk_image("label: dos\nstart=63, size=8192, type=83\n");
    let (c, msg) = refused(d.path());
    match c {
        Conflict::Partition(p) => {
            assert_eq!((p.table, p.index, p.kind), (TableKind::Mbr, 1, 0x83));
            assert_eq!((p.extent.first_lba, p.extent.last_lba), (63, 63 + 8191));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        msg.contains("MBR partition 1 (type 0x83) at LBA 63–8254"),
        "{msg}"
    );
    // A small partition that ends below the area does not overlap it.
    let d =
        sfdisk_image("label: dos\nstart=63, size=1000, type=83\nstart=4096, size=4096, type=83\n");
    allowed(d.path());
}

/// §10.5: the extended partition counts as a whole (its logical partitions
/// lie inside it).
#[test]
#[cfg_attr(
    preboot_skip_partition_tools,
    ignore = "needs sfdisk (fdisk) and sgdisk (gdisk)"
)]
fn mbr_extended_partition_over_the_area_is_refused() {
    let d = sfdisk_image(
        "label: dos\nstart=63, size=1000, type=83\nstart=1100, size=20000, type=5\nstart=1200, size=500, type=83\n",
    );
    let (c, msg) = refused(d.path());
    assert!(
        matches!(c, Conflict::Partition(ref p) if p.index == 2 && p.kind == 5),
        "{msg}"
    );
}

/// §10.5: a GPT disk made with sgdisk's default alignment (first partition
/// at LBA 2048) may hold the image-safe data; its protective MBR is not a
/// partition.
#[test]
#[cfg_attr(
    preboot_skip_partition_tools,
    ignore = "needs sfdisk (fdisk) and sgdisk (gdisk)"
)]
fn gpt_default_alignment_is_allowed() {
    let d = sgdisk_image(&[
        "-n",
        "1:0:+4M",
        "-t",
        "1:ef00",
        "-c",
        "1:EFI system",
        "-n",
        "2:0:+4M",
    ]);
    let scan = check_image_safe_area(d.path()).unwrap();
    assert_eq!(scan.scheme, Scheme::Gpt { backup: false });
    assert_eq!((scan.sector_size, scan.partitions), (512, 2));
    allowed(d.path());
}

/// §10.5: GPT partitions starting at LBA 34 (the first usable sector) or
/// 40 cover the area (the bug: the protective MBR was skipped and the GPT
/// never read, so they were written over).
#[test]
#[cfg_attr(
    preboot_skip_partition_tools,
    ignore = "needs sfdisk (fdisk) and sgdisk (gdisk)"
)]
fn gpt_partition_at_sector_34_or_40_is_refused() {
    let d = sgdisk_image(&["-a", "1", "-n", "1:34:+4M", "-c", "1:early"]);
    let (c, msg) = refused(d.path());
    let p = gpt_partition(&c);
    assert_eq!(
        (p.index, p.name.as_str(), p.extent.first_lba),
        (1, "early", 34)
    );
    assert!(
        msg.contains("GPT partition 1 \"early\" at LBA 34–8225"),
        "{msg}"
    );

    let d = sgdisk_image(&["-a", "8", "-n", "3:40:+4M"]);
    let (c, _) = refused(d.path());
    let p = gpt_partition(&c);
    assert_eq!((p.index, p.extent.first_lba, p.sector_size), (3, 40, 512));

    // A BIOS boot partition that ends below the area is not in the way.
    let d = sgdisk_image(&[
        "-a",
        "1",
        "-n",
        "1:34:1000",
        "-t",
        "1:ef02",
        "-n",
        "2:2048:+4M",
    ]);
    allowed(d.path());
}

/// UEFI 2.10 §5.3.2: a damaged primary header (or entry array) → the
/// backup header at the last LBA is read; the answer stays right both
/// ways. Both damaged → a clear error, nothing written.
#[test]
#[cfg_attr(
    preboot_skip_partition_tools,
    ignore = "needs sfdisk (fdisk) and sgdisk (gdisk)"
)]
fn gpt_with_a_damaged_primary_uses_the_backup() {
    // Refused from the backup.
    let d = sgdisk_image(&["-a", "8", "-n", "1:40:+4M", "-c", "1:low"]);
    d.as_file().write_all_at(&[0xFF; 8], 512 + 56).unwrap(); // disk GUID: header CRC breaks
    let (c, _) = refused(d.path());
    assert_eq!(gpt_partition(&c).name.as_str(), "low");

    // Allowed from the backup: primary header CRC broken.
    let d = sgdisk_image(&["-n", "1:0:+4M"]);
    d.as_file().write_all_at(b"XFI", 512).unwrap();
    let scan = check_image_safe_area(d.path()).unwrap();
    assert_eq!(scan.scheme, Scheme::Gpt { backup: true });
    allowed(d.path());

    // Primary entry array damaged (its CRC breaks), header fine: a
    // partition at 40 listed only in the backup's array is still found.
    let d = sgdisk_image(&["-a", "8", "-n", "1:40:+4M"]);
    d.as_file().write_all_at(&[0u8; 128], 1024).unwrap(); // wipe entry 1 of the primary array
    let (c, _) = refused(d.path());
    assert_eq!(gpt_partition(&c).extent.first_lba, 40);

    // Both headers damaged: a clear error naming both problems.
    let d = sgdisk_image(&["-n", "1:0:+4M"]);
    d.as_file().write_all_at(&[0xAB; 4], 512 + 16).unwrap();
    let last = (16u64 << 20) - 512;
    d.as_file().write_all_at(&[0xAB; 4], last + 16).unwrap();
    let before = bytes(d.path());
    let err = write_image_safe(d.path(), &record()).unwrap_err();
    match &err {
        ImageSafeDiskError::Refused(Refusal::GptUnreadable {
            sector_size: 512,
            primary: TableError::HeaderCrc { .. },
            backup: TableError::HeaderCrc { .. },
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("GPT unreadable"), "{err}");
    assert_eq!(bytes(d.path()), before);
}

/// §10.5: a GPT whose main partition entry array was moved into the area
/// (`sgdisk -j`) is refused: writing there would destroy the table.
#[test]
#[cfg_attr(
    preboot_skip_partition_tools,
    ignore = "needs sfdisk (fdisk) and sgdisk (gdisk)"
)]
fn gpt_entry_array_in_the_area_is_refused() {
    let d = sgdisk_image(&["-j", "2030", "-n", "1:0:+4M"]);
    let (c, msg) = refused(d.path());
    assert!(
        matches!(
            c,
            Conflict::GptArray {
                sector_size: 512,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("GPT partition entry array at LBA 2030–2061"),
        "{msg}"
    );
}

/// §10.5: a hybrid MBR (sgdisk -h) lists a GPT partition in the MBR too;
/// both tables are read.
#[test]
#[cfg_attr(
    preboot_skip_partition_tools,
    ignore = "needs sfdisk (fdisk) and sgdisk (gdisk)"
)]
fn gpt_with_hybrid_mbr() {
    let d = sgdisk_image(&["-n", "1:0:+4M", "-n", "2:0:+4M", "-h", "2"]);
    let scan = check_image_safe_area(d.path()).unwrap();
    assert_eq!(scan.scheme, Scheme::Gpt { backup: false });
    assert_eq!(
        scan.partitions, 3,
        "two GPT partitions and one hybrid MBR entry"
    );
    allowed(d.path());
}

/// §10.5: bytes that are no partition table are a clear error, never a
/// panic, and nothing is written: random bytes; a boot signature over
/// entries that are not a table; a protective MBR with no GPT behind it.
#[test]
fn garbage_is_a_clear_error() {
    let d = image(4 << 20);
    let mut junk = vec![0u8; 64 << 10];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in junk.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    junk[510] = 0; // no 55 AA
    d.as_file().write_all_at(&junk, 0).unwrap();
    let err = write_image_safe(d.path(), &record()).unwrap_err();
    assert!(
        matches!(err, ImageSafeDiskError::Refused(Refusal::NotPartitioned)),
        "{err:?}"
    );
    assert!(err.to_string().contains("no partition table"), "{err}");

    junk[510] = 0x55;
    junk[511] = 0xAA;
    junk[446] = 0x12; // boot indicator of entry 1
    d.as_file().write_all_at(&junk, 0).unwrap();
    let err = write_image_safe(d.path(), &record()).unwrap_err();
    assert!(err.to_string().contains("not a partition table"), "{err}");

    let mut mbr = [0u8; 512];
    mbr[446 + 4] = 0xEE;
    mbr[446 + 8] = 1;
    mbr[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let d = image(4 << 20);
    d.as_file().write_all_at(&mbr, 0).unwrap();
    let before = bytes(d.path());
    let err = write_image_safe(d.path(), &record()).unwrap_err();
    match &err {
        ImageSafeDiskError::Refused(Refusal::GptUnreadable {
            primary: TableError::NoGptSignature,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(bytes(d.path()), before);
    // And a blank disk (no table at all) is fine.
    let blank = image(2 << 20);
    assert_eq!(
        check_image_safe_area(blank.path()).unwrap().scheme,
        Scheme::Blank
    );
}

/// A loop device over a disk-image file with 4096-byte logical sectors (a
/// 4Kn disk), detached on drop.
struct Loop4k {
    dev: String,
    file: tempfile::NamedTempFile,
}

impl Loop4k {
    fn attach(size: u64) -> Loop4k {
        let file = image(size);
        let out = Command::new("losetup")
            .args(["-f", "--show", "-b", "4096"])
            .arg(file.path())
            .output()
            .expect("run losetup");
        assert!(
            out.status.success(),
            "losetup -b 4096: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Loop4k { dev, file }
    }
}

impl Drop for Loop4k {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// §10.5 on a 4Kn disk (sgdisk on a loop device with 4096-byte logical
/// sectors: GPT header at byte 4096, LBAs of 4 KiB): the default layout
/// (first partition at LBA 256 = 1 MiB) is allowed, on the device and on
/// its image file; a partition at LBA 6 is refused.
#[test]
#[cfg_attr(
    preboot_skip_root_losetup_sgdisk,
    ignore = "needs root, losetup (mount) and sgdisk (gdisk)"
)]
fn gpt_on_a_4kn_disk() {
    let lo = Loop4k::attach(16 << 20);
    run("sgdisk", &["-n", "1:0:+4M", &lo.dev], "");
    let dev = Path::new(&lo.dev);
    let scan = check_image_safe_area(dev).unwrap();
    assert_eq!(
        (scan.scheme, scan.sector_size),
        (Scheme::Gpt { backup: false }, 4096)
    );
    let file_scan = check_image_safe_area(lo.file.path()).unwrap();
    assert_eq!(
        file_scan.sector_size, 4096,
        "found at byte 4096 in the image file"
    );
    assert_eq!(write_image_safe(dev, &record()).unwrap(), Slot::A);
    assert_eq!(
        read_image_safe(dev).unwrap().loaded().record.base_image,
        Some("images/win11.img")
    );

    let lo = Loop4k::attach(16 << 20);
    run("sgdisk", &["-a", "1", "-n", "1:6:+4M", &lo.dev], "");
    for path in [Path::new(&lo.dev), lo.file.path()] {
        let err = write_image_safe(path, &record()).unwrap_err();
        match err {
            ImageSafeDiskError::Refused(Refusal::Overlap {
                conflict: Conflict::Partition(p),
                ..
            }) => assert_eq!((p.extent.first_lba, p.sector_size), (6, 4096)),
            other => panic!("{}: {other:?}", path.display()),
        }
    }
}
