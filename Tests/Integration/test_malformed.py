"""Malformed input on the packet path: frames cut mid-header, a bad IHL, an
IPv4 total length or IPv6 payload length past the frame, a TCP data offset
past the segment, zero-length UDP, and more, all addressed to a NAT VIP and
mixed with good traffic. The good packets are forwarded exactly as they
should be; every malformed frame is dropped, counted in the final
`lcore N: ... malformed=K` line and in the `malformed: reason=count`
summary; switchyard exits cleanly."""

import struct

import pytest
from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw

from pathcheck import (CLIENT4, CLIENT6, RS, VIP4, VIP6, check_run_captures, expected_forwarded, from_client,
                       l3_bytes, malformed_summary, run_lb)
from sylib import LB_MAC, ROUTER_MAC

RS4, RS6 = "10.0.0.11", "2001:db8:a::11"
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



def good_tcp4(sport, payload=b"hello"):
    return from_client(IP(src=CLIENT4, dst=VIP4, ttl=64) / TCP(sport=sport, dport=80, flags="S") / Raw(payload))


def good_udp4(sport):
    return from_client(IP(src=CLIENT4, dst=VIP4, ttl=64) / UDP(sport=sport, dport=7777) / Raw(b"q" * 30))


def good_tcp6(sport):
    return from_client(IPv6(src=CLIENT6, dst=VIP6, hlim=64) / TCP(sport=sport, dport=80, flags="S") / Raw(b"six"))


def good_udp6(sport):
    return from_client(IPv6(src=CLIENT6, dst=VIP6, hlim=64) / UDP(sport=sport, dport=7777) / Raw(b"u6" * 8))


def _set(b, off, val):
    b = bytearray(b)
    b[off:off + len(val)] = val
    return bytes(b)


def _malformed():
    """(name, frame bytes, expected reason)."""
    tcp4 = bytes(IP(src=CLIENT4, dst=VIP4, ttl=64) / TCP(sport=50000, dport=80, flags="S"))
    udp4 = bytes(IP(src=CLIENT4, dst=VIP4, ttl=64) / UDP(sport=50001, dport=7777) / Raw(b"x" * 20))
    tcp6 = bytes(IPv6(src=CLIENT6, dst=VIP6, hlim=64) / TCP(sport=50002, dport=80, flags="S"))
    udp6 = bytes(IPv6(src=CLIENT6, dst=VIP6, hlim=64) / UDP(sport=50003, dport=7777) / Raw(b"y" * 20))
    eth = bytes(Ether(src=ROUTER_MAC, dst=LB_MAC, type=0x0800))
    eth6 = bytes(Ether(src=ROUTER_MAC, dst=LB_MAC, type=0x86DD))
    m = [
        ("ethernet-cut", eth[:10], "truncated-ethernet"),
        ("ipv4-cut-mid-header", eth + tcp4[:12], "truncated-ipv4"),
        ("ipv4-ihl-4", eth + _set(tcp4, 0, b"\x44"), "bad-ihl"),
        ("ipv4-ihl-1", eth + _set(tcp4, 0, b"\x41"), "bad-ihl"),
        ("ipv4-version-5", eth + _set(tcp4, 0, b"\x55"), "bad-ipv4-version"),
        ("ipv4-total-length-past-frame", eth + _set(tcp4, 2, struct.pack("!H", 1000)), "bad-ipv4-total-length"),
        ("ipv4-total-length-below-ihl", eth + _set(tcp4, 2, struct.pack("!H", 12)), "bad-ipv4-total-length"),
        ("tcp-data-offset-past-end", eth + _set(tcp4, 32, b"\xf0"), "bad-tcp-data-offset"),
        ("tcp-data-offset-below-5", eth + _set(tcp4, 32, b"\x20"), "bad-tcp-data-offset"),
        ("tcp-cut-mid-header", eth + _set(tcp4[:30], 2, struct.pack("!H", 30)), "truncated-tcp"),
        ("udp-length-0", eth + _set(udp4, 24, b"\0\0"), "bad-udp-length"),
        ("udp-length-past-ip", eth + _set(udp4, 24, struct.pack("!H", 200)), "bad-udp-length"),
        ("udp-cut-mid-header", eth + _set(udp4[:24], 2, struct.pack("!H", 24)), "truncated-udp"),
        ("icmp-cut", eth + bytes(IP(src=CLIENT4, dst=VIP4, proto=1, len=24)) + b"\x03\x01\0\0", "truncated-icmp"),
        ("vlan-cut", bytes(Ether(src=ROUTER_MAC, dst=LB_MAC, type=0x8100)) + b"\x00\x64", "truncated-vlan"),
        ("ipv6-cut-mid-header", eth6 + tcp6[:20], "truncated-ipv6"),
        ("ipv6-payload-length-past-frame", eth6 + _set(tcp6, 4, struct.pack("!H", 500)), "bad-ipv6-payload-length"),
        ("ipv6-tcp-data-offset-past-end", eth6 + _set(tcp6, 52, b"\xf0"), "bad-tcp-data-offset"),
        ("ipv6-udp-length-0", eth6 + _set(udp6, 44, b"\0\0"), "bad-udp-length"),
        ("ipv6-ext-header-cut", eth6 + bytes(IPv6(src=CLIENT6, dst=VIP6, nh=60, plen=4)) + b"\x06\x00\x01\x04",
         "truncated-extension-header"),
    ]
    # A good TCP/IPv4 frame and a good UDP/IPv6 frame cut at every length.
    full4 = eth + tcp4
    for k in range(1, len(full4)):
        reason = "truncated-ethernet" if k < 14 else "truncated-ipv4" if k < 34 else "bad-ipv4-total-length"
        m.append(("cut4-%d" % k, full4[:k], reason))
    full6 = eth6 + udp6
    for k in range(14, len(full6)):
        reason = "truncated-ipv6" if k < 54 else "bad-ipv6-payload-length"
        m.append(("cut6-%d" % k, full6[:k], reason))
    return m


