"""ARP and NDP for port addresses and VIPs, echo replies, resolution of next
hops with packets queued until the answer comes, and route selection."""

import tempfile

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Ether, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
                       ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6, Raw, rdpcap)

from sylib import ROUTER_MAC, run_switchyard, tshark_problems, write_rules

PORT0_MAC = "02:70:63:61:70:00"       # net_pcap's MAC for port 0
PORT1_MAC = "02:70:63:61:70:01"
VIP = "192.0.2.10"
VIP6 = "2001:db8:10::10"
RS_MAC = "02:00:00:00:01:0b"


def rules(tmp):
    return write_rules(tmp, "\n".join([
        "-A -t %s:80 -s rr" % VIP,
        "-a -t %s:80 -r 10.0.0.11:8080 -m -w 1" % VIP,
        "-A -t [%s]:80 -s rr" % VIP6,
        "-a -t [%s]:80 -r [2001:db8:a::11]:80 -g -w 1" % VIP6,
    ]) + "\n")


ADDRS = ["--port-addr", "0:198.51.100.2/24", "--port-addr", "0:10.0.0.1/24",
         "--port-addr", "0:2001:db8:a::1/64", "--port-addr", "0:2001:db8:10::1/64",
         "--route", "0.0.0.0/0=198.51.100.1", "--clock", "packet"]


def at(p, t):
    p.time = t
    return p


def test_arp_ndp_and_echo_for_our_addresses():
    tmp = tempfile.mkdtemp(prefix="sy-nb-")
    pk = [
        at(Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=ROUTER_MAC, psrc="198.51.100.1", pdst=VIP), 1),
        at(Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=ROUTER_MAC, psrc="198.51.100.1", pdst="198.51.100.2"), 2),
        # Not ours: not answered (bridged to the paired port, i.e. out unchanged).
        at(Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=ROUTER_MAC, psrc="198.51.100.1", pdst="198.51.100.77"), 3),
        at(Ether(src=ROUTER_MAC, dst="33:33:ff:00:00:10") / IPv6(src="2001:db8:10::99", dst="ff02::1:ff00:10", hlim=255) /
           ICMPv6ND_NS(tgt=VIP6) / ICMPv6NDOptSrcLLAddr(lladdr=ROUTER_MAC), 4),
        at(Ether(src=ROUTER_MAC, dst=PORT0_MAC) / IP(src="203.0.113.5", dst=VIP) / ICMP(id=7, seq=1) / Raw(b"ping"), 5),
        at(Ether(src=ROUTER_MAC, dst=PORT0_MAC) / IP(src="203.0.113.5", dst="10.0.0.1") / ICMP(id=7, seq=2), 6),
        at(Ether(src=ROUTER_MAC, dst=PORT0_MAC) / IPv6(src="2001:db8:10::99", dst="2001:db8:a::1") / ICMPv6EchoRequest(id=3, seq=4), 7),
    ]
    run = run_switchyard(pk, args=["--config", rules(tmp)] + ADDRS, workdir=tmp)
    assert run.rc == 0, run.stderr
    out = run.out
    assert len(out) == 7
    # ARP replies: ours at the port MAC, back to the asker.
    for i, ip in [(0, VIP), (1, "198.51.100.2")]:
        r = out[i]
        assert r[ARP].op == 2 and r[ARP].psrc == ip and r[ARP].hwsrc == PORT0_MAC
        assert r[ARP].pdst == "198.51.100.1" and r[ARP].hwdst == ROUTER_MAC and r.dst == ROUTER_MAC
    assert bytes(out[2]) == bytes(pk[2])
    na = out[3]
    assert ICMPv6ND_NA in na and na[ICMPv6ND_NA].tgt == VIP6 and na[ICMPv6ND_NA].S == 1
    assert na[ICMPv6NDOptDstLLAddr].lladdr == PORT0_MAC and na[IPv6].dst == "2001:db8:10::99"
    for i, src in [(4, VIP), (5, "10.0.0.1")]:
        r = out[i]
        assert r[ICMP].type == 0 and r[IP].src == src and r[IP].dst == "203.0.113.5" and r.src == PORT0_MAC
    assert out[4][Raw].load == b"ping"
    assert out[6][IPv6].src == "2001:db8:a::1" and out[6].haslayer("ICMPv6EchoReply")
    assert tshark_problems(run.out_paths[0]) == []
    assert run.lcore_counters()[0]["conns"] == 0


