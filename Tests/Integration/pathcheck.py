"""Shared topology and checks for the packet-path integration tests
(test_nat.py, test_dr_tun.py, test_icmp_mtu.py, test_icmp_related.py,
test_malformed.py).

Topology (one net_pcap port unless a test says otherwise):

    clients 203.0.113.0/24, 2001:db8:c::/64  --(gateway)--  port 0  --  real servers
    port 0 addresses: 10.0.0.1/24, 198.51.100.2/24, 2001:db8:a::1/64, 2001:db8:f::2/64
    default routes via 198.51.100.1 / 2001:db8:f::1 (neighbour MAC GW_MAC)
    VIPs 192.0.2.10 and 2001:db8:10::10, outside every prefix.

Every output capture goes through `check_capture`: tshark with IP, TCP and UDP
checksum validation on (ICMP and ICMPv6 checksums are always validated)
must flag nothing, and every checksum it could verify must be good.
"""

import os
import subprocess
import tempfile

from scapy.all import IP, IPv6, Ether, Raw, wrpcap

from sylib import LB_MAC, ROUTER_MAC, TSHARK_CHECKS, run_switchyard, write_rules

# net_pcap gives port N the MAC 02:70:63:61:70:0N ("\x02pcap" + N).
PORT_MAC = "02:70:63:61:70:00"
PORT1_MAC = "02:70:63:61:70:01"

CLIENT4 = "203.0.113.5"
VIP4 = "192.0.2.10"
PORT4 = "10.0.0.1"          # port 0's address in the servers' prefix: the TUN outer source
GW4 = "198.51.100.1"
GW_MAC = "02:00:00:00:00:f1"  # the gateway's neighbour MAC (not the MAC clients' frames come from)

CLIENT6 = "2001:db8:c::5"
VIP6 = "2001:db8:10::10"
PORT6 = "2001:db8:a::1"
GW6 = "2001:db8:f::1"

# Real servers: address -> MAC (all behind port 0, in 10.0.0.0/24 and 2001:db8:a::/64).
RS = {
    "10.0.0.11": "02:00:00:00:01:0b",
    "10.0.0.12": "02:00:00:00:01:0c",
    "10.0.0.21": "02:00:00:00:01:15",
    "10.0.0.22": "02:00:00:00:01:16",
    "10.0.0.23": "02:00:00:00:01:17",
    "10.0.0.24": "02:00:00:00:01:18",
    "10.0.0.25": "02:00:00:00:01:19",
    "10.0.0.26": "02:00:00:00:01:1a",
    "2001:db8:a::11": "02:00:00:00:02:11",
    "2001:db8:a::12": "02:00:00:00:02:12",
    "2001:db8:a::21": "02:00:00:00:02:21",
    "2001:db8:a::22": "02:00:00:00:02:22",
    "2001:db8:a::23": "02:00:00:00:02:23",
    "2001:db8:a::24": "02:00:00:00:02:24",
    "2001:db8:a::25": "02:00:00:00:02:25",
    "2001:db8:a::26": "02:00:00:00:02:26",
}

T0 = 1700000000.0


def topology_args(extra=()):
    """Port addresses, default routes and static neighbours of the topology."""
    args = ["--clock", "packet",
            "--port-addr", "0:%s/24" % PORT4, "--port-addr", "0:198.51.100.2/24",
            "--port-addr", "0:%s/64" % PORT6, "--port-addr", "0:2001:db8:f::2/64",
            "--route", "0.0.0.0/0=%s" % GW4, "--route", "::/0=%s" % GW6,
            "--neigh", "%s=%s" % (GW4, GW_MAC), "--neigh", "%s=%s" % (GW6, GW_MAC)]
    for ip, mac in RS.items():
        args += ["--neigh", "%s=%s" % (ip, mac)]
    return args + list(extra)


def from_client(l3):
    """A frame from a client, as the gateway delivers it to us."""
    return Ether(src=ROUTER_MAC, dst=LB_MAC) / l3


def from_rs(l3):
    """A frame sent by a real server (its own MAC) to us, its gateway."""
    return Ether(src=RS[l3.src], dst=LB_MAC) / l3


def stamp(pkts, t0=T0, dt=0.001):
    for i, p in enumerate(pkts):
        p.time = t0 + i * dt
    return pkts


def run_lb(rules, pkts, extra=(), workdir=None, **kw):
    """Run switchyard in lb mode on `pkts` with `rules` and the topology; the
    run must exit 0 and print a final counters section."""
    workdir = workdir or tempfile.mkdtemp(prefix="sy-it-path-")
    path = write_rules(workdir, rules)
    run = run_switchyard(stamp(list(pkts)), args=["--config", path] + topology_args(extra), workdir=workdir, **kw)
    assert run.rc == 0, "rc=%d\nstdout:\n%s\nstderr:\n%s" % (run.rc, run.stdout, run.stderr)
    assert "final counters:" in run.stdout, run.stdout
    return run


STATUS_FIELDS = ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status",
                 "icmp.checksum.status", "icmpv6.checksum.status", "gre.checksum.status"]


