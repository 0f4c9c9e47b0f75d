// keepalived.conf import: the `virtual_server` part of keepalived's
// configuration (LVS services, real servers, health checkers), turned into
// ipvsadm commands plus the health-check configuration Switchyard's monitor
// runs (HealthMonitor.swift).
//
// Grammar handled (keepalived's syntax: words, `{ ... }` blocks, `#`/`!`
// comments, "quoted strings", `include GLOB` anywhere):
//
//   virtual_server IP PORT { ... }     virtual_server fwmark N { ... }
//     delay_loop S, lb_algo|lvs_sched NAME, lb_kind|lvs_method NAT|DR|TUN
//     [type ipip|gue|gre] [port N] [nocsum|csum|remcsum],
//     persistence_timeout S, persistence_granularity MASK, persistence_engine NAME,
//     protocol TCP|UDP|SCTP, ops, sh-port, sh-fallback, mh-port, mh-fallback,
//     ip_family inet|inet6 (fwmark services), alpha, virtualhost NAME,
//     sorry_server IP [PORT], sorry_server_inhibit, sorry_server_lvs_method KIND,
//     connect_timeout / retry / delay_before_retry / rise / fall (defaults for checkers)
//     real_server IP [PORT] { weight W, inhibit_on_failure, uthreshold N, lthreshold N,
//         lb_kind KIND, delay_loop / connect_timeout / retry / delay_before_retry / rise / fall,
//         TCP_CHECK | HTTP_GET | SSL_GET | MISC_CHECK | UDP_CHECK | PING_CHECK { ... } }
//   checker blocks: connect_ip, connect_port, bindto, connect_timeout, retry, nb_get_retry,
//     delay_before_retry, delay_loop, rise, fall (Switchyard), url { path, status_code, digest,
//     virtualhost }, virtualhost, misc_path, misc_timeout, misc_dynamic, payload, require_reply.
//
// Everything else (global_defs, vrrp_*, static_*, unknown directives) is
// skipped with a notice naming its line; malformed input is an error naming
// file and line. Defaults follow keepalived where it has one: delay_loop 60,
// connect_timeout 5, delay_before_retry 1, lb_algo wlc, lb_kind NAT,
// protocol TCP, weight 1. `retry N` is Switchyard's `fall N` (N consecutive
// failures take a server down; at least 1, default 1); `rise N` (Switchyard,
// default 1) is the number of consecutive successes that bring it back.

import IPVS

/// Where a statement came from.
public struct ConfigLocation: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) { self.file = file; self.line = line }
    public var description: String { file.isEmpty ? "line \(line)" : "\(file): line \(line)" }
}

public struct KeepalivedError: Error, Sendable, Equatable, CustomStringConvertible {
    public var location: ConfigLocation
    public var message: String
    public init(_ location: ConfigLocation, _ message: String) { self.location = location; self.message = message }
    public var line: Int { location.line }
    public var description: String { "\(location): \(message)" }
}

public enum CheckerKind: String, Sendable, Equatable {
    case tcp = "TCP_CHECK"
    case http = "HTTP_GET"
    case https = "SSL_GET"
    case misc = "MISC_CHECK"
    case udp = "UDP_CHECK"
    case icmp = "PING_CHECK"
}

/// One `url { }` of HTTP_GET / SSL_GET.
public struct URLCheck: Sendable, Equatable {
    public var path: String = "/"
    /// Accepted status codes; empty means 200-299.
    public var statusCodes: [ClosedRange<Int>] = []
    /// Lower-case hex MD5 of the body, if checked.
    public var digest: String? = nil
    public var virtualhost: String? = nil
    public init() {}
    public func accepts(_ status: Int) -> Bool {
        statusCodes.isEmpty ? (200...299).contains(status) : statusCodes.contains { $0.contains(status) }
    }
}

