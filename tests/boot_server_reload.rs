//! Reloading the policy store and the workstation keys of a running boot
//! server (issue 14: "`SIGHUP` reloads the policy store without dropping
//! transfers or sessions; a store that does not parse is refused with its
//! error and the old one kept"; `driver::boot_server::reload`).
//!
//! - the real `preboot-server` (built with `cargo build --example
//!   preboot-server`, on 127.0.0.1 only): a transaction client sees the
//!   old policy, the store file is rewritten and SIGHUP sent, the next
//!   query sees the new policy; a broken store + SIGHUP logs its
//!   file:line:column and the policy before it still answers; a changed
//!   port is logged as needing a restart;
//! - under load: a paced multi-MB TFTP download and an established
//!   transaction session keep going across 3 reloads (the file complete
//!   and identical; the session answers without a new handshake, and sees
//!   each new policy);
//! - in process, through `BootServer::reloader`: a task handed out before a
//!   reload is still reported, and a reload does not undo the report
//!   (unless the workstation's entry was edited); keys bound by
//!   auto-enrolment stay, keys the new file binds (and `auto_enrol =
//!   false`) take effect, and the counters count reloads and refusals;
//! - the policy layer's side (`ImagingProxy::replace_store`): live tasks
//!   keep their ids and multicast joins follow their session by name.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use preboot::Instant;
use preboot::driver::boot_server::{BootServer, ReloadError, config};
use preboot::driver::transaction::Urandom;
use preboot::engine::Datagram;
use preboot::fs::VecSink;
use preboot::transaction::{Client, ClientConfig, ClientEvent, HandshakeSeed, Random, StaticKey};
use preboot::wire::transaction::messages::{
    MenuMode, Outcome, TaskAction, TaskReport, WorkstationInfo,
};
use preboot::wire::transaction::{MAX_FRAME_LEN, MessageType, Status};

mod boot_server_support;
use boot_server_support::{Server, example, terminate};
#[path = "tftp_support/mod.rs"]
mod tftp_support;

/// The server key every test pins (a test key, published here).
const SERVER_PRIVATE: &str = "5f2e1c0b9a8877665544332211000fffeeddccbbaa99887766554433221100aa";
/// The registered workstation of every store version.
const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01];

fn free_port() -> u16 {
    UdpSocket::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn new_key() -> StaticKey {
    StaticKey::generate(&mut Urandom::open().unwrap()).unwrap()
}

fn server_public() -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, o) in b.iter_mut().enumerate() {
        *o = u8::from_str_radix(&SERVER_PRIVATE[2 * i..2 * i + 2], 16).unwrap();
    }
    StaticKey::from_bytes(b).unwrap().public()
}

/// The boot server's file: proxy mode on 127.0.0.1, every port free, the
/// policy in `policy.toml` beside it, keys inline (`keys`: the body of
/// `[transaction.keys]` after `server_private`).
fn server_config(boot_port: u16, client_port: u16, keys: &str) -> String {
    format!(
        r#"[server]
mode = "proxy"
server_ip = "127.0.0.1"
listen = "127.0.0.1"
broadcast_address = "127.0.0.1"
[ports]
dhcp = 0
boot = {boot_port}
tftp = 0
client = {client_port}
transaction = 0
[boot]
bios = "pxelinux.0"
[tftp]
root = "tftp"
loops = 2
[transaction]
store_file = "policy.toml"
[transaction.keys]
server_private = "{SERVER_PRIVATE}"
{keys}
"#
    )
}

/// Store version `generation`: the registered workstation's name, its
/// image (a pending restore) and the menu all say which version it is.
fn policy(generation: u32) -> String {
    let mode = if generation % 2 == 0 {
        "always"
    } else {
        "on-key-press"
    };
    format!(
        r#"[server]
image_server = "127.0.0.1"
menu = {{ mode = "{mode}", hotkey = "alt+m", wait_ms = {wait} }}

[[workstation]]
mac = "52:54:00:00:00:01"
name = "pc-v{generation}"
image_next_boot = true
image = "images/v{generation}.img"
"#,
        wait = 1000 + generation
    )
}

