//! A counting global allocator proves that parsing a DHCP message, walking
//! every option (typed, PXE sub-options, vendor class), building a
//! `DhcpRepr` and emitting it allocate nothing; and that building a proxy
//! OFFER from typed options (PXE sub-options of option 43 encoded into a
//! stack buffer, then the message) allocates nothing either.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::net::Ipv4Addr;

use preboot::wire::dhcp::{
    BOOTREPLY, DhcpHeader, DhcpOption, DhcpPacket, DhcpRepr, List, MessageType, OptionData,
};
use preboot::wire::pxe::{
    BootMenuItem, BootServer, DiscoveryControl, Entries, MenuPrompt, PromptTimeout, PxeOption,
    PxeOptions, VendorClass,
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts (per thread, so
// the test harness's other threads do not disturb the count).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let hex: String = std::fs::read_to_string(path)
        .unwrap()
        .split_whitespace()
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Walks everything a server reads from a message; returns a checksum so
/// the work cannot be optimised away.
fn walk(bytes: &[u8], out: &mut [u8]) -> usize {
    let p = DhcpPacket::new_checked(bytes).unwrap();
    let mut sum = p.xid() as usize + p.chaddr().len() + p.file().len() + p.sname().len();
    for o in p.options() {
        sum += o.code() as usize + o.payload_len();
        match o {
            DhcpOption::VendorClassIdentifier(d) => {
                if let Ok(vc) = VendorClass::from_option(&d) {
                    sum += vc.encoded_len();
                }
            }
            DhcpOption::VendorSpecific(_) => {
                for s in o.pxe_options().unwrap() {
                    sum += s.code() as usize;
                    if let PxeOption::BootMenu(m) = s {
                        sum += m.iter().map(|i| i.description.len()).sum::<usize>();
                    }
                }
            }
            DhcpOption::ParameterRequestList(d) => sum += d.bytes().map(usize::from).sum::<usize>(),
            DhcpOption::ClientSystemArchitecture(a) => sum += a.iter().count(),
            _ => {}
        }
    }
    let r = DhcpRepr::parse(&p).unwrap();
    sum += r.emit(out).unwrap();
    sum
}

/// Builds a proxyDHCP OFFER (PXE 2.1 §2.2.5: option 60 `PXEClient`,
/// option 43 with discovery control, boot servers, menu and prompt) from
/// typed options, the way a server answers a DISCOVER; returns its length.
fn build_proxy_offer(request: &DhcpHeader<'_>, out: &mut [u8]) -> usize {
    let server = [Ipv4Addr::new(192, 168, 77, 1)];
    let servers = [BootServer {
        server_type: 0x8000,
        addrs: List::Items(&server),
    }];
    let items = [
        BootMenuItem {
            server_type: 0,
            description: OptionData::new(b"Boot from local disk"),
        },
        BootMenuItem {
            server_type: 0x8000,
            description: OptionData::new(b"Install"),
        },
    ];
    let pxe = [
        PxeOption::DiscoveryControl(DiscoveryControl(
            DiscoveryControl::DISABLE_BROADCAST | DiscoveryControl::DISABLE_MULTICAST,
        )),
        PxeOption::BootServers(Entries::Items(&servers)),
        PxeOption::BootMenu(Entries::Items(&items)),
        PxeOption::MenuPrompt(MenuPrompt {
            timeout: PromptTimeout::Seconds(5),
            prompt: OptionData::new(b"Press F8 for the boot menu"),
        }),
    ];
    let mut o43 = [0u8; 255];
    let n43 = PxeOptions::emit(&pxe, &mut o43).unwrap();
    let header = DhcpHeader {
        op: BOOTREPLY,
        siaddr: Ipv4Addr::new(192, 168, 77, 1),
        ..DhcpHeader::reply_to(request)
    };
    let opts = [
        DhcpOption::MessageType(MessageType::Offer),
        DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 77, 1)),
        DhcpOption::VendorClassIdentifier(OptionData::new(b"PXEClient")),
        DhcpOption::VendorSpecific(OptionData::new(&o43[..n43])),
    ];
    header.emit(&opts, out).unwrap()
}

#[test]
fn parsing_walking_and_emitting_allocate_nothing() {
    let names = [
        "ipxe-bios-discover",
        "ipxe-bios-request",
        "ipxe-bios-request-4011",
        "ovmf-uefi-discover",
        "ovmf-uefi-request",
        "dnsmasq-proxy-offer-bios",
        "dnsmasq-proxy-ack-4011-bios",
        "dnsmasq-full-ack",
        "udhcpd-offer",
    ];
    let vectors: Vec<Vec<u8>> = names.iter().map(|n| load(n)).collect();
    // Long options (RFC 3396) and overload too: a 600-byte option 43 split
    // in three, plus options in `file`.
    let mut long = vec![0u8; 240];
    long[236..240].copy_from_slice(&[99, 130, 83, 99]);
    long[108..113].copy_from_slice(&[12, 2, b'h', b'i', 255]);
    long.extend_from_slice(&[52, 1, 1]);
    for chunk in [255usize, 255, 90] {
        long.extend_from_slice(&[43, chunk as u8]);
        long.extend(std::iter::repeat_n(7u8, chunk));
    }
    long.push(255);
    let mut out = [0u8; 1500];
    let before = allocs();
    let mut sum = 0;
    for v in &vectors {
        sum += walk(v, &mut out);
    }
    sum += walk(&long, &mut out);
    // Building a proxy OFFER from typed options, answering the iPXE DISCOVER.
    let discover = DhcpPacket::new_checked(&vectors[0][..]).unwrap();
    let request = DhcpHeader::parse(&discover);
    let n = build_proxy_offer(&request, &mut out);
    sum += n;
    let after = allocs();
    assert!(sum > 0);
    // The OFFER built is what it should be (so the build did its work).
    let offer = DhcpPacket::new_checked(&out[..n]).unwrap();
    assert_eq!(offer.xid(), request.xid);
    assert_eq!(offer.message_type(), Some(MessageType::Offer));
    let o43 = offer.option(43).unwrap();
    assert_eq!(PxeOptions::new(o43).count(), 4);
    assert_eq!(
        after - before,
        0,
        "allocations while parsing/walking/emitting"
    );
    // The counter itself works.
    let v = std::hint::black_box(vec![1u8; 10]);
    assert!(allocs() > after);
    drop(v);
}
