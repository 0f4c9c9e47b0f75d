// The service table and the operations ipvsadm performs on it, following
// ip_vs_ctl.c: error order and codes, dest list order (newest first), the
// dest trash, zero points, timeouts, and service lookup for new packets.
//
// Not thread-safe: owned by the control side. Data plane workers read the
// Service/Dest objects (or snapshots of them) and touch only the dest
// connection counters.
//
// Statistics: the engine keeps the raw cumulative counters (per worker) and
// hands their sums to the table through `rawStats`. `-Z` stores the current
// raw values as the zero point of each object (`Service.zeroPoint`,
// `Dest.zeroPoint`, `totalZeroPoint`) and restarts its estimator; what
// ipvsadm shows is `raw - zeroPoint` (see `shownStats`).

/// Whose statistics `IPVSTable.rawStats` is asked for.
public enum StatsOwner {
    case service(Service)
    case dest(Dest)
    case total
}

public final class IPVSTable {
    /// Service and dest ids are below this (an ENOMEM beyond): the data
    /// plane's per-id arrays have this many slots and index them unchecked.
    public static let idLimit: UInt32 = 1 << 16
    /// 2^8 buckets for each of the two service hash tables.
    public static let serviceTableBits = 8
    public static let serviceTableSize = 1 << 8
    /// The kernel tick rate assumed by timeout validation (Debian's CONFIG_HZ).
    public static let hz = 250
    /// A trashed dest unreferenced this long is freed (IP_VS_DEST_TRASH_PERIOD).
    public static let trashPeriod: Double = 120
    /// Ports at or above this count as unprivileged for the FTP-data rule
    /// (net.ipv4.ip_unprivileged_port_start).
    public static let unprivilegedPortStart: UInt16 = 1024

    /// `--set tcp tcpfin udp` values.
    public private(set) var timeouts = TimeoutSettings()

    /// Told of every change, in order, after it is made (the data plane's
    /// per-worker replicas follow the table through it; see Replication.swift).
    public var observer: ((TableChange) -> Void)?
    /// Changes made while no observer was set, so that replicas created
    /// later (the workers, at start-up) can replay the exact history.
    private var pendingHistory: [TableChange] = []

    private func emit(_ c: TableChange) {
        if let o = observer { o(c) } else { pendingHistory.append(c) }
    }

    /// The changes made before an observer was set, in order (and forget them).
    public func history() -> [TableChange] {
        pendingHistory
    }

    public func forgetHistory() { pendingHistory = [] }

    /// Sums of the raw cumulative counters, supplied by the engine; nil
    /// reads as all zero.
    public var rawStats: ((StatsOwner) -> StatsCounters)?
    /// Zero point and estimator of the global totals.
    public var totalZeroPoint = StatsCounters()
    public var totalEstimator = RateEstimator()

    // The two hash tables, each bucket newest first (hlist_add_head).
    private var svcTable: [[Service]]
    private var fwmTable: [[Service]]
    public private(set) var ftpServiceCount = 0
    /// Services with port 0 (fwmark services included, as in the kernel).
    public private(set) var portZeroServiceCount = 0

    /// Deleted dests still possibly used by connections, newest first.
    public private(set) var trash: [Dest] = []
    /// Keeps the (possibly deleted) service of each trashed dest alive.
    private var trashOwners: [UInt32: Service] = [:]

    private var destsById: [UInt32: Dest] = [:]
    private var servicesById: [UInt32: Service] = [:]
    private var serviceIds = IdAllocator()
    private var destIds = IdAllocator()

    /// Fwmark groups: which <protocol, address, port> carries which mark.
    /// Port 0 in an entry matches every port of that protocol and address.
    private var fwmarkMatches: [FwmarkMatchKey: UInt32] = [:]

    public init() {
        svcTable = Array(repeating: [], count: IPVSTable.serviceTableSize)
        fwmTable = Array(repeating: [], count: IPVSTable.serviceTableSize)
    }

