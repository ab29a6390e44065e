//! This box's part of an iwf service on NATS JetStream (`[cluster]`): the bind
//! registry, which tells every box where each legacy system can be reached, and the
//! receipts that cross boxes ([`receipts`]).
//!
//! It runs on a thread of its own (`iwf-cluster`) with a current-thread tokio runtime,
//! as the async NATS client needs one; the workers never see it and nothing on the
//! packet path waits for it. What it learns is published in [`Registry`], which the
//! admin API and the metrics read.
//!
//! The registry is a JetStream KV bucket (`binds_bucket`, `replicas` copies, file
//! storage). Every `heartbeat_s`, each legacy system this box holds a receiving bind for
//! is put under `<system>.<node>`, and a system it no longer holds is deleted. The
//! bucket keeps a value three heartbeats and at least 30 s (its stream's `max_age`:
//! long enough to outlive a JetStream leader election), so a box that dies drops out by
//! itself; each box watches the bucket and forgets an entry it has not seen refreshed
//! for as long.
pub mod correlations;
pub mod receipts;

use crate::control::cluster::{ClusterAuth, ClusterConfig};
use crate::flow::cluster::ClusterOp;
use crate::flow::Outcome;
use crate::flow::Shared;
use arc_swap::ArcSwap;
use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One box holding binds of one legacy system, as the registry says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// The legacy system's name.
    pub system: String,
    /// The box.
    pub node: String,
    /// Its receiving binds of the system (all its workers).
    pub binds: u32,
}

/// What this box knows of the cluster (the admin API and metrics read it).
#[derive(Debug, Default)]
pub struct Registry {
    /// Every holder of every system, as last seen in the bucket (sorted).
    pub holders: ArcSwap<Vec<Holder>>,
    /// Whether the cluster thread is connected and its bucket is usable.
    pub connected: AtomicBool,
    /// Registry writes and reads that failed (each logged).
    pub errors: AtomicU64,
    /// Connections made (the first, and each after a loss).
    pub connects: AtomicU64,
    /// Whether the receipts stream takes publishes now (its leader has a quorum).
    pub writable: AtomicBool,
    /// The receipts across boxes.
    pub receipts: Arc<receipts::ReceiptStats>,
    /// The shared correlations.
    pub correlations: Arc<correlations::CorrelationStats>,
}

impl crate::control::metrics::MetricsSource for Registry {
    fn render(&self, out: &mut crate::control::metrics::MetricsWriter) {
        let connected = f64::from(u8::from(self.connected.load(Ordering::Relaxed)));
        let _ = out.gauge(
            "iwf_cluster_connected",
            "Whether the cluster thread holds its NATS connection and bucket",
            &[],
            connected,
        );
        let _ = out.counter(
            "iwf_cluster_connects_total",
            "Connections to the NATS cluster made (the first, and each after a loss)",
            &[],
            self.connects.load(Ordering::Relaxed),
        );
        let _ = out.counter(
            "iwf_cluster_errors_total",
            "Cluster sessions that failed (connection, bucket, registry write; each logged)",
            &[],
            self.errors.load(Ordering::Relaxed),
        );
        let _ = out.gauge(
            "iwf_cluster_writable",
            "Whether the cluster's receipts stream takes receipts now (connected, its leader has a quorum)",
            &[],
            f64::from(u8::from(self.writable.load(Ordering::Relaxed))),
        );
        self.receipts.render(out);
        self.correlations.render(out);
        let mut boxes: BTreeMap<&str, u64> = BTreeMap::new();
        let holders = self.holders.load();
        for h in holders.iter() {
            *boxes.entry(h.system.as_str()).or_default() += 1;
        }
        for (system, n) in boxes {
            let _ = out.gauge(
                "iwf_cluster_system_holders",
                "Boxes of the cluster holding a receiving bind of the system, per the bind registry",
                &[("system", system)],
                n as f64,
            );
        }
    }
}

impl Registry {
    /// What `GET /v1/cluster` shows: this box, whether it is connected, and who holds
    /// which system.
    pub fn view(&self, node: &str) -> serde_json::Value {
        serde_json::json!({
            "node": node,
            "connected": self.connected.load(Ordering::Relaxed),
            "connects": self.connects.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
            "writable": self.writable.load(Ordering::Relaxed),
            "receipts": self.receipts.view(),
            "correlations": self.correlations.view(),
            "holders": &**self.holders.load(),
        })
    }

