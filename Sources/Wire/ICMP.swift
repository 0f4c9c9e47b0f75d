// ICMP and ICMPv6: errors Switchyard originates, NAT of errors related to a
// connection (IPVS_SEMANTICS §8), and echo replies.

public enum ICMPType {
    public static let echoReply: UInt8 = 0
    public static let destinationUnreachable: UInt8 = 3
    public static let sourceQuench: UInt8 = 4
    public static let redirect: UInt8 = 5
    public static let echoRequest: UInt8 = 8
    public static let timeExceeded: UInt8 = 11
    public static let parameterProblem: UInt8 = 12
    /// Destination unreachable codes.
    public static let codePortUnreachable: UInt8 = 3
    public static let codeFragmentationNeeded: UInt8 = 4
}

public enum ICMPv6Type {
    public static let destinationUnreachable: UInt8 = 1
    public static let packetTooBig: UInt8 = 2
    public static let timeExceeded: UInt8 = 3
    public static let parameterProblem: UInt8 = 4
    public static let echoRequest: UInt8 = 128
    public static let echoReply: UInt8 = 129
    public static let routerSolicitation: UInt8 = 133
    public static let routerAdvertisement: UInt8 = 134
    public static let neighborSolicitation: UInt8 = 135
    public static let neighborAdvertisement: UInt8 = 136
    public static let redirect: UInt8 = 137
    public static let codePortUnreachable: UInt8 = 4
}

/// The IP header and L4 ports quoted inside an ICMP/ICMPv6 error.
/// Offsets are from the frame start.
public struct EmbeddedPacket: Sendable {
    public var l3Offset: Int = 0
    public var ipVersion: UInt8 = 0
    /// IPv4 IHL*4 / IPv6 40 + extension headers.
    public var ipHeaderLength: Int = 0
    public var proto: UInt8 = 0
    public var l4Offset: Int = 0
    /// The quoted packet was a non-first fragment (no ports).
    public var isFragment: Bool = false
    /// TCP/UDP/SCTP with its first 8 bytes quoted: `sport`/`dport` valid.
    public var hasPorts: Bool = false
    public var sport: UInt16 = 0
    public var dport: UInt16 = 0
    public var src = IPAddress(hi: 0, lo: 0, family: .inet)
    public var dst = IPAddress(hi: 0, lo: 0, family: .inet)
    @inlinable public init() {}
}

public enum ICMP {
    /// Largest IPv4 ICMP error (RFC 1812 4.3.2.3) and IPv6 one (RFC 4443 2.4(c)).
    public static let maxErrorIPv4 = 576
    public static let maxErrorIPv6 = 1280
    public static let defaultTTL: UInt8 = 64

    // MARK: originated errors

    /// Whether an ICMP error may be sent about this packet (RFC 1122
    /// 3.2.2 / RFC 4443 2.4(e)): not about an ICMP error, not about a
    /// non-first IPv4 fragment, not to an unspecified, multicast or broadcast
    /// source, and not about a multicast destination unless it is an IPv6
    /// packet-too-big.
    @inlinable
    public static func mayReportError(_ p: UnsafeRawPointer, info: PacketInfo, packetTooBig: Bool = false) -> Bool {
        if info.ipVersion == 4 {
            if info.fragmentOffset != 0 { return false }
            let s = info.src.v4, d = info.dst.v4
            if s == 0 || s >> 28 == 0xE || s == 0xFFFF_FFFF || d >> 28 == 0xE || d == 0xFFFF_FFFF { return false }
            if info.l4Proto == IPProto.icmp && info.hasL4Header {
                switch info.icmpType {
                case ICMPType.echoReply, ICMPType.echoRequest, 13, 14, 15, 16, 17, 18: break
                default: return false
                }
            }
            return true
        }
        if info.ipVersion == 6 {
            if (info.src.hi == 0 && info.src.lo == 0) || info.src.hi >> 56 == 0xFF { return false }
            if info.dst.hi >> 56 == 0xFF && !packetTooBig { return false }
            if info.l4Proto == IPProto.icmpv6 && info.hasL4Header
                && (info.icmpType < 128 || info.icmpType == ICMPv6Type.redirect) { return false }
            return true
        }
        return false
    }

