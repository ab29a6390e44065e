//! Receipts across boxes: the cluster's receipts stream (JetStream, work queue, file
//! storage, `replicas` copies, one subject `<stream>.<system>` per legacy system).
//!
//! - **Publishing.** A worker that has no bind of a receipt's system hands it here
//!   ([`ClusterOp::Publish`]); it is published with a `Nats-Msg-Id` made of the system,
//!   the receipt's id (the part's tag) and its state, so a replay of the same
//!   notification that reaches another box within the stream's duplicate window is
//!   absorbed by JetStream. The waiter hears [`Outcome::Stored`] on JetStream's
//!   acknowledgement, and 503 otherwise.
//! - **Taking.** For each system this box holds a bind of, a task pulls from the
//!   system's durable consumer (one per system, shared by every box holding it: JetStream
//!   gives each receipt to one of them). A receipt goes into the system's lane with a
//!   [`CLUSTER_ORIGIN`] token; it is acknowledged to JetStream only when the legacy
//!   system answered it (its `*_resp`), and handed back (nak) when its bind went first.
//!   A box that dies leaves its receipts unacknowledged: JetStream gives them to another
//!   box after the ack wait. A receipt delivered more than once (its `*_resp` or ack was
//!   lost) is counted.
//! - **Acks are confirmed.** Each ack waits for JetStream's reply and is sent again
//!   while none comes (a consumer electing its leader drops acks; each lost one would be
//!   delivered again after the ack wait). A redelivery that comes anyway, or a receipt
//!   published twice because its PubAck was lost, reaches a box that remembers its
//!   `Nats-Msg-Id` as delivered: it is acknowledged, not sent to the legacy system again.
use super::complete;
use crate::flow::cluster::{ClusterOp, CLUSTER_ORIGIN, UNAVAILABLE};
use crate::flow::{Completion, CorrelationWrite, Outcome, Shared};
use crate::ids::LegacySystemId;
use crate::route::lane::{LaneItem, PushError};
use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long JetStream waits for a taken receipt's ack before giving it to another box.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// The receipts stream's duplicate window: a replay reaching another box within it is
/// absorbed. (Each box's replay guard covers its own replay window; JetStream keeps
/// every id of the window in memory, so it is kept short.)
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long an answered receipt's ack is tried until JetStream confirms it (a consumer
/// electing its leader drops acks for seconds; each unconfirmed one would be delivered
/// again after the ack wait), and how long this box remembers what it delivered, to
/// absorb a redelivery that comes anyway.
const ACK_CONFIRM_FOR: Duration = DUPLICATE_WINDOW;
/// Receipts delivered lately this box remembers, at most (beyond it, the oldest are
/// forgotten before the window ends: at 100 K receipts/s across boxes that is 0.6 s).
const RECENT_MAX: usize = 65_536;
/// How often the receipts still waiting in a lane are looked at for a Progress ack.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Receipts one system's consumer lets the boxes hold unacknowledged.
const MAX_ACK_PENDING: i64 = 4096;
/// Receipts a pull asks for at a time (what a box that dies holds prefetched waits
/// for the ack wait).
const PULL_BATCH: usize = 64;
/// Publishes awaiting JetStream's acknowledgement, at most.
pub const PUBLISHING_MAX: usize = 8192;
/// Receipts taken but waiting for room in their lane, at most.
const BACKLOG_MAX: usize = 1024;

