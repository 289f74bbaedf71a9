//! Option iterator and builder edge cases: RFC 3396 long options, RFC 2132
//! §9.3 overload, pad/end, truncation leniency, any htype, short buffers.

use std::net::Ipv4Addr;

use preboot::wire::dhcp::{
    DhcpHeader, DhcpOption, DhcpPacket, DhcpRepr, EmitError, MessageType, OptionData, ParseError,
    RelayAgentInfo, SubOption, UserClass, code,
};

/// A bare message: header + cookie, then `opts` as raw bytes in the
/// options field, then `file`/`sname` raw fields.
fn raw_message(opts: &[u8], file: &[u8], sname: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[44..44 + sname.len()].copy_from_slice(sname);
    b[108..108 + file.len()].copy_from_slice(file);
    b[236..240].copy_from_slice(&[99, 130, 83, 99]);
    b.extend_from_slice(opts);
    b
}

/// RFC 3396 §7: all occurrences of a code are concatenated, in order, and
/// the option is yielded once at its first place.
#[test]
fn long_option_fragments_are_joined_in_order() {
    let opts = [
        53, 1, 1, // DISCOVER
        200, 3, b'a', b'b', b'c', //
        60, 9, b'P', b'X', b'E', b'C', b'l', b'i', b'e', b'n', b't', //
        0, 0, // pads
        200, 2, b'd', b'e', //
        255,
    ];
    let b = raw_message(&opts, &[], &[]);
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    let raw: Vec<_> = p.raw_options().collect();
    assert_eq!(raw.len(), 3);
    assert_eq!(raw[1].code, 200);
    let d = raw[1].data;
    assert_eq!(d.len(), 5);
    assert!(d.as_slice().is_none(), "two fragments, not copied");
    assert_eq!(d.fragments().collect::<Vec<_>>(), [&b"abc"[..], &b"de"[..]]);
    assert!(d.eq_bytes(b"abcde"));
    assert_eq!(d, OptionData::new(b"abcde"));
    let mut scratch = [0u8; 16];
    assert_eq!(d.contiguous(&mut scratch).unwrap(), b"abcde");
    assert_eq!(d.slice(2, 4).unwrap(), OptionData::new(b"cd"));
    assert_eq!(d.array::<3>(1), Some(*b"bcd"));
    let mut small = [0u8; 4];
    assert_eq!(
        d.copy_to(&mut small),
        Err(EmitError::BufferTooSmall { needed: 5 })
    );
    assert_eq!(small, [0; 4], "untouched");
    assert!(p.raw_options().has_long_options());
}

/// RFC 3396 §6: the builder splits a payload over 255 bytes into pieces of
/// 255 with the same code; the parser joins them back.
#[test]
fn builder_splits_long_options_and_parser_joins_them() {
    let big: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
    let hdr = DhcpHeader {
        op: 2,
        xid: 7,
        ..DhcpHeader::default()
    };
    let opts = [
        DhcpOption::MessageType(MessageType::Offer),
        DhcpOption::VendorSpecific(OptionData::new(&big)),
        DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)),
    ];
    let mut buf = [0u8; 1500];
    let n = hdr.emit(&opts, &mut buf).unwrap();
    // 240 + 3 + (600 + 3*2) + 6 + 1
    assert_eq!(n, 240 + 3 + 606 + 6 + 1);
    assert_eq!(&buf[243..245], &[43, 255]);
    assert_eq!(&buf[243 + 257..243 + 259], &[43, 255]);
    assert_eq!(&buf[243 + 514..243 + 516], &[43, 90]);
    let p = DhcpPacket::new_checked(&buf[..n]).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    assert_eq!(&r.options[..], &opts[..]);
}

/// RFC 2132 §9.3 + RFC 3396 §7: with overload 3, options continue in
/// `file`, then `sname`; a long option spanning all three areas is joined
/// in that order; `file()`/`sname()` are then empty.
#[test]
fn overload_reads_file_then_sname() {
    let opts = [53, 1, 5, 52, 1, 3, 12, 2, b'h', b'o', 255];
    let file = [12, 2, b's', b't', 66, 3, b't', b'f', b't', 255];
    let sname = [12, 1, b'!', 67, 4, b'b', b'o', b'o', b't', 255];
    let b = raw_message(&opts, &file, &sname);
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.overload(), 3);
    assert_eq!(p.file(), b"");
    assert_eq!(p.sname(), b"");
    let typed: Vec<_> = p.options().collect();
    assert_eq!(
        typed,
        [
            DhcpOption::MessageType(MessageType::Ack),
            DhcpOption::OptionOverload(3),
            DhcpOption::HostName(OptionData::new(b"host!")),
            DhcpOption::TftpServerName(OptionData::new(b"tft")),
            DhcpOption::BootFileName(OptionData::new(b"boot")),
        ]
    );
    // Without option 52 the same fields are names, not options.
    let b = raw_message(&[53, 1, 5, 255], b"pxelinux.0", b"srv");
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.overload(), 0);
    assert_eq!(p.file(), b"pxelinux.0");
    assert_eq!(p.sname(), b"srv");
    assert_eq!(p.options().count(), 1);
}

