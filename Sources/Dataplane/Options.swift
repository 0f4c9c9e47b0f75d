// Application options: everything after `--` on the command line, parsed in
// dpdk-testpmd's style (`--opt V` and `--opt=V` alike) before EAL starts, so
// a bad flag costs nothing and exits with status 2.
import Wire

public enum ClockSource: String, Sendable {
    case tsc
    case packet
}

public struct NeighbourEntry: Sendable, Equatable {
    public var address: IPAddress
    public var mac: MACAddress
}

public struct PortAddress: Sendable, Equatable {
    public var port: UInt16
    public var address: IPAddress
    public var prefixLength: Int
}

public struct StaticRoute: Sendable, Equatable {
    public var prefix: IPAddress
    public var prefixLength: Int
    public var gateway: IPAddress
    public var port: UInt16?
}

public struct Options: Sendable {
    public var portmask: UInt64? = nil
    public var nbCores: Int? = nil
    public var rxq: Int = 1
    public var txq: Int? = nil
    public var rxd: Int = 1024
    public var txd: Int = 1024
    public var burst: Int = 32
    public var totalNumMbufs: Int? = nil
    public var mbufSize: Int = 2176
    public var maxPktLen: Int = 1518
    public var statsPeriod: Double? = nil
    public var exitOnIdleMs: Int? = nil
    public var clock: ClockSource = .tsc
    public var configFile: String? = nil
    /// keepalived.conf whose virtual_servers are loaded and health-checked.
    public var keepalivedFile: String? = nil
    /// UDP port for dynamic-feedback agent reports, and the rule's settings.
    public var feedbackPort: UInt16? = nil
    public var feedbackOptions: String = ""
    public var neighbours: [NeighbourEntry] = []
    public var portAddresses: [PortAddress] = []
    public var routes: [StaticRoute] = []
    public var socketPath: String? = nil
    public var maxConns: Int = 1 << 20
    public var dumpOnExit: Bool = false
    public var forwardMode: ForwardMode = .lb
    /// nil: on unless every port is a capture/benchmark device (net_pcap, net_null, net_ring).
    public var gratuitousARP: Bool = false
    public var gratuitousARPSetting: Bool? = nil
    public var help: Bool = false
    /// Hand traffic that is not the balancer's to the host kernel through a TAP per port.
    public var exceptionPath: ExceptionPath = .none
    /// 802.1Q tags per port (--vlan P:ID).
    public var vlans: [UInt16: UInt16] = [:]
    /// Explicit (port, queue, lcore) polling assignments, l3fwd-style.
    public var lcoreMap: [(port: UInt16, queue: UInt16, lcore: UInt32)] = []
    /// Back off (pause, then short sleeps) after empty polls; nil: on for virtual devices.
    public var idleBackoff: IdleBackoffSetting? = nil

    public init() {}

    /// The IP MTU the data plane enforces: testpmd's max-pkt-len is a frame
    /// length (Ethernet header and CRC included).
    public var mtu: Int { maxPktLen - 18 }
}

public enum ExceptionPath: String, Sendable {
    case none
    case tap
}

public enum IdleBackoffSetting: Sendable, Equatable {
    case off
    /// Longest sleep in microseconds.
    case on(maxSleepMicros: Int)
}

/// `io` forwards every packet unchanged to the paired port, as testpmd's io
/// mode (the baseline for benchmarks); `lb` is the load balancer.
public enum ForwardMode: String, Sendable {
    case io
    case lb
}

