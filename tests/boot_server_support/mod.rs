//! Shared by the boot server tests: the example binary, built on demand,
//! and a guard that stops it. Also the one reading of `PREBOOT_CI` for
//! every test (`ci()`, `unavailable()`; build.rs reads it the same way).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};

/// `PREBOOT_CI=1`: nothing is ignored, a missing prerequisite fails.
pub fn ci() -> bool {
    std::env::var("PREBOOT_CI").is_ok_and(|v| v == "1")
}

/// A prerequisite of the running test is missing: fail, saying which.
///
/// A test that cannot run on this machine is not run at all: build.rs
/// marks it `#[ignore = "…"]` when what it needs is missing, so `cargo test`
/// lists it as ignored with the reason (never as `ok`). This is reached only
/// when such a test is forced (`--include-ignored`), under `PREBOOT_CI=1`
/// (where nothing is ignored), or when the machine changed since the build.
pub fn unavailable(why: &str) -> ! {
    if ci() {
        panic!("PREBOOT_CI=1 but {why}");
    }
    panic!("{why}: this test cannot run here (without it, the build lists it as ignored)");
}

/// Build the `preboot-server` example with this test's profile and
/// features; its path.
pub fn example() -> PathBuf {
    build_example("preboot-server")
}

/// Build example `name` with this test's profile and features (once per
/// test binary); its path.
pub fn build_example(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, bin)) = built.iter().find(|(n, _)| n == name) {
        return bin.clone();
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    // Exactly this test's feature set, so that cargo finds the
    // library already built (`--all-features` includes `default`).
    let features: Vec<&str> = [
        ("default", cfg!(feature = "default")),
        ("std", cfg!(feature = "std")),
        ("alloc", cfg!(feature = "alloc")),
        ("smoltcp", cfg!(feature = "smoltcp")),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(f, _)| *f)
    .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", name])
        .args(["--no-default-features", "--features", &features.join(",")]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build --example {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.is_file(), "{} missing", bin.display());
    built.push((name.to_string(), bin.clone()));
    bin
}

/// Stops (SIGKILL) and reaps the server however the test ends, by its PID
/// only; a test that checks a clean exit sends SIGTERM first.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Send SIGTERM to the server and wait (bounded) for its exit status.
pub fn terminate(server: &mut Server) -> std::process::ExitStatus {
    let pid = server.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no exit 20 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