    // MARK: - Hashing and lookup

    /// `ip_vs_svc_hashkey` for 256 buckets. The kernel also folds in bits of
    /// the netns pointer; Switchyard has one namespace and uses 0 there.
    public static func serviceHash(proto: UInt8, addr: IPAddress, port: UInt16) -> Int {
        let porth = UInt32(port)
        let ahash = addr.folded
        return Int((UInt32(proto) ^ ahash ^ (porth >> UInt32(serviceTableBits)) ^ porth)
                   & UInt32(serviceTableSize - 1))
    }

    /// `ip_vs_svc_fwm_hashkey` (netns term 0, as above).
    public static func fwmarkHash(_ mark: UInt32) -> Int {
        Int(mark & UInt32(serviceTableSize - 1))
    }

    @inline(__always)
    private func findAddress(_ proto: IPProtocol, _ addr: IPAddress, _ port: UInt16) -> Service? {
        for s in svcTable[IPVSTable.serviceHash(proto: proto.rawValue, addr: addr, port: port)] {
            if case .address(let p, let a, let pt) = s.key, p == proto, pt == port, a == addr {
                return s
            }
        }
        return nil
    }

    @inline(__always)
    private func findFwmark(_ mark: UInt32, _ family: AddressFamily) -> Service? {
        for s in fwmTable[IPVSTable.fwmarkHash(mark)] {
            if case .fwmark(let m, let f) = s.key, m == mark, f == family { return s }
        }
        return nil
    }

    /// The service configured under exactly this key.
    public func service(for key: ServiceKey) -> Service? {
        switch key {
        case .address(let p, let a, let pt): return findAddress(p, a, pt)
        case .fwmark(let m, let f): return findFwmark(m, f)
        }
    }

    /// The service a new packet to <proto, addr, port> belongs to
    /// (`ip_vs_service_find`): the fwmark group first, then the exact
    /// service, then (TCP, when an FTP service exists, for port 20 or an
    /// unprivileged port) the port-21 service, then (when a port-0 service
    /// exists) the port-0 service.
    public func lookupService(proto: IPProtocol, addr: IPAddress, port: UInt16) -> Service? {
        if !fwmarkMatches.isEmpty, let mark = fwmarkMark(proto: proto, addr: addr, port: port),
           let s = findFwmark(mark, addr.family) {
            return s
        }
        if let s = findAddress(proto, addr, port) { return s }
        if proto == .tcp && ftpServiceCount > 0
            && (port == 20 || port >= IPVSTable.unprivilegedPortStart),
           let s = findAddress(.tcp, addr, 21) {
            return s
        }
        if portZeroServiceCount > 0, let s = findAddress(proto, addr, 0) { return s }
        return nil
    }

    /// Services in the kernel's hash order (what `--nosort` lists): the
    /// <proto, addr, port> table bucket by bucket, then the fwmark table.
    public var services: [Service] {
        var out: [Service] = []
        for b in svcTable { out.append(contentsOf: b) }
        for b in fwmTable { out.append(contentsOf: b) }
        return out
    }

    public var serviceCount: Int { servicesById.values.filter { $0.isLinked }.count }

    /// A service by its id (live services only).
    public func service(id: UInt32) -> Service? {
        guard let s = servicesById[id], s.isLinked else { return nil }
        return s
    }

    /// A dest by its id, live or in the trash.
    public func dest(id: UInt32) -> Dest? { destsById[id] }

    // MARK: - Fwmark groups

    struct FwmarkMatchKey: Hashable {
        var proto: IPProtocol
        var addr: IPAddress
        var port: UInt16
    }

    /// Packets of <proto, addr, port> carry `mark` (port 0: any port).
    public func setFwmarkMatch(mark: UInt32, proto: IPProtocol, addr: IPAddress, port: UInt16) {
        fwmarkMatches[FwmarkMatchKey(proto: proto, addr: addr, port: port)] = mark
        emit(.fwmarkMatch(mark: mark, proto: proto, addr: addr, port: port))
    }

