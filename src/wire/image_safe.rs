//! The image-safe data record kept on the workstation disk
//! (docs/transaction-protocol.md §10).
//!
//! Two 1024-byte slots live in the gap between the partition table and the
//! first 1 MiB-aligned partition, at byte offsets [`SLOT_A_OFFSET`] and
//! [`SLOT_B_OFFSET`] (§10.1: no partitioning tool writes there, so the record
//! survives repartitioning). Each slot has a 4 KiB-aligned 4 KiB sector of
//! its own (4 KiB sectors 253 and 254 of the disk; the key record of §11.1
//! is in sector 255), so a torn write on a drive with 4 KiB physical
//! sectors (512e or 4Kn) can damage only the slot being written, never the
//! other copy. In the legacy layout both slots shared the last 4 KiB
//! sector ([`LEGACY_SLOT_A_OFFSET`], [`LEGACY_SLOT_B_OFFSET`]);
//! [`select_with_legacy`] still finds a record there (§10.4). A record
//! (§10.2, big-endian):
//!
//! ```text
//!  0      4       5       6          8            12               len-4    len
//! +------+-------+-------+----------+------------+-- ... --+--------+
//! |"PBIS"|ver = 1|flags=0| length   | generation | TLVs    | CRC-32 |
//! +------+-------+-------+----------+------------+-- ... --+--------+
//! ```
//!
//! Field TLVs are `type:u8 len:u8 value`. [`ImageSafe::parse`] checks magic,
//! version, length and CRC before reading a field; [`select`] picks the
//! current slot of two, or gives the defaults with the reason (§10.3).
//!
//! ```
//! use preboot::wire::image_safe::{ImageSafe, select, SLOT_LEN};
//!
//! let mut rec = ImageSafe::default();
//! rec.base_image = Some("images/win11-base.img");
//! rec.generation = 7;
//! let mut a = [0u8; SLOT_LEN];
//! rec.emit(&mut a).unwrap();
//! let b = [0u8; SLOT_LEN]; // blank slot
//! let loaded = select(&a, &b);
//! assert_eq!(loaded.record.base_image, Some("images/win11-base.img"));
//! assert!(loaded.problem.is_none());
//! ```

use crate::wire::transaction::messages::NetMode;
use core::net::Ipv4Addr;
use heapless::Vec;

/// Record magic `PBIS`.
pub const MAGIC: [u8; 4] = *b"PBIS";
/// Record version.
pub const VERSION: u8 = 1;
/// The sector size a slot is aligned to and alone in (§10.1): the largest
/// physical sector of current drives (512e and 4Kn).
pub const SECTOR_ALIGN: u64 = 4096;
/// Byte offset of slot A on the disk (1 MiB − 12 KiB: 4 KiB sector 253).
pub const SLOT_A_OFFSET: u64 = 1_036_288;
/// Byte offset of slot B on the disk (1 MiB − 8 KiB: 4 KiB sector 254).
pub const SLOT_B_OFFSET: u64 = 1_040_384;
/// Byte offset of slot A in the legacy layout (1 MiB − 2 KiB), in the
/// same 4 KiB sector as slot B was: read for migration only (§10.4).
pub const LEGACY_SLOT_A_OFFSET: u64 = 1_046_528;
/// Byte offset of slot B in the legacy layout (1 MiB − 1 KiB).
pub const LEGACY_SLOT_B_OFFSET: u64 = 1_047_552;
/// Start of the area below 1 MiB that image-safe data and the key record
/// (§11.1) use: 4 KiB sectors 253–255. No partition may overlap it.
pub const RESERVED_START: u64 = SLOT_A_OFFSET;
/// End (exclusive) of that area: the 1 MiB mark.
pub const RESERVED_END: u64 = 1 << 20;

