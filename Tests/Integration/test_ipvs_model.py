"""The reference model (ipvs_model.py) on its own, against the worked examples
of the IPVS semantics reference and published hash test vectors, so that a
disagreement with Switchyard can be trusted to be Switchyard's. Pure Python,
no binary involved."""

import struct

from ipvs_model import (CL, CW, ES, FW, IPVS, MH, SR, SS, TCP_TABLE, TW, Dest, Service, hash_32, hsiphash_u32,
                        ip2int, siphash)


NAMES = {"A": "10.0.0.1", "B": "10.0.0.2", "C": "10.0.0.3"}
LETTER = {v: k for k, v in NAMES.items()}


def svc_with(sched, servers, flags=(), fwd="m"):
    """servers in the order they are added (list order is the reverse);
    letters stand for 10.0.0.1-3."""
    s = Service("tcp", "192.0.2.1", 80, sched=sched, sched_flags=flags)
    for name, w in servers:
        s.add_dest(Dest(NAMES.get(name, name), 80, w, fwd))
    return s


def picks(svc, n, pkt=None):
    out = []
    for _ in range(n):
        d = svc.sched.schedule(svc, pkt or {}, 0)
        out.append(LETTER.get(d.addr, d.addr) if d else None)
    return out


def test_siphash_reference_vectors():
    # SipHash-2-4, key 00..0f, messages 00..(n-1): the reference implementation's vectors
    k0, k1 = struct.unpack("<QQ", bytes(range(16)))
    assert siphash(k0, k1, b"") == 0x726FDB47DD0E0E31
    assert siphash(k0, k1, bytes([0])) == 0x74F839C593DC67FD
    assert siphash(k0, k1, bytes(range(7))) == 0xAB0200F58B01D137
    assert siphash(k0, k1, bytes(range(8))) == 0x93F5F5799A932462
    assert siphash(k0, k1, bytes(range(15))) == 0xA129CA6149BE45E5
    # hsiphash is SipHash-1-3 of the u32's 4 little-endian bytes, truncated
    key = (2654435761, 2654435761)
    assert hsiphash_u32(0x01020304, key) == siphash(key[0], key[1], b"\x04\x03\x02\x01", 1, 3) & 0xFFFFFFFF


def test_hash_32():
    assert hash_32(1, 32) == 0x61C88647
    assert hash_32(0, 8) == 0
    assert hash_32(ip2int("10.0.0.1"), 8) == ((0x0A000001 * 0x61C88647) & 0xFFFFFFFF) >> 24


def test_rr_example():
    s = svc_with("rr", [("A", 1), ("B", 1), ("C", 1)])
    assert picks(s, 5) == ["C", "B", "A", "C", "B"]
    s = svc_with("rr", [("A", 1), ("B", 0), ("C", 1)])
    assert picks(s, 4) == ["C", "A", "C", "A"]


def test_wrr_examples():
    s = svc_with("wrr", [("A", 4), ("B", 3), ("C", 2)])
    assert "".join(picks(s, 21)) == "CBA" + "ABACBACBA" + "ABACBACBA"
    s.sched.init_service(s)           # scheduler bound while the dests exist: cw = max
    assert "".join(picks(s, 9)) == "ABACBACBA"
    s = svc_with("wrr", [("A", 4), ("B", 2)])
    assert "".join(picks(s, 6)) == "BAABAA"
    s = svc_with("wrr", [("A", 0), ("B", 0)])
    assert picks(s, 2) == [None, None]


