//! The server's view of the policy layer (docs/transaction-protocol.md
//! §3.4, §4.3–§4.6): one trait, so the imaging proxy (or a directory
//! service) can stand behind the transaction server.

use crate::Instant;
use crate::wire::transaction::Status;
use crate::wire::transaction::menu_choice::TaskQuery;
use crate::wire::transaction::messages::{
    InfoAck, MenuReply, TaskReply, TaskReport, WorkstationInfo,
};
use crate::workstation::WorkstationId;

/// The policy's records could not be made durable: the answers that
/// depend on them must not be sent ([`Policy::commit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the policy's records could not be made durable")]
pub struct CommitFailed;

/// What the transaction server asks the policy layer (docs/design.md, steps
/// 8–17). Errors are the protocol status the client receives (§5):
/// `UnknownTask` or `ServerError`.
///
/// `who` is the workstation object the session's key is bound to (§3.4):
/// the policy MUST resolve the object from `who` alone. `info` is the last
/// `WorkstationInfo` the server accepted for that session (already checked
/// against `who`): its hardware facts feed the rules.
///
/// The server calls each method at most once per request id (§6): a
/// retransmitted request is answered from the reply cache, so a method
/// that changes state (joining a multicast session, applying a report)
/// never does it twice for one request.
pub trait Policy {
    /// The object an identity names in the policy store, if any (the
    /// object's own identity). The server refuses a `WorkstationInfo` with
    /// an identity that names another object than the session's (§3.4).
    fn object_of(&self, id: &WorkstationId) -> Option<WorkstationId>;
    /// The workstation sent its information (§4.3).
    fn register<'s>(
        &'s mut self,
        now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
    ) -> Result<InfoAck<'s>, Status>;
    /// Should the menu be shown? (§4.4)
    fn menu<'s>(
        &'s mut self,
        now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
    ) -> Result<MenuReply<'s>, Status>;
    /// Which tasks are live? (§4.5) The same live tasks keep their ids.
    fn tasks<'s>(
        &'s mut self,
        now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
    ) -> Result<TaskReply<'s>, Status>;
    /// Which tasks are live, given what the `TaskQuery` says (§4.5: the
    /// menu choice). The default ignores the choice.
    fn tasks_for<'s>(
        &'s mut self,
        now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
        query: &TaskQuery,
    ) -> Result<TaskReply<'s>, Status> {
        let _ = query;
        self.tasks(now, who, info)
    }
    /// Make durable what the answers given since the last call depend on
    /// (a task journal's group commit). The driver calls it before it
    /// sends those answers; `Err` means they must not be sent (the clients
    /// retransmit and the policy answers again). The default: nothing to
    /// do.
    fn commit(&mut self) -> Result<(), CommitFailed> {
        Ok(())
    }
    /// A task's progress or outcome (§4.6), for a live task of `who`.
    fn report(
        &mut self,
        now: Instant,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
        report: &TaskReport<'_>,
    ) -> Result<(), Status>;
}
