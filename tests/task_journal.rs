//! The task life cycle and its journal (issue 14 "state that must
//! survive", issue 15 "tasks: a life cycle, once, persistent";
//! docs/transaction-protocol.md §4.8), on real files and a real
//! `preboot-server` process:
//!
//! - (a) a task handed out and reported, then a restart (a new proxy from
//!   the journal): the request stays cleared, the task is not handed out
//!   again;
//! - (b) a torn last record is ignored; a damaged record before it is an
//!   error naming file:line;
//! - (c) `preboot-server` acknowledges a report and is killed with SIGKILL
//!   right after the ack: restarted on the same state directory, the
//!   report is still applied;
//! - (d) a hand-out after a restart (and after a failure) is a counted
//!   retry of the same task;
//! - (e) after `max_handouts` the task is held, across restarts too, until
//!   the request changes;
//! - the journal stays bounded (compaction), a request changed in the
//!   store since a success is asked anew, and a failing log changes
//!   nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use preboot::Instant;
use preboot::driver::task_journal::{
    COMPACT_MIN_RECORDS, HEADER, JournalError, JournaledProxy, TaskJournal, restore_proxy,
};
use preboot::driver::transaction::Urandom;
use preboot::engine::Datagram;
use preboot::policy::*;
use preboot::transaction::{
    Client, ClientConfig, ClientEvent, HandshakeSeed, Policy, Random, StaticKey,
};
use preboot::wire::transaction::messages::{Outcome, TaskAction, TaskReport, WorkstationInfo};
use preboot::wire::transaction::{MAX_FRAME_LEN, MessageType, Status};

mod boot_server_support;
use boot_server_support::{Server, example};

#[path = "../examples/preboot-server/demo.rs"]
mod demo;
use demo::{DEFAULT_CONFIG, DemoTree};

const M1: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01];
const M2: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x02];
const T0: Instant = Instant::from_secs(1_700_000_000);

fn who(mac: [u8; 6]) -> WorkstationId {
    WorkstationId::Mac(mac)
}

fn info(mac: [u8; 6]) -> WorkstationInfo<'static> {
    let mut wi = WorkstationInfo::default();
    wi.macs.push(mac).unwrap();
    wi
}

/// M1 asks for `images/lab.img` on next boot; M2 is registered, with
/// nothing asked.
fn store() -> MemoryStore {
    let mut a = WorkstationObject::new(who(M1), "pc-1");
    a.image_next_boot = true;
    a.image = Some("images/lab.img".into());
    let b = WorkstationObject::new(who(M2), "pc-2");
    MemoryStore {
        workstations: vec![a, b],
        ..MemoryStore::default()
    }
}

/// A new proxy from the journal at `path` (a restart).
fn restart(path: &Path, store: MemoryStore, max: u32) -> JournaledProxy<MemoryStore> {
    restore_proxy(store, Some(path), max).unwrap_or_else(|e| panic!("{e}"))
}

/// A `TaskQuery` from `mac`: the task ids and what they do.
fn query<L: TaskLog>(p: &mut ImagingProxy<MemoryStore, L>, mac: [u8; 6]) -> Vec<(u32, String)> {
    let wi = info(mac);
    let r = p.tasks(T0, &who(mac), &wi).unwrap();
    r.tasks
        .iter()
        .map(|t| {
            let what = match &t.action {
                TaskAction::RestoreImage { image, .. } => format!("restore {image}"),
                other => format!("{other:?}"),
            };
            (t.id, what)
        })
        .collect()
}

fn report<L: TaskLog>(
    p: &mut ImagingProxy<MemoryStore, L>,
    mac: [u8; 6],
    id: u32,
    outcome: Outcome,
) -> Result<(), Status> {
    let wi = info(mac);
    p.report(
        T0,
        &who(mac),
        &wi,
        &TaskReport {
            task_id: id,
            outcome,
            percent: Some(50),
            reason: (outcome == Outcome::Failure).then_some("disk full"),
        },
    )
}

