import XCTest
@testable import Wire

final class ChecksumTests: XCTestCase {
    func testRFC1071Example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (folded).
        let b: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        b.withUnsafeBytes { r in
            XCTAssertEqual(Checksum.sum(r.baseAddress!, 8), 0xDDF2)
            XCTAssertEqual(Checksum.internet(r.baseAddress!, length: 8), 0x220D)
        }
    }

    func testRFC1624Example() {
        // RFC 1624 §4: m 0x5555 -> 0x3285 with HC 0xDD2F gives 0x0000 (eqn. 3).
        XCTAssertEqual(Checksum.update16(0xDD2F, old: 0x5555, new: 0x3285), 0x0000)
        // The full recomputation: ~(0xCD7A + 0x3285).
        XCTAssertEqual(Checksum.finish(Checksum.add(0xCD7A, 0x3285)), 0x0000)
        XCTAssertEqual(Checksum.finish(Checksum.add(0xCD7A, 0x5555)), 0xDD2F)
    }

    func testKnownIPv4Header() {
        // A classic example header: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
        let h: [UInt8] = [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
                          0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0xC7]
        var out = withExact(h) { p, _ in Checksum.setIPv4Header(p, l3: 0) }
        XCTAssertEqual(Ref.be16(out, 10), 0xB861)
        withExact(out) { p, _ in XCTAssertTrue(Checksum.verifyIPv4Header(p, l3: 0)) }
        out[3] ^= 1
        withExact(out) { p, _ in XCTAssertFalse(Checksum.verifyIPv4Header(p, l3: 0)) }
    }

    func testSumMatchesReferenceAllLengthsAndAlignments() {
        var g = SplitMix(seed: 7)
        for len in 0..<300 {
            for shift in 0..<3 {
                let data = randomBytes(len + shift, &g)
                let seg = Array(data[shift...])
                let initial = UInt32.random(in: 0...0xFFFF, using: &g)
                withExact(data) { p, _ in
                    XCTAssertEqual(Checksum.sum(p + shift, len, initial), Ref.sum(seg, initial), "len \(len) shift \(shift)")
                }
            }
        }
        // All-ones data exercises the carries.
        let ones = [UInt8](repeating: 0xFF, count: 4097)
        withExact(ones) { p, n in XCTAssertEqual(Checksum.sum(p, n), Ref.sum(ones)) }
    }

    func testIncrementalMatchesRecompute() {
        var g = SplitMix(seed: 99)
        for _ in 0..<5000 {
            let len = 2 * Int.random(in: 4...40, using: &g)
            var data = randomBytes(len, &g)
            data[0] = 0; data[1] = 0
            Ref.put16(&data, 0, Ref.checksum(data))
            let c0 = Ref.be16(data, 0)
            // 16-bit field change.
            let at16 = 2 * Int.random(in: 1..<(len / 2), using: &g)
            let old16 = Ref.be16(data, at16), new16 = UInt16.random(in: 0...0xFFFF, using: &g)
            var d2 = data; Ref.put16(&d2, at16, new16)
            let c1 = Checksum.update16(c0, old: old16, new: new16)
            Ref.put16(&d2, 0, c1)
            XCTAssertEqual(Ref.sum(d2), 0xFFFF)
            // 32-bit change.
            let at32 = 2 * Int.random(in: 1..<(len / 2 - 1), using: &g)
            let old32 = Ref.be32(d2, at32), new32 = UInt32.random(in: 0...UInt32.max, using: &g)
            Ref.put32(&d2, at32, new32)
            let c2 = Checksum.update32(c1, old: old32, new: new32)
            Ref.put16(&d2, 0, c2)
            XCTAssertEqual(Ref.sum(d2), 0xFFFF)
            // 128-bit change.
            if len >= 20 {
                let at = 2 * Int.random(in: 1...(len / 2 - 8), using: &g)
                let oldA = IPAddress(v6: d2.withUnsafeBytes { UnsafeRawPointer($0.baseAddress! + at) })
                let newA = randomV6(&g)
                let nb = addrBytes(newA)
                for k in 0..<16 { d2[at + k] = nb[k] }
                let c3 = Checksum.updateAddress(c2, old: oldA, new: newA)
                Ref.put16(&d2, 0, c3)
                XCTAssertEqual(Ref.sum(d2), 0xFFFF)
                // Same result as recomputing, up to the two zeros of one's complement.
                var z = d2; z[0] = 0; z[1] = 0
                let full = Ref.checksum(z)
                XCTAssertTrue(full == c3 || (full == 0 && c3 == 0xFFFF) || (full == 0xFFFF && c3 == 0))
            }
        }
    }

    func testPseudoHeader() {
        let s = IPAddress("10.1.2.3")!, d = IPAddress("172.16.0.9")!
        let ref = Ref.sum(Ref.pseudo(src: addrBytes(s), dst: addrBytes(d), proto: 6, length: 1234))
        XCTAssertEqual(Checksum.pseudoHeader(source: s, destination: d, proto: 6, length: 1234), ref)
        let s6 = IPAddress("2001:db8::dead:beef")!, d6 = IPAddress("fe80::1")!
        let ref6 = Ref.sum(Ref.pseudo(src: addrBytes(s6), dst: addrBytes(d6), proto: 58, length: 70000))
        XCTAssertEqual(Checksum.pseudoHeader(source: s6, destination: d6, proto: 58, length: 70000), ref6)
    }

    func testL4ComputeAndVerify() {
        let frames = [
            B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2, payload: [1, 2, 3])),
            B.eth(type: 0x0800) + B.ipv4(proto: 17, l4: B.udp(sport: 1, dport: 2, payload: [1, 2, 3, 4, 5])),
            B.eth(type: 0x0800) + B.ipv4(proto: 1, l4: B.icmp(type: 8, payload: [7])),
            B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: B.tcp(sport: 1, dport: 2, payload: [9])),
            B.eth(type: 0x86DD) + B.ipv6(nh: 17, l4: B.udp(sport: 1, dport: 2), ext: [(0, B.extBody(units: 1))]),
            B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: B.icmp(type: 128, payload: [1, 2, 3])),
        ]
        for f in frames {
            let (r, info) = parse(f)
            XCTAssertEqual(r, .ok)
            withExact(f) { p, _ in
                XCTAssertEqual(Checksum.verifyL4(p, info), true)
                let field = info.l4Offset + Checksum.l4ChecksumField(proto: info.l4Proto, isV6: info.ipVersion == 6)
                let stored = rd16(p, field)
                XCTAssertEqual(Checksum.computeL4(p, info), stored)
                p.storeBytes(of: UInt8(0x55), toByteOffset: field, as: UInt8.self)
                XCTAssertEqual(Checksum.verifyL4(p, info), false)
                XCTAssertTrue(Checksum.setL4(p, info))
                XCTAssertEqual(Checksum.verifyL4(p, info), true)
            }
        }
        // UDP over IPv4 with checksum 0 means none.
        var f = B.eth(type: 0x0800) + B.ipv4(proto: 17, l4: B.udp(sport: 1, dport: 2, payload: [1]))
        f[14 + 20 + 6] = 0; f[14 + 20 + 7] = 0
        let (_, info) = parse(f)
        withExact(f) { p, _ in XCTAssertEqual(Checksum.verifyL4(p, info), true) }
    }

    func testSCTPCRC32c() {
        // CRC32c check value of "123456789" is 0xE3069283; 32 zero bytes give 0x8A9136AA.
        let s = Array("123456789".utf8)
        s.withUnsafeBytes { XCTAssertEqual(SCTP.crc32c($0.baseAddress!, length: 9), 0xE306_9283) }
        let z = [UInt8](repeating: 0, count: 32)
        z.withUnsafeBytes { XCTAssertEqual(SCTP.crc32c($0.baseAddress!, length: 32), 0x8A91_36AA) }
        let pkt = B.sctp(sport: 1, dport: 2, payload: [0, 1, 2, 3, 4, 5, 6, 7])
        let out = withExact(pkt) { p, n in
            SCTP.setChecksum(p, length: n)
            XCTAssertTrue(SCTP.verify(p, length: n))
        }
        // Stored least significant byte first.
        var zeroed = out; for k in 8..<12 { zeroed[k] = 0 }
        let crc = zeroed.withUnsafeBytes { SCTP.crc32c($0.baseAddress!, length: zeroed.count) }
        XCTAssertEqual(out[8], UInt8(crc & 0xFF))
        XCTAssertEqual(out[11], UInt8(crc >> 24))
    }
}