def tshark_frames(pcap, fields, extra=()):
    """One dict per frame: field -> list of every occurrence (embedded headers
    included), with checksum validation on."""
    cmd = ["tshark", "-n", "-r", pcap] + TSHARK_CHECKS + list(extra) + [
        "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = []
    for line in proc.stdout.splitlines():
        vals = line.split("\t")
        vals += [""] * (len(fields) - len(vals))
        rows.append({f: ([x for x in v.split("|")] if v != "" else []) for f, v in zip(fields, vals)})
    return rows


def check_capture(pcap, expect_frames=None, extra=(), zero_udp6=()):
    """tshark's verdict on a capture: no malformed frame, no expert error, and
    every checksum tshark verified is good (status 1; 2 = not verifiable,
    e.g. UDP checksum 0). Returns the per-frame rows.

    ICMP errors: the outer IP, the ICMP / ICMPv6 checksum and the quoted IP
    header checksum must be good; the quoted TCP/UDP checksum is not judged
    (tshark "verifies" it over a truncated quote, and IPVS does not update it
    when it rewrites the quoted ports, §8) -- tests check quotes field by field.

    `zero_udp6`: frame numbers (1-based) that are UDP over IPv6 with checksum
    0 on purpose (a tunnel without checksum, RFC 6935; the kernel's
    udp6_set_csum(nocheck) does the same). tshark calls that "Illegal
    checksum value (0)" (status 4); those frames must show exactly that and
    nothing else."""
    if not os.path.exists(pcap) or os.path.getsize(pcap) <= 24:
        assert not expect_frames, "no capture written, expected %s frames" % expect_frames
        return []
    fields = ["frame.number", "frame.protocols", "_ws.malformed", "_ws.expert.severity",
              "_ws.expert.message"] + STATUS_FIELDS
    rows = tshark_frames(pcap, fields, extra)
    if expect_frames is not None:
        assert len(rows) == expect_frames, "tshark read %d frames, expected %d" % (len(rows), expect_frames)
    bad = []
    for r in rows:
        proto = r["frame.protocols"][0] if r["frame.protocols"] else ""
        sev, msg = r["_ws.expert.severity"], r["_ws.expert.message"]
        assert len(sev) == len(msg), r
        expert = list(zip(sev, msg))
        judged = list(STATUS_FIELDS)
        if ":icmp:ip" in proto or ":icmpv6:ipv6" in proto:
            judged = [f for f in judged if f not in ("tcp.checksum.status", "udp.checksum.status")]
            assert r["icmp.checksum.status"] + r["icmpv6.checksum.status"] == ["1"], r
            expert = [(s, m) for s, m in expert if not m.startswith("Bad checksum [should be")]
        if int(r["frame.number"][0]) in zero_udp6:
            assert r["udp.checksum.status"] == ["4"], r
            judged = [f for f in judged if f != "udp.checksum.status"]
            expert = [(s, m) for s, m in expert if m != "Illegal checksum value (0)"]
        # Expert severities: 0x00600000 = warning, 0x00800000 = error.
        errors = [m for s, m in expert if s and int(s, 0) >= 0x00800000]
        statuses = [s for f in judged for s in r[f]]
        if r["_ws.malformed"] or errors or "0" in statuses or "4" in statuses:
            bad.append((r["frame.number"], proto, msg, {f: r[f] for f in STATUS_FIELDS if r[f]}))
    assert bad == [], "tshark flags frames: %r" % bad
    return rows


def check_run_captures(run, expect_frames=None, zero_udp6=()):
    """check_capture on every port's tx capture; `expect_frames` and
    `zero_udp6` are port 0's."""
    rows = check_capture(run.out_paths[0], expect_frames, zero_udp6=zero_udp6)
    for p in run.out_paths[1:]:
        check_capture(p)
    return rows


def check_bytes_with_tshark(l3_packets, workdir=None):
    """Validate bare IP packets (e.g. a tunnel's inner packet) with tshark by
    writing them in Ethernet frames to a capture of their own."""
    workdir = workdir or tempfile.mkdtemp(prefix="sy-it-inner-")
    path = os.path.join(workdir, "inner.pcap")
    frames = []
    for b in l3_packets:
        l3 = IP(b) if b[0] >> 4 == 4 else IPv6(b)
        frames.append(Ether(src=PORT_MAC, dst=LB_MAC) / l3)
    wrpcap(path, frames)
    return check_capture(path, expect_frames=len(frames))


def l3_bytes(frame):
    """The IP packet of a frame (Ethernet padding removed)."""
    frame = Ether(bytes(frame))
    if IP in frame:
        ip = frame[IP]
        return bytes(ip)[:ip.len]
    ip6 = frame[IPv6]
    return bytes(ip6)[:40 + ip6.plen]


def expected_forwarded(l3, **changes):
    """The IP packet `l3` as it should leave after forwarding: TTL / hop limit
    minus one, the given fields changed (e.g. dst, dport) and every checksum
    (IPv4 header, TCP/UDP) recomputed by scapy."""
    p = l3.copy()
    if p.version == 4:
        p.ttl -= 1
        p.chksum = None
    else:
        p.hlim -= 1
    l4 = p.payload
    for k, v in changes.items():
        if k in ("src", "dst"):
            setattr(p, k, v)
        else:
            setattr(l4, k, v)
    if hasattr(l4, "chksum"):
        l4.chksum = None
    return bytes(p.__class__(bytes(p)))


def rewritten(l3, **changes):
    """Bytes of `l3` with fields changed and checksums recomputed (no TTL change)."""
    p = l3.copy()
    if p.version == 4:
        p.chksum = None
    l4 = p.payload
    for k, v in changes.items():
        if k in ("src", "dst", "ttl", "hlim", "tos", "tc", "flags"):
            setattr(p, k, v)
        else:
            setattr(l4, k, v)
    if hasattr(l4, "chksum"):
        l4.chksum = None
    return bytes(p.__class__(bytes(p)))


def dec_ttl(l3_bytes_):
    """IP bytes with TTL / hop limit minus one (IPv4 header checksum recomputed)."""
    p = IP(l3_bytes_) if l3_bytes_[0] >> 4 == 4 else IPv6(l3_bytes_)
    if p.version == 4:
        b = bytearray(l3_bytes_)
        b[8] -= 1
        ihl = (b[0] & 15) * 4
        b[10:12] = b"\0\0"
        b[10:12] = inet_checksum(bytes(b[:ihl])).to_bytes(2, "big")
        return bytes(b)
    b = bytearray(l3_bytes_)
    b[7] -= 1
    return bytes(b)


def inet_checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def malformed_summary(run):
    """The `malformed: reason=count ...` line as a dict ({} when absent)."""
    for line in run.stdout.splitlines():
        if line.startswith("malformed:"):
            return {k: int(v) for k, _, v in (x.partition("=") for x in line.split()[1:])}
    return {}


def icmp_error(frame):
    """Decode an ICMP / ICMPv6 error frame by hand: a dict with the outer
    addresses, TTL, type, code, the 32-bit word after the checksum, whether
    the ICMP checksum verifies, and the quoted bytes."""
    b = bytes(frame)
    assert b[12:14] in (b"\x08\x00", b"\x86\xdd"), b[12:14].hex()
    l3 = b[14:]
    if l3[0] >> 4 == 4:
        ip = IP(l3)
        assert ip.proto == 1, ip.summary()
        hl = ip.ihl * 4
        msg = l3[hl:ip.len]
        ok = inet_checksum(msg) == 0
        return {"v": 4, "src": ip.src, "dst": ip.dst, "ttl": ip.ttl, "ip": ip, "len": ip.len,
                "type": msg[0], "code": msg[1], "word": int.from_bytes(msg[4:8], "big"),
                "csum_ok": ok and inet_checksum(l3[:hl]) == 0, "quote": msg[8:]}
    ip = IPv6(l3)
    assert ip.nh == 58, ip.summary()
    msg = l3[40:40 + ip.plen]
    ph = l3[8:40] + len(msg).to_bytes(4, "big") + b"\0\0\0\x3a"
    return {"v": 6, "src": ip.src, "dst": ip.dst, "ttl": ip.hlim, "ip": ip, "len": 40 + ip.plen,
            "type": msg[0], "code": msg[1], "word": int.from_bytes(msg[4:8], "big"),
            "csum_ok": inet_checksum(ph + msg) == 0, "quote": msg[8:]}


def quote_matches(quote, original, allow_ttl_minus_one=True):
    """A quote is the original packet's first bytes, except that the TTL /
    hop limit may already be decremented (IPVS decrements before its MTU
    check) with the IPv4 header checksum to match. Returns a reason string
    when it does not match, else None."""
    orig = bytes(original)
    if len(quote) > len(orig):
        return "quote longer than the original"
    candidates = [orig]
    if allow_ttl_minus_one:
        candidates.append(dec_ttl(orig))
    for c in candidates:
        if c[:len(quote)] == quote:
            return None
    return "quote differs from the original: %s vs %s" % (quote[:48].hex(), orig[:48].hex())


def reassemble_ipv4(frames):
    """Reassemble IPv4 fragments (frames of one datagram) into the whole IP
    packet: the first fragment's header with MF and offset cleared, total
    length and checksum fixed. Asserts the fragments tile the payload."""
    frags = sorted((IP(bytes(f)[14:]) for f in frames), key=lambda p: p.frag)
    data = b""
    for i, f in enumerate(frags):
        raw = bytes(f)[:f.len]
        hl = f.ihl * 4
        assert f.frag * 8 == len(data), "fragment offset %d, expected %d" % (f.frag * 8, len(data))
        assert bool(f.flags.MF) == (i < len(frags) - 1), "MF flag wrong on fragment %d" % i
        data += raw[hl:]
    first = bytes(frags[0])[:frags[0].ihl * 4]
    h = bytearray(first)
    h[2:4] = (len(h) + len(data)).to_bytes(2, "big")
    h[6:8] = (int.from_bytes(h[6:8], "big") & 0x4000).to_bytes(2, "big")
    h[10:12] = b"\0\0"
    h[10:12] = inet_checksum(bytes(h)).to_bytes(2, "big")
    return bytes(h) + data
