//! The handshake of docs/transaction-protocol.md §3.3: Noise
//! `IK` (`Noise_IK_25519_ChaChaPoly_SHA256`, Noise revision 34 §5, §7.5)
//! with the prologue of §3.3, composed from [`super::crypto`].
//!
//! The client writes `Init` ([`write_init`]) and reads `Accept`
//! ([`read_accept`]); the server reads `Init` ([`read_init`]) and writes
//! `Accept` ([`write_accept`]). Both end with the two transport keys
//! ([`TransportKeys`]).

use super::crypto::{self, Aead, dh, hash, hkdf2};
use crate::wire::transaction::TAG_LEN;
use crate::wire::transaction::messages::{ACCEPT_PLAIN_LEN, Accept, KEY_LEN};

/// The Noise protocol name; 32 bytes, so it is `h` as is (Noise §5.2).
pub(crate) const PROTOCOL_NAME: &[u8; 32] = b"Noise_IK_25519_ChaChaPoly_SHA256";
/// The first bytes of the prologue (§3.3).
pub(crate) const PROLOGUE_LABEL: &[u8] = b"PBTX2";

/// Noise's SymmetricState (Noise §5.2): `h`, `ck`, `k`, `n`.
#[derive(Clone)]
pub(crate) struct Symmetric {
    h: [u8; 32],
    ck: [u8; 32],
    k: Option<[u8; 32]>,
    n: u64,
}

impl Symmetric {
    /// `InitializeSymmetric(name)`, `MixHash(prologue)` with the prologue
    /// `"PBTX2" ‖ hello ‖ cookie frame ‖ init header` (§3.3), then the
    /// responder's static key as pre-message.
    pub(crate) fn new(hello: &[u8], cookie: &[u8], init_header: &[u8], server: &[u8; 32]) -> Self {
        let h = *PROTOCOL_NAME;
        let mut s = Symmetric {
            h,
            ck: h,
            k: None,
            n: 0,
        };
        s.h = hash(&[&s.h, PROLOGUE_LABEL, hello, cookie, init_header]);
        s.mix_hash(server);
        s
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = hash(&[&self.h, data]);
    }

