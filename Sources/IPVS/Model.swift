// The IPVS object model: virtual services, their real servers ("dests") and
// the scheduler interface, with the kernel's flag values and defaults.
//
// Concurrency contract: Service and Dest configuration is changed only by the
// control side; the data plane reads it. Dest connection counters are shared
// by every worker and change once per connection event (never per packet).

import Synchronization
@_exported import Wire

public enum IPProtocol: UInt8, Sendable, CaseIterable {
    case ip = 0        // fwmark persistence templates use protocol 0
    case tcp = 6
    case udp = 17
    case sctp = 132

    /// ipvsadm's name for list output: TCP, UDP, SCTP.
    public var listName: String {
        switch self {
        case .tcp: return "TCP"
        case .udp: return "UDP"
        case .sctp: return "SCTP"
        case .ip: return "IP"
        }
    }
}

/// Forwarding method, `conn_flags & 7` in the kernel.
public enum ForwardMethod: UInt8, Sendable {
    case masq = 0      // LVS/NAT, -m
    case local = 1     // local node
    case tunnel = 2    // LVS/TUN, -i
    case droute = 3    // LVS/DR, -g
    case bypass = 4    // connections only

    /// The `Forward` column of `ipvsadm -L`.
    public var listName: String {
        switch self {
        case .masq: return "Masq"
        case .local: return "Local"
        case .tunnel: return "Tunnel"
        case .droute: return "Route"
        case .bypass: return "Bypass"
        }
    }
}

/// Service flags (uapi ip_vs.h).
public struct ServiceFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let persistent = ServiceFlags(rawValue: 0x1)
    public static let hashed = ServiceFlags(rawValue: 0x2)
    public static let onePacket = ServiceFlags(rawValue: 0x4)
    public static let sched1 = ServiceFlags(rawValue: 0x8)   // sh-fallback / mh-fallback
    public static let sched2 = ServiceFlags(rawValue: 0x10)  // sh-port / mh-port
    public static let sched3 = ServiceFlags(rawValue: 0x20)
}

/// Dest flags.
public struct DestFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let available = DestFlags(rawValue: 0x1)
    public static let overload = DestFlags(rawValue: 0x2)
}

/// How a service is looked up: <protocol, address, port> or a firewall-mark
/// group (Switchyard has no netfilter marks: a fwmark service matches the
/// <protocol, address, port> entries listed for its mark).
public enum ServiceKey: Hashable, Sendable {
    case address(proto: IPProtocol, addr: IPAddress, port: UInt16)
    case fwmark(mark: UInt32, family: AddressFamily)

    public var family: AddressFamily {
        switch self {
        case .address(_, let a, _): return a.family
        case .fwmark(_, let f): return f
        }
    }
}

/// Statistics counters (conns, packets, bytes in each direction).
public struct StatsCounters: Sendable, Equatable {
    public var conns: UInt64 = 0
    public var inPackets: UInt64 = 0
    public var outPackets: UInt64 = 0
    public var inBytes: UInt64 = 0
    public var outBytes: UInt64 = 0
    public init() {}
    public init(conns: UInt64, inPackets: UInt64, outPackets: UInt64, inBytes: UInt64, outBytes: UInt64) {
        self.conns = conns; self.inPackets = inPackets; self.outPackets = outPackets
        self.inBytes = inBytes; self.outBytes = outBytes
    }
    /// One packet of `bytes` in either direction.
    @inline(__always)
    public mutating func add(bytes: UInt64, inbound: Bool) {
        if inbound {
            inPackets &+= 1
            inBytes &+= bytes
        } else {
            outPackets &+= 1
            outBytes &+= bytes
        }
    }

    public static func + (a: StatsCounters, b: StatsCounters) -> StatsCounters {
        StatsCounters(conns: a.conns &+ b.conns, inPackets: a.inPackets &+ b.inPackets,
                      outPackets: a.outPackets &+ b.outPackets, inBytes: a.inBytes &+ b.inBytes,
                      outBytes: a.outBytes &+ b.outBytes)
    }
    public static func - (a: StatsCounters, b: StatsCounters) -> StatsCounters {
        StatsCounters(conns: a.conns &- b.conns, inPackets: a.inPackets &- b.inPackets,
                      outPackets: a.outPackets &- b.outPackets, inBytes: a.inBytes &- b.inBytes,
                      outBytes: a.outBytes &- b.outBytes)
    }
}

/// A real server of one service (`struct ip_vs_dest`).
public final class Dest: @unchecked Sendable {
    public let addr: IPAddress
    public let port: UInt16
    /// Small stable number, unique among live and trashed dests, used by
    /// connection entries and per-worker statistics arrays.
    public let id: UInt32

    public var forward: ForwardMethod
    public var weight: Int32
    /// The latest non-zero weight (only mh reads it).
    public var lastWeight: Int32
    public var upperThreshold: UInt32
    public var lowerThreshold: UInt32
    public var tunnelType: TunnelType
    public var tunnelPort: UInt16
    public var tunnelFlags: TunnelFlags

    // Shared by all workers; changed per connection event.
    public let flagBits = Atomic<UInt32>(DestFlags.available.rawValue)
    public let activeConns = Atomic<Int32>(0)
    public let inactiveConns = Atomic<Int32>(0)
    public let persistConns = Atomic<Int32>(0)
    /// Connections scheduled to this dest (always counted, even while unavailable).
    public let connsScheduled = Atomic<UInt64>(0)

    /// The service this dest belongs to (the kernel's dest->svc); unowned to
    /// avoid a cycle. IPVSTable keeps a deleted service alive while dests of
    /// it wait in the trash, so this stays valid for trashed dests too.
    public unowned(unsafe) var service: Service?