    /// What `/healthz` says of the cluster: connected, taking receipts, and if not,
    /// what that means for traffic.
    pub fn health(&self) -> serde_json::Value {
        let connected = self.connected.load(Ordering::Relaxed);
        let writable = self.writable.load(Ordering::Relaxed);
        let trouble = match (connected, writable) {
            (true, true) => None,
            (false, _) => Some("no connection to NATS: receipts of systems bound elsewhere are refused 503"),
            (true, false) => {
                Some("the receipts stream has no quorum: receipts of systems bound elsewhere are refused 503")
            }
        };
        serde_json::json!({ "connected": connected, "writable": writable, "trouble": trouble })
    }

    /// The boxes holding a bind of `system`.
    pub fn holders_of(&self, system: &str) -> Vec<String> {
        self.holders.load().iter().filter(|h| h.system == system).map(|h| h.node.clone()).collect()
    }
}

/// Starts the cluster thread, taking what the workers hand over through `intake`
/// (the sender is in `shared.cluster`); it runs until `stop`.
pub fn start(
    config: ClusterConfig,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    intake: std::sync::mpsc::Receiver<ClusterOp>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("iwf-cluster".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cluster: no runtime: {e}; this box stays out of the cluster");
                return;
            }
        };
        let mut receipts = receipts::Receipts::new(intake, Arc::clone(&registry.receipts));
        runtime.block_on(run(&config, &shared, &registry, &mut receipts, &stop));
    })
}

/// How often the thread looks at its intake and the cores' answers, at most (it also
/// wakes for JetStream's). The workers do not wake it: they are never made to wait.
const TICK: Duration = Duration::from_millis(2);

/// Connects, keeps the registry, and connects again after a loss, until `stop`.
async fn run(
    config: &ClusterConfig,
    shared: &Arc<Shared>,
    registry: &Registry,
    receipts: &mut receipts::Receipts,
    stop: &AtomicBool,
) {
    // What was last said of a failure: each new one is said once, not each retry.
    let mut said = String::new();
    // Every key seen, with when it was last refreshed: kept across sessions, so what
    // this box knows survives a reconnect (entries still age out by their life).
    let mut seen: BTreeMap<String, (Holder, Instant)> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let ended = session(config, shared, registry, receipts, stop, &mut seen).await;
        set_writable(shared, registry, false);
        match ended {
            Ok(()) => break,
            Err(e) => {
                registry.connected.store(false, Ordering::Relaxed);
                registry.errors.fetch_add(1, Ordering::Relaxed);
                if e != said {
                    tracing::warn!(servers = ?config.servers, "cluster: {e}; retrying every second");
                    said = e;
                }
            }
        }
        // Meanwhile what the workers hand over is answered at once (503: retry).
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            receipts.refuse_intake(shared);
            receipts.tick(shared).await;
            pause(Duration::from_millis(20), stop).await;
        }
    }
    receipts.refuse_intake(shared);
    receipts.leave().await;
}

/// A counter as the metrics and the admin API show it: its key in `GET /v1/cluster`,
/// its metric's name and help, its value.
struct Counter<'a>(&'static str, &'static str, &'static str, &'a AtomicU64);

fn render_counters(out: &mut crate::control::metrics::MetricsWriter, counters: &[Counter<'_>]) {
    for Counter(_, name, help, c) in counters {
        let _ = out.counter(name, help, &[], c.load(Ordering::Relaxed));
    }
}

fn view_counters(counters: &[Counter<'_>]) -> serde_json::Map<String, serde_json::Value> {
    counters.iter().map(|Counter(key, _, _, c)| ((*key).to_string(), c.load(Ordering::Relaxed).into())).collect()
}

/// Tells a waiter (a core's ring; a full one is tried again for 100 ms at most: the core
/// drains it every poll, and the thread must get back to its NATS connection).
fn complete(shared: &Shared, token: u64, outcome: Outcome) {
    let until = Instant::now() + Duration::from_millis(100);
    if !shared.complete_waiting(token, outcome, || Instant::now() >= until) {
        tracing::error!(token, "cluster: a core's completion ring stayed full; its waiter times out");
    }
}

/// Whether receipts for systems bound elsewhere can be handed to the cluster.
fn set_writable(shared: &Shared, registry: &Registry, on: bool) {
    registry.writable.store(on, Ordering::Relaxed);
    if let Some(link) = shared.cluster.get() {
        link.writable.store(on, Ordering::Relaxed);
    }
}

async fn pause(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(TICK.min(until.saturating_duration_since(Instant::now()))).await;
    }
}

/// The connection's options: name, authentication, TLS.
fn options(config: &ClusterConfig) -> Result<async_nats::ConnectOptions, String> {
    let read =
        |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| format!("{path}: {e}"));
    let mut o = async_nats::ConnectOptions::new()
        .name(format!("iwf {}", config.node))
        // The client fails over between the servers by itself; what it cannot do in
        // time fails the session here, which starts over.
        .connection_timeout(Duration::from_secs(2));
    o = match &config.auth {
        ClusterAuth::None => o,
        ClusterAuth::User { user, password_file } => o.user_and_password(user.clone(), read(password_file)?),
        ClusterAuth::Token { token_file } => o.token(read(token_file)?),
    };
    if let Some(ca) = &config.tls_ca_file {
        o = o.require_tls(true).add_root_certificates(ca.into());
    }
    if let Some((cert, key)) = &config.tls_client {
        o = o.add_client_certificate(cert.into(), key.into());
    }
    Ok(o)
}

