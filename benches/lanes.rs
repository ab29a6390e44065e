//! Per-exchange lanes: cost of one item through a lane (push + pop), on one
//! thread and from a producer thread to the owner's thread; and the lane
//! table lookup a pipeline does per item.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::ids::LegacySystemId;
use iwf::route::{LaneItem, Lanes};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SYSTEM: LegacySystemId = LegacySystemId(3);

fn item(token: u64) -> LaneItem {
    // A receipt deliver_sm is about 200 octets.
    LaneItem::new(SYSTEM, token, &[0x42; 200]).expect("item")
}

fn bench(c: &mut Criterion) {
    let lanes = Lanes::new(2).expect("lanes");
    let lane = lanes.add_system(SYSTEM, 1024).expect("lane");
    for s in 10..20 {
        lanes.add_system(LegacySystemId(s), 16).expect("other lanes");
    }
    lanes.bind_up(SYSTEM, 0).expect("bind");
    let it = item(1);

    let mut g = c.benchmark_group("lanes");
    g.throughput(Throughput::Elements(1));
    g.bench_function("item_new_200B", |b| b.iter(|| LaneItem::new(SYSTEM, 1, black_box(&[0x42; 200]))));
    g.bench_function("push_pop_one_thread", |b| {
        b.iter(|| {
            lane.push(black_box(it)).expect("room");
            black_box(lane.pop(0))
        })
    });
    g.bench_function("table_load_push_pop_one_thread", |b| {
        b.iter(|| {
            lanes.load().push(black_box(it)).expect("room");
            black_box(lanes.load().get(SYSTEM).and_then(|l| l.pop(0)))
        })
    });

    // A producer (this thread) pushes, the owner (core 1's thread) drains.
    let lanes = Arc::new(lanes);
    lanes.bind_down(SYSTEM, 0).expect("unbind");
    g.bench_function("push_pop_cross_thread", |b| {
        b.iter_custom(|iters| {
            let received = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let owner = {
                let lanes = Arc::clone(&lanes);
                let received = Arc::clone(&received);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    lanes.bind_up(SYSTEM, 1).expect("bind");
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let table = lanes.load();
                        if let Some(lane) = table.get(SYSTEM) {
                            let k = lane.drain(1, 32, |i| {
                                black_box(i.token());
                            }) as u64;
                            if k > 0 {
                                n += k;
                                received.store(n, Ordering::Release);
                            } else {
                                std::hint::spin_loop();
                            }
                        }
                    }
                    lanes.bind_down(SYSTEM, 1).expect("unbind");
                })
            };
            while lanes.load().get(SYSTEM).and_then(|l| l.owner()) != Some(1) {
                std::thread::yield_now();
            }
            let start = Instant::now();
            let table = lanes.load();
            let lane = table.get(SYSTEM).expect("lane");
            for t in 0..iters {
                let mut it = item(t);
                loop {
                    match lane.push(it) {
                        Ok(()) => break,
                        Err(e) => {
                            it = e.into_item();
                            std::hint::spin_loop();
                        }
                    }
                }
            }
            let deadline = start + Duration::from_secs(60);
            while received.load(Ordering::Acquire) < iters && Instant::now() < deadline {
                std::hint::spin_loop();
            }
            let elapsed = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            owner.join().expect("owner thread");
            elapsed
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
