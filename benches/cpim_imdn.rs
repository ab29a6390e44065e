//! CPIM and IMDN codec benches: the receipt path parses a CPIM body carrying IMDN
//! headers and an IMDN delivery notification, and emits both.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::wire::cpim::{self, CpimAddress, CpimRepr, DateTime, Dispositions, EMPTY_HEADER};
use iwf::wire::imdn::{DeliveryStatus, Imdn, Notification, XmlText};

/// A CPIM body as a converged client sends it (RFC 5438 §6 headers).
const CPIM_BODY: &[u8] = b"From: \"Alice\" <sip:alice@example.com>\r\n\
To: <sip:+15551234567@example.net;user=phone>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: 0123456789abcdefghijklmnopqrstuv\r\n\
DateTime: 2024-05-06T07:08:09.123Z\r\n\
imdn.Disposition-Notification: positive-delivery, negative-delivery, display\r\n\
imdn.IMDN-Record-Route: <sip:iwf.example.net;lr>\r\n\
\r\n\
Content-Type: text/plain;charset=UTF-8\r\n\
Content-Length: 12\r\n\
\r\n\
Hello World!";

/// An IMDN delivery notification (RFC 5438 §7.2.1.1).
const IMDN_XML: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?>
<imdn xmlns="urn:ietf:params:xml:ns:imdn">
  <message-id>0123456789abcdefghijklmnopqrstuv</message-id>
  <datetime>2024-05-06T07:08:09.123Z</datetime>
  <recipient-uri>sip:+15551234567@example.net;user=phone</recipient-uri>
  <original-recipient-uri>sip:+15551234567@example.net;user=phone</original-recipient-uri>
  <delivery-notification>
    <status>
      <delivered/>
    </status>
  </delivery-notification>
</imdn>
"#;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(CPIM_BODY.len() as u64));
    g.bench_function("cpim_imdn_headers", |b| {
        b.iter(|| {
            let mut headers = [EMPTY_HEADER; 16];
            let m = cpim::parse(black_box(CPIM_BODY), &mut headers).unwrap();
            black_box((m.message_id(), m.dispositions(), m.from().ok(), m.datetime().ok()));
        })
    });
    g.throughput(Throughput::Bytes(IMDN_XML.len() as u64));
    g.bench_function("imdn_delivery_xml", |b| b.iter(|| black_box(Imdn::parse(black_box(IMDN_XML)).unwrap())));
    g.finish();
}

fn emit(c: &mut Criterion) {
    let mut g = c.benchmark_group("emit");
    let imdn = Imdn {
        message_id: XmlText::plain(b"0123456789abcdefghijklmnopqrstuv"),
        datetime: DateTime::from_unix(1_715_000_000),
        recipient_uri: Some(XmlText::plain(b"sip:+15551234567@example.net;user=phone")),
        original_recipient_uri: None,
        subject: None,
        notification: Notification::Delivery(DeliveryStatus::Delivered),
    };
    let mut xml = [0u8; 1024];
    let xml_len = imdn.emit(&mut xml).unwrap();
    g.bench_function("imdn_delivery_xml", |b| {
        let mut buf = [0u8; 1024];
        b.iter(|| black_box(black_box(&imdn).emit(&mut buf).unwrap()))
    });
    let repr = CpimRepr {
        from: CpimAddress::new(b"", b"sip:+15551234567@example.net;user=phone"),
        to: CpimAddress::new(b"Alice", b"sip:alice@example.com"),
        datetime: DateTime::from_unix(1_715_000_000),
        message_id: b"k2j3h4g5f6d7s8a9",
        dispositions: Dispositions::empty(),
        imdn_record_route: None,
        content_type: b"message/imdn+xml",
        content_disposition: Some(b"notification"),
        content: &xml[..xml_len],
    };
    g.bench_function("cpim_imdn_notification", |b| {
        let mut buf = [0u8; 2048];
        b.iter(|| black_box(black_box(&repr).emit(&mut buf).unwrap()))
    });
    g.bench_function("datetime", |b| {
        let mut buf = [0u8; DateTime::MAX_LEN];
        b.iter(|| black_box(DateTime::from_unix(black_box(1_715_000_000)).emit(&mut buf).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, parse, emit);
criterion_main!(benches);
