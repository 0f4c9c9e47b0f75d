/*
 * The C shim between Switchyard's Swift code and DPDK 22.11.
 *
 * Two kinds of function live here:
 *  - extern set-up calls (EAL, mempools, ports, stats), implemented in
 *    shim.c, which keep DPDK's large configuration structs out of Swift;
 *  - static inline per-packet accessors (burst rx/tx, mbuf data pointer and
 *    length, prepend/adj, prefetch, rdtsc, the rx timestamp). Swift cannot
 *    see inside `struct rte_mbuf` (it is 64-byte aligned, which the importer
 *    drops), so every field the packet path needs has an accessor here; being
 *    inline they compile into the Swift caller with no call overhead.
 */
#ifndef SWITCHYARD_CDPDK_H
#define SWITCHYARD_CDPDK_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

#include <rte_config.h>
#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_pause.h>

/* ---------------------------------------------------------------- EAL */

/* rte_eal_init; returns the number of arguments consumed or -1. */
int sy_eal_init(int argc, char **argv);
int sy_eal_cleanup(void);
const char *sy_strerror_last(void);

unsigned sy_lcore_count(void);
unsigned sy_main_lcore(void);
/* Next enabled lcore after `prev` (pass UINT32_MAX... via -1 cast for the first), skipping main. */
unsigned sy_next_worker_lcore(unsigned prev);
unsigned sy_lcore_id(void);
int sy_socket_id(void);
int sy_launch(unsigned lcore, int (*fn)(void *), void *arg);
int sy_wait_lcore(unsigned lcore);

/* SIGINT/SIGTERM set a flag the workers poll; the handler does nothing else. */
void sy_install_signal_handlers(void);
extern volatile int sy_stop_requested;
static inline bool sy_should_stop(void) { return __atomic_load_n(&sy_stop_requested, __ATOMIC_RELAXED) != 0; }
static inline void sy_request_stop(void) { __atomic_store_n(&sy_stop_requested, 1, __ATOMIC_RELAXED); }

/* ---------------------------------------------------------------- pools and ports */

struct rte_mempool *sy_pktmbuf_pool_create(const char *name, unsigned n, unsigned cache,
                                           uint16_t data_room, int socket);
uint16_t sy_port_count(void);
/* Hot-plug a virtual device after EAL start (e.g. "net_tap0,iface=sy0");
 * its port id in *port. 0 on success. */
int sy_vdev_create(const char *devargs, const char *name, uint16_t *port);
bool sy_port_is_valid(uint16_t port);

struct sy_port_info {
    char driver[32];
    char name[64];
    uint16_t max_rx_queues;
    uint16_t max_tx_queues;
    uint8_t mac[6];
    bool rx_timestamp_capable;
    uint32_t max_rx_pktlen;
};
int sy_port_info(uint16_t port, struct sy_port_info *info);

/* Configure and start a port: nb_rxq/nb_txq queues of nb_rxd/nb_txd descriptors.
 * `rx_timestamp` asks for the rx timestamp offload (net_pcap provides it). */
int sy_port_setup(uint16_t port, uint16_t nb_rxq, uint16_t nb_txq, uint16_t nb_rxd,
                  uint16_t nb_txd, struct rte_mempool *pool, uint32_t max_pkt_len,
                  bool rx_timestamp, bool promiscuous);
int sy_port_stop_close(uint16_t port);

struct sy_port_stats {
    uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf;
};
int sy_port_stats(uint16_t port, struct sy_port_stats *out);

/* Offset of the rx timestamp dynamic field (-1 if not registered) and its flag. */
int sy_timestamp_field_offset(void);
uint64_t sy_timestamp_rx_flag(void);
/* Look the timestamp field up again (PMDs register it when the offload is enabled). */
int sy_timestamp_lookup(void);

/* RSS: the redirection table size (0 when the port has none), and programming
 * the key, hash types and RETA (best effort: returns nonzero when the PMD
 * refuses). `types` are RTE_ETH_RSS_* bits; `reta` maps entry -> queue. */
uint16_t sy_port_reta_size(uint16_t port);
int sy_port_rss_configure(uint16_t port, const uint8_t *key, uint8_t key_len, uint64_t types,
                          const uint16_t *reta, uint16_t reta_size);
uint64_t sy_rss_types_src_only(void);
uint64_t sy_rss_types_dst_only(void);
/* DPDK's own software Toeplitz over `len` 32-bit words (host order), for tests. */
uint32_t sy_softrss(const uint32_t *tuple, uint32_t len, const uint8_t *key);

