#!/usr/bin/python3
"""Side by side on the real-deployment rig of Tests/Integration/e2e_rig.py
(client, balancer and two nginx real servers in network namespaces):
the same wrk load against

  switchyard   Switchyard LVS/NAT rr on two net_af_packet ports (the rig's p0/p1)
  nftables     the kernel: `dnat to numgen inc mod 2 map {0: RS1, 1: RS2}` in the
               balancer namespace, ip_forward on, the port addresses on p0/p1
  haproxy      HAProxy, mode tcp, balance roundrobin, in the balancer namespace

wrk: 1 thread, 50 keep-alive connections, 10 s per run; the contenders run
interleaved (A B C A B C ...) for 3 rounds and the medians are reported with
min and max. Extra Switchyard variants (idle back-off settings, lcore
placement) join the rounds with --variant.

    e2e_compare.py                          the full run (about 3 minutes)
    e2e_compare.py --rounds 1 --seconds 3   a quick look
    e2e_compare.py --variant "backoff-off:--idle-backoff off" \\
                   --variant "backoff-50us:--idle-backoff 50"
    e2e_compare.py --only switchyard,nftables

Needs root. Results: Benchmarks/results/e2e-<date-time>/results.{md,json}.
Not part of `make test`; `make bench` runs it after bench.py.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "Tests", "Integration"))
import e2e_rig as E  # noqa: E402

NFT_RULES = """
table ip sye_lb {{
    chain pre {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {vip} tcp dport 80 dnat to numgen inc mod 2 map {{ 0 : {rs1}, 1 : {rs2} }}
    }}
}}
""".format(vip=E.VIP_NAT, rs1=E.RS["rs1"], rs2=E.RS["rs2"])

HAPROXY_CFG = """
global
    maxconn 4000
{threads}
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind {vip}:80
    default_backend be
backend be
    balance roundrobin
    server rs1 {rs1}:80
    server rs2 {rs2}:80
"""


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]


def stat_split():
    """/proc/stat's first line: user+nice, system, irq+softirq, idle+iowait, steal (ticks)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 8
    return [v[0] + v[1], v[2], v[5] + v[6], v[3] + v[4], v[7]]


def busy_fraction(interval=0.5):
    t0, i0 = cpu_times()
    time.sleep(interval)
    t1, i1 = cpu_times()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit, max_wait):
    """Wait (up to max_wait s) until the machine is less than `limit` busy
    (other work on a shared box skews every contender); returns the last sample."""
    deadline = time.monotonic() + max_wait
    while True:
        b = busy_fraction()
        if b < limit or time.monotonic() > deadline:
            return b
        time.sleep(1)


def proc_cpu(rig_inodes):
    """CPU ticks used so far by user processes, split into ours (in the rig's
    namespaces) and foreign (everything else: other work on a shared box)."""
    ours, foreign = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if not f.read(1):
                    continue                      # kernel thread
            ino = os.stat("/proc/%s/ns/net" % d).st_ino
            with open("/proc/%s/stat" % d) as f:
                x = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        (ours if ino in rig_inodes else foreign)[int(d)] = int(x[11]) + int(x[12])
    return ours, foreign


def cpu_delta(before, after):
    return sum(v - before.get(pid, 0) for pid, v in after.items())


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0] or \
                subprocess.run(cmd, capture_output=True, text=True).stderr.strip().splitlines()[0]
        except Exception:
            return "?"
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "os": _os_release(), "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            "haproxy": ver(["haproxy", "-v"]), "nft": ver(["nft", "--version"]),
            "switchyard_commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                                capture_output=True, text=True).stdout.strip()}


def _os_release():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "?"


