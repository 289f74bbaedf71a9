//! The version 2 engines against each other, in memory
//! (docs/transaction-protocol.md §3–§6): cookie, handshake, sealed
//! requests, parts, retransmission, pending keys, auto-enrolment and the
//! session limits. The attacks of issue 13 are in `transaction_attacks.rs`.

#[path = "support/transaction.rs"]
mod support;

use preboot::Instant;
use preboot::policy::{ImagingProxy, WorkstationId};
use preboot::transaction::{ClientError, ClientEvent, KeyStore, Server, ServerConfig, ServerEvent};
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::{Frame, MessageType, Status};
use std::time::Duration;
use support::*;

fn t0() -> Instant {
    Instant::ZERO
}

/// §3.2: a `Hello` gets a 56-byte `Cookie` and the server keeps nothing;
/// the same `Hello` gets the same `Cookie`.
#[test]
fn hello_gets_cookie_and_no_state() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = client(1, 1, t0());
    let t = pump(&mut c, &mut s, addr(1), t0());
    assert_eq!(t.to_server[0].len(), 72);
    assert_eq!(t.to_client[0].len(), 56);
    // The Init went out and its Accept came back: one half-open session.
    assert_eq!(t.to_server[1].len(), 172);
    assert_eq!(t.to_client[1].len(), 81);
    assert!(c.is_established());
    assert_eq!(s.half_open_count(), 1);
    assert_eq!(s.established_count(), 0);

    let mut s2 = lab_server(ServerConfig::default());
    inject(&mut s2, addr(1), &t.to_server[0], t0());
    inject(&mut s2, addr(1), &t.to_server[0], t0());
    let out = drain(&mut s2, t0());
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1, out[1].1);
    assert_eq!(s2.session_count(), 0);
}

/// §3.2: a `Hello` whose padding is not zero is `BadPayload`, a bare
/// 24-byte header.
#[test]
fn hello_padding_must_be_zero() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = client(1, 1, t0());
    let mut buf = [0u8; 1472];
    let n = c.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
    buf[n - 1] = 1;
    inject(&mut s, addr(1), &buf[..n], t0());
    let out = drain(&mut s, t0());
    assert_eq!(out[0].1.len(), 24);
    assert_eq!(
        Frame::new_checked(&out[0].1[..]).unwrap().status(),
        Status::BadPayload
    );
}

/// §3.5: the first sealed request confirms the keys: half-open becomes
/// established.
#[test]
fn first_sealed_request_establishes() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = establish(&mut s, 1, 1, addr(1), t0());
    assert_eq!(s.half_open_count(), 1);
    let ev = request(&mut c, &mut s, addr(1), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_A], None)).unwrap()
    });
    assert_eq!(
        ev,
        [ClientEvent::Reply {
            message_type: MessageType::InfoAck
        }]
    );
    assert_eq!(c.info_ack().unwrap().name, Some("lab-a"));
    assert_eq!(s.established_count(), 1);
    assert_eq!(s.half_open_count(), 0);
}

/// §4.3–§4.6: the whole conversation, sealed.
#[test]
fn whole_conversation() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = establish(&mut s, 2, 2, addr(2), t0());
    request(&mut c, &mut s, addr(2), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_B], None)).unwrap()
    });
    request(&mut c, &mut s, addr(2), t0(), |c, now| {
        c.query_menu(now).unwrap()
    });
    assert!(c.menu_reply().is_some());
    request(&mut c, &mut s, addr(2), t0(), |c, now| {
        c.query_tasks(now).unwrap()
    });
    let tasks: Vec<u32> = c.task_reply().unwrap().tasks.iter().map(|t| t.id).collect();
    assert_eq!(tasks.len(), 2);
    let ev = request(&mut c, &mut s, addr(2), t0(), |c, now| {
        c.report(
            now,
            &TaskReport {
                task_id: tasks[0],
                outcome: Outcome::Success,
                percent: None,
                reason: None,
            },
        )
        .unwrap()
    });
    assert_eq!(
        ev,
        [ClientEvent::Reply {
            message_type: MessageType::ReportAck
        }]
    );
    assert_eq!(s.policy().reports_applied(), 1);
}

