//! `iwf scaling`: receipts/s of the receipt path on 1, 2, 4, 8 worker lcores over DPDK
//! rings, without a NIC's or a tap's limit (multi-core scaling).
//!
//! One `net_ring` port (the ring PMD: queue *i*'s TX ring is its RX ring) with one queue
//! pair per worker. Each queue is filled once with Ethernet/IPv4/UDP frames carrying SIP
//! MESSAGEs with delivery IMDNs whose tags name 8 legacy systems (generated in memory,
//! signed with a bench key). Each worker lcore then runs what a pipeline core runs per
//! datagram: `rte_eth_rx_burst`, Ethernet/IPv4/UDP parse with checksums, SIP/CPIM/IMDN
//! parse, tag verify, the deliver_sm receipt encoded and pushed into its system's lane
//! (the lock-free lanes all cores share). Queue *q* carries the IMDNs of systems
//! *s* ≡ *q* + 1 (mod N), and system *s* is bound on worker *s* mod N, so with N > 1 every
//! receipt crosses to another core, the worst case of binds spread over cores. Each
//! worker drains the lanes it owns, as its SMPP sessions would, and sends the same mbufs back
//! with `rte_eth_tx_burst`, so the frames circulate. Figure: receipts drained per second
//! for each N, and the efficiency receipts/s(N) / (N · receipts/s(1)).
//!
//! What it leaves out: the TCP/SMPP sessions and the SIP transactions (measured through
//! the lab by scripts/bench.sh).
use crate::traffic::{exchange_of, imdn_datagrams, key_ring, udp_frame, udp_payload, NOW, SYSTEMS};
use iwf::control::config::{Device, PortConfig};
use iwf::dataplane::dpdk::eal::Eal;
use iwf::dataplane::dpdk::mbuf::{Mbuf, Mempool};
use iwf::dataplane::dpdk::port::{Port, PortQueue, RxBurst, TxBatch};
use iwf::ids::LegacySystemId;
use iwf::interwork::legacy_to_converged::{imdn_to_receipts, ReceiptOutcome};
use iwf::route::{LaneItem, Lanes, PushError};
use iwf::tag::KeyRing;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames each queue circulates.
const FRAMES_PER_QUEUE: usize = 256;

/// One round's figure.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Worker lcores.
    pub workers: usize,
    /// Receipts drained from the lanes.
    pub receipts: u64,
    /// Frames that did not become a receipt (must stay 0).
    pub failed: u64,
    /// Wall time of the round.
    pub seconds: f64,
}