    public func removeFwmarkMatch(proto: IPProtocol, addr: IPAddress, port: UInt16) {
        fwmarkMatches[FwmarkMatchKey(proto: proto, addr: addr, port: port)] = nil
        emit(.fwmarkMatch(mark: nil, proto: proto, addr: addr, port: port))
    }

    public func removeFwmarkMatches(mark: UInt32) {
        for (k, v) in fwmarkMatches where v == mark {
            emit(.fwmarkMatch(mark: nil, proto: k.proto, addr: k.addr, port: k.port))
        }
        fwmarkMatches = fwmarkMatches.filter { $0.value != mark }
    }

    /// Entries of one mark's group.
    public func fwmarkMatches(mark: UInt32) -> [(proto: IPProtocol, addr: IPAddress, port: UInt16)] {
        fwmarkMatches.filter { $0.value == mark }
            .map { (proto: $0.key.proto, addr: $0.key.addr, port: $0.key.port) }
            .sorted { ($0.addr, $0.port, $0.proto.rawValue) < ($1.addr, $1.port, $1.proto.rawValue) }
    }

    /// The mark a packet would carry (exact entry first, then port 0).
    public func fwmarkMark(proto: IPProtocol, addr: IPAddress, port: UInt16) -> UInt32? {
        if let m = fwmarkMatches[FwmarkMatchKey(proto: proto, addr: addr, port: port)] { return m }
        if port != 0, let m = fwmarkMatches[FwmarkMatchKey(proto: proto, addr: addr, port: 0)] { return m }
        return nil
    }

    // MARK: - Services

    private static func checkProtocol(_ key: ServiceKey) throws(IPVSError) {
        if case .address(let p, _, _) = key {
            switch p {
            case .tcp, .udp, .sctp: break
            case .ip: throw .fault
            }
        }
    }

    private static func checkSchedulerAndEngine(_ spec: ServiceSpec) throws(IPVSError) {
        guard Schedulers.isKnown(spec.scheduler) else { throw .notFound }
        if let pe = spec.persistenceEngine, !pe.isEmpty, pe != "sip" { throw .notFound }
    }

    private static func netmask(for spec: ServiceSpec) throws(IPVSError) -> UInt32 {
        let family = spec.key.family
        let mask = spec.netmask ?? (family == .inet ? 0xFFFF_FFFF : 128)
        if family == .inet6 && (mask < 1 || mask > 128) { throw .invalid }
        return mask
    }

    /// `-A`. Errors: .fault (protocol), .exists, .notFound (scheduler or
    /// persistence engine), .invalid (IPv6 prefix length outside 1..128),
    /// .noMemory (every service id is taken).
    @discardableResult
    public func addService(_ spec: ServiceSpec) throws(IPVSError) -> Service {
        try IPVSTable.checkProtocol(spec.key)
        if service(for: spec.key) != nil { throw .exists }
        try IPVSTable.checkSchedulerAndEngine(spec)
        let mask = try IPVSTable.netmask(for: spec)

        guard let id = serviceIds.allocate() else { throw .noMemory }
        let svc = Service(key: spec.key, id: id, schedulerName: spec.scheduler,
                          flags: spec.flags.subtracting(.hashed), timeout: spec.timeout, netmask: mask)
        svc.persistenceEngine = spec.persistenceEngine.flatMap { $0.isEmpty ? nil : $0 }
        svc.scheduler = Schedulers.make(spec.scheduler, for: svc)
        svc.zeroPoint = StatsCounters()
        svc.estimator = RateEstimator()
        servicesById[svc.id] = svc

        if svc.port == 21 { ftpServiceCount += 1 } else if svc.port == 0 { portZeroServiceCount += 1 }
        switch svc.key {
        case .address(let p, let a, let pt):
            svcTable[IPVSTable.serviceHash(proto: p.rawValue, addr: a, port: pt)].insert(svc, at: 0)
        case .fwmark(let m, _):
            fwmTable[IPVSTable.fwmarkHash(m)].insert(svc, at: 0)
        }
        emit(.serviceAdded(ServiceConfig(svc)))
        return svc
    }