/// RFC 3396 §7 with RFC 2132 §9.3: a long option whose first fragment
/// is in `file` (not in the options field) is yielded at its place in
/// `file`, joined with its fragment in `sname`.
#[test]
fn long_option_starting_in_file_is_joined_with_sname() {
    let opts = [53, 1, 2, 52, 1, 3, 255];
    let file = [0, 67, 3, b'b', b'o', b'o', 255];
    let sname = [0, 0, 67, 2, b't', b'!', 255];
    let b = raw_message(&opts, &file, &sname);
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert!(p.raw_options().has_long_options());
    let typed: Vec<_> = p.options().collect();
    assert_eq!(
        typed,
        [
            DhcpOption::MessageType(MessageType::Offer),
            DhcpOption::OptionOverload(3),
            DhcpOption::BootFileName(OptionData::new(b"boot!")),
        ]
    );
    let raw: Vec<_> = p.raw_options().collect();
    assert_eq!(
        raw[2].data.fragments().collect::<Vec<_>>(),
        [&b"boo"[..], &b"t!"[..]]
    );
}

/// Only `file` (overload 1): `sname` stays a name.
#[test]
fn overload_file_only() {
    let b = raw_message(&[52, 1, 1, 255], &[67, 1, b'x', 255], b"server");
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.sname(), b"server");
    assert_eq!(p.file(), b"");
    assert!(p.option(67).unwrap().eq_bytes(b"x"));
}

/// Leniency (module docs of `options`): a missing end option is fine; an
/// option running past the end is dropped and reported.
#[test]
fn truncated_and_endless_options() {
    let b = raw_message(&[53, 1, 3, 60, 3, b'a', b'b', b'c'], &[], &[]);
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.options().count(), 2);
    assert!(!p.raw_options().truncated());

    let b = raw_message(&[53, 1, 3, 60, 30, b'a'], &[], &[]);
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    let o: Vec<_> = p.options().collect();
    assert_eq!(o, [DhcpOption::MessageType(MessageType::Request)]);
    assert!(p.raw_options().truncated());

    let b = raw_message(&[53], &[], &[]);
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.options().count(), 0);
    assert!(p.options().truncated());
}

/// A known option with the wrong shape is kept as `Malformed`, and
/// re-emitted as received.
#[test]
fn malformed_known_option_is_kept() {
    let b = raw_message(&[53, 2, 1, 1, 1, 3, 1, 2, 3, 255], &[], &[]);
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    let o: Vec<_> = p.options().collect();
    assert_eq!(
        o,
        [
            DhcpOption::Malformed {
                code: 53,
                data: OptionData::new(&[1, 1])
            },
            DhcpOption::Malformed {
                code: 1,
                data: OptionData::new(&[1, 2, 3])
            },
        ]
    );
    assert_eq!(p.message_type(), None);
    let r = DhcpRepr::parse(&p).unwrap();
    let mut out = [0u8; 400];
    let n = r.emit(&mut out).unwrap();
    assert_eq!(&out[240..250], &b[240..250]);
    assert_eq!(n, 300);
    assert!(matches!(
        DhcpOption::decode_strict(1, OptionData::new(&[1, 2, 3])),
        Err(ParseError::BadOption { code: 1 })
    ));
}

/// RFC 2131 §2: the view rejects short datagrams and a wrong cookie.
#[test]
fn view_checks_length_and_cookie() {
    assert_eq!(
        DhcpPacket::new_checked(&[0u8; 239][..]).unwrap_err(),
        ParseError::Truncated {
            len: 239,
            needed: 240
        }
    );
    let mut b = raw_message(&[255], &[], &[]);
    b[239] = 0;
    assert_eq!(
        DhcpPacket::new_checked(&b[..]).unwrap_err(),
        ParseError::BadMagicCookie
    );
}

/// Any htype parses: InfiniBand (htype 32, hlen 0, RFC 4390 §2.1) has an
/// empty chaddr; hlen over 16 is clamped (documented on `DhcpPacket`).
#[test]
fn infiniband_and_oversized_hlen() {
    let mut b = raw_message(&[53, 1, 1, 255], &[], &[]);
    b.resize(300, 0);
    b[1] = 32;
    b[2] = 0;
    b[10] = 0x80;
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.htype(), 32);
    assert_eq!(p.chaddr(), b"");
    assert!(p.broadcast());
    b[2] = 20;
    b[28..44].copy_from_slice(&[9; 16]);
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.hlen(), 20);
    assert_eq!(p.chaddr(), &[9; 16]);
    let r = DhcpRepr::parse(&p).unwrap();
    assert_eq!(r.header.client_hardware_address(), &[9; 16]);
    let mut out = [0u8; 300];
    r.emit(&mut out).unwrap();
    assert_eq!(&out[..], &b[..300]);
}

