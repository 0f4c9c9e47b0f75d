// The per-packet IPVS decision for one worker: the kernel's in and out hooks
// (ip_vs_core.c) over this worker's connection tables.
//
// For each parsed packet the engine finds or creates the connection, runs
// the protocol state machine and the accounting, rewrites the packet in place
// for LVS/NAT, decrements the TTL, checks the MTU, and tells the data plane
// where the packet goes next (a Verdict). It never allocates on the packet
// path: new connections take entries from the table's pool; schedulers are
// consulted only when a connection is created.

/// Behaviour switches that are sysctls in the kernel.
public struct EngineSettings: Sendable {
    public var secureTCP = false
    public var expireNodestConn = false
    public var expireQuiescentTemplate = false
    public var connReuseMode = 1
    /// Egress IP MTU (route MTU) for every port.
    public var mtu = 1500
    public init() {}
}

public enum VerdictAction: UInt8 {
    /// Send to `nextHop` (MAC rewrite only left to do).
    case forward
    /// LVS/TUN: encapsulate towards `nextHop` with the dest's tunnel settings, then forward.
    case tunnel
    /// Not IPVS traffic: leave it to the rest of the data plane (bypass or exception path).
    case passthrough
    /// Addressed to a VIP but not taken by IPVS (e.g. a TCP segment without SYN): the local stack's.
    case local
    /// Drop (counted by reason).
    case drop
    /// Drop, and answer the sender with the ICMP error described in the verdict.
    case icmpError
}

public enum DropReason: UInt8, CaseIterable {
    case none = 0
    case destUnavailable
    case tableFull
    case noDest
    case ttlExpired
    case tooBig
    case fragment
    case icmpUnrelated
    case tunnelTooSmall
    public static let count = 9
    public var name: String {
        switch self {
        case .none: return "none"
        case .destUnavailable: return "dest-unavailable"
        case .tableFull: return "table-full"
        case .noDest: return "no-dest"
        case .ttlExpired: return "ttl-expired"
        case .tooBig: return "too-big"
        case .fragment: return "fragment"
        case .icmpUnrelated: return "icmp-unrelated"
        case .tunnelTooSmall: return "tunnel-mtu"
        }
    }
}

public struct Verdict {
    public var action: VerdictAction = .passthrough
    public var reason: DropReason = .none
    public var nextHop = IPAddress(hi: 0, lo: 0, family: .inet)
    public var destID: UInt32 = 0
    /// For .icmpError: what to send and from which address.
    public var icmpType: UInt8 = 0
    public var icmpCode: UInt8 = 0
    public var icmpMTU: UInt32 = 0
    public var icmpSource = IPAddress(hi: 0, lo: 0, family: .inet)
    /// The connection was just created by this packet.
    public var newConnection = false
    public init() {}
}

/// What the data plane needs per dest on the packet path, copied out of the
/// Dest objects so that no class is touched per packet.
public struct DestRoute {
    public var available: Bool = false
    public var forward: ForwardMethod = .droute
    public var tunnelType: TunnelType = .ipip
    public var tunnelPort: UInt16 = 0
    public var tunnelFlags: TunnelFlags = []
    public var address = IPAddress(hi: 0, lo: 0, family: .inet)
    /// LVS/TUN: the bytes the fast path's encapsulation prepends (outer
    /// IPv4, then the GUE or GRE headers), when it can do it: an IPv4 server
    /// and no tunnel checksum. 0: the general path's.
    public var fastTunnelHeader: UInt8 = 0
    public init() {}
}

public final class Engine {
    public var v4: ConnTable
    public var v6: ConnTable
    /// This worker's replica of the service table (see Replication.swift).
    public let table: IPVSTable
    public var settings: EngineSettings
    /// Per-worker statistics, indexed by dest id and service id (all ids
    /// are below this).
    public let maxIDs = Int(IPVSTable.idLimit)
    public let destStats: UnsafeMutablePointer<StatsCounters>
    public let serviceStats: UnsafeMutablePointer<StatsCounters>
    public let destRoutes: UnsafeMutablePointer<DestRoute>
    public var dropCounts: [UInt64] = Array(repeating: 0, count: DropReason.count)
    public private(set) var connsCreated: UInt64 = 0
    public private(set) var connsRefused: UInt64 = 0
    /// Microseconds of the last packet (the data plane's clock).
    public private(set) var now: UInt64 = 0
    /// Log lines for rate-limited messages (the control side prints them).
    public var log: (String) -> Void = { _ in }
    private var lastPortZeroLog: UInt64 = 0

