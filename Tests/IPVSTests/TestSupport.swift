import XCTest
@testable import IPVS

/// Small helpers shared by the IPVS tests.
enum T {
    static func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    static let vip = ip("192.168.10.100")

    static func tcpKey(_ addr: String = "192.168.10.100", _ port: UInt16 = 80) -> ServiceKey {
        .address(proto: .tcp, addr: ip(addr), port: port)
    }

    /// A table with one TCP service built the ipvsadm way: `-A`, then one
    /// `-a` per dest in the given order (so the list is the reverse).
    static func service(_ sched: String, _ dests: [(String, Int32)], flags: ServiceFlags = [],
                        port: UInt16 = 80) -> (IPVSTable, Service, [String: Dest]) {
        let table = IPVSTable()
        var spec = ServiceSpec(key: tcpKey("192.168.10.100", port))
        spec.scheduler = sched
        spec.flags = flags
        let svc = try! table.addService(spec)
        var byName: [String: Dest] = [:]
        for (addr, w) in dests {
            var d = DestSpec(addr: ip(addr), port: port)
            d.weight = w
            byName[addr] = try! table.addDest(to: svc.key, d)
        }
        return (table, svc, byName)
    }

    static func input(saddr: String = "172.16.0.9", sport: UInt16 = 40000,
                      daddr: String = "192.168.10.100", dport: UInt16 = 80,
                      proto: IPProtocol = .tcp, now: Double = 0) -> ScheduleInput {
        ScheduleInput(proto: proto, saddr: ip(saddr), sport: sport, daddr: ip(daddr), dport: dport, now: now)
    }

    /// Names of `n` successive picks ("-" for no dest).
    static func picks(_ svc: Service, _ n: Int, _ names: [String: Dest],
                      input: ScheduleInput = T.input()) -> [String] {
        var out: [String] = []
        for _ in 0..<n {
            if let d = svc.scheduler?.schedule(svc, input) {
                out.append(names.first { $0.value === d }?.key ?? "?")
            } else {
                out.append("-")
            }
        }
        return out
    }

    static func setConns(_ d: Dest, active: Int32, inactive: Int32 = 0) {
        d.activeConns.store(active, ordering: .relaxed)
        d.inactiveConns.store(inactive, ordering: .relaxed)
    }

    static func setWeight(_ table: IPVSTable, _ svc: Service, _ d: Dest, _ w: Int32) {
        var spec = DestSpec(addr: d.addr, port: d.port)
        spec.weight = w
        spec.forward = d.forward
        spec.upperThreshold = d.upperThreshold
        spec.lowerThreshold = d.lowerThreshold
        try! table.editDest(in: svc.key, spec)
    }

    /// hash_32 worked out independently: the 64-bit product's low 32 bits,
    /// top `bits` of them.
    static func hash32(_ v: UInt32, _ bits: Int) -> Int {
        let prod = (UInt64(v) * 0x61C8_8647) & 0xFFFF_FFFF
        return Int(prod >> UInt64(32 - bits))
    }
}
