//! What the server engine needs from a received message, copied out of the
//! wire view once so that answering needs no second parse.

use core::net::Ipv4Addr;

use heapless::Vec;

use super::HwAddr;
use super::arch::{BootArch, ClientKind};
use super::leases::ClientKey;
use crate::wire::dhcp::MessageType;

/// The fields of a client message the server uses.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub htype: u8,
    pub chaddr: [u8; 16],
    pub hlen: u8,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub msg_type: MessageType,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61 or htype+chaddr.
    pub client: ClientKey,
    /// Rate-limit key of the whole option 61, when sent.
    pub client_id_key: Option<u64>,
    /// Option 60 class.
    pub kind: ClientKind,
    /// Option 93 (first) or option 60's arch.
    pub arch: Option<BootArch>,
    /// Option 77 `iPXE` or option 175 present.
    pub is_ipxe: bool,
    /// Option 97 as received (echoed).
    pub uuid: Vec<u8, 17>,
    /// Option 82 as received (echoed, RFC 3046 §2.2).
    pub relay_info: Vec<u8, 255>,
    /// Option 43 sub-option 71 (type, layer).
    pub boot_item: Option<(u16, u16)>,
}

impl Request {
    pub(crate) fn hw(&self) -> HwAddr {
        HwAddr::new(&self.chaddr[..usize::from(self.hlen.min(16))])
    }
}

/// Read a client message (BOOTREQUEST with a DHCP message type) from a
/// datagram; `None` for anything else.
pub(crate) fn parse(datagram: &[u8]) -> Option<Request> {
    use crate::wire::dhcp::{BOOTREQUEST, DhcpPacket, code};
    use crate::wire::pxe::{PxeOption, PxeOptions};

    let p = DhcpPacket::new_checked(datagram).ok()?;
    if p.op() != BOOTREQUEST {
        return None;
    }
    // One pass over the options (RFC 3396 long options arrive joined).
    let mut msg_type = None;
    let mut requested_ip = None;
    let mut server_id = None;
    let mut client_id_data = None;
    let mut vendor_data = None;
    let mut arch93 = None;
    let mut ipxe_encapsulated = false;
    let mut user_class_data = None;
    let mut uuid_data = None;
    let mut relay_data = None;
    let mut vendor_specific = None;
    let ip = |d: crate::wire::dhcp::OptionData<'_>| {
        Some(d)
            .filter(|d| d.len() == 4)
            .and_then(|d| d.array::<4>(0))
            .map(Ipv4Addr::from)
    };
    for o in p.raw_options() {
        match o.code {
            code::MESSAGE_TYPE => msg_type = o.data.get(0),
            code::REQUESTED_IP_ADDRESS => requested_ip = ip(o.data),
            code::SERVER_IDENTIFIER => server_id = ip(o.data),
            code::CLIENT_IDENTIFIER => client_id_data = Some(o.data),
            code::VENDOR_CLASS_IDENTIFIER => vendor_data = Some(o.data),
            code::CLIENT_SYSTEM_ARCHITECTURE => {
                arch93 = o.data.array::<2>(0).map(u16::from_be_bytes);
            }
            code::IPXE_ENCAPSULATED => ipxe_encapsulated = true,
            code::USER_CLASS => user_class_data = Some(o.data),
            code::CLIENT_MACHINE_IDENTIFIER => uuid_data = Some(o.data),
            code::RELAY_AGENT_INFORMATION => relay_data = Some(o.data),
            code::VENDOR_SPECIFIC => vendor_specific = Some(o.data),
            _ => {}
        }
    }
    let msg_type = MessageType::from(msg_type?);
    let mut scratch = [0u8; 255];
    let mut client_id_buf = [0u8; 255];
    let client_id = client_id_data.and_then(|d| {
        let n = d.copy_to(&mut client_id_buf).ok()?;
        Some(&client_id_buf[..n])
    });
    let hlen = p.hlen().min(16);
    let chaddr = *p.chaddr_field();
    let client = ClientKey::new(client_id, p.htype(), &chaddr[..usize::from(hlen)]);
    let client_id_key = client_id
        .filter(|id| !id.is_empty())
        .map(|id| super::rate::key(super::rate::KeyKind::ClientId, id));

    let vendor = vendor_data
        .and_then(|d| d.copy_to(&mut scratch).ok())
        .map(|n| &scratch[..n]);
    let kind = ClientKind::from_vendor_class(vendor);
    let arch = super::arch::classify(arch93, vendor);

    let mut user_class = [0u8; 255];
    let is_ipxe = ipxe_encapsulated
        || user_class_data
            .and_then(|d| d.copy_to(&mut user_class).ok())
            .is_some_and(|n| user_class[..n].windows(4).any(|w| w == b"iPXE"));

    let mut uuid = Vec::new();
    if let Some(d) = uuid_data {
        if d.len() <= 17 {
            let mut b = [0u8; 17];
            if let Ok(n) = d.copy_to(&mut b) {
                let _ = uuid.extend_from_slice(&b[..n]);
            }
        }
    }
    let mut relay_info = Vec::new();
    if let Some(d) = relay_data {
        let mut b = [0u8; 255];
        if let Ok(n) = d.copy_to(&mut b) {
            let _ = relay_info.extend_from_slice(&b[..n]);
        }
    }
    let boot_item = vendor_specific.and_then(|d| {
        PxeOptions::new(d).find_map(|o| match o {
            PxeOption::BootItem(b) => Some((
                b.item_type,
                b.layer | if b.credentials { 0x8000 } else { 0 },
            )),
            _ => None,
        })
    });
    Some(Request {
        htype: p.htype(),
        chaddr,
        hlen,
        xid: p.xid(),
        flags: p.flags(),
        ciaddr: p.ciaddr(),
        giaddr: p.giaddr(),
        msg_type,
        requested_ip,
        server_id,
        client,
        client_id_key,
        kind,
        arch,
        is_ipxe,
        uuid,
        relay_info,
        boot_item,
    })
}
