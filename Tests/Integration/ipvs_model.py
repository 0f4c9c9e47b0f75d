"""A pure-Python reference model of Linux IPVS, written from the IPVS semantics
reference (schedulers, connection accounting, TCP/UDP states and timeouts,
persistence templates, thresholds). The integration tests replay the same
traffic through this model and through Switchyard and compare every decision.

Time is an integer number of milliseconds. Addresses are IPv4 dotted strings at
the API and host-order u32 inside. Lists of real servers are kept in the
kernel's list order: index 0 is the list head, i.e. the newest server.

Nothing here is fast or clever on purpose: it is meant to be read next to the
spec, one rule per line.
"""

import collections
import heapq
import ipaddress
import shlex
import struct

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def ip2int(a):
    return int(ipaddress.IPv4Address(a))


def int2ip(v):
    return str(ipaddress.IPv4Address(v & M32))


# ---------------------------------------------------------------- hashes

GOLDEN_RATIO_32 = 0x61C88647


def hash_32(v, bits):
    """include/linux/hash.h: (v * 0x61C88647 mod 2^32) >> (32 - bits)."""
    return ((v * GOLDEN_RATIO_32) & M32) >> (32 - bits)


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & M64


def siphash(k0, k1, data, c_rounds=2, d_rounds=4):
    """Generic SipHash-c-d with a 128-bit key given as two u64 words, 64-bit
    output. SipHash-2-4 is the standard one; the kernel's hsiphash on 64-bit
    machines is SipHash-1-3."""
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rnd():
        v[0] = (v[0] + v[1]) & M64
        v[1] = _rotl(v[1], 13) ^ v[0]
        v[0] = _rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & M64
        v[3] = _rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & M64
        v[3] = _rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & M64
        v[1] = _rotl(v[1], 17) ^ v[2]
        v[2] = _rotl(v[2], 32)

    n = len(data)
    full = n - n % 8
    for i in range(0, full, 8):
        m = struct.unpack_from("<Q", data, i)[0]
        v[3] ^= m
        for _ in range(c_rounds):
            rnd()
        v[0] ^= m
    b = ((n & 0xFF) << 56) | int.from_bytes(data[full:], "little")
    v[3] ^= b
    for _ in range(c_rounds):
        rnd()
    v[0] ^= b
    v[2] ^= 0xFF
    for _ in range(d_rounds):
        rnd()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def hsiphash_u32(value, key):
    """hsiphash(&v, 4, key) on a 64-bit kernel: SipHash-1-3 over the u32 in
    host (little-endian) byte order, truncated to u32."""
    return siphash(key[0], key[1], struct.pack("<I", value & M32), 1, 3) & M32


def gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def fls(x):
    return x.bit_length()


# ---------------------------------------------------------------- objects

TCP_STATES = ["NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE",
              "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK"]
NO, ES, SS, SR, FW, TW, CL, CW, LA, LI, SA = range(11)
TCP_TIMEOUT_S = {NO: 2, ES: 900, SS: 120, SR: 60, FW: 120, TW: 120, CL: 10, CW: 60, LA: 30, LI: 120, SA: 120}
TCP_ACTIVE = {ES, SS, SR, SA}
UDP_TIMEOUT_S = 300
NEW_CONN_TIMEOUT_S = 3
TEMPLATE_RETRY_S = 60


def _row(s):
    names = {"NO": NO, "ES": ES, "SS": SS, "SR": SR, "FW": FW, "TW": TW, "CL": CL, "CW": CW, "LA": LA,
             "LI": LI, "SA": SA}
    return [names[x] for x in s.split()]


