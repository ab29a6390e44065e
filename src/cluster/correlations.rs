//! Converged → legacy correlations shared by the boxes: a JetStream KV bucket
//! (`correlations_bucket`, `replicas` copies, entries living as long as a message is
//! valid).
//!
//! Keys (a box's store keys are its own, so each is under its node's name):
//! - `m.<node>.<key>`: the message's record (as the store encodes it), written once
//!   durable in the box's store and before its parts go;
//! - `i.<system>.<id>`: `<node>.<key>.<part>`, the part an SMSC id was given to;
//! - `p.<node>.<key>.<part>`: that id, so a box that finds the message learns every
//!   part's id known so far.
//!
//! A box whose bind brings a receipt for an id it knows no message for asks here; the
//! answer goes to the core that holds the receipt. The SMSC may send a receipt before
//! the box that sent the message has written the id (its resp and the receipt cross),
//! so a miss is asked again for a few seconds before it counts as not found.
use crate::flow::cluster::{Found, UNAVAILABLE};
use crate::flow::{Outcome, Shared};
use crate::interwork::converged_to_legacy::{canonical_id, CanonicalId, IdOrigin};
use crate::interwork::IdCanonicalisation;
use crate::route::store::DurableCorrelation;
use async_nats::jetstream::kv;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a miss is asked again: after each of these pauses.
const FIND_RETRIES: [Duration; 5] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Counters of the shared correlations (in [`super::Registry`]).
#[derive(Debug, Default)]
pub struct CorrelationStats {
    /// Records written to the bucket.
    pub records_put: AtomicU64,
    /// SMSC ids written to the bucket.
    pub ids_put: AtomicU64,
    /// Writes that failed (their waiters answered 503).
    pub put_failed: AtomicU64,
    /// Receipts of unknown ids asked about.
    pub finds: AtomicU64,
    /// Of those, found (another box's message).
    pub found: AtomicU64,
    /// Of those, not found after the retries (the receipt stays parked).
    pub not_found: AtomicU64,
}

impl CorrelationStats {
    /// Each counter once, for the metrics and the admin API.
    fn counters(&self) -> [super::Counter<'_>; 6] {
        use super::Counter as C;
        [
            C(
                "records_put",
                "iwf_cluster_correlations_put_total",
                "Correlation records written to the cluster",
                &self.records_put,
            ),
            C("ids_put", "iwf_cluster_correlation_ids_put_total", "SMSC ids written to the cluster", &self.ids_put),
            C(
                "put_failed",
                "iwf_cluster_correlations_put_failed_total",
                "Correlation writes that failed (answered 503)",
                &self.put_failed,
            ),
            C(
                "finds",
                "iwf_cluster_correlation_finds_total",
                "SMSC receipts of unknown ids asked of the cluster",
                &self.finds,
            ),
            C("found", "iwf_cluster_correlations_found_total", "Of those, messages another box sent", &self.found),
            C(
                "not_found",
                "iwf_cluster_correlations_not_found_total",
                "Of those, not found (the receipt stays parked)",
                &self.not_found,
            ),
        ]
    }

    pub(super) fn render(&self, out: &mut crate::control::metrics::MetricsWriter) {
        super::render_counters(out, &self.counters());
    }

    /// For `GET /v1/cluster`.
    pub(super) fn view(&self) -> serde_json::Value {
        serde_json::Value::Object(super::view_counters(&self.counters()))
    }
}

/// An id as a KV key token (ids are printable ASCII; keys take fewer characters).
fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16);
    s.chunks(2)
        .map(|p| match p {
            [a, b] => Some((digit(*a)? * 16 + digit(*b)?) as u8),
            _ => None,
        })
        .collect()
}

/// The shared correlations of one connection.
#[derive(Clone)]
pub struct Correlations {
    pub(super) kv: kv::Store,
    pub(super) node: String,
    pub(super) stats: Arc<CorrelationStats>,
    pub(super) shared: Arc<Shared>,
}

