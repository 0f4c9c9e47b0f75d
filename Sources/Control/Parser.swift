// ipvsadm 1.31's parse_options / process_options validation, rewritten:
// the same option semantics (including their order dependence), the same
// command/option compatibility table, the same messages and exit codes.
//
// Deliberate differences from ipvsadm 1.31, all documented:
// - A second command word (`-A ... -E`) gives "multiple commands specified"
//   (ipvsadm 1.31 reports it as "invalid option `-E'"); `-h`/`-v` after the
//   command still give "invalid option `%s'".
// - A host part made only of digits (`1234:80`) is refused, as the spec says
//   (ipvsadm refuses only an argument that is digits as a whole).
// - Host names are looked up only in the hosts file (no DNS).
// - `--json` is a Switchyard extension allowed with the list command only.

import IPVS

let maxPersistentTimeout: Int64 = 86400 * 31

/// ipvsadm's commands_v_options table: '+' compulsory, 'x' illegal,
/// '1' exclusive, ' ' optional. Rows in IpvsadmCommandKind.tableRow order,
/// columns in IpvsadmOptions bit order.
let optionTable: [[Character]] = {
    // Each row lists the 34 columns in order:
    // -n -c svc -s -p -M -r fwd -w -x -y -mc tot dmn -st -rt thr -pc srt sid -ex ops -pe -b grp port ttl size tinf type tprt nocs csum remc
    let rows: [[Character]] = [
        /* add-service */    ["x","x","+"," "," "," ","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"," "," "," ","x","x","x","x","x","x","x","x","x","x"],
        /* edit-service */   ["x","x","+"," "," "," ","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"," "," "," ","x","x","x","x","x","x","x","x","x","x"],
        /* delete-service */ ["x","x","+","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"],
        /* flush */          ["x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"],
        /* list */           [" ","1","1","x","x","x","x","x","x","x","x","x","1","1"," "," "," "," "," "," "," ","x","x","x","x","x","x","x"," ","x","x","x","x","x"],
        /* add-server */     ["x","x","+","x","x","x","+"," "," "," "," ","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"," "," "," "," "," "],
        /* delete-server */  ["x","x","+","x","x","x","+","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"],
        /* edit-server */    ["x","x","+","x","x","x","+"," "," "," "," ","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"," "," "," "," "," "],
        /* set */            ["x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"],
        /* start-daemon */   ["x","x","x","x","x","x","x","x","x","x","x"," ","x","x","x","x","x","x","x"," ","x","x","x","x"," "," "," "," ","x","x","x","x","x","x"],
        /* stop-daemon */    ["x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"," ","x","x","x","x","x","x","x","x","x","x","x","x","x","x"],
        /* restore */        ["x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"],
        /* save */           [" ","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"],
        /* zero */           ["x","x"," ","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"],
    ]
    return rows
}()

/// tunnel_types_v_options: rows ipip, gue, gre; columns tun-port, tun-nocsum,
/// tun-csum, tun-remcsum.
private let tunnelTable: [[Character]] = [
    ["x", "x", "x", "x"],
    ["+", "1", "1", "1"],
    ["x", "1", "1", "x"],
]
private let tunnelOptionIndex = [30, 31, 32, 33]
private let tunnelNames = ["ipip", "gue", "gre"]

extension IpvsadmCommand {
    /// Parse an ipvsadm argument list (without the program name).
    /// - Parameters:
    ///   - args: the arguments; an empty list means "list the table".
    ///   - program: the name used in "Try `%s -h' ..." and in the usage text.
    ///   - names: port and host name tables.
    public static func parse(_ args: [String], program: String = "ipvsadm",
                             names: NameResolver = .system) -> Result<IpvsadmCommand, IpvsadmError> {
        if args.isEmpty { return .success(IpvsadmCommand(kind: .list)) }
        var p = ParseState(names: names)
        do throws(IpvsadmError) {
            return .success(try p.run(args, program: program))
        } catch {
            return .failure(error)
        }
    }
}