    public init(table: IPVSTable, capacity: Int, settings: EngineSettings = EngineSettings()) {
        self.table = table
        self.settings = settings
        v4 = ConnTable(capacity: capacity, isV6: false)
        v6 = ConnTable(capacity: max(capacity / 4, 1024), isV6: true)
        destStats = .allocate(capacity: maxIDs)
        destStats.initialize(repeating: StatsCounters(), count: maxIDs)
        serviceStats = .allocate(capacity: maxIDs)
        serviceStats.initialize(repeating: StatsCounters(), count: maxIDs)
        destRoutes = .allocate(capacity: maxIDs)
        destRoutes.initialize(repeating: DestRoute(), count: maxIDs)
        vip4.initialize(repeating: 0, count: Engine.vip4Slots)
        configurationChanged()
    }

    /// Per-state timeouts in ms (TCP states by raw value, then UDP), copied
    /// from the table so the packet path reads plain memory.
    let timeoutsMs = UnsafeMutablePointer<UInt32>.allocate(capacity: TCPState.count + 1)
    /// Changes and requests from the control side, drained between bursts.
    public let inbox = MessageRing()

    /// Apply everything the control side has queued (call at a burst
    /// boundary: no packet of this worker is in flight).
    @inline(__always)
    public func drainInbox() {
        if inbox.isEmpty { return }
        drainInboxSlow()
    }

    func drainInboxSlow() {
        var changed = false
        while let m = inbox.pop() {
            switch m {
            case .change(let c):
                // Dests whose packet-path copy must be refreshed besides the live ones.
                var touched: [Dest] = []
                switch c {
                case .destAdded(_, let d), .destEdited(_, let d), .destDeleted(_, let d): touched = [d]
                case .serviceDeleted(let k): touched = table.service(for: k)?.dests ?? []
                default: break
                }
                table.apply(c)
                for d in touched { updateRoute(d) }
                changed = true
            case .listConnections(let req):
                req.records = connections()
                req.done.store(true, ordering: .releasing)
            }
        }
        if changed { configurationChanged() }
    }

    /// Re-read everything the packet path copies out of the configuration.
    public func configurationChanged() {
        refreshDestRoutes()
        let t = table.timeouts
        for st in TCPState.allCases { timeoutsMs[Int(st.rawValue)] = st.timeout(t) &* 1000 }
        timeoutsMs[TCPState.count] = t.udp &* 1000
    }

    /// Copy the per-dest data the packet path reads (after any configuration change).
    public func refreshDestRoutes() {
        var vips = Set<IPAddress>()
        for svc in table.services {
            for d in svc.dests { updateRoute(d) }
            if case .address(_, let a, _) = svc.key { vips.insert(a) }
            for m in table.fwmarkMatches(mark: svc.fwmark) where svc.fwmark != 0 { vips.insert(m.addr) }
        }
        for d in table.trash { updateRoute(d) }
        if vips != virtualAddresses { vipVersion += 1 }
        virtualAddresses = vips
        vip4.initialize(repeating: 0, count: Engine.vip4Slots)
        for a in vips where a.isV4 && a.v4 != 0 {
            var h = Engine.vipSlot(a.v4)
            while vip4[h] != 0 { h = (h + 1) & (Engine.vip4Slots - 1) }
            vip4[h] = a.v4
        }
    }

    /// Addresses of every virtual service (VIPs), refreshed with the dest data.
    public private(set) var virtualAddresses = Set<IPAddress>()
    /// Changes whenever the set of VIPs does (announcements follow it).
    public private(set) var vipVersion = 0
    static let vip4Slots = 1024
    /// IPv4 VIPs in a small open-addressing table (0 = empty), for the per-packet check.
    let vip4 = UnsafeMutablePointer<UInt32>.allocate(capacity: Engine.vip4Slots)

    @inline(__always)
    public func isVirtualAddress(_ a: IPAddress) -> Bool {
        guard a.isV4 else { return virtualAddresses.contains(a) }
        return Engine.isVirtualAddress4(a.v4, vip4)
    }

    /// Bumped whenever a dest's route changes: what the data plane derived
    /// from routes (its LVS/TUN templates) is stale when this has moved.
    public private(set) var routeGeneration: UInt64 = 1

    func updateRoute(_ d: Dest) {
        guard Int(d.id) < maxIDs else { return }
        routeGeneration &+= 1
        var r = DestRoute()
        r.available = d.isAvailable
        r.forward = d.forward
        r.tunnelType = d.tunnelType
        r.tunnelPort = d.tunnelPort
        r.tunnelFlags = d.tunnelFlags
        r.address = d.addr
        if d.forward == .tunnel && d.addr.isV4 && !d.tunnelFlags.contains(.csum) && !d.tunnelFlags.contains(.remcsum) {
            r.fastTunnelHeader = UInt8(Tunnel.headerLength(d.tunnelType, outerIsV6: false, flags: d.tunnelFlags))
        }
        destRoutes[Int(d.id)] = r
    }

