"""ICMP errors related to balanced connections (IPVS_SEMANTICS §8).

(a) ip_vs_in_icmp: an error from outside about a packet we sent to the
    client (quoted VIP:vport -> client) goes to the real server. NAT: outer
    destination := RS, quoted source := RS, quoted source port := rport;
    the quoted IP header checksum and the ICMP checksum are recomputed (the
    quoted TCP/UDP checksum is left as it was, as the kernel does). DR:
    forwarded unchanged to the RS's MAC.
(b) ip_vs_out_icmp: an error from a NAT real server about a client packet
    (quoted client -> RS:rport) leaves towards the client with outer source
    := VIP, quoted destination := VIP, quoted destination port := vport.
Both are forwarded packets: TTL / hop limit minus one (§7 common route step).

Only DEST_UNREACH, SOURCE_QUENCH and TIME_EXCEEDED are related for IPv4
(a parameter problem is not); for ICMPv6 every error type is. Errors about
unknown connections and echo requests are not load balanced.
"""

import pytest
from scapy.all import ICMP, IP, TCP, UDP, IPOption_NOP, ICMPv6DestUnreach, ICMPv6EchoRequest, ICMPv6ParamProblem, \
    ICMPv6PacketTooBig, ICMPv6TimeExceeded, IPv6, Raw

from pathcheck import (CLIENT4, CLIENT6, GW_MAC, PORT4, PORT_MAC, RS, VIP4, VIP6, check_run_captures, dec_ttl,
                       from_client, from_rs, icmp_error, inet_checksum, l3_bytes, run_lb)

RS4, RS6, DR4, DR6, TUN4 = "10.0.0.11", "2001:db8:a::11", "10.0.0.12", "2001:db8:a::12", "10.0.0.21"
ROUTER4, ROUTER6 = "198.51.100.77", "2001:db8:f::77"

RULES = """\
-A -t %(v4)s:80 -s rr
-a -t %(v4)s:80 -r %(rs4)s:8080 -m -w 1
-A -u %(v4)s:7777 -s rr
-a -u %(v4)s:7777 -r %(rs4)s:7778 -m -w 1
-A -t [%(v6)s]:80 -s rr
-a -t [%(v6)s]:80 -r [%(rs6)s]:8080 -m -w 1
-A -t %(v4)s:90 -s rr
-a -t %(v4)s:90 -r %(dr4)s:90 -g -w 1
-A -t [%(v6)s]:90 -s rr
-a -t [%(v6)s]:90 -r [%(dr6)s]:90 -g -w 1
-A -t %(v4)s:81 -s rr
-a -t %(v4)s:81 -r %(tun4)s:81 -i -w 1 --tun-type ipip
""" % {"v4": VIP4, "v6": VIP6, "rs4": RS4, "rs6": RS6, "dr4": DR4, "dr6": DR6, "tun4": TUN4}


def fix_quote(quote, src=None, dst=None, sport=None, dport=None):
    """The quoted packet with addresses / ports replaced; the quoted IPv4
    header checksum recomputed, the quoted L4 checksum untouched."""
    q = bytearray(quote)
    if q[0] >> 4 == 4:
        hl = (q[0] & 15) * 4
        if src:
            q[12:16] = bytes(IP(src=src))[12:16]
        if dst:
            q[16:20] = bytes(IP(dst=dst))[16:20]
        q[10:12] = b"\0\0"
        q[10:12] = inet_checksum(bytes(q[:hl])).to_bytes(2, "big")
    else:
        hl = 40
        if src:
            q[8:24] = bytes(IPv6(src=src))[8:24]
        if dst:
            q[24:40] = bytes(IPv6(dst=dst))[24:40]
    if sport is not None:
        q[hl:hl + 2] = sport.to_bytes(2, "big")
    if dport is not None:
        q[hl + 2:hl + 4] = dport.to_bytes(2, "big")
    return bytes(q)


