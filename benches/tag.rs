//! Tag encode and decode+verify (verify is meant to stay well under 100 ns).
use criterion::{criterion_group, criterion_main, Criterion};
use iwf::tag::{KeyRing, Originator, Parties, ReceiptRequest, TagFields, TagKey};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut ring = KeyRing::new(1).expect("key id");
    ring.insert(1, TagKey::from_bytes([7; 16])).expect("key");
    let now = 1_790_000_000;
    let f = TagFields {
        system: 3,
        minutes: TagFields::minutes_at(now),
        sequence: 12345,
        segment_index: 0,
        segment_count: 1,
        receipts: ReceiptRequest::DELIVERY,
        parties: Parties::new(Originator::Number("447000100001"), "447900000001").expect("parties"),
    };
    let tag = ring.encode(&f).expect("encode");
    // An IMDN names a few party pairs; the message's own is usually the first.
    let other = Parties::new(Originator::Number("447000100099"), "447900000001").expect("parties");
    let candidates = [f.parties, other];
    let mut g = c.benchmark_group("tag");
    g.bench_function("encode", |b| b.iter(|| ring.encode(black_box(&f))));
    g.bench_function("verify", |b| b.iter(|| ring.verify(black_box(tag.as_bytes()), now, &candidates)));
    let worst = [other, other, other, f.parties];
    g.bench_function("verify_fourth_candidate", |b| b.iter(|| ring.verify(black_box(tag.as_bytes()), now, &worst)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
