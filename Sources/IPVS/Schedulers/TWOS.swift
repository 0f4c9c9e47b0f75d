// twos: power of two choices (ip_vs_twos.c). Two weighted random draws in
// [0, total] over the non-OVERLOAD, positive-weight dests; the second choice
// wins only when it is strictly less loaded per weight:
// w2 * oh1 > w1 * oh2 (overhead = active * 256 + inactive).

public final class TWOSScheduler: Scheduler {
    public let name = "twos"
    /// Returns a uniformly random value in 0..<bound (bound >= 1), as
    /// get_random_u32_below does.
    public var randomBelow: (UInt32) -> UInt32

    public init(service: Service, randomBelow: ((UInt32) -> UInt32)? = nil) {
        self.randomBelow = randomBelow ?? { bound in
            var g = SystemRandomNumberGenerator()
            return UInt32.random(in: 0..<bound, using: &g)
        }
    }

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        let dests = service.dests
        var total: UInt32 = 0
        var any = false
        for d in dests where !d.isOverloaded {
            let w = d.weight
            if w > 0 { total &+= UInt32(w); any = true }
        }
        if !any { return nil }
        var r1 = Int64(randomBelow(total &+ 1))
        var r2 = Int64(randomBelow(total &+ 1))
        var c1: Dest? = nil, c2: Dest? = nil
        var w1: Int64 = -1, w2: Int64 = -1
        var oh1: Int64 = 0, oh2: Int64 = 0
        for d in dests {
            if d.isOverloaded { continue }
            let w = Int64(d.weight)
            if w <= 0 { continue }
            r1 -= w
            r2 -= w
            if r1 <= 0 && w1 == -1 { c1 = d; w1 = w; oh1 = d.connOverhead }
            if r2 <= 0 && w2 == -1 { c2 = d; w2 = w; oh2 = d.connOverhead }
            if w1 != -1 && w2 != -1 { break }
        }
        if let second = c2, w2 * oh1 > w1 * oh2 { return second }
        return c1
    }
}
