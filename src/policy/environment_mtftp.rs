//! The imaging environment by PXE MTFTP (docs/transaction-protocol.md
//! §4.5.2, issue 16): the channels the boot server runs for its files
//! (`[[mtftp.file]]`), by file name, and the `TaskReply` TLV 6 entries
//! they give for an `Environment` whose `fetch` is MTFTP.
//!
//! The policy layer holds no sockets: the boot server hands the channels
//! over ([`super::ImagingProxy::set_mtftp_channels`]) from its
//! configuration.

use crate::mtftp::Channel;
use crate::wire::transaction::environment_multicast::{EnvironmentFile, EnvironmentMulticast};
use crate::wire::transaction::messages::{Environment, Fetch};
use alloc::collections::BTreeMap;
use alloc::string::String;
use heapless::Vec;

/// MTFTP channels by file name (the name clients ask for).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MtftpChannels(pub BTreeMap<String, Channel>);

impl MtftpChannels {
    /// TLV 6 for each file of `env` that has a channel, when `env` asks
    /// for MTFTP; none otherwise (the client fetches by TFTP).
    pub fn for_environment(&self, env: &Environment<'_>) -> Vec<EnvironmentMulticast, 3> {
        let mut out = Vec::new();
        if env.fetch != Fetch::Mtftp {
            return out;
        }
        let files = [
            (EnvironmentFile::Kernel, env.kernel),
            (EnvironmentFile::Initrd, env.initrd),
            (EnvironmentFile::Loader, env.loader),
        ];
        for (file, name) in files {
            let Some(c) = (!name.is_empty()).then(|| self.0.get(name)).flatten() else {
                continue;
            };
            let secs = |d: core::time::Duration| u8::try_from(d.as_secs()).unwrap_or(u8::MAX);
            // Three files, three places: never full.
            let _ = out.push(EnvironmentMulticast {
                file,
                server: *c.server.ip(),
                group: *c.group.ip(),
                client_port: c.group.port(),
                server_port: c.server.port(),
                listen_secs: secs(c.listen),
                delay_secs: secs(c.delay),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, SocketAddrV4};
    use core::time::Duration;

    /// §4.5.2: one TLV 6 per environment file with a channel, in file
    /// order; none when the environment asks for TFTP.
    #[test]
    fn channels_for_the_environment_files() {
        let channel = Channel {
            group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 1, 2), 3001),
            server: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1759),
            listen: Duration::from_secs(2),
            delay: Duration::from_secs(300),
        };
        let mut m = MtftpChannels::default();
        m.0.insert("imaging/initrd".into(), channel);
        let mut env = Environment {
            fetch: Fetch::Mtftp,
            kernel: "imaging/linux",
            initrd: "imaging/initrd",
            loader: "",
        };
        let got = m.for_environment(&env);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0],
            EnvironmentMulticast {
                file: EnvironmentFile::Initrd,
                server: Ipv4Addr::new(10, 0, 0, 1),
                group: Ipv4Addr::new(239, 255, 1, 2),
                client_port: 3001,
                server_port: 1759,
                listen_secs: 2,
                delay_secs: 255,
            }
        );
        env.fetch = Fetch::Tftp;
        assert!(m.for_environment(&env).is_empty());
    }
}
