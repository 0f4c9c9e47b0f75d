// `--json` output of the list commands (a Switchyard extension).
//
// Schema (also in Control.docc/JSON.md). Every document is one object
// followed by a newline. Numbers are JSON integers; addresses are text as
// inet_ntop prints them (IPv6 without brackets).
//
// `-L [-t|-u|--sctp-service|-f service] --json`:
//   { "version": "1.2.1", "size": Int,
//     "services": [ Service ] }            // sorted as -L sorts, or kernel order with --nosort
//   Service = {
//     "family": "inet"|"inet6",
//     "protocol": "tcp"|"udp"|"sctp"|null,  // null for fwmark services
//     "address": String|null, "port": Int,  // address null and port 0 for fwmark services
//     "fwmark": Int,                         // 0 for address services
//     "scheduler": String,
//     "flags": [String],                     // sched flags as -L names them (sh-port, flag-1, ...)
//     "persistent": Bool, "timeout": Int,    // timeout in seconds (0 when not persistent)
//     "netmask": String|Int,                 // IPv4: dotted mask; IPv6: prefix length
//     "pe": String|null, "ops": Bool,
//     "stats": Stats, "rates": Rates,
//     "dests": [ Dest ] }                    // sorted by address/port, or list order with --nosort
//   Dest = {
//     "address": String, "port": Int, "family": "inet"|"inet6",
//     "forward": "masq"|"local"|"tunnel"|"route",
//     "weight": Int, "upper_threshold": Int, "lower_threshold": Int,
//     "active_conns": Int, "inactive_conns": Int, "persistent_conns": Int,
//     "available": Bool, "overloaded": Bool,
//     "tunnel": null | { "type": "ipip"|"gue"|"gre", "port": Int, "csum": "nocsum"|"csum"|"remcsum" },
//     "stats": Stats, "rates": Rates }
//   Stats = { "conns", "inpkts", "outpkts", "inbytes", "outbytes": Int }
//   Rates = { "cps", "inpps", "outpps", "inbps", "outbps": Int }
// `-L -c --json`:
//   { "connections": [ { "protocol": "tcp"|"udp"|"sctp"|"ip", "expires": Int (seconds),
//       "state": String, "client": Endpoint, "virtual": Endpoint, "dest": Endpoint,
//       "pe_name": String|null, "pe_data": String|null } ] }
//   Endpoint = { "address": String, "port": Int }
// `-L --timeout --json`: { "tcp": Int, "tcpfin": Int, "udp": Int }
// `-L --daemon --json`: { "daemons": [ { "state": "master"|"backup", "mcast_interface": String,
//       "syncid": Int, "maxlen": Int, "group": String|null, "port": Int, "ttl": Int } ] }

import IPVS

public enum AdmJSON {
    /// A JSON string literal with RFC 8259 escaping.
    public static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func optString(_ s: String?) -> String { s.map(string) ?? "null" }

