"""Connection states, timeouts and the scheduling entry path, against the
IPVS model: how long each TCP state (NAT tables and DR's INPUT_ONLY) and UDP
live after the last packet, that every packet re-arms the timer, which
segments may create a connection, when a SYN reuses or reschedules an old
connection, threshold (OVERLOAD) set and clear, and ICMP port unreachable
when no real server is available.

Every capture is also compared as a whole with the model (`check`): each
packet's fate and the final `-L -n`, `--stats` and `-L -n -c` listings.
"""

import pytest

from ipvs_harness import Capture, check, run, tshark_check

VIP = "192.0.2.10"


def rules_rr(fwd, servers=((11, 1), (12, 1), (13, 1)), vip=VIP, proto="tcp", port=80, sched="rr", extra=""):
    opt = "-t" if proto == "tcp" else "-u"
    lines = ["-A %s %s:%d -s %s%s" % (opt, vip, port, sched, extra)]
    for s in servers:
        rport = 8080 if (fwd == "-m" and proto == "tcp") else (5353 if fwd == "-m" else port)
        lines.append("-a %s %s:%d -r 10.0.0.%d:%d %s -w %d %s" % (opt, vip, port, s[0], rport, fwd, s[1],
                                                                 s[2] if len(s) > 2 else ""))
    return "\n".join(lines) + "\n"


# (name, NAT?, steps into the state, timeout in seconds). Steps are (delay ms, action).
STATE_PATHS = [
    ("nat-SYN_RECV", True, ["c:S"], 60),
    ("nat-SYN_RECV-retransmit", True, ["c:S", "c:S"], 60),
    ("nat-ESTABLISHED", True, ["c:S", "s:SA", "c:A"], 900),
    ("nat-CLOSE_WAIT", True, ["c:S", "c:A", "c:FA"], 60),
    ("nat-TIME_WAIT", True, ["c:S", "s:SA", "c:A", "c:FA", "s:FA"], 120),
    ("nat-FIN_WAIT-server-closes", True, ["c:S", "s:SA", "c:A", "s:FA"], 120),
    ("nat-SYN_SENT-server-syn", True, ["c:S", "c:A", "c:FA", "s:S"], 120),
    ("nat-CLOSE-rst", True, ["c:S", "c:A", "c:R"], 10),
    ("nat-CLOSE-server-rst", True, ["c:S", "s:SA", "c:A", "s:R"], 10),
    ("nat-CLOSE-no-flags", True, ["c:S", "c:A", "c:"], 10),
    ("dr-SYN_RECV", False, ["c:S"], 60),
    ("dr-ESTABLISHED", False, ["c:S", "c:A", "c:PA"], 900),
    ("dr-FIN_WAIT", False, ["c:S", "c:A", "c:FA", "c:A"], 120),
    ("dr-TIME_WAIT-fin-in-syn_recv", False, ["c:S", "c:FA"], 120),
    ("dr-CLOSE-rst", False, ["c:S", "c:A", "c:R"], 10),
    ("dr-SYN_RECV-rst-in-syn_recv", False, ["c:S", "c:R"], 60),
]


