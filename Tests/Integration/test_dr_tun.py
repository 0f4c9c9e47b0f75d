"""LVS/DR and LVS/TUN on the wire (IPVS_SEMANTICS §7 DR and TUN, DESIGN
"Egress"/"TUN").

DR: only the MACs change; the IP packet is the same except TTL / hop limit
minus one (and the IPv4 header checksum).

TUN: every encapsulation the spec lists, over IPv4 and IPv6: IPIP (proto 4,
IPv6-in-IPv6 next header 41), GUE (UDP to --tun-port, checksum 0 with
--tun-nocsum and valid with --tun-csum, 4-byte GUE header carrying 4 / 41),
GRE (protocol 0x0800 / 0x86DD, with and without the checksum flag). The
outer header: TTL = inner TTL after the decrement, DF copied from the inner
header, DS field with ECN per INET_ECN_encapsulate (CE becomes ECT(0)),
source = the egress port's address, destination = the real server. The
inner packet is byte-identical to the received one except TTL / checksum.

All flows go through one run; tshark validates every frame (checksums on)
and, separately, every decapsulated inner packet."""

import struct
import tempfile

import pytest
from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw, rdpcap, wrpcap

from pathcheck import (CLIENT4, CLIENT6, GW4, GW_MAC, PORT1_MAC, PORT4, PORT6, PORT_MAC, RS, VIP4, VIP6,
                       check_bytes_with_tshark, check_capture, check_run_captures, dec_ttl, from_client, from_rs,
                       inet_checksum, l3_bytes, run_lb, stamp, tshark_frames)
from sylib import LB_MAC, ROUTER_MAC, run_switchyard, write_rules

GUE_PORT = 6080

# (name, tunnel options, RS v4, RS v6); the VIP port is 81 + index.
TUNNELS = [
    ("ipip", "--tun-type ipip", "10.0.0.21", "2001:db8:a::21"),
    ("gue-nocsum", "--tun-type gue --tun-port %d --tun-nocsum" % GUE_PORT, "10.0.0.22", "2001:db8:a::22"),
    ("gue-csum", "--tun-type gue --tun-port %d --tun-csum" % GUE_PORT, "10.0.0.23", "2001:db8:a::23"),
    # remcsum: packets arrive with complete checksums (never CHECKSUM_PARTIAL), so
    # no remote-checksum option; the flag turns the UDP checksum on (§7 GUE).
    ("gue-remcsum", "--tun-type gue --tun-port %d --tun-remcsum" % GUE_PORT, "10.0.0.26", "2001:db8:a::26"),
    ("gre-nocsum", "--tun-type gre --tun-nocsum", "10.0.0.24", "2001:db8:a::24"),
    ("gre-csum", "--tun-type gre --tun-csum", "10.0.0.25", "2001:db8:a::25"),
]
DR4, DR6 = "10.0.0.12", "2001:db8:a::12"


def _rules():
    lines = ["-A -t %s:90 -s rr" % VIP4, "-a -t %s:90 -r %s:90 -g -w 1" % (VIP4, DR4),
             "-A -u %s:7777 -s rr" % VIP4, "-a -u %s:7777 -r %s:7777 -g -w 1" % (VIP4, DR4),
             "-A -t [%s]:90 -s rr" % VIP6, "-a -t [%s]:90 -r [%s]:90 -g -w 1" % (VIP6, DR6)]
    for i, (_, opts, r4, r6) in enumerate(TUNNELS):
        port = 81 + i
        lines += ["-A -t %s:%d -s rr" % (VIP4, port), "-a -t %s:%d -r %s:%d -i -w 1 %s" % (VIP4, port, r4, port, opts),
                  "-A -t [%s]:%d -s rr" % (VIP6, port),
                  "-a -t [%s]:%d -r [%s]:%d -i -w 1 %s" % (VIP6, port, r6, port, opts)]
    return "\n".join(lines) + "\n"


# DS field cases: (inner tos / traffic class, expected outer, DF on IPv4 inner).
DS_CASES = [(0xB8 | 3, 0xB8 | 2, True),    # EF + CE: DSCP copied, CE becomes ECT(0)
            (0x00 | 1, 0x00 | 1, False),   # ECT(1) copied, no DF
            (0x28 | 2, 0x28 | 2, True),    # AF11 + ECT(0)
            (0x48, 0x48, False)]           # Not-ECT


