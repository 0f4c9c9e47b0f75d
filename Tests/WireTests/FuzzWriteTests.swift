import XCTest
@testable import Wire

/// Corrupted frames that the parser still accepts go through every in-place
/// writer; with exact-size allocations (and ASan) no write may leave the frame.
final class FuzzWriteTests: XCTestCase {
    func testWritersStayInBounds() {
        var g = SplitMix(seed: 31337)
        let quotedTCP = B.ipv4(src: "10.0.0.100", dst: "203.0.113.5", proto: 6, l4: B.tcp(sport: 80, dport: 5555))
        let q6 = B.ipv6(nh: 17, l4: B.udp(sport: 1, dport: 2, payload: [1, 2]), ext: [(60, B.extBody(units: 1))])
        let seeds: [[UInt8]] = [
            B.eth(type: 0x0800) + B.ipv4(proto: 6, l4: B.tcp(sport: 1, dport: 2, payload: [1, 2, 3]), options: [1, 1, 0x94, 4, 0, 0, 0, 0]),
            B.eth(type: 0x0800, vlans: [2]) + B.ipv4(proto: 17, l4: B.udp(sport: 1, dport: 2, payload: [9, 9])),
            B.eth(type: 0x86DD) + B.ipv6(nh: 6, l4: B.tcp(sport: 1, dport: 2), ext: [(0, B.extBody(units: 1))]),
            B.eth(type: 0x0800) + B.ipv4(proto: 1, l4: B.icmp(type: 3, code: 3, rest: [0, 0, 0, 0], payload: quotedTCP)),
            B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: B.icmp(type: 1, code: 4, rest: [0, 0, 0, 0], payload: q6)),
            B.eth(type: 0x0800) + B.ipv4(proto: 1, l4: B.icmp(type: 8, payload: [1, 2, 3])),
            B.eth(type: 0x86DD) + B.ipv6(nh: 58, l4: B.icmp(type: 128, payload: [1])),
            B.eth(type: 0x0800) + B.ipv4(proto: 132, l4: B.sctp(sport: 1, dport: 2)),
        ]
        var accepted = 0
        var scratch = [UInt8](repeating: 0, count: 2048)
        for _ in 0..<20000 {
            var f = seeds[Int.random(in: 0..<seeds.count, using: &g)]
            for _ in 0..<Int.random(in: 1...3, using: &g) {
                f[Int.random(in: 0..<f.count, using: &g)] = UInt8.random(in: 0...255, using: &g)
            }
            let a4 = randomV4(&g), a6 = randomV6(&g)
            withExact(f) { p, n in
                var info = PacketInfo()
                guard parseFrame(p, length: n, into: &info) == .ok else { return }
                accepted += 1
                let addr = info.ipVersion == 6 ? a6 : a4
                var i2 = info
                NAT.rewriteDestination(p, info: &i2, address: addr, port: 1234)
                NAT.rewriteSource(p, info: &i2, address: addr, port: 4321)
                _ = IPHeader.decrementTTL(p, info: &i2)
                var e = EmbeddedPacket()
                if ICMP.parseEmbedded(p, info: i2, into: &e) {
                    ICMP.rewriteRelatedInbound(p, info: &i2, embedded: &e, server: addr, port: 1)
                    ICMP.rewriteRelatedOutbound(p, info: &i2, embedded: &e, vip: addr, port: 2)
                }
                ICMP.makeEchoReply(p, info: &i2)
                scratch.withUnsafeMutableBytes { d in
                    _ = ICMP.buildTimeExceeded(original: p, info: i2, source: addr, destinationMAC: .zero, sourceMAC: .zero,
                                               into: d.baseAddress!, capacity: d.count)
                    let c = Fragmenter.fragmentCount(p, info: i2, mtu: 68)
                    for k in 0..<min(c, 4) {
                        _ = Fragmenter.writeFragment(from: p, info: i2, index: k, mtu: 68, into: d.baseAddress!, capacity: d.count)
                    }
                }
            }
        }
        XCTAssertGreaterThan(accepted, 1000)
    }
}
