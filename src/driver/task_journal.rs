//! The task journal: the imaging proxy's [`TaskRecord`]s in an
//! append-only file, fsync'd before the `TaskReply` or `ReportAck` that
//! depends on them leaves, replayed at start, compacted by atomic replace
//! (docs/transaction-protocol.md §4.8).
//!
//! A header line, then one record a line:
//!
//! ```text
//! # preboot task journal v1
//! <crc> N <next task id>
//! <crc> H <µs> <object> <task> <hand-outs> <decision>
//! <crc> P <µs> <object> <task> <percent>
//! <crc> S <µs> <object> <task> <baseline, 16 hex> <effect>
//! <crc> F <µs> <object> <task> <reason>
//! <crc> X <µs> <object> <task> <hand-outs>          (held)
//! <crc> D <µs> <object> <task>                      (dropped)
//! <crc> U <µs> <object> 0 <effect>                  (success forgotten)
//! <crc> C <µs> <object> 0 <session> <run> <after> <fingerprint, 16 hex>
//!                                      (a multicast run ended; after: disable|delete|keep)
//! <crc> M <µs> <object> <task> <session> <run> <fingerprint, 16 hex>
//!                                      (a multicast member done)
//! <crc> R <µs> <object> 0 <session>                  (a closed session reopened)
//! ```
//!
//! `C`, `M` and `R` (§4.8.1) came after the first journals: a journal
//! written before them reads as it did (they only add line kinds).
//!
//! A record written by a server with a name (`[transaction]
//! server_name`) ends with ` @<name>`, the name as a string below; records
//! without it (no name, or journals from before names were kept) read as
//! written by no named server.
//!
//! `<crc>` is the CRC-32 (IEEE, as the image-safe record's, §10.2) of the
//! rest of the line, 8 hex digits. `<µs>` is Unix time in microseconds.
//! `<object>` is `mac:52:54:00:00:00:01` or `uuid:` and 32 hex digits. A
//! decision is `restore <image> <partitions> <forced 0|1> <rule>`,
//! `create <target>`, `join <session index> <master 0|1>` or `maint`; an
//! effect is `restored <image>`, `joined`, `created` or `maintained`.
//! Strings are `'` and the text with `%`, space and bytes outside
//! printable ASCII as `%XX`; an absent string is `-`; partitions are
//! comma-separated numbers or `-`.
//!
//! A `kill -9` can only tear the last line, which was never synced and so
//! never answered: loading ignores a last line that does not check, with
//! a warning. Any other line that does not check is an error naming the
//! file and line: the journal is not guessed at. At start and whenever the
//! journal holds more than [`COMPACT_FACTOR`] records per record of the
//! state (and over [`COMPACT_MIN_RECORDS`]), the state is written into
//! `<file>.tmp` (created anew, never through a symbolic link), fsync'd,
//! renamed over the journal and the directory fsync'd: a crash at any
//! point leaves the old journal or the new one, each holding every record
//! that was answered.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::prelude::rust_2024::*;

use super::atomic_file::{self, sync_dir};
use crate::Instant;
use crate::policy::{
    AfterRun, Decision, Effect, ImagingProxy, SessionEvent, Store, TaskEvent, TaskLog, TaskRecord,
    WorkstationId,
};
use crate::wire::image_safe::crc32;

/// The first line of every task journal.
pub const HEADER: &str = "# preboot task journal v1";
/// The journal is compacted when it holds more than this many records per
/// record of the state (and more than [`COMPACT_MIN_RECORDS`]).
pub const COMPACT_FACTOR: usize = 4;
/// Below this many records the journal is never compacted while running.
pub const COMPACT_MIN_RECORDS: usize = 1024;
/// The longest line read (a record is far shorter: strings are at most
/// 255 bytes, 765 escaped).
const MAX_LINE: usize = 4096;

/// Why a task journal cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The journal.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A record before the last one does not check: the journal was
    /// damaged after it was written (not by a crash, which can only tear
    /// the last one).
    #[error(
        "{}:{line}: {why}; the task journal is damaged (move it away to start without the task state it holds)"
    , path.display())]
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The file is not a task journal (not empty, no header line), or is a
    /// symbolic link: it is refused rather than overwritten.
    #[error(
        "{}: {why}; refusing to use it as the task journal (point transaction.journal_file at a new file, or move this one away)"
    , path.display())]
    NotAJournal {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// What a journal held when it was opened: replay it into the imaging
/// proxy (`ImagingProxy::restore`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Task ids continue from here.
    pub next_id: u32,
    /// The records, oldest first.
    pub records: Vec<TaskRecord>,
    /// A torn last line was ignored (its 1-based line number).
    pub torn: Option<usize>,
}