def _packets():
    """(kind, tunnel index or None, input L3)."""
    out = []
    # DR.
    out.append(("dr", None, IP(src=CLIENT4, dst=VIP4, ttl=64, id=7, flags="DF") /
                TCP(sport=41000, dport=90, flags="S", seq=1) / Raw(b"dr-syn")))
    out.append(("dr", None, IP(src=CLIENT4, dst=VIP4, ttl=3, id=8, tos=0x10) /
                TCP(sport=41000, dport=90, flags="PA", seq=2, ack=9) / Raw(b"dr-data" * 50)))
    out.append(("dr", None, IP(src=CLIENT4, dst=VIP4, ttl=64) / UDP(sport=41001, dport=7777, chksum=0) /
                Raw(b"dr-udp-zero-checksum-left-alone")))
    out.append(("dr", None, IPv6(src=CLIENT6, dst=VIP6, hlim=64, tc=0x22, fl=0x12345) /
                TCP(sport=41000, dport=90, flags="S") / Raw(b"dr6")))
    # TUN: per encapsulation, IPv4 and IPv6 inner, each DS case, TTL varying.
    for i, _ in enumerate(TUNNELS):
        port = 81 + i
        for k, (tos, _, df) in enumerate(DS_CASES):
            out.append(("tun4", i, IP(src=CLIENT4, dst=VIP4, ttl=64 - 10 * k, tos=tos, id=1000 + k,
                                      flags="DF" if df else 0) /
                        TCP(sport=42000 + i, dport=port, flags="S" if k == 0 else "PA", seq=k) /
                        Raw(bytes([k]) * (10 + 100 * k))))
            out.append(("tun6", i, IPv6(src=CLIENT6, dst=VIP6, hlim=64 - 10 * k, tc=tos, fl=0xABCDE) /
                        TCP(sport=42000 + i, dport=port, flags="S" if k == 0 else "PA", seq=k) /
                        Raw(bytes([k]) * (10 + 100 * k))))
    return out


PACKETS = _packets()


@pytest.fixture(scope="module")
def run():
    return run_lb(_rules(), [from_client(l3) for _, _, l3 in PACKETS])


def test_all_forwarded_and_valid(run):
    # GUE over IPv6 without checksum: UDP checksum 0 is what the spec sends
    # (--tun-nocsum); tshark's only complaint about those frames is tolerated.
    zero = [n + 1 for n, (kind, i, _) in enumerate(PACKETS) if kind == "tun6" and TUNNELS[i][0] == "gue-nocsum"]
    rows = check_run_captures(run, expect_frames=len(PACKETS), zero_udp6=zero)
    assert len(run.out) == len(PACKETS)
    lc = run.lcore_counters()[0]
    assert lc["drop"] == 0 and lc["malformed"] == 0 and lc["tx"] == len(PACKETS)
    # GRE with the checksum flag: tshark verifies that checksum too (gre.checksum.status, in
    # STATUS_FIELDS), so it must have been seen as good.
    gre_csum = [r for r in rows if r["gre.checksum.status"]]
    assert gre_csum and all(r["gre.checksum.status"] == ["1"] for r in gre_csum)


def _cases(kind):
    return [(n, PACKETS[n]) for n in range(len(PACKETS)) if PACKETS[n][0] == kind]


def test_dr_changes_only_macs_and_ttl(run):
    """DR: destination MAC = the RS's neighbour MAC, source = our port; the IP
    packet is identical but for TTL-1 and the IPv4 header checksum (VIP kept
    as destination, UDP checksum 0 left alone, IPv6 flow label kept)."""
    for n, (_, _, l3) in _cases("dr"):
        out = run.out[n]
        rs = DR6 if l3.version == 6 else DR4
        assert (out.src, out.dst) == (PORT_MAC, RS[rs]), n
        assert l3_bytes(out) == dec_ttl(bytes(l3)), n


def _split_outer(frame):
    """(outer IP scapy layer, encapsulation header bytes, inner IP bytes)."""
    b = bytes(frame)[14:]
    if b[0] >> 4 == 4:
        outer = IP(b)
        hl, total = outer.ihl * 4, outer.len
        proto = outer.proto
    else:
        outer = IPv6(b)
        hl, total = 40, 40 + outer.plen
        proto = outer.nh
    payload = b[hl:total]
    if proto == 17:
        return outer, proto, payload[:12], payload[12:]
    if proto == 47:
        glen = 8 if payload[0] & 0x80 else 4
        return outer, proto, payload[:glen], payload[glen:]
    return outer, proto, b"", payload


