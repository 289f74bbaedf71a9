//! Issue 15, "Menu choices act" and "Registration and inventory", through
//! a real boot server on 127.0.0.1 (protocol v2 on a UDP socket, as
//! `tests/boot_server_transaction.rs` speaks it):
//!
//! - a menu choice in `TaskQuery` (docs/transaction-protocol.md §4.5 TLV 1)
//!   gets the matching answer: maintenance → a `Maintenance` task and the
//!   imaging environment; disable / enable the imaging partition → an
//!   `ImageSafeUpdate` (TLV 4) and no task; boot local → nothing;
//! - registration: the server policy's `register` setting registers an
//!   unknown workstation under the templated name, kept in
//!   `<state_dir>/registrations.toml` across a restart and a reload; "register
//!   this machine" from the menu does the same;
//! - inventory: the hardware facts of each boot replace the object's
//!   record in `<state_dir>/inventory/`, read back by
//!   `driver::registry::read_inventories`.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use preboot::Instant;
use preboot::driver::boot_server::config;
use preboot::driver::boot_server::{BootServer, BootServerError, RunSummary};
use preboot::driver::transaction::Urandom;
use preboot::engine::Datagram;
use preboot::transaction::{Client, ClientConfig, ClientEvent, HandshakeSeed, Random, StaticKey};
use preboot::wire::image_safe::PendingFlags;
use preboot::wire::transaction::menu_choice::{ImageSafeUpdate, TaskQuery};
use preboot::wire::transaction::messages::{MenuEntry, TaskAction, WorkstationInfo};
use preboot::wire::transaction::{MAX_FRAME_LEN, MessageType};

/// The store's registered workstation (image on next boot).
const REGISTERED: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01];