/// A tree: the config, the policy (version 0), a TFTP root with the boot
/// file and `big.bin` of `big` bytes.
fn tree(dir: &Path, keys: &str, big: usize) -> PathBuf {
    let tftp = dir.join("tftp");
    std::fs::create_dir(&tftp).unwrap();
    std::fs::write(tftp.join("pxelinux.0"), b"placeholder boot file").unwrap();
    std::fs::write(tftp.join("big.bin"), tftp_support::content(big)).unwrap();
    std::fs::write(dir.join("policy.toml"), policy(0)).unwrap();
    let path = dir.join("preboot.toml");
    std::fs::write(&path, server_config(free_port(), free_port(), keys)).unwrap();
    path
}

/// Rewrite a file the way an editor that saves in place does.
fn rewrite(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A transaction client on its own UDP socket, driven to its next event.
struct Conn {
    client: Client,
    sock: UdpSocket,
    epoch: std::time::Instant,
    /// Every event seen, in order.
    seen: Vec<ClientEvent>,
}

impl Conn {
    fn connect(server: SocketAddrV4, key: &StaticKey) -> Result<Conn, ClientEvent> {
        let mut random = Urandom::open().unwrap();
        let (mut nonce, mut fresh) = ([0u8; 16], [0u8; 32]);
        random.fill(&mut nonce);
        random.fill(&mut fresh);
        let seed = HandshakeSeed {
            nonce,
            ephemeral: key.hedged_ephemeral(&fresh, 1),
        };
        let mut cfg = ClientConfig::new(server, server_public(), key.clone());
        cfg.initial_rto = Duration::from_millis(100);
        cfg.max_rto = Duration::from_millis(200);
        let sock = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut conn = Conn {
            client: Client::new(cfg, seed, Instant::ZERO),
            sock,
            epoch: std::time::Instant::now(),
            seen: Vec::new(),
        };
        loop {
            match conn.step() {
                ClientEvent::Established { .. } => return Ok(conn),
                ClientEvent::Advisory { .. } => continue,
                ev => return Err(ev),
            }
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Send what the client has to send, receive, until its next event
    /// (at most 20 s).
    fn step(&mut self) -> ClientEvent {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let start = std::time::Instant::now();
        loop {
            let now = self.now();
            while let Some(t) = self.client.poll_transmit(now, &mut buf).unwrap() {
                self.sock.send_to(&buf[..t.len], t.remote).unwrap();
            }
            if let Some(e) = self.client.poll_event() {
                self.seen.push(e);
                return e;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no client event in 20 s"
            );
            let mut rx = [0u8; 2048];
            if let Ok((n, SocketAddr::V4(from))) = self.sock.recv_from(&mut rx) {
                let now = self.now();
                self.client.handle(
                    now,
                    Datagram {
                        local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                        remote: from,
                        payload: &rx[..n],
                    },
                );
            }
            let now = self.now();
            self.client.handle_timeout(now);
        }
    }

    /// Wait for the reply of type `want` to the outstanding request.
    fn reply(&mut self, want: MessageType) -> Result<(), String> {
        loop {
            match self.step() {
                ClientEvent::Reply { message_type } if message_type == want => return Ok(()),
                ClientEvent::Refused { request, status } => {
                    return Err(format!("{request:?} refused: {status:?}"));
                }
                ClientEvent::Failed { request } => return Err(format!("{request:?}: timeout")),
                _ => continue,
            }
        }
    }

    /// `WorkstationInfo` for `MAC`; the name the server knows it by.
    fn info(&mut self) -> Option<String> {
        let mut info = WorkstationInfo::default();
        info.macs.push(MAC).unwrap();
        info.ram_mb = Some(4096);
        self.client.send_info(self.now(), &info).unwrap();
        self.reply(MessageType::InfoAck).unwrap();
        let ack = self.client.info_ack().unwrap();
        ack.name.map(str::to_string)
    }

    /// The menu mode and wait the server sends now.
    fn menu(&mut self) -> (MenuMode, Option<u32>) {
        self.client.query_menu(self.now()).unwrap();
        self.reply(MessageType::MenuReply).unwrap();
        let m = self.client.menu_reply().unwrap();
        (m.mode, m.wait_ms)
    }

    /// The tasks the server hands out now: id and the image restored.
    fn tasks(&mut self) -> Vec<(u32, String)> {
        self.client.query_tasks(self.now()).unwrap();
        self.reply(MessageType::TaskReply).unwrap();
        let t = self.client.task_reply().unwrap();
        t.tasks
            .iter()
            .map(|t| match &t.action {
                TaskAction::RestoreImage { image, .. } => (t.id, image.to_string()),
                other => (t.id, format!("{other:?}")),
            })
            .collect()
    }

    /// Handshakes this client completed.
    fn handshakes(&self) -> usize {
        self.seen
            .iter()
            .filter(|e| matches!(e, ClientEvent::Established { .. }))
            .count()
    }
}

/// The `preboot-server` child, its addresses, and its log lines as they
/// come.
struct Child {
    server: Server,
    tftp: SocketAddr,
    transaction: SocketAddrV4,
    log: mpsc::Receiver<String>,
    /// Every log line read so far.
    seen: Vec<String>,
}

impl Child {
    fn start(config: &Path) -> Child {
        let mut child = Command::new(example())
            .args(["--config".as_ref(), config.as_os_str()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let server = Server(child);
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (otx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if otx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut tftp, mut transaction) = (None, None);
        let addr_after = |line: &str, key: &str| -> Option<String> {
            let rest = line.trim_start().strip_prefix(key)?.trim_start();
            let rest = rest.strip_prefix("udp ")?;
            Some(rest.split_whitespace().next()?.to_string())
        };
        loop {
            let line = out
                .recv_timeout(Duration::from_secs(60))
                .expect("preboot-server printed no `stop:` line in 60 s");
            if let Some(a) = addr_after(&line, "tftp:") {
                tftp = Some(a.parse().unwrap());
            }
            if let Some(a) = addr_after(&line, "transaction:") {
                transaction = Some(a.parse().unwrap());
            }
            if line.trim_start().starts_with("stop:") {
                break;
            }
        }
        Child {
            server,
            tftp: tftp.expect("a tftp: line"),
            transaction: transaction.expect("a transaction: line"),
            log,
            seen: Vec::new(),
        }
    }

    /// Send SIGHUP to the server (by its PID).
    fn hup(&self) {
        let pid = self.server.0.id().to_string();
        let sent = Command::new("kill").args(["-HUP", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -HUP {pid}");
    }

    /// The next log line containing `needle` (at most 20 s).
    fn wait_log(&mut self, needle: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            let left = Duration::from_secs(20).saturating_sub(start.elapsed());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?} in 20 s; log so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

const APPLIED: &str = "reload: policy store and workstation keys put in place";
const REFUSED: &str = "reload refused, the running policy store and keys stay";

/// The store file rewritten and SIGHUP: the next query sees the new
/// policy (menu, name, task); a broken store file and SIGHUP: the error
/// (file:line:column) is logged and the policy before it still answers; a
/// changed port is logged as needing a restart and the server goes on;
/// SIGTERM still stops it cleanly.
#[test]
fn sighup_reloads_the_store_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = tree(dir.path(), "auto_enrol = true", 1024);
    let store = dir.path().join("policy.toml");
    let mut child = Child::start(&config);
    let key = new_key();

    // Version 0.
    let mut c = Conn::connect(child.transaction, &key).unwrap();
    assert_eq!(c.info().as_deref(), Some("pc-v0"));
    assert_eq!(c.menu(), (MenuMode::Always, Some(1000)));
    let tasks = c.tasks();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].1, "images/v0.img");

    // Version 1 and SIGHUP: a new session sees it.
    rewrite(&store, &policy(1));
    child.hup();
    child.wait_log(APPLIED);
    let mut c = Conn::connect(child.transaction, &key).unwrap();
    assert_eq!(c.info().as_deref(), Some("pc-v1"));
    assert_eq!(c.menu(), (MenuMode::OnKeyPress, Some(1001)));
    let tasks = c.tasks();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].1, "images/v1.img");

    // A broken store: refused with file:line:column, version 1 answers.
    rewrite(
        &store,
        &policy(2).replace("mode = \"always\"", "mode = \"sometimes\""),
    );
    child.hup();
    let line = child.wait_log(REFUSED);
    let at = format!("{}:3:", store.display());
    assert!(line.contains(&at), "{line}: no {at}");
    assert!(line.contains("ERROR"), "{line}");
    let mut c = Conn::connect(child.transaction, &key).unwrap();
    assert_eq!(c.info().as_deref(), Some("pc-v1"));
    assert_eq!(c.menu(), (MenuMode::OnKeyPress, Some(1001)));

    // A store file that is gone: refused too, naming it.
    std::fs::remove_file(&store).unwrap();
    child.hup();
    let line = child.wait_log(REFUSED);
    assert!(line.contains("cannot read"), "{line}");
    assert_eq!(c.menu(), (MenuMode::OnKeyPress, Some(1001)));

    // A changed port with a good store: the store is reloaded, the port
    // is named as needing a restart (and stays).
    rewrite(&store, &policy(2));
    let text = std::fs::read_to_string(&config).unwrap();
    rewrite(&config, &text.replace("loops = 2", "loops = 1"));
    child.hup();
    let line = child.wait_log("tftp.loops changed");
    assert!(line.contains("restart the server"), "{line}");
    child.wait_log(APPLIED);
    assert_eq!(c.menu(), (MenuMode::Always, Some(1002)));
    let (data, _) = tftp_support::fetch(child.tftp, "big.bin", 1024, 1);
    assert_eq!(data, tftp_support::content(1024));

    let status = terminate(&mut child.server);
    assert!(status.success(), "{status}");
    // Counted: two put in place, two refused.
    let line = child.wait_log("stopped");
    assert!(line.contains("reloads=2 reloads_refused=2"), "{line}");
}

/// Issue 14, "SIGHUP reload under load": a multi-MB TFTP download, paced
/// so that it spans every reload (it may not finish before the third is in
/// place), and an established transaction session go on across 3 reloads:
/// the file arrives complete and identical, and the session answers every
/// query without a new handshake, each time with the new policy.
#[test]
fn reloads_under_load_keep_a_transfer_and_a_session() {
    const SIZE: usize = 6 * 1024 * 1024 + 123;
    let dir = tempfile::tempdir().unwrap();
    let config = tree(dir.path(), "auto_enrol = true", SIZE);
    let store = dir.path().join("policy.toml");
    let mut child = Child::start(&config);
    let key = new_key();
    let mut session = Conn::connect(child.transaction, &key).unwrap();
    assert_eq!(session.info().as_deref(), Some("pc-v0"));
    assert_eq!(session.menu(), (MenuMode::Always, Some(1000)));
    let id = session.client.session_id();

    // The download, allowed up to `budget` bytes at a time.
    let budget = Arc::new(AtomicUsize::new(SIZE / 4));
    let progress = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let fetch = {
        let (budget, progress, done) = (budget.clone(), progress.clone(), done.clone());
        let server = child.tftp;
        std::thread::spawn(move || {
            let data = paced_fetch(server, "big.bin", &budget, &progress);
            done.store(true, Ordering::Relaxed);
            data
        })
    };
    let wait_progress = |at_least: usize| {
        let start = std::time::Instant::now();
        while progress.load(Ordering::Relaxed) < at_least {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the download stalled at {} bytes",
                progress.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_progress(SIZE / 4);
    for generation in 1..=3u32 {
        // Let the download run on while the store is reloaded.
        budget.store(SIZE * (generation as usize + 1) / 5, Ordering::Relaxed);
        rewrite(&store, &policy(generation));
        child.hup();
        child.wait_log(APPLIED);
        assert!(
            !done.load(Ordering::Relaxed),
            "the download ended before reload {generation}"
        );
        // The same session, no new handshake, the new policy.
        let mode = if generation % 2 == 0 {
            MenuMode::Always
        } else {
            MenuMode::OnKeyPress
        };
        assert_eq!(session.menu(), (mode, Some(1000 + generation)));
        assert_eq!(session.info(), Some(format!("pc-v{generation}")));
        assert_eq!(session.client.session_id(), id);
        assert_eq!(session.handshakes(), 1, "{:?}", session.seen);
    }
    assert!(progress.load(Ordering::Relaxed) < SIZE);
    budget.store(usize::MAX, Ordering::Relaxed);
    let data = fetch.join().unwrap();
    assert_eq!(data.len(), SIZE);
    assert!(data == tftp_support::content(SIZE), "the file differs");
    // The session still answers, still without a new handshake.
    let tasks = session.tasks();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].1, "images/v3.img");
    assert_eq!(session.handshakes(), 1, "{:?}", session.seen);
    let status = terminate(&mut child.server);
    assert!(status.success(), "{status}");
    let line = child.wait_log("stopped");
    assert!(line.contains("reloads=3 reloads_refused=0"), "{line}");
}

/// Download `name`, holding the acknowledgements while more than `budget`
/// bytes have come (the server then waits, or retransmits); `progress`
/// says how many have. Bounded by 120 s.
fn paced_fetch(
    server: SocketAddr,
    name: &str,
    budget: &AtomicUsize,
    progress: &AtomicUsize,
) -> Vec<u8> {
    use preboot::tftp::client::{Client as TftpClient, ClientConfig as TftpConfig};
    let SocketAddr::V4(server) = server else {
        panic!("IPv4 server")
    };
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let SocketAddr::V4(local) = sock.local_addr().unwrap() else {
        panic!("IPv4 socket")
    };
    let config = TftpConfig {
        blksize: Some(1024),
        windowsize: Some(4),
        tsize: true,
        ..TftpConfig::default()
    };
    let epoch = std::time::Instant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut client = TftpClient::new(now(), server, name.as_bytes(), config, VecSink::default());
    let (mut buf, mut out) = (vec![0u8; 65536], vec![0u8; 600]);
    while !client.is_finished() {
        assert!(
            epoch.elapsed() < Duration::from_secs(120),
            "download unfinished after 120 s"
        );
        let have = client.sink().data.len();
        progress.store(have, Ordering::Relaxed);
        if have >= budget.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        while let Some(t) = client.poll_transmit(now(), &mut out).unwrap() {
            sock.send_to(&out[..t.len], t.remote).unwrap();
        }
        if client.sink().finished {
            break;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => client.handle(
                now(),
                Datagram {
                    local,
                    remote: from,
                    payload: &buf[..n],
                },
            ),
            Ok(_) => {}
            Err(_) => client.handle_timeout(now()),
        }
    }
    while let Some(t) = client.poll_transmit(now(), &mut out).unwrap() {
        sock.send_to(&out[..t.len], t.remote).unwrap();
    }
    let sink = client.into_sink();
    assert!(sink.finished, "{name}: unfinished");
    progress.store(sink.data.len(), Ordering::Relaxed);
    sink.data
}

/// In process, through `BootServer::reloader`: a task handed out before
/// the reload is still reported (its id stays live, §4.5); a key bound by
/// auto-enrolment before the reload still works, a key the new file binds
/// works, and with `auto_enrol = false` now an unknown key waits as
/// pending (§3.4); a file that does not parse is refused with its line,
/// and the counters say how many reloads were put in place and refused.
#[test]
fn reloader_keeps_live_tasks_and_enrolled_keys_and_takes_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = tree(dir.path(), "auto_enrol = true", 16);
    let c = config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    let server = BootServer::bind(c).unwrap_or_else(|e| panic!("{e}"));
    let Some(SocketAddr::V4(addr)) = server.transaction_addr() else {
        panic!("no transaction server")
    };
    let reloader = server.reloader().expect("a reloader");
    let counters = server.transaction_counters().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let running = std::thread::spawn(move || server.run(&flag));

    // Enrolled on first use; its task handed out.
    let enrolled = new_key();
    let mut a = Conn::connect(addr, &enrolled).unwrap();
    assert_eq!(a.info().as_deref(), Some("pc-v0"));
    let tasks = a.tasks();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let (task, _) = tasks[0].clone();

    // New store, a key bound in the file to another workstation, and
    // auto-enrolment off.
    let bound = new_key();
    let hex: String = bound.public().iter().map(|b| format!("{b:02x}")).collect();
    let text = std::fs::read_to_string(&config_path).unwrap().replace(
        "auto_enrol = true",
        &format!(
            "auto_enrol = false\nworkstation = [ {{ mac = \"52:54:00:00:00:02\", public = \"{hex}\" }} ]"
        ),
    );
    rewrite(&config_path, &text);
    rewrite(
        &dir.path().join("policy.toml"),
        &format!(
            "{}\n[[workstation]]\nmac = \"52:54:00:00:00:02\"\nname = \"pc-two\"\n",
            policy(1)
        ),
    );
    let r = reloader.reload().unwrap_or_else(|e| panic!("{e}"));
    assert!(r.applied, "{r:?}");
    assert_eq!(
        (r.workstations, r.keys, r.enrolled_kept),
        (2, 1, 1),
        "{r:?}"
    );
    assert!(r.restart_needed.is_empty(), "{r:?}");

    // The task handed out before the reload is reported in the same
    // session.
    let report = TaskReport {
        task_id: task,
        outcome: Outcome::Success,
        percent: Some(100),
        reason: None,
    };
    a.client.report(a.now(), &report).unwrap();
    a.reply(MessageType::ReportAck).unwrap();
    assert_eq!(a.handshakes(), 1);

    // The enrolled key in a new session; the bound key; an unknown key.
    let mut a2 = Conn::connect(addr, &enrolled).unwrap();
    assert_eq!(a2.info().as_deref(), Some("pc-v1"));
    Conn::connect(addr, &bound).unwrap();
    match Conn::connect(addr, &new_key()) {
        Err(ClientEvent::HandshakeRefused { status, .. }) => {
            assert_eq!(status, Status::Pending)
        }
        Err(other) => panic!("unknown key with auto_enrol off: {other:?}"),
        Ok(_) => panic!("unknown key with auto_enrol off: established"),
    }

    // A broken file: refused with its line; the store stays.
    let good = std::fs::read_to_string(&config_path).unwrap();
    rewrite(
        &config_path,
        &good.replace("store_file = \"policy.toml\"", "store_file = 7"),
    );
    match reloader.reload() {
        Err(ReloadError::Config(e)) => {
            assert_eq!(e.file, config_path);
            assert_eq!(e.field, "transaction.store_file", "{e}");
            assert_eq!(
                e.line,
                good.lines()
                    .position(|l| l.starts_with("store_file"))
                    .unwrap()
                    + 1
            );
        }
        other => panic!("a broken file reloaded: {other:?}"),
    }
    let mut a3 = Conn::connect(addr, &enrolled).unwrap();
    assert_eq!(a3.info().as_deref(), Some("pc-v1"));

    // A changed port: named, the store still reloaded.
    rewrite(&config_path, &good.replace("dhcp = 0", "dhcp = 1"));
    let r = reloader.reload().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.restart_needed, vec!["ports.dhcp".to_string()], "{r:?}");

    // Named again at the next reload: it still runs with the old value.
    let r = reloader.reload().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.restart_needed, vec!["ports.dhcp".to_string()], "{r:?}");

    // The restore reported above stays done across reloads that leave the
    // workstation's entry as it was (a reload does not undo a report and
    // image the disk again)...
    let mut a4 = Conn::connect(addr, &enrolled).unwrap();
    assert_eq!(a4.info().as_deref(), Some("pc-v1"));
    assert_eq!(a4.tasks(), vec![]);
    // ...and an edited entry is taken as written.
    rewrite(
        &dir.path().join("policy.toml"),
        &format!(
            "{}\n[[workstation]]\nmac = \"52:54:00:00:00:02\"\nname = \"pc-two\"\n",
            policy(3)
        ),
    );
    let r = reloader.reload().unwrap_or_else(|e| panic!("{e}"));
    assert!(r.applied, "{r:?}");
    let tasks = a4.tasks();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].1, "images/v3.img");

    let stats = counters.snapshot();
    assert_eq!((stats.reloads, stats.reloads_refused), (4, 1), "{stats:?}");
    stop.store(true, Ordering::Relaxed);
    let summary = running.join().unwrap().unwrap();
    assert_eq!(summary.transaction.reloads, 4);
}