def test_state_timeouts():
    """For every state: a probe ACK 1.5 s before the state's timeout (counted
    from the last packet) is still forwarded on the connection; one 1.5 s after
    it finds no connection and is not forwarded (a non-SYN segment never
    creates one). UDP: a datagram after 300 s starts a new connection."""
    rules = rules_rr("-m") + rules_rr("-g", vip="192.0.2.11") + \
        rules_rr("-m", vip="192.0.2.12", proto="udp", port=53) + rules_rr("-g", vip="192.0.2.13", proto="udp", port=53)
    cap = Capture(rules)
    probes = {}
    n = 0
    for name, nat, path, timeout in STATE_PATHS:
        for sign in (-1, +1):
            n += 1
            vip = VIP if nat else "192.0.2.11"
            steps = [(0 if i == 0 else 20, a) for i, a in enumerate(path)]
            steps.append((timeout * 1000 + sign * 1500, "c:A"))
            sc = cap.script(n * 4000, "tcp", "203.0.113.%d" % n, 30000 + n, vip, 80, steps, tag=name)
            probes[sc.sid] = (name, sign)
    for vip in ("192.0.2.12", "192.0.2.13"):
        for sign in (-1, +1):
            n += 1
            sc = cap.script(n * 4000, "udp", "203.0.113.%d" % n, 30000 + n, vip, 53,
                            [(0, "u"), (20, "u"), (300000 + sign * 1500, "u")], tag="udp-%s" % vip)
            probes[sc.sid] = ("udp", sign)
    cap.build()
    for sc in cap.scripts:
        name, sign = probes[sc.sid]
        last = sc.records[-1]
        # the model's own reading of the spec, so the capture means what it says
        if name == "udp":
            assert last.outcome[0] == "fwd" and last.new == (sign > 0), (name, sign)
        else:
            assert len(sc.records) == len(sc.steps), name
            assert last.outcome[0] == ("fwd" if sign < 0 else "local"), (name, sign, last.outcome)
            assert all(r.outcome[0] in ("fwd", "reply") for r in sc.records[:-1]), name
    res = run(cap)
    report = check(cap, res)
    assert report == "", report


def test_every_packet_rearms_the_timer():
    """ESTABLISHED lives 900 s after the *last* packet: keep-alives every 850 s
    keep a connection for an hour; a NAT reply re-arms it as well. A gap of
    901 s ends it."""
    cap = Capture(rules_rr("-m"))
    keep = [(0, "c:S"), (20, "s:SA"), (20, "c:A")] + [(850000, "c:A") for _ in range(4)] + [(850000, "s:A"),
                                                                                          (850000, "c:PA")]
    cap.script(0, "tcp", "203.0.113.1", 40001, VIP, 80, keep, tag="keepalive")
    cap.script(1000, "tcp", "203.0.113.2", 40002, VIP, 80,
               [(0, "c:S"), (20, "c:A"), (850000, "c:A"), (901000, "c:A"), (5000, "c:S"), (20, "c:A")], tag="gap")
    cap.build()
    ka, gap = cap.scripts
    assert [r.outcome[0] for r in ka.records] == ["fwd", "reply", "fwd"] + ["fwd"] * 4 + ["reply", "fwd"]
    assert [r.outcome[0] for r in gap.records] == ["fwd", "fwd", "fwd", "local", "fwd", "fwd"]
    res = run(cap)
    report = check(cap, res)
    assert report == "", report


def test_segments_that_do_not_schedule():
    """With no connection, only a SYN (also SYN+ACK, for active FTP) creates
    one: ACK, data, FIN, RST, SYN+RST and flagless segments to the VIP are not
    scheduled and reach no real server, and they leave nothing in the table."""
    cap = Capture(rules_rr("-m") + rules_rr("-g", vip="192.0.2.11"))
    k = 0
    for vip in (VIP, "192.0.2.11"):
        for flags in ("A", "PA", "FA", "F", "R", "RA", "SR", "", "U"):
            k += 1
            cap.script(k * 100, "tcp", "203.0.113.%d" % k, 50000 + k, vip, 80,
                       [(0, "c:" + flags), (50, "c:A"), (50, "c:PA")], tag="stray-" + (flags or "none"))
        k += 1
        cap.script(k * 100, "tcp", "203.0.113.%d" % k, 50000 + k, vip, 80, [(0, "c:SA"), (50, "c:A")],
                   tag="synack")
        k += 1
        # a stray first, then the real SYN from the same port
        cap.script(k * 100, "tcp", "203.0.113.%d" % k, 50000 + k, vip, 80, [(0, "c:A"), (50, "c:S"), (50, "c:A")],
                   tag="stray-then-syn")
    cap.build()
    for sc in cap.scripts:
        kinds = [r.outcome[0] for r in sc.records]
        if sc.tag.startswith("stray-") and sc.tag != "stray-then-syn":
            assert kinds == ["local"] * 3, (sc.tag, kinds)
        elif sc.tag == "synack":
            assert kinds == ["fwd", "fwd"]
        else:
            assert kinds == ["local", "fwd", "fwd"]
    res = run(cap)
    report = check(cap, res)
    assert report == "", report
    assert len(res.conn_rows) == 4


