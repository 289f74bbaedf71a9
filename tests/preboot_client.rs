//! The real `examples/preboot-client` against the real `examples/preboot-server`
//! on loopback (issue 14: the Preboot Services flow end to end, steps 1–19
//! of DESIGN.md), from the server's embedded demo configuration with its
//! ports moved to free ones so that tests run side by side:
//!
//! - the demo's registered workstation gets its pending restore task
//!   exactly once: the simulated imaging environment reports it done and
//!   writes the base image into the image-safe data, and the next boot
//!   finds no task and boots the local disk;
//! - an unregistered workstation falls back to the server policy (its
//!   menu on a hotkey, its imaging rule);
//! - every menu mode: never, always (with a choice), on a key press;
//! - a wrong pinned server key fails at the session step with a clear
//!   error and changes nothing on the server;
//! - a damaged image-safe record is reported and the defaults are used;
//! - a record in the legacy layout is read and moved by the client's write;
//!   a disk with a GPT partition over the image-safe area is refused,
//!   untouched (docs/transaction-protocol.md §10.4, §10.5);
//! - the server restarted mid-flow: the client resumes on a new session
//!   and completes;
//! - 50 workstations from one process all get through.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use preboot::driver::image_safe_disk::read_image_safe;
use preboot::wire::image_safe::{
    ImageSafe, LEGACY_SLOT_A_OFFSET, LEGACY_SLOT_B_OFFSET, Layout, SLOT_A_OFFSET, SLOT_B_OFFSET,
    SLOT_LEN,
};

#[path = "../examples/preboot-server/demo.rs"]
mod demo;
use demo::DemoTree;

mod boot_server_support;
use boot_server_support::{Server, build_example, example};

/// The demo's registered workstation (pending restore of images/lab.img).
const REGISTERED: &str = "52:54:00:00:00:01";