/// Counters of the receipts across boxes (in [`super::Registry`]).
#[derive(Debug, Default)]
pub struct ReceiptStats {
    /// Receipts published and acknowledged by JetStream.
    pub published: AtomicU64,
    /// Publishes JetStream answered as duplicates (a replay absorbed).
    pub duplicates: AtomicU64,
    /// Publishes that failed (the waiter answered 503).
    pub publish_failed: AtomicU64,
    /// Receipts taken from the stream into a lane.
    pub taken: AtomicU64,
    /// Taken receipts answered by their legacy system whose ack JetStream confirmed.
    pub acked: AtomicU64,
    /// Of those answered, acks JetStream never confirmed (tried for [`ACK_CONFIRM_FOR`]):
    /// JetStream may deliver them again.
    pub ack_unconfirmed: AtomicU64,
    /// Taken receipts handed back to JetStream undelivered (their bind went).
    pub returned: AtomicU64,
    /// Taken receipts JetStream had delivered before (to this box or another): each a
    /// possible duplicate at the legacy system.
    pub redelivered: AtomicU64,
    /// Taken receipts this box had delivered lately (same `Nats-Msg-Id`: an ack or a
    /// PubAck lost in a leader election): acknowledged again, not sent twice.
    pub absorbed: AtomicU64,
    /// Taken receipts that are no receipt of a known system (terminated).
    pub malformed: AtomicU64,
    /// Publish latency (publish to JetStream's acknowledgement), microseconds: p50,
    /// p99, p99.9 of the last second's publishes.
    pub publish_us: [AtomicU64; 3],
    /// The same over every publish since the start (what a benchmark run reads).
    pub publish_us_all: [AtomicU64; 3],
}

impl ReceiptStats {
    /// Each counter once, for the metrics and the admin API.
    fn counters(&self) -> [super::Counter<'_>; 10] {
        use super::Counter as C;
        [
            C(
                "published",
                "iwf_cluster_receipts_published_total",
                "Receipts published to the cluster and acknowledged by JetStream",
                &self.published,
            ),
            C(
                "duplicates",
                "iwf_cluster_receipts_duplicate_total",
                "Publishes JetStream absorbed as duplicates (replays)",
                &self.duplicates,
            ),
            C(
                "publish_failed",
                "iwf_cluster_receipts_publish_failed_total",
                "Receipt publishes that failed (the IMDN was answered 503)",
                &self.publish_failed,
            ),
            C("taken", "iwf_cluster_receipts_taken_total", "Receipts taken from the cluster into a lane", &self.taken),
            C(
                "acked",
                "iwf_cluster_receipts_acked_total",
                "Taken receipts answered by the legacy system whose ack JetStream confirmed",
                &self.acked,
            ),
            C(
                "ack_unconfirmed",
                "iwf_cluster_receipts_ack_unconfirmed_total",
                "Answered receipts whose ack JetStream never confirmed (it may deliver them again)",
                &self.ack_unconfirmed,
            ),
            C(
                "returned",
                "iwf_cluster_receipts_returned_total",
                "Taken receipts handed back undelivered (their bind went)",
                &self.returned,
            ),
            C(
                "redelivered",
                "iwf_cluster_receipts_redelivered_total",
                "Taken receipts delivered before: possible duplicates",
                &self.redelivered,
            ),
            C(
                "absorbed",
                "iwf_cluster_receipts_absorbed_total",
                "Taken receipts this box had delivered lately: acknowledged again, not sent twice",
                &self.absorbed,
            ),
            C(
                "malformed",
                "iwf_cluster_receipts_malformed_total",
                "Taken receipts of no known system or unreadable (terminated)",
                &self.malformed,
            ),
        ]
    }

