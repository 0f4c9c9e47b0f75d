// The kernel's rate estimator (ip_vs_est.c): every 2 seconds each counter's
// increase is scaled to a fixed-point rate and folded into an exponentially
// weighted moving average with weight 1/4. Conns and packets carry 10
// fractional bits (<< 9 of a 2 s delta is << 10 of a 1 s rate); bytes carry 5.

/// One estimator per service, dest and for the totals. Feed it the
/// cumulative (raw, never zeroed) counters once every 2 seconds.
public struct RateEstimator: Sendable, Equatable {
    /// Counter values seen at the previous tick.
    public private(set) var last = StatsCounters()
    /// Averages in fixed point (conns/packets: value * 1024, bytes: * 32).
    public private(set) var cps: Int64 = 0
    public private(set) var inpps: Int64 = 0
    public private(set) var outpps: Int64 = 0
    public private(set) var inbps: Int64 = 0
    public private(set) var outbps: Int64 = 0

    public init() {}

    /// Start from the given totals (the first tick then sees only what
    /// happened since).
    public init(startingAt totals: StatsCounters) { last = totals }

    /// The seconds between two ticks.
    public static let tickSeconds: Double = 2

    @inline(__always)
    static func fold(_ avg: inout Int64, _ delta: UInt64, shift: UInt64) {
        let rate = Int64(bitPattern: delta << shift)
        avg &+= (rate &- avg) >> 2          // arithmetic shift, as on s64
    }

    /// One 2-second tick with the current cumulative counters.
    public mutating func tick(_ totals: StatsCounters) {
        RateEstimator.fold(&cps, totals.conns &- last.conns, shift: 9)
        RateEstimator.fold(&inpps, totals.inPackets &- last.inPackets, shift: 9)
        RateEstimator.fold(&outpps, totals.outPackets &- last.outPackets, shift: 9)
        RateEstimator.fold(&inbps, totals.inBytes &- last.inBytes, shift: 4)
        RateEstimator.fold(&outbps, totals.outBytes &- last.outBytes, shift: 4)
        last = totals
    }

    /// What `-Z` does to an estimator: the averages restart from zero and
    /// the next delta is measured from `totals`.
    public mutating func zero(_ totals: StatsCounters) {
        last = totals
        cps = 0; inpps = 0; outpps = 0; inbps = 0; outbps = 0
    }

    @inline(__always)
    static func readPackets(_ e: Int64) -> UInt64 { (UInt64(bitPattern: e) &+ 0x1FF) >> 10 }
    @inline(__always)
    static func readBytes(_ e: Int64) -> UInt64 { (UInt64(bitPattern: e) &+ 0xF) >> 5 }

    /// Rates as `ipvsadm --rate` shows them (conns/s, packets/s, bytes/s).
    public var rates: Rates {
        Rates(cps: RateEstimator.readPackets(cps), inpps: RateEstimator.readPackets(inpps),
              outpps: RateEstimator.readPackets(outpps), inbps: RateEstimator.readBytes(inbps),
              outbps: RateEstimator.readBytes(outbps))
    }

    public struct Rates: Sendable, Equatable {
        public var cps: UInt64
        public var inpps: UInt64
        public var outpps: UInt64
        public var inbps: UInt64
        public var outbps: UInt64
        public init(cps: UInt64, inpps: UInt64, outpps: UInt64, inbps: UInt64, outbps: UInt64) {
            self.cps = cps; self.inpps = inpps; self.outpps = outpps; self.inbps = inbps; self.outbps = outbps
        }
    }
}
