"""--max-conns bounds each worker's table. When it is full, embryonic
connections (SYN_RECV) are evicted first, as IPVS's drop_entry defence does;
established ones keep flowing; with nothing left to evict, new connections
are refused and counted."""

import tempfile

from scapy.all import IP, TCP, Ether

from sylib import LB_MAC, ROUTER_MAC, run_switchyard, write_rules

VIP = "192.0.2.10"
RS_MAC = "02:00:00:00:01:0b"


def syn(i, t, flags="S"):
    p = Ether(src=ROUTER_MAC, dst=LB_MAC) / IP(src="203.0.113.%d" % (i % 250 + 1), dst=VIP) / \
        TCP(sport=10000 + i, dport=80, flags=flags)
    p.time = t
    return p


def test_full_table_evicts_embryonic_then_refuses():
    tmp = tempfile.mkdtemp(prefix="sy-full-")
    rules = write_rules(tmp, "-A -t %s:80 -s rr\n-a -t %s:80 -r 10.0.0.11:80 -g -w 1\n" % (VIP, VIP))
    pkts = []
    t = 1000.0
    # 16 established connections fill the table (SYN then ACK: ESTABLISHED).
    for i in range(16):
        pkts.append(syn(i, t)); t += 0.001
        pkts.append(syn(i, t, "A")); t += 0.001
    # A 17th SYN: nothing embryonic to evict -> refused.
    pkts.append(syn(100, t)); t += 0.001
    # The established ones still flow.
    for i in range(16):
        pkts.append(syn(i, t, "PA")); t += 0.001
    run = run_switchyard(pkts, args=["--config", rules, "--max-conns", "16", "--clock", "packet",
                                     "--neigh", "10.0.0.11=" + RS_MAC, "--dump-on-exit"], workdir=tmp)
    assert run.rc == 0, run.stderr
    lc = run.lcore_counters()[0]
    assert lc["refused"] == 1 and lc["conns"] == 16 and lc["live"] == 16
    out = [p for p in run.out if TCP in p]
    assert len(out) == 48                      # 32 handshake packets + 16 data, the refused SYN dropped
    assert not any(p[TCP].sport == 10100 for p in out)
    assert "  -> 10.0.0.11:80                 Route   1      16         0         " in run.stdout

    # Now 8 established and 8 embryonic: new SYNs evict embryonic ones and get in.
    pkts = []
    t = 1000.0
    for i in range(8):
        pkts.append(syn(i, t)); t += 0.001
        pkts.append(syn(i, t, "A")); t += 0.001
    for i in range(8, 16):
        pkts.append(syn(i, t)); t += 0.001
    for i in range(200, 208):
        pkts.append(syn(i, t)); t += 0.001
    for i in range(8):
        pkts.append(syn(i, t, "PA")); t += 0.001
    run = run_switchyard(pkts, args=["--config", rules, "--max-conns", "16", "--clock", "packet",
                                     "--neigh", "10.0.0.11=" + RS_MAC, "--dump-on-exit"], workdir=tmp)
    assert run.rc == 0, run.stderr
    lc = run.lcore_counters()[0]
    assert lc["refused"] == 0 and lc["conns"] == 24 and lc["live"] == 16
    out = [p for p in run.out if TCP in p]
    assert len(out) == len(pkts)
    # 8 established + 8 new embryonic remain: ActiveConn counts SYN_RECV and ESTABLISHED.
    assert "  -> 10.0.0.11:80                 Route   1      16         0         " in run.stdout
    conns = run.stdout.split("IPVS connection entries")[1]
    assert conns.count("ESTABLISHED") == 8 and conns.count("SYN_RECV") == 8
    for i in range(200, 208):
        assert ":%d " % (10000 + i) in conns
