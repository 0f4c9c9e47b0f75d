// What the balancer answers and learns itself: ARP and NDP for its port
// addresses and VIPs, ICMP echo to them, neighbour learning, resolution of
// unknown next hops (packets wait in a small per-worker queue while ARP/NDP
// probes go out, and leave when the answer arrives), and gratuitous ARP /
// unsolicited NA for VIPs so upstream switches learn them.
import CDPDK
import IPVS
import Wire

/// Per-worker resolution state (slow path only).
public final class Resolver {
    struct Pending {
        var mbuf: OpaquePointer
        var nextHop: IPAddress
        var port: UInt16
        var since: UInt64
    }
    static let capacity = 512
    static let retryMicros: UInt64 = 1_000_000
    static let giveUpMicros: UInt64 = 3_000_000
    var pending: [Pending] = [] {
        didSet { waiting = !pending.isEmpty }
    }
    /// Mirrors `!pending.isEmpty` as a plain flag the packet path can test.
    var waiting = false
    var lastProbe: [IPAddress: UInt64] = [:]
    var vipVersionAnnounced = -1
    public internal(set) var probesSent: UInt64 = 0
    public internal(set) var unresolvedDrops: UInt64 = 0

    public init() { pending.reserveCapacity(Resolver.capacity) }
}

extension Balancer {
    /// The time resolution and learning use: the packet clock in replays, else the TSC.
    @inline(__always)
    var localNow: UInt64 { packetClock ? lastPacketTime : tscMicros() }

    /// Does this port answer for `a` (its own address, or a VIP it announces)?
    func answers(_ a: IPAddress, on port: UInt16) -> Bool {
        if router.isPortAddress(a, port: port) { return true }
        return engine.isVirtualAddress(a) && router.portsAnswering(forVIP: a).contains(port)
    }

    /// ARP, NDP and echo requests. True when the packet was consumed here.
    func handleLocal(_ m: OpaquePointer, _ p: UnsafeMutableRawPointer, length: Int, rxPort: UInt16,
                              tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) -> Bool {
        if info.isARP {
            guard let msg = ARP.parse(UnsafeRawPointer(p), length: length, info: info) else { return false }
            if msg.senderIP.v4 != 0 {
                router.neighbours.learn(msg.senderIP, msg.senderMAC, now: localNow)
                if resolver.waiting { releasePending(tx: &tx, counters: counters) }
            }
            if msg.op == ARP.request && !msg.isGratuitous && answers(msg.targetIP, on: rxPort) {
                ARP.makeReply(p, length: length, info: info, ourMAC: router.mac(of: rxPort))
                counters.pointee.localAnswers &+= 1
                tx.add(m, port: rxPort, counters: counters)
                return true
            }
            return false
        }
        if info.isIPv6 && info.l4Proto == 58
            && (info.icmpType == ICMPv6Type.neighborSolicitation || info.icmpType == ICMPv6Type.neighborAdvertisement) {
            guard let msg = NDP.parse(UnsafeRawPointer(p), info: info) else { return false }
            if msg.type == ICMPv6Type.neighborAdvertisement {
                if let ll = msg.linkLayer {
                    router.neighbours.learn(msg.target, ll, now: localNow)
                    if resolver.waiting { releasePending(tx: &tx, counters: counters) }
                }
                return false
            }
            if let ll = msg.linkLayer, msg.source.hi != 0 || msg.source.lo != 0 {
                router.neighbours.learn(msg.source, ll, now: localNow)
                if resolver.waiting { releasePending(tx: &tx, counters: counters) }
            }
            guard answers(msg.target, on: rxPort), let f = sy_mbuf_alloc(pool) else { return false }
            let n = NDP.buildAdvertisement(answering: msg, ourMAC: router.mac(of: rxPort),
                                           requesterMAC: Ethernet.source(UnsafeRawPointer(p)),
                                           into: sy_mbuf_data(f).unsafelyUnwrapped, capacity: Int(sy_mbuf_tailroom(f)))
            if n == 0 { sy_mbuf_free(f); return false }
            sy_mbuf_set_len(f, UInt16(n))
            counters.pointee.localAnswers &+= 1
            tx.add(f, port: rxPort, counters: counters)
            sy_mbuf_free(m)
            return true
        }
        let echo = (info.isIPv4 && info.l4Proto == 1 && info.icmpType == ICMPType.echoRequest)
            || (info.isIPv6 && info.l4Proto == 58 && info.icmpType == ICMPv6Type.echoRequest)
        if echo && (router.isAnyPortAddress(info.dst) || engine.isVirtualAddress(info.dst)) {
            guard ICMP.makeEchoReply(p, info: &info) else { return false }
            Ethernet.setAddresses(p, destination: Ethernet.destination(UnsafeRawPointer(p)), source: router.mac(of: rxPort))
            counters.pointee.localAnswers &+= 1
            tx.add(m, port: rxPort, counters: counters)
            return true
        }
        return false
    }