/// A task journal on disk, open for appending.
#[derive(Debug)]
pub struct TaskJournal {
    path: PathBuf,
    out: BufWriter<File>,
    /// Records in the file (header and `N` line excluded).
    records: usize,
    /// Records appended since the last sync.
    unsynced: usize,
    /// A compaction renamed the file but the directory fsync failed: sync
    /// retries it before it says anything is durable.
    dir_unsynced: bool,
    /// A write or sync failed: what the file holds is unknown (a failed
    /// fsync may have dropped pages), so every later call fails until a
    /// restart replays what it does hold.
    failed: bool,
    /// Group commit ([`TaskJournal::group_commit`]): `sync` writes to the
    /// file and `commit` flushes it to the disk.
    group: bool,
    /// Written by `sync`, not yet flushed to the disk by `commit`.
    uncommitted: bool,
}

fn read_opts() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).custom_flags(libc::O_NOFOLLOW);
    o
}

impl TaskJournal {
    /// Open (creating) the journal at `path` and read what it holds. The
    /// journal is rewritten from the state when the proxy restores it
    /// ([`TaskLog::compact`]): call `ImagingProxy::restore` with the
    /// result.
    pub fn open(path: &Path) -> Result<(TaskJournal, Replay), JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(JournalError::NotAJournal {
                    path: path.to_path_buf(),
                    why: "a symbolic link".into(),
                });
            }
            Ok(m) if !m.is_file() => {
                return Err(JournalError::NotAJournal {
                    path: path.to_path_buf(),
                    why: "not a regular file".into(),
                });
            }
            _ => {}
        }
        let replay = match read_opts().open(path) {
            Ok(f) => read_journal(path, f)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Replay {
                next_id: 1,
                ..Replay::default()
            },
            Err(e) => return Err(io_err(e)),
        };
        if let Some(line) = replay.torn {
            tracing::warn!(
                file = %path.display(),
                line,
                "task journal: the last record is torn (a crash while it was written, before it was answered): ignored"
            );
        }
        let out = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err)?;
        let mut journal = TaskJournal {
            path: path.to_path_buf(),
            out: BufWriter::new(out),
            records: replay.records.len(),
            unsynced: 0,
            dir_unsynced: false,
            failed: false,
            group: false,
            uncommitted: false,
        };
        if journal.out.get_ref().metadata().map_err(io_err)?.len() == 0 {
            writeln!(journal.out, "{HEADER}").map_err(io_err)?;
            journal.out.flush().map_err(io_err)?;
        }
        Ok((journal, replay))
    }

    /// Group commit: [`TaskLog::sync`] only writes the records to the
    /// file, and [`TaskLog::commit`] — which the driver calls once per
    /// batch of requests, before it sends their answers — flushes them to
    /// the disk (`fdatasync`). Many reports arriving together then cost
    /// one flush, not one each. Only for a driver that commits before it
    /// sends (the boot server's transaction service does).
    pub fn group_commit(&mut self, on: bool) {
        self.group = on;
    }

    /// Where the journal lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records in the file now.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether a write or sync failed (every call fails since).
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn io(&mut self, source: io::Error) -> JournalError {
        let e = JournalError::Io {
            path: self.path.clone(),
            source,
        };
        if !self.failed {
            tracing::error!(error = %e, "task journal: task hand-outs and reports are refused (ServerError) until a restart");
        }
        self.failed = true;
        e
    }

    /// Flush what was written to the disk (and the directory after a
    /// compaction whose rename is not durable yet).
    fn durable(&mut self) -> Result<(), JournalError> {
        self.out.get_ref().sync_data().map_err(|e| self.io(e))?;
        if self.dir_unsynced {
            sync_dir(&self.path).map_err(|e| self.io(e))?;
            self.dir_unsynced = false;
        }
        self.unsynced = 0;
        self.uncommitted = false;
        Ok(())
    }

    fn check(&mut self) -> Result<(), JournalError> {
        if self.failed {
            return Err(JournalError::Io {
                path: self.path.clone(),
                source: io::Error::other("an earlier write failed"),
            });
        }
        Ok(())
    }
}

