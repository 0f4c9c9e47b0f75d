// lblc: locality-based least connection (ip_vs_lblc.c). A cache maps each
// packet destination address to a dest. A cached dest is reused while it is
// AVAILABLE, has weight > 0 and is not "overloaded" in the locality sense
// (active > weight while another dest is under half its weight); the
// OVERLOAD flag itself is not looked at there. Otherwise the wlc pick is
// taken and cached.

public final class LBLCScheduler: Scheduler {
    public let name = "lblc"
    /// lblc_expiration sysctl, seconds (default 24 h).
    public var expiration: Double = 86_400
    var cache = LocalityCache<Dest>()

    public init(service: Service) {}

    /// Cached entries.
    public var entryCount: Int { cache.entries }

    /// The dest cached for a destination address, if any.
    public func cachedDest(for daddr: IPAddress) -> Dest? {
        let i = cache.find(daddr)
        return i >= 0 ? cache.slots[Int(i)].payload : nil
    }

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        let daddr = input.daddr
        let now = input.now
        let idx = cache.find(daddr)
        if idx >= 0 {
            cache.slots[Int(idx)].lastUse = now
            if let d = cache.slots[Int(idx)].payload,
               d.isAvailable && d.weight > 0 && !localityOverloaded(d, service) {
                return d
            }
        }
        guard let dest = weightedLeastConnection(service.dests) else { return nil }
        if idx >= 0 {
            if cache.slots[Int(idx)].payload === dest { return dest }
            cache.remove(idx)
        }
        cache.insert(daddr, dest, now: now)
        return dest
    }

    /// The 60-second GC timer body; the engine calls it every 60 s.
    public func collectGarbage(now: Double) {
        cache.periodic(now: now, expiration: expiration)
    }
}
