//! The attacks of issue 13 against protocol version 2
//! (docs/transaction-protocol.md §7): each reproducible attack (1, 3–7) as
//! a test that the v2 engines pass, and for the reasoned ones (2, 8, 9) a
//! test of the mechanism that prevents them. The v1 engines failed 1 and
//! 3–7 (issue 13 lists the reproductions); v1 has no such API any more.

#[path = "support/transaction.rs"]
mod support;

use core::net::{Ipv4Addr, SocketAddrV4};
use preboot::Instant;
use preboot::policy::{ImagingProxy, MemoryStore, NoLog, WorkstationId};
use preboot::transaction::provision::{next_handshake, provision};
use preboot::transaction::{
    Client, ClientConfig, ClientEvent, Server, ServerConfig, ServerEvent, StaticKey,
    WorkstationKeys, parse_key,
};
use preboot::wire::transaction::messages::*;
use preboot::wire::transaction::{Header, MessageType, Status, emit_frame};
use support::*;

fn t0() -> Instant {
    Instant::ZERO
}

fn info_ok(c: &mut Client, s: &mut Srv, from: SocketAddrV4, macs: &[[u8; 6]]) {
    let ev = request(c, s, from, t0(), |c, now| {
        c.send_info(now, &info(macs, None)).unwrap()
    });
    assert_eq!(
        ev,
        [ClientEvent::Reply {
            message_type: MessageType::InfoAck
        }]
    );
}

fn refused(ev: &[ClientEvent]) -> Option<Status> {
    match ev {
        [ClientEvent::Refused { status, .. }] => Some(*status),
        _ => None,
    }
}

/// Issue 13 item 1, §3.4: with A's own key, `MacAddress = [B, A]` is
/// refused, so is any key with D's UUID; A never sees B's or D's tasks,
/// and A's report cannot clear B's flag.
#[test]
fn key_speaks_only_for_its_own_object() {
    let mut s = lab_server(ServerConfig::default());
    let mut b = establish(&mut s, 2, 2, addr(2), t0());
    info_ok(&mut b, &mut s, addr(2), &[MAC_B]);
    request(&mut b, &mut s, addr(2), t0(), |c, now| {
        c.query_tasks(now).unwrap()
    });
    let b_ids: Vec<u32> = b.task_reply().unwrap().tasks.iter().map(|t| t.id).collect();
    assert_eq!(b_ids.len(), 2);

    let mut a = establish(&mut s, 1, 1, addr(1), t0());
    let ev = request(&mut a, &mut s, addr(1), t0(), |c, now| {
        c.send_info(now, &info(&[MAC_B, MAC_A], None)).unwrap()
    });
    assert_eq!(refused(&ev), Some(Status::IdentityRefused));
    let ev = request(&mut a, &mut s, addr(1), t0(), |c, now| {
        c.send_info(now, &info(&[[2, 9, 9, 9, 9, 9]], Some(UUID_D)))
            .unwrap()
    });
    assert_eq!(refused(&ev), Some(Status::IdentityRefused));
    // Nothing accepted yet: no query is answered.
    let ev = request(&mut a, &mut s, addr(1), t0(), |c, now| {
        c.query_tasks(now).unwrap()
    });
    assert_eq!(refused(&ev), Some(Status::OutOfOrder));
    // Speaking for itself, A gets A's tasks only.
    info_ok(&mut a, &mut s, addr(1), &[MAC_A]);
    request(&mut a, &mut s, addr(1), t0(), |c, now| {
        c.query_tasks(now).unwrap()
    });
    {
        let a_tasks = a.task_reply().unwrap();
        for t in &a_tasks.tasks {
            assert!(!b_ids.contains(&t.id));
            assert!(!matches!(t.action, TaskAction::CreateImage { .. }));
            if let TaskAction::RestoreImage { image, .. } = t.action {
                assert_eq!(image, "images/lab.img");
            }
        }
    }
    // A's report of B's task id is refused and B's flag stays set.
    let ev = request(&mut a, &mut s, addr(1), t0(), |c, now| {
        c.report(
            now,
            &TaskReport {
                task_id: b_ids[0],
                outcome: Outcome::Success,
                percent: None,
                reason: None,
            },
        )
        .unwrap()
    });
    assert_eq!(refused(&ev), Some(Status::UnknownTask));
    let store: &MemoryStore = preboot::policy::ImagingProxy::store(s.policy());
    assert!(store.workstations[1].image_next_boot);
}

