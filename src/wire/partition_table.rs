//! MBR and GPT partition tables as read-only views (UEFI 2.10 §5.2.1
//! legacy MBR, §5.2.3 protective MBR, §5.3.2 GPT header, §5.3.3 GPT
//! partition entry).
//!
//! They tell where a disk's partitions are, so that the image-safe data and
//! the key record (docs/transaction-protocol.md §10.1, §11.1) are never
//! written over one ([`crate::wire::disk_scan`] reads a disk with them).
//! Nothing here reads a disk: [`Mbr::new`] views sector 0,
//! [`GptHeader::parse`] checks a header sector (signature, size, CRC-32,
//! its own LBA), [`GptEntry`] views one entry of the partition entry
//! array. Every parse returns `Result` and never panics.
//!
//! ```
//! use preboot::wire::partition_table::{Mbr, TableError};
//!
//! let mut sector = [0u8; 512];
//! assert_eq!(Mbr::new(&sector).unwrap_err(), TableError::NoMbrSignature);
//! sector[510..].copy_from_slice(&[0x55, 0xAA]);
//! sector[446 + 4] = 0x83; // Linux
//! sector[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
//! sector[446 + 12..446 + 16].copy_from_slice(&20480u32.to_le_bytes());
//! let mbr = Mbr::new(&sector).unwrap();
//! let p = mbr.partitions().next().unwrap();
//! assert_eq!((p.index, p.kind, p.first_lba, p.sectors), (1, 0x83, 2048, 20480));
//! ```

use crate::wire::image_safe::Crc32;

/// Size of the MBR (sector 0).
pub const MBR_LEN: usize = 512;
/// Offset of the first of the four MBR partition entries.
pub const MBR_ENTRIES_OFFSET: usize = 446;
/// MBR partition type of the GPT protective entry (UEFI 2.10 §5.2.3).
pub const PROTECTIVE_TYPE: u8 = 0xEE;
/// GPT header signature.
pub const GPT_SIGNATURE: [u8; 8] = *b"EFI PART";
/// Smallest GPT header (UEFI 2.10 Table 5.5).
pub const GPT_HEADER_MIN: usize = 92;
/// Largest GPT partition entry accepted here (entries are 128 × 2^n
/// bytes; 128 in every table the common tools write).
pub const GPT_ENTRY_MAX: u32 = 4096;
/// Largest GPT partition entry array accepted here (the usual one is
/// 128 × 128 = 16 KiB): bounds what a reader of a garbage header reads.
pub const GPT_ARRAY_MAX: u64 = 1 << 20;

/// Why bytes are not a usable partition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// Fewer bytes than the structure needs.
    #[error("{0} bytes are too short for the table structure")]
    Truncated(usize),
    /// Sector 0 does not end in 55 AA.
    #[error("no MBR boot signature (55 AA)")]
    NoMbrSignature,
    /// An MBR entry's boot indicator is neither 0x00 nor 0x80: sector 0 is
    /// something else with a boot signature (a volume boot record of a
    /// filesystem on the whole disk, boot code), not a partition table.
    #[error(
        "MBR entry {index} has boot indicator {flag:#04x} (not 0x00 or 0x80): not a partition table"
    )]
    BadBootIndicator {
        /// Entry 1–4.
        index: u8,
        /// The byte found.
        flag: u8,
    },
    /// No `EFI PART` signature.
    #[error("no GPT signature \"EFI PART\"")]
    NoGptSignature,
    /// The header's revision is not 1.x.
    #[error("GPT revision {0:#010x} is not 1.x")]
    BadRevision(u32),
    /// The header size is below 92 bytes or beyond its sector.
    #[error("GPT header size {0} is out of range")]
    BadHeaderSize(u32),
    /// The header CRC does not match.
    #[error("GPT header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The header names another LBA as its own.
    #[error("GPT header at LBA {actual} says it is at LBA {stated}")]
    WrongLba {
        /// MyLBA in the header.
        stated: u64,
        /// Where it was read.
        actual: u64,
    },
    /// The entry size is not 128 × 2^n, up to [`GPT_ENTRY_MAX`].
    #[error("GPT partition entry size {0} is not 128 × 2^n (up to 4096)")]
    BadEntrySize(u32),
    /// The entry array is larger than [`GPT_ARRAY_MAX`].
    #[error("GPT partition entry array of {count} × {size} bytes is larger than 1 MiB")]
    ArrayTooLarge {
        /// Number of entries.
        count: u32,
        /// Size of one entry.
        size: u32,
    },
    /// The entry array does not lie inside the disk.
    #[error("GPT partition entry array at LBA {lba} lies beyond the end of the disk")]
    ArrayOutsideDisk {
        /// Its first LBA.
        lba: u64,
    },
    /// The entry array CRC does not match.
    #[error(
        "GPT partition entry array CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
    )]
    ArrayCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the array.
        computed: u32,
    },
    /// An entry in use ends before it starts.
    #[error("GPT partition {index} ends (LBA {last}) before it starts (LBA {first})")]
    BadEntry {
        /// Entry number, from 1.
        index: u32,
        /// StartingLBA.
        first: u64,
        /// EndingLBA.
        last: u64,
    },
    /// The disk is too small to hold a header at the LBA asked for.
    #[error("the disk has no LBA {0}")]
    NoSuchLba(u64),
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_le(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// First and last LBA (inclusive) of a partition or table structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
}

