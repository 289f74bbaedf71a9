//! Is an area of a disk outside every partition? The check made before the
//! image-safe data or the key record is written
//! (docs/transaction-protocol.md §10.1, §10.5, §11.1).
//!
//! [`check_area`] reads the disk through a callback (a file, a block
//! device, UEFI block I/O, a buffer in tests), so it runs with or without
//! std and allocates nothing: two 4 KiB buffers on the stack.
//!
//! - The MBR (UEFI 2.10 §5.2.1): the four entries; an extended partition
//!   counts as a whole (its logical partitions lie inside it).
//! - The GPT (UEFI 2.10 §5.3): the primary header at LBA 1, checked
//!   (signature, header CRC, MyLBA) with its partition entry array (CRC);
//!   if either is bad, the backup header at the last LBA with its array
//!   (§5.3.2: "software must check the last LBA"). Sector sizes are tried
//!   in the order given: the device's logical sector size when known, else
//!   512 then 4096 (a disk-image file does not say).
//! - Protective and hybrid MBRs: a 0xEE entry means the GPT decides, and a
//!   GPT that cannot be read is an error; other entries of a hybrid MBR are
//!   checked too.
//!
//! Refused ([`Refusal`]): any partition, GPT header or GPT entry array
//! that shares a byte with the area; a table that cannot be read; sector 0
//! holding data that is not a partition table. Allowed: no partition over
//! the area, or a blank disk (sector 0 all 0x00 or all 0xFF, no GPT).
//!
//! ```
//! use preboot::wire::disk_scan::{check_area, Scheme};
//!
//! let disk = vec![0u8; 2 << 20]; // blank: no table, nothing to overlap
//! let read = |off: u64, buf: &mut [u8]| -> Result<(), ()> {
//!     let off = off as usize;
//!     buf.copy_from_slice(&disk[off..off + buf.len()]);
//!     Ok(())
//! };
//! let scan = check_area(disk.len() as u64, &[512, 4096], 1_036_288, 1 << 20, read).unwrap();
//! assert_eq!(scan.scheme, Scheme::Blank);
//! ```

use crate::wire::image_safe::Crc32;
use crate::wire::partition_table::{
    Extent, GPT_ENTRY_MAX, GptEntry, GptHeader, Mbr, MbrEntry, TableError,
};
use core::fmt;

/// Largest logical sector size handled.
pub const MAX_SECTOR: usize = 4096;

/// Which table a partition is listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// The MBR in sector 0.
    Mbr,
    /// The GUID partition table.
    Gpt,
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableKind::Mbr => "MBR",
            TableKind::Gpt => "GPT",
        })
    }
}

/// A partition, as its table lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// The table.
    pub table: TableKind,
    /// Entry number, from 1 (MBR 1–4; GPT: position in the entry array).
    pub index: u32,
    /// MBR partition type (0 for GPT partitions).
    pub kind: u8,
    /// GPT partition name (empty for MBR partitions), cut at 40 bytes (every
    /// ASCII name fits: GPT names are 36 UTF-16 units at most).
    pub name: heapless::String<40>,
    /// Its sectors.
    pub extent: Extent,
    /// The logical sector size its LBAs are counted in.
    pub sector_size: u32,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} partition {}", self.table, self.index)?;
        match self.table {
            TableKind::Mbr => write!(f, " (type {:#04x})", self.kind)?,
            TableKind::Gpt if !self.name.is_empty() => write!(f, " {:?}", self.name.as_str())?,
            TableKind::Gpt => {}
        }
        let (s, e) = self.extent.bytes(self.sector_size);
        write!(
            f,
            " at LBA {}–{} of {}-byte sectors (bytes {s}..{e})",
            self.extent.first_lba, self.extent.last_lba, self.sector_size
        )
    }
}

/// What lies over the area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// A partition.
    Partition(Partition),
    /// The GPT header in use sits there.
    GptHeader {
        /// Its LBA.
        lba: u64,
        /// Logical sector size.
        sector_size: u32,
    },
    /// The GPT partition entry array sits there (`sgdisk -j` moves it).
    GptArray {
        /// Its sectors.
        extent: Extent,
        /// Logical sector size.
        sector_size: u32,
    },
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::Partition(p) => p.fmt(f),
            Conflict::GptHeader { lba, sector_size } => {
                write!(
                    f,
                    "the GPT header at LBA {lba} ({sector_size}-byte sectors)"
                )
            }
            Conflict::GptArray {
                extent,
                sector_size,
            } => write!(
                f,
                "the GPT partition entry array at LBA {}–{} ({sector_size}-byte sectors)",
                extent.first_lba, extent.last_lba
            ),
        }
    }
}

