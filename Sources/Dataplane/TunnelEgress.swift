// LVS/TUN for the packets the fast path forwarded: the outer IPv4 header
// (and for GUE the UDP and GUE headers) written in the headroom straight
// from the frame, the same bytes Tunnel.encapsulate writes on the general
// path, with no parse. A next hop not in the cache, or a port without an
// IPv4 address, goes the general way (Balancer.tunnel).
import CDPDK
import IPVS
import Wire

extension Balancer {
    /// Send packets `start..<end` of a fast-path range in which some are left
    /// for encapsulation (FastBurst.isTunnelled), in order.
    @inline(never)
    func sendWithTunnels(_ pkts: UnsafeMutablePointer<OpaquePointer?>, from start: Int, to end: Int,
                         tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        let b = burst
        var j = start
        while j < end {
            if b.isTunnelled(j) {
                sendTunnelled(pkts[j].unsafelyUnwrapped, j, tx: &tx, counters: counters)
                j += 1
                continue
            }
            var r = j + 1
            while r < end && !b.isTunnelled(r) { r += 1 }
            sendFast(pkts, from: j, to: r, tx: &tx, counters: counters)
            j = r
        }
    }

    /// Encapsulate fast-path packet k (an IPv4 frame with a 20-byte header,
    /// TTL already decremented) towards its dest (id in nextHops) and queue it.
    @inline(__always)
    func sendTunnelled(_ m: OpaquePointer, _ k: Int, tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        let p = burst.frames[k]
        let destID = burst.nextHops[k]
        let route = engine.destRoutes + Int(destID)
        let server = route.pointee.address.v4
        let slot = hopCache + Balancer.hopSlot4(server)
        let port = Int(slot.pointee.port)
        let version = router.neighbours.version.load(ordering: .relaxed)
        guard slot.pointee.lo == UInt64(server) && slot.pointee.version == version, tunnelSource4[port] != 0 else {
            tunnelUncached(m, p, destID: destID, server: route.pointee.address, tx: &tx, counters: counters)
            return
        }
        let header = Int(route.pointee.fastTunnelHeader)
        let innerTotal = Int(UInt16(bigEndian: p.load(fromByteOffset: 16, as: UInt16.self)))
        let frameLength = Int(sy_mbuf_data_len(m))
        guard let q = sy_mbuf_prepend(m, UInt16(header)) else {
            counters.pointee.dropped &+= 1
            sy_mbuf_free(m)
            return
        }
        // Ethernet padding after the inner packet goes (the outer length is exact).
        let excess = frameLength - 14 - innerTotal
        if excess > 0 { _ = sy_mbuf_trim(m, UInt16(excess)) }
        slot.pointee.writeAddresses(q)
        q.storeBytes(of: EtherType.ipv4.bigEndian, toByteOffset: 12, as: UInt16.self)
        // The outer header from the inner one: DS field with ECN per RFC 6040,
        // DF copied, TTL the inner's (decremented), a fresh ID.
        ipID &+= 1
        let gue = route.pointee.tunnelType == .gue
        let o = q + 14
        o.storeBytes(of: 0x45, as: UInt8.self)
        o.storeBytes(of: Tunnel.ecnEncapsulate(p.load(fromByteOffset: 15, as: UInt8.self)), toByteOffset: 1, as: UInt8.self)
        o.storeBytes(of: UInt16(truncatingIfNeeded: innerTotal + header).bigEndian, toByteOffset: 2, as: UInt16.self)
        o.storeBytes(of: ipID.bigEndian, toByteOffset: 4, as: UInt16.self)
        let df = p.load(fromByteOffset: 20, as: UInt8.self) & 0x40
        o.storeBytes(of: (df != 0 ? UInt16(0x4000) : 0).bigEndian, toByteOffset: 6, as: UInt16.self)
        o.storeBytes(of: p.load(fromByteOffset: 22, as: UInt8.self), toByteOffset: 8, as: UInt8.self)
        o.storeBytes(of: gue ? IPProto.udp : IPProto.ipip, toByteOffset: 9, as: UInt8.self)
        o.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        o.storeBytes(of: tunnelSource4[port].bigEndian, toByteOffset: 12, as: UInt32.self)
        o.storeBytes(of: server.bigEndian, toByteOffset: 16, as: UInt32.self)
        Balancer.setHeaderChecksum(o)
        if gue {
            // UDP from a port spread by the inner flow, to the dest's GUE
            // port, no checksum; GUE version 0, no options, protocol IPIP.
            let src = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 26, as: UInt32.self))
            let dst = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 30, as: UInt32.self))
            let hash = Tunnel.flowHash(source: IPAddress(v4: src), destination: IPAddress(v4: dst),
                                       proto: p.load(fromByteOffset: 23, as: UInt8.self),
                                       sport: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 34, as: UInt16.self)),
                                       dport: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt16.self)))
            let u = o + 20
            u.storeBytes(of: Tunnel.sourcePort(hash: hash).bigEndian, as: UInt16.self)
            u.storeBytes(of: route.pointee.tunnelPort.bigEndian, toByteOffset: 2, as: UInt16.self)
            u.storeBytes(of: UInt16(truncatingIfNeeded: header - 20 + innerTotal).bigEndian, toByteOffset: 4, as: UInt16.self)
            u.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
            u.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
            u.storeBytes(of: IPProto.ipip, toByteOffset: 9, as: UInt8.self)
        }
        tx.add(m, port: UInt16(port), counters: counters)
    }

    /// The checksum of the 20-byte IPv4 header at o (its checksum field 0):
    /// the one's-complement sum of raw 32-bit words folded to 16 bits is the
    /// sum of the 16-bit words in the same byte order.
    @inline(__always)
    static func setHeaderChecksum(_ o: UnsafeMutableRawPointer) {
        var s = UInt64(o.loadUnaligned(as: UInt32.self))
        s &+= UInt64(o.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        s &+= UInt64(o.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        s &+= UInt64(o.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        s &+= UInt64(o.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        s = (s & 0xFFFF_FFFF) &+ (s >> 32)
        s = (s & 0xFFFF) &+ (s >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        o.storeBytes(of: ~UInt16(truncatingIfNeeded: s), toByteOffset: 10, as: UInt16.self)
    }

    /// The general way for a fast-path packet left for encapsulation: the
    /// frame is parsed (its TTL already decremented, as the general path's is)
    /// and Balancer.tunnel resolves the next hop and writes the headers.
    @inline(never)
    func tunnelUncached(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, destID: UInt32, server: IPAddress,
                        tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        var info = PacketInfo()
        _ = parseFrame(UnsafeRawPointer(p), length: Int(sy_mbuf_data_len(m)), into: &info)
        var v = Verdict()
        v.action = .tunnel
        v.nextHop = server
        v.destID = destID
        tunnel(m, p, info, v, tx: &tx, counters: counters)
    }
}
