// Helpers shared by the schedulers: the kernel's hash_32, hsiphash as it is
// on 64-bit kernels (SipHash-1-3), gcd, and the weighted-least-connection
// pick used by wlc, lblc and lblcr.

public enum SchedHash {
    /// `hash_32(v, bits)` of include/linux/hash.h (GOLDEN_RATIO_32 multiply,
    /// keep the top `bits` bits).
    @inlinable
    public static func hash32(_ value: UInt32, bits: UInt32) -> UInt32 {
        (value &* 0x61C8_8647) >> (32 &- bits)
    }

    @usableFromInline @inline(__always)
    static func rotl(_ x: UInt64, _ b: UInt64) -> UInt64 { (x << b) | (x >> (64 &- b)) }

    /// hsiphash of a 4-byte value on a 64-bit kernel: SipHash with one
    /// compression round and three finalisation rounds over the value's
    /// little-endian bytes, keyed by two u64 words, the u64 result
    /// truncated to u32.
    @inlinable
    public static func hsiphash32(_ value: UInt32, key0: UInt64, key1: UInt64) -> UInt32 {
        var v0: UInt64 = 0x736f_6d65_7073_6575 ^ key0
        var v1: UInt64 = 0x646f_7261_6e64_6f6d ^ key1
        var v2: UInt64 = 0x6c79_6765_6e65_7261 ^ key0
        var v3: UInt64 = 0x7465_6462_7974_6573 ^ key1
        // Length 4 goes in the top byte, the 4 bytes in the low ones.
        let b: UInt64 = (UInt64(4) << 56) | UInt64(value)
        @inline(__always) func round() {
            v0 &+= v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
            v2 &+= v3; v3 = rotl(v3, 16); v3 ^= v2
            v0 &+= v3; v3 = rotl(v3, 21); v3 ^= v0
            v2 &+= v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
        }
        v3 ^= b
        round()
        v0 ^= b
        v2 ^= 0xff
        round(); round(); round()
        return UInt32(truncatingIfNeeded: (v0 ^ v1) ^ (v2 ^ v3))
    }

    public static func gcd(_ a: Int32, _ b: Int32) -> Int32 {
        var x = a, y = b
        while y != 0 { (x, y) = (y, x % y) }
        return x
    }
}

/// The first dest, in list order, that is neither OVERLOAD nor weight 0
    /// starts; a later one replaces it when `loh * w(d) > doh * w(least)`
    /// (weighted least-connection, shared by wlc, lblc and lblcr).
@inline(__always)
func weightedLeastConnection(_ dests: [Dest]) -> Dest? {
        var least: Dest? = nil
        var loh: Int64 = 0
        var lw: Int64 = 0
        for d in dests {
            if d.isOverloaded { continue }
            if let _ = least {
                let doh = d.connOverhead
                let dw = Int64(d.weight)
                if loh * dw > doh * lw {
                    least = d; loh = doh; lw = dw
                }
            } else if d.weight > 0 {
                least = d; loh = d.connOverhead; lw = Int64(d.weight)
            }
        }
    return least
}

/// Locality schedulers' address fold plus bucket hash (lblc, lblcr, dh).
@inline(__always)
func localityBucket(_ addr: IPAddress, bits: UInt32) -> Int {
    Int(SchedHash.hash32(addr.folded, bits: bits))
}