public struct CheckerConfig: Sendable, Equatable {
    public var kind: CheckerKind
    public var location: ConfigLocation
    public var connectIP: IPAddress? = nil
    public var connectPort: UInt16? = nil
    public var bindTo: IPAddress? = nil
    public var connectTimeout: Double = 5
    public var delayLoop: Double = 60
    public var delayBeforeRetry: Double = 1
    public var fall: Int = 1
    public var rise: Int = 1
    public var urls: [URLCheck] = []
    public var virtualhost: String? = nil
    public var miscPath: String = ""
    public var miscTimeout: Double? = nil
    public var miscDynamic: Bool = false
    public var payload: [UInt8] = []
    public var requireReply: Bool = false
    public init(kind: CheckerKind, location: ConfigLocation) { self.kind = kind; self.location = location }
}

public struct RealServerConfig: Sendable, Equatable {
    public var address: IPAddress
    public var port: UInt16?
    public var location: ConfigLocation
    public var weight: Int32 = 1
    public var inhibitOnFailure = false
    public var forward: ForwardMethod? = nil
    public var upperThreshold: UInt32? = nil
    public var lowerThreshold: UInt32? = nil
    public var checkers: [CheckerConfig] = []
}

public struct SorryServerConfig: Sendable, Equatable {
    public var address: IPAddress
    public var port: UInt16?
    public var location: ConfigLocation
    public var forward: ForwardMethod? = nil
    public var inhibit = false
}

public struct TunnelConfig: Sendable, Equatable {
    public var type: String = "ipip"
    public var port: UInt16? = nil
    public var csum: String? = nil
}

public struct VirtualServerConfig: Sendable, Equatable {
    public var key: ServiceKey
    public var location: ConfigLocation
    public var delayLoop: Double = 60
    public var scheduler = "wlc"
    public var forward: ForwardMethod = .masq
    public var tunnel: TunnelConfig? = nil
    public var persistenceTimeout: UInt32? = nil
    public var persistenceGranularity: String? = nil
    public var persistenceEngine: String? = nil
    public var ops = false
    public var schedFlags: [String] = []
    public var alpha = false
    public var virtualhost: String? = nil
    public var sorryServer: SorryServerConfig? = nil
    public var realServers: [RealServerConfig] = []
}

public struct KeepalivedConfig: Sendable, Equatable {
    public var virtualServers: [VirtualServerConfig] = []
    /// What was skipped, one line each, naming the place.
    public var notices: [String] = []
}

// MARK: - Tokens and the statement tree

struct ConfigToken {
    var text: String
    var location: ConfigLocation
    var quoted = false
}

/// One statement: its words, and its `{ }` block if it has one.
struct ConfigNode {
    var words: [String]
    var location: ConfigLocation
    var children: [ConfigNode]? = nil
}

/// Reads the files a configuration is made of (tests give a dictionary).
public struct ConfigFileReader {
    public var read: (String) -> String?
    public var glob: (String) -> [String]
    public init(read: @escaping (String) -> String?, glob: @escaping (String) -> [String]) {
        self.read = read; self.glob = glob
    }
    public static let system = ConfigFileReader(read: readTextFile, glob: systemGlob)
}

func systemGlob(_ pattern: String) -> [String] {
    var g = glob_t()
    defer { globfree(&g) }
    guard Glibc.glob(pattern, 0, nil, &g) == 0 else { return [] }
    var out: [String] = []
    for i in 0..<Int(g.gl_pathc) {
        if let p = g.gl_pathv[i] { out.append(String(cString: p)) }
    }
    return out.sorted()
}

func tokenize(_ text: String, file: String) throws(KeepalivedError) -> [ConfigToken] {
    var out: [ConfigToken] = []
    var lineNo = 0
    for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
        lineNo += 1
        let loc = ConfigLocation(file: file, line: lineNo)
        var cur = ""
        var inWord = false
        var it = rawLine.makeIterator()
        func flush() {
            if inWord { out.append(ConfigToken(text: cur, location: loc)); cur = ""; inWord = false }
        }
        scan: while let c = it.next() {
            switch c {
            case " ", "\t", "\r":
                flush()
            case "#", "!":
                if inWord { cur.append(c) } else { break scan }
            case "{", "}":
                flush()
                out.append(ConfigToken(text: String(c), location: loc))
            case "\"":
                flush()
                var s = ""
                var closed = false
                while let d = it.next() {
                    if d == "\"" { closed = true; break }
                    if d == "\\", let e = it.next() { s.append(e); continue }
                    s.append(d)
                }
                if !closed { throw KeepalivedError(loc, "unterminated quoted string") }
                out.append(ConfigToken(text: s, location: loc, quoted: true))
            default:
                inWord = true
                cur.append(c)
            }
        }
        flush()
    }
    return out
}

