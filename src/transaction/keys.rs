//! Where the transaction server finds keys (docs/transaction-protocol.md
//! §3, §3.1): the [`KeyStore`] trait, a single site secret ([`SiteKeys`]),
//! and per-workstation keys with an optional site secret for the others
//! ([`WorkstationKeys`], feature `alloc`).
//!
//! A key store answers two questions: which key does a key id name (for
//! the handshake), and may a session authenticated under that key id speak
//! for the workstation its `WorkstationInfo` describes (§3.1)? The second
//! question is what makes per-workstation keys worth having: a workstation
//! that holds only its own key cannot pose as another one, and once a
//! workstation has its own key the shared site secret no longer speaks
//! for it.

use crate::wire::transaction::messages::{MAX_KEY_ID_LEN, WorkstationInfo};

/// Where the server finds the key for a key id (§3), and which
/// workstations a key may speak for (§3.1).
pub trait KeyStore {
    /// The key (16–64 bytes) named by `key_id`, or `None` if unknown.
    fn key(&self, key_id: &[u8]) -> Option<&[u8]>;

    /// May a session authenticated with `key_id` send this
    /// `WorkstationInfo`? Checked by the server before the policy sees the
    /// information; `false` refuses it with `AuthFailed` and changes
    /// nothing. The default allows every workstation (a site secret).
    fn authorizes(&self, key_id: &[u8], info: &WorkstationInfo<'_>) -> bool {
        let _ = (key_id, info);
        true
    }
}

/// The simplest [`KeyStore`]: one site secret under one key id.
#[derive(Clone, Debug)]
pub struct SiteKeys {
    key_id: heapless::Vec<u8, MAX_KEY_ID_LEN>,
    key: heapless::Vec<u8, 64>,
}

impl SiteKeys {
    /// `key` (truncated to 64 bytes) under `key_id` (truncated to 64 bytes).
    pub fn new(key_id: &[u8], key: &[u8]) -> Self {
        SiteKeys {
            key_id: heapless::Vec::from_slice(&key_id[..key_id.len().min(MAX_KEY_ID_LEN)])
                .unwrap_or_default(),
            key: heapless::Vec::from_slice(&key[..key.len().min(64)]).unwrap_or_default(),
        }
    }

    /// The key id.
    pub fn key_id(&self) -> &[u8] {
        &self.key_id
    }
}

impl KeyStore for SiteKeys {
    fn key(&self, key_id: &[u8]) -> Option<&[u8]> {
        (key_id == &self.key_id[..]).then_some(&self.key[..])
    }
}

#[cfg(feature = "alloc")]
pub use per_workstation::{KeyError, WorkstationKeys};

#[cfg(feature = "alloc")]
mod per_workstation {
    use super::{KeyStore, SiteKeys};
    use crate::wire::transaction::messages::WorkstationInfo;
    use crate::workstation::{WorkstationId, identities};
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;

    /// Why a key cannot be added.
    #[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
    #[non_exhaustive]
    pub enum KeyError {
        /// Keys are 16–64 bytes (§8).
        #[error("key for {0} must be 16-64 bytes")]
        BadLength(String),
        /// The workstation already has a key.
        #[error("workstation {0} already has a key")]
        Duplicate(WorkstationId),
        /// A workstation's key id collides with the site key id.
        #[error("key id {0} is also the site key id")]
        SiteKeyIdClash(String),
    }

    struct Entry {
        id: WorkstationId,
        key_id: String,
        key: Vec<u8>,
    }

