// MD5 (RFC 1321), for HTTP_GET/SSL_GET `digest`: keepalived compares the
// lower-case hex MD5 of the response body with the configured value.
// Written from the RFC's description; checked against its test suite
// (Tests/ControlTests/MD5Tests.swift).

public struct MD5 {
    private var state: (UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476)
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0   // bytes hashed so far

    public init() { buffer.reserveCapacity(64) }

    /// Per-round left-rotation amounts (RFC 1321 §3.4).
    private static let shifts: [UInt32] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
        5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
        4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
        6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ]

    /// T[i] = floor(2^32 × |sin(i + 1)|), computed once.
    private static let table: [UInt32] = (0..<64).map { i in
        let s = sin(Double(i + 1))
        return UInt32(truncatingIfNeeded: Int64((s < 0 ? -s : s) * 4_294_967_296.0))
    }

    public mutating func update<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        for b in bytes {
            buffer.append(b)
            length &+= 1
            if buffer.count == 64 {
                compress(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
    }

    public mutating func update(_ text: String) { update(text.utf8) }

    /// The 16-byte digest; the hasher should not be used afterwards.
    public mutating func finish() -> [UInt8] {
        let bits = length &* 8
        var pad: [UInt8] = [0x80]
        let rem = (buffer.count + 1) % 64
        pad += [UInt8](repeating: 0, count: rem <= 56 ? 56 - rem : 120 - rem)
        for i in 0..<8 { pad.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
        let saved = length
        update(pad)
        length = saved
        var out: [UInt8] = []
        for w in [state.0, state.1, state.2, state.3] {
            for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(i)))) }
        }
        return out
    }

    private mutating func compress(_ block: [UInt8]) {
        var x = [UInt32](repeating: 0, count: 16)
        for i in 0..<16 {
            x[i] = UInt32(block[4 * i]) | UInt32(block[4 * i + 1]) << 8
                | UInt32(block[4 * i + 2]) << 16 | UInt32(block[4 * i + 3]) << 24
        }
        var (a, b, c, d) = state
        for i in 0..<64 {
            var f: UInt32
            var g: Int
            switch i >> 4 {
            case 0: f = (b & c) | (~b & d); g = i
            case 1: f = (d & b) | (~d & c); g = (5 * i + 1) & 15
            case 2: f = b ^ c ^ d; g = (3 * i + 5) & 15
            default: f = c ^ (b | ~d); g = (7 * i) & 15
            }
            f = f &+ a &+ MD5.table[i] &+ x[g]
            a = d
            d = c
            c = b
            let s = MD5.shifts[i]
            b = b &+ ((f << s) | (f >> (32 - s)))
        }
        state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d)
    }

    /// Lower-case hex MD5 of some bytes.
    public static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var h = MD5()
        h.update(bytes)
        return hexString(h.finish())
    }

    public static func hex(_ text: String) -> String { hex(Array(text.utf8)) }

    static func hexString(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        var s = ""
        for b in bytes {
            s.append(digits[Int(b >> 4)])
            s.append(digits[Int(b & 15)])
        }
        return s
    }
}

#if canImport(Glibc)
import Glibc
#endif
