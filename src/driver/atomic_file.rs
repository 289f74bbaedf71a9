//! Replacing a state file whole, so that a crash at any point leaves
//! either the old file or the new one, never a mix: write a fresh
//! `<file>.tmp`, fsync it, rename it over the file, fsync the directory
//! (POSIX `rename(2)` is atomic; the directory fsync makes the rename
//! durable). The lease file, the task journal's compaction and the pending
//! key list all go through [`replace`].

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::prelude::rust_2024::*;

/// `<file>.tmp` beside `path`.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// fsync the directory that holds `path` (makes a rename in it durable).
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Write what `fill` writes into a fresh `<file>.tmp` (`O_EXCL`,
/// `O_NOFOLLOW`, mode 0600; a leftover or planted one is unlinked first:
/// unlinking a link removes the link, never its target), fsync it, rename
/// it over `path`, fsync the directory. Returns the new file, open for
/// appending, and whether the directory fsync succeeded (after the rename
/// the new file is in place either way; a caller that needs the rename
/// durable syncs the directory again later). On an error before the
/// rename, the temporary file is removed and `path` is untouched.
pub(crate) fn replace(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<(File, bool)> {
    replace_then(path, true, fill)
}

/// [`replace`], with the directory fsync left out unless `sync_dir` (for
/// a file that is rewritten often and whose loss in a crash costs only a
/// refresh: the rename itself is still atomic). Returns `false` for the
/// directory fsync when it was left out.
pub(crate) fn replace_then(
    path: &Path,
    sync_dir: bool,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<(File, bool)> {
    let tmp = tmp_path(path);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = (|| {
        let mut w = BufWriter::new(f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok::<File, io::Error>(f)
    })();
    let f = match written.and_then(|f| std::fs::rename(&tmp, path).map(|()| f)) {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    Ok((f, sync_dir && self::sync_dir(path).is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("preboot-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let d = dir("whole");
        let p = d.join("state");
        std::fs::write(&p, b"old").unwrap();
        let (_, synced) = replace(&p, |w| w.write_all(b"new contents")).unwrap();
        assert!(synced);
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        assert!(!tmp_path(&p).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failing_writer_leaves_the_old_file() {
        let d = dir("fail");
        let p = d.join("state");
        std::fs::write(&p, b"old").unwrap();
        let e = replace(&p, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(!tmp_path(&p).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_planted_symlink_at_the_temporary_name_is_not_followed() {
        let d = dir("link");
        let p = d.join("state");
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, tmp_path(&p)).unwrap();
        replace(&p, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
