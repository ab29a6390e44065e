//! Fuzzes the SMPP codec: stream framing, parsing of every PDU type, typed TLV accessors,
//! and parse → emit → parse round trips (emit must reproduce the input exactly).
#![no_main]

use iwf::wire::smpp::{frame, Body, Packet, Pdu, Receipt, SMPP_MAX_PDU_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The header view never panics, checked or not.
    let view = Packet::new_unchecked(data);
    let _ = (
        view.command_length(),
        view.command_id(),
        view.command_status(),
        view.body(),
    );
    let _ = Packet::new_checked(data);

    // Treat the input as a TCP stream: frame PDUs one after another.
    let mut rest = data;
    let mut out = vec![0u8; data.len()];
    while let Ok(Some(len)) = frame(rest, SMPP_MAX_PDU_LEN) {
        let (pdu_bytes, next) = rest.split_at(len);
        rest = next;
        let Ok(pdu) = Pdu::parse(pdu_bytes) else {
            continue;
        };
        let _ = pdu.to_string();

        // Exercise the typed TLV accessors.
        let tlvs = pdu.body.tlvs();
        let _ = tlvs.receipted_message_id();
        let _ = tlvs.message_state();
        let _ = tlvs.network_error_code();
        let _ = tlvs.user_message_reference();
        let _ = tlvs.sar_msg_ref_num();
        let _ = tlvs.sar_total_segments();
        let _ = tlvs.sar_segment_seqnum();
        let _ = tlvs.sc_interface_version();
        let _ = tlvs.ms_validity();
        if let Body::DeliverSm(sm) = pdu.body {
            let _ = Receipt::parse(sm.payload());
        }

        // parse → emit reproduces the bytes; emit → parse gives the same PDU.
        assert_eq!(pdu.buffer_len(), len);
        let n = pdu.emit(&mut out[..]).expect("a parsed PDU re-emits");
        assert_eq!(&out[..n], pdu_bytes);
        let again = Pdu::parse(&out[..n]).expect("an emitted PDU parses");
        assert_eq!(again, pdu);
        // A buffer one byte short is an error, never a panic.
        assert!(pdu.emit(&mut out[..n - 1]).is_err());
    }
});