/// Issue 13 item 2 (mechanism), §3.1, §3.3: there is no group key, and
/// holding a workstation's key does not make a server. An impostor that
/// holds A's private key (as its own key, or bound in its store) cannot
/// read A's `Init` to the pinned server key, so A never establishes.
#[test]
fn workstation_key_cannot_act_as_server() {
    for impostor_key in [ws_key(1), ws_key(7)] {
        let mut keys = WorkstationKeys::new(true);
        keys.insert(WorkstationId::Mac(MAC_A), ws_key(1).public())
            .unwrap();
        let mut impostor: Srv = Server::new(
            ServerConfig::default(),
            impostor_key,
            keys,
            ImagingProxy::new(lab_store()),
            Rng(99),
        );
        let mut a = client(1, 1, t0());
        let t = pump(&mut a, &mut impostor, addr(1), t0());
        assert!(!a.is_established());
        assert_eq!(t.to_client.len(), 1, "only the Cookie");
        assert!(
            core::iter::from_fn(|| impostor.poll_event()).any(|e| matches!(
                e,
                ServerEvent::Dropped {
                    reason: preboot::transaction::DropReason::HandshakeFailed,
                    ..
                }
            ))
        );
    }
    // A forged Accept (an attacker's own ephemeral, any payload) for A's
    // real Init is ignored: A keeps waiting for the real one.
    let mut s = lab_server(ServerConfig::default());
    let mut a = client(1, 1, t0());
    let mut buf = [0u8; 1472];
    let n = a.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
    inject(&mut s, addr(1), &buf[..n], t0());
    let cookie = drain(&mut s, t0()).remove(0).1;
    deliver(&mut a, addr(1), &cookie, t0());
    let n = a.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
    let init = buf[..n].to_vec();
    let h = Header {
        message_type: MessageType::Accept,
        status: Status::Ok,
        flags: 0,
        request_id: 2,
        session_id: 0,
    };
    let forged = Accept {
        ephemeral: StaticKey::from_bytes(
            [3; 31]
                .iter()
                .copied()
                .chain([1])
                .collect::<Vec<_>>()
                .try_into()
                .unwrap(),
        )
        .unwrap()
        .public(),
        encrypted_payload: [0; 25],
    };
    let mut fb = [0u8; 128];
    let fl = emit_frame(&h, &forged, false, &mut fb).unwrap();
    deliver(&mut a, addr(1), &fb[..fl], t0());
    assert!(!a.is_established());
    inject(&mut s, addr(1), &init, t0());
    let accept = drain(&mut s, t0()).remove(0).1;
    deliver(&mut a, addr(1), &accept, t0());
    assert!(a.is_established());
}

/// Issue 13 item 3, §3.2, §7.3, §12: nothing a stranger obtains depends
/// on a secret it could guess: the `Cookie` is the same whatever the
/// server's and workstations' keys are, a stranger's handshake only gets
/// `Pending`, and keys are never passphrases.
#[test]
fn stranger_gets_nothing_keyed_by_a_secret() {
    let hello = {
        let mut c = client(9, 5, t0());
        let mut buf = [0u8; 1472];
        let n = c.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
        buf[..n].to_vec()
    };
    let mut answers = Vec::new();
    for (server_key, ws) in [(server_key(), 1u8), (ws_key(8), 2u8)] {
        let mut keys = WorkstationKeys::new(false);
        keys.insert(WorkstationId::Mac(MAC_A), ws_key(ws).public())
            .unwrap();
        let mut s: Srv = Server::new(
            ServerConfig::default(),
            server_key,
            keys,
            ImagingProxy::new(lab_store()),
            Rng(1234),
        );
        inject(&mut s, addr(9), &hello, t0());
        answers.push(drain(&mut s, t0()).remove(0).1);
    }
    assert_eq!(answers[0], answers[1], "the Cookie depends on no key");

    let mut s = lab_server(ServerConfig::default());
    let mut stranger = client(9, 6, t0());
    pump(&mut stranger, &mut s, addr(9), t0());
    assert!(matches!(
        events(&mut stranger)[..],
        [ClientEvent::HandshakeRefused {
            status: Status::Pending,
            ..
        }]
    ));
    assert_eq!(s.session_count(), 0);

    for passphrase in [
        "correct horse battery staple",
        "the site secret, 16-64 bytes",
    ] {
        assert!(parse_key(passphrase).is_err());
    }
}

