"""LVS/NAT on the wire (IPVS_SEMANTICS §7 NAT, DESIGN "Egress"): the service
port differs from the real server's (80 -> 8080, 7777 -> 7778), so both the
address and the port are rewritten, in both directions, for TCP and UDP over
IPv4 (with and without IP options, UDP checksum 0) and IPv6.

One switchyard run carries every flow; each test checks its own flow. Every
output frame is validated by tshark with checksum validation on, and each
forwarded IP packet is compared byte for byte with the expected rewrite
(scapy recomputes the checksums of the expectation)."""

import pytest
from scapy.all import IP, TCP, UDP, IPv6, IPv6ExtHdrDestOpt, IPOption_NOP, IPOption_RR, PadN, Raw

from pathcheck import (CLIENT4, CLIENT6, GW_MAC, PORT_MAC, RS, VIP4, VIP6, check_run_captures,
                       expected_forwarded, from_client, from_rs, inet_checksum, l3_bytes, run_lb)

RS4 = "10.0.0.11"
RS6 = "2001:db8:a::11"

RULES = """\
-A -t %(v4)s:80 -s rr
-a -t %(v4)s:80 -r %(rs4)s:8080 -m -w 1
-A -u %(v4)s:7777 -s rr
-a -u %(v4)s:7777 -r %(rs4)s:7778 -m -w 1
-A -t [%(v6)s]:80 -s rr
-a -t [%(v6)s]:80 -r [%(rs6)s]:8080 -m -w 1
-A -u [%(v6)s]:7777 -s rr
-a -u [%(v6)s]:7777 -r [%(rs6)s]:7778 -m -w 1
""" % {"v4": VIP4, "v6": VIP6, "rs4": RS4, "rs6": RS6}

C4_OPT = "203.0.113.7"
C4_UDP0 = "203.0.113.8"
C4_FFFF = "203.0.113.9"


def ffff_payload(src, dst, sport, dport):
    """A 2-byte UDP payload for which the datagram src:sport -> dst:dport has
    a computed checksum of 0, which must be sent as 0xFFFF (0 = no checksum)."""
    l3 = IP if ":" not in src else IPv6
    b = bytes(l3(src=src, dst=dst) / UDP(sport=sport, dport=dport, chksum=0) / Raw(b"\0\0"))
    if l3 is IP:
        ph = b[12:20] + b"\0\x11" + b[24:26]
        udp = b[20:]
    else:
        ph = b[8:40] + len(b[40:]).to_bytes(4, "big") + b"\0\0\0\x11"
        udp = b[40:]
    return inet_checksum(ph + udp).to_bytes(2, "big")