struct TreeBuilder {
    var tokens: [ConfigToken]
    var pos = 0

    mutating func block(opener: ConfigLocation?) throws(KeepalivedError) -> [ConfigNode] {
        var nodes: [ConfigNode] = []
        while pos < tokens.count {
            let t = tokens[pos]
            if t.text == "}" && !t.quoted {
                pos += 1
                if opener == nil { throw KeepalivedError(t.location, "unexpected '}'") }
                return nodes
            }
            if t.text == "{" && !t.quoted {
                throw KeepalivedError(t.location, "unexpected '{' (a block must follow a keyword)")
            }
            var words = [t.text]
            pos += 1
            while pos < tokens.count, tokens[pos].location == t.location,
                  tokens[pos].quoted || (tokens[pos].text != "{" && tokens[pos].text != "}") {
                words.append(tokens[pos].text)
                pos += 1
            }
            var node = ConfigNode(words: words, location: t.location)
            if pos < tokens.count, tokens[pos].text == "{", !tokens[pos].quoted {
                pos += 1
                node.children = try block(opener: t.location)
            }
            nodes.append(node)
        }
        if let o = opener { throw KeepalivedError(o, "block opened here is not closed (missing '}')") }
        return nodes
    }
}

// MARK: - Parsing

extension KeepalivedConfig {
    /// Parse configuration text. `file` names it in messages (and is the base
    /// for relative `include` paths); `reader` resolves includes.
    public static func parse(_ text: String, file: String = "",
                             reader: ConfigFileReader = .system) throws(KeepalivedError) -> KeepalivedConfig {
        var tokens: [ConfigToken] = []
        try expandIncludes(text, file: file, reader: reader, depth: 0, into: &tokens)
        var tb = TreeBuilder(tokens: tokens)
        let nodes = try tb.block(opener: nil)
        var cfg = KeepalivedConfig()
        var p = DirectiveParser(config: cfg)
        for n in nodes {
            switch n.words[0] {
            case "virtual_server":
                if let vs = try p.virtualServer(n) { p.config.virtualServers.append(vs) }
            default:
                p.notice(n, n.children != nil ? "skipping '\(n.words[0])' block (not used by Switchyard)"
                                             : "skipping '\(n.words[0])' (not used by Switchyard)")
            }
        }
        cfg = p.config
        // Two services with one key would be refused by the table; say where.
        var seen: [ServiceKey: ConfigLocation] = [:]
        for vs in cfg.virtualServers {
            if let first = seen[vs.key] {
                throw KeepalivedError(vs.location, "virtual_server already defined at \(first)")
            }
            seen[vs.key] = vs.location
        }
        return cfg
    }

    /// Read and parse a file.
    public static func load(path: String, reader: ConfigFileReader = .system) throws(KeepalivedError) -> KeepalivedConfig {
        guard let text = reader.read(path) else {
            throw KeepalivedError(ConfigLocation(file: path, line: 0), "cannot read file")
        }
        return try parse(text, file: path, reader: reader)
    }

