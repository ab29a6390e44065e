//! Raw FFI to the system DPDK.
//!
//! Empty until the packet-path issue: pkg-config `libdpdk`, bindgen with a narrow
//! allowlist and a C shim for the static inline functions land here (see
//! `../shared/DPDK-NOTES.md`). Nothing in the protocol core depends on this crate.
#![no_std]
