"""Multi-core: per-worker connection tables with RSS-consistent ownership.

A connection belongs to the worker that the Toeplitz hash of the client's
<address, port> selects through the redirection table (128 entries, queue =
entry mod rx queues, worker = queue mod workers). net_pcap has no RSS, so each
rx_pcap is one queue and the tests decide which queue a packet arrives on; a
packet that lands on the wrong worker must be handed to the owner, counted,
and processed exactly as if it had arrived there."""

import os
import random
import tempfile

from scapy.all import DNS, DNSQR, IP, TCP, UDP, Ether, Raw, rdpcap, wrpcap

from sylib import LB_MAC, ROUTER_MAC, run_switchyard, tshark_problems, write_rules

KEY = bytes([
    0x6D, 0x5A, 0x56, 0xDA, 0x25, 0x5B, 0x0E, 0xC2, 0x41, 0x67,
    0x25, 0x3D, 0x43, 0xA3, 0x8F, 0xB0, 0xD0, 0xCA, 0x2B, 0xCB,
    0xAE, 0x7B, 0x30, 0xB4, 0x77, 0xCB, 0x2D, 0xA3, 0x80, 0x30,
    0xF2, 0x0C, 0x6A, 0x42, 0xB7, 0x3B, 0xBE, 0xAC, 0x01, 0xFA,
])
VIP = "192.0.2.10"
RS = {"10.0.0.11": "02:00:00:00:01:0b", "10.0.0.12": "02:00:00:00:01:0c"}
GW = "02:00:00:00:00:fe"