    /// Builds an ICMP (IPv4) error about the packet `original` (parsed as
    /// `info`) into `dst`: Ethernet header, IPv4 from `source` to the
    /// original source with TTL 64, ICMP `type`/`code`, the 32-bit `rest`
    /// word, then the original IP packet truncated so the IP datagram is at
    /// most 576 bytes. Returns the frame length, or 0 when it does not fit
    /// `capacity` or the families do not match.
    @inlinable
    public static func buildIPv4Error(original: UnsafeRawPointer, info: PacketInfo, type: UInt8, code: UInt8,
                                      rest: UInt32 = 0, source: IPAddress,
                                      destinationMAC: MACAddress, sourceMAC: MACAddress,
                                      into dst: UnsafeMutableRawPointer, capacity: Int, ipID: UInt16 = 0) -> Int {
        guard info.ipVersion == 4, source.family == .inet else { return 0 }
        let quoted = min(info.ipTotalLength, maxErrorIPv4 - 28)
        let total = 14 + 28 + quoted
        guard capacity >= total else { return 0 }
        Ethernet.write(dst, destination: destinationMAC, source: sourceMAC, etherType: EtherType.ipv4)
        let o = 14
        wr8(dst, o, 0x45)
        // Errors go out with precedence "internetwork control" and the
        // original's TOS bits.
        wr8(dst, o + 1, 0xC0 | (info.tos & 0x1E))
        wr16(dst, o + 2, UInt16(truncatingIfNeeded: 28 + quoted))
        wr16(dst, o + 4, ipID)
        wr16(dst, o + 6, 0)
        wr8(dst, o + 8, defaultTTL)
        wr8(dst, o + 9, IPProto.icmp)
        wr16(dst, o + 10, 0)
        wrAddr(dst, o + 12, source)
        wrAddr(dst, o + 16, info.src)
        wr16(dst, o + 10, Checksum.internet(dst + o, length: 20))
        let i = o + 20
        wr8(dst, i, type)
        wr8(dst, i + 1, code)
        wr16(dst, i + 2, 0)
        wr32(dst, i + 4, rest)
        moveBytes(dst + i + 8, original + info.l3Offset, quoted)
        wr16(dst, i + 2, Checksum.internet(dst + i, length: 8 + quoted))
        return total
    }

    /// Builds an ICMPv6 error (as `buildIPv4Error`, limit 1280 bytes, hop
    /// limit 64, checksum over the pseudo-header).
    @inlinable
    public static func buildIPv6Error(original: UnsafeRawPointer, info: PacketInfo, type: UInt8, code: UInt8,
                                      rest: UInt32 = 0, source: IPAddress,
                                      destinationMAC: MACAddress, sourceMAC: MACAddress,
                                      into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        guard info.ipVersion == 6, source.family == .inet6 else { return 0 }
        let quoted = min(info.ipTotalLength, maxErrorIPv6 - 48)
        let total = 14 + 48 + quoted
        guard capacity >= total else { return 0 }
        Ethernet.write(dst, destination: destinationMAC, source: sourceMAC, etherType: EtherType.ipv6)
        let o = 14
        let plen = 8 + quoted
        wr32(dst, o, 0x6000_0000)
        wr16(dst, o + 4, UInt16(truncatingIfNeeded: plen))
        wr8(dst, o + 6, IPProto.icmpv6)
        wr8(dst, o + 7, defaultTTL)
        wrAddr(dst, o + 8, source)
        wrAddr(dst, o + 24, info.src)
        let i = o + 40
        wr8(dst, i, type)
        wr8(dst, i + 1, code)
        wr16(dst, i + 2, 0)
        wr32(dst, i + 4, rest)
        moveBytes(dst + i + 8, original + info.l3Offset, quoted)
        let ph = Checksum.pseudoHeader(source: source, destination: info.src, proto: IPProto.icmpv6, length: plen)
        wr16(dst, i + 2, Checksum.finish(Checksum.sum(dst + i, plen, ph)))
        return total
    }