def test_least_connection_tie_breaks():
    s = svc_with("lc", [("A", 1), ("B", 5), ("C", 1)])     # list C, B, A
    assert picks(s, 1) == ["C"]                            # first minimum in list order
    s.dests[0].inactive = 1
    assert picks(s, 1) == ["B"]                            # lc ignores weights
    s = svc_with("wlc", [("A", 1), ("B", 2), ("C", 0)])   # list C(0), B, A
    s.dests[1].active = 1                                  # B: 256/2 = 128 vs A: 0/1
    assert picks(s, 1) == ["A"]
    s.dests[2].active = 1                                  # tie 256/2 vs 256/1 -> B wins 128 < 256
    assert picks(s, 1) == ["B"]
    s = svc_with("nq", [("A", 1), ("B", 9)])
    s.dests[0].active = 3                                  # B busy, A idle: A at once
    assert picks(s, 1) == ["A"]
    s = svc_with("ovf", [("A", 2), ("B", 3)])
    s.dests[0].active = 4                                  # B over its weight
    assert picks(s, 1) == ["A"]
    s = svc_with("fo", [("A", 2), ("B", 3), ("C", 3)])
    assert picks(s, 1) == ["C"]                            # first of the equal highest


def test_sh_and_dh_tables():
    s = svc_with("sh", [("A", 2), ("B", 0), ("C", 3)])    # list C, B, A
    b = [LETTER[d.addr] for d in s.sched.buckets[:12]]
    assert b == ["C", "C", "C", "B", "A", "A", "C", "C", "C", "B", "A", "A"]
    s = svc_with("dh", [("A", 2), ("B", 0), ("C", 3)])
    assert [LETTER[d.addr] for d in s.sched.buckets[:6]] == ["C", "B", "A", "C", "B", "A"]


def test_mh_table():
    s = svc_with("mh", [("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.3", 0), ("10.0.0.4", 3)])
    table = s.sched.lookup
    assert len(table) == MH.SIZE == 4093 and all(d is not None for d in table)
    counts = {}
    for d in table:
        counts[d.addr] = counts.get(d.addr, 0) + 1
    assert "10.0.0.3" not in counts                        # added with weight 0: no slots
    assert abs(counts["10.0.0.4"] / counts["10.0.0.1"] - 3) < 0.3
    assert abs(counts["10.0.0.2"] / counts["10.0.0.1"] - 2) < 0.3


def test_tcp_lifecycles():
    def walk(table_seq, start=0):
        st = start
        out = []
        for table, flag in table_seq:
            st = TCP_TABLE[table][flag][st]
            out.append(st)
        return out
    nat = walk([("INPUT", "syn"), ("OUTPUT", "syn"), ("INPUT", "ack"), ("INPUT", "fin"), ("OUTPUT", "fin")])
    assert nat == [SR, SR, ES, CW, TW]
    dr = walk([("INPUT_ONLY", "syn"), ("INPUT_ONLY", "ack"), ("INPUT_ONLY", "fin"), ("INPUT_ONLY", "ack"),
               ("INPUT_ONLY", "rst")])
    assert dr == [SR, ES, FW, FW, CL]
    assert walk([("OUTPUT", "syn")], CW) == [SS]


def test_accounting_and_timeouts():
    m = IPVS()
    m.load_rules("-A -t 192.0.2.1:80 -s rr\n-a -t 192.0.2.1:80 -r 10.0.0.1:8080 -m -w 1 -x 2\n")
    d = m.services[("tcp", "192.0.2.1", 80)].dests[0]
    syn = dict(proto="tcp", src="203.0.113.1", sport=1000, dst="192.0.2.1", dport=80, flags="S", length=40)
    o = m.process(syn, 1000)
    assert o[0] == "fwd" and o[2] and (d.active, d.inactive) == (1, 0)
    fin = dict(syn, flags="FA")
    m.process(dict(syn, flags="A"), 2000)
    m.process(fin, 3000)                                   # NAT: CLOSE_WAIT, inactive
    assert (d.active, d.inactive) == (0, 1) and not d.overload
    m.process(dict(syn, sport=1001), 4000)
    assert d.overload                                      # total 2 >= -x 2
    m.advance(63000 + 20)                                  # CLOSE_WAIT (60 s after 3 s) gone
    assert (d.active, d.inactive) == (1, 0) and not d.overload   # 1*4 < 2*3
    assert m.process(dict(syn, sport=1002, flags="A"), 70000) == ("local",)