def expected_error(l3, outer_src=None, outer_dst=None, **quote_changes):
    """The ICMP error `l3` as it should leave: outer addresses replaced, TTL /
    hop limit minus one, the quote fixed (see fix_quote), IPv4 header and
    ICMP / ICMPv6 checksums recomputed."""
    l3 = l3.__class__(bytes(l3))   # fill in lengths and checksums
    b = bytes(l3)
    if l3.version == 4:
        hl = l3.ihl * 4
        head, msg = bytearray(b[:hl]), bytearray(b[hl:l3.len])
        if outer_src:
            head[12:16] = bytes(IP(src=outer_src))[12:16]
        if outer_dst:
            head[16:20] = bytes(IP(dst=outer_dst))[16:20]
        head[8] -= 1
        head[10:12] = b"\0\0"
        head[10:12] = inet_checksum(bytes(head)).to_bytes(2, "big")
        msg[8:] = fix_quote(bytes(msg[8:]), **quote_changes)
        msg[2:4] = b"\0\0"
        msg[2:4] = inet_checksum(bytes(msg)).to_bytes(2, "big")
        return bytes(head) + bytes(msg)
    head, msg = bytearray(b[:40]), bytearray(b[40:40 + l3.plen])
    if outer_src:
        head[8:24] = bytes(IPv6(src=outer_src))[8:24]
    if outer_dst:
        head[24:40] = bytes(IPv6(dst=outer_dst))[24:40]
    head[7] -= 1
    msg[8:] = fix_quote(bytes(msg[8:]), **quote_changes)
    msg[2:4] = b"\0\0"
    ph = bytes(head[8:40]) + len(msg).to_bytes(4, "big") + b"\0\0\0\x3a"
    msg[2:4] = inet_checksum(ph + bytes(msg)).to_bytes(2, "big")
    return bytes(head) + bytes(msg)


# Connections first: TCP and UDP over IPv4, TCP over IPv6 (NAT), TCP over IPv4 and IPv6 (DR),
# TCP over IPv4 (TUN, IPIP).
SETUP = [
    from_client(IP(src=CLIENT4, dst=VIP4) / TCP(sport=40000, dport=80, flags="S", seq=1)),
    from_rs(IP(src=RS4, dst=CLIENT4) / TCP(sport=8080, dport=40000, flags="SA", seq=9, ack=2)),
    from_client(IP(src=CLIENT4, dst=VIP4) / UDP(sport=40001, dport=7777) / Raw(b"query")),
    from_client(IPv6(src=CLIENT6, dst=VIP6) / TCP(sport=40000, dport=80, flags="S", seq=1)),
    from_client(IP(src=CLIENT4, dst=VIP4) / TCP(sport=40002, dport=90, flags="S", seq=1)),
    from_client(IPv6(src=CLIENT6, dst=VIP6) / TCP(sport=40002, dport=90, flags="S", seq=1)),
    from_client(IP(src=CLIENT4, dst=VIP4) / TCP(sport=40003, dport=81, flags="S", seq=1)),
]

# (id, frame, expected output IP bytes or None when it must not reach a real server, dst MAC)
CASES = []


def _case(name, frame, want=None, mac=None, marker=None):
    """`marker`: bytes found only in this case's packet (for unrelated ones)."""
    CASES.append((name, frame, want, mac, marker))