/// `ImagingProxy::replace_store`, what a reload does to the policy layer:
/// a live multicast task keeps its id when its session moved in the new
/// store (it follows the session by name, §4.5), the joins move with it,
/// a session that is new starts empty, and the task is still reported.
#[test]
fn a_store_swap_keeps_task_ids_and_moves_joins_by_session_name() {
    use preboot::policy::{
        AfterRun, ImagingProxy, LateJoin, MemoryStore, MulticastSession, WorkstationId,
    };
    use preboot::transaction::Policy;
    let session = |name: &str, member: [u8; 6]| MulticastSession {
        name: name.into(),
        enabled: true,
        image: Some("images/mc.img".into()),
        master: None,
        members: vec![WorkstationId::Mac(member)],
        member_rule: None,
        group: Ipv4Addr::new(239, 0, 0, 1),
        port: 6000,
        start_members: 2,
        start_after_secs: 120,
        poll_secs: 30,
        timeout_secs: 0,
        after: AfterRun::Disable,
        late: LateJoin::Refuse,
    };
    let (m1, m2) = (MAC, [0x52, 0x54, 0, 0, 0, 0x02]);
    let info = |mac: [u8; 6]| {
        let mut i = WorkstationInfo::default();
        i.macs.push(mac).unwrap();
        i
    };
    let task_of = |p: &mut ImagingProxy<MemoryStore>, mac: [u8; 6]| -> (u32, String) {
        let i = info(mac);
        let reply = p
            .tasks(Instant::ZERO, &WorkstationId::Mac(mac), &i)
            .unwrap();
        assert_eq!(reply.tasks.len(), 1, "{mac:?}");
        match &reply.tasks[0].action {
            TaskAction::JoinMulticast { session, .. } => (reply.tasks[0].id, session.to_string()),
            other => panic!("{other:?}"),
        }
    };
    let mut p = ImagingProxy::new(MemoryStore {
        multicast: vec![session("a", m1), session("b", m2)],
        ..MemoryStore::default()
    });
    let (id1, s1) = task_of(&mut p, m1);
    let (id2, s2) = task_of(&mut p, m2);
    assert_eq!((s1.as_str(), s2.as_str()), ("a", "b"));

    p.replace_store(
        Instant::ZERO,
        MemoryStore {
            multicast: vec![session("new", m2), session("b", m2), session("a", m1)],
            ..MemoryStore::default()
        },
    )
    .unwrap();
    assert!(p.joined(0).is_empty(), "a new session starts empty");
    assert_eq!(p.joined(1), &[WorkstationId::Mac(m2)]);
    assert_eq!(p.joined(2), &[WorkstationId::Mac(m1)]);
    // The same tasks, the same ids, in their sessions' new places.
    assert_eq!(task_of(&mut p, m1), (id1, "a".to_string()));
    assert_eq!(p.joined(2), &[WorkstationId::Mac(m1)], "joined once");
    let report = TaskReport {
        task_id: id1,
        outcome: Outcome::Success,
        percent: Some(100),
        reason: None,
    };
    p.report(Instant::ZERO, &WorkstationId::Mac(m1), &info(m1), &report)
        .unwrap();
    // m2 is in "new" (index 0) now, before "b": a new decision, a new id.
    let (id, s) = task_of(&mut p, m2);
    assert_eq!(s, "new");
    assert_ne!(id, id2);
}

