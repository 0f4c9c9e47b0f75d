"""Foundation: the binary runs on net_pcap, forwards a mixed capture without
losing or corrupting anything, parses its command line testpmd-style and
reports counters in the documented format."""

import random
import subprocess
import tempfile

import pytest
from scapy.all import (ARP, ICMP, IP, TCP, UDP, Ether, ICMPv6EchoRequest, IPv6, Raw, Dot1Q,
                       rdpcap, wrpcap)

from sylib import BINARY, EAL_BASE, LB_MAC, ROUTER_MAC, run_switchyard, tshark_problems


def mixed_capture(n=4000, seed=7):
    """Several thousand packets: TCP and UDP over IPv4 and IPv6, ARP, ICMP,
    VLAN-tagged frames, sizes from minimum to full MTU."""
    rnd = random.Random(seed)
    pkts = []
    for i in range(n):
        kind = rnd.choice(["tcp4", "udp4", "tcp6", "udp6", "arp", "icmp", "vlan", "big"])
        eth = Ether(src=ROUTER_MAC, dst=LB_MAC)
        src4 = "203.0.113.%d" % rnd.randint(1, 254)
        dst4 = "198.51.100.%d" % rnd.randint(1, 254)
        src6 = "2001:db8:1::%x" % rnd.randint(1, 0xffff)
        dst6 = "2001:db8:2::%x" % rnd.randint(1, 0xffff)
        payload = Raw(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200))))
        if kind == "tcp4":
            p = eth / IP(src=src4, dst=dst4) / TCP(sport=rnd.randint(1024, 65535), dport=10080, flags="PA",
                                                   seq=rnd.getrandbits(32)) / payload
        elif kind == "udp4":
            p = eth / IP(src=src4, dst=dst4) / UDP(sport=rnd.randint(1024, 65535), dport=10053) / payload
        elif kind == "tcp6":
            p = eth / IPv6(src=src6, dst=dst6) / TCP(sport=rnd.randint(1024, 65535), dport=10443, flags="S")
        elif kind == "udp6":
            p = eth / IPv6(src=src6, dst=dst6) / UDP(sport=rnd.randint(1024, 65535), dport=10053) / payload
        elif kind == "arp":
            p = Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc=src4, pdst=dst4,
                                                                   hwsrc=ROUTER_MAC)
        elif kind == "icmp":
            p = eth / IP(src=src4, dst=dst4) / ICMP(id=i & 0xffff, seq=i & 0xffff) / payload
        elif kind == "vlan":
            p = eth / Dot1Q(vlan=100) / IP(src=src4, dst=dst4) / UDP(sport=1234, dport=5678) / payload
        else:
            p = eth / IP(src=src4, dst=dst4) / TCP(sport=40000, dport=10080, flags="A") / Raw(b"z" * 1400)
        p.time = 1700000000 + i * 0.0001
        pkts.append(p)
    return pkts


@pytest.mark.parametrize("mode", ["io", "lb"])
def test_forwarding_keeps_every_packet_intact(mode):
    """With no virtual service configured, every packet leaves unchanged (io
    mode always; lb mode because nothing is addressed to a VIP), in order."""
    pkts = mixed_capture()
    run = run_switchyard(pkts, args=["--forward-mode", mode])
    assert run.rc == 0, run.stderr
    assert "switchyard: ready" in run.stdout
    assert len(run.out) == len(pkts), "packets lost: sent %d, got %d" % (len(pkts), len(run.out))
    for i, (a, b) in enumerate(zip(pkts, run.out)):
        assert bytes(a) == bytes(b), "packet %d changed" % i
    assert tshark_problems(run.out_paths[0]) == []
    ports = run.port_counters()
    assert ports[0]["rx"] == len(pkts) and ports[0]["tx"] == len(pkts) and ports[0]["drop"] == 0
    lcores = run.lcore_counters()
    assert sum(c["rx"] for c in lcores.values()) == len(pkts)