impl TaskLog for TaskJournal {
    type Error = JournalError;

    fn record(&mut self, record: &TaskRecord) -> Result<(), JournalError> {
        self.check()?;
        if let TaskEvent::Held { handouts } = record.event {
            tracing::warn!(
                object = %record.object,
                task = record.task,
                handouts,
                "task held: handed out {handouts} times without success; it is not handed out again until an administrator changes the workstation's request"
            );
        }
        writeln!(self.out, "{}", record_line(record)).map_err(|e| self.io(e))?;
        self.records += 1;
        self.unsynced += 1;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        self.check()?;
        if self.unsynced == 0 && !self.dir_unsynced {
            return Ok(());
        }
        self.out.flush().map_err(|e| self.io(e))?;
        if self.group {
            self.uncommitted = true;
            self.unsynced = 0;
            return Ok(());
        }
        self.durable()
    }

    fn commit(&mut self) -> Result<(), JournalError> {
        self.check()?;
        if !self.uncommitted && !self.dir_unsynced {
            return Ok(());
        }
        self.durable()
    }
    fn should_compact(&self, snapshot_len: usize) -> bool {
        self.records > COMPACT_MIN_RECORDS.max(COMPACT_FACTOR.saturating_mul(snapshot_len))
    }

    fn compact(&mut self, next_id: u32, snapshot: &[TaskRecord]) -> Result<(), JournalError> {
        self.check()?;
        self.out.flush().map_err(|e| self.io(e))?;
        // A rewrite that fails leaves the journal as it was (the temporary
        // file is removed): appends go on, a later compaction tries again.
        let (out, dir_synced) = rewrite(&self.path, next_id, snapshot).map_err(|source| {
            let e = JournalError::Io {
                path: self.path.clone(),
                source,
            };
            tracing::warn!(error = %e, "task journal: compaction failed; the journal grows until one succeeds");
            e
        })?;
        // The new file is the journal now: appends go to it.
        self.out = BufWriter::new(out);
        self.records = snapshot.len();
        self.unsynced = 0;
        // The rewritten file was flushed to the disk whole.
        self.uncommitted = false;
        self.dir_unsynced |= !dir_synced;
        Ok(())
    }
}

/// The imaging proxy with a task journal (or none: tasks in memory only).
pub type JournaledProxy<S> = ImagingProxy<S, Option<TaskJournal>>;

/// The imaging proxy over `store` in the state the journal at `journal`
/// keeps (replayed, then compacted), the journal open for its records;
/// with no journal, a proxy with no tasks that keeps none. Logs what it
/// replayed, a torn last record, and the successes forgotten because the
/// workstation's request changed in the store (§4.8).
pub fn restore_proxy<S: Store>(
    store: S,
    journal: Option<&Path>,
    max_handouts: u32,
) -> Result<JournaledProxy<S>, JournalError> {
    let Some(path) = journal else {
        return Ok(ImagingProxy::with_log(store, None, max_handouts));
    };
    let (journal, replay) = TaskJournal::open(path)?;
    let (proxy, forgotten) = ImagingProxy::restore(
        store,
        Some(journal),
        max_handouts,
        replay.next_id,
        &replay.records,
    )?;
    for (object, effect) in forgotten {
        tracing::info!(
            %object,
            ?effect,
            "task journal: the workstation's request changed in the store since this success: it is asked anew"
        );
    }
    let held = proxy.held();
    for (object, t) in &held {
        tracing::warn!(%object, task = t.id, handouts = t.handouts, decision = ?t.decision, "task held for an administrator");
    }
    tracing::info!(
        file = %path.display(),
        records = replay.records.len(),
        held = held.len(),
        "task journal replayed"
    );
    Ok(proxy)
}

/// Write the header, `N next_id` and `snapshot` as the whole new journal
/// ([`atomic_file::replace`]); return it open for appending and whether
/// the directory fsync succeeded.
fn rewrite(path: &Path, next_id: u32, snapshot: &[TaskRecord]) -> io::Result<(File, bool)> {
    atomic_file::replace(path, |w| {
        writeln!(w, "{HEADER}")?;
        let n = format!("N {next_id}");
        writeln!(w, "{:08x} {n}", crc32(n.as_bytes()))?;
        for r in snapshot {
            writeln!(w, "{}", record_line(r))?;
        }
        Ok(())
    })
}