/* Routes: rte_lpm (IPv4, host-order address) and rte_lpm6 (16 wire-order
 * bytes), next hop = an index into the caller's route table. Depth 1..32 /
 * 1..128 (a default route is kept by the caller). Lookup: 0 when found. */
void *sy_lpm_create(const char *name, uint32_t max_rules);
int sy_lpm_add(void *lpm, uint32_t ip, uint8_t depth, uint32_t next_hop);
int sy_lpm_lookup(void *lpm, uint32_t ip, uint32_t *next_hop);
void *sy_lpm6_create(const char *name, uint32_t max_rules);
int sy_lpm6_add(void *lpm, const uint8_t *ip, uint8_t depth, uint32_t next_hop);
int sy_lpm6_lookup(void *lpm, const uint8_t *ip, uint32_t *next_hop);

/* DPDK's rte_hash, for the table benchmark (bench-table): create a table of
 * `entries` keys of `key_len` bytes (CRC32 hash), add a key, look up a burst. */
void *sy_hash_create(const char *name, uint32_t entries, uint32_t key_len);
int32_t sy_hash_add(void *h, const void *key);
int sy_hash_lookup_bulk(void *h, const void **keys, uint32_t n, int32_t *positions);
void sy_hash_free(void *h);

/* ---------------------------------------------------------------- rings between lcores */

struct rte_ring *sy_ring_create(const char *name, unsigned count, int socket, bool single_producer,
                                bool single_consumer);
static inline unsigned sy_ring_enqueue_burst(struct rte_ring *r, struct rte_mbuf **pkts, unsigned n) {
    return rte_ring_enqueue_burst(r, (void **)pkts, n, NULL);
}
static inline unsigned sy_ring_dequeue_burst(struct rte_ring *r, struct rte_mbuf **pkts, unsigned n) {
    return rte_ring_dequeue_burst(r, (void **)pkts, n, NULL);
}

/* ---------------------------------------------------------------- per-packet inline accessors */

static inline uint16_t sy_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_rx_burst(port, queue, pkts, n);
}
static inline uint16_t sy_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_tx_burst(port, queue, pkts, n);
}
static inline void *sy_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
static inline uint16_t sy_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }
static inline uint32_t sy_mbuf_pkt_len(const struct rte_mbuf *m) { return m->pkt_len; }
static inline uint16_t sy_mbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
static inline uint16_t sy_mbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
static inline uint16_t sy_mbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
static inline uint16_t sy_mbuf_port(const struct rte_mbuf *m) { return m->port; }
static inline uint32_t sy_mbuf_rss_hash(const struct rte_mbuf *m) { return m->hash.rss; }
/* Grow the packet at its front by len bytes; NULL if there is no headroom. */
static inline void *sy_mbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
/* Remove len bytes from the front; NULL if the first segment is shorter. */
static inline void *sy_mbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
/* Shorten the packet at its tail; nonzero on failure. */
static inline int sy_mbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
/* Set the length of a single-segment mbuf (used when building packets). */
static inline void sy_mbuf_set_len(struct rte_mbuf *m, uint16_t len) { m->data_len = len; m->pkt_len = len; }
static inline struct rte_mbuf *sy_mbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
static inline void sy_mbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
static inline void sy_mbuf_free_bulk(struct rte_mbuf **m, unsigned n) { rte_pktmbuf_free_bulk(m, n); }
static inline struct rte_mempool *sy_mbuf_pool(const struct rte_mbuf *m) { return m->pool; }

/* The rx timestamp (ns for net_pcap) if the PMD set one, else 0. */
static inline uint64_t sy_mbuf_rx_timestamp(const struct rte_mbuf *m, int offset, uint64_t flag) {
    if (offset < 0 || (m->ol_flags & flag) == 0) return 0;
    return *RTE_MBUF_DYNFIELD(m, offset, const uint64_t *);
}

static inline void sy_prefetch0(const void *p) { rte_prefetch0(p); }
static inline void sy_prefetch_mbuf_data(struct rte_mbuf *m) { rte_prefetch0(rte_pktmbuf_mtod(m, void *)); }
static inline uint64_t sy_rdtsc(void) { return rte_rdtsc(); }
static inline uint64_t sy_tsc_hz(void) { return rte_get_tsc_hz(); }
static inline void sy_pause(void) { rte_pause(); }

#endif
