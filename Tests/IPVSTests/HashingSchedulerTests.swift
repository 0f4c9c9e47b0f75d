import XCTest
@testable import IPVS

final class HashingSchedulerTests: XCTestCase {
    let A = "10.0.0.1", B = "10.0.0.2", C = "10.0.0.3"

    // MARK: hash functions

    func testHash32AgainstHandComputation() {
        // 10.0.0.1 = 0x0A000001: 0x0A000000 * 0x61C88647 keeps only 0x0A * 0x47 = 0x2C6's low
        // byte in the top byte (0xC6000000); plus 0x61C88647 = 0x127C88647 -> 0x27C88647 -> 0x27.
        XCTAssertEqual(SchedHash.hash32(0x0A00_0001, bits: 8), 0x27)
        // 192.168.10.100 -> 0x66 (same arithmetic, checked with Python).
        XCTAssertEqual(SchedHash.hash32(0xC0A8_0A64, bits: 8), 0x66)
        XCTAssertEqual(SchedHash.hash32(0, bits: 8), 0)
        XCTAssertEqual(SchedHash.hash32(1, bits: 8), 0x61)
        XCTAssertEqual(SchedHash.hash32(1, bits: 10), 0x61C8_8647 >> 22)
        for v: UInt32 in [0xC0A8_0A64, 0xFFFF_FFFF, 0x7F00_0001, 12345] {
            XCTAssertEqual(Int(SchedHash.hash32(v, bits: 8)), T.hash32(v, 8))
            XCTAssertEqual(Int(SchedHash.hash32(v, bits: 10)), T.hash32(v, 10))
        }
    }

    // Reference values from an independent Python SipHash implementation
    // (generic SipHash-c-d, checked first against the SipHash paper's 2-4
    // test vector a129ca6149be45e5 for key 00..0f / message 00..0e), then run
    // with c=1, d=3, key {k, k}, message = the u32 in little-endian bytes,
    // result truncated to 32 bits.
    func testHsiphashVectors() {
        let k1: UInt64 = 2_654_435_761, k2: UInt64 = 2_654_446_892
        let vectors: [(UInt32, UInt32, UInt32)] = [
            (0x0000_0000, 0x1d5a_77c2, 0xf882_433f),
            (0x0000_0001, 0x16ec_66b2, 0x8210_aad1),
            (0x0A00_0001, 0x0308_0ce4, 0x48f9_d0c1),
            (0x0A00_000B, 0x77b8_5f9d, 0x2f64_ec9a),
            (0xC0A8_0A64, 0x3017_fe12, 0x66bd_bd5c),
            (0xFFFF_FFFF, 0x22c5_d719, 0xf75a_0f5d),
        ]
        for (v, h1, h2) in vectors {
            XCTAssertEqual(SchedHash.hsiphash32(v, key0: k1, key1: k1), h1, "hash1 of \(v)")
            XCTAssertEqual(SchedHash.hsiphash32(v, key0: k2, key1: k2), h2, "hash2 of \(v)")
        }
        // Same Python: slots (hash1 % 4093) of two clients.
        XCTAssertEqual(MHScheduler.slot(T.ip("172.16.0.9"), port: 0), 3610)
        XCTAssertEqual(MHScheduler.slot(T.ip("10.0.0.1"), port: 0), 3711)
    }

    // MARK: dh

    func testDHBucketsCycleListIncludingWeightZero() {
        let (table, svc, d) = T.service("dh", [(A, 1), (B, 5), (C, 0)])   // list C, B, A
        let s = svc.scheduler as! DHScheduler
        for i in 0..<256 {
            XCTAssertTrue(s.buckets[i] === svc.dests[i % 3], "bucket \(i)")
        }
        // Weight changes do not rebuild.
        T.setWeight(table, svc, d[B]!, 9)
        for i in 0..<256 { XCTAssertTrue(s.buckets[i] === svc.dests[i % 3]) }
        // Adding does (list D, C, B, A).
        _ = try! table.addDest(to: svc.key, DestSpec(addr: T.ip("10.0.0.4"), port: 80))
        for i in 0..<256 { XCTAssertTrue(s.buckets[i] === svc.dests[i % 4]) }
        // Deleting as well.
        try! table.deleteDest(from: svc.key, addr: T.ip("10.0.0.4"), port: 80)
        for i in 0..<256 { XCTAssertTrue(s.buckets[i] === svc.dests[i % 3]) }
    }

