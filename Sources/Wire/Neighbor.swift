// ARP (RFC 826) and IPv6 neighbour discovery (RFC 4861) messages for the
// neighbour code: parse requests/replies and solicitations/advertisements,
// build replies, requests, gratuitous ARP and advertisements.

/// An Ethernet/IPv4 ARP message.
public struct ARPMessage: Sendable, Equatable {
    public var op: UInt16
    public var senderMAC: MACAddress
    public var senderIP: IPAddress
    public var targetMAC: MACAddress
    public var targetIP: IPAddress

    @inlinable
    public init(op: UInt16, senderMAC: MACAddress, senderIP: IPAddress, targetMAC: MACAddress, targetIP: IPAddress) {
        self.op = op; self.senderMAC = senderMAC; self.senderIP = senderIP
        self.targetMAC = targetMAC; self.targetIP = targetIP
    }

    /// Sender and target IP are the same (gratuitous ARP / ARP announcement).
    @inlinable public var isGratuitous: Bool { senderIP == targetIP }
}

public enum ARP {
    public static let request: UInt16 = 1
    public static let reply: UInt16 = 2
    /// Ethernet header + 28-byte ARP body.
    public static let frameLength = 42

    /// Reads the ARP body of a frame `parseFrame` found to be ARP. Nil unless
    /// it is Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4)
    /// with all 28 bytes present.
    @inlinable
    public static func parse(_ p: UnsafeRawPointer, length: Int, info: PacketInfo) -> ARPMessage? {
        let a = info.l3Offset
        guard info.isARP, length - a >= 28 else { return nil }
        guard rd16(p, a) == 1, rd16(p, a + 2) == EtherType.ipv4, rd8(p, a + 4) == 6, rd8(p, a + 5) == 4 else { return nil }
        return ARPMessage(op: rd16(p, a + 6),
                          senderMAC: MACAddress(from: p, offset: a + 8), senderIP: rdAddr(p, a + 14, v6: false),
                          targetMAC: MACAddress(from: p, offset: a + 18), targetIP: rdAddr(p, a + 24, v6: false))
    }

    /// Writes an Ethernet frame with the ARP message, zero-padded to the
    /// 60-byte minimum. Returns 60, or 0 if `capacity` is below 60.
    @inlinable
    public static func build(_ m: ARPMessage, ethernetDestination: MACAddress, ethernetSource: MACAddress,
                             into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        guard capacity >= Ethernet.minimumFrame else { return 0 }
        Ethernet.write(dst, destination: ethernetDestination, source: ethernetSource, etherType: EtherType.arp)
        wr16(dst, 14, 1)
        wr16(dst, 16, EtherType.ipv4)
        wr8(dst, 18, 6)
        wr8(dst, 19, 4)
        wr16(dst, 20, m.op)
        m.senderMAC.store(to: dst, offset: 22)
        wr32(dst, 28, m.senderIP.v4)
        m.targetMAC.store(to: dst, offset: 32)
        wr32(dst, 38, m.targetIP.v4)
        zeroBytes(dst + frameLength, Ethernet.minimumFrame - frameLength)
        return Ethernet.minimumFrame
    }

    /// The reply to `request` saying `ourIP` (its target) is at `ourMAC`,
    /// sent to the requester.
    @inlinable
    public static func buildReply(to request: ARPMessage, ourMAC: MACAddress,
                                  into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let m = ARPMessage(op: reply, senderMAC: ourMAC, senderIP: request.targetIP,
                           targetMAC: request.senderMAC, targetIP: request.senderIP)
        return build(m, ethernetDestination: request.senderMAC, ethernetSource: ourMAC, into: dst, capacity: capacity)
    }

    /// A broadcast request for `targetIP` from `sourceIP`/`sourceMAC`.
    @inlinable
    public static func buildRequest(sourceMAC: MACAddress, sourceIP: IPAddress, targetIP: IPAddress,
                                    into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let m = ARPMessage(op: request, senderMAC: sourceMAC, senderIP: sourceIP, targetMAC: .zero, targetIP: targetIP)
        return build(m, ethernetDestination: .broadcast, ethernetSource: sourceMAC, into: dst, capacity: capacity)
    }

