//! One server per state: an exclusive `flock(2)` held for the life of the
//! server, so that a second instance serving the same lease log (or the
//! same state directory) refuses to start instead of sharing it.
//!
//! The ports alone cannot tell: `SO_REUSEPORT` lets sockets of the same
//! user share a port, and in proxy mode port 67 is shared on purpose with
//! the network's DHCP server. The lock is taken before the lease log is
//! opened (a second instance would otherwise compact the log under the
//! first), and the kernel drops it when the process ends, `kill -9`
//! included: a stale lock file never blocks a restart.
//!
//! The lock file is opened without following symbolic links, mode 0600,
//! and holds the owner's process id (for the message a second instance
//! prints).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::string::String;

/// An exclusive lock on a file, released when dropped (or when the process
/// ends).
#[derive(Debug)]
pub struct InstanceLock {
    path: PathBuf,
    #[cfg(target_os = "linux")]
    _held: nix::fcntl::Flock<File>,
    #[cfg(not(target_os = "linux"))]
    _held: File,
}

impl InstanceLock {
    /// Take the lock at `path` (creating the file), or fail with
    /// [`io::ErrorKind::AddrInUse`] naming the process that holds it.
    pub fn acquire(path: &Path) -> io::Result<InstanceLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), std::format!("lock {}: {e}", path.display())))?;
        #[cfg(target_os = "linux")]
        let held = {
            use nix::fcntl::{Flock, FlockArg};
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut pid = String::new();
                    let _ = f.read_to_string(&mut pid);
                    let pid = pid.trim();
                    let who = if pid.is_empty() {
                        String::from("another preboot instance")
                    } else {
                        std::format!("another preboot instance (pid {pid})")
                    };
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        std::format!(
                            "{who} holds {}: it serves the same lease log or state directory; stop it first, or give this one its own",
                            path.display()
                        ),
                    ));
                }
                Err((_, e)) => {
                    return Err(io::Error::other(std::format!(
                        "lock {}: {e}",
                        path.display()
                    )));
                }
            }
        };
        #[cfg(not(target_os = "linux"))]
        let held = file;
        let mut f: &File = &held;
        f.set_len(0)?;
        f.write_all(std::format!("{}\n", std::process::id()).as_bytes())?;
        Ok(InstanceLock {
            path: path.to_path_buf(),
            _held: held,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    /// `flock` locks belong to the open file, so a second open in the same
    /// process conflicts like a second process would; dropping the first
    /// frees it.
    #[test]
    fn a_second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preboot.lock");
        let first = InstanceLock::acquire(&path).unwrap();
        let e = InstanceLock::acquire(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let msg = e.to_string();
        assert!(
            msg.contains(&std::format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        InstanceLock::acquire(&path).unwrap();
    }

    #[test]
    fn a_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("preboot.lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(InstanceLock::acquire(&path).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}
