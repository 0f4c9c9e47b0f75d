// rr: round robin (ip_vs_rr.c).
//
// The position is the last picked dest or the list head. A pick walks from
// the element after it to the end, then (unless the position is the head)
// once more from the start up to and including the position itself.
// Eligible: not OVERLOAD, weight > 0.

public final class RRScheduler: Scheduler {
    public let name = "rr"
    /// The dest at the position (nil: the head) and its index in `dests`.
    private var current: Dest? = nil
    private var index: Int = -1

    public init(service: Service) {}

    /// Index of the position, -1 for the head. Re-derived if the list was
    /// changed behind the hooks' back.
    @inline(__always)
    private func position(_ dests: [Dest]) -> Int {
        guard let cur = current else { return -1 }
        if index >= 0 && index < dests.count && dests[index] === cur { return index }
        for i in 0..<dests.count where dests[i] === cur { index = i; return i }
        current = nil; index = -1
        return -1
    }

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        let dests = service.dests
        let p = position(dests)
        let n = dests.count
        var i = p + 1
        while i < n {
            let d = dests[i]
            if !d.isOverloaded && d.weight > 0 { current = d; index = i; return d }
            i += 1
        }
        if p < 0 { return nil }
        i = 0
        while i < n {
            let d = dests[i]
            if !d.isOverloaded && d.weight > 0 { current = d; index = i; return d }
            if i == p { return nil }
            i += 1
        }
        return nil
    }

    /// Not a kernel hook (rr has none for add): the new dest sits at the head,
    /// so the cached index of the position moves by one.
    public func addDest(_ service: Service, _ dest: Dest) {
        if current != nil { index += 1 }
    }

    /// If the position was the deleted dest, it moves back to that dest's
    /// predecessor (or the head).
    public func delDest(_ service: Service, _ dest: Dest) {
        guard let cur = current else { return }
        if cur === dest {
            // `index` still tells where the dest was; its predecessor kept its index.
            let p = index - 1
            if p >= 0 && p < service.dests.count {
                current = service.dests[p]; index = p
            } else {
                current = nil; index = -1
            }
        } else {
            _ = position(service.dests)
        }
    }
}
