"""Every IPVS scheduler, decision by decision, against the reference model.

Each case is one capture: hundreds of clients open, establish, close, reset
and abandon TCP connections (and, for some cases, send UDP) to a service of
3-5 real servers of different weights (weight 0 and -x/-y thresholds
included), built with `-A` and then several `-a` lines, over several phases
minutes apart so SYN_RECV (60 s), CLOSE_WAIT (60 s), TIME_WAIT/FIN_WAIT
(120 s), UDP (300 s) and ESTABLISHED (900 s) connections time out in between.
Switchyard runs with `--clock packet --dump-on-exit`; for every packet the
real server it was sent to (NAT: the rewritten destination; DR: the
destination MAC), or the ICMP error, or the silence, must be the model's; and
the final `-L -n` (ActiveConn/InActConn), `--stats` and `-L -n -c` listings
must equal the model's state at the last packet.
"""

import random

import pytest

from ipvs_harness import Capture, Clients, add_phase, check, run, tcp_steps

VIP = "192.0.2.10"
UVIP = "192.0.2.20"


def service(proto, vip, vport, sched, servers, fwd="-m", flags=""):
    """`-A` then one `-a` per server, in the given order (so the list order is
    the reverse). servers: (last octet of 10.0.0.x, weight, extra options)."""
    opt = "-t" if proto == "tcp" else "-u"
    lines = ["-A %s %s:%d -s %s%s" % (opt, vip, vport, sched, (" " + flags) if flags else "")]
    for s in servers:
        host, w = s[0], s[1]
        extra = s[2] if len(s) > 2 else ""
        rport = (8000 + vport if vport < 1000 else vport + 1) if fwd == "-m" else vport
        lines.append("-a %s %s:%d -r 10.0.0.%d:%d %s -w %d%s" % (opt, vip, vport, host, rport, fwd, w,
                                                                (" " + extra) if extra else ""))
    return "\n".join(lines) + "\n"


TCP_PHASES = (0, 200000, 1100000)       # ms: minutes apart, so each class of timeout has passed


def tcp_traffic(cap, rng, clients, vips, nat, n=150, window=30000, phases=TCP_PHASES, vport=80):
    for start in phases:
        add_phase(cap, rng, clients, start, n, window, "tcp", vips, vport, nat)


def udp_traffic(cap, rng, clients, vips, nat, n=60, window=30000, phases=(5000, 400000, 1150000), vport=53):
    for start in phases:
        add_phase(cap, rng, clients, start, n, window, "udp", vips, vport, nat)


def case_rr(rng, cl):
    rules = service("tcp", VIP, 80, "rr", [(11, 1), (12, 3, "-x 12 -y 6"), (13, 0), (14, 2)]) + \
        service("udp", UVIP, 53, "rr", [(21, 1), (22, 2), (23, 0)], fwd="-g")
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    udp_traffic(cap, rng, cl, [UVIP], nat=False)
    return cap


def case_wrr(rng, cl):
    rules = service("tcp", VIP, 80, "wrr", [(11, 4, "-x 20 -y 14"), (12, 3), (13, 2), (14, 0)]) + \
        service("udp", UVIP, 53, "wrr", [(21, 5), (22, 1), (23, 2)])
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    udp_traffic(cap, rng, cl, [UVIP], nat=True)
    return cap


def case_wrr_gcd(rng, cl):
    # weights with a common divisor (di = 2, mw = 7) and the ipvsadm start cw = 1
    rules = service("tcp", VIP, 80, "wrr", [(11, 8), (12, 4, "-x 9 -y 3"), (13, 6), (14, 0)], fwd="-g")
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=False)
    return cap


def case_wrr_overload(rng, cl):
    # every server has a threshold, so at peaks all are OVERLOAD ("all destinations are
    # overloaded", cw restarts and the stop-at-last pass)
    rules = service("tcp", VIP, 80, "wrr", [(11, 3, "-x 22 -y 8"), (12, 2, "-x 16"), (13, 1, "-x 12 -y 4")],
                    fwd="-g")
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=False)
    return cap


def case_rr_overload(rng, cl):
    rules = service("tcp", VIP, 80, "rr", [(11, 3, "-x 22 -y 8"), (12, 2, "-x 16"), (13, 0), (14, 1, "-x 12 -y 4")])
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    return cap


def case_lc(rng, cl):
    rules = service("tcp", VIP, 80, "lc", [(11, 1), (12, 2, "-x 10"), (13, 0), (14, 1)], fwd="-g") + \
        service("udp", UVIP, 53, "lc", [(21, 1), (22, 3), (23, 1)], fwd="-g")
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=False)
    udp_traffic(cap, rng, cl, [UVIP], nat=False)
    return cap


def case_wlc(rng, cl):
    rules = service("tcp", VIP, 80, "wlc", [(11, 1), (12, 3), (13, 5, "-x 25 -y 20"), (14, 0)])
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    return cap