    static func expandIncludes(_ text: String, file: String, reader: ConfigFileReader, depth: Int,
                               into out: inout [ConfigToken]) throws(KeepalivedError) {
        let toks = try tokenize(text, file: file)
        var i = 0
        while i < toks.count {
            let t = toks[i]
            let startsLine = i == 0 || toks[i - 1].location != t.location
            if startsLine && !t.quoted && t.text == "include" {
                guard i + 1 < toks.count, toks[i + 1].location == t.location else {
                    throw KeepalivedError(t.location, "include needs a file name")
                }
                if depth >= 8 { throw KeepalivedError(t.location, "includes nested too deeply") }
                var pattern = toks[i + 1].text
                if !pattern.hasPrefix("/"), let slash = file.lastIndex(of: "/") {
                    pattern = String(file[...slash]) + pattern
                }
                let files = reader.glob(pattern)
                if files.isEmpty { throw KeepalivedError(t.location, "include '\(toks[i + 1].text)': no such file") }
                for f in files {
                    guard let inner = reader.read(f) else { throw KeepalivedError(t.location, "include '\(f)': cannot read") }
                    try expandIncludes(inner, file: f, reader: reader, depth: depth + 1, into: &out)
                }
                i += 2
                while i < toks.count && toks[i].location == t.location { i += 1 }
                continue
            }
            out.append(t)
            i += 1
        }
    }
}

/// Values a virtual server passes down to its real servers and checkers.
struct CheckDefaults {
    var delayLoop: Double = 60
    var connectTimeout: Double = 5
    var delayBeforeRetry: Double = 1
    var fall: Int = 1
    var rise: Int = 1
    var virtualhost: String? = nil
}

struct DirectiveParser {
    var config: KeepalivedConfig

    mutating func notice(_ n: ConfigNode, _ text: String) {
        config.notices.append("\(n.location): \(text)")
    }

    func value(_ n: ConfigNode, _ i: Int = 1) throws(KeepalivedError) -> String {
        guard i < n.words.count else { throw KeepalivedError(n.location, "'\(n.words[0])' needs a value") }
        return n.words[i]
    }

    func number(_ n: ConfigNode, min: Double = 0, max: Double = 1e9) throws(KeepalivedError) -> Double {
        let v = try value(n)
        guard let d = Double(v), d.isFinite, d >= min, d <= max else {
            throw KeepalivedError(n.location, "invalid value '\(v)' for \(n.words[0])")
        }
        return d
    }

    func integer(_ n: ConfigNode, min: Int, max: Int, _ i: Int = 1) throws(KeepalivedError) -> Int {
        let v = try value(n, i)
        guard let d = Int(v), d >= min, d <= max else {
            throw KeepalivedError(n.location, "invalid value '\(v)' for \(n.words[0]) (expected \(min)..\(max))")
        }
        return d
    }

    func address(_ n: ConfigNode, _ i: Int, what: String) throws(KeepalivedError) -> IPAddress {
        let v = try value(n, i)
        guard let a = IPAddress(v) else { throw KeepalivedError(n.location, "invalid \(what) address '\(v)'") }
        return a
    }

    func port(_ n: ConfigNode, _ i: Int) throws(KeepalivedError) -> UInt16? {
        guard i < n.words.count else { return nil }
        guard let p = UInt16(n.words[i]) else { throw KeepalivedError(n.location, "invalid port '\(n.words[i])'") }
        return p
    }

    func forward(_ n: ConfigNode) throws(KeepalivedError) -> ForwardMethod {
        let v = try value(n)
        switch v.uppercased() {
        case "NAT": return .masq
        case "DR": return .droute
        case "TUN": return .tunnel
        default: throw KeepalivedError(n.location, "invalid \(n.words[0]) '\(v)' (expected NAT, DR or TUN)")
        }
    }

    func flag(_ n: ConfigNode) throws(KeepalivedError) {
        if n.words.count > 1 { throw KeepalivedError(n.location, "'\(n.words[0])' takes no value") }
    }

    /// Shared timing directives; true if `n` was one of them.
    mutating func timing(_ n: ConfigNode, _ d: inout CheckDefaults) throws(KeepalivedError) -> Bool {
        switch n.words[0] {
        case "delay_loop": d.delayLoop = try number(n, min: 0.01)
        case "connect_timeout": d.connectTimeout = try number(n, min: 0.01)
        case "delay_before_retry": d.delayBeforeRetry = try number(n, min: 0)
        case "retry", "nb_get_retry", "fall": d.fall = Swift.max(1, try integer(n, min: 0, max: 1000))
        case "rise": d.rise = try integer(n, min: 1, max: 1000)
        default: return false
        }
        if n.children != nil { throw KeepalivedError(n.location, "'\(n.words[0])' does not take a block") }
        return true
    }

