//! A directory as a [`FileSource`]: every path resolves inside a root,
//! symlinks that lead outside it are refused, and uploads are written to a
//! temporary file renamed into place only when complete.
//!
//! Resolution: the [`ValidPath`] (no `..`, no backslash, no NUL — see
//! [`crate::fs`]) is joined to the canonical root and canonicalized, so
//! symlinks are followed; the result must still lie under the root. The file
//! is then opened with `O_NOFOLLOW`, and on Linux the opened descriptor's
//! real path (`/proc/self/fd/N`) is checked again, which closes the race of
//! a symlink swapped in between the check and the open.

use std::format;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::prelude::rust_2024::*;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fs::{FileSource, FsError, ReadAt, ValidPath, WriteAt};

/// A root directory serving files by validated path.
#[derive(Debug, Clone)]
pub struct JailedDir {
    root: PathBuf,
    allow_overwrite: bool,
    max_write_size: Option<u64>,
}

fn io_to_fs(e: &io::Error) -> FsError {
    match e.kind() {
        io::ErrorKind::NotFound => FsError::NotFound,
        io::ErrorKind::PermissionDenied => FsError::AccessDenied,
        io::ErrorKind::AlreadyExists => FsError::AlreadyExists,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
            FsError::TooLarge
        }
        _ => match e.raw_os_error() {
            // ELOOP (O_NOFOLLOW on a symlink), ENOTDIR: not a plain path.
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => FsError::AccessDenied,
            Some(libc::EMFILE) | Some(libc::ENFILE) => FsError::TooManyOpenFiles,
            _ => FsError::Io,
        },
    }
}

impl JailedDir {
    /// Serves files under `root` (which must exist); uploads disabled until
    /// configured with [`JailedDir::with_uploads`].
    pub fn new(root: impl AsRef<Path>) -> io::Result<Self> {
        let root = root.as_ref().canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "root is not a directory",
            ));
        }
        Ok(JailedDir {
            root,
            allow_overwrite: false,
            max_write_size: None,
        })
    }

    /// Upload policy: replace existing files or not, and a size limit.
    pub fn with_uploads(mut self, allow_overwrite: bool, max_write_size: Option<u64>) -> Self {
        self.allow_overwrite = allow_overwrite;
        self.max_write_size = max_write_size;
        self
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn inside(&self, p: &Path) -> Result<(), FsError> {
        if p.starts_with(&self.root) {
            Ok(())
        } else {
            Err(FsError::AccessDenied)
        }
    }

    fn check_fd(&self, file: &File) -> Result<(), FsError> {
        use std::os::fd::AsRawFd;
        let link = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        match std::fs::read_link(&link) {
            Ok(real) => self.inside(&real),
            // No /proc: the canonical-path check stands alone.
            Err(_) => Ok(()),
        }
    }

    /// Resolves `path` for reading: canonical, inside the root.
    pub fn resolve(&self, path: &ValidPath<'_>) -> Result<PathBuf, FsError> {
        let joined = self.root.join(path.as_str());
        let canon = joined.canonicalize().map_err(|e| io_to_fs(&e))?;
        self.inside(&canon)?;
        Ok(canon)
    }

    /// Opens `path` for reading.
    pub fn open_file(&self, path: &ValidPath<'_>) -> Result<JailedFile, FsError> {
        let canon = self.resolve(path)?;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&canon)
            .map_err(|e| io_to_fs(&e))?;
        self.check_fd(&file)?;
        let meta = file.metadata().map_err(|e| io_to_fs(&e))?;
        if !meta.is_file() {
            // Directories, FIFOs, devices: never served.
            return Err(if meta.is_dir() {
                FsError::NotFound
            } else {
                FsError::AccessDenied
            });
        }
        Ok(JailedFile {
            file,
            size: meta.len(),
            ahead: ReadAhead::default(),
        })
    }

    /// Starts an upload to `path`: a temporary file next to the target,
    /// renamed into place by [`WriteAt::finish`]. The parent directory must
    /// exist inside the root.
    pub fn create(&self, path: &ValidPath<'_>) -> Result<Upload, FsError> {
        let rel = Path::new(path.as_str());
        let name = rel.file_name().ok_or(FsError::AccessDenied)?;
        let parent = self.root.join(rel.parent().unwrap_or(Path::new("")));
        let parent = parent.canonicalize().map_err(|e| io_to_fs(&e))?;
        self.inside(&parent)?;
        let target = parent.join(name);
        match std::fs::symlink_metadata(&target) {
            Ok(m) if !m.is_file() => return Err(FsError::AccessDenied),
            Ok(_) if !self.allow_overwrite => return Err(FsError::AlreadyExists),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_to_fs(&e)),
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = parent.join(format!(
            ".{}.preboot-{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| io_to_fs(&e))?;
        Ok(Upload {
            file,
            tmp,
            target,
            overwrite: self.allow_overwrite,
            limit: self.max_write_size,
            done: false,
        })
    }
}

impl FileSource for JailedDir {
    type File = JailedFile;
    fn open(&mut self, path: &ValidPath<'_>) -> Result<JailedFile, FsError> {
        self.open_file(path)
    }
}

/// Most bytes a [`JailedFile`] keeps from a read-ahead hint: one TFTP
/// block of the largest size (65464 bytes, RFC 2348), or the first 64 KiB
/// of a hinted window (a whole window of 16 blocks of 1468 bytes).
pub const MAX_READ_AHEAD: usize = 64 << 10;

/// A file opened inside a [`JailedDir`].
///
/// It takes [`ReadAt::read_ahead`] hints: the hinted range (its first
/// [`MAX_READ_AHEAD`] bytes) is read at once into one buffer, allocated at
/// the first hint and reused for the file's life. A later
/// [`ReadAt::read_at`] that lies inside the kept range is served from it;
/// any other read goes to the file. Kept bytes are
/// the file's contents when they were read (at the first hint that asked
/// for them; a repeated hint for a kept range reads nothing), exactly what
/// the later read would have returned had it happened then.
#[derive(Debug)]
pub struct JailedFile {
    file: File,
    size: u64,
    ahead: ReadAhead,
}

/// The block kept from the last read-ahead hint.
#[derive(Debug, Default)]
struct ReadAhead {
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    offset: u64,
    /// Bytes of `buf` that hold file data (0: nothing kept).
    len: usize,
    /// The read stopped at end of file after `len` bytes, so the kept
    /// block also answers requests that reach past its end.
    eof: bool,
}

impl ReadAhead {
    /// Where a request for `len` bytes at `offset` starts inside the kept
    /// block, if the block answers all of it: what a read would return is
    /// then `buf[start..]`, cut to `len`. The one test for both
    /// [`ReadAt::read_at`] (serve from the block) and
    /// [`ReadAt::read_ahead`] (already kept: nothing to read).
    fn covers(&self, offset: u64, len: usize) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let start = usize::try_from(offset.checked_sub(self.offset)?).ok()?;
        if start > self.len {
            return None;
        }
        let inside = start.checked_add(len).is_some_and(|end| end <= self.len);
        (inside || self.eof).then_some(start)
    }
}