    /// IPv4 time exceeded in transit (11/0) or IPv6 hop limit exceeded (3/0).
    @inlinable
    public static func buildTimeExceeded(original: UnsafeRawPointer, info: PacketInfo, source: IPAddress,
                                         destinationMAC: MACAddress, sourceMAC: MACAddress,
                                         into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        if info.ipVersion == 6 {
            return buildIPv6Error(original: original, info: info, type: ICMPv6Type.timeExceeded, code: 0,
                                  source: source, destinationMAC: destinationMAC, sourceMAC: sourceMAC,
                                  into: dst, capacity: capacity)
        }
        return buildIPv4Error(original: original, info: info, type: ICMPType.timeExceeded, code: 0,
                              source: source, destinationMAC: destinationMAC, sourceMAC: sourceMAC,
                              into: dst, capacity: capacity)
    }

    /// IPv4 port unreachable (3/3) or IPv6 port unreachable (1/4).
    @inlinable
    public static func buildPortUnreachable(original: UnsafeRawPointer, info: PacketInfo, source: IPAddress,
                                            destinationMAC: MACAddress, sourceMAC: MACAddress,
                                            into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        if info.ipVersion == 6 {
            return buildIPv6Error(original: original, info: info, type: ICMPv6Type.destinationUnreachable,
                                  code: ICMPv6Type.codePortUnreachable, source: source,
                                  destinationMAC: destinationMAC, sourceMAC: sourceMAC, into: dst, capacity: capacity)
        }
        return buildIPv4Error(original: original, info: info, type: ICMPType.destinationUnreachable,
                              code: ICMPType.codePortUnreachable, source: source,
                              destinationMAC: destinationMAC, sourceMAC: sourceMAC, into: dst, capacity: capacity)
    }

    /// IPv4 fragmentation needed (3/4, next-hop MTU in the low 16 bits of the
    /// rest word, RFC 1191) or IPv6 packet too big (2/0, 32-bit MTU).
    @inlinable
    public static func buildTooBig(original: UnsafeRawPointer, info: PacketInfo, mtu: Int, source: IPAddress,
                                   destinationMAC: MACAddress, sourceMAC: MACAddress,
                                   into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        if info.ipVersion == 6 {
            return buildIPv6Error(original: original, info: info, type: ICMPv6Type.packetTooBig, code: 0,
                                  rest: UInt32(truncatingIfNeeded: mtu), source: source,
                                  destinationMAC: destinationMAC, sourceMAC: sourceMAC, into: dst, capacity: capacity)
        }
        return buildIPv4Error(original: original, info: info, type: ICMPType.destinationUnreachable,
                              code: ICMPType.codeFragmentationNeeded, rest: UInt32(UInt16(truncatingIfNeeded: mtu)),
                              source: source, destinationMAC: destinationMAC, sourceMAC: sourceMAC,
                              into: dst, capacity: capacity)
    }

    // MARK: errors related to a connection (NAT)

    /// IPv4 destination unreachable, source quench and time exceeded; every
    /// ICMPv6 error (type < 128). The packet must not be a fragment.
    @inlinable
    public static func isRelatedError(_ info: PacketInfo) -> Bool {
        guard info.hasL4Header, !info.isFragment else { return false }
        if info.ipVersion == 4 && info.l4Proto == IPProto.icmp {
            let t = info.icmpType
            return t == ICMPType.destinationUnreachable || t == ICMPType.sourceQuench || t == ICMPType.timeExceeded
        }
        if info.ipVersion == 6 && info.l4Proto == IPProto.icmpv6 { return info.icmpType < 128 }
        return false
    }

