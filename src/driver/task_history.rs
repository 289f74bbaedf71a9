//! The task history for an administrator: a task journal
//! ([`super::task_journal`]) read without changing it, one line per
//! record — time (UTC), workstation, task id, event, server
//! (docs/policy.md, "Task history"; docs/transaction-protocol.md §4.8).
//!
//! ```text
//! 2026-12-05 03:01:18.123456Z  mac:52:54:00:00:00:01  task 7  handed out (1st): restore 'images/lab.img' (forced)  by srv-a
//! ```
//!
//! `preboot-server --tasks <journal>` prints it. The journal holds the
//! records since its last compaction (at start, and when it grew past
//! the state): the state then, and everything after.

use std::fmt::Write as _;
use std::io::{self, Read as _, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::prelude::rust_2024::*;

use super::task_journal::{JournalError, Replay, replay_bytes};
use crate::policy::{Decision, Effect, SessionEvent, TaskEvent, TaskRecord};

/// The largest journal read (a journal is compacted long before: at most
/// 4 records per record of the state).
const MAX_JOURNAL: u64 = 256 << 20;

/// Read the journal at `path` as it is, without creating, locking or
/// rewriting it (a running server may be appending to it: a torn last
/// line is reported in [`Replay::torn`], as at start).
pub fn read_history(path: &Path) -> Result<Replay, JournalError> {
    let io_err = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err)?;
    let mut bytes = Vec::new();
    f.take(MAX_JOURNAL)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    replay_bytes(path, &bytes)
}

/// Write the history of the journal at `path` to `out`, one line per
/// record ([`history_line`]), oldest first; returns the number of
/// records.
pub fn write_history(path: &Path, out: &mut impl Write) -> Result<usize, JournalError> {
    let replay = read_history(path)?;
    let io_err = |source: io::Error| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    for r in &replay.records {
        writeln!(out, "{}", history_line(r)).map_err(io_err)?;
    }
    if let Some(line) = replay.torn {
        writeln!(
            out,
            "(line {line} is torn: a record being written, or cut by a crash before it was answered)"
        )
        .map_err(io_err)?;
    }
    Ok(replay.records.len())
}

/// One record as a line for a person: time (UTC, µs), workstation, task
/// id, what happened, and `by <server>` when the record names one.
/// Strings are quoted with control characters escaped, so one record is
/// one line.
pub fn history_line(r: &TaskRecord) -> String {
    let mut out = String::with_capacity(128);
    utc(&mut out, crate::driver::clock::to_unix_micros(r.at));
    let _ = write!(out, "  {}  task {}  ", object(r), r.task);
    match &r.event {
        TaskEvent::HandedOut { decision, handouts } => {
            let _ = write!(out, "handed out ({}): ", ordinal(*handouts));
            match decision {
                Decision::Restore {
                    image,
                    partitions,
                    forced,
                    rule,
                } => {
                    out.push_str("restore ");
                    quoted(&mut out, image);
                    if !partitions.is_empty() {
                        let _ = write!(out, " partitions {partitions:?}");
                    }
                    match rule {
                        Some(rule) => {
                            out.push_str(" by rule ");
                            quoted(&mut out, rule);
                        }
                        None => out.push_str(" (the object's image)"),
                    }
                    if *forced {
                        out.push_str(" (forced)");
                    }
                }
                Decision::Create { target } => {
                    out.push_str("create an image to ");
                    quoted(&mut out, target);
                }
                Decision::Join { session, master } => {
                    let _ = write!(
                        out,
                        "join multicast session #{session}{}",
                        if *master { " as its master" } else { "" }
                    );
                }
                Decision::Maintenance => out.push_str("maintenance"),
            }
        }
        TaskEvent::Progress { percent } => {
            let _ = write!(out, "running: {percent}%");
        }
        TaskEvent::Succeeded { effect, .. } => {
            out.push_str("succeeded: ");
            effect_text(&mut out, effect);
        }
        TaskEvent::Failed { reason } => {
            out.push_str("failed: ");
            quoted(&mut out, reason);
        }
        TaskEvent::Held { handouts } => {
            let _ = write!(
                out,
                "held after {handouts} hand-outs without success (waits for an administrator)"
            );
        }
        TaskEvent::Dropped => out.push_str("dropped (no longer asked)"),
        TaskEvent::Forgotten { effect } => {
            out.push_str("success forgotten (the request changed in the store): ");
            effect_text(&mut out, effect);
        }
        TaskEvent::Session(SessionEvent::MemberDone { session, run, .. }) => {
            out.push_str("multicast session ");
            quoted(&mut out, session);
            let _ = write!(out, " run {run}: this member is done");
        }
        TaskEvent::Session(SessionEvent::RunEnded {
            session,
            run,
            after,
            ..
        }) => {
            out.push_str("multicast session ");
            quoted(&mut out, session);
            let _ = write!(out, " run {run} ended; then: {}", after.name());
        }
        TaskEvent::Session(SessionEvent::Reopened { session }) => {
            out.push_str("multicast session ");
            quoted(&mut out, session);
            out.push_str(" reopened (its settings changed)");
        }
    }
    if let Some(name) = &r.server {
        out.push_str("  by ");
        quoted(&mut out, name);
    }
    out
}

fn object(r: &TaskRecord) -> String {
    match r.object {
        crate::policy::WorkstationId::Mac(_) => format!("mac:{}", r.object),
        crate::policy::WorkstationId::Uuid(_) => format!("uuid:{}", r.object),
    }
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    if n > 1 {
        format!("{n}{suffix}, a retry")
    } else {
        format!("{n}{suffix}")
    }
}

fn effect_text(out: &mut String, e: &Effect) {
    match e {
        Effect::Restored { image } => {
            out.push_str("restored ");
            quoted(out, image);
        }
        Effect::Joined => out.push_str("joined the multicast session"),
        Effect::Created => out.push_str("image created"),
        Effect::Maintained => out.push_str("maintenance done"),
    }
}

/// `'text'`, with `'`, `\` and control characters escaped (`{:?}`-like).
fn quoted(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// `YYYY-MM-DD HH:MM:SS.ffffffZ` for Unix time `micros` (proleptic
/// Gregorian, UTC).
fn utc(out: &mut String, micros: u64) {
    let secs = micros / 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = super::utc::civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        micros % 1_000_000
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Instant;
    use crate::policy::WorkstationId;

    /// Known dates (leap day, end of year, the epoch) come out right.
    #[test]
    fn utc_dates() {
        let at = |s: u64| {
            let mut o = String::new();
            utc(&mut o, s * 1_000_000 + 7);
            o
        };
        assert_eq!(at(0), "1970-01-01 00:00:00.000007Z");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00.000007Z");
        assert_eq!(at(1_704_067_199), "2023-12-31 23:59:59.000007Z");
        assert_eq!(at(1_796_439_678), "2026-12-05 03:01:18.000007Z");
    }

    /// One record, one line; strings quoted and escaped; the server named.
    #[test]
    fn one_line_per_record() {
        let r = TaskRecord {
            object: WorkstationId::Mac([0x52, 0x54, 0, 0, 0, 1]),
            task: 7,
            at: Instant::from_micros(1_796_439_678_123_456),
            server: Some("srv-a".into()),
            event: TaskEvent::Failed {
                reason: "disk\nfull 'x'".into(),
            },
        };
        assert_eq!(
            history_line(&r),
            "2026-12-05 03:01:18.123456Z  mac:52:54:00:00:00:01  task 7  failed: 'disk\\u{a}full \\'x\\''  by 'srv-a'"
        );
    }
}
