// printf-style helpers, the C library's address text, and ipvsadm's sort.

import IPVS

// MARK: - printf pieces

/// `%-Ns`: left-justified, padded with spaces, never truncated.
@inline(__always) func ljust(_ s: String, _ width: Int) -> String {
    let n = s.count
    return n >= width ? s : s + String(repeating: " ", count: width - n)
}

/// `%Ns` / `%Nu`: right-justified.
@inline(__always) func rjust(_ s: String, _ width: Int) -> String {
    let n = s.count
    return n >= width ? s : String(repeating: " ", count: width - n) + s
}

/// The first `n` characters (C string truncation by writing a NUL).
@inline(__always) func truncated(_ s: String, _ n: Int) -> String {
    s.count > n ? String(s.prefix(n)) : s
}

// MARK: - Address text

/// `inet_ntop` text: dotted quad for IPv4; for IPv6 glibc's form (lower-case
/// hex, the first longest run of two or more zero groups as "::", and a
/// dotted-quad tail for IPv4-mapped and IPv4-compatible addresses).
public func inetNtop(_ a: IPAddress) -> String {
    if a.isV4 {
        let v = a.v4
        return "\(v >> 24).\((v >> 16) & 255).\((v >> 8) & 255).\(v & 255)"
    }
    var words = [UInt16](repeating: 0, count: 8)
    for i in 0..<4 { words[i] = UInt16(truncatingIfNeeded: a.hi >> UInt64(48 - 16 * i)) }
    for i in 0..<4 { words[4 + i] = UInt16(truncatingIfNeeded: a.lo >> UInt64(48 - 16 * i)) }
    var bestBase = -1, bestLen = 0, curBase = -1, curLen = 0
    for i in 0..<8 {
        if words[i] == 0 {
            if curBase == -1 { curBase = i; curLen = 1 } else { curLen += 1 }
        } else if curBase != -1 {
            if bestBase == -1 || curLen > bestLen { bestBase = curBase; bestLen = curLen }
            curBase = -1
        }
    }
    if curBase != -1 && (bestBase == -1 || curLen > bestLen) { bestBase = curBase; bestLen = curLen }
    if bestBase != -1 && bestLen < 2 { bestBase = -1 }
    var out = ""
    var i = 0
    while i < 8 {
        if bestBase != -1 && i >= bestBase && i < bestBase + bestLen {
            if i == bestBase { out += ":" }
            i += 1
            continue
        }
        if i != 0 { out += ":" }
        if i == 6 && bestBase == 0 && (bestLen == 6 || (bestLen == 5 && words[5] == 0xFFFF)) {
            let v = UInt32(truncatingIfNeeded: a.lo)
            out += "\(v >> 24).\((v >> 16) & 255).\((v >> 8) & 255).\(v & 255)"
            return out
        }
        out += String(words[i], radix: 16)
        i += 1
    }
    if bestBase != -1 && bestBase + bestLen == 8 { out += ":" }
    return out
}

/// ipvsadm's addrport_to_anyname: `a.b.c.d:port` or `[v6]:port`; without
/// `numeric` the port is named from the services table when it can be
/// (addresses stay numeric: Switchyard does no reverse DNS).
func addrPortText(_ a: IPAddress, _ port: UInt16, proto: IPProtocol, numeric: Bool,
                  names: NameResolver) -> String {
    let host = a.isV4 ? inetNtop(a) : "[\(inetNtop(a))]"
    if !numeric, let name = names.serviceName(forPort: port, proto: proto) {
        return "\(host):\(name)"
    }
    return "\(host):\(port)"
}

// MARK: - Sorting (libipvs ipvs_cmp_services / ipvs_cmp_dests, glibc qsort)

/// The four 32-bit words (host order) of `union nf_inet_addr`: an IPv4
/// address sits in the first word, the others are zero.
func unionWords(_ a: IPAddress) -> (UInt32, UInt32, UInt32, UInt32) {
    a.isV4 ? (a.v4, 0, 0, 0) : a.v6Words
}

/// `(int)(ntohl(a) - ntohl(b))`, word by word for IPv6 (first non-zero).
/// `family` is the first entry's (a tunnel dest may differ from its peers).
func addressDifference(_ a: IPAddress, _ b: IPAddress, family: AddressFamily) -> Int32 {
    let wa = unionWords(a), wb = unionWords(b)
    if family == .inet6 {
        for (x, y) in [(wa.0, wb.0), (wa.1, wb.1), (wa.2, wb.2), (wa.3, wb.3)] {
            let r = Int32(bitPattern: x &- y)
            if r != 0 { return r }
        }
        return 0
    }
    return Int32(bitPattern: wa.0 &- wb.0)
}

/// ipvs_cmp_services: fwmark, af, protocol, address, port; every
/// difference taken as a wrapped C int.
public func compareServices(_ s1: Service, _ s2: Service) -> Int32 {
    var r = Int32(bitPattern: s1.fwmark &- s2.fwmark)
    if r != 0 { return r }
    r = Int32(s1.family.rawValue) - Int32(s2.family.rawValue)
    if r != 0 { return r }
    r = Int32(protocolNumber(s1)) - Int32(protocolNumber(s2))
    if r != 0 { return r }
    r = addressDifference(serviceAddress(s1), serviceAddress(s2), family: s1.family)
    if r != 0 { return r }
    return Int32(s1.port) - Int32(s2.port)
}

/// ipvs_cmp_dests: address (by the first dest's family), then port.
public func compareDests(_ d1: Dest, _ d2: Dest) -> Int32 {
    let r = addressDifference(d1.addr, d2.addr, family: d1.addr.family)
    if r != 0 { return r }
    return Int32(d1.port) - Int32(d2.port)
}

/// The protocol ipvsadm sees: fwmark services report what -f set (TCP).
func protocolNumber(_ s: Service) -> UInt8 {
    if case .address(let p, _, _) = s.key { return p.rawValue }
    return IPProtocol.tcp.rawValue
}

func serviceAddress(_ s: Service) -> IPAddress {
    if case .address(_, let a, _) = s.key { return a }
    return IPAddress(hi: 0, lo: 0, family: s.family)
}

/// glibc 2.36 `qsort` for arrays that fit its temporary buffer: a top-down
/// merge sort (`msort_with_tmp`) that takes from the left run while
/// `cmp(left, right) <= 0`. Reproducing it exactly matters because ipvsadm's
/// comparators are not transitive when addresses are 2^31 or more apart.
public func glibcMergeSort<T>(_ items: [T], _ cmp: (T, T) -> Int32) -> [T] {
    var a = items
    var tmp = items
    func sort(_ lo: Int, _ n: Int) {
        if n <= 1 { return }
        let n1 = n / 2, n2 = n - n1
        sort(lo, n1)
        sort(lo + n1, n2)
        var i = lo, j = lo + n1, k = 0
        let iEnd = lo + n1, jEnd = lo + n
        while i < iEnd && j < jEnd {
            if cmp(a[i], a[j]) <= 0 { tmp[k] = a[i]; i += 1 } else { tmp[k] = a[j]; j += 1 }
            k += 1
        }
        while i < iEnd { tmp[k] = a[i]; i += 1; k += 1 }
        for m in 0..<k { a[lo + m] = tmp[m] }
    }
    sort(0, a.count)
    return a
}
