//! iwf — an interworking function between a SIP-based converged messaging core
//! (SIP MESSAGE, CPIM, IMDN) and legacy message systems (SMPP 3.4 / 5.0).
//!
//! Layout, bottom to top (a module names only those at or below its level):
//! - [`ids`]: the identities every layer names (legacy system, core, connection);
//! - [`wire`]: sans-IO, zero-copy codecs (SIP, CPIM, IMDN, SMPP, SMS text);
//! - [`tag`]: the authenticated legacy-system tag carried as `imdn.Message-ID`;
//! - [`session`]: sans-IO state machines (SIP transactions, SMPP sessions);
//! - [`interwork`]: the exchange unit's conversions between the two worlds;
//! - [`route`]: per-exchange lanes, exchange selection, correlation, the durable store;
//! - [`control`]: all configuration, provisioning, reload, the admin endpoint, metrics;
//! - [`flow`]: the engine, one per worker and owned by it (sans-IO), and the store thread;
//! - [`cluster`]: this box's part of an iwf cluster on NATS JetStream (its own thread);
//! - [`dataplane`]: the packet path: workers, the IP host, SIP/UDP, TCP, and in
//!   `dataplane::dpdk` the thin layer over DPDK;
//! - [`inspect`]: the operator's dissector behind `iwf inspect`.
//!
//! A packet: `RxBurst` → `Host` → `SipUdp` or the TCP stack's SMPP/SIP connection →
//! the worker's engine (`&mut`, no lock) → `interwork` and `route` → the engine's
//! per-port outbox → the service that asked → `TxBatch`.
//!
//! Only `dataplane::dpdk` and the `dpdk-sys` crate may touch DPDK or use `unsafe`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cluster;
pub mod control;
pub mod dataplane;
pub mod flow;
pub mod ids;
pub mod inspect;
pub mod interwork;
pub mod route;
pub mod session;
pub mod tag;
pub mod wire;

/// The message a panic carried (`panic!` with a literal or a formatted string), for
/// the places that catch one and must say why: a worker that died, a file redb
/// refused.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload.downcast_ref::<&str>().map(|s| (*s).to_owned()).or_else(|| payload.downcast_ref::<String>().cloned())
}
