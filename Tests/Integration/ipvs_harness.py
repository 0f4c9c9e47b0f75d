"""Traffic builder and checker for the IPVS semantics tests.

A `Capture` holds the rules and a set of connection scripts (client TCP/UDP
packets and, for LVS/NAT, the real server's replies, with delays between
steps). `Capture.build()` replays the scripts in time order through the
reference model (ipvs_model.IPVS), which decides every packet's fate; the
packets are written as raw frames (no scapy: captures of thousands of packets
are built in milliseconds). Real server replies are addressed from the server
the model chose; the first disagreement with Switchyard is caught on the
client's packet anyway.

`run(capture)` runs Switchyard on the capture with `--clock packet
--dump-on-exit` and returns the frames it sent plus the parsed listings;
`check(capture, result)` lists every disagreement: packet by packet (which
real server, ICMP or silence), then the final `-L -n`, `--stats` and `-c`
listings.

Every input packet carries a unique IPv4 ID, kept by NAT and DR and quoted in
ICMP errors, which is how output frames are matched to input packets.
"""

import heapq
import os
import re
import struct
import subprocess
import tempfile

from ipvs_model import IPVS, Ambiguous, ip2int
from sylib import BINARY, EAL_BASE, LB_MAC, ROUTER_MAC

BASE_TIME = 1700000000          # seconds; capture time 0
PORT_ARGS = ["--port-addr", "0:10.0.0.1/24", "--port-addr", "0:198.51.100.2/24",
             "--route", "0.0.0.0/0=198.51.100.1", "--neigh", "198.51.100.1=%s" % ROUTER_MAC]


def rs_mac(addr):
    """The static MAC every test gives real server 10.0.x.y."""
    a = [int(x) for x in addr.split(".")]
    return "02:00:00:%02x:%02x:%02x" % (a[1], a[2], a[3])


# ---------------------------------------------------------------- raw frames

def _mac(m):
    return bytes.fromhex(m.replace(":", ""))


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


_TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20}


def frame(src, dst, proto, ident, l4, dst_mac=LB_MAC, src_mac=ROUTER_MAC, ttl=64):
    total = 20 + len(l4)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, ttl, proto, 0,
                      _ip(src), _ip(dst))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return _mac(dst_mac) + _mac(src_mac) + b"\x08\x00" + hdr + l4


def _ip(a):
    return struct.pack("!I", ip2int(a))


