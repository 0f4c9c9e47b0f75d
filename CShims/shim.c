/* Set-up half of the DPDK shim: everything that touches DPDK's configuration
 * structs, so that Swift sees only scalars and small plain structs. */
#include "CDPDK.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>

#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_thash.h>
#include <rte_dev.h>
#include <rte_hash.h>
#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_hash_crc.h>

volatile int sy_stop_requested = 0;

static void on_stop_signal(int sig) {
    (void)sig;
    __atomic_store_n(&sy_stop_requested, 1, __ATOMIC_RELAXED);
}

void sy_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int sy_eal_init(int argc, char **argv) { return rte_eal_init(argc, argv); }
int sy_eal_cleanup(void) { return rte_eal_cleanup(); }
const char *sy_strerror_last(void) { return rte_strerror(rte_errno); }

unsigned sy_lcore_count(void) { return rte_lcore_count(); }
unsigned sy_main_lcore(void) { return rte_get_main_lcore(); }
unsigned sy_next_worker_lcore(unsigned prev) { return rte_get_next_lcore(prev, 1, 0); }
unsigned sy_lcore_id(void) { return rte_lcore_id(); }
int sy_socket_id(void) { return (int)rte_socket_id(); }
int sy_launch(unsigned lcore, int (*fn)(void *), void *arg) { return rte_eal_remote_launch(fn, arg, lcore); }
int sy_wait_lcore(unsigned lcore) { return rte_eal_wait_lcore(lcore); }

struct rte_mempool *sy_pktmbuf_pool_create(const char *name, unsigned n, unsigned cache,
                                           uint16_t data_room, int socket) {
    return rte_pktmbuf_pool_create(name, n, cache, 0, data_room, socket);
}

uint16_t sy_port_count(void) { return rte_eth_dev_count_avail(); }

int sy_vdev_create(const char *devargs, const char *name, uint16_t *port) {
    int rc = rte_dev_probe(devargs);
    if (rc != 0) return rc;
    return rte_eth_dev_get_port_by_name(name, port);
}
bool sy_port_is_valid(uint16_t port) { return rte_eth_dev_is_valid_port(port) != 0; }

int sy_port_info(uint16_t port, struct sy_port_info *info) {
    struct rte_eth_dev_info di;
    int rc = rte_eth_dev_info_get(port, &di);
    if (rc != 0) return rc;
    memset(info, 0, sizeof *info);
    snprintf(info->driver, sizeof info->driver, "%s", di.driver_name ? di.driver_name : "?");
    rte_eth_dev_get_name_by_port(port, info->name);
    info->max_rx_queues = di.max_rx_queues;
    info->max_tx_queues = di.max_tx_queues;
    info->rx_timestamp_capable = (di.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP) != 0;
    info->max_rx_pktlen = di.max_rx_pktlen;
    struct rte_ether_addr mac;
    if (rte_eth_macaddr_get(port, &mac) == 0) memcpy(info->mac, mac.addr_bytes, 6);
    return 0;
}

int sy_port_setup(uint16_t port, uint16_t nb_rxq, uint16_t nb_txq, uint16_t nb_rxd,
                  uint16_t nb_txd, struct rte_mempool *pool, uint32_t max_pkt_len,
                  bool rx_timestamp, bool promiscuous) {
    struct rte_eth_dev_info di;
    int rc = rte_eth_dev_info_get(port, &di);
    if (rc != 0) return rc;

    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    /* max_pkt_len is a frame length, as testpmd's; the MTU excludes the
     * Ethernet header and CRC. */
    if (max_pkt_len > RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN)
        conf.rxmode.mtu = max_pkt_len - RTE_ETHER_HDR_LEN - RTE_ETHER_CRC_LEN;
    if (rx_timestamp) conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_TIMESTAMP;
    if (nb_rxq > 1 && di.flow_type_rss_offloads != 0) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = di.flow_type_rss_offloads &
            (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
    }
    if ((rc = rte_eth_dev_configure(port, nb_rxq, nb_txq, &conf)) != 0) return rc;
    if ((rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd)) != 0) return rc;
    int socket = rte_eth_dev_socket_id(port);
    for (uint16_t q = 0; q < nb_rxq; q++)
        if ((rc = rte_eth_rx_queue_setup(port, q, nb_rxd, socket, NULL, pool)) != 0) return rc;
    for (uint16_t q = 0; q < nb_txq; q++)
        if ((rc = rte_eth_tx_queue_setup(port, q, nb_txd, socket, NULL)) != 0) return rc;
    if ((rc = rte_eth_dev_start(port)) != 0) return rc;
    if (promiscuous) rte_eth_promiscuous_enable(port); /* not every PMD supports it */
    return 0;
}

int sy_port_stop_close(uint16_t port) {
    int rc = rte_eth_dev_stop(port);
    int rc2 = rte_eth_dev_close(port);
    return rc != 0 ? rc : rc2;
}

int sy_port_stats(uint16_t port, struct sy_port_stats *out) {
    struct rte_eth_stats s;
    int rc = rte_eth_stats_get(port, &s);
    if (rc != 0) return rc;
    out->ipackets = s.ipackets;
    out->opackets = s.opackets;
    out->ibytes = s.ibytes;
    out->obytes = s.obytes;
    out->imissed = s.imissed;
    out->ierrors = s.ierrors;
    out->oerrors = s.oerrors;
    out->rx_nombuf = s.rx_nombuf;
    return 0;
}