    /// `-E`: scheduler (re-bound only when the name changes), flags,
    /// persistence timeout, netmask, persistence engine.
    public func editService(_ spec: ServiceSpec) throws(IPVSError) {
        try IPVSTable.checkProtocol(spec.key)
        guard let svc = service(for: spec.key) else { throw .noSuchService }
        try IPVSTable.checkSchedulerAndEngine(spec)
        let mask = try IPVSTable.netmask(for: spec)

        let rebind = spec.scheduler != svc.schedulerName
        if rebind {
            svc.scheduler = nil                          // done_service
            svc.schedulerName = spec.scheduler
            svc.scheduler = Schedulers.make(spec.scheduler, for: svc)   // init_service
        }
        svc.flags = spec.flags.subtracting(.hashed)
        svc.timeout = spec.timeout
        svc.netmask = mask
        svc.persistenceEngine = spec.persistenceEngine.flatMap { $0.isEmpty ? nil : $0 }
        emit(.serviceEdited(ServiceConfig(svc), schedulerChanged: rebind))
    }

    /// `-D`.
    public func deleteService(_ key: ServiceKey) throws(IPVSError) {
        guard let svc = service(for: key) else { throw .noSuchService }
        unlinkService(svc)
    }

    /// `-C`: every service, in hash order.
    public func flush() {
        for svc in services { unlinkService(svc) }
    }

    private func unlinkService(_ svc: Service) {
        switch svc.key {
        case .address(let p, let a, let pt):
            let b = IPVSTable.serviceHash(proto: p.rawValue, addr: a, port: pt)
            svcTable[b].removeAll { $0 === svc }
        case .fwmark(let m, _):
            fwmTable[IPVSTable.fwmarkHash(m)].removeAll { $0 === svc }
        }
        svc.scheduler = nil
        svc.isLinked = false
        let dests = svc.dests
        svc.dests = []
        for d in dests {
            d.clearFlag(.available)
            moveToTrash(d, of: svc)
        }
        if svc.port == 21 { ftpServiceCount -= 1 } else if svc.port == 0 { portZeroServiceCount -= 1 }
        releaseServiceIfUnused(svc)
        emit(.serviceDeleted(svc.key))
    }

    private func releaseServiceIfUnused(_ svc: Service) {
        guard !svc.isLinked, servicesById[svc.id] === svc else { return }
        if trashOwners.values.contains(where: { $0 === svc }) { return }
        servicesById[svc.id] = nil
        serviceIds.release(svc.id)
    }

    // MARK: - Dests

    private static func validate(_ spec: DestSpec, for svc: Service) throws(IPVSError) {
        // Mixed families only for tunnelling servers (checked by the netlink
        // layer before the dest operation itself).
        if spec.addr.family != svc.family && spec.forward != .tunnel { throw .invalid }
        if spec.weight < 0 { throw .range }
        if spec.lowerThreshold > spec.upperThreshold { throw .range }
        if spec.tunnelType == .gue && spec.tunnelPort == 0 { throw .invalid }
    }

    private static func find(_ svc: Service, _ addr: IPAddress, _ port: UInt16) -> Dest? {
        for d in svc.dests where d.port == port && d.addr == addr { return d }
        return nil
    }

    /// The dest <addr, port> of a service, if configured.
    public func dest(in key: ServiceKey, addr: IPAddress, port: UInt16) -> Dest? {
        guard let svc = service(for: key) else { return nil }
        return IPVSTable.find(svc, addr, port)
    }

