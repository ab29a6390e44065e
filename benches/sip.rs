//! SIP codec benches: parse a SIP MESSAGE carrying CPIM, the typed receipt-path
//! accessors, writing the 200 OK, and the start-line + header scan against
//! httparse on an HTTP request of similar size and header count.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::wire::sip::{parse_datagram, parse_stream, Header, MessageWriter, Status};

/// A MESSAGE as iwf receives it from the IMS core: 10 header fields (474 bytes
/// of head), a 337-byte message/cpim body.
const MESSAGE: &[u8] = include_bytes!("../tests/data/sip/message_cpim.sip");

/// An HTTP/1.1 request with the same number of header fields and a head of
/// about the same size as `MESSAGE`'s.
const HTTP_REQUEST: &[u8] = b"POST /api/v1/messages/outbound?account=iwf&lane=smsc-a HTTP/1.1\r\n\
Host: api.ims.lab:8443\r\n\
User-Agent: iwf-bench/0.1 (linux; x86_64)\r\n\
Accept: application/json, text/plain;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Authorization: Bearer 0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p\r\n\
X-Request-ID: a84b4c76e66710@198.18.2.1\r\n\
Via: 1.1 proxy.ims.lab (squid/5.7), 1.1 edge.ims.lab:8080\r\n\
Forwarded: for=198.18.2.1;proto=https;by=198.18.2.2\r\n\
Content-Type: message/cpim\r\n\
Content-Length: 337\r\n\r\n";

fn sip(c: &mut Criterion) {
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Bytes(MESSAGE.len() as u64));
    g.bench_function("parse_message_cpim", |b| {
        b.iter(|| {
            let mut h = [Header::EMPTY; 32];
            let m = parse_datagram(black_box(MESSAGE), &mut h).expect("parses");
            black_box(m.body.len())
        })
    });
    // What the receipt path reads: framing, validation, the fields it uses.
    g.bench_function("parse_validate", |b| {
        b.iter(|| {
            let mut h = [Header::EMPTY; 32];
            let m = parse_datagram(black_box(MESSAGE), &mut h).expect("parses");
            let core = m.validate().expect("valid");
            black_box((core.top_via.branch(), core.from.tag(), core.call_id, core.cseq.number))
        })
    });
    let mut h = [Header::EMPTY; 32];
    let req = parse_datagram(MESSAGE, &mut h).expect("parses");
    let mut out = [0u8; 1500];
    g.bench_function("build_200_response", |b| {
        b.iter(|| {
            let w = MessageWriter::response_to(&mut out, black_box(&req), 200, "OK", Some("iwf7f3a")).expect("fits");
            black_box(w.finish(b"").expect("fits"))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("start_line_and_headers");
    g.bench_function("sip_parse_stream", |b| {
        b.iter(|| {
            let mut h = [Header::EMPTY; 16];
            match parse_stream(black_box(MESSAGE), &mut h) {
                Ok(Status::Complete(n, m)) => black_box((n, m.headers.len())),
                other => panic!("{other:?}"),
            }
        })
    });
    g.bench_function("httparse_request", |b| {
        b.iter(|| {
            let mut h = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Request::new(&mut h);
            match r.parse(black_box(HTTP_REQUEST)) {
                Ok(httparse::Status::Complete(n)) => black_box((n, r.headers.len())),
                other => panic!("{other:?}"),
            }
        })
    });
    g.finish();
}

criterion_group!(benches, sip);
criterion_main!(benches);