    /// Parses the packet quoted in an ICMP/ICMPv6 error (`isRelatedError`)
    /// into `emb`. Everything read lies inside the outer IP packet. The
    /// embedded IP header must be complete, an IPv4 one must match the outer
    /// family; ports are read when 8 bytes of a TCP/UDP/SCTP header are
    /// quoted. False when the quote is too short or not a matching IP header.
    @inlinable
    public static func parseEmbedded(_ p: UnsafeRawPointer, info: PacketInfo, into emb: inout EmbeddedPacket) -> Bool {
        emb = EmbeddedPacket()
        guard isRelatedError(info) else { return false }
        let end = info.ipEnd
        let e = info.l4Offset + 8
        guard end - e >= 20 else { return false }
        emb.l3Offset = e
        var l4: Int
        var nh: UInt8
        if info.ipVersion == 4 {
            let vihl = rd8(p, e)
            guard vihl >> 4 == 4 else { return false }
            let ihl = Int(vihl & 0x0F) &* 4
            guard ihl >= 20, ihl <= end - e else { return false }
            emb.ipVersion = 4
            emb.ipHeaderLength = ihl
            nh = rd8(p, e + 9)
            emb.src = rdAddr(p, e + 12, v6: false)
            emb.dst = rdAddr(p, e + 16, v6: false)
            emb.isFragment = rd16(p, e + 6) & 0x1FFF != 0
            l4 = e + ihl
        } else {
            guard end - e >= 40, rd8(p, e) >> 4 == 6 else { return false }
            emb.ipVersion = 6
            emb.src = rdAddr(p, e + 8, v6: true)
            emb.dst = rdAddr(p, e + 24, v6: true)
            nh = rd8(p, e + 6)
            l4 = e + 40
            var walked = 0
            walk: while walked < maxIPv6ExtensionHeaders {
                let hlen: Int
                switch nh {
                case IPProto.hopByHop, IPProto.routing, IPProto.destinationOptions:
                    guard end - l4 >= 8 else { return false }
                    hlen = (Int(rd8(p, l4 + 1)) + 1) &* 8
                case IPProto.ah:
                    guard end - l4 >= 8 else { return false }
                    hlen = (Int(rd8(p, l4 + 1)) + 2) &* 4
                case IPProto.fragment:
                    guard end - l4 >= 8 else { return false }
                    if rd16(p, l4 + 2) & 0xFFF8 != 0 { emb.isFragment = true }
                    hlen = 8
                default:
                    break walk
                }
                guard end - l4 >= hlen else { return false }
                nh = rd8(p, l4)
                l4 += hlen
                walked += 1
                if emb.isFragment { break }
            }
            emb.ipHeaderLength = l4 - e
        }
        emb.proto = nh
        emb.l4Offset = l4
        if !emb.isFragment && (nh == IPProto.tcp || nh == IPProto.udp || nh == IPProto.sctp) && end - l4 >= 8 {
            emb.hasPorts = true
            emb.sport = rd16(p, l4)
            emb.dport = rd16(p, l4 + 2)
        }
        return true
    }

    /// Error from outside about a packet the real server sent (VIP → client
    /// as the client saw it): outer destination := `server`, embedded source
    /// := `server`, embedded source port := `port`. The embedded IPv4 header
    /// checksum and the whole ICMP/ICMPv6 checksum are recomputed, the outer
    /// IPv4 checksum updated; the embedded L4 checksum is left alone.
    @inlinable
    @discardableResult
    public static func rewriteRelatedInbound(_ p: UnsafeMutableRawPointer, info: inout PacketInfo,
                                             embedded emb: inout EmbeddedPacket,
                                             server: IPAddress, port: UInt16) -> Bool {
        rewriteRelated(p, info: &info, emb: &emb, outbound: false, address: server, port: port)
    }

    /// Error from a real server about a client packet (client → RS): outer
    /// source := `vip`, embedded destination := `vip`, embedded destination
    /// port := `port` (the vport); checksums as for the inbound case.
    @inlinable
    @discardableResult
    public static func rewriteRelatedOutbound(_ p: UnsafeMutableRawPointer, info: inout PacketInfo,
                                              embedded emb: inout EmbeddedPacket,
                                              vip: IPAddress, port: UInt16) -> Bool {
        rewriteRelated(p, info: &info, emb: &emb, outbound: true, address: vip, port: port)
    }

