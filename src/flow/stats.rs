//! What the cores share (provisioning, lanes, completion rings, the store's intake)
//! and the engine's counters: per legacy system, per drop reason, and the metrics
//! they render as.
use super::*;

/// Counters of the flows, shared by every core (relaxed atomics).
#[derive(Debug, Default)]
pub struct FlowStats {
    /// submit_sm / deliver_sm messages from legacy systems (whole messages).
    pub legacy_messages: AtomicU64,
    /// Parts of concatenated legacy messages received.
    pub legacy_parts: AtomicU64,
    /// Legacy messages refused before SIP (conversion, address, map).
    pub legacy_refused: AtomicU64,
    /// MM4 messages from MMS centres (whole, each SMTP transaction).
    pub mm4_in: AtomicU64,
    /// MM4 messages refused (unreadable, unroutable, too large, a report about no
    /// message iwf sent).
    pub mm4_refused: AtomicU64,
    /// MM4 responses (`*.RES`) taken from MMS centres.
    pub mm4_responses: AtomicU64,
    /// MMS relayed to the converged core (a 2xx final).
    pub mm4_relayed: AtomicU64,
    /// MMS answered 451 (the converged core failed for now, or did not answer): the
    /// MMS centre sends them again.
    pub mm4_retry: AtomicU64,
    /// Converged users' MMS forwarded to MMS centres (`MM4_forward.REQ`).
    pub mm4_forwards_out: AtomicU64,
    /// Of those, the ones the centre did not take (the MESSAGE was answered 503).
    pub mm4_forwards_failed: AtomicU64,
    /// Reports from MMS centres about iwf's forwards (and `.RES` refusing one).
    pub mm4_reports_in: AtomicU64,
    /// Delivery and read-reply reports an MMS centre took (SMTP 250) for an IMDN.
    pub mm4_reports_sent: AtomicU64,
    /// Reports that did not reach their MMS centre in time, or were refused: the
    /// IMDN was answered 503 (its sender tries again).
    pub mm4_reports_failed: AtomicU64,
    /// IMDNs about an MMS no record is kept for (its validity ended): answered 200,
    /// nothing sent.
    pub mm4_reports_unowed: AtomicU64,
    /// Parts answered ESME_RTHROTTLED because their bind's room outside the window
    /// (`smpp.parts_aside`) was taken.
    pub parts_aside_full: AtomicU64,
    /// SIP MESSAGEs sent for legacy messages.
    pub sip_messages_sent: AtomicU64,
    /// Their final responses: 2xx.
    pub sip_messages_ok: AtomicU64,
    /// Their final responses: other (incl. timeouts).
    pub sip_messages_failed: AtomicU64,
    /// IMDNs received from the converged side.
    pub imdns_in: AtomicU64,
    /// Receipts routed to a legacy system's lane.
    pub receipts_routed: AtomicU64,
    /// Receipts stored durably for an unbound system.
    pub receipts_queued: AtomicU64,
    /// Receipts handed to the cluster for a system this box holds no bind of.
    pub receipts_clustered: AtomicU64,
    /// SMSC receipts for an id this box knows no message for, asked of the cluster.
    pub smsc_receipts_asked_cluster: AtomicU64,
    /// Of those, the messages the cluster had (another box sent them).
    pub smsc_receipts_found_in_cluster: AtomicU64,
    /// Receipts acknowledged by their legacy system.
    pub receipts_delivered: AtomicU64,
    /// Receipts the legacy system refused.
    pub receipts_refused: AtomicU64,
    /// IMDNs nobody asked a receipt for (not sent).
    pub receipts_not_requested: AtomicU64,
    /// IMDNs whose tag failed (forged, altered, unknown key, expired...).
    pub imdn_bad_tag: AtomicU64,
    /// IMDNs otherwise malformed.
    pub imdn_malformed: AtomicU64,
    /// Lane full: back-pressure answered.
    pub lane_full: AtomicU64,
    /// Converged → legacy MESSAGEs received.
    pub converged_messages: AtomicU64,
    /// Refused (no route, bad number, content type, no bind...).
    pub converged_refused: AtomicU64,
    /// submit_sm / deliver_sm sent to legacy systems for them.
    pub converged_parts_sent: AtomicU64,
    /// SMSC receipts received.
    pub smsc_receipts: AtomicU64,
    /// IMDNs iwf sent for SMSC receipts (queued).
    pub imdns_sent: AtomicU64,
    /// Of those, answered 2xx by the converged side.
    pub imdns_delivered: AtomicU64,
    /// Of those, failed (error response or Timer F): a receipt's state goes back for its resend.
    pub imdns_failed: AtomicU64,
    /// SMSC receipts matching nothing (duplicate, stale, or no id bound in the park time).
    pub smsc_receipts_absorbed: AtomicU64,
    /// SMSC receipts for ids no resp had bound yet, parked in the store and answered.
    pub smsc_receipts_parked_durably: AtomicU64,
    /// Completions for another core kept back because its ring was full (sent again
    /// on a later poll).
    pub completions_deferred: AtomicU64,
    /// Message records and worker log events dropped: a worker's ring to the records
    /// thread was full (the disk or the thread fell behind).
    pub records_dropped: AtomicU64,
    /// SMSC receipts matched reading their id as the submit_sm_resp's was read
    /// (exactly, or, with `auto`, through case and leading zeros).
    pub receipt_ids_as_sent: AtomicU64,
    /// SMSC receipts matched only as the decimal number of a hex id (`auto`).
    pub receipt_ids_decimal: AtomicU64,
    /// SMSC receipts refused: their id read two ways named two live messages.
    pub receipt_ids_ambiguous: AtomicU64,
    /// IMDNs answered 200 without relaying: the same notification of the same tag was
    /// relayed within the replay window.
    pub imdn_replays: AtomicU64,
    /// Receipts held until just after the resp of their message (the converged side
    /// sent the IMDN before its final response to the MESSAGE).
    pub receipts_before_resp: AtomicU64,
}