    /// An ack's end: confirmed (counted if it was a legacy system's answer), or not.
    fn count_ack(&self, confirmed: bool, answered: bool) {
        if !confirmed {
            self.ack_unconfirmed.fetch_add(1, Ordering::Relaxed);
        } else if answered {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn render(&self, out: &mut crate::control::metrics::MetricsWriter) {
        super::render_counters(out, &self.counters());
        // A gauge per percentile ("quantile" is a summary's label, and this is no summary:
        // it is the last second's, not a running one).
        for (q, v) in ["50", "99", "99.9"].iter().zip(&self.publish_us) {
            let _ = out.gauge(
                "iwf_cluster_publish_seconds",
                "Receipt publish latency to JetStream's acknowledgement over the last second",
                &[("percentile", q)],
                v.load(Ordering::Relaxed) as f64 / 1e6,
            );
        }
    }

    /// For `GET /v1/cluster`.
    pub(super) fn view(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut v = super::view_counters(&self.counters());
        v.insert(
            "publish_us".into(),
            serde_json::json!({"p50": get(&self.publish_us[0]), "p99": get(&self.publish_us[1]), "p999": get(&self.publish_us[2])}),
        );
        v.insert(
            "publish_us_all".into(),
            serde_json::json!({"p50": get(&self.publish_us_all[0]), "p99": get(&self.publish_us_all[1]), "p999": get(&self.publish_us_all[2])}),
        );
        serde_json::Value::Object(v)
    }
}

/// A receipt taken from the stream, in a lane until its system answers it.
struct Taken {
    message: jetstream::Message,
    system: u16,
    /// Its `Nats-Msg-Id`, hashed (remembered once delivered).
    id: Option<u64>,
    /// When JetStream was last told it is still being worked on (or it was taken).
    touched: Instant,
}

type Acked = Pin<Box<dyn Future<Output = (u64, Instant, Result<jetstream::publish::PublishAck, String>)> + Send>>;

/// An ack being confirmed: whether JetStream confirmed it, and whether it was a
/// legacy system's answer (`false`: a redelivery absorbed).
type Confirming = Pin<Box<dyn Future<Output = (bool, bool)> + Send>>;

/// What outlives a connection: the intake, the receipts taken (they are acknowledged
/// through their own message's connection), the counters.
pub struct Receipts {
    intake: Receiver<ClusterOp>,
    taken: HashMap<u64, Taken>,
    /// Taken, waiting for room in their lane.
    backlog: VecDeque<(u16, jetstream::Message)>,
    next_index: u64,
    /// Acks sent and not yet confirmed by JetStream.
    confirming: FuturesUnordered<Confirming>,
    /// What this box delivered lately (hashed `Nats-Msg-Id`s), oldest first, and as a set.
    recent: VecDeque<(u64, Instant)>,
    recent_ids: HashSet<u64>,
    /// When the receipts in lanes were last looked at for a Progress ack.
    progress_at: Instant,
    stats: Arc<ReceiptStats>,
    /// Publish latencies of the current second, and of every publish (none if they
    /// could not be made).
    latency: Option<hdrhistogram::Histogram<u64>>,
    latency_all: Option<hdrhistogram::Histogram<u64>>,
    latency_at: Instant,
}

/// One connection's part: the publishes in flight and the pulling tasks.
pub struct Session {
    js: jetstream::Context,
    stream: String,
    /// The stream as this box makes it when it is missing.
    stream_config: stream::Config,
    /// The shared correlations.
    correlations: super::correlations::Correlations,
    publishing: FuturesUnordered<Acked>,
    /// The tokens of the publishes in flight (an IMDN's parts share one), so that a
    /// connection's end can answer them.
    outstanding: HashMap<u64, u16>,
    pulls: HashMap<u16, tokio::task::JoinHandle<()>>,
    /// The stream's probe under way.
    probing: Option<tokio::task::JoinHandle<bool>>,
    /// When the next probe may start.
    probe_at: Instant,
    inbox_tx: tokio::sync::mpsc::Sender<(u16, jetstream::Message)>,
    inbox: tokio::sync::mpsc::Receiver<(u16, jetstream::Message)>,
}

impl Receipts {
    /// The receipts' side of the cluster thread, reading `intake`.
    pub fn new(intake: Receiver<ClusterOp>, stats: Arc<ReceiptStats>) -> Receipts {
        Receipts {
            intake,
            taken: HashMap::new(),
            backlog: VecDeque::new(),
            next_index: 1,
            confirming: FuturesUnordered::new(),
            recent: VecDeque::new(),
            recent_ids: HashSet::new(),
            progress_at: Instant::now(),
            stats,
            latency: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).ok(),
            latency_all: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).ok(),
            latency_at: Instant::now(),
        }
    }

