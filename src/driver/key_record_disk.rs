//! The workstation's key record on a disk (or a disk-image file): the 1024
//! bytes at byte offset 1 045 504, in 4 KiB sector 255, which no
//! image-safe slot shares (docs/transaction-protocol.md §10.1, §11.1), as a
//! [`KeySlot`] for [`provision`](crate::transaction::provision::provision).
//! Never written where a partition or partition table lies (the check of
//! §10.5), and flushed before a write counts.

use super::image_safe_disk::{ImageSafeDiskError, check_gap, disk_len};
use crate::transaction::provision::{KEY_AREA_LEN, KEY_RECORD_OFFSET, KeySlot, SlotError};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The key area of one disk, opened for reading and writing.
#[derive(Debug)]
pub struct DiskKeySlot {
    file: File,
    len: u64,
}

impl DiskKeySlot {
    /// Open the disk or disk-image file at `path`; refused if it is
    /// smaller than 1 MiB or a partition starts inside the gap (§10.1).
    pub fn open(path: &Path) -> Result<Self, ImageSafeDiskError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = disk_len(&file)?;
        check_gap(&file, len)?;
        Ok(DiskKeySlot { file, len })
    }
}

impl KeySlot for DiskKeySlot {
    fn read(&mut self, area: &mut [u8; KEY_AREA_LEN]) -> Result<(), SlotError> {
        if KEY_RECORD_OFFSET + KEY_AREA_LEN as u64 > self.len {
            return Err(SlotError);
        }
        self.file
            .read_exact_at(area, KEY_RECORD_OFFSET)
            .map_err(|_: io::Error| SlotError)
    }

    fn write(&mut self, record: &[u8]) -> Result<(), SlotError> {
        if record.len() > KEY_AREA_LEN {
            return Err(SlotError);
        }
        self.file
            .write_all_at(record, KEY_RECORD_OFFSET)
            .and_then(|()| self.file.sync_data())
            .map_err(|_| SlotError)
    }
}
