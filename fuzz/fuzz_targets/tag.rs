#![no_main]
//! Tag decoding must never panic; every tag iwf encodes must verify to the same fields.
use iwf::tag::{KeyRing, Originator, Parties, ReceiptRequest, TagFields, TagKey, MAX_MINUTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut ring = KeyRing::new(1).expect("key id");
    ring.insert(1, TagKey::from_bytes([0x5a; 16])).expect("key");
    let _ = iwf::tag::decode_unauthenticated(data);
    let p = Parties::new(Originator::Number("447000100001"), "447900000001").expect("parties");
    let _ = ring.verify(data, 1_790_000_000, &[p, Parties::NONE]);
    if data.len() >= 12 {
        let count = data[10].max(1);
        let f = TagFields {
            system: u16::from_be_bytes([data[0], data[1]]),
            minutes: u32::from_be_bytes([0, data[2], data[3], data[4]]) & MAX_MINUTES,
            sequence: u32::from_be_bytes([data[5], data[6], data[7], data[8]]),
            segment_index: data[9] % count.saturating_add(1).max(1),
            segment_count: count,
            receipts: ReceiptRequest::from_bits(data[11]),
            parties: p,
        };
        let t = ring.encode(&f).expect("signing key present");
        assert_eq!(ring.verify(t.as_bytes(), f.issued_unix(), &[Parties::NONE, p]), Ok(f));
    }
});