    mutating func virtualServer(_ n: ConfigNode) throws(KeepalivedError) -> VirtualServerConfig? {
        guard let body = n.children else { throw KeepalivedError(n.location, "virtual_server needs a { } block") }
        var fwmark: UInt32? = nil
        var addr = IPAddress(v4: 0)
        var vport: UInt16 = 0
        let first = try value(n, 1)
        if first == "group" {
            notice(n, "skipping 'virtual_server group' (virtual_server_group is not supported)")
            return nil
        }
        if first == "fwmark" {
            let m = try integer(n, min: 1, max: Int(UInt32.max), 2)
            fwmark = UInt32(m)
            if n.words.count > 3 { throw KeepalivedError(n.location, "unexpected '\(n.words[3])' after the fwmark") }
        } else {
            addr = try address(n, 1, what: "virtual server")
            guard n.words.count >= 3 else { throw KeepalivedError(n.location, "virtual_server needs an address and a port") }
            vport = try port(n, 2) ?? 0
            if n.words.count > 3 { throw KeepalivedError(n.location, "unexpected '\(n.words[3])' after the port") }
        }
        var proto: IPProtocol = .tcp
        var family: AddressFamily? = nil
        var defaults = CheckDefaults()
        var vs = VirtualServerConfig(key: .fwmark(mark: 0, family: .inet), location: n.location)
        var realNodes: [ConfigNode] = []
        for c in body {
            if try timing(c, &defaults) { continue }
            switch c.words[0] {
            case "lb_algo", "lvs_sched": vs.scheduler = try value(c)
            case "lb_kind", "lvs_method":
                vs.forward = try forward(c)
                if vs.forward == .tunnel && c.words.count > 2 { vs.tunnel = try tunnel(c) }
            case "persistence_timeout":
                vs.persistenceTimeout = UInt32(try integer(c, min: 1, max: 2_678_400))
            case "persistence_granularity": vs.persistenceGranularity = try value(c)
            case "persistence_engine": vs.persistenceEngine = try value(c)
            case "protocol":
                switch try value(c).uppercased() {
                case "TCP": proto = .tcp
                case "UDP": proto = .udp
                case "SCTP": proto = .sctp
                default: throw KeepalivedError(c.location, "invalid protocol '\(c.words[1])' (expected TCP, UDP or SCTP)")
                }
            case "ops": try flag(c); vs.ops = true
            case "sh-port", "sh-fallback", "mh-port", "mh-fallback":
                try flag(c); vs.schedFlags.append(c.words[0])
            case "ip_family":
                switch try value(c) {
                case "inet": family = .inet
                case "inet6": family = .inet6
                default: throw KeepalivedError(c.location, "invalid ip_family '\(c.words[1])' (expected inet or inet6)")
                }
            case "alpha": try flag(c); vs.alpha = true
            case "virtualhost": defaults.virtualhost = try value(c); vs.virtualhost = defaults.virtualhost
            case "sorry_server":
                let a = try address(c, 1, what: "sorry server")
                let p = try port(c, 2)
                var s = vs.sorryServer ?? SorryServerConfig(address: a, port: p, location: c.location)
                s.address = a; s.port = p; s.location = c.location
                vs.sorryServer = s
            case "sorry_server_inhibit":
                try flag(c)
                guard vs.sorryServer != nil else { throw KeepalivedError(c.location, "sorry_server_inhibit before sorry_server") }
                vs.sorryServer!.inhibit = true
            case "sorry_server_lvs_method":
                guard vs.sorryServer != nil else { throw KeepalivedError(c.location, "sorry_server_lvs_method before sorry_server") }
                vs.sorryServer!.forward = try forward(c)
            case "real_server":
                realNodes.append(c)
            case "quorum", "quorum_up", "quorum_down", "hysteresis", "omega", "ha_suspend", "warmup",
                 "smtp_alert", "notify_up", "notify_down", "virtualhost_name":
                notice(c, "ignoring '\(c.words[0])' (not supported by Switchyard)")
            default:
                notice(c, "ignoring unknown directive '\(c.words[0])' in virtual_server")
            }
        }
        for r in realNodes { vs.realServers.append(try realServer(r, defaults: defaults)) }
        if let m = fwmark {
            let fam = family ?? vs.realServers.first.map { $0.address.family } ?? .inet
            vs.key = .fwmark(mark: m, family: fam)
        } else {
            if let f = family, f != addr.family {
                throw KeepalivedError(n.location, "ip_family does not match the virtual server address")
            }
            vs.key = .address(proto: proto, addr: addr, port: vport)
        }
        vs.delayLoop = defaults.delayLoop
        return vs
    }