/// Issue 13 item 4, §3.2, §3.5: 1,100 `Hello`s from spoofed sources and
/// 1,100 `Init`s with forged cookies leave no state; a peer doing real
/// handshakes holds at most 4 half-open slots; established sessions stay;
/// a real client still gets through.
#[test]
fn hello_flood_keeps_no_state_and_real_clients_get_through() {
    let mut s = lab_server(ServerConfig::default());
    let mut a = establish(&mut s, 1, 1, addr(1), t0());
    info_ok(&mut a, &mut s, addr(1), &[MAC_A]);

    let mut c = client(9, 9, t0());
    let mut buf = [0u8; 1472];
    let n = c.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
    let hello = buf[..n].to_vec();
    for i in 0..1100u32 {
        let spoofed = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | i), 40000);
        inject(&mut s, spoofed, &hello, t0());
        drain(&mut s, t0());
    }
    assert_eq!(s.session_count(), 1);
    // Inits carrying a cookie made for another address: dropped.
    inject(&mut s, addr(9), &hello, t0());
    let cookie = drain(&mut s, t0()).remove(0).1;
    deliver(&mut c, addr(9), &cookie, t0());
    let n = c.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
    for i in 0..1100u32 {
        let spoofed = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | i), 40000);
        inject(&mut s, spoofed, &buf[..n], t0());
    }
    assert!(drain(&mut s, t0()).is_empty());
    assert_eq!(s.session_count(), 1);

    // One attacker, with a bound key, doing 50 complete handshakes from
    // one address: it holds at most 4 half-open slots.
    for i in 0..50u64 {
        let mut x = client(2, 100 + i, t0());
        pump(&mut x, &mut s, addr(66), t0());
        assert!(x.is_established());
    }
    assert!(s.half_open_count() <= 4);
    assert_eq!(s.established_count(), 1);
    // The established session still works, and a real client gets in.
    let ev = request(&mut a, &mut s, addr(1), t0(), |c, now| {
        c.query_menu(now).unwrap()
    });
    assert!(matches!(ev[..], [ClientEvent::Reply { .. }]));
    let mut d = establish(&mut s, 4, 4, addr(4), t0());
    let ev = request(&mut d, &mut s, addr(4), t0(), |c, now| {
        c.send_info(now, &info(&[[2, 0, 0, 0, 0, 4]], Some(UUID_D)))
            .unwrap()
    });
    assert!(matches!(ev[..], [ClientEvent::Reply { .. }]));
}

/// Issue 13 item 5, §6, §7.5: a sniffed `TaskQuery` replayed 100 times
/// from a spoofed source (the victim) sends nothing to the victim; from
/// the real address, the cached reply goes out at most 3 times.
#[test]
fn replayed_query_from_spoofed_source_gets_nothing() {
    let mut s = lab_server(ServerConfig::default());
    let mut b = establish(&mut s, 2, 2, addr(2), t0());
    info_ok(&mut b, &mut s, addr(2), &[MAC_B]);
    b.query_tasks(t0()).unwrap();
    let t = pump(&mut b, &mut s, addr(2), t0());
    let (query, reply) = (t.to_server[0].clone(), t.to_client[0].clone());
    assert!(reply.len() > query.len(), "a validated peer may get more");
    let victim = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 200), 53);
    for _ in 0..100 {
        inject(&mut s, victim, &query, t0());
    }
    let to_victim: usize = drain(&mut s, t0())
        .iter()
        .filter(|(to, _)| *to == victim)
        .map(|(_, b)| b.len())
        .sum();
    assert_eq!(to_victim, 0);
    for _ in 0..100 {
        inject(&mut s, addr(2), &query, t0());
    }
    assert_eq!(drain(&mut s, t0()).len(), 3);
    // Before validation every reply is smaller than its request.
    let mut c = client(1, 1, t0());
    let t = pump(&mut c, &mut s, addr(1), t0());
    for (q, r) in t.to_server.iter().zip(&t.to_client) {
        assert!(r.len() <= q.len());
    }
}

fn forged_bare(t: MessageType, status: Status, rid: u32, sid: u64) -> Vec<u8> {
    let h = Header {
        message_type: t,
        status,
        flags: 0,
        request_id: rid,
        session_id: sid,
    };
    let mut b = [0u8; 24];
    let n = emit_frame(&h, &Empty, false, &mut b).unwrap();
    b[..n].to_vec()
}