    public var liveConnections: Int { v4.count + v6.count }

    // MARK: time

    /// Run every expiry due at or before `t` (µs). Cheap when nothing is due.
    @inline(__always)
    public func advance(to t: UInt64) {
        if t > now { now = t }
        v4.advance(to: now) { [unowned(unsafe) self] tbl, i in self.expire(&tbl, i) }
        v6.advance(to: now) { [unowned(unsafe) self] tbl, i in self.expire(&tbl, i) }
    }

    /// `ip_vs_conn_expire`: a template that still controls connections waits
    /// another 60 s; anything else is unlinked and its dest's counters drop.
    func expire(_ tbl: inout ConnTable, _ i: UInt32) {
        let f = tbl.flags(i)
        if tbl.u32(i, ConnField.nControl) > 0 {
            // The kernel's timer fires at its due time and re-arms from there.
            tbl.set32(i, ConnField.timeout, 60_000)
            tbl.arm(i, expires: tbl.u64(i, ConnField.expires) &+ 60_000_000)
            return
        }
        if f & ConnFlags.dying == 0 { tbl.unhash(i) }
        let isTemplate = f & ConnFlags.template != 0
        if let d = table.dest(id: tbl.u32(i, ConnField.destID)) {
            d.unbindConnection(isTemplate: isTemplate, wasInactive: f & ConnFlags.inactive != 0)
        }
        let ctl = tbl.u32(i, ConnField.control)
        if ctl != 0 {
            let c = ctl - 1
            tbl.set32(c, ConnField.nControl, tbl.u32(c, ConnField.nControl) &- 1)
        }
        tbl.free(i)
    }

    // MARK: the packet path

    /// Decide what happens to one parsed packet, rewriting it in place where
    /// IPVS does. `now` is the packet's time in µs.
    @inline(__always)
    public func process(_ p: UnsafeMutableRawPointer, info: inout PacketInfo, now t: UInt64) -> Verdict {
        if t != now { advance(to: t) }
        if info.ipVersion == 4 {
            return processFamily(&v4, p, &info)
        } else if info.ipVersion == 6 {
            return processFamily(&v6, p, &info)
        }
        return Verdict()
    }

    @inline(__always)
    func processFamily(_ tbl: inout ConnTable, _ p: UnsafeMutableRawPointer, _ info: inout PacketInfo) -> Verdict {
        let proto = info.l4Proto
        if proto == 1 || proto == 58 {
            return processICMP(&tbl, p, &info)
        }
        guard proto == IPProtocol.tcp.rawValue || proto == IPProtocol.udp.rawValue else { return Verdict() }
        guard info.hasPorts else {
            // A later fragment carries no ports to find its connection by.
            if isVirtualAddress(info.dst) {
                var v = Verdict()
                v.action = .drop
                v.reason = .fragment
                countDrop(.fragment)
                return v
            }
            return Verdict()
        }

        // Client -> director: an existing connection?
        if let i = tbl.lookupIn(proto: proto, caddr: info.src, cport: info.sport, vaddr: info.dst, vport: info.dport) {
            if proto == IPProtocol.tcp.rawValue && info.tcpFlags & TCPFlags.syn != 0 && settings.connReuseMode != 0 {
                if shouldReschedule(&tbl, i) {
                    expireNow(&tbl, i)
                    return newConnection(&tbl, p, &info)
                }
            }
            let destID = tbl.u32(i, ConnField.destID)
            if !routeOf(destID).available {
                if settings.expireNodestConn {
                    expireNow(&tbl, i)
                    return newConnection(&tbl, p, &info)
                }
                return dropped(.destUnavailable)
            }
            return inbound(&tbl, i, p, &info)
        }

        // Real server -> client: a NAT reply?
        if let i = tbl.lookupOut(proto: proto, caddr: info.dst, cport: info.dport, daddr: info.src, dport: info.sport),
           tbl.flags(i) & ConnFlags.fwdMask == UInt16(ForwardMethod.masq.rawValue) {
            return outbound(&tbl, i, p, &info)
        }
        return newConnection(&tbl, p, &info)
    }

