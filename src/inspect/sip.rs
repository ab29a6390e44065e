//! `iwf inspect sip <FILE|->`: a SIP message with its start line, headers, the fields
//! iwf relies on, and — when the body is `message/cpim` — the CPIM headers, the IMDN
//! headers and, for a notification, the IMDN XML.

use crate::wire::cpim::{self, CpimMessage, Dispositions, EMPTY_HEADER};
use crate::wire::imdn::{Imdn, XmlText};
use crate::wire::sip::{Header, Parser, StartLine};
use serde_json::{json, Map, Value};

const MAX_HEADERS: usize = 64;
const MAX_CPIM_HEADERS: usize = 32;

fn text(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => json!(s),
        Err(_) => json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
    }
}

fn xml_text(t: &XmlText<'_>) -> Value {
    let bytes: Vec<u8> = t.bytes().collect();
    text(&bytes)
}

fn dispositions(d: Dispositions) -> Value {
    let mut v = Vec::new();
    for (flag, name) in [
        (Dispositions::POSITIVE_DELIVERY, "positive-delivery"),
        (Dispositions::NEGATIVE_DELIVERY, "negative-delivery"),
        (Dispositions::PROCESSING, "processing"),
        (Dispositions::DISPLAY, "display"),
    ] {
        if d.contains(flag) {
            v.push(json!(name));
        }
    }
    if d.has_unknown() {
        v.push(json!("(unknown values ignored)"));
    }
    Value::Array(v)
}

