//! The server keeps and logs what a workstation says it is
//! (docs/transaction-protocol.md §4.3, TLVs 20–27): an accepted
//! `WorkstationInfo` is an event, its facts are the session's, and the
//! UDP driver writes them in one log line.

#[path = "support/transaction.rs"]
mod support;

use core::net::{Ipv4Addr, SocketAddrV4};
use preboot::Instant;
use preboot::driver::transaction::UdpTransactionServer;
use preboot::engine::Datagram;
use preboot::policy::WorkstationId;
use preboot::transaction::{Client, ClientConfig, ClientEvent, ServerConfig, ServerEvent};
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::{MAX_FRAME_LEN, MessageType};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

fn dell(macs: &[[u8; 6]]) -> WorkstationInfo<'static> {
    let mut i = info(macs, None);
    i.smbios = Smbios {
        manufacturer: Some("Dell Inc."),
        product: Some("OptiPlex 7090"),
        serial: Some("4CZ1234"),
        bios_vendor: Some("Dell Inc."),
        bios_version: Some("1.17.0"),
        chassis_type: Some(3),
        ..Smbios::default()
    };
    i
}

/// §4.3: the accepted `WorkstationInfo` is an `InfoAccepted` event for the
/// session's object, and `session_info` gives its SMBIOS facts back; a
/// second one replaces them.
#[test]
fn accepted_info_is_an_event_with_its_facts() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = establish(&mut s, 1, 1, addr(1), Instant::ZERO);
    while s.poll_event().is_some() {}
    request(&mut c, &mut s, addr(1), Instant::ZERO, |c, now| {
        c.send_info(now, &dell(&[MAC_A])).unwrap()
    });
    let ev: Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
    let sid = ev
        .iter()
        .find_map(|e| match e {
            ServerEvent::InfoAccepted {
                session_id,
                workstation,
            } => {
                assert_eq!(*workstation, WorkstationId::Mac(MAC_A));
                Some(*session_id)
            }
            _ => None,
        })
        .expect("InfoAccepted");
    let got = s.session_info(sid).expect("the session's info");
    assert_eq!(got.smbios, dell(&[MAC_A]).smbios);
    assert_eq!(s.session_info(sid ^ 1), None);

    let mut again = dell(&[MAC_A]);
    again.smbios.bios_version = Some("1.18.0");
    request(&mut c, &mut s, addr(1), Instant::ZERO, |c, now| {
        c.send_info(now, &again).unwrap()
    });
    assert_eq!(
        s.session_info(sid).unwrap().smbios.bios_version,
        Some("1.18.0")
    );
}

/// A log sink for the server thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

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

/// One step of the client over the real socket, bounded to 20 s.
fn client_step(client: &mut Client, sock: &UdpSocket, epoch: std::time::Instant) -> ClientEvent {
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let mut buf = [0u8; MAX_FRAME_LEN];
    let deadline = epoch.elapsed() + Duration::from_secs(20);
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    loop {
        let now = Instant::from_micros(epoch.elapsed().as_micros() as u64);
        while let Some(t) = client.poll_transmit(now, &mut buf).unwrap() {
            sock.send_to(&buf[..t.len], t.remote).unwrap();
        }
        if let Some(e) = client.poll_event() {
            return e;
        }
        assert!(epoch.elapsed() < deadline, "no reply within 20 s");
        let mut rbuf = [0u8; 2048];
        if let Ok((n, SocketAddr::V4(from))) = sock.recv_from(&mut rbuf) {
            let now = Instant::from_micros(epoch.elapsed().as_micros() as u64);
            client.handle(
                now,
                Datagram {
                    local: any,
                    remote: from,
                    payload: &rbuf[..n],
                },
            );
        }
        client.handle_timeout(Instant::from_micros(epoch.elapsed().as_micros() as u64));
    }
}

/// The UDP driver on loopback writes one info line per accepted
/// `WorkstationInfo` with the object and its SMBIOS facts, quoted.
#[test]
fn udp_server_logs_the_facts() {
    let mut srv = UdpTransactionServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        lab_server(ServerConfig::default()),
    )
    .unwrap();
    let SocketAddr::V4(server_addr) = srv.local_addr().unwrap() else {
        panic!("v4")
    };
    let log = Captured::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (l, stop2) = (log.clone(), stop.clone());
    let handle = std::thread::spawn(move || {
        let sub = tracing_subscriber::fmt()
            .with_writer(l)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, || {
            let t0 = std::time::Instant::now();
            srv.serve(|_| stop2.load(Ordering::SeqCst) || t0.elapsed() > Duration::from_secs(30))
        })
    });

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let epoch = std::time::Instant::now();
    let mut client = Client::new(
        ClientConfig::new(server_addr, server_key().public(), ws_key(1)),
        seed(1),
        Instant::ZERO,
    );
    assert!(matches!(
        client_step(&mut client, &sock, epoch),
        ClientEvent::Established { .. }
    ));
    client.send_info(Instant::ZERO, &dell(&[MAC_A])).unwrap();
    assert_eq!(
        client_step(&mut client, &sock, epoch),
        ClientEvent::Reply {
            message_type: MessageType::InfoAck
        }
    );
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap().unwrap();

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("workstation info"))
        .unwrap_or_else(|| panic!("no info line in:\n{text}"));
    for part in [
        "INFO",
        "workstation=52:54:00:00:00:0a",
        "system_manufacturer=\"Dell Inc.\"",
        "product_name=\"OptiPlex 7090\"",
        "serial_number=\"4CZ1234\"",
        "bios_version=\"1.17.0\"",
        "chassis_type=\"Desktop\"(3)",
        "ram_mb=8192",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
}
