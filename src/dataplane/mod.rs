//! The packet path: the per-core workers over DPDK, and everything they drive.
//!
//! ```text
//!  port legacy ─┐ queue q  ┌──────────────────── lcore (worker q) ─────────────────────┐
//!  port conv  ──┼────────► │ RxBurst → Mbuf → Host::receive(&mut [u8])                  │──► TxBatch
//!               │          │   ARP · ICMP echo · IPv4 · UDP → SipUdp  · TCP → TcpStack  │
//!               │          │        SipUdp / TcpStack ──&mut──► the worker's engine      │
//!               │          │        (crate::flow::Flows: owned by the worker, no lock)  │
//!               │          └───────────────── counters (per port, per queue) ───────────┘
//!  control thread (core_affinity, not an EAL lcore): link state, counters, reload; it
//!  reaches the workers only through published snapshots and the lanes' rings
//! ```
//!
//! * [`host`] and [`arp`]: the IP host each port runs, over plain byte slices (sans-IO);
//! * [`sip`]: SIP over UDP per worker (server and client transactions, the UAS policy,
//!   the next hop's OPTIONS keep-alive), over the payload slice of the RX mbuf;
//! * [`tcp`]: one smoltcp interface per worker and port over the worker's mbufs, flow
//!   ownership with per-core-pair rings, SMPP sessions (server and client role) and SIP
//!   over TCP on its sockets;
//! * [`counters`]: per-port, per-queue, per-drop-reason counters, one writer each;
//! * [`metrics`]: the counters as Prometheus metrics for the admin endpoint;
//! * [`dpdk`]: the thin safe layer over `dpdk-sys` (EAL, mbufs, ports with their burst
//!   API, rings, telemetry): the only `unsafe` code of the crate;
//! * [`worker`]: the per-core loop that ties them together;
//! * [`app`]: `run(config)`, the appliance's main loop and orderly shutdown.
//!
//! Only [`dpdk`] may use `unsafe`; each unsafe block there states why it holds.

pub mod admission;
pub mod app;
pub mod arp;

pub mod counters;
pub mod dpdk;
pub mod host;
pub mod liveness;
pub mod metrics;
pub mod preflight;
pub mod sip;
pub mod tcp;
pub mod worker;

pub use app::{run, run_with, DataplaneError};