/// The mutable `struct ipvs_command_entry` plus option bits while parsing.
private struct ParseState {
    let names: NameResolver
    var kind: IpvsadmCommandKind? = nil
    var options: IpvsadmOptions = []

    // ce.svc
    var svcFamily: AddressFamily? = nil
    var svcProto: IPProtocol = .ip
    var svcAddr = IPAddress(v4: 0)
    var svcPort: UInt16 = 0
    var fwmark: UInt32 = 0
    var sched = ""
    var svcFlags: ServiceFlags = []
    var timeout: UInt32 = 0
    var netmask: UInt32 = 0xFFFF_FFFF
    var pe = ""
    var schedFlagsArg = ""

    // ce.dest (defaults from process_options)
    var destFamily: AddressFamily? = nil
    var destAddr = IPAddress(v4: 0)
    var destPort: UInt16 = 0
    var forward: ForwardMethod = .droute
    var weight: Int32 = 1
    var uThreshold: UInt32 = 0
    var lThreshold: UInt32 = 0
    var tunType: TunnelType = .ipip
    var tunPort: UInt16 = 0
    var tunFlags: TunnelFlags = []

    var timeouts: TimeoutSettings? = nil
    var daemon: SyncDaemonConfig? = nil
    var daemonState: SyncDaemonState = .master
    var mcastIfn = ""
    var syncID: UInt8 = 0
    var syncMaxlen: UInt16? = nil
    var mcastGroup: IPAddress? = nil
    var mcastPort: UInt16? = nil
    var mcastTTL: UInt8? = nil

    init(names: NameResolver) { self.names = names }

    mutating func setOption(_ o: IpvsadmOptions) throws(IpvsadmError) {
        if options.contains(o) {
            throw .fail("multiple '\(IpvsadmOptions.name(ofIndex: o.rawValue.trailingZeroBitCount))' options specified")
        }
        options.insert(o)
    }

    mutating func run(_ args: [String], program: String) throws(IpvsadmError) -> IpvsadmCommand {
        var scanner = OptionScanner(args)

        // The first option must be a command.
        guard case .option(let tag, let arg, _)? = scanner.nextOption() else {
            throw .tryHelp(program)
        }
        switch tag {
        case .help: return IpvsadmCommand(kind: .help)
        case .version: return IpvsadmCommand(kind: .version)
        default: break
        }
        guard let k = commandKind(tag) else { throw .tryHelp(program) }
        kind = k
        if k == .startDaemon || k == .stopDaemon {
            switch arg {
            case "master": daemonState = .master
            case "backup": daemonState = .backup
            default:
                throw .fail(k == .startDaemon ? "illegal start-daemon parameter specified"
                                              : "illegal start_daemon specified")
            }
        }

        while let ev = scanner.nextOption() {
            switch ev {
            case .error(let e, let word):
                throw IpvsadmError(stderr: "\(word): \(e.text)\n", exitCode: 255)
            case .option(let tag, let arg, let word):
                try handle(tag, arg, word: word)
            }
        }

        var leftovers = scanner.leftovers[...]
        if kind == .setTimeout {
            guard leftovers.count >= 3 else { throw .fail("--set option requires 3 timeout values") }
            let t = try parseTimeout(leftovers.removeFirst(), 0)
            let f = try parseTimeout(leftovers.removeFirst(), 0)
            let u = try parseTimeout(leftovers.removeFirst(), 0)
            timeouts = TimeoutSettings(tcp: t, tcpFin: f, udp: u)
        }
        if let extra = leftovers.first { throw .fail("unexpected argument \(extra)") }

        if !schedFlagsArg.isEmpty {
            svcFlags.subtract([.sched1, .sched2, .sched3])
            svcFlags.formUnion(try parseSchedFlags(sched, schedFlagsArg))
        }

        try genericOptionCheck(k)

        if k == .addService || k == .editService {
            if fwmark == 0 && svcPort == 0 && !svcFlags.contains(.persistent) {
                throw .fail("Zero port specified for non-persistent service")
            }
            if svcFlags.contains(.onePacket) && fwmark == 0 && svcProto != .udp {
                throw .fail("One-Packet Scheduling is only for UDP virtual services")
            }
            if sched.isEmpty { sched = "wlc" }
        }
        if k == .startDaemon && mcastIfn.isEmpty { mcastIfn = "eth0" }

        if k == .addServer || k == .editServer {
            if fwmark == 0 && (forward == .tunnel || forward == .droute) { destPort = svcPort }
            if destFamily != svcFamily && forward != .tunnel {
                throw .fail("Different address family is allowed only for tunneling servers")
            }
            if !options.isDisjoint(with: [.tunType, .tunPort, .tunNocsum, .tunCsum, .tunRemcsum])
                && forward != .tunnel {
                throw .fail("Tunnel options conflict with forward method")
            }
            try tunnelOptionCheck()
        }

        if k == .list {
            if (!options.isDisjoint(with: [.connection, .timeout, .daemon])
                && !options.isDisjoint(with: [.stats, .rate, .thresholds]))
                || (!options.isDisjoint(with: [.timeout, .daemon]) && options.contains(.persistentConn)) {
                throw .fail("options conflicts in the list command")
            }
        }

        return build(k)
    }

