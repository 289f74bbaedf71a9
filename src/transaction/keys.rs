//! Keys of docs/transaction-protocol.md §3.1, §3.4 and §12: a static
//! X25519 key pair ([`StaticKey`], the server's or a workstation's), the
//! hedged ephemeral key of §3.1, key text (exactly 32 bytes, hex or
//! base64, §12), and the server's key store ([`KeyStore`]): which
//! workstation object a client's public key is bound to.
//!
//! A key store answers: which object does this public key speak for
//! (§3.4), and which key (if any) does an object have? The server never
//! takes the object from what a `WorkstationInfo` claims.

use super::Random;
use super::crypto::{self, hash};
use crate::workstation::WorkstationId;
use zeroize::Zeroize;

/// Why a key cannot be made, read or added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The platform gave no random bytes (§11.2).
    #[error("no random source: cannot create this workstation's key")]
    NoRandomness,
    /// The bytes are one value repeated: not a random key (§12).
    #[error("the key is one byte value repeated, not 32 random bytes")]
    Degenerate,
    /// Key text is not 32 bytes in hex or base64 (§12).
    #[error(
        "a key is exactly 32 bytes, written as 64 hex digits or base64 (this is {len} characters); passphrases are not accepted"
    )]
    BadText {
        /// Characters given.
        len: usize,
    },
    /// The object already has a key, or the key is bound already (§12).
    #[error("workstation {0} or its key is already in the key store")]
    Duplicate(WorkstationId),
    /// The key store is full.
    #[error("the key store is full")]
    Full,
}

/// A static X25519 key pair (§3.1): the server's, or a workstation's.
/// The private half is wiped when dropped and never printed.
#[derive(Clone)]
pub struct StaticKey {
    private: [u8; 32],
    public: [u8; 32],
}

impl Drop for StaticKey {
    fn drop(&mut self) {
        self.private.zeroize();
    }
}

impl core::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StaticKey")
            .field("public", &Hex(&self.public))
            .finish_non_exhaustive()
    }
}

fn degenerate(b: &[u8]) -> bool {
    b.iter().all(|&x| Some(&x) == b.first())
}

impl StaticKey {
    /// A key from its 32 private bytes; one byte value repeated is refused.
    pub fn from_bytes(private: [u8; 32]) -> Result<Self, KeyError> {
        if degenerate(&private) {
            return Err(KeyError::Degenerate);
        }
        Ok(StaticKey {
            public: crypto::public_key(&private),
            private,
        })
    }

    /// A new key from `random` (§11.2): no random bytes, or a repeated
    /// byte value, is [`KeyError::NoRandomness`].
    pub fn generate<R: Random + ?Sized>(random: &mut R) -> Result<Self, KeyError> {
        let mut b = [0u8; 32];
        random
            .try_fill(&mut b)
            .map_err(|_| KeyError::NoRandomness)?;
        if degenerate(&b) {
            return Err(KeyError::NoRandomness);
        }
        let k = Self::from_bytes(b).map_err(|_| KeyError::NoRandomness);
        b.zeroize();
        k
    }

    /// The public key: what identifies a workstation, what a client pins.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The private key (for the handshake and the key record).
    pub(crate) fn private(&self) -> &[u8; 32] {
        &self.private
    }

    /// The private bytes, e.g. to write the key record (§11.1).
    pub fn to_private_bytes(&self) -> [u8; 32] {
        self.private
    }

    /// The client's hedged ephemeral private key (§3.1):
    /// `HASH("PBTX2 ephemeral" ‖ fresh ‖ s ‖ counter)`.
    pub fn hedged_ephemeral(&self, fresh: &[u8; 32], counter: u64) -> [u8; 32] {
        hash(&[
            b"PBTX2 ephemeral",
            fresh,
            &self.private,
            &counter.to_be_bytes(),
        ])
    }
}

/// Hex display of a key.
pub struct Hex<'a>(pub &'a [u8; 32]);