fn journal_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// (a) §4.8: hand out, report success, restart from the journal: the
/// object's request stays cleared, nothing is handed out again, and the
/// next task id does not reuse the finished one.
#[test]
fn reported_task_is_not_handed_out_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.journal");
    let mut p = restart(&path, store(), 3);
    let tasks = query(&mut p, M1);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let (id, what) = tasks[0].clone();
    assert_eq!(what, "restore images/lab.img");
    report(&mut p, M1, id, Outcome::Progress).unwrap();
    assert_eq!(
        p.task_entries(&who(M1))[0].state,
        TaskState::Running { percent: 50 }
    );
    report(&mut p, M1, id, Outcome::Success).unwrap();
    drop(p);

    let text = journal_lines(&path);
    assert_eq!(text[0], HEADER);
    assert!(
        text.iter()
            .any(|l| l.contains(" S ") && l.contains("restored 'images/lab.img")),
        "{text:?}"
    );

    // The store as configured still asks for the image; the journal says
    // it was done.
    let mut p = restart(&path, store(), 3);
    let w = &p.store().workstations[0];
    assert!(!w.image_next_boot, "the success survived the restart");
    assert_eq!(w.last_image.as_deref(), Some("images/lab.img"));
    assert_eq!(query(&mut p, M1), [], "not handed out again");
    assert_eq!(
        report(&mut p, M1, id, Outcome::Success),
        Err(Status::UnknownTask)
    );
    // A new task gets a new id, never the finished one's.
    let mut p = restart(&path, store(), 3);
    let mut st = store();
    st.workstations[1].maintenance = true;
    p.replace_store(T0, st).unwrap();
    let t2 = query(&mut p, M2);
    assert_eq!(t2.len(), 1);
    assert!(t2[0].0 > id, "{t2:?} after {id}");
}

/// (b) §4.8: a torn last record (kill -9 while it was written, so never
/// answered) is ignored and the state before it restored; a record before
/// the last that does not check is an error naming the file and line.
#[test]
fn torn_tail_is_ignored_and_a_damaged_middle_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.journal");
    let mut p = restart(&path, store(), 3);
    let id = query(&mut p, M1)[0].0;
    drop(p);
    // Half a success record, no newline.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"1a2b3c4d S 1700000000000000 mac:52:54:00:00:00:01 1 00")
        .unwrap();
    drop(f);
    let (_, replay) = TaskJournal::open(&path).unwrap();
    assert_eq!(replay.torn, Some(journal_lines(&path).len()));
    let mut p = restart(&path, store(), 3);
    assert_eq!(p.live_tasks(&who(M1)), [id], "the hand-out survived");
    assert!(
        p.store().workstations[0].image_next_boot,
        "no success applied"
    );
    // The restart rewrote the journal without the torn line.
    let lines = journal_lines(&path);
    assert!(
        lines.iter().all(|l| !l.starts_with("1a2b3c4d")),
        "{lines:?}"
    );

    // Two more records, then damage the first record line (line 2).
    query(&mut p, M1);
    report(&mut p, M1, id, Outcome::Progress).unwrap();
    drop(p);
    let mut lines = journal_lines(&path);
    assert!(lines.len() >= 4, "{lines:?}");
    lines[2] = lines[2].replacen("mac:52", "mac:53", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let e = restore_proxy(store(), Some(&path), 3).unwrap_err();
    assert!(matches!(e, JournalError::Corrupt { line: 3, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}:3: CRC mismatch", path.display())),
        "{msg}"
    );
    // The damaged journal is left as it was for the administrator.
    assert_eq!(journal_lines(&path), lines);
}

/// (d) §4.8: a live task handed out again after a restart keeps its id and
/// counts as a retry; so does a task handed out after a reported failure
/// (whose reason is kept).
#[test]
fn hand_out_after_restart_is_a_counted_retry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.journal");
    let mut p = restart(&path, store(), 5);
    let id = query(&mut p, M1)[0].0;
    assert_eq!(p.task_entries(&who(M1))[0].handouts, 1);
    drop(p);

    let mut p = restart(&path, store(), 5);
    assert_eq!(p.task_entries(&who(M1))[0].handouts, 1, "replayed");
    assert_eq!(query(&mut p, M1)[0].0, id, "the same task");
    assert_eq!(p.task_entries(&who(M1))[0].handouts, 2, "a retry");
    report(&mut p, M1, id, Outcome::Failure).unwrap();
    drop(p);

    let mut p = restart(&path, store(), 5);
    let e = &p.task_entries(&who(M1))[0];
    assert_eq!(
        e.state,
        TaskState::Failed {
            reason: "disk full".into()
        }
    );
    // A failed task takes no more reports…
    assert_eq!(
        report(&mut p, M1, id, Outcome::Success),
        Err(Status::UnknownTask)
    );
    // …and is handed out again, the same task, a third time.
    assert_eq!(query(&mut p, M1)[0].0, id);
    let e = &p.task_entries(&who(M1))[0];
    assert_eq!((e.handouts, &e.state), (3, &TaskState::HandedOut));
    assert!(p.store().workstations[0].image_next_boot);
    drop(p);
    let p = restart(&path, store(), 5);
    assert_eq!(p.task_entries(&who(M1))[0].handouts, 3);
}

