#!/usr/bin/python3
"""Switchyard speed harness: Switchyard and dpdk-testpmd (io forwarding) side
by side on the same virtual devices and the same single CPU, alternating
A B A B; instructions per packet under callgrind; memory per connection.

    bench.py              the full run (about 20 minutes)
    bench.py --quick      a few minutes: the main scenarios, fewer rounds
    bench.py --only nat   only scenarios whose name contains one of the words
    bench.py --help       every option

Results go to Benchmarks/results/<date-time>/ (results.md, results.json,
growth.png, callgrind profiles) and are printed as they come.
See Benchmarks/README.md for what each scenario means.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import captures  # noqa: E402

BIN = os.path.join(ROOT, ".build", "release", "switchyard")
TESTPMD = shutil.which("dpdk-testpmd") or "/usr/bin/dpdk-testpmd"
WORK = os.path.join(ROOT, ".build", "bench")
EAL_QUIET = ["--no-pci", "--no-shconf", "--no-telemetry", "--log-level=lib.eal:error"]
VIP = "192.0.2.10"
SPREAD_LIMIT = 0.15        # (max-min)/median across runs above this: repeat once, then flag
BUSY_LIMIT = 0.15          # the measuring CPU busier than this before a run: wait, then flag

# ---------------------------------------------------------------- machine state


def cpu_times():
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                v = [int(x) for x in parts[1:]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                out[int(parts[0][3:])] = (sum(v), idle)
    return out


def cpu_busy(interval=0.5):
    """Busy fraction of every CPU over `interval` seconds."""
    a = cpu_times()
    time.sleep(interval)
    b = cpu_times()
    busy = {}
    for c in a:
        dt = b[c][0] - a[c][0]
        di = b[c][1] - a[c][1]
        busy[c] = 0.0 if dt <= 0 else max(0.0, 1.0 - di / dt)
    return busy


def wait_idle(cpu, log, tries=3):
    """Check `cpu` is idle (0.5 s of /proc/stat); wait a little if not.
    Returns (busy fraction of cpu, busiest other CPU, flagged)."""
    busy = {}
    for k in range(tries):
        busy = cpu_busy(0.5)
        if busy.get(cpu, 0) <= BUSY_LIMIT:
            break
        if k < tries - 1:
            time.sleep(1.0)
    others = max([v for c, v in busy.items() if c != cpu] or [0.0])
    flagged = busy.get(cpu, 0) > BUSY_LIMIT
    if flagged:
        log("    ! cpu %d is %.0f%% busy before the run (other work on this machine)" % (cpu, 100 * busy[cpu]))
    return busy.get(cpu, 0.0), others, flagged


def mem_available_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / (1 << 20)
    return 0.0


def proc_status(pid):
    d = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "VmSize"):
                    d[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return d

# ---------------------------------------------------------------- processes


class Proc:
    """A child process whose stdout is read line by line in a thread."""

    def __init__(self, argv, cpu=None, env=None):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.argv = argv
        self.lines = []
        self.cv = threading.Condition()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  text=True, bufsize=1, env=env)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def wait_for(self, pred, timeout):
        """Wait until pred(lines) is true, the process ends, or timeout."""
        end = time.time() + timeout
        with self.cv:
            while True:
                if pred(self.lines):
                    return True
                if self.p.poll() is not None and not self.t.is_alive():
                    return pred(self.lines)
                left = end - time.time()
                if left <= 0:
                    return False
                self.cv.wait(min(left, 0.2))

    def stop(self, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.t.join(5)
        return self.p.returncode


def eal(cpu, mem, vdevs):
    a = ["--lcores", "0@%d,1@%d" % (cpu, cpu), "--no-huge", "-m", str(mem)] + EAL_QUIET
    for v in vdevs:
        a += ["--vdev", v]
    return a

# ---------------------------------------------------------------- scenarios


def servers(n):
    """Real server addresses and MACs, all inside port 1's 10.0.0.0/16."""
    out = []
    for i in range(n):
        out.append(("10.0.%d.%d" % (1 + i // 250, 1 + i % 250), "02:00:00:01:%02x:%02x" % (i >> 8, i & 0xFF)))
    return out


def rules_file(name, method, nservers, proto="udp", persistent=False):
    """An `ipvsadm -S -n` rules file: one VIP, rr over nservers with `method`."""
    path = os.path.join(WORK, "%s.rules" % name)
    flag = {"nat": "-m", "dr": "-g", "ipip": "-i --tun-type ipip", "gue": "-i --tun-type gue --tun-port 6080"}[method]
    p = "-t" if proto == "tcp" else "-u"
    port = 80 if proto == "tcp" else 53
    lines = ["-A %s %s:%d -s rr%s" % (p, VIP, port, " -p 300" if persistent else "")]
    rport = 8080 if (method == "nat" and proto == "tcp") else port
    for ip, _ in servers(nservers):
        lines.append("-a %s %s:%d -r %s:%d %s -w 1" % (p, VIP, port, ip, rport, flag))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class Scenario:
    def __init__(self, name, what, mode="lb", method="nat", flows=1000, packets=None, popularity="uniform",
                 sizes=None, nservers=8, proto="udp", persistent=False, newconn=False, device="pcap",
                 group=None, quick=False, warmup=1, min_free_gib=0):
        self.name, self.what, self.mode, self.method = name, what, mode, method
        self.flows, self.popularity, self.sizes = flows, popularity, sizes
        self.packets = packets or flows
        self.nservers, self.proto, self.persistent, self.newconn = nservers, proto, persistent, newconn
        self.device, self.group, self.quick = device, group, quick
        # Periods discarded before measuring (the first pass creates the
        # connections), and the memory the scenario needs to run at all.
        self.warmup, self.min_free_gib = warmup, min_free_gib

    # the capture and its pool
    def capture(self):
        if self.device != "pcap":
            return None
        tag = "%s-%s-f%d-p%d-%s" % (self.proto, self.popularity, self.flows, self.packets,
                                     "imix" if self.sizes else "64")
        path = os.path.join(WORK, tag + ".pcap")

        def build(p):
            if self.popularity == "zipf":
                fl = captures.zipf_flows(self.flows, self.packets)
            else:
                fl = captures.uniform_flows(self.flows, self.packets)
            captures.write_pcap(p, fl, sizes=self.sizes, proto=self.proto, dport=80 if self.proto == "tcp" else 53)
        return captures.ensure(path, build)

    def distinct_flows(self):
        if self.popularity != "zipf":
            return min(self.flows, self.packets)
        import numpy as np
        return int(len(np.unique(captures.zipf_flows(self.flows, self.packets))))

    def mbuf_size(self):
        return 2176 if self.sizes else 256

    def pool(self):
        return (self.packets if self.device == "pcap" else 0) + 32768

    def mem_mb(self):
        # The pool, plus room for everything else: Switchyard's route tables
        # alone take ~130 MB (rte_lpm's and rte_lpm6's 2^24-entry first level).
        per = self.mbuf_size() + 128 + 128
        return max(512, int(self.pool() * per * 1.15 / (1 << 20)) + 512)

    def vdevs(self):
        if self.device == "null":
            return ["net_null0", "net_null1"]
        return ["net_pcap0,rx_pcap=%s,infinite_rx=1" % self.capture(), "net_null1,no-rx=1"]

    def max_conns(self):
        need = self.flows * (2 if self.persistent else 1)
        n = 1 << 20
        while n < need * 1.25:
            n <<= 1
        return n

    def switchyard_args(self, cpu, period):
        a = [BIN] + eal(cpu, self.mem_mb(), self.vdevs()) + ["--", "--forward-mode", self.mode,
                                                              "--stats-period", str(period)]
        if self.device == "pcap":
            a += ["--total-num-mbufs", str(self.pool()), "--mbuf-size", str(self.mbuf_size())]
        if self.mode == "lb":
            a += ["--config", rules_file(self.name, self.method, self.nservers, self.proto, self.persistent),
                  "--port-addr", "1:10.0.0.1/16", "--port-addr", "0:192.0.2.1/24", "--max-conns", str(self.max_conns())]
            for ip, mac in servers(self.nservers):
                a += ["--neigh", "%s=%s" % (ip, mac)]
        return a

    def testpmd_args(self, cpu):
        a = [TESTPMD] + eal(cpu, self.mem_mb(), self.vdevs()) + ["--", "--forward-mode=io", "--stats-period", "1"]
        if self.device == "pcap":
            a += ["--total-num-mbufs", str(self.pool()), "--mbuf-size", str(self.mbuf_size())]
        else:
            a += ["--total-num-mbufs", "32768"]
        return a


def scenarios():
    S = Scenario
    return [
        S("io-null", "plain forwarding loop vs testpmd io: net_null0 <-> net_null1, 64 B", mode="io", device="null",
          group="io", quick=True),
        S("io-pcap", "plain forwarding of a 64 B capture (pcap replay -> null)", mode="io", flows=1000,
          packets=65536, group="io"),
        S("nat-1k", "LVS/NAT, UDP, 1k established flows, uniform, 64 B", flows=1000, packets=65536, group="nat",
          quick=True),
        S("nat-100k", "LVS/NAT, UDP, 100k established flows, uniform, 64 B", flows=100000, group="nat", quick=True),
        S("nat-1m", "LVS/NAT, UDP, 1M established flows, uniform, 64 B", flows=1000000, group="nat"),
        S("nat-10m", "LVS/NAT, UDP, 10M established flows, uniform, 64 B (8 s warm-up: the first pass creates them)",
          flows=10000000, group="nat", warmup=8, min_free_gib=12),
        S("nat-100k-zipf", "LVS/NAT, UDP, 100k flows, Zipf(1.0) popularity, 1M-packet capture", flows=100000,
          packets=1000000, popularity="zipf"),
        S("nat-1m-zipf", "LVS/NAT, UDP, 1M flows, Zipf(1.0) popularity, 2M-packet capture", flows=1000000,
          packets=2000000, popularity="zipf"),
        S("dr-1k", "LVS/DR, UDP, 1k flows, 64 B", method="dr", flows=1000, packets=65536, group="dr", quick=True),
        S("dr-100k", "LVS/DR, UDP, 100k flows, 64 B", method="dr", flows=100000, group="dr"),
        S("dr-1m", "LVS/DR, UDP, 1M flows, 64 B", method="dr", flows=1000000, group="dr"),
        S("tun-ipip-100k", "LVS/TUN ipip, UDP, 100k flows, 64 B", method="ipip", flows=100000),
        S("tun-gue-100k", "LVS/TUN gue, UDP, 100k flows, 64 B", method="gue", flows=100000),
        S("nat-imix-100k", "LVS/NAT, UDP, 100k flows, IMIX 7:4:1 of 64/594/1518 B", flows=100000, sizes=captures.IMIX),
        S("nat-1000rs-100k", "LVS/NAT, UDP, 100k flows, 1000 real servers", flows=100000, nservers=1000),
        S("nat-persist-100k", "LVS/NAT, UDP, 100k flows, persistence -p 300 (templates per client)",
          flows=100000, persistent=True),
        S("newconn", "new connections: TCP SYNs from 2M distinct clients, NAT (rate over the first pass)",
          proto="tcp", flows=2000000, newconn=True, quick=True),
    ]

# ---------------------------------------------------------------- one run


def parse_switchyard(lines):
    """Periods from --stats-period output: list of dicts (mpps, rx, conns)."""
    periods = []
    for line in lines:
        if line.startswith("switchyard: stopped"):
            break
        m = re.match(r"lcore \d+: rx=(\d+) .*conns=(\d+) .*mpps=([\d.]+)", line)
        if m:
            periods.append({"rx": int(m.group(1)), "conns": int(m.group(2)), "mpps": float(m.group(3))})
    return periods


def parse_testpmd(lines):
    periods = []
    cur = None
    for line in lines:
        m = re.search(r"NIC statistics for port (\d+)", line)
        if m:
            if int(m.group(1)) == 0 or cur is None:
                cur = {"mpps": 0.0}
                periods.append(cur)
            continue
        m = re.match(r"\s*Rx-pps:\s+(\d+)", line)
        if m and cur is not None:
            cur["mpps"] += int(m.group(1)) / 1e6
        if "Telling cores to stop" in line:
            break
    return periods


def binary_stamp():
    try:
        return os.stat(BIN).st_mtime
    except OSError:
        return None


BIN_STAMP = [None]


def run_once(sc, who, cpu, seconds, log):
    """One run; returns dict(mpps=..., samples=[...], busy=..., rss=...)."""
    busy, others, flagged = wait_idle(cpu, log)
    rebuilt = who == "switchyard" and BIN_STAMP[0] is not None and binary_stamp() != BIN_STAMP[0]
    if rebuilt:
        log("    ! %s changed since the harness started: figures mix builds" % BIN)
    period = 0.1 if (who == "switchyard" and sc.newconn) else 1
    if who == "switchyard":
        argv = sc.switchyard_args(cpu, period)
        parse = parse_switchyard
    else:
        argv = ["stdbuf", "-oL"] + sc.testpmd_args(cpu)
        parse = parse_testpmd
    p = Proc(argv, cpu=cpu)
    # Warm-up period, then `seconds` more; the first period is discarded.
    want = sc.warmup + int(seconds / period) if not (who == "switchyard" and sc.newconn) else None
    if want is None:
        # New connections: until conns stop growing (the capture's first pass is over) and 1 s more.
        total = sc.distinct_flows()
        ok = p.wait_for(lambda ls: (lambda ps: bool(ps) and ps[-1]["conns"] >= total)(parse(ls)), 120)
        time.sleep(1.0)
    else:
        ok = p.wait_for(lambda ls: len(parse(ls)) >= want, 120 + seconds)
    st = proc_status(p.p.pid)
    p.stop()
    periods = parse(p.lines)
    res = {"busy": busy, "other_busy": others, "busy_flag": flagged, "rss": st.get("VmRSS"), "hwm": st.get("VmHWM"),
           "rebuilt": rebuilt}
    if not ok or not periods:
        res["error"] = "no counters (exit %s): %s" % (p.p.returncode, " | ".join(p.lines[-5:]))
        res["mpps"] = None
        return res
    if who == "switchyard" and sc.newconn:
        # Periods where (nearly) every received packet created a connection.
        rates, prev = [], {"rx": 0, "conns": 0}
        for q in periods:
            drx, dc = q["rx"] - prev["rx"], q["conns"] - prev["conns"]
            if drx > 0 and dc >= 0.98 * drx:
                rates.append(q["mpps"])
            prev = q
        res["samples"] = rates
        res["mpps"] = statistics.median(rates) if rates else None
        res["conns"] = periods[-1]["conns"]
        if not rates:
            res["error"] = "the first pass was shorter than one 0.1 s period"
        return res
    samples = [q["mpps"] for q in periods[sc.warmup:want]]
    res["samples"] = samples
    res["mpps"] = statistics.median(samples) if samples else None
    return res


def spread(xs):
    xs = [x for x in xs if x]
    if len(xs) < 2:
        return 0.0
    return (max(xs) - min(xs)) / statistics.median(xs)


def run_scenario(sc, cpu, rounds, seconds, log):
    """A B A B ... on one CPU; repeat once when the spread is too wide."""
    log("== %s: %s" % (sc.name, sc.what))
    if sc.device == "pcap":
        t0 = time.time()
        sc.capture()
        if time.time() - t0 > 1:
            log("   (capture written in %.1f s)" % (time.time() - t0))
    attempt = 0
    while True:
        attempt += 1
        sy, tp = [], []
        for r in range(rounds):
            a = run_once(sc, "switchyard", cpu, seconds, log)
            sy.append(a)
            b = run_once(sc, "testpmd", cpu, seconds, log)
            tp.append(b)
            log("   round %d: switchyard %s Mpps, testpmd %s Mpps  (cpu%d busy %.0f%%/%.0f%%, other cpu %.0f%%)%s" % (
                r + 1, fmt(a["mpps"]), fmt(b["mpps"]), cpu, 100 * a["busy"], 100 * b["busy"],
                100 * max(a["other_busy"], b["other_busy"]),
                "".join("  [%s]" % x["error"] for x in (a, b) if x.get("error"))))
        sv = [x["mpps"] for x in sy if x["mpps"]]
        tv = [x["mpps"] for x in tp if x["mpps"]]
        wide = spread(sv) > SPREAD_LIMIT or spread(tv) > SPREAD_LIMIT
        if wide and attempt == 1:
            log("   spread too wide (switchyard %.0f%%, testpmd %.0f%%): repeating the scenario once" % (
                100 * spread(sv), 100 * spread(tv)))
            continue
        break
    flags = []
    if wide:
        flags.append("NOISY spread sy %.0f%% tp %.0f%%" % (100 * spread(sv), 100 * spread(tv)))
    if any(x["busy_flag"] for x in sy + tp):
        flags.append("cpu busy before a run")
    if any(x.get("rebuilt") for x in sy):
        flags.append("binary rebuilt during the scenario")
    if len(sv) < rounds or len(tv) < rounds:
        flags.append("%d/%d runs failed" % (2 * rounds - len(sv) - len(tv), 2 * rounds))
    pair = [a["mpps"] / b["mpps"] for a, b in zip(sy, tp) if a["mpps"] and b["mpps"]]
    res = {
        "name": sc.name, "what": sc.what, "cpu": cpu, "rounds": rounds, "seconds": seconds, "attempts": attempt,
        "flows": sc.flows, "distinct_flows": sc.distinct_flows() if sc.device == "pcap" else None,
        "packets_in_capture": sc.packets if sc.device == "pcap" else None, "group": sc.group,
        "method": sc.method if sc.mode == "lb" else "io",
        "switchyard": [x["mpps"] for x in sy], "testpmd": [x["mpps"] for x in tp],
        "sy_med": statistics.median(sv) if sv else None, "tp_med": statistics.median(tv) if tv else None,
        "pair_ratios": pair,
        "other_cpu_busy_max": max([x["other_busy"] for x in sy + tp] or [0]),
        "sy_rss": max([x["rss"] or 0 for x in sy] or [0]), "sy_hwm": max([x["hwm"] or 0 for x in sy] or [0]),
        "flags": flags,
    }
    res["ratio"] = res["sy_med"] / res["tp_med"] if res["sy_med"] and res["tp_med"] else None
    log("   => switchyard %s (min %s max %s) | testpmd %s (min %s max %s) | ratio %s%s" % (
        fmt(res["sy_med"]), fmt(min(sv) if sv else None), fmt(max(sv) if sv else None),
        fmt(res["tp_med"]), fmt(min(tv) if tv else None), fmt(max(tv) if tv else None),
        fmt(res["ratio"], 3), ("  FLAGGED: " + "; ".join(flags)) if flags else ""))
    return res


def fmt(v, nd=2):
    return "n/a" if v is None else ("%.*f" % (nd, v))

# ---------------------------------------------------------------- callgrind


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return None


def callgrind_functions(path):
    """Self cost per function (callgrind_annotate's first table)."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True, text=True).stdout
    d, started = {}, False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started:
            continue
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            if d and not line.strip():
                break
            continue
        fn = re.sub(r" \[[^\]]*\]$", "", m.group(2))
        obj = re.search(r"\[([^\]]*)\]$", m.group(2))
        fn = fn.split(":", 1)[1] if ":" in fn else fn
        if fn.startswith("0x") and obj:
            fn = "%s@%s" % (fn, os.path.basename(obj.group(1)))
        d[fn] = d.get(fn, 0) + int(m.group(1).replace(",", ""))
    return d


def demangle(names):
    sw = shutil.which("swift") or "/opt/swift/usr/bin/swift"
    mangled = [n for n in names if n.startswith("$s")]
    out = {}
    if mangled and os.path.exists(sw):
        r = subprocess.run([sw, "demangle", "--simplified"], input="\n".join(mangled), capture_output=True, text=True)
        for a, b in zip(mangled, r.stdout.splitlines()):
            out[a] = b
    return {n: out.get(n, n) for n in names}


def callgrind_switchyard(name, method, flows, n, cpu, outdir, proto="udp", newconn=False):
    """Instructions per packet: finite captures of n and 2n packets, the difference over n."""
    totals, files = [], []
    # One table size for both runs: the table's set-up cost grows with
    # --max-conns and must cancel in the difference.
    max_conns = max(1 << 20, 2 * (2 * n if newconn else flows))
    for k in (1, 2):
        cnt = k * n
        if newconn:
            fl = captures.uniform_flows(cnt, cnt)
        else:
            fl = captures.uniform_flows(flows, cnt)
        cap = os.path.join(WORK, "cg-%s-f%d-n%d.pcap" % (proto, flows if not newconn else cnt, cnt))
        captures.ensure(cap, lambda p: captures.write_pcap(p, fl, proto=proto, dport=80 if proto == "tcp" else 53))
        out = os.path.join(outdir, "callgrind.%s.%d.out" % (name, cnt))
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, BIN, "-l", str(cpu), "--no-huge",
                "-m", "512"] + EAL_QUIET + ["--vdev", "net_pcap0,rx_pcap=" + cap, "--vdev", "net_null1,no-rx=1",
                                            "--", "--exit-on-idle", "100"]
        if method == "io":
            argv += ["--forward-mode", "io"]
        else:
            argv += ["--config", rules_file("cg-" + name, method, 8, proto), "--port-addr", "1:10.0.0.1/16",
                     "--port-addr", "0:192.0.2.1/24", "--max-conns", str(max_conns)]
            for ip, mac in servers(8):
                argv += ["--neigh", "%s=%s" % (ip, mac)]
        r = subprocess.run(["taskset", "-c", str(cpu)] + argv, capture_output=True, text=True)
        tot = callgrind_total(out) if os.path.exists(out) else None
        if r.returncode != 0 or tot is None:
            return {"error": (r.stdout + r.stderr)[-400:]}
        m = re.findall(r"lcore \d+: rx=(\d+) tx=(\d+)", r.stdout)
        if not m or int(m[-1][0]) != cnt:
            return {"error": "expected %d packets, counters say %s" % (cnt, m[-1] if m else "nothing")}
        totals.append(tot)
        files.append(out)
    per = (totals[1] - totals[0]) / n
    fa, fb = callgrind_functions(files[0]), callgrind_functions(files[1])
    diff = {k: (fb.get(k, 0) - fa.get(k, 0)) / n for k in set(fa) | set(fb)}
    top = sorted(diff.items(), key=lambda kv: -kv[1])[:15]
    names = demangle([k for k, _ in top])
    return {"ipp": per, "n": n, "totals": totals, "top": [(names[k], v) for k, v in top]}


def callgrind_slope(who, cpu, outdir, log, method="io"):
    """Instructions per packet for io forwarding on an infinite_rx capture:
    two runs of different lengths, (I2 - I1) / (P2 - P1). Works for testpmd,
    which never exits by itself."""
    cap = os.path.join(WORK, "udp-uniform-f1000-p65536-64.pcap")
    captures.ensure(cap, lambda p: captures.write_pcap(p, captures.uniform_flows(1000, 65536)))
    pts = []
    for secs in (3, 9):
        out = os.path.join(outdir, "callgrind.slope-%s-%s.%d.out" % (who, method, secs))
        vd = ["net_pcap0,rx_pcap=%s,infinite_rx=1" % cap, "net_null1,no-rx=1"]
        common = eal(cpu, 512, vd)
        if who == "testpmd":
            argv = [TESTPMD] + common + ["--", "--forward-mode=io"]
            first = lambda ls: any("Rx-pps" in x for x in ls)
        else:
            argv = [BIN] + common + ["--", "--forward-mode", "io" if method == "io" else "lb"]
            if method != "io":
                argv += ["--config", rules_file("slope-" + method, method, 8), "--port-addr", "1:10.0.0.1/16",
                         "--port-addr", "0:192.0.2.1/24"]
                for ip, mac in servers(8):
                    argv += ["--neigh", "%s=%s" % (ip, mac)]
            first = lambda ls: any(x.startswith("lcore") for x in ls)
        argv += ["--total-num-mbufs", "98304", "--mbuf-size", "256", "--stats-period", "1"]
        # Start-up under valgrind takes seconds: count from the first counters on.
        p = Proc(["stdbuf", "-oL", "valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + argv, cpu=cpu)
        if not p.wait_for(first, 120):
            p.stop(60)
            return {"error": "no counters: " + " | ".join(p.lines[-4:])}
        time.sleep(secs)
        p.stop(120)
        text = "\n".join(p.lines)
        if who == "testpmd":
            m = re.search(r"Accumulated forward statistics.*?RX-packets:\s+(\d+)", text, re.S)
        else:
            m = re.search(r"final counters:.*?lcore \d+: rx=(\d+)", text, re.S)
        tot = callgrind_total(out) if os.path.exists(out) else None
        if not m or tot is None:
            return {"error": text[-300:]}
        pts.append((int(m.group(1)), tot))
    (p1, i1), (p2, i2) = pts
    if p2 <= p1:
        return {"error": "no more packets in the longer run"}
    return {"ipp": (i2 - i1) / (p2 - p1), "packets": [p1, p2]}

# ---------------------------------------------------------------- memory


def memory_run(flows, max_conns, cpu, log):
    """Switchyard (NAT) reads a finite capture of `flows` distinct UDP flows;
    once every flow has a connection, read VmRSS/VmHWM."""
    cap = os.path.join(WORK, "mem-udp-f%d.pcap" % flows)
    t0 = time.time()
    captures.ensure(cap, lambda p: captures.write_pcap(p, captures.uniform_flows(flows, flows)))
    if time.time() - t0 > 2:
        log("   (capture of %d flows written in %.0f s)" % (flows, time.time() - t0))
    argv = [BIN, "-l", str(cpu), "--no-huge", "-m", "512"] + EAL_QUIET + [
        "--vdev", "net_pcap0,rx_pcap=" + cap, "--vdev", "net_null1,no-rx=1", "--",
        "--config", rules_file("mem", "nat", 8), "--port-addr", "1:10.0.0.1/16", "--port-addr", "0:192.0.2.1/24",
        "--max-conns", str(max_conns), "--stats-period", "0.2"]
    for ip, mac in servers(8):
        argv += ["--neigh", "%s=%s" % (ip, mac)]
    p = Proc(argv, cpu=cpu)
    ok = p.wait_for(lambda ls: any(re.search(r"live=%d " % flows, l) for l in ls), 300)
    time.sleep(0.3)
    st = proc_status(p.p.pid)
    p.stop()
    if not ok:
        return {"error": " | ".join(p.lines[-4:])}
    return {"flows": flows, "max_conns": max_conns, "rss": st.get("VmRSS"), "hwm": st.get("VmHWM")}


def table_bytes_per_conn(capacity, stride=64):
    """The layout's own figure (Sources/IPVS/ConnTable.swift): entry + index share + free-list slot."""
    nb = 8
    while nb * 5 < capacity:
        nb <<= 1
    return stride + nb * 64 / capacity + 4

# ---------------------------------------------------------------- plot and report


def plot(results, growth_ipp, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for grp, label in (("nat", "Switchyard LVS/NAT"), ("dr", "Switchyard LVS/DR")):
        pts = sorted((r["flows"], r) for r in results if r.get("group") == grp and r["sy_med"])
        if not pts:
            continue
        xs = [f for f, _ in pts]
        axes[0].plot(xs, [r["sy_med"] for _, r in pts], "o-", label=label)
        axes[0].plot(xs, [r["tp_med"] for _, r in pts], "x--", label="testpmd io (same capture) vs " + grp.upper())
        axes[1].plot(xs, [r["ratio"] for _, r in pts], "o-", label=label + " / testpmd io")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("concurrent flows")
    axes[0].set_ylabel("Mpps (one core, 64 B)")
    axes[0].set_title("Throughput vs flows")
    axes[0].legend(fontsize=7)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("concurrent flows")
    axes[1].set_ylabel("Switchyard / testpmd io")
    axes[1].axhline(0.5, color="grey", ls=":", lw=1)
    axes[1].axhline(0.6, color="grey", ls=":", lw=1)
    axes[1].set_title("Ratio vs testpmd io (targets 0.5 NAT, 0.6 DR)")
    axes[1].legend(fontsize=7)
    if growth_ipp:
        xs = sorted(growth_ipp)
        axes[2].plot(xs, [growth_ipp[x] for x in xs], "o-", label="LVS/NAT")
        axes[2].set_xscale("log")
        axes[2].set_ylim(bottom=0)
        axes[2].legend(fontsize=7)
    axes[2].set_xlabel("concurrent flows")
    axes[2].set_ylabel("instructions / packet (callgrind)")
    axes[2].set_title("Instructions per packet vs flows")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(meta, results, cg, slope, growth_ipp, mem, path):
    L = []
    L.append("# Switchyard benchmark results")
    L.append("")
    L.append("- date: %s" % meta["date"])
    L.append("- machine: %s" % meta["machine"])
    L.append("- mode: %s; %d rounds A/B per scenario, %g s measured per run (after 1 s warm-up)" % (
        meta["mode"], meta["rounds"], meta["seconds"]))
    L.append("- switchyard: commit %s; binary %s" % (meta["commit"], meta.get("binary", "?")))
    L.append("")
    L.append("## Throughput (Mpps, one core; Switchyard vs dpdk-testpmd io on the same devices and CPU)")
    L.append("")
    L.append("| scenario | flows | Switchyard median (min-max) | testpmd io median (min-max) | ratio | other CPU busy | flags |")
    L.append("|---|---|---|---|---|---|---|")
    for r in results:
        sv = [x for x in r["switchyard"] if x]
        tv = [x for x in r["testpmd"] if x]
        fl = r["distinct_flows"] if r["distinct_flows"] is not None else "-"
        L.append("| %s | %s | %s (%s-%s) | %s (%s-%s) | %s | %.0f%% | %s |" % (
            r["name"], fl, fmt(r["sy_med"]), fmt(min(sv) if sv else None), fmt(max(sv) if sv else None),
            fmt(r["tp_med"]), fmt(min(tv) if tv else None), fmt(max(tv) if tv else None), fmt(r["ratio"], 3),
            100 * r["other_cpu_busy_max"], "; ".join(r["flags"]) or "ok"))
    L.append("")
    for r in results:
        L.append("- `%s`: %s" % (r["name"], r["what"]))
    if cg:
        L.append("")
        L.append("## Instructions per packet (callgrind, finite capture of N and 2N packets, difference / N)")
        L.append("")
        L.append("| path | N | instructions/packet |")
        L.append("|---|---|---|")
        for name, c in cg.items():
            L.append("| %s | %s | %s |" % (name, c.get("n", "-"), fmt(c.get("ipp"), 0) if "ipp" in c else "error: " + c["error"][:80].replace("\n", " ")))
        if slope:
            L.append("")
            L.append("The same infinite_rx replay as the throughput runs (1k flows, 64 B), two run lengths, "
                     "(I2-I1)/(P2-P1) (testpmd never exits by itself, so N/2N captures do not apply to it):")
            L.append("")
            L.append("| program | instructions/packet |")
            L.append("|---|---|")
            for who, c in slope.items():
                L.append("| %s | %s |" % (who, fmt(c.get("ipp"), 0) if "ipp" in c else "error"))
        for name, c in cg.items():
            if "top" not in c:
                continue
            L.append("")
            L.append("Top functions, %s (self instructions per packet):" % name)
            L.append("")
            L.append("```")
            for fn, v in c["top"][:12]:
                L.append("%8.1f  %s" % (v, fn[:140]))
            L.append("```")
    if growth_ipp:
        L.append("")
        L.append("## Cost growth: LVS/NAT instructions per packet vs concurrent flows")
        L.append("")
        L.append("| flows | instructions/packet |")
        L.append("|---|---|")
        for f in sorted(growth_ipp):
            L.append("| %d | %.0f |" % (f, growth_ipp[f]))
    if mem:
        L.append("")
        L.append("## Memory")
        L.append("")
        L.append("| run | connections | --max-conns | VmRSS | VmHWM | table layout bytes/conn |")
        L.append("|---|---|---|---|---|---|")
        for m in mem["runs"]:
            if "error" in m:
                L.append("| %s | - | - | error | %s | - |" % (m.get("label"), m["error"][:60]))
                continue
            L.append("| %s | %d | %d | %.1f MiB | %.1f MiB | %.1f |" % (
                m["label"], m["flows"], m["max_conns"], m["rss"] / 2**20, m["hwm"] / 2**20,
                table_bytes_per_conn(m["max_conns"])))
        for line in mem.get("notes", []):
            L.append("")
            L.append(line)
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")
    return "\n".join(L)

# ---------------------------------------------------------------- main


def pick_cpu(arg):
    if arg is not None:
        return arg
    busy = cpu_busy(0.5)
    return min(busy, key=lambda c: (busy[c], -c))


def main():
    global BIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the main scenarios only, shorter runs (a few minutes)")
    ap.add_argument("--only", default="", help="comma-separated words: run scenarios whose name contains one")
    ap.add_argument("--rounds", type=int, help="A/B rounds per scenario (default 3)")
    ap.add_argument("--seconds", type=float, help="measured seconds per run (default 3, quick 2)")
    ap.add_argument("--cpu", type=int, help="the CPU both programs share (default: the idler one at each scenario)")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--ten-million", choices=["auto", "yes", "no"], default="auto",
                    help="the 10M-connection memory run (auto: full mode, when 6 GiB are free)")
    ap.add_argument("--out", help="results directory (default Benchmarks/results/<date-time>)")
    args = ap.parse_args()

    for tool in (BIN, TESTPMD):
        if not os.path.exists(tool):
            sys.exit("bench: %s is missing (make build; apt-get install dpdk)" % tool)
    rounds = args.rounds or 3
    seconds = args.seconds or (2 if args.quick else 3)
    os.makedirs(WORK, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = args.out or os.path.join(HERE, "results", stamp)
    os.makedirs(outdir, exist_ok=True)
    logf = open(os.path.join(outdir, "log.txt"), "w")

    def log(s):
        print(s, flush=True)
        logf.write(s + "\n")
        logf.flush()

    commit = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout.strip()
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": "%d-CPU VM (%s), %s, no hugepages, virtual devices (net_null, net_pcap)" % (
                os.cpu_count(), platform.processor() or platform.machine(), platform.platform()),
            "mode": "quick" if args.quick else "full", "rounds": rounds, "seconds": seconds, "commit": commit}
    log("bench: %s, %s; results in %s" % (meta["date"], meta["mode"], outdir))
    # Others may rebuild .build/release/switchyard while this runs: every run
    # here uses one snapshot of it, so the figures all come from one build.
    snap = os.path.join(WORK, "switchyard.snapshot")
    shutil.copy2(BIN, snap + ".tmp")
    os.replace(snap + ".tmp", snap)
    meta["binary"] = "%s (built %s)" % (BIN, datetime.datetime.fromtimestamp(os.stat(BIN).st_mtime).strftime("%Y-%m-%d %H:%M:%S"))
    BIN = snap
    BIN_STAMP[0] = binary_stamp()
    t_start = time.time()

    words = [w for w in args.only.split(",") if w]
    chosen = [s for s in scenarios() if (not args.quick or s.quick) and (not words or any(w in s.name for w in words))]
    for s in [s for s in chosen if s.min_free_gib > mem_available_gib()]:
        log("== %s: skipped, needs %d GiB free (%.1f available)" % (s.name, s.min_free_gib, mem_available_gib()))
        chosen.remove(s)
    results = []
    cg, slope, growth, mem = {}, {}, {}, None

    def save(final=False):
        """results.json, results.md and the plot so far (a cut-short run keeps what it measured)."""
        if results and final:
            try:
                plot(results, growth, os.path.join(outdir, "growth.png"))
            except Exception as e:
                log("plot failed: %r" % e)
        json.dump({"meta": meta, "throughput": results, "callgrind": cg, "callgrind_slope": slope,
                   "growth_ipp": growth, "memory": mem}, open(os.path.join(outdir, "results.json"), "w"), indent=1)
        report(meta, results, cg, slope, growth, mem, os.path.join(outdir, "results.md"))

    # Callgrind and memory first: they do not depend on an idle machine.
    if not args.no_callgrind and shutil.which("valgrind") and not words:
        cpu = pick_cpu(args.cpu)
        n = 50000 if args.quick else 100000
        log("== callgrind: instructions per packet (N=%d and 2N; cpu %d)" % (n, cpu))
        paths = [("io", "io", 1000, "udp", False), ("nat", "nat", 1000, "udp", False), ("dr", "dr", 1000, "udp", False)]
        if not args.quick:
            paths += [("tun-ipip", "ipip", 1000, "udp", False), ("tun-gue", "gue", 1000, "udp", False),
                      ("newconn", "nat", 0, "tcp", True)]
        for name, method, flows, proto, nc in paths:
            c = callgrind_switchyard(name, method, flows, n, cpu, outdir, proto=proto, newconn=nc)
            cg[name] = c
            log("   %-10s %s instructions/packet%s" % (name, fmt(c.get("ipp"), 0),
                                                      "  [%s]" % c["error"][-200:] if "error" in c else ""))
        for who, method in (("testpmd", "io"), ("switchyard", "io"), ("switchyard", "nat"), ("switchyard", "dr")):
            if args.quick and (who, method) in (("switchyard", "io"), ("switchyard", "dr")):
                continue
            s = callgrind_slope(who, cpu, outdir, log, method)
            label = "%s %s" % (who, "io" if method == "io" else "lb " + method.upper())
            slope[label] = s
            log("   slope %-18s %s instructions/packet%s" % (label, fmt(s.get("ipp"), 0),
                                                           "  [%s]" % s["error"][-200:] if "error" in s else ""))
        if args.quick and "ipp" in cg.get("nat", {}):
            growth[1000] = cg["nat"]["ipp"]      # the same measurement (one binary snapshot)
        for f in ([100000] if args.quick else [1000, 10000, 100000, 1000000]):
            nn = max(n, f)
            c = callgrind_switchyard("nat-%d" % f, "nat", f, nn, cpu, outdir)
            growth[f] = c.get("ipp")
            log("   nat %7d flows: %s instructions/packet (N=%d)%s" % (f, fmt(c.get("ipp"), 0), nn,
                                                                     "  [%s]" % c["error"][-200:] if "error" in c else ""))
        growth = {k: v for k, v in growth.items() if v}
        # Keep only the 2N outputs (profiles); the N ones served the difference.
        for fn in os.listdir(outdir):
            if fn.startswith("callgrind.") and fn.endswith(".out"):
                m = re.match(r"callgrind\.(.*)\.(\d+)\.out$", fn)
                if m and m.group(1) in cg and int(m.group(2)) == cg[m.group(1)].get("n"):
                    os.remove(os.path.join(outdir, fn))
                elif m and m.group(1).startswith(("nat-", "slope-")):
                    os.remove(os.path.join(outdir, fn))

        save()

    if not args.no_memory and not words:
        cpu = pick_cpu(args.cpu)
        log("== memory: Switchyard NAT, finite capture of distinct UDP flows, one connection each")
        runs = []
        base = memory_run(1000, 1 << 20, cpu, log)
        base["label"] = "baseline 1k"
        runs.append(base)
        one = memory_run(1000000, 1 << 20, cpu, log)
        one["label"] = "1M"
        runs.append(one)
        notes = []
        if "rss" in base and "rss" in one:
            per = (one["rss"] - base["rss"]) / (1000000 - 1000)
            notes.append("Measured: (VmRSS at 1M - VmRSS at 1k) / 999000 = %.1f bytes per connection "
                         "(--max-conns 1048576 both; the entry pool is touched only as it fills)." % per)
            mem_per = per
        else:
            mem_per = None
        ten = args.ten_million == "yes" or (args.ten_million == "auto" and not args.quick)
        if ten and mem_available_gib() < 6:
            notes.append("10M connections not tried: only %.1f GiB available." % mem_available_gib())
            ten = False
        if ten:
            base10 = memory_run(1000, 10485760, cpu, log)
            base10["label"] = "baseline 1k, 10M table"
            runs.append(base10)
            t = memory_run(10000000, 10485760, cpu, log)
            t["label"] = "10M"
            runs.append(t)
            if "rss" in t and "rss" in base10:
                notes.append("Measured: (VmRSS at 10M - VmRSS at 1k, same 10M table) / 9999000 = %.1f bytes per "
                             "connection; whole process at 10M connections: VmRSS %.2f GiB, VmHWM %.2f GiB." % (
                                 (t["rss"] - base10["rss"]) / 9999000, t["rss"] / 2**30, t["hwm"] / 2**30))
        elif not args.quick:
            notes.append("10M connections not measured in this run.")
        for m in runs:
            log("   %-24s %s" % (m["label"], ("VmRSS %.1f MiB VmHWM %.1f MiB" % (m["rss"] / 2**20, m["hwm"] / 2**20))
                                 if "rss" in m and m["rss"] else "error: " + m.get("error", "?")))
        for nline in notes:
            log("   " + nline)
        mem = {"runs": runs, "notes": notes, "bytes_per_conn_measured": mem_per,
               "bytes_per_conn_layout_1M": table_bytes_per_conn(1 << 20),
               "bytes_per_conn_layout_10M": table_bytes_per_conn(10485760)}
        save()

    if not args.no_throughput:
        for sc in chosen:
            cpu = pick_cpu(args.cpu)
            try:
                results.append(run_scenario(sc, cpu, rounds, seconds, log))
            except Exception as e:   # one broken scenario must not lose the others
                log("   scenario failed: %r" % e)
            save()

    save(final=True)
    log("")
    log(open(os.path.join(outdir, "results.md")).read())
    log("bench: done in %.0f s; %s" % (time.time() - t_start, outdir))


if __name__ == "__main__":
    main()
