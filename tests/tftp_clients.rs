//! Real TFTP clients (Debian's tftp-hpa `tftp`, `atftp`, `curl`) against
//! the std server on loopback; files compared by SHA-256.
//!
//! A test whose client is missing is listed as ignored with the reason
//! (build.rs decides); with `PREBOOT_CI=1` it fails instead.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use preboot::driver::tftp::{TftpServer, TftpServerConfig, TftpServerHandle};
use sha2::{Digest, Sha256};

mod boot_server_support;
use boot_server_support::ci;

fn have(prog: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog}"))
        .output()
        .is_ok_and(|o| o.status.success());
    // Reached without the client only when the test was forced or under
    // PREBOOT_CI=1 (the build marks it ignored otherwise): fail.
    assert!(found || !ci(), "{prog} is required with PREBOOT_CI=1");
    assert!(
        found,
        "{prog} not installed (apt-get install -y tftp-hpa atftp curl)"
    );
    found
}

#[allow(dead_code)] // this file uses only the content generator
mod tftp_support;
use tftp_support::content_seeded as content;

const SIZES: [usize; 7] = [0, 1, 511, 512, 513, 1 << 20, 3 << 20];

fn sha(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

struct Fixture {
    dir: tempfile::TempDir,
    out: tempfile::TempDir,
    server: Option<TftpServerHandle>,
    addr: SocketAddr,
}

impl Fixture {
    fn new(configure: impl FnOnce(&mut TftpServerConfig)) -> Fixture {
        // RUST_LOG=debug shows the server's transfer log.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .with_ansi(false)
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        for &size in &SIZES {
            std::fs::write(
                dir.path().join(format!("boot/f{size}")),
                content(size, size as u64),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("text.txt"), b"line one\nline two\r\nend\n").unwrap();
        let mut config = TftpServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().into());
        configure(&mut config);
        let server = TftpServer::bind(config).unwrap().spawn().unwrap();
        let addr = server.local_addr();
        Fixture {
            dir,
            out: tempfile::tempdir().unwrap(),
            server: Some(server),
            addr,
        }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    fn local(&self, name: &str) -> std::path::PathBuf {
        self.out.path().join(name)
    }

    fn stop(mut self) -> preboot::driver::tftp::TftpStats {
        self.server.take().unwrap().stop().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.stop();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    // Every client gets a bounded time: `timeout` kills a hung one.
    cmd.output().expect("spawn client")
}

fn timeout_cmd(prog: &str) -> Command {
    let mut c = Command::new("timeout");
    c.arg("60").arg(prog);
    c
}

fn assert_same(local: &Path, size: usize) {
    let got = std::fs::read(local).unwrap_or_else(|e| panic!("{}: {e}", local.display()));
    assert_eq!(got.len(), size, "{}", local.display());
    assert_eq!(
        sha(&got),
        sha(&content(size, size as u64)),
        "{}",
        local.display()
    );
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
#[cfg_attr(preboot_skip_tftp_hpa, ignore = "needs tftp (Debian package tftp-hpa)")]
fn tftp_hpa_downloads_every_size() {
    if !have("tftp") {
        return;
    }
    let fx = Fixture::new(|_| {});
    for &size in &SIZES {
        let local = fx.local(&format!("hpa{size}"));
        let o = run(timeout_cmd("tftp")
            .args(["-m", "binary", "127.0.0.1", &fx.port(), "-c", "get"])
            .arg(format!("/boot/f{size}"))
            .arg(&local));
        // tftp-hpa exits 0 even on error: its output must be clean too.
        assert!(o.status.success(), "{}", text(&o));
        assert!(!text(&o).contains("Error"), "{}", text(&o));
        assert_same(&local, size);
    }
    let stats = fx.stop();
    assert_eq!(stats.completed, SIZES.len() as u64);
    assert_eq!(stats.failed, 0);
}

#[test]
#[cfg_attr(preboot_skip_tftp_hpa, ignore = "needs tftp (Debian package tftp-hpa)")]
fn tftp_hpa_sees_errors_1_and_2() {
    if !have("tftp") {
        return;
    }
    let fx = Fixture::new(|_| {});
    let local = fx.local("missing");
    let o = run(timeout_cmd("tftp")
        .args([
            "127.0.0.1",
            &fx.port(),
            "-c",
            "get",
            "pxelinux.cfg/01-52-54-00-00-00-01",
        ])
        .arg(&local));
    assert!(text(&o).contains("Error code 1"), "{}", text(&o));
    let o = run(timeout_cmd("tftp")
        .args(["127.0.0.1", &fx.port(), "-c", "get", "../../etc/passwd"])
        .arg(&local));
    assert!(text(&o).contains("Error code 2"), "{}", text(&o));
    // Uploads are off by default.
    let src = fx.local("up");
    std::fs::write(&src, b"data").unwrap();
    let o = run(timeout_cmd("tftp")
        .args(["127.0.0.1", &fx.port(), "-c", "put"])
        .arg(&src)
        .arg("up.bin"));
    assert!(text(&o).contains("Error code 2"), "{}", text(&o));
    assert!(!fx.dir.path().join("up.bin").exists());
}

#[test]
#[cfg_attr(preboot_skip_tftp_hpa, ignore = "needs tftp (Debian package tftp-hpa)")]
fn tftp_hpa_netascii() {
    if !have("tftp") {
        return;
    }
    let fx = Fixture::new(|_| {});
    let local = fx.local("text.txt");
    let o = run(timeout_cmd("tftp")
        .args([
            "-m",
            "netascii",
            "127.0.0.1",
            &fx.port(),
            "-c",
            "get",
            "text.txt",
        ])
        .arg(&local));
    assert!(!text(&o).contains("Error"), "{}", text(&o));
    assert_eq!(
        std::fs::read(&local).unwrap(),
        b"line one\nline two\r\nend\n"
    );
}

#[test]
#[cfg_attr(preboot_skip_atftp, ignore = "needs atftp (Debian package atftp)")]
fn atftp_with_blksize_tsize_windowsize() {
    if !have("atftp") {
        return;
    }
    let fx = Fixture::new(|_| {});
    let variants: [&[&str]; 4] = [
        &[],
        &["--option", "blksize 1468", "--option", "tsize 0"],
        &[
            "--option",
            "blksize 1432",
            "--option",
            "tsize 0",
            "--option",
            "windowsize 16",
        ],
        &["--option", "blksize 8192", "--option", "windowsize 4"],
    ];
    let mut n = 0;
    for (v, opts) in variants.iter().enumerate() {
        for &size in &SIZES {
            let local = fx.local(&format!("at{v}-{size}"));
            let o = run(timeout_cmd("atftp")
                .args(*opts)
                .arg("-g")
                .arg("-r")
                .arg(format!("boot/f{size}"))
                .arg("-l")
                .arg(&local)
                .args(["127.0.0.1", &fx.port()]));
            assert!(o.status.success(), "atftp {opts:?} f{size}: {}", text(&o));
            assert_same(&local, size);
            n += 1;
        }
    }
    let stats = fx.stop();
    assert_eq!(stats.completed, n);
    assert_eq!(stats.failed, 0);
}

#[test]
#[cfg_attr(preboot_skip_atftp, ignore = "needs atftp (Debian package atftp)")]
fn atftp_upload_when_enabled_never_overwrites() {
    if !have("atftp") {
        return;
    }
    let fx = Fixture::new(|c| {
        c.allow_write = true;
        c.max_write_size = Some(2 << 20);
    });
    let src = fx.local("src");
    std::fs::write(&src, content(700_000, 7)).unwrap();
    let put = |remote: &str| {
        run(timeout_cmd("atftp")
            .args(["--option", "blksize 1468", "-p", "-l"])
            .arg(&src)
            .args(["-r", remote, "127.0.0.1", &fx.port()]))
    };
    let o = put("boot/uploaded.bin");
    assert!(o.status.success(), "{}", text(&o));
    let landed = std::fs::read(fx.dir.path().join("boot/uploaded.bin")).unwrap();
    assert_eq!(sha(&landed), sha(&content(700_000, 7)));
    // Existing file: ERROR 6, file untouched.
    let o = put("boot/f1");
    assert!(
        !o.status.success() || text(&o).contains("rror"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(fx.dir.path().join("boot/f1")).unwrap(),
        content(1, 1)
    );
    // Over the size limit: refused, nothing left behind.
    std::fs::write(&src, content(3 << 20, 8)).unwrap();
    let o = put("boot/big.bin");
    assert!(
        !o.status.success() || text(&o).contains("rror"),
        "{}",
        text(&o)
    );
    assert!(!fx.dir.path().join("boot/big.bin").exists());
    // The server removes the partial upload when it closes the transfer,
    // just after its ERROR left: atftp may have exited a moment before.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let leftovers = loop {
        let leftovers: Vec<_> = std::fs::read_dir(fx.dir.path().join("boot"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        if leftovers.is_empty() || std::time::Instant::now() > deadline {
            break leftovers;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
#[cfg_attr(
    preboot_skip_curl_tftp,
    ignore = "needs curl with TFTP (Debian package curl)"
)]
fn curl_with_tftp_blksize() {
    if !have("curl") {
        return;
    }
    let fx = Fixture::new(|_| {});
    for blksize in ["512", "1468", "8192"] {
        for &size in &SIZES {
            let local = fx.local(&format!("curl{blksize}-{size}"));
            let mut cmd = timeout_cmd("curl");
            cmd.args(["-sS", "--tftp-blksize", blksize, "-o"])
                .arg(&local);
            if size == 0 {
                // curl 7.88 rejects an OACK carrying tsize=0 (empty file);
                // fetch the empty file without options.
                cmd.arg("--tftp-no-options");
            }
            cmd.arg(format!("tftp://127.0.0.1:{}/boot/f{size}", fx.port()));
            let o = run(&mut cmd);
            assert!(
                o.status.success(),
                "curl blksize {blksize} f{size}: {}",
                text(&o)
            );
            assert_same(&local, size);
        }
    }
    let o = run(timeout_cmd("curl")
        .args(["-sS", "-o", "/dev/null"])
        .arg(format!("tftp://127.0.0.1:{}/nope", fx.port())));
    assert!(!o.status.success());
}
