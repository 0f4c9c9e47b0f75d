// lc: least connection (ip_vs_lc.c). Skips OVERLOAD and weight-0 dests and
// takes the smallest overhead (active * 256 + inactive); strict `<`, so the
// first minimum in list order wins. Weights are otherwise ignored.

public final class LCScheduler: Scheduler {
    public let name = "lc"
    public init(service: Service) {}

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        var least: Dest? = nil
        var loh: Int64 = 0
        for d in service.dests {
            if d.isOverloaded || d.weight == 0 { continue }
            let doh = d.connOverhead
            if least == nil || doh < loh {
                least = d; loh = doh
            }
        }
        return least
    }
}
