/* iwf dpdk-sys shim: DPDK's static inline functions and macros have no symbol to link
 * against, so each one used from Rust gets a real function here, prefixed `iwfsh_`.
 * Compiled with exactly the cflags `pkg-config --cflags libdpdk` prints (its -march is
 * needed by the inline code). Keep it small: only what dataplane/ calls. */
#ifndef IWF_DPDK_SHIM_H
#define IWF_DPDK_SHIM_H

#include <stdint.h>
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_telemetry.h>

uint16_t iwfsh_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t iwfsh_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

struct rte_mbuf *iwfsh_pktmbuf_alloc(struct rte_mempool *mp);
int iwfsh_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void iwfsh_pktmbuf_free(struct rte_mbuf *m);
char *iwfsh_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *iwfsh_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *iwfsh_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int iwfsh_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t iwfsh_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t iwfsh_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t iwfsh_mbuf_refcnt_read(const struct rte_mbuf *m);
uint16_t iwfsh_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value);

int iwfsh_errno(void);
unsigned iwfsh_lcore_id(void);

unsigned iwfsh_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned iwfsh_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned iwfsh_ring_count(const struct rte_ring *r);

/* Function-like macros (RTE_BIT64) bindgen cannot evaluate. */
uint64_t iwfsh_rss_hf_ip_udp_tcp(void);
uint64_t iwfsh_dev_tx_offload_mbuf_fast_free(void);

#endif
