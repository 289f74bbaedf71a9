//! The real `examples/preboot-server` program: `--help` documents every
//! flag, `--check` and bad files exit 2 naming file, line and field, and
//! with no arguments it serves the loopback demo — the printed `curl`
//! command fetches exactly the file in the root, a PXE client (the
//! library's DHCP client driver) is booted by it beside a full DHCP server,
//! and SIGTERM stops it with exit 0.
//!
//! The binary is built with `cargo build --example preboot-server` (same
//! profile and features as this test) when the test starts. The demo test
//! needs `curl` with TFTP: without it the test is listed as ignored (build.rs
//! decides); with `PREBOOT_CI=1` it fails instead.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use preboot::dhcp::client::ClientConfig;
use preboot::dhcp::config::Pool;
use preboot::driver::boot_server::demo::{DEMO_FILES, demo_file};
use preboot::driver::dhcp::{DhcpClientConfig, DhcpServer, DhcpServerConfig, run_client};
use sha2::{Digest, Sha256};

mod boot_server_support;
use boot_server_support::{Server, build_example, example, terminate, unavailable};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn run(args: &[&str]) -> Output {
    Command::new(example())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `--help` names every flag the program accepts (clap lists each one it
/// parses), and the README's flag table lists every one of them.
#[test]
fn help_documents_every_flag() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    // Every long flag --help names.
    let mut flags: Vec<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() > 2 && w.starts_with("--") && w.as_bytes()[2].is_ascii_lowercase())
        .collect();
    flags.sort_unstable();
    flags.dedup();
    for f in [
        "--config",
        "--check",
        "--log-level",
        "--log-format",
        "--demo-dir",
        "--print-default-config",
        "--help",
        "--version",
    ] {
        assert!(flags.contains(&f), "--help lacks {f}");
    }
    for f in &flags {
        assert!(readme.contains(&format!("`{f}")), "README lacks {f}");
    }
    for short in ["-c, --config", "-h, --help", "-V, --version"] {
        assert!(help.contains(short), "--help lacks {short}");
    }
    // -h is the summary of the same flags.
    let summary = run(&["-h"]);
    assert!(summary.status.success());
    let summary = String::from_utf8(summary.stdout).unwrap();
    for f in &flags {
        assert!(summary.contains(f), "-h lacks {f}");
    }
    let printed = run(&["--print-default-config"]);
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap(),
        preboot::driver::boot_server::demo::DEFAULT_CONFIG
    );
    let version = run(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let bad = run(&["--frobnicate"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--frobnicate"));
}

/// `--check`: 0 for a good file, 2 with file:line:field for a bad one; a
/// missing TFTP root is named (a root of the test's own, never the host's
/// /srv/tftp); a missing file says only that it cannot be read.
#[test]
fn check_flag_validates_and_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tftp")).unwrap();
    std::fs::write(dir.path().join("tftp/pxelinux.0"), b"x").unwrap();
    let good = dir.path().join("good.toml");
    // Port 67: --check must not try to bind it (this test runs unprivileged
    // too).
    std::fs::write(
        &good,
        "[server]\nserver_ip = \"10.1.2.3\"\n[boot]\nbios = \"pxelinux.0\"\n[tftp]\nroot = \"tftp\"\n",
    )
    .unwrap();
    let out = run(&["--config", good.to_str().unwrap(), "--check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nserver_ip = \"10.1.2.3\"\n[boot]\nbios = \"pxelinux.0\"\nuefi_x64 = \"nope.efi\"\n[tftp]\nroot = \"tftp\"\n",
    )
    .unwrap();
    let out = run(&["--check", &format!("--config={}", bad.display())]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:5:12: boot.uefi_x64:", bad.display())),
        "{err}"
    );
    assert!(err.contains("nope.efi"), "{err}");

    // Without --check the same bad file is refused before anything binds:
    // with the configured DHCP port already taken by this test, a server
    // that bound first would fail with exit 1 ("in use"), not 2.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let bad_bind = dir.path().join("bad-bind.toml");
    std::fs::write(
        &bad_bind,
        format!(
            "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\n[ports]\ndhcp = {port}\n[boot]\nbios = \"pxelinux.0\"\nuefi_x64 = \"nope.efi\"\n[tftp]\nroot = \"tftp\"\n"
        ),
    )
    .unwrap();
    let out = run(&["--config", bad_bind.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:8:12: boot.uefi_x64:", bad_bind.display())),
        "{err}"
    );
    drop(held);

    // The shipped example, copied with its TFTP root pointed at a directory
    // of this test's own that does not exist (whatever the host has in
    // /srv/tftp): the check names the root.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/preboot.toml"),
    )
    .unwrap();
    assert!(example.contains("root = \"/srv/tftp\""));
    let missing_root = dir.path().join("no-such-root");
    let copy = dir.path().join("preboot.toml");
    std::fs::write(
        &copy,
        example.replace(
            "root = \"/srv/tftp\"",
            &format!("root = \"{}\"", missing_root.display()),
        ),
    )
    .unwrap();
    let out = run(&["--config", copy.to_str().unwrap(), "--check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:{}:",
            copy.display(),
            line_of(&example, "root = \"/srv/tftp\"")
        )) && err.contains(&format!(": tftp.root: {}", missing_root.display())),
        "{err}"
    );

    // A missing configuration file: what and why, nothing else.
    let out = run(&["--config", "/nonexistent.toml", "--check"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "preboot-server: cannot read /nonexistent.toml: No such file or directory"
    );
}

/// 1-based line of the first line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// A tree holding every boot file examples/preboot.toml names.
fn example_tree(root: &Path) {
    for (name, size) in DEMO_FILES {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, demo_file(name, size)).unwrap();
    }
    std::fs::write(root.join("boot.ipxe"), "#!ipxe\n").unwrap();
}

/// The shipped examples/preboot.toml, once its TFTP root is set, passes
/// `--check` in its own (proxy) mode with no warning at all.
#[test]
fn shipped_example_checks_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    example_tree(&dir.path().join("tftp"));
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/preboot.toml"),
    )
    .unwrap();
    let copy = dir.path().join("preboot.toml");
    std::fs::write(
        &copy,
        example.replace("root = \"/srv/tftp\"", "root = \"tftp\""),
    )
    .unwrap();
    let out = run(&["--config", copy.to_str().unwrap(), "--check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "no warning expected: {err}");
}

/// Relative paths resolve against the configuration file's directory
/// however the file is named: `preboot.toml` (a bare name, whose parent is
/// the empty path), `./preboot.toml`, `../conf/preboot.toml` and an
/// absolute path all check the same tree.
#[test]
fn config_named_any_way_resolves_paths_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    example_tree(&conf.join("tftp"));
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/preboot.toml"),
    )
    .unwrap();
    // Full mode, so that the lease file's directory is checked too.
    let text = shipped
        .replace("root = \"/srv/tftp\"", "root = \"tftp\"")
        .replacen("mode = \"proxy\"", "mode = \"full\"", 1)
        .replace("# [[dhcp.pool]]", "[[dhcp.pool]]")
        .replace("# subnet = ", "subnet = ")
        .replace("# start = ", "start = ")
        .replace("# end = ", "end = ");
    std::fs::write(conf.join("preboot.toml"), text).unwrap();
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let absolute = conf.join("preboot.toml");
    for (cwd, name) in [
        (conf.as_path(), "preboot.toml"),
        (conf.as_path(), "./preboot.toml"),
        (other.as_path(), "../conf/preboot.toml"),
        (other.as_path(), absolute.to_str().unwrap()),
    ] {
        let out = Command::new(example())
            .args(["--config", name, "--check"])
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "--config {name}: {err}");
        assert!(err.is_empty(), "--config {name}: {err}");
    }
}

