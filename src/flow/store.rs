//! The durable queue's thread: receipts for legacy systems without a bind are written to
//! the store (redb, group commits) and their IMDNs answered only after the commit; when
//! a system binds again its queued receipts go into its lane, and each is removed from
//! the store once the system acknowledged it. A restart picks the queue up from the file.
//!
//! The thread is the control plane's: it never touches a packet; the workers reach it
//! through a channel ([`StoreOp`]) and it answers through [`Shared::complete`].
use super::cluster::ClusterOp;
use super::{Completion, CorrelationWrite, Outcome, Shared, STORE_ORIGIN};
use crate::ids::LegacySystemId;
use crate::route::lane::LaneItem;
use crate::route::store::{Batch, MmsOrigin, ParkedReceipt, QueueKey, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the workers ask of the store.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a lane item by value: no allocation per receipt
pub enum StoreOp {
    /// Keep this receipt until its system binds (or `deadline`, Unix seconds); its
    /// token completes with [`Outcome::Stored`] once durable.
    Queue {
        /// The receipt and the waiter's token.
        item: LaneItem,
        /// Unix seconds now.
        enqueued: u64,
        /// Unix seconds when it expires.
        deadline: u64,
    },
    /// `system` has a bind again: hand it its queue.
    Bound {
        /// The system.
        system: u16,
    },
    /// A converged → legacy message's correlation written (its waiter, if any, hears
    /// [`Outcome::Stored`] once durable, in a cluster once shared too).
    Correlation(CorrelationWrite),
    /// An SMSC receipt whose id no resp has bound yet; `token` completes with
    /// [`Outcome::Stored`] once durable (then its deliver_sm_resp goes).
    Park {
        /// The receipt.
        receipt: ParkedReceipt,
        /// The waiter.
        token: u64,
    },
    /// Parked receipt `key` is done with (applied, a duplicate, or unmatched).
    Unpark {
        /// Its store key.
        key: u64,
    },
    /// What the reports of an MMS relayed to a converged user need, under its tag's
    /// key; `token` completes with [`Outcome::Stored`] once durable (before the
    /// MESSAGE goes, so no IMDN can come back for an MMS a restart would forget).
    PutMmsOrigin {
        /// [`MmsOrigin::key_of`] its tag.
        key: u64,
        /// The record.
        origin: Box<MmsOrigin>,
        /// The waiter.
        token: u64,
    },
    /// The MMS under `key` owes no more reports.
    RemoveMmsOrigin {
        /// Its key.
        key: u64,
    },
    /// Drop every receipt queued for `system` (the operator's `iwf ctl expire`);
    /// `reply` hears how many went, or why none did.
    Expire {
        /// The legacy system.
        system: u16,
        /// The answer.
        reply: std::sync::mpsc::SyncSender<Result<u64, String>>,
    },
}

/// Counters of the store thread.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Receipts made durable.
    pub queued: AtomicU64,
    /// Receipts handed from the store to a lane.
    pub replayed: AtomicU64,
    /// Receipts removed after their system acknowledged them.
    pub acked: AtomicU64,
    /// Receipts that expired in the store undelivered.
    pub expired: AtomicU64,
    /// Commits.
    pub commits: AtomicU64,
    /// Writes made durable (receipts, correlation records and ids, removals).
    pub writes: AtomicU64,
    /// Store errors (each also logged).
    pub errors: AtomicU64,
    /// Receipts in the store now.
    pub depth: AtomicU64,
    /// Records set aside because they do not decode.
    pub quarantined: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The waiters of the batch not yet committed.
#[derive(Default)]
struct Pending {
    /// Tokens that hear [`Outcome::Stored`] once the batch is committed, in push order.
    waiting: Vec<u64>,
    /// In a cluster: the correlation writes that go to the cluster once committed
    /// here (their waiters hear from the cluster thread).
    forward: Option<Vec<CorrelationWrite>>,
}

impl Pending {
    /// Whether no waiter waits for the commit (removals alone wait for the batch's time).
    fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.forward.as_ref().is_none_or(|f| f.iter().all(|w| w.token().is_none()))
    }
}