    @inlinable
    static func rewriteRelated(_ p: UnsafeMutableRawPointer, info: inout PacketInfo, emb: inout EmbeddedPacket,
                               outbound: Bool, address: IPAddress, port: UInt16) -> Bool {
        let isV6 = info.ipVersion == 6
        guard emb.ipVersion == info.ipVersion, address.family == (isV6 ? .inet6 : .inet) else { return false }
        let l3 = info.l3Offset
        // Outer address: source for outbound, destination for inbound.
        if isV6 {
            wrAddr(p, l3 + (outbound ? 8 : 24), address)
        } else {
            let off = l3 + (outbound ? 12 : 16)
            let old = rd32(p, off)
            let new = UInt32(truncatingIfNeeded: address.lo)
            wr32(p, off, new)
            wr16(p, l3 + 10, Checksum.update32(rd16(p, l3 + 10), old: old, new: new))
        }
        if outbound { info.src = address } else { info.dst = address }
        // Embedded address: destination for outbound, source for inbound.
        let e = emb.l3Offset
        if isV6 {
            wrAddr(p, e + (outbound ? 24 : 8), address)
        } else {
            wrAddr(p, e + (outbound ? 16 : 12), address)
            Checksum.setIPv4Header(p, l3: e)
        }
        if outbound { emb.dst = address } else { emb.src = address }
        if emb.hasPorts {
            wr16(p, emb.l4Offset + (outbound ? 2 : 0), port)
            if outbound { emb.dport = port } else { emb.sport = port }
        }
        // Full ICMP checksum over the whole message.
        let i = info.l4Offset
        let len = info.ipEnd - i
        wr16(p, i + 2, 0)
        let ph: UInt32 = isV6 ? Checksum.pseudoHeader(p, l3: l3, isV6: true, proto: IPProto.icmpv6, length: len) : 0
        wr16(p, i + 2, Checksum.finish(Checksum.sum(p + i, len, ph)))
        return true
    }

    // MARK: echo

    /// Turns an ICMP echo request (8) / ICMPv6 echo request (128) into the
    /// reply in place: addresses and MACs swapped, type 0 / 129, TTL 64,
    /// checksums fixed. False (nothing changed) if it is not an unfragmented
    /// echo request.
    @inlinable
    @discardableResult
    public static func makeEchoReply(_ p: UnsafeMutableRawPointer, info: inout PacketInfo) -> Bool {
        guard info.hasL4Header, !info.isFragment else { return false }
        let l3 = info.l3Offset, i = info.l4Offset
        let isV6: Bool
        let newType: UInt8
        if info.ipVersion == 4 && info.l4Proto == IPProto.icmp && info.icmpType == ICMPType.echoRequest {
            isV6 = false; newType = ICMPType.echoReply
        } else if info.ipVersion == 6 && info.l4Proto == IPProto.icmpv6 && info.icmpType == ICMPv6Type.echoRequest {
            isV6 = true; newType = ICMPv6Type.echoReply
        } else {
            return false
        }
        let s = info.src, d = info.dst
        if isV6 {
            wrAddr(p, l3 + 8, d); wrAddr(p, l3 + 24, s)
        } else {
            wrAddr(p, l3 + 12, d); wrAddr(p, l3 + 16, s)
        }
        info.src = d; info.dst = s
        // Swapping addresses leaves every sum unchanged; the type does not.
        let oldWord = rd16(p, i)
        wr8(p, i, newType)
        wr16(p, i + 2, Checksum.update16(rd16(p, i + 2), old: oldWord, new: rd16(p, i)))
        info.icmpType = newType
        IPHeader.setTTL(p, info: &info, defaultTTL)
        Ethernet.swapAddresses(p)
        return true
    }
}
