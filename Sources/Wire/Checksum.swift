// The internet checksum (RFC 1071) and its incremental update (RFC 1624).
//
// Conventions: a "sum" is a one's-complement sum folded to 16 bits and held
// in a UInt32 as the host-order value of the big-endian 16-bit words, so sums
// can be added together and folded again. A "checksum" is the complemented
// folded sum as it appears in a header, read as a host-order UInt16.

public enum Checksum {
    /// Folds a 64-bit accumulator of 16-bit words down to 16 bits.
    @inlinable @inline(__always)
    public static func fold(_ x: UInt64) -> UInt32 {
        var s = (x >> 32) &+ (x & 0xFFFF_FFFF)
        s = (s >> 32) &+ (s & 0xFFFF_FFFF)
        s = (s >> 16) &+ (s & 0xFFFF)
        s = (s >> 16) &+ (s & 0xFFFF)
        s = (s >> 16) &+ (s & 0xFFFF)
        return UInt32(truncatingIfNeeded: s)
    }

    /// One's-complement sum of `length` bytes at `p` (an odd trailing byte is
    /// padded with a zero byte), plus `initial`, folded to 16 bits.
    @inlinable
    public static func sum(_ p: UnsafeRawPointer, _ length: Int, _ initial: UInt32 = 0) -> UInt32 {
        // Accumulate native-order words: the one's-complement sum does not
        // depend on byte order, so one swap at the end gives the big-endian sum.
        var acc: UInt64 = 0
        var i = 0
        while i + 32 <= length {
            let a = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let b = p.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
            let c = p.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)
            let d = p.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)
            var (s, o) = acc.addingReportingOverflow(a)
            acc = s &+ (o ? 1 : 0)
            (s, o) = acc.addingReportingOverflow(b)
            acc = s &+ (o ? 1 : 0)
            (s, o) = acc.addingReportingOverflow(c)
            acc = s &+ (o ? 1 : 0)
            (s, o) = acc.addingReportingOverflow(d)
            acc = s &+ (o ? 1 : 0)
            i += 32
        }
        while i + 8 <= length {
            let (s, o) = acc.addingReportingOverflow(p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            acc = s &+ (o ? 1 : 0)
            i += 8
        }
        var tail: UInt64 = 0
        if i + 4 <= length {
            tail &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            i += 4
        }
        if i + 2 <= length {
            tail &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i += 2
        }
        if i < length {
            let b = UInt64(p.load(fromByteOffset: i, as: UInt8.self))
            #if _endian(little)
            tail &+= b
            #else
            tail &+= b << 8
            #endif
        }
        let (s, o) = acc.addingReportingOverflow(tail)
        acc = s &+ (o ? 1 : 0)
        let native = UInt16(truncatingIfNeeded: fold(acc))
        return fold(UInt64(UInt16(bigEndian: native)) &+ UInt64(initial))
    }

    /// Adds two sums.
    @inlinable @inline(__always)
    public static func add(_ a: UInt32, _ b: UInt32) -> UInt32 {
        fold(UInt64(a) &+ UInt64(b))
    }

    /// The checksum field value for a folded sum.
    @inlinable @inline(__always)
    public static func finish(_ s: UInt32) -> UInt16 {
        ~UInt16(truncatingIfNeeded: fold(UInt64(s)))
    }

    /// RFC 1071 checksum of `length` bytes (the value to store in a zeroed field).
    @inlinable
    public static func internet(_ p: UnsafeRawPointer, length: Int) -> UInt16 {
        finish(sum(p, length))
    }

    /// True when `length` bytes, checksum field included, sum to all ones.
    @inlinable
    public static func verify(_ p: UnsafeRawPointer, length: Int) -> Bool {
        sum(p, length) == 0xFFFF
    }

    /// The 16-bit sum of an address (2 or 8 words).
    @inlinable @inline(__always)
    public static func sum(_ a: IPAddress) -> UInt32 {
        if a.family == .inet6 {
            return fold(UInt64(fold(a.hi)) &+ UInt64(fold(a.lo)))
        }
        return fold(a.lo & 0xFFFF_FFFF)
    }

    /// Pseudo-header sum for TCP/UDP/ICMPv6: addresses, protocol and the
    /// upper-layer length (RFC 768/793 for IPv4, RFC 8200 §8.1 for IPv6).
    @inlinable @inline(__always)
    public static func pseudoHeader(source: IPAddress, destination: IPAddress, proto: UInt8, length: Int) -> UInt32 {
        let l = UInt64(UInt32(truncatingIfNeeded: length))
        return fold(UInt64(sum(source)) &+ UInt64(sum(destination)) &+ UInt64(proto) &+ (l >> 16) &+ (l & 0xFFFF))
    }

    /// Pseudo-header sum read straight from the IP header at `l3`.
    @inlinable @inline(__always)
    public static func pseudoHeader(_ p: UnsafeRawPointer, l3: Int, isV6: Bool, proto: UInt8, length: Int) -> UInt32 {
        let l = UInt64(UInt32(truncatingIfNeeded: length))
        let a: UInt32 = isV6 ? sum(p + l3 + 8, 32) : sum(p + l3 + 12, 8)
        return fold(UInt64(a) &+ UInt64(proto) &+ (l >> 16) &+ (l & 0xFFFF))
    }

    // MARK: incremental update, RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')

    /// New checksum after data whose sum was `oldSum` became data whose sum
    /// is `newSum`.
    @inlinable @inline(__always)
    public static func adjust(_ check: UInt16, oldSum: UInt32, newSum: UInt32) -> UInt16 {
        let notOld = UInt64(~UInt16(truncatingIfNeeded: fold(UInt64(oldSum))))
        return ~UInt16(truncatingIfNeeded: fold(UInt64(~check) &+ notOld &+ UInt64(newSum)))
    }

    /// A 16-bit field changed from `old` to `new`.
    @inlinable @inline(__always)
    public static func update16(_ check: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        ~UInt16(truncatingIfNeeded: fold(UInt64(~check) &+ UInt64(~old) &+ UInt64(new)))
    }

    /// A 32-bit field (say an IPv4 address) changed from `old` to `new`.
    @inlinable @inline(__always)
    public static func update32(_ check: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        let o = ~old
        let x = UInt64(~check) &+ UInt64(o >> 16) &+ UInt64(o & 0xFFFF) &+ UInt64(new >> 16) &+ UInt64(new & 0xFFFF)
        return ~UInt16(truncatingIfNeeded: fold(x))
    }

    /// An address (4 or 16 bytes) changed from `old` to `new`.
    @inlinable @inline(__always)
    public static func updateAddress(_ check: UInt16, old: IPAddress, new: IPAddress) -> UInt16 {
        adjust(check, oldSum: sum(old), newSum: sum(new))
    }

    // MARK: header-level helpers

    /// Computes and stores the IPv4 header checksum of the header at `l3`
    /// (length from its IHL).
    @inlinable
    public static func setIPv4Header(_ p: UnsafeMutableRawPointer, l3: Int) {
        let ihl = Int(rd8(p, l3) & 0x0F) * 4
        wr16(p, l3 + 10, 0)
        wr16(p, l3 + 10, internet(p + l3, length: ihl))
    }

    /// True when the IPv4 header at `l3` (IHL bytes, which the caller has
    /// bounds-checked, as `parseFrame` does) has a valid checksum.
    @inlinable
    public static func verifyIPv4Header(_ p: UnsafeRawPointer, l3: Int) -> Bool {
        let ihl = Int(rd8(p, l3) & 0x0F) * 4
        return verify(p + l3, length: ihl)
    }

    /// Bytes covered by the L4 checksum of a parsed packet: the UDP length
    /// for UDP, otherwise the rest of the IP packet from `l4Offset`.
    @inlinable @inline(__always)
    public static func l4Length(_ p: UnsafeRawPointer, _ info: PacketInfo) -> Int {
        if info.l4Proto == IPProto.udp { return Int(rd16(p, info.l4Offset + 4)) }
        return info.l3Offset + info.ipTotalLength - info.l4Offset
    }

    /// Offset of the L4 checksum field from the L4 header, or -1 when the
    /// protocol has no internet checksum we maintain.
    @inlinable @inline(__always)
    public static func l4ChecksumField(proto: UInt8, isV6: Bool) -> Int {
        switch proto {
        case IPProto.tcp: return 16
        case IPProto.udp: return 6
        case IPProto.icmp: return isV6 ? -1 : 2
        case IPProto.icmpv6: return isV6 ? 2 : -1
        default: return -1
        }
    }

    /// The full L4 checksum (TCP, UDP, ICMP, ICMPv6) of a parsed,
    /// unfragmented packet, computed with the checksum field taken as zero.
    /// Returns nil for other protocols or when the packet is a fragment.
    /// For UDP a result of 0 is returned as 0xFFFF.
    @inlinable
    public static func computeL4(_ p: UnsafeRawPointer, _ info: PacketInfo) -> UInt16? {
        guard info.hasL4Header, !info.isFragment else { return nil }
        let isV6 = info.ipVersion == 6
        let field = l4ChecksumField(proto: info.l4Proto, isV6: isV6)
        guard field >= 0 else { return nil }
        let len = l4Length(p, info)
        var s: UInt32 = info.l4Proto == IPProto.icmp ? 0
            : pseudoHeader(p, l3: info.l3Offset, isV6: isV6, proto: info.l4Proto, length: len)
        s = sum(p + info.l4Offset, len, s)
        // Take the stored field out again (its sum is the field value itself).
        let stored = UInt32(rd16(p, info.l4Offset + field))
        let c = ~UInt16(truncatingIfNeeded: fold(UInt64(s) &+ UInt64(~UInt16(truncatingIfNeeded: stored))))
        if info.l4Proto == IPProto.udp && c == 0 { return 0xFFFF }
        return c
    }

    /// Computes and stores the full L4 checksum; false when `computeL4` has none.
    @inlinable
    @discardableResult
    public static func setL4(_ p: UnsafeMutableRawPointer, _ info: PacketInfo) -> Bool {
        guard let c = computeL4(p, info) else { return false }
        wr16(p, info.l4Offset + l4ChecksumField(proto: info.l4Proto, isV6: info.ipVersion == 6), c)
        return true
    }

    /// Verifies the L4 checksum of a parsed unfragmented packet. UDP over
    /// IPv4 with checksum 0 ("none") verifies. Nil when there is nothing to check.
    @inlinable
    public static func verifyL4(_ p: UnsafeRawPointer, _ info: PacketInfo) -> Bool? {
        guard info.hasL4Header, !info.isFragment else { return nil }
        let isV6 = info.ipVersion == 6
        let field = l4ChecksumField(proto: info.l4Proto, isV6: isV6)
        guard field >= 0 else { return nil }
        if info.l4Proto == IPProto.udp && !isV6 && rd16(p, info.l4Offset + 6) == 0 { return true }
        let len = l4Length(p, info)
        let s: UInt32 = info.l4Proto == IPProto.icmp ? 0
            : pseudoHeader(p, l3: info.l3Offset, isV6: isV6, proto: info.l4Proto, length: len)
        return sum(p + info.l4Offset, len, s) == 0xFFFF
    }
}