def case_sed(rng, cl):
    rules = service("tcp", VIP, 80, "sed", [(11, 1), (12, 4), (13, 2, "-x 15 -y 5"), (14, 0)], fwd="-g")
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=False)
    return cap


def case_nq(rng, cl):
    rules = service("tcp", VIP, 80, "nq", [(11, 2), (12, 2), (13, 5, "-x 20"), (14, 0)])
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    return cap


def case_fo(rng, cl):
    rules = service("tcp", VIP, 80, "fo", [(11, 5, "-x 30 -y 20"), (12, 3, "-x 25"), (13, 1, "-x 50 -y 45"), (14, 0)])
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    return cap


def case_ovf(rng, cl):
    rules = service("tcp", VIP, 80, "ovf", [(11, 3), (12, 5), (13, 8), (14, 0)], fwd="-g") + \
        service("udp", UVIP, 53, "ovf", [(21, 1), (22, 2)], fwd="-g")
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, [VIP], nat=False, n=90)
    udp_traffic(cap, rng, cl, [UVIP], nat=False)
    return cap


# Picked so the VIPs' buckets (hash_32 of the VIP) land on different servers:
# 10.0.0.12 (thresholds), 14, 11, 14, 11, 13 (weight 0: ICMP), 14.
DH_VIPS = ["192.0.2.%d" % i for i in (32, 34, 31, 33, 35, 39, 36)]


def case_dh(rng, cl):
    servers = [(11, 1), (12, 2, "-x 6 -y 3"), (13, 0), (14, 3)]
    rules = ""
    for k, vip in enumerate(DH_VIPS):    # a different add order (so bucket table) per VIP
        rot = servers[k % 4:] + servers[:k % 4]
        rules += service("tcp", vip, 80, "dh", rot[:3 + k % 2])
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, DH_VIPS, nat=True)
    return cap


SH_SERVERS = [(11, 3), (12, 1), (13, 0), (14, 2, "-x 8 -y 4"), (15, 4)]


def case_sh(rng, cl):
    cap = Capture(service("tcp", VIP, 80, "sh", SH_SERVERS))
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    return cap


def case_sh_port(rng, cl):
    cap = Capture(service("tcp", VIP, 80, "sh", SH_SERVERS, fwd="-g", flags="-b sh-port") +
                  service("udp", UVIP, 53, "sh", [(21, 2), (22, 1), (23, 3)], flags="-b sh-port"))
    tcp_traffic(cap, rng, cl, [VIP], nat=False)
    udp_traffic(cap, rng, cl, [UVIP], nat=True)
    return cap


def case_sh_fallback(rng, cl):
    cap = Capture(service("tcp", VIP, 80, "sh", SH_SERVERS, flags="-b sh-fallback,sh-port"))
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    return cap


MH_SERVERS = [(11, 3), (12, 1, "-x 6 -y 2"), (13, 2), (14, 0), (15, 5)]


def case_mh(rng, cl):
    cap = Capture(service("tcp", VIP, 80, "mh", MH_SERVERS) +
                  service("udp", UVIP, 53, "mh", [(21, 1), (22, 1), (23, 2)], fwd="-g"))
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    udp_traffic(cap, rng, cl, [UVIP], nat=False)
    return cap


def case_mh_port(rng, cl):
    # a weight large enough that rshift > 0 (70/gcd 1 needs 7 bits)
    cap = Capture(service("tcp", VIP, 80, "mh", [(11, 70), (12, 3, "-x 10 -y 5"), (13, 20), (14, 0)], fwd="-g",
                          flags="-b mh-port"))
    tcp_traffic(cap, rng, cl, [VIP], nat=False)
    return cap


def case_mh_fallback(rng, cl):
    cap = Capture(service("tcp", VIP, 80, "mh", MH_SERVERS, flags="-b mh-fallback"))
    tcp_traffic(cap, rng, cl, [VIP], nat=True)
    return cap


LB_VIPS = ["192.0.2.41", "192.0.2.42", "192.0.2.43"]


def case_lblc(rng, cl):
    rules = "".join(service("tcp", v, 80, "lblc", [(11, 2), (12, 3), (13, 1, "-x 6"), (14, 0), (15, 4)])
                    for v in LB_VIPS)
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, LB_VIPS, nat=True)
    return cap


def case_lblcr(rng, cl):
    rules = "".join(service("tcp", v, 80, "lblcr", [(11, 2), (12, 3), (13, 1, "-x 6"), (14, 0), (15, 4)],
                            fwd="-g") for v in LB_VIPS)
    cap = Capture(rules)
    tcp_traffic(cap, rng, cl, LB_VIPS, nat=False)
    # then a quiet day: a short connection per VIP every 20 minutes for 26 hours, so
    # each entry stays in use while its set's lastmod gets older than 24 h (set_max erase)
    t = 1300000
    while t < 1300000 + 26 * 3600 * 1000:
        for v in LB_VIPS:
            a, p = cl.pair()
            cap.script(t + rng.randrange(60000), "tcp", a, p, v, 80, tcp_steps("rst", rng, False), tag="day")
        t += 20 * 60 * 1000
    tcp_traffic(cap, rng, cl, LB_VIPS, nat=False, n=100, phases=(t + 100000,))
    return cap


