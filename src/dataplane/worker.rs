//! The per-core pipeline: run to completion on one EAL lcore, polling queue `q` of every
//! port in bursts of [`BURST`](super::dpdk::port::BURST), answering through the port's [`Host`] and the worker's
//! own UDP services (SIP), counting every frame it does not answer by reason. The clock
//! is read when a poll finds nothing, or every [`CLOCK_EVERY`] busy polls; the services'
//! timers run then. No allocation, no lock, no panic on input.
use super::arp::ArpHold;
use super::counters::{DropReason, Handled, QueueCounters, Stats};
use super::dpdk::mbuf::{Mbuf, Mempool};
use super::dpdk::port::{PortQueue, RxBurst, TxBatch};
use super::host::{Host, Unsent, Verdict, ETH_HEADER_LEN, MAX_FRAME};
use super::sip::SipUdp;
use super::tcp::{MbufHandoff, Steer, TcpStack, HANDOFF_BURST};
use crate::flow::Flows;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How often a worker re-checks that its gateways are resolved, in milliseconds.
pub const ARP_CHECK_MS: u64 = 100;
/// Busy polls between two clock reads (an idle poll always reads it).
pub const CLOCK_EVERY: u32 = 16;
/// Most datagrams a service may originate per timer check (the rest wait for the next).
pub const ORIGINATE_MAX: usize = 64;

/// Set by SIGINT/SIGTERM (or the application) to make every worker return.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// One port as seen by one worker.
#[derive(Debug)]
pub struct WorkerPort {
    /// This worker's queue pair of the port.
    pub queue: PortQueue,
    /// Index into [`Stats::ports`].
    pub index: usize,
    /// This core's IP host for the port.
    pub host: Host,
    /// A neighbour to keep resolved.
    pub gateway: Option<Ipv4Addr>,
    /// This worker's UDP services (SIP), indexed by the host's service slot.
    pub services: Vec<Option<SipUdp>>,
    /// This worker's TCP on the port (SMPP, SIP over TCP), if the port has TCP services.
    pub tcp: Option<TcpStack>,
    /// Datagrams this worker originated for neighbours still being resolved.
    pub arp_hold: ArpHold<Mbuf>,
    /// Where a UDP reply is written before it is known to exist ([`MAX_FRAME`] octets).
    pub scratch: Box<[u8]>,
}

/// Datagrams held per neighbour being resolved, in all, and for how long (the
/// kernel's defaults are of this order: a few packets, a few seconds).
pub const ARP_HOLD_PER_NEIGHBOUR: usize = 3;
/// See [`ARP_HOLD_PER_NEIGHBOUR`].
pub const ARP_HOLD_MAX: usize = 64;
/// See [`ARP_HOLD_PER_NEIGHBOUR`].
pub const ARP_HOLD_MS: u64 = 3_000;

/// One worker lcore's pipeline.
#[derive(Debug)]
pub struct Worker {
    /// The queue (RX and TX) this worker owns on every port.
    pub queue: u16,
    /// The ports it polls.
    pub ports: Vec<WorkerPort>,
    /// Where reply and request buffers come from.
    pub pool: Arc<Mempool>,
    /// Counters; this worker is the only writer of `queues[queue]` of every port.
    pub stats: Arc<Stats>,
    /// The rings to and from the other workers (TCP segments of flows they own).
    pub handoff: MbufHandoff,
    /// This worker's engine, its own: the SIP and TCP services reach it only through
    /// the `&mut` the loop lends them (lanes, completions, timeouts run from here).
    pub flows: Option<Flows>,
}

