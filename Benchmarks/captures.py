"""Synthetic captures for the benchmark harness, written with numpy (a million
packets take about a second, where scapy would take minutes).

Every frame is Ethernet + IPv4 from a client to the VIP. Flow i (0-based) is
the client endpoint (198.18.0.1 + i mod 65521, 1024 + i div 65521): distinct
for up to 4e9 flows, spread over 65521 client addresses (so persistence
templates, keyed by client address, each control several connections).
"""
import os
import struct

import numpy as np

VIP = (192, 0, 2, 10)
LB_MAC = bytes.fromhex("0200000000aa")
ROUTER_MAC = bytes.fromhex("0200000000fe")
CLIENT_BASE = (198 << 24) | (18 << 16)
ADDR_SPREAD = 65521
IMIX = [60] * 7 + [590] * 4 + [1514]          # frame sizes without FCS: 64/594/1518 on the wire


def flow_tuple(i):
    """Client address (u32) and port arrays for flow indices i."""
    i = np.asarray(i, dtype=np.int64)
    return (CLIENT_BASE + 1 + i % ADDR_SPREAD).astype(np.uint32), (1024 + i // ADDR_SPREAD).astype(np.uint16)


def _fold(s):
    s = s.astype(np.uint64)
    while True:
        hi = s >> np.uint64(16)
        if not hi.any():
            break
        s = (s & np.uint64(0xFFFF)) + hi
    return (~s.astype(np.uint16)) & 0xFFFF


def _words(rows, start, end):
    """Sum of big-endian 16-bit words of rows[:, start:end] (end-start even)."""
    b = rows[:, start:end].astype(np.uint32)
    return (b[:, 0::2] << 8 | b[:, 1::2]).sum(axis=1, dtype=np.uint64)


def _put16(rows, off, v):
    v = np.asarray(v).astype(np.uint32)
    rows[:, off] = (v >> 8) & 0xFF
    rows[:, off + 1] = v & 0xFF


def _put32(rows, off, v):
    v = np.asarray(v).astype(np.uint64)
    for k in range(4):
        rows[:, off + k] = (v >> np.uint64(8 * (3 - k))) & np.uint64(0xFF)


def frames(flows, length, proto="udp", dport=53):
    """An (n, length) uint8 array of frames, one per entry of `flows`."""
    n = len(flows)
    caddr, cport = flow_tuple(flows)
    rows = np.zeros((n, length), dtype=np.uint8)
    rows[:, 0:6] = np.frombuffer(LB_MAC, dtype=np.uint8)
    rows[:, 6:12] = np.frombuffer(ROUTER_MAC, dtype=np.uint8)
    rows[:, 12] = 0x08
    ip = 14
    l4len = 8 if proto == "udp" else 20
    payload = max(0, length - ip - 20 - l4len) if proto == "udp" else 0   # a SYN carries no data: padding
    total = 20 + l4len + payload
    rows[:, ip] = 0x45
    _put16(rows, ip + 2, total)
    _put16(rows, ip + 4, np.arange(n) & 0xFFFF)
    rows[:, ip + 8] = 64
    rows[:, ip + 9] = 17 if proto == "udp" else 6
    _put32(rows, ip + 12, caddr)
    rows[:, ip + 16:ip + 20] = np.array(VIP, dtype=np.uint8)
    _put16(rows, ip + 10, _fold(_words(rows, ip, ip + 20)))
    l4 = ip + 20
    _put16(rows, l4, cport)
    _put16(rows, l4 + 2, dport)
    if proto == "udp":
        _put16(rows, l4 + 4, 8 + payload)
        if payload:
            rows[:, l4 + 8:l4 + 8 + payload] = (np.arange(payload) & 0x7F).astype(np.uint8)
    else:   # a SYN
        _put32(rows, l4 + 4, 1000 + np.arange(n))
        rows[:, l4 + 12] = 0x50
        rows[:, l4 + 13] = 0x02
        _put16(rows, l4 + 14, 64240)
    end = l4 + l4len + payload
    pseudo = _words(rows, ip + 12, ip + 20) + np.uint64(rows[0, ip + 9]) + np.uint64(l4len + payload)
    seg = rows[:, l4:end]
    if (end - l4) % 2:
        seg = np.concatenate([seg, np.zeros((n, 1), dtype=np.uint8)], axis=1)
    b = seg.astype(np.uint32)
    s = pseudo + (b[:, 0::2] << 8 | b[:, 1::2]).sum(axis=1, dtype=np.uint64)
    c = _fold(s)
    if proto == "udp":
        c = np.where(c == 0, 0xFFFF, c)
        _put16(rows, l4 + 6, c)
    else:
        _put16(rows, l4 + 16, c)
    return rows


def write_pcap(path, flows, sizes=None, proto="udp", dport=53, chunk=1 << 20):
    """Write one packet per entry of `flows`; `sizes` (frame lengths without
    FCS) cycles over the packets, 60 (a 64-byte frame) by default. Written in
    chunks, so ten million packets need no more than a few hundred MB."""
    flows = np.asarray(flows, dtype=np.int64)
    sizes = sizes or [60]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for start in range(0, len(flows), chunk):
            part = flows[start:start + chunk]
            f.write(_records(part, start, sizes, proto, dport).tobytes())
    os.replace(tmp, path)
    return len(flows)


def _records(flows, first, sizes, proto, dport):
    n = len(flows)
    pos_all = np.arange(first, first + n, dtype=np.int64)
    lens = np.array(sizes, dtype=np.int64)[pos_all % len(sizes)]
    rec = lens + 16
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(rec, out=offs[1:])
    buf = np.zeros(int(offs[-1]), dtype=np.uint8)
    for L in sorted(set(lens.tolist())):
        idx = np.nonzero(lens == L)[0]
        rows = np.zeros((len(idx), L + 16), dtype=np.uint8)
        hdr = np.zeros(len(idx), dtype=[("s", "<u4"), ("u", "<u4"), ("i", "<u4"), ("o", "<u4")])
        ts = pos_all[idx]
        hdr["s"] = 1700000000 + ts // 1000000
        hdr["u"] = ts % 1000000
        hdr["i"] = L
        hdr["o"] = L
        rows[:, :16] = hdr.view(np.uint8).reshape(len(idx), 16)
        rows[:, 16:] = frames(flows[idx], L, proto, dport)
        if L <= 128:
            pos = offs[idx][:, None] + np.arange(L + 16)[None, :]
            buf[pos] = rows
        else:
            for k, o in enumerate(offs[idx]):
                buf[o:o + L + 16] = rows[k]
    return buf


def zipf_flows(nflows, npackets, s=1.0, seed=1):
    """Packet -> flow indices with Zipf(s) popularity over nflows flows (the
    ranks permuted, so hot flows are not neighbours)."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.power(np.arange(1, nflows + 1, dtype=np.float64), s)
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(npackets))
    perm = rng.permutation(nflows)
    return perm[np.minimum(ranks, nflows - 1)]


def uniform_flows(nflows, npackets):
    """Round robin over the flows: every flow once per pass."""
    return np.arange(npackets, dtype=np.int64) % nflows


def ensure(path, build):
    """Build a capture once; later runs reuse it."""
    if not os.path.exists(path):
        build(path)
    return path