@pytest.mark.parametrize("family", ["tun4", "tun6"])
@pytest.mark.parametrize("tidx", range(len(TUNNELS)), ids=[t[0] for t in TUNNELS])
def test_tunnel(run, family, tidx):
    name, _, r4, r6 = TUNNELS[tidx]
    cases = [(n, l3) for n, (_, i, l3) in _cases(family) if i == tidx]
    assert len(cases) == len(DS_CASES)
    inners = []
    gue_sports = set()
    for (n, l3), (tos, want_ds, df) in zip(cases, DS_CASES):
        out = run.out[n]
        v6 = family == "tun6"
        rs = r6 if v6 else r4
        assert (out.src, out.dst) == (PORT_MAC, RS[rs]), (name, n)
        outer, proto, encap, inner = _split_outer(out)
        want_inner = dec_ttl(bytes(l3))
        assert inner == want_inner, "%s #%d: inner packet changed" % (name, n)
        inners.append(inner)
        inner_ttl = want_inner[7] if v6 else want_inner[8]
        inner_proto = 41 if v6 else 4
        encap_len = {"ipip": 0, "gue-nocsum": 12, "gue-csum": 12, "gue-remcsum": 12, "gre-nocsum": 4,
                     "gre-csum": 8}[name]
        want_proto = {"ipip": inner_proto, "gue-nocsum": 17, "gue-csum": 17, "gue-remcsum": 17, "gre-nocsum": 47,
                      "gre-csum": 47}[name]
        assert len(encap) == encap_len and proto == want_proto, (name, n, proto, encap)
        if v6:
            # Outer IPv6 (the RS is IPv6): next header, hop limit, TC, flow label 0, addresses.
            assert outer.version == 6
            assert outer.hlim == inner_ttl, (name, n, outer.hlim, inner_ttl)
            assert outer.tc == want_ds, (name, n, hex(outer.tc), hex(want_ds))
            assert outer.fl == 0
            assert outer.plen == encap_len + len(inner)
            assert (outer.src, outer.dst) == (PORT6, rs)
        else:
            assert outer.version == 4 and outer.ihl == 5
            assert outer.ttl == inner_ttl, (name, n, outer.ttl, inner_ttl)
            assert outer.tos == want_ds, (name, n, hex(outer.tos), hex(want_ds))
            assert bool(outer.flags.DF) == df and not outer.flags.MF and outer.frag == 0, (name, n, outer.flags)
            assert outer.len == 20 + encap_len + len(inner)
            assert (outer.src, outer.dst) == (PORT4, rs)
            assert inet_checksum(bytes(out)[14:34]) == 0
        if name.startswith("gue"):
            sport, dport, ulen, uck = struct.unpack("!HHHH", encap[:8])
            assert dport == GUE_PORT and ulen == 12 + len(inner), (name, n)
            assert 32768 <= sport <= 60999, sport   # udp_flow_src_port: the local port range
            gue_sports.add(sport)
            # GUE header: version 0, C 0, hlen 0; proto/ctype = 4 or 41; flags 0.
            assert encap[8:12] == bytes([0, inner_proto, 0, 0]), (name, encap[8:12].hex())
            if name == "gue-nocsum":
                assert uck == 0, (name, n, hex(uck))
            else:
                assert uck != 0
                if v6:
                    ph = bytes(outer)[8:40] + struct.pack("!I3xB", ulen, 17)
                else:
                    ph = bytes(outer)[12:20] + struct.pack("!BBH", 0, 17, ulen)
                assert inet_checksum(ph + encap + inner) == 0, (name, n, "bad GUE UDP checksum")
        if name.startswith("gre"):
            flags_ver, gproto = struct.unpack("!HH", encap[:4])
            assert gproto == (0x86DD if v6 else 0x0800), (name, hex(gproto))
            if name == "gre-csum":
                assert flags_ver == 0x8000, hex(flags_ver)     # C bit, no key/seq, version 0
                assert encap[6:8] == b"\0\0"                    # reserved1
                assert inet_checksum(encap + inner) == 0, (name, n, "bad GRE checksum")
            else:
                assert flags_ver == 0x0000, hex(flags_ver)
    if name.startswith("gue"):
        # One flow (same inner addresses and ports) keeps one source port.
        assert len(gue_sports) == 1, gue_sports
    # The decapsulated packets are valid for tshark too (checksums on).
    check_bytes_with_tshark(inners)


