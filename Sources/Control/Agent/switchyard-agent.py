#!/usr/bin/python3
"""switchyard-agent: dynamic-feedback load reports for Switchyard.

Runs on a real server and sends, every --interval seconds, one UDP datagram
to the balancer (switchyard started with --feedback-port P):

    addr=<server address> cpu=<0..1> load1=<float> ncpu=<int> mem=<0..1> conns=<int>

read from /proc: cpu = busy fraction of /proc/stat over the last interval,
load1 = first field of /proc/loadavg, ncpu = online CPUs, mem = 1 -
MemAvailable/MemTotal (/proc/meminfo), conns = ESTABLISHED sockets in
/proc/net/tcp and /proc/net/tcp6. The balancer's rule and the protocol are
described in Sources/Control/Feedback.swift.

Usage:
    switchyard-agent.py --controller 198.18.0.1:7010 --addr 198.18.1.2 [--interval 3]
    switchyard-agent.py ... --fake cpu=0.9,load1=4,mem=0.8,conns=500   (tests)
    switchyard-agent.py ... --once --print                              (one report)
"""

import argparse
import os
import socket
import sys
import time


def read_cpu_times():
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)   # idle + iowait
                return sum(v), idle
    return 0, 0


def read_loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def read_mem():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, rest = line.partition(":")
            info[k] = int(rest.split()[0])
    total = info.get("MemTotal", 0)
    avail = info.get("MemAvailable", info.get("MemFree", 0))
    return 0.0 if total <= 0 else max(0.0, min(1.0, 1.0 - avail / total))


def read_conns():
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == "01":   # TCP_ESTABLISHED
                        n += 1
        except OSError:
            pass
    return n


class Sampler:
    def __init__(self):
        self.prev = read_cpu_times()

    def sample(self):
        total, idle = read_cpu_times()
        dt, di = total - self.prev[0], idle - self.prev[1]
        self.prev = (total, idle)
        cpu = 0.0 if dt <= 0 else max(0.0, min(1.0, 1.0 - di / dt))
        return {"cpu": cpu, "load1": read_loadavg(), "ncpu": os.cpu_count() or 1,
                "mem": read_mem(), "conns": read_conns()}


def parse_fake(text):
    out = {}
    for item in filter(None, text.split(",")):
        k, sep, v = item.partition("=")
        if not sep or k not in ("cpu", "load1", "ncpu", "mem", "conns"):
            raise ValueError("bad --fake item %r" % item)
        out[k] = float(v)
    return out


def fmt(v):
    return ("%d" % v) if float(v).is_integer() else ("%.4f" % v)


def report_line(addr, readings):
    parts = ["addr=%s" % addr] if addr else []
    for k in ("cpu", "load1", "ncpu", "mem", "conns"):
        if k in readings:
            parts.append("%s=%s" % (k, fmt(readings[k])))
    return " ".join(parts)


def parse_controller(text):
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError("--controller must be HOST:PORT")
    return host, int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Report server load to Switchyard (dynamic feedback).")
    ap.add_argument("--controller", required=True, help="HOST:PORT of switchyard's --feedback-port")
    ap.add_argument("--addr", default="", help="this server's address as the balancer knows it "
                                                "(default: the datagram's source address)")
    ap.add_argument("--interval", type=float, default=3.0, help="seconds between reports (default 3)")
    ap.add_argument("--fake", default="", help="fixed readings k=v,... (cpu, load1, ncpu, mem, conns) "
                                               "overriding /proc (for tests)")
    ap.add_argument("--count", type=int, default=0, help="stop after N reports (default: run forever)")
    ap.add_argument("--once", action="store_true", help="send one report and exit")
    ap.add_argument("--print", action="store_true", help="also print each report on stdout")
    args = ap.parse_args(argv)

    host, port = parse_controller(args.controller)
    fake = parse_fake(args.fake)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sampler = Sampler()
    count = 1 if args.once else args.count
    sent = 0
    if not fake:
        time.sleep(min(args.interval, 0.5))   # a first CPU interval
    while True:
        readings = sampler.sample()
        readings.update(fake)
        line = report_line(args.addr, readings)
        try:
            sock.sendto((line + "\n").encode(), (host, port))
        except OSError as e:
            print("switchyard-agent: send: %s" % e, file=sys.stderr)
        if args.print:
            print(line, flush=True)
        sent += 1
        if count and sent >= count:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
