import XCTest
@testable import IPVS

final class LocalitySchedulerTests: XCTestCase {
    let A = "10.0.0.1", B = "10.0.0.2", C = "10.0.0.3"

    func sched(_ svc: Service, daddr: String, now: Double = 0) -> Dest? {
        svc.scheduler!.schedule(svc, T.input(daddr: daddr, now: now))
    }

    func testLBLCCachesPerDestinationAddress() {
        let (_, svc, d) = T.service("lblc", [(A, 1), (B, 1)])   // list B, A
        let s = svc.scheduler as! LBLCScheduler
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[B]!)   // wlc: first of equals
        XCTAssertEqual(s.entryCount, 1)
        // B gets busier, but 1.1.1.1 stays on B (cached) while 2.2.2.2 goes to A.
        T.setConns(d[B]!, active: 1)
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[B]!)
        XCTAssertTrue(sched(svc, daddr: "2.2.2.2") === d[A]!)
        XCTAssertTrue(s.cachedDest(for: T.ip("2.2.2.2")) === d[A]!)
        XCTAssertEqual(s.entryCount, 2)
    }

    func testLBLCIgnoresOverloadFlagButHonoursLocalityOverload() {
        let (_, svc, d) = T.service("lblc", [(A, 4), (B, 1)])   // list B(1), A(4)
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[B]!)
        // The OVERLOAD flag is not looked at for a cached dest.
        d[B]!.setFlag(.overload)
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[B]!)
        d[B]!.clearFlag(.overload)
        // active > weight alone is not enough when no dest is under half its weight.
        T.setConns(d[B]!, active: 2)
        T.setConns(d[A]!, active: 2)            // 2*2 < 4 is false
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[B]!)
        // Now A is under half its weight: B is "overloaded", re-pick (A) and re-cache.
        T.setConns(d[A]!, active: 1)
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[A]!)
        XCTAssertTrue((svc.scheduler as! LBLCScheduler).cachedDest(for: T.ip("1.1.1.1")) === d[A]!)
    }

    func testLBLCDeletedDestIsReplaced() throws {
        let (table, svc, d) = T.service("lblc", [(A, 1), (B, 1)])
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[B]!)
        try table.deleteDest(from: svc.key, addr: T.ip(B), port: 80)
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[A]!)
        // Weight 0 also invalidates the cached entry.
        T.setWeight(table, svc, d[A]!, 0)
        XCTAssertNil(sched(svc, daddr: "1.1.1.1"))
    }

    func testLBLCGarbageCollection() {
        let (_, svc, _) = T.service("lblc", [(A, 1)])
        let s = svc.scheduler as! LBLCScheduler
        s.expiration = 1000
        _ = sched(svc, daddr: "1.1.1.1", now: 0)
        _ = sched(svc, daddr: "2.2.2.2", now: 500)
        // Runs 1..29 only count (the table is far below 16384 entries).
        for i in 1...29 { s.collectGarbage(now: 60 * Double(i)) }
        XCTAssertEqual(s.entryCount, 2)
        // The 30th run is a full pass: now 1800 >= 0 + 1000 deletes 1.1.1.1;
        // 2.2.2.2 (500 + 1000 > 1800? no: 1500 <= 1800) goes too.
        s.collectGarbage(now: 1800)
        XCTAssertEqual(s.entryCount, 0)
        // Counter restarts at 1: the next full pass is 30 runs later.
        _ = sched(svc, daddr: "3.3.3.3", now: 1800)
        for i in 1...29 { s.collectGarbage(now: 1800 + 60 * Double(i) + 5000) }
        XCTAssertEqual(s.entryCount, 1)
        s.collectGarbage(now: 10_000)
        XCTAssertEqual(s.entryCount, 0)
    }

    func testLBLCFullPassKeepsRecentEntries() {
        let (_, svc, _) = T.service("lblc", [(A, 1)])
        let s = svc.scheduler as! LBLCScheduler
        s.expiration = 1000
        _ = sched(svc, daddr: "1.1.1.1", now: 0)
        _ = sched(svc, daddr: "2.2.2.2", now: 900)
        for _ in 1...29 { s.collectGarbage(now: 1000) }
        s.collectGarbage(now: 1000)            // full pass: 1000 >= 0+1000 yes, 1000 >= 1900 no
        XCTAssertEqual(s.entryCount, 1)
        XCTAssertNil(s.cachedDest(for: T.ip("1.1.1.1")))
        XCTAssertNotNil(s.cachedDest(for: T.ip("2.2.2.2")))
    }

    func testLBLCPartialCollectionWhenOverFull() {
        let (_, svc, _) = T.service("lblc", [(A, 1)])
        let s = svc.scheduler as! LBLCScheduler
        // 16384 + 300 entries, all idle for > 6 minutes.
        let n = 16384 + 300
        for i in 0..<n {
            let a = IPAddress(v4: 0x0B00_0000 &+ UInt32(i))
            _ = s.schedule(svc, ScheduleInput(proto: .tcp, saddr: T.ip("1.2.3.4"), sport: 1, daddr: a, dport: 80, now: 0))
        }
        XCTAssertEqual(s.entryCount, n)
        s.collectGarbage(now: 400)
        // goal = 300 * 4 / 3 = 400, whole buckets are swept until it is met.
        XCTAssertLessThanOrEqual(s.entryCount, n - 400)
        XCTAssertGreaterThan(s.entryCount, n - 400 - 100)
    }

    func testLBLCRSetGrowsAndShrinks() {
        let (_, svc, d) = T.service("lblcr", [(A, 4), (B, 1)])   // list B(1), A(4)
        let s = svc.scheduler as! LBLCRScheduler
        s.expiration = 100
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1", now: 0) === d[B]!)
        XCTAssertEqual(s.cachedSet(for: T.ip("1.1.1.1")).count, 1)
        // B "overloaded" in the locality sense: wlc picks A, added at the set head.
        T.setConns(d[B]!, active: 2)
        T.setConns(d[A]!, active: 1)
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1", now: 10) === d[A]!)
        let set = s.cachedSet(for: T.ip("1.1.1.1"))
        XCTAssertEqual(set.count, 2)
        XCTAssertTrue(set[0] === d[A]!)
        XCTAssertTrue(set[1] === d[B]!)
        // Inside the set the least loaded member is used (A: 256/4 vs B: 512/1).
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1", now: 20) === d[A]!)
        // After lblcr_expiration without change the most loaded member (B) is dropped.
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1", now: 10 + 100) === d[A]!)   // not yet: needs now > lastmod + exp
        XCTAssertEqual(s.cachedSet(for: T.ip("1.1.1.1")).count, 2)
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1", now: 111) === d[A]!)
        let after = s.cachedSet(for: T.ip("1.1.1.1"))
        XCTAssertEqual(after.count, 1)
        XCTAssertTrue(after[0] === d[A]!)
    }

    func testLBLCRSetMinNeedsAvailable() throws {
        let (table, svc, d) = T.service("lblcr", [(A, 1), (B, 1)])
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[B]!)
        try table.deleteDest(from: svc.key, addr: T.ip(B), port: 80)
        XCTAssertTrue(sched(svc, daddr: "1.1.1.1") === d[A]!)
        let set = (svc.scheduler as! LBLCRScheduler).cachedSet(for: T.ip("1.1.1.1"))
        XCTAssertEqual(set.count, 2)     // B stays a member until expiry drops it
        XCTAssertTrue(set[0] === d[A]!)
    }

    func testLBLCRGarbageCollection() {
        let (_, svc, _) = T.service("lblcr", [(A, 1)])
        let s = svc.scheduler as! LBLCRScheduler
        s.expiration = 50
        _ = sched(svc, daddr: "1.1.1.1", now: 0)
        for _ in 1...29 { s.collectGarbage(now: 100) }
        XCTAssertEqual(s.entryCount, 1)
        s.collectGarbage(now: 100)
        XCTAssertEqual(s.entryCount, 0)
    }
}
