//! Per-port, per-queue counters: each queue's counters have exactly one writer (the
//! worker lcore that polls the queue), so an increment is a relaxed load and store, not a
//! locked read-modify-write; the control thread reads them at any time.
#![deny(unsafe_code)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A counter with a single writer: increments are plain loads and stores.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// Why a frame was dropped (or refused) on the packet path; each has a counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum DropReason { $($(#[$doc])* $variant,)* }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// The number of reasons.
            pub const COUNT: usize = Self::ALL.len();

            /// The name used in logs and reports (`ip_bad_checksum`).
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

drop_reasons! {
    /// An mbuf chain (more than one segment): refused, never misread.
    Chained = "chained_mbuf",
    /// Shorter than an Ethernet header.
    EthTruncated = "eth_truncated",
    /// Unicast to another MAC address.
    EthOtherHost = "eth_other_host",
    /// Multicast other than broadcast (IPv6 ND, MLD, LLDP, ...).
    EthMulticast = "eth_multicast",
    /// An EtherType the host does not speak (IPv6 is planned).
    EthUnknownType = "eth_unknown_type",
    /// ARP that is not Ethernet/IPv4 or is truncated.
    ArpMalformed = "arp_malformed",
    /// ARP about another host, not cached here.
    ArpOtherTarget = "arp_other_target",
    /// IPv4 shorter than its header or its total length.
    IpTruncated = "ip_truncated",
    /// IP version other than 4 in an IPv4 frame.
    IpBadVersion = "ip_bad_version",
    /// IHL below 5 words.
    IpBadHeaderLen = "ip_bad_header_len",
    /// Total length below the header length.
    IpBadTotalLen = "ip_bad_total_len",
    /// Header checksum does not verify.
    IpBadChecksum = "ip_bad_checksum",
    /// A fragment (MF set or offset non-zero): not reassembled.
    IpFragment = "ip_fragment",
    /// Addressed to another IP address (or a broadcast).
    IpOtherHost = "ip_other_host",
    /// A protocol without a handler yet (TCP until the TCP stack lands).
    IpUnhandledProtocol = "ip_unhandled_protocol",
    /// ICMP shorter than its header.
    IcmpTruncated = "icmp_truncated",
    /// ICMP checksum does not verify.
    IcmpBadChecksum = "icmp_bad_checksum",
    /// ICMP other than echo request.
    IcmpUnhandled = "icmp_unhandled",
    /// UDP shorter than its header.
    UdpTruncated = "udp_truncated",
    /// UDP length field below 8 or beyond the IP payload.
    UdpBadLength = "udp_bad_length",
    /// UDP checksum does not verify.
    UdpBadChecksum = "udp_bad_checksum",
    /// No service on the destination port.
    UdpNoService = "udp_no_service",
    /// The mempool had no mbuf for a reply or a request.
    NoMbuf = "no_mbuf",
    /// The TX queue did not take the frame.
    TxFull = "tx_full",
}

/// What the host did with a frame that was not dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Answered an ARP request for our address.
    ArpAnswered,
    /// Learned or refreshed a neighbour from ARP.
    ArpLearned,
    /// Answered an ICMP echo request.
    IcmpEchoAnswered,
    /// Handed a UDP datagram to its service.
    UdpDelivered,
}

/// The counters of one RX/TX queue pair of one port. Cache-line aligned so two workers
/// never share a line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct QueueCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames handed to the TX queue.
    pub tx_packets: Counter,
    /// Bytes handed to the TX queue.
    pub tx_bytes: Counter,
    /// ARP requests for our address answered.
    pub arp_answered: Counter,
    /// Neighbours learned or refreshed.
    pub arp_learned: Counter,
    /// ARP requests sent to resolve a neighbour.
    pub arp_requests_sent: Counter,
    /// ICMP echo requests answered.
    pub icmp_echo_answered: Counter,
    /// UDP datagrams delivered to a service.
    pub udp_delivered: Counter,
    /// UDP replies a service produced.
    pub udp_replied: Counter,
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [Counter; DropReason::COUNT],
}

impl QueueCounters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&self, reason: DropReason) {
        if let Some(c) = self.drops.get(reason as usize) {
            c.inc();
        }
    }

    /// Counts one handled frame.
    #[inline]
    pub fn handled(&self, what: Handled) {
        match what {
            Handled::ArpAnswered => self.arp_answered.inc(),
            Handled::ArpLearned => self.arp_learned.inc(),
            Handled::IcmpEchoAnswered => self.icmp_echo_answered.inc(),
            Handled::UdpDelivered => self.udp_delivered.inc(),
        }
    }

    /// Drops counted for one reason.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).map_or(0, Counter::get)
    }
}

