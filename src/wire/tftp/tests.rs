use super::*;

#[test]
fn ack_and_data_round_trip() {
    // RFC 1350 §5: DATA = 03 | block | data; ACK = 04 | block.
    let mut buf = [0u8; 16];
    let n = Repr::Data {
        block: 0xfffe,
        data: b"abc",
    }
    .emit(&mut buf)
    .unwrap();
    assert_eq!(&buf[..n], b"\x00\x03\xff\xfeabc");
    assert_eq!(
        Repr::parse_bytes(&buf[..n]).unwrap(),
        Repr::Data {
            block: 0xfffe,
            data: b"abc"
        }
    );
    let n = Repr::Ack { block: 7 }.emit(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"\x00\x04\x00\x07");
}

#[test]
fn too_small_buffer_names_size_and_is_untouched() {
    let mut buf = [0xAAu8; 5];
    let err = Repr::Data {
        block: 1,
        data: b"hello",
    }
    .emit(&mut buf)
    .unwrap_err();
    assert_eq!(err, EmitError::BufferTooSmall { needed: 9 });
    assert_eq!(buf, [0xAA; 5]);
}

#[test]
fn options_case_insensitive_unknown_ignored_out_of_range_ignored() {
    // RFC 2347 §2: option names are case-insensitive; unknown ones ignored.
    let raw =
        b"BlkSize\x001468\x00foo\x00bar\x00TSIZE\x000\x00windowsize\x000\x00timeout\x00256\x00";
    let set = OptionSet::parse(raw);
    assert_eq!(set.blksize, Some(1468));
    assert_eq!(set.tsize, Some(0));
    assert_eq!(set.windowsize, None, "RFC 7440: windowsize 0 is invalid");
    assert_eq!(set.timeout, None, "RFC 2349: timeout is 1-255");
    assert_eq!(OptionSet::parse(b"blksize\x007\x00").blksize, None);
    assert_eq!(OptionSet::parse(b"blksize\x0065465\x00").blksize, None);
    assert_eq!(
        OptionSet::parse(b"blksize\x0065464\x00").blksize,
        Some(65464)
    );
    assert_eq!(OptionSet::parse(b"blksize\x00-1\x00").blksize, None);
    assert_eq!(
        OptionSet::parse(b"tsize\x00999999999999999999999\x00").tsize,
        None
    );
}

#[test]
fn multicast_option_rfc2090() {
    let set = OptionSet::parse(b"multicast\x00\x00");
    assert_eq!(set.multicast, Some(MulticastOption::default()));
    let set = OptionSet::parse(b"multicast\x00224.1.2.3,1758,1\x00");
    let m = set.multicast.unwrap();
    assert_eq!(m.addr, Some(core::net::Ipv4Addr::new(224, 1, 2, 3)));
    assert_eq!(m.port, Some(1758));
    assert_eq!(m.master, Some(true));
    let mut buf = [0u8; 64];
    let n = set.emit(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"multicast\x00224.1.2.3,1758,1\x00");
    assert_eq!(
        OptionSet::parse(b"multicast\x00,,0\x00")
            .multicast
            .unwrap()
            .master,
        Some(false)
    );
    assert_eq!(OptionSet::parse(b"multicast\x00x,1,1\x00").multicast, None);
}

#[test]
fn typed_set_round_trips() {
    let set = OptionSet {
        blksize: Some(1468),
        timeout: Some(3),
        tsize: Some(u64::MAX),
        windowsize: Some(64),
        multicast: None,
    };
    let mut buf = [0u8; 128];
    let n = Repr::Oack {
        options: Options::Set(set),
    }
    .emit(&mut buf)
    .unwrap();
    match Repr::parse_bytes(&buf[..n]).unwrap() {
        Repr::Oack { options } => assert_eq!(options.to_set(), set),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_requests_are_errors() {
    assert_eq!(
        Repr::parse_bytes(b"\x00\x01file\x00octet"),
        Err(ParseError::Unterminated)
    );
    assert_eq!(
        Repr::parse_bytes(b"\x00\x01\x00octet\x00"),
        Err(ParseError::EmptyFilename)
    );
    assert_eq!(
        Repr::parse_bytes(b"\x00\x01f\x00binary\x00"),
        Err(ParseError::UnknownMode)
    );
    assert_eq!(
        Repr::parse_bytes(b"\x00\x09"),
        Err(ParseError::UnknownOpcode(9))
    );
    assert!(matches!(
        Repr::parse_bytes(b"\x00"),
        Err(ParseError::Truncated { .. })
    ));
    assert!(matches!(
        Repr::parse_bytes(b"\x00\x04\x00"),
        Err(ParseError::Truncated { .. })
    ));
    // Mode names are case-insensitive (RFC 1350 §5).
    assert!(matches!(
        Repr::parse_bytes(b"\x00\x01f\x00OcTeT\x00"),
        Ok(Repr::Rrq(Request {
            mode: Mode::Octet,
            ..
        }))
    ));
    // ERROR without its NUL is accepted.
    assert_eq!(
        Repr::parse_bytes(b"\x00\x05\x00\x63oops"),
        Ok(Repr::Error {
            code: ErrorCode::Unknown(99),
            message: b"oops"
        })
    );
}

#[test]
fn netascii_both_ways() {
    let text = b"a\nb\rc\r\n";
    let mut enc = NetasciiEncoder::new();
    let mut wire = [0u8; 32];
    let mut out_len = 0;
    let mut consumed = 0;
    // Encode through a 3-byte window to exercise the pending byte.
    while consumed < text.len() || enc.pending().is_some() {
        let end = (out_len + 3).min(wire.len());
        let (c, w) = enc.encode(&text[consumed..], &mut wire[out_len..end]);
        consumed += c;
        out_len += w;
    }
    assert_eq!(&wire[..out_len], b"a\r\nb\r\x00c\r\x00\r\n");
    let mut dec = NetasciiDecoder::new();
    let mut back = [0u8; 32];
    let mut n = 0;
    for chunk in wire[..out_len].chunks(1) {
        n += dec.decode(chunk, &mut back[n..]).unwrap();
    }
    assert_eq!(dec.finish(), None);
    assert_eq!(&back[..n], text);
}

proptest::proptest! {
    #[test]
    fn parse_never_panics_and_reemits_exactly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
        if let Ok(repr) = Repr::parse_bytes(&bytes) {
            let mut out = [0u8; 128];
            if let Ok(n) = repr.emit(&mut out) {
                // Whatever parses re-emits to bytes that parse the same.
                proptest::prop_assert_eq!(Repr::parse_bytes(&out[..n]), Ok(repr));
            }
        }
    }

    #[test]
    fn netascii_round_trip(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), win in 1usize..9) {
        let mut enc = NetasciiEncoder::new();
        let mut wire = [0u8; 512];
        let (mut c, mut w) = (0, 0);
        while c < data.len() || enc.pending().is_some() {
            let end = (w + win).min(wire.len());
            let (dc, dw) = enc.encode(&data[c..], &mut wire[w..end]);
            c += dc;
            w += dw;
        }
        let mut dec = NetasciiDecoder::new();
        let mut back = [0u8; 512];
        let mut n = 0;
        for chunk in wire[..w].chunks(win) {
            n += dec.decode(chunk, &mut back[n..]).unwrap();
        }
        if let Some(cr) = dec.finish() { back[n] = cr; n += 1; }
        proptest::prop_assert_eq!(&back[..n], &data[..]);
    }
}
