"""MTU and TTL on the packet path (IPVS_SEMANTICS §7 "Common route step",
DESIGN "Contract details": ICMP errors come from the VIP; TTL decremented on
every forwarded packet; --max-pkt-len N gives an IP MTU of N-18).

Run "tun" (default MTU 1500):
- an IPv4 DF packet that fits the link but not after encapsulation gets ICMP
  fragmentation-needed with MTU = 1500 - outer headers (IPIP 20, GUE 20+8+4,
  GRE 20+4 / 20+8 with checksum) from the VIP, and is not forwarded; one that
  fits exactly after encapsulation is forwarded;
- IPv6 in an IPv6 tunnel: packet too big (always, no DF in IPv6) with 1500 - 40
  (- 12 GUE, - 4/8 GRE);
- an IPv4 packet without DF that does not fit after encapsulation is sent,
  and the outer packet must then respect the link MTU (fragmented);
- TTL / hop limit 1 (NAT, DR, TUN): ICMP time exceeded from the VIP, nothing
  forwarded; TTL 2 is forwarded with TTL 1.

Run "nat" (--max-pkt-len 1298, so MTU 1280, the IPv6 minimum):
- IPv4 without DF larger than the MTU (NAT both ways, DR) leaves in fragments
  that reassemble into exactly the forwarded packet;
- IPv4 with DF: fragmentation-needed, MTU 1280, quoting the packet as the
  client sent it (to the VIP, not the real server);
- IPv6 (NAT, DR): packet too big with MTU 1280.
"""

import pytest
from scapy.all import IP, TCP, UDP, IPOption_Router_Alert, IPOption_RR, IPv6, Raw

from pathcheck import (CLIENT4, CLIENT6, GW_MAC, PORT4, PORT_MAC, RS, VIP4, VIP6, check_run_captures, dec_ttl,
                       expected_forwarded, from_client, from_rs, icmp_error, l3_bytes, quote_matches,
                       reassemble_ipv4, run_lb)
from sylib import ROUTER_MAC

GUE = "--tun-type gue --tun-port 6080"
# name, VIP port, tunnel options, RS v4, RS v6, outer overhead (v4 outer; v6 outer adds 20)
TUNNELS = [
    ("ipip", 81, "--tun-type ipip", "10.0.0.21", "2001:db8:a::21", 20),
    ("gue", 82, GUE + " --tun-nocsum", "10.0.0.22", "2001:db8:a::22", 32),
    ("gre", 84, "--tun-type gre --tun-nocsum", "10.0.0.24", "2001:db8:a::24", 24),
    ("gre-csum", 85, "--tun-type gre --tun-csum", "10.0.0.25", "2001:db8:a::25", 28),
]
NAT_RS4, NAT_RS6, DR_RS4, DR_RS6 = "10.0.0.11", "2001:db8:a::11", "10.0.0.12", "2001:db8:a::12"


def _rules():
    lines = ["-A -t %s:80 -s rr" % VIP4, "-a -t %s:80 -r %s:8080 -m -w 1" % (VIP4, NAT_RS4),
             "-A -u %s:7777 -s rr" % VIP4, "-a -u %s:7777 -r %s:7778 -m -w 1" % (VIP4, NAT_RS4),
             "-A -t [%s]:80 -s rr" % VIP6, "-a -t [%s]:80 -r [%s]:8080 -m -w 1" % (VIP6, NAT_RS6),
             "-A -t %s:90 -s rr" % VIP4, "-a -t %s:90 -r %s:90 -g -w 1" % (VIP4, DR_RS4),
             "-A -t [%s]:90 -s rr" % VIP6, "-a -t [%s]:90 -r [%s]:90 -g -w 1" % (VIP6, DR_RS6)]
    for _, port, opts, r4, r6, _ in TUNNELS:
        lines += ["-A -t %s:%d -s rr" % (VIP4, port), "-a -t %s:%d -r %s:%d -i -w 1 %s" % (VIP4, port, r4, port, opts),
                  "-A -t [%s]:%d -s rr" % (VIP6, port),
                  "-a -t [%s]:%d -r [%s]:%d -i -w 1 %s" % (VIP6, port, r6, port, opts)]
    return "\n".join(lines) + "\n"


def syn4(dport, total, df=True, ttl=64, sport=45000, src=CLIENT4, ident=1):
    """A client SYN of `total` bytes of IP (a SYN with data opens the connection)."""
    p = IP(src=src, dst=VIP4, ttl=ttl, id=ident, flags="DF" if df else 0) / TCP(sport=sport, dport=dport, flags="S")
    return p / Raw(bytes((i * 7) & 0xFF for i in range(total - 40)))