/// Every line of the journal in `f`; the last one may be torn.
/// Read a journal's bytes (`path` names it in errors) as
/// [`TaskJournal::open`] does: the records, the next task id, a torn last
/// line. Never panics, on any bytes; memory bounded by the input.
pub fn replay_bytes(path: &Path, bytes: &[u8]) -> Result<Replay, JournalError> {
    read_journal(path, bytes)
}

/// One journal line for `record`, CRC first, without its newline (the
/// format [`replay_bytes`] reads).
pub fn record_line(record: &TaskRecord) -> String {
    let line = encode(record);
    format!("{:08x} {line}", crc32(line.as_bytes()))
}

fn read_journal(path: &Path, f: impl io::Read) -> Result<Replay, JournalError> {
    let io_err = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut reader = BufReader::new(f);
    loop {
        let mut line = Vec::new();
        // Bounded: a line longer than MAX_LINE is read in pieces and
        // fails its check.
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .map_err(io_err)?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        lines.push(line);
    }
    let mut replay = Replay {
        next_id: 1,
        ..Replay::default()
    };
    let Some(first) = lines.first() else {
        return Ok(replay);
    };
    if first != HEADER.as_bytes() {
        return Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
            why: format!("not empty and its first line is not `{HEADER}`"),
        });
    }
    let count = lines.len();
    for (i, raw) in lines.iter().enumerate().skip(1) {
        let line_no = i + 1;
        match check_line(raw) {
            Ok(Line::Next(n)) => replay.next_id = replay.next_id.max(n),
            Ok(Line::Record(r)) => replay.records.push(r),
            Err(_) if line_no == count => replay.torn = Some(line_no),
            Err(why) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: line_no,
                    why,
                });
            }
        }
    }
    Ok(replay)
}

enum Line {
    Next(u32),
    Record(TaskRecord),
}

/// One line (without its newline): CRC, then a record.
fn check_line(raw: &[u8]) -> Result<Line, String> {
    let text = core::str::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    let (crc, rest) = text.split_once(' ').ok_or_else(|| "no CRC".to_string())?;
    if crc.len() != 8 {
        return Err("no CRC".into());
    }
    let crc = u32::from_str_radix(crc, 16).map_err(|_| "no CRC".to_string())?;
    if crc != crc32(rest.as_bytes()) {
        return Err("CRC mismatch".into());
    }
    if let Some(n) = rest.strip_prefix("N ") {
        return n
            .parse()
            .map(Line::Next)
            .map_err(|_| "bad next task id".into());
    }
    decode(rest)
        .map(Line::Record)
        .ok_or_else(|| "not a task record".into())
}

