//! Shared fixtures of the transaction tests (docs/transaction-protocol.md
//! version 2): fixed keys, a seeded random source, a lab policy store,
//! and an in-memory link that drives a client engine against a server
//! engine. Included by the `transaction_*` tests with `#[path]`.
#![allow(dead_code)]

use core::net::{Ipv4Addr, SocketAddrV4};
use preboot::Instant;
use preboot::engine::Datagram;
use preboot::policy::{
    Condition, EnvironmentSpec, ImagingProxy, ImagingRule, MemoryStore, ServerPolicy,
    WorkstationId, WorkstationObject, WorkstationPolicy,
};
use preboot::transaction::{
    Client, ClientConfig, ClientEvent, HandshakeSeed, KeyStore, Policy, Random, Server,
    ServerConfig, StaticKey, WorkstationKeys,
};
use preboot::wire::transaction::MAX_FRAME_LEN;
use preboot::wire::transaction::messages::{Fetch, WorkstationInfo};

/// The server socket's address.
pub const SRV: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 4012);

/// Workstation A, B, C (MAC) and D (UUID) of the lab.
pub const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];
pub const MAC_C: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0c];
pub const UUID_D: [u8; 16] = [0xdd; 16];

/// A client's address on loopback.
pub fn addr(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, n), 50000 + u16::from(n))
}

fn key_bytes(tag: u8) -> [u8; 32] {
    core::array::from_fn(|i| tag.wrapping_mul(31).wrapping_add(i as u8 * 7 + 1))
}

/// The server's static key.
pub fn server_key() -> StaticKey {
    StaticKey::from_bytes(key_bytes(0x5e)).expect("key")
}

/// Workstation `n`'s static key.
pub fn ws_key(n: u8) -> StaticKey {
    StaticKey::from_bytes(key_bytes(n)).expect("key")
}

/// Seeded xorshift: reproducible "randomness" for the engines.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
impl Random for Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

/// A handshake seed derived from `n` (tests only: real clients use
/// `provision::next_handshake`).
pub fn seed(n: u64) -> HandshakeSeed {
    let mut r = Rng(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut s = HandshakeSeed {
        nonce: [0; 16],
        ephemeral: [0; 32],
    };
    r.fill(&mut s.nonce);
    r.fill(&mut s.ephemeral);
    s
}

/// The lab: A and B registered — A flagged "image on next boot" with no
/// image of its own, so its workstation policy's rule restores
/// `images/lab.img`; B asks for a capture (first, with maintenance) and
/// then its own image (docs/policy.md) — D registered by UUID with its own
/// restore; the server rule restores `images/lab.img` on unregistered
/// machines without it.
pub fn lab_store() -> MemoryStore {
    let mut a = WorkstationObject::new(WorkstationId::Mac(MAC_A), "lab-a");
    a.policy = Some("lab".into());
    a.image_next_boot = true;
    let mut b = WorkstationObject::new(WorkstationId::Mac(MAC_B), "lab-b");
    b.image = Some("images/b-private.img".into());
    b.image_next_boot = true;
    b.create_image = Some("images/golden.img".into());
    b.maintenance = true;
    let mut d = WorkstationObject::new(WorkstationId::Uuid(UUID_D), "lab-d");
    d.image = Some("images/d-private.img".into());
    d.image_next_boot = true;
    MemoryStore {
        server: ServerPolicy {
            image_server: Ipv4Addr::new(10, 0, 0, 5),
            rules: vec![ImagingRule {
                name: "lab".into(),
                when: Condition::MacPrefix(vec![0x52, 0x54]),
                image: "images/lab.img".into(),
                force: false,
                partitions: vec![],
            }],
            environment: Some(EnvironmentSpec {
                fetch: Fetch::Tftp,
                kernel: "imaging/linux".into(),
                initrd: "imaging/initrd".into(),
                loader: "imaging/loader.efi".into(),
            }),
            ..ServerPolicy::default()
        },
        workstations: vec![a, b, d],
        policies: vec![WorkstationPolicy {
            name: "lab".into(),
            menu: None,
            menu_entries: None,
            rules: vec![ImagingRule {
                name: "lab".into(),
                when: Condition::MacPrefix(vec![0x52, 0x54]),
                image: "images/lab.img".into(),
                force: false,
                partitions: vec![],
            }],
        }],
        ..MemoryStore::default()
    }
}

/// Keys: A = ws_key(1), B = ws_key(2), D = ws_key(4) bound; C's key
/// (ws_key(3)) is not.
pub fn lab_keys(auto_enrol: bool) -> WorkstationKeys {
    let mut k = WorkstationKeys::new(auto_enrol);
    k.insert(WorkstationId::Mac(MAC_A), ws_key(1).public())
        .unwrap();
    k.insert(WorkstationId::Mac(MAC_B), ws_key(2).public())
        .unwrap();
    k.insert(WorkstationId::Uuid(UUID_D), ws_key(4).public())
        .unwrap();
    k
}

pub type Srv<P = ImagingProxy<MemoryStore>, K = WorkstationKeys> = Server<P, K, Rng>;

/// A server over the lab.
pub fn lab_server(config: ServerConfig) -> Srv {
    Server::new(
        config,
        server_key(),
        lab_keys(false),
        ImagingProxy::new(lab_store()),
        Rng(0x5eed),
    )
}

/// A client of workstation key `n` for the lab server.
pub fn client(n: u8, seed_n: u64, now: Instant) -> Client {
    Client::new(
        ClientConfig::new(SRV, server_key().public(), ws_key(n)),
        seed(seed_n),
        now,
    )
}

/// A `WorkstationInfo` with these MACs (and UUID).
pub fn info(macs: &[[u8; 6]], uuid: Option<[u8; 16]>) -> WorkstationInfo<'static> {
    let mut i = WorkstationInfo::default();
    for m in macs {
        i.macs.push(*m).unwrap();
    }
    i.uuid = uuid;
    i.ram_mb = Some(8192);
    i
}