/// A UDP fan-out standing in for the broadcast domain loopback lacks: what
/// the client broadcasts reaches both the proxy and the DHCP server.
fn fan_out(to: Vec<SocketAddrV4>, stop: Arc<AtomicBool>) -> (u16, std::thread::JoinHandle<()>) {
    let sock = UdpSocket::bind((LO, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                for t in &to {
                    let _ = sock.send_to(&buf[..n], t);
                }
            }
        }
    });
    (port, h)
}

/// The demo, end to end, as a user meets it.
#[test]
#[cfg_attr(
    preboot_skip_curl_tftp,
    ignore = "needs curl with TFTP (Debian package curl)"
)]
fn demo_serves_a_pxe_client_and_stops_on_sigterm() {
    let have_curl = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("tftp"));
    if !have_curl {
        unavailable("curl with TFTP support is missing");
    }
    let parent = tempfile::tempdir().unwrap();
    // Started as root, the demo gives up root before it creates its tree
    // (as `nobody`): the parent must let any user create in it, as /tmp does.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    }
    let child = Command::new(example())
        .args(["--demo-dir", parent.path().to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);

    // Read the banner up to the fetch command.
    let stdout = server.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("banner incomplete; got {banner:?}"));
        banner.push(line.clone());
        if line.trim().starts_with("stop:") {
            break;
        }
    }
    let command = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("try:"))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|| panic!("no fetch command printed; got {banner:?}"));
    let root = banner
        .iter()
        .find_map(|l| l.split(", root ").nth(1))
        .map(PathBuf::from)
        .expect("the banner names the TFTP root");
    assert!(root.starts_with(parent.path()), "{root:?}");
    assert!(
        banner
            .iter()
            .any(|l| l.contains("dhcp:") && l.contains("127.0.0.1:6767")),
        "{banner:?}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.contains("boot server:") && l.contains("127.0.0.1:14011")),
        "{banner:?}"
    );

    // 1. The pasted command prints the SHA-256 of exactly the file served.
    assert!(
        command.starts_with("curl -s tftp://127.0.0.1:6969/"),
        "{command}"
    );
    let out = Command::new("sh").args(["-c", &command]).output().unwrap();
    assert!(out.status.success(), "{command}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let file = command
        .split("6969/")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap();
    let (_, size) = DEMO_FILES.iter().find(|(n, _)| *n == file).unwrap();
    let want = hex(&Sha256::digest(demo_file(file, *size)));
    assert_eq!(
        hex(&Sha256::digest(std::fs::read(root.join(file)).unwrap())),
        want
    );
    assert!(printed.starts_with(&want), "{printed} vs {want}");
    assert!(
        banner
            .iter()
            .any(|l| l.trim() == format!("expect:      {want}")),
        "{banner:?}"
    );

    // A name not in the tree is refused and logged at info (below); so is
    // a datagram too short to be DHCP.
    let missing = Command::new("curl")
        .args(["-s", "tftp://127.0.0.1:6969/no-such-file"])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "no-such-file was served");
    UdpSocket::bind((LO, 0))
        .unwrap()
        .send_to(&[1, 1, 6, 0, 0xde, 0xad], (LO, 6767))
        .unwrap();

    // 2. A PXE client (UEFI x64) boots from it: a full DHCP server gives the
    // address, the demo's proxy the boot file (DISCOVER → proxy OFFER →
    // 4011 REQUEST → ACK), then the file comes by TFTP.
    let mut full = DhcpServerConfig::full(
        LO,
        Pool {
            subnet: Ipv4Addr::new(127, 0, 0, 0),
            prefix_len: 8,
            start: Ipv4Addr::new(127, 77, 0, 10),
            end: Ipv4Addr::new(127, 77, 0, 20),
            router: None,
            dns: Default::default(),
            lease_time: Duration::from_secs(600),
        },
    );
    full.dhcp_addr = SocketAddrV4::new(LO, 0);
    full.boot_addr = None;
    full.broadcast_address = LO;
    full.client_port = 6868;
    let full = DhcpServer::bind(full).unwrap();
    let full_port = full.dhcp_local_addr().unwrap().port();
    let full_stop = full.stop_handle();
    let full_thread = std::thread::spawn(move || full.run());
    let stop = Arc::new(AtomicBool::new(false));
    let (fan_port, fan) = fan_out(
        vec![
            SocketAddrV4::new(LO, 6767),
            SocketAddrV4::new(LO, full_port),
        ],
        stop.clone(),
    );
    let mut cc = DhcpClientConfig::new(
        ClientConfig::new([0x52, 0x54, 0, 0xab, 0xcd, 0x01], 7, [7; 16]),
        0x00c0_ffee,
    );
    cc.bind = SocketAddrV4::new(LO, 6868);
    cc.server_port = fan_port;
    cc.boot_port = 14011;
    cc.broadcast_address = LO;
    let info = run_client(cc);
    stop.store(true, Ordering::Relaxed);
    full_stop.stop();
    fan.join().unwrap();
    full_thread.join().unwrap().unwrap();
    let info = info.expect("the PXE client boots");
    assert_eq!(
        info.boot_file.as_str(),
        "efi64/bootx64.efi",
        "UEFI x64 file"
    );
    assert_eq!(info.boot_server, Some(LO));
    assert_eq!(info.tftp_server, LO);
    assert_eq!(info.address, Ipv4Addr::new(127, 77, 0, 10));
    let fetched = Command::new("curl")
        .args([
            "-s",
            &format!("tftp://{}:6969/{}", info.tftp_server, info.boot_file),
        ])
        .output()
        .unwrap();
    let (_, uefi_size) = DEMO_FILES
        .iter()
        .find(|(n, _)| *n == info.boot_file.as_str())
        .unwrap();
    assert_eq!(
        fetched.stdout,
        demo_file(info.boot_file.as_str(), *uefi_size)
    );

    // 3. SIGTERM: clean exit 0, "shutting down", the demo tree removed.
    let status = terminate(&mut server);
    let mut log = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    // The client's steps, in order, with its MAC and architecture, and the
    // port each socket is really bound to (the demo's, not 67 and 4011).
    let mac = "52:54:00:ab:cd:01";
    let mut at = 0;
    for step in [
        "step=\"discover\" port=6767",
        "step=\"proxy-offer\"",
        "step=\"request\" port=14011",
        "step=\"boot-ack\"",
    ] {
        let i = log[at..]
            .lines()
            .position(|l| l.contains(step) && l.contains(mac) && l.contains("arch=uefi-x64"))
            .unwrap_or_else(|| panic!("no {step} line for {mac} after byte {at}:\n{log}"));
        at += log[at..]
            .lines()
            .take(i + 1)
            .map(|l| l.len() + 1)
            .sum::<usize>();
    }
    // One form for the architecture (no Rust Option or variant names), no
    // colour codes in a log that is not a terminal.
    for bad in ["Some(", "UefiX64", "\x1b["] {
        assert!(!log.contains(bad), "{bad:?} in the log:\n{log}");
    }
    // The refused name, at the default level, with the peer.
    assert!(
        log.lines().any(|l| l.contains(" INFO ")
            && l.contains("tftp: file not found")
            && l.contains("peer=127.0.0.1:")
            && l.contains("file=\"no-such-file\"")),
        "no info line for the missing file:\n{log}"
    );
    // The malformed datagram names no client: mac=unknown, never empty.
    assert!(
        log.lines()
            .any(|l| l.contains("step=\"ignored\"") && l.contains("mac=unknown")),
        "{log}"
    );
    assert!(!log.contains("mac= "), "{log}");
    let (_, uefi_size) = DEMO_FILES
        .iter()
        .find(|(n, _)| *n == info.boot_file.as_str())
        .unwrap();
    for (file, size) in [(file, size), (info.boot_file.as_str(), uefi_size)] {
        assert!(
            log.lines().any(|l| l.contains("step=\"transfer-done\"")
                && l.contains(&format!("file=\"{file}\""))
                && l.contains(&format!("bytes={size}"))),
            "no transfer-done for {file}:\n{log}"
        );
    }
    // The TFTP lines of the booted client name it as its DHCP lines did.
    assert!(
        log.lines().any(|l| l.contains("step=\"transfer-done\"")
            && l.contains(&format!("file=\"{}\"", info.boot_file))
            && l.contains(&format!("mac={mac}"))
            && l.contains("arch=uefi-x64")),
        "{log}"
    );
    assert!(log.contains("shutting down"), "{log}");
    assert!(!root.exists(), "demo tree removed at exit");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A proxy-mode configuration on loopback with ports 0 (runs beside the
/// demo test), in `dir`.
fn loopback_config(dir: &Path) -> PathBuf {
    std::fs::create_dir(dir.join("tftp")).unwrap();
    std::fs::write(dir.join("tftp/pxelinux.0"), b"x").unwrap();
    let config = dir.join("p.toml");
    // Proxy mode needs a boot server port (0 would mean none): one that was
    // free a moment ago.
    let boot_port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &config,
        format!(
            "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\n\
             [ports]\ndhcp = 0\nboot = {boot_port}\ntftp = 0\nclient = 6868\n\
             [boot]\nbios = \"pxelinux.0\"\n[tftp]\nroot = \"tftp\"\n"
        ),
    )
    .unwrap();
    config
}

