//! The stateless cookie of docs/transaction-protocol.md §3.2: the
//! server answers `Hello` from a rotating secret and the `Hello` itself,
//! and keeps nothing.

use super::crypto::{ct_eq, hmac};
use crate::Instant;
use core::net::SocketAddrV4;
use core::time::Duration;

/// The cookie label (§3.2).
pub(crate) const COOKIE_LABEL: &[u8] = b"PBTX2 cookie";

/// `HMAC(Ck, "PBTX2 cookie" ‖ address ‖ port ‖ hello)` (§3.2).
pub(crate) fn cookie(secret: &[u8; 32], from: SocketAddrV4, hello: &[u8]) -> [u8; 32] {
    hmac(
        secret,
        &[
            COOKIE_LABEL,
            &from.ip().octets(),
            &from.port().to_be_bytes(),
            hello,
        ],
    )
}

/// The current and previous cookie secrets, replaced every `rotation`.
pub(crate) struct CookieSecrets {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
    next_rotation: Option<Instant>,
    rotation: Duration,
}

impl CookieSecrets {
    pub(crate) fn new(rotation: Duration) -> Self {
        CookieSecrets {
            current: [0; 32],
            previous: None,
            next_rotation: None,
            rotation,
        }
    }

    /// Draw a new secret if none was drawn yet or the rotation is due.
    pub(crate) fn rotate_if_due(&mut self, now: Instant, fill: impl FnOnce(&mut [u8])) {
        match self.next_rotation {
            None => fill(&mut self.current),
            Some(t) if now >= t => {
                self.previous = Some(self.current);
                fill(&mut self.current);
            }
            Some(_) => return,
        }
        self.next_rotation = Some(now + self.rotation);
    }

    /// The cookie for a `Hello` under the current secret.
    pub(crate) fn make(&self, from: SocketAddrV4, hello: &[u8]) -> [u8; 32] {
        cookie(&self.current, from, hello)
    }

    /// Was `c` made for this `Hello` under the current or previous secret?
    pub(crate) fn verify(&self, from: SocketAddrV4, hello: &[u8], c: &[u8; 32]) -> bool {
        let now_ok = ct_eq(&self.make(from, hello), c);
        let prev_ok = self
            .previous
            .is_some_and(|p| ct_eq(&cookie(&p, from, hello), c));
        now_ok | prev_ok
    }
}