fn free_port() -> u16 {
    UdpSocket::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A boot server configuration in `dir`: proxy mode on 127.0.0.1, every
/// port free, auto-enrolment on, state in `dir/state`, and `store` as the
/// `[transaction.store]` tables.
fn write_config(dir: &Path, store: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("tftp/bios")).unwrap();
    std::fs::write(dir.join("tftp/bios/pxelinux.0"), b"boot").unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let text = format!(
        r#"
[server]
mode = "proxy"
server_ip = "127.0.0.1"
listen = "127.0.0.1"
broadcast_address = "127.0.0.1"
state_dir = "{state}"

[ports]
dhcp = 0
boot = {boot}
tftp = 0
transaction = 0

[boot]
bios = "bios/pxelinux.0"

[tftp]
root = "{tftp}"

[transaction.keys]
server_private = "fc78df667b75665aa59ed6ab4ee3b59d91efa625fece523348d5d50bdc3e943a"
auto_enrol = true

{store}
"#,
        state = dir.join("state").display(),
        tftp = dir.join("tftp").display(),
        boot = free_port(),
    );
    let path = dir.join("preboot.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const STORE: &str = r#"
[transaction.store.server]
image_server = "127.0.0.1"
environment = { fetch = "tftp", kernel = "imaging/linux", initrd = "imaging/initrd", loader = "" }

[[transaction.store.workstation]]
mac = "52:54:00:00:00:01"
name = "pc-01"
image_next_boot = true
image = "images/lab.img"
"#;

struct Running {
    reloader: preboot::driver::boot_server::Reloader,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<RunSummary, BootServerError>>,
    addr: SocketAddrV4,
    public_key: [u8; 32],
}

impl Running {
    fn start(config: &Path) -> Running {
        let c = config::load(config).unwrap_or_else(|e| panic!("{e}"));
        let server = BootServer::bind(c).unwrap_or_else(|e| panic!("{e}"));
        let Some(SocketAddr::V4(addr)) = server.transaction_addr() else {
            panic!("no transaction server")
        };
        let public_key = server.transaction_public_key().unwrap();
        let reloader = server.reloader().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || server.run(&flag));
        Running {
            reloader,
            stop,
            thread,
            addr,
            public_key,
        }
    }

    fn stop(self) -> RunSummary {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap().unwrap()
    }
}

/// A transaction client on its own UDP socket.
struct Conn {
    client: Client,
    sock: UdpSocket,
    epoch: std::time::Instant,
}

impl Conn {
    fn connect(server: &Running, key: &StaticKey) -> Conn {
        let mut random = Urandom::open().unwrap();
        let (mut nonce, mut fresh) = ([0u8; 16], [0u8; 32]);
        random.fill(&mut nonce);
        random.fill(&mut fresh);
        let seed = HandshakeSeed {
            nonce,
            ephemeral: key.hedged_ephemeral(&fresh, 1),
        };
        let mut cfg = ClientConfig::new(server.addr, server.public_key, key.clone());
        cfg.initial_rto = Duration::from_millis(100);
        cfg.max_rto = Duration::from_millis(200);
        let mut conn = Conn {
            client: Client::new(cfg, seed, Instant::ZERO),
            sock: UdpSocket::bind(("127.0.0.1", 0)).unwrap(),
            epoch: std::time::Instant::now(),
        };
        loop {
            match conn.step() {
                ClientEvent::Established { .. } => return conn,
                ClientEvent::Advisory { .. } => continue,
                ev => panic!("handshake: {ev:?}"),
            }
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Until the client's next event (at most 20 s).
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

    fn reply(&mut self, want: MessageType) {
        loop {
            match self.step() {
                ClientEvent::Reply { message_type } if message_type == want => return,
                ClientEvent::Refused { request, status } => panic!("{request:?}: {status:?}"),
                ClientEvent::Failed { request } => panic!("{request:?}: timeout"),
                _ => continue,
            }
        }
    }

    /// `WorkstationInfo` for `info`: (registered, name).
    fn info(&mut self, info: &WorkstationInfo<'_>) -> (bool, Option<String>) {
        self.client.send_info(self.now(), info).unwrap();
        self.reply(MessageType::InfoAck);
        let ack = self.client.info_ack().unwrap();
        (ack.registered, ack.name.map(str::to_string))
    }

    /// `TaskQuery` with `choice`: the tasks, the kernel, the image-safe
    /// update.
    fn tasks(
        &mut self,
        choice: Option<u8>,
    ) -> (Vec<String>, Option<String>, Option<ImageSafeUpdate>) {
        self.client
            .query_tasks_with(self.now(), &TaskQuery { choice })
            .unwrap();
        self.reply(MessageType::TaskReply);
        let t = self.client.task_reply().unwrap();
        let tasks = t
            .tasks
            .iter()
            .map(|t| match &t.action {
                TaskAction::RestoreImage { image, .. } => format!("restore {image}"),
                TaskAction::Maintenance { reason } => format!("maintenance: {reason}"),
                other => format!("{other:?}"),
            })
            .collect();
        (
            tasks,
            t.environment.as_ref().map(|e| e.kernel.to_string()),
            t.image_safe.clone(),
        )
    }
}

fn info_of(mac: [u8; 6]) -> WorkstationInfo<'static> {
    let mut info = WorkstationInfo::default();
    info.macs.push(mac).unwrap();
    info.ram_mb = Some(4096);
    info.cpu_count = Some(4);
    info
}

fn new_key() -> StaticKey {
    StaticKey::generate(&mut Urandom::open().unwrap()).unwrap()
}

/// §4.5 MenuChoice: maintenance chosen in the menu gets a `Maintenance`
/// task and the imaging environment (its kernel), instead of the pending
/// restore; automatic gets the restore; the partition choices get the
/// image-safe change and no task; boot local gets nothing.
#[test]
fn menu_choice_yields_the_matching_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&write_config(dir.path(), STORE));
    let key = new_key();
    let mut c = Conn::connect(&server, &key);
    assert_eq!(c.info(&info_of(REGISTERED)), (true, Some("pc-01".into())));

    let (tasks, kernel, update) = c.tasks(Some(MenuEntry::MAINTENANCE));
    assert_eq!(tasks, ["maintenance: chosen in the boot menu"]);
    assert_eq!(kernel.as_deref(), Some("imaging/linux"));
    assert_eq!(update, None);

    let (tasks, kernel, _) = c.tasks(Some(MenuEntry::AUTOMATIC));
    assert_eq!(tasks, ["restore images/lab.img"]);
    assert_eq!(kernel.as_deref(), Some("imaging/linux"));

    let bit = PendingFlags::IMAGING_PARTITION_DISABLED;
    let (tasks, kernel, update) = c.tasks(Some(MenuEntry::DISABLE_IMAGING_PARTITION));
    assert!(tasks.is_empty() && kernel.is_none(), "{tasks:?}");
    assert_eq!(update.map(|u| (u.set, u.clear)), Some((bit, 0)));
    let (_, _, update) = c.tasks(Some(MenuEntry::ENABLE_IMAGING_PARTITION));
    assert_eq!(update.map(|u| (u.set, u.clear)), Some((0, bit)));

    let (tasks, kernel, update) = c.tasks(Some(MenuEntry::BOOT_LOCAL));
    assert!(tasks.is_empty() && kernel.is_none() && update.is_none());
    server.stop();
}

/// A workstation the stores do not know.
const STRANGER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x99];

const REGISTERING: &str = r#"
[transaction.store.server]
image_server = "127.0.0.1"
register = { name = "lab-{mac}" }
"#;

fn registrations(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("state/registrations.toml")).unwrap_or_default()
}