impl JailedFile {
    /// One positioned read, retried on `EINTR`.
    fn pread(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        loop {
            match self.file.read_at(buf, offset) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_to_fs(&e)),
            }
        }
    }
}

impl ReadAt for JailedFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let a = &self.ahead;
        if let Some(start) = a.covers(offset, buf.len()) {
            let kept = &a.buf[start..a.len];
            let n = kept.len().min(buf.len());
            buf[..n].copy_from_slice(&kept[..n]);
            return Ok(n);
        }
        self.pread(offset, buf)
    }

    fn read_ahead(&mut self, offset: u64, len: usize) {
        if len == 0 || offset >= self.size {
            // Nothing worth keeping (at or past the end as opened, where a
            // read is cheap anyway).
            return;
        }
        // A window larger than the buffer: its first blocks are kept, the
        // rest is read when asked for.
        let len = len.min(MAX_READ_AHEAD);
        if self.ahead.covers(offset, len).is_some() {
            // A repeated hint (a duplicate ACK, a retransmission): kept.
            return;
        }
        // Nothing is kept while the buffer fills, so `read_full_at` reads
        // the file itself. A hint must not fail: on an error nothing is
        // kept, and the read itself will meet (and report) the error.
        let mut buf = std::mem::take(&mut self.ahead).buf;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let done = self.read_full_at(offset, &mut buf[..len]).unwrap_or(0);
        self.ahead = ReadAhead {
            buf,
            offset,
            len: done,
            // A short fill stopped at end of file.
            eof: done > 0 && done < len,
        };
    }
}

/// An upload in progress: a temporary file, removed if the upload does not
/// finish.
#[derive(Debug)]
pub struct Upload {
    file: File,
    tmp: PathBuf,
    target: PathBuf,
    overwrite: bool,
    limit: Option<u64>,
    done: bool,
}

impl Upload {
    /// Where the file lands when complete.
    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl WriteAt for Upload {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        crate::fs::write_end(offset, data.len(), self.limit)?;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| io_to_fs(&e))
    }

    fn finish(&mut self) -> Result<(), FsError> {
        self.file.sync_data().map_err(|e| io_to_fs(&e))?;
        if self.overwrite {
            std::fs::rename(&self.tmp, &self.target).map_err(|e| io_to_fs(&e))?;
        } else {
            // A hard link never replaces an existing file: atomic
            // no-overwrite.
            std::fs::hard_link(&self.tmp, &self.target).map_err(|e| io_to_fs(&e))?;
            let _ = std::fs::remove_file(&self.tmp);
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
