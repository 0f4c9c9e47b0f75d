// LVS/TUN encapsulation: IPIP / IPv6-in-IP (RFC 2003 / 4213), GUE over UDP
// and GRE (RFC 2784), with an IPv4 or IPv6 outer header. The outer fields
// follow IPVS_SEMANTICS §7 (TUN).

public enum Tunnel {
    public static let gueHeaderLength = 4
    public static let udpHeaderLength = 8

    /// Bytes the outer headers take: outer IP (20/40), plus UDP 8 + GUE 4,
    /// or GRE 4 (8 with .csum). Remote checksum offload needs no option
    /// here: packets leave with complete checksums, so .remcsum only turns
    /// the UDP checksum on.
    @inlinable
    public static func headerLength(_ type: TunnelType, outerIsV6: Bool, flags: TunnelFlags) -> Int {
        let ip = outerIsV6 ? 40 : 20
        switch type {
        case .ipip: return ip
        case .gue: return ip + udpHeaderLength + gueHeaderLength
        case .gre: return ip + (flags.contains(.csum) ? 8 : 4)
        }
    }

    /// The MTU left for the inner packet on a route of `routeMTU`, or 0 when
    /// it falls below 68 (IPv4 outer) / 1280 (IPv6 outer): then drop.
    @inlinable
    public static func mtu(routeMTU: Int, type: TunnelType, outerIsV6: Bool, flags: TunnelFlags) -> Int {
        let m = routeMTU - headerLength(type, outerIsV6: outerIsV6, flags: flags)
        return m < (outerIsV6 ? 1280 : 68) ? 0 : m
    }

    /// The outer DS field: the inner one with its ECN bits copied, except
    /// that CE becomes ECT(0) (RFC 6040 normal mode).
    @inlinable @inline(__always)
    public static func ecnEncapsulate(_ inner: UInt8) -> UInt8 {
        let ecn = inner & 3
        return (inner & 0xFC) | (ecn == 3 ? 2 : ecn)
    }

    /// Maps a flow hash into the source port range [low, high) the way
    /// Linux spreads UDP tunnel source ports (upper bits of hash × range).
    @inlinable @inline(__always)
    public static func sourcePort(hash: UInt32, low: UInt16 = 32768, high: UInt16 = 60999) -> UInt16 {
        let h = hash ^ (hash << 16)
        let span = UInt64(high &- low)
        return UInt16(truncatingIfNeeded: (UInt64(h) &* span) >> 32) &+ low
    }

    /// A hash of the inner flow (addresses, protocol, ports) for the GUE
    /// source port; the NIC's RSS hash serves as well.
    @inlinable
    public static func flowHash(_ info: PacketInfo) -> UInt32 {
        if info.src.isV4 && info.dst.isV4 {
            return flowHash4(source: info.src.v4, destination: info.dst.v4, proto: info.l4Proto, sport: info.sport,
                             dport: info.dport)
        }
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15
        h = mix(h, info.src.hi); h = mix(h, info.src.lo)
        h = mix(h, info.dst.hi); h = mix(h, info.dst.lo)
        h = mix(h, UInt64(info.l4Proto) << 32 | UInt64(info.sport) << 16 | UInt64(info.dport))
        h = (h ^ (h >> 29)) &* 0x94D0_49BB_1331_11EB
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }

    /// The hash of an IPv4 flow (addresses and ports host order), in two
    /// multiplies: the high half of the second depends on every input bit.
    @inlinable @inline(__always)
    public static func flowHash4(source: UInt32, destination: UInt32, proto: UInt8, sport: UInt16,
                                 dport: UInt16) -> UInt32 {
        let addresses = UInt64(source) << 32 | UInt64(destination)
        let rest = UInt64(proto) << 32 | UInt64(sport) << 16 | UInt64(dport)
        let h = ((addresses ^ 0x9E37_79B9_7F4A_7C15) &* 0xBF58_476D_1CE4_E5B9) ^ rest
        return UInt32(truncatingIfNeeded: (h &* 0x94D0_49BB_1331_11EB) >> 32)
    }

    @inlinable @inline(__always)
    static func mix(_ h: UInt64, _ x: UInt64) -> UInt64 {
        let m = (h ^ x) &* 0xBF58_476D_1CE4_E5B9
        return m ^ (m >> 31)
    }