/// Issue 15 registration: with `register = { name = "lab-{mac}" }` an
/// unknown workstation is registered at its `WorkstationInfo` (the
/// `InfoAck` says so, with the templated name); the object is in
/// `registrations.toml` and still known after a restart (a new key, the
/// same machine) and after a reload, and is not registered twice.
#[test]
fn auto_registration_names_the_object_and_keeps_it_across_restart_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), REGISTERING);
    let server = Running::start(&config);
    let mut c = Conn::connect(&server, &new_key());
    assert_eq!(
        c.info(&info_of(STRANGER)),
        (true, Some("lab-525400000099".into()))
    );
    server.stop();
    let file = registrations(dir.path());
    assert!(file.contains("mac = \"52:54:00:00:00:99\""), "{file}");
    assert!(file.contains("name = \"lab-525400000099\""), "{file}");

    // Restart: known from the file, not registered again.
    let server = Running::start(&config);
    let key = new_key();
    let mut c = Conn::connect(&server, &key);
    assert_eq!(
        c.info(&info_of(STRANGER)),
        (true, Some("lab-525400000099".into()))
    );
    // Reload (SIGHUP's work): still known (the key auto-enrolled since
    // the restart stays bound).
    server.reloader.reload().unwrap();
    let mut c = Conn::connect(&server, &key);
    assert_eq!(
        c.info(&info_of(STRANGER)),
        (true, Some("lab-525400000099".into()))
    );
    server.stop();
    assert_eq!(
        registrations(dir.path()).matches("[[workstation]]").count(),
        1
    );
}

/// Issue 15 registration from the menu: without the server policy's
/// setting an unknown workstation stays unregistered until it chooses
/// "register this machine" (`MenuChoice` 6); then it is an object named
/// by the default template.
#[test]
fn register_this_machine_from_the_menu() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&write_config(dir.path(), STORE));
    let mut c = Conn::connect(&server, &new_key());
    assert_eq!(c.info(&info_of(STRANGER)), (false, None));
    let (tasks, _, _) = c.tasks(Some(MenuEntry::REGISTER));
    assert!(tasks.is_empty(), "{tasks:?}");
    assert_eq!(
        c.info(&info_of(STRANGER)),
        (true, Some("ws-525400000099".into()))
    );
    server.stop();
    assert!(registrations(dir.path()).contains("ws-525400000099"));
}

/// Issue 15 inventory: each boot replaces the object's record; the
/// second boot's facts (more RAM, another disk) are what is read back,
/// one record per object.
#[test]
fn inventory_is_updated_at_each_boot() {
    use preboot::driver::registry::read_inventories;
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(&write_config(dir.path(), STORE));
    let key = new_key();
    let mut first = info_of(REGISTERED);
    first.disks_mb.push(100_000).unwrap();
    Conn::connect(&server, &key).info(&first);
    let read = || {
        let all = read_inventories(&dir.path().join("state")).unwrap();
        assert_eq!(all.len(), 1, "one record per object");
        all.into_iter().next().unwrap().unwrap()
    };
    let r = read();
    assert_eq!(r.object, "52:54:00:00:00:01");
    let i = r.info().unwrap();
    assert_eq!((i.ram_mb, &i.disks_mb[..]), (Some(4096), &[100_000][..]));

    let mut second = info_of(REGISTERED);
    second.ram_mb = Some(16384);
    second.disks_mb.push(500_000).unwrap();
    Conn::connect(&server, &key).info(&second);
    let r = read();
    let i = r.info().unwrap();
    assert_eq!((i.ram_mb, &i.disks_mb[..]), (Some(16384), &[500_000][..]));
    server.stop();
}

