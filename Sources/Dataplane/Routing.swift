// Where a next hop leaves: connected prefixes from --port-addr, static
// routes from --route, longest prefix first; and the neighbour MAC for it.
// Lookups are per packet but the tables are tiny arrays of trivial values,
// scanned in order (most deployments have a handful of prefixes).
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
    /// Static neighbours (--neigh); dynamic ARP/NDP resolution adds to this later.
    public private(set) var neighbours: [IPAddress: MACAddress]
    /// Each port's MAC and its first address of each family (for packets we originate).
    public let portMACs: [UInt16: MACAddress]
    public let portAddresses: [PortAddress]

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
        var n: [IPAddress: MACAddress] = [:]
        for e in options.neighbours { n[e.address] = e.mac }
        neighbours = n
        var macs: [UInt16: MACAddress] = [:]
        for p in ports { macs[p.id] = p.mac }
        portMACs = macs
        portAddresses = options.portAddresses
    }

    /// Longest-prefix match; with no match the destination is taken as
    /// directly reachable through the first port.
    @inline(__always)
    public func egress(for a: IPAddress) -> Egress {
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
    public func neighbour(_ a: IPAddress) -> MACAddress? { neighbours[a] }

    /// The address of `port` in `family` (the TUN outer source, ICMP source of last resort).
    public func address(of port: UInt16, family: AddressFamily) -> IPAddress? {
        portAddresses.first(where: { $0.port == port && $0.address.family == family })?.address
            ?? portAddresses.first(where: { $0.address.family == family })?.address
    }
}
