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
use super::dpdk::eal::Eal;
use super::dpdk::mbuf::{Mbuf, Mempool};
use super::dpdk::port::{Port, PortQueue, RxBurst, TxBatch};
use crate::control::config::{Device, PortConfig};
use crate::ids::LegacySystemId;
use crate::interwork::address::NumberingPlan;
use crate::interwork::legacy_to_converged::{imdn_to_receipts, legacy_to_sip, LegacyMessage, ReceiptOutcome};
use crate::interwork::{BindDirection, Concatenation, ConvergedSide, Encoding, Exchange, IdCanonicalisation};
use crate::route::{LaneItem, Lanes, PushError};
use crate::tag::{KeyRing, TagKey};
use crate::wire::cpim::{CpimRepr, DateTime, Dispositions, NameAddr};
use crate::wire::imdn::{DeliveryStatus, Imdn, Notification, XmlText};
use crate::wire::sip::{MessageWriter, Method};
use crate::wire::smpp::{Address, Body, Pdu, RegisteredDelivery, SubmitSm};
use crate::wire::sms::gsm7;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
    UdpPacket, UdpRepr,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Legacy systems the IMDNs' tags name.
pub const SYSTEMS: u16 = 8;
/// Frames each queue circulates.
const FRAMES_PER_QUEUE: usize = 256;
/// The synthetic traffic's clock (Unix seconds the tags are issued and verified at).
pub const NOW: u64 = 1_790_000_000;

/// The converged side the bench traffic's tags are issued for.
pub const CONVERGED: ConvergedSide<'static> = ConvergedSide {
    legacy_domain: "iwf.ims.lab",
    converged_domain: "ims.lab",
    local_sent_by: "198.18.2.2:5060",
    transport: "UDP",
};

/// The exchange of bench system `system` (1..=[`SYSTEMS`]).
pub fn exchange_of(system: u16) -> Option<Exchange<'static>> {
    (1..=SYSTEMS).contains(&system).then_some(Exchange {
        system,
        name: "bench",
        direction: BindDirection::LegacyBindsToIwf,
        default_encoding: Encoding::Gsm7,
        user_ack: false,
        concatenation: Concatenation::Udh8,
        ids: IdCanonicalisation::Exact,
        numbering: NumberingPlan { country_code: Some("44"), trunk_prefix: "0" },
    })
}

/// The bench's key ring (key 1, a fixed secret: the traffic is synthetic).
pub fn key_ring() -> Result<KeyRing, String> {
    let mut r = KeyRing::new(1).map_err(|e| e.to_string())?;
    r.insert(1, TagKey::from_bytes([7; 16])).map_err(|e| e.to_string())?;
    Ok(r)
}

/// `count` SIP MESSAGEs carrying delivery IMDNs, their tags spread over the systems, each
/// for a submit_sm converted with sequence number i + 1 (what a converged client sends
/// back for messages iwf converted).
pub fn imdn_datagrams(keys: &KeyRing, count: u32) -> Result<Vec<Vec<u8>>, String> {
    let submit = submit_sm_bytes()?;
    let pdu = Pdu::parse(&submit).map_err(|e| e.to_string())?;
    let Body::SubmitSm(sm) = pdu.body else { return Err("not a submit_sm".into()) };
    let (msg, _) = LegacyMessage::from_submit_sm(&sm).map_err(|e| e.to_string())?;
    let (mut scratch, mut out) = ([0u8; 2048], [0u8; 2048]);
    (0..count)
        .map(|i| {
            let ex = exchange_of(1 + (i % u32::from(SYSTEMS)) as u16).ok_or("system")?;
            let tag = legacy_to_sip(&msg, &ex, &CONVERGED, None, keys, i + 1, NOW, &mut scratch, &mut out)
                .map_err(|e| e.to_string())?
                .tag;
            imdn_message(tag.as_bytes()).ok_or_else(|| "cannot build the IMDN".to_string())
        })
        .collect()
}

