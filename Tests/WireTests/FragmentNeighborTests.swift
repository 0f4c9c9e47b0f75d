import XCTest
@testable import Wire

final class FragmentTests: XCTestCase {
    func fragments(_ frame: [UInt8], mtu: Int) -> [[UInt8]] {
        let info = parse(frame).1
        var out: [[UInt8]] = []
        withExact(frame) { p, _ in
            let n = Fragmenter.fragmentCount(p, info: info, mtu: mtu)
            for k in 0..<n {
                var len = 0
                let buf = withExact([UInt8](repeating: 0xEE, count: info.l3Offset + mtu)) { d, cap in
                    len = Fragmenter.writeFragment(from: p, info: info, index: k, mtu: mtu, into: d, capacity: cap)
                }
                XCTAssertGreaterThan(len, 0)
                out.append(Array(buf.prefix(len)))
            }
            var scratch = [UInt8](repeating: 0, count: 4096)
            scratch.withUnsafeMutableBytes { d in
                XCTAssertEqual(Fragmenter.writeFragment(from: p, info: info, index: n, mtu: mtu, into: d.baseAddress!, capacity: 4096), 0)
            }
        }
        return out
    }

    /// Reassembles by offset and checks every fragment's header.
    func reassemble(_ frags: [[UInt8]], l3: Int, mtu: Int, origFragOffset: Int = 0, origMF: Bool = false) -> [UInt8] {
        var data: [UInt8] = []
        var expected = origFragOffset
        for (k, f) in frags.enumerated() {
            let (r, info) = parse(f)
            XCTAssertEqual(r, .ok)
            XCTAssertLessThanOrEqual(info.ipTotalLength, mtu)
            XCTAssertTrue(Ref.ipv4HeaderOK(f, l3: l3))
            XCTAssertEqual(info.fragmentOffset, expected)
            XCTAssertEqual(info.moreFragments, k < frags.count - 1 || origMF)
            if k < frags.count - 1 { XCTAssertEqual((info.ipTotalLength - info.ipHeaderLength) % 8, 0) }
            XCTAssertEqual(f.count, l3 + info.ipTotalLength)
            data += f[(l3 + info.ipHeaderLength)...]
            expected += info.ipTotalLength - info.ipHeaderLength
        }
        return data
    }

    func testFragmentWithOptions() {
        // Options: router alert (copied), NOP, record route (not copied), timestamp (not copied), security-like copied option 0x82.
        let opts: [UInt8] = [0x94, 4, 0, 0, 1, 7, 7, 4, 0, 0, 0, 0, 0x82, 3, 9, 0]
        let padded = opts + [UInt8](repeating: 0, count: (4 - opts.count % 4) % 4)
        let payload = (0..<3000).map { UInt8($0 & 0xFF) }
        let pkt = B.ipv4(proto: 17, l4: B.udp(sport: 1, dport: 2, payload: payload), ttl: 9, id: 0x7777, df: false, options: padded)
        let frame = B.eth(type: 0x0800, vlans: [12]) + pkt
        let info = parse(frame).1
        withExact(frame) { p, _ in XCTAssertEqual(Fragmenter.laterHeaderLength(p, info: info), 28) }
        let frags = fragments(frame, mtu: 1500)
        XCTAssertEqual(frags.count, 3)
        let data = reassemble(frags, l3: 18, mtu: 1500)
        XCTAssertEqual(data, Array(pkt[(padded.count + 20)...]))
        XCTAssertEqual(Array(frags[0][18 + 20..<18 + 20 + padded.count]), padded)
        XCTAssertEqual(Array(frags[1][18 + 20..<18 + 28]), [0x94, 4, 0, 0, 0x82, 3, 9, 0])
        for f in frags {
            XCTAssertEqual(Array(f[0..<18]), Array(frame[0..<18]))
            XCTAssertEqual(Ref.be16(f, 18 + 4), 0x7777)
            XCTAssertEqual(f[18 + 8], 9)
            XCTAssertEqual(f[18 + 9], 17)
            XCTAssertEqual(Ref.be16(f, 18 + 6) & 0x4000, 0)
        }
    }

