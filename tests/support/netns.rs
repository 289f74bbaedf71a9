//! Shared helpers of the tests that run inside network namespaces they
//! create (never on the host's interfaces): is a command there, run a
//! shell command or fail with its stderr, and a namespace deleted on drop
//! however the test ends. Included with `#[path]`.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// Is `cmd` on the PATH?
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run `cmd` with `sh -c`; panic with its stderr if it fails.
pub fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace, deleted on drop however the test ends.
pub struct Netns(pub String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs the test `child` of this test binary again, inside a namespace
/// made for it (`<prefix><pid>`, loopback up with multicast on, deleted
/// afterwards), with `env` set; prints its output and asserts that it
/// passed and wrote `marker` on stderr (so a child that skipped its work
/// does not pass). Without root or `ip` it says so and returns false —
/// under `PREBOOT_CI=1` that fails instead.
pub fn run_child_in_namespace(
    prefix: &str,
    child: &str,
    env: &[(&str, &std::ffi::OsStr)],
    marker: &str,
) -> bool {
    if !nix::unistd::Uid::effective().is_root() || !have("ip") {
        assert!(
            std::env::var_os("PREBOOT_CI").is_none(),
            "needs root and ip"
        );
        eprintln!("skipped: needs root and `ip` (network namespaces)");
        return false;
    }
    let ns = Netns(format!("{prefix}{}", std::process::id()));
    sh(&format!("ip netns add {}", ns.0));
    sh(&format!(
        "ip netns exec {} ip link set lo up multicast on",
        ns.0
    ));
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "child {child} failed");
    assert!(stderr.contains(marker), "child {child}: no {marker:?}");
    true
}