    func commandKind(_ tag: OptionTag) -> IpvsadmCommandKind? {
        switch tag {
        case .addService: return .addService
        case .editService: return .editService
        case .deleteService: return .deleteService
        case .addServer: return .addServer
        case .editServer: return .editServer
        case .deleteServer: return .deleteServer
        case .clear: return .flush
        case .list: return .list
        case .zero: return .zero
        case .set: return .setTimeout
        case .restore: return .restore
        case .save: return .save
        case .startDaemon: return .startDaemon
        case .stopDaemon: return .stopDaemon
        default: return nil
        }
    }

    mutating func handle(_ tag: OptionTag, _ arg: String?, word: String) throws(IpvsadmError) {
        let a = arg ?? ""
        if commandKind(tag) != nil { throw .fail("multiple commands specified") }
        switch tag {
        case .tcpService, .udpService, .sctpService:
            try setOption(.service)
            svcProto = tag == .tcpService ? .tcp : (tag == .udpService ? .udp : .sctp)
            guard let r = parseServiceArg(a, proto: svcProto) else {
                throw .fail("illegal virtual server address[:port] specified")
            }
            svcAddr = r.addr
            svcFamily = r.addr.family
            if r.addr.family == .inet6 { netmask = 128 }
            if let port = r.port { svcPort = port }
        case .fwmarkService:
            try setOption(.service)
            svcFamily = .inet
            svcProto = .tcp
            guard let v = cStrtolUnsignedFwmark(a) else {
                throw .fail("invalid fwmark value `\(a)' specified")
            }
            fwmark = v
        case .scheduler:
            try setOption(.scheduler)
            sched = String(a.prefix(15))
        case .persistent:
            try setOption(.persistent)
            svcFlags.insert(.persistent)
            timeout = arg == nil ? 360 : try parseTimeout(a, 1)
        case .netmask:
            try setOption(.netmask)
            if svcFamily != .inet6 {
                if let m = inetAton(Substring(a)) ?? names.hostAddress(a).map({ $0.v4 }) {
                    netmask = m
                } else {
                    throw .fail("illegal virtual server persistent mask specified")
                }
            } else {
                let v = cAtoi(a)
                guard v >= 1 && v <= 128 else { throw .fail("illegal ipv6 netmask specified") }
                netmask = UInt32(v)
            }
        case .realServer:
            try setOption(.server)
            guard let r = parseServiceArg(a, proto: svcProto) else {
                throw .fail("illegal real server address[:port] specified")
            }
            destFamily = r.addr.family
            destAddr = r.addr
            destPort = r.port ?? svcPort
        case .ipip:
            try setOption(.forward); forward = .tunnel
        case .gatewaying:
            try setOption(.forward); forward = .droute
        case .masquerading:
            try setOption(.forward); forward = .masq
        case .weight:
            try setOption(.weight)
            guard let w = stringToNumber(a, 0, 65535) else { throw .fail("illegal weight specified") }
            weight = Int32(w)
        case .uThreshold:
            try setOption(.uThreshold)
            guard let v = stringToNumber(a, 0, Int64(Int32.max)) else { throw .fail("illegal u_threshold specified") }
            uThreshold = UInt32(v)
        case .lThreshold:
            try setOption(.lThreshold)
            guard let v = stringToNumber(a, 0, Int64(Int32.max)) else { throw .fail("illegal l_threshold specified") }
            lThreshold = UInt32(v)
        case .connection: try setOption(.connection)
        case .numeric: try setOption(.numeric)
        case .mcastInterface:
            try setOption(.mcastInterface)
            mcastIfn = String(a.prefix(15))
        case .syncid:
            try setOption(.syncid)
            guard let v = stringToNumber(a, 0, 255) else { throw .fail("illegal syncid specified") }
            syncID = UInt8(v)
        case .timeout: try setOption(.timeout)
        case .daemon: try setOption(.daemon)
        case .stats: try setOption(.stats)
        case .rate: try setOption(.rate)
        case .thresholds: try setOption(.thresholds)
        case .persistentConn: try setOption(.persistentConn)
        case .nosort: try setOption(.nosort)
        case .sort: break
        case .exact: try setOption(.exact)
        case .ipv6:
            guard fwmark != 0 else { throw .fail("-6 used before -f\n") }
            svcFamily = .inet6
            netmask = 128
        case .ops:
            try setOption(.onePacket)
            svcFlags.insert(.onePacket)
        case .pe:
            try setOption(.persistenceEngine)
            pe = String(a.prefix(16))
        case .schedFlags:
            try setOption(.schedFlags)
            schedFlagsArg = String(a.prefix(127))
        case .mcastGroup:
            try setOption(.mcastGroup)
            if a.contains(":") {
                guard let g = inetPton6(Substring(a)), g.hi >> 56 == 0xFF else {
                    throw .fail("invalid IPv6 mcast-group `\(a)'")
                }
                mcastGroup = g
            } else {
                guard let g = parseDottedQuad(Substring(a)), g >> 28 == 0xE else {
                    throw .fail("invalid IPv4 mcast-group `\(a)'")
                }
                mcastGroup = IPAddress(v4: g)
            }
        case .mcastPort:
            try setOption(.mcastPort)
            guard let v = stringToNumber(a, 1, 65535) else { throw .fail("illegal mcast-port specified") }
            mcastPort = UInt16(v)
        case .mcastTTL:
            try setOption(.mcastTTL)
            guard let v = stringToNumber(a, 1, 255) else { throw .fail("illegal mcast-ttl specified") }
            mcastTTL = UInt8(v)
        case .syncMaxlen:
            try setOption(.syncMaxlen)
            guard let v = stringToNumber(a, 1, 65535 - 20 - 8) else { throw .fail("illegal sync-maxlen specified") }
            syncMaxlen = UInt16(v)
        case .tunInfo: try setOption(.tunInfo)
        case .tunType:
            try setOption(.tunType)
            switch a {
            case "ipip": tunType = .ipip
            case "gue": tunType = .gue
            case "gre": tunType = .gre
            default: throw .fail("illegal tunnel type specified")
            }
        case .tunPort:
            try setOption(.tunPort)
            guard let v = stringToNumber(a, 1, 65535) else { throw .fail("illegal tunnel port specified") }
            tunPort = UInt16(v)
        case .tunNocsum:
            try setOption(.tunNocsum)
        case .tunCsum:
            try setOption(.tunCsum); tunFlags.insert(.csum)
        case .tunRemcsum:
            try setOption(.tunRemcsum); tunFlags.insert(.remcsum)
        case .json:
            try setOption(.json)
        case .help, .version:
            throw .fail("invalid option `\(word)'")
        default:
            throw .fail("invalid option `\(word)'")
        }
    }

