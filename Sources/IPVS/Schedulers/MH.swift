// mh: Maglev hashing (ip_vs_mh.c). A 4093-slot lookup table built from the
// dests' last_weight: each dest gets a permutation (offset, skip) from two
// keyed hsiphash values of its address and port, and dests claim their next
// free preferred slot in turns (`turns` consecutive slots per visit, in list
// order) until the table is full. Rebuilt on add, delete and update; a
// quiesced dest (weight 0, last_weight kept) keeps its slots, which then fail
// or fall back. Lookup key: hsiphash(port + fold(saddr)) % 4093 with port as
// for sh (mh-port = SCHED2); mh-fallback = SCHED1.

public final class MHScheduler: Scheduler {
    public let name = "mh"
    /// primes[CONFIG_IP_VS_MH_TAB_INDEX - 8] with the default index 12.
    public static let tableSize = 4093
    /// IP_VS_MH_TAB_BITS = CONFIG_IP_VS_MH_TAB_INDEX / 2.
    public static let tabBits = 6
    public static let hash1: (UInt64, UInt64) = (2_654_435_761, 2_654_435_761)
    public static let hash2: (UInt64, UInt64) = (2_654_446_892, 2_654_446_892)

    public private(set) var lookup: ContiguousArray<Dest?>
    public private(set) var gcd: Int32 = 0
    public private(set) var rshift: Int32 = 0

    public init(service: Service) {
        lookup = ContiguousArray(repeating: nil, count: MHScheduler.tableSize)
        rebuild(service)
    }

    public func addDest(_ service: Service, _ dest: Dest) { rebuild(service) }
    public func delDest(_ service: Service, _ dest: Dest) { rebuild(service) }
    public func updDest(_ service: Service, _ dest: Dest) { rebuild(service) }

    @inlinable
    public static func hashKey(_ addr: IPAddress, port: UInt16, key: (UInt64, UInt64), offset: UInt32) -> UInt32 {
        let v = offset &+ UInt32(port) &+ addr.folded
        return SchedHash.hsiphash32(v, key0: key.0, key1: key.1)
    }

    /// fls(): position of the highest set bit, 1-based; 0 for 0.
    static func fls(_ x: Int32) -> Int32 { x == 0 ? 0 : Int32(32 - UInt32(bitPattern: x).leadingZeroBitCount) }

    private func rebuild(_ service: Service) {
        let dests = service.dests
        let m = MHScheduler.tableSize
        // gcd and shift over last_weight.
        var g: Int32 = 0
        var maxW: Int32 = 0
        for d in dests {
            let w = d.lastWeight
            if w > 0 { g = g > 0 ? SchedHash.gcd(w, g) : w }
            if w > maxW { maxW = w }
        }
        gcd = g
        if g < 1 {
            rshift = 0
            for i in 0..<m { lookup[i] = nil }
            return
        }
        let shift = MHScheduler.fls(maxW / g) - Int32(MHScheduler.tabBits)
        rshift = shift >= 0 ? shift : 0
        if dests.count > m { return }   // the kernel refuses (EINVAL) and keeps the old table

        // Permutation set-up per dest, in list order.
        let n = dests.count
        var skip = [Int](repeating: 0, count: n)
        var perm = [Int](repeating: 0, count: n)
        var turns = [Int32](repeating: 0, count: n)
        for (i, d) in dests.enumerated() {
            let off = Int(MHScheduler.hashKey(d.addr, port: d.port, key: MHScheduler.hash1, offset: 0) % UInt32(m))
            skip[i] = Int(MHScheduler.hashKey(d.addr, port: d.port, key: MHScheduler.hash2, offset: 0) % UInt32(m - 1)) + 1
            perm[i] = off
            let lw = d.lastWeight
            let t = (lw / g) >> rshift
            turns[i] = t != 0 ? t : (lw != 0 ? 1 : 0)
        }

        // Populate.
        var taken = [Bool](repeating: false, count: m)
        var filled = 0
        var dtCount: Int32 = 0
        var p = 0
        outer: while filled < m {
            if p == n { p = 0 }
            while p < n {
                if turns[p] < 1 { p += 1; continue }
                var c = perm[p]
                while taken[c] {
                    perm[p] += skip[p]
                    if perm[p] >= m { perm[p] -= m }
                    c = perm[p]
                }
                taken[c] = true
                lookup[c] = dests[p]
                filled += 1
                if filled == m { break outer }
                dtCount += 1
                if dtCount >= turns[p] {
                    dtCount = 0
                    p += 1
                }
            }
        }
    }

    @inline(__always)
    private static func unavailable(_ d: Dest) -> Bool { d.weight <= 0 || d.isOverloaded }

    /// The slot a client maps to (`hashKey(saddr, port, hash1, 0) % M`).
    @inlinable
    public static func slot(_ saddr: IPAddress, port: UInt16) -> Int {
        Int(hashKey(saddr, port: port, key: hash1, offset: 0) % UInt32(tableSize))
    }

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        let port = SHScheduler.hashPort(service, input)
        let m = MHScheduler.tableSize
        let ihash = MHScheduler.slot(input.saddr, port: port)
        guard let first = lookup[ihash] else { return nil }
        if !MHScheduler.unavailable(first) { return first }
        guard service.flags.contains(.sched1) else { return nil }
        for offset in 0..<m {
            let roffset = UInt32((offset + ihash) % m)
            let h = Int(MHScheduler.hashKey(input.saddr, port: port, key: MHScheduler.hash1, offset: roffset) % UInt32(m))
            guard let d = lookup[h] else { return nil }
            if !MHScheduler.unavailable(d) { return d }
        }
        return nil
    }
}