/// A KV bucket (the registry's, the correlations'), made if missing, its entries living
/// `life`. On nats-server 2.9 (Debian 12) async-nats' `create_key_value` fails reading
/// the account (it expects fields 2.10.8 added), so the bucket's stream is made as a KV
/// bucket's own would be and then opened.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    life: Duration,
    duplicates: Duration,
    replicas: u8,
) -> Result<kv::Store, String> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: life,
        // JetStream wants the duplicate window within max_age.
        duplicate_window: duplicates.min(life),
        storage: stream::StorageType::File,
        num_replicas: usize::from(replicas),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("bucket {name}: {e}"))?;
    js.get_key_value(name).await.map_err(|e| format!("bucket {name}: {e}"))
}

/// The legacy systems this box holds receiving binds for: (id, binds).
fn held(shared: &Shared) -> Vec<(u16, u32)> {
    shared.lanes.load().lanes().iter().filter(|l| l.binds() > 0).map(|l| (l.system().0, l.binds())).collect()
}

/// One connection's life: announce this box's binds every heartbeat, watch the others',
/// publish the receipts handed over, take those of the systems held here. `Ok` when
/// stopped, `Err` when the connection, the bucket or the stream failed.
async fn session(
    config: &ClusterConfig,
    shared: &Arc<Shared>,
    registry: &Registry,
    receipts: &mut receipts::Receipts,
    stop: &AtomicBool,
    seen: &mut BTreeMap<String, (Holder, Instant)>,
) -> Result<(), String> {
    let client = options(config)?.connect(config.servers.clone()).await.map_err(|e| format!("connect: {e}"))?;
    // No waiting for publish permits: the thread must keep answering the cores, so a
    // publish beyond the bound is refused (503) instead.
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(receipts::PUBLISHING_MAX)
        .backpressure_on_inflight(false)
        .build(client.clone());
    let life = config.entry_life();
    let kv = bucket(&js, &config.binds_bucket, life, life.min(Duration::from_secs(120)), config.replicas).await?;
    let mut watch = kv.watch_all().await.map_err(|e| format!("watch {}: {e}", config.binds_bucket))?;
    let validity = Duration::from_secs(shared.provision.load().converged.message_validity_s.max(60));
    // The correlations live as long as a message is valid; JetStream keeps a
    // duplicate window's ids in memory, so that window stays short.
    let correlations = correlations::Correlations {
        kv: bucket(&js, &config.correlations_bucket, validity, Duration::from_secs(60), config.replicas).await?,
        node: config.node.clone(),
        stats: Arc::clone(&registry.correlations),
        shared: Arc::clone(shared),
    };
    let mut rs = receipts::Session::open(&js, config, validity, correlations);
    // What was seen before an outage was not refreshed during it (no box could write):
    // it gets a new life from now, and goes only if not refreshed within it.
    for (_, at) in seen.values_mut() {
        *at = Instant::now();
    }
    registry.connected.store(true, Ordering::Relaxed);
    registry.connects.fetch_add(1, Ordering::Relaxed);
    tracing::info!(node = %config.node, "cluster: connected; bind registry in bucket {}, receipts in stream {}", config.binds_bucket, config.receipts_stream);
    let ended = connected(config, shared, registry, receipts, &mut rs, &kv, &mut watch, stop, seen).await;
    rs.close(receipts, shared);
    ended
}

