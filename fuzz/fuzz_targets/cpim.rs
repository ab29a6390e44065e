//! Fuzz `wire::cpim`: parse any body; where the parsed fields make a `CpimRepr`, emit it
//! and check that parsing the emitted body gives the same fields back.
#![no_main]

use iwf::wire::cpim::{self, CpimRepr, DateTime, EMPTY_HEADER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = DateTime::parse(data);
    let mut headers = [EMPTY_HEADER; 32];
    let Ok(msg) = cpim::parse(data, &mut headers) else {
        return;
    };
    let _ = (
        msg.to_all().count(),
        msg.cc().count(),
        msg.imdn_routes().count(),
        msg.original_to(),
    );
    let _ = msg.to_string();
    let Ok(repr) = CpimRepr::parse(&msg) else {
        return;
    };
    let mut out = vec![0u8; data.len() + 512];
    // Parsed values may not be emittable (e.g. a display name with a raw quote): fine.
    let Ok(n) = repr.emit(&mut out) else { return };
    let mut headers2 = [EMPTY_HEADER; 32];
    let again = cpim::parse(&out[..n], &mut headers2).expect("emitted CPIM must parse");
    assert_eq!(
        CpimRepr::parse(&again).expect("emitted CPIM must carry its fields"),
        repr
    );
});
