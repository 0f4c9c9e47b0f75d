// In-place rewrites of a parsed packet for the LVS transmitters: NAT address
// and port changes, TTL / hop-limit decrement. Checksums are kept valid by
// RFC 1624 incremental updates; a UDP datagram without a checksum gets a
// full one.

public enum NAT {
    /// Client → real server: destination address := `address`, destination
    /// port := `port` (ignored for packets without ports). `info` is updated.
    /// False when the address family does not match the packet.
    @inlinable
    @discardableResult
    public static func rewriteDestination(_ p: UnsafeMutableRawPointer, info: inout PacketInfo,
                                          address: IPAddress, port: UInt16) -> Bool {
        rewrite(p, info: &info, source: false, address: address, port: port)
    }

    /// Real server → client (reply): source address := `address` (the VIP),
    /// source port := `port` (the vport). `info` is updated.
    @inlinable
    @discardableResult
    public static func rewriteSource(_ p: UnsafeMutableRawPointer, info: inout PacketInfo,
                                     address: IPAddress, port: UInt16) -> Bool {
        rewrite(p, info: &info, source: true, address: address, port: port)
    }

    @inlinable
    static func rewrite(_ p: UnsafeMutableRawPointer, info: inout PacketInfo, source: Bool,
                        address: IPAddress, port: UInt16) -> Bool {
        let l3 = info.l3Offset
        let isV6: Bool
        let oldAddr: IPAddress
        var old4: UInt32 = 0, new4: UInt32 = 0
        switch info.ipVersion {
        case 4:
            guard address.family == .inet else { return false }
            isV6 = false
            let off = l3 + (source ? 12 : 16)
            old4 = rd32(p, off)
            new4 = UInt32(truncatingIfNeeded: address.lo)
            wr32(p, off, new4)
            wr16(p, l3 + 10, Checksum.update32(rd16(p, l3 + 10), old: old4, new: new4))
            oldAddr = IPAddress(hi: 0, lo: UInt64(old4), family: .inet)
        case 6:
            guard address.family == .inet6 else { return false }
            isV6 = true
            let off = l3 + (source ? 8 : 24)
            oldAddr = rdAddr(p, off, v6: true)
            wrAddr(p, off, address)
        default:
            return false
        }
        if source { info.src = address } else { info.dst = address }
        guard info.hasL4Header else { return true }

        let l4 = info.l4Offset
        let portOff = l4 + (source ? 0 : 2)
        switch info.l4Proto {
        case IPProto.tcp:
            let old = rd16(p, portOff)
            wr16(p, portOff, port)
            var c = rd16(p, l4 + 16)
            // IPv4: a 32-bit update (the common case, kept short).
            c = isV6 ? Checksum.updateAddress(c, old: oldAddr, new: address) : Checksum.update32(c, old: old4, new: new4)
            c = Checksum.update16(c, old: old, new: port)
            wr16(p, l4 + 16, c)
        case IPProto.udp:
            let old = rd16(p, portOff)
            wr16(p, portOff, port)
            let c = rd16(p, l4 + 6)
            if c == 0 {
                // No checksum: compute a full one, which needs the whole datagram.
                if !info.isFragment { Checksum.setL4(p, info) }
            } else {
                var n = isV6 ? Checksum.updateAddress(c, old: oldAddr, new: address)
                             : Checksum.update32(c, old: old4, new: new4)
                n = Checksum.update16(n, old: old, new: port)
                wr16(p, l4 + 6, n == 0 ? 0xFFFF : n)
            }
        case IPProto.sctp:
            // SCTP's CRC32c covers no pseudo-header: only the port changes it.
            wr16(p, portOff, port)
            if !info.isFragment { SCTP.setChecksum(p + l4, length: info.ipEnd - l4) }
        case IPProto.icmpv6 where isV6:
            // No ports, but the pseudo-header covers the address.
            wr16(p, l4 + 2, Checksum.updateAddress(rd16(p, l4 + 2), old: oldAddr, new: address))
            return true
        default:
            return true
        }
        if source { info.sport = port } else { info.dport = port }
        return true
    }
}

public enum IPHeader {
    /// Decrements the IPv4 TTL / IPv6 hop limit in place. Returns false, and
    /// changes nothing, when it is ≤ 1: the caller sends ICMP time exceeded.
    @inlinable
    public static func decrementTTL(_ p: UnsafeMutableRawPointer, info: inout PacketInfo) -> Bool {
        guard info.ttl > 1 else { return false }
        let l3 = info.l3Offset
        if info.ipVersion == 4 {
            let word = rd16(p, l3 + 8)  // TTL and protocol
            wr8(p, l3 + 8, info.ttl &- 1)
            wr16(p, l3 + 10, Checksum.update16(rd16(p, l3 + 10), old: word, new: word &- 0x0100))
        } else if info.ipVersion == 6 {
            wr8(p, l3 + 7, info.ttl &- 1)
        } else {
            return false
        }
        info.ttl &-= 1
        return true
    }

    /// Sets the IPv4 TTL / IPv6 hop limit (IPv4 checksum updated).
    @inlinable
    public static func setTTL(_ p: UnsafeMutableRawPointer, info: inout PacketInfo, _ ttl: UInt8) {
        let l3 = info.l3Offset
        if info.ipVersion == 4 {
            let word = rd16(p, l3 + 8)
            wr8(p, l3 + 8, ttl)
            wr16(p, l3 + 10, Checksum.update16(rd16(p, l3 + 10), old: word, new: rd16(p, l3 + 8)))
        } else if info.ipVersion == 6 {
            wr8(p, l3 + 7, ttl)
        }
        info.ttl = ttl
    }
}

/// What the MTU check of a forwarded packet decides (IPVS §7 step 2).
public enum MTUVerdict: UInt8, Sendable {
    case fits
    /// IPv4 without DF, larger than the MTU: fragment it.
    case fragment
    /// IPv4 with DF: send ICMP fragmentation needed. IPv6: send packet too big.
    case tooBig
}

public enum MTU {
    /// Compares the IP packet length with `mtu`.
    @inlinable
    public static func check(_ info: PacketInfo, mtu: Int) -> MTUVerdict {
        if info.ipTotalLength <= mtu { return .fits }
        if info.ipVersion == 4 && !info.dfSet { return .fragment }
        return .tooBig
    }

    /// The IP MTU for a largest frame of `maxFrameLength` (testpmd's
    /// --max-pkt-len: minus 14 Ethernet and 4 FCS).
    @inlinable
    public static func fromMaxFrameLength(_ maxFrameLength: Int) -> Int { maxFrameLength - 18 }
}
