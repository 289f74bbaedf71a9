//! `TaskReply` TLV 4, `Multicast` (docs/transaction-protocol.md §4.5.1):
//! what a member and the master of a multicast session need to take
//! part, and whether the session has started.
//!
//! One per task that takes part in a session (a `JoinMulticast` of a
//! member, the `CreateImage` with target `multicast:<name>` of the
//! master), naming it by task id as `TaskToken` (TLV 3) does. A parser
//! that does not know TLV 4 skips it (§2.3, §9): an older client still
//! sees the `JoinMulticast` task.

use super::tlv::{Reader, Writer, str8_len};
use super::{EmitError, ParseError};
use core::net::Ipv4Addr;

/// The TLV type of [`MulticastInfo`] in a `TaskReply` (§4.5).
pub const MULTICAST_TLV: u8 = 4;

/// Bytes of the fixed part of the value (everything but the two
/// strings' bytes, their length bytes included).
pub const MULTICAST_FIXED_LEN: usize = 26;

/// The part a workstation plays in the session (§4.5.1 `role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MulticastRole {
    /// 0: receives the image.
    Member,
    /// 1: sends its disk (uploads it as `multicast:<session name>`).
    Master,
    /// A value this version does not know.
    Unknown(u8),
}

impl From<u8> for MulticastRole {
    fn from(v: u8) -> Self {
        match v {
            0 => MulticastRole::Member,
            1 => MulticastRole::Master,
            x => MulticastRole::Unknown(x),
        }
    }
}

impl From<MulticastRole> for u8 {
    fn from(v: MulticastRole) -> u8 {
        match v {
            MulticastRole::Member => 0,
            MulticastRole::Master => 1,
            MulticastRole::Unknown(x) => x,
        }
    }
}

/// Where the session is (§4.5.1 `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MulticastState {
    /// 0: not started yet: ask again (`TaskQuery`) after `poll_secs`.
    Waiting,
    /// 1: started: this run's members and master take part now.
    Started,
    /// A value this version does not know (treat as waiting).
    Unknown(u8),
}

impl From<u8> for MulticastState {
    fn from(v: u8) -> Self {
        match v {
            0 => MulticastState::Waiting,
            1 => MulticastState::Started,
            x => MulticastState::Unknown(x),
        }
    }
}

impl From<MulticastState> for u8 {
    fn from(v: MulticastState) -> u8 {
        match v {
            MulticastState::Waiting => 0,
            MulticastState::Started => 1,
            MulticastState::Unknown(x) => x,
        }
    }
}

/// `TaskReply` TLV 4 (§4.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MulticastInfo<'a> {
    /// The task it belongs to (a `JoinMulticast`, or the master's
    /// `CreateImage`).
    pub task_id: u32,
    /// Member or master.
    pub role: MulticastRole,
    /// Waiting or started.
    pub state: MulticastState,
    /// The run of the session this workstation takes part in (1, 2, …).
    pub run: u32,
    /// Workstations joined to that run so far (master not counted).
    pub joined: u16,
    /// While waiting: ask again after this many seconds (0 once started).
    pub poll_secs: u16,
    /// The image server.
    pub server: Ipv4Addr,
    /// The multicast group of the image stream.
    pub group: Ipv4Addr,
    /// Its UDP port.
    pub port: u16,
    /// The session name (≤ 255 bytes).
    pub session: &'a str,
    /// The image sent: its path on the image server, or
    /// `multicast:<session name>` when a master workstation sends its disk
    /// (≤ 255 bytes).
    pub image: &'a str,
}

impl<'a> MulticastInfo<'a> {
    /// Parse the value of TLV 4: every byte read, strings UTF-8.
    pub fn parse(v: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(v, MULTICAST_TLV);
        let m = MulticastInfo {
            task_id: r.u32()?,
            role: r.u8()?.into(),
            state: r.u8()?.into(),
            run: r.u32()?,
            joined: r.u16()?,
            poll_secs: r.u16()?,
            server: r.ipv4()?,
            group: r.ipv4()?,
            port: r.u16()?,
            session: r.str8()?,
            image: r.str8()?,
        };
        r.finish()?;
        Ok(m)
    }

    /// Length of the value.
    pub fn value_len(&self) -> usize {
        MULTICAST_FIXED_LEN - 2 + str8_len(self.session) + str8_len(self.image)
    }

    /// Write the whole TLV (header and value).
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.tlv_header(MULTICAST_TLV, self.value_len())?;
        w.u32(self.task_id)?;
        w.u8(self.role.into())?;
        w.u8(self.state.into())?;
        w.u32(self.run)?;
        w.u16(self.joined)?;
        w.u16(self.poll_secs)?;
        w.put(&self.server.octets())?;
        w.put(&self.group.octets())?;
        w.u16(self.port)?;
        w.str8(self.session, MULTICAST_TLV)?;
        w.str8(self.image, MULTICAST_TLV)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MulticastInfo<'static> {
        MulticastInfo {
            task_id: 7,
            role: MulticastRole::Master,
            state: MulticastState::Waiting,
            run: 2,
            joined: 3,
            poll_secs: 30,
            server: Ipv4Addr::new(10, 0, 0, 1),
            group: Ipv4Addr::new(239, 1, 2, 3),
            port: 5000,
            session: "room",
            image: "multicast:room",
        }
    }

    /// §4.5.1: the layout, byte for byte, and back.
    #[test]
    fn layout_and_round_trip() {
        let m = sample();
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        m.emit(&mut w).unwrap();
        let n = w.position();
        assert_eq!(n, 3 + m.value_len());
        assert_eq!(m.value_len(), 26 + 4 + 14);
        let expect_head = [
            4, 0, 44, // TLV 4, length 44
            0, 0, 0, 7, // task id
            1, 0, // master, waiting
            0, 0, 0, 2, // run
            0, 3, 0, 30, // joined, poll
            10, 0, 0, 1, 239, 1, 2, 3, 0x13, 0x88, // server, group, port
            4, b'r', b'o', b'o', b'm',
        ];
        assert_eq!(&buf[..expect_head.len()], &expect_head);
        assert_eq!(MulticastInfo::parse(&buf[3..n]), Ok(m));
    }

    /// §2.3: a value one byte short or long, or with a bad string, is
    /// refused; unknown role and state values are kept.
    #[test]
    fn refuses_wrong_lengths_keeps_unknown_values() {
        let m = sample();
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        m.emit(&mut w).unwrap();
        let n = w.position();
        let v = &buf[3..n];
        assert!(MulticastInfo::parse(&v[..v.len() - 1]).is_err());
        let mut long = [0u8; 64];
        long[..v.len()].copy_from_slice(v);
        assert!(MulticastInfo::parse(&long[..v.len() + 1]).is_err());
        let mut bad = long;
        bad[27] = 0xff; // inside the session name
        assert!(MulticastInfo::parse(&bad[..v.len()]).is_err());
        let mut odd = long;
        odd[4] = 9;
        odd[5] = 7;
        let odd = &odd[..v.len()];
        let p = MulticastInfo::parse(odd).unwrap();
        assert_eq!(
            (p.role, p.state),
            (MulticastRole::Unknown(9), MulticastState::Unknown(7))
        );
    }
}
