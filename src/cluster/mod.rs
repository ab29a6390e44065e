//! This box's part of an iwf service on NATS JetStream (`[cluster]`): for now the bind
//! registry, which tells every box where each legacy system can be reached.
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
use crate::control::cluster::{ClusterAuth, ClusterConfig};
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
            "holders": &**self.holders.load(),
        })
    }

    /// The boxes holding a bind of `system`.
    pub fn holders_of(&self, system: &str) -> Vec<String> {
        self.holders.load().iter().filter(|h| h.system == system).map(|h| h.node.clone()).collect()
    }
}

/// Starts the cluster thread; it runs until `stop`.
pub fn start(
    config: ClusterConfig,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
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
        runtime.block_on(run(&config, &shared, &registry, &stop));
    })
}

/// How often the thread looks at `stop` while it waits.
const TICK: Duration = Duration::from_millis(100);

/// Connects, keeps the registry, and connects again after a loss, until `stop`.
async fn run(config: &ClusterConfig, shared: &Shared, registry: &Registry, stop: &AtomicBool) {
    let mut said = false;
    // Every key seen, with when it was last refreshed: kept across sessions, so what
    // this box knows survives a reconnect (entries still age out by their life).
    let mut seen: BTreeMap<String, (Holder, Instant)> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        match session(config, shared, registry, stop, &mut seen).await {
            Ok(()) => break,
            Err(e) => {
                registry.connected.store(false, Ordering::Relaxed);
                registry.errors.fetch_add(1, Ordering::Relaxed);
                // Said once per outage, not once per retry.
                if !said {
                    tracing::warn!(servers = ?config.servers, "cluster: {e}; retrying every second");
                }
                said = true;
            }
        }
        pause(Duration::from_secs(1), stop).await;
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

/// The registry's bucket, made if missing. On nats-server 2.9 (Debian 12) async-nats'
/// `create_key_value` fails reading the account (it expects fields 2.10.8 added), so
/// the bucket's stream is made as a KV bucket's own would be and then opened.
async fn bucket(js: &jetstream::Context, config: &ClusterConfig) -> Result<kv::Store, String> {
    let life = config.entry_life();
    let name = &config.binds_bucket;
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: life,
        // JetStream wants the duplicate window within max_age.
        duplicate_window: life.min(Duration::from_secs(120)),
        storage: stream::StorageType::File,
        num_replicas: usize::from(config.replicas),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("bucket {name}: {e}"))?;
    js.get_key_value(name.as_str()).await.map_err(|e| format!("bucket {name}: {e}"))
}

/// The legacy systems this box holds receiving binds for, with their counts.
fn held_here(shared: &Shared) -> BTreeMap<String, u32> {
    let provision = shared.provision.load();
    let lanes = shared.lanes.load();
    lanes
        .lanes()
        .iter()
        .filter(|l| l.binds() > 0)
        .filter_map(|l| provision.system(l.system().0).map(|s| (s.name.clone(), l.binds())))
        .collect()
}

/// One connection's life: announce this box's binds every heartbeat, watch the others'.
/// `Ok` when stopped, `Err` when the connection or the bucket failed.
async fn session(
    config: &ClusterConfig,
    shared: &Shared,
    registry: &Registry,
    stop: &AtomicBool,
    seen: &mut BTreeMap<String, (Holder, Instant)>,
) -> Result<(), String> {
    let client = options(config)?.connect(config.servers.clone()).await.map_err(|e| format!("connect: {e}"))?;
    let js = jetstream::new(client.clone());
    let kv = bucket(&js, config).await?;
    let mut watch = kv.watch_all().await.map_err(|e| format!("watch {}: {e}", config.binds_bucket))?;
    registry.connected.store(true, Ordering::Relaxed);
    registry.connects.fetch_add(1, Ordering::Relaxed);
    tracing::info!(node = %config.node, "cluster: connected; bind registry in bucket {}", config.binds_bucket);
    let heartbeat = Duration::from_secs(config.heartbeat_s);
    let life = config.entry_life();
    // Keys this box put.
    let mut announced: BTreeSet<String> = BTreeSet::new();
    let mut next = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            // Leaving: the others should not wait for the entries to age out. Within
            // a few seconds, though: with JetStream stalled each delete could wait the
            // client's request timeout, and a stop must not hang on it.
            let leave = async {
                for key in &announced {
                    let _ = kv.delete(key).await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(3), leave).await;
            return Ok(());
        }
        if Instant::now() >= next {
            next = Instant::now() + heartbeat;
            let held = held_here(shared);
            for (system, binds) in &held {
                let key = format!("{system}.{}", config.node);
                let h = Holder { system: system.clone(), node: config.node.clone(), binds: *binds };
                let value = serde_json::to_vec(&h).map_err(|e| e.to_string())?;
                kv.put(&key, value.into()).await.map_err(|e| format!("put {key}: {e}"))?;
                announced.insert(key);
            }
            let gone: Vec<String> = announced
                .iter()
                .filter(|k| !held.keys().any(|s| **k == format!("{s}.{}", config.node)))
                .cloned()
                .collect();
            for key in gone {
                kv.delete(&key).await.map_err(|e| format!("delete {key}: {e}"))?;
                announced.remove(&key);
            }
            seen.retain(|_, (_, at)| at.elapsed() < life);
            let holders: Vec<Holder> = seen.values().map(|(h, _)| h.clone()).collect();
            registry.holders.store(Arc::new(holders));
        }
        match tokio::time::timeout(TICK, watch.next()).await {
            Err(_) => {}
            Ok(None) => return Err("the registry's watch ended".into()),
            Ok(Some(Err(e))) => return Err(format!("watch: {e}")),
            Ok(Some(Ok(entry))) => match entry.operation {
                kv::Operation::Put => {
                    if let Ok(h) = serde_json::from_slice::<Holder>(&entry.value) {
                        seen.insert(entry.key, (h, Instant::now()));
                    }
                }
                kv::Operation::Delete | kv::Operation::Purge => {
                    seen.remove(&entry.key);
                }
            },
        }
    }
}