MALFORMED = _malformed()


def _mix():
    """Good and malformed frames interleaved: (frame, good?)"""
    mix = []
    sport = 30000
    for i, (_, b, _) in enumerate(MALFORMED):
        if i % 3 == 0:
            sport += 1
            good = [good_tcp4, good_udp4, good_tcp6, good_udp6][(i // 3) % 4](sport)
            mix.append((good, True))
        mix.append((Raw(b), False))   # written to the capture byte for byte
    return mix


MIX = _mix()


@pytest.fixture(scope="module")
def run():
    return run_lb(RULES, [f for f, _ in MIX])


def test_never_crashes_and_counts(run):
    """Clean exit (run_lb checks rc 0 and the final counters); malformed=
    equals the number of malformed frames; rx counts everything."""
    lc = run.lcore_counters()[0]
    n_bad = sum(1 for _, good in MIX if not good)
    assert lc["rx"] == len(MIX)
    assert lc["malformed"] == n_bad, (lc["malformed"], n_bad)


def test_malformed_summary_by_reason(run):
    want = {}
    for _, _, reason in MALFORMED:
        want[reason] = want.get(reason, 0) + 1
    got = malformed_summary(run)
    assert got == want


def test_good_packets_forwarded_exactly(run):
    """Only the good packets leave, in order, each the exact NAT rewrite;
    tshark (checksums on) finds nothing wrong."""
    goods = [f for f, good in MIX if good]
    check_run_captures(run, expect_frames=len(goods))
    assert run.port_counters()[0]["tx"] == len(goods)
    for f, out in zip(goods, run.out):
        l3 = f.payload
        rs = RS6 if l3.version == 6 else RS4
        rport = 8080 if l3.payload.dport == 80 else 7778
        assert l3_bytes(out) == expected_forwarded(l3, dst=rs, dport=rport), f.summary()
        assert out.dst == RS[rs]


def test_no_connection_from_malformed(run):
    """Malformed frames never reach the scheduler: one connection per good packet."""
    assert run.lcore_counters()[0]["conns"] == sum(1 for _, good in MIX if good)


def test_icmp_errors_with_broken_quotes_not_forwarded():
    """ICMP errors to the VIP whose quoted packet is cut short, has a bad IHL
    or the wrong version, about an existing NAT connection: never matched to
    the connection, never sent to the real server; the run stays healthy
    (the connection's next packet is still NAT'd)."""
    from scapy.all import ICMP, ICMPv6DestUnreach
    q4 = bytes(IP(src=VIP4, dst=CLIENT4, ttl=63) / TCP(sport=80, dport=40000, flags="SA"))
    q6 = bytes(IPv6(src=VIP6, dst=CLIENT6, hlim=63) / TCP(sport=80, dport=40000, flags="SA"))
    quotes4 = [q4[:4], q4[:20], q4[:22], b"\x43" + q4[1:28], b"\x4f" + q4[1:28], b"\x65" + q4[1:28]]
    quotes6 = [q6[:10], q6[:40], q6[:42], b"\x45" + q6[1:48]]
    frames = [good_tcp4(40000), good_tcp6(40000)]
    frames += [from_client(IP(src="198.51.100.77", dst=VIP4, ttl=60) / ICMP(type=3, code=1) / Raw(q)) for q in quotes4]
    frames += [from_client(IPv6(src="2001:db8:f::77", dst=VIP6, hlim=60) / ICMPv6DestUnreach(code=1) / Raw(q))
               for q in quotes6]
    last = from_client(IP(src=CLIENT4, dst=VIP4, ttl=64) / TCP(sport=40000, dport=80, flags="A", seq=2))
    frames.append(last)
    run = run_lb(RULES, frames)
    to_rs = [f for f in run.out if f.dst in RS.values()]
    assert len(to_rs) == 3, [f.summary() for f in to_rs]      # the two SYNs and the final ACK
    for f, sent in zip(to_rs, [frames[0], frames[1], last]):
        rs = RS6 if sent.payload.version == 6 else RS4
        assert l3_bytes(f) == expected_forwarded(sent.payload, dst=rs, dport=8080)
    # Anything else that left (the errors, not balanced) left untouched: the
    # broken quotes were not "fixed" or rewritten.
    sent_bytes = {bytes(f) for f in frames}
    for f in run.out:
        if f.dst not in RS.values():
            assert bytes(f) in sent_bytes, f.summary()
