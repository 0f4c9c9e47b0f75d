import XCTest
import Synchronization
@testable import IPVS
#if canImport(Glibc)
import Glibc
#endif

/// A worker's replica table, fed only with the changes the master emits,
/// must end up equal to the master: same services in the same hash order,
/// the same shared Dest objects in the same list order, and schedulers that
/// make the same decisions for the same inputs. And the SPSC ring that
/// carries those changes keeps order, refuses when full and survives two
/// threads hammering it.
final class ReplicationTests: XCTestCase {

    // MARK: deterministic randomness

    struct Rng {
        var state: UInt64
        init(_ seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func pick<T>(_ a: [T]) -> T { a[below(a.count)] }
        mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    }

    /// A twos random source both sides can share the draws of.
    final class Draws {
        var rng: Rng
        init(_ seed: UInt64) { rng = Rng(seed) }
        func below(_ bound: UInt32) -> UInt32 { UInt32(rng.next() % UInt64(bound)) }
    }

    static func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    static let vips = [ip("192.0.2.10"), ip("192.0.2.11"), ip("198.51.100.7")]
    static let vip6 = ip("2001:db8::10")
    static let keys: [ServiceKey] = {
        var k: [ServiceKey] = []
        for v in vips {
            for p: UInt16 in [80, 443, 21, 0, 53] {
                k.append(.address(proto: .tcp, addr: v, port: p))
                k.append(.address(proto: .udp, addr: v, port: p))
            }
        }
        k.append(.address(proto: .sctp, addr: vips[0], port: 9999))
        k.append(.address(proto: .tcp, addr: vip6, port: 80))
        k.append(.address(proto: .udp, addr: vip6, port: 53))
        k.append(.fwmark(mark: 1, family: .inet))
        k.append(.fwmark(mark: 2, family: .inet))
        k.append(.fwmark(mark: 257, family: .inet))     // same fwmark hash bucket as 1
        k.append(.fwmark(mark: 3, family: .inet6))
        return k
    }()
    static let destAddrs4 = (1...12).map { ip("10.0.0.\($0)") } + [ip("172.16.5.9"), ip("192.168.1.1")]
    static let destAddrs6 = (1...5).map { ip("2001:db8:1::\($0)") }
    static let schedulers = Schedulers.names + ["none"]

    // MARK: random operations on the master

    struct Driver {
        let master: IPVSTable
        var rng: Rng
        var now = 0.0

        mutating func destSpec(for key: ServiceKey) -> DestSpec {
            let fam = key.family
            // Mixed families are only allowed for tunnels (tried anyway now and then).
            let v6 = fam == .inet6 ? !rng.chance(10) : rng.chance(5)
            let addr = v6 ? rng.pick(ReplicationTests.destAddrs6) : rng.pick(ReplicationTests.destAddrs4)
            var d = DestSpec(addr: addr, port: UInt16(rng.pick([80, 8080, 53, 0])))
            d.forward = rng.pick([ForwardMethod.masq, .droute, .tunnel, .masq, .droute])
            d.weight = rng.chance(3) ? -1 : Int32(rng.pick([0, 1, 1, 2, 3, 5, 10, 100, 65535]))
            if rng.chance(25) {
                d.upperThreshold = UInt32(rng.below(50))
                d.lowerThreshold = UInt32(rng.below(60))
            }
            if d.forward == .tunnel {
                d.tunnelType = rng.pick([TunnelType.ipip, .gue, .gre])
                d.tunnelPort = d.tunnelType == .gue && !rng.chance(5) ? UInt16(6080 + rng.below(3)) : 0
                d.tunnelFlags = rng.pick([TunnelFlags(), .csum, .remcsum])
            }
            return d
        }

