//! Any bytes: parsing never panics; whatever parses re-emits to bytes that
//! parse the same; options, accessors and netascii never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preboot::wire::tftp::{NetasciiDecoder, NetasciiEncoder, OptionSet, Packet, Repr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        let _ = (p.opcode(), p.block(), p.payload().len(), p.body().len());
    }
    let _ = OptionSet::parse(data);
    if let Ok(repr) = Repr::parse_bytes(data) {
        let mut out = vec![0u8; repr.buffer_len()];
        let n = repr.emit(&mut out).expect("buffer_len is enough");
        assert_eq!(n, out.len());
        assert_eq!(Repr::parse_bytes(&out[..n]), Ok(repr));
        if let Repr::Rrq(r) | Repr::Wrq(r) = repr {
            let _ = preboot::fs::ValidPath::new(r.filename);
            let set = r.options.to_set();
            let mut buf = vec![0u8; set.buffer_len()];
            set.emit(&mut buf).unwrap();
            assert_eq!(OptionSet::parse(&buf), set);
        }
        // Too small: an error, buffer untouched.
        if n > 0 {
            let mut small = vec![0xAAu8; n - 1];
            assert!(repr.emit(&mut small).is_err());
            assert!(small.iter().all(|&b| b == 0xAA));
        }
    }
    let mut enc = NetasciiEncoder::new();
    let mut wire = vec![0u8; data.len() * 2 + 1];
    let (c, w) = enc.encode(data, &mut wire);
    assert_eq!(c, data.len());
    let mut dec = NetasciiDecoder::new();
    let mut back = vec![0u8; w + 1];
    let mut m = dec.decode(&wire[..w], &mut back).unwrap();
    if let Some(cr) = dec.finish() {
        back[m] = cr;
        m += 1;
    }
    assert_eq!(&back[..m], data);
});
