import XCTest
@testable import Wire

final class ICMPTests: XCTestCase {
    let dmac = MACAddress("02:00:00:00:00:aa")!
    let smac = MACAddress("02:00:00:00:00:bb")!

    func build(_ frame: [UInt8], capacity: Int = 2048,
               _ body: (UnsafeRawPointer, PacketInfo, UnsafeMutableRawPointer, Int) -> Int) -> [UInt8] {
        let info = parse(frame).1
        var n = 0
        let out = withExact([UInt8](repeating: 0xEE, count: capacity)) { dst, cap in
            withExact(frame) { p, _ in n = body(p, info, dst, cap) }
        }
        return Array(out.prefix(n))
    }

    func testIPv4TimeExceeded() {
        let orig = B.ipv4(src: "203.0.113.5", dst: "10.0.0.100", proto: 6, l4: B.tcp(sport: 5555, dport: 80, payload: [1, 2, 3]), ttl: 1, tos: 0xB8)
        let frame = B.eth(type: 0x0800, vlans: [3]) + orig
        let vip = IPAddress("10.0.0.100")!
        let f = build(frame) { p, info, dst, cap in
            ICMP.buildTimeExceeded(original: p, info: info, source: vip, destinationMAC: dmac, sourceMAC: smac, into: dst, capacity: cap)
        }
        XCTAssertEqual(f.count, 14 + 28 + orig.count)
        XCTAssertEqual(Array(f[0..<6]), [2, 0, 0, 0, 0, 0xAA])
        XCTAssertEqual(Array(f[6..<12]), [2, 0, 0, 0, 0, 0xBB])
        XCTAssertEqual(Ref.be16(f, 12), 0x0800)
        XCTAssertEqual(f[14], 0x45)
        XCTAssertEqual(f[15], 0xC0 | (0xB8 & 0x1E))
        XCTAssertEqual(Int(Ref.be16(f, 16)), 28 + orig.count)
        XCTAssertEqual(f[22], 64)
        XCTAssertEqual(f[23], 1)
        XCTAssertEqual(Array(f[26..<30]), B.v4("10.0.0.100"))
        XCTAssertEqual(Array(f[30..<34]), B.v4("203.0.113.5"))
        XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 14))
        XCTAssertEqual(Array(f[34..<42]), [11, 0, f[36], f[37], 0, 0, 0, 0])
        XCTAssertEqual(Array(f[42...]), orig)
        XCTAssertEqual(Ref.sum(Array(f[34...])), 0xFFFF)
        let (r, info) = parse(f)
        XCTAssertEqual(r, .ok)
        XCTAssertEqual(info.icmpType, 11)
        // Too small a buffer: nothing written.
        XCTAssertEqual(build(frame, capacity: 14 + 28 + orig.count - 1) { p, info, dst, cap in
            ICMP.buildTimeExceeded(original: p, info: info, source: vip, destinationMAC: dmac, sourceMAC: smac, into: dst, capacity: cap)
        }.count, 0)
    }

    func testIPv4FragNeededQuoteLimit() {
        let orig = B.ipv4(src: "203.0.113.5", dst: "10.0.0.100", proto: 17, l4: B.udp(sport: 1, dport: 2, payload: [UInt8](repeating: 0x42, count: 1400)))
        let frame = B.eth(type: 0x0800) + orig
        let f = build(frame) { p, info, dst, cap in
            ICMP.buildTooBig(original: p, info: info, mtu: 1400, source: IPAddress("10.0.0.100")!,
                             destinationMAC: dmac, sourceMAC: smac, into: dst, capacity: cap)
        }
        XCTAssertEqual(f.count, 14 + 576)
        XCTAssertEqual(Int(Ref.be16(f, 16)), 576)
        XCTAssertEqual(f[34], 3)
        XCTAssertEqual(f[35], 4)
        XCTAssertEqual(Ref.be16(f, 38), 0)
        XCTAssertEqual(Ref.be16(f, 40), 1400)
        XCTAssertEqual(Array(f[42...]), Array(orig.prefix(548)))
        XCTAssertEqual(Ref.sum(Array(f[34...])), 0xFFFF)
        XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 14))
        XCTAssertEqual(parse(f).0, .ok)
        // Port unreachable.
        let pu = build(frame) { p, info, dst, cap in
            ICMP.buildPortUnreachable(original: p, info: info, source: IPAddress("10.0.0.100")!,
                                      destinationMAC: dmac, sourceMAC: smac, into: dst, capacity: cap)
        }
        XCTAssertEqual(Array(pu[34..<36]), [3, 3])
        XCTAssertEqual(Ref.sum(Array(pu[34...])), 0xFFFF)
    }

    func testIPv6Errors() {
        let orig = B.ipv6(src: "2001:db8::c", dst: "2001:db8::100", nh: 6, l4: B.tcp(sport: 1, dport: 443, payload: [UInt8](repeating: 1, count: 1400)))
        let frame = B.eth(type: 0x86DD) + orig
        let vip = IPAddress("2001:db8::100")!
        let cases: [(UInt8, UInt8, UInt32)] = [(2, 0, 1280), (3, 0, 0), (1, 4, 0)]
        for (k, (type, code, rest)) in cases.enumerated() {
            let f = build(frame) { p, info, dst, cap in
                switch k {
                case 0: return ICMP.buildTooBig(original: p, info: info, mtu: 1280, source: vip, destinationMAC: dmac, sourceMAC: smac, into: dst, capacity: cap)
                case 1: return ICMP.buildTimeExceeded(original: p, info: info, source: vip, destinationMAC: dmac, sourceMAC: smac, into: dst, capacity: cap)
                default: return ICMP.buildPortUnreachable(original: p, info: info, source: vip, destinationMAC: dmac, sourceMAC: smac, into: dst, capacity: cap)
                }
            }
            XCTAssertEqual(f.count, 14 + 1280)
            XCTAssertEqual(Ref.be16(f, 12), 0x86DD)
            XCTAssertEqual(Ref.be32(f, 14), 0x6000_0000)
            XCTAssertEqual(Int(Ref.be16(f, 18)), 1240)
            XCTAssertEqual(f[20], 58)
            XCTAssertEqual(f[21], 64)
            XCTAssertEqual(Array(f[22..<38]), B.v6("2001:db8::100"))
            XCTAssertEqual(Array(f[38..<54]), B.v6("2001:db8::c"))
            XCTAssertEqual(f[54], type)
            XCTAssertEqual(f[55], code)
            XCTAssertEqual(Ref.be32(f, 58), rest)
            XCTAssertEqual(Array(f[62...]), Array(orig.prefix(1232)))
            let (c, _) = Ref.l4Checksum(f, l3: 14, l4: 54, proto: 58, end: f.count)
            XCTAssertEqual(Ref.be16(f, 56), c)
            XCTAssertEqual(parse(f).0, .ok)
        }
        // Families must match.
        XCTAssertEqual(build(frame) { p, info, dst, cap in
            ICMP.buildTimeExceeded(original: p, info: info, source: IPAddress("1.2.3.4")!, destinationMAC: dmac, sourceMAC: smac, into: dst, capacity: cap)
        }.count, 0)
    }

    func testMayReportError() {
        func may(_ f: [UInt8], tooBig: Bool = false) -> Bool {
            var r = false
            let info = parse(f).1
            withExact(f) { p, _ in r = ICMP.mayReportError(p, info: info, packetTooBig: tooBig) }
            return r
        }
        XCTAssertTrue(may(B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2))))
        XCTAssertTrue(may(B.eth(type: 0x0800) + B.ipv4(proto: 1, l4: B.icmp(type: 8))))
        XCTAssertFalse(may(B.eth(type: 0x0800) + B.ipv4(proto: 1, l4: B.icmp(type: 3, code: 1, payload: [0, 0, 0, 0]))))
        XCTAssertFalse(may(B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: [1, 2, 3, 4, 5, 6, 7, 8], df: false, fragOffset: 8)))
        XCTAssertFalse(may(B.eth(type: 0x0800) + B.ipv4(dst: "224.0.0.5", proto: 17, l4: B.udp(sport: 1, dport: 2))))
        XCTAssertFalse(may(B.eth(type: 0x0800) + B.ipv4(src: "0.0.0.0", proto: 17, l4: B.udp(sport: 1, dport: 2))))
        XCTAssertTrue(may(B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: B.tcp(sport: 1, dport: 2))))
        XCTAssertFalse(may(B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: B.icmp(type: 1))))
        XCTAssertTrue(may(B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: B.icmp(type: 128))))
        XCTAssertFalse(may(B.eth(type: 0x86DD) + B.ipv6(dst: "ff02::1", nh: 17, l4: B.udp(sport: 1, dport: 2))))
        XCTAssertTrue(may(B.eth(type: 0x86DD) + B.ipv6(dst: "ff02::1", nh: 17, l4: B.udp(sport: 1, dport: 2)), tooBig: true))
    }

    // MARK: related errors

    /// An ICMP error frame quoting `quoted` (an IP packet), truncated to `quoteLen`.
    func v4Error(type: UInt8, code: UInt8, src: String, dst: String, quoted: [UInt8], quoteLen: Int? = nil) -> [UInt8] {
        let q = Array(quoted.prefix(quoteLen ?? quoted.count))
        var icmp = B.icmp(type: type, code: code, rest: [0, 0, 0, 0], payload: q)
        Ref.put16(&icmp, 2, Ref.checksum(icmp))
        return B.eth(type: 0x0800) + B.ipv4(src: src, dst: dst, proto: 1, l4: icmp, l4Checksum: false)
    }

    func testRelatedInboundIPv4() {
        // The client's router reports that VIP:80 -> client:5555 could not be delivered.
        let quoted = B.ipv4(src: "10.0.0.100", dst: "203.0.113.5", proto: 6, l4: B.tcp(sport: 80, dport: 5555, payload: [UInt8](repeating: 3, count: 20)))
        for qlen in [28, 48, quoted.count] {
            var f = v4Error(type: 3, code: 4, src: "198.51.100.1", dst: "10.0.0.100", quoted: quoted, quoteLen: qlen)
            var info = parse(f).1
            XCTAssertTrue(ICMP.isRelatedError(info))
            var emb = EmbeddedPacket()
            let rs = IPAddress("192.168.10.2")!
            f = withExact(f) { p, _ in
                XCTAssertTrue(ICMP.parseEmbedded(p, info: info, into: &emb))
                XCTAssertEqual(emb.ipVersion, 4)
                XCTAssertEqual(emb.proto, 6)
                XCTAssertEqual(emb.src, IPAddress("10.0.0.100"))
                XCTAssertEqual(emb.dst, IPAddress("203.0.113.5"))
                XCTAssertTrue(emb.hasPorts)
                XCTAssertEqual(emb.sport, 80)
                XCTAssertEqual(emb.dport, 5555)
                XCTAssertEqual(emb.l3Offset, 14 + 20 + 8)
                XCTAssertTrue(ICMP.rewriteRelatedInbound(p, info: &info, embedded: &emb, server: rs, port: 8080))
            }
            XCTAssertEqual(Array(f[30..<34]), B.v4("192.168.10.2"))  // outer daddr
            XCTAssertEqual(Array(f[26..<30]), B.v4("198.51.100.1"))  // outer saddr unchanged
            XCTAssertEqual(Array(f[42 + 12..<42 + 16]), B.v4("192.168.10.2"))  // embedded saddr
            XCTAssertEqual(Ref.be16(f, 62), 8080)  // embedded sport
            XCTAssertEqual(Ref.be16(f, 64), 5555)
            XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 14))
            XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 42))
            XCTAssertEqual(Ref.sum(Array(f[34...])), 0xFFFF)
            // The embedded TCP checksum is left as it was.
            if qlen >= 40 { XCTAssertEqual(Ref.be16(f, 62 + 16), Ref.be16(quoted, 20 + 16)) }
            XCTAssertEqual(info.dst, rs)
            XCTAssertEqual(emb.src, rs)
            XCTAssertEqual(emb.sport, 8080)
        }
    }

    func testRelatedOutboundIPv4AndIPv6() {
        // RS reports port unreachable for client -> RS:8080.
        let quoted = B.ipv4(src: "203.0.113.5", dst: "192.168.10.2", proto: 17, l4: B.udp(sport: 4444, dport: 8080, payload: [1, 2]))
        var f = v4Error(type: 3, code: 3, src: "192.168.10.2", dst: "203.0.113.5", quoted: quoted)
        var info = parse(f).1
        var emb = EmbeddedPacket()
        let vip = IPAddress("10.0.0.100")!
        f = withExact(f) { p, _ in
            XCTAssertTrue(ICMP.parseEmbedded(p, info: info, into: &emb))
            XCTAssertTrue(ICMP.rewriteRelatedOutbound(p, info: &info, embedded: &emb, vip: vip, port: 53))
        }
        XCTAssertEqual(Array(f[26..<30]), B.v4("10.0.0.100"))
        XCTAssertEqual(Array(f[42 + 16..<42 + 20]), B.v4("10.0.0.100"))
        XCTAssertEqual(Ref.be16(f, 62), 4444)
        XCTAssertEqual(Ref.be16(f, 64), 53)
        XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 14))
        XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 42))
        XCTAssertEqual(Ref.sum(Array(f[34...])), 0xFFFF)

        // IPv6: the quoted packet carries an extension header.
        let q6 = B.ipv6(src: "2001:db8::c", dst: "2001:db8:2::2", nh: 6, l4: B.tcp(sport: 3333, dport: 8443), ext: [(60, B.extBody(units: 1))])
        var icmp = B.icmp(type: 1, code: 4, rest: [0, 0, 0, 0], payload: q6)
        icmp[2] = 0; icmp[3] = 0
        var g = B.eth(type: 0x86DD) + B.ipv6(src: "2001:db8:2::2", dst: "2001:db8::c", nh: 58, l4: icmp)
        var i6 = parse(g).1
        XCTAssertTrue(ICMP.isRelatedError(i6))
        var e6 = EmbeddedPacket()
        let vip6 = IPAddress("2001:db8::100")!
        g = withExact(g) { p, _ in
            XCTAssertTrue(ICMP.parseEmbedded(p, info: i6, into: &e6))
            XCTAssertEqual(e6.ipHeaderLength, 48)
            XCTAssertEqual(e6.proto, 6)
            XCTAssertEqual(e6.dport, 8443)
            XCTAssertTrue(ICMP.rewriteRelatedOutbound(p, info: &i6, embedded: &e6, vip: vip6, port: 443))
        }
        XCTAssertEqual(Array(g[22..<38]), B.v6("2001:db8::100"))
        XCTAssertEqual(Array(g[62 + 24..<62 + 40]), B.v6("2001:db8::100"))
        XCTAssertEqual(Ref.be16(g, 62 + 48 + 2), 443)
        let (c, _) = Ref.l4Checksum(g, l3: 14, l4: 54, proto: 58, end: g.count)
        XCTAssertEqual(Ref.be16(g, 56), c)
        // And inbound for IPv6.
        var i6b = parse(g).1
        var e6b = EmbeddedPacket()
        g = withExact(g) { p, _ in
            XCTAssertTrue(ICMP.parseEmbedded(p, info: i6b, into: &e6b))
            XCTAssertTrue(ICMP.rewriteRelatedInbound(p, info: &i6b, embedded: &e6b, server: IPAddress("2001:db8:9::9")!, port: 7))
        }
        XCTAssertEqual(Array(g[38..<54]), B.v6("2001:db8:9::9"))
        XCTAssertEqual(Array(g[62 + 8..<62 + 24]), B.v6("2001:db8:9::9"))
        XCTAssertEqual(Ref.be16(g, 62 + 48), 7)
        let (c2, _) = Ref.l4Checksum(g, l3: 14, l4: 54, proto: 58, end: g.count)
        XCTAssertEqual(Ref.be16(g, 56), c2)
    }

    func testRelatedRefusals() {
        let quoted = B.ipv4(src: "10.0.0.100", dst: "203.0.113.5", proto: 6, l4: B.tcp(sport: 80, dport: 5555))
        // Echo is not related.
        XCTAssertFalse(ICMP.isRelatedError(parse(B.eth(type: 0x0800) + B.ipv4(proto: 1, l4: B.icmp(type: 8))).1))
        XCTAssertFalse(ICMP.isRelatedError(parse(v4Error(type: 5, code: 0, src: "1.1.1.1", dst: "2.2.2.2", quoted: quoted)).1))
        XCTAssertTrue(ICMP.isRelatedError(parse(v4Error(type: 4, code: 0, src: "1.1.1.1", dst: "2.2.2.2", quoted: quoted)).1))
        XCTAssertTrue(ICMP.isRelatedError(parse(v4Error(type: 11, code: 0, src: "1.1.1.1", dst: "2.2.2.2", quoted: quoted)).1))
        // Quotes cut at every length: parse never reads past the packet and
        // gives ports only with 8 L4 bytes.
        for qlen in 0...quoted.count {
            let f = v4Error(type: 3, code: 1, src: "1.1.1.1", dst: "2.2.2.2", quoted: quoted, quoteLen: qlen)
            let info = parse(f).1
            var emb = EmbeddedPacket()
            var ok = false
            withExact(f) { p, _ in ok = ICMP.parseEmbedded(p, info: info, into: &emb) }
            XCTAssertEqual(ok, qlen >= 20, "qlen \(qlen)")
            XCTAssertEqual(emb.hasPorts, qlen >= 28, "qlen \(qlen)")
        }
        // Quoted non-first fragment: no ports.
        let frag = B.ipv4(src: "10.0.0.100", dst: "203.0.113.5", proto: 6, l4: [UInt8](repeating: 1, count: 8), df: false, fragOffset: 800)
        let ff = v4Error(type: 11, code: 1, src: "1.1.1.1", dst: "2.2.2.2", quoted: frag)
        var emb = EmbeddedPacket()
        let fi = parse(ff).1
        withExact(ff) { p, _ in XCTAssertTrue(ICMP.parseEmbedded(p, info: fi, into: &emb)) }
        XCTAssertTrue(emb.isFragment)
        XCTAssertFalse(emb.hasPorts)
        // IPv6 quote cut at every length.
        let q6 = B.ipv6(nh: 17, l4: B.udp(sport: 1, dport: 2), ext: [(0, B.extBody(units: 1))])
        for qlen in 0...q6.count {
            let icmp = B.icmp(type: 3, code: 0, rest: [0, 0, 0, 0], payload: Array(q6.prefix(qlen)))
            let g = B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: icmp)
            let gi = parse(g).1
            var e = EmbeddedPacket()
            var ok = false
            withExact(g) { p, _ in ok = ICMP.parseEmbedded(p, info: gi, into: &e) }
            XCTAssertEqual(ok, qlen >= 48, "v6 qlen \(qlen)")
            XCTAssertEqual(e.hasPorts, qlen >= 56, "v6 qlen \(qlen)")
        }
    }

    func testRelatedRandomized() {
        var g = SplitMix(seed: 77)
        for _ in 0..<2000 {
            let client = randomV4(&g), vip = randomV4(&g), rs = randomV4(&g)
            let quoted = B.ipv4(src: client.description, dst: rs.description, proto: 17,
                                l4: B.udp(sport: UInt16.random(in: 1...65535, using: &g), dport: UInt16.random(in: 1...65535, using: &g),
                                          payload: randomBytes(Int.random(in: 0...40, using: &g), &g)),
                                ttl: UInt8.random(in: 1...255, using: &g), options: Bool.random(using: &g) ? [] : [1, 1, 1, 0])
            var f = v4Error(type: 3, code: 3, src: rs.description, dst: client.description, quoted: quoted)
            var info = parse(f).1
            var emb = EmbeddedPacket()
            let vport = UInt16.random(in: 0...65535, using: &g)
            f = withExact(f) { p, _ in
                XCTAssertTrue(ICMP.parseEmbedded(p, info: info, into: &emb))
                XCTAssertTrue(ICMP.rewriteRelatedOutbound(p, info: &info, embedded: &emb, vip: vip, port: vport))
            }
            XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 14))
            XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 42))
            XCTAssertEqual(Ref.sum(Array(f[34...])), 0xFFFF)
            XCTAssertEqual(Ref.be16(f, emb.l4Offset + 2), vport)
        }
    }

    func testEchoReply() {
        var f = B.eth(type: 0x0800) + B.ipv4(src: "203.0.113.5", dst: "10.0.0.100", proto: 1, l4: B.icmp(type: 8, payload: [1, 2, 3, 4, 5]), ttl: 5)
        var info = parse(f).1
        f = withExact(f) { p, _ in XCTAssertTrue(ICMP.makeEchoReply(p, info: &info)) }
        XCTAssertEqual(Array(f[0..<12]), B.macA + B.macB)
        XCTAssertEqual(Array(f[26..<30]), B.v4("10.0.0.100"))
        XCTAssertEqual(Array(f[30..<34]), B.v4("203.0.113.5"))
        XCTAssertEqual(f[22], 64)
        XCTAssertEqual(f[34], 0)
        XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 14))
        XCTAssertEqual(Ref.sum(Array(f[34...])), 0xFFFF)
        // Not a request any more.
        var again = parse(f).1
        withExact(f) { p, _ in XCTAssertFalse(ICMP.makeEchoReply(p, info: &again)) }

        var f6 = B.eth(type: 0x86DD) + B.ipv6(src: "2001:db8::c", dst: "2001:db8::100", nh: 58, l4: B.icmp(type: 128, payload: [9, 9, 9]))
        var i6 = parse(f6).1
        f6 = withExact(f6) { p, _ in XCTAssertTrue(ICMP.makeEchoReply(p, info: &i6)) }
        XCTAssertEqual(f6[54], 129)
        XCTAssertEqual(Array(f6[22..<38]), B.v6("2001:db8::100"))
        XCTAssertEqual(f6[21], 64)
        let (c, _) = Ref.l4Checksum(f6, l3: 14, l4: 54, proto: 58, end: f6.count)
        XCTAssertEqual(Ref.be16(f6, 56), c)
    }
}
