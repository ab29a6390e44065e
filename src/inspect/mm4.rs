//! `iwf inspect mm4`: an MM4 message (3GPP TS 23.140 §8.4) as JSON: its type, ids,
//! addresses, requests, status codes and parts.
use crate::wire::mm4::Mm4;
use serde_json::{json, Value};

/// The longest text part shown whole; longer ones and binary parts show their size.
const TEXT_SHOWN: usize = 1024;

/// Inspects one MM4 message (an RFC 5322 message as an MMS relay sends it).
pub fn inspect_mm4(input: &[u8]) -> Result<Value, String> {
    let m = Mm4::parse(input)
        .map_err(|e| format!("not an MM4 message: {e} (a relay would answer {})", e.request_status().as_str()))?;
    let parts: Vec<Value> = m
        .parts
        .iter()
        .map(|p| {
            let text = p.content_type.starts_with("text/") && p.body.len() <= TEXT_SHOWN;
            json!({
                "content_type": p.content_type,
                "content_id": p.content_id,
                "name": p.name,
                "octets": p.body.len(),
                "text": text.then(|| String::from_utf8_lossy(&p.body).into_owned()),
            })
        })
        .collect();
    Ok(json!({
        "type": m.kind.as_str(),
        "version": m.version,
        "transaction_id": m.transaction_id,
        "message_id": m.message_id,
        "from": m.from.as_ref().map(ToString::to_string),
        "to": m.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "sender": m.sender,
        "originator_system": m.originator_system,
        "subject": m.subject,
        "date": m.date,
        "ack_request": m.ack_request,
        "delivery_report": m.delivery_report,
        "read_reply": m.read_reply,
        "request_status": m.request_status.map(|s| s.as_str()),
        "status_text": m.status_text,
        "mm_status": m.mm_status.map(|s| s.as_str()),
        "read_status": m.read_status.map(|s| s.as_str()),
        "content_type": m.content_type,
        "parts": parts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_report_and_a_refusal() {
        let report = b"X-Mms-3GPP-MMS-Version: 6.10.0\r\nX-Mms-Message-Type: MM4_delivery_report.REQ\r\nX-Mms-Transaction-ID: t2\r\nX-Mms-Message-ID: m1\r\nFrom: +447000200001/TYPE=PLMN@iwf.ims.lab\r\nTo: +447000400001/TYPE=PLMN@mmsc-m.lab\r\nX-Mms-MM-Status-Code: Retrieved\r\n\r\n";
        let v = inspect_mm4(report).unwrap();
        assert_eq!(v["type"], "MM4_delivery_report.REQ");
        assert_eq!(v["mm_status"], "Retrieved");
        assert_eq!(v["to"][0], "+447000400001/TYPE=PLMN@mmsc-m.lab");
        assert_eq!(v["parts"].as_array().map(Vec::len), Some(0));
        let e = inspect_mm4(b"Subject: hi\r\n\r\nbody").unwrap_err();
        assert!(e.contains("X-Mms-Message-Type") && e.contains("Error-message-format-corrupt"), "{e}");
    }
}
