// ipvsadm's list and save output, byte for byte (ipvsadm 1.31 print_title,
// print_service_entry, list_all, list_service, list_conn, list_timeout,
// list_daemon). Addresses always print numerically (no reverse DNS); without
// -n ports are named from the services table, as ipvsadm does.

import IPVS

/// Rates as the estimator reads them out (per second).
public struct RateCounters: Sendable, Equatable {
    public var cps: UInt64 = 0
    public var inPPS: UInt64 = 0
    public var outPPS: UInt64 = 0
    public var inBPS: UInt64 = 0
    public var outBPS: UInt64 = 0
    public init() {}
    public init(cps: UInt64, inPPS: UInt64, outPPS: UInt64, inBPS: UInt64, outBPS: UInt64) {
        self.cps = cps; self.inPPS = inPPS; self.outPPS = outPPS; self.inBPS = inBPS; self.outBPS = outBPS
    }
}

/// Where counters and rates come from (they are summed from the workers
/// elsewhere). The defaults report zeros.
public struct StatsSource {
    public var service: (Service) -> StatsCounters
    public var dest: (Service, Dest) -> StatsCounters
    public var serviceRate: (Service) -> RateCounters
    public var destRate: (Service, Dest) -> RateCounters

    public init(service: @escaping (Service) -> StatsCounters = { _ in StatsCounters() },
                dest: @escaping (Service, Dest) -> StatsCounters = { _, _ in StatsCounters() },
                serviceRate: @escaping (Service) -> RateCounters = { _ in RateCounters() },
                destRate: @escaping (Service, Dest) -> RateCounters = { _, _ in RateCounters() }) {
        self.service = service; self.dest = dest; self.serviceRate = serviceRate; self.destRate = destRate
    }

    public static var zero: StatsSource { StatsSource() }
}

/// One row of `ipvsadm -L -c` (what /proc/net/ip_vs_conn holds).
public struct ConnectionRow: Sendable, Equatable {
    public var proto: IPProtocol
    public var expiresSeconds: UInt32
    /// The state name as the kernel prints it: ESTABLISHED, SYN_RECV, UDP, NONE, ...
    public var stateName: String
    public var clientAddr: IPAddress
    public var clientPort: UInt16
    public var virtualAddr: IPAddress
    public var virtualPort: UInt16
    public var destAddr: IPAddress
    public var destPort: UInt16
    /// Persistence engine name and data (templates of a --pe service).
    public var peName: String? = nil
    public var peData: String? = nil

    public init(proto: IPProtocol, expiresSeconds: UInt32, stateName: String,
                client: (IPAddress, UInt16), virtual: (IPAddress, UInt16), dest: (IPAddress, UInt16),
                peName: String? = nil, peData: String? = nil) {
        self.proto = proto; self.expiresSeconds = expiresSeconds; self.stateName = stateName
        self.clientAddr = client.0; self.clientPort = client.1
        self.virtualAddr = virtual.0; self.virtualPort = virtual.1
        self.destAddr = dest.0; self.destPort = dest.1
        self.peName = peName; self.peData = peData
    }
}

/// A sync daemon as `--daemon` lists it.
public struct SyncDaemonStatus: Sendable, Equatable {
    public var state: SyncDaemonState
    public var mcastInterface: String
    public var syncID: UInt8
    public var syncMaxlen: UInt16 = 0      // 0: not printed
    public var mcastGroup: IPAddress? = nil
    public var mcastPort: UInt16 = 0       // 0: not printed
    public var mcastTTL: UInt8 = 0         // 0: not printed
    public init(state: SyncDaemonState, mcastInterface: String, syncID: UInt8) {
        self.state = state; self.mcastInterface = mcastInterface; self.syncID = syncID
    }
}

public enum IpvsadmFormat {
    /// `IP Virtual Server version 1.2.1 (size=%d)` and a newline.
    public static func header(size: Int) -> String {
        "IP Virtual Server version 1.2.1 (size=\(size))\n"
    }

    /// print_largenum: `%9llu` below 10^8, then K (/1000, below 10^9),
    /// M (/10^6, below 10^11), G (/10^9, below 10^14), else T (/10^12), each
    /// `%8llu` plus the letter; `--exact` prints `%*llu` with width
    /// max(9, digits + 1).
    public static func largeNumber(_ i: UInt64, exact: Bool = false) -> String {
        if exact {
            let s = String(i)
            return rjust(s, s.count <= 8 ? 9 : s.count + 1)
        }
        if i < 100_000_000 { return rjust(String(i), 9) }
        if i < 1_000_000_000 { return rjust(String(i / 1000), 8) + "K" }
        if i < 100_000_000_000 { return rjust(String(i / 1_000_000), 8) + "M" }
        if i < 100_000_000_000_000 { return rjust(String(i / 1_000_000_000), 8) + "G" }
        return rjust(String(i / 1_000_000_000_000), 8) + "T"
    }