    /// `is_new_conn_expected` and the expire_nodest_conn rule for a SYN that
    /// finds an existing connection.
    func shouldReschedule(_ tbl: inout ConnTable, _ i: UInt32) -> Bool {
        if settings.expireNodestConn, let d = table.dest(id: tbl.u32(i, ConnField.destID)), d.weight == 0 {
            return tbl.u32(i, ConnField.nControl) == 0
        }
        if tbl.u32(i, ConnField.control) != 0 { return false }
        let st = TCPState(rawValue: tbl.u8(i, ConnField.state)) ?? .none
        let expected = st == .timeWait || st == .close
            || (settings.connReuseMode & 2 != 0 && st == .finWait && tbl.flags(i) & ConnFlags.noOutput != 0)
        return expected && tbl.u32(i, ConnField.nControl) == 0
    }

    /// `ip_vs_conn_expire_now`: unhash at once so the next lookup misses, but
    /// keep counting it until the timer runs on the next tick.
    func expireNow(_ tbl: inout ConnTable, _ i: UInt32) {
        let f = tbl.flags(i)
        if f & ConnFlags.dying == 0 {
            tbl.unhash(i)
            tbl.setFlags(i, f | ConnFlags.dying)
        }
        tbl.arm(i, expires: now)
    }

    @inline(__always)
    func routeOf(_ id: UInt32) -> DestRoute {
        Int(id) < maxIDs ? destRoutes[Int(id)] : DestRoute()
    }

    @inline(__always)
    func dropped(_ r: DropReason) -> Verdict {
        countDrop(r)
        var v = Verdict()
        v.action = .drop
        v.reason = r
        return v
    }

    @inline(__always)
    func countDrop(_ r: DropReason) {
        dropCounts.withUnsafeMutableBufferPointer { $0[Int(r.rawValue)] &+= 1 }
    }

    // MARK: client -> real server

    @inline(__always)
    func inbound(_ tbl: inout ConnTable, _ i: UInt32, _ p: UnsafeMutableRawPointer, _ info: inout PacketInfo) -> Verdict {
        let destID = tbl.u32(i, ConnField.destID)
        let route = routeOf(destID)
        if route.available { count(tbl, i, destID, info, inbound: true) }
        setState(&tbl, i, input: true, info)
        var v = transmit(&tbl, i, p, &info, route)
        v.destID = destID
        return v
    }

    /// Per-dest and per-service packet and byte counters of this worker
    /// (the kernel counts only while the dest is available; callers check).
    @inline(__always)
    func count(_ tbl: ConnTable, _ i: UInt32, _ destID: UInt32, _ info: PacketInfo, inbound: Bool) {
        let bytes = UInt64(info.ipTotalLength)
        if Int(destID) < maxIDs { destStats[Int(destID)].add(bytes: bytes, inbound: inbound) }
        let sid = Int(tbl.u32(i, ConnField.serviceID))
        if sid < maxIDs { serviceStats[sid].add(bytes: bytes, inbound: inbound) }
    }

    /// The transmitter step: TTL, MTU, then the method's rewrite.
    @inline(__always)
    func transmit(_ tbl: inout ConnTable, _ i: UInt32, _ p: UnsafeMutableRawPointer, _ info: inout PacketInfo,
                  _ route: DestRoute) -> Verdict {
        let method = ForwardMethod(rawValue: UInt8(tbl.flags(i) & ConnFlags.fwdMask)) ?? .droute
        if method == .local { var v = Verdict(); v.action = .local; return v }
        if info.ttl <= 1 {
            return icmpError(info, timeExceeded: true, mtu: 0, source: info.dst, reason: .ttlExpired)
        }
        var mtu = settings.mtu
        if method == .tunnel {
            mtu = Tunnel.mtu(routeMTU: settings.mtu, type: route.tunnelType, outerIsV6: !route.address.isV4,
                             flags: route.tunnelFlags)
            if mtu < (info.isIPv6 ? 1280 : 68) { return dropped(.tunnelTooSmall) }
        }
        if info.ipTotalLength > mtu {
            // IPv4 with DF, and every IPv6 packet: tell the sender; IPv4 without DF is fragmented on egress.
            if info.isIPv6 || info.dfSet {
                return icmpError(info, timeExceeded: false, mtu: mtu, source: info.dst, reason: .tooBig)
            }
        }
        _ = IPHeader.decrementTTL(p, info: &info)
        var v = Verdict()
        v.nextHop = tbl.address(i, 2)
        switch method {
        case .masq:
            _ = NAT.rewriteDestination(p, info: &info, address: v.nextHop, port: tbl.u16(i, ConnField.dport))
            v.action = .forward
        case .tunnel:
            // A tunnel server may be of the other family; the entry holds
            // addresses of the service's family only, the dest its own.
            v.nextHop = route.address
            v.action = .tunnel
        default:
            v.action = .forward
        }
        return v
    }

