//! Raw FFI to the system DPDK, nothing else.
//!
//! * Found with `pkg-config libdpdk` and linked shared; EAL loads the drivers at run time.
//! * Bindings come from bindgen over a narrow allowlist (EAL and lcores, mempools and
//!   mbufs, ethdev configuration, queues, stats and link, rings). DPDK's packed wire
//!   header structs are opaque: parse headers with your own views.
//! * DPDK's static inline functions and macros are wrapped by a small C shim (`iwfsh_*`)
//!   and re-exported below under their DPDK names.
//!
//! Supported: DPDK 22.11 LTS (Debian 12); later LTS releases (23.11, 24.11) are expected
//! to build, since nothing here depends on a struct layout that bindgen does not read
//! from the installed headers.
#![no_std]
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code)]
#![allow(clippy::all, missing_docs, unsafe_op_in_unsafe_fn)]

mod bindings {
    #![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code, improper_ctypes)]
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}
pub use bindings::*;

use core::ffi::{c_char, c_int, c_uint, c_void};

/// The DPDK version this crate was built against (`pkg-config --modversion libdpdk`).
pub const DPDK_VERSION: &str = env!("IWF_DPDK_VERSION");

/// `rte_eth_rx_burst` (static inline in `rte_ethdev.h`).
#[inline]
pub unsafe fn rte_eth_rx_burst(port_id: u16, queue_id: u16, rx_pkts: *mut *mut rte_mbuf, nb_pkts: u16) -> u16 {
    iwfsh_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts)
}

/// `rte_eth_tx_burst` (static inline in `rte_ethdev.h`).
#[inline]
pub unsafe fn rte_eth_tx_burst(port_id: u16, queue_id: u16, tx_pkts: *mut *mut rte_mbuf, nb_pkts: u16) -> u16 {
    iwfsh_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts)
}

/// `rte_pktmbuf_alloc`.
#[inline]
pub unsafe fn rte_pktmbuf_alloc(mp: *mut rte_mempool) -> *mut rte_mbuf {
    iwfsh_pktmbuf_alloc(mp)
}

/// `rte_pktmbuf_alloc_bulk`: all `count` or none (returns 0 on success).
#[inline]
pub unsafe fn rte_pktmbuf_alloc_bulk(mp: *mut rte_mempool, mbufs: *mut *mut rte_mbuf, count: c_uint) -> c_int {
    iwfsh_pktmbuf_alloc_bulk(mp, mbufs, count)
}

/// `rte_pktmbuf_free` (the whole chain).
#[inline]
pub unsafe fn rte_pktmbuf_free(m: *mut rte_mbuf) {
    iwfsh_pktmbuf_free(m)
}

/// `rte_pktmbuf_append`: grows the data at the tail; null when there is no room.
#[inline]
pub unsafe fn rte_pktmbuf_append(m: *mut rte_mbuf, len: u16) -> *mut c_char {
    iwfsh_pktmbuf_append(m, len)
}

/// `rte_pktmbuf_prepend`: grows the data at the head; null when there is no room.
#[inline]
pub unsafe fn rte_pktmbuf_prepend(m: *mut rte_mbuf, len: u16) -> *mut c_char {
    iwfsh_pktmbuf_prepend(m, len)
}

/// `rte_pktmbuf_adj`: removes `len` bytes at the head; null when `len` exceeds the data.
#[inline]
pub unsafe fn rte_pktmbuf_adj(m: *mut rte_mbuf, len: u16) -> *mut c_char {
    iwfsh_pktmbuf_adj(m, len)
}

/// `rte_pktmbuf_trim`: removes `len` bytes at the tail; -1 when `len` exceeds the data.
#[inline]
pub unsafe fn rte_pktmbuf_trim(m: *mut rte_mbuf, len: u16) -> c_int {
    iwfsh_pktmbuf_trim(m, len)
}

/// `rte_pktmbuf_headroom`.
#[inline]
pub unsafe fn rte_pktmbuf_headroom(m: *const rte_mbuf) -> u16 {
    iwfsh_pktmbuf_headroom(m)
}

/// `rte_pktmbuf_tailroom`.
#[inline]
pub unsafe fn rte_pktmbuf_tailroom(m: *const rte_mbuf) -> u16 {
    iwfsh_pktmbuf_tailroom(m)
}

/// `rte_pktmbuf_mtod` (a macro): the first data byte, `buf_addr + data_off`.
#[inline]
pub unsafe fn rte_pktmbuf_mtod(m: *const rte_mbuf) -> *mut u8 {
    ((*m).buf_addr as *mut u8).add(usize::from((*m).data_off))
}

/// `rte_mbuf_refcnt_read`.
#[inline]
pub unsafe fn rte_mbuf_refcnt_read(m: *const rte_mbuf) -> u16 {
    iwfsh_mbuf_refcnt_read(m)
}

/// `rte_mbuf_refcnt_update`: adds `value`, returns the new count.
#[inline]
pub unsafe fn rte_mbuf_refcnt_update(m: *mut rte_mbuf, value: i16) -> u16 {
    iwfsh_mbuf_refcnt_update(m, value)
}

/// `rte_errno` (a per-lcore thread-local behind a macro).
#[inline]
pub unsafe fn rte_errno() -> c_int {
    iwfsh_errno()
}

/// `rte_lcore_id` (a per-lcore thread-local behind a macro); `u32::MAX`
/// (`LCORE_ID_ANY`) on a thread that is not an EAL lcore.
#[inline]
pub unsafe fn rte_lcore_id() -> c_uint {
    iwfsh_lcore_id()
}

/// `rte_ring_enqueue_burst` (no free-space report).
#[inline]
pub unsafe fn rte_ring_enqueue_burst(r: *mut rte_ring, objs: *const *mut c_void, n: c_uint) -> c_uint {
    iwfsh_ring_enqueue_burst(r, objs, n)
}

/// `rte_ring_dequeue_burst` (no remaining-count report).
#[inline]
pub unsafe fn rte_ring_dequeue_burst(r: *mut rte_ring, objs: *mut *mut c_void, n: c_uint) -> c_uint {
    iwfsh_ring_dequeue_burst(r, objs, n)
}

/// `rte_ring_count`.
#[inline]
pub unsafe fn rte_ring_count(r: *const rte_ring) -> c_uint {
    iwfsh_ring_count(r)
}

/// `RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP` (built from a function-like macro).
#[inline]
pub fn rss_hf_ip_udp_tcp() -> u64 {
    // SAFETY: a pure function of compile-time constants.
    unsafe { iwfsh_rss_hf_ip_udp_tcp() }
}

/// `RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE`.
#[inline]
pub fn tx_offload_mbuf_fast_free() -> u64 {
    // SAFETY: a pure function of compile-time constants.
    unsafe { iwfsh_dev_tx_offload_mbuf_fast_free() }
}
