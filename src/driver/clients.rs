//! Which client is behind an IPv4 address, so that the TFTP log lines of a
//! boot carry the same `mac` and `arch` as its DHCP lines.
//!
//! The DHCP driver records what each client message says: the source
//! address (4011 requests and renewals come from the client's address),
//! else `ciaddr`, else the address a REQUEST asks for (option 50, RFC 2132
//! §9.1) — with the client's hardware address (`chaddr`) and architecture
//! (option 93, RFC 4578 §2.1). The TFTP driver looks the peer up when it
//! logs. Bounded: past [`ClientDirectory::CAPACITY`] addresses the oldest
//! record goes.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use preboot::dhcp::{BootArch, HwAddr};
//! use preboot::driver::clients::ClientDirectory;
//!
//! let dir = ClientDirectory::new();
//! let ip = Ipv4Addr::new(10, 0, 0, 5);
//! dir.record(ip, HwAddr::new(&[0x52, 0x54, 0, 1, 2, 3]), Some(BootArch::UefiX64));
//! let c = dir.lookup(ip).unwrap();
//! assert_eq!(c.mac.to_string(), "52:54:00:01:02:03");
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use crate::dhcp::{BootArch, HwAddr};

/// What is known about the client at an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its hardware address.
    pub mac: HwAddr,
    /// Its architecture, if it said.
    pub arch: Option<BootArch>,
}

#[derive(Debug, Default)]
struct Inner {
    by_ip: HashMap<Ipv4Addr, ClientInfo>,
    order: VecDeque<Ipv4Addr>,
}

/// A shared, bounded map from client address to [`ClientInfo`]. Clones
/// share the same map; two directories are equal when they are the same
/// map.
#[derive(Clone, Debug, Default)]
pub struct ClientDirectory(Arc<Mutex<Inner>>);

impl PartialEq for ClientDirectory {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ClientDirectory {}

impl ClientDirectory {
    /// Most addresses remembered.
    pub const CAPACITY: usize = 4096;

    /// An empty directory.
    pub fn new() -> Self {
        ClientDirectory::default()
    }

    /// Remember that `mac` (architecture `arch`) is at `ip`. An unknown
    /// architecture keeps the one recorded before for the same client.
    pub fn record(&self, ip: Ipv4Addr, mac: HwAddr, arch: Option<BootArch>) {
        if ip.is_unspecified() || ip.is_broadcast() {
            return;
        }
        let Ok(mut inner) = self.0.lock() else {
            return;
        };
        let arch = arch.or_else(|| {
            inner
                .by_ip
                .get(&ip)
                .filter(|c| c.mac == mac)
                .and_then(|c| c.arch)
        });
        if inner.by_ip.insert(ip, ClientInfo { mac, arch }).is_none() {
            inner.order.push_back(ip);
            while inner.order.len() > Self::CAPACITY {
                if let Some(old) = inner.order.pop_front() {
                    inner.by_ip.remove(&old);
                }
            }
        }
    }

    /// The client last seen at `ip`.
    pub fn lookup(&self, ip: Ipv4Addr) -> Option<ClientInfo> {
        self.0.lock().ok()?.by_ip.get(&ip).copied()
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |i| i.by_ip.len())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_oldest_goes_first() {
        let d = ClientDirectory::new();
        let mac = HwAddr::new(&[2, 0, 0, 0, 0, 1]);
        for i in 0..(ClientDirectory::CAPACITY as u32 + 10) {
            d.record(Ipv4Addr::from(0x0a00_0000 + i), mac, None);
        }
        assert_eq!(d.len(), ClientDirectory::CAPACITY);
        assert_eq!(d.lookup(Ipv4Addr::from(0x0a00_0000)), None);
        assert!(d.lookup(Ipv4Addr::from(0x0a00_0000 + 10)).is_some());
    }

    #[test]
    fn unknown_arch_keeps_the_known_one_for_the_same_mac() {
        let d = ClientDirectory::new();
        let ip = Ipv4Addr::new(10, 0, 0, 7);
        let a = HwAddr::new(&[2, 0, 0, 0, 0, 1]);
        let b = HwAddr::new(&[2, 0, 0, 0, 0, 2]);
        d.record(ip, a, Some(BootArch::Bios));
        d.record(ip, a, None);
        assert_eq!(d.lookup(ip).unwrap().arch, Some(BootArch::Bios));
        d.record(ip, b, None);
        assert_eq!(d.lookup(ip), Some(ClientInfo { mac: b, arch: None }));
        d.record(Ipv4Addr::UNSPECIFIED, a, None);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn clones_share_and_compare_by_identity() {
        let d = ClientDirectory::new();
        let e = d.clone();
        e.record(Ipv4Addr::new(1, 2, 3, 4), HwAddr::new(&[1; 6]), None);
        assert!(d.lookup(Ipv4Addr::new(1, 2, 3, 4)).is_some());
        assert_eq!(d, e);
        assert_ne!(d, ClientDirectory::new());
    }
}
