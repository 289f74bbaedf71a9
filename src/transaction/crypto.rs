//! The handshake and MAC computations of §2.4 and §3
//! (HMAC-SHA-256, RustCrypto `hmac`/`sha2`).

use crate::wire::transaction::messages::NONCE_LEN;
use crate::wire::transaction::{Frame, MAC_LEN};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// HMAC-SHA-256 keyed state; cloning it reuses the key schedule.
pub(crate) type HmacSha256 = Hmac<Sha256>;

pub(crate) const LABEL_SERVER: &[u8] = b"PBTX1 server";
pub(crate) const LABEL_CLIENT: &[u8] = b"PBTX1 client";
pub(crate) const LABEL_SESSION: &[u8] = b"PBTX1 session";

pub(crate) fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; the fallback is unreachable.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

fn tag(m: HmacSha256) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&m.finalize().into_bytes());
    out
}

/// `H(K, label ‖ Nc ‖ Ns ‖ sid ‖ kid)` (server and client proofs, §3).
pub(crate) fn proof(
    key: &[u8],
    label: &[u8],
    nc: &[u8; NONCE_LEN],
    ns: &[u8; NONCE_LEN],
    sid: u64,
    kid: &[u8],
) -> [u8; 32] {
    let mut m = keyed(key);
    m.update(label);
    m.update(nc);
    m.update(ns);
    m.update(&sid.to_be_bytes());
    m.update(kid);
    tag(m)
}

/// `SK = H(K, "PBTX1 session" ‖ Nc ‖ Ns ‖ sid)` (§3), returned keyed.
pub(crate) fn session_mac(
    key: &[u8],
    nc: &[u8; NONCE_LEN],
    ns: &[u8; NONCE_LEN],
    sid: u64,
) -> HmacSha256 {
    let mut m = keyed(key);
    m.update(LABEL_SESSION);
    m.update(nc);
    m.update(ns);
    m.update(&sid.to_be_bytes());
    keyed(&tag(m))
}

/// Fill the MAC of a frame of `len` bytes just built in `buf` (§2.4).
pub(crate) fn seal(mac: &HmacSha256, buf: &mut [u8], len: usize) {
    if len < MAC_LEN || len > buf.len() {
        return;
    }
    let mut m = mac.clone();
    m.update(&buf[..len - MAC_LEN]);
    let t = tag(m);
    buf[len - MAC_LEN..len].copy_from_slice(&t);
}

/// Does the frame's MAC verify (constant time)? A frame without MAC fails.
pub(crate) fn verify<T: AsRef<[u8]>>(mac: &HmacSha256, frame: &Frame<T>) -> bool {
    let Some(tag) = frame.mac() else {
        return false;
    };
    let mut m = mac.clone();
    m.update(frame.authenticated_bytes());
    m.verify_slice(tag).is_ok()
}

/// Constant-time equality of two 32-byte values.
pub(crate) fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
