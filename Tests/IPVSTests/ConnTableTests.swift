import IPVS
import XCTest

final class ConnTableTests: XCTestCase {
    func addr(_ i: Int) -> IPAddress { IPAddress(v4: 0xCB00_7100 &+ UInt32(i)) }
    let vip = IPAddress(v4: 0xC000_020A)
    let rs = IPAddress(v4: 0x0A00_000B)

    func testEntriesAreOneCacheLineForIPv4() {
        let t = ConnTable(capacity: 1024, isV6: false)
        XCTAssertEqual(t.stride, 64)
        XCTAssertEqual(ConnField.addresses + 3 * 4, 64, "the IPv4 entry must end exactly at 64 bytes")
        let t6 = ConnTable(capacity: 1024, isV6: true)
        XCTAssertEqual(t6.stride, 128)
        XCTAssertLessThanOrEqual(ConnField.addresses + 3 * 16, 128)
        XCTAssertLessThan(t.bytesPerConnection, 100)
        t.deallocate(); t6.deallocate()
    }

    /// Random inserts, lookups in both directions and removals, checked
    /// against a dictionary model, with the table near full.
    func testChurnAgainstAModel() {
        var t = ConnTable(capacity: 5000, isV6: false, seed: 42)
        var model: [Int: UInt32] = [:]      // client index -> entry
        var rng = SystemRandomNumberGenerator()
        for step in 0..<200_000 {
            let c = Int.random(in: 0..<8000, using: &rng)
            let port = UInt16(truncatingIfNeeded: c &* 7 &+ 1000)
            if let i = model[c] {
                XCTAssertEqual(t.lookupIn(proto: 6, caddr: addr(c), cport: port, vaddr: vip, vport: 80), i)
                XCTAssertEqual(t.lookupOut(proto: 6, caddr: addr(c), cport: port, daddr: rs, dport: 8080), i)
                if Bool.random(using: &rng) {
                    t.unhash(i)
                    t.free(i)
                    model[c] = nil
                    XCTAssertNil(t.lookupIn(proto: 6, caddr: addr(c), cport: port, vaddr: vip, vport: 80))
                }
            } else {
                XCTAssertNil(t.lookupIn(proto: 6, caddr: addr(c), cport: port, vaddr: vip, vport: 80))
                if let i = t.insert(proto: 6, caddr: addr(c), cport: port, vaddr: vip, vport: 80, daddr: rs,
                                    dport: 8080, flags: 0) {
                    model[c] = i
                } else {
                    XCTAssertEqual(t.count, t.capacity, "insert may only fail when full (step \(step))")
                }
            }
            // Wrong direction or wrong port never matches.
            XCTAssertNil(t.lookupIn(proto: 17, caddr: addr(c), cport: port, vaddr: vip, vport: 80))
        }
        XCTAssertEqual(t.count, model.count)
        t.deallocate()
    }

    /// The fast path's 32-bit lookups find exactly what the general ones find.
    func testIPv4FastLookupsAgreeWithTheGeneralOnes() {
        var t = ConnTable(capacity: 4000, isV6: false, seed: 7)
        var rng = SystemRandomNumberGenerator()
        var live: [UInt32] = []
        for _ in 0..<20_000 {
            let c = UInt32.random(in: 0..<3000, using: &rng)
            let cport = UInt16(truncatingIfNeeded: c &* 13)
            let proto: UInt8 = Bool.random(using: &rng) ? 6 : 17
            let caddr = IPAddress(v4: 0xCB00_7100 &+ c)
            if Int.random(in: 0..<3, using: &rng) == 0, !live.isEmpty {
                let i = live.remove(at: Int.random(in: 0..<live.count, using: &rng))
                t.unhash(i); t.free(i)
            } else if t.lookupIn(proto: proto, caddr: caddr, cport: cport, vaddr: vip, vport: 80) == nil,
                      let i = t.insert(proto: proto, caddr: caddr, cport: cport, vaddr: vip, vport: 80, daddr: rs,
                                       dport: 8080, flags: c % 5 == 0 ? ConnFlags.template : 0) {
                live.append(i)
            }
            XCTAssertEqual(t.lookup4(proto: proto, client: caddr.v4, cport: cport, addr: vip.v4, port: 80, daddrSide: false),
                           t.lookupIn(proto: proto, caddr: caddr, cport: cport, vaddr: vip, vport: 80))
            XCTAssertEqual(t.lookup4(proto: proto, client: caddr.v4, cport: cport, addr: rs.v4, port: 8080, daddrSide: true),
                           t.lookupOut(proto: proto, caddr: caddr, cport: cport, daddr: rs, dport: 8080))
            XCTAssertEqual(t.hash4(proto: proto, client: caddr.v4, port: cport), t.hash(proto: proto, client: caddr, port: cport))
        }
        t.deallocate()
    }

