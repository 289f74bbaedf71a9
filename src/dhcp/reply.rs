//! Writing the engines' datagrams with the wire builders, and reading the
//! client's answers with the wire views.

use core::net::Ipv4Addr;
use core::time::Duration;

use heapless::{String, Vec};

use crate::wire::dhcp::{
    BOOTREPLY, BOOTREQUEST, DhcpHeader, DhcpOption, DhcpPacket, EmitError, List, MessageType,
    OptionData, code,
};
use crate::wire::pxe::{
    BootItem, BootMenuItem, BootServer, DiscoveryControl, Entries, MenuPrompt, MtftpPort,
    PromptTimeout, PxeOption, PxeOptions,
};

use super::Error;
use super::arch::ClientKind;
use super::client::{Answer, ClientConfig, Outgoing};
use super::config::{MenuPolicy, MtftpParams, ServerConfig, TransactionServer};
use super::server::{Pending, Pxe43, ReplyKind};

fn emit_err(e: EmitError) -> Error {
    match e {
        EmitError::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
        _ => Error::Encode,
    }
}

fn message_type(kind: ReplyKind) -> MessageType {
    match kind {
        ReplyKind::Offer | ReplyKind::ProxyOffer => MessageType::Offer,
        ReplyKind::Ack | ReplyKind::InformAck | ReplyKind::BootAck => MessageType::Ack,
        ReplyKind::Nak => MessageType::Nak,
    }
}

/// Write the option 43 payload of a proxy OFFER (PXE 2.1 §2.4.5) from the
/// menu policy: `Never` → discovery control bit 3 (boot the file in this
/// offer) when the answer carries a file, else none (a proxy OFFER: the
/// file comes from the 4011 ACK, PXE 2.1 §2.2.1); `Always` / `OnKeyPress`
/// → discovery control 3 (unicast to the listed boot servers), boot
/// servers (8), menu (9) and prompt (10, timeout 255 / seconds). MTFTP sub-options 1–5 only for a BIOS client whose file
/// is multicast (EDK2 discards offers carrying them).
///
/// `extra` (the transaction sub-options) goes after all of them.
fn proxy_offer_43(
    config: &ServerConfig,
    p: &Pending,
    extra: &[PxeOption<'_>],
    out: &mut [u8],
) -> Result<usize, EmitError> {
    let ids = [config.server_id];
    let mut servers: Vec<BootServer<'_>, { super::config::MAX_MENU_ITEMS }> = Vec::new();
    let mut items: Vec<BootMenuItem<'_>, { super::config::MAX_MENU_ITEMS }> = Vec::new();
    let mut opts: Vec<PxeOption<'_>, 14> = Vec::new();
    for o in mtftp_43(p) {
        let _ = opts.push(o);
    }
    let menu = &config.menu;
    let timeout = match menu.policy {
        MenuPolicy::Never => None,
        MenuPolicy::Always => Some(PromptTimeout::Forever),
        MenuPolicy::OnKeyPress { timeout_secs } => {
            Some(PromptTimeout::Seconds(timeout_secs.clamp(1, 254)))
        }
    };
    match timeout {
        None if p.file.is_none() => {}
        None => {
            let _ = opts.push(PxeOption::DiscoveryControl(DiscoveryControl(
                DiscoveryControl::DIRECT_BOOT,
            )));
        }
        Some(t) => {
            let _ = opts.push(PxeOption::DiscoveryControl(DiscoveryControl(
                DiscoveryControl::DISABLE_BROADCAST | DiscoveryControl::DISABLE_MULTICAST,
            )));
            for i in &menu.items {
                if i.server_type != 0 {
                    let _ = servers.push(BootServer {
                        server_type: i.server_type,
                        addrs: List::Items(&ids),
                    });
                }
                let _ = items.push(BootMenuItem {
                    server_type: i.server_type,
                    description: OptionData::from(i.description.as_bytes()),
                });
            }
            if !servers.is_empty() {
                let _ = opts.push(PxeOption::BootServers(Entries::Items(&servers)));
            }
            let _ = opts.push(PxeOption::BootMenu(Entries::Items(&items)));
            let _ = opts.push(PxeOption::MenuPrompt(MenuPrompt {
                timeout: t,
                prompt: OptionData::from(menu.prompt.as_bytes()),
            }));
        }
    }
    for o in extra {
        let _ = opts.push(*o);
    }
    PxeOptions::emit(&opts, out)
}

/// MTFTP sub-options 1–5 of the answer `p` (PXE 2.1 §2.4.5; ports
/// little-endian, notes §2.2): only for an architecture that takes them
/// (BIOS; EDK2 discards UEFI offers carrying them, notes §2.2) and a file
/// served by multicast.
fn mtftp_43(p: &Pending) -> impl Iterator<Item = PxeOption<'static>> + use<> {
    let m = p
        .mtftp
        .filter(|_| p.arch.is_some_and(super::BootArch::mtftp));
    m.into_iter().flat_map(|m| {
        [
            PxeOption::MtftpIp(m.ip),
            PxeOption::MtftpClientPort(MtftpPort(m.client_port)),
            PxeOption::MtftpServerPort(MtftpPort(m.server_port)),
            PxeOption::MtftpTimeout(m.timeout_secs),
            PxeOption::MtftpDelay(m.delay_secs),
        ]
    })
}

