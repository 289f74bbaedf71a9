//! The workstation keys that wait for an administrator
//! (docs/transaction-protocol.md §3.4), kept in a file beside the server's
//! other state (`<server.state_dir>/pending-keys.toml`) so that a restart
//! does not forget them and an administrator can read them and bind them.
//!
//! The engine records a key it does not know as *pending* in memory
//! ([`crate::transaction::Server::pending_keys`]); this list follows its
//! [`ServerEvent::KeyPending`](crate::transaction::ServerEvent::KeyPending)
//! events with wall-clock times, and is rewritten whole
//! (temporary file, fsync, rename) when a key comes, goes (bound by the
//! configuration or by auto-enrolment), or was seen again after
//! [`REWRITE_AFTER_SECS`]. It holds at most [`MAX_PENDING_KEYS`] keys, the
//! least recently seen dropped first, as the engine does.
//!
//! The file is TOML, written for a person to read:
//!
//! ```toml
//! [[pending]]
//! public = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
//! from = "10.0.0.23:40123"
//! first_seen = 2026-12-05T03:20:00Z
//! last_seen = 2026-12-05T03:25:10Z
//! ```
//!
//! A damaged file (an edit gone wrong) is set aside as
//! `pending-keys.toml.damaged` with a warning, never a reason not to start.

use super::atomic_file;
use super::utc::{Utc, days_from_civil};
use crate::transaction::Hex;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::prelude::rust_2024::*;
use std::time::{SystemTime, UNIX_EPOCH};

/// The file's name in `server.state_dir`.
pub const PENDING_KEYS_FILE: &str = "pending-keys.toml";

/// At most this many keys are kept (as many as the engine keeps, §8).
pub const MAX_PENDING_KEYS: usize = 64;

/// A key seen again is written again only this long after its recorded
/// last sight (a boot storm of pending clients does not rewrite the file
/// at every handshake).
pub const REWRITE_AFTER_SECS: u64 = 60;

/// The largest file read back (64 entries take ~12 KiB).
const MAX_FILE_LEN: u64 = 256 * 1024;

/// One pending key: where it came from and when (seconds since the Unix
/// epoch, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    /// The address its last handshake came from.
    pub from: SocketAddrV4,
    /// First seen.
    pub first_seen: u64,
    /// Last seen.
    pub last_seen: u64,
}

/// The pending keys and the file they are kept in.
#[derive(Debug)]
pub struct PendingKeyList {
    path: PathBuf,
    keys: BTreeMap<[u8; 32], PendingEntry>,
    dirty: bool,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    pending: Vec<RawEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    public: String,
    from: String,
    first_seen: toml::value::Datetime,
    last_seen: toml::value::Datetime,
}