public struct OptionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public enum OptionParser {
    /// Flags taking a value, with a one-line description for `--help`.
    public static let valueFlags: [(String, String, String)] = [
        ("--portmask", "MASK", "hexadecimal bitmask of the ports to use (default: all)"),
        ("--nb-cores", "N", "number of worker lcores (default: every lcore but the main one)"),
        ("--rxq", "N", "rx queues per port (default 1)"),
        ("--txq", "N", "tx queues per port (default: one per worker)"),
        ("--rxd", "N", "rx descriptors per queue (default 1024)"),
        ("--txd", "N", "tx descriptors per queue (default 1024)"),
        ("--burst", "N", "packets per rx/tx burst, 1..512 (default 32)"),
        ("--total-num-mbufs", "N", "mbufs in the packet pool (default: sized from ports and queues)"),
        ("--mbuf-size", "N", "mbuf data room in bytes, headroom included (default 2176)"),
        ("--max-pkt-len", "N", "largest frame in bytes; the IP MTU is N-18 (default 1518)"),
        ("--stats-period", "S", "print counters every S seconds"),
        ("--exit-on-idle", "MS", "stop cleanly after MS milliseconds without received packets"),
        ("--clock", "tsc|packet", "time source: the TSC, or each packet's rx timestamp (pcap replays)"),
        ("--config", "FILE", "ipvsadm rules (the `ipvsadm -S -n` format) loaded at start"),
        ("--keepalived", "FILE", "keepalived.conf: load its virtual_servers and run their health checks"),
        ("--feedback-port", "P", "UDP port for dynamic-feedback agent reports (weights follow server load)"),
        ("--feedback-options", "K=V,...", "feedback rule settings: a, scale, min_weight, threshold, period, cpu, load, mem, conns"),
        ("--neigh", "IP=MAC", "static neighbour entry (repeatable)"),
        ("--port-addr", "P:IP/LEN", "an address of port P (repeatable; IPv4 or IPv6)"),
        ("--route", "PREFIX=GW[@P]", "static route (repeatable)"),
        ("--socket", "PATH", "admin socket (default /run/switchyard/<file-prefix>.sock)"),
        ("--max-conns", "N", "connection table bound per worker (default 1048576)"),
        ("--forward-mode", "io|lb", "lb balances (default); io forwards everything unchanged, as testpmd io"),
        ("--lcore-map", "(P,Q,L)[,...]", "which lcore polls rx queue Q of port P (default: queue q on worker q mod n)"),
        ("--vlan", "P:ID", "port P carries 802.1Q VLAN ID (1..4094) on all its frames (repeatable)"),
        ("--exception-path", "none|tap", "send traffic not for a VIP to the host kernel through a TAP interface per port (syP)"),
        ("--idle-backoff", "on|off|US", "after empty polls pause, then sleep up to US µs (default: on, 500 µs, on virtual devices)"),
        ("--gratuitous-arp", "on|off", "announce VIPs and port addresses at start and on change (default: on, off on pcap/null/ring devices)"),
    ]
    public static let boolFlags: [(String, String)] = [
        ("--dump-on-exit", "print the `ipvsadm -L -n` and `-L -n -c` listings when stopping"),
        ("--help", "show this text"),
    ]

    public static func usage(program: String) -> String {
        var s = """
        Usage: \(program) [EAL options] -- [options]
               \(program) adm <ipvsadm arguments>

        Switchyard balances Layer-4 traffic with Linux IPVS semantics on DPDK ports.
        EAL options come first (e.g. -l 0-1 --no-huge -m 512 --vdev net_pcap0,...).

        Options:

        """
        for (flag, arg, text) in valueFlags {
            let left = "  \(flag) \(arg)"
            s += left.padding(to: 30) + text + "\n"
        }
        for (flag, text) in boolFlags {
            s += "  \(flag)".padding(to: 30) + text + "\n"
        }
        s += """

        Counters (--stats-period and at exit), one line per port and per worker:
          port P: rx=N tx=N drop=N rx-mpps=X tx-mpps=X
          lcore L: rx=N tx=N drop=N malformed=N conns=N ...

        """
        return s
    }

