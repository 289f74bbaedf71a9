//! The transaction server inside the boot server (issue 14, first slice):
//! `BootServer` binds it from the `[transaction]` table and runs it on the
//! first event loop beside DHCP; a protocol v2 client (`transaction::Client`
//! on a real UDP socket, 127.0.0.1 only) goes through the handshake,
//! `WorkstationInfo`, the menu, `TaskQuery` and `TaskReport` against it.
//!
//! - a registered workstation gets its pending task, and its report is
//!   recorded;
//! - an unregistered one under auto-enrolment gets the server policy;
//! - a client pinning another server key fails with a clear error and the
//!   server's state does not change;
//! - keys bound in the store file, a key nobody bound (pending), and a
//!   server key made in the state directory and kept across restarts;
//! - errors in `[transaction]` name the file, line and field;
//! - the DHCP answers name the running transaction server (option 43
//!   sub-options 128 and 129: `server_ip`, the bound port, the public key),
//!   and a client that learnt them there completes the handshake; with
//!   `transaction.advertise = false` they name none.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use preboot::Instant;
use preboot::driver::boot_server::config;
use preboot::driver::boot_server::{BootServer, BootServerError, KeyOrigin, RunSummary};
use preboot::driver::transaction::{TransactionCounters, Urandom};
use preboot::engine::Datagram;
use preboot::transaction::{
    Client, ClientConfig, ClientEvent, HandshakeSeed, Hex, Random, StaticKey,
};
use preboot::wire::transaction::messages::{
    Hotkey, MenuMode, Outcome, TaskAction, TaskReport, WorkstationInfo,
};
use preboot::wire::transaction::multicast::{MulticastRole, MulticastState};
use preboot::wire::transaction::{MAX_FRAME_LEN, MessageType};

#[path = "../examples/preboot-server/demo.rs"]
mod demo;
use demo::{DEFAULT_CONFIG, DEMO_IMAGING, DemoTree, demo_file};

/// The demo's registered workstation (a pending restore task).
const REGISTERED: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01];
/// A workstation the demo's store does not know.
const STRANGER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x99];

fn new_key() -> StaticKey {
    StaticKey::generate(&mut Urandom::open().unwrap()).unwrap()
}

/// A port that was free a moment ago (proxy mode needs a boot server
/// port; 0 would mean none).
fn free_port() -> u16 {
    UdpSocket::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A boot server running on a thread of its own.
struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<RunSummary, BootServerError>>,
    addr: SocketAddrV4,
    public_key: [u8; 32],
    counters: Arc<TransactionCounters>,
    describe: Vec<String>,
    origin: KeyOrigin,
    dhcp_port: u16,
    boot_port: u16,
}

impl Running {
    fn start(config: &Path) -> Running {
        let c = config::load(config).unwrap_or_else(|e| panic!("{e}"));
        let server = BootServer::bind(c).unwrap_or_else(|e| panic!("{e}"));
        let Some(SocketAddr::V4(addr)) = server.transaction_addr() else {
            panic!("no transaction server: {:?}", server.describe())
        };
        assert_ne!(addr.port(), 0, "the real port, not the configured 0");
        let public_key = server.transaction_public_key().unwrap();
        let counters = server.transaction_counters().unwrap();
        let describe = server.describe();
        let origin = server.transaction_key_origin().unwrap().clone();
        let dhcp_port = server.dhcp_addr().port();
        let boot_port = server.boot_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || server.run(&flag));
        Running {
            stop,
            thread,
            addr,
            public_key,
            counters,
            describe,
            origin,
            dhcp_port,
            boot_port,
        }
    }

    fn stop(self) -> RunSummary {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap().unwrap()
    }
}

/// The demo tree of the embedded default with every port 0 (the boot
/// server port a free one), so that tests run side by side.
fn demo_on_free_ports(parent: &Path) -> DemoTree {
    let tree = DemoTree::create(parent).unwrap();
    let mut text = DEFAULT_CONFIG.to_string();
    for (from, to) in [
        ("dhcp = 6767", "dhcp = 0".to_string()),
        ("boot = 14011", format!("boot = {}", free_port())),
        ("tftp = 6969", "tftp = 0".to_string()),
        ("transaction = 14012", "transaction = 0".to_string()),
    ] {
        assert!(text.contains(from), "{from} not in the embedded default");
        text = text.replace(from, &to);
    }
    std::fs::write(tree.config_path(), text).unwrap();
    tree
}

