// The worker lcore: a run-to-completion loop over its (port, queue) pairs.
//
// Everything the loop touches per packet is a raw pointer into memory the
// worker owns; the processor type is a generic parameter, so the loop is
// specialised for it (no existential, no dynamic dispatch per burst).
import CDPDK
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One rx queue a worker polls.
public struct RxAssignment: Sendable, Equatable {
    public var port: UInt16
    public var queue: UInt16
}

/// What a worker does with a received burst. Implementations hand each
/// mbuf to `tx` (to send) or free it, and keep their own counters.
public protocol BurstProcessor {
    mutating func process(_ pkts: UnsafeMutablePointer<OpaquePointer?>, count: Int, rxPort: UInt16,
                          tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>)
    /// Called once per loop iteration, with or without traffic: a burst
    /// boundary (timers, configuration changes, packets handed over by other workers).
    mutating func idle(tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>)
}

/// Per-port transmit staging for one worker: packets collect during a burst
/// and leave in one tx_burst per port, on the worker's own tx queue.
public struct TxBuffers {
    let portCount: Int
    let capacity: Int
    let slots: UnsafeMutablePointer<OpaquePointer?>
    let counts: UnsafeMutablePointer<Int>
    let txQueue: UnsafeMutablePointer<UInt16>

    init(portCount: Int, capacity: Int, txQueues: [UInt16]) {
        self.portCount = portCount
        self.capacity = capacity
        slots = .allocate(capacity: portCount * capacity)
        slots.initialize(repeating: nil, count: portCount * capacity)
        counts = .allocate(capacity: portCount)
        counts.initialize(repeating: 0, count: portCount)
        txQueue = .allocate(capacity: portCount)
        for i in 0..<portCount { txQueue[i] = txQueues[i] }
    }

    /// 802.1Q: the tag each port's frames must carry (`vlanNone`: untagged),
    /// and whether any port has one (else the check below is skipped).
    public static let vlanNone: UInt16 = 0xFFFF
    var vlanEnabled = false
    var vlanOf: UnsafeMutablePointer<UInt16>?

    /// Queue one mbuf for `port`; flushes that port first when its buffer is full.
    @inline(__always)
    public mutating func add(_ m: OpaquePointer, port: UInt16, counters: UnsafeMutablePointer<WorkerCounters>) {
        if vlanEnabled && !tagFor(m, port: port) {
            counters.pointee.txDropped &+= 1
            sy_mbuf_free(m)
            return
        }
        let p = Int(port)
        if counts[p] == capacity { flushPort(p, counters: counters) }
        slots[p * capacity + counts[p]] = m
        counts[p] += 1
    }

    /// Queue `count` mbufs for `port`, copied in blocks (flushing when the buffer fills).
    @inline(__always)
    public mutating func addAll(_ pkts: UnsafeMutablePointer<OpaquePointer?>, count: Int, port: UInt16,
                                counters: UnsafeMutablePointer<WorkerCounters>) {
        if vlanEnabled {
            for i in 0..<count { add(pkts[i].unsafelyUnwrapped, port: port, counters: counters) }
            return
        }
        let p = Int(port)
        var done = 0
        while done < count {
            if counts[p] == capacity { flushPort(p, counters: counters) }
            let n = min(count - done, capacity - counts[p])
            (slots + p * capacity + counts[p]).update(from: pkts + done, count: n)
            counts[p] += n
            done += n
        }
    }

    /// Make the frame's tag what the egress port wants: insert one (in the
    /// headroom), rewrite its VLAN id (keeping the priority bits), or strip it.
    /// False when there is no headroom for a tag.
    func tagFor(_ m: OpaquePointer, port: UInt16) -> Bool {
        guard let vlans = vlanOf else { return true }
        let want = vlans[Int(port)]
        guard let p = sy_mbuf_data(m), sy_mbuf_data_len(m) >= 14 else { return true }
        let tagged = p.load(fromByteOffset: 12, as: UInt16.self) == UInt16(0x8100).bigEndian
        if want == TxBuffers.vlanNone {
            if tagged && sy_mbuf_data_len(m) >= 18 {
                (p + 4).copyMemory(from: p, byteCount: 12)
                _ = sy_mbuf_adj(m, 4)
            }
            return true
        }
        if tagged && sy_mbuf_data_len(m) >= 18 {
            let tci = UInt16(bigEndian: p.load(fromByteOffset: 14, as: UInt16.self))
            p.storeBytes(of: ((tci & 0xF000) | want).bigEndian, toByteOffset: 14, as: UInt16.self)
            return true
        }
        guard let n = sy_mbuf_prepend(m, 4) else { return false }
        n.copyMemory(from: n + 4, byteCount: 12)
        n.storeBytes(of: UInt16(0x8100).bigEndian, toByteOffset: 12, as: UInt16.self)
        n.storeBytes(of: want.bigEndian, toByteOffset: 14, as: UInt16.self)
        return true
    }

    @inline(__always)
    public mutating func flush(counters: UnsafeMutablePointer<WorkerCounters>) {
        for p in 0..<portCount where counts[p] > 0 { flushPort(p, counters: counters) }
    }