        mutating func serviceSpec(for key: ServiceKey) -> ServiceSpec {
            var s = ServiceSpec(key: key)
            s.scheduler = rng.chance(2) ? "bogus" : rng.pick(ReplicationTests.schedulers)
            if rng.chance(30) {
                s.flags.insert(.persistent)
                s.timeout = UInt32(rng.pick([1, 60, 360, 3600]))
                if rng.chance(50) {
                    s.netmask = key.family == .inet ? UInt32(rng.pick([0xFFFF_FF00, 0xFFFF_0000, 0xFFFF_FFFF]))
                                                    : UInt32(rng.pick([0, 48, 64, 128, 129]))
                }
            }
            if rng.chance(20) { s.flags.insert(.sched1) }
            if rng.chance(20) { s.flags.insert(.sched2) }
            if rng.chance(10) { s.flags.insert(.onePacket) }
            if rng.chance(3) { s.persistenceEngine = rng.pick(["sip", "nope", ""]) }
            return s
        }

        /// One random table operation; errors are part of the game.
        mutating func step() {
            let key = rng.pick(ReplicationTests.keys)
            let live = master.services
            let existing = live.isEmpty || rng.chance(15) ? nil : rng.pick(live)
            switch rng.below(100) {
            case 0..<14:
                _ = try? master.addService(serviceSpec(for: key))
            case 14..<22:
                var s = serviceSpec(for: existing?.key ?? key)
                if let e = existing, rng.chance(40) { s.scheduler = e.schedulerName }   // edit without rebind
                try? master.editService(s)
            case 22..<27:
                try? master.deleteService(existing?.key ?? key)
            case 27..<55:
                let k = existing?.key ?? key
                _ = try? master.addDest(to: k, destSpec(for: k))
            case 55..<72:
                guard let svc = existing, let d = svc.dests.isEmpty ? nil : rng.pick(svc.dests) else {
                    try? master.editDest(in: key, destSpec(for: key))
                    return
                }
                var spec = destSpec(for: svc.key)
                spec = DestSpec(addr: d.addr, port: d.port, copying: spec)
                try? master.editDest(in: svc.key, spec)
            case 72..<82:
                guard let svc = existing, let d = svc.dests.isEmpty ? nil : rng.pick(svc.dests) else {
                    let k = existing?.key ?? key
                    try? master.deleteDest(from: k, addr: rng.pick(ReplicationTests.destAddrs4), port: 80)
                    return
                }
                try? master.deleteDest(from: svc.key, addr: d.addr, port: d.port)
            case 82..<85:
                try? master.setTimeouts(tcp: rng.pick([0, 1, 900, 1000, -1, Int(Int32.max)]),
                                        tcpfin: rng.pick([0, 100, 120]), udp: rng.pick([0, 200, 300]))
            case 85..<88:
                now += Double(rng.pick([1, 30, 61, 200]))
                master.purgeTrash(now: now)
            case 88..<92:
                let v = rng.pick(ReplicationTests.vips)
                let p = rng.pick([IPProtocol.tcp, .udp])
                let port = UInt16(rng.pick([0, 80, 8000]))
                if rng.chance(70) {
                    master.setFwmarkMatch(mark: UInt32(rng.pick([1, 2, 257, 9])), proto: p, addr: v, port: port)
                } else if rng.chance(50) {
                    master.removeFwmarkMatch(proto: p, addr: v, port: port)
                } else {
                    master.removeFwmarkMatches(mark: UInt32(rng.pick([1, 2, 257])))
                }
            case 92..<94:
                if rng.chance(20) { master.flush() } else { try? master.zero(existing?.key) }
            default:
                // Connection counters and OVERLOAD live in the shared Dest objects.
                guard let svc = existing, !svc.dests.isEmpty else { return }
                let d = rng.pick(svc.dests)
                d.activeConns.store(Int32(rng.below(40)), ordering: .relaxed)
                d.inactiveConns.store(Int32(rng.below(40)), ordering: .relaxed)
                d.persistConns.store(Int32(rng.below(3)), ordering: .relaxed)
                if rng.chance(30) { d.setFlag(.overload) } else if rng.chance(50) { d.clearFlag(.overload) }
            }
        }
    }

    // MARK: comparing master and replica

