"""Helpers for Switchyard's integration tests: build captures with scapy, run
the binary on net_pcap devices, read what it sent, and check it independently
with tshark."""

import os
import re
import subprocess
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.path.join(ROOT, ".build", "release", "switchyard")
EAL_BASE = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:error", "--no-telemetry"]

# MACs used by every test: clients reach us from the router, we are "LB".
LB_MAC = "02:00:00:00:00:aa"
ROUTER_MAC = "02:00:00:00:00:fe"


class Run:
    """The result of one switchyard run: exit code, output and the sent packets."""

    def __init__(self, rc, stdout, stderr, out_packets, out_paths):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.out = out_packets          # packets of port 0's tx_pcap
        self.out_paths = out_paths      # tx_pcap path per port

    def port_counters(self):
        """Final `port P: k=v ...` lines as {port: {key: value}}."""
        return _parse_counter_lines(self.final_section(), "port")

    def lcore_counters(self):
        return _parse_counter_lines(self.final_section(), "lcore")

    def final_section(self):
        marker = "final counters:"
        i = self.stdout.rfind(marker)
        return self.stdout[i + len(marker):] if i >= 0 else ""


def _parse_counter_lines(text, prefix):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^%s (\d+): (.*)$" % prefix, line)
        if not m:
            continue
        kv = {}
        for item in m.group(2).split():
            k, _, v = item.partition("=")
            kv[k] = float(v) if "." in v else int(v)
        out[int(m.group(1))] = kv
    return out


def run_switchyard(packets=None, in_paths=None, args=(), lcores="0", ports=1, timeout=120,
                   extra_eal=(), idle_ms=200, workdir=None, rxq_paths=None):
    """Run switchyard on net_pcap port(s). `packets` (a list of scapy packets)
    or `in_paths` (one pcap per port) feed rx; `rxq_paths` gives several rx
    pcaps (queues) for port 0. Returns a Run."""
    from scapy.all import wrpcap, rdpcap
    workdir = workdir or tempfile.mkdtemp(prefix="sy-it-")
    vdevs = []
    out_paths = []
    if packets is not None:
        p = os.path.join(workdir, "in0.pcap")
        wrpcap(p, packets)
        in_paths = [p]
    for i in range(ports):
        out = os.path.join(workdir, "out%d.pcap" % i)
        out_paths.append(out)
        if i == 0 and rxq_paths:
            rx = ",".join("rx_pcap=%s" % r for r in rxq_paths)
            tx = ",".join("tx_pcap=%s" % (out if k == 0 else os.path.join(workdir, "out0q%d.pcap" % k))
                          for k in range(len(rxq_paths)))
            vdevs += ["--vdev", "net_pcap%d,%s,%s" % (i, rx, tx)]
        else:
            src = in_paths[i] if in_paths and i < len(in_paths) else _empty_pcap(workdir, i)
            vdevs += ["--vdev", "net_pcap%d,rx_pcap=%s,tx_pcap=%s" % (i, src, out)]
    cmd = [BINARY] + (["-l", lcores] if lcores else []) + EAL_BASE + list(extra_eal) + vdevs + ["--"]
    if idle_ms is not None:
        cmd += ["--exit-on-idle", str(idle_ms)]
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out_packets = rdpcap(out_paths[0]) if os.path.exists(out_paths[0]) and os.path.getsize(out_paths[0]) > 24 else []
    return Run(proc.returncode, proc.stdout, proc.stderr, out_packets, out_paths)


def _empty_pcap(workdir, i):
    from scapy.all import wrpcap
    p = os.path.join(workdir, "empty%d.pcap" % i)
    if not os.path.exists(p):
        wrpcap(p, [])
    return p


TSHARK_CHECKS = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                 "-o", "udp.check_checksum:TRUE"]


def tshark_problems(pcap_path, extra_filter=None):
    """Frames tshark flags as malformed or with a bad checksum, as
    (frame number, protocols, expert message) tuples."""
    flt = "_ws.malformed || _ws.expert.severity >= error || ip.checksum.status == 0 " \
          "|| tcp.checksum.status == 0 || udp.checksum.status == 0 || icmp.checksum.status == 0 " \
          "|| icmpv6.checksum.status == 0"
    if extra_filter:
        flt = "(%s) && (%s)" % (flt, extra_filter)
    cmd = ["tshark", "-n", "-r", pcap_path] + TSHARK_CHECKS + ["-Y", flt, "-T", "fields",
                                                               "-e", "frame.number", "-e", "frame.protocols",
                                                               "-e", "_ws.expert.message"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [tuple(l.split("\t")) for l in proc.stdout.splitlines() if l.strip()]


def tshark_fields(pcap_path, fields, display_filter=None, extra=()):
    cmd = ["tshark", "-n", "-r", pcap_path] + TSHARK_CHECKS + list(extra)
    if display_filter:
        cmd += ["-Y", display_filter]
    cmd += ["-T", "fields", "-E", "separator=\t"]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [l.split("\t") for l in proc.stdout.splitlines()]


def write_rules(workdir, text):
    p = os.path.join(workdir, "rules.txt")
    with open(p, "w") as f:
        f.write(text)
    return p
