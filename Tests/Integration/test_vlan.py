"""--vlan P:ID: port 0 carries 802.1Q VLAN 100 (clients), port 1 is untagged
(servers). Client frames arrive tagged and leave untagged towards the
servers; NAT replies leave port 0 tagged with VLAN 100; ARP on the tagged
port is answered tagged; the priority bits of a tag are kept."""

import tempfile

from scapy.all import ARP, IP, TCP, Dot1Q, Ether, rdpcap, wrpcap

from sylib import ROUTER_MAC, run_switchyard, tshark_problems, write_rules

PORT0_MAC = "02:70:63:61:70:00"
PORT1_MAC = "02:70:63:61:70:01"
RS_MAC = "02:00:00:00:01:0b"
VIP = "192.0.2.10"


def at(p, t):
    p.time = t
    return p


def test_tagged_client_port_and_untagged_server_port():
    tmp = tempfile.mkdtemp(prefix="sy-vlan-")
    rules = write_rules(tmp, "-A -t %s:80 -s rr\n-a -t %s:80 -r 10.0.0.11:8080 -m -w 1\n" % (VIP, VIP))
    p0 = [
        at(Ether(src=ROUTER_MAC, dst=PORT0_MAC) / Dot1Q(vlan=100, prio=5) / IP(src="203.0.113.9", dst=VIP) /
           TCP(sport=4000, dport=80, flags="S"), 1.0),
        at(Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=100) /
           ARP(op=1, hwsrc=ROUTER_MAC, psrc="198.51.100.1", pdst="198.51.100.2"), 1.1),
    ]
    p1 = [at(Ether(src=RS_MAC, dst=PORT1_MAC) / IP(src="10.0.0.11", dst="203.0.113.9") /
             TCP(sport=8080, dport=4000, flags="SA"), 2.0)]
    wrpcap(tmp + "/p0.pcap", p0)
    wrpcap(tmp + "/p1.pcap", p1)
    args = ["--config", rules, "--clock", "packet", "--vlan", "0:100",
            "--port-addr", "0:198.51.100.2/24", "--port-addr", "1:10.0.0.1/24",
            "--route", "0.0.0.0/0=198.51.100.1", "--neigh", "198.51.100.1=" + ROUTER_MAC,
            "--neigh", "10.0.0.11=" + RS_MAC]
    run = run_switchyard(in_paths=[tmp + "/p0.pcap", tmp + "/p1.pcap"], ports=2, args=args, workdir=tmp)
    assert run.rc == 0, run.stderr
    out0 = rdpcap(run.out_paths[0])
    out1 = rdpcap(run.out_paths[1])
    # To the server: untagged, NAT'd.
    assert len(out1) == 1 and Dot1Q not in out1[0]
    assert out1[0][IP].dst == "10.0.0.11" and out1[0][TCP].dport == 8080 and out1[0].dst == RS_MAC
    # Port 0: the ARP reply and the NAT reply, both tagged VLAN 100.
    assert len(out0) == 2 and all(Dot1Q in f and f[Dot1Q].vlan == 100 for f in out0)
    arp = [f for f in out0 if ARP in f][0]
    assert arp[ARP].op == 2 and arp[ARP].psrc == "198.51.100.2" and arp[ARP].hwsrc == PORT0_MAC
    reply = [f for f in out0 if TCP in f][0]
    assert reply[IP].src == VIP and reply[TCP].sport == 80 and reply.dst == ROUTER_MAC
    assert tshark_problems(run.out_paths[0]) == [] and tshark_problems(run.out_paths[1]) == []


def test_vlan_flag_validation():
    import subprocess
    from sylib import BINARY, EAL_BASE
    for bad in ["0:0", "0:4095", "x:10", "0"]:
        proc = subprocess.run([BINARY, "-l", "0"] + EAL_BASE + ["--", "--vlan", bad], capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 2 and "--vlan" in proc.stderr


def test_tunnelled_flows_leave_tagged_on_a_tagged_server_port():
    """LVS/TUN towards servers on a tagged port: after the first burst the
    flows take the fast path's encapsulation, and every frame still leaves
    with the port's tag in front of the outer IPv4 header."""
    from scapy.all import UDP, Raw
    tmp = tempfile.mkdtemp(prefix="sy-vlan-tun-")
    rules = write_rules(tmp, "-A -u %s:7000 -s rr\n-a -u %s:7000 -r 10.0.0.11:7000 -i -w 1 --tun-type ipip\n"
                             "-A -u %s:7001 -s rr\n-a -u %s:7001 -r 10.0.0.11:7001 -i -w 1 --tun-type gue --tun-port 6080\n"
                        % (VIP, VIP, VIP, VIP))
    p0 = [at(Ether(src=ROUTER_MAC, dst=PORT0_MAC) / IP(src="203.0.113.9", dst=VIP, ttl=40) /
             UDP(sport=5000 + n % 2, dport=7000 + n % 2) / Raw(b"q%02d" % n), 1.0 + n * 0.001) for n in range(80)]
    wrpcap(tmp + "/p0.pcap", p0)
    args = ["--config", rules, "--clock", "packet", "--vlan", "1:200",
            "--port-addr", "0:198.51.100.2/24", "--port-addr", "1:10.0.0.1/24",
            "--neigh", "10.0.0.11=" + RS_MAC]
    run = run_switchyard(in_paths=[tmp + "/p0.pcap"], ports=2, args=args, workdir=tmp)
    assert run.rc == 0, run.stderr
    out1 = rdpcap(run.out_paths[1])
    assert len(out1) == len(p0)
    for n, f in enumerate(out1):
        assert Dot1Q in f and f[Dot1Q].vlan == 200 and f.dst == RS_MAC and f.src == PORT1_MAC, n
        outer = f[Dot1Q].payload
        assert outer.src == "10.0.0.1" and outer.dst == "10.0.0.11" and outer.ttl == 39, n
        inner = bytes(outer.payload)[12:] if outer.proto == 17 else bytes(outer.payload)
        assert outer.proto == (17 if n % 2 else 4), n
        want = IP(bytes(p0[n][IP]))
        want.ttl -= 1
        del want.chksum
        assert inner == bytes(want), n
    assert tshark_problems(run.out_paths[1]) == []