/// The most bytes of option 43 that firmware reads whole: one option
/// instance (RFC 2132 §2). EDK2's PxeBcParseDhcp4Packet takes the first
/// option 43 of a split one (RFC 3396) and walks its sub-options with an
/// 8-bit offset; older PXE ROMs know nothing of RFC 3396 at all.
const ONE_OPTION: usize = 255;

/// Write the option 43 payload of the answer `p` into `out`: the standard
/// sub-options [`Pxe43`] selects, then the transaction sub-options 128 and
/// 129 (vendor range; docs/transaction-protocol.md) when the server names
/// a transaction server and the client is a PXE client. The transaction
/// sub-options are left out rather than make option 43 longer than one
/// option ([`ONE_OPTION`]): the standard ones must reach the firmware
/// intact. `Ok(None)`: no option 43.
fn pxe_43(config: &ServerConfig, p: &Pending, out: &mut [u8]) -> Result<Option<usize>, EmitError> {
    let mut extra: Vec<PxeOption<'_>, 2> = Vec::new();
    if let (Some(t), Some(ClientKind::Pxe)) = (&config.transaction, p.pxe_class) {
        let _ = extra.push(PxeOption::TransactionServer(t.address));
        if let Some(k) = t.public_key {
            let _ = extra.push(PxeOption::TransactionServerKey(k));
        }
    }
    let write = |extra: &[PxeOption<'_>], out: &mut [u8]| -> Result<Option<usize>, EmitError> {
        match p.pxe43 {
            Pxe43::None if extra.is_empty() && mtftp_43(p).next().is_none() => Ok(None),
            Pxe43::Offer => proxy_offer_43(config, p, extra, out).map(Some),
            Pxe43::None | Pxe43::BootItem(..) => {
                // The boot server ACK: the boot item echoed, and the MTFTP
                // sub-options of the file it names (PXE 2.1 §2.4.5).
                let mut opts: Vec<PxeOption<'_>, 8> = Vec::new();
                if let Pxe43::BootItem(ty, layer) = p.pxe43 {
                    let _ = opts.push(PxeOption::BootItem(BootItem {
                        item_type: ty,
                        layer: layer & 0x7FFF,
                        credentials: layer & 0x8000 != 0,
                    }));
                }
                for o in mtftp_43(p) {
                    let _ = opts.push(o);
                }
                for o in extra {
                    let _ = opts.push(*o);
                }
                PxeOptions::emit(&opts, out).map(Some)
            }
        }
    };
    if !extra.is_empty() {
        if let Ok(Some(n)) = write(&extra, out) {
            if n <= ONE_OPTION {
                return Ok(Some(n));
            }
        }
    }
    write(&[], out)
}