def test_tshark_sees_the_encapsulation(run):
    """tshark's decode: IPIP / IPv6-in-IPv6 and GRE are recognised, with the
    expected outer and inner addresses (inner destination = VIP)."""
    rows = tshark_frames(run.out_paths[0], ["frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
                                            "gre.proto", "udp.dstport"])
    for n, (kind, i, l3) in enumerate(PACKETS):
        if kind == "dr":
            continue
        name = TUNNELS[i][0]
        r = rows[n]
        proto = r["frame.protocols"][0]
        v6 = kind == "tun6"
        addrs = (r["ipv6.src"], r["ipv6.dst"]) if v6 else (r["ip.src"], r["ip.dst"])
        rs = TUNNELS[i][3] if v6 else TUNNELS[i][2]
        if name == "ipip" or name.startswith("gre"):
            fam = "ipv6" if v6 else "ip"
            mid = ":gre:" if name.startswith("gre") else ":"
            assert proto.startswith("eth:ethertype:%s%s%s:tcp" % (fam, mid, fam)), (name, proto)
            outer = PORT6 if v6 else PORT4
            client = CLIENT6 if v6 else CLIENT4
            vip = VIP6 if v6 else VIP4
            assert addrs == ([outer, client], [rs, vip]), (name, addrs)
            if name.startswith("gre"):
                assert r["gre.proto"] == ["0x86dd" if v6 else "0x0800"], (proto, r["gre.proto"])
        else:
            assert r["udp.dstport"][:1] == [str(GUE_PORT)], r["udp.dstport"]


# ------------------------------------------------------------------ established flows

# TUN services of their own: (VIP port, protocol, tunnel options, RS). IPIP,
# GUE and GRE without checksum are encapsulated by the fast path once a
# connection is established; GUE with a checksum is the general path's (the
# control).
EST_SERVICES = [(181, "t", "--tun-type ipip", "10.0.0.21"),
                (182, "u", "--tun-type gue --tun-port %d --tun-nocsum" % GUE_PORT, "10.0.0.22"),
                (183, "u", "--tun-type ipip", "10.0.0.23"),
                (184, "t", "--tun-type gue --tun-port %d --tun-nocsum" % GUE_PORT, "10.0.0.24"),
                (185, "u", "--tun-type gre --tun-nocsum", "10.0.0.25"),
                (186, "t", "--tun-type gue --tun-port %d --tun-csum" % GUE_PORT, "10.0.0.26")]


def _established_packets():
    """Per service one flow: its opening packet(s), then 40 rounds of data,
    so that most packets come in bursts after the one that made the
    connection. DS field, DF, TTL and size vary; some frames carry Ethernet
    padding after the IP packet."""
    frames, l3s = [], []

    def add(l3, pad=0):
        raw = bytes(l3)
        l3s.append(raw)
        frames.append(Ether(src=ROUTER_MAC, dst=LB_MAC, type=0x0800) / Raw(raw + b"\0" * pad))

    for i, (port, proto, _, _) in enumerate(EST_SERVICES):
        if proto == "t":
            add(IP(src=CLIENT4, dst=VIP4, ttl=64) / TCP(sport=43000 + i, dport=port, flags="S", seq=1))
            add(IP(src=CLIENT4, dst=VIP4, ttl=64) / TCP(sport=43000 + i, dport=port, flags="A", seq=2, ack=1))
    for r in range(40):
        tos, _, df = DS_CASES[r % len(DS_CASES)]
        for i, (port, proto, _, _) in enumerate(EST_SERVICES):
            ip = IP(src=CLIENT4, dst=VIP4, ttl=64 - r, tos=tos, id=r, flags="DF" if df else 0)
            size = (r * 37 + i * 11) % 90
            if proto == "t":
                add(ip / TCP(sport=43000 + i, dport=port, flags="PA", seq=3 + r, ack=1) / Raw(b"t" * size),
                    pad=r % 3 * 5)
            else:
                add(ip / UDP(sport=43000 + i, dport=port) / Raw(b"u" * (size % 12)), pad=r % 4 * 3)
    return frames, l3s