def test_resolution_queues_packets_until_the_reply():
    """The real server has no --neigh entry: the SYN waits while an ARP
    request goes out; the server's ARP reply releases it, rewritten, to the
    learned MAC. Later packets go straight out. An IPv6 next hop resolves by
    NDP the same way. A next hop that never answers is given up after 3 s."""
    tmp = tempfile.mkdtemp(prefix="sy-nb-")
    client = lambda sport, flags, t: at(Ether(src=ROUTER_MAC, dst=PORT0_MAC) / IP(src="203.0.113.9", dst=VIP) /
                                        TCP(sport=sport, dport=80, flags=flags), t)
    pk = [
        client(4000, "S", 10.0),
        at(Ether(src=RS_MAC, dst=PORT0_MAC) / ARP(op=2, hwsrc=RS_MAC, psrc="10.0.0.11", hwdst=PORT0_MAC, pdst="10.0.0.1"), 10.2),
        client(4000, "A", 10.3),
        at(Ether(src=ROUTER_MAC, dst=PORT0_MAC) / IPv6(src="2001:db8:10::99", dst=VIP6) / TCP(sport=5000, dport=80, flags="S"), 11.0),
        at(Ether(src="02:00:00:00:02:11", dst=PORT0_MAC) / IPv6(src="2001:db8:a::11", dst="2001:db8:a::1", hlim=255) /
           ICMPv6ND_NA(tgt="2001:db8:a::11", S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:02:11"), 11.1),
        # The client's default route: the gateway 198.51.100.1 is unknown too;
        # the NAT reply waits for it, then leaves to its MAC.
        at(Ether(src=RS_MAC, dst=PORT0_MAC) / IP(src="10.0.0.11", dst="203.0.113.9") / TCP(sport=8080, dport=4000, flags="SA"), 12.0),
        at(Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=ROUTER_MAC, psrc="198.51.100.1", pdst="198.51.100.2"), 12.1),
        # Keep the clock moving so the retry/give-up timers run.
        at(Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=ROUTER_MAC, psrc="198.51.100.1", pdst="198.51.100.250"), 13.0),
    ]
    run = run_switchyard(pk, args=["--config", rules(tmp)] + ADDRS, workdir=tmp)
    assert run.rc == 0, run.stderr
    out = run.out
    arp_req = [p for p in out if ARP in p and p[ARP].op == 1 and p.src == PORT0_MAC]
    assert [p[ARP].pdst for p in arp_req] == ["10.0.0.11", "198.51.100.1"]
    assert all(p.dst == "ff:ff:ff:ff:ff:ff" and p[ARP].psrc in ("10.0.0.1", "198.51.100.2") for p in arp_req)
    assert arp_req[0][ARP].psrc == "10.0.0.1" and arp_req[1][ARP].psrc == "198.51.100.2"
    ns = [p for p in out if ICMPv6ND_NS in p]
    assert len(ns) == 1 and ns[0][ICMPv6ND_NS].tgt == "2001:db8:a::11" and ns[0][IPv6].dst == "ff02::1:ff00:11"
    to_rs = [p for p in out if IP in p and TCP in p and p[IP].dst == "10.0.0.11"]
    assert [p[TCP].flags for p in to_rs] == ["S", "A"]
    assert all(p.dst == RS_MAC and p[TCP].dport == 8080 for p in to_rs)
    dr6 = [p for p in out if IPv6 in p and TCP in p and p[IPv6].dst == VIP6]
    assert len(dr6) == 1 and dr6[0].dst == "02:00:00:00:02:11"
    reply = [p for p in out if IP in p and TCP in p and p[IP].src == VIP]
    assert len(reply) == 1 and reply[0].dst == ROUTER_MAC and reply[0][TCP].sport == 80
    assert tshark_problems(run.out_paths[0]) == []


