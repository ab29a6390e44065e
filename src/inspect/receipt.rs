//! `iwf inspect receipt`: dissects an SMPP delivery-receipt text (SMPP 3.4 Appendix B and
//! its field variants) and shows the mapped `message_state` and the canonical re-emitted
//! form.

use serde_json::{json, Map, Value};

use crate::wire::smpp::receipt::{Receipt, ReceiptDate, RECEIPT_MAX_LEN};

fn lossy(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn date(d: Option<ReceiptDate>) -> Value {
    match d {
        None => Value::Null,
        Some(d) => json!({
            "raw": d.to_string(),
            "year": 2000 + u16::from(d.yy),
            "month": d.mm,
            "day": d.dd,
            "hour": d.hh,
            "minute": d.mi,
            "second": d.ss,
        }),
    }
}

/// The JSON description of a parsed receipt (shared with the SMPP dissector, which
/// shows the receipt inside a deliver_sm).
pub(crate) fn receipt_json(r: &Receipt<'_>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), r.id.map_or(Value::Null, lossy));
    m.insert("sub".into(), json!(r.sub));
    m.insert("dlvrd".into(), json!(r.dlvrd));
    m.insert("submit_date".into(), date(r.submit_date));
    m.insert("done_date".into(), date(r.done_date));
    m.insert("stat".into(), json!(r.stat.map(|s| s.as_str())));
    m.insert("err".into(), r.err.map_or(Value::Null, lossy));
    m.insert("err_code".into(), json!(r.err_code()));
    m.insert("text".into(), r.text.map_or(Value::Null, lossy));
    m.insert(
        "message_state".into(),
        match r.message_state() {
            None => Value::Null,
            Some(s) => json!({ "value": u8::from(s), "name": s.name(), "final": s.is_final() }),
        },
    );
    let mut buf = [0u8; RECEIPT_MAX_LEN];
    match r.emit(&mut buf) {
        Ok(n) => {
            m.insert("canonical".into(), lossy(buf.get(..n).unwrap_or(&[])));
        }
        Err(e) => {
            m.insert("canonical".into(), Value::Null);
            m.insert("canonical_error".into(), Value::String(e.to_string()));
        }
    }
    Value::Object(m)
}

/// Parses a receipt text and describes it: every field, the mapped `message_state`,
/// and the canonical Appendix-B text (or why it cannot be produced). A text with no
/// receipt field, or a malformed count/date/stat, is a one-line error.
pub fn inspect_receipt(text: &[u8]) -> Result<Value, String> {
    let r = Receipt::parse(text).map_err(|e| e.to_string())?;
    Ok(receipt_json(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_a_receipt() {
        let v = inspect_receipt(
            b"id:4F2A sub:001 dlvrd:001 submit date:240101120030 done date:2401011201 stat:delivrd err:0 Text:hi",
        )
        .unwrap();
        assert_eq!(v["id"], "4F2A");
        assert_eq!(v["sub"], 1);
        assert_eq!(v["submit_date"]["second"], 30);
        assert_eq!(v["submit_date"]["year"], 2024);
        assert_eq!(v["stat"], "DELIVRD");
        assert_eq!(v["err_code"], 0);
        assert_eq!(v["message_state"]["name"], "DELIVERED");
        assert_eq!(v["message_state"]["value"], 2);
        assert_eq!(
            v["canonical"],
            "id:4F2A sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:hi"
        );
    }

    #[test]
    fn incomplete_receipt_has_no_canonical_form() {
        let v = inspect_receipt(b"id:77 stat:UNDELIV").unwrap();
        assert_eq!(v["message_state"]["name"], "UNDELIVERABLE");
        assert_eq!(v["canonical"], Value::Null);
        assert_eq!(v["canonical_error"], "receipt has no submit date");
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(inspect_receipt(b"hello").unwrap_err(), "not a delivery receipt: no receipt field found");
        let e = inspect_receipt(b"id:1 done date:9913011200").unwrap_err();
        assert_eq!(e, "receipt done date is not a valid YYMMDDhhmm[ss] date");
    }
}