    func parseTimeout(_ s: String, _ min: Int64) throws(IpvsadmError) -> UInt32 {
        guard let v = stringToNumber(s, min, maxPersistentTimeout) else {
            throw .fail("invalid timeout value `\(s)' specified")
        }
        return UInt32(v)
    }

    /// parse_fwmark: strtol, then 1...UINT_MAX.
    func cStrtolUnsignedFwmark(_ s: String) -> UInt32? {
        guard let v = cStrtol(s), v > 0, v <= Int64(UInt32.max) else { return nil }
        return UInt32(v)
    }

    /// atoi: leading digits after white space and a sign, 0 otherwise.
    func cAtoi(_ s: String) -> Int64 {
        var u = Substring(s).utf8[...]
        while let c = u.first, c == 0x20 || (c >= 0x09 && c <= 0x0D) { u = u.dropFirst() }
        var neg = false
        if let c = u.first, c == UInt8(ascii: "+") || c == UInt8(ascii: "-") { neg = c == UInt8(ascii: "-"); u = u.dropFirst() }
        var v: Int64 = 0
        for c in u {
            guard c >= 0x30 && c <= 0x39 else { break }
            v = v &* 10 &+ Int64(c - 0x30)
            if v > Int64(Int32.max) { break }
        }
        return neg ? -v : v
    }