    /// `-Z` zero point: the raw cumulative counters at the last zeroing.
    /// Shown statistics are raw totals minus this (see IPVSTable.zero).
    public var zeroPoint = StatsCounters()
    /// Rate estimator, fed every 2 s with the raw cumulative counters.
    public var estimator = RateEstimator()
    /// True while the dest sits in the trash (deleted, maybe still used by conns).
    public internal(set) var inTrash = false
    /// Trash ageing: when the trash timer first found it unreferenced.
    public internal(set) var trashIdleSince: Double? = nil

    public init(addr: IPAddress, port: UInt16, id: UInt32, forward: ForwardMethod = .droute,
                weight: Int32 = 1, upperThreshold: UInt32 = 0, lowerThreshold: UInt32 = 0,
                tunnelType: TunnelType = .ipip, tunnelPort: UInt16 = 0, tunnelFlags: TunnelFlags = []) {
        self.addr = addr; self.port = port; self.id = id
        self.forward = forward; self.weight = weight; self.lastWeight = weight
        self.upperThreshold = upperThreshold; self.lowerThreshold = lowerThreshold
        self.tunnelType = tunnelType; self.tunnelPort = tunnelPort; self.tunnelFlags = tunnelFlags
    }

    public var flags: DestFlags { DestFlags(rawValue: flagBits.load(ordering: .relaxed)) }
    public var isAvailable: Bool { flags.contains(.available) }
    public var isOverloaded: Bool { flags.contains(.overload) }
    public var active: Int32 { activeConns.load(ordering: .relaxed) }
    public var inactive: Int32 { inactiveConns.load(ordering: .relaxed) }
    public var persistent: Int32 { persistConns.load(ordering: .relaxed) }

    public func setFlag(_ f: DestFlags) { flagBits.bitwiseOr(f.rawValue, ordering: .relaxed) }
    public func clearFlag(_ f: DestFlags) { flagBits.bitwiseAnd(~f.rawValue, ordering: .relaxed) }

    /// `ip_vs_dest_conn_overhead`: active * 256 + inactive.
    public var connOverhead: Int64 { (Int64(active) << 8) + Int64(inactive) }
}

/// A virtual service (`struct ip_vs_service`).
public final class Service: @unchecked Sendable {
    public let key: ServiceKey
    /// Small stable number, unique among live services, for per-worker statistics arrays.
    public let id: UInt32
    public var schedulerName: String
    public var scheduler: Scheduler?
    public var flags: ServiceFlags
    /// Persistence timeout in seconds (ipvsadm's bare -p gives 360).
    public var timeout: UInt32
    /// IPv4: a mask as a host-order u32; IPv6: a prefix length 1..128.
    public var netmask: UInt32
    public var persistenceEngine: String?
    /// Dests in the kernel's list order: the newest first.
    public var dests: [Dest] = []

    /// `-Z` zero point: the raw cumulative counters at the last zeroing.
    public var zeroPoint = StatsCounters()
    /// Rate estimator, fed every 2 s with the raw cumulative counters.
    public var estimator = RateEstimator()
    /// False once the service was deleted (its trashed dests may still point here).
    public internal(set) var isLinked = true

    public init(key: ServiceKey, id: UInt32, schedulerName: String = "wlc", flags: ServiceFlags = [],
                timeout: UInt32 = 0, netmask: UInt32? = nil) {
        self.key = key
        self.id = id
        self.schedulerName = schedulerName
        self.flags = flags
        self.timeout = timeout
        self.netmask = netmask ?? (key.family == .inet ? 0xFFFF_FFFF : 128)
    }

    public var isPersistent: Bool { flags.contains(.persistent) }
    public var protocolValue: IPProtocol {
        if case .address(let p, _, _) = key { return p }
        return .ip
    }
    /// The service port (0 for fwmark services).
    public var port: UInt16 {
        if case .address(_, _, let p) = key { return p }
        return 0
    }
    public var fwmark: UInt32 {
        if case .fwmark(let m, _) = key { return m }
        return 0
    }
    public var family: AddressFamily { key.family }
    /// Netmask as a prefix length (IPv4 masks are converted by counting ones).
    public var prefixLength: Int {
        family == .inet ? netmask.nonzeroBitCount : Int(netmask)
    }
}

/// What a scheduler may look at in the packet that opens a connection.
public struct ScheduleInput: Sendable {
    public var proto: IPProtocol
    public var saddr: IPAddress
    public var sport: UInt16       // host order
    public var daddr: IPAddress
    public var dport: UInt16       // host order
    /// Seconds (monotonic, the data plane's clock) for lblc/lblcr cache ageing.
    public var now: Double
    public init(proto: IPProtocol, saddr: IPAddress, sport: UInt16, daddr: IPAddress, dport: UInt16, now: Double = 0) {
        self.proto = proto; self.saddr = saddr; self.sport = sport
        self.daddr = daddr; self.dport = dport; self.now = now
    }
}

/// A scheduling algorithm bound to one service (the kernel's
/// `struct ip_vs_scheduler` hooks plus its per-service `sched_data`).
public protocol Scheduler: AnyObject {
    /// The name ipvsadm prints (rr, wrr, ...).
    var name: String { get }
    /// `schedule`: one dest or nil ("no destination available").
    func schedule(_ service: Service, _ input: ScheduleInput) -> Dest?
    /// Hooks run after the service's dest list changed (dest already linked
    /// at the head for add, already unlinked for delete).
    func addDest(_ service: Service, _ dest: Dest)
    func delDest(_ service: Service, _ dest: Dest)
    func updDest(_ service: Service, _ dest: Dest)
}

public extension Scheduler {
    func addDest(_ service: Service, _ dest: Dest) {}
    func delDest(_ service: Service, _ dest: Dest) {}
    func updDest(_ service: Service, _ dest: Dest) {}
}
