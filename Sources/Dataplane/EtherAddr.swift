// A MAC address as the data plane stores it: six bytes packed in a UInt64
// (first byte in the most significant used position), cheap to copy.

public struct EtherAddr: Hashable, Sendable, CustomStringConvertible {
    public var bits: UInt64

    public init(bits: UInt64) { self.bits = bits & 0xFFFF_FFFF_FFFF }

    public init(bytes b: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) {
        bits = UInt64(b.0) << 40 | UInt64(b.1) << 32 | UInt64(b.2) << 24 | UInt64(b.3) << 16 | UInt64(b.4) << 8 | UInt64(b.5)
    }

    /// "aa:bb:cc:dd:ee:ff" (also with '-').
    public init?(_ text: String) {
        let parts = text.split(whereSeparator: { $0 == ":" || $0 == "-" })
        guard parts.count == 6 else { return nil }
        var v: UInt64 = 0
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            v = (v << 8) | UInt64(b)
        }
        bits = v
    }

    @inline(__always)
    public func store(to p: UnsafeMutableRawPointer) {
        for i in 0..<6 { p.storeBytes(of: UInt8(truncatingIfNeeded: bits >> UInt64(40 - 8 * i)), toByteOffset: i, as: UInt8.self) }
    }

    @inline(__always)
    public static func load(from p: UnsafeRawPointer) -> EtherAddr {
        var v: UInt64 = 0
        for i in 0..<6 { v = (v << 8) | UInt64(p.load(fromByteOffset: i, as: UInt8.self)) }
        return EtherAddr(bits: v)
    }

    public var description: String {
        (0..<6).map { i -> String in
            let b = UInt8(truncatingIfNeeded: bits >> UInt64(40 - 8 * i))
            return b < 16 ? "0" + String(b, radix: 16) : String(b, radix: 16)
        }.joined(separator: ":")
    }
}