/// A transaction client on its own UDP socket, driven to its next event.
struct Conn {
    client: Client,
    sock: UdpSocket,
    epoch: std::time::Instant,
}

/// Why a client gave up, in the words a preboot client would print.
fn handshake_error(server: SocketAddrV4, pinned: &[u8; 32], ev: ClientEvent) -> String {
    match ev {
        ClientEvent::Failed {
            request: MessageType::Init,
        } => format!(
            "the transaction server at {server} answered Hello but never the handshake: it does not hold the key pinned here ({}); check the server key the client pins",
            Hex(pinned)
        ),
        ClientEvent::Failed { request } => {
            format!("no answer from the transaction server at {server} ({request:?})")
        }
        ClientEvent::HandshakeRefused { status, .. } => {
            format!("the transaction server at {server} refused the handshake: {status:?}")
        }
        other => format!("unexpected {other:?}"),
    }
}

impl Conn {
    /// Handshake with the server at `server`, pinning `pinned`; fast
    /// timers (100 ms, at most 200 ms) keep a failing case short.
    fn connect(server: SocketAddrV4, pinned: [u8; 32], key: &StaticKey) -> Result<Conn, String> {
        let mut random = Urandom::open().unwrap();
        let (mut nonce, mut fresh) = ([0u8; 16], [0u8; 32]);
        random.fill(&mut nonce);
        random.fill(&mut fresh);
        let seed = HandshakeSeed {
            nonce,
            ephemeral: key.hedged_ephemeral(&fresh, 1),
        };
        let mut cfg = ClientConfig::new(server, pinned, key.clone());
        cfg.initial_rto = Duration::from_millis(100);
        cfg.max_rto = Duration::from_millis(200);
        let mut conn = Conn {
            client: Client::new(cfg, seed, Instant::ZERO),
            sock: UdpSocket::bind(("127.0.0.1", 0)).unwrap(),
            epoch: std::time::Instant::now(),
        };
        loop {
            match conn.step() {
                ClientEvent::Established { .. } => return Ok(conn),
                ClientEvent::Advisory { .. } => continue,
                ev => return Err(handshake_error(server, &pinned, ev)),
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
        let deadline = self.epoch.elapsed() + Duration::from_secs(20);
        self.sock
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        loop {
            let now = self.now();
            while let Some(t) = self.client.poll_transmit(now, &mut buf).unwrap() {
                self.sock.send_to(&buf[..t.len], t.remote).unwrap();
            }
            if let Some(e) = self.client.poll_event() {
                return e;
            }
            assert!(self.epoch.elapsed() < deadline, "no client event in 20 s");
            let mut rx = [0u8; 2048];
            if let Ok((n, SocketAddr::V4(from))) = self.sock.recv_from(&mut rx) {
                let now = self.now();
                self.client.handle(
                    now,
                    Datagram {
                        local: SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
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
}

/// What one workstation learned, and what it reported.
#[derive(Debug)]
struct Flow {
    registered: bool,
    name: Option<String>,
    menu: MenuMode,
    hotkey: Option<Hotkey>,
    wait_ms: Option<u32>,
    menu_entries: usize,
    /// Task id and what it says.
    tasks: Vec<(u32, String)>,
    /// Kernel and initrd of the imaging environment.
    environment: Option<(String, String)>,
}

/// Handshake → WorkstationInfo → MenuQuery → TaskQuery → a successful
/// TaskReport for every task.
fn boot(
    server: SocketAddrV4,
    pinned: [u8; 32],
    key: &StaticKey,
    mac: [u8; 6],
) -> Result<Flow, String> {
    let mut c = Conn::connect(server, pinned, key)?;
    let mut info = WorkstationInfo::default();
    info.macs.push(mac).unwrap();
    info.ram_mb = Some(4096);
    c.client.send_info(c.now(), &info).unwrap();
    c.reply(MessageType::InfoAck)?;
    let ack = c.client.info_ack().unwrap();
    let (registered, name) = (ack.registered, ack.name.map(str::to_string));
    c.client.query_menu(c.now()).unwrap();
    c.reply(MessageType::MenuReply)?;
    let m = c.client.menu_reply().unwrap();
    let (menu, hotkey, wait_ms, menu_entries) = (m.mode, m.hotkey, m.wait_ms, m.entries.len());
    drop(m);
    c.client.query_tasks(c.now()).unwrap();
    c.reply(MessageType::TaskReply)?;
    let t = c.client.task_reply().unwrap();
    let tasks: Vec<(u32, String)> = t
        .tasks
        .iter()
        .map(|t| {
            let what = match &t.action {
                TaskAction::RestoreImage { image, .. } => format!("restore {image}"),
                TaskAction::CreateImage { target, .. } => format!("create {target}"),
                TaskAction::JoinMulticast { session, .. } => format!("join {session}"),
                TaskAction::Maintenance { .. } => "maintenance".to_string(),
                other => format!("{other:?}"),
            };
            (t.id, what)
        })
        .collect();
    let environment = t
        .environment
        .as_ref()
        .map(|e| (e.kernel.to_string(), e.initrd.to_string()));
    drop(t);
    for (id, _) in &tasks {
        let report = TaskReport {
            task_id: *id,
            outcome: Outcome::Success,
            percent: Some(100),
            reason: None,
        };
        c.client.report(c.now(), &report).unwrap();
        c.reply(MessageType::ReportAck)?;
    }
    Ok(Flow {
        registered,
        name,
        menu,
        hotkey,
        wait_ms,
        menu_entries,
        tasks,
        environment,
    })
}

/// (a) The embedded default's registered workstation: its pending restore
/// task is handed out and its report recorded; its menu comes from its
/// workstation policy ("always"). Its key is bound on first use
/// (auto-enrolment, as the demo says).
#[test]
fn registered_workstation_gets_its_pending_task_and_its_report_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let tree = demo_on_free_ports(dir.path());
    let server = Running::start(tree.config_path());
    // The demo's key is the one its configuration names.
    let demo_key = "fc78df667b75665aa59ed6ab4ee3b59d91efa625fece523348d5d50bdc3e943a";
    assert_eq!(
        Hex(&server.public_key).to_string(),
        "fe760e6a45a1d2ac407d0bc5408182b49186bfffbbceb632eade831b438aeb05",
        "the public half of {demo_key}"
    );
    let d = &server.describe;
    assert!(
        d.iter()
            .any(|l| l.starts_with("transaction: ") && l.contains(&server.addr.to_string())),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|l| l.starts_with("server key:  ")
                && l.contains(&Hex(&server.public_key).to_string())),
        "{d:?}"
    );
    assert!(
        d.iter().any(|l| l.starts_with("policy: ")
            && l.contains("1 workstations")
            && l.contains("auto-enrol on")),
        "{d:?}"
    );

    let key = new_key();
    let flow = boot(server.addr, server.public_key, &key, REGISTERED).unwrap();
    assert!(flow.registered, "{flow:?}");
    assert_eq!(flow.name.as_deref(), Some("demo-pc-01"));
    assert_eq!(flow.menu, MenuMode::Always, "the workstation policy's menu");
    assert_eq!(flow.tasks.len(), 1, "{flow:?}");
    assert_eq!(flow.tasks[0].1, "restore images/lab.img");
    assert_eq!(
        flow.environment,
        Some(("imaging/linux".to_string(), "imaging/initrd".to_string()))
    );
    // The demo tree holds the environment it names.
    for (name, size) in DEMO_IMAGING {
        assert_eq!(
            std::fs::read(tree.root().join(name)).unwrap(),
            demo_file(name, size)
        );
    }
    let live = server.counters.snapshot();
    assert_eq!(live.sessions_established, 1);
    assert_eq!(live.keys_enrolled, 1, "bound on first use");
    let summary = server.stop();
    assert_eq!(summary.transaction.tasks_reported, 1, "{summary:?}");
    assert_eq!(summary.transaction.refused, 0, "{summary:?}");
}

/// (b) A workstation the store does not know, under auto-enrolment: its
/// key is bound to its MAC, and everything comes from the server policy
/// (the menu on Alt+M, the rule for a disk with no image yet).
#[test]
fn unregistered_workstation_falls_back_to_the_server_policy() {
    let dir = tempfile::tempdir().unwrap();
    let tree = demo_on_free_ports(dir.path());
    let server = Running::start(tree.config_path());
    let flow = boot(server.addr, server.public_key, &new_key(), STRANGER).unwrap();
    assert!(!flow.registered, "{flow:?}");
    assert_eq!(flow.name, None);
    assert_eq!(flow.menu, MenuMode::OnKeyPress, "the server policy's menu");
    assert_eq!(
        flow.hotkey,
        Some(Hotkey {
            modifiers: Hotkey::ALT,
            key: b'm'
        })
    );
    assert_eq!(flow.wait_ms, Some(3000));
    assert_eq!(flow.menu_entries, 3);
    assert_eq!(
        flow.tasks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(),
        ["restore images/standard.img"],
        "the server rule for a disk with no image"
    );
    let summary = server.stop();
    let t = summary.transaction;
    assert_eq!((t.keys_enrolled, t.tasks_reported), (1, 1), "{t:?}");
}

/// (c) A client that pins another server key: the handshake never
/// completes, the client says why, and the server keeps nothing: no
/// session, no key bound, no task handed out (the workstation's first real
/// boot afterwards gets task id 1 and is enrolled then).
#[test]
fn wrong_pinned_server_key_fails_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tree = demo_on_free_ports(dir.path());
    let server = Running::start(tree.config_path());
    let key = new_key();
    let wrong = new_key().public();
    let err = match Conn::connect(server.addr, wrong, &key) {
        Ok(_) => panic!("a handshake with the wrong pinned key completed"),
        Err(e) => e,
    };
    assert!(err.contains("never the handshake"), "{err}");
    assert!(err.contains(&Hex(&wrong).to_string()), "{err}");
    let after = server.counters.snapshot();
    assert!(after.handshakes_failed >= 1, "{after:?}");
    assert_eq!(after.sessions_established, 0, "{after:?}");
    assert_eq!(after.keys_enrolled, 0, "{after:?}");
    assert_eq!(after.keys_pending, 0, "{after:?}");
    assert_eq!(after.tasks_reported, 0, "{after:?}");

    let flow = boot(server.addr, server.public_key, &key, REGISTERED).unwrap();
    assert_eq!(flow.tasks.len(), 1, "{flow:?}");
    assert_eq!(flow.tasks[0].0, 1, "no task was handed out before");
    let t = server.stop().transaction;
    assert_eq!((t.sessions_established, t.keys_enrolled), (1, 1), "{t:?}");
}

const POLICY: &str = r#"
[server]
menu = { mode = "never" }

[[workstation]]
mac = "52:54:00:00:00:07"
name = "bound-pc"
maintenance = true

[keys]
auto_enrol = false
workstation = [ { mac = "52:54:00:00:00:07", public = "PUBLIC" } ]
"#;

/// A configuration of its own (no TFTP: the transaction server shares the
/// DHCP loop): the store and the bindings in a file it names, no server key
/// configured, so the server makes one in its state directory and keeps
/// it. A bound key boots; a key nobody bound waits as pending.
#[test]
fn store_file_bindings_and_a_server_key_kept_in_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let bound = new_key();
    std::fs::write(
        dir.path().join("policy.toml"),
        POLICY.replace("PUBLIC", &Hex(&bound.public()).to_string()),
    )
    .unwrap();
    let config = dir.path().join("preboot.toml");
    let boot_port = free_port();
    std::fs::write(
        &config,
        format!(
            "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\nbroadcast_address = \"127.0.0.1\"\nstate_dir = \"state\"\n\
             [ports]\ndhcp = 0\nboot = {boot_port}\ntransaction = 0\n\
             [boot]\nbios = \"pxelinux.0\"\n[tftp]\nenabled = false\n\
             [transaction]\nstore_file = \"policy.toml\"\n"
        ),
    )
    .unwrap();
    let key_file = dir.path().join("state/transaction.key");

    let server = Running::start(&config);
    assert_eq!(server.origin, KeyOrigin::Made(key_file.clone()));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the server reads its key");
    }
    assert!(
        server
            .describe
            .iter()
            .any(|l| l.contains("made now") && l.contains("transaction.key")),
        "{:?}",
        server.describe
    );
    let flow = boot(
        server.addr,
        server.public_key,
        &bound,
        [0x52, 0x54, 0, 0, 0, 7],
    )
    .unwrap();
    assert!(flow.registered);
    assert_eq!(flow.name.as_deref(), Some("bound-pc"));
    assert_eq!(flow.menu, MenuMode::Never);
    assert_eq!(flow.tasks.len(), 1);
    assert_eq!(flow.tasks[0].1, "maintenance");
    // auto_enrol = false: another key is recorded as pending.
    let err = Conn::connect(server.addr, server.public_key, &new_key())
        .err()
        .expect("an unbound key is not let in");
    assert!(err.contains("Pending"), "{err}");
    let first_key = server.public_key;
    let t = server.stop().transaction;
    assert_eq!((t.tasks_reported, t.keys_pending), (1, 1), "{t:?}");
    assert_eq!(t.keys_enrolled, 0);

    // The next start keeps the key.
    let server = Running::start(&config);
    assert_eq!(server.origin, KeyOrigin::Kept(key_file.clone()));
    assert_eq!(server.public_key, first_key);
    server.stop();

    // A damaged key file is not replaced: the start fails naming it.
    std::fs::write(&key_file, "not a key\n").unwrap();
    let c = config::load(&config).unwrap();
    let err = BootServer::bind(c).unwrap_err().to_string();
    assert!(err.contains("transaction.key"), "{err}");
    assert!(err.contains("not replaced"), "{err}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), "not a key\n");
}

const BASE: &str = "[server]\nserver_ip = \"127.0.0.1\"\n[boot]\nbios = \"pxelinux.0\"\n[tftp]\nenabled = false\n[transaction]\n";

/// Errors in `[transaction]` name the file, the line and the field, like
/// every other part of the configuration; those in the store file name
/// that file.
#[test]
fn transaction_config_errors_name_file_line_and_field() {
    let key = Hex(&new_key().public()).to_string();
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (
            "stor_file = \"policy.toml\"\n".into(),
            8,
            "transaction.stor_file",
            "unknown key `stor_file`",
        ),
        (
            "[transaction.keys]\nserver_private = \"correct horse battery staple\"\n".into(),
            9,
            "transaction.keys.server_private",
            "passphrases are not accepted",
        ),
        (
            format!("[transaction.keys]\nserver_private = \"{key}\"\nauto_enrol = \"yes\"\n"),
            10,
            "transaction.keys.auto_enrol",
            "true or false",
        ),
        (
            format!(
                "[transaction.keys]\nserver_private = \"{key}\"\n[[transaction.store.workstation]]\nmac = \"52:54:00:00:00:zz\"\nname = \"x\"\n"
            ),
            11,
            "transaction.store.workstation.mac",
            "MAC address",
        ),
        (
            format!(
                "[transaction.keys]\nserver_private = \"{key}\"\n[transaction.store.server]\nmenu = {{ mode = \"sometimes\" }}\n"
            ),
            11,
            "transaction.store.server.menu.mode",
            "on-key-press",
        ),
        ("enabled = true\n".into(), 7, "transaction", "no server key"),
        (
            format!("advertise = \"yes\"\n[transaction.keys]\nserver_private = \"{key}\"\n"),
            8,
            "transaction.advertise",
            "true or false",
        ),
    ];
    // transaction.advertise: true unless set to false.
    for (tail, advertise) in [
        ("", true),
        ("advertise = false\n", false),
        ("advertise = true\n", true),
    ] {
        let text = format!("{BASE}{tail}[transaction.keys]\nserver_private = \"{key}\"\n");
        let c = config::parse(Path::new("/etc/preboot/preboot.toml"), &text)
            .unwrap_or_else(|e| panic!("{text}\n→ {e}"));
        assert_eq!(c.transaction.unwrap().advertise, advertise, "{text}");
    }
    for (tail, line, field, words) in &cases {
        let text = format!("{BASE}{tail}");
        let e = config::parse(Path::new("/etc/preboot/preboot.toml"), &text)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert_eq!((e.line, e.field.as_str()), (*line, *field), "{text}\n→ {e}");
        assert!(e.message.contains(words), "{text}\n→ {e}");
        assert!(
            e.to_string().starts_with("/etc/preboot/preboot.toml:"),
            "{e}"
        );
    }

    // The store file's own errors name it, its line and its field.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        "[server]\nimage_server = \"10.0.0.5\"\n\n[[workstation]]\nmac = \"52:54:00:00:00:01\"\nname = \"a\"\npolicy = \"nope\"\n",
    )
    .unwrap();
    let text = format!("{BASE}store_file = \"policy.toml\"\nserver_key_file = \"k\"\n");
    let e = config::parse(&dir.path().join("p.toml"), &text).unwrap_err();
    assert_eq!(e.file, dir.path().join("policy.toml"), "{e}");
    assert_eq!((e.line, e.field.as_str()), (7, "workstation.policy"), "{e}");

    // Keys in both places, and a port used twice.
    std::fs::write(
        dir.path().join("policy.toml"),
        format!("[keys]\nserver_private = \"{key}\"\n"),
    )
    .unwrap();
    let text =
        format!("{BASE}store_file = \"policy.toml\"\n[transaction.keys]\nauto_enrol = true\n");
    let e = config::parse(&dir.path().join("p.toml"), &text).unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (9, "transaction.keys"), "{e}");
    assert!(e.message.contains("given twice"), "{e}");
    let text = format!("{BASE}store_file = \"policy.toml\"\n")
        .replace("[server]\n", "[ports]\ntftp = 4012\n[server]\n")
        .replace("enabled = false", "root = \"/srv/tftp\"");
    let e = config::parse(&dir.path().join("p.toml"), &text).unwrap_err();
    assert_eq!(e.field, "ports.tftp", "{e}");
    assert!(e.message.contains("ports.transaction"), "{e}");

