import XCTest
@testable import IPVS

final class LeastConnectionTests: XCTestCase {
    let A = "10.0.0.1", B = "10.0.0.2", C = "10.0.0.3"

    func pick(_ svc: Service, _ names: [String: Dest]) -> String { T.picks(svc, 1, names)[0] }

    // lc overhead is active*256 + inactive, not *32.
    func testLCOverhead() {
        let (_, svc, d) = T.service("lc", [(A, 1), (B, 1)])   // list B, A
        T.setConns(d[A]!, active: 1, inactive: 0)    // 256
        T.setConns(d[B]!, active: 0, inactive: 255)  // 255
        XCTAssertEqual(pick(svc, d), B)
        T.setConns(d[B]!, active: 0, inactive: 257)  // 257
        XCTAssertEqual(pick(svc, d), A)
        T.setConns(d[B]!, active: 0, inactive: 40)   // 40 < 256 (with *32 A's 32 would win)
        T.setConns(d[A]!, active: 1, inactive: 0)
        XCTAssertEqual(pick(svc, d), B)
    }

    func testLCTieFirstInListAndSkips() {
        let (table, svc, d) = T.service("lc", [(A, 1), (B, 5), (C, 1)])   // list C, B, A
        XCTAssertEqual(pick(svc, d), C)                 // all zero: first in list
        T.setWeight(table, svc, d[C]!, 0)
        XCTAssertEqual(pick(svc, d), B)
        d[B]!.setFlag(.overload)
        XCTAssertEqual(pick(svc, d), A)
        d[A]!.setFlag(.overload)
        XCTAssertEqual(pick(svc, d), "-")
    }

    func testWLC() {
        let (table, svc, d) = T.service("wlc", [(A, 1), (B, 2), (C, 3)])  // list C, B, A
        // C: 3 active (768/3=256), B: 1 active (256/2=128), A: 0 -> A
        T.setConns(d[C]!, active: 3); T.setConns(d[B]!, active: 1)
        XCTAssertEqual(pick(svc, d), A)
        // Tie between B (256/2) and C (384/3 = 128): B 1 active + 0 -> 128; C 1 active+128 inactive = 384/3=128
        T.setConns(d[A]!, active: 1)                // 256/1
        T.setConns(d[C]!, active: 1, inactive: 128) // 384/3 = 128
        XCTAssertEqual(pick(svc, d), C)              // C first in list, tie keeps it
        // Weight 0 can never win, even with no conns.
        T.setWeight(table, svc, d[A]!, 0)
        T.setConns(d[A]!, active: 0)
        XCTAssertEqual(pick(svc, d), C)
        // The first eligible dest must have weight > 0: C weight 0 is not a start.
        T.setWeight(table, svc, d[C]!, 0)
        XCTAssertEqual(pick(svc, d), B)
        d[B]!.setFlag(.overload)
        XCTAssertEqual(pick(svc, d), "-")
    }

    func testSEDIgnoresInactive() {
        let (_, svc, d) = T.service("sed", [(A, 1), (B, 3)])   // list B, A
        T.setConns(d[A]!, active: 0, inactive: 1000)   // (0+1)/1 = 1
        T.setConns(d[B]!, active: 2)                   // (2+1)/3 = 1 -> tie keeps B
        XCTAssertEqual(pick(svc, d), B)
        T.setConns(d[B]!, active: 3)                   // 4/3 > 1
        XCTAssertEqual(pick(svc, d), A)
    }

    func testNQFirstIdleWins() {
        let (table, svc, d) = T.service("nq", [(A, 100), (B, 1), (C, 1)])  // list C, B, A
        T.setConns(d[C]!, active: 1)
        // B idle (weight 1) returned at once although A is idle with weight 100.
        XCTAssertEqual(pick(svc, d), B)
        T.setConns(d[B]!, active: 1)
        XCTAssertEqual(pick(svc, d), A)
        T.setConns(d[A]!, active: 150)     // A: 151/100 = 1.51, C: 2/1, B: 2/1 -> A
        XCTAssertEqual(pick(svc, d), A)
        T.setConns(d[A]!, active: 250)     // 251/100 > 2 -> C (first of the two equal)
        XCTAssertEqual(pick(svc, d), C)
        // Idle but weight 0: skipped.
        T.setWeight(table, svc, d[B]!, 0)
        T.setConns(d[B]!, active: 0)
        XCTAssertEqual(pick(svc, d), C)
        // Inactive conns do not make a dest busy.
        T.setConns(d[A]!, active: 0, inactive: 99)
        XCTAssertEqual(pick(svc, d), A)
    }

    func testFO() {
        let (table, svc, d) = T.service("fo", [(A, 5), (B, 7), (C, 7)])  // list C, B, A
        XCTAssertEqual(pick(svc, d), C)     // first of the equal highest
        d[C]!.setFlag(.overload)
        XCTAssertEqual(pick(svc, d), B)
        T.setWeight(table, svc, d[B]!, 0)
        XCTAssertEqual(pick(svc, d), A)
        T.setWeight(table, svc, d[A]!, 0)
        XCTAssertEqual(pick(svc, d), "-")
    }

    func testOVF() {
        let (table, svc, d) = T.service("ovf", [(A, 2), (B, 3)])   // list B, A
        XCTAssertEqual(pick(svc, d), B)
        T.setConns(d[B]!, active: 3)            // active == weight still allowed
        XCTAssertEqual(pick(svc, d), B)
        T.setConns(d[B]!, active: 4)            // overflows
        XCTAssertEqual(pick(svc, d), A)
        T.setConns(d[A]!, active: 3, inactive: 500)
        XCTAssertEqual(pick(svc, d), "-")
        T.setConns(d[A]!, active: 0, inactive: 500)   // UDP-style inactive never overflows
        XCTAssertEqual(pick(svc, d), A)
        T.setWeight(table, svc, d[A]!, 0)
        XCTAssertEqual(pick(svc, d), "-")
    }

    func testTWOSStructure() {
        let (_, svc, d) = T.service("twos", [(A, 3), (B, 2), (C, 1)])   // list C(1), B(2), A(3)
        let s = svc.scheduler as! TWOSScheduler
        var draws: [UInt32] = []
        var bounds: [UInt32] = []
        s.randomBelow = { bound in bounds.append(bound); return draws.removeFirst() }
        // r1 = 0 -> C (0 - 1 <= 0), r2 = 6 -> A (6-1-2-3 = 0). Both idle: choice1.
        draws = [0, 6]
        XCTAssertEqual(pick(svc, d), C)
        XCTAssertEqual(bounds, [7, 7])          // total weight + 1
        // C loaded: w2*oh1 = 3*256 > w1*oh2 = 1*0 -> A.
        T.setConns(d[C]!, active: 1)
        draws = [0, 6]
        XCTAssertEqual(pick(svc, d), A)
        // r1 = 2 -> B (2-1-2 <= 0), r2 = 3 -> B too.
        draws = [2, 3]
        XCTAssertEqual(pick(svc, d), B)
        // Overloaded and weight-0 dests are outside the draw.
        d[A]!.setFlag(.overload)
        bounds = []
        draws = [3, 3]
        XCTAssertEqual(pick(svc, d), B)
        XCTAssertEqual(bounds, [4, 4])
        d[B]!.setFlag(.overload); d[C]!.setFlag(.overload)
        XCTAssertEqual(pick(svc, d), "-")
    }

    func testTWOSDefaultRandomStaysInRange() {
        let (_, svc, d) = T.service("twos", [(A, 1), (B, 1)])
        for _ in 0..<200 { XCTAssertNotEqual(pick(svc, d), "-") }
    }
}
