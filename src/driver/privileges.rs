//! Giving up root once the privileged ports are bound.
//!
//! Ports 67, 69 and 4011 need root (or `CAP_NET_BIND_SERVICE`) only to bind.
//! A server that goes on running as root turns any flaw in its packet path
//! into a root compromise, and reads files as root on behalf of anyone on the
//! network. So, as dnsmasq and tftp-hpa do, a server started as root switches
//! to an unprivileged account (`server.user`, default `nobody`) after binding:
//! supplementary groups cleared, then the group, then the user, real, effective
//! and saved IDs alike, so that nothing can switch back. A process that is not
//! root (systemd's `DynamicUser`, capabilities given by the unit) is left as it
//! is.
//!
//! What the account must still reach is checked right after the switch, so a
//! TFTP root it cannot read or a state directory it cannot write is a clear
//! error at start, not a stream of failed transfers later.

use std::format;
use std::io;
use std::path::Path;
use std::string::String;

/// The account name that means "stay root" (`server.user = "root"`).
pub const KEEP_ROOT: &str = "root";

/// The account used when `server.user` is not set.
pub const DEFAULT_USER: &str = "nobody";

/// What [`switch_user`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Switched {
    /// The process was not root: nothing to give up.
    NotRoot,
    /// The configuration asked to stay root.
    KeptRoot,
    /// The process now runs as this account.
    To {
        /// The account name.
        user: String,
        /// Its user ID.
        uid: u32,
        /// Its primary group ID (the only group kept).
        gid: u32,
    },
}

/// Switch from root to the account `user` (see the module docs); a
/// process that is not root, or `user = "root"`, is left as it is.
///
/// Call it after every privileged socket is bound and before any thread is
/// started.
#[cfg(target_os = "linux")]
pub fn switch_user(user: &str) -> io::Result<Switched> {
    use nix::unistd::{
        Gid, Uid, User, getegid, geteuid, getgid, getuid, setgid, setgroups, setuid,
    };

    if !geteuid().is_root() {
        return Ok(Switched::NotRoot);
    }
    if user == KEEP_ROOT {
        return Ok(Switched::KeptRoot);
    }
    let account = User::from_name(user)
        .map_err(io::Error::from)?
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("server.user: no account named {user:?} on this host"),
            )
        })?;
    if account.uid.is_root() {
        return Ok(Switched::KeptRoot);
    }
    let fail = |what: &str, e: nix::Error| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("cannot switch to user {user}: {what}: {e}"),
        )
    };
    setgroups(&[account.gid]).map_err(|e| fail("setgroups", e))?;
    setgid(account.gid).map_err(|e| fail("setgid", e))?;
    setuid(account.uid).map_err(|e| fail("setuid", e))?;
    // setuid from root sets real, effective and saved IDs: going back must
    // now fail.
    let back = setuid(Uid::from_raw(0)).is_ok() || setgid(Gid::from_raw(0)).is_ok();
    if back
        || getuid() != account.uid
        || geteuid() != account.uid
        || getgid() != account.gid
        || getegid() != account.gid
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("switched to user {user} but root could be regained; refusing to run"),
        ));
    }
    Ok(Switched::To {
        user: user.into(),
        uid: account.uid.as_raw(),
        gid: account.gid.as_raw(),
    })
}

/// Not supported off Linux: a process that is not root is left as it is;
/// root is refused unless `user = "root"`.
#[cfg(not(target_os = "linux"))]
pub fn switch_user(user: &str) -> io::Result<Switched> {
    if user == KEEP_ROOT {
        return Ok(Switched::KeptRoot);
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "switching users is implemented on Linux only; set server.user = \"root\"",
    ))
}

/// `dir` can be listed by this process (the TFTP root after a switch).
pub fn check_readable_dir(dir: &Path, what: &str, user: &str) -> io::Result<()> {
    std::fs::read_dir(dir).map(drop).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{what} {} cannot be read as user {user} ({e}): make it readable (chmod o+rx on it and every directory above it) or set server.user",
                dir.display()
            ),
        )
    })
}

/// Files can be created in `dir` by this process (the lease file's
/// directory after a switch: the lease log is compacted by writing a new
/// file beside it).
#[cfg(target_os = "linux")]
pub fn check_writable_dir(dir: &Path, what: &str, user: &str) -> io::Result<()> {
    use nix::unistd::{AccessFlags, access};
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what} {} is not writable by user {user} ({e}): chown it to that user or set server.user",
                dir.display()
            ),
        )
    })
}

/// Off Linux: no check.
#[cfg(not(target_os = "linux"))]
pub fn check_writable_dir(_dir: &Path, _what: &str, _user: &str) -> io::Result<()> {
    Ok(())
}