fn cpim_json(m: &CpimMessage<'_, '_>) -> Value {
    let mut out = Map::new();
    out.insert(
        "headers".into(),
        m.message_headers
            .iter()
            .map(|h| {
                let mut name = Vec::new();
                if !h.prefix.is_empty() {
                    name.extend_from_slice(h.prefix);
                    name.push(b'.');
                }
                name.extend_from_slice(h.name);
                json!({ "name": text(&name), "namespace": text(h.namespace), "value": text(h.value) })
            })
            .collect(),
    );
    let addr = |r: Result<cpim::CpimAddress<'_>, cpim::CpimError>| match r {
        Ok(a) => json!({ "display": text(a.display), "uri": text(a.uri) }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    out.insert("from".into(), addr(m.from()));
    out.insert("to".into(), addr(m.to()));
    out.insert(
        "datetime".into(),
        match m.datetime() {
            Ok(Some(d)) => json!({ "text": d.to_string(), "unix": d.unix_seconds() }),
            Ok(None) => Value::Null,
            Err(e) => json!({ "error": e.to_string() }),
        },
    );
    out.insert("imdn.Message-ID".into(), m.message_id().map(text).unwrap_or(Value::Null));
    out.insert("imdn.Disposition-Notification".into(), dispositions(m.dispositions()));
    out.insert("imdn.IMDN-Record-Route".into(), m.imdn_record_routes().map(addr).collect());
    out.insert("imdn.IMDN-Route".into(), m.imdn_routes().map(addr).collect());
    out.insert(
        "imdn.Original-To".into(),
        match m.original_to() {
            Ok(Some(a)) => addr(Ok(a)),
            Ok(None) => Value::Null,
            Err(e) => json!({ "error": e.to_string() }),
        },
    );
    out.insert(
        "content_headers".into(),
        m.content_headers.iter().map(|h| json!({ "name": text(h.name), "value": text(h.value) })).collect(),
    );
    out.insert("content_length".into(), json!(m.content.len()));
    let ct = m.content_type().unwrap_or(b"");
    if starts_with_ignore_case(ct, b"message/imdn+xml") {
        out.insert(
            "imdn".into(),
            match Imdn::parse(m.content) {
                Ok(i) => json!({
                    "message_id": xml_text(&i.message_id),
                    "datetime": i.datetime.to_string(),
                    "notification": i.notification.element_name(),
                    "status": i.notification.status_name(),
                    "recipient_uri": i.recipient_uri.as_ref().map(xml_text),
                    "original_recipient_uri": i.original_recipient_uri.as_ref().map(xml_text),
                    "subject": i.subject.as_ref().map(xml_text),
                }),
                Err(e) => json!({ "error": e.to_string() }),
            },
        );
    } else if starts_with_ignore_case(ct, b"text/") {
        out.insert("text".into(), text(m.content));
    }
    Value::Object(out)
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Inspects one SIP message (datagram framing: the body is the rest of the input).
pub fn inspect_sip(input: &[u8]) -> Result<Value, String> {
    let mut headers = [Header::EMPTY; MAX_HEADERS];
    let msg = Parser::datagram().parse(input, &mut headers).map_err(|e| format!("not a SIP message: {e}"))?;
    let msg = match msg {
        crate::wire::sip::Status::Complete(_, m) => m,
        crate::wire::sip::Status::Partial => return Err("not a SIP message: truncated".into()),
    };
    let mut out = Map::new();
    match &msg.start_line {
        StartLine::Request(r) => {
            out.insert("kind".into(), json!("request"));
            out.insert("method".into(), json!(r.method.as_str()));
            out.insert("request_uri".into(), json!(r.uri));
        }
        StartLine::Response(s) => {
            out.insert("kind".into(), json!("response"));
            out.insert("status".into(), json!(s.code));
            out.insert("reason".into(), json!(s.reason));
        }
    }
    out.insert("summary".into(), json!(msg.to_string()));
    out.insert("headers".into(), msg.headers.iter().map(|h| json!({ "name": h.name, "value": h.value })).collect());
    match msg.validate() {
        Ok(core) => {
            out.insert("valid".into(), json!(true));
            out.insert("call_id".into(), json!(core.call_id));
            out.insert("cseq".into(), json!({ "number": core.cseq.number, "method": core.cseq.method.as_str() }));
            out.insert("from".into(), json!({ "uri": core.from.uri.as_str(), "tag": core.from.tag() }));
            out.insert("to".into(), json!({ "uri": core.to.uri.as_str(), "tag": core.to.tag() }));
            out.insert("via_branch".into(), json!(core.top_via.branch()));
        }
        Err(e) => {
            out.insert("valid".into(), json!(false));
            out.insert("error".into(), json!(e.to_string()));
        }
    }
    out.insert("body_length".into(), json!(msg.body.len()));
    match msg.content_type() {
        Ok(Some(ct)) if ct.is("message", "cpim") => {
            let mut ch = [EMPTY_HEADER; MAX_CPIM_HEADERS];
            out.insert(
                "cpim".into(),
                match cpim::parse(msg.body, &mut ch) {
                    Ok(m) => cpim_json(&m),
                    Err(e) => json!({ "error": e.to_string() }),
                },
            );
        }
        Ok(Some(ct)) if ct.type_name.eq_ignore_ascii_case("text") => {
            out.insert("text".into(), text(msg.body));
        }
        _ => {}
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imdn_message() -> String {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>0123456789abcdefghijklmnopqrstuv</message-id><datetime>2026-11-26T12:00:00Z</datetime><delivery-notification><status><delivered/></status></delivery-notification></imdn>";
        let cpim = format!(
            "From: <sip:+447700900123@ims.lab;user=phone>\r\nTo: <sip:+447000111222@iwf.ims.lab;user=phone>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: 34jk324j\r\nDateTime: 2026-11-26T12:00:05Z\r\n\r\n\
Content-Type: message/imdn+xml\r\nContent-Disposition: notification\r\nContent-Length: {}\r\n\r\n{xml}",
            xml.len()
        );
        format!(
            "MESSAGE sip:+447000111222@iwf.ims.lab SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\nFrom: <sip:+447700900123@ims.lab;user=phone>;tag=49583\r\nTo: <sip:+447000111222@iwf.ims.lab;user=phone>\r\n\
Call-ID: a84b4c76e66710@198.18.2.1\r\nCSeq: 1 MESSAGE\r\nContent-Type: message/cpim\r\nContent-Length: {}\r\n\r\n{cpim}",
            cpim.len()
        )
    }

    #[test]
    fn imdn_is_dissected() {
        let v = inspect_sip(imdn_message().as_bytes()).unwrap();
        assert_eq!(v["method"], "MESSAGE");
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["cpim"]["imdn.Message-ID"], "34jk324j", "{v:#}");
        assert_eq!(v["cpim"]["imdn"]["message_id"], "0123456789abcdefghijklmnopqrstuv");
        assert_eq!(v["cpim"]["imdn"]["notification"], "delivery-notification");
        assert_eq!(v["cpim"]["imdn"]["status"], "delivered");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(inspect_sip(b"hello world").unwrap_err().starts_with("not a SIP message"));
        assert!(inspect_sip(b"").is_err());
    }
}