    func tunnel(_ c: ConfigNode) throws(KeepalivedError) -> TunnelConfig {
        var t = TunnelConfig()
        var i = 2
        while i < c.words.count {
            switch c.words[i] {
            case "type":
                guard i + 1 < c.words.count, ["ipip", "gue", "gre"].contains(c.words[i + 1]) else {
                    throw KeepalivedError(c.location, "tunnel type must be ipip, gue or gre")
                }
                t.type = c.words[i + 1]; i += 2
            case "port":
                guard i + 1 < c.words.count, let p = UInt16(c.words[i + 1]), p > 0 else {
                    throw KeepalivedError(c.location, "invalid tunnel port")
                }
                t.port = p; i += 2
            case "nocsum", "csum", "remcsum":
                t.csum = c.words[i]; i += 1
            default:
                throw KeepalivedError(c.location, "unexpected '\(c.words[i])' in \(c.words[0])")
            }
        }
        return t
    }

    mutating func realServer(_ n: ConfigNode, defaults inherited: CheckDefaults) throws(KeepalivedError) -> RealServerConfig {
        let a = try address(n, 1, what: "real server")
        let p = try port(n, 2)
        if n.words.count > 3 { throw KeepalivedError(n.location, "unexpected '\(n.words[3])' after the port") }
        var rs = RealServerConfig(address: a, port: p, location: n.location)
        var defaults = inherited
        var checkerNodes: [ConfigNode] = []
        for c in n.children ?? [] {
            if try timing(c, &defaults) { continue }
            switch c.words[0] {
            case "weight": rs.weight = Int32(try integer(c, min: 0, max: 65535))
            case "inhibit_on_failure": try flag(c); rs.inhibitOnFailure = true
            case "uthreshold": rs.upperThreshold = UInt32(try integer(c, min: 0, max: Int(Int32.max)))
            case "lthreshold": rs.lowerThreshold = UInt32(try integer(c, min: 0, max: Int(Int32.max)))
            case "lb_kind", "lvs_method": rs.forward = try forward(c)
            case "TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "UDP_CHECK", "PING_CHECK":
                checkerNodes.append(c)
            case "notify_up", "notify_down", "smtp_alert", "warmup", "alpha":
                notice(c, "ignoring '\(c.words[0])' (not supported by Switchyard)")
            default:
                notice(c, c.children != nil ? "skipping unknown block '\(c.words[0])' in real_server"
                                            : "ignoring unknown directive '\(c.words[0])' in real_server")
            }
        }
        for c in checkerNodes { rs.checkers.append(try checker(c, defaults: defaults)) }
        return rs
    }

