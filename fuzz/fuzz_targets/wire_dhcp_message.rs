//! Any datagram: the DHCP view and `DhcpRepr` never panic; whatever parses
//! re-emits, re-parses to the same `DhcpRepr`, and re-emits the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preboot::wire::dhcp::{DhcpPacket, DhcpRepr};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = DhcpPacket::new_checked(data) else {
        return;
    };
    let _ = (p.op(), p.xid(), p.flags(), p.chaddr(), p.sname(), p.file(), p.message_type());
    let Ok(repr) = DhcpRepr::parse(&p) else {
        return;
    };
    let len = repr.buffer_len().expect("a parsed message can be emitted");
    let mut buf = vec![0u8; len];
    assert_eq!(repr.emit(&mut buf), Ok(len));
    let p2 = DhcpPacket::new_checked(&buf[..]).expect("own output parses");
    let repr2 = DhcpRepr::parse(&p2).expect("own output parses");
    assert_eq!(repr2.options, repr.options);
    assert_eq!(repr2.header.xid, repr.header.xid);
    assert_eq!(repr2.header.chaddr, repr.header.chaddr);
    let mut buf2 = vec![0u8; len];
    assert_eq!(repr2.emit(&mut buf2), Ok(len));
    assert_eq!(buf, buf2, "canonical output is a fixed point");
});