    public static func parse(_ args: [String]) throws -> Options {
        var o = Options()
        var i = 0
        func intValue(_ flag: String, _ v: String, min: Int, max: Int = Int.max) throws -> Int {
            guard let n = Int(v), n >= min, n <= max else {
                throw OptionError("invalid value '\(v)' for \(flag): expected an integer in \(min)..\(max == Int.max ? "" : String(max))")
            }
            return n
        }
        while i < args.count {
            var arg = args[i]
            var inlineValue: String? = nil
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                inlineValue = String(arg[arg.index(after: eq)...])
                arg = String(arg[..<eq])
            }
            if boolFlags.contains(where: { $0.0 == arg }) {
                if inlineValue != nil { throw OptionError("option \(arg) takes no value") }
                switch arg {
                case "--dump-on-exit": o.dumpOnExit = true
                case "--help": o.help = true
                default: break
                }
                i += 1
                continue
            }
            guard valueFlags.contains(where: { $0.0 == arg }) else {
                throw OptionError("unknown option '\(args[i])'")
            }
            let v: String
            if let iv = inlineValue {
                v = iv
            } else {
                guard i + 1 < args.count else { throw OptionError("option \(arg) requires a value") }
                v = args[i + 1]
                i += 1
            }
            i += 1
            switch arg {
            case "--portmask":
                let hex = v.hasPrefix("0x") || v.hasPrefix("0X") ? String(v.dropFirst(2)) : v
                guard let m = UInt64(hex, radix: 16), m != 0 else { throw OptionError("invalid value '\(v)' for --portmask: expected a non-zero hexadecimal mask") }
                o.portmask = m
            case "--nb-cores": o.nbCores = try intValue(arg, v, min: 1, max: 128)
            case "--rxq": o.rxq = try intValue(arg, v, min: 1, max: 1024)
            case "--txq": o.txq = try intValue(arg, v, min: 1, max: 1024)
            case "--rxd": o.rxd = try intValue(arg, v, min: 1, max: 65535)
            case "--txd": o.txd = try intValue(arg, v, min: 1, max: 65535)
            case "--burst": o.burst = try intValue(arg, v, min: 1, max: 512)
            case "--total-num-mbufs": o.totalNumMbufs = try intValue(arg, v, min: 1024)
            case "--mbuf-size": o.mbufSize = try intValue(arg, v, min: 256, max: 65535)
            case "--max-pkt-len": o.maxPktLen = try intValue(arg, v, min: 64 + 18, max: 65535)
            case "--stats-period":
                guard let s = Double(v), s > 0 else { throw OptionError("invalid value '\(v)' for --stats-period: expected a positive number of seconds") }
                o.statsPeriod = s
            case "--exit-on-idle": o.exitOnIdleMs = try intValue(arg, v, min: 1)
            case "--clock":
                guard let c = ClockSource(rawValue: v) else { throw OptionError("invalid value '\(v)' for --clock: expected tsc or packet") }
                o.clock = c
            case "--config": o.configFile = v
            case "--keepalived": o.keepalivedFile = v
            case "--feedback-port": o.feedbackPort = UInt16(try intValue(arg, v, min: 1, max: 65535))
            case "--feedback-options": o.feedbackOptions = v
            case "--neigh":
                let parts = v.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let a = IPAddress(parts[0]), let m = MACAddress(parts[1]) else {
                    throw OptionError("invalid value '\(v)' for --neigh: expected IP=MAC")
                }
                o.neighbours.append(NeighbourEntry(address: a, mac: m))
            case "--port-addr":
                guard let colon = v.firstIndex(of: ":"), let p = UInt16(v[..<colon]) else {
                    throw OptionError("invalid value '\(v)' for --port-addr: expected P:IP/LEN")
                }
                let rest = v[v.index(after: colon)...]
                let ap = rest.split(separator: "/", maxSplits: 1)
                guard ap.count == 2, let a = IPAddress(String(ap[0])), let len = Int(ap[1]),
                      len >= 0, len <= (a.isV4 ? 32 : 128) else {
                    throw OptionError("invalid value '\(v)' for --port-addr: expected P:IP/LEN")
                }
                o.portAddresses.append(PortAddress(port: p, address: a, prefixLength: len))
            case "--route":
                let parts = v.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { throw OptionError("invalid value '\(v)' for --route: expected PREFIX=GW[@P]") }
                let pp = parts[0].split(separator: "/", maxSplits: 1)
                let gwp = parts[1].split(separator: "@", maxSplits: 1)
                guard pp.count == 2, let pfx = IPAddress(String(pp[0])), let len = Int(pp[1]),
                      len >= 0, len <= (pfx.isV4 ? 32 : 128), let gw = IPAddress(String(gwp[0])),
                      gw.family == pfx.family else {
                    throw OptionError("invalid value '\(v)' for --route: expected PREFIX=GW[@P]")
                }
                var port: UInt16? = nil
                if gwp.count == 2 {
                    guard let p = UInt16(gwp[1]) else { throw OptionError("invalid value '\(v)' for --route: bad port") }
                    port = p
                }
                o.routes.append(StaticRoute(prefix: pfx.masked(prefix: len), prefixLength: len, gateway: gw, port: port))
            case "--socket": o.socketPath = v
            case "--max-conns": o.maxConns = try intValue(arg, v, min: 16, max: 1 << 30)
            case "--vlan":
                let parts = v.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, let port = UInt16(parts[0]), let id = UInt16(parts[1]), id >= 1, id <= 4094 else {
                    throw OptionError("invalid value '\(v)' for --vlan: expected P:ID with ID in 1..4094")
                }
                o.vlans[port] = id
            case "--lcore-map":
                o.lcoreMap = try parseLcoreMap(v)
            case "--exception-path":
                guard let e = ExceptionPath(rawValue: v) else { throw OptionError("invalid value '\(v)' for --exception-path: expected none or tap") }
                o.exceptionPath = e
            case "--idle-backoff":
                if v == "off" { o.idleBackoff = .off }
                else if v == "on" { o.idleBackoff = .on(maxSleepMicros: 500) }
                else if let us = Int(v), us >= 1, us <= 100_000 { o.idleBackoff = .on(maxSleepMicros: us) }
                else { throw OptionError("invalid value '\(v)' for --idle-backoff: expected on, off or a sleep in µs (1..100000)") }
            case "--gratuitous-arp":
                guard v == "on" || v == "off" else { throw OptionError("invalid value '\(v)' for --gratuitous-arp: expected on or off") }
                o.gratuitousARPSetting = v == "on"
            case "--forward-mode":
                guard let m = ForwardMode(rawValue: v) else { throw OptionError("invalid value '\(v)' for --forward-mode: expected io or lb") }
                o.forwardMode = m
            default:
                throw OptionError("unknown option '\(arg)'")
            }
        }
        return o
    }
}

