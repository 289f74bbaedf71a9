//! Image-safe data on a disk (or a disk-image file): the two 1024-byte
//! slots at the offsets of docs/transaction-protocol.md §10.1, each in a
//! 4 KiB sector of its own, read both, written one at a time with a
//! generation number and flushed before the new copy counts (§10.3), never
//! where a partition or partition table lies (§10.5: the MBR and the GPT
//! are read, [`crate::wire::disk_scan`]). A record still in the legacy
//! layout (both slots in one 4 KiB sector, §10.4) is
//! read, and the next write moves it (§10.4).

use crate::wire::disk_scan::{self, Refusal, ScanError};
use crate::wire::image_safe::{
    self, ImageSafe, ImageSafeError, LEGACY_SLOT_A_OFFSET, LEGACY_SLOT_B_OFFSET, Layout, Loaded,
    MAGIC, RESERVED_END, RESERVED_START, SLOT_LEN, Slot,
};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::{format, vec, vec::Vec};

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
    /// The area must not be written (§10.5): a partition or a partition
    /// table lies over it, or the tables cannot be read.
    #[error("not writing image-safe data: {0}")]
    Refused(Refusal),
}

/// Both slots as read from the disk, and the two legacy slots (§10.4);
/// [`DiskSlots::loaded`] selects.
#[derive(Clone, Debug)]
pub struct DiskSlots {
    /// Slot A bytes.
    pub a: [u8; SLOT_LEN],
    /// Slot B bytes.
    pub b: [u8; SLOT_LEN],
    /// Legacy slot A bytes (byte offset 1 046 528).
    pub legacy_a: [u8; SLOT_LEN],
    /// Legacy slot B bytes (byte offset 1 047 552).
    pub legacy_b: [u8; SLOT_LEN],
}

impl DiskSlots {
    /// The current record, or the defaults with the reason (§10.3, §10.4).
    pub fn loaded(&self) -> Loaded<'_> {
        self.select().0
    }

    /// The layout the current record was found in (§10.4).
    pub fn layout(&self) -> Layout {
        self.select().1
    }

    /// The current record's bytes (its length, not the whole slot), as
    /// `WorkstationInfo` carries them; `None` when the defaults apply.
    pub fn current_bytes(&self) -> Option<&[u8]> {
        let (l, layout) = self.select();
        let bytes: &[u8] = match (l.slot?, layout) {
            (Slot::A, Layout::Aligned) => &self.a,
            (Slot::B, Layout::Aligned) => &self.b,
            (Slot::A, Layout::Legacy) => &self.legacy_a,
            (Slot::B, Layout::Legacy) => &self.legacy_b,
        };
        let len = usize::from(u16::from_be_bytes([bytes[6], bytes[7]])).min(bytes.len());
        Some(&bytes[..len])
    }

    fn select(&self) -> (Loaded<'_>, Layout) {
        image_safe::select_with_legacy(&self.a, &self.b, &self.legacy_a, &self.legacy_b)
    }

    fn read(f: &File, len: u64) -> io::Result<Self> {
        Ok(DiskSlots {
            a: read_slot(f, Slot::A.offset(), len)?,
            b: read_slot(f, Slot::B.offset(), len)?,
            legacy_a: read_slot(f, LEGACY_SLOT_A_OFFSET, len)?,
            legacy_b: read_slot(f, LEGACY_SLOT_B_OFFSET, len)?,
        })
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

/// Read the image-safe slots (and the legacy ones) from the disk or
/// disk-image file at `path`. A disk too short to hold them reads as blank
/// (→ defaults, `Missing`).
pub fn read_image_safe(path: &Path) -> io::Result<DiskSlots> {
    let f = File::open(path)?;
    let len = disk_len(&f)?;
    DiskSlots::read(&f, len)
}

/// The logical sector sizes to read partition tables with: a block
/// device's own (Linux: `/sys/dev/block/MAJOR:MINOR/queue/logical_block_size`),
/// or for a disk-image file (which does not say) 512 and then 4096.
fn sector_sizes(f: &File) -> Vec<u32> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if let Ok(m) = f.metadata() {
        if m.file_type().is_block_device() {
            let dev = m.rdev();
            // Linux's dev_t encoding (glibc's gnu_dev_major / gnu_dev_minor).
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
            let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
            let path = format!("/sys/dev/block/{major}:{minor}/queue/logical_block_size");
            if let Some(ss) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                return vec![ss];
            }
        }
    }
    vec![512, 4096]
}

/// Is the area of the image-safe data and the key record (bytes
/// [`RESERVED_START`]..[`RESERVED_END`]) free of partitions and partition
/// tables (§10.5)? Reads the MBR and the GPT (primary, else backup).
/// Also guards the key record (docs/transaction-protocol.md §11.1,
/// `super::key_record_disk`).
pub(crate) fn check_gap(f: &File, len: u64) -> Result<disk_scan::Scan, ImageSafeDiskError> {
    if len < RESERVED_END {
        return Err(ImageSafeDiskError::TooSmall(len));
    }
    let read = |off: u64, buf: &mut [u8]| f.read_exact_at(buf, off);
    disk_scan::check_area(len, &sector_sizes(f), RESERVED_START, RESERVED_END, read).map_err(|e| {
        match e {
            ScanError::Read { error, .. } => ImageSafeDiskError::Io(error),
            ScanError::Refused(r) => ImageSafeDiskError::Refused(r),
        }
    })
}

/// Check, without writing, that the disk or disk-image file at `path` may
/// hold image-safe data and the key record (§10.5): at least 1 MiB, and no
/// partition or partition table over bytes
/// [`RESERVED_START`]..[`RESERVED_END`]. Gives what was found.
pub fn check_image_safe_area(path: &Path) -> Result<disk_scan::Scan, ImageSafeDiskError> {
    let f = File::open(path)?;
    let len = disk_len(&f)?;
    check_gap(&f, len)
}

/// Write `bytes` at `offset` and flush them to the disk before returning.
fn write_flushed(f: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    f.write_all_at(bytes, offset)?;
    f.sync_data()
}

/// Write `record` as the new current image-safe data (§10.3): generation =
/// current + 1, written into the slot that is *not* current, flushed to the
/// disk; only then is it current. Returns the slot written.
///
/// A record found in the legacy layout (§10.4) is moved: the new one goes
/// to slot A (flushed), then each legacy slot that holds a record
/// (`PBIS`) is cleared, one at a time, each flushed. Bytes of the legacy
/// slots that are not a record are left alone.
pub fn write_image_safe(path: &Path, record: &ImageSafe<'_>) -> Result<Slot, ImageSafeDiskError> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = disk_len(&f)?;
    check_gap(&f, len)?;
    let slots = DiskSlots::read(&f, len)?;
    let (current, layout) = slots.select();
    let target = match (current.slot, layout) {
        (Some(s), Layout::Aligned) => s.other(),
        _ => Slot::A,
    };
    let mut rec = record.clone();
    rec.generation = current.record.generation.wrapping_add(1);
    let mut buf = [0u8; SLOT_LEN];
    rec.emit(&mut buf)?;
    write_flushed(&f, &buf, target.offset())?;
    for (old, offset) in [
        (&slots.legacy_a, LEGACY_SLOT_A_OFFSET),
        (&slots.legacy_b, LEGACY_SLOT_B_OFFSET),
    ] {
        if old[..4] == MAGIC {
            write_flushed(&f, &[0u8; SLOT_LEN], offset)?;
        }
    }
    Ok(target)
}