/// Why the area must not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The disk ends before the area does.
    #[error("disk of {0} bytes is too small for the image-safe area")]
    TooSmall(u64),
    /// Sector 0 has a boot signature but is no partition table.
    #[error("sector 0: {0}")]
    Mbr(TableError),
    /// A GPT is there (protective MBR or a GPT signature) but neither
    /// header with its entry array checks.
    #[error("GPT unreadable ({sector_size}-byte sectors): primary: {primary}; backup: {backup}")]
    GptUnreadable {
        /// The sector size tried.
        sector_size: u32,
        /// The primary header's problem.
        primary: TableError,
        /// The backup header's problem.
        backup: TableError,
    },
    /// Sector 0 holds bytes but no partition table: where partitions (or a
    /// filesystem on the whole disk) lie cannot be told.
    #[error(
        "sector 0 holds data but no partition table (no 55 AA signature, no GPT): refusing to guess where partitions are"
    )]
    NotPartitioned,
    /// Something lies over the area.
    #[error("{conflict} overlaps the image-safe area (bytes {start}..{end})")]
    Overlap {
        /// What.
        conflict: Conflict,
        /// The area's first byte.
        start: u64,
        /// The area's end (exclusive).
        end: u64,
    },
}

/// Why the check did not complete.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError<E> {
    /// The callback failed.
    #[error("read of {len} bytes at byte {offset} failed: {error}")]
    Read {
        /// Byte offset.
        offset: u64,
        /// Bytes asked for.
        len: usize,
        /// The callback's error.
        error: E,
    },
    /// The area must not be written.
    #[error("{0}")]
    Refused(Refusal),
}

/// The partitioning scheme found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// No table: sector 0 blank, no GPT.
    Blank,
    /// An MBR without a GPT.
    Mbr,
    /// A GPT (with a protective or hybrid MBR, or none).
    Gpt {
        /// Read from the backup header (the primary or its array is bad).
        backup: bool,
    },
}

/// What [`check_area`] found: the area is free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// The scheme.
    pub scheme: Scheme,
    /// The logical sector size the tables were read with.
    pub sector_size: u32,
    /// Partitions listed (MBR entries in use, other than 0xEE, plus GPT
    /// entries in use).
    pub partitions: u32,
}

struct Disk<R> {
    len: u64,
    read: R,
}

impl<E, R: FnMut(u64, &mut [u8]) -> Result<(), E>> Disk<R> {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ScanError<E>> {
        (self.read)(offset, buf).map_err(|error| ScanError::Read {
            offset,
            len: buf.len(),
            error,
        })
    }
}

/// A GPT read and checked.
struct Gpt {
    header: GptHeader,
    backup: bool,
    used: u32,
    conflict: Option<Partition>,
}

/// What an entry array holds.
struct ArrayScan {
    used: u32,
    conflict: Option<Partition>,
}

/// Read and check the entry array of `h`: its CRC, every entry in use
/// (first ≤ last), the first entry over `[start, end)`.
fn scan_array<E, R: FnMut(u64, &mut [u8]) -> Result<(), E>>(
    disk: &mut Disk<R>,
    h: &GptHeader,
    ss: u32,
    (start, end): (u64, u64),
) -> Result<Result<ArrayScan, TableError>, ScanError<E>> {
    let len = h.array_len();
    let off = match h.entries_lba.checked_mul(u64::from(ss)) {
        Some(o) if o.checked_add(len).is_some_and(|e| e <= disk.len) => o,
        _ => return Ok(Err(TableError::ArrayOutsideDisk { lba: h.entries_lba })),
    };
    let size = h.entry_size as usize; // 128..=4096, checked by parse
    let mut chunk = [0u8; GPT_ENTRY_MAX as usize];
    let mut crc = Crc32::new();
    let (mut pos, mut index, mut used) = (0u64, 0u32, 0u32);
    let (mut bad, mut conflict) = (None, None);
    while pos < len {
        let n = usize::try_from((len - pos).min(chunk.len() as u64)).unwrap_or(chunk.len());
        let buf = &mut chunk[..n];
        disk.read(off + pos, buf)?;
        crc.update(buf);
        for raw in buf.chunks_exact(size) {
            index += 1;
            let Ok(e) = GptEntry::new(raw) else { continue };
            if !e.is_used() {
                continue;
            }
            used += 1;
            let x = e.extent();
            if x.first_lba > x.last_lba {
                bad.get_or_insert(TableError::BadEntry {
                    index,
                    first: x.first_lba,
                    last: x.last_lba,
                });
            } else if conflict.is_none() && x.overlaps(ss, start, end) {
                let mut name = heapless::String::new();
                for c in e.name() {
                    if name.push(c).is_err() {
                        break;
                    }
                }
                conflict = Some(Partition {
                    table: TableKind::Gpt,
                    index,
                    kind: 0,
                    name,
                    extent: x,
                    sector_size: ss,
                });
            }
        }
        pos += n as u64;
    }
    let computed = crc.finish();
    if computed != h.entries_crc {
        return Ok(Err(TableError::ArrayCrc {
            stored: h.entries_crc,
            computed,
        }));
    }
    Ok(match bad {
        Some(b) => Err(b),
        None => Ok(ArrayScan { used, conflict }),
    })
}

