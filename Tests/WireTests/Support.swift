// Test-side packet construction and independent reference computations.
// Deliberately plain: arrays and byte-by-byte loops, no code shared with Wire.
import XCTest
@testable import Wire

/// A deterministic generator, so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum Ref {
    /// Plain RFC 1071 sum of big-endian 16-bit words, folded.
    static func sum(_ b: [UInt8], _ initial: UInt32 = 0) -> UInt32 {
        var s: UInt64 = UInt64(initial)
        var i = 0
        while i < b.count {
            let hi = UInt64(b[i])
            let lo: UInt64 = i + 1 < b.count ? UInt64(b[i + 1]) : 0
            s += hi << 8 | lo
            i += 2
        }
        while s > 0xFFFF { s = (s & 0xFFFF) + (s >> 16) }
        return UInt32(s)
    }
    static func checksum(_ b: [UInt8], _ initial: UInt32 = 0) -> UInt16 { ~UInt16(sum(b, initial)) }

    static func be16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) << 8 | UInt16(b[o + 1]) }
    static func be32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }
    static func put16(_ b: inout [UInt8], _ o: Int, _ v: UInt16) { b[o] = UInt8(v >> 8); b[o + 1] = UInt8(v & 0xFF) }
    static func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) {
        for k in 0..<4 { b[o + k] = UInt8((v >> UInt32(24 - 8 * k)) & 0xFF) }
    }

    /// Pseudo-header bytes, built the long way.
    static func pseudo(src: [UInt8], dst: [UInt8], proto: UInt8, length: Int) -> [UInt8] {
        if src.count == 4 {
            return src + dst + [0, proto, UInt8(length >> 8), UInt8(length & 0xFF)]
        }
        return src + dst + [UInt8((length >> 24) & 0xFF), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF),
                            UInt8(length & 0xFF), 0, 0, 0, proto]
    }

    /// Verifies IPv4 header checksum at l3 in `f`.
    static func ipv4HeaderOK(_ f: [UInt8], l3: Int) -> Bool {
        let ihl = Int(f[l3] & 15) * 4
        return sum(Array(f[l3..<l3 + ihl])) == 0xFFFF
    }

    /// Recomputes the L4 checksum for an unfragmented IPv4/IPv6 packet from
    /// scratch (checksum field zeroed) and returns it, with the offset of the field.
    static func l4Checksum(_ f: [UInt8], l3: Int, l4: Int, proto: UInt8, end: Int) -> (value: UInt16, field: Int) {
        let v6 = f[l3] >> 4 == 6
        let field: Int
        switch proto {
        case 6: field = 16
        case 17: field = 6
        default: field = 2
        }
        var seg = Array(f[l4..<end])
        if proto == 17 { seg = Array(seg[0..<Int(be16(seg, 4))]) }
        seg[field] = 0; seg[field + 1] = 0
        var ph: [UInt8] = []
        if proto != 1 {
            let src = v6 ? Array(f[l3 + 8..<l3 + 24]) : Array(f[l3 + 12..<l3 + 16])
            let dst = v6 ? Array(f[l3 + 24..<l3 + 40]) : Array(f[l3 + 16..<l3 + 20])
            ph = pseudo(src: src, dst: dst, proto: proto, length: seg.count)
        }
        var c = checksum(ph + seg)
        if proto == 17 && c == 0 { c = 0xFFFF }
        return (c, l4 + field)
    }
}

/// Frame builders.
enum B {
    static let macA: [UInt8] = [0x02, 0, 0, 0, 0, 0x0A]
    static let macB: [UInt8] = [0x02, 0, 0, 0, 0, 0x0B]

    static func v4(_ s: String) -> [UInt8] {
        s.split(separator: ".").map { UInt8($0)! }
    }
    static func v6(_ s: String) -> [UInt8] {
        let a = IPAddress(s)!
        var out: [UInt8] = []
        for k in 0..<8 { out.append(UInt8((a.hi >> UInt64(56 - 8 * k)) & 0xFF)) }
        for k in 0..<8 { out.append(UInt8((a.lo >> UInt64(56 - 8 * k)) & 0xFF)) }
        return out
    }

    static func eth(type: UInt16, vlans: [UInt16] = [], tpids: [UInt16]? = nil) -> [UInt8] {
        var f = macB + macA
        for (k, tci) in vlans.enumerated() {
            let tpid = tpids?[k] ?? (vlans.count == 2 && k == 0 ? 0x88A8 : 0x8100)
            f += [UInt8(tpid >> 8), UInt8(tpid & 0xFF), UInt8(tci >> 8), UInt8(tci & 0xFF)]
        }
        return f + [UInt8(type >> 8), UInt8(type & 0xFF)]
    }

