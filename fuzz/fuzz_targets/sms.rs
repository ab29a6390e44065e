//! Fuzz the SMS text codecs: decode arbitrary bytes as every encoding, parse a UDH, and
//! for whatever decodes, check encode → decode gives the same text back; segment the
//! decoded text and check the parts join up again.
#![no_main]

use iwf::wire::sms::{gsm7, latin1, ucs2, udh, Concatenation, Encoding, Gsm7Form, SegmentPlan, Udh};
use libfuzzer_sys::fuzz_target;

fn round_trip(enc: Encoding, text: &str) {
    let mut buf = [0u8; 4096];
    let Ok(n) = enc.encode(text, &mut buf) else { return };
    let mut out = [0u8; 8192];
    let m = enc.decode(&buf[..n], &mut out).expect("own encoding decodes");
    assert_eq!(&out[..m], text.as_bytes());
    for method in [Concatenation::Udh8, Concatenation::Udh16, Concatenation::Sar] {
        let Ok(plan) = SegmentPlan::from_encoded(&buf[..n], enc, method, 0x1234) else { continue };
        let mut joined = 0usize;
        let mut ud = [0u8; 512];
        for s in plan.segments() {
            assert_eq!(&buf[joined..joined + s.payload.len()], s.payload);
            joined += s.payload.len();
            s.write_user_data(Gsm7Form::Packed, &mut ud).expect("part fits");
        }
        assert_eq!(joined, n);
    }
}

fuzz_target!(|data: &[u8]| {
    // Fixed buffers below are sized for libFuzzer's default 4096-octet inputs.
    if data.len() > 4096 {
        return;
    }
    let mut out = [0u8; 8192];

    // GSM-7 unpacked: every septet string decodes; masked input always does.
    if let Ok(n) = gsm7::decode_unpacked(data, &mut out) {
        let text = core::str::from_utf8(&out[..n]).expect("utf-8").to_owned();
        // Lossy cases (escape edge cases, 0x1B as space) still encode and decode stably.
        let mut sep = [0u8; 8192];
        if let Ok(k) = gsm7::encode_unpacked(&text, &mut sep) {
            let mut again = [0u8; 8192];
            let m = gsm7::decode_unpacked(&sep[..k], &mut again).expect("re-decode");
            assert_eq!(&again[..m], text.as_bytes());
        }
        round_trip(Encoding::Gsm7, &text);
    }

    // GSM-7 packed with every fill-bit count and the most septets the data holds.
    for fill in 0..=6u8 {
        let count = gsm7::max_septets_in(data.len(), fill);
        if let Ok(n) = gsm7::decode_packed(data, count, fill, &mut out) {
            let text = core::str::from_utf8(&out[..n]).expect("utf-8");
            let mut packed = [0u8; 8192];
            let _ = gsm7::encode_packed(text, fill, &mut packed);
        }
    }

    if let Ok(n) = latin1::decode(data, &mut out) {
        let text = core::str::from_utf8(&out[..n]).expect("utf-8").to_owned();
        let mut back = [0u8; 4096];
        let k = latin1::encode(&text, &mut back).expect("latin-1 text encodes");
        assert_eq!(&back[..k], data);
        round_trip(Encoding::Latin1, &text);
    }

    if let Ok(n) = latin1::decode_ascii(data, &mut out) {
        let text = core::str::from_utf8(&out[..n]).expect("utf-8").to_owned();
        round_trip(Encoding::Ascii, &text);
    }

    if let Ok(n) = ucs2::decode(data, &mut out) {
        let text = core::str::from_utf8(&out[..n]).expect("utf-8").to_owned();
        let mut back = [0u8; 8192];
        let k = ucs2::encode(&text, &mut back).expect("ucs-2 encodes");
        assert_eq!(&back[..k], data);
        round_trip(Encoding::Ucs2, &text);
    }

    // UDH: parse, re-emit, walk the IEs; the concat IE emits back to the same values.
    if let Ok((h, rest)) = Udh::parse(data) {
        let mut buf = [0u8; 300];
        let n = h.emit(&mut buf).expect("re-emit");
        assert_eq!(&buf[..n], &data[..n]);
        assert_eq!(n + rest.len(), data.len());
        let ies: Vec<_> = h.ies().collect();
        let m = udh::emit(&ies, &mut buf).expect("emit ies");
        assert_eq!(&buf[..m], &data[..n]);
        if let Some(c) = h.concat() {
            let k = udh::emit_concat(&c, &mut buf).expect("emit concat");
            let (again, _) = Udh::parse(&buf[..k]).expect("parse concat");
            assert_eq!(again.concat(), Some(c));
        }
        let _ = h.to_string();
        let count = gsm7::max_septets_in(rest.len(), h.fill_bits());
        let _ = gsm7::decode_packed(rest, count, h.fill_bits(), &mut out);
    }
});
