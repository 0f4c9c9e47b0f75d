// Number, address and name parsing with the C library semantics ipvsadm
// relies on (strtol, inet_aton, getservbyname over /etc/services,
// gethostbyname over /etc/hosts). No DNS: a host name is resolved only from
// the hosts file; without a match it is refused like an unknown host.

import IPVS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Port and host name tables (the `/etc/services` and `/etc/hosts` files).
public struct NameResolver: Sendable {
    public struct ServiceEntry: Sendable, Equatable {
        public var name: String
        public var aliases: [String]
        public var port: UInt16
        public var proto: String    // "tcp", "udp", "sctp", ...
    }
    public var serviceEntries: [ServiceEntry]
    /// IPv4 entries of the hosts file: (address, names), in file order.
    public var hostEntries: [(IPAddress, [String])]

    public init(servicesText: String = "", hostsText: String = "") {
        serviceEntries = NameResolver.parseServices(servicesText)
        hostEntries = NameResolver.parseHosts(hostsText)
    }

    /// Empty tables: only numeric ports and addresses.
    public static let numericOnly = NameResolver()

    /// The system's files, read once (a missing file is an empty table).
    public static let system: NameResolver = NameResolver(
        servicesText: readTextFile("/etc/services") ?? "",
        hostsText: readTextFile("/etc/hosts") ?? "")

    /// `getservbyname(name, proto)`: the port of a service name or alias.
    public func port(forService name: String, proto: IPProtocol) -> UInt16? {
        guard let p = NameResolver.protoName(proto) else { return nil }
        for e in serviceEntries where e.proto == p && (e.name == name || e.aliases.contains(name)) {
            return e.port
        }
        return nil
    }

    /// `getservbyport(port, proto)`: the official name of the first entry.
    public func serviceName(forPort port: UInt16, proto: IPProtocol) -> String? {
        guard let p = NameResolver.protoName(proto) else { return nil }
        for e in serviceEntries where e.proto == p && e.port == port { return e.name }
        return nil
    }

    /// `gethostbyname` restricted to the hosts file (IPv4 only, as ipvsadm's
    /// host_to_addr accepts only AF_INET answers). Names match case-insensitively.
    public func hostAddress(_ name: String) -> IPAddress? {
        let n = name.lowercased()
        for (a, names) in hostEntries where names.contains(where: { $0.lowercased() == n }) { return a }
        return nil
    }

    static func protoName(_ p: IPProtocol) -> String? {
        switch p {
        case .tcp: return "tcp"
        case .udp: return "udp"
        case .sctp: return "sctp"
        case .ip: return nil
        }
    }

    static func fields(_ line: Substring) -> [Substring] {
        var l = line
        if let h = l.firstIndex(of: "#") { l = l[..<h] }
        return l.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
    }

    static func parseServices(_ text: String) -> [ServiceEntry] {
        var out: [ServiceEntry] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let f = fields(line)
            guard f.count >= 2 else { continue }
            let pp = f[1].split(separator: "/", maxSplits: 1)
            guard pp.count == 2, let port = UInt16(pp[0]) else { continue }
            out.append(ServiceEntry(name: String(f[0]), aliases: f.dropFirst(2).map(String.init),
                                    port: port, proto: String(pp[1]).lowercased()))
        }
        return out
    }

    static func parseHosts(_ text: String) -> [(IPAddress, [String])] {
        var out: [(IPAddress, [String])] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let f = fields(line)
            guard f.count >= 2, let a = parseDottedQuad(f[0]) else { continue }
            out.append((IPAddress(v4: a), f.dropFirst().map(String.init)))
        }
        return out
    }
}

