//! The receipt path end to end, on one core:
//!
//! - `submit_sm_to_sip_message`: raw submit_sm bytes → SMPP parse → UDH/text decode →
//!   tag signed → CPIM + SIP MESSAGE bytes;
//! - `imdn_to_deliver_sm`: raw SIP MESSAGE bytes carrying an IMDN → SIP, CPIM, IMDN
//!   parse → tag verified → encoded deliver_sm receipt bytes.
//!
//! Target: ≤ 1 µs each.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::interwork::legacy_to_converged::{
    imdn_message_to_receipts, imdn_to_receipts, legacy_to_sip, LegacyMessage, ReceiptOutcome,
};
use iwf::wire::cpim::{self, EMPTY_HEADER};
use iwf::wire::imdn::Imdn;
use iwf::wire::sip::{Header, Parser, Status};
use iwf::wire::smpp::{Body, Pdu};
use std::hint::black_box;

#[path = "../src/bin/iwf/traffic.rs"]
mod traffic;
use iwf::interwork::address::NumberingPlan;
use iwf::interwork::{BindDirection, Concatenation, Encoding, Exchange, IdCanonicalisation};
use traffic::{imdn_message, key_ring, submit_sm_bytes, CONVERGED, NOW};

/// One legacy system (smsc-a) that asks for user acks; the traffic is `iwf scaling`'s.
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

fn receipt_path(c: &mut Criterion) {
    let keys = key_ring().expect("key ring");
    let ex = exchange();
    let submit = submit_sm_bytes().expect("submit_sm");
    let mut scratch = [0u8; 2048];
    let mut sip_out = [0u8; 2048];

    // Prepare the IMDN for a tag iwf issued.
    let tag = {
        let pdu = Pdu::parse(&submit).expect("pdu");
        let Body::SubmitSm(sm) = pdu.body else { panic!("not submit_sm") };
        let (msg, _) = LegacyMessage::from_submit_sm(&sm).expect("message");
        legacy_to_sip(&msg, &ex, &CONVERGED, None, &keys, 1, NOW, &mut scratch, &mut sip_out).expect("convert").tag
    };
    let imdn = imdn_message(tag.as_bytes()).expect("imdn");
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
    let parties =
        [iwf::tag::Parties::new(iwf::tag::Originator::Number("447000100001"), "447000200001").expect("parties")];
    g.bench_function("tag_verify", |b| b.iter(|| keys.verify(black_box(tag.as_bytes()), NOW, &parties)));
    g.finish();
}

criterion_group!(benches, receipt_path);
criterion_main!(benches);