    func testFragmentCountsAndSizes() {
        var g = SplitMix(seed: 12)
        for _ in 0..<200 {
            let size = Int.random(in: 1...5000, using: &g)
            let mtu = Int.random(in: 68...1500, using: &g)
            let pkt = B.ipv4(proto: 253, l4: randomBytes(size, &g), df: false, l4Checksum: false)
            let frame = B.eth(type: 0x0800) + pkt
            let frags = fragments(frame, mtu: mtu)
            if pkt.count <= mtu {
                XCTAssertEqual(frags, [frame])
            } else {
                let per = (mtu - 20) & ~7
                XCTAssertEqual(frags.count, (size + per - 1) / per)
                XCTAssertEqual(reassemble(frags, l3: 14, mtu: mtu), Array(pkt[20...]))
            }
        }
        // An MTU too small for 8 bytes of data.
        let info = parse(B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: [UInt8](repeating: 0, count: 100), df: false)).1
        XCTAssertEqual(Fragmenter.fragmentCount(UnsafeRawPointer(bitPattern: 8)!, info: info, mtu: 27), 0)
    }

    func testFragmentAFragment() {
        let pkt = B.ipv4(proto: 6, l4: [UInt8](repeating: 5, count: 1000), df: false, mf: true, fragOffset: 1600)
        let frame = B.eth(type: 0x0800) + pkt
        let frags = fragments(frame, mtu: 500)
        XCTAssertEqual(frags.count, 3)
        XCTAssertEqual(reassemble(frags, l3: 14, mtu: 500, origFragOffset: 1600, origMF: true), Array(pkt[20...]))
    }

    func testCapacityTooSmall() {
        let frame = B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: [UInt8](repeating: 5, count: 1000), df: false)
        let info = parse(frame).1
        withExact(frame) { p, _ in
            withExact([UInt8](repeating: 0, count: 100)) { d, cap in
                XCTAssertEqual(Fragmenter.writeFragment(from: p, info: info, index: 0, mtu: 500, into: d, capacity: cap), 0)
            }
        }
    }
}

final class NeighborTests: XCTestCase {
    let ours = MACAddress("02:00:00:00:01:01")!

    func testARPParseAndReply() {
        let req = B.arp(op: 1)
        let (r, info) = parse(req)
        XCTAssertEqual(r, .notIP)
        var m: ARPMessage?
        withExact(req) { p, n in m = ARP.parse(p, length: n, info: info) }
        guard let msg = m else { return XCTFail("no ARP") }
        XCTAssertEqual(msg.op, 1)
        XCTAssertEqual(msg.senderMAC, MACAddress("02:00:00:00:00:0a"))
        XCTAssertEqual(msg.senderIP, IPAddress("10.0.0.1"))
        XCTAssertEqual(msg.targetIP, IPAddress("10.0.0.2"))
        XCTAssertFalse(msg.isGratuitous)

        var n = 0
        let out = withExact([UInt8](repeating: 0xEE, count: 64)) { d, cap in
            n = ARP.buildReply(to: msg, ourMAC: ours, into: d, capacity: cap)
        }
        XCTAssertEqual(n, 60)
        let rep = Array(out.prefix(n))
        XCTAssertEqual(Array(rep[0..<6]), B.macA)
        XCTAssertEqual(Array(rep[6..<12]), [2, 0, 0, 0, 1, 1])
        XCTAssertEqual(Ref.be16(rep, 12), 0x0806)
        XCTAssertEqual(Array(rep[14..<22]), [0, 1, 8, 0, 6, 4, 0, 2])
        XCTAssertEqual(Array(rep[22..<28]), [2, 0, 0, 0, 1, 1])
        XCTAssertEqual(Array(rep[28..<32]), B.v4("10.0.0.2"))
        XCTAssertEqual(Array(rep[32..<38]), B.macA)
        XCTAssertEqual(Array(rep[38..<42]), B.v4("10.0.0.1"))
        XCTAssertEqual(Array(rep[42..<60]), [UInt8](repeating: 0, count: 18))
        // In place gives the same first 42 bytes.
        let inPlace = withExact(req) { p, len in XCTAssertTrue(ARP.makeReply(p, length: len, info: info, ourMAC: ours)) }
        XCTAssertEqual(inPlace, Array(rep.prefix(42)))
        // Not a request any more.
        let i2 = parse(inPlace).1
        withExact(inPlace) { p, len in XCTAssertFalse(ARP.makeReply(p, length: len, info: i2, ourMAC: ours)) }
        XCTAssertEqual(withExact([UInt8](repeating: 0, count: 59)) { d, cap in
            XCTAssertEqual(ARP.buildReply(to: msg, ourMAC: ours, into: d, capacity: cap), 0)
        }.count, 59)
    }

