// The established-flow fast path for IPv4: the packets that make up nearly
// all of a balancer's traffic (data of established TCP connections, UDP
// flows) are recognised, looked up and rewritten straight from the frame's
// bytes, with no PacketInfo, no IPAddress values on the way and no state
// transition to run. Anything else — a new connection, a TCP flag that can
// change the state, IP options, fragments, TTL ≤ 1, an oversize packet,
// LVS/TUN, an unavailable server — returns `.slow` with nothing changed, and
// the general path (Engine.process) handles it with the full semantics.
//
// The result is the same as the general path's: same lookup, same counters,
// same timer re-arm (the state's timeout), same rewrite, TTL decrement.

public struct FastVerdict {
    /// 0: take the general path (the packet is untouched); 1: forward to `nextHop`.
    public var handled: Bool = false
    /// Host-order IPv4 next hop (the real server, or the client for NAT replies).
    public var nextHop: UInt32 = 0
    public init() {}
}

extension Engine {
    @inline(__always)
    static func rd16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 { UInt16(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always)
    static func rd32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 { UInt32(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always)
    static func wr16(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt16) { p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt16.self) }
    @inline(__always)
    static func wr32(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt32) { p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt32.self) }

    /// RFC 1624 update of a checksum for a 16-bit and a 32-bit change at once.
    @inline(__always)
    static func csumUpdate(_ check: UInt16, old32: UInt32, new32: UInt32, old16: UInt16, new16: UInt16) -> UInt16 {
        var s = UInt32(~check) &+ (~old32 >> 16) &+ (~old32 & 0xFFFF) &+ (new32 >> 16) &+ (new32 & 0xFFFF)
        s = s &+ UInt32(~old16) &+ UInt32(new16)
        s = (s >> 16) &+ (s & 0xFFFF)
        s = (s >> 16) &+ (s & 0xFFFF)
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// Try the fast path on an untagged Ethernet/IPv4 frame of `length` bytes.
    @inline(__always)
    /// `hashes`: the packet's two index hashes if the burst prefetch already
    /// computed them (see `fastHashes`), else (0, 0).
    public func fastIPv4(_ p: UnsafeMutableRawPointer, length: Int, now t: UInt64,
                         hashes: (UInt32, UInt32) = (0, 0)) -> FastVerdict {
        var v = FastVerdict()
        // Ethernet + a 20-byte IPv4 header + 8 bytes of L4, untagged, IHL 5.
        guard length >= 42, p.load(fromByteOffset: 12, as: UInt16.self) == UInt16(0x0800).bigEndian,
              p.load(fromByteOffset: 14, as: UInt8.self) == 0x45 else { return v }
        let total = Int(Engine.rd16(p, 16))
        let proto = p.load(fromByteOffset: 23, as: UInt8.self)
        let ttl = p.load(fromByteOffset: 22, as: UInt8.self)
        // Not a fragment (MF clear, offset 0), TTL survives, fits the frame and the MTU.
        guard Engine.rd16(p, 20) & 0x3FFF == 0, ttl > 1, total <= length - 14, total <= settings.mtu else { return v }
        let l4 = 34
        let tcpFlags: UInt8
        if proto == 6 {
            guard total >= 40 else { return v }
            let doff = Int(p.load(fromByteOffset: l4 + 12, as: UInt8.self) >> 4) * 4
            tcpFlags = p.load(fromByteOffset: l4 + 13, as: UInt8.self)
            // Only segments that cannot change an ESTABLISHED connection's state.
            guard doff >= 20, 20 + doff <= total, tcpFlags & 0x07 == 0, tcpFlags & 0x10 != 0 else { return v }
        } else if proto == 17 {
            let ulen = Int(Engine.rd16(p, l4 + 4))
            // A datagram without checksum gets a full one: the general path's job.
            guard ulen >= 8, ulen <= total - 20, p.load(fromByteOffset: l4 + 6, as: UInt16.self) != 0 else { return v }
            tcpFlags = 0
        } else {
            return v
        }
        if t != now { advance(to: t) }
        let src = Engine.rd32(p, 26), dst = Engine.rd32(p, 30)
        let sport = Engine.rd16(p, l4), dport = Engine.rd16(p, l4 + 2)

        // Client -> VIP: an existing connection.
        if let i = v4.lookup4(proto: proto, client: src, cport: sport, addr: dst, port: dport, daddrSide: false,
                              hash: hashes.0) {
            let f = v4.flags(i)
            let method = f & ConnFlags.fwdMask
            guard method == UInt16(ForwardMethod.masq.rawValue) || method == UInt16(ForwardMethod.droute.rawValue),
                  proto == 17 || v4.u8(i, ConnField.state) == TCPState.established.rawValue else { return v }
            let destID = v4.u32(i, ConnField.destID)
            guard Int(destID) < maxIDs, destRoutes[Int(destID)].available else { return v }
            let sid = Int(v4.u32(i, ConnField.serviceID))
            destStats[Int(destID)].add(bytes: UInt64(total), inbound: true)
            if sid < maxIDs { serviceStats[sid].add(bytes: UInt64(total), inbound: true) }
            rearm(i, proto: proto)
            let daddr = v4.u32(i, ConnField.addresses + 8)
            decrementTTL(p)
            if method == UInt16(ForwardMethod.masq.rawValue) {
                let rport = v4.u16(i, ConnField.dport)
                Engine.wr32(p, 30, daddr)
                Engine.wr16(p, 24, csumUpdate32(Engine.rd16(p, 24), old: dst, new: daddr))
                Engine.wr16(p, l4 + 2, rport)
                rewriteL4Checksum(p, proto: proto, l4: l4, oldAddr: dst, newAddr: daddr, oldPort: dport, newPort: rport)
            }
            v.handled = true
            v.nextHop = daddr
            return v
        }
        // Real server -> client: a NAT reply.
        if let i = v4.lookup4(proto: proto, client: dst, cport: dport, addr: src, port: sport, daddrSide: true,
                              hash: hashes.1) {
            let f = v4.flags(i)
            guard f & ConnFlags.fwdMask == UInt16(ForwardMethod.masq.rawValue), f & ConnFlags.noOutput == 0,
                  proto == 17 || v4.u8(i, ConnField.state) == TCPState.established.rawValue else { return v }
            let destID = v4.u32(i, ConnField.destID)
            guard Int(destID) < maxIDs, destRoutes[Int(destID)].available else { return v }
            let sid = Int(v4.u32(i, ConnField.serviceID))
            destStats[Int(destID)].add(bytes: UInt64(total), inbound: false)
            if sid < maxIDs { serviceStats[sid].add(bytes: UInt64(total), inbound: false) }
            rearm(i, proto: proto)
            // A UDP reply makes its persistence template ASSURED, as set_state(OUTPUT) does.
            let ctl = v4.u32(i, ConnField.control)
            if proto == 17 && ctl != 0 { v4.setFlags(ctl - 1, v4.flags(ctl - 1) | ConnFlags.assured) }
            let vaddr = v4.u32(i, ConnField.addresses + 4)
            let vport = v4.u16(i, ConnField.vport)
            decrementTTL(p)
            Engine.wr32(p, 26, vaddr)
            Engine.wr16(p, 24, csumUpdate32(Engine.rd16(p, 24), old: src, new: vaddr))
            Engine.wr16(p, l4, vport)
            rewriteL4Checksum(p, proto: proto, l4: l4, oldAddr: src, newAddr: vaddr, oldPort: sport, newPort: vport)
            v.handled = true
            v.nextHop = dst
            return v
        }
        return v
    }

    /// The state's timeout from now, as set_state does on every packet.
    @inline(__always)
    func rearm(_ i: UInt32, proto: UInt8) {
        let ms = proto == 6 ? timeoutsMs[Int(TCPState.established.rawValue)] : timeoutsMs[TCPState.count]
        v4.set32(i, ConnField.timeout, ms)
        v4.arm(i, expires: now &+ UInt64(ms) &* 1000)
    }

    /// Burst prefetch, stage 1: for a fast-path candidate, the index hashes
    /// of both possible client endpoints (the source for client packets, the
    /// destination for NAT replies); 0 when the frame is not a candidate.
    @inline(__always)
    public func fastHashes(_ p: UnsafeRawPointer, length: Int) -> (UInt32, UInt32) {
        guard length >= 42, p.load(fromByteOffset: 12, as: UInt16.self) == UInt16(0x0800).bigEndian,
              p.load(fromByteOffset: 14, as: UInt8.self) == 0x45 else { return (0, 0) }
        let proto = p.load(fromByteOffset: 23, as: UInt8.self)
        guard proto == 6 || proto == 17 else { return (0, 0) }
        let a = v4.hash4(proto: proto, client: Engine.rd32(p, 26), port: Engine.rd16(p, 34))
        let b = v4.hash4(proto: proto, client: Engine.rd32(p, 30), port: Engine.rd16(p, 36))
        return (a, b)
    }

    @inline(__always)
    func csumUpdate32(_ check: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        var s = UInt32(~check) &+ (~old >> 16) &+ (~old & 0xFFFF) &+ (new >> 16) &+ (new & 0xFFFF)
        s = (s >> 16) &+ (s & 0xFFFF)
        s = (s >> 16) &+ (s & 0xFFFF)
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// TTL - 1 with the header checksum updated (the caller checked TTL > 1).
    @inline(__always)
    func decrementTTL(_ p: UnsafeMutableRawPointer) {
        let word = Engine.rd16(p, 22)
        p.storeBytes(of: p.load(fromByteOffset: 22, as: UInt8.self) &- 1, toByteOffset: 22, as: UInt8.self)
        var s = UInt32(~Engine.rd16(p, 24)) &+ UInt32(~word) &+ UInt32(word &- 0x0100)
        s = (s >> 16) &+ (s & 0xFFFF)
        s = (s >> 16) &+ (s & 0xFFFF)
        Engine.wr16(p, 24, ~UInt16(truncatingIfNeeded: s))
    }

    /// TCP/UDP checksum after an address and a port changed (pseudo-header
    /// included). A UDP checksum of 0 (none) gets a full computation on the
    /// general path's terms: the fast path leaves such packets alone.
    @inline(__always)
    func rewriteL4Checksum(_ p: UnsafeMutableRawPointer, proto: UInt8, l4: Int, oldAddr: UInt32, newAddr: UInt32,
                           oldPort: UInt16, newPort: UInt16) {
        let off = proto == 6 ? l4 + 16 : l4 + 6
        let c = Engine.rd16(p, off)
        var n = Engine.csumUpdate(c, old32: oldAddr, new32: newAddr, old16: oldPort, new16: newPort)
        if proto == 17 && n == 0 { n = 0xFFFF }
        Engine.wr16(p, off, n)
    }
}
