//! Fixtures the receipt-path benches share (benches/pipeline.rs, benches/scaling.rs): one
//! legacy system's exchange, a key ring, a submit_sm and the converged client's delivery
//! IMDN for a tag.
#![allow(dead_code)]
use iwf::interwork::address::NumberingPlan;
use iwf::interwork::{BindDirection, Concatenation, ConvergedSide, Encoding, Exchange, IdCanonicalisation};
use iwf::tag::{KeyRing, TagKey};
use iwf::wire::cpim::{CpimRepr, DateTime, Dispositions, NameAddr};
use iwf::wire::imdn::{DeliveryStatus, Imdn, Notification, XmlText};
use iwf::wire::sip::{MessageWriter, Method};
use iwf::wire::smpp::{Address, Body, Pdu, RegisteredDelivery, SubmitSm};
use iwf::wire::sms::gsm7;

pub const NOW: u64 = 1_790_000_000;

pub const CONVERGED: ConvergedSide<'static> = ConvergedSide {
    legacy_domain: "iwf.ims.lab",
    converged_domain: "ims.lab",
    local_sent_by: "198.18.2.2:5060",
    transport: "UDP",
};

pub fn exchange() -> Exchange<'static> {
    Exchange {
        system: 1,
        name: "smsc-a",
        direction: BindDirection::LegacyBindsToIwf,
        default_encoding: Encoding::Gsm7,
        user_ack: true,
        concatenation: Concatenation::Udh8,
        ids: IdCanonicalisation::Exact,
        numbering: NumberingPlan { country_code: Some("44"), trunk_prefix: "0" },
    }
}

pub fn ring() -> KeyRing {
    let mut r = KeyRing::new(1).expect("key id");
    r.insert(1, TagKey::from_bytes([7; 16])).expect("key");
    r
}

/// A submit_sm as a legacy ESME sends it: 60 GSM-7 characters, receipt requested.
pub fn submit_sm_bytes() -> Vec<u8> {
    let mut septets = [0u8; 160];
    let n = gsm7::encode_unpacked("Meet you at the station at 10:30, bring the tickets please!", &mut septets)
        .expect("gsm7");
    let sm = SubmitSm {
        source: Address::international(b"447000100001"),
        destination: Address::international(b"447000200001"),
        registered_delivery: RegisteredDelivery(0x01),
        short_message: &septets[..n],
        ..SubmitSm::default()
    };
    let mut buf = [0u8; 512];
    let len = Pdu::new(42, Body::SubmitSm(sm)).emit(&mut buf).expect("emit");
    buf[..len].to_vec()
}

/// The converged client's delivery IMDN for `tag`.
pub fn imdn_bytes(tag: &[u8]) -> Vec<u8> {
    let imdn = Imdn {
        message_id: XmlText::plain(tag),
        datetime: DateTime::from_unix(NOW as i64),
        recipient_uri: None,
        original_recipient_uri: None,
        subject: None,
        notification: Notification::Delivery(DeliveryStatus::Delivered),
    };
    let mut xml = [0u8; 1024];
    let xn = imdn.emit(&mut xml).expect("imdn");
    let from = "sip:+447000200001@ims.lab;user=phone";
    let to = "sip:+447000100001@iwf.ims.lab;user=phone";
    let cpim = CpimRepr {
        from: NameAddr::new(b"", from.as_bytes()),
        to: NameAddr::new(b"", to.as_bytes()),
        datetime: DateTime::from_unix(NOW as i64 + 30),
        message_id: b"Ba7kDf1x9q",
        dispositions: Dispositions::empty(),
        imdn_record_route: None,
        content_type: b"message/imdn+xml",
        content_disposition: Some(b"notification"),
        content: &xml[..xn],
    };
    let mut body = [0u8; 2048];
    let bn = cpim.emit(&mut body).expect("cpim");
    let mut out = [0u8; 4096];
    let mut w = MessageWriter::request(&mut out, Method::Message, to).expect("writer");
    w.header("Via", "SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK776asdhds").expect("h");
    w.header("Max-Forwards", "69").expect("h");
    w.header("From", &format!("<{from}>;tag=49583")).expect("h");
    w.header("To", &format!("<{to}>")).expect("h");
    w.header("Call-ID", "a84b4c76e66710@198.18.2.1").expect("h");
    w.header("CSeq", "1 MESSAGE").expect("h");
    w.header("Content-Type", "message/cpim").expect("h");
    let n = w.finish(&body[..bn]).expect("finish");
    out[..n].to_vec()
}