/// Issue 15, menu entries per level (§4.4 TLVs 6–8): the object's own
/// entries win, else its workstation policy's, else the server policy's
/// — the first level with entries gives them all, with its default and
/// timeout; hotkeys take F12 and Enter.
#[test]
fn menu_entries_follow_the_level_precedence() {
    use preboot::driver::policy_store;
    use preboot::policy::{ImagingProxy, MenuSource, WorkstationId};
    use preboot::transaction::Policy;
    use preboot::wire::transaction::messages::Hotkey;
    let text = r#"
[server]
menu = { mode = "on-key-press", hotkey = "ctrl+f12" }
menu_entry = [ { kind = "automatic", label = "Server auto" } ]

[[policy]]
name = "lab"
menu = { mode = "on-key-press", hotkey = "enter" }
menu_entry = [ { kind = "automatic", label = "Lab auto" },
               { kind = "maintenance", label = "Lab maintenance" } ]
menu_default = 2
menu_timeout_ms = 5000

[[policy]]
name = "plain"

[[workstation]]
mac = "52:54:00:00:00:01"
name = "own"
policy = "lab"
menu_entry = [ { kind = "register", label = "Register" },
               { kind = "boot-local", label = "Local" } ]
menu_default = 1

[[workstation]]
mac = "52:54:00:00:00:02"
name = "by-policy"
policy = "lab"

[[workstation]]
mac = "52:54:00:00:00:03"
name = "plain-policy"
policy = "plain"
"#;
    let store = policy_store::parse(Path::new("menu.toml"), text).unwrap();
    let mut proxy = ImagingProxy::new(store);
    let ws = |n: u8| WorkstationId::Mac([0x52, 0x54, 0, 0, 0, n]);
    let cases = [
        (
            1,
            MenuSource::Object,
            vec!["Register", "Local"],
            Some(0),
            None,
            Hotkey::ENTER,
        ),
        (
            2,
            MenuSource::WorkstationPolicy,
            vec!["Lab auto", "Lab maintenance"],
            Some(1),
            Some(5000),
            Hotkey::ENTER,
        ),
        (
            3,
            MenuSource::ServerPolicy,
            vec!["Server auto"],
            None,
            None,
            Hotkey::F12,
        ),
        (
            9,
            MenuSource::ServerPolicy,
            vec!["Server auto"],
            None,
            None,
            Hotkey::F12,
        ),
    ];
    for (n, source, labels, default, timeout, key) in cases {
        let (list, from) = proxy.menu_entries(&[ws(n)]);
        assert_eq!(from, source, "workstation {n}");
        let got: Vec<&str> = list.entries.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(got, labels, "workstation {n}");
        let info = info_of([0x52, 0x54, 0, 0, 0, n]);
        let m = proxy.menu(Instant::ZERO, &ws(n), &info).unwrap();
        let got: Vec<&str> = m.entries.iter().map(|e| e.label).collect();
        assert_eq!(got, labels, "workstation {n}");
        assert_eq!(
            (m.default_entry, m.choice_timeout_ms),
            (default, timeout),
            "{n}"
        );
        assert_eq!(m.hotkey.map(|h| h.key), Some(key), "workstation {n}");
    }
    // A default that names no entry is refused at load, with the field.
    let bad =
        "[server]\nmenu_entry = [ { kind = \"automatic\", label = \"a\" } ]\nmenu_default = 2\n";
    let e = policy_store::parse(Path::new("bad.toml"), bad).unwrap_err();
    assert_eq!(e.field, "server.menu_default", "{e}");
}

/// Issue 15, the server policy's IP pool (ZENworks, notes §1.3): image-safe
/// data without IP settings gets an address of the pool in the
/// `TaskReply`'s `ImageSafeUpdate` — distinct per workstation, the same
/// on every query and after a restart (`<state_dir>/ip-assignments`),
/// never one outside the range (a used-up pool sends none).
#[test]
fn ip_pool_assigns_distinct_stable_addresses_within_the_range() {
    use std::net::Ipv4Addr;
    let dir = tempfile::tempdir().unwrap();
    let store = r#"
[transaction.store.server]
image_server = "127.0.0.1"
ip_pool = { range = "10.9.0.10-10.9.0.12", netmask = "255.255.255.0", gateway = "10.9.0.1", dns = ["10.9.0.2"] }
"#;
    let config = write_config(dir.path(), store);
    let keys: Vec<StaticKey> = (0..=5).map(|_| new_key()).collect();
    let address = |server: &Running, n: u8| -> Option<Ipv4Addr> {
        let mut c = Conn::connect(server, &keys[usize::from(n)]);
        c.info(&info_of([0x52, 0x54, 0, 0, 1, n]));
        let (_, _, update) = c.tasks(None);
        update.map(|u| {
            let ip = u.ip.expect("IP settings");
            assert_eq!(ip.netmask, Ipv4Addr::new(255, 255, 255, 0));
            assert_eq!(ip.gateway, Ipv4Addr::new(10, 9, 0, 1));
            assert_eq!(&ip.dns[..], &[Ipv4Addr::new(10, 9, 0, 2)]);
            ip.address
        })
    };
    let server = Running::start(&config);
    let got: Vec<Option<Ipv4Addr>> = (1..=4).map(|n| address(&server, n)).collect();
    assert_eq!(
        got,
        [
            Some(Ipv4Addr::new(10, 9, 0, 10)),
            Some(Ipv4Addr::new(10, 9, 0, 11)),
            Some(Ipv4Addr::new(10, 9, 0, 12)),
            None
        ]
    );
    assert_eq!(address(&server, 2), Some(Ipv4Addr::new(10, 9, 0, 11)));
    server.stop();
    let server = Running::start(&config);
    assert_eq!(address(&server, 3), Some(Ipv4Addr::new(10, 9, 0, 12)));
    assert_eq!(address(&server, 5), None, "the pool is used up");
    server.stop();
}