    static func object(_ fields: [(String, String)]) -> String {
        "{" + fields.map { string($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
    }

    static func stats(_ c: StatsCounters) -> String {
        object([("conns", "\(c.conns)"), ("inpkts", "\(c.inPackets)"), ("outpkts", "\(c.outPackets)"),
                ("inbytes", "\(c.inBytes)"), ("outbytes", "\(c.outBytes)")])
    }

    static func rates(_ r: RateCounters) -> String {
        object([("cps", "\(r.cps)"), ("inpps", "\(r.inPPS)"), ("outpps", "\(r.outPPS)"),
                ("inbps", "\(r.inBPS)"), ("outbps", "\(r.outBPS)")])
    }

    static func forwardName(_ f: ForwardMethod) -> String {
        switch f {
        case .masq: return "masq"
        case .local: return "local"
        case .tunnel: return "tunnel"
        case .droute: return "route"
        case .bypass: return "bypass"
        }
    }

    static func dest(_ s: Service, _ d: Dest, _ src: StatsSource) -> String {
        var tunnel = "null"
        if d.forward == .tunnel {
            let type: String
            switch d.tunnelType {
            case .ipip: type = "ipip"
            case .gue: type = "gue"
            case .gre: type = "gre"
            }
            let csum = d.tunnelFlags.contains(.remcsum) ? "remcsum" : (d.tunnelFlags.contains(.csum) ? "csum" : "nocsum")
            tunnel = object([("type", string(type)), ("port", "\(d.tunnelPort)"), ("csum", string(csum))])
        }
        return object([
            ("address", string(inetNtop(d.addr))), ("port", "\(d.port)"),
            ("family", string(d.addr.isV4 ? "inet" : "inet6")),
            ("forward", string(forwardName(d.forward))),
            ("weight", "\(d.weight)"),
            ("upper_threshold", "\(d.upperThreshold)"), ("lower_threshold", "\(d.lowerThreshold)"),
            ("active_conns", "\(d.active)"), ("inactive_conns", "\(d.inactive)"),
            ("persistent_conns", "\(d.persistent)"),
            ("available", d.isAvailable ? "true" : "false"), ("overloaded", d.isOverloaded ? "true" : "false"),
            ("tunnel", tunnel),
            ("stats", stats(src.dest(s, d))), ("rates", rates(src.destRate(s, d))),
        ])
    }

    static func service(_ s: Service, _ src: StatsSource, sortDests: Bool) -> String {
        var proto = "null", address = "null"
        if case .address(let p, let a, _) = s.key {
            proto = string(p.listName.lowercased())
            address = string(inetNtop(a))
        }
        let flags = IpvsadmFormat.schedFlagsText(s)
        let flagList = flags.isEmpty ? "[]" : "[" + flags.split(separator: ",").map { string(String($0)) }.joined(separator: ",") + "]"
        let netmask = s.family == .inet ? string(inetNtop(IPAddress(v4: s.netmask))) : "\(s.netmask)"
        let dests = sortDests ? glibcMergeSort(s.dests, compareDests) : s.dests
        return object([
            ("family", string(s.family == .inet ? "inet" : "inet6")),
            ("protocol", proto), ("address", address), ("port", "\(s.port)"), ("fwmark", "\(s.fwmark)"),
            ("scheduler", string(s.schedulerName)),
            ("flags", flagList),
            ("persistent", s.isPersistent ? "true" : "false"),
            ("timeout", "\(s.isPersistent ? s.timeout : 0)"),
            ("netmask", netmask),
            ("pe", optString(s.persistenceEngine.flatMap { $0.isEmpty ? nil : $0 })),
            ("ops", s.flags.contains(.onePacket) ? "true" : "false"),
            ("stats", stats(src.service(s))), ("rates", rates(src.serviceRate(s))),
            ("dests", "[" + dests.map { dest(s, $0, src) }.joined(separator: ",") + "]"),
        ])
    }

    /// The services document; `sorted` orders services and dests as -L does.
    public static func services(_ list: [Service], size: Int, stats src: StatsSource = .zero,
                                sorted: Bool = true) -> String {
        let ordered = sorted ? glibcMergeSort(list, compareServices) : list
        return object([
            ("version", string("1.2.1")), ("size", "\(size)"),
            ("services", "[" + ordered.map { service($0, src, sortDests: sorted) }.joined(separator: ",") + "]"),
        ]) + "\n"
    }

    static func endpoint(_ a: IPAddress, _ p: UInt16) -> String {
        object([("address", string(inetNtop(a))), ("port", "\(p)")])
    }

    /// The connections document.
    public static func connections(_ rows: [ConnectionRow]) -> String {
        let items = rows.map { r in
            object([
                ("protocol", string(r.proto.listName.lowercased())),
                ("expires", "\(r.expiresSeconds)"),
                ("state", string(r.stateName)),
                ("client", endpoint(r.clientAddr, r.clientPort)),
                ("virtual", endpoint(r.virtualAddr, r.virtualPort)),
                ("dest", endpoint(r.destAddr, r.destPort)),
                ("pe_name", optString(r.peName)), ("pe_data", optString(r.peData)),
            ])
        }
        return object([("connections", "[" + items.joined(separator: ",") + "]")]) + "\n"
    }

    public static func timeouts(_ t: TimeoutSettings) -> String {
        object([("tcp", "\(t.tcp)"), ("tcpfin", "\(t.tcpFin)"), ("udp", "\(t.udp)")]) + "\n"
    }

    public static func daemons(_ list: [SyncDaemonStatus]) -> String {
        let items = list.map { d in
            object([
                ("state", string(d.state.rawValue)), ("mcast_interface", string(d.mcastInterface)),
                ("syncid", "\(d.syncID)"), ("maxlen", "\(d.syncMaxlen)"),
                ("group", optString(d.mcastGroup.map(inetNtop))), ("port", "\(d.mcastPort)"),
                ("ttl", "\(d.mcastTTL)"),
            ])
        }
        return object([("daemons", "[" + items.joined(separator: ",") + "]")]) + "\n"
    }
}
