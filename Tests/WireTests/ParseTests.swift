import XCTest
@testable import Wire

final class ParseTests: XCTestCase {
    func testIPv4TCP() {
        let f = B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 40000, dport: 80, flags: 0x02, payload: [1, 2, 3]), ttl: 63, tos: 0xB9)
        let (r, i) = parse(f)
        XCTAssertEqual(r, .ok)
        XCTAssertEqual(i.l3Offset, 14)
        XCTAssertEqual(i.etherType, 0x0800)
        XCTAssertFalse(i.hasVLAN)
        XCTAssertEqual(i.ipVersion, 4)
        XCTAssertEqual(i.ipHeaderLength, 20)
        XCTAssertEqual(i.ipTotalLength, 43)
        XCTAssertEqual(i.l4Proto, 6)
        XCTAssertEqual(i.l4Offset, 34)
        XCTAssertEqual(i.sport, 40000)
        XCTAssertEqual(i.dport, 80)
        XCTAssertEqual(i.tcpFlags, 0x02)
        XCTAssertEqual(i.ttl, 63)
        XCTAssertEqual(i.tos, 0xB9)
        XCTAssertTrue(i.dfSet)
        XCTAssertFalse(i.isFragment)
        XCTAssertTrue(i.hasL4Header)
        XCTAssertTrue(i.hasPorts)
        XCTAssertEqual(i.src, IPAddress("10.0.0.1"))
        XCTAssertEqual(i.dst, IPAddress("192.168.1.10"))
        XCTAssertEqual(i.fragmentID, 0x1234)
    }

    func testIPv4UDPWithPaddingAndOptions() {
        let opts: [UInt8] = [0x94, 4, 0, 0, 1, 1, 1, 0]  // router alert, 2 NOPs, EOL
        let pkt = B.ipv4(proto: 17, l4: B.udp(sport: 53, dport: 5353, payload: [9]), df: false, options: opts)
        let f = B.eth(type: 0x0800) + pkt + [UInt8](repeating: 0, count: 60 - 14 - pkt.count)
        XCTAssertEqual(f.count, 60)
        let (r, i) = parse(f)
        XCTAssertEqual(r, .ok)
        XCTAssertEqual(i.ipHeaderLength, 28)
        XCTAssertEqual(i.ipTotalLength, 28 + 9)
        XCTAssertEqual(i.l4Offset, 14 + 28)
        XCTAssertEqual(i.sport, 53)
        XCTAssertEqual(i.dport, 5353)
        XCTAssertFalse(i.dfSet)
        XCTAssertEqual(i.ipEnd, 14 + 37)
    }

    func testICMP() {
        let f = B.eth(type: 0x0800) + B.ipv4(proto: 1, l4: B.icmp(type: 8, payload: [1, 2, 3, 4]))
        let (r, i) = parse(f)
        XCTAssertEqual(r, .ok)
        XCTAssertEqual(i.icmpType, 8)
        XCTAssertEqual(i.icmpCode, 0)
        XCTAssertFalse(i.hasPorts)
        let f6 = B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: B.icmp(type: 128, payload: [5]))
        let (r6, i6) = parse(f6)
        XCTAssertEqual(r6, .ok)
        XCTAssertEqual(i6.icmpType, 128)
        XCTAssertEqual(i6.l4Proto, 58)
    }

    func testSCTP() {
        let f = B.eth(type: 0x0800) + B.ipv4(proto: 132, l4: B.sctp(sport: 5000, dport: 6000))
        let (r, i) = parse(f)
        XCTAssertEqual(r, .ok)
        XCTAssertEqual(i.sport, 5000)
        XCTAssertEqual(i.dport, 6000)
        XCTAssertTrue(i.hasPorts)
    }

    func testVLANs() {
        let l4 = B.tcp(sport: 1, dport: 2)
        let f1 = B.eth(type: 0x0800, vlans: [0x2064]) + B.ipv4(proto: 6, l4: l4)
        let (r1, i1) = parse(f1)
        XCTAssertEqual(r1, .ok)
        XCTAssertEqual(i1.l3Offset, 18)
        XCTAssertEqual(i1.vlanCount, 1)
        XCTAssertTrue(i1.hasVLAN)
        XCTAssertEqual(i1.vlanTCI, 0x2064)
        XCTAssertEqual(i1.etherType, 0x0800)
        let f2 = B.eth(type: 0x86DD, vlans: [0x0010, 0x0020]) + B.ipv6(nh: 6, l4: l4)
        let (r2, i2) = parse(f2)
        XCTAssertEqual(r2, .ok)
        XCTAssertEqual(i2.l3Offset, 22)
        XCTAssertEqual(i2.vlanCount, 2)
        XCTAssertEqual(i2.vlanTCI, 0x0010)
        XCTAssertEqual(i2.innerVLANTCI, 0x0020)
        XCTAssertEqual(i2.l4Offset, 22 + 40)
        // A third tag is not walked: the frame is not IP.
        let f3 = B.eth(type: 0x0800, vlans: [1, 2, 3], tpids: [0x88A8, 0x8100, 0x8100]) + B.ipv4(proto: 6, l4: l4)
        let (r3, i3) = parse(f3)
        XCTAssertEqual(r3, .notIP)
        XCTAssertEqual(i3.etherType, 0x8100)
        XCTAssertEqual(i3.l3Offset, 22)
    }

    func testIPv6ExtensionHeaders() {
        let l4 = B.udp(sport: 1000, dport: 2000, payload: [1, 2, 3, 4, 5])
        let ext: [(UInt8, [UInt8])] = [(0, B.extBody(units: 1)), (60, B.extBody(units: 2)), (43, B.extBody(units: 1)),
                                       (51, B.ahBody(words: 4)), (60, B.extBody(units: 1))]
        let f = B.eth(type: 0x86DD) + B.ipv6(nh: 17, l4: l4, hop: 5, tc: 0xA3, ext: ext)
        let (r, i) = parse(f)
        XCTAssertEqual(r, .ok)
        let extLen = 8 + 16 + 8 + 24 + 8
        XCTAssertEqual(i.ipHeaderLength, 40 + extLen)
        XCTAssertEqual(i.ipTotalLength, 40 + extLen + l4.count)
        XCTAssertEqual(i.l4Proto, 17)
        XCTAssertEqual(i.l4Offset, 14 + 40 + extLen)
        XCTAssertEqual(i.sport, 1000)
        XCTAssertEqual(i.dport, 2000)
        XCTAssertEqual(i.ttl, 5)
        XCTAssertEqual(i.hopLimit, 5)
        XCTAssertEqual(i.tos, 0xA3)
        XCTAssertFalse(i.isFragment)
        XCTAssertEqual(i.src, IPAddress("2001:db8::1"))
        XCTAssertEqual(i.dst, IPAddress("2001:db8:1::10"))
        XCTAssertEqual(Checksum.verifyL4(withExact(f) { _, _ in }, i), true)
    }

    func testTooManyExtensionHeaders() {
        let ext = (0..<9).map { _ in (UInt8(60), B.extBody(units: 1)) }
        let (r, _) = parse(B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: B.tcp(sport: 1, dport: 2), ext: ext))
        XCTAssertEqual(r, .tooManyExtensionHeaders)
        let ext8 = (0..<8).map { _ in (UInt8(60), B.extBody(units: 1)) }
        XCTAssertEqual(parse(B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: B.tcp(sport: 1, dport: 2), ext: ext8)).0, .ok)
    }

    func testIPv6Fragments() {
        let l4 = B.tcp(sport: 7, dport: 8, payload: [UInt8](repeating: 1, count: 16))
        let first = B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: l4, ext: [(44, B.fragBody(offset: 0, mf: true, id: 77))])
        let (r1, i1) = parse(first)
        XCTAssertEqual(r1, .ok)
        XCTAssertTrue(i1.isFragment)
        XCTAssertTrue(i1.moreFragments)
        XCTAssertTrue(i1.hasL4Header)
        XCTAssertEqual(i1.sport, 7)
        XCTAssertEqual(i1.fragmentID, 77)
        XCTAssertEqual(i1.fragmentHeaderOffset, 54)
        XCTAssertEqual(i1.ipHeaderLength, 48)
        let later = B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: [1, 2, 3, 4, 5, 6, 7, 8], ext: [(0, B.extBody(units: 1)), (44, B.fragBody(offset: 1448, mf: false))])
        let (r2, i2) = parse(later)
        XCTAssertEqual(r2, .ok)
        XCTAssertTrue(i2.isFragment)
        XCTAssertFalse(i2.moreFragments)
        XCTAssertEqual(i2.fragmentOffset, 1448)
        XCTAssertFalse(i2.hasL4Header)
        XCTAssertFalse(i2.hasPorts)
        XCTAssertEqual(i2.l4Proto, 6)
        XCTAssertEqual(i2.l4Offset, 14 + 40 + 16)
        XCTAssertEqual(i2.ipHeaderLength, 56)
        // An atomic fragment (offset 0, no MF) is not a fragment.
        let atomic = B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: l4, ext: [(44, B.fragBody(offset: 0, mf: false))])
        let (r3, i3) = parse(atomic)
        XCTAssertEqual(r3, .ok)
        XCTAssertFalse(i3.isFragment)
        XCTAssertTrue(i3.hasPorts)
    }

    func testIPv4Fragments() {
        let first = B.eth(type: 0x0800) + B.ipv4(proto: 17, l4: B.udp(sport: 1, dport: 2, payload: [UInt8](repeating: 0, count: 100)).prefix(48).map { $0 }, df: false, mf: true)
        // UDP length (108) exceeds this first fragment: allowed for a fragment.
        let (r1, i1) = parse(first)
        XCTAssertEqual(r1, .ok)
        XCTAssertTrue(i1.isFragment)
        XCTAssertTrue(i1.moreFragments)
        XCTAssertEqual(i1.fragmentOffset, 0)
        XCTAssertTrue(i1.hasL4Header)
        XCTAssertEqual(i1.dport, 2)
        let later = B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: [UInt8](repeating: 0xEE, count: 5), df: false, mf: false, fragOffset: 1480)
        let (r2, i2) = parse(later)
        XCTAssertEqual(r2, .ok)
        XCTAssertTrue(i2.isFragment)
        XCTAssertFalse(i2.hasL4Header)
        XCTAssertEqual(i2.fragmentOffset, 1480)
        XCTAssertEqual(i2.sport, 0)
        XCTAssertEqual(i2.l4Offset, 34)
        // Ping of death: offset + length past 65535.
        let pod = B.eth(type: 0x0800) + B.ipv4(proto: 1, l4: [UInt8](repeating: 0, count: 200), df: false, fragOffset: 65528)
        XCTAssertEqual(parse(pod).0, .badIPv4Fragment)
    }

    func testARPAndOthers() {
        let (r, i) = parse(B.arp(op: 1))
        XCTAssertEqual(r, .notIP)
        XCTAssertTrue(i.isARP)
        XCTAssertEqual(i.arpOp, 1)
        XCTAssertEqual(i.ipVersion, 0)
        XCTAssertFalse(r.isMalformed)
        let lldp = B.eth(type: 0x88CC) + [1, 2, 3]
        let (r2, i2) = parse(lldp)
        XCTAssertEqual(r2, .notIP)
        XCTAssertEqual(i2.etherType, 0x88CC)
        XCTAssertFalse(i2.isARP)
        XCTAssertEqual(parse(Array(B.arp().prefix(20))).0, .truncatedARP)
    }

    func testMalformed() {
        let tcp = B.tcp(sport: 1, dport: 2, payload: [1, 2, 3, 4])
        var f = B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: tcp)
        // Bad IHL (< 5).
        var g = f; g[14] = 0x44
        XCTAssertEqual(parse(g).0, .badIHL)
        // IHL past the frame.
        g = Array(f.prefix(14 + 24)); g[14] = 0x4F
        XCTAssertEqual(parse(g).0, .truncatedIPv4)
        // Bad version.
        g = f; g[14] = 0x65
        XCTAssertEqual(parse(g).0, .badIPv4Version)
        // Total length past the buffer, and below the header length.
        g = f; Ref.put16(&g, 16, UInt16(f.count - 14 + 1))
        XCTAssertEqual(parse(g).0, .badIPv4TotalLength)
        g = f; Ref.put16(&g, 16, 19)
        XCTAssertEqual(parse(g).0, .badIPv4TotalLength)
        // TCP data offset past the end, and below 5.
        g = f; g[14 + 20 + 12] = 0x70
        XCTAssertEqual(parse(g).0, .badTCPDataOffset)
        g = f; g[14 + 20 + 12] = 0x40
        XCTAssertEqual(parse(g).0, .badTCPDataOffset)
        // Total length cutting the TCP header.
        g = f; Ref.put16(&g, 16, 20 + 19)
        XCTAssertEqual(parse(g).0, .truncatedTCP)
        // UDP zero length, short length, length past the packet.
        f = B.eth(type: 0x0800) + B.ipv4(proto: 17, l4: B.udp(sport: 1, dport: 2, payload: [1, 2]))
        XCTAssertEqual(parse(f).0, .ok)
        for bad: UInt16 in [0, 7, 11] {
            g = f; Ref.put16(&g, 14 + 20 + 4, bad)
            XCTAssertEqual(parse(g).0, .badUDPLength, "ulen \(bad)")
        }
        g = f; Ref.put16(&g, 14 + 20 + 4, 8)  // shorter than the IP payload: fine
        XCTAssertEqual(parse(g).0, .ok)
        // IPv6: payload length 0, past the frame, bad version.
        let v6 = B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: tcp)
        g = v6; Ref.put16(&g, 18, 0)
        XCTAssertEqual(parse(g).0, .badIPv6PayloadLength)
        g = v6; Ref.put16(&g, 18, UInt16(tcp.count + 1))
        XCTAssertEqual(parse(g).0, .badIPv6PayloadLength)
        g = v6; g[14] = 0x40
        XCTAssertEqual(parse(g).0, .badIPv6Version)
        // Extension header whose length runs past the payload.
        let e = B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: tcp, ext: [(60, B.extBody(units: 1))])
        g = e; g[54 + 1] = 5
        XCTAssertEqual(parse(g).0, .truncatedExtensionHeader)
        // ICMP shorter than 8 bytes.
        let ic = B.eth(type: 0x0800) + B.ipv4(proto: 1, l4: [8, 0, 0, 0, 0, 0], l4Checksum: false)
        XCTAssertEqual(parse(ic).0, .truncatedICMP)
        let ic6 = B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: [128, 0, 0, 0], l4Checksum: false)
        XCTAssertEqual(parse(ic6).0, .truncatedICMPv6)
        // Empty IPv6 payload with no next header is valid.
        XCTAssertEqual(parse(B.eth(type: 0x86DD) + B.ipv6(nh: 59, l4: [])).0, .ok)
    }

    func testResultNamesAndCount() {
        XCTAssertEqual(ParseResult.count, ParseResult.allCases.count)
        var names = Set<String>()
        for r in ParseResult.allCases {
            XCTAssertLessThan(Int(r.rawValue), ParseResult.count)
            names.insert(r.name.description)
            XCTAssertEqual(r.isMalformed, r != .ok && r != .notIP)
        }
        XCTAssertEqual(names.count, ParseResult.count)
    }

    /// Frames of every kind, each cut at every length: a cut frame is
    /// malformed unless the cut falls in Ethernet padding; parsing never
    /// touches bytes past the cut (exact allocations; run under ASan).
    func testTruncationAtEveryOffset() {
        let payload: [UInt8] = [UInt8](repeating: 0x5A, count: 11)
        var frames: [[UInt8]] = []
        frames.append(B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2, payload: payload, options: [2, 4, 5, 0xB4])))
        frames.append(B.eth(type: 0x0800, vlans: [5]) + B.ipv4(proto: 17, l4: B.udp(sport: 1, dport: 2, payload: payload), options: [1, 1, 1, 0]))
        frames.append(B.eth(type: 0x0800, vlans: [5, 6]) + B.ipv4(proto: 1, l4: B.icmp(type: 8, payload: payload)))
        frames.append(B.eth(type: 0x0800) + B.ipv4(proto: 132, l4: B.sctp(sport: 1, dport: 2)))
        frames.append(B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: B.tcp(sport: 1, dport: 2, payload: payload)))
        frames.append(B.eth(type: 0x86DD, vlans: [9]) + B.ipv6(nh: 17, l4: B.udp(sport: 1, dport: 2, payload: payload),
                                                               ext: [(0, B.extBody(units: 1)), (43, B.extBody(units: 2)), (51, B.ahBody(words: 1)), (44, B.fragBody(offset: 0, mf: false))]))
        frames.append(B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: B.icmp(type: 128, payload: payload)))
        frames.append(B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: payload, ext: [(44, B.fragBody(offset: 8, mf: true))]))
        frames.append(B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: payload, df: false, fragOffset: 16))
        for (k, full) in frames.enumerated() {
            let (r, info) = parse(full)
            XCTAssertEqual(r, .ok, "frame \(k)")
            let end = info.ipEnd
            XCTAssertEqual(end, full.count)
            for cut in 0..<full.count {
                let (rc, _) = parse(Array(full.prefix(cut)))
                XCTAssertTrue(rc.isMalformed, "frame \(k) cut at \(cut): \(rc)")
            }
            // With padding appended, every cut inside the padding still parses.
            let padded = full + [UInt8](repeating: 0, count: 7)
            for cut in full.count...padded.count {
                XCTAssertEqual(parse(Array(padded.prefix(cut))).0, .ok, "frame \(k) padded cut \(cut)")
            }
        }
        let arp = B.arp()
        for cut in 0..<arp.count {
            let (rc, _) = parse(Array(arp.prefix(cut)))
            XCTAssertTrue(rc == .truncatedARP || rc == .truncatedEthernet, "arp cut \(cut): \(rc)")
        }
    }

    /// Random corruption: the parser must never read out of bounds, and what
    /// it accepts must be self-consistent.
    func testFuzzInvariants() {
        var g = SplitMix(seed: 42)
        let seeds: [[UInt8]] = [
            B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2, payload: [1, 2, 3])),
            B.eth(type: 0x86DD) + B.ipv6(nh: 17, l4: B.udp(sport: 1, dport: 2), ext: [(0, B.extBody(units: 1)), (44, B.fragBody(offset: 0, mf: true))]),
            B.eth(type: 0x0800, vlans: [3]) + B.ipv4(proto: 1, l4: B.icmp(type: 3, code: 3, payload: B.ipv4(proto: 17, l4: B.udp(sport: 5, dport: 6)))),
            B.arp(),
        ]
        for _ in 0..<20000 {
            var f = seeds[Int.random(in: 0..<seeds.count, using: &g)]
            for _ in 0..<Int.random(in: 1...4, using: &g) {
                f[Int.random(in: 0..<f.count, using: &g)] = UInt8.random(in: 0...255, using: &g)
            }
            f = Array(f.prefix(Int.random(in: 0...f.count, using: &g)))
            var info = PacketInfo()
            var r = ParseResult.ok
            withExact(f) { p, n in
                r = parseFrame(p, length: n, into: &info)
                if r == .ok {
                    var e = EmbeddedPacket()
                    _ = ICMP.parseEmbedded(p, info: info, into: &e)
                    if e.ipVersion != 0 { XCTAssertLessThanOrEqual(e.l4Offset, info.ipEnd) }
                    _ = Checksum.verifyL4(p, info)
                    _ = NDP.parse(p, info: info)
                }
                if info.isARP { _ = ARP.parse(p, length: n, info: info) }
            }
            if r == .ok {
                XCTAssertLessThanOrEqual(info.ipEnd, f.count)
                XCTAssertLessThanOrEqual(info.l4Offset, info.ipEnd)
                XCTAssertEqual(info.l4Offset, info.l3Offset + info.ipHeaderLength)
            }
        }
    }
}
