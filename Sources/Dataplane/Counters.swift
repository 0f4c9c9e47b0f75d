// Per-worker counters. Each worker owns one cache-line-aligned block and is
// its only writer; the main lcore reads them for --stats-period and at exit
// (aligned 64-bit loads, so a reader sees each value whole).

public struct WorkerCounters {
    public var rxPackets: UInt64 = 0
    public var txPackets: UInt64 = 0
    /// Packets the worker meant to send that the tx queue did not take.
    public var txDropped: UInt64 = 0
    /// Packets dropped by policy (no destination, TTL expired, ...).
    public var dropped: UInt64 = 0
    public var malformed: UInt64 = 0
    public var rxBursts: UInt64 = 0
    public var emptyPolls: UInt64 = 0
    /// New connections created, and live entries now in this worker's table.
    public var connsCreated: UInt64 = 0
    public var connsLive: UInt64 = 0
    public var connsRefused: UInt64 = 0
    /// Packets handed to another lcore (wrong rx queue) and received that way.
    public var redirected: UInt64 = 0
    public var redirectDropped: UInt64 = 0
    public var icmpSent: UInt64 = 0
    /// Packets that were not for a virtual service (forwarded unchanged or to the exception path).
    public var passthrough: UInt64 = 0
    public var lbInPackets: UInt64 = 0
    public var lbOutPackets: UInt64 = 0
    public var noDest: UInt64 = 0
    /// ARP/NDP/echo requests answered by the data plane itself.
    public var localAnswers: UInt64 = 0
    /// Packets handed to the host kernel, and the kernel's packets sent out.
    public var exceptionIn: UInt64 = 0
    public var exceptionOut: UInt64 = 0
    public init() {}
}

/// Storage for every worker's counters, one 128-byte-aligned slot each so
/// that two workers never write the same cache line.
public final class CounterBlock: @unchecked Sendable {
    public let count: Int
    public let stride: Int
    let base: UnsafeMutableRawPointer
    /// Malformed-packet counters per parse failure reason, per worker.
    public let reasonCount: Int
    let reasons: UnsafeMutablePointer<UInt64>

    public init(workers: Int, reasonCount: Int) {
        count = workers
        stride = (MemoryLayout<WorkerCounters>.size + 127) & ~127
        base = UnsafeMutableRawPointer.allocate(byteCount: stride * max(workers, 1), alignment: 128)
        for i in 0..<max(workers, 1) {
            (base + i * stride).bindMemory(to: WorkerCounters.self, capacity: 1).initialize(to: WorkerCounters())
        }
        self.reasonCount = reasonCount
        let n = max(workers, 1) * max(reasonCount, 1)
        reasons = .allocate(capacity: n)
        reasons.initialize(repeating: 0, count: n)
    }

    public func counters(_ worker: Int) -> UnsafeMutablePointer<WorkerCounters> {
        (base + worker * stride).assumingMemoryBound(to: WorkerCounters.self)
    }

    public func reasonCounters(_ worker: Int) -> UnsafeMutablePointer<UInt64> {
        reasons + worker * reasonCount
    }

    public func total() -> WorkerCounters {
        var t = WorkerCounters()
        for i in 0..<count {
            let c = counters(i).pointee
            t.rxPackets &+= c.rxPackets; t.txPackets &+= c.txPackets; t.txDropped &+= c.txDropped
            t.dropped &+= c.dropped; t.malformed &+= c.malformed; t.rxBursts &+= c.rxBursts
            t.emptyPolls &+= c.emptyPolls; t.connsCreated &+= c.connsCreated; t.connsLive &+= c.connsLive
            t.connsRefused &+= c.connsRefused; t.redirected &+= c.redirected
            t.redirectDropped &+= c.redirectDropped; t.icmpSent &+= c.icmpSent
            t.passthrough &+= c.passthrough; t.lbInPackets &+= c.lbInPackets
            t.lbOutPackets &+= c.lbOutPackets; t.noDest &+= c.noDest; t.localAnswers &+= c.localAnswers
            t.exceptionIn &+= c.exceptionIn; t.exceptionOut &+= c.exceptionOut
        }
        return t
    }
}