/// rustls-style buffers: too small → error with the needed size, buffer
/// untouched; the message is padded to 300 bytes (RFC 1542 §3.4).
#[test]
fn short_buffer_is_untouched_and_minimum_is_300() {
    let hdr = DhcpHeader {
        file: b"boot.efi",
        ..DhcpHeader::default()
    };
    let opts = [DhcpOption::MessageType(MessageType::Ack)];
    assert_eq!(hdr.buffer_len(&opts), Ok(300));
    let mut small = [0x5Au8; 299];
    assert_eq!(
        hdr.emit(&opts, &mut small),
        Err(EmitError::BufferTooSmall { needed: 300 })
    );
    assert!(small.iter().all(|&b| b == 0x5A));
    let mut buf = [0x5Au8; 300];
    assert_eq!(hdr.emit(&opts, &mut buf), Ok(300));
    assert_eq!(&buf[240..244], &[53, 1, 5, 255]);
    assert!(buf[244..].iter().all(|&b| b == 0));
}

/// The builder refuses what would not parse back the same.
#[test]
fn builder_refuses_ambiguous_input() {
    let hdr = DhcpHeader::default();
    let mut buf = [0u8; 600];
    let two = [
        DhcpOption::MessageType(MessageType::Ack),
        DhcpOption::MessageType(MessageType::Nak),
    ];
    assert_eq!(
        hdr.emit(&two, &mut buf),
        Err(EmitError::DuplicateOption(53))
    );
    let end = [DhcpOption::Unknown {
        code: 255,
        data: OptionData::new(&[]),
    }];
    assert_eq!(hdr.emit(&end, &mut buf), Err(EmitError::InvalidCode(255)));
    let typed_as_unknown = [DhcpOption::Unknown {
        code: 53,
        data: OptionData::new(&[1]),
    }];
    assert_eq!(
        hdr.emit(&typed_as_unknown, &mut buf),
        Err(EmitError::InvalidCode(53))
    );
    let long_name = [b'x'; 65];
    let h = DhcpHeader {
        sname: &long_name,
        ..DhcpHeader::default()
    };
    assert_eq!(
        h.emit(&[], &mut buf),
        Err(EmitError::FieldTooLong {
            field: "sname",
            max: 64
        })
    );
}

/// RFC 3004 §4 user class list, both ways.
#[test]
fn user_class_rfc3004() {
    let mut buf = [0u8; 32];
    let n = UserClass::encode_list(&[b"iPXE", b"lab"], &mut buf).unwrap();
    assert_eq!(&buf[..n], b"\x04iPXE\x03lab");
    let u = UserClass(OptionData::new(&buf[..n]));
    let classes: Vec<_> = u.classes().unwrap().collect();
    assert_eq!(classes, [OptionData::new(b"iPXE"), OptionData::new(b"lab")]);
}

/// RFC 3046 §2.0 relay agent sub-options, both ways; a sub-option running
/// past the end makes option 82 `Malformed`.
#[test]
fn relay_agent_information() {
    let subs = [
        SubOption {
            code: RelayAgentInfo::CIRCUIT_ID,
            data: OptionData::new(b"eth0"),
        },
        SubOption {
            code: RelayAgentInfo::REMOTE_ID,
            data: OptionData::new(b"sw1"),
        },
        SubOption {
            code: 9,
            data: OptionData::new(&[0, 0, 0, 9]),
        },
    ];
    let o = DhcpOption::RelayAgentInformation(RelayAgentInfo::Items(&subs));
    let mut buf = [0u8; 64];
    let n = o.emit(&mut buf).unwrap();
    assert_eq!(&buf[..2], &[82, 17]);
    let back = DhcpOption::decode(82, OptionData::new(&buf[2..n]));
    assert_eq!(back, o);
    match back {
        DhcpOption::RelayAgentInformation(r) => {
            assert!(r.get(RelayAgentInfo::CIRCUIT_ID).unwrap().eq_bytes(b"eth0"))
        }
        _ => unreachable!(),
    }
    assert!(matches!(
        DhcpOption::decode(82, OptionData::new(&[1, 5, 0])),
        DhcpOption::Malformed { code: 82, .. }
    ));
    assert_eq!(code::RELAY_AGENT_INFORMATION, 82);
}

