// From a parsed keepalived configuration to ipvsadm commands. Every command
// is built as an ipvsadm argument list and parsed by IpvsadmCommand.parse,
// so an import means exactly what the same `ipvsadm` lines would mean
// (DR/TUN port forcing, defaults, validation and its messages).

import IPVS

/// ipvsadm argument words for services and dests (the `-S -n` spelling).
public enum IpvsadmWords {
    public static func hostPort(_ a: IPAddress, _ port: UInt16) -> String {
        a.isV4 ? "\(inetNtop(a)):\(port)" : "[\(inetNtop(a))]:\(port)"
    }

    public static func service(_ key: ServiceKey) -> [String] {
        switch key {
        case .address(let proto, let addr, let port):
            let flag: String
            switch proto {
            case .udp: flag = "-u"
            case .sctp: flag = "--sctp-service"
            default: flag = "-t"
            }
            return [flag, hostPort(addr, port)]
        case .fwmark(let mark, let family):
            return family == .inet6 ? ["-f", "\(mark)", "-6"] : ["-f", "\(mark)"]
        }
    }

    static func forwardFlag(_ f: ForwardMethod) -> String {
        switch f {
        case .masq: return "-m"
        case .tunnel: return "-i"
        default: return "-g"
        }
    }

    /// `-r addr:port -m|-g|-i -w W [-x U] [-y L] [--tun-type ...]` for a spec.
    public static func dest(_ d: DestSpec) -> [String] {
        var w = ["-r", hostPort(d.addr, d.port), forwardFlag(d.forward), "-w", "\(d.weight)"]
        if d.upperThreshold != 0 { w += ["-x", "\(d.upperThreshold)"] }
        if d.lowerThreshold != 0 { w += ["-y", "\(d.lowerThreshold)"] }
        if d.forward == .tunnel {
            switch d.tunnelType {
            case .ipip: w += ["--tun-type", "ipip"]
            case .gue:
                w += ["--tun-type", "gue", "--tun-port", "\(d.tunnelPort)"]
                w.append(d.tunnelFlags.contains(.remcsum) ? "--tun-remcsum" : d.tunnelFlags.contains(.csum) ? "--tun-csum" : "--tun-nocsum")
            case .gre:
                w += ["--tun-type", "gre"]
                w.append(d.tunnelFlags.contains(.csum) ? "--tun-csum" : "--tun-nocsum")
            }
        }
        return w
    }

    public static func dest(_ d: Dest) -> DestSpec {
        var s = DestSpec(addr: d.addr, port: d.port)
        s.forward = d.forward
        s.weight = d.weight
        s.upperThreshold = d.upperThreshold
        s.lowerThreshold = d.lowerThreshold
        s.tunnelType = d.tunnelType
        s.tunnelPort = d.tunnelPort
        s.tunnelFlags = d.tunnelFlags
        return s
    }

    /// The text of a command as an ipvsadm line (for logs and `-R` input).
    public static func line(_ c: IpvsadmCommand) -> String {
        var w: [String] = []
        switch c.kind {
        case .addService, .editService:
            guard let s = c.service else { return "" }
            w = [c.kind == .addService ? "-A" : "-E"] + service(s.key) + ["-s", s.scheduler]
            if s.flags.contains(.persistent) {
                w += ["-p", "\(s.timeout)"]
                if let m = s.netmask {
                    if s.key.family == .inet {
                        if m != 0xFFFF_FFFF { w += ["-M", inetNtop(IPAddress(v4: m))] }
                    } else if m != 128 { w += ["-M", "\(m)"] }
                }
            }
            if let pe = s.persistenceEngine, !pe.isEmpty { w += ["--pe", pe] }
            if s.flags.contains(.onePacket) { w.append("-o") }
            var flags: [String] = []
            let sh = s.scheduler == "mh" ? "mh" : "sh"
            if s.flags.contains(.sched1) { flags.append("\(sh)-fallback") }
            if s.flags.contains(.sched2) { flags.append("\(sh)-port") }
            if s.flags.contains(.sched3) { flags.append("flag-3") }
            if !flags.isEmpty { w += ["-b", flags.joined(separator: ",")] }
        case .deleteService:
            guard let s = c.service else { return "" }
            w = ["-D"] + service(s.key)
        case .addServer, .editServer:
            guard let s = c.service, let d = c.dest else { return "" }
            w = [c.kind == .addServer ? "-a" : "-e"] + service(s.key) + dest(d)
        case .deleteServer:
            guard let s = c.service, let d = c.dest else { return "" }
            w = ["-d"] + service(s.key) + ["-r", hostPort(d.addr, d.port)]
        default:
            return ""
        }
        return w.joined(separator: " ")
    }

