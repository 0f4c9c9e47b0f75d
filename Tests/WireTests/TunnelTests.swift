import XCTest
@testable import Wire

final class TunnelTests: XCTestCase {
    /// Puts `frame` after `headroom` bytes, encapsulates, returns the new frame.
    func encap(_ frame: [UInt8], type: TunnelType, flags: TunnelFlags, src: String, dst: String,
               port: UInt16 = 0, id: UInt16 = 0, hash: UInt32 = 0, pmtu: Bool = true) -> [UInt8] {
        let info = parse(frame).1
        let outerV6 = src.contains(":")
        let h = Tunnel.headerLength(type, outerIsV6: outerV6, flags: flags)
        var n = 0
        let out = withExact([UInt8](repeating: 0xCC, count: h) + frame) { p, _ in
            n = Tunnel.encapsulate(p, inner: info, type: type, flags: flags, source: IPAddress(src)!,
                                   destination: IPAddress(dst)!, port: port, ipID: id, flowHash: hash, pmtuDisc: pmtu)
        }
        XCTAssertGreaterThan(n, 0)
        return Array(out.prefix(n))
    }

    func testHeaderLengthsAndMTU() {
        XCTAssertEqual(Tunnel.headerLength(.ipip, outerIsV6: false, flags: []), 20)
        XCTAssertEqual(Tunnel.headerLength(.ipip, outerIsV6: true, flags: []), 40)
        XCTAssertEqual(Tunnel.headerLength(.gue, outerIsV6: false, flags: []), 32)
        XCTAssertEqual(Tunnel.headerLength(.gue, outerIsV6: true, flags: .csum), 52)
        XCTAssertEqual(Tunnel.headerLength(.gre, outerIsV6: false, flags: []), 24)
        XCTAssertEqual(Tunnel.headerLength(.gre, outerIsV6: false, flags: .csum), 28)
        XCTAssertEqual(Tunnel.headerLength(.gre, outerIsV6: true, flags: .csum), 48)
        XCTAssertEqual(Tunnel.mtu(routeMTU: 1500, type: .ipip, outerIsV6: false, flags: []), 1480)
        XCTAssertEqual(Tunnel.mtu(routeMTU: 1500, type: .gue, outerIsV6: false, flags: []), 1468)
        XCTAssertEqual(Tunnel.mtu(routeMTU: 1500, type: .gre, outerIsV6: true, flags: .csum), 1452)
        XCTAssertEqual(Tunnel.mtu(routeMTU: 88, type: .ipip, outerIsV6: false, flags: []), 68)
        XCTAssertEqual(Tunnel.mtu(routeMTU: 87, type: .ipip, outerIsV6: false, flags: []), 0)
        XCTAssertEqual(Tunnel.mtu(routeMTU: 1320, type: .ipip, outerIsV6: true, flags: []), 1280)
        XCTAssertEqual(Tunnel.mtu(routeMTU: 1319, type: .ipip, outerIsV6: true, flags: []), 0)
    }

    func testECN() {
        // Not-ECT, ECT(1), ECT(0) copied; CE becomes ECT(0); DSCP kept.
        XCTAssertEqual(Tunnel.ecnEncapsulate(0xB8), 0xB8)
        XCTAssertEqual(Tunnel.ecnEncapsulate(0xB9), 0xB9)
        XCTAssertEqual(Tunnel.ecnEncapsulate(0xBA), 0xBA)
        XCTAssertEqual(Tunnel.ecnEncapsulate(0xBB), 0xBA)
        XCTAssertEqual(Tunnel.ecnEncapsulate(0x03), 0x02)
    }