impl crate::control::metrics::MetricsSource for Shared {
    fn render(&self, out: &mut crate::control::metrics::MetricsWriter) {
        self.stats.visit(&mut |name, v| {
            let _ =
                out.counter(&format!("iwf_flow_{name}_total"), "Flow events (see src/flow/mod.rs FlowStats)", &[], v);
        });
        let provision = self.provision.load();
        for (id, st) in self.systems.load().iter() {
            let name = provision.system(*id).map_or("removed", |l| l.name.as_str());
            st.visit(&mut |counter, v| {
                let _ = out.counter(
                    &format!("iwf_system_{counter}_total"),
                    "Per legacy system (see src/flow/mod.rs SystemStats)",
                    &[("system", name)],
                    v,
                );
            });
            let _ = out.gauge(
                "iwf_system_receipts_stored",
                "Receipts in the durable store for the system now (it had no bind when they came)",
                &[("system", name)],
                st.queued_now.load(Ordering::Relaxed) as f64,
            );
            let (counts, sum_ms) = st.receipt_latency.cumulative();
            let _ = out.histogram(
                "iwf_system_receipt_latency_seconds",
                "IMDN in to the legacy system's deliver_sm_resp, receipts taken over a bind",
                &[("system", name)],
                &LATENCY_BOUNDS_MS.map(|ms| ms as f64 / 1e3),
                &counts,
                sum_ms as f64 / 1e3,
            );
        }
        for (reason, v) in self.drops() {
            let _ = out.counter("iwf_drops_total", "Refused or routed nowhere, by reason", &[("reason", reason)], v);
        }
        for name in TABLES {
            let v = self.table_entries(name) as f64;
            let _ =
                out.gauge("iwf_table_entries", "Entries of a table peers can fill, all cores", &[("table", name)], v);
        }
        // The configured bounds (all cores): full means 503 + Retry-After.
        let cores = self.tables.len().max(1) as f64;
        let capacities = [
            ("correlation", provision.converged.correlation_capacity as f64 * cores),
            ("smsc_receipts_parked", provision.converged.parked_capacity as f64 * cores),
            ("waiters", provision.converged.waiter_capacity as f64 * cores),
            ("replay", self.replay.capacity() as f64),
        ];
        for (name, v) in capacities {
            let _ = out.gauge("iwf_table_capacity", "Entries a table may hold, all cores", &[("table", name)], v);
        }
        for lane in self.lanes.load().lanes() {
            let name = provision.system(lane.system().0).map_or("removed", |l| l.name.as_str());
            let labels = [("system", name)];
            let c = lane.counters();
            let _ = out.gauge("iwf_lane_queued", "Receipts waiting in the system's lane", &labels, lane.len() as f64);
            let _ = out.gauge(
                "iwf_lane_binds",
                "Receiving binds of the system (all cores)",
                &labels,
                f64::from(lane.binds()),
            );
            let _ = out.counter("iwf_lane_pushed_total", "Items pushed into the lane", &labels, c.pushed);
            let _ = out.counter("iwf_lane_full_total", "Pushes refused: lane full (back-pressure)", &labels, c.full);
        }
    }
}