    /// A gratuitous ARP: a broadcast request with sender and target IP both `ip`.
    @inlinable
    public static func buildGratuitous(mac: MACAddress, ip: IPAddress,
                                       into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        buildRequest(sourceMAC: mac, sourceIP: ip, targetIP: ip, into: dst, capacity: capacity)
    }

    /// Turns the request in `p` into the reply from `ourMAC` in place (the
    /// frame keeps its length and VLAN tags). False unless it is an
    /// Ethernet/IPv4 request.
    @inlinable
    @discardableResult
    public static func makeReply(_ p: UnsafeMutableRawPointer, length: Int, info: PacketInfo, ourMAC: MACAddress) -> Bool {
        guard let m = parse(p, length: length, info: info), m.op == request else { return false }
        let a = info.l3Offset
        Ethernet.setAddresses(p, destination: m.senderMAC, source: ourMAC)
        wr16(p, a + 6, reply)
        ourMAC.store(to: p, offset: a + 8)
        wr32(p, a + 14, m.targetIP.v4)
        m.senderMAC.store(to: p, offset: a + 18)
        wr32(p, a + 24, m.senderIP.v4)
        return true
    }
}

/// A neighbour solicitation (135) or advertisement (136).
public struct NDPMessage: Sendable, Equatable {
    public var type: UInt8
    /// NA flags byte: router 0x80, solicited 0x40, override 0x20.
    public var flags: UInt8
    public var target: IPAddress
    /// The source (NS) or target (NA) link-layer address option, if present.
    public var linkLayer: MACAddress?
    public var source: IPAddress
    public var destination: IPAddress

    @inlinable
    public init(type: UInt8, flags: UInt8, target: IPAddress, linkLayer: MACAddress?,
                source: IPAddress, destination: IPAddress) {
        self.type = type; self.flags = flags; self.target = target
        self.linkLayer = linkLayer; self.source = source; self.destination = destination
    }
}

public enum NDP {
    public static let flagRouter: UInt8 = 0x80
    public static let flagSolicited: UInt8 = 0x40
    public static let flagOverride: UInt8 = 0x20
    /// Ethernet + IPv6 + 24-byte message + 8-byte link-layer option.
    public static let frameLength = 14 + 40 + 32

    /// ff02::1:ffXX:XXXX for the low 24 bits of `target`.
    @inlinable
    public static func solicitedNodeMulticast(_ target: IPAddress) -> IPAddress {
        IPAddress(hi: 0xFF02_0000_0000_0000, lo: 0x0000_0001_FF00_0000 | (target.lo & 0xFF_FFFF), family: .inet6)
    }

    public static let allNodes = IPAddress(hi: 0xFF02_0000_0000_0000, lo: 1, family: .inet6)

    /// Reads a neighbour solicitation or advertisement. Checks RFC 4861 §7.1
    /// validity: hop limit 255, code 0, at least 24 bytes, a valid
    /// checksum, option lengths non-zero and inside the packet. Nil otherwise.
    @inlinable
    public static func parse(_ p: UnsafeRawPointer, info: PacketInfo) -> NDPMessage? {
        guard info.ipVersion == 6, info.l4Proto == IPProto.icmpv6, info.hasL4Header, !info.isFragment,
              info.icmpType == ICMPv6Type.neighborSolicitation || info.icmpType == ICMPv6Type.neighborAdvertisement,
              info.icmpCode == 0, info.ttl == 255 else { return nil }
        let i = info.l4Offset
        let end = info.ipEnd
        guard end - i >= 24, Checksum.verifyL4(p, info) == true else { return nil }
        let target = rdAddr(p, i + 8, v6: true)
        guard target.hi >> 56 != 0xFF else { return nil }
        let wantedOption: UInt8 = info.icmpType == ICMPv6Type.neighborSolicitation ? 1 : 2
        var ll: MACAddress? = nil
        var o = i + 24
        while end - o >= 2 {
            let len = Int(rd8(p, o + 1)) &* 8
            guard len > 0, len <= end - o else { return nil }
            if rd8(p, o) == wantedOption && len >= 8 { ll = MACAddress(from: p, offset: o + 2) }
            o += len
        }
        return NDPMessage(type: info.icmpType, flags: info.icmpType == ICMPv6Type.neighborAdvertisement ? rd8(p, i + 4) : 0,
                          target: target, linkLayer: ll, source: info.src, destination: info.dst)
    }