def tcp_segment(src, dst, sport, dport, flags, seq=1, ack=0, payload=b""):
    fl = 0
    for c in flags:
        fl |= _TCP_FLAGS[c]
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, fl, 65535, 0, 0)
    seg = hdr + payload
    pseudo = _ip(src) + _ip(dst) + struct.pack("!BBH", 0, 6, len(seg))
    c = _csum(pseudo + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp_datagram(src, dst, sport, dport, payload=b""):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = _ip(src) + _ip(dst) + struct.pack("!BBH", 0, 17, len(seg))
    c = _csum(pseudo + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def write_pcap(path, records):
    """records: (time in ms since BASE_TIME, frame bytes)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, fr in records:
            f.write(struct.pack("<IIII", BASE_TIME + t // 1000, (t % 1000) * 1000, len(fr), len(fr)))
            f.write(fr)


def read_pcap(path):
    if not os.path.exists(path) or os.path.getsize(path) <= 24:
        return []
    data = open(path, "rb").read()
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    out = []
    off = 24
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        out.append(data[off:off + caplen])
        off += caplen
    return out


class Frame:
    """The fields of an output frame the checks need."""

    def __init__(self, b):
        self.raw = b
        self.dst_mac = b[0:6].hex(":")
        self.src_mac = b[6:12].hex(":")
        self.ethertype = struct.unpack_from("!H", b, 12)[0]
        self.proto = None
        self.ident = None
        self.icmp = None
        if self.ethertype != 0x0800 or len(b) < 34:
            return
        ip = b[14:]
        ihl = (ip[0] & 15) * 4
        self.ident = struct.unpack_from("!H", ip, 4)[0]
        self.proto = ip[9]
        self.src = "%d.%d.%d.%d" % tuple(ip[12:16])
        self.dst = "%d.%d.%d.%d" % tuple(ip[16:20])
        l4 = ip[ihl:]
        self.sport = self.dport = None
        if self.proto in (6, 17) and len(l4) >= 4:
            self.sport, self.dport = struct.unpack_from("!HH", l4, 0)
        if self.proto == 1 and len(l4) >= 8 + 20:
            inner = l4[8:]
            iihl = (inner[0] & 15) * 4
            self.icmp = {"type": l4[0], "code": l4[1],
                         "ident": struct.unpack_from("!H", inner, 4)[0],
                         "src": "%d.%d.%d.%d" % tuple(inner[12:16]),
                         "dst": "%d.%d.%d.%d" % tuple(inner[16:20])}
            if len(inner) >= iihl + 4:
                self.icmp["sport"], self.icmp["dport"] = struct.unpack_from("!HH", inner, iihl)

    def __repr__(self):
        if self.proto is None:
            return "<frame type %04x>" % self.ethertype
        return "<%s %s:%s -> %s:%s id=%s mac=%s%s>" % (
            {6: "TCP", 17: "UDP", 1: "ICMP"}.get(self.proto, self.proto), self.src, self.sport, self.dst,
            self.dport, self.ident, self.dst_mac, (" icmp=%s" % self.icmp) if self.icmp else "")


# ---------------------------------------------------------------- traffic

class Record:
    __slots__ = ("t", "frame", "pkt", "outcome", "ident", "script", "step", "dest", "new", "cp", "after", "tpl")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


class Script:
    def __init__(self, sid, proto, client, cport, vip, vport, steps, tag):
        self.sid = sid
        self.proto = proto
        self.client, self.cport, self.vip, self.vport = client, cport, vip, vport
        self.steps = steps
        self.tag = tag
        self.seq = 1000 + sid * 7919
        self.rseq = 5000 + sid * 104729
        self.records = []


class Capture:
    """Rules plus connection scripts, replayed through the model by build()."""

    def __init__(self, rules, margin_ms=10, spacing_ms=2):
        self.rules = rules
        self.model = IPVS(margin_ms=margin_ms)
        self.model.load_rules(rules)
        self.margin = margin_ms
        self.spacing = spacing_ms
        self.scripts = []
        self.records = []
        self.end = 0

    def real_servers(self):
        out = set()
        for svc in self.model.services.values():
            for d in svc.dests:
                out.add(d.addr)
        return sorted(out)

    def script(self, start_ms, proto, client, cport, vip, vport, steps, tag=None):
        """steps: [(delay_ms, action)], the first delay counted from start_ms.
        Actions: "c:FLAGS[:LEN]" client TCP segment, "s:FLAGS[:LEN]" real
        server TCP reply (NAT only; skipped when the model has no conn), "u[:LEN]"
        client UDP datagram, "us[:LEN]" real server UDP reply."""
        sc = Script(len(self.scripts), proto, client, cport, vip, vport, steps, tag)
        sc.start = start_ms
        self.scripts.append(sc)
        return sc

    def heartbeat(self, start_ms, end_ms, every_ms):
        """Unrelated packets (not to a VIP, passed through) every `every_ms`,
        so that Switchyard's packet clock never stands still for long."""
        n = max(1, (end_ms - start_ms) // every_ms)
        return self.script(start_ms, "udp", "198.51.100.250", 9, "198.51.100.251", 9,
                           [(0, "u:8")] + [(every_ms, "u:8")] * n, tag="heartbeat")

    def build(self):
        heap = []
        for sc in self.scripts:
            if sc.steps:
                heapq.heappush(heap, (sc.start + sc.steps[0][0], sc.sid, 0))
        last = -10 ** 9
        ident = 0
        model = self.model
        while heap:
            t, sid, i = heapq.heappop(heap)
            if t < last + self.spacing:
                heapq.heappush(heap, (last + self.spacing, sid, i))
                continue
            try:
                model.advance(t)
            except Ambiguous:
                heapq.heappush(heap, (t + self.margin, sid, i))
                continue
            sc = self.scripts[sid]
            action = sc.steps[i][1]
            fr, pkt = self._packet(sc, action, ident + 1)
            if fr is not None:
                ident += 1
                assert ident < 65536, "capture too large for unique IP IDs"
                outcome = model.process(pkt, t)
                rec = Record(t=t, frame=fr, pkt=pkt, outcome=outcome, ident=ident, script=sc, step=i,
                             dest=None, new=False, cp=None, after=None, tpl=None)
                if outcome[0] in ("fwd", "reply"):
                    rec.cp = outcome[1]
                    rec.after = (rec.cp.state_name(), rec.cp.inactive)
                    rec.tpl = rec.cp.control
                    rec.dest = outcome[1].dest
                    rec.new = outcome[0] == "fwd" and outcome[2]
                self.records.append(rec)
                sc.records.append(rec)
                last = t
            if i + 1 < len(sc.steps):
                heapq.heappush(heap, (t + sc.steps[i + 1][0], sid, i + 1))
        self.end = last
        model.finish(last)
        return self

    def _packet(self, sc, action, ident):
        parts = action.split(":")
        kind = parts[0]
        if kind in ("c", "s"):
            flags = parts[1]
            n = int(parts[2]) if len(parts) > 2 else (100 if "P" in flags else 0)
            payload = bytes((sc.sid + k) & 0xFF for k in range(n))
        else:
            n = int(parts[1]) if len(parts) > 1 else 32
            payload = bytes((sc.sid * 3 + k) & 0xFF for k in range(n))
        if kind == "c":
            l4 = tcp_segment(sc.client, sc.vip, sc.cport, sc.vport, flags, sc.seq, sc.rseq, payload)
            sc.seq += n + (1 if ("S" in flags or "F" in flags) else 0)
            fr = frame(sc.client, sc.vip, 6, ident, l4)
            pkt = dict(proto="tcp", src=sc.client, sport=sc.cport, dst=sc.vip, dport=sc.vport, flags=flags,
                       length=20 + len(l4))
            return fr, pkt
        if kind == "u":
            l4 = udp_datagram(sc.client, sc.vip, sc.cport, sc.vport, payload)
            fr = frame(sc.client, sc.vip, 17, ident, l4)
            pkt = dict(proto="udp", src=sc.client, sport=sc.cport, dst=sc.vip, dport=sc.vport, flags="",
                       length=20 + len(l4))
            return fr, pkt
        # server replies: from the server the model holds for this conn
        proto = "tcp" if kind == "s" else "udp"
        cp = self.model.conns.get((proto, sc.client, sc.cport, sc.vip, sc.vport))
        if cp is None or cp.dest.fwd != "m":
            return None, None
        if kind == "s":
            l4 = tcp_segment(cp.daddr, sc.client, cp.dport, sc.cport, flags, sc.rseq, sc.seq, payload)
            sc.rseq += n + (1 if ("S" in flags or "F" in flags) else 0)
        else:
            l4 = udp_datagram(cp.daddr, sc.client, cp.dport, sc.cport, payload)
        fr = frame(cp.daddr, sc.client, 6 if kind == "s" else 17, ident, l4, src_mac=rs_mac(cp.daddr))
        pkt = dict(proto=proto, src=cp.daddr, sport=cp.dport, dst=sc.client, dport=sc.cport, flags=flags if
                   kind == "s" else "", length=20 + len(l4))
        return fr, pkt


# ---------------------------------------------------------------- running

class Result:
    def __init__(self, rc, stdout, stderr, frames, workdir):
        self.rc, self.stdout, self.stderr, self.frames, self.workdir = rc, stdout, stderr, frames, workdir
        self.listing, self.stats, self.conn_rows = parse_dump(stdout)


def run(capture, extra_args=(), lcores="0", timeout=120):
    workdir = tempfile.mkdtemp(prefix="sy-ipvs-")
    inp = os.path.join(workdir, "in.pcap")
    outp = os.path.join(workdir, "out.pcap")
    write_pcap(inp, [(r.t, r.frame) for r in capture.records])
    rules = os.path.join(workdir, "rules.txt")
    with open(rules, "w") as f:
        f.write(capture.rules)
    args = ["--config", rules, "--clock", "packet", "--dump-on-exit", "--exit-on-idle", "200"] + PORT_ARGS
    for rs in capture.real_servers():
        args += ["--neigh", "%s=%s" % (rs, rs_mac(rs))]
    cmd = [BINARY, "-l", lcores] + EAL_BASE + ["--vdev", "net_pcap0,rx_pcap=%s,tx_pcap=%s" % (inp, outp),
                                               "--"] + args + list(extra_args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    frames = [Frame(b) for b in read_pcap(outp)]
    return Result(proc.returncode, proc.stdout, proc.stderr, frames, workdir)


def parse_dump(stdout):
    """The three listings printed after `final counters:`, as
    listing {(PROTO, "vip:port"): {"rs:port": (fwd, weight, active, inactive)}},
    stats {(PROTO, "vip:port") or "rs:port" under it: (conns, inpkts, outpkts, inbytes, outbytes)},
    conn rows [(proto, expire seconds, state, source, virtual, destination)]."""
    i = stdout.find("final counters:")
    text = stdout[i:] if i >= 0 else stdout
    listing, stats, rows = {}, {}, []
    mode = None
    svc = None
    for line in text.splitlines():
        if line.startswith("IP Virtual Server version"):
            mode = "head"
            continue
        if line.startswith("IPVS connection entries"):
            mode = "conns"
            continue
        if mode == "head" and line.startswith("Prot LocalAddress:Port Scheduler"):
            mode = "list"
            continue
        if mode == "head" and line.startswith("Prot LocalAddress:Port") and "Conns" in line:
            mode = "stats"
            continue
        if mode == "list":
            m = re.match(r"^(TCP|UDP|SCTP)\s+(\S+)\s", line)
            if m:
                svc = (m.group(1), m.group(2))
                listing[svc] = {}
                continue
            m = re.match(r"^  -> (\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)", line)
            if m and svc is not None:
                listing[svc][m.group(1)] = (m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)))
        elif mode == "stats":
            m = re.match(r"^(TCP|UDP|SCTP)\s+(\S+)\s+(.*)$", line)
            if m:
                svc = (m.group(1), m.group(2))
                stats[svc] = {"": _nums(m.group(3))}
                continue
            m = re.match(r"^  -> (\S+)\s+(\d.*)$", line)
            if m and svc is not None:
                stats[svc][m.group(1)] = _nums(m.group(2))
        elif mode == "conns":
            m = re.match(r"^(TCP|UDP|SCTP|IP)\s+(\d+):(\d\d)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", line)
            if m:
                rows.append((m.group(1), int(m.group(2)) * 60 + int(m.group(3)), m.group(4), m.group(5),
                             m.group(6), m.group(7)))
    return listing, stats, rows


def _nums(s):
    out = []
    for x in s.split():
        mult = {"K": 1000, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12}.get(x[-1], 1)
        out.append(int(x[:-1]) * mult if mult != 1 else int(x))
    return tuple(out)


# ---------------------------------------------------------------- checking

def describe(rec):
    p = rec.pkt
    return "#%d t=%.3fs %s %s:%d->%s:%d %s [%s step %d]" % (
        rec.ident, rec.t / 1000.0, p["proto"], p["src"], p["sport"], p["dst"], p["dport"], p["flags"],
        rec.script.tag or "script %d" % rec.script.sid, rec.step)


def classify(frames):
    """Output frames by the input IP ID they carry: {id: [frames]} for
    forwarded ones, {id: [frames]} for ICMP errors quoting it, and the rest."""
    fwd, icmp, other = {}, {}, []
    for f in frames:
        if f.proto == 1 and f.icmp is not None and f.icmp["type"] in (3, 11):
            icmp.setdefault(f.icmp["ident"], []).append(f)
        elif f.ident is not None:
            fwd.setdefault(f.ident, []).append(f)
        else:
            other.append(f)
    return fwd, icmp, other


def packet_mismatches(capture, result):
    """Every packet whose fate differs from the model's, new connections first."""
    fwd, icmp, other = classify(result.frames)
    new_bad, bad = [], []
    seen = set()
    for rec in capture.records:
        kind = rec.outcome[0]
        got = fwd.get(rec.ident, [])
        got_icmp = icmp.get(rec.ident, [])
        seen.add(rec.ident)
        p = rec.pkt
        problem = None
        if kind == "fwd":
            d = rec.dest
            if got_icmp or len(got) != 1:
                problem = "expected forwarding to %s:%d, got %s" % (d.addr, rec.cp.dport, got + got_icmp)
            else:
                f = got[0]
                if d.fwd == "m":
                    ok = f.dst == d.addr and f.dport == rec.cp.dport and f.src == p["src"] and \
                        f.dst_mac == rs_mac(d.addr)
                else:
                    ok = f.dst == p["dst"] and f.dst_mac == rs_mac(d.addr) and f.dport == p["dport"]
                if not ok:
                    problem = "expected %s to %s:%d, got %r (%s)" % (
                        "NAT" if d.fwd == "m" else "DR", d.addr, rec.cp.dport, f, rs_name(f))
        elif kind == "reply":
            cp = rec.cp
            if got_icmp or len(got) != 1:
                problem = "expected the NAT reply from %s:%d, got %s" % (cp.vaddr, cp.vport, got + got_icmp)
            else:
                f = got[0]
                if not (f.src == cp.vaddr and f.sport == cp.vport and f.dst == cp.caddr and f.dport == cp.cport):
                    problem = "expected the NAT reply from %s:%d, got %r" % (cp.vaddr, cp.vport, f)
        elif kind == "icmp-unreach":
            if got or len(got_icmp) != 1:
                problem = "expected ICMP port unreachable only, got %s" % (got + got_icmp)
            else:
                f = got_icmp[0]
                if not (f.icmp["type"] == 3 and f.icmp["code"] == 3 and f.src == p["dst"] and f.dst == p["src"]
                        and f.icmp["src"] == p["src"] and f.icmp["dst"] == p["dst"]):
                    problem = "expected ICMP port unreachable from %s to %s, got %r" % (p["dst"], p["src"], f)
        elif kind == "local":
            if got or got_icmp:
                problem = "expected no output (not scheduled), got %s" % (got + got_icmp)
        if problem:
            (new_bad if (kind == "fwd" and rec.new) or kind == "icmp-unreach" else bad).append(
                "%s: %s" % (describe(rec), problem))
    extra = [f for k, fs in fwd.items() if k not in seen for f in fs] + \
            [f for k, fs in icmp.items() if k not in seen for f in fs] + other
    if extra:
        bad.append("%d unexpected output frames, e.g. %s" % (len(extra), extra[:3]))
    return new_bad, bad


def rs_name(f):
    return "dst mac %s" % f.dst_mac


def listing_mismatches(capture, result):
    out = []
    model = capture.model
    want = {}
    for (proto, vip, vport), svc in model.services.items():
        want[(proto.upper(), "%s:%d" % (vip, vport))] = {
            "%s:%d" % (d.addr, d.port): ({"m": "Masq", "g": "Route", "i": "Tunnel"}[d.fwd], d.weight, d.active,
                                        d.inactive) for d in svc.dests}
    if want != result.listing:
        for k in sorted(set(want) | set(result.listing)):
            w, g = want.get(k), result.listing.get(k)
            if w != g:
                for rs in sorted(set(w or {}) | set(g or {})):
                    if (w or {}).get(rs) != (g or {}).get(rs):
                        out.append("-L -n %s %s: model (fwd, weight, active, inactive) %s, switchyard %s" % (
                            k, rs, (w or {}).get(rs), (g or {}).get(rs)))
    return out


def stats_mismatches(capture, result):
    out = []
    for (proto, vip, vport), svc in capture.model.services.items():
        key = (proto.upper(), "%s:%d" % (vip, vport))
        got = result.stats.get(key)
        if got is None:
            out.append("--stats: no service %s" % (key,))
            continue
        for d in svc.dests:
            name = "%s:%d" % (d.addr, d.port)
            want = (d.conns, d.inpkts, d.outpkts, d.inbytes, d.outbytes)
            if got.get(name) != want:
                out.append("--stats %s %s: model (conns, inpkts, outpkts, inbytes, outbytes) %s, switchyard %s"
                           % (key, name, want, got.get(name)))
    return out


def conn_row_mismatches(capture, result):
    """The -c rows, as multisets of (proto, state, source, virtual, destination);
    the expire column must be the model's remaining time, floored, within 1 s."""
    import collections
    want = collections.Counter()
    want_exp = collections.defaultdict(list)
    for proto, state, src, vip, dst, left in capture.model.conn_rows(capture.end):
        k = (proto, state, src, vip, dst)
        want[k] += 1
        want_exp[k].append(left)
    got = collections.Counter()
    got_exp = collections.defaultdict(list)
    for proto, exp, state, src, vip, dst in result.conn_rows:
        k = (proto, state, src, vip, dst)
        got[k] += 1
        got_exp[k].append(exp)
    out = []
    for k in sorted(set(want) | set(got)):
        if want[k] != got[k]:
            out.append("-c row %s: model %d, switchyard %d" % (" ".join(k), want[k], got[k]))
        else:
            for w, g in zip(sorted(want_exp[k]), sorted(got_exp[k])):
                if abs(int(w) - g) > 1:
                    out.append("-c row %s: expire model %.3fs, switchyard %ds" % (" ".join(k), w, g))
    return out


def check(capture, result, limit=12):
    """All disagreements, as a readable report ('' when none)."""
    assert result.rc == 0, result.stderr[-3000:]
    new_bad, bad = packet_mismatches(capture, result)
    parts = []
    if new_bad:
        parts.append("%d new-connection decisions differ from the model:\n  " % len(new_bad) +
                     "\n  ".join(new_bad[:limit]))
    if bad:
        parts.append("%d other packets differ:\n  " % len(bad) + "\n  ".join(bad[:limit]))
    for name, fn in (("-L -n", listing_mismatches), ("--stats", stats_mismatches), ("-L -n -c", conn_row_mismatches)):
        m = fn(capture, result)
        if m:
            parts.append("%s listing differs (%d):\n  " % (name, len(m)) + "\n  ".join(m[:limit]))
    return "\n".join(parts)


def new_conn_decisions(capture):
    """(record, dest) for every new connection the model created."""
    return [(r, r.dest) for r in capture.records if r.outcome[0] == "fwd" and r.new]


# ---------------------------------------------------------------- traffic mixes

class Clients:
    """Unique client (address, port) pairs from 100.64.0.0/10, or from a given
    list of addresses."""

    def __init__(self, rng):
        self.rng = rng
        self.used = set()

    def addr(self):
        r = self.rng
        return "100.%d.%d.%d" % (64 + r.randrange(64), r.randrange(256), 1 + r.randrange(254))

    def pair(self, addr=None):
        while True:
            a = addr or self.addr()
            p = self.rng.randrange(1024, 65536)
            if (a, p) not in self.used:
                self.used.add((a, p))
                return a, p


def _j(rng):
    return rng.randint(1, 40)


def _hold(rng, lo=500, hi=40000):
    return rng.randint(lo, hi)


def tcp_steps(kind, rng, nat):
    """One TCP connection's script. NAT kinds include the real server's
    replies; DR kinds have client packets only (INPUT_ONLY)."""
    j = lambda: _j(rng)
    if kind == "full":          # NAT: ... -> CLOSE_WAIT -> TIME_WAIT (120 s); DR: -> FIN_WAIT (120 s)
        if nat:
            return [(0, "c:S"), (j(), "s:SA"), (j(), "c:A"), (j(), "c:PA"), (j(), "s:PA"), (_hold(rng), "c:PA"),
                    (j(), "s:PA"), (j(), "c:FA"), (j(), "s:FA"), (j(), "c:A")]
        return [(0, "c:S"), (j(), "c:A"), (j(), "c:PA"), (_hold(rng), "c:PA"), (j(), "c:FA"), (j(), "c:A")]
    if kind == "halfclose":     # client FIN only: NAT CLOSE_WAIT (60 s), DR FIN_WAIT (120 s)
        return [(0, "c:S"), (j(), "c:A"), (j(), "c:PA"), (_hold(rng), "c:FA"), (j(), "c:A")]
    if kind == "syn_only":      # SYN_RECV, active for 60 s after the last SYN
        steps = [(0, "c:S")]
        if rng.random() < 0.5:
            steps.append((3000, "c:S"))
        return steps
    if kind == "long":          # ESTABLISHED for 900 s
        if nat:
            return [(0, "c:S"), (j(), "s:SA"), (j(), "c:A"), (j(), "c:PA"), (j(), "s:PA")]
        return [(0, "c:S"), (j(), "c:A"), (j(), "c:PA")]
    if kind == "rst":           # CLOSE, 10 s
        return [(0, "c:S"), (j(), "c:A"), (_hold(rng), "c:" + rng.choice(["R", "RA"]))]
    if kind == "reuse_close":   # RST -> CLOSE, then a SYN from the same port reschedules
        return tcp_steps("rst", rng, nat) + [(rng.randint(1000, 8000), "c:S"), (j(), "c:A"),
                                             (_hold(rng), "c:R")]
    if kind == "reuse_fin":     # NAT: TIME_WAIT -> new SYN reschedules; DR: FIN_WAIT -> same conn again
        return tcp_steps("full", rng, nat) + [(rng.randint(2000, 100000), "c:S"), (j(), "c:A"),
                                              (_hold(rng), "c:FA")]
    if kind == "reuse_cw":      # NAT: CLOSE_WAIT -> SYN_RECV on the same conn, no rescheduling
        return tcp_steps("halfclose", rng, nat) + [(rng.randint(2000, 50000), "c:S"), (j(), "c:A"),
                                                   (_hold(rng), "c:R")]
    if kind == "stray":         # no conn, no SYN: never scheduled
        return [(0, "c:" + rng.choice(["A", "PA", "FA", "R", "RA"]))]
    if kind == "synack":        # SYN+ACK from a client still schedules (active FTP rule)
        return [(0, "c:SA"), (j(), "c:A"), (_hold(rng), "c:R")]
    raise ValueError(kind)


TCP_MIX = [("full", 25), ("halfclose", 10), ("syn_only", 15), ("long", 10), ("rst", 14), ("reuse_close", 6),
           ("reuse_fin", 8), ("reuse_cw", 5), ("stray", 5), ("synack", 2)]


def udp_steps(kind, rng, nat):
    j = lambda: _j(rng)
    if kind == "one":
        return [(0, "u")]
    if kind == "dialog":
        steps = [(0, "u")]
        if nat:
            steps.append((j(), "us"))
        steps += [(_hold(rng), "u")]
        return steps
    if kind == "again":         # the same client port after the 300 s timeout: a new conn
        return [(0, "u"), (rng.randint(301000, 330000), "u")]
    raise ValueError(kind)


UDP_MIX = [("one", 50), ("dialog", 40), ("again", 10)]


def pick(rng, mix):
    total = sum(w for _, w in mix)
    x = rng.randrange(total)
    for k, w in mix:
        if x < w:
            return k
        x -= w
    raise AssertionError


def add_phase(cap, rng, clients, start_ms, n, window_ms, proto, vips, vport, nat, mix=None, addrs=None,
              steps_fn=None):
    """n connections starting uniformly in [start, start+window) to random
    VIPs of `vips` (all with port vport)."""
    for _ in range(n):
        t = start_ms + rng.randrange(window_ms)
        a, p = clients.pair(rng.choice(addrs) if addrs else None)
        vip = rng.choice(vips)
        if steps_fn is not None:
            kind, steps = steps_fn(rng)
        elif proto == "tcp":
            kind = pick(rng, mix or TCP_MIX)
            steps = tcp_steps(kind, rng, nat)
        else:
            kind = pick(rng, mix or UDP_MIX)
            steps = udp_steps(kind, rng, nat)
        cap.script(t, proto, a, p, vip, vport, steps, tag=kind)


def tshark_check(result):
    """tshark's complaints (malformed, bad checksums) about what Switchyard sent."""
    from sylib import tshark_problems
    return tshark_problems(os.path.join(result.workdir, "out.pcap"))