fn free_port() -> u16 {
    UdpSocket::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo tree with the embedded configuration on free ports, edited by
/// `edit`; the server started on it.
struct Demo {
    tree: DemoTree,
    ports: [u16; 5],
    server: Option<Server>,
    dir: PathBuf,
}

impl Demo {
    fn start(edit: impl FnOnce(String) -> String) -> Demo {
        let dir = std::env::temp_dir().join(format!(
            "preboot-client-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let tree = DemoTree::create(&dir).unwrap();
        // The server, started as root, runs as `nobody`: it writes its task
        // journal next to the configuration.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tree.dir(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        }
        let ports = [
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        ];
        let text = std::fs::read_to_string(tree.config_path()).unwrap();
        let text = text
            .replace("dhcp = 6767", &format!("dhcp = {}", ports[0]))
            .replace("boot = 14011", &format!("boot = {}", ports[1]))
            .replace("tftp = 6969", &format!("tftp = {}", ports[2]))
            .replace("client = 6868", &format!("client = {}", ports[3]))
            .replace(
                "transaction = 14012",
                &format!("transaction = {}", ports[4]),
            )
            .replace("max_transfers = 64", "max_transfers = 512");
        std::fs::write(tree.config_path(), edit(text)).unwrap();
        let mut d = Demo {
            tree,
            ports,
            server: None,
            dir,
        };
        d.restart();
        d
    }

    /// (Re)start the server on the same tree, state and ports; wait until
    /// it serves.
    fn restart(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.0.kill();
            let _ = s.0.wait();
        }
        let mut child = Command::new(example())
            .arg("--config")
            .arg(self.tree.config_path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("stop:") {
                    let _ = tx.send(());
                }
            }
        });
        let server = Server(child);
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the server prints its banner");
        self.server = Some(server);
    }

    /// The client's port flags for this server.
    fn port_args(&self) -> Vec<String> {
        let [dhcp, boot, tftp, client, transaction] = self.ports;
        vec![
            format!("--dhcp-port={dhcp}"),
            format!("--boot-port={boot}"),
            format!("--tftp-port={tftp}"),
            format!("--client-port={client}"),
            format!("--transaction-port={transaction}"),
        ]
    }

    /// A blank 2 MiB disk for a workstation.
    fn disk(&self, name: &str) -> PathBuf {
        let p = self.dir.join(format!("{name}.img"));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(2 << 20).unwrap();
        p
    }

    fn client_cmd(&self, disk: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new(build_example("preboot-client"));
        c.args(self.port_args()).arg("--disk").arg(disk).args(extra);
        if !extra.contains(&"--step-limit") {
            c.args(["--step-limit", "30"]);
        }
        c.env_remove("RUST_LOG").stdin(Stdio::null());
        c
    }

    fn client(&self, disk: &Path, extra: &[&str]) -> Output {
        self.client_cmd(disk, extra).output().unwrap()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.server.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn result_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .rfind(|l| l.starts_with("RESULT"))
        .unwrap_or_else(|| panic!("no RESULT line:\n{}", text(o)))
        .to_string()
}

fn base_image(disk: &Path) -> Option<String> {
    let slots = read_image_safe(disk).unwrap();
    slots.loaded().record.base_image.map(str::to_string)
}

/// Steps 1–19 for the demo's registered workstation: its restore task is
/// handed out, reported (progress, success; §4.6) and applied once; the
/// second boot finds the base image on the disk and no task.
#[test]
fn registered_workstation_is_imaged_once_then_boots_local() {
    let demo = Demo::start(|t| t);
    let disk = demo.disk("ws1");
    let o = demo.client(&disk, &["--mac", REGISTERED, "--menu-choice", "1"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(result_line(&o).starts_with("RESULT imaged tasks="), "{out}");
    for step in [
        "dhcp ",
        "boot-file ",
        "image-safe ",
        "session ",
        "info ",
        "menu ",
        "tasks ",
        "environment ",
        "handover ",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(step)),
            "step {step}: {out}"
        );
    }
    assert!(out.contains("registered as demo-pc-01"), "{out}");
    // No key pinned: the transaction server and its key came from the
    // proxy's answers (option 43 sub-options 128 and 129).
    assert!(out.contains("server key from the DHCP answer"), "{out}");
    let tx_port = demo.ports[4];
    assert!(
        out.contains(&format!("authenticated to 127.0.0.1:{tx_port}")),
        "{out}"
    );
    assert!(out.contains("restore images/lab.img"), "{out}");
    // The demo's lab policy always shows the menu.
    assert!(out.contains("PREBOOT-MENU (3 entries)"), "{out}");
    // The preboot file arrived whole: the sha256 of the demo's file.
    let want = demo::demo_file("bios/pxelinux.0", demo::DEMO_FILES[0].1);
    let sum: String = <sha2::Sha256 as sha2::Digest>::digest(&want)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(out.contains(&sum), "boot file sha256 {sum}: {out}");
    assert_eq!(base_image(&disk).as_deref(), Some("images/lab.img"));

    let o = demo.client(&disk, &["--mac", REGISTERED, "--menu-choice", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        result_line(&o).starts_with("RESULT local-boot"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("PREBOOT-LOCAL-BOOT"));
}

/// A workstation the store does not know: the server policy's menu (on a
/// hotkey; no console here, so no wait) and its imaging rule (no base
/// image yet → the standard image).
#[test]
fn unregistered_workstation_gets_the_server_policy() {
    let demo = Demo::start(|t| t);
    let disk = demo.disk("stranger");
    let o = demo.client(&disk, &["--mac", "52:54:00:00:00:99"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("not registered: the server policy applies"),
        "{out}"
    );
    assert!(out.contains("menu on Alt+M: no console"), "{out}");
    assert!(out.contains("restore images/standard.img"), "{out}");
    assert_eq!(base_image(&disk).as_deref(), Some("images/standard.img"));
}

/// §4.4 menu modes from the server policy: never (no menu), always (the
/// entries; choosing "boot the local disk" ends the boot before any task),
/// on a key press without a console (not shown, no wait).
#[test]
fn every_menu_mode() {
    let server_menu = r#"menu = { mode = "on-key-press", hotkey = "alt+m", wait_ms = 3000 }"#;
    for (mode, want_menu) in [("never", false), ("always", true)] {
        let demo =
            Demo::start(|t| t.replace(server_menu, &format!(r#"menu = {{ mode = "{mode}" }}"#)));
        let disk = demo.disk("m");
        let o = demo.client(&disk, &["--mac", "52:54:00:00:00:98", "--menu-choice", "3"]);
        let out = text(&o);
        assert!(o.status.success(), "{mode}: {out}");
        assert_eq!(out.contains("PREBOOT-MENU"), want_menu, "{mode}: {out}");
        if want_menu {
            assert!(out.contains("3. Boot the local disk"), "{out}");
            assert!(result_line(&o).starts_with("RESULT local-boot"), "{out}");
            assert_eq!(base_image(&disk), None, "no task ran: {out}");
        } else {
            assert!(out.contains("menu: never shown"), "{out}");
            assert!(result_line(&o).starts_with("RESULT imaged"), "{out}");
        }
    }
}

/// §3.1: a client pinning another server key gets no session: it stops at
/// that step with an error that says so, and nothing changed on the
/// server (the task is still there for the real client).
#[test]
fn wrong_server_key_fails_cleanly_and_changes_nothing() {
    let demo = Demo::start(|t| t);
    let disk = demo.disk("wrongkey");
    let o = demo.client(
        &disk,
        &[
            "--mac",
            REGISTERED,
            "--server-key",
            &"ab".repeat(32),
            "--step-limit",
            "8",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let r = result_line(&o);
    assert!(r.starts_with("RESULT failed step=session"), "{out}");
    assert!(
        r.contains("no handshake") || r.contains("did not answer"),
        "{r}"
    );
    assert_eq!(base_image(&disk), None);
    let o = demo.client(&disk, &["--mac", REGISTERED, "--menu-choice", "1"]);
    assert!(
        result_line(&o).starts_with("RESULT imaged"),
        "the task is still pending: {}",
        text(&o)
    );
}

/// §10.3: a damaged record (a slot with the magic but cut short, the other
/// blank) is named, the defaults apply, and the boot goes on; the write
/// after the simulated restore makes a valid record again.
#[test]
fn damaged_image_safe_record_is_reported_and_the_defaults_apply() {
    let demo = Demo::start(|t| t);
    let disk = demo.disk("torn");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        // "PBIS", version 1, flags 0, length 64 — and nothing else: bad CRC.
        f.write_all_at(b"PBIS\x01\x00\x00\x40\x00\x00\x00\x07", SLOT_A_OFFSET)
            .unwrap();
        f.write_all_at(&[0xFF; 1024], SLOT_B_OFFSET).unwrap();
    }
    let o = demo.client(&disk, &["--mac", "52:54:00:00:00:97"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("image-safe "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("using the defaults"), "{line}");
    assert!(
        !line.contains("both slots blank"),
        "damaged, not missing: {line}"
    );
    assert_eq!(base_image(&disk).as_deref(), Some("images/standard.img"));
}

/// §10.4: a disk whose record is still in the legacy layout (both slots in
/// the last 4 KiB sector) is read by the client — its base image is the
/// one the server compares — and the client's write after the restore
/// moves it to the slots of §10.1 and clears the legacy ones.
#[test]
fn legacy_image_safe_record_is_read_and_moved() {
    use std::os::unix::fs::FileExt;
    let demo = Demo::start(|t| t);
    let disk = demo.disk("legacy");
    let old = ImageSafe {
        generation: 41,
        workstation_name: Some("lab-pc-legacy"),
        ..ImageSafe::default()
    };
    let mut buf = [0u8; SLOT_LEN];
    old.emit(&mut buf).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(&buf, LEGACY_SLOT_B_OFFSET).unwrap();
    assert_eq!(read_image_safe(&disk).unwrap().layout(), Layout::Legacy);

    let o = demo.client(&disk, &["--mac", REGISTERED, "--menu-choice", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let line = text(&o);
    assert!(
        line.contains("generation 41"),
        "the legacy record was read: {line}"
    );
    let slots = read_image_safe(&disk).unwrap();
    assert_eq!(slots.layout(), Layout::Aligned);
    let l = slots.loaded();
    assert!(l.record.generation > 41, "{:?}", l.record);
    assert_eq!(l.record.workstation_name, Some("lab-pc-legacy"));
    assert_eq!(l.record.base_image, Some("images/lab.img"));
    let mut legacy = [0u8; 2 * SLOT_LEN];
    std::fs::File::open(&disk)
        .unwrap()
        .read_exact_at(&mut legacy, LEGACY_SLOT_A_OFFSET)
        .unwrap();
    assert!(legacy.iter().all(|&b| b == 0), "legacy slots cleared");
}

/// §10.5: the client never writes the image-safe data or the key record
/// over a partition: a GPT disk (made by sgdisk) whose first partition
/// starts at LBA 40 is refused with the partition named, and left as it
/// was.
#[test]
#[cfg_attr(
    preboot_skip_partition_tools,
    ignore = "needs sfdisk (fdisk) and sgdisk (gdisk)"
)]
fn client_refuses_a_disk_with_a_partition_over_the_image_safe_area() {
    let demo = Demo::start(|t| t);
    let disk = demo.disk("gpt40");
    std::fs::File::options()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let out = Command::new("sgdisk")
        .args(["-a", "8", "-n", "1:40:+4M", "-c", "1:data"])
        .arg(&disk)
        .output()
        .expect("run sgdisk (Debian package gdisk)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = std::fs::read(&disk).unwrap();
    let o = demo.client(&disk, &["--mac", REGISTERED, "--menu-choice", "1"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("GPT partition 1 \"data\" at LBA 40")
            && out.contains("overlaps the image-safe area"),
        "{out}"
    );
    assert!(
        std::fs::read(&disk).unwrap() == before,
        "the disk was changed"
    );
}

/// The server restarts while the client waits for the menu hotkey: the
/// client's next request gets no answer on the old session, so it opens a
/// new one (a new handshake; the demo re-enrols its key) and completes.
#[test]
fn server_restarted_mid_flow_the_client_resumes() {
    let mut demo = Demo::start(|t| t.replace("wait_ms = 3000", "wait_ms = 4000"));
    let disk = demo.disk("restart");
    let mut child: Child = demo
        .client_cmd(&disk, &["--mac", "52:54:00:00:00:96", "--console"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("client output").unwrap();
        seen.push(line.clone());
        if line.contains("within") && line.contains("for the menu") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{seen:?}");
    }
    demo.restart();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    drop(stdin);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let all = format!(
        "{}\n{}\n--- stderr ---\n{err}",
        seen.join("\n"),
        rest.join("\n")
    );
    assert!(status.success(), "{all}");
    assert!(rest.iter().any(|l| l.starts_with("RESULT imaged")), "{all}");
    assert!(err.contains("resuming on a new session"), "{all}");
}

/// `--workstations 50`: distinct MACs, UUIDs, disks and loopback
/// addresses, every one through every step, and the summary says so.
#[test]
fn fifty_workstations_from_one_process() {
    let demo = Demo::start(|t| t);
    let dir = demo.dir.join("fleet");
    std::fs::create_dir_all(&dir).unwrap();
    let o = demo.client(
        &dir,
        &["--workstations", "50", "--mac", "52:54:00:20:00:00"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let r = result_line(&o);
    assert!(r.contains("workstations=50 done=50 failed=0"), "{out}");
    assert!(out.contains("50 × imaged"), "{out}");
    let disks = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(disks, 50, "one disk each");
}

/// §4.4 on a console: the server policy's menu on F8; the client waits for
/// it on stdin (a pipe here, a serial console on a workstation: F8 arrives
/// as `ESC [ 19 ~`), shows the menu when it comes, and reads the choice
/// typed there ("3": boot the local disk, so no task runs).
#[test]
fn hotkey_on_the_console_shows_the_menu() {
    use std::io::Write;
    let demo = Demo::start(|t| {
        t.replace(
            r#"hotkey = "alt+m", wait_ms = 3000"#,
            r#"hotkey = "f8", wait_ms = 20000"#,
        )
    });
    let disk = demo.disk("hotkey");
    let mut child = demo
        .client_cmd(&disk, &["--mac", "52:54:00:00:00:95", "--console"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("client output").unwrap();
        seen.push(line.clone());
        if line.contains("press F8 within") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{seen:?}");
    }
    // Another key first: not the hotkey, ignored.
    stdin.write_all(b"x\x1b[19~").unwrap();
    stdin.flush().unwrap();
    loop {
        let line = lines.next().expect("client output").unwrap();
        seen.push(line.clone());
        if line.starts_with("choose 1-") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{seen:?}");
    }
    stdin.write_all(b"3").unwrap();
    drop(stdin);
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    let all = seen.join("\n");
    assert!(status.success(), "{all}");
    assert!(all.contains("hotkey pressed"), "{all}");
    assert!(all.contains("PREBOOT-MENU (3 entries)"), "{all}");
    assert!(all.contains("RESULT local-boot"), "{all}");
    assert_eq!(base_image(&disk), None, "no task ran");
}

/// §3.4: without auto-enrolment a key nobody bound is held pending: the
/// client gets no session and says that an administrator must bind its
/// key (printed on its console), not that the server did not answer.
#[test]
fn an_unbound_key_is_reported_pending() {
    let demo = Demo::start(|t| t.replace("auto_enrol = true", "auto_enrol = false"));
    let disk = demo.disk("pending");
    let o = demo.client(&disk, &["--mac", REGISTERED, "--step-limit", "6"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let r = result_line(&o);
    assert!(r.starts_with("RESULT failed step=session"), "{out}");
    assert!(r.contains("pending") && r.contains("bind"), "{r}");
    assert!(out.contains("this workstation's public key"), "{out}");
}

/// §4.5.1, §4.8.1 end to end: the demo's multicast session (members
/// demo-pc-02 and demo-pc-03, start at 2, poll 2 s), both played by one
/// client process. The first member to ask is told to wait and asks
/// again; the second one's join starts the session; both learn it started
/// (session, image, server, stream: in the log), run it and report; the
/// session is disabled: neither joins again, also after the server
/// restarted from its journal.
#[test]
fn multicast_members_wait_start_and_are_not_sent_again() {
    let mut demo = Demo::start(|t| t);
    let dir = demo.dir.join("room");
    std::fs::create_dir_all(&dir).unwrap();
    let o = demo
        .client_cmd(
            &dir,
            &[
                "--workstations",
                "2",
                "--mac",
                "52:54:00:00:00:02",
                "--multicast-wait",
                "60",
            ],
        )
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let out = text(&o);
    assert!(
        result_line(&o).contains("workstations=2 done=2 failed=0"),
        "{out}"
    );
    assert!(out.contains("2 × imaged"), "{out}");
    assert!(
        out.contains("session=demo-room role=member run=1 state=waiting (poll 2 s) joined=1 image=images/room.img server=127.0.0.1 stream=239.255.77.1:5077"),
        "{out}"
    );
    assert!(out.contains("asking again in 2 s"), "{out}");
    assert_eq!(
        out.matches("role=member run=1 state=started joined=2")
            .count(),
        2,
        "both learnt the start: {out}"
    );
    let (d2, d3) = (dir.join("525400000002.img"), dir.join("525400000003.img"));
    assert_eq!(base_image(&d2).as_deref(), Some("images/room.img"));
    assert_eq!(base_image(&d3).as_deref(), Some("images/room.img"));
    // Closed (disabled): the next boot of either has no task.
    let again = demo.client(&d2, &["--mac", "52:54:00:00:00:02"]);
    assert!(
        result_line(&again).contains("local-boot"),
        "{}",
        text(&again)
    );
    demo.restart();
    let again = demo.client(&d3, &["--mac", "52:54:00:00:00:03"]);
    let out = text(&again);
    assert!(result_line(&again).contains("local-boot"), "{out}");
    assert!(!out.contains("PREBOOT-MULTICAST"), "{out}");
}

/// Issue 15, menu choices act (§4.4 TLVs 7–8, §4.5): the server policy's
/// menu names a default entry, "disable the imaging partition"; a client
/// with no console and no preset takes it, says so in its `TaskQuery`,
/// and writes the server's `ImageSafeUpdate` (pending flag bit 3) into
/// its image-safe data, then boots the local disk.
#[test]
fn default_menu_entry_is_taken_and_its_change_written() {
    let demo = Demo::start(|t| {
        let from = "  { kind = \"boot-local\", label = \"Boot the local disk\" },\n]";
        assert!(t.contains(from), "the demo's menu changed");
        t.replace(
            r#"menu = { mode = "on-key-press", hotkey = "alt+m", wait_ms = 3000 }"#,
            r#"menu = { mode = "always" }"#,
        )
        .replace(
            from,
            "  { kind = \"boot-local\", label = \"Boot the local disk\" },\n  { kind = \"disable-imaging-partition\", label = \"Disable the imaging partition\" },\n]\nmenu_default = 4\nmenu_timeout_ms = 100",
        )
    });
    let disk = demo.disk("partition");
    let o = demo.client(&disk, &["--mac", "52:54:00:00:00:98"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("menu choice: ImagingPartition(false)"),
        "{out}"
    );
    assert!(result_line(&o).starts_with("RESULT local-boot"), "{out}");
    let slots = read_image_safe(&disk).unwrap();
    let pending = slots.loaded().record.pending;
    assert!(
        pending.has(preboot::wire::image_safe::PendingFlags::IMAGING_PARTITION_DISABLED),
        "{pending:?}: {out}"
    );
}

/// Issue 15, the server policy's IP pool: a workstation whose image-safe
/// data has no IP settings gets an address of the pool in the
/// `TaskReply` (§4.5 TLV 5), and the client writes it (static, with the
/// pool's netmask and gateway) into its image-safe data.
#[test]
fn ip_pool_address_is_written_into_image_safe_data() {
    let demo = Demo::start(|t| {
        let from = "image_server = \"127.0.0.1\"\n";
        assert!(t.contains(from), "the demo's server policy changed");
        t.replacen(
            from,
            "image_server = \"127.0.0.1\"\nip_pool = { range = \"10.9.0.10-10.9.0.20\", netmask = \"255.255.255.0\", gateway = \"10.9.0.1\" }\n",
            1,
        )
    });
    let disk = demo.disk("pool");
    let o = demo.client(&disk, &["--mac", "52:54:00:00:00:97"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let slots = read_image_safe(&disk).unwrap();
    let r = &slots.loaded().record;
    assert_eq!(
        (r.net_mode, r.address, r.netmask, r.gateway),
        (
            preboot::wire::transaction::messages::NetMode::Static,
            Some("10.9.0.10".parse().unwrap()),
            Some("255.255.255.0".parse().unwrap()),
            Some("10.9.0.1".parse().unwrap())
        ),
        "{out}"
    );
}