    /// Between connections: whatever was handed over cannot be published now.
    pub fn refuse_intake(&mut self, shared: &Shared) {
        while let Ok(op) = self.intake.try_recv() {
            let token = match op {
                ClusterOp::Publish { item } => {
                    self.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
                    item.token()
                }
                ClusterOp::Correlation(write) => match write.token() {
                    Some(token) => token,
                    None => continue,
                },
                // Nothing waits: the receipt stays parked.
                ClusterOp::Find { .. } => continue,
            };
            complete(shared, token, UNAVAILABLE);
        }
    }
}

/// The subject of `system`'s receipts.
fn subject(stream: &str, system: &str) -> String {
    format!("{stream}.{system}")
}

/// The `Nats-Msg-Id` of a receipt: its system, its id (the part's tag) and its state,
/// so the same notification relayed through two boxes is one message. `None` for a PDU
/// that is no receipt (published without one: not deduplicated).
pub fn message_id(system: &str, pdu: &[u8]) -> Option<String> {
    use crate::interwork::converged_to_legacy::parse_smsc_receipt;
    use crate::wire::smpp::{Body, Pdu};
    let pdu = Pdu::parse(pdu).ok()?;
    let (Body::DeliverSm(sm) | Body::SubmitSm(sm)) = pdu.body else { return None };
    let r = parse_smsc_receipt(&sm, crate::interwork::IdCanonicalisation::Exact).ok()?;
    let mut id = format!("{system}.");
    for &b in r.raw_id {
        if b.is_ascii_alphanumeric() {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("%{b:02x}"));
        }
    }
    id.push_str(&format!(".{:?}", r.state));
    Some(id)
}

