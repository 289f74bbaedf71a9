//! The std lease store: a write-ahead log of lease records, fsync'd before
//! the ACK that grants a lease leaves, compacted by atomic replace on start
//! and whenever it grows past [`COMPACT_FACTOR`] lines per live lease.
//!
//! A header line, then one record a line, appended:
//!
//! ```text
//! # preboot lease log v1
//! G <address> <expires, µs since the Unix epoch> <client key, hex>
//! R <address> 0 <client key, hex>
//! ```
//!
//! Expiry is wall-clock time on disk, engine time ([`crate::driver::clock`],
//! monotonic) in memory: records are converted where they are written and
//! read, so a restarted server reads the leases of the previous one.
//!
//! A `kill -9` can only tear the last line, which was never synced and so
//! never acknowledged to a client; loading skips any line that does not
//! parse. Compaction writes only the live leases into `<file>.tmp`
//! (created anew, never through a symbolic link), fsyncs it, renames it
//! over the log and fsyncs the directory: a crash at any point leaves
//! either the old log or the new one, each holding every acknowledged
//! lease.
//!
//! The log is never opened through a symbolic link (`O_NOFOLLOW`), and a
//! file that is not a lease log — not empty and without the header line —
//! is refused rather than truncated: a mistyped `lease_file` cannot destroy
//! another file, and a link planted at `<file>.tmp` cannot redirect the
//! rewrite.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use super::super::atomic_file::{self, sync_dir};
use crate::dhcp::leases::ClientKey;
use crate::dhcp::store::{LeaseRecord, LeaseStore, RecordKind};

/// The first line of every lease log.
pub const HEADER: &str = "# preboot lease log v1";
/// The log is compacted when it holds more than this many records per
/// live lease (and more than [`COMPACT_MIN_RECORDS`]).
pub const COMPACT_FACTOR: usize = 4;
/// Below this many records the log is never compacted while running.
pub const COMPACT_MIN_RECORDS: usize = 1024;

/// A lease log on disk.
#[derive(Debug)]
pub struct LeaseFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// The live set: last grant per address, minus releases.
    live: BTreeMap<u32, LeaseRecord>,
    /// Records in the file (header excluded).
    records: usize,
    /// A compaction renamed the log but the directory fsync failed: sync
    /// retries it before it says anything is durable.
    dir_unsynced: bool,
}

fn read_opts() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).custom_flags(libc::O_NOFOLLOW);
    o
}

fn not_ours(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        std::format!(
            "{}: {why}; refusing to use it as the lease log (point lease_file at a new file, or move this one away)",
            path.display()
        ),
    )
}