    // Without a [transaction] table there is no transaction server.
    let c = config::parse(
        Path::new("p.toml"),
        BASE.trim_end_matches("[transaction]\n"),
    )
    .unwrap();
    assert!(c.transaction.is_none());
    let c = config::parse(Path::new("p.toml"), &format!("{BASE}enabled = false\n")).unwrap();
    assert!(c.transaction.is_none());
}

/// The embedded default says what the demo prints: the transaction server
/// on 14012 with its demo policy and auto-enrolment on.
#[test]
fn embedded_default_has_the_demo_policy() {
    let dir = tempfile::tempdir().unwrap();
    let tree = DemoTree::create(dir.path()).unwrap();
    let c = config::load(tree.config_path()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let t = c.transaction.as_ref().expect("a transaction server");
    assert_eq!(t.bind, "127.0.0.1:14012".parse().unwrap());
    assert!(preboot::transaction::KeyStore::auto_enrol(
        &t.workstation_keys
    ));
    assert_eq!(t.store.workstations.len(), 1);
    let w = &t.store.workstations[0];
    assert!(w.image_next_boot && w.image.as_deref() == Some("images/lab.img"));
    assert_eq!(
        t.store.server.menu.map(|m| m.mode),
        Some(MenuMode::OnKeyPress)
    );
}

/// All or nothing: a transaction port that is taken fails the start,
/// naming the transaction server, and leaves no other socket bound.
#[test]
fn a_taken_transaction_port_fails_the_start_and_keeps_nothing_bound() {
    let taken = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let dhcp_port = free_port();
    let text = format!(
        "[server]\nserver_ip = \"127.0.0.1\"\nlisten = \"127.0.0.1\"\n\
         [ports]\ndhcp = {dhcp_port}\nboot = {}\ntransaction = {}\n\
         [boot]\nbios = \"pxelinux.0\"\n[tftp]\nenabled = false\n\
         [transaction]\n[transaction.keys]\nauto_enrol = true\nserver_private = \"{}\"\n",
        free_port(),
        taken.local_addr().unwrap().port(),
        Hex(&new_key().to_private_bytes()),
    );
    let c = config::parse(Path::new("p.toml"), &text).unwrap();
    let err = BootServer::bind(c).unwrap_err().to_string();
    assert!(err.contains("transaction server"), "{err}");
    UdpSocket::bind(("127.0.0.1", dhcp_port)).expect("the DHCP socket was closed again");
}

/// The demo on free ports, with the port DHCP answers go to (loopback
/// cannot broadcast) a free one too, and `extra` lines at the top of
/// `[transaction]`.
fn demo_for_dhcp(parent: &Path, extra: &str) -> (DemoTree, u16) {
    let tree = demo_on_free_ports(parent);
    let client_port = free_port();
    let text = std::fs::read_to_string(tree.config_path()).unwrap();
    assert!(text.contains("client = 6868") && text.contains("\n[transaction]\n"));
    let text = text
        .replace("client = 6868", &format!("client = {client_port}"))
        .replace("\n[transaction]\n", &format!("\n[transaction]\n{extra}\n"));
    std::fs::write(tree.config_path(), text).unwrap();
    (tree, client_port)
}

/// The bytes of `tests/vectors/<name>.hex`: a real firmware's request.
fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let hex: String = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// What one answer's option 43 names: sub-options 128 and 129.
type Named = (Option<SocketAddrV4>, Option<[u8; 32]>);

/// Sends `request` (a real firmware's) to the boot server's `port` from
/// `sock` and reads sub-options 128 and 129 of the answer (PXE 2.1 §2.2.1:
/// the proxy OFFER on the DHCP port, the ACK on the boot server port).
fn ask_named(sock: &UdpSocket, port: u16, request: &[u8]) -> Named {
    use preboot::wire::dhcp::{DhcpPacket, code};
    use preboot::wire::pxe::{PxeOption, PxeOptions};
    sock.send_to(request, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).expect("an answer within 5 s");
    let p = DhcpPacket::new_checked(&buf[..n]).unwrap();
    let mut named = (None, None);
    if let Some(o43) = p.option(code::VENDOR_SPECIFIC) {
        for o in PxeOptions::new(o43) {
            match o {
                PxeOption::TransactionServer(a) => named.0 = Some(a),
                PxeOption::TransactionServerKey(k) => named.1 = Some(k),
                _ => {}
            }
        }
    }
    named
}

/// The embedded default's proxy OFFER (iPXE BIOS and OVMF UEFI DISCOVERs)
/// and 4011 ACK name the transaction server that runs: `server_ip`, the
/// port it really got (the config said 0) and its public key; a client
/// that pins what it learnt there completes the handshake (issue 14:
/// "the DHCP answers name the transaction server").
#[test]
fn dhcp_answers_name_the_running_transaction_server() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, client_port) = demo_for_dhcp(dir.path(), "");
    let server = Running::start(tree.config_path());
    let sock = UdpSocket::bind(("127.0.0.1", client_port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let want = (Some(server.addr), Some(server.public_key));
    for discover in ["ipxe-bios-discover", "ovmf-uefi-discover"] {
        assert_eq!(
            ask_named(&sock, server.dhcp_port, &vector(discover)),
            want,
            "{discover}"
        );
    }
    for request in ["ipxe-bios-request-4011", "ovmf-uefi-request-4011"] {
        assert_eq!(
            ask_named(&sock, server.boot_port, &vector(request)),
            want,
            "{request}"
        );
    }
    assert!(
        server
            .describe
            .iter()
            .any(|l| l.starts_with("transaction: ")
                && l.contains(&format!("named to PXE clients as {}", server.addr))),
        "{:?}",
        server.describe
    );
    let (Some(addr), Some(pinned)) = want else {
        unreachable!()
    };
    let flow = boot(addr, pinned, &new_key(), STRANGER).unwrap();
    assert!(!flow.registered);
    server.stop();
}

/// `transaction.advertise = false`: the server runs, the answers name
/// nothing (a menu-less proxy OFFER has no option 43 at all, as before).
#[test]
fn advertise_false_names_no_transaction_server() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, client_port) = demo_for_dhcp(dir.path(), "advertise = false");
    let server = Running::start(tree.config_path());
    let sock = UdpSocket::bind(("127.0.0.1", client_port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        ask_named(&sock, server.dhcp_port, &vector("ipxe-bios-discover")),
        (None, None)
    );
    assert_eq!(
        ask_named(&sock, server.boot_port, &vector("ipxe-bios-request-4011")),
        (None, None)
    );
    assert!(
        server
            .describe
            .iter()
            .any(|l| l.contains("transaction.advertise = false")),
        "{:?}",
        server.describe
    );
    // The transaction server itself still runs.
    boot(server.addr, server.public_key, &new_key(), STRANGER).unwrap();
    server.stop();
}

