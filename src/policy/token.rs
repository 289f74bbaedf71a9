//! Per-task tokens (docs/transaction-protocol.md §4.5 TLV 3): the one
//! credential a `TaskReply` carries. The imaging environment presents a
//! task's token to an image store, which asks the server
//! ([`ImagingProxy::check_token`](super::ImagingProxy::check_token))
//! whether it stands for a live task of that workstation.
//!
//! A token is HMAC-SHA-256 under the server's token secret (derived from
//! its static key by the boot server, so tokens survive a restart) over
//! the workstation's identity, the task id and the hand-out count: it is
//! valid while the task is live, and only for its latest hand-out (a new
//! hand-out, a report of success or failure, or a held task ends it). No
//! token is kept: a store asks, the server recomputes and compares in
//! constant time.

use crate::transaction::crypto;
use crate::workstation::WorkstationId;

/// Domain separation for the token MAC and for the secret's derivation.
const LABEL: &[u8] = b"preboot task token v1";

/// The secret tokens are made with.
#[derive(Clone)]
pub(crate) struct TokenSecret([u8; 32]);

impl core::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

impl TokenSecret {
    /// The secret for a server whose static private key is `key`: a MAC of
    /// the label under the key, never the key itself.
    pub(crate) fn derive(key: &[u8; 32]) -> Self {
        TokenSecret(crypto::hmac(key, &[LABEL, b" secret"]))
    }

    /// The token of hand-out `handouts` of task `task` to `who`.
    pub(crate) fn token(&self, who: &WorkstationId, task: u32, handouts: u32) -> [u8; 32] {
        let (kind, id): (u8, &[u8]) = match who {
            WorkstationId::Mac(m) => (1, m),
            WorkstationId::Uuid(u) => (2, u),
        };
        crypto::hmac(
            &self.0,
            &[
                LABEL,
                &[kind],
                id,
                &task.to_be_bytes(),
                &handouts.to_be_bytes(),
            ],
        )
    }

    /// Does `token` stand for hand-out `handouts` of task `task` to `who`
    /// (constant time)?
    pub(crate) fn holds(
        &self,
        who: &WorkstationId,
        task: u32,
        handouts: u32,
        token: &[u8; 32],
    ) -> bool {
        crypto::ct_eq(&self.token(who, task, handouts), token)
    }
}