    /// `-a`. Errors: .noSuchService, .range (weight < 0, lower > upper
    /// threshold), .invalid (GUE without port, mixed family without
    /// tunnelling), .exists, .noMemory (every dest id is taken). The dest
    /// goes to the head of the list; one of the same <addr, port> waiting in
    /// the trash for this service key comes back with its counters.
    @discardableResult
    public func addDest(to key: ServiceKey, _ spec: DestSpec) throws(IPVSError) -> Dest {
        guard let svc = service(for: key) else { throw .noSuchService }
        try IPVSTable.validate(spec, for: svc)
        if IPVSTable.find(svc, spec.addr, spec.port) != nil { throw .exists }

        let dest: Dest
        if let i = trash.firstIndex(where: { $0.addr == spec.addr && $0.port == spec.port
                                                && trashOwners[$0.id]?.key == svc.key }) {
            dest = trash.remove(at: i)
            let oldOwner = trashOwners.removeValue(forKey: dest.id)
            dest.inTrash = false
            dest.trashIdleSince = nil
            update(dest, spec, in: svc, add: true)
            if let o = oldOwner, o !== svc { releaseServiceIfUnused(o) }
        } else {
            guard let id = destIds.allocate() else { throw .noMemory }
            dest = Dest(addr: spec.addr, port: spec.port, id: id, forward: spec.forward,
                        weight: spec.weight, upperThreshold: spec.upperThreshold,
                        lowerThreshold: spec.lowerThreshold, tunnelType: spec.tunnelType,
                        tunnelPort: spec.tunnelPort, tunnelFlags: spec.tunnelFlags)
            dest.zeroPoint = StatsCounters()
            destsById[dest.id] = dest
            update(dest, spec, in: svc, add: true)
        }
        return dest
    }

    /// `-e`. Errors: .noSuchService, .range, .invalid, .noSuchDest.
    public func editDest(in key: ServiceKey, _ spec: DestSpec) throws(IPVSError) {
        guard let svc = service(for: key) else { throw .noSuchService }
        try IPVSTable.validate(spec, for: svc)
        guard let dest = IPVSTable.find(svc, spec.addr, spec.port) else { throw .noSuchDest }
        update(dest, spec, in: svc, add: false)
    }

    /// `-d`. Errors: .noSuchService, .noSuchDest. The dest loses AVAILABLE,
    /// leaves the list (scheduler del hook) and waits in the trash.
    public func deleteDest(from key: ServiceKey, addr: IPAddress, port: UInt16) throws(IPVSError) {
        guard let svc = service(for: key) else { throw .noSuchService }
        guard let i = svc.dests.firstIndex(where: { $0.port == port && $0.addr == addr }) else {
            throw .noSuchDest
        }
        let dest = svc.dests[i]
        dest.clearFlag(.available)
        svc.dests.remove(at: i)
        svc.scheduler?.delDest(svc, dest)
        moveToTrash(dest, of: svc)
        emit(.destDeleted(svc.key, dest))
    }

    /// `__ip_vs_update_dest`.
    private func update(_ dest: Dest, _ spec: DestSpec, in svc: Service, add: Bool) {
        if add || spec.weight != 0 { dest.lastWeight = spec.weight }
        dest.weight = spec.weight
        dest.forward = spec.forward
        dest.tunnelType = spec.tunnelType
        dest.tunnelPort = spec.tunnelPort
        dest.tunnelFlags = spec.tunnelFlags
        if dest.service !== svc {
            if dest.service != nil { zeroStats(.dest(dest)) }   // bound to another service object
            dest.service = svc
        }
        dest.setFlag(.available)
        if spec.upperThreshold == 0 || spec.upperThreshold > dest.upperThreshold {
            dest.clearFlag(.overload)
        }
        dest.upperThreshold = spec.upperThreshold
        dest.lowerThreshold = spec.lowerThreshold
        if add {
            svc.dests.insert(dest, at: 0)
            svc.scheduler?.addDest(svc, dest)
            emit(.destAdded(svc.key, dest))
        } else {
            svc.scheduler?.updDest(svc, dest)
            emit(.destEdited(svc.key, dest))
        }
    }

