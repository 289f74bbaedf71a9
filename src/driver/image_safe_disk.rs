//! Image-safe data on a disk (or a disk-image file): the two 1024-byte
//! slots at the offsets of docs/transaction-protocol.md §10.1, read both,
//! written alternately with a generation number and flushed before the new
//! copy counts (§10.3), never where a partition lies.

use crate::wire::image_safe::{self, ImageSafe, ImageSafeError, Loaded, SLOT_LEN, Slot};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Why image-safe data could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageSafeDiskError {
    /// I/O on the disk failed.
    #[error("image-safe I/O: {0}")]
    Io(#[from] io::Error),
    /// The record could not be encoded.
    #[error("image-safe record: {0}")]
    Record(#[from] ImageSafeError),
    /// The disk is smaller than 1 MiB.
    #[error("disk of {0} bytes has no room for image-safe data (needs 1 MiB)")]
    TooSmall(u64),
    /// A partition starts inside the reserved gap (§10.1).
    #[error("MBR partition {index} starts at LBA {start}, inside the image-safe gap (< 1 MiB)")]
    NoGap {
        /// Partition entry 1–4.
        index: usize,
        /// Start LBA.
        start: u32,
    },
}

/// Both slots as read from the disk; [`DiskSlots::loaded`] selects.
#[derive(Clone, Debug)]
pub struct DiskSlots {
    /// Slot A bytes.
    pub a: [u8; SLOT_LEN],
    /// Slot B bytes.
    pub b: [u8; SLOT_LEN],
}

impl DiskSlots {
    /// The current record, or the defaults with the reason (§10.3).
    pub fn loaded(&self) -> Loaded<'_> {
        image_safe::select(&self.a, &self.b)
    }
}

fn read_slot(f: &File, off: u64, len: u64) -> io::Result<[u8; SLOT_LEN]> {
    let mut s = [0u8; SLOT_LEN];
    if off + SLOT_LEN as u64 <= len {
        f.read_exact_at(&mut s, off)?;
    }
    Ok(s)
}

/// The size of a disk or disk-image file in bytes. A block device's
/// metadata says 0 bytes (stat(2) gives the size of regular files only):
/// its size is where a seek to the end lands.
pub(crate) fn disk_len(f: &File) -> io::Result<u64> {
    let meta = f.metadata()?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut f = f;
    f.seek(SeekFrom::End(0))
}

/// Read both image-safe slots from the disk or disk-image file at `path`.
/// A disk too short to hold them reads as blank (→ defaults, `Missing`).
pub fn read_image_safe(path: &Path) -> io::Result<DiskSlots> {
    let f = File::open(path)?;
    let len = disk_len(&f)?;
    Ok(DiskSlots {
        a: read_slot(&f, Slot::A.offset(), len)?,
        b: read_slot(&f, Slot::B.offset(), len)?,
    })
}

/// Is the 1 MiB gap free of partitions (§10.1)? Also guards the key record
/// (docs/transaction-protocol.md §11.1, `super::key_record_disk`).
pub(crate) fn check_gap(f: &File, len: u64) -> Result<(), ImageSafeDiskError> {
    if len < 1 << 20 {
        return Err(ImageSafeDiskError::TooSmall(len));
    }
    let mut mbr = [0u8; 512];
    f.read_exact_at(&mut mbr, 0)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(());
    }
    for index in 0..4 {
        let e = &mbr[446 + 16 * index..446 + 16 * (index + 1)];
        let kind = e[4];
        let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
        // 0xEE is the GPT protective entry (covers LBA 1..; GPT partitions
        // follow the same 1 MiB alignment).
        if kind != 0 && kind != 0xEE && u64::from(start) * 512 < 1 << 20 {
            return Err(ImageSafeDiskError::NoGap {
                index: index + 1,
                start,
            });
        }
    }
    Ok(())
}

/// Write `record` as the new current image-safe data (§10.3): generation =
/// current + 1, written into the slot that is *not* current, flushed to the
/// disk; only then is it current. Returns the slot written.
pub fn write_image_safe(path: &Path, record: &ImageSafe<'_>) -> Result<Slot, ImageSafeDiskError> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = disk_len(&f)?;
    check_gap(&f, len)?;
    let slots = DiskSlots {
        a: read_slot(&f, Slot::A.offset(), len)?,
        b: read_slot(&f, Slot::B.offset(), len)?,
    };
    let current = slots.loaded();
    let target = current.slot.map_or(Slot::A, Slot::other);
    let mut rec = record.clone();
    rec.generation = current.record.generation.wrapping_add(1);
    let mut buf = [0u8; SLOT_LEN];
    rec.emit(&mut buf)?;
    f.write_all_at(&buf, target.offset())?;
    f.sync_data()?;
    Ok(target)
}