impl FlowStats {
    /// Every counter with its name.
    pub fn visit(&self, f: &mut dyn FnMut(&'static str, u64)) {
        let all: [(&'static str, &AtomicU64); 46] = [
            ("legacy_messages", &self.legacy_messages),
            ("legacy_parts", &self.legacy_parts),
            ("legacy_refused", &self.legacy_refused),
            ("mm4_in", &self.mm4_in),
            ("mm4_refused", &self.mm4_refused),
            ("mm4_responses", &self.mm4_responses),
            ("mm4_relayed", &self.mm4_relayed),
            ("mm4_retry", &self.mm4_retry),
            ("mm4_forwards_out", &self.mm4_forwards_out),
            ("mm4_forwards_failed", &self.mm4_forwards_failed),
            ("mm4_reports_in", &self.mm4_reports_in),
            ("mm4_reports_sent", &self.mm4_reports_sent),
            ("mm4_reports_failed", &self.mm4_reports_failed),
            ("mm4_reports_unowed", &self.mm4_reports_unowed),
            ("parts_aside_full", &self.parts_aside_full),
            ("smsc_receipts_parked_durably", &self.smsc_receipts_parked_durably),
            ("sip_messages_sent", &self.sip_messages_sent),
            ("sip_messages_ok", &self.sip_messages_ok),
            ("sip_messages_failed", &self.sip_messages_failed),
            ("imdns_in", &self.imdns_in),
            ("receipts_routed", &self.receipts_routed),
            ("receipts_queued", &self.receipts_queued),
            ("receipts_clustered", &self.receipts_clustered),
            ("smsc_receipts_asked_cluster", &self.smsc_receipts_asked_cluster),
            ("smsc_receipts_found_in_cluster", &self.smsc_receipts_found_in_cluster),
            ("receipts_delivered", &self.receipts_delivered),
            ("receipts_refused", &self.receipts_refused),
            ("receipts_not_requested", &self.receipts_not_requested),
            ("imdn_bad_tag", &self.imdn_bad_tag),
            ("imdn_malformed", &self.imdn_malformed),
            ("lane_full", &self.lane_full),
            ("converged_messages", &self.converged_messages),
            ("converged_refused", &self.converged_refused),
            ("converged_parts_sent", &self.converged_parts_sent),
            ("smsc_receipts", &self.smsc_receipts),
            ("imdns_sent", &self.imdns_sent),
            ("imdns_delivered", &self.imdns_delivered),
            ("imdns_failed", &self.imdns_failed),
            ("smsc_receipts_absorbed", &self.smsc_receipts_absorbed),
            ("completions_deferred", &self.completions_deferred),
            ("records_dropped", &self.records_dropped),
            ("receipt_ids_as_sent", &self.receipt_ids_as_sent),
            ("receipt_ids_decimal", &self.receipt_ids_decimal),
            ("receipt_ids_ambiguous", &self.receipt_ids_ambiguous),
            ("imdn_replays", &self.imdn_replays),
            ("receipts_before_resp", &self.receipts_before_resp),
        ];
        for (name, v) in all {
            f(name, v.load(Ordering::Relaxed));
        }
    }

    /// One line `name=value ...` of the non-zero counters.
    pub fn line(&self) -> String {
        let mut s = String::new();
        self.visit(&mut |n, v| {
            if v > 0 {
                s.push_str(&format!("{n}={v} "));
            }
        });
        s.trim_end().to_string()
    }
}

pub(super) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What one legacy system sent and got, and its throughput window (all cores).
#[derive(Debug, Default)]
pub struct SystemStats {
    /// Messages it sent to converged users (whole messages).
    pub messages_in: AtomicU64,
    /// Of those, taken by the converged side (SIP 2xx).
    pub messages_accepted: AtomicU64,
    /// Of those, refused (conversion, address, SIP error, timeout).
    pub messages_refused: AtomicU64,
    /// Receipts for it handed to its lane.
    pub receipts_routed: AtomicU64,
    /// Receipts for it stored durably while it had no bind.
    pub receipts_queued: AtomicU64,
    /// Receipts it acknowledged.
    pub receipts_delivered: AtomicU64,
    /// Converged users' short messages sent to it (parts).
    pub messages_out: AtomicU64,
    /// Its receipts for those (SMSC receipts).
    pub smsc_receipts: AtomicU64,
    /// Messages refused by its throughput limit (either direction) or a full lane.
    pub throttled: AtomicU64,
    /// IMDNs refused because its receipt rate or its durable queue limit was reached.
    pub receipts_refused_limit: AtomicU64,
    /// Receipts in the durable store for it now (kept by the cores as they queue and
    /// by the store's thread as it delivers, expires and recounts).
    pub queued_now: AtomicU64,
    /// IMDN in → the system's deliver_sm_resp (receipts it took over a bind, not those
    /// stored for it while unbound).
    pub receipt_latency: Latency,
    /// When the oldest receipt in the durable store for it was stored, Unix seconds
    /// (0: none), as the store's thread last read it.
    pub oldest_queued: AtomicU64,
    /// Taken out of service by the operator (`iwf ctl disable`): its binds are closed
    /// and refused, its receipts wait in the durable store.
    pub disabled: std::sync::atomic::AtomicBool,
    window: AtomicU64,
    receipt_window: AtomicU64,
}

/// Upper bounds of the latency buckets, milliseconds (the workers' clock).
pub const LATENCY_BOUNDS_MS: [u64; 13] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// A latency histogram every core records into and the admin thread reads: fixed
/// buckets of atomic counts, so a record is two relaxed adds and no allocation, and
/// Prometheus can aggregate it (`histogram_quantile` over instances and systems, which
/// a per-core HdrHistogram's percentiles could not be).
#[derive(Debug, Default)]
pub struct Latency {
    /// Counts per bucket of [`LATENCY_BOUNDS_MS`] (a value lands in the first bucket
    /// whose bound it does not exceed), and one more for the rest.
    buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    sum_ms: AtomicU64,
}

impl Latency {
    /// Counts one of `ms` milliseconds.
    pub fn record(&self, ms: u64) {
        let i = LATENCY_BOUNDS_MS.iter().position(|&b| ms <= b).unwrap_or(LATENCY_BOUNDS_MS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is every value: `+Inf`), and the sum in ms.
    pub fn cumulative(&self) -> ([u64; LATENCY_BOUNDS_MS.len() + 1], u64) {
        let mut out = [0u64; LATENCY_BOUNDS_MS.len() + 1];
        let mut total = 0u64;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            total += b.load(Ordering::Relaxed);
            *o = total;
        }
        (out, self.sum_ms.load(Ordering::Relaxed))
    }
}

impl SystemStats {
    /// Every counter with its name.
    pub fn visit(&self, f: &mut dyn FnMut(&'static str, u64)) {
        let all: [(&'static str, &AtomicU64); 10] = [
            ("messages_in", &self.messages_in),
            ("messages_accepted", &self.messages_accepted),
            ("messages_refused", &self.messages_refused),
            ("receipts_routed", &self.receipts_routed),
            ("receipts_queued", &self.receipts_queued),
            ("receipts_delivered", &self.receipts_delivered),
            ("messages_out", &self.messages_out),
            ("smsc_receipts", &self.smsc_receipts),
            ("throttled", &self.throttled),
            ("receipts_refused_limit", &self.receipts_refused_limit),
        ];
        for (name, v) in all {
            f(name, v.load(Ordering::Relaxed));
        }
    }

    /// Whether one more message fits `limit` per second at `unix` (0: no limit).
    pub fn admit(&self, unix: u64, limit: u32) -> bool {
        admit_in(&self.window, unix, limit, 1)
    }

    /// Whether `n` more receipts fit `limit` per second at `unix` (0: no limit).
    pub fn admit_receipts(&self, unix: u64, limit: u32, n: u32) -> bool {
        admit_in(&self.receipt_window, unix, limit, n)
    }
}

/// Whether `n` more fit `limit` per second at `unix` in `window` (0: no limit). One
/// word, lock-free: the second in the high 32 bits, the count in the low.
pub(super) fn admit_in(window: &AtomicU64, unix: u64, limit: u32, n: u32) -> bool {
    if limit == 0 {
        return true;
    }
    let sec = unix & 0xFFFF_FFFF;
    let n = u64::from(n);
    let mut word = window.load(Ordering::Relaxed);
    loop {
        let (s, used) = (word >> 32, word & 0xFFFF_FFFF);
        let next = if s == sec {
            if used + n > u64::from(limit) {
                return false;
            }
            word + n
        } else if n > u64::from(limit) {
            return false;
        } else {
            (sec << 32) | n
        };
        match window.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(w) => word = w,
        }
    }
}

/// Why something was refused or routed nowhere (the `reason` label of the drops): a
/// Copy index into the drop counters, named for the metrics by [`DropReason::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is its name; the less obvious ones say more
pub enum DropReason {
    TagBadLength,
    TagBadCharacter,
    TagUnsupportedVersion,
    TagUnknownKey,
    TagBadMac,
    TagBadSegment,
    TagExpired,
    TagFromFuture,
    UnknownSystem,
    ImdnMalformed,
    LaneFull,
    ClusterUnavailable,
    Throttled,
    NoRoute,
    NotBound,
    LegacyMessageInvalid,
    SipError,
    SmscReceiptUnreadable,
    ParkFull,
    CorrelationFull,
    /// A submit_sm_resp's id that a live correlation entry still holds (SMSC id reuse):
    /// the message is answered, its part gets no receipt.
    SmscIdInUse,
    /// An SMSC receipt whose id no submit_sm_resp bound before the park time ended.
    SmscReceiptUnmatched,
    /// An SMSC receipt whose id, read as sent and as a decimal number, named two messages.
    SmscIdAmbiguous,
    /// An IMDN refused 503: the replay table had no room to remember it.
    ReplayTableFull,
    /// An IMDN refused 503: a copy of it, sent earlier, was still on its way to the
    /// legacy system (its sender resent it before the first copy's answer).
    ImdnInFlight,
    /// An IMDN refused 503: its legacy system's receipt rate was reached.
    ReceiptRate,
    /// An IMDN refused 503: its unbound legacy system's durable queue is at its limit.
    QueueLimit,
    /// A part answered ESME_RTHROTTLED: its bind's room outside the window was taken.
    PartsAsideFull,
    /// A part answered ESME_RTHROTTLED: the reassembly table was full.
    ReassemblyFull,
    /// A request refused (SIP 503, ESME_RMSGQFUL): the worker's waiters were at
    /// `waiter_capacity`.
    WaitersFull,
    /// An MM4 message that does not read (SMTP 554).
    Mm4Invalid,
    /// An MM4 request answered 451: the MM4 waiting for its MMS centre's SMTP client
    /// were at their bound.
    Mm4OutFull,
    /// An MM4 answer dropped: no SMTP client of this worker reaches its MMS centre.
    Mm4NoClient,
    /// An MMS refused 451: the worker keeps as many MMS awaiting reports as it may.
    MmsOriginsFull,
    Other,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 35] = [
        DropReason::TagBadLength,
        DropReason::TagBadCharacter,
        DropReason::TagUnsupportedVersion,
        DropReason::TagUnknownKey,
        DropReason::TagBadMac,
        DropReason::TagBadSegment,
        DropReason::TagExpired,
        DropReason::TagFromFuture,
        DropReason::UnknownSystem,
        DropReason::ImdnMalformed,
        DropReason::LaneFull,
        DropReason::ClusterUnavailable,
        DropReason::Throttled,
        DropReason::NoRoute,
        DropReason::NotBound,
        DropReason::LegacyMessageInvalid,
        DropReason::SipError,
        DropReason::SmscReceiptUnreadable,
        DropReason::ParkFull,
        DropReason::CorrelationFull,
        DropReason::SmscIdInUse,
        DropReason::SmscReceiptUnmatched,
        DropReason::SmscIdAmbiguous,
        DropReason::ReplayTableFull,
        DropReason::ImdnInFlight,
        DropReason::ReceiptRate,
        DropReason::QueueLimit,
        DropReason::PartsAsideFull,
        DropReason::ReassemblyFull,
        DropReason::WaitersFull,
        DropReason::Mm4Invalid,
        DropReason::Mm4OutFull,
        DropReason::Mm4NoClient,
        DropReason::MmsOriginsFull,
        DropReason::Other,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TagBadLength => "tag_bad_length",
            DropReason::TagBadCharacter => "tag_bad_character",
            DropReason::TagUnsupportedVersion => "tag_unsupported_version",
            DropReason::TagUnknownKey => "tag_unknown_key",
            DropReason::TagBadMac => "tag_bad_mac",
            DropReason::TagBadSegment => "tag_bad_segment",
            DropReason::TagExpired => "tag_expired",
            DropReason::TagFromFuture => "tag_from_future",
            DropReason::UnknownSystem => "unknown_system",
            DropReason::ImdnMalformed => "imdn_malformed",
            DropReason::LaneFull => "lane_full",
            DropReason::ClusterUnavailable => "cluster_unavailable",
            DropReason::Throttled => "throttled",
            DropReason::NoRoute => "no_route",
            DropReason::NotBound => "not_bound",
            DropReason::LegacyMessageInvalid => "legacy_message_invalid",
            DropReason::SipError => "sip_error",
            DropReason::SmscReceiptUnreadable => "smsc_receipt_unreadable",
            DropReason::ParkFull => "park_full",
            DropReason::CorrelationFull => "correlation_full",
            DropReason::SmscIdInUse => "smsc_id_in_use",
            DropReason::SmscReceiptUnmatched => "smsc_receipt_unmatched",
            DropReason::SmscIdAmbiguous => "smsc_id_ambiguous",
            DropReason::ReplayTableFull => "replay_table_full",
            DropReason::ImdnInFlight => "imdn_in_flight",
            DropReason::ReceiptRate => "receipt_rate",
            DropReason::QueueLimit => "queue_limit",
            DropReason::PartsAsideFull => "parts_aside_full",
            DropReason::ReassemblyFull => "reassembly_full",
            DropReason::WaitersFull => "waiters_full",
            DropReason::Mm4Invalid => "mm4_invalid",
            DropReason::Mm4OutFull => "mm4_out_full",
            DropReason::Mm4NoClient => "mm4_no_client",
            DropReason::MmsOriginsFull => "mms_origins_full",
            DropReason::Other => "other",
        }
    }

    /// The reason labelled `name` (`Other` for none): for reasons named by a lower
    /// layer (a tag's error); never on the hot path.
    pub fn from_name(name: &str) -> DropReason {
        DropReason::ALL.into_iter().find(|r| r.name() == name).unwrap_or(DropReason::Other)
    }
}

/// What the cores share: provisioning, lanes, completion rings, the store's intake.
#[derive(Debug)]
pub struct Shared {
    /// The provisioning snapshot (the control plane publishes a new one on reload).
    pub provision: Arc<ArcSwap<Provision>>,
    /// One lane per legacy system.
    pub lanes: Lanes,
    /// Per core: completions for its waiters.
    pub(super) completions: Vec<ArrayQueue<Completion>>,
    /// Per core: converged → legacy MESSAGEs other cores handed to it.
    pub(super) jobs: Vec<ArrayQueue<Job>>,
    /// Completions for the store.
    pub store_completions: ArrayQueue<Completion>,
    /// The durable store's intake (none: receipts for unbound systems are refused 480).
    pub store: Option<std::sync::mpsc::Sender<store::StoreOp>>,
    /// The cluster thread's intake (`[cluster]`; set once, before the cores start):
    /// receipts for systems this box holds no bind of go there instead of the store.
    pub cluster: std::sync::OnceLock<super::cluster::ClusterLink>,
    /// Completions for the cluster thread (receipts it took from the stream).
    pub cluster_completions: ArrayQueue<Completion>,
    /// Per core: the correlations the cluster found for its receipts.
    pub cluster_found: Vec<ArrayQueue<Box<super::cluster::Found>>>,
    /// Counters.
    pub stats: FlowStats,
    /// Per legacy system (its id): counters and throughput window.
    pub(super) systems: ArcSwap<HashMap<u16, Arc<SystemStats>>>,
    /// Drops by reason ([`DropReason`]).
    pub(super) drops: [AtomicU64; DropReason::ALL.len()],
    /// Per core: the entries of each of its tables ([`TABLES`]), published once a
    /// second by the core (`iwf_table_entries`).
    pub(super) tables: Vec<[AtomicU64; TABLES.len()]>,
    /// The notifications relayed within the replay window (every core's).
    pub replay: crate::route::replay::ReplayGuard,
    /// Per core: its events for the records thread ([`super::records`]).
    pub(super) events: Vec<ArrayQueue<super::records::Event>>,
    /// Whether message records are written (`[records] path` set): off, the workers
    /// do not copy them.
    pub records_on: std::sync::atomic::AtomicBool,
    /// Every worker's binds, as the records thread last published them.
    pub binds: ArcSwap<Vec<super::records::Bind>>,
}

/// The per-core tables a peer can fill, as `/metrics` names them.
pub const TABLES: [&str; 5] = ["correlation", "smsc_receipts_parked", "waiters", "sent_pdus", "reassembly_held"];

impl Shared {
    /// Shared state for `cores` workers with a lane per provisioned system.
    pub fn new(
        provision: Provision,
        cores: u16,
        store: Option<std::sync::mpsc::Sender<store::StoreOp>>,
    ) -> Result<Shared, crate::route::lane::LaneError> {
        Shared::published(Arc::new(ArcSwap::from_pointee(provision)), cores, store)
    }

