//! Multi-core scaling of the receipt path in process, without NICs:
//! N worker threads, each pinned to its own CPU, take pre-built SIP MESSAGEs carrying
//! delivery IMDNs (tags of 8 legacy systems, from memory) and run what a pipeline core
//! runs per datagram: SIP, CPIM and IMDN parse, tag verify, the deliver_sm receipt
//! encoded, pushed into the system's lane (lock-free, shared by all cores); each worker
//! drains the lanes it owns as its SMPP sessions would. Worker w takes the IMDNs of
//! systems s ≡ w + 1 (mod N) and system s is bound on worker s mod N, so with N > 1
//! every receipt crosses to another core (the worst case of binds spread over cores).
//! Figure: receipts drained per second for N = 1, 2, 4, 8 (those that fit the machine's
//! CPUs), and the scaling efficiency receipts/s(N) / (N · receipts/s(1)). One JSON line
//! per N.
//!
//! Not a criterion bench (threads and wall time); `-- --test` runs 0.1 s per N.
//! What it leaves out: the NIC rings (`iwf scaling` adds them: the same path on DPDK
//! net_ring ports) and the TCP/SMPP session (measured through the lab by scripts/bench.sh).
#[path = "../src/bin/iwf/traffic.rs"]
mod traffic;
use iwf::ids::LegacySystemId;
use iwf::interwork::legacy_to_converged::{imdn_to_receipts, ReceiptOutcome};
use iwf::route::{LaneItem, Lanes, PushError};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use traffic::{exchange_of, imdn_datagrams, key_ring, NOW, SYSTEMS};

const DATAGRAMS: u32 = 8192;

/// Receipts drained per second with `n` workers pinned to `cores`.
fn run(n: usize, cores: &[core_affinity::CoreId], input: &[Vec<u8>], seconds: f64) -> (f64, u64) {
    let keys = key_ring().expect("keys");
    let lanes = Lanes::new(n as u16).expect("lanes");
    for s in 1..=SYSTEMS {
        lanes.add_system(LegacySystemId(s), 4096).expect("lane");
        lanes.bind_up(LegacySystemId(s), s % n as u16).expect("bind");
    }
    let stop = AtomicBool::new(false);
    let drained = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let start = Barrier::new(n + 1);
    let elapsed = std::thread::scope(|s| {
        for w in 0..n {
            let (lanes, keys, stop, drained, failed, start) = (&lanes, &keys, &stop, &drained, &failed, &start);
            let core = cores[w % cores.len()];
            s.spawn(move || {
                core_affinity::set_for_current(core);
                let me = w as u16;
                let mut out = [0u8; 1024];
                let mut token = (w as u64) << 48;
                let mut mine = 0u64;
                let drain = |mine: &mut u64| {
                    for lane in lanes.load().owned_by(me) {
                        *mine += lane.drain(me, 256, |item| {
                            black_box(item);
                        }) as u64;
                    }
                };
                start.wait();
                'run: loop {
                    for (k, datagram) in input.iter().skip(w).step_by(n).enumerate() {
                        token += 1;
                        match imdn_to_receipts(datagram, keys, NOW, exchange_of, token as u32, &mut out) {
                            Ok(ReceiptOutcome::Receipts { system, len, .. }) => {
                                let Ok(mut item) = LaneItem::new(LegacySystemId(system), token, &out[..len]) else {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                };
                                // A full lane waits for its owner: drain ours meanwhile.
                                while let Err(PushError::Full(back)) = lanes.load().push(item) {
                                    item = back;
                                    drain(&mut mine);
                                    if stop.load(Ordering::Relaxed) {
                                        break 'run;
                                    }
                                    std::hint::spin_loop();
                                }
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if k % 32 == 0 {
                            drain(&mut mine);
                            if stop.load(Ordering::Relaxed) {
                                break 'run;
                            }
                        }
                    }
                }
                drained.fetch_add(mine, Ordering::Relaxed);
            });
        }
        start.wait();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        t0.elapsed()
    });
    assert_eq!(failed.load(Ordering::Relaxed), 0, "every IMDN must become a receipt");
    let n_drained = drained.load(Ordering::Relaxed);
    (n_drained as f64 / elapsed.as_secs_f64(), n_drained)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let seconds = if quick { 0.1 } else { 3.0 };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let available = cores.len().max(1);
    let input = imdn_datagrams(&key_ring().expect("keys"), DATAGRAMS).expect("datagrams");
    let mut one = 0.0;
    for n in [1usize, 2, 4, 8] {
        if n > available {
            println!("{{\"figure\":\"scaling\",\"workers\":{n},\"skipped\":\"only {available} CPUs\"}}");
            continue;
        }
        let (rps, receipts) = run(n, &cores, &input, seconds);
        if n == 1 {
            one = rps;
        }
        let efficiency = if one > 0.0 { rps / (n as f64 * one) } else { 0.0 };
        println!(
            "{{\"figure\":\"scaling\",\"workers\":{n},\"receipts\":{receipts},\"receipts_per_s\":{rps:.0},\"per_worker\":{:.0},\"efficiency\":{efficiency:.2}}}",
            rps / n as f64
        );
    }
}