fn big_info(record: &[u8]) -> WorkstationInfo<'_> {
    let mut i = info(&[MAC_A], None);
    for n in 0..64u16 {
        i.pci
            .push(PciId {
                vendor: 0x8086,
                device: n,
            })
            .unwrap();
    }
    for n in 0..16u8 {
        i.nics
            .push(Nic {
                mac: [2, 0, 0, 0, 0, n],
                pci: PciId {
                    vendor: 1,
                    device: 2,
                },
            })
            .unwrap();
    }
    i.image_safe = Some(record);
    i
}

/// §4.7: a `WorkstationInfo` larger than one frame (a 1 KiB record beside
/// a full inventory) goes in parts and is processed as one.
#[test]
fn long_info_goes_in_parts() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = establish(&mut s, 1, 1, addr(1), t0());
    let record = [0u8; 1024];
    let i = big_info(&record);
    assert!(preboot::wire::transaction::Payload::buffer_len(&i) > 1432);
    c.send_info(t0(), &i).unwrap();
    let t = pump(&mut c, &mut s, addr(1), t0());
    assert_eq!(t.to_server.len(), 2);
    assert!(t.to_server.iter().all(|f| f.len() <= 1472));
    assert_eq!(
        events(&mut c),
        [ClientEvent::Reply {
            message_type: MessageType::InfoAck
        }]
    );
    assert!(c.info_ack().unwrap().registered);
}

/// §4.7: more than 4096 bytes cannot be sent.
#[test]
fn message_limit_is_4096() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = establish(&mut s, 1, 1, addr(1), t0());
    let rep = TaskReport {
        task_id: 1,
        outcome: Outcome::Failure,
        percent: None,
        reason: Some("x"),
    };
    assert!(c.report(t0(), &rep).is_ok());
    let mut c2 = establish(&mut s, 1, 2, addr(3), t0());
    let record = [0u8; 1024];
    let mut i = big_info(&record);
    for _ in 0..4 {
        i.cpu_model = Some("a string that is long enough to matter in the frame, 64 bytes!!");
    }
    // Still within 4096: accepted.
    assert!(c2.send_info(t0(), &i).is_ok());
    let _ = ClientError::Busy;
}

/// §6: a retransmitted request gets the cached reply, at most 3 times,
/// and the policy runs once.
#[test]
fn retransmission_is_answered_three_times() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = establish(&mut s, 2, 1, addr(2), t0());
    request(&mut c, &mut s, addr(2), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_B], None)).unwrap()
    });
    c.query_tasks(t0()).unwrap();
    let t = pump(&mut c, &mut s, addr(2), t0());
    let query = t.to_server[0].clone();
    let first = t.to_client[0].clone();
    for _ in 0..10 {
        inject(&mut s, addr(2), &query, t0());
    }
    let out = drain(&mut s, t0());
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|(to, b)| *to == addr(2) && *b == first));
}

/// §3.4: an unknown key gets an authenticated `Pending` and is recorded;
/// once an administrator binds it, the next handshake is accepted.
#[test]
fn unknown_key_is_pending_until_bound() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = client(3, 3, t0());
    pump(&mut c, &mut s, addr(3), t0());
    let ev = events(&mut c);
    assert!(matches!(
        ev[..],
        [ClientEvent::HandshakeRefused {
            status: Status::Pending,
            ..
        }]
    ));
    assert_eq!(s.session_count(), 0);
    assert_eq!(s.pending_keys().len(), 1);
    assert_eq!(s.pending_keys()[0].key, ws_key(3).public());
    assert!(
        core::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, ServerEvent::KeyPending { .. }))
    );
    // The administrator binds C's key (store entry, reload).
    s.keys_mut()
        .insert(WorkstationId::Mac(MAC_C), ws_key(3).public())
        .unwrap();
    let later = t0() + Duration::from_secs(1);
    c.handle_timeout(later);
    assert_eq!(events(&mut c), [ClientEvent::RestartDue]);
    c.restart(later, seed(33)).unwrap();
    pump(&mut c, &mut s, addr(3), later);
    assert!(c.is_established());
}