def _build():
    # (a) from outside, about what we sent to the client: to the RS.
    q = IP(src=VIP4, dst=CLIENT4, ttl=63, id=77) / TCP(sport=80, dport=40000, flags="SA", seq=9, ack=2)
    l3 = IP(src=ROUTER4, dst=VIP4, ttl=60, id=501) / ICMP(type=3, code=1) / q
    _case("a-tcp4-host-unreach", from_client(l3),
          expected_error(l3, outer_dst=RS4, src=RS4, sport=8080), RS[RS4])
    l3 = IP(src=CLIENT4, dst=VIP4, ttl=64, id=502) / ICMP(type=3, code=4, nexthopmtu=1400) / \
        IP(src=VIP4, dst=CLIENT4, ttl=63, flags="DF") / TCP(sport=80, dport=40000, flags="A", seq=10, ack=2) / \
        Raw(b"reply data that did not fit")
    _case("a-tcp4-frag-needed", from_client(l3),
          expected_error(l3, outer_dst=RS4, src=RS4, sport=8080), RS[RS4])
    l3 = IP(src=ROUTER4, dst=VIP4, ttl=9, id=503) / ICMP(type=11, code=0) / \
        IP(src=VIP4, dst=CLIENT4, ttl=1) / UDP(sport=7777, dport=40001) / Raw(b"answer")
    _case("a-udp4-time-exceeded", from_client(l3),
          expected_error(l3, outer_dst=RS4, src=RS4, sport=7778), RS[RS4])
    l3 = IPv6(src=ROUTER6, dst=VIP6, hlim=60) / ICMPv6DestUnreach(code=3) / \
        IPv6(src=VIP6, dst=CLIENT6, hlim=63) / TCP(sport=80, dport=40000, flags="SA", seq=9, ack=2)
    _case("a-tcp6-addr-unreach", from_client(l3),
          expected_error(l3, outer_dst=RS6, src=RS6, sport=8080), RS[RS6])
    l3 = IPv6(src=ROUTER6, dst=VIP6, hlim=60) / ICMPv6PacketTooBig(mtu=1280) / \
        IPv6(src=VIP6, dst=CLIENT6, hlim=63) / TCP(sport=80, dport=40000, flags="A", seq=10, ack=2) / Raw(b"d" * 64)
    _case("a-tcp6-too-big", from_client(l3),
          expected_error(l3, outer_dst=RS6, src=RS6, sport=8080), RS[RS6])
    l3 = IPv6(src=ROUTER6, dst=VIP6, hlim=60) / ICMPv6ParamProblem(code=0, ptr=6) / \
        IPv6(src=VIP6, dst=CLIENT6, hlim=63) / TCP(sport=80, dport=40000, flags="A", seq=10, ack=2)
    _case("a-tcp6-param-problem", from_client(l3),
          expected_error(l3, outer_dst=RS6, src=RS6, sport=8080), RS[RS6])
    # (a) for a DR connection: forwarded unchanged but for the TTL, to the RS's MAC.
    l3 = IP(src=ROUTER4, dst=VIP4, ttl=60, id=504) / ICMP(type=3, code=1) / \
        IP(src=VIP4, dst=CLIENT4, ttl=63) / TCP(sport=90, dport=40002, flags="SA", seq=9, ack=2)
    _case("a-dr4-host-unreach", from_client(l3), dec_ttl(bytes(l3)), RS[DR4])
    l3 = IPv6(src=ROUTER6, dst=VIP6, hlim=60) / ICMPv6DestUnreach(code=3) / \
        IPv6(src=VIP6, dst=CLIENT6, hlim=63) / TCP(sport=90, dport=40002, flags="SA", seq=9, ack=2)
    _case("a-dr6-addr-unreach", from_client(l3), dec_ttl(bytes(l3)), RS[DR6])
    # (a) with IP options in the quoted header: the port sits after them.
    q = IP(src=VIP4, dst=CLIENT4, ttl=63, options=[IPOption_NOP()] * 4) / \
        TCP(sport=80, dport=40000, flags="SA", seq=9, ack=2)
    l3 = IP(src=ROUTER4, dst=VIP4, ttl=60, id=506) / ICMP(type=3, code=1) / q
    _case("a-tcp4-quote-options", from_client(l3),
          expected_error(l3, outer_dst=RS4, src=RS4, sport=8080), RS[RS4])
    # (b) from the RS, about the client's packet: to the client, from the VIP.
    l3 = IP(src=RS4, dst=CLIENT4, ttl=64, id=603) / ICMP(type=3, code=3) / \
        IP(src=CLIENT4, dst=RS4, ttl=63, options=[IPOption_NOP()] * 4) / \
        TCP(sport=40000, dport=8080, flags="A", seq=2, ack=10)
    _case("b-tcp4-quote-options", from_rs(l3),
          expected_error(l3, outer_src=VIP4, dst=VIP4, dport=80), GW_MAC)
    l3 = IP(src=RS4, dst=CLIENT4, ttl=64, id=601) / ICMP(type=3, code=3) / \
        IP(src=CLIENT4, dst=RS4, ttl=63) / TCP(sport=40000, dport=8080, flags="A", seq=2, ack=10)
    _case("b-tcp4-port-unreach", from_rs(l3),
          expected_error(l3, outer_src=VIP4, dst=VIP4, dport=80), GW_MAC)
    l3 = IP(src=RS4, dst=CLIENT4, ttl=64, id=602) / ICMP(type=3, code=3) / \
        IP(src=CLIENT4, dst=RS4, ttl=63) / UDP(sport=40001, dport=7778) / Raw(b"query")
    _case("b-udp4-port-unreach", from_rs(l3),
          expected_error(l3, outer_src=VIP4, dst=VIP4, dport=7777), GW_MAC)
    l3 = IPv6(src=RS6, dst=CLIENT6, hlim=64) / ICMPv6DestUnreach(code=4) / \
        IPv6(src=CLIENT6, dst=RS6, hlim=63) / TCP(sport=40000, dport=8080, flags="A", seq=2, ack=10)
    _case("b-tcp6-port-unreach", from_rs(l3),
          expected_error(l3, outer_src=VIP6, dst=VIP6, dport=80), GW_MAC)
    l3 = IPv6(src=RS6, dst=CLIENT6, hlim=64) / ICMPv6TimeExceeded(code=1) / \
        IPv6(src=CLIENT6, dst=RS6, hlim=63) / TCP(sport=40000, dport=8080, flags="A", seq=2, ack=10)
    _case("b-tcp6-time-exceeded", from_rs(l3),
          expected_error(l3, outer_src=VIP6, dst=VIP6, dport=80), GW_MAC)
    # Related, but TTL 1: not forwarded, and no ICMP error about an ICMP error (RFC 1122 3.2.2).
    _case("a-tcp4-ttl1", from_client(IP(src=ROUTER4, dst=VIP4, ttl=1, id=505) / ICMP(type=3, code=1) /
                                     IP(src=VIP4, dst=CLIENT4, ttl=63) /
                                     TCP(sport=80, dport=40000, flags="SA", seq=0x0BADF010, ack=2)),
          marker=bytes.fromhex("0BADF010"))
    # Not related: must not reach a real server.
    _case("echo4-to-vip", from_client(IP(src=CLIENT4, dst=VIP4, id=701) / ICMP(type=8, id=5, seq=1) /
                                      Raw(b"ping-marker-4")), marker=b"ping-marker-4")
    _case("echo6-to-vip", from_client(IPv6(src=CLIENT6, dst=VIP6) / ICMPv6EchoRequest(id=5, seq=1, data=b"ping-marker-6")),
          marker=b"ping-marker-6")
    _case("param-problem4", from_client(IP(src=ROUTER4, dst=VIP4, ttl=60, id=702) / ICMP(type=12, code=0) /
                                        IP(src=VIP4, dst=CLIENT4, ttl=63) /
                                        TCP(sport=80, dport=40000, flags="SA", seq=0x0BADF00D, ack=2)),
          marker=bytes.fromhex("0BADF00D"))
    _case("unknown-conn4", from_client(IP(src=ROUTER4, dst=VIP4, ttl=60, id=703) / ICMP(type=3, code=1) /
                                       IP(src=VIP4, dst=CLIENT4, ttl=63) /
                                       TCP(sport=80, dport=40999, flags="SA", seq=0x0BADF00E, ack=2)),
          marker=bytes.fromhex("0BADF00E"))
    _case("unknown-conn6", from_client(IPv6(src=ROUTER6, dst=VIP6, hlim=60) / ICMPv6DestUnreach(code=3) /
                                       IPv6(src=VIP6, dst=CLIENT6, hlim=63) /
                                       TCP(sport=80, dport=40999, flags="SA", seq=0x0BADF00F, ack=2)),
          marker=bytes.fromhex("0BADF00F"))