impl Extent {
    /// Its bytes `[start, end)` with sectors of `sector_size` bytes
    /// (saturating: a range past 2^64 bytes ends at `u64::MAX`).
    pub fn bytes(&self, sector_size: u32) -> (u64, u64) {
        let ss = u64::from(sector_size);
        (
            self.first_lba.saturating_mul(ss),
            self.last_lba.saturating_add(1).saturating_mul(ss),
        )
    }

    /// Does it share a byte with `[start, end)`?
    pub fn overlaps(&self, sector_size: u32, start: u64, end: u64) -> bool {
        let (s, e) = self.bytes(sector_size);
        s < end && start < e
    }
}

/// One of the four MBR partition entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MbrEntry {
    /// Entry number 1–4.
    pub index: u8,
    /// Boot indicator 0x80.
    pub bootable: bool,
    /// Partition type (0 = unused, 0xEE = GPT protective).
    pub kind: u8,
    /// Starting LBA.
    pub first_lba: u32,
    /// Size in sectors.
    pub sectors: u32,
}

impl MbrEntry {
    /// Is the entry in use (a type and a size)?
    pub fn is_used(&self) -> bool {
        self.kind != 0 && self.sectors != 0
    }
    /// Is it an extended partition (a container of logical partitions)?
    pub fn is_extended(&self) -> bool {
        matches!(self.kind, 0x05 | 0x0F | 0x85)
    }
    /// Is it the GPT protective entry?
    pub fn is_protective(&self) -> bool {
        self.kind == PROTECTIVE_TYPE
    }
    /// The sectors it covers.
    pub fn extent(&self) -> Extent {
        let first = u64::from(self.first_lba);
        Extent {
            first_lba: first,
            last_lba: first + u64::from(self.sectors).saturating_sub(1),
        }
    }
}

/// A view of an MBR (sector 0): boot signature and four entries checked.
#[derive(Clone, Copy, Debug)]
pub struct Mbr<'a> {
    sector: &'a [u8],
}

impl<'a> Mbr<'a> {
    /// View `sector0` (at least 512 bytes) as an MBR: it must end in 55 AA
    /// and every entry's boot indicator must be 0x00 or 0x80 (what Linux's
    /// reader checks to tell a partition table from a volume boot record).
    pub fn new(sector0: &'a [u8]) -> Result<Self, TableError> {
        let sector = sector0
            .get(..MBR_LEN)
            .ok_or(TableError::Truncated(sector0.len()))?;
        if sector[510..512] != [0x55, 0xAA] {
            return Err(TableError::NoMbrSignature);
        }
        let mbr = Mbr { sector };
        for i in 0..4 {
            let flag = sector[MBR_ENTRIES_OFFSET + 16 * i];
            if flag != 0 && flag != 0x80 {
                return Err(TableError::BadBootIndicator {
                    index: i as u8 + 1,
                    flag,
                });
            }
        }
        Ok(mbr)
    }

    /// Entry `i` (0–3; others give entry 3).
    pub fn entry(&self, i: usize) -> MbrEntry {
        let i = i.min(3);
        let e = &self.sector[MBR_ENTRIES_OFFSET + 16 * i..MBR_ENTRIES_OFFSET + 16 * (i + 1)];
        MbrEntry {
            index: i as u8 + 1,
            bootable: e[0] == 0x80,
            kind: e[4],
            first_lba: u32_le(e, 8),
            sectors: u32_le(e, 12),
        }
    }

    /// The entries in use, in table order.
    pub fn partitions(&self) -> impl Iterator<Item = MbrEntry> + '_ {
        (0..4).map(|i| self.entry(i)).filter(MbrEntry::is_used)
    }

    /// Does an entry mark the disk as GPT (protective or hybrid MBR)?
    pub fn has_protective(&self) -> bool {
        self.partitions().any(|e| e.is_protective())
    }
}