    private func moveToTrash(_ dest: Dest, of svc: Service) {
        dest.inTrash = true
        dest.trashIdleSince = nil
        trash.insert(dest, at: 0)
        trashOwners[dest.id] = svc
    }

    /// The trash timer (run it every 60 s): a trashed dest with no
    /// connections or templates left is noted idle on one run and freed on
    /// a later run at least `trashPeriod` (120 s) after that. Returns the
    /// freed dests.
    @discardableResult
    public func purgeTrash(now: Double) -> [Dest] {
        var freed: [Dest] = []
        var i = 0
        while i < trash.count {
            let d = trash[i]
            if d.referenceCount > 0 { i += 1; continue }
            if let since = d.trashIdleSince {
                if now < since + IPVSTable.trashPeriod { i += 1; continue }
            } else {
                d.trashIdleSince = now
                i += 1
                continue
            }
            trash.remove(at: i)
            d.inTrash = false
            destsById[d.id] = nil
            destIds.release(d.id)
            let owner = trashOwners.removeValue(forKey: d.id)
            freed.append(d)
            emit(.destPurged(d.id))
            if let o = owner { releaseServiceIfUnused(o) }
        }
        return freed
    }

    // MARK: - Statistics

    private func raw(_ owner: StatsOwner) -> StatsCounters {
        rawStats?(owner) ?? StatsCounters()
    }

    private func zeroStats(_ owner: StatsOwner) {
        let now = raw(owner)
        switch owner {
        case .service(let s): s.zeroPoint = now; s.estimator.zero(now)
        case .dest(let d): d.zeroPoint = now; d.estimator.zero(now)
        case .total: totalZeroPoint = now; totalEstimator.zero(now)
        }
    }

    /// `-Z`: with a key, that service and its dests; without, every service,
    /// every dest of them and the totals. Counters are not reset: the
    /// current raw values become the zero point, and rates restart.
    public func zero(_ key: ServiceKey?) throws(IPVSError) {
        if let key {
            guard let svc = service(for: key) else { throw .noSuchService }
            zeroService(svc)
            return
        }
        for svc in services { zeroService(svc) }
        zeroStats(.total)
    }

    private func zeroService(_ svc: Service) {
        for d in svc.dests { zeroStats(.dest(d)) }
        zeroStats(.service(svc))
    }

    /// What ipvsadm shows: raw counters minus the zero point.
    public func shownStats(_ owner: StatsOwner) -> StatsCounters {
        let r = raw(owner)
        switch owner {
        case .service(let s): return r - s.zeroPoint
        case .dest(let d): return r - d.zeroPoint
        case .total: return r - totalZeroPoint
        }
    }

    /// One 2-second estimator tick over every live service and dest and the
    /// totals, reading raw counters through `rawStats`.
    public func tickEstimators() {
        for svc in services {
            svc.estimator.tick(raw(.service(svc)))
            for d in svc.dests { d.estimator.tick(raw(.dest(d))) }
        }
        totalEstimator.tick(raw(.total))
    }

    // MARK: - Timeouts

    /// `--set tcp tcpfin udp` (seconds; 0 keeps a value). Each must be in
    /// 0 ... INT_MAX / HZ, else .invalid and nothing changes.
    public func setTimeouts(tcp: Int, tcpfin: Int, udp: Int) throws(IPVSError) {
        let limit = Int(Int32.max) / IPVSTable.hz
        for v in [tcp, tcpfin, udp] where v < 0 || v > limit { throw .invalid }
        if tcp != 0 { timeouts.tcp = UInt32(tcp) }
        if tcpfin != 0 { timeouts.tcpFin = UInt32(tcpfin) }
        if udp != 0 { timeouts.udp = UInt32(udp) }
        emit(.timeouts(timeouts))
    }

