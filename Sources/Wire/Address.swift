// Addresses as the IPVS model sees them: one value type for IPv4 and IPv6,
// stored as a big-endian 128-bit number so that comparisons and masks are
// plain integer operations.

public enum AddressFamily: UInt8, Sendable {
    case inet = 2      // AF_INET
    case inet6 = 10    // AF_INET6
}

public struct IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// High and low 64 bits of the address read as a big-endian number.
    /// IPv4 lives in the low 32 bits of `lo`, with `hi == 0`.
    public var hi: UInt64
    public var lo: UInt64
    public var family: AddressFamily

    public init(hi: UInt64, lo: UInt64, family: AddressFamily) {
        self.hi = hi
        self.lo = lo
        self.family = family
    }

    /// IPv4 from a host-order value (ntohl of the wire bytes).
    public init(v4 hostOrder: UInt32) {
        self.init(hi: 0, lo: UInt64(hostOrder), family: .inet)
    }

    /// IPv6 from 16 wire bytes.
    public init(v6 bytes: UnsafeRawPointer) {
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<8 { h = (h << 8) | UInt64(bytes.load(fromByteOffset: i, as: UInt8.self)) }
        for i in 8..<16 { l = (l << 8) | UInt64(bytes.load(fromByteOffset: i, as: UInt8.self)) }
        self.init(hi: h, lo: l, family: .inet6)
    }

    public var isV4: Bool { family == .inet }
    /// Host-order IPv4 value (only meaningful for IPv4).
    public var v4: UInt32 { UInt32(truncatingIfNeeded: lo) }

    /// The four 32-bit words of an IPv6 address, host order, first word first.
    public var v6Words: (UInt32, UInt32, UInt32, UInt32) {
        (UInt32(truncatingIfNeeded: hi >> 32), UInt32(truncatingIfNeeded: hi),
         UInt32(truncatingIfNeeded: lo >> 32), UInt32(truncatingIfNeeded: lo))
    }

    /// The kernel's address fold for hashing schedulers: IPv4 as is, IPv6 as
    /// the XOR of its four words (host order).
    public var folded: UInt32 {
        if isV4 { return v4 }
        let w = v6Words
        return w.0 ^ w.1 ^ w.2 ^ w.3
    }

    /// Write the address in wire order (4 or 16 bytes).
    public func store(to p: UnsafeMutableRawPointer) {
        if isV4 {
            p.storeBytes(of: v4.bigEndian, as: UInt32.self)
        } else {
            p.storeBytes(of: hi.bigEndian, as: UInt64.self)
            p.storeBytes(of: lo.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
    }

    public var byteCount: Int { isV4 ? 4 : 16 }

    /// Keep the first `bits` bits (a prefix length).
    public func masked(prefix bits: Int) -> IPAddress {
        if isV4 {
            let m: UInt32 = bits <= 0 ? 0 : (bits >= 32 ? ~0 : ~((1 << UInt32(32 - bits)) - 1))
            return IPAddress(v4: v4 & m)
        }
        func mask64(_ b: Int) -> UInt64 { b <= 0 ? 0 : (b >= 64 ? ~0 : ~((1 << UInt64(64 - b)) - 1)) }
        return IPAddress(hi: hi & mask64(bits), lo: lo & mask64(bits - 64), family: .inet6)
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        if a.family != b.family { return a.family.rawValue < b.family.rawValue }
        return (a.hi, a.lo) < (b.hi, b.lo)
    }

    public var description: String {
        if isV4 {
            let v = v4
            return "\(v >> 24).\((v >> 16) & 255).\((v >> 8) & 255).\(v & 255)"
        }
        return IPAddress.formatV6(hi: hi, lo: lo)
    }

    /// RFC 5952 text: lower case, longest run (>= 2) of zero groups as "::".
    static func formatV6(hi: UInt64, lo: UInt64) -> String {
        var groups = [UInt16]()
        for i in 0..<4 { groups.append(UInt16(truncatingIfNeeded: hi >> UInt64(48 - 16 * i))) }
        for i in 0..<4 { groups.append(UInt16(truncatingIfNeeded: lo >> UInt64(48 - 16 * i))) }
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLen { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        if bestLen < 2 { bestStart = -1 }
        // IPv4-mapped addresses print their tail as dotted quad, as inet_ntop does.
        if hi == 0 && (lo >> 32) == 0xFFFF {
            let v = UInt32(truncatingIfNeeded: lo)
            return "::ffff:\(v >> 24).\((v >> 16) & 255).\((v >> 8) & 255).\(v & 255)"
        }
        var out = ""
        var k = 0
        while k < 8 {
            if k == bestStart {
                out += "::"
                k += bestLen
                continue
            }
            if !out.isEmpty && !out.hasSuffix(":") { out += ":" }
            out += String(groups[k], radix: 16)
            k += 1
        }
        return out
    }

    /// Parse dotted-quad IPv4 or textual IPv6 (no brackets, no zone).
    public init?(_ text: Substring) { self.init(String(text)) }

    public init?(_ text: String) {
        if text.contains(":") {
            guard let (h, l) = IPAddress.parseV6(text) else { return nil }
            self.init(hi: h, lo: l, family: .inet6)
        } else {
            guard let v = IPAddress.parseV4(text) else { return nil }
            self.init(v4: v)
        }
    }

    static func parseV4(_ s: String) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let n = UInt32(p), n <= 255 else { return nil }
            v = (v << 8) | n
        }
        return v
    }

    static func parseV6(_ s: String) -> (UInt64, UInt64)? {
        var groups = [UInt16]()
        var tailGroups = [UInt16]()
        // Split at the one "::" allowed (no Foundation here).
        var halves = [String]()
        let chars = Array(s)
        var cut: [Int] = []
        var k = 0
        while k + 1 < chars.count {
            if chars[k] == ":" && chars[k + 1] == ":" { cut.append(k); k += 2 } else { k += 1 }
        }
        guard cut.count <= 1 else { return nil }
        if let c = cut.first {
            halves = [String(chars[..<c]), String(chars[(c + 2)...])]
        } else {
            halves = [s]
        }
        func parseGroups(_ part: String, allowV4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out = [UInt16]()
            let items = part.split(separator: ":", omittingEmptySubsequences: false)
            for (idx, item) in items.enumerated() {
                if allowV4Tail && idx == items.count - 1 && item.contains(".") {
                    guard let v = parseV4(String(item)) else { return nil }
                    out.append(UInt16(v >> 16)); out.append(UInt16(v & 0xFFFF))
                    continue
                }
                guard !item.isEmpty, item.count <= 4, let g = UInt16(item, radix: 16) else { return nil }
                out.append(g)
            }
            return out
        }
        if halves.count == 2 {
            guard let a = parseGroups(halves[0], allowV4Tail: false),
                  let b = parseGroups(halves[1], allowV4Tail: true), a.count + b.count <= 7 else { return nil }
            groups = a; tailGroups = b
            groups += [UInt16](repeating: 0, count: 8 - a.count - b.count) + tailGroups
        } else {
            guard let a = parseGroups(halves[0], allowV4Tail: true), a.count == 8 else { return nil }
            groups = a
        }
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<4 { h = (h << 16) | UInt64(groups[i]) }
        for i in 4..<8 { l = (l << 16) | UInt64(groups[i]) }
        return (h, l)
    }
}