    func assertSameTable(_ m: IPVSTable, _ r: IPVSTable, _ context: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        let ms = m.services, rs = r.services
        XCTAssertEqual(ms.map(\.key), rs.map(\.key), "service order, \(context)", file: file, line: line)
        XCTAssertEqual(m.serviceCount, r.serviceCount, context, file: file, line: line)
        XCTAssertEqual(m.timeouts, r.timeouts, context, file: file, line: line)
        XCTAssertEqual(m.ftpServiceCount, r.ftpServiceCount, context, file: file, line: line)
        XCTAssertEqual(m.portZeroServiceCount, r.portZeroServiceCount, context, file: file, line: line)
        for (a, b) in zip(ms, rs) {
            let what = "\(a.key), \(context)"
            XCTAssertFalse(a === b, "the replica has its own Service objects, \(what)", file: file, line: line)
            XCTAssertEqual(a.id, b.id, what, file: file, line: line)
            XCTAssertEqual(a.schedulerName, b.schedulerName, what, file: file, line: line)
            XCTAssertEqual(a.scheduler?.name, b.scheduler?.name, what, file: file, line: line)
            XCTAssertEqual(a.scheduler == nil, b.scheduler == nil, what, file: file, line: line)
            if let x = a.scheduler, let y = b.scheduler {
                XCTAssertFalse(x === y, "own scheduler instances, \(what)", file: file, line: line)
            }
            XCTAssertEqual(a.flags, b.flags, what, file: file, line: line)
            XCTAssertEqual(a.timeout, b.timeout, what, file: file, line: line)
            XCTAssertEqual(a.netmask, b.netmask, what, file: file, line: line)
            XCTAssertEqual(a.persistenceEngine, b.persistenceEngine, what, file: file, line: line)
            XCTAssertTrue(b.isLinked, what, file: file, line: line)
            XCTAssertEqual(a.dests.count, b.dests.count, "dest count, \(what)", file: file, line: line)
            for (i, (x, y)) in zip(a.dests, b.dests).enumerated() {
                XCTAssertTrue(x === y, "dest \(i) of \(what) is not the master's object", file: file, line: line)
            }
            XCTAssertTrue(r.service(id: b.id) === b, what, file: file, line: line)
        }
        // Dests by id (live and trashed), as the engine resolves connection entries.
        for id: UInt32 in 0...200 {
            XCTAssertTrue(m.dest(id: id) === r.dest(id: id), "dest id \(id), \(context)", file: file, line: line)
        }
        // Fwmark groups and the lookup a new packet does.
        for mark: UInt32 in [1, 2, 257, 9] {
            XCTAssertEqual(m.fwmarkMatches(mark: mark).map { "\($0.proto)\($0.addr)\($0.port)" },
                           r.fwmarkMatches(mark: mark).map { "\($0.proto)\($0.addr)\($0.port)" },
                           "mark \(mark), \(context)", file: file, line: line)
        }
        for v in ReplicationTests.vips + [ReplicationTests.vip6] {
            for p: UInt16 in [0, 20, 21, 53, 80, 443, 1023, 1024, 8000, 9999] {
                for proto: IPProtocol in [.tcp, .udp, .sctp] {
                    XCTAssertEqual(m.lookupService(proto: proto, addr: v, port: p)?.key,
                                   r.lookupService(proto: proto, addr: v, port: p)?.key,
                                   "lookup \(proto) \(v):\(p), \(context)", file: file, line: line)
                }
            }
        }
    }