class Contender:
    def __init__(self, name, kind, args=(), lcores=("-l", "0-1")):
        self.name, self.kind, self.args, self.lcores = name, kind, list(args), lcores

    def start(self, rig):
        if self.kind == "switchyard":
            rig.start_switchyard(extra_args=self.args, lcores=self.lcores)
        elif self.kind == "nftables":
            self._kernel(rig)
            rig.sysctl("lb", "net.ipv4.ip_forward=1")
            path = os.path.join(rig.workdir, "lb.nft")
            with open(path, "w") as f:
                f.write(NFT_RULES)
            rig.x("lb", "nft", "-f", path)
        elif self.kind == "haproxy":
            self._kernel(rig)
            cfg = os.path.join(rig.workdir, "haproxy.cfg")
            threads = "    nbthread %s" % self.args[0] if self.args else ""
            with open(cfg, "w") as f:
                f.write(HAPROXY_CFG.format(vip=E.VIP_NAT, rs1=E.RS["rs1"], rs2=E.RS["rs2"], threads=threads))
            self.proc = E.Proc(rig, "lb", ["haproxy", "-db", "-f", cfg], "haproxy")
            deadline = time.monotonic() + 10
            while not rig.curl("http://%s/" % E.VIP_NAT, timeout=1)[0]:
                if time.monotonic() > deadline or not self.proc.alive():
                    raise RuntimeError("haproxy did not start: %s" % self.proc.stderr())
                time.sleep(0.1)

    def _kernel(self, rig):
        # Undo what Switchyard's runs need (the kernel must answer on p0/p1 now).
        rig.sysctl("lb", "net.ipv4.conf.p0.arp_ignore=0", "net.ipv4.conf.p1.arp_ignore=0",
                   "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.p0.rp_filter=0", "net.ipv4.conf.p1.rp_filter=0")
        rig.kernel_addresses(True)

    def stop(self, rig):
        if self.kind == "switchyard":
            rc, out = rig.stop_switchyard()
            return out[out.rfind("final counters:"):] if rc == 0 else "rc=%s\n%s" % (rc, out[-2000:])
        if self.kind == "nftables":
            rig.x("lb", "nft", "delete", "table", "ip", "sye_lb")
            rig.sysctl("lb", "net.ipv4.ip_forward=0")
        if self.kind == "haproxy":
            self.proc.stop()
            rig.procs.remove(self.proc)
        rig.kernel_addresses(False)
        # The neighbours must re-learn nothing: the MACs of p0/p1 are the same
        # for every contender. Flush the LB's own conntrack state with the table.
        return ""


