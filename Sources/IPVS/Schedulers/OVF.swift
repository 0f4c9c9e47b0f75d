// ovf: overflow connection (ip_vs_ovf.c). Skips dests that are OVERLOAD,
// have more active conns than their weight, or weight 0; takes the highest
// weight, the first of equals winning. Only active conns count, so UDP
// dests never overflow.

public final class OVFScheduler: Scheduler {
    public let name = "ovf"
    public init(service: Service) {}

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        var best: Dest? = nil
        var hw: Int32 = 0
        for d in service.dests {
            let w = d.weight
            if d.isOverloaded || d.active > w || w == 0 { continue }
            if best == nil || w > hw { best = d; hw = w }
        }
        return best
    }
}
