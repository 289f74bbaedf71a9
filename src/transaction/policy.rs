//! The server's view of the policy layer: one trait, so the imaging proxy
//! (or a directory service) can stand behind the transaction server.

use crate::Instant;
use crate::wire::transaction::Status;
use crate::wire::transaction::messages::{
    InfoAck, MenuReply, TaskReply, TaskReport, WorkstationInfo,
};

/// What the transaction server asks the policy layer (docs/design.md, steps
/// 8–17). Errors are the protocol status the client receives (§5):
/// `UnknownTask` or `ServerError`.
///
/// The server calls each method at most once per request id (§6): a
/// retransmitted request is answered from the reply cache, so a method
/// that changes state (joining a multicast session, applying a report)
/// never does it twice for one request.
pub trait Policy {
    /// The workstation sent its information (§4.3).
    fn register<'s>(
        &'s mut self,
        now: Instant,
        info: &WorkstationInfo<'_>,
    ) -> Result<InfoAck<'s>, Status>;
    /// Should the menu be shown? (§4.4)
    fn menu<'s>(
        &'s mut self,
        now: Instant,
        info: &WorkstationInfo<'_>,
    ) -> Result<MenuReply<'s>, Status>;
    /// Which tasks are pending? (§4.5) Hands out task ids.
    fn tasks<'s>(
        &'s mut self,
        now: Instant,
        info: &WorkstationInfo<'_>,
    ) -> Result<TaskReply<'s>, Status>;
    /// A task's progress or outcome (§4.6).
    fn report(
        &mut self,
        now: Instant,
        info: &WorkstationInfo<'_>,
        report: &TaskReport<'_>,
    ) -> Result<(), Status>;
}
