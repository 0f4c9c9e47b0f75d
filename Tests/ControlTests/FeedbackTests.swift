import XCTest
@testable import Control
import IPVS
#if canImport(Glibc)
import Glibc
#endif

final class FeedbackTests: XCTestCase {
    func testReportParsing() throws {
        let r = try FeedbackReport.parse("addr=198.18.1.2 cpu=0.25 load1=0.5 ncpu=2 mem=0.6 conns=17 extra=1\n").get()
        XCTAssertEqual(r.address, v4("198.18.1.2"))
        XCTAssertEqual(r.cpu, 0.25)
        XCTAssertEqual(r.load1, 0.5)
        XCTAssertEqual(r.ncpu, 2)
        XCTAssertEqual(r.mem, 0.6)
        XCTAssertEqual(r.conns, 17)
        XCTAssertNil(try FeedbackReport.parse("cpu=0.5").get().address)
        for bad in ["cpu=1.5", "cpu", "addr=1.2.3 cpu=0", "mem=-1", "addr=10.0.0.1", "", "load1=nan", "ncpu=0 cpu=0"] {
            if case .success = FeedbackReport.parse(bad) { XCTFail("accepted '\(bad)'") }
        }
    }

    func testSettingsParsing() throws {
        let s = try FeedbackSettings.parse("a=2,scale=4,min_weight=0,threshold=0.1,period=0.5,cpu=1,load=0,mem=0,conns=0,stale=3,conns_capacity=50").get()
        XCTAssertEqual(s.a, 2); XCTAssertEqual(s.scale, 4); XCTAssertEqual(s.minWeight, 0)
        XCTAssertEqual(s.threshold, 0.1); XCTAssertEqual(s.period, 0.5); XCTAssertEqual(s.cpu, 1)
        XCTAssertEqual(s.stale, 3); XCTAssertEqual(s.connsCapacity, 50)
        XCTAssertEqual(try FeedbackSettings.parse("").get(), FeedbackSettings())
        for bad in ["a", "a=x", "bogus=1", "period=0", "a=-1"] {
            if case .success = FeedbackSettings.parse(bad) { XCTFail("accepted '\(bad)'") }
        }
    }

    func testAggregateLoad() throws {
        let s = FeedbackSettings()   // cpu 0.4, load 0.2, mem 0.3, conns 0.1
        let r = try FeedbackReport.parse("cpu=0.5 load1=3 ncpu=2 mem=0.2 conns=500").get()
        XCTAssertEqual(s.aggregateLoad(r)!, 0.4 * 0.5 + 0.2 * 1.5 + 0.3 * 0.2 + 0.1 * 0.5, accuracy: 1e-12)
        // Missing metrics: the others' coefficients are renormalised.
        let cpuOnly = try FeedbackReport.parse("cpu=0.5").get()
        XCTAssertEqual(s.aggregateLoad(cpuOnly)!, 0.5, accuracy: 1e-12)
        // Each metric is capped at 4.
        let huge = try FeedbackReport.parse("load1=100 ncpu=1").get()
        XCTAssertEqual(s.aggregateLoad(huge)!, 4, accuracy: 1e-12)
        var noCPU = s
        noCPU.cpu = 0
        XCTAssertNil(noCPU.aggregateLoad(cpuOnly))
    }

    func testTheRule() {
        let s = FeedbackSettings()   // A 5, scale 10, min 1
        // At the target load the weight stays.
        XCTAssertEqual(s.step(weight: 10, initial: 10, load: 0.95), 10, accuracy: 1e-12)
        // w + A × ∛(0.95 − L)
        XCTAssertEqual(s.step(weight: 10, initial: 10, load: 0.95 - 0.125), 10 + 5 * 0.5, accuracy: 1e-9)
        XCTAssertEqual(s.step(weight: 10, initial: 10, load: 0.95 + 0.008), 10 - 5 * 0.2, accuracy: 1e-9)
        XCTAssertEqual(s.step(weight: 10, initial: 10, load: 0), 10 + 5 * cbrt(0.95), accuracy: 1e-9)
        // Bounded: at most scale × initial, at least min_weight.
        XCTAssertEqual(s.step(weight: 99, initial: 10, load: 0), 100)
        XCTAssertEqual(s.step(weight: 2, initial: 10, load: 4), 1)
        // Significance: more than 5 % of the current weight, and a real change.
        XCTAssertFalse(s.significant(current: 100, target: 105))
        XCTAssertTrue(s.significant(current: 100, target: 106))
        XCTAssertTrue(s.significant(current: 1, target: 2))
        XCTAssertFalse(s.significant(current: 7, target: 7))
    }