    func testDHSchedulesByDestinationAddress() {
        let (table, svc, d) = T.service("dh", [(A, 1), (B, 1), (C, 1)])   // list C, B, A
        for daddr in ["192.168.10.100", "192.168.10.101", "8.8.8.8", "1.2.3.4"] {
            let h = T.hash32(T.ip(daddr).v4, 8)
            let expected = svc.dests[h % 3]
            let got = svc.scheduler!.schedule(svc, T.input(daddr: daddr))
            XCTAssertTrue(got === expected, daddr)
            // The source address plays no part.
            XCTAssertTrue(svc.scheduler!.schedule(svc, T.input(saddr: "9.9.9.9", daddr: daddr)) === expected)
        }
        XCTAssertEqual(T.hash32(0xC0A8_0A64, 8), Int(DHScheduler.bucket(for: T.ip("192.168.10.100"))))
        // No fallback: weight 0, overload and unavailable all fail.
        let daddr = "192.168.10.100"
        let target = svc.dests[T.hash32(T.ip(daddr).v4, 8) % 3]
        T.setWeight(table, svc, target, 0)
        XCTAssertNil(svc.scheduler!.schedule(svc, T.input(daddr: daddr)))
        T.setWeight(table, svc, target, 1)
        target.setFlag(.overload)
        XCTAssertNil(svc.scheduler!.schedule(svc, T.input(daddr: daddr)))
        target.clearFlag(.overload)
        XCTAssertTrue(svc.scheduler!.schedule(svc, T.input(daddr: daddr)) === target)
        _ = d
    }

    func testDHIPv6Fold() {
        let a = T.ip("2001:db8::1")
        let w = a.v6Words
        XCTAssertEqual(DHScheduler.bucket(for: a), T.hash32(w.0 ^ w.1 ^ w.2 ^ w.3, 8))
    }

    // MARK: sh

    func testSHBucketsFollowWeightsAndWeightZeroTakesOne() {
        let (table, svc, d) = T.service("sh", [(A, 0), (B, 2), (C, 1)])   // list C(1), B(2), A(0)
        let s = svc.scheduler as! SHScheduler
        let pattern = [d[C]!, d[B]!, d[B]!, d[A]!]
        for i in 0..<256 { XCTAssertTrue(s.buckets[i] === pattern[i % 4], "bucket \(i)") }
        // upd rebuilds: C weight 2 -> C C B B A.
        T.setWeight(table, svc, d[C]!, 2)
        let p2 = [d[C]!, d[C]!, d[B]!, d[B]!, d[A]!]
        for i in 0..<256 { XCTAssertTrue(s.buckets[i] === p2[i % 5], "bucket \(i)") }
    }

    func testSHHashKeyAndPort() {
        let (_, svc, _) = T.service("sh", [(A, 1), (B, 1), (C, 1)])
        let s = svc.scheduler as! SHScheduler
        let client = T.ip("172.16.0.9")
        let noPort = T.hash32(client.v4, 8)
        XCTAssertEqual(SHScheduler.hashKey(client, port: 0, offset: 0), noPort)
        XCTAssertEqual(SHScheduler.hashKey(client, port: 40000, offset: 0), T.hash32(client.v4 &+ 40000, 8))
        XCTAssertEqual(SHScheduler.hashKey(client, port: 0, offset: 255), (noPort + 255) & 255)
        // Without sh-port, the source port is ignored.
        let d1 = s.schedule(svc, T.input(saddr: "172.16.0.9", sport: 1111))
        let d2 = s.schedule(svc, T.input(saddr: "172.16.0.9", sport: 2222))
        XCTAssertTrue(d1 === d2)
        XCTAssertTrue(d1 === s.buckets[noPort])
    }

    func testSHPortFlag() {
        let (_, svc, _) = T.service("sh", [(A, 1), (B, 1), (C, 1)], flags: [.sched2])
        let s = svc.scheduler as! SHScheduler
        let client = T.ip("172.16.0.9")
        for sport: UInt16 in [1, 1000, 40000, 65535] {
            let h = T.hash32(client.v4 &+ UInt32(sport), 8)
            XCTAssertTrue(s.schedule(svc, T.input(saddr: "172.16.0.9", sport: sport)) === s.buckets[h])
        }
    }