    func testFullTableRefusesAndRecovers() {
        var t = ConnTable(capacity: 64, isV6: false)
        var got: [UInt32] = []
        for c in 0..<64 {
            got.append(t.insert(proto: 17, caddr: addr(c), cport: 5, vaddr: vip, vport: 53, daddr: rs, dport: 53, flags: 0)!)
        }
        XCTAssertNil(t.insert(proto: 17, caddr: addr(99), cport: 5, vaddr: vip, vport: 53, daddr: rs, dport: 53, flags: 0))
        for c in 0..<64 {
            XCTAssertEqual(t.lookupIn(proto: 17, caddr: addr(c), cport: 5, vaddr: vip, vport: 53), got[c])
        }
        t.unhash(got[10]); t.free(got[10])
        XCTAssertNotNil(t.insert(proto: 17, caddr: addr(99), cport: 5, vaddr: vip, vport: 53, daddr: rs, dport: 53, flags: 0))
        t.deallocate()
    }

    /// Expiry: due entries come out at their tick (not before), re-armed
    /// entries move, an earlier expiry is honoured, long jumps expire everything due.
    func testTimerWheel() {
        var t = ConnTable(capacity: 10_000, isV6: false)
        var expired: [UInt32: UInt64] = [:]
        t.advance(to: 1_000_000) { _, _ in XCTFail("nothing armed") }
        var entries: [(UInt32, UInt64)] = []
        var rng = SystemRandomNumberGenerator()
        for c in 0..<5000 {
            let i = t.insert(proto: 6, caddr: addr(c), cport: 1, vaddr: vip, vport: 80, daddr: rs, dport: 80, flags: 0)!
            // Between 1 ms and 200 s from now, in µs, on tick boundaries + offsets.
            let when = 1_000_000 + UInt64.random(in: 1_000...200_000_000, using: &rng)
            t.arm(i, expires: when)
            entries.append((i, when))
        }
        // Re-arm some later (lazily kept in place) and some earlier (moved).
        for k in stride(from: 0, to: 5000, by: 7) {
            entries[k].1 += 90_000_000
            t.arm(entries[k].0, expires: entries[k].1)
        }
        for k in stride(from: 3, to: 5000, by: 11) {
            entries[k].1 = max(1_001_000, entries[k].1 / 2)
            t.arm(entries[k].0, expires: entries[k].1)
        }
        var now: UInt64 = 1_000_000
        while now < 400_000_000 {
            now += UInt64.random(in: 1_000...3_000_000, using: &rng)
            t.advance(to: now) { tbl, i in
                expired[i] = now
                tbl.unhash(i)
                tbl.free(i)
            }
        }
        XCTAssertEqual(expired.count, 5000)
        for (i, when) in entries {
            let at = expired[i]!
            // Fired in the first advance whose tick reached the expiry's tick.
            XCTAssertGreaterThanOrEqual(at / 1000, when / 1000, "fired early")
            XCTAssertLessThan(at - when, 3_001_000, "fired late")
        }
        t.deallocate()
    }

    /// A 10-minute jump (longer than one wheel turn) expires exactly the due entries.
    func testLongJump() {
        var t = ConnTable(capacity: 100, isV6: false)
        t.advance(to: 0) { _, _ in }
        let a = t.insert(proto: 6, caddr: addr(1), cport: 1, vaddr: vip, vport: 80, daddr: rs, dport: 80, flags: 0)!
        let b = t.insert(proto: 6, caddr: addr(2), cport: 1, vaddr: vip, vport: 80, daddr: rs, dport: 80, flags: 0)!
        t.arm(a, expires: 300_000_000)
        t.arm(b, expires: 900_000_000)
        var fired: [UInt32] = []
        t.advance(to: 600_000_000) { tbl, i in fired.append(i); tbl.unhash(i); tbl.free(i) }
        XCTAssertEqual(fired, [a])
        t.advance(to: 900_000_000) { tbl, i in fired.append(i); tbl.unhash(i); tbl.free(i) }
        XCTAssertEqual(fired, [a, b])
        t.deallocate()
    }
}