def test_syn_reuse_and_rescheduling():
    """A SYN on an existing connection: in TIME_WAIT or CLOSE the old one is
    dropped and the SYN is scheduled afresh (rr moves on to the next server);
    in CLOSE_WAIT (NAT) or FIN_WAIT (DR) the same connection is reused and
    goes back to SYN_RECV on the same server, active again."""
    cap = Capture(rules_rr("-m") + rules_rr("-g", vip="192.0.2.11"))
    tw = [(0, "c:S"), (20, "s:SA"), (20, "c:A"), (20, "c:FA"), (20, "s:FA"), (20, "c:A"), (30000, "c:S"),
          (20, "s:SA"), (20, "c:A")]
    cl = [(0, "c:S"), (20, "c:A"), (20, "c:R"), (5000, "c:S"), (20, "c:A")]
    cw = [(0, "c:S"), (20, "c:A"), (20, "c:FA"), (30000, "c:S"), (20, "c:A")]
    fw = [(0, "c:S"), (20, "c:A"), (20, "c:FA"), (30000, "c:S"), (20, "c:A")]
    dr_cl = [(0, "c:S"), (20, "c:A"), (20, "c:R"), (5000, "c:S"), (20, "c:A")]
    scripts = [("tw", VIP, tw, True), ("close", VIP, cl, True), ("close_wait", VIP, cw, False),
               ("dr-fin_wait", "192.0.2.11", fw, False), ("dr-close", "192.0.2.11", dr_cl, True)]
    k = 0
    for tag, vip, steps, resched in scripts:
        k += 1
        cap.script(k * 1000, "tcp", "203.0.113.%d" % k, 41000 + k, vip, 80, steps, tag=tag)
        # a bystander conn between, so rr would pick another server on a reschedule
        cap.script(k * 1000 + 10000, "tcp", "198.51.100.%d" % (100 + k), 42000 + k, vip, 80,
                   [(0, "c:S"), (20, "c:A")], tag="bystander")
    cap.build()
    for sc, (tag, vip, steps, resched) in zip(cap.scripts[::2], scripts):
        syns = [r for r in sc.records if r.pkt["flags"] == "S" and r.pkt["src"] == sc.client]
        assert len(syns) == 2
        assert syns[1].new == resched, tag
        assert (syns[1].dest is not syns[0].dest) == resched, tag
        assert syns[1].after == ("SYN_RECV", False), tag
    assert cap.model.events["reuse-reschedule"] == 3
    res = run(cap)
    report = check(cap, res)
    assert report == "", report


def test_reschedule_counts_the_old_connection():
    """When a SYN reschedules a TIME_WAIT/CLOSE connection, the old one is
    expired on the next tick, so it still counts (as inactive) while the new
    one is scheduled. lc, servers A then B (list B, A): X -> A and Y -> B are
    reset after their ACK (CLOSE, 1 inactive each); X's port SYNs again: with X still counted
    the tie goes to B, the list head (without it, A would win)."""
    rules = rules_rr("-m", servers=((11, 1), (12, 1)), sched="lc")
    cap = Capture(rules)
    cap.script(0, "tcp", "203.0.113.1", 40001, VIP, 80, [(0, "c:S")], tag="Y")       # -> B (head, tie)
    cap.script(100, "tcp", "203.0.113.2", 40002, VIP, 80, [(0, "c:S")], tag="X")     # -> A (B busy)
    cap.scripts[0].steps += [(300, "c:A"), (20, "c:R")]
    cap.scripts[1].steps += [(300, "c:A"), (20, "c:R"), (3000, "c:S"), (20, "c:A")]
    cap.build()
    y, x = cap.scripts
    assert y.records[0].dest.addr == "10.0.0.12" and x.records[0].dest.addr == "10.0.0.11"
    assert x.records[2].after == ("CLOSE", True)
    assert x.records[3].new and x.records[3].dest.addr == "10.0.0.12"
    res = run(cap)
    report = check(cap, res)
    assert report == "", report


