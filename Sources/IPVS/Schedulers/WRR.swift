// wrr: weighted round robin (ip_vs_wrr.c).
//
// State: the current position `cl` (a dest or the head), the current
// weight `cw`, the adjusted maximum weight `mw = max - (di - 1)` and the
// step `di` = gcd of the positive weights (1 if none). Passes walk the list
// taking dests with weight >= cw; each time the end is reached cw drops by
// di, wrapping to mw.

public final class WRRScheduler: Scheduler {
    public let name = "wrr"
    private var current: Dest? = nil   // nil: the head
    private var index: Int = -1
    public private(set) var cw: Int32 = 0
    public private(set) var mw: Int32 = 0
    public private(set) var di: Int32 = 1

    /// init_service: cl = head, cw = mw.
    public init(service: Service) {
        recompute(service)
        cw = mw
    }

    private func recompute(_ service: Service) {
        var g: Int32 = 0
        var maxW: Int32 = 0
        for d in service.dests {
            let w = d.weight
            if w > 0 { g = g > 0 ? SchedHash.gcd(w, g) : w }
            if w > maxW { maxW = w }
        }
        di = g != 0 ? g : 1
        mw = maxW - (di - 1)
    }

    /// dest_changed, run for add, delete and update alike.
    private func destChanged(_ service: Service) {
        current = nil; index = -1
        recompute(service)
        if cw > mw || cw == 0 {
            cw = mw
        } else if di > 1 {
            cw = (cw / di) * di + 1
        }
    }

    public func addDest(_ service: Service, _ dest: Dest) { destChanged(service) }
    public func delDest(_ service: Service, _ dest: Dest) { destChanged(service) }
    public func updDest(_ service: Service, _ dest: Dest) { destChanged(service) }

    @inline(__always)
    private func position(_ dests: [Dest]) -> Int {
        guard let cur = current else { return -1 }
        if index >= 0 && index < dests.count && dests[index] === cur { return index }
        for i in 0..<dests.count where dests[i] === cur { index = i; return i }
        current = nil; index = -1
        return -1
    }

    @inline(__always)
    private func setPosition(_ i: Int, _ dests: [Dest]) {
        if i < 0 { current = nil; index = -1 } else { current = dests[i]; index = i }
    }

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        let dests = service.dests
        let n = dests.count
        let last = position(dests)
        if mw == 0 { return nil }        // cl stays where it is
        var i = last
        var stop = Int.min               // no stop
        var lastPass = false
        var restarted = false
        while true {
            i += 1
            while i < n {
                let d = dests[i]
                if !d.isOverloaded && d.weight >= cw {
                    setPosition(i, dests)
                    return d
                }
                if i == stop {
                    setPosition(i, dests)
                    return nil           // all destinations are overloaded
                }
                i += 1
            }
            // Reached the head.
            cw -= di
            if cw <= 0 {
                cw = mw
                if lastPass || last < 0 {
                    setPosition(-1, dests)
                    return nil
                }
                restarted = true
            }
            lastPass = cw <= di
            if lastPass && restarted && last >= 0 {
                stop = last
            }
            i = -1
        }
    }
}