/// A submit_sm as a legacy ESME sends it: 60 GSM-7 characters, receipt requested.
pub fn submit_sm_bytes() -> Result<Vec<u8>, String> {
    let mut septets = [0u8; 160];
    let n = gsm7::encode_unpacked("Meet you at the station at 10:30, bring the tickets please!", &mut septets)
        .map_err(|e| e.to_string())?;
    let sm = SubmitSm {
        source: Address::international(b"447000100001"),
        destination: Address::international(b"447000200001"),
        registered_delivery: RegisteredDelivery(0x01),
        short_message: septets.get(..n).unwrap_or(&[]),
        ..SubmitSm::default()
    };
    let mut buf = [0u8; 512];
    let len = Pdu::new(42, Body::SubmitSm(sm)).emit(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf.get(..len).unwrap_or(&[]).to_vec())
}

/// The converged client's SIP MESSAGE with the delivery IMDN for `tag`.
pub fn imdn_message(tag: &[u8]) -> Option<Vec<u8>> {
    let imdn = Imdn {
        message_id: XmlText::plain(tag),
        datetime: DateTime::from_unix(NOW as i64),
        recipient_uri: None,
        original_recipient_uri: None,
        subject: None,
        notification: Notification::Delivery(DeliveryStatus::Delivered),
    };
    let mut xml = [0u8; 1024];
    let xn = imdn.emit(&mut xml).ok()?;
    let from = "sip:+447000200001@ims.lab;user=phone";
    let to = "sip:+447000100001@iwf.ims.lab;user=phone";
    let cpim = CpimRepr {
        from: NameAddr::new(b"", from.as_bytes()),
        to: NameAddr::new(b"", to.as_bytes()),
        datetime: DateTime::from_unix(NOW as i64 + 30),
        message_id: b"Ba7kDf1x9q",
        dispositions: Dispositions::empty(),
        imdn_record_route: None,
        content_type: b"message/imdn+xml",
        content_disposition: Some(b"notification"),
        content: xml.get(..xn)?,
    };
    let mut body = [0u8; 2048];
    let bn = cpim.emit(&mut body).ok()?;
    let mut out = [0u8; 4096];
    let mut w = MessageWriter::request(&mut out, Method::Message, to).ok()?;
    w.header("Via", "SIP/2.0/UDP 198.18.2.1:5060;branch=z9hG4bK776asdhds").ok()?;
    w.header("Max-Forwards", "69").ok()?;
    w.header("From", &format!("<{from}>;tag=49583")).ok()?;
    w.header("To", &format!("<{to}>")).ok()?;
    w.header("Call-ID", "a84b4c76e66710@198.18.2.1").ok()?;
    w.header("CSeq", "1 MESSAGE").ok()?;
    w.header("Content-Type", "message/cpim").ok()?;
    let n = w.finish(body.get(..bn)?).ok()?;
    Some(out.get(..n)?.to_vec())
}

const SRC_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x02, 0x01]);
const DST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x02, 0x02]);
const SRC_IP: Ipv4Address = Ipv4Address::new(198, 18, 2, 1);
const DST_IP: Ipv4Address = Ipv4Address::new(198, 18, 2, 2);

/// `payload` in an Ethernet/IPv4/UDP frame (5060 → 5060) with its checksums.
pub fn udp_frame(payload: &[u8]) -> Option<Vec<u8>> {
    let udp = UdpRepr { src_port: 5060, dst_port: 5060 };
    let ip = Ipv4Repr {
        src_addr: SRC_IP,
        dst_addr: DST_IP,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr { src_addr: SRC_MAC, dst_addr: DST_MAC, ethertype: EthernetProtocol::Ipv4 };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + 8 + payload.len()];
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_checked(&mut buf[..]).ok()?;
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_checked(frame.payload_mut()).ok()?;
    ip.emit(&mut packet, &caps);
    let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
    udp.emit(&mut datagram, &SRC_IP.into(), &DST_IP.into(), payload.len(), |b| b.copy_from_slice(payload), &caps);
    Some(buf)
}

/// The UDP payload of an Ethernet/IPv4/UDP frame whose checksums hold.
fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if !ip.verify_checksum() || ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if !udp.verify_checksum(&src.into(), &dst.into()) {
        return None;
    }
    // Borrow from `frame` itself: the UDP payload's offset and length.
    let len = udp.payload().len();
    let offset = EthernetFrame::<&[u8]>::header_len() + usize::from(ip.header_len()) + 8;
    frame.get(offset..offset + len)
}

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
