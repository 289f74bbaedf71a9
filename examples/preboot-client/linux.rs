//! The Linux parts of the preboot client: a DHCP client socket, interface
//! configuration by ioctl (no `ip` command in an initrd), the hand-over by
//! `kexec_file_load(2)` and keys from a terminal or serial console.
//!
//! - [`dhcp_socket`]: RFC 2131 §4.1 — a client with no address yet sends
//!   from 0.0.0.0 to 255.255.255.255:67 and receives broadcast replies on
//!   68; `SO_BINDTODEVICE` picks the interface since no route exists yet.
//! - [`interface_up`], [`set_address`], [`add_default_route`], [`mac_of`]:
//!   the classic `netdevice(7)` / `route(4)` ioctls.
//! - [`kexec`], [`kexec_load_only`], [`kexec_unload`]: `kexec_file_load(2)`
//!   and `reboot(2)` with `LINUX_REBOOT_CMD_KEXEC`.
//! - [`RawConsole`], [`read_key`], [`decode_key`]: what a terminal sends
//!   (ECMA-48 CSI/SS3 sequences as xterm, the Linux console and serial
//!   terminals emit them), as the modifiers and key of the menu hotkey of
//!   docs/transaction-protocol.md §4.4 (TLV 2), with function keys as codes
//!   0x81..0x8C.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use preboot::wire::transaction::messages::Hotkey;
use socket2::{Domain, Protocol, Socket, Type};

// ---------------------------------------------------------------------------
// DHCP socket and interface configuration
// ---------------------------------------------------------------------------

/// A UDP socket for a DHCP client on `iface`: bound to `0.0.0.0:port`,
/// `SO_BINDTODEVICE` iface, `SO_BROADCAST`, `SO_REUSEADDR`. It sends to
/// `255.255.255.255:67` from an interface with no address and receives the
/// broadcast replies arriving on that interface only (RFC 2131 §4.1).
/// Needs `CAP_NET_RAW` (for `SO_BINDTODEVICE`) and, for port 68,
/// `CAP_NET_BIND_SERVICE`.
pub fn dhcp_socket(iface: &str, port: u16) -> io::Result<UdpSocket> {
    check_name(iface)?;
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(iface.as_bytes()))
        .map_err(|e| context(e, format!("SO_BINDTODEVICE {iface}")))?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
        .map_err(|e| context(e, format!("bind 0.0.0.0:{port}")))?;
    Ok(s.into())
}

/// Sets `IFF_UP` on `iface` (`SIOCGIFFLAGS` then `SIOCSIFFLAGS`).
pub fn interface_up(iface: &str) -> io::Result<()> {
    let fd = ioctl_socket()?;
    let mut req = ifreq(iface)?;
    ioctl(&fd, libc::SIOCGIFFLAGS, &mut req, iface, "SIOCGIFFLAGS")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(&fd, libc::SIOCSIFFLAGS, &mut req, iface, "SIOCSIFFLAGS")
}

/// Gives `iface` the address `addr` and the netmask `netmask`
/// (`SIOCSIFADDR`, `SIOCSIFNETMASK`; the kernel adds the subnet route).
pub fn set_address(iface: &str, addr: Ipv4Addr, netmask: Ipv4Addr) -> io::Result<()> {
    let fd = ioctl_socket()?;
    let mut req = ifreq(iface)?;
    req.ifr_ifru.ifru_addr = sockaddr(addr);
    ioctl(&fd, libc::SIOCSIFADDR, &mut req, iface, "SIOCSIFADDR")?;
    let mut req = ifreq(iface)?;
    req.ifr_ifru.ifru_netmask = sockaddr(netmask);
    ioctl(&fd, libc::SIOCSIFNETMASK, &mut req, iface, "SIOCSIFNETMASK")
}

/// Adds the default route via `gateway` (`SIOCADDRT`); the gateway must be
/// on a connected subnet (after [`set_address`]).
pub fn add_default_route(gateway: Ipv4Addr) -> io::Result<()> {
    let fd = ioctl_socket()?;
    // SAFETY: an all-zero rtentry is valid (null rt_dev, zero addresses).
    let mut rt: RtEntry = unsafe { mem::zeroed() };
    rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: fd is a socket, rt a properly laid-out struct rtentry that
    // lives across the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCADDRT as _, &mut rt) };
    if r < 0 {
        return Err(context(
            io::Error::last_os_error(),
            format!("SIOCADDRT default via {gateway}"),
        ));
    }
    Ok(())
}

/// The Ethernet address of `iface` (`SIOCGIFHWADDR`); an error for an
/// interface that is not Ethernet-like.
pub fn mac_of(iface: &str) -> io::Result<[u8; 6]> {
    let fd = ioctl_socket()?;
    let mut req = ifreq(iface)?;
    ioctl(&fd, libc::SIOCGIFHWADDR, &mut req, iface, "SIOCGIFHWADDR")?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    if sa.sa_family != libc::ARPHRD_ETHER && sa.sa_family != libc::ARPHRD_LOOPBACK {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{iface}: not an Ethernet interface (ARPHRD {})",
                sa.sa_family
            ),
        ));
    }
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// `struct rtentry` of `<net/route.h>` (the `libc` crate has it for musl
/// only).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// An interface name the kernel accepts: 1..15 bytes, no NUL, no `/`.
fn check_name(iface: &str) -> io::Result<()> {
    if iface.is_empty()
        || iface.len() >= libc::IFNAMSIZ
        || iface.bytes().any(|b| b == 0 || b == b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{iface:?}: not an interface name (1 to 15 bytes)"),
        ));
    }
    Ok(())
}

fn ifreq(iface: &str) -> io::Result<libc::ifreq> {
    check_name(iface)?;
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes).
    unsafe { mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(
    fd: &OwnedFd,
    request: libc::c_ulong,
    req: &mut libc::ifreq,
    iface: &str,
    what: &str,
) -> io::Result<()> {
    // SAFETY: fd is a socket, req a valid ifreq that lives across the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, req as *mut libc::ifreq) };
    if r < 0 {
        return Err(context(
            io::Error::last_os_error(),
            format!("{what} {iface}"),
        ));
    }
    Ok(())
}

/// The error with what was being done in front, same kind (the OS error
/// code stays readable through [`os_error_of`]).
fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), Context { what, source: e })
}

/// An OS error with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct Context {
    /// What failed (`SIOCSIFADDR eth0`).
    pub what: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// The errno of an error from this module (also through [`Context`] or
