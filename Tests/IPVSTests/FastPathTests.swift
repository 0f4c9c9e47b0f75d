import XCTest
import Wire
@testable import IPVS

/// The burst fast path (FastPath.swift) must give exactly what the general
/// path gives: the same bytes out, the same next hop, the same counters and
/// connections. Two engines over identical tables take the same random
/// traffic; one only through `Engine.process`, the other the way the data
/// plane drives it (fastPrepare, then in order fastForward or process).
final class FastPathTests: XCTestCase {
    static let udpNAT = T.ip("192.0.2.10"), tcpNAT = T.ip("192.0.2.30"), tcpDR = T.ip("192.0.2.20")
    static let tcpIPIP = T.ip("192.0.2.40"), udpGUE = T.ip("192.0.2.50"), tcpGRE = T.ip("192.0.2.60")
    static let udpGUEChecksum = T.ip("192.0.2.70")

    static func table() -> IPVSTable {
        let t = IPVSTable()
        func service(_ proto: IPProtocol, _ vip: IPAddress, _ port: UInt16, _ method: ForwardMethod,
                     _ dests: [(String, UInt16)], tunnel: TunnelType = .ipip, tunnelPort: UInt16 = 0,
                     tunnelFlags: TunnelFlags = []) {
            var spec = ServiceSpec(key: .address(proto: proto, addr: vip, port: port))
            spec.scheduler = "rr"
            let svc = try! t.addService(spec)
            for (a, p) in dests {
                var d = DestSpec(addr: T.ip(a), port: p)
                d.forward = method
                d.tunnelType = tunnel
                d.tunnelPort = tunnelPort
                d.tunnelFlags = tunnelFlags
                _ = try! t.addDest(to: svc.key, d)
            }
        }
        service(.udp, udpNAT, 53, .masq, [("10.0.0.1", 5353), ("10.0.0.2", 5353), ("10.0.0.3", 53)])
        service(.tcp, tcpNAT, 80, .masq, [("10.0.1.1", 8080), ("10.0.1.2", 8080)])
        service(.tcp, tcpDR, 80, .droute, [("10.0.2.1", 80), ("10.0.2.2", 80)])
        // LVS/TUN: IPIP, GUE and GRE take the fast path; a checksummed tunnel never does.
        service(.tcp, tcpIPIP, 80, .tunnel, [("10.0.3.1", 80), ("10.0.3.2", 80)])
        service(.udp, udpGUE, 53, .tunnel, [("10.0.4.1", 53), ("10.0.4.2", 53)], tunnel: .gue, tunnelPort: 6080)
        service(.tcp, tcpGRE, 80, .tunnel, [("10.0.5.1", 80)], tunnel: .gre)
        service(.udp, udpGUEChecksum, 53, .tunnel, [("10.0.6.1", 53)], tunnel: .gue, tunnelPort: 6080,
                tunnelFlags: .csum)
        return t
    }