/// Parses `b`, re-emits its `DhcpRepr`, re-parses, and checks that options
/// and header agree and that the output is a fixed point (the fuzz oracle).
fn assert_round_trip(b: &[u8]) -> usize {
    let p = DhcpPacket::new_checked(b).unwrap();
    let r = DhcpRepr::parse(&p).unwrap();
    let mut out = vec![0u8; r.buffer_len().unwrap()];
    let n = r.emit(&mut out).unwrap();
    let p2 = DhcpPacket::new_checked(&out[..n]).unwrap();
    let r2 = DhcpRepr::parse(&p2).unwrap();
    assert_eq!(r2, r, "parse and emit agree");
    let mut out2 = vec![0u8; n];
    assert_eq!(r2.emit(&mut out2), Ok(n));
    assert_eq!(out2, out, "fixed point");
    p.overload() as usize
}

/// RFC 2132 §9.3 ("its length is 1") with RFC 3396 §7 (occurrences joined
/// before processing): an option 52 whose joined payload is not one byte
/// is malformed and not followed, whatever its first byte says; `file` and
/// `sname` stay names. Regression (fuzz target `wire_dhcp_message`): a
/// 0-byte option 52 followed by a 35-byte one was ignored on parse, but
/// the re-emitted joined 35-byte option was followed, so the `file` name
/// "\x01" came back as an extra `Malformed { code: 1, data: [] }`.
#[test]
fn malformed_overload_is_not_followed_and_round_trips() {
    let mut ov = vec![52, 0, 52, 35, 3];
    ov.extend_from_slice(&[0xAA; 34]);
    ov.extend_from_slice(&[53, 1, 1, 255]);
    let b = raw_message(&ov, &[1], b"srv");
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.overload(), 0);
    assert_eq!(p.file(), [1]);
    assert_eq!(p.sname(), b"srv");
    let typed: Vec<_> = p.options().collect();
    assert_eq!(typed.len(), 2);
    assert!(matches!(
        typed[0],
        DhcpOption::Malformed { code: 52, data } if data.len() == 35 && data.get(0) == Some(3)
    ));
    assert_eq!(assert_round_trip(&b), 0);

    // One 35-byte option 52 alone: also malformed, also not followed.
    let b = raw_message(&ov[2..], &[1], b"srv");
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!((p.overload(), p.file()), (0, &[1u8][..]));
    assert_eq!(assert_round_trip(&b), 0);

    // An empty option 52: malformed, not followed.
    let b = raw_message(&[52, 0, 255], &[67, 1, b'x', 255], b"");
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.overload(), 0);
    assert_eq!(p.options().count(), 1);
    assert_eq!(assert_round_trip(&b), 0);
}

/// RFC 3396 §7: option 52 split in two (0 + 1 bytes) joins to a valid
/// one-byte value and is followed; the typed option agrees, and the round
/// trip keeps the options found in `file`.
#[test]
fn split_overload_is_joined_and_followed() {
    let b = raw_message(&[52, 0, 52, 1, 1, 255], &[67, 1, b'x', 255], b"srv");
    let p = DhcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.overload(), 1);
    let typed: Vec<_> = p.options().collect();
    assert_eq!(
        typed,
        [
            DhcpOption::OptionOverload(1),
            DhcpOption::BootFileName(OptionData::new(b"x")),
        ]
    );
    assert_eq!(assert_round_trip(&b), 1);
}

/// RFC 2132 §9.3: the builder refuses an option 52 that claims `file` or
/// `sname` for options while that field carries a name (the receiver would
/// read the name as options); with the field empty it is fine.
#[test]
fn builder_refuses_overload_over_a_name() {
    let opts = [DhcpOption::OptionOverload(1)];
    let hdr = DhcpHeader {
        file: b"pxelinux.0",
        ..DhcpHeader::default()
    };
    let mut buf = [0u8; 576];
    assert_eq!(
        hdr.emit(&opts, &mut buf),
        Err(EmitError::InvalidValue { code: 52 })
    );
    assert_eq!(buf, [0u8; 576], "untouched");
    let hdr = DhcpHeader {
        sname: b"srv",
        ..DhcpHeader::default()
    };
    assert!(
        hdr.emit(&[DhcpOption::OptionOverload(2)], &mut buf)
            .is_err()
    );
    // `sname` named, only `file` overloaded: fine, and parses back.
    let n = hdr.emit(&opts, &mut buf).unwrap();
    let p = DhcpPacket::new_checked(&buf[..n]).unwrap();
    assert_eq!(
        (p.overload(), p.sname(), p.file()),
        (1, &b"srv"[..], &b""[..])
    );
}

/// Typed options are moved by value while walking a message: an
/// `OptionData` (one slice, or an RFC 3396 fragment list) stays 32 bytes
/// and a typed option at most 48.
#[test]
fn option_values_stay_small() {
    assert!(size_of::<OptionData>() <= 32);
    assert!(size_of::<DhcpOption>() <= 48);
}
