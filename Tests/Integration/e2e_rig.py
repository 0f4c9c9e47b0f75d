"""A real deployment in network namespaces, for the end-to-end tests
(test_e2e.py) and the side-by-side benchmark (Benchmarks/e2e_compare.py).

Topology (every namespace and link is created here and removed by `down()`;
names carry the creating process id, so concurrent runs never collide and
leftovers of a killed run are recognised and removed):

    client C 198.51.100.10 --+                      +-- RS1 203.0.113.11 (nginx)
                             |   R: brc, brs        |
    router R 198.51.100.254 -+ (two bridges and a   +-- RS2 203.0.113.12 (nginx)
                             |  router between)     |
    LB port 0 198.51.100.1 --+                      +-- LB port 1 203.0.113.1
                                                    +-- router R 203.0.113.254

  * LB is Switchyard's namespace: veth ends p0 (client side) and p1 (server
    side) are its two `net_af_packet` ports; with `--exception-path tap` it
    creates sy0/sy1 there. The kernel of LB never handles p0/p1 traffic itself
    (strict rp_filter, arp_ignore=8, no IPv6), so only what Switchyard hands
    over through the TAPs reaches it. For the kernel baselines (nftables,
    HAProxy) the port addresses go straight onto p0/p1 instead.
  * The client reaches the VIPs (192.0.2.0/24) through 198.51.100.1.
  * The real servers' default route is the balancer (203.0.113.1), as LVS/NAT
    needs; replies *from* the DR and TUN VIPs take table 100, whose default
    is the router R, so they go straight to the client without the balancer.
  * Every veth has tx checksum offload off (DPDK's af_packet would otherwise
    read TCP segments whose checksum was never filled in).
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BINARY = os.path.join(ROOT, ".build", "release", "switchyard")
DECAP = os.path.join(HERE, "e2e_tun_decap.py")

CLIENT = "198.51.100.10"
ROUTER_C = "198.51.100.254"
ROUTER_S = "203.0.113.254"
LB_C = "198.51.100.1"          # Switchyard port 0
LB_S = "203.0.113.1"           # Switchyard port 1
RS = {"rs1": "203.0.113.11", "rs2": "203.0.113.12"}
VIP_NAT = "192.0.2.10"
VIP_DR = "192.0.2.20"
VIP_TUN = "192.0.2.30"

PREFIX = "sye"                 # namespace names: sye<pid>-<role>

RULES = """\
# LVS/NAT, LVS/DR and LVS/TUN services in front of the same two nginx servers
-A -t {nat}:80 -s rr
-a -t {nat}:80 -r {rs1}:80 -m -w 1
-a -t {nat}:80 -r {rs2}:80 -m -w 1
-A -t {dr}:80 -s rr
-a -t {dr}:80 -r {rs1}:80 -g -w 1
-a -t {dr}:80 -r {rs2}:80 -g -w 1
-A -t {tun}:80 -s rr
-a -t {tun}:80 -r {rs1}:80 -i -w 1
-a -t {tun}:80 -r {rs2}:80 -i -w 1
""".format(nat=VIP_NAT, dr=VIP_DR, tun=VIP_TUN, rs1=RS["rs1"], rs2=RS["rs2"])


def sh(*args, check=True, timeout=60):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: rc=%d\n%s%s" % (" ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
    return r


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_netns_pids(ns):
    for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def remove_stale():
    """Remove namespaces left behind by runs whose process is gone."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^%s(\d+)-" % PREFIX, name)
        if m and not _pid_alive(int(m.group(1))):
            _kill_netns_pids(name)
            sh("ip", "netns", "del", name, check=False)