/// Start preboot-server with `args`, wait for its banner, send SIGINT; its
/// exit status and stderr.
fn run_until_sigint(args: &[&str]) -> (std::process::ExitStatus, String) {
    let child = Command::new(example())
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let mut stdout = BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("stop:") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "banner ended early"
        );
    }
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_bounded(&mut server.0)
}

/// `--log-format json`: every line on stderr is one JSON object with a
/// level and a message (for log shippers); the default text format into a
/// pipe has no colour codes; another value is a usage error.
#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(dir.path());
    let config = config.to_str().unwrap();
    let (status, err) = run_until_sigint(&["--config", config, "--log-format", "json"]);
    assert_eq!(status.code(), Some(0), "{err}");
    let mut messages = Vec::new();
    for line in err.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{err}"));
        assert!(v["level"].is_string(), "{line}");
        let m = v["fields"]["message"].as_str();
        messages.push(
            m.unwrap_or_else(|| panic!("no message: {line}"))
                .to_string(),
        );
    }
    assert!(
        messages.iter().any(|m| m.contains("shutting down")),
        "{messages:?}"
    );

    let (status, err) = run_until_sigint(&["--config", config]);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("shutting down"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "colour codes in a piped log: {err:?}"
    );
    assert!(serde_json::from_str::<serde_json::Value>(err.lines().next().unwrap_or("")).is_err());

    let out = run(&["--config", config, "--log-format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'xml'")
            && err.contains("--log-format")
            && err.contains("[possible values: text, json]"),
        "{err}"
    );
}

