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

    /// Sets the value (for gauges). Only the owning worker calls this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
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
    /// A protocol without a handler (neither ICMP, UDP nor TCP).
    IpUnhandledProtocol = "ip_unhandled_protocol",
    /// TCP shorter than its header or its data offset.
    TcpTruncated = "tcp_truncated",
    /// TCP on a port without TCP services.
    TcpNoService = "tcp_no_service",
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
    /// A datagram iwf originates whose next hop's MAC address is not resolved yet.
    NoNeighbour = "no_neighbour",
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

macro_rules! sip_counters {
    ($($(#[$doc:meta])* $field:ident = $name:literal,)*) => {
        /// SIP-over-UDP outcomes of one worker's SIP service, one writer each (the
        /// worker). Logged as `sip.<name>=N` when non-zero.
        #[derive(Debug, Default)]
        pub struct SipCounters {
            $($(#[$doc])* pub $field: Counter,)*
            /// The next hop's state by the last keep-alive OPTIONS outcome:
            /// 0 = not known yet, 1 = down (timeout or non-2xx), 2 = up (2xx).
            pub next_hop_state: Counter,
        }

        /// Sums of [`SipCounters`] over queues, in the same field order.
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct SipTotals {
            $($(#[$doc])* pub $field: u64,)*
            /// The next hop's state (see [`SipCounters::next_hop_state`]; only the
            /// keep-alive's queue writes it, so the sum is that queue's value).
            pub next_hop_state: u64,
        }

        impl SipTotals {
            fn add(&mut self, c: &SipCounters) {
                $(self.$field += c.$field.get();)*
                self.next_hop_state += c.next_hop_state.get();
            }

            /// `(name, value)` of every counter, in order.
            pub fn fields(&self) -> [(&'static str, u64); [$($name,)*].len()] {
                [$(($name, self.$field),)*]
            }
        }
    };
}

sip_counters! {
    /// New OPTIONS transactions.
    rx_options = "rx_options",
    /// New MESSAGE transactions.
    rx_message = "rx_message",
    /// Requests of other methods (refused statelessly: 405, 481 for CANCEL, ACK dropped).
    rx_other = "rx_other",
    /// Request retransmissions matched to a live transaction.
    retransmissions_absorbed = "retransmissions_absorbed",
    /// Stored responses sent again for them.
    responses_resent = "responses_resent",
    /// Responses iwf sent with status 1xx (new, resent and stateless).
    tx_1xx = "tx_1xx",
    /// ... 2xx.
    tx_2xx = "tx_2xx",
    /// ... 3xx.
    tx_3xx = "tx_3xx",
    /// ... 4xx.
    tx_4xx = "tx_4xx",
    /// ... 5xx.
    tx_5xx = "tx_5xx",
    /// ... 6xx.
    tx_6xx = "tx_6xx",
    /// Malformed requests answered with a stateless 400.
    rejected_malformed = "rejected_malformed",
    /// Malformed datagrams dropped (no response could be built).
    dropped_malformed = "dropped_malformed",
    /// Top Via without an RFC 3261 branch (400).
    rejected_no_branch = "rejected_no_branch",
    /// Branch and sent-by over the key limit (400).
    rejected_key_too_long = "rejected_key_too_long",
    /// ACK outside a transaction (dropped).
    dropped_ack = "dropped_ack",
    /// CANCEL (481).
    rejected_cancel = "rejected_cancel",
    /// Methods iwf does not serve (405).
    rejected_method = "rejected_method",
    /// Requests from outside `[sip] trusted` answered 403 (no transaction).
    untrusted_refused = "untrusted_refused",
    /// Datagrams from outside `[sip] trusted` dropped (requests with `untrusted =
    /// "drop"`, responses, keep-alives).
    untrusted_dropped = "untrusted_dropped",
    /// Request-URI scheme neither sip, sips nor tel (416).
    rejected_uri_scheme = "rejected_uri_scheme",
    /// Max-Forwards 0 (483).
    rejected_too_many_hops = "rejected_too_many_hops",
    /// Request fields too large to store (513).
    rejected_too_large = "rejected_too_large",
    /// Server table full (503 + Retry-After).
    rejected_table_full = "rejected_table_full",
    /// The response could not be built into the reply buffer.
    respond_failed = "respond_failed",
    /// CRLF keep-alives and empty datagrams (nothing to answer).
    keepalives = "keepalives",
    /// Keep-alive OPTIONS started towards the next hop.
    ka_started = "ka_started",
    /// Keep-alive OPTIONS that could not start (table full, build error).
    ka_start_failed = "ka_start_failed",
    /// Times a request of the flows (IMDN, converted MESSAGE) found the client
    /// transaction table full: it stays queued in the flows until a slot frees.
    client_table_full = "client_table_full",
    /// Requests of the flows the client table refused for good (malformed, too
    /// large, duplicate branch): failed back to their flow as 500.
    client_start_failed = "client_start_failed",
    /// First sends of iwf's own requests.
    client_sent = "client_sent",
    /// Timer E retransmissions of iwf's own requests.
    client_retransmissions = "client_retransmissions",
    /// Provisional responses to iwf's requests.
    client_1xx = "client_1xx",
    /// Final 2xx responses to iwf's requests.
    client_2xx = "client_2xx",
    /// Final 3xx-6xx responses to iwf's requests.
    client_3456xx = "client_3456xx",
    /// Keep-alive OPTIONS answered 200 (a subset of `client_2xx`).
    ka_options_200 = "ka_options_200",
    /// Response retransmissions absorbed by a completed client transaction.
    client_absorbed = "client_absorbed",
    /// Timer F timeouts of iwf's requests.
    client_timeouts = "client_timeouts",
    /// SIP responses passed to the worker whose client transaction they answer.
    responses_steered_out = "responses_steered_out",
    /// SIP responses another worker passed here.
    responses_steered_in = "responses_steered_in",
    /// Responses matching no transaction of this core.
    stray_responses = "stray_responses",
    /// Unparseable responses.
    malformed_responses = "malformed_responses",
}

macro_rules! counter_group {
    ($(#[$sdoc:meta])* $counters:ident, $(#[$tdoc:meta])* $totals:ident, { $($(#[$doc:meta])* $field:ident,)* }) => {
        $(#[$sdoc])*
        #[derive(Debug, Default)]
        pub struct $counters {
            $($(#[$doc])* pub $field: Counter,)*
        }

        $(#[$tdoc])*
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct $totals {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl $totals {
            fn add(&mut self, c: &$counters) {
                $(self.$field += c.$field.get();)*
            }

            /// `(name, value)` of every counter, in order.
            pub fn fields(&self) -> [(&'static str, u64); [$(stringify!($field),)*].len()] {
                [$((stringify!($field), self.$field),)*]
            }
        }
    };
}

counter_group! {
    /// The userspace TCP of one worker on one port (logged as `tcp.<name>=N` when non-zero).
    TcpCounters,
    /// Sums of [`TcpCounters`] over queues.
    TcpTotals,
    {
        /// TCP segments for our address taken off the wire by this worker.
        segments_in,
        /// Segments of flows another worker owns, passed to it through its ring.
        redirected_out,
        /// Segments another worker passed to this one (flows this worker owns).
        redirected_in,
        /// Segments dropped because the owner's ring was full.
        redirect_ring_full,
        /// Segments dropped because smoltcp's input queue was full this poll.
        input_queue_full,
        /// Connections accepted (a listener reached Established).
        accepted,
        /// Connections refused: the peer holds max_connections_per_peer already.
        refused_peer_limit,
        /// SYNs to the SMPP port refused (RST): no legacy system allows the address.
        refused_not_allowed,
        /// SYNs to the SMPP port refused (RST): the address is in its bind back-off.
        refused_backoff,
        /// Connections refused: the port holds `smpp.max_unbound` unbound connections.
        refused_unbound_cap,
        /// SYNs to the SIP-over-TCP port refused (RST): not in `[sip] trusted`.
        refused_untrusted,
        /// Connections closed (either side, or reset).
        closed,
        /// Active opens (iwf connecting out).
        active_opens,
        /// Active opens that failed (refused, unreachable, timed out).
        connect_failed,
        /// SIP-over-TCP requests taken from a stream.
        sip_requests,
        /// SIP-over-TCP responses sent (2xx).
        sip_tx_2xx,
        /// SIP-over-TCP responses sent (other than 2xx).
        sip_tx_other,
        /// SIP-over-TCP streams that did not frame (no Content-Length, garbage, a header
        /// section over the buffer): closed.
        sip_stream_errors,
        /// SIP-over-TCP requests refused from their head, their bodies skipped: 413 (over
        /// `[sip] max_message_bytes`) or 503 (the streams' memory spent).
        sip_refused_large,
        /// iwf's own requests (over 1300 octets) written to its connection to the next hop.
        sip_client_sent,
        /// Responses read on that connection.
        sip_client_responses,
        /// Its requests with no final response within Timer F (answered 408 to the flow).
        sip_client_timeouts,
        /// Its requests lost with the connection, or refused for want of one (503).
        sip_client_failed,
        /// Messages on that connection that were not responses to iwf (counted, dropped).
        sip_client_ignored,
        /// SYNs to the SMTP port refused (RST): no MMS centre allows the address.
        refused_not_mmsc,
        /// Whole MM4 messages an MMS centre relayed, handed to the engine.
        smtp_messages,
        /// MM4 messages iwf's SMTP clients delivered (250 at the end of data).
        mm4_sent,
        /// MM4 messages an MMS centre refused for good (5xx), or that no command could carry.
        mm4_refused,
        /// MM4 messages dropped after their last try (transient refusals, connections
        /// lost with them in flight), or past a full client queue.
        mm4_dropped,
    }
}

counter_group! {
    /// SMPP sessions of one worker on one port (logged as `smpp.<name>=N` when non-zero).
    SmppCounters,
    /// Sums of [`SmppCounters`] over queues.
    SmppTotals,
    {
        /// SMPP PDUs received.
        pdus_in,
        /// SMPP PDUs sent.
        pdus_out,
        /// Server role: binds accepted.
        binds_ok,
        /// Server role: binds refused, unknown system_id (ESME_RINVSYSID).
        bind_refused_system_id,
        /// Server role: binds refused, wrong password (ESME_RINVPASWD).
        bind_refused_password,
        /// Server role: binds refused, peer address not allowed (ESME_RBINDFAIL).
        bind_refused_address,
        /// Server role: binds refused otherwise.
        bind_refused_other,
        /// Server role: addresses put in back-off after `smpp.bind_failures` failed binds.
        bind_backoffs,
        /// enquire_link received and answered.
        enquire_link_in,
        /// enquire_link iwf sent (keep-alive).
        enquire_link_out,
        /// Peers that unbound.
        unbind_in,
        /// submit_sm / data_sm / deliver_sm answered ESME_RX_T_APPN: iwf cannot deliver
        /// them to the converged side yet and never acknowledges what it has not delivered.
        rx_t_appn,
        /// Requests answered ESME_RTHROTTLED (the window of the bind was full).
        throttled,
        /// iwf's requests that waited for room in the bind's window (sent on a later poll).
        send_deferred,
        /// Parts the flows set aside (held outside the bind's window for their siblings).
        parts_aside,
        /// Parts the session could not set aside (its room was full): they kept their
        /// window slot.
        parts_aside_refused,
        /// generic_nack iwf sent.
        generic_nack_out,
        /// Sessions closed (any reason).
        sessions_closed,
        /// Client role: TCP connections opened towards the SMSC.
        client_connects,
        /// Client role: bound to the SMSC.
        client_bound,
        /// Client role: the SMSC refused iwf's credentials: the alarm (no rebind until reconfigured).
        client_auth_rejected,
        /// Client role: binds that failed otherwise.
        client_bind_failed,
        /// Client role: sessions lost (the SMSC went away, keep-alive, unbind).
        client_lost,
        /// Client role: 1 while bound, else 0.
        client_up,
    }
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
    /// Datagrams held for a neighbour being resolved (ARP).
    pub arp_held: Counter,
    /// Held datagrams sent once their neighbour answered.
    pub arp_released: Counter,
    /// Nanoseconds this queue's worker spent on polls of this port that found packets
    /// (the CPU time packets cost; idle polls are not counted).
    pub busy_ns: Counter,
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [Counter; DropReason::COUNT],
    /// SIP over UDP outcomes (the SIP service of this queue's worker).
    pub sip: SipCounters,
    /// The userspace TCP of this worker on this port.
    pub tcp: TcpCounters,
    /// SMPP sessions of this worker on this port.
    pub smpp: SmppCounters,
}

impl QueueCounters {
    /// Counts one drop.
    #[inline]
    pub fn drop(&self, reason: DropReason) {
        if let Some(c) = self.drops.get(reason as usize) {
            c.inc();
        }
    }

    /// Counts what a TX batch sent, and the frames its queue's full ring refused.
    #[inline]
    pub fn count_tx(&self, t: super::dpdk::port::TxTotals) {
        self.tx_packets.add(t.sent);
        self.tx_bytes.add(t.bytes);
        if let Some(c) = self.drops.get(DropReason::TxFull as usize) {
            c.add(t.dropped);
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
    /// The NIC's own counters as the control thread last read them.
    pub nic: NicCounters,
    /// One entry per queue (= per worker lcore).
    pub queues: Vec<QueueCounters>,
}

/// A port's `rte_eth_stats` (what the NIC and its driver counted, beyond iwf's own
/// counters: frames it missed because the RX rings were full, mbuf shortages), copied
/// here by the control thread so that the admin thread can show them while iwf runs.
#[derive(Debug, Default)]
pub struct NicCounters {
    /// Frames the NIC received.
    pub ipackets: AtomicU64,
    /// Frames the NIC sent.
    pub opackets: AtomicU64,
    /// Frames it dropped because the RX rings were full.
    pub imissed: AtomicU64,
    /// Erroneous frames received.
    pub ierrors: AtomicU64,
    /// Failed transmissions.
    pub oerrors: AtomicU64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: AtomicU64,
}

impl NicCounters {
    /// Name and value of each, in `rte_eth_stats`' own names.
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("ipackets", get(&self.ipackets)),
            ("opackets", get(&self.opackets)),
            ("imissed", get(&self.imissed)),
            ("ierrors", get(&self.ierrors)),
            ("oerrors", get(&self.oerrors)),
            ("rx_nombuf", get(&self.rx_nombuf)),
        ]
    }

    /// Takes a fresh reading (in the order of [`NicCounters::fields`]).
    pub fn store(&self, values: [u64; 6]) {
        let [a, b, c, d, e, f] = values;
        for (counter, v) in [
            (&self.ipackets, a),
            (&self.opackets, b),
            (&self.imissed, c),
            (&self.ierrors, d),
            (&self.oerrors, e),
            (&self.rx_nombuf, f),
        ] {
            counter.store(v, Ordering::Relaxed);
        }
    }
}

/// Everything the control thread reads: one [`PortCounters`] per port.
#[derive(Debug)]
pub struct Stats {
    /// In configuration order.
    pub ports: Vec<PortCounters>,
    /// The workers' heartbeats (one per queue).
    pub liveness: super::liveness::Liveness,
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
    /// Datagrams held for a neighbour being resolved.
    pub arp_held: u64,
    /// Held datagrams sent once their neighbour answered.
    pub arp_released: u64,
    /// Time spent on non-empty polls, ns.
    pub busy_ns: u64,
    /// Drops by reason.
    pub drops: [u64; DropReason::COUNT],
    /// SIP over UDP.
    pub sip: SipTotals,
    /// TCP.
    pub tcp: TcpTotals,
    /// SMPP.
    pub smpp: SmppTotals,
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
        self.arp_held += q.arp_held.get();
        self.arp_released += q.arp_released.get();
        self.busy_ns += q.busy_ns.get();
        for (t, c) in self.drops.iter_mut().zip(q.drops.iter()) {
            *t += c.get();
        }
        self.sip.add(&q.sip);
        self.tcp.add(&q.tcp);
        self.smpp.add(&q.smpp);
    }

    /// Calls `f(group, counter, value)` for every counter, in a fixed order: the port
    /// counters (group `port`), every drop reason (group `drop`, named by
    /// [`DropReason::name`]), then the `sip` (with `next_hop_state` last), `tcp` and
    /// `smpp` groups. The one list metrics and telemetry export; a field added to
    /// [`Totals`] joins it here.
    pub fn visit(&self, f: &mut dyn FnMut(&'static str, &'static str, u64)) {
        for (name, v) in [
            ("rx_packets", self.rx_packets),
            ("rx_bytes", self.rx_bytes),
            ("tx_packets", self.tx_packets),
            ("tx_bytes", self.tx_bytes),
            ("arp_answered", self.arp_answered),
            ("arp_learned", self.arp_learned),
            ("arp_requests_sent", self.arp_requests_sent),
            ("icmp_echo_answered", self.icmp_echo_answered),
            ("udp_delivered", self.udp_delivered),
            ("udp_replied", self.udp_replied),
            ("arp_held", self.arp_held),
            ("arp_released", self.arp_released),
            ("busy_ns", self.busy_ns),
        ] {
            f("port", name, v);
        }
        for (reason, v) in DropReason::ALL.iter().zip(self.drops.iter()) {
            f("drop", reason.name(), *v);
        }
        for (name, v) in self.sip.fields() {
            f("sip", name, v);
        }
        f("sip", "next_hop_state", self.sip.next_hop_state);
        for (name, v) in self.tcp.fields() {
            f("tcp", name, v);
        }
        for (name, v) in self.smpp.fields() {
            f("smpp", name, v);
        }
    }

    /// One log line: `rx=.. tx=.. ... drop.ip_bad_checksum=2 sip.rx_message=3
    /// sip.next_hop_up=1` (drops and SIP counters only when non-zero; the next hop's
    /// state once a keep-alive has an outcome).
    pub fn line(&self) -> String {
        let mut s = format!(
            "rx={} rx_bytes={} tx={} tx_bytes={} arp_answered={} arp_learned={} arp_requests_sent={} icmp_echo_answered={} udp_delivered={} udp_replied={} busy_ns={}",
            self.rx_packets,
            self.rx_bytes,
            self.tx_packets,
            self.tx_bytes,
            self.arp_answered,
            self.arp_learned,
            self.arp_requests_sent,
            self.icmp_echo_answered,
            self.udp_delivered,
            self.udp_replied,
            self.busy_ns
        );
        if self.arp_held > 0 {
            let _ = write!(s, " arp_held={} arp_released={}", self.arp_held, self.arp_released);
        }
        for (reason, n) in DropReason::ALL.iter().zip(self.drops.iter()) {
            if *n > 0 {
                let _ = write!(s, " drop.{}={}", reason.name(), n);
            }
        }
        for (name, n) in self.sip.fields() {
            if n > 0 {
                let _ = write!(s, " sip.{name}={n}");
            }
        }
        if self.sip.next_hop_state > 0 {
            let _ = write!(s, " sip.next_hop_up={}", u64::from(self.sip.next_hop_state == 2));
        }
        for (name, n) in self.tcp.fields() {
            if n > 0 {
                let _ = write!(s, " tcp.{name}={n}");
            }
        }
        for (name, n) in self.smpp.fields() {
            if n > 0 {
                let _ = write!(s, " smpp.{name}={n}");
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
                    nic: NicCounters::default(),
                    queues: (0..queues).map(|_| QueueCounters::default()).collect(),
                })
                .collect(),
            liveness: super::liveness::Liveness::new(queues),
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

    #[test]
    fn sip_counters_join_the_line_when_non_zero() {
        let stats = Stats::new(&["converged".to_string()], 2);
        assert!(!stats.totals(0).line().contains("sip."));
        stats.ports[0].queues[0].sip.rx_message.add(2);
        stats.ports[0].queues[1].sip.rx_message.inc();
        stats.ports[0].queues[0].sip.next_hop_state.add(1);
        let line = stats.totals(0).line();
        assert!(line.ends_with(" sip.rx_message=3 sip.next_hop_up=0"), "{line}");
        stats.ports[0].queues[0].sip.next_hop_state.add(1);
        assert!(stats.totals(0).line().ends_with(" sip.next_hop_up=1"));
        let mut names: Vec<_> = SipTotals::default().fields().iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SipTotals::default().fields().len());
    }
}
