//! Flow ownership: which worker owns a TCP flow (the active opener, else the hash of
//! its 4-tuple), the ephemeral port slices that make an active open's owner known
//! from its port, and the per-core-pair rings that carry a segment to its owner.
use super::*;

/// First port of the ephemeral range active opens use (IANA dynamic ports).
pub const EPHEMERAL_BASE: u16 = 49152;

/// Ephemeral ports per worker: worker `q` uses `EPHEMERAL_BASE + q * EPHEMERAL_PER_WORKER`
/// and the next `EPHEMERAL_PER_WORKER - 1` ports.
pub const EPHEMERAL_PER_WORKER: u16 = 256;

/// Segments taken from each incoming ring per loop.
pub const HANDOFF_BURST: usize = 32;

/// The local ports worker `queue` uses for its active opens.
pub fn ephemeral_range(queue: u16) -> std::ops::Range<u16> {
    let start = EPHEMERAL_BASE.saturating_add(queue.saturating_mul(EPHEMERAL_PER_WORKER));
    start..start.saturating_add(EPHEMERAL_PER_WORKER)
}

/// The worker whose active open owns local port `port`, if it lies in a worker's slice.
pub(super) fn active_open_owner(port: u16, workers: u16) -> Option<u16> {
    let q = port.checked_sub(EPHEMERAL_BASE)? / EPHEMERAL_PER_WORKER;
    (q < workers).then_some(q)
}

/// The owner core of the flow between `peer` and our `local_port`, among `workers`
/// workers: the one that did the active open when `local_port` is in a worker's
/// ephemeral slice, else the 4-tuple's hash (our address is the port's own, constant
/// per stack). Deterministic on every core.
pub fn flow_owner(peer: SocketAddrV4, local_port: u16, workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    if let Some(q) = active_open_owner(local_port, workers) {
        return q;
    }
    // FNV-1a over the tuple, then a multiply-shift: spreads ports that differ by one.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    peer.ip().octets().into_iter().for_each(&mut feed);
    peer.port().to_be_bytes().into_iter().for_each(&mut feed);
    local_port.to_be_bytes().into_iter().for_each(&mut feed);
    let mixed = h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    u16::try_from(mixed % u64::from(workers)).unwrap_or(0)
}

/// The sending end of one direction of a core pair (the sending core is its only
/// producer).
pub trait SegmentSender: Send {
    /// What travels (an [`Mbuf`] on the packet path).
    type Item;
    /// Enqueues, or hands the item back when full.
    fn push(&self, item: Self::Item) -> Result<(), Self::Item>;
}

/// The receiving end of one direction of a core pair (the owner core is its only
/// consumer).
pub trait SegmentReceiver: Send {
    /// What travels.
    type Item;
    /// Dequeues one.
    fn pop(&self) -> Option<Self::Item>;
}

/// Where a segment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// This core owns the flow.
    Local,
    /// Pass it to this worker.
    To(u16),
}

/// One worker's ends of the core-pair rings: `out[q]` carries segments to worker `q`,
/// `inbound[q]` brings them from worker `q` (`None` for itself).
#[derive(Debug)]
pub struct Handoff<S, R> {
    pub(super) me: u16,
    pub(super) workers: u16,
    pub(super) out: Vec<Option<S>>,
    pub(super) inbound: Vec<Option<R>>,
}

/// The packet path's hand-over: DPDK rings of mbufs.
pub type MbufHandoff = Handoff<crate::dataplane::dpdk::ring::RingProducer, crate::dataplane::dpdk::ring::RingConsumer>;

impl SegmentSender for crate::dataplane::dpdk::ring::RingProducer {
    type Item = Mbuf;

    fn push(&self, item: Mbuf) -> Result<(), Mbuf> {
        crate::dataplane::dpdk::ring::RingProducer::push(self, item)
    }
}

impl SegmentReceiver for crate::dataplane::dpdk::ring::RingConsumer {
    type Item = Mbuf;

    fn pop(&self) -> Option<Mbuf> {
        crate::dataplane::dpdk::ring::RingConsumer::pop(self)
    }
}