// §10.1: each slot alone in a 4 KiB-aligned sector, both inside the area.
const _: () = {
    assert!(SLOT_A_OFFSET % SECTOR_ALIGN == 0 && SLOT_B_OFFSET % SECTOR_ALIGN == 0);
    assert!(SLOT_A_OFFSET / SECTOR_ALIGN != SLOT_B_OFFSET / SECTOR_ALIGN);
    assert!(SLOT_LEN as u64 <= SECTOR_ALIGN);
    assert!(RESERVED_START <= SLOT_A_OFFSET && SLOT_B_OFFSET + SECTOR_ALIGN <= RESERVED_END);
    assert!(LEGACY_SLOT_A_OFFSET >= RESERVED_START && LEGACY_SLOT_B_OFFSET < RESERVED_END);
};
/// Size of a slot and the largest record.
pub const SLOT_LEN: usize = 1024;
/// Smallest record: header (12) + CRC (4).
pub const MIN_LEN: usize = 16;

/// Pending-task flags (§10.2 field 10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingFlags(pub u32);

impl PendingFlags {
    /// Put an image on the disk at next boot.
    pub const IMAGE_NEXT_BOOT: u32 = 1;
    /// Create an image at next boot.
    pub const CREATE_IMAGE: u32 = 2;
    /// Run maintenance at next boot.
    pub const MAINTENANCE: u32 = 4;
    /// The imaging partition is disabled.
    pub const IMAGING_PARTITION_DISABLED: u32 = 8;

    /// Is `bit` set?
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// Why a slot holds no valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageSafeError {
    /// The slot is blank (all zero or all 0xFF bytes): never written.
    #[error("no image-safe record (blank slot)")]
    Blank,
    /// Shorter than a record header.
    #[error("image-safe slot truncated to {0} bytes")]
    Truncated(usize),
    /// Wrong magic.
    #[error("image-safe slot has no PBIS magic")]
    BadMagic,
    /// Version other than 1.
    #[error("image-safe record version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Length field out of range or beyond the slot.
    #[error("image-safe record length {0} is out of range")]
    BadLength(usize),
    /// CRC mismatch (torn write or bit rot).
    #[error("image-safe record CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC in the record.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// A field is malformed.
    #[error("image-safe record field {0} is malformed")]
    BadField(u8),
    /// The record does not fit the buffer or slot.
    #[error("image-safe record needs {needed} bytes")]
    TooLarge {
        /// Bytes needed.
        needed: usize,
    },
}

/// The image-safe data (§10.2). Strings borrow from the slot bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSafe<'a> {
    /// Incremented by every write.
    pub generation: u32,
    /// Field 1: last base image applied.
    pub base_image: Option<&'a str>,
    /// Field 2: add-on images applied.
    pub add_on_images: Vec<&'a str, 8>,
    /// Field 3: workstation name.
    pub workstation_name: Option<&'a str>,
    /// Field 4: directory id.
    pub directory_id: Option<&'a str>,
    /// Field 5: DHCP or static.
    pub net_mode: NetMode,
    /// Field 6: static address.
    pub address: Option<Ipv4Addr>,
    /// Field 7: netmask.
    pub netmask: Option<Ipv4Addr>,
    /// Field 8: gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Field 9: DNS servers.
    pub dns: Vec<Ipv4Addr, 4>,
    /// Field 10: pending-task flags.
    pub pending: PendingFlags,
}

impl Default for ImageSafe<'_> {
    /// The defaults used when no valid record exists: DHCP, no image, no flags.
    fn default() -> Self {
        ImageSafe {
            generation: 0,
            base_image: None,
            add_on_images: Vec::new(),
            workstation_name: None,
            directory_id: None,
            net_mode: NetMode::Dhcp,
            address: None,
            netmask: None,
            gateway: None,
            dns: Vec::new(),
            pending: PendingFlags(0),
        }
    }
}

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE 802.3), as used by the record (§10.2).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

