// Ethernet addresses, EtherTypes and IP protocol numbers.

/// A 48-bit MAC address held in the low 48 bits of `value`, first wire byte
/// most significant.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64

    @inlinable
    public init(_ value: UInt64) { self.value = value & 0xFFFF_FFFF_FFFF }

    @inlinable
    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        value = UInt64(b0) << 40 | UInt64(b1) << 32 | UInt64(b2) << 24 | UInt64(b3) << 16 | UInt64(b4) << 8 | UInt64(b5)
    }

    /// Reads 6 wire bytes at `p + offset`.
    @inlinable
    public init(from p: UnsafeRawPointer, offset: Int = 0) {
        value = UInt64(rd32(p, offset)) << 16 | UInt64(rd16(p, offset + 4))
    }

    /// Parses "aa:bb:cc:dd:ee:ff" (also with '-' separators; one or two hex
    /// digits per byte).
    public init?(_ text: String) {
        var v: UInt64 = 0
        var bytes = 0
        var digits = 0
        var cur: UInt64 = 0
        for c in text.utf8 {
            let d: UInt64
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt64(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt64(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt64(c - UInt8(ascii: "A") + 10)
            case UInt8(ascii: ":"), UInt8(ascii: "-"):
                guard digits > 0, bytes < 5 else { return nil }
                v = v << 8 | cur
                bytes += 1; digits = 0; cur = 0
                continue
            default: return nil
            }
            guard digits < 2 else { return nil }
            cur = cur << 4 | d
            digits += 1
        }
        guard bytes == 5, digits > 0 else { return nil }
        value = v << 8 | cur
    }

    /// Writes the 6 wire bytes at `p + offset`.
    @inlinable @inline(__always)
    public func store(to p: UnsafeMutableRawPointer, offset: Int = 0) {
        wr32(p, offset, UInt32(truncatingIfNeeded: value >> 16))
        wr16(p, offset + 4, UInt16(truncatingIfNeeded: value))
    }

    public static let broadcast = MACAddress(0xFFFF_FFFF_FFFF)
    public static let zero = MACAddress(0)

    /// The group bit (I/G) of the first byte.
    @inlinable public var isMulticast: Bool { (value >> 40) & 1 == 1 }
    @inlinable public var isBroadcast: Bool { value == 0xFFFF_FFFF_FFFF }
    @inlinable public var isZero: Bool { value == 0 }

    /// The Ethernet multicast address of an IPv6 multicast group (33:33 + low 32 bits).
    @inlinable
    public static func ipv6Multicast(_ group: IPAddress) -> MACAddress {
        MACAddress(0x3333_0000_0000 | (group.lo & 0xFFFF_FFFF))
    }

    public var description: String {
        var s = ""
        for i in 0..<6 {
            let b = UInt8(truncatingIfNeeded: value >> UInt64(40 - 8 * i))
            if i > 0 { s += ":" }
            if b < 16 { s += "0" }
            s += String(b, radix: 16)
        }
        return s
    }
}

public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let ipv6: UInt16 = 0x86DD
    public static let vlan: UInt16 = 0x8100
    public static let qinq: UInt16 = 0x88A8
    /// The pre-standard QinQ tag some switches still use.
    public static let qinqOld: UInt16 = 0x9100
}

public enum IPProto {
    public static let hopByHop: UInt8 = 0
    public static let icmp: UInt8 = 1
    public static let ipip: UInt8 = 4
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let ipv6: UInt8 = 41
    public static let routing: UInt8 = 43
    public static let fragment: UInt8 = 44
    public static let gre: UInt8 = 47
    public static let esp: UInt8 = 50
    public static let ah: UInt8 = 51
    public static let icmpv6: UInt8 = 58
    public static let noNextHeader: UInt8 = 59
    public static let destinationOptions: UInt8 = 60
    public static let sctp: UInt8 = 132
}

public enum Ethernet {
    public static let headerLength = 14
    /// Shortest frame on the wire without FCS.
    public static let minimumFrame = 60

    @inlinable @inline(__always)
    public static func destination(_ p: UnsafeRawPointer) -> MACAddress { MACAddress(from: p, offset: 0) }

    @inlinable @inline(__always)
    public static func source(_ p: UnsafeRawPointer) -> MACAddress { MACAddress(from: p, offset: 6) }

    /// Sets the destination and source MAC of the frame at `p` (14 bytes
    /// must be there).
    @inlinable @inline(__always)
    public static func setAddresses(_ p: UnsafeMutableRawPointer, destination: MACAddress, source: MACAddress) {
        destination.store(to: p, offset: 0)
        source.store(to: p, offset: 6)
    }

    /// Swaps destination and source MAC.
    @inlinable @inline(__always)
    public static func swapAddresses(_ p: UnsafeMutableRawPointer) {
        let d = destination(p), s = source(p)
        setAddresses(p, destination: s, source: d)
    }

    /// Writes a plain Ethernet header (no VLAN tag); returns 14.
    @inlinable @inline(__always)
    @discardableResult
    public static func write(_ p: UnsafeMutableRawPointer, destination: MACAddress, source: MACAddress, etherType: UInt16) -> Int {
        setAddresses(p, destination: destination, source: source)
        wr16(p, 12, etherType)
        return 14
    }
}
