//! Fuzz `wire::imdn`: parse any document within the default limits; emit what parsed and
//! check the emitted document parses back to the same IMDN, byte-stable on re-emit.
#![no_main]

use iwf::wire::imdn::{Imdn, ImdnLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(imdn) = Imdn::parse(data) else { return };
    let _ = imdn.to_string();
    // Escaping expands a byte at most 6× (`&#x20;`).
    let mut out = vec![0u8; data.len() * 6 + 512];
    let n = imdn.emit(&mut out).expect("a parsed IMDN must emit");
    // Escaping may take the document past the default size bound: lift it for the check.
    let unbounded = ImdnLimits {
        max_len: usize::MAX,
        ..ImdnLimits::default()
    };
    let again = Imdn::parse_with_limits(&out[..n], unbounded).expect("emitted IMDN must parse");
    assert_eq!(again, imdn);
    let mut out2 = vec![0u8; n + 64];
    let m = again.emit(&mut out2).expect("re-emit");
    assert_eq!(&out2[..m], &out[..n]);
});
