//! Vendor class strings (`PXEClient:Arch:xxxxx:UNDI:yyyzzz`,
//! `HTTPClient:…`): never panic; whatever parses writes back the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preboot::wire::pxe::VendorClass;

fuzz_target!(|data: &[u8]| {
    if let Ok(vc) = VendorClass::parse(data) {
        let mut buf = [0u8; VendorClass::MAX_LEN];
        let n = vc.write(&mut buf).expect("parsed vendor class can be written");
        assert_eq!(&buf[..n], data);
    }
});
