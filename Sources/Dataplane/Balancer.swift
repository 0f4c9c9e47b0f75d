// The load-balancing burst processor: parse, let the IPVS engine decide,
// then carry out the verdict on the mbuf — MACs for the next hop, the LVS/TUN
// outer header in the headroom, IPv4 fragments, ICMP errors in fresh mbufs.
import CDPDK
import IPVS
import Wire
#if canImport(Glibc)
import Glibc
#endif

public final class Balancer: BurstProcessor {
    // Immutable references of a final class: the packet path borrows them,
    // with no reference counting.
    let engine: Engine
    let router: Router
    let pool: OpaquePointer
    let peer: UnsafeMutablePointer<UInt16>
    let reasons: UnsafeMutablePointer<UInt64>
    let mtu: Int
    let packetClock: Bool
    let tsOffset: Int32
    let tsFlag: UInt64
    let tscHz: Double
    let tscStart: UInt64
    var lastPacketTime: UInt64 = 0
    var burstNow: UInt64 = 0
    var ipID: UInt16 = 1
    var info = PacketInfo()
    /// Multi-worker ownership (nil with one worker) and this worker's index.
    let steering: Steering?
    let me: Int
    let ringBurst = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 32)
    let resolver = Resolver()
    /// The fast path's per-burst scratch (frames, hashes, candidate entries).
    let burst = FastBurst(capacity: 512)   // the largest --burst
    /// Per-worker cache of resolved next hops: destination -> (egress port, MAC),
    /// valid while the neighbour table's version is unchanged.
    let hopCache: UnsafeMutablePointer<HopCacheEntry>
    static let hopCacheBits = 12
    static let hopCacheSize = 1 << hopCacheBits   // by destination: real servers, and clients of NAT replies
    /// Exception path: the TAP port of each data port, and the data port of
    /// each TAP port (UInt16.max: none).
    let tapOf: UnsafeMutablePointer<UInt16>
    let dataOf: UnsafeMutablePointer<UInt16>
    let hasExceptionPath: Bool
    /// Send gratuitous ARP / unsolicited NA for VIPs (worker 0 only).
    let announces: Bool
    /// LVS/TUN templates for the fast path's packets, by dest id (TunnelEgress.swift).
    let tunnelTemplates: UnsafeMutablePointer<TunnelTemplate>

    public init(engine: Engine, router: Router, pool: OpaquePointer, pairs: [UInt16: UInt16],
                reasons: UnsafeMutablePointer<UInt64>, options: Options, steering: Steering?, workerIndex: Int,
                exceptionPorts: [(data: UInt16, tap: UInt16)] = []) {
        self.steering = steering
        self.me = workerIndex
        tapOf = .allocate(capacity: Int(RTE_MAX_ETHPORTS))
        tapOf.initialize(repeating: UInt16.max, count: Int(RTE_MAX_ETHPORTS))
        dataOf = .allocate(capacity: Int(RTE_MAX_ETHPORTS))
        dataOf.initialize(repeating: UInt16.max, count: Int(RTE_MAX_ETHPORTS))
        for e in exceptionPorts {
            tapOf[Int(e.data)] = e.tap
            dataOf[Int(e.tap)] = e.data
        }
        hasExceptionPath = !exceptionPorts.isEmpty
        hopCache = .allocate(capacity: Balancer.hopCacheSize)
        hopCache.initialize(repeating: HopCacheEntry(), count: Balancer.hopCacheSize)
        announces = workerIndex == 0 && options.gratuitousARP
        self.engine = engine
        self.router = router
        tunnelTemplates = .allocate(capacity: Balancer.tunnelTemplateSlots)
        tunnelTemplates.initialize(repeating: TunnelTemplate(), count: Balancer.tunnelTemplateSlots)
        self.pool = pool
        peer = .allocate(capacity: Int(RTE_MAX_ETHPORTS))
        for i in 0..<Int(RTE_MAX_ETHPORTS) { peer[i] = pairs[UInt16(i)] ?? UInt16(i) }
        self.reasons = reasons
        mtu = options.mtu
        packetClock = options.clock == .packet
        tsOffset = sy_timestamp_field_offset()
        tsFlag = sy_timestamp_rx_flag()
        tscHz = Double(sy_tsc_hz())
        tscStart = sy_rdtsc()
    }

    /// Microseconds on the TSC clock, counted from start-up.
    @inline(__always) func tscMicros() -> UInt64 {
        UInt64(Double(sy_rdtsc() &- tscStart) * 1e6 / tscHz)
    }

    public func process(_ pkts: UnsafeMutablePointer<OpaquePointer?>, count: Int, rxPort: UInt16,
                                 tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        if hasExceptionPath && dataOf[Int(rxPort)] != UInt16.max {
            // The host kernel's own packets leave through its data port unchanged.
            let out = dataOf[Int(rxPort)]
            for k in 0..<count { tx.add(pkts[k].unsafelyUnwrapped, port: out, counters: counters) }
            counters.pointee.exceptionOut &+= UInt64(count)
            return
        }
        // The engine's fast path looks the whole burst up first (FastPath.swift);
        // then each packet, in order, is forwarded by it or by the general path.
        let b = burst
        for k in 0..<count {
            let m = pkts[k].unsafelyUnwrapped
            let p = sy_mbuf_data(m).unsafelyUnwrapped
            sy_prefetch0(p)
            b.frames[k] = p
            b.lengths[k] = Int(sy_mbuf_data_len(m))
        }
        engine.fastPrepare(b, count: count)
        var k = 0
        while k < count {
            // In replays each packet has its own time; otherwise the burst shares one.
            let now = packetClock ? clock(pkts[k].unsafelyUnwrapped, tx: &tx, counters: counters) : burstNow
            let stop = engine.fastForward(b, from: k, to: packetClock ? k + 1 : count, now: now)
            if stop > k {
                counters.pointee.lbInPackets &+= UInt64(stop - k)
                if b.tunnels.pointee == 0 {
                    sendFast(pkts, from: k, to: stop, tx: &tx, counters: counters)
                } else {
                    sendWithTunnels(pkts, from: k, to: stop, tx: &tx, counters: counters)
                }
                k = stop
                continue
            }
            handle(pkts[k].unsafelyUnwrapped, rxPort: rxPort, redirected: false, now: now, tx: &tx, counters: counters)
            k += 1
        }
        counters.pointee.connsCreated = engine.connsCreated
        counters.pointee.connsRefused = engine.connsRefused
    }

    /// The time of a packet in µs: the burst's TSC time, or in replays
    /// (`--clock packet`) the capture's timestamp, where time moves with
    /// packets and resolution timers run per packet.
    @inline(__always)
    func clock(_ m: OpaquePointer, tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) -> UInt64 {
        guard packetClock else { return burstNow }
        let ts = sy_mbuf_rx_timestamp(m, tsOffset, tsFlag)
        if ts != 0 { lastPacketTime = ts }
        if resolver.waiting { releasePending(tx: &tx, counters: counters) }
        return lastPacketTime
    }

    /// One received packet on the general path, from a queue or handed over by another worker.
    func handle(_ m: OpaquePointer, rxPort: UInt16, redirected: Bool, now: UInt64, tx: inout TxBuffers,
                counters: UnsafeMutablePointer<WorkerCounters>) {
        let p = sy_mbuf_data(m).unsafelyUnwrapped
        let len = Int(sy_mbuf_data_len(m))
        let r = parseFrame(UnsafeRawPointer(p), length: len, into: &info)
        if r.isMalformed {
            counters.pointee.malformed &+= 1
            reasons[Int(r.rawValue)] &+= 1
            sy_mbuf_free(m)
            return
        }
        // ARP, NDP and echo for our own addresses are answered here.
        if info.l4Proto != 6 && info.l4Proto != 17
            && handleLocal(m, p, length: len, rxPort: rxPort, tx: &tx, counters: counters) {
            return
        }
        // Several workers: the connection's owner is the worker the client's
        // <address, port> hashes to; a packet that came to the wrong one moves.
        if let st = steering, !redirected, info.hasPorts {
            let toVIP = engine.isVirtualAddress(info.dst)
            let owner = toVIP ? st.owner(address: info.src, port: info.sport)
                              : st.owner(address: info.dst, port: info.dport)
            if owner != me {
                var one: OpaquePointer? = m
                if sy_ring_enqueue_burst(st.ring(from: me, to: owner), &one, 1) == 1 {
                    counters.pointee.redirected &+= 1
                } else {
                    counters.pointee.redirectDropped &+= 1
                    counters.pointee.dropped &+= 1
                    sy_mbuf_free(m)
                }
                return
            }
        }
        let v = engine.process(p, info: &info, now: now)
        switch v.action {
        case .forward:
            counters.pointee.lbInPackets &+= 1
            forward(m, p, info, v.nextHop, tx: &tx, counters: counters)
        case .tunnel:
            counters.pointee.lbInPackets &+= 1
            tunnel(m, p, info, v, tx: &tx, counters: counters)
        case .passthrough, .local:
            toHost(m, rxPort: rxPort, local: v.action == .local, tx: &tx, counters: counters)
        case .drop:
            if v.reason == .noDest { counters.pointee.noDest &+= 1 }
            counters.pointee.dropped &+= 1
            sy_mbuf_free(m)
        case .icmpError:
            if v.reason == .noDest { counters.pointee.noDest &+= 1 }
            counters.pointee.dropped &+= 1
            sendICMP(m, p, info, v, rxPort: rxPort, tx: &tx, counters: counters)
            sy_mbuf_free(m)
        }
    }

    public func idle(tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        // A burst boundary: configuration changes and requests are applied here.
        engine.drainInbox()
        // The clock is read here, once per turn of the poll loop (the bursts
        // of the next turn use it: reading the TSC costs ~10 ns on a VM).
        if !packetClock { burstNow = tscMicros(); engine.advance(to: burstNow) }
        // Packets other workers received for connections this worker owns.
        if let st = steering {
            for from in 0..<st.workers where from != me {
                let n = Int(sy_ring_dequeue_burst(st.ring(from: from, to: me), ringBurst, 32))
                for k in 0..<n {
                    let m = ringBurst[k].unsafelyUnwrapped
                    handle(m, rxPort: sy_mbuf_port(m), redirected: true, now: clock(m, tx: &tx, counters: counters),
                           tx: &tx, counters: counters)
                }
            }
        }
        if resolver.waiting { releasePending(tx: &tx, counters: counters) }
        if announces && resolver.vipVersionAnnounced != engine.vipVersion { announce(tx: &tx, counters: counters) }
        counters.pointee.connsLive = UInt64(engine.liveConnections)
        counters.pointee.connsCreated = engine.connsCreated
        counters.pointee.connsRefused = engine.connsRefused
    }

    /// Send packets `start..<end` that the fast path forwarded: each to its
    /// cached next hop (Ethernet header from the cache, straight into the
    /// port's tx buffer), else through the general egress.
    /// (A valid cache entry is a resolved neighbour, so no packet can be
    /// waiting for it: resolution changes the neighbour table's version.)
    @inline(never)
    func sendFast(_ pkts: UnsafeMutablePointer<OpaquePointer?>, from start: Int, to end: Int, tx: inout TxBuffers,
                  counters: UnsafeMutablePointer<WorkerCounters>) {
        let version = router.neighbours.version.load(ordering: .relaxed)
        let cache = hopCache, frames = burst.frames, hops = burst.nextHops
        // Locals: the stores below could alias the buffers' fields.
        let slots = tx.slots, counts = tx.counts, capacity = tx.capacity
        var j = start
        while j < end {
            // The common case, with no calls: a cached next hop and room in the port's buffer.
            if !tx.vlanEnabled {
                // The port packets go out through and its count stay in
                // registers while they do, written back when it changes.
                var port = -1, n = 0, queue = slots
                while j < end {
                    let hop = hops[j]
                    let slot = cache + Balancer.hopSlot4(hop)
                    guard slot.pointee.lo == UInt64(hop) && slot.pointee.version == version else { break }   // IPv4: see HopCacheEntry.tag
                    let p = Int(slot.pointee.port)
                    if p != port {
                        if port >= 0 { counts[port] = n }
                        port = p
                        n = counts[p]
                        queue = slots + p &* capacity
                    }
                    guard n != capacity else { break }
                    slot.pointee.writeAddresses(frames[j])
                    queue[n] = pkts[j]
                    n &+= 1
                    j &+= 1
                }
                if port >= 0 { counts[port] = n }
                if j == end { return }
            }
            // The rest, one packet: a full buffer is flushed, a missing next hop resolved, a VLAN tag set.
            let m = pkts[j].unsafelyUnwrapped, hop = hops[j]
            let slot = cache + Balancer.hopSlot4(hop)
            if slot.pointee.lo == UInt64(hop) && slot.pointee.version == version {
                slot.pointee.writeAddresses(frames[j])
                tx.add(m, port: slot.pointee.port, counters: counters)
            } else {
                sendUncached(m, frames[j], nextHop: hop, tx: &tx, counters: counters)
            }
            j &+= 1
        }
    }

    @inline(never)
    func sendUncached(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, nextHop: UInt32, tx: inout TxBuffers,
                      counters: UnsafeMutablePointer<WorkerCounters>) {
        var i = PacketInfo()
        _ = parseFrame(UnsafeRawPointer(p), length: Int(sy_mbuf_data_len(m)), into: &i)
        forward(m, p, i, IPAddress(v4: nextHop), tx: &tx, counters: counters)
    }

    @inline(__always)
    static func hopSlot(_ a: IPAddress) -> Int {
        a.hi == 0 ? hopSlot4(UInt32(truncatingIfNeeded: a.lo))
                  : Int(truncatingIfNeeded: ((a.lo ^ (a.hi &* 31)) &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - hopCacheBits))
    }

    /// `hopSlot` of an IPv4 address (hi == 0), with a 32-bit multiply.
    @inline(__always)
    static func hopSlot4(_ v: UInt32) -> Int { Int(truncatingIfNeeded: (v &* 0x9E37_79B1) >> UInt32(32 - hopCacheBits)) }

    /// Traffic that is not the balancer's: to the host kernel through the
    /// exception path when there is one; without it, bridged unchanged to the
    /// paired port (not-for-a-VIP traffic) or dropped (a VIP's traffic that
    /// IPVS does not take, which only the local stack could answer).
    @inline(__always)
    func toHost(_ m: OpaquePointer, rxPort: UInt16, local: Bool, tx: inout TxBuffers,
                         counters: UnsafeMutablePointer<WorkerCounters>) {
        counters.pointee.passthrough &+= 1
        if hasExceptionPath, tapOf[Int(rxPort)] != UInt16.max {
            counters.pointee.exceptionIn &+= 1
            tx.add(m, port: tapOf[Int(rxPort)], counters: counters)
        } else if local {
            counters.pointee.dropped &+= 1
            sy_mbuf_free(m)
        } else {
            tx.add(m, port: peer[Int(rxPort)], counters: counters)
        }
    }

    /// Set the MACs for the next hop and queue it; fragment IPv4 that does not fit.
    @inline(__always)
    func forward(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, _ info: PacketInfo, _ dst: IPAddress,
                          tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        let oversize = info.isIPv4 && info.ipTotalLength > mtu
        let slot = hopCache + Balancer.hopSlot(dst)
        let version = router.neighbours.version.load(ordering: .relaxed)
        let port: UInt16
        let tag = HopCacheEntry.tag(version, v6: !dst.isV4)
        if slot.pointee.version == tag && slot.pointee.hi == dst.hi && slot.pointee.lo == dst.lo
            && !resolver.waiting {
            port = slot.pointee.port
            slot.pointee.writeAddresses(p)
        } else {
            let e = router.egress(for: dst)
            guard !isWaiting(for: e.nextHop), let mac = router.neighbour(e.nextHop) else {
                if oversize {
                    counters.pointee.dropped &+= 1
                    sy_mbuf_free(m)
                } else {
                    awaitNeighbour(m, nextHop: e.nextHop, port: e.port, tx: &tx, counters: counters)
                }
                return
            }
            port = e.port
            let src = router.mac(of: port)
            slot.pointee = HopCacheEntry(hi: dst.hi, lo: dst.lo, version: tag, mac: mac, source: src, port: port)
            Ethernet.setAddresses(p, destination: mac, source: src)
        }
        let e = (port: port, nextHop: dst)
        if oversize {
            fragment(m, p, info, port: e.port, tx: &tx, counters: counters)
            return
        }
        tx.add(m, port: e.port, counters: counters)
    }

    /// IPv4 without DF that exceeds the egress MTU leaves in fragments, as the
    /// kernel's output path does for IPVS (which sets ignore_df).
    func fragment(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, _ info: PacketInfo, port: UInt16,
                           tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        let n = Fragmenter.fragmentCount(UnsafeRawPointer(p), info: info, mtu: mtu)
        if n == 0 {
            counters.pointee.dropped &+= 1
            sy_mbuf_free(m)
            return
        }
        for k in 0..<n {
            guard let f = sy_mbuf_alloc(pool) else { counters.pointee.dropped &+= 1; break }
            let cap = Int(sy_mbuf_tailroom(f))
            let d = sy_mbuf_data(f).unsafelyUnwrapped
            let len = Fragmenter.writeFragment(from: UnsafeRawPointer(p), info: info, index: k, mtu: mtu,
                                                   into: d, capacity: cap)
            if len == 0 { sy_mbuf_free(f); counters.pointee.dropped &+= 1; break }
            sy_mbuf_set_len(f, UInt16(len))
            tx.add(f, port: port, counters: counters)
        }
        sy_mbuf_free(m)
    }

    /// LVS/TUN: prepend the outer headers in the headroom and forward to the real server.
    func tunnel(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, _ info: PacketInfo, _ v: Verdict,
                         tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        let route = engine.destRoutes[Int(v.destID)]
        let version = router.neighbours.version.load(ordering: .relaxed)
        let e = router.egress(for: v.nextHop)
        guard let src = router.address(of: e.port, family: v.nextHop.family) else {
            counters.pointee.dropped &+= 1
            sy_mbuf_free(m)
            return
        }
        let hlen = Tunnel.headerLength(route.tunnelType, outerIsV6: !v.nextHop.isV4, flags: route.tunnelFlags)
        guard let start = sy_mbuf_prepend(m, UInt16(hlen)) else {
            counters.pointee.dropped &+= 1
            sy_mbuf_free(m)
            return
        }
        ipID &+= 1
        let newLen = Tunnel.encapsulate(start, inner: info, type: route.tunnelType, flags: route.tunnelFlags,
                                        source: src, destination: v.nextHop, port: route.tunnelPort, ipID: ipID,
                                        flowHash: Tunnel.flowHash(info))
        if newLen == 0 {
            counters.pointee.dropped &+= 1
            sy_mbuf_free(m)
            return
        }
        let total = Int(sy_mbuf_data_len(m))
        if total > newLen { _ = sy_mbuf_trim(m, UInt16(total - newLen)) }
        guard !isWaiting(for: e.nextHop), let mac = router.neighbour(e.nextHop) else {
            awaitNeighbour(m, nextHop: e.nextHop, port: e.port, tx: &tx, counters: counters)
            return
        }
        Ethernet.setAddresses(start, destination: mac, source: router.mac(of: e.port))
        // What the fast path needs to encapsulate this dest's next packets itself.
        learnTunnel(destID: v.destID, route: route, source: src, mac: mac, port: e.port, version: version)
        if newLen - info.l3Offset > mtu {
            // Only a packet without DF gets here (the engine answered the others
            // with fragmentation needed): the outer IPv4 packet leaves in fragments.
            var outer = PacketInfo()
            if parseFrame(UnsafeRawPointer(start), length: newLen, into: &outer) == .ok && outer.isIPv4 && !outer.dfSet {
                fragment(m, start, outer, port: e.port, tx: &tx, counters: counters)
            } else {
                counters.pointee.dropped &+= 1
                sy_mbuf_free(m)
            }
            return
        }
        tx.add(m, port: e.port, counters: counters)
    }

    /// Build the ICMP error in a fresh mbuf and send it back where the packet came from.
    func sendICMP(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, _ info: PacketInfo, _ v: Verdict,
                           rxPort: UInt16, tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        guard ICMP.mayReportError(UnsafeRawPointer(p), info: info, packetTooBig: v.icmpType == ICMPv6Type.packetTooBig && info.isIPv6),
              let f = sy_mbuf_alloc(pool) else { return }
        let d = sy_mbuf_data(f).unsafelyUnwrapped
        let cap = Int(sy_mbuf_tailroom(f))
        let back = Ethernet.source(UnsafeRawPointer(p))
        let me = router.mac(of: rxPort)
        let n: Int
        switch (v.reason, info.isIPv6) {
        case (.ttlExpired, _):
            n = ICMP.buildTimeExceeded(original: UnsafeRawPointer(p), info: info, source: v.icmpSource,
                                       destinationMAC: back, sourceMAC: me, into: d, capacity: cap)
        case (.tooBig, _):
            n = ICMP.buildTooBig(original: UnsafeRawPointer(p), info: info, mtu: Int(v.icmpMTU), source: v.icmpSource,
                                 destinationMAC: back, sourceMAC: me, into: d, capacity: cap)
        default:
            n = ICMP.buildPortUnreachable(original: UnsafeRawPointer(p), info: info, source: v.icmpSource,
                                          destinationMAC: back, sourceMAC: me, into: d, capacity: cap)
        }
        if n == 0 { sy_mbuf_free(f); return }
        sy_mbuf_set_len(f, UInt16(n))
        counters.pointee.icmpSent &+= 1
        tx.add(f, port: rxPort, counters: counters)
    }
}

