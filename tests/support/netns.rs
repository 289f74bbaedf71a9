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