    func testSHFallback() {
        // Without fallback an unavailable bucket fails; with it, the probe
        // walks hashKey(addr, port, (offset + ihash) % 256).
        for fallback in [false, true] {
            let (table, svc, d) = T.service("sh", [(A, 1), (B, 1), (C, 1)], flags: fallback ? [.sched1] : [])
            let s = svc.scheduler as! SHScheduler
            let client = T.ip("172.16.0.9")
            let ihash = T.hash32(client.v4, 8)
            let primary = s.buckets[ihash]!
            T.setWeight(table, svc, primary, 0)   // upd rebuilds, weight 0 still one bucket each
            let prim2 = s.buckets[ihash]!
            if prim2.weight > 0 { prim2.setFlag(.overload) }
            let got = s.schedule(svc, T.input(saddr: "172.16.0.9"))
            if !fallback {
                XCTAssertNil(got)
            } else {
                var expected: Dest? = nil
                for off in 0..<256 {
                    let h = (((off + ihash) % 256) + ihash) & 255
                    let cand = s.buckets[h]!
                    if cand.weight > 0 && !cand.isOverloaded { expected = cand; break }
                }
                XCTAssertNotNil(expected)
                XCTAssertTrue(got === expected)
            }
            _ = d
        }
    }

    // MARK: mh

    func count(_ s: MHScheduler, _ d: Dest) -> Int { s.lookup.filter { $0 === d }.count }

    func testMHTableFilledAndProportional() {
        let (_, svc, d) = T.service("mh", [(A, 1), (B, 3)])
        let s = svc.scheduler as! MHScheduler
        XCTAssertEqual(s.lookup.count, 4093)
        XCTAssertTrue(s.lookup.allSatisfy { $0 != nil })
        let a = count(s, d[A]!), b = count(s, d[B]!)
        XCTAssertEqual(a + b, 4093)
        // B places 3 entries per turn to A's 1: exactly 1023 rounds of 4, then B's first of the next.
        XCTAssertEqual(b, 3070)
        XCTAssertEqual(a, 1023)
        XCTAssertEqual(s.gcd, 1)
        XCTAssertEqual(s.rshift, 0)
    }

    func testMHPermutationStartsAtOffset() {
        // With one dest every slot is it; with two equal dests the list head
        // claims its own preferred slot first.
        let (table, svc, d) = T.service("mh", [(A, 1)])
        let s = svc.scheduler as! MHScheduler
        XCTAssertTrue(s.lookup.allSatisfy { $0 === d[A]! })
        let b = try! table.addDest(to: svc.key, DestSpec(addr: T.ip(B), port: 80))   // list B, A
        let m = UInt32(4093)
        let offB = Int(SchedHash.hsiphash32(T.ip(B).v4 &+ 80, key0: 2_654_435_761, key1: 2_654_435_761) % m)
        XCTAssertTrue(s.lookup[offB] === b)
        let offA = Int(SchedHash.hsiphash32(T.ip(A).v4 &+ 80, key0: 2_654_435_761, key1: 2_654_435_761) % m)
        if offA != offB { XCTAssertTrue(s.lookup[offA] === d[A]!) }
        XCTAssertEqual(count(s, b), 2047)   // B goes first in every round of 2
        XCTAssertEqual(count(s, d[A]!), 2046)
    }

    func testMHShiftAndTurns() {
        let (_, svc, d) = T.service("mh", [(A, 100), (B, 1)])
        let s = svc.scheduler as! MHScheduler
        // fls(100) = 7, minus 6 -> rshift 1: turns 50 and (1>>1 = 0 -> 1).
        XCTAssertEqual(s.rshift, 1)
        XCTAssertTrue(s.lookup.allSatisfy { $0 != nil })
        let a = count(s, d[A]!), b = count(s, d[B]!)
        XCTAssertEqual(a + b, 4093)
        // List B, A: rounds of B x1 then A x50; 4093 = 80 * 51 + 13 -> B 81, A 4012.
        XCTAssertEqual(b, 81)
        XCTAssertEqual(a, 4012)
    }