    /// True when packets for `nextHop` are already waiting: a later packet
    /// must wait behind them, or it would overtake them.
    @inline(__always)
    func isWaiting(for nextHop: IPAddress) -> Bool {
        if !resolver.waiting { return false }
        return resolver.pending.contains { $0.nextHop == nextHop }
    }

    /// Queue a packet until its next hop resolves, and probe for it.
    func awaitNeighbour(_ m: OpaquePointer, nextHop: IPAddress, port: UInt16, tx: inout TxBuffers,
                                 counters: UnsafeMutablePointer<WorkerCounters>) {
        let now = localNow
        guard resolver.pending.count < Resolver.capacity else {
            resolver.unresolvedDrops &+= 1
            counters.pointee.dropped &+= 1
            sy_mbuf_free(m)
            return
        }
        resolver.pending.append(Resolver.Pending(mbuf: m, nextHop: nextHop, port: port, since: now))
        probe(nextHop, port: port, now: now, tx: &tx, counters: counters)
    }

    func probe(_ target: IPAddress, port: UInt16, now: UInt64, tx: inout TxBuffers,
                        counters: UnsafeMutablePointer<WorkerCounters>) {
        if let last = resolver.lastProbe[target], now &- last < Resolver.retryMicros { return }
        guard let src = router.probeSource(for: target, port: port), let f = sy_mbuf_alloc(pool) else { return }
        let d = sy_mbuf_data(f).unsafelyUnwrapped
        let cap = Int(sy_mbuf_tailroom(f))
        let n = target.isV4
            ? ARP.buildRequest(sourceMAC: router.mac(of: port), sourceIP: src, targetIP: target, into: d, capacity: cap)
            : NDP.buildSolicitation(target: target, source: src, sourceMAC: router.mac(of: port), into: d, capacity: cap)
        if n == 0 { sy_mbuf_free(f); return }
        sy_mbuf_set_len(f, UInt16(n))
        resolver.lastProbe[target] = now
        resolver.probesSent &+= 1
        tx.add(f, port: port, counters: counters)
    }

    /// Send what has resolved, give up on what has waited too long, re-probe the rest.
    func releasePending(tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        let now = localNow
        var keep: [Resolver.Pending] = []
        for w in resolver.pending {
            if let mac = router.neighbour(w.nextHop) {
                Ethernet.setAddresses(sy_mbuf_data(w.mbuf).unsafelyUnwrapped, destination: mac, source: router.mac(of: w.port))
                tx.add(w.mbuf, port: w.port, counters: counters)
            } else if now &- w.since >= Resolver.giveUpMicros {
                resolver.unresolvedDrops &+= 1
                counters.pointee.dropped &+= 1
                sy_mbuf_free(w.mbuf)
            } else {
                probe(w.nextHop, port: w.port, now: now, tx: &tx, counters: counters)
                keep.append(w)
            }
        }
        resolver.pending = keep
    }

    /// Gratuitous ARP (unsolicited NA for IPv6) for every VIP and port
    /// address, at start and whenever the set of VIPs changes.
    func announce(tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        resolver.vipVersionAnnounced = engine.vipVersion
        var targets: [(IPAddress, UInt16)] = router.portAddresses.map { ($0.address, $0.port) }
        for v in engine.virtualAddresses.sorted() {
            for p in router.portsAnswering(forVIP: v) { targets.append((v, p)) }
        }
        for (a, port) in targets {
            guard let f = sy_mbuf_alloc(pool) else { return }
            let d = sy_mbuf_data(f).unsafelyUnwrapped
            let cap = Int(sy_mbuf_tailroom(f))
            let n = a.isV4 ? ARP.buildGratuitous(mac: router.mac(of: port), ip: a, into: d, capacity: cap)
                           : NDP.buildUnsolicitedAdvertisement(address: a, mac: router.mac(of: port), into: d, capacity: cap)
            if n == 0 { sy_mbuf_free(f); continue }
            sy_mbuf_set_len(f, UInt16(n))
            tx.add(f, port: port, counters: counters)
        }
    }
}
