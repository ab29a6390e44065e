//! The receipt path end to end, on one core (DESIGN.md "The problem it solves"):
//!
//! - `submit_sm_to_sip_message`: raw submit_sm bytes → SMPP parse → UDH/text decode →
//!   tag signed → CPIM + SIP MESSAGE bytes;
//! - `imdn_to_deliver_sm`: raw SIP MESSAGE bytes carrying an IMDN → SIP, CPIM, IMDN
//!   parse → tag verified → encoded deliver_sm receipt bytes.
//!
//! Target: ≤ 1 µs each.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::interwork::address::NumberingPlan;
use iwf::interwork::legacy_to_converged::{
    imdn_message_to_receipts, imdn_to_receipts, legacy_to_sip, LegacyMessage, ReceiptOutcome,
};
use iwf::interwork::{BindDirection, Concatenation, ConvergedSide, Encoding, Exchange, IdCanonicalisation};
use iwf::tag::{KeyRing, TagKey};
use iwf::wire::cpim::{self, EMPTY_HEADER};
use iwf::wire::cpim::{CpimRepr, DateTime, Dispositions, NameAddr};
use iwf::wire::imdn::{DeliveryStatus, Imdn, Notification, XmlText};
use iwf::wire::sip::{Header, MessageWriter, Method, Parser, Status};
use iwf::wire::smpp::{Address, Body, Pdu, RegisteredDelivery, SubmitSm};
use iwf::wire::sms::gsm7;
use std::hint::black_box;

const NOW: u64 = 1_790_000_000;

const CONVERGED: ConvergedSide<'static> = ConvergedSide {
    legacy_domain: "iwf.ims.lab",
    converged_domain: "ims.lab",
    local_sent_by: "198.18.2.2:5060",
    transport: "UDP",
};

fn exchange() -> Exchange<'static> {
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

fn ring() -> KeyRing {
    let mut r = KeyRing::new(1).expect("key id");
    r.insert(1, TagKey::from_bytes([7; 16])).expect("key");
    r
}

/// A submit_sm as a legacy ESME sends it: 60 GSM-7 characters, receipt requested.
fn submit_sm_bytes() -> Vec<u8> {
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
fn imdn_bytes(tag: &[u8]) -> Vec<u8> {
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

fn receipt_path(c: &mut Criterion) {
    let keys = ring();
    let ex = exchange();
    let submit = submit_sm_bytes();
    let mut scratch = [0u8; 2048];
    let mut sip_out = [0u8; 2048];

    // Prepare the IMDN for a tag iwf issued.
    let tag = {
        let pdu = Pdu::parse(&submit).expect("pdu");
        let Body::SubmitSm(sm) = pdu.body else { panic!("not submit_sm") };
        let (msg, _) = LegacyMessage::from_submit_sm(&sm).expect("message");
        legacy_to_sip(&msg, &ex, &CONVERGED, None, &keys, 1, NOW, &mut scratch, &mut sip_out).expect("convert").tag
    };
    let imdn = imdn_bytes(tag.as_bytes());
    let mut receipt_out = [0u8; 1024];
    assert!(matches!(
        imdn_to_receipts(&imdn, &keys, NOW, |s| (s == 1).then_some(ex), 1, &mut receipt_out),
        Ok(ReceiptOutcome::Receipts { count: 1, .. })
    ));

    let mut g = c.benchmark_group("receipt_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("imdn_to_deliver_sm", |b| {
        b.iter(|| imdn_to_receipts(black_box(&imdn), &keys, NOW, |s| (s == 1).then_some(ex), 7, &mut receipt_out))
    });
    let mut sequence = 0u32;
    g.bench_function("submit_sm_to_sip_message", |b| {
        b.iter(|| {
            sequence = sequence.wrapping_add(1);
            let pdu = Pdu::parse(black_box(&submit)).ok()?;
            let Body::SubmitSm(sm) = pdu.body else {
                return None;
            };
            let (msg, _) = LegacyMessage::from_submit_sm(&sm).ok()?;
            legacy_to_sip(&msg, &ex, &CONVERGED, None, &keys, sequence, NOW, &mut scratch, &mut sip_out).ok()
        })
    });
    g.finish();

    // Where the time of `imdn_to_deliver_sm` goes, stage by stage.
    let mut g = c.benchmark_group("receipt_path_stages");
    g.bench_function("sip_parse", |b| {
        b.iter(|| {
            let mut h = [Header::EMPTY; 32];
            Parser::datagram().parse(black_box(&imdn), &mut h).map(|s| matches!(s, Status::Complete(..)))
        })
    });
    let mut h = [Header::EMPTY; 32];
    let Ok(Status::Complete(_, msg)) = Parser::datagram().parse(&imdn, &mut h) else { panic!() };
    let body = msg.body;
    g.bench_function("cpim_parse", |b| {
        b.iter(|| {
            let mut ch = [EMPTY_HEADER; 24];
            cpim::parse(black_box(body), &mut ch).map(|m| m.content.len())
        })
    });
    let mut ch = [EMPTY_HEADER; 24];
    let content = cpim::parse(body, &mut ch).expect("cpim").content;
    g.bench_function("imdn_parse", |b| b.iter(|| Imdn::parse(black_box(content)).map(|i| i.notification)));
    g.bench_function("receipts_from_parsed_sip", |b| {
        b.iter(|| {
            imdn_message_to_receipts(black_box(&msg), &keys, NOW, |s| (s == 1).then_some(ex), 7, &mut receipt_out)
        })
    });
    g.bench_function("tag_verify", |b| b.iter(|| keys.verify(black_box(tag.as_bytes()), NOW)));
    g.finish();
}

criterion_group!(benches, receipt_path);
criterion_main!(benches);
