//! Transaction-protocol frames (docs/transaction-protocol.md §2, version 2)
//! and every message payload (§3.2, §3.3, §4) on arbitrary bytes: no panic, and whenever a parse
//! succeeds the builder reproduces the frame (round-trip oracle).
#![no_main]

use libfuzzer_sys::fuzz_target;
use preboot::wire::transaction::environment_multicast::{
    ENVIRONMENT_MULTICAST_LEN, EnvironmentMulticast,
};
use preboot::wire::transaction::menu_choice::TaskQuery;
use preboot::wire::transaction::tlv::Writer;
use preboot::wire::transaction::messages::{
    Accept, Cookie, Empty, Hello, InfoAck, Init, InitPayload, MenuReply, TaskReply, TaskReport,
    WorkstationInfo,
};
use preboot::wire::transaction::{
    EmitError, Frame, HEADER_LEN, MAX_FRAME_LEN, ParseError, Payload, TAG_LEN, emit_frame,
};

/// Payload bytes written as they are.
struct Raw<'a>(&'a [u8]);

impl Payload for Raw<'_> {
    fn buffer_len(&self) -> usize {
        self.0.len()
    }
    fn emit(&self, out: &mut [u8]) -> Result<(), EmitError> {
        out.copy_from_slice(self.0);
        Ok(())
    }
}

/// parse → emit → parse gives the same value, and the emitted bytes are
/// exactly `buffer_len()` long.
macro_rules! round_trip {
    ($ty:ident, $bytes:expr) => {
        if let Ok(v) = $ty::parse($bytes) {
            let mut out = vec![0u8; v.buffer_len()];
            v.emit(&mut out).expect(concat!(stringify!($ty), ": a parsed value must emit"));
            let again = $ty::parse(&out).expect(concat!(stringify!($ty), ": emitted bytes must parse"));
            assert_eq!(v, again, concat!(stringify!($ty), " round trip"));
            // The canonical form is a fixed point: emit(parse(canonical)) = canonical.
            let mut out2 = vec![0u8; again.buffer_len()];
            again.emit(&mut out2).expect("canonical emit");
            assert_eq!(out, out2, concat!(stringify!($ty), " canonical form"));
        }
    };
}

fuzz_target!(|data: &[u8]| {
    match Frame::new_checked(data) {
        Ok(frame) => {
            // §2.2: a checked frame satisfies every length rule.
            assert!(data.len() >= HEADER_LEN && data.len() <= MAX_FRAME_LEN);
            let tag = frame.tag();
            assert_eq!(
                HEADER_LEN + frame.payload().len() + tag.map_or(0, <[u8]>::len),
                data.len()
            );
            // Round trip: the builder writes the same bytes (flags
            // included, §2.1), the tag filled by the caller.
            let mut out = [0u8; MAX_FRAME_LEN];
            let n = emit_frame(&frame.header(), &Raw(frame.payload()), tag.is_some(), &mut out)
                .expect("a parsed frame must re-emit");
            if let Some(t) = tag {
                assert_eq!(t.len(), TAG_LEN);
                out[n - TAG_LEN..n].copy_from_slice(t);
            }
            assert_eq!(&out[..n], data);
            let again = Frame::new_checked(&out[..n]).expect("re-emitted frame parses");
            assert_eq!(again.header(), frame.header());
            assert_eq!(again.header_bytes(), &data[..HEADER_LEN]);
        }
        Err(e) => {
            // Every refusal maps to its status (or silence below the
            // minimum frame, §2.2 rule 1).
            let silent = e.status().is_none();
            assert_eq!(silent, e == ParseError::NotThisProtocol);
            if data.len() >= HEADER_LEN && data[..4] == *b"PBTX" {
                assert!(!silent);
            }
        }
    }
    // Every payload parser on the raw bytes and on the frame payload.
    let payload = Frame::new_checked(data).map(|f| f.payload().to_vec()).unwrap_or_default();
    for bytes in [data, &payload[..]] {
        let _ = Empty::parse(bytes);
        round_trip!(Hello, bytes);
        round_trip!(Cookie, bytes);
        round_trip!(Init, bytes);
        round_trip!(InitPayload, bytes);
        round_trip!(Accept, bytes);
        round_trip!(WorkstationInfo, bytes);
        round_trip!(InfoAck, bytes);
        round_trip!(MenuReply, bytes);
        round_trip!(TaskReply, bytes);
        round_trip!(TaskReport, bytes);
        round_trip!(TaskQuery, bytes);
        // §4.5.2 TLV 6 alone (TaskReply above covers it in a reply): a
        // value that parses is emitted back byte for byte.
        if let Ok(m) = EnvironmentMulticast::parse(bytes) {
            let mut out = [0u8; 3 + ENVIRONMENT_MULTICAST_LEN];
            m.emit(&mut Writer::new(&mut out)).expect("TLV 6 emits");
            assert_eq!(&out[3..], bytes, "TLV 6 round trip");
        }
    }
});
