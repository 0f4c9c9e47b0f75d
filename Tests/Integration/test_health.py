"""Health checks, keepalived import and dynamic feedback, end to end.

The health test builds its own network: a namespace for switchyard (its data
plane on net_null, only alive for the admin socket) joined by veth pairs to
two namespaces running nginx (HTTP and HTTPS). Health checks go through the
kernel's sockets of the switchyard namespace. Addresses come from
198.18.0.0/15 and exist only inside the test's namespaces; everything is torn
down in `finally` blocks.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sylib import BINARY, ROOT, Daemon  # noqa: E402

AGENT = os.path.join(ROOT, "Sources", "Control", "Agent", "switchyard-agent.py")
NULL_VDEV = ["net_null0"]
PAGE = "switchyard health-check test page\n"


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def have(cmd):
    return shutil.which(cmd) is not None


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, raw sockets)")


class Net:
    """Namespaces lb, a, b; veth lb<->a and lb<->b with /30s from 198.18.N.0/24."""

    def __init__(self):
        tag = "%d" % (os.getpid() % 100000)
        self.n = 16 + os.getpid() % 200
        self.ns = {k: "syh%s%s" % (tag, k) for k in ("lb", "a", "b")}
        self.links = {"a": ("syh%sla" % tag, "syh%sa" % tag), "b": ("syh%slb" % tag, "syh%sb" % tag)}
        self.lb_addr = {"a": "198.18.%d.1" % self.n, "b": "198.18.%d.5" % self.n}
        self.addr = {"a": "198.18.%d.2" % self.n, "b": "198.18.%d.6" % self.n}
        self.vip = "198.18.%d.100" % self.n
        self.sorry = "198.18.%d.9" % self.n
        self.created = []

    def up(self):
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for k, (lbif, srvif) in self.links.items():
            sh("ip", "link", "add", lbif, "netns", self.ns["lb"], "type", "veth", "peer", "name", srvif,
               "netns", self.ns[k])
            sh("ip", "-n", self.ns["lb"], "addr", "add", self.lb_addr[k] + "/30", "dev", lbif)
            sh("ip", "-n", self.ns[k], "addr", "add", self.addr[k] + "/30", "dev", srvif)
            sh("ip", "-n", self.ns["lb"], "link", "set", lbif, "up")
            sh("ip", "-n", self.ns[k], "link", "set", srvif, "up")
            sh("ip", "-n", self.ns[k], "route", "add", "default", "via", self.lb_addr[k])
        return self

    def down(self):
        for ns in reversed(self.created):
            sh("ip", "netns", "pids", ns, check=False)
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            sh("ip", "netns", "del", ns, check=False)
        self.created = []


class Nginx:
    """nginx in a namespace, serving PAGE over HTTP on :80 and HTTPS on :443."""

    def __init__(self, ns, addr, workdir):
        self.ns, self.addr = ns, addr
        self.dir = os.path.join(workdir, "nginx-" + addr)
        os.makedirs(os.path.join(self.dir, "html"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        with open(os.path.join(self.dir, "html", "index.html"), "w") as f:
            f.write(PAGE)
        cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
        if not os.path.exists(cert):
            sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=switchyard-test",
               "-days", "2", "-keyout", key, "-out", cert)
        d = self.dir
        conf = """
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/cbt; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;
    uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;
    server {{
        listen {a}:80;
        listen {a}:443 ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {d}/html;
    }}
}}
""".format(d=d, a=addr, cert=cert, key=key)
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "nginx", "-p", self.dir, "-e",
                                      os.path.join(self.dir, "logs", "error.log"), "-c", self.conf,
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = sh("ip", "netns", "exec", self.ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                   "--max-time", "1", "http://%s/index.html" % self.addr, check=False)
            if r.stdout == "200":
                return
            time.sleep(0.05)
        raise RuntimeError("nginx in %s did not start" % self.ns)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def save_rules(d):
    return d.ok("-S", "-n")


def dest_weights(d, port=80, vip=None):
    """{ 'addr:port': weight } of a service from `-L -n`."""
    out = {}
    cur = None
    for line in d.ok("-L", "-n").splitlines():
        if line.startswith(("TCP", "UDP", "SCTP", "FWM")):
            cur = line.split()[1]
        m = re.match(r"^  -> (\S+)\s+\S+\s+(\d+)", line)
        if m and cur == "%s:%d" % (vip, port):
            out[m.group(1)] = int(m.group(2))
    return out


def wait_until(pred, timeout, step=0.05):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return time.monotonic() - t0
        time.sleep(step)
    return None


KEEPALIVED = """
! switchyard health test
global_defs {{
    router_id SWITCHYARD_TEST
}}
vrrp_instance VI_1 {{
    state MASTER
    virtual_router_id 51
}}
virtual_server {vip} 80 {{
    delay_loop {delay}
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server {sorry} 80
    real_server {a} 80 {{
        weight 3
        inhibit_on_failure
        HTTP_GET {{
            url {{
                path /index.html
                digest {digest}
                status_code 200
            }}
            connect_timeout 1
            retry {fall}
            delay_before_retry 0.25
        }}
    }}
    real_server {b} 80 {{
        weight 2
        inhibit_on_failure
        TCP_CHECK {{
            connect_timeout 1
            retry {fall}
            delay_before_retry 0.25
        }}
    }}
}}
virtual_server {vip} 443 {{
    delay_loop {delay}
    lb_algo wlc
    lb_kind NAT
    real_server {a} 443 {{
        weight 5
        SSL_GET {{
            url {{
                path /index.html
                digest {digest}
            }}
            connect_timeout 2
            retry 1
        }}
    }}
    real_server {b} 443 {{
        weight 1
        PING_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""


@pytest.mark.skipif(not (have("nginx") and have("curl") and have("openssl")), reason="needs nginx, curl, openssl")
def test_health_checks_quiesce_restore_and_sorry_server():
    delay, fall = 1.0, 2
    workdir = tempfile.mkdtemp(prefix="sy-health-")
    net = Net()
    servers = []
    d = None
    try:
        net.up()
        a, b = net.addr["a"], net.addr["b"]
        conf = os.path.join(workdir, "keepalived.conf")
        with open(conf, "w") as f:
            f.write(KEEPALIVED.format(vip=net.vip, sorry=net.sorry, a=a, b=b, delay=delay, fall=fall,
                                      digest=hashlib.md5(PAGE.encode()).hexdigest()))
        na, nb = Nginx(net.ns["a"], a, workdir), Nginx(net.ns["b"], b, workdir)
        servers = [na, nb]
        na.start()
        nb.start()

        d = Daemon(vdevs=NULL_VDEV, args=["--keepalived", conf], workdir=workdir)
        d.cmd = ["ip", "netns", "exec", net.ns["lb"]] + d.cmd
        d.start()
        ka, kb = "%s:80" % a, "%s:80" % b
        assert dest_weights(d, 80, net.vip) == {ka: 3, kb: 2}
        assert dest_weights(d, 443, net.vip) == {"%s:443" % a: 5, "%s:443" % b: 1}
        assert "skipping 'global_defs' block" in d.stderr()

        # All checks pass a first time.
        def all_checked():
            doc = json.loads(d.ok("--health", "--json", via="adm").splitlines()[0])
            return all(c["checks"] > 0 and c["state"] == "up"
                       for s in doc["services"] for r in s["servers"] for c in r["checkers"])
        assert wait_until(all_checked, 10) is not None, d.ok("--health", via="adm")

        # nginx on A stops: quiesced (weight 0) on :80 within delay_loop x fall, removed on :443.
        na.stop()
        t = wait_until(lambda: dest_weights(d, 80, net.vip).get(ka) == 0, delay * fall + 3)
        assert t is not None, d.stderr()
        assert t <= delay * fall + 1.5, "quiesced after %.2f s" % t
        assert dest_weights(d, 80, net.vip) == {ka: 0, kb: 2}
        assert wait_until(lambda: "%s:443" % a not in dest_weights(d, 443, net.vip), 6) is not None
        # New connections cannot go to a weight-0 dest: rr skips it; the table shows it.
        rules = save_rules(d)
        assert "-a -t %s:80 -r %s -m -w 0" % (net.vip, ka) in rules
        doc = json.loads(d.ok("--health", "--json", via="adm").splitlines()[0])
        srv = {(s["service"], r["address"], r["port"]): r for s in doc["services"] for r in s["servers"]}
        ra = srv[("TCP %s:80" % net.vip, a, 80)]
        assert ra["state"] == "down" and ra["weight"] == 0 and ra["configured_weight"] == 3
        assert ra["checkers"][0]["type"] == "HTTP_GET" and not ra["checkers"][0]["last"]["ok"]
        assert "connect" in ra["reason"], ra
        text = d.ok("--health", via="adm")
        assert re.search(r"-> %s:80\s+DOWN\s+0 " % re.escape(a), text), text
        assert re.search(r"real server %s:80: UP -> DOWN \(HTTP_GET: .*\); quiesced \(weight 3 -> 0\)"
                         % re.escape(a), d.stderr()), d.stderr()

        # Back up: the configured weights return.
        na.start()
        assert wait_until(lambda: dest_weights(d, 80, net.vip).get(ka) == 3, delay + 3) is not None, d.stderr()
        assert wait_until(lambda: dest_weights(d, 443, net.vip).get("%s:443" % a) == 5, delay + 4) is not None, \
            d.stderr()

        # Everything down: the sorry server comes in; one server back: it goes.
        na.stop()
        nb.stop()
        ks = "%s:80" % net.sorry
        assert wait_until(lambda: dest_weights(d, 80, net.vip) == {ka: 0, kb: 0, ks: 1},
                          delay * fall + 3) is not None, (dest_weights(d, 80, net.vip), d.stderr())
        assert "no real server is up: sorry server in service (weight 1)" in d.stderr()
        # PING_CHECK on b:443 is not affected by nginx.
        assert dest_weights(d, 443, net.vip).get("%s:443" % b) == 1
        nb.start()
        assert wait_until(lambda: dest_weights(d, 80, net.vip) == {ka: 0, kb: 2}, delay + 3) is not None, \
            (dest_weights(d, 80, net.vip), d.stderr())
        rc, _, err = d.stop()
        assert rc == 0, err
        d = None
    finally:
        if d is not None:
            d.stop()
        for s in servers:
            s.stop()
        net.down()
        shutil.rmtree(workdir, ignore_errors=True)


def test_import_keepalived_applies_the_equivalent_rules():
    conf = """
virtual_server 192.0.2.10 80 {
    lb_algo wrr
    lb_kind DR
    persistence_timeout 120
    real_server 10.1.0.1 8080 {
        weight 4
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 10.1.0.2 80 {
        weight 2
    }
}
virtual_server fwmark 9 {
    lb_algo sh
    sh-port
    lb_kind TUN
    real_server 10.1.0.3 0 {
    }
}
vrrp_instance VI_1 {
    state BACKUP
}
"""
    expected = ("-A -t 192.0.2.10:80 -s wrr -p 120\n"
                "-a -t 192.0.2.10:80 -r 10.1.0.1:80 -g -w 4\n"
                "-a -t 192.0.2.10:80 -r 10.1.0.2:80 -g -w 2\n"
                "-A -f 9 -s sh -b sh-port\n"
                "-a -f 9 -r 10.1.0.3:0 -i -w 1 --tun-type ipip\n")
    with Daemon(vdevs=NULL_VDEV) as d:
        path = os.path.join(d.workdir, "keepalived.conf")
        with open(path, "w") as f:
            f.write(conf)
        dry = subprocess.run([BINARY, "adm", "--socket", d.socket, "--import-keepalived", path, "--dry-run"],
                             capture_output=True, text=True, timeout=30)
        assert dry.returncode == 0 and dry.stdout == expected, dry
        assert "line 23: skipping 'vrrp_instance' block" in dry.stderr
        assert save_rules(d) == ""
        # Equivalent to restoring the same rules with ipvsadm -R.
        r = subprocess.run([BINARY, "adm", "--socket", d.socket, "--import-keepalived", path],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r
        assert r.stdout == expected
        assert save_rules(d) == expected
        # Importing again changes nothing; an edited weight is put back.
        d.ok("-e", "-t", "192.0.2.10:80", "-r", "10.1.0.2:80", "-g", "-w", "9")
        r = subprocess.run([BINARY, "adm", "--socket", d.socket, "--import-keepalived", path],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r
        assert save_rules(d) == expected
        # A bad file names its line and changes nothing.
        with open(path, "w") as f:
            f.write("virtual_server 192.0.2.11 80 {\n  lb_kind FOO\n}\n")
        r = subprocess.run([BINARY, "adm", "--socket", d.socket, "--import-keepalived", path],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "line 2: invalid lb_kind 'FOO'" in r.stderr, r
        assert save_rules(d) == expected


def test_bad_keepalived_file_is_refused_at_start():
    workdir = tempfile.mkdtemp(prefix="sy-health-")
    try:
        path = os.path.join(workdir, "k.conf")
        with open(path, "w") as f:
            f.write("virtual_server 192.0.2.1 80 {\n  real_server 10.0.0.1 80 {\n    weight x\n  }\n}\n")
        r = subprocess.run([BINARY, "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--vdev", "net_null0",
                            "--", "--keepalived", path, "--socket", os.path.join(workdir, "s")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "line 3: invalid value 'x' for weight" in r.stderr, r.stderr
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_dynamic_feedback_weights_follow_agent_loads():
    """Three agents (the shipped script with faked readings): overloaded,
    idle and exactly at the 0.95 target. Every logged step follows
    w <- clamp(w + A*cbrt(0.95 - load), 1, 10*initial); the weights end at the
    bounds the rule gives: 1 : 40 : 4 for initial weights of 4."""
    port = free_udp_port()
    period = 0.3
    rules = ("-A -t 192.0.2.20:80 -s wrr\n"
             "-a -t 192.0.2.20:80 -r 10.2.0.1:80 -m -w 4\n"
             "-a -t 192.0.2.20:80 -r 10.2.0.2:80 -m -w 4\n"
             "-a -t 192.0.2.20:80 -r 10.2.0.3:80 -m -w 4\n")
    workdir = tempfile.mkdtemp(prefix="sy-feedback-")
    agents = []
    try:
        rpath = os.path.join(workdir, "rules")
        with open(rpath, "w") as f:
            f.write(rules)
        readings = {
            "10.2.0.1": "cpu=1,load1=8,ncpu=2,mem=1,conns=4000",     # overloaded
            "10.2.0.2": "cpu=0,load1=0,ncpu=2,mem=0,conns=0",        # idle
            "10.2.0.3": "cpu=0.95,load1=1.9,ncpu=2,mem=0.95,conns=950",  # at the target
        }
        coeff = {"cpu": 0.4, "load": 0.2, "mem": 0.3, "conns": 0.1}

        def aggregate(text):
            r = dict((k, float(v)) for k, v in (i.split("=") for i in text.split(",")))
            parts = {"cpu": r["cpu"], "load": r["load1"] / r["ncpu"], "mem": r["mem"], "conns": r["conns"] / 1000}
            return sum(coeff[k] * min(max(v, 0), 4) for k, v in parts.items()) / sum(coeff.values())

        with Daemon(vdevs=NULL_VDEV, workdir=workdir,
                    args=["--config", rpath, "--feedback-port", str(port),
                          "--feedback-options", "period=%s,stale=5" % period]) as d:
            for addr, fake in readings.items():
                agents.append(subprocess.Popen([sys.executable, AGENT, "--controller", "127.0.0.1:%d" % port,
                                                "--addr", addr, "--interval", "0.1", "--fake", fake],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            want = {"10.2.0.1:80": 1, "10.2.0.2:80": 40, "10.2.0.3:80": 4}
            got = wait_until(lambda: dest_weights(d, 80, "192.0.2.20") == want, 20)
            assert got is not None, (dest_weights(d, 80, "192.0.2.20"), d.stderr())
            doc = d.ok("--health", "--json", via="adm").splitlines()[1]
            fb = json.loads(doc)["feedback"]
            assert fb["received"] > 0 and {s["address"] for s in fb["servers"]} == set(readings)
            log = d.stderr()
        steps = re.findall(r"feedback: TCP 192\.0\.2\.20:80 real server (\S+):80: load (\S+) value (\S+) -> (\S+) "
                           r"\(initial (\d+)\); weight (\d+) -> (\d+)", log)
        assert steps, log
        seen = set()
        for addr, load, old, new, initial, w0, w1 in steps:
            load, old, new, initial = float(load), float(old), float(new), int(initial)
            assert abs(load - aggregate(readings[addr])) < 0.001
            expect = min(max(old + 5 * (0.95 - load) ** (1 / 3) if load <= 0.95
                             else old - 5 * (load - 0.95) ** (1 / 3), 1), 10 * initial)
            assert abs(new - expect) < 0.002, (addr, load, old, new, expect)
            assert int(w1) == int(new + 0.5) and int(w0) != int(w1)
            seen.add(addr)
        assert seen == {"10.2.0.1", "10.2.0.2"}        # the server at the target never moved
    finally:
        for p in agents:
            p.terminate()
            p.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