    /// Writes an Ethernet + IPv6 (hop limit 255) + NS/NA frame with one
    /// link-layer option (source for NS, target for NA) carrying `optionMAC`,
    /// or none when `optionMAC` is nil. Returns the length or 0.
    @inlinable
    public static func build(type: UInt8, flags: UInt8, target: IPAddress, optionMAC: MACAddress?,
                             source: IPAddress, destination: IPAddress,
                             ethernetDestination: MACAddress, ethernetSource: MACAddress,
                             into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let plen = optionMAC == nil ? 24 : 32
        let n = 14 + 40 + plen
        guard capacity >= n, source.family == .inet6, destination.family == .inet6, target.family == .inet6 else { return 0 }
        Ethernet.write(dst, destination: ethernetDestination, source: ethernetSource, etherType: EtherType.ipv6)
        wr32(dst, 14, 0x6000_0000)
        wr16(dst, 18, UInt16(plen))
        wr8(dst, 20, IPProto.icmpv6)
        wr8(dst, 21, 255)
        wrAddr(dst, 22, source)
        wrAddr(dst, 38, destination)
        let i = 54
        wr8(dst, i, type)
        wr8(dst, i + 1, 0)
        wr16(dst, i + 2, 0)
        wr32(dst, i + 4, UInt32(flags) << 24)
        wrAddr(dst, i + 8, target)
        if let mac = optionMAC {
            wr8(dst, i + 24, type == ICMPv6Type.neighborSolicitation ? 1 : 2)
            wr8(dst, i + 25, 1)
            mac.store(to: dst, offset: i + 26)
        }
        let ph = Checksum.pseudoHeader(source: source, destination: destination, proto: IPProto.icmpv6, length: plen)
        wr16(dst, i + 2, Checksum.finish(Checksum.sum(dst + i, plen, ph)))
        return n
    }

    /// The advertisement answering `solicitation` for our address (its
    /// target) at `ourMAC`: to the soliciting address with S and O set, or
    /// to all-nodes with only O when the solicitation came from the
    /// unspecified address (duplicate address detection). `requesterMAC` is
    /// the Ethernet source of the solicitation, used when it carried no
    /// link-layer option.
    @inlinable
    public static func buildAdvertisement(answering solicitation: NDPMessage, ourMAC: MACAddress,
                                          requesterMAC: MACAddress,
                                          into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let unspecified = solicitation.source.hi == 0 && solicitation.source.lo == 0
        let to = unspecified ? allNodes : solicitation.source
        let mac = unspecified ? MACAddress.ipv6Multicast(allNodes) : (solicitation.linkLayer ?? requesterMAC)
        return build(type: ICMPv6Type.neighborAdvertisement,
                     flags: unspecified ? flagOverride : (flagSolicited | flagOverride),
                     target: solicitation.target, optionMAC: ourMAC, source: solicitation.target, destination: to,
                     ethernetDestination: mac, ethernetSource: ourMAC, into: dst, capacity: capacity)
    }

    /// An unsolicited advertisement of `address` at `mac` to all nodes
    /// (override set): the IPv6 counterpart of gratuitous ARP.
    @inlinable
    public static func buildUnsolicitedAdvertisement(address: IPAddress, mac: MACAddress,
                                                     into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        build(type: ICMPv6Type.neighborAdvertisement, flags: flagOverride, target: address, optionMAC: mac,
              source: address, destination: allNodes, ethernetDestination: MACAddress.ipv6Multicast(allNodes),
              ethernetSource: mac, into: dst, capacity: capacity)
    }

    /// A solicitation for `target` from `source`/`sourceMAC`: multicast to
    /// the solicited-node group, or unicast to `unicastMAC` (a reachability
    /// probe) when given.
    @inlinable
    public static func buildSolicitation(target: IPAddress, source: IPAddress, sourceMAC: MACAddress,
                                         unicastMAC: MACAddress? = nil,
                                         into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let to = unicastMAC == nil ? solicitedNodeMulticast(target) : target
        let mac = unicastMAC ?? MACAddress.ipv6Multicast(to)
        let unspecified = source.hi == 0 && source.lo == 0
        return build(type: ICMPv6Type.neighborSolicitation, flags: 0, target: target,
                     optionMAC: unspecified ? nil : sourceMAC, source: source, destination: to,
                     ethernetDestination: mac, ethernetSource: sourceMAC, into: dst, capacity: capacity)
    }
}