/// [`KexecError`]).
pub fn os_error_of(e: &io::Error) -> Option<i32> {
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    let inner = e.get_ref()?;
    if let Some(c) = inner.downcast_ref::<Context>() {
        return c.source.raw_os_error();
    }
    inner.downcast_ref::<KexecError>().and_then(|k| k.errno)
}

// ---------------------------------------------------------------------------
// kexec
// ---------------------------------------------------------------------------

/// Why a kexec failed: the step, the OS error and what it means.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct KexecError {
    /// What was being done (`open kernel /boot/vmlinuz`, `kexec_file_load`,
    /// `reboot(LINUX_REBOOT_CMD_KEXEC)`).
    pub step: String,
    /// The OS error number, if any.
    pub errno: Option<i32>,
    /// What the errno means for a kexec.
    pub hint: Option<&'static str>,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

/// What a `kexec_file_load(2)` errno means (kernel/kexec_file.c,
/// security/lockdown).
fn kexec_hint(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => {
            "not permitted: not root (CAP_SYS_BOOT), kexec disabled by \
             kernel.kexec_load_disabled, kernel lockdown, or a container"
        }
        libc::ENOEXEC => {
            "the kernel file is not a kernel this kernel can load, or its \
             signature is missing or invalid (KEXEC_SIG)"
        }
        libc::EKEYREJECTED => "the kernel's signature was rejected (KEXEC_SIG / lockdown)",
        libc::EBADMSG => "the kernel's signature is malformed",
        libc::ENOSYS => "this kernel has no kexec_file_load (CONFIG_KEXEC_FILE off)",
        libc::EBUSY => "another kexec is being loaded",
        libc::EINVAL => "invalid arguments, or no kexec image loaded",
        libc::ENOMEM => "not enough memory to stage the kernel and initrd",
        _ => return None,
    })
}

fn kexec_error(step: String, source: io::Error) -> io::Error {
    let errno = source.raw_os_error();
    io::Error::new(
        source.kind(),
        KexecError {
            step,
            errno,
            hint: errno.and_then(kexec_hint),
            source,
        },
    )
}

