// Frame parsing: Ethernet (+ up to two VLAN tags), ARP, IPv4, IPv6 with its
// extension headers, TCP, UDP, SCTP, ICMP and ICMPv6. One pass, no
// allocation; every field is read only after its bytes are known to lie
// inside `length` (and L4 fields inside the IP packet's own length).

/// Why a frame was accepted or refused. `rawValue` indexes per-reason counters.
public enum ParseResult: UInt8, Sendable, CaseIterable {
    /// An IP packet whose headers are all present and consistent.
    case ok = 0
    /// Not IPv4/IPv6 (ARP included: see `PacketInfo.etherType`); forwardable.
    case notIP
    case truncatedEthernet
    case truncatedVLAN
    case truncatedARP
    case truncatedIPv4
    case badIPv4Version
    case badIHL
    case badIPv4TotalLength
    /// Fragment offset plus payload would exceed 65535 bytes.
    case badIPv4Fragment
    case truncatedIPv6
    case badIPv6Version
    /// Zero (jumbogram) or past the end of the frame.
    case badIPv6PayloadLength
    case truncatedExtensionHeader
    case tooManyExtensionHeaders
    case truncatedTCP
    case badTCPDataOffset
    case truncatedUDP
    /// UDP length below 8 (zero included) or past the IP payload.
    case badUDPLength
    case truncatedICMP
    case truncatedICMPv6
    case truncatedSCTP

    /// Number of cases: size of a counter array indexed by `rawValue`.
    public static let count = Int(ParseResult.truncatedSCTP.rawValue) + 1

    @inlinable public var isMalformed: Bool { rawValue > ParseResult.notIP.rawValue }

    /// Short name for statistics output.
    public var name: StaticString {
        switch self {
        case .ok: return "ok"
        case .notIP: return "not-ip"
        case .truncatedEthernet: return "truncated-ethernet"
        case .truncatedVLAN: return "truncated-vlan"
        case .truncatedARP: return "truncated-arp"
        case .truncatedIPv4: return "truncated-ipv4"
        case .badIPv4Version: return "bad-ipv4-version"
        case .badIHL: return "bad-ihl"
        case .badIPv4TotalLength: return "bad-ipv4-total-length"
        case .badIPv4Fragment: return "bad-ipv4-fragment"
        case .truncatedIPv6: return "truncated-ipv6"
        case .badIPv6Version: return "bad-ipv6-version"
        case .badIPv6PayloadLength: return "bad-ipv6-payload-length"
        case .truncatedExtensionHeader: return "truncated-extension-header"
        case .tooManyExtensionHeaders: return "too-many-extension-headers"
        case .truncatedTCP: return "truncated-tcp"
        case .badTCPDataOffset: return "bad-tcp-data-offset"
        case .truncatedUDP: return "truncated-udp"
        case .badUDPLength: return "bad-udp-length"
        case .truncatedICMP: return "truncated-icmp"
        case .truncatedICMPv6: return "truncated-icmpv6"
        case .truncatedSCTP: return "truncated-sctp"
        }
    }
}

/// What `parseFrame` found. All offsets count from the start of the frame.
/// Fields not applicable to the packet are zero.
public struct PacketInfo: Sendable {
    /// Start of the IP (or ARP) header: 14 + 4 per VLAN tag.
    public var l3Offset: Int = 0
    /// The EtherType after the VLAN tags.
    public var etherType: UInt16 = 0
    /// 0, 1 or 2 VLAN tags (802.1Q / 802.1ad).
    public var vlanCount: UInt8 = 0
    /// TCI of the outer tag.
    public var vlanTCI: UInt16 = 0
    /// TCI of the inner tag when there are two.
    public var innerVLANTCI: UInt16 = 0
    /// 4 or 6; 0 when not IP.
    public var ipVersion: UInt8 = 0
    /// IPv4: IHL*4. IPv6: 40 + the extension headers walked (up to and
    /// including a fragment header).
    public var ipHeaderLength: Int = 0
    /// IPv4 total length, IPv6 40 + payload length. Never past the frame;
    /// the frame may be longer (Ethernet padding).
    public var ipTotalLength: Int = 0
    /// IPv4 TOS / IPv6 traffic class (DSCP and ECN).
    public var tos: UInt8 = 0
    /// IPv4 TTL / IPv6 hop limit.
    public var ttl: UInt8 = 0
    /// IPv4 DF bit (always false for IPv6).
    public var dfSet: Bool = false
    /// A fragment: MF set or offset non-zero (IPv6: from a fragment header).
    public var isFragment: Bool = false
    public var moreFragments: Bool = false
    /// Fragment offset in bytes.
    public var fragmentOffset: Int = 0
    /// IPv4 identification, or the IPv6 fragment header identification.
    public var fragmentID: UInt32 = 0
    /// Offset of the IPv6 fragment header, 0 when there is none.
    public var fragmentHeaderOffset: Int = 0
    /// The L4 header is present: an unfragmented packet or a first fragment.
    public var hasL4Header: Bool = false
    /// TCP, UDP or SCTP ports were read (`sport`/`dport` valid).
    public var hasPorts: Bool = false
    /// IPv4 protocol / final IPv6 next header.
    public var l4Proto: UInt8 = 0
    /// Start of the L4 header (or of the fragment data).
    public var l4Offset: Int = 0
    /// Host-order ports (TCP, UDP, SCTP).
    public var sport: UInt16 = 0
    public var dport: UInt16 = 0
    /// The TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE, CWR).
    public var tcpFlags: UInt8 = 0
    /// ICMP or ICMPv6 type and code.
    public var icmpType: UInt8 = 0
    public var icmpCode: UInt8 = 0
    /// ARP operation (1 request, 2 reply) when etherType is ARP.
    public var arpOp: UInt16 = 0
    /// IP source and destination.
    public var src = IPAddress(hi: 0, lo: 0, family: .inet)
    public var dst = IPAddress(hi: 0, lo: 0, family: .inet)