/// A checked GPT header (UEFI 2.10 §5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptHeader {
    /// Revision (0x0001_0000 for 1.0).
    pub revision: u32,
    /// Header size in bytes.
    pub header_size: u32,
    /// The LBA of this header.
    pub my_lba: u64,
    /// The LBA of the other header.
    pub alternate_lba: u64,
    /// First LBA a partition may use.
    pub first_usable_lba: u64,
    /// Last LBA a partition may use.
    pub last_usable_lba: u64,
    /// Disk GUID (as stored).
    pub disk_guid: [u8; 16],
    /// First LBA of the partition entry array.
    pub entries_lba: u64,
    /// Number of entries in the array.
    pub entry_count: u32,
    /// Size of one entry.
    pub entry_size: u32,
    /// CRC-32 of the array.
    pub entries_crc: u32,
}

impl GptHeader {
    /// Check and read the header in `sector` (one logical sector), read
    /// from `lba`: signature, revision 1.x, header size, header CRC (over
    /// HeaderSize bytes with the CRC field zero), MyLBA = `lba`, entry
    /// size and array size within bounds.
    pub fn parse(sector: &[u8], lba: u64) -> Result<Self, TableError> {
        if sector.len() < GPT_HEADER_MIN {
            return Err(TableError::Truncated(sector.len()));
        }
        if sector[..8] != GPT_SIGNATURE {
            return Err(TableError::NoGptSignature);
        }
        let revision = u32_le(sector, 8);
        if revision >> 16 != 1 {
            return Err(TableError::BadRevision(revision));
        }
        let header_size = u32_le(sector, 12);
        let size = usize::try_from(header_size).unwrap_or(usize::MAX);
        if size < GPT_HEADER_MIN || size > sector.len() {
            return Err(TableError::BadHeaderSize(header_size));
        }
        let stored = u32_le(sector, 16);
        let mut crc = Crc32::new();
        crc.update(&sector[..16]);
        crc.update(&[0; 4]);
        crc.update(&sector[20..size]);
        let computed = crc.finish();
        if stored != computed {
            return Err(TableError::HeaderCrc { stored, computed });
        }
        let my_lba = u64_le(sector, 24);
        if my_lba != lba {
            return Err(TableError::WrongLba {
                stated: my_lba,
                actual: lba,
            });
        }
        let entry_count = u32_le(sector, 80);
        let entry_size = u32_le(sector, 84);
        if !(128..=GPT_ENTRY_MAX).contains(&entry_size) || !entry_size.is_power_of_two() {
            return Err(TableError::BadEntrySize(entry_size));
        }
        if u64::from(entry_count) * u64::from(entry_size) > GPT_ARRAY_MAX {
            return Err(TableError::ArrayTooLarge {
                count: entry_count,
                size: entry_size,
            });
        }
        let mut disk_guid = [0u8; 16];
        disk_guid.copy_from_slice(&sector[56..72]);
        Ok(GptHeader {
            revision,
            header_size,
            my_lba,
            alternate_lba: u64_le(sector, 32),
            first_usable_lba: u64_le(sector, 40),
            last_usable_lba: u64_le(sector, 48),
            disk_guid,
            entries_lba: u64_le(sector, 72),
            entry_count,
            entry_size,
            entries_crc: u32_le(sector, 88),
        })
    }

    /// Size of the partition entry array in bytes (≤ [`GPT_ARRAY_MAX`]).
    pub fn array_len(&self) -> u64 {
        u64::from(self.entry_count) * u64::from(self.entry_size)
    }

    /// The sectors the entry array occupies (at least one).
    pub fn array_extent(&self, sector_size: u32) -> Extent {
        let sectors = self.array_len().div_ceil(u64::from(sector_size.max(1)));
        Extent {
            first_lba: self.entries_lba,
            last_lba: self.entries_lba.saturating_add(sectors.saturating_sub(1)),
        }
    }
}

/// A view of one GPT partition entry (UEFI 2.10 §5.3.3).
#[derive(Clone, Copy, Debug)]
pub struct GptEntry<'a> {
    bytes: &'a [u8],
}