    mutating func checker(_ n: ConfigNode, defaults inherited: CheckDefaults) throws(KeepalivedError) -> CheckerConfig {
        let kind = CheckerKind(rawValue: n.words[0])!
        if n.words.count > 1 { throw KeepalivedError(n.location, "unexpected '\(n.words[1])' after \(n.words[0])") }
        var ck = CheckerConfig(kind: kind, location: n.location)
        var d = inherited
        var miscPathSet = false
        for c in n.children ?? [] {
            if try timing(c, &d) { continue }
            switch (kind, c.words[0]) {
            case (_, "connect_ip"): ck.connectIP = try address(c, 1, what: "connect_ip")
            case (_, "connect_port"):
                guard let p = try port(c, 1) else { throw KeepalivedError(c.location, "'connect_port' needs a value") }
                ck.connectPort = p
            case (_, "bindto"): ck.bindTo = try address(c, 1, what: "bindto")
            case (.http, "url"), (.https, "url"): ck.urls.append(try url(c))
            case (.http, "virtualhost"), (.https, "virtualhost"): ck.virtualhost = try value(c)
            case (.misc, "misc_path"): ck.miscPath = try value(c); miscPathSet = true
                if c.words.count > 2 { ck.miscPath = c.words[1...].joined(separator: " ") }
            case (.misc, "misc_timeout"): ck.miscTimeout = try number(c, min: 0.01)
            case (.misc, "misc_dynamic"): try flag(c); ck.miscDynamic = true
            case (.udp, "payload"): ck.payload = Array(try value(c).utf8)
            case (.udp, "require_reply"): try flag(c); ck.requireReply = true
            case (_, "bind_port"), (_, "bind_if"), (_, "fwmark"), (_, "warmup"), (.misc, "user"),
                 (.https, "enable_sni"), (.http, "http_protocol"), (.https, "http_protocol"):
                notice(c, "ignoring '\(c.words[0])' (not supported by Switchyard)")
            default:
                notice(c, c.children != nil ? "skipping unknown block '\(c.words[0])' in \(kind.rawValue)"
                                            : "ignoring unknown directive '\(c.words[0])' in \(kind.rawValue)")
            }
        }
        ck.delayLoop = d.delayLoop
        ck.connectTimeout = d.connectTimeout
        ck.delayBeforeRetry = d.delayBeforeRetry
        ck.fall = d.fall
        ck.rise = d.rise
        if ck.virtualhost == nil { ck.virtualhost = d.virtualhost }
        if kind == .misc && !miscPathSet { throw KeepalivedError(n.location, "MISC_CHECK needs misc_path") }
        if (kind == .http || kind == .https) && ck.urls.isEmpty {
            throw KeepalivedError(n.location, "\(kind.rawValue) needs at least one url { path ... }")
        }
        return ck
    }

    mutating func url(_ n: ConfigNode) throws(KeepalivedError) -> URLCheck {
        guard let body = n.children else { throw KeepalivedError(n.location, "url needs a { } block") }
        var u = URLCheck()
        var pathSet = false
        for c in body {
            switch c.words[0] {
            case "path":
                u.path = try value(c); pathSet = true
                guard u.path.hasPrefix("/") else { throw KeepalivedError(c.location, "url path must start with '/'") }
            case "digest":
                let v = try value(c).lowercased()
                guard v.count == 32, v.allSatisfy({ $0.isHexDigit }) else {
                    throw KeepalivedError(c.location, "digest must be 32 hexadecimal digits (an MD5)")
                }
                u.digest = v
            case "status_code":
                guard c.words.count > 1 else { throw KeepalivedError(c.location, "'status_code' needs a value") }
                for w in c.words.dropFirst() {
                    let parts = w.split(separator: "-", omittingEmptySubsequences: false)
                    guard parts.count <= 2, let lo = Int(parts[0]), (100...599).contains(lo) else {
                        throw KeepalivedError(c.location, "invalid status_code '\(w)'")
                    }
                    var hi = lo
                    if parts.count == 2 {
                        guard let h = Int(parts[1]), h >= lo, h <= 599 else {
                            throw KeepalivedError(c.location, "invalid status_code '\(w)'")
                        }
                        hi = h
                    }
                    u.statusCodes.append(lo...hi)
                }
            case "virtualhost": u.virtualhost = try value(c)
            default:
                notice(c, "ignoring unknown directive '\(c.words[0])' in url")
            }
        }
        if !pathSet { throw KeepalivedError(n.location, "url needs a path") }
        return u
    }
}

#if canImport(Glibc)
import Glibc
#endif