class Proc:
    """A background process in a namespace, its output in files."""

    def __init__(self, rig, role, argv, name):
        self.name = name
        self.out_path = os.path.join(rig.workdir, name + ".out")
        self.err_path = os.path.join(rig.workdir, name + ".err")
        self._out = open(self.out_path, "w")
        self._err = open(self.err_path, "w")
        cmd = ["ip", "netns", "exec", rig.ns[role]] + [str(a) for a in argv]
        for attempt in range(50):
            try:
                self.p = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL)
                break
            except OSError as e:          # ETXTBSY: the binary is being relinked by a concurrent build
                if e.errno != 26 or attempt == 49:
                    raise
                time.sleep(0.2)
        rig.procs.append(self)

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def alive(self):
        return self.p.poll() is None

    def wait_for(self, text, timeout=30, stream="stdout"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.stdout() if stream == "stdout" else self.stderr()
            if text in got:
                return True
            if not self.alive():
                raise RuntimeError("%s exited (rc=%s) before printing %r:\n%s\n%s"
                                   % (self.name, self.p.returncode, text, self.stdout(), self.stderr()))
            time.sleep(0.02)
        raise RuntimeError("%s did not print %r within %ss:\n%s\n%s"
                           % (self.name, text, timeout, self.stdout()[-3000:], self.stderr()[-3000:]))

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signal, wait, SIGKILL if needed. Returns the exit code."""
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        for f in (self._out, self._err):
            try:
                f.close()
            except Exception:
                pass
        return self.p.returncode


class Rig:
    def __init__(self, workdir=None):
        self.tag = "%s%d" % (PREFIX, os.getpid())
        self.ns = {r: "%s-%s" % (self.tag, r) for r in ("c", "r", "lb", "rs1", "rs2")}
        self.workdir = workdir or tempfile.mkdtemp(prefix="sy-e2e-")
        self.created = []
        self.procs = []
        self.mode = None           # "switchyard" or "kernel" (addresses on p0/p1)
        self.switchyard = None
        self.nginx = {}

    # ------------------------------------------------------------ namespaces

    def x(self, role, *args, check=True, timeout=60):
        """Run a command in a namespace."""
        return sh("ip", "netns", "exec", self.ns[role], *args, check=check, timeout=timeout)

    def sysctl(self, role, *settings):
        self.x(role, "sysctl", "-q", "-w", *settings)

    def _veth(self, a_role, a_if, b_role, b_if):
        sh("ip", "link", "add", a_if, "netns", self.ns[a_role], "type", "veth", "peer", "name", b_if,
           "netns", self.ns[b_role])
        for role, ifname in ((a_role, a_if), (b_role, b_if)):
            self.x(role, "ethtool", "-K", ifname, "tx", "off")

    def up(self):
        remove_stale()
        try:
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _up(self):
        for role, ns in self.ns.items():
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            self.x(role, "ip", "link", "set", "lo", "up")
        # R: two bridges (client and server networks) and routing between them.
        for br in ("brc", "brs"):
            self.x("r", "ip", "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        self._veth("c", "c0", "r", "rc")
        self._veth("lb", "p0", "r", "rp0")
        self._veth("lb", "p1", "r", "rp1")
        for name in RS:
            self._veth(name, "eth0", "r", name)
        for port, br in (("rc", "brc"), ("rp0", "brc"), ("rp1", "brs"), ("rs1", "brs"), ("rs2", "brs")):
            self.x("r", "ip", "link", "set", port, "master", br)
            self.x("r", "ip", "link", "set", port, "up")
        self.x("r", "ip", "addr", "add", ROUTER_C + "/24", "dev", "brc")
        self.x("r", "ip", "addr", "add", ROUTER_S + "/24", "dev", "brs")
        for br in ("brc", "brs"):
            self.x("r", "ip", "link", "set", br, "up")
        self.sysctl("r", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0", "net.ipv4.conf.all.send_redirects=0",
                    "net.ipv4.conf.brs.send_redirects=0", "net.ipv4.conf.brc.send_redirects=0")
        # Client.
        self.x("c", "ip", "addr", "add", CLIENT + "/24", "dev", "c0")
        self.x("c", "ip", "link", "set", "c0", "up")
        self.x("c", "ip", "route", "add", "192.0.2.0/24", "via", LB_C)
        self.x("c", "ip", "route", "add", "203.0.113.0/24", "via", ROUTER_C)
        # Real servers: NAT default via the balancer; DR/TUN VIP replies via R.
        for name, addr in RS.items():
            self.x(name, "ip", "addr", "add", addr + "/24", "dev", "eth0")
            self.x(name, "ip", "link", "set", "eth0", "up")
            for vip in (VIP_DR, VIP_TUN):
                self.x(name, "ip", "addr", "add", vip + "/32", "dev", "lo")
                self.x(name, "ip", "rule", "add", "from", vip, "lookup", "100")
            self.x(name, "ip", "route", "add", "default", "via", LB_S)
            self.x(name, "ip", "route", "add", "default", "via", ROUTER_S, "table", "100")
            self.sysctl(name, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
                        "net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2")
        # LB: the veths Switchyard reads.
        for p in ("p0", "p1"):
            self.x("lb", "ethtool", "-K", p, "gro", "off")
            self.x("lb", "ip", "link", "set", p, "up")
        # Wait for the bridges' ports to forward (no STP: immediately, but be sure).
        self.wait_bridges()

    def wait_bridges(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.x("r", "bridge", "link", "show").stdout
            if out.count("state forwarding") >= 5:
                return
            time.sleep(0.05)
        raise RuntimeError("bridge ports not forwarding:\n" + out)

    def isolate_lb_kernel(self):
        """The LB kernel must not act on p0/p1 traffic itself (weak host model:
        it would accept packets for the TAPs' addresses arriving on p0/p1)."""
        self.sysctl("lb", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1",
                    "net.ipv4.conf.p0.rp_filter=1", "net.ipv4.conf.p1.rp_filter=1",
                    "net.ipv4.conf.p0.arp_ignore=8", "net.ipv4.conf.p1.arp_ignore=8",
                    "net.ipv6.conf.p0.disable_ipv6=1", "net.ipv6.conf.p1.disable_ipv6=1")

    def down(self):
        """Stop every process, remove every namespace (and so every link). Never raises."""
        errors = []
        for p in reversed(self.procs):
            try:
                p.stop(signal.SIGINT if p.name == "switchyard" else signal.SIGTERM, timeout=10)
            except Exception as e:     # pragma: no cover - best effort
                errors.append(e)
        self.procs = []
        for ns in reversed(self.created):
            _kill_netns_pids(ns)
            sh("ip", "netns", "del", ns, check=False)
        self.created = []
        return errors

    # ------------------------------------------------------------ servers

    def start_nginx(self, workers=1):
        for name, addr in RS.items():
            d = os.path.join(self.workdir, "nginx-" + name)
            os.makedirs(os.path.join(d, "html"), exist_ok=True)
            with open(os.path.join(d, "html", "index.html"), "w") as f:
                f.write("served by %s\n" % name)
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write("""
user root;
worker_processes {w};
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {d}/cbt; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;
    uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;
    server {{
        listen 80 default_server;
        root {d}/html;
    }}
}}
""".format(d=d, w=workers))
            self.nginx[name] = Proc(self, name, ["nginx", "-p", d, "-e", os.path.join(d, "error.log"), "-c", conf,
                                                 "-g", "daemon off;"], "nginx-" + name)
        for name, addr in RS.items():
            deadline = time.monotonic() + 10
            while True:
                r = self.x(name, "curl", "-s", "--max-time", "1", "http://%s/" % addr, check=False)
                if r.stdout == "served by %s\n" % name:
                    break
                if time.monotonic() > deadline or not self.nginx[name].alive():
                    raise RuntimeError("nginx in %s did not start: %s" % (name, self.nginx[name].stderr()))
                time.sleep(0.05)

    # ------------------------------------------------------------ balancers

    def start_switchyard(self, extra_args=(), lcores=("-l", "0-1"), extra_eal=(), rules=RULES, ready_timeout=60):
        rules_path = os.path.join(self.workdir, "rules.txt")
        with open(rules_path, "w") as f:
            f.write(rules)
        self.isolate_lb_kernel()
        self.socket = os.path.join(self.workdir, "admin.sock")
        vdev = "net_af_packet%d,iface=%s,framecnt=4096,qdisc_bypass=1"
        argv = [BINARY] + list(lcores) + ["--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--no-telemetry",
                                          "--log-level=lib.eal:error"] + list(extra_eal) + [
            "--vdev", vdev % (0, "p0"), "--vdev", vdev % (1, "p1"), "--",
            "--config", rules_path, "--port-addr", "0:%s/24" % LB_C, "--port-addr", "1:%s/24" % LB_S,
            "--socket", self.socket] + ([] if "--exception-path" in extra_args else ["--exception-path", "tap"]) \
            + list(extra_args)
        self.switchyard = Proc(self, "lb", argv, "switchyard")
        self.switchyard.wait_for("switchyard: ready\n", timeout=ready_timeout)
        self.mode = "switchyard"
        return self.switchyard

    def stop_switchyard(self):
        """SIGINT; returns (rc, stdout)."""
        p = self.switchyard
        rc = p.stop(signal.SIGINT, timeout=30)
        self.procs.remove(p)
        self.switchyard = None
        return rc, p.stdout()

    def adm(self, *args):
        return sh(BINARY, "adm", "--socket", self.socket, *args, check=False)

    def kernel_addresses(self, on=True):
        """Port addresses on p0/p1 themselves, for the kernel baselines."""
        verb = "add" if on else "del"
        self.x("lb", "ip", "addr", verb, LB_C + "/24", "dev", "p0", check=on)
        self.x("lb", "ip", "addr", verb, LB_S + "/24", "dev", "p1", check=on)
        self.x("lb", "ip", "addr", verb, VIP_NAT + "/32", "dev", "lo", check=on)
        self.mode = "kernel" if on else None

    # ------------------------------------------------------------ clients

    def curl(self, url, timeout=5):
        """(ok, body) of one request on a fresh connection from the client."""
        r = self.x("c", "curl", "-s", "-S", "--max-time", str(timeout), url, check=False, timeout=timeout + 10)
        return r.returncode == 0, r.stdout if r.returncode == 0 else r.stderr

    def curl_split(self, vip, n=40):
        """n requests, each a new connection: ({server: count}, failures, details)."""
        counts, failures, details = {}, 0, []
        for _ in range(n):
            ok, body = self.curl("http://%s/" % vip)
            m = re.match(r"^served by (\S+)\n$", body) if ok else None
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
            else:
                failures += 1
                details.append(body.strip())
        return counts, failures, details

    def wrk(self, url, connections=20, seconds=5, threads=1, timeout_s=None):
        args = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds]
        if timeout_s:
            args.append("--timeout=%ds" % timeout_s)
        r = self.x("c", *args, url, check=False, timeout=seconds + 60)
        return parse_wrk(r.stdout + r.stderr, r.returncode)


def parse_wrk(text, rc=0):
    """wrk's summary as a dict: requests, rps, errors (socket errors by kind), non2xx."""
    res = {"rc": rc, "text": text, "requests": 0, "rps": 0.0, "errors": {}, "non2xx": 0}
    m = re.search(r"(\d+) requests in", text)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        res["errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        res["non2xx"] = int(m.group(1))
    return res


def counters(text, prefix):
    """Last `port P:`/`lcore L:` counter lines of switchyard output as {id: {key: value}}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^%s (\d+): (.*)$" % prefix, line)
        if not m:
            continue
        kv = {}
        for item in m.group(2).split():
            k, _, v = item.partition("=")
            try:
                kv[k] = float(v) if "." in v else int(v)
            except ValueError:
                kv[k] = v
        out[int(m.group(1))] = kv
    return out


def tools_missing(names):
    return [n for n in names if shutil.which(n) is None]