def parse_variant(spec):
    """'label:ARGS' (ARGS: switchyard options, and/or '@LCORES' for EAL --lcores/-l)."""
    label, _, rest = spec.partition(":")
    args, lcores = [], ("-l", "0-1")
    for tok in rest.split():
        if tok.startswith("@"):
            v = tok[1:]
            lcores = ("--lcores", v) if "@" in v or "(" in v else ("-l", v)
        else:
            args.append(tok)
    return Contender("switchyard " + label, "switchyard", args, lcores)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of wrk before each measured run")
    ap.add_argument("--variant", action="append", default=[],
                    help="extra Switchyard contender 'label:OPTIONS [@LCORES]', e.g. 'off:--idle-backoff off'")
    ap.add_argument("--only", default="", help="comma-separated contender names to run")
    ap.add_argument("--nginx-workers", type=int, default=1)
    ap.add_argument("--quiet", type=float, default=0.15,
                    help="before each run wait until the CPUs are less busy than this (fraction)")
    ap.add_argument("--quiet-wait", type=float, default=60, help="longest wait for a quiet machine (s)")
    ap.add_argument("--max-foreign", type=float, default=0.15,
                    help="repeat a run during which other processes used more CPUs than this")
    ap.add_argument("--retries", type=int, default=2, help="repeats of a disturbed run (the last one counts)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("e2e_compare.py needs root (namespaces)")
    missing = E.tools_missing(["nginx", "wrk", "haproxy", "nft", "curl", "ethtool"])
    if missing:
        sys.exit("missing: %s (make deps installs them)" % " ".join(missing))
    if not os.path.exists(E.BINARY):
        sys.exit("build first: swift build -c release")

    contenders = [Contender("switchyard", "switchyard"), Contender("nftables", "nftables"),
                  Contender("haproxy", "haproxy")] + [parse_variant(v) for v in a.variant]
    if a.only:
        keep = set(x.strip() for x in a.only.split(","))
        contenders = [c for c in contenders if c.name in keep]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = a.out or os.path.join(HERE, "results", "e2e-" + stamp)
    os.makedirs(out_dir, exist_ok=True)
    info = machine()
    info["date"] = datetime.datetime.now().isoformat(timespec="seconds")
    print("e2e_compare: %s; %s, %d CPUs, %s" % (info["date"], info["cpu"], info["cpus"], info["kernel"]), flush=True)

    rig = E.Rig(workdir=os.path.join(out_dir, "rig"))
    os.makedirs(rig.workdir, exist_ok=True)
    results = {c.name: [] for c in contenders}
    log = []
    try:
        rig.up()
        rig.start_nginx(workers=a.nginx_workers)
        rig_inodes = {os.stat("/run/netns/" + ns).st_ino for ns in rig.ns.values()}
        url = "http://%s/" % E.VIP_NAT
        for rnd in range(a.rounds):
            for c in contenders:
                busy = wait_quiet(a.quiet, a.quiet_wait)
                c.start(rig)
                try:
                    counts, failures, _ = rig.curl_split(E.VIP_NAT, 4)
                    if failures or counts != {"rs1": 2, "rs2": 2}:
                        raise RuntimeError("%s does not balance: %s, %d failures" % (c.name, counts, failures))
                    if a.warmup:
                        rig.wrk(url, connections=a.connections, seconds=max(1, int(a.warmup)))
                    for attempt in range(1 + a.retries):
                        o0, f0 = proc_cpu(rig_inodes)
                        s0 = stat_split()
                        t0 = time.monotonic()
                        w = rig.wrk(url, connections=a.connections, seconds=a.seconds)
                        dt = time.monotonic() - t0
                        s1 = stat_split()
                        o1, f1 = proc_cpu(rig_inodes)
                        split = [round((y - x) / HZ / dt, 2) for x, y in zip(s0, s1)]
                        foreign = cpu_delta(f0, f1) / HZ / dt
                        rig_cpu = cpu_delta(o0, o1) / HZ / dt
                        if foreign <= a.max_foreign:
                            break
                        print("  %s: %.2f CPUs used by other work during the run, repeating" % (c.name, foreign),
                              flush=True)
                        wait_quiet(a.quiet, a.quiet_wait)
                finally:
                    tail = c.stop(rig)
                errs = sum(w["errors"].values()) + w["non2xx"]
                results[c.name].append({"rps": w["rps"], "requests": w["requests"], "errors": w["errors"],
                                        "non2xx": w["non2xx"], "busy_before": round(busy, 3),
                                        "foreign_cpus": round(foreign, 3), "rig_process_cpus": round(rig_cpu, 3),
                                        "machine_cpus": dict(zip(("user", "system", "irq", "idle", "steal"),
                                                                 split))})
                line = ("round %d %-32s %9.0f req/s  errors=%d  rig processes %.2f CPUs, other work %.2f CPUs; "
                        "machine user/sys/irq/idle/steal %s") % (
                    rnd + 1, c.name, w["rps"], errs, rig_cpu, foreign, "/".join("%.2f" % x for x in split))
                print(line, flush=True)
                log.append(line)
                log.append(w["text"])
                if tail:
                    log.append(tail)
    finally:
        rig.down()
        shutil.rmtree(rig.workdir, ignore_errors=True)
    with open(os.path.join(out_dir, "log.txt"), "w") as f:
        f.write("\n".join(log) + "\n")

    summary = []
    for c in contenders:
        v = [r["rps"] for r in results[c.name]]
        if not v:
            continue
        summary.append({"name": c.name, "args": " ".join(list(c.lcores) + c.args) if c.kind == "switchyard" else "",
                        "median": statistics.median(v), "min": min(v), "max": max(v), "runs": v,
                        "errors": sum(sum(r["errors"].values()) + r["non2xx"] for r in results[c.name]),
                        "foreign_max": max(r["foreign_cpus"] for r in results[c.name]),
                        "rig_cpus": statistics.median(r["rig_process_cpus"] for r in results[c.name])})
    ref = next((s["median"] for s in summary if s["name"] == "nftables"), None)
    md = ["# End-to-end comparison, %s" % info["date"], "",
          "Machine: %s, %d CPUs, %s, Linux %s; %s; %s; %s; Switchyard %s." % (
              info["cpu"], info["cpus"], info["os"], info["kernel"], info["nginx"], info["haproxy"], info["nft"],
              info["switchyard_commit"]), "",
          "wrk -t1 -c%d -d%ds (keep-alive) to the VIP, %d interleaved rounds; two nginx (%d worker each)."
          % (a.connections, a.seconds, a.rounds, a.nginx_workers), "",
          "| balancer | requests/s median | min | max | vs nftables | socket errors "
          "| rig processes' CPUs (median) | other work's CPUs (max) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        rel = "%.2fx" % (s["median"] / ref) if ref else "-"
        md.append("| %s%s | %.0f | %.0f | %.0f | %s | %d | %.2f | %.2f |" % (
            s["name"], (" (`%s`)" % s["args"]) if s["args"] else "", s["median"], s["min"], s["max"], rel,
            s["errors"], s["rig_cpus"], s["foreign_max"]))
    text = "\n".join(md) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"machine": info, "settings": vars(a), "results": results, "summary": summary}, f, indent=1)
    print()
    print(text)
    print("results in %s" % out_dir)


if __name__ == "__main__":
    main()