impl Session {
    /// A connection's part. The receipts stream is made (if missing) by the first
    /// probe, not here: while it has no leader the registry carries on.
    pub fn open(
        js: &jetstream::Context,
        config: &crate::control::cluster::ClusterConfig,
        validity: Duration,
        correlations: super::correlations::Correlations,
    ) -> Session {
        let name = &config.receipts_stream;
        let (inbox_tx, inbox) = tokio::sync::mpsc::channel(PULL_BATCH * 4);
        Session {
            js: js.clone(),
            stream: name.clone(),
            stream_config: stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.>")],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: usize::from(config.replicas),
                // A receipt lives as long as it is valid.
                max_age: validity,
                duplicate_window: DUPLICATE_WINDOW.min(validity),
                ..Default::default()
            },
            correlations,
            publishing: FuturesUnordered::new(),
            outstanding: HashMap::new(),
            pulls: HashMap::new(),
            probing: None,
            probe_at: Instant::now(),
            inbox_tx,
            inbox,
        }
    }

    /// Waits for the next publish acknowledgement or taken receipt (`None`: neither
    /// came within `tick`). Without `room` (the backlog is full) no receipt is taken:
    /// the pulls wait, and JetStream keeps the rest.
    pub async fn next(&mut self, tick: Duration, room: bool) -> Option<Event> {
        tokio::select! {
            biased;
            Some((token, at, r)) = self.publishing.next(), if !self.publishing.is_empty() => Some(Event::Acked(token, at, r)),
            Some((system, m)) = self.inbox.recv(), if room => Some(Event::Taken(system, m)),
            () = tokio::time::sleep(tick) => None,
        }
    }

    /// Publishes what the workers handed over (receipts), and hands the correlations'
    /// writes and questions to their tasks.
    pub async fn publish(&mut self, r: &mut Receipts, shared: &Shared) {
        let provision = shared.provision.load();
        while self.publishing.len() < PUBLISHING_MAX {
            let Ok(op) = r.intake.try_recv() else { break };
            let item = match op {
                ClusterOp::Publish { item } => item,
                ClusterOp::Correlation(write) => {
                    match write {
                        CorrelationWrite::Put { key, record, token } => {
                            self.correlations.put_record(key, &record, token)
                        }
                        CorrelationWrite::BindId { system, id, key, part, token } => {
                            self.correlations.put_id(system, id, key, part, token)
                        }
                        CorrelationWrite::Remove { key } => self.correlations.remove(key),
                    }
                    continue;
                }
                ClusterOp::Find { system, id, core } => {
                    self.correlations.find(system, id, core);
                    continue;
                }
            };
            let token = item.token();
            let Some(system) = provision.system(item.system().0).map(|l| l.name.clone()) else {
                r.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
                complete(shared, token, UNAVAILABLE);
                continue;
            };
            let mut message = jetstream::message::PublishMessage::build().payload(item.pdu().to_vec().into());
            if let Some(id) = message_id(&system, item.pdu()) {
                message = message.message_id(id);
            }
            let at = Instant::now();
            match self.js.send_publish(subject(&self.stream, &system), message).await {
                Ok(ack) => {
                    *self.outstanding.entry(token).or_default() += 1;
                    self.publishing.push(Box::pin(async move { (token, at, ack.await.map_err(|e| e.to_string())) }));
                }
                Err(e) => {
                    r.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("cluster: publish to {system}'s receipts failed: {e}");
                    if let Some(link) = shared.cluster.get() {
                        link.writable.store(false, Ordering::Relaxed);
                    }
                    complete(shared, token, UNAVAILABLE);
                }
            }
        }
    }

    /// Starts pulling for each system this box holds a bind of (again, if a pull
    /// ended), and stops pulling for the others.
    pub fn pull_for(&mut self, held: &[u16], shared: &Shared) {
        self.pulls.retain(|system, task| {
            let keep = held.contains(system) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let provision = shared.provision.load();
        for &system in held {
            if self.pulls.contains_key(&system) {
                continue;
            }
            let Some(name) = provision.system(system).map(|l| l.name.clone()) else { continue };
            let (js, stream, tx) = (self.js.clone(), self.stream.clone(), self.inbox_tx.clone());
            let task = tokio::spawn(async move {
                if let Err(e) = pull(js, stream, system, name.clone(), tx).await {
                    tracing::warn!("cluster: pulling {name}'s receipts: {e}; starting again");
                }
            });
            self.pulls.insert(system, task);
        }
    }

    /// Whether the receipts stream answers (its leader is elected and has a quorum;
    /// made if missing), asked in the background within a second; `Some` once an answer is in. The
    /// thread asks every second, never waiting for the answer: it goes on answering
    /// the cores meanwhile.
    pub fn probe(&mut self) -> Option<bool> {
        use futures_util::FutureExt;
        if let Some(task) = &mut self.probing {
            if !task.is_finished() {
                return None;
            }
            let answer = task.now_or_never().and_then(Result::ok);
            self.probing = None;
            return answer;
        }
        if Instant::now() < self.probe_at {
            return None;
        }
        self.probe_at = Instant::now() + Duration::from_secs(1);
        let (js, config) = (self.js.clone(), self.stream_config.clone());
        self.probing = Some(tokio::spawn(async move {
            let info = async {
                let s = js.get_or_create_stream(config).await.ok()?;
                Some(s.cached_info().cluster.as_ref().is_none_or(|c| c.leader.is_some()))
            };
            matches!(tokio::time::timeout(Duration::from_secs(1), info).await, Ok(Some(true)))
        }));
        None
    }

    /// The connection ends: publishes in flight are refused (the converged side
    /// retries; a publish that did land is absorbed as a duplicate), pulls stop.
    pub fn close(self, r: &Receipts, shared: &Shared) {
        for task in self.pulls.values() {
            task.abort();
        }
        if let Some(task) = &self.probing {
            task.abort();
        }
        for (&token, &n) in &self.outstanding {
            for _ in 0..n {
                r.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
                complete(shared, token, UNAVAILABLE);
            }
        }
    }
}

/// What [`Session::next`] brings (one at a time, moved at once: the size is no cost).
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// JetStream answered a publish (its waiter's token, when it was sent).
    Acked(u64, Instant, Result<jetstream::publish::PublishAck, String>),
    /// A receipt of `system` taken from the stream.
    Taken(u16, jetstream::Message),
}

