//! The std lease store: a write-ahead log of lease records, fsync'd before
//! the ACK that grants a lease leaves, compacted by atomic replace on start.
//!
//! One record a line, appended:
//!
//! ```text
//! G <address> <expires, µs since the Unix epoch> <client key, hex>
//! R <address> 0 <client key, hex>
//! ```
//!
//! A `kill -9` can only tear the last line, which was never synced and so
//! never acknowledged to a client; loading skips any line that does not
//! parse. On open the log is replayed, then rewritten with only the live
//! leases into `<file>.tmp`, fsync'd, renamed over the log and the directory
//! fsync'd, so the log stays as small as the lease table.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use crate::Instant;
use crate::dhcp::leases::ClientKey;
use crate::dhcp::store::{LeaseRecord, LeaseStore, RecordKind};

/// A lease log on disk.
#[derive(Debug)]
pub struct LeaseFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl LeaseFile {
    /// Open (creating) the log at `path`, compacting what it holds. The
    /// records still alive are returned for the engine to restore.
    pub fn open(path: &Path) -> io::Result<(LeaseFile, Vec<LeaseRecord>)> {
        let records = match File::open(path) {
            Ok(f) => read_records(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        // Fold the log into the live set: last record per address wins.
        let mut live: std::collections::BTreeMap<u32, LeaseRecord> = Default::default();
        for r in records {
            match r.kind {
                RecordKind::Granted => {
                    live.insert(u32::from(r.addr), r);
                }
                RecordKind::Released => {
                    if live
                        .get(&u32::from(r.addr))
                        .is_some_and(|l| l.client == r.client)
                    {
                        live.remove(&u32::from(r.addr));
                    }
                }
            }
        }
        let live: Vec<LeaseRecord> = live.into_values().collect();
        let tmp = path.with_extension("tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp)?);
            for r in &live {
                write_record(&mut w, r)?;
            }
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)?.sync_all()?;
        }
        let f = OpenOptions::new().append(true).open(path)?;
        Ok((
            LeaseFile {
                path: path.to_path_buf(),
                out: BufWriter::new(f),
            },
            live,
        ))
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
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
        RecordKind::Granted => r.expires.as_micros(),
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
        expires: Instant::from_micros(expires),
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
        write_record(&mut self.out, record)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    fn load(&mut self, each: &mut dyn FnMut(LeaseRecord)) -> io::Result<()> {
        self.out.flush()?;
        for r in read_records(File::open(&self.path)?) {
            each(r);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(text.lines().count(), 1, "{text}");
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