    /// As [`Shared::new`], reading the snapshot a reloader publishes.
    pub fn published(
        provision: Arc<ArcSwap<Provision>>,
        cores: u16,
        store: Option<std::sync::mpsc::Sender<store::StoreOp>>,
    ) -> Result<Shared, crate::route::lane::LaneError> {
        let lanes = Lanes::new(cores)?;
        for l in &provision.load().legacy {
            let _ = lanes.add_system(LegacySystemId(l.id), l.lane_capacity);
        }
        let systems: HashMap<u16, Arc<SystemStats>> =
            provision.load().legacy.iter().map(|l| (l.id, Arc::new(SystemStats::default()))).collect();
        let converged = &provision.load().converged;
        let replay = crate::route::replay::ReplayGuard::new(
            converged.replay_capacity,
            u32::try_from(converged.replay_window_s.div_ceil(60)).unwrap_or(u32::MAX),
        );
        Ok(Shared {
            replay,
            systems: ArcSwap::from_pointee(systems),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            provision,
            lanes,
            completions: (0..cores).map(|_| ArrayQueue::new(65_536)).collect(),
            jobs: (0..cores).map(|_| ArrayQueue::new(4096)).collect(),
            events: (0..cores).map(|_| ArrayQueue::new(super::records::RING)).collect(),
            records_on: std::sync::atomic::AtomicBool::new(false),
            binds: ArcSwap::from_pointee(Vec::new()),
            store_completions: ArrayQueue::new(65_536),
            store,
            cluster: std::sync::OnceLock::new(),
            cluster_completions: ArrayQueue::new(65_536),
            cluster_found: (0..cores).map(|_| ArrayQueue::new(1024)).collect(),
            stats: FlowStats::default(),
            tables: (0..cores).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect(),
        })
    }