/// The header at `lba` with its array, checked.
fn gpt_at<E, R: FnMut(u64, &mut [u8]) -> Result<(), E>>(
    disk: &mut Disk<R>,
    ss: u32,
    lba: u64,
    area: (u64, u64),
) -> Result<Result<Gpt, TableError>, ScanError<E>> {
    let size = ss as usize;
    let fits = lba
        .checked_add(1)
        .and_then(|n| n.checked_mul(u64::from(ss)))
        .is_some_and(|e| e <= disk.len);
    if !fits || size > MAX_SECTOR {
        return Ok(Err(TableError::NoSuchLba(lba)));
    }
    let mut sector = [0u8; MAX_SECTOR];
    disk.read(lba * u64::from(ss), &mut sector[..size])?;
    let h = match GptHeader::parse(&sector[..size], lba) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    Ok(scan_array(disk, &h, ss, area)?.map(|a| Gpt {
        header: h,
        backup: lba != 1,
        used: a.used,
        conflict: a.conflict,
    }))
}

/// Primary, then backup (UEFI 2.10 §5.3.2).
fn read_gpt<E, R: FnMut(u64, &mut [u8]) -> Result<(), E>>(
    disk: &mut Disk<R>,
    ss: u32,
    area: (u64, u64),
) -> Result<Result<Gpt, (TableError, TableError)>, ScanError<E>> {
    let primary = match gpt_at(disk, ss, 1, area)? {
        Ok(g) => return Ok(Ok(g)),
        Err(e) => e,
    };
    let last = (disk.len / u64::from(ss)).saturating_sub(1);
    if last <= 1 {
        return Ok(Err((primary, TableError::NoSuchLba(last))));
    }
    Ok(gpt_at(disk, ss, last, area)?.map_err(|backup| (primary, backup)))
}

/// No GPT header there at all (as opposed to a damaged one).
fn absent(e: TableError) -> bool {
    matches!(e, TableError::NoGptSignature | TableError::NoSuchLba(_))
}

fn mbr_conflict(entries: &[MbrEntry], ss: u32, start: u64, end: u64) -> Option<Partition> {
    entries
        .iter()
        .filter(|e| !e.is_protective())
        .find(|e| e.extent().overlaps(ss, start, end))
        .map(|e| Partition {
            table: TableKind::Mbr,
            index: u32::from(e.index),
            kind: e.kind,
            name: heapless::String::new(),
            extent: e.extent(),
            sector_size: ss,
        })
}

