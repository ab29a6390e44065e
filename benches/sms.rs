//! Criterion benches of the SMS text codecs (`iwf::wire::sms`): GSM-7 encode / decode /
//! pack of a full 160-character text, UCS-2 encode of 70 characters, and segmentation of
//! a 3-part text with its user data written. Every path writes into stack buffers: no
//! allocation per message.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::wire::sms::{gsm7, ucs2, Concatenation, Encoding, Gsm7Form, SegmentPlan};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts allocations so the benches can first prove the message path allocates nothing.
struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` and panics if it allocated.
fn assert_no_alloc<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let r = f();
    let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(n, 0, "{what} allocated {n} times");
    r
}

/// The encode / decode / segment paths allocate nothing (checked once, before timing).
fn zero_allocation_check(_c: &mut Criterion) {
    let gsm = text_160();
    let gsm2 = gsm.repeat(2);
    let wide: String = "Привет 😀 ".repeat(20);
    let mut a = [0u8; 2048];
    let mut b = [0u8; 2048];
    let mut ud = [0u8; 160];
    assert_no_alloc("gsm7 encode/pack/decode", || {
        let n = gsm7::encode_unpacked(&gsm, &mut a).unwrap();
        let p = gsm7::pack(&a[..n], 1, &mut b).unwrap();
        let _ = gsm7::encode_packed(&gsm, 0, &mut ud).unwrap();
        gsm7::decode_packed(&b[..p], n, 1, &mut ud[..0]).unwrap_err();
        let mut out = [0u8; 400];
        gsm7::decode_unpacked(&a[..n], &mut out).unwrap();
        black_box(gsm7::chars(&a[..n]).unwrap().count());
    });
    assert_no_alloc("ucs2 encode/decode", || {
        let n = ucs2::encode(&wide, &mut a).unwrap();
        ucs2::decode(&a[..n], &mut b).unwrap();
        black_box(ucs2::chars(&a[..n]).unwrap().count());
    });
    assert_no_alloc("segment and write parts", || {
        for (text, enc) in [(&gsm2, Encoding::Gsm7), (&wide, Encoding::Ucs2)] {
            let plan = SegmentPlan::new(text, enc, Concatenation::Udh8, 7, &mut a).unwrap();
            for s in plan.segments() {
                s.write_user_data(Gsm7Form::Packed, &mut ud).unwrap();
            }
            let (udh, _) = iwf::wire::sms::Udh::parse(&ud).unwrap();
            black_box(udh.concat());
        }
    });
}

/// 160 GSM-7 characters with a few two-octet UTF-8 ones (Greek, £) and no extension.
fn text_160() -> String {
    let base = "Your parcel ΔΩ-1234 is out for delivery today between 10:00 and 14:00. Fee £3. ";
    let t: String = base.chars().cycle().take(160).collect();
    assert_eq!(gsm7::septet_count(&t).unwrap(), 160);
    t
}

fn gsm7_benches(c: &mut Criterion) {
    let text = text_160();
    let mut septets = [0u8; 160];
    let n = gsm7::encode_unpacked(&text, &mut septets).unwrap();
    let mut packed = [0u8; 140];
    let p = gsm7::pack(&septets[..n], 0, &mut packed).unwrap();

    let mut g = c.benchmark_group("gsm7_160");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_unpacked", |b| {
        let mut out = [0u8; 160];
        b.iter(|| gsm7::encode_unpacked(black_box(&text), &mut out).unwrap())
    });
    g.bench_function("encode_packed", |b| {
        let mut out = [0u8; 140];
        b.iter(|| gsm7::encode_packed(black_box(&text), 0, &mut out).unwrap())
    });
    g.bench_function("pack", |b| {
        let mut out = [0u8; 140];
        b.iter(|| gsm7::pack(black_box(&septets[..n]), 0, &mut out).unwrap())
    });
    g.bench_function("decode_unpacked", |b| {
        let mut out = [0u8; 320];
        b.iter(|| gsm7::decode_unpacked(black_box(&septets[..n]), &mut out).unwrap())
    });
    g.bench_function("decode_packed", |b| {
        let mut out = [0u8; 320];
        b.iter(|| gsm7::decode_packed(black_box(&packed[..p]), n, 0, &mut out).unwrap())
    });
    g.bench_function("septet_count", |b| b.iter(|| gsm7::septet_count(black_box(&text)).unwrap()));
    g.finish();
}

fn ucs2_benches(c: &mut Criterion) {
    let text: String = "Привет, мир! Встреча в 10:00. ".chars().cycle().take(70).collect();
    assert_eq!(ucs2::unit_count(&text), 70);
    let mut encoded = [0u8; 140];
    let n = ucs2::encode(&text, &mut encoded).unwrap();
    let mut g = c.benchmark_group("ucs2_70");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| {
        let mut out = [0u8; 140];
        b.iter(|| ucs2::encode(black_box(&text), &mut out).unwrap())
    });
    g.bench_function("decode", |b| {
        let mut out = [0u8; 280];
        b.iter(|| ucs2::decode(black_box(&encoded[..n]), &mut out).unwrap())
    });
    g.finish();
}

fn segment_benches(c: &mut Criterion) {
    // 400 septets with extension characters: three parts with 8-bit UDH.
    let text: String = "Meeting {room 4} at 10€ [bring ID] ~ ok? ".chars().cycle().take(360).collect();
    let mut g = c.benchmark_group("segment_3");
    g.throughput(Throughput::Elements(1));
    g.bench_function("plan_and_write_packed", |b| {
        let mut buf = [0u8; 512];
        let mut out = [0u8; 140];
        b.iter(|| {
            let plan = SegmentPlan::new(black_box(&text), Encoding::Gsm7, Concatenation::Udh8, 42, &mut buf).unwrap();
            assert_eq!(plan.count(), 3);
            let mut total = 0;
            for s in plan.segments() {
                total += s.write_user_data(Gsm7Form::Packed, &mut out).unwrap();
                black_box(&out);
            }
            total
        })
    });
    g.bench_function("count_segments", |b| {
        b.iter(|| iwf::wire::sms::count_segments(black_box(&text), Encoding::Gsm7, Concatenation::Udh8).unwrap())
    });
    g.finish();
}

criterion_group!(benches, zero_allocation_check, gsm7_benches, ucs2_benches, segment_benches);
criterion_main!(benches);
