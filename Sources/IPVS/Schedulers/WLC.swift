// wlc: weighted least connection (ip_vs_wlc.c). The first non-OVERLOAD dest
// with weight > 0 starts; any later non-OVERLOAD dest replaces it when
// loh * w(d) > doh * w(least) in 64 bits. Weight-0 dests can never win and
// ties keep the earlier dest.

public final class WLCScheduler: Scheduler {
    public let name = "wlc"
    public init(service: Service) {}

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        weightedLeastConnection(service.dests)
    }
}