    @inline(__always)
    mutating func flushPort(_ p: Int, counters: UnsafeMutablePointer<WorkerCounters>) {
        let n = counts[p]
        let base = slots + p * capacity
        var sent = 0
        // A few retries absorb a momentarily full tx ring; then the rest is dropped.
        var tries = 0
        while sent < n && tries < 4 {
            sent += Int(sy_tx_burst(UInt16(p), txQueue[p], base + sent, UInt16(n - sent)))
            tries += 1
        }
        counters.pointee.txPackets &+= UInt64(sent)
        if sent < n {
            counters.pointee.txDropped &+= UInt64(n - sent)
            sy_mbuf_free_bulk(base + sent, UInt32(n - sent))
        }
        counts[p] = 0
    }
}

/// Forward everything unchanged to the paired port (0<->1, 2<->3; a lone
/// port sends back out of itself), as testpmd's io mode does.
public struct IOForwarder: BurstProcessor {
    let peer: UnsafeMutablePointer<UInt16>

    public init(pairs: [UInt16: UInt16]) {
        peer = .allocate(capacity: Int(RTE_MAX_ETHPORTS))
        for i in 0..<Int(RTE_MAX_ETHPORTS) { peer[i] = pairs[UInt16(i)] ?? UInt16(i) }
    }

    @inline(__always)
    public mutating func process(_ pkts: UnsafeMutablePointer<OpaquePointer?>, count: Int, rxPort: UInt16,
                                 tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {
        tx.addAll(pkts, count: count, port: peer[Int(rxPort)], counters: counters)
    }

    public mutating func idle(tx: inout TxBuffers, counters: UnsafeMutablePointer<WorkerCounters>) {}
}

/// Workers meet here after leaving their loops.
final class StopBarrier: @unchecked Sendable {
    let parties: Int
    let arrived = Atomic<Int>(0)
    init(parties: Int) { self.parties = parties }
}

/// Set-up-time description of one worker; the loop copies it into locals.
public final class WorkerContext: @unchecked Sendable {
    public let index: Int
    public let lcore: UInt32
    public let rx: [RxAssignment]
    public let burst: Int
    public let counters: UnsafeMutablePointer<WorkerCounters>
    var tx: TxBuffers
    /// The loop body, set when the processor is chosen (type-erased only here, once).
    var body: (() -> Void)?
    /// Shared by all workers of a run (nil with one worker).
    var stopBarrier: StopBarrier?
    /// Idle back-off ceiling (0: never sleep).
    var maxIdleSleepMicros = 0

    init(index: Int, lcore: UInt32, rx: [RxAssignment], burst: Int, portCount: Int, txQueues: [UInt16],
         counters: UnsafeMutablePointer<WorkerCounters>) {
        self.index = index
        self.lcore = lcore
        self.rx = rx
        self.burst = burst
        self.counters = counters
        self.tx = TxBuffers(portCount: portCount, capacity: max(burst, 32) * 2, txQueues: txQueues)
    }

    /// The poll loop, specialised for one processor type.
    func run<P: BurstProcessor>(_ processor: inout P) {
        let n = rx.count
        let ports = UnsafeMutablePointer<UInt16>.allocate(capacity: max(n, 1))
        let queues = UnsafeMutablePointer<UInt16>.allocate(capacity: max(n, 1))
        for (i, a) in rx.enumerated() { ports[i] = a.port; queues[i] = a.queue }
        let burst = UInt16(self.burst)
        let pkts = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: Int(burst))
        let c = counters
        var tx = self.tx
        var idleLoops = 0
        let maxSleep = maxIdleSleepMicros
        while !sy_should_stop() {
            var i = 0
            var busy = false
            while i < n {
                let got = Int(sy_rx_burst(ports[i], queues[i], pkts, burst))
                if got > 0 {
                    busy = true
                    c.pointee.rxPackets &+= UInt64(got)
                    c.pointee.rxBursts &+= 1
                    processor.process(pkts, count: got, rxPort: ports[i], tx: &tx, counters: c)
                    tx.flush(counters: c)
                } else {
                    c.pointee.emptyPolls &+= 1
                }
                i += 1
            }
            // Idle back-off (as DPDK's l3fwd-power does): a loaded worker never
            // sleeps; after a run of empty polls it pauses, then sleeps for
            // growing short periods, so a busy-poll core does not starve the
            // processes beside it on a small or shared host.
            if busy {
                idleLoops = 0
            } else if maxSleep > 0 {
                idleLoops &+= 1
                if idleLoops > 1024 {
                    let shift = min((idleLoops - 1024) / 64, 16)
                    usleep(UInt32(min(maxSleep, 1 << shift)))
                } else if idleLoops > 64 {
                    sy_pause()
                }
            }
            processor.idle(tx: &tx, counters: c)
            tx.flush(counters: c)
        }
        // Once every worker has left its loop, no more packets are handed
        // over: a last burst boundary processes what is still in the rings.
        if let b = stopBarrier {
            b.arrived.wrappingAdd(1, ordering: .acquiringAndReleasing)
            while b.arrived.load(ordering: .acquiring) < b.parties { sy_pause() }
        }
        processor.idle(tx: &tx, counters: c)
        tx.flush(counters: c)
        pkts.deallocate()
        ports.deallocate()
        queues.deallocate()
    }
}