def _flows():
    """(name, direction, input IP packet, expected output IP bytes, expected dst MAC)."""
    flows = []

    def inbound(name, l3, vport, rport, rs):
        flows.append((name, "in", l3, expected_forwarded(l3, dst=rs, dport=rport), RS[rs]))

    def outbound(name, l3, vip, vport):
        flows.append((name, "out", l3, expected_forwarded(l3, src=vip, sport=vport), GW_MAC))

    # TCP over IPv4: handshake and data both ways.
    inbound("tcp4-syn", IP(src=CLIENT4, dst=VIP4, ttl=64, id=101) /
            TCP(sport=40000, dport=80, flags="S", seq=1000, options=[("MSS", 1460)]), 80, 8080, RS4)
    outbound("tcp4-synack", IP(src=RS4, dst=CLIENT4, ttl=64, id=201) /
             TCP(sport=8080, dport=40000, flags="SA", seq=5000, ack=1001), VIP4, 80)
    inbound("tcp4-data", IP(src=CLIENT4, dst=VIP4, ttl=37, id=102) /
            TCP(sport=40000, dport=80, flags="PA", seq=1001, ack=5001) / Raw(b"GET / HTTP/1.0\r\n\r\n"),
            80, 8080, RS4)
    outbound("tcp4-reply", IP(src=RS4, dst=CLIENT4, ttl=255, id=202) /
             TCP(sport=8080, dport=40000, flags="PA", seq=5001, ack=1019) / Raw(bytes(range(256)) * 3),
             VIP4, 80)
    # UDP over IPv4.
    inbound("udp4-query", IP(src=CLIENT4, dst=VIP4, ttl=64) / UDP(sport=40001, dport=7777) /
            Raw(b"\x00\x01query" * 20), 7777, 7778, RS4)
    outbound("udp4-answer", IP(src=RS4, dst=CLIENT4, ttl=64) / UDP(sport=7778, dport=40001) /
             Raw(b"\xffanswer" * 30), VIP4, 7777)
    # IPv4 with options (NOP + record route) both ways: options kept as they are.
    inbound("opt4-in", IP(src=C4_OPT, dst=VIP4, ttl=64, options=[IPOption_NOP(), IPOption_RR(
        routers=["0.0.0.0"] * 2)]) / TCP(sport=40002, dport=80, flags="S") / Raw(b"opt"), 80, 8080, RS4)
    outbound("opt4-out", IP(src=RS4, dst=C4_OPT, ttl=64, options=[IPOption_NOP(), IPOption_NOP(),
                                                               IPOption_NOP(), IPOption_NOP()]) /
             TCP(sport=8080, dport=40002, flags="SA") / Raw(b"options back"), VIP4, 80)
    # UDP with checksum 0 (no checksum): the NAT'd packet carries a full valid checksum.
    inbound("udp0-in", IP(src=C4_UDP0, dst=VIP4, ttl=64) / UDP(sport=40003, dport=7777, chksum=0) /
            Raw(b"zero checksum query"), 7777, 7778, RS4)
    outbound("udp0-out", IP(src=RS4, dst=C4_UDP0, ttl=64) / UDP(sport=7778, dport=40003, chksum=0) /
             Raw(b"zero checksum answer!"), VIP4, 7777)
    # IPv6, TCP and UDP, both ways.
    inbound("tcp6-syn", IPv6(src=CLIENT6, dst=VIP6, hlim=64) / TCP(sport=40000, dport=80, flags="S", seq=77),
            80, 8080, RS6)
    outbound("tcp6-synack", IPv6(src=RS6, dst=CLIENT6, hlim=64) /
             TCP(sport=8080, dport=40000, flags="SA", seq=99, ack=78), VIP6, 80)
    inbound("tcp6-data", IPv6(src=CLIENT6, dst=VIP6, hlim=9) /
            TCP(sport=40000, dport=80, flags="PA", seq=78, ack=100) / Raw(b"six" * 100), 80, 8080, RS6)
    outbound("tcp6-reply", IPv6(src=RS6, dst=CLIENT6, hlim=2) /
             TCP(sport=8080, dport=40000, flags="PA", seq=100, ack=378) / Raw(b"xis" * 111), VIP6, 80)
    inbound("udp6-query", IPv6(src=CLIENT6, dst=VIP6, hlim=64) / UDP(sport=40001, dport=7777) / Raw(b"q6" * 9),
            7777, 7778, RS6)
    outbound("udp6-answer", IPv6(src=RS6, dst=CLIENT6, hlim=64) / UDP(sport=7778, dport=40001) /
             Raw(b"a6" * 33), VIP6, 7777)
    # Short frames with Ethernet padding (to 60 bytes): the checksums cover the
    # IP packet only, never the padding; the output is still a valid frame.
    inbound("udp0-padded", IP(src=C4_UDP0, dst=VIP4, ttl=64) / UDP(sport=40004, dport=7777, chksum=0) /
            Raw(b"ab"), 7777, 7778, RS4)
    inbound("tcp4-padded", IP(src=C4_UDP0, dst=VIP4, ttl=64) / TCP(sport=40005, dport=80, flags="S") /
            Raw(b"c"), 80, 8080, RS4)
    # IPv6 with a destination options header before TCP: ports found past it.
    inbound("tcp6-destopt", IPv6(src=CLIENT6, dst=VIP6, hlim=64) /
            IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0\0\0\0")]) /
            TCP(sport=40006, dport=80, flags="S") / Raw(b"ext"), 80, 8080, RS6)
    # Checksums that come out as 0 after the rewrite: written as 0xFFFF (§7,
    # CSUM_MANGLED_0), whether updated incrementally or computed in full.
    pl = ffff_payload(C4_FFFF, RS4, 40007, 7778)
    inbound("udp4-ffff", IP(src=C4_FFFF, dst=VIP4, ttl=64) / UDP(sport=40007, dport=7777) / Raw(pl), 7777, 7778, RS4)
    inbound("udp4-ffff-from-0", IP(src=C4_FFFF, dst=VIP4, ttl=64) / UDP(sport=40007, dport=7777, chksum=0) /
            Raw(pl), 7777, 7778, RS4)
    pl = ffff_payload(VIP4, C4_FFFF, 7777, 40007)
    outbound("udp4-ffff-reply", IP(src=RS4, dst=C4_FFFF, ttl=64) / UDP(sport=7778, dport=40007) / Raw(pl), VIP4, 7777)
    pl = ffff_payload(CLIENT6, RS6, 40008, 7778)
    inbound("udp6-ffff", IPv6(src=CLIENT6, dst=VIP6, hlim=64) / UDP(sport=40008, dport=7777) / Raw(pl),
            7777, 7778, RS6)
    return flows


FLOWS = _flows()
PAD = b"\xee"   # non-zero padding, so that checksumming it would show


def _frame(direction, l3, name):
    f = from_client(l3) if direction == "in" else from_rs(l3)
    if name.endswith("-padded"):
        b = bytes(f)
        assert len(b) < 60
        f = f.__class__(b + PAD * (60 - len(b)))
    return f