/// (e) §4.8: after `max_handouts` hand-outs without success the task is
/// held (not handed out, listed for an administrator), across restarts;
/// a changed request (another image) is a new task, and the held one is
/// dropped.
#[test]
fn task_is_held_after_max_handouts_until_the_request_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.journal");
    let mut ids = Vec::new();
    for _ in 0..3 {
        // A restart between boots: the count is the journal's.
        let mut p = restart(&path, store(), 3);
        ids.push(query(&mut p, M1)[0].0);
    }
    assert!(ids.iter().all(|&i| i == ids[0]), "{ids:?}");
    let mut p = restart(&path, store(), 3);
    assert_eq!(query(&mut p, M1), [], "held after 3 hand-outs");
    let held = p.held();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].0, held[0].1.id, held[0].1.handouts),
        (who(M1), ids[0], 3)
    );
    assert_eq!(
        report(&mut p, M1, ids[0], Outcome::Success),
        Err(Status::UnknownTask)
    );
    drop(p);
    let mut p = restart(&path, store(), 3);
    assert_eq!(p.held().len(), 1, "still held after a restart");
    assert_eq!(query(&mut p, M1), []);
    // The administrator changes the request: a new task.
    let mut st = store();
    st.workstations[0].image = Some("images/lab-v2.img".into());
    p.replace_store(T0, st.clone()).unwrap();
    let t = query(&mut p, M1);
    assert_eq!(t.len(), 1);
    assert_ne!(t[0].0, ids[0]);
    assert_eq!(t[0].1, "restore images/lab-v2.img");
    assert!(p.held().is_empty(), "the held task was dropped");
    drop(p);
    let p = restart(&path, st, 3);
    assert!(p.held().is_empty());
    assert_eq!(p.live_tasks(&who(M1)), [t[0].0]);
}