/// The CRC-32 of [`crc32`] over data given in pieces (the GPT's header
/// and entry array, UEFI 2.10 §5.3.2, are checked with it piece by piece).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub const fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }
    /// Add `data`.
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }
    /// The CRC of everything added.
    pub fn finish(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

fn str_field(v: &[u8], k: u8) -> Result<&str, ImageSafeError> {
    core::str::from_utf8(v).map_err(|_| ImageSafeError::BadField(k))
}
fn ip_field(v: &[u8], k: u8) -> Result<Ipv4Addr, ImageSafeError> {
    let a: [u8; 4] = v.try_into().map_err(|_| ImageSafeError::BadField(k))?;
    Ok(Ipv4Addr::from(a))
}
fn set<T>(slot: &mut Option<T>, v: T, k: u8) -> Result<(), ImageSafeError> {
    if slot.replace(v).is_some() {
        return Err(ImageSafeError::BadField(k));
    }
    Ok(())
}

impl<'a> ImageSafe<'a> {
    /// Parse the record at the start of `slot` (trailing slot bytes are
    /// ignored). Checks magic, version, length and CRC first.
    pub fn parse(slot: &'a [u8]) -> Result<Self, ImageSafeError> {
        if slot.iter().all(|&b| b == 0) || slot.iter().all(|&b| b == 0xFF) {
            return Err(ImageSafeError::Blank);
        }
        if slot.len() < MIN_LEN {
            return Err(ImageSafeError::Truncated(slot.len()));
        }
        if slot[..4] != MAGIC {
            return Err(ImageSafeError::BadMagic);
        }
        if slot[4] != VERSION {
            return Err(ImageSafeError::UnsupportedVersion(slot[4]));
        }
        let len = usize::from(u16::from_be_bytes([slot[6], slot[7]]));
        if !(MIN_LEN..=SLOT_LEN).contains(&len) || len > slot.len() {
            return Err(ImageSafeError::BadLength(len));
        }
        let rec = &slot[..len];
        let (body, crc) = rec.split_at(len - 4);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = crc32(body);
        if stored != computed {
            return Err(ImageSafeError::BadCrc { stored, computed });
        }
        let mut r = ImageSafe {
            generation: u32::from_be_bytes([body[8], body[9], body[10], body[11]]),
            ..ImageSafe::default()
        };
        let (mut mode, mut pending) = (None, None);
        let mut pos = 12;
        while pos < body.len() {
            let (k, n) = match body.get(pos..pos + 2) {
                Some(&[k, n]) => (k, usize::from(n)),
                _ => return Err(ImageSafeError::BadField(0)),
            };
            let v = body
                .get(pos + 2..pos + 2 + n)
                .ok_or(ImageSafeError::BadField(k))?;
            pos += 2 + n;
            match k {
                1 => set(&mut r.base_image, str_field(v, k)?, k)?,
                2 => r
                    .add_on_images
                    .push(str_field(v, k)?)
                    .map_err(|_| ImageSafeError::BadField(k))?,
                3 => set(&mut r.workstation_name, str_field(v, k)?, k)?,
                4 => set(&mut r.directory_id, str_field(v, k)?, k)?,
                5 => match v {
                    [m] => set(&mut mode, NetMode::from(*m), k)?,
                    _ => return Err(ImageSafeError::BadField(k)),
                },
                6 => set(&mut r.address, ip_field(v, k)?, k)?,
                7 => set(&mut r.netmask, ip_field(v, k)?, k)?,
                8 => set(&mut r.gateway, ip_field(v, k)?, k)?,
                9 => r
                    .dns
                    .push(ip_field(v, k)?)
                    .map_err(|_| ImageSafeError::BadField(k))?,
                10 => {
                    let b: [u8; 4] = v.try_into().map_err(|_| ImageSafeError::BadField(k))?;
                    set(&mut pending, PendingFlags(u32::from_be_bytes(b)), k)?
                }
                _ => {}
            }
        }
        r.net_mode = mode.unwrap_or(NetMode::Dhcp);
        r.pending = pending.unwrap_or_default();
        Ok(r)
    }

    fn strs(&self) -> impl Iterator<Item = (u8, &str)> {
        let one = |k: u8, s: Option<&'a str>| s.map(move |s| (k, s));
        one(1, self.base_image)
            .into_iter()
            .chain(self.add_on_images.iter().map(|s| (2u8, *s)))
            .chain(one(3, self.workstation_name))
            .chain(one(4, self.directory_id))
    }

    /// Encoded length of the record.
    pub fn buffer_len(&self) -> usize {
        let ips = [self.address, self.netmask, self.gateway]
            .iter()
            .flatten()
            .count()
            + self.dns.len();
        12 + self.strs().map(|(_, s)| 2 + s.len()).sum::<usize>() + 3 + ips * 6 + 6 + 4
    }

    /// Write the record into `buf`; returns its length. Fails (buffer
    /// untouched) if a string exceeds 255 bytes or the record exceeds
    /// [`SLOT_LEN`] or `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ImageSafeError> {
        let len = self.buffer_len();
        if len > SLOT_LEN {
            return Err(ImageSafeError::TooLarge { needed: len });
        }
        if let Some((k, _)) = self.strs().find(|(_, s)| s.len() > 255) {
            return Err(ImageSafeError::BadField(k));
        }
        let out = buf
            .get_mut(..len)
            .ok_or(ImageSafeError::TooLarge { needed: len })?;
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = 0;
        out[6..8].copy_from_slice(&(len as u16).to_be_bytes());
        out[8..12].copy_from_slice(&self.generation.to_be_bytes());
        let mut pos = 12;
        let mut put = |k: u8, v: &[u8]| {
            out[pos] = k;
            out[pos + 1] = v.len() as u8;
            out[pos + 2..pos + 2 + v.len()].copy_from_slice(v);
            pos += 2 + v.len();
        };
        for (k, s) in self.strs() {
            put(k, s.as_bytes());
        }
        put(5, &[self.net_mode.into()]);
        for (k, ip) in [(6, self.address), (7, self.netmask), (8, self.gateway)] {
            if let Some(ip) = ip {
                put(k, &ip.octets());
            }
        }
        for d in &self.dns {
            put(9, &d.octets());
        }
        put(10, &self.pending.0.to_be_bytes());
        let crc = crc32(&out[..len - 4]);
        out[len - 4..].copy_from_slice(&crc.to_be_bytes());
        Ok(len)
    }
}