fn esc(out: &mut String, s: Option<&str>) {
    let Some(s) = s else {
        out.push('-');
        return;
    };
    out.push('\'');
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn unesc(s: &str) -> Option<Option<String>> {
    if s == "-" {
        return Some(None);
    }
    let body = s.strip_prefix('\'')?.as_bytes();
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'%' {
            let hex = core::str::from_utf8(body.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Some)
}

fn object(out: &mut String, id: &WorkstationId) {
    match id {
        WorkstationId::Mac(_) => {
            let _ = write!(out, "mac:{id}");
        }
        WorkstationId::Uuid(u) => {
            out.push_str("uuid:");
            for b in u {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
}

fn parse_object(s: &str) -> Option<WorkstationId> {
    if let Some(m) = s.strip_prefix("mac:") {
        let mut mac = [0u8; 6];
        let mut parts = m.split(':');
        for b in &mut mac {
            let p = parts.next()?;
            if p.len() != 2 {
                return None;
            }
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        return parts.next().is_none().then_some(WorkstationId::Mac(mac));
    }
    let u = s.strip_prefix("uuid:")?;
    if u.len() != 32 || !u.is_ascii() {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (i, b) in uuid.iter_mut().enumerate() {
        *b = u8::from_str_radix(u.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(WorkstationId::Uuid(uuid))
}

fn effect(out: &mut String, e: &Effect) {
    match e {
        Effect::Restored { image } => {
            out.push_str("restored ");
            esc(out, Some(image));
        }
        Effect::Joined => out.push_str("joined"),
        Effect::Created => out.push_str("created"),
        Effect::Maintained => out.push_str("maintained"),
    }
}

fn parse_effect(f: &[&str]) -> Option<Effect> {
    Some(match f {
        ["restored", image] => Effect::Restored {
            image: unesc(image)??,
        },
        ["joined"] => Effect::Joined,
        ["created"] => Effect::Created,
        ["maintained"] => Effect::Maintained,
        _ => return None,
    })
}

/// A record as the text after the CRC.
fn encode(r: &TaskRecord) -> String {
    let mut out = String::with_capacity(96);
    let kind = match r.event {
        TaskEvent::HandedOut { .. } => 'H',
        TaskEvent::Progress { .. } => 'P',
        TaskEvent::Succeeded { .. } => 'S',
        TaskEvent::Failed { .. } => 'F',
        TaskEvent::Held { .. } => 'X',
        TaskEvent::Dropped => 'D',
        TaskEvent::Forgotten { .. } => 'U',
        TaskEvent::Session(SessionEvent::RunEnded { .. }) => 'C',
        TaskEvent::Session(SessionEvent::MemberDone { .. }) => 'M',
        TaskEvent::Session(SessionEvent::Reopened { .. }) => 'R',
    };
    let _ = write!(
        out,
        "{kind} {} ",
        crate::driver::clock::to_unix_micros(r.at)
    );
    object(&mut out, &r.object);
    let _ = write!(out, " {}", r.task);
    match &r.event {
        TaskEvent::HandedOut { decision, handouts } => {
            let _ = write!(out, " {handouts} ");
            match decision {
                Decision::Restore {
                    image,
                    partitions,
                    forced,
                    rule,
                } => {
                    out.push_str("restore ");
                    esc(&mut out, Some(image));
                    out.push(' ');
                    if partitions.is_empty() {
                        out.push('-');
                    }
                    for (i, p) in partitions.iter().enumerate() {
                        let _ = write!(out, "{}{p}", if i == 0 { "" } else { "," });
                    }
                    let _ = write!(out, " {} ", u8::from(*forced));
                    esc(&mut out, rule.as_deref());
                }
                Decision::Create { target } => {
                    out.push_str("create ");
                    esc(&mut out, Some(target));
                }
                Decision::Join { session, master } => {
                    let _ = write!(out, "join {session} {}", u8::from(*master));
                }
                Decision::Maintenance => out.push_str("maint"),
            }
        }
        TaskEvent::Progress { percent } => {
            let _ = write!(out, " {percent}");
        }
        TaskEvent::Succeeded {
            effect: e,
            baseline,
        } => {
            let _ = write!(out, " {baseline:016x} ");
            effect(&mut out, e);
        }
        TaskEvent::Failed { reason } => {
            out.push(' ');
            esc(&mut out, Some(reason));
        }
        TaskEvent::Held { handouts } => {
            let _ = write!(out, " {handouts}");
        }
        TaskEvent::Dropped => {}
        TaskEvent::Forgotten { effect: e } => {
            out.push(' ');
            effect(&mut out, e);
        }
        TaskEvent::Session(SessionEvent::RunEnded {
            session,
            run,
            after,
            fingerprint,
        }) => {
            out.push(' ');
            esc(&mut out, Some(session));
            let _ = write!(out, " {run} {} {fingerprint:016x}", after.name());
        }
        TaskEvent::Session(SessionEvent::MemberDone {
            session,
            run,
            fingerprint,
        }) => {
            out.push(' ');
            esc(&mut out, Some(session));
            let _ = write!(out, " {run} {fingerprint:016x}");
        }
        TaskEvent::Session(SessionEvent::Reopened { session }) => {
            out.push(' ');
            esc(&mut out, Some(session));
        }
    }
    if let Some(name) = &r.server {
        out.push_str(" @");
        esc(&mut out, Some(name));
    }
    out
}

fn flag(s: &str) -> Option<bool> {
    match s {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// The record `encode` wrote; `None` for anything else.
fn decode(s: &str) -> Option<TaskRecord> {
    let mut f: Vec<&str> = s.split(' ').take(16).collect();
    // The server that wrote it: a last field `@'<name>` (absent in
    // records of a server without a name, and before names were kept).
    let server = match f.last().and_then(|l| l.strip_prefix('@')) {
        Some(name) => {
            let name = unesc(name)??;
            f.pop();
            Some(name)
        }
        None => None,
    };
    let [kind, at, obj, task, rest @ ..] = &f[..] else {
        return None;
    };
    let at = Instant::from_micros(at.parse().ok()?);
    let object = parse_object(obj)?;
    let task: u32 = task.parse().ok()?;
    let event = match (*kind, rest) {
        ("H", [handouts, d @ ..]) => TaskEvent::HandedOut {
            handouts: handouts.parse().ok()?,
            decision: match d {
                ["restore", image, parts, forced, rule] => Decision::Restore {
                    image: unesc(image)??,
                    partitions: if *parts == "-" {
                        Vec::new()
                    } else {
                        parts
                            .split(',')
                            .take(16)
                            .map(|p| p.parse().ok())
                            .collect::<Option<Vec<u8>>>()?
                    },
                    forced: flag(forced)?,
                    rule: unesc(rule)?,
                },
                ["create", target] => Decision::Create {
                    target: unesc(target)??,
                },
                ["join", session, master] => Decision::Join {
                    session: session.parse().ok()?,
                    master: flag(master)?,
                },
                ["maint"] => Decision::Maintenance,
                _ => return None,
            },
        },
        ("P", [percent]) => TaskEvent::Progress {
            percent: percent.parse().ok()?,
        },
        ("S", [baseline, e @ ..]) => TaskEvent::Succeeded {
            baseline: u64::from_str_radix(baseline, 16).ok()?,
            effect: parse_effect(e)?,
        },
        ("F", [reason]) => TaskEvent::Failed {
            reason: unesc(reason)??,
        },
        ("X", [handouts]) => TaskEvent::Held {
            handouts: handouts.parse().ok()?,
        },
        ("D", []) => TaskEvent::Dropped,
        ("U", e) => TaskEvent::Forgotten {
            effect: parse_effect(e)?,
        },
        ("C", [session, run, after, fp]) => TaskEvent::Session(SessionEvent::RunEnded {
            session: unesc(session)??,
            run: run.parse().ok()?,
            after: AfterRun::from_name(after)?,
            fingerprint: u64::from_str_radix(fp, 16).ok()?,
        }),
        ("M", [session, run, fp]) => TaskEvent::Session(SessionEvent::MemberDone {
            session: unesc(session)??,
            run: run.parse().ok()?,
            fingerprint: u64::from_str_radix(fp, 16).ok()?,
        }),
        ("R", [session]) => TaskEvent::Session(SessionEvent::Reopened {
            session: unesc(session)??,
        }),
        _ => return None,
    };
    Some(TaskRecord {
        object,
        task,
        at,
        server,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record kind goes through the line format unchanged, strings
    /// with spaces, `%`, quotes and non-ASCII included.
    #[test]
    fn every_record_round_trips() {
        let mac = WorkstationId::Mac([0x52, 0x54, 0, 0, 0, 1]);
        let uuid = WorkstationId::Uuid([0xab; 16]);
        let at = Instant::from_micros(1_700_000_000_123_456);
        let events = [
            TaskEvent::HandedOut {
                decision: Decision::Restore {
                    image: "images/a b%'é.img".into(),
                    partitions: vec![1, 2, 16],
                    forced: true,
                    rule: Some("no image yet".into()),
                },
                handouts: 2,
            },
            TaskEvent::HandedOut {
                decision: Decision::Restore {
                    image: String::new(),
                    partitions: vec![],
                    forced: false,
                    rule: None,
                },
                handouts: 1,
            },
            TaskEvent::HandedOut {
                decision: Decision::Create {
                    target: "up/x".into(),
                },
                handouts: 1,
            },
            TaskEvent::HandedOut {
                decision: Decision::Join {
                    session: 3,
                    master: true,
                },
                handouts: 1,
            },
            TaskEvent::HandedOut {
                decision: Decision::Maintenance,
                handouts: 9,
            },
            TaskEvent::Progress { percent: 42 },
            TaskEvent::Succeeded {
                effect: Effect::Restored {
                    image: "images/lab.img".into(),
                },
                baseline: 0xdead_beef_0123_4567,
            },
            TaskEvent::Failed {
                reason: "disk\nfull 100%".into(),
            },
            TaskEvent::Held { handouts: 3 },
            TaskEvent::Dropped,
            TaskEvent::Forgotten {
                effect: Effect::Maintained,
            },
            TaskEvent::Session(SessionEvent::RunEnded {
                session: "room 1 %".into(),
                run: 3,
                after: AfterRun::Delete,
                fingerprint: 0x0123_4567_89ab_cdef,
            }),
            TaskEvent::Session(SessionEvent::RunEnded {
                session: "r".into(),
                run: 1,
                after: AfterRun::Keep,
                fingerprint: 1,
            }),
            TaskEvent::Session(SessionEvent::MemberDone {
                session: "room".into(),
                run: 2,
                fingerprint: u64::MAX,
            }),
            TaskEvent::Session(SessionEvent::Reopened {
                session: "room".into(),
            }),
        ];
        for (i, event) in events.into_iter().enumerate() {
            let r = TaskRecord {
                object: if i % 2 == 0 { mac } else { uuid },
                task: 7 + i as u32,
                at,
                // With and without the server's name.
                server: (i % 3 != 0).then(|| format!("srv {i}%'@é")),
                event,
            };
            let line = encode(&r);
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(decode(&line).as_ref(), Some(&r), "{line}");
        }
    }

    /// §4.8: what `sync` returned for is in the file without the journal
    /// being dropped (a kill -9 runs no destructor); what was only
    /// recorded may not be.
    #[test]
    fn synced_records_are_in_the_file_without_a_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.journal");
        let (mut j, replay) = TaskJournal::open(&path).unwrap();
        assert_eq!(replay.records, []);
        let r = TaskRecord {
            object: WorkstationId::Mac([2, 0, 0, 0, 0, 1]),
            task: 1,
            at: Instant::from_secs(1_700_000_000),
            server: None,
            event: TaskEvent::Progress { percent: 1 },
        };
        j.record(&r).unwrap();
        j.sync().unwrap();
        j.record(&r).unwrap();
        std::mem::forget(j);
        let (_, replay) = TaskJournal::open(&path).unwrap();
        assert_eq!(replay.records, [r]);
    }

    /// Group commit: `sync` writes the records to the file (a crash of
    /// the process loses nothing written), `commit` flushes them to the
    /// disk; both refuse once the journal failed.
    #[test]
    fn group_commit_writes_at_sync_and_flushes_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.journal");
        let (mut j, _) = TaskJournal::open(&path).unwrap();
        j.group_commit(true);
        let r = TaskRecord {
            object: WorkstationId::Mac([2, 0, 0, 0, 0, 2]),
            task: 3,
            at: Instant::from_secs(1_700_000_000),
            server: None,
            event: TaskEvent::Progress { percent: 40 },
        };
        j.record(&r).unwrap();
        j.sync().unwrap();
        assert!(j.uncommitted, "written, not yet flushed to the disk");
        let (_, replay) = TaskJournal::open(&path).unwrap();
        assert_eq!(
            replay.records,
            core::slice::from_ref(&r),
            "in the file after sync"
        );
        j.commit().unwrap();
        assert!(!j.uncommitted);
        j.failed = true;
        assert!(j.sync().is_err() && j.commit().is_err());
    }

    #[test]
    fn bad_lines_are_refused() {
        for l in [
            "",
            "H 1 mac:52:54:00:00:00:01 7",
            "H x mac:52:54:00:00:00:01 7 1 maint",
            "H 1 mac:52:54:00:00:00 7 1 maint",
            "H 1 uuid:00 7 1 maint",
            "H 1 mac:52:54:00:00:00:01 7 1 restore 'a - 2 -",
            "P 1 mac:52:54:00:00:00:01 7 1 2",
            "F 1 mac:52:54:00:00:00:01 7 reason",
            "F 1 mac:52:54:00:00:00:01 7 '%4",
            "Z 1 mac:52:54:00:00:00:01 7",
        ] {
            assert_eq!(decode(l), None, "{l}");
        }
        assert!(decode("H 1 mac:52:54:00:00:00:01 7 1 maint").is_some());
        assert!(check_line(b"00000000 D 1 mac:52:54:00:00:00:01 7").is_err());
    }
}
