//! Windowed TFTP reads (RFC 7440) from the std server reach a guest behind
//! a bridge and a tap as separate, valid datagrams, however the server
//! batches a window (UDP GSO on Linux).
//!
//! The topology is the firmware harness's proxy mode (issue 6): a network
//! namespace this test creates (its name carries the process id) with
//! bridge `br0` holding the server's address, a veth port (which offers
//! UDP segmentation, so a GSO window crosses the bridge as one frame) and a
//! tap port. `tests/tftp_gso_bridge/tap_client.py` is the guest on the tap:
//! it checks every frame as a firmware without checksum offload would
//! (within the 1500-byte MTU, valid UDP checksum, RFC 768), reads the file
//! with blksize 1468 (RFC 2348, what OVMF asks) and windowsize 32 (a
//! transfer alone on the server sends windows of up to 16 such blocks
//! block by block, larger ones as one GSO send), and writes what it
//! received; the test compares it with the file.
//!
//! Needs root, `ip` and `python3`. When those are missing the test is listed
//! as ignored with the reason (build.rs decides); with `PREBOOT_CI=1` it
//! fails instead.

mod boot_server_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use boot_server_support::unavailable;
use preboot::driver::tftp::{TftpServer, TftpServerConfig};

#[path = "support/netns.rs"]
mod netns;
use netns::{Netns, have, sh};

/// Set in the re-executed test binary that serves inside the namespace.
const ROLE: &str = "PREBOOT_TFTP_GSO_ROOT";
const SERVER: &str = "192.168.76.1";
const CLIENT: &str = "192.168.76.50";

/// Kills and reaps a child however the test ends.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server role: serves the directory in `ROLE` on port 69 of the
/// bridge address, for at most a minute.
#[test]
#[ignore = "role: run inside a network namespace by the test below"]
fn netns_tftp_server() {
    let Ok(root) = std::env::var(ROLE) else {
        return;
    };
    let config = TftpServerConfig::new(format!("{SERVER}:69").parse().unwrap(), root.into());
    let server = TftpServer::bind(config).unwrap().spawn().unwrap();
    println!("ready {}", server.local_addr());
    std::thread::sleep(Duration::from_secs(60));
    let _ = server.stop();
}

/// A 1 MiB file in blksize-1468, windowsize-32 windows (batched even for a
/// transfer alone on the server) through bridge → tap:
/// every datagram the guest sees is within the MTU with a valid checksum,
/// and the file arrives whole.
#[test]
#[cfg_attr(
    preboot_skip_netns_tap,
    ignore = "needs root, ip (iproute2) and python3"
)]
fn windowed_read_reaches_a_tap_guest_intact() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        unavailable("not root (network namespaces and tap need it)");
    }
    if let Some(t) = ["ip", "python3"].into_iter().find(|t| !have(t)) {
        unavailable(&format!("{t} not installed"));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut x = 0x9e37_79b9_u32;
    let file: Vec<u8> = (0..(1 << 20) + 333)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(dir.path().join("boot.efi"), &file).unwrap();

    let ns = Netns(format!("pgso{}", std::process::id()));
    let n = &ns.0;
    sh(&format!("ip netns add {n}"));
    sh(&format!(
        "ip -n {n} link set lo up && ip -n {n} link add br0 type bridge && \
         ip -n {n} link set br0 up && ip -n {n} addr add {SERVER}/24 dev br0 && \
         ip -n {n} link add v0 type veth peer name v1 && ip -n {n} link set v0 master br0 && \
         ip -n {n} link set v0 up && ip -n {n} link set v1 up && \
         ip -n {n} tuntap add tap0 mode tap && ip -n {n} link set tap0 master br0 && \
         ip -n {n} link set tap0 up"
    ));

    let mut server = Reap(
        Command::new("ip")
            .args(["netns", "exec", n])
            .arg(std::env::current_exe().unwrap())
            .args(["netns_tftp_server", "--exact", "--ignored", "--nocapture"])
            .env(ROLE, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // libtest prints its own lines first.
    let mut seen = String::new();
    for line in BufReader::new(server.0.stdout.take().unwrap())
        .lines()
        .take(10)
        .map_while(Result::ok)
    {
        seen += &line;
        seen.push('\n');
        if line.starts_with("ready") {
            break;
        }
    }
    let line = seen;
    assert!(line.contains("ready"), "server did not start: {line:?}");

    let out = dir.path().join("received");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tftp_gso_bridge/tap_client.py");
    let client = Command::new("timeout")
        .arg("60")
        .args(["ip", "netns", "exec", n, "python3"])
        .arg(&script)
        .args(["tap0", CLIENT, SERVER, "boot.efi", "1468", "32"])
        .arg(&out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&client.stdout).into_owned();
    let errors = String::from_utf8_lossy(&client.stderr);
    eprintln!("tap guest: {report}");
    assert!(
        report.contains(" bad_checksum=0 ") && report.contains(" oversize=0 "),
        "the guest saw damaged datagrams: {report}{errors}"
    );
    assert!(
        client.status.success(),
        "transfer incomplete: {report}{errors}"
    );
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), file.len(), "{report}");
    assert!(got == file, "received bytes differ: {report}");
}