/// Which slot holds the current record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Slot A at [`SLOT_A_OFFSET`].
    A,
    /// Slot B at [`SLOT_B_OFFSET`].
    B,
}

impl Slot {
    /// Byte offset of the slot on the disk.
    pub fn offset(self) -> u64 {
        match self {
            Slot::A => SLOT_A_OFFSET,
            Slot::B => SLOT_B_OFFSET,
        }
    }
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// Why the defaults are in effect (§10.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoRecord {
    /// Both slots are blank: the disk never had a record.
    #[error("no image-safe data on this disk (both slots blank)")]
    Missing,
    /// At least one slot holds bytes, none is valid.
    #[error("image-safe data corrupt: slot A: {a}; slot B: {b}")]
    Corrupt {
        /// Problem with slot A.
        a: ImageSafeError,
        /// Problem with slot B.
        b: ImageSafeError,
    },
}

/// The outcome of reading both slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded<'a> {
    /// The current record, or the defaults.
    pub record: ImageSafe<'a>,
    /// The slot it came from (`None` = defaults).
    pub slot: Option<Slot>,
    /// Why the defaults are in effect.
    pub problem: Option<NoRecord>,
}

/// Choose the current record from slots A and B (§10.3): the valid one
/// with the newer generation (serial-number arithmetic), or the defaults
/// with the reason.
pub fn select<'a>(a: &'a [u8], b: &'a [u8]) -> Loaded<'a> {
    match (ImageSafe::parse(a), ImageSafe::parse(b)) {
        (Ok(ra), Ok(rb)) => {
            if (rb.generation.wrapping_sub(ra.generation) as i32) > 0 {
                Loaded {
                    record: rb,
                    slot: Some(Slot::B),
                    problem: None,
                }
            } else {
                Loaded {
                    record: ra,
                    slot: Some(Slot::A),
                    problem: None,
                }
            }
        }
        (Ok(ra), Err(_)) => Loaded {
            record: ra,
            slot: Some(Slot::A),
            problem: None,
        },
        (Err(_), Ok(rb)) => Loaded {
            record: rb,
            slot: Some(Slot::B),
            problem: None,
        },
        (Err(ea), Err(eb)) => Loaded {
            record: ImageSafe::default(),
            slot: None,
            problem: Some(
                if ea == ImageSafeError::Blank && eb == ImageSafeError::Blank {
                    NoRecord::Missing
                } else {
                    NoRecord::Corrupt { a: ea, b: eb }
                },
            ),
        },
    }
}