/// §4.8: a success holds while the store states the same request; a
/// request changed since (set again with another image) is asked anew,
/// and one unchanged in one class is not disturbed by a change in
/// another.
#[test]
fn changed_request_is_asked_anew_after_a_success() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.journal");
    let mut st = store();
    st.workstations[0].maintenance = true;
    let mut p = restart(&path, st.clone(), 3);
    let tasks = query(&mut p, M1);
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    for (id, _) in &tasks {
        report(&mut p, M1, *id, Outcome::Success).unwrap();
    }
    assert_eq!(query(&mut p, M1), []);
    drop(p);
    // Only the image changed: restore asked anew, maintenance still done.
    st.workstations[0].image = Some("images/other.img".into());
    let mut p = restart(&path, st.clone(), 3);
    let w = &p.store().workstations[0];
    assert!(w.image_next_boot && !w.maintenance, "{w:?}");
    assert_eq!(query(&mut p, M1)[0].1, "restore images/other.img");
    drop(p);
    // And on a reload while running: the request back to the first image
    // is a change again (recorded as forgotten), asked anew.
    let mut p = restart(&path, st.clone(), 3);
    let mut back = st.clone();
    back.workstations[0].image = Some("images/lab.img".into());
    let forgotten = p.replace_store(T0, back).unwrap();
    assert!(
        forgotten.is_empty(),
        "the other.img restore never succeeded"
    );
    assert_eq!(query(&mut p, M1)[0].1, "restore images/lab.img");
    drop(p);

    // Re-imaging with the same image: clear the flag, reload (the success
    // is forgotten, and recorded so), set it again, reload: asked anew,
    // and still after a restart.
    let path = dir.path().join("again.journal");
    let mut p = restart(&path, store(), 3);
    let id = query(&mut p, M1)[0].0;
    report(&mut p, M1, id, Outcome::Success).unwrap();
    let mut cleared = store();
    cleared.workstations[0].image_next_boot = false;
    let forgotten = p.replace_store(T0, cleared).unwrap();
    assert_eq!(
        forgotten,
        [(
            who(M1),
            Effect::Restored {
                image: "images/lab.img".into()
            }
        )]
    );
    assert!(journal_lines(&path).iter().any(|l| l.contains(" U ")));
    assert!(p.replace_store(T0, store()).unwrap().is_empty());
    let again = query(&mut p, M1);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].0, id);
    drop(p);
    let p = restart(&path, store(), 3);
    assert!(p.store().workstations[0].image_next_boot);
    assert_eq!(p.live_tasks(&who(M1)), [again[0].0]);
}

/// §4.8: the journal stays bounded while one workstation queries 5,000
/// times (no hand-out limit: 5,000 hand-out records, compacted while
/// running), and a restart finds the same state; held after its limit, a
/// task writes nothing more.
#[test]
fn journal_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.journal");
    let mut p = restart(&path, store(), u32::MAX);
    let id = query(&mut p, M1)[0].0;
    let mut most = 0;
    for i in 0..5000 {
        assert_eq!(query(&mut p, M1)[0].0, id);
        if i % 50 == 0 {
            most = most.max(journal_lines(&path).len());
        }
    }
    // Header, next id, and at most COMPACT_MIN_RECORDS + 1 records.
    assert!(most <= COMPACT_MIN_RECORDS + 3, "{most} lines at most");
    assert!(
        most > COMPACT_MIN_RECORDS / 2,
        "{most}: records were written"
    );
    drop(p);
    let p = restart(&path, store(), u32::MAX);
    let e = &p.task_entries(&who(M1))[0];
    assert_eq!(
        (e.id, e.handouts, &e.state),
        (id, 5001, &TaskState::HandedOut)
    );
    assert_eq!(journal_lines(&path).len(), 3, "compacted at start");
    drop(p);
    // With a limit of 1,000: held, and nothing more is written.
    let mut p = restart(&path, store(), 1000);
    assert_eq!(query(&mut p, M1), []);
    let lines = journal_lines(&path).len();
    for _ in 0..100 {
        assert_eq!(query(&mut p, M1), []);
    }
    assert_eq!(journal_lines(&path).len(), lines);
    assert_eq!(p.held().len(), 1);
}

