//! Scripted conversations with the client engine (docs/transaction-protocol.md
//! §3 handshake checks, §6 retransmission schedule and reply matching).

use core::net::{Ipv4Addr, SocketAddrV4};
use hmac::{Hmac, KeyInit, Mac};
use preboot::Instant;
use preboot::engine::Datagram;
use preboot::transaction::{Client, ClientConfig, ClientError, ClientEvent};
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::*;
use sha2::Sha256;
use std::time::Duration;

/// The receiving socket's address (these engines do not look at it).
const ANY: std::net::SocketAddrV4 = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);

const KEY: &[u8] = b"client-test-site-secret";
const SID: u64 = 0xABCD_EF01_2345_6789;
const NC: [u8; 16] = [0x5A; 16];
const NS: [u8; 16] = [0xA5; 16];

fn h(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn srv() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), DEFAULT_PORT)
}

fn sk(key: &[u8]) -> [u8; 32] {
    h(key, &[b"PBTX1 session", &NC, &NS, &SID.to_be_bytes()])
}

fn frame<P: Payload>(
    t: MessageType,
    st: Status,
    rid: u32,
    sid: u64,
    p: &P,
    mac: Option<[u8; 32]>,
) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let hd = Header {
        message_type: t,
        status: st,
        request_id: rid,
        session_id: sid,
    };
    let n = emit_frame(&hd, p, mac.is_some(), &mut buf).unwrap();
    if let Some(k) = mac {
        let tag = h(&k, &[&buf[..n - 32]]);
        buf[n - 32..n].copy_from_slice(&tag);
    }
    buf.truncate(n);
    buf
}

fn challenge(key: &[u8]) -> Vec<u8> {
    let proof = h(
        key,
        &[b"PBTX1 server", &NC, &NS, &SID.to_be_bytes(), b"site"],
    );
    frame(
        MessageType::Challenge,
        Status::Ok,
        1,
        SID,
        &Challenge {
            server_nonce: NS,
            server_proof: proof,
        },
        None,
    )
}

fn sent(c: &mut Client, now: Instant) -> Option<Vec<u8>> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    c.poll_transmit(now, &mut buf).unwrap().map(|t| {
        assert_eq!(t.remote, srv());
        buf[..t.len].to_vec()
    })
}

fn new_client() -> Client {
    Client::new(
        ClientConfig::new(srv(), b"site", KEY).unwrap(),
        NC,
        Instant::ZERO,
    )
}

fn established() -> Client {
    let mut c = new_client();
    sent(&mut c, Instant::ZERO).unwrap();
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: srv(),
            payload: &challenge(KEY),
        },
    );
    sent(&mut c, Instant::ZERO).unwrap();
    proof_ack(&mut c);
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Established { session_id: SID })
    );
    c
}

/// §3, §4.1–§4.2: Hello layout; Proof = H(K, "PBTX1 client" ‖ …) MAC'd with SK.
#[test]
fn handshake_messages() {
    let mut c = new_client();
    let hello = sent(&mut c, Instant::ZERO).unwrap();
    let f = Frame::new_checked(&hello[..]).unwrap();
    assert_eq!(
        (f.message_type(), f.request_id(), f.session_id()),
        (MessageType::Hello, 1, 0)
    );
    assert!(f.mac().is_none());
    assert_eq!(
        Hello::parse(f.payload()).unwrap(),
        Hello {
            client_nonce: NC,
            key_id: b"site"
        }
    );
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: srv(),
            payload: &challenge(KEY),
        },
    );
    let proof = sent(&mut c, Instant::ZERO).unwrap();
    let f = Frame::new_checked(&proof[..]).unwrap();
    assert_eq!(
        (f.message_type(), f.request_id(), f.session_id()),
        (MessageType::Proof, 2, SID)
    );
    let want = h(
        KEY,
        &[b"PBTX1 client", &NC, &NS, &SID.to_be_bytes(), b"site"],
    );
    assert_eq!(Proof::parse(f.payload()).unwrap().client_proof, want);
    assert_eq!(
        f.mac().unwrap(),
        &h(&sk(KEY), &[f.authenticated_bytes()])[..]
    );
    assert!(!c.is_established());
    // A ProofAck with a wrong MAC is ignored (§2.4).
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: srv(),
            payload: &frame(
                MessageType::ProofAck,
                Status::Ok,
                2,
                SID,
                &Empty,
                Some([0; 32]),
            ),
        },
    );
    assert!(!c.is_established());
    proof_ack(&mut c);
    assert!(c.is_established());
}

/// §3: a server that does not know the key is not trusted; nothing about
/// the workstation is sent.
#[test]
fn impostor_server_is_rejected() {
    let mut c = new_client();
    sent(&mut c, Instant::ZERO).unwrap();
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: srv(),
            payload: &challenge(b"some-other-key-entirely"),
        },
    );
    assert_eq!(c.poll_event(), Some(ClientEvent::ServerNotAuthentic));
    assert!(sent(&mut c, Instant::ZERO).is_none());
    assert_eq!(
        c.query_menu(Instant::ZERO),
        Err(ClientError::NotEstablished)
    );
}

