import XCTest
@testable import Wire

final class RewriteTests: XCTestCase {
    /// Checks every checksum of an unfragmented (or first-fragment) frame
    /// against a from-scratch recomputation.
    func assertChecksumsValid(_ f: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        let (r, info) = parse(f)
        XCTAssertEqual(r, .ok, file: file, line: line)
        if info.ipVersion == 4 { XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: info.l3Offset), "ip header", file: file, line: line) }
        guard info.hasL4Header, !info.isFragment else { return }
        let proto = info.l4Proto
        guard proto == 6 || proto == 17 || proto == 58 || (proto == 1 && info.ipVersion == 4) else { return }
        let (c, field) = Ref.l4Checksum(f, l3: info.l3Offset, l4: info.l4Offset, proto: proto, end: info.ipEnd)
        let stored = Ref.be16(f, field)
        XCTAssertTrue(stored == c || (stored == 0xFFFF && c == 0) || (stored == 0 && c == 0xFFFF),
                      "l4 checksum \(String(stored, radix: 16)) expected \(String(c, radix: 16))", file: file, line: line)
    }

    func randomFrame(_ g: inout SplitMix, v6: Bool, proto: UInt8) -> [UInt8] {
        let payload = randomBytes(Int.random(in: 0...64, using: &g), &g)
        let sp = UInt16.random(in: 1...65535, using: &g), dp = UInt16.random(in: 1...65535, using: &g)
        let l4 = proto == 6 ? B.tcp(sport: sp, dport: dp, payload: payload) : B.udp(sport: sp, dport: dp, payload: payload)
        let vlans: [UInt16] = Bool.random(using: &g) ? [] : [UInt16.random(in: 0...4095, using: &g)]
        if v6 {
            return B.eth(type: 0x86DD, vlans: vlans) + B.ipv6(src: randomV6(&g).description, dst: randomV6(&g).description, nh: proto, l4: l4,
                                                             ext: Bool.random(using: &g) ? [] : [(UInt8(60), B.extBody(units: 1))])
        }
        let opts: [UInt8] = Bool.random(using: &g) ? [] : [0x94, 4, 0, 0]
        return B.eth(type: 0x0800, vlans: vlans) + B.ipv4(src: randomV4(&g).description, dst: randomV4(&g).description,
                                                          proto: proto, l4: l4, ttl: UInt8.random(in: 2...255, using: &g), options: opts)
    }

    func testNATRandomized() {
        var g = SplitMix(seed: 2024)
        for iter in 0..<4000 {
            let v6 = iter % 2 == 1
            let proto: UInt8 = (iter / 2) % 2 == 0 ? 6 : 17
            var f = randomFrame(&g, v6: v6, proto: proto)
            let (_, info0) = parse(f)
            let addr = v6 ? randomV6(&g) : randomV4(&g)
            let port = UInt16.random(in: 0...65535, using: &g)
            let inbound = Bool.random(using: &g)
            var info = info0
            f = withExact(f) { p, _ in
                let ok = inbound ? NAT.rewriteDestination(p, info: &info, address: addr, port: port)
                    : NAT.rewriteSource(p, info: &info, address: addr, port: port)
                XCTAssertTrue(ok)
            }
            assertChecksumsValid(f)
            let (_, after) = parse(f)
            if inbound {
                XCTAssertEqual(after.dst, addr); XCTAssertEqual(after.dport, port)
                XCTAssertEqual(after.src, info0.src); XCTAssertEqual(after.sport, info0.sport)
                XCTAssertEqual(info.dst, addr); XCTAssertEqual(info.dport, port)
            } else {
                XCTAssertEqual(after.src, addr); XCTAssertEqual(after.sport, port)
                XCTAssertEqual(after.dst, info0.dst); XCTAssertEqual(after.dport, info0.dport)
                XCTAssertEqual(info.src, addr); XCTAssertEqual(info.sport, port)
            }
            if proto == 17 { XCTAssertNotEqual(Ref.be16(f, after.l4Offset + 6), 0) }
        }
    }

    func testNATFamilyMismatch() {
        var f = B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2))
        var (_, info) = parse(f)
        let before = f
        f = withExact(f) { p, _ in
            XCTAssertFalse(NAT.rewriteDestination(p, info: &info, address: IPAddress("::1")!, port: 5))
        }
        XCTAssertEqual(f, before)
    }

    func testUDPZeroChecksumGetsFullChecksum() {
        var g = SplitMix(seed: 5)
        for _ in 0..<500 {
            var f = B.eth(type: 0x0800) + B.ipv4(src: randomV4(&g).description, proto: 17,
                                                 l4: B.udp(sport: 1000, dport: 53, payload: randomBytes(Int.random(in: 0...30, using: &g), &g)))
            f[14 + 26] = 0; f[14 + 27] = 0
            var (_, info) = parse(f)
            let vip = randomV4(&g)
            f = withExact(f) { p, _ in NAT.rewriteDestination(p, info: &info, address: vip, port: 5353) }
            XCTAssertNotEqual(Ref.be16(f, 14 + 26), 0)
            assertChecksumsValid(f)
        }
        // IPv6 UDP with a zero checksum is repaired as well.
        var f6 = B.eth(type: 0x86DD) + B.ipv6(nh: 17, l4: B.udp(sport: 1, dport: 2, payload: [1, 2, 3]))
        f6[54 + 6] = 0; f6[54 + 7] = 0
        var (_, i6) = parse(f6)
        f6 = withExact(f6) { p, _ in NAT.rewriteSource(p, info: &i6, address: IPAddress("2001:db8::99")!, port: 80) }
        assertChecksumsValid(f6)
    }

    func testNATFragments() {
        // First fragment: ports and L4 checksum updated incrementally (the
        // checksum covers the whole datagram, so check it on reassembly:
        // here against the unfragmented datagram rewritten the same way).
        let udp = B.udp(sport: 4000, dport: 53, payload: [UInt8](repeating: 7, count: 40))
        let whole = B.eth(type: 0x0800) + B.ipv4(proto: 17, l4: udp, df: false)
        let csum = Ref.be16(whole, 14 + 26)
        var firstL4 = Array(udp.prefix(24)); Ref.put16(&firstL4, 6, csum)
        var first = B.eth(type: 0x0800) + B.ipv4(proto: 17, l4: firstL4, df: false, mf: true)
        var (_, fi) = parse(first)
        XCTAssertTrue(fi.isFragment && fi.hasL4Header)
        let rs = IPAddress("10.9.9.9")!
        first = withExact(first) { p, _ in NAT.rewriteDestination(p, info: &fi, address: rs, port: 5353) }
        var wi = parse(whole).1
        let wholeNAT = withExact(whole) { p, _ in NAT.rewriteDestination(p, info: &wi, address: rs, port: 5353) }
        XCTAssertEqual(Ref.be16(first, 14 + 26), Ref.be16(wholeNAT, 14 + 26))
        XCTAssertEqual(Ref.be16(first, 14 + 22), 5353)
        XCTAssertTrue(Ref.ipv4HeaderOK(first, l3: 14))
        // Later fragment: only the address.
        let data = [UInt8](repeating: 0xAB, count: 16)
        var later = B.eth(type: 0x0800) + B.ipv4(proto: 17, l4: data, df: false, fragOffset: 24)
        var (_, li) = parse(later)
        later = withExact(later) { p, _ in NAT.rewriteDestination(p, info: &li, address: rs, port: 5353) }
        XCTAssertEqual(Array(later[34...]), data)
        XCTAssertEqual(parse(later).1.dst, rs)
        XCTAssertTrue(Ref.ipv4HeaderOK(later, l3: 14))
        // IPv6 later fragment.
        var l6 = B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: data, ext: [(44, B.fragBody(offset: 64, mf: false))])
        var i6 = parse(l6).1
        let rs6 = IPAddress("2001:db8::5")!
        l6 = withExact(l6) { p, _ in NAT.rewriteDestination(p, info: &i6, address: rs6, port: 1) }
        XCTAssertEqual(Array(l6[(14 + 48)...]), data)
        XCTAssertEqual(parse(l6).1.dst, rs6)
    }

    func testNATSCTP() {
        var f = B.eth(type: 0x0800) + B.ipv4(proto: 132, l4: B.sctp(sport: 1, dport: 2, payload: [1, 2, 3, 4]))
        var info = parse(f).1
        f = withExact(f) { p, n in
            SCTP.setChecksum(p + info.l4Offset, length: info.ipEnd - info.l4Offset)
            NAT.rewriteDestination(p, info: &info, address: IPAddress("1.2.3.4")!, port: 99)
            XCTAssertTrue(SCTP.verify(p + info.l4Offset, length: info.ipEnd - info.l4Offset))
        }
        XCTAssertEqual(parse(f).1.dport, 99)
        XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 14))
    }

    func testNATICMPv6ChecksumFollowsAddress() {
        var f = B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: B.icmp(type: 128, payload: [1, 2, 3]))
        var info = parse(f).1
        f = withExact(f) { p, _ in NAT.rewriteDestination(p, info: &info, address: IPAddress("2001:db8::77")!, port: 0) }
        assertChecksumsValid(f)
    }

    func testTTLDecrement() {
        var g = SplitMix(seed: 11)
        for _ in 0..<2000 {
            let ttl = UInt8.random(in: 0...255, using: &g)
            let v6 = Bool.random(using: &g)
            var f = v6 ? B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: B.tcp(sport: 1, dport: 2), hop: ttl)
                : B.eth(type: 0x0800) + B.ipv4(src: randomV4(&g).description, proto: 6, l4: B.tcp(sport: 1, dport: 2), ttl: ttl,
                                                tos: UInt8.random(in: 0...255, using: &g))
            let before = f
            var info = parse(f).1
            var ok = false
            f = withExact(f) { p, _ in ok = IPHeader.decrementTTL(p, info: &info) }
            if ttl <= 1 {
                XCTAssertFalse(ok)
                XCTAssertEqual(f, before)
            } else {
                XCTAssertTrue(ok)
                XCTAssertEqual(info.ttl, ttl - 1)
                XCTAssertEqual(f[v6 ? 21 : 22], ttl - 1)
                if !v6 { XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: 14)) }
                assertChecksumsValid(f)
            }
        }
    }

    func testMACs() {
        XCTAssertEqual(MACAddress("02:00:00:00:01:01")?.value, 0x0200_0000_0101)
        XCTAssertEqual(MACAddress("aa:BB:cc:dd:ee:ff")?.description, "aa:bb:cc:dd:ee:ff")
        XCTAssertEqual(MACAddress("a-b-c-d-e-f")?.value, 0x0A0B_0C0D_0E0F)
        for bad in ["", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aaa:bb:cc:dd:ee:ff", "gg:bb:cc:dd:ee:ff", "aa::cc:dd:ee:ff", "aa:bb:cc:dd:ee:"] {
            XCTAssertNil(MACAddress(bad), bad)
        }
        XCTAssertTrue(MACAddress.broadcast.isMulticast)
        XCTAssertFalse(MACAddress("02:00:00:00:00:01")!.isMulticast)
        XCTAssertEqual(MACAddress.ipv6Multicast(IPAddress("ff02::1:ff12:3456")!).description, "33:33:ff:12:34:56")
        var f = B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2))
        let d = MACAddress("11:22:33:44:55:66")!, s = MACAddress("aa:bb:cc:dd:ee:ff")!
        f = withExact(f) { p, _ in
            Ethernet.setAddresses(p, destination: d, source: s)
            XCTAssertEqual(Ethernet.destination(p), d)
            XCTAssertEqual(Ethernet.source(p), s)
        }
        XCTAssertEqual(Array(f[0..<12]), [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF])
        f = withExact(f) { p, _ in Ethernet.swapAddresses(p) }
        XCTAssertEqual(Array(f[0..<12]), [0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66])
    }

    func testMTUVerdict() {
        var info = parse(B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2, payload: [UInt8](repeating: 0, count: 100)), df: true)).1
        XCTAssertEqual(MTU.check(info, mtu: 1500), .fits)
        XCTAssertEqual(MTU.check(info, mtu: 100), .tooBig)
        info.dfSet = false
        XCTAssertEqual(MTU.check(info, mtu: 100), .fragment)
        let i6 = parse(B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: B.tcp(sport: 1, dport: 2, payload: [UInt8](repeating: 0, count: 100)))).1
        XCTAssertEqual(MTU.check(i6, mtu: 140), .tooBig)
        XCTAssertEqual(MTU.check(i6, mtu: 160), .fits)
        XCTAssertEqual(MTU.fromMaxFrameLength(1518), 1500)
    }
}
