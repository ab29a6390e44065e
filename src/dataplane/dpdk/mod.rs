//! The one room of the crate where `unsafe` lives: the thin, safe layer over
//! `dpdk-sys` (and the one POSIX call the appliance makes). Every `unsafe` block here
//! states the invariant it relies on; everything above it is safe code.
//!
//! * [`eal`]: EAL start and cleanup, lcore launch, the last error;
//! * [`mbuf`]: [`Mbuf`](mbuf::Mbuf), an owned packet buffer, and the pool it comes from
//!   (a pool outlives its mbufs: it is not freed while one is out);
//! * [`port`]: an ethdev port, its link and counters, and the RX/TX burst API
//!   ([`RxBurst`](port::RxBurst), [`TxBatch`](port::TxBatch));
//! * [`ring`]: single-producer / single-consumer mbuf rings with typed, non-`Copy` ends;
//! * [`telemetry`]: iwf's commands on DPDK's telemetry socket;
//! * [`signal`]: SIGINT/SIGTERM set a stop flag.
#![allow(unsafe_code)]

pub mod eal;
pub mod mbuf;
pub mod port;
pub mod ring;
pub mod signal;
pub mod telemetry;
