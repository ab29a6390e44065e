//! `iwf inspect smpp`: dissects one SMPP PDU (header, command and status names, every
//! mandatory field, every TLV typed where known) into JSON.

use serde_json::{json, Map, Value};

use crate::wire::smpp::pdu::{Address, Bind, BindResp, Body, DataSm, MessageIdResp, Pdu, SubmitSm};
use crate::wire::smpp::receipt::Receipt;
use crate::wire::smpp::tlv::{Tlv, Tlvs, RECEIPTED_MESSAGE_ID_MAX};
use crate::wire::smpp::TlvTag;
use crate::wire::smpp::{EsmClass, RegisteredDelivery};
use crate::wire::sms::udh::{self, InformationElement, Udh};
use crate::wire::sms::{DataCoding, Encoding};

fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn string(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn address(a: &Address<'_>) -> Value {
    json!({ "ton": a.ton, "npi": a.npi, "addr": string(a.addr) })
}

fn esm_class(e: EsmClass) -> Value {
    json!({
        "value": format!("0x{:02x}", e.0),
        "messaging_mode": format!("{:?}", e.messaging_mode()),
        "message_type": format!("{:?}", e.message_type()),
        "udhi": e.udhi(),
        "reply_path": e.reply_path(),
    })
}

fn registered_delivery(r: RegisteredDelivery) -> Value {
    json!({
        "value": format!("0x{:02x}", r.0),
        "smsc_receipt": format!("{:?}", r.smsc_receipt()),
        "sme_ack": format!("{:?}", r.sme_ack()),
        "intermediate": r.intermediate(),
    })
}

/// Octets shown as hex, plus text when they are valid UTF-8.
fn octets(bytes: &[u8]) -> Value {
    let mut m = Map::new();
    m.insert("length".into(), json!(bytes.len()));
    m.insert("hex".into(), Value::String(hex(bytes)));
    if let Ok(s) = core::str::from_utf8(bytes) {
        m.insert("text".into(), Value::String(s.to_owned()));
    }
    Value::Object(m)
}

/// One TLV, typed where the tag is known.
fn tlv(t: &Tlv<'_>) -> Value {
    let typed: Result<Value, String> = match t.tag {
        TlvTag::RECEIPTED_MESSAGE_ID => t.as_cstring(RECEIPTED_MESSAGE_ID_MAX).map(string).map_err(|e| e.to_string()),
        TlvTag::MESSAGE_STATE => {
            t.as_message_state().map(|s| json!({ "value": u8::from(s), "name": s.name() })).map_err(|e| e.to_string())
        }
        TlvTag::NETWORK_ERROR_CODE => t
            .as_network_error_code()
            .map(|n| json!({ "network_type": n.network_type, "error_code": n.error_code }))
            .map_err(|e| e.to_string()),
        TlvTag::MESSAGE_PAYLOAD => Ok(octets(t.value)),
        TlvTag::USER_MESSAGE_REFERENCE | TlvTag::SAR_MSG_REF_NUM | TlvTag::SOURCE_PORT | TlvTag::DESTINATION_PORT => {
            t.as_u16().map(|v| json!(v)).map_err(|e| e.to_string())
        }
        TlvTag::SAR_TOTAL_SEGMENTS
        | TlvTag::SAR_SEGMENT_SEQNUM
        | TlvTag::SC_INTERFACE_VERSION
        | TlvTag::PAYLOAD_TYPE
        | TlvTag::MS_AVAILABILITY_STATUS
        | TlvTag::DELIVERY_FAILURE_REASON
        | TlvTag::MORE_MESSAGES_TO_SEND
        | TlvTag::PRIVACY_INDICATOR
        | TlvTag::DPF_RESULT
        | TlvTag::SET_DPF
        | TlvTag::LANGUAGE_INDICATOR
        | TlvTag::USSD_SERVICE_OP => t.as_u8().map(|v| json!(v)).map_err(|e| e.to_string()),
        TlvTag::ADDITIONAL_STATUS_INFO_TEXT => t.as_cstring(256).map(string).map_err(|e| e.to_string()),
        _ => Ok(Value::String(hex(t.value))),
    };
    let mut m = Map::new();
    m.insert("tag".into(), Value::String(format!("0x{:04x}", t.tag.0)));
    m.insert("name".into(), json!(t.tag.name()));
    m.insert("length".into(), json!(t.value.len()));
    match typed {
        Ok(v) => {
            m.insert("value".into(), v);
        }
        Err(e) => {
            m.insert("value".into(), Value::String(hex(t.value)));
            m.insert("error".into(), Value::String(e));
        }
    }
    Value::Object(m)
}

fn tlvs(t: &Tlvs<'_>) -> Value {
    // Parsed areas are validated, so the iterator yields no errors here.
    Value::Array(t.iter().map_while(Result::ok).map(|t| tlv(&t)).collect())
}

fn bind(b: &Bind<'_>) -> Value {
    json!({
        "system_id": string(b.system_id),
        "password": string(b.password),
        "system_type": string(b.system_type),
        "interface_version": format!("0x{:02x}", b.interface_version),
        "addr_ton": b.addr_ton,
        "addr_npi": b.addr_npi,
        "address_range": string(b.address_range),
    })
}

fn bind_resp(b: &BindResp<'_>) -> Value {
    json!({ "system_id": b.system_id.map(string) })
}

fn message_id_resp(r: &MessageIdResp<'_>) -> Value {
    json!({ "message_id": r.message_id.map(string) })
}

/// One UDH information element, named and typed where known (3GPP TS 23.040 §9.2.3.24).
fn information_element(ie: &InformationElement<'_>) -> Value {
    let d = ie.data;
    let typed = match (ie.id, d) {
        (udh::IEI_CONCAT_8, [r, t, q]) => {
            Some(json!({ "name": "concatenation, 8-bit reference", "reference": r, "total": t, "seq": q }))
        }
        (udh::IEI_CONCAT_16, [r1, r2, t, q]) => Some(json!({
            "name": "concatenation, 16-bit reference",
            "reference": u16::from_be_bytes([*r1, *r2]),
            "total": t,
            "seq": q,
        })),
        (0x04, [dst, src]) => Some(json!({ "name": "application port, 8-bit", "destination": dst, "source": src })),
        (0x05, [d1, d2, s1, s2]) => Some(json!({
            "name": "application port, 16-bit",
            "destination": u16::from_be_bytes([*d1, *d2]),
            "source": u16::from_be_bytes([*s1, *s2]),
        })),
        _ => None,
    };
    let mut m = match typed {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.insert("iei".into(), Value::String(format!("0x{:02x}", ie.id)));
    m.insert("data".into(), Value::String(hex(d)));
    Value::Object(m)
}

/// The user data of a message PDU: its UDH (when `esm_class` says UDHI), the SAR TLVs'
/// concatenation, and the text as `data_coding` says (GSM 7-bit unpacked, as SMPP
/// carries it, for the SMSC default 0; UCS-2 with its surrogate pairs; Latin-1; IA5).
fn user_data(esm: EsmClass, data_coding: u8, payload: &[u8], tlvs: &Tlvs<'_>) -> Value {
    let mut m = Map::new();
    let mut text = payload;
    if esm.udhi() {
        match Udh::parse(payload) {
            Ok((h, rest)) => {
                let ies: Vec<Value> = h.ies().map(|ie| information_element(&ie)).collect();
                m.insert("udh".into(), json!({ "length": payload.len() - rest.len(), "ies": ies }));
                text = rest;
            }
            Err(e) => {
                m.insert("udh".into(), json!({ "error": e.to_string() }));
                return Value::Object(m);
            }
        }
    }
    if let (Ok(Some(r)), Ok(Some(t)), Ok(Some(q))) =
        (tlvs.sar_msg_ref_num(), tlvs.sar_total_segments(), tlvs.sar_segment_seqnum())
    {
        m.insert("sar".into(), json!({ "reference": r, "total": t, "seq": q }));
    }
    let dc = DataCoding::from_u8(data_coding);
    match dc.text_encoding(Encoding::Gsm7) {
        Some(encoding) => {
            m.insert("encoding".into(), Value::String(encoding.to_string()));
            let mut out = vec![0u8; text.len() * 2 + 4];
            match encoding.decode(text, &mut out) {
                Ok(n) => {
                    m.insert("text".into(), string(out.get(..n).unwrap_or(&[])));
                }
                Err(e) => {
                    m.insert("text_error".into(), Value::String(e.to_string()));
                }
            }
        }
        None => {
            m.insert("encoding".into(), Value::String("binary".into()));
            m.insert("data".into(), Value::String(hex(text)));
        }
    }
    Value::Object(m)
}

fn submit_sm(s: &SubmitSm<'_>) -> Value {
    let mut m = Map::new();
    m.insert("service_type".into(), string(s.service_type));
    m.insert("source".into(), address(&s.source));
    m.insert("destination".into(), address(&s.destination));
    m.insert("esm_class".into(), esm_class(s.esm_class));
    m.insert("protocol_id".into(), json!(s.protocol_id));
    m.insert("priority_flag".into(), json!(s.priority_flag));
    m.insert("schedule_delivery_time".into(), string(s.schedule_delivery_time));
    m.insert("validity_period".into(), string(s.validity_period));
    m.insert("registered_delivery".into(), registered_delivery(s.registered_delivery));
    m.insert("replace_if_present_flag".into(), json!(s.replace_if_present_flag));
    m.insert("data_coding".into(), Value::String(format!("0x{:02x}", s.data_coding)));
    m.insert("sm_default_msg_id".into(), json!(s.sm_default_msg_id));
    m.insert("sm_length".into(), json!(s.short_message.len()));
    m.insert("short_message".into(), octets(s.short_message));
    m.insert("user_data".into(), user_data(s.esm_class, s.data_coding, s.payload(), &s.tlvs));
    if s.esm_class.is_receipt() {
        m.insert(
            "receipt".into(),
            match Receipt::parse(s.payload()) {
                Ok(r) => super::receipt::receipt_json(&r),
                Err(e) => json!({ "error": e.to_string() }),
            },
        );
    }
    Value::Object(m)
}

fn data_sm(d: &DataSm<'_>) -> Value {
    json!({
        "service_type": string(d.service_type),
        "source": address(&d.source),
        "destination": address(&d.destination),
        "esm_class": esm_class(d.esm_class),
        "registered_delivery": registered_delivery(d.registered_delivery),
        "data_coding": format!("0x{:02x}", d.data_coding),
        "user_data": user_data(d.esm_class, d.data_coding, d.tlvs.message_payload().unwrap_or(&[]), &d.tlvs),
    })
}

/// Parses exactly one SMPP PDU (its `command_length` must match the input; trailing
/// bytes are an error) and describes it. Malformed input is a one-line error.
pub fn inspect_smpp(pdu: &[u8]) -> Result<Value, String> {
    let p = Pdu::parse(pdu).map_err(|e| e.to_string())?;
    let id = p.command_id();
    let body = match &p.body {
        Body::BindReceiver(b) | Body::BindTransmitter(b) | Body::BindTransceiver(b) => bind(b),
        Body::BindReceiverResp(b) | Body::BindTransmitterResp(b) | Body::BindTransceiverResp(b) => bind_resp(b),
        Body::Outbind(o) => {
            json!({ "system_id": string(o.system_id), "password": string(o.password) })
        }
        Body::SubmitSm(s) | Body::DeliverSm(s) => submit_sm(s),
        Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) => message_id_resp(r),
        Body::DataSm(d) => data_sm(d),
        Body::AlertNotification(a) => {
            json!({ "source": address(&a.source), "esme": address(&a.esme) })
        }
        Body::Other { body, .. } => json!({ "raw": hex(body) }),
        Body::Unbind | Body::UnbindResp | Body::EnquireLink | Body::EnquireLinkResp | Body::GenericNack => json!({}),
    };
    Ok(json!({
        "summary": p.to_string(),
        "command_length": pdu.len(),
        "command_id": format!("0x{:08x}", id.value()),
        "command": id.name(),
        "command_status": format!("0x{:08x}", p.command_status.0),
        "status": p.command_status.name(),
        "status_description": p.command_status.description(),
        "sequence_number": p.sequence_number,
        "body": body,
        "tlvs": tlvs(&p.body.tlvs()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::smpp::{MessageState, TlvWriter};

    fn receipt_pdu() -> Vec<u8> {
        let text =
            b"id:1A2B sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:hello";
        let mut area = [0u8; 64];
        let mut w = TlvWriter::new(&mut area);
        w.receipted_message_id(b"1A2B").unwrap();
        w.message_state(MessageState::Delivered).unwrap();
        w.tlv(TlvTag(0x1401), &[0xAB]).unwrap();
        w.u8(TlvTag::MESSAGE_STATE, 0).unwrap();
        w.tlv(TlvTag::SAR_MSG_REF_NUM, &[1]).unwrap();
        let pdu = Pdu::new(
            9,
            Body::DeliverSm(SubmitSm {
                source: Address::international(b"447700900456"),
                destination: Address::international(b"447700900123"),
                esm_class: EsmClass(EsmClass::SMSC_DELIVERY_RECEIPT),
                short_message: text,
                tlvs: Tlvs::Raw(w.as_bytes()),
                ..SubmitSm::default()
            }),
        );
        let mut buf = vec![0u8; pdu.buffer_len()];
        pdu.emit(&mut buf).unwrap();
        buf
    }

    #[test]
    fn describes_a_receipt_deliver_sm() {
        let v = inspect_smpp(&receipt_pdu()).unwrap();
        assert_eq!(v["command"], "deliver_sm");
        assert_eq!(v["command_id"], "0x00000005");
        assert_eq!(v["status"], "ESME_ROK");
        assert_eq!(v["sequence_number"], 9);
        assert_eq!(v["body"]["source"]["addr"], "447700900456");
        assert_eq!(v["body"]["esm_class"]["message_type"], "SmscDeliveryReceipt");
        assert_eq!(v["body"]["receipt"]["stat"], "DELIVRD");
        assert_eq!(v["body"]["receipt"]["message_state"]["name"], "DELIVERED");
        let tlvs = v["tlvs"].as_array().unwrap();
        assert_eq!(tlvs.len(), 5);
        assert_eq!(tlvs[0]["name"], "receipted_message_id");
        assert_eq!(tlvs[0]["value"], "1A2B");
        assert_eq!(tlvs[1]["value"]["name"], "DELIVERED");
        assert_eq!(tlvs[2]["name"], Value::Null);
        assert_eq!(tlvs[2]["value"], "ab");
        assert_eq!(tlvs[3]["value"]["name"], "SCHEDULED");
        // A known tag with a bad length: hex plus the error.
        assert_eq!(tlvs[4]["value"], "01");
        assert!(tlvs[4]["error"].as_str().unwrap().contains("bad value length"));
    }

    #[test]
    fn describes_a_bodyless_error_response() {
        let bytes = [0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 3];
        let v = inspect_smpp(&bytes).unwrap();
        assert_eq!(v["command"], "submit_sm_resp");
        assert_eq!(v["status"], "ESME_RTHROTTLED");
        assert_eq!(v["body"]["message_id"], Value::Null);
        assert_eq!(v["summary"], "SMPP submit_sm_resp seq=3 status=ESME_RTHROTTLED");
    }

    #[test]
    fn unknown_command_is_described() {
        let bytes = [0, 0, 0, 18, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 1, 0xCA, 0xFE];
        let v = inspect_smpp(&bytes).unwrap();
        assert_eq!(v["command"], Value::Null);
        assert_eq!(v["command_id"], "0x00001234");
        assert_eq!(v["body"]["raw"], "cafe");
    }

    #[test]
    fn errors_are_one_line() {
        let mut bytes = receipt_pdu();
        bytes.push(0);
        let e = inspect_smpp(&bytes).unwrap_err();
        assert!(e.starts_with("SMPP command_length"), "{e}");
        assert!(!e.contains('\n'));
        assert_eq!(inspect_smpp(&[0, 0]).unwrap_err(), "SMPP header truncated: 2 of 16 bytes");
    }

    fn submit(esm: u8, data_coding: u8, short_message: &[u8], tlvs: &[u8]) -> Value {
        let pdu = Pdu::new(
            3,
            Body::SubmitSm(SubmitSm {
                source: Address::international(b"447700900456"),
                destination: Address::international(b"447700900123"),
                esm_class: EsmClass(esm),
                data_coding,
                short_message,
                tlvs: Tlvs::Raw(tlvs),
                ..SubmitSm::default()
            }),
        );
        let mut buf = vec![0u8; pdu.buffer_len()];
        pdu.emit(&mut buf).unwrap();
        inspect_smpp(&buf).unwrap()["body"]["user_data"].clone()
    }

    #[test]
    fn user_data_headers_are_dissected() {
        // 8-bit concatenation 0x2a part 2 of 3, GSM 7-bit (unpacked) with an escape: €.
        let mut sm = vec![0x05, 0x00, 0x03, 0x2a, 0x03, 0x02];
        sm.extend_from_slice(&[0x48, 0x69, 0x20, 0x1b, 0x65]);
        let u = submit(EsmClass::UDHI, 0, &sm, &[]);
        assert_eq!(u["udh"]["length"], 6, "{u}");
        let ie = &u["udh"]["ies"][0];
        assert_eq!((ie["iei"].as_str(), ie["reference"].as_u64()), (Some("0x00"), Some(42)), "{u}");
        assert_eq!((ie["total"].as_u64(), ie["seq"].as_u64()), (Some(3), Some(2)), "{u}");
        assert_eq!((u["encoding"].as_str(), u["text"].as_str()), (Some("GSM-7"), Some("Hi €")), "{u}");
        // 16-bit reference and 16-bit ports, UCS-2 with a surrogate pair (U+1F600).
        let mut sm = vec![0x0c, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01, 0x05, 0x04, 0x0b, 0x84, 0x23, 0xf0];
        sm.extend_from_slice(&[0x00, 0x41, 0xd8, 0x3d, 0xde, 0x00]);
        let u = submit(EsmClass::UDHI, 0x08, &sm, &[]);
        let ies = &u["udh"]["ies"];
        assert_eq!(
            (ies[0]["reference"].as_u64(), ies[0]["total"].as_u64(), ies[0]["seq"].as_u64()),
            (Some(0x1234), Some(2), Some(1))
        );
        assert_eq!((ies[1]["destination"].as_u64(), ies[1]["source"].as_u64()), (Some(2948), Some(9200)), "{u}");
        assert_eq!((u["encoding"].as_str(), u["text"].as_str()), (Some("UCS-2"), Some("A😀")), "{u}");
        // 8-bit ports, Latin-1.
        let u = submit(EsmClass::UDHI, 0x03, &[0x04, 0x04, 0x02, 0x10, 0x20, 0xe9, 0x74, 0xe9], &[]);
        assert_eq!(u["udh"]["ies"][0]["name"], "application port, 8-bit", "{u}");
        assert_eq!(
            (u["udh"]["ies"][0]["destination"].as_u64(), u["udh"]["ies"][0]["source"].as_u64()),
            (Some(16), Some(32))
        );
        assert_eq!((u["encoding"].as_str(), u["text"].as_str()), (Some("Latin-1"), Some("été")), "{u}");
        // A UDH longer than the user data is named, not guessed at.
        let u = submit(EsmClass::UDHI, 0, &[0x09, 0x00, 0x03], &[]);
        assert!(u["udh"]["error"].is_string(), "{u}");
        // A lone high surrogate is a decoding error, said so.
        let u = submit(0, 0x08, &[0xd8, 0x3d, 0x00, 0x41], &[]);
        assert!(u["text_error"].is_string() && u["text"].is_null(), "{u}");
    }

    #[test]
    fn sar_tlvs_and_data_sm_payloads() {
        let mut area = [0u8; 64];
        let mut w = TlvWriter::new(&mut area);
        w.u16(TlvTag::SAR_MSG_REF_NUM, 0x0102).unwrap();
        w.u8(TlvTag::SAR_TOTAL_SEGMENTS, 2).unwrap();
        w.u8(TlvTag::SAR_SEGMENT_SEQNUM, 1).unwrap();
        let u = submit(0, 0, b"plain", w.as_bytes());
        assert_eq!(u["sar"], json!({ "reference": 258, "total": 2, "seq": 1 }), "{u}");
        assert_eq!(u["text"], "plain");
        let mut area = [0u8; 64];
        let mut w = TlvWriter::new(&mut area);
        w.tlv(TlvTag::MESSAGE_PAYLOAD, &[0x05, 0x00, 0x03, 0x07, 0x02, 0x02, 0x00, 0x4f, 0x00, 0x4b]).unwrap();
        let pdu = Pdu::new(
            4,
            Body::DataSm(DataSm {
                source: Address::international(b"447700900456"),
                destination: Address::international(b"447700900123"),
                esm_class: EsmClass(EsmClass::UDHI),
                data_coding: 0x08,
                tlvs: Tlvs::Raw(w.as_bytes()),
                ..DataSm::default()
            }),
        );
        let mut buf = vec![0u8; pdu.buffer_len()];
        pdu.emit(&mut buf).unwrap();
        let u = inspect_smpp(&buf).unwrap()["body"]["user_data"].clone();
        assert_eq!(u["udh"]["ies"][0]["seq"], 2, "{u}");
        assert_eq!(u["text"], "OK", "{u}");
    }
}