/// Loads `kernel`, `initrd` and `cmdline` for a later kexec
/// (`kexec_file_load(2)`), without rebooting. [`kexec_unload`] undoes it.
pub fn kexec_load_only(kernel: &Path, initrd: &Path, cmdline: &str) -> io::Result<()> {
    let k = File::open(kernel)
        .map_err(|e| kexec_error(format!("open kernel {}", kernel.display()), e))?;
    let i = File::open(initrd)
        .map_err(|e| kexec_error(format!("open initrd {}", initrd.display()), e))?;
    let cmd = CString::new(cmdline).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "kernel command line contains a NUL byte",
        )
    })?;
    let bytes = cmd.as_bytes_with_nul();
    // SAFETY: valid descriptors, a NUL-terminated buffer of the given
    // length (the length includes the NUL, as the kernel requires).
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            k.as_raw_fd(),
            i.as_raw_fd(),
            bytes.len() as libc::c_ulong,
            cmd.as_ptr(),
            0 as libc::c_ulong,
        )
    };
    if r != 0 {
        return Err(kexec_error(
            format!("kexec_file_load {}", kernel.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Unloads a kernel loaded by [`kexec_load_only`] (`KEXEC_FILE_UNLOAD`).
pub fn kexec_unload() -> io::Result<()> {
    // SAFETY: with KEXEC_FILE_UNLOAD the kernel ignores the other arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            -1 as libc::c_int,
            -1 as libc::c_int,
            0 as libc::c_ulong,
            std::ptr::null::<libc::c_char>(),
            libc::KEXEC_FILE_UNLOAD as libc::c_ulong,
        )
    };
    if r != 0 {
        return Err(kexec_error(
            "kexec_file_load(KEXEC_FILE_UNLOAD)".into(),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Loads `kernel`, `initrd` and `cmdline`, syncs the file systems and
/// reboots into the new kernel. Returns only on failure, with a
/// [`KexecError`] inside the `io::Error` that names the step and what the
/// errno means (EPERM: not root or lockdown; ENOEXEC / EKEYREJECTED: the
/// kernel's signature; ENOSYS: no `kexec_file_load`).
pub fn kexec(kernel: &Path, initrd: &Path, cmdline: &str) -> io::Error {
    if let Err(e) = kexec_load_only(kernel, initrd, cmdline) {
        return e;
    }
    // SAFETY: sync(2) and reboot(2) take no pointers.
    unsafe { libc::sync() };
    let r = unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    let e = if r < 0 {
        io::Error::last_os_error()
    } else {
        io::Error::other("returned without rebooting")
    };
    kexec_error("reboot(LINUX_REBOOT_CMD_KEXEC)".into(), e)
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// A key press: modifier bits as in §4.4 `Hotkey` (1 Ctrl, 2 Alt, 4
/// Shift) and a key code: ASCII for ordinary keys (letters lower case, the
/// Shift bit set for an upper-case letter), [`Key::ENTER`], [`Key::TAB`],
/// [`Key::ESC`], [`Key::BACKSPACE`], function keys F1..F12 as
/// `0x81..=0x8C`, and the cursor block as `0x91..=0x9A`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// Modifier bits (`Hotkey::CTRL`, `Hotkey::ALT`, `Hotkey::SHIFT`).
    pub modifiers: u8,
    /// Key code.
    pub code: u8,
}

impl Key {
    /// Tab (0x09, also Ctrl+I).
    pub const TAB: u8 = 0x09;
    /// Enter (CR or LF: also Ctrl+M / Ctrl+J).
    pub const ENTER: u8 = 0x0d;
    /// Escape, alone.
    pub const ESC: u8 = 0x1b;
    /// Backspace as most terminals send it (DEL, 0x7f).
    pub const BACKSPACE: u8 = 0x7f;
    /// F1; Fn is `F1 + n - 1` up to F12 (0x8C).
    pub const F1: u8 = 0x81;
    /// F12.
    pub const F12: u8 = 0x8c;
    /// Cursor up.
    pub const UP: u8 = 0x91;
    /// Cursor down.
    pub const DOWN: u8 = 0x92;
    /// Cursor right.
    pub const RIGHT: u8 = 0x93;
    /// Cursor left.
    pub const LEFT: u8 = 0x94;
    /// Home.
    pub const HOME: u8 = 0x95;
    /// End.
    pub const END: u8 = 0x96;
    /// Insert.
    pub const INSERT: u8 = 0x97;
    /// Delete.
    pub const DELETE: u8 = 0x98;
    /// Page up.
    pub const PAGE_UP: u8 = 0x99;
    /// Page down.
    pub const PAGE_DOWN: u8 = 0x9a;

    /// A key with no modifier.
    pub const fn plain(code: u8) -> Self {
        Key { modifiers: 0, code }
    }

    /// Function key `n` (1..=12).
    pub const fn f(n: u8) -> Self {
        Key::plain(Key::F1 + n - 1)
    }

    /// Whether this press is `hotkey` (§4.4 TLV 2). An upper-case letter in
    /// the hotkey means Shift plus that letter. A hotkey of modifiers only
    /// (key 0) cannot be seen on a terminal (Ctrl and Alt alone send no
    /// bytes) and never matches.
    pub fn matches(&self, hotkey: Hotkey) -> bool {
        if hotkey.key == 0 {
            return false;
        }
        let want = normalize(hotkey.modifiers, hotkey.key);
        want == *self
    }
}

/// Upper-case letters as Shift + lower case.
fn normalize(modifiers: u8, code: u8) -> Key {
    if code.is_ascii_uppercase() {
        Key {
            modifiers: modifiers | Hotkey::SHIFT,
            code: code.to_ascii_lowercase(),
        }
    } else {
        Key { modifiers, code }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, name) in [
            (Hotkey::CTRL, "Ctrl+"),
            (Hotkey::ALT, "Alt+"),
            (Hotkey::SHIFT, "Shift+"),
        ] {
            if self.modifiers & bit != 0 {
                f.write_str(name)?;
            }
        }
        match self.code {
            c @ Key::F1..=Key::F12 => write!(f, "F{}", c - Key::F1 + 1),
            Key::TAB => f.write_str("Tab"),
            Key::ENTER => f.write_str("Enter"),
            Key::ESC => f.write_str("Esc"),
            Key::BACKSPACE => f.write_str("Backspace"),
            b' ' => f.write_str("Space"),
            Key::UP => f.write_str("Up"),
            Key::DOWN => f.write_str("Down"),
            Key::RIGHT => f.write_str("Right"),
            Key::LEFT => f.write_str("Left"),
            Key::HOME => f.write_str("Home"),
            Key::END => f.write_str("End"),
            Key::INSERT => f.write_str("Insert"),
            Key::DELETE => f.write_str("Delete"),
            Key::PAGE_UP => f.write_str("PageUp"),
            Key::PAGE_DOWN => f.write_str("PageDown"),
            c if c.is_ascii_graphic() => write!(f, "{}", c as char),
            c => write!(f, "0x{c:02x}"),
        }
    }
}

/// What [`decode_key`] found at the start of the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A key, and how many bytes it took.
    Key(Key, usize),
    /// The bytes are the start of an escape sequence: wait for more.
    NeedMore,
    /// Bytes that are no key this decoder knows (an unknown sequence, a
    /// non-ASCII character), and how many to skip.
    Unknown(usize),
}

/// Longest escape sequence looked at; a longer one is skipped as unknown.
const MAX_SEQ: usize = 16;

/// Decodes the first key in `bytes`, as a terminal or serial console sends
/// it. `more_may_follow` says whether later bytes could still complete an
/// escape sequence (false once the inter-byte timeout has passed): a lone
/// ESC is then the Escape key, ESC + `[` is Alt+`[`.
///
/// - `0x20..=0x7e`: the character; an upper-case letter is Shift + the
///   lower-case letter. `0x7f` Backspace.
/// - `0x09` Tab, `0x0a` / `0x0d` Enter (the bytes of Ctrl+I / J / M);
///   other `0x00..=0x1f` except ESC: Ctrl + (byte | 0x40), letters lower
///   case (Ctrl+A is `0x01`).
/// - ESC then a key (not `[` / `O` starting a sequence): Alt + that key.
/// - SS3 `ESC O P..S`: F1..F4; `ESC O A..D / H / F`: cursor keys.
/// - CSI `ESC [ n ~`: 11..15 F1..F5, 17..21 F6..F10, 23, 24 F11, F12
///   (F8 = `ESC [ 19 ~`), 1/7 Home, 2 Insert, 3 Delete, 4/8 End, 5/6
///   PageUp/Down; `ESC [ A..D / H / F / P..S`; the Linux console's
///   `ESC [ [ A..E` (F1..F5); an xterm modifier parameter (`ESC [ 19 ; 5 ~`
///   Ctrl+F8, `ESC [ 1 ; 2 P` Shift+F1) adds its modifiers.
pub fn decode_key(bytes: &[u8], more_may_follow: bool) -> Decoded {
    let Some(&b) = bytes.first() else {
        return Decoded::NeedMore;
    };
    if b != 0x1b {
        return match single(b) {
            Some(k) => Decoded::Key(k, 1),
            None => Decoded::Unknown(utf8_len(bytes)),
        };
    }
    // ESC ...
    let Some(&b1) = bytes.get(1) else {
        return if more_may_follow {
            Decoded::NeedMore
        } else {
            Decoded::Key(Key::plain(Key::ESC), 1)
        };
    };
    match b1 {
        b'[' => csi(bytes, more_may_follow),
        b'O' => match bytes.get(2) {
            None if more_may_follow => Decoded::NeedMore,
            None => Decoded::Key(normalize(Hotkey::ALT, b'O'), 2),
            Some(&c) => match cursor_or_pf(c) {
                Some(code) => Decoded::Key(Key::plain(code), 3),
                None => Decoded::Unknown(3),
            },
        },
        0x1b => Decoded::Key(
            Key {
                modifiers: Hotkey::ALT,
                code: Key::ESC,
            },
            2,
        ),
        c => match single(c) {
            Some(k) => Decoded::Key(
                Key {
                    modifiers: k.modifiers | Hotkey::ALT,
                    code: k.code,
                },
                2,
            ),
            None => Decoded::Unknown(1 + utf8_len(&bytes[1..])),
        },
    }
}

/// One byte that is not ESC.
fn single(b: u8) -> Option<Key> {
    Some(match b {
        0x09 => Key::plain(Key::TAB),
        0x0a | 0x0d => Key::plain(Key::ENTER),
        0x00..=0x1f => Key {
            modifiers: Hotkey::CTRL,
            code: (b | 0x40).to_ascii_lowercase(),
        },
        0x20..=0x7e => normalize(0, b),
        0x7f => Key::plain(Key::BACKSPACE),
        _ => return None,
    })
}

/// How many bytes a (possibly bad) UTF-8 character at the start takes.
fn utf8_len(bytes: &[u8]) -> usize {
    let n = match bytes.first() {
        Some(0xc0..=0xdf) => 2,
        Some(0xe0..=0xef) => 3,
        Some(0xf0..=0xf7) => 4,
        _ => 1,
    };
    let cont = bytes
        .iter()
        .skip(1)
        .take(n - 1)
        .take_while(|&&c| c & 0xc0 == 0x80)
        .count();
    1 + cont
}

/// Final byte of an SS3 or parameterless CSI sequence.
fn cursor_or_pf(c: u8) -> Option<u8> {
    Some(match c {
        b'A' => Key::UP,
        b'B' => Key::DOWN,
        b'C' => Key::RIGHT,
        b'D' => Key::LEFT,
        b'H' => Key::HOME,
        b'F' => Key::END,
        b'P'..=b'S' => Key::F1 + (c - b'P'),
        _ => return None,
    })
}

/// `ESC [` ...
fn csi(bytes: &[u8], more_may_follow: bool) -> Decoded {
    // Linux console: ESC [ [ A..E = F1..F5.
    if bytes.get(2) == Some(&b'[') {
        return match bytes.get(3) {
            None if more_may_follow => Decoded::NeedMore,
            None => Decoded::Unknown(3),
            Some(&c @ b'A'..=b'E') => Decoded::Key(Key::plain(Key::F1 + (c - b'A')), 4),
            Some(_) => Decoded::Unknown(4),
        };
    }
    // Parameters (digits and ';') then a final byte 0x40..=0x7e.
    let mut end = 2;
    loop {
        match bytes.get(end) {
            None if end >= MAX_SEQ => return Decoded::Unknown(end),
            None if more_may_follow => return Decoded::NeedMore,
            None if end == 2 => return Decoded::Key(normalize(Hotkey::ALT, b'['), 2),
            None => return Decoded::Unknown(end),
            Some(b'0'..=b'9' | b';') if end < MAX_SEQ => end += 1,
            Some(&f @ 0x40..=0x7e) => return csi_final(&bytes[2..end], f, end + 1),
            // Intermediate bytes, a too long sequence, or a control byte in
            // the middle: skip what was read.
            Some(_) => return Decoded::Unknown(end + 1),
        }
    }
}

fn csi_final(params: &[u8], fin: u8, len: usize) -> Decoded {
    let mut nums = [0u16; 2];
    let mut count = 0;
    for p in params.split(|&c| c == b';') {
        if count == nums.len() {
            return Decoded::Unknown(len);
        }
        let mut v: u16 = 0;
        for &d in p {
            v = v.saturating_mul(10).saturating_add(u16::from(d - b'0'));
        }
        nums[count] = v;
        count += 1;
    }
    let modifiers = if count == 2 {
        // xterm: parameter = 1 + bits (1 Shift, 2 Alt, 4 Ctrl).
        let m = nums[1].saturating_sub(1);
        (if m & 1 != 0 { Hotkey::SHIFT } else { 0 })
            | (if m & 2 != 0 { Hotkey::ALT } else { 0 })
            | (if m & 4 != 0 { Hotkey::CTRL } else { 0 })
    } else {
        0
    };
    let code = if fin == b'~' {
        match nums[0] {
            1 | 7 => Key::HOME,
            2 => Key::INSERT,
            3 => Key::DELETE,
            4 | 8 => Key::END,
            5 => Key::PAGE_UP,
            6 => Key::PAGE_DOWN,
            n @ 11..=15 => Key::F1 + (n - 11) as u8,
            n @ 17..=21 => Key::F1 + 5 + (n - 17) as u8,
            n @ 23..=24 => Key::F1 + 10 + (n - 23) as u8,
            _ => return Decoded::Unknown(len),
        }
    } else {
        match cursor_or_pf(fin) {
            Some(c) => c,
            None => return Decoded::Unknown(len),
        }
    };
    Decoded::Key(Key { modifiers, code }, len)
}

/// Inter-byte timeout inside an escape sequence: a terminal sends a
/// sequence in one burst; a lone ESC is followed by silence.
pub const ESC_TIMEOUT: Duration = Duration::from_millis(50);

/// Raw mode on standard input while it lives, when stdin is a terminal:
/// no line buffering, no echo, no signals from Ctrl+C / Ctrl+Z, no
/// flow control on Ctrl+S / Ctrl+Q, CR not turned into LF, so that
/// [`read_key`] sees every key. Output processing is kept (log lines still
/// end in CR LF). The previous settings are restored on drop.
pub struct RawConsole {
    fd: libc::c_int,
    saved: Option<libc::termios>,
}

impl RawConsole {
    /// Enters raw mode if stdin is a terminal; otherwise does nothing (a
    /// pipe or file still works with [`read_key`]).
    pub fn new() -> io::Result<Self> {
        Self::on_fd(libc::STDIN_FILENO)
    }

    /// [`RawConsole::new`] on another descriptor (a serial port, a pty);
    /// the descriptor must stay open while the value lives.
    pub fn on_fd(fd: libc::c_int) -> io::Result<Self> {
        // SAFETY: isatty takes no pointer.
        if unsafe { libc::isatty(fd) } != 1 {
            return Ok(RawConsole { fd, saved: None });
        }
        // SAFETY: an all-zero termios is valid storage for tcgetattr.
        let mut t: libc::termios = unsafe { mem::zeroed() };
        // SAFETY: fd is a terminal, t valid storage.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let saved = t;
        t.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
        t.c_cflag &= !(libc::CSIZE | libc::PARENB);
        t.c_cflag |= libc::CS8;
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RawConsole {
            fd,
            saved: Some(saved),
        })
    }

    /// Whether the descriptor is a terminal now in raw mode.
    pub fn is_raw(&self) -> bool {
        self.saved.is_some()
    }
}

impl Drop for RawConsole {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restoring settings read by tcgetattr.
            unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, t) };
        }
    }
}