    fn mix_key(&mut self, ikm: &[u8; 32]) {
        let (ck, k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        self.k = Some(k);
        self.n = 0;
    }

    /// `EncryptAndHash`: encrypt `buf` in place, write the tag to `tag`.
    fn encrypt_and_hash(&mut self, buf: &mut [u8], tag: &mut [u8]) {
        if let Some(k) = &self.k {
            let t = Aead::new(k).seal(self.n, &self.h, buf);
            tag.copy_from_slice(&t);
            self.n += 1;
        }
        self.h = hash(&[&self.h, buf, tag]);
    }

    /// `DecryptAndHash`: decrypt `buf` in place if `tag` verifies.
    fn decrypt_and_hash(&mut self, buf: &mut [u8], tag: &[u8]) -> bool {
        let Some(k) = &self.k else {
            return false;
        };
        let next_h = hash(&[&self.h, buf, tag]);
        if !Aead::new(k).open(self.n, &self.h, buf, tag) {
            return false;
        }
        self.n += 1;
        self.h = next_h;
        true
    }

    /// `Split()` into the client→server and server→client keys.
    fn split(&self) -> TransportKeys {
        let (c, s) = hkdf2(&self.ck, &[]);
        TransportKeys {
            client_to_server: c,
            server_to_client: s,
        }
    }

    /// The handshake hash `h` (for tests and vectors).
    #[cfg(test)]
    pub(crate) fn handshake_hash(&self) -> [u8; 32] {
        self.h
    }
}

/// The session's two keys (§3.3 `Split`): `Kc` and `Ks`.
#[derive(Clone)]
pub(crate) struct TransportKeys {
    pub(crate) client_to_server: [u8; 32],
    pub(crate) server_to_client: [u8; 32],
}

/// What the client keeps between `Init` and `Accept`.
#[derive(Clone)]
pub(crate) struct Initiator {
    sym: Symmetric,
    ephemeral: [u8; 32],
    static_private: [u8; 32],
}

/// Write the Noise part of `Init`: returns `e_pub`, `ENC(s_pub)` and the
/// initiator state; `payload` (the init payload in clear, followed by 16
/// bytes for its tag) is encrypted in place. `None` if a DH result is zero.
pub(crate) fn write_init(
    mut sym: Symmetric,
    server: &[u8; 32],
    static_private: &[u8; 32],
    ephemeral: &[u8; 32],
    payload: &mut [u8],
) -> Option<([u8; KEY_LEN], [u8; KEY_LEN + TAG_LEN], Initiator)> {
    let e_pub = crypto::public_key(ephemeral);
    sym.mix_hash(&e_pub);
    sym.mix_key(&dh(ephemeral, server)?);
    let mut enc_s = [0u8; KEY_LEN + TAG_LEN];
    enc_s[..KEY_LEN].copy_from_slice(&crypto::public_key(static_private));
    let (s, t) = enc_s.split_at_mut(KEY_LEN);
    sym.encrypt_and_hash(s, t);
    sym.mix_key(&dh(static_private, server)?);
    let split = payload.len().checked_sub(TAG_LEN)?;
    let (p, t) = payload.split_at_mut(split);
    sym.encrypt_and_hash(p, t);
    Some((
        e_pub,
        enc_s,
        Initiator {
            sym,
            ephemeral: *ephemeral,
            static_private: *static_private,
        },
    ))
}

/// Read `Accept`: the accept payload in clear and the transport keys, or
/// `None` if it was not written by the holder of the pinned server key.
pub(crate) fn read_accept(
    state: &Initiator,
    accept: &Accept,
) -> Option<([u8; ACCEPT_PLAIN_LEN], TransportKeys)> {
    let mut sym = state.sym.clone();
    sym.mix_hash(&accept.ephemeral);
    sym.mix_key(&dh(&state.ephemeral, &accept.ephemeral)?);
    sym.mix_key(&dh(&state.static_private, &accept.ephemeral)?);
    let mut buf = accept.encrypted_payload;
    let (p, t) = buf.split_at_mut(ACCEPT_PLAIN_LEN);
    if !sym.decrypt_and_hash(p, t) {
        return None;
    }
    let mut plain = [0u8; ACCEPT_PLAIN_LEN];
    plain.copy_from_slice(p);
    Some((plain, sym.split()))
}

/// What the server learned from `Init`.
pub(crate) struct Responder {
    sym: Symmetric,
    /// The client's static public key `s_pub`.
    pub(crate) client_static: [u8; 32],
    /// The client's ephemeral public key `e_pub`.
    pub(crate) client_ephemeral: [u8; 32],
}

/// Read the Noise part of `Init`; the init payload (ciphertext ‖ tag, in
/// `payload`) is decrypted in place, its length in clear returned.
/// `None` if anything fails to decrypt. `ss` gives `DH(S, s_pub)` for the
/// client's static key (computed, or from a cache).
pub(crate) fn read_init(
    mut sym: Symmetric,
    server_private: &[u8; 32],
    e_pub: &[u8; 32],
    enc_static: &[u8; KEY_LEN + TAG_LEN],
    payload: &mut [u8],
    ss: impl FnOnce(&[u8; 32]) -> Option<[u8; 32]>,
) -> Option<(Responder, usize)> {
    sym.mix_hash(e_pub);
    sym.mix_key(&dh(server_private, e_pub)?);
    let mut s = *enc_static;
    let (sp, t) = s.split_at_mut(KEY_LEN);
    if !sym.decrypt_and_hash(sp, t) {
        return None;
    }
    let mut client_static = [0u8; 32];
    client_static.copy_from_slice(sp);
    sym.mix_key(&ss(&client_static)?);
    let split = payload.len().checked_sub(TAG_LEN)?;
    let (p, t) = payload.split_at_mut(split);
    if !sym.decrypt_and_hash(p, t) {
        return None;
    }
    Some((
        Responder {
            sym,
            client_static,
            client_ephemeral: *e_pub,
        },
        split,
    ))
}

/// Write `Accept` with the accept payload `plain` and the server's
/// ephemeral private key; returns it with the transport keys.
pub(crate) fn write_accept(
    r: &Responder,
    ephemeral: &[u8; 32],
    plain: [u8; ACCEPT_PLAIN_LEN],
) -> Option<(Accept, TransportKeys)> {
    let mut sym = r.sym.clone();
    let re_pub = crypto::public_key(ephemeral);
    sym.mix_hash(&re_pub);
    sym.mix_key(&dh(ephemeral, &r.client_ephemeral)?);
    sym.mix_key(&dh(ephemeral, &r.client_static)?);
    let mut enc = [0u8; ACCEPT_PLAIN_LEN + TAG_LEN];
    enc[..ACCEPT_PLAIN_LEN].copy_from_slice(&plain);
    let (p, t) = enc.split_at_mut(ACCEPT_PLAIN_LEN);
    sym.encrypt_and_hash(p, t);
    Some((
        Accept {
            ephemeral: re_pub,
            encrypted_payload: enc,
        },
        sym.split(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §3.3: both sides end with the same handshake hash and keys, and a
    /// different prologue (a changed `Hello` or `Cookie`) makes `Init`
    /// fail to decrypt.
    #[test]
    fn initiator_and_responder_agree() {
        let server = [7u8; 32];
        let server_pub = crypto::public_key(&server);
        let sym = Symmetric::new(b"hello", b"cookie", b"header", &server_pub);
        let mut payload = [1, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let (e_pub, enc_s, init) =
            write_init(sym.clone(), &server_pub, &[9; 32], &[5; 32], &mut payload).unwrap();
        let mut p2 = payload;
        let (resp, n) =
            read_init(sym, &server, &e_pub, &enc_s, &mut p2, |k| dh(&server, k)).unwrap();
        assert_eq!(&p2[..n], &[1, 0, 1, 2]);
        assert_eq!(resp.client_static, crypto::public_key(&[9; 32]));
        let (accept, ks) = write_accept(&resp, &[3; 32], [0; 9]).unwrap();
        let (plain, kc) = read_accept(&init, &accept).unwrap();
        assert_eq!(plain, [0; 9]);
        assert_eq!(ks.client_to_server, kc.client_to_server);
        assert_eq!(ks.server_to_client, kc.server_to_client);
        assert_ne!(ks.client_to_server, ks.server_to_client);

        let other = Symmetric::new(b"hellO", b"cookie", b"header", &server_pub);
        let mut p3 = payload;
        assert!(read_init(other, &server, &e_pub, &enc_s, &mut p3, |k| dh(&server, k)).is_none());
        assert_ne!(init.sym.handshake_hash(), [0; 32]);
    }
}