/// The lines a child writes on stderr, as they come.
fn lines_of(stderr: std::process::ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// examples/tftp-server shares the logging set-up: JSON lines on request,
/// and a refused read request (RFC 1350 §7, error 1 "file not found") is
/// logged at info with the peer and the file name; text into a pipe has
/// no colour codes.
#[test]
fn tftp_server_logs_refused_names_at_info() {
    let root = tempfile::tempdir().unwrap();
    for format in ["json", "text"] {
        let child = Command::new(build_example("tftp-server"))
            .arg("--root")
            .arg(root.path())
            .args(["--bind", "127.0.0.1", "--port", "0", "--log-format", format])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = Server(child);
        let lines = lines_of(server.0.stderr.take().unwrap());
        let next = || {
            lines
                .recv_timeout(Duration::from_secs(20))
                .expect("a log line within 20 s")
        };
        let first = next();
        assert!(!first.contains('\x1b'), "{first:?}");
        let addr: SocketAddrV4 = if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&first).unwrap();
            assert_eq!(v["fields"]["message"], "tftp-server: serving", "{first}");
            v["fields"]["addr"].as_str().unwrap().parse().unwrap()
        } else {
            first
                .rsplit("addr=")
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let client = UdpSocket::bind((LO, 0)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
            .send_to(b"\x00\x01no-such-file\x00octet\x00", addr)
            .unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(buf.get(..4), Some(&[0, 5, 0, 1][..]), "{:?}", &buf[..n]);
        let peer = client.local_addr().unwrap().to_string();
        let line = next();
        assert!(!line.contains('\x1b'), "{line:?}");
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["level"], "INFO", "{line}");
            assert_eq!(v["fields"]["message"], "tftp: file not found", "{line}");
            assert_eq!(v["fields"]["file"], "no-such-file", "{line}");
            assert_eq!(v["fields"]["peer"], peer.as_str(), "{line}");
            // A flood of refused names: at most 20 lines a second, then one
            // line with how many were not logged (bounded log, bounded
            // state). The first refusal above counts in this second too.
            let names = |n: usize| -> Vec<serde_json::Value> {
                (0..n)
                    .map(|_| serde_json::from_str(&next()).unwrap())
                    .collect()
            };
            for i in 0..49 {
                let rrq = format!("\x00\x01flood-{i}\x00octet\x00");
                client.send_to(rrq.as_bytes(), addr).unwrap();
                client.recv_from(&mut buf).unwrap();
            }
            let logged = names(19);
            assert!(
                logged
                    .iter()
                    .all(|v| v["fields"]["message"] == "tftp: file not found"),
                "{logged:?}"
            );
            std::thread::sleep(Duration::from_millis(1100));
            client.send_to(b"\x00\x01after\x00octet\x00", addr).unwrap();
            client.recv_from(&mut buf).unwrap();
            let after = names(2);
            assert_eq!(after[0]["fields"]["suppressed"], 30, "{after:?}");
            assert_eq!(after[1]["fields"]["file"], "after", "{after:?}");
        } else {
            assert!(
                line.contains(" INFO ")
                    && line.contains("tftp: file not found")
                    && line.contains(&format!("peer={peer}"))
                    && line.contains("file=\"no-such-file\""),
                "{line}"
            );
        }
    }
}

/// SIGINT (Ctrl-C) stops it as cleanly as SIGTERM; `--log-level warn`
/// hides the info lines. Ports 0: runs beside the demo test.
#[test]
fn sigint_stops_cleanly_at_any_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(dir.path());
    for (level, info_shown) in [("info", true), ("warn", false)] {
        let out = run_until_sigint(&["--config", config.to_str().unwrap(), "--log-level", level]);
        assert_eq!(out.0.code(), Some(0), "{}", out.1);
        assert_eq!(out.1.contains("shutting down"), info_shown, "{}", out.1);
    }
}

/// Exit status and stderr, waiting at most 20 s.
fn wait_bounded(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err)
}
