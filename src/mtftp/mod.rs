//! PXE MTFTP (multicast TFTP, Intel PXE 2.1, as Intel's reference client
//! implements it: EDK1 `pxe_bc_mtftp.c` `MtftpListen`/`MtftpOpen`/
//! `MtftpDownload`; also atftp's `tftpd_mtftp.c` and iPXE's `tftp.c`):
//! sans-IO server and client engines on the TFTP wire layer
//! ([`crate::wire::tftp`]) and the common [engine contract](crate::engine).
//! The rules below are numbered as in the project's notes on PXE MTFTP
//! (`pxe-and-zenworks-facts.md` §2.5, items 1–10), which tests cite.
//!
//! Each multicast-served file has its own group address and client port
//! (CPORT) and the server one request port (SPORT); the boot server
//! advertises them with the listen and re-open delays (MTFTP_TMOUT,
//! MTFTP_DELAY) in DHCP option 43 sub-options 1–5 (PXE 2.1 §2.4.5;
//! [`crate::dhcp::config::MtftpParams`]).
//!
//! - [`server::Server`]: answers a plain RFC 1350 read request (no
//!   options, 512-byte blocks) on SPORT with DATA block 1 unicast to the
//!   opener — who becomes the *master client* — and to the group; later
//!   blocks go to the group only, in lock-step with the master's ACKs. A
//!   request for a file already being sent gets no second stream; a
//!   silent master stops the stream.
//! - [`client::Client`]: the PXE client's state machine — listen on the
//!   group for MTFTP_TMOUT, collect blocks in any order, open when silent,
//!   ACK only as master, re-open after MTFTP_DELAY for what it lacks, and
//!   report "fall back to plain TFTP" when it hears nothing at all.
//!
//! Not supported: RFC 2090's `multicast` option (an OACK that assigns the
//! group and names the master). A request carrying it is answered as PXE
//! MTFTP — options are ignored, as RFC 2347 §5 lets a server do — so an
//! RFC 2090 client sees a server without the option and reads by unicast
//! lock-step. Also no block-number rollover: MTFTP has none (PXE 2.1; atftp
//! refuses such files, EDK1 marks it "TBD"), so a file must fit in
//! [`MAX_BLOCKS`] blocks of [`BLKSIZE`] bytes ([`check_size`]).

pub mod client;
pub mod server;

mod bitmap;

use core::time::Duration;

/// Data bytes per block: MTFTP opens with no options (PXE 2.1 MTFTP
/// open), so the RFC 1350 size applies.
pub const BLKSIZE: u16 = crate::wire::tftp::DEFAULT_BLKSIZE;

/// Most blocks a file may have: block numbers are 16 bits and never wrap
/// in MTFTP.
pub const MAX_BLOCKS: u16 = u16::MAX;

/// Largest file MTFTP can carry: 65,535 blocks, the last one shorter than
/// [`BLKSIZE`] (a file of exactly 65,535 full blocks would need an empty
/// block 65,536), i.e. 33,553,919 bytes.
pub const MAX_FILE_SIZE: u64 = MAX_BLOCKS as u64 * BLKSIZE as u64 - 1;

/// A file has more than [`MAX_BLOCKS`] blocks: it cannot be sent by MTFTP
/// (serve it by TFTP with a larger `blksize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "file of {size} bytes is too large for MTFTP: at most {max} bytes (65535 blocks of 512, no block-number rollover)",
    max = MAX_FILE_SIZE
)]
pub struct FileTooLarge {
    /// The file's size in bytes.
    pub size: u64,
}

/// The number of blocks a file of `size` bytes takes (the last one short,
/// possibly empty: RFC 1350 §6), or [`FileTooLarge`] beyond 65,535 blocks.
/// The server checks it when a stream opens; a configuration layer calls
/// it at start for every MTFTP file.
pub fn check_size(size: u64) -> Result<u16, FileTooLarge> {
    let blocks = size / u64::from(BLKSIZE) + 1;
    u16::try_from(blocks).map_err(|_| FileTooLarge { size })
}

/// The five MTFTP parameters of one file (option 43 sub-options 1–5):
/// where its stream runs and how long clients wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// PXE_MTFTP_IP and PXE_MTFTP_CPORT: the group and the client port
    /// the file's DATA goes to.
    pub group: core::net::SocketAddrV4,
    /// PXE_MTFTP_SPORT with the server's address: where requests go.
    pub server: core::net::SocketAddrV4,
    /// PXE_MTFTP_TMOUT: how long a client listens before its first open.
    pub listen: Duration,
    /// PXE_MTFTP_DELAY: how long a client waits in silence before it
    /// re-opens.
    pub delay: Duration,
}

impl Channel {
    /// The channel a proxy offer advertises: `server` is the MTFTP
    /// server's address (the boot server), the rest comes from option 43
    /// sub-options 1–5.
    pub fn from_params(server: core::net::Ipv4Addr, p: &crate::dhcp::config::MtftpParams) -> Self {
        Channel {
            group: core::net::SocketAddrV4::new(p.ip, p.client_port),
            server: core::net::SocketAddrV4::new(server, p.server_port),
            listen: Duration::from_secs(u64::from(p.timeout_secs)),
            delay: Duration::from_secs(u64::from(p.delay_secs)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PXE 2.1 MTFTP: no rollover, so 65,535 blocks at most.
    #[test]
    fn size_limit_is_65535_blocks() {
        assert_eq!(check_size(0), Ok(1));
        assert_eq!(check_size(511), Ok(1));
        assert_eq!(check_size(512), Ok(2));
        assert_eq!(check_size(MAX_FILE_SIZE), Ok(65535));
        assert_eq!(
            check_size(MAX_FILE_SIZE + 1),
            Err(FileTooLarge {
                size: MAX_FILE_SIZE + 1
            })
        );
        assert!(check_size(u64::MAX).is_err());
    }
}