def test_tunnel_established_flows_every_packet():
    """Established TUN flows over many bursts: every output frame is exactly
    the encapsulation of its input (no Ethernet padding carried), with outer
    IP IDs one apart in order, GUE's source port fixed per flow, and tshark
    finding every checksum good."""
    rules = "".join("-A -%s %s:%d -s rr\n-a -%s %s:%d -r %s:%d -i -w 1 %s\n" % (p, VIP4, port, p, VIP4, port, rs, port, o)
                    for port, p, o, rs in EST_SERVICES)
    frames, l3s = _established_packets()
    run = run_lb(rules, frames)
    check_run_captures(run, expect_frames=len(frames))
    assert len(run.out) == len(frames)
    by_port = {port: (p, o, rs) for port, p, o, rs in EST_SERVICES}
    ids, sports = [], {}
    for n, (out, l3) in enumerate(zip(run.out, l3s)):
        inner_in = IP(l3)
        _, opts, rs = by_port[inner_in.dport if inner_in.proto in (6, 17) else 0]
        kind = opts.split()[1]
        assert (out.src, out.dst, out.type) == (PORT_MAC, RS[rs], 0x0800), n
        outer, proto, encap, inner = _split_outer(out)
        assert inner == dec_ttl(l3), "#%d: inner packet changed" % n
        assert len(bytes(out)) == 14 + outer.len, "#%d: padding carried into the tunnel" % n
        encap_len = {"ipip": 0, "gue": 12, "gre": 4}[kind]
        assert proto == {"ipip": 4, "gue": 17, "gre": 47}[kind] and len(encap) == encap_len, (n, proto)
        assert outer.version == 4 and outer.ihl == 5 and outer.len == 20 + encap_len + len(inner)
        assert outer.ttl == inner[8] == inner_in.ttl - 1, (n, outer.ttl)
        want_ds = (inner_in.tos & 0xFC) | (2 if inner_in.tos & 3 == 3 else inner_in.tos & 3)
        assert outer.tos == want_ds, (n, hex(outer.tos))
        assert bool(outer.flags.DF) == bool(inner_in.flags.DF) and not outer.flags.MF and outer.frag == 0, n
        assert (outer.src, outer.dst) == (PORT4, rs) and inet_checksum(bytes(out)[14:34]) == 0, n
        ids.append(outer.id)
        if kind == "gue":
            sport, dport, ulen, uck = struct.unpack("!HHHH", encap[:8])
            assert (dport, ulen) == (GUE_PORT, 12 + len(inner)), n
            if "--tun-csum" in opts:
                ph = bytes(outer)[12:20] + struct.pack("!BBH", 0, 17, ulen)
                assert uck != 0 and inet_checksum(ph + encap + inner) == 0, (n, "bad GUE UDP checksum")
            else:
                assert uck == 0, (n, hex(uck))
            assert encap[8:12] == bytes([0, 4, 0, 0]), encap[8:12].hex()
            assert 32768 <= sport <= 60999, sport
            sports.setdefault(inner_in.dport, set()).add(sport)
        if kind == "gre":
            assert encap == bytes([0, 0, 8, 0]), encap.hex()   # no checksum, key or sequence; IPv4
    assert ids == [(ids[0] + k) & 0xFFFF for k in range(len(ids))], "outer IP IDs are not one apart in order"
    assert all(len(v) == 1 for v in sports.values()) and len(sports) == 3, sports


# ------------------------------------------------------------------ egress port