impl PendingKeyList {
    /// The list kept in `path`, read back if the file exists. A file that
    /// cannot be read as a pending key list is renamed to
    /// `<path>.damaged` (a warning says so) and the list starts empty; an
    /// error only when the file can neither be read nor set aside.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut list = PendingKeyList {
            path: path.to_path_buf(),
            keys: BTreeMap::new(),
            dirty: false,
        };
        let text = match read_bounded(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(list),
            Err(e) => return Err(e),
        };
        match parse(&text) {
            Ok(keys) => list.keys = keys,
            Err(why) => {
                let mut aside = path.as_os_str().to_os_string();
                aside.push(".damaged");
                std::fs::rename(path, &aside)?;
                tracing::warn!(
                    file = %path.display(),
                    set_aside = %Path::new(&aside).display(),
                    "pending workstation keys: cannot read the list ({why}); set it aside and started a new one"
                );
            }
        }
        list.trim();
        Ok(list)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 32], &PendingEntry)> {
        self.keys.iter()
    }

    /// How many keys wait.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No key waits.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `key` completed a handshake from `from` at `now` (Unix seconds) and
    /// is not bound. Returns whether the file should be written (a new
    /// key, a new address, or a sighting [`REWRITE_AFTER_SECS`] after the
    /// recorded one).
    pub fn note(&mut self, key: [u8; 32], from: SocketAddrV4, now: u64) -> bool {
        let changed = match self.keys.get_mut(&key) {
            Some(e) => {
                let changed =
                    e.from != from || now.saturating_sub(e.last_seen) >= REWRITE_AFTER_SECS;
                if changed {
                    e.from = from;
                    e.last_seen = now.max(e.last_seen);
                }
                changed
            }
            None => {
                self.keys.insert(
                    key,
                    PendingEntry {
                        from,
                        first_seen: now,
                        last_seen: now,
                    },
                );
                self.trim();
                true
            }
        };
        self.dirty |= changed;
        changed
    }

    /// Drop the keys `bound` says are bound now (a reload bound them, or
    /// auto-enrolment did). Returns whether any was dropped.
    pub fn forget_bound(&mut self, bound: impl Fn(&[u8; 32]) -> bool) -> bool {
        let before = self.keys.len();
        self.keys.retain(|k, _| !bound(k));
        let changed = self.keys.len() != before;
        self.dirty |= changed;
        changed
    }

    /// Write the file if anything changed since the last write.
    pub fn write_if_changed(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        atomic_file::replace(&self.path, |w| self.render(w))?;
        self.dirty = false;
        Ok(())
    }

    /// Keep the [`MAX_PENDING_KEYS`] most recently seen.
    fn trim(&mut self) {
        while self.keys.len() > MAX_PENDING_KEYS {
            let oldest = self
                .keys
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.keys.remove(&k);
                }
                None => break,
            }
        }
    }

    fn render(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(
            w,
            "# Workstation keys waiting for an administrator (docs/transaction-protocol.md §3.4),\n\
             # kept by preboot-server: the {MAX_PENDING_KEYS} most recently seen.\n\
             #\n\
             # To bind one, add it to the workstation keys with the workstation's MAC or\n\
             # machine UUID, in [transaction.keys] (or the store file's [keys]):\n\
             #   workstation = [ {{ mac = \"52:54:00:12:34:56\", public = \"<public below>\" }} ]\n\
             # then reload the server (SIGHUP). A bound key leaves this list."
        )?;
        let mut by_time: Vec<_> = self.keys.iter().collect();
        by_time.sort_by_key(|(k, e)| (e.first_seen, **k));
        for (key, e) in by_time {
            writeln!(
                w,
                "\n[[pending]]\npublic = \"{}\"\nfrom = \"{}\"\nfirst_seen = {}\nlast_seen = {}",
                Hex(key),
                e.from,
                Utc(e.first_seen),
                Utc(e.last_seen)
            )?;
        }
        Ok(())
    }
}

fn read_bounded(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut text = String::new();
    f.take(MAX_FILE_LEN + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is over {MAX_FILE_LEN} bytes", path.display()),
        ));
    }
    Ok(text)
}

/// The entries of a pending key list's text, or why not.
fn parse(text: &str) -> Result<BTreeMap<[u8; 32], PendingEntry>, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let mut keys = BTreeMap::new();
    for (i, r) in raw.pending.iter().enumerate() {
        let at = |what: &str| format!("entry {}: {what}", i + 1);
        let key = crate::transaction::parse_key(&r.public).map_err(|e| at(&e.to_string()))?;
        let from = r
            .from
            .parse()
            .map_err(|_| at("from is not an IPv4 address and port"))?;
        let first_seen =
            unix_of(&r.first_seen).ok_or_else(|| at("first_seen is not a UTC time"))?;
        let last_seen = unix_of(&r.last_seen).ok_or_else(|| at("last_seen is not a UTC time"))?;
        keys.insert(
            key,
            PendingEntry {
                from,
                first_seen,
                last_seen,
            },
        );
    }
    Ok(keys)
}