/// One member of the demo's multicast session on a session of its own:
/// `WorkstationInfo`, then `TaskQuery`; its join task's id and the TLV 4
/// state, run and members joined (§4.5.1), if it has one.
fn multicast_query(
    server: &Running,
    key: &StaticKey,
    mac: [u8; 6],
) -> (Conn, Option<(u32, MulticastState, u32, u16)>) {
    let mut c = Conn::connect(server.addr, server.public_key, key).unwrap();
    let mut info = WorkstationInfo::default();
    info.macs.push(mac).unwrap();
    c.client.send_info(c.now(), &info).unwrap();
    c.reply(MessageType::InfoAck).unwrap();
    c.client.query_tasks(c.now()).unwrap();
    c.reply(MessageType::TaskReply).unwrap();
    let t = c.client.task_reply().unwrap();
    // Once the session is closed the demo's server rule may still give a
    // restore (no image-safe data here): only the join matters.
    let join = t.tasks.iter().find(|task| {
        matches!(
            task.action,
            TaskAction::JoinMulticast {
                session: "demo-room",
                ..
            }
        )
    });
    if join.is_none() {
        assert!(t.multicast.is_empty(), "{t:?}");
    }
    let told = join.map(|task| {
        let m = t
            .multicast
            .iter()
            .find(|m| m.task_id == task.id)
            .expect("TLV 4 for the task");
        assert_eq!(
            (m.session, m.image, m.group, m.port, m.role),
            (
                "demo-room",
                "images/room.img",
                std::net::Ipv4Addr::new(239, 255, 77, 1),
                5077,
                MulticastRole::Member
            )
        );
        (task.id, m.state, m.run, m.joined)
    });
    drop(t);
    (c, told)
}