_build()


@pytest.fixture(scope="module")
def run():
    return run_lb(RULES, SETUP + [c[1] for c in CASES] + [from_client(TUN_ERROR)])


def test_output_valid(run):
    """tshark (checksums on) accepts every frame; the outer IP, ICMP and
    quoted IP header checksums are all verified good; nothing malformed."""
    rows = check_run_captures(run)
    quoted = [r for r in rows if ":icmp:ip" in r["frame.protocols"][0]]
    # Outer (and, for the tunnelled one, the IPIP outer) and quoted IPv4 headers all verified good.
    assert quoted and all(len(r["ip.checksum.status"]) >= 2 and set(r["ip.checksum.status"]) == {"1"}
                          for r in quoted)
    assert run.lcore_counters()[0]["malformed"] == 0


def _icmp_out(run):
    """Output ICMP error frames (not echo), keyed by nothing: a list."""
    outs = []
    for f in run.out:
        b = l3_bytes(f)
        if (IP in f and f[IP].proto == 1 and b[f[IP].ihl * 4] not in (0, 8)) or \
                (IPv6 in f and f[IPv6].nh == 58 and b[40] < 128):
            outs.append(f)
    return outs


@pytest.mark.parametrize("idx", [i for i, c in enumerate(CASES) if c[2] is not None],
                         ids=[c[0] for c in CASES if c[2] is not None])