    /// Encapsulates in place.
    ///
    /// `frame` is the new start of the frame: the caller has already
    /// prepended `headerLength(type, outerIsV6:, flags:)` bytes in front of
    /// the old frame, whose parse (after the TTL decrement) is `inner`, with
    /// offsets relative to the old start. The Ethernet (+VLAN) header moves to
    /// the new front, its EtherType becomes the outer family's, and the outer
    /// IP (+UDP/GUE or GRE) header is written before the untouched inner
    /// packet. `source`/`destination` give the outer family (both the same).
    /// `ipID` is the outer IPv4 identification; `flowHash` feeds the GUE
    /// source port; `port` is the GUE destination port; `pmtuDisc` copies
    /// the inner DF bit to the outer header (IPv6 inner counts as DF).
    ///
    /// Returns the new frame length (L2 + outer + inner IP length: Ethernet
    /// padding of the old frame is left behind, the caller trims to it), or 0
    /// when the packet is not IP, the families disagree or the result would
    /// exceed 65535 bytes of IP.
    @inlinable
    public static func encapsulate(_ frame: UnsafeMutableRawPointer, inner: PacketInfo, type: TunnelType,
                                   flags: TunnelFlags, source: IPAddress, destination: IPAddress,
                                   port: UInt16 = 0, ipID: UInt16 = 0, flowHash: UInt32 = 0,
                                   pmtuDisc: Bool = true) -> Int {
        guard inner.ipVersion == 4 || inner.ipVersion == 6, source.family == destination.family else { return 0 }
        let outerV6 = source.family == .inet6
        let hlen = headerLength(type, outerIsV6: outerV6, flags: flags)
        let l2 = inner.l3Offset
        let innerLen = inner.ipTotalLength
        let outerTotal = hlen + innerLen
        guard (outerV6 ? outerTotal - 40 : outerTotal) <= 65535 else { return 0 }

        // Move the L2 header (14..22 bytes) forward by hlen; all loads first.
        let src = UnsafeRawPointer(frame + hlen)
        let w0 = src.loadUnaligned(as: UInt64.self)
        let wLast = src.loadUnaligned(fromByteOffset: l2 - 8, as: UInt64.self)
        if l2 > 16 {
            let w1 = src.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            frame.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
        }
        frame.storeBytes(of: w0, as: UInt64.self)
        frame.storeBytes(of: wLast, toByteOffset: l2 - 8, as: UInt64.self)
        wr16(frame, l2 - 2, outerV6 ? EtherType.ipv6 : EtherType.ipv4)

        let innerProto: UInt8 = inner.ipVersion == 4 ? IPProto.ipip : IPProto.ipv6
        let outerProto: UInt8
        switch type {
        case .ipip: outerProto = innerProto
        case .gue: outerProto = IPProto.udp
        case .gre: outerProto = IPProto.gre
        }
        let tos = ecnEncapsulate(inner.tos)
        let o = l2
        let ipLen = outerV6 ? 40 : 20
        if outerV6 {
            wr32(frame, o, 0x6000_0000 | UInt32(tos) << 20)
            wr16(frame, o + 4, UInt16(truncatingIfNeeded: outerTotal - 40))
            wr8(frame, o + 6, outerProto)
            wr8(frame, o + 7, inner.ttl)
            wrAddr(frame, o + 8, source)
            wrAddr(frame, o + 24, destination)
        } else {
            wr8(frame, o, 0x45)
            wr8(frame, o + 1, tos)
            wr16(frame, o + 2, UInt16(truncatingIfNeeded: outerTotal))
            wr16(frame, o + 4, ipID)
            let df = pmtuDisc && (inner.dfSet || inner.ipVersion == 6)
            wr16(frame, o + 6, df ? 0x4000 : 0)
            wr8(frame, o + 8, inner.ttl)
            wr8(frame, o + 9, outerProto)
            wr16(frame, o + 10, 0)
            wrAddr(frame, o + 12, source)
            wrAddr(frame, o + 16, destination)
        }
        let t = o + ipLen
        switch type {
        case .ipip:
            break
        case .gue:
            let ulen = udpHeaderLength + gueHeaderLength + innerLen
            wr16(frame, t, sourcePort(hash: flowHash))
            wr16(frame, t + 2, port)
            wr16(frame, t + 4, UInt16(truncatingIfNeeded: ulen))
            wr16(frame, t + 6, 0)
            // GUE version 0, C 0, hlen 0; proto/ctype; flags 0.
            wr8(frame, t + 8, 0)
            wr8(frame, t + 9, innerProto)
            wr16(frame, t + 10, 0)
            if flags.contains(.csum) || flags.contains(.remcsum) {
                let ph = Checksum.pseudoHeader(source: source, destination: destination, proto: IPProto.udp, length: ulen)
                let c = Checksum.finish(Checksum.sum(frame + t, ulen, ph))
                wr16(frame, t + 6, c == 0 ? 0xFFFF : c)
            }
        case .gre:
            let csum = flags.contains(.csum)
            wr16(frame, t, csum ? 0x8000 : 0)
            wr16(frame, t + 2, inner.ipVersion == 4 ? EtherType.ipv4 : EtherType.ipv6)
            if csum {
                wr32(frame, t + 4, 0)
                wr16(frame, t + 4, Checksum.internet(frame + t, length: 8 + innerLen))
            }
        }
        if !outerV6 { wr16(frame, o + 10, Checksum.internet(frame + o, length: 20)) }
        return l2 + outerTotal
    }
}