    /// parse_service: the address and, when given, the port (nil port means
    /// SERVICE_ADDR only). nil when the text is not a valid host[:port].
    func parseServiceArg(_ text: String, proto: IPProtocol) -> (addr: IPAddress, port: UInt16?)? {
        var buf = Substring(text)
        if strIsDigit(buf) { return nil }
        var bracketPort: Substring? = nil
        if buf.first == "[" {
            buf = buf.dropFirst()
            guard let close = buf.firstIndex(of: "]") else { return nil }
            let after = buf[buf.index(after: close)...]
            guard after.first == ":" else { return nil }
            bracketPort = after.dropFirst()
            buf = buf[..<close]
        }
        var addr: IPAddress
        var portText: Substring? = nil
        if let a6 = inetPton6(buf) {
            addr = a6
            portText = bracketPort
        } else {
            var host = buf
            if let colon = buf.lastIndex(of: ":") {
                host = buf[..<colon]
                portText = buf[buf.index(after: colon)...]
            }
            if !host.isEmpty && strIsDigit(host) { return nil }  // digits-only host
            if let v = inetAton(host) {
                addr = IPAddress(v4: v)
            } else if let h = names.hostAddress(String(host)) {
                addr = h
            } else {
                return nil
            }
        }
        guard let pt = portText else { return (addr, nil) }
        if let n = stringToNumber(String(pt), 0, 65535) { return (addr, UInt16(n)) }
        if let n = names.port(forService: String(pt), proto: proto) { return (addr, n) }
        return nil
    }

    func parseSchedFlags(_ schedName: String, _ arg: String) throws(IpvsadmError) -> ServiceFlags {
        let sched = schedName.isEmpty ? "wlc" : schedName
        var flags: ServiceFlags = []
        let tokens = arg.split(separator: ",")
        if tokens.isEmpty { throw .fail("invalid scheduler flag `\(arg)'") }
        for t in tokens {
            switch t {
            case "flag-1": flags.insert(.sched1)
            case "flag-2": flags.insert(.sched2)
            case "flag-3": flags.insert(.sched3)
            case "sh-fallback", "sh-port":
                flags.insert(t == "sh-fallback" ? .sched1 : .sched2)
                if sched != "sh" { throw .fail("incompatible scheduler flag `\(t)'") }
            case "mh-fallback", "mh-port":
                flags.insert(t == "mh-fallback" ? .sched1 : .sched2)
                if sched != "mh" { throw .fail("incompatible scheduler flag `\(t)'") }
            default:
                throw .fail("invalid scheduler flag `\(t)'")
            }
        }
        return flags
    }

