//! Files as the engines see them: a small trait to open by validated path, size, read at offset.
//!
//! Engines never touch a file system. A read request's filename is first
//! turned into a [`ValidPath`] (which refuses `..`, NUL, backslashes,
//! control characters and over-long names, and strips the leading `/` GRUB
//! sends); the application then opens it through a [`FileSource`] and hands
//! the engine something that implements [`ReadAt`]. Uploads go to a
//! [`WriteAt`] sink.
//!
//! [`MemFs`] / [`MemFile`] serve files from memory and work without `alloc`;
//! the std driver's jailed directory lives in `driver::fs`.

use crate::wire::tftp::ErrorCode;

/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest accepted path component, in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;

/// Errors from opening, reading or writing files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// No such file.
    #[error("file not found")]
    NotFound,
    /// The path is not allowed (traversal, symlink out of the root, not a
    /// regular file, permissions).
    #[error("access denied")]
    AccessDenied,
    /// The file exists and overwriting is not allowed.
    #[error("file already exists")]
    AlreadyExists,
    /// The size limit was exceeded or the disk is full.
    #[error("size limit exceeded or disk full")]
    TooLarge,
    /// The process or the system has no file descriptor left (EMFILE,
    /// ENFILE): a capacity limit, not a fault of the file.
    #[error("too many open files")]
    TooManyOpenFiles,
    /// Any other I/O failure.
    #[error("I/O error")]
    Io,
}

impl FsError {
    /// The TFTP ERROR code that tells the peer about this error.
    pub fn error_code(self) -> ErrorCode {
        match self {
            FsError::NotFound => ErrorCode::FileNotFound,
            FsError::AccessDenied => ErrorCode::AccessViolation,
            FsError::AlreadyExists => ErrorCode::FileExists,
            FsError::TooLarge => ErrorCode::DiskFull,
            FsError::TooManyOpenFiles | FsError::Io => ErrorCode::NotDefined,
        }
    }
}

/// Why a requested name is not a [`ValidPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty after stripping leading slashes.
    #[error("empty path")]
    Empty,
    /// Longer than [`MAX_PATH_LEN`] or a component longer than
    /// [`MAX_COMPONENT_LEN`].
    #[error("path too long")]
    TooLong,
    /// Not UTF-8.
    #[error("path is not UTF-8")]
    NotUtf8,
    /// NUL, a control character or a backslash.
    #[error("forbidden character in path")]
    ForbiddenChar,
    /// A `..`, `.` or empty component.
    #[error("forbidden path component")]
    ForbiddenComponent,
}

/// A request filename that is safe to resolve under a root: relative,
/// `/`-separated, every component a plain name.
///
/// ```
/// use preboot::fs::{PathError, ValidPath};
/// assert_eq!(ValidPath::new(b"/boot/grub/grub.cfg").unwrap().as_str(), "boot/grub/grub.cfg");
/// assert_eq!(ValidPath::new(b"../etc/passwd"), Err(PathError::ForbiddenComponent));
/// assert_eq!(ValidPath::new(b"..\\x"), Err(PathError::ForbiddenChar));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValidPath<'a>(&'a str);

impl<'a> ValidPath<'a> {
    /// Validates a raw filename from a request. Leading `/` characters are
    /// stripped (GRUB prefixes every path with one); the rest must be a
    /// relative path of plain components.
    pub fn new(raw: &'a [u8]) -> Result<ValidPath<'a>, PathError> {
        let start = raw.iter().position(|&b| b != b'/').unwrap_or(raw.len());
        let rest = &raw[start..];
        if rest.is_empty() {
            return Err(PathError::Empty);
        }
        if rest.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        let s = core::str::from_utf8(rest).map_err(|_| PathError::NotUtf8)?;
        if s.chars().any(|c| c.is_control() || c == '\\') {
            return Err(PathError::ForbiddenChar);
        }
        for comp in s.split('/') {
            if comp.is_empty() || comp == "." || comp == ".." {
                return Err(PathError::ForbiddenComponent);
            }
            if comp.len() > MAX_COMPONENT_LEN {
                return Err(PathError::TooLong);
            }
        }
        Ok(ValidPath(s))
    }

    /// The path, relative, without leading `/`.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The components.
    pub fn components(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.0.split('/')
    }
}

/// A file opened for reading: its size and positioned reads.
pub trait ReadAt {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Reads up to `buf.len()` bytes at `offset`; returns the count, 0 at
    /// end of file. May return fewer bytes than asked.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError>;

    /// A hint: the engine will probably ask for these bytes next; an
    /// implementation may read them now, so that the read is done while
    /// the network round trip is in flight.
    ///
    /// A hint is only a hint: it never changes what [`ReadAt::read_at`]
    /// returns, except that bytes kept from a read-ahead are the file's
    /// contents at the time they were read (as if the later `read_at` had
    /// happened then). `len` may reach past the end of the file. The
    /// default does nothing. The TFTP server hints the next block in
    /// lock-step and the next window with windowsize (see
    /// [`crate::tftp::server::Server::read_ahead`]).
    fn read_ahead(&mut self, offset: u64, len: usize) {
        let _ = (offset, len);
    }

