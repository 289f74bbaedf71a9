//! The std driver on real UDP sockets (loopback, unprivileged ports), and
//! lease durability across `kill -9` of a driver process.
//!
//! The durability test runs the driver in a child process: this test binary
//! re-executes itself with `PREBOOT_DHCP_CHILD` set, and the test
//! `child_server` then serves until killed.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use dhcproto::v4::{self, Decodable, Decoder, DhcpOption, Encodable};
use preboot::dhcp::BootArch;
use preboot::dhcp::config::Pool;
use preboot::driver::dhcp::{DhcpServer, DhcpServerConfig, LeaseFile};

mod dhcp_support;
use dhcp_support::vector;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn client_socket() -> UdpSocket {
    let s = UdpSocket::bind((LO, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn recv(s: &UdpSocket) -> (v4::Message, SocketAddr) {
    let mut buf = [0u8; 1500];
    let (n, from) = s.recv_from(&mut buf).expect("an answer within 3 s");
    (
        v4::Message::decode(&mut Decoder::new(&buf[..n])).unwrap(),
        from,
    )
}

fn loopback(mut c: DhcpServerConfig, client: &UdpSocket) -> DhcpServerConfig {
    c.dhcp_addr = SocketAddrV4::new(LO, 0);
    c.boot_addr = Some(SocketAddrV4::new(LO, 0));
    c.broadcast_address = LO;
    c.client_port = client.local_addr().unwrap().port();
    c
}

fn port(a: SocketAddr) -> u16 {
    a.port()
}

#[test]
fn proxy_over_loopback_answers_ipxe_on_both_ports() {
    let client = client_socket();
    let mut c = DhcpServerConfig::proxy(Ipv4Addr::new(192, 168, 77, 1));
    c.boot_files
        .files
        .insert(BootArch::Bios, "pxelinux.0".into());
    let server = DhcpServer::bind(loopback(c, &client)).unwrap();
    let dhcp_port = port(server.dhcp_local_addr().unwrap());
    let boot_port = port(server.boot_local_addr().unwrap().unwrap());
    let stop = server.stop_handle();
    let h = std::thread::spawn(move || server.run());

    client
        .send_to(&vector("ipxe-bios-discover"), (LO, dhcp_port))
        .unwrap();
    let (offer, from) = recv(&client);
    assert_eq!(
        port(from),
        dhcp_port,
        "the offer leaves from the DHCP socket"
    );
    assert_eq!(offer.opts().msg_type(), Some(v4::MessageType::Offer));
    assert_eq!(offer.xid(), 0x0b3d_d47d);

    client
        .send_to(&vector("ipxe-bios-request-4011"), (LO, boot_port))
        .unwrap();
    let (ack, from) = recv(&client);
    assert_eq!(
        port(from),
        boot_port,
        "the ACK leaves from port 4011's socket"
    );
    assert_eq!(ack.opts().msg_type(), Some(v4::MessageType::Ack));
    assert_eq!(&ack.fname().unwrap()[..10], b"pxelinux.0");

    stop.stop();
    h.join().unwrap().unwrap();
}

fn pool() -> Pool {
    Pool {
        subnet: Ipv4Addr::new(127, 0, 0, 0),
        prefix_len: 8,
        start: Ipv4Addr::new(127, 1, 0, 1),
        end: Ipv4Addr::new(127, 1, 255, 254),
        router: None,
        dns: Default::default(),
        lease_time: Duration::from_secs(3600),
    }
}

fn message(mac: u8, f: impl FnOnce(&mut v4::Message)) -> Vec<u8> {
    let mut m = v4::Message::default();
    m.set_opcode(v4::Opcode::BootRequest)
        .set_xid(0xdead_0000 + u32::from(mac))
        .set_chaddr(&[2, 0, 0, 0, 0x11, mac]);
    f(&mut m);
    m.to_vec().unwrap()
}

/// DISCOVER → OFFER → REQUEST → ACK; returns the granted address.
fn dora(client: &UdpSocket, to: (Ipv4Addr, u16), mac: u8) -> Ipv4Addr {
    let d = message(mac, |m| {
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Discover));
    });
    client.send_to(&d, to).unwrap();
    let (offer, _) = recv(client);
    assert_eq!(offer.opts().msg_type(), Some(v4::MessageType::Offer));
    let r = message(mac, |m| {
        m.opts_mut()
            .insert(DhcpOption::MessageType(v4::MessageType::Request));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(LO));
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    });
    client.send_to(&r, to).unwrap();
    let (ack, _) = recv(client);
    assert_eq!(ack.opts().msg_type(), Some(v4::MessageType::Ack));
    ack.yiaddr()
}

