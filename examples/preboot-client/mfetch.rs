//! Steps 4 and 18 of the boot (DESIGN.md) by PXE MTFTP (PXE 2.1 §2.5,
//! issue 16): when the server advertised a channel for the file (option
//! 43 sub-options 1–5 in its DHCP answer for the boot file,
//! `TaskReply` TLV 6 for the imaging environment's, transaction protocol
//! §4.5.2), the file comes by multicast on the loop of
//! [`preboot::driver::mtftp::fetch`] ([`crate::mtftp_fetch`]: with
//! receive buffers for many workstations in one process); when the MTFTP
//! client falls back (nobody answered, the server refused) or its sockets
//! cannot be set up, the file comes by plain TFTP
//! ([`crate::fetch::tftp`]). Which way it came is returned, for the log.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use preboot::driver::mtftp::{FetchError, FetchOutcome};
use preboot::fs::VecSink;
use preboot::mtftp::client::{ClientConfig as MtftpConfig, FallBackReason};
use preboot::mtftp::{Channel, MAX_FILE_SIZE};
use preboot::tftp::client::ClientConfig as TftpConfig;
use preboot::wire::transaction::environment_multicast::{EnvironmentFile, EnvironmentMulticast};
use sha2::{Digest, Sha256};

use crate::fetch::{self, Fetched};
use crate::mtftp_fetch::fetch;

/// How a file came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Way {
    /// By MTFTP: the opens this client made (0: it only listened) and
    /// whether it was the master client of a stream.
    Mtftp {
        /// Opens made.
        opens: u16,
        /// Master at some point.
        master: bool,
    },
    /// By TFTP: no channel was advertised.
    Tftp,
    /// By TFTP after MTFTP gave up, and why.
    FallBack(String),
}

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Way::Mtftp { opens, master } => write!(
                f,
                "by MTFTP ({opens} opens{})",
                if *master { ", master" } else { ", listener" }
            ),
            Way::Tftp => f.write_str("by TFTP"),
            Way::FallBack(why) => write!(f, "by TFTP (MTFTP fell back: {why})"),
        }
    }
}

/// The channel TLV 6 (docs/transaction-protocol.md §4.5.2) gives for
/// `file` of the imaging environment, if any.
pub fn channel(list: &[EnvironmentMulticast], file: EnvironmentFile) -> Option<Channel> {
    list.iter().find(|m| m.file == file).map(|m| Channel {
        group: SocketAddrV4::new(m.group, m.client_port),
        server: SocketAddrV4::new(m.server, m.server_port),
        listen: Duration::from_secs(u64::from(m.listen_secs)),
        delay: Duration::from_secs(u64::from(m.delay_secs)),
    })
}

/// Fetch `name`: by MTFTP on `channel` from the client address `local`
/// when there is a channel, else (or as the fallback) by TFTP from
/// `tftp_server`. Written to `out` when given; `limit` bounds the MTFTP
/// fetch as a whole and the TFTP fetch's silence.
pub fn file(
    local: Ipv4Addr,
    channel: Option<Channel>,
    tftp_server: SocketAddrV4,
    name: &str,
    out: Option<&Path>,
    tftp: TftpConfig,
    limit: Duration,
) -> Result<(Fetched, Way), String> {
    let Some(channel) = channel else {
        let f = fetch::tftp(local, tftp_server, name, out, tftp, limit)?;
        return Ok((f, Way::Tftp));
    };
    let sink = VecSink {
        limit: Some(MAX_FILE_SIZE),
        ..VecSink::default()
    };
    let why = match fetch(
        channel,
        local,
        name.as_bytes(),
        MtftpConfig::new(channel),
        sink,
        limit,
    ) {
        Ok((
            FetchOutcome::Completed {
                bytes,
                opens,
                master,
                duration,
            },
            sink,
        )) => {
            if let Some(p) = out {
                std::fs::write(p, &sink.data).map_err(|e| format!("{}: {e}", p.display()))?;
            }
            let f = Fetched {
                bytes,
                sha256: Sha256::digest(&sink.data).into(),
                duration,
            };
            return Ok((f, Way::Mtftp { opens, master }));
        }
        Ok((FetchOutcome::FallBack(reason), _)) => match reason {
            FallBackReason::NoAnswer => "no answer".to_string(),
            FallBackReason::PeerError(code) => format!("the server refused: {code:?}"),
            other => format!("{other:?}"),
        },
        // No group on this host (no multicast route, the address is
        // gone): TFTP still works.
        Err(FetchError::Io(e)) => format!("socket: {e}"),
        Err(e) => return Err(format!("MTFTP {name} on {}: {e}", channel.group)),
    };
    tracing::info!(file = name, group = %channel.group, "MTFTP fell back ({why}): TFTP");
    let f = fetch::tftp(local, tftp_server, name, out, tftp, limit)?;
    Ok((f, Way::FallBack(why)))
}
