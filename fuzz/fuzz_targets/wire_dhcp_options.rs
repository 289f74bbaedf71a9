//! The option iterator with option overload (RFC 2132 §9.3) and long
//! options (RFC 3396): the input is spread over the options field, `file`
//! and `sname` of a valid header; every `OptionData` must be consistent
//! (length, fragments, copy, slices), and typed options re-emit to the same
//! typed options.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preboot::wire::dhcp::{DhcpHeader, DhcpOption, DhcpPacket, OptionData};

fuzz_target!(|data: &[u8]| {
    let Some((&overload, rest)) = data.split_first() else {
        return;
    };
    let (file, rest) = rest.split_at(rest.len().min(128));
    let (sname, opts) = rest.split_at(rest.len().min(64));
    let mut msg = vec![0u8; 240];
    msg[108..108 + file.len()].copy_from_slice(file);
    msg[44..44 + sname.len()].copy_from_slice(sname);
    msg[236..240].copy_from_slice(&[99, 130, 83, 99]);
    if overload & 0x80 != 0 {
        msg.extend_from_slice(&[52, 1, overload & 3]);
    }
    msg.extend_from_slice(opts);
    let p = DhcpPacket::new_checked(&msg[..]).expect("valid header");

    let mut typed = Vec::new();
    for raw in p.raw_options() {
        let d = raw.data;
        let frag_len: usize = d.fragments().map(<[u8]>::len).sum();
        assert_eq!(frag_len, d.len());
        assert_eq!(d.bytes().count(), d.len());
        let mut copy = vec![0u8; d.len()];
        assert_eq!(d.copy_to(&mut copy), Ok(d.len()));
        assert!(d.eq_bytes(&copy));
        assert_eq!(d, OptionData::new(&copy));
        let mut scratch = vec![0u8; d.len()];
        assert_eq!(d.contiguous(&mut scratch).unwrap(), &copy[..]);
        if !d.is_empty() {
            let mid = d.len() / 2;
            assert!(d.slice(mid, d.len()).unwrap().eq_bytes(&copy[mid..]));
            assert_eq!(d.get(mid), Some(copy[mid]));
        }
        typed.push(raw.decode());
    }
    // Round trip: the typed options re-emit and parse back equal.
    let hdr = DhcpHeader::default();
    let len = hdr.buffer_len(&typed).expect("parsed options can be emitted");
    let mut buf = vec![0u8; len];
    assert_eq!(hdr.emit(&typed, &mut buf), Ok(len));
    let p2 = DhcpPacket::new_checked(&buf[..]).unwrap();
    let back: Vec<DhcpOption> = p2.options().collect();
    assert_eq!(back, typed);
});