/// One cached next hop, IPv4 or IPv6. An empty slot has a version no table
/// ever reaches.
struct HopCacheEntry {
    var hi: UInt64 = 0
    var lo: UInt64 = 0
    /// `tag(version, v6:)` of the neighbour table's version when it was cached.
    var version: UInt64 = UInt64.max

    /// The version with the top bit set for an IPv6 next hop (versions never
    /// get there): an IPv4 lookup (hi is 0) then compares the address's low
    /// word and the version, and can never take an IPv6 entry for its own.
    @inline(__always)
    static func tag(_ version: UInt64, v6: Bool) -> UInt64 { v6 ? version | 1 << 63 : version }
    /// The frame's first 12 bytes (destination and source MAC) as they are
    /// written: two stores per packet.
    var head: UInt64 = 0
    var tail: UInt32 = 0
    var port: UInt16 = 0

    init() {}

    init(hi: UInt64, lo: UInt64, version: UInt64, mac: MACAddress, source: MACAddress, port: UInt16) {
        self.hi = hi
        self.lo = lo
        self.version = version
        self.port = port
        var bytes: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &bytes) { b in
            Ethernet.setAddresses(b.baseAddress!, destination: mac, source: source)
            head = b.load(as: UInt64.self)
            tail = b.load(fromByteOffset: 8, as: UInt32.self)
        }
    }

    @inline(__always)
    func writeAddresses(_ p: UnsafeMutableRawPointer) {
        p.storeBytes(of: head, as: UInt64.self)
        p.storeBytes(of: tail, toByteOffset: 8, as: UInt32.self)
    }
}