/// What crossed the link in one `pump`.
#[derive(Default, Debug)]
pub struct Traffic {
    pub to_server: Vec<Vec<u8>>,
    pub to_client: Vec<Vec<u8>>,
}

/// Move datagrams between `client` (at `from`) and `server` until both are
/// quiet; returns everything that crossed.
pub fn pump<P: Policy, K: KeyStore>(
    client: &mut Client,
    server: &mut Srv<P, K>,
    from: SocketAddrV4,
    now: Instant,
) -> Traffic {
    let mut t = Traffic::default();
    let mut buf = [0u8; MAX_FRAME_LEN];
    for _ in 0..64 {
        let mut moved = false;
        while let Some(x) = client.poll_transmit(now, &mut buf).unwrap() {
            t.to_server.push(buf[..x.len].to_vec());
            server.handle(
                now,
                Datagram {
                    local: SRV,
                    remote: from,
                    payload: &buf[..x.len],
                },
            );
            moved = true;
        }
        while let Some(x) = server.poll_transmit(now, &mut buf).unwrap() {
            t.to_client.push(buf[..x.len].to_vec());
            if x.remote == from {
                client.handle(
                    now,
                    Datagram {
                        local: from,
                        remote: SRV,
                        payload: &buf[..x.len],
                    },
                );
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
    t
}

/// Everything the client reported, drained.
pub fn events(client: &mut Client) -> Vec<ClientEvent> {
    core::iter::from_fn(|| client.poll_event()).collect()
}

/// A client of key `n` at `from`, established with `server`.
pub fn establish<P: Policy, K: KeyStore>(
    server: &mut Srv<P, K>,
    n: u8,
    seed_n: u64,
    from: SocketAddrV4,
    now: Instant,
) -> Client {
    let mut c = client(n, seed_n, now);
    pump(&mut c, server, from, now);
    assert!(c.is_established(), "{:?}", events(&mut c));
    events(&mut c);
    c
}

/// Run one request (`f`) to its end and return the client's events.
pub fn request<P: Policy, K: KeyStore>(
    c: &mut Client,
    server: &mut Srv<P, K>,
    from: SocketAddrV4,
    now: Instant,
    f: impl FnOnce(&mut Client, Instant),
) -> Vec<ClientEvent> {
    f(c, now);
    pump(c, server, from, now);
    events(c)
}

/// Drain the server's queue without delivering anything.
pub fn drain<P: Policy, K: KeyStore>(
    server: &mut Srv<P, K>,
    now: Instant,
) -> Vec<(SocketAddrV4, Vec<u8>)> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut out = Vec::new();
    while let Some(x) = server.poll_transmit(now, &mut buf).unwrap() {
        out.push((x.remote, buf[..x.len].to_vec()));
    }
    out
}

/// Hand `bytes` to the server as if sent from `from`.
pub fn inject<P: Policy, K: KeyStore>(
    server: &mut Srv<P, K>,
    from: SocketAddrV4,
    bytes: &[u8],
    now: Instant,
) {
    server.handle(
        now,
        Datagram {
            local: SRV,
            remote: from,
            payload: bytes,
        },
    );
}

/// Hand `bytes` to the client as if sent by the server.
pub fn deliver(client: &mut Client, to: SocketAddrV4, bytes: &[u8], now: Instant) {
    client.handle(
        now,
        Datagram {
            local: to,
            remote: SRV,
            payload: bytes,
        },
    );
}

/// A workstation's key area in memory (its disk in a real preboot
/// client, §11.1).
pub struct Mem(pub [u8; 1024]);
impl preboot::transaction::provision::KeySlot for Mem {
    fn read(
        &mut self,
        a: &mut [u8; 1024],
    ) -> Result<(), preboot::transaction::provision::SlotError> {
        a.copy_from_slice(&self.0);
        Ok(())
    }
    fn write(&mut self, r: &[u8]) -> Result<(), preboot::transaction::provision::SlotError> {
        self.0[..r.len()].copy_from_slice(r);
        Ok(())
    }
}
