//! The std UDP driver on loopback, driven by the client engine over a real
//! socket (docs/transaction-protocol.md §1: UDP, one request, one reply;
//! §11.2: the workstation's key provisioned from `/dev/urandom`).

use core::net::{Ipv4Addr, SocketAddrV4};
use preboot::Instant;
use preboot::driver::transaction::{UdpTransactionServer, Urandom};
use preboot::engine::Datagram;
use preboot::policy::{
    ImagingProxy, MemoryStore, MenuSetting, ServerPolicy, WorkstationId, WorkstationObject,
};
use preboot::transaction::provision::{next_handshake, provision};
use preboot::transaction::{
    Client, ClientConfig, ClientEvent, Server, ServerConfig, ServerEvent, StaticKey,
    WorkstationKeys,
};
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::{Header, MAX_FRAME_LEN, MessageType};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[path = "support/transaction.rs"]
mod support;
use support::Mem;

/// The receiving socket's address (these engines do not look at it).
const ANY: std::net::SocketAddrV4 = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);

const MAC: [u8; 6] = [0x52, 0x54, 0, 0xAB, 0xCD, 0xEF];

fn client_step(client: &mut Client, sock: &UdpSocket, epoch: std::time::Instant) -> ClientEvent {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let deadline = epoch.elapsed() + Duration::from_secs(20);
    loop {
        let now = Instant::from_micros(epoch.elapsed().as_micros() as u64);
        while let Some(t) = client.poll_transmit(now, &mut buf).unwrap() {
            sock.send_to(&buf[..t.len], t.remote).unwrap();
        }
        if let Some(e) = client.poll_event() {
            return e;
        }
        assert!(epoch.elapsed() < deadline, "no reply within 20 s");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut rbuf = [0u8; 2048];
        if let Ok((n, SocketAddr::V4(from))) = sock.recv_from(&mut rbuf) {
            let now = Instant::from_micros(epoch.elapsed().as_micros() as u64);
            client.handle(
                now,
                Datagram {
                    local: ANY,
                    remote: from,
                    payload: &rbuf[..n],
                },
            );
        }
        let now = Instant::from_micros(epoch.elapsed().as_micros() as u64);
        client.handle_timeout(now);
    }
}

type Srv = Server<ImagingProxy<MemoryStore>, WorkstationKeys, Urandom>;

/// The workstation side: its provisioned key on its "disk" (§11.2).
struct Workstation {
    disk: Mem,
    record: preboot::transaction::provision::KeyRecord,
    rng: Urandom,
}

/// A server whose store holds `w` (bound to MAC's key), and the one
/// workstation with that key; returns the server's public key too.
fn setup(w: WorkstationObject) -> (Srv, [u8; 32], Workstation) {
    let store = MemoryStore {
        server: ServerPolicy::default(),
        workstations: vec![w],
        ..MemoryStore::default()
    };
    let mut rng = Urandom::open().unwrap();
    let server_key = StaticKey::generate(&mut rng).unwrap();
    let server_public = server_key.public();
    let mut disk = Mem([0; 1024]);
    let record = provision(&mut disk, &mut rng).unwrap();
    let mut keys = WorkstationKeys::new(false);
    keys.insert(WorkstationId::Mac(MAC), record.key.public())
        .unwrap();
    let engine = Server::new(
        ServerConfig::default(),
        server_key,
        keys,
        ImagingProxy::new(store),
        Urandom::open().unwrap(),
    );
    (engine, server_public, Workstation { disk, record, rng })
}

/// Handshake and `WorkstationInfo` (§3.3, §4.3): a session whose info
/// the server acknowledged with `name`.
fn establish(
    server: SocketAddrV4,
    server_public: [u8; 32],
    ws: &mut Workstation,
    sock: &UdpSocket,
    epoch: std::time::Instant,
    name: &str,
) -> Client {
    let seed = next_handshake(&mut ws.disk, &mut ws.record, &mut ws.rng).unwrap();
    let mut client = Client::new(
        ClientConfig::new(server, server_public, ws.record.key.clone()),
        seed,
        Instant::ZERO,
    );
    assert!(matches!(
        client_step(&mut client, sock, epoch),
        ClientEvent::Established { .. }
    ));
    let mut wi = WorkstationInfo::default();
    wi.macs.push(MAC).unwrap();
    client.send_info(Instant::ZERO, &wi).unwrap();
    assert_eq!(
        client_step(&mut client, sock, epoch),
        ClientEvent::Reply {
            message_type: MessageType::InfoAck
        }
    );
    assert_eq!(client.info_ack().unwrap().name, Some(name));
    client
}