/// Which layout the current record was found in (§10.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The slots at [`SLOT_A_OFFSET`] and [`SLOT_B_OFFSET`], each in a
    /// 4 KiB sector of its own (§10.1), or no record anywhere.
    Aligned,
    /// The slots at [`LEGACY_SLOT_A_OFFSET`] and [`LEGACY_SLOT_B_OFFSET`]:
    /// the next write migrates the record.
    Legacy,
}

/// Choose the current record from the aligned slots `a`, `b` and the
/// legacy slots `legacy_a`, `legacy_b` (§10.4): a valid aligned record
/// always wins; the legacy slots count only when no aligned slot is valid
/// (never migrated, or the migrating write was torn). No valid record →
/// the defaults with the aligned slots' reason, or the legacy slots' when
/// the aligned ones are blank and the legacy ones are not.
pub fn select_with_legacy<'a>(
    a: &'a [u8],
    b: &'a [u8],
    legacy_a: &'a [u8],
    legacy_b: &'a [u8],
) -> (Loaded<'a>, Layout) {
    let aligned = select(a, b);
    if aligned.slot.is_some() {
        return (aligned, Layout::Aligned);
    }
    let legacy = select(legacy_a, legacy_b);
    if legacy.slot.is_some()
        || (aligned.problem == Some(NoRecord::Missing) && legacy.problem != Some(NoRecord::Missing))
    {
        return (legacy, Layout::Legacy);
    }
    (aligned, Layout::Aligned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImageSafe<'static> {
        let mut r = ImageSafe {
            generation: 41,
            base_image: Some("win11/base.img"),
            workstation_name: Some("lab-pc-07"),
            directory_id: Some("cn=lab-pc-07,ou=lab"),
            net_mode: NetMode::Static,
            address: Some(Ipv4Addr::new(10, 0, 0, 7)),
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            pending: PendingFlags(PendingFlags::IMAGE_NEXT_BOOT),
            ..ImageSafe::default()
        };
        r.add_on_images.push("apps/office.add").unwrap();
        r.dns.push(Ipv4Addr::new(10, 0, 0, 2)).unwrap();
        r
    }

    /// §10.2: round trip, exact bytes.
    #[test]
    fn round_trip() {
        let r = sample();
        let mut buf = [0u8; SLOT_LEN];
        let n = r.emit(&mut buf).unwrap();
        assert_eq!(n, r.buffer_len());
        assert_eq!(ImageSafe::parse(&buf).unwrap(), r);
        let mut again = [0u8; SLOT_LEN];
        ImageSafe::parse(&buf).unwrap().emit(&mut again).unwrap();
        assert_eq!(buf, again);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// §10.2/§10.3: every corruption is detected and named.
    #[test]
    fn corruption_is_detected() {
        let mut buf = [0u8; SLOT_LEN];
        let n = sample().emit(&mut buf).unwrap();
        assert_eq!(ImageSafe::parse(&[0u8; 64]), Err(ImageSafeError::Blank));
        assert_eq!(ImageSafe::parse(&[0xFFu8; 64]), Err(ImageSafeError::Blank));
        assert_eq!(
            ImageSafe::parse(&buf[..10]),
            Err(ImageSafeError::Truncated(10))
        );
        assert!(matches!(
            ImageSafe::parse(&buf[..n - 1]),
            Err(ImageSafeError::BadLength(_))
        ));
        let mut b = buf;
        b[0] = b'X';
        assert_eq!(ImageSafe::parse(&b), Err(ImageSafeError::BadMagic));
        let mut b = buf;
        b[4] = 9;
        assert_eq!(
            ImageSafe::parse(&b),
            Err(ImageSafeError::UnsupportedVersion(9))
        );
        let mut b = buf;
        b[20] ^= 0x10;
        assert!(matches!(
            ImageSafe::parse(&b),
            Err(ImageSafeError::BadCrc { .. })
        ));
        let mut b = buf;
        b[6..8].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(ImageSafe::parse(&b), Err(ImageSafeError::BadLength(2000)));
    }

    /// §10.3: newer generation wins; torn new copy leaves the old current.
    #[test]
    fn selection_and_defaults() {
        let mut a = [0u8; SLOT_LEN];
        let mut b = [0u8; SLOT_LEN];
        let mut r = sample();
        r.emit(&mut a).unwrap();
        r.generation = 42;
        r.base_image = Some("win11/base-v2.img");
        r.emit(&mut b).unwrap();
        let l = select(&a, &b);
        assert_eq!(l.slot, Some(Slot::B));
        assert_eq!(l.record.base_image, Some("win11/base-v2.img"));
        drop(l);
        b[100] ^= 1; // torn write of the new copy
        let l = select(&a, &b);
        assert_eq!((l.slot, l.record.generation), (Some(Slot::A), 41));
        drop(l);
        // wrap-around: generation 0 is newer than u32::MAX
        r.generation = u32::MAX;
        r.emit(&mut a).unwrap();
        r.generation = 0;
        r.emit(&mut b).unwrap();
        assert_eq!(select(&a, &b).slot, Some(Slot::B));
        let blank = [0u8; SLOT_LEN];
        let l = select(&blank, &blank);
        assert_eq!(l.problem, Some(NoRecord::Missing));
        assert_eq!(l.record, ImageSafe::default());
        let junk = [0x5Au8; SLOT_LEN];
        let l = select(&junk, &blank);
        assert_eq!(
            l.problem,
            Some(NoRecord::Corrupt {
                a: ImageSafeError::BadMagic,
                b: ImageSafeError::Blank
            })
        );
    }
    /// §10.4: a valid aligned record wins over any legacy one; the legacy
    /// slots count when no aligned slot is valid; the reason given is the
    /// one of the slots that hold bytes.
    #[test]
    fn legacy_layout_selection() {
        let blank = [0u8; SLOT_LEN];
        let (mut old, mut new) = ([0u8; SLOT_LEN], [0u8; SLOT_LEN]);
        let mut r = sample();
        r.generation = 100; // a legacy record with a higher generation
        r.emit(&mut old).unwrap();
        r.generation = 5;
        r.emit(&mut new).unwrap();
        let (l, layout) = select_with_legacy(&blank, &new, &old, &blank);
        assert_eq!(
            (l.slot, layout, l.record.generation),
            (Some(Slot::B), Layout::Aligned, 5)
        );
        let (l, layout) = select_with_legacy(&blank, &blank, &blank, &old);
        assert_eq!((l.slot, layout), (Some(Slot::B), Layout::Legacy));
        let junk = [0x5Au8; SLOT_LEN];
        let (l, layout) = select_with_legacy(&junk, &blank, &old, &blank);
        assert_eq!((l.slot, layout), (Some(Slot::A), Layout::Legacy));
        let (l, layout) = select_with_legacy(&blank, &blank, &junk, &blank);
        assert_eq!(layout, Layout::Legacy);
        assert!(matches!(l.problem, Some(NoRecord::Corrupt { .. })));
        let (l, layout) = select_with_legacy(&junk, &blank, &blank, &blank);
        assert_eq!(layout, Layout::Aligned);
        assert!(matches!(l.problem, Some(NoRecord::Corrupt { .. })));
        let (l, layout) = select_with_legacy(&blank, &blank, &blank, &blank);
        assert_eq!(
            (l.problem, layout),
            (Some(NoRecord::Missing), Layout::Aligned)
        );
    }

    /// The CRC in pieces equals the CRC at once.
    #[test]
    fn crc_in_pieces() {
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"");
        c.update(b"56789");
        assert_eq!(c.finish(), crc32(b"123456789"));
    }
}
