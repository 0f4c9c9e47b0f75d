#!/usr/bin/python3
"""User-space LVS/TUN (IPIP) endpoint for a real server whose kernel has no
ipip module: a raw socket takes every IPv4-in-IPv4 packet addressed to this
host (so the kernel sends no protocol-unreachable), the outer header is
stripped and the inner packet is written to a TUN device, where the kernel
receives it as if it had arrived on a tunnel interface.

    e2e_tun_decap.py [--ifname NAME] [--expect-outer-src ADDR]

Prints `ready` once listening; on SIGTERM/SIGINT prints one line
`decap: packets=N bad=M` and exits.
"""
import argparse
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ifname", default="sytun0")
    ap.add_argument("--expect-outer-src", default=None)
    a = ap.parse_args()

    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", a.ifname.encode(), IFF_TUN | IFF_NO_PI))
    for cmd in (["sysctl", "-q", "-w", "net.ipv6.conf.%s.disable_ipv6=1" % a.ifname],
                ["sysctl", "-q", "-w", "net.ipv4.conf.%s.rp_filter=0" % a.ifname],
                ["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0"],
                ["ip", "link", "set", a.ifname, "up"]):
        subprocess.run(cmd, check=True)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)   # IPPROTO_IPIP
    stats = {"packets": 0, "bad": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("ready", flush=True)
    while not stop:
        try:
            r, _, _ = select.select([raw, fd], [], [], 0.2)
        except InterruptedError:
            continue
        if fd in r:
            os.read(fd, 65535)          # the kernel's own packets routed to the TUN: none expected
        if raw not in r:
            continue
        data = raw.recv(65535)
        ihl = (data[0] & 0x0F) * 4
        outer_src = socket.inet_ntoa(data[12:16])
        inner = data[ihl:]
        if len(inner) < 20 or inner[0] >> 4 != 4 or (a.expect_outer_src and outer_src != a.expect_outer_src):
            stats["bad"] += 1
            continue
        os.write(fd, inner)
        stats["packets"] += 1
    print("decap: packets=%d bad=%d" % (stats["packets"], stats["bad"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