    /// Entries of table `name` ([`TABLES`]) summed over the cores, as last published.
    pub fn table_entries(&self, name: &str) -> u64 {
        let Some(i) = TABLES.iter().position(|t| *t == name) else { return 0 };
        self.tables.iter().filter_map(|t| t.get(i)).map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// After a reload: a lane for every system the snapshot added (a removed system's
    /// lane stays until its items are delivered or stored; nothing else is disturbed).
    /// Returns the systems added.
    pub fn sync_lanes(&self) -> usize {
        let table = self.lanes.load();
        let mut added = 0;
        let mut systems = HashMap::clone(&self.systems.load());
        for l in &self.provision.load().legacy {
            systems.entry(l.id).or_insert_with(|| Arc::new(SystemStats::default()));
        }
        self.systems.store(Arc::new(systems));
        for l in &self.provision.load().legacy {
            if table.get(LegacySystemId(l.id)).is_none()
                && self.lanes.add_system(LegacySystemId(l.id), l.lane_capacity).is_ok()
            {
                added += 1;
            }
        }
        added
    }

    /// What `iwf ctl` shows (`GET /v1/systems`, `/v1/queues`): every provisioned legacy
    /// system with its state and counters, or its receipts waiting (in its lane for a
    /// bind's window, in the durable store while it has no bind). None for another name.
    pub fn operator_view(&self, what: &str) -> Option<serde_json::Value> {
        use serde_json::json;
        let provision = self.provision.load();
        let lanes = self.lanes.load();
        let rows = provision.legacy.iter().map(|l| {
            let lane = lanes.lanes().iter().find(|lane| lane.system().0 == l.id);
            let st = self.system(l.id);
            let stored = st.as_ref().map_or(0, |s| s.queued_now.load(Ordering::Relaxed));
            let kind = if l.mms.is_some() { "mmsc" } else { "smsc" };
            let role = match (&l.mms, &l.connect) {
                (Some(_), _) => "relays over SMTP",
                (None, None) => "binds to iwf",
                (None, Some(_)) => "iwf binds to it",
            };
            let (binds, queued) = lane.map_or((0, 0), |lane| (lane.binds(), lane.len()));
            match what {
                "queues" => {
                    let oldest = st.as_ref().map_or(0, |s| s.oldest_queued.load(Ordering::Relaxed));
                    json!({
                        "system": l.name, "id": l.id, "lane_queued": queued, "lane_capacity": l.lane_capacity,
                        "stored": stored, "queue_limit": l.queue_limit, "binds": binds,
                        "oldest_stored": (oldest > 0 && stored > 0).then(|| crate::control::records::rfc3339_ms(oldest * 1000)),
                        "oldest_stored_age_s": (oldest > 0 && stored > 0).then(|| super::records::unix_ms() / 1000 - oldest.min(super::records::unix_ms() / 1000)),
                        "disabled": st.as_ref().is_some_and(|s| s.disabled.load(Ordering::Relaxed)),
                    })
                }
                _ => {
                    let mut counters = serde_json::Map::new();
                    if let Some(st) = &st {
                        st.visit(&mut |name, v| {
                            counters.insert(name.to_string(), json!(v));
                        });
                    }
                    json!({
                        "system": l.name, "id": l.id, "kind": kind, "role": role,
                        // An MMS centre holds no bind: SMTP sessions come and go per message.
                        "state": if l.mms.is_some() { "-" } else if binds > 0 { "bound" } else { "unbound" },
                        "binds": binds,
                        "lane_queued": queued, "stored": stored, "counters": counters,
                    })
                }
            }
        });
        match what {
            "systems" | "queues" => Some(serde_json::Value::Array(rows.collect())),
            "binds" => Some(self.binds_view()),
            _ => None,
        }
    }

    /// Every bind of every worker (`GET /v1/binds`), by system: peer, bind type, since,
    /// window in use of the system's window.
    fn binds_view(&self) -> serde_json::Value {
        let provision = self.provision.load();
        let mut binds = Vec::clone(&self.binds.load());
        binds.sort_by_key(|b| (b.system, b.since_unix_ms));
        let now = super::records::unix_ms();
        let rows = binds.iter().map(|b| {
            let l = provision.system(b.system);
            serde_json::json!({
                "system": l.map_or_else(|| b.system.to_string(), |l| l.name.clone()),
                "peer": b.peer, "bind_type": b.bind_type,
                "since": crate::control::records::rfc3339_ms(b.since_unix_ms),
                "up_s": now.saturating_sub(b.since_unix_ms) / 1000,
                "in_flight": b.in_flight, "window": l.map_or(0, |l| l.window),
                "worker": b.core, "port": b.conn >> 16, "slot": b.conn & 0xFFFF,
            })
        });
        serde_json::Value::Array(rows.collect())
    }

    /// Whether the operator took system `id` out of service (`iwf ctl disable`).
    pub fn is_disabled(&self, id: u16) -> bool {
        self.system(id).is_some_and(|s| s.disabled.load(Ordering::Relaxed))
    }

    /// The operator's `disable` / `enable` / `expire` of the system named `name`
    /// (`POST /v1/<action>/<name>`): the answer, or the status and text of a refusal;
    /// `None` for an action it does not know. `expire` asks the store thread
    /// (`store`), waiting for its answer.
    pub fn operator_action(&self, action: &str, name: &str) -> Option<Result<serde_json::Value, (u16, String)>> {
        if !matches!(action, "disable" | "enable" | "expire") {
            return None;
        }
        let provision = self.provision.load();
        let Some(l) = provision.legacy.iter().find(|l| l.name == name) else {
            return Some(Err((404, format!("no legacy system `{name}` (iwf ctl systems lists them)"))));
        };
        let Some(st) = self.system(l.id) else { return Some(Err((404, format!("no counters for `{name}`")))) };
        if action == "expire" {
            let Some(tx) = &self.store else {
                return Some(Err((409, "no durable store ([control] store): nothing is queued".to_string())));
            };
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            if tx.send(store::StoreOp::Expire { system: l.id, reply }).is_err() {
                return Some(Err((503, "the store thread is gone".to_string())));
            }
            return Some(match answer.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(Ok(n)) => Ok(serde_json::json!({ "system": name, "expired": n })),
                Ok(Err(e)) => Err((500, format!("the store refused: {e}"))),
                Err(_) => Err((504, "the store thread did not answer in 30 s".to_string())),
            });
        }
        let disable = action == "disable";
        let was = st.disabled.swap(disable, Ordering::SeqCst);
        if was != disable {
            tracing::warn!("legacy system {name} {} by the operator", if disable { "disabled" } else { "enabled" });
        }
        Some(Ok(serde_json::json!({ "system": name, "disabled": disable, "changed": was != disable })))
    }