/// Issue 13 item 6, §6: a forged, unauthenticated `Busy` after `Hello` is
/// advisory (the real `Cookie` still counts), and a forged
/// `UnknownSession` after `TaskQuery` is ignored (the real reply counts).
#[test]
fn forged_busy_and_unknown_session_are_ignored() {
    let mut s = lab_server(ServerConfig::default());
    let mut c = client(2, 2, t0());
    let mut buf = [0u8; 1472];
    let n = c.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
    let hello = buf[..n].to_vec();
    deliver(
        &mut c,
        addr(2),
        &forged_bare(MessageType::Cookie, Status::Busy, 1, 0),
        t0(),
    );
    assert_eq!(
        events(&mut c),
        [ClientEvent::Advisory {
            request: MessageType::Hello,
            status: Status::Busy
        }]
    );
    inject(&mut s, addr(2), &hello, t0());
    let cookie = drain(&mut s, t0()).remove(0).1;
    deliver(&mut c, addr(2), &cookie, t0());
    pump(&mut c, &mut s, addr(2), t0());
    assert!(c.is_established());
    events(&mut c);
    info_ok(&mut c, &mut s, addr(2), &[MAC_B]);

    c.query_tasks(t0()).unwrap();
    let n = c.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
    let query = buf[..n].to_vec();
    let sid = c.session_id();
    let rid = u32::from_be_bytes([query[8], query[9], query[10], query[11]]);
    deliver(
        &mut c,
        addr(2),
        &forged_bare(MessageType::TaskReply, Status::UnknownSession, rid, sid),
        t0(),
    );
    assert!(events(&mut c).is_empty());
    assert!(c.is_busy());
    inject(&mut s, addr(2), &query, t0());
    let reply = drain(&mut s, t0()).remove(0).1;
    deliver(&mut c, addr(2), &reply, t0());
    assert_eq!(
        events(&mut c),
        [ClientEvent::Reply {
            message_type: MessageType::TaskReply
        }]
    );
    assert_eq!(c.task_reply().unwrap().tasks.len(), 2);
}

/// Issue 13 item 7, §4.5: 4,200 `TaskQuery`s from A get A's same ids each
/// time and cannot evict B's; B's report then clears B's request (its
/// capture, which comes before its restore: docs/policy.md). (Each query
/// hands A's tasks out again, a retry (§4.8): no hand-out limit here, so
/// that they stay live; tests/task_journal.rs checks the limit.)
#[test]
fn task_ids_are_per_workstation_and_stable() {
    let mut s: Srv = Server::new(
        ServerConfig::default(),
        server_key(),
        lab_keys(false),
        ImagingProxy::with_log(lab_store(), NoLog, u32::MAX),
        Rng(0x5eed),
    );
    let mut b = establish(&mut s, 2, 2, addr(2), t0());
    info_ok(&mut b, &mut s, addr(2), &[MAC_B]);
    request(&mut b, &mut s, addr(2), t0(), |c, now| {
        c.query_tasks(now).unwrap()
    });
    let b_first = b.task_reply().unwrap().tasks[0].id;

    let mut a = establish(&mut s, 1, 1, addr(1), t0());
    info_ok(&mut a, &mut s, addr(1), &[MAC_A]);
    let mut a_ids = None;
    for _ in 0..4200 {
        request(&mut a, &mut s, addr(1), t0(), |c, now| {
            c.query_tasks(now).unwrap()
        });
        let ids: Vec<u32> = a.task_reply().unwrap().tasks.iter().map(|t| t.id).collect();
        assert!(!ids.is_empty());
        assert_eq!(*a_ids.get_or_insert(ids.clone()), ids);
    }
    // B asks again: the same ids.
    request(&mut b, &mut s, addr(2), t0(), |c, now| {
        c.query_tasks(now).unwrap()
    });
    assert_eq!(b.task_reply().unwrap().tasks[0].id, b_first);
    let ev = request(&mut b, &mut s, addr(2), t0(), |c, now| {
        c.report(
            now,
            &TaskReport {
                task_id: b_first,
                outcome: Outcome::Success,
                percent: None,
                reason: None,
            },
        )
        .unwrap()
    });
    assert!(matches!(ev[..], [ClientEvent::Reply { .. }]));
    let store: &MemoryStore = ImagingProxy::store(s.policy());
    assert_eq!(store.workstations[1].create_image, None);
    assert!(
        store.workstations[1].image_next_boot,
        "the restore comes next"
    );
}