# Columns: current state NO ES SS SR FW TW CL CW LA LI SA. Rows: syn fin ack rst.
TCP_TABLE = {
    "INPUT": {
        "syn": _row("SR ES ES SR SR SR SR SR SR SR SR"),
        "fin": _row("CL CW SS TW TW TW CL CW LA LI TW"),
        "ack": _row("ES ES SS ES FW TW CL CW CL LI ES"),
        "rst": _row("CL CL CL SR CL CL CL CL LA LI SR"),
    },
    "OUTPUT": {
        "syn": _row("SS ES SS SR SS SS SS SS SS LI SR"),
        "fin": _row("TW FW SS TW FW TW CL TW LA LI TW"),
        "ack": _row("ES ES SS ES FW TW CL CW LA ES ES"),
        "rst": _row("CL CL SS CL CL TW CL CL CL CL CL"),
    },
    "INPUT_ONLY": {
        "syn": _row("SR ES ES SR SR SR SR SR SR SR SR"),
        "fin": _row("CL FW SS TW FW TW CL CW LA LI TW"),
        "ack": _row("ES ES SS ES FW TW CL CW CL LI ES"),
        "rst": _row("CL CL CL SR CL CL CL CL LA LI CL"),
    },
}


def tcp_flag_index(flags):
    """RST first, then SYN, FIN, ACK; None when none of them is set."""
    if "R" in flags:
        return "rst"
    if "S" in flags:
        return "syn"
    if "F" in flags:
        return "fin"
    if "A" in flags:
        return "ack"
    return None


class Dest:
    def __init__(self, addr, port, weight, fwd, u_threshold=0, l_threshold=0):
        self.addr = addr
        self.ip = ip2int(addr)
        self.port = port
        self.weight = weight
        self.last_weight = weight
        self.fwd = fwd                  # "m" (masq), "g" (route), "i" (tunnel)
        self.u_threshold = u_threshold
        self.l_threshold = l_threshold
        self.active = 0
        self.inactive = 0
        self.persist = 0
        self.overload = False
        self.available = True
        # --stats counters
        self.conns = 0
        self.inpkts = 0
        self.outpkts = 0
        self.inbytes = 0
        self.outbytes = 0

    def total(self):
        return self.active + self.inactive

    def overhead(self):
        """ip_vs_dest_conn_overhead: active*256 + inactive."""
        return (self.active << 8) + self.inactive

    def unavailable(self):
        return self.weight <= 0 or self.overload

    def __repr__(self):
        return "%s:%d(w=%d a=%d i=%d%s)" % (self.addr, self.port, self.weight, self.active, self.inactive,
                                            " OVL" if self.overload else "")


# ---------------------------------------------------------------- schedulers

class Scheduler:
    name = "?"

    def init_service(self, svc):
        pass

    def add_dest(self, svc, dest):
        pass

    def schedule(self, svc, pkt, now):
        raise NotImplementedError


class RR(Scheduler):
    name = "rr"

    def init_service(self, svc):
        self.pos = None                 # None is the list head

    def schedule(self, svc, pkt, now):
        dests = svc.dests
        last = self.pos
        start = 0 if last is None else dests.index(last) + 1
        passes = 0
        while True:
            for d in dests[start:]:
                if not d.overload and d.weight > 0:
                    self.pos = d
                    return d
                if d is last:
                    return None
            passes += 1
            if not (passes < 2 and last is not None):
                return None
            start = 0


