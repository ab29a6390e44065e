//! Correlation table: a message's whole life (insert before send, resp
//! re-keying, receipt → IMDN state, removal) on a table holding 200 000 other
//! pending entries, and a receipt lookup alone (a duplicate, absorbed).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::ids::LegacySystemId;
use iwf::interwork::address::Msisdn;
use iwf::interwork::converged_to_legacy::{canonical_id, CanonicalId, IdOrigin, StoredCorrelation};
use iwf::interwork::state::ReceiptState;
use iwf::interwork::IdCanonicalisation;
use iwf::route::correlation::{CorrelationConfig, CorrelationTable, NewMessage, ReceiptOutcome};
use iwf::route::select::UriTemplate;
use iwf::wire::cpim::{DateTime, Dispositions};
use std::hint::black_box;

const SYS: LegacySystemId = LegacySystemId(3);
const T0: u64 = 1_800_000_000;
const BACKGROUND: u32 = 200_000;

fn id(n: u64) -> CanonicalId {
    canonical_id(format!("{n}").as_bytes(), IdCanonicalisation::Decimal, IdOrigin::SubmitResp).expect("id")
}

fn bench(c: &mut Criterion) {
    let config = CorrelationConfig {
        sender_template: Some(UriTemplate::parse("sip:+{msisdn}@ims.lab;user=phone").expect("template")),
        ..CorrelationConfig::default()
    };
    let stored = StoredCorrelation {
        message_id: "0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p",
        sender: "sip:+447700900001@ims.lab;user=phone",
        recipient: Msisdn::parse("+447000312345").expect("number"),
        dispositions: Dispositions::POSITIVE_DELIVERY.union(Dispositions::NEGATIVE_DELIVERY),
        datetime: DateTime::from_unix(1_700_000_000),
        imdn_record_route: None,
    };
    let mut table = CorrelationTable::with_capacity(config, BACKGROUND as usize + 16);
    for i in 1..=BACKGROUND {
        table
            .insert(&NewMessage { system: SYS, stored, segments: 1, first_sequence: i, deadline: T0 + 86_400 }, T0)
            .expect("insert");
        table.resp(SYS, i, &id(u64::from(i) + 10_000_000_000), T0).expect("resp");
    }
    let ids: Vec<CanonicalId> = (1..=1024u64).map(|i| id(i * 97 + 10_000_000_000)).collect();
    let fresh: Vec<CanonicalId> = (0..1024u64).map(|i| id(i + 90_000_000_000)).collect();

    let mut g = c.benchmark_group("correlation");
    g.throughput(Throughput::Elements(1));
    let mut seq = BACKGROUND + 1;
    let mut k = 0usize;
    g.bench_function("insert_resp_receipt_remove_200k", |b| {
        b.iter(|| {
            let m = table
                .insert(
                    &NewMessage { system: SYS, stored, segments: 1, first_sequence: seq, deadline: T0 + 86_400 },
                    T0,
                )
                .expect("insert");
            let sm_id = &fresh[k & 1023];
            table.resp(SYS, seq, sm_id, T0).expect("resp");
            let out = table.receipt(SYS, sm_id, ReceiptState::Delivered, T0);
            debug_assert!(matches!(out, ReceiptOutcome::Notify { .. }));
            table.remove(m).expect("remove");
            seq = if seq >= 0x7fff_0000 { BACKGROUND + 1 } else { seq + 1 };
            k += 1;
            black_box(out)
        })
    });
    // Make the background entries' receipts duplicates, then time the lookup.
    for sm_id in &ids {
        table.receipt(SYS, sm_id, ReceiptState::Delivered, T0);
    }
    let mut k = 0usize;
    g.bench_function("receipt_lookup_200k", |b| {
        b.iter(|| {
            k += 1;
            table.receipt(SYS, black_box(&ids[k & 1023]), ReceiptState::Delivered, T0)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