/// §4.8: when the log cannot keep a record, the request fails with
/// `ServerError` and nothing changes (no task id, no applied report).
#[test]
fn failing_log_changes_nothing() {
    // A working log: the hand-out is recorded and synced before the reply.
    let mut p = ImagingProxy::with_log(store(), MemoryLog::default(), 3);
    let id = query(&mut p, M1)[0].0;
    assert_eq!((p.log().records.len(), p.log().synced), (1, 1));
    // A failing one: ServerError, no task.
    let failing = MemoryLog {
        fail: true,
        ..MemoryLog::default()
    };
    let mut broken = ImagingProxy::with_log(store(), failing, 3);
    let wi = info(M1);
    assert_eq!(
        broken.tasks(T0, &who(M1), &wi).map(|_| ()),
        Err(Status::ServerError)
    );
    assert!(broken.task_entries(&who(M1)).is_empty());
    // The disk fails before a report: not applied, the task still live.
    p.log_mut().fail = true;
    assert_eq!(
        report(&mut p, M1, id, Outcome::Success),
        Err(Status::ServerError)
    );
    assert_eq!(p.live_tasks(&who(M1)), [id]);
    assert!(p.store().workstations[0].image_next_boot);
    assert_eq!(p.reports_applied(), 0);
    // Records kept but the sync fails (a failing fdatasync): no reply,
    // and nothing changed here either.
    let mut unsynced = ImagingProxy::with_log(store(), SyncFails(0), 3);
    assert_eq!(
        unsynced.tasks(T0, &who(M1), &wi).map(|_| ()),
        Err(Status::ServerError)
    );
    assert_eq!(unsynced.log().0, 1, "the record was given");
    assert!(unsynced.task_entries(&who(M1)).is_empty());
    // Back: the same report applies once.
    p.log_mut().fail = false;
    report(&mut p, M1, id, Outcome::Success).unwrap();
    assert!(!p.store().workstations[0].image_next_boot);
    assert_eq!(p.reports_applied(), 1);
}

/// A log that keeps records (counts them) and fails every sync.
struct SyncFails(usize);

impl TaskLog for SyncFails {
    type Error = ();
    fn record(&mut self, _: &TaskRecord) -> Result<(), ()> {
        self.0 += 1;
        Ok(())
    }
    fn sync(&mut self) -> Result<(), ()> {
        Err(())
    }
}

// ---- (c) a real preboot-server, killed with SIGKILL after a ReportAck ----

/// A transaction client on its own UDP socket.
struct Conn {
    client: Client,
    sock: UdpSocket,
    epoch: std::time::Instant,
}