    @inlinable public init() {}

    @inlinable public var hasVLAN: Bool { vlanCount != 0 }
    @inlinable public var isARP: Bool { etherType == EtherType.arp && ipVersion == 0 }
    @inlinable public var isIPv4: Bool { ipVersion == 4 }
    @inlinable public var isIPv6: Bool { ipVersion == 6 }
    /// End of the IP packet (start of any Ethernet padding).
    @inlinable public var ipEnd: Int { l3Offset + ipTotalLength }
    /// Alias of `ttl` for IPv6 readers.
    @inlinable public var hopLimit: UInt8 { ttl }
}

public enum TCPFlags {
    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let psh: UInt8 = 0x08
    public static let ack: UInt8 = 0x10
    public static let urg: UInt8 = 0x20
}

/// Most extension headers walked in one IPv6 packet before giving up.
public let maxIPv6ExtensionHeaders = 8

/// Parses the frame of `length` bytes at `p` into `info` (reset first).
@inlinable
public func parseFrame(_ p: UnsafeRawPointer, length: Int, into info: inout PacketInfo) -> ParseResult {
    info = PacketInfo()
    guard length >= 14 else { return .truncatedEthernet }
    var et = rd16(p, 12)
    var off = 14
    while et == EtherType.vlan || et == EtherType.qinq || et == EtherType.qinqOld {
        if info.vlanCount == 2 { break }
        guard length - off >= 4 else { return .truncatedVLAN }
        if info.vlanCount == 0 { info.vlanTCI = rd16(p, off) } else { info.innerVLANTCI = rd16(p, off) }
        info.vlanCount += 1
        et = rd16(p, off + 2)
        off += 4
    }
    info.etherType = et
    info.l3Offset = off
    switch et {
    case EtherType.ipv4: return parseIPv4(p, length: length, into: &info)
    case EtherType.ipv6: return parseIPv6(p, length: length, into: &info)
    case EtherType.arp:
        let avail = length - off
        guard avail >= 8 else { return .truncatedARP }
        let need = 8 + 2 * (Int(rd8(p, off + 4)) + Int(rd8(p, off + 5)))
        guard avail >= need else { return .truncatedARP }
        info.arpOp = rd16(p, off + 6)
        return .notIP
    default:
        return .notIP
    }
}

@inlinable
func parseIPv4(_ p: UnsafeRawPointer, length: Int, into info: inout PacketInfo) -> ParseResult {
    let l3 = info.l3Offset
    let avail = length - l3
    guard avail >= 20 else { return .truncatedIPv4 }
    let vihl = rd8(p, l3)
    guard vihl >> 4 == 4 else { return .badIPv4Version }
    let ihl = Int(vihl & 0x0F) &* 4
    guard ihl >= 20 else { return .badIHL }
    guard ihl <= avail else { return .truncatedIPv4 }
    let total = Int(rd16(p, l3 + 2))
    guard total >= ihl, total <= avail else { return .badIPv4TotalLength }
    let ff = rd16(p, l3 + 6)
    let fo = Int(ff & 0x1FFF) &* 8
    guard fo + total - ihl <= 65535 else { return .badIPv4Fragment }
    info.ipVersion = 4
    info.ipHeaderLength = ihl
    info.ipTotalLength = total
    info.tos = rd8(p, l3 + 1)
    info.fragmentID = UInt32(rd16(p, l3 + 4))
    info.dfSet = ff & 0x4000 != 0
    info.moreFragments = ff & 0x2000 != 0
    info.fragmentOffset = fo
    info.isFragment = info.moreFragments || fo != 0
    info.ttl = rd8(p, l3 + 8)
    info.l4Proto = rd8(p, l3 + 9)
    info.src = IPAddress(hi: 0, lo: UInt64(rd32(p, l3 + 12)), family: .inet)
    info.dst = IPAddress(hi: 0, lo: UInt64(rd32(p, l3 + 16)), family: .inet)
    info.l4Offset = l3 + ihl
    if fo != 0 { return .ok }
    return parseL4(p, end: l3 + total, into: &info)
}