    func icmpError(_ info: PacketInfo, timeExceeded: Bool, mtu: Int, source: IPAddress, reason: DropReason) -> Verdict {
        countDrop(reason)
        var v = Verdict()
        v.action = .icmpError
        v.reason = reason
        v.icmpSource = source
        if timeExceeded {
            v.icmpType = info.isIPv6 ? ICMPv6Type.timeExceeded : ICMPType.timeExceeded
            v.icmpCode = 0
        } else {
            v.icmpType = info.isIPv6 ? ICMPv6Type.packetTooBig : ICMPType.destinationUnreachable
            v.icmpCode = info.isIPv6 ? 0 : ICMPType.codeFragmentationNeeded
            v.icmpMTU = UInt32(mtu)
        }
        return v
    }

    // MARK: real server -> client (NAT replies)

    @inline(__always)
    func outbound(_ tbl: inout ConnTable, _ i: UInt32, _ p: UnsafeMutableRawPointer, _ info: inout PacketInfo) -> Verdict {
        let destID = tbl.u32(i, ConnField.destID)
        if routeOf(destID).available { count(tbl, i, destID, info, inbound: false) }
        setState(&tbl, i, input: false, info)
        let vaddr = tbl.address(i, 1)
        if info.ttl <= 1 {
            return icmpError(info, timeExceeded: true, mtu: 0, source: vaddr, reason: .ttlExpired)
        }
        if info.ipTotalLength > settings.mtu && (info.isIPv6 || info.dfSet) {
            return icmpError(info, timeExceeded: false, mtu: settings.mtu, source: vaddr, reason: .tooBig)
        }
        _ = IPHeader.decrementTTL(p, info: &info)
        _ = NAT.rewriteSource(p, info: &info, address: vaddr, port: tbl.u16(i, ConnField.vport))
        var v = Verdict()
        v.action = .forward
        v.nextHop = info.dst
        v.destID = destID
        return v
    }

    // MARK: state

    /// `ip_vs_set_state`: the protocol's transition, the active/inactive
    /// accounting, and the timer re-armed with the state's timeout.
    @inline(__always)
    func setState(_ tbl: inout ConnTable, _ i: UInt32, input: Bool, _ info: PacketInfo) {
        var f = tbl.flags(i)
        var timeoutMs: UInt32
        if info.l4Proto == IPProtocol.tcp.rawValue {
            let old = TCPState(rawValue: tbl.u8(i, ConnField.state)) ?? .none
            var noOutput = f & ConnFlags.noOutput != 0
            let dir = ConnDirection.effective(input ? .input : .output, noOutput: &noOutput)
            if !noOutput { f &= ~ConnFlags.noOutput }
            let new = TCPStateMachine.next(state: old, direction: dir, flags: info.tcpFlags, secure: settings.secureTCP)
            if new != old {
                let inactive = f & ConnFlags.inactive != 0
                if let d = table.dest(id: tbl.u32(i, ConnField.destID)) {
                    if !inactive && !new.isActive {
                        d.moveToInactive()
                        f |= ConnFlags.inactive
                    } else if inactive && new.isActive {
                        d.moveToActive()
                        f &= ~ConnFlags.inactive
                    }
                }
                if new == .established {
                    let ctl = tbl.u32(i, ConnField.control)
                    if ctl != 0 { tbl.setFlags(ctl - 1, tbl.flags(ctl - 1) | ConnFlags.assured) }
                }
                tbl.set8(i, ConnField.state, new.rawValue)
            }
            timeoutMs = timeoutsMs[Int(new.rawValue)]
        } else {
            if !input {
                f &= ~ConnFlags.noOutput
                let ctl = tbl.u32(i, ConnField.control)
                if ctl != 0 { tbl.setFlags(ctl - 1, tbl.flags(ctl - 1) | ConnFlags.assured) }
            }
            timeoutMs = timeoutsMs[TCPState.count]
        }
        tbl.setFlags(i, f)
        tbl.set32(i, ConnField.timeout, timeoutMs)
        tbl.arm(i, expires: now &+ UInt64(timeoutMs) &* 1000)
    }

    // MARK: new connections