def test_thresholds_set_and_clear_overload():
    """-x/-y: OVERLOAD is set when active+inactive reaches the upper
    threshold and cleared when it drops below the lower one; with -x only,
    when total*4 < upper*3. Overloaded servers are skipped by rr."""
    rules = rules_rr("-g", servers=((11, 1, "-x 4 -y 2"), (12, 1, "-x 4"), (13, 1)))
    cap = Capture(rules)
    # three rounds: a burst of 12 SYN_RECV conns (60 s) overloads the servers with
    # thresholds, then short conns every 5 s while the burst expires
    for base in (0, 150000, 300000):
        for i in range(12):
            cap.script(base + i * 1000, "tcp", "203.0.113.%d" % (i + 1), 40000 + base // 1000 + i, VIP, 80,
                       [(0, "c:S")], tag="burst")
        for i in range(20):
            cap.script(base + 30000 + i * 5000, "tcp", "198.51.100.%d" % (i + 1), 41000 + base // 1000 + i, VIP,
                       80, [(0, "c:S"), (20, "c:A"), (2000, "c:R")], tag="trickle")
    cap.build()
    ev = cap.model.events
    assert ev["overload-set"] >= 6 and ev["overload-clear"] >= 6, ev
    res = run(cap)
    report = check(cap, res)
    assert report == "", report


@pytest.mark.parametrize("variant", ["all-weights-zero", "sched-none", "ovf-full", "persistent-zero"])
def test_port_unreachable_when_no_server(variant):
    """No real server available: the client gets ICMP destination unreachable
    / port unreachable from the VIP, quoting its packet, for TCP SYNs and UDP
    alike; nothing reaches a real server."""
    if variant == "all-weights-zero":
        rules = rules_rr("-m", servers=((11, 0), (12, 0))) + \
            rules_rr("-g", servers=((11, 0),), proto="udp", port=53, sched="wlc")
    elif variant == "sched-none":
        rules = rules_rr("-m", servers=((11, 1), (12, 1)), sched="none") + \
            rules_rr("-g", servers=((11, 1),), proto="udp", port=53, sched="none")
    elif variant == "ovf-full":
        # ovf skips servers whose active conns exceed their weight; UDP is never active
        rules = rules_rr("-m", servers=((11, 1), (12, 2)), sched="ovf") + \
            rules_rr("-g", servers=((11, 0),), proto="udp", port=53, sched="ovf")
    else:
        rules = rules_rr("-m", servers=((11, 0), (12, 0)), extra=" -p 360") + \
            rules_rr("-g", servers=((11, 0),), proto="udp", port=53, sched="wlc", extra=" -p 120")
    cap = Capture(rules)
    for i in range(12):
        cap.script(i * 200, "tcp", "203.0.113.%d" % (i + 1), 40000 + i, VIP, 80, [(0, "c:S"), (20, "c:A")])
        cap.script(i * 200 + 50, "udp", "203.0.113.%d" % (i + 101), 40000 + i, VIP, 53, [(0, "u")])
    cap.build()
    kinds = [r.outcome[0] for r in cap.records]
    if variant == "ovf-full":
        assert "fwd" in kinds and "icmp-unreach" in kinds
    else:
        assert set(kinds) == {"icmp-unreach", "local"}
    res = run(cap)
    report = check(cap, res)
    assert report == "", report
    assert tshark_check(res) == []