/// Issue 13 item 8 (mechanism), §3.3, §9: the `Hello` and `Cookie`
/// frames are in the prologue. A flag changed in either in flight, or an
/// `Accept` header changed, makes the handshake fail; an unauthenticated
/// `UnsupportedVersion` is only advisory.
#[test]
fn changed_hello_or_cookie_fails_the_handshake() {
    for tamper in 0..3 {
        let mut s = lab_server(ServerConfig::default());
        let mut c = client(1, 1, t0());
        let mut buf = [0u8; 1472];
        let n = c.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
        let mut hello = buf[..n].to_vec();
        if tamper == 0 {
            hello[7] |= 0x80; // the Hello's flags, on the way to the server
        }
        inject(&mut s, addr(1), &hello, t0());
        let mut cookie = drain(&mut s, t0()).remove(0).1;
        if tamper == 1 {
            cookie[7] |= 0x80; // the Cookie's flags, on the way back
        }
        deliver(&mut c, addr(1), &cookie, t0());
        let n = c.poll_transmit(t0(), &mut buf).unwrap().unwrap().len;
        inject(&mut s, addr(1), &buf[..n], t0());
        let out = drain(&mut s, t0());
        if tamper < 2 {
            assert!(out.is_empty(), "tamper {tamper}: Init dropped");
            assert_eq!(s.session_count(), 0);
            continue;
        }
        let mut accept = out[0].1.clone();
        accept[6] = Status::Busy.into(); // the Accept's status
        deliver(&mut c, addr(1), &accept, t0());
        assert!(!c.is_established());
        assert!(events(&mut c).is_empty());
        deliver(
            &mut c,
            addr(1),
            &forged_bare(MessageType::Accept, Status::UnsupportedVersion, 2, 0),
            t0(),
        );
        assert!(matches!(events(&mut c)[..], [ClientEvent::Advisory { .. }]));
        deliver(&mut c, addr(1), &out[0].1, t0());
        assert!(c.is_established());
    }
}

/// Issue 13 item 9 (mechanism), §3.1, §11.2: a client whose random source
/// repeats itself still makes a new ephemeral key each boot (the stored
/// counter), so a recorded server conversation does not replay to it.
#[test]
fn recorded_accept_does_not_replay() {
    let mut disk = Mem([0; 1024]);
    let mut good = Rng(77);
    let mut rec = provision(&mut disk, &mut good).unwrap();
    let mut keys = WorkstationKeys::new(false);
    keys.insert(WorkstationId::Mac(MAC_C), rec.key.public())
        .unwrap();
    let mut s: Srv = Server::new(
        ServerConfig::default(),
        server_key(),
        keys,
        ImagingProxy::new(lab_store()),
        Rng(5),
    );
    let mut stuck = |b: &mut [u8]| b.fill(0x42);
    let seed1 = next_handshake(&mut disk, &mut rec, &mut stuck).unwrap();
    let seed2 = next_handshake(&mut disk, &mut rec, &mut stuck).unwrap();
    assert_eq!(seed1.nonce, seed2.nonce, "the source repeats itself");
    assert_ne!(seed1.ephemeral, seed2.ephemeral, "the counter does not");
    let cfg = ClientConfig::new(SRV, server_key().public(), rec.key.clone());
    let mut first = Client::new(cfg.clone(), seed1, t0());
    let t = pump(&mut first, &mut s, addr(3), t0());
    assert!(first.is_established());
    // Replay the recorded Cookie and Accept to the next boot.
    let mut second = Client::new(cfg, seed2, t0());
    let mut buf = [0u8; 1472];
    second.poll_transmit(t0(), &mut buf).unwrap();
    deliver(&mut second, addr(3), &t.to_client[0], t0());
    second.poll_transmit(t0(), &mut buf).unwrap();
    deliver(&mut second, addr(3), &t.to_client[1], t0());
    assert!(!second.is_established());
}

/// Issue 13 item 9, §2.4: after the handshake nothing travels in clear:
/// neither the inventory nor the task details (image paths, upload
/// targets).
#[test]
fn session_traffic_is_encrypted() {
    let mut s = lab_server(ServerConfig::default());
    let mut b = establish(&mut s, 2, 2, addr(2), t0());
    let mut i = info(&[MAC_B], None);
    i.cpu_model = Some("Secret CPU model string");
    b.send_info(t0(), &i).unwrap();
    let mut t = pump(&mut b, &mut s, addr(2), t0());
    b.query_tasks(t0()).unwrap();
    let t2 = pump(&mut b, &mut s, addr(2), t0());
    t.to_server.extend(t2.to_server);
    t.to_client.extend(t2.to_client);
    assert!(b.task_reply().is_some());
    let all: Vec<u8> = t
        .to_server
        .iter()
        .chain(&t.to_client)
        .flatten()
        .copied()
        .collect();
    for needle in [
        &b"Secret CPU model"[..],
        b"images/b-private.img",
        b"images/golden.img",
        b"imaging/linux",
        &MAC_B[..],
    ] {
        assert!(!all.windows(needle.len()).any(|w| w == needle));
    }
}