/// Counters and link state of one port.
#[derive(Debug)]
pub struct PortCounters {
    /// The port's name from the configuration.
    pub name: String,
    /// Link state as last seen by the control thread.
    pub link_up: AtomicBool,
    /// One entry per queue (= per worker lcore).
    pub queues: Vec<QueueCounters>,
}

/// Everything the control thread reads: one [`PortCounters`] per port.
#[derive(Debug)]
pub struct Stats {
    /// In configuration order.
    pub ports: Vec<PortCounters>,
}

/// Sums of one port's queues (for reports).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// ARP requests answered.
    pub arp_answered: u64,
    /// Neighbours learned.
    pub arp_learned: u64,
    /// ARP requests sent.
    pub arp_requests_sent: u64,
    /// Echo requests answered.
    pub icmp_echo_answered: u64,
    /// UDP datagrams delivered.
    pub udp_delivered: u64,
    /// UDP replies sent.
    pub udp_replied: u64,
    /// Drops by reason.
    pub drops: [u64; DropReason::COUNT],
}

impl Totals {
    fn add(&mut self, q: &QueueCounters) {
        self.rx_packets += q.rx_packets.get();
        self.rx_bytes += q.rx_bytes.get();
        self.tx_packets += q.tx_packets.get();
        self.tx_bytes += q.tx_bytes.get();
        self.arp_answered += q.arp_answered.get();
        self.arp_learned += q.arp_learned.get();
        self.arp_requests_sent += q.arp_requests_sent.get();
        self.icmp_echo_answered += q.icmp_echo_answered.get();
        self.udp_delivered += q.udp_delivered.get();
        self.udp_replied += q.udp_replied.get();
        for (t, c) in self.drops.iter_mut().zip(q.drops.iter()) {
            *t += c.get();
        }
    }

    /// One log line: `rx=.. tx=.. ... drop.ip_bad_checksum=2` (drops only when non-zero).
    pub fn line(&self) -> String {
        let mut s = format!(
            "rx={} rx_bytes={} tx={} tx_bytes={} arp_answered={} arp_learned={} arp_requests_sent={} icmp_echo_answered={} udp_delivered={} udp_replied={}",
            self.rx_packets,
            self.rx_bytes,
            self.tx_packets,
            self.tx_bytes,
            self.arp_answered,
            self.arp_learned,
            self.arp_requests_sent,
            self.icmp_echo_answered,
            self.udp_delivered,
            self.udp_replied
        );
        for (reason, n) in DropReason::ALL.iter().zip(self.drops.iter()) {
            if *n > 0 {
                let _ = write!(s, " drop.{}={}", reason.name(), n);
            }
        }
        s
    }
}

impl Stats {
    /// Counters for `ports` (names) with `queues` queues each.
    pub fn new(ports: &[String], queues: usize) -> Stats {
        Stats {
            ports: ports
                .iter()
                .map(|name| PortCounters {
                    name: name.clone(),
                    link_up: AtomicBool::new(false),
                    queues: (0..queues).map(|_| QueueCounters::default()).collect(),
                })
                .collect(),
        }
    }

    /// The sums over the queues of port `index`.
    pub fn totals(&self, index: usize) -> Totals {
        let mut t = Totals::default();
        if let Some(p) = self.ports.get(index) {
            for q in &p.queues {
                t.add(q);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names.iter().all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn totals_sum_queues_and_report_nonzero_drops() {
        let stats = Stats::new(&["legacy".to_string(), "converged".to_string()], 2);
        stats.ports[0].queues[0].rx_packets.add(3);
        stats.ports[0].queues[1].rx_packets.add(4);
        stats.ports[0].queues[1].drop(DropReason::IpBadChecksum);
        stats.ports[0].queues[0].drop(DropReason::IpBadChecksum);
        stats.ports[1].queues[0].handled(Handled::IcmpEchoAnswered);
        let t = stats.totals(0);
        assert_eq!(t.rx_packets, 7);
        assert_eq!(t.drops[DropReason::IpBadChecksum as usize], 2);
        let line = t.line();
        assert!(line.starts_with("rx=7 "), "{line}");
        assert!(line.ends_with(" drop.ip_bad_checksum=2"), "{line}");
        assert!(!line.contains("drop.udp"), "{line}");
        assert_eq!(stats.totals(1).icmp_echo_answered, 1);
        assert_eq!(stats.totals(7), Totals::default());
    }
}
