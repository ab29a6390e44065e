//! What the workers and the store's thread hand to the cluster thread (`[cluster]`),
//! and how it answers them.
//!
//! In a cluster, a receipt for a legacy system this box holds no bind of does not wait
//! in this box's store: it is published to the cluster's receipts stream (JetStream,
//! replicated, a subject per system), and a box holding the system's binds takes it.
//! Its waiter hears [`Outcome::Stored`] once JetStream acknowledged the publish, or
//! [`Outcome::Answered`] 503 when the cluster cannot make it durable (no connection,
//! no quorum): the converged side retries, and nothing was acknowledged that could be
//! lost.
//!
//! Converged → legacy correlations are shared the same way: each record and each SMSC
//! id, once durable in the submitting box's store, goes into the cluster's
//! correlations bucket before the message's parts go; a box whose SMSC bind brings a
//! receipt for an id it knows no message for asks the cluster ([`ClusterOp::Find`]),
//! and applies the receipt to the message it gets back.
//!
//! The receipts a box takes from the stream go into their system's lane with tokens of
//! [`CLUSTER_ORIGIN`]: their completions come back through
//! [`Shared::cluster_completions`](super::Shared), and the cluster thread acknowledges
//! each to JetStream only then (after the legacy system's `*_resp`).
use super::{CorrelationWrite, Outcome};
use crate::interwork::converged_to_legacy::CanonicalId;
use crate::route::lane::LaneItem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

/// Origin of tokens the cluster thread waits on (receipts taken from the stream).
pub const CLUSTER_ORIGIN: u16 = u16::MAX - 1;

/// The answer a receipt's waiter hears when the cluster cannot take it.
pub const UNAVAILABLE: Outcome = Outcome::Answered(503, "Service Unavailable (the cluster cannot store it now)");

/// What the cluster thread is asked.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a lane item by value: no allocation per receipt
pub enum ClusterOp {
    /// Publish this receipt to its system's subject; its token completes with
    /// [`Outcome::Stored`] on JetStream's acknowledgement, [`UNAVAILABLE`] otherwise.
    Publish {
        /// The receipt and its waiter's token.
        item: LaneItem,
    },
    /// A correlation write durable in this box's store: into the cluster's
    /// correlations bucket too (an SMSC id there lets a receipt on any box find its
    /// message). A waiting token completes with [`Outcome::Stored`] once there,
    /// [`UNAVAILABLE`] if not.
    Correlation(CorrelationWrite),
    /// Core `core` holds an SMSC receipt with an id it knows no message for: the
    /// message another box sent under it, if any, comes back through
    /// [`Shared::cluster_found`](super::Shared).
    Find {
        /// The legacy system.
        system: u16,
        /// The canonical SMSC id.
        id: CanonicalId,
        /// The core that asks.
        core: u16,
    },
}

/// A correlation found in the cluster for a core's receipt: the message's store key,
/// its record and the SMSC ids of its parts known so far, and the id asked about.
pub type Found = (crate::route::store::Restorable, u16, CanonicalId);

/// The workers' way to the cluster thread.
#[derive(Debug)]
pub struct ClusterLink {
    /// Its intake.
    pub tx: Sender<ClusterOp>,
    /// Whether it can take receipts now (connected, and its last publish or probe of
    /// the receipts stream answered): while not, receipts for systems bound elsewhere
    /// are refused at once rather than queued toward a failing publish.
    pub writable: AtomicBool,
}

impl ClusterLink {
    /// A link through `tx`, not yet writable.
    pub fn new(tx: Sender<ClusterOp>) -> ClusterLink {
        ClusterLink { tx, writable: AtomicBool::new(false) }
    }

    /// Hands a receipt over; false when the cluster cannot take it now.
    pub fn publish(&self, item: LaneItem) -> bool {
        self.writable.load(Ordering::Relaxed) && self.tx.send(ClusterOp::Publish { item }).is_ok()
    }

    /// Hands anything else over (the cluster thread answers what it cannot do).
    pub fn send(&self, op: ClusterOp) -> bool {
        self.tx.send(op).is_ok()
    }
}