impl core::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn b64_val(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Read a key written as text (§12): exactly 32 bytes, as 64 hex digits
/// or as base64 (43 characters, or 44 with one `=`). Anything else — a
/// passphrase above all — is refused.
pub fn parse_key(text: &str) -> Result<[u8; 32], KeyError> {
    let t = text.trim().as_bytes();
    let bad = KeyError::BadText { len: t.len() };
    let mut out = [0u8; 32];
    if t.len() == 64 && t.iter().all(|c| hex_val(*c).is_some()) {
        for (i, pair) in t.chunks(2).enumerate() {
            let (Some(h), Some(l)) = (hex_val(pair[0]), hex_val(pair[1])) else {
                return Err(bad);
            };
            out[i] = h << 4 | l;
        }
        return Ok(out);
    }
    let body = match t {
        [rest @ .., b'='] if t.len() == 44 => rest,
        _ if t.len() == 43 => t,
        _ => return Err(bad),
    };
    // 43 characters: 258 bits, the last 2 must be zero (canonical).
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut n = 0;
    for &c in body {
        acc = acc << 6 | b64_val(c).ok_or(bad)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if n == 32 {
                return Err(bad);
            }
            out[n] = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    if n != 32 || acc != 0 {
        return Err(bad);
    }
    Ok(out)
}

/// Where the server finds which workstation object a client's static
/// public key is bound to (§3.4).
pub trait KeyStore {
    /// The object this key is bound to, if any.
    fn object_of_key(&self, public: &[u8; 32]) -> Option<WorkstationId>;
    /// The key bound to object `id`, if any.
    fn key_of_object(&self, id: &WorkstationId) -> Option<[u8; 32]>;
    /// Is auto-enrolment on (§3.4)? Off unless a store says otherwise.
    fn auto_enrol(&self) -> bool {
        false
    }
    /// Bind `public` to `id` (auto-enrolment, §3.4); `false` if refused.
    fn enrol(&mut self, public: &[u8; 32], id: WorkstationId) -> bool {
        let _ = (public, id);
        false
    }
}

/// A fixed-capacity key store (no heap): up to `N` bindings.
#[derive(Clone, Debug, Default)]
pub struct KeyList<const N: usize> {
    entries: heapless::Vec<(WorkstationId, [u8; 32]), N>,
    auto_enrol: bool,
}

impl<const N: usize> KeyList<N> {
    /// An empty store; `auto_enrol` as in §3.4.
    pub fn new(auto_enrol: bool) -> Self {
        KeyList {
            entries: heapless::Vec::new(),
            auto_enrol,
        }
    }

    /// Bind `public` to `id` (one key per object, one object per key).
    pub fn insert(&mut self, id: WorkstationId, public: [u8; 32]) -> Result<(), KeyError> {
        if self.entries.iter().any(|(i, k)| *i == id || *k == public) {
            return Err(KeyError::Duplicate(id));
        }
        self.entries.push((id, public)).map_err(|_| KeyError::Full)
    }

    /// Bindings held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No binding.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<const N: usize> KeyStore for KeyList<N> {
    fn object_of_key(&self, public: &[u8; 32]) -> Option<WorkstationId> {
        self.entries
            .iter()
            .find(|(_, k)| crypto::ct_eq(k, public))
            .map(|(i, _)| *i)
    }
    fn key_of_object(&self, id: &WorkstationId) -> Option<[u8; 32]> {
        self.entries.iter().find(|(i, _)| i == id).map(|(_, k)| *k)
    }
    fn auto_enrol(&self) -> bool {
        self.auto_enrol
    }
    fn enrol(&mut self, public: &[u8; 32], id: WorkstationId) -> bool {
        self.auto_enrol && self.insert(id, *public).is_ok()
    }
}

#[cfg(feature = "alloc")]
pub use per_workstation::WorkstationKeys;

#[cfg(feature = "alloc")]
mod per_workstation {
    use super::{KeyError, KeyStore};
    use crate::workstation::WorkstationId;
    use alloc::collections::BTreeMap;

    /// The server's key store on the heap: workstation public keys bound to
    /// objects (§3.4, §12), with the auto-enrolment option.
    ///
    /// ```
    /// use preboot::policy::WorkstationId;
    /// use preboot::transaction::{KeyStore, StaticKey, WorkstationKeys};
    ///
    /// let ws_key = StaticKey::from_bytes([0x42; 31].iter().copied().chain([7]).collect::<Vec<_>>().try_into().unwrap()).unwrap();
    /// let lab_pc = WorkstationId::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    /// let mut keys = WorkstationKeys::new(false);
    /// keys.insert(lab_pc, ws_key.public()).unwrap();
    /// assert_eq!(keys.object_of_key(&ws_key.public()), Some(lab_pc));
    /// assert!(keys.insert(lab_pc, [9; 32]).is_err()); // one key per object
    /// ```
    #[derive(Clone, Debug, Default)]
    pub struct WorkstationKeys {
        by_key: BTreeMap<[u8; 32], WorkstationId>,
        by_object: BTreeMap<WorkstationId, [u8; 32]>,
        auto_enrol: bool,
    }

    impl WorkstationKeys {
        /// An empty store; `auto_enrol` as in §3.4.
        pub fn new(auto_enrol: bool) -> Self {
            WorkstationKeys {
                auto_enrol,
                ..Default::default()
            }
        }

        /// Bind `public` to object `id`.
        pub fn insert(&mut self, id: WorkstationId, public: [u8; 32]) -> Result<(), KeyError> {
            if self.by_object.contains_key(&id) || self.by_key.contains_key(&public) {
                return Err(KeyError::Duplicate(id));
            }
            self.by_key.insert(public, id);
            self.by_object.insert(id, public);
            Ok(())
        }

        /// Bindings held.
        pub fn len(&self) -> usize {
            self.by_key.len()
        }

        /// No binding.
        pub fn is_empty(&self) -> bool {
            self.by_key.is_empty()
        }

        /// Every binding, by object.
        pub fn iter(&self) -> impl Iterator<Item = (&WorkstationId, &[u8; 32])> {
            self.by_object.iter()
        }
    }

    impl KeyStore for WorkstationKeys {
        fn object_of_key(&self, public: &[u8; 32]) -> Option<WorkstationId> {
            self.by_key.get(public).copied()
        }
        fn key_of_object(&self, id: &WorkstationId) -> Option<[u8; 32]> {
            self.by_object.get(id).copied()
        }
        fn auto_enrol(&self) -> bool {
            self.auto_enrol
        }
        fn enrol(&mut self, public: &[u8; 32], id: WorkstationId) -> bool {
            self.auto_enrol && self.insert(id, *public).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §12: 64 hex digits or base64 of exactly 32 bytes; nothing else.
    #[test]
    fn key_text_is_exactly_32_bytes() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let want: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(parse_key(hex), Ok(want));
        assert_eq!(
            parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            Ok(want)
        );
        assert_eq!(
            parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"),
            Ok(want)
        );
        for bad in [
            "correct horse battery staple",
            "the site secret, 16-64 bytes",
            &hex[..62],
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
            "",
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }

    /// §11.2: no randomness, or a stuck source, makes no key.
    #[test]
    fn no_randomness_no_key() {
        struct Broken;
        impl Random for Broken {
            fn fill(&mut self, _: &mut [u8]) {}
            fn try_fill(&mut self, _: &mut [u8]) -> Result<(), super::super::NoRandomness> {
                Err(super::super::NoRandomness)
            }
        }
        assert_eq!(
            StaticKey::generate(&mut Broken).unwrap_err(),
            KeyError::NoRandomness
        );
        let mut stuck = |b: &mut [u8]| b.fill(0);
        assert_eq!(
            StaticKey::generate(&mut stuck).unwrap_err(),
            KeyError::NoRandomness
        );
        let mut n = 0u8;
        let mut ok = |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_add(37);
                *x = n;
            }
        };
        assert!(StaticKey::generate(&mut ok).is_ok());
    }

    /// §3.1: the hedged ephemeral differs when only the counter differs.
    #[test]
    fn hedged_ephemeral_uses_counter() {
        let k = StaticKey::from_bytes(
            [3; 31]
                .iter()
                .copied()
                .chain([4])
                .collect::<heapless::Vec<u8, 32>>()
                .into_array()
                .unwrap(),
        )
        .unwrap();
        assert_ne!(
            k.hedged_ephemeral(&[1; 32], 1),
            k.hedged_ephemeral(&[1; 32], 2)
        );
    }
}