impl Correlations {
    /// Writes message `key`'s record; its waiter hears whether it is in the bucket.
    pub fn put_record(&self, key: u64, record: &DurableCorrelation, token: u64) {
        let this = self.clone();
        let value = record.encode();
        tokio::spawn(async move {
            let put = match value {
                Ok(v) => this.kv.put(format!("m.{}.{key:x}", this.node), v.into()).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            this.answer(token, put.map(|_| ()), &this.stats.records_put);
        });
    }

    /// Writes that part `part` of message `key` has SMSC id `id`.
    pub fn put_id(&self, system: u16, id: CanonicalId, key: u64, part: u8, token: u64) {
        let this = self.clone();
        let Some(name) = self.shared.provision.load().system(system).map(|l| l.name.clone()) else {
            return self.answer(token, Err("unknown system".into()), &self.stats.ids_put);
        };
        tokio::spawn(async move {
            let id = hex(id.as_bytes());
            let at = format!("{}.{key:x}.{part}", this.node);
            let put = async {
                this.kv.put(format!("i.{name}.{id}"), at.clone().into_bytes().into()).await?;
                this.kv.put(format!("p.{at}"), id.into_bytes().into()).await
            };
            let put = put.await.map(|_| ()).map_err(|e| e.to_string());
            this.answer(token, put, &this.stats.ids_put);
        });
    }

    /// Message `key` is done with.
    pub fn remove(&self, key: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.kv.delete(format!("m.{}.{key:x}", this.node)).await;
        });
    }

    /// Looks for the message another box sent under `system`'s SMSC id `id`, for core
    /// `core`.
    pub fn find(&self, system: u16, id: CanonicalId, core: u16) {
        let this = self.clone();
        let Some(name) = self.shared.provision.load().system(system).map(|l| l.name.clone()) else { return };
        self.stats.finds.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            for pause in FIND_RETRIES.iter().copied().chain([Duration::ZERO]) {
                if let Some(restorable) = this.lookup(&name, &id).await {
                    this.stats.found.fetch_add(1, Ordering::Relaxed);
                    let found: Box<Found> = Box::new((restorable, system, id));
                    if let Some(q) = this.shared.cluster_found.get(usize::from(core)) {
                        // A full ring (the core is far behind): the receipt stays parked.
                        let _ = q.push(found);
                    }
                    return;
                }
                if pause.is_zero() {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            this.stats.not_found.fetch_add(1, Ordering::Relaxed);
        });
    }

    async fn lookup(&self, system: &str, id: &CanonicalId) -> Option<crate::route::store::Restorable> {
        let at = self.kv.get(format!("i.{system}.{}", hex(id.as_bytes()))).await.ok()??;
        let at = std::str::from_utf8(&at).ok()?;
        let (message, _part) = at.rsplit_once('.')?;
        let (_, key) = message.split_once('.')?;
        let key = u64::from_str_radix(key, 16).ok()?;
        let record = DurableCorrelation::decode(&self.kv.get(format!("m.{message}")).await.ok()??).ok()?;
        let mut ids = Vec::new();
        for part in 1..=record.segments {
            let Ok(Some(v)) = self.kv.get(format!("p.{message}.{part}")).await else { continue };
            let Some(raw) = unhex(&v) else { continue };
            if let Ok(id) = canonical_id(&raw, IdCanonicalisation::Exact, IdOrigin::Receipt) {
                ids.push((part, id));
            }
        }
        Some((key, record, ids))
    }

    fn answer(&self, token: u64, put: Result<(), String>, counter: &AtomicU64) {
        match put {
            Ok(()) => {
                counter.fetch_add(1, Ordering::Relaxed);
                super::complete(&self.shared, token, Outcome::Stored);
            }
            Err(e) => {
                self.stats.put_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("cluster: a correlation write failed: {e}");
                super::complete(&self.shared, token, UNAVAILABLE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_go_into_keys_and_back() {
        for id in [&b"1a2B"[..], b"000hf30astp9iq0007", b"a.b*c d", b""] {
            assert_eq!(super::unhex(super::hex(id).as_bytes()).as_deref(), Some(id));
        }
        assert!(super::hex(b"a.b*").bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(super::unhex(b"abc"), None);
        assert_eq!(super::unhex(b"zz"), None);
    }
}
