// lblcr: locality-based least connection with replication (ip_vs_lblcr.c).
// Each destination address maps to a set of dests (new members at the head).
// With an entry: take the set's weighted least-connection member; when the
// set has more than one member and has not changed for lblcr_expiration,
// drop its most loaded member; if the pick is missing or "overloaded" (as in
// lblc), take the wlc pick over the whole service and add it to the set.

public final class LBLCRScheduler: Scheduler {
    public let name = "lblcr"
    /// lblcr_expiration sysctl, seconds (default 24 h).
    public var expiration: Double = 86_400

    struct Entry {
        var set: [Dest]          // index 0 is the head
        var lastMod: Double
    }
    var cache = LocalityCache<Entry>()

    public init(service: Service) {}

    public var entryCount: Int { cache.entries }

    /// The set cached for a destination address, head first.
    public func cachedSet(for daddr: IPAddress) -> [Dest] {
        let i = cache.find(daddr)
        return i >= 0 ? (cache.slots[Int(i)].payload?.set ?? []) : []
    }

    /// Weighted least connection inside the set; members must be AVAILABLE.
    static func setMin(_ set: [Dest]) -> Dest? {
        var least: Dest? = nil
        var loh: Int64 = 0, lw: Int64 = 0
        for d in set {
            if d.isOverloaded { continue }
            if least != nil {
                let doh = d.connOverhead
                let dw = Int64(d.weight)
                if loh * dw > doh * lw && d.isAvailable {
                    least = d; loh = doh; lw = dw
                }
            } else if d.weight > 0 && d.isAvailable {
                least = d; loh = d.connOverhead; lw = Int64(d.weight)
            }
        }
        return least
    }

    /// Weighted most connection inside the set (weight > 0 only).
    static func setMax(_ set: [Dest]) -> Dest? {
        var most: Dest? = nil
        var moh: Int64 = 0, mw: Int64 = 0
        for d in set {
            if most != nil {
                let doh = d.connOverhead
                let dw = Int64(d.weight)
                if moh * dw < doh * mw && dw > 0 {
                    most = d; moh = doh; mw = dw
                }
            } else if d.weight > 0 {
                most = d; moh = d.connOverhead; mw = Int64(d.weight)
            }
        }
        return most
    }

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        let daddr = input.daddr
        let now = input.now
        let idx = cache.find(daddr)
        if idx >= 0 {
            let i = Int(idx)
            cache.slots[i].lastUse = now
            var entry = cache.slots[i].payload!
            cache.slots[i].payload = nil      // keep the set uniquely referenced while editing
            let picked = LBLCRScheduler.setMin(entry.set)
            if entry.set.count > 1 && now > entry.lastMod + expiration {
                if let m = LBLCRScheduler.setMax(entry.set),
                   let k = entry.set.firstIndex(where: { $0 === m }) {
                    entry.set.remove(at: k)
                    entry.lastMod = now
                }
            }
            if let d = picked, !localityOverloaded(d, service) {
                cache.slots[i].payload = entry
                return d
            }
            guard let dest = weightedLeastConnection(service.dests) else {
                cache.slots[i].payload = entry
                return nil
            }
            if !entry.set.contains(where: { $0 === dest }) {
                entry.set.insert(dest, at: 0)
                entry.lastMod = now
            }
            cache.slots[i].payload = entry
            return dest
        }
        guard let dest = weightedLeastConnection(service.dests) else { return nil }
        cache.insert(daddr, Entry(set: [dest], lastMod: now), now: now)
        return dest
    }

    /// The 60-second GC timer body; the engine calls it every 60 s.
    public func collectGarbage(now: Double) {
        cache.periodic(now: now, expiration: expiration)
    }
}
