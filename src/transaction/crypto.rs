//! The primitives of docs/transaction-protocol.md §3 and their one
//! composition outside the handshake, sealed frames (§2.4): SHA-256,
//! HMAC-SHA-256, the Noise HKDF, X25519 (`x25519-dalek`) and
//! ChaCha20-Poly1305 (`chacha20poly1305`, RustCrypto). Nothing here is
//! home-made: each function is one line of the spec over a well-kept crate.

use crate::wire::transaction::{Frame, HEADER_LEN, TAG_LEN};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// HMAC-SHA-256 keyed state.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// `HASH(parts…)` (SHA-256).
pub(crate) fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `HMAC(key, parts…)` (HMAC-SHA-256).
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length: the error branch cannot happen.
    let Ok(mut m) = <HmacSha256 as hmac::KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The Noise `HKDF(ck, ikm)` with two outputs (§3.3).
pub(crate) fn hkdf2(ck: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32]) {
    let t = hmac(ck, &[ikm]);
    let o1 = hmac(&t, &[&[1]]);
    let o2 = hmac(&t, &[&o1, &[2]]);
    (o1, o2)
}

/// X25519 public key of a private key.
pub(crate) fn public_key(private: &[u8; 32]) -> [u8; 32] {
    let s = x25519_dalek::StaticSecret::from(*private);
    x25519_dalek::PublicKey::from(&s).to_bytes()
}

/// `DH(private, public)`, or `None` for the all-zero result (a low-order
/// point), which aborts the handshake (§3).
pub(crate) fn dh(private: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    let s = x25519_dalek::StaticSecret::from(*private);
    let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    shared.was_contributory().then(|| shared.to_bytes())
}

/// The 96-bit nonce of §2.4: 32 zero bits, then `n` little-endian.
fn nonce(n: u64) -> Nonce {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::from(b)
}

/// A ChaCha20-Poly1305 key with its expanded state.
#[derive(Clone)]
pub(crate) struct Aead(ChaCha20Poly1305);

impl Aead {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Aead(ChaCha20Poly1305::new(&(*key).into()))
    }

    /// Encrypt `buf` in place; returns the tag.
    pub(crate) fn seal(&self, n: u64, ad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        match self.0.encrypt_inout_detached(&nonce(n), ad, buf.into()) {
            Ok(t) => t.into(),
            // Only for messages longer than 256 GiB: cannot happen here.
            Err(_) => [0; TAG_LEN],
        }
    }

    /// Decrypt `buf` in place if `tag` verifies; on failure `buf` is left
    /// as it was given (the crate decrypts only after the tag verified).
    pub(crate) fn open(&self, n: u64, ad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let Ok(tag) = Tag::try_from(tag) else {
            return false;
        };
        self.0
            .decrypt_inout_detached(&nonce(n), ad, buf.into(), &tag)
            .is_ok()
    }
}

/// Seal the frame of `len` bytes just built in `buf` by `emit_frame(…,
/// sealed = true, …)`: encrypt its payload in place with the request id
/// as nonce and the header as associated data, and fill the tag (§2.4).
pub(crate) fn seal_frame(key: &Aead, buf: &mut [u8], len: usize) {
    if len < HEADER_LEN + TAG_LEN || len > buf.len() {
        return;
    }
    let (header, rest) = buf[..len].split_at_mut(HEADER_LEN);
    let n = u64::from(u32::from_be_bytes([
        header[8], header[9], header[10], header[11],
    ]));
    let (payload, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    let t = key.seal(n, header, payload);
    tag.copy_from_slice(&t);
}

/// Open a sealed frame into `out` (which receives the plaintext; at least
/// the payload's length). Returns the plaintext length, or `None` if the
/// frame is not sealed or its tag does not verify (§2.4).
pub(crate) fn open_frame<T: AsRef<[u8]>>(
    key: &Aead,
    frame: &Frame<T>,
    out: &mut [u8],
) -> Option<usize> {
    let tag = frame.tag()?;
    let c = frame.payload();
    let dst = out.get_mut(..c.len())?;
    dst.copy_from_slice(c);
    let n = u64::from(frame.request_id());
    key.open(n, frame.header_bytes(), dst, tag)
        .then_some(c.len())
}

/// Constant-time equality of two 32-byte values.
pub(crate) fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