def syn6(dport, total, hlim=64, sport=45000):
    p = IPv6(src=CLIENT6, dst=VIP6, hlim=hlim) / TCP(sport=sport, dport=dport, flags="S")
    return p / Raw(bytes((i * 13) & 0xFF for i in range(total - 60)))


def _check_error(frame, original, v, icmp_type, code, word, vip, client):
    """An ICMP error from the VIP to the client about `original`, leaving
    from our port, checksums valid, quoting as much of the packet as fits
    576 bytes (IPv4) / 1280 (IPv6), as Linux's icmp_send / icmp6_send do."""
    e = icmp_error(frame)
    assert frame.src == PORT_MAC
    # Back towards the client: the gateway (route) or the frame's sender; here both are the router.
    assert frame.dst in (ROUTER_MAC, GW_MAC), frame.dst
    assert e["v"] == v and (e["src"], e["dst"]) == (vip, client), (e["src"], e["dst"])
    assert (e["type"], e["code"]) == (icmp_type, code), (e["type"], e["code"])
    assert e["word"] == word, (e["word"], word)
    assert e["csum_ok"], "bad ICMP or IP checksum"
    orig = bytes(original)
    room = (576 - 28) if v == 4 else (1280 - 48)
    assert len(e["quote"]) == min(len(orig), room), (len(e["quote"]), len(orig))
    why = quote_matches(e["quote"], orig)
    assert why is None, why


# ---------------------------------------------------------------- run "tun"

TUN_CASES = []   # (id, input frame, expectation)


def _tun_cases():
    cases = []
    sport = 46000
    for name, port, _, r4, r6, over in TUNNELS:
        sport += 1
        mtu4 = 1500 - over
        cases.append(("%s-df-too-big" % name, from_client(syn4(port, mtu4 + 1, sport=sport)), ("frag-needed", mtu4)))
        cases.append(("%s-df-fits" % name, from_client(syn4(port, mtu4, sport=sport + 100)), ("tunnel", r4)))
        mtu6 = 1500 - over - 20
        cases.append(("%s-v6-too-big" % name, from_client(syn6(port, mtu6 + 1, sport=sport)), ("too-big6", mtu6)))
        cases.append(("%s-v6-fits" % name, from_client(syn6(port, mtu6, sport=sport + 100)), ("tunnel", r6)))
    for dport, kind in [(80, "nat"), (90, "dr"), (81, "tun")]:
        cases.append(("ttl1-%s" % kind, from_client(syn4(dport, 100, ttl=1, sport=47000 + dport)), ("ttl",)))
        cases.append(("hlim1-%s" % kind, from_client(syn6(dport, 100, hlim=1, sport=47000 + dport)), ("ttl",)))
    # TTL is checked before the MTU (§7 steps 1, 2): time exceeded, not frag-needed.
    cases.append(("ttl1-and-too-big-tun", from_client(syn4(81, 1490, ttl=1, sport=47300)), ("ttl",)))
    cases.append(("hlim1-and-too-big-tun6", from_client(syn6(81, 1490, hlim=1, sport=47300)), ("ttl",)))
    cases.append(("ttl2-nat", from_client(syn4(80, 100, ttl=2, sport=47200)), ("ttl2",)))
    cases.append(("hlim2-dr", from_client(syn6(90, 100, hlim=2, sport=47201)), ("ttl2",)))
    return cases


TUN_CASES = _tun_cases()


@pytest.fixture(scope="module")
def tun_run():
    return run_lb(_rules(), [c[1] for c in TUN_CASES])


def test_tun_run_output_valid(tun_run):
    """One output frame per input (an error or the forwarded packet), all
    valid for tshark; errors counted as icmp=, dropped originals as drop=."""
    # GUE without checksum over IPv6 carries UDP checksum 0 (as the kernel's).
    zero = [n + 1 for n, c in enumerate(TUN_CASES) if c[0] == "gue-v6-fits"]
    check_run_captures(tun_run, expect_frames=len(TUN_CASES), zero_udp6=zero)
    n_err = sum(1 for c in TUN_CASES if c[2][0] in ("frag-needed", "too-big6", "ttl"))
    lc = tun_run.lcore_counters()[0]
    assert lc["icmp"] == n_err and lc["drop"] == n_err and lc["tx"] == len(TUN_CASES), lc