/// A TOML offset date-time in UTC (`Z` or `+00:00`) as Unix seconds.
fn unix_of(t: &toml::value::Datetime) -> Option<u64> {
    let (date, time) = (t.date?, t.time?);
    match t.offset? {
        toml::value::Offset::Z => {}
        toml::value::Offset::Custom { minutes: 0 } => {}
        toml::value::Offset::Custom { .. } => return None,
    }
    if !(1..=12).contains(&date.month) || !(1..=31).contains(&date.day) {
        return None;
    }
    let days = days_from_civil(i64::from(date.year), date.month.into(), date.day.into());
    let secs = days * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0));
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("preboot-pending-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn peer(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, last), 40_000)
    }

    #[test]
    fn utc_times_round_trip_and_match_known_dates() {
        assert_eq!(Utc(0).to_string(), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day of a century leap year), 2026-12-05.
        assert_eq!(Utc(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(Utc(1_796_441_100).to_string(), "2026-12-05T03:25:00Z");
        for secs in [0, 59, 86_399, 951_782_400, 1_796_441_100, 4_102_444_799] {
            let text = format!("t = {}", Utc(secs));
            let v: toml::Table = toml::from_str(&text).unwrap();
            let toml::Value::Datetime(t) = &v["t"] else {
                unreachable!("{text}")
            };
            assert_eq!(unix_of(t), Some(secs), "{text}");
        }
    }

    #[test]
    fn the_list_survives_a_restart_and_bound_keys_leave_it() {
        let d = dir("restart");
        let p = d.join(PENDING_KEYS_FILE);
        let mut l = PendingKeyList::open(&p).unwrap();
        assert!(l.is_empty());
        assert!(l.note([1; 32], peer(1), 1_796_441_100));
        assert!(l.note([2; 32], peer(2), 1_796_441_110));
        l.write_if_changed().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains(&format!("public = \"{}\"", Hex(&[1; 32]))),
            "{text}"
        );
        assert!(text.contains("from = \"10.0.0.1:40000\""), "{text}");
        assert!(text.contains("first_seen = 2026-12-05T03:25:00Z"), "{text}");

        let mut l = PendingKeyList::open(&p).unwrap();
        assert_eq!(l.len(), 2);
        let (_, e) = l.iter().next().unwrap();
        assert_eq!((e.from, e.first_seen), (peer(1), 1_796_441_100));
        // Seen again soon: nothing to write; from elsewhere: written.
        assert!(!l.note([1; 32], peer(1), 1_796_441_130));
        assert!(l.note([1; 32], peer(9), 1_796_441_131));
        assert!(l.forget_bound(|k| *k == [2; 32]));
        l.write_if_changed().unwrap();
        let l = PendingKeyList::open(&p).unwrap();
        let all: Vec<_> = l.iter().map(|(k, e)| (*k, e.from)).collect();
        assert_eq!(all, vec![([1; 32], peer(9))]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn at_most_64_keys_the_least_recently_seen_dropped() {
        let d = dir("bound");
        let mut l = PendingKeyList::open(&d.join(PENDING_KEYS_FILE)).unwrap();
        for i in 0..=MAX_PENDING_KEYS as u64 {
            l.note([i as u8; 32], peer(1), 1_000 + i);
        }
        assert_eq!(l.len(), MAX_PENDING_KEYS);
        assert!(l.iter().all(|(k, _)| *k != [0; 32]));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_file_is_set_aside_not_lost() {
        let d = dir("damaged");
        let p = d.join(PENDING_KEYS_FILE);
        for bad in [
            "[[pending]]\npublic = \"not a key\"\nfrom = \"10.0.0.1:1\"\nfirst_seen = 2026-12-05T03:25:00Z\nlast_seen = 2026-12-05T03:25:00Z\n",
            "[[pending]\n",
            "[[pending]]\npublic = \"00\"\n",
        ] {
            std::fs::write(&p, bad).unwrap();
            let l = PendingKeyList::open(&p).unwrap();
            assert!(l.is_empty());
            assert!(!p.exists());
            let aside = d.join(format!("{PENDING_KEYS_FILE}.damaged"));
            assert_eq!(std::fs::read_to_string(&aside).unwrap(), bad);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