def test_unanswered_next_hop_is_given_up():
    tmp = tempfile.mkdtemp(prefix="sy-nb-")
    pk = [at(Ether(src=ROUTER_MAC, dst=PORT0_MAC) / IP(src="203.0.113.9", dst=VIP) / TCP(sport=4000, dport=80, flags="S"), 10.0)]
    # Time passes (packets not for us), retries go out once a second, then the SYN is dropped.
    for k in range(1, 9):
        pk.append(at(Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") /
                     ARP(op=1, hwsrc=ROUTER_MAC, psrc="198.51.100.1", pdst="198.51.100.250"), 10.0 + 0.5 * k))
    run = run_switchyard(pk, args=["--config", rules(tmp)] + ADDRS, workdir=tmp)
    assert run.rc == 0, run.stderr
    probes = [p for p in run.out if ARP in p and p[ARP].op == 1 and p[ARP].pdst == "10.0.0.11"]
    assert len(probes) == 3
    assert not any(TCP in p for p in run.out)
    assert run.lcore_counters()[0]["drop"] == 1


def test_routes_choose_the_egress_port_and_next_hop():
    """Two ports: the servers' prefix on port 1, clients behind a gateway on
    port 0; a more specific static route sends one client net via another gateway."""
    tmp = tempfile.mkdtemp(prefix="sy-nb-")
    pk = []
    t = 1.0
    for i, (client, cport) in enumerate([("203.0.113.9", 4000), ("198.18.5.5", 4001)]):
        pk.append(at(Ether(src=ROUTER_MAC, dst=PORT0_MAC) / IP(src=client, dst=VIP) / TCP(sport=cport, dport=80, flags="S"), t))
        t += 0.01
    replies = [at(Ether(src=RS_MAC, dst=PORT1_MAC) / IP(src="10.0.0.11", dst=c) / TCP(sport=8080, dport=p, flags="SA"), 2 + k)
               for k, (c, p) in enumerate([("203.0.113.9", 4000), ("198.18.5.5", 4001)])]
    d = tmp
    from scapy.all import wrpcap
    wrpcap(d + "/p0.pcap", pk)
    wrpcap(d + "/p1.pcap", replies)
    args = ["--config", rules(tmp), "--clock", "packet",
            "--port-addr", "0:198.51.100.2/24", "--port-addr", "1:10.0.0.1/24",
            "--route", "0.0.0.0/0=198.51.100.1", "--route", "198.18.0.0/15=198.51.100.7",
            "--neigh", "198.51.100.1=" + ROUTER_MAC, "--neigh", "198.51.100.7=02:00:00:00:00:07",
            "--neigh", "10.0.0.11=" + RS_MAC]
    run = run_switchyard(in_paths=[d + "/p0.pcap", d + "/p1.pcap"], ports=2, args=args, workdir=d)
    assert run.rc == 0, run.stderr
    out0 = rdpcap(run.out_paths[0])
    out1 = rdpcap(run.out_paths[1])
    # Client SYNs arrive on port 0 and leave port 1 towards the server.
    assert len(out1) == 2 and all(p[IP].dst == "10.0.0.11" and p.src == PORT1_MAC and p.dst == RS_MAC for p in out1)
    # Replies leave port 0: 203.0.113.9 via the default gateway, 198.18.5.5 via the /15 route.
    macs = {p[IP].dst: p.dst for p in out0 if IP in p}
    assert macs == {"203.0.113.9": ROUTER_MAC, "198.18.5.5": "02:00:00:00:00:07"}
    assert all(p.src == PORT0_MAC and p[IP].src == VIP for p in out0)