    static func tcp(sport: UInt16, dport: UInt16, flags: UInt8 = 0x18, payload: [UInt8] = [], options: [UInt8] = []) -> [UInt8] {
        let doff = (20 + options.count) / 4
        var h: [UInt8] = [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF),
                          0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0, UInt8(doff << 4), flags, 0xFF, 0xFF, 0, 0, 0, 0]
        h += options
        return h + payload
    }
    static func udp(sport: UInt16, dport: UInt16, payload: [UInt8] = []) -> [UInt8] {
        let l = 8 + payload.count
        return [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF),
                UInt8(l >> 8), UInt8(l & 0xFF), 0, 0] + payload
    }
    static func icmp(type: UInt8, code: UInt8 = 0, rest: [UInt8] = [0, 1, 0, 2], payload: [UInt8] = []) -> [UInt8] {
        [type, code, 0, 0] + rest + payload
    }
    static func sctp(sport: UInt16, dport: UInt16, payload: [UInt8] = []) -> [UInt8] {
        [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF), 1, 2, 3, 4, 0, 0, 0, 0] + payload
    }

    /// IPv4 packet with correct header checksum and (unless fragmented or
    /// `l4Checksum` false) correct L4 checksum.
    static func ipv4(src: String = "10.0.0.1", dst: String = "192.168.1.10", proto: UInt8, l4: [UInt8],
                     ttl: UInt8 = 64, tos: UInt8 = 0, id: UInt16 = 0x1234, df: Bool = true, mf: Bool = false,
                     fragOffset: Int = 0, options: [UInt8] = [], l4Checksum: Bool = true) -> [UInt8] {
        let ihl = 20 + options.count
        let total = ihl + l4.count
        var h: [UInt8] = [UInt8(0x40 | ihl / 4), tos, UInt8(total >> 8), UInt8(total & 0xFF),
                          UInt8(id >> 8), UInt8(id & 0xFF), 0, 0, ttl, proto, 0, 0]
        let ff = UInt16(df ? 0x4000 : 0) | UInt16(mf ? 0x2000 : 0) | UInt16(fragOffset / 8)
        Ref.put16(&h, 6, ff)
        h += v4(src) + v4(dst) + options
        Ref.put16(&h, 10, Ref.checksum(h))
        var p = h + l4
        if l4Checksum && !mf && fragOffset == 0 && (proto == 6 || proto == 17 || proto == 1) {
            let (c, field) = Ref.l4Checksum(p, l3: 0, l4: ihl, proto: proto, end: p.count)
            Ref.put16(&p, field, c)
        }
        return p
    }

    /// IPv6 packet; `ext` is a list of (header type, body) where body
    /// excludes the next-header byte and is padded by the caller.
    static func ipv6(src: String = "2001:db8::1", dst: String = "2001:db8:1::10", nh: UInt8, l4: [UInt8],
                     hop: UInt8 = 64, tc: UInt8 = 0, ext: [(UInt8, [UInt8])] = [], l4Checksum: Bool = true) -> [UInt8] {
        var extBytes: [UInt8] = []
        var firstNH = nh
        if !ext.isEmpty {
            firstNH = ext[0].0
            for (k, e) in ext.enumerated() {
                let next = k + 1 < ext.count ? ext[k + 1].0 : nh
                extBytes += [next] + e.1
            }
        }
        let plen = extBytes.count + l4.count
        var h: [UInt8] = [0x60 | (tc >> 4), (tc & 0xF) << 4, 0, 0, UInt8(plen >> 8), UInt8(plen & 0xFF), firstNH, hop]
        h += v6(src) + v6(dst)
        var p = h + extBytes + l4
        let fragmented = ext.contains { $0.0 == 44 && (Ref.be16([0] + $0.1, 2) & 0xFFF9) != 0 }
        if l4Checksum && !fragmented && (nh == 6 || nh == 17 || nh == 58) {
            let (c, field) = Ref.l4Checksum(p, l3: 0, l4: 40 + extBytes.count, proto: nh, end: p.count)
            Ref.put16(&p, field, c)
        }
        return p
    }

    /// Generic extension header body of total length 8*n (first byte = len).
    static func extBody(units: Int) -> [UInt8] {
        [UInt8(units - 1)] + [UInt8](repeating: 0, count: 8 * units - 2)
    }
    static func fragBody(offset: Int, mf: Bool, id: UInt32 = 0xABCD) -> [UInt8] {
        let w = UInt16(offset) | (mf ? 1 : 0)
        return [0, UInt8(w >> 8), UInt8(w & 0xFF), UInt8(id >> 24), UInt8((id >> 16) & 0xFF), UInt8((id >> 8) & 0xFF), UInt8(id & 0xFF)]
    }
    static func ahBody(words: Int) -> [UInt8] {  // total length (words+2)*4
        [UInt8(words)] + [UInt8](repeating: 0x11, count: (words + 2) * 4 - 2)
    }

    static func arp(op: UInt16 = 1) -> [UInt8] {
        eth(type: 0x0806) + [0, 1, 8, 0, 6, 4, 0, UInt8(op)] + macA + v4("10.0.0.1") + [0, 0, 0, 0, 0, 0] + v4("10.0.0.2")
    }
}

/// Runs `body` with the bytes in an exact-size heap allocation (so ASan
/// catches any access past the end) and returns the bytes afterwards.
@discardableResult
func withExact(_ bytes: [UInt8], _ body: (UnsafeMutableRawPointer, Int) -> Void) -> [UInt8] {
    let n = bytes.count
    let p = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1), alignment: 1)
    defer { p.deallocate() }
    bytes.withUnsafeBytes { if n > 0 { p.copyMemory(from: $0.baseAddress!, byteCount: n) } }
    body(p, n)
    return Array(UnsafeRawBufferPointer(start: p, count: n))
}

func parse(_ bytes: [UInt8]) -> (ParseResult, PacketInfo) {
    var info = PacketInfo()
    var r = ParseResult.ok
    withExact(bytes) { p, n in r = parseFrame(p, length: n, into: &info) }
    return (r, info)
}

func addrBytes(_ a: IPAddress) -> [UInt8] {
    a.isV4 ? B.v4(a.description) : B.v6(a.description)
}

func randomV4(_ g: inout SplitMix) -> IPAddress { IPAddress(v4: UInt32.random(in: 0...UInt32.max, using: &g)) }
func randomV6(_ g: inout SplitMix) -> IPAddress {
    IPAddress(hi: UInt64.random(in: 0...UInt64.max, using: &g), lo: UInt64.random(in: 0...UInt64.max, using: &g), family: .inet6)
}
func randomBytes(_ n: Int, _ g: inout SplitMix) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) } }