def test_egress_port_and_its_address_with_two_ports():
    """DESIGN "Egress": a next hop leaves from the port whose --port-addr
    prefix contains it, with that port's MAC; the TUN outer source is that
    port's address (port 1 here, although port 0's addresses come first);
    NAT replies go back out of port 0 towards the gateway."""
    d = tempfile.mkdtemp(prefix="sy-it-2port-")
    rules = write_rules(d, "-A -t %s:80 -s rr\n-a -t %s:80 -r 10.0.0.11:8080 -m -w 1\n"
                           "-A -t %s:81 -s rr\n-a -t %s:81 -r 10.0.0.21:81 -i -w 1 --tun-type ipip\n"
                           "-A -t [%s]:81 -s rr\n-a -t [%s]:81 -r [2001:db8:a::21]:81 -i -w 1 --tun-type ipip\n"
                        % (VIP4, VIP4, VIP4, VIP4, VIP6, VIP6))
    client = [from_client(IP(src=CLIENT4, dst=VIP4, ttl=64) / TCP(sport=43000, dport=80, flags="S")),
              from_client(IP(src=CLIENT4, dst=VIP4, ttl=64) / TCP(sport=43001, dport=81, flags="S")),
              from_client(IPv6(src=CLIENT6, dst=VIP6, hlim=64) / TCP(sport=43002, dport=81, flags="S"))]
    server = [from_rs(IP(src="10.0.0.11", dst=CLIENT4, ttl=64) / TCP(sport=8080, dport=43000, flags="SA"))]
    wrpcap(d + "/c.pcap", stamp(client))
    wrpcap(d + "/s.pcap", stamp(server, t0=1700000001.0))
    args = ["--config", rules, "--clock", "packet",
            "--port-addr", "0:198.51.100.2/24", "--port-addr", "0:2001:db8:f::2/64",
            "--port-addr", "1:10.0.0.1/24", "--port-addr", "1:2001:db8:a::1/64",
            "--route", "0.0.0.0/0=%s" % GW4, "--neigh", "%s=%s" % (GW4, GW_MAC),
            "--neigh", "10.0.0.11=%s" % RS["10.0.0.11"], "--neigh", "10.0.0.21=%s" % RS["10.0.0.21"],
            "--neigh", "2001:db8:a::21=%s" % RS["2001:db8:a::21"]]
    run = run_switchyard(in_paths=[d + "/c.pcap", d + "/s.pcap"], ports=2, args=args, workdir=d)
    assert run.rc == 0, run.stderr
    out0 = rdpcap(run.out_paths[0])
    out1 = rdpcap(run.out_paths[1])
    check_capture(run.out_paths[0], expect_frames=1)
    check_capture(run.out_paths[1], expect_frames=3)
    # Port 1: the NAT'd SYN and the two tunnelled SYNs.
    nat, tun4, tun6 = out1
    assert (nat.src, nat.dst, nat[IP].dst, nat[TCP].dport) == (PORT1_MAC, RS["10.0.0.11"], "10.0.0.11", 8080)
    assert (tun4.src, tun4.dst) == (PORT1_MAC, RS["10.0.0.21"])
    assert (tun4[IP].src, tun4[IP].dst, tun4[IP].proto) == ("10.0.0.1", "10.0.0.21", 4)
    assert (tun6.src, tun6.dst) == (PORT1_MAC, RS["2001:db8:a::21"])
    assert (tun6[IPv6].src, tun6[IPv6].dst, tun6[IPv6].nh) == ("2001:db8:a::1", "2001:db8:a::21", 41)
    # Port 0: the NAT reply, from the VIP, to the gateway.
    (reply,) = out0
    assert (reply.src, reply.dst) == (PORT_MAC, GW_MAC)
    assert (reply[IP].src, reply[TCP].sport, reply[IP].dst) == (VIP4, 80, CLIENT4)


# ------------------------------------------------------------------ mixed families

def test_tun_mixed_address_families():
    """§7 TUN: "Mixed address families (for example an IPv4 service with an
    IPv6 RS) are allowed only for tunnelling". The outer header is of the
    RS's family: IPv4 in IPv6 (next header 4) from the port's IPv6 address,
    IPv6 in GRE over IPv4 (protocol 47, GRE 0x86DD) from its IPv4 address;
    hop limit / TTL = the inner one after the decrement; to the RS's MAC."""
    rs6, rs4 = "2001:db8:a::21", "10.0.0.21"
    rules = ("-A -t %s:86 -s rr\n-a -t %s:86 -r [%s]:86 -i -w 1 --tun-type ipip\n"
             "-A -t [%s]:86 -s rr\n-a -t [%s]:86 -r %s:86 -i -w 1 --tun-type gre\n"
             % (VIP4, VIP4, rs6, VIP6, VIP6, rs4))
    in4 = IP(src=CLIENT4, dst=VIP4, ttl=64, flags="DF") / TCP(sport=44001, dport=86, flags="S") / Raw(b"4in6")
    in6 = IPv6(src=CLIENT6, dst=VIP6, hlim=64) / TCP(sport=44002, dport=86, flags="S") / Raw(b"6in4")
    run = run_lb(rules, [from_client(in4), from_client(in6)])
    check_run_captures(run, expect_frames=2)
    a, b = run.out
    assert (a.dst, a.type) == (RS[rs6], 0x86DD), (a.dst, hex(a.type))
    o6 = a[IPv6]
    assert (o6.src, o6.dst, o6.nh, o6.hlim) == (PORT6, rs6, 4, 63)
    assert bytes(o6)[40:] == dec_ttl(bytes(in4))
    assert (b.dst, b.type) == (RS[rs4], 0x0800), (b.dst, hex(b.type))
    o4 = b[IP]
    assert (o4.src, o4.dst, o4.proto, o4.ttl) == (PORT4, rs4, 47, 63)
    assert bytes(o4)[20:24] == b"\x00\x00\x86\xdd"
    assert bytes(o4)[24:o4.len] == dec_ttl(bytes(in6))
