//! Durable store (redb, Durability::Immediate: fsync per commit) on this
//! machine's disk: one receipt per commit, and 64 receipts per commit (the
//! control plane's batch). Figures are puts per second of the file system
//! under the temp dir.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::ids::LegacySystemId;
use iwf::route::store::{Batch, Store};
use iwf::route::LaneItem;
use std::hint::black_box;

const SYS: LegacySystemId = LegacySystemId(1);
const T0: u64 = 1_800_000_000;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("iwf-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut store = Store::create(dir.join("bench.redb")).expect("store");
    let item = LaneItem::new(SYS, 1, &[0x42; 200]).expect("item");

    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("put_single", |b| b.iter(|| black_box(store.put_receipt(&item, T0, T0 + 60).expect("put"))));
    g.throughput(Throughput::Elements(64));
    let mut batch = Batch::new(64, 1_000);
    g.bench_function("put_batched_64", |b| {
        b.iter(|| {
            for _ in 0..64 {
                batch.queue_receipt(&item, T0, T0 + 60, 0);
            }
            black_box(store.commit(&mut batch).expect("commit").through)
        })
    });
    g.finish();
    // Keep the file small between runs: drop what was queued.
    let _ = store.sweep(T0 + 61);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