def test_ftp_data_source_port_is_never_scheduled():
    """ip_vs_schedule never schedules a connection from client port 20 (FTP
    data): the SYN (or UDP datagram) is left alone, not forwarded, no ICMP.
    Port 21 and others are scheduled as usual."""
    cap = Capture(rules_rr("-m") + rules_rr("-g", proto="udp", port=53))
    k = 0
    for sport in (20, 21, 19, 20):
        k += 1
        cap.script(k * 100, "tcp", "203.0.113.%d" % k, sport, VIP, 80, [(0, "c:S"), (20, "c:A")], tag="tcp-%d" % sport)
        cap.script(k * 100 + 50, "udp", "203.0.113.%d" % k, sport, VIP, 53, [(0, "u")], tag="udp-%d" % sport)
    cap.build()
    for sc in cap.scripts:
        kinds = {r.outcome[0] for r in sc.records}
        assert kinds == ({"local"} if sc.cport == 20 else {"fwd"}), (sc.tag, kinds)
    res = run(cap)
    report = check(cap, res)
    assert report == "", report


def test_one_packet_scheduling():
    """-o (UDP only): every datagram is scheduled on its own and its
    connection dies right after it, so one client port rotates over rr's
    servers and nothing is left in -L -n -c; with -p the datagrams still
    create and refresh the template (listed, NONE) and all go to its server."""
    rules = rules_rr("-g", vip="192.0.2.30", proto="udp", port=53, extra=" -o") + \
        rules_rr("-g", vip="192.0.2.31", proto="udp", port=53, extra=" -p 60 -o")
    cap = Capture(rules)
    cap.script(0, "udp", "203.0.113.1", 5000, "192.0.2.30", 53, [(0, "u")] + [(1000, "u")] * 8, tag="ops")
    cap.script(500, "udp", "203.0.113.2", 5000, "192.0.2.31", 53, [(0, "u")] + [(1000, "u")] * 8, tag="ops-p")
    cap.script(300, "udp", "203.0.113.3", 5001, "192.0.2.31", 53, [(0, "u")], tag="ops-p-other")
    # one packet after the others: the packet clock moves on, so the last one-packet
    # connection has had its "next tick" before the listings are printed
    cap.heartbeat(12000, 12000, 1000)
    cap.build()
    ops, opsp, other = cap.scripts[:3]
    assert [r.dest.addr for r in ops.records] == ["10.0.0.13", "10.0.0.12", "10.0.0.11"] * 3
    assert all(r.new for r in ops.records + opsp.records)
    assert {r.dest.addr for r in opsp.records} == {"10.0.0.12"} and other.records[0].dest.addr == "10.0.0.13"
    rows = cap.model.conn_rows(cap.end)
    assert sorted(r[1] for r in rows) == ["NONE", "NONE"]
    res = run(cap)
    report = check(cap, res)
    assert report == "", report


def test_syn_on_live_connection_is_not_rescheduled():
    """A SYN on a connection in SYN_RECV or ESTABLISHED (NAT and DR) is just a
    packet of that connection: same server, no new connection (ESTABLISHED
    stays ESTABLISHED), whatever rr would pick next."""
    cap = Capture(rules_rr("-m") + rules_rr("-g", vip="192.0.2.11"))
    k = 0
    for vip in (VIP, "192.0.2.11"):
        for prefix in (["c:S"], ["c:S", "c:A"]):
            k += 1
            steps = [(0 if i == 0 else 20, a) for i, a in enumerate(prefix)] + [(20000, "c:S"), (20, "c:A")]
            cap.script(k * 1000, "tcp", "203.0.113.%d" % k, 43000 + k, vip, 80, steps, tag="+".join(prefix))
            cap.script(k * 1000 + 5000, "tcp", "198.51.100.%d" % k, 44000 + k, vip, 80, [(0, "c:S")], tag="other")
    cap.build()
    for sc in cap.scripts[::2]:
        syn = sc.records[len(sc.steps) - 2]
        assert not syn.new and syn.dest is sc.records[0].dest
        assert syn.after[0] == ("SYN_RECV" if sc.tag == "c:S" else "ESTABLISHED")
    res = run(cap)
    report = check(cap, res)
    assert report == "", report