/// Write the server's answer described by `p` into `buf`.
pub(crate) fn emit(config: &ServerConfig, p: &Pending, buf: &mut [u8]) -> Result<usize, Error> {
    let req = &p.req;
    let file = p.file.as_ref().map(|f| f.as_bytes()).unwrap_or(b"");
    let ciaddr = match p.kind {
        ReplyKind::Ack | ReplyKind::InformAck | ReplyKind::BootAck => req.ciaddr,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let header = DhcpHeader {
        op: BOOTREPLY,
        htype: req.htype,
        hlen: req.hlen,
        hops: 0,
        xid: req.xid,
        secs: 0,
        flags: req.flags,
        ciaddr,
        yiaddr: p.yiaddr,
        siaddr: p.siaddr,
        giaddr: req.giaddr,
        chaddr: req.chaddr,
        sname: b"",
        file,
    };
    let mut o43 = [0u8; 600];
    let mut opts: Vec<DhcpOption<'_>, 16> = Vec::new();
    let _ = opts.push(DhcpOption::MessageType(message_type(p.kind)));
    let _ = opts.push(DhcpOption::ServerIdentifier(config.server_id));
    let pool = p.pool.and_then(|i| config.pools.get(i));
    if p.kind != ReplyKind::Nak {
        if let Some(t) = p.lease_time {
            let secs = u32::try_from(t.as_secs()).unwrap_or(u32::MAX);
            let _ = opts.push(DhcpOption::IpAddressLeaseTime(secs));
            let _ = opts.push(DhcpOption::RenewalTime(secs / 2));
            let _ = opts.push(DhcpOption::RebindingTime(
                u32::try_from(u64::from(secs) * 7 / 8).unwrap_or(u32::MAX),
            ));
        }
        if let Some(pool) = pool {
            let _ = opts.push(DhcpOption::SubnetMask(pool.mask()));
            let _ = opts.push(DhcpOption::BroadcastAddress(pool.broadcast()));
            if let Some(r) = &pool.router {
                let _ = opts.push(DhcpOption::Router(List::Items(core::slice::from_ref(r))));
            }
            if !pool.dns.is_empty() {
                let _ = opts.push(DhcpOption::DomainNameServer(List::Items(&pool.dns)));
            }
        }
        if let Some(class) = p.pxe_class {
            let _ = opts.push(DhcpOption::VendorClassIdentifier(OptionData::from(
                class.answer_class(),
            )));
            if !req.uuid.is_empty() {
                let _ = opts.push(DhcpOption::decode(
                    code::CLIENT_MACHINE_IDENTIFIER,
                    OptionData::from(req.uuid.as_slice()),
                ));
            }
        }
    }
    let n43 = if p.kind == ReplyKind::Nak {
        None
    } else {
        pxe_43(config, p, &mut o43).map_err(emit_err)?
    };
    if let Some(n) = n43 {
        let _ = opts.push(DhcpOption::VendorSpecific(OptionData::from(&o43[..n])));
    }
    if !req.relay_info.is_empty() {
        // RFC 3046 §2.2: echoed unchanged.
        let _ = opts.push(DhcpOption::decode(
            code::RELAY_AGENT_INFORMATION,
            OptionData::from(req.relay_info.as_slice()),
        ));
    }
    header.emit(&opts, buf).map_err(emit_err)
}

/// Option 55 of the client: what a PXE client needs (PXE 2.1 §2.2.1).
const CLIENT_PARAMS: [u8; 13] = [1, 3, 6, 12, 15, 28, 43, 51, 54, 58, 59, 60, 66];

/// Write the client's next datagram.
pub(crate) fn emit_client(
    cfg: &ClientConfig,
    xid: u32,
    secs: u16,
    out: Outgoing,
    buf: &mut [u8],
) -> Result<usize, Error> {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&cfg.mac);
    let (mtype, ciaddr, flags) = match out {
        Outgoing::Discover => (MessageType::Discover, Ipv4Addr::UNSPECIFIED, 0x8000),
        Outgoing::Request { .. } => (MessageType::Request, Ipv4Addr::UNSPECIFIED, 0x8000),
        Outgoing::BootRequest { ciaddr, .. } => (MessageType::Request, ciaddr, 0),
    };
    let header = DhcpHeader {
        op: BOOTREQUEST,
        htype: 1,
        hlen: 6,
        hops: 0,
        xid,
        secs,
        flags,
        ciaddr,
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr,
        sname: b"",
        file: b"",
    };
    // "PXEClient:Arch:xxxxx:UNDI:yyyzzz" (PXE 2.1 §2.3.1).
    let mut vc: String<32> = String::new();
    {
        use core::fmt::Write;
        let _ = write!(
            vc,
            "PXEClient:Arch:{:05}:UNDI:{:03}{:03}",
            cfg.arch, cfg.ndi[1], cfg.ndi[2]
        );
    }
    let arch = cfg.arch.to_be_bytes();
    let mut uuid = [0u8; 17];
    uuid[1..].copy_from_slice(&cfg.uuid);
    let mut o43 = [0u8; 16];
    let mut opts: Vec<DhcpOption<'_>, 14> = Vec::new();
    let _ = opts.push(DhcpOption::MessageType(mtype));
    let _ = opts.push(DhcpOption::MaximumMessageSize(cfg.max_message_size));
    let _ = opts.push(DhcpOption::ParameterRequestList(OptionData::from(
        &CLIENT_PARAMS,
    )));
    let _ = opts.push(DhcpOption::VendorClassIdentifier(OptionData::from(
        vc.as_bytes(),
    )));
    let _ = opts.push(DhcpOption::decode(
        code::CLIENT_SYSTEM_ARCHITECTURE,
        OptionData::from(&arch),
    ));
    let _ = opts.push(DhcpOption::decode(
        code::CLIENT_NETWORK_INTERFACE,
        OptionData::from(&cfg.ndi),
    ));
    let _ = opts.push(DhcpOption::decode(
        code::CLIENT_MACHINE_IDENTIFIER,
        OptionData::from(&uuid),
    ));
    if let Outgoing::Request { server, requested } = out {
        let _ = opts.push(DhcpOption::RequestedIpAddress(requested));
        let _ = opts.push(DhcpOption::ServerIdentifier(server));
    }
    if let Outgoing::BootRequest {
        item: Some((ty, layer)),
        ..
    } = out
    {
        let item = PxeOption::BootItem(BootItem {
            item_type: ty,
            layer,
            credentials: false,
        });
        let n = PxeOptions::emit(&[item], &mut o43).map_err(emit_err)?;
        let _ = opts.push(DhcpOption::VendorSpecific(OptionData::from(&o43[..n])));
    }
    header.emit(&opts, buf).map_err(emit_err)
}