def test_related_error_forwarded(run, idx):
    name, frame, want, mac, _ = CASES[idx]
    matches = [f for f in run.out if l3_bytes(f) == want]
    if not matches:
        others = "\n".join(f.summary() + " " + l3_bytes(f).hex() for f in _icmp_out(run))
        raise AssertionError("%s: no output equals the expected rewrite\nwant %s\nICMP out:\n%s"
                             % (name, want.hex(), others))
    assert len(matches) == 1
    f = matches[0]
    assert (f.src, f.dst) == (PORT_MAC, mac), (name, f.src, f.dst)
    e = icmp_error(f)
    assert e["csum_ok"]


@pytest.mark.parametrize("idx", [i for i, c in enumerate(CASES) if c[2] is None],
                         ids=[c[0] for c in CASES if c[2] is None])
def test_unrelated_icmp_not_balanced(run, idx):
    """Echo requests, IPv4 parameter problems and errors about no known
    connection do not reach any real server (by MAC or address), rewritten
    or not. (What else happens to them -- host stack, pass-through -- is not
    part of the load-balancing contract.)"""
    name, frame, _, _, marker = CASES[idx]
    assert marker in bytes(frame)
    for f in run.out:
        fb = l3_bytes(f)
        if marker not in fb:
            continue
        dst = IP(fb).dst if fb[0] >> 4 == 4 else IPv6(fb).dst
        assert f.dst not in RS.values() and dst not in RS, "%s reached a real server: %s" % (name, f.summary())
        if name.startswith("echo") and name.endswith("to-vip"):
            # Echo to a VIP is answered by the balancer itself: the reply goes
            # back to the sender from the VIP, payload (and the marker) kept.
            req = IP(l3_bytes(frame)) if fb[0] >> 4 == 4 else IPv6(l3_bytes(frame))
            rep = IP(fb) if fb[0] >> 4 == 4 else IPv6(fb)
            assert (rep.src, rep.dst) == (req.dst, req.src), "%s: not an echo reply: %s" % (name, f.summary())
            assert f.src == PORT_MAC and f.dst == frame.src
            continue
        # Whatever leaves is not rewritten: the packet as received (if passed through).
        assert fb == l3_bytes(frame), "%s left rewritten: %s" % (name, f.summary())


def test_related_error_with_ttl_1_vanishes(run):
    """A related error that arrives with TTL 1 is dropped (it cannot be
    forwarded) and, being an ICMP error itself, draws no time exceeded:
    nothing quoting or carrying it leaves."""
    name, frame, _, _, marker = [c for c in CASES if c[0] == "a-tcp4-ttl1"][0]
    assert [f.summary() for f in run.out if marker in bytes(f)] == []


def test_no_connection_created_by_icmp(run):
    """ICMP does not schedule new connections (schedule_icmp = 0): only the
    six set-up connections exist."""
    assert run.lcore_counters()[0]["conns"] == len(SETUP) - 1   # the SETUP SYN-ACK is a reply


TUN_ERROR = IP(src=ROUTER4, dst=VIP4, ttl=60, id=507) / ICMP(type=3, code=1) / \
    IP(src=VIP4, dst=CLIENT4, ttl=63) / TCP(sport=81, dport=40003, flags="SA", seq=9, ack=2)


def test_related_error_for_tun_connection_is_encapsulated(run):
    """§8 ip_vs_in_icmp, TUN: the error goes through the connection's
    transmitter -- IPIP to the real server, the ICMP packet inside unchanged
    but for its TTL."""
    inner = dec_ttl(bytes(TUN_ERROR))
    got = [f for f in run.out if l3_bytes(f)[20:] == inner]
    assert len(got) == 1, [f.summary() for f in run.out if IP in f and f[IP].dst == TUN4]
    f = got[0]
    outer = IP(l3_bytes(f)[:20])
    assert (f.src, f.dst) == (PORT_MAC, RS[TUN4])
    assert (outer.src, outer.dst, outer.proto, outer.ttl) == (PORT4, TUN4, 4, 59)