    func testAdjustingATable() throws {
        let table = IPVSTable()
        for l in ["-A -t 10.0.0.1:80 -s wrr", "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 4",
                  "-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 4", "-a -t 10.0.0.1:80 -r 10.0.1.3:80 -m -w 4",
                  "-a -t 10.0.0.1:80 -r 10.0.1.4:80 -m -w 0",
                  "-A -u 10.0.0.1:53 -s rr", "-a -u 10.0.0.1:53 -r 10.0.1.1:53 -g -w 10 -x 50 -y 5"] {
            XCTAssertEqual(adm(l, table).2, 0, l)
        }
        var logs: [String] = []
        let fb = FeedbackController(settings: FeedbackSettings(), clock: { 0 }, log: { logs.append($0) })
        fb.receive("cpu=1 load1=8 ncpu=2 mem=1 conns=4000", from: v4("10.0.1.1"), at: 0)    // overloaded
        fb.receive("addr=10.0.1.2 cpu=0 mem=0 load1=0 conns=0", from: v4("192.0.2.7"), at: 0) // idle, addr given
        fb.receive("cpu=0.95 mem=0.95 load1=0.95 conns=950", from: v4("10.0.1.3"), at: 0)  // exactly at target
        fb.receive("cpu=0", from: v4("10.0.1.4"), at: 0)                                    // weight 0: left alone
        fb.receive("cpu=2", from: v4("10.0.1.9"), at: 0)                                    // refused
        let s = FeedbackSettings()
        let overloaded = s.aggregateLoad(try FeedbackReport.parse("cpu=1 load1=8 ncpu=2 mem=1 conns=4000").get())!
        var e1 = 4.0, e2 = 4.0, e53 = 10.0
        func weights() -> [Int32] {
            let tcp = table.service(for: .address(proto: .tcp, addr: v4("10.0.0.1"), port: 80))!
            let udp = table.service(for: .address(proto: .udp, addr: v4("10.0.0.1"), port: 53))!
            return ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"].map { a in tcp.dests.first { $0.addr == v4(a) }!.weight }
                + [udp.dests[0].weight]
        }
        for round in 1...12 {
            fb.adjust(table: table, now: Double(round), apply: { c in
                var o = "", e = ""
                XCTAssertEqual(execute(c, on: table, environment: testEnv(), output: &o, errors: &e), 0, e)
            })
            e1 = s.step(weight: e1, initial: 4, load: overloaded)
            e2 = s.step(weight: e2, initial: 4, load: 0)
            e53 = s.step(weight: e53, initial: 10, load: overloaded)
            _ = round
        }
        // Stale after 15 s: no more changes.
        XCTAssertEqual(weights(), [Int32(e1.rounded()), Int32(e2.rounded()), 4, 0, Int32(e53.rounded())])
        XCTAssertEqual(weights(), [1, 40, 4, 0, 1])
        // Thresholds and forwarding are kept by -e.
        let udp = table.service(for: .address(proto: .udp, addr: v4("10.0.0.1"), port: 53))!.dests[0]
        XCTAssertEqual(udp.upperThreshold, 50)
        XCTAssertEqual(udp.lowerThreshold, 5)
        XCTAssertEqual(udp.forward, .droute)
        XCTAssertTrue(logs.contains { $0.hasPrefix("feedback: report from 10.0.1.9 refused") }, "\(logs)")
        XCTAssertTrue(logs.contains { $0.hasPrefix("feedback: TCP 10.0.0.1:80 real server 10.0.1.2:80: load 0.000 value 4.000 -> 8.915 (initial 4); weight 4 -> 9") }, "\(logs)")
        // An administrator's change is taken as the new current value.
        XCTAssertEqual(adm("-e -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 20", table).2, 0)
        fb.receive("addr=10.0.1.2 cpu=0.95", from: v4("10.0.1.2"), at: 100)
        fb.receive("cpu=0", from: v4("10.0.1.1"), at: 100)
        fb.adjust(table: table, now: 100, apply: { c in var o = "", e = ""; _ = execute(c, on: table, environment: testEnv(), output: &o, errors: &e) })
        XCTAssertEqual(weights()[1], 20)
        XCTAssertEqual(weights()[0], Int32(s.step(weight: e1, initial: 4, load: 0).rounded()))
        fb.adjust(table: table, now: 200, apply: { _ in XCTFail("stale reports must not change weights") })
    }

    func testListenerReceivesDatagrams() throws {
        var logs: [String] = []
        let fb = FeedbackController(settings: FeedbackSettings(), log: { logs.append($0) })
        // Find a free port by binding port 0 first.
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(probe, $0, &len) } }
        let port = UInt16(bigEndian: sa.sin_port)
        close(probe)
        try fb.listen(port: port)
        defer { fb.stop() }
        let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(s) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = port.bigEndian
        to.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let msg = Array("cpu=0.5 mem=0.25\n".utf8)
        _ = withUnsafePointer(to: &to) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in msg.withUnsafeBytes { sendto(s, $0.baseAddress, $0.count, 0, a, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        let deadline = HealthProbe.now() + 3
        while HealthProbe.now() < deadline && !fb.statusJSON().contains("127.0.0.1") { usleep(10_000) }
        let json = fb.statusJSON()
        XCTAssertTrue(json.contains("\"address\":\"127.0.0.1\""), json)
        XCTAssertTrue(json.contains("\"cpu\":0.500"), json)
    }
}