    // MARK: - Replication (a worker's copy of the table)

    /// Apply one change made to the master table to this replica. The
    /// replica shares the master's Dest objects (so connection counters are
    /// global) but has its own Service objects and scheduler instances, and
    /// runs the same scheduler hooks in the same order as the master did.
    /// It never changes a Dest: the master already did.
    public func apply(_ change: TableChange) {
        switch change {
        case .serviceAdded(let c):
            let svc = Service(key: c.key, id: c.id, schedulerName: c.schedulerName, flags: c.flags,
                              timeout: c.timeout, netmask: c.netmask)
            svc.persistenceEngine = c.persistenceEngine
            svc.scheduler = Schedulers.make(c.schedulerName, for: svc)
            servicesById[svc.id] = svc
            if svc.port == 21 { ftpServiceCount += 1 } else if svc.port == 0 { portZeroServiceCount += 1 }
            switch svc.key {
            case .address(let p, let a, let pt):
                svcTable[IPVSTable.serviceHash(proto: p.rawValue, addr: a, port: pt)].insert(svc, at: 0)
            case .fwmark(let m, _):
                fwmTable[IPVSTable.fwmarkHash(m)].insert(svc, at: 0)
            }
        case .serviceEdited(let c, let rebind):
            guard let svc = service(for: c.key) else { return }
            if rebind {
                svc.scheduler = nil
                svc.schedulerName = c.schedulerName
                svc.scheduler = Schedulers.make(c.schedulerName, for: svc)
            }
            svc.flags = c.flags
            svc.timeout = c.timeout
            svc.netmask = c.netmask
            svc.persistenceEngine = c.persistenceEngine
        case .serviceDeleted(let key):
            guard let svc = service(for: key) else { return }
            switch svc.key {
            case .address(let p, let a, let pt):
                svcTable[IPVSTable.serviceHash(proto: p.rawValue, addr: a, port: pt)].removeAll { $0 === svc }
            case .fwmark(let m, _):
                fwmTable[IPVSTable.fwmarkHash(m)].removeAll { $0 === svc }
            }
            svc.scheduler = nil
            svc.isLinked = false
            svc.dests = []
            if svc.port == 21 { ftpServiceCount -= 1 } else if svc.port == 0 { portZeroServiceCount -= 1 }
            servicesById[svc.id] = nil
        case .destAdded(let key, let dest):
            guard let svc = service(for: key) else { return }
            destsById[dest.id] = dest
            svc.dests.insert(dest, at: 0)
            svc.scheduler?.addDest(svc, dest)
        case .destEdited(let key, let dest):
            guard let svc = service(for: key) else { return }
            svc.scheduler?.updDest(svc, dest)
        case .destDeleted(let key, let dest):
            guard let svc = service(for: key), let i = svc.dests.firstIndex(where: { $0 === dest }) else { return }
            svc.dests.remove(at: i)
            svc.scheduler?.delDest(svc, dest)
        case .destPurged(let id):
            destsById[id] = nil
        case .timeouts(let t):
            timeouts = t
        case .fwmarkMatch(let mark, let proto, let addr, let port):
            fwmarkMatches[FwmarkMatchKey(proto: proto, addr: addr, port: port)] = mark
        }
    }
}

/// Small ids, lowest free first, starting at 1 (0 is never handed out),
/// all below `IPVSTable.idLimit`.
struct IdAllocator {
    private var next: UInt32 = 1
    private var free: [UInt32] = []

    /// nil when every id below the limit is taken.
    mutating func allocate() -> UInt32? {
        if let i = free.indices.min(by: { free[$0] < free[$1] }) {
            return free.remove(at: i)
        }
        guard next < IPVSTable.idLimit else { return nil }
        defer { next += 1 }
        return next
    }

    mutating func release(_ id: UInt32) { free.append(id) }
}