/// §4.5.1, §4.8.1 over protocol v2 on loopback: the demo's session
/// (members 02 and 03, start at 2): 02 waits (poll 2 s), 03's join starts
/// it, 02 asking again learns it (same task id); both report success; the
/// session is disabled: neither joins it again, also after the server
/// restarted from its journal.
#[test]
fn multicast_session_starts_runs_and_is_disabled_over_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let tree = demo_on_free_ports(dir.path());
    let server = Running::start(tree.config_path());
    let (m2, m3) = ([0x52, 0x54, 0, 0, 0, 0x02], [0x52, 0x54, 0, 0, 0, 0x03]);
    let (k2, k3) = (new_key(), new_key());
    let (_, first) = multicast_query(&server, &k2, m2);
    let (id2, state, run, joined) = first.unwrap();
    assert_eq!((state, run, joined), (MulticastState::Waiting, 1, 1));
    let (mut c3, third) = multicast_query(&server, &k3, m3);
    let (id3, state, _, joined) = third.unwrap();
    assert_eq!(
        (state, joined),
        (MulticastState::Started, 2),
        "03 started it"
    );
    let (mut c2, again) = multicast_query(&server, &k2, m2);
    assert_eq!(again.unwrap(), (id2, MulticastState::Started, 1, 2));
    for (c, id) in [(&mut c2, id2), (&mut c3, id3)] {
        let report = TaskReport {
            task_id: id,
            outcome: Outcome::Success,
            percent: Some(100),
            reason: None,
        };
        c.client.report(c.now(), &report).unwrap();
        c.reply(MessageType::ReportAck).unwrap();
    }
    assert_eq!(multicast_query(&server, &k2, m2).1, None, "disabled");
    server.stop();
    let server = Running::start(tree.config_path());
    assert_eq!(
        multicast_query(&server, &k3, m3).1,
        None,
        "still, after a restart"
    );
    assert_eq!(multicast_query(&server, &k2, m2).1, None);
    server.stop();
}