    /// A deterministic generator (xorshift64*), so a failure can be replayed.
    struct Random {
        var s: UInt64
        mutating func next() -> UInt64 {
            s ^= s >> 12; s ^= s << 25; s ^= s >> 27
            return s &* 0x2545_F491_4F6C_DD1D
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    /// Ethernet + IPv4 (+ options) + UDP/TCP with correct checksums.
    static func frame(proto: UInt8, src: IPAddress, sport: UInt16, dst: IPAddress, dport: UInt16,
                      tcpFlags: UInt8 = 0x10, ttl: UInt8 = 64, payload: Int = 18, ipOptions: Int = 0,
                      fragment: UInt16 = 0, udpChecksum: Bool = true) -> [UInt8] {
        let l4 = proto == 6 ? 20 : 8
        let ihl = 20 + ipOptions
        var b = [UInt8](repeating: 0, count: 14 + ihl + l4 + payload)
        b[0...5] = [2, 0, 0, 0, 0, 1]; b[6...11] = [2, 0, 0, 0, 0, 2]; b[12] = 0x08; b[13] = 0x00
        b[14] = 0x40 | UInt8(ihl / 4)
        let total = ihl + l4 + payload
        b[16] = UInt8(total >> 8); b[17] = UInt8(total & 0xFF)
        b[18] = 0x12; b[19] = 0x34
        b[20] = UInt8(fragment >> 8); b[21] = UInt8(fragment & 0xFF)
        b[22] = ttl; b[23] = proto
        for (k, a) in [(26, src.v4), (30, dst.v4)] {
            b[k] = UInt8(a >> 24); b[k + 1] = UInt8((a >> 16) & 0xFF); b[k + 2] = UInt8((a >> 8) & 0xFF); b[k + 3] = UInt8(a & 0xFF)
        }
        for k in 0..<ipOptions { b[34 + k] = 1 }   // NOP options
        let o = 14 + ihl
        b[o] = UInt8(sport >> 8); b[o + 1] = UInt8(sport & 0xFF); b[o + 2] = UInt8(dport >> 8); b[o + 3] = UInt8(dport & 0xFF)
        if proto == 6 {
            b[o + 4] = 0x11; b[o + 7] = 0x22; b[o + 12] = 0x50; b[o + 13] = tcpFlags; b[o + 14] = 0x20
        } else {
            b[o + 4] = UInt8((8 + payload) >> 8); b[o + 5] = UInt8((8 + payload) & 0xFF)
        }
        for k in 0..<payload { b[o + l4 + k] = UInt8(truncatingIfNeeded: k &* 7) }
        b.withUnsafeMutableBytes { p in
            Checksum.setIPv4Header(p.baseAddress!, l3: 14)
            var info = PacketInfo()
            if parseFrame(UnsafeRawPointer(p.baseAddress!), length: p.count, into: &info) == .ok,
               fragment == 0, proto == 6 || udpChecksum {
                _ = Checksum.setL4(p.baseAddress!, info)
            }
        }
        return b
    }

    struct Flow {
        var proto: UInt8
        var client: IPAddress
        var cport: UInt16
        var vip: IPAddress
        var vport: UInt16
        var server: IPAddress? = nil     // learnt from the first packet's rewrite
        var sport: UInt16 = 0
        var nat: Bool
        var opened = false
    }

    struct Outcome: Equatable {
        var action: String
        var nextHop: UInt32
        var bytes: [UInt8]
    }

    func testFastPathMatchesGeneralPath() {
        let r = compareEngines(capacity: 4096, flowCount: 60, seed: 0x5EED_1234_ABCD_0001)
        // The run must have exercised the fast path a lot, and the general path too.
        // (The checksummed tunnel's flows, a seventh of them, never take it.)
        XCTAssertGreaterThan(r.fastTaken, r.packets / 4, "fast path taken \(r.fastTaken) of \(r.packets)")
        XCTAssertLessThan(r.fastTaken, r.packets)
    }

    /// Flows crowded into one index bucket: it overflows into its neighbours,
    /// so pass 2 finds no candidate in the home bucket for some and pass 3
    /// must probe (a run of the fast path meets such packets in its middle too).
    func testFastPathMatchesGeneralPathWithOverflowingBuckets() {
        let r = compareEngines(capacity: 4096, flowCount: 60, seed: 0x0BAD_5EED_0000_0007, crowded: 30)
        XCTAssertGreaterThan(r.probes, 0, "no packet needed a probe past its home bucket")
        XCTAssertGreaterThan(r.fastTaken, r.packets / 5, "fast path taken \(r.fastTaken) of \(r.packets)")
    }

    /// The two engines over `flowCount` flows; the first `crowded` have client
    /// ports chosen so that they all hash to the same index bucket.
    func compareEngines(capacity: Int, flowCount: Int, seed: UInt64, crowded: Int = 0)
        -> (packets: Int, fastTaken: Int, probes: Int) {
        let general = Engine(table: FastPathTests.table(), capacity: capacity)
        let fast = Engine(table: FastPathTests.table(), capacity: capacity)
        let burst = FastBurst(capacity: 64)
        defer { burst.deallocate() }
        var rng = Random(s: seed)
        var flows: [Flow] = []
        var probes = 0
        for k in 0..<flowCount {
            let client = IPAddress(v4: 0xC633_6400 | UInt32(k % 30 + 1))    // 198.51.100.x
            var cport = UInt16(20000 + k)
            if k < crowded {
                let proto: UInt8 = [0, 4, 6].contains(k % 7) ? 17 : 6
                cport = UInt16(10000 + 500 * k)
                while Int(fast.v4.hash4(proto: proto, client: client.v4, port: cport)) & fast.v4.bucketMask != 0 {
                    cport &+= 1
                }
            }
            switch k % 7 {
            case 0: flows.append(Flow(proto: 17, client: client, cport: cport, vip: FastPathTests.udpNAT, vport: 53, nat: true))
            case 1: flows.append(Flow(proto: 6, client: client, cport: cport, vip: FastPathTests.tcpNAT, vport: 80, nat: true))
            case 2: flows.append(Flow(proto: 6, client: client, cport: cport, vip: FastPathTests.tcpDR, vport: 80, nat: false))
            case 3: flows.append(Flow(proto: 6, client: client, cport: cport, vip: FastPathTests.tcpIPIP, vport: 80, nat: false))
            case 4: flows.append(Flow(proto: 17, client: client, cport: cport, vip: FastPathTests.udpGUE, vport: 53, nat: false))
            case 5: flows.append(Flow(proto: 6, client: client, cport: cport, vip: FastPathTests.tcpGRE, vport: 80, nat: false))
            default: flows.append(Flow(proto: 17, client: client, cport: cport, vip: FastPathTests.udpGUEChecksum, vport: 53,
                                       nat: false))
            }
        }
        var now: UInt64 = 1_000_000
        var packets = 0, fastTaken = 0, tunnelled = 0
        for round in 0..<400 {
            // Time moves: mostly milliseconds, sometimes past the UDP timeout.
            now += rng.below(50) == 0 ? 301_000_000 : UInt64(rng.below(5000))
            if round == 200 {
                // Shorter timeouts from here: expiries move earlier than filed.
                for e in [general, fast] {
                    try! e.table.setTimeouts(tcp: 120, tcpfin: 0, udp: 30)
                    e.configurationChanged()
                }
            }
            var frames: [[UInt8]] = []
            var sources: [Int] = []
            for _ in 0..<(1 + rng.below(40)) {
                let f = rng.below(flows.count)
                var fl = flows[f]
                let reply = fl.nat && fl.server != nil && rng.below(3) == 0
                var flags: UInt8 = 0x10
                if fl.proto == 6 {
                    if !fl.opened || rng.below(40) == 0 { flags = 0x02; fl.opened = true }      // SYN
                    else if rng.below(30) == 0 { flags = 0x11 }                                  // FIN|ACK
                    else if rng.below(60) == 0 { flags = 0x04 }                                  // RST
                    else if rng.below(4) == 0 { flags = 0x18 }                                   // PSH|ACK
                }
                let odd = rng.below(25)
                // Now and then a packet near the MTU: encapsulated, some no longer fit.
                let payload = odd == 4 ? 1430 + rng.below(50) : rng.below(60)
                let frame: [UInt8]
                if reply {
                    frame = FastPathTests.frame(proto: fl.proto, src: fl.server!, sport: fl.sport, dst: fl.client,
                                                dport: fl.cport, tcpFlags: flags == 0x02 ? 0x12 : flags,
                                                ttl: odd == 0 ? 1 : 63, payload: payload)
                } else {
                    frame = FastPathTests.frame(proto: fl.proto, src: fl.client, sport: fl.cport, dst: fl.vip,
                                                dport: fl.vport, tcpFlags: flags, ttl: odd == 0 ? 1 : 64,
                                                payload: payload, ipOptions: odd == 1 ? 4 : 0,
                                                fragment: odd == 2 ? 0x2000 : rng.below(2) == 0 ? 0x4000 : 0,   // MF; DF
                                                udpChecksum: odd != 3)
                }
                flows[f] = fl
                frames.append(frame)
                sources.append(reply ? -1 - f : f)
            }
            // The general path, one packet at a time.
            var expected: [Outcome] = []
            for var b in frames {
                let v: Verdict = b.withUnsafeMutableBytes { p in
                    var info = PacketInfo()
                    _ = parseFrame(UnsafeRawPointer(p.baseAddress!), length: p.count, into: &info)
                    return general.process(p.baseAddress!, info: &info, now: now)
                }
                expected.append(Outcome(action: "\(v.action)", nextHop: FastPathTests.nextHop(v), bytes: b))
            }
            // The data plane's way: the burst's fast passes, then in order.
            var got: [Outcome] = []
            var buffers = frames.map { b -> UnsafeMutableRawBufferPointer in
                let m = UnsafeMutableRawBufferPointer.allocate(byteCount: b.count, alignment: 64)
                m.copyBytes(from: b)
                return m
            }
            defer { buffers.forEach { $0.deallocate() }; buffers = [] }
            for (k, m) in buffers.enumerated() {
                burst.frames[k] = m.baseAddress!
                burst.lengths[k] = m.count
            }
            fast.fastPrepare(burst, count: buffers.count)
            for k in 0..<buffers.count where burst.kinds[k] != 0 && FastBurst.namesNoEntry(burst.candidates[k]) { probes += 1 }
            var k = 0
            while k < buffers.count {
                let stop = fast.fastForward(burst, from: k, to: buffers.count, now: now)
                while k < stop {
                    // An LVS/TUN packet is left for encapsulation with its dest id.
                    let tunnel = burst.isTunnelled(k)
                    got.append(Outcome(action: tunnel ? "tunnel" : "forward",
                                       nextHop: tunnel ? fast.destRoutes[Int(burst.nextHops[k])].address.v4 : burst.nextHops[k],
                                       bytes: Array(buffers[k])))
                    fastTaken += 1
                    if tunnel { tunnelled += 1 }
                    k += 1
                }
                if k == buffers.count { break }
                var info = PacketInfo()
                _ = parseFrame(UnsafeRawPointer(buffers[k].baseAddress!), length: buffers[k].count, into: &info)
                let v = fast.process(buffers[k].baseAddress!, info: &info, now: now)
                got.append(Outcome(action: "\(v.action)", nextHop: FastPathTests.nextHop(v), bytes: Array(buffers[k])))
                k += 1
            }
            for (j, (e, g)) in zip(expected, got).enumerated() {
                XCTAssertEqual(e, g, "round \(round), packet \(j)")
                if e != g { return (packets, fastTaken, probes) }
            }
            packets += frames.count
            // Learn each NAT flow's real server from its rewritten first packet.
            for (j, s) in sources.enumerated() where s >= 0 && flows[s].nat && expected[j].action == "forward" {
                let b = expected[j].bytes
                flows[s].server = IPAddress(v4: UInt32(b[30]) << 24 | UInt32(b[31]) << 16 | UInt32(b[32]) << 8 | UInt32(b[33]))
                flows[s].sport = UInt16(b[36]) << 8 | UInt16(b[37])
            }
        }
        // Same counters, same connections with the same states and expiries.
        for id in 0..<32 {
            XCTAssertEqual(general.destStats[id], fast.destStats[id], "dest \(id)")
            XCTAssertEqual(general.serviceStats[id], fast.serviceStats[id], "service \(id)")
        }
        func describe(_ e: Engine) -> [String] {
            e.connections().map { "\($0.proto) \($0.client):\($0.cport) \($0.vaddr):\($0.vport) \($0.daddr):\($0.dport) \($0.stateName) \($0.expiresInSeconds)" }.sorted()
        }
        XCTAssertEqual(describe(general), describe(fast))
        XCTAssertEqual(general.liveConnections, fast.liveConnections)
        XCTAssertGreaterThan(tunnelled, 0, "no LVS/TUN packet took the fast path")
        return (packets, fastTaken, probes)
    }

    /// The IPv4 next hop of a verdict that sends the packet on (the real
    /// server or client; for LVS/TUN the server the tunnel goes to).
    static func nextHop(_ v: Verdict) -> UInt32 {
        v.action == .forward || v.action == .tunnel ? v.nextHop.v4 : 0
    }
}
