//! The TFTP root and the process's privileges: what anyone on the boot
//! network can read through the server.
//!
//! - `tftp.root = "/"` (or a system directory) is refused, at `--check` and
//!   at start, even with `boot.check_files = false`, unless
//!   `tftp.allow_system_root = true`; a root that is a symbolic link and a
//!   boot file with a second hard link are refused.
//! - Started as root, the server switches to `server.user` (default
//!   `nobody`) once its ports are bound, so a file only root may read is not
//!   served (the attack: `curl tftp://…/etc/shadow` returned the file while
//!   the server ran as root with root `/`).

mod boot_server_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use boot_server_support::{Server, example, unavailable};

fn run(args: &[&str]) -> Output {
    Command::new(example())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn check(dir: &Path, toml: &str) -> Output {
    let cfg = dir.join("preboot.toml");
    std::fs::write(&cfg, toml).unwrap();
    run(&["--config", cfg.to_str().unwrap(), "--check"])
}

fn config(root: &str, extra_tftp: &str, extra_boot: &str) -> String {
    format!(
        "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\n\
         [boot]\nbios = \"pxelinux.0\"\n{extra_boot}\n[tftp]\nroot = \"{root}\"\n{extra_tftp}\n"
    )
}

#[test]
fn system_directories_are_refused_as_tftp_root() {
    let dir = tempfile::tempdir().unwrap();
    for (root, why) in [
        ("/", "is the whole file system"),
        ("/etc", "is a system directory"),
        ("/root", "is a system directory"),
        ("/etc/ssh", "is inside a system directory"),
    ] {
        // check_files = false silences the boot file checks, not these.
        let out = check(dir.path(), &config(root, "", "check_files = false"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{root}: {err}");
        assert!(err.contains(": tftp.root: "), "{err}");
        assert!(err.contains(why), "{root}: {err}");
        assert!(err.contains("tftp.allow_system_root"), "{err}");
    }
    // The explicit opt-in is honoured.
    let out = check(
        dir.path(),
        &config("/", "allow_system_root = true", "check_files = false"),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An ordinary directory of boot files is fine.
    std::fs::create_dir(dir.path().join("tftp")).unwrap();
    std::fs::write(dir.path().join("tftp/pxelinux.0"), b"x").unwrap();
    let out = check(dir.path(), &config("tftp", "", ""));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn symlinked_root_and_hard_linked_boot_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("pxelinux.0"), b"x").unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join("tftp")).unwrap();
    let out = check(dir.path(), &config("tftp", "", "check_files = false"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is a symbolic link to"), "{err}");
    assert!(err.contains(real.to_str().unwrap()), "{err}");

    // A boot file with a second name elsewhere.
    std::fs::hard_link(real.join("pxelinux.0"), dir.path().join("elsewhere")).unwrap();
    let out = check(dir.path(), &config("real", "", ""));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(": boot.bios: "), "{err}");
    assert!(err.contains("has 2 hard links"), "{err}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn have_curl_tftp() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("tftp"))
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real user ID of a running process (`/proc/PID/status`).
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts the server on `toml` and waits (bounded) for its banner.
fn start(dir: &Path, toml: &str) -> Server {
    let cfg = dir.join("preboot.toml");
    std::fs::write(&cfg, toml).unwrap();
    let child = Command::new(example())
        .args(["--config", cfg.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let out = server.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("stop:") => return server,
            Ok(_) => {}
            Err(e) => panic!(
                "no banner from the server ({e}); exit status {:?}",
                server.0.try_wait()
            ),
        }
    }
}

fn fetch(port: u16, name: &str) -> Option<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!("tftp://127.0.0.1:{port}/{name}"))
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// A directory tree the unprivileged account can read (tempdirs are 0700).
fn world_readable(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
#[cfg_attr(preboot_skip_root_curl, ignore = "needs root and curl with TFTP")]
fn started_as_root_it_serves_as_nobody() {
    if !is_root() {
        unavailable("not root: the switch from root cannot be tested");
    }
    if !have_curl_tftp() {
        unavailable("curl with TFTP support is missing");
    }
    let dir = tempfile::tempdir().unwrap();
    world_readable(dir.path());
    let root = dir.path().join("tftp");
    std::fs::create_dir(&root).unwrap();
    world_readable(&root);
    std::fs::write(root.join("pxelinux.0"), b"public boot file").unwrap();
    // A file only root may read, as /etc/shadow is.
    std::fs::write(root.join("secret"), b"root only").unwrap();
    std::fs::set_permissions(root.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let (dhcp, boot, tftp) = (free_port(), free_port(), free_port());
    let toml = format!(
        "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\n\
         [ports]\ndhcp = {dhcp}\nboot = {boot}\ntftp = {tftp}\n\
         [boot]\nbios = \"pxelinux.0\"\n[tftp]\nroot = \"tftp\"\n"
    );
    let server = start(dir.path(), &toml);
    assert_eq!(uid_of(server.0.id()), Some(65534), "not running as nobody");
    assert_eq!(
        fetch(tftp, "pxelinux.0").as_deref(),
        Some(&b"public boot file"[..])
    );
    assert_eq!(fetch(tftp, "secret"), None, "a root-only file was served");
    drop(server);

    // server.user = "root" keeps root, on purpose.
    let toml = toml.replace(
        "listen = \"127.0.0.1\"\n",
        "listen = \"127.0.0.1\"\nuser = \"root\"\n",
    );
    let server = start(dir.path(), &toml);
    assert_eq!(uid_of(server.0.id()), Some(0));
    drop(server);
}

#[test]
#[cfg_attr(preboot_skip_root, ignore = "needs root")]
fn a_root_the_unprivileged_user_cannot_read_is_an_error_at_start() {
    if !is_root() {
        unavailable("not root: the switch from root cannot be tested");
    }
    let dir = tempfile::tempdir().unwrap();
    // Only root may enter: the unprivileged account cannot reach the root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = dir.path().join("tftp");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("pxelinux.0"), b"x").unwrap();
    let cfg = dir.path().join("preboot.toml");
    let (dhcp, boot, tftp) = (free_port(), free_port(), free_port());
    std::fs::write(
        &cfg,
        format!(
            "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\n\
             [ports]\ndhcp = {dhcp}\nboot = {boot}\ntftp = {tftp}\n\
             [boot]\nbios = \"pxelinux.0\"\n[tftp]\nroot = \"tftp\"\n"
        ),
    )
    .unwrap();
    // It must exit by itself: bounded wait, then the guard kills it.
    let child = Command::new(example())
        .args(["--config", cfg.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("tftp.root") && err.contains("cannot be read as user nobody"),
        "{err}"
    );
}
