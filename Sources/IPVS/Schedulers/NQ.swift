// nq: never queue (ip_vs_nq.c). Skips OVERLOAD and weight-0 dests; the first
// dest with no active conns is taken at once, whatever its weight; otherwise
// the sed minimum (overhead active + 1, strict cross-multiplied compare).

public final class NQScheduler: Scheduler {
    public let name = "nq"
    public init(service: Service) {}

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        var least: Dest? = nil
        var loh: Int64 = 0
        var lw: Int64 = 0
        for d in service.dests {
            let w = d.weight
            if d.isOverloaded || w == 0 { continue }
            let act = d.active
            if act == 0 { return d }
            let doh = Int64(act) + 1
            if least == nil || loh * Int64(w) > doh * lw {
                least = d; loh = doh; lw = Int64(w)
            }
        }
        return least
    }
}