    /// Schedule `n` new connections on every service of both tables with the
    /// same inputs; the picks must be the very same Dest objects.
    func assertSameDecisions(_ m: IPVSTable, _ r: IPVSTable, rng: inout Rng, n: Int, now: Double,
                             _ context: String, file: StaticString = #filePath, line: UInt = #line) -> Int {
        var compared = 0
        for a in m.services {
            guard let b = r.service(for: a.key) else {
                XCTFail("replica lacks \(a.key), \(context)", file: file, line: line)
                continue
            }
            for i in 0..<n {
                let daddr: IPAddress
                let dport: UInt16
                let proto: IPProtocol
                switch a.key {
                case .address(let p, let addr, let port):
                    proto = p; daddr = addr; dport = port == 0 ? UInt16(1 + rng.below(65535)) : port
                case .fwmark(_, let fam):
                    proto = rng.pick([IPProtocol.tcp, .udp])
                    daddr = fam == .inet ? rng.pick(ReplicationTests.vips) : ReplicationTests.vip6
                    dport = UInt16(rng.pick([80, 8000, 53]))
                }
                let saddr = daddr.family == .inet
                    ? IPAddress(v4: UInt32(0xCB00_7100) | UInt32(rng.below(256)))   // 203.0.113.x
                    : ReplicationTests.ip("2001:db8:ffff::\(String(rng.below(0xFFFF), radix: 16))")
                let input = ScheduleInput(proto: proto, saddr: saddr, sport: UInt16(1024 + rng.below(60000)),
                                          daddr: rng.chance(20) && daddr.family == .inet
                                              ? rng.pick(ReplicationTests.vips) : daddr,
                                          dport: dport, now: now + Double(i) * 0.5)
                if let x = a.scheduler as? TWOSScheduler, let y = b.scheduler as? TWOSScheduler {
                    let seed = rng.next()
                    let dx = Draws(seed), dy = Draws(seed)
                    x.randomBelow = { dx.below($0) }
                    y.randomBelow = { dy.below($0) }
                }
                let pm = a.scheduler?.schedule(a, input)
                let pr = b.scheduler?.schedule(b, input)
                if pm !== pr {
                    XCTFail("\(a.key) \(a.schedulerName) pick \(i): master \(pm.map { "\($0.addr):\($0.port)" } ?? "nil"), "
                            + "replica \(pr.map { "\($0.addr):\($0.port)" } ?? "nil"), \(context)", file: file, line: line)
                    return compared
                }
                compared += 1
            }
        }
        return compared
    }

    // MARK: tests

    func testReplicaFollowsALongRandomSequence() {
        for seed: UInt64 in [1, 2, 3, 0xC0FFEE] {
            let master = IPVSTable()
            let replica = IPVSTable()
            var changes = 0
            var kinds: [String: Int] = [:]
            master.observer = { c in
                changes += 1
                kinds[ReplicationTests.kindName(c), default: 0] += 1
                replica.apply(c)
            }
            var driver = Driver(master: master, rng: Rng(seed))
            var probe = Rng(seed ^ 0xABCDEF)
            var compared = 0
            for step in 1...6000 {
                driver.step()
                if step % 50 == 0 {
                    // Use the schedulers mid-way too: later hooks must act on used state alike.
                    compared += assertSameDecisions(master, replica, rng: &probe, n: 3, now: driver.now,
                                                    "seed \(seed) step \(step)")
                }
                if step % 500 == 0 {
                    assertSameTable(master, replica, "seed \(seed) step \(step)")
                    for svc in master.services + replica.services {
                        (svc.scheduler as? LBLCScheduler)?.collectGarbage(now: driver.now)
                        (svc.scheduler as? LBLCRScheduler)?.collectGarbage(now: driver.now)
                    }
                }
            }
            assertSameTable(master, replica, "seed \(seed) end")
            compared += assertSameDecisions(master, replica, rng: &probe, n: 400, now: driver.now + 10,
                                            "seed \(seed) end")
            XCTAssertGreaterThan(changes, 1500, "seed \(seed): \(kinds)")
            XCTAssertGreaterThan(compared, 1000, "seed \(seed)")
            for k in ["serviceAdded", "serviceEdited+rebind", "serviceEdited", "serviceDeleted", "destAdded",
                      "destEdited", "destDeleted", "destPurged", "timeouts", "fwmarkMatch"] {
                XCTAssertGreaterThan(kinds[k, default: 0], 0, "seed \(seed) never emitted \(k): \(kinds)")
            }
        }
    }

