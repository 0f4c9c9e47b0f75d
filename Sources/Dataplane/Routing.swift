// Where a next hop leaves: connected prefixes from --port-addr, static
// routes from --route, longest prefix first; and the neighbour MAC for it.
// Lookups are per packet but the tables are tiny arrays of trivial values,
// scanned in order (most deployments have a handful of prefixes).
import CDPDK
import Wire

public struct RouteEntry: Sendable {
    public var prefix: IPAddress
    public var length: Int
    public var port: UInt16
    /// nil: the destination itself is the next hop (connected).
    public var gateway: IPAddress?
}

public struct Egress {
    public var port: UInt16
    public var nextHop: IPAddress
}

public final class Router: @unchecked Sendable {
    let entries: UnsafeMutablePointer<RouteEntry>
    let count: Int
    let defaultPort: UInt16
    /// Static (--neigh) and learned (ARP/NDP) neighbours.
    public let neighbours = NeighbourTable()
    /// Each port's MAC, indexed by port id.
    let macs: UnsafeMutablePointer<MACAddress>
    public let portAddresses: [PortAddress]
    public let portIDs: [UInt16]

    public init(options: Options, ports: [PortDescription]) {
        var list: [RouteEntry] = []
        for pa in options.portAddresses {
            list.append(RouteEntry(prefix: pa.address.masked(prefix: pa.prefixLength), length: pa.prefixLength,
                                   port: pa.port, gateway: nil))
        }
        let defaultPort = ports.first?.id ?? 0
        for r in options.routes {
            // A gateway leaves through the port whose prefix holds it, unless given.
            let port = r.port ?? list.first(where: { $0.gateway == nil && r.gateway.masked(prefix: $0.length) == $0.prefix
                && $0.prefix.family == r.gateway.family })?.port ?? defaultPort
            list.append(RouteEntry(prefix: r.prefix, length: r.prefixLength, port: port, gateway: r.gateway))
        }
        list.sort { $0.length > $1.length }
        entries = .allocate(capacity: max(list.count, 1))
        for (i, e) in list.enumerated() { (entries + i).initialize(to: e) }
        count = list.count
        self.defaultPort = defaultPort
        for e in options.neighbours { neighbours.learn(e.address, e.mac, now: 0, permanent: true) }
        macs = .allocate(capacity: 1024)
        macs.initialize(repeating: MACAddress(0), count: 1024)
        for p in ports where p.id < 1024 { macs[Int(p.id)] = p.mac }
        portAddresses = options.portAddresses
        portIDs = ports.map(\.id)
    }

    @inline(__always)
    public func mac(of port: UInt16) -> MACAddress { macs[Int(port) & 1023] }

    /// Is `a` one of port P's own addresses?
    public func isPortAddress(_ a: IPAddress, port: UInt16) -> Bool {
        portAddresses.contains { $0.port == port && $0.address == a }
    }

    public func isAnyPortAddress(_ a: IPAddress) -> Bool {
        portAddresses.contains { $0.address == a }
    }

    /// Ports that answer ARP/NDP for a VIP: those whose prefix holds it, or
    /// the first port when none does.
    public func portsAnswering(forVIP a: IPAddress) -> [UInt16] {
        let holding = portAddresses.filter { $0.address.family == a.family && a.masked(prefix: $0.prefixLength) == $0.address.masked(prefix: $0.prefixLength) }
        if holding.isEmpty { return portIDs.first.map { [$0] } ?? [] }
        var out: [UInt16] = []
        for h in holding where !out.contains(h.port) { out.append(h.port) }
        return out
    }

    /// The source address for probes to `target` on `port`: the port's
    /// address whose prefix holds the target, else its first of that family.
    public func probeSource(for target: IPAddress, port: UInt16) -> IPAddress? {
        let mine = portAddresses.filter { $0.port == port && $0.address.family == target.family }
        return (mine.first { target.masked(prefix: $0.prefixLength) == $0.address.masked(prefix: $0.prefixLength) } ?? mine.first)?.address
    }

    /// Longest-prefix match (DPDK's rte_lpm / rte_lpm6 once `buildLPM` ran,
    /// else a scan of the prefix list); with no match the destination is
    /// taken as directly reachable through the first port.
    @inline(__always)
    public func egress(for a: IPAddress) -> Egress {
        if a.isV4, let lpm = lpm4 {
            var nh: UInt32 = 0
            if sy_lpm_lookup(lpm, a.v4, &nh) == 0 { return route(Int(nh), a) }
            if let d = default4 { return route(d, a) }
            return Egress(port: defaultPort, nextHop: a)
        }
        if !a.isV4, let lpm = lpm6 {
            var bytes = (UInt64(0), UInt64(0))
            withUnsafeMutableBytes(of: &bytes) { a.store(to: $0.baseAddress!) }
            var nh: UInt32 = 0
            let found = withUnsafeBytes(of: &bytes) {
                sy_lpm6_lookup(lpm, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), &nh) == 0
            }
            if found { return route(Int(nh), a) }
            if let d = default6 { return route(d, a) }
            return Egress(port: defaultPort, nextHop: a)
        }
        var i = 0
        while i < count {
            let e = entries[i]
            if e.prefix.family == a.family && a.masked(prefix: e.length) == e.prefix {
                return Egress(port: e.port, nextHop: e.gateway ?? a)
            }
            i += 1
        }
        return Egress(port: defaultPort, nextHop: a)
    }

    @inline(__always)
    func route(_ i: Int, _ a: IPAddress) -> Egress {
        let e = entries[i]
        return Egress(port: e.port, nextHop: e.gateway ?? a)
    }

    var lpm4: UnsafeMutableRawPointer?
    var lpm6: UnsafeMutableRawPointer?
    var default4: Int?
    var default6: Int?

    /// Load the routes into rte_lpm and rte_lpm6 (needs EAL). Entries are
    /// sorted longest first, so for equal prefixes the first one wins, as in the scan.
    public func buildLPM() throws {
        lpm4 = sy_lpm_create("sy_routes4", UInt32(max(count, 1) * 2 + 16))
        lpm6 = sy_lpm6_create("sy_routes6", UInt32(max(count, 1) * 2 + 16))
        guard lpm4 != nil, lpm6 != nil else {
            throw DataplaneError("cannot create the route tables (rte_lpm): \(String(cString: sy_strerror_last()))")
        }
        for i in stride(from: count - 1, through: 0, by: -1) {
            let e = entries[i]
            if e.length == 0 {
                if e.prefix.isV4 { default4 = i } else { default6 = i }
                continue
            }
            if e.prefix.isV4 {
                _ = sy_lpm_add(lpm4, e.prefix.v4, UInt8(e.length), UInt32(i))
            } else {
                var bytes = (UInt64(0), UInt64(0))
                withUnsafeMutableBytes(of: &bytes) { e.prefix.store(to: $0.baseAddress!) }
                _ = withUnsafeBytes(of: &bytes) {
                    sy_lpm6_add(lpm6, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt8(e.length), UInt32(i))
                }
            }
        }
    }

    @inline(__always)
    public func neighbour(_ a: IPAddress) -> MACAddress? { neighbours.lookup(a)?.mac }

    /// The address of `port` in `family` (the TUN outer source, ICMP source of last resort).
    public func address(of port: UInt16, family: AddressFamily) -> IPAddress? {
        portAddresses.first(where: { $0.port == port && $0.address.family == family })?.address
            ?? portAddresses.first(where: { $0.address.family == family })?.address
    }
}
