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


# ---------------------------------------------------------------------------
# A long-running switchyard driven through its admin socket (`switchyard adm`
# or the binary invoked as `ipvsadm` through a symlink).

class Daemon:
    """Start switchyard in the background with its own admin socket in a
    temporary directory; `adm(...)` runs ipvsadm commands against it; `stop()`
    sends SIGINT and returns (rc, stdout, stderr). Usable as a context manager.
    `vdevs` defaults to one net_pcap port replaying nothing (an empty capture,
    no idle exit), so the daemon runs until stopped."""

    def __init__(self, vdevs=None, args=(), lcores="0", extra_eal=(), workdir=None, max_conns=4096,
                 ready_timeout=60):
        import tempfile
        self.workdir = workdir or tempfile.mkdtemp(prefix="sy-adm-")
        self.socket = os.path.join(self.workdir, "admin.sock")
        if vdevs is None:
            vdevs = ["net_pcap0,rx_pcap=%s,tx_pcap=%s" % (_empty_pcap(self.workdir, 0),
                                                          os.path.join(self.workdir, "out0.pcap"))]
        self.cmd = [BINARY] + (["-l", lcores] if lcores else []) + EAL_BASE + list(extra_eal)
        for v in vdevs:
            self.cmd += ["--vdev", v]
        self.cmd += ["--", "--socket", self.socket]
        if max_conns is not None:
            self.cmd += ["--max-conns", str(max_conns)]
        self.cmd += list(args)
        self.ready_timeout = ready_timeout
        self.proc = None
        self.stdout_path = os.path.join(self.workdir, "daemon.stdout")
        self.stderr_path = os.path.join(self.workdir, "daemon.stderr")
        self.bindir = os.path.join(self.workdir, "bin")
        os.makedirs(self.bindir, exist_ok=True)
        self.ipvsadm = os.path.join(self.bindir, "ipvsadm")
        if not os.path.exists(self.ipvsadm):
            os.symlink(BINARY, self.ipvsadm)
        self.result = None

    def start(self):
        import time
        self._out = open(self.stdout_path, "w")
        self._err = open(self.stderr_path, "w")
        for attempt in range(50):
            try:
                self.proc = subprocess.Popen(self.cmd, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL)
                break
            except OSError as e:       # the binary is being relinked by a concurrent build
                if e.errno != 26 or attempt == 49:
                    raise
                time.sleep(0.2)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if "switchyard: ready\n" in self.stdout():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("switchyard exited with %s before ready:\n%s\n%s"
                                   % (self.proc.returncode, self.stdout(), self.stderr()))
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("switchyard not ready after %ss" % self.ready_timeout)

    def stdout(self):
        with open(self.stdout_path) as f:
            return f.read()

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def adm(self, *args, input=None, via="ipvsadm", user=None, timeout=60, env=None):
        """Run one ipvsadm command line; returns CompletedProcess (text).
        via="ipvsadm": the symlink, socket from SWITCHYARD_SOCKET;
        via="adm": `switchyard adm --socket PATH`. user="nobody" drops root."""
        e = dict(os.environ)
        e.pop("SWITCHYARD_SOCKET", None)
        if via == "ipvsadm":
            cmd = [self.ipvsadm] + list(args)
            e["SWITCHYARD_SOCKET"] = self.socket
        else:
            cmd = [BINARY, "adm", "--socket", self.socket] + list(args)
        if env:
            e.update(env)
        if user is not None:
            import pwd
            pw = pwd.getpwnam(user) if isinstance(user, str) else pwd.getpwuid(user)
            cmd = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid, "--clear-groups"] + cmd
        return _run_retrying(cmd, input=input if input is not None else "", capture_output=True, text=True,
                             timeout=timeout, env=e)

    def ok(self, *args, input=None, via="ipvsadm"):
        """Run a command that must succeed silently (or print); returns stdout."""
        r = self.adm(*args, input=input, via=via)
        assert r.returncode == 0 and r.stderr == "", "ipvsadm %s: rc=%d\n%s" % (" ".join(args), r.returncode,
                                                                                  r.stderr)
        return r.stdout

    def stop(self, timeout=30):
        """SIGINT, wait; SIGKILL if it does not stop. Returns (rc, stdout, stderr)."""
        import signal
        if self.proc is None:
            return self.result
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close()
                raise AssertionError("switchyard did not stop on SIGINT within %ss" % timeout)
        self._close()
        self.result = (self.proc.returncode, self.stdout(), self.stderr())
        self.proc = None
        return self.result

    def _close(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except Exception:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def _run_retrying(cmd, **kw):
    """subprocess.run, retried while the binary is busy being relinked (ETXTBSY)."""
    import time
    for attempt in range(50):
        try:
            return subprocess.run(cmd, **kw)
        except OSError as e:
            if e.errno != 26 or attempt == 49:
                raise
            time.sleep(0.2)


def admin_frame(kind, body, version=1, magic=b"SYAD"):
    """One admin-protocol frame: magic, version u16, kind u16, length u32 (big-endian), body."""
    import struct
    return magic + struct.pack(">HHI", version, kind, len(body)) + body


def admin_request(program, args, stdin=""):
    """An encoded admin request (kind 1): argc, strings (program first), stdin."""
    import struct
    strings = [program] + list(args)
    body = struct.pack(">I", len(strings))
    for s in strings + [stdin]:
        b = s.encode()
        body += struct.pack(">I", len(b)) + b
    return admin_frame(1, body)


def admin_read_response(sock, timeout=10):
    """Read one response frame (kind 2) from a connected socket:
    (status, stdout, stderr). Raises on a short or malformed reply."""
    import struct
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < 12:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed after %d header bytes" % len(buf))
        buf += chunk
    magic, version, kind, length = buf[:4], *struct.unpack(">HHI", buf[4:12])
    assert magic == b"SYAD" and version == 1 and kind == 2, buf[:12]
    while len(buf) < 12 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed inside the response body")
        buf += chunk
    body = buf[12:12 + length]
    status = struct.unpack(">i", body[:4])[0]
    at = 4
    out = []
    for _ in range(2):
        (n,) = struct.unpack(">I", body[at:at + 4])
        out.append(body[at + 4:at + 4 + n].decode())
        at += 4 + n
    assert at == len(body), "trailing bytes in the response"
    return status, out[0], out[1]