impl Session {
    /// A publish answered: its waiter hears whether the receipt is durable.
    pub fn acked(
        &mut self,
        r: &mut Receipts,
        shared: &Shared,
        token: u64,
        at: Instant,
        result: Result<jetstream::publish::PublishAck, String>,
    ) {
        if let Some(n) = self.outstanding.get_mut(&token) {
            *n -= 1;
            if *n == 0 {
                self.outstanding.remove(&token);
            }
        }
        match result {
            Ok(ack) => {
                r.stats.published.fetch_add(1, Ordering::Relaxed);
                if ack.duplicate {
                    r.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                let us = (at.elapsed().as_micros() as u64).clamp(1, 60_000_000);
                for h in [&mut r.latency, &mut r.latency_all].into_iter().flatten() {
                    let _ = h.record(us);
                }
                complete(shared, token, Outcome::Stored);
            }
            Err(e) => {
                r.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("cluster: a receipt's publish was not acknowledged: {e}");
                if let Some(link) = shared.cluster.get() {
                    link.writable.store(false, Ordering::Relaxed);
                }
                complete(shared, token, UNAVAILABLE);
            }
        }
    }
}

impl Receipts {
    /// A receipt taken from the stream: into its lane (or the backlog while the lane
    /// is full), or handed back when its system has no bind here now.
    pub async fn take(&mut self, shared: &Shared, system: u16, message: jetstream::Message) {
        if message.info().is_ok_and(|i| i.delivered > 1) {
            self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        if id_of(&message).is_some_and(|id| self.recent_ids.contains(&id)) {
            // Delivered here already (its ack, or its publish's PubAck, was lost): the
            // legacy system has it. Only the ack is owed.
            self.stats.absorbed.fetch_add(1, Ordering::Relaxed);
            self.confirming.push(Box::pin(async move { (confirm(message).await, false) }));
            return;
        }
        self.stats.taken.fetch_add(1, Ordering::Relaxed);
        if !self.backlog.is_empty() {
            self.backlog.push_back((system, message));
            return;
        }
        if let Some((system, message)) = self.push(shared, system, message).await {
            self.backlog.push_back((system, message));
        }
    }

    /// Into the lane; back when the lane is full.
    async fn push(
        &mut self,
        shared: &Shared,
        system: u16,
        message: jetstream::Message,
    ) -> Option<(u16, jetstream::Message)> {
        let index = self.next_index;
        let token = (u64::from(CLUSTER_ORIGIN) << 48) | index;
        let Ok(item) = LaneItem::new(LegacySystemId(system), token, &message.payload) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            let _ = message.ack_with(AckKind::Term).await;
            return None;
        };
        let lanes = shared.lanes.load();
        let Some(lane) = lanes.get(LegacySystemId(system)).filter(|l| l.owner().is_some()) else {
            // Its bind here went: another box (or this one, later) takes it.
            self.stats.returned.fetch_add(1, Ordering::Relaxed);
            let _ = message.ack_with(AckKind::Nak(None)).await;
            return None;
        };
        match lane.push(item) {
            Ok(()) => {
                self.next_index = (index + 1) & 0xFFFF_FFFF_FFFF;
                let id = id_of(&message);
                self.taken.insert(index, Taken { message, system, id, touched: Instant::now() });
                None
            }
            Err(PushError::Full(_)) => Some((system, message)),
            Err(_) => {
                self.stats.returned.fetch_add(1, Ordering::Relaxed);
                let _ = message.ack_with(AckKind::Nak(None)).await;
                None
            }
        }
    }

