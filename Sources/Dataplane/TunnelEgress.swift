// LVS/TUN for the packets the fast path forwarded: the outer IPv4 header
// (and the GUE or GRE headers) written in the headroom straight
// from the frame, the same bytes Tunnel.encapsulate writes on the general
// path, with no parse. What does not depend on the packet (MACs, port,
// addresses, their checksum share) comes from a per-dest template that the
// general path leaves behind (Balancer.tunnel); a dest without a valid one
// goes the general way once.
import CDPDK
import IPVS
import Wire

/// A dest's LVS/TUN encapsulation towards an IPv4 server.
struct TunnelTemplate {
    /// The dest it is for, and the neighbour table's version + 1 and the
    /// engine's route generation it was made under (stamp 0: empty).
    var destID: UInt32 = 0
    var port: UInt16 = 0
    /// Bytes prepended: 20 (IPIP), 32 (GUE) or 24 (GRE).
    var header: UInt16 = 0
    var stamp: UInt64 = 0
    var routes: UInt64 = 0
    /// The frame's MACs, as two stores.
    var head: UInt64 = 0
    var tail: UInt32 = 0
    /// The outer protocol: IPIP, UDP (GUE) or GRE.
    var proto: UInt8 = 0
    /// The GUE destination port, raw (network order).
    var guePort: UInt16 = 0
    /// Outer source and destination, raw, as stored at the IP header's byte 12.
    var addresses: UInt64 = 0
    /// The one's-complement share of the addresses and protocol in the
    /// header checksum (a sum of raw 32-bit words, see outerChecksum).
    var constantSum: UInt64 = 0
}

extension Balancer {
    static let tunnelTemplateSlots = 1024