    func newConnection(_ tbl: inout ConnTable, _ p: UnsafeMutableRawPointer, _ info: inout PacketInfo) -> Verdict {
        let proto = IPProtocol(rawValue: info.l4Proto) ?? .ip
        guard let svc = table.lookupService(proto: proto, addr: info.dst, port: info.dport) else { return Verdict() }
        if proto == .tcp {
            // tcp_conn_schedule: only a SYN (without RST) opens a connection;
            // anything else goes to the local stack.
            if info.tcpFlags & TCPFlags.syn == 0 || info.tcpFlags & TCPFlags.rst != 0 {
                var v = Verdict(); v.action = .local; return v
            }
        }
        // FTP data from port 20 is never scheduled.
        if info.sport == 20 { var v = Verdict(); v.action = .local; return v }

        let input = ScheduleInput(proto: proto, saddr: info.src, sport: info.sport, daddr: info.dst,
                                  dport: info.dport, now: Double(now) / 1e6)
        let created: UInt32?
        if svc.isPersistent {
            created = schedulePersistent(&tbl, svc, input, info)
        } else {
            created = scheduleOne(&tbl, svc, input, info)
        }
        guard let i = created else {
            if tbl.count >= tbl.capacity {
                connsRefused &+= 1
                return dropped(.tableFull)
            }
            // ip_vs_leave: tell the client the port is unreachable.
            countDrop(.noDest)
            var v = Verdict()
            v.action = .icmpError
            v.reason = .noDest
            v.icmpSource = info.dst
            if info.isIPv6 {
                v.icmpType = ICMPv6Type.destinationUnreachable
                v.icmpCode = ICMPv6Type.codePortUnreachable
            } else {
                v.icmpType = ICMPType.destinationUnreachable
                v.icmpCode = ICMPType.codePortUnreachable
            }
            return v
        }
        connsCreated &+= 1
        let destID = tbl.u32(i, ConnField.destID)
        let route = routeOf(destID)
        if route.available { count(tbl, i, destID, info, inbound: true) }
        setState(&tbl, i, input: true, info)
        var v = transmit(&tbl, i, p, &info, route)
        v.destID = destID
        v.newConnection = true
        if tbl.flags(i) & ConnFlags.onePacket != 0 {
            // One-packet scheduling: the connection ends with its packet.
            expireNow(&tbl, i)
        }
        return v
    }

    /// `ip_vs_schedule` for a non-persistent service.
    func scheduleOne(_ tbl: inout ConnTable, _ svc: Service, _ input: ScheduleInput, _ info: PacketInfo) -> UInt32? {
        if svc.fwmark == 0 && svc.port != input.dport {
            if now &- lastPortZeroLog > 1_000_000 || lastPortZeroLog == 0 {
                lastPortZeroLog = now
                log("Schedule: port zero only supported in persistent services, check your ipvs configuration")
            }
            return nil
        }
        // No scheduler ("none"): no destination, and nothing to log.
        guard let sched = svc.scheduler else { return nil }
        guard let dest = sched.schedule(svc, input) else {
            logNoDest(svc)
            return nil
        }
        let dport = dest.port != 0 ? dest.port : input.dport
        return createConnection(&tbl, svc, dest, input, dport: dport, control: nil)
    }

    func logNoDest(_ svc: Service) {
        if now &- lastPortZeroLog > 1_000_000 || lastPortZeroLog == 0 {
            lastPortZeroLog = now
            let name: String
            switch svc.key {
            case .address(let p, let a, let port):
                name = "\(p.listName) \(a.isV4 ? a.description : "[\(a)]"):\(port)"
            case .fwmark(let m, _):
                name = "FWM \(m)"
            }
            log("\(svc.schedulerName): \(name) - no destination available")
        }
    }

    /// The drop_entry defence, used when the table is full: scan a window of
    /// entries from a roving position and drop embryonic TCP connections
    /// (NONE or SYN_RECV, not controlling any other), so established ones keep flowing.
    func evictEmbryonic(_ tbl: inout ConnTable) -> Bool {
        var evicted = 0
        for _ in 0..<256 {
            let i = UInt32(evictRover % tbl.capacity)
            evictRover &+= 1
            let f = tbl.flags(i)
            guard f & ConnFlags.inUse != 0, f & (ConnFlags.template | ConnFlags.dying) == 0,
                  tbl.u8(i, ConnField.proto) == IPProtocol.tcp.rawValue,
                  tbl.u32(i, ConnField.nControl) == 0 else { continue }
            let st = tbl.u8(i, ConnField.state)
            guard st == TCPState.none.rawValue || st == TCPState.synRecv.rawValue else { continue }
            tbl.wheelUnlink(i)
            expire(&tbl, i)
            evicted += 1
            if evicted >= 8 { break }
        }
        connsEvicted &+= UInt64(evicted)
        return evicted > 0
    }
    private var evictRover = 0
    public private(set) var connsEvicted: UInt64 = 0

