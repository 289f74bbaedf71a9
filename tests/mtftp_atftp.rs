//! PXE MTFTP interoperability with atftp 0.8 (Debian `atftp`, `atftpd`),
//! both ways, across a veth pair between two network namespaces this
//! test creates (never the host's interfaces): our client
//! ([`driver::mtftp::fetch`]) fetches from `atftpd --mtftp`, and
//! `atftp --mget` fetches from our server engine; the files arrive
//! identical (PXE 2.1 MTFTP; notes §2.5 items 2–4, 10: atftpd sends from a
//! fresh port, we from SPORT).
//!
//! Needs root, `ip`, `atftp` and `atftpd`; without them the test says so
//! and passes, unless `PREBOOT_CI=1`, where it fails. Our engines run in
//! child processes (`ip netns exec` on this test binary; the test
//! `mtftp_atftp_child` acts only with `PREBOOT_MTFTP_ROLE` set).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant as StdInstant};

use preboot::driver::clock;
use preboot::driver::fs::JailedDir;
use preboot::driver::mtftp::{FetchOutcome, fetch, server_socket};
use preboot::engine::Datagram;
use preboot::fs::{FileSource, VecSink};
use preboot::mtftp::Channel;
use preboot::mtftp::client::ClientConfig;
use preboot::mtftp::server::{Server, ServerConfig, ServerEvent, Slot};

#[path = "support/netns.rs"]
mod netns;
use netns::{have, sh};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const SPORT: u16 = 1759;
const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 239, 239, 2), 1760);
const ROLE: &str = "PREBOOT_MTFTP_ROLE";
const DIR: &str = "PREBOOT_MTFTP_DIR";
const WINDOW: &str = "PREBOOT_MTFTP_WINDOW";

/// Two namespaces joined by a veth pair, deleted on drop.
struct Pair {
    server: String,
    client: String,
}