/// Commits `batch`; the waiters of its receipts hear whether they are durable (in a
/// cluster, those of correlation writes once the cluster has them too).
fn commit(
    store: &mut Store,
    batch: &mut Batch,
    pending: &mut Pending,
    shared: &Shared,
    stats: &StoreStats,
    stop: &AtomicBool,
) {
    let forward = pending.forward.as_mut().map(std::mem::take).unwrap_or_default();
    match store.commit(batch) {
        Ok(c) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(c.writes as u64, Ordering::Relaxed);
            stats.queued.fetch_add(c.queued.len() as u64, Ordering::Relaxed);
            stats.depth.fetch_add(c.queued.len() as u64, Ordering::Relaxed);
            for token in pending.waiting.drain(..) {
                if (token >> 48) as u16 != STORE_ORIGIN {
                    complete(shared, token, Outcome::Stored, stop);
                }
            }
            for write in forward {
                let token = write.token();
                let sent = shared.cluster.get().is_some_and(|link| link.send(ClusterOp::Correlation(write)));
                if let (false, Some(token)) = (sent, token) {
                    complete(shared, token, super::cluster::UNAVAILABLE, stop);
                }
            }
        }
        Err(e) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!("store commit failed: {e}");
            // Nothing of the batch is durable: each waiter hears so now (its
            // request is answered 500 and the sender retries), none waits for
            // ever. The writes go with the batch.
            let forwarded = forward.iter().filter_map(CorrelationWrite::token);
            for token in pending.waiting.drain(..).chain(forwarded) {
                if (token >> 48) as u16 != STORE_ORIGIN {
                    complete(shared, token, Outcome::StoreFailed, stop);
                }
            }
            *batch = Batch::new(256, 2_000);
        }
    }
}