/// §3.4: with auto-enrolment, the first `WorkstationInfo` binds the key
/// to the object it names (or its first MAC), once.
#[test]
fn auto_enrolment_binds_on_first_info() {
    let mut s: Srv = Server::new(
        ServerConfig::default(),
        server_key(),
        lab_keys(true),
        ImagingProxy::new(lab_store()),
        Rng(7),
    );
    let mut c = establish(&mut s, 3, 3, addr(3), t0());
    // Before any WorkstationInfo: no object, queries are out of order.
    let ev = request(&mut c, &mut s, addr(3), t0(), |c, now| {
        c.query_tasks(now).unwrap()
    });
    assert_eq!(
        ev,
        [ClientEvent::Refused {
            request: MessageType::TaskQuery,
            status: Status::OutOfOrder
        }]
    );
    // Claiming B (which has a key) is refused.
    let ev = request(&mut c, &mut s, addr(3), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_B], None)).unwrap()
    });
    assert_eq!(
        ev,
        [ClientEvent::Refused {
            request: MessageType::WorkstationInfo,
            status: Status::IdentityRefused
        }]
    );
    let ev = request(&mut c, &mut s, addr(3), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_C], None)).unwrap()
    });
    assert_eq!(
        ev,
        [ClientEvent::Reply {
            message_type: MessageType::InfoAck
        }]
    );
    assert_eq!(
        s.keys().object_of_key(&ws_key(3).public()),
        Some(WorkstationId::Mac(MAC_C))
    );
}

/// §3.5: a key holds at most 2 established sessions; a third replaces
/// its oldest, and other keys' sessions stay.
#[test]
fn a_key_holds_two_sessions() {
    let mut s = lab_server(ServerConfig::default());
    let mut other = establish(&mut s, 2, 9, addr(9), t0());
    request(&mut other, &mut s, addr(9), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_B], None)).unwrap()
    });
    let mut cs = Vec::new();
    for n in 0..3u8 {
        let mut c = establish(&mut s, 1, u64::from(n) + 10, addr(10 + n), t0());
        request(&mut c, &mut s, addr(10 + n), t0(), |c, now| {
            c.send_info(now, &info(&[MAC_A], None)).unwrap()
        });
        cs.push(c);
    }
    assert_eq!(s.established_count(), 3);
    let ev = request(&mut other, &mut s, addr(9), t0(), |c, now| {
        c.query_menu(now).unwrap()
    });
    assert!(matches!(ev[..], [ClientEvent::Reply { .. }]));
}

/// §3.5, §6: a full table answers `Busy`, authenticated; the client backs
/// off and restarts.
#[test]
fn full_table_is_busy_and_client_backs_off() {
    let mut s = lab_server(ServerConfig {
        max_sessions: 1,
        ..ServerConfig::default()
    });
    let mut a = establish(&mut s, 1, 1, addr(1), t0());
    request(&mut a, &mut s, addr(1), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_A], None)).unwrap()
    });
    let mut b = client(2, 2, t0());
    pump(&mut b, &mut s, addr(2), t0());
    let ev = events(&mut b);
    let [
        ClientEvent::HandshakeRefused {
            status: Status::Busy,
            retry_at,
        },
    ] = ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(retry_at, t0() + Duration::from_secs(1));
    assert_eq!(b.poll_timeout(), Some(retry_at));
    assert_eq!(s.established_count(), 1);
}

/// §3.1: a client pinning another server key never gets an `Accept`: the
/// server cannot read its `Init`.
#[test]
fn wrong_pinned_key_fails() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = preboot::transaction::Client::new(
        preboot::transaction::ClientConfig::new(SRV, ws_key(9).public(), ws_key(1)),
        seed(1),
        t0(),
    );
    let t = pump(&mut c, &mut s, addr(1), t0());
    assert_eq!(t.to_client.len(), 1); // the Cookie only
    assert!(!c.is_established());
    assert_eq!(s.session_count(), 0);
}

/// §3.5: half-open sessions promoted into a full table are dropped, never
/// an established one.
#[test]
fn promotion_never_exceeds_the_table() {
    let mut s = lab_server(ServerConfig {
        max_sessions: 1,
        ..ServerConfig::default()
    });
    let mut a = establish(&mut s, 1, 1, addr(1), t0());
    let mut b = establish(&mut s, 2, 2, addr(2), t0());
    assert_eq!(s.half_open_count(), 2);
    request(&mut a, &mut s, addr(1), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_A], None)).unwrap()
    });
    let ev = request(&mut b, &mut s, addr(2), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_B], None)).unwrap()
    });
    assert!(ev.is_empty(), "the bare UnknownSession is ignored: {ev:?}");
    assert_eq!(s.established_count(), 1);
    assert_eq!(s.half_open_count(), 0);
    let ev = request(&mut a, &mut s, addr(1), t0(), |c, now| {
        c.query_menu(now).unwrap()
    });
    assert!(matches!(ev[..], [ClientEvent::Reply { .. }]));
}