    func createConnection(_ tbl: inout ConnTable, _ svc: Service, _ dest: Dest, _ input: ScheduleInput,
                          dport: UInt16, control: UInt32?) -> UInt32? {
        var flags = UInt16(dest.forward.rawValue) | ConnFlags.inactive
        if dest.forward != .masq { flags |= ConnFlags.noOutput }
        if svc.flags.contains(.onePacket) && input.proto == .udp { flags |= ConnFlags.onePacket }
        if tbl.count >= tbl.capacity && !evictEmbryonic(&tbl) { return nil }
        guard let i = tbl.insert(proto: input.proto.rawValue, caddr: input.saddr, cport: input.sport,
                                 vaddr: input.daddr, vport: input.dport, daddr: dest.addr, dport: dport,
                                 flags: flags) else { return nil }
        tbl.set32(i, ConnField.destID, dest.id)
        tbl.set32(i, ConnField.serviceID, svc.id)
        tbl.set8(i, ConnField.state, 0)
        if let c = control {
            tbl.set32(i, ConnField.control, c + 1)
            tbl.set32(c, ConnField.nControl, tbl.u32(c, ConnField.nControl) + 1)
        }
        // A new connection lives 3 s until its first state transition.
        tbl.set32(i, ConnField.timeout, TCPState.initialTimeout * 1000)
        tbl.arm(i, expires: now &+ UInt64(TCPState.initialTimeout) * 1_000_000)
        dest.bindConnection(isTemplate: false)
        dest.connsScheduled.wrappingAdd(1, ordering: .relaxed)
        if Int(dest.id) < maxIDs { destStats[Int(dest.id)].conns &+= 1 }
        if Int(svc.id) < maxIDs { serviceStats[Int(svc.id)].conns &+= 1 }
        return i
    }

    /// `ip_vs_sched_persist`: find or make the client network's template,
    /// then the connection under it.
    func schedulePersistent(_ tbl: inout ConnTable, _ svc: Service, _ input: ScheduleInput,
                            _ info: PacketInfo) -> UInt32? {
        let snet = input.saddr.masked(prefix: svc.prefixLength)
        let vport = input.dport
        let tProto: UInt8
        let tVaddr: IPAddress
        let tVport: UInt16
        if vport == svc.port {
            tProto = input.proto.rawValue
            tVaddr = input.daddr
            tVport = svc.port != 21 ? vport : 0
        } else if svc.fwmark != 0 {
            tProto = IPProtocol.ip.rawValue
            tVaddr = tbl.isV6 ? IPAddress(hi: UInt64(svc.fwmark) << 32, lo: 0, family: .inet6) : IPAddress(v4: svc.fwmark)
            tVport = 0
        } else {
            tProto = input.proto.rawValue
            tVaddr = input.daddr
            tVport = 0
        }
        var dest: Dest? = nil
        var template: UInt32? = tbl.lookupTemplate(proto: tProto, cnet: snet, vaddr: tVaddr, vport: tVport)
        if let ct = template {
            let d = table.dest(id: tbl.u32(ct, ConnField.destID))
            if let d, d.isAvailable, !(settings.expireQuiescentTemplate && d.weight == 0) {
                dest = d
            } else {
                tbl.invalidateTemplate(ct)
                template = nil
            }
        }
        if template == nil {
            guard let sched = svc.scheduler else { return nil }
            guard let d = sched.schedule(svc, input) else {
                logNoDest(svc)
                return nil
            }
            let tDport: UInt16 = (vport == svc.port && svc.port != 21) ? d.port : 0
            guard let ct = tbl.insert(proto: tProto, caddr: snet, cport: 0, vaddr: tVaddr, vport: tVport,
                                      daddr: d.addr, dport: tDport,
                                      flags: UInt16(d.forward.rawValue) | ConnFlags.template) else { return nil }
            tbl.set32(ct, ConnField.destID, d.id)
            tbl.set32(ct, ConnField.serviceID, svc.id)
            tbl.set32(ct, ConnField.timeout, svc.timeout &* 1000)
            d.bindConnection(isTemplate: true)
            template = ct
            dest = d
        }
        guard let ct = template, let d = dest else { return nil }
        let dport: UInt16 = (vport == svc.port && d.port != 0) ? d.port : vport
        guard let i = createConnection(&tbl, svc, d, input, dport: dport, control: ct) else { return nil }
        // ip_vs_conn_put(ct): the template's timer restarts with each new connection.
        tbl.arm(ct, expires: now &+ UInt64(tbl.u32(ct, ConnField.timeout)) &* 1000)
        return i
    }

    // MARK: ICMP