/// The lanes' acknowledgements of replayed receipts: those delivered (or refused for
/// good) leave the store.
fn apply_acks(store: &mut Store, replayed: &mut HashMap<u64, QueueKey>, shared: &Shared, stats: &StoreStats) {
    let mut acks = Vec::new();
    while let Some(Completion { token, outcome }) = shared.store_completions.pop() {
        let Some(key) = replayed.remove(&(token & 0xFFFF_FFFF_FFFF)) else { continue };
        match outcome {
            Outcome::Delivered | Outcome::Refused(_) | Outcome::Answered(..) => acks.push(key),
            // Back in the store's hands (its system unbound again): replay later.
            Outcome::Stored | Outcome::StoreFailed => {}
        }
    }
    if !acks.is_empty() {
        for k in &acks {
            if let Some(st) = shared.system(k.system.0) {
                let _ = st.queued_now.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
        match store.ack(&acks) {
            Ok(n) => {
                stats.acked.fetch_add(n as u64, Ordering::Relaxed);
                stats.depth.fetch_sub((n as u64).min(stats.depth.load(Ordering::Relaxed)), Ordering::Relaxed);
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("store ack failed: {e}");
            }
        }
    }
}

/// Receipts queued for systems that have a bind again go back into their lanes, as
/// much as the lanes have room for (those in flight not twice).
fn replay(
    store: &mut Store,
    shared: &Shared,
    bound: &mut Vec<u16>,
    replayed: &mut HashMap<u64, QueueKey>,
    next_index: &mut u64,
    stats: &StoreStats,
) {
    let lanes = shared.lanes.load();
    bound.retain(|&system| {
        let Some(lane) = lanes.get(LegacySystemId(system)) else { return false };
        if lane.owner().is_none() {
            return true; // keep looking: it may bind
        }
        let in_flight: Vec<QueueKey> = replayed.values().copied().filter(|k| k.system.0 == system).collect();
        let room = lane.capacity().saturating_sub(lane.len()).min(256);
        if room == 0 {
            return true;
        }
        let Ok(queued) = store.peek(LegacySystemId(system), room + in_flight.len(), unix_now()) else {
            return true;
        };
        for q in queued.into_iter().filter(|q| !in_flight.contains(&q.key)) {
            let index = *next_index;
            *next_index = (*next_index + 1) & 0xFFFF_FFFF_FFFF;
            let token = (u64::from(STORE_ORIGIN) << 48) | index;
            let Ok(item) = LaneItem::new(LegacySystemId(system), token, q.item.pdu()) else { continue };
            if lane.push(item).is_ok() {
                stats.replayed.fetch_add(1, Ordering::Relaxed);
                replayed.insert(index, q.key);
            }
        }
        true
    });
}

/// Runs until `stop`: intake, group commits, replay to lanes, acknowledgements, expiry.
pub fn run(mut store: Store, rx: Receiver<StoreOp>, shared: Arc<Shared>, stats: Arc<StoreStats>, stop: &AtomicBool) {
    let epoch = Instant::now();
    let mut batch = Batch::new(256, 2_000);
    // The waiters of the batch (they hear after the commit).
    let mut pending = Pending { waiting: Vec::new(), forward: shared.cluster.get().is_some().then(Vec::new) };
    // Receipts replayed into a lane, by the token index they carry.
    let mut replayed: HashMap<u64, QueueKey> = HashMap::new();
    let mut next_index: u64 = 1;
    let mut bound: Vec<u16> = shared.provision.load().legacy.iter().map(|l| l.id).collect();
    // The first sweep after 10 s too: the counts the cores keep start from
    // [`recount`], which the caller runs before the cores start.
    let mut next_sweep = Instant::now() + Duration::from_secs(10);
    let mut next_oldest = Instant::now();
    let mut expires: Vec<(u16, std::sync::mpsc::SyncSender<Result<u64, String>>)> = Vec::new();
    if let Ok(n) = store.queued_total() {
        stats.depth.store(n, Ordering::Relaxed);
    }
    if let Ok(n) = store.quarantined() {
        stats.quarantined.store(n, Ordering::Relaxed);
    }
    while !stop.load(Ordering::Relaxed) {
        let now_us = epoch.elapsed().as_micros() as u64;
        let wait =
            batch.flush_at().map_or(Duration::from_millis(5), |t| Duration::from_micros(t.saturating_sub(now_us)));
        match rx.recv_timeout(wait.min(Duration::from_millis(5))) {
            Ok(StoreOp::Expire { system, reply }) => expires.push((system, reply)),
            Ok(op) => {
                if let Some(token) = intake(op, &mut batch, &mut pending, &mut bound, now_us) {
                    complete(&shared, token, Outcome::StoreFailed, stop);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while let Ok(op) = rx.try_recv() {
            let op = match op {
                StoreOp::Expire { system, reply } => {
                    expires.push((system, reply));
                    continue;
                }
                op => op,
            };
            if let Some(token) = intake(op, &mut batch, &mut pending, &mut bound, now_us) {
                complete(&shared, token, Outcome::StoreFailed, stop);
            }
            if batch.len() >= 256 {
                break;
            }
        }
        // Items left in a lane whose system lost its binds: into the store, or in a
        // cluster back to the cluster (a box holding a bind takes them).
        for lane in shared.lanes.load().lanes() {
            while batch.len() < 256 {
                let Some(item) = lane.take_orphan() else { break };
                match to_cluster(&shared, item) {
                    Some(Some(outcome)) => {
                        complete(&shared, item.token(), outcome, stop);
                        continue;
                    }
                    Some(None) => continue,
                    None => {}
                }
                let unix = unix_now();
                let validity = shared.provision.load().converged.message_validity_s;
                pending.waiting.push(item.token());
                batch.queue_receipt(&item, unix, unix + validity, now_us);
            }
        }
        let now_us = epoch.elapsed().as_micros() as u64;
        // Receipts waiting for their commit are committed at once (latency over
        // batching at low load); removals alone wait for the batch's time.
        if !batch.is_empty() && (!pending.is_empty() || batch.should_flush(now_us)) {
            commit(&mut store, &mut batch, &mut pending, &shared, &stats, stop);
        }
        // The operator's expiries, after the commit of what came before them.
        for (system, reply) in expires.drain(..) {
            let _ = reply.send(expire(&mut store, system, &shared, &stats));
        }
        // Acknowledgements of replayed receipts.
        apply_acks(&mut store, &mut replayed, &shared, &stats);
        if Instant::now() >= next_oldest {
            next_oldest = Instant::now() + Duration::from_secs(1);
            oldest(&store, &shared);
        }
        // Replay to systems that have an owner now.
        replay(&mut store, &shared, &mut bound, &mut replayed, &mut next_index, &stats);
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + Duration::from_secs(10);
            if let Ok(r) = store.sweep(unix_now()) {
                stats.expired.fetch_add(r.receipts_expired as u64, Ordering::Relaxed);
                if let Ok(n) = store.queued_total() {
                    stats.depth.store(n, Ordering::Relaxed);
                }
                if let Ok(n) = store.quarantined() {
                    stats.quarantined.store(n, Ordering::Relaxed);
                }
                if batch.is_empty() {
                    recount(&store, &shared);
                }
            }
        }
    }
    if !batch.is_empty() {
        commit(&mut store, &mut batch, &mut pending, &shared, &stats, stop);
    }
}

/// An orphaned lane item in a cluster: `None` when it is not the cluster's to take
/// (no cluster, or a receipt replayed from this box's store, which keeps it), else
/// what its waiter hears now, if anything. A receipt the cluster thread took from the
/// stream is handed back undelivered (it returns it to JetStream for another box); any
/// other is published, its waiter told by the cluster thread.
fn to_cluster(shared: &Shared, item: crate::route::lane::LaneItem) -> Option<Option<Outcome>> {
    let link = shared.cluster.get()?;
    match (item.token() >> 48) as u16 {
        STORE_ORIGIN => None,
        super::cluster::CLUSTER_ORIGIN => Some(Some(Outcome::StoreFailed)),
        _ if link.publish(item) => Some(None),
        _ => Some(Some(super::cluster::UNAVAILABLE)),
    }
}

/// `system`'s queue dropped (`iwf ctl expire`): how many receipts went.
fn expire(store: &mut Store, system: u16, shared: &Shared, stats: &StoreStats) -> Result<u64, String> {
    let n = store.expire_queue(LegacySystemId(system)).map_err(|e| {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        e.to_string()
    })? as u64;
    stats.expired.fetch_add(n, Ordering::Relaxed);
    stats.depth.fetch_sub(n.min(stats.depth.load(Ordering::Relaxed)), Ordering::Relaxed);
    if let Some(st) = shared.system(system) {
        st.queued_now.store(0, Ordering::Relaxed);
        st.oldest_queued.store(0, Ordering::Relaxed);
    }
    tracing::warn!("durable queue of system {system} expired by the operator: {n} receipts dropped");
    Ok(n)
}

/// Each system's oldest queued receipt, for `iwf ctl queues` (once a second; a seek
/// per system that has any).
fn oldest(store: &Store, shared: &Shared) {
    for l in &shared.provision.load().legacy {
        let Some(st) = shared.system(l.id) else { continue };
        let at = if st.queued_now.load(Ordering::Relaxed) == 0 {
            None
        } else {
            store.oldest(LegacySystemId(l.id)).ok().flatten()
        };
        st.oldest_queued.store(at.unwrap_or(0), Ordering::Relaxed);
    }
}

/// Each system's queued receipts as the store counts them: run once before the cores
/// start, and by the store's thread after each sweep (the cores' running count drifts
/// by what expired or failed to commit). A receipt still on its way to the store is
/// not counted by it: the limit is exact to within what is in flight.
pub fn recount(store: &Store, shared: &Shared) {
    for l in &shared.provision.load().legacy {
        if let (Some(st), Ok(n)) = (shared.system(l.id), store.queued_len(LegacySystemId(l.id))) {
            st.queued_now.store(n as u64, Ordering::Relaxed);
        }
    }
}

/// Tells a waiter its outcome: the store's thread waits on a full ring until the core
/// drains it or iwf stops (a waiter must hear whether its receipt is durable).
fn complete(shared: &Shared, token: u64, outcome: Outcome, stop: &AtomicBool) {
    shared.complete_waiting(token, outcome, || stop.load(Ordering::Relaxed));
}

/// Puts `op` into the batch (its waiter into `waiting`); a write that cannot be put
/// (a record that does not encode) returns its waiter's token, to be told at once.
fn intake(op: StoreOp, batch: &mut Batch, pending: &mut Pending, bound: &mut Vec<u16>, now_us: u64) -> Option<u64> {
    let waiting = &mut pending.waiting;
    match op {
        // Taken apart by the loop before it gets here.
        StoreOp::Expire { reply, .. } => {
            let _ = reply.send(Err("not taken by the store thread".into()));
        }
        StoreOp::Queue { item, enqueued, deadline } => {
            waiting.push(item.token());
            batch.queue_receipt(&item, enqueued, deadline, now_us);
        }
        StoreOp::Bound { system } => {
            if !bound.contains(&system) {
                bound.push(system);
            }
        }
        StoreOp::Correlation(write) => {
            match &write {
                CorrelationWrite::Put { key, record, token } => {
                    if batch.put_correlation(*key, record, now_us).is_err() {
                        return Some(*token);
                    }
                }
                CorrelationWrite::BindId { system, id, key, part, .. } => {
                    batch.bind_id(LegacySystemId(*system), id, *key, *part, now_us);
                }
                CorrelationWrite::Remove { key } => {
                    batch.remove_correlation(*key, now_us);
                }
            }
            match &mut pending.forward {
                // In a cluster the waiter hears once the cluster has it too.
                Some(f) => f.push(write),
                None => waiting.extend(write.token()),
            }
        }
        StoreOp::PutMmsOrigin { key, origin, token } => {
            if batch.put_mms_origin(key, &origin, now_us).is_err() {
                return Some(token);
            }
            waiting.push(token);
        }
        StoreOp::RemoveMmsOrigin { key } => {
            batch.remove_mms_origin(key, now_us);
        }
        StoreOp::Park { receipt, token } => {
            waiting.push(token);
            batch.park(&receipt, now_us);
        }
        StoreOp::Unpark { key } => {
            batch.unpark(key, now_us);
        }
    }
    None
}

impl crate::control::metrics::MetricsSource for StoreStats {
    fn render(&self, out: &mut crate::control::metrics::MetricsWriter) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            ("iwf_store_receipts_queued_total", "Receipts made durable for systems without a bind", &self.queued),
            ("iwf_store_receipts_replayed_total", "Queued receipts handed to a lane", &self.replayed),
            ("iwf_store_receipts_acked_total", "Queued receipts removed once their system took them", &self.acked),
            ("iwf_store_receipts_expired_total", "Queued receipts that expired undelivered", &self.expired),
            ("iwf_store_commits_total", "Store transactions committed", &self.commits),
            ("iwf_store_writes_total", "Writes made durable", &self.writes),
            ("iwf_store_errors_total", "Store operations that failed (each logged)", &self.errors),
        ];
        for (name, help, c) in counters {
            let _ = out.counter(name, help, &[], get(c));
        }
        let _ = out.gauge("iwf_store_receipts_depth", "Receipts in the store now", &[], get(&self.depth) as f64);
        let _ = out.gauge(
            "iwf_store_quarantined",
            "Store records set aside because they do not decode (table `quarantine`)",
            &[],
            get(&self.quarantined) as f64,
        );
    }
}