@inlinable
func parseIPv6(_ p: UnsafeRawPointer, length: Int, into info: inout PacketInfo) -> ParseResult {
    let l3 = info.l3Offset
    let avail = length - l3
    guard avail >= 40 else { return .truncatedIPv6 }
    let w0 = rd32(p, l3)
    guard w0 >> 28 == 6 else { return .badIPv6Version }
    let plen = Int(rd16(p, l3 + 4))
    var nh = rd8(p, l3 + 6)
    guard plen != 0 || nh == IPProto.noNextHeader else { return .badIPv6PayloadLength }
    let total = 40 + plen
    guard total <= avail else { return .badIPv6PayloadLength }
    info.ipVersion = 6
    info.ipTotalLength = total
    info.tos = UInt8(truncatingIfNeeded: w0 >> 20)
    info.ttl = rd8(p, l3 + 7)
    info.src = IPAddress(hi: rd64(p, l3 + 8), lo: rd64(p, l3 + 16), family: .inet6)
    info.dst = IPAddress(hi: rd64(p, l3 + 24), lo: rd64(p, l3 + 32), family: .inet6)
    let end = l3 + total
    var cur = l3 + 40
    var walked = 0
    while true {
        let hlen: Int
        switch nh {
        case IPProto.hopByHop, IPProto.routing, IPProto.destinationOptions:
            guard end - cur >= 8 else { return .truncatedExtensionHeader }
            hlen = (Int(rd8(p, cur + 1)) + 1) &* 8
        case IPProto.ah:
            guard end - cur >= 8 else { return .truncatedExtensionHeader }
            hlen = (Int(rd8(p, cur + 1)) + 2) &* 4
        case IPProto.fragment:
            guard end - cur >= 8 else { return .truncatedExtensionHeader }
            let fw = rd16(p, cur + 2)
            info.fragmentHeaderOffset = cur
            info.fragmentOffset = Int(fw & 0xFFF8)
            info.moreFragments = fw & 1 != 0
            info.isFragment = info.moreFragments || info.fragmentOffset != 0
            info.fragmentID = rd32(p, cur + 4)
            hlen = 8
        default:
            info.ipHeaderLength = cur - l3
            info.l4Proto = nh
            info.l4Offset = cur
            return parseL4(p, end: end, into: &info)
        }
        guard end - cur >= hlen else { return .truncatedExtensionHeader }
        nh = rd8(p, cur)
        cur += hlen
        walked += 1
        if info.fragmentOffset != 0 {
            // A later fragment: what follows is data, not a header.
            info.ipHeaderLength = cur - l3
            info.l4Proto = nh
            info.l4Offset = cur
            return .ok
        }
        if walked >= maxIPv6ExtensionHeaders {
            switch nh {
            case IPProto.hopByHop, IPProto.routing, IPProto.destinationOptions, IPProto.ah, IPProto.fragment:
                return .tooManyExtensionHeaders
            default: break
            }
        }
    }
}

@inlinable
func parseL4(_ p: UnsafeRawPointer, end: Int, into info: inout PacketInfo) -> ParseResult {
    let l4 = info.l4Offset
    let avail = end - l4
    info.hasL4Header = true
    switch info.l4Proto {
    case IPProto.tcp:
        guard avail >= 20 else { return .truncatedTCP }
        let doff = Int(rd8(p, l4 + 12) >> 4) &* 4
        guard doff >= 20, doff <= avail else { return .badTCPDataOffset }
        info.sport = rd16(p, l4)
        info.dport = rd16(p, l4 + 2)
        info.tcpFlags = rd8(p, l4 + 13)
        info.hasPorts = true
    case IPProto.udp:
        guard avail >= 8 else { return .truncatedUDP }
        let ulen = Int(rd16(p, l4 + 4))
        guard ulen >= 8 else { return .badUDPLength }
        // A first fragment holds only part of the datagram the length describes.
        guard ulen <= avail || info.moreFragments else { return .badUDPLength }
        info.sport = rd16(p, l4)
        info.dport = rd16(p, l4 + 2)
        info.hasPorts = true
    case IPProto.sctp:
        guard avail >= 12 else { return .truncatedSCTP }
        info.sport = rd16(p, l4)
        info.dport = rd16(p, l4 + 2)
        info.hasPorts = true
    case IPProto.icmp where info.ipVersion == 4:
        guard avail >= 8 else { return .truncatedICMP }
        info.icmpType = rd8(p, l4)
        info.icmpCode = rd8(p, l4 + 1)
    case IPProto.icmpv6 where info.ipVersion == 6:
        guard avail >= 8 else { return .truncatedICMPv6 }
        info.icmpType = rd8(p, l4)
        info.icmpCode = rd8(p, l4 + 1)
    default:
        break
    }
    return .ok
}
