//! The real `examples/preboot-server` program serving PXE MTFTP (issue
//! 16): started with a configuration that has `[mtftp]`, inside a network
//! namespace this test creates (multicast never on the host's
//! interfaces), it serves a 1 MiB boot file by multicast to a client
//! (`driver::mtftp::fetch`, PXE 2.1 MTFTP; notes §2.5), sha256 equal, and
//! logs what the operator sees: the file served on its group, the stream
//! started (master) and completed (bytes). A file added to `[mtftp]` and
//! `SIGHUP` (no transaction server needed) is served the same way; SIGTERM
//! then stops it with exit 0.
//!
//! The binary is built with `cargo build --example preboot-server` (same
//! profile and features as this test) before the namespace is entered.
//! Needs root and `ip`; without them it says so and passes, unless
//! `PREBOOT_CI=1`.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use preboot::driver::mtftp::FetchOutcome;
use preboot::mtftp::Channel;
use sha2::{Digest, Sha256};

mod boot_server_support;
use boot_server_support::{Server, example, terminate};
#[path = "support/mtftp_fetch.rs"]
mod mtftp_fetch;
use mtftp_fetch::fetch_loopback;
#[path = "support/netns.rs"]
mod netns;
use netns::run_child_in_namespace;

const CHILD_ENV: &str = "PREBOOT_MTFTP_PROCESS_CHILD";
const EXAMPLE_ENV: &str = "PREBOOT_MTFTP_PROCESS_EXAMPLE";

#[test]
fn preboot_server_serves_mtftp_in_a_namespace() {
    if !nix::unistd::Uid::effective().is_root() {
        // Skipped (and said why) there; the example is built only when
        // it can run.
        run_child_in_namespace("pbmtpr", "preboot_server_mtftp_netns_child", &[], "");
        return;
    }
    let bin = example();
    run_child_in_namespace(
        "pbmtpr",
        "preboot_server_mtftp_netns_child",
        &[(CHILD_ENV, "1".as_ref()), (EXAMPLE_ENV, bin.as_ref())],
        "PREBOOT-SERVER MTFTP OK",
    );
}

/// The configuration: proxy mode on 127.0.0.1 inside the namespace,
/// standard ports, root kept (the test's temporary tree is root's), and
/// `[mtftp]` with `files` (file, group, client port).
fn config_text(files: &[(&str, &str, u16)]) -> String {
    let mut t = "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\nuser = \"root\"\n\
                 [ports]\ndhcp = 67\nboot = 4011\ntftp = 69\nclient = 6868\n\
                 [boot]\nbios = \"bios/pxelinux.0\"\n[tftp]\nroot = \"tftp\"\nloops = 1\n\
                 [mtftp]\nserver_port = 1759\nlisten_secs = 1\ndelay_secs = 1\ntimeout_ms = 300\n"
        .to_string();
    for (f, g, p) in files {
        t.push_str(&format!(
            "[[mtftp.file]]\nfile = \"{f}\"\ngroup = \"{g}\"\nclient_port = {p}\n"
        ));
    }
    t
}

/// Fetch `file` by MTFTP from the server's SPORT on `group`, from client
/// address 127.0.0.`host`; the bytes.
fn mtftp_get(group: &str, host: u8, file: &str) -> Vec<u8> {
    let ch = Channel {
        group: group.parse().unwrap(),
        server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1759),
        listen: Duration::from_secs(1),
        delay: Duration::from_secs(1),
    };
    match fetch_loopback(ch, host, file) {
        Ok((FetchOutcome::Completed { master, .. }, data)) => {
            assert!(master, "{file}: the only client opens and is master");
            data
        }
        other => panic!("{file}: {other:?}"),
    }
}

/// The next line from `log` containing every one of `needles` (at most
/// 20 s); every line read is kept in `seen`.
fn wait_log(log: &mpsc::Receiver<String>, seen: &mut Vec<String>, needles: &[&str]) -> String {
    let start = std::time::Instant::now();
    loop {
        let left = Duration::from_secs(20).saturating_sub(start.elapsed());
        match log.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if needles.iter().all(|n| line.contains(n)) {
                    return line;
                }
            }
            Err(_) => panic!(
                "no log line with {needles:?} in 20 s; log so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[test]
fn preboot_server_mtftp_netns_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let bin = std::env::var_os(EXAMPLE_ENV).expect("the example's path");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tftp");
    std::fs::create_dir_all(root.join("bios")).unwrap();
    std::fs::create_dir_all(root.join("images")).unwrap();
    let boot: Vec<u8> = (0..(1u32 << 20) + 5)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let added: Vec<u8> = (0..77_777u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(root.join("bios/pxelinux.0"), &boot).unwrap();
    std::fs::write(root.join("images/added.bin"), &added).unwrap();
    let path = dir.path().join("preboot.toml");
    std::fs::write(
        &path,
        config_text(&[("bios/pxelinux.0", "239.255.1.1", 3001)]),
    )
    .unwrap();

    let child = Command::new(&bin)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let mut banner = Vec::new();
    let mut out = BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("stop:") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "banner ended early: {banner:?}"
        );
        banner.push(line.trim_end().to_string());
    }
    eprintln!("{}", banner.join("\n"));
    assert!(
        banner
            .iter()
            .any(|l| l.contains("mtftp:") && l.contains("127.0.0.1:1759")),
        "the banner names the MTFTP port: {banner:?}"
    );
    assert!(
        banner
            .iter()
            .any(|l| l.contains("bios/pxelinux.0") && l.contains("239.255.1.1:3001")),
        "the banner names the file's group: {banner:?}"
    );
    let (tx, log) = mpsc::channel();
    let err = server.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    wait_log(
        &log,
        &mut seen,
        &["mtftp: serving by multicast", "bios/pxelinux.0"],
    );
    wait_log(&log, &mut seen, &["boot server running"]);

    let got = mtftp_get("239.255.1.1:3001", 20, "bios/pxelinux.0");
    assert_eq!(Sha256::digest(&got), Sha256::digest(&boot), "sha256");
    let started = wait_log(
        &log,
        &mut seen,
        &["mtftp: stream started", "bios/pxelinux.0"],
    );
    assert!(
        started.contains("127.0.0.20:3001") && started.contains("239.255.1.1:3001"),
        "the master and the group: {started}"
    );
    let completed = wait_log(
        &log,
        &mut seen,
        &["mtftp: stream completed", "bios/pxelinux.0"],
    );
    assert!(
        completed.contains(&format!("bytes={}", boot.len())),
        "{completed}"
    );

    // A file added by SIGHUP (no [transaction]: [mtftp] alone reloads).
    std::fs::write(
        &path,
        config_text(&[
            ("bios/pxelinux.0", "239.255.1.1", 3001),
            ("images/added.bin", "239.255.1.2", 3002),
        ]),
    )
    .unwrap();
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .is_ok_and(|s| s.success())
    );
    wait_log(&log, &mut seen, &["reload: MTFTP table put in place"]);
    let got = mtftp_get("239.255.1.2:3002", 21, "images/added.bin");
    assert_eq!(Sha256::digest(&got), Sha256::digest(&added), "sha256");
    wait_log(
        &log,
        &mut seen,
        &["mtftp: stream completed", "images/added.bin"],
    );

    let status = terminate(&mut server);
    assert_eq!(status.code(), Some(0), "SIGTERM: exit 0");
    eprintln!(
        "PREBOOT-SERVER MTFTP OK: {} B and {} B by multicast",
        boot.len(),
        added.len()
    );
}