    static func kindName(_ c: TableChange) -> String {
        switch c {
        case .serviceAdded: return "serviceAdded"
        case .serviceEdited(_, let rebind): return rebind ? "serviceEdited+rebind" : "serviceEdited"
        case .serviceDeleted: return "serviceDeleted"
        case .destAdded: return "destAdded"
        case .destEdited: return "destEdited"
        case .destDeleted: return "destDeleted"
        case .destPurged: return "destPurged"
        case .timeouts: return "timeouts"
        case .fwmarkMatch: return "fwmarkMatch"
        }
    }

    /// Every scheduler, with a fixed set of dests built the ipvsadm way, then
    /// edited (weights to zero and back, deletes, re-adds from the trash): the
    /// replica's picks follow the master's pick for pick.
    func testEachSchedulerThroughEditsMatchesPickForPick() {
        let key = ServiceKey.address(proto: .tcp, addr: Self.ip("192.0.2.10"), port: 80)
        for name in Schedulers.names {
            let master = IPVSTable(), replica = IPVSTable()
            master.observer = { replica.apply($0) }
            var spec = ServiceSpec(key: key)
            spec.scheduler = name
            if name == "sh" || name == "mh" { spec.flags = [.sched1, .sched2] }
            try! master.addService(spec)
            let weights: [Int32] = [1, 3, 2, 5, 0, 4]
            for (i, w) in weights.enumerated() {
                var d = DestSpec(addr: Self.ip("10.0.0.\(i + 1)"), port: 80)
                d.weight = w
                d.forward = .masq
                try! master.addDest(to: key, d)
            }
            var rng = Rng(UInt64(name.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }))
            var total = 0
            total += assertSameDecisions(master, replica, rng: &rng, n: 300, now: 0, "\(name) built")
            var e = DestSpec(addr: Self.ip("10.0.0.2"), port: 80)
            e.weight = 0; e.forward = .masq
            try! master.editDest(in: key, e)
            total += assertSameDecisions(master, replica, rng: &rng, n: 100, now: 100, "\(name) weight 0")
            e.weight = 7
            try! master.editDest(in: key, e)
            try! master.deleteDest(from: key, addr: Self.ip("10.0.0.4"), port: 80)
            total += assertSameDecisions(master, replica, rng: &rng, n: 100, now: 200, "\(name) deleted")
            var back = DestSpec(addr: Self.ip("10.0.0.4"), port: 80)
            back.weight = 2; back.forward = .masq
            let d4 = try! master.addDest(to: key, back)   // back from the trash, at the head
            XCTAssertTrue(replica.service(for: key)!.dests.first === d4)
            total += assertSameDecisions(master, replica, rng: &rng, n: 100, now: 300, "\(name) re-added")
            // Scheduler change and back while dests exist (init_service sees them).
            var s2 = spec
            s2.scheduler = name == "rr" ? "wrr" : "rr"
            try! master.editService(s2)
            total += assertSameDecisions(master, replica, rng: &rng, n: 50, now: 400, "\(name) rebound away")
            try! master.editService(spec)
            total += assertSameDecisions(master, replica, rng: &rng, n: 300, now: 500, "\(name) rebound back")
            assertSameTable(master, replica, name)
            XCTAssertEqual(total, 950, name)
        }
    }

    /// Changes made before any observer is set are kept as history; a replica
    /// that replays it and then follows the observer equals the master (the
    /// way workers start: --config first, then the admin socket).
    func testHistoryReplayThenObserver() {
        let master = IPVSTable()
        var driver = Driver(master: master, rng: Rng(42))
        for _ in 0..<800 { driver.step() }
        let replica = IPVSTable()
        for c in master.history() { replica.apply(c) }
        master.forgetHistory()
        XCTAssertTrue(master.history().isEmpty)
        assertSameTable(master, replica, "after replay")
        master.observer = { replica.apply($0) }
        for _ in 0..<800 { driver.step() }
        assertSameTable(master, replica, "after observer")
        var rng = Rng(7)
        _ = assertSameDecisions(master, replica, rng: &rng, n: 100, now: driver.now, "after observer")
        XCTAssertTrue(master.history().isEmpty, "nothing is kept once an observer is set")
    }