    func testMHQuiesceKeepsTableAndFallback() {
        let (table, svc, d) = T.service("mh", [(A, 1), (B, 1), (C, 1)])
        let s = svc.scheduler as! MHScheduler
        let before = s.lookup.map { $0.map(ObjectIdentifier.init) }
        T.setWeight(table, svc, d[B]!, 0)
        XCTAssertEqual(d[B]!.lastWeight, 1)
        let after = s.lookup.map { $0.map(ObjectIdentifier.init) }
        XCTAssertEqual(before, after)
        // A client whose slot is B fails without fallback.
        var client: String? = nil
        for i in 1...250 {
            let c = "172.16.1.\(i)"
            if s.lookup[MHScheduler.slot(T.ip(c), port: 0)] === d[B]! { client = c; break }
        }
        guard let c = client else { return XCTFail("no client maps to B") }
        XCTAssertNil(s.schedule(svc, T.input(saddr: c)))
        // With mh-fallback the probe finds A or C.
        svc.flags.insert(.sched1)
        let got = s.schedule(svc, T.input(saddr: c))
        XCTAssertNotNil(got)
        XCTAssertFalse(got === d[B]!)
        var expected: Dest? = nil
        let ihash = MHScheduler.slot(T.ip(c), port: 0)
        for off in 0..<4093 {
            let ro = UInt32((off + ihash) % 4093)
            let h = Int(MHScheduler.hashKey(T.ip(c), port: 0, key: MHScheduler.hash1, offset: ro) % 4093)
            if let cand = s.lookup[h], cand.weight > 0, !cand.isOverloaded { expected = cand; break }
        }
        XCTAssertTrue(got === expected)
    }

    func testMHAddedWithWeightZeroGetsNoSlots() {
        let (table, svc, d) = T.service("mh", [(A, 1), (B, 1)])
        let s = svc.scheduler as! MHScheduler
        var spec = DestSpec(addr: T.ip(C), port: 80)
        spec.weight = 0
        let c = try! table.addDest(to: svc.key, spec)
        XCTAssertEqual(c.lastWeight, 0)
        XCTAssertEqual(count(s, c), 0)
        XCTAssertEqual(count(s, d[A]!) + count(s, d[B]!), 4093)
    }

    func testMHAllZeroEmptiesTable() {
        let (table, svc, d) = T.service("mh", [])
        let s = svc.scheduler as! MHScheduler
        XCTAssertTrue(s.lookup.allSatisfy { $0 == nil })
        var spec = DestSpec(addr: T.ip(A), port: 80)
        spec.weight = 0
        _ = try! table.addDest(to: svc.key, spec)
        XCTAssertTrue(s.lookup.allSatisfy { $0 == nil })
        XCTAssertNil(s.schedule(svc, T.input()))
        _ = d
    }

    func testMHStabilityWhenADestIsRemoved() throws {
        let names = (1...5).map { "10.0.0.\($0)" }
        let (table, svc, d) = T.service("mh", names.map { ($0, 1) })
        let s = svc.scheduler as! MHScheduler
        let before = s.lookup
        try table.deleteDest(from: svc.key, addr: T.ip(names[2]), port: 80)
        let removed = d[names[2]]!
        XCTAssertTrue(s.lookup.allSatisfy { $0 != nil && $0 !== removed })
        // Slots that did not belong to the removed dest mostly stay put.
        var kept = 0, total = 0
        for i in 0..<4093 where before[i] !== removed {
            total += 1
            if s.lookup[i] === before[i] { kept += 1 }
        }
        XCTAssertGreaterThan(Double(kept) / Double(total), 0.85)
        // Each remaining dest gets about a quarter.
        for n in names where n != names[2] {
            XCTAssertEqual(Double(count(s, d[n]!)), 4093.0 / 4, accuracy: 2)
        }
    }

    func testMHPortFlag() {
        let (_, svc, _) = T.service("mh", [(A, 1), (B, 1), (C, 1)], flags: [.sched2])
        let s = svc.scheduler as! MHScheduler
        let got = s.schedule(svc, T.input(saddr: "172.16.0.9", sport: 5555))
        XCTAssertTrue(got === s.lookup[MHScheduler.slot(T.ip("172.16.0.9"), port: 5555)])
        // UDP too; the port is ignored for other protocols.
        let g2 = s.schedule(svc, T.input(saddr: "172.16.0.9", sport: 5555, proto: .ip))
        XCTAssertTrue(g2 === s.lookup[MHScheduler.slot(T.ip("172.16.0.9"), port: 0)])
    }
}