impl<'a> GptEntry<'a> {
    /// View the first 128 bytes of `bytes` as an entry.
    pub fn new(bytes: &'a [u8]) -> Result<Self, TableError> {
        let bytes = bytes.get(..128).ok_or(TableError::Truncated(bytes.len()))?;
        Ok(GptEntry { bytes })
    }
    /// Partition type GUID (as stored); all zero = unused entry.
    pub fn type_guid(&self) -> [u8; 16] {
        let mut g = [0u8; 16];
        g.copy_from_slice(&self.bytes[..16]);
        g
    }
    /// Is the entry in use?
    pub fn is_used(&self) -> bool {
        self.bytes[..16].iter().any(|&b| b != 0)
    }
    /// Unique partition GUID (as stored).
    pub fn unique_guid(&self) -> [u8; 16] {
        let mut g = [0u8; 16];
        g.copy_from_slice(&self.bytes[16..32]);
        g
    }
    /// StartingLBA and EndingLBA (inclusive).
    pub fn extent(&self) -> Extent {
        Extent {
            first_lba: u64_le(self.bytes, 32),
            last_lba: u64_le(self.bytes, 40),
        }
    }
    /// Attribute bits.
    pub fn attributes(&self) -> u64 {
        u64_le(self.bytes, 48)
    }
    /// The partition name (UTF-16LE, up to 36 units, to the first NUL;
    /// invalid units read as U+FFFD).
    pub fn name(&self) -> impl Iterator<Item = char> + 'a {
        let units = self.bytes[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0);
        core::char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::image_safe::crc32;

    fn header(lba: u64) -> [u8; 512] {
        let mut s = [0u8; 512];
        s[..8].copy_from_slice(&GPT_SIGNATURE);
        s[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        s[12..16].copy_from_slice(&92u32.to_le_bytes());
        s[24..32].copy_from_slice(&lba.to_le_bytes());
        s[72..80].copy_from_slice(&2u64.to_le_bytes());
        s[80..84].copy_from_slice(&128u32.to_le_bytes());
        s[84..88].copy_from_slice(&128u32.to_le_bytes());
        let crc = crc32(&s[..92]);
        s[16..20].copy_from_slice(&crc.to_le_bytes());
        s
    }

    /// UEFI 2.10 §5.3.2: signature, CRC over HeaderSize with the CRC field
    /// zero, MyLBA; a header that checks gives its fields.
    #[test]
    fn gpt_header_checks() {
        let s = header(1);
        let h = GptHeader::parse(&s, 1).unwrap();
        assert_eq!((h.entries_lba, h.entry_count, h.entry_size), (2, 128, 128));
        assert_eq!(
            h.array_extent(512),
            Extent {
                first_lba: 2,
                last_lba: 33
            }
        );
        assert_eq!(
            h.array_extent(4096),
            Extent {
                first_lba: 2,
                last_lba: 5
            }
        );
        assert_eq!(
            GptHeader::parse(&s, 7),
            Err(TableError::WrongLba {
                stated: 1,
                actual: 7
            })
        );
        let mut bad = s;
        bad[60] ^= 1;
        assert!(matches!(
            GptHeader::parse(&bad, 1),
            Err(TableError::HeaderCrc { .. })
        ));
        assert_eq!(
            GptHeader::parse(&[0u8; 512], 1),
            Err(TableError::NoGptSignature)
        );
        assert_eq!(
            GptHeader::parse(&s[..40], 1),
            Err(TableError::Truncated(40))
        );
        let mut big = s;
        big[12..16].copy_from_slice(&600u32.to_le_bytes());
        assert_eq!(
            GptHeader::parse(&big, 1),
            Err(TableError::BadHeaderSize(600))
        );
    }

    /// UEFI 2.10 §5.2.1: boot indicator 0x00/0x80 only; entries in use have
    /// a type and a size.
    #[test]
    fn mbr_entries() {
        let mut s = [0u8; 512];
        s[510] = 0x55;
        s[511] = 0xAA;
        s[446 + 16 + 4] = 0xEE;
        s[446 + 16 + 8] = 1;
        s[446 + 16 + 12..446 + 16 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        let m = Mbr::new(&s).unwrap();
        assert!(m.has_protective());
        assert_eq!(m.partitions().count(), 1);
        assert_eq!(m.partitions().next().unwrap().index, 2);
        s[446 + 48] = 0x12;
        assert_eq!(
            Mbr::new(&s).unwrap_err(),
            TableError::BadBootIndicator {
                index: 4,
                flag: 0x12
            }
        );
        assert_eq!(Mbr::new(&s[..100]).unwrap_err(), TableError::Truncated(100));
    }

    /// Byte ranges saturate instead of overflowing.
    #[test]
    fn extents() {
        let e = Extent {
            first_lba: 63,
            last_lba: 63 + 20479,
        };
        assert_eq!(e.bytes(512), (32256, 32256 + 20480 * 512));
        assert!(e.overlaps(512, 1_036_288, 1 << 20));
        assert!(!e.overlaps(512, 0, 32256));
        let huge = Extent {
            first_lba: u64::MAX - 1,
            last_lba: u64::MAX,
        };
        assert_eq!(huge.bytes(4096), (u64::MAX, u64::MAX));
        assert!(!huge.overlaps(4096, 0, 1 << 20));
    }
}