    /// Refused operations change nothing and emit nothing.
    func testRefusedOperationsEmitNothing() {
        let master = IPVSTable()
        var emitted = 0
        master.observer = { _ in emitted += 1 }
        let key = ServiceKey.address(proto: .tcp, addr: Self.ip("192.0.2.10"), port: 80)
        var spec = ServiceSpec(key: key)
        spec.scheduler = "wrr"
        try! master.addService(spec)
        try! master.addDest(to: key, DestSpec(addr: Self.ip("10.0.0.1"), port: 80))
        XCTAssertEqual(emitted, 2)
        let other = ServiceKey.address(proto: .udp, addr: Self.ip("192.0.2.10"), port: 80)
        XCTAssertThrowsError(try master.addService(spec))                       // exists
        var bad = ServiceSpec(key: other); bad.scheduler = "bogus"
        XCTAssertThrowsError(try master.addService(bad))                        // no scheduler
        XCTAssertThrowsError(try master.editService(ServiceSpec(key: other)))    // no service
        XCTAssertThrowsError(try master.deleteService(other))
        XCTAssertThrowsError(try master.addDest(to: other, DestSpec(addr: Self.ip("10.0.0.1"), port: 80)))
        XCTAssertThrowsError(try master.addDest(to: key, DestSpec(addr: Self.ip("10.0.0.1"), port: 80)))
        var neg = DestSpec(addr: Self.ip("10.0.0.2"), port: 80); neg.weight = -1
        XCTAssertThrowsError(try master.addDest(to: key, neg))
        var thr = DestSpec(addr: Self.ip("10.0.0.2"), port: 80); thr.upperThreshold = 1; thr.lowerThreshold = 2
        XCTAssertThrowsError(try master.addDest(to: key, thr))
        XCTAssertThrowsError(try master.editDest(in: key, DestSpec(addr: Self.ip("10.0.0.9"), port: 80)))
        XCTAssertThrowsError(try master.deleteDest(from: key, addr: Self.ip("10.0.0.9"), port: 80))
        XCTAssertThrowsError(try master.setTimeouts(tcp: -1, tcpfin: 0, udp: 0))
        XCTAssertThrowsError(try master.zero(other))
        XCTAssertEqual(emitted, 2)
    }

    // MARK: MessageRing

    static func message(_ i: UInt32) -> WorkerMessage { .change(.destPurged(i)) }
    static func number(_ m: WorkerMessage?) -> UInt32? {
        if case .change(.destPurged(let i))? = m { return i }
        return nil
    }

    func testRingKeepsOrderAndRefusesWhenFull() {
        let ring = MessageRing(capacity: 8)
        XCTAssertTrue(ring.isEmpty)
        XCTAssertEqual(ring.count, 0)
        XCTAssertNil(ring.pop())
        for i: UInt32 in 0..<8 {
            XCTAssertTrue(ring.push(Self.message(i)), "push \(i)")
            XCTAssertEqual(ring.count, Int(i) + 1)
            XCTAssertFalse(ring.isEmpty)
        }
        XCTAssertFalse(ring.push(Self.message(99)), "a full ring refuses")
        XCTAssertFalse(ring.push(Self.message(100)))
        XCTAssertEqual(ring.count, 8)
        XCTAssertEqual(Self.number(ring.pop()), 0)
        XCTAssertTrue(ring.push(Self.message(8)), "one slot free again")
        XCTAssertFalse(ring.push(Self.message(101)))
        for i: UInt32 in 1...8 { XCTAssertEqual(Self.number(ring.pop()), i) }
        XCTAssertNil(ring.pop())
        XCTAssertTrue(ring.isEmpty)
        XCTAssertEqual(ring.count, 0)
    }