@pytest.fixture(scope="module")
def nat_run():
    frames = [_frame(d, l3, name) for name, d, l3, _, _ in FLOWS]
    run = run_lb(RULES, frames)
    return run


def test_every_packet_forwarded_and_valid(nat_run):
    """Every packet leaves exactly once, in order, and tshark (checksum
    validation on) flags nothing in the output; no drops, no malformed."""
    rows = check_run_captures(nat_run, expect_frames=len(FLOWS))
    assert len(nat_run.out) == len(FLOWS)
    for r in rows:
        proto = r["frame.protocols"][0]
        assert ":tcp" in proto or ":udp" in proto, proto
    lc = nat_run.lcore_counters()[0]
    assert lc["rx"] == len(FLOWS) and lc["tx"] == len(FLOWS)
    assert lc["drop"] == 0 and lc["malformed"] == 0


def _out_for(run, idx):
    assert len(run.out) == len(FLOWS), "expected %d output frames, got %d" % (len(FLOWS), len(run.out))
    return run.out[idx]


@pytest.mark.parametrize("idx", range(len(FLOWS)), ids=[f[0] for f in FLOWS])
def test_nat_rewrite(nat_run, idx):
    """Client -> VIP:vport leaves as client -> RS:rport (source untouched);
    RS:rport -> client leaves as VIP:vport -> client; TTL / hop limit minus
    one; payload, options and every other field intact; checksums valid
    (byte comparison with a scapy-built expectation). MACs: source = our
    port, destination = the RS's neighbour MAC inbound, the gateway's
    (default route) outbound."""
    name, direction, l3, want, mac = FLOWS[idx]
    out = _out_for(nat_run, idx)
    assert out.src == PORT_MAC, (name, out.src)
    assert out.dst == mac, (name, out.dst)
    got = l3_bytes(out)
    if got != want:
        g = out[IP] if IP in out else out[IPv6]
        w = g.__class__(want)
        raise AssertionError("%s: packet differs\n got: %s\nwant: %s" % (name, g.show2(dump=True),
                                                                           w.show2(dump=True)))


def test_udp_checksum_zero_result_sent_as_ffff(nat_run):
    """A rewritten UDP datagram whose checksum computes to 0 carries 0xFFFF."""
    names = [f[0] for f in FLOWS]
    for name in ("udp4-ffff", "udp4-ffff-from-0", "udp4-ffff-reply", "udp6-ffff"):
        out = _out_for(nat_run, names.index(name))
        assert out[UDP].chksum == 0xFFFF, (name, hex(out[UDP].chksum))


def test_udp_zero_checksum_gets_full_checksum(nat_run):
    """§7 NAT: a UDP datagram with checksum 0 gets a freshly computed full
    checksum (0 written as 0xFFFF), in both directions."""
    for name in ("udp0-in", "udp0-out"):
        idx = [f[0] for f in FLOWS].index(name)
        out = _out_for(nat_run, idx)
        ck = out[UDP].chksum
        assert ck != 0, name
        fresh = out[IP].copy()
        fresh[UDP].chksum = None
        assert IP(bytes(fresh))[UDP].chksum == ck, name


def test_connections_listed(nat_run):
    """The lcore line shows the connections the client packets created: tcp4,
    udp4, options client, zero-checksum client, tcp6, udp6, the two padded
    flows, the destination-options flow and the two 0xFFFF clients."""
    assert nat_run.lcore_counters()[0]["conns"] == 11


def test_tshark_reads_the_rewritten_fields(nat_run):
    """tshark's own decode of the output agrees with the expected rewrite:
    addresses, ports and TTL / hop limit of every frame."""
    from pathcheck import tshark_frames
    rows = tshark_frames(nat_run.out_paths[0], ["ip.src", "ip.dst", "ip.ttl", "ipv6.src", "ipv6.dst",
                                                "ipv6.hlim", "tcp.srcport", "tcp.dstport", "udp.srcport",
                                                "udp.dstport", "eth.src", "eth.dst"])
    assert len(rows) == len(FLOWS)
    for (name, _, _, want, mac), r in zip(FLOWS, rows):
        w = IP(want) if want[0] >> 4 == 4 else IPv6(want)
        if TCP not in w and UDP not in w:
            continue
        if w.version == 4:
            got = (r["ip.src"], r["ip.dst"], r["ip.ttl"])
            exp = ([w.src], [w.dst], [str(w.ttl)])
        else:
            got = (r["ipv6.src"], r["ipv6.dst"], r["ipv6.hlim"])
            exp = ([w.src], [w.dst], [str(w.hlim)])
        assert got == exp, name
        l4 = "tcp" if TCP in w else "udp"
        assert (r[l4 + ".srcport"], r[l4 + ".dstport"]) == ([str(w.sport)], [str(w.dport)]), name
        assert (r["eth.src"], r["eth.dst"]) == ([PORT_MAC], [mac]), name