/// Check that bytes `[start, end)` of a disk of `disk_len` bytes lie
/// outside every partition and partition-table structure, reading the disk
/// with `read(offset, buf)` (fill `buf` from byte `offset`; never asked
/// beyond `disk_len`). `sector_sizes`: the logical sector sizes to try, in
/// order (powers of two from 512 to 4096; others are skipped; none → 512).
/// Every MBR LBA is counted in the sector size the GPT was found with, or
/// else the first one given.
pub fn check_area<E, R: FnMut(u64, &mut [u8]) -> Result<(), E>>(
    disk_len: u64,
    sector_sizes: &[u32],
    start: u64,
    end: u64,
    read: R,
) -> Result<Scan, ScanError<E>> {
    let refuse = |r| Err(ScanError::Refused(r));
    if disk_len < end.max(512) {
        return refuse(Refusal::TooSmall(disk_len));
    }
    let mut disk = Disk {
        len: disk_len,
        read,
    };
    let mut s0 = [0u8; 512];
    disk.read(0, &mut s0)?;
    let blank = s0.iter().all(|&b| b == 0) || s0.iter().all(|&b| b == 0xFF);
    let (mbr, protective) = match Mbr::new(&s0) {
        Ok(m) => (
            Some(m.partitions().collect::<heapless::Vec<MbrEntry, 4>>()),
            m.has_protective(),
        ),
        Err(TableError::NoMbrSignature) => (None, false),
        Err(e) => return refuse(Refusal::Mbr(e)),
    };
    let sizes: heapless::Vec<u32, 8> = sector_sizes
        .iter()
        .copied()
        .filter(|s| s.is_power_of_two() && (512..=MAX_SECTOR as u32).contains(s))
        .take(8)
        .collect();
    let first_ss = sizes.first().copied().unwrap_or(512);
    let area = (start, end);
    // The errors to report if no GPT reads: those of the first sector size
    // where a signature was seen, else of the first one tried.
    let mut failure: Option<(u32, TableError, TableError)> = None;
    for ss in sizes.iter().copied().chain(sizes.is_empty().then_some(512)) {
        match read_gpt(&mut disk, ss, area)? {
            Ok(g) => {
                let h = &g.header;
                let header = Extent {
                    first_lba: h.my_lba,
                    last_lba: h.my_lba,
                };
                let conflict = if header.overlaps(ss, start, end) {
                    Some(Conflict::GptHeader {
                        lba: h.my_lba,
                        sector_size: ss,
                    })
                } else if h.array_extent(ss).overlaps(ss, start, end) {
                    Some(Conflict::GptArray {
                        extent: h.array_extent(ss),
                        sector_size: ss,
                    })
                } else if let Some(p) = g.conflict {
                    Some(Conflict::Partition(p))
                } else {
                    mbr.as_deref()
                        .and_then(|m| mbr_conflict(m, ss, start, end))
                        .map(Conflict::Partition)
                };
                if let Some(conflict) = conflict {
                    return refuse(Refusal::Overlap {
                        conflict,
                        start,
                        end,
                    });
                }
                let hybrid = mbr.as_deref().map_or(0, |m| {
                    m.iter().filter(|e| !e.is_protective()).count() as u32
                });
                return Ok(Scan {
                    scheme: Scheme::Gpt { backup: g.backup },
                    sector_size: ss,
                    partitions: g.used + hybrid,
                });
            }
            Err((primary, backup)) => {
                let seen = !absent(primary) || !absent(backup);
                let keep = match &failure {
                    None => true,
                    Some((_, p, b)) => seen && absent(*p) && absent(*b),
                };
                if keep {
                    failure = Some((ss, primary, backup));
                }
            }
        }
    }
    let (ss, primary, backup) = failure.unwrap_or((
        first_ss,
        TableError::NoGptSignature,
        TableError::NoGptSignature,
    ));
    if protective || !absent(primary) || !absent(backup) {
        return refuse(Refusal::GptUnreadable {
            sector_size: ss,
            primary,
            backup,
        });
    }
    match mbr {
        Some(m) => {
            if let Some(p) = mbr_conflict(&m, first_ss, start, end) {
                return refuse(Refusal::Overlap {
                    conflict: Conflict::Partition(p),
                    start,
                    end,
                });
            }
            Ok(Scan {
                scheme: Scheme::Mbr,
                sector_size: first_ss,
                partitions: m.len() as u32,
            })
        }
        None if blank => Ok(Scan {
            scheme: Scheme::Blank,
            sector_size: first_ss,
            partitions: 0,
        }),
        None => refuse(Refusal::NotPartitioned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::image_safe::crc32;
    use std::vec;

    const LEN: usize = 2 << 20;
    const AREA: (u64, u64) = (1_036_288, 1 << 20);

    fn check(disk: &[u8], sizes: &[u32]) -> Result<Scan, ScanError<()>> {
        check_area(disk.len() as u64, sizes, AREA.0, AREA.1, |off, buf| {
            let off = usize::try_from(off).map_err(|_| ())?;
            buf.copy_from_slice(disk.get(off..off + buf.len()).ok_or(())?);
            Ok(())
        })
    }

    /// A GPT header at `lba` (512-byte sectors) with an array of `count`
    /// entries at `entries_lba`, CRCs over what the disk holds.
    fn gpt(disk: &mut [u8], lba: u64, entries_lba: u64, count: u32) {
        let h = lba as usize * 512;
        let s = &mut disk[h..h + 512];
        s[..8].copy_from_slice(b"EFI PART");
        s[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        s[12..16].copy_from_slice(&92u32.to_le_bytes());
        s[24..32].copy_from_slice(&lba.to_le_bytes());
        s[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        s[80..84].copy_from_slice(&count.to_le_bytes());
        s[84..88].copy_from_slice(&128u32.to_le_bytes());
        let a = usize::try_from(entries_lba.saturating_mul(512)).unwrap_or(usize::MAX);
        if let Some(arr) = disk.get(a..a.saturating_add(count as usize * 128)) {
            let c = crc32(arr);
            disk[h + 88..h + 92].copy_from_slice(&c.to_le_bytes());
        }
        disk[h + 16..h + 20].copy_from_slice(&[0; 4]);
        let c = crc32(&disk[h..h + 92]);
        disk[h + 16..h + 20].copy_from_slice(&c.to_le_bytes());
    }

    /// §10.5 step 6: a blank disk is allowed; step 1: too small is
    /// refused; sector sizes out of range fall back to 512; a failed read
    /// is reported with its offset.
    #[test]
    fn blank_small_and_read_errors() {
        let disk = vec![0u8; LEN];
        assert_eq!(check(&disk, &[0, 3, 8192]).unwrap().sector_size, 512);
        assert_eq!(check(&disk, &[]).unwrap().scheme, Scheme::Blank);
        assert_eq!(
            check(&disk[..4096], &[512]),
            Err(ScanError::Refused(Refusal::TooSmall(4096)))
        );
        let r = check_area(LEN as u64, &[512], AREA.0, AREA.1, |_, _| Err("eio"));
        assert_eq!(
            r,
            Err(ScanError::Read {
                offset: 0,
                len: 512,
                error: "eio"
            })
        );
    }

    /// §10.5 step 3: a header whose CRC checks but whose array lies beyond
    /// the disk (or is garbage) is an error, never a panic or a read
    /// outside the disk.
    #[test]
    fn hostile_header_fields() {
        let mut disk = vec![0u8; LEN];
        gpt(&mut disk, 1, u64::MAX / 256, 128);
        match check(&disk, &[512]) {
            Err(ScanError::Refused(Refusal::GptUnreadable {
                primary: TableError::ArrayOutsideDisk { .. },
                backup: TableError::NoGptSignature,
                ..
            })) => {}
            other => panic!("{other:?}"),
        }
        // A valid primary with one partition at LBA 2048: allowed.
        let mut disk = vec![0u8; LEN];
        let e = 2 * 512;
        disk[e] = 1; // type GUID not zero
        disk[e + 32..e + 40].copy_from_slice(&2048u64.to_le_bytes());
        disk[e + 40..e + 48].copy_from_slice(&3000u64.to_le_bytes());
        gpt(&mut disk, 1, 2, 128);
        let scan = check(&disk, &[512, 4096]).unwrap();
        assert_eq!(scan.scheme, Scheme::Gpt { backup: false });
        assert_eq!(scan.partitions, 1);
        // Ends before it starts (CRC valid): named.
        disk[e + 40..e + 48].copy_from_slice(&10u64.to_le_bytes());
        gpt(&mut disk, 1, 2, 128);
        match check(&disk, &[512]) {
            Err(ScanError::Refused(Refusal::GptUnreadable {
                primary: TableError::BadEntry { index: 1, .. },
                ..
            })) => {}
            other => panic!("{other:?}"),
        }
    }
    /// §10.5 step 4: a sector size too large for the disk to hold a GPT
    /// at all is "no GPT", not "GPT unreadable" (an MBR disk of 6 KiB was
    /// refused when 4096-byte sectors were tried).
    #[test]
    fn no_room_for_a_gpt_is_no_gpt() {
        let mut disk = vec![0u8; 6144];
        disk[510] = 0x55;
        disk[511] = 0xAA;
        disk[446 + 4] = 0x83;
        disk[446 + 8] = 1;
        disk[446 + 12] = 2;
        let r = check_area(6144, &[512, 4096], 5120, 6144, |off, buf: &mut [u8]| {
            let off = off as usize;
            buf.copy_from_slice(disk.get(off..off + buf.len()).ok_or(())?);
            Ok::<(), ()>(())
        });
        assert_eq!(r.map(|s| s.scheme), Ok(Scheme::Mbr));
    }
}