impl LeaseFile {
    /// Whether `path` can be this server's lease log: absent, or a regular
    /// file (not a symbolic link) that is empty or starts with [`HEADER`].
    /// Reads at most the header; changes nothing.
    pub fn check(path: &Path) -> io::Result<()> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            return Err(not_ours(path, "a symbolic link"));
        }
        if !meta.is_file() {
            return Err(not_ours(path, "not a regular file"));
        }
        let mut first = [0u8; HEADER.len() + 1];
        let mut n = 0;
        let mut f = read_opts().open(path)?;
        while n < first.len() {
            match f.read(&mut first[n..])? {
                0 => break,
                k => n += k,
            }
        }
        match &first[..n] {
            [] => Ok(()),
            b if b.starts_with(HEADER.as_bytes())
                && b.get(HEADER.len()).is_none_or(|&c| c == b'\n') =>
            {
                Ok(())
            }
            _ => Err(not_ours(
                path,
                &std::format!("not empty and its first line is not `{HEADER}`"),
            )),
        }
    }

    /// Open (creating) the log at `path`, compacting what it holds. The
    /// records still alive are returned for the engine to restore.
    pub fn open(path: &Path) -> io::Result<(LeaseFile, Vec<LeaseRecord>)> {
        Self::check(path)?;
        let records = match read_opts().open(path) {
            Ok(f) => read_records(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut live = BTreeMap::new();
        for r in &records {
            fold(&mut live, r);
        }
        let (out, dir_synced) = rewrite(path, &live)?;
        if !dir_synced {
            sync_dir(path)?;
        }
        let file = LeaseFile {
            path: path.to_path_buf(),
            out: BufWriter::new(out),
            records: live.len(),
            live,
            dir_unsynced: false,
        };
        let live = file.live.values().copied().collect();
        Ok((file, live))
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records in the file now (the header excluded).
    pub fn records(&self) -> usize {
        self.records
    }

    /// Live leases (the records a compaction keeps).
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Compact the log if it holds more than [`COMPACT_FACTOR`] records per
    /// live lease (and over [`COMPACT_MIN_RECORDS`]); `true` if it did.
    /// Call it after [`LeaseStore::sync`]: records appended but not synced
    /// are flushed first and survive in either file.
    pub fn maybe_compact(&mut self) -> io::Result<bool> {
        let bound = COMPACT_MIN_RECORDS.max(COMPACT_FACTOR.saturating_mul(self.live.len()));
        if self.records <= bound {
            return Ok(false);
        }
        self.out.flush()?;
        let (out, dir_synced) = rewrite(&self.path, &self.live)?;
        // `rewrite` renamed the new file into place; appends go to it (the
        // next sync retries the directory fsync if it failed).
        self.out = BufWriter::new(out);
        self.records = self.live.len();
        self.dir_unsynced |= !dir_synced;
        Ok(true)
    }
}

/// Fold one record into the live set: last grant per address wins; a
/// release removes the grant of the same client.
fn fold(live: &mut BTreeMap<u32, LeaseRecord>, r: &LeaseRecord) {
    let a = u32::from(r.addr);
    match r.kind {
        RecordKind::Granted => {
            live.insert(a, *r);
        }
        RecordKind::Released => {
            if live.get(&a).is_some_and(|l| l.client == r.client) {
                live.remove(&a);
            }
        }
    }
}

/// Write `live` (with the header) as the whole new log
/// ([`atomic_file::replace`]); return it open for appending, and whether
/// the directory fsync succeeded (after the rename the new file is the log
/// either way: the caller must append to it).
fn rewrite(path: &Path, live: &BTreeMap<u32, LeaseRecord>) -> io::Result<(File, bool)> {
    atomic_file::replace(path, |w| {
        writeln!(w, "{HEADER}")?;
        for r in live.values() {
            write_record(w, r)?;
        }
        Ok(())
    })
}

fn write_record(w: &mut impl Write, r: &LeaseRecord) -> io::Result<()> {
    let kind = match r.kind {
        RecordKind::Granted => 'G',
        RecordKind::Released => 'R',
    };
    let mut hex = String::with_capacity(64);
    for b in r.client.as_bytes() {
        use core::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    let expires = match r.kind {
        RecordKind::Granted => crate::driver::clock::to_unix_micros(r.expires),
        RecordKind::Released => 0,
    };
    writeln!(w, "{kind} {} {expires} {hex}", r.addr)
}

fn parse_line(line: &str) -> Option<LeaseRecord> {
    let mut it = line.split(' ');
    let kind = match it.next()? {
        "G" => RecordKind::Granted,
        "R" => RecordKind::Released,
        _ => return None,
    };
    let addr: Ipv4Addr = it.next()?.parse().ok()?;
    let expires: u64 = it.next()?.parse().ok()?;
    let hex = it.next()?;
    if it.next().is_some() || hex.len() % 2 != 0 || hex.len() > 2 * crate::dhcp::leases::KEY_LEN {
        return None;
    }
    let mut key = [0u8; crate::dhcp::leases::KEY_LEN];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let s = core::str::from_utf8(pair).ok()?;
        key[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(LeaseRecord {
        kind,
        addr,
        client: ClientKey::from_bytes(&key[..hex.len() / 2])?,
        expires: crate::driver::clock::from_unix_micros(expires),
    })
}

fn read_records(f: File) -> Vec<LeaseRecord> {
    let mut out = Vec::new();
    for line in BufReader::new(f).split(b'\n') {
        let Ok(line) = line else { break };
        if let Some(r) = core::str::from_utf8(&line).ok().and_then(parse_line) {
            out.push(r);
        }
    }
    out
}

impl LeaseStore for LeaseFile {
    type Error = io::Error;

    fn append(&mut self, record: &LeaseRecord) -> io::Result<()> {
        write_record(&mut self.out, record)?;
        fold(&mut self.live, record);
        self.records += 1;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        if self.dir_unsynced {
            sync_dir(&self.path)?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    fn load(&mut self, each: &mut dyn FnMut(LeaseRecord)) -> io::Result<()> {
        self.out.flush()?;
        for r in read_records(read_opts().open(&self.path)?) {
            each(r);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Instant;
    use std::string::ToString;

    fn rec(kind: RecordKind, last: u8, mac: u8) -> LeaseRecord {
        LeaseRecord {
            kind,
            addr: Ipv4Addr::new(10, 0, 0, last),
            client: ClientKey::new(None, 1, &[2, 0, 0, 0, 0, mac]),
            expires: Instant::from_secs(1_700_000_000),
        }
    }

    #[test]
    fn log_replays_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases");
        {
            let (mut f, live) = LeaseFile::open(&path).unwrap();
            assert!(live.is_empty());
            f.append(&rec(RecordKind::Granted, 10, 1)).unwrap();
            f.append(&rec(RecordKind::Granted, 11, 2)).unwrap();
            f.append(&rec(RecordKind::Released, 10, 1)).unwrap();
            f.sync().unwrap();
        }
        // A torn last line (kill -9 mid-write) is skipped.
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(b"G 10.0.0.12 17000").unwrap();
        drop(raw);
        let (_f, live) = LeaseFile::open(&path).unwrap();
        assert_eq!(live, [rec(RecordKind::Granted, 11, 2)]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(text.lines().next(), Some(HEADER));
    }

    /// Issue 11 item 5: renewals of one lease (what a flood of REQUESTs
    /// under one client identifier writes) keep the log bounded while
    /// running: never more than max(COMPACT_MIN_RECORDS, COMPACT_FACTOR ×
    /// live) records plus one group commit, and a reopen finds every lease.
    #[test]
    fn log_stays_bounded_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases");
        let (mut f, _) = LeaseFile::open(&path).unwrap();
        // 10 live leases, then 40,000 renewals of one of them, committed in
        // groups of 50 (about what 8 s of that flood wrote: 38,350 lines).
        for n in 0..10 {
            f.append(&rec(RecordKind::Granted, 100 + n, n)).unwrap();
        }
        f.sync().unwrap();
        let mut compactions = 0;
        let mut most = 0;
        for i in 0..40_000u32 {
            let mut r = rec(RecordKind::Granted, 100, 0);
            r.expires = Instant::from_secs(1_700_000_000 + u64::from(i));
            f.append(&r).unwrap();
            if i % 50 == 49 {
                f.sync().unwrap();
                most = most.max(text_lines(&path) - 1);
                if f.maybe_compact().unwrap() {
                    compactions += 1;
                }
            }
        }
        f.sync().unwrap();
        assert!(most <= COMPACT_MIN_RECORDS + 50, "{most} records at most");
        assert!(compactions >= 35, "{compactions}");
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert!(bytes < 64 * 1024, "{bytes} bytes");
        drop(f);
        let (_, live) = LeaseFile::open(&path).unwrap();
        assert_eq!(live.len(), 10);
        let last = live.iter().find(|r| r.addr == Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(
            last.map(|r| r.expires),
            Some(Instant::from_secs(1_700_000_000 + 39_999))
        );
    }

    fn text_lines(p: &Path) -> usize {
        std::fs::read_to_string(p).unwrap().lines().count()
    }

    /// Issue 11 item 8: a lease_file naming a file that is not a lease log
    /// is refused, not truncated; so is a symbolic link.
    #[test]
    fn a_file_that_is_not_a_lease_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("passwd");
        std::fs::write(&victim, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        let e = LeaseFile::open(&victim).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string().contains("not a lease log") || e.to_string().contains(HEADER),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "root:x:0:0:root:/root:/bin/bash\n"
        );
        let link = dir.path().join("leases");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = LeaseFile::open(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // An empty file and an existing log are ours.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        LeaseFile::open(&empty).unwrap();
        LeaseFile::open(&empty).unwrap();
        assert_eq!(
            std::fs::read_to_string(&empty).unwrap(),
            std::format!("{HEADER}\n")
        );
    }

    /// Issue 11 item 8: a symbolic link planted at `<lease>.tmp` is not
    /// followed by the rewrite (at start or while running): its target
    /// stays as it was.
    #[test]
    fn a_planted_tmp_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let path = dir.path().join("leases");
        let tmp = dir.path().join("leases.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let (mut f, _) = LeaseFile::open(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        // Again while running, at compaction.
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        for _ in 0..=COMPACT_MIN_RECORDS {
            f.append(&rec(RecordKind::Granted, 10, 1)).unwrap();
        }
        f.sync().unwrap();
        assert!(f.maybe_compact().unwrap());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(!tmp.exists());
        assert_eq!(text_lines(&path), 2);
    }

    #[test]
    fn bad_lines_are_refused() {
        for l in [
            "",
            "X 1.2.3.4 0 0001",
            "G 1.2.3.4 0 0",
            "G 1.2.3.4 0 07",
            "G 1.2.3.4 x 0001",
            "G 1.2.3 0 0001",
        ] {
            assert_eq!(parse_line(l), None, "{l}");
        }
        assert!(parse_line("G 1.2.3.4 5 000102").is_some());
    }
}