    func testSourcePortRange() {
        var g = SplitMix(seed: 3)
        var seen = Set<UInt16>()
        for _ in 0..<20000 {
            let p = Tunnel.sourcePort(hash: UInt32.random(in: 0...UInt32.max, using: &g))
            XCTAssertTrue(p >= 32768 && p < 60999)
            seen.insert(p >> 10)
        }
        XCTAssertGreaterThan(seen.count, 25)  // spread over the range
        XCTAssertEqual(Tunnel.sourcePort(hash: 0), 32768)
        // Upper 32 bits of (h ^ h<<16) * 28231, plus 32768.
        let h: UInt32 = 0x1234_5678
        let x = UInt64(h ^ (h << 16))
        XCTAssertEqual(Tunnel.sourcePort(hash: h), UInt16((x * 28231) >> 32) + 32768)
        // The flow hash depends on the flow.
        let a = parse(B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2))).1
        let b = parse(B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 3, dport: 2))).1
        XCTAssertNotEqual(Tunnel.flowHash(a), Tunnel.flowHash(b))
        XCTAssertEqual(Tunnel.flowHash(a), Tunnel.flowHash(a))
        // The fast path hashes an IPv4 flow from the frame's fields: the
        // same value, so a flow keeps its GUE source port on either path.
        XCTAssertEqual(Tunnel.flowHash(b), Tunnel.flowHash4(source: b.src.v4, destination: b.dst.v4, proto: 6,
                                                             sport: 3, dport: 2))
    }

    func checkOuterV4(_ f: [UInt8], l2: Int, proto: UInt8, payload: Int, tos: UInt8, ttl: UInt8, df: Bool, id: UInt16) {
        XCTAssertEqual(f[l2], 0x45)
        XCTAssertEqual(f[l2 + 1], tos)
        XCTAssertEqual(Int(Ref.be16(f, l2 + 2)), 20 + payload)
        XCTAssertEqual(Ref.be16(f, l2 + 4), id)
        XCTAssertEqual(Ref.be16(f, l2 + 6), df ? 0x4000 : 0)
        XCTAssertEqual(f[l2 + 8], ttl)
        XCTAssertEqual(f[l2 + 9], proto)
        XCTAssertEqual(Array(f[l2 + 12..<l2 + 16]), B.v4("192.0.2.1"))
        XCTAssertEqual(Array(f[l2 + 16..<l2 + 20]), B.v4("198.51.100.7"))
        XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: l2))
    }

    func testIPIPv4() {
        let inner = B.ipv4(proto: 6, l4: B.tcp(sport: 1234, dport: 80, payload: [1, 2, 3]), ttl: 17, tos: 0x2B, id: 9, df: true)
        // Frame with Ethernet padding: the padding is left behind.
        let frame = B.eth(type: 0x0800) + inner + [0, 0, 0, 0, 0, 0, 0]
        let f = encap(frame, type: .ipip, flags: [], src: "192.0.2.1", dst: "198.51.100.7", id: 0x4242)
        XCTAssertEqual(f.count, 14 + 20 + inner.count)
        XCTAssertEqual(Array(f[0..<12]), B.macB + B.macA)
        XCTAssertEqual(Ref.be16(f, 12), 0x0800)
        checkOuterV4(f, l2: 14, proto: 4, payload: inner.count, tos: 0x2A, ttl: 17, df: true, id: 0x4242)
        XCTAssertEqual(Array(f[34...]), inner)
        let (r, info) = parse(f)
        XCTAssertEqual(r, .ok)
        XCTAssertEqual(info.l4Proto, 4)
        // pmtu_disc off: no DF.
        let g = encap(frame, type: .ipip, flags: [], src: "192.0.2.1", dst: "198.51.100.7", pmtu: false)
        XCTAssertEqual(Ref.be16(g, 20), 0)
        // Inner DF clear: no DF.
        let nodf = B.eth(type: 0x0800) + B.ipv4(proto: 17, l4: B.udp(sport: 1, dport: 2), df: false)
        XCTAssertEqual(Ref.be16(encap(nodf, type: .ipip, flags: [], src: "192.0.2.1", dst: "198.51.100.7"), 20), 0)
    }

    func testIPv6InIPv4WithVLAN() {
        let inner = B.ipv6(nh: 17, l4: B.udp(sport: 5, dport: 6, payload: [7]), hop: 9, tc: 0x03)
        let frame = B.eth(type: 0x86DD, vlans: [0x123, 0x456]) + inner
        let f = encap(frame, type: .ipip, flags: [], src: "192.0.2.1", dst: "198.51.100.7")
        XCTAssertEqual(Array(f[0..<12]), B.macB + B.macA)
        XCTAssertEqual(Array(f[12..<20]), [0x88, 0xA8, 0x01, 0x23, 0x81, 0x00, 0x04, 0x56])
        XCTAssertEqual(Ref.be16(f, 20), 0x0800)
        checkOuterV4(f, l2: 22, proto: 41, payload: inner.count, tos: 0x02, ttl: 9, df: true, id: 0)
        XCTAssertEqual(Array(f[42...]), inner)
        let info = parse(f).1
        XCTAssertEqual(info.vlanTCI, 0x123)
        XCTAssertEqual(info.innerVLANTCI, 0x456)
    }

    func testIPv4InIPv6() {
        let inner = B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2), ttl: 33, tos: 0x11)
        let frame = B.eth(type: 0x0800, vlans: [7]) + inner
        let f = encap(frame, type: .ipip, flags: [], src: "2001:db8::1", dst: "2001:db8::2")
        XCTAssertEqual(Ref.be16(f, 16), 0x86DD)
        let o = 18
        XCTAssertEqual(Ref.be32(f, o), 0x6000_0000 | UInt32(0x11) << 20)  // flow label 0
        XCTAssertEqual(Int(Ref.be16(f, o + 4)), inner.count)
        XCTAssertEqual(f[o + 6], 4)
        XCTAssertEqual(f[o + 7], 33)
        XCTAssertEqual(Array(f[o + 8..<o + 24]), B.v6("2001:db8::1"))
        XCTAssertEqual(Array(f[o + 24..<o + 40]), B.v6("2001:db8::2"))
        XCTAssertEqual(Array(f[(o + 40)...]), inner)
        XCTAssertEqual(parse(f).0, .ok)
    }

    func testGUE() {
        let inner = B.ipv4(proto: 17, l4: B.udp(sport: 9, dport: 10, payload: [1, 2, 3, 4, 5]), ttl: 50, tos: 0x03)
        let frame = B.eth(type: 0x0800) + inner
        for flags: TunnelFlags in [[], .csum, .remcsum] {
            let f = encap(frame, type: .gue, flags: flags, src: "192.0.2.1", dst: "198.51.100.7", port: 6080, id: 1, hash: 0xDEAD_BEEF)
            XCTAssertEqual(f.count, 14 + 32 + inner.count)
            checkOuterV4(f, l2: 14, proto: 17, payload: 12 + inner.count, tos: 0x02, ttl: 50, df: true, id: 1)
            let u = 34
            XCTAssertEqual(Ref.be16(f, u), Tunnel.sourcePort(hash: 0xDEAD_BEEF))
            XCTAssertEqual(Ref.be16(f, u + 2), 6080)
            XCTAssertEqual(Int(Ref.be16(f, u + 4)), 12 + inner.count)
            XCTAssertEqual(Array(f[u + 8..<u + 12]), [0, 4, 0, 0])
            XCTAssertEqual(Array(f[(u + 12)...]), inner)
            let (r, info) = parse(f)
            XCTAssertEqual(r, .ok)
            XCTAssertEqual(info.dport, 6080)
            if flags.isEmpty {
                XCTAssertEqual(Ref.be16(f, u + 6), 0)
            } else {
                let (c, _) = Ref.l4Checksum(f, l3: 14, l4: u, proto: 17, end: f.count)
                XCTAssertEqual(Ref.be16(f, u + 6), c)
            }
        }
        // IPv6 outer with an IPv6 inner, checksum on.
        let in6 = B.ipv6(nh: 6, l4: B.tcp(sport: 1, dport: 2, payload: [3]), hop: 2)
        let f6 = encap(B.eth(type: 0x86DD) + in6, type: .gue, flags: .csum, src: "2001:db8::1", dst: "2001:db8::2", port: 5555)
        XCTAssertEqual(f6[14 + 6], 17)
        XCTAssertEqual(f6[14 + 7], 2)
        XCTAssertEqual(Int(Ref.be16(f6, 18)), 12 + in6.count)
        XCTAssertEqual(Array(f6[54 + 8..<54 + 12]), [0, 41, 0, 0])
        let (c6, _) = Ref.l4Checksum(f6, l3: 14, l4: 54, proto: 17, end: f6.count)
        XCTAssertEqual(Ref.be16(f6, 54 + 6), c6)
        XCTAssertEqual(Array(f6[66...]), in6)
    }

    func testGRE() {
        let inner = B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2, payload: [UInt8](repeating: 9, count: 33)))
        let frame = B.eth(type: 0x0800) + inner
        let f = encap(frame, type: .gre, flags: [], src: "192.0.2.1", dst: "198.51.100.7")
        checkOuterV4(f, l2: 14, proto: 47, payload: 4 + inner.count, tos: 0, ttl: 64, df: true, id: 0)
        XCTAssertEqual(Array(f[34..<38]), [0, 0, 0x08, 0x00])
        XCTAssertEqual(Array(f[38...]), inner)
        let c = encap(frame, type: .gre, flags: .csum, src: "192.0.2.1", dst: "198.51.100.7")
        checkOuterV4(c, l2: 14, proto: 47, payload: 8 + inner.count, tos: 0, ttl: 64, df: true, id: 0)
        XCTAssertEqual(Array(c[34..<36]), [0x80, 0x00])
        XCTAssertEqual(Ref.be16(c, 36), 0x0800)
        XCTAssertEqual(Ref.be16(c, 40), 0)  // reserved
        XCTAssertEqual(Ref.sum(Array(c[34...])), 0xFFFF)
        XCTAssertEqual(Array(c[42...]), inner)
        // IPv6 inner over IPv6 outer.
        let in6 = B.ipv6(nh: 17, l4: B.udp(sport: 1, dport: 2))
        let g = encap(B.eth(type: 0x86DD) + in6, type: .gre, flags: [], src: "2001:db8::1", dst: "2001:db8::2")
        XCTAssertEqual(g[14 + 6], 47)
        XCTAssertEqual(Array(g[54..<58]), [0, 0, 0x86, 0xDD])
        XCTAssertEqual(Array(g[58...]), in6)
    }

    func testRefusals() {
        let frame = B.arp()
        let info = parse(frame).1
        withExact([UInt8](repeating: 0, count: 20) + frame) { p, _ in
            XCTAssertEqual(Tunnel.encapsulate(p, inner: info, type: .ipip, flags: [], source: IPAddress("1.1.1.1")!,
                                              destination: IPAddress("2.2.2.2")!), 0)
        }
        let ip = B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2))
        let ii = parse(ip).1
        withExact([UInt8](repeating: 0, count: 40) + ip) { p, _ in
            XCTAssertEqual(Tunnel.encapsulate(p, inner: ii, type: .ipip, flags: [], source: IPAddress("1.1.1.1")!,
                                              destination: IPAddress("::2")!), 0)
        }
    }
}