    func testARPRequestAndGratuitous() {
        var n = 0
        let out = withExact([UInt8](repeating: 0xEE, count: 60)) { d, cap in
            n = ARP.buildRequest(sourceMAC: ours, sourceIP: IPAddress("10.0.0.9")!, targetIP: IPAddress("10.0.0.1")!, into: d, capacity: cap)
        }
        XCTAssertEqual(n, 60)
        let (r, info) = parse(out)
        XCTAssertEqual(r, .notIP)
        XCTAssertEqual(info.arpOp, 1)
        XCTAssertEqual(Array(out[0..<6]), [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        var m: ARPMessage?
        withExact(out) { p, len in m = ARP.parse(p, length: len, info: info) }
        XCTAssertEqual(m, ARPMessage(op: 1, senderMAC: ours, senderIP: IPAddress("10.0.0.9")!, targetMAC: .zero, targetIP: IPAddress("10.0.0.1")!))
        let gout = withExact([UInt8](repeating: 0xEE, count: 60)) { d, cap in
            XCTAssertEqual(ARP.buildGratuitous(mac: ours, ip: IPAddress("10.0.0.100")!, into: d, capacity: cap), 60)
        }
        let gi = parse(gout).1
        withExact(gout) { p, len in m = ARP.parse(p, length: len, info: gi) }
        XCTAssertEqual(m?.isGratuitous, true)
        XCTAssertEqual(m?.targetIP, IPAddress("10.0.0.100"))
        // Non-Ethernet/IPv4 ARP is not parsed.
        var odd = B.arp(); odd[14 + 1] = 6
        let oi = parse(odd).1
        withExact(odd) { p, len in XCTAssertNil(ARP.parse(p, length: len, info: oi)) }
    }

    func testNDPRoundTrip() {
        let target = IPAddress("2001:db8::100")!
        let client = IPAddress("2001:db8::c")!
        let clientMAC = MACAddress("02:00:00:00:00:0c")!
        // Solicitation from the client.
        var n = 0
        let ns = withExact([UInt8](repeating: 0xEE, count: 128)) { d, cap in
            n = NDP.buildSolicitation(target: target, source: client, sourceMAC: clientMAC, into: d, capacity: cap)
        }
        XCTAssertEqual(n, NDP.frameLength)
        let nsf = Array(ns.prefix(n))
        XCTAssertEqual(Array(nsf[0..<6]), [0x33, 0x33, 0xFF, 0, 0x01, 0x00])
        XCTAssertEqual(Array(nsf[38..<54]), B.v6("ff02::1:ff00:100"))
        XCTAssertEqual(nsf[21], 255)
        let (r, info) = parse(nsf)
        XCTAssertEqual(r, .ok)
        XCTAssertEqual(info.icmpType, 135)
        let (c, _) = Ref.l4Checksum(nsf, l3: 14, l4: 54, proto: 58, end: nsf.count)
        XCTAssertEqual(Ref.be16(nsf, 56), c)
        var msg: NDPMessage?
        withExact(nsf) { p, _ in msg = NDP.parse(p, info: info) }
        guard let sol = msg else { return XCTFail("NS not parsed") }
        XCTAssertEqual(sol.type, 135)
        XCTAssertEqual(sol.target, target)
        XCTAssertEqual(sol.linkLayer, clientMAC)
        XCTAssertEqual(sol.source, client)

        // Our advertisement.
        let na = withExact([UInt8](repeating: 0xEE, count: 128)) { d, cap in
            n = NDP.buildAdvertisement(answering: sol, ourMAC: ours, requesterMAC: clientMAC, into: d, capacity: cap)
        }
        let naf = Array(na.prefix(n))
        XCTAssertEqual(Array(naf[0..<6]), [2, 0, 0, 0, 0, 0x0C])
        XCTAssertEqual(Array(naf[22..<38]), B.v6("2001:db8::100"))
        XCTAssertEqual(Array(naf[38..<54]), B.v6("2001:db8::c"))
        XCTAssertEqual(naf[54], 136)
        XCTAssertEqual(naf[58], 0x60)
        XCTAssertEqual(Array(naf[78..<86]), [2, 1, 2, 0, 0, 0, 1, 1])
        let (c2, _) = Ref.l4Checksum(naf, l3: 14, l4: 54, proto: 58, end: naf.count)
        XCTAssertEqual(Ref.be16(naf, 56), c2)
        let ni = parse(naf).1
        withExact(naf) { p, _ in msg = NDP.parse(p, info: ni) }
        XCTAssertEqual(msg?.type, 136)
        XCTAssertEqual(msg?.flags, 0x60)
        XCTAssertEqual(msg?.linkLayer, ours)
        XCTAssertEqual(msg?.target, target)

        // DAD solicitation (unspecified source, no option) gets an all-nodes answer.
        let dad = withExact([UInt8](repeating: 0xEE, count: 128)) { d, cap in
            n = NDP.buildSolicitation(target: target, source: IPAddress("::")!, sourceMAC: clientMAC, into: d, capacity: cap)
        }
        let dadf = Array(dad.prefix(n))
        XCTAssertEqual(n, 14 + 40 + 24)
        let di = parse(dadf).1
        withExact(dadf) { p, _ in msg = NDP.parse(p, info: di) }
        XCTAssertNil(msg?.linkLayer)
        let dadAnswer = withExact([UInt8](repeating: 0xEE, count: 128)) { d, cap in
            n = NDP.buildAdvertisement(answering: msg!, ourMAC: ours, requesterMAC: clientMAC, into: d, capacity: cap)
        }
        XCTAssertEqual(Array(dadAnswer[38..<54]), B.v6("ff02::1"))
        XCTAssertEqual(Array(dadAnswer[0..<6]), [0x33, 0x33, 0, 0, 0, 1])
        XCTAssertEqual(dadAnswer[58], 0x20)

        // Unicast probe and unsolicited advertisement.
        let probe = withExact([UInt8](repeating: 0xEE, count: 128)) { d, cap in
            n = NDP.buildSolicitation(target: client, source: target, sourceMAC: ours, unicastMAC: clientMAC, into: d, capacity: cap)
        }
        XCTAssertEqual(Array(probe[38..<54]), B.v6("2001:db8::c"))
        XCTAssertEqual(Array(probe[0..<6]), [2, 0, 0, 0, 0, 0x0C])
        let un = withExact([UInt8](repeating: 0xEE, count: 128)) { d, cap in
            n = NDP.buildUnsolicitedAdvertisement(address: target, mac: ours, into: d, capacity: cap)
        }
        let unf = Array(un.prefix(n))
        let ui = parse(unf).1
        withExact(unf) { p, _ in msg = NDP.parse(p, info: ui) }
        XCTAssertEqual(msg?.flags, 0x20)
        XCTAssertEqual(msg?.destination, IPAddress("ff02::1"))
    }

    func testNDPValidation() {
        let target = IPAddress("2001:db8::100")!
        var n = 0
        let ns = withExact([UInt8](repeating: 0, count: 128)) { d, cap in
            n = NDP.buildSolicitation(target: target, source: IPAddress("2001:db8::c")!, sourceMAC: ours, into: d, capacity: cap)
        }
        let good = Array(ns.prefix(n))
        func parsed(_ f: [UInt8]) -> NDPMessage? {
            let (r, info) = parse(f)
            guard r == .ok else { return nil }
            var m: NDPMessage?
            withExact(f) { p, _ in m = NDP.parse(p, info: info) }
            return m
        }
        XCTAssertNotNil(parsed(good))
        var bad = good; bad[21] = 254  // hop limit
        XCTAssertNil(parsed(bad))
        bad = good; bad[57] ^= 1  // checksum
        XCTAssertNil(parsed(bad))
        bad = good; bad[79] = 0  // zero-length option
        var info = parse(bad).1
        bad = withExact(bad) { p, _ in Checksum.setL4(p, info) }
        XCTAssertNil(parsed(bad))
        bad = good; bad[79] = 2  // option past the end
        info = parse(bad).1
        bad = withExact(bad) { p, _ in Checksum.setL4(p, info) }
        XCTAssertNil(parsed(bad))
        XCTAssertEqual(NDP.solicitedNodeMulticast(IPAddress("2001:db8::1:2345:6789")!), IPAddress("ff02::1:ff45:6789"))
    }
}