    /// ICMP errors about a known connection (§8): forwarded with the embedded
    /// header rewritten for NAT. Anything else is not IPVS's.
    func processICMP(_ tbl: inout ConnTable, _ p: UnsafeMutableRawPointer, _ info: inout PacketInfo) -> Verdict {
        var emb = EmbeddedPacket()
        guard ICMP.parseEmbedded(p, info: info, into: &emb), emb.hasPorts,
              emb.proto == IPProtocol.tcp.rawValue || emb.proto == IPProtocol.udp.rawValue else {
            return Verdict()
        }
        // From outside about a packet sent to the client (embedded: VIP -> client).
        if let i = tbl.lookupIn(proto: emb.proto, caddr: emb.dst, cport: emb.dport, vaddr: emb.src, vport: emb.sport) {
            let destID = tbl.u32(i, ConnField.destID)
            let route = routeOf(destID)
            guard route.available else { return dropped(.destUnavailable) }
            count(tbl, i, destID, info, inbound: true)
            let method = ForwardMethod(rawValue: UInt8(tbl.flags(i) & ConnFlags.fwdMask)) ?? .droute
            if info.ttl <= 1 { return icmpError(info, timeExceeded: true, mtu: 0, source: info.dst, reason: .ttlExpired) }
            _ = IPHeader.decrementTTL(p, info: &info)
            var v = Verdict()
            v.destID = destID
            v.nextHop = tbl.address(i, 2)
            switch method {
            case .masq:
                _ = ICMP.rewriteRelatedInbound(p, info: &info, embedded: &emb, server: v.nextHop, port: tbl.u16(i, ConnField.dport))
                v.action = .forward
            case .tunnel:
                v.nextHop = route.address
                v.action = .tunnel
            case .local:
                v.action = .local
            default:
                v.action = .forward
            }
            return v
        }
        // From a NAT real server about a client packet (embedded: client -> RS).
        if let i = tbl.lookupOut(proto: emb.proto, caddr: emb.src, cport: emb.sport, daddr: emb.dst, dport: emb.dport),
           tbl.flags(i) & ConnFlags.fwdMask == UInt16(ForwardMethod.masq.rawValue) {
            let destID = tbl.u32(i, ConnField.destID)
            // ip_vs_out_icmp accounts the error with out_stats.
            if routeOf(destID).available { count(tbl, i, destID, info, inbound: false) }
            let vaddr = tbl.address(i, 1)
            if info.ttl <= 1 { return icmpError(info, timeExceeded: true, mtu: 0, source: vaddr, reason: .ttlExpired) }
            _ = IPHeader.decrementTTL(p, info: &info)
            _ = ICMP.rewriteRelatedOutbound(p, info: &info, embedded: &emb, vip: vaddr, port: tbl.u16(i, ConnField.vport))
            var v = Verdict()
            v.action = .forward
            v.nextHop = info.dst
            v.destID = destID
            return v
        }
        return Verdict()
    }

    // MARK: listing

    /// One row of `ipvsadm -L -n -c`.
    public struct ConnectionRecord {
        public var proto: IPProtocol
        public var client: IPAddress
        public var cport: UInt16
        public var vaddr: IPAddress
        public var vport: UInt16
        public var daddr: IPAddress
        public var dport: UInt16
        public var stateName: String
        public var expiresInSeconds: UInt64
        public var isTemplate: Bool
    }

    /// Every live connection and template, for listings (control side, not the packet path).
    public func connections() -> [ConnectionRecord] {
        var out: [ConnectionRecord] = []
        for tbl in [v4, v6] {
            tbl.forEach { i in
                let f = tbl.flags(i)
                if f & ConnFlags.dying != 0 { return }
                let proto = IPProtocol(rawValue: tbl.u8(i, ConnField.proto)) ?? .ip
                let isTemplate = f & ConnFlags.template != 0
                let state: String
                if isTemplate {
                    state = (f & ConnFlags.assured != 0 && proto != .ip) ? "ASSURED" : "NONE"
                } else if proto == .tcp {
                    state = (TCPState(rawValue: tbl.u8(i, ConnField.state)) ?? .none).name
                } else {
                    state = TCPState.udpStateName
                }
                let exp = tbl.u64(i, ConnField.expires)
                let remaining = exp > now ? (exp - now + 999_999) / 1_000_000 : 0
                out.append(ConnectionRecord(proto: proto, client: tbl.address(i, 0), cport: tbl.u16(i, ConnField.cport),
                                            vaddr: tbl.address(i, 1), vport: tbl.u16(i, ConnField.vport),
                                            daddr: tbl.address(i, 2), dport: tbl.u16(i, ConnField.dport),
                                            stateName: state, expiresInSeconds: remaining, isTemplate: isTemplate))
            }
        }
        return out
    }
}
