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
#[cfg(not(feature = "aws-lc"))]
pub(crate) fn public_key(private: &[u8; 32]) -> [u8; 32] {
    let s = x25519_dalek::StaticSecret::from(*private);
    x25519_dalek::PublicKey::from(&s).to_bytes()
}

/// `DH(private, public)`, or `None` for the all-zero result (a low-order
/// point), which aborts the handshake (§3).
#[cfg(not(feature = "aws-lc"))]
pub(crate) fn dh(private: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    let s = x25519_dalek::StaticSecret::from(*private);
    let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    shared.was_contributory().then(|| shared.to_bytes())
}

/// X25519 public key of a private key (AWS-LC; the same function as
/// x25519-dalek's, RFC 7748 §5, checked against it in the tests).
#[cfg(feature = "aws-lc")]
pub(crate) fn public_key(private: &[u8; 32]) -> [u8; 32] {
    use aws_lc_rs::agreement::{PrivateKey, X25519};
    let mut out = [0u8; 32];
    // Every 32-byte string is an X25519 private key: the error branches
    // cannot happen; they leave the all-zero key, which no DH accepts.
    let Ok(key) = PrivateKey::from_private_key(&X25519, private) else {
        return out;
    };
    if let Ok(pk) = key.compute_public_key() {
        if pk.as_ref().len() == 32 {
            out.copy_from_slice(pk.as_ref());
        }
    }
    out
}

/// `DH(private, public)` (AWS-LC), or `None` for the all-zero result (a
/// low-order point; AWS-LC refuses it), which aborts the handshake (§3).
#[cfg(feature = "aws-lc")]
pub(crate) fn dh(private: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    use aws_lc_rs::agreement::{PrivateKey, UnparsedPublicKey, X25519, agree};
    let key = PrivateKey::from_private_key(&X25519, private).ok()?;
    let peer = UnparsedPublicKey::new(&X25519, public);
    agree(&key, peer, (), |k| {
        let mut out = [0u8; 32];
        if k.len() != 32 || k.iter().all(|&b| b == 0) {
            return Err(());
        }
        out.copy_from_slice(k);
        Ok(out)
    })
    .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, o) in b.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        b
    }

    /// RFC 7748 §6.1: Alice's and Bob's keys and their shared secret, with
    /// whichever X25519 this build uses.
    #[test]
    fn rfc7748_section_6_1() {
        let a = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let b = hex32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let a_pub = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let b_pub = hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let k = hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(public_key(&a), a_pub);
        assert_eq!(public_key(&b), b_pub);
        assert_eq!(dh(&a, &b_pub), Some(k));
        assert_eq!(dh(&b, &a_pub), Some(k));
        // A low-order point (here 0) gives the all-zero result: refused.
        assert_eq!(dh(&a, &[0; 32]), None);
    }

    /// With AWS-LC, the same results as x25519-dalek on many keys.
    #[cfg(feature = "aws-lc")]
    #[test]
    fn aws_lc_agrees_with_dalek() {
        for i in 0..64u8 {
            let private = [i.wrapping_mul(37).wrapping_add(1); 32];
            let peer_private = [i.wrapping_mul(11).wrapping_add(3); 32];
            let s = x25519_dalek::StaticSecret::from(private);
            let dalek_pub = x25519_dalek::PublicKey::from(&s).to_bytes();
            assert_eq!(public_key(&private), dalek_pub);
            let peer = public_key(&peer_private);
            let dalek = s.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
            assert_eq!(dh(&private, &peer), Some(dalek.to_bytes()));
        }
    }
}