@pytest.mark.parametrize("idx", range(len(TUN_CASES)), ids=[c[0] for c in TUN_CASES])
def test_tun_mtu_and_ttl(tun_run, idx):
    name, frame, want = TUN_CASES[idx]
    assert len(tun_run.out) == len(TUN_CASES)
    out = tun_run.out[idx]
    l3 = frame.payload
    v = l3.version
    if want[0] == "frag-needed":
        _check_error(out, l3, 4, 3, 4, want[1], VIP4, CLIENT4)
    elif want[0] == "too-big6":
        _check_error(out, l3, 6, 2, 0, want[1], VIP6, CLIENT6)
    elif want[0] == "ttl":
        if v == 4:
            _check_error(out, l3, 4, 11, 0, 0, VIP4, CLIENT4)
        else:
            _check_error(out, l3, 6, 3, 0, 0, VIP6, CLIENT6)
    elif want[0] == "ttl2":
        # Forwarded with TTL / hop limit 1.
        got = l3_bytes(out)
        assert (got[8] if v == 4 else got[7]) == 1
    else:
        # The largest packet that fits: encapsulated, exactly one full-MTU frame.
        assert out.dst == RS[want[1]]
        got = l3_bytes(out)
        assert len(got) == 1500, len(got)
        assert got.endswith(dec_ttl(bytes(l3)))


def test_tun_without_df_respects_link_mtu():
    """IPv4 without DF, 1490 bytes, IPIP: the 1510-byte outer packet (DF 0, as
    the inner) cannot leave whole on a 1500 link. IPVS sets ignore_df and
    hands it to ip_local_out, which fragments it: every frame within the
    MTU, and the fragments reassemble into outer header + inner packet."""
    inner = syn4(81, 1490, df=False, sport=48000)
    run = run_lb(_rules(), [from_client(inner)])
    check_run_captures(run)
    assert run.out, "nothing sent"
    for f in run.out:
        assert len(l3_bytes(f)) <= 1500, "a %d-byte IP packet on a 1500-byte MTU link" % len(l3_bytes(f))
    whole = reassemble_ipv4(run.out) if len(run.out) > 1 else l3_bytes(run.out[0])
    outer = IP(whole)
    assert (outer.src, outer.dst, outer.proto, outer.flags.DF) == (PORT4, "10.0.0.21", 4, False)
    assert whole[20:] == dec_ttl(bytes(inner))


# ---------------------------------------------------------------- run "nat" (MTU 1280)

MTU = 1280   # IPv6 needs at least 1280 on a link (RFC 8200)


def _payload(n, seed):
    return Raw(bytes((i * seed + 3) & 0xFF for i in range(n)))


NAT_CASES = [
    # (id, frame, kind)
    ("nat-df", from_client(IP(src=CLIENT4, dst=VIP4, ttl=64, id=0x1111, flags="DF") /
                           TCP(sport=45000, dport=80, flags="S") / _payload(1360, 3)), "frag-needed"),
    ("nat-df-fits", from_client(IP(src=CLIENT4, dst=VIP4, ttl=64, id=0x1112, flags="DF") /
                                TCP(sport=45010, dport=80, flags="S") / _payload(MTU - 40, 5)), "whole"),
    ("nat-tcp-frag", from_client(IP(src=CLIENT4, dst=VIP4, ttl=64, id=0x2222) /
                                 TCP(sport=45001, dport=80, flags="S") / _payload(1283, 7)), "frag"),
    ("nat-reply-frag", from_rs(IP(src=NAT_RS4, dst=CLIENT4, ttl=64, id=0x3333) /
                               TCP(sport=8080, dport=45001, flags="SA") / _payload(1900, 11)), "frag"),
    ("nat-udp-frag", from_client(IP(src=CLIENT4, dst=VIP4, ttl=30, id=0x4444) /
                                 UDP(sport=45002, dport=7777) / _payload(2000 - 28, 13)), "frag"),
    ("dr-frag", from_client(IP(src=CLIENT4, dst=VIP4, ttl=64, id=0x5555) /
                            TCP(sport=45003, dport=90, flags="S") / _payload(1283, 17)), "frag"),
    # IPv4 options: the first fragment carries them all; later ones only those
    # with the copy flag (router alert yes, record route no).
    ("nat-options-frag", from_client(IP(src=CLIENT4, dst=VIP4, ttl=64, id=0x6666, options=[
        IPOption_RR(routers=["0.0.0.0"] * 3), IPOption_Router_Alert()]) /
        TCP(sport=45007, dport=80, flags="S") / _payload(1500, 31)), "frag"),
    ("nat6-too-big", from_client(IPv6(src=CLIENT6, dst=VIP6, hlim=64) /
                                 TCP(sport=45004, dport=80, flags="S") / _payload(1300, 19)), "too-big6"),
    ("dr6-too-big", from_client(IPv6(src=CLIENT6, dst=VIP6, hlim=64) /
                                TCP(sport=45005, dport=90, flags="S") / _payload(MTU - 60 + 1, 23)), "too-big6"),
    ("nat6-fits", from_client(IPv6(src=CLIENT6, dst=VIP6, hlim=64) /
                              TCP(sport=45006, dport=80, flags="S") / _payload(MTU - 60, 29)), "whole"),
]