def test_two_ports_forward_to_their_pair():
    """Ports pair as in testpmd (0<->1): what port 0 receives leaves port 1 and back."""
    a = mixed_capture(500, seed=1)
    b = mixed_capture(300, seed=2)
    d = tempfile.mkdtemp(prefix="sy-it-")
    pa, pb = d + "/a.pcap", d + "/b.pcap"
    wrpcap(pa, a)
    wrpcap(pb, b)
    run = run_switchyard(in_paths=[pa, pb], ports=2, args=["--forward-mode", "io"], workdir=d)
    assert run.rc == 0, run.stderr
    out0 = rdpcap(run.out_paths[0])
    out1 = rdpcap(run.out_paths[1])
    assert [bytes(p) for p in out1] == [bytes(p) for p in a]
    assert [bytes(p) for p in out0] == [bytes(p) for p in b]


def test_two_workers_share_the_queues():
    """With two lcores and two rx queues, each worker polls one queue and nothing is lost."""
    d = tempfile.mkdtemp(prefix="sy-it-")
    q0, q1 = d + "/q0.pcap", d + "/q1.pcap"
    wrpcap(q0, mixed_capture(700, seed=3))
    wrpcap(q1, mixed_capture(900, seed=4))
    run = run_switchyard(rxq_paths=[q0, q1], lcores=None, extra_eal=["--lcores", "0@0,1@1,2@1"],
                         args=["--rxq", "2", "--txq", "2", "--forward-mode", "io"], workdir=d)
    assert run.rc == 0, run.stderr
    lcores = run.lcore_counters()
    assert sorted(lcores) == [1, 2]
    assert sorted(c["rx"] for c in lcores.values()) == [700, 900]
    assert run.port_counters()[0]["tx"] == 1600


@pytest.mark.parametrize("args,needle", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--burst", "0"], "--burst"),
    (["--burst=abc"], "--burst"),
    (["--clock", "sundial"], "--clock"),
    (["--neigh", "10.0.0.1"], "--neigh"),
    (["--port-addr", "0:10.0.0.1/33"], "--port-addr"),
    (["--portmask", "xyz"], "--portmask"),
    (["--rxq"], "requires a value"),
])
def test_bad_flags_exit_2_before_eal(args, needle):
    # EAL would print its banner and need devices; a bad flag must stop first.
    proc = subprocess.run([BINARY, "-l", "0"] + EAL_BASE + ["--"] + args, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "EAL" not in proc.stderr and "EAL" not in proc.stdout


def test_help_documents_every_flag():
    proc = subprocess.run([BINARY, "--", "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for flag in ["--portmask", "--nb-cores", "--rxq", "--txq", "--rxd", "--txd", "--burst",
                 "--total-num-mbufs", "--mbuf-size", "--max-pkt-len", "--stats-period", "--exit-on-idle",
                 "--clock", "--config", "--neigh", "--port-addr", "--socket", "--route", "--max-conns"]:
        assert flag in proc.stdout, flag


def test_stats_period_prints_periodic_lines():
    # net_null never runs dry, so the run is stopped with SIGTERM after a while.
    cmd = [BINARY, "-l", "0"] + EAL_BASE + ["--vdev", "net_null0", "--vdev", "net_null1",
                                            "--", "--stats-period", "0.2", "--forward-mode", "io"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=1.5)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    periodic = out[:out.find("final counters:")]
    lines = [l for l in periodic.splitlines() if l.startswith("port 0: ")]
    assert len(lines) >= 3, out
    import re
    for l in lines:
        assert re.match(r"^port 0: rx=\d+ tx=\d+ drop=\d+ rx-mpps=\d+\.\d{3} tx-mpps=\d+\.\d{3}$", l), l
    # net_null delivers packets as fast as we poll: rates must be positive.
    assert any(float(l.split("rx-mpps=")[1].split()[0]) > 0 for l in lines)
    assert "final counters:" in out