/// "(0,0,1),(0,1,2)" -> [(0,0,1), (0,1,2)]
func parseLcoreMap(_ v: String) throws -> [(port: UInt16, queue: UInt16, lcore: UInt32)] {
    let bad = OptionError("invalid value '\(v)' for --lcore-map: expected (port,queue,lcore)[,(port,queue,lcore)...]")
    var out: [(port: UInt16, queue: UInt16, lcore: UInt32)] = []
    var rest = Substring(v.filter { !$0.isWhitespace })
    while !rest.isEmpty {
        guard rest.first == "(", let close = rest.firstIndex(of: ")") else { throw bad }
        let fields = rest[rest.index(after: rest.startIndex)..<close].split(separator: ",", omittingEmptySubsequences: false)
        guard fields.count == 3, let p = UInt16(fields[0]), let q = UInt16(fields[1]), let l = UInt32(fields[2]) else { throw bad }
        out.append((p, q, l))
        rest = rest[rest.index(after: close)...]
        if rest.first == "," { rest = rest.dropFirst(); if rest.isEmpty { throw bad } }
    }
    if out.isEmpty { throw bad }
    return out
}

extension String {
    func padding(to n: Int) -> String {
        count >= n ? self + " " : self + String(repeating: " ", count: n - count)
    }
}