impl Pair {
    fn new() -> Pair {
        let id = std::process::id();
        let p = Pair {
            server: format!("pbmas{id}"),
            client: format!("pbmac{id}"),
        };
        sh(&format!("ip netns add {}", p.server));
        sh(&format!("ip netns add {}", p.client));
        sh(&format!(
            "ip link add vs{id} netns {} type veth peer name vc{id} netns {}",
            p.server, p.client
        ));
        for (ns, dev, ip) in [
            (&p.server, format!("vs{id}"), SERVER_IP),
            (&p.client, format!("vc{id}"), CLIENT_IP),
        ] {
            sh(&format!("ip -n {ns} addr add {ip}/24 dev {dev}"));
            sh(&format!("ip -n {ns} link set {dev} up"));
            sh(&format!("ip -n {ns} link set lo up"));
            // atftpd's sockets are unbound: the group goes where the
            // route says.
            sh(&format!("ip -n {ns} route add 224.0.0.0/4 dev {dev}"));
        }
        p
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("sh")
                .args(["-c", &format!("ip netns pids {ns} | xargs -r kill")])
                .status();
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Kills a child process we started (by its PID) when dropped.
struct Reaper(Child);
impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child(ns: &str, role: &str, dir: &std::path::Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "mtftp_atftp_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(DIR, dir);
    c
}

fn file() -> Vec<u8> {
    (0..200_000u32 * 2 + 77)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

#[test]
fn mtftp_interop_with_atftp_both_ways() {
    let ready = nix::unistd::Uid::effective().is_root()
        && ["ip", "atftp", "atftpd"].iter().all(|c| have(c));
    if !ready {
        assert!(
            std::env::var_os("PREBOOT_CI").is_none(),
            "needs root, ip, atftp, atftpd"
        );
        eprintln!("skipped: needs root, `ip`, `atftp` and `atftpd`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let data = file();
    std::fs::write(root.join("big.bin"), &data).unwrap();
    let pair = Pair::new();

    // 1. Our client from atftpd --mtftp.
    let conf = dir.path().join("mtftp.conf");
    std::fs::write(&conf, format!("big.bin {} {}\n", GROUP.ip(), GROUP.port())).unwrap();
    let atftpd = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.server,
            "atftpd",
            "--daemon",
            "--no-fork",
            "--user",
            "root",
            "--group",
            "root",
        ])
        .args(["--port", "6969", "--mtftp"])
        .arg(&conf)
        .args(["--mtftp-port", &SPORT.to_string(), "--logfile", "/dev/null"])
        .arg(&root)
        .spawn()
        .unwrap();
    let atftpd = Reaper(atftpd);
    std::thread::sleep(Duration::from_millis(500));
    let out = child(&pair.client, "client", dir.path()).output().unwrap();
    drop(atftpd);
    println!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "our client against atftpd");
    assert_eq!(
        std::fs::read(dir.path().join("from-atftpd.bin")).unwrap(),
        data,
        "our client got atftpd's file"
    );

    // 2. atftp --mget from our server: lock-step (PXE 2.1) and with blocks
    // sent ahead of atftp's ACKs (ServerConfig::window).
    for window in ["1", "16"] {
        atftp_from_our_server(&pair, dir.path(), &data, window);
    }
}

fn atftp_from_our_server(pair: &Pair, dir: &std::path::Path, data: &[u8], window: &str) {
    let server = Reaper(
        child(&pair.server, "server", dir)
            .env(WINDOW, window)
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = dir.join(format!("from-preboot-w{window}.bin"));
    let out = Command::new("ip")
        .args(["netns", "exec", &pair.client, "timeout", "30", "atftp"])
        .args(["--mtftp", &format!("client-port {}", GROUP.port())])
        .args(["--mtftp", &format!("mcast-ip {}", GROUP.ip())])
        .args(["--mtftp", "listen-delay 1", "--mtftp", "timeout-delay 1"])
        .args(["--mget", "-r", "big.bin", "-l"])
        .arg(&got)
        .args([&SERVER_IP.to_string(), &SPORT.to_string()])
        .output()
        .unwrap();
    drop(server);
    println!(
        "atftp (window {window}): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&got).unwrap_or_default() == data,
        "atftp got our server's file (window {window})"
    );
}

#[test]
fn mtftp_atftp_child() {
    let Some(role) = std::env::var_os(ROLE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(DIR).unwrap());
    let server = SocketAddrV4::new(SERVER_IP, SPORT);
    match role.to_str() {
        Some("client") => {
            let channel = Channel {
                group: GROUP,
                server,
                listen: Duration::from_secs(1),
                delay: Duration::from_secs(1),
            };
            let sink = VecSink {
                limit: Some(64 << 20),
                ..VecSink::default()
            };
            let (outcome, sink) = fetch(
                channel,
                CLIENT_IP,
                b"big.bin",
                ClientConfig::new(channel),
                sink,
                Duration::from_secs(30),
            )
            .unwrap();
            eprintln!("{outcome:?}");
            assert!(
                matches!(outcome, FetchOutcome::Completed { master: true, .. }),
                "{outcome:?}"
            );
            std::fs::write(dir.join("from-atftpd.bin"), &sink.data).unwrap();
        }
        Some("server") => serve(&dir.join("root"), server),
        other => panic!("unknown role {other:?}"),
    }
}

/// Our server engine on SPORT until its first stream completes (or 30 s).
fn serve(root: &std::path::Path, sport: SocketAddrV4) {
    let mut fs = JailedDir::new(root).unwrap();
    let sock = server_socket(sport, 1).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let slots: Vec<Slot<_>> = (0..2).map(|_| Slot::new()).collect();
    let window = std::env::var(WINDOW)
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    let config = ServerConfig {
        window,
        ..ServerConfig::default()
    };
    let mut server = Server::new(config, slots);
    let mut buf = [0u8; 2048];
    let started = StdInstant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let now = clock::now();
        while let Some(t) = server.poll_transmit(now, &mut buf).unwrap() {
            let _ = sock.send_to(&buf[..t.len], SocketAddr::V4(t.remote));
        }
        while let Some(e) = server.poll_event() {
            eprintln!("server: {e:?}");
            if matches!(e, ServerEvent::Completed { .. }) {
                return;
            }
        }
        if let Ok((n, SocketAddr::V4(from))) = sock.recv_from(&mut buf) {
            let payload = buf[..n].to_vec();
            let now = clock::now();
            if let Some(inc) = server.handle(
                now,
                Datagram {
                    local: sport,
                    remote: from,
                    payload: &payload,
                },
            ) {
                match fs.open(&inc.path) {
                    Ok(f) => {
                        let _ = server.accept(now, &inc, f, GROUP, sport);
                    }
                    Err(e) => server.refuse(&inc, e.error_code()),
                }
            }
        }
        server.handle_timeout(clock::now());
    }
}