/// The child: serve full mode with the lease log named in the environment,
/// write the bound port to a file, run until killed.
#[test]
#[ignore = "role: run in a child process by the restart tests"]
fn child_server() {
    let Ok(dir) = std::env::var("PREBOOT_DHCP_CHILD") else {
        return; // only runs as a re-executed child
    };
    let dir = PathBuf::from(dir);
    let client_port: u16 = std::env::var("PREBOOT_DHCP_CLIENT_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let mut c = DhcpServerConfig::full(LO, pool());
    c.dhcp_addr = SocketAddrV4::new(LO, 0);
    c.boot_addr = None;
    c.broadcast_address = LO;
    c.client_port = client_port;
    c.lease_file = Some(dir.join("leases"));
    c.rate_limit.per_second = 0;
    let server = DhcpServer::bind(c).unwrap();
    let p = port(server.dhcp_local_addr().unwrap());
    std::fs::write(dir.join("port.tmp"), p.to_string()).unwrap();
    std::fs::rename(dir.join("port.tmp"), dir.join("port")).unwrap();
    server.run().unwrap();
}

/// Kills and reaps the child however the test ends.
struct Guard(Child);

impl Guard {
    /// SIGKILL (`kill -9`) and reap.
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn_child(dir: &Path, client_port: u16) -> (Guard, u16) {
    let _ = std::fs::remove_file(dir.join("port"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["child_server", "--exact", "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env("PREBOOT_DHCP_CHILD", dir)
        .env("PREBOOT_DHCP_CLIENT_PORT", client_port.to_string())
        .spawn()
        .unwrap();
    let child = Guard(child);
    let start = Instant::now();
    loop {
        if let Ok(p) = std::fs::read_to_string(dir.join("port")) {
            return (child, p.trim().parse().unwrap());
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "child did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn no_granted_lease_is_lost_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_socket();
    let client_port = client.local_addr().unwrap().port();
    let (mut child, p) = spawn_child(dir.path(), client_port);
    let mut granted = Vec::new();
    for mac in 0..50u8 {
        granted.push((mac, dora(&client, (LO, p), mac)));
    }
    // SIGKILL right after the last ACK arrived: no chance to flush.
    child.kill9();

    // Every acknowledged lease is in the log…
    let (_f, live) = LeaseFile::open(&dir.path().join("leases")).unwrap();
    for (_, a) in &granted {
        assert!(live.iter().any(|r| r.addr == *a), "{a} lost");
    }
    drop(_f);
    // …and a restarted server honours them: each client is offered its
    // address again, and a new client gets none of them.
    let (mut child, p) = spawn_child(dir.path(), client_port);
    for (mac, a) in granted.iter().step_by(7) {
        let d = message(*mac, |m| {
            m.opts_mut()
                .insert(DhcpOption::MessageType(v4::MessageType::Discover));
        });
        client.send_to(&d, (LO, p)).unwrap();
        assert_eq!(recv(&client).0.yiaddr(), *a);
    }
    let fresh = dora(&client, (LO, p), 200);
    assert!(granted.iter().all(|(_, a)| *a != fresh));
    child.kill9();
}

#[test]
fn std_client_against_std_full_server_over_loopback() {
    use preboot::dhcp::client::ClientConfig;
    use preboot::driver::dhcp::{DhcpClientConfig, run_client};
    // The client's socket port must be known before the server starts.
    let probe = UdpSocket::bind((LO, 0)).unwrap();
    let client_port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut c = DhcpServerConfig::full(LO, pool());
    c.dhcp_addr = SocketAddrV4::new(LO, 0);
    c.boot_addr = None;
    c.broadcast_address = LO;
    c.client_port = client_port;
    c.boot_files
        .files
        .insert(BootArch::UefiX64, "grubx64.efi".into());
    let server = DhcpServer::bind(c).unwrap();
    let server_port = port(server.dhcp_local_addr().unwrap());
    let stop = server.stop_handle();
    let h = std::thread::spawn(move || server.run());
    let mut cc =
        DhcpClientConfig::new(ClientConfig::new([2, 0, 0, 0, 0x22, 1], 7, [9; 16]), 0x5eed);
    cc.bind = SocketAddrV4::new(LO, client_port);
    cc.server_port = server_port;
    cc.broadcast_address = LO;
    let info = run_client(cc).unwrap();
    assert_eq!(info.address, Ipv4Addr::new(127, 1, 0, 1));
    assert_eq!(info.boot_file.as_str(), "grubx64.efi");
    assert_eq!(info.dhcp_server, LO);
    stop.stop();
    h.join().unwrap().unwrap();
}

/// Issue 11 item 2: another local socket cannot share the server's ports.
/// With `SO_REUSEADDR` on the server's sockets, a process of any user
/// could bind the same address and port with `SO_REUSEADDR` and receive
/// the boot requests (4011 is not a privileged port). Now the bind fails,
/// for 4011 in both modes and for 67 in full mode; the 4011 requests still
/// reach the server.
#[test]
fn another_socket_cannot_take_the_server_ports() {
    use socket2::{Domain, Protocol, Socket, Type};
    let hijack = |port: u16| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from((LO, port)).into())
    };
    for full in [false, true] {
        let client = client_socket();
        let mut c = if full {
            DhcpServerConfig::full(LO, pool())
        } else {
            DhcpServerConfig::proxy(Ipv4Addr::new(192, 168, 77, 1))
        };
        c.boot_files
            .files
            .insert(BootArch::Bios, "pxelinux.0".into());
        let server = DhcpServer::bind(loopback(c, &client)).unwrap();
        let dhcp_port = port(server.dhcp_local_addr().unwrap());
        let boot_port = port(server.boot_local_addr().unwrap().unwrap());
        let e = hijack(boot_port).expect_err("4011 cannot be shared");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        if full {
            let e = hijack(dhcp_port).expect_err("67 in full mode cannot be shared");
            assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        }
        let stop = server.stop_handle();
        let h = std::thread::spawn(move || server.run());
        expect_boot_ack(&client, boot_port);
        stop.stop();
        h.join().unwrap().unwrap();
    }
}

/// Issue 11 item 2: a second instance with the same lease log (or state
/// directory) is refused with a message naming the lock and its holder,
/// before it touches the log; once the first stops, it starts.
#[test]
fn a_second_instance_with_the_same_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_socket();
    let mut c = loopback(DhcpServerConfig::full(LO, pool()), &client);
    c.boot_addr = None;
    c.lease_file = Some(dir.path().join("leases"));
    let first = DhcpServer::bind(c.clone()).unwrap();
    let e = DhcpServer::bind(c.clone()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    let msg = e.to_string();
    assert!(msg.contains("another preboot instance"), "{msg}");
    assert!(msg.contains("leases.lock"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    // The same with an explicit state directory (and no lease log).
    let mut s = loopback(DhcpServerConfig::full(LO, pool()), &client);
    s.boot_addr = None;
    s.state_dir = Some(dir.path().to_path_buf());
    let held = DhcpServer::bind(s.clone()).unwrap();
    let e = DhcpServer::bind(s.clone()).unwrap_err();
    assert!(e.to_string().contains("preboot.lock"), "{e}");
    drop(held);
    DhcpServer::bind(s).unwrap();
    drop(first);
    DhcpServer::bind(c).unwrap();
}

/// Issue 11 item 1, driver depth: a menu over its 255-byte PXE sub-option
/// is refused when the server is built, before any socket is bound.
#[test]
fn a_menu_that_cannot_be_sent_is_refused_at_bind() {
    let client = client_socket();
    let mut c = DhcpServerConfig::proxy(Ipv4Addr::new(192, 168, 77, 1));
    c.boot_files
        .files
        .insert(BootArch::Bios, "pxelinux.0".into());
    c.menu = preboot::driver::dhcp::MenuPolicy::OnKeyPress { timeout_secs: 5 };
    c.menu_items = (0..8u16)
        .map(|n| (0x8000 + n, format!("Boot item number {n:02} for lab PC")))
        .collect();
    let e = DhcpServer::bind(loopback(c.clone(), &client)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("264 bytes"), "{e}");
    c.menu_items.pop();
    DhcpServer::bind(loopback(c, &client)).unwrap();
}

/// The child of `an_unprivileged_user_cannot_take_port_4011`: as another
/// user, bind the port named in the environment with `SO_REUSEADDR` and say
/// whether it could, and what it received within 2 s.
#[test]
fn child_hijack() {
    use socket2::{Domain, Protocol, Socket, Type};
    let Ok(port) = std::env::var("PREBOOT_HIJACK_PORT") else {
        return; // only runs as a re-executed child
    };
    let port: u16 = port.parse().unwrap();
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    match s.bind(&SocketAddr::from((LO, port)).into()) {
        Err(e) => println!("hijack: refused ({e})"),
        Ok(()) => {
            let s: UdpSocket = s.into();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 1500];
            match s.recv_from(&mut buf) {
                Ok((n, _)) => println!("hijack: bound, received {n} bytes"),
                Err(_) => println!("hijack: bound, received nothing"),
            }
        }
    }
}

/// Issue 11 item 2, as the attack happens: while the server holds its
/// boot server port, a process of another, unprivileged user (`nobody`,
/// via `setpriv`; the test needs root to switch, else it says so and
/// passes) binds it with `SO_REUSEADDR`. The bind is refused, and the
/// client's 4011 request reaches the server.
#[test]
fn an_unprivileged_user_cannot_take_port_4011() {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to run a child as nobody");
        return;
    }
    let client = client_socket();
    let mut c = DhcpServerConfig::proxy(Ipv4Addr::new(192, 168, 77, 1));
    c.boot_files
        .files
        .insert(BootArch::Bios, "pxelinux.0".into());
    let server = DhcpServer::bind(loopback(c, &client)).unwrap();
    let boot_port = port(server.boot_local_addr().unwrap().unwrap());
    let stop = server.stop_handle();
    let h = std::thread::spawn(move || server.run());
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["child_hijack", "--exact", "--nocapture", "--test-threads=1"])
        .env("PREBOOT_HIJACK_PORT", boot_port.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hijack: refused"), "{text}");
    expect_boot_ack(&client, boot_port);
    stop.stop();
    h.join().unwrap().unwrap();
}

/// Issue 11 item 5, end to end: REQUESTs under one client identifier with a
/// fresh random `chaddr` each (38,350 fsynced lines, 1.84 MB, in 8 s
/// before). With the default rate limit, the client identifier's bucket
/// lets through its burst and 10 a second; with the limit off, the log
/// still stays bounded by compaction while running. Each flood lasts 1.5 s.
#[test]
fn a_request_flood_under_one_client_id_keeps_the_log_small() {
    for limited in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let client = client_socket();
        let mut c = loopback(DhcpServerConfig::full(LO, pool()), &client);
        c.boot_addr = None;
        c.lease_file = Some(dir.path().join("leases"));
        if !limited {
            c.rate_limit.per_second = 0;
        }
        let server = DhcpServer::bind(c).unwrap();
        let p = port(server.dhcp_local_addr().unwrap());
        let stop = server.stop_handle();
        let h = std::thread::spawn(move || server.run());
        let start = Instant::now();
        let mut sent = 0u32;
        let mut acks = 0u32;
        client.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1500];
        while start.elapsed() < Duration::from_millis(1500) && sent < 30_000 {
            let b = sent.to_be_bytes();
            let mut m = v4::Message::default();
            m.set_opcode(v4::Opcode::BootRequest)
                .set_xid(sent)
                .set_chaddr(&[2, 0x77, b[0], b[1], b[2], b[3]]);
            m.opts_mut()
                .insert(DhcpOption::MessageType(v4::MessageType::Request));
            m.opts_mut()
                .insert(DhcpOption::ClientIdentifier(b"\x01one-client".to_vec()));
            m.opts_mut()
                .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(127, 1, 0, 9)));
            if client.send_to(&m.to_vec().unwrap(), (LO, p)).is_ok() {
                sent += 1;
            }
            while client.recv_from(&mut buf).is_ok() {
                acks += 1;
            }
            if sent % 64 == 0 {
                // Let the server keep up (loopback drops what overflows).
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        client.set_nonblocking(false).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while client.recv_from(&mut buf).is_ok() {
            acks += 1;
        }
        stop.stop();
        h.join().unwrap().unwrap();
        let text = std::fs::read_to_string(dir.path().join("leases")).unwrap();
        let lines = text.lines().count();
        eprintln!(
            "limited={limited}: {sent} REQUESTs, {acks} ACKs, log {lines} lines, {} bytes",
            text.len()
        );
        assert!(
            lines <= 1 + preboot::driver::dhcp::lease_file::COMPACT_MIN_RECORDS + 512,
            "{lines} lines"
        );
        if limited {
            // Burst 20, then 10/s for 1.5 s (plus the drain).
            assert!(acks <= 20 + 20, "{acks} ACKs");
        }
        // The one lease survives.
        let (_f, live) = LeaseFile::open(&dir.path().join("leases")).unwrap();
        assert_eq!(live.len(), 1);
    }
}

/// The iPXE 4011 REQUEST sent to the boot server port is answered with an
/// ACK (PXE 2.1 §2.2.3): the server still serves.
fn expect_boot_ack(client: &UdpSocket, boot_port: u16) {
    client
        .send_to(&vector("ipxe-bios-request-4011"), (LO, boot_port))
        .unwrap();
    let (ack, _) = recv(client);
    assert_eq!(ack.opts().msg_type(), Some(v4::MessageType::Ack));
}

/// A second engine for `one_event_loop_serves_dhcp_beside_another_service`:
/// answers every datagram with the name of the thread that read it.
struct Echo {
    socket: preboot::driver::event_loop::mio::net::UdpSocket,
}

impl preboot::driver::event_loop::Service for Echo {
    fn start(&mut self, registrar: preboot::driver::event_loop::Registrar) -> std::io::Result<()> {
        registrar.register(&mut self.socket, 0)
    }
    fn ready(&mut self, _token: usize) -> std::io::Result<()> {
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = self.socket.recv_from(&mut buf) {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            self.socket.send_to(name.as_bytes(), from)?;
        }
        Ok(())
    }
    fn poll_timeout(&self) -> Option<preboot::Instant> {
        None
    }
    fn handle_timeout(&mut self, _now: preboot::Instant) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines of one thread, kept in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Issue 12: the DHCP server is one service of an event loop among others.
/// One loop thread, `one-loop`, hosts the DHCP service (full mode with a
/// lease log, ports 67 and 4011) and a second engine (an echo): a DORA, a
/// 4011 REQUEST and an echo are all answered, the DHCP log lines are
/// written on that thread (the subscriber is that thread's alone), and the
/// echo says it ran there too — no thread per protocol, no lock around the
/// engine. Stopping the loop drops the service, whose lease writer commits
/// and is joined: the granted lease is in the log.
#[test]
fn one_event_loop_serves_dhcp_beside_another_service() {
    use preboot::driver::event_loop::{EventLoop, LoopGroup, mio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let client = client_socket();
    let mut c = loopback(DhcpServerConfig::full(LO, pool()), &client);
    c.lease_file = Some(dir.path().join("leases"));
    c.boot_files
        .files
        .insert(BootArch::Bios, "pxelinux.0".into());
    let dhcp = DhcpServer::bind(c).unwrap().into_service().unwrap();
    let dhcp_port = dhcp.dhcp_local_addr().port();
    let boot_port = dhcp.boot_local_addr().unwrap().port();
    let echo = Echo {
        socket: mio::net::UdpSocket::bind((LO, 0).into()).unwrap(),
    };
    let echo_addr = echo.socket.local_addr().unwrap();

    let mut event_loop = EventLoop::new("one-loop").unwrap();
    event_loop.add(Box::new(dhcp)).unwrap();
    event_loop.add(Box::new(echo)).unwrap();
    let mut group = LoopGroup::new(vec![event_loop]);
    let stop = Arc::new(AtomicBool::new(false));
    let log = Captured::default();
    let (s, l) = (stop.clone(), log.clone());
    let h = std::thread::Builder::new()
        .name("one-loop".into())
        .spawn(move || {
            let sub = tracing_subscriber::fmt()
                .with_writer(l)
                .with_ansi(false)
                .finish();
            tracing::subscriber::with_default(sub, || {
                let r = group.run(&s);
                drop(group);
                r
            })
        })
        .unwrap();

    // Both engines at once: an echo request between the DHCP messages.
    let echo_client = client_socket();
    echo_client.send_to(b"ping", echo_addr).unwrap();
    let granted = dora(&client, (LO, dhcp_port), 0x31);
    expect_boot_ack(&client, boot_port);
    let mut buf = [0u8; 64];
    let (n, from) = echo_client
        .recv_from(&mut buf)
        .expect("the echo within 3 s");
    assert_eq!(from, echo_addr);
    assert_eq!(&buf[..n], b"one-loop", "the echo ran on the loop thread");

    stop.store(true, Ordering::SeqCst);
    h.join().unwrap().unwrap();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    for port in [dhcp_port, boot_port] {
        assert!(
            text.lines()
                .any(|l| l.contains("dhcp: received") && l.contains(&format!("port={port}"))),
            "no DHCP line for port {port} on the loop thread:\n{text}"
        );
    }
    // (No assertion on the "ack" line: tracing caches a callsite's
    // interest process-wide, and a test thread without this subscriber can
    // register that callsite first, so a thread-scoped subscriber may miss
    // it. The lease log below proves the grant.)
    let (_f, live) = LeaseFile::open(&dir.path().join("leases")).unwrap();
    assert!(
        live.iter().any(|r| r.addr == granted),
        "{granted} not logged"
    );
}