/// The loop of a connected session.
#[allow(clippy::too_many_arguments)]
async fn connected(
    config: &ClusterConfig,
    shared: &Shared,
    registry: &Registry,
    receipts: &mut receipts::Receipts,
    rs: &mut receipts::Session,
    kv: &kv::Store,
    watch: &mut kv::Watch,
    stop: &AtomicBool,
    seen: &mut BTreeMap<String, (Holder, Instant)>,
) -> Result<(), String> {
    let heartbeat = Duration::from_secs(config.heartbeat_s);
    // Keys this box put.
    let mut announced: BTreeSet<String> = BTreeSet::new();
    let mut next = Instant::now();
    // Whether the last heartbeat's registry write failed (said once until one works).
    let mut failing = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return leave(kv, &announced).await;
        }
        if let Some(on) = rs.probe() {
            if on != registry.writable.load(Ordering::Relaxed) {
                tracing::warn!("cluster: the receipts stream {} receipts", if on { "takes" } else { "does not take" });
            }
            set_writable(shared, registry, on);
        }
        if Instant::now() >= next {
            next = Instant::now() + heartbeat;
            // A write that fails (JetStream electing a leader: seconds) is tried again
            // at the next heartbeat on the same connection; making the session again
            // would wait out the elections of every bucket and stream it opens.
            if let Err(e) = announce(config, shared, kv, &mut announced).await {
                registry.errors.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::warn!("cluster: {e}; trying again every heartbeat");
                }
                failing = true;
            } else {
                failing = false;
            }
            seen.retain(|_, (_, at)| at.elapsed() < config.entry_life());
            let holders: Vec<Holder> = seen.values().map(|(h, _)| h.clone()).collect();
            registry.holders.store(Arc::new(holders));
            let ids: Vec<u16> = held(shared).iter().map(|&(id, _)| id).collect();
            rs.pull_for(&ids, shared);
        }
        rs.publish(receipts, shared).await;
        receipts.tick(shared).await;
        // Whichever comes first: JetStream's answer to a publish, a receipt taken, a
        // registry change, or the tick.
        tokio::select! {
            biased;
            event = rs.next(TICK, receipts.has_room()) => match event {
                Some(receipts::Event::Acked(token, at, r)) => rs.acked(receipts, shared, token, at, r),
                Some(receipts::Event::Taken(system, m)) => receipts.take(shared, system, m).await,
                None => {}
            },
            entry = watch.next() => match entry {
                None => return Err("the registry's watch ended".into()),
                Some(Err(e)) => return Err(format!("watch: {e}")),
                Some(Ok(entry)) => match entry.operation {
                    kv::Operation::Put => {
                        if let Ok(h) = serde_json::from_slice::<Holder>(&entry.value) {
                            seen.insert(entry.key, (h, Instant::now()));
                        }
                    }
                    kv::Operation::Delete | kv::Operation::Purge => {
                        seen.remove(&entry.key);
                    }
                },
            },
        }
    }
}

/// Leaving: the others should not wait for this box's entries to age out. Within a
/// few seconds, though: with JetStream stalled each delete could wait the client's
/// request timeout, and a stop must not hang on it.
async fn leave(kv: &kv::Store, announced: &BTreeSet<String>) -> Result<(), String> {
    let leave = async {
        for key in announced {
            let _ = kv.delete(key).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), leave).await;
    Ok(())
}

/// One heartbeat of the registry: each system held here put, each no longer held deleted.
async fn announce(
    config: &ClusterConfig,
    shared: &Shared,
    kv: &kv::Store,
    announced: &mut BTreeSet<String>,
) -> Result<(), String> {
    let provision = shared.provision.load();
    let holding: BTreeMap<&str, u32> =
        held(shared).into_iter().filter_map(|(id, binds)| Some((provision.system(id)?.name.as_str(), binds))).collect();
    for (&system, &binds) in &holding {
        let key = format!("{system}.{}", config.node);
        let h = Holder { system: system.to_string(), node: config.node.clone(), binds };
        let value = serde_json::to_vec(&h).map_err(|e| e.to_string())?;
        kv.put(&key, value.into()).await.map_err(|e| format!("put {key}: {e}"))?;
        announced.insert(key);
    }
    let gone: Vec<String> =
        announced.iter().filter(|k| !holding.keys().any(|s| **k == format!("{s}.{}", config.node))).cloned().collect();
    for key in gone {
        kv.delete(&key).await.map_err(|e| format!("delete {key}: {e}"))?;
        announced.remove(&key);
    }
    Ok(())
}