impl Conn {
    fn connect(server: SocketAddrV4, pinned: [u8; 32], key: &StaticKey) -> Conn {
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
        cfg.max_rto = Duration::from_millis(400);
        let mut c = Conn {
            client: Client::new(cfg, seed, Instant::ZERO),
            sock: UdpSocket::bind(("127.0.0.1", 0)).unwrap(),
            epoch: std::time::Instant::now(),
        };
        loop {
            match c.step() {
                ClientEvent::Established { .. } => return c,
                ClientEvent::Advisory { .. } => continue,
                ev => panic!("handshake with {server}: {ev:?}"),
            }
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Until the client's next event, at most 20 s.
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

    fn reply(&mut self, want: MessageType) {
        loop {
            match self.step() {
                ClientEvent::Reply { message_type } if message_type == want => return,
                ClientEvent::Refused { request, status } => {
                    panic!("{request:?} refused: {status:?}")
                }
                ClientEvent::Failed { request } => panic!("{request:?}: timeout"),
                _ => continue,
            }
        }
    }

    /// WorkstationInfo, then TaskQuery: the tasks.
    fn tasks(&mut self, mac: [u8; 6]) -> Vec<(u32, String)> {
        let wi = info(mac);
        self.client.send_info(self.now(), &wi).unwrap();
        self.reply(MessageType::InfoAck);
        self.client.query_tasks(self.now()).unwrap();
        self.reply(MessageType::TaskReply);
        let t = self.client.task_reply().unwrap();
        t.tasks
            .iter()
            .map(|t| {
                let what = match &t.action {
                    TaskAction::RestoreImage { image, .. } => format!("restore {image}"),
                    other => format!("{other:?}"),
                };
                (t.id, what)
            })
            .collect()
    }
}

/// `preboot-server --config <tree>/preboot.toml`, up: its transaction
/// address and public key from the banner.
fn start(config: &Path) -> (Server, SocketAddrV4, [u8; 32]) {
    let child = Command::new(example())
        .args(["--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let stdout = server.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("banner incomplete: {banner:?}"));
        banner.push(line.clone());
        if line.trim().starts_with("stop:") {
            break;
        }
    }
    let addr = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("transaction: udp "))
        .and_then(|r| r.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no transaction address: {banner:?}"));
    let key_hex = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("server key:"))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no server key: {banner:?}"));
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap();
    }
    (server, addr, key)
}

/// SIGKILL, by PID (the child's own handle), and reap.
fn kill9(server: &mut Server) {
    server.0.kill().unwrap();
    server.0.wait().unwrap();
}

/// The demo tree with free ports, a state directory (the journal's default
/// place), root kept (the test runs as whoever runs it), and no server
/// rule (so that an empty task list is the only right answer once the
/// registered workstation's restore is done).
fn tree_with_state_dir(parent: &Path) -> (DemoTree, PathBuf) {
    let tree = DemoTree::create(parent).unwrap();
    let state = tree.dir().join("state");
    std::fs::create_dir(&state).unwrap();
    let free = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let boot_port = free.local_addr().unwrap().port();
    drop(free);
    let mut text = DEFAULT_CONFIG.to_string();
    for (from, to) in [
        ("dhcp = 6767", "dhcp = 0".to_string()),
        ("boot = 14011", format!("boot = {boot_port}")),
        ("tftp = 6969", "tftp = 0".to_string()),
        ("transaction = 14012", "transaction = 0".to_string()),
        (
            "broadcast_address = \"127.0.0.1\"\n",
            format!(
                "broadcast_address = \"127.0.0.1\"\nstate_dir = \"{}\"\nuser = \"root\"\n",
                state.display()
            ),
        ),
        ("journal_file = \"tasks.journal\"\n", String::new()),
        (
            "[[transaction.store.server.rule]]\nname = \"no image yet\"\nimage = \"images/standard.img\"\nwhen = { base_image = \"\" }\n",
            String::new(),
        ),
    ] {
        assert!(text.contains(from), "{from:?} not in the embedded default");
        text = text.replace(from, &to);
    }
    std::fs::write(tree.config_path(), text).unwrap();
    (tree, state.join("tasks.journal"))
}

/// (c) Issue 14: "an acknowledged report is never lost to kill -9". The
/// demo's registered workstation gets its restore task from a real
/// `preboot-server`, reports success, and the server is killed with
/// SIGKILL as soon as the ReportAck arrives. Restarted on the same state
/// directory, it has the success: the object's flag stays cleared and the
/// task is not handed out again. Before that, a kill -9 after the
/// TaskReply alone keeps the hand-out: the same task comes back, as a
/// retry. After it, a journal damaged before its last record stops the
/// start (exit 1) with the file and line.
#[test]
fn acknowledged_report_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, journal) = tree_with_state_dir(dir.path());
    let key = StaticKey::generate(&mut Urandom::open().unwrap()).unwrap();

    // First run: the task is handed out; kill -9 right after the reply.
    let (mut server, addr, pinned) = start(tree.config_path());
    let mut c = Conn::connect(addr, pinned, &key);
    let tasks = c.tasks(M1);
    kill9(&mut server);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let (id, what) = tasks[0].clone();
    assert_eq!(what, "restore images/lab.img");
    assert!(
        journal.is_file(),
        "the default journal <state_dir>/tasks.journal"
    );
    let lines = journal_lines(&journal);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" H ") && l.contains(&format!(" {id} 1 restore "))),
        "the hand-out is in the journal: {lines:?}"
    );

    // Second run: the same task (a retry); report success; kill -9 as soon
    // as the ack is in.
    let (mut server, addr, pinned) = start(tree.config_path());
    let mut c = Conn::connect(addr, pinned, &key);
    assert_eq!(c.tasks(M1), [(id, what.clone())], "the same task, again");
    let lines = journal_lines(&journal);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" H ") && l.contains(&format!(" {id} 2 restore "))),
        "handed out a second time (a retry): {lines:?}"
    );
    c.client
        .report(
            c.now(),
            &TaskReport {
                task_id: id,
                outcome: Outcome::Success,
                percent: Some(100),
                reason: None,
            },
        )
        .unwrap();
    c.reply(MessageType::ReportAck);
    kill9(&mut server);

    let lines = journal_lines(&journal);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" S ") && l.contains(&format!(" {id} "))),
        "the success is in the journal: {lines:?}"
    );

    // Third run on the same state directory: the report is applied.
    let (mut server, addr, pinned) = start(tree.config_path());
    let mut c = Conn::connect(addr, pinned, &key);
    assert_eq!(c.tasks(M1), [], "not handed out again after kill -9");
    kill9(&mut server);
    let (_, replay) = TaskJournal::open(&journal).unwrap();
    assert_eq!(replay.torn, None);
    let p = restart(
        &journal,
        {
            let c = preboot::driver::boot_server::config::load(tree.config_path()).unwrap();
            c.transaction.unwrap().store
        },
        3,
    );
    let w = &p.store().workstations[0];
    assert!(!w.image_next_boot, "{w:?}");
    assert_eq!(w.last_image.as_deref(), Some("images/lab.img"));
    assert!(p.task_entries(&who(M1)).is_empty());
    drop(p);

    // A damaged record before the last: the server does not start, and
    // says which file and line.
    let mut lines = journal_lines(&journal);
    assert!(lines.len() >= 3 && lines[1].ends_with(" N 2"), "{lines:?}");
    lines[1] = lines[1].replace(" N 2", " N 9");
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let mut server = Server(
        Command::new(example())
            .args(["--config", tree.config_path().to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "started on a damaged journal"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:2: CRC mismatch", journal.display())),
        "{err}"
    );
}

/// `[transaction] journal_file` (default `<server.state_dir>/tasks.journal`,
/// relative to the configuration file) and `max_handouts` (1–1000,
/// default 3); errors name the file, line and field (§4.8).
#[test]
fn journal_config_keys() {
    use preboot::driver::boot_server::config;
    let file = Path::new("/etc/preboot/preboot.toml");
    // The demo names its journal beside the configuration.
    let c = config::parse(file, DEFAULT_CONFIG).unwrap();
    let t = c.transaction.unwrap();
    assert_eq!(
        t.journal.as_deref(),
        Some(Path::new("/etc/preboot/tasks.journal"))
    );
    assert_eq!(t.max_handouts, 3);
    // The server's name in its task records: server.server_ip by default.
    assert_eq!(t.server_name, "127.0.0.1");
    let named = DEFAULT_CONFIG.replace(
        "max_handouts = 3\n",
        "max_handouts = 3\nserver_name = \"imaging-1\"\n",
    );
    let t = config::parse(file, &named).unwrap().transaction.unwrap();
    assert_eq!(t.server_name, "imaging-1");
    // The demo's server policy names an upload target for captures the
    // image-safe data asks for (docs/policy.md).
    assert_eq!(
        t.store.server.upload_target.as_deref(),
        Some("uploads/{name}-{id}.img")
    );
    // Without journal_file: the state directory's, else none (a warning).
    let bare = DEFAULT_CONFIG
        .replace("journal_file = \"tasks.journal\"\n", "")
        .replace("max_handouts = 3\n", "");
    let with_state = bare.replace(
        "broadcast_address = \"127.0.0.1\"\n",
        "broadcast_address = \"127.0.0.1\"\nstate_dir = \"/var/lib/preboot\"\n",
    );
    let t = config::parse(file, &with_state)
        .unwrap()
        .transaction
        .unwrap();
    assert_eq!(
        t.journal.as_deref(),
        Some(Path::new("/var/lib/preboot/tasks.journal"))
    );
    assert_eq!(t.max_handouts, DEFAULT_MAX_HANDOUTS);
    let c = config::parse(file, &bare).unwrap();
    assert_eq!(c.transaction.unwrap().journal, None);
    assert!(
        c.warnings.iter().any(|w| w.contains("no task journal")),
        "{:?}",
        c.warnings
    );
    // Errors.
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    for (from, to, field, words) in [
        (
            "max_handouts = 3",
            "max_handouts = 0",
            "transaction.max_handouts",
            "1 to 1000",
        ),
        (
            "max_handouts = 3",
            "max_handouts = 1001",
            "transaction.max_handouts",
            "1 to 1000",
        ),
        (
            "journal_file = \"tasks.journal\"",
            "journal_file = \"\"",
            "transaction.journal_file",
            "empty path",
        ),
        (
            "max_handouts = 3",
            "server_name = \"\"",
            "transaction.server_name",
            "1 to 64 bytes",
        ),
        (
            "max_handouts = 3",
            "server_name = \"a\\nb\"",
            "transaction.server_name",
            "no control characters",
        ),
        (
            "upload_target = \"uploads/{name}-{id}.img\"",
            "upload_target = \"\"",
            "transaction.store.server.upload_target",
            "empty or longer than 128 bytes",
        ),
    ] {
        let text = DEFAULT_CONFIG.replace(from, to);
        let e = config::parse(file, &text).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (line_of(&text, to), field),
            "{e}"
        );
        assert!(e.message.contains(words), "{e}");
        assert!(
            e.to_string().starts_with("/etc/preboot/preboot.toml:"),
            "{e}"
        );
    }
}

