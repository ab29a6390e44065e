//! Fuzzes MM4 reading (RFC 5322 and MIME through mail-parser, the X-Mms-* fields,
//! MMS addresses), a converged content's split into MMS parts, and writing: whatever
//! parses is answered and forwarded again, and what iwf writes must read back with the
//! same parts.
#![no_main]

use iwf::wire::mm4::{self, Envelope, Forward, Mm4, MmsAddress, RequestStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = MmsAddress::parse(text);
    }
    // A converged user's content becoming an MMS's parts (its Content-Type on the first
    // line, the content after it).
    if let Some(at) = data.iter().position(|b| *b == b'\n') {
        if let (Ok(content_type), Some(content)) = (core::str::from_utf8(&data[..at]), data.get(at + 1..)) {
            let _ = mm4::entity_parts(content_type, content);
        }
    }
    let Ok(m) = Mm4::parse(data) else { return };
    let e = Envelope { transaction_id: "t", sender: "system@iwf.lab", rfc_message_id: "r@iwf.lab", date: 0 };
    let res = mm4::forward_res(&e, &m, RequestStatus::Ok, m.status_text.as_deref());
    assert!(Mm4::parse(&res).is_ok(), "a response iwf wrote does not read back");
    let (Some(from), false) = (m.from.as_ref(), m.parts.is_empty()) else { return };
    let f = Forward {
        message_id: "m@iwf.lab",
        from,
        to: &m.to,
        subject: m.subject.as_deref(),
        originator_system: "system@iwf.lab",
        delivery_report: m.delivery_report,
        read_reply: m.read_reply,
        ack_request: m.ack_request,
        parts: &m.parts,
    };
    let again = Mm4::parse(&mm4::forward_req(&e, &f)).expect("a forward iwf wrote does not read back");
    assert_eq!(again.parts.len(), m.parts.len());
});
