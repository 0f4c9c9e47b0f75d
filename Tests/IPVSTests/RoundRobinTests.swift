import XCTest
@testable import IPVS

final class RoundRobinTests: XCTestCase {
    // rr: added A, B, C => list C, B, A => picks C, B, A, C, ...
    func testRRListOrder() {
        let (_, svc, d) = T.service("rr", [("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1)])
        XCTAssertEqual(svc.dests.map { $0.addr.description }, ["10.0.0.3", "10.0.0.2", "10.0.0.1"])
        XCTAssertEqual(T.picks(svc, 7, d), ["10.0.0.3", "10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.2", "10.0.0.1", "10.0.0.3"])
    }

    func testRRSkipsWeightZeroAndOverload() {
        let (table, svc, d) = T.service("rr", [("A", 1), ("B", 1), ("C", 1)].map { ("10.0.0.\($0.0 == "A" ? 1 : $0.0 == "B" ? 2 : 3)", $0.1) })
        T.setWeight(table, svc, d["10.0.0.2"]!, 0)
        XCTAssertEqual(T.picks(svc, 4, d), ["10.0.0.3", "10.0.0.1", "10.0.0.3", "10.0.0.1"])
        d["10.0.0.3"]!.setFlag(.overload)
        XCTAssertEqual(T.picks(svc, 2, d), ["10.0.0.1", "10.0.0.1"])
        d["10.0.0.1"]!.setFlag(.overload)
        XCTAssertEqual(T.picks(svc, 1, d), ["-"])
    }

    func testRRSingleDestRepeats() {
        let (_, svc, d) = T.service("rr", [("10.0.0.1", 1)])
        XCTAssertEqual(T.picks(svc, 3, d), ["10.0.0.1", "10.0.0.1", "10.0.0.1"])
    }

    func testRREmptyFails() {
        let (_, svc, d) = T.service("rr", [])
        XCTAssertEqual(T.picks(svc, 1, d), ["-"])
    }

    // Deleting the dest at the position moves it back to the predecessor.
    func testRRDeleteAtPointer() throws {
        let (table, svc, d) = T.service("rr", [("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1)])
        XCTAssertEqual(T.picks(svc, 2, d), ["10.0.0.3", "10.0.0.2"])
        try table.deleteDest(from: svc.key, addr: T.ip("10.0.0.2"), port: 80)
        // Position is now C (B's predecessor), so A comes next, then C.
        XCTAssertEqual(T.picks(svc, 3, d), ["10.0.0.1", "10.0.0.3", "10.0.0.1"])
    }

    func testRRDeleteHeadAtPointer() throws {
        let (table, svc, d) = T.service("rr", [("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1)])
        XCTAssertEqual(T.picks(svc, 1, d), ["10.0.0.3"])
        try table.deleteDest(from: svc.key, addr: T.ip("10.0.0.3"), port: 80)
        // Back to the head: B, A, B.
        XCTAssertEqual(T.picks(svc, 3, d), ["10.0.0.2", "10.0.0.1", "10.0.0.2"])
    }

    // A dest added later sits at the head: reached when the walk wraps.
    func testRRAddDuringRotation() throws {
        var (table, svc, d) = T.service("rr", [("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1)])
        XCTAssertEqual(T.picks(svc, 1, d), ["10.0.0.3"])
        d["10.0.0.4"] = try table.addDest(to: svc.key, DestSpec(addr: T.ip("10.0.0.4"), port: 80))
        XCTAssertEqual(T.picks(svc, 5, d), ["10.0.0.2", "10.0.0.1", "10.0.0.4", "10.0.0.3", "10.0.0.2"])
        _ = table
    }

    // wrr, A=4, B=3, C=2 built with -A then -a A, -a B, -a C.
    func testWRRIpvsadmBuilt() {
        let (_, svc, d) = T.service("wrr", [("10.0.0.1", 4), ("10.0.0.2", 3), ("10.0.0.3", 2)])
        let names = ["10.0.0.1": "A", "10.0.0.2": "B", "10.0.0.3": "C"]
        let seq = T.picks(svc, 21, d).map { names[$0]! }.joined(separator: " ")
        XCTAssertEqual(seq, "C B A A B A C B A C B A A B A C B A C B A")
    }

    // Scheduler bound while the dests exist: init_service starts at cw = mw.
    func testWRRInitService() throws {
        let (table, svc, d) = T.service("rr", [("10.0.0.1", 4), ("10.0.0.2", 3), ("10.0.0.3", 2)])
        var spec = ServiceSpec(key: svc.key)
        spec.scheduler = "wrr"
        try table.editService(spec)
        let names = ["10.0.0.1": "A", "10.0.0.2": "B", "10.0.0.3": "C"]
        let seq = T.picks(svc, 18, d).map { names[$0]! }.joined(separator: " ")
        XCTAssertEqual(seq, "A B A C B A C B A A B A C B A C B A")
    }

    // A=4, B=2: di = 2, mw = 3.
    func testWRRGcdTwo() {
        let (_, svc, d) = T.service("wrr", [("10.0.0.1", 4), ("10.0.0.2", 2)])
        let w = svc.scheduler as! WRRScheduler
        XCTAssertEqual(w.di, 2)
        XCTAssertEqual(w.mw, 3)
        let names = ["10.0.0.1": "A", "10.0.0.2": "B"]
        XCTAssertEqual(T.picks(svc, 9, d).map { names[$0]! }.joined(separator: " "), "B A A B A A B A A")
    }

    func testWRRAllWeightZeroFails() {
        let (table, svc, d) = T.service("wrr", [("10.0.0.1", 1), ("10.0.0.2", 1)])
        T.setWeight(table, svc, d["10.0.0.1"]!, 0)
        T.setWeight(table, svc, d["10.0.0.2"]!, 0)
        XCTAssertEqual((svc.scheduler as! WRRScheduler).mw, 0)
        XCTAssertEqual(T.picks(svc, 2, d), ["-", "-"])
    }

    func testWRRWeightZeroNeverPicked() {
        let (table, svc, d) = T.service("wrr", [("10.0.0.1", 2), ("10.0.0.2", 1), ("10.0.0.3", 1)])
        T.setWeight(table, svc, d["10.0.0.2"]!, 0)
        let p = T.picks(svc, 12, d)
        XCTAssertFalse(p.contains("10.0.0.2"))
        XCTAssertEqual(p.filter { $0 == "10.0.0.1" }.count, 8)
        XCTAssertEqual(p.filter { $0 == "10.0.0.3" }.count, 4)
    }

    func testWRROverloadedSkippedAndAllOverloadedFails() {
        let (_, svc, d) = T.service("wrr", [("10.0.0.1", 1), ("10.0.0.2", 1)])
        d["10.0.0.2"]!.setFlag(.overload)
        XCTAssertEqual(T.picks(svc, 3, d), ["10.0.0.1", "10.0.0.1", "10.0.0.1"])
        d["10.0.0.1"]!.setFlag(.overload)
        XCTAssertEqual(T.picks(svc, 2, d), ["-", "-"])
        d["10.0.0.2"]!.clearFlag(.overload)
        XCTAssertEqual(T.picks(svc, 2, d), ["10.0.0.2", "10.0.0.2"])
    }

    // dest_changed keeps cw = 1 for an ipvsadm-built service; a weight
    // update resets the position to the head.
    func testWRRDestChangedState() {
        let (table, svc, d) = T.service("wrr", [("10.0.0.1", 4), ("10.0.0.2", 3)])
        let w = svc.scheduler as! WRRScheduler
        XCTAssertEqual(w.cw, 1)
        XCTAssertEqual(w.mw, 4)
        XCTAssertEqual(T.picks(svc, 1, d), ["10.0.0.2"])
        T.setWeight(table, svc, d["10.0.0.2"]!, 6)   // di = 2, mw = 5, cw = (1/2)*2+1 = 1
        XCTAssertEqual(w.di, 2)
        XCTAssertEqual(w.mw, 5)
        XCTAssertEqual(w.cw, 1)
        XCTAssertEqual(T.picks(svc, 1, d), ["10.0.0.2"])   // from the head again
    }
}