#[test]
fn client_engine_against_udp_server_on_loopback() {
    let mut w = WorkstationObject::new(WorkstationId::Mac(MAC), "loop-pc");
    w.menu = Some(MenuSetting::never());
    w.maintenance = true;
    let (engine, server_public, mut ws) = setup(w);
    let mut srv = UdpTransactionServer::bind("127.0.0.1:0".parse().unwrap(), engine).unwrap();
    let SocketAddr::V4(server_addr) = srv.local_addr().unwrap() else {
        panic!("v4")
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        srv.serve(|ev| {
            seen.extend_from_slice(ev);
            stop2.load(Ordering::SeqCst)
        })
        .unwrap();
        (seen, srv.engine().policy().reports_applied())
    });

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let epoch = std::time::Instant::now();
    let mut client = establish(server_addr, server_public, &mut ws, &sock, epoch, "loop-pc");
    client.query_menu(Instant::ZERO).unwrap();
    client_step(&mut client, &sock, epoch);
    assert_eq!(client.menu_reply().unwrap().mode, MenuMode::Never);
    client.query_tasks(Instant::ZERO).unwrap();
    client_step(&mut client, &sock, epoch);
    let t = client.task_reply().unwrap();
    assert!(matches!(t.tasks[0].action, TaskAction::Maintenance { .. }));
    let id = t.tasks[0].id;
    drop(t);
    client
        .report(
            Instant::ZERO,
            &TaskReport {
                task_id: id,
                outcome: Outcome::Success,
                percent: None,
                reason: None,
            },
        )
        .unwrap();
    assert_eq!(
        client_step(&mut client, &sock, epoch),
        ClientEvent::Reply {
            message_type: MessageType::ReportAck
        }
    );

    stop.store(true, Ordering::SeqCst);
    // wake the server loop
    sock.send_to(
        b"x",
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, server_addr.port()),
    )
    .unwrap();
    let (events, applied) = handle.join().unwrap();
    assert_eq!(applied, 1);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ServerEvent::SessionEstablished { .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ServerEvent::TaskReported { .. }))
    );
}

/// The same server as a `TransactionService` on an event loop (the way the
/// boot server hosts it): a client establishes a session and gets its info
/// acknowledged; stopping the loop stops it.
#[test]
fn transaction_service_on_an_event_loop() {
    use preboot::driver::event_loop::{EventLoop, LoopGroup};
    use preboot::driver::transaction::TransactionService;
    let mut w = WorkstationObject::new(WorkstationId::Mac(MAC), "loop-pc");
    w.menu = Some(MenuSetting::never());
    let (engine, server_public, mut ws) = setup(w);
    let service = TransactionService::bind("127.0.0.1:0".parse().unwrap(), engine).unwrap();
    let SocketAddr::V4(server_addr) = service.local_addr().unwrap() else {
        panic!("v4")
    };
    let mut event_loop = EventLoop::new("transaction-test").unwrap();
    event_loop.add(Box::new(service)).unwrap();
    let running = LoopGroup::new(vec![event_loop]).spawn().unwrap();

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let epoch = std::time::Instant::now();
    establish(server_addr, server_public, &mut ws, &sock, epoch, "loop-pc");
    running.stop().unwrap();
}

/// §3.2 under a burst: 40 `Hello`s queued on the server's socket before it
/// reads any (a boot storm while its loop was busy) each get their
/// `Cookie`. The service answers in batches no larger than the engine's
/// reply queue (`transaction::QUEUED`), so none is dropped.
#[test]
fn a_burst_of_hellos_is_answered_whole() {
    let w = WorkstationObject::new(WorkstationId::Mac(MAC), "burst-pc");
    let (engine, _, _) = setup(w);
    let mut srv = UdpTransactionServer::bind("127.0.0.1:0".parse().unwrap(), engine).unwrap();
    let server_addr = srv.local_addr().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    const N: u32 = 40;
    assert!(N as usize > preboot::transaction::QUEUED * 2);
    for i in 0..N {
        let mut hello = [0u8; MAX_FRAME_LEN];
        let h = Header {
            message_type: MessageType::Hello,
            status: preboot::wire::transaction::Status::Ok,
            flags: 0,
            request_id: 1,
            session_id: 0,
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&i.to_be_bytes());
        let len = preboot::wire::transaction::emit_frame(&h, &Hello { nonce }, false, &mut hello)
            .unwrap();
        sock.send_to(&hello[..len], server_addr).unwrap();
    }
    // All 40 wait in the socket; one poll reads and answers them.
    let _ = srv.poll_once(Duration::from_millis(500)).unwrap();
    let mut cookies = 0;
    let mut buf = [0u8; MAX_FRAME_LEN];
    while cookies < N {
        match sock.recv_from(&mut buf) {
            Ok((56, _)) => cookies += 1,
            Ok((n, _)) => panic!("a {n}-byte answer to a Hello"),
            Err(_) => break,
        }
        if cookies % 8 == 0 {
            let _ = srv.poll_once(Duration::from_millis(1)).unwrap();
        }
    }
    assert_eq!(cookies, N, "every Hello got its Cookie");
}