class WRR(Scheduler):
    name = "wrr"

    @staticmethod
    def _gcd(svc):
        g = 0
        for d in svc.dests:
            if d.weight > 0:
                g = gcd(d.weight, g) if g > 0 else d.weight
        return g if g else 1

    @staticmethod
    def _max(svc):
        return max([0] + [d.weight for d in svc.dests])

    def init_service(self, svc):
        self.cl = None
        self.di = self._gcd(svc)
        self.mw = self._max(svc) - (self.di - 1)
        self.cw = self.mw

    def _changed(self, svc):
        self.cl = None
        self.di = self._gcd(svc)
        self.mw = self._max(svc) - (self.di - 1)
        if self.cw > self.mw or self.cw == 0:
            self.cw = self.mw
        elif self.di > 1:
            self.cw = (self.cw // self.di) * self.di + 1

    def add_dest(self, svc, dest):
        self._changed(svc)

    def schedule(self, svc, pkt, now):
        dests = svc.dests
        if self.mw == 0:
            return None
        last = self.cl
        cur = self.cl
        stop = None
        last_pass = False
        restarted = False
        while True:
            start = 0 if cur is None else dests.index(cur) + 1
            for d in dests[start:]:
                if not d.overload and d.weight >= self.cw:
                    self.cl = d
                    return d
                if d is stop:
                    self.cl = d
                    return None
            cur = None
            self.cw -= self.di
            if self.cw <= 0:
                self.cw = self.mw
                if last_pass or last is None:
                    self.cl = None
                    return None
                restarted = True
            last_pass = self.cw <= self.di
            if last_pass and restarted and last is not None:
                stop = last


class LC(Scheduler):
    name = "lc"

    def schedule(self, svc, pkt, now):
        least = None
        for d in svc.dests:
            if d.overload or d.weight == 0:
                continue
            if least is None or d.overhead() < least.overhead():
                least = d
        return least


def _weighted_least(dests, overhead, first_ok=None):
    """The wlc loop: the first non-OVERLOAD dest with weight > 0 is `least`;
    later non-OVERLOAD dests replace it when loh*w(d) > doh*w(least)."""
    least = None
    idx = 0
    for idx, d in enumerate(dests):
        if not d.overload and d.weight > 0:
            least = d
            break
    if least is None:
        return None
    loh = overhead(least)
    for d in dests[idx + 1:]:
        if d.overload:
            continue
        doh = overhead(d)
        if loh * d.weight > doh * least.weight:
            least, loh = d, doh
    return least


class WLC(Scheduler):
    name = "wlc"

    def schedule(self, svc, pkt, now):
        return _weighted_least(svc.dests, Dest.overhead)


class SED(Scheduler):
    name = "sed"

    def schedule(self, svc, pkt, now):
        return _weighted_least(svc.dests, lambda d: d.active + 1)


class NQ(Scheduler):
    name = "nq"

    def schedule(self, svc, pkt, now):
        least = None
        loh = 0
        for d in svc.dests:
            if d.overload or d.weight == 0:
                continue
            doh = d.active + 1
            if d.active == 0:
                return d
            if least is None or loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least


class FO(Scheduler):
    name = "fo"

    def schedule(self, svc, pkt, now):
        best, hw = None, 0
        for d in svc.dests:
            if not d.overload and d.weight > hw:
                best, hw = d, d.weight
        return best


class OVF(Scheduler):
    name = "ovf"

    def schedule(self, svc, pkt, now):
        h = None
        for d in svc.dests:
            w = d.weight
            if d.overload or d.active > w or w == 0:
                continue
            if h is None or w > h.weight:
                h = d
        return h


class TWOS(Scheduler):
    """Random, so not predicted. The tests replay Switchyard's own choices
    through `oracle` {(client, cport, now): dest address or None} and check
    that each one was eligible: weight > 0 and not OVERLOAD when it was made
    (and that "no dest" happens only when nothing is eligible). Without an
    oracle entry it takes the first eligible dest."""
    name = "twos"

    def init_service(self, svc):
        self.oracle = {}
        self.violations = []

    def schedule(self, svc, pkt, now):
        eligible = [d for d in svc.dests if not d.overload and d.weight > 0]
        key = (pkt["src"], pkt["sport"], now)
        if key not in self.oracle:
            return eligible[0] if eligible else None
        addr = self.oracle[key]
        if addr is None:
            if eligible:
                self.violations.append("%s: no dest while %s were eligible" % (key, eligible))
            return None
        d = [x for x in svc.dests if x.addr == addr][0]
        if d not in eligible:
            self.violations.append("%s: chose %r, not eligible (eligible: %s)" % (key, d, eligible))
        return d


class DH(Scheduler):
    name = "dh"
    BITS = 8

    def init_service(self, svc):
        self._assign(svc)

    def _assign(self, svc):
        n = len(svc.dests)
        self.buckets = [svc.dests[i % n] if n else None for i in range(1 << self.BITS)]

    def add_dest(self, svc, dest):
        self._assign(svc)

    def schedule(self, svc, pkt, now):
        d = self.buckets[hash_32(ip2int(pkt["dst"]), self.BITS)]
        if d is None or not d.available or d.weight <= 0 or d.overload:
            return None
        return d


class SH(Scheduler):
    name = "sh"
    BITS = 8
    SIZE = 1 << BITS

    def init_service(self, svc):
        self._assign(svc)

    def _assign(self, svc):
        dests = svc.dests
        self.buckets = []
        if not dests:
            self.buckets = [None] * self.SIZE
            return
        p = 0
        count = 0
        for _ in range(self.SIZE):
            if p == len(dests):
                p = 0
            d = dests[p]
            self.buckets.append(d)
            count += 1
            if count >= d.weight:
                p += 1
                count = 0

    def add_dest(self, svc, dest):
        self._assign(svc)

    def hashkey(self, addr, port, offset):
        return (offset + hash_32((port + addr) & M32, self.BITS)) & (self.SIZE - 1)

    def schedule(self, svc, pkt, now):
        port = pkt["sport"] if "sh-port" in svc.sched_flags else 0
        addr = ip2int(pkt["src"])
        ihash = self.hashkey(addr, port, 0)
        d = self.buckets[ihash]
        if "sh-fallback" not in svc.sched_flags:
            return None if d is None or d.unavailable() else d
        if d is None:
            return None
        if not d.unavailable():
            return d
        for offset in range(self.SIZE):
            roffset = (offset + ihash) % self.SIZE
            d = self.buckets[self.hashkey(addr, port, roffset)]
            if d is None:
                break
            if not d.unavailable():
                return d
        return None


class MH(Scheduler):
    name = "mh"
    SIZE = 4093
    TAB_BITS = 6
    HASH1 = (2654435761, 2654435761)
    HASH2 = (2654446892, 2654446892)

    def init_service(self, svc):
        self._build(svc)

    def add_dest(self, svc, dest):
        self._build(svc)

    def hashkey(self, addr, port, key, offset):
        return hsiphash_u32((offset + port + addr) & M32, key)

    def _build(self, svc):
        M = self.SIZE
        dests = svc.dests
        g = 0
        for d in dests:
            if d.last_weight > 0:
                g = gcd(d.last_weight, g) if g > 0 else d.last_weight
        self.lookup = [None] * M
        if g < 1:
            return
        mw = max(d.last_weight for d in dests) // g
        rshift = max(0, fls(mw) - self.TAB_BITS)
        setup = []
        for d in dests:
            offset = self.hashkey(d.ip, d.port, self.HASH1, 0) % M
            skip = self.hashkey(d.ip, d.port, self.HASH2, 0) % (M - 1) + 1
            turns = (d.last_weight // g) >> rshift
            if turns == 0:
                turns = 1 if d.last_weight != 0 else 0
            setup.append([offset, skip, turns])
        taken = [False] * M
        n = 0
        dt_count = 0
        while n < M:
            i = 0
            while i < len(dests):
                perm, skip, turns = setup[i]
                if turns < 1:
                    i += 1
                    continue
                c = perm
                while taken[c]:
                    perm += skip
                    if perm >= M:
                        perm -= M
                    c = perm
                setup[i][0] = perm
                taken[c] = True
                self.lookup[c] = dests[i]
                n += 1
                if n == M:
                    return
                dt_count += 1
                if dt_count >= turns:
                    dt_count = 0
                    i += 1

    def schedule(self, svc, pkt, now):
        port = pkt["sport"] if "mh-port" in svc.sched_flags else 0
        addr = ip2int(pkt["src"])
        M = self.SIZE
        ihash = self.hashkey(addr, port, self.HASH1, 0) % M
        d = self.lookup[ihash]
        if "mh-fallback" not in svc.sched_flags:
            return None if d is None or d.unavailable() else d
        if d is None:
            return None
        if not d.unavailable():
            return d
        for offset in range(M):
            roffset = (offset + ihash) % M
            d = self.lookup[self.hashkey(addr, port, self.HASH1, roffset) % M]
            if d is None:
                break
            if not d.unavailable():
                return d
        return None


def _lblc_is_overloaded(dest, svc):
    if dest.active > dest.weight:
        for d in svc.dests:
            if d.active * 2 < d.weight:
                return True
    return False


LBLC_EXPIRATION_MS = 24 * 3600 * 1000


class LBLC(Scheduler):
    """The cache GC (every 60 s, full pass every 30 min for entries idle 24 h)
    is not modelled: tests keep every entry in use."""
    name = "lblc"

    def init_service(self, svc):
        self.cache = {}

    def schedule(self, svc, pkt, now):
        key = pkt["dst"]
        en = self.cache.get(key)
        if en is not None:
            en["lastuse"] = now
            d = en["dest"]
            if d.available and d.weight > 0 and not _lblc_is_overloaded(d, svc):
                return d
        d = _weighted_least(svc.dests, Dest.overhead)
        if d is None:
            return None
        if en is None or en["dest"] is not d:
            self.cache[key] = {"dest": d, "lastuse": now}
        return d


class LBLCR(Scheduler):
    name = "lblcr"

    def init_service(self, svc):
        self.cache = {}
        self.erased = []

    @staticmethod
    def set_min(members):
        least = None
        idx = 0
        for idx, d in enumerate(members):
            if d.overload:
                continue
            if d.weight > 0 and d.available:
                least = d
                break
        if least is None:
            return None
        loh = least.overhead()
        for d in members[idx + 1:]:
            if d.overload:
                continue
            doh = d.overhead()
            if loh * d.weight > doh * least.weight and d.available:
                least, loh = d, doh
        return least

    @staticmethod
    def set_max(members):
        most = None
        idx = 0
        for idx, d in enumerate(members):
            if d.weight > 0:
                most = d
                break
        if most is None:
            return None
        moh = most.overhead()
        for d in members[idx + 1:]:
            doh = d.overhead()
            if moh * d.weight < doh * most.weight and d.weight > 0:
                most, moh = d, doh
        return most

    def schedule(self, svc, pkt, now):
        key = pkt["dst"]
        en = self.cache.get(key)
        if en is not None:
            en["lastuse"] = now
            d = self.set_min(en["set"])
            if len(en["set"]) > 1 and now > en["lastmod"] + LBLC_EXPIRATION_MS:
                m = self.set_max(en["set"])
                if m is not None:
                    en["set"].remove(m)
                    en["lastmod"] = now
                    self.erased.append((now, m.addr))
            if d is not None and not _lblc_is_overloaded(d, svc):
                return d
            d = _weighted_least(svc.dests, Dest.overhead)
            if d is None:
                return None
            if d not in en["set"]:
                en["set"].insert(0, d)
                en["lastmod"] = now
            return d
        d = _weighted_least(svc.dests, Dest.overhead)
        if d is None:
            return None
        self.cache[key] = {"set": [d], "lastmod": now, "lastuse": now}
        return d


class NoScheduler(Scheduler):
    name = "none"

    def schedule(self, svc, pkt, now):
        return None


SCHEDULERS = {c.name: c for c in (RR, WRR, LC, WLC, SED, NQ, FO, OVF, TWOS, DH, SH, MH, LBLC, LBLCR,
                                  NoScheduler)}


class Service:
    def __init__(self, proto, vip, vport, sched="wlc", persistent=None, netmask="255.255.255.255",
                 sched_flags=(), ops=False):
        self.proto = proto
        self.ops = ops and proto == "udp"       # one-packet scheduling
        self.vip = vip
        self.vport = vport
        self.persistent = persistent            # seconds, or None
        self.netmask = ip2int(netmask)
        self.sched_flags = set(sched_flags)
        self.dests = []                          # list order: head (newest) first
        self.sched = SCHEDULERS[sched]()
        self.sched.init_service(self)
        self.conns = 0
        self.inpkts = 0
        self.outpkts = 0

    def find_dest(self, addr, port):
        for d in self.dests:
            if d.addr == addr and d.port == port:
                return d
        return None

    def add_dest(self, dest):
        self.dests.insert(0, dest)
        self.sched.add_dest(self, dest)


# ---------------------------------------------------------------- connections

class Conn:
    _seq = 0

    def __init__(self, proto, caddr, cport, vaddr, vport, dest, dport, template=False):
        Conn._seq += 1
        self.id = Conn._seq
        self.proto = proto
        self.caddr, self.cport, self.vaddr, self.vport = caddr, cport, vaddr, vport
        self.dest = dest
        self.daddr = dest.addr
        self.dport = dport
        self.template = template
        self.state = NO
        self.assured = False
        self.timeout = NEW_CONN_TIMEOUT_S * 1000
        self.expires = None
        self.inactive = True
        self.nooutput = dest.fwd != "m"
        self.control = None
        self.n_control = 0
        self.alive = True

    def state_name(self):
        if self.template:
            return "ASSURED" if self.assured else "NONE"
        if self.proto == "udp":
            return "UDP"
        return TCP_STATES[self.state]

    def __repr__(self):
        return "<%s %s:%d->%s:%d->%s:%d %s>" % (self.proto, self.caddr, self.cport, self.vaddr, self.vport,
                                                self.daddr, self.dport, self.state_name())


class Ambiguous(Exception):
    """A packet falls within `margin` ms of an expiry: the traffic generator
    moves the packet."""


class IPVS:
    def __init__(self, margin_ms=10):
        self.services = {}          # (proto, vip, vport) -> Service
        self.conns = {}             # (proto, caddr, cport, vaddr, vport) -> Conn (newest)
        self.out = {}               # (proto, daddr, dport, caddr, cport) -> Conn (NAT replies)
        self.templates = {}         # (proto, snet, vaddr, vport) -> Conn
        self.timers = []            # heap of (expires, seq, conn)
        self.margin = margin_ms
        self.all_conns = set()
        self.now = 0
        self._tseq = 0
        self.events = collections.Counter()

    # ---- configuration (ipvsadm -R lines)
    def load_rules(self, text):
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            self.apply(shlex.split(line))

    def apply(self, argv):
        cmd = argv[0]
        opts = {}
        i = 1
        while i < len(argv):
            a = argv[i]
            if a in ("-m", "-g", "-i"):
                opts["fwd"] = a[1]
                i += 1
                continue
            if a == "-o":
                opts["-o"] = True
                i += 1
                continue
            if a == "-p":
                if i + 1 < len(argv) and argv[i + 1].isdigit():
                    opts["-p"] = int(argv[i + 1])
                    i += 2
                else:
                    opts["-p"] = 360
                    i += 1
                continue
            opts[a] = argv[i + 1]
            i += 2
        if "-t" in opts:
            proto, hp = "tcp", opts["-t"]
        else:
            proto, hp = "udp", opts["-u"]
        vip, vport = hp.rsplit(":", 1)
        vport = int(vport)
        if cmd == "-A":
            flags = opts.get("-b", "")
            svc = Service(proto, vip, vport, sched=opts.get("-s", "wlc"), persistent=opts.get("-p"),
                          netmask=opts.get("-M", "255.255.255.255"),
                          sched_flags=[f for f in flags.split(",") if f], ops=opts.get("-o", False))
            self.services[(proto, vip, vport)] = svc
        elif cmd == "-a":
            svc = self.services[(proto, vip, vport)]
            r = opts["-r"]
            if ":" in r:
                raddr, rport = r.rsplit(":", 1)
                rport = int(rport)
            else:
                raddr, rport = r, vport
            fwd = opts.get("fwd", "g")
            if fwd in ("g", "i"):
                rport = vport
            d = Dest(raddr, rport, int(opts.get("-w", 1)), fwd, int(opts.get("-x", 0)), int(opts.get("-y", 0)))
            svc.add_dest(d)
        else:
            raise ValueError("model does not know %r" % cmd)

    # ---- accounting
    def _bind(self, cp):
        d = cp.dest
        if cp.template:
            d.persist += 1
        elif cp.inactive:
            d.inactive += 1
        else:
            d.active += 1
        if d.u_threshold != 0 and d.total() >= d.u_threshold:
            if not d.overload:
                self.events["overload-set"] += 1
            d.overload = True

    def _unbind(self, cp):
        d = cp.dest
        was = d.overload
        if cp.template:
            d.persist -= 1
        elif cp.inactive:
            d.inactive -= 1
        else:
            d.active -= 1
        if d.l_threshold != 0:
            if d.total() < d.l_threshold:
                d.overload = False
        elif d.u_threshold != 0:
            if d.total() * 4 < d.u_threshold * 3:
                d.overload = False
        else:
            d.overload = False
        if was and not d.overload:
            self.events["overload-clear"] += 1

    def _arm(self, cp, at):
        cp.expires = at
        self._tseq += 1
        heapq.heappush(self.timers, (at, self._tseq, cp))

    def _put(self, cp, now):
        """ip_vs_conn_put: re-arm the timer to now + timeout."""
        self._arm(cp, now + cp.timeout)

    def _expire(self, cp, at):
        if cp.n_control > 0:
            cp.timeout = TEMPLATE_RETRY_S * 1000
            self._arm(cp, at + cp.timeout)
            return
        cp.alive = False
        self.all_conns.discard(cp)
        self.events["expired-template" if cp.template else "expired"] += 1
        if cp.template:
            key = cp.tkey
            if self.templates.get(key) is cp:
                del self.templates[key]
        else:
            key = (cp.proto, cp.caddr, cp.cport, cp.vaddr, cp.vport)
            if self.conns.get(key) is cp:
                del self.conns[key]
            okey = (cp.proto, cp.daddr, cp.dport, cp.caddr, cp.cport)
            if self.out.get(okey) is cp:
                del self.out[okey]
        self._unbind(cp)
        if cp.control is not None:
            cp.control.n_control -= 1
            cp.control = None

    def _pending(self):
        while self.timers:
            at, _, cp = self.timers[0]
            if not cp.alive or cp.expires != at:
                heapq.heappop(self.timers)
                continue
            return self.timers[0]
        return None

    def advance(self, now):
        """Run every expiry due at or before `now`. Raises Ambiguous (after
        running the expiries that are clearly before `now`) when an expiry lies
        within the margin of `now`."""
        while True:
            top = self._pending()
            if top is None or top[0] > now:
                break
            if top[0] > now - self.margin:
                raise Ambiguous("expiry at %d, packet at %d" % (top[0], now))
            heapq.heappop(self.timers)
            self._expire(top[2], top[0])
        top = self._pending()
        if top is not None and top[0] < now + self.margin:
            raise Ambiguous("expiry at %d, packet at %d" % (top[0], now))
        self.now = now

    def finish(self, now):
        """At the end of the capture: run what is due at `now` (the time of the last packet)."""
        self.advance(now)

    # ---- states
    def _set_state(self, cp, direction, pkt):
        if cp.proto == "udp":
            cp.timeout = UDP_TIMEOUT_S * 1000
            if direction == "OUTPUT" and cp.control is not None:
                cp.control.assured = True
            return
        table = direction
        if cp.nooutput:
            if direction == "OUTPUT":
                cp.nooutput = False
            else:
                table = "INPUT_ONLY"
        idx = tcp_flag_index(pkt["flags"])
        new = CL if idx is None else TCP_TABLE[table][idx][cp.state]
        if new != cp.state:
            d = cp.dest
            if not cp.inactive and new not in TCP_ACTIVE:
                d.active -= 1
                d.inactive += 1
                cp.inactive = True
            elif cp.inactive and new in TCP_ACTIVE:
                d.active += 1
                d.inactive -= 1
                cp.inactive = False
            if new == ES and cp.control is not None:
                cp.control.assured = True
        cp.state = new
        cp.timeout = TCP_TIMEOUT_S[new] * 1000

    # ---- the packet path
    def _new_conn(self, svc, pkt, dest, dport, now):
        cp = Conn(svc.proto, pkt["src"], pkt["sport"], pkt["dst"], pkt["dport"], dest, dport)
        cp.svc = svc
        cp.ops = svc.ops
        self._bind(cp)
        self.conns[(cp.proto, cp.caddr, cp.cport, cp.vaddr, cp.vport)] = cp
        self.out[(cp.proto, cp.daddr, cp.dport, cp.caddr, cp.cport)] = cp
        self.all_conns.add(cp)
        dest.conns += 1
        svc.conns += 1
        return cp

    def _schedule(self, svc, pkt, now):
        if svc.persistent is None:
            dest = svc.sched.schedule(svc, pkt, now)
            if dest is None:
                return None
            return self._new_conn(svc, pkt, dest, dest.port or pkt["dport"], now)
        snet = ip2int(pkt["src"]) & svc.netmask
        vport = pkt["dport"]
        same_port = vport == svc.vport          # else a port-0 service: the template covers every port
        tkey = (svc.proto, snet, pkt["dst"], vport if same_port else 0)
        ct = self.templates.get(tkey)
        if ct is None or not ct.dest.available:
            dest = svc.sched.schedule(svc, pkt, now)
            if dest is None:
                return None
            ct = Conn(svc.proto, int2ip(snet), 0, pkt["dst"], tkey[3], dest, dest.port if same_port else 0,
                      template=True)
            ct.tkey = tkey
            ct.inactive = False
            self._bind(ct)
            ct.timeout = svc.persistent * 1000
            self.templates[tkey] = ct
            self.all_conns.add(ct)
        dest = ct.dest
        cp = self._new_conn(svc, pkt, dest, dest.port if (same_port and dest.port) else vport, now)
        cp.control = ct
        ct.n_control += 1
        self._put(ct, now)
        return cp

    def process(self, pkt, now):
        """pkt: dict(proto, src, sport, dst, dport, flags ('' for UDP), length
        (IP total length)). Returns a tuple:
          ("fwd", conn, new)       client packet forwarded to conn.dest
          ("reply", conn)          NAT reply rewritten to come from the VIP
          ("icmp-unreach",)        no dest: ICMP port unreachable to the client
          ("local",)               addressed to a VIP, not taken by IPVS
          ("pass",)                not IPVS traffic
        """
        self.advance(now)
        proto = pkt["proto"]
        key = (proto, pkt["src"], pkt["sport"], pkt["dst"], pkt["dport"])
        cp = self.conns.get(key)
        if cp is None:
            rc = self.out.get(key)
            if rc is not None and rc.dest.fwd == "m":
                return self._reply(rc, pkt, now)
        old = None
        if cp is not None and proto == "tcp" and "S" in pkt["flags"] and cp.control is None \
                and cp.state in (TW, CL):
            # conn_reuse_mode 1: a SYN on a TIME_WAIT/CLOSE conn reschedules; the old
            # conn is expired on the next tick (still counted while scheduling).
            old, cp = cp, None
            self.events["reuse-reschedule"] += 1
        try:
            new = False
            if cp is None:
                svc = self.services.get((proto, pkt["dst"], pkt["dport"])) or \
                    self.services.get((proto, pkt["dst"], 0))
                if svc is None:
                    return ("pass",)
                if proto == "tcp" and ("R" in pkt["flags"] or "S" not in pkt["flags"]):
                    self.events["not-scheduled"] += 1
                    return ("local",)
                if pkt["sport"] == 20:
                    # ip_vs_schedule never schedules FTP data (client port 20): ignored, accepted
                    self.events["not-scheduled"] += 1
                    return ("local",)
                cp = self._schedule(svc, pkt, now)
                if cp is None:
                    self.events["no-dest"] += 1
                    return ("icmp-unreach",)
                new = True
            svc = cp.svc
            cp.dest.inpkts += 1
            cp.dest.inbytes += pkt["length"]
            svc.inpkts += 1
            self._set_state(cp, "INPUT", pkt)
            self._put(cp, now)
            if cp.ops:
                # one-packet scheduling: the conn is not hashed and dies right after its packet
                self._expire(cp, now)
            return ("fwd", cp, new)
        finally:
            if old is not None:
                self._expire_now(old)

    def _expire_now(self, old):
        # ip_vs_conn_expire_now: the timer fires on the next tick, after this packet.
        if old.alive:
            self._expire(old, self.now)

    def _reply(self, cp, pkt, now):
        svc = cp.svc
        cp.dest.outpkts += 1
        cp.dest.outbytes += pkt["length"]
        svc.outpkts += 1
        self._set_state(cp, "OUTPUT", pkt)
        self._put(cp, now)
        return ("reply", cp)

    # ---- listings
    def listing(self):
        """{(proto, vip, vport): {(rs, rport): (weight, active, inactive)}}"""
        out = {}
        for key, svc in self.services.items():
            out[key] = {(d.addr, d.port): (d.weight, d.active, d.inactive) for d in svc.dests}
        return out

    def conn_rows(self, now):
        """Rows as `ipvsadm -L -n -c` shows them: (proto, state, source, virtual,
        destination, seconds left)."""
        rows = []
        for cp in self.all_conns:
            rows.append((cp.proto.upper(), cp.state_name(), "%s:%d" % (cp.caddr, cp.cport),
                         "%s:%d" % (cp.vaddr, cp.vport), "%s:%d" % (cp.daddr, cp.dport),
                         (cp.expires - now) / 1000.0))
        return rows
