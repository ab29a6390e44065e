//! Fuzzes the delivery-receipt text: tolerant parse, canonical emit, and that the
//! canonical form parses back to the same id/stat/dates and is a fixed point.
#![no_main]

use iwf::wire::smpp::receipt::{Receipt, RECEIPT_MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = Receipt::parse(data) else { return };
    let _ = r.message_state();
    let _ = r.err_code();
    let _ = r.to_string();
    let mut buf = [0u8; RECEIPT_MAX_LEN];
    let Ok(n) = r.emit(&mut buf) else { return };
    assert_eq!(r.buffer_len(), Ok(n));
    let back = Receipt::parse(&buf[..n]).expect("canonical receipt parses");
    assert_eq!(back.id, r.id);
    assert_eq!(back.stat, r.stat);
    assert_eq!(back.message_state(), r.message_state());
    assert_eq!(back.submit_date, r.submit_date.map(|d| d.without_seconds()));
    assert_eq!(back.done_date, r.done_date.map(|d| d.without_seconds()));
    if let (Some(a), Some(b)) = (r.sub, back.sub) {
        assert_eq!(a, b);
    }
    let text = back.text.unwrap_or(&[]);
    assert!(r.text.unwrap_or(&[]).starts_with(text));
    let mut again = [0u8; RECEIPT_MAX_LEN];
    let m = back.emit(&mut again).expect("canonical receipt re-emits");
    assert_eq!(&buf[..n], &again[..m]);
});