impl Worker {
    /// Polls until [`STOP`] is set; returns 0 (the lcore's exit code).
    pub fn run(mut self) -> i32 {
        let start = Instant::now();
        let mut now_ms = 0u64;
        let mut next_arp_check = 0u64;
        let mut busy_polls = 0u32;
        // Whether the clock moved since the services' timers last ran.
        let mut clock_read = true;
        let mut rx = RxBurst::new();
        let queue = usize::from(self.queue);
        let stats = Arc::clone(&self.stats);
        while !STOP.load(Ordering::Relaxed) {
            let mut got_any = false;
            let arp_check = now_ms >= next_arp_check;
            if arp_check {
                next_arp_check = now_ms.saturating_add(ARP_CHECK_MS);
            }
            // The engine's timers and the other cores' hand-overs first: what the
            // services hand it below is stamped with this poll's clock.
            if clock_read {
                if let Some(f) = self.flows.as_mut() {
                    f.poll(now_ms, super::sip::unix_now());
                }
            }
            // Segments other workers passed here (flows this worker owns): to the stack
            // of the port they arrived on.
            if self.handoff.workers() > 1 {
                let ports = &mut self.ports;
                let stats = &stats;
                let (pool, handoff, flows) = (&self.pool, &self.handoff, &mut self.flows);
                handoff.drain(HANDOFF_BURST, |m| {
                    let port = m.port();
                    let Some(p) = ports.iter_mut().find(|p| p.queue.port() == port) else { return };
                    let Some(c) = stats.ports.get(p.index).and_then(|s| s.queues.get(queue)) else { return };
                    if is_udp(&m) {
                        // A SIP response to one of this worker's client transactions.
                        c.sip.responses_steered_in.inc();
                        let mut tx = TxBatch::new(&p.queue);
                        handle(p, flows.as_mut(), m, now_ms, pool, c, &mut tx, handoff);
                        c.count_tx(tx.flush());
                        return;
                    }
                    c.tcp.redirected_in.inc();
                    if let Some(t) = p.tcp.as_mut() {
                        if t.queue(m).is_err() {
                            c.tcp.input_queue_full.inc();
                        }
                    }
                });
            }
            for p in self.ports.iter_mut() {
                let Some(counters) = stats.ports.get(p.index).and_then(|s| s.queues.get(queue)) else {
                    continue;
                };
                let mut tx = TxBatch::new(&p.queue);
                let polled_at = Instant::now();
                let n = p.queue.receive(&mut rx);
                if n > 0 {
                    got_any = true;
                }
                for m in rx.by_ref() {
                    counters.rx_packets.inc();
                    counters.rx_bytes.add(m.pkt_len() as u64);
                    handle(p, self.flows.as_mut(), m, now_ms, &self.pool, counters, &mut tx, &self.handoff);
                }
                if let Some(t) = p.tcp.as_mut() {
                    t.poll(now_ms, &self.pool, counters, &mut tx, self.flows.as_mut());
                }
                if clock_read {
                    run_service_timers(p, self.flows.as_mut(), now_ms, &self.pool, counters, &mut tx);
                }
                if !p.arp_hold.is_empty() {
                    // What waited for a neighbour goes once it answered ARP.
                    let host = &p.host;
                    p.arp_hold.release(
                        now_ms,
                        |n| host.neighbour_mac(n, now_ms),
                        |mac, mut m| {
                            if let Some(dst) = m.data_mut().ok().and_then(|f| f.get_mut(0..6)) {
                                dst.copy_from_slice(&mac.0);
                            }
                            counters.arp_released.inc();
                            tx.push(m);
                        },
                        |m| {
                            drop(m);
                            counters.drop(DropReason::NoNeighbour);
                        },
                    );
                }
                if let Some(gw) = p.gateway {
                    if arp_check && p.host.arp_request_due(gw, now_ms) {
                        send_arp_request(p, gw, &self.pool, counters, &mut tx);
                    }
                }
                counters.count_tx(tx.flush());
                if n > 0 {
                    counters.busy_ns.add(u64::try_from(polled_at.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
            }
            // The clock is read on every idle poll and every CLOCK_EVERY busy ones.
            busy_polls = if got_any { busy_polls.wrapping_add(1) } else { 0 };
            clock_read = !got_any || busy_polls.is_multiple_of(CLOCK_EVERY);
            if clock_read {
                now_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                stats.liveness.beat(queue);
            }
        }
        0
    }
}

/// Whether a frame is IPv4/UDP (a steered SIP response, not a TCP segment).
fn is_udp(m: &Mbuf) -> bool {
    m.data().ok().is_some_and(|f| f.get(12..14) == Some(&[0x08, 0x00][..]) && f.get(ETH_HEADER_LEN + 9) == Some(&17))
}

/// Runs every service whose timer is due: each may originate datagrams (requests,
/// retransmissions), framed towards the resolved neighbour.
fn run_service_timers(
    p: &mut WorkerPort,
    mut flows: Option<&mut Flows>,
    now_ms: u64,
    pool: &Mempool,
    counters: &QueueCounters,
    tx: &mut TxBatch,
) {
    let mut resolve = None;
    for slot in 0..p.services.len() {
        let Some(Some(service)) = p.services.get_mut(slot) else {
            continue;
        };
        if service.poll_timeout(flows.as_deref()).is_none_or(|t| t > now_ms) {
            continue;
        }
        for _ in 0..ORIGINATE_MAX {
            let Some(mut m) = Mbuf::alloc(pool) else {
                counters.drop(DropReason::NoMbuf);
                break;
            };
            let room = m.tailroom().min(MAX_FRAME);
            let Some(buf) = m.append(room) else {
                counters.drop(DropReason::NoMbuf);
                break;
            };
            let f = flows.as_deref_mut();
            match p.host.originate_udp(slot, now_ms, buf, |room| service.poll_transmit(f, now_ms, room)) {
                Ok(Some(len)) => {
                    m.truncate(len);
                    tx.push(m);
                }
                Ok(None) => break,
                Err(Unsent::Unresolved { neighbour, len }) => {
                    // Held until the neighbour answers ARP (or the hold times out).
                    m.truncate(len);
                    if let Err(m) = p.arp_hold.hold(neighbour, now_ms, m) {
                        drop(m);
                        counters.drop(DropReason::NoNeighbour);
                    } else {
                        counters.arp_held.inc();
                    }
                    resolve = Some(neighbour);
                }
                Err(Unsent::NoRoute | Unsent::TooLong) => counters.drop(DropReason::NoNeighbour),
            }
        }
    }
    if let Some(neighbour) = resolve {
        if p.host.arp_request_due(neighbour, now_ms) {
            send_arp_request(p, neighbour, pool, counters, tx);
        }
    }
}

/// Hands smoltcp a copy of an ARP frame aimed at our address, its operation set to
/// reply: smoltcp learns the sender's MAC address and never answers (host.rs does).
fn arp_to_stack(p: &mut WorkerPort, frame: &[u8], pool: &Mempool, counters: &QueueCounters) {
    const OP: usize = ETH_HEADER_LEN + 6;
    const TPA: std::ops::Range<usize> = ETH_HEADER_LEN + 24..ETH_HEADER_LEN + 28;
    let Some(stack) = p.tcp.as_mut() else { return };
    if frame.get(12..14) != Some(&[0x08, 0x06][..]) || frame.get(TPA) != Some(&p.host.ip().octets()[..]) {
        return;
    }
    let Some(mut copy) = Mbuf::alloc(pool) else {
        counters.drop(DropReason::NoMbuf);
        return;
    };
    let Some(len) = u16::try_from(frame.len()).ok() else { return };
    let Some(buf) = copy.append(len) else { return };
    buf.copy_from_slice(frame);
    if let Some(op) = buf.get_mut(OP..OP + 2) {
        op.copy_from_slice(&[0, 2]);
    }
    if stack.queue(copy).is_err() {
        counters.tcp.input_queue_full.inc();
    }
}

#[allow(clippy::too_many_arguments)]
fn handle(
    p: &mut WorkerPort,
    flows: Option<&mut Flows>,
    mut m: Mbuf,
    now_ms: u64,
    pool: &Mempool,
    counters: &QueueCounters,
    tx: &mut TxBatch,
    handoff: &MbufHandoff,
) {
    if p.tcp.is_some() {
        if let Ok(frame) = m.data() {
            if frame.get(12..14) == Some(&[0x08, 0x06][..]) {
                arp_to_stack(p, frame, pool, counters);
            }
        }
    }
    let outcome = match m.data_mut() {
        Ok(frame) => p.host.receive(frame, now_ms),
        Err(_) => Verdict::Drop(DropReason::Chained),
    };
    match outcome {
        Verdict::Drop(reason) => counters.drop(reason),
        Verdict::Handled(what) => counters.handled(what),
        Verdict::Reply { len, what } => {
            counters.handled(what);
            m.truncate(len);
            tx.push(m);
        }
        Verdict::Tcp(seg) => {
            counters.tcp.segments_in.inc();
            let Some(stack) = p.tcp.as_mut() else {
                counters.drop(DropReason::TcpNoService);
                return;
            };
            if seg.opening {
                if let Err(refusal) = stack.admit(*seg.src.ip(), seg.dst_port, now_ms) {
                    // Refused before it costs a socket, a handshake or a hand-over: the
                    // SYN becomes its RST.
                    let c = &counters.tcp;
                    match refusal {
                        super::tcp::Refusal::NotAllowed => c.refused_not_allowed.inc(),
                        super::tcp::Refusal::Backoff => c.refused_backoff.inc(),
                        super::tcp::Refusal::Untrusted => c.refused_untrusted.inc(),
                        super::tcp::Refusal::NotMmsc => c.refused_not_mmsc.inc(),
                    }
                    if let Some(len) = m.data_mut().ok().and_then(super::host::reset_in_place) {
                        m.truncate(len);
                        tx.push(m);
                    }
                    return;
                }
            }
            match handoff.steer(seg.src, seg.dst_port) {
                Steer::Local => {
                    if stack.queue(m).is_err() {
                        counters.tcp.input_queue_full.inc();
                    }
                }
                Steer::To(owner) => match handoff.pass(owner, m) {
                    Ok(()) => counters.tcp.redirected_out.inc(),
                    Err(_) => counters.tcp.redirect_ring_full.inc(),
                },
            }
        }
        Verdict::Udp(dgram) => {
            use crate::session::sip::{classify, response_owner, DatagramKind};
            // Classified once, here: for steering and for the service.
            let kind = m.data().ok().and_then(|f| f.get(dgram.payload.clone())).map(classify);
            // A response to a client transaction of another worker (the branch names
            // it): to that worker, whose table holds the transaction.
            if handoff.workers() > 1 && kind == Some(DatagramKind::Response) {
                let owner = m.data().ok().and_then(|f| f.get(dgram.payload.clone())).and_then(response_owner);
                if let Some(owner) = owner.filter(|&o| o != handoff.me() && o < handoff.workers()) {
                    match handoff.pass(owner, m) {
                        Ok(()) => counters.sip.responses_steered_out.inc(),
                        Err(_) => counters.tcp.redirect_ring_full.inc(),
                    }
                    return;
                }
            }
            counters.handled(Handled::UdpDelivered);
            let (Ok(frame), Some(kind)) = (m.data(), kind) else { return };
            let payload = frame.get(dgram.payload.clone()).unwrap_or(&[]);
            let Some(Some(service)) = p.services.get_mut(dgram.service) else {
                counters.drop(DropReason::UdpNoService);
                return;
            };
            // The reply is written into the port's scratch frame: an mbuf is taken only
            // when there is one (a MESSAGE or an IMDN is answered later, by the engine).
            let src = dgram.src;
            let reply = p.host.answer_udp(&dgram, &mut p.scratch[..], |room| {
                service.receive_classified(flows, kind, now_ms, payload, src, room)
            });
            let Some(len) = reply else { return };
            let Some(mut out) = Mbuf::alloc(pool) else {
                counters.drop(DropReason::NoMbuf);
                return;
            };
            match (out.append(len as u16), p.scratch.get(..len)) {
                (Some(buf), Some(frame)) if len <= usize::from(MAX_FRAME) => {
                    buf.copy_from_slice(frame);
                    counters.udp_replied.inc();
                    tx.push(out);
                }
                _ => counters.drop(DropReason::NoMbuf),
            }
        }
    }
}

fn send_arp_request(p: &mut WorkerPort, target: Ipv4Addr, pool: &Mempool, counters: &QueueCounters, tx: &mut TxBatch) {
    let Some(mut m) = Mbuf::alloc(pool) else {
        counters.drop(DropReason::NoMbuf);
        return;
    };
    let Some(buf) = m.append(super::host::ARP_FRAME_LEN as u16) else {
        counters.drop(DropReason::NoMbuf);
        return;
    };
    if p.host.arp_request(buf, target).is_some() {
        counters.arp_requests_sent.inc();
        tx.push(m);
    }
}