/// Issue 15 "which server handed out a task, and a readable history":
/// a real `preboot-server` named by `transaction.server_name` hands a
/// task out and takes its reports; `preboot-server --tasks <journal>`
/// prints one line per record — time, workstation, task, event, server —
/// and leaves the journal as it was.
#[test]
fn task_history_of_a_real_journal_names_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, journal) = tree_with_state_dir(dir.path());
    let text = std::fs::read_to_string(tree.config_path()).unwrap();
    let text = text.replace(
        "max_handouts = 3\n",
        "max_handouts = 3\nserver_name = \"imaging-test\"\n",
    );
    std::fs::write(tree.config_path(), text).unwrap();
    let key = StaticKey::generate(&mut Urandom::open().unwrap()).unwrap();
    let (mut server, addr, pinned) = start(tree.config_path());
    let mut c = Conn::connect(addr, pinned, &key);
    let tasks = c.tasks(M1);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let id = tasks[0].0;
    for (outcome, percent) in [(Outcome::Progress, 40), (Outcome::Success, 100)] {
        c.client
            .report(
                c.now(),
                &TaskReport {
                    task_id: id,
                    outcome,
                    percent: Some(percent),
                    reason: None,
                },
            )
            .unwrap();
        c.reply(MessageType::ReportAck);
    }
    kill9(&mut server);
    let before = std::fs::read(&journal).unwrap();
    let out = Command::new(example())
        .args(["--tasks", journal.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let want = [
        format!(
            "  mac:52:54:00:00:00:01  task {id}  handed out (1st): restore 'images/lab.img' (the object's image) (forced)  by 'imaging-test'"
        ),
        format!("  mac:52:54:00:00:00:01  task {id}  running: 40%  by 'imaging-test'"),
        format!(
            "  mac:52:54:00:00:00:01  task {id}  succeeded: restored 'images/lab.img'  by 'imaging-test'"
        ),
    ];
    for (line, want) in lines.iter().zip(&want) {
        // The time first: `YYYY-MM-DD HH:MM:SS.ffffffZ`, this year.
        assert_eq!(line.find("  "), Some(27), "{line}");
        assert!(line[..4].parse::<u32>().unwrap() >= 2024, "{line}");
        assert_eq!(&line[27..], want.as_str(), "{text}");
    }
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        before,
        "--tasks only reads the journal"
    );
    // A file that is not a journal: the error names it, exit 1.
    let bogus = dir.path().join("bogus");
    std::fs::write(&bogus, "hello\n").unwrap();
    let out = Command::new(example())
        .args(["--tasks", bogus.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&bogus.display().to_string()),
        "{out:?}"
    );
}