/// The handoff's wake-up: a service is told (`Service::woken`) when another
/// thread wakes its loop with the registrar's waker, and not on the loop's
/// other turns (every 100 ms at most).
#[test]
fn a_waker_from_the_registrar_reaches_the_service() {
    use preboot::driver::event_loop::mio::Waker;
    use preboot::driver::event_loop::{EventLoop, LoopGroup, Registrar, Service};
    use std::sync::Mutex;

    struct Nudged {
        woken: Arc<AtomicUsize>,
        waker: Arc<Mutex<Option<Arc<Waker>>>>,
    }
    impl Service for Nudged {
        fn start(&mut self, registrar: Registrar) -> std::io::Result<()> {
            *self.waker.lock().unwrap() = Some(registrar.waker());
            Ok(())
        }
        fn ready(&mut self, _token: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn handle_timeout(&mut self, _now: Instant) -> std::io::Result<()> {
            Ok(())
        }
        fn woken(&mut self) -> std::io::Result<()> {
            self.woken.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    let woken = Arc::new(AtomicUsize::new(0));
    let waker = Arc::new(Mutex::new(None));
    let mut l = EventLoop::new("woken").unwrap();
    l.add(Box::new(Nudged {
        woken: woken.clone(),
        waker: waker.clone(),
    }))
    .unwrap();
    let running = LoopGroup::new(vec![l]).spawn().unwrap();
    // A few idle turns: nobody woke it.
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(woken.load(Ordering::Relaxed), 0);
    let w = waker
        .lock()
        .unwrap()
        .clone()
        .expect("the registrar's waker");
    w.wake().unwrap();
    let start = std::time::Instant::now();
    while woken.load(Ordering::Relaxed) == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "never woken");
        std::thread::sleep(Duration::from_millis(5));
    }
    running.stop().unwrap();
}

/// Keys no one has bound wait in `<server.state_dir>/pending-keys.toml`
/// (docs/transaction-protocol.md §3.4): an unknown key's handshake is
/// answered `Pending` and the key is written there with the address it
/// came from; the list survives a restart of the server; a reload that
/// binds the key takes it off the list, and the key then works.
#[test]
fn pending_keys_are_kept_in_the_state_dir_and_leave_it_when_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = tree(dir.path(), "auto_enrol = false", 16);
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let text = std::fs::read_to_string(&config_path).unwrap().replacen(
        "[server]\n",
        "[server]\nstate_dir = \"state\"\n",
        1,
    );
    rewrite(&config_path, &text);
    let list = dir.path().join("state").join(config::PENDING_KEYS_FILE);
    let run = || {
        let c = config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
        let server = BootServer::bind(c).unwrap_or_else(|e| panic!("{e}"));
        let Some(SocketAddr::V4(addr)) = server.transaction_addr() else {
            panic!("no transaction server")
        };
        let reloader = server.reloader().expect("a reloader");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let running = std::thread::spawn(move || server.run(&flag));
        (addr, reloader, stop, running)
    };
    // The list is written right after the answer goes out: wait for it.
    let read_when = |what: &dyn Fn(&str) -> bool| {
        let start = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(&list).unwrap_or_default();
            if what(&text) || start.elapsed() > Duration::from_secs(5) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let pending = |addr, key: &StaticKey| match Conn::connect(addr, key) {
        Err(ClientEvent::HandshakeRefused { status, .. }) => status == Status::Pending,
        _ => false,
    };

    let (addr, _, stop, running) = run();
    let waiting = new_key();
    let hex: String = waiting
        .public()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!list.exists(), "a list before any pending key");
    assert!(pending(addr, &waiting));
    let text = read_when(&|t| t.contains(&hex));
    assert!(text.contains(&format!("public = \"{hex}\"")), "{text}");
    assert!(text.contains("from = \"127.0.0.1:"), "{text}");
    stop.store(true, Ordering::Relaxed);
    running.join().unwrap().unwrap();

    // A restart keeps the list; a second unknown key joins it.
    let (addr, reloader, stop, running) = run();
    let other = new_key();
    assert!(pending(addr, &other));
    let text = read_when(&|t| t.matches("[[pending]]").count() == 2);
    assert_eq!(text.matches("[[pending]]").count(), 2, "{text}");
    assert!(text.contains(&hex), "{text}");

    // Bound by the administrator and reloaded: off the list, and it works.
    let text = std::fs::read_to_string(&config_path).unwrap().replace(
        "auto_enrol = false",
        &format!(
            "auto_enrol = false\nworkstation = [ {{ mac = \"52:54:00:00:00:01\", public = \"{hex}\" }} ]"
        ),
    );
    rewrite(&config_path, &text);
    let r = reloader.reload().unwrap_or_else(|e| panic!("{e}"));
    assert!(r.applied, "{r:?}");
    let text = std::fs::read_to_string(&list).unwrap();
    assert!(!text.contains(&hex), "a bound key still listed:\n{text}");
    assert_eq!(text.matches("[[pending]]").count(), 1, "{text}");
    let mut c = Conn::connect(addr, &waiting).unwrap();
    assert_eq!(c.info().as_deref(), Some("pc-v0"));
    stop.store(true, Ordering::Relaxed);
    running.join().unwrap().unwrap();
}