    /// Every tick: the backlog into lanes with room, the legacy systems' answers
    /// acknowledged, and JetStream told of the receipts still being worked on.
    pub async fn tick(&mut self, shared: &Shared) {
        while let Some((system, message)) = self.backlog.pop_front() {
            if let Some(back) = self.push(shared, system, message).await {
                self.backlog.push_front(back);
                break;
            }
        }
        while let Some(Completion { token, outcome }) = shared.cluster_completions.pop() {
            let Some(t) = self.taken.remove(&(token & 0xFFFF_FFFF_FFFF)) else { continue };
            match outcome {
                // Answered by the legacy system (a refusal is its answer: not retried).
                Outcome::Delivered | Outcome::Refused(_) | Outcome::Answered(..) => {
                    if let Some(id) = t.id {
                        self.remember(id);
                    }
                    self.confirming.push(Box::pin(async move { (confirm(t.message).await, true) }));
                }
                // Not delivered here (the store's thread hands back a lane's orphans).
                Outcome::Stored | Outcome::StoreFailed => {
                    self.stats.returned.fetch_add(1, Ordering::Relaxed);
                    let _ = t.message.ack_with(AckKind::Nak(None)).await;
                }
            }
        }
        self.confirmed();
        if self.progress_at.elapsed() >= PROGRESS_EVERY {
            self.progress_at = Instant::now();
            let lanes = shared.lanes.load();
            for t in self.taken.values_mut() {
                // Still waiting in a lane whose system is bound here: not yet another box's.
                if t.touched.elapsed() >= ACK_WAIT / 3
                    && lanes.get(LegacySystemId(t.system)).is_some_and(|l| l.owner().is_some())
                {
                    t.touched = Instant::now();
                    let _ = t.message.ack_with(AckKind::Progress).await;
                }
            }
            while self.recent.front().is_some_and(|(_, at)| at.elapsed() >= ACK_CONFIRM_FOR) {
                if let Some((id, _)) = self.recent.pop_front() {
                    self.recent_ids.remove(&id);
                }
            }
        }
        if self.latency_at.elapsed() >= Duration::from_secs(1) {
            self.latency_at = Instant::now();
            if let Some(h) = self.latency.as_mut().filter(|h| !h.is_empty()) {
                for (q, v) in [0.5, 0.99, 0.999].iter().zip(&self.stats.publish_us) {
                    v.store(h.value_at_quantile(*q), Ordering::Relaxed);
                }
                h.reset();
            }
            if let Some(h) = self.latency_all.as_ref().filter(|h| !h.is_empty()) {
                for (q, v) in [0.5, 0.99, 0.999].iter().zip(&self.stats.publish_us_all) {
                    v.store(h.value_at_quantile(*q), Ordering::Relaxed);
                }
            }
        }
    }

    /// The acks JetStream confirmed (or that were tried for long enough) since the last
    /// look, counted; never waiting.
    fn confirmed(&mut self) {
        use futures_util::FutureExt;
        while let Some(Some((confirmed, answered))) = self.confirming.next().now_or_never() {
            self.stats.count_ack(confirmed, answered);
        }
    }

    /// A receipt delivered: remembered for the window (the oldest forgotten at the bound).
    fn remember(&mut self, id: u64) {
        if self.recent.len() >= RECENT_MAX {
            if let Some((old, _)) = self.recent.pop_front() {
                self.recent_ids.remove(&old);
            }
        }
        if self.recent_ids.insert(id) {
            self.recent.push_back((id, Instant::now()));
        }
    }

    /// Whether another taken receipt may wait for room in its lane.
    pub fn has_room(&self) -> bool {
        self.backlog.len() < BACKLOG_MAX
    }

    /// Stopping: every receipt taken and not yet answered goes back to JetStream at
    /// once, for another box.
    pub async fn leave(&mut self) {
        for (_, t) in self.taken.drain() {
            self.stats.returned.fetch_add(1, Ordering::Relaxed);
            let _ = t.message.ack_with(AckKind::Nak(None)).await;
        }
        for (_, m) in self.backlog.drain(..) {
            self.stats.returned.fetch_add(1, Ordering::Relaxed);
            let _ = m.ack_with(AckKind::Nak(None)).await;
        }
        // The acks on their way get a moment to be confirmed; a stop does not wait longer.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some((confirmed, answered)) = self.confirming.next().await {
                self.stats.count_ack(confirmed, answered);
            }
        })
        .await;
    }
}

