//! iwf — an interworking function between a SIP-based converged messaging core
//! (SIP MESSAGE, CPIM, IMDN) and legacy message systems (SMPP 3.4 / 5.0).
//!
//! Layout:
//! - [`wire`]: sans-IO, zero-copy codecs (SIP, CPIM, IMDN, SMPP, SMS text);
//! - [`tag`]: the authenticated legacy-system tag carried as `imdn.Message-ID`;
//! - [`interwork`]: the exchange unit's conversions between the two worlds;
//! - [`session`]: sans-IO state machines (SIP transactions, SMPP sessions);
//! - [`route`]: per-exchange lanes, exchange selection, correlation, the durable store;
//! - [`control`]: configuration (the `[tag]` keys; provisioning grows here);
//! - [`dataplane`]: everything that touches DPDK (EAL, ports, per-core pipelines, TCP);
//! - [`inspect`]: the operator's dissector behind `iwf inspect`.
//!
//! Only `dataplane::dpdk` and the `dpdk-sys` crate may touch DPDK or use `unsafe`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

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