    /// Parse words as ipvsadm would (numeric only: no name lookups).
    public static func command(_ words: [String]) -> Result<IpvsadmCommand, IpvsadmError> {
        IpvsadmCommand.parse(words, program: "ipvsadm", names: .numericOnly)
    }
}

/// One real server as the monitor manages it.
public struct PlannedServer: Sendable, Equatable {
    public var config: RealServerConfig
    /// The dest exactly as `-a` adds it (configured weight, DR port forced...).
    public var dest: DestSpec
}

public struct PlannedService: Sendable, Equatable {
    public var config: VirtualServerConfig
    public var add: IpvsadmCommand
    public var servers: [PlannedServer]
    public var sorry: DestSpec?
    public var sorryInhibit: Bool
    /// "TCP 10.0.0.1:80" / "FWM 5", as -L names services.
    public var name: String
}

/// The whole import: services to add and the monitor's servers.
public struct KeepalivedPlan: Sendable, Equatable {
    public var services: [PlannedService] = []
    public var notices: [String] = []

    /// The commands an import applies, in order: each service, then its real
    /// servers in configuration order (alpha servers start down: added with
    /// weight 0 if inhibit_on_failure, else not at all), then the sorry
    /// server when no real server starts up.
    public var initialCommands: [IpvsadmCommand] {
        var out: [IpvsadmCommand] = []
        for s in services {
            out.append(s.add)
            var anyUp = false
            for r in s.servers {
                let startsUp = !s.config.alpha || r.config.checkers.isEmpty
                if startsUp { anyUp = true }
                if startsUp || r.config.inhibitOnFailure {
                    var d = r.dest
                    if !startsUp { d.weight = 0 }
                    out.append(KeepalivedPlan.destCommand(.addServer, s.add.service!.key, d))
                }
            }
            if let sorry = s.sorry {
                if !anyUp {
                    out.append(KeepalivedPlan.destCommand(.addServer, s.add.service!.key, sorry))
                } else if s.sorryInhibit {
                    var d = sorry
                    d.weight = 0
                    out.append(KeepalivedPlan.destCommand(.addServer, s.add.service!.key, d))
                }
            }
        }
        return out
    }

    /// A dest command built through the ipvsadm grammar.
    static func destCommand(_ kind: IpvsadmCommandKind, _ key: ServiceKey, _ d: DestSpec) -> IpvsadmCommand {
        let flag: String
        switch kind {
        case .addServer: flag = "-a"
        case .editServer: flag = "-e"
        default: flag = "-d"
        }
        let words = kind == .deleteServer
            ? [flag] + IpvsadmWords.service(key) + ["-r", IpvsadmWords.hostPort(d.addr, d.port)]
            : [flag] + IpvsadmWords.service(key) + IpvsadmWords.dest(d)
        switch IpvsadmWords.command(words) {
        case .success(let c): return c
        case .failure:
            // Only reachable for a spec the grammar would refuse; build it directly.
            var c = IpvsadmCommand(kind: kind)
            c.service = ServiceSpec(key: key)
            c.dest = d
            return c
        }
    }
}

extension KeepalivedConfig {
    /// Build the ipvsadm commands; an error names the statement whose
    /// translation ipvsadm would refuse, with ipvsadm's message.
    public func plan() throws(KeepalivedError) -> KeepalivedPlan {
        var plan = KeepalivedPlan()
        plan.notices = notices
        for vs in virtualServers {
            var words = ["-A"] + IpvsadmWords.service(vs.key) + ["-s", vs.scheduler]
            if let p = vs.persistenceTimeout {
                words += ["-p", "\(p)"]
                if let g = vs.persistenceGranularity { words += ["-M", g] }
            }
            if let pe = vs.persistenceEngine { words += ["--pe", pe] }
            if vs.ops { words.append("-o") }
            if !vs.schedFlags.isEmpty { words += ["-b", vs.schedFlags.joined(separator: ",")] }
            let add: IpvsadmCommand
            switch IpvsadmWords.command(words) {
            case .success(let c): add = c
            case .failure(let e): throw KeepalivedError(vs.location, e.message)
            }
            var ps = PlannedService(config: vs, add: add, servers: [], sorry: nil, sorryInhibit: false,
                                    name: KeepalivedPlan.serviceName(vs.key))
            var seen: [String: ConfigLocation] = [:]
            for rs in vs.realServers {
                let d = try destSpec(vs, address: rs.address, port: rs.port, forward: rs.forward ?? vs.forward,
                                     weight: rs.weight, upper: rs.upperThreshold, lower: rs.lowerThreshold,
                                     location: rs.location)
                let k = IpvsadmWords.hostPort(d.addr, d.port)
                if let f = seen[k] { throw KeepalivedError(rs.location, "real_server \(k) already defined at \(f)") }
                seen[k] = rs.location
                ps.servers.append(PlannedServer(config: rs, dest: d))
            }
            if let s = vs.sorryServer {
                ps.sorry = try destSpec(vs, address: s.address, port: s.port, forward: s.forward ?? vs.forward,
                                        weight: 1, upper: nil, lower: nil, location: s.location)
                ps.sorryInhibit = s.inhibit
                if seen[IpvsadmWords.hostPort(ps.sorry!.addr, ps.sorry!.port)] != nil {
                    throw KeepalivedError(s.location, "sorry_server is also a real_server of this virtual_server")
                }
            }
            plan.services.append(ps)
        }
        return plan
    }