    /// Per-workstation keys (§3.1), with an optional site secret for the
    /// workstations that have none.
    ///
    /// A workstation's key id is its identity written as in the policy
    /// file: the MAC address `52:54:00:12:34:56` (lower-case hex, colons)
    /// or the UUID `00112233-4455-6677-8899-aabbccddeeff`
    /// ([`WorkstationId`]'s `Display`). The server allows a session's
    /// `WorkstationInfo` only if
    ///
    /// - under a workstation key: every identity in it that has a key of
    ///   its own is that workstation, and that workstation is among them;
    /// - under the site key: no identity in it has a key of its own.
    ///
    /// ```
    /// use preboot::policy::WorkstationId;
    /// use preboot::transaction::{KeyStore, WorkstationKeys};
    ///
    /// let mut keys = WorkstationKeys::new(Some((b"site", b"the site secret, 16+ bytes")));
    /// let ws = WorkstationId::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    /// keys.insert(ws, b"lab-pc-07's own key!").unwrap();
    /// assert_eq!(WorkstationKeys::key_id_of(&ws), "52:54:00:12:34:56");
    /// assert_eq!(keys.key(b"52:54:00:12:34:56"), Some(&b"lab-pc-07's own key!"[..]));
    /// assert!(keys.key(b"site").is_some());
    /// ```
    #[derive(Default)]
    pub struct WorkstationKeys {
        site: Option<SiteKeys>,
        entries: Vec<Entry>,
    }

    impl core::fmt::Debug for WorkstationKeys {
        // Never print keys.
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("WorkstationKeys")
                .field(
                    "site_key_id",
                    &self
                        .site
                        .as_ref()
                        .map(|s| String::from_utf8_lossy(s.key_id())),
                )
                .field("workstations", &self.entries.len())
                .finish()
        }
    }

    impl WorkstationKeys {
        /// A store with the site secret `(key id, key)` (or none: then only
        /// workstations with their own key can authenticate).
        pub fn new(site: Option<(&[u8], &[u8])>) -> Self {
            WorkstationKeys {
                site: site.map(|(id, k)| SiteKeys::new(id, k)),
                entries: Vec::new(),
            }
        }

        /// The key id a workstation uses for its own key.
        pub fn key_id_of(id: &WorkstationId) -> String {
            id.to_string()
        }

        /// Give workstation `id` its own key (16–64 bytes).
        pub fn insert(&mut self, id: WorkstationId, key: &[u8]) -> Result<(), KeyError> {
            let key_id = Self::key_id_of(&id);
            if !(16..=64).contains(&key.len()) {
                return Err(KeyError::BadLength(key_id));
            }
            if self.entries.iter().any(|e| e.id == id) {
                return Err(KeyError::Duplicate(id));
            }
            if self
                .site
                .as_ref()
                .is_some_and(|s| s.key_id() == key_id.as_bytes())
            {
                return Err(KeyError::SiteKeyIdClash(key_id));
            }
            self.entries.push(Entry {
                id,
                key_id,
                key: key.to_vec(),
            });
            Ok(())
        }

        /// Workstations with a key of their own.
        pub fn len(&self) -> usize {
            self.entries.len()
        }

        /// No workstation has a key of its own.
        pub fn is_empty(&self) -> bool {
            self.entries.is_empty()
        }

        /// Does workstation `id` have a key of its own?
        pub fn has_own_key(&self, id: &WorkstationId) -> bool {
            self.entries.iter().any(|e| e.id == *id)
        }

        fn entry(&self, key_id: &[u8]) -> Option<&Entry> {
            self.entries.iter().find(|e| e.key_id.as_bytes() == key_id)
        }
    }

    impl KeyStore for WorkstationKeys {
        fn key(&self, key_id: &[u8]) -> Option<&[u8]> {
            if let Some(e) = self.entry(key_id) {
                return Some(&e.key);
            }
            self.site.as_ref().and_then(|s| s.key(key_id))
        }

        fn authorizes(&self, key_id: &[u8], info: &WorkstationInfo<'_>) -> bool {
            let ids = identities(info);
            let keyed = ids.iter().filter(|i| self.has_own_key(i));
            match self.entry(key_id) {
                Some(e) => ids.contains(&e.id) && keyed.clone().all(|i| *i == e.id),
                None => {
                    self.site.as_ref().is_some_and(|s| s.key_id() == key_id) && keyed.count() == 0
                }
            }
        }
    }
}