    /// Reads until `buf` is full or end of file; returns the count.
    fn read_full_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(offset + done as u64, &mut buf[done..])?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
}

/// A sink for received data (uploads to the server, downloads by the
/// client). Data arrives in order.
pub trait WriteAt {
    /// Writes `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError>;
    /// Called once when the last block has arrived: commit (e.g. rename a
    /// temporary file into place).
    fn finish(&mut self) -> Result<(), FsError> {
        Ok(())
    }
}

/// Opens files by validated path.
pub trait FileSource {
    /// The opened file.
    type File: ReadAt;
    /// Opens `path` for reading.
    fn open(&mut self, path: &ValidPath<'_>) -> Result<Self::File, FsError>;
}

/// A file in memory (a borrowed byte slice).
#[derive(Debug, Clone, Copy)]
pub struct MemFile<'a> {
    data: &'a [u8],
}

impl<'a> MemFile<'a> {
    /// Serves `data`.
    pub const fn new(data: &'a [u8]) -> Self {
        MemFile { data }
    }
}

impl ReadAt for MemFile<'_> {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let src = self.data.get(start..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
}

/// A read-only file system in memory: a table of `(path, contents)`.
///
/// ```
/// use preboot::fs::{FileSource, MemFs, ReadAt, ValidPath};
/// let mut fs = MemFs::new(&[("pxelinux.0", b"MZ")]);
/// let f = fs.open(&ValidPath::new(b"/pxelinux.0").unwrap()).unwrap();
/// assert_eq!(f.size(), 2);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct MemFs<'a> {
    files: &'a [(&'a str, &'a [u8])],
}

impl<'a> MemFs<'a> {
    /// A file system with these files.
    pub const fn new(files: &'a [(&'a str, &'a [u8])]) -> Self {
        MemFs { files }
    }
}

impl<'a> FileSource for MemFs<'a> {
    type File = MemFile<'a>;
    fn open(&mut self, path: &ValidPath<'_>) -> Result<MemFile<'a>, FsError> {
        self.files
            .iter()
            .find(|(name, _)| *name == path.as_str())
            .map(|(_, data)| MemFile::new(data))
            .ok_or(FsError::NotFound)
    }
}

/// A sink into a caller-provided byte slice (no alloc); refuses data past
/// its end with [`FsError::TooLarge`].
#[derive(Debug)]
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceSink<'a> {
    /// Writes into `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceSink { buf, len: 0 }
    }
    /// The bytes received so far (up to the highest written offset).
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl WriteAt for SliceSink<'_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        let start = usize::try_from(offset).map_err(|_| FsError::TooLarge)?;
        let end = start.checked_add(data.len()).ok_or(FsError::TooLarge)?;
        let dst = self.buf.get_mut(start..end).ok_or(FsError::TooLarge)?;
        dst.copy_from_slice(data);
        self.len = self.len.max(end);
        Ok(())
    }
}

/// With `alloc`: a growable in-memory sink, bounded by `limit` bytes.
#[cfg(feature = "alloc")]
#[derive(Debug, Default, Clone)]
pub struct VecSink {
    /// The bytes received.
    pub data: alloc::vec::Vec<u8>,
    /// Largest accepted size (`None`: unbounded).
    pub limit: Option<u64>,
    /// True once [`WriteAt::finish`] was called.
    pub finished: bool,
}

/// The end offset of a write of `len` bytes at `offset`, or
/// [`FsError::TooLarge`] past `limit` (or past `u64`): the size check every
/// [`WriteAt`] makes before it writes.
pub fn write_end(offset: u64, len: usize, limit: Option<u64>) -> Result<u64, FsError> {
    let end = offset.checked_add(len as u64).ok_or(FsError::TooLarge)?;
    if limit.is_some_and(|l| end > l) {
        return Err(FsError::TooLarge);
    }
    Ok(end)
}

#[cfg(feature = "alloc")]
impl WriteAt for VecSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        let end = write_end(offset, data.len(), self.limit)?;
        let start = usize::try_from(offset).map_err(|_| FsError::TooLarge)?;
        let end = usize::try_from(end).map_err(|_| FsError::TooLarge)?;
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(data);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), FsError> {
        self.finished = true;
        Ok(())
    }
}

impl<W: WriteAt + ?Sized> WriteAt for &mut W {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        (**self).write_at(offset, data)
    }
    fn finish(&mut self) -> Result<(), FsError> {
        (**self).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        // Issue 3: `..`, NUL, backslash tricks, over-long names → ERROR 2.
        let long = [b'a'; MAX_COMPONENT_LEN + 1];
        for bad in [
            &b""[..],
            b"/",
            b"..",
            b"../x",
            b"a/../../x",
            b"a/..",
            b"./x",
            b"a//b",
            b"a\\..\\..\\x",
            b"..\\x",
            b"a\x01b",
            b"a\nb",
            b"\xff\xfe",
            &long,
        ] {
            assert!(ValidPath::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ValidPath::new(b"///a/b").unwrap().as_str(), "a/b");
        assert_eq!(
            ValidPath::new(b"pxelinux.cfg/01-52-54-00-12-34-56")
                .unwrap()
                .components()
                .count(),
            2
        );
    }

    #[test]
    fn slice_sink_bounds() {
        let mut buf = [0u8; 4];
        let mut s = SliceSink::new(&mut buf);
        s.write_at(0, b"ab").unwrap();
        assert_eq!(s.write_at(3, b"cd"), Err(FsError::TooLarge));
        assert_eq!(s.data(), b"ab");
    }
}