CASES = {
    "rr": case_rr, "rr-overload": case_rr_overload, "wrr": case_wrr, "wrr-overload": case_wrr_overload, "wrr-gcd": case_wrr_gcd, "lc": case_lc, "wlc": case_wlc, "sed": case_sed,
    "nq": case_nq, "fo": case_fo, "ovf": case_ovf, "dh": case_dh, "sh": case_sh, "sh-port": case_sh_port,
    "sh-fallback": case_sh_fallback, "mh": case_mh, "mh-port": case_mh_port, "mh-fallback": case_mh_fallback,
    "lblc": case_lblc, "lblcr": case_lblcr,
}

# What each capture must exercise for the comparison to mean something.
NEEDS_OVERLOAD = {"rr", "rr-overload", "wrr-overload", "wrr", "wrr-gcd", "lc", "wlc", "sed", "nq", "fo", "dh", "sh", "sh-port", "sh-fallback",
                  "mh", "mh-port", "mh-fallback", "lblc", "lblcr"}
NEEDS_NO_DEST = {"rr-overload", "wrr-overload", "fo", "ovf", "dh", "sh", "sh-port", "mh", "mh-port"}


def build(name, seed=None):
    rng = random.Random(seed if seed is not None else sum(map(ord, name)))
    return CASES[name](rng, Clients(rng)).build()


@pytest.mark.parametrize("name", sorted(CASES))
def test_scheduler_matches_model(name):
    cap = build(name, seed=sum(map(ord, name)))
    ev = cap.model.events
    new = [r for r in cap.records if r.outcome[0] == "fwd" and r.new]
    # the capture exercises what it should
    assert len(new) >= (150 if name.endswith("-overload") else 300), len(new)
    assert ev["expired"] >= 100 and ev["reuse-reschedule"] > 0 and ev["not-scheduled"] > 0, ev
    assert len({r.dest.addr for r in new}) >= 2
    assert all(r.dest.weight > 0 for r in new), "a weight-0 server was chosen"
    if name in NEEDS_OVERLOAD:
        assert ev["overload-set"] > 0 and ev["overload-clear"] > 0, ev
    if name in NEEDS_NO_DEST:
        assert ev["no-dest"] > 0, ev
    if name == "lblcr":
        erased = [e for svc in cap.model.services.values() for e in svc.sched.erased]
        assert erased, "no set_max erase happened"
    res = run(cap)
    report = check(cap, res)
    assert report == "", "%s: %d packets, %d new conns\n%s" % (name, len(cap.records), len(new), report)


def test_twos_structure():
    """twos draws two random servers (weighted) and keeps the less loaded, so
    its decisions cannot be predicted. Run it, then replay Switchyard's own
    choices through the model: every choice must have been eligible (weight > 0,
    not OVERLOAD) when made, "no destination" only when nothing was, every
    server with weight > 0 must be chosen sometimes, and with the choices
    replayed the accounting, listings and every other packet must agree."""
    def make():
        rng = random.Random(2024)
        cap = Capture(service("tcp", VIP, 80, "twos", [(11, 1), (12, 4, "-x 14 -y 8"), (13, 0), (14, 2)], fwd="-g"))
        tcp_traffic(cap, rng, Clients(rng), [VIP], nat=False)
        return cap

    first = make().build()
    res = run(first)
    assert res.rc == 0, res.stderr
    # the choice for each new conn in the output: DR keeps the VIP; the MAC names the server
    from ipvs_harness import classify, rs_mac
    fwd, icmp, _ = classify(res.frames)
    by_mac = {rs_mac("10.0.0.%d" % h): "10.0.0.%d" % h for h in (11, 12, 13, 14)}
    second = make()
    sched = second.model.services[("tcp", VIP, 80)].sched
    for rec in first.records:
        if rec.pkt["proto"] == "tcp" and "S" in rec.pkt["flags"] and "R" not in rec.pkt["flags"]:
            key = (rec.pkt["src"], rec.pkt["sport"], rec.t)
            if rec.ident in icmp:
                sched.oracle[key] = None
            elif rec.ident in fwd:
                sched.oracle[key] = by_mac.get(fwd[rec.ident][0].dst_mac)
    second.build()
    assert [r.t for r in second.records] == [r.t for r in first.records]
    assert sched.violations == []
    chosen = {r.dest.addr for r in second.records if r.outcome[0] == "fwd" and r.new}
    assert chosen == {"10.0.0.11", "10.0.0.12", "10.0.0.14"}
    assert second.model.events["overload-set"] > 0
    report = check(second, res)
    assert report == "", report