    /// Send packets `start..<end` of a fast-path range in which some are left
    /// for encapsulation (FastBurst.isTunnelled), in order.
    @inline(never)
    func sendWithTunnels(_ pkts: UnsafeMutablePointer<OpaquePointer?>, from start: Int, to end: Int,
                         tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        let b = burst
        let stamp = router.neighbours.version.load(ordering: .relaxed) &+ 1, routes = engine.routeGeneration
        var j = start
        while j < end {
            if b.isTunnelled(j) {
                sendTunnelled(pkts[j].unsafelyUnwrapped, j, stamp: stamp, routes: routes, tx: &tx, counters: counters)
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
    func sendTunnelled(_ m: OpaquePointer, _ k: Int, stamp: UInt64, routes: UInt64, tx: inout TxBuffers,
                       counters: UnsafeMutablePointer<WorkerCounters>) {
        let p = burst.frames[k]
        let destID = burst.nextHops[k]
        let t = tunnelTemplates + Int(destID) & (Balancer.tunnelTemplateSlots - 1)
        guard t.pointee.destID == destID && t.pointee.stamp == stamp && t.pointee.routes == routes else {
            tunnelUncached(m, p, destID: destID, tx: &tx, counters: counters)
            return
        }
        let header = Int(t.pointee.header)
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
        q.storeBytes(of: t.pointee.head, as: UInt64.self)
        q.storeBytes(of: t.pointee.tail, toByteOffset: 8, as: UInt32.self)
        q.storeBytes(of: EtherType.ipv4.bigEndian, toByteOffset: 12, as: UInt16.self)
        // The outer header from the inner one: DS field with ECN per RFC 6040,
        // DF copied, TTL the inner's (decremented), a fresh ID. Raw 32-bit words.
        ipID &+= 1
        let tos = Tunnel.ecnEncapsulate(p.load(fromByteOffset: 15, as: UInt8.self))
        let w0 = 0x45 | UInt32(tos) << 8 | UInt32(UInt16(truncatingIfNeeded: innerTotal + header).bigEndian) << 16
        let df = p.load(fromByteOffset: 20, as: UInt8.self) & 0x40   // DF in the flags byte
        let w1 = UInt32(ipID.bigEndian) | UInt32(df) << 16
        let ttl = UInt32(p.load(fromByteOffset: 22, as: UInt8.self))
        let sum = Balancer.fold(t.pointee.constantSum &+ UInt64(w0) &+ UInt64(w1) &+ UInt64(ttl))
        let o = q + 14
        o.storeBytes(of: w0, as: UInt32.self)
        o.storeBytes(of: w1, toByteOffset: 4, as: UInt32.self)
        o.storeBytes(of: ttl | UInt32(t.pointee.proto) << 8 | UInt32(~sum) << 16, toByteOffset: 8, as: UInt32.self)
        o.storeBytes(of: t.pointee.addresses, toByteOffset: 12, as: UInt64.self)
        if t.pointee.proto == IPProto.gre {
            // GRE version 0 with no checksum, key or sequence; protocol IPv4.
            o.storeBytes(of: UInt32(EtherType.ipv4.bigEndian) << 16, toByteOffset: 20, as: UInt32.self)
        } else if t.pointee.proto == IPProto.udp {
            // GUE: UDP from a port spread by the inner flow, to the dest's GUE
            // port, no checksum; GUE version 0, no options, protocol IPIP.
            let hash = Tunnel.flowHash4(source: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 26, as: UInt32.self)),
                                        destination: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 30, as: UInt32.self)),
                                        proto: p.load(fromByteOffset: 23, as: UInt8.self),
                                        sport: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 34, as: UInt16.self)),
                                        dport: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt16.self)))
            let u = o + 20
            u.storeBytes(of: UInt32(Tunnel.sourcePort(hash: hash).bigEndian) | UInt32(t.pointee.guePort) << 16,
                         as: UInt32.self)
            u.storeBytes(of: UInt32(UInt16(truncatingIfNeeded: header - 20 + innerTotal).bigEndian), toByteOffset: 4,
                         as: UInt32.self)
            u.storeBytes(of: UInt32(IPProto.ipip) << 8, toByteOffset: 8, as: UInt32.self)   // bytes 0, 4, 0, 0
        }
        tx.add(m, port: t.pointee.port, counters: counters)
    }

    /// A one's-complement sum of raw 32-bit words folded to 16 bits: the sum
    /// of the 16-bit words in the same byte order (2^16 = 1 modulo 0xFFFF).
    @inline(__always)
    static func fold(_ x: UInt64) -> UInt16 {
        var s = (x & 0xFFFF_FFFF) &+ (x >> 32)
        s = (s & 0xFFFF) &+ (s >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        return UInt16(truncatingIfNeeded: s)
    }

    /// Keep what tunnel() learnt for a dest the fast path can encapsulate
    /// for (see DestRoute.fastTunnelHeader): its template.
    func learnTunnel(destID: UInt32, route: DestRoute, source: IPAddress, mac: MACAddress, port: UInt16,
                     version: UInt64) {
        guard route.fastTunnelHeader != 0, source.isV4, route.address.isV4 else { return }
        var t = TunnelTemplate()
        let hop = HopCacheEntry(hi: 0, lo: 0, version: 0, mac: mac, source: router.mac(of: port), port: port)
        t.destID = destID
        t.port = port
        t.header = UInt16(route.fastTunnelHeader)
        t.stamp = version &+ 1
        t.routes = engine.routeGeneration
        t.head = hop.head
        t.tail = hop.tail
        switch route.tunnelType {
        case .ipip: t.proto = IPProto.ipip
        case .gue: t.proto = IPProto.udp
        case .gre: t.proto = IPProto.gre
        }
        t.guePort = route.tunnelPort.bigEndian
        let src = source.v4.bigEndian, dst = route.address.v4.bigEndian
        t.addresses = UInt64(src) | UInt64(dst) << 32
        t.constantSum = UInt64(src) &+ UInt64(dst) &+ UInt64(t.proto) << 8
        tunnelTemplates[Int(destID) & (Balancer.tunnelTemplateSlots - 1)] = t
    }

    /// The general way for a fast-path packet left for encapsulation: the
    /// frame is parsed (its TTL already decremented, as the general path's is)
    /// and Balancer.tunnel resolves the next hop, writes the headers and
    /// leaves the dest's template.
    @inline(never)
    func tunnelUncached(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, destID: UInt32,
                        tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        var info = PacketInfo()
        _ = parseFrame(UnsafeRawPointer(p), length: Int(sy_mbuf_data_len(m)), into: &info)
        var v = Verdict()
        v.action = .tunnel
        v.nextHop = engine.destRoutes[Int(destID)].address
        v.destID = destID
        tunnel(m, p, info, v, tx: &tx, counters: counters)
    }
}