def toeplitz(data, key=KEY):
    """The definition, bit by bit: each set input bit XORs in the 32 key bits starting there."""
    kbits = int.from_bytes(key, "big")
    klen = len(key) * 8
    h = 0
    for i in range(len(data) * 8):
        if (data[i // 8] >> (7 - i % 8)) & 1:
            h ^= (kbits >> (klen - 32 - i)) & 0xFFFFFFFF
    return h


def owner(addr, port, workers=2, queues=2):
    data = bytes(int(x) for x in addr.split(".")) + port.to_bytes(2, "big")
    return (toeplitz(data) & 127) % queues % workers


def rules(tmp):
    return write_rules(tmp, "-A -t %s:80 -s rr\n" % VIP +
                       "".join("-a -t %s:80 -r %s:8080 -m -w 1\n" % (VIP, r) for r in RS) +
                       "-A -u %s:53 -s rr\n-a -u %s:53 -r 10.0.0.11:53 -g -w 1\n" % (VIP, VIP))


ARGS_COMMON = ["--rxq", "2", "--txq", "2", "--clock", "packet",
               "--port-addr", "0:10.0.0.1/24", "--port-addr", "0:198.51.100.2/24",
               "--route", "0.0.0.0/0=198.51.100.1", "--neigh", "198.51.100.1=" + GW,
               "--neigh", "10.0.0.11=" + RS["10.0.0.11"], "--neigh", "10.0.0.12=" + RS["10.0.0.12"]]


FILLER = 200000


def write_filler_then(path, pkts, n=FILLER):
    """n malformed frames (an IPv4 header cut short: counted and dropped),
    then pkts. net_pcap replays every queue at once, with no order between
    queues; the filler keeps queue 1's worker busy until queue 0's worker has
    long finished, so queue 1's packets come after queue 0's."""
    import struct
    stub = bytes(Ether(src=GW, dst=LB_MAC) / IP(src="198.51.100.9", dst="198.51.100.8"))[:20]
    rec = struct.pack("<IIII", 999, 0, len(stub), len(stub)) + stub
    tail = os.path.join(os.path.dirname(path), "q1-tail.pcap")
    wrpcap(tail, pkts)
    with open(tail, "rb") as f:
        body = f.read()
    with open(path, "wb") as f:
        f.write(body[:24])          # the pcap file header
        f.write(rec * n)
        f.write(body[24:])


def run_two_queues(q0, q1, tmp, extra=(), filler=0):
    p0, p1 = os.path.join(tmp, "q0.pcap"), os.path.join(tmp, "q1.pcap")
    wrpcap(p0, q0)
    if filler:
        write_filler_then(p1, q1, filler)
    else:
        wrpcap(p1, q1)
    # Workers on different CPUs (the main lcore mostly sleeps).
    return run_switchyard(rxq_paths=[p0, p1], lcores=None, extra_eal=["--lcores", "0@0,1@0,2@1"],
                          args=["--config", rules(tmp)] + ARGS_COMMON + list(extra), workdir=tmp, idle_ms=400)


def all_output(run, tmp):
    pkts = list(run.out)
    q1 = os.path.join(tmp, "out0q1.pcap")
    if os.path.exists(q1) and os.path.getsize(q1) > 24:
        pkts += list(rdpcap(q1))
    return pkts


def nat_conversations(n, seed):
    """n clients; for each: SYN (client side), then after the test knows the
    server, replies. Returns the client packets and a reply builder."""
    rnd = random.Random(seed)
    clients = []
    for i in range(n):
        clients.append(("203.0.113.%d" % rnd.randint(1, 254), rnd.randint(1024, 65000)))
    return clients


def test_nat_replies_on_the_other_queue_are_redirected_to_the_owner():
    tmp = tempfile.mkdtemp(prefix="sy-mc-")
    clients = nat_conversations(200, 11)
    # Phase 1: every client's SYN on queue 0. Phase 2 (one second later): the
    # servers' SYN+ACKs on queue 1 and the clients' ACKs on queue 0. The real
    # server of each client is only known after scheduling, so the replies are
    # sent from both servers: the one that is not the client's matches no
    # connection and is forwarded unchanged (not counted as NAT).
    q0, q1 = [], []
    t = 1000.0
    for i, (c, p) in enumerate(clients):
        pk = Ether(src=GW, dst=LB_MAC) / IP(src=c, dst=VIP) / TCP(sport=p, dport=80, flags="S", seq=100)
        pk.time = t + i * 0.001
        q0.append(pk)
    for i, (c, p) in enumerate(clients):
        for rs in RS:
            pk = Ether(src=RS[rs], dst=LB_MAC) / IP(src=rs, dst=c) / TCP(sport=8080, dport=p, flags="SA", seq=500, ack=101)
            pk.time = t + 1 + i * 0.001
            q1.append(pk)
        pk = Ether(src=GW, dst=LB_MAC) / IP(src=c, dst=VIP) / TCP(sport=p, dport=80, flags="A", seq=101, ack=501)
        pk.time = t + 1 + i * 0.001 + 0.0005
        q0.append(pk)
    # The clients' ACKs follow their SYNs on queue 0; the replies on queue 1
    # come after the filler. (Timestamps keep the same order.)
    run = run_two_queues(q0, q1, tmp, filler=FILLER)
    assert run.rc == 0, run.stderr
    lc = run.lcore_counters()
    assert sorted(lc) == [1, 2]
    assert lc[2]["malformed"] == FILLER
    # Expected redirects: a packet is misdirected when its owner is not the
    # worker of the queue it arrived on (queue 0 -> worker 0, queue 1 -> worker 1).
    expected = 0
    for (c, p) in clients:
        w = owner(c, p)
        expected += 2 * (w != 0)          # SYN and ACK on queue 0
        expected += 2 * (w != 1)          # the two SYN+ACKs on queue 1 (both hash on the client)
    assert sum(v["redirected"] for v in lc.values()) == expected
    assert sum(v["conns"] for v in lc.values()) == len(clients)
    out = all_output(run, tmp)
    # Every client's SYN and ACK reached one real server, rewritten to :8080.
    to_rs = [pk for pk in out if IP in pk and pk[IP].dst in RS and TCP in pk]
    assert len(to_rs) == 2 * len(clients)
    assert all(pk[TCP].dport == 8080 for pk in to_rs)
    chosen = {}
    for pk in to_rs:
        key = (pk[IP].src, pk[TCP].sport)
        chosen.setdefault(key, pk[IP].dst)
        assert chosen[key] == pk[IP].dst, "a connection's packets went to two servers"
    # Each matching reply was rewritten back to VIP:80 towards the client; the
    # non-matching copy left unchanged. Nothing was dropped.
    replies = [pk for pk in out if IP in pk and pk[IP].src == VIP]
    assert len(replies) == len(clients)
    for pk in replies:
        assert pk[TCP].sport == 80 and chosen[(pk[IP].dst, pk[TCP].dport)]
    unmatched = [pk for pk in out if IP in pk and pk[IP].src in RS]
    assert len(unmatched) == len(clients)
    for (c, p) in clients:
        assert not any(pk[IP].src == chosen[(c, p)] and pk[IP].dst == c and pk[TCP].dport == p for pk in unmatched)
    assert sum(v["drop"] for v in lc.values()) == 0
    assert len(out) == len(q0) + len(q1)
    # Both servers got work (each worker runs its own rr over the shared list).
    assert set(chosen.values()) == set(RS)


def test_correctly_steered_traffic_is_never_redirected():
    tmp = tempfile.mkdtemp(prefix="sy-mc-")
    clients = nat_conversations(300, 12)
    q = ([], [])
    for i, (c, p) in enumerate(clients):
        w = owner(c, p)
        for k, flags in enumerate(["S", "A"]):
            pk = Ether(src=GW, dst=LB_MAC) / IP(src=c, dst=VIP) / TCP(sport=p, dport=80, flags=flags)
            pk.time = 1000 + i * 0.001 + k * 0.5
            q[w].append(pk)
        # UDP to the DR service too: DR never needs the redirect.
        pk = Ether(src=GW, dst=LB_MAC) / IP(src=c, dst=VIP) / UDP(sport=p, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.com"))
        pk.time = 1000 + i * 0.001 + 0.7
        q[w].append(pk)
    run = run_two_queues(q[0], q[1], tmp)
    assert run.rc == 0, run.stderr
    lc = run.lcore_counters()
    assert sum(v["redirected"] for v in lc.values()) == 0
    assert sum(v["conns"] for v in lc.values()) == 2 * len(clients)
    # Each worker created exactly the connections of the clients it owns.
    owned = [sum(1 for c, p in clients if owner(c, p) == w) for w in (0, 1)]
    assert sorted(v["conns"] for v in lc.values()) == sorted(2 * n for n in owned)
    out = all_output(run, tmp)
    assert len(out) == len(q[0]) + len(q[1])
    assert tshark_problems(run.out_paths[0]) == []


import subprocess

import pytest

from sylib import BINARY, EAL_BASE


@pytest.mark.parametrize("mapping,needle", [
    ("(0,0,5)", "lcore 5 is not a worker lcore"),
    ("(0,2,1)", "queue 2 does not exist"),
    ("(0,0,1),(0,0,2)", "port 0 queue 0 is mapped twice"),
    ("(3,0,1)", "port 3 is not in use"),
])
def test_impossible_lcore_maps_are_refused(mapping, needle):
    proc = subprocess.run([BINARY, "--lcores", "0@0,1@1,2@1"] + EAL_BASE + ["--vdev", "net_null0", "--",
                           "--rxq", "2", "--lcore-map", mapping, "--socket", tempfile.mkdtemp() + "/s"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and needle in proc.stderr, proc.stderr


def test_lcore_map_decides_who_polls_each_queue():
    """Queue 0 on lcore 2 and queue 1 on lcore 1 (the reverse of the default):
    the worker on lcore 2 receives queue 0's packets."""
    tmp = tempfile.mkdtemp(prefix="sy-mc-")
    q0 = [Ether(src=GW, dst=LB_MAC) / IP(src="198.51.100.9", dst="198.51.100.8") / UDP(sport=1, dport=2)] * 30
    q1 = [Ether(src=GW, dst=LB_MAC) / IP(src="198.51.100.9", dst="198.51.100.8") / UDP(sport=1, dport=2)] * 70
    p0, p1 = os.path.join(tmp, "q0.pcap"), os.path.join(tmp, "q1.pcap")
    wrpcap(p0, q0)
    wrpcap(p1, q1)
    run = run_switchyard(rxq_paths=[p0, p1], lcores=None, extra_eal=["--lcores", "0@0,1@0,2@1"],
                         args=["--rxq", "2", "--txq", "2", "--forward-mode", "io", "--lcore-map", "(0,0,2),(0,1,1)"],
                         workdir=tmp)
    assert run.rc == 0, run.stderr
    lc = run.lcore_counters()
    assert lc[2]["rx"] == 30 and lc[1]["rx"] == 70