    /// The counters of legacy system `id`.
    pub fn system(&self, id: u16) -> Option<Arc<SystemStats>> {
        self.systems.load().get(&id).cloned()
    }

    /// Counts a drop by reason.
    pub fn count_drop(&self, reason: DropReason) {
        if let Some(c) = self.drops.get(reason as usize) {
            inc(c);
        }
    }

    /// Every drop reason with its count.
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().zip(&self.drops).map(|(r, c)| (r.name(), c.load(Ordering::Relaxed)))
    }

    /// [`Shared::complete`] from a thread that may wait (the store's, the cluster's: no
    /// packet path): a full ring is tried again, every 100 µs, until its core drains it
    /// (each poll) or `give_up` says so. Whether the waiter was told.
    pub fn complete_waiting(&self, token: u64, outcome: Outcome, give_up: impl Fn() -> bool) -> bool {
        let mut c = Completion { token, outcome };
        while let Err(back) = self.complete(c.token, c.outcome) {
            if give_up() {
                return false;
            }
            c = back;
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }

    /// Sends a completion to whoever waits on `token`. A full ring (its consumer is
    /// behind) hands the completion back: the caller keeps it and tries again later,
    /// never spinning (a worker must not wait on another). A token of no core is
    /// dropped (`Ok`): nobody waits for it.
    pub fn complete(&self, token: u64, outcome: Outcome) -> Result<(), Completion> {
        let origin = (token >> 48) as u16;
        let c = Completion { token, outcome };
        let q = match origin {
            STORE_ORIGIN => Some(&self.store_completions),
            super::cluster::CLUSTER_ORIGIN => Some(&self.cluster_completions),
            core => self.completions.get(usize::from(core)),
        };
        match q {
            Some(q) => q.push(c),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod latency_tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_they_do_not_exceed() {
        let l = Latency::default();
        for ms in [0, 1, 2, 3, 10_000, 10_001, 99_999] {
            l.record(ms);
        }
        let (c, sum) = l.cumulative();
        assert_eq!(c.len(), LATENCY_BOUNDS_MS.len() + 1);
        assert_eq!((c[0], c[1], c[2]), (2, 3, 4), "≤1 ms: 0 and 1; ≤2: 2; ≤5: 3");
        assert_eq!(c[LATENCY_BOUNDS_MS.len() - 1], 5, "≤10 s");
        assert_eq!(c[LATENCY_BOUNDS_MS.len()], 7, "+Inf: all");
        assert_eq!(sum, 1 + 2 + 3 + 10_000 + 10_001 + 99_999);
    }
}
