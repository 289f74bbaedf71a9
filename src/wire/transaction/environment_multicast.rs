//! `TaskReply` TLV 6, `EnvironmentMulticast`
//! (docs/transaction-protocol.md §4.5.2): where one file of the imaging
//! environment runs by PXE MTFTP (PXE 2.1 §2.5) when the `Environment`
//! (TLV 2) says `fetch = MTFTP`: the group, the client and server ports,
//! the MTFTP server and the listen and re-open delays — what option 43
//! sub-options 1–5 say for the boot file (issue 16).
//!
//! At most one per file (kernel, initrd, loader): three per reply. A file
//! without one is fetched by TFTP; a parser that does not know TLV 6 skips
//! it (§2.3, §9) and fetches every file by TFTP.

use super::tlv::{Reader, Writer};
use super::{EmitError, ParseError};
use core::net::Ipv4Addr;

/// The TLV type of [`EnvironmentMulticast`] in a `TaskReply` (§4.5).
pub const ENVIRONMENT_MULTICAST_TLV: u8 = 6;

/// Bytes of the value (fixed).
pub const ENVIRONMENT_MULTICAST_LEN: usize = 15;

/// Which file of the `Environment` (TLV 2) a channel is for (§4.5.2
/// `file`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvironmentFile {
    /// 0: the kernel.
    Kernel,
    /// 1: the initrd.
    Initrd,
    /// 2: the loader.
    Loader,
    /// A value this version does not know (ignore the channel).
    Unknown(u8),
}

impl From<u8> for EnvironmentFile {
    fn from(v: u8) -> Self {
        match v {
            0 => EnvironmentFile::Kernel,
            1 => EnvironmentFile::Initrd,
            2 => EnvironmentFile::Loader,
            x => EnvironmentFile::Unknown(x),
        }
    }
}

impl From<EnvironmentFile> for u8 {
    fn from(v: EnvironmentFile) -> u8 {
        match v {
            EnvironmentFile::Kernel => 0,
            EnvironmentFile::Initrd => 1,
            EnvironmentFile::Loader => 2,
            EnvironmentFile::Unknown(x) => x,
        }
    }
}

/// One file's MTFTP channel (§4.5.2).
///
/// Value: file u8 ‖ server IPv4 (4) ‖ group IPv4 (4) ‖ client port u16 ‖
/// server port u16 ‖ listen secs u8 ‖ delay secs u8: 15 bytes, network
/// byte order (unlike option 43's little-endian ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvironmentMulticast {
    /// The file of TLV 2 it is for.
    pub file: EnvironmentFile,
    /// The MTFTP server (where requests go).
    pub server: Ipv4Addr,
    /// PXE_MTFTP_IP: the group the file's DATA goes to.
    pub group: Ipv4Addr,
    /// PXE_MTFTP_CPORT.
    pub client_port: u16,
    /// PXE_MTFTP_SPORT.
    pub server_port: u16,
    /// PXE_MTFTP_TMOUT: seconds to listen before the first open.
    pub listen_secs: u8,
    /// PXE_MTFTP_DELAY: seconds of silence before a re-open.
    pub delay_secs: u8,
}

impl EnvironmentMulticast {
    /// Parse the value of TLV 6 (exactly 15 bytes).
    pub fn parse(v: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(v, ENVIRONMENT_MULTICAST_TLV);
        let m = EnvironmentMulticast {
            file: r.u8()?.into(),
            server: r.ipv4()?,
            group: r.ipv4()?,
            client_port: r.u16()?,
            server_port: r.u16()?,
            listen_secs: r.u8()?,
            delay_secs: r.u8()?,
        };
        r.finish()?;
        Ok(m)
    }

    /// Write TLV 6 (header and value).
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.tlv_header(ENVIRONMENT_MULTICAST_TLV, ENVIRONMENT_MULTICAST_LEN)?;
        w.u8(self.file.into())?;
        w.put(&self.server.octets())?;
        w.put(&self.group.octets())?;
        w.u16(self.client_port)?;
        w.u16(self.server_port)?;
        w.u8(self.listen_secs)?;
        w.u8(self.delay_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::transaction::Payload;
    use crate::wire::transaction::messages::TaskReply;

    fn sample(file: u8) -> EnvironmentMulticast {
        EnvironmentMulticast {
            file: file.into(),
            server: Ipv4Addr::new(10, 0, 0, 1),
            group: Ipv4Addr::new(239, 255, 1, file),
            client_port: 3001,
            server_port: 1759,
            listen_secs: 2,
            delay_secs: 5,
        }
    }

    /// §4.5.2: the value's layout, byte for byte, big-endian ports.
    #[test]
    fn layout() {
        let mut buf = [0u8; 18];
        let mut w = Writer::new(&mut buf);
        sample(1).emit(&mut w).unwrap();
        assert_eq!(
            buf,
            [
                6, 0, 15, 1, 10, 0, 0, 1, 239, 255, 1, 1, 0x0b, 0xb9, 0x06, 0xdf, 2, 5
            ]
        );
        assert_eq!(EnvironmentMulticast::parse(&buf[3..]).unwrap(), sample(1));
    }

    /// §4.5.2: any length but 15 is refused; §8: at most 3 per reply.
    #[test]
    fn bad_lengths_and_too_many() {
        for len in [0usize, 14, 16] {
            assert!(
                EnvironmentMulticast::parse(&[0u8; 16][..len]).is_err(),
                "{len}"
            );
        }
        let mut t = TaskReply::default();
        for f in 0..3 {
            t.environment_multicast.push(sample(f)).unwrap();
        }
        let mut buf = [0u8; 80];
        let n = t.buffer_len();
        t.emit(&mut buf[..n]).unwrap();
        assert_eq!(TaskReply::parse(&buf[..n]).unwrap(), t);
        // A fourth TLV 6.
        buf.copy_within(0..18, n);
        assert_eq!(
            TaskReply::parse(&buf[..n + 18]),
            Err(ParseError::TooMany {
                field: ENVIRONMENT_MULTICAST_TLV
            })
        );
    }
}