/// Read a whole file as UTF-8 text (nil if it cannot be opened).
public func readTextFile(_ path: String) -> String? {
    guard let fp = fopen(path, "r") else { return nil }
    defer { fclose(fp) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, fp) }
        if n <= 0 { break }
        bytes.append(contentsOf: buf[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}

// MARK: - C-library number and address parsing

/// `strtol(s, &end, 10)` accepted only when it consumed the whole string
/// (ipvsadm's string_to_number without the range check): leading white
/// space and a sign are allowed; nil when there are no digits, trailing
/// characters, or the value overflows a long.
func cStrtol(_ s: String) -> Int64? {
    var u = Substring(s).utf8[...]
    while let c = u.first, c == 0x20 || (c >= 0x09 && c <= 0x0D) { u = u.dropFirst() }
    var negative = false
    if let c = u.first, c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
        negative = c == UInt8(ascii: "-")
        u = u.dropFirst()
    }
    guard !u.isEmpty else { return nil }
    var v: Int64 = 0
    var overflow = false
    for c in u {
        guard c >= 0x30 && c <= 0x39 else { return nil }
        let d = Int64(c - 0x30)
        let (m, o1) = v.multipliedReportingOverflow(by: 10)
        let (a, o2) = negative ? m.subtractingReportingOverflow(d) : m.addingReportingOverflow(d)
        if o1 || o2 { overflow = true }
        v = a
    }
    return overflow ? nil : v
}

/// ipvsadm's `string_to_number(s, min, max)`.
func stringToNumber(_ s: String, _ min: Int64, _ max: Int64) -> Int64? {
    guard let v = cStrtol(s), v >= min, v <= max else { return nil }
    return v
}

/// ipvsadm's str_is_digit: true for an empty string or all ASCII digits.
func strIsDigit(_ s: Substring) -> Bool {
    s.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
}

/// Strict a.b.c.d (decimal) as a host-order value.
func parseDottedQuad(_ s: Substring) -> UInt32? {
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return nil }
    var v: UInt32 = 0
    for p in parts {
        guard !p.isEmpty, p.count <= 3, strIsDigit(p), let n = UInt32(p), n <= 255 else { return nil }
        v = (v << 8) | n
    }
    return v
}

/// glibc `inet_aton`: 1 to 4 parts, each decimal, octal (leading 0) or hex
/// (0x); the last part fills the remaining bytes. Returns host order.
func inetAton(_ s: Substring) -> UInt32? {
    var parts: [UInt64] = []
    var chars = Array(s.utf8)
    chars.append(0)
    var i = 0
    while true {
        guard chars[i] >= 0x30 && chars[i] <= 0x39 else { return nil }
        var base: UInt64 = 10
        if chars[i] == 0x30 {
            base = 8; i += 1
            if chars[i] == UInt8(ascii: "x") || chars[i] == UInt8(ascii: "X") { base = 16; i += 1 }
        }
        var val: UInt64 = 0
        while true {
            let c = chars[i]
            var d: UInt64
            if c >= 0x30 && c <= 0x39 { d = UInt64(c - 0x30) }
            else if base == 16 && c >= 0x61 && c <= 0x66 { d = UInt64(c - 0x61 + 10) }
            else if base == 16 && c >= 0x41 && c <= 0x46 { d = UInt64(c - 0x41 + 10) }
            else { break }
            if d >= base { return nil }
            val = val * base + d
            if val > 0xFFFF_FFFF { return nil }
            i += 1
        }
        if chars[i] == UInt8(ascii: ".") {
            guard parts.count < 3, val <= 0xFF else { return nil }
            parts.append(val)
            i += 1
            continue
        }
        guard chars[i] == 0 else { return nil }
        parts.append(val)
        break
    }
    var result: UInt64 = 0
    switch parts.count {
    case 1: result = parts[0]
    case 2: guard parts[1] <= 0xFF_FFFF else { return nil }; result = parts[0] << 24 | parts[1]
    case 3: guard parts[2] <= 0xFFFF else { return nil }; result = parts[0] << 24 | parts[1] << 16 | parts[2]
    default: guard parts[3] <= 0xFF else { return nil }
        result = parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]
    }
    return UInt32(result)
}

/// `inet_pton(AF_INET6, ...)`: full textual IPv6, optionally with a dotted
/// IPv4 tail; no brackets, no zone.
func inetPton6(_ s: Substring) -> IPAddress? {
    guard s.contains(":"), !s.contains("%") else { return nil }
    guard let a = IPAddress(s), a.family == .inet6 else { return nil }
    return a
}
