//! Issue 15, "Menu choices act" and "Registration and inventory", through
//! a real boot server on 127.0.0.1 (protocol v2 on a UDP socket, as
//! `tests/boot_server_transaction.rs` speaks it):
//!
//! - a menu choice in `TaskQuery` (docs/transaction-protocol.md §4.5 TLV 1)
//!   gets the matching answer: maintenance → a `Maintenance` task and the
//!   imaging environment; disable / enable the imaging partition → an
//!   `ImageSafeUpdate` (TLV 4) and no task; boot local → nothing.

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
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || server.run(&flag));
        Running {
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
