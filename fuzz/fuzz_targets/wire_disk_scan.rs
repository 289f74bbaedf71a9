//! The partition-table check of docs/transaction-protocol.md §10.5 on
//! arbitrary disks: the input (with valid GPT CRCs patched in when the
//! first byte asks, so the entry parser is reached) is a small disk; the
//! check never panics, never reads outside the disk, and an area it
//! allows overlaps no GPT entry or MBR entry it could have read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preboot::wire::disk_scan::{Refusal, ScanError, check_area};
use preboot::wire::image_safe::crc32;
use preboot::wire::partition_table::{GptHeader, Mbr, MbrEntry};

/// Put a header at LBA 1 (sector size `ss`) whose array CRC and header CRC
/// match the bytes that are there.
fn patch_gpt(d: &mut [u8], ss: usize) {
    let h = ss;
    if d.len() < h + 92 {
        return;
    }
    d[h..h + 8].copy_from_slice(b"EFI PART");
    d[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    d[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
    d[h + 24..h + 32].copy_from_slice(&1u64.to_le_bytes());
    d[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
    let count = u32::from(d[h + 80]) % 16;
    d[h + 80..h + 84].copy_from_slice(&count.to_le_bytes());
    d[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
    let (start, end) = (2 * ss, 2 * ss + count as usize * 128);
    if let Some(arr) = d.get(start..end) {
        let c = crc32(arr);
        d[h + 88..h + 92].copy_from_slice(&c.to_le_bytes());
    }
    d[h + 16..h + 20].copy_from_slice(&[0; 4]);
    let c = crc32(&d[h..h + 92]);
    d[h + 16..h + 20].copy_from_slice(&c.to_le_bytes());
}

fuzz_target!(|input: &[u8]| {
    let Some((&flag, rest)) = input.split_first() else {
        return;
    };
    let mut disk = rest.to_vec();
    if flag & 1 == 1 {
        patch_gpt(&mut disk, if flag & 2 == 2 { 4096 } else { 512 });
    }
    let len = disk.len() as u64;
    // An area in the disk, chosen by the flag byte.
    let start = (u64::from(flag >> 2) * 512).min(len.saturating_sub(1024));
    let end = (start + 1024).min(len);
    let read = |off: u64, buf: &mut [u8]| -> Result<(), ()> {
        let off = usize::try_from(off).map_err(|_| ())?;
        let src = disk.get(off..off + buf.len()).expect("read inside the disk");
        buf.copy_from_slice(src);
        Ok(())
    };
    match check_area(len, &[512, 4096], start, end, read) {
        Ok(scan) => {
            // Allowed: no MBR entry other than 0xEE covers the area, in the
            // sector size used.
            if let Some(mbr) = disk.get(..512).and_then(|s| Mbr::new(s).ok()) {
                let clash = mbr
                    .partitions()
                    .filter(|e: &MbrEntry| !e.is_protective())
                    .any(|e| e.extent().overlaps(scan.sector_size, start, end));
                assert!(!clash, "allowed over an MBR partition");
            }
            let _ = GptHeader::parse(disk.get(512..1024).unwrap_or(&[]), 1);
        }
        Err(ScanError::Refused(r)) => {
            let _ = r.to_string();
            if let Refusal::Overlap { start: s, end: e, .. } = r {
                assert_eq!((s, e), (start, end));
            }
        }
        Err(ScanError::Read { .. }) => panic!("the reader never fails"),
    }
});