/// §6: 500 ms, then doubling to a 4 s cap, 6 transmissions, then Failed;
/// every retransmission is byte-identical.
#[test]
fn retransmission_schedule() {
    let mut c = established();
    let t0 = Instant::from_secs(10);
    c.query_menu(t0).unwrap();
    let first = sent(&mut c, t0).unwrap();
    assert_eq!(c.query_tasks(t0), Err(ClientError::Busy));
    let mut now = t0;
    let mut gaps = vec![];
    for _ in 0..5 {
        let next = c.poll_timeout().unwrap();
        c.handle_timeout(Instant::from_micros(next.as_micros() - 1_000));
        assert!(sent(&mut c, next).is_none(), "too early");
        gaps.push(next - now);
        now = next;
        c.handle_timeout(now);
        assert_eq!(sent(&mut c, now).unwrap(), first);
    }
    assert_eq!(
        gaps,
        [500, 1000, 2000, 4000, 4000]
            .map(Duration::from_millis)
            .to_vec()
    );
    let last = c.poll_timeout().unwrap();
    assert_eq!(last - now, Duration::from_secs(4));
    c.handle_timeout(last);
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            request: MessageType::MenuQuery
        })
    );
    assert!(!c.is_busy());
    assert!(c.poll_timeout().is_none());
}

/// §6: only the matching reply counts; duplicates and strays are ignored;
/// the reply is readable afterwards.
#[test]
fn reply_matching() {
    let mut c = established();
    c.query_menu(Instant::ZERO).unwrap();
    sent(&mut c, Instant::ZERO).unwrap();
    let menu = MenuReply {
        mode: MenuMode::OnKeyPress,
        hotkey: Some(Hotkey {
            modifiers: Hotkey::CTRL,
            key: b'm',
        }),
        wait_ms: Some(2000),
        menu_file: Some("menu.txt"),
        fetch: Some(Fetch::Mtftp),
        entries: heapless::Vec::new(),
    };
    // wrong request id, wrong type, wrong session, wrong source, unauthenticated
    for bad in [
        frame(
            MessageType::MenuReply,
            Status::Ok,
            2,
            SID,
            &menu,
            Some(sk(KEY)),
        ),
        frame(
            MessageType::TaskReply,
            Status::Ok,
            3,
            SID,
            &TaskReply::default(),
            Some(sk(KEY)),
        ),
        frame(
            MessageType::MenuReply,
            Status::Ok,
            3,
            SID + 1,
            &menu,
            Some(sk(KEY)),
        ),
        frame(MessageType::MenuReply, Status::Ok, 3, SID, &menu, None),
    ] {
        c.handle(
            Instant::ZERO,
            Datagram {
                local: ANY,
                remote: srv(),
                payload: &bad,
            },
        );
        assert!(c.is_busy());
    }
    let good = frame(
        MessageType::MenuReply,
        Status::Ok,
        3,
        SID,
        &menu,
        Some(sk(KEY)),
    );
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 66), DEFAULT_PORT),
            payload: &good,
        },
    );
    assert!(c.is_busy());
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: srv(),
            payload: &good,
        },
    );
    assert!(!c.is_busy());
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Reply {
            message_type: MessageType::MenuReply
        })
    );
    assert_eq!(c.menu_reply().unwrap(), menu);
    // A late duplicate changes nothing.
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: srv(),
            payload: &good,
        },
    );
    assert_eq!(c.poll_event(), None);
    assert!(c.task_reply().is_none());
}

/// §5: refusals end the request with the status (authenticated or not).
#[test]
fn refusals_surface_status() {
    let mut c = established();
    c.query_tasks(Instant::ZERO).unwrap();
    sent(&mut c, Instant::ZERO).unwrap();
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: srv(),
            payload: &frame(
                MessageType::TaskReply,
                Status::OutOfOrder,
                3,
                SID,
                &Empty,
                Some(sk(KEY)),
            ),
        },
    );
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Refused {
            request: MessageType::TaskQuery,
            status: Status::OutOfOrder,
            authenticated: true
        })
    );
    let mut c = new_client();
    sent(&mut c, Instant::ZERO).unwrap();
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: srv(),
            payload: &frame(MessageType::Challenge, Status::Busy, 1, 0, &Empty, None),
        },
    );
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Refused {
            request: MessageType::Hello,
            status: Status::Busy,
            authenticated: false
        })
    );
    assert!(ClientConfig::new(srv(), b"site", b"short").is_err());
    assert!(ClientConfig::new(srv(), b"", KEY).is_err());
}

/// A buffer too small for the request is an error naming the size needed
/// (the engine contract's buffer rule): the buffer is untouched and the
/// request stays due, so the next call with a big enough buffer sends it
/// at once, and only then does the retransmission timer run.
#[test]
fn a_too_small_buffer_keeps_the_request_queued() {
    let mut c = established();
    let t0 = Instant::from_secs(10);
    c.query_menu(t0).unwrap();
    let mut small = [0xAAu8; 8];
    let err = c.poll_transmit(t0, &mut small).unwrap_err();
    assert!(err.needed > small.len());
    assert!(err.needed <= Client::MAX_DATAGRAM);
    assert!(small.iter().all(|&b| b == 0xAA), "buffer untouched");
    assert_eq!(c.poll_timeout(), None, "not sent yet: no timer");
    let bytes = sent(&mut c, t0).expect("still queued");
    assert_eq!(bytes.len(), err.needed);
    let next = c.poll_timeout().expect("a retransmission is scheduled");
    assert_eq!(next - t0, Duration::from_millis(500));
}

/// The server's authenticated `ProofAck` for session [`SID`] (§4.2),
/// delivered to `c`.
fn proof_ack(c: &mut Client) {
    c.handle(
        Instant::ZERO,
        Datagram {
            local: ANY,
            remote: srv(),
            payload: &frame(
                MessageType::ProofAck,
                Status::Ok,
                2,
                SID,
                &Empty,
                Some(sk(KEY)),
            ),
        },
    );
}
