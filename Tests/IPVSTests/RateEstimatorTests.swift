import XCTest
@testable import IPVS

final class RateEstimatorTests: XCTestCase {
    func totals(conns: UInt64 = 0, pkts: UInt64 = 0, bytes: UInt64 = 0) -> StatsCounters {
        StatsCounters(conns: conns, inPackets: pkts, outPackets: pkts / 2, inBytes: bytes, outBytes: bytes * 2)
    }

    func testEWMAArithmetic() {
        var e = RateEstimator()
        // 10 conns in 2 s: rate = 10 << 9 = 5120; e = 0 + 5120 >> 2 = 1280; read (1280+511)>>10 = 1.
        e.tick(totals(conns: 10, pkts: 100, bytes: 1000))
        XCTAssertEqual(e.cps, 1280)
        XCTAssertEqual(e.rates.cps, 1)
        // inpps: 100 << 9 = 51200 -> 12800 -> (12800+511)>>10 = 12
        XCTAssertEqual(e.inpps, 12800)
        XCTAssertEqual(e.rates.inpps, 12)
        XCTAssertEqual(e.rates.outpps, 6)        // 50<<9 = 25600 -> 6400 -> 6
        // bytes: 1000 << 4 = 16000 -> 4000 -> (4000 + 15) >> 5 = 125
        XCTAssertEqual(e.inbps, 4000)
        XCTAssertEqual(e.rates.inbps, 125)
        XCTAssertEqual(e.rates.outbps, 250)
        // Same delta again: e = 1280 + (5120 - 1280) >> 2 = 2240 -> 2.
        e.tick(totals(conns: 20, pkts: 200, bytes: 2000))
        XCTAssertEqual(e.cps, 2240)
        XCTAssertEqual(e.rates.cps, 2)
        // No traffic: e = 2240 + (0 - 2240) >> 2 = 1680 (signed shift).
        e.tick(totals(conns: 20, pkts: 200, bytes: 2000))
        XCTAssertEqual(e.cps, 1680)
    }

    func testNegativeShiftRoundsDown() {
        var e = RateEstimator()
        e.tick(totals(conns: 1))          // 512 >> 2 = 128
        XCTAssertEqual(e.cps, 128)
        e.tick(totals(conns: 1))          // 128 + (-128 >> 2) = 96
        XCTAssertEqual(e.cps, 96)
        e.tick(totals(conns: 1))          // 96 - 24 = 72
        XCTAssertEqual(e.cps, 72)
        var f = RateEstimator()
        f.tick(totals(conns: 3))          // 1536 >> 2 = 384
        f.tick(totals(conns: 3))          // 384 + (-384 >> 2) = 288
        f.tick(totals(conns: 3))          // 216
        f.tick(totals(conns: 3))          // 162
        f.tick(totals(conns: 3))          // 162 + (-162 >> 2) = 162 - 41 = 121 (floor of -40.5)
        XCTAssertEqual(f.cps, 121)
    }

    func testSteadyStateConverges() {
        var e = RateEstimator()
        var t: UInt64 = 0
        for _ in 0..<60 { t += 2000; e.tick(totals(conns: t, pkts: t, bytes: t * 100)) }
        XCTAssertEqual(e.rates.cps, 1000)
        XCTAssertEqual(e.rates.inpps, 1000)
        XCTAssertEqual(e.rates.inbps, 100_000)
    }

    func testZeroRestartsFromCurrentTotals() {
        var e = RateEstimator()
        e.tick(totals(conns: 100))
        XCTAssertGreaterThan(e.cps, 0)
        e.zero(totals(conns: 500))
        XCTAssertEqual(e.cps, 0)
        XCTAssertEqual(e.last.conns, 500)
        e.tick(totals(conns: 510))
        XCTAssertEqual(e.cps, 1280)
    }
}
