//! Issue 15 in the imaging proxy: registering workstations and keeping
//! their inventory through a [`Registry`], the server policy's IP pool,
//! and the menu entries resolved by level (docs/transaction-protocol.md
//! §4.4, §4.5, §4.9).

use super::{ImagingProxy, MenuSource};
use crate::policy::ip_pool::IpAssignments;
use crate::policy::model::{MenuEntries, MenuEntrySpec, WorkstationId, WorkstationObject};
use crate::policy::registration::{MAX_NAME_LEN, Registry, expand_name};
use crate::policy::store::Store;
use crate::policy::task::TaskLog;
use crate::wire::image_safe::ImageSafe;
use crate::wire::transaction::Status;
use crate::wire::transaction::menu_choice::AssignedIp;
use crate::wire::transaction::messages::WorkstationInfo;
use alloc::boxed::Box;

/// The menu entries resolved for a workstation
/// ([`ImagingProxy::menu_entries`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MenuEntriesRef<'a> {
    /// Entries, in display order.
    pub entries: &'a [MenuEntrySpec],
    /// Default entry (0-based).
    pub default: Option<u8>,
    /// Choice timeout in ms.
    pub timeout_ms: Option<u32>,
}

impl<S: Store, L: TaskLog> ImagingProxy<S, L> {
    /// Keep registrations and inventories in `registry` (issue 15;
    /// without one they live in the store in memory only, and no
    /// inventory is kept).
    pub fn set_registry(&mut self, registry: Box<dyn Registry>) {
        self.ips = IpAssignments::from_list(&registry.ip_assignments());
        self.registry = Some(registry);
    }

    /// The IP pool's assignments (ZENworks' IP assignment log).
    pub fn ip_assignments(&self) -> &IpAssignments {
        &self.ips
    }

    /// Static IP settings from the server policy's pool for `who`, when
    /// its image-safe data has none (no address): its earlier address, or
    /// a free one, recorded in the registry before it is answered. `None`
    /// without a pool, with an address already, or with the pool used up.
    pub(super) fn pool_address(
        &mut self,
        who: &WorkstationId,
        image_safe: Option<&ImageSafe<'_>>,
    ) -> Result<Option<AssignedIp>, Status> {
        let Some(pool) = self.store.server_policy().ip_pool.as_ref() else {
            return Ok(None);
        };
        if image_safe.is_some_and(|r| r.address.is_some()) {
            return Ok(None);
        }
        let Some((address, new)) = self.ips.choose(pool, who) else {
            return Ok(None);
        };
        let ip = AssignedIp {
            address,
            netmask: pool.netmask,
            gateway: pool.gateway,
            dns: heapless::Vec::from_slice(&pool.dns[..pool.dns.len().min(4)]).unwrap_or_default(),
        };
        if new {
            if let Some(r) = self.registry.as_mut() {
                r.ip_assigned(who, address)
                    .map_err(|_| Status::ServerError)?;
            }
            self.ips.record(*who, address);
        }
        Ok(Some(ip))
    }

    /// Register `who` (unknown to the store) as a new workstation object
    /// named by `template` ([`expand_name`]; `{n}` is the number of
    /// objects plus one, and a name already taken gets the next number,
    /// or `-2`, `-3`… without `{n}`), made durable in the registry first.
    /// `Ok(false)`: already an object.
    pub fn register_new(
        &mut self,
        who: &WorkstationId,
        info: &WorkstationInfo<'_>,
        template: &str,
    ) -> Result<bool, Status> {
        if self.object(core::slice::from_ref(who)).is_some() {
            return Ok(false);
        }
        let objects = self.store.workstations();
        let first = u32::try_from(objects.len()).unwrap_or(u32::MAX - 1024) + 1;
        let numbered = template.contains("{n}");
        let name = (0..1024u32)
            .map(|k| {
                let mut name = expand_name(template, who, info, first + k);
                if k > 0 && !numbered {
                    let suffix = alloc::format!("-{}", k + 1);
                    let mut cut = name.len().min(MAX_NAME_LEN - suffix.len());
                    while !name.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    name.truncate(cut);
                    name.push_str(&suffix);
                }
                name
            })
            .find(|n| !objects.iter().any(|w| w.name == *n))
            .ok_or(Status::ServerError)?;
        let object = WorkstationObject::new(*who, &name);
        if let Some(r) = self.registry.as_mut() {
            r.registered(&object).map_err(|_| Status::ServerError)?;
        }
        if !self.store.add_workstation(object) {
            return Err(Status::ServerError);
        }
        Ok(true)
    }

    /// Resolve the menu entries (issue 15): the object's, else its
    /// workstation policy's, else the server policy's — the first level
    /// that has entries gives them, with its default and timeout.
    pub fn menu_entries(&self, ids: &[WorkstationId]) -> (MenuEntriesRef<'_>, MenuSource) {
        let obj = self.object(ids);
        let pol = obj
            .and_then(|o| o.policy.as_deref())
            .and_then(|n| self.store.workstation_policy(n));
        fn of(m: &MenuEntries) -> MenuEntriesRef<'_> {
            MenuEntriesRef {
                entries: &m.entries,
                default: m.default,
                timeout_ms: m.timeout_ms,
            }
        }
        if let Some(m) = obj
            .and_then(|o| o.menu_entries.as_ref())
            .filter(|m| !m.entries.is_empty())
        {
            return (of(m), MenuSource::Object);
        }
        if let Some(m) = pol
            .and_then(|p| p.menu_entries.as_ref())
            .filter(|m| !m.entries.is_empty())
        {
            return (of(m), MenuSource::WorkstationPolicy);
        }
        let server = self.store.server_policy();
        let source = if server.menu_entries.is_empty() {
            MenuSource::Default
        } else {
            MenuSource::ServerPolicy
        };
        (
            MenuEntriesRef {
                entries: &server.menu_entries,
                default: server.menu_default,
                timeout_ms: server.menu_timeout_ms,
            },
            source,
        )
    }
}