/// A receipt's `Nats-Msg-Id`, hashed (none for a message published without one).
fn id_of(message: &jetstream::Message) -> Option<u64> {
    let id = message.headers.as_ref()?.get(async_nats::header::NATS_MESSAGE_ID)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.as_str().hash(&mut h);
    Some(h.finish())
}

/// Acknowledges `message` and waits up to 2 s for JetStream to confirm it; while it
/// does not (its consumer electing a leader), again half a second later, for up to
/// [`ACK_CONFIRM_FOR`]: whether it was confirmed.
async fn confirm(message: jetstream::Message) -> bool {
    let until = Instant::now() + ACK_CONFIRM_FOR;
    loop {
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), message.double_ack()).await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Pulls `system`'s receipts from its durable consumer (shared by every box holding
/// the system) into `tx`, until the pull fails or the task is stopped.
async fn pull(
    js: jetstream::Context,
    stream: String,
    system: u16,
    name: String,
    tx: tokio::sync::mpsc::Sender<(u16, jetstream::Message)>,
) -> Result<(), String> {
    let s = js.get_stream(&stream).await.map_err(|e| format!("stream {stream}: {e}"))?;
    let durable = format!("iwf-{name}");
    let consumer: consumer::PullConsumer = s
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: subject(&stream, &name),
                ack_policy: consumer::AckPolicy::Explicit,
                deliver_policy: consumer::DeliverPolicy::All,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {durable}: {e}"))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .map_err(|e| format!("consumer {durable}: {e}"))?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| format!("consumer {durable}: {e}"))?;
        if tx.send((system, m)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::message_id;
    use crate::wire::smpp::{Address, Body, EsmClass, Pdu, SubmitSm, Tlvs};

    /// A deliver_sm receipt for `id` in SMPP state `state` (sequence `seq`).
    fn receipt(seq: u32, id: &[u8], state: u8, esm: u8) -> Vec<u8> {
        let mut tlvs = vec![0x00, 0x1E, 0x00, (id.len() + 1) as u8];
        tlvs.extend_from_slice(id);
        tlvs.push(0);
        tlvs.extend_from_slice(&[0x04, 0x27, 0x00, 0x01, state]);
        let sm = SubmitSm {
            source: Address::international(b"447900000001"),
            destination: Address::international(b"447000100001"),
            esm_class: EsmClass(esm),
            tlvs: Tlvs::Raw(&tlvs),
            ..SubmitSm::default()
        };
        let pdu = Pdu::new(seq, Body::DeliverSm(sm));
        let mut out = vec![0u8; pdu.buffer_len()];
        pdu.emit(&mut out).unwrap();
        out
    }

    #[test]
    fn a_receipts_message_id_is_its_system_id_and_state_whatever_its_sequence() {
        let delivered = message_id("smsc-a", &receipt(1, b"000hf30astp9iq0007", 2, 0x04)).unwrap();
        assert_eq!(delivered, "smsc-a.000hf30astp9iq0007.Delivered");
        assert_eq!(message_id("smsc-a", &receipt(9, b"000hf30astp9iq0007", 2, 0x04)).unwrap(), delivered);
        assert_ne!(message_id("smsc-a", &receipt(1, b"000hf30astp9iq0007", 5, 0x04)).unwrap(), delivered);
        assert_ne!(message_id("smsc-b", &receipt(1, b"000hf30astp9iq0007", 2, 0x04)).unwrap(), delivered);
        // What NATS would read as a token separator or wildcard is escaped.
        assert_eq!(message_id("s", &receipt(1, b"a.b*", 2, 0x04)).unwrap(), "s.a%2eb%2a.Delivered");
        // No receipt (a plain message): no id, published without one.
        assert_eq!(message_id("s", &receipt(1, b"x", 2, 0x00)), None);
        assert_eq!(message_id("s", b"\x00\x00"), None);
    }
}