def _expected_nat(frame):
    l3 = frame.payload
    if l3.src in (CLIENT4, CLIENT6):
        if l3.dport == 80:
            return expected_forwarded(l3, dst=NAT_RS4 if l3.version == 4 else NAT_RS6, dport=8080)
        if l3.dport == 7777:
            return expected_forwarded(l3, dst=NAT_RS4, dport=7778)
        return expected_forwarded(l3)   # DR
    return expected_forwarded(l3, src=VIP4, sport=80)


@pytest.fixture(scope="module")
def nat_run():
    return run_lb(_rules(), [c[1] for c in NAT_CASES], extra=["--max-pkt-len", str(MTU + 18)])


def _by_ident(run):
    groups = {}
    for f in run.out:
        if IP in f and f[IP].proto != 1:
            groups.setdefault(f[IP].id, []).append(f)
    return groups


def test_nat_run_output_valid(nat_run):
    """tshark (checksums on, IPv4 reassembly on: the reassembled TCP/UDP
    checksums are verified too) flags nothing; no frame exceeds the MTU."""
    check_run_captures(nat_run)
    for f in nat_run.out:
        assert len(l3_bytes(f)) <= MTU, f.summary()
        assert f.src == PORT_MAC


@pytest.mark.parametrize("idx", range(len(NAT_CASES)), ids=[c[0] for c in NAT_CASES])
def test_nat_mtu(nat_run, idx):
    name, frame, kind = NAT_CASES[idx]
    l3 = frame.payload
    if kind == "frag-needed":
        errs = [f for f in nat_run.out if IP in f and f[IP].proto == 1]
        assert len(errs) == 1
        # The quote is the packet as the client sent it: to VIP:80, not RS:8080.
        _check_error(errs[0], l3, 4, 3, 4, MTU, VIP4, CLIENT4)
        assert not [f for f in nat_run.out if IP in f and f[IP].id == l3.id and f[IP].proto != 1]
    elif kind == "too-big6":
        errs = [f for f in nat_run.out if IPv6 in f and f[IPv6].nh == 58 and
                IPv6(icmp_error(f)["quote"])[TCP].sport == l3[TCP].sport]
        assert len(errs) == 1, "expected one packet-too-big quoting %s" % name
        _check_error(errs[0], l3, 6, 2, 0, MTU, VIP6, CLIENT6)
        sent = [f for f in nat_run.out if TCP in f and IPv6 in f and f[IPv6].nh == 6 and f[TCP].sport == l3.sport]
        assert not sent, "the oversize IPv6 packet was forwarded"
    elif kind == "whole":
        want = _expected_nat(frame)
        got = [l3_bytes(f) for f in nat_run.out if l3_bytes(f) == want]
        assert len(got) == 1, "%s not forwarded whole" % name
    else:
        frags = _by_ident(nat_run).get(l3.id, [])
        assert len(frags) >= 2, "%s: expected fragments, got %d frames" % (name, len(frags))
        for f in frags:
            ip = f[IP]
            assert ip.len <= MTU and not ip.flags.DF
            assert ip.flags.MF == 0 or (ip.len - ip.ihl * 4) % 8 == 0
        want = _expected_nat(frame)
        assert reassemble_ipv4(frags) == want, "%s: fragments do not reassemble to the forwarded packet" % name
        mac = GW_MAC if l3.src == NAT_RS4 else RS[DR_RS4 if l3.dport == 90 else NAT_RS4]
        assert all(f.dst == mac for f in frags)
        if l3.options:
            first = [f[IP] for f in frags if f[IP].frag == 0][0]
            assert bytes(first)[20:first.ihl * 4] == bytes(IP(want))[20:IP(want).ihl * 4]
            for f in frags:
                if f[IP].frag:
                    # Router alert (copied) padded to a 4-byte multiple; record route dropped.
                    assert bytes(f[IP])[20:f[IP].ihl * 4] == bytes(IPOption_Router_Alert()), f[IP].options