    func testRingWrapsAroundManyTimes() {
        let ring = MessageRing(capacity: 3)
        var next: UInt32 = 0, expect: UInt32 = 0
        var rng = Rng(5)
        for _ in 0..<20_000 {
            let pushes = rng.below(4), pops = rng.below(4)
            for _ in 0..<pushes {
                if ring.push(Self.message(next)) { next += 1 } else { XCTAssertEqual(ring.count, 3); break }
            }
            for _ in 0..<pops {
                guard let m = ring.pop() else { XCTAssertEqual(next, expect); break }
                XCTAssertEqual(Self.number(m), expect)
                expect += 1
            }
            XCTAssertEqual(ring.count, Int(next - expect))
        }
        XCTAssertGreaterThan(expect, 10_000)
    }

    func testRingCarriesOtherMessagesAndReleasesThem() {
        let ring = MessageRing(capacity: 4)
        weak var weakReq: ConnectionListRequest?
        do {
            let req = ConnectionListRequest()
            weakReq = req
            XCTAssertTrue(ring.push(.listConnections(req)))
            XCTAssertTrue(ring.push(.change(.timeouts(TimeoutSettings()))))
        }
        XCTAssertNotNil(weakReq, "the ring holds the request")
        if case .listConnections(let r)? = ring.pop() { XCTAssertTrue(r === weakReq) } else { XCTFail() }
        XCTAssertNil(weakReq, "a popped slot no longer holds the message")
        if case .change(.timeouts(let t))? = ring.pop() { XCTAssertEqual(t, TimeoutSettings()) } else { XCTFail() }
    }

    /// One producer thread, one consumer thread, a million messages: every
    /// one arrives, in order; run with a small ring (always full or empty)
    /// and with the default one.
    func testTwoThreadStressKeepsOrder() {
        for capacity in [16, 1 << 14] {
            let ring = MessageRing(capacity: capacity)
            let total: UInt32 = 1_000_000
            let c = StressCounters()
            let producer = PThread {
                var i: UInt32 = 0
                var spins = 0
                while i < total {
                    if ring.push(Self.message(i)) { i += 1 } else {
                        spins += 1
                        sched_yield()
                    }
                }
                c.refused.store(spins, ordering: .relaxed)
            }
            let consumer = PThread {
                var expect: UInt32 = 0
                while expect < total {
                    if ring.isEmpty { sched_yield(); continue }
                    guard let m = ring.pop() else {
                        c.failures.add(1, ordering: .relaxed)   // isEmpty said otherwise
                        continue
                    }
                    if Self.number(m) != expect { c.failures.add(1, ordering: .relaxed) }
                    expect += 1
                }
                c.received.store(expect, ordering: .relaxed)
            }
            producer.join()
            consumer.join()
            XCTAssertEqual(c.received.load(ordering: .relaxed), total, "capacity \(capacity)")
            XCTAssertEqual(c.failures.load(ordering: .relaxed), 0, "capacity \(capacity)")
            XCTAssertNil(ring.pop())
            XCTAssertEqual(ring.count, 0)
            if capacity == 16 {
                XCTAssertGreaterThan(c.refused.load(ordering: .relaxed), 0, "a 16-slot ring filled up at some point")
            }
        }
    }
}

extension DestSpec {
    /// `other`'s settings for the dest <addr, port>.
    init(addr: IPAddress, port: UInt16, copying other: DestSpec) {
        self.init(addr: addr, port: port)
        forward = other.forward; weight = other.weight
        upperThreshold = other.upperThreshold; lowerThreshold = other.lowerThreshold
        tunnelType = other.tunnelType; tunnelPort = other.tunnelPort; tunnelFlags = other.tunnelFlags
    }
}

final class StressCounters: @unchecked Sendable {
    let refused = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let received = Atomic<UInt32>(0)
}

/// A pthread running a closure (no Foundation).
final class PThread {
    private var tid = pthread_t()
    private final class Body { let f: () -> Void; init(_ f: @escaping () -> Void) { self.f = f } }
    init(_ f: @escaping () -> Void) {
        let arg = Unmanaged.passRetained(Body(f)).toOpaque()
        let rc = pthread_create(&tid, nil, { p in
            Unmanaged<Body>.fromOpaque(p!).takeRetainedValue().f()
            return nil
        }, arg)
        precondition(rc == 0, "pthread_create")
    }
    func join() { pthread_join(tid, nil) }
}