static int ts_offset = -1;
static uint64_t ts_flag = 0;

int sy_timestamp_lookup(void) {
    int off = rte_mbuf_dynfield_lookup(RTE_MBUF_DYNFIELD_TIMESTAMP_NAME, NULL);
    int bit = rte_mbuf_dynflag_lookup(RTE_MBUF_DYNFLAG_RX_TIMESTAMP_NAME, NULL);
    if (off < 0 || bit < 0) {
        /* Register it ourselves so the PMD and we agree on one field. */
        if (rte_mbuf_dyn_rx_timestamp_register(&off, &ts_flag) != 0) return -1;
        ts_offset = off;
        return off;
    }
    ts_offset = off;
    ts_flag = UINT64_C(1) << bit;
    return off;
}
int sy_timestamp_field_offset(void) { return ts_offset; }
uint64_t sy_timestamp_rx_flag(void) { return ts_flag; }

struct rte_ring *sy_ring_create(const char *name, unsigned count, int socket, bool single_producer,
                                bool single_consumer) {
    unsigned flags = (single_producer ? RING_F_SP_ENQ : 0) | (single_consumer ? RING_F_SC_DEQ : 0);
    return rte_ring_create(name, count, socket, flags);
}

uint16_t sy_port_reta_size(uint16_t port) {
    struct rte_eth_dev_info di;
    if (rte_eth_dev_info_get(port, &di) != 0) return 0;
    return di.reta_size;
}

uint64_t sy_rss_types_src_only(void) {
    return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_L3_SRC_ONLY | RTE_ETH_RSS_L4_SRC_ONLY;
}
uint64_t sy_rss_types_dst_only(void) {
    return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_L3_DST_ONLY | RTE_ETH_RSS_L4_DST_ONLY;
}

int sy_port_rss_configure(uint16_t port, const uint8_t *key, uint8_t key_len, uint64_t types,
                          const uint16_t *reta, uint16_t reta_size) {
    struct rte_eth_rss_conf conf;
    memset(&conf, 0, sizeof conf);
    conf.rss_key = (uint8_t *)key;
    conf.rss_key_len = key_len;
    conf.rss_hf = types;
    int rc = rte_eth_dev_rss_hash_update(port, &conf);
    if (rc != 0) return rc;
    if (reta_size == 0) return 0;
    struct rte_eth_rss_reta_entry64 entries[RTE_ETH_RSS_RETA_SIZE_512 / RTE_ETH_RETA_GROUP_SIZE];
    memset(entries, 0, sizeof entries);
    for (uint16_t i = 0; i < reta_size && i < RTE_ETH_RSS_RETA_SIZE_512; i++) {
        entries[i / RTE_ETH_RETA_GROUP_SIZE].mask |= UINT64_C(1) << (i % RTE_ETH_RETA_GROUP_SIZE);
        entries[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] = reta[i];
    }
    return rte_eth_dev_rss_reta_update(port, entries, reta_size);
}

uint32_t sy_softrss(const uint32_t *tuple, uint32_t len, const uint8_t *key) {
    return rte_softrss((uint32_t *)tuple, len, key);
}

void *sy_hash_create(const char *name, uint32_t entries, uint32_t key_len) {
    struct rte_hash_parameters params;
    memset(&params, 0, sizeof params);
    params.name = name;
    params.entries = entries;
    params.key_len = key_len;
    params.hash_func = rte_hash_crc;
    params.socket_id = (int)rte_socket_id();
    return rte_hash_create(&params);
}
int32_t sy_hash_add(void *h, const void *key) { return rte_hash_add_key((struct rte_hash *)h, key); }
int sy_hash_lookup_bulk(void *h, const void **keys, uint32_t n, int32_t *positions) {
    return rte_hash_lookup_bulk((struct rte_hash *)h, keys, n, positions);
}
void sy_hash_free(void *h) { rte_hash_free((struct rte_hash *)h); }

void *sy_lpm_create(const char *name, uint32_t max_rules) {
    struct rte_lpm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_rules = max_rules;
    cfg.number_tbl8s = 256;
    return rte_lpm_create(name, (int)rte_socket_id(), &cfg);
}
int sy_lpm_add(void *lpm, uint32_t ip, uint8_t depth, uint32_t next_hop) {
    return rte_lpm_add((struct rte_lpm *)lpm, ip, depth, next_hop);
}
int sy_lpm_lookup(void *lpm, uint32_t ip, uint32_t *next_hop) {
    return rte_lpm_lookup((struct rte_lpm *)lpm, ip, next_hop);
}
void *sy_lpm6_create(const char *name, uint32_t max_rules) {
    struct rte_lpm6_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_rules = max_rules;
    cfg.number_tbl8s = 1 << 12;
    return rte_lpm6_create(name, (int)rte_socket_id(), &cfg);
}
int sy_lpm6_add(void *lpm, const uint8_t *ip, uint8_t depth, uint32_t next_hop) {
    return rte_lpm6_add((struct rte_lpm6 *)lpm, ip, depth, next_hop);
}
int sy_lpm6_lookup(void *lpm, const uint8_t *ip, uint32_t *next_hop) {
    return rte_lpm6_lookup((struct rte_lpm6 *)lpm, ip, next_hop);
}