/// Waits up to `timeout` for a key on standard input and decodes it
/// ([`decode_key`]); the bytes of an escape sequence are read with an
/// inter-byte timeout of [`ESC_TIMEOUT`]. `None` on timeout, end of input
/// or a read error. Unknown sequences are skipped and reading goes on
/// until the timeout. Use with a [`RawConsole`] on a terminal.
pub fn read_key(timeout: Duration) -> Option<Key> {
    read_key_from(libc::STDIN_FILENO, timeout)
}

/// [`read_key`] on any readable descriptor (a pipe in tests).
pub fn read_key_from(fd: libc::c_int, timeout: Duration) -> Option<Key> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; MAX_SEQ];
    // Each round reads one key's bytes; bounded by the deadline, and by
    // the bytes available (each round consumes at least one).
    loop {
        let first = read_byte(fd, deadline.saturating_duration_since(Instant::now()))?;
        buf[0] = first;
        let mut n = 1;
        loop {
            match decode_key(&buf[..n], true) {
                Decoded::Key(k, _) => return Some(k),
                Decoded::Unknown(_) => break,
                Decoded::NeedMore if n == buf.len() => break,
                Decoded::NeedMore => match read_byte(fd, ESC_TIMEOUT) {
                    Some(b) => {
                        buf[n] = b;
                        n += 1;
                    }
                    None => {
                        if let Decoded::Key(k, _) = decode_key(&buf[..n], false) {
                            return Some(k);
                        }
                        break;
                    }
                },
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// One byte within `wait`, `None` on timeout, end of file or error.
fn read_byte(fd: libc::c_int, wait: Duration) -> Option<u8> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r <= 0 {
        return None;
    }
    let mut b = 0u8;
    // SAFETY: reading one byte into a valid byte.
    let r = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
    (r == 1).then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;
    use std::sync::mpsc;
    use std::thread;

    const CTRL: u8 = Hotkey::CTRL;
    const ALT: u8 = Hotkey::ALT;
    const SHIFT: u8 = Hotkey::SHIFT;

    fn key(modifiers: u8, code: u8) -> Key {
        Key { modifiers, code }
    }

    /// Decodes a complete burst (no more bytes coming).
    fn one(bytes: &[u8]) -> Decoded {
        decode_key(bytes, false)
    }

    /// Plain ASCII, upper case as Shift + letter, Backspace.
    #[test]
    fn plain_ascii() {
        assert_eq!(one(b"a"), Decoded::Key(key(0, b'a'), 1));
        assert_eq!(one(b"A"), Decoded::Key(key(SHIFT, b'a'), 1));
        assert_eq!(one(b"7x"), Decoded::Key(key(0, b'7'), 1));
        assert_eq!(one(b" "), Decoded::Key(key(0, b' '), 1));
        assert_eq!(one(b"~"), Decoded::Key(key(0, b'~'), 1));
        assert_eq!(one(b"\x7f"), Decoded::Key(Key::plain(Key::BACKSPACE), 1));
    }

    /// Ctrl+letter is 0x01..0x1a; Tab, LF and CR are Tab and Enter (§4.4
    /// hotkeys include Enter).
    #[test]
    fn ctrl_letters_tab_enter() {
        assert_eq!(one(b"\x01"), Decoded::Key(key(CTRL, b'a'), 1));
        assert_eq!(one(b"\x1a"), Decoded::Key(key(CTRL, b'z'), 1));
        assert_eq!(one(b"\x03"), Decoded::Key(key(CTRL, b'c'), 1));
        assert_eq!(one(b"\x09"), Decoded::Key(Key::plain(Key::TAB), 1));
        assert_eq!(one(b"\x0d"), Decoded::Key(Key::plain(Key::ENTER), 1));
        assert_eq!(one(b"\x0a"), Decoded::Key(Key::plain(Key::ENTER), 1));
        assert_eq!(one(b"\x00"), Decoded::Key(key(CTRL, b'@'), 1));
        assert_eq!(one(b"\x1c"), Decoded::Key(key(CTRL, b'\\'), 1));
    }

    /// Alt+key is ESC then the key (Ctrl and Shift carried over).
    #[test]
    fn alt_keys() {
        assert_eq!(one(b"\x1bx"), Decoded::Key(key(ALT, b'x'), 2));
        assert_eq!(one(b"\x1bX"), Decoded::Key(key(ALT | SHIFT, b'x'), 2));
        assert_eq!(one(b"\x1b\x01"), Decoded::Key(key(ALT | CTRL, b'a'), 2));
        assert_eq!(one(b"\x1b\x0d"), Decoded::Key(key(ALT, Key::ENTER), 2));
        assert_eq!(one(b"\x1b\x1b"), Decoded::Key(key(ALT, Key::ESC), 2));
        // Alt+[ and Alt+O are only told from CSI / SS3 by the timeout.
        assert_eq!(one(b"\x1b["), Decoded::Key(key(ALT, b'['), 2));
        assert_eq!(one(b"\x1bO"), Decoded::Key(key(ALT | SHIFT, b'o'), 2));
        assert_eq!(decode_key(b"\x1b[", true), Decoded::NeedMore);
        assert_eq!(decode_key(b"\x1bO", true), Decoded::NeedMore);
    }

    /// A lone ESC waits for more while the inter-byte timeout runs, then
    /// is the Escape key.
    #[test]
    fn lone_escape() {
        assert_eq!(decode_key(b"\x1b", true), Decoded::NeedMore);
        assert_eq!(one(b"\x1b"), Decoded::Key(Key::plain(Key::ESC), 1));
        assert_eq!(decode_key(b"", true), Decoded::NeedMore);
    }

    /// F1..F4 as SS3 (ESC O P..S) and as CSI, F5..F12 as ESC [ n ~ with
    /// the gaps at 16 and 22; F8 is ESC [ 19 ~.
    #[test]
    fn function_keys() {
        for (i, c) in (b'P'..=b'S').enumerate() {
            let f = Key::f(i as u8 + 1);
            assert_eq!(one(&[0x1b, b'O', c]), Decoded::Key(f, 3));
            assert_eq!(one(&[0x1b, b'[', c]), Decoded::Key(f, 3));
        }
        let table: [(&[u8], u8); 12] = [
            (b"11", 1),
            (b"12", 2),
            (b"13", 3),
            (b"14", 4),
            (b"15", 5),
            (b"17", 6),
            (b"18", 7),
            (b"19", 8),
            (b"20", 9),
            (b"21", 10),
            (b"23", 11),
            (b"24", 12),
        ];
        for (n, f) in table {
            let mut seq = b"\x1b[".to_vec();
            seq.extend_from_slice(n);
            seq.push(b'~');
            assert_eq!(one(&seq), Decoded::Key(Key::f(f), seq.len()), "{seq:?}");
        }
        assert_eq!(one(b"\x1b[19~"), Decoded::Key(key(0, 0x88), 5));
        assert_eq!(Key::f(1).code, 0x81);
        assert_eq!(Key::f(12).code, 0x8c);
        // 16 and 22 are no keys.
        assert_eq!(one(b"\x1b[16~"), Decoded::Unknown(5));
        assert_eq!(one(b"\x1b[22~"), Decoded::Unknown(5));
        // Linux console F1..F5.
        assert_eq!(one(b"\x1b[[A"), Decoded::Key(Key::f(1), 4));
        assert_eq!(one(b"\x1b[[E"), Decoded::Key(Key::f(5), 4));
    }

    /// xterm modifier parameters: 2 Shift, 3 Alt, 5 Ctrl, 8 all.
    #[test]
    fn modified_function_keys() {
        assert_eq!(one(b"\x1b[19;5~"), Decoded::Key(key(CTRL, 0x88), 7));
        assert_eq!(one(b"\x1b[19;2~"), Decoded::Key(key(SHIFT, 0x88), 7));
        assert_eq!(one(b"\x1b[24;3~"), Decoded::Key(key(ALT, 0x8c), 7));
        assert_eq!(
            one(b"\x1b[1;8P"),
            Decoded::Key(key(CTRL | ALT | SHIFT, 0x81), 6)
        );
        assert_eq!(one(b"\x1b[1;5A"), Decoded::Key(key(CTRL, Key::UP), 6));
    }

    /// Cursor and editing keys.
    #[test]
    fn cursor_keys() {
        assert_eq!(one(b"\x1b[A"), Decoded::Key(Key::plain(Key::UP), 3));
        assert_eq!(one(b"\x1bOB"), Decoded::Key(Key::plain(Key::DOWN), 3));
        assert_eq!(one(b"\x1b[H"), Decoded::Key(Key::plain(Key::HOME), 3));
        assert_eq!(one(b"\x1b[3~"), Decoded::Key(Key::plain(Key::DELETE), 4));
        assert_eq!(one(b"\x1b[6~"), Decoded::Key(Key::plain(Key::PAGE_DOWN), 4));
    }

    /// Incomplete sequences wait while bytes may follow; a sequence is
    /// reported with its length so the rest of a burst is decoded next.
    #[test]
    fn partial_and_bursts() {
        for prefix in [
            &b"\x1b[1"[..],
            b"\x1b[19",
            b"\x1b[19;",
            b"\x1b[19;5",
            b"\x1b[[",
        ] {
            assert_eq!(decode_key(prefix, true), Decoded::NeedMore, "{prefix:?}");
            assert!(matches!(one(prefix), Decoded::Unknown(_)), "{prefix:?}");
        }
        let burst = b"\x1b[19~a\x01";
        let Decoded::Key(k, n) = one(burst) else {
            panic!("no key")
        };
        assert_eq!((k, n), (Key::f(8), 5));
        assert_eq!(one(&burst[n..]), Decoded::Key(key(0, b'a'), 1));
        assert_eq!(one(&burst[n + 1..]), Decoded::Key(key(CTRL, b'a'), 1));
    }

    /// Unknown sequences and non-ASCII are skipped with their length; no
    /// input panics or claims more bytes than it has (exhaustive over all
    /// 1- and 2-byte inputs, and 3-byte ones starting with ESC).
    #[test]
    fn unknown_and_every_short_input() {
        assert_eq!(one(b"\x1b[99~"), Decoded::Unknown(5));
        assert_eq!(one(b"\x1b[1;2;3~"), Decoded::Unknown(8));
        assert_eq!(one(b"\x1b[Z"), Decoded::Unknown(3));
        assert_eq!(one("é".as_bytes()), Decoded::Unknown(2));
        assert_eq!(one("€x".as_bytes()), Decoded::Unknown(3));
        assert_eq!(one(b"\xff"), Decoded::Unknown(1));
        let long = [&b"\x1b["[..], &[b'1'; 40]].concat();
        assert!(matches!(decode_key(&long, true), Decoded::Unknown(n) if n <= long.len()));
        let check = |b: &[u8]| {
            for more in [false, true] {
                match decode_key(b, more) {
                    Decoded::Key(_, n) | Decoded::Unknown(n) => {
                        assert!(n >= 1 && n <= b.len(), "{b:?} -> {n}")
                    }
                    Decoded::NeedMore => assert!(more, "{b:?}"),
                }
            }
        };
        for a in 0..=255u8 {
            check(&[a]);
            for b in 0..=255u8 {
                check(&[a, b]);
                check(&[0x1b, a, b]);
                check(&[0x1b, b'[', a, b]);
            }
        }
    }

    /// §4.4 TLV 2: a key matches the hotkey with the same modifiers and key
    /// (upper case = Shift); modifiers-only hotkeys never match.
    #[test]
    fn hotkey_matching() {
        let f8 = Hotkey {
            modifiers: 0,
            key: 0x88,
        };
        assert!(Key::f(8).matches(f8));
        assert!(!Key::f(9).matches(f8));
        assert!(!key(CTRL, 0x88).matches(f8));
        let ctrl_alt_p = Hotkey {
            modifiers: CTRL | ALT,
            key: b'p',
        };
        assert!(key(CTRL | ALT, b'p').matches(ctrl_alt_p));
        let shift_p = Hotkey {
            modifiers: 0,
            key: b'P',
        };
        assert!(key(SHIFT, b'p').matches(shift_p));
        assert!(!key(0, b'p').matches(shift_p));
        let enter = Hotkey {
            modifiers: 0,
            key: Key::ENTER,
        };
        assert!(Key::plain(Key::ENTER).matches(enter));
        let mods_only = Hotkey {
            modifiers: CTRL | ALT,
            key: 0,
        };
        assert!(!key(CTRL | ALT, 0).matches(mods_only));
        assert_eq!(key(CTRL | ALT, 0x88).to_string(), "Ctrl+Alt+F8");
        assert_eq!(key(SHIFT, b'a').to_string(), "Shift+a");
    }

    /// read_key over a real pipe: a sequence written in two parts within
    /// the inter-byte timeout is one key; a lone ESC followed by silence
    /// is Escape; nothing written is a timeout.
    #[test]
    fn read_key_from_a_pipe() {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fresh descriptors we own.
        let (r, mut w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let writer = thread::spawn(move || {
            w.write_all(b"\x1b[1").expect("write");
            thread::sleep(Duration::from_millis(10));
            w.write_all(b"9~").expect("write");
            thread::sleep(Duration::from_millis(200));
            w.write_all(b"\x1b").expect("write");
            thread::sleep(Duration::from_millis(300));
            w.write_all(b"\x1b[99~q").expect("write");
            thread::sleep(Duration::from_millis(300));
            w
        });
        let t = Duration::from_secs(2);
        assert_eq!(read_key_from(r.as_raw_fd(), t), Some(Key::f(8)));
        let start = Instant::now();
        assert_eq!(read_key_from(r.as_raw_fd(), t), Some(Key::plain(Key::ESC)));
        assert!(start.elapsed() < Duration::from_secs(1));
        // The unknown sequence is skipped, the key after it read.
        assert_eq!(read_key_from(r.as_raw_fd(), t), Some(key(0, b'q')));
        let w = writer.join().expect("writer");
        let start = Instant::now();
        assert_eq!(
            read_key_from(r.as_raw_fd(), Duration::from_millis(100)),
            None
        );
        assert!(start.elapsed() >= Duration::from_millis(90));
        drop(w);
        // End of input: None at once.
        assert_eq!(read_key_from(r.as_raw_fd(), t), None);
    }

    /// A real terminal (a pty): raw mode makes an escape sequence without
    /// a newline readable at once, turns off echo and signals, and the
    /// settings are restored on drop. In canonical mode the same bytes are
    /// not readable (no newline yet): read_key times out.
    #[test]
    fn raw_console_on_a_pty() {
        let (mut master, slave) = {
            let (mut m, mut s) = (0, 0);
            // SAFETY: out-parameters for two descriptors; null name,
            // termios and winsize are allowed.
            let r = unsafe {
                libc::openpty(
                    &mut m,
                    &mut s,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null(),
                )
            };
            assert_eq!(r, 0, "openpty: {}", io::Error::last_os_error());
            // SAFETY: fresh descriptors we own.
            unsafe { (File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
        };
        let fd = slave.as_raw_fd();
        let lflag = || {
            // SAFETY: valid storage, a terminal descriptor.
            let mut t: libc::termios = unsafe { mem::zeroed() };
            assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
            t.c_lflag
        };
        let before = lflag();
        assert_ne!(before & libc::ICANON, 0, "a new pty starts canonical");
        master.write_all(b"\x1b[19~").expect("write");
        assert_eq!(read_key_from(fd, Duration::from_millis(200)), None);
        // SAFETY: discard the pending canonical input.
        unsafe { libc::tcflush(fd, libc::TCIFLUSH) };
        {
            let raw = RawConsole::on_fd(fd).expect("raw");
            assert!(raw.is_raw());
            let now = lflag();
            assert_eq!(now & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
            master.write_all(b"\x1b[19~\x03").expect("write");
            assert_eq!(read_key_from(fd, Duration::from_secs(2)), Some(Key::f(8)));
            assert_eq!(
                read_key_from(fd, Duration::from_secs(2)),
                Some(key(CTRL, b'c'))
            );
        }
        assert_eq!(lflag(), before, "settings restored on drop");
        // Not a terminal: nothing to do.
        let dir = tempfile::tempdir().expect("tempdir");
        let f = File::create(dir.path().join("f")).expect("file");
        assert!(!RawConsole::on_fd(f.as_raw_fd()).expect("file").is_raw());
    }

    /// Interface names the kernel would refuse are refused before any
    /// syscall, with InvalidInput.
    #[test]
    fn bad_interface_names() {
        for bad in ["", "a-name-too-long-x", "a\0b", "a/b"] {
            assert_eq!(
                interface_up(bad).expect_err(bad).kind(),
                io::ErrorKind::InvalidInput
            );
            assert_eq!(
                dhcp_socket(bad, 0).expect_err(bad).kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }

    /// An interface that does not exist: ENODEV with the ioctl named.
    #[test]
    fn missing_interface() {
        let e = mac_of("pbnosuch0").expect_err("no such interface");
        assert_eq!(os_error_of(&e), Some(libc::ENODEV));
        assert!(e.to_string().contains("SIOCGIFHWADDR pbnosuch0"), "{e}");
    }

    // ---- network namespaces ----

    /// Two network namespaces joined by a veth pair, deleted on drop.
    struct NetnsPair {
        a: String,
        b: String,
    }

    fn ip(args: &[&str]) -> io::Result<String> {
        let out = Command::new("ip").args(args).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    impl NetnsPair {
        /// `a` holds `pba0` (MAC 02:00:00:00:0a:01), `b` holds `pbb0`;
        /// `None` (the test is skipped) when not root or namespaces cannot
        /// be made here.
        fn new(tag: &str) -> Option<Self> {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                eprintln!("skipped: needs root to create network namespaces");
                return None;
            }
            let pid = std::process::id();
            let pair = NetnsPair {
                a: format!("pbl{pid}{tag}a"),
                b: format!("pbl{pid}{tag}b"),
            };
            let setup = || -> io::Result<()> {
                ip(&["netns", "add", &pair.a])?;
                ip(&["netns", "add", &pair.b])?;
                ip(&[
                    "-n",
                    &pair.a,
                    "link",
                    "add",
                    "pba0",
                    "address",
                    "02:00:00:00:0a:01",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "pbb0",
                    "netns",
                    &pair.b,
                ])?;
                ip(&["-n", &pair.b, "link", "set", "pbb0", "up"])?;
                Ok(())
            };
            if let Err(e) = setup() {
                eprintln!("skipped: cannot create network namespaces here: {e}");
                return None;
            }
            Some(pair)
        }

        /// Runs `f` on a thread that has entered namespace `ns` (setns
        /// changes the calling thread only).
        fn run<T: Send + 'static>(
            ns: &str,
            f: impl FnOnce() -> T + Send + 'static,
        ) -> thread::JoinHandle<T> {
            let path = format!("/var/run/netns/{ns}");
            thread::spawn(move || {
                let file = File::open(&path).expect("open netns");
                // SAFETY: a namespace descriptor, CLONE_NEWNET.
                let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns {path}: {}", io::Error::last_os_error());
                f()
            })
        }
    }

    impl Drop for NetnsPair {
        fn drop(&mut self) {
            let _ = ip(&["netns", "del", &self.a]);
            let _ = ip(&["netns", "del", &self.b]);
        }
    }

    /// netdevice(7) / route(4) ioctls, checked with `ip` from outside:
    /// the MAC read, the interface up, the address and mask set, the
    /// default route added.
    #[test]
    fn netns_interface_ops() {
        let Some(pair) = NetnsPair::new("i") else {
            return;
        };
        let r = NetnsPair::run(&pair.a, || -> io::Result<()> {
            assert_eq!(mac_of("pba0")?, [2, 0, 0, 0, 0x0a, 1]);
            interface_up("pba0")?;
            set_address(
                "pba0",
                Ipv4Addr::new(10, 77, 0, 2),
                Ipv4Addr::new(255, 255, 255, 0),
            )?;
            add_default_route(Ipv4Addr::new(10, 77, 0, 1))?;
            // A gateway on no connected subnet is refused (ENETUNREACH).
            let e = add_default_route(Ipv4Addr::new(10, 99, 0, 1)).expect_err("unreachable gw");
            assert!(os_error_of(&e).is_some(), "{e}");
            assert!(e.to_string().contains("SIOCADDRT"), "{e}");
            Ok(())
        })
        .join()
        .expect("thread");
        r.expect("interface ops");
        let link = ip(&["-n", &pair.a, "-o", "link", "show", "pba0"]).expect("ip link");
        assert!(link.contains(",UP"), "{link}");
        let addr = ip(&["-n", &pair.a, "-o", "-4", "addr", "show", "pba0"]).expect("ip addr");
        assert!(addr.contains("inet 10.77.0.2/24"), "{addr}");
        let route = ip(&["-n", &pair.a, "route", "show", "default"]).expect("ip route");
        assert!(route.contains("default via 10.77.0.1 dev pba0"), "{route}");
    }

    /// RFC 2131 §4.1: from an interface with no address, the DHCP socket
    /// sends to 255.255.255.255:67 (source 0.0.0.0) and receives a
    /// broadcast reply to port 68 from the peer.
    #[test]
    fn netns_dhcp_socket_broadcasts_without_an_address() {
        let Some(pair) = NetnsPair::new("d") else {
            return;
        };
        ip(&["-n", &pair.b, "addr", "add", "10.77.1.1/24", "dev", "pbb0"]).expect("peer addr");
        // The "server" in b: port 67 on pbb0.
        let (ready_tx, ready_rx) = mpsc::channel();
        let server = NetnsPair::run(&pair.b, move || -> io::Result<(SocketAddr, Vec<u8>)> {
            let s = dhcp_socket("pbb0", 67)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            ready_tx.send(()).expect("ready");
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf)?;
            // Answer by broadcast, as a DHCP server answers a client
            // without an address; repeated, the link may still be coming up.
            for _ in 0..20 {
                s.send_to(b"offer", (Ipv4Addr::BROADCAST, 68))?;
                thread::sleep(Duration::from_millis(50));
            }
            Ok((from, buf[..n].to_vec()))
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server ready");
        let client = NetnsPair::run(&pair.a, || -> io::Result<Vec<u8>> {
            interface_up("pba0")?;
            let s = dhcp_socket("pba0", 68)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            let mut buf = [0u8; 64];
            // Bounded: 50 sends, 100 ms apart.
            for _ in 0..50 {
                s.send_to(b"discover", (Ipv4Addr::BROADCAST, 67))?;
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => return Ok(buf[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no broadcast reply",
            ))
        });
        let got = client.join().expect("client thread").expect("client");
        assert_eq!(got, b"offer");
        let (from, req) = server.join().expect("server thread").expect("server");
        assert_eq!(req, b"discover");
        assert_eq!(from, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)));
    }

    // ---- kexec ----

    fn kexec_loaded() -> Option<bool> {
        std::fs::read_to_string("/sys/kernel/kexec_loaded")
            .ok()
            .map(|s| s.trim() == "1")
    }

    /// Missing files are named in the error, before any syscall.
    #[test]
    fn kexec_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = dir.path().join("vmlinuz");
        let e = kexec(&k, &k, "");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("open kernel"), "{e}");
        assert!(e.to_string().contains("vmlinuz"), "{e}");
        let e = kexec_load_only(&k, &k, "a\0b").expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    /// A file that is no kernel is refused by the kernel with a clear error
    /// (ENOEXEC, or EPERM when not permitted here), never loaded.
    #[test]
    fn kexec_refuses_a_non_kernel() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: kexec_file_load needs root");
            return;
        }
        if kexec_loaded() == Some(true) {
            eprintln!("skipped: a kexec image is already loaded on this machine");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let k = dir.path().join("not-a-kernel");
        std::fs::write(&k, vec![0x5a; 64 * 1024]).expect("write");
        let e = kexec_load_only(&k, &k, "console=ttyS0").expect_err("not a kernel");
        let inner = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<KexecError>())
            .expect("a KexecError");
        eprintln!("refused as expected: {e}");
        assert!(inner.step.starts_with("kexec_file_load"), "{e}");
        assert!(
            matches!(
                inner.errno,
                Some(libc::ENOEXEC | libc::EPERM | libc::ENOSYS | libc::EINVAL)
            ),
            "{e}"
        );
        assert!(inner.hint.is_some(), "{e}");
        assert_ne!(kexec_loaded(), Some(true));
    }

    /// A real kernel (tests/firmware/prepare.sh's cache, or
    /// PREBOOT_TEST_KERNEL): loaded and unloaded as root; where the load
    /// is refused (a container, lockdown) the error is a clear KexecError.
    #[test]
    fn kexec_loads_a_real_kernel() {
        let kernel = std::env::var_os("PREBOOT_TEST_KERNEL")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/firmware/cache/vmlinuz")
            });
        if !kernel.is_file() {
            eprintln!(
                "skipped: no kernel at {} (run tests/firmware/prepare.sh)",
                kernel.display()
            );
            return;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: kexec_file_load needs root");
            return;
        }
        if kexec_loaded() == Some(true) {
            eprintln!("skipped: a kexec image is already loaded on this machine");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let initrd = dir.path().join("initrd");
        std::fs::write(&initrd, b"070701").expect("write");
        match kexec_load_only(&kernel, &initrd, "console=ttyS0 preboot.task=1") {
            Ok(()) => {
                let loaded = kexec_loaded();
                kexec_unload().expect("unload");
                assert_eq!(
                    loaded,
                    Some(true),
                    "loaded but /sys/kernel/kexec_loaded says no"
                );
                assert_eq!(kexec_loaded(), Some(false));
                eprintln!("loaded and unloaded {}", kernel.display());
            }
            Err(e) => {
                let inner = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<KexecError>())
                    .expect("a KexecError");
                eprintln!("load refused here: {e}");
                assert!(inner.errno.is_some() && inner.hint.is_some(), "{e}");
                assert!(
                    matches!(
                        inner.errno,
                        Some(libc::EPERM | libc::ENOSYS | libc::EKEYREJECTED | libc::ENOEXEC)
                    ),
                    "unexpected refusal: {e}"
                );
            }
        }
    }
}
