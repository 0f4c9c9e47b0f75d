// fo: weighted failover (ip_vs_fo.c). The non-OVERLOAD dest with the highest
// weight, compared strictly against a running maximum starting at 0: weight 0
// never wins and the first of equal weights does.

public final class FOScheduler: Scheduler {
    public let name = "fo"
    public init(service: Service) {}

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        var best: Dest? = nil
        var hw: Int32 = 0
        for d in service.dests {
            let w = d.weight
            if !d.isOverloaded && w > hw { best = d; hw = w }
        }
        return best
    }
}