    /// print_title (empty for -S).
    public static func title(_ format: ListFormat) -> String {
        let first = ljust("Prot LocalAddress:Port", 33)
        if format.contains(.stats) {
            return first + " " + ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"].map { rjust($0, 8) }.joined(separator: " ")
                + "\n  -> RemoteAddress:Port\n"
        }
        if format.contains(.rate) {
            return first + " " + ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"].map { rjust($0, 8) }.joined(separator: " ")
                + "\n  -> RemoteAddress:Port\n"
        }
        if format.contains(.thresholds) {
            return first + " " + ["Uthreshold", "Lthreshold", "ActiveConn", "InActConn"].map { ljust($0, 10) }.joined(separator: " ")
                + "\n  -> RemoteAddress:Port\n"
        }
        if format.contains(.persistentConn) {
            return first + " " + ljust("Weight", 9) + " " + ljust("PersistConn", 11) + " "
                + ljust("ActiveConn", 10) + " " + ljust("InActConn", 10) + "\n  -> RemoteAddress:Port\n"
        }
        if format.contains(.tunInfo) {
            return "Prot LocalAddress:Port Scheduler Flags\n"
                + "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        }
        if format.contains(.rule) { return "" }
        return "Prot LocalAddress:Port Scheduler Flags\n"
            + "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    }

    /// list_all: the version header (not for -S), the title, every service
    /// sorted (unless --nosort) with its dests.
    public static func listAll(_ services: [Service], format: ListFormat, size: Int,
                               stats: StatsSource = .zero, names: NameResolver = .system) -> String {
        var out = format.contains(.rule) ? "" : header(size: size)
        let ordered = format.contains(.nosort) ? services : glibcMergeSort(services, compareServices)
        out += title(format)
        for s in ordered { out += serviceEntry(s, format: format, stats: stats, names: names) }
        return out
    }

    /// list_service (`-L -t ...`): title and one service, no version header.
    public static func listService(_ service: Service, format: ListFormat,
                                   stats: StatsSource = .zero, names: NameResolver = .system) -> String {
        title(format) + serviceEntry(service, format: format, stats: stats, names: names)
    }

    /// `-S [-n]`: the rules that rebuild the table.
    public static func save(_ services: [Service], numeric: Bool, names: NameResolver = .system) -> String {
        listAll(services, format: numeric ? [.rule, .numeric] : [.rule], size: 0, names: names)
    }

    static func schedFlagsText(_ s: Service) -> String {
        var parts: [String] = []
        let f = s.flags
        switch s.schedulerName {
        case "sh":
            if f.contains(.sched1) { parts.append("sh-fallback") }
            if f.contains(.sched2) { parts.append("sh-port") }
        case "mh":
            if f.contains(.sched1) { parts.append("mh-fallback") }
            if f.contains(.sched2) { parts.append("mh-port") }
        default:
            if f.contains(.sched1) { parts.append("flag-1") }
            if f.contains(.sched2) { parts.append("flag-2") }
            if f.contains(.sched3) { parts.append("flag-3") }
        }
        return parts.joined(separator: ",")
    }

    static func maskText(_ s: Service) -> String? {
        if s.family == .inet {
            guard s.netmask != 0xFFFF_FFFF else { return nil }
            return inetNtop(IPAddress(v4: s.netmask))
        }
        guard s.netmask != 128 else { return nil }
        return String(Int32(bitPattern: s.netmask))
    }

    static func serviceName(_ s: Service, format: ListFormat, names: NameResolver) -> String {
        let rule = format.contains(.rule)
        switch s.key {
        case .fwmark(let mark, let family):
            if rule { return family == .inet6 ? "-f \(mark) -6" : "-f \(mark)" }
            return family == .inet6 ? "FWM  \(mark) IPv6" : "FWM  \(mark)"
        case .address(let proto, let addr, let port):
            let vname = addrPortText(addr, port, proto: proto, numeric: format.contains(.numeric), names: names)
            if rule {
                let stype: String
                switch proto {
                case .tcp: stype = "-t"
                case .udp: stype = "-u"
                case .sctp: stype = "--sctp-service"
                case .ip: stype = "--xxx-service"
                }
                return "\(stype) \(vname)"
            }
            let n = ljust(proto == .ip ? "?" : proto.listName, 4) + " " + vname
            return addr.isV4 ? truncated(n, 33) : n
        }
    }

    static func forwardSwitch(_ f: ForwardMethod) -> String {
        switch f {
        case .masq: return "-m"
        case .tunnel: return "-i"
        default: return "-g"
        }
    }

    static let tunnelFlagNames = ["-c", "+c", "r+c"]
    static let tunnelFlagOptions = ["--tun-nocsum", "--tun-csum", "--tun-remcsum"]

    static func tunnelFlagIndex(_ d: Dest) -> Int {
        min(Int(d.tunnelFlags.rawValue), 2)
    }

    /// fwd_tun_info: nil unless a tunnel dest.
    static func tunnelInfo(_ d: Dest) -> String? {
        guard d.forward == .tunnel else { return nil }
        switch d.tunnelType {
        case .ipip: return "ipip"
        case .gue: return "gue:\(d.tunnelPort):\(tunnelFlagNames[tunnelFlagIndex(d)])"
        case .gre: return "gre:\(tunnelFlagNames[tunnelFlagIndex(d)])"
        }
    }

    /// print_service_entry: one service line and its dest lines.
    public static func serviceEntry(_ s: Service, format: ListFormat, stats: StatsSource = .zero,
                                    names: NameResolver = .system) -> String {
        let svcName = serviceName(s, format: format, names: names)
        let exact = format.contains(.exact)
        var out = ""
        if format.contains(.rule) {
            out += "-A \(svcName) -s \(s.schedulerName)"
            if s.flags.contains(.persistent) {
                out += " -p \(s.timeout)"
                if let m = maskText(s) { out += " -M \(m)" }
            }
            if let pe = s.persistenceEngine, !pe.isEmpty { out += " --pe \(pe)" }
            if s.flags.contains(.onePacket) { out += " -o" }
            if !s.flags.isDisjoint(with: [.sched1, .sched2, .sched3]) { out += " -b " + schedFlagsText(s) }
        } else if format.contains(.stats) {
            let c = stats.service(s)
            out += ljust(svcName, 33)
            for v in [c.conns, c.inPackets, c.outPackets, c.inBytes, c.outBytes] { out += largeNumber(v, exact: exact) }
        } else if format.contains(.rate) {
            let r = stats.serviceRate(s)
            out += ljust(svcName, 33)
            for v in [r.cps, r.inPPS, r.outPPS, r.inBPS, r.outBPS] { out += largeNumber(v, exact: exact) }
        } else {
            out += "\(svcName) \(s.schedulerName)"
            if !s.flags.isDisjoint(with: [.sched1, .sched2, .sched3]) { out += " (" + schedFlagsText(s) + ")" }
            if s.flags.contains(.persistent) {
                out += " persistent \(s.timeout)"
                if let m = maskText(s) { out += " mask \(m)" }
                if let pe = s.persistenceEngine, !pe.isEmpty { out += " pe \(pe)" }
            }
            if s.flags.contains(.onePacket) { out += " ops" }
        }
        out += "\n"

        let dests = format.contains(.nosort) ? s.dests : glibcMergeSort(s.dests, compareDests)
        let proto: IPProtocol = {
            if case .address(let p, _, _) = s.key { return p }
            return .tcp
        }()
        for d in dests {
            var dname = addrPortText(d.addr, d.port, proto: proto, numeric: format.contains(.numeric), names: names)
            if !format.contains(.rule) && d.addr.isV4 { dname = truncated(dname, 28) }
            let active = String(UInt32(bitPattern: d.active))
            let inactive = String(UInt32(bitPattern: d.inactive))
            if format.contains(.rule) {
                var line = "-a \(svcName) -r \(dname) \(forwardSwitch(d.forward)) -w \(d.weight)"
                if d.forward == .tunnel {
                    switch d.tunnelType {
                    case .gre: line += " --tun-type gre \(tunnelFlagOptions[tunnelFlagIndex(d)])"
                    case .gue: line += " --tun-type gue --tun-port \(d.tunnelPort) \(tunnelFlagOptions[tunnelFlagIndex(d)])"
                    case .ipip: line += " --tun-type ipip"
                    }
                }
                out += line + "\n"
            } else if format.contains(.stats) {
                let c = stats.dest(s, d)
                out += "  -> " + ljust(dname, 28)
                for v in [c.conns, c.inPackets, c.outPackets, c.inBytes, c.outBytes] { out += largeNumber(v, exact: exact) }
                out += "\n"
            } else if format.contains(.rate) {
                let r = stats.destRate(s, d)
                out += "  -> " + ljust(dname, 28) + " " + rjust(String(r.cps), 8) + " " + rjust(String(r.inPPS), 8)
                    + " " + rjust(String(r.outPPS), 8)
                out += largeNumber(r.inBPS, exact: exact) + largeNumber(r.outBPS, exact: exact) + "\n"
            } else if format.contains(.thresholds) {
                out += "  -> " + ljust(dname, 28) + " " + ljust(String(d.upperThreshold), 10) + " "
                    + ljust(String(d.lowerThreshold), 10) + " " + ljust(active, 10) + " " + ljust(inactive, 10) + "\n"
            } else if format.contains(.persistentConn) {
                out += "  -> " + ljust(dname, 28) + " " + ljust(String(UInt32(bitPattern: d.weight)), 9) + " "
                    + ljust(String(UInt32(bitPattern: d.persistent)), 11) + " " + ljust(active, 10) + " "
                    + ljust(inactive, 10) + "\n"
            } else if format.contains(.tunInfo) {
                out += "  -> " + ljust(dname, 28) + " " + ljust(d.forward.listName, 7) + " "
                    + ljust(tunnelInfo(d) ?? "n/a", 13) + " " + ljust(String(d.weight), 6) + " "
                    + ljust(active, 10) + " " + ljust(inactive, 10) + "\n"
            } else {
                out += "  -> " + ljust(dname, 28) + " " + ljust(d.forward.listName, 7) + " "
                    + ljust(String(d.weight), 6) + " " + ljust(active, 10) + " " + ljust(inactive, 10) + "\n"
            }
        }
        return out
    }

    /// `-L -c`: `IPVS connection entries`, the title, one row per entry
    /// (`%-3s %-6s %-11s %-18s %-18s %s`, expire as mm:ss). With
    /// `--persistent-conn` the title and rows with a pe name add the
    /// pe name and data columns.
    public static func connections(_ rows: [ConnectionRow], format: ListFormat,
                                   names: NameResolver = .system) -> String {
        var out = "IPVS connection entries\n"
        let pc = format.contains(.persistentConn)
        if pc {
            out += "pro expire " + ljust("state", 11) + " " + ljust("source", 18) + " " + ljust("virtual", 18)
                + " " + ljust("destination", 18) + " " + ljust("pe name", 16) + " pe_data\n"
        } else {
            out += "pro expire " + ljust("state", 11) + " " + ljust("source", 18) + " " + ljust("virtual", 18)
                + " destination\n"
        }
        let numeric = format.contains(.numeric)
        for r in rows {
            let c = addrPortText(r.clientAddr, r.clientPort, proto: r.proto, numeric: numeric, names: names)
            let v = addrPortText(r.virtualAddr, r.virtualPort, proto: r.proto, numeric: numeric, names: names)
            let d = addrPortText(r.destAddr, r.destPort, proto: r.proto, numeric: numeric, names: names)
            let mm = r.expiresSeconds / 60, ss = r.expiresSeconds % 60
            let expire = (mm < 10 ? "0" : "") + String(mm) + ":" + (ss < 10 ? "0" : "") + String(ss)
            let proto = r.proto.listName
            var line = ljust(proto, 3) + " " + ljust(expire, 6) + " " + ljust(r.stateName, 11) + " "
                + ljust(c, 18) + " " + ljust(v, 18) + " "
            if pc, let pn = r.peName {
                line += ljust(d, 16) + " " + ljust(pn, 18) + " " + (r.peData ?? "")
            } else {
                line += d
            }
            out += line + "\n"
        }
        return out
    }

    /// `--timeout`.
    public static func timeouts(_ t: TimeoutSettings) -> String {
        "Timeout (tcp tcpfin udp): \(Int32(bitPattern: t.tcp)) \(Int32(bitPattern: t.tcpFin)) \(Int32(bitPattern: t.udp))\n"
    }

    /// `--daemon`: one line per running daemon, master first.
    public static func daemons(_ list: [SyncDaemonStatus]) -> String {
        var out = ""
        for d in list {
            out += "\(d.state.rawValue) sync daemon (mcast=\(d.mcastInterface), syncid=\(d.syncID)"
            if d.syncMaxlen != 0 { out += ", maxlen=\(d.syncMaxlen)" }
            if let g = d.mcastGroup { out += ", group=\(inetNtop(g))" }
            if d.mcastPort != 0 { out += ", port=\(d.mcastPort)" }
            if d.mcastTTL != 0 { out += ", ttl=\(d.mcastTTL)" }
            out += ")\n"
        }
        return out
    }
}