fn text<const N: usize>(d: OptionData<'_>) -> String<N> {
    let mut b = [0u8; 255];
    let n = d.copy_to(&mut b).unwrap_or(0).min(N);
    let mut s = String::new();
    for &c in &b[..n] {
        let _ = s.push(if c.is_ascii() && !c.is_ascii_control() {
            char::from(c)
        } else {
            '?'
        });
    }
    s
}

/// Read a server's answer addressed to `mac`.
pub(crate) fn parse_answer(datagram: &[u8], mac: &[u8; 6]) -> Option<Answer> {
    let p = DhcpPacket::new_checked(datagram).ok()?;
    if p.op() != BOOTREPLY || p.chaddr().get(..6)? != mac {
        return None;
    }
    let ip = |c: u8| {
        p.option(c)
            .filter(|d| d.len() >= 4)
            .and_then(|d| d.array::<4>(0))
            .map(Ipv4Addr::from)
    };
    let mut a = Answer {
        xid: p.xid(),
        msg_type: p.option(code::MESSAGE_TYPE)?.get(0)?,
        yiaddr: p.yiaddr(),
        siaddr: p.siaddr(),
        server_id: ip(code::SERVER_IDENTIFIER),
        pxe_class: p.option(code::VENDOR_CLASS_IDENTIFIER).is_some_and(|d| {
            let mut b = [0u8; 10];
            let n = d.len().min(10);
            d.slice(0, n).and_then(|s| s.copy_to(&mut b).ok()).is_some()
                && matches!(
                    ClientKind::from_vendor_class(Some(&b[..n])),
                    ClientKind::Pxe | ClientKind::Http
                )
        }),
        subnet_mask: ip(code::SUBNET_MASK),
        router: ip(code::ROUTER),
        lease_time: p
            .option(code::IP_ADDRESS_LEASE_TIME)
            .and_then(|d| d.array::<4>(0))
            .map(|b| Duration::from_secs(u64::from(u32::from_be_bytes(b)))),
        ..Answer::default()
    };
    let file = crate::wire::dhcp::trim_nul(p.file());
    a.file = if !file.is_empty() {
        text(OptionData::from(file))
    } else if let Some(d) = p.option(code::BOOTFILE_NAME) {
        let t: String<{ super::config::BOOT_FILE_LEN }> = text(d);
        let mut s = String::new();
        let _ = s.push_str(t.trim_end_matches('\0'));
        s
    } else {
        String::new()
    };
    if let Some(d) = p.option(code::VENDOR_SPECIFIC).filter(|_| a.pxe_class) {
        let mut m = MtftpParams {
            ip: Ipv4Addr::UNSPECIFIED,
            client_port: 0,
            server_port: 0,
            timeout_secs: 0,
            delay_secs: 0,
        };
        let mut has_mtftp = false;
        let (mut tx_addr, mut tx_key) = (None, None);
        for o in PxeOptions::new(d) {
            match o {
                PxeOption::MtftpIp(i) => {
                    m.ip = i;
                    has_mtftp = true;
                }
                PxeOption::MtftpClientPort(MtftpPort(x)) => m.client_port = x,
                PxeOption::MtftpServerPort(MtftpPort(x)) => m.server_port = x,
                PxeOption::MtftpTimeout(x) => m.timeout_secs = x,
                PxeOption::MtftpDelay(x) => m.delay_secs = x,
                PxeOption::BootServers(s) => {
                    a.boot_server_type = s.iter().next().map(|s| s.server_type);
                }
                PxeOption::BootMenu(items) => {
                    for i in items.iter() {
                        let _ = a.menu.push((i.server_type, text(i.description)));
                    }
                }
                PxeOption::MenuPrompt(mp) => {
                    a.prompt = Some((u8::from(mp.timeout), text(mp.prompt)));
                }
                PxeOption::BootItem(b) => a.boot_item = Some((b.item_type, b.layer)),
                PxeOption::TransactionServer(t) => tx_addr = Some(t),
                PxeOption::TransactionServerKey(k) => tx_key = Some(k),
                _ => {}
            }
        }
        a.transaction = tx_addr.map(|address| TransactionServer {
            address,
            public_key: tx_key,
        });
        if has_mtftp {
            a.mtftp = Some(m);
        }
    }
    Some(a)
}