    func destSpec(_ vs: VirtualServerConfig, address: IPAddress, port: UInt16?, forward: ForwardMethod, weight: Int32,
                  upper: UInt32?, lower: UInt32?, location: ConfigLocation) throws(KeepalivedError) -> DestSpec {
        let host = address.isV4 ? inetNtop(address) : "[\(inetNtop(address))]"
        let r = port.map { "\(host):\($0)" } ?? host
        var words = ["-a"] + IpvsadmWords.service(vs.key) + ["-r", r, IpvsadmWords.forwardFlag(forward), "-w", "\(weight)"]
        if let u = upper { words += ["-x", "\(u)"] }
        if let l = lower { words += ["-y", "\(l)"] }
        if forward == .tunnel, let t = vs.tunnel {
            words += ["--tun-type", t.type]
            if let p = t.port { words += ["--tun-port", "\(p)"] }
            if let c = t.csum { words.append("--tun-\(c)") }
        }
        switch IpvsadmWords.command(words) {
        case .success(let c): return c.dest!
        case .failure(let e): throw KeepalivedError(location, e.message)
        }
    }
}

extension KeepalivedPlan {
    static func serviceName(_ key: ServiceKey) -> String {
        switch key {
        case .address(let proto, let addr, let port):
            return "\(proto.listName) \(IpvsadmWords.hostPort(addr, port))"
        case .fwmark(let mark, let family):
            return family == .inet6 ? "FWM \(mark) IPv6" : "FWM \(mark)"
        }
    }

    /// The `-S -n` rules of what an import into an empty table gives.
    public func saveText() -> String {
        let t = IPVSTable()
        for c in initialCommands {
            var o = "", e = ""
            execute(c, on: t, environment: AdmEnvironment(names: .numericOnly), output: &o, errors: &e)
        }
        return IpvsadmFormat.save(t.services, numeric: true, names: .numericOnly)
    }
}

/// What to send to a running daemon so that its table gains what `desired`
/// describes: services it lacks are added (-A), services whose settings
/// differ are edited (-E); dests it lacks are added (-a), dests whose
/// settings differ are edited (-e). Nothing is deleted. Both arguments are
/// `-S -n` rules texts; the result is rules text for `-R`.
public func reconcileRules(current: String, desired: String) -> Result<String, RuleError> {
    let cur = IPVSTable(), want = IPVSTable()
    for (text, table) in [(current, cur), (desired, want)] {
        if case .failure(let e) = applyRules(text, to: table, environment: AdmEnvironment(names: .numericOnly)) {
            return .failure(e)
        }
    }
    var out: [String] = []
    let wanted = IpvsadmFormat.save(want.services, numeric: true, names: .numericOnly)
    var lastServiceLine = ""
    for line in wanted.split(separator: "\n") {
        let words = line.split(separator: " ").map(String.init)
        guard let c = try? IpvsadmWords.command(words).get(), let key = c.service?.key else { continue }
        if c.kind == .addService {
            lastServiceLine = String(line)
            if let have = cur.service(for: key) {
                let haveLine = IpvsadmFormat.save([have], numeric: true, names: .numericOnly)
                    .split(separator: "\n").first.map(String.init) ?? ""
                if haveLine != lastServiceLine { out.append("-E" + line.dropFirst(2)) }
            } else {
                out.append(String(line))
            }
        } else if c.kind == .addServer, let d = c.dest {
            if let have = cur.dest(in: key, addr: d.addr, port: d.port) {
                if IpvsadmWords.dest(have) != d { out.append("-e" + line.dropFirst(2)) }
            } else {
                out.append(String(line))
            }
        }
    }
    return .success(out.map { $0 + "\n" }.joined())
}
