//! The store behind the policy: a small trait, and an in-memory store.

use super::model::{
    MulticastSession, ServerPolicy, WorkstationId, WorkstationObject, WorkstationPolicy,
};
use alloc::vec::Vec;

/// Where the policy data lives (a file, a directory service…).
pub trait Store {
    /// The server policy.
    fn server_policy(&self) -> &ServerPolicy;
    /// The workstation object with one of these ids, if registered.
    fn find_workstation(&self, ids: &[WorkstationId]) -> Option<&WorkstationObject>;
    /// Mutable access to a workstation object (to update its state).
    fn workstation_mut(&mut self, id: &WorkstationId) -> Option<&mut WorkstationObject>;
    /// A workstation policy by name.
    fn workstation_policy(&self, name: &str) -> Option<&WorkstationPolicy>;
    /// Multicast sessions, in order.
    fn multicast_sessions(&self) -> &[MulticastSession];
    /// Every workstation object (for unique names of registrations); a
    /// store that cannot list them says none.
    fn workstations(&self) -> &[WorkstationObject] {
        &[]
    }
    /// Add a registered workstation object (issue 15, registration);
    /// `false` if this store cannot (the default) or is full.
    fn add_workstation(&mut self, object: WorkstationObject) -> bool {
        let _ = object;
        false
    }
}

/// Most workstation objects a [`MemoryStore`] takes by registration.
pub const MAX_WORKSTATIONS: usize = 100_000;

/// Policy data held in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStore {
    /// The server policy.
    pub server: ServerPolicy,
    /// Workstation objects.
    pub workstations: Vec<WorkstationObject>,
    /// Workstation policies.
    pub policies: Vec<WorkstationPolicy>,
    /// Multicast sessions, in order.
    pub multicast: Vec<MulticastSession>,
}

impl Store for MemoryStore {
    fn server_policy(&self) -> &ServerPolicy {
        &self.server
    }
    fn find_workstation(&self, ids: &[WorkstationId]) -> Option<&WorkstationObject> {
        ids.iter()
            .find_map(|id| self.workstations.iter().find(|w| w.id == *id))
    }
    fn workstation_mut(&mut self, id: &WorkstationId) -> Option<&mut WorkstationObject> {
        self.workstations.iter_mut().find(|w| w.id == *id)
    }
    fn workstation_policy(&self, name: &str) -> Option<&WorkstationPolicy> {
        self.policies.iter().find(|p| p.name == name)
    }
    fn multicast_sessions(&self) -> &[MulticastSession] {
        &self.multicast
    }
    fn workstations(&self) -> &[WorkstationObject] {
        &self.workstations
    }
    fn add_workstation(&mut self, object: WorkstationObject) -> bool {
        if self.workstations.len() >= MAX_WORKSTATIONS
            || self.workstations.iter().any(|w| w.id == object.id)
        {
            return false;
        }
        self.workstations.push(object);
        true
    }
}