    func genericOptionCheck(_ k: IpvsadmCommandKind) throws(IpvsadmError) {
        guard let row = k.tableRow else { return }
        let cells = optionTable[row]
        var last = 0, count = 0
        for j in 0..<cells.count {
            let present = options.contains(IpvsadmOptions(index: j))
            if !present {
                if cells[j] == "+" {
                    throw .fail("You need to supply the '\(IpvsadmOptions.names[j])' option for the '\(k.rawValue)' command")
                }
            } else {
                if cells[j] == "x" {
                    throw .fail("Illegal '\(IpvsadmOptions.names[j])' option with the '\(k.rawValue)' command")
                }
                if cells[j] == "1" {
                    count += 1
                    if count == 1 { last = j; continue }
                    throw .fail("The option '\(IpvsadmOptions.names[j])' conflicts with the '\(IpvsadmOptions.names[last])' option in the '\(k.rawValue)' command")
                }
            }
        }
        if options.contains(.json) && k != .list {
            throw .fail("Illegal 'json' option with the '\(k.rawValue)' command")
        }
    }

    func tunnelOptionCheck() throws(IpvsadmError) {
        let i = Int(tunType.rawValue)
        var last = 0, count = 0
        for j in 0..<4 {
            let k = tunnelOptionIndex[j]
            let cell = tunnelTable[i][j]
            if !options.contains(IpvsadmOptions(index: k)) {
                if cell == "+" {
                    throw .fail("You need to supply the '\(IpvsadmOptions.names[k])' option for the '\(tunnelNames[i])' tunnel type")
                }
            } else {
                if cell == "x" {
                    throw .fail("Illegal '\(IpvsadmOptions.names[k])' option with the '\(tunnelNames[i])' tunnel type")
                }
                if cell == "1" {
                    count += 1
                    if count == 1 { last = k; continue }
                    throw .fail("The option '\(IpvsadmOptions.names[k])' conflicts with the '\(IpvsadmOptions.names[last])' option in the '\(tunnelNames[i])' tunnel type")
                }
            }
        }
    }

    func build(_ k: IpvsadmCommandKind) -> IpvsadmCommand {
        var cmd = IpvsadmCommand(kind: k)
        cmd.options = options
        if options.contains(.service) {
            let family = svcFamily ?? .inet
            let key: ServiceKey = fwmark != 0
                ? .fwmark(mark: fwmark, family: family)
                : .address(proto: svcProto, addr: svcAddr, port: svcPort)
            var spec = ServiceSpec(key: key)
            spec.scheduler = sched.isEmpty ? "wlc" : sched
            spec.flags = svcFlags
            spec.timeout = timeout
            spec.netmask = netmask
            spec.persistenceEngine = pe.isEmpty ? nil : pe
            cmd.service = spec
        }
        if options.contains(.server) {
            var d = DestSpec(addr: destAddr, port: destPort)
            d.forward = forward
            d.weight = weight
            d.upperThreshold = uThreshold
            d.lowerThreshold = lThreshold
            d.tunnelType = tunType
            d.tunnelPort = tunPort
            d.tunnelFlags = tunFlags
            cmd.dest = d
        }
        cmd.timeouts = timeouts
        if k == .startDaemon || k == .stopDaemon {
            var d = SyncDaemonConfig(state: daemonState)
            d.mcastInterface = mcastIfn.isEmpty ? "eth0" : mcastIfn
            d.syncID = syncID
            d.syncMaxlen = syncMaxlen
            d.mcastGroup = mcastGroup
            d.mcastPort = mcastPort
            d.mcastTTL = mcastTTL
            cmd.daemon = d
        }
        return cmd
    }
}
