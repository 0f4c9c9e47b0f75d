import XCTest
@testable import IPVS

final class TableTests: XCTestCase {
    func spec(_ key: ServiceKey, _ sched: String = "wlc") -> ServiceSpec {
        var s = ServiceSpec(key: key)
        s.scheduler = sched
        return s
    }

    func destSpec(_ addr: String, _ port: UInt16 = 80, weight: Int32 = 1, u: UInt32 = 0, l: UInt32 = 0,
                  fwd: ForwardMethod = .droute) -> DestSpec {
        var d = DestSpec(addr: T.ip(addr), port: port)
        d.weight = weight; d.upperThreshold = u; d.lowerThreshold = l; d.forward = fwd
        return d
    }

    func assertThrows(_ expected: IPVSError, _ body: () throws -> Void,
                      file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("no error, expected \(expected)", file: file, line: line)
        } catch {
            XCTAssertEqual(error as? IPVSError, expected, file: file, line: line)
        }
    }

    // MARK: services

    func testAddServiceErrors() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        let svc = try t.addService(spec(key))
        XCTAssertTrue(svc.scheduler is WLCScheduler)
        XCTAssertEqual(svc.netmask, 0xFFFF_FFFF)
        assertThrows(.exists) { try t.addService(spec(key)) }
        // EEXIST comes before the scheduler check.
        assertThrows(.exists) { try t.addService(spec(key, "nope")) }
        assertThrows(.notFound) { try t.addService(spec(T.tcpKey("192.168.10.100", 81), "nope")) }
        assertThrows(.fault) { try t.addService(spec(.address(proto: .ip, addr: T.vip, port: 80))) }
        var pe = spec(T.tcpKey("192.168.10.100", 82))
        pe.persistenceEngine = "xyz"
        assertThrows(.notFound) { try t.addService(pe) }
        pe.persistenceEngine = "sip"
        XCTAssertEqual(try t.addService(pe).persistenceEngine, "sip")
    }

    func testIPv6Netmask() throws {
        let t = IPVSTable()
        let key = ServiceKey.address(proto: .tcp, addr: T.ip("2001:db8::1"), port: 80)
        var s = spec(key)
        s.netmask = 0
        assertThrows(.invalid) { try t.addService(s) }
        s.netmask = 129
        assertThrows(.invalid) { try t.addService(s) }
        s.netmask = nil
        XCTAssertEqual(try t.addService(s).netmask, 128)
        s.netmask = 64
        try t.editService(s)
        XCTAssertEqual(t.service(for: key)?.netmask, 64)
        s.netmask = 200
        assertThrows(.invalid) { try t.editService(s) }
        XCTAssertEqual(t.service(for: key)?.netmask, 64)
    }

    func testNoneScheduler() throws {
        let t = IPVSTable()
        let svc = try t.addService(spec(T.tcpKey(), "none"))
        XCTAssertNil(svc.scheduler)
        XCTAssertEqual(svc.schedulerName, "none")
        XCTAssertTrue(Schedulers.isKnown("none"))
        XCTAssertNil(Schedulers.make("none", for: svc))
        XCTAssertNil(Schedulers.make("bogus", for: svc))
        XCTAssertFalse(Schedulers.isKnown("bogus"))
        XCTAssertEqual(Schedulers.names.count, 14)
        for n in Schedulers.names {
            XCTAssertEqual(Schedulers.make(n, for: svc)?.name, n)
        }
    }

    func testEditService() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        let svc = try t.addService(spec(key, "rr"))
        let first = svc.scheduler!
        var s = spec(key, "rr")
        s.flags = [.persistent]; s.timeout = 360; s.netmask = 0xFFFF_FF00
        try t.editService(s)
        XCTAssertTrue(svc.scheduler === first)           // same scheduler: not re-bound
        XCTAssertEqual(svc.flags, [.persistent])
        XCTAssertEqual(svc.timeout, 360)
        XCTAssertEqual(svc.prefixLength, 24)
        s.scheduler = "sh"
        try t.editService(s)
        XCTAssertTrue(svc.scheduler is SHScheduler)
        XCTAssertEqual(svc.schedulerName, "sh")
        s.scheduler = "bad"
        assertThrows(.notFound) { try t.editService(s) }
        XCTAssertEqual(svc.schedulerName, "sh")
        assertThrows(.noSuchService) { try t.editService(spec(T.tcpKey("1.1.1.1", 1))) }
        assertThrows(.fault) { try t.editService(spec(.address(proto: .ip, addr: T.vip, port: 80))) }
    }

    func testDeleteAndFlush() throws {
        let t = IPVSTable()
        try t.addService(spec(T.tcpKey("1.1.1.1", 80)))
        try t.addService(spec(T.tcpKey("1.1.1.2", 80)))
        try t.addService(spec(.fwmark(mark: 5, family: .inet)))
        assertThrows(.noSuchService) { try t.deleteService(T.tcpKey("9.9.9.9", 1)) }
        try t.deleteService(T.tcpKey("1.1.1.1", 80))
        XCTAssertNil(t.service(for: T.tcpKey("1.1.1.1", 80)))
        XCTAssertEqual(t.services.count, 2)
        t.flush()
        XCTAssertTrue(t.services.isEmpty)
        XCTAssertEqual(t.serviceCount, 0)
        XCTAssertEqual(t.portZeroServiceCount, 0)
    }

    func testServiceIdsAreSmallAndReused() throws {
        let t = IPVSTable()
        let a = try t.addService(spec(T.tcpKey("1.1.1.1", 80)))
        let b = try t.addService(spec(T.tcpKey("1.1.1.2", 80)))
        XCTAssertEqual([a.id, b.id], [1, 2])
        try t.deleteService(a.key)
        let c = try t.addService(spec(T.tcpKey("1.1.1.3", 80)))
        XCTAssertEqual(c.id, 1)
        XCTAssertTrue(t.service(id: 1) === c)
    }

    /// Ids stay below IPVSTable.idLimit (the data plane indexes per-id
    /// arrays with them unchecked): one more is ENOMEM, and a freed id is
    /// handed out again.
    func testIdsStopAtTheLimit() throws {
        let t = IPVSTable()
        let n = Int(IPVSTable.idLimit) - 1   // ids 1...65535
        let key = { (i: Int) in T.tcpKey("10.\(i >> 16).\((i >> 8) & 255).\(i & 255)", 80) }
        var last = UInt32(0)
        for i in 0..<n { last = try t.addService(spec(key(i), "rr")).id }
        XCTAssertEqual(last, IPVSTable.idLimit - 1)
        assertThrows(.noMemory) { try t.addService(spec(key(n), "rr")) }
        XCTAssertNil(t.service(for: key(n)))
        try t.deleteService(key(7))
        XCTAssertEqual(try t.addService(spec(key(n), "rr")).id, 8)

        for i in 0...n where i != 7 { try t.addDest(to: key(i), destSpec("192.168.0.1")) }   // n dests
        assertThrows(.noMemory) { try t.addDest(to: key(0), destSpec("192.168.0.2")) }
        XCTAssertEqual(t.service(for: key(0))?.dests.count, 1)
    }

    // MARK: hash order (--nosort)

    func testServiceHashOrder() throws {
        // Independent computation of the bucket: (proto ^ addr ^ (port >> 8) ^ port) & 255.
        func bucket(_ proto: UInt32, _ addr: String, _ port: UInt32) -> Int {
            Int((proto ^ T.ip(addr).v4 ^ (port >> 8) ^ port) & 255)
        }
        XCTAssertEqual(IPVSTable.serviceHash(proto: 6, addr: T.ip("192.168.10.100"), port: 80), bucket(6, "192.168.10.100", 80))
        XCTAssertEqual(bucket(6, "192.168.10.100", 80), 0x32)     // 6 ^ 0x64 ^ 0 ^ 0x50
        let t = IPVSTable()
        let keys: [ServiceKey] = [
            T.tcpKey("192.168.10.100", 80),                          // 0x32
            .address(proto: .udp, addr: T.ip("192.168.10.100"), port: 53),   // 0x11^0x64^0x35 = 0x40
            .fwmark(mark: 5, family: .inet),
            T.tcpKey("10.0.0.1", 1),                                  // 6^1^1 = 6
            T.tcpKey("10.0.0.1", 7),                                  // 6^1^7 = 0 -> bucket 0
            T.tcpKey("10.0.0.7", 1),                                  // 6^7^1 = 0 -> bucket 0, newer
        ]
        for k in keys { try t.addService(spec(k)) }
        let order = t.services.map(\.key)
        XCTAssertEqual(order, [keys[5], keys[4], keys[3], keys[0], keys[1], keys[2]])
    }

    // MARK: lookup

    func testLookupOrder() throws {
        let t = IPVSTable()
        let vip = T.vip
        let web = try t.addService(spec(T.tcpKey("192.168.10.100", 80)))
        XCTAssertTrue(t.lookupService(proto: .tcp, addr: vip, port: 80) === web)
        XCTAssertNil(t.lookupService(proto: .udp, addr: vip, port: 80))
        XCTAssertNil(t.lookupService(proto: .tcp, addr: vip, port: 2000))
        // FTP rule: TCP to port 20 or an unprivileged port falls back to :21.
        let ftp = try t.addService(spec(T.tcpKey("192.168.10.100", 21)))
        XCTAssertTrue(t.lookupService(proto: .tcp, addr: vip, port: 2000) === ftp)
        XCTAssertTrue(t.lookupService(proto: .tcp, addr: vip, port: 20) === ftp)
        XCTAssertNil(t.lookupService(proto: .tcp, addr: vip, port: 1023))
        XCTAssertNil(t.lookupService(proto: .udp, addr: vip, port: 2000))
        XCTAssertTrue(t.lookupService(proto: .tcp, addr: vip, port: 80) === web)
        // Port zero catches the rest.
        let any = try t.addService(spec(.address(proto: .udp, addr: vip, port: 0)))
        XCTAssertTrue(t.lookupService(proto: .udp, addr: vip, port: 5353) === any)
        XCTAssertNil(t.lookupService(proto: .tcp, addr: vip, port: 1023))
        // Fwmark groups are checked first.
        let fwm = try t.addService(spec(.fwmark(mark: 7, family: .inet)))
        t.setFwmarkMatch(mark: 7, proto: .tcp, addr: vip, port: 80)
        XCTAssertTrue(t.lookupService(proto: .tcp, addr: vip, port: 80) === fwm)
        XCTAssertTrue(t.lookupService(proto: .tcp, addr: vip, port: 81) !== fwm)
        t.setFwmarkMatch(mark: 7, proto: .udp, addr: vip, port: 0)
        XCTAssertTrue(t.lookupService(proto: .udp, addr: vip, port: 9999) === fwm)
        XCTAssertEqual(t.fwmarkMatches(mark: 7).count, 2)
        t.removeFwmarkMatch(proto: .tcp, addr: vip, port: 80)
        XCTAssertTrue(t.lookupService(proto: .tcp, addr: vip, port: 80) === web)
        t.removeFwmarkMatches(mark: 7)
        XCTAssertTrue(t.lookupService(proto: .udp, addr: vip, port: 9999) === any)
        // A mark without a service of the packet's family is ignored.
        t.setFwmarkMatch(mark: 8, proto: .tcp, addr: vip, port: 80)
        XCTAssertTrue(t.lookupService(proto: .tcp, addr: vip, port: 80) === web)
    }

    // MARK: dests

    func testDestErrors() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        assertThrows(.noSuchService) { try t.addDest(to: key, self.destSpec("10.0.0.1")) }
        try t.addService(spec(key))
        assertThrows(.range) { try t.addDest(to: key, self.destSpec("10.0.0.1", weight: -1)) }
        assertThrows(.range) { try t.addDest(to: key, self.destSpec("10.0.0.1", u: 5, l: 6)) }
        var gue = destSpec("10.0.0.1", fwd: .tunnel)
        gue.tunnelType = .gue
        assertThrows(.invalid) { try t.addDest(to: key, gue) }
        gue.tunnelPort = 6080
        try t.addDest(to: key, gue)
        assertThrows(.exists) { try t.addDest(to: key, self.destSpec("10.0.0.1")) }
        // Mixed families only for tunnels.
        assertThrows(.invalid) { try t.addDest(to: key, self.destSpec("2001:db8::5")) }
        try t.addDest(to: key, destSpec("2001:db8::5", fwd: .tunnel))
        // edit / delete
        assertThrows(.noSuchDest) { try t.editDest(in: key, self.destSpec("10.0.0.9")) }
        assertThrows(.range) { try t.editDest(in: key, self.destSpec("10.0.0.9", weight: -2)) }
        assertThrows(.noSuchService) { try t.editDest(in: T.tcpKey("1.1.1.1", 1), self.destSpec("10.0.0.1")) }
        assertThrows(.noSuchDest) { try t.deleteDest(from: key, addr: T.ip("10.0.0.9"), port: 80) }
        assertThrows(.noSuchDest) { try t.deleteDest(from: key, addr: T.ip("10.0.0.1"), port: 81) }
        assertThrows(.noSuchService) { try t.deleteDest(from: T.tcpKey("1.1.1.1", 1), addr: T.ip("10.0.0.1"), port: 80) }
    }

    func testDestListNewestFirstAndEditKeepsPlace() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        let svc = try t.addService(spec(key))
        for a in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] { try t.addDest(to: key, destSpec(a)) }
        XCTAssertEqual(svc.dests.map(\.addr.description), ["10.0.0.3", "10.0.0.2", "10.0.0.1"])
        try t.editDest(in: key, destSpec("10.0.0.1", weight: 5, fwd: .masq))
        XCTAssertEqual(svc.dests.map(\.addr.description), ["10.0.0.3", "10.0.0.2", "10.0.0.1"])
        XCTAssertEqual(svc.dests[2].weight, 5)
        XCTAssertEqual(svc.dests[2].forward, .masq)
        XCTAssertTrue(svc.dests.allSatisfy { $0.isAvailable && $0.service === svc })
        XCTAssertTrue(t.dest(in: key, addr: T.ip("10.0.0.2"), port: 80) === svc.dests[1])
    }

    func testLastWeightRule() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        try t.addService(spec(key))
        let d = try t.addDest(to: key, destSpec("10.0.0.1", weight: 3))
        XCTAssertEqual(d.lastWeight, 3)
        try t.editDest(in: key, destSpec("10.0.0.1", weight: 0))
        XCTAssertEqual(d.weight, 0)
        XCTAssertEqual(d.lastWeight, 3)
        try t.editDest(in: key, destSpec("10.0.0.1", weight: 5))
        XCTAssertEqual(d.lastWeight, 5)
        let z = try t.addDest(to: key, destSpec("10.0.0.2", weight: 0))
        XCTAssertEqual(z.lastWeight, 0)
    }

    func testOverloadClearedOnEditPerThresholdRule() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        try t.addService(spec(key))
        let d = try t.addDest(to: key, destSpec("10.0.0.1", u: 10))
        d.setFlag(.overload)
        try t.editDest(in: key, destSpec("10.0.0.1", u: 10))      // same: kept
        XCTAssertTrue(d.isOverloaded)
        try t.editDest(in: key, destSpec("10.0.0.1", u: 8))       // smaller: kept
        XCTAssertTrue(d.isOverloaded)
        try t.editDest(in: key, destSpec("10.0.0.1", u: 9))       // larger than 8: cleared
        XCTAssertFalse(d.isOverloaded)
        d.setFlag(.overload)
        try t.editDest(in: key, destSpec("10.0.0.1", u: 0))       // zero: cleared
        XCTAssertFalse(d.isOverloaded)
        XCTAssertEqual(d.upperThreshold, 0)
    }

    // MARK: trash

    func testTrashRoundTripRestoresCounters() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        let svc = try t.addService(spec(key, "rr"))
        let a = try t.addDest(to: key, destSpec("10.0.0.1", weight: 2))
        try t.addDest(to: key, destSpec("10.0.0.2"))
        a.bindConnection(isTemplate: false); a.moveToActive()
        a.bindConnection(isTemplate: false)
        a.bindConnection(isTemplate: true)
        try t.deleteDest(from: key, addr: a.addr, port: 80)
        XCTAssertFalse(a.isAvailable)
        XCTAssertTrue(a.inTrash)
        XCTAssertEqual(t.trash.count, 1)
        XCTAssertEqual(svc.dests.count, 1)
        XCTAssertTrue(t.dest(id: a.id) === a)
        // Re-adding the same <addr, port> brings the same object back, at the head.
        let back = try t.addDest(to: key, destSpec("10.0.0.1", weight: 7))
        XCTAssertTrue(back === a)
        XCTAssertEqual([a.active, a.inactive, a.persistent], [1, 1, 1])
        XCTAssertTrue(a.isAvailable)
        XCTAssertFalse(a.inTrash)
        XCTAssertEqual(a.weight, 7)
        XCTAssertTrue(svc.dests[0] === a)
        XCTAssertTrue(t.trash.isEmpty)
    }

    func testTrashFromDeletedServiceComesBackToNewService() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        let old = try t.addService(spec(key))
        let a = try t.addDest(to: key, destSpec("10.0.0.1"))
        a.bindConnection(isTemplate: false)
        var raw = StatsCounters(conns: 5, inPackets: 50, outPackets: 0, inBytes: 5000, outBytes: 0)
        t.rawStats = { owner in if case .dest = owner { return raw }; return StatsCounters() }
        try t.deleteService(key)
        XCTAssertFalse(old.isLinked)
        XCTAssertTrue(a.service === old)                 // kept alive while in the trash
        let svc = try t.addService(spec(key))
        XCTAssertNotEqual(svc.id, old.id)                // the old id is still held by the trash
        let back = try t.addDest(to: key, destSpec("10.0.0.1"))
        XCTAssertTrue(back === a)
        XCTAssertTrue(a.service === svc)
        XCTAssertEqual(a.inactive, 1)
        // Bound to another service object: statistics restart from here.
        XCTAssertEqual(t.shownStats(.dest(a)), StatsCounters())
        raw.conns = 6
        XCTAssertEqual(t.shownStats(.dest(a)).conns, 1)
        // The old service's id is free again.
        XCTAssertNil(t.service(id: old.id))
        let other = try t.addService(spec(T.tcpKey("1.1.1.1", 1)))
        XCTAssertEqual(other.id, old.id)
    }

    func testTrashPurge() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        try t.addService(spec(key))
        let a = try t.addDest(to: key, destSpec("10.0.0.1"))
        a.bindConnection(isTemplate: false)
        try t.deleteDest(from: key, addr: a.addr, port: 80)
        // Referenced: never freed.
        XCTAssertTrue(t.purgeTrash(now: 60).isEmpty)
        XCTAssertTrue(t.purgeTrash(now: 1000).isEmpty)
        XCTAssertNil(a.trashIdleSince)
        a.unbindConnection(isTemplate: false, wasInactive: true)
        // First idle sighting starts the clock, freed 120 s later.
        XCTAssertTrue(t.purgeTrash(now: 1060).isEmpty)
        XCTAssertEqual(a.trashIdleSince, 1060)
        XCTAssertTrue(t.purgeTrash(now: 1120).isEmpty)
        let freed = t.purgeTrash(now: 1180)
        XCTAssertEqual(freed.count, 1)
        XCTAssertTrue(freed[0] === a)
        XCTAssertTrue(t.trash.isEmpty)
        XCTAssertNil(t.dest(id: a.id))
        // A new dest of the same address is a new object (and may reuse the id).
        let b = try t.addDest(to: key, destSpec("10.0.0.1"))
        XCTAssertTrue(b !== a)
        XCTAssertEqual(b.id, a.id)
        XCTAssertEqual(b.referenceCount, 0)
    }

    func testDeleteServiceTrashesDestsWithoutSchedulerHooks() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        let svc = try t.addService(spec(key, "rr"))
        let a = try t.addDest(to: key, destSpec("10.0.0.1"))
        let b = try t.addDest(to: key, destSpec("10.0.0.2"))
        try t.deleteService(key)
        XCTAssertNil(svc.scheduler)
        XCTAssertTrue(svc.dests.isEmpty)
        XCTAssertEqual(Set(t.trash.map(\.id)), Set([a.id, b.id]))
        XCTAssertFalse(a.isAvailable || b.isAvailable)
        // Freed after 120 s idle; the service id goes with the last one.
        t.purgeTrash(now: 0)
        t.purgeTrash(now: 120)
        XCTAssertTrue(t.trash.isEmpty)
        XCTAssertNil(t.service(id: svc.id))
    }

    func testDestIdsUniqueAcrossLiveAndTrash() throws {
        let t = IPVSTable()
        let k1 = T.tcpKey("1.1.1.1", 80), k2 = T.tcpKey("1.1.1.2", 80)
        try t.addService(spec(k1)); try t.addService(spec(k2))
        let a = try t.addDest(to: k1, destSpec("10.0.0.1"))
        try t.deleteDest(from: k1, addr: a.addr, port: 80)
        let b = try t.addDest(to: k2, destSpec("10.0.0.1"))     // other service: not from the trash
        XCTAssertTrue(b !== a)
        XCTAssertNotEqual(a.id, b.id)
        XCTAssertTrue(t.dest(id: a.id) === a)
        XCTAssertTrue(t.dest(id: b.id) === b)
    }

    // MARK: zero and timeouts

    func testZeroPoints() throws {
        let t = IPVSTable()
        let key = T.tcpKey()
        let svc = try t.addService(spec(key))
        let d = try t.addDest(to: key, destSpec("10.0.0.1"))
        var base: UInt64 = 100
        t.rawStats = { _ in StatsCounters(conns: base, inPackets: base * 10, outPackets: 0, inBytes: base * 1000, outBytes: 0) }
        XCTAssertEqual(t.shownStats(.service(svc)).conns, 100)
        try t.zero(key)
        XCTAssertEqual(t.shownStats(.service(svc)), StatsCounters())
        XCTAssertEqual(t.shownStats(.dest(d)), StatsCounters())
        XCTAssertEqual(t.shownStats(.total).conns, 100)            // totals only with -Z alone
        base = 130
        XCTAssertEqual(t.shownStats(.dest(d)).conns, 30)
        XCTAssertEqual(t.shownStats(.dest(d)).inBytes, 30_000)
        try t.zero(nil)
        XCTAssertEqual(t.shownStats(.total), StatsCounters())
        XCTAssertEqual(t.shownStats(.service(svc)), StatsCounters())
        assertThrows(.noSuchService) { try t.zero(T.tcpKey("9.9.9.9", 9)) }
        // Estimators restart from the zero point.
        t.tickEstimators()
        XCTAssertEqual(svc.estimator.cps, 0)
        base = 140
        t.tickEstimators()
        XCTAssertEqual(d.estimator.cps, (10 << 9) >> 2)
    }

    func testSetTimeouts() throws {
        let t = IPVSTable()
        XCTAssertEqual(t.timeouts, TimeoutSettings(tcp: 900, tcpFin: 120, udp: 300))
        try t.setTimeouts(tcp: 3600, tcpfin: 0, udp: 60)
        XCTAssertEqual(t.timeouts, TimeoutSettings(tcp: 3600, tcpFin: 120, udp: 60))
        assertThrows(.invalid) { try t.setTimeouts(tcp: -1, tcpfin: 0, udp: 0) }
        let limit = Int(Int32.max) / IPVSTable.hz
        assertThrows(.invalid) { try t.setTimeouts(tcp: 0, tcpfin: limit + 1, udp: 0) }
        XCTAssertEqual(t.timeouts, TimeoutSettings(tcp: 3600, tcpFin: 120, udp: 60))
        try t.setTimeouts(tcp: 0, tcpfin: limit, udp: 0)
        XCTAssertEqual(t.timeouts.tcpFin, UInt32(limit))
    }
}
