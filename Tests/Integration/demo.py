#!/usr/bin/env python3
"""`make run`'s capture and summary.

demo.py DIR            write DIR/in.pcap: 300 TCP clients of the web VIP (full
                       handshakes, a request and reply, FIN exchange, the real
                       servers' replies included), 400 DNS queries to the UDP
                       VIP, and some ARP and unrelated traffic.
demo.py --summary DIR  read DIR/out.pcap and show where the packets went.
"""
import collections
import sys

from scapy.all import ARP, IP, TCP, UDP, Ether, Raw, rdpcap, wrpcap

VIP = "192.0.2.10"
ROUTER = "02:00:00:00:00:fe"
LB = "02:00:00:00:00:aa"
WEB = ["10.0.0.13", "10.0.0.12", "10.0.0.11"]   # rr order: the newest server first
MACS = {"10.0.0.11": "02:00:00:00:01:0b", "10.0.0.12": "02:00:00:00:01:0c", "10.0.0.13": "02:00:00:00:01:0d"}


def build(out_dir):
    pkts = []
    t = 1700000000.0

    def add(p):
        nonlocal t
        t += 0.0005
        p.time = t
        pkts.append(p)

    for c in range(300):
        client = "203.0.113.%d" % (c % 250 + 1)
        cport = 20000 + c
        rs = WEB[c % 3]
        cs = lambda f, **kw: Ether(src=ROUTER, dst=LB) / IP(src=client, dst=VIP) / TCP(sport=cport, dport=80, flags=f, **kw)
        sc = lambda f, **kw: Ether(src=MACS[rs], dst=LB) / IP(src=rs, dst=client) / TCP(sport=8080, dport=cport, flags=f, **kw)
        add(cs("S", seq=1000))
        add(sc("SA", seq=5000, ack=1001))
        add(cs("A", seq=1001, ack=5001))
        add(cs("PA", seq=1001, ack=5001) / Raw(b"GET / HTTP/1.0\r\n\r\n"))
        add(sc("PA", seq=5001, ack=1019) / Raw(b"HTTP/1.0 200 OK\r\n\r\nhello"))
        add(cs("FA", seq=1019, ack=5025))
        add(sc("FA", seq=5025, ack=1020))
        add(cs("A", seq=1020, ack=5026))
    for q in range(400):
        add(Ether(src=ROUTER, dst=LB) / IP(src="198.51.100.%d" % (q % 200 + 10), dst=VIP) /
            UDP(sport=30000 + q, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01"))
    for a in range(20):
        add(Ether(src=ROUTER, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="198.51.100.1", pdst=VIP, hwsrc=ROUTER))
    wrpcap(out_dir + "/in.pcap", pkts)
    print("demo: wrote %d packets to %s/in.pcap" % (len(pkts), out_dir))


def summary(out_dir):
    log = open(out_dir + "/run.log").read()
    sections = log.split("IP Virtual Server version")
    head = sections[0]
    print(head.strip())
    listing = "IP Virtual Server version" + sections[1] if len(sections) > 1 else ""
    stats = "IP Virtual Server version" + sections[2] if len(sections) > 2 else ""
    conns = ""
    if "IPVS connection entries" in stats:
        stats, _, conns = stats.partition("IPVS connection entries")
    rows = [l for l in conns.splitlines()[2:] if l.strip()]
    print("\n$ ipvsadm -L -n")
    print(listing.rstrip())
    print("\n$ ipvsadm -L -n -c   (%d entries; the first 5)" % len(rows))
    print("\n".join(["IPVS connection entries"] + conns.splitlines()[1:2] + rows[:5]))

    sent = rdpcap(out_dir + "/out.pcap")
    to_server = collections.Counter()
    nat_replies = 0
    other = 0
    server_by_mac = {v: k for k, v in MACS.items()}
    server_by_mac.update({"02:00:00:00:01:15": "10.0.0.21", "02:00:00:00:01:16": "10.0.0.22"})
    for p in sent:
        if IP in p and TCP in p and p[IP].src == VIP:
            nat_replies += 1
        elif IP in p and TCP in p and p[IP].dst.startswith("10.0.0."):
            to_server[(p[IP].dst, "TCP", "NAT: dst rewritten to %s:%d" % (p[IP].dst, p[TCP].dport))] += 1
        elif IP in p and UDP in p and p.dst in server_by_mac:
            to_server[(server_by_mac[p.dst], "UDP", "DR: dst MAC %s, VIP kept" % p.dst)] += 1
        else:
            other += 1
    print("\nWhere the packets went (%s/out.pcap, %d packets):" % (out_dir, len(sent)))
    print("  %-12s %-5s %-8s %s" % ("real server", "proto", "packets", "how"))
    for (ip, proto, how), n in sorted(to_server.items()):
        print("  %-12s %-5s %-8d %s" % (ip, proto, n, how))
    print("  NAT replies rewritten to come from %s:80, sent to the clients: %d" % (VIP, nat_replies))
    print("  ARP and other traffic not for a VIP, forwarded unchanged: %d" % other)
    print("\n$ ipvsadm -L -n --stats")
    print(stats.rstrip())


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        summary(sys.argv[2])
    else:
        build(sys.argv[1])