impl Round {
    /// Receipts per second.
    pub fn receipts_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.receipts as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// What a worker lcore needs for a round.
struct Shared {
    lanes: Lanes,
    keys: KeyRing,
    stop: AtomicBool,
    receipts: AtomicU64,
    failed: AtomicU64,
}

/// The loop of worker `me` on its queue `q` (see the module documentation).
fn worker(s: &Shared, q: &PortQueue) -> i32 {
    let me = q.queue();
    let mut rx = RxBurst::new();
    let mut tx = TxBatch::new(q);
    let mut out = [0u8; 1024];
    let mut token = u64::from(me) << 48;
    let (mut drained, mut failed) = (0u64, 0u64);
    let drain = |drained: &mut u64| {
        for lane in s.lanes.load().owned_by(me) {
            *drained += lane.drain(me, 256, |item| {
                std::hint::black_box(item);
            }) as u64;
        }
    };
    while !s.stop.load(Ordering::Relaxed) {
        q.receive(&mut rx);
        for m in rx.by_ref() {
            let receipt = m.data().ok().and_then(udp_payload).map(|payload| {
                token += 1;
                imdn_to_receipts(payload, &s.keys, NOW, exchange_of, token as u32, &mut out)
            });
            // The same mbuf goes back onto the ring, so that the frames circulate.
            tx.push(m);
            let Some(Ok(ReceiptOutcome::Receipts { system, len, .. })) = receipt else {
                failed += 1;
                continue;
            };
            let Ok(mut item) = LaneItem::new(LegacySystemId(system), token, out.get(..len).unwrap_or(&[])) else {
                failed += 1;
                continue;
            };
            // A full lane waits for its owner: drain ours meanwhile.
            loop {
                match s.lanes.load().push(item) {
                    Ok(()) => break,
                    Err(PushError::Full(back)) => {
                        item = back;
                        drain(&mut drained);
                        if s.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::hint::spin_loop();
                    }
                    Err(_) => {
                        failed += 1;
                        break;
                    }
                }
            }
        }
        drain(&mut drained);
        tx.flush();
    }
    s.receipts.fetch_add(drained, Ordering::Relaxed);
    s.failed.fetch_add(failed, Ordering::Relaxed);
    0
}

/// Runs a round per worker count in `counts` (each at most the EAL's worker lcores) for
/// `seconds` each. EAL runs in this process with `--no-huge` and its own file prefix.
pub fn run(counts: &[usize], seconds: f64) -> Result<Vec<Round>, String> {
    let max = counts.iter().copied().max().unwrap_or(1).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Main lcore 0 on CPU 0 (it sleeps while a round runs); worker lcore w on CPU w mod
    // cpus (CPU 0 last: the main lcore shares it).
    let map: Vec<String> =
        std::iter::once("0@0".to_string()).chain((1..=max).map(|w| format!("{w}@{}", w % cpus))).collect();
    let prefix = format!("iwf-scaling-{}", std::process::id());
    let args: Vec<String> = [
        "iwf-scaling",
        "--lcores",
        &map.join(","),
        "--no-huge",
        "-m",
        "512",
        "--file-prefix",
        &prefix,
        "--no-pci",
        "--vdev",
        "net_ring0",
        "--log-level",
        "error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args, &prefix)?;
    let result = rounds(&eal, counts, max, seconds);
    let _ = eal.shutdown();
    result
}

fn rounds(eal: &Eal, counts: &[usize], max: usize, seconds: f64) -> Result<Vec<Round>, String> {
    let lcores = eal.worker_lcores();
    if lcores.len() < max {
        return Err(format!("{} worker lcores, {max} needed", lcores.len()));
    }
    let pool = Mempool::create("iwf_scaling", (max * FRAMES_PER_QUEUE * 2 + 4096) as u32, 256, 0)?;
    let cfg = PortConfig {
        name: "ring".into(),
        device: Device::parse("net_ring0")?,
        device_line: 0,
        address: std::net::Ipv4Addr::new(198, 18, 2, 2),
        prefix_len: 24,
        gateway: None,
        sip_udp_port: Some(5060),
        rx_desc: 1024,
        tx_desc: 1024,
        require_link: false,
        smpp_tcp_port: None,
        sip_tcp_port: None,
        smtp_tcp_port: None,
    };
    let port = Port::open(&cfg, max as u16, &pool, Duration::ZERO).map_err(|e| format!("net_ring0: {e:?}"))?;
    let keys = key_ring()?;
    let frames: Vec<Vec<u8>> = imdn_datagrams(&keys, 4096)?
        .iter()
        .map(|d| udp_frame(d).ok_or_else(|| "cannot build a frame".to_string()))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for &n in counts {
        let lanes = Lanes::new(n as u16).map_err(|e| e.to_string())?;
        for s in 1..=SYSTEMS {
            lanes.add_system(LegacySystemId(s), 4096).map_err(|e| e.to_string())?;
            lanes.bind_up(LegacySystemId(s), s % n as u16).map_err(|e| e.to_string())?;
        }
        let shared = Arc::new(Shared {
            lanes,
            keys: key_ring()?,
            stop: AtomicBool::new(false),
            receipts: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        // Fill each queue's ring: what a worker sends on queue q, it receives on q.
        let mut queues = Vec::with_capacity(n);
        for q in 0..n as u16 {
            let queue = port.queue(q).ok_or_else(|| format!("queue {q} is held"))?;
            let mut tx = TxBatch::new(&queue);
            for f in frames.iter().skip(usize::from(q)).step_by(n).take(FRAMES_PER_QUEUE) {
                let mut m = Mbuf::alloc(&pool).ok_or("mbuf pool empty")?;
                m.append(f.len() as u16).ok_or("frame larger than an mbuf")?.copy_from_slice(f);
                tx.push(m);
            }
            let filled = tx.flush();
            if filled.dropped > 0 {
                return Err(format!("queue {q} ring full after {} frames", filled.sent));
            }
            queues.push(queue);
        }
        let t0 = Instant::now();
        for (queue, &lcore) in queues.into_iter().zip(lcores.iter()) {
            let s = Arc::clone(&shared);
            if let Err(e) = eal.launch(lcore, Box::new(move || worker(&s, &queue))) {
                // The ones started must be done with the port before it goes.
                shared.stop.store(true, Ordering::Relaxed);
                eal.wait_workers();
                return Err(e);
            }
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        shared.stop.store(true, Ordering::Relaxed);
        eal.wait_workers();
        let elapsed = t0.elapsed().as_secs_f64();
        // Empty the rings for the next round (the workers gave their queues back).
        for q in 0..max as u16 {
            if let Some(queue) = port.queue(q) {
                queue.drain();
            }
        }
        out.push(Round {
            workers: n,
            receipts: shared.receipts.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            seconds: elapsed,
        });
    }
    drop(port);
    drop(pool);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_imdns_whose_tags_route_to_their_systems() {
        let keys = key_ring().unwrap();
        let datagrams = imdn_datagrams(&keys, 16).unwrap();
        let mut out = [0u8; 1024];
        for (i, d) in datagrams.iter().enumerate() {
            let f = udp_frame(d).unwrap();
            assert_eq!(udp_payload(&f), Some(&d[..]));
            let r = imdn_to_receipts(udp_payload(&f).unwrap(), &keys, NOW, exchange_of, 1, &mut out).unwrap();
            assert!(
                matches!(r, ReceiptOutcome::Receipts { system, count: 1, .. } if system == 1 + (i as u16 % SYSTEMS)),
                "{i}"
            );
        }
        // A corrupted checksum is not a datagram.
        let mut f = udp_frame(&datagrams[0]).unwrap();
        let last = f.len() - 1;
        f[last] ^= 0xff;
        assert_eq!(udp_payload(&f), None);
    }
}
