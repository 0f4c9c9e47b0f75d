import XCTest
@testable import IPVS

final class AccountingTests: XCTestCase {
    func dest(u: UInt32 = 0, l: UInt32 = 0) -> Dest {
        Dest(addr: T.ip("10.0.0.1"), port: 80, id: 1, upperThreshold: u, lowerThreshold: l)
    }

    func testBindCountsInactiveOrPersistent() {
        let d = dest()
        d.bindConnection(isTemplate: false)
        d.bindConnection(isTemplate: true)
        XCTAssertEqual(d.inactive, 1)
        XCTAssertEqual(d.persistent, 1)
        XCTAssertEqual(d.active, 0)
        d.moveToActive()
        XCTAssertEqual(d.active, 1); XCTAssertEqual(d.inactive, 0)
        d.moveToInactive()
        XCTAssertEqual(d.active, 0); XCTAssertEqual(d.inactive, 1)
        d.unbindConnection(isTemplate: false, wasInactive: true)
        d.unbindConnection(isTemplate: true, wasInactive: true)
        XCTAssertEqual(d.referenceCount, 0)
    }

    func testUpperThresholdSetsOverload() {
        let d = dest(u: 3)
        d.bindConnection(isTemplate: false)
        d.bindConnection(isTemplate: false)
        XCTAssertFalse(d.isOverloaded)
        d.bindConnection(isTemplate: false)          // total 3 >= 3
        XCTAssertTrue(d.isOverloaded)
    }

    func testTemplatesNeverCount() {
        let d = dest(u: 2)
        for _ in 0..<5 { d.bindConnection(isTemplate: true) }
        XCTAssertFalse(d.isOverloaded)
        d.bindConnection(isTemplate: false)
        XCTAssertFalse(d.isOverloaded)
        d.bindConnection(isTemplate: false)
        XCTAssertTrue(d.isOverloaded)
        // A template going away re-evaluates the clear rule with total 2: 8 < 6 false.
        d.unbindConnection(isTemplate: true, wasInactive: false)
        XCTAssertTrue(d.isOverloaded)
    }

    func testClearAtThreeQuartersOfUpper() {
        let d = dest(u: 4)
        for _ in 0..<4 { d.bindConnection(isTemplate: false) }
        XCTAssertTrue(d.isOverloaded)
        d.unbindConnection(isTemplate: false, wasInactive: true)   // 3: 12 < 12 false
        XCTAssertTrue(d.isOverloaded)
        d.unbindConnection(isTemplate: false, wasInactive: true)   // 2: 8 < 12
        XCTAssertFalse(d.isOverloaded)
    }

    func testClearBelowLowerThreshold() {
        let d = dest(u: 4, l: 2)
        for _ in 0..<4 { d.bindConnection(isTemplate: false) }
        d.moveToActive(); d.moveToActive()
        XCTAssertTrue(d.isOverloaded)
        d.unbindConnection(isTemplate: false, wasInactive: false)   // 3
        d.unbindConnection(isTemplate: false, wasInactive: true)    // 2: not < 2
        XCTAssertTrue(d.isOverloaded)
        XCTAssertEqual(d.active, 1); XCTAssertEqual(d.inactive, 1)
        d.unbindConnection(isTemplate: false, wasInactive: false)   // 1 < 2
        XCTAssertFalse(d.isOverloaded)
    }

    func testNoThresholdsAlwaysClears() {
        let d = dest()
        d.setFlag(.overload)
        d.bindConnection(isTemplate: false)
        d.bindConnection(isTemplate: false)
        d.unbindConnection(isTemplate: false, wasInactive: true)
        XCTAssertFalse(d.isOverloaded)
    }

    func testAccountTransition() {
        let d = dest()
        d.bindConnection(isTemplate: false)
        var inactive = true
        inactive = d.accountTransition(inactive: inactive, to: .synRecv)
        XCTAssertFalse(inactive); XCTAssertEqual(d.active, 1); XCTAssertEqual(d.inactive, 0)
        inactive = d.accountTransition(inactive: inactive, to: .established)
        XCTAssertFalse(inactive); XCTAssertEqual(d.active, 1)
        inactive = d.accountTransition(inactive: inactive, to: .finWait)
        XCTAssertTrue(inactive); XCTAssertEqual(d.active, 0); XCTAssertEqual(d.inactive, 1)
        inactive = d.accountTransition(inactive: inactive, to: .timeWait)
        XCTAssertTrue(inactive); XCTAssertEqual(d.inactive, 1)
    }
}
