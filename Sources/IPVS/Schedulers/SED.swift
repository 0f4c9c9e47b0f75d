// sed: shortest expected delay (ip_vs_sed.c). The wlc loop with the
// overhead active + 1 (inactive conns are ignored).

public final class SEDScheduler: Scheduler {
    public let name = "sed"
    public init(service: Service) {}

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        var least: Dest? = nil
        var loh: Int64 = 0
        var lw: Int64 = 0
        for d in service.dests {
            if d.isOverloaded { continue }
            if least != nil {
                let doh = Int64(d.active) + 1
                let dw = Int64(d.weight)
                if loh * dw > doh * lw { least = d; loh = doh; lw = dw }
            } else if d.weight > 0 {
                least = d; loh = Int64(d.active) + 1; lw = Int64(d.weight)
            }
        }
        return least
    }
}
